//! `name-addr / addr-spec` with header parameters (From, To, Contact, Route...).

use crate::chars::{is, is_lws, scan_quoted, skip_lws, TOKEN};
use crate::error::{syntax, ParseError};
use crate::params::{scan_header_params, Params};
use crate::uri::Uri;

/// One `[display-name] <uri> *(;param)` or `uri *(;param)` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    raw: &'a [u8],
    display: Option<&'a [u8]>,
    uri: Uri<'a>,
    angle: bool,
    params: Option<&'a [u8]>,
    /// Found while checking the parameters, so `tag()` needs no second scan.
    tag: Option<&'a [u8]>,
}

impl<'a> NameAddr<'a> {
    /// Parses one value (no top-level commas; split lists first). Rejects what RFC 3261
    /// forbids: unbalanced quotes, non-token display names that are not quoted, blanks
    /// inside `<>`, and an addr-spec holding `?` (§20.10: such URIs need `<>`).
    pub fn parse(input: &'a [u8]) -> Result<NameAddr<'a>, ParseError> {
        let v = scan(input, |u, at| Uri::parse(u).map_err(|e| shift(e, at)))?;
        Ok(NameAddr {
            raw: v.raw,
            display: v.display,
            uri: v.uri,
            angle: v.angle,
            params: v.params,
            tag: v.tag,
        })
    }

    /// The `tag` parameter of one value, checked as [`NameAddr::parse`] checks it except
    /// for the URI, of which only the `scheme:` start is: what a proxy needs of the
    /// From and To of a response it relays (the URIs are the UAs' business, and parsing
    /// them was the larger part of reading a response).
    pub fn tag_of(input: &'a [u8]) -> Result<Option<&'a [u8]>, ParseError> {
        Ok(scan(input, check_scheme)?.tag)
    }

    /// The value as parsed (trailing blanks trimmed).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The display name without surrounding quotes (escapes are left as written).
    pub fn display_name(&self) -> Option<&'a [u8]> {
        self.display.map(|d| {
            if d.len() >= 2 && d[0] == b'"' {
                &d[1..d.len() - 1]
            } else {
                d
            }
        })
    }

    /// The display name as written, quotes included.
    pub fn display_raw(&self) -> Option<&'a [u8]> {
        self.display
    }

    /// The URI.
    pub fn uri(&self) -> &Uri<'a> {
        &self.uri
    }

    /// The URI text.
    pub fn uri_bytes(&self) -> &'a [u8] {
        self.uri.as_bytes()
    }

    /// True when the URI was written inside `<>`.
    pub fn has_angle_brackets(&self) -> bool {
        self.angle
    }

    /// Header parameters (after the URI).
    pub fn params(&self) -> Params<'a> {
        Params::new(self.params.unwrap_or_default())
    }

    /// Raw parameter text after the first `;`, if any.
    pub fn params_raw(&self) -> Option<&'a [u8]> {
        self.params
    }

    /// Parameter lookup, case-insensitive.
    pub fn param(&self, name: &str) -> Option<Option<&'a [u8]>> {
        self.params().get(name)
    }

    /// The `tag` parameter value.
    pub fn tag(&self) -> Option<&'a [u8]> {
        self.tag
    }
}

/// Checks only that `uri` starts with a scheme and its colon (RFC 3261 §25.1).
fn check_scheme(uri: &[u8], at: usize) -> Result<(), ParseError> {
    let scheme_char = |c: &u8| c.is_ascii_alphanumeric() || b"+-.".contains(c);
    match memchr::memchr(b':', uri) {
        Some(colon) if uri[0].is_ascii_alphabetic() && uri[..colon].iter().all(scheme_char) => {
            Ok(())
        }
        _ => Err(syntax(at, "URI without a scheme")),
    }
}

/// The parts of one value, with the URI as `check_uri` made it.
struct Scanned<'a, U> {
    raw: &'a [u8],
    display: Option<&'a [u8]>,
    uri: U,
    angle: bool,
    params: Option<&'a [u8]>,
    tag: Option<&'a [u8]>,
}

