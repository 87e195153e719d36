//! `ferrosip db init` and `ferrosip db add-user`/`del-user` on a real SQLite file and a
//! db_text directory, checked against MD5 values computed outside Ferrosip
//! (`echo -n 'alice:example.com:secret' | md5sum`).

use std::io::Write;
use std::process::{Command, Output, Stdio};

use ferrosip_db::{Cond, Db, DbValue};

fn ferrosip_db(args: &[&str]) -> Output {
    ferrosip_db_password(args, "")
}

/// `ferrosip db ARGS` with `password` on stdin (where add-user reads it).
fn ferrosip_db_password(args: &[&str], password: &str) -> Output {
    let mut child = Command::new(ferrosip_tests::ferrosip_bin())
        .arg("db")
        .args(args)
        .env_remove("SIP_DOMAIN")
        .env_remove("FERROSIP_DB_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ferrosip");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = writeln!(stdin, "{password}");
    }
    child.wait_with_output().expect("ferrosip ends")
}

fn ok(args: &[&str]) -> String {
    ok_password(args, "")
}

fn ok_password(args: &[&str], password: &str) -> String {
    let out = ferrosip_db_password(args, password);
    assert!(
        out.status.success(),
        "ferrosip db {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(v: &str) -> DbValue {
    DbValue::Str(v.into())
}

async fn subscriber(url: &str, user: &str) -> Vec<Vec<DbValue>> {
    let db = Db::connect(url).await.unwrap();
    db.select(
        "subscriber",
        &["domain", "password", "ha1", "ha1b"],
        &[Cond::eq("username", user)],
        None,
    )
    .await
    .unwrap()
}

async fn init_and_users(url: &str) {
    let out = ok(&["init", "--db-url", url, "--modules", "auth_db,usrloc"]);
    assert!(
        out.contains("created version, subscriber, location, location_attrs"),
        "{out}"
    );
    let out = ok(&["init", "--db-url", url, "--modules", "auth_db"]);
    assert!(out.contains("every table exists already"), "{out}");

    let out = ok_password(
        &["add-user", "alice@example.com", "--db-url", url],
        "secret",
    );
    assert!(
        out.contains("added alice@example.com (realm example.com)"),
        "{out}"
    );
    assert_eq!(
        subscriber(url, "alice").await,
        vec![vec![
            s("example.com"),
            s(""),
            s("b1726872c344b6dc8365b774f8fd6412"),
            s("c79656e4f06dbae9fdf6727654273c65"),
        ]]
    );

    // Another realm, and the password kept in clear when asked.
    ok_password(
        &[
            "add-user",
            "bob@example.org",
            "--db-url",
            url,
            "--realm",
            "sip.example.net",
            "--store-password",
        ],
        "pa:ss",
    );
    assert_eq!(
        subscriber(url, "bob").await,
        vec![vec![
            s("example.org"),
            s("pa:ss"),
            s("1ea38435e0bb689f9aa8bcbcc865206e"),
            s("5b61d6aad358a30e560e0bdcfcb52550"),
        ]]
    );

    // kamctl refuses an existing account; so do we.
    let dup = ferrosip_db_password(&["add-user", "alice@example.com", "--db-url", url], "other");
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));

    ok(&["del-user", "alice@example.com", "--db-url", url]);
    assert!(subscriber(url, "alice").await.is_empty());
    assert!(
        !ferrosip_db(&["del-user", "alice@example.com", "--db-url", url])
            .status
            .success()
    );
}

#[tokio::test]
async fn db_init_and_add_user_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("ferrosip.db").display());
    init_and_users(&url).await;
    let db = Db::connect(&url).await.unwrap();
    assert_eq!(db.table_version("subscriber").await.unwrap(), Some(7));
    assert_eq!(db.table_version("location").await.unwrap(), Some(9));
}

#[tokio::test]
async fn db_init_and_add_user_on_db_text() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("text://{}", dir.path().display());
    init_and_users(&url).await;
    let file = std::fs::read_to_string(dir.path().join("subscriber")).unwrap();
    assert!(file.contains(":pa\\:ss:"), "{file}");
}

#[test]
fn db_usage_errors() {
    // No domain anywhere.
    let out = ferrosip_db_password(
        &["add-user", "alice", "--db-url", "sqlite://:memory:"],
        "pw",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("USER@DOMAIN"));
    // A bad URL is reported without its password.
    let out = ferrosip_db(&["init", "--db-url", "mysql://u:hunter2@host"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid db_url") && !err.contains("hunter2"),
        "{err}"
    );
    // The SQL kamdbctl would run, per backend.
    let out = ferrosip_db(&[
        "init",
        "--db-url",
        "mysql://u@h/d",
        "--modules",
        "usrloc",
        "--print-sql",
    ]);
    let sql = String::from_utf8_lossy(&out.stdout);
    assert!(
        sql.contains("`expires` DATETIME DEFAULT '2030-05-28 21:32:15' NOT NULL"),
        "{sql}"
    );
    assert!(sql.contains("INSERT INTO version (table_name, table_version) VALUES ('location', 9);"));
}
