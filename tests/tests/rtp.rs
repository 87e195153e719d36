//! Media relaying through the real `ferrosip` binary with a real relay: rtpengine (Debian
//! `rtpengine-daemon`, unpacked by scripts/test.sh, run in the foreground in userspace),
//! driven by the rtpproxy module over rtpengine's rtpproxy-compatible control port
//! (`--listen-udp`). SIPp calls through the proxy; the callee must get an SDP pointing at
//! the relay, the caller's 200 too, the relay must hold the call while it lasts (its ng
//! `list` command) and no longer after the BYE. The same call with the rtpengine module
//! over the ng port. Kamailio's stock config with WITH_NAT passes `check` with the
//! rtpproxy module built.

use ferrosip_tests::sipp::Sipp;
use ferrosip_tests::{
    free_port, free_udp_port, have_sipp, log_tails, traced_sipp, Launch, Rtpengine,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The address rtpengine relays on: not SIPp's 127.0.0.1, so a rewritten c= shows.
const RELAY_IP: &str = "127.0.0.3";

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(name)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrosip-rtp-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The first message of `kind` ("INVITE " or "SIP/2.0 200") SIPp logged as received.
fn received(log: &Path, start: &str) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.split("----------------------------------------------- ")
        .filter(|block| block.contains("message received"))
        .filter_map(|block| {
            let msg = block.split_once(":\n\n").map_or("", |x| x.1).trim_start();
            msg.starts_with(start).then(|| msg.to_string())
        })
        .next()
        .unwrap_or_else(|| panic!("no received {start} in {}:\n{text}", log.display()))
}

