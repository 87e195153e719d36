//! The database restarted under the running proxy (issue 18 point 6): a registrar with
//! digest authentication on a private PostgreSQL or MariaDB (auth_db against
//! `subscriber`, usrloc db_mode 3 so every REGISTER and every lookup goes to the
//! database), SIPp phones registering at 50/s and a SIPp caller calling them at 50/s
//! (answered by a SIPp UAS, where every phone's contact points), while an OPTIONS prober
//! of the test's own times every answer. The database server is stopped by its PID and
//! started again mid-run.
//!
//! What must hold: every request gets a final answer, a 500 only around the outage and
//! within the driver timeout; everything succeeds again within 2 s of the database's
//! return; OPTIONS (no database in its route) answered in < 50 ms throughout; one row
//! per phone in `location` afterwards; no panic.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferrosip_db::accounts::{add_user, NewUser};
use ferrosip_db::Db;
use ferrosip_tests::db::Backend;
use ferrosip_tests::private_db::PrivateServer;
use ferrosip_tests::sipp::{log_tails, traced_sipp};
use ferrosip_tests::{free_port, have_sipp, wait_exit, Launch};

const PHONES: usize = 100;
/// Registrations and calls per second (each), and how many of each in the faulty run.
const RATE: u32 = 50;
const REQUESTS: u32 = 600;
/// The driver timeout the config sets (db_postgres `timeout`, db_mysql
/// `timeout_interval`), in seconds.
const DB_TIMEOUT_S: u64 = 1;
/// Service must be back this long after the database answers again.
const RECOVERY: f64 = 2.0;
const OPTIONS_BOUND: Duration = Duration::from_millis(50);

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios/dbfault")
        .join(name)
}

/// The proxy: OPTIONS answered before anything else; REGISTER authenticated
/// (www_authorize) and saved; INVITE authenticated (proxy_authorize), looked up and
/// relayed statefully. A database error (auth -1, lookup -3, save's own 500) is answered
/// 500 rather than challenged again or called "not found".
fn config(port: u16, db_url: &str, driver: &str, timeout_param: &str) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
children=4
listen=127.0.0.1:{port}
auto_aliases=no
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
loadmodule "{driver}.so"
modparam("{driver}", "{timeout_param}", {DB_TIMEOUT_S})
modparam("usrloc", "db_url", "{db_url}")
modparam("usrloc", "db_mode", 3)
modparam("auth_db", "db_url", "{db_url}")
modparam("tm", "fr_timer", 2000)
modparam("tm", "fr_inv_timer", 5000)

