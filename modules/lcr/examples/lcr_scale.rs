//! Scale check (not a test): N prefix rules (default 1,000,000) with two targets each in a
//! SQLite database, loaded the way the module loads them at start and on reload; prints
//! the load time, the resident memory it added and the cost of one load_gws() lookup.
//!
//! ```sh
//! cargo run --release -p ferrosip-mod-lcr --example lcr_scale [-- RULES [DB_FILE]]
//! ```
//! The prefixes are the numbers 10..10+RULES (2 to 7 digits), so a dialled number matches
//! up to six rules of different lengths, as national/area/exchange prefixes do.

use ferrosip_db::{schema, Db, DbValue};
use ferrosip_mod_lcr::data::GwOrdering;
use ferrosip_mod_lcr::load::{self, Limits, Tables};
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

async fn fill(db: &Db, rules: u64) {
    schema::init(db, Some(&["lcr"])).await.expect("schema");
    let mut gw_ids = Vec::new();
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
    for row in db
        .select("lcr_gw", &["id"], &[], Some("id"))
        .await
        .expect("gateways")
    {
        gw_ids.push(row[0].as_int().expect("id"));
    }
    let mut tx = db.transaction().await.expect("transaction");
    for i in 0..rules {
        let prefix = (10 + i).to_string();
        let rule = tx
            .insert_returning_id(
                "lcr_rule",
                &["lcr_id", "prefix"],
                &[DbValue::Int(1), DbValue::Str(prefix)],
                "id",
            )
            .await
            .expect("rule");
        for (k, gw) in gw_ids.iter().enumerate() {
            // Alternate which carrier is cheaper.
            let priority = ((i as usize + k) % 2) as i64;
            tx.insert(
                "lcr_rule_target",
                &["lcr_id", "rule_id", "gw_id", "priority", "weight"],
                &[
                    DbValue::Int(1),
                    DbValue::Int(rule),
                    DbValue::Int(*gw),
                    DbValue::Int(priority),
                    DbValue::Int(1),
                ],
            )
            .await
            .expect("target");
        }
    }
    tx.commit().await.expect("commit");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rules: u64 = args
        .next()
        .map(|a| a.parse().expect("RULES is a number"))
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().expect("temp dir");
    let path = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().join("lcr-scale.db"));
    let url = format!("sqlite://{}", path.display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let db = rt.block_on(Db::connect(&url)).expect("connect");
    let have = rt
        .block_on(db.select("lcr_rule", &["id"], &[], None))
        .map(|r| r.len() as u64)
        .unwrap_or(0);
    if have != rules {
        let t = Instant::now();
        rt.block_on(fill(&db, rules));
        println!(
            "filled {path:?}: {rules} rules, {} targets in {:.1} s (one transaction)",
            rules * 2,
            t.elapsed().as_secs_f64()
        );
    }
    let limits = Limits {
        lcr_count: 1,
        gw_count: 128,
    };
    let (rss0, _) = rss_kib();
    let t = Instant::now();
    let snap = rt
        .block_on(load::load(&db, &Tables::kamailio(), limits))
        .expect("load");
    let load_time = t.elapsed();
    let (rss1, peak) = rss_kib();
    let inst = snap.instance(1).expect("instance 1");
    println!(
        "load: {} rules, {} targets in {:.2} s; RSS {} MiB -> {} MiB (+{} MiB kept), peak {} MiB",
        inst.rules.len(),
        inst.targets.len(),
        load_time.as_secs_f64(),
        rss0 / 1024,
        rss1 / 1024,
        rss1.saturating_sub(rss0) / 1024,
        peak / 1024
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
    for _ in 0..rounds {
        for n in &numbers {
            matched += inst
                .matching(n, b"", ruri, 0, GwOrdering::PrefixFirst, &mut next)
                .len();
        }
    }
    let calls = rounds * numbers.len();
    let per_call = t.elapsed().as_nanos() as f64 / calls as f64;
    let rules_seen: usize = numbers.iter().map(|n| inst.rules_for(n).count()).sum();
    println!(
        "lookup (load_gws matching, ordering, dedup): {per_call:.0} ns per call over {calls} calls; \
         {:.1} rules and {:.1} gateways matched per call",
        rules_seen as f64 / numbers.len() as f64,
        matched as f64 / calls as f64
    );
}
