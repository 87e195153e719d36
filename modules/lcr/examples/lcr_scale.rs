//! Scale check (not a test): N prefix rules (default 1,000,000) with two targets each,
//! written by the import (`ferrosip lcr import`'s code: CSV text parsed, planned and
//! written in one transaction) and loaded the way the module loads them at start and on
//! reload; prints the import and load times, the resident memory the load kept, the peak
//! during a reload (with the old snapshot still serving) and the cost of one load_gws()
//! lookup.
//!
//! ```sh
//! cargo run --release -p ferrosip-mod-lcr --example lcr_scale [-- RULES [DB_URL_OR_FILE]]
//! ```
//! DB_URL_OR_FILE: an SQLite file (default: a temporary one) or a db_url such as
//! `postgres://postgres@127.0.0.1/lcrscale` (the database must exist).
//! The prefixes are the numbers 10..10+RULES (2 to 7 digits), so a dialled number matches
//! up to six rules of different lengths, as national/area/exchange prefixes do.

use ferrosip_db::{schema, Db, DbValue};
use ferrosip_mod_lcr::data::GwOrdering;
use ferrosip_mod_lcr::import;
use ferrosip_mod_lcr::load::{self, Limits, Tables};
use std::ops::ControlFlow;
use std::time::Instant;

/// Resident and peak resident memory of this process, in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds this process has used (all threads): on a loaded machine the wall-clock
/// figures stretch with the load while this one stays close to what a quiet run takes.
fn cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Resets VmHWM to the current RSS, so the next peak is the reload's own.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn count_rules(db: &Db) -> u64 {
    db.select_each(
        "lcr_rule",
        &["id"],
        &[],
        None,
        |_| ControlFlow::Continue(()),
    )
    .await
    .unwrap_or(0)
}

async fn fill(db: &Db, rules: u64) {
    if db.select("lcr_gw", &["id"], &[], None).await.is_err() {
        schema::init(db, Some(&["lcr"])).await.expect("schema");
    }
    db.delete("lcr_gw", &[]).await.expect("clear gateways");
    for (name, port) in [("alpha", 5080_i64), ("beta", 5081)] {
        db.insert(
            "lcr_gw",
            &["lcr_id", "gw_name", "ip_addr", "port", "tag"],
            &[
                DbValue::Int(1),
                DbValue::Str(name.into()),
                DbValue::Str("192.0.2.10".into()),
                DbValue::Int(port),
                DbValue::Str(name.into()),
            ],
        )
        .await
        .expect("gateway");
    }
    // The rate sheet: alternate which carrier is cheaper.
    let mut csv = String::with_capacity(rules as usize * 40);
    csv.push_str("carrier,prefix,rate\n");
    for i in 0..rules {
        let prefix = 10 + i;
        let (a, b) = if i % 2 == 0 {
            ("0.010", "0.012")
        } else {
            ("0.012", "0.010")
        };
        csv.push_str(&format!("alpha,{prefix},{a}\nbeta,{prefix},{b}\n"));
    }
    let t = Instant::now();
    let cpu = cpu_secs();
    let rows = import::parse_csv(&csv).expect("sheet");
    let plan = import::plan(&rows, 0).expect("plan");
    drop(rows);
    let parsed = t.elapsed();
    let parsed_cpu = cpu_secs() - cpu;
    let s = import::write(db, &Tables::kamailio(), 1, &plan)
        .await
        .expect("import");
    println!(
        "import: {} rules, {} targets in {:.1} s, {:.1} s CPU ({:.1} s, {:.1} s CPU parsing \
         and planning the CSV, the rest writing in one transaction)",
        s.rules,
        s.targets,
        t.elapsed().as_secs_f64(),
        cpu_secs() - cpu,
        parsed.as_secs_f64(),
        parsed_cpu
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rules: u64 = args
        .next()
        .map(|a| a.parse().expect("RULES is a number"))
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().expect("temp dir");
    let url = match args.next() {
        Some(u) if u.contains("://") => u,
        Some(path) => format!("sqlite://{path}"),
        None => format!("sqlite://{}", tmp.path().join("lcr-scale.db").display()),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let db = rt.block_on(Db::connect(&url)).expect("connect");
    if rt.block_on(count_rules(&db)) != rules {
        rt.block_on(fill(&db, rules));
    }
    let limits = Limits {
        lcr_count: 1,
        gw_count: 128,
    };
    let (rss0, _) = rss_kib();
    reset_peak();
    let t = Instant::now();
    let cpu = cpu_secs();
    let snap = rt
        .block_on(load::load(&db, &Tables::kamailio(), limits))
        .expect("load");
    let load_time = t.elapsed();
    let load_cpu = cpu_secs() - cpu;
    let (rss1, peak1) = rss_kib();
    // A reload: the new snapshot is built while the old one still serves.
    reset_peak();
    let t = Instant::now();
    let cpu = cpu_secs();
    let again = rt
        .block_on(load::load(&db, &Tables::kamailio(), limits))
        .expect("reload");
    let reload_time = t.elapsed();
    let reload_cpu = cpu_secs() - cpu;
    let (rss2, peak2) = rss_kib();
    drop(snap);
    let snap = again;
    let inst = snap.instance(1).expect("instance 1");
    println!(
        "load ({url}): {} rules, {} targets in {:.2} s ({:.2} s CPU); RSS {} MiB -> {} MiB (+{} MiB kept), \
         peak {} MiB",
        inst.rules.len(),
        inst.targets.len(),
        load_time.as_secs_f64(),
        load_cpu,
        rss0 / 1024,
        rss1 / 1024,
        rss1.saturating_sub(rss0) / 1024,
        peak1 / 1024
    );
    println!(
        "reload with the old snapshot serving: {:.2} s ({:.2} s CPU); RSS {} MiB with both, peak {} MiB \
         (+{} MiB over the first load's, {:.2}x the kept memory)",
        reload_time.as_secs_f64(),
        reload_cpu,
        rss2 / 1024,
        peak2 / 1024,
        peak2.saturating_sub(rss0) / 1024,
        peak2.saturating_sub(rss0) as f64 / rss1.saturating_sub(rss0).max(1) as f64
    );

    // Dialled numbers: a random prefix of the table followed by digits.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let numbers: Vec<Vec<u8>> = (0..100_000)
        .map(|_| {
            let p = 10 + next() % rules;
            format!("{p}{:07}", next() % 10_000_000).into_bytes()
        })
        .collect();
    let ruri = b"sip:4930123456789@proxy.example.com";
    let rounds = 10;
    let mut matched = 0usize;
    let t = Instant::now();
    let cpu = cpu_secs();
    for _ in 0..rounds {
        for n in &numbers {
            matched += inst
                .matching(n, b"", ruri, 0, GwOrdering::PrefixFirst, &mut next)
                .len();
        }
    }
    let calls = rounds * numbers.len();
    let per_call = t.elapsed().as_nanos() as f64 / calls as f64;
    let per_call_cpu = (cpu_secs() - cpu) * 1e9 / calls as f64;
    let rules_seen: usize = numbers.iter().map(|n| inst.rules_for(n).count()).sum();
    println!(
        "lookup (load_gws matching, ordering, dedup): {per_call:.0} ns ({per_call_cpu:.0} ns CPU) per call over {calls} calls; \
         {:.1} rules and {:.1} gateways matched per call",
        rules_seen as f64 / numbers.len() as f64,
        matched as f64 / calls as f64
    );
}
