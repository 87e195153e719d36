//! SIPp, the peer most integration tests drive the proxy with (Debian `sip-tester`; the
//! README's test command installs it): whether it is there, starting it, waiting for it.

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
