//! The real `ferrosip` binary on loopback, driven by SIPp (Debian `sip-tester`; the
//! README's test command installs it): stateless call flows over UDP and TCP, local
//! replies, and the server surviving malformed input.

use ferrosip_tests::sipp::spawn_sipp;
use ferrosip_tests::{have_sipp, start_proxy, wait_exit, Launch};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}

/// Ports for one test, distinct per test and per run.
fn ports(slot: u16) -> (u16, u16, u16) {
    let base = 20000 + (std::process::id() % 500) as u16 * 20 + slot * 4;
    (base, base + 1, base + 2)
}

fn config(proxy: u16, uas: u16) -> String {
    format!(
        r#"#!KAMAILIO
debug=1
children=2
listen=udp:127.0.0.1:{proxy}
listen=tcp:127.0.0.1:{proxy}
loadmodule "sl.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (is_method("OPTIONS") && uri == myself && $rU == $null) {{
        sl_send_reply("200", "Keepalive");
        exit;
    }}
    if ($pr == "tcp") {{
        $du = "sip:127.0.0.1:{uas};transport=tcp";
    }} else {{
        $du = "sip:127.0.0.1:{uas}";
    }}
    forward();
    exit;
}}
"#
    )
}

fn call_flow(slot: u16, transport: &str, calls: u32) {
    if !have_sipp() {
        return;
    }
    let (proxy, uas, uac) = ports(slot);
    let _p = start_proxy(&format!("calls-{transport}"), &config(proxy, uas), proxy);
    run_calls(proxy, uas, uac, transport, calls);
}

