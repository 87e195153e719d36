//! URIs: `sip:`/`sips:` and `tel:` in full, any other scheme as an opaque absoluteURI.

use crate::chars::{check_escaped, eq_ic, is, parse_digits, HNV, HOST, PASSWORD, URIC, USER};
use crate::error::{syntax, ParseError};
use crate::params::{check_uri_params, Params};

/// The URI scheme, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
    /// Any other scheme; its text after `:` is kept opaque.
    Other,
}

/// A parsed URI borrowing its input. Nothing is unescaped: accessors return the bytes
/// as written, so `%40` stays `%40`.
///
/// For `sip:`/`sips:` the user part is split at the one `@` a valid SIP URI can hold (RFC
/// 3261 user, password, parameter and header characters exclude a raw `@`), so user
/// parts with `;`, `?` or `/` (RFC 4475 §3.1.1.9) come out whole. Beyond the RFC, `#` is
/// accepted in the user part because telephony dial strings carry it unescaped, and `_`
/// in host names because deployed DNS names do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    raw: &'a [u8],
    scheme: &'a [u8],
    kind: Scheme,
    user: Option<&'a [u8]>,
    password: Option<&'a [u8]>,
    host: Option<&'a [u8]>,
    port: Option<u16>,
    params: Option<&'a [u8]>,
    headers: Option<&'a [u8]>,
    opaque: &'a [u8],
}

