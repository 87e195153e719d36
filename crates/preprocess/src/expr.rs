//! The small expression language of `#!defexp` and `#!ifexp`.
//!
//! Kamailio evaluates these with its `snexpr` library. We cover the subset
//! configs use: decimal numbers, quoted strings, define names, parentheses,
//! unary `! - ~`, `* / %`, `+ -`, `<< >>`, comparisons, `& ^ |`, `&& ||`.
//! A define name evaluates as snexpr sees it: 0 if undefined, 1 if defined
//! without a value, otherwise its value as a string (enclosing quotes removed).
//! Like snexpr, `+` concatenates when its left operand is a string, and
//! comparisons compare as strings when the left operand is one.

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Num(f64),
    Str(String),
}

impl Val {
    pub(crate) fn truthy(&self) -> bool {
        match self {
            Val::Num(n) => *n != 0.0 && !n.is_nan(),
            Val::Str(s) => !s.is_empty(),
        }
    }

    /// How a result is written back into a define value.
    pub(crate) fn render(&self) -> String {
        match self {
            Val::Num(n) => format_num(*n),
            Val::Str(s) => s.clone(),
        }
    }

    fn num(&self, op: &str) -> Result<f64, String> {
        match self {
            Val::Num(n) => Ok(*n),
            // snexpr refuses strings here; accepting numeric strings lets
            // `#!defexp N2 N * 2` work on a plain `#!define N 4`.
            Val::Str(s) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("operator `{op}` needs a number, got string \"{s}\"")),
        }
    }
}

fn format_num(n: f64) -> String {
    if n.is_finite() && n.fract() == 0.0 && n.abs() < 9.0e18 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Id(String),
    Op(&'static str),
}

const OPS: [&str; 22] = [
    "&&", "||", "==", "!=", "<=", ">=", "<<", ">>", "<", ">", "+", "-", "*", "/", "%", "!", "~",
    "&", "|", "^", "(", ")",
];

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let b = src.as_bytes();
    let mut i = 0;
    'outer: while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            let n = src[start..i]
                .parse()
                .map_err(|_| format!("bad number `{}`", &src[start..i]))?;
            toks.push(Tok::Num(n));
        } else if c == b'"' || c == b'\'' {
            let end = src[i + 1..]
                .find(c as char)
                .ok_or_else(|| "unterminated string in expression".to_string())?;
            toks.push(Tok::Str(src[i + 1..i + 1 + end].to_string()));
            i += end + 2;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            toks.push(Tok::Id(src[start..i].to_string()));
        } else {
            for op in OPS {
                if src[i..].starts_with(op) {
                    toks.push(Tok::Op(op));
                    i += op.len();
                    continue 'outer;
                }
            }
            let ch = src[i..].chars().next().unwrap_or('?');
            return Err(format!("unexpected `{ch}` in expression"));
        }
    }
    Ok(toks)
}

fn binding_power(op: &str) -> Option<u8> {
    Some(match op {
        "||" => 1,
        "&&" => 2,
        "|" => 3,
        "^" => 4,
        "&" => 5,
        "==" | "!=" => 6,
        "<" | "<=" | ">" | ">=" => 7,
        "<<" | ">>" => 8,
        "+" | "-" => 9,
        "*" | "/" | "%" => 10,
        _ => return None,
    })
}

struct Parser<'a> {
    toks: Vec<Tok>,
    pos: usize,
    lookup: &'a dyn Fn(&str) -> Val,
}

impl Parser<'_> {
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn primary(&mut self) -> Result<Val, String> {
        match self.next() {
            Some(Tok::Num(n)) => Ok(Val::Num(n)),
            Some(Tok::Str(s)) => Ok(Val::Str(s)),
            Some(Tok::Id(id)) => Ok((self.lookup)(&id)),
            Some(Tok::Op("(")) => {
                let v = self.expr(0)?;
                match self.next() {
                    Some(Tok::Op(")")) => Ok(v),
                    _ => Err("missing `)` in expression".into()),
                }
            }
            Some(Tok::Op("!")) => Ok(Val::Num(f64::from(!self.primary()?.truthy()))),
            Some(Tok::Op("-")) => Ok(Val::Num(-self.primary()?.num("-")?)),
            Some(Tok::Op("~")) => Ok(Val::Num(!(self.primary()?.num("~")? as i64) as f64)),
            Some(Tok::Op(op)) => Err(format!("unexpected `{op}` in expression")),
            None => Err("expression ends too early".into()),
        }
    }

    fn expr(&mut self, min_bp: u8) -> Result<Val, String> {
        let mut lhs = self.primary()?;
        while let Some(Tok::Op(op)) = self.toks.get(self.pos).cloned() {
            let Some(bp) = binding_power(op) else { break };
            if bp <= min_bp {
                break;
            }
            self.pos += 1;
            let rhs = self.expr(bp)?;
            lhs = apply(op, lhs, rhs)?;
        }
        Ok(lhs)
    }
}

