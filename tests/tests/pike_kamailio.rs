//! pike against the real thing: Kamailio 5.6 (the Debian package, unpacked under
//! `FERROSIP_PACKAGED_ROOT`) and Ferrosip run the same tiny config (pike_check_req ->
//! 503, else 200) and get the same paced request sequences from loopback addresses;
//! every request's verdict must be the same on both.
//!
//! The engines count in sampling units that start when each engine started, so before
//! each pattern the test finds a unit boundary of that engine: it gets a source of its own
//! blocked, then asks at most 14 times a unit (under the density of 16); pike only
//! unblocks an address when a unit ends, so the first answer 200 comes just after a
//! boundary. Each pattern starts there and paces itself in units, which makes the
//! sequences the same for both engines whatever their phase. The two engines are driven
//! at once, each from its own thread.

use ferrosip_tests::{packaged_path, Launch};
use std::net::{Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const UNIT: Duration = Duration::from_secs(2);
const DENSITY: u32 = 16;

fn config(port: u16) -> String {
    format!(
        "#!KAMAILIO\n\
         listen=udp:127.0.0.1:{port}\n\
         listen=tcp:127.0.0.1:{port}\n\
         children=1\n\
         loadmodule \"sl.so\"\n\
         loadmodule \"pike.so\"\n\
         modparam(\"pike\", \"sampling_time_unit\", {unit})\n\
         modparam(\"pike\", \"reqs_density_per_unit\", {DENSITY})\n\
         modparam(\"pike\", \"remove_latency\", 120)\n\
         request_route {{\n\
             if (!pike_check_req()) {{ sl_send_reply(\"503\", \"Blocked\"); exit; }}\n\
             sl_send_reply(\"200\", \"OK\");\n\
         }}\n",
        unit = UNIT.as_secs()
    )
}

/// Kamailio, stopped (SIGTERM to its main process, which ends its children) on drop.
struct Kamailio(Child);

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the PID of the process this test started.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A SIP client on one loopback address that sends OPTIONS to one engine and reads the
/// verdict.
struct Source {
    sock: UdpSocket,
    port: u16,
    n: u32,
}

impl Source {
    fn new(ip: Ipv4Addr, port: u16) -> Source {
        let sock = UdpSocket::bind((ip, 0)).expect("bind a loopback address");
        sock.set_read_timeout(Some(Duration::from_millis(1000)))
            .expect("timeout");
        Source { sock, port, n: 0 }
    }

    /// 200 or 503; 0 when nothing came back.
    fn ask(&mut self) -> u16 {
        self.n += 1;
        let local = self.sock.local_addr().expect("local");
        let request = format!(
            "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK-pk{n}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:pike@{ip}>;tag=p{n}\r\n\
             To: <sip:127.0.0.1>\r\n\
             Call-ID: pike-{n}@{ip}\r\n\
             CSeq: 1 OPTIONS\r\n\
             Content-Length: 0\r\n\r\n",
            port = self.port,
            n = self.n,
            ip = local.ip(),
        );
        self.sock
            .send_to(request.as_bytes(), ("127.0.0.1", self.port))
            .expect("send");
        let mut buf = [0u8; 2048];
        let want = format!("branch=z9hG4bK-pk{};", self.n);
        let want_end = format!("branch=z9hG4bK-pk{}\r", self.n);
        loop {
            let Ok(len) = self.sock.recv(&mut buf) else {
                return 0;
            };
            let text = String::from_utf8_lossy(&buf[..len]);
            // A late answer to an earlier request is skipped.
            if !(text.contains(&want) || text.contains(&want_end)) {
                continue;
            }
            return text
                .get(8..11)
                .and_then(|code| code.parse().ok())
                .unwrap_or(0);
        }
    }
}

/// One step of a pattern.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// `n` requests back to back from 127.`b`.`c`.`d`.
    Burst([u8; 3], u32),
    /// Wait for unit `k` after the boundary found (unit 0), plus a little.
    Unit(u32),
}

