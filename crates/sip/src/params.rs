//! `;name[=value]` parameter lists, shared by URIs and header values.

use crate::chars::{check_escaped, eq_ic, is, scan_quoted, skip_lws, trim_lws, PARAM, TOKEN};

/// A parameter list as it appears on the wire, without the leading `;`. Iteration and
/// lookup are done on demand; nothing is decoded or copied. In header values, blanks
/// around `;` and `=` are skipped; quoted values are returned with their quotes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Params<'a> {
    raw: &'a [u8],
}

impl<'a> Params<'a> {
    pub(crate) fn new(raw: &'a [u8]) -> Params<'a> {
        Params { raw }
    }

    /// The raw text after the first `;`.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// True when there is no parameter.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// `(name, value)` pairs in order; `value` is `None` for a flag like `lr`.
    pub fn iter(&self) -> ParamIter<'a> {
        ParamIter { rest: self.raw }
    }

    /// Looks a parameter up by name, case-insensitively: `Some(None)` for a flag,
    /// `Some(Some(v))` for `name=v`, `None` when absent.
    pub fn get(&self, name: &str) -> Option<Option<&'a [u8]>> {
        let name = name.as_bytes();
        self.iter().find(|(n, _)| eq_ic(n, name)).map(|(_, v)| v)
    }

    /// The value of `name=value`; `None` when absent or a flag.
    pub fn value(&self, name: &str) -> Option<&'a [u8]> {
        self.get(name).flatten()
    }

    /// True when the parameter is present, with or without a value.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

impl<'a> IntoIterator for Params<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);
    type IntoIter = ParamIter<'a>;
    fn into_iter(self) -> ParamIter<'a> {
        self.iter()
    }
}

/// Iterator over [`Params`].
#[derive(Debug, Clone)]
pub struct ParamIter<'a> {
    rest: &'a [u8],
}

/// Splits at the next `;` that is not inside a quoted string.
fn split_semi(s: &[u8]) -> (&[u8], Option<&[u8]>) {
    let mut i = 0;
    let mut quoted = false;
    while i < s.len() {
        match s[i] {
            b'"' => quoted = !quoted,
            b'\\' if quoted => i += 1,
            b';' if !quoted => return (&s[..i], s.get(i + 1..)),
            _ => {}
        }
        i += 1;
    }
    (s, None)
}

impl<'a> Iterator for ParamIter<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            let (piece, rest) = split_semi(self.rest);
            self.rest = rest.unwrap_or_default();
            let piece = trim_lws(piece);
            if piece.is_empty() {
                continue;
            }
            return Some(match memchr::memchr(b'=', piece) {
                Some(e) => (trim_lws(&piece[..e]), Some(trim_lws(&piece[e + 1..]))),
                None => (piece, None),
            });
        }
        None
    }
}

