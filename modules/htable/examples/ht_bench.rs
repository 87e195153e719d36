//! htable at 1,000,000 items: `cargo run --profile dist -p ferrosip-mod-htable --example ht_bench`.
//!
//! Fills a table (size=14, i.e. 16,384 slots) with 1,000,000 items whose keys look like
//! the stock config's (`10.x.y.z`, an IP address) and integer values, then reads and
//! updates them in random order; prints ns per operation and resident memory per item.

use ferrosip_mod_htable::table::{ItemValue, Table, TableSpec};
use std::hint::black_box;
use std::time::Instant;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn key(i: u32) -> String {
    std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string()
}

fn main() {
    let n = 1_000_000u32;
    let keys: Vec<String> = (0..n).map(key).collect();
    let before = rss_kib();
    let table =
        Table::new(TableSpec::parse("bench=>size=14;autoexpire=300;maxsize=2000000").unwrap());
    let t = Instant::now();
    for (i, k) in keys.iter().enumerate() {
        table
            .set(k.as_bytes(), ItemValue::Int(i as i64), None)
            .unwrap();
    }
    let fill = t.elapsed();
    let grown = rss_kib() - before;
    println!(
        "fill {n} items: {:.0} ns/set (new key), RSS +{} MiB = {} bytes/item",
        fill.as_nanos() as f64 / f64::from(n),
        grown / 1024,
        grown * 1024 / u64::from(n)
    );
    // A fixed pseudo-random order, so reads do not walk memory in insertion order.
    let order: Vec<usize> = (0..n as usize)
        .map(|i| (i * 7_919 + 13) % n as usize)
        .collect();
    let t = Instant::now();
    for &i in &order {
        black_box(table.get(keys[i].as_bytes()));
    }
    println!(
        "get (hit): {:.0} ns",
        t.elapsed().as_nanos() as f64 / f64::from(n)
    );
    let t = Instant::now();
    for i in 0..n {
        black_box(table.get(key(n + i).as_bytes()));
    }
    println!(
        "get (miss, key formatted each time): {:.0} ns",
        t.elapsed().as_nanos() as f64 / f64::from(n)
    );
    let t = Instant::now();
    for &i in &order {
        table
            .set(keys[i].as_bytes(), ItemValue::Int(1), None)
            .unwrap();
    }
    println!(
        "set (update): {:.0} ns",
        t.elapsed().as_nanos() as f64 / f64::from(n)
    );
    let t = Instant::now();
    for &i in &order {
        black_box(table.add(keys[i].as_bytes(), 1).unwrap());
    }
    println!(
        "$shtinc (update): {:.0} ns",
        t.elapsed().as_nanos() as f64 / f64::from(n)
    );
}
