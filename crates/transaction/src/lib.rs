//! The SIP transaction layer (RFC 3261 §17, with the Accepted states of RFC 6026) as
//! a sans-IO library: it never reads a socket, sleeps or spawns. The driver (the
//! server's worker loop) feeds each transaction what happened and carries out the
//! [`Action`]s it returns. That keeps every timer sequence and retransmission rule
//! testable with a fake clock, and lets the server choose its own threading, tables and
//! timer store.
//!
//! # Pieces
//!
//! - Matching: [`ServerKey`] (§17.2.3: branch + sent-by + method, ACK finding its
//!   INVITE, CANCEL its own; the RFC 2543 fallback for branches without
//!   [`MAGIC_COOKIE`]) and [`ClientKey`] (§17.1.3: branch + CSeq method).
//! - State machines: [`ServerInvite`], [`ServerNonInvite`], [`ClientInvite`],
//!   [`ClientNonInvite`], and the enums [`ServerTransaction`] and
//!   [`ClientTransaction`] that pick one by method.
//! - Builders: [`build_ack`] (non-2xx, §17.1.1.3), [`build_cancel`] (§9.1),
//!   [`trying`], [`local_reply`].
//! - The proxy's response context: [`choose_best`] and [`assemble_best`] (§16.7 steps
//!   6 and 7).
//! - [`TimerWheel`]: O(1) insert and cancel for the timers the machines ask for.
//!
//! # Driving it
//!
//! On a received request:
//!
//! 1. `let probe = ServerKey::probe(&msg)?` and look it up: `table.get_mut(probe.as_bytes())`
//!    (the table is a `HashMap<ServerKey, _>`; the probe lives on the stack).
//! 2. Found: `txn.on_request(&msg)` and carry out the actions. This covers
//!    retransmissions (answered with the last response or absorbed) and the ACK of a
//!    non-2xx final (absorbed), so the TU never sees them. [`TuEvent::AckReceived`]
//!    means the ACK goes up after all (RFC 6026 Accepted state).
//! 3. Not found: an ACK goes to the TU as is (it acknowledges a 2xx; a proxy forwards
//!    it statelessly). Any other request gets [`ServerTransaction::new`], stored under
//!    `probe.to_key()`, and goes to the TU, whose answers go through
//!    `send_reply(status, bytes)`. A CANCEL is such a request too (its own
//!    transaction answers it 200); [`ServerKey::probe_cancel_target`] then finds the
//!    INVITE transaction it cancels, which the TU answers 487.
//!
//! On a received response: `ClientKey::probe(&msg)?`, look it up, `txn.on_reply(&msg)`.
//! [`TuEvent::Response`] and [`TuEvent::Later2xx`] mean "pass this response up";
//! anything else was absorbed. A response matching no client transaction is dropped:
//! RFC 6026 ended the stateless forwarding of such stray responses, which let anyone
//! inject responses through a proxy.
//!
//! To send a request: add the Via with a fresh `z9hG4bK` branch, create
//! [`ClientTransaction::new`] and store it under [`ClientKey::of_request`]; its first
//! actions send the request and start its timers.
//!
//! Timers: on [`Action::StartTimer`]`(id, after)` insert `(transaction, id)` into a
//! [`TimerWheel`] and keep the returned handle next to the transaction; on
//! [`Action::CancelTimer`]`(id)` cancel that handle. Each loop turn calls
//! `wheel.advance(now)` and feeds every expired `id` to its transaction's `on_timer`.
//! Missing a cancel is harmless: a transaction ignores ids it no longer runs.
//!
//! [`Action::Send`] goes to the transaction's peer on the transport it was created for
//! (`reliable` is true for TCP, TLS, SCTP and WebSocket: then no retransmission timers
//! run and Timers D, I, J and K are zero, so the transaction ends at once). A send that
//! fails is reported with `on_transport_error()`. [`Action::Terminated`] removes the
//! transaction from its table.
//!
//! # Example
//!
//! ```
//! use std::collections::HashMap;
//! use std::time::{Duration, Instant};
//! use ferrosip_sip::SipMessage;
//! use ferrosip_transaction::*;
//!
//! let req = SipMessage::parse_slice(b"OPTIONS sip:p.example SIP/2.0\r\n\
//! Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK77\r\nMax-Forwards: 70\r\n\
//! To: <sip:p.example>\r\nFrom: <sip:a@a.example>;tag=1\r\nCall-ID: x@a\r\n\
//! CSeq: 9 OPTIONS\r\nContent-Length: 0\r\n\r\n")?;
//! let t0 = Instant::now();
//! let mut table: HashMap<ServerKey, ServerTransaction> = HashMap::new();
//! let mut wheel: TimerWheel<TimerId> = TimerWheel::new(t0, Duration::from_millis(1));
//!
//! let probe = ServerKey::probe(&req).unwrap();
//! assert!(!table.contains_key(probe.as_bytes()));
//! let txn = ServerTransaction::new(&req, false, TimerConfig::default()).unwrap();
//! table.insert(probe.to_key(), txn);
//!
//! // The TU answers 200; the transaction sends it and starts Timer J.
//! let ok = local_reply(&req, 200, "OK", None)?;
//! let actions = table.get_mut(probe.as_bytes()).unwrap().send_reply(200, ok.clone());
//! assert_eq!(actions[0], Action::Send(ok.clone()));
//! let Action::StartTimer(id, after) = actions[1] else { panic!() };
//! assert_eq!(after, Duration::from_secs(32));
//! wheel.insert(t0, after, id);
//!
//! // A retransmitted request gets the 200 again.
//! let again = table.get_mut(probe.as_bytes()).unwrap().on_request(&req);
//! assert_eq!(again.as_slice(), &[Action::Send(ok)]);
//!
//! // Timer J ends the transaction.
//! for id in wheel.advance(t0 + after) {
//!     let done = table.get_mut(probe.as_bytes()).unwrap().on_timer(id);
//!     assert_eq!(done.as_slice(), &[Action::Terminated]);
//!     table.remove(probe.as_bytes());
//! }
//! assert!(table.is_empty());
//! # Ok::<(), ferrosip_sip::ParseError>(())
//! ```

mod action;
mod best;
mod build;
mod client;
mod key;
#[cfg(test)]
mod machine_tests;
mod server;
mod timer;
mod wheel;

pub use action::{Action, Actions, TuEvent};
pub use best::{assemble_best, choose_best, Best, BranchOutcome};
pub use build::{build_ack, build_cancel, local_reply, reason_phrase, trying};
pub use client::{
    ClientInvite, ClientInviteState, ClientNonInvite, ClientNonInviteState, ClientTransaction,
};
pub use key::{ClientKey, KeyError, Probe, ServerKey, MAGIC_COOKIE};
pub use server::{
    ServerInvite, ServerInviteState, ServerNonInvite, ServerNonInviteState, ServerTransaction,
};
pub use timer::{TimerConfig, TimerId, TimerKind};
pub use wheel::{TimerHandle, TimerWheel};
