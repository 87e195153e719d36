//! Kamailio's `permissions.allow` / `permissions.deny` rule files, read by
//! `allow_routing()`, `allow_register()` and `allow_uri()`.
//!
//! One rule per line, `#` starts a comment:
//! `<left> : <right>` where each side is `ALL` or a comma-separated list of quoted POSIX
//! extended regular expressions, optionally followed by `EXCEPT` and another list. The
//! expressions are matched case-insensitively anywhere in the URI (Kamailio compiles them
//! with `REG_EXTENDED|REG_ICASE` and does not anchor them).

use regex::Regex;
use std::path::Path;

/// The longest rule line Kamailio reads; a longer line is an error here rather than a
/// silently cut expression.
const LINE_LIMIT: usize = 500;
/// A rule file is read whole at load; a larger one is refused.
const FILE_LIMIT: u64 = 4 << 20;

/// One side of a rule: the expressions that match and those excepted.
#[derive(Debug, Default)]
struct Side {
    /// `None`: `ALL`.
    any_of: Option<Vec<Regex>>,
    except: Vec<Regex>,
}

impl Side {
    fn matches(&self, s: &str) -> bool {
        let hit = match &self.any_of {
            None => true,
            Some(list) => list.iter().any(|r| r.is_match(s)),
        };
        hit && !self.except.iter().any(|r| r.is_match(s))
    }
}

#[derive(Debug)]
struct Rule {
    left: Side,
    right: Side,
}

/// The rules of one file; empty when the file does not exist (Kamailio: "empty rule
/// set").
#[derive(Debug, Default)]
pub struct RuleFile {
    rules: Vec<Rule>,
}

impl RuleFile {
    /// Reads `path`; a missing file is an empty rule set, a malformed line an error naming
    /// it.
    pub fn load(path: &Path) -> Result<RuleFile, String> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(
                    "permissions: rule file {} not found: empty rule set",
                    path.display()
                );
                return Ok(RuleFile::default());
            }
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        if meta.len() > FILE_LIMIT {
            return Err(format!(
                "{}: larger than {FILE_LIMIT} bytes",
                path.display()
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        RuleFile::parse(&text).map_err(|e| format!("{}:{e}", path.display()))
    }

    /// Parses the text of a rule file; errors start with the line number.
    pub fn parse(text: &str) -> Result<RuleFile, String> {
        let mut rules = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let err = |m: String| format!("{}: {m}", n + 1);
            if line.len() > LINE_LIMIT {
                return Err(err(format!("line longer than {LINE_LIMIT} characters")));
            }
            let tokens = tokenize(line).map_err(err)?;
            if tokens.is_empty() {
                continue;
            }
            rules.push(parse_rule(&tokens).map_err(err)?);
        }
        Ok(RuleFile { rules })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a rule matches the pair (`left` the From/To URI, `right` the R-URI,
    /// branch or Contact URI).
    pub fn matches(&self, left: &str, right: &str) -> bool {
        self.rules
            .iter()
            .any(|r| r.left.matches(left) && r.right.matches(right))
    }
}

#[derive(Debug, PartialEq)]
enum Token {
    All,
    Except,
    Colon,
    Comma,
    Expr(String),
}

fn tokenize(line: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = line.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '#' => break,
            c if c.is_whitespace() => {}
            ':' => out.push(Token::Colon),
            ',' => out.push(Token::Comma),
            '"' => {
                let mut expr = String::new();
                let mut closed = false;
                while let Some((_, c)) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' if chars.peek().map(|(_, n)| *n) == Some('"') => {
                            expr.push('"');
                            chars.next();
                        }
                        c => expr.push(c),
                    }
                }
                if !closed {
                    return Err("unterminated quoted expression".into());
                }
                out.push(Token::Expr(expr));
            }
            _ => {
                let rest = &line[i..];
                let word: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphabetic())
                    .collect();
                let token = if word.eq_ignore_ascii_case("ALL") {
                    Token::All
                } else if word.eq_ignore_ascii_case("EXCEPT") {
                    Token::Except
                } else {
                    return Err(format!(
                        "unexpected '{}' (expected ALL, EXCEPT, a quoted expression, ',' or ':')",
                        rest.chars().take(20).collect::<String>()
                    ));
                };
                for _ in 1..word.len() {
                    chars.next();
                }
                out.push(token);
            }
        }
    }
    Ok(out)
}

