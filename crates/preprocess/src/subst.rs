//! `#!subst` expressions: `<sep>regex<sep>replacement<sep>flags`.

use regex::{Regex, RegexBuilder};

#[derive(Debug, Clone)]
enum Piece {
    Lit(String),
    Group(usize),
}

/// A compiled substitution rule.
#[derive(Debug, Clone)]
pub(crate) struct SubstRule {
    regex: Regex,
    replacement: Vec<Piece>,
    global: bool,
    /// The regex as written (what `#!substdef` uses as the define name).
    pub(crate) pattern_text: String,
    /// The replacement as written (what `#!substdef` uses as the define value).
    pub(crate) replacement_text: String,
}

/// Index of the first `sep` at or after `from` not directly preceded by a
/// backslash. Kamailio looks only at the previous character, so `\\/` still
/// counts as escaped; we keep that quirk so rules split the same way.
fn find_sep(s: &str, from: usize, sep: char) -> Option<usize> {
    s[from..]
        .char_indices()
        .find(|&(i, c)| c == sep && !(i > 0 && s[..from + i].ends_with('\\')))
        .map(|(i, _)| from + i)
}

impl SubstRule {
    pub(crate) fn parse(expr: &str) -> Result<SubstRule, String> {
        let mut chars = expr.chars();
        let sep = chars
            .next()
            .ok_or_else(|| "empty subst expression".to_string())?;
        if expr.chars().count() < 3 {
            return Err(format!("subst expression `{expr}` is too short"));
        }
        if sep == '\\' {
            return Err("a backslash cannot be the subst separator".into());
        }
        let re_start = sep.len_utf8();
        let re_end = find_sep(expr, re_start, sep)
            .ok_or_else(|| format!("no `{sep}` after the regex in subst expression `{expr}`"))?;
        let repl_start = re_end + sep.len_utf8();
        let (replacement, repl_end) = parse_replacement(expr, repl_start, sep)?;
        let mut icase = false;
        let mut dotall = false;
        let mut global = false;
        for f in expr[repl_end + sep.len_utf8()..].chars() {
            match f {
                'i' => icase = true,
                's' => dotall = true,
                'g' => global = true,
                _ => return Err(format!("unknown subst flag `{f}` (allowed: g, i, s)")),
            }
        }
        let pattern_text = &expr[re_start..re_end];
        // An escaped separator is literal text, whatever the separator is.
        let escaped_sep = format!("\\{sep}");
        let pattern = pattern_text.replace(&escaped_sep, &regex::escape(&sep.to_string()));
        // Kamailio compiles with REG_NEWLINE unless `s` is given: `.` stops at
        // newlines and ^/$ match at line boundaries.
        let regex = RegexBuilder::new(&pattern)
            .case_insensitive(icase)
            .multi_line(!dotall)
            .dot_matches_new_line(dotall)
            .build()
            .map_err(|e| format!("bad regular expression `{pattern_text}` in subst: {e}"))?;
        Ok(SubstRule {
            regex,
            replacement,
            global,
            pattern_text: pattern_text.to_string(),
            replacement_text: expr[repl_start..repl_end].to_string(),
        })
    }

    /// The rewritten text, or `None` when the regex does not match.
    pub(crate) fn apply(&self, s: &str) -> Option<String> {
        let mut out = String::new();
        let mut last = 0;
        let mut matched = false;
        for caps in self.regex.captures_iter(s) {
            matched = true;
            let m = caps.get(0).expect("group 0 always participates");
            out.push_str(&s[last..m.start()]);
            for piece in &self.replacement {
                match piece {
                    Piece::Lit(l) => out.push_str(l),
                    Piece::Group(g) => {
                        out.push_str(caps.get(*g).map_or("", |m| m.as_str()));
                    }
                }
            }
            last = m.end();
            if !self.global {
                break;
            }
        }
        if !matched {
            return None;
        }
        out.push_str(&s[last..]);
        Some(out)
    }
}

/// Parses the replacement up to the closing separator; returns the pieces and
/// the separator's index.
fn parse_replacement(expr: &str, start: usize, sep: char) -> Result<(Vec<Piece>, usize), String> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut it = expr[start..].char_indices();
    while let Some((i, c)) = it.next() {
        if c == '\\' {
            let Some((_, e)) = it.next() else { break };
            match e {
                'n' => lit.push('\n'),
                'r' => lit.push('\r'),
                't' => lit.push('\t'),
                '0'..='9' => {
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Group(e as usize - '0' as usize));
                }
                'u' => {
                    return Err("`\\u` (request URI) has no meaning in a preprocessor subst".into());
                }
                other => lit.push(other),
            }
        } else if c == sep {
            if !lit.is_empty() {
                pieces.push(Piece::Lit(lit));
            }
            return Ok((pieces, start + i));
        } else {
            lit.push(c);
        }
    }
    Err(format!(
        "no closing `{sep}` after the replacement in subst expression `{expr}`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_and_flags() {
        let r = SubstRule::parse("/a(b)/x\\1y/g").unwrap();
        assert_eq!(r.apply("abab").as_deref(), Some("xbyxby"));
        let r = SubstRule::parse("/a/x/").unwrap();
        assert_eq!(r.apply("aa").as_deref(), Some("xa"));
        assert_eq!(r.apply("bb"), None);
        let r = SubstRule::parse("/A/x/gi").unwrap();
        assert_eq!(r.apply("aA").as_deref(), Some("xx"));
    }

    #[test]
    fn other_separators() {
        let r = SubstRule::parse("!MY_IP_ADDR!127.0.0.1!g").unwrap();
        assert_eq!(r.pattern_text, "MY_IP_ADDR");
        assert_eq!(r.replacement_text, "127.0.0.1");
        assert_eq!(r.apply("sip:MY_IP_ADDR").as_deref(), Some("sip:127.0.0.1"));
        let r = SubstRule::parse("|a\\|b|c|").unwrap();
        assert_eq!(r.apply("xa|b").as_deref(), Some("xc"));
        let r = SubstRule::parse("#x#y\\#z#").unwrap();
        assert_eq!(r.apply("x").as_deref(), Some("y#z"));
    }

    #[test]
    fn errors() {
        assert!(SubstRule::parse("/a/").is_err());
        assert!(SubstRule::parse("/a/b/q").is_err());
        assert!(SubstRule::parse("/a(/b/").is_err());
        assert!(SubstRule::parse("\\a\\b\\").is_err());
        assert!(SubstRule::parse("/a").is_err());
    }

    #[test]
    fn newline_semantics() {
        let r = SubstRule::parse("/^b/X/g").unwrap();
        assert_eq!(r.apply("a\nb").as_deref(), Some("a\nX"));
        let r = SubstRule::parse("/^b/X/gs").unwrap();
        assert_eq!(r.apply("a\nb"), None);
    }
}
