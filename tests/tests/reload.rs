//! Hot reload of the routing script under load: SIPp calls at 300 calls/s for 30 s
//! through the real binary (stateful config) to a small UAS in this test, while the test
//! rewrites the script and sends SIGHUP ten times — each version marks the INVITEs it
//! routes with `X-Version: N`, which the UAS records — plus one broken version in
//! between. No call fails, each version reaches the UAS after its reload and no older
//! one after that, the broken version is refused at its file:line, and the server
//! goes on routing with the version before it.

use ferrosip_tests::{free_port, have_sipp, header, recv_text, uas_reply, Launch, Proxy};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RATE: u32 = 300;
const SECONDS: u32 = 30;
const VERSIONS: u32 = 10;

/// The script, version `n` (`None`: broken at the line [`BROKEN_LINE`] names).
fn script(proxy: u16, uas: u16, n: Option<u32>) -> String {
    let mark = match n {
        Some(n) => format!(r#"append_hf("X-Version: {n}\r\n");"#),
        None => "no_such_function_here();".to_string(),
    };
    format!(
        r#"#!KAMAILIO
children=2
listen=udp:127.0.0.1:{proxy}
listen=tcp:127.0.0.1:{proxy}
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "textops.so"
request_route {{
    {mark}
    $du = "sip:127.0.0.1:{uas}";
    if (!t_relay()) {{
        sl_reply_error();
    }}
    exit;
}}
"#
    )
}

/// The line of the version mark (and of the broken call) in [`script`].
const BROKEN_LINE: u32 = 9;

/// The proxy on `cfg`, its log in `log`.
fn start_proxy(cfg: &Path, log: PathBuf, port: u16) -> Proxy {
    Launch::new(cfg).log(log).listening_on(port).start()
}

/// The versions the UAS saw, with when each INVITE arrived.
type Seen = Arc<Mutex<Vec<(Instant, u32)>>>;

/// A UAS answering every INVITE 200 (Contact: itself, so ACK and BYE come straight
/// here) and every BYE 200, noting each INVITE's X-Version.
fn spawn_uas(sock: UdpSocket, stop: Arc<AtomicBool>) -> (Seen, std::thread::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let noted = seen.clone();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let contact = format!("sip:uas@{}", sock.local_addr().expect("addr"));
    let handle = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let at = Instant::now();
            let m = String::from_utf8_lossy(&buf[..n]);
            let answer = if m.starts_with("INVITE ") {
                let v = header(&m, "X-Version").and_then(|v| v.parse().ok());
                noted
                    .lock()
                    .expect("seen")
                    .push((at, v.unwrap_or(u32::MAX)));
                uas_reply(&m, "200 OK", Some(&contact))
            } else if m.starts_with("BYE ") {
                uas_reply(&m, "200 OK", None)
            } else {
                continue;
            };
            let _ = sock.send_to(answer.as_bytes(), from);
        }
    });
    (seen, handle)
}

