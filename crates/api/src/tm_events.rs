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
}

impl FinalReply<'_> {
    /// A failed transaction: the final is a negative reply (>= 300).
    pub fn failed(&self) -> bool {
        self.code >= 300
    }
}

/// Builds a module's observer from its parameters at load; `Ok(None)`: the parameters
/// ask for nothing to be watched. An error stops the load, with the module's name.
pub type TmObserverBuild =
    dyn Fn(&ModuleParams, &Binder<'_>) -> Result<Option<Arc<dyn TmObserver>>, String> + Send + Sync;
