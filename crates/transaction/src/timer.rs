//! Timer names, durations and the per-transaction bookkeeping of which timers run.

use std::time::Duration;

use crate::action::{Action, Actions};

/// The timers of RFC 3261 §17 (and L, M of RFC 6026), plus the proxy's final-response
/// timer.
///
/// `Fr` is not an RFC timer. It is the deadline a proxy puts on a branch, as Kamailio's
/// tm does: [`TimerConfig::fr_timer`] until the first provisional response, then, for
/// INVITE, [`TimerConfig::fr_inv_timer`] (the role RFC 3261 §16.8 gives Timer C). It
/// runs next to B and F, so the earlier of the two ends the wait: `fr_timer` can make a
/// branch give up sooner than the RFC's 64*T1, never later. `fr_inv_timer` runs where
/// the RFC sets no limit (an INVITE in Proceeding waits for its final indefinitely),
/// so it may be long; when it expires the INVITE is cancelled rather than dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKind {
    /// Client INVITE: retransmit the request (unreliable transports).
    A,
    /// Client INVITE: no response at all (64*T1). Reused after a CANCEL as the §9.1
    /// limit on waiting for the INVITE's final response.
    B,
    /// Client INVITE: how long to absorb retransmitted non-2xx finals.
    D,
    /// Client non-INVITE: retransmit the request (unreliable transports).
    E,
    /// Client non-INVITE: no final response (64*T1).
    F,
    /// Server INVITE: retransmit the non-2xx final (unreliable transports).
    G,
    /// Server INVITE: no ACK for the non-2xx final (64*T1).
    H,
    /// Server INVITE: how long to absorb retransmitted ACKs.
    I,
    /// Server non-INVITE: how long to absorb retransmitted requests.
    J,
    /// Client non-INVITE: how long to absorb retransmitted finals.
    K,
    /// Server INVITE, RFC 6026: how long to stay in Accepted after a 2xx.
    L,
    /// Client INVITE, RFC 6026: how long to stay in Accepted after a 2xx.
    M,
    /// The proxy's final-response timer (`fr_timer`, then `fr_inv_timer`).
    Fr,
}

const KINDS: usize = 13;

impl TimerKind {
    fn index(self) -> usize {
        self as usize
    }
}

/// One running instance of a timer.
///
/// The sequence number lets a transaction tell a timer it started from an older
/// instance of the same kind that was cancelled (or restarted) but still fired because
/// the driver did not, or could not in time, take it out of its wheel. Stale firings
/// are ignored, so cancelling is an optimisation for the driver, not a duty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId {
    /// Which timer.
    pub kind: TimerKind,
    /// Instance number, unique within the transaction.
    pub seq: u32,
}

/// Timer values. One copy lives in each transaction, so a change applies to
/// transactions created after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate (RFC 3261 default 500 ms): first retransmission interval, and the
    /// unit of the 64*T1 transaction timeouts.
    pub t1: Duration,
    /// Cap on the retransmission interval of non-INVITE requests and INVITE final
    /// responses (default 4 s).
    pub t2: Duration,
    /// How long a message may stay in the network (default 5 s): Timers I and K.
    pub t4: Duration,
    /// The proxy's wait for a final response before any provisional arrives (Kamailio's
    /// `fr_timer`, default 30 s).
    pub fr_timer: Duration,
    /// The proxy's wait for an INVITE final response once a provisional arrived
    /// (Kamailio's `fr_inv_timer`, default 120 s).
    pub fr_inv_timer: Duration,
    /// Caps how long a completed transaction stays to absorb late retransmissions
    /// (Timers D, J, L and M), as Kamailio's `wt_timer` (5 s there) does. `None` keeps
    /// the RFC values (64*T1, 32 s): a proxy that sees hundreds of calls per second
    /// would otherwise hold half a minute of ended transactions in memory.
    pub linger: Option<Duration>,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            fr_timer: Duration::from_secs(30),
            fr_inv_timer: Duration::from_secs(120),
            linger: None,
        }
    }
}

impl TimerConfig {
    /// 64*T1: Timers B, F, H, J (unreliable), L and M.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }

    /// Timer D on an unreliable transport. RFC 3261 asks for "at least 32 seconds": it
    /// covers the other side's retransmissions, whose T1 we do not know, so it does not
    /// shrink with a small local T1.
    pub fn timer_d(&self) -> Duration {
        self.lingering(self.t1x64().max(Duration::from_secs(32)))
    }

