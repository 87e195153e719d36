//! Sed-like substitution expressions (`/re/repl/flags`) and Kamailio-style regexes.
//!
//! As in Kamailio (`subst_parser`): the first character is the separator (escape it with
//! `\` inside the parts); flags are `g` (every match), `i` (ignore case) and `s` (`.`
//! matches a newline and `^`/`$` only match at the ends; without it `^`/`$` match at line
//! ends as POSIX `REG_NEWLINE` does, at CRLF too, and `.` matches neither CR nor LF, so
//! `(.*)$` takes a header value without its line end). In the replacement `\0`..`\9` are the match and its
//! groups, `\\`, `\n`, `\r`, `\t` the usual escapes, and pseudo-variables are expanded for
//! each call.

use bytes::Bytes;
use ferrosip_api::args::{cached_regex, raw_to_format, value_to_text, Fixable};
use ferrosip_api::pv::Binder;
use ferrosip_api::{
    ArgKind, ArgType, CallEnv, FixupEnv, FnError, Format, MsgContext, RawArg, Value,
};
use regex::bytes::{Regex, RegexBuilder};
use std::sync::Arc;

/// A regex compiled as Kamailio's `textops` compiles them: extended syntax, case
/// insensitive, `^`/`$` at line boundaries (`REG_EXTENDED | REG_ICASE | REG_NEWLINE`).
#[derive(Clone, Debug)]
pub struct IRegex(pub Arc<Regex>);

/// Compiles `text` with Kamailio's `textops` flags.
pub fn compile_icase(text: &str) -> Result<Arc<Regex>, String> {
    RegexBuilder::new(text)
        .case_insensitive(true)
        .multi_line(true)
        .crlf(true)
        .build()
        .map(Arc::new)
        .map_err(|e| format!("invalid regular expression \"{text}\": {e}"))
}

impl ArgType for IRegex {
    type Fixed = Fixable<Arc<Regex>>;
    const KIND: ArgKind = ArgKind::Regex;

    fn fixup(raw: RawArg, env: &dyn FixupEnv) -> Result<Self::Fixed, String> {
        let f = raw_to_format(raw, env)?;
        if f.is_literal() {
            compile_icase(f.text()).map(Fixable::Const)
        } else {
            Ok(Fixable::Dynamic(f))
        }
    }

    fn eval(fixed: &Self::Fixed, ctx: &MsgContext) -> Result<Self, FnError> {
        match fixed {
            Fixable::Const(r) => Ok(IRegex(r.clone())),
            Fixable::Dynamic(f) => {
                let b = f.eval(ctx)?;
                cached_regex("textops-icase", &String::from_utf8_lossy(&b), compile_icase)
                    .map(IRegex)
                    .map_err(FnError::new)
            }
        }
    }

    fn from_value(value: Value, _env: &dyn CallEnv) -> Result<Self, FnError> {
        cached_regex("textops-icase", &value_to_text(value)?, compile_icase)
            .map(IRegex)
            .map_err(FnError::new)
    }
}

/// One piece of a replacement.
#[derive(Clone, Debug)]
enum Piece {
    Text(Format),
    Group(usize),
}

/// A parsed `/re/repl/flags` expression.
#[derive(Clone, Debug)]
pub struct SubstExpr {
    re: Arc<Regex>,
    repl: Vec<Piece>,
    global: bool,
}

impl SubstExpr {
    /// Parses an expression; `binder` resolves PVs in the replacement (without one, a `$`
    /// in the replacement is literal).
    pub fn parse(text: &str, binder: Option<&Binder<'_>>) -> Result<SubstExpr, String> {
        let mut chars = text.chars();
        let sep = chars
            .next()
            .ok_or_else(|| "empty substitution expression".to_string())?;
        if sep == '\\' || sep.is_alphanumeric() {
            return Err(format!("bad separator '{sep}' in \"{text}\""));
        }
        let mut parts: Vec<String> = vec![String::new()];
        let mut it = chars.peekable();
        while let Some(c) = it.next() {
            if c == '\\' {
                match it.next() {
                    // An escaped separator is that character, literally.
                    Some(n) if n == sep && parts.len() == 1 => {
                        parts[0].push_str(&regex::escape(&n.to_string()))
                    }
                    Some(n) if n == sep => parts.last_mut().unwrap().push(n),
                    Some(n) => {
                        let p = parts.last_mut().unwrap();
                        p.push('\\');
                        p.push(n);
                    }
                    None => return Err(format!("trailing '\\' in \"{text}\"")),
                }
            } else if c == sep {
                parts.push(String::new());
            } else {
                parts.last_mut().unwrap().push(c);
            }
        }
        if parts.len() != 3 {
            return Err(format!(
                "\"{text}\" is not a substitution expression {sep}re{sep}repl{sep}flags"
            ));
        }
        let (mut icase, mut global, mut single_line) = (false, false, false);
        for f in parts[2].chars() {
            match f {
                'i' => icase = true,
                'g' => global = true,
                's' => single_line = true,
                other => return Err(format!("unknown substitution flag '{other}' in \"{text}\"")),
            }
        }
        let re = RegexBuilder::new(&parts[0])
            .case_insensitive(icase)
            .multi_line(!single_line)
            .crlf(!single_line)
            .dot_matches_new_line(single_line)
            .build()
            .map_err(|e| format!("invalid regular expression \"{}\": {e}", parts[0]))?;
        let repl = parse_repl(&parts[1], binder)?;
        Ok(SubstExpr {
            re: Arc::new(re),
            repl,
            global,
        })
    }