/// Finds a unit boundary of the engine: returns just after one.
fn sync(port: u16) -> Result<(), String> {
    let mut s = Source::new(Ipv4Addr::new(127, 250, 0, 1), port);
    let deadline = Instant::now() + UNIT * 8;
    // Blocked first (40 requests hold at least 16 in one unit, so the block lasts
    // into the next).
    let mut blocked = false;
    for _ in 0..40 {
        blocked |= s.ask() == 503;
    }
    while !blocked {
        if Instant::now() > deadline {
            return Err("the sync source was never blocked".into());
        }
        blocked = s.ask() == 503;
    }
    // At most 14 requests a unit: the block ends at the first boundary it may.
    loop {
        std::thread::sleep(Duration::from_millis(150));
        match s.ask() {
            200 => return Ok(()),
            503 => {}
            other => return Err(format!("sync source got {other}")),
        }
        if Instant::now() > deadline {
            return Err("the sync source was never unblocked".into());
        }
    }
}

/// Runs the patterns against the engine on `port`: each pattern's verdicts in order.
fn run_patterns(port: u16, patterns: &[Vec<Step>]) -> Result<Vec<Vec<u16>>, String> {
    let mut all = Vec::new();
    for steps in patterns {
        sync(port)?;
        let t0 = Instant::now();
        let mut sources: Vec<([u8; 3], Source)> = Vec::new();
        let mut verdicts = Vec::new();
        for step in steps {
            match *step {
                Step::Unit(k) => {
                    let at = t0 + UNIT * k + Duration::from_millis(50);
                    std::thread::sleep(at.saturating_duration_since(Instant::now()));
                }
                Step::Burst(addr, n) => {
                    if !sources.iter().any(|(a, _)| *a == addr) {
                        let ip = Ipv4Addr::new(127, addr[0], addr[1], addr[2]);
                        sources.push((addr, Source::new(ip, port)));
                    }
                    let s = &mut sources
                        .iter_mut()
                        .find(|(a, _)| *a == addr)
                        .expect("source")
                        .1;
                    for _ in 0..n {
                        verdicts.push(s.ask());
                    }
                }
            }
        }
        all.push(verdicts);
    }
    Ok(all)
}

fn first_blocked(v: &[u16]) -> Option<usize> {
    v.iter().position(|c| *c == 503).map(|i| i + 1)
}

