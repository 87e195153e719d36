//! Stateful proxying through the real `ferrosip` binary on loopback, driven by SIPp:
//! tm (t_relay, failure_route with t_on_failure, serial failover on a busy or silent
//! UAS, parallel forking, CANCEL, best-response selection with 401/407 challenge
//! aggregation, a 6xx cancelling the other branches, a 2xx crossing the CANCEL) and
//! rr (record_route, loose_route for in-dialog requests).
//!
//! Each proxied test starts ferrosip on the shipped `examples/stateful.cfg` (ports and
//! tm timers given as `-A` defines, as an operator would), one or two SIPp UASs in the
//! background and a SIPp UAC in the foreground. The scenarios in
//! `tests/scenarios/stateful/` require the exact message sequence of their flow (their
//! header comments list it) and check Record-Route, Route removal, hop-by-hop ACK and
//! CANCEL branches. Every SIPp runs with `-m CALLS` and must exit 0: each UAS has then
//! handled exactly that many successful calls. A position without a UAS is watched by a
//! socket that must receive nothing (no failover after a CANCEL or a 200).
//!
//! `calls_complete_under_packet_loss_over_udp` runs the basic call with SIPp dropping
//! 8 % of what both ends send and receive (`-lost`), on the `*_lossy.xml` scenarios:
//! every call must complete, and the message traces must show the proxy retransmitting
//! INVITEs and BYEs and absorbing the caller's copies.
//!
//! The `direct_*` tests run every UAC scenario that makes sense without a proxy against
//! its UAS directly (the checks marked `proxy-only` switched off), which keeps the XML
//! honest independently of the proxy.
//!
//! Reference run: `FERROSIP_STATEFUL_PROXY=kamailio` (or a path to a kamailio binary)
//! puts Kamailio in the proxy's place, on the same config:
//!
//! ```text
//! FERROSIP_STATEFUL_PROXY=kamailio cargo test --release -p ferrosip --test stateful
//! ```
//!
//! On failure the test keeps its directory (printed in the panic) with the proxy's log
//! and every SIPp's error and message traces.

use ferrosip_tests::have_sipp;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Calls per flow, and per parallel-fork flow.
const CALLS: u32 = 20;
const FORK_CALLS: u32 = 10;
/// tm timers given to the proxy (ms). `uas_no_answer.xml` pauses 4 s: it must outlast
/// FR_TIMER; the ringing of every other flow must stay well below FR_INV_TIMER.
const FR_TIMER: u32 = 2000;
const FR_INV_TIMER: u32 = 2000;

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios/stateful")
        .join(name)
}

fn example_cfg() -> PathBuf {
    // tests/tests/lua_stateful.rs includes this file as a module: the same flows then run
    // on the Lua twin of the example.
    let cfg = if module_path!().starts_with("lua_stateful") {
        "../examples/lua/stateful.cfg"
    } else {
        "../examples/stateful.cfg"
    };
    Path::new(env!("CARGO_MANIFEST_DIR")).join(cfg)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn sipp(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        }
    }
}

/// Ports of one test: distinct per test (slot) and per run (pid). The range
/// 30100..32600 is above sipp.rs's (20000..30010) and below the kernel's ephemeral
/// ports (32768..), where the proxy's and SIPp's outgoing TCP connections get theirs.
#[derive(Clone, Copy)]
struct Ports {
    proxy: u16,
    uas1: u16,
    uas2: u16,
    uac: u16,
}

fn ports(slot: u16) -> Ports {
    assert!(slot < 25, "4 ports per slot, 100 per run");
    let base = 30100 + (std::process::id() % 25) as u16 * 100 + slot * 4;
    Ports {
        proxy: base,
        uas1: base + 1,
        uas2: base + 2,
        uac: base + 3,
    }
}

/// The directory of one test's logs: removed when the test passes, kept otherwise.
struct RunDir {
    path: PathBuf,
    passed: bool,
}

