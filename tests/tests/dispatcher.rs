//! `dispatcher` against real peers: the shipped `examples/load-balancer.cfg` in front of
//! three SIPp UASs (PBXs that answer OPTIONS probes with `-aa`), driven by a SIPp caller.
//!
//! - round-robin spreads calls evenly (the proxy logs each choice; the caller's SIPp
//!   checks every call completed);
//! - a killed UAS is probed out of rotation (the calls after that all complete, with no
//!   failover route to hide a miss), comes back when restarted, and dst-down/dst-up run;
//! - a UAS answering 503 makes failure_route send the call to the next PBX;
//! - a From-URI hash keeps one caller on one UAS.

use ferrosip_tests::{free_port, have_sipp, Launch, Proxy};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}

/// Whether this file runs as tests/tests/lua_dispatcher.rs's module: the same tests on the
/// Lua twin of the example.
fn lua_twin() -> bool {
    module_path!().starts_with("lua_dispatcher")
}

fn example() -> PathBuf {
    let cfg = if lua_twin() {
        "../examples/lua/load-balancer.cfg"
    } else {
        "../examples/load-balancer.cfg"
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
    /// The exit code once it ended within `limit`, else `None` (left running).
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

/// The proxy on `examples/load-balancer.cfg` (or `cfg`), its log in `dir/proxy.log`.
fn start_lb(dir: &Path, cfg: &Path, port: u16, defines: &[String]) -> Proxy {
    let mut launch = Launch::new(cfg).define(format!("PROXY_PORT={port}"));
    for d in defines {
        launch = launch.define(d);
    }
    launch.log(dir.join("proxy.log")).listening_on(port).start()
}

/// A SIPp UAS on `port` running `scenario` (which answers OPTIONS probes too).
fn uas(scenario: &str, port: u16) -> Proc {
    let sf = scenarios().join("dispatcher").join(scenario);
    let mut cmd = Command::new("sipp");
    cmd.arg("-sf")
        .arg(&sf)
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin"]);
    let p = Proc(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp starts"),
    );
    // Up once it holds its port.
    let deadline = Instant::now() + Duration::from_secs(5);
    while UdpSocket::bind(("127.0.0.1", port)).is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    p
}

/// Runs `calls` calls through the proxy (one at a time); SIPp's exit code.
fn caller(proxy: u16, calls: u32) -> Option<i32> {
    // The first probe round (sent as the proxy starts) is answered within this.
    std::thread::sleep(Duration::from_millis(300));
    let sf = scenarios().join("call_uac.xml");
    let port = free_port();
    let mut p = Proc(
        Command::new("sipp")
            .arg("-sf")
            .arg(&sf)
            .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-s", "bob"])
            .args(["-m", &calls.to_string(), "-l", "1", "-r", "50"])
            .args(["-timeout", "60s", "-timeout_error", "-nostdin"])
            .arg(format!("127.0.0.1:{proxy}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp starts"),
    );
    p.wait_exit(Duration::from_secs(90))
}

struct Lab {
    dir: PathBuf,
    proxy: u16,
    uas: [u16; 3],
}

impl Lab {
    /// Three UAS ports and a list file putting them in set 1 (probed: flags 8).
    fn new(name: &str) -> Lab {
        let dir = std::env::temp_dir().join(format!(
            "ferrosip-test-{}-dispatcher-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let uas = [free_port(), free_port(), free_port()];
        let list: String = uas
            .iter()
            .map(|p| format!("1 sip:127.0.0.1:{p} 8 0 duid=pbx{p}\n"))
            .collect();
        std::fs::write(dir.join("dispatcher.list"), list).expect("list");
        Lab {
            dir,
            proxy: free_port(),
            uas,
        }
    }

    fn defines(&self, ping_interval: u32) -> Vec<String> {
        vec![
            format!("DS_LIST=\"{}\"", self.dir.join("dispatcher.list").display()),
            format!("DS_PING_INTERVAL={ping_interval}"),
            "DS_PING_TIMEOUT=500".into(),
            "FR_TIMER=2000".into(),
        ]
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("proxy.log")).unwrap_or_default()
    }

    /// How many calls the proxy sent to each UAS (first tries, from its log).
    fn dispatched(&self) -> [usize; 3] {
        let log = self.log();
        self.uas.map(|p| {
            let needle = format!("dispatched to sip:127.0.0.1:{p}\n");
            let needle2 = format!("dispatched to sip:127.0.0.1:{p} ");
            log.matches(&needle).count() + log.matches(&needle2).count()
        })
    }
}

#[test]
fn round_robin_spreads_calls_evenly_over_three_uas() {
    if !have_sipp() {
        return;
    }
    let lab = Lab::new("rr");
    // The PBXs first: the proxy probes them as it starts.
    let _pbx: Vec<Proc> = lab.uas.iter().map(|p| uas("pbx_uas.xml", *p)).collect();
    let _proxy = start_lb(&lab.dir, &example(), lab.proxy, &lab.defines(1));
    assert_eq!(caller(lab.proxy, 30), Some(0), "not all 30 calls completed");
    assert_eq!(lab.dispatched(), [10, 10, 10], "{}", lab.log());
}

#[test]
fn dead_uas_is_probed_out_of_rotation_and_back() {
    if !have_sipp() {
        return;
    }
    let lab = Lab::new("probe");
    let _a = uas("pbx_uas.xml", lab.uas[0]);
    let _b = uas("pbx_uas.xml", lab.uas[1]);
    let mut c = uas("pbx_uas.xml", lab.uas[2]);
    let _proxy = start_lb(&lab.dir, &example(), lab.proxy, &lab.defines(1));
    assert_eq!(caller(lab.proxy, 9), Some(0), "calls with all three up");
    assert_eq!(lab.dispatched(), [3, 3, 3], "{}", lab.log());

    // Kill one PBX; probes (every second, 500 ms timeout) take it out.
    let _ = c.0.kill();
    let _ = c.0.wait();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !lab.log().contains("PBX down") {
        assert!(
            Instant::now() < deadline,
            "no dst-down event\n{}",
            lab.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every later call completes on the two others: a call sent to the dead one would
    // time out (fr_timer) and fail over, which the caller's timing would not show, so
    // check that nothing failed over either.
    assert_eq!(
        caller(lab.proxy, 30),
        Some(0),
        "calls after detection failed"
    );
    assert_eq!(lab.dispatched(), [18, 18, 3], "{}", lab.log());
    assert!(
        !lab.log().contains("failing over"),
        "a call went to the dead PBX after detection\n{}",
        lab.log()
    );

    // Restart it: once probed back in, round-robin gives it every third call again.
    let _c = uas("pbx_uas.xml", lab.uas[2]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !lab.log().contains("PBX up") {
        assert!(Instant::now() < deadline, "no dst-up event\n{}", lab.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(caller(lab.proxy, 15), Some(0), "calls after it came back");
    assert_eq!(lab.dispatched(), [23, 23, 8], "{}", lab.log());
}

#[test]
fn a_503_fails_over_to_the_next_uas() {
    if !have_sipp() {
        return;
    }
    let lab = Lab::new("503");
    // Kept in reverse file order (Kamailio's): the last line is the first destination,
    // and its failover goes to the line before it.
    let list = format!(
        "1 sip:127.0.0.1:{} 8\n1 sip:127.0.0.1:{} 8\n1 sip:127.0.0.1:{} 8\n",
        lab.uas[0], lab.uas[1], lab.uas[2]
    );
    std::fs::write(lab.dir.join("dispatcher.list"), list).expect("list");
    let _refuser = uas("uas_503.xml", lab.uas[2]);
    let _next = uas("pbx_uas.xml", lab.uas[1]);
    let _other = uas("pbx_uas.xml", lab.uas[0]);
    let _proxy = start_lb(&lab.dir, &example(), lab.proxy, &lab.defines(5));
    assert_eq!(caller(lab.proxy, 9), Some(0), "a call was lost to the 503");
    assert_eq!(lab.dispatched(), [3, 3, 3], "{}", lab.log());
    // Each call the refuser took went on to the destination after it.
    let failovers = format!("failing over to sip:127.0.0.1:{} after 50", lab.uas[1]);
    assert_eq!(lab.log().matches(&failovers).count(), 3, "{}", lab.log());
}

#[test]
fn from_hash_keeps_a_caller_on_one_uas() {
    if !have_sipp() {
        return;
    }
    let lab = Lab::new("hash");
    // The same layout with algorithm 1 (From-URI hash) instead of round-robin.
    let cfg = std::fs::read_to_string(example())
        .expect("example")
        .replace("#!define ALG_ROUND_ROBIN 4", "#!define ALG_ROUND_ROBIN 1")
        // the copy lives elsewhere: the Lua twin's script by its full path
        .replace(
            "\"load-balancer.lua\"",
            &format!("\"{}\"", example().with_extension("lua").display()),
        );
    let cfg_path = lab.dir.join("hash.cfg");
    std::fs::write(&cfg_path, cfg).expect("cfg");
    let _pbx: Vec<Proc> = lab.uas.iter().map(|p| uas("pbx_uas.xml", *p)).collect();
    let _proxy = start_lb(&lab.dir, &cfg_path, lab.proxy, &lab.defines(5));
    // SIPp's caller keeps one From URI: all ten calls land on the same UAS.
    assert_eq!(caller(lab.proxy, 10), Some(0));
    let mut counts = lab.dispatched();
    counts.sort();
    assert_eq!(counts, [0, 0, 10], "{}", lab.log());
}
