//! A proxy for a test: the `ferrosip` binary started on a config ([`Launch`]), waited for
//! until it listens, and stopped by its PID (never by name) when the test is done with it;
//! free ports.

use std::ffi::OsString;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to start `ferrosip run -E -f <config>`: `-A` defines, other arguments, where its log
/// goes, which port to wait for, how to stop it.
pub struct Launch {
    binary: Option<PathBuf>,
    cfg: PathBuf,
    args: Vec<OsString>,
    log: Option<PathBuf>,
    port: Option<u16>,
    startup: Duration,
    terminate_on_drop: bool,
}

impl Launch {
    /// `ferrosip run -f cfg`, its output discarded, not waited for.
    pub fn new(cfg: impl AsRef<Path>) -> Launch {
        Launch {
            binary: None,
            cfg: cfg.as_ref().to_path_buf(),
            args: Vec::new(),
            log: None,
            port: None,
            startup: Duration::from_secs(20),
            terminate_on_drop: false,
        }
    }

    /// Runs `binary` instead of `ferrosip` (a custom binary with modules of its own).
    pub fn binary(mut self, binary: impl Into<PathBuf>) -> Launch {
        self.binary = Some(binary.into());
        self
    }

    /// `-A define` (`NAME=value`, `#!define` from the command line).
    pub fn define(mut self, define: impl AsRef<str>) -> Launch {
        self.args.push("-A".into());
        self.args.push(define.as_ref().into());
        self
    }

    /// More arguments after the config.
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Launch {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Its stdout and stderr go to `path` (read with [`Proxy::log_text`]).
    pub fn log(mut self, path: impl Into<PathBuf>) -> Launch {
        self.log = Some(path.into());
        self
    }

    /// [`Launch::start`] returns once UDP and TCP `port` on 127.0.0.1 are taken.
    pub fn listening_on(mut self, port: u16) -> Launch {
        self.port = Some(port);
        self
    }

    /// Dropping the proxy sends SIGTERM first (a clean stop: modules flush what they
    /// keep), SIGKILL only when it has not ended within 5 s.
    pub fn terminate_on_drop(mut self) -> Launch {
        self.terminate_on_drop = true;
        self
    }

    /// Starts it; panics with its log when it ends or does not listen in time.
    pub fn start(self) -> Proxy {
        self.try_start().unwrap_or_else(|why| panic!("{why}"))
    }

    /// Starts it; `Err` with its exit status and log when it ends before listening (a
    /// caller may start it again, e.g. after an address was still taken); panics when it
    /// runs but does not listen in time.
    pub fn try_start(self) -> Result<Proxy, String> {
        let binary = self.binary.clone().unwrap_or_else(crate::ferrosip_bin);
        let mut cmd = Command::new(binary);
        // -E: the log goes to stderr (the test reads it) whatever the config says; without
        // it, a config without log_stderror=yes logs to syslog, as Kamailio's does.
        cmd.args(["run", "-E", "-f"])
            .arg(&self.cfg)
            .args(&self.args)
            .stdin(Stdio::null());
        match &self.log {
            Some(path) => {
                let out = std::fs::File::create(path).expect("proxy log file");
                let err = out.try_clone().expect("proxy log file");
                cmd.stdout(out).stderr(err);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let child = cmd.spawn().expect("ferrosip starts");
        let mut proxy = Proxy {
            child,
            dir: self
                .cfg
                .parent()
                .map_or_else(std::env::temp_dir, Path::to_path_buf),
            log: self.log,
            terminate_on_drop: self.terminate_on_drop,
        };
        if let Some(port) = self.port {
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
            let deadline = Instant::now() + self.startup;
            // Up once its sockets are taken.
            while UdpSocket::bind(addr).is_ok() || TcpStream::connect(addr).is_err() {
                if let Ok(Some(status)) = proxy.child.try_wait() {
                    return Err(format!("ferrosip exited ({status}):\n{}", proxy.log_text()));
                }
                assert!(
                    Instant::now() < deadline,
                    "ferrosip did not start on {addr}:\n{}",
                    proxy.log_text()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(proxy)
    }
}

/// A running proxy, stopped when dropped (see [`Launch::terminate_on_drop`]).
pub struct Proxy {
    pub child: Child,
    /// The directory of its config.
    pub dir: PathBuf,
    log: Option<PathBuf>,
    terminate_on_drop: bool,
}

impl Proxy {
    /// Its log so far (empty without [`Launch::log`]).
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// Sends it signal `name` (`HUP`, `TERM`, ...) by its PID.
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "SIG{name} sent to ferrosip");
    }

    /// Waits until the log holds `count` lines containing `what`.
    pub fn wait_log(&self, what: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.log_text().matches(what).count() < count {
            assert!(
                Instant::now() < deadline,
                "no {count}th \"{what}\" in the log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it as an operator does (SIGTERM) and returns its log; panics when it has not
    /// ended within 15 s.
    pub fn stop(mut self) -> String {
        self.signal("TERM");
        if !self.wait_end(Duration::from_secs(15)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!("ferrosip did not stop on SIGTERM:\n{}", self.log_text());
        }
        self.log_text()
    }

    /// Ends it at once, as a crash would (no stop hooks run).
    pub fn kill(mut self) {
        self.terminate_on_drop = false;
    }

    fn wait_end(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if self.terminate_on_drop && matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-s", "TERM", &self.child.id().to_string()])
                .status();
            if self.wait_end(Duration::from_secs(5)) {
                return;
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `cfg` into a directory of this test (`name`) and runs `ferrosip run -f` on it;
/// returns once the proxy holds UDP and TCP `port` on 127.0.0.1.
pub fn start_proxy(name: &str, cfg: &str, port: u16) -> Proxy {
    let dir = std::env::temp_dir().join(format!("ferrosip-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("proxy.cfg");
    std::fs::write(&path, cfg).expect("write cfg");
    Launch::new(path).listening_on(port).start()
}

/// A port free for both UDP and TCP on 127.0.0.1 (the proxy listens on both).
pub fn free_port() -> u16 {
    loop {
        let u = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = u.local_addr().expect("addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