fn parse_rule(tokens: &[Token]) -> Result<Rule, String> {
    let colon = tokens
        .iter()
        .position(|t| *t == Token::Colon)
        .ok_or("missing ':' between the two sides")?;
    Ok(Rule {
        left: parse_side(&tokens[..colon])?,
        right: parse_side(&tokens[colon + 1..])?,
    })
}

fn parse_side(tokens: &[Token]) -> Result<Side, String> {
    let (main, except) = match tokens.iter().position(|t| *t == Token::Except) {
        Some(p) => (&tokens[..p], Some(&tokens[p + 1..])),
        None => (tokens, None),
    };
    let any_of = match main {
        [Token::All] => None,
        [] => return Err("a side of the rule is empty".into()),
        list => Some(expr_list(list)?),
    };
    let except = match except {
        None => Vec::new(),
        Some(list) => expr_list(list)?,
    };
    Ok(Side { any_of, except })
}

fn expr_list(tokens: &[Token]) -> Result<Vec<Regex>, String> {
    let mut out = Vec::new();
    for (k, t) in tokens.iter().enumerate() {
        match (k % 2, t) {
            (0, Token::Expr(e)) => out.push(
                regex::RegexBuilder::new(e)
                    .case_insensitive(true)
                    .build()
                    .map_err(|err| format!("expression \"{e}\": {err}"))?,
            ),
            (1, Token::Comma) => {}
            _ => return Err("expected a list of quoted expressions separated by ','".into()),
        }
    }
    if tokens.len() % 2 == 0 {
        return Err("a list ends with ','".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_as_kamailio_documents_them() {
        let f = RuleFile::parse(
            r#"
# comment line
ALL : "^sip:361[0-9]*@abc\.com$" EXCEPT "^sip:361[0-9]*3@abc\.com$", "^sip:361[0-9]*4@abc\.com$"
"^sip:3677[0-9]*@abc\.com$" : "^sip:[0-9]*@abc\.com$"   # trailing comment
"^sip:blocked@" EXCEPT "^sip:blocked@good" : ALL
"#,
        )
        .unwrap();
        assert!(f.matches("sip:anyone@x", "sip:3611@abc.com"));
        assert!(f.matches("sip:anyone@x", "sip:3611@ABC.com"), "case");
        assert!(!f.matches("sip:anyone@x", "sip:3613@abc.com"), "except");
        assert!(f.matches("sip:36771@abc.com", "sip:99@abc.com"));
        assert!(!f.matches("sip:3678@abc.com", "sip:99@abc.com"));
        assert!(f.matches("sip:blocked@evil", "sip:x@y"));
        assert!(!f.matches("sip:blocked@good.org", "sip:x@y"));
    }

    #[test]
    fn malformed_lines_are_named() {
        for (text, what) in [
            ("ALL ALL", "':'"),
            ("\"a\" : ", "empty"),
            ("\"a\", : ALL", "','"),
            ("\"(\" : ALL", "expression"),
            ("\"a : ALL", "unterminated"),
            ("foo : ALL", "unexpected"),
        ] {
            let e = RuleFile::parse(&format!("# x\n{text}\n")).unwrap_err();
            assert!(e.starts_with("2: ") && e.contains(what), "{text}: {e}");
        }
        assert!(RuleFile::load(Path::new("/nonexistent/permissions.allow"))
            .unwrap()
            .is_empty());
    }
}
