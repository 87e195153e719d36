//! Transaction events for modules that watch transactions end (the idea of Kamailio's tm
//! callbacks, `load_tm_api` + `register_tmcb`): `acc` writes a record when a
//! transaction's final reply goes upstream.
//!
//! A module registers a builder with [`ModuleBuilder::on_tm_event`]; when a script loading
//! the module is loaded, the builder makes a [`TmObserver`] from the module's parameters
//! (with a [`Binder`] for the pseudo-variables they name). The server's transaction layer
//! asks every observer once per transaction, when the request route hands the request to
//! it (`t_relay()`, or `t_reply()` after `t_newtran()`): an observer that wants to see how
//! the transaction ends returns a [`TxnWatch`], kept with the transaction and told its
//! final reply ([`TxnWatch::on_final`]) or that it ended without one
//! ([`TxnWatch::on_dropped`]). Each watch hears exactly one of the two, once.
//!
//! Before that, a watch may hear (Kamailio's TMCB_RESPONSE_OUT for provisionals,
//! TMCB_ON_FAILURE and TMCB_E2EACK_IN):
//! - [`TxnWatch::on_provisional`]: each provisional reply (101-199) sent upstream;
//! - [`TxnWatch::on_failure`]: every branch has ended without a 2xx, before
//!   `failure_route` runs (or, without one, before the best final goes upstream); the
//!   flags it returns are reset in the transaction, so `failure_route` sees them reset;
//!
//! and after it, once, [`TxnWatch::on_e2e_ack`]: the ACK of the 2xx of an INVITE, when
//! the request route hands it to `t_relay()` or `t_check_trans()`, for watches that asked
//! for it in [`TxnWatch::wants_e2e_ack`] (the transaction keeps them until the ACK or
//! until it ends).
//!
//! Cost: with no observer loaded the transaction layer tests one empty slice per
//! transaction and allocates nothing. Watches run with the transaction locked: they must
//! not block (hand the work to a queue).
//!
//! [`ModuleBuilder::on_tm_event`]: crate::ModuleBuilder::on_tm_event
//! [`Binder`]: crate::pv::Binder

use std::sync::Arc;

use ferrosip_sip::SipMessage;

use crate::context::MsgContext;
use crate::pv::Binder;
use crate::registry::ModuleParams;

/// A module watching transactions; built once per load (see the module docs).
pub trait TmObserver: Send + Sync {
    /// The request route handed `ctx`'s request to its transaction (flags, AVPs and PVs
    /// as the route left them). Return a watch to hear how the transaction ends, or
    /// `None` to ignore it.
    fn on_request(&self, ctx: &MsgContext) -> Option<Box<dyn TxnWatch>>;
}

/// One transaction watched by one observer.
pub trait TxnWatch: Send {
    /// The transaction's final reply (>= 200) went upstream, relayed or generated here.
    fn on_final(&mut self, reply: &FinalReply<'_>);
    /// The transaction ended without sending a final reply (`t_release()`, a relay that
    /// sent no branch and was forgotten).
    fn on_dropped(&mut self) {}
    /// A provisional reply (101-199) went upstream: relayed from a branch (`reply` is
    /// it) or sent here by `t_reply()` (`local`).
    fn on_provisional(&mut self, _reply: &FinalReply<'_>) {}
    /// Every branch ended without a 2xx (`reply` the winning negative one, as
    /// `failure_route` sees it): `failure_route` runs next if one is armed, else the
    /// best final goes upstream. Returns the flags to reset in the transaction (Kamailio's
    /// acc resets its missed-call flags so that only the first failed attempt counts).
    fn on_failure(&mut self, _failed: &FinalReply<'_>) -> u64 {
        0
    }
    /// Asked once, right after [`TxnWatch::on_final`] of a 2xx to an INVITE: whether to
    /// hear the ACK of that 2xx ([`TxnWatch::on_e2e_ack`]).
    fn wants_e2e_ack(&self) -> bool {
        false
    }
    /// The end-to-end ACK of the 2xx the watch heard in `on_final`.
    fn on_e2e_ack(&mut self, _ack: &E2eAck<'_>) {}
}

/// The ACK of a transaction's 2xx, as the request route handed it to the transaction
/// layer.
pub struct E2eAck<'a> {
    /// The ACK, with what the request route did to it so far.
    pub ctx: &'a MsgContext,
    /// The status of the final reply the ACK acknowledges (Kamailio's acc reports it for
    /// an ACK).
    pub code: u16,
    /// That status's standard reason phrase.
    pub reason: &'a [u8],
    /// The INVITE transaction's flags now.
    pub flags: u64,
}

/// The final reply of a transaction, as its watches see it.
pub struct FinalReply<'a> {
    /// The status code.
    pub code: u16,
    /// The reason phrase.
    pub reason: &'a [u8],
    /// The To tag of the reply sent upstream, when it has one.
    pub to_tag: Option<&'a [u8]>,
    /// The request as the transaction relayed it.
    pub request: &'a SipMessage,
    /// The transaction's flags when the final was sent (set by the request route, then
    /// by its failure routes).
    pub flags: u64,
    /// The reply was generated here (`t_reply`, the 408 of a timeout, a best reply
    /// assembled from the branches' ones) rather than relayed from a branch as received.
    pub local: bool,
    /// The reply as it was sent (relayed, or assembled from the branches' replies);
    /// `None` for one `t_reply()` or the transaction layer built from scratch.
    pub reply: Option<&'a SipMessage>,
}

impl FinalReply<'_> {
    /// A failed transaction: the final is a negative reply (>= 300).
    pub fn failed(&self) -> bool {
        self.code >= 300
    }

    /// The reply carries a body (Content-Length > 0): early media in a provisional.
    pub fn has_body(&self) -> bool {
        self.reply
            .is_some_and(|r| r.content_length().unwrap_or(r.body().len()) > 0)
    }
}

/// Builds a module's observer from its parameters at load; `Ok(None)`: the parameters
/// ask for nothing to be watched. An error stops the load, with the module's name.
pub type TmObserverBuild =
    dyn Fn(&ModuleParams, &Binder<'_>) -> Result<Option<Arc<dyn TmObserver>>, String> + Send + Sync;
