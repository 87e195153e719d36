//! The `dialog` module through the real `ferrosip` binary on loopback:
//!
//! - a profile caps one customer's concurrent calls under SIPp load: SIPp places 20
//!   long calls from one customer, exactly 5 are answered and the rest get the script's
//!   486; while they are held the profile counts 5 (`dlg.profile_get_size`,
//!   `dlg.stats_active`), and once they have ended it counts 0 and new calls pass again;
//! - a dialog whose timeout (2 s, `$dlg_ctx(timeout)`) fires gets a BYE sent by the
//!   proxy on both legs, each with the dialog's Call-ID, tags and route;
//! - with `db_mode` 1 on SQLite, MariaDB and PostgreSQL a call established before a
//!   restart is loaded back (`dlg.list` shows it, its profile counts it) and its BYE after
//!   the restart reaches the callee and ends it.
//!
//! The callers and callees of the last two are plain UDP sockets of the test, which
//! check every header the proxy sends them.

use ferrosip_tests::db::{Backend, TestDb};
use ferrosip_tests::{
    ferrosip_bin, free_port, have_sipp, header, log_tails, recv_text, traced_sipp, wait_exit,
    Launch, Proxy,
};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrosip-dialog-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The proxy's config: record-route, a dialog per INVITE counted in profile "caller"
/// (value: the From user) and refused past `cap`, relayed to `callee_port`.
fn config(dir: &Path, port: u16, callee_port: u16, extra: &str, invite: &str) -> PathBuf {
    let cfg = format!(
        r#"#!KAMAILIO
debug=3
children=4
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
loadmodule "tm.so"
loadmodule "tmx.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "xlog.so"
loadmodule "ctl.so"
loadmodule "dialog.so"
modparam("ctl", "binrpc", "unix:{dir}/ctl")
modparam("dialog", "profiles_with_value", "caller")
{extra}
request_route {{
    if (t_precheck_trans()) {{
        t_check_trans();
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            if (is_method("BYE")) {{
                xlog("L_INFO", "DLG-BYE known=$dlg(h_id) var=$dlg_var(customer)\n");
            }}
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            if (t_check_trans()) {{
                t_relay();
            }}
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("INVITE")) {{
        record_route();
        dlg_manage();
        {invite}
    }}
    $du = "sip:127.0.0.1:{callee_port}";
    t_relay();
}}
"#,
        dir = dir.display()
    );
    let path = dir.join("proxy.cfg");
    std::fs::write(&path, cfg).expect("cfg");
    path
}

const CAP: &str = r#"set_dlg_profile("caller", "$fU");
        get_profile_size("caller", "$fU", "$var(calls)");
        if ($var(calls) > 5) {
            xlog("L_INFO", "CAP-REFUSED $ci\n");
            sl_send_reply("486", "Busy Here");
            exit;
        }
        $dlg_var(customer) = $fU;
        xlog("L_INFO", "CAP-ACCEPTED $ci\n");"#;

fn start(dir: &Path, cfg: &Path, port: u16, log: &str) -> Proxy {
    Launch::new(cfg)
        .log(dir.join(log))
        .listening_on(port)
        .terminate_on_drop()
        .start()
}

fn ctl(dir: &Path, args: &[&str]) -> String {
    let sock = format!("unix:{}/ctl", dir.display());
    let out: Output = Command::new(ferrosip_bin())
        .args(["ctl", "-s", &sock])
        .args(args)
        .output()
        .expect("ferrosip ctl runs");
    assert!(
        out.status.success(),
        "ferrosip ctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn profile_size(dir: &Path, value: &str) -> String {
    ctl(dir, &["dlg.profile_get_size", "caller", value])
}

/// Polls `f` until it holds, for up to 10 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios/dialog")
        .join(name)
}

/// Runs `calls` capped calls of "alice" (held `hold_ms`) against the proxy, with the
/// built-in UAS answering on `uas_port`; SIPp's exit code.
fn capped_calls(
    dir: &Path,
    tag: &str,
    port: u16,
    uac_port: u16,
    calls: u32,
    hold_ms: u32,
) -> std::process::Child {
    traced_sipp(
        dir,
        tag,
        &scenario("uac_capped.xml"),
        &format!("127.0.0.1:{port}"),
    )
    .args(["-s", "bob", "-p", &uac_port.to_string(), "-t", "u1"])
    .args([
        "-m",
        &calls.to_string(),
        "-l",
        &calls.to_string(),
        "-r",
        "50",
    ])
    .args([
        "-d",
        &hold_ms.to_string(),
        "-timeout",
        "60s",
        "-recv_timeout",
        "20000",
    ])
    .spawn()
    .expect("sipp starts")
}

#[test]
fn a_profile_caps_concurrent_calls_per_customer_under_sipp_load() {
    if !have_sipp() {
        return;
    }
    let dir = test_dir("cap");
    let (port, uas_port, uac_port) = (free_port(), free_port(), free_port());
    let cfg = config(&dir, port, uas_port, "", CAP);
    let proxy = start(&dir, &cfg, port, "proxy.log");
    let uas = Command::new("sipp")
        .arg("-sf")
        .arg(scenario("uas_rr.xml"))
        .args(["-i", "127.0.0.1", "-p", &uas_port.to_string(), "-nostdin"])
        .args(["-t", "u1", "-timeout", "90s", "-trace_err", "-error_file"])
        .arg(dir.join("uas-errors.log"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("sipp uas starts");
    let _uas = KillOnDrop(uas);

    let uac = capped_calls(&dir, "uac1", port, uac_port, 20, 4000);
    // While the answered calls are held: exactly 5 in the profile, all confirmed.
    proxy.wait_log("CAP-REFUSED", 15);
    proxy.wait_log("CAP-ACCEPTED", 5);
    eventually("5 confirmed dialogs", || {
        ctl(&dir, &["dlg.stats_active"]).contains("ongoing: 5")
    });
    assert_eq!(profile_size(&dir, "alice"), "5");
    let list = ctl(&dir, &["dlg.list"]);
    assert_eq!(list.matches("customer").count(), 5, "{list}");
    let code = wait_exit(uac, Duration::from_secs(60));
    let log = proxy.log_text();
    assert_eq!(
        code,
        Some(0),
        "every call answered or refused, every answered one hung up:\n{}",
        log_tails(&dir)
    );
    assert_eq!(log.matches("CAP-ACCEPTED").count(), 5, "{log}");
    assert_eq!(log.matches("CAP-REFUSED").count(), 15, "{log}");
    assert_eq!(log.matches("DLG-BYE known=").count(), 5);
    assert_eq!(
        log.matches("var=alice").count(),
        5,
        "each BYE found its dialog and its variable"
    );
    eventually("the profile empty after the BYEs", || {
        profile_size(&dir, "alice") == "0"
    });
    assert!(ctl(&dir, &["dlg.stats_active"]).contains("all: 0"));

    // After the BYEs the customer may call again: 5 new calls all pass.
    let uac = capped_calls(&dir, "uac2", port, uac_port, 5, 500);
    assert_eq!(
        wait_exit(uac, Duration::from_secs(30)),
        Some(0),
        "{}",
        log_tails(&dir)
    );
    let log = proxy.log_text();
    assert_eq!(log.matches("CAP-ACCEPTED").count(), 10, "{log}");
    assert_eq!(log.matches("CAP-REFUSED").count(), 15, "{log}");
    eventually("the profile empty again", || {
        profile_size(&dir, "alice") == "0"
    });
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A UDP peer of the test on 127.0.0.1.
fn peer() -> (UdpSocket, u16) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_secs(8)))
        .expect("timeout");
    let p = s.local_addr().expect("addr").port();
    (s, p)
}

/// The next request of `method` on `sock` (replies and retransmissions of others skipped).
fn next_request(sock: &UdpSocket, method: &str) -> String {
    loop {
        let m = recv_text(sock).unwrap_or_else(|| panic!("no {method} arrived"));
        if m.starts_with(&format!("{method} ")) {
            return m;
        }
    }
}

fn next_reply(sock: &UdpSocket, code: &str) -> String {
    loop {
        let m = recv_text(sock).unwrap_or_else(|| panic!("no {code} arrived"));
        if m.starts_with(&format!("SIP/2.0 {code}")) {
            return m;
        }
    }
}

/// A reply to `req` with the To tag `tag` (kept when it has one) and `contact`.
fn reply(req: &str, status: &str, tag: &str, contact: Option<&str>) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for l in req.split("\r\n") {
        let lower = l.to_ascii_lowercase();
        if lower.starts_with("via:")
            || lower.starts_with("from:")
            || lower.starts_with("call-id:")
            || lower.starts_with("cseq:")
            || lower.starts_with("record-route:")
        {
            out.push_str(l);
            out.push_str("\r\n");
        }
        if lower.starts_with("to:") {
            out.push_str(l);
            if !l.contains(";tag=") {
                out.push_str(&format!(";tag={tag}"));
            }
            out.push_str("\r\n");
        }
    }
    if let Some(c) = contact {
        out.push_str(&format!("Contact: <{c}>\r\n"));
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// A call set up through the proxy by two sockets of the test.
struct Call {
    caller: UdpSocket,
    callee: UdpSocket,
    caller_port: u16,
    callee_port: u16,
    call_id: String,
    /// The Record-Route of the 200, which the caller's in-dialog requests carry as Route.
    route: String,
}

fn peers() -> (UdpSocket, u16, UdpSocket, u16) {
    let (caller, caller_port) = peer();
    let (callee, callee_port) = peer();
    (caller, caller_port, callee, callee_port)
}

fn establish(
    caller: UdpSocket,
    caller_port: u16,
    callee: UdpSocket,
    callee_port: u16,
    port: u16,
    call_id: &str,
) -> Call {
    // A Via branch is a token: no '@'.
    let branch = call_id.replace('@', "-");
    let invite = format!(
        "INVITE sip:bob@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{caller_port};branch=z9hG4bK-{branch}-1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=alice1\r\nTo: <sip:bob@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:{caller_port}>\r\nContent-Length: 0\r\n\r\n"
    );
    caller
        .send_to(invite.as_bytes(), ("127.0.0.1", port))
        .expect("send");
    let inv = next_request(&callee, "INVITE");
    let rr = header(&inv, "Record-Route")
        .expect("record-routed")
        .to_string();
    assert!(
        rr.contains(";did="),
        "the dialog id in the Record-Route: {rr}"
    );
    let ok = reply(
        &inv,
        "200 OK",
        "bob1",
        Some(&format!("sip:bob@127.0.0.1:{callee_port}")),
    );
    callee
        .send_to(ok.as_bytes(), ("127.0.0.1", port))
        .expect("send");
    let ok = next_reply(&caller, "200");
    let route = header(&ok, "Record-Route")
        .expect("RR in the 200")
        .to_string();
    let ack = format!(
        "ACK sip:bob@127.0.0.1:{callee_port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{caller_port};branch=z9hG4bK-{branch}-2\r\n\
         Route: {route}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=alice1\r\nTo: <sip:bob@127.0.0.1>;tag=bob1\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    caller
        .send_to(ack.as_bytes(), ("127.0.0.1", port))
        .expect("send");
    next_request(&callee, "ACK");
    Call {
        caller,
        callee,
        caller_port,
        callee_port,
        call_id: call_id.to_string(),
        route,
    }
}

#[test]
fn a_dialog_timeout_sends_bye_to_both_legs() {
    let dir = test_dir("timeout");
    let port = free_port();
    let (caller, caller_port, callee, callee_port) = peers();
    let cfg = config(
        &dir,
        port,
        callee_port,
        "modparam(\"dialog\", \"send_bye\", 1)",
        "$dlg_ctx(timeout) = 2;\n        set_dlg_profile(\"caller\", \"$fU\");",
    );
    let proxy = start(&dir, &cfg, port, "proxy.log");
    let call = establish(
        caller,
        caller_port,
        callee,
        callee_port,
        port,
        "timeout-1@test",
    );
    assert_eq!(profile_size(&dir, "alice"), "1");
    let started = Instant::now();

    let bye = next_request(&call.callee, "BYE");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "not before the timeout"
    );
    assert!(
        bye.starts_with(&format!(
            "BYE sip:bob@127.0.0.1:{} SIP/2.0",
            call.callee_port
        )),
        "{bye}"
    );
    assert_eq!(header(&bye, "Call-ID"), Some(call.call_id.as_str()));
    assert!(
        header(&bye, "From").unwrap().contains("tag=alice1"),
        "{bye}"
    );
    assert!(header(&bye, "To").unwrap().contains("tag=bob1"), "{bye}");
    assert!(header(&bye, "CSeq").unwrap().ends_with("BYE"), "{bye}");
    call.callee
        .send_to(
            reply(&bye, "200 OK", "bob1", None).as_bytes(),
            ("127.0.0.1", port),
        )
        .expect("send");

    let bye = next_request(&call.caller, "BYE");
    assert!(
        bye.starts_with(&format!(
            "BYE sip:alice@127.0.0.1:{} SIP/2.0",
            call.caller_port
        )),
        "{bye}"
    );
    assert_eq!(header(&bye, "Call-ID"), Some(call.call_id.as_str()));
    assert!(header(&bye, "From").unwrap().contains("tag=bob1"), "{bye}");
    assert!(header(&bye, "To").unwrap().contains("tag=alice1"), "{bye}");
    call.caller
        .send_to(
            reply(&bye, "200 OK", "alice1", None).as_bytes(),
            ("127.0.0.1", port),
        )
        .expect("send");

    assert_eq!(profile_size(&dir, "alice"), "0");
    assert!(ctl(&dir, &["dlg.stats_active"]).contains("all: 0"));
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}

fn restart_keeps_the_dialog(backend: Backend) {
    let dir = test_dir(&format!("restart-{backend:?}"));
    let db = TestDb::with_users(backend, &dir, "dialog", &[]);
    let port = free_port();
    let (caller, caller_port, callee, callee_port) = peers();
    let extra = format!(
        "modparam(\"dialog\", \"db_mode\", 1)\nmodparam(\"dialog\", \"db_url\", \"{}\")",
        db.url
    );
    let cfg = config(
        &dir,
        port,
        callee_port,
        &extra,
        "set_dlg_profile(\"caller\", \"$fU\");\n        $dlg_var(customer) = $fU;",
    );
    let proxy = start(&dir, &cfg, port, "proxy1.log");
    let call = establish(
        caller,
        caller_port,
        callee,
        callee_port,
        port,
        "restart-1@test",
    );
    assert_eq!(profile_size(&dir, "alice"), "1");
    proxy.stop();

    let proxy = start(&dir, &cfg, port, "proxy2.log");
    let list = ctl(&dir, &["dlg.list"]);
    assert!(list.contains("restart-1@test"), "loaded back: {list}");
    assert!(list.contains("alice"), "{list}");
    assert_eq!(
        profile_size(&dir, "alice"),
        "1",
        "its profile counted again"
    );

    let bye = format!(
        "BYE sip:bob@127.0.0.1:{} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{};branch=z9hG4bK-restart-3\r\n\
         Route: {}\r\nMax-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=alice1\r\nTo: <sip:bob@127.0.0.1>;tag=bob1\r\n\
         Call-ID: {}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        call.callee_port, call.caller_port, call.route, call.call_id
    );
    call.caller
        .send_to(bye.as_bytes(), ("127.0.0.1", port))
        .expect("send");
    let got = next_request(&call.callee, "BYE");
    assert_eq!(header(&got, "Call-ID"), Some(call.call_id.as_str()));
    call.callee
        .send_to(
            reply(&got, "200 OK", "bob1", None).as_bytes(),
            ("127.0.0.1", port),
        )
        .expect("send");
    next_reply(&call.caller, "200");
    let log = proxy.log_text();
    assert!(
        log.contains("DLG-BYE known=") && log.contains("var=alice"),
        "the BYE found the loaded dialog:\n{log}"
    );
    assert_eq!(profile_size(&dir, "alice"), "0");
    assert_eq!(
        ctl(&dir, &["dlg.list"]).matches("restart-1@test").count(),
        0
    );
    // The row is gone too: a third start loads nothing.
    proxy.stop();
    let proxy = start(&dir, &cfg, port, "proxy3.log");
    assert!(!ctl(&dir, &["dlg.list"]).contains("restart-1@test"));
    drop(proxy);
    drop(db);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn restart_keeps_dialogs_on_sqlite() {
    restart_keeps_the_dialog(Backend::Sqlite);
}

#[test]
fn restart_keeps_dialogs_on_mariadb() {
    restart_keeps_the_dialog(Backend::Mariadb);
}

#[test]
fn restart_keeps_dialogs_on_postgresql() {
    restart_keeps_the_dialog(Backend::Postgres);
}