#[test]
fn pike_blocks_the_same_requests_as_kamailio_5_6() {
    let kamailio_bin = packaged_path("/usr/sbin/kamailio");
    let modules = packaged_path("/usr/lib/x86_64-linux-gnu/kamailio/modules");
    if !kamailio_bin.exists() || !modules.join("pike.so").exists() {
        assert!(
            std::env::var_os("FERROSIP_REQUIRE_STOCK_CFG").is_none(),
            "Kamailio 5.6 is not unpacked at {} but FERROSIP_REQUIRE_STOCK_CFG is set",
            kamailio_bin.display()
        );
        eprintln!(
            "skipped: no packaged Kamailio at {}",
            kamailio_bin.display()
        );
        return;
    }
    let dir: PathBuf =
        std::env::temp_dir().join(format!("ferrosip-pike-kam-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");

    let kport = ferrosip_tests::free_port();
    let kcfg = dir.join("kamailio.cfg");
    std::fs::write(&kcfg, config(kport)).expect("cfg");
    let klog = std::fs::File::create(dir.join("kamailio.log")).expect("log");
    let kamailio = Kamailio(
        Command::new(&kamailio_bin)
            .arg("-f")
            .arg(&kcfg)
            .arg("-L")
            .arg(&modules)
            .args(["-DD", "-E", "-e", "-m", "64", "-M", "8", "-Y"])
            .arg(&dir)
            .arg("-P")
            .arg(dir.join("kamailio.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(klog)
            .spawn()
            .expect("start kamailio"),
    );

    let fport = ferrosip_tests::free_port();
    let fcfg = dir.join("ferrosip.cfg");
    std::fs::write(&fcfg, config(fport)).expect("cfg");
    let ferrosip = Launch::new(&fcfg)
        .log(dir.join("ferrosip.log"))
        .listening_on(fport)
        .start();

    // Kamailio is up once something holds its port.
    let up = Instant::now() + Duration::from_secs(20);
    while UdpSocket::bind(("127.0.0.1", kport)).is_ok() {
        assert!(Instant::now() < up, "kamailio did not bind {kport}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));

    use Step::*;
    let patterns: Vec<Vec<Step>> = vec![
        // A flood in one unit.
        vec![Burst([1, 0, 1], 30)],
        // A blocked address's neighbours: the same /24, then another /24 of the /16.
        vec![
            Burst([2, 0, 1], 25),
            Burst([2, 0, 2], 20),
            Burst([2, 1, 1], 20),
        ],
        // Over two units: 20 then 20 (the address's count is below the density in
        // both units until the 16th of the second).
        vec![Burst([3, 0, 1], 20), Unit(1), Burst([3, 0, 1], 20)],
        // Blocked in one unit, still blocked through the next, free in the one after.
        vec![
            Burst([4, 0, 1], 25),
            Unit(1),
            Burst([4, 0, 1], 10),
            Unit(2),
            Burst([4, 0, 1], 10),
        ],
        // A steady sender just under the density for four units, then at it.
        vec![
            Burst([5, 0, 1], 15),
            Unit(1),
            Burst([5, 0, 1], 15),
            Unit(2),
            Burst([5, 0, 1], 15),
            Unit(3),
            Burst([5, 0, 1], 15),
            Unit(4),
            Burst([5, 0, 1], 17),
        ],
        // Many addresses of one /24, a few requests each, then one of them floods.
        (1..=30u8)
            .map(|d| Burst([6, 0, d], 3))
            .chain([Burst([6, 0, 7], 25)])
            .collect(),
    ];

    let (kam, fer) = std::thread::scope(|s| {
        let k = s.spawn(|| run_patterns(kport, &patterns));
        let f = s.spawn(|| run_patterns(fport, &patterns));
        (
            k.join().expect("kamailio thread"),
            f.join().expect("ferrosip thread"),
        )
    });
    drop(kamailio);
    let flog = ferrosip.stop();
    let klog = std::fs::read_to_string(dir.join("kamailio.log")).unwrap_or_default();
    let kam = kam.unwrap_or_else(|e| panic!("kamailio: {e}\n{klog}"));
    let fer = fer.unwrap_or_else(|e| panic!("ferrosip: {e}\n{flog}"));

    for (i, (k, f)) in kam.iter().zip(&fer).enumerate() {
        assert!(
            k.iter().chain(f).all(|c| *c == 200 || *c == 503),
            "pattern {i}: every request answered\nkamailio {k:?}\nferrosip {f:?}"
        );
        eprintln!(
            "pattern {i}: {} requests, first 503 at {:?} (kamailio) / {:?} (ferrosip)",
            k.len(),
            first_blocked(k),
            first_blocked(f)
        );
        assert_eq!(k, f, "pattern {i}: verdicts per request");
    }
    // The sequences exercise what they are meant to (so equality is not trivial).
    assert_eq!(first_blocked(&kam[0]), Some(22), "a fresh flooder, 22nd");
    assert_eq!(first_blocked(&kam[1][25..]), Some(17), "a neighbour, 17th");
    assert!(
        kam[3][25..35].iter().all(|c| *c == 503),
        "blocked through the next unit"
    );
    assert!(kam[3][35..].iter().all(|c| *c == 200), "free two units on");
    assert_eq!(first_blocked(&kam[4]), Some(60 + 16), "steady sender");
    let _ = std::fs::remove_dir_all(&dir);
}