/// Runs `calls` SIPp calls through the proxy already listening on `proxy`.
fn run_calls(proxy: u16, uas: u16, uac: u16, transport: &str, calls: u32) {
    let sc = scenarios();
    let uas_sf = sc.join("call_uas.xml");
    let uac_sf = sc.join("call_uac.xml");
    let t = if transport == "tcp" { "t1" } else { "u1" };
    let uas_port = uas.to_string();
    let uas_p = spawn_sipp(&[
        "-sf",
        uas_sf.to_str().expect("path"),
        "-i",
        "127.0.0.1",
        "-p",
        &uas_port,
        "-t",
        t,
        "-nostdin",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let target = format!("127.0.0.1:{proxy}");
    let uac_port = uac.to_string();
    let calls_s = calls.to_string();
    let code = wait_exit(
        spawn_sipp(&[
            "-sf",
            uac_sf.to_str().expect("path"),
            "-i",
            "127.0.0.1",
            "-p",
            &uac_port,
            "-t",
            t,
            "-s",
            "bob",
            "-m",
            &calls_s,
            "-r",
            "200",
            "-l",
            "100",
            "-timeout",
            "40s",
            "-timeout_error",
            "-nostdin",
            &target,
        ]),
        Duration::from_secs(60),
    );
    let mut uas_p = uas_p;
    let _ = uas_p.kill();
    let _ = uas_p.wait();
    assert_eq!(
        code,
        Some(0),
        "SIPp caller over {transport}: not every one of {calls} calls completed"
    );
}

#[test]
fn stateless_calls_over_udp() {
    call_flow(0, "udp", 1000);
}

#[test]
fn stateless_calls_over_tcp() {
    call_flow(1, "tcp", 1000);
}

fn single(slot: u16, scenario: &str) -> Option<i32> {
    let (proxy, uas, uac) = ports(slot);
    let _p = start_proxy(scenario, &config(proxy, uas), proxy);
    let sf = scenarios().join(scenario);
    let target = format!("127.0.0.1:{proxy}");
    let uac_port = uac.to_string();
    wait_exit(
        spawn_sipp(&[
            "-sf",
            sf.to_str().expect("path"),
            "-i",
            "127.0.0.1",
            "-p",
            &uac_port,
            "-s",
            "bob",
            "-m",
            "5",
            "-timeout",
            "15s",
            "-timeout_error",
            "-nostdin",
            &target,
        ]),
        Duration::from_secs(30),
    )
}

/// The shipped `examples/stateless.cfg`, unmodified except for its ports (given as
/// defines, as an operator would), carries SIPp calls.
#[test]
fn shipped_stateless_example_carries_calls() {
    if !have_sipp() {
        return;
    }
    let (proxy, uas, uac) = ports(6);
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/stateless.cfg");
    let _p = Launch::new(&example)
        .define(format!("PROXY_PORT={proxy}"))
        .define(format!("PBX=\"sip:127.0.0.1:{uas}\""))
        .listening_on(proxy)
        .start();
    run_calls(proxy, uas, uac, "udp", 200);
}

#[test]
fn max_forwards_zero_gets_483() {
    if have_sipp() {
        assert_eq!(single(2, "maxfwd0_uac.xml"), Some(0));
    }
}

#[test]
fn options_keepalive_answered_by_the_script() {
    if have_sipp() {
        assert_eq!(single(3, "options_uac.xml"), Some(0));
    }
}

/// Sends `req` from a fresh socket and returns the reply's status line, if any.
fn udp_exchange(proxy: u16, req: &[u8]) -> Option<String> {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    s.send_to(req, ("127.0.0.1", proxy)).expect("send");
    let mut buf = [0u8; 65536];
    let n = s.recv(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.lines().next().map(str::to_string)
}

fn options(proxy: u16, local_port: u16, extra: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:127.0.0.1:{proxy} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bKt{extra}\r\nMax-Forwards: 70\r\nFrom: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: {extra}@t\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

#[test]
fn malformed_input_gets_400_or_is_dropped_and_the_server_goes_on() {
    let (proxy, uas, uac) = ports(4);
    let mut p = start_proxy("robust", &config(proxy, uas), proxy);
    // A malformed request with a readable Via is answered 400.
    let bad = b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: bad@t\r\nCSeq: 36893488147419103232 INVITE\r\nContent-Length: 0\r\n\r\n";
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let port = s.local_addr().expect("addr").port();
    let bad = String::from_utf8_lossy(bad).replace("127.0.0.1:9", &format!("127.0.0.1:{port}"));
    s.send_to(bad.as_bytes(), ("127.0.0.1", proxy))
        .expect("send");
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).expect("a 400 comes back");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("SIP/2.0 400 "),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );

    // Thousands of random and mutated datagrams and TCP streams.
    let base = options(proxy, port, "seed");
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let junk = UdpSocket::bind("127.0.0.1:0").expect("bind");
    for i in 0..4000u32 {
        let mut m = base.clone();
        match i % 5 {
            0 => m = (0..(next() % 1500)).map(|_| next() as u8).collect(),
            1 => m.truncate((next() as usize) % m.len()),
            2 => {
                for _ in 0..8 {
                    let at = (next() as usize) % m.len();
                    m[at] = next() as u8;
                }
            }
            3 => {
                let at = (next() as usize) % m.len();
                m.splice(at..at, std::iter::repeat_n(b'A', 70_000));
            }
            _ => {
                let s = String::from_utf8_lossy(&m)
                    .replace("Content-Length: 0", "Content-Length: 99999");
                m = s.replace('\0', "").into_bytes();
                m.push(0);
            }
        }
        let _ = junk.send_to(&m, ("127.0.0.1", proxy));
    }
    for i in 0..200u32 {
        if let Ok(mut c) = TcpStream::connect(("127.0.0.1", proxy)) {
            use std::io::Write;
            let _ = c.set_write_timeout(Some(Duration::from_millis(200)));
            let mut m = base.clone();
            match i % 4 {
                0 => m = (0..(next() % 3000)).map(|_| next() as u8).collect(),
                1 => m.truncate((next() as usize) % m.len()),
                2 => {
                    m = String::from_utf8_lossy(&m)
                        .replace("Content-Length: 0", "Content-Length: -5")
                        .into_bytes()
                }
                _ => m.extend(std::iter::repeat_n(b'x', 100_000)),
            }
            let _ = c.write_all(&m);
        }
    }
    // Still alive, still correct.
    assert!(
        p.child.try_wait().expect("status").is_none(),
        "ferrosip died"
    );
    let status = udp_exchange(proxy, &options(proxy, 0, "after"));
    // Via port 0 is not answerable by port; the reply goes to the source address.
    assert_eq!(status.as_deref(), Some("SIP/2.0 200 Keepalive"));
    assert!(
        p.child.try_wait().expect("status").is_none(),
        "ferrosip died"
    );
    if have_sipp() {
        run_calls(proxy, uas, uac, "udp", 100);
    }
}

/// IPv4 and IPv6 listeners at once: a request arriving over IPv6 is forwarded to an IPv6
/// peer with an IPv6 Via of ours (bracketed), the peer's reply comes back over IPv6, and
/// an OPTIONS to the IPv4 listener is still answered.
#[test]
fn ipv4_and_ipv6_listeners_forward_and_route_replies() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here: skipped");
        return;
    }
    let (proxy, _, _) = ports(6);
    let uas = UdpSocket::bind("[::1]:0").expect("bind uas");
    uas.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let uas_port = uas.local_addr().expect("addr").port();
    let cfg = format!(
        r#"#!KAMAILIO
children=2
listen=udp:127.0.0.1:{proxy}
listen=tcp:127.0.0.1:{proxy}
listen=udp:[::1]:{proxy}
loadmodule "sl.so"
loadmodule "textops.so"
request_route {{
    if (is_method("OPTIONS") && $rU == $null) {{
        sl_send_reply("200", "Keepalive");
        exit;
    }}
    forward("[::1]", {uas_port});
}}
"#
    );
    let _p = start_proxy("ipv6", &cfg, proxy);
    assert_eq!(
        udp_exchange(proxy, &options(proxy, 9, "v4")).as_deref(),
        Some("SIP/2.0 200 Keepalive")
    );
    let uac = UdpSocket::bind("[::1]:0").expect("bind uac");
    uac.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let uac_port = uac.local_addr().expect("addr").port();
    let req = format!(
        "MESSAGE sip:bob@[::1] SIP/2.0\r\nVia: SIP/2.0/UDP [::1]:{uac_port};branch=z9hG4bKv6\r\nMax-Forwards: 70\r\nFrom: <sip:a@[::1]>;tag=1\r\nTo: <sip:bob@[::1]>\r\nCall-ID: v6@t\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n"
    );
    uac.send_to(req.as_bytes(), ("::1", proxy)).expect("send");
    let mut buf = [0u8; 65536];
    let (n, from) = uas
        .recv_from(&mut buf)
        .expect("the request reaches the IPv6 peer");
    assert_eq!(from.port(), proxy, "sent from the IPv6 listener");
    let got = String::from_utf8_lossy(&buf[..n]).into_owned();
    let top_via = got.lines().find(|l| l.starts_with("Via:")).expect("a Via");
    assert!(
        top_via.starts_with(&format!("Via: SIP/2.0/UDP [::1]:{proxy};branch=z9hG4bK")),
        "{top_via}"
    );
    // Answer with both Vias, as a UAS does: the reply must come back to the UAC.
    let vias: Vec<&str> = got.lines().filter(|l| l.starts_with("Via:")).collect();
    let reply = format!(
        "SIP/2.0 200 OK\r\n{}\r\nFrom: <sip:a@[::1]>;tag=1\r\nTo: <sip:bob@[::1]>;tag=2\r\nCall-ID: v6@t\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n",
        vias.join("\r\n")
    );
    uas.send_to(reply.as_bytes(), from).expect("reply");
    let n = uac.recv(&mut buf).expect("the reply comes back over IPv6");
    let back = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(back.starts_with("SIP/2.0 200 OK"), "{back}");
    assert_eq!(back.matches("Via:").count(), 1, "our Via removed: {back}");
}