request_route {{
    if (is_method("OPTIONS")) {{
        sl_send_reply("200", "OK");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{
                t_relay();
            }}
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("ACK")) {{
        t_check_trans();
        exit;
    }}
    if (is_method("REGISTER")) {{
        if (!www_authorize("", "subscriber")) {{
            if ($rc == -1) {{
                sl_send_reply("500", "Server Internal Error");
                exit;
            }}
            www_challenge("", "0");
            exit;
        }}
        save("location");
        exit;
    }}
    if (is_method("INVITE")) {{
        if (!proxy_authorize("", "subscriber")) {{
            if ($rc == -1) {{
                sl_send_reply("500", "Server Internal Error");
                exit;
            }}
            proxy_challenge("", "0");
            exit;
        }}
        consume_credentials();
        if (!lookup("location")) {{
            if ($rc == -3) {{
                sl_send_reply("500", "Server Internal Error");
            }} else {{
                sl_send_reply("404", "Not Found");
            }}
            exit;
        }}
        record_route();
        t_relay();
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}
"#
    )
}

/// A test's directory: removed when the test passes, kept (and named) otherwise.
struct TestDir {
    path: PathBuf,
    passed: bool,
}

impl TestDir {
    fn new(name: &str) -> TestDir {
        let path =
            std::env::temp_dir().join(format!("ferrosip-dbfault-{}-{name}", std::process::id()));
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

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn phone(i: usize) -> (String, String) {
    (format!("phone{i:03}"), format!("pw{i:03}"))
}

/// The tables, the phones' subscribers and the caller's.
fn provision(url: &str) {
    block_on(async {
        let db = Db::connect(url).await.expect("connect");
        ferrosip_db::schema::init(&db, Some(&["auth_db", "usrloc"]))
            .await
            .expect("tables");
        let users = (0..PHONES)
            .map(phone)
            .chain([("caller".to_string(), "callerpw".to_string())]);
        for (user, password) in users {
            add_user(
                &db,
                &NewUser {
                    username: &user,
                    domain: "127.0.0.1",
                    realm: "127.0.0.1",
                    password: &password,
                    store_password: false,
                },
            )
            .await
            .expect("subscriber");
        }
    });
}

/// `(username, rows)` of the location table, sorted.
fn location_rows(url: &str) -> Vec<String> {
    block_on(async {
        let db = Db::connect(url).await.expect("connect");
        let mut users: Vec<String> = db
            .select("location", &["username"], &[], None)
            .await
            .expect("select")
            .iter()
            .map(|r| r[0].as_str().unwrap_or("").to_string())
            .collect();
        users.sort();
        users
    })
}

/// Seconds since the epoch, now.
fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-12-06 18:01:31.636014` (SIPp's trace stamp; SIPp runs with TZ=UTC) as seconds
/// since the epoch.
fn parse_stamp(s: &str) -> Option<f64> {
    let (date, time) = s.trim().split_once(' ')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, mo, da) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':');
    let (h, mi) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    let sec = t.next()?.parse::<f64>().ok()?;
    Some(days_from_civil(y, mo, da) as f64 * 86_400.0 + h * 3600.0 + mi * 60.0 + sec)
}

/// One request that needed the database (a REGISTER or INVITE with credentials): when
/// SIPp first sent it, and its first final answer.
#[derive(Debug, Clone)]
struct Outcome {
    method: String,
    sent: f64,
    answer: Option<(f64, u16)>,
}

/// The requests with `CSeq: 2 <method>` in a SIPp message trace, with their answers.
fn outcomes(trace: &Path, method: &str) -> Vec<Outcome> {
    let text = std::fs::read_to_string(trace).unwrap_or_default();
    let mut by_call: std::collections::HashMap<String, Outcome> = Default::default();
    let mut order = Vec::new();
    let cseq = format!("2 {method}");
    for block in text.split("----------------------------------------------- ") {
        let mut lines = block.lines();
        let Some(stamp) = lines.next().and_then(parse_stamp) else {
            continue;
        };
        let direction = lines.next().unwrap_or("");
        let start = lines.find(|l| !l.trim().is_empty()).unwrap_or("");
        let mut call_id = None;
        let mut this_cseq = None;
        for l in lines {
            if let Some(v) = l.strip_prefix("Call-ID:") {
                call_id = Some(v.trim().to_string());
            } else if let Some(v) = l.strip_prefix("CSeq:") {
                this_cseq = Some(v.trim().to_string());
            }
        }
        let (Some(call_id), Some(c)) = (call_id, this_cseq) else {
            continue;
        };
        if c != cseq {
            continue;
        }
        if direction.contains("sent") && start.starts_with(method) {
            by_call.entry(call_id.clone()).or_insert_with(|| {
                order.push(call_id.clone());
                Outcome {
                    method: method.to_string(),
                    sent: stamp,
                    answer: None,
                }
            });
        } else if direction.contains("received") && start.starts_with("SIP/2.0 ") {
            let code: u16 = start[8..11].parse().unwrap_or(0);
            if code >= 200 {
                if let Some(o) = by_call.get_mut(&call_id) {
                    o.answer.get_or_insert((stamp, code));
                }
            }
        }
    }
    order
        .into_iter()
        .filter_map(|c| by_call.remove(&c))
        .collect()
}

/// When each probe was sent (seconds since the epoch) and how long its answer took
/// (`None`: no answer within 1 s).
type Probes = Vec<(f64, Option<Duration>)>;

/// Sends an OPTIONS every 20 ms until told to stop, waiting for each answer; returns
/// every probe and the answers that were not 200.
fn probe_options(port: u16, stop: Arc<AtomicBool>) -> (Probes, Vec<String>) {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let local = sock.local_addr().expect("addr");
    let mut delays = Vec::new();
    let mut bad = Vec::new();
    let mut buf = [0u8; 4096];
    let mut n = 0u32;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let msg = format!(
            "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-probe-{n}\r\nMax-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1:{port}>\r\nCall-ID: probe-{n}@test\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        let sent = Instant::now();
        let sent_at = now_s();
        sock.send_to(msg.as_bytes(), ("127.0.0.1", port))
            .expect("send");
        let want = format!("probe-{n}@test");
        let delay = loop {
            match sock.recv_from(&mut buf) {
                Ok((len, _)) => {
                    let reply = String::from_utf8_lossy(&buf[..len]);
                    // A late answer to an earlier probe is skipped.
                    if reply.contains(&want) {
                        if !reply.starts_with("SIP/2.0 200") {
                            bad.push(reply.lines().next().unwrap_or("").to_string());
                        }
                        break Some(sent.elapsed());
                    }
                }
                Err(_) => break None,
            }
        };
        delays.push((sent_at, delay));
        std::thread::sleep(Duration::from_millis(20));
    }
    (delays, bad)
}

struct Sipp(Vec<Child>);

impl Drop for Sipp {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A SIPp client towards the proxy with the phones' CSV, timestamps in UTC.
fn uac(dir: &Path, tag: &str, xml: &str, proxy: u16, calls: u32, extra: &[&str]) -> Child {
    traced_sipp(dir, tag, &scenario(xml), &format!("127.0.0.1:{proxy}"))
        .env("TZ", "UTC")
        .args(["-p", &free_port().to_string()])
        .arg("-inf")
        .arg(dir.join("phones.csv"))
        .args(["-m", &calls.to_string(), "-r", &RATE.to_string()])
        .args(["-timeout", "60", "-timeout_error"])
        .args(extra)
        .spawn()
        .expect("sipp uac")
}

/// One faulty run at a time: the OPTIONS bound is about the proxy, not about two
/// proxies, two database servers and six SIPp sharing the CI machine's two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn database_restarted_under_load(backend: Backend) {
    if !have_sipp() {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut dir = TestDir::new(&format!("{backend:?}"));
    let (server, driver, timeout_param) = match backend {
        Backend::Postgres => (PrivateServer::postgres(&dir.path), "db_postgres", "timeout"),
        _ => (
            PrivateServer::mariadb(&dir.path, "ferrosip"),
            "db_mysql",
            "timeout_interval",
        ),
    };
    let mut server = server.expect("a private database server");
    provision(&server.url);
    let csv: String = (0..PHONES)
        .map(|i| {
            let (u, p) = phone(i);
            // SIPp expands an authentication keyword found in a field (a keyword cannot
            // hold another in the scenario).
            format!("{u};[authentication username={u} password={p}]\n")
        })
        .collect();
    std::fs::write(dir.path.join("phones.csv"), format!("SEQUENTIAL\n{csv}")).expect("csv");

    let port = free_port();
    let cfg = dir.path.join("proxy.cfg");
    std::fs::write(&cfg, config(port, &server.url, driver, timeout_param)).expect("cfg");
    let proxy = Launch::new(&cfg)
        .log(dir.path.join("proxy.log"))
        .listening_on(port)
        .terminate_on_drop()
        .start();
    let uas_port = free_port();
    let uas_port_s = uas_port.to_string();
    // The UAS echoes Record-Route, so the caller's ACK and BYE come back through us.
    let uas_xml = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/call_uas.xml");
    let peers = Sipp(vec![traced_sipp(&dir.path, "uas", &uas_xml, "")
        .args(["-p", &uas_port_s])
        .spawn()
        .expect("sipp uas")]);

    // Every phone registered once while the database is up.
    let first = uac(
        &dir.path,
        "first",
        "phone_register.xml",
        port,
        PHONES as u32,
        &["-key", "uas_port", &uas_port_s],
    );
    assert_eq!(
        wait_exit(first, Duration::from_secs(60)),
        Some(0),
        "first registrations\n{}",
        log_tails(&dir.path)
    );
    let first = outcomes(&dir.path.join("first-messages.log"), "REGISTER");
    assert_eq!(first.len(), PHONES, "{first:?}");
    assert!(
        first.iter().all(|o| o.answer.is_some_and(|a| a.1 == 200)),
        "{first:?}"
    );

    let stop_probe = Arc::new(AtomicBool::new(false));
    let prober = {
        let stop = stop_probe.clone();
        std::thread::spawn(move || probe_options(port, stop))
    };
    let registering = uac(
        &dir.path,
        "register",
        "phone_register.xml",
        port,
        REQUESTS,
        &["-key", "uas_port", &uas_port_s],
    );
    let calling = uac(
        &dir.path,
        "call",
        "caller_invite.xml",
        port,
        REQUESTS,
        &["-au", "caller", "-ap", "callerpw"],
    );
    std::thread::sleep(Duration::from_millis(2500));
    let down_at = now_s();
    server.stop();
    std::thread::sleep(Duration::from_secs(2));
    server.run();
    let back_at = now_s();
    let reg_rc = wait_exit(registering, Duration::from_secs(90));
    let call_rc = wait_exit(calling, Duration::from_secs(90));
    stop_probe.store(true, Ordering::Relaxed);
    let (delays, bad_options) = prober.join().expect("prober");
    // Dropping the guard ends the UAS (clearing its Vec would leave the process running).
    drop(peers);
    let log = proxy.stop();
    let tails = log_tails(&dir.path);
    assert_eq!(
        (reg_rc, call_rc),
        (Some(0), Some(0)),
        "SIPp runs failed\n{tails}"
    );

    let mut all = outcomes(&dir.path.join("register-messages.log"), "REGISTER");
    let registers = all.len();
    all.extend(outcomes(&dir.path.join("call-messages.log"), "INVITE"));
    assert_eq!(registers, REQUESTS as usize, "REGISTERs traced");
    assert_eq!(all.len(), 2 * REQUESTS as usize, "INVITEs traced");
    let unanswered: Vec<_> = all.iter().filter(|o| o.answer.is_none()).collect();
    assert!(unanswered.is_empty(), "no final answer: {unanswered:?}");
    let failed: Vec<&Outcome> = all
        .iter()
        .filter(|o| o.answer.is_some_and(|a| a.1 != 200))
        .collect();
    assert!(
        failed.iter().all(|o| o.answer.is_some_and(|a| a.1 == 500)),
        "only 500 may replace a 200: {failed:?}"
    );
    assert!(
        !failed.is_empty(),
        "no request failed: the outage was not seen\n{log}"
    );
    let limit = DB_TIMEOUT_S as f64;
    // A request the database was already answering when it went away may fail up to one
    // timeout before the stop; none may fail once it has been back for RECOVERY.
    let outside: Vec<_> = failed
        .iter()
        .filter(|o| o.sent < down_at - limit - 0.5 || o.sent > back_at + RECOVERY)
        .collect();
    assert!(
        outside.is_empty(),
        "failures outside the outage (down {down_at:.3}, back {back_at:.3}): {outside:?}"
    );
    // A route run waits at most one timeout per database operation; a REGISTER makes
    // three (credentials, contacts, write), so the worst case is the database going away
    // after the first: two timeouts.
    let slowest_error = failed
        .iter()
        .filter_map(|o| o.answer.map(|a| a.0 - o.sent))
        .fold(0.0, f64::max);
    assert!(
        slowest_error < 2.0 * limit + 0.5,
        "an error answer took {slowest_error:.3} s (timeout {limit} s)"
    );
    let last_failure = failed.iter().map(|o| o.sent).fold(f64::MIN, f64::max);
    let options_max = delays.iter().filter_map(|p| p.1).max().unwrap_or_default();
    // When the slow ones came, relative to the stop: the bound is tight on a shared machine.
    let slow: Vec<String> = delays
        .iter()
        .filter_map(|&(at, d)| {
            d.filter(|d| *d > Duration::from_millis(10))
                .map(|d| (at, d))
        })
        .map(|(at, d)| format!("{:+.2} s: {d:.1?}", at - down_at))
        .collect();
    eprintln!(
        "{backend:?}: {} of {} requests answered 500 (REGISTER {}, INVITE {}), the slowest \
         500 after {:.0} ms; the database was away {:.2} s; last failing request sent {:.0} ms \
         after it answered again; {} OPTIONS, slowest {:?}; over 10 ms: {slow:?}",
        failed.len(),
        all.len(),
        failed.iter().filter(|o| o.method == "REGISTER").count(),
        failed.iter().filter(|o| o.method == "INVITE").count(),
        slowest_error * 1000.0,
        back_at - down_at,
        (last_failure - back_at) * 1000.0,
        delays.len(),
        options_max,
    );
    assert!(
        delays.iter().all(|p| p.1.is_some()),
        "OPTIONS unanswered: {} of {}",
        delays.iter().filter(|p| p.1.is_none()).count(),
        delays.len()
    );
    assert!(bad_options.is_empty(), "{bad_options:?}");
    // A worker held by a database wait would delay every probe of the outage (about 125);
    // a 2-core machine shared with builds delays one now and then, outage or not (88 ms
    // seen 1.5 s before a stop). So: at most 1 % of the probes over the bound.
    let late: Vec<String> = delays
        .iter()
        .filter_map(|&(at, d)| d.filter(|d| *d >= OPTIONS_BOUND).map(|d| (at, d)))
        .map(|(at, d)| format!("{:+.2} s: {d:.1?}", at - down_at))
        .collect();
    assert!(
        late.len() * 100 <= delays.len(),
        "OPTIONS answered in {OPTIONS_BOUND:?} or more (time from the stop): {late:?}"
    );

    // No contact lost: one row per phone (db_mode 3 wrote every 200 through).
    let rows = location_rows(&server.url);
    let want: Vec<String> = (0..PHONES).map(|i| phone(i).0).collect();
    assert_eq!(rows, want, "location rows");
    assert!(log.contains("panics=0"), "{log}");
    drop(server);
    dir.passed = true;
}

#[test]
fn postgresql_restarted_under_registrations_and_calls() {
    database_restarted_under_load(Backend::Postgres);
}

#[test]
fn mariadb_restarted_under_registrations_and_calls() {
    database_restarted_under_load(Backend::Mariadb);
}
