//! NAT traversal and Path through the real `ferrosip` binary, with SIPp phones and raw
//! UDP sockets as the peers:
//! - a phone behind a (simulated) NAT: it runs on 127.0.0.2 but writes 192.168.1.20:5060
//!   in its Via and Contact; the registrar detects it (nat_uac_test), keeps the real
//!   source (fix_nated_register), and a call reaches the phone there;
//! - keepalives: registered contacts get 4-byte UDP packets, or OPTIONS when flagged
//!   with sipping_bflag, at their source address, each natping_interval;
//! - an SBC (ferrosip #1: add_contact_alias, add_path) relaying REGISTERs to a registrar
//!   (ferrosip #2: save with Path); a call to the user at the registrar comes back
//!   through the SBC (handle_ruri_alias) to the phone;
//! - `ferrosip check` refuses bad nathelper arguments at their line and column.

use ferrosip_tests::{free_port, have_sipp, log_tails, start_proxy, wait_exit, Proxy};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(name)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrosip-nat-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A SIPp run from `ip` (the phone on 127.0.0.2, the caller on 127.0.0.1), `-m 1`; each
/// argument is one of its command-line choices.
#[allow(clippy::too_many_arguments)]
fn sipp(
    dir: &Path,
    tag: &str,
    file: &str,
    ip: &str,
    port: u16,
    target: u16,
    user: &str,
    cid: &str,
) -> Child {
    Command::new("sipp")
        .arg(format!("127.0.0.1:{target}"))
        .arg("-sf")
        .arg(scenario(file))
        .args([
            "-i",
            ip,
            "-p",
            &port.to_string(),
            "-s",
            user,
            "-cid_str",
            cid,
        ])
        .args([
            "-t",
            "u1",
            "-m",
            "1",
            "-timeout",
            "20s",
            "-timeout_error",
            "-nostdin",
        ])
        .args(["-trace_err", "-trace_msg", "-error_file"])
        .arg(dir.join(format!("{tag}-errors.log")))
        .arg("-message_file")
        .arg(dir.join(format!("{tag}-messages.log")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp starts")
}

/// A UDP port free on 127.0.0.2 (the phone's side of the NAT).
fn free_port_on(ip: &str) -> u16 {
    UdpSocket::bind((ip, 0))
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The phone on 127.0.0.2 registers through `register_port`, then a caller calls it
/// through `call_port`; both SIPp runs must pass.
fn natted_phone_call(
    dir: &Path,
    user: &str,
    register_port: u16,
    call_port: u16,
    proxies: &[&Proxy],
) {
    let cid = format!("nat-{user}-%u");
    let phone = sipp(
        dir,
        "phone",
        "nat/phone.xml",
        "127.0.0.2",
        free_port_on("127.0.0.2"),
        register_port,
        user,
        &cid,
    );
    // The phone's 200 OK comes within milliseconds; the pause only orders the two SIPps.
    std::thread::sleep(Duration::from_millis(800));
    let caller = sipp(
        dir,
        "caller",
        "call_uac.xml",
        "127.0.0.1",
        free_port(),
        call_port,
        user,
        &cid,
    );
    let caller_code = wait_exit(caller, Duration::from_secs(30));
    let phone_code = wait_exit(phone, Duration::from_secs(30));
    let logs: String = proxies
        .iter()
        .map(|p| p.log_text())
        .collect::<Vec<_>>()
        .join("\n---\n");
    assert_eq!(
        caller_code,
        Some(0),
        "caller failed:\n{}\n{logs}",
        log_tails(dir)
    );
    assert_eq!(
        phone_code,
        Some(0),
        "phone failed:\n{}\n{logs}",
        log_tails(dir)
    );
}

const REGISTRAR: &str = r#"
listen=udp:127.0.0.1:PORT
listen=tcp:127.0.0.1:PORT
children=2
auto_aliases=no
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "kex.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "nathelper.so"
modparam("usrloc", "nat_bflag", 6)
modparam("registrar", "received_avp", "$avp(RECEIVED)")
modparam("registrar", "use_path", 1)
modparam("nathelper", "received_avp", "$avp(RECEIVED)")
modparam("nathelper", "natping_interval", PING)
modparam("nathelper", "ping_nated_only", 1)
modparam("nathelper", "sipping_from", "sip:pinger@127.0.0.1")
modparam("nathelper", "sipping_bflag", 7)

request_route {
	force_rport();
	if (is_method("REGISTER")) {
		# Behind an SBC (Path) the SBC handles the NAT.
		if (!is_present_hf("Path") && nat_uac_test("19")) {
			fix_nated_register();
			setbflag(6);
			if ($ua =~ "sipping") {
				setbflag(7);
			}
		}
		save("location");
		exit;
	}
	if (has_totag()) {
		if (loose_route()) {
			t_relay();
			exit;
		}
		if (is_method("ACK") && t_check_trans()) {
			t_relay();
		}
		exit;
	}
	remove_hf("Route");
	if (is_method("INVITE")) {
		record_route();
	}
	if (!lookup("location")) {
		sl_send_reply("404", "Not Found");
		exit;
	}
	t_relay();
}

onreply_route {
	# The callee behind NAT answers with its private Contact (not when an SBC in front
	# of it already aliased it).
	if (nat_uac_test("1") && !($ct =~ ";alias=")) {
		fix_nated_contact();
	}
}
"#;

fn registrar(name: &str, port: u16, ping: u32) -> Proxy {
    let cfg = REGISTRAR
        .replace("PORT", &port.to_string())
        .replace("PING", &ping.to_string());
    start_proxy(name, &cfg, port)
}

#[test]
fn a_phone_behind_nat_is_called_at_its_source_address() {
    if !have_sipp() {
        return;
    }
    let dir = temp_dir("phone");
    let port = free_port();
    let proxy = registrar("nat-phone", port, 0);
    natted_phone_call(&dir, "alice", port, port, &[&proxy]);
}

/// Sends a REGISTER for `user` from `sock`, as a phone behind NAT, and waits for its 200.
fn register_from(sock: &UdpSocket, proxy: u16, user: &str, ua: &str) {
    let local = sock.local_addr().unwrap();
    let msg = format!(
        "REGISTER sip:127.0.0.1:{proxy} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.168.1.30:5060;rport;branch=z9hG4bK-{user}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@127.0.0.1>;tag={user}\r\n\
         To: <sip:{user}@127.0.0.1>\r\n\
         Call-ID: ka-{user}-{}\r\n\
         CSeq: 1 REGISTER\r\n\
         Contact: <sip:{user}@192.168.1.30:5060>\r\n\
         Expires: 300\r\n\
         User-Agent: {ua}\r\n\
         Content-Length: 0\r\n\r\n",
        local.port()
    );
    sock.send_to(msg.as_bytes(), ("127.0.0.1", proxy)).unwrap();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if buf[..n].starts_with(b"SIP/2.0 200") {
                return;
            }
        }
    }
    panic!("no 200 OK to the REGISTER of {user}");
}

#[test]
fn keepalives_reach_registered_phones_at_their_source() {
    let port = free_port();
    // Pings every second: the test waits for a few rounds at most.
    let proxy = registrar("nat-ping", port, 1);
    let udp_phone = UdpSocket::bind("127.0.0.2:0").unwrap();
    let sip_phone = UdpSocket::bind("127.0.0.3:0").unwrap();
    for s in [&udp_phone, &sip_phone] {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
    }
    register_from(&udp_phone, port, "udp-phone", "plain-phone");
    register_from(&sip_phone, port, "sip-phone", "sipping-phone");

    // The plain phone gets the 4-byte keepalive from the registrar's socket.
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut udp_pings = 0;
    while udp_pings < 2 && Instant::now() < deadline {
        if let Ok((n, from)) = udp_phone.recv_from(&mut buf) {
            assert_eq!(from.port(), port, "keepalive from {from}");
            assert_eq!(&buf[..n], &[0, 0, 0, 0], "{:?}", &buf[..n]);
            udp_pings += 1;
        }
    }
    assert_eq!(udp_pings, 2, "UDP keepalives:\n{}", proxy.log_text());

    // The flagged phone gets OPTIONS for its contact, sent to its NAT address; it answers.
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut options = None;
    while options.is_none() && Instant::now() < deadline {
        if let Ok((n, from)) = sip_phone.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with("OPTIONS ") {
                options = Some((text, from));
            }
        }
    }
    let (text, from) = options.unwrap_or_else(|| panic!("no OPTIONS ping:\n{}", proxy.log_text()));
    assert!(
        text.starts_with("OPTIONS sip:sip-phone@192.168.1.30:5060 SIP/2.0"),
        "{text}"
    );
    assert!(text.contains("sip:pinger@127.0.0.1"), "{text}");
    assert_eq!(from.port(), port);
    let reply = reply_200(&text);
    sip_phone.send_to(reply.as_bytes(), from).unwrap();
    drop(proxy);
}

