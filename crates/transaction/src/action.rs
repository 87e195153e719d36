//! What a transaction asks its driver to do.

use std::time::Duration;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::timer::{TimerId, TimerKind};

/// The actions one input produced, in the order to carry them out. Six fit inline,
/// which covers every transition (the largest is a non-2xx final on a client INVITE:
/// three timers cancelled, ACK sent, response passed up, Timer D started), so the common
/// paths do not allocate.
pub type Actions = SmallVec<[Action; 6]>;

/// One thing the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes to the transaction's peer, over the transport it was created
    /// for (for a server transaction: where responses go per RFC 3261 §18.2.2; for a
    /// client transaction: the next hop of the request).
    Send(Bytes),
    /// Tell the transaction user.
    ToTu(TuEvent),
    /// Call `on_timer(id)` after this long. A second `StartTimer` of the same kind is
    /// always preceded by a `CancelTimer` of the first.
    StartTimer(TimerId, Duration),
    /// The timer need not fire any more. Ignoring this is safe (the transaction drops
    /// stale firings) but leaves the entry in the wheel until it expires.
    CancelTimer(TimerId),
    /// The transaction is over: remove it from the table. Every timer it had running
    /// was cancelled by the actions just before this one, and any later input to it
    /// produces nothing.
    Terminated,
}

/// Events for the transaction user (the proxy core or a UA).
///
/// Messages are not carried: the driver hands each message to the transaction by
/// reference and keeps it, and the event says whether that message goes up. This keeps
/// actions small and avoids a copy on the way up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TuEvent {
    /// Pass up the response just given to `on_reply`: a provisional, or the first final.
    Response(u16),
    /// Pass up the 2xx just given to `on_reply` in Accepted (RFC 6026 §7.2): a
    /// retransmission or another fork's answer. A proxy forwards it like the first one;
    /// a UA answers it with its ACK again.
    Later2xx(u16),
    /// Pass up the ACK just given to `on_request`: it matched an INVITE server
    /// transaction in Accepted, and RFC 6026 §7.1 says such ACKs are not absorbed (a
    /// proxy forwards it statelessly).
    AckReceived,
    /// A timer ran out without the awaited message: B or F (no final response, the
    /// transaction ends), H (no ACK for a non-2xx final, it ends) or Fr (the proxy's
    /// final-response timer; for an INVITE that had a provisional the transaction
    /// lives on, see [`TuEvent::SendCancel`]).
    Timeout(TimerKind),
    /// The transport failed to send for this transaction (RFC 3261 §17.1.4, §17.2.4).
    TransportError,
    /// Build a CANCEL for this client INVITE ([`crate::build_cancel`]) and send it on a
    /// new non-INVITE client transaction. Comes once a provisional response allows it
    /// (§9.1) after [`crate::ClientInvite::cancel`] or an expired `fr_inv_timer`.
    SendCancel,
}
