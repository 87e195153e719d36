//! `lcr` against real peers: the shipped `examples/carrier-lcr.cfg` in front of two carrier
//! gateways (SIPp UASs), customers authenticated by digest (SIPp caller with -au/-ap),
//! rules written by `ferrosip lcr import` from a rate sheet into a database made by
//! `ferrosip db init`.
//!
//! - every call goes to the cheapest carrier of its longest matching prefix (counted on
//!   each UAS from its own message trace), a rate dated in the future is ignored;
//! - a re-import followed by SIGHUP flips the choice, and calls in progress during the
//!   reload all complete;
//! - the cheapest carrier answering 503 makes failure_route's next_gw() send the call to
//!   the next one;
//! - the same flows against PostgreSQL (a database created and dropped by the test).

use ferrosip_db::{Db, DbValue};
use ferrosip_tests::db::{Backend, TestDb};
use ferrosip_tests::{free_port, have_sipp, Launch, Proxy};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}

fn example() -> PathBuf {
    // tests/tests/lua_lcr.rs includes this file as a module: the same tests then run on
    // the Lua twin of the example.
    let cfg = if module_path!().starts_with("lua_lcr") {
        "../examples/lua/carrier-lcr.cfg"
    } else {
        "../examples/carrier-lcr.cfg"
    };
    Path::new(env!("CARGO_MANIFEST_DIR")).join(cfg)
}

/// A running process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One carrier: a SIPp UAS whose received messages are traced to a file of its own.
struct Carrier {
    name: &'static str,
    port: u16,
    trace: PathBuf,
    _uas: Proc,
}

