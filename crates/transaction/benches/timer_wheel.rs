//! The timer wheel at proxy scale: 100k pending timers with SIP-like delays (0.5 s to
//! 120 s), half of them cancelled (most transaction timers are), the rest expired.
//!
//! Run with `cargo bench -p ferrosip-transaction --bench timer_wheel`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ferrosip_transaction::{TimerHandle, TimerWheel};

const N: usize = 100_000;

/// Delays in ms, spread like transaction timers: retransmission intervals, 32 s
/// timeouts, 120 s INVITE waits.
fn delays() -> Vec<u64> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    (0..N)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            500 + seed % 119_500
        })
        .collect()
}

fn filled(t0: Instant, delays: &[u64]) -> (TimerWheel<u64>, Vec<TimerHandle>) {
    let mut w = TimerWheel::with_capacity(t0, Duration::from_millis(1), N);
    let handles = delays
        .iter()
        .enumerate()
        .map(|(i, &d)| w.insert(t0, Duration::from_millis(d), i as u64))
        .collect();
    (w, handles)
}

fn bench(c: &mut Criterion) {
    let t0 = Instant::now();
    let delays = delays();
    let mut g = c.benchmark_group("timer_wheel");
    g.sample_size(20);
    g.throughput(Throughput::Elements(N as u64));

    g.bench_function("insert_100k", |b| {
        b.iter_batched(
            || TimerWheel::<u64>::with_capacity(t0, Duration::from_millis(1), N),
            |mut w| {
                for (i, &d) in delays.iter().enumerate() {
                    black_box(w.insert(t0, Duration::from_millis(d), i as u64));
                }
                w
            },
            BatchSize::LargeInput,
        )
    });

    g.bench_function("cancel_50k_of_100k", |b| {
        b.iter_batched(
            || filled(t0, &delays),
            |(mut w, handles)| {
                for h in handles.iter().step_by(2) {
                    black_box(w.cancel(*h));
                }
                w
            },
            BatchSize::LargeInput,
        )
    });

    g.bench_function("expire_50k_in_1ms_steps", |b| {
        b.iter_batched(
            || {
                let (mut w, handles) = filled(t0, &delays);
                for h in handles.iter().step_by(2) {
                    w.cancel(*h);
                }
                w
            },
            |mut w| {
                // A driver loop that wakes every millisecond for two minutes.
                let mut out = Vec::new();
                let mut fired = 0;
                for ms in 0..=120_000u64 {
                    w.advance_into(t0 + Duration::from_millis(ms), &mut out);
                    fired += out.len();
                    out.clear();
                }
                assert_eq!(fired, N / 2);
                w
            },
            BatchSize::LargeInput,
        )
    });

    g.bench_function("insert_100k_cancel_half_expire_rest", |b| {
        b.iter(|| {
            let (mut w, handles) = filled(t0, &delays);
            for h in handles.iter().step_by(2) {
                w.cancel(*h);
            }
            let fired = w.advance(t0 + Duration::from_secs(121)).len();
            assert_eq!(fired, N / 2);
            w
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
