//! What the running server offers to functions that send messages or ask about the
//! server itself. The server puts an implementation in [`MsgContext::services`]; without
//! one (tests, `ferrosip check`) such functions fail with a clear error.

use crate::context::{MsgContext, Proto};
use crate::error::FnError;
use bytes::Bytes;

/// A destination given explicitly (`forward("10.0.0.1", 5070)`), else `$du` / the R-URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: Bytes,
    pub port: Option<u16>,
    pub proto: Option<Proto>,
}

/// Services of the running server.
pub trait Services: Send + Sync {
    /// Sends a stateless reply to the request being processed (`sl_send_reply`), with the
    /// headers queued by `append_to_reply` ([`ReplyHeaders`]) and a To-tag of the server's.
    fn reply(&self, ctx: &mut MsgContext, code: u16, reason: &[u8]) -> Result<(), FnError>;

    /// Forwards the message statelessly (`forward()`): a request to `target` or to `$du` /
    /// the R-URI, with our Via on top; a reply to the address in its second Via.
    fn forward(&self, ctx: &mut MsgContext, target: Option<Target>) -> Result<(), FnError>;

    /// Whether `host[:port]` is this server (listen addresses, aliases).
    fn is_myself(&self, host: &[u8], port: Option<u16>) -> bool;

    /// The transaction layer (`tm`), when the server runs one.
    fn transactions(&self) -> Option<&dyn crate::tm::Transactions> {
        None
    }
}

/// Headers to add to the next locally generated reply (`append_to_reply`), each line
/// ending in CRLF.
#[derive(Clone, Debug, Default)]
pub struct ReplyHeaders(pub Vec<u8>);

/// Per-message choices that change how the server forwards or replies.
#[derive(Clone, Copy, Debug, Default)]
pub struct ForwardFlags {
    /// `force_rport()`: act as if the top Via had `;rport` (RFC 3581).
    pub force_rport: bool,
    /// `add_local_rport()`: put `;rport` in the Via the server adds.
    pub local_rport: bool,
}

/// Marks that the script's `maxfwd` functions handled Max-Forwards, so `forward()` does not
/// decrement it a second time.
#[derive(Clone, Copy, Debug, Default)]
pub struct MaxForwardsDone;