impl RunDir {
    fn new(name: &str) -> RunDir {
        let path =
            std::env::temp_dir().join(format!("ferrosip-stateful-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir");
        RunDir {
            path,
            passed: false,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.passed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The last `max` bytes of a log file, for failure messages.
fn tail(path: &Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(b) => {
            let from = b.len().saturating_sub(max);
            String::from_utf8_lossy(&b[from..]).into_owned()
        }
        Err(_) => String::from("(no such file)"),
    }
}

/// Which proxy the tests run: ferrosip, or Kamailio as the reference.
fn kamailio_reference() -> Option<String> {
    match std::env::var("FERROSIP_STATEFUL_PROXY") {
        Ok(v) if v == "kamailio" => Some("kamailio".to_string()),
        Ok(v) if v.ends_with("kamailio") => Some(v),
        Ok(v) if v.is_empty() || v == "ferrosip" => None,
        Ok(v) => {
            panic!("FERROSIP_STATEFUL_PROXY={v}: expected ferrosip, kamailio or a path to kamailio")
        }
        Err(_) => None,
    }
}

struct Proxy {
    child: Child,
    /// Kamailio forks workers: they share its process group and are stopped with it.
    group: bool,
    log: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if self.group {
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill")
                .args(["-s", "TERM", "--", &group])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &group])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until something is bound on `port` for `transport` (UDP socket or TCP
/// listener), while `child` is still running.
fn wait_bound(child: &mut Child, what: &str, port: u16, transport: Transport, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let taken = match transport {
            Transport::Udp => UdpSocket::bind(("127.0.0.1", port)).is_err(),
            Transport::Tcp => TcpListener::bind(("127.0.0.1", port)).is_err(),
        };
        if taken {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}) before binding {transport:?} port {port}:\n{}",
                tail(log, 4000)
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not bind {transport:?} port {port}:\n{}",
            tail(log, 4000)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts the proxy on `examples/stateful.cfg` with the test's ports and timers.
fn start_proxy(dir: &RunDir, p: Ports) -> Proxy {
    start_proxy_with_timers(dir, p, FR_TIMER, FR_INV_TIMER)
}

/// Starts the proxy on `examples/stateful.cfg` with the test's ports and the given
/// fr_timer and fr_inv_timer (ms).
fn start_proxy_with_timers(dir: &RunDir, p: Ports, fr_timer: u32, fr_inv_timer: u32) -> Proxy {
    let defines = [
        format!("PROXY_PORT={}", p.proxy),
        format!("UAS1=\"sip:127.0.0.1:{}\"", p.uas1),
        format!("UAS2=\"sip:127.0.0.1:{}\"", p.uas2),
        format!("FR_TIMER={fr_timer}"),
        format!("FR_INV_TIMER={fr_inv_timer}"),
    ];
    let log = dir.file("proxy.log");
    let out = std::fs::File::create(&log).expect("proxy log");
    let err = out.try_clone().expect("proxy log");
    let reference = kamailio_reference();
    let mut cmd = match &reference {
        Some(bin) => {
            let mut c = Command::new(bin);
            c.arg("-f")
                .arg(example_cfg())
                .args(["-DD", "-E", "-m", "64", "-M", "8"])
                .process_group(0);
            c
        }
        None => {
            let mut c = Command::new(ferrosip_tests::ferrosip_bin());
            c.args(["run", "-E", "-f"]).arg(example_cfg());
            c
        }
    };
    for d in &defines {
        cmd.arg("-A").arg(d);
    }
    let mut child = cmd
        .current_dir(&dir.path)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start the proxy ({reference:?}): {e}"));
    let what = reference.as_deref().unwrap_or("ferrosip");
    wait_bound(&mut child, what, p.proxy, Transport::Udp, &log);
    wait_bound(&mut child, what, p.proxy, Transport::Tcp, &log);
    Proxy {
        child,
        group: reference.is_some(),
        log,
    }
}

/// One SIPp process with its logs in the test's directory.
struct Sipp {
    name: String,
    child: Child,
    errors: PathBuf,
    stderr: PathBuf,
    code: Option<Option<i32>>,
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sipp {
    fn spawn(
        dir: &RunDir,
        name: &str,
        sf: &Path,
        port: u16,
        t: Transport,
        rest: &[String],
    ) -> Sipp {
        let errors = dir.file(&format!("{name}_errors.log"));
        let messages = dir.file(&format!("{name}_messages.log"));
        let stderr = dir.file(&format!("{name}.stderr"));
        let mut args: Vec<String> = vec![
            "-sf".into(),
            sf.to_str().expect("path").into(),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "-t".into(),
            t.sipp().into(),
            "-nostdin".into(),
            "-trace_err".into(),
            "-error_file".into(),
            errors.to_str().expect("path").into(),
            "-trace_msg".into(),
            "-message_file".into(),
            messages.to_str().expect("path").into(),
            "-timeout".into(),
            "80s".into(),
            "-timeout_error".into(),
        ];
        args.extend(rest.iter().cloned());
        let child = Command::new("sipp")
            .args(&args)
            .current_dir(&dir.path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("sipp stderr"))
            .spawn()
            .expect("sipp starts");
        Sipp {
            name: name.to_string(),
            child,
            errors,
            stderr,
            code: None,
        }
    }

    /// A UAS (`-key uas_id NAME`, `-m calls`), bound before this returns.
    fn uas(dir: &RunDir, name: &str, sf: &Path, port: u16, t: Transport, calls: u32) -> Sipp {
        let mut s = Sipp::spawn(
            dir,
            name,
            sf,
            port,
            t,
            &[
                "-key".into(),
                "uas_id".into(),
                name.into(),
                "-m".into(),
                calls.to_string(),
            ],
        );
        wait_bound(&mut s.child, &format!("sipp {name}"), port, t, &s.stderr);
        s
    }

    /// A UAC placing `calls` calls to `target` at 10 calls/s.
    fn uac(
        dir: &RunDir,
        sf: &Path,
        port: u16,
        t: Transport,
        service: &str,
        calls: u32,
        target: u16,
    ) -> Sipp {
        Sipp::spawn(
            dir,
            "uac",
            sf,
            port,
            t,
            &[
                "-s".into(),
                service.into(),
                "-m".into(),
                calls.to_string(),
                "-r".into(),
                "10".into(),
                "-l".into(),
                calls.to_string(),
                format!("127.0.0.1:{target}"),
            ],
        )
    }

    /// Waits for the exit code (None: still running at the deadline, then killed).
    fn finish(&mut self, limit: Duration) -> Option<i32> {
        if let Some(code) = self.code {
            return code;
        }
        let deadline = Instant::now() + limit;
        let code = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        self.code = Some(code);
        code
    }

    fn report(&self) -> String {
        format!(
            "--- sipp {} exited {:?}\nstderr:\n{}\nerrors (tail):\n{}\n",
            self.name,
            self.code.flatten(),
            tail(&self.stderr, 2000),
            tail(&self.errors, 6000)
        )
    }
}

/// A UAS position that must receive nothing (UDP datagram or TCP connection).
struct Silent {
    port: u16,
    udp: UdpSocket,
    tcp: TcpListener,
}

impl Silent {
    fn bind(port: u16) -> Silent {
        let udp = UdpSocket::bind(("127.0.0.1", port)).expect("bind silent UDP");
        let tcp = TcpListener::bind(("127.0.0.1", port)).expect("bind silent TCP");
        udp.set_nonblocking(true).expect("nonblocking");
        tcp.set_nonblocking(true).expect("nonblocking");
        Silent { port, udp, tcp }
    }

    /// What reached the port, if anything.
    fn received(&self) -> Option<String> {
        let mut buf = [0u8; 65536];
        if let Ok(n) = self.udp.recv(&mut buf) {
            return Some(format!(
                "UDP: {}",
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .next()
                    .unwrap_or("")
            ));
        }
        if let Ok((_, from)) = self.tcp.accept() {
            return Some(format!("a TCP connection from {from}"));
        }
        None
    }
}

/// A UAS position of a flow.
#[derive(Clone, Copy)]
enum Uas {
    /// A SIPp UAS on this scenario.
    Runs(&'static str),
    /// Nobody: the proxy must send nothing there.
    Silent,
}

struct Flow {
    name: &'static str,
    slot: u16,
    transport: Transport,
    calls: u32,
    service: &'static str,
    uac: &'static str,
    uas1: Uas,
    uas2: Uas,
}

/// Runs one flow through the proxy and asserts every SIPp completed every call.
fn through_proxy(f: Flow) {
    if !have_sipp() {
        return;
    }
    let p = ports(f.slot);
    // The slot keeps the UDP and TCP runs of one flow (run in parallel) apart.
    let mut dir = RunDir::new(&format!("{}-{}", f.name, f.slot));
    let proxy = start_proxy(&dir, p);

    let mut silent = Vec::new();
    let mut uases = Vec::new();
    for (name, port, pos) in [("uas1", p.uas1, f.uas1), ("uas2", p.uas2, f.uas2)] {
        match pos {
            Uas::Runs(sf) => uases.push(Sipp::uas(
                &dir,
                name,
                &scenario(sf),
                port,
                f.transport,
                f.calls,
            )),
            Uas::Silent => silent.push((name, Silent::bind(port))),
        }
    }

    let mut uac = Sipp::uac(
        &dir,
        &scenario(f.uac),
        p.uac,
        f.transport,
        f.service,
        f.calls,
        p.proxy,
    );
    let mut ok = uac.finish(Duration::from_secs(90)) == Some(0);
    for u in &mut uases {
        ok &= u.finish(Duration::from_secs(20)) == Some(0);
    }
    let mut stray = String::new();
    for (name, s) in &silent {
        if let Some(what) = s.received() {
            ok = false;
            stray += &format!(
                "--- {name} (port {}) must get nothing, got {what}\n",
                s.port
            );
        }
    }
    if !ok {
        let mut msg = format!(
            "{} over {:?}: not every SIPp completed its {} calls (logs kept in {})\n",
            f.name,
            f.transport,
            f.calls,
            dir.path.display()
        );
        msg += &uac.report();
        for u in &uases {
            msg += &u.report();
        }
        msg += &stray;
        msg += &format!("--- proxy log (tail):\n{}", tail(&proxy.log, 4000));
        panic!("{msg}");
    }
    drop(proxy);
    dir.passed = true;
}

/// A copy of a scenario with the checks marked `proxy-only` switched off.
fn without_proxy_checks(dir: &RunDir, name: &str) -> PathBuf {
    let xml = std::fs::read_to_string(scenario(name)).expect("scenario");
    let out: String = xml
        .lines()
        .map(|l| {
            if l.contains("<!-- proxy-only -->") {
                l.replace("check_it=\"true\"", "check_it=\"false\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.file(&format!("direct_{name}"));
    std::fs::write(&path, out).expect("write scenario");
    path
}

/// Runs a UAC scenario directly against a UAS scenario, no proxy in between.
fn direct(slot: u16, uac_sf: &str, uas_sf: &str, uas_id: &str, calls: u32) {
    if !have_sipp() {
        return;
    }
    let p = ports(slot);
    let mut dir = RunDir::new(&format!("direct-{slot}"));
    let t = Transport::Udp;
    let mut uas = Sipp::uas(
        &dir,
        uas_id,
        &without_proxy_checks(&dir, uas_sf),
        p.uas1,
        t,
        calls,
    );
    let mut uac = Sipp::uac(
        &dir,
        &without_proxy_checks(&dir, uac_sf),
        p.uac,
        t,
        "bob",
        calls,
        p.uas1,
    );
    let ok = uac.finish(Duration::from_secs(60)) == Some(0)
        && uas.finish(Duration::from_secs(20)) == Some(0);
    if !ok {
        uas.finish(Duration::from_secs(1));
        panic!(
            "{uac_sf} against {uas_sf}, no proxy (logs kept in {}):\n{}{}",
            dir.path.display(),
            uac.report(),
            uas.report()
        );
    }
    dir.passed = true;
}

// ---------------------------------------------------------------------------------
// The shipped config.

/// `examples/stateful.cfg` compiles with the defines the tests give it.
#[test]
fn stateful_example_passes_check() {
    let out = Command::new(ferrosip_tests::ferrosip_bin())
        .args(["check", "-f"])
        .arg(example_cfg())
        .args(["-A", "PROXY_PORT=30099"])
        .args(["-A", "UAS1=\"sip:127.0.0.1:30098\""])
        .args(["-A", "UAS2=\"sip:127.0.0.1:30097\""])
        .args(["-A", &format!("FR_TIMER={FR_TIMER}")])
        .args(["-A", &format!("FR_INV_TIMER={FR_INV_TIMER}")])
        .output()
        .expect("ferrosip check runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------
// The scenarios without a proxy: the flows that make sense end to end.

#[test]
fn direct_basic_call_scenarios_agree() {
    direct(10, "uac_call.xml", "uas_answer.xml", "uas1", 5);
}

#[test]
fn direct_failover_caller_agrees_with_the_answering_uas2() {
    direct(11, "uac_failover.xml", "uas_answer.xml", "uas2", 5);
}

#[test]
fn direct_cancel_scenarios_agree() {
    direct(12, "uac_cancel.xml", "uas_ring_cancelled.xml", "uas1", 5);
}

#[test]
fn direct_reinvite_scenarios_agree() {
    direct(13, "uac_reinvite.xml", "uas_reinvite.xml", "uas1", 5);
}

/// Without the proxy the caller gets UAS2's 401 alone (its check for UAS1's
/// Proxy-Authenticate is proxy-only).
#[test]
fn direct_challenge_caller_agrees_with_the_401_uas() {
    direct(21, "uac_challenge.xml", "uas_challenge_www.xml", "uas2", 5);
}

#[test]
fn direct_late_answer_scenarios_agree() {
    direct(22, "uac_late_answer.xml", "uas_late_answer.xml", "uas1", 5);
}

// ---------------------------------------------------------------------------------
// Through the proxy.

/// (a) INVITE -> 100 -> 180 -> 200 -> ACK -> BYE -> 200; ACK and BYE follow the
/// Record-Route; nothing reaches UAS2.
fn basic_call(slot: u16, transport: Transport) {
    through_proxy(Flow {
        name: "basic",
        slot,
        transport,
        calls: CALLS,
        service: "bob",
        uac: "uac_call.xml",
        uas1: Uas::Runs("uas_answer.xml"),
        uas2: Uas::Silent,
    });
}

#[test]
fn basic_call_over_udp() {
    basic_call(0, Transport::Udp);
}

#[test]
fn basic_call_over_tcp() {
    basic_call(1, Transport::Tcp);
}

/// (b) UAS1 answers 486 and gets the proxy's ACK; failure_route relays to UAS2,
/// which rings and answers; the caller never sees the 486.
fn busy_failover(slot: u16, transport: Transport) {
    through_proxy(Flow {
        name: "busy-failover",
        slot,
        transport,
        calls: CALLS,
        service: "bob",
        uac: "uac_failover.xml",
        uas1: Uas::Runs("uas_busy.xml"),
        uas2: Uas::Runs("uas_answer.xml"),
    });
}

#[test]
fn busy_failover_over_udp() {
    busy_failover(2, Transport::Udp);
}

#[test]
fn busy_failover_over_tcp() {
    busy_failover(3, Transport::Tcp);
}

/// (c1) UAS1 never answers (over UDP it gets the INVITE's retransmissions); after
/// fr_timer the branch gets an internal 408, is not CANCELed (no provisional), and
/// failure_route relays to UAS2.
fn silent_failover(slot: u16, transport: Transport) {
    through_proxy(Flow {
        name: "timeout-failover",
        slot,
        transport,
        calls: CALLS,
        service: "bob",
        uac: "uac_failover.xml",
        uas1: Uas::Runs("uas_no_answer.xml"),
        uas2: Uas::Runs("uas_answer.xml"),
    });
}

#[test]
fn timeout_failover_without_provisional_over_udp() {
    silent_failover(4, Transport::Udp);
}

#[test]
fn timeout_failover_without_provisional_over_tcp() {
    silent_failover(5, Transport::Tcp);
}

/// (c2) UAS1 sends only 100; after fr_inv_timer the proxy CANCELs it (UAS1 answers
/// 200 and 487 and gets the ACK) and failure_route relays to UAS2.
#[test]
fn timeout_failover_after_100_cancels_the_branch_over_udp() {
    through_proxy(Flow {
        name: "timeout-after-100-failover",
        slot: 6,
        transport: Transport::Udp,
        calls: CALLS,
        service: "bob",
        uac: "uac_failover.xml",
        uas1: Uas::Runs("uas_trying_cancelled.xml"),
        uas2: Uas::Runs("uas_answer.xml"),
    });
}

/// (d) sip:fork@proxy forks to UAS1 and UAS2; UAS1 rings, UAS2 answers; the proxy
/// CANCELs UAS1 (200 + 487 + the proxy's ACK) and the caller sees one 200, UAS2's.
#[test]
fn parallel_fork_over_udp() {
    through_proxy(Flow {
        name: "parallel-fork",
        slot: 7,
        transport: Transport::Udp,
        calls: FORK_CALLS,
        service: "fork",
        uac: "uac_fork.xml",
        uas1: Uas::Runs("uas_ring_cancelled.xml"),
        uas2: Uas::Runs("uas_fork_answer.xml"),
    });
}

/// (e) The caller CANCELs while UAS1 rings: 200 for the CANCEL, 487 for the INVITE,
/// the caller's ACK absorbed; UAS1 gets the CANCEL and the proxy's ACK for its 487;
/// failure_route sees t_is_canceled() and nothing reaches UAS2.
#[test]
fn cancel_while_ringing_over_udp() {
    through_proxy(Flow {
        name: "cancel",
        slot: 8,
        transport: Transport::Udp,
        calls: CALLS,
        service: "bob",
        uac: "uac_cancel.xml",
        uas1: Uas::Runs("uas_ring_cancelled.xml"),
        uas2: Uas::Silent,
    });
}

/// (f) A re-INVITE (100 from the proxy, 200) and the BYE follow the Record-Route.
#[test]
fn reinvite_in_dialog_over_udp() {
    through_proxy(Flow {
        name: "reinvite",
        slot: 9,
        transport: Transport::Udp,
        calls: CALLS,
        service: "bob",
        uac: "uac_reinvite.xml",
        uas1: Uas::Runs("uas_reinvite.xml"),
        uas2: Uas::Silent,
    });
}

/// (g) sip:fork@proxy: UAS1 answers 407 (Proxy-Authenticate realm="a"), UAS2 401
/// (WWW-Authenticate realm="b") 300 ms later; each gets the proxy's ACK. The caller
/// gets one final reply, the 401 with both challenges (§16.7 steps 6 and 7: 401 and
/// 407 come first among 4xx, the lower code wins, as in Kamailio), and nothing else.
/// The fork has no failure_route (MANAGE_FAILURE would not fail over a 401 or 407
/// either).
fn challenges_aggregated(slot: u16, transport: Transport) {
    through_proxy(Flow {
        name: "challenges-aggregated",
        slot,
        transport,
        calls: FORK_CALLS,
        service: "fork",
        uac: "uac_challenge.xml",
        uas1: Uas::Runs("uas_challenge_proxy.xml"),
        uas2: Uas::Runs("uas_challenge_www.xml"),
    });
}

#[test]
fn fork_challenges_are_aggregated_over_udp() {
    challenges_aggregated(15, Transport::Udp);
}

#[test]
fn fork_challenges_are_aggregated_over_tcp() {
    challenges_aggregated(16, Transport::Tcp);
}

/// (h) sip:fork@proxy: UAS1 rings, UAS2 declines (603) 200 ms later. The 603 makes
/// the proxy CANCEL UAS1 at once (well before fr_inv_timer: UAS1 waits 1.5 s at
/// most), which answers 200 and 487 and gets the proxy's ACK; the caller gets the
/// 180, then the 603 (6xx beats the 487) and nothing else, and UAS2 the proxy's ACK.
fn decline_cancels_the_fork(slot: u16, transport: Transport) {
    through_proxy(Flow {
        name: "decline-cancels-fork",
        slot,
        transport,
        calls: FORK_CALLS,
        service: "fork",
        uac: "uac_decline.xml",
        uas1: Uas::Runs("uas_ring_cancelled.xml"),
        uas2: Uas::Runs("uas_decline.xml"),
    });
}

#[test]
fn fork_6xx_cancels_the_other_branches_over_udp() {
    decline_cancels_the_fork(17, Transport::Udp);
}

#[test]
fn fork_6xx_cancels_the_other_branches_over_tcp() {
    decline_cancels_the_fork(18, Transport::Tcp);
}

/// (i) The caller CANCELs while UAS1 rings; UAS1 answers the CANCEL with 200 and then
/// the INVITE with 200 (its answer crossed the CANCEL). The caller gets the proxy's
/// 200 for the CANCEL, then UAS1's 200 for the INVITE with the Record-Route, ACKs it
/// end to end and sends a BYE, both reaching UAS1 through loose_route; nothing
/// reaches UAS2.
fn late_answer_after_cancel(slot: u16, transport: Transport) {
    through_proxy(Flow {
        name: "late-2xx-after-cancel",
        slot,
        transport,
        calls: CALLS,
        service: "bob",
        uac: "uac_late_answer.xml",
        uas1: Uas::Runs("uas_late_answer.xml"),
        uas2: Uas::Silent,
    });
}

#[test]
fn late_2xx_after_cancel_is_relayed_over_udp() {
    late_answer_after_cancel(19, Transport::Udp);
}

#[test]
fn late_2xx_after_cancel_is_relayed_over_tcp() {
    late_answer_after_cancel(20, Transport::Tcp);
}

// ---------------------------------------------------------------------------------
// Packet loss.

/// What one SIPp sent (`S`) and received (`R`), from its `-trace_shortmsg` log:
/// per Call-ID and first line ("INVITE", "BYE", "200 BYE", ...). SIPp logs a message
/// it received before it decides to drop it (`-lost`), and a message it sent only
/// when it really sent it (a dropped send is not logged).
#[derive(Default)]
struct ShortTrace {
    counts: std::collections::HashMap<(char, String, String), u32>,
    call_ids: std::collections::BTreeSet<String>,
}

impl ShortTrace {
    fn read(path: &Path) -> ShortTrace {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut t = ShortTrace::default();
        for line in text.lines() {
            // ... <S|R> \t call-id \t CSeq:<n> <method> \t <first line>
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 4 {
                continue;
            }
            let n = f.len();
            let (dir, call_id, cseq, first) = (f[n - 4], f[n - 3], f[n - 2], f[n - 1]);
            let dir = match dir {
                "S" => 'S',
                "R" => 'R',
                _ => continue,
            };
            let method = cseq.rsplit(' ').next().unwrap_or("");
            let what = match first.strip_prefix("SIP/2.0 ") {
                Some(reply) => format!("{} {method}", &reply[..reply.len().min(3)]),
                None => first.split(' ').next().unwrap_or("").to_string(),
            };
            *t.counts
                .entry((dir, call_id.to_string(), what))
                .or_default() += 1;
            t.call_ids.insert(call_id.to_string());
        }
        t
    }

    fn get(&self, dir: char, call_id: &str, what: &str) -> u32 {
        self.counts
            .get(&(dir, call_id.to_string(), what.to_string()))
            .copied()
            .unwrap_or(0)
    }
}

/// Over all calls: how many more copies of `what` one side saw than the other sent,
/// summed where positive (a lower bound: a call can both lose and gain copies).
fn surplus(
    seen: &ShortTrace,
    seen_dir: char,
    sent: &ShortTrace,
    sent_dir: char,
    what: &str,
) -> u32 {
    seen.call_ids
        .union(&sent.call_ids)
        .map(|c| {
            seen.get(seen_dir, c, what)
                .saturating_sub(sent.get(sent_dir, c, what))
        })
        .sum()
}

/// Calls and rate of the loss flow, and the loss SIPp simulates at both ends (%).
const LOSS_CALLS: u32 = 100;
const LOSS_RATE: u32 = 20;
const LOSS_PERCENT: u32 = 8;
/// fr_timer/fr_inv_timer of the loss flow: 16 s leaves the proxy's INVITE and BYE
/// client transactions 7 sends (0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5 s) before Timer
/// B/F. With each send's round trip failing ~15 % of the time under 8 % loss at the
/// UAS, a call is lost to the timer with probability ~0.15^7 = 2e-6.
const LOSS_FR_TIMER: u32 = 16_000;

/// The basic call through the proxy with SIPp dropping 8 % of everything the caller
/// and the callee send and receive (`-lost`), 100 calls: every call must complete
/// (both SIPps exit 0), and the message traces must show the proxy's own work:
/// - INVITE and BYE copies that reached the UAS beyond those the UAC sent: the
///   proxy's client transactions retransmitted them (Timers A and E; the UAC's own
///   copies do not count, a stateful proxy absorbs them);
/// - copies of the INVITE or BYE the UAC sent that never reached the UAS: the proxy's
///   server transactions absorbed them;
/// - 200s for the BYE that reached the UAC beyond those the UAS sent: the proxy's
///   completed server transaction answered the UAC's retransmitted BYE itself.
///
/// Scenarios: `uac_call_lossy.xml` and `uas_answer_lossy.xml` (their header comments
/// say which message is recovered by whom). With 100 calls at 8 % loss each of the
/// three counts is 0 with probability < 1e-3.
#[test]
fn calls_complete_under_packet_loss_over_udp() {
    if !have_sipp() {
        return;
    }
    let p = ports(14);
    let t = Transport::Udp;
    let mut dir = RunDir::new("packet-loss");
    let proxy = start_proxy_with_timers(&dir, p, LOSS_FR_TIMER, LOSS_FR_TIMER);
    let uas2 = Silent::bind(p.uas2);

    let lost = LOSS_PERCENT.to_string();
    let uas_short = dir.file("uas1_short.log");
    let uac_short = dir.file("uac_short.log");
    let short = |path: &Path| -> Vec<String> {
        vec![
            "-trace_shortmsg".into(),
            "-shortmessage_file".into(),
            path.to_str().expect("path").into(),
        ]
    };
    let mut uas_args: Vec<String> = vec![
        "-key".into(),
        "uas_id".into(),
        "uas1".into(),
        "-m".into(),
        LOSS_CALLS.to_string(),
        "-lost".into(),
        lost.clone(),
    ];
    uas_args.extend(short(&uas_short));
    let mut uas = Sipp::spawn(
        &dir,
        "uas1",
        &scenario("uas_answer_lossy.xml"),
        p.uas1,
        t,
        &uas_args,
    );
    wait_bound(&mut uas.child, "sipp uas1", p.uas1, t, &uas.stderr);

    let mut uac_args: Vec<String> = vec![
        "-s".into(),
        "bob".into(),
        "-m".into(),
        LOSS_CALLS.to_string(),
        "-r".into(),
        LOSS_RATE.to_string(),
        "-l".into(),
        LOSS_CALLS.to_string(),
        "-lost".into(),
        lost,
    ];
    uac_args.extend(short(&uac_short));
    uac_args.push(format!("127.0.0.1:{}", p.proxy));
    let mut uac = Sipp::spawn(
        &dir,
        "uac",
        &scenario("uac_call_lossy.xml"),
        p.uac,
        t,
        &uac_args,
    );

    // Calls start over 5 s and last ~1.5 s (more when a message is lost); the UAS
    // keeps each call 16 s after its BYE.
    let uac_ok = uac.finish(Duration::from_secs(60)) == Some(0);
    let uas_ok = uas.finish(Duration::from_secs(30)) == Some(0);
    let stray = uas2.received();
    let fail = |why: &str| -> ! {
        panic!(
            "packet loss over UDP: {why} (logs kept in {})\n{}{}--- proxy log (tail):\n{}",
            dir.path.display(),
            uac.report(),
            uas.report(),
            tail(&proxy.log, 4000)
        )
    };
    if !(uac_ok && uas_ok) {
        fail(&format!(
            "not every SIPp completed its {LOSS_CALLS} calls under {LOSS_PERCENT} % loss"
        ));
    }
    if let Some(what) = stray {
        fail(&format!(
            "uas2 (port {}) must get nothing, got {what}",
            p.uas2
        ));
    }

    let at_uac = ShortTrace::read(&uac_short);
    let at_uas = ShortTrace::read(&uas_short);
    let invite_retransmitted = surplus(&at_uas, 'R', &at_uac, 'S', "INVITE");
    let bye_retransmitted = surplus(&at_uas, 'R', &at_uac, 'S', "BYE");
    let invite_absorbed = surplus(&at_uac, 'S', &at_uas, 'R', "INVITE");
    let bye_absorbed = surplus(&at_uac, 'S', &at_uas, 'R', "BYE");
    let bye_200_resent = surplus(&at_uac, 'R', &at_uas, 'S', "200 BYE");
    eprintln!(
        "{LOSS_CALLS} calls under {LOSS_PERCENT} % loss: the proxy retransmitted at least \
         {invite_retransmitted} INVITEs and {bye_retransmitted} BYEs, absorbed at least \
         {invite_absorbed} INVITE and {bye_absorbed} BYE copies of the caller and resent \
         the 200 for a BYE at least {bye_200_resent} times"
    );
    if invite_retransmitted == 0 || bye_retransmitted == 0 {
        fail(&format!(
            "the UAS got no INVITE or no BYE copy the UAC had not sent ({invite_retransmitted} \
             INVITEs, {bye_retransmitted} BYEs): the proxy's client transactions did not \
             retransmit"
        ));
    }
    if invite_absorbed + bye_absorbed == 0 {
        fail("every copy of the caller's INVITEs and BYEs reached the UAS: nothing absorbed");
    }
    if bye_200_resent == 0 {
        fail("the caller never got a 200 for its BYE that the UAS had not sent");
    }
    drop(proxy);
    dir.passed = true;
}
