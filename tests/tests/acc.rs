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
//!
//! Kamailio's finer semantics (`kamailio_semantics_*`): early media (a record for the 183
//! with SDP), `report_ack` (a record for the ACK of the 2xx), `detect_direction` (the
//! callee's BYE recorded with the caller's tags in `from_tag`), `report_cancels` (the
//! CANCEL's own record), missed calls at the first failed attempt only unless
//! failure_route sets the flag again, `reason_from_hf` (the Reason header of a 603) and
//! `time_mode` 1 (SQLite: seconds and microseconds columns) and 3 (PostgreSQL: a
//! formatted time column).

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

/// The semantics proxy: `$rU` picks the callee ("early" answers with early media and
/// hangs up itself, "decline" answers 603 with a Reason header, "ring" rings until the
/// caller CANCELs, "serial" and "serial-again" are busy and then fail over to a socket
/// that never answers; "serial-again" sets the missed-call flag again in failure_route
/// and fails over to the declining callee).
fn semantics_config(
    db_url: &str,
    spool: &Path,
    port: u16,
    time_mode: &str,
    peers: &SemanticsPeers,
) -> String {
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
modparam("acc", "early_media", 1)
modparam("acc", "report_ack", 1)
modparam("acc", "report_cancels", 1)
modparam("acc", "detect_direction", 1)
modparam("acc", "reason_from_hf", 1)
{time_mode}
modparam("acc", "db_extra", "callee=$rU")
modparam("acc", "spool_dir", "{spool}")

request_route {{
    if ($tt != $null) {{
        if (loose_route()) {{
            if (is_method("BYE")) {{
                setflag(2);
            }}
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            # the ACK of a negative reply ends at its transaction
            t_check_trans();
        }}
        exit;
    }}
    if (is_method("CANCEL")) {{
        setflag(2);
        t_relay();
        exit;
    }}
    record_route();
    setflag(2);
    setflag(3);
    if ($rU == "early") {{
        $du = "sip:127.0.0.1:{early}";
    }} else if ($rU == "decline") {{
        $du = "sip:127.0.0.1:{decline}";
    }} else if ($rU == "ring") {{
        $du = "sip:127.0.0.1:{ring}";
    }} else {{
        $du = "sip:127.0.0.1:{busy}";
        t_on_failure("NEXT");
    }}
    t_relay();
}}

failure_route[NEXT] {{
    if ($rU == "serial-again") {{
        setflag(3);
        $du = "sip:127.0.0.1:{decline}";
    }} else {{
        $du = "sip:127.0.0.1:{dead}";
    }}
    t_relay();
}}
"#,
        spool = spool.display(),
        early = peers.ports[0],
        decline = peers.ports[1],
        ring = peers.ports[2],
        busy = peers.ports[3],
        dead = peers.ports[4],
    )
}

struct SemanticsPeers {
    uas: Vec<Child>,
    _dead: UdpSocket,
    /// early, decline, ring, busy, dead.
    ports: [u16; 5],
}

impl SemanticsPeers {
    fn start(dir: &Path) -> SemanticsPeers {
        let dead = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let ports = [
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            dead.local_addr().expect("addr").port(),
        ];
        let uas = vec![
            uas(dir, "early", "uas_early_media.xml", ports[0]),
            uas(dir, "decline", "uas_decline_reason.xml", ports[1]),
            uas(dir, "ring", "uas_ring_cancel.xml", ports[2]),
            uas(dir, "busy", "uas_busy.xml", ports[3]),
        ];
        SemanticsPeers {
            uas,
            _dead: dead,
            ports,
        }
    }
}

