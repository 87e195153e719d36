//! Counters an operator (and the tests) can read, shared by every layer that counts.

use std::sync::atomic::AtomicU64;

/// Counters an operator (and the tests) can read.
#[derive(Debug, Default)]
pub struct Stats {
    pub received: AtomicU64,
    /// Parsed requests and replies (Kamailio's core rcv_requests, rcv_replies).
    pub rcv_requests: AtomicU64,
    pub rcv_replies: AtomicU64,
    pub malformed_dropped: AtomicU64,
    pub malformed_answered: AtomicU64,
    pub oversized: AtomicU64,
    /// Requests and replies forwarded (replies also in `fwd_replies`).
    pub forwarded: AtomicU64,
    /// Replies forwarded statelessly (Kamailio's core fwd_replies).
    pub fwd_replies: AtomicU64,
    pub replies_sent: AtomicU64,
    /// Requests that came back unchanged through one of our Vias (answered 482 Loop
    /// Detected, RFC 3261 §16.3 step 4).
    pub loops: AtomicU64,
    /// Requests answered 503 because `max_transactions` transactions were open.
    pub overloaded: AtomicU64,
    /// Messages whose processing panicked (a bug of ours; the worker carried on).
    pub panics: AtomicU64,
    /// Route runs that waited for an async function (database, DNS) and were finished on
    /// the async runtime while the worker went on with other messages.
    pub suspended: AtomicU64,
    /// Route runs waiting now (a gauge): new requests are answered 503 while it is at
    /// `max_waiting_routes`.
    pub waiting_routes: AtomicU64,
}