impl Carrier {
    fn start(dir: &Path, name: &'static str, scenario: &str) -> Carrier {
        let port = free_port();
        let trace = dir.join(format!("{name}-messages.log"));
        let uas = Proc(
            Command::new("sipp")
                .arg("-sf")
                .arg(scenarios().join(scenario))
                .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin"])
                .args(["-trace_msg", "-message_file"])
                .arg(&trace)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("sipp starts"),
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while UdpSocket::bind(("127.0.0.1", port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        Carrier {
            name,
            port,
            trace,
            _uas: uas,
        }
    }

    /// INVITEs this carrier received for numbers starting with `prefix` after stripping
    /// nothing (the gateways here have no strip/prefix), from its own trace.
    fn invites(&self, number: &str) -> usize {
        let log = std::fs::read_to_string(&self.trace).unwrap_or_default();
        log.matches(&format!("INVITE sip:{number}@127.0.0.1:{}", self.port))
            .count()
    }
}

struct Lab {
    dir: PathBuf,
    db: TestDb,
    proxy_port: u16,
    proxy: Option<Proxy>,
}

impl Lab {
    fn new(name: &str, backend: Backend) -> Lab {
        let dir =
            std::env::temp_dir().join(format!("ferrosip-test-{}-lcr-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let db = TestDb::with_users(
            backend,
            &dir,
            "auth_db,lcr",
            &[("alice@example.com", "secret")],
        );
        Lab {
            dir,
            db,
            proxy_port: free_port(),
            proxy: None,
        }
    }

    /// The carriers' gateways (lcr_id 1, UDP, tag = name), as an operator inserts them.
    fn add_gateways(&self, carriers: &[&Carrier]) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let db = Db::connect(&self.db.url).await.expect("db");
            for c in carriers {
                db.insert(
                    "lcr_gw",
                    &["lcr_id", "gw_name", "ip_addr", "port", "transport", "tag"],
                    &[
                        DbValue::Int(1),
                        DbValue::Str(c.name.into()),
                        DbValue::Str("127.0.0.1".into()),
                        DbValue::Int(i64::from(c.port)),
                        DbValue::Int(1),
                        DbValue::Str(c.name.into()),
                    ],
                )
                .await
                .expect("insert gateway");
            }
        });
    }

    /// `ferrosip lcr import` of `csv`; panics with its output when it fails.
    fn import(&self, csv: &str) -> String {
        let file = self.dir.join("rates.csv");
        std::fs::write(&file, csv).expect("csv");
        let out = Command::new(ferrosip_tests::ferrosip_bin())
            .args(["lcr", "import", "--db-url", &self.db.url, "--lcr-id", "1"])
            .arg(&file)
            .output()
            .expect("ferrosip runs");
        assert!(
            out.status.success(),
            "lcr import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn start_proxy(&mut self) {
        let p = Launch::new(example())
            .define(format!("PROXY_PORT={}", self.proxy_port))
            .define(format!("DBURL=\"{}\"", self.db.url))
            .define("FR_INV_TIMER=3000")
            .log(self.dir.join("proxy.log"))
            .listening_on(self.proxy_port)
            .start();
        self.proxy = Some(p);
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("proxy.log")).unwrap_or_default()
    }

    /// SIGHUP to the proxy; returns once it logged the reload.
    fn reload(&self) {
        let before = self.log().matches("lcr: SIGHUP: loaded").count();
        self.proxy.as_ref().expect("proxy").signal("HUP");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.log().matches("lcr: SIGHUP: loaded").count() == before {
            assert!(
                Instant::now() < deadline,
                "no reload logged\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts a caller: alice (digest auth) calls `number` `calls` times at `rate`/s.
    fn caller(&self, number: &str, calls: u32, rate: u32) -> Proc {
        let port = free_port();
        Proc(
            Command::new("sipp")
                .arg(format!("127.0.0.1:{}", self.proxy_port))
                .arg("-sf")
                .arg(scenarios().join("auth/uac_invite.xml"))
                .args(["-s", number, "-au", "alice", "-ap", "secret"])
                .args(["-i", "127.0.0.1", "-p", &port.to_string()])
                .args(["-m", &calls.to_string(), "-l", "5", "-r", &rate.to_string()])
                .args(["-timeout", "60s", "-timeout_error", "-nostdin"])
                .stdout(Stdio::null())
                .stderr(
                    std::fs::File::create(self.dir.join(format!("caller-{number}.log")))
                        .expect("caller log"),
                )
                .spawn()
                .expect("sipp starts"),
        )
    }

    /// Runs `calls` calls to `number`; SIPp's exit code (0: every call completed).
    fn call(&self, number: &str, calls: u32) -> Option<i32> {
        self.caller(number, calls, 20)
            .wait_exit(Duration::from_secs(90))
    }
}

const RATES: &str = "\
carrier,prefix,rate,effective_date
alpha,49,0.010,
beta,49,0.012,
alpha,4930,0.020,
beta,4930,0.008,2020-01-01
alpha,44,0.050,
beta,44,0.001,2999-01-01
";

/// The next day's sheet: alpha got dearer for 49, beta for 4930.
const RATES_FLIPPED: &str = "\
carrier,prefix,rate
alpha,49,0.030
beta,49,0.012
alpha,4930,0.020
beta,4930,0.025
";

fn cheapest_carrier_per_prefix_and_reimport_flips(backend: Backend) {
    if !have_sipp() {
        return;
    }
    let mut lab = Lab::new(&format!("cheapest-{backend:?}"), backend);
    let alpha = Carrier::start(&lab.dir, "alpha", "call_uas.xml");
    let beta = Carrier::start(&lab.dir, "beta", "call_uas.xml");
    lab.add_gateways(&[&alpha, &beta]);
    let out = lab.import(RATES);
    assert!(out.contains("3 rules and 5 targets"), "{out}");
    assert!(out.contains("1 future rows skipped"), "{out}");
    lab.start_proxy();

    // 49: alpha is cheaper; 4930 (longest prefix): beta is cheaper; 44: beta's cheap
    // rate only starts in 2999, so alpha.
    assert_eq!(lab.call("4912345", 4), Some(0), "{}", lab.log());
    assert_eq!(lab.call("4930555", 3), Some(0), "{}", lab.log());
    assert_eq!(lab.call("4420777", 2), Some(0), "{}", lab.log());
    let counts = |c: &Carrier| {
        [
            c.invites("4912345"),
            c.invites("4930555"),
            c.invites("4420777"),
        ]
    };
    // Each first INVITE is challenged by the proxy, so a carrier sees one per call.
    assert_eq!(counts(&alpha), [4, 0, 2], "{}", lab.log());
    assert_eq!(counts(&beta), [0, 3, 0], "{}", lab.log());

    // Re-import while calls to 4930 are in progress, then reload: no call is lost.
    let mut busy = lab.caller("4930666", 30, 10);
    std::thread::sleep(Duration::from_millis(1000));
    let out = lab.import(RATES_FLIPPED);
    assert!(out.contains("2 rules and 4 targets"), "{out}");
    assert!(out.contains("3 rules replaced"), "{out}");
    lab.reload();
    assert_eq!(
        busy.wait_exit(Duration::from_secs(90)),
        Some(0),
        "a call failed across the reload\n{}",
        lab.log()
    );
    let (a, b) = (alpha.invites("4930666"), beta.invites("4930666"));
    assert_eq!(a + b, 30, "alpha {a} beta {b}");
    assert!(
        b > 0,
        "calls before the reload went to beta (alpha {a} beta {b})"
    );

    // After the reload the choice is flipped; 44 has no rule any more.
    assert_eq!(lab.call("4912346", 3), Some(0), "{}", lab.log());
    assert_eq!(lab.call("4930556", 3), Some(0), "{}", lab.log());
    assert_eq!(
        [alpha.invites("4912346"), alpha.invites("4930556")],
        [0, 3],
        "{}",
        lab.log()
    );
    assert_eq!(
        [beta.invites("4912346"), beta.invites("4930556")],
        [3, 0],
        "{}",
        lab.log()
    );
    assert_ne!(lab.call("4420778", 1), Some(0), "no route for 44 any more");
    assert!(lab.log().contains("no route to 4420778"), "{}", lab.log());
}

#[test]
fn sqlite_cheapest_carrier_per_prefix_and_reimport_flips() {
    cheapest_carrier_per_prefix_and_reimport_flips(Backend::Sqlite);
}

#[test]
fn postgres_cheapest_carrier_per_prefix_and_reimport_flips() {
    cheapest_carrier_per_prefix_and_reimport_flips(Backend::Postgres);
}

#[test]
fn a_503_from_the_cheapest_carrier_fails_over_to_the_next() {
    if !have_sipp() {
        return;
    }
    let mut lab = Lab::new("failover", Backend::Sqlite);
    let alpha = Carrier::start(&lab.dir, "alpha", "dispatcher/uas_503.xml");
    let beta = Carrier::start(&lab.dir, "beta", "call_uas.xml");
    lab.add_gateways(&[&alpha, &beta]);
    lab.import(RATES);
    lab.start_proxy();
    assert_eq!(
        lab.call("4912345", 5),
        Some(0),
        "a call was lost to the 503\n{}",
        lab.log()
    );
    assert_eq!(
        alpha.invites("4912345"),
        5,
        "each call tried the cheapest first"
    );
    assert_eq!(beta.invites("4912345"), 5, "and completed on the next");
    assert_eq!(
        lab.log().matches("failing over via beta").count(),
        5,
        "{}",
        lab.log()
    );
}

/// A deck of `n` six-digit prefixes (100000..) plus 4930, each with both carriers;
/// `cheap` is the cheaper one everywhere.
fn big_deck(n: u32, cheap: &str) -> String {
    let dear = if cheap == "alpha" { "beta" } else { "alpha" };
    let mut csv = String::with_capacity(n as usize * 40);
    csv.push_str("carrier,prefix,rate\n");
    for p in std::iter::once(4930).chain(100_000..100_000 + n) {
        csv.push_str(&format!("{cheap},{p},0.010\n{dear},{p},0.020\n"));
    }
    csv
}

/// Issue 22's reload point: a deck of 100,000 prefixes (`FERROSIP_LCR_RELOAD_PREFIXES`
/// sets another size: 1000000 for the issue's full deck) reloaded while SIPp sends 500
/// calls/s through the LCR route: no call fails, calls before the swap went to the old
/// cheapest carrier and calls after it go to the new one. The new deck is written before
/// the traffic starts (the running server keeps the old one until told), so the time the
/// import takes cannot push the reload past the end of the run.
#[test]
fn reload_of_a_large_deck_under_500_calls_per_second() {
    if !have_sipp() {
        return;
    }
    let mut lab = Lab::new("busy", Backend::Sqlite);
    let alpha = Carrier::start(&lab.dir, "alpha", "call_uas.xml");
    let beta = Carrier::start(&lab.dir, "beta", "call_uas.xml");
    lab.add_gateways(&[&alpha, &beta]);
    let n: u32 = std::env::var("FERROSIP_LCR_RELOAD_PREFIXES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let out = lab.import(&big_deck(n, "alpha"));
    assert!(
        out.contains(&format!("{} rules and {} targets", n + 1, 2 * (n + 1))),
        "{out}"
    );
    lab.start_proxy();
    let out = lab.import(&big_deck(n, "beta"));
    assert!(out.contains(&format!("{} rules replaced", n + 1)), "{out}");

    let calls = 5_000;
    let port = free_port();
    let mut busy = Proc(
        Command::new("sipp")
            .arg(format!("127.0.0.1:{}", lab.proxy_port))
            .arg("-sf")
            .arg(scenarios().join("auth/uac_invite.xml"))
            .args(["-s", "4930777", "-au", "alice", "-ap", "secret"])
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", &calls.to_string(), "-l", "1000", "-r", "500"])
            .args(["-timeout", "120s", "-timeout_error", "-nostdin"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(lab.dir.join("caller-busy.log")).expect("caller log"))
            .spawn()
            .expect("sipp starts"),
    );
    std::thread::sleep(Duration::from_millis(2_000));
    lab.reload();
    assert_eq!(
        busy.wait_exit(Duration::from_secs(150)),
        Some(0),
        "a call failed across the reload (SIPp log: {})\n{}",
        std::fs::read_to_string(lab.dir.join("caller-busy.log")).unwrap_or_default(),
        lab.log()
    );
    let (a, b) = (alpha.invites("4930777"), beta.invites("4930777"));
    assert_eq!(a + b, calls as usize, "alpha {a} beta {b}");
    assert!(
        a > 0 && b > 0,
        "the swap fell inside the run: alpha {a} beta {b}"
    );
    // Every call after the reload is on the new deck.
    assert_eq!(lab.call("4930778", 5), Some(0), "{}", lab.log());
    assert_eq!(
        [alpha.invites("4930778"), beta.invites("4930778")],
        [0, 5],
        "{}",
        lab.log()
    );
}