/// The SDP points at the relay: c= is its address, the m= port in its range.
fn assert_relayed(msg: &str, ports: (u16, u16), who: &str) {
    assert!(
        msg.contains(&format!("c=IN IP4 {RELAY_IP}")),
        "{who}: c= not rewritten:\n{msg}"
    );
    let port: u16 = msg
        .lines()
        .find_map(|l| l.trim().strip_prefix("m=audio "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{who}: no m=audio port:\n{msg}"));
    assert!(
        (ports.0..=ports.1).contains(&port),
        "{who}: m= port {port} not in the relay's range {ports:?}:\n{msg}"
    );
}

const PROXY_CFG: &str = "#!KAMAILIO
listen=udp:127.0.0.1:PROXY_PORT
listen=tcp:127.0.0.1:PROXY_PORT
loadmodule \"tm.so\"
loadmodule \"sl.so\"
loadmodule \"rr.so\"
loadmodule \"siputils.so\"
loadmodule \"textops.so\"
loadmodule \"xlog.so\"
loadmodule \"rtpproxy.so\"
modparam(\"rtpproxy\", \"rtpproxy_sock\", \"udp:127.0.0.1:CONTROL_PORT\")
modparam(\"rtpproxy\", \"rtpproxy_tout\", 2)
request_route {
\tif (has_totag()) {
\t\tif (loose_route()) {
\t\t\tif (is_method(\"BYE|ACK\")) {
\t\t\t\trtpproxy_manage(\"co\");
\t\t\t\txlog(\"L_INFO\", \"manage $rm: $rc\\n\");
\t\t\t}
\t\t\tt_relay();
\t\t\texit;
\t\t}
\t\tif (is_method(\"ACK\") && t_check_trans()) {
\t\t\tt_relay();
\t\t}
\t\texit;
\t}
\trecord_route();
\tt_on_branch(\"MEDIA\");
\tt_on_reply(\"MEDIA\");
\t$du = \"sip:127.0.0.1:UAS_PORT\";
\tt_relay();
}
branch_route[MEDIA] {
\trtpproxy_manage(\"co\");
\txlog(\"L_INFO\", \"manage branch $rm: $rc\\n\");
}
onreply_route[MEDIA] {
\tif (status =~ \"^[12][0-9][0-9]$\") {
\t\trtpproxy_manage(\"co\");
\t\txlog(\"L_INFO\", \"manage reply $rs: $rc\\n\");
\t}
}
";

/// Which module the proxy drives rtpengine with.
#[derive(Clone, Copy, PartialEq)]
enum Via {
    /// rtpproxy_manage over rtpengine's rtpproxy-compatible port.
    Rtpproxy,
    /// rtpengine_manage over the ng port.
    Ng,
}

/// A SIPp call through the proxy, rtpengine relaying its media; the checks of the
/// module's doc comment.
fn relayed_call(via: Via) {
    if !have_sipp() {
        return;
    }
    let dir = temp_dir(if via == Via::Ng { "ng" } else { "call" });
    let control = free_udp_port();
    // A port range of its own per test process and test, away from SIPp's media port (6000).
    let base =
        30_000 + (std::process::id() % 400) as u16 * 40 + if via == Via::Ng { 20 } else { 0 };
    let ports = (base, base + 19);
    let Some(relay) = Rtpengine::start(&dir, RELAY_IP, control, free_udp_port(), ports) else {
        return;
    };
    let proxy_port = free_port();
    let uas_port = free_port();
    let mut cfg = PROXY_CFG
        .replace("PROXY_PORT", &proxy_port.to_string())
        .replace("CONTROL_PORT", &control.to_string())
        .replace("UAS_PORT", &uas_port.to_string());
    if via == Via::Ng {
        cfg = cfg
            .replace(
                &format!("\"udp:127.0.0.1:{control}\""),
                &format!("\"udp:127.0.0.1:{}\"", relay.ng),
            )
            .replace("modparam(\"rtpproxy\", \"rtpproxy_tout\", 2)\n", "")
            .replace("rtpproxy", "rtpengine")
            .replace(
                "rtpengine_manage(\"co\")",
                "rtpengine_manage(\"replace-origin replace-session-connection\")",
            );
    }
    let cfg_path = dir.join("proxy.cfg");
    std::fs::write(&cfg_path, cfg).expect("cfg");
    let proxy = Launch::new(&cfg_path)
        .log(dir.join("proxy.log"))
        .listening_on(proxy_port)
        .start();

    let mut uas = Sipp(
        traced_sipp(
            &dir,
            "uas",
            &scenario("call_uas.xml"),
            &format!("127.0.0.1:{proxy_port}"),
        )
        .args(["-p", &uas_port.to_string(), "-t", "u1", "-m", "1"])
        .args(["-timeout", "30s", "-timeout_error"])
        .spawn()
        .expect("sipp uas"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut uac = Sipp(
        traced_sipp(
            &dir,
            "uac",
            &scenario("rtp/caller.xml"),
            &format!("127.0.0.1:{proxy_port}"),
        )
        .args(["-p", &free_port().to_string(), "-t", "u1", "-m", "1"])
        .args(["-s", "bob", "-cid_str", "rtp-call-%u"])
        .args(["-timeout", "30s", "-timeout_error"])
        .spawn()
        .expect("sipp uac"),
    );
    let failed = |what: &str| {
        format!(
            "{what}\n{}\n--- proxy\n{}\n--- rtpengine\n{}",
            log_tails(&dir),
            proxy.log_text(),
            relay.log_text()
        )
    };

    // While the caller pauses between ACK and BYE, rtpengine holds the call.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if relay.calls().contains("rtp-call-1") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            failed("rtpengine never held the call")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        uac.wait(Duration::from_secs(30)),
        Some(0),
        "{}",
        failed("caller failed")
    );
    assert_eq!(
        uas.wait(Duration::from_secs(30)),
        Some(0),
        "{}",
        failed("callee failed")
    );

    let invite = received(&dir.join("uas-messages.log"), "INVITE ");
    assert_relayed(&invite, ports, "callee's INVITE");
    if via == Via::Rtpproxy {
        assert!(invite.contains("a=nortpproxy:yes"), "{invite}");
    }
    // `o` / replace-origin rewrote the origin too.
    assert!(
        invite.contains(&format!("IN IP4 {RELAY_IP}\r\ns="))
            || invite.contains(&format!("IN IP4 {RELAY_IP}\ns=")),
        "o= not rewritten:\n{invite}"
    );
    let ok = received(&dir.join("uac-messages.log"), "SIP/2.0 200");
    assert_relayed(&ok, ports, "caller's 200");
    // Caller and callee got different relay ports: one per side of the call.
    assert_ne!(
        invite.lines().find(|l| l.starts_with("m=")),
        ok.lines().find(|l| l.starts_with("m=")),
        "{}",
        failed("the same port both ways")
    );

    // The BYE deleted it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while relay.calls().contains("rtp-call-1") {
        assert!(
            Instant::now() < deadline,
            "{}",
            failed("the call outlived its BYE in rtpengine")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = proxy.log_text();
    assert!(log.contains("manage branch INVITE: 1"), "{log}");
    assert!(log.contains("manage reply 200: 1"), "{log}");
    assert!(log.contains("manage BYE: 1"), "{log}");
    drop(relay);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_call_through_rtpproxy_manage_is_relayed_by_rtpengine() {
    relayed_call(Via::Rtpproxy);
}

#[test]
fn a_call_through_rtpengine_manage_is_relayed_over_ng() {
    relayed_call(Via::Ng);
}

/// The relay gone: the call still goes through (the SDP is left as it was), the function
/// fails with the relay named, and rtpproxy.list shows it disabled.
#[test]
fn a_dead_relay_fails_the_function_without_blocking_the_call() {
    if !have_sipp() {
        return;
    }
    let dir = temp_dir("dead");
    let control = free_udp_port();
    let proxy_port = free_port();
    let uas_port = free_port();
    let cfg = PROXY_CFG
        .replace("PROXY_PORT", &proxy_port.to_string())
        .replace("CONTROL_PORT", &control.to_string())
        .replace("UAS_PORT", &uas_port.to_string())
        .replace("\"rtpproxy_tout\", 2", "\"rtpproxy_tout\", 1")
        .replace(
            "loadmodule \"rtpproxy.so\"",
            "loadmodule \"rtpproxy.so\"\nmodparam(\"rtpproxy\", \"rtpproxy_retr\", 1)",
        );
    let cfg_path = dir.join("proxy.cfg");
    std::fs::write(&cfg_path, cfg).expect("cfg");
    let proxy = Launch::new(&cfg_path)
        .log(dir.join("proxy.log"))
        .listening_on(proxy_port)
        .start();
    let mut uas = Sipp(
        traced_sipp(
            &dir,
            "uas",
            &scenario("call_uas.xml"),
            &format!("127.0.0.1:{proxy_port}"),
        )
        .args(["-p", &uas_port.to_string(), "-t", "u1", "-m", "1"])
        .args(["-timeout", "30s", "-timeout_error"])
        .spawn()
        .expect("sipp uas"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut uac = Sipp(
        traced_sipp(
            &dir,
            "uac",
            &scenario("call_uac.xml"),
            &format!("127.0.0.1:{proxy_port}"),
        )
        .args(["-p", &free_port().to_string(), "-t", "u1", "-m", "1"])
        .args(["-s", "bob", "-timeout", "30s", "-timeout_error"])
        .spawn()
        .expect("sipp uac"),
    );
    let failed = |what: &str| {
        format!(
            "{what}\n{}\n--- proxy\n{}",
            log_tails(&dir),
            proxy.log_text()
        )
    };
    assert_eq!(
        uac.wait(Duration::from_secs(30)),
        Some(0),
        "{}",
        failed("caller failed")
    );
    assert_eq!(
        uas.wait(Duration::from_secs(30)),
        Some(0),
        "{}",
        failed("callee failed")
    );
    let invite = received(&dir.join("uas-messages.log"), "INVITE ");
    assert!(!invite.contains("a=nortpproxy"), "{invite}");
    let log = proxy.log_text();
    assert!(log.contains("manage branch INVITE: -1"), "{log}");
    assert!(
        log.contains(&format!("udp:127.0.0.1:{control}")),
        "the failing relay is named:\n{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kamailio_stock_config_with_nat_passes_check() {
    let stock = ferrosip_tests::kamailio_stock_cfg();
    if !stock.exists() {
        assert!(std::env::var_os("FERROSIP_REQUIRE_STOCK_CFG").is_none());
        eprintln!("skipped: {} not there", stock.display());
        return;
    }
    let out = Command::new(ferrosip_tests::ferrosip_bin())
        .arg("check")
        .arg("-f")
        .arg(&stock)
        .args(["-A", "WITH_NAT"])
        .output()
        .expect("ferrosip runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("declared"), "{text}");
}
