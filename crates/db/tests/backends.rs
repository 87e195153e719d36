//! The same CRUD, schema and injection checks against real SQLite, MariaDB, PostgreSQL and
//! db_text databases, plus what is specific to each (how times are stored, Kamailio's
//! db_text files).

mod common;

use common::TempDatabase;
use ferrosip_db::{schema, Cond, Db, DbError, DbKind, DbValue, Op};
use sqlx::Connection;

const T0: i64 = 1_700_000_000;
const INJECTION: &str = "x'); DROP TABLE location; -- \"`\\ ' OR '1'='1";

fn s(v: &str) -> DbValue {
    DbValue::Str(v.to_string())
}

const LOC_COLS: &[&str] = &[
    "ruid",
    "username",
    "domain",
    "contact",
    "received",
    "expires",
    "q",
    "callid",
    "cseq",
    "last_modified",
    "flags",
    "user_agent",
];

fn location_row(ruid: &str, user: &str, expires: i64, q: f64) -> Vec<DbValue> {
    vec![
        s(ruid),
        s(user),
        s("example.com"),
        s(&format!("sip:{user}@192.0.2.1:5060;transport=udp")),
        DbValue::Null,
        DbValue::Time(expires),
        DbValue::Double(q),
        s("call-1@host"),
        DbValue::Int(42),
        DbValue::Time(T0),
        DbValue::Int(0),
        s("SIPp/ünïcode"),
    ]
}

