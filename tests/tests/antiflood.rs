//! Flood blocking end to end (issue 15): Kamailio's stock `kamailio.cfg` with
//! `WITH_ANTIFLOOD` (pike + the `ipban` htable), unmodified, under a one-source flood
//! while phones from another address call through it; and the memory bounds of pike and
//! htable under a flood from a million distinct sources.

use ferrosip_mod_htable::table::{ItemValue, Table, TableSpec, WriteError};
use ferrosip_mod_pike::counter::{PikeConfig, PikeCounter};
use ferrosip_tests::{free_port, have_sipp, kamailio_stock_cfg, log_tails, wait_exit, Launch};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The two memory tests measure this process's RSS: they run one at a time.
static MEMORY: Mutex<()> = Mutex::new(());

/// Tests of this file that bind port 5060 (on every interface) take it in turn.
static PORT_5060: Mutex<()> = Mutex::new(());

fn test_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("ferrosip-antiflood-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    dir
}

fn scenario(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(path)
}

/// The resident set of this process, in KiB (`VmRSS`).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A cheap pseudo-random sequence (xorshift), so the addresses are spread as a flood of
/// spoofed sources would be.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// 1,000,000 distinct random sources (IPv4 and IPv6) through pike with its default cap:
/// the tree stops at 500,000 nodes and the process grows by less than 120 MiB (the
/// bound docs/flood.md states: about 100 bytes per node).
#[test]
fn pike_memory_is_bounded_under_a_million_random_sources() {
    let _alone = MEMORY.lock().unwrap_or_else(|e| e.into_inner());
    let before = rss_kib(std::process::id());
    let pike = PikeCounter::new(PikeConfig {
        sampling_time_unit: 2,
        reqs_density_per_unit: 16,
        remove_latency: 4,
        log_level: 1,
        max_nodes: 500_000,
    });
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 1_000_000 {
        let r = rng.next();
        let ip = if r.is_multiple_of(4) {
            IpAddr::V6(Ipv6Addr::from(u128::from(r) << 64 | u128::from(rng.next())))
        } else {
            IpAddr::V4(Ipv4Addr::from(r as u32))
        };
        if seen.insert(ip) {
            pike.check(ip);
        }
    }
    drop(seen);
    assert_eq!(pike.len(), 500_000, "the cap holds");
    let (_, untracked) = pike.sweep();
    assert!(untracked > 0, "the cap refused nodes");
    let grown_mib = rss_kib(std::process::id()).saturating_sub(before) / 1024;
    assert!(
        grown_mib < 120,
        "pike with 500,000 addresses grew the process by {grown_mib} MiB"
    );
    eprintln!("pike: 1,000,000 sources, 500,000 nodes, {untracked} refused, RSS +{grown_mib} MiB");
}

