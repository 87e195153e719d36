//! Splitting comma-separated header values.

use crate::chars::trim_lws;

/// Iterator over the elements of a `#element` list, splitting at commas outside quoted
/// strings and `<>`. Elements are trimmed; empty ones are yielded so that callers can
/// reject them where the grammar forbids them.
#[derive(Debug, Clone)]
pub struct CommaList<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> CommaList<'a> {
    /// Splits `value`. An all-blank value yields nothing.
    pub fn new(value: &'a [u8]) -> CommaList<'a> {
        let v = trim_lws(value);
        CommaList {
            rest: if v.is_empty() { None } else { Some(v) },
        }
    }

    /// The unsplit remainder (after the elements already yielded).
    pub fn remainder(&self) -> Option<&'a [u8]> {
        self.rest
    }
}

impl<'a> Iterator for CommaList<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.rest?;
        let mut i = 0;
        let mut quoted = false;
        let mut angle = false;
        while i < s.len() {
            match s[i] {
                b'"' if !angle => quoted = !quoted,
                b'\\' if quoted => i += 1,
                b'<' if !quoted => angle = true,
                b'>' if !quoted => angle = false,
                b',' if !quoted && !angle => {
                    self.rest = Some(s.get(i + 1..).unwrap_or_default());
                    return Some(trim_lws(&s[..i]));
                }
                _ => {}
            }
            i += 1;
        }
        self.rest = None;
        Some(trim_lws(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split() {
        let v: Vec<_> = CommaList::new(b" <sip:a,b@x>;q=1 , \"x,y\" <sip:c@d> ,sip:e@f").collect();
        assert_eq!(
            v,
            [&b"<sip:a,b@x>;q=1"[..], b"\"x,y\" <sip:c@d>", b"sip:e@f"]
        );
        assert_eq!(CommaList::new(b"").count(), 0);
        assert_eq!(CommaList::new(b"a,,b").count(), 3);
        assert_eq!(CommaList::new(b"\"a\\\",b\"").count(), 1);
    }
}