    pub fn regex(&self) -> &Regex {
        &self.re
    }

    /// Applies the expression to `input`; `None` when nothing matched.
    pub fn apply(&self, ctx: &MsgContext, input: &[u8]) -> Result<Option<Vec<u8>>, FnError> {
        let mut out = Vec::with_capacity(input.len());
        let mut last = 0;
        let mut any = false;
        for caps in self.re.captures_iter(input) {
            let m = caps.get(0).expect("group 0 always matches");
            any = true;
            out.extend_from_slice(&input[last..m.start()]);
            for p in &self.repl {
                match p {
                    Piece::Text(f) => out.extend_from_slice(&f.eval(ctx)?),
                    Piece::Group(n) => {
                        if let Some(g) = caps.get(*n) {
                            out.extend_from_slice(g.as_bytes());
                        }
                    }
                }
            }
            last = m.end();
            if !self.global {
                break;
            }
        }
        if !any {
            return Ok(None);
        }
        out.extend_from_slice(&input[last..]);
        Ok(Some(out))
    }
}

fn parse_repl(s: &str, binder: Option<&Binder<'_>>) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let flush = |lit: &mut String, pieces: &mut Vec<Piece>| -> Result<(), String> {
        if !lit.is_empty() {
            let f = match binder {
                Some(b) => b.parse_format(lit).map_err(|e| e.message)?,
                None => Format::literal(lit),
            };
            pieces.push(Piece::Text(f));
            lit.clear();
        }
        Ok(())
    };
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            lit.push(c);
            continue;
        }
        match it.next() {
            Some(d @ '0'..='9') => {
                flush(&mut lit, &mut pieces)?;
                pieces.push(Piece::Group(d as usize - '0' as usize));
            }
            Some('n') => lit.push('\n'),
            Some('r') => lit.push('\r'),
            Some('t') => lit.push('\t'),
            Some(other) => lit.push(other),
            None => lit.push('\\'),
        }
    }
    flush(&mut lit, &mut pieces)?;
    Ok(pieces)
}

impl ArgType for SubstExpr {
    type Fixed = Fixable<SubstExpr>;
    const KIND: ArgKind = ArgKind::Custom("substitution /re/repl/flags");

    fn fixup(raw: RawArg, env: &dyn FixupEnv) -> Result<Self::Fixed, String> {
        match raw {
            // Kamailio takes the expression literally: `$` in the regex is an anchor and
            // PVs are only expanded in the replacement.
            RawArg::Str(s) | RawArg::Ident(s) => {
                SubstExpr::parse(&s, Some(&env.binder())).map(Fixable::Const)
            }
            other => Ok(Fixable::Dynamic(raw_to_format(other, env)?)),
        }
    }

    fn eval(fixed: &Self::Fixed, ctx: &MsgContext) -> Result<Self, FnError> {
        match fixed {
            Fixable::Const(s) => Ok(s.clone()),
            Fixable::Dynamic(f) => {
                let b: Bytes = f.eval(ctx)?;
                SubstExpr::parse(&String::from_utf8_lossy(&b), None).map_err(FnError::new)
            }
        }
    }

    /// Parsed on each call, with PVs in the replacement as a literal at load has them.
    fn from_value(value: Value, env: &dyn CallEnv) -> Result<Self, FnError> {
        SubstExpr::parse(&value_to_text(value)?, Some(&env.binder())).map_err(FnError::new)
    }
}
