//! Via values.

use crate::chars::{is, is_lws, parse_digits, skip_lws, HOST, TOKEN};
use crate::error::{syntax, ParseError};
use crate::message::Span;
use crate::params::{scan_header_params, Params};

/// A parsed Via recorded as positions in the message buffer (the message's parse cache).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ViaSpans {
    raw: Span,
    protocol: Span,
    version: Span,
    transport: Span,
    host: Span,
    port: Option<u16>,
    params: Option<Span>,
    pub(crate) branch: Option<Span>,
}

impl ViaSpans {
    /// The same parts `by` bytes further on: spans taken in a value, moved to where the
    /// value was written in the message.
    pub(crate) fn shifted(self, by: usize) -> ViaSpans {
        ViaSpans {
            raw: self.raw.shifted(by),
            protocol: self.protocol.shifted(by),
            version: self.version.shifted(by),
            transport: self.transport.shifted(by),
            host: self.host.shifted(by),
            port: self.port,
            params: self.params.map(|s| s.shifted(by)),
            branch: self.branch.map(|s| s.shifted(by)),
        }
    }
}

/// One Via value: `SIP / 2.0 / UDP host[:port] *(;param)`. A Via header line may hold
/// several; see [`crate::SipMessage::vias`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    raw: &'a [u8],
    protocol: &'a [u8],
    version: &'a [u8],
    transport: &'a [u8],
    host: &'a [u8],
    port: Option<u16>,
    params: Option<&'a [u8]>,
    /// Found while checking the parameters, so `branch()` needs no second scan.
    branch: Option<&'a [u8]>,
}

fn token_at(s: &[u8], i: usize) -> usize {
    let mut k = i;
    while k < s.len() && is(s[k], TOKEN) {
        k += 1;
    }
    k
}

