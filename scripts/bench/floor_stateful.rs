// The floor for the *stateful* bench traffic (`sip-load --mode stateful`): the system calls
// a stateful proxy cannot avoid, and nearly nothing else. The harness's own floor
// (shared/bench/floor/relay.rs) relays the stateless traffic; a stateful proxy also
// answers each INVITE with a 100 Trying of its own, one more send per call, and adds a
// Record-Route. This relay does exactly that: no transaction state, no parsing beyond
// finding lines, one thread, one socket, blocking I/O.
//
// Build: rustc -O -o floor_stateful scripts/bench/floor_stateful.rs
// Run:   shared/bench/sip-load --mode stateful --compare --target ./floor_stateful
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};

const OUR_ADDR: &str = "127.0.0.1:5060";
const NEXT_HOP: &str = "127.0.0.1:5070";

/// The lines of `msg` (without their CRLF) up to the blank line that ends the headers.
fn header_lines(msg: &[u8]) -> impl Iterator<Item = &[u8]> {
    msg.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .take_while(|l| !l.is_empty())
}

fn named(line: &[u8], name: &[u8]) -> bool {
    line.len() > name.len()
        && line[name.len()] == b':'
        && line[..name.len()].eq_ignore_ascii_case(name)
}

/// Our Via goes after the request line; an initial INVITE also gets our Record-Route.
fn forward_request(msg: &[u8], initial_invite: bool, branch: u64, out: &mut Vec<u8>) -> Option<()> {
    let first = msg.windows(2).position(|w| w == b"\r\n")? + 2;
    out.extend_from_slice(&msg[..first]);
    out.extend_from_slice(b"Via: SIP/2.0/UDP ");
    out.extend_from_slice(OUR_ADDR.as_bytes());
    // Into the output buffer: no allocation per message.
    write!(out, ";branch=z9hG4bKfloor{branch:x}\r\n").ok()?;
    if initial_invite {
        out.extend_from_slice(b"Record-Route: <sip:");
        out.extend_from_slice(OUR_ADDR.as_bytes());
        out.extend_from_slice(b";lr>\r\n");
    }
    out.extend_from_slice(&msg[first..]);
    Some(())
}

/// A 100 Trying built from the request's Via, From, To, Call-ID and CSeq lines.
fn trying(msg: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"SIP/2.0 100 Trying\r\n");
    for line in header_lines(msg).skip(1) {
        if [&b"Via"[..], b"From", b"To", b"Call-ID", b"CSeq"]
            .iter()
            .any(|n| named(line, n))
        {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
}

/// A response loses its first Via line (ours) and goes to the sent-by of the next one.
fn forward_response(msg: &[u8], out: &mut Vec<u8>) -> Option<SocketAddr> {
    let mut offset = 0;
    let mut removed = false;
    let mut next: Option<SocketAddr> = None;
    while offset < msg.len() {
        let end = msg[offset..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(msg.len(), |p| offset + p + 2);
        let line = &msg[offset..end];
        offset = end;
        if line == b"\r\n" {
            out.extend_from_slice(line);
            out.extend_from_slice(&msg[offset..]);
            break;
        }
        if named(line, b"Via") {
            if !removed {
                removed = true;
                // SIPp may fold the Vias into one line: keep what follows our value.
                let Some(comma) = line.iter().position(|&b| b == b',') else {
                    continue;
                };
                let rest = line[comma + 1..].trim_ascii_start();
                out.extend_from_slice(b"Via: ");
                let at = out.len();
                out.extend_from_slice(rest);
                next = via_sent_by(&out[at..]);
                continue;
            }
            if next.is_none() {
                next = via_sent_by(&line[4..]);
            }
        }
        out.extend_from_slice(line);
    }
    next
}

/// The host:port of a Via value "SIP/2.0/UDP host:port;params".
fn via_sent_by(value: &[u8]) -> Option<SocketAddr> {
    let value = value.trim_ascii_start();
    let after_proto = value.iter().position(|&b| b == b' ')? + 1;
    let hostport = &value[after_proto..];
    let stop = hostport
        .iter()
        .position(|&b| b == b';' || b == b',' || b == b'\r')
        .unwrap_or(hostport.len());
    std::str::from_utf8(&hostport[..stop])
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn main() {
    let sock = UdpSocket::bind(OUR_ADDR).expect("bind 127.0.0.1:5060");
    let next_hop: SocketAddr = NEXT_HOP.parse().expect("next hop");
    let mut buf = vec![0u8; 65536];
    let mut out = Vec::with_capacity(65536);
    let mut branch = 0u64;
    loop {
        let Ok((len, source)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let msg = &buf[..len];
        out.clear();
        if msg.starts_with(b"SIP/2.0 ") {
            if let Some(dst) = forward_response(msg, &mut out) {
                let _ = sock.send_to(&out, dst);
            }
            continue;
        }
        let initial_invite = msg.starts_with(b"INVITE ")
            && !header_lines(msg).any(|l| named(l, b"To") && l.windows(5).any(|w| w == b";tag="));
        if initial_invite {
            trying(msg, &mut out);
            let _ = sock.send_to(&out, source);
            out.clear();
        }
        branch += 1;
        if forward_request(msg, initial_invite, branch, &mut out).is_some() {
            let _ = sock.send_to(&out, next_hop);
        }
    }
}
