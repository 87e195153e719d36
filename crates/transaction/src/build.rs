//! Requests and responses the transaction layer writes itself: the hop-by-hop ACK, the
//! CANCEL, 100 Trying and other local replies.

use bytes::{BufMut, Bytes, BytesMut};
use ferrosip_sip::{HeaderName, ParseError, SipMessage};

fn missing(name: HeaderName) -> ParseError {
    ParseError::MissingHeader { name }
}

fn line(out: &mut BytesMut, name: &str, value: &[u8]) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// Writes a request of `method` that reuses the identity of `req`: its Request-URI,
/// only its top Via (the branch names the transaction being acknowledged or cancelled,
/// and the hops below us are not ours to repeat), its Route set (so the message takes
/// the same path), From, Call-ID and the CSeq number. `to` is the To value to use.
fn sibling_request(req: &SipMessage, method: &str, to: &[u8]) -> Result<Bytes, ParseError> {
    let ruri = req.request_uri().ok_or(ParseError::Edit {
        what: "ACK and CANCEL are built from a request",
    })?;
    let via = req.top_via()?.as_bytes();
    let from = req
        .header_of(HeaderName::From)
        .ok_or(missing(HeaderName::From))?;
    let call_id = req.call_id().ok_or(missing(HeaderName::CallId))?;
    let seq = req.cseq()?.seq;
    let mut out = BytesMut::with_capacity(256 + ruri.len() + via.len() + from.len() + to.len());
    out.put_slice(method.as_bytes());
    out.put_u8(b' ');
    out.put_slice(ruri);
    out.put_slice(b" SIP/2.0\r\n");
    line(&mut out, "Via", via);
    for route in req.headers_of(HeaderName::Route) {
        line(&mut out, "Route", route);
    }
    line(&mut out, "Max-Forwards", b"70");
    line(&mut out, "From", from);
    line(&mut out, "To", to);
    line(&mut out, "Call-ID", call_id);
    line(
        &mut out,
        "CSeq",
        format!("{seq} {method}").as_bytes(), // method is ACK or CANCEL
    );
    out.put_slice(b"Content-Length: 0\r\n\r\n");
    Ok(out.freeze())
}

/// The ACK a client INVITE transaction sends for a non-2xx final response (RFC 3261
/// §17.1.1.3).
///
/// It belongs to the INVITE transaction, so it travels hop by hop with the INVITE's
/// top Via and Route set; the To comes from the response because that carries the tag
/// of the UAS that rejected the call. A 2xx is acknowledged end to end by the UAC
/// instead, and never with this.
pub fn build_ack(invite: &SipMessage, response: &SipMessage) -> Result<Bytes, ParseError> {
    let to = match response.header_of(HeaderName::To) {
        Some(to) => to,
        // A response without To is broken; the request's To still names the callee.
        None => invite
            .header_of(HeaderName::To)
            .ok_or(missing(HeaderName::To))?,
    };
    sibling_request(invite, "ACK", to)
}

/// A CANCEL for a client INVITE transaction (RFC 3261 §9.1).
///
/// The same top Via branch is what lets the next hop find the INVITE server
/// transaction; To is the request's (no tag), because the CANCEL targets the whole
/// request, not one dialog. Send it on its own non-INVITE client transaction, and only
/// after a provisional response arrived.
pub fn build_cancel(invite: &SipMessage) -> Result<Bytes, ParseError> {
    let to = invite
        .header_of(HeaderName::To)
        .ok_or(missing(HeaderName::To))?;
    sibling_request(invite, "CANCEL", to)
}

/// 100 Trying for a request: its Via lines, From, To (without a tag: a 100 creates no
/// dialog), Call-ID, CSeq, Timestamp, and Content-Length 0.
///
/// The INVITE server transaction never sends this on its own: a proxy decides when the
/// upstream hop needs it (RFC 3261 §16.2 says to send it for an INVITE it will not
/// answer within 200 ms), so the TU builds it here and passes it to `send_reply`.
pub fn trying(req: &SipMessage) -> Result<Bytes, ParseError> {
    req.reply(100, "Trying").build()
}

