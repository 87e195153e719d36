//! Loops and forking breadth through the running proxy: a request that comes back
//! unchanged through one of our Vias is answered 482 (RFC 3261 §16.3 step 4) while a
//! spiral (changed Request-URI, another socket) goes on; RFC 5393 Max-Breadth is shared
//! among parallel branches, and a request with none left gets 440.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use ferrosip_tests::{free_port, header, recv_text, Launch, Proxy};

fn start(name: &str, cfg: &str, port: u16) -> Proxy {
    let dir = std::env::temp_dir().join(format!("ferrosip-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("proxy.cfg"), cfg).expect("cfg");
    Launch::new(dir.join("proxy.cfg"))
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .start()
}

fn client() -> UdpSocket {
    let c = UdpSocket::bind("127.0.0.1:0").expect("client");
    c.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    c
}

/// Sends an OPTIONS for `ruri` to the proxy and returns the first final reply's status
/// line, or `None` when none came within 2 s.
fn options(c: &UdpSocket, port: u16, ruri: &str, extra: &str) -> Option<String> {
    let local = c.local_addr().expect("addr").port();
    let call = format!("loop-{port}-{ruri}-{}", extra.len());
    let msg = format!(
        "OPTIONS {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{}\r\n\
         From: <sip:a@127.0.0.1>;tag=f\r\nTo: <{ruri}>\r\nCall-ID: {call}\r\nCSeq: 1 OPTIONS\r\n\
         {extra}Content-Length: 0\r\n\r\n",
        call.len() * 7 + port as usize
    );
    c.send_to(msg.as_bytes(), ("127.0.0.1", port))
        .expect("send");
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let reply = recv_text(c)?;
        let status = reply.lines().next().unwrap_or_default().to_string();
        if !status.starts_with("SIP/2.0 1") {
            return Some(status);
        }
    }
    None
}

fn assert_clean_stop(proxy: Proxy) -> String {
    let log = proxy.stop();
    assert!(log.contains("panics=0"), "{log}");
    log
}

#[test]
fn a_request_sent_back_unchanged_is_answered_482_stateless_and_stateful() {
    for relay in ["forward();", "t_relay();"] {
        let port = free_port();
        let cfg = format!(
            "listen=udp:127.0.0.1:{port}\nlisten=tcp:127.0.0.1:{port}\n\
             loadmodule \"tm.so\"\nloadmodule \"sl.so\"\n\
             request_route {{\n    {relay}\n}}\n"
        );
        let proxy = start("loop-482", &cfg, port);
        let c = client();
        // The Request-URI is the proxy itself: every pass sends it back unchanged.
        let ruri = format!("sip:alice@127.0.0.1:{port}");
        let status = options(&c, port, &ruri, "Max-Forwards: 70\r\n");
        assert_eq!(
            status.as_deref(),
            Some("SIP/2.0 482 Loop Detected"),
            "{relay}:\n{}",
            proxy.log_text()
        );
        let log = assert_clean_stop(proxy);
        assert!(log.contains("loops=1"), "{relay}: {log}");
    }
}

#[test]
fn spirals_go_on_and_loop_detection_can_be_turned_off() {
    let port = free_port();
    let other = free_port();
    // Through a changed Request-URI (alice -> bob) and through another socket of ours:
    // both come back with one of our Vias, neither is a loop.
    let cfg = format!(
        "listen=udp:127.0.0.1:{port}\nlisten=tcp:127.0.0.1:{port}\nlisten=udp:127.0.0.1:{other}\n\
         loadmodule \"sl.so\"\n\
         request_route {{\n\
             if ($rU == \"alice\") {{ $rU = \"bob\"; forward(); exit; }}\n\
             if ($rU == \"carol\" && $Rp == {port}) {{ forward(); exit; }}\n\
             if ($rU == \"bob\") {{ sl_send_reply(\"200\", \"Spiral\"); exit; }}\n\
             if ($Rp == {other}) {{ sl_send_reply(\"200\", \"Other Socket\"); exit; }}\n\
             sl_send_reply(\"404\", \"Not Here\");\n\
         }}\n"
    );
    let proxy = start("loop-spiral", &cfg, port);
    let c = client();
    let changed = options(&c, port, &format!("sip:alice@127.0.0.1:{port}"), "");
    assert_eq!(
        changed.as_deref(),
        Some("SIP/2.0 200 Spiral"),
        "{}",
        proxy.log_text()
    );
    let socket = options(&c, port, &format!("sip:carol@127.0.0.1:{other}"), "");
    assert_eq!(
        socket.as_deref(),
        Some("SIP/2.0 200 Other Socket"),
        "{}",
        proxy.log_text()
    );
    let log = assert_clean_stop(proxy);
    assert!(log.contains("loops=0"), "{log}");

    // Off: the loop runs until Max-Forwards is used up, and no 482 comes.
    let port = free_port();
    let cfg = format!(
        "listen=udp:127.0.0.1:{port}\nlisten=tcp:127.0.0.1:{port}\nloop_detection=no\n\
         loadmodule \"sl.so\"\nrequest_route {{\n    forward();\n}}\n"
    );
    let proxy = start("loop-off", &cfg, port);
    let c = client();
    let status = options(
        &c,
        port,
        &format!("sip:alice@127.0.0.1:{port}"),
        "Max-Forwards: 5\r\n",
    );
    assert_ne!(status.as_deref(), Some("SIP/2.0 482 Loop Detected"));
    let log = assert_clean_stop(proxy);
    assert!(log.contains("loops=0"), "{log}");
}

fn breadth_cfg(port: u16) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
modparam("usrloc", "db_mode", 0)
request_route {{
    if ($rm == "REGISTER") {{ save("location"); exit; }}
    if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
    t_relay();
}}
"#
    )
}