/// The checks every backend must pass.
async fn suite(db: &Db) {
    // Schema: only the tables of the modules asked for, `version` always, each once.
    let created = schema::init(db, Some(&["usrloc", "auth_db"]))
        .await
        .unwrap();
    assert_eq!(
        created,
        ["version", "location", "location_attrs", "subscriber"]
    );
    assert!(schema::init(db, Some(&["usrloc"]))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(db.table_version("location").await.unwrap(), Some(9));
    assert_eq!(db.table_version("location_attrs").await.unwrap(), Some(1));
    assert_eq!(db.table_version("subscriber").await.unwrap(), Some(7));
    assert_eq!(db.table_version("version").await.unwrap(), Some(1));
    assert_eq!(db.table_version("acc").await.unwrap(), None);

    // Insert and read back Time, Double, Null, Int and text (with an injection attempt
    // and non-ASCII) exactly.
    assert_eq!(
        db.insert(
            "location",
            LOC_COLS,
            &location_row("r1", "alice", T0 + 3600, 0.5)
        )
        .await
        .unwrap(),
        1
    );
    let mut evil = location_row("r2", INJECTION, T0 + 60, 1.0);
    evil[7] = s(INJECTION);
    db.insert("location", LOC_COLS, &evil).await.unwrap();

    let rows = db
        .select("location", LOC_COLS, &[Cond::eq("username", "alice")], None)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r[0], s("r1"));
    assert_eq!(r[3], s("sip:alice@192.0.2.1:5060;transport=udp"));
    assert!(r[4].is_null(), "received: {:?}", r[4]);
    assert_eq!(r[5].as_time(), Some(T0 + 3600), "expires: {:?}", r[5]);
    if db.kind() != DbKind::Text {
        // db_text keeps DATETIME columns as int, like kamctl's files; SQL backends give
        // a Time for a DATETIME column.
        assert_eq!(r[5], DbValue::Time(T0 + 3600));
        assert_eq!(r[9], DbValue::Time(T0));
    }
    assert_eq!(r[6], DbValue::Double(0.5));
    assert_eq!(r[8], DbValue::Int(42));
    assert_eq!(r[11], s("SIPp/ünïcode"));

    // The streamed read (SQLite's in-place scan, the drivers' row streams) gives the same
    // values as `select`, with a time bound in the condition.
    let later = [Cond::gt("expires", DbValue::Time(T0 + 600))];
    let mut streamed = Vec::new();
    db.select_each("location", LOC_COLS, &later, None, |row| {
        streamed.push(row.to_vec());
        std::ops::ControlFlow::Continue(())
    })
    .await
    .unwrap();
    assert_eq!(streamed, rows, "select_each and select");

    // The injection attempt is data: stored verbatim, matched only by itself.
    let rows = db
        .select(
            "location",
            &["username", "callid"],
            &[Cond::eq("username", INJECTION)],
            None,
        )
        .await
        .unwrap();
    assert_eq!(rows, vec![vec![s(INJECTION), s(INJECTION)]]);
    let none = db
        .select(
            "location",
            &["id"],
            &[Cond::eq("username", "' OR '1'='1")],
            None,
        )
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(
        db.select("location", &[], &[], None).await.unwrap().len(),
        2
    );

    // Comparisons on times and NULL, and ordering.
    let expired = db
        .select(
            "location",
            &["ruid"],
            &[Cond::lt("expires", DbValue::Time(T0 + 600))],
            None,
        )
        .await
        .unwrap();
    assert_eq!(expired, vec![vec![s("r2")]]);
    let by_q = db
        .select(
            "location",
            &["ruid", "q"],
            &[Cond::ge("q", 0.1)],
            Some("q DESC"),
        )
        .await
        .unwrap();
    assert_eq!(
        by_q,
        vec![
            vec![s("r2"), DbValue::Double(1.0)],
            vec![s("r1"), DbValue::Double(0.5)]
        ]
    );
    let null_received = db
        .select(
            "location",
            &["ruid"],
            &[Cond::eq("received", DbValue::Null)],
            Some("ruid"),
        )
        .await
        .unwrap();
    assert_eq!(null_received.len(), 2);
    let not_alice = db
        .select(
            "location",
            &["ruid"],
            &[Cond::new("username", Op::Ne, "alice")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(not_alice, vec![vec![s("r2")]]);

    // Update: Time, Str, NULL; the count of matched rows.
    let n = db
        .update(
            "location",
            &[Cond::eq("ruid", "r1")],
            &[
                ("expires", DbValue::Time(T0 + 7200)),
                ("received", s("sip:198.51.100.7:5060")),
                ("domain", DbValue::Null),
            ],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let r = db
        .select(
            "location",
            &["expires", "received", "domain"],
            &[Cond::eq("ruid", "r1")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r[0][0].as_time(), Some(T0 + 7200));
    assert_eq!(r[0][1], s("sip:198.51.100.7:5060"));
    assert!(r[0][2].is_null());
    assert_eq!(
        db.update(
            "location",
            &[Cond::eq("ruid", "nope")],
            &[("cseq", DbValue::Int(1))]
        )
        .await
        .unwrap(),
        0
    );

    // Replace: inserts a new key, then updates the same row (no duplicate, id kept).
    let mut row = location_row("r3", "bob", T0 + 100, 0.7);
    db.replace("location", &["ruid"], LOC_COLS, &row)
        .await
        .unwrap();
    let id_before = db
        .select("location", &["id"], &[Cond::eq("ruid", "r3")], None)
        .await
        .unwrap();
    assert_eq!(id_before.len(), 1);
    row[8] = DbValue::Int(43);
    row[5] = DbValue::Time(T0 + 200);
    db.replace("location", &["ruid"], LOC_COLS, &row)
        .await
        .unwrap();
    // Replacing with identical values matches the row too (MySQL counts it as unchanged).
    db.replace("location", &["ruid"], LOC_COLS, &row)
        .await
        .unwrap();
    let after = db
        .select(
            "location",
            &["id", "cseq", "expires"],
            &[Cond::eq("ruid", "r3")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0][0], id_before[0][0]);
    assert_eq!(after[0][1], DbValue::Int(43));
    assert_eq!(after[0][2].as_time(), Some(T0 + 200));
    // Replace on two key columns, no unique index on them.
    db.replace(
        "subscriber",
        &["username", "domain"],
        &["username", "domain", "ha1"],
        &[s("carol"), s("example.com"), s("aaaa")],
    )
    .await
    .unwrap();
    db.replace(
        "subscriber",
        &["username", "domain"],
        &["username", "domain", "ha1"],
        &[s("carol"), s("example.com"), s("bbbb")],
    )
    .await
    .unwrap();
    let subs = db
        .select(
            "subscriber",
            &["ha1", "password"],
            &[Cond::eq("username", "carol")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        subs,
        vec![vec![s("bbbb"), s("")]],
        "defaults apply to omitted columns"
    );

    // Delete.
    assert_eq!(
        db.delete("location", &[Cond::gt("cseq", 42)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        db.delete("location", &[Cond::eq("username", INJECTION)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        db.select("location", &["ruid"], &[], None).await.unwrap(),
        vec![vec![s("r1")]]
    );
    assert_eq!(db.delete("location", &[]).await.unwrap(), 1);

    // Identifiers from config are checked, never quoted blindly.
    fn bad_ident<T>(r: Result<T, DbError>) -> bool {
        matches!(r, Err(DbError::Identifier { .. }))
    }
    assert!(bad_ident(
        db.select("location; DROP TABLE x", &[], &[], None).await
    ));
    assert!(bad_ident(
        db.select("location", &["ruid\""], &[], None).await
    ));
    assert!(bad_ident(
        db.select("location", &["ruid"], &[Cond::eq("a`b", 1)], None)
            .await
    ));
    assert!(bad_ident(
        db.select("location", &["ruid"], &[], Some("ruid; DROP TABLE x"))
            .await
    ));
    assert!(bad_ident(
        db.insert("location", &["ruid) VALUES ('x'); --"], &[s("x")])
            .await
    ));
    assert!(bad_ident(
        db.update("location", &[], &[("a b", DbValue::Int(1))])
            .await
    ));
    // The tables are still there.
    assert_eq!(db.table_version("location").await.unwrap(), Some(9));

    // A missing table is an error that names it.
    let e = db
        .select("no_such_table", &[], &[], None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no_such_table"), "{e}");
    assert!(!e.is_connection_error());

    // Every table of every module can be created.
    let rest = schema::init(db, None).await.unwrap();
    for t in [
        "acc",
        "missed_calls",
        "dispatcher",
        "lcr_gw",
        "lcr_rule",
        "lcr_rule_target",
        "htable",
        "address",
        "aliases",
    ] {
        assert!(rest.iter().any(|c| c == t), "{t} not created: {rest:?}");
    }
    assert_eq!(db.table_version("lcr_gw").await.unwrap(), Some(3));
    assert_eq!(db.table_version("missed_calls").await.unwrap(), Some(4));
    // The created tables take rows with their Kamailio column names.
    db.insert(
        "acc",
        &[
            "method",
            "from_tag",
            "to_tag",
            "callid",
            "sip_code",
            "sip_reason",
            "time",
        ],
        &[
            s("INVITE"),
            s("ft"),
            s("tt"),
            s("cid"),
            s("200"),
            s("OK"),
            DbValue::Time(T0),
        ],
    )
    .await
    .unwrap();
    db.insert(
        "dispatcher",
        &[
            "setid",
            "destination",
            "flags",
            "priority",
            "attrs",
            "description",
        ],
        &[
            DbValue::Int(1),
            s("sip:127.0.0.1:5080"),
            DbValue::Int(0),
            DbValue::Int(0),
            s(""),
            s(""),
        ],
    )
    .await
    .unwrap();
    let acc = db
        .select("acc", &["time", "sip_code"], &[], None)
        .await
        .unwrap();
    assert_eq!(acc[0][0].as_time(), Some(T0));
    assert_eq!(acc[0][1], s("200"));
}

#[tokio::test]
async fn sqlite_suite_and_kamailio_time_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferrosip.db");
    let url = format!("sqlite://{}", path.display());
    let db = Db::connect(&url).await.unwrap();
    assert!(path.exists(), "the file is created when missing");
    assert_eq!(db.kind(), DbKind::Sqlite);
    suite(&db).await;

    // Kamailio's db_sqlite keeps DATETIME as 'YYYY-MM-DD HH:MM:SS' local-time text.
    db.insert(
        "location",
        &["ruid", "expires"],
        &[s("t"), DbValue::Time(T0)],
    )
    .await
    .unwrap();
    let mut raw = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let (ty, text): (String, String) =
        sqlx::query_as("SELECT typeof(expires), expires FROM location WHERE ruid = 't'")
            .fetch_one(&mut raw)
            .await
            .unwrap();
    assert_eq!(ty, "text");
    assert_eq!(text.len(), 19, "{text}");
    assert_eq!(&text[4..5], "-");
    assert_eq!(&text[10..11], " ");
    // A row written by Kamailio (text time) and one with an integer time both read as Time.
    sqlx::query("INSERT INTO location (ruid, expires) VALUES ('k', ?)")
        .bind(&text)
        .execute(&mut raw)
        .await
        .unwrap();
    let rows = db
        .select("location", &["expires"], &[Cond::eq("ruid", "k")], None)
        .await
        .unwrap();
    assert_eq!(rows[0][0], DbValue::Time(T0));
}

#[tokio::test]
async fn sqlite_in_memory() {
    let db = Db::connect("sqlite://:memory:").await.unwrap();
    schema::init(&db, Some(&["htable"])).await.unwrap();
    db.insert("htable", &["key_name", "key_value"], &[s("k"), s("v")])
        .await
        .unwrap();
    assert_eq!(
        db.select("htable", &["key_value"], &[], None)
            .await
            .unwrap(),
        vec![vec![s("v")]]
    );
}

#[tokio::test]
async fn mysql_suite_and_datetime_columns() {
    let tmp = TempDatabase::mysql();
    let db = Db::connect(&tmp.url).await.unwrap();
    assert_eq!(db.kind(), DbKind::Mysql);
    suite(&db).await;

    // Times are real DATETIME columns holding local wall-clock time, as Kamailio writes.
    db.insert(
        "location",
        &["ruid", "expires"],
        &[s("t"), DbValue::Time(T0)],
    )
    .await
    .unwrap();
    let mut raw = sqlx::MySqlConnection::connect(&tmp.url).await.unwrap();
    let (ty,): (String,) = sqlx::query_as(
        "SELECT DATA_TYPE FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'location' AND COLUMN_NAME = 'expires'",
    )
    .fetch_one(&mut raw)
    .await
    .unwrap();
    assert_eq!(ty.to_ascii_lowercase(), "datetime");
    let (unix,): (i64,) = sqlx::query_as(
        "SELECT CAST(UNIX_TIMESTAMP(expires) AS SIGNED) FROM location WHERE ruid = 't'",
    )
    .fetch_one(&mut raw)
    .await
    .unwrap();
    assert_eq!(unix, T0);
    // A DATETIME written by SQL text reads back as Time.
    sqlx::query("INSERT INTO location (ruid, expires) VALUES ('k', FROM_UNIXTIME(?))")
        .bind(T0 + 5)
        .execute(&mut raw)
        .await
        .unwrap();
    let rows = db
        .select(
            "location",
            &["expires", "q", "methods"],
            &[Cond::eq("ruid", "k")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        rows[0],
        vec![DbValue::Time(T0 + 5), DbValue::Double(1.0), DbValue::Null]
    );
}

#[tokio::test]
async fn postgres_suite_and_timestamp_columns() {
    let tmp = TempDatabase::postgres();
    let db = Db::connect(&tmp.url).await.unwrap();
    assert_eq!(db.kind(), DbKind::Postgres);
    suite(&db).await;

    db.insert(
        "location",
        &["ruid", "expires"],
        &[s("t"), DbValue::Time(T0)],
    )
    .await
    .unwrap();
    let mut raw = sqlx::PgConnection::connect(&tmp.url).await.unwrap();
    let (ty,): (String,) = sqlx::query_as(
        "SELECT data_type::text FROM information_schema.columns \
         WHERE table_name = 'location' AND column_name = 'expires'",
    )
    .fetch_one(&mut raw)
    .await
    .unwrap();
    assert_eq!(ty, "timestamp without time zone");
    let (unix,): (i64,) = sqlx::query_as(
        "SELECT EXTRACT(EPOCH FROM expires::timestamptz)::bigint FROM location WHERE ruid = 't'",
    )
    .fetch_one(&mut raw)
    .await
    .unwrap();
    assert_eq!(unix, T0);
    sqlx::query("INSERT INTO location (ruid, expires) VALUES ('k', to_timestamp($1)::timestamp)")
        .bind(T0 as f64 + 5.0)
        .execute(&mut raw)
        .await
        .unwrap();
    let rows = db
        .select(
            "location",
            &["expires", "q", "methods"],
            &[Cond::eq("ruid", "k")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        rows[0],
        vec![DbValue::Time(T0 + 5), DbValue::Double(1.0), DbValue::Null]
    );
}

#[tokio::test]
async fn db_text_suite() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::connect(&format!("text://{}", dir.path().display()))
        .await
        .unwrap();
    assert_eq!(db.kind(), DbKind::Text);
    suite(&db).await;
    // Files kamctl's dbtext layout would have.
    let header = std::fs::read_to_string(dir.path().join("location")).unwrap();
    assert!(
        header.starts_with("id(int,auto) ruid(string) username(string) domain(string,null) "),
        "{header}"
    );
    assert!(header.contains(" expires(int) q(double) "), "{header}");
}

#[tokio::test]
async fn db_text_reads_kamailio_files_and_writes_them_back() {
    let dir = tempfile::tempdir().unwrap();
    // As Kamailio's utils/kamctl/dbtext files are laid out (trailing space in the header,
    // id 0 in the version rows), with a row using every escape.
    std::fs::write(
        dir.path().join("version"),
        "id(int,auto) table_name(string) table_version(int) \n0:version:1\n0:subscriber:7\n0:location:9\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("subscriber"),
        "id(int,auto) username(string) domain(string) password(string) ha1(string) ha1b(string) \n\
         1:alice:example.com:se\\:cr\\\\et\\n2:c1d9b3d2a4a3b6e0b3c6a1f3e9d2c4b5:e4a1b3d2c4b5a6f7e8d9c0b1a2f3e4d5\n\
         2:bob:example.com::aa:bb\n",
    )
    .unwrap();
    let db = Db::connect(&format!("text://{}", dir.path().display()))
        .await
        .unwrap();
    assert_eq!(db.table_version("subscriber").await.unwrap(), Some(7));
    assert_eq!(db.table_version("location").await.unwrap(), Some(9));
    let rows = db
        .select(
            "subscriber",
            &["password", "ha1"],
            &[
                Cond::eq("username", "alice"),
                Cond::eq("domain", "example.com"),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![vec![
            s("se:cr\\et\n2"),
            s("c1d9b3d2a4a3b6e0b3c6a1f3e9d2c4b5")
        ]]
    );
    // An empty field of a non-null text column is the empty string.
    let bob = db
        .select(
            "subscriber",
            &["password"],
            &[Cond::eq("username", "bob")],
            None,
        )
        .await
        .unwrap();
    assert_eq!(bob, vec![vec![s("")]]);

    // A write goes through a temp file + rename and keeps Kamailio's format; the auto
    // column continues after the highest id.
    db.insert(
        "subscriber",
        &["username", "domain", "password", "ha1", "ha1b"],
        &[s("carol"), s("example.com"), s("a:b"), s("x"), s("y")],
    )
    .await
    .unwrap();
    let text = std::fs::read_to_string(dir.path().join("subscriber")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "id(int,auto) username(string) domain(string) password(string) ha1(string) ha1b(string)"
    );
    assert_eq!(lines[1], "1:alice:example.com:se\\:cr\\\\et\\n2:c1d9b3d2a4a3b6e0b3c6a1f3e9d2c4b5:e4a1b3d2c4b5a6f7e8d9c0b1a2f3e4d5");
    assert_eq!(lines[3], "3:carol:example.com:a\\:b:x:y");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");

    // An operator edits the file: the next query sees the change (mtime/size changed).
    std::fs::write(
        dir.path().join("subscriber"),
        "id(int,auto) username(string) domain(string) password(string) ha1(string) ha1b(string)\n7:dave:example.org:pw:h1:h2\n",
    )
    .unwrap();
    let rows = db
        .select("subscriber", &["id", "username"], &[], None)
        .await
        .unwrap();
    assert_eq!(rows, vec![vec![DbValue::Int(7), s("dave")]]);

    // A malformed file is an error naming the file and line, not a panic.
    std::fs::write(
        dir.path().join("broken"),
        "a(int) b(str)\n1:x\nnot-a-number:y\n",
    )
    .unwrap();
    let e = db
        .select("broken", &[], &[], None)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 3"), "{e}");
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers() {
    assert!(matches!(
        Db::connect("oracle://u:p@h/d").await,
        Err(DbError::Url { .. })
    ));
    // Nothing listens on port 1: a connect error that hides the password.
    let e = Db::connect("mysql://root:topsecret@127.0.0.1:1/x")
        .await
        .unwrap_err();
    assert!(e.is_connection_error(), "{e}");
    assert!(!e.to_string().contains("topsecret"), "{e}");
    let e = Db::connect("postgres://postgres:topsecret@127.0.0.1:1/x")
        .await
        .unwrap_err();
    assert!(!e.to_string().contains("topsecret"), "{e}");
    assert!(Db::connect("text:///nonexistent/dir/for/ferrosip")
        .await
        .is_err());
}