impl Drop for SemanticsPeers {
    fn drop(&mut self) {
        for c in &mut self.uas {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn text(v: &DbValue) -> String {
    match v {
        DbValue::Null => String::new(),
        DbValue::Int(i) | DbValue::Time(i) => i.to_string(),
        DbValue::Double(d) => d.to_string(),
        DbValue::Str(s) => s.clone(),
    }
}

/// `cols` of every row of `table`, as text.
fn select(url: &str, table: &str, cols: &[&str]) -> Vec<Vec<String>> {
    block_on(async {
        let db = Db::connect(url).await.expect("connect");
        db.select(table, cols, &[], None)
            .await
            .expect("select")
            .into_iter()
            .map(|r| r.iter().map(text).collect())
            .collect()
    })
}

/// (method, code, reason, callee) of the rows of `table`, counted and sorted.
fn tally(rows: &[Vec<String>]) -> Vec<(String, String, String, String, usize)> {
    let mut keys: Vec<(String, String, String, String)> = rows
        .iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[2].clone(), r[3].clone()))
        .collect();
    keys.sort();
    let mut out: Vec<(String, String, String, String, usize)> = Vec::new();
    for k in keys {
        match out.last_mut() {
            Some(last) if (&last.0, &last.1, &last.2, &last.3) == (&k.0, &k.1, &k.2, &k.3) => {
                last.4 += 1
            }
            _ => out.push((k.0, k.1, k.2, k.3, 1)),
        }
    }
    out
}

fn t(
    method: &str,
    code: &str,
    reason: &str,
    callee: &str,
    n: usize,
) -> (String, String, String, String, usize) {
    (method.into(), code.into(), reason.into(), callee.into(), n)
}

const EARLY: u32 = 3;
/// The Reason header of uas_decline_reason.xml's 603 (reason_from_hf).
const DECLINE_REASON: &str = "Q.850;cause=21;text=\"Call rejected\"";
const PAIRS: u32 = 2;

fn kamailio_semantics(backend: Backend, time_mode: u8) {
    if !have_sipp() {
        return;
    }
    let mut dir = TestDir::new(&format!("semantics-{backend:?}"));
    let db = TestDb::with_users(backend, &dir.path, "acc", &[]);
    let (time_cfg, time_cols): (&str, &[(&str, &str)]) = match time_mode {
        1 => (
            "modparam(\"acc\", \"time_mode\", 1)",
            &[("time_attr", "INTEGER"), ("time_exten", "INTEGER")],
        ),
        _ => (
            "modparam(\"acc\", \"time_mode\", 3)\nmodparam(\"acc\", \"time_format\", \"%Y-%m-%d %H:%M:%S\")",
            &[("time_attr", "VARCHAR(64)")],
        ),
    };
    for table in ["acc", "missed_calls"] {
        let mut cols = vec![("callee", "VARCHAR(64)")];
        cols.extend_from_slice(time_cols);
        for (col, ty) in cols {
            exec_sql(
                &db.url,
                &format!("ALTER TABLE {table} ADD COLUMN {col} {ty} DEFAULT NULL"),
            );
        }
    }
    let peers = SemanticsPeers::start(&dir.path);
    let port = free_port();
    let cfg = dir.path.join("proxy.cfg");
    std::fs::write(
        &cfg,
        semantics_config(&db.url, &dir.path.join("spool"), port, time_cfg, &peers),
    )
    .expect("cfg");
    let proxy = Launch::new(&cfg)
        .log(dir.path.join("proxy.log"))
        .listening_on(port)
        .terminate_on_drop()
        .start();
    let started = super_now();
    let cancel =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/stateful/uac_cancel.xml");
    let runs: [(&str, &str, u32); 5] = [
        ("early", "uac_early_media.xml", EARLY),
        ("decline", "uac_rejected.xml", PAIRS),
        ("ring", "", PAIRS),
        ("serial", "uac_rejected.xml", PAIRS),
        ("serial-again", "uac_rejected.xml", PAIRS),
    ];
    for (service, xml, calls) in runs {
        let uac = if xml.is_empty() {
            traced_sipp(&dir.path, service, &cancel, &format!("127.0.0.1:{port}"))
                .args(["-p", &free_port().to_string(), "-s", service])
                .args(["-m", &calls.to_string(), "-r", "10"])
                .args(["-timeout", "60", "-timeout_error"])
                .spawn()
                .expect("sipp uac")
        } else {
            run_uac(&dir.path, service, xml, service, port, calls, 10)
        };
        let code = wait_exit(uac, Duration::from_secs(60));
        assert_eq!(
            code,
            Some(0),
            "{service}: SIPp calls failed\n{}",
            log_tails(&dir.path)
        );
    }
    let want_acc = (EARLY * 4 + PAIRS) as usize;
    let want_missed = (PAIRS * 5) as usize;
    let cols = [
        "method",
        "sip_code",
        "sip_reason",
        "callee",
        "from_tag",
        "to_tag",
        "callid",
        "time_attr",
    ];
    let acc_n = wait_for(Duration::from_secs(20), want_acc, || {
        select(&db.url, "acc", &["id"]).len()
    });
    let missed_n = wait_for(Duration::from_secs(20), want_missed, || {
        select(&db.url, "missed_calls", &["id"]).len()
    });
    let ended = super_now();
    let log = proxy.stop();
    let acc = select(&db.url, "acc", &cols);
    let missed = select(&db.url, "missed_calls", &cols);
    assert_eq!(
        (acc_n, missed_n),
        (want_acc, want_missed),
        "{acc:?}\n{missed:?}\n{log}"
    );
    let e = EARLY as usize;
    let p = PAIRS as usize;
    // The ACK's Request-URI is the callee's Contact, the callee's BYE's the caller's.
    assert_eq!(
        tally(&acc),
        vec![
            t("ACK", "200", "OK", "callee", e),
            t("BYE", "200", "OK", "caller", e),
            t("CANCEL", "200", "Canceling", "ring", p),
            t("INVITE", "183", "Session Progress", "early", e),
            t("INVITE", "200", "OK", "early", e),
        ],
        "{acc:?}\n{log}"
    );
    assert_eq!(
        tally(&missed),
        vec![
            t("INVITE", "486", "Busy Here", "serial", p),
            t("INVITE", "486", "Busy Here", "serial-again", p),
            t("INVITE", "487", "Request Terminated", "ring", p),
            t("INVITE", "603", DECLINE_REASON, "decline", p),
            t("INVITE", "603", DECLINE_REASON, "serial-again", p),
        ],
        "{missed:?}\n{log}"
    );
    // detect_direction: every record of an early call, the callee's BYE included, has
    // the caller's tag (e<n>) as from_tag and the callee's (u<n>) as to_tag.
    for r in acc.iter().filter(|r| r[0] != "CANCEL") {
        assert!(
            r[4].starts_with('e') && r[5].starts_with('u'),
            "tags of {r:?}\n{log}"
        );
    }
    // The time columns of the mode, and the log's form of it.
    for r in acc.iter().chain(&missed) {
        match time_mode {
            1 => {
                let secs: i64 = r[7].parse().unwrap_or(0);
                assert!((started..=ended).contains(&secs), "time_attr of {r:?}");
            }
            _ => {
                let b = r[7].as_bytes();
                let shape = b.len() == 19
                    && b.iter().enumerate().all(|(i, c)| match i {
                        4 | 7 => *c == b'-',
                        10 => *c == b' ',
                        13 | 16 => *c == b':',
                        _ => c.is_ascii_digit(),
                    });
                assert!(shape, "time_attr of {r:?}");
            }
        }
    }
    let time_key = if time_mode == 1 {
        ";time_exten="
    } else {
        ";time_attr="
    };
    let acked = log
        .lines()
        .filter(|l| l.contains("ACC: request acknowledged:") && l.contains(time_key))
        .count();
    assert_eq!(acked, e, "{log}");
    if time_mode == 1 {
        let exten = select(&db.url, "acc", &["time_exten"]);
        assert!(
            exten.iter().all(|r| r[0]
                .parse::<i64>()
                .is_ok_and(|u| (0..1_000_000).contains(&u))),
            "{exten:?}"
        );
    }
    dir.passed = true;
}

fn super_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[test]
fn kamailio_semantics_in_sqlite_with_time_mode_1() {
    kamailio_semantics(Backend::Sqlite, 1);
}

#[test]
fn kamailio_semantics_in_postgresql_with_time_mode_3() {
    kamailio_semantics(Backend::Postgres, 3);
}

/// Dialog CDRs (`cdr_enable`): answered calls get start, end and a duration; busy ones
/// (`cdr_on_failed`) end at their start with duration 0 (the table's column is NOT NULL); `cdr_extra` reads the BYE
/// (`$rU`) and the dialog's variables; the log has one `CDR:` line per call.
fn dialog_cdrs(backend: Backend) {
    if !have_sipp() {
        return;
    }
    let mut dir = TestDir::new(&format!("cdr-{backend:?}"));
    let db = TestDb::with_users(backend, &dir.path, "acc", &[]);
    for col in ["bye_user", "who"] {
        exec_sql(
            &db.url,
            &format!("ALTER TABLE acc_cdrs ADD COLUMN {col} VARCHAR(64) DEFAULT NULL"),
        );
    }
    let peers = Peers::start(&dir.path);
    let (u, b, _) = peers.ports;
    let port = free_port();
    let cfg = format!(
        r#"#!KAMAILIO
children=2
listen=127.0.0.1:{port}
auto_aliases=no
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "textops.so"
loadmodule "dialog.so"
loadmodule "acc.so"
modparam("acc", "db_url", "{url}")
modparam("acc", "spool_dir", "{spool}")
modparam("acc", "cdr_enable", 1)
modparam("acc", "cdrs_table", "acc_cdrs")
modparam("acc", "cdr_extra", "bye_user=$rU;who=$dlg_var(who)")
request_route {{
    if (is_method("ACK|BYE") && loose_route()) {{
        t_relay();
        exit;
    }}
    if (is_method("INVITE")) {{
        record_route();
        dlg_manage();
        $dlg_var(who) = "caller-of-" + $rU;
    }}
    if ($rU == "busy") {{
        $du = "sip:127.0.0.1:{b}";
    }} else {{
        $du = "sip:127.0.0.1:{u}";
    }}
    t_relay();
}}
"#,
        url = db.url,
        spool = dir.path.join("spool").display()
    );
    std::fs::write(dir.path.join("proxy.cfg"), cfg).expect("cfg");
    let proxy = Launch::new(dir.path.join("proxy.cfg"))
        .log(dir.path.join("proxy.log"))
        .listening_on(port)
        .terminate_on_drop()
        .start();
    let before = super_now();
    for (tag, xml, service, calls) in [
        ("answered", "call_uac.xml", "alice", 6),
        ("busy", "uac_rejected.xml", "busy", 4),
    ] {
        let uac = run_uac(&dir.path, tag, xml, service, port, calls, 10);
        assert_eq!(
            wait_exit(uac, Duration::from_secs(60)),
            Some(0),
            "{tag}: SIPp calls failed\n{}",
            log_tails(&dir.path)
        );
    }
    let n = wait_for(Duration::from_secs(20), 10, || {
        select(&db.url, "acc_cdrs", &["id"]).len()
    });
    let log = proxy.stop();
    assert_eq!(n, 10, "CDR rows\n{log}");
    let after = super_now();
    let rows = select(
        &db.url,
        "acc_cdrs",
        &["start_time", "end_time", "duration", "bye_user", "who"],
    );
    let (answered, busy): (Vec<_>, Vec<_>) = rows.iter().partition(|r| r[4] == "caller-of-alice");
    assert_eq!(answered.len(), 6, "{rows:?}");
    assert!(busy.iter().all(|r| r[4] == "caller-of-busy"), "{rows:?}");
    let secs = |s: &str| -> i64 {
        s.parse()
            .unwrap_or_else(|_| panic!("a time in seconds, not {s:?}: {rows:?}"))
    };
    for r in &answered {
        let (start, end) = (secs(&r[0]), secs(&r[1]));
        assert!(
            before - 1 <= start && start <= end && end <= after + 1,
            "{r:?}"
        );
        let duration: f64 = r[2].parse().unwrap_or_else(|_| panic!("duration: {r:?}"));
        assert!((0.0..5.0).contains(&duration), "{r:?}");
        // The BYE's Request-URI is the callee's Contact (SIPp's UAS has no user part).
        assert_ne!(r[3], "alice", "read from the BYE, not the INVITE: {r:?}");
    }
    for r in &busy {
        assert_eq!(r[0], r[1], "a failed call ends at its start: {r:?}");
        assert_eq!(r[2].parse::<f64>().ok(), Some(0.0), "no duration: {r:?}");
        assert_eq!(r[3], "", "no request ended it: {r:?}");
    }
    let lines = log
        .lines()
        .filter(|l| l.contains("CDR: start_time="))
        .count();
    assert_eq!(lines, 10, "{log}");
    dir.passed = true;
}

#[test]
fn dialog_cdrs_in_sqlite() {
    dialog_cdrs(Backend::Sqlite);
}

#[test]
fn dialog_cdrs_in_mariadb() {
    dialog_cdrs(Backend::Mariadb);
}
