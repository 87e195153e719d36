//! Record-routing across a transport change, against the real binary: an INVITE that
//! arrives over UDP and leaves over TCP carries two Record-Route entries of ours (one per
//! side, `r2=on`, the TCP one with `transport=tcp`), and an in-dialog BYE sent back with
//! that Route set is recognised by `loose_route()`, which removes both entries.

use ferrosip_tests::{free_port, start_proxy};
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// Reads one SIP message (headers + Content-Length body) from a stream.
fn read_message(r: &mut BufReader<TcpStream>) -> String {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(
            r.read_line(&mut line).expect("read") > 0,
            "connection closed"
        );
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).expect("body");
    head
}

#[test]
fn double_record_route_on_transport_change_and_loose_route_removes_both() {
    let proxy_port = free_port();
    let uas = TcpListener::bind("127.0.0.1:0").expect("uas");
    let uas_port = uas.local_addr().expect("addr").port();
    let cfg = format!(
        r#"#!KAMAILIO
listen=udp:127.0.0.1:{proxy_port}
listen=tcp:127.0.0.1:{proxy_port}
loadmodule "tm.so"
loadmodule "rr.so"
loadmodule "sl.so"
loadmodule "textops.so"
loadmodule "siputils.so"
request_route {{
    if (has_totag()) {{
        if (loose_route()) {{
            # Both of our entries gone, nothing left: the R-URI is the next hop.
            if (is_present_hf("Route") || $du != $null) {{
                sl_send_reply("500", "Route Left");
                exit;
            }}
            sl_send_reply("299", "Routed to $ru");
            exit;
        }}
        sl_send_reply("404", "Not Routed");
        exit;
    }}
    record_route();
    $du = "sip:127.0.0.1:{uas_port};transport=tcp";
    t_relay();
}}
"#
    );
    let _proxy = start_proxy("rr", &cfg, proxy_port);
    let uac = UdpSocket::bind("127.0.0.1:0").expect("uac");
    uac.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let uac_port = uac.local_addr().expect("addr").port();
    let invite = format!(
        "INVITE sip:bob@127.0.0.1:{uas_port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{uac_port};branch=z9hG4bKrr1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: rr-test@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:{uac_port}>\r\nContent-Length: 0\r\n\r\n"
    );
    uac.send_to(invite.as_bytes(), ("127.0.0.1", proxy_port))
        .expect("send");
    let (conn, _) = uas.accept().expect("the INVITE comes over TCP");
    conn.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut reader = BufReader::new(conn);
    let got = read_message(&mut reader);
    let rr: Vec<&str> = got
        .lines()
        .filter(|l| l.starts_with("Record-Route:"))
        .collect();
    assert_eq!(rr.len(), 2, "two Record-Route entries of ours:\n{got}");
    assert!(
        rr[0].contains("transport=tcp") && rr[0].contains("r2=on") && rr[0].contains(";lr"),
        "the outbound (TCP) entry first: {}",
        rr[0]
    );
    assert!(
        !rr[1].contains("transport=tcp") && rr[1].contains("r2=on"),
        "then the inbound (UDP) one: {}",
        rr[1]
    );
    assert!(
        got.contains("Via: SIP/2.0/TCP 127.0.0.1"),
        "our Via names TCP:\n{got}"
    );

    // The callee sends a BYE back over UDP with the Route set it learnt (reversed):
    // loose_route() must remove both entries, leaving the R-URI (the caller's Contact) as
    // the next hop.
    let route_set: Vec<String> = rr
        .iter()
        .map(|l| l.trim_start_matches("Record-Route:").trim().to_string())
        .collect();
    let bye = format!(
        "BYE sip:alice@127.0.0.1:{uac_port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{uac_port};branch=z9hG4bKrr2;rport\r\nMax-Forwards: 70\r\nRoute: {}, {}\r\nFrom: <sip:bob@127.0.0.1>;tag=b1\r\nTo: <sip:alice@127.0.0.1>;tag=a1\r\nCall-ID: rr-test@127.0.0.1\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        route_set[1], route_set[0]
    );
    // Answers for the INVITE (100 Trying) may come first; wait for the BYE's.
    uac.send_to(bye.as_bytes(), ("127.0.0.1", proxy_port))
        .expect("send");
    let mut buf = [0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        assert!(Instant::now() < deadline, "no answer to the BYE");
        let n = uac.recv(&mut buf).expect("an answer");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.contains("CSeq: 1 BYE") {
            assert!(
                text.starts_with(&format!(
                    "SIP/2.0 299 Routed to sip:alice@127.0.0.1:{uac_port}"
                )),
                "loose_route() took both Route entries:\n{text}"
            );
            break;
        }
    }
}
