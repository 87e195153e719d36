//! rtpengine (Debian `rtpengine-daemon`, unpacked by scripts/test.sh), run in the
//! foreground in userspace as the media relay of a test: its rtpproxy-compatible control
//! port (`--listen-udp`, for the rtpproxy module) and its ng port (`--listen-ng`, for the
//! rtpengine module), relaying on one loopback address so a rewritten SDP shows.

use crate::packaged_path;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A UDP port free on 127.0.0.1 at the time of the call.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// An rtpengine started by this test, ended by its PID when dropped.
pub struct Rtpengine {
    child: Child,
    /// Its ng control port on 127.0.0.1.
    pub ng: u16,
    log: PathBuf,
}

impl Drop for Rtpengine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Rtpengine {
    /// Starts it relaying on `relay_ip` with media ports in `ports`, the rtpproxy control
    /// port on 127.0.0.1:`rtpproxy_udp` and the ng port on 127.0.0.1:`ng`; its log goes
    /// to `dir`. Returns `None` (skipped, and said) when the package is not unpacked and
    /// the suite does not require it.
    pub fn start(
        dir: &Path,
        relay_ip: &str,
        rtpproxy_udp: u16,
        ng: u16,
        ports: (u16, u16),
    ) -> Option<Rtpengine> {
        let bin = packaged_path("/usr/bin/rtpengine");
        if !bin.exists() {
            assert!(
                std::env::var_os("FERROSIP_REQUIRE_STOCK_CFG").is_none(),
                "scripts/test.sh unpacks rtpengine-daemon, but {} is missing",
                bin.display()
            );
            eprintln!("skipped: {} not there", bin.display());
            return None;
        }
        let log = dir.join("rtpengine.log");
        let child = Command::new(&bin)
            .args([
                "--config-file=none",
                "--foreground",
                "--log-stderr",
                "--table=-1",
                "--delete-delay=0",
                "--log-level=6",
            ])
            .arg(format!("--interface={relay_ip}"))
            .arg(format!("--listen-udp=127.0.0.1:{rtpproxy_udp}"))
            .arg(format!("--listen-ng=127.0.0.1:{ng}"))
            .arg(format!("--port-min={}", ports.0))
            .arg(format!("--port-max={}", ports.1))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("rtpengine starts");
        let r = Rtpengine { child, ng, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while r
            .ng_command("d7:command4:pinge")
            .is_none_or(|a| !a.contains("pong"))
        {
            assert!(
                Instant::now() < deadline,
                "rtpengine did not answer ping:\n{}",
                r.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(r)
    }

    /// One ng command (bencoded dictionary); the answer's text.
    pub fn ng_command(&self, dict: &str) -> Option<String> {
        let s = UdpSocket::bind("127.0.0.1:0").ok()?;
        s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
        // rtpengine answers a cookie it has seen from its cache: each command needs its own.
        static COOKIES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let cookie = format!(
            "t{}-{}",
            std::process::id(),
            COOKIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        s.send_to(
            format!("{cookie} {dict}").as_bytes(),
            ("127.0.0.1", self.ng),
        )
        .ok()?;
        let mut buf = [0u8; 65536];
        let (n, _) = s.recv_from(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        text.strip_prefix(&format!("{cookie} ")).map(str::to_string)
    }

    /// The Call-IDs rtpengine holds (ng `list`: `d5:callsl<string>...e6:result2:oke`).
    pub fn calls(&self) -> String {
        self.ng_command("d7:command4:liste")
            .expect("rtpengine answers list")
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
