//! Byte classes from the RFC 3261 ABNF, as one lookup table.
//!
//! A table keeps every class test to a load and a mask on the hot path, where a chain of
//! `matches!` would branch per character.

pub(crate) const TOKEN: u8 = 1;
/// `unreserved / user-unreserved`, plus `#` (see `USER` note in the URI docs).
pub(crate) const USER: u8 = 2;
pub(crate) const PASSWORD: u8 = 4;
/// `paramchar` without `escaped`.
pub(crate) const PARAM: u8 = 8;
/// `hnv-unreserved / unreserved`.
pub(crate) const HNV: u8 = 16;
/// `uric` without `escaped`: what an absoluteURI of an unknown scheme may hold.
pub(crate) const URIC: u8 = 32;
/// Call-ID `word`.
pub(crate) const WORD: u8 = 64;
/// Host name characters (`_` accepted, as deployed DNS names carry it).
pub(crate) const HOST: u8 = 128;

static TABLE: [u8; 256] = build();

const fn build() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let mut f = 0;
        let alnum = c.is_ascii_alphanumeric();
        let mark = matches!(
            c,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        );
        let unreserved = alnum || mark;
        if alnum
            || matches!(
                c,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
        {
            f |= TOKEN;
        }
        if unreserved
            || matches!(
                c,
                b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/' | b'#'
            )
        {
            f |= USER;
        }
        if unreserved || matches!(c, b'&' | b'=' | b'+' | b'$' | b',') {
            f |= PASSWORD;
        }
        if unreserved || matches!(c, b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$') {
            f |= PARAM;
        }
        if unreserved || matches!(c, b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$') {
            f |= HNV;
        }
        if unreserved
            || matches!(
                c,
                b';' | b'/' | b'?' | b':' | b'@' | b'&' | b'=' | b'+' | b'$' | b','
            )
        {
            f |= URIC;
        }
        if alnum
            || matches!(
                c,
                b'-' | b'.'
                    | b'!'
                    | b'%'
                    | b'*'
                    | b'_'
                    | b'+'
                    | b'`'
                    | b'\''
                    | b'~'
                    | b'('
                    | b')'
                    | b'<'
                    | b'>'
                    | b':'
                    | b'\\'
                    | b'"'
                    | b'/'
                    | b'['
                    | b']'
                    | b'?'
                    | b'{'
                    | b'}'
            )
        {
            f |= WORD;
        }
        if alnum || matches!(c, b'-' | b'.' | b'_') {
            f |= HOST;
        }
        t[i] = f;
        i += 1;
    }
    t
}

#[inline(always)]
pub(crate) fn is(c: u8, class: u8) -> bool {
    TABLE[c as usize] & class != 0
}

#[inline(always)]
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&c| is(c, TOKEN))
}

/// Whitespace inside a header value. CR and LF only occur there as part of a fold (the
/// indexer guarantees it), so treating them as blanks is how typed parsers honour LWS.
#[inline(always)]
pub(crate) fn is_lws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

#[inline]
pub(crate) fn skip_lws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_lws(s[i]) {
        i += 1;
    }
    i
}

#[inline]
pub(crate) fn trim_lws(s: &[u8]) -> &[u8] {
    let mut a = 0;
    let mut b = s.len();
    while a < b && is_lws(s[a]) {
        a += 1;
    }
    while b > a && is_lws(s[b - 1]) {
        b -= 1;
    }
    &s[a..b]
}

/// Checks a run of characters of `class` where `%HH` escapes are also allowed.
/// Returns the offset of the first bad byte.
pub(crate) fn check_escaped(s: &[u8], class: u8) -> Result<(), usize> {
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        if c == b'%' {
            match (s.get(i + 1), s.get(i + 2)) {
                (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i += 3,
                _ => return Err(i),
            }
        } else if is(c, class) {
            i += 1;
        } else {
            return Err(i);
        }
    }
    Ok(())
}

/// Parses `1*DIGIT` into a u64, refusing overflow past `max`.
pub(crate) fn parse_digits(s: &[u8], max: u64) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        if n > max {
            return None;
        }
    }
    Some(n)
}

/// Scans a quoted-string starting at `s[i] == '"'`. Returns the index just past the
/// closing quote, or `Err((offset, what))`.
pub(crate) fn scan_quoted(s: &[u8], i: usize) -> Result<usize, (usize, &'static str)> {
    debug_assert_eq!(s.get(i), Some(&b'"'));
    let mut j = i + 1;
    while j < s.len() {
        match s[j] {
            b'"' => return Ok(j + 1),
            b'\\' => match s.get(j + 1) {
                Some(&c) if c != b'\r' && c != b'\n' && c < 0x80 => j += 2,
                _ => return Err((j, "bad quoted-pair")),
            },
            c if is_lws(c) || c >= 0x20 && c != 0x7f => j += 1,
            _ => return Err((j, "control character in quoted string")),
        }
    }
    Err((i, "unterminated quoted string"))
}

#[inline]
pub(crate) fn eq_ic(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Offset of `inner` inside `outer`; both must come from the same allocation.
#[inline]
pub(crate) fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    (inner.as_ptr() as usize).wrapping_sub(outer.as_ptr() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert!(is_token(b"INVITE"));
        assert!(is_token(b"!interesting-Method0123456789_*+`.%indeed'~"));
        assert!(!is_token(b"a b"));
        assert!(!is_token(b""));
        assert!(check_escaped(b"a%20b", USER).is_ok());
        assert_eq!(check_escaped(b"a%2", USER), Err(1));
        assert_eq!(check_escaped(b"a b", USER), Err(1));
        assert_eq!(parse_digits(b"0009", 100), Some(9));
        assert_eq!(parse_digits(b"4294967296", u32::MAX as u64), None);
        assert_eq!(parse_digits(b"99999999999999999999999999", u64::MAX), None);
        assert_eq!(parse_digits(b"-1", 10), None);
    }

    #[test]
    fn quoted() {
        assert_eq!(scan_quoted(br#""a\"b" x"#, 0), Ok(6));
        assert!(scan_quoted(br#""abc"#, 0).is_err());
        assert!(scan_quoted(b"\"a\x01\"", 0).is_err());
        assert_eq!(scan_quoted(b"\"\\\x00\"", 0), Ok(4));
    }
}
