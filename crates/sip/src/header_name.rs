//! Known header names, their compact forms and a case-insensitive classifier.

macro_rules! header_names {
    ($( $(#[$doc:meta])* $var:ident => $canon:literal, $_lower:literal, $compact:expr; )*) => {
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
        if !crate::chars::is_token(name) {
            return HeaderName::Other;
        }
        HeaderName::from_token(name)
    }

    /// [`HeaderName::from_bytes`] for a name already known to be a token.
    pub(crate) fn from_token(name: &[u8]) -> HeaderName {
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
        classify_long(name)
    }
}

/// ASCII-lowercases a token of known length by setting bit 0x20. For token characters
/// this is exact against names made of lower-case letters and `-`: the only token byte
/// it maps onto a letter is that letter's other case, and none maps onto `-`.
#[inline(always)]
fn fold<const N: usize>(name: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    for (d, s) in a.iter_mut().zip(name) {
        *d = s | 0x20;
    }
    a
}

/// Classifies names of two bytes or more: one jump on the length, then integer
/// compares of the folded bytes against the few names of that length.
#[rustfmt::skip]
fn classify_long(name: &[u8]) -> HeaderName {
    match name.len() {
            2 => match &fold::<2>(name) { b"to" => HeaderName::To, _ => HeaderName::Other },
            3 => match &fold::<3>(name) { b"via" => HeaderName::Via, _ => HeaderName::Other },
            4 => match &fold::<4>(name) { b"from" => HeaderName::From, b"cseq" => HeaderName::CSeq, b"date" => HeaderName::Date, b"path" => HeaderName::Path, b"rseq" => HeaderName::RSeq, b"rack" => HeaderName::RAck, _ => HeaderName::Other },
            5 => match &fold::<5>(name) { b"route" => HeaderName::Route, b"event" => HeaderName::Event, b"allow" => HeaderName::Allow, _ => HeaderName::Other },
            6 => match &fold::<6>(name) { b"server" => HeaderName::Server, b"accept" => HeaderName::Accept, _ => HeaderName::Other },
            7 => match &fold::<7>(name) { b"call-id" => HeaderName::CallId, b"contact" => HeaderName::Contact, b"subject" => HeaderName::Subject, b"expires" => HeaderName::Expires, b"require" => HeaderName::Require, b"warning" => HeaderName::Warning, b"privacy" => HeaderName::Privacy, _ => HeaderName::Other },
            8 => match &fold::<8>(name) { b"refer-to" => HeaderName::ReferTo, b"identity" => HeaderName::Identity, _ => HeaderName::Other },
            9 => match &fold::<9>(name) { b"supported" => HeaderName::Supported, _ => HeaderName::Other },
            10 => match &fold::<10>(name) { b"user-agent" => HeaderName::UserAgent, _ => HeaderName::Other },
            11 => match &fold::<11>(name) { b"referred-by" => HeaderName::ReferredBy, b"min-expires" => HeaderName::MinExpires, b"unsupported" => HeaderName::Unsupported, b"retry-after" => HeaderName::RetryAfter, _ => HeaderName::Other },
            12 => match &fold::<12>(name) { b"max-forwards" => HeaderName::MaxForwards, b"content-type" => HeaderName::ContentType, b"record-route" => HeaderName::RecordRoute, b"allow-events" => HeaderName::AllowEvents, _ => HeaderName::Other },
            13 => match &fold::<13>(name) { b"identity-info" => HeaderName::IdentityInfo, b"authorization" => HeaderName::Authorization, b"proxy-require" => HeaderName::ProxyRequire, _ => HeaderName::Other },
            14 => match &fold::<14>(name) { b"content-length" => HeaderName::ContentLength, b"accept-contact" => HeaderName::AcceptContact, b"reject-contact" => HeaderName::RejectContact, _ => HeaderName::Other },
            15 => match &fold::<15>(name) { b"session-expires" => HeaderName::SessionExpires, _ => HeaderName::Other },
            16 => match &fold::<16>(name) { b"content-encoding" => HeaderName::ContentEncoding, b"www-authenticate" => HeaderName::WwwAuthenticate, _ => HeaderName::Other },
            18 => match &fold::<18>(name) { b"proxy-authenticate" => HeaderName::ProxyAuthenticate, _ => HeaderName::Other },
            19 => match &fold::<19>(name) { b"request-disposition" => HeaderName::RequestDisposition, b"proxy-authorization" => HeaderName::ProxyAuthorization, b"content-disposition" => HeaderName::ContentDisposition, b"p-asserted-identity" => HeaderName::PAssertedIdentity, _ => HeaderName::Other },
            20 => match &fold::<20>(name) { b"p-preferred-identity" => HeaderName::PPreferredIdentity, _ => HeaderName::Other },
        _ => HeaderName::Other,
    }
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
        assert_eq!(H::from_bytes(b"call\rid"), H::Other);
        assert_eq!(H::from_bytes(b"Call_ID"), H::Other);
        assert_eq!(H::from_bytes(&[b'a'; 100]), H::Other);
        assert_eq!(H::from_bytes(b"P-Asserted-Identity"), H::PAssertedIdentity);
        for h in [
            H::Via,
            H::From,
            H::To,
            H::CallId,
            H::ContentLength,
            H::ReferTo,
        ] {
            assert_eq!(H::from_bytes(h.as_str().as_bytes()), h);
            if let Some(c) = h.compact() {
                assert_eq!(H::from_bytes(&[c]), h);
            }
        }
    }
}