/// Sends an INVITE with `extra` headers; returns Max-Breadth per branch that reached the
/// UAS (by Request-URI) and the final status the client got, if any.
fn invite(
    port: u16,
    c: &UdpSocket,
    uas: &UdpSocket,
    n: u32,
    extra: &str,
) -> (HashMap<String, String>, Option<String>) {
    let local = c.local_addr().expect("addr").port();
    let msg = format!(
        "INVITE sip:alice@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bKmb{n};rport\r\n\
         From: <sip:bob@127.0.0.1>;tag=b{n}\r\nTo: <sip:alice@127.0.0.1>\r\n\
         Call-ID: breadth-{n}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n{extra}\
         Contact: <sip:bob@127.0.0.1:{local}>\r\nContent-Length: 0\r\n\r\n"
    );
    c.send_to(msg.as_bytes(), ("127.0.0.1", port))
        .expect("send");
    let mut branches = HashMap::new();
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        if let Some(req) = recv_text(uas) {
            let line = req.lines().next().unwrap_or_default().to_string();
            let this_call = header(&req, "Call-ID") == Some(format!("breadth-{n}").as_str());
            if line.starts_with("INVITE ") && this_call {
                let breadth = header(&req, "Max-Breadth").unwrap_or("-").to_string();
                branches.insert(line, breadth);
            }
        }
    }
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut status = None;
    while let Some(reply) = recv_text(c) {
        let line = reply.lines().next().unwrap_or_default().to_string();
        if !line.starts_with("SIP/2.0 1") {
            status = Some(line);
        }
    }
    (branches, status)
}

#[test]
fn max_breadth_is_shared_among_parallel_branches_and_zero_gets_440() {
    let port = free_port();
    let proxy = start("max-breadth", &breadth_cfg(port), port);
    let uas = UdpSocket::bind("127.0.0.1:0").expect("uas");
    uas.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let uas_port = uas.local_addr().expect("addr").port();
    let c = client();
    let local = c.local_addr().expect("addr").port();
    let contacts: String = (0..5)
        .map(|i| format!("Contact: <sip:alice-{i}@127.0.0.1:{uas_port}>;expires=600\r\n"))
        .collect();
    let register = format!(
        "REGISTER sip:127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bKmbreg;rport\r\n\
         From: <sip:alice@127.0.0.1>;tag=r\r\nTo: <sip:alice@127.0.0.1>\r\n\
         Call-ID: breadth-reg\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n{contacts}\
         Content-Length: 0\r\n\r\n"
    );
    c.send_to(register.as_bytes(), ("127.0.0.1", port))
        .expect("send");
    let reply = recv_text(&c).expect("REGISTER answered");
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");

    // None in the request: 60 shared among the 5 branches.
    let (branches, _) = invite(port, &c, &uas, 1, "");
    assert_eq!(branches.len(), 5, "{branches:?}\n{}", proxy.log_text());
    assert!(branches.values().all(|b| b == "12"), "{branches:?}");

    // 4 for 5 targets: 4 branches of 1 each.
    let (branches, _) = invite(port, &c, &uas, 2, "Max-Breadth: 4\r\n");
    assert_eq!(branches.len(), 4, "{branches:?}\n{}", proxy.log_text());
    assert!(branches.values().all(|b| b == "1"), "{branches:?}");

    // 7 for 5: 2, 2, 1, 1, 1 (sum 7).
    let (branches, _) = invite(port, &c, &uas, 3, "Max-Breadth: 7\r\n");
    let sum: u32 = branches
        .values()
        .map(|b| b.parse::<u32>().unwrap_or(99))
        .sum();
    assert_eq!((branches.len(), sum), (5, 7), "{branches:?}");

    // None left to fork with: 440 and nothing sent.
    let (branches, status) = invite(port, &c, &uas, 4, "Max-Breadth: 0\r\n");
    assert!(branches.is_empty(), "{branches:?}");
    assert_eq!(status.as_deref(), Some("SIP/2.0 440 Max-Breadth Exceeded"));
    let log = assert_clean_stop(proxy);
    assert!(
        log.contains("parallel branches not sent: Max-Breadth reached"),
        "{log}"
    );
}
