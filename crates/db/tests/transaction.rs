//! `Db::transaction`: writes become visible together at commit, and not at all without it,
//! against real SQLite, MariaDB and PostgreSQL.

mod common;

use common::TempDatabase;
use ferrosip_db::{schema, Cond, Db, DbValue};

fn s(v: &str) -> DbValue {
    DbValue::Str(v.to_string())
}

async fn rule_prefixes(db: &Db) -> Vec<String> {
    db.select("lcr_rule", &["prefix"], &[], Some("prefix"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r[0].to_string())
        .collect()
}

async fn transaction_suite(db: &Db) {
    schema::init(db, Some(&["lcr"])).await.unwrap();
    db.insert(
        "lcr_rule",
        &["lcr_id", "prefix"],
        &[DbValue::Int(1), s("31")],
    )
    .await
    .unwrap();

    // Replace the rows of instance 1 in one transaction; another connection sees the old
    // rows until the commit.
    let mut tx = db.transaction().await.unwrap();
    assert_eq!(
        tx.delete("lcr_rule", &[Cond::eq("lcr_id", 1_i64)])
            .await
            .unwrap(),
        1
    );
    let id1 = tx
        .insert_returning_id(
            "lcr_rule",
            &["lcr_id", "prefix"],
            &[DbValue::Int(1), s("32")],
            "id",
        )
        .await
        .unwrap();
    let id2 = tx
        .insert_returning_id(
            "lcr_rule",
            &["lcr_id", "prefix"],
            &[DbValue::Int(1), s("33")],
            "id",
        )
        .await
        .unwrap();
    assert!(id2 > id1 && id1 > 0, "{id1} {id2}");
    tx.insert(
        "lcr_rule_target",
        &["lcr_id", "rule_id", "gw_id", "priority"],
        &[
            DbValue::Int(1),
            DbValue::Int(id1),
            DbValue::Int(7),
            DbValue::Int(0),
        ],
    )
    .await
    .unwrap();
    assert_eq!(rule_prefixes(db).await, ["31"], "not visible before commit");
    tx.commit().await.unwrap();
    assert_eq!(rule_prefixes(db).await, ["32", "33"]);
    let ids = db
        .select("lcr_rule", &["id"], &[Cond::eq("prefix", "32")], None)
        .await
        .unwrap();
    assert_eq!(ids[0][0].as_int(), Some(id1));

    // Dropped without commit: rolled back.
    {
        let mut tx = db.transaction().await.unwrap();
        tx.delete("lcr_rule", &[]).await.unwrap();
    }
    assert_eq!(rule_prefixes(db).await, ["32", "33"]);

    // A failing statement leaves the earlier ones of the transaction uncommitted.
    let mut tx = db.transaction().await.unwrap();
    tx.delete("lcr_rule", &[]).await.unwrap();
    assert!(tx
        .insert("no_such_table", &["x"], &[DbValue::Int(1)])
        .await
        .is_err());
    drop(tx);
    assert_eq!(rule_prefixes(db).await, ["32", "33"]);

    bulk_and_streamed(db).await;
}

/// `insert_rows` (multi-row INSERTs, more rows than one statement carries, NULLs among
/// the values) and `select_each` (every row once, in a reused buffer, stoppable), inside
/// and outside a transaction.
async fn bulk_and_streamed(db: &Db) {
    let n = 12_345usize;
    let cols = ["lcr_id", "prefix", "from_uri", "stopper"];
    let mut values = Vec::with_capacity(n * cols.len());
    for i in 0..n {
        values.extend([
            DbValue::Int(2),
            s(&format!("9{i}")),
            if i % 2 == 0 {
                DbValue::Null
            } else {
                s("^sip:a@")
            },
            DbValue::Int((i % 2) as i64),
        ]);
    }
    let mut tx = db.transaction().await.unwrap();
    assert_eq!(
        tx.insert_rows("lcr_rule", &cols, &values).await.unwrap(),
        n as u64
    );
    assert!(
        tx.insert_rows("lcr_rule", &cols, &values[..3])
            .await
            .is_err(),
        "values that do not fill whole rows"
    );
    let mut seen_in_tx = 0;
    let handed = tx
        .select_each(
            "lcr_rule",
            &["prefix"],
            &[Cond::eq("lcr_id", 2_i64)],
            |_| {
                seen_in_tx += 1;
                std::ops::ControlFlow::Continue(())
            },
        )
        .await
        .unwrap();
    assert_eq!((handed, seen_in_tx), (n as u64, n));
    let outside = db
        .select_each(
            "lcr_rule",
            &["id"],
            &[Cond::eq("lcr_id", 2_i64)],
            None,
            |_| std::ops::ControlFlow::Continue(()),
        )
        .await
        .unwrap();
    assert_eq!(outside, 0, "not visible before commit");
    tx.commit().await.unwrap();

    let mut prefixes = Vec::new();
    let mut with_regex = 0;
    let handed = db
        .select_each(
            "lcr_rule",
            &["prefix", "from_uri", "stopper"],
            &[Cond::eq("lcr_id", 2_i64)],
            Some("id"),
            |row| {
                prefixes.push(row[0].to_string());
                match (&row[1], row[2].as_int()) {
                    (DbValue::Null, Some(0)) => {}
                    (DbValue::Str(r), Some(1)) if r == "^sip:a@" => with_regex += 1,
                    other => panic!("row {row:?}: {other:?}"),
                }
                std::ops::ControlFlow::Continue(())
            },
        )
        .await
        .unwrap();
    assert_eq!(handed, n as u64);
    assert_eq!(with_regex, n / 2);
    let expected: Vec<String> = (0..n).map(|i| format!("9{i}")).collect();
    assert_eq!(prefixes, expected, "every row once, in id order");

    let mut first = Vec::new();
    let handed = db
        .select_each(
            "lcr_rule",
            &["prefix"],
            &[Cond::eq("lcr_id", 2_i64)],
            Some("id"),
            |row| {
                first.push(row[0].to_string());
                if first.len() == 3 {
                    std::ops::ControlFlow::Break(())
                } else {
                    std::ops::ControlFlow::Continue(())
                }
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (handed, first),
        (3, vec!["90".to_string(), "91".into(), "92".into()])
    );
    assert!(db
        .select_each("no_such_table", &["x"], &[], None, |_| {
            std::ops::ControlFlow::Continue(())
        })
        .await
        .is_err());
}

#[tokio::test]
async fn sqlite_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tx.db").display());
    let db = Db::connect(&url).await.unwrap();
    transaction_suite(&db).await;
}

// Multi-threaded: the rollback of a transaction dropped without commit is finished by a
// pool task, which must be able to run while the guard's DROP DATABASE waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_transaction() {
    let tmp = TempDatabase::mysql();
    let db = Db::connect(&tmp.url).await.unwrap();
    transaction_suite(&db).await;
}

// Multi-threaded: the rollback of a transaction dropped without commit is finished by a
// pool task, which must be able to run while the guard's DROP DATABASE waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_transaction() {
    let tmp = TempDatabase::postgres();
    let db = Db::connect(&tmp.url).await.unwrap();
    transaction_suite(&db).await;
}

#[tokio::test]
async fn db_text_has_no_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("text://{}", dir.path().display()))
        .await
        .unwrap();
    assert!(db.transaction().await.is_err());
}
