//! Building a response to a request (RFC 3261 §8.2.6), as a stateless proxy or a UAS
//! answering on its own (400 for a bad request, 483, 100 Trying...).

use bytes::{BufMut, Bytes, BytesMut};

use crate::chars::is_token;
use crate::edit::fmt_u64;
use crate::error::ParseError;
use crate::header_name::HeaderName;
use crate::message::SipMessage;

/// A reply under construction; see [`SipMessage::reply`].
#[derive(Debug, Clone)]
pub struct ReplyBuilder<'m> {
    req: &'m SipMessage,
    status: u16,
    reason: Vec<u8>,
    to_tag: Option<Vec<u8>>,
    headers: Vec<u8>,
    body: Option<(Vec<u8>, Bytes)>,
    err: Option<ParseError>,
}

fn bad_text(v: &[u8]) -> bool {
    v.iter().any(|&c| c == b'\r' || c == b'\n' || c == 0)
}

impl SipMessage {
    /// Starts a reply to this request: status line, then the request's Via lines (all,
    /// in order), From, To (with a To tag added when it has none, except for 100),
    /// Call-ID and CSeq copied as received, then any extra headers, Content-Length and
    /// the body. Headers the request lacks are left out, so even a request with
    /// missing headers can be told 400.
    pub fn reply(&self, status: u16, reason: &str) -> ReplyBuilder<'_> {
        ReplyBuilder {
            req: self,
            status,
            reason: reason.as_bytes().to_vec(),
            to_tag: None,
            headers: Vec::new(),
            body: None,
            err: None,
        }
    }

    /// A To tag derived from the transaction (Call-ID, From tag, top Via branch, CSeq),
    /// so that retransmissions of a request get the same tag from a stateless element.
    pub fn stateless_to_tag(&self) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |b: &[u8]| {
            for &c in b.iter().chain(std::iter::once(&0xff)) {
                h ^= u64::from(c);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        eat(self.call_id().unwrap_or_default());
        eat(self.from_tag().unwrap_or_default());
        if let Ok(v) = self.top_via() {
            eat(v.branch().unwrap_or_default());
        }
        eat(self.header_of(HeaderName::CSeq).unwrap_or_default());
        format!("{h:016x}")
    }
}

impl<'m> ReplyBuilder<'m> {
    /// Uses `tag` as the To tag instead of [`SipMessage::stateless_to_tag`] (ignored
    /// when the request's To already has a tag).
    pub fn to_tag(mut self, tag: impl AsRef<[u8]>) -> Self {
        let tag = tag.as_ref();
        if !is_token(tag) {
            self.err = Some(ParseError::Edit {
                what: "To tag is not a token",
            });
        }
        self.to_tag = Some(tag.to_vec());
        self
    }

