//! Checks a proxy makes on demand, beyond what `parse` enforces.

use crate::chars::{offset_in, parse_digits, trim_lws};
use crate::error::ParseError;
use crate::header_name::HeaderName;
use crate::message::SipMessage;
use crate::uri::Scheme;

/// Headers that may appear at most once.
const SINGLE: [HeaderName; 8] = [
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::MaxForwards,
    HeaderName::ContentLength,
    HeaderName::ContentType,
    HeaderName::Expires,
];

/// Headers every request and response must carry (RFC 3261 §8.1.1). Max-Forwards is
/// left out: RFC 2543 clients do not send it and a proxy adds it (§16.6 step 3).
const REQUIRED: [HeaderName; 5] = [
    HeaderName::To,
    HeaderName::From,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::Via,
];

impl SipMessage {
    /// Strict checks beyond the parse-time grammar, for a UAS or proxy that wants to
    /// answer 400 rather than forward questionable input:
    ///
    /// - To, From, Call-ID, CSeq and Via are present, and single-instance headers
    ///   (those plus Max-Forwards, Content-Length, Content-Type, Expires) appear once;
    /// - the CSeq method equals the request method;
    /// - a `sip:`/`sips:` Request-URI has no `?headers` (RFC 3261 §19.1.1);
    /// - Contact, Route and Record-Route values parse (quotes balanced, display names
    ///   tokens or quoted, `<>` around URIs that carry `;`, `?` or `,`);
    /// - Expires, Retry-After and Contact `expires` fit 32 bits;
    /// - Date follows the RFC 1123 form with `GMT` (RFC 3261 §20.17).
    ///
    /// Returns the first problem found.
    pub fn validate(&self) -> Result<(), ParseError> {
        for kind in REQUIRED {
            if self.header_of(kind).is_none() {
                return Err(ParseError::MissingHeader { name: kind });
            }
        }
        for kind in SINGLE {
            if let Some(h) = self.entries_of(kind).nth(1) {
                return Err(ParseError::DuplicateHeader {
                    name: kind,
                    offset: h.line.start as usize,
                });
            }
        }
        if let Some(m) = self.method_bytes() {
            let c = self.cseq()?;
            if c.method_bytes() != m {
                let off = self
                    .entries_of(HeaderName::CSeq)
                    .next()
                    .map_or(0, |h| h.value.start as usize);
                return Err(ParseError::CSeqMethodMismatch { offset: off });
            }
            if let Some(u) = self.request_uri_parsed() {
                if matches!(u.kind(), Scheme::Sip | Scheme::Sips) && u.headers_raw().is_some() {
                    let at = match self.start {
                        crate::message::StartLine::Request { uri, .. } => uri.start as usize,
                        _ => 0,
                    };
                    return Err(ParseError::HeadersInRequestUri { offset: at });
                }
            }
        }
        for c in self.contacts() {
            let c = c?;
            if let Some(e) = c.param("expires") {
                if e.and_then(|v| parse_digits(v, u64::from(u32::MAX)))
                    .is_none()
                {
                    return Err(self.header_err(HeaderName::Contact, "invalid expires parameter"));
                }
            }
        }
        if self.is_contact_star() && self.contacts().next().is_some() {
            return Err(self.header_err(HeaderName::Contact, "'*' mixed with other contacts"));
        }
        for r in self.routes().chain(self.record_routes()) {
            r?;
        }
        if let Some(v) = self.header_of(HeaderName::Expires) {
            if parse_digits(trim_lws(v), u64::from(u32::MAX)).is_none() {
                return Err(self.header_err(HeaderName::Expires, "invalid delta-seconds"));
            }
        }
        if let Some(v) = self.header_of(HeaderName::RetryAfter) {
            let v = trim_lws(v);
            let n = v.iter().take_while(|c| c.is_ascii_digit()).count();
            if parse_digits(&v[..n], u64::from(u32::MAX)).is_none() {
                return Err(self.header_err(HeaderName::RetryAfter, "invalid delta-seconds"));
            }
        }
        for h in self.entries_of(HeaderName::Date) {
            let v = self.get(h.value);
            if let Err(at) = check_date(v) {
                return Err(ParseError::Header {
                    name: HeaderName::Date,
                    offset: h.value.start as usize + at,
                    what: "not an RFC 1123 date in GMT",
                });
            }
        }
        Ok(())
    }

