//! CSeq and the scalar headers a proxy reads on every message.

use crate::chars::{is, is_lws, parse_digits, skip_lws, trim_lws, TOKEN, WORD};
use crate::error::{syntax, ParseError};
use crate::method::Method;

/// `CSeq: number method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number (RFC 3261 §8.1.1.5: a 32-bit unsigned integer).
    pub seq: u32,
    method: &'a [u8],
}

impl<'a> CSeq<'a> {
    /// Parses `1*DIGIT LWS method`; a number past `u32::MAX` is an error.
    pub fn parse(input: &'a [u8]) -> Result<CSeq<'a>, ParseError> {
        let s = trim_lws(input);
        let lead = input.len() - input.iter().skip_while(|c| is_lws(**c)).count();
        let mut i = 0;
        while i < s.len() && s[i].is_ascii_digit() {
            i += 1;
        }
        let seq = parse_digits(&s[..i], u64::from(u32::MAX))
            .ok_or_else(|| syntax(lead, "CSeq number missing or too large"))?;
        let m = skip_lws(s, i);
        if m == i {
            return Err(syntax(lead + i, "expected blank after CSeq number"));
        }
        let method = &s[m..];
        if method.is_empty() || !method.iter().all(|&c| is(c, TOKEN)) {
            return Err(syntax(lead + m, "invalid CSeq method"));
        }
        Ok(CSeq {
            seq: seq as u32,
            method,
        })
    }

    pub(crate) fn new(seq: u32, method: &'a [u8]) -> CSeq<'a> {
        CSeq { seq, method }
    }

    /// The method token.
    pub fn method_bytes(&self) -> &'a [u8] {
        self.method
    }

    /// The method, classified (unknown ones are copied).
    pub fn method(&self) -> Method {
        Method::from_bytes(self.method)
    }
}

/// Max-Forwards: `1*DIGIT`, 0..=255 (RFC 3261 §20.22).
pub(crate) fn parse_max_forwards(v: &[u8]) -> Result<u8, ParseError> {
    parse_digits(trim_lws(v), 255)
        .map(|n| n as u8)
        .ok_or_else(|| syntax(0, "Max-Forwards must be a number 0..=255"))
}

/// Content-Length: `1*DIGIT`; values past 4 GiB cannot describe a SIP body.
pub(crate) fn parse_content_length(v: &[u8]) -> Result<usize, ParseError> {
    parse_digits(trim_lws(v), u64::from(u32::MAX))
        .map(|n| n as usize)
        .ok_or_else(|| syntax(0, "Content-Length must be a non-negative number"))
}

/// Call-ID: `word ["@" word]`.
pub(crate) fn check_call_id(v: &[u8]) -> Result<(), ParseError> {
    let v = trim_lws(v);
    let mut at = None;
    for (i, &c) in v.iter().enumerate() {
        if c == b'@' && at.is_none() {
            at = Some(i);
        } else if !is(c, WORD) {
            return Err(syntax(i, "invalid character in Call-ID"));
        }
    }
    match at {
        _ if v.is_empty() => Err(syntax(0, "empty Call-ID")),
        Some(a) if a == 0 || a + 1 == v.len() => Err(syntax(a, "empty word in Call-ID")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cseq() {
        let c = CSeq::parse(b"0009\r\n  INVITE").unwrap();
        assert_eq!(c.seq, 9);
        assert_eq!(c.method(), Method::Invite);
        assert_eq!(CSeq::parse(b"4294967295 ACK").unwrap().seq, u32::MAX);
        for bad in [
            &b""[..],
            b"1",
            b"INVITE",
            b"1INVITE",
            b"-1 INVITE",
            b"4294967296 INVITE",
            b"36893488147419103232 REGISTER",
            b"1 INV ITE",
            b"1 INVITE,",
        ] {
            assert!(
                CSeq::parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn scalars() {
        assert_eq!(parse_max_forwards(b"0068").unwrap(), 68);
        assert!(parse_max_forwards(b"256").is_err());
        assert!(parse_max_forwards(b"").is_err());
        assert_eq!(parse_content_length(b" 150 ").unwrap(), 150);
        assert!(parse_content_length(b"-999").is_err());
        assert!(parse_content_length(b"1e3").is_err());
        assert!(parse_content_length(b"99999999999999999999").is_err());
        assert!(check_call_id(b"intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{").is_ok());
        assert!(check_call_id(b"a@b@c").is_err());
        assert!(check_call_id(b"a b").is_err());
        assert!(check_call_id(b"").is_err());
    }
}