    /// Adds `name: value` after the copied headers.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        let value = value.as_ref();
        if !is_token(name.as_bytes()) || bad_text(value) {
            self.err = Some(ParseError::Edit {
                what: "bad reply header",
            });
        }
        self.headers.extend_from_slice(name.as_bytes());
        self.headers.extend_from_slice(b": ");
        self.headers.extend_from_slice(value);
        self.headers.extend_from_slice(b"\r\n");
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        if bad_text(content_type.as_bytes()) {
            self.err = Some(ParseError::Edit {
                what: "bad Content-Type",
            });
        }
        self.body = Some((content_type.as_bytes().to_vec(), body.into()));
        self
    }

    /// Writes the reply.
    pub fn build(self) -> Result<Bytes, ParseError> {
        if let Some(e) = self.err {
            return Err(e);
        }
        let req = self.req;
        if !req.is_request() {
            return Err(ParseError::Edit {
                what: "cannot reply to a response",
            });
        }
        if !(100..=699).contains(&self.status) {
            return Err(ParseError::Edit {
                what: "status code out of range",
            });
        }
        if bad_text(&self.reason) {
            return Err(ParseError::Edit {
                what: "bad reason phrase",
            });
        }
        let mut out = BytesMut::with_capacity(512 + self.body.as_ref().map_or(0, |b| b.1.len()));
        let mut n = [0u8; 20];
        out.put_slice(b"SIP/2.0 ");
        out.put_slice(fmt_u64(&mut n, u64::from(self.status)));
        out.put_u8(b' ');
        out.put_slice(&self.reason);
        out.put_slice(b"\r\n");
        let generated;
        let tag: Option<&[u8]> = match (&self.to_tag, self.status) {
            (_, 100) => None,
            (Some(t), _) => Some(t),
            (None, _) => {
                generated = req.stateless_to_tag();
                Some(generated.as_bytes())
            }
        };
        let to_has_tag = req.to_tag().is_some();
        for h in &req.headers {
            match h.kind {
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                    out.put_slice(req.get(h.line));
                }
                HeaderName::To => match tag {
                    Some(tag) if !to_has_tag => {
                        out.put_slice(req.get(h.name));
                        out.put_slice(b": ");
                        out.put_slice(req.get(h.value));
                        out.put_slice(b";tag=");
                        out.put_slice(tag);
                        out.put_slice(b"\r\n");
                    }
                    _ => out.put_slice(req.get(h.line)),
                },
                HeaderName::Other
                    if self.status == 100 && req.get(h.name).eq_ignore_ascii_case(b"Timestamp") =>
                {
                    // §8.2.6.1: a 100 echoes the request's Timestamp.
                    out.put_slice(req.get(h.line));
                }
                _ => {}
            }
        }
        out.put_slice(&self.headers);
        let body_len = match &self.body {
            Some((ct, b)) => {
                out.put_slice(b"Content-Type: ");
                out.put_slice(ct);
                out.put_slice(b"\r\n");
                b.len()
            }
            None => 0,
        };
        out.put_slice(b"Content-Length: ");
        out.put_slice(fmt_u64(&mut n, body_len as u64));
        out.put_slice(b"\r\n\r\n");
        if let Some((_, b)) = &self.body {
            out.put_slice(b);
        }
        Ok(out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use crate::SipMessage;
    use bytes::Bytes;

    const REQ: &[u8] = b"INVITE sip:bob@b SIP/2.0\r\n\
Via: SIP/2.0/UDP p1;branch=z9hG4bK1, SIP/2.0/UDP p0;branch=z9hG4bK0\r\n\
v: SIP/2.0/UDP ua;branch=z9hG4bKu\r\n\
To: Bob <sip:bob@b>\r\n\
From: <sip:a@a>;tag=x\r\n\
Call-ID: c1\r\n\
CSeq: 5 INVITE\r\n\
Timestamp: 54\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn reply_copies_and_tags() {
        let req = SipMessage::parse(Bytes::from_static(REQ)).unwrap();
        let r = req
            .reply(404, "Not Found")
            .header("Server", "ferrosip")
            .build()
            .unwrap();
        let resp = SipMessage::parse(r.clone()).unwrap();
        assert_eq!(resp.status(), Some(404));
        assert_eq!(resp.reason(), Some(&b"Not Found"[..]));
        assert_eq!(resp.vias().count(), 3);
        assert_eq!(resp.call_id(), Some(&b"c1"[..]));
        assert_eq!(resp.cseq().unwrap().seq, 5);
        assert_eq!(resp.from_tag(), Some(&b"x"[..]));
        let tag = resp.to_tag().unwrap().to_vec();
        assert_eq!(tag, req.stateless_to_tag().as_bytes());
        assert_eq!(resp.header("Server"), Some(&b"ferrosip"[..]));
        assert!(!resp.has_header("Max-Forwards"));
        assert!(!resp.has_header("Timestamp"));
        assert_eq!(resp.content_length(), Some(0));
        assert_eq!(resp.validate(), Ok(()));

        let r = req.reply(100, "Trying").build().unwrap();
        let resp = SipMessage::parse(r).unwrap();
        assert_eq!(resp.to_tag(), None);
        assert_eq!(resp.header("Timestamp"), Some(&b"54"[..]));

        let r = req
            .reply(200, "OK")
            .to_tag("abc")
            .body("text/plain", "hi")
            .build()
            .unwrap();
        let resp = SipMessage::parse(r).unwrap();
        assert_eq!(resp.to_tag(), Some(&b"abc"[..]));
        assert_eq!(resp.body(), b"hi");
        assert_eq!(resp.content_type(), Some(&b"text/plain"[..]));

        assert!(req.reply(200, "O\r\nK").build().is_err());
        assert!(req.reply(1000, "x").build().is_err());
        assert!(req.reply(200, "OK").header("X", "a\nb").build().is_err());
        assert!(resp_reply_fails());
    }

    fn resp_reply_fails() -> bool {
        let resp = SipMessage::parse(Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n")).unwrap();
        resp.reply(200, "OK").build().is_err()
    }
}
