//! Known header names, their compact forms and a case-insensitive classifier.

macro_rules! header_names {
    ($( $(#[$doc:meta])* $var:ident => $canon:literal, $lower:literal, $compact:expr; )*) => {
        /// A header name the engine knows, compared case-insensitively and with compact
        /// forms folded into their long form (`v` is `Via`). Everything else is `Other`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum HeaderName {
            $( $(#[$doc])* $var, )*
            /// An extension header; compare its raw name.
            Other,
        }

        impl HeaderName {
            /// The canonical spelling (`"Call-ID"`); `"extension"` for `Other`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( HeaderName::$var => $canon, )*
                    HeaderName::Other => "extension",
                }
            }

            /// The compact form (RFC 3261 §7.3.3 and later RFCs), lower case.
            pub fn compact(self) -> Option<u8> {
                match self {
                    $( HeaderName::$var => $compact, )*
                    HeaderName::Other => None,
                }
            }

            const ALL: &'static [(&'static [u8], HeaderName)] = &[
                $( ($lower, HeaderName::$var), )*
            ];
        }
    };
}

header_names! {
    Via => "Via", b"via", Some(b'v');
    From => "From", b"from", Some(b'f');
    To => "To", b"to", Some(b't');
    CallId => "Call-ID", b"call-id", Some(b'i');
    CSeq => "CSeq", b"cseq", None;
    MaxForwards => "Max-Forwards", b"max-forwards", None;
    ContentLength => "Content-Length", b"content-length", Some(b'l');
    ContentType => "Content-Type", b"content-type", Some(b'c');
    Contact => "Contact", b"contact", Some(b'm');
    Route => "Route", b"route", None;
    RecordRoute => "Record-Route", b"record-route", None;
    UserAgent => "User-Agent", b"user-agent", None;
    Server => "Server", b"server", None;
    Subject => "Subject", b"subject", Some(b's');
    Supported => "Supported", b"supported", Some(b'k');
    ContentEncoding => "Content-Encoding", b"content-encoding", Some(b'e');
    Event => "Event", b"event", Some(b'o');
    AllowEvents => "Allow-Events", b"allow-events", Some(b'u');
    ReferTo => "Refer-To", b"refer-to", Some(b'r');
    ReferredBy => "Referred-By", b"referred-by", Some(b'b');
    SessionExpires => "Session-Expires", b"session-expires", Some(b'x');
    AcceptContact => "Accept-Contact", b"accept-contact", Some(b'a');
    RejectContact => "Reject-Contact", b"reject-contact", Some(b'j');
    RequestDisposition => "Request-Disposition", b"request-disposition", Some(b'd');
    Identity => "Identity", b"identity", Some(b'y');
    IdentityInfo => "Identity-Info", b"identity-info", Some(b'n');
    Accept => "Accept", b"accept", None;
    Allow => "Allow", b"allow", None;
    Authorization => "Authorization", b"authorization", None;
    ProxyAuthorization => "Proxy-Authorization", b"proxy-authorization", None;
    WwwAuthenticate => "WWW-Authenticate", b"www-authenticate", None;
    ProxyAuthenticate => "Proxy-Authenticate", b"proxy-authenticate", None;
    Expires => "Expires", b"expires", None;
    MinExpires => "Min-Expires", b"min-expires", None;
    Require => "Require", b"require", None;
    ProxyRequire => "Proxy-Require", b"proxy-require", None;
    Unsupported => "Unsupported", b"unsupported", None;
    Date => "Date", b"date", None;
    RetryAfter => "Retry-After", b"retry-after", None;
    Path => "Path", b"path", None;
    Warning => "Warning", b"warning", None;
    ContentDisposition => "Content-Disposition", b"content-disposition", None;
    PAssertedIdentity => "P-Asserted-Identity", b"p-asserted-identity", None;
    PPreferredIdentity => "P-Preferred-Identity", b"p-preferred-identity", None;
    Privacy => "Privacy", b"privacy", None;
    RSeq => "RSeq", b"rseq", None;
    RAck => "RAck", b"rack", None;
}

impl HeaderName {
    /// Classifies a raw header name (case-insensitive, compact forms included).
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        if name.len() == 1 {
            return match name[0].to_ascii_lowercase() {
                b'v' => HeaderName::Via,
                b'f' => HeaderName::From,
                b't' => HeaderName::To,
                b'i' => HeaderName::CallId,
                b'l' => HeaderName::ContentLength,
                b'c' => HeaderName::ContentType,
                b'm' => HeaderName::Contact,
                b's' => HeaderName::Subject,
                b'k' => HeaderName::Supported,
                b'e' => HeaderName::ContentEncoding,
                b'o' => HeaderName::Event,
                b'u' => HeaderName::AllowEvents,
                b'r' => HeaderName::ReferTo,
                b'b' => HeaderName::ReferredBy,
                b'x' => HeaderName::SessionExpires,
                b'a' => HeaderName::AcceptContact,
                b'j' => HeaderName::RejectContact,
                b'd' => HeaderName::RequestDisposition,
                b'y' => HeaderName::Identity,
                b'n' => HeaderName::IdentityInfo,
                _ => HeaderName::Other,
            };
        }
        // Bucketed by length and first letter: a header name is classified with one or
        // two case-insensitive compares instead of a walk over every known name.
        let first = match name.first() {
            Some(c) => c.to_ascii_lowercase(),
            None => return HeaderName::Other,
        };
        let Some(bucket) = buckets().get(name.len()) else {
            return HeaderName::Other;
        };
        for &(lower, kind) in bucket {
            if lower[0] == first && lower.eq_ignore_ascii_case(name) {
                return kind;
            }
        }
        HeaderName::Other
    }
}

const MAX_KNOWN: usize = 24;

fn buckets() -> &'static [Vec<(&'static [u8], HeaderName)>; MAX_KNOWN] {
    static B: std::sync::OnceLock<[Vec<(&'static [u8], HeaderName)>; MAX_KNOWN]> =
        std::sync::OnceLock::new();
    B.get_or_init(|| {
        let mut b: [Vec<(&'static [u8], HeaderName)>; MAX_KNOWN] = Default::default();
        for &(lower, kind) in HeaderName::ALL {
            if let Some(v) = b.get_mut(lower.len()) {
                v.push((lower, kind));
            }
        }
        b
    })
}

impl std::fmt::Display for HeaderName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::HeaderName as H;

    #[test]
    fn classify() {
        assert_eq!(H::from_bytes(b"VIA"), H::Via);
        assert_eq!(H::from_bytes(b"v"), H::Via);
        assert_eq!(H::from_bytes(b"V"), H::Via);
        assert_eq!(H::from_bytes(b"call-id"), H::CallId);
        assert_eq!(H::from_bytes(b"I"), H::CallId);
        assert_eq!(H::from_bytes(b"MaX-fOrWaRdS"), H::MaxForwards);
        assert_eq!(H::from_bytes(b"r"), H::ReferTo);
        assert_eq!(H::from_bytes(b"x"), H::SessionExpires);
        assert_eq!(H::from_bytes(b"X-Foo"), H::Other);
        assert_eq!(H::from_bytes(b""), H::Other);
        assert_eq!(H::from_bytes(&[b'a'; 100]), H::Other);
        assert_eq!(H::from_bytes(b"P-Asserted-Identity"), H::PAssertedIdentity);
        for h in [H::Via, H::From, H::To, H::CallId, H::ContentLength, H::ReferTo] {
            assert_eq!(H::from_bytes(h.as_str().as_bytes()), h);
            if let Some(c) = h.compact() {
                assert_eq!(H::from_bytes(&[c]), h);
            }
        }
    }
}
