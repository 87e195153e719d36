//! What the `tm` functions need from the server's transaction layer, and the state a
//! transaction shows to the routes it runs (`failure_route`, `onreply_route[X]`,
//! `branch_route`).
//!
//! The transaction layer lives in the server (it owns sockets and timers); the module
//! only keeps per-message marks (`t_on_failure` & co.) in [`MsgContext::ext`] and calls
//! [`Transactions`] for everything that touches a transaction.

use std::time::Duration;

use bytes::Bytes;
use ferrosip_sip::SipMessage;

use crate::context::MsgContext;
use crate::error::FnError;
use crate::services::Target;

/// The server's transaction layer as the `tm` functions see it. Return values follow
/// Kamailio's `tm` codes: > 0 success, 0 stop the script (retransmission absorbed),
/// < 0 failure.
pub trait Transactions: Send + Sync {
    /// `t_relay([host, port])`: creates the transaction if needed and sends the request
    /// to every branch (the R-URI/`$du` and `append_branch` ones). In `failure_route`,
    /// adds new branches to the transaction (serial forking). A CANCEL cancels the
    /// pending branches of its INVITE; an ACK is forwarded statelessly.
    fn relay(&self, ctx: &mut MsgContext, target: Option<Target>) -> Result<i32, FnError>;
    /// `t_newtran()`: creates the transaction without sending anything; 0 when the
    /// request is a retransmission (its last reply was sent again).
    fn new_transaction(&self, ctx: &mut MsgContext) -> Result<i32, FnError>;
    /// `t_reply(code, reason)`: answers the request through its transaction; an error
    /// when it has none (`t_newtran()` creates one).
    fn reply(&self, ctx: &mut MsgContext, code: u16, reason: &[u8]) -> Result<i32, FnError>;
    /// `t_check_trans()`: see the tm docs for the per-method rules.
    fn check(&self, ctx: &mut MsgContext) -> Result<i32, FnError>;
    /// `t_precheck_trans()`: whether a transaction for this request exists already.
    fn exists(&self, ctx: &MsgContext) -> bool;
    /// `t_release()`: forgets the transaction of the request.
    fn release(&self, ctx: &mut MsgContext) -> i32;
}

/// Per-message choices of the script for the transaction `t_relay` creates (armed routes,
/// timers). Copied into the transaction when it is created or relayed again; a failure
/// route starts with the marks cleared, as in Kamailio (arm again to fail over again).
#[derive(Clone, Debug, Default)]
pub struct TmMarks {
    /// `t_on_failure`: the failure route armed.
    pub on_failure: Option<u32>,
    /// `t_on_branch`: the branch route armed.
    pub on_branch: Option<u32>,
    /// `t_on_reply`: the reply route armed.
    pub on_reply: Option<u32>,
    /// `t_set_fr(inv, noninv)`: `fr_inv_timer` and `fr_timer` for this transaction.
    pub fr_inv_timer: Option<Duration>,
    /// See `fr_inv_timer`.
    pub fr_timer: Option<Duration>,
    /// `t_drop_replies()` in failure_route: the replies of the failed branches are not
    /// considered for the final reply.
    pub drop_replies: bool,
}

/// What a route run by the transaction layer knows about its transaction.
#[derive(Clone, Debug, Default)]
pub struct TmState {
    /// The reply being processed (onreply_route) or the winning one (failure_route);
    /// 408 for a branch that timed out.
    pub reply_code: u16,
    /// Its reason phrase.
    pub reply_reason: Bytes,
    /// The reply itself when one was received (`$T_rpl(pv)`).
    pub reply: Option<SipMessage>,
    /// The request the transaction was created for (`$T_req(pv)`).
    pub request: Option<SipMessage>,
    /// Index of the branch the route runs for.
    pub branch: i32,
    /// The caller sent a CANCEL for this INVITE.
    pub canceled: bool,
    /// The transaction's final-response timer expired.
    pub expired: bool,
    /// The failed branch (failure_route) timed out / got a reply.
    pub branch_timeout: bool,
    /// See `branch_timeout`.
    pub branch_replied: bool,
    /// Any branch of the transaction timed out / got a reply.
    pub any_timeout: bool,
    /// See `any_timeout`.
    pub any_replied: bool,
}

/// One extra destination of a request, added by `append_branch` (Kamailio's "dset").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchTarget {
    /// The branch's Request-URI.
    pub uri: Bytes,
    /// Its `$du`, when set.
    pub dst_uri: Option<Bytes>,
    /// Its q value, as written.
    pub q: Option<Bytes>,
    /// Its branch flags.
    pub bflags: u64,
}

/// The branches `append_branch` added beside the R-URI one; `t_relay` sends to the R-URI
/// and to each of these (parallel forking) and clears the set.
#[derive(Clone, Debug, Default)]
pub struct Branches(
    /// The branches, in the order they were added.
    pub Vec<BranchTarget>,
);

/// The From and To header values a request had before a module replaced them (uac's
/// `uac_replace_from`/`uac_replace_to`). A module's branch hook keeps it in the
/// transaction (`BranchHook::keep`), and the transaction layer puts the originals back
/// into every reply it sends upstream, so the caller sees the From and To it sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpstreamHeaders {
    /// The original From value (with its tag).
    pub from: Option<Bytes>,
    /// The original To value; a reply's To tag is kept on it.
    pub to: Option<Bytes>,
}

impl UpstreamHeaders {
    /// `reply` with the original From/To back; unchanged when it does not parse.
    pub fn apply(&self, reply: Bytes) -> Bytes {
        let Ok(mut msg) = SipMessage::parse(reply.clone()) else {
            return reply;
        };
        if let Some(from) = &self.from {
            if msg.set_header("From", from).is_err() {
                return reply;
            }
        }
        if let Some(to) = &self.to {
            let mut value = to.to_vec();
            if let Some(tag) = msg.to_tag().map(<[u8]>::to_vec) {
                value.extend_from_slice(b";tag=");
                value.extend_from_slice(&tag);
            }
            if msg.set_header("To", value).is_err() {
                return reply;
            }
        }
        msg.to_bytes()
    }
}