#[test]
fn script_reloads_ten_times_under_300_calls_per_second_without_a_failed_call() {
    if !have_sipp() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("ferrosip-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let port = free_port();
    let uas_sock = UdpSocket::bind("127.0.0.1:0").expect("uas");
    let uas_port = uas_sock.local_addr().expect("addr").port();
    let cfg = dir.join("proxy.cfg");
    std::fs::write(&cfg, script(port, uas_port, Some(0))).expect("cfg");
    let proxy = start_proxy(&cfg, dir.join("proxy.log"), port);
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, uas) = spawn_uas(uas_sock, stop.clone());

    let uac_sf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/call_uac.xml");
    let uac_log = dir.join("uac-errors.log");
    let calls = (RATE * SECONDS).to_string();
    let mut uac = Command::new("sipp")
        .args(["-sf", uac_sf.to_str().expect("path")])
        .args(["-i", "127.0.0.1", "-p", &free_port().to_string()])
        .args([
            "-s",
            "bob",
            "-m",
            &calls,
            "-r",
            &RATE.to_string(),
            "-l",
            "2000",
        ])
        .args([
            "-timeout",
            "90s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .args(["-error_file", uac_log.to_str().expect("path")])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp starts");

    // Ten versions, a broken one after the fifth, about every 2.5 s of the 30.
    let mut reloaded_at = vec![Instant::now()];
    let mut reloads = 0;
    for step in 1..=VERSIONS + 1 {
        std::thread::sleep(Duration::from_millis(2300));
        if step == 6 {
            std::fs::write(&cfg, script(port, uas_port, None)).expect("cfg");
            proxy.signal("HUP");
            proxy.wait_log("script not reloaded", 1);
            continue;
        }
        reloads += 1;
        std::fs::write(&cfg, script(port, uas_port, Some(reloads))).expect("cfg");
        proxy.signal("HUP");
        proxy.wait_log("script reloaded", reloads as usize);
        reloaded_at.push(Instant::now());
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let code = loop {
        if let Ok(Some(status)) = uac.try_wait() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = uac.kill();
            let _ = uac.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    stop.store(true, Ordering::Relaxed);
    uas.join().expect("uas");
    let log = proxy.log_text();
    drop(proxy);

    assert_eq!(
        code,
        Some(0),
        "SIPp: not every one of {calls} calls completed:\n{}",
        std::fs::read_to_string(&uac_log).unwrap_or_default()
    );
    // The broken version was refused with its location; the one before stayed.
    let location = format!("proxy.cfg:{BROKEN_LINE}:");
    assert!(
        log.contains("script not reloaded") && log.contains(&location),
        "the refused reload names {location}:\n{log}"
    );
    assert_eq!(log.matches("script reloaded").count(), VERSIONS as usize);
    let seen = seen.lock().expect("seen");
    assert!(
        seen.iter().all(|(_, v)| *v <= VERSIONS),
        "every INVITE carried a version"
    );
    for (n, at) in reloaded_at.iter().enumerate() {
        let n = n as u32;
        let count = seen.iter().filter(|(_, v)| *v == n).count();
        assert!(count > 0, "version {n} never reached the UAS");
        // Requests that were in a worker when the swap came may still carry the version
        // before; nothing older than the current one comes once they are out.
        let settled = *at + Duration::from_millis(200);
        let older = seen.iter().filter(|(t, v)| *t > settled && *v < n).count();
        assert_eq!(older, 0, "INVITEs older than version {n} after its reload");
        eprintln!("version {n}: {count} INVITEs");
    }
    // Still routing after the broken version: the last version carried the end of the load.
    let last = seen.last().map(|(_, v)| *v);
    assert_eq!(
        last,
        Some(VERSIONS),
        "the last INVITE went through the last version"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a reload test script is made of.
struct FailureScript<'a> {
    /// The reason of the failure_route's 503, telling which program answered.
    reason: &'a str,
    /// A failure_route before the one used, shifting the route ids: a transaction must
    /// not run the new program's route of its old id.
    extra_route: bool,
    /// Settings a reload cannot apply.
    children: u32,
    fr_timer: u32,
    more_modules: &'a str,
}

impl FailureScript<'_> {
    fn text(&self, proxy: u16, uas: u16) -> String {
        let extra = if self.extra_route {
            "failure_route[FIRST] {\n    t_reply(\"500\", \"Wrong Route\");\n}\n"
        } else {
            ""
        };
        format!(
            r#"#!KAMAILIO
children={children}
listen=udp:127.0.0.1:{proxy}
listen=tcp:127.0.0.1:{proxy}
loadmodule "tm.so"
loadmodule "sl.so"
{more_modules}
modparam("tm", "fr_timer", {fr_timer})
{extra}request_route {{
    if (method == "ACK") {{
        t_relay();
        exit;
    }}
    t_on_failure("ANSWER");
    $du = "sip:127.0.0.1:{uas}";
    t_relay();
    exit;
}}
failure_route[ANSWER] {{
    t_reply("503", "{reason}");
}}
"#,
            children = self.children,
            more_modules = self.more_modules,
            fr_timer = self.fr_timer,
            reason = self.reason,
        )
    }
}

fn invite(call_id: &str, uac_port: u16) -> String {
    format!(
        "INVITE sip:bob@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{uac_port};branch=z9hG4bK{call_id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:uac@127.0.0.1>;tag=f{call_id}\r\n\
         To: <sip:bob@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// The next INVITE the UAS gets (the proxy's ACKs of earlier 486s skipped).
fn next_invite(uas: &UdpSocket) -> String {
    loop {
        let m = recv_text(uas).expect("an INVITE at the UAS");
        if m.starts_with("INVITE ") {
            return m;
        }
    }
}

/// The status line of the final reply the UAC gets for `call_id` (provisionals, and
/// the unacknowledged finals of earlier calls sent again, skipped).
fn final_reply(uac: &UdpSocket, call_id: &str) -> String {
    loop {
        let m = recv_text(uac).unwrap_or_else(|| panic!("no final reply for {call_id}"));
        if !m.starts_with("SIP/2.0 1") && header(&m, "Call-ID") == Some(call_id) {
            return m.lines().next().unwrap_or_default().to_string();
        }
    }
}

#[test]
fn transactions_in_flight_keep_their_program_and_restart_settings_are_named() {
    let dir = std::env::temp_dir().join(format!("ferrosip-reload-flight-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let port = free_port();
    let uas = UdpSocket::bind("127.0.0.1:0").expect("uas");
    let uac = UdpSocket::bind("127.0.0.1:0").expect("uac");
    for s in [&uas, &uac] {
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
    }
    let uas_port = uas.local_addr().expect("addr").port();
    let uac_port = uac.local_addr().expect("addr").port();
    let cfg = dir.join("proxy.cfg");
    let write = |s: FailureScript| std::fs::write(&cfg, s.text(port, uas_port)).expect("cfg");
    write(FailureScript {
        reason: "Old Script",
        extra_route: false,
        children: 2,
        fr_timer: 30000,
        more_modules: "",
    });
    let proxy = start_proxy(&cfg, dir.join("proxy.log"), port);
    let answer_busy = |invite: &str| {
        uas.send_to(
            uas_reply(invite, "486 Busy Here", None).as_bytes(),
            ("127.0.0.1", port),
        )
        .expect("486");
    };

    // A transaction starts with the old script and waits at the UAS.
    uac.send_to(invite("flight-1", uac_port).as_bytes(), ("127.0.0.1", port))
        .expect("send");
    let first = next_invite(&uas);

    // The new script shifts the route ids and changes what only a restart applies.
    write(FailureScript {
        reason: "New Script",
        extra_route: true,
        children: 3,
        fr_timer: 20000,
        more_modules: "",
    });
    proxy.signal("HUP");
    proxy.wait_log("script reloaded", 1);
    let log = proxy.log_text();
    assert!(
        log.contains("needs a restart")
            && log.contains("children=")
            && log.contains(r#"modparam("tm", "fr_timer")"#),
        "the reload names what needs a restart:\n{log}"
    );

    // The old transaction's failure_route comes from the program it started with.
    answer_busy(&first);
    assert_eq!(final_reply(&uac, "flight-1"), "SIP/2.0 503 Old Script");
    // A new one runs the new program.
    uac.send_to(invite("flight-2", uac_port).as_bytes(), ("127.0.0.1", port))
        .expect("send");
    answer_busy(&next_invite(&uas));
    assert_eq!(final_reply(&uac, "flight-2"), "SIP/2.0 503 New Script");

    // A module the running server never started cannot come in by reload.
    write(FailureScript {
        reason: "Newer Script",
        extra_route: false,
        children: 3,
        fr_timer: 20000,
        more_modules: r#"loadmodule "cfgutils.so""#,
    });
    proxy.signal("HUP");
    proxy.wait_log("script not reloaded", 1);
    let log = proxy.log_text();
    assert!(
        log.contains("cfgutils") && log.contains("needs a restart"),
        "the refusal names the module:\n{log}"
    );
    uac.send_to(invite("flight-3", uac_port).as_bytes(), ("127.0.0.1", port))
        .expect("send");
    answer_busy(&next_invite(&uas));
    assert_eq!(
        final_reply(&uac, "flight-3"),
        "SIP/2.0 503 New Script",
        "the running script stayed"
    );
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}
