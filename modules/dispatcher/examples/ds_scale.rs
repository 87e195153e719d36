//! Scale check (not a test): SETS destination sets of PER_SET destinations each (default
//! 1,000 x 10 = 10,000) in the `dispatcher` table of an SQLite database, read and built the
//! way `ds_reload`/`dispatcher.reload` does (connect, select, parse, build the sets, carry
//! the live state over from the previous sets); prints the time of each reload.
//!
//! ```sh
//! cargo run --release -p ferrosip-mod-dispatcher --example ds_scale [-- SETS PER_SET [DB_URL]]
//! ```

use ferrosip_db::{schema, Db, DbValue};
use ferrosip_mod_dispatcher::sets::Sets;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut num = |default: u32| {
        args.next()
            .map(|a| a.parse().expect("a number"))
            .unwrap_or(default)
    };
    let (sets, per_set) = (num(1_000), num(10));
    let tmp = tempfile::tempdir().expect("temp dir");
    let url = std::env::args()
        .nth(3)
        .unwrap_or_else(|| format!("sqlite://{}", tmp.path().join("ds-scale.db").display()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let table = "dispatcher";
    let cols = [
        "setid".to_string(),
        "destination".to_string(),
        "flags".to_string(),
        "priority".to_string(),
        "attrs".to_string(),
    ];
    rt.block_on(async {
        let db = Db::connect(&url).await.expect("connect");
        if db.select(table, &["id"], &[], None).await.is_err() {
            schema::init(&db, Some(&["dispatcher"]))
                .await
                .expect("schema");
        }
        db.delete(table, &[]).await.expect("clear");
        let mut tx = db.transaction().await.expect("transaction");
        let mut rows = Vec::new();
        for set in 1..=sets {
            for d in 0..per_set {
                rows.extend([
                    DbValue::Int(i64::from(set)),
                    DbValue::Str(format!("sip:10.{}.{}.{}:5060", set / 256, set % 256, d + 1)),
                    DbValue::Int(0),
                    DbValue::Int(i64::from(d % 3)),
                    DbValue::Str(format!("weight={};duid=d{set}-{d}", d % 5 + 1)),
                ]);
            }
        }
        let names: Vec<&str> = cols.iter().map(String::as_str).collect();
        tx.insert_rows(table, &names, &rows).await.expect("rows");
        tx.commit().await.expect("commit");
    });
    let mut current = Sets::default();
    for round in 1..=3 {
        let t = Instant::now();
        let specs = rt
            .block_on(ferrosip_mod_dispatcher::db::read(&url, table, &cols))
            .expect("read");
        let read = t.elapsed();
        let new = Sets::build(&specs);
        new.inherit(&current, true);
        current = new;
        println!(
            "reload {round}: {} destinations in {} sets in {:.1} ms ({:.1} ms reading the table)",
            current.all().count(),
            current.sets.len(),
            t.elapsed().as_secs_f64() * 1000.0,
            read.as_secs_f64() * 1000.0
        );
    }
    // What the table's size can change in a selection: finding the set (ds_select's
    // choice inside a set depends only on that set's own destinations).
    let specs = rt
        .block_on(ferrosip_mod_dispatcher::db::read(&url, table, &cols))
        .expect("read");
    let small = Sets::build(&specs[..per_set as usize]);
    let lookups = 10_000_000u32;
    let time_lookups = |sets: &Sets, ids: u32| {
        let t = Instant::now();
        let mut found = 0usize;
        let mut x = 0x2545_f491_u32;
        for _ in 0..lookups {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let id = (x % ids + 1) as i32;
            found += std::hint::black_box(sets.get(id)).map_or(0, |s| s.dests.len());
        }
        assert!(found > 0);
        t.elapsed().as_nanos() as f64 / f64::from(lookups)
    };
    println!(
        "finding a set: {:.1} ns among {} sets, {:.1} ns in a table of one set",
        time_lookups(&current, sets),
        current.sets.len(),
        time_lookups(&small, 1)
    );
}
