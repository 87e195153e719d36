//! SIPp, the peer most integration tests drive the proxy with (Debian `sip-tester`; the
//! README's test command installs it): whether it is there, starting it, waiting for it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether SIPp is installed. The README's test command installs it and sets
/// `FERROSIP_REQUIRE_STOCK_CFG`, under which a missing SIPp fails instead of skipping.
pub fn have_sipp() -> bool {
    let found = Command::new("sipp").arg("-v").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("FERROSIP_REQUIRE_STOCK_CFG").is_none(),
            "scripts/test.sh installs sip-tester, but sipp is missing"
        );
        eprintln!("skipped: sipp not installed (scripts/test.sh installs it)");
    }
    found
}

/// Starts `sipp` with `args`, its output discarded (scenarios that matter write trace
/// files of their own).
pub fn spawn_sipp(args: &[&str]) -> Child {
    Command::new("sipp")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp starts")
}

/// Waits up to `limit` for `child` to end and returns its exit code (`None` when a signal
/// ended it); past the limit, kills it (by its PID) and returns `None`.
pub fn wait_exit(mut child: Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A `sipp` command for one traced run towards `target` (`host:port`): scenario file,
/// local address 127.0.0.1, no keyboard, and its errors and messages in
/// `dir/<tag>-errors.log` and `dir/<tag>-messages.log` (see [`log_tails`]); output
/// discarded. The caller adds the port, transport, call count, timeouts.
pub fn traced_sipp(dir: &Path, tag: &str, scenario: &Path, target: &str) -> Command {
    let mut cmd = Command::new("sipp");
    cmd.arg(target)
        .arg("-sf")
        .arg(scenario)
        .args(["-i", "127.0.0.1", "-nostdin", "-trace_err", "-trace_msg"])
        .arg("-error_file")
        .arg(dir.join(format!("{tag}-errors.log")))
        .arg("-message_file")
        .arg(dir.join(format!("{tag}-messages.log")))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// The last 5000 bytes of every `*.log` in `dir` (SIPp traces, the proxy's log), for a
/// failure message.
pub fn log_tails(dir: &Path) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    let mut out = String::new();
    for path in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
    {
        if let Ok(text) = std::fs::read_to_string(path) {
            let from = text.len().saturating_sub(5000);
            let from = (from..text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(text.len());
            out += &format!("--- {}\n{}\n", path.display(), &text[from..]);
        }
    }
    out
}

/// A SIPp process killed (and reaped) when dropped, so a failing test leaves no peer
/// running.
pub struct Sipp(pub Child);

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Sipp {
    /// Its exit code once it ends within `limit`; `None` when it did not (or was killed
    /// by a signal).
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