impl<'a> Uri<'a> {
    /// Parses a whole URI (no surrounding blanks or `<>`).
    pub fn parse(raw: &'a [u8]) -> Result<Uri<'a>, ParseError> {
        let colon = memchr::memchr(b':', raw).ok_or_else(|| syntax(0, "URI without scheme"))?;
        let scheme = &raw[..colon];
        let valid_scheme = scheme.first().is_some_and(u8::is_ascii_alphabetic)
            && scheme
                .iter()
                .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
        if !valid_scheme {
            return Err(syntax(0, "invalid URI scheme"));
        }
        let kind = if eq_ic(scheme, b"sip") {
            Scheme::Sip
        } else if eq_ic(scheme, b"sips") {
            Scheme::Sips
        } else if eq_ic(scheme, b"tel") {
            Scheme::Tel
        } else {
            Scheme::Other
        };
        let mut uri = Uri {
            raw,
            scheme,
            kind,
            user: None,
            password: None,
            host: None,
            port: None,
            params: None,
            headers: None,
            opaque: &raw[colon + 1..],
        };
        let start = colon + 1;
        match kind {
            Scheme::Sip | Scheme::Sips => uri.parse_sip(start)?,
            Scheme::Tel => uri.parse_tel(start)?,
            Scheme::Other => {
                if uri.opaque.is_empty() {
                    return Err(syntax(start, "empty URI after scheme"));
                }
                check_escaped(uri.opaque, URIC)
                    .map_err(|i| syntax(start + i, "invalid character in URI"))?;
            }
        }
        Ok(uri)
    }

    fn parse_sip(&mut self, start: usize) -> Result<(), ParseError> {
        let raw = self.raw;
        let rest = &raw[start..];
        let mut i = start;
        if let Some(at) = memchr::memchr(b'@', rest) {
            let ui = &rest[..at];
            let (user, password) = match memchr::memchr(b':', ui) {
                Some(c) => (&ui[..c], Some((c + 1, &ui[c + 1..]))),
                None => (ui, None),
            };
            if user.is_empty() {
                return Err(syntax(start, "empty user part"));
            }
            check_escaped(user, USER)
                .map_err(|e| syntax(start + e, "invalid character in user part"))?;
            if let Some((po, pw)) = password {
                check_escaped(pw, PASSWORD)
                    .map_err(|e| syntax(start + po + e, "invalid character in password"))?;
                self.password = Some(pw);
            }
            self.user = Some(user);
            i = start + at + 1;
        }
        let hs = i;
        if raw.get(i) == Some(&b'[') {
            let close = memchr::memchr(b']', &raw[i..])
                .ok_or_else(|| syntax(i, "unterminated IPv6 reference"))?;
            let inner = &raw[i + 1..i + close];
            if inner.len() < 2
                || !inner
                    .iter()
                    .all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
            {
                return Err(syntax(i, "invalid IPv6 reference"));
            }
            i += close + 1;
        } else {
            while i < raw.len() && is(raw[i], HOST) {
                i += 1;
            }
            if i == hs {
                return Err(syntax(i, "missing host"));
            }
        }
        self.host = Some(&raw[hs..i]);
        if raw.get(i) == Some(&b':') {
            i += 1;
            let ps = i;
            while i < raw.len() && raw[i].is_ascii_digit() {
                i += 1;
            }
            let port = parse_digits(&raw[ps..i], u64::from(u16::MAX))
                .ok_or_else(|| syntax(ps, "invalid port"))?;
            self.port = Some(port as u16);
        }
        if raw.get(i) == Some(&b';') {
            i += 1;
            let end = memchr::memchr(b'?', &raw[i..]).map_or(raw.len(), |q| i + q);
            check_uri_params(&raw[i..end]).map_err(|(o, w)| syntax(i + o, w))?;
            self.params = Some(&raw[i..end]);
            i = end;
        }
        if raw.get(i) == Some(&b'?') {
            i += 1;
            let h = &raw[i..];
            let mut off = i;
            for pair in h.split(|&c| c == b'&') {
                let eq = memchr::memchr(b'=', pair)
                    .ok_or_else(|| syntax(off, "URI header without '='"))?;
                if eq == 0 {
                    return Err(syntax(off, "empty URI header name"));
                }
                check_escaped(&pair[..eq], HNV)
                    .and_then(|_| check_escaped(&pair[eq + 1..], HNV).map_err(|e| e + eq + 1))
                    .map_err(|e| syntax(off + e, "invalid character in URI header"))?;
                off += pair.len() + 1;
            }
            self.headers = Some(h);
            i = raw.len();
        }
        if i != raw.len() {
            return Err(syntax(i, "unexpected character in URI"));
        }
        Ok(())
    }

    fn parse_tel(&mut self, start: usize) -> Result<(), ParseError> {
        let raw = self.raw;
        let end = memchr::memchr(b';', &raw[start..]).map_or(raw.len(), |s| start + s);
        let number = &raw[start..end];
        if number.is_empty() {
            return Err(syntax(start, "empty telephone number"));
        }
        check_escaped(number, USER)
            .map_err(|e| syntax(start + e, "invalid character in telephone number"))?;
        self.user = Some(number);
        if end < raw.len() {
            let ps = end + 1;
            check_uri_params(&raw[ps..]).map_err(|(o, w)| syntax(ps + o, w))?;
            self.params = Some(&raw[ps..]);
        }
        Ok(())
    }

    /// The whole URI as given.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The scheme as written (`sip`, `SIP`, `tel`, `http`...).
    pub fn scheme(&self) -> &'a [u8] {
        self.scheme
    }

    /// The scheme, classified.
    pub fn kind(&self) -> Scheme {
        self.kind
    }

