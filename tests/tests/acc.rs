//! `acc` through the running proxy, driven by SIPp: a record per accounted transaction
//! (`db_flag`) and a missed call per failed one (`db_missed_flag`, a busy UAS's 486 and
//! the proxy's own 408), with `db_extra` columns, on SQLite, MariaDB and PostgreSQL (each
//! test creates its database with `ferrosip db init --modules acc` and drops it), the
//! log records with `log_extra`, and the outage test: the database is stopped in the
//! middle of a SIPp run and started again; afterwards rows = calls, each once, and every
//! call completed (SIP never waited on the database).
//!
//! The outage tests never touch the machine's own MariaDB and PostgreSQL: each starts a
//! private server (its own data directory in the test's directory, its own port) and
//! ends it by its PID.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ferrosip_db::{Db, DbValue};
use ferrosip_tests::db::{Backend, TestDb};
use ferrosip_tests::private_db::PrivateServer;
use ferrosip_tests::sipp::{log_tails, traced_sipp};
use ferrosip_tests::{free_port, have_sipp, wait_exit, Launch};

fn scenario(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    match name {
        "call_uac.xml" | "call_uas.xml" => dir.join(name),
        _ => dir.join("acc").join(name),
    }
}

/// The proxy's config: INVITEs get the accounting flags; `$rU` picks the callee: "busy"
/// a UAS answering 486, "nobody" a socket that never answers (the proxy's 408),
/// anything else the answering UAS.
fn config(db_url: &str, spool: &Path, port: u16, uas: u16, busy: u16, dead: u16) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=2
listen=127.0.0.1:{port}
auto_aliases=no
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "textops.so"
loadmodule "acc.so"
modparam("tm", "fr_timer", 1000)
modparam("tm", "fr_inv_timer", 5000)
modparam("acc", "db_url", "{db_url}")
modparam("acc", "log_flag", 2)
modparam("acc", "log_missed_flag", 3)
modparam("acc", "db_flag", 2)
modparam("acc", "db_missed_flag", 3)
modparam("acc", "log_extra", "src=$si;callee=$rU")
modparam("acc", "db_extra", "src_ip=$si;callee=$rU")
modparam("acc", "spool_dir", "{spool}")
modparam("acc", "db_timeout", 1000)

request_route {{
    if (is_method("ACK|BYE") && loose_route()) {{
        t_relay();
        exit;
    }}
    if (is_method("INVITE")) {{
        record_route();
        setflag(2);
        setflag(3);
    }}
    if ($rU == "busy") {{
        $du = "sip:127.0.0.1:{busy}";
    }} else if ($rU == "nobody") {{
        $du = "sip:127.0.0.1:{dead}";
    }} else {{
        $du = "sip:127.0.0.1:{uas}";
    }}
    t_relay();
}}
"#,
        spool = spool.display()
    )
}

/// A test's directory: removed when the test passes, kept (and named) otherwise.
struct TestDir {
    path: PathBuf,
    passed: bool,
}

