//! Format strings: literal text with PVs inside (`"$rm from $fu ($si:$sp)\n"`), parsed once
//! at load time.

use crate::context::MsgContext;
use crate::pv::{Binder, PvError, PvParseError, PvRef};
use bytes::Bytes;
use std::fmt;

#[derive(Clone, Debug)]
enum Part {
    Lit(Bytes),
    Pv(PvRef),
}

/// A parsed format string.
#[derive(Clone)]
pub struct Format {
    text: Box<str>,
    parts: Vec<Part>,
}

impl Format {
    /// A format with no PVs.
    pub fn literal(text: &str) -> Format {
        Format {
            text: text.into(),
            parts: vec![Part::Lit(Bytes::copy_from_slice(text.as_bytes()))],
        }
    }

    /// Parses `text`. A `$` that does not start a PV name (`"cost $ 5"`, a trailing `$`) is
    /// literal; a `$name` that is not a known PV is an error, because a typo in a log or
    /// header format otherwise goes unnoticed until the line is read in production.
    pub fn parse(text: &str, binder: &Binder<'_>) -> Result<Format, PvParseError> {
        let s = text.as_bytes();
        let mut parts = Vec::new();
        let mut lit_start = 0;
        let mut i = 0;
        while i < s.len() {
            if s[i] == b'$' {
                let next = s.get(i + 1).copied();
                let starts_pv =
                    matches!(next, Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b'(');
                if starts_pv {
                    if lit_start < i {
                        parts.push(Part::Lit(Bytes::copy_from_slice(&s[lit_start..i])));
                    }
                    let (pv, used) =
                        binder
                            .parse_pv_prefix(&text[i..])
                            .map_err(|e| PvParseError {
                                offset: i + e.offset,
                                message: e.message,
                            })?;
                    parts.push(Part::Pv(pv));
                    i += used;
                    lit_start = i;
                    continue;
                }
            }
            i += 1;
        }
        if lit_start < s.len() {
            parts.push(Part::Lit(Bytes::copy_from_slice(&s[lit_start..])));
        }
        Ok(Format {
            text: text.into(),
            parts,
        })
    }

    /// True when the format contains no PV: its value is known at load time.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// The text as written in the script.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The single PV this format consists of, if it is exactly one (`"$ru"`).
    pub fn as_single_pv(&self) -> Option<&PvRef> {
        match self.parts.as_slice() {
            [Part::Pv(p)] => Some(p),
            _ => None,
        }
    }

    /// Evaluates the format. A literal format costs a reference-count increment.
    pub fn eval(&self, ctx: &MsgContext) -> Result<Bytes, PvError> {
        match self.parts.as_slice() {
            [] => Ok(Bytes::new()),
            [Part::Lit(b)] => Ok(b.clone()),
            parts => {
                let mut out = Vec::with_capacity(64);
                for p in parts {
                    match p {
                        Part::Lit(b) => out.extend_from_slice(b),
                        Part::Pv(pv) => pv.get(ctx)?.write_to(&mut out),
                    }
                }
                Ok(Bytes::from(out))
            }
        }
    }
}

impl fmt::Debug for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Format({:?})", self.text)
    }
}
