//! The RFC 4475 torture messages sent to the running proxy over UDP and over TCP: every
//! message the RFC says to reject is answered with an error or dropped and never reaches
//! the script, every valid request reaches the script, and the proxy answers an OPTIONS
//! afterwards. The script answers what reaches it with 299, so "reached the script" is
//! visible on the wire.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferrosip_tests::{free_port, start_proxy};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/rfc4475")
}

/// File name → expected outcome letter (P, R or A) from the corpus README's table.
fn expectations() -> BTreeMap<String, char> {
    let table = std::fs::read_to_string(corpus().join("README.md")).expect("corpus README");
    let mut out = BTreeMap::new();
    for line in table.lines() {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        if cols.len() >= 4 && cols[2].ends_with(".dat") {
            let letter = cols[3].chars().next().expect("outcome letter");
            out.insert(cols[2].to_string(), letter);
        }
    }
    assert_eq!(out.len(), 49, "the README lists the 49 messages");
    out
}

fn status_of(reply: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(reply.get(..12)?).ok()?;
    text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
}

fn cfg(port: u16) -> String {
    let checks = 3047 - 128 + 1024 + 4096 + 131072;
    format!(
        r#"listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
loadmodule "sl.so"
loadmodule "sanity.so"
request_route {{
    # Kamailio's default checks without Content-Length (128: it also refuses a datagram
    # longer than Content-Length, which RFC 4475's dblreq says to accept and cut), plus
    # URI parsing (1024), duplicate tags (4096) and the whole RFC 3261 grammar (131072);
    # URI checks: R-URI, From, To, Contact.
    if (!sanity_check("{checks}", "15")) {{
        exit;
    }}
    sl_send_reply("299", "Processed");
}}
reply_route {{
    drop;
}}
"#
    )
}

/// What the proxy did with one message: the status of its answer, if any.
fn over_udp(port: u16, raw: &[u8]) -> Option<u16> {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(400)))
        .expect("timeout");
    sock.send_to(raw, ("127.0.0.1", port)).expect("send");
    let mut buf = vec![0u8; 65536];
    let n = sock.recv(&mut buf).ok()?;
    status_of(&buf[..n])
}

fn over_tcp(port: u16, raw: &[u8]) -> Option<u16> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.set_read_timeout(Some(Duration::from_millis(400)))
        .expect("timeout");
    conn.write_all(raw).expect("send");
    let mut buf = vec![0u8; 65536];
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_millis(400);
    while Instant::now() < deadline {
        match conn.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                got += n;
                if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    status_of(&buf[..got])
}

fn alive(port: u16) {
    let probe = format!(
        "OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKalive\r\n\
         From: <sip:t@x>;tag=1\r\nTo: <sip:p@x>\r\nCall-ID: alive\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    assert_eq!(
        over_udp(port, probe.as_bytes()),
        Some(299),
        "the proxy answers after the corpus"
    );
}

#[test]
fn the_rfc4475_corpus_through_the_proxy_over_udp_and_tcp() {
    let port = free_port();
    let proxy = start_proxy(&format!("torture-{port}"), &cfg(port), port);
    let mut report = Vec::new();
    let mut wrong = Vec::new();
    for (name, expect) in expectations() {
        let raw = std::fs::read(corpus().join(&name)).expect("message");
        let is_request = !raw.starts_with(b"SIP/2.0 ");
        for (proto, status) in [("udp", over_udp(port, &raw)), ("tcp", over_tcp(port, &raw))] {
            report.push(format!("{name:16} {proto} {expect} -> {status:?}"));
            let ok = match (expect, is_request) {
                // Rejected: an error answer or silence, never the script's 299.
                ('R', _) => status != Some(299),
                // A valid request reaches the script (over TCP only when it frames:
                // streams need Content-Length, RFC 3261 §18.3).
                ('P', true) => {
                    status == Some(299)
                        || (proto == "tcp"
                            && !contains(&raw, b"\nContent-Length")
                            && !contains(&raw, b"\nl:"))
                }
                // Replies go on by their Via (to hosts that do not exist): no answer.
                (_, false) => status.is_none(),
                // Application-level cases: the script decides; a reply may go to the
                // Via's port rather than back to the sender (no rport), so not asserted.
                ('A', true) => true,
                _ => false,
            };
            if !ok {
                wrong.push(format!(
                    "{name} over {proto}: expected {expect}, got {status:?}"
                ));
            }
        }
    }
    alive(port);
    let log = proxy.stop();
    println!("{}", report.join("\n"));
    assert!(
        wrong.is_empty(),
        "{}\n--- proxy log ---\n{log}",
        wrong.join("\n")
    );
    assert!(!log.contains("panicked"), "no panic: {log}");
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}
