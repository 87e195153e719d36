//! pike's cost per request: `cargo run --profile dist -p ferrosip-mod-pike --example pike_bench`.
//!
//! One source over and over (the flood case: the address is hot), and 100,000 distinct
//! sources in turn (a spread flood), on one thread and on every core.

use ferrosip_mod_pike::counter::{PikeConfig, PikeCounter};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

fn config() -> PikeConfig {
    PikeConfig {
        sampling_time_unit: 2,
        reqs_density_per_unit: 16,
        remove_latency: 4,
        log_level: 1,
        max_nodes: 500_000,
    }
}

fn main() {
    let n = 5_000_000u32;
    let pike = PikeCounter::new(config());
    let one = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));
    let t = Instant::now();
    for _ in 0..n {
        black_box(pike.check(black_box(one)));
    }
    println!(
        "one source: {:.1} ns/check",
        t.elapsed().as_nanos() as f64 / f64::from(n)
    );

    let pike = PikeCounter::new(config());
    let t = Instant::now();
    for i in 0..n {
        black_box(pike.check(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i % 100_000))));
    }
    println!(
        "100,000 sources: {:.1} ns/check",
        t.elapsed().as_nanos() as f64 / f64::from(n)
    );

    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u32;
    let pike = Arc::new(PikeCounter::new(config()));
    let t = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|k| {
            let pike = pike.clone();
            std::thread::spawn(move || {
                for i in 0..n / threads {
                    black_box(pike.check(IpAddr::V4(Ipv4Addr::from(
                        0x0a00_0000 + (i * 7 + k) % 100_000,
                    ))));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    println!(
        "100,000 sources, {threads} threads: {:.1} ns/check (wall time / checks)",
        t.elapsed().as_nanos() as f64 / f64::from(n)
    );
}
