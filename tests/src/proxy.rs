//! A proxy for a test: the `ferrosip` binary started on a config, waited for until it
//! listens, and stopped (by its PID) when the test drops it; free ports.

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running proxy, killed when dropped.
pub struct Proxy {
    pub child: Child,
    pub dir: PathBuf,
}

impl Drop for Proxy {
    fn drop(&mut self) {
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
    let child = Command::new(crate::ferrosip_bin())
        .args(["run", "-f"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ferrosip starts");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let deadline = Instant::now() + Duration::from_secs(10);
    // Up once its sockets are taken.
    while UdpSocket::bind(addr).is_ok() || TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "ferrosip did not start on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Proxy { child, dir }
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
