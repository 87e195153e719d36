//! Plain-socket SIP peers for the integration tests: what a hand-written UAS needs to read a
//! request and answer it, when SIPp's scenarios are too coarse (recording what arrived,
//! answering each request differently).

use std::net::UdpSocket;

/// The next datagram on `sock` as text, `None` on its read timeout.
pub fn recv_text(sock: &UdpSocket) -> Option<String> {
    let mut buf = [0u8; 65536];
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The value of the first `name` header line of `msg` (name compared without case).
pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A reply to `req` as a UAS builds it: its Via, From, Call-ID and CSeq lines, its To with
/// our tag `uas` unless it has one, and `contact` for a dialog-creating reply.
pub fn uas_reply(req: &str, status: &str, contact: Option<&str>) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for l in req.lines() {
        if l.starts_with("Via:")
            || l.starts_with("From:")
            || l.starts_with("Call-ID:")
            || l.starts_with("CSeq:")
        {
            out.push_str(l);
            out.push_str("\r\n");
        }
        if l.starts_with("To:") {
            out.push_str(l);
            if !l.contains(";tag=") {
                out.push_str(";tag=uas");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_copies_the_transaction_lines_and_tags_to_once() {
        let req = "INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\
                   From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
        let r = uas_reply(req, "200 OK", Some("sip:b@127.0.0.1"));
        assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
        assert_eq!(header(&r, "to"), Some("<sip:b@x>;tag=uas"));
        assert_eq!(header(&r, "CSeq"), Some("1 INVITE"));
        assert_eq!(header(&r, "Contact"), Some("<sip:b@127.0.0.1>"));
        let again = uas_reply(
            &r.replace("SIP/2.0 200 OK", "BYE sip:a@x SIP/2.0"),
            "200 OK",
            None,
        );
        assert_eq!(header(&again, "To"), Some("<sip:b@x>;tag=uas"));
    }
}
