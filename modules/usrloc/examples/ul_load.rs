//! usrloc's load at start (db_mode 1 and 2) from PostgreSQL: fills Kamailio's `location`
//! table with N contacts (default 1,000,000; one per address of record, the sizes of
//! `ul_memory`) with one INSERT ... SELECT on the server, then times
//! [`Usrloc::load_tables`], the code the module runs at start, and prints the resident
//! memory the loaded contacts take.
//!
//! ```text
//! cargo run --release -p ferrosip-mod-usrloc --example ul_load -- [CONTACTS [DB_URL]]
//! ```
//! DB_URL: a PostgreSQL database that exists (default
//! `postgres://postgres@127.0.0.1/ferrosip_ul_load`); its `location` table is replaced.

use ferrosip_db::{schema, Db};
use ferrosip_mod_usrloc::Usrloc;
use std::time::Instant;

/// Resident and peak resident memory of this process, in MiB (Linux).
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Rows `from..to` of the location table, written by the server itself.
async fn fill(db: &Db, from: u64, to: u64) {
    let sql = format!(
        "INSERT INTO location (ruid, username, contact, callid, user_agent, socket, expires, \
         last_modified, q, cseq, methods) \
         SELECT 'uloc-5f1e2d3c-' || g, 'user' || lpad(g::text, 7, '0'), \
         'sip:user' || lpad(g::text, 7, '0') || '@192.168.' || (g / 256 % 256) || '.' || (g % 256) \
         || ':5060;transport=udp;ob', lpad(to_hex(g), 16, '0') || '-4c2a9e0b7d3f1a68@192.168.1.10', \
         'Yealink SIP-T46S 66.', 'udp:10.0.0.1:5060', now() + interval '1 hour', now(), -1, 1, 8191 \
         FROM generate_series({from}, {}) AS g",
        to - 1
    );
    db.raw_query(&sql, 0).await.expect("fill location");
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map(|a| a.parse().expect("a number of contacts"))
        .unwrap_or(1_000_000);
    let url = args
        .next()
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1/ferrosip_ul_load".to_string());
    let db = Db::connect(&url).await.expect("connect");
    let _ = db.raw_query("DROP TABLE IF EXISTS location", 0).await;
    let _ = db
        .raw_query("DELETE FROM version WHERE table_name = 'location'", 0)
        .await;
    schema::init(&db, Some(&["usrloc"]))
        .await
        .expect("location table");
    let t = Instant::now();
    // In slices the database layer's per-query timeout lets through.
    let mut from = 0;
    while from < n {
        let to = (from + 50_000).min(n);
        fill(&db, from, to).await;
        from = to;
    }
    println!(
        "filled {n} rows in {:.1} s (server side)",
        t.elapsed().as_secs_f64()
    );

    let ul = Usrloc::default();
    let dom = ul.domain("location");
    let (before, _) = rss_mib();
    let t = Instant::now();
    let loaded = ul.load_tables(&db).await.expect("load");
    let took = t.elapsed();
    let (after, peak) = rss_mib();
    println!(
        "load at start: {loaded} contacts ({} in memory) in {:.2} s; RSS {before:.0} -> {after:.0} MiB \
         (+{:.0} MiB, {:.0} bytes per contact), peak {peak:.0} MiB",
        dom.contact_count(),
        took.as_secs_f64(),
        after - before,
        (after - before) * 1048576.0 / loaded.max(1) as f64
    );
    let _ = db.raw_query("DROP TABLE location", 0).await;
}