/// The `ipban` table of the stock config with a `maxsize`: a million distinct keys leave
/// it at its cap, and the process grows by less than the bound docs/flood.md states.
#[test]
fn htable_memory_is_bounded_by_maxsize() {
    let _alone = MEMORY.lock().unwrap_or_else(|e| e.into_inner());
    let before = rss_kib(std::process::id());
    let table =
        Table::new(TableSpec::parse("ipban=>size=8;autoexpire=300;maxsize=200000").unwrap());
    let mut refused = 0;
    for i in 0..1_000_000u32 {
        let key = Ipv4Addr::from(0x0a00_0000 + i).to_string();
        match table.set(key.as_bytes(), ItemValue::Int(1), None) {
            Ok(()) => {}
            Err(WriteError::Full) => refused += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(table.len(), 200_000);
    assert_eq!(refused, 800_000);
    let grown_mib = rss_kib(std::process::id()).saturating_sub(before) / 1024;
    assert!(
        grown_mib < 60,
        "an ipban of 200,000 items grew the process by {grown_mib} MiB"
    );
    eprintln!("htable: 1,000,000 keys offered, 200,000 kept, RSS +{grown_mib} MiB");
}

/// A SIPp instance sending from `local_ip`, its traces in `dir`.
fn sipp_from(dir: &Path, tag: &str, local_ip: &str, file: &str, args: &[&str]) -> Child {
    Command::new("sipp")
        .arg("127.0.0.1:5060")
        .arg("-sf")
        .arg(scenario(file))
        .args([
            "-i",
            local_ip,
            "-p",
            &free_port().to_string(),
            "-t",
            "u1",
            "-nostdin",
        ])
        .args(["-trace_err", "-error_file"])
        .arg(dir.join(format!("{tag}-errors.log")))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp starts")
}

/// Whether an OPTIONS keepalive sent from `from` gets the stock config's 200.
fn keepalive_answered(from: IpAddr) -> bool {
    let sock = UdpSocket::bind((from, 0)).expect("client socket");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let local = sock.local_addr().expect("local");
    let request = format!(
        "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-probe{port}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{ip}>;tag=p\r\n\
         To: <sip:127.0.0.1:5060>\r\n\
         Call-ID: probe-{port}@test\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        ip = local.ip(),
        port = local.port()
    );
    let mut buf = [0u8; 4096];
    for _ in 0..3 {
        sock.send_to(request.as_bytes(), "127.0.0.1:5060")
            .expect("send");
        if let Ok(n) = sock.recv(&mut buf) {
            return buf[..n].starts_with(b"SIP/2.0 200");
        }
    }
    false
}

fn stat(log: &str, name: &str) -> Option<u64> {
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("Ferrosip stopping"))?;
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// The stock config with `WITH_ANTIFLOOD`: 127.0.0.3 floods OPTIONS at 5,000/s for 10 s
/// while two phones on 127.0.0.2 register and make five calls. pike blocks the flood, the
/// config puts 127.0.0.3 in `ipban` (still refused after pike has cooled down, while a
/// keepalive from 127.0.0.4 is answered), every call completes, the server panics 0
/// times and stays under 200 MiB resident.
#[test]
fn stock_config_antiflood_blocks_a_flood_and_calls_go_through() {
    let stock_cfg = kamailio_stock_cfg();
    if !have_sipp() || !stock_cfg.exists() {
        assert!(
            std::env::var_os("FERROSIP_REQUIRE_STOCK_CFG").is_none(),
            "scripts/test.sh installs sipp and unpacks kamailio"
        );
        eprintln!("skipped: SIPp or Kamailio's stock config is missing");
        return;
    }
    let _port = PORT_5060.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        UdpSocket::bind("127.0.0.1:5060").is_ok(),
        "port 5060 on 127.0.0.1 is taken by another process: this test needs it free"
    );
    let dir = test_dir("stock");
    let server = Launch::new(&stock_cfg)
        .args(["-A", "WITH_ANTIFLOOD"])
        .log(dir.join("ferrosip.log"))
        .listening_on(5060)
        .start();
    let pid = server.child.id();
    let call_id = "antiflood-%u";
    let alice = sipp_from(
        &dir,
        "alice",
        "127.0.0.2",
        "registrar/uas_registered.xml",
        &[
            "-s",
            "alice",
            "-cid_str",
            call_id,
            "-m",
            "5",
            "-r",
            "1",
            "-timeout",
            "60s",
            "-timeout_error",
        ],
    );
    std::thread::sleep(Duration::from_millis(500));
    let flood_started = Instant::now();
    let flood = sipp_from(
        &dir,
        "flood",
        "127.0.0.3",
        "flood/options_flood.xml",
        &[
            "-r", "5000", "-rp", "1000", "-m", "50000", "-l", "100000", "-timeout", "40s",
        ],
    );
    std::thread::sleep(Duration::from_millis(1000));
    let bob = sipp_from(
        &dir,
        "bob",
        "127.0.0.2",
        "stock/uac_register_call.xml",
        &[
            "-s",
            "alice",
            "-cid_str",
            call_id,
            "-m",
            "5",
            "-r",
            "1",
            "-timeout",
            "60s",
            "-timeout_error",
        ],
    );
    let mut peak_rss = 0;
    let mut flood = flood;
    let flood_deadline = flood_started + Duration::from_secs(45);
    let flood_rc = loop {
        peak_rss = peak_rss.max(rss_kib(pid));
        if let Ok(Some(status)) = flood.try_wait() {
            break status.code();
        }
        if Instant::now() > flood_deadline {
            let _ = flood.kill();
            let _ = flood.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let flood_secs = flood_started.elapsed().as_secs_f64();
    let bob_rc = wait_exit(bob, Duration::from_secs(60));
    let alice_rc = wait_exit(alice, Duration::from_secs(60));
    // pike forgets 127.0.0.3 after remove_latency (4 s) and two sampling units; the ban in
    // ipban (autoexpire 300 s) is what still refuses it then.
    std::thread::sleep(Duration::from_secs(9));
    let flooder_answered = keepalive_answered("127.0.0.3".parse().unwrap());
    let other_answered = keepalive_answered("127.0.0.4".parse().unwrap());
    peak_rss = peak_rss.max(rss_kib(pid));
    let log = server.stop();
    let context = || format!("flood took {flood_secs:.1} s\n{}", log_tails(&dir));
    assert_eq!(
        flood_rc,
        Some(0),
        "the flood ran its 50,000 requests\n{}",
        context()
    );
    assert_eq!(
        (alice_rc, bob_rc),
        (Some(0), Some(0)),
        "the five calls from 127.0.0.2 completed\n{}",
        context()
    );
    assert!(
        log.contains("ALERT: pike blocking OPTIONS") && log.contains("IP:127.0.0.3:"),
        "the config's pike alert names 127.0.0.3\n{}",
        context()
    );
    assert!(
        !log.contains("IP:127.0.0.2:"),
        "127.0.0.2 was never blocked\n{}",
        context()
    );
    assert!(
        !flooder_answered,
        "127.0.0.3 is in ipban after pike cooled down\n{}",
        context()
    );
    assert!(other_answered, "127.0.0.4 is answered\n{}", context());
    let received = stat(&log, "received").unwrap_or(0);
    assert!(
        received >= 45_000,
        "the server read {received} of the 50,000 flood requests\n{}",
        context()
    );
    assert_eq!(stat(&log, "panics"), Some(0), "panics at shutdown\n{log}");
    assert!(peak_rss < 200 * 1024, "peak RSS {peak_rss} KiB");
    eprintln!(
        "antiflood: 50,000 OPTIONS in {flood_secs:.1} s, server read {received}, peak RSS {} MiB",
        peak_rss / 1024
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Through the running server: one OPTIONS from each of 20,000 distinct loopback
/// addresses (127.1.x.y) to a config that checks pike on every request, with
/// `max_nodes` 5,000. Every request is answered (untracked sources are allowed), the
/// server warns that the cap was reached, stays under 100 MiB resident and reports 0
/// panics.
#[test]
fn pike_address_cap_through_the_server() {
    let dir = test_dir("cap");
    let port = free_port();
    let cfg = dir.join("cap.cfg");
    std::fs::write(
        &cfg,
        format!(
            "listen=udp:127.0.0.1:{port}\nlisten=tcp:127.0.0.1:{port}\n\
             loadmodule \"sl.so\"\nloadmodule \"pike.so\"\n\
             modparam(\"pike\", \"max_nodes\", 5000)\n\
             modparam(\"pike\", \"reqs_density_per_unit\", 16)\n\
             request_route {{\n\
                 if (!pike_check_req()) {{ exit; }}\n\
                 sl_send_reply(\"200\", \"OK\");\n\
             }}\n"
        ),
    )
    .expect("cfg");
    let server = Launch::new(&cfg)
        .log(dir.join("ferrosip.log"))
        .listening_on(port)
        .start();
    let pid = server.child.id();
    let mut answered = 0;
    let mut buf = [0u8; 2048];
    for i in 0..20_000u32 {
        let ip = Ipv4Addr::new(127, 1, (i >> 8) as u8, (i & 0xff) as u8);
        let sock = UdpSocket::bind((ip, 0)).expect("bind a loopback address");
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .expect("timeout");
        let local = sock.local_addr().expect("local");
        let request = format!(
            "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-cap{i}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:cap@{ip}>;tag=c{i}\r\n\
             To: <sip:127.0.0.1>\r\n\
             Call-ID: cap-{i}@test\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n"
        );
        sock.send_to(request.as_bytes(), ("127.0.0.1", port))
            .expect("send");
        if sock
            .recv(&mut buf)
            .is_ok_and(|n| buf[..n].starts_with(b"SIP/2.0 200"))
        {
            answered += 1;
        }
    }
    // The sweep (every sampling_time_unit, 2 s) reports the untracked sources.
    std::thread::sleep(Duration::from_secs(3));
    let rss_mib = rss_kib(pid) / 1024;
    let log = server.stop();
    assert_eq!(answered, 20_000, "every source was answered\n{log}");
    assert!(
        log.contains("pike: address cap reached"),
        "the cap was reported\n{log}"
    );
    assert!(rss_mib < 100, "server RSS {rss_mib} MiB");
    assert_eq!(stat(&log, "panics"), Some(0), "{log}");
    eprintln!("pike through the server: 20,000 sources, cap 5,000, RSS {rss_mib} MiB");
    let _ = std::fs::remove_dir_all(&dir);
}