impl<'a> Via<'a> {
    /// Parses one Via value. Known parameters are checked too: `branch`, `received` and
    /// `maddr` need a value, `rport` a port number when it has one, `ttl` 0..=255.
    pub fn parse(input: &'a [u8]) -> Result<Via<'a>, ParseError> {
        match Via::parse_at(input, 0)? {
            (v, None) => Ok(v),
            (_, Some(next)) => Err(syntax(next - 1, "unexpected ',' in a single Via value")),
        }
    }

    /// Parses the Via value starting at `start` of a (possibly comma-separated) header
    /// value; returns it and the offset after the `,` that ends it, if one does. Parsing
    /// the list element by element this way avoids a separate splitting pass.
    pub(crate) fn parse_at(
        s: &'a [u8],
        start: usize,
    ) -> Result<(Via<'a>, Option<usize>), ParseError> {
        let mut i = skip_lws(s, start);
        let vstart = i;
        let mut parts: [&[u8]; 3] = [&[]; 3];
        for (n, part) in parts.iter_mut().enumerate() {
            if n > 0 {
                i = skip_lws(s, i);
                if s.get(i) != Some(&b'/') {
                    return Err(syntax(i, "expected '/' in sent-protocol"));
                }
                i = skip_lws(s, i + 1);
            }
            let e = token_at(s, i);
            if e == i {
                return Err(syntax(i, "invalid sent-protocol"));
            }
            *part = &s[i..e];
            i = e;
        }
        let ws = i;
        i = skip_lws(s, i);
        if i == ws {
            return Err(syntax(i, "expected blank before sent-by"));
        }
        let hs = i;
        if s.get(i) == Some(&b'[') {
            let close = memchr::memchr(b']', &s[i..])
                .ok_or_else(|| syntax(i, "unterminated IPv6 reference"))?;
            let inner = &s[i + 1..i + close];
            if inner.len() < 2
                || !inner
                    .iter()
                    .all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
            {
                return Err(syntax(i, "invalid IPv6 reference"));
            }
            i += close + 1;
        } else {
            while i < s.len() && is(s[i], HOST) {
                i += 1;
            }
            if i == hs {
                return Err(syntax(i, "missing sent-by host"));
            }
        }
        let host = &s[hs..i];
        let mut vend = i;
        i = skip_lws(s, i);
        let mut port = None;
        if s.get(i) == Some(&b':') {
            i = skip_lws(s, i + 1);
            let ps = i;
            while i < s.len() && s[i].is_ascii_digit() {
                i += 1;
            }
            port = Some(
                parse_digits(&s[ps..i], u64::from(u16::MAX))
                    .ok_or_else(|| syntax(ps, "invalid sent-by port"))? as u16,
            );
            vend = i;
            i = skip_lws(s, i);
        }
        let mut params = None;
        let mut branch: Option<Option<&[u8]>> = None;
        if s.get(i) == Some(&b';') {
            let ps = i + 1;
            let mut each = |name: &'a [u8], value: Option<&'a [u8]>| {
                if branch.is_none() && name.eq_ignore_ascii_case(b"branch") {
                    branch = Some(value);
                }
                check_known(name, value)
            };
            let e = scan_header_params(s, ps, true, &mut each).map_err(|(o, w)| syntax(o, w))?;
            let mut pe = e;
            while pe > ps && is_lws(s[pe - 1]) {
                pe -= 1;
            }
            params = Some(&s[ps..pe]);
            vend = pe;
            i = e;
        }
        let next = match s.get(i) {
            None => None,
            Some(b',') => Some(i + 1),
            Some(_) => return Err(syntax(i, "unexpected character in Via")),
        };
        Ok((
            Via {
                raw: &s[vstart..vend],
                protocol: parts[0],
                version: parts[1],
                transport: parts[2],
                host,
                port,
                params,
                branch: branch.flatten(),
            },
            next,
        ))
    }

    /// Where the parts of this Via lie within `buf` (which it must borrow from), so the
    /// message can hand out the top Via again without parsing it a second time.
    pub(crate) fn spans_in(&self, buf: &[u8]) -> ViaSpans {
        let at = |part: &[u8]| crate::message::span_of(buf, part);
        ViaSpans {
            raw: at(self.raw),
            protocol: at(self.protocol),
            version: at(self.version),
            transport: at(self.transport),
            host: at(self.host),
            port: self.port,
            params: self.params.map(at),
            branch: self.branch.map(at),
        }
    }

    /// The Via whose parts `spans` records, each read with `get`.
    pub(crate) fn from_spans(get: impl Fn(Span) -> &'a [u8], spans: &ViaSpans) -> Via<'a> {
        Via {
            raw: get(spans.raw),
            protocol: get(spans.protocol),
            version: get(spans.version),
            transport: get(spans.transport),
            host: get(spans.host),
            port: spans.port,
            params: spans.params.map(&get),
            branch: spans.branch.map(&get),
        }
    }

    /// The value as parsed.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// `SIP` in `SIP/2.0/UDP`.
    pub fn protocol(&self) -> &'a [u8] {
        self.protocol
    }

    /// `2.0` in `SIP/2.0/UDP`.
    pub fn version(&self) -> &'a [u8] {
        self.version
    }

    /// The transport token as written (`UDP`, `tcp`, `WSS`, `SCTP`, unknown ones too).
    pub fn transport(&self) -> &'a [u8] {
        self.transport
    }

    /// The sent-by host; an IPv6 reference keeps its brackets.
    pub fn host(&self) -> &'a [u8] {
        self.host
    }

    /// The sent-by port, if given.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// All parameters.
    pub fn params(&self) -> Params<'a> {
        Params::new(self.params.unwrap_or_default())
    }

    /// Raw parameter text after the first `;`.
    pub fn params_raw(&self) -> Option<&'a [u8]> {
        self.params
    }

    /// Parameter lookup, case-insensitive.
    pub fn param(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.params().get(name)
    }

    /// The `branch` value.
    pub fn branch(&self) -> Option<&'a [u8]> {
        self.branch
    }

    /// The `received` value.
    pub fn received(&self) -> Option<&'a [u8]> {
        self.params().value("received")
    }

    /// The `maddr` value.
    pub fn maddr(&self) -> Option<&'a [u8]> {
        self.params().value("maddr")
    }

    /// `rport` (RFC 3581): `None` when absent, `Some(None)` for the bare flag a client
    /// sends, `Some(Some(port))` once filled in.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params().get("rport").map(|v| {
            v.and_then(|v| parse_digits(v, u64::from(u16::MAX)))
                .map(|p| p as u16)
        })
    }

    /// The `ttl` value.
    pub fn ttl(&self) -> Option<u8> {
        self.params()
            .value("ttl")
            .and_then(|v| parse_digits(v, 255))
            .map(|t| t as u8)
    }

    /// True when the branch carries the RFC 3261 magic cookie `z9hG4bK`.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with(b"z9hG4bK"))
    }
}