/// A 200 OK to `request` (its Via, From, To, Call-ID and CSeq copied).
fn reply_200(request: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for line in request.split("\r\n") {
        let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
        if ["via", "v", "from", "f", "to", "t", "call-id", "i", "cseq"].contains(&name.as_str()) {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

const SBC: &str = r#"
listen=udp:127.0.0.1:PORT
listen=tcp:127.0.0.1:PORT
children=2
auto_aliases=no
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "nathelper.so"
loadmodule "path.so"

request_route {
	force_rport();
	if (is_method("REGISTER")) {
		# The registrar stores the Contact with the NAT address in its alias and
		# sends the user's calls back here (Path).
		if (nat_uac_test("19")) {
			add_contact_alias();
		}
		add_path();
		$du = "sip:127.0.0.1:REGISTRAR";
		t_relay();
		exit;
	}
	# Requests from the registrar carry our Path as Route.
	loose_route();
	if (is_method("INVITE") && !has_totag()) {
		record_route();
	}
	handle_ruri_alias();
	t_relay();
}

onreply_route {
	if (nat_uac_test("1")) {
		add_contact_alias();
	}
}
"#;

#[test]
fn an_sbc_adds_path_and_calls_come_back_through_it() {
    if !have_sipp() {
        return;
    }
    let dir = temp_dir("path");
    let registrar_port = free_port();
    let sbc_port = free_port();
    let registrar = registrar("nat-path-registrar", registrar_port, 0);
    let sbc_cfg = SBC
        .replace("REGISTRAR", &registrar_port.to_string())
        .replace("PORT", &sbc_port.to_string());
    let sbc = start_proxy("nat-path-sbc", &sbc_cfg, sbc_port);
    natted_phone_call(&dir, "bob", sbc_port, registrar_port, &[&sbc, &registrar]);
    // The call went through the SBC: it relayed the INVITE the registrar sent it.
    let phone_trace = std::fs::read_to_string(dir.join("phone-messages.log")).unwrap_or_default();
    assert!(
        phone_trace.contains(&format!("Via: SIP/2.0/UDP 127.0.0.1:{sbc_port}")),
        "the INVITE did not come through the SBC:\n{phone_trace}"
    );
}

#[test]
fn check_refuses_bad_nathelper_arguments_at_their_place() {
    let dir = temp_dir("check");
    let cfg = dir.join("bad.cfg");
    std::fs::write(
        &cfg,
        "loadmodule \"nathelper.so\"\nrequest_route {\n\tif (nat_uac_test(\"abc\")) {\n\t\texit;\n\t}\n\tadd_rcv_param();\n}\n",
    )
    .unwrap();
    let out = Command::new(ferrosip_tests::ferrosip_bin())
        .arg("check")
        .arg("-f")
        .arg(&cfg)
        .output()
        .expect("ferrosip runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("bad.cfg:3:19"), "{text}");
    assert!(
        text.contains("add_rcv_param() (module nathelper) is declared"),
        "{text}"
    );
}