impl TestDir {
    fn new(name: &str) -> TestDir {
        let path = std::env::temp_dir().join(format!("ferrosip-acc-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("test dir");
        TestDir {
            path,
            passed: false,
        }
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if self.passed {
            let _ = std::fs::remove_dir_all(&self.path);
        } else {
            eprintln!("test files kept in {}", self.path.display());
        }
    }
}

/// Runs one SQL statement on the database of `url` with its command-line client.
fn exec_sql(url: &str, sql: &str) {
    let u = ferrosip_db::DbUrl::parse(url).expect("db url");
    let port = |default: u16| u.port.unwrap_or(default).to_string();
    let mut cmd = match u.kind {
        ferrosip_db::DbKind::Sqlite => {
            let mut c = Command::new("sqlite3");
            c.arg(u.path.clone().expect("sqlite path")).arg(sql);
            c
        }
        ferrosip_db::DbKind::Mysql => {
            let mut c = Command::new("mysql");
            c.args(["-h", "127.0.0.1", "-P", &port(3306), "-u", "root"])
                .arg(u.database.clone().expect("database"))
                .args(["-e", sql]);
            c
        }
        ferrosip_db::DbKind::Postgres => {
            let mut c = Command::new("psql");
            c.args(["-h", "127.0.0.1", "-p", &port(5432), "-U", "postgres", "-d"])
                .arg(u.database.clone().expect("database"))
                .args(["-v", "ON_ERROR_STOP=1", "-c", sql]);
            c
        }
        ferrosip_db::DbKind::Text => panic!("no SQL on db_text"),
    };
    let out = cmd.output().expect("database client runs");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The tables with the `db_extra` columns added, as an operator adds them.
fn add_extra_columns(url: &str) {
    for table in ["acc", "missed_calls"] {
        for col in ["src_ip", "callee"] {
            exec_sql(
                url,
                &format!("ALTER TABLE {table} ADD COLUMN {col} VARCHAR(64) DEFAULT NULL"),
            );
        }
    }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// (callid, sip_code, src_ip, callee) of every row of `table`.
fn rows(url: &str, table: &str) -> Vec<(String, String, String, String)> {
    block_on(async {
        let db = Db::connect(url).await.expect("connect");
        db.select(
            table,
            &["callid", "sip_code", "src_ip", "callee"],
            &[],
            None,
        )
        .await
        .expect("select")
        .into_iter()
        .map(|r| {
            let s = |v: &DbValue| v.as_str().unwrap_or("").to_string();
            (s(&r[0]), s(&r[1]), s(&r[2]), s(&r[3]))
        })
        .collect()
    })
}

/// Runs `calls` SIPp calls of `uac` through the proxy at `rate` calls/s; all must pass.
fn run_uac(
    dir: &Path,
    tag: &str,
    uac: &str,
    service: &str,
    port: u16,
    calls: u32,
    rate: u32,
) -> Child {
    traced_sipp(dir, tag, &scenario(uac), &format!("127.0.0.1:{port}"))
        .args(["-p", &free_port().to_string()])
        .args(["-s", service])
        .args(["-m", &calls.to_string(), "-r", &rate.to_string()])
        .args(["-timeout", "60", "-timeout_error"])
        .spawn()
        .expect("sipp uac")
}

fn uas(dir: &Path, tag: &str, xml: &str, port: u16) -> Child {
    traced_sipp(dir, tag, &scenario(xml), "")
        .args(["-p", &port.to_string()])
        .spawn()
        .expect("sipp uas")
}

struct Peers {
    uas: Child,
    busy: Child,
    /// Bound and never read: the proxy's INVITEs there get no answer (408).
    _dead: UdpSocket,
    ports: (u16, u16, u16),
}

impl Peers {
    fn start(dir: &Path) -> Peers {
        let (u, b) = (free_port(), free_port());
        let dead = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let d = dead.local_addr().expect("addr").port();
        Peers {
            uas: uas(dir, "uas", "call_uas.xml", u),
            busy: uas(dir, "busy", "uas_busy.xml", b),
            _dead: dead,
            ports: (u, b, d),
        }
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        for c in [&mut self.uas, &mut self.busy] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start_proxy(dir: &Path, db_url: &str, peers: &Peers) -> (ferrosip_tests::Proxy, u16) {
    let port = free_port();
    let (u, b, d) = peers.ports;
    let cfg = dir.join("proxy.cfg");
    std::fs::write(&cfg, config(db_url, &dir.join("spool"), port, u, b, d)).expect("cfg");
    let proxy = Launch::new(&cfg)
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .terminate_on_drop()
        .start();
    (proxy, port)
}

/// Polls `count` until it reaches `want` (records are written asynchronously), at most
/// `limit`; returns the last count.
fn wait_for(limit: Duration, want: usize, mut count: impl FnMut() -> usize) -> usize {
    let deadline = Instant::now() + limit;
    loop {
        let n = count();
        if n >= want || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

const ANSWERED: u32 = 20;
const BUSY: u32 = 10;
const TIMEOUT: u32 = 3;

fn calls_are_accounted(backend: Backend) {
    if !have_sipp() {
        return;
    }
    let mut dir = TestDir::new(&format!("{backend:?}"));
    let db = TestDb::with_users(backend, &dir.path, "acc", &[]);
    add_extra_columns(&db.url);
    let peers = Peers::start(&dir.path);
    let (proxy, port) = start_proxy(&dir.path, &db.url, &peers);
    let runs = [
        ("answered", "call_uac.xml", "alice", ANSWERED),
        ("busy", "uac_rejected.xml", "busy", BUSY),
        ("nobody", "uac_rejected.xml", "nobody", TIMEOUT),
    ];
    for (tag, xml, service, calls) in runs {
        let uac = run_uac(&dir.path, tag, xml, service, port, calls, 20);
        let code = wait_exit(uac, Duration::from_secs(90));
        assert_eq!(
            code,
            Some(0),
            "{tag}: SIPp calls failed\n{}",
            log_tails(&dir.path)
        );
    }
    let acc = wait_for(Duration::from_secs(20), ANSWERED as usize, || {
        rows(&db.url, "acc").len()
    });
    let missed_want = (BUSY + TIMEOUT) as usize;
    let missed = wait_for(Duration::from_secs(20), missed_want, || {
        rows(&db.url, "missed_calls").len()
    });
    let log = proxy.stop();
    assert_eq!(acc, ANSWERED as usize, "acc rows\n{log}");
    assert_eq!(missed, missed_want, "missed_calls rows\n{log}");
    let acc = rows(&db.url, "acc");
    assert!(
        acc.iter()
            .all(|(_, code, src, callee)| code == "200" && src == "127.0.0.1" && callee == "alice"),
        "{acc:?}"
    );
    let mut callids: Vec<_> = acc.iter().map(|r| r.0.clone()).collect();
    callids.sort();
    callids.dedup();
    assert_eq!(callids.len(), ANSWERED as usize, "one row per call");
    let missed = rows(&db.url, "missed_calls");
    let count = |code: &str, who: &str| {
        missed
            .iter()
            .filter(|(_, c, src, callee)| c == code && callee == who && src == "127.0.0.1")
            .count()
    };
    assert_eq!(count("486", "busy"), BUSY as usize, "{missed:?}");
    assert_eq!(count("408", "nobody"), TIMEOUT as usize, "{missed:?}");
    // The log records, with log_extra.
    let answered = log
        .lines()
        .filter(|l| {
            l.contains("ACC: transaction answered:")
                && l.contains("code=200;reason=OK;src=127.0.0.1;callee=alice")
        })
        .count();
    assert_eq!(answered, ANSWERED as usize, "{log}");
    let missed_log = log
        .lines()
        .filter(|l| l.contains("ACC: call missed:") && l.contains("code=486;"))
        .count();
    assert_eq!(missed_log, BUSY as usize, "{log}");
    dir.passed = true;
}

#[test]
fn calls_are_accounted_in_sqlite() {
    calls_are_accounted(Backend::Sqlite);
}

#[test]
fn calls_are_accounted_in_mariadb() {
    calls_are_accounted(Backend::Mariadb);
}

#[test]
fn calls_are_accounted_in_postgresql() {
    calls_are_accounted(Backend::Postgres);
}

const OUTAGE_CALLS: u32 = 400;
const OUTAGE_RATE: u32 = 40;

/// Calls go on while the database is stopped and started again; afterwards every call
/// has its row, once.
fn no_record_lost_across_an_outage(backend: Backend) {
    if !have_sipp() {
        return;
    }
    let mut dir = TestDir::new(&format!("outage-{backend:?}"));
    let mut server = match backend {
        Backend::Postgres => PrivateServer::postgres(&dir.path),
        _ => PrivateServer::mariadb(&dir.path, "acc"),
    }
    .expect("a private database server");
    ferrosip_tests::db::ferrosip_db(&["init", "--db-url", &server.url, "--modules", "acc"]);
    add_extra_columns(&server.url);
    let peers = Peers::start(&dir.path);
    let (proxy, port) = start_proxy(&dir.path, &server.url, &peers);
    let uac = run_uac(
        &dir.path,
        "answered",
        "call_uac.xml",
        "alice",
        port,
        OUTAGE_CALLS,
        OUTAGE_RATE,
    );
    // 10 s of calls: the database goes away after 3 s and is back 4 s later.
    std::thread::sleep(Duration::from_secs(3));
    server.stop();
    std::thread::sleep(Duration::from_secs(4));
    server.run();
    let code = wait_exit(uac, Duration::from_secs(120));
    assert_eq!(code, Some(0), "SIPp calls failed\n{}", log_tails(&dir.path));
    let n = wait_for(Duration::from_secs(60), OUTAGE_CALLS as usize, || {
        rows(&server.url, "acc").len()
    });
    let log = proxy.stop();
    assert!(
        log.contains("records go to the spool"),
        "the outage was not noticed: {log}"
    );
    let acc = rows(&server.url, "acc");
    let mut callids: Vec<_> = acc.iter().map(|r| r.0.clone()).collect();
    callids.sort();
    callids.dedup();
    assert_eq!(n, OUTAGE_CALLS as usize, "rows after the outage\n{log}");
    assert_eq!(acc.len(), OUTAGE_CALLS as usize, "rows\n{log}");
    assert_eq!(callids.len(), OUTAGE_CALLS as usize, "duplicates\n{log}");
    let spooled: Vec<_> = std::fs::read_dir(dir.path.join("spool"))
        .expect("spool dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    assert!(spooled.is_empty(), "spool left: {spooled:?}");
    drop(server);
    dir.passed = true;
}

#[test]
fn no_record_lost_when_postgresql_stops_mid_run() {
    no_record_lost_across_an_outage(Backend::Postgres);
}

#[test]
fn no_record_lost_when_mariadb_stops_mid_run() {
    no_record_lost_across_an_outage(Backend::Mariadb);
}
