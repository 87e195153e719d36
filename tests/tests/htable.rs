//! htable through the running server, on each database backend: a table loaded from
//! Kamailio's `htable` table (made by `ferrosip db init --modules htable`), with arrays and
//! integer values; `event_route[htable:mod-init]`; items expiring with
//! `event_route[htable:expired:<table>]` and `$shtrecord`; and the write-back
//! (`dbmode=1`) when the server stops. The table logic itself is unit-tested in
//! modules/htable/src/tests.rs.

use ferrosip_db::{Cond, Db, DbValue};
use ferrosip_tests::db::{Backend, TestDb};
use ferrosip_tests::{free_port, Launch};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn config(db_url: &str, port: u16) -> String {
    format!(
        r#"
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
loadmodule "sl.so"
loadmodule "textops.so"
loadmodule "htable.so"
modparam("htable", "db_url", "{db_url}")
modparam("htable", "timer_interval", 1)
modparam("htable", "htable", "t=>size=4;dbtable=htable;dbmode=1;")
modparam("htable", "htable", "e=>size=3;autoexpire=1;")
event_route[htable:mod-init] {{
    $sht(t=>init) = "done";
}}
event_route[htable:expired:e] {{
    $sht(t=>expired) = $shtrecord(key) + ":" + $shtrecord(value);
}}
request_route {{
    if ($rU == "set") {{
        $sht(t=>$hdr(X-K)) = $hdr(X-V);
    }} else if ($rU == "setint") {{
        $sht(t=>$hdr(X-K)) = $(hdr(X-V){{s.int}});
    }} else if ($rU == "short") {{
        $sht(e=>$hdr(X-K)) = $hdr(X-V);
    }}
    append_to_reply("X-Value: $sht(t=>$hdr(X-K))\r\n");
    sl_send_reply("200", "OK");
}}
"#
    )
}

/// Sends a MESSAGE to `user` with `key` (and `value`) and returns the reply's X-Value.
fn ask(port: u16, user: &str, key: &str, value: &str) -> String {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("socket");
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let local = sock.local_addr().expect("local");
    let request = format!(
        "MESSAGE sip:{user}@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-{}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:t@127.0.0.1>;tag=1\r\n\
         To: <sip:{user}@127.0.0.1>\r\n\
         Call-ID: ht-{}@test\r\n\
         CSeq: 1 MESSAGE\r\n\
         X-K: {key}\r\n\
         X-V: {value}\r\n\
         Content-Length: 0\r\n\r\n",
        local.port(),
        local.port()
    );
    let mut buf = [0u8; 4096];
    for _ in 0..3 {
        sock.send_to(request.as_bytes(), ("127.0.0.1", port))
            .expect("send");
        if let Ok(n) = sock.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            return text
                .lines()
                .find_map(|l| l.strip_prefix("X-Value:"))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("no X-Value in {text}"));
        }
    }
    panic!("no reply from the server");
}

const COLS: [&str; 5] = ["key_name", "key_type", "value_type", "key_value", "expires"];

fn row(name: &str, key_type: i64, value_type: i64, value: &str) -> Vec<DbValue> {
    vec![
        DbValue::Str(name.into()),
        DbValue::Int(key_type),
        DbValue::Int(value_type),
        DbValue::Str(value.into()),
        DbValue::Int(0),
    ]
}

fn htable_on(backend: Backend) {
    let dir = std::env::temp_dir().join(format!(
        "ferrosip-htable-{}-{backend:?}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let db = TestDb::with_users(backend, &dir, "htable", &[]);
    let rt = runtime();
    rt.block_on(async {
        let conn = Db::connect(&db.url).await.expect("connect");
        for r in [
            row("alice", 0, 0, "a-value"),
            row("n", 0, 1, "41"),
            row("arr", 1, 0, "x"),
            row("arr", 1, 0, "y"),
        ] {
            conn.insert("htable", &COLS, &r).await.expect("insert");
        }
    });
    let port = free_port();
    let cfg = dir.join("htable.cfg");
    std::fs::write(&cfg, config(&db.url, port)).expect("cfg");
    let server = Launch::new(&cfg)
        .log(dir.join("ferrosip.log"))
        .listening_on(port)
        .start();
    let checks = [
        ask(port, "get", "alice", ""),
        ask(port, "get", "n", ""),
        ask(port, "get", "arr[1]", ""),
        ask(port, "get", "arr::size", ""),
    ];
    assert_eq!(
        checks,
        ["a-value", "41", "y", "2"],
        "{backend:?}: loaded from the database\n{}",
        server.log_text()
    );
    // mod-init runs once the server is up (on its runtime): wait for it briefly.
    let deadline = Instant::now() + Duration::from_secs(5);
    while ask(port, "get", "init", "") != "done" {
        assert!(
            Instant::now() < deadline,
            "{backend:?}: event_route[htable:mod-init] did not run\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(ask(port, "set", "bob", "b-value"), "b-value");
    assert_eq!(ask(port, "setint", "count", "7"), "7");
    assert_eq!(ask(port, "set", "alice", "changed"), "changed");
    assert_eq!(
        ask(port, "short", "gone", "soon"),
        "<null>",
        "e=>gone is in the other table"
    );
    // autoexpire=1 and the sweeper every second: the event route records it.
    let deadline = Instant::now() + Duration::from_secs(6);
    while ask(port, "get", "expired", "") != "gone:soon" {
        assert!(
            Instant::now() < deadline,
            "{backend:?}: event_route[htable:expired:e] did not run\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = server.stop();
    // dbmode=1: the live items replaced the rows at stop.
    let rows = rt.block_on(async {
        let conn = Db::connect(&db.url).await.expect("connect");
        conn.select(
            "htable",
            &["key_name", "value_type", "key_value"],
            &[Cond::ne("key_name", "")],
            Some("key_name"),
        )
        .await
        .expect("select")
    });
    let got: Vec<(String, i64, String)> = rows
        .iter()
        .map(|r| {
            (
                r[0].as_str().unwrap_or_default().to_string(),
                r[1].as_int().unwrap_or(-1),
                r[2].as_str()
                    .map(str::to_string)
                    .or_else(|| r[2].as_int().map(|i| i.to_string()))
                    .unwrap_or_default(),
            )
        })
        .collect();
    let want: Vec<(String, i64, String)> = [
        ("alice", 0, "changed"),
        ("arr::size", 1, "2"),
        ("arr[0]", 0, "x"),
        ("arr[1]", 0, "y"),
        ("bob", 0, "b-value"),
        ("count", 1, "7"),
        ("expired", 0, "gone:soon"),
        ("init", 0, "done"),
        ("n", 1, "41"),
    ]
    .iter()
    .map(|(k, t, v)| (k.to_string(), *t, v.to_string()))
    .collect();
    assert_eq!(got, want, "{backend:?}: written back at stop\n{log}");
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn htable_on_sqlite() {
    htable_on(Backend::Sqlite);
}

#[test]
fn htable_on_db_text() {
    htable_on(Backend::DbText);
}

#[test]
fn htable_on_mariadb() {
    htable_on(Backend::Mariadb);
}

#[test]
fn htable_on_postgres() {
    htable_on(Backend::Postgres);
}
