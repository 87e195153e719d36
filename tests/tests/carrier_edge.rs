//! The shipped `examples/carrier-edge.cfg` (issue 15, end to end) against real peers:
//! SIPp customers on 127.0.0.2 authenticating by digest against a SQLite database made by
//! `ferrosip db init`, SIPp carriers (UASs on 127.0.0.1) in the dispatcher table of the
//! same database, a SIPp flooder on 127.0.0.3.
//!
//! - an authenticated customer's calls reach the first carrier, record-routed, and each
//!   call setup and BYE is a row in `acc`; a caller without credentials gets 407 and
//!   nothing reaches a carrier or `acc`;
//! - a first carrier answering 503 makes the call fail over to the second; a call failing
//!   on every carrier is a row in `missed_calls`;
//! - a flood from one source is blocked by pike and the source banned in `ipban` (still
//!   refused once pike has cooled down) while the customer's calls all complete;
//! - the server reports 0 panics when it stops; `ferrosip check` passes on the example.
//!
//! tests/tests/lua_carrier_edge.rs runs the same tests on the Lua twin.

use ferrosip_db::{Db, DbValue};
use ferrosip_tests::db::{Backend, TestDb};
use ferrosip_tests::{free_port, have_sipp, log_tails, wait_exit, Launch, Proxy};
use std::net::{IpAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CUSTOMER_IP: &str = "127.0.0.2";
const FLOODER_IP: &str = "127.0.0.3";

fn scenario(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(path)
}

fn example() -> PathBuf {
    // tests/tests/lua_carrier_edge.rs includes this file as a module: the same tests then
    // run on the Lua twin of the example.
    let cfg = if module_path!().starts_with("lua_carrier_edge") {
        "../examples/lua/carrier-edge.cfg"
    } else {
        "../examples/carrier-edge.cfg"
    };
    Path::new(env!("CARGO_MANIFEST_DIR")).join(cfg)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// A SIPp process killed when dropped (a failed test leaves no SIPp behind).
struct Sipp(Option<Child>);

impl Sipp {
    fn wait(mut self, limit: Duration) -> Option<i32> {
        wait_exit(self.0.take().expect("running"), limit)
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One carrier: a SIPp UAS on 127.0.0.1 whose received messages are traced to its file.
struct Carrier {
    port: u16,
    trace: PathBuf,
    _uas: Sipp,
}

impl Carrier {
    fn start(dir: &Path, name: &str, file: &str) -> Carrier {
        let port = free_port();
        let trace = dir.join(format!("{name}-messages.log"));
        let uas = Command::new("sipp")
            .arg("-sf")
            .arg(scenario(file))
            .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin"])
            .args(["-trace_msg", "-message_file"])
            .arg(&trace)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp starts");
        let deadline = Instant::now() + Duration::from_secs(5);
        while UdpSocket::bind(("127.0.0.1", port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        Carrier {
            port,
            trace,
            _uas: Sipp(Some(uas)),
        }
    }

    fn messages(&self) -> String {
        std::fs::read_to_string(&self.trace).unwrap_or_default()
    }

    /// INVITEs this carrier received for `number`.
    fn invites(&self, number: &str) -> usize {
        self.messages()
            .matches(&format!("INVITE sip:{number}@example.com"))
            .count()
    }
}

struct Lab {
    dir: PathBuf,
    db: TestDb,
    port: u16,
    proxy: Option<Proxy>,
}

impl Lab {
    fn new(name: &str) -> Lab {
        let lua = if example().to_string_lossy().contains("/lua/") {
            "lua-"
        } else {
            ""
        };
        let dir =
            std::env::temp_dir().join(format!("ferrosip-edge-{}-{lua}{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("test dir");
        let db = TestDb::with_users(
            Backend::Sqlite,
            &dir,
            "auth_db,dispatcher,acc",
            &[("alice@example.com", "secret")],
        );
        Lab {
            dir,
            db,
            port: free_port(),
            proxy: None,
        }
    }

    /// The carriers in dispatcher set 1, the first one with the highest priority.
    fn add_carriers(&self, carriers: &[&Carrier]) {
        block_on(async {
            let db = Db::connect(&self.db.url).await.expect("db");
            for (i, c) in carriers.iter().enumerate() {
                db.insert(
                    "dispatcher",
                    &["setid", "destination", "priority", "description"],
                    &[
                        DbValue::Int(1),
                        DbValue::Str(format!("sip:127.0.0.1:{}", c.port)),
                        DbValue::Int(10 - i as i64),
                        DbValue::Str(format!("carrier {i}")),
                    ],
                )
                .await
                .expect("insert carrier");
            }
        });
    }

    fn start(&mut self) {
        let spool = self.dir.join("acc-spool");
        let p = Launch::new(example())
            .define(format!("PROXY_PORT={}", self.port))
            .define(format!("DBURL=\"{}\"", self.db.url))
            .define(format!("ACC_SPOOL=\"{}\"", spool.display()))
            .define("DS_PING_INTERVAL=0")
            .define("FR_TIMER=2000")
            .define("FR_INV_TIMER=3000")
            .log(self.dir.join("proxy.log"))
            .listening_on(self.port)
            .start();
        self.proxy = Some(p);
    }

    /// SIPp `file` from `ip` to the edge, dialling `number` `calls` times at `rate`/s.
    fn sipp(&self, tag: &str, ip: &str, file: &str, number: &str, args: &[&str]) -> Sipp {
        let child = Command::new("sipp")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("-sf")
            .arg(scenario(file))
            .args(["-s", number, "-i", ip, "-p", &free_port().to_string()])
            .args(["-timeout", "40s", "-timeout_error", "-nostdin"])
            .args(["-trace_err", "-error_file"])
            .arg(self.dir.join(format!("{tag}-errors.log")))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp starts");
        Sipp(Some(child))
    }

    /// alice (digest auth) calling `number` `calls` times, one call a second (a customer
    /// well under pike's 16 requests per 2 s).
    fn customer(&self, file: &str, number: &str, calls: u32) -> Sipp {
        let calls = calls.to_string();
        self.sipp(
            &format!("customer-{number}"),
            CUSTOMER_IP,
            file,
            number,
            &["-au", "alice", "-ap", "secret", "-m", &calls, "-r", "1"],
        )
    }

    fn context(&self) -> String {
        log_tails(&self.dir)
    }

    /// (method, sip_code, callid) of every row of `table`.
    fn rows(&self, table: &str) -> Vec<(String, String, String)> {
        block_on(async {
            let db = Db::connect(&self.db.url).await.expect("db");
            db.select(table, &["method", "sip_code", "callid"], &[], None)
                .await
                .expect("select")
                .into_iter()
                .map(|r| {
                    let s = |v: &DbValue| v.as_str().unwrap_or("").to_string();
                    (s(&r[0]), s(&r[1]), s(&r[2]))
                })
                .collect()
        })
    }

    /// Stops the edge; asserts 0 panics in its stop line and returns its log.
    fn stop(&mut self) -> String {
        let log = self.proxy.take().expect("running").stop();
        let stop_line = log
            .lines()
            .rev()
            .find(|l| l.contains("Ferrosip stopping"))
            .unwrap_or_default();
        assert!(
            stop_line.contains("panics=0"),
            "stop line: {stop_line:?}\n{log}"
        );
        eprintln!("{}", stop_line.trim());
        log
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("test files kept in {}", self.dir.display());
        }
    }
}

/// (method, code) counts of `rows`, sorted, to compare as a whole.
fn tally(rows: &[(String, String, String)]) -> Vec<(String, String, usize)> {
    let mut t: Vec<(String, String, usize)> = Vec::new();
    for (m, c, _) in rows {
        match t.iter_mut().find(|(tm, tc, _)| tm == m && tc == c) {
            Some(e) => e.2 += 1,
            None => t.push((m.clone(), c.clone(), 1)),
        }
    }
    t.sort();
    t
}

fn row(method: &str, code: &str, n: usize) -> (String, String, usize) {
    (method.to_string(), code.to_string(), n)
}

#[test]
fn customer_calls_reach_the_carrier_and_are_accounted_strangers_get_407() {
    if !have_sipp() {
        return;
    }
    let mut lab = Lab::new("calls");
    let alpha = Carrier::start(&lab.dir, "alpha", "call_uas.xml");
    let beta = Carrier::start(&lab.dir, "beta", "call_uas.xml");
    lab.add_carriers(&[&alpha, &beta]);
    lab.start();

    let customer = lab.customer("auth/uac_invite.xml", "4930100", 4);
    let stranger = lab.sipp(
        "stranger",
        CUSTOMER_IP,
        "edge/uac_no_credentials.xml",
        "4930999",
        &["-m", "2", "-r", "1"],
    );
    let customer_rc = customer.wait(Duration::from_secs(40));
    let stranger_rc = stranger.wait(Duration::from_secs(40));
    assert_eq!(
        customer_rc,
        Some(0),
        "every call completed\n{}",
        lab.context()
    );
    assert_eq!(stranger_rc, Some(0), "both got 407\n{}", lab.context());

    // The highest-priority carrier takes every call, through the edge's Record-Route.
    assert_eq!(alpha.invites("4930100"), 4, "{}", lab.context());
    assert_eq!(beta.invites("4930100"), 0, "{}", lab.context());
    assert!(
        alpha
            .messages()
            .contains(&format!("Record-Route: <sip:127.0.0.1:{};lr", lab.port)),
        "record-routed\n{}",
        alpha.messages()
    );
    assert_eq!(
        alpha.invites("4930999") + beta.invites("4930999"),
        0,
        "nothing of the stranger reached a carrier"
    );

    let log = lab.stop();
    let acc = lab.rows("acc");
    assert_eq!(
        tally(&acc),
        vec![row("BYE", "200", 4), row("INVITE", "200", 4)],
        "a row per call setup and per BYE: {acc:?}\n{log}"
    );
    assert!(lab.rows("missed_calls").is_empty());
    assert_eq!(
        log.matches("auth failed for sip:mallory").count(),
        2,
        "{log}"
    );
}

#[test]
fn a_failing_first_carrier_fails_over_and_a_call_failing_everywhere_is_missed() {
    if !have_sipp() {
        return;
    }
    let mut lab = Lab::new("failover");
    let alpha = Carrier::start(&lab.dir, "alpha", "dispatcher/uas_503.xml");
    let beta = Carrier::start(&lab.dir, "beta", "call_uas.xml");
    lab.add_carriers(&[&alpha, &beta]);
    lab.start();
    let rc = lab
        .customer("auth/uac_invite.xml", "4930200", 3)
        .wait(Duration::from_secs(40));
    assert_eq!(rc, Some(0), "no call lost to the 503\n{}", lab.context());
    assert_eq!(alpha.invites("4930200"), 3, "each call tried alpha first");
    assert_eq!(beta.invites("4930200"), 3, "and completed on beta");
    drop(beta);

    // beta is gone: alpha's 503 and beta's silence (408 after fr_timer) fail the call;
    // the customer gets the best of them, the 408, and the call is a missed call.
    let rc = lab
        .customer("edge/uac_invite_failed.xml", "4930201", 1)
        .wait(Duration::from_secs(40));
    assert_eq!(rc, Some(0), "the customer got 408\n{}", lab.context());

    let log = lab.stop();
    assert_eq!(log.matches("failing over to").count(), 4, "{log}");
    let acc = lab.rows("acc");
    assert_eq!(
        tally(&acc),
        vec![
            row("BYE", "200", 3),
            row("INVITE", "200", 3),
            row("INVITE", "408", 1)
        ],
        "{acc:?}\n{log}"
    );
    let missed = lab.rows("missed_calls");
    assert_eq!(
        tally(&missed),
        vec![row("INVITE", "408", 1)],
        "{missed:?}\n{log}"
    );
}

/// Whether an OPTIONS keepalive sent from `from` gets the edge's 200.
fn keepalive_answered(from: &str, port: u16) -> bool {
    let from: IpAddr = from.parse().expect("address");
    let sock = UdpSocket::bind((from, 0)).expect("client socket");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let local = sock.local_addr().expect("local");
    let request = format!(
        "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-probe{lp}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{ip}>;tag=p\r\n\
         To: <sip:127.0.0.1:{port}>\r\n\
         Call-ID: probe-{lp}@test\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        ip = local.ip(),
        lp = local.port()
    );
    let mut buf = [0u8; 4096];
    for _ in 0..3 {
        sock.send_to(request.as_bytes(), ("127.0.0.1", port))
            .expect("send");
        if let Ok(n) = sock.recv(&mut buf) {
            return buf[..n].starts_with(b"SIP/2.0 200");
        }
    }
    false
}

#[test]
fn a_flooding_source_is_banned_while_customers_calls_complete() {
    if !have_sipp() {
        return;
    }
    let mut lab = Lab::new("flood");
    let alpha = Carrier::start(&lab.dir, "alpha", "call_uas.xml");
    lab.add_carriers(&[&alpha]);
    lab.start();

    let customer = lab.customer("auth/uac_invite.xml", "4930300", 5);
    std::thread::sleep(Duration::from_millis(500));
    // 9,000 OPTIONS at 3,000/s from one source.
    let flood = lab.sipp(
        "flood",
        FLOODER_IP,
        "flood/options_flood.xml",
        "flood",
        &[
            "-t", "u1", "-r", "3000", "-rp", "1000", "-m", "9000", "-l", "100000",
        ],
    );
    let flood_rc = flood.wait(Duration::from_secs(30));
    let customer_rc = customer.wait(Duration::from_secs(40));
    // pike forgets the flooder after remove_latency (4 s) and two sampling units; the ban
    // in ipban (300 s) is what still refuses it then.
    std::thread::sleep(Duration::from_secs(8));
    let flooder_answered = keepalive_answered(FLOODER_IP, lab.port);
    let other_answered = keepalive_answered("127.0.0.4", lab.port);
    let log = lab.stop();

    assert_eq!(flood_rc, Some(0), "the flood ran\n{}", lab.context());
    assert_eq!(
        customer_rc,
        Some(0),
        "the customer's calls all completed during the flood\n{}",
        lab.context()
    );
    assert_eq!(alpha.invites("4930300"), 5);
    assert!(
        log.contains("ALERT: pike blocking OPTIONS") && log.contains("(IP:127.0.0.3:"),
        "pike's alert names the flooder\n{log}"
    );
    assert!(
        !log.contains("(IP:127.0.0.2:"),
        "the customer was never blocked\n{log}"
    );
    assert!(!flooder_answered, "the flooder is banned in ipban\n{log}");
    assert!(other_answered, "another source is answered\n{log}");
    let acc = lab.rows("acc");
    assert_eq!(
        tally(&acc),
        vec![row("BYE", "200", 5), row("INVITE", "200", 5)],
        "{acc:?}"
    );
}

/// `ferrosip check` passes on the example with no warning but the Lua twin's
/// `cfgengine` (accepted for compatibility: app_lua's `load` is what runs Lua).
#[test]
fn the_example_passes_check() {
    let out = Command::new(ferrosip_tests::ferrosip_bin())
        .arg("check")
        .arg("-f")
        .arg(example())
        .output()
        .expect("ferrosip runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains(": OK ("), "{text}");
    let warnings: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("warning:") && !l.contains("'cfgengine'"))
        .collect();
    assert!(warnings.is_empty(), "{text}");
}
