//! Counters an operator (and the tests) can read, shared by every layer that counts.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

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
    /// Requests forwarded, statelessly or as a tm branch (Kamailio's core fwd_requests):
    /// its own counter, so a reader never sees it go down as `forwarded - fwd_replies`
    /// can between two loads.
    pub fwd_requests: AtomicU64,
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
    /// Parsed requests by method, indexed as [`COUNTED_METHODS`].
    pub rcv_requests_by_method: [AtomicU64; COUNTED_METHODS.len()],
    /// Parsed replies by class: index 0 is 1xx ... 5 is 6xx.
    pub rcv_replies_by_class: [AtomicU64; 6],
    /// Time from the start of a request_route run to its end, including the time it
    /// waited for async functions.
    pub route_run: LatencyHistogram,
}

/// The request methods counted one by one (RFC 3261 and its extensions); any other
/// method is counted as `other`, so the label set stays bounded.
pub const COUNTED_METHODS: [&str; 15] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "INFO",
    "UPDATE",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
    "other",
];

/// Where `method` is counted in [`COUNTED_METHODS`] (methods are case-sensitive).
pub fn method_index(method: &[u8]) -> usize {
    COUNTED_METHODS[..COUNTED_METHODS.len() - 1]
        .iter()
        .position(|m| m.as_bytes() == method)
        .unwrap_or(COUNTED_METHODS.len() - 1)
}

/// Upper bounds of the latency histogram buckets, in microseconds (from 50 µs to 2.5 s:
/// a route run that only looks at headers takes microseconds, one that waits for a
/// database or DNS takes milliseconds).
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    2_500_000,
];

/// A latency histogram of fixed buckets: recording is three relaxed atomic adds, no
/// lock and no allocation.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the ones above the last bound are only
    /// in `count`.
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len()],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

/// What a histogram held when it was read: cumulative counts per bucket bound, the sum
/// of the observations in seconds and their number.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub cumulative: [u64; LATENCY_BUCKETS_US.len()],
    pub sum_seconds: f64,
    pub count: u64,
}

impl LatencyHistogram {
    pub fn observe(&self, elapsed: std::time::Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let i = LATENCY_BUCKETS_US.partition_point(|&bound| bound < us);
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Relaxed);
        }
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0u64; LATENCY_BUCKETS_US.len()];
        let mut total = 0;
        for (c, b) in cumulative.iter_mut().zip(&self.buckets) {
            total += b.load(Relaxed);
            *c = total;
        }
        // Read while observations go on: the count is never shown below its buckets.
        let count = self.count.load(Relaxed).max(total);
        HistogramSnapshot {
            cumulative,
            sum_seconds: self.sum_ns.load(Relaxed) as f64 / 1e9,
            count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn methods_are_counted_by_name_and_the_rest_as_other() {
        assert_eq!(COUNTED_METHODS[method_index(b"INVITE")], "INVITE");
        assert_eq!(COUNTED_METHODS[method_index(b"PUBLISH")], "PUBLISH");
        assert_eq!(COUNTED_METHODS[method_index(b"invite")], "other");
        assert_eq!(COUNTED_METHODS[method_index(b"other")], "other");
        assert_eq!(COUNTED_METHODS[method_index(b"FOO")], "other");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_inclusive() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(51));
        h.observe(Duration::from_secs(10));
        let s = h.snapshot();
        assert_eq!(s.cumulative[0], 1);
        assert_eq!(s.cumulative[1], 2);
        assert_eq!(s.cumulative[LATENCY_BUCKETS_US.len() - 1], 2);
        assert_eq!(s.count, 3);
        assert!((s.sum_seconds - 10.000101).abs() < 1e-9);
    }
}
