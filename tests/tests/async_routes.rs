//! A route that awaits (a pause here; database queries the same way) does not hold its
//! worker: with one worker, a message that arrives after a paused one is answered first.

use ferrosip_tests::{free_port, start_proxy};
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

fn config(port: u16) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
children=1
loadmodule "sl.so"
loadmodule "cfgutils.so"
request_route {{
    if ($hdr(X-Pause) == "yes") {{
        usleep(1500000);
    }}
    sl_send_reply("200", "OK");
    exit;
}}
"#
    )
}

fn options(call_id: &str, pause: bool, port: u16, local: u16, proto: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/{proto} 127.0.0.1:{local};branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:t@127.0.0.1>;tag=1\r\n\
         To: <sip:ping@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         X-Pause: {}\r\n\
         Content-Length: 0\r\n\r\n",
        if pause { "yes" } else { "no" }
    )
    .into_bytes()
}

fn call_id_of(reply: &[u8]) -> String {
    let text = String::from_utf8_lossy(reply);
    assert!(text.starts_with("SIP/2.0 200"), "unexpected reply: {text}");
    text.lines()
        .find_map(|l| l.strip_prefix("Call-ID: "))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn paused_route_does_not_hold_the_udp_worker() {
    let port = free_port();
    let _proxy = start_proxy("async-udp", &config(port), port);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let local = sock.local_addr().unwrap().port();
    let proxy = format!("127.0.0.1:{port}");
    sock.send_to(&options("paused", true, port, local, "UDP"), &proxy)
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    sock.send_to(&options("quick", false, port, local, "UDP"), &proxy)
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut order = Vec::new();
    for _ in 0..2 {
        let n = sock.recv(&mut buf).expect("a reply");
        order.push(call_id_of(&buf[..n]));
    }
    assert_eq!(order, ["quick", "paused"]);
}

#[test]
fn paused_route_does_not_hold_a_tcp_connection() {
    let port = free_port();
    let _proxy = start_proxy("async-tcp", &config(port), port);
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let local = conn.local_addr().unwrap().port();
    conn.write_all(&options("paused", true, port, local, "TCP"))
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    conn.write_all(&options("quick", false, port, local, "TCP"))
        .unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while received
        .windows(4)
        .filter(|w| *w == b"\r\n\r\n".as_slice())
        .count()
        < 2
    {
        let n = conn.read(&mut buf).expect("replies");
        assert!(n > 0, "connection closed");
        received.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&received);
    let quick = text.find("Call-ID: quick").expect("quick answered");
    let paused = text.find("Call-ID: paused").expect("paused answered");
    assert!(quick < paused, "replies in arrival order: {text}");
}