/// A response generated here rather than relayed (error replies, 408 and 500 from the
/// response context). `to_tag` should be the same for every response of one
/// transaction; `None` derives one from the request, which is stable across its
/// retransmissions.
pub fn local_reply(
    req: &SipMessage,
    status: u16,
    reason: &str,
    to_tag: Option<&[u8]>,
) -> Result<Bytes, ParseError> {
    let builder = req.reply(status, reason);
    match to_tag {
        Some(tag) => builder.to_tag(tag).build(),
        None => builder.build(),
    }
}

/// The RFC 3261 reason phrase of a status code, or the class's generic phrase.
pub fn reason_phrase(status: u16) -> &'static str {
    let known = match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "",
    };
    if !known.is_empty() {
        return known;
    }
    match status {
        100..=199 => "Provisional",
        200..=299 => "Success",
        300..=399 => "Redirection",
        400..=499 => "Client Error",
        500..=599 => "Server Error",
        _ => "Global Failure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@b.example SIP/2.0\r\n\
Via: SIP/2.0/UDP proxy.example;branch=z9hG4bKp1, SIP/2.0/UDP pc.a.example;branch=z9hG4bKa1\r\n\
Via: SIP/2.0/TCP first.example;branch=z9hG4bKf\r\n\
Route: <sip:r1.example;lr>, <sip:r2.example;lr>\r\n\
Route: <sip:r3.example;lr>\r\n\
Max-Forwards: 69\r\n\
To: Bob <sip:bob@b.example>\r\n\
From: Alice <sip:alice@a.example>;tag=1928\r\n\
Call-ID: a84b4c76e66710@pc.a.example\r\n\
CSeq: 314159 INVITE\r\n\
Timestamp: 12\r\n\
Contact: <sip:alice@pc.a.example>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\r";

    const RESP: &str = "SIP/2.0 486 Busy Here\r\n\
Via: SIP/2.0/UDP proxy.example;branch=z9hG4bKp1, SIP/2.0/UDP pc.a.example;branch=z9hG4bKa1\r\n\
Via: SIP/2.0/TCP first.example;branch=z9hG4bKf\r\n\
To: Bob <sip:bob@b.example>;tag=b77\r\n\
From: Alice <sip:alice@a.example>;tag=1928\r\n\
Call-ID: a84b4c76e66710@pc.a.example\r\n\
CSeq: 314159 INVITE\r\n\
Content-Length: 0\r\n\r\n";

    fn parse(s: &str) -> SipMessage {
        SipMessage::parse_slice(s.as_bytes()).unwrap()
    }

    fn routes(m: &SipMessage) -> Vec<String> {
        m.routes()
            .map(|r| String::from_utf8_lossy(r.unwrap().uri_bytes()).into_owned())
            .collect()
    }

    #[test]
    fn ack_for_non_2xx() {
        let inv = parse(INVITE);
        let ack = SipMessage::parse(build_ack(&inv, &parse(RESP)).unwrap()).unwrap();
        assert_eq!(ack.method_bytes(), Some(&b"ACK"[..]));
        assert_eq!(ack.request_uri(), inv.request_uri());
        let vias: Vec<_> = ack.vias().map(|v| v.unwrap().as_bytes().to_vec()).collect();
        assert_eq!(
            vias,
            vec![b"SIP/2.0/UDP proxy.example;branch=z9hG4bKp1".to_vec()]
        );
        assert_eq!(ack.call_id(), inv.call_id());
        assert_eq!(ack.header("From"), inv.header("From"));
        assert_eq!(ack.to_tag(), Some(&b"b77"[..]));
        let cseq = ack.cseq().unwrap();
        assert_eq!((cseq.seq, cseq.method_bytes()), (314159, &b"ACK"[..]));
        assert_eq!(
            routes(&ack),
            [
                "sip:r1.example;lr",
                "sip:r2.example;lr",
                "sip:r3.example;lr"
            ]
        );
        assert_eq!(ack.max_forwards(), Ok(Some(70)));
        assert_eq!(ack.content_length(), Some(0));
        assert!(ack.body().is_empty());
        assert!(!ack.has_header("Contact"));
        assert!(!ack.has_header("Content-Type"));
        assert_eq!(ack.validate(), Ok(()));
    }

    #[test]
    fn ack_without_response_to_uses_request_to() {
        let inv = parse(INVITE);
        let resp = parse("SIP/2.0 500 Oops\r\nVia: SIP/2.0/UDP proxy.example;branch=z9hG4bKp1\r\nCSeq: 314159 INVITE\r\n\r\n");
        let ack = SipMessage::parse(build_ack(&inv, &resp).unwrap()).unwrap();
        assert_eq!(ack.header("To"), Some(&b"Bob <sip:bob@b.example>"[..]));
    }

    #[test]
    fn cancel() {
        let inv = parse(INVITE);
        let c = SipMessage::parse(build_cancel(&inv).unwrap()).unwrap();
        assert_eq!(c.method_bytes(), Some(&b"CANCEL"[..]));
        assert_eq!(c.request_uri(), inv.request_uri());
        assert_eq!(c.vias().count(), 1);
        assert_eq!(c.top_via_branch(), Some(&b"z9hG4bKp1"[..]));
        assert_eq!(c.header("To"), inv.header("To"));
        assert_eq!(c.to_tag(), None);
        assert_eq!(c.header("From"), inv.header("From"));
        assert_eq!(c.call_id(), inv.call_id());
        let cseq = c.cseq().unwrap();
        assert_eq!((cseq.seq, cseq.method_bytes()), (314159, &b"CANCEL"[..]));
        assert_eq!(routes(&c).len(), 3);
        assert_eq!(c.max_forwards(), Ok(Some(70)));
        assert_eq!(c.content_length(), Some(0));
        assert_eq!(c.validate(), Ok(()));
        // The CANCEL finds the INVITE's server transaction at the next hop.
        let target = crate::ServerKey::probe_cancel_target(&c).unwrap();
        assert_eq!(target.to_key(), crate::ServerKey::of(&inv).unwrap());
        assert!(build_cancel(&parse(RESP)).is_err());
    }

    #[test]
    fn trying_and_local_replies() {
        let inv = parse(INVITE);
        let t = SipMessage::parse(trying(&inv).unwrap()).unwrap();
        assert_eq!(t.status(), Some(100));
        assert_eq!(t.vias().count(), 3);
        assert_eq!(t.to_tag(), None);
        assert_eq!(t.header("From"), inv.header("From"));
        assert_eq!(t.call_id(), inv.call_id());
        assert_eq!(t.header("CSeq"), Some(&b"314159 INVITE"[..]));
        assert_eq!(t.content_length(), Some(0));
        assert!(!t.has_header("Contact"));
        assert!(!t.has_header("Route"));

        let r =
            SipMessage::parse(local_reply(&inv, 404, "Not Found", Some(b"abc")).unwrap()).unwrap();
        assert_eq!(r.status(), Some(404));
        assert_eq!(r.to_tag(), Some(&b"abc"[..]));
        let r1 = local_reply(&inv, 480, reason_phrase(480), None).unwrap();
        let r2 = local_reply(&inv, 480, reason_phrase(480), None).unwrap();
        assert_eq!(r1, r2, "derived To tag is stable");
        assert!(SipMessage::parse(r1).unwrap().to_tag().is_some());
        assert_eq!(reason_phrase(487), "Request Terminated");
        assert_eq!(reason_phrase(499), "Client Error");
        assert_eq!(reason_phrase(699), "Global Failure");
    }
}