    /// A wait-after-completion timer, capped by [`TimerConfig::linger`].
    pub fn lingering(&self, rfc: Duration) -> Duration {
        self.linger.map_or(rfc, |cap| rfc.min(cap))
    }
}

/// Which timers of one transaction run, and their current instance numbers.
#[derive(Debug, Clone)]
pub(crate) struct Timers {
    armed: [u32; KINDS],
    seq: u32,
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers {
            armed: [0; KINDS],
            seq: 0,
        }
    }

    /// Starts `kind`, replacing a running instance of it.
    pub(crate) fn start(&mut self, kind: TimerKind, after: Duration, out: &mut Actions) {
        self.stop(kind, out);
        self.seq = self.seq.wrapping_add(1).max(1);
        self.armed[kind.index()] = self.seq;
        out.push(Action::StartTimer(
            TimerId {
                kind,
                seq: self.seq,
            },
            after,
        ));
    }

    pub(crate) fn stop(&mut self, kind: TimerKind, out: &mut Actions) {
        let seq = std::mem::take(&mut self.armed[kind.index()]);
        if seq != 0 {
            out.push(Action::CancelTimer(TimerId { kind, seq }));
        }
    }

    pub(crate) fn stop_all(&mut self, out: &mut Actions) {
        for (i, seq) in self.armed.iter_mut().enumerate() {
            let seq = std::mem::take(seq);
            if seq != 0 {
                out.push(Action::CancelTimer(TimerId { kind: ALL[i], seq }));
            }
        }
    }

    /// True when `id` is the running instance; it then no longer runs.
    pub(crate) fn fire(&mut self, id: TimerId) -> bool {
        let slot = &mut self.armed[id.kind.index()];
        if *slot != 0 && *slot == id.seq {
            *slot = 0;
            true
        } else {
            false
        }
    }

    #[cfg(test)]
    pub(crate) fn is_running(&self, kind: TimerKind) -> bool {
        self.armed[kind.index()] != 0
    }

    #[cfg(test)]
    pub(crate) fn any_running(&self) -> bool {
        self.armed.iter().any(|&s| s != 0)
    }
}

const ALL: [TimerKind; KINDS] = [
    TimerKind::A,
    TimerKind::B,
    TimerKind::D,
    TimerKind::E,
    TimerKind::F,
    TimerKind::G,
    TimerKind::H,
    TimerKind::I,
    TimerKind::J,
    TimerKind::K,
    TimerKind::L,
    TimerKind::M,
    TimerKind::Fr,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_table_matches() {
        for (i, k) in ALL.iter().enumerate() {
            assert_eq!(k.index(), i);
        }
    }

    #[test]
    fn restart_cancels_and_stale_ids_are_ignored() {
        let mut t = Timers::new();
        let mut out = Actions::new();
        t.start(TimerKind::A, Duration::from_millis(500), &mut out);
        t.start(TimerKind::A, Duration::from_secs(1), &mut out);
        let (first, second) = match (&out[0], &out[1], &out[2]) {
            (Action::StartTimer(a, _), Action::CancelTimer(c), Action::StartTimer(b, _)) => {
                assert_eq!(a, c);
                (*a, *b)
            }
            other => panic!("{other:?}"),
        };
        assert!(!t.fire(first));
        assert!(t.is_running(TimerKind::A));
        assert!(t.fire(second));
        assert!(!t.fire(second));
        assert!(!t.any_running());
    }

    #[test]
    fn defaults() {
        let c = TimerConfig::default();
        assert_eq!(c.t1x64(), Duration::from_secs(32));
        assert_eq!(c.timer_d(), Duration::from_secs(32));
        let fast = TimerConfig {
            t1: Duration::from_millis(100),
            ..c
        };
        assert_eq!(fast.timer_d(), Duration::from_secs(32));
    }

    #[test]
    fn linger_caps_the_wait_timers_only() {
        let c = TimerConfig {
            linger: Some(Duration::from_secs(5)),
            ..TimerConfig::default()
        };
        assert_eq!(c.timer_d(), Duration::from_secs(5));
        assert_eq!(c.lingering(c.t1x64()), Duration::from_secs(5));
        assert_eq!(c.lingering(Duration::from_secs(2)), Duration::from_secs(2));
        // Retransmission and timeout timers keep their RFC values.
        assert_eq!(c.t1x64(), Duration::from_secs(32));
    }
}