/// Scans `generic-param *(SEMI generic-param)` (`token [EQUAL gen-value]`, LWS allowed
/// around `;` and `=`) in one pass, starting just after the first `;`. Each parameter is
/// handed to `each` for rules of known parameters. Stops at the end of `s`, or at a
/// top-level `,` when `stop_at_comma`; returns that offset.
pub(crate) fn scan_header_params<'s, F>(
    s: &'s [u8],
    mut i: usize,
    stop_at_comma: bool,
    each: &mut F,
) -> Result<usize, (usize, &'static str)>
where
    F: FnMut(&'s [u8], Option<&'s [u8]>) -> Result<(), &'static str>,
{
    loop {
        i = skip_lws(s, i);
        let ns = i;
        while i < s.len() && is(s[i], TOKEN) {
            i += 1;
        }
        if i == ns {
            let what = match s.get(i) {
                None | Some(b';') | Some(b',') => "empty parameter",
                Some(_) => "invalid parameter name",
            };
            return Err((ns, what));
        }
        let name = &s[ns..i];
        i = skip_lws(s, i);
        let mut value = None;
        if s.get(i) == Some(&b'=') {
            i = skip_lws(s, i + 1);
            let vs = i;
            if s.get(i) == Some(&b'"') {
                i = scan_quoted(s, i)?;
            } else {
                while i < s.len() && (is(s[i], TOKEN) || matches!(s[i], b':' | b'[' | b']')) {
                    i += 1;
                }
                if i == vs {
                    return Err((vs, "empty or invalid parameter value"));
                }
            }
            value = Some(&s[vs..i]);
            i = skip_lws(s, i);
        }
        each(name, value).map_err(|w| (ns, w))?;
        match s.get(i) {
            None => return Ok(i),
            Some(b';') => i += 1,
            Some(b',') if stop_at_comma => return Ok(i),
            Some(_) => return Err((i, "invalid character in parameter")),
        }
    }
}

/// A whole `generic-param` list (no trailing data). Offsets relative to `raw`.
#[cfg(test)]
pub(crate) fn check_header_params(raw: &[u8]) -> Result<(), (usize, &'static str)> {
    scan_header_params(raw, 0, false, &mut |_, _| Ok(())).map(|_| ())
}

/// `uri-parameters` (no blanks; `%HH` escapes allowed). Offsets relative to `raw`.
pub(crate) fn check_uri_params(raw: &[u8]) -> Result<(), (usize, &'static str)> {
    let mut off = 0;
    for piece in raw.split(|&c| c == b';') {
        if piece.is_empty() {
            return Err((off, "empty URI parameter"));
        }
        let (name, value) = match memchr::memchr(b'=', piece) {
            Some(e) => (&piece[..e], Some((e + 1, &piece[e + 1..]))),
            None => (piece, None),
        };
        if name.is_empty() {
            return Err((off, "empty URI parameter name"));
        }
        check_escaped(name, PARAM).map_err(|i| (off + i, "invalid character in URI parameter"))?;
        if let Some((vo, v)) = value {
            if v.is_empty() {
                return Err((off + vo, "empty URI parameter value"));
            }
            check_escaped(v, PARAM)
                .map_err(|i| (off + vo + i, "invalid character in URI parameter"))?;
        }
        off += piece.len() + 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterate_and_lookup() {
        let p = Params::new(b"  tag = 98asjd8 ;lr; q=0.33;x=\"a;b\"");
        let v: Vec<_> = p.iter().collect();
        assert_eq!(v.len(), 4);
        assert_eq!(p.get("TAG"), Some(Some(&b"98asjd8"[..])));
        assert_eq!(p.get("lr"), Some(None));
        assert_eq!(p.value("x"), Some(&b"\"a;b\""[..]));
        assert_eq!(p.get("nope"), None);
        assert!(Params::new(b"").is_empty());
        assert!(Params::new(b" ; ").is_empty());
    }

    #[test]
    fn header_param_grammar() {
        assert!(check_header_params(b"tag=1;lr;q = 0.3;received=[::1]").is_ok());
        assert!(check_header_params(b"x=\"quoted;semi\"").is_ok());
        assert_eq!(check_header_params(b";").unwrap_err().1, "empty parameter");
        assert_eq!(
            scan_header_params(b"a=1;b , x", 0, true, &mut |_, _| Ok(())),
            Ok(6)
        );
        assert!(check_header_params(b"a=").is_err());
        assert!(check_header_params(b"a b=1").is_err());
        assert!(check_header_params(b"x=\"open").is_err());
        assert!(check_header_params(b"a=b c").is_err());
    }

    #[test]
    fn uri_param_grammar() {
        assert!(check_uri_params(b"transport=tcp;lr;%6C%72;n%61me=v%61lue%25%34%31").is_ok());
        assert!(check_uri_params(b"lr;").is_err());
        assert!(check_uri_params(b"a=").is_err());
        assert!(check_uri_params(b"a b").is_err());
    }
}