/// The structure [`NameAddr::parse`] checks, with `check_uri` checking (and making) the URI
/// from its text and offset.
fn scan<'a, U>(
    input: &'a [u8],
    mut check_uri: impl FnMut(&'a [u8], usize) -> Result<U, ParseError>,
) -> Result<Scanned<'a, U>, ParseError> {
    let mut end = input.len();
    while end > 0 && is_lws(input[end - 1]) {
        end -= 1;
    }
    let s = &input[..end];
    let mut i = skip_lws(s, 0);
    if i == s.len() {
        return Err(syntax(i, "empty value"));
    }
    let mut display = None;
    let angle;
    if s[i] == b'"' {
        let q = scan_quoted(s, i).map_err(|(o, w)| syntax(o, w))?;
        display = Some(&s[i..q]);
        i = skip_lws(s, q);
        if s.get(i) != Some(&b'<') {
            return Err(syntax(i, "expected '<' after display name"));
        }
        angle = true;
    } else {
        // Either `token *(LWS token) <` (a display name) or an addr-spec.
        let mut k = i;
        let mut last_tok_end = i;
        loop {
            let ts = k;
            while k < s.len() && is(s[k], TOKEN) {
                k += 1;
            }
            if k > ts {
                last_tok_end = k;
            }
            let after = skip_lws(s, k);
            match s.get(after) {
                Some(b'<') => {
                    if last_tok_end > i {
                        display = Some(&s[i..last_tok_end]);
                    }
                    i = after;
                    angle = true;
                    break;
                }
                Some(&c) if after > k && is(c, TOKEN) => k = after,
                _ => {
                    if k < s.len() && memchr::memchr(b'<', &s[k..]).is_some() {
                        return Err(syntax(k, "invalid character in display name"));
                    }
                    angle = false;
                    break;
                }
            }
        }
    }
    let uri;
    if angle {
        let us = i + 1;
        let close = memchr::memchr(b'>', &s[us..]).ok_or_else(|| syntax(i, "missing '>'"))?;
        let u = &s[us..us + close];
        if u.first().is_some_and(|&c| is_lws(c)) || u.last().is_some_and(|&c| is_lws(c)) {
            return Err(syntax(us, "blank inside <>"));
        }
        uri = check_uri(u, us)?;
        i = us + close + 1;
    } else {
        let us = i;
        while i < s.len() && s[i] != b';' && !is_lws(s[i]) {
            i += 1;
        }
        let u = &s[us..i];
        uri = check_uri(u, us)?;
        if let Some(q) = memchr::memchr(b'?', u) {
            return Err(syntax(us + q, "URI with headers must be enclosed in <>"));
        }
    }
    i = skip_lws(s, i);
    let mut tag: Option<Option<&[u8]>> = None;
    let params = match s.get(i) {
        None => None,
        Some(b';') => {
            let mut find_tag = |name: &'a [u8], value: Option<&'a [u8]>| {
                if tag.is_none() && name.eq_ignore_ascii_case(b"tag") {
                    tag = Some(value);
                }
                Ok(())
            };
            scan_header_params(s, i + 1, false, &mut find_tag).map_err(|(o, w)| syntax(o, w))?;
            Some(&s[i + 1..])
        }
        Some(_) => return Err(syntax(i, "unexpected character after URI")),
    };
    Ok(Scanned {
        raw: s,
        display,
        uri,
        angle,
        params,
        tag: tag.flatten(),
    })
}

pub(crate) fn shift(e: ParseError, by: usize) -> ParseError {
    match e {
        ParseError::Syntax { offset, what } => syntax(offset + by, what),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn na(s: &str) -> NameAddr<'_> {
        NameAddr::parse(s.as_bytes()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn forms() {
        let a = na("\"A \\\"B\\\"\" <sip:a@b.c>;tag=x1");
        assert_eq!(a.display_name(), Some(&b"A \\\"B\\\""[..]));
        assert_eq!(a.uri().host(), Some(&b"b.c"[..]));
        assert_eq!(a.tag(), Some(&b"x1"[..]));
        let a = na("caller<sip:caller@example.com>;tag=323");
        assert_eq!(a.display_name(), Some(&b"caller"[..]));
        let a = na("token1~` token2'+_ <sip:m@example.com>");
        assert_eq!(a.display_name(), Some(&b"token1~` token2'+_"[..]));
        let a = na("sip:u@example.com ;   tag    = 1918181833n");
        assert_eq!(a.tag(), Some(&b"1918181833n"[..]));
        assert!(!a.has_angle_brackets());
        let a = na("<sip:u@h;lr>;expires=60");
        assert_eq!(a.display_name(), None);
        assert_eq!(a.uri().param("lr"), Some(None));
        assert_eq!(a.param("expires"), Some(Some(&b"60"[..])));
        let a = na("sip:+1972@gw1.example.net;unknownparam");
        assert_eq!(a.param("unknownparam"), Some(None));
        assert_eq!(a.uri_bytes(), b"sip:+1972@gw1.example.net");
        assert!(na("isbn:2983792873").uri().host().is_none());
        for v in [
            "<sip:a@b>;tag;tag=x",
            "<sip:a@b>;TAG=y;tag=x",
            "<sip:a@b> ; x=\"tag=1\"",
        ] {
            let a = na(v);
            assert_eq!(a.tag(), a.params().value("tag"), "{v}");
        }
        assert!(na("<sip:u@h?Route=%3Csip:x%3E>")
            .uri()
            .headers_raw()
            .is_some());
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "   ",
            "\"Mr. J. User <sip:j.user@example.com>",
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "sip:user@example.com?Route=%3Csip:sip.example.com%3E",
            "<sip:a@b",
            "<sip:a@b>x",
            "<sip:a@b>;;",
            "\"x\" sip:a@b",
            "*",
        ] {
            assert!(NameAddr::parse(bad.as_bytes()).is_err(), "{bad}");
            assert!(NameAddr::tag_of(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn tag_of_reads_the_tag_parse_reads_and_skips_only_the_uri_check() {
        for v in [
            "\"A \\\"B\\\"\" <sip:a@b.c>;tag=x1",
            "caller<sip:caller@example.com>;tag=323",
            "sip:u@example.com ;   tag    = 1918181833n",
            "<sip:u@h;tag=in-the-uri>;expires=60",
            "<sip:a@b>;tag;tag=x",
            "<sip:a@b>;TAG=y;tag=x",
            "<sip:a@b> ; x=\"tag=1\"",
            "\"a;tag=no <x>\" <tel:+1-555>;tag=yes",
        ] {
            assert_eq!(NameAddr::tag_of(v.as_bytes()).unwrap(), na(v).tag(), "{v}");
        }
        // A URI fault alone: only parse() sees it.
        for uri_fault in ["<sip:[::1>;tag=1", "<sip:a@b:99999>;tag=1"] {
            assert!(
                NameAddr::parse(uri_fault.as_bytes()).is_err(),
                "{uri_fault}"
            );
            assert_eq!(
                NameAddr::tag_of(uri_fault.as_bytes()).unwrap(),
                Some(&b"1"[..])
            );
        }
        for no_scheme in ["<user@host>;tag=1", "<:x>;tag=1", "<1sip:a@b>;tag=1"] {
            assert!(
                NameAddr::tag_of(no_scheme.as_bytes()).is_err(),
                "{no_scheme}"
            );
        }
    }
}