    /// Everything after `scheme:`; the only structure of an unknown scheme.
    pub fn opaque(&self) -> &'a [u8] {
        self.opaque
    }

    /// The user part (`sip:`), or the number (`tel:`).
    pub fn user(&self) -> Option<&'a [u8]> {
        self.user
    }

    /// The password after `user:`.
    pub fn password(&self) -> Option<&'a [u8]> {
        self.password
    }

    /// The host (`sip:` only); an IPv6 reference keeps its brackets (`[::1]`).
    pub fn host(&self) -> Option<&'a [u8]> {
        self.host
    }

    /// The explicit port, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The URI parameters.
    pub fn params(&self) -> Params<'a> {
        Params::new(self.params.unwrap_or_default())
    }

    /// The raw parameter text after the first `;`, if there is one.
    pub fn params_raw(&self) -> Option<&'a [u8]> {
        self.params
    }

    /// Parameter lookup by name, case-insensitive: `Some(None)` for a flag such as `lr`.
    pub fn param(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.params().get(name)
    }

    /// The raw header text after `?`, if any.
    pub fn headers_raw(&self) -> Option<&'a [u8]> {
        self.headers
    }

    /// The `?name=value&...` headers, still escaped.
    pub fn headers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        self.headers
            .unwrap_or_default()
            .split(|&c| c == b'&')
            .filter(|p| !p.is_empty())
            .map(|p| match memchr::memchr(b'=', p) {
                Some(e) => (&p[..e], &p[e + 1..]),
                None => (p, &p[p.len()..]),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_uri_parts() {
        let u =
            Uri::parse(b"sip:alice:pw@example.com:5061;transport=TCP;lr?subject=hi&x=y").unwrap();
        assert_eq!(u.kind(), Scheme::Sip);
        assert_eq!(u.user(), Some(&b"alice"[..]));
        assert_eq!(u.password(), Some(&b"pw"[..]));
        assert_eq!(u.host(), Some(&b"example.com"[..]));
        assert_eq!(u.port(), Some(5061));
        assert_eq!(u.param("TRANSPORT"), Some(Some(&b"TCP"[..])));
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.headers().count(), 2);
        assert_eq!(u.headers_raw(), Some(&b"subject=hi&x=y"[..]));
    }

    #[test]
    fn ipv6_and_odd_users() {
        let u = Uri::parse(b"sips:[2001:db8::1]:5061").unwrap();
        assert_eq!(u.host(), Some(&b"[2001:db8::1]"[..]));
        assert_eq!(u.port(), Some(5061));
        let u = Uri::parse(b"sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!(u.user(), Some(&b"user;par=u%40example.net"[..]));
        assert_eq!(u.host(), Some(&b"example.com"[..]));
        let u = Uri::parse(
            b"sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com",
        )
        .unwrap();
        assert_eq!(
            u.password(),
            Some(&b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"[..])
        );
        assert!(Uri::parse(b"sip:example.com").unwrap().user().is_none());
    }

    #[test]
    fn tel_and_opaque() {
        let u = Uri::parse(b"tel:+1-201-555-0123;phone-context=example.com").unwrap();
        assert_eq!(u.kind(), Scheme::Tel);
        assert_eq!(u.user(), Some(&b"+1-201-555-0123"[..]));
        assert_eq!(u.host(), None);
        assert_eq!(u.param("phone-context"), Some(Some(&b"example.com"[..])));
        let u = Uri::parse(b"soap.beep://192.0.2.103:3002").unwrap();
        assert_eq!(u.kind(), Scheme::Other);
        assert_eq!(u.opaque(), b"//192.0.2.103:3002");
        assert!(Uri::parse(b"isbn:2983792873").is_ok());
    }

    #[test]
    fn rejects() {
        for bad in [
            &b""[..],
            b"sip:",
            b"sip:@host",
            b"sip:user@",
            b"sip:host:99999",
            b"sip:host:",
            b"sip:host;",
            b"sip:host;a=",
            b"sip:ho st",
            b"<sip:host>",
            b" sip:host",
            b"sip:[::1",
            b"sip:[zz]",
            b"sip:host?x",
            b"sip:us%2er@host%",
            b"1sip:host",
            b"http:",
            b"http:a b",
            b"sip:a@b@c",
            b"sip:host\0",
        ] {
            assert!(
                Uri::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            Uri::parse(b"sip:ho st").unwrap_err(),
            ParseError::Syntax {
                offset: 6,
                what: "unexpected character in URI"
            }
        );
    }
}