    fn header_err(&self, kind: HeaderName, what: &'static str) -> ParseError {
        ParseError::Header {
            name: kind,
            offset: self
                .entries_of(kind)
                .next()
                .map_or(0, |h| h.value.start as usize),
            what,
        }
    }
}

/// `wkday "," SP 2DIGIT SP month SP 4DIGIT SP 2DIGIT ":" 2DIGIT ":" 2DIGIT SP "GMT"`.
/// Returns the offset of the first deviation.
fn check_date(v: &[u8]) -> Result<(), usize> {
    let t = trim_lws(v);
    let base = offset_in(v, t);
    const WKDAY: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
    const MONTH: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    // Template: "Www, DD Mmm YYYY HH:MM:SS GMT"
    const TEMPLATE: &[u8] = b"www, dd mmm yyyy dd:dd:dd GMT";
    if t.len() != TEMPLATE.len() {
        return Err(base + t.len().min(TEMPLATE.len()));
    }
    let mut i = 0;
    while i < TEMPLATE.len() {
        let ok = match TEMPLATE[i] {
            b'w' => {
                let ok = WKDAY.contains(&&t[i..i + 3]);
                i += 2;
                ok
            }
            b'm' => {
                let ok = MONTH.contains(&&t[i..i + 3]);
                i += 2;
                ok
            }
            b'd' | b'y' => t[i].is_ascii_digit(),
            c => t[i] == c,
        };
        if !ok {
            return Err(base + i);
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn dates() {
        assert!(check_date(b"Sat, 15 Oct 2005 04:44:56 GMT").is_ok());
        assert!(check_date(b"Fri, 01 Jan 2010 16:00:00 EST").is_err());
        assert!(check_date(b"Fri, 1 Jan 2010 16:00:00 GMT").is_err());
        assert!(check_date(b"").is_err());
        assert!(check_date(b"Xyz, 01 Jan 2010 16:00:00 GMT").is_err());
    }

    fn m(s: &str) -> SipMessage {
        SipMessage::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    const BASE: &str = "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\n";

    #[test]
    fn validate_cases() {
        let ok = m(&format!(
            "OPTIONS sip:a@b SIP/2.0\r\n{BASE}CSeq: 1 OPTIONS\r\n\r\n"
        ));
        assert_eq!(ok.validate(), Ok(()));
        let bad = m(&format!(
            "OPTIONS sip:a@b SIP/2.0\r\n{BASE}CSeq: 1 INVITE\r\n\r\n"
        ));
        assert!(matches!(
            bad.validate(),
            Err(ParseError::CSeqMethodMismatch { .. })
        ));
        let bad = m(&format!(
            "OPTIONS sip:a@b SIP/2.0\r\n{BASE}CSeq: 1 OPTIONS\r\nCSeq: 2 OPTIONS\r\n\r\n"
        ));
        assert!(matches!(
            bad.validate(),
            Err(ParseError::DuplicateHeader {
                name: HeaderName::CSeq,
                ..
            })
        ));
        let bad = m("OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n");
        assert!(matches!(
            bad.validate(),
            Err(ParseError::MissingHeader { .. })
        ));
        let bad = m(&format!(
            "OPTIONS sip:a@b?x=y SIP/2.0\r\n{BASE}CSeq: 1 OPTIONS\r\n\r\n"
        ));
        assert!(matches!(
            bad.validate(),
            Err(ParseError::HeadersInRequestUri { offset: 8 })
        ));
        let bad = m(&format!(
            "REGISTER sip:b SIP/2.0\r\n{BASE}CSeq: 1 REGISTER\r\nContact: *, <sip:x@y>\r\n\r\n"
        ));
        assert!(bad.validate().is_err());
        let star = m(&format!(
            "REGISTER sip:b SIP/2.0\r\n{BASE}CSeq: 1 REGISTER\r\nContact: *\r\nExpires: 0\r\n\r\n"
        ));
        assert_eq!(star.validate(), Ok(()));
        assert!(star.is_contact_star());
        let bad = m(&format!(
            "REGISTER sip:b SIP/2.0\r\n{BASE}CSeq: 1 REGISTER\r\nExpires: 99999999999\r\n\r\n"
        ));
        assert!(bad.validate().is_err());
        let bad = m(&format!(
            "REGISTER sip:b SIP/2.0\r\n{BASE}CSeq: 1 REGISTER\r\nRoute: sip:x;lr, <sip:y\r\n\r\n"
        ));
        assert!(bad.validate().is_err());
    }
}