fn apply(op: &str, l: Val, r: Val) -> Result<Val, String> {
    let int = |v: &Val| v.num(op).map(|n| n as i64);
    Ok(match op {
        "+" => match (&l, &r) {
            (Val::Str(a), _) => Val::Str(format!("{a}{}", r.render())),
            _ => Val::Num(l.num(op)? + r.num(op)?),
        },
        "-" => Val::Num(l.num(op)? - r.num(op)?),
        "*" => Val::Num(l.num(op)? * r.num(op)?),
        "/" | "%" => {
            let d = r.num(op)?;
            if d == 0.0 {
                return Err("division by zero in expression".into());
            }
            let n = l.num(op)?;
            Val::Num(if op == "/" { n / d } else { n % d })
        }
        "<<" => Val::Num((int(&l)? << (int(&r)? & 63)) as f64),
        ">>" => Val::Num((int(&l)? >> (int(&r)? & 63)) as f64),
        "&" => Val::Num((int(&l)? & int(&r)?) as f64),
        "|" => Val::Num((int(&l)? | int(&r)?) as f64),
        "^" => Val::Num((int(&l)? ^ int(&r)?) as f64),
        "&&" => Val::Num(f64::from(l.truthy() && r.truthy())),
        "||" => Val::Num(f64::from(l.truthy() || r.truthy())),
        _ => {
            let ord = match &l {
                Val::Str(a) => Some(a.as_str().cmp(r.render().as_str())),
                Val::Num(a) => a.partial_cmp(&r.num(op)?),
            };
            use std::cmp::Ordering::*;
            let b = match (op, ord) {
                (_, None) => false,
                ("==", Some(o)) => o == Equal,
                ("!=", Some(o)) => o != Equal,
                ("<", Some(o)) => o == Less,
                ("<=", Some(o)) => o != Greater,
                (">", Some(o)) => o == Greater,
                (">=", Some(o)) => o != Less,
                _ => unreachable!("binding_power only admits known operators"),
            };
            Val::Num(f64::from(b))
        }
    })
}

/// Evaluates `src`, resolving identifiers through `lookup`.
pub(crate) fn eval(src: &str, lookup: &dyn Fn(&str) -> Val) -> Result<Val, String> {
    let toks = lex(src)?;
    if toks.is_empty() {
        return Err("empty expression".into());
    }
    let mut p = Parser {
        toks,
        pos: 0,
        lookup,
    };
    let v = p.expr(0)?;
    if p.pos < p.toks.len() {
        return Err(format!("unexpected {:?} after expression", p.toks[p.pos]));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(s: &str) -> Result<Val, String> {
        eval(s, &|id| match id {
            "FOUR" => Val::Str("4".into()),
            "FLAG" => Val::Num(1.0),
            _ => Val::Num(0.0),
        })
    }

    #[test]
    fn arithmetic_and_precedence() {
        assert_eq!(ev("1 + 2 * 3").unwrap().render(), "7");
        assert_eq!(ev("(1 + 2) * 3").unwrap().render(), "9");
        assert_eq!(ev("10 / 4").unwrap().render(), "2.5");
        assert_eq!(ev("10 % 4 - 1").unwrap().render(), "1");
        assert_eq!(ev("-3 + 1").unwrap().render(), "-2");
        assert_eq!(ev("1 << 4 | 1").unwrap().render(), "17");
        assert_eq!(ev("FOUR * 2").unwrap().render(), "8");
    }

    #[test]
    fn strings_and_logic() {
        assert_eq!(
            ev("\"udp:\" + \"1.2.3.4\"").unwrap().render(),
            "udp:1.2.3.4"
        );
        assert_eq!(ev("\"port\" + 5060").unwrap().render(), "port5060");
        // a define's value is a string, so `+` concatenates, as in Kamailio
        assert_eq!(ev("FOUR + 1").unwrap().render(), "41");
        assert!(ev("FLAG && !NOPE").unwrap().truthy());
        assert!(!ev("FLAG && NOPE").unwrap().truthy());
        assert!(ev("FOUR == 4").unwrap().truthy());
        assert!(ev("3 < 4 && 4 >= 4").unwrap().truthy());
    }

    #[test]
    fn errors() {
        assert!(ev("1 +").is_err());
        assert!(ev("(1").is_err());
        assert!(ev("1 / 0").is_err());
        assert!(ev("\"a\" - 1").is_err());
        assert!(ev("").is_err());
        assert!(ev("1 2").is_err());
        assert!(ev("1 @ 2").is_err());
    }
}
