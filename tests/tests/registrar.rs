//! The registrar through the real `ferrosip` binary on `examples/registrar.cfg` (ports
//! and storage given as `-A` defines), driven by SIPp: a phone REGISTERs, a caller's
//! INVITE reaches it by `lookup("location")` (UDP and TCP); unknown users get 404;
//! Expires 0 removes a binding; a too short Expires gets 423. Persistence: db_mode 1 on
//! SQLite survives a restart, db_mode 1 on MariaDB and PostgreSQL carries the same call,
//! and two instances in db_mode 3 on one PostgreSQL database see each other's
//! registrations. Each database is created for the test (`ferrosip_t_<pid>_<n>`) and
//! dropped after it.

use ferrosip_tests::db::{Backend, TestDb};
use ferrosip_tests::{free_port, have_sipp, log_tails, traced_sipp, wait_exit, Launch, Proxy};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(name)
}

fn example_cfg() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/registrar.cfg")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("ferrosip-registrar-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The registrar example on `port`, its log in `dir/proxy-{tag}.log`; SIGTERM (clean
/// stop, flushes) then SIGKILL when dropped.
fn start_registrar(dir: &Path, tag: &str, port: u16, db_mode: u32, db_url: &str) -> Proxy {
    Launch::new(example_cfg())
        .define(format!("PROXY_PORT={port}"))
        .define(format!("DBMODE={db_mode}"))
        .define(format!("DBURL=\"{db_url}\""))
        .define("TIMER_INTERVAL=5")
        .log(dir.join(format!("proxy-{tag}.log")))
        .listening_on(port)
        .terminate_on_drop()
        .start()
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

/// One SIPp run against the proxy; `-m 1`, its own error/message logs in `dir`.
/// (Every argument is one SIPp option; a struct would only rename them.)
#[allow(clippy::too_many_arguments)]
fn sipp(
    dir: &Path,
    tag: &str,
    scenario_file: &str,
    user: &str,
    proxy: u16,
    local: u16,
    t: Transport,
    extra: &[&str],
) -> Child {
    traced_sipp(
        dir,
        tag,
        &scenario(scenario_file),
        &format!("127.0.0.1:{proxy}"),
    )
    .args(["-s", user, "-p", &local.to_string()])
    .args([
        "-t",
        t.sipp(),
        "-m",
        "1",
        "-timeout",
        "20s",
        "-timeout_error",
    ])
    .args(extra)
    .spawn()
    .expect("sipp starts")
}

/// Runs one scenario to completion and asserts it passed.
#[allow(clippy::too_many_arguments)]
fn run_ok(
    dir: &Path,
    tag: &str,
    file: &str,
    user: &str,
    proxy: u16,
    local: u16,
    t: Transport,
    extra: &[&str],
) {
    let code = wait_exit(
        sipp(dir, tag, file, user, proxy, local, t, extra),
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "{tag} ({file}) failed:\n{}", log_tails(dir));
}

/// The phone REGISTERs through `via_register`, then a caller calls it through
/// `via_call`; both SIPp runs must succeed.
fn register_and_call(dir: &Path, user: &str, via_register: u16, via_call: u16, t: Transport) {
    let uas_port = free_port();
    // Same Call-ID on both sides (see uas_registered.xml).
    let cid = format!("call-{user}-%u");
    let uas = sipp(
        dir,
        "uas",
        "registrar/uas_registered.xml",
        user,
        via_register,
        uas_port,
        t,
        &["-cid_str", &cid],
    );
    // The callee must be registered before the call; its 200 arrives within ms, the
    // pause only orders the two SIPp processes.
    std::thread::sleep(Duration::from_millis(700));
    let uac_port = free_port();
    let uac = sipp(
        dir,
        "uac",
        "call_uac.xml",
        user,
        via_call,
        uac_port,
        t,
        &["-cid_str", &cid],
    );
    let uac_code = wait_exit(uac, Duration::from_secs(30));
    let uas_code = wait_exit(uas, Duration::from_secs(30));
    assert_eq!(
        (uac_code, uas_code),
        (Some(0), Some(0)),
        "call to the registered {user} failed:\n{}",
        log_tails(dir)
    );
}

#[test]
fn registered_phone_is_called_over_udp() {
    if !have_sipp() {
        return;
    }
    let dir = temp_dir("udp");
    let port = free_port();
    let proxy = start_registrar(&dir, "a", port, 0, "sqlite:///unused.db");
    register_and_call(&dir, "alice", port, port, Transport::Udp);
    drop(proxy);
}

#[test]
fn registered_phone_is_called_over_tcp() {
    if !have_sipp() {
        return;
    }
    let dir = temp_dir("tcp");
    let port = free_port();
    let proxy = start_registrar(&dir, "a", port, 0, "sqlite:///unused.db");
    register_and_call(&dir, "tina", port, port, Transport::Tcp);
    drop(proxy);
}

#[test]
fn unknown_user_gets_404() {
    if !have_sipp() {
        return;
    }
    let dir = temp_dir("404");
    let port = free_port();
    let _proxy = start_registrar(&dir, "a", port, 0, "sqlite:///unused.db");
    run_ok(
        &dir,
        "uac",
        "registrar/uac_invite_404.xml",
        "nobody",
        port,
        free_port(),
        Transport::Udp,
        &[],
    );
}

#[test]
fn expires_zero_removes_the_binding_and_short_expires_gets_423() {
    if !have_sipp() {
        return;
    }
    let dir = temp_dir("expires");
    let port = free_port();
    let _proxy = start_registrar(&dir, "a", port, 0, "sqlite:///unused.db");
    let phone = free_port();
    run_ok(
        &dir,
        "reg",
        "registrar/uac_register_ok.xml",
        "zed",
        port,
        phone,
        Transport::Udp,
        &["-key", "expires", "300"],
    );
    // Registered: the INVITE does not get a 404 (it goes to the phone's port, where
    // nobody answers; the 404 scenario must fail).
    let code = wait_exit(
        sipp(
            &dir,
            "inv1",
            "registrar/uac_invite_404.xml",
            "zed",
            port,
            free_port(),
            Transport::Udp,
            &["-timeout", "3s"],
        ),
        Duration::from_secs(30),
    );
    assert_ne!(code, Some(0), "a registered user got 404");
    run_ok(
        &dir,
        "unreg",
        "registrar/uac_register_ok.xml",
        "zed",
        port,
        phone,
        Transport::Udp,
        &["-key", "expires", "0"],
    );
    run_ok(
        &dir,
        "inv2",
        "registrar/uac_invite_404.xml",
        "zed",
        port,
        free_port(),
        Transport::Udp,
        &[],
    );
    run_ok(
        &dir,
        "short",
        "registrar/uac_register_423.xml",
        "zed",
        port,
        phone,
        Transport::Udp,
        &["-key", "expires", "10"],
    );
    run_ok(
        &dir,
        "inv3",
        "registrar/uac_invite_404.xml",
        "zed",
        port,
        free_port(),
        Transport::Udp,
        &[],
    );
}

// ----- databases -------------------------------------------------------------------

#[test]
fn registration_survives_a_restart_with_db_mode_1_on_sqlite() {
    if !have_sipp() {
        return;
    }
    let dir = temp_dir("restart");
    let db = TestDb::with_users(Backend::Sqlite, &dir, "usrloc", &[]);
    let url = db.url.clone();
    let port = free_port();
    let phone = free_port();
    let proxy = start_registrar(&dir, "first", port, 1, &url);
    run_ok(
        &dir,
        "reg",
        "registrar/uac_register_ok.xml",
        "rita",
        port,
        phone,
        Transport::Udp,
        &["-key", "expires", "300"],
    );
    // A crash: no stop hook runs, the row must already be written.
    proxy.kill();
    let proxy = start_registrar(&dir, "second", port, 1, &url);
    let uas = sipp(
        &dir,
        "uas",
        "call_uas.xml",
        "rita",
        port,
        phone,
        Transport::Udp,
        &[],
    );
    std::thread::sleep(Duration::from_millis(300));
    let uac = wait_exit(
        sipp(
            &dir,
            "uac",
            "call_uac.xml",
            "rita",
            port,
            free_port(),
            Transport::Udp,
            &[],
        ),
        Duration::from_secs(30),
    );
    let uas = wait_exit(uas, Duration::from_secs(30));
    assert_eq!(
        (uac, uas),
        (Some(0), Some(0)),
        "the call after the restart failed:\n{}\n--- proxy\n{}",
        log_tails(&dir),
        proxy.log_text()
    );
}

#[test]
fn write_back_is_flushed_by_the_stop_hook_with_db_mode_2_on_sqlite() {
    if !have_sipp() {
        return;
    }
    let dir = temp_dir("write-back");
    let db = TestDb::with_users(Backend::Sqlite, &dir, "usrloc", &[]);
    let url = db.url.clone();
    let port = free_port();
    let phone = free_port();
    // The timer never writes in this test: only the stop hook's flush can.
    let first = Launch::new(example_cfg())
        .define(format!("PROXY_PORT={port}"))
        .define("DBMODE=2")
        .define(format!("DBURL=\"{url}\""))
        .define("TIMER_INTERVAL=3600")
        .log(dir.join("proxy-first.log"))
        .listening_on(port)
        .terminate_on_drop()
        .start();
    run_ok(
        &dir,
        "reg",
        "registrar/uac_register_ok.xml",
        "wanda",
        port,
        phone,
        Transport::Udp,
        &["-key", "expires", "300"],
    );
    let log = first.stop();
    assert!(
        log.contains("usrloc: write-back cache flushed at stop") && log.contains("changes=1"),
        "no flush logged at stop:\n{log}"
    );
    let second = start_registrar(&dir, "second", port, 2, &url);
    let uas = sipp(
        &dir,
        "uas",
        "call_uas.xml",
        "wanda",
        port,
        phone,
        Transport::Udp,
        &[],
    );
    std::thread::sleep(Duration::from_millis(300));
    let uac = wait_exit(
        sipp(
            &dir,
            "uac",
            "call_uac.xml",
            "wanda",
            port,
            free_port(),
            Transport::Udp,
            &[],
        ),
        Duration::from_secs(30),
    );
    let uas = wait_exit(uas, Duration::from_secs(30));
    assert_eq!(
        (uac, uas),
        (Some(0), Some(0)),
        "the call after the clean stop failed:\n{}\n--- proxy\n{}",
        log_tails(&dir),
        second.log_text()
    );
}

fn call_through_db_mode_1(server: Backend) {
    if !have_sipp() {
        return;
    }
    let db = TestDb::with_users(server, &temp_dir(&format!("{server:?}")), "usrloc", &[]);
    let dir = temp_dir(&format!("{server:?}"));
    let port = free_port();
    let _proxy = start_registrar(&dir, "a", port, 1, &db.url);
    register_and_call(&dir, "maria", port, port, Transport::Udp);
}

#[test]
fn register_and_call_with_db_mode_1_on_mariadb() {
    call_through_db_mode_1(Backend::Mariadb);
}

#[test]
fn register_and_call_with_db_mode_1_on_postgres() {
    call_through_db_mode_1(Backend::Postgres);
}

#[test]
fn two_instances_share_registrations_with_db_mode_3_on_postgres() {
    if !have_sipp() {
        return;
    }
    let db = TestDb::with_users(Backend::Postgres, &temp_dir("shared-pg"), "usrloc", &[]);
    let dir = temp_dir("db3");
    let port_a = free_port();
    let port_b = free_port();
    let _a = start_registrar(&dir, "a", port_a, 3, &db.url);
    let _b = start_registrar(&dir, "b", port_b, 3, &db.url);
    // Registered through A, called through B (the phone answers the proxy that sends
    // it the INVITE, so it runs as a plain UAS on its registered address).
    let phone = free_port();
    run_ok(
        &dir,
        "reg-a",
        "registrar/uac_register_ok.xml",
        "paula",
        port_a,
        phone,
        Transport::Udp,
        &["-key", "expires", "300"],
    );
    let uas = sipp(
        &dir,
        "uas",
        "call_uas.xml",
        "paula",
        port_b,
        phone,
        Transport::Udp,
        &[],
    );
    std::thread::sleep(Duration::from_millis(300));
    let uac = wait_exit(
        sipp(
            &dir,
            "uac",
            "call_uac.xml",
            "paula",
            port_b,
            free_port(),
            Transport::Udp,
            &[],
        ),
        Duration::from_secs(30),
    );
    let uas = wait_exit(uas, Duration::from_secs(30));
    assert_eq!(
        (uac, uas),
        (Some(0), Some(0)),
        "B did not find the registration made through A:\n{}",
        log_tails(&dir)
    );
    // Unregistered through B: A no longer finds her.
    let phone = free_port();
    run_ok(
        &dir,
        "reg",
        "registrar/uac_register_ok.xml",
        "peter",
        port_b,
        phone,
        Transport::Udp,
        &["-key", "expires", "300"],
    );
    run_ok(
        &dir,
        "unreg",
        "registrar/uac_register_ok.xml",
        "peter",
        port_b,
        phone,
        Transport::Udp,
        &["-key", "expires", "0"],
    );
    run_ok(
        &dir,
        "inv",
        "registrar/uac_invite_404.xml",
        "peter",
        port_a,
        free_port(),
        Transport::Udp,
        &[],
    );
}