fn check_known(name: &[u8], value: Option<&[u8]>) -> Result<(), &'static str> {
    // Only names that start like a known parameter need a closer look.
    match name.first().map(u8::to_ascii_lowercase) {
        Some(b'b' | b'r' | b'm' | b't') => {}
        _ => return Ok(()),
    }
    let is = |n: &[u8]| n.eq_ignore_ascii_case(name);
    if is(b"branch") || is(b"received") || is(b"maddr") {
        if value.is_none() {
            return Err("Via parameter needs a value");
        }
    } else if is(b"rport") {
        if let Some(v) = value {
            if parse_digits(v, u64::from(u16::MAX)).is_none() {
                return Err("invalid rport");
            }
        }
    } else if is(b"ttl") && value.and_then(|v| parse_digits(v, 255)).is_none() {
        return Err("invalid ttl");
    }
    Ok(())
}

/// Every Via value of one header value, in order.
pub(crate) fn via_list(v: &[u8]) -> impl Iterator<Item = Result<Via<'_>, ParseError>> {
    let mut pos = Some(0);
    std::iter::from_fn(move || {
        let p = pos?;
        match Via::parse_at(v, p) {
            Ok((via, next)) => {
                pos = next;
                Some(Ok(via))
            }
            Err(e) => {
                pos = None;
                Some(Err(e))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        let v = Via::parse(b"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776;rport;received=1.2.3.4")
            .unwrap();
        assert_eq!(v.protocol(), b"SIP");
        assert_eq!(v.version(), b"2.0");
        assert_eq!(v.transport(), b"UDP");
        assert_eq!(v.host(), b"10.0.0.1");
        assert_eq!(v.port(), Some(5060));
        assert_eq!(v.branch(), Some(&b"z9hG4bK776"[..]));
        assert_eq!(v.rport(), Some(None));
        assert_eq!(v.received(), Some(&b"1.2.3.4"[..]));
        assert!(v.has_rfc3261_branch());
        let v = Via::parse(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw").unwrap();
        assert_eq!(v.transport(), b"UDP");
        assert_eq!(v.host(), b"192.0.2.2");
        let v =
            Via::parse(b"SIP/2.0/TCP [2001:db8::9]:5070 ; rport=5071 ; ttl=16 ; maddr=224.2.0.1")
                .unwrap();
        assert_eq!(v.host(), b"[2001:db8::9]");
        assert_eq!(v.rport(), Some(Some(5071)));
        assert_eq!(v.ttl(), Some(16));
        assert_eq!(v.maddr(), Some(&b"224.2.0.1"[..]));
        let v = Via::parse(b"SIP/2.0/UDP 192.0.2.2 ; received=2001:db8::1").unwrap();
        assert_eq!(v.received(), Some(&b"2001:db8::1"[..]));
    }

    #[test]
    fn lists() {
        let v: Vec<_> =
            via_list(b"SIP/2.0/UDP a;branch=1 , SIP/2.0/TCP b:5060 ,SIP/2.0/UDP c;x=\"q,q\"")
                .map(|v| v.unwrap())
                .collect();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].as_bytes(), b"SIP/2.0/UDP a;branch=1");
        assert_eq!(v[0].params_raw(), Some(&b"branch=1"[..]));
        assert_eq!(v[1].port(), Some(5060));
        assert_eq!(v[2].param("x"), Some(Some(&b"\"q,q\""[..])));
        assert!(via_list(b"SIP/2.0/UDP a,").last().unwrap().is_err());
        assert!(via_list(b"SIP/2.0/UDP a,,SIP/2.0/UDP b").any(|v| v.is_err()));
    }

    #[test]
    fn rejects() {
        for bad in [
            &b""[..],
            b"SIP/2.0/UDP",
            b"SIP/2.0 host",
            b"SIP/2.0/UDPhost",
            b"SIP/2.0/UDP 192.0.2.15;;",
            b"SIP/2.0/UDP host:",
            b"SIP/2.0/UDP host:70000",
            b"SIP/2.0/UDP host;branch",
            b"SIP/2.0/UDP host;rport=x",
            b"SIP/2.0/UDP host;ttl=256",
            b"SIP/2.0/UDP host x",
            b"SIP/2.0/UDP [::1",
            b"SIP/2.0/UDP a, SIP/2.0/UDP b",
        ] {
            assert!(Via::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
