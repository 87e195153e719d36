//! pest grammar -> AST, and syntax errors worded for the operator.
//!
//! On a syntax error the parser blanks out the top-level item that failed (a route block,
//! a parameter line, a `modparam(...)`) and parses again, so one run reports an error per
//! broken item rather than only the first.

use crate::ast::*;
use pest::iterators::Pair;
use pest::pratt_parser::{Assoc, Op, PrattParser};
use pest::Parser;
use std::sync::OnceLock;

#[derive(pest_derive::Parser)]
#[grammar = "grammar.pest"]
struct ScriptParser;

/// A syntax error at a place in the preprocessed text.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SyntaxError {
    pub span: Span,
    pub message: String,
}

impl SyntaxError {
    fn at(start: usize, end: usize, message: impl Into<String>) -> Self {
        SyntaxError {
            span: Span {
                start: start as u32,
                end: end.max(start) as u32,
            },
            message: message.into(),
        }
    }
}

/// At most this many errors are reported; later ones are usually consequences.
const MAX_ERRORS: usize = 20;

/// Parses preprocessed script text.
pub fn parse_script(text: &str) -> Result<Script, Vec<SyntaxError>> {
    let pairs = match ScriptParser::parse(Rule::script, text) {
        Ok(p) => p,
        Err(e) => return Err(recover(text, e)),
    };
    let mut b = Builder { errors: Vec::new() };
    let mut items = Vec::new();
    for script in pairs {
        for p in script.into_inner() {
            if let Some(item) = b.item(p) {
                items.push(item);
            }
        }
    }
    if b.errors.is_empty() {
        Ok(Script { items })
    } else {
        Err(b.errors)
    }
}

/// Collects one error per broken top-level item: report, blank the item, parse again.
fn recover(text: &str, first: pest::error::Error<Rule>) -> Vec<SyntaxError> {
    let mut errors = Vec::new();
    let mut masked = text.as_bytes().to_vec();
    let mut err = first;
    loop {
        let current = String::from_utf8_lossy(&masked).into_owned();
        let scan = scan(&current);
        let e = describe(&current, &scan, &err);
        let pos = e.span.start as usize;
        errors.push(e);
        if errors.len() >= MAX_ERRORS {
            break;
        }
        let Some((start, end)) = scan.item_at(pos) else {
            break;
        };
        if end <= start {
            break;
        }
        for b in &mut masked[start..end] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
        let next = String::from_utf8_lossy(&masked).into_owned();
        match ScriptParser::parse(Rule::script, &next) {
            Ok(_) => break,
            Err(e2) => {
                let p2 = error_pos(&e2);
                // No progress: the same place fails again; stop rather than loop.
                if p2 < end && p2 <= pos {
                    break;
                }
                err = e2;
            }
        }
    }
    errors.sort_by_key(|e| e.span.start);
    errors.dedup_by_key(|e| e.span.start);
    errors
}

fn error_pos(e: &pest::error::Error<Rule>) -> usize {
    match e.location {
        pest::error::InputLocation::Pos(p) => p,
        pest::error::InputLocation::Span((s, _)) => s,
    }
}

// ---- lexical scan: item boundaries and token-level problems --------------------------

#[derive(Default)]
struct Scan {
    /// Top-level items as byte ranges.
    items: Vec<(usize, usize)>,
    /// `{` that are never closed.
    unclosed: Vec<usize>,
    /// Problems a token has on its own: (position, message).
    lexical: Vec<(usize, usize, &'static str)>,
}

impl Scan {
    fn item_at(&self, pos: usize) -> Option<(usize, usize)> {
        self.items
            .iter()
            .copied()
            .rfind(|(s, _)| *s <= pos)
            .or_else(|| self.items.first().copied())
    }
}

const ROUTE_WORDS: [&str; 10] = [
    "request_route",
    "reply_route",
    "onreply_route",
    "failure_route",
    "branch_route",
    "onsend_route",
    "event_route",
    "local_route",
    "error_route",
    "route",
];

/// Whether a route block header starts at `i` (a route word followed by `[` or `{`).
fn route_header_at(b: &[u8], i: usize) -> bool {
    for w in ROUTE_WORDS {
        if b[i..].starts_with(w.as_bytes()) {
            let rest = &b[i + w.len()..];
            let next = rest.iter().find(|c| !c.is_ascii_whitespace());
            if matches!(next, Some(b'[') | Some(b'{')) {
                return true;
            }
        }
    }
    false
}

/// Splits the text into top-level items the way an operator sees them, tracking strings,
/// comments and pseudo-variables so their contents never count as structure.
fn scan(text: &str) -> Scan {
    let b = text.as_bytes();
    let mut out = Scan::default();
    let mut i = 0;
    let mut braces: Vec<usize> = Vec::new();
    let mut parens = 0usize;
    let mut item_start: Option<usize> = None;
    let mut is_route = false;
    let mut line_start = true;
    while i < b.len() {
        let c = b[i];
        // A route header at the start of a line inside a block: the block above lacks '}'.
        if line_start && !braces.is_empty() && route_header_at(b, i) {
            out.unclosed.append(&mut braces);
            parens = 0;
            if let Some(s) = item_start.take() {
                out.items.push((s, i));
            }
        }
        line_start = c == b'\n';
        match c {
            b'\n' => {
                if braces.is_empty() && parens == 0 && !is_route {
                    if let Some(s) = item_start.take() {
                        out.items.push((s, i));
                    }
                }
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let start = i;
                let mut depth = 0;
                while i < b.len() {
                    if b[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if b[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                if depth > 0 {
                    out.lexical.push((
                        start,
                        start + 2,
                        "unterminated comment: '/*' is never closed",
                    ));
                }
                continue;
            }
            _ => {}
        }
        if item_start.is_none() {
            item_start = Some(i);
            is_route = route_header_at(b, i);
        }
        match c {
            b'"' | b'\'' => {
                let start = i;
                i += 1;
                let mut closed = false;
                while i < b.len() {
                    if b[i] == b'\\' && c == b'"' {
                        i += 2;
                        continue;
                    }
                    if b[i] == c {
                        closed = true;
                        break;
                    }
                    i += 1;
                }
                let end = i.min(b.len());
                let spans_lines = b[start..end].contains(&b'\n');
                if !closed {
                    out.lexical.push((
                        start,
                        start + 1,
                        "unterminated string: the closing quote is missing",
                    ));
                } else if spans_lines {
                    // Legal, but almost always a missing quote that swallowed the next lines.
                    out.lexical.push((
                        start,
                        start + 1,
                        "unterminated string: the closing quote is missing on this line",
                    ));
                }
                i = end + 1;
                continue;
            }
            b'$' => {
                let start = i;
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                if b.get(i) == Some(&b'(') {
                    let mut depth = 0usize;
                    while i < b.len() && b[i] != b'\n' {
                        match b[i] {
                            b'(' => depth += 1,
                            b')' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        i += 1;
                    }
                    if depth > 0 {
                        out.lexical.push((
                            start,
                            start + 2,
                            "unbalanced parenthesis in pseudo-variable: a ')' is missing",
                        ));
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            b'{' => braces.push(i),
            b'}' if braces.pop().is_some() && braces.is_empty() => {
                parens = 0;
                if let Some(s) = item_start.take() {
                    out.items.push((s, i + 1));
                }
                is_route = false;
            }
            // Parentheses matter only between items (`modparam(...)` over several lines);
            // inside a block an unbalanced one must not swallow the rest of the file.
            b'(' if braces.is_empty() => parens += 1,
            b')' if braces.is_empty() => parens = parens.saturating_sub(1),
            b';' if braces.is_empty() && parens == 0 && !is_route => {
                if let Some(s) = item_start.take() {
                    out.items.push((s, i + 1));
                }
            }
            _ => {}
        }
        i += 1;
    }
    out.unclosed.extend(braces);
    if let Some(s) = item_start {
        out.items.push((s, b.len()));
    }
    out
}

// ---- error wording --------------------------------------------------------------------

/// Operator-language names for grammar rules, used in "expected ..." messages.
fn rule_name(r: &Rule) -> &'static str {
    match r {
        Rule::EOI => "end of file",
        Rule::item
        | Rule::loadmodule
        | Rule::modparam
        | Rule::global_param
        | Rule::cfgengine_stmt
        | Rule::cfg_var
        | Rule::loadpath => "a parameter, loadmodule, modparam or route block",
        Rule::route_block | Rule::route_kw => "a parameter, loadmodule, modparam or route block",
        Rule::route_name => "'[NAME]'",
        Rule::block => "'{'",
        Rule::stmt
        | Rule::if_stmt
        | Rule::switch_stmt
        | Rule::while_stmt
        | Rule::break_stmt
        | Rule::return_stmt
        | Rule::exit_stmt
        | Rule::drop_stmt
        | Rule::assign_stmt
        | Rule::expr_stmt
        | Rule::empty_stmt => "a statement",
        Rule::expr | Rule::paren | Rule::primary => "an expression",
        Rule::semi => "';'",
        Rule::case_clause | Rule::kw_case | Rule::kw_default => "'case' or 'default'",
        Rule::case_label => "a case label (a number or a string)",
        Rule::assign_op => "'=' or ':='",
        Rule::string | Rule::strings | Rule::dq_string | Rule::sq_string => "a string",
        Rule::int => "a number",
        Rule::pv => "a pseudo-variable",
        Rule::ident | Rule::fname | Rule::call | Rule::bare_call => "a name",
        Rule::arg => "a function argument",
        Rule::literal => "a string or a number",
        Rule::route_target => "a route name",
        Rule::op_or
        | Rule::op_and
        | Rule::op_eq
        | Rule::op_ne
        | Rule::op_match
        | Rule::op_nmatch
        | Rule::op_lt
        | Rule::op_le
        | Rule::op_gt
        | Rule::op_ge
        | Rule::op_add
        | Rule::op_sub
        | Rule::op_mul
        | Rule::op_div
        | Rule::op_mod
        | Rule::op_bitor
        | Rule::op_bitand
        | Rule::op_bitxor
        | Rule::op_shl
        | Rule::op_shr
        | Rule::op_streq
        | Rule::op_strne
        | Rule::op_ieq
        | Rule::op_ine => "an operator",
        _ => "",
    }
}

const OP_CHARS: &[u8] = b"=<>!~&|^+-*/%:";
const OPERATORS: [&str; 21] = [
    "||", "&&", "==", "=~", "!=", "!~", "<=", "<<", "<", ">=", ">>", ">", "|", "^", "&", "+", "-",
    "*", "/", "%", "!",
];

fn found_at(text: &str, pos: usize) -> String {
    match text[pos.min(text.len())..].chars().next() {
        None => "end of file".into(),
        Some('\n') => "end of line".into(),
        Some(c) => format!("'{c}'"),
    }
}

/// What kind of statement ends at `at` (for "expected ';' after ...").
fn statement_kind(text: &str, at: usize) -> &'static str {
    let line_start = text[..at].rfind(['\n', ';', '{', '}']).map_or(0, |i| i + 1);
    let stmt = text[line_start..at].trim();
    let stmt = stmt.strip_prefix("else").map_or(stmt, str::trim_start);
    let first_word: String = stmt
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    match first_word.as_str() {
        "return" | "exit" | "drop" | "break" => match first_word.as_str() {
            "return" => "after 'return'",
            "exit" => "after 'exit'",
            "drop" => "after 'drop'",
            _ => "after 'break'",
        },
        "route" if !stmt.starts_with("route[") => "after route call",
        _ if stmt.starts_with('$') && stmt.contains('=') => "after assignment",
        _ if stmt.ends_with(')') || !first_word.is_empty() => "after function call",
        _ => "after statement",
    }
}

fn describe(text: &str, scan: &Scan, e: &pest::error::Error<Rule>) -> SyntaxError {
    let pos = error_pos(e).min(text.len());
    let item_start = scan.item_at(pos).map_or(0, |(s, _)| s);
    // A token that is broken on its own explains the failure better than the grammar.
    if let Some(&(s, end, msg)) = scan
        .lexical
        .iter()
        .rfind(|(s, _, _)| *s <= pos && *s >= item_start)
    {
        return SyntaxError::at(s, end, msg);
    }
    let positives: Vec<Rule> = match &e.variant {
        pest::error::ErrorVariant::ParsingError { positives, .. } => positives.clone(),
        pest::error::ErrorVariant::CustomError { message } => {
            return SyntaxError::at(pos, pos + 1, message.clone())
        }
    };
    // A '{' above the failure that is never closed: point at it, not at the symptom.
    if let Some(&open) = scan.unclosed.iter().rev().find(|&&o| o < pos) {
        let at_eof = text[pos..].trim().is_empty();
        if at_eof || route_header_at(text.as_bytes(), pos) {
            return SyntaxError::at(
                open,
                open + 1,
                "unclosed '{': this block has no matching '}'",
            );
        }
    }
    let mut names: Vec<&str> = positives.iter().map(rule_name).collect();
    names.retain(|n| !n.is_empty());
    names.sort_unstable();
    names.dedup();
    let found = found_at(text, pos);
    if names.contains(&"';'") {
        // Point just after the last token, where the ';' belongs.
        let at = text[..pos].trim_end().len();
        return SyntaxError::at(
            at,
            at + 1,
            format!(
                "expected ';' {} (found {found} next)",
                statement_kind(text, at)
            ),
        );
    }
    // An operator-looking run of characters that is not one of ours.
    let b = text.as_bytes();
    let mut s = pos;
    while s > 0 && OP_CHARS.contains(&b[s - 1]) {
        s -= 1;
    }
    let mut end = pos;
    while end < b.len() && OP_CHARS.contains(&b[end]) {
        end += 1;
    }
    let run = &text[s..end];
    if end > pos && !run.is_empty() && !OPERATORS.contains(&run) && run != ":=" {
        let hint = match run {
            "=" => "; '=' assigns, use '==' to compare",
            "<>" | "=!" => "; use '!='",
            "===" => "; use '=='",
            "=<" => "; use '<='",
            "=>" => "; use '>='",
            _ => "",
        };
        return SyntaxError::at(s, end, format!("unknown operator '{run}'{hint}"));
    }
    names.retain(|n| *n != "end of file" || positives.len() == 1);
    let message = if names.contains(&"an expression") && names.len() > 2 {
        format!("expected an expression, found {found}")
    } else if names.is_empty() || names.len() > 4 {
        format!("unexpected {found}")
    } else {
        format!("expected {}, found {found}", names.join(" or "))
    };
    SyntaxError::at(pos, pos + 1, message)
}

// ---- AST building ---------------------------------------------------------------------

fn sp(p: &Pair<'_, Rule>) -> Span {
    let s = p.as_span();
    Span {
        start: s.start() as u32,
        end: s.end() as u32,
    }
}

fn join(a: Span, b: Span) -> Span {
    Span {
        start: a.start.min(b.start),
        end: a.end.max(b.end),
    }
}

/// Kamailio's precedence (cfg.y), loosest first. It differs from C: `&` binds looser than
/// `^`, shifts are looser than comparisons, and `<<` is looser than `>>`.
fn pratt() -> &'static PrattParser<Rule> {
    static P: OnceLock<PrattParser<Rule>> = OnceLock::new();
    P.get_or_init(|| {
        PrattParser::new()
            .op(Op::infix(Rule::op_or, Assoc::Left))
            .op(Op::infix(Rule::op_and, Assoc::Left))
            .op(Op::infix(Rule::op_bitor, Assoc::Left))
            .op(Op::infix(Rule::op_bitand, Assoc::Left))
            .op(Op::infix(Rule::op_bitxor, Assoc::Left))
            .op(Op::infix(Rule::op_shl, Assoc::Left))
            .op(Op::infix(Rule::op_shr, Assoc::Left))
            .op(Op::infix(Rule::op_eq, Assoc::Left)
                | Op::infix(Rule::op_ne, Assoc::Left)
                | Op::infix(Rule::op_match, Assoc::Left)
                | Op::infix(Rule::op_nmatch, Assoc::Left)
                | Op::infix(Rule::op_streq, Assoc::Left)
                | Op::infix(Rule::op_strne, Assoc::Left)
                | Op::infix(Rule::op_ieq, Assoc::Left)
                | Op::infix(Rule::op_ine, Assoc::Left))
            .op(Op::infix(Rule::op_lt, Assoc::Left)
                | Op::infix(Rule::op_le, Assoc::Left)
                | Op::infix(Rule::op_gt, Assoc::Left)
                | Op::infix(Rule::op_ge, Assoc::Left))
            .op(Op::infix(Rule::op_add, Assoc::Left) | Op::infix(Rule::op_sub, Assoc::Left))
            .op(Op::infix(Rule::op_mul, Assoc::Left)
                | Op::infix(Rule::op_div, Assoc::Left)
                | Op::infix(Rule::op_mod, Assoc::Left))
            .op(Op::prefix(Rule::op_not)
                | Op::prefix(Rule::op_neg)
                | Op::prefix(Rule::op_bitnot)
                | Op::prefix(Rule::op_defined)
                | Op::prefix(Rule::cast_int)
                | Op::prefix(Rule::cast_str))
    })
}

/// Resolves the escapes of a double-quoted literal as Kamailio's lexer does (`\n \r \t \a
/// \" \\ \xHH \ooo`, backslash-newline removed). Unknown escapes are kept as written, so
/// regexes like `"^\+[0-9]+$"` reach the regex engine intact. Single-quoted literals are raw.
fn unescape(raw: &str) -> String {
    if raw.len() < 2 {
        return String::new();
    }
    let inner = &raw[1..raw.len() - 1];
    if raw.starts_with('\'') {
        return inner.to_string();
    }
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let b = inner.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' || i + 1 >= b.len() {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let n = b[i + 1];
        i += 2;
        match n {
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'a' => out.push(0x07),
            b'\\' => out.push(b'\\'),
            b'"' => out.push(b'"'),
            b'\n' => {}
            b'x' => {
                let hex: Vec<u8> = b[i..]
                    .iter()
                    .take(2)
                    .take_while(|c| c.is_ascii_hexdigit())
                    .copied()
                    .collect();
                if hex.is_empty() {
                    out.extend_from_slice(b"\\x");
                } else {
                    let s = std::str::from_utf8(&hex).unwrap_or("0");
                    out.push(u8::from_str_radix(s, 16).unwrap_or(0));
                    i += hex.len();
                }
            }
            // Kamailio wants two or three octal digits, leaving `\1` for regex back-references.
            b'0'..=b'7' if b.get(i).is_some_and(|c| (b'0'..=b'7').contains(c)) => {
                let mut v = u32::from(n - b'0');
                let mut k = 0;
                while k < 2 && b.get(i).is_some_and(|c| (b'0'..=b'7').contains(c)) {
                    v = v * 8 + u32::from(b[i] - b'0');
                    i += 1;
                    k += 1;
                }
                out.push(v as u8);
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The value of adjacent string literals.
fn strings_of(p: Pair<'_, Rule>) -> String {
    if p.as_rule() == Rule::string {
        return unescape(p.as_str());
    }
    p.into_inner().map(|s| unescape(s.as_str())).collect()
}

fn parse_int(p: &Pair<'_, Rule>) -> Result<i64, SyntaxError> {
    let t = p.as_str();
    let (neg, digits) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t),
    };
    let v = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(h, 16)
    } else if let Some(bin) = digits.strip_suffix('b') {
        i64::from_str_radix(bin, 2)
    } else if digits.len() > 1 && digits.starts_with('0') && digits.bytes().all(|c| c < b'8') {
        i64::from_str_radix(&digits[1..], 8)
    } else {
        digits.parse::<i64>()
    };
    match v {
        Ok(v) => Ok(if neg { -v } else { v }),
        Err(_) => Err(SyntaxError {
            span: sp(p),
            message: format!("number {t} is out of range"),
        }),
    }
}

fn param_value(raw: &str) -> Option<ParamValue> {
    let t = raw.trim();
    if t.is_empty() {
        return None;
    }
    if let Ok(mut pairs) = ScriptParser::parse(Rule::literal, t) {
        let lit = pairs.next()?;
        if lit.as_str().len() == t.len() {
            let inner = lit.into_inner().next()?;
            return match inner.as_rule() {
                Rule::int => parse_int(&inner).ok().map(ParamValue::Int),
                Rule::bool_lit => Some(ParamValue::Int(bool_value(inner.as_str()))),
                _ => Some(ParamValue::Str(strings_of(inner))),
            };
        }
    }
    if let Ok(mut pairs) = ScriptParser::parse(Rule::ident, t) {
        let id = pairs.next()?;
        if id.as_str().len() == t.len() {
            return Some(ParamValue::Ident(t.to_string()));
        }
    }
    None
}

fn bool_value(word: &str) -> i64 {
    matches!(word, "yes" | "true" | "on" | "enable") as i64
}

fn keyword_of(text: &str) -> Keyword {
    match text {
        "method" => Keyword::Method,
        "uri" => Keyword::Uri,
        "from_uri" => Keyword::FromUri,
        "to_uri" => Keyword::ToUri,
        "src_ip" => Keyword::SrcIp,
        "src_port" => Keyword::SrcPort,
        "dst_ip" => Keyword::DstIp,
        "dst_port" => Keyword::DstPort,
        "snd_ip" => Keyword::SndIp,
        "snd_port" => Keyword::SndPort,
        "snd_proto" | "to_proto" => Keyword::SndProto,
        "snd_af" | "to_af" => Keyword::SndAf,
        "to_ip" => Keyword::ToIp,
        "to_port" => Keyword::ToPort,
        "proto" => Keyword::Proto,
        "af" => Keyword::Af,
        "status" => Keyword::Status,
        "myself" => Keyword::Myself,
        "msg:len" => Keyword::MsgLen,
        "retcode" => Keyword::RetCode,
        // Kamailio's protocol and address-family numbers (PROTO_*, AF_INET/AF_INET6 as 4/6
        // the way `af` reports them).
        other => Keyword::Const(match other.to_ascii_lowercase().as_str() {
            "udp" => 1,
            "tcp" => 2,
            "tls" => 3,
            "sctp" => 4,
            "ws" => 5,
            "wss" => 6,
            "inet" | "ipv4" => 4,
            "inet6" | "ipv6" => 6,
            _ => 0,
        }),
    }
}

struct Builder {
    errors: Vec<SyntaxError>,
}

impl Builder {
    fn int(&mut self, p: &Pair<'_, Rule>) -> i64 {
        parse_int(p).unwrap_or_else(|e| {
            self.errors.push(e);
            0
        })
    }

    fn literal(&mut self, p: Pair<'_, Rule>) -> Literal {
        match p.into_inner().next() {
            Some(i) if i.as_rule() == Rule::int => Literal::Int(self.int(&i)),
            Some(i) if i.as_rule() == Rule::bool_lit => Literal::Int(bool_value(i.as_str())),
            Some(i) => Literal::Str(strings_of(i)),
            None => Literal::Str(String::new()),
        }
    }

    fn item(&mut self, p: Pair<'_, Rule>) -> Option<Item> {
        let span = sp(&p);
        Some(match p.as_rule() {
            Rule::loadmodule | Rule::loadpath => {
                let is_path = p.as_rule() == Rule::loadpath;
                let mut strs = p.into_inner().filter(|x| x.as_rule() == Rule::string);
                let s = strs.next()?;
                let lm = LoadModule {
                    path: unescape(s.as_str()),
                    path_span: sp(&s),
                    opts: strs.next().map(|o| unescape(o.as_str())),
                    span,
                };
                if is_path {
                    Item::LoadPath(lm)
                } else {
                    Item::LoadModule(lm)
                }
            }
            Rule::modparam => {
                let mut parts = p.into_inner().filter(|x| x.as_rule() != Rule::kw_modparam);
                let m = parts.next()?;
                let n = parts.next()?;
                let v = parts.next()?;
                let value_span = sp(&v);
                Item::ModParam(ModParam {
                    module: unescape(m.as_str()),
                    module_span: sp(&m),
                    param: unescape(n.as_str()),
                    param_span: sp(&n),
                    value: self.literal(v),
                    value_span,
                    span,
                })
            }
            Rule::cfg_var => {
                let mut it = p.into_inner();
                let group = it.next()?;
                let name = it.next()?;
                let value = it.next()?;
                let value_span = sp(&value);
                let v = value.into_inner().next()?;
                let value = match v.as_rule() {
                    Rule::int => Literal::Int(self.int(&v)),
                    Rule::string => Literal::Str(unescape(v.as_str())),
                    _ => Literal::Str(v.as_str().to_string()),
                };
                let desc = it
                    .find(|x| x.as_rule() == Rule::string)
                    .map(|s| unescape(s.as_str()));
                Item::CfgVar(CfgVar {
                    group: group.as_str().to_string(),
                    name: name.as_str().to_string(),
                    name_span: join(sp(&group), sp(&name)),
                    value,
                    value_span,
                    desc,
                    span,
                })
            }
            Rule::cfgengine_stmt => {
                let mut it = p.into_inner();
                let kw = it.next()?;
                let value = it.next()?;
                let raw = value.as_str().to_string();
                Item::GlobalParam(GlobalParam {
                    name: "cfgengine".to_string(),
                    name_span: sp(&kw),
                    value: GlobalValue {
                        parsed: param_value(&raw),
                        raw,
                        span: sp(&value),
                    },
                })
            }
            Rule::global_param => {
                let mut it = p.into_inner();
                let name = it.next()?;
                let (raw, vspan) = match it.next() {
                    Some(v) => {
                        let s = sp(&v);
                        let trimmed = v.as_str().trim_end();
                        (
                            trimmed.to_string(),
                            Span {
                                start: s.start,
                                end: s.start + trimmed.len() as u32,
                            },
                        )
                    }
                    None => (
                        String::new(),
                        Span {
                            start: span.end,
                            end: span.end,
                        },
                    ),
                };
                Item::GlobalParam(GlobalParam {
                    name: name.as_str().to_string(),
                    name_span: sp(&name),
                    value: GlobalValue {
                        parsed: param_value(&raw),
                        raw,
                        span: vspan,
                    },
                })
            }
            Rule::route_block => {
                let mut it = p.into_inner();
                let kw = it.next()?;
                let kind = match kw.as_str() {
                    "request_route" | "route" => RouteKindAst::Request,
                    "failure_route" => RouteKindAst::Failure,
                    "branch_route" => RouteKindAst::Branch,
                    "onreply_route" | "reply_route" => RouteKindAst::OnReply,
                    "onsend_route" => RouteKindAst::OnSend,
                    "event_route" => RouteKindAst::Event,
                    "local_route" => RouteKindAst::Local,
                    _ => RouteKindAst::Error,
                };
                let mut name = None;
                let mut header = sp(&kw);
                let mut body = Block::default();
                for x in it {
                    match x.as_rule() {
                        Rule::route_name => {
                            header = join(header, sp(&x));
                            let n = x.into_inner().next()?;
                            let value = if n.as_rule() == Rule::string {
                                unescape(n.as_str())
                            } else {
                                n.as_str().to_string()
                            };
                            name = Some(Name {
                                value,
                                span: sp(&n),
                            });
                        }
                        Rule::block => body = self.block(x),
                        _ => {}
                    }
                }
                Item::Route(RouteBlock {
                    kind,
                    name,
                    body,
                    span: header,
                })
            }
            _ => return None,
        })
    }

    fn block(&mut self, p: Pair<'_, Rule>) -> Block {
        let span = sp(&p);
        let stmts = p.into_inner().filter_map(|s| self.stmt(s)).collect();
        Block { stmts, span }
    }

    /// The optional value of `return`, `exit` and `drop`.
    fn tail_value(&mut self, p: Pair<'_, Rule>) -> Option<Expr> {
        p.into_inner()
            .find(|x| x.as_rule() == Rule::expr)
            .map(|e| self.expr(e))
    }

    fn stmt(&mut self, p: Pair<'_, Rule>) -> Option<Stmt> {
        let span = sp(&p);
        Some(match p.as_rule() {
            Rule::block => Stmt::Block(self.block(p)),
            Rule::empty_stmt => Stmt::Empty(span),
            Rule::if_stmt => {
                let mut it = p
                    .into_inner()
                    .filter(|x| !matches!(x.as_rule(), Rule::kw_if | Rule::kw_else));
                let cond = self.expr(it.next()?);
                let then = Box::new(self.stmt(it.next()?)?);
                let otherwise = match it.next() {
                    Some(e) => Some(Box::new(self.stmt(e)?)),
                    None => None,
                };
                Stmt::If(If {
                    cond,
                    then,
                    otherwise,
                    span,
                })
            }
            Rule::while_stmt => {
                let mut it = p.into_inner().filter(|x| x.as_rule() != Rule::kw_while);
                let cond = self.expr(it.next()?);
                let body = Box::new(self.stmt(it.next()?)?);
                Stmt::While(While { cond, body, span })
            }
            Rule::switch_stmt => {
                let mut it = p.into_inner().filter(|x| x.as_rule() != Rule::kw_switch);
                let value = self.expr(it.next()?);
                let cases = it.map(|c| self.case(c)).collect();
                Stmt::Switch(Switch { value, cases, span })
            }
            Rule::break_stmt => Stmt::Break(span),
            Rule::return_stmt => Stmt::Return(Return {
                value: self.tail_value(p),
                span,
            }),
            Rule::exit_stmt => Stmt::Exit(Exit {
                value: self.tail_value(p),
                span,
            }),
            Rule::drop_stmt => Stmt::Drop(Exit {
                value: self.tail_value(p),
                span,
            }),
            Rule::assign_stmt => {
                let mut it = p.into_inner();
                let target = it.next()?;
                let op = it.next()?;
                let value = self.expr(it.next()?);
                Stmt::Assign(Assign {
                    target: target.as_str().to_string(),
                    target_span: sp(&target),
                    value,
                    colon: op.as_str() == ":=",
                    span,
                })
            }
            Rule::expr_stmt => {
                let e = self.expr(p.into_inner().next()?);
                match e {
                    Expr::Call(c) => Stmt::Call(c),
                    Expr::RouteCall(r) => Stmt::RouteCall(r),
                    other => Stmt::Expr(other),
                }
            }
            _ => return None,
        })
    }

    fn case(&mut self, c: Pair<'_, Rule>) -> Case {
        let span = sp(&c);
        let mut case = Case {
            label: None,
            label_span: None,
            regex: false,
            body: Vec::new(),
            span,
        };
        for x in c.into_inner() {
            match x.as_rule() {
                Rule::case_regex => case.regex = true,
                Rule::case_label => {
                    case.label_span = Some(sp(&x));
                    if let Some(l) = x.into_inner().next() {
                        case.label = Some(if l.as_rule() == Rule::int {
                            Literal::Int(self.int(&l))
                        } else {
                            Literal::Str(strings_of(l))
                        });
                    }
                }
                Rule::case_body => {
                    case.body = x.into_inner().filter_map(|s| self.stmt(s)).collect();
                }
                _ => {}
            }
        }
        case
    }

    fn expr(&mut self, p: Pair<'_, Rule>) -> Expr {
        // The Pratt parser takes its callbacks by shared reference to each other, so the
        // builder's error list is lent to them through a cell.
        let this = std::cell::RefCell::new(self);
        pratt()
            .map_primary(|x| this.borrow_mut().primary(x))
            .map_prefix(|op, rhs| {
                let s = join(sp(&op), *rhs.span());
                let rhs = Box::new(rhs);
                match op.as_rule() {
                    Rule::op_not => Expr::Unary(UnaryOp::Not, rhs, s),
                    Rule::op_neg => Expr::Unary(UnaryOp::Neg, rhs, s),
                    Rule::op_bitnot => Expr::Unary(UnaryOp::BitNot, rhs, s),
                    Rule::op_defined => Expr::Defined(rhs, s),
                    Rule::cast_int => Expr::Cast(true, rhs, s),
                    _ => Expr::Cast(false, rhs, s),
                }
            })
            .map_infix(|lhs, op, rhs| {
                let s = join(*lhs.span(), *rhs.span());
                let b = match op.as_rule() {
                    Rule::op_or => BinaryOp::Or,
                    Rule::op_and => BinaryOp::And,
                    Rule::op_bitor => BinaryOp::BitOr,
                    Rule::op_bitxor => BinaryOp::BitXor,
                    Rule::op_bitand => BinaryOp::BitAnd,
                    Rule::op_eq => BinaryOp::Eq,
                    Rule::op_ne => BinaryOp::Ne,
                    Rule::op_match => BinaryOp::Match,
                    Rule::op_nmatch => BinaryOp::NotMatch,
                    Rule::op_streq => BinaryOp::StrEq,
                    Rule::op_strne => BinaryOp::StrNe,
                    Rule::op_ieq => BinaryOp::IEq,
                    Rule::op_ine => BinaryOp::INe,
                    Rule::op_lt => BinaryOp::Lt,
                    Rule::op_le => BinaryOp::Le,
                    Rule::op_gt => BinaryOp::Gt,
                    Rule::op_ge => BinaryOp::Ge,
                    Rule::op_shl => BinaryOp::Shl,
                    Rule::op_shr => BinaryOp::Shr,
                    Rule::op_add => BinaryOp::Add,
                    Rule::op_sub => BinaryOp::Sub,
                    Rule::op_mul => BinaryOp::Mul,
                    Rule::op_div => BinaryOp::Div,
                    _ => BinaryOp::Mod,
                };
                Expr::Binary(b, Box::new(lhs), Box::new(rhs), s)
            })
            .parse(p.into_inner())
    }

    fn primary(&mut self, p: Pair<'_, Rule>) -> Expr {
        let s = sp(&p);
        match p.as_rule() {
            Rule::paren => match p.into_inner().next() {
                Some(e) => self.expr(e),
                None => Expr::Null(s),
            },
            Rule::int => Expr::Int(self.int(&p), s),
            Rule::strings => Expr::Str(strings_of(p), s),
            Rule::ip_lit => Expr::Str(p.as_str().to_string(), s),
            Rule::null => Expr::Null(s),
            Rule::pv => Expr::Pv(p.as_str().to_string(), s),
            Rule::select => Expr::Select(p.as_str()[1..].to_string(), s),
            Rule::keyword => Expr::Keyword(keyword_of(p.as_str()), s),
            Rule::strfn => {
                let mut it = p.into_inner();
                let op = match it.next().map(|o| o.as_rule()) {
                    Some(Rule::op_strlen) => UnaryOp::StrLen,
                    _ => UnaryOp::StrEmpty,
                };
                let inner = match it.next() {
                    Some(e) => self.expr(e),
                    None => Expr::Null(s),
                };
                Expr::Unary(op, Box::new(inner), s)
            }
            Rule::call => Expr::Call(self.call(p)),
            Rule::bare_call => Expr::Call(CallExpr {
                name: p.as_str().to_string(),
                name_span: s,
                args: Vec::new(),
                span: s,
            }),
            Rule::route_call => {
                let target = p
                    .into_inner()
                    .find(|x| x.as_rule() == Rule::route_target)
                    .and_then(|t| t.into_inner().next());
                let target = match target {
                    Some(t) if t.as_rule() == Rule::string => {
                        RouteTarget::Name(unescape(t.as_str()))
                    }
                    Some(t) if t.as_rule() == Rule::pv => {
                        RouteTarget::Dynamic(Box::new(Expr::Pv(t.as_str().to_string(), sp(&t))))
                    }
                    Some(t) => RouteTarget::Name(t.as_str().to_string()),
                    None => RouteTarget::Name(String::new()),
                };
                Expr::RouteCall(RouteCallExpr { target, span: s })
            }
            _ => Expr::Null(s),
        }
    }

    fn call(&mut self, p: Pair<'_, Rule>) -> CallExpr {
        let span = sp(&p);
        let mut it = p.into_inner();
        let (name, name_span) = match it.next() {
            Some(n) => (n.as_str().to_string(), sp(&n)),
            None => (String::new(), span),
        };
        let mut args = Vec::new();
        for a in it {
            let Some(inner) = a.into_inner().next() else {
                continue;
            };
            let s = sp(&inner);
            args.push(match inner.as_rule() {
                Rule::strings => Arg::Str(strings_of(inner), s),
                Rule::int => Arg::Int(self.int(&inner), s),
                Rule::pv => Arg::Pv(inner.as_str().to_string(), s),
                Rule::ident | Rule::socket_lit | Rule::ip_lit => {
                    Arg::Ident(inner.as_str().to_string(), s)
                }
                _ => Arg::Expr(Box::new(self.expr(inner))),
            });
        }
        CallExpr {
            name,
            name_span,
            args,
            span,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Script {
        match parse_script(text) {
            Ok(s) => s,
            Err(e) => panic!("{text}\n{e:?}"),
        }
    }

    fn route_body(text: &str) -> Vec<Stmt> {
        let s = parse(&format!("request_route {{ {text} }}"));
        match s.items.into_iter().next() {
            Some(Item::Route(r)) => r.body.stmts,
            other => panic!("{other:?}"),
        }
    }

    fn err(text: &str) -> SyntaxError {
        parse_script(text).expect_err("should not parse").remove(0)
    }

    #[test]
    fn comments_of_all_kinds() {
        let s =
            parse("# hash\n// slashes\n/* block\n over lines */\n#!KAMAILIO\ndebug=2 # trailing\n");
        assert_eq!(s.items.len(), 1);
        let Item::GlobalParam(g) = &s.items[0] else {
            panic!()
        };
        assert_eq!(g.name, "debug");
        assert_eq!(g.value.raw, "2");
    }

    #[test]
    fn global_params_keep_raw_values() {
        let s = parse("listen=udp:127.0.0.1:5060 advertise 1.2.3.4:5080\nalias=\"example.com\"\nlisten=tcp:[::1]:5060\ndebug=-1\n");
        let vals: Vec<String> = s
            .items
            .iter()
            .map(|i| match i {
                Item::GlobalParam(g) => g.value.raw.clone(),
                _ => String::new(),
            })
            .collect();
        assert_eq!(
            vals,
            [
                "udp:127.0.0.1:5060 advertise 1.2.3.4:5080",
                "\"example.com\"",
                "tcp:[::1]:5060",
                "-1"
            ]
        );
    }

    #[test]
    fn cfg_vars_modparams_loadmodule() {
        let s = parse("pstn.gw_ip = \"\" desc \"My PSTN GW\"\nloadmodule \"tm.so\"\nmodparam(\"auth_db|usrloc\", \"db_url\", \"mysql://a\" \"/b\")\nmodparam(\"tm\", \"fr_timer\", -5)\nmodparam(\"auth_db\", \"calculate_ha1\", yes)\n");
        assert!(
            matches!(&s.items[0], Item::CfgVar(c) if c.group == "pstn" && c.name == "gw_ip" && c.desc.as_deref() == Some("My PSTN GW"))
        );
        assert!(matches!(&s.items[1], Item::LoadModule(l) if l.path == "tm.so"));
        assert!(
            matches!(&s.items[2], Item::ModParam(m) if m.module == "auth_db|usrloc" && m.value == Literal::Str("mysql://a/b".into()))
        );
        assert!(matches!(&s.items[3], Item::ModParam(m) if m.value == Literal::Int(-5)));
        assert!(matches!(&s.items[4], Item::ModParam(m) if m.value == Literal::Int(1)));
    }

    #[test]
    fn route_block_kinds_and_names() {
        let s = parse("route { exit; }\nroute[RELAY] { }\nroute[\"q\"] {}\nroute[2] {}\nfailure_route[F] {}\nbranch_route[B] {}\nonreply_route[R] {}\nonreply_route {}\nreply_route {}\nonsend_route {}\nevent_route[tm:local-request] {}\nevent_route[xhttp:request] {}\nrequest_route {}\n");
        let kinds: Vec<(RouteKindAst, Option<String>)> = s
            .items
            .iter()
            .map(|i| match i {
                Item::Route(r) => (r.kind, r.name.as_ref().map(|n| n.value.clone())),
                _ => panic!(),
            })
            .collect();
        assert_eq!(kinds[1], (RouteKindAst::Request, Some("RELAY".into())));
        assert_eq!(kinds[2], (RouteKindAst::Request, Some("q".into())));
        assert_eq!(kinds[3], (RouteKindAst::Request, Some("2".into())));
        assert_eq!(kinds[4], (RouteKindAst::Failure, Some("F".into())));
        assert_eq!(kinds[6], (RouteKindAst::OnReply, Some("R".into())));
        assert_eq!(kinds[8], (RouteKindAst::OnReply, None));
        assert_eq!(
            kinds[10],
            (RouteKindAst::Event, Some("tm:local-request".into()))
        );
        assert_eq!(kinds[12], (RouteKindAst::Request, None));
    }

    #[test]
    fn statements() {
        let b = route_body("if (a()) b(); else if (c()) { d(); } else e(); while ($var(i) < 3) { break; } switch ($rm) { case \"A\": x(); break; case 2: default: y(); } return; return 1; return(-1); exit; exit(); drop; drop(); route(R); route(\"R\"); route($var(r)); $var(x) = 1; $avp(y) := \"s\"; t_relay; ;");
        let names: Vec<&str> = b
            .iter()
            .map(|s| match s {
                Stmt::If(_) => "if",
                Stmt::While(_) => "while",
                Stmt::Switch(_) => "switch",
                Stmt::Return(_) => "return",
                Stmt::Exit(_) => "exit",
                Stmt::Drop(_) => "drop",
                Stmt::RouteCall(_) => "route",
                Stmt::Assign(_) => "assign",
                Stmt::Call(_) => "call",
                Stmt::Empty(_) => "empty",
                _ => "other",
            })
            .collect();
        assert_eq!(
            names,
            [
                "if", "while", "switch", "return", "return", "return", "exit", "exit", "drop",
                "drop", "route", "route", "route", "assign", "assign", "call", "empty"
            ]
        );
        let Stmt::Switch(sw) = &b[2] else { panic!() };
        assert_eq!(sw.cases.len(), 3);
        assert_eq!(sw.cases[1].label, Some(Literal::Int(2)));
        assert!(sw.cases[1].body.is_empty());
        assert_eq!(sw.cases[2].label, None);
        let Stmt::Assign(a) = &b[14] else { panic!() };
        assert!(a.colon);
        assert_eq!(a.target, "$avp(y)");
    }

    #[test]
    fn precedence_and_operators() {
        let b = route_body("$var(x) = 1 + 2 * 3 == 7 && !0 || 5 & 4;");
        let Stmt::Assign(a) = &b[0] else { panic!() };
        // || at the top, && under it, == under &&
        let Expr::Binary(BinaryOp::Or, l, _, _) = &a.value else {
            panic!("{:?}", a.value)
        };
        let Expr::Binary(BinaryOp::And, l2, _, _) = l.as_ref() else {
            panic!()
        };
        let Expr::Binary(BinaryOp::Eq, sum, _, _) = l2.as_ref() else {
            panic!()
        };
        let Expr::Binary(BinaryOp::Add, _, prod, _) = sum.as_ref() else {
            panic!()
        };
        assert!(matches!(
            prod.as_ref(),
            Expr::Binary(BinaryOp::Mul, _, _, _)
        ));
        for op in [
            "=~", "!~", "!=", "<=", ">=", "<<", ">>", "eq", "ne", "ieq", "ine", "%", "^", "|", "-",
            "/",
        ] {
            route_body(&format!("if ($var(a) {op} \"b\") exit;"));
        }
        route_body("if (defined $avp(x) && (int)$var(y) > 2 && (str)$var(z) eq \"1\" && ~1 && -$var(q)) exit;");
        route_body("if (strempty($sel(cfg_get.a.b)) || strlen($ru) > 3) exit;");
    }

    #[test]
    fn keywords_and_selects() {
        let b = route_body("if (uri == myself && src_ip != myself && method == \"INVITE\" && status =~ \"[12]..\" && proto == UDP && af == INET6 && src_ip == 10.0.0.0/8 && dst_port == 5060 && @ruri.user == \"x\") exit;");
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn pseudo_variable_tokens() {
        let b = route_body("$var(x) = $(avp(x)[1]{s.substr,0,2}{s.len}) + $sht(ipban=>$si) + $(hdr(Via)[*]) + $T_branch_idx + $(ru{param.value,a});");
        let Stmt::Assign(a) = &b[0] else { panic!() };
        let mut pvs = Vec::new();
        fn walk(e: &Expr, out: &mut Vec<String>) {
            match e {
                Expr::Pv(t, _) => out.push(t.clone()),
                Expr::Binary(_, l, r, _) => {
                    walk(l, out);
                    walk(r, out);
                }
                _ => {}
            }
        }
        walk(&a.value, &mut pvs);
        assert_eq!(
            pvs,
            [
                "$(avp(x)[1]{s.substr,0,2}{s.len})",
                "$sht(ipban=>$si)",
                "$(hdr(Via)[*])",
                "$T_branch_idx",
                "$(ru{param.value,a})"
            ]
        );
    }

    #[test]
    fn call_arguments_keep_kind_and_span() {
        let text = "request_route { f(\"s\\\"q\", -12, 0x1f, $var(x), NAME, 'single'); }";
        let b = parse(text);
        let Item::Route(r) = &b.items[0] else {
            panic!()
        };
        let Stmt::Call(c) = &r.body.stmts[0] else {
            panic!()
        };
        assert_eq!(c.name, "f");
        assert!(matches!(&c.args[0], Arg::Str(s, _) if s == "s\"q"));
        assert!(matches!(&c.args[1], Arg::Int(-12, _)));
        assert!(matches!(&c.args[2], Arg::Int(31, _)));
        assert!(matches!(&c.args[3], Arg::Pv(p, _) if p == "$var(x)"));
        assert!(matches!(&c.args[4], Arg::Ident(i, _) if i == "NAME"));
        assert!(matches!(&c.args[5], Arg::Str(s, _) if s == "single"));
        let s = c.args[3].span();
        assert_eq!(&text[s.start as usize..s.end as usize], "$var(x)");
        assert_eq!(
            &text[c.name_span.start as usize..c.name_span.end as usize],
            "f"
        );
    }

    #[test]
    fn string_escapes_keep_regex_backslashes() {
        let b = route_body(r#"if ($rU =~ "^\+?[0-9]+$\n") exit;"#);
        let Stmt::If(i) = &b[0] else { panic!() };
        let Expr::Binary(_, _, r, _) = &i.cond else {
            panic!()
        };
        assert!(matches!(r.as_ref(), Expr::Str(s, _) if s == "^\\+?[0-9]+$\n"));
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = err("request_route {\n  f()\n  g();\n}");
        assert_eq!(e.span.start, 21, "{e:?}");
        assert_eq!(
            e.message,
            "expected ';' after function call (found 'g' next)"
        );
        let e = err("request_route {\n  $var(a) = 1\n  g();\n}");
        assert_eq!(e.message, "expected ';' after assignment (found 'g' next)");
        let e = err("request_route {\n  if ($a == ) exit;\n}");
        assert!(e.message.contains("expression"), "{}", e.message);
    }

    fn at(text: &str, e: &SyntaxError) -> String {
        text[e.span.start as usize..].chars().take(8).collect()
    }

    #[test]
    fn unterminated_string_points_at_its_quote() {
        let text = "request_route {\n  xlog(\"L_INFO\", \"oops);\n  exit;\n}\n";
        let e = err(text);
        assert_eq!(e.span.start, 33, "{e:?}");
        assert!(
            e.message.starts_with("unterminated string"),
            "{}",
            e.message
        );
        let text = "loadmodule \"tm.so\nrequest_route { exit; }\n";
        let e = err(text);
        assert_eq!(e.span.start, 11);
        assert!(e.message.starts_with("unterminated string"));
    }

    #[test]
    fn unbalanced_pv_parenthesis() {
        let text = "request_route {\n  $var(x) = $(avp(x)[1];\n}";
        let e = err(text);
        assert_eq!(at(text, &e), "$(avp(x)");
        assert_eq!(
            e.message,
            "unbalanced parenthesis in pseudo-variable: a ')' is missing"
        );
    }

    #[test]
    fn unclosed_brace_points_at_the_open_brace() {
        let text = "request_route {\n  if (a()) {\n    exit;\n}\n";
        let e = err(text);
        assert_eq!(e.span.start, 14, "{e:?}");
        assert!(e.message.starts_with("unclosed '{'"), "{}", e.message);
        // The next route at the start of a line shows where the block should have ended.
        let text = "route[A] {\n  if (a()) {\n    exit;\n}\nroute[B] {\n  exit;\n}\n";
        let errs = parse_script(text).expect_err("should fail");
        assert_eq!(errs[0].span.start, 9, "{errs:?}");
        assert_eq!(errs.len(), 1, "{errs:?}");
    }

    #[test]
    fn bad_operators_are_named() {
        let text = "request_route { if ($var(a) = 1) exit; }";
        let e = err(text);
        assert_eq!(at(text, &e), "= 1) exi");
        assert_eq!(
            e.message,
            "unknown operator '='; '=' assigns, use '==' to compare"
        );
        let text = "request_route { if ($var(a) <> 1) exit; }";
        let e = err(text);
        assert_eq!(at(text, &e), "<> 1) ex");
        assert_eq!(e.message, "unknown operator '<>'; use '!='");
        let e = err("request_route { if ($var(a) === 1) exit; }");
        assert_eq!(e.message, "unknown operator '==='; use '=='");
    }

    #[test]
    fn one_error_per_broken_item() {
        let text = "debug=2\nroute[A] {\n  f()\n  g();\n}\nroute[B] {\n  h(;\n}\nroute[C] { exit; }\nmodparam(\"tm\" \"x\", 1)\n";
        let errs = parse_script(text).expect_err("should fail");
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].message.starts_with("expected ';'"));
        assert!(
            errs[1].span.start > 40 && errs[1].span.start < 60,
            "{errs:?}"
        );
        assert_eq!(errs[2].span.start, 72, "{errs:?}");
    }

    #[test]
    fn kamailio_lexical_details() {
        // Nested block comments, word operators, octal/binary numbers, raw single quotes.
        let b = route_body(
            "/* a /* b */ c */ if (not $var(a) and $var(b) or 0644 == 420 and 101b == 5) exit; $var(s) = 'a\\n' + \"\\x41\\101\\a\";",
        );
        let Stmt::If(i) = &b[0] else { panic!() };
        assert!(matches!(&i.cond, Expr::Binary(BinaryOp::Or, _, _, _)));
        let Stmt::Assign(a) = &b[1] else { panic!() };
        let Expr::Binary(BinaryOp::Add, l, r, _) = &a.value else {
            panic!()
        };
        assert!(matches!(l.as_ref(), Expr::Str(s, _) if s == "a\\n"));
        assert!(matches!(r.as_ref(), Expr::Str(s, _) if s == "AA\x07"));
        let b = route_body("$var(x) = 0644 + 101b + 0x10 + 10 mod 3;");
        let Stmt::Assign(a) = &b[0] else { panic!() };
        fn ints(e: &Expr, out: &mut Vec<i64>) {
            match e {
                Expr::Int(i, _) => out.push(*i),
                Expr::Binary(_, l, r, _) => {
                    ints(l, out);
                    ints(r, out);
                }
                _ => {}
            }
        }
        let mut v = Vec::new();
        ints(&a.value, &mut v);
        assert_eq!(v, [420, 5, 16, 10, 3]);
    }

    #[test]
    fn kamailio_precedence() {
        // cfg.y: `&` is looser than `^`, and shifts are looser than comparisons.
        let b =
            route_body("$var(x) = 1 & 2 ^ 3; $var(y) = 1 << 2 == 4; $var(z) = (int)$var(a) + 1;");
        let Stmt::Assign(a) = &b[0] else { panic!() };
        assert!(
            matches!(&a.value, Expr::Binary(BinaryOp::BitAnd, _, r, _) if matches!(r.as_ref(), Expr::Binary(BinaryOp::BitXor, ..)))
        );
        let Stmt::Assign(a) = &b[1] else { panic!() };
        assert!(
            matches!(&a.value, Expr::Binary(BinaryOp::Shl, _, r, _) if matches!(r.as_ref(), Expr::Binary(BinaryOp::Eq, ..)))
        );
        let Stmt::Assign(a) = &b[2] else { panic!() };
        assert!(
            matches!(&a.value, Expr::Binary(BinaryOp::Add, l, _, _) if matches!(l.as_ref(), Expr::Cast(true, ..)))
        );
    }

    #[test]
    fn exit_drop_return_values_and_null() {
        let b = route_body(
            "exit(2); drop 1; return(); exit; $var(a) = $null; if ($var(b) == $null) exit;",
        );
        assert!(matches!(
            &b[0],
            Stmt::Exit(Exit {
                value: Some(Expr::Int(2, _)),
                ..
            })
        ));
        assert!(matches!(
            &b[1],
            Stmt::Drop(Exit {
                value: Some(Expr::Int(1, _)),
                ..
            })
        ));
        assert!(matches!(&b[2], Stmt::Return(Return { value: None, .. })));
        assert!(matches!(&b[3], Stmt::Exit(Exit { value: None, .. })));
        assert!(matches!(&b[4], Stmt::Assign(a) if matches!(a.value, Expr::Null(_))));
    }

    #[test]
    fn conditions_without_parentheses_and_regex_cases() {
        let b = route_body("if $var(a) == 1 { exit; } while $var(i) < 2 $var(i) = $var(i) + 1; switch $rU { case /\"^1\": exit; case -1: break; case (\"x\"): break; }");
        assert!(matches!(&b[0], Stmt::If(_)));
        assert!(matches!(&b[1], Stmt::While(_)));
        let Stmt::Switch(s) = &b[2] else { panic!() };
        assert!(s.cases[0].regex);
        assert_eq!(s.cases[0].label, Some(Literal::Str("^1".into())));
        assert_eq!(s.cases[1].label, Some(Literal::Int(-1)));
        assert!(!s.cases[1].regex);
    }

    #[test]
    fn socket_and_address_arguments() {
        let b = route_body("force_send_socket(udp:10.0.0.1:5060); force_send_socket(tcp:[::1]:5060); forward(1.2.3.4, 5060); $var(a) = strlen($rU) + strempty($fU); f($var(a) + 1);");
        let Stmt::Call(c) = &b[0] else { panic!() };
        assert!(matches!(&c.args[0], Arg::Ident(s, _) if s == "udp:10.0.0.1:5060"));
        let Stmt::Call(c) = &b[1] else { panic!() };
        assert!(matches!(&c.args[0], Arg::Ident(s, _) if s == "tcp:[::1]:5060"));
        let Stmt::Call(c) = &b[2] else { panic!() };
        assert!(matches!(&c.args[0], Arg::Ident(s, _) if s == "1.2.3.4"));
        assert!(matches!(&c.args[1], Arg::Int(5060, _)));
        let Stmt::Call(c) = &b[4] else { panic!() };
        assert!(matches!(&c.args[0], Arg::Expr(_)));
    }

    #[test]
    fn global_values_have_parsed_forms_and_spans() {
        let text = "children=8\ndns=no\nalias=\"example.com\"\nlog_facility=LOG_LOCAL0\nlisten=udp:1.2.3.4:5060\ndebug=-1\nloadmodule(\"sl.so\", \"x\")\npstn.gw_ip = \"\" desc \"GW\"\n";
        let s = parse(text);
        let parsed: Vec<Option<ParamValue>> = s
            .items
            .iter()
            .filter_map(|i| match i {
                Item::GlobalParam(g) => Some(g.value.parsed.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(
            parsed,
            [
                Some(ParamValue::Int(8)),
                Some(ParamValue::Int(0)),
                Some(ParamValue::Str("example.com".into())),
                Some(ParamValue::Ident("LOG_LOCAL0".into())),
                None,
                Some(ParamValue::Int(-1)),
            ]
        );
        let Item::GlobalParam(g) = &s.items[4] else {
            panic!()
        };
        let v = g.value.span;
        assert_eq!(&text[v.start as usize..v.end as usize], "udp:1.2.3.4:5060");
        let Item::LoadModule(l) = &s.items[6] else {
            panic!()
        };
        assert_eq!((l.path.as_str(), l.opts.as_deref()), ("sl.so", Some("x")));
        let Item::CfgVar(c) = &s.items[7] else {
            panic!()
        };
        let n = c.name_span;
        assert_eq!(&text[n.start as usize..n.end as usize], "pstn.gw_ip");
    }

    /// Enough of Kamailio's preprocessor for the stock config: defines, ifdef/ifndef/else.
    fn mini_preprocess(text: &str, defined: &[&str]) -> String {
        let mut defs: Vec<(String, String)> = defined
            .iter()
            .map(|d| (d.to_string(), String::new()))
            .collect();
        let mut stack: Vec<bool> = Vec::new();
        let mut out = String::new();
        for line in text.lines() {
            let t = line.trim_start();
            let active = stack.iter().all(|x| *x);
            if t.starts_with("import_file") || t.starts_with("include_file") {
                out.push('\n');
                continue;
            }
            if let Some(d) = t.strip_prefix("#!") {
                let mut w = d.split_whitespace();
                let kw = w.next().unwrap_or("");
                let name = w.next().unwrap_or("").to_string();
                let rest = w.collect::<Vec<_>>().join(" ");
                let is_def = defs.iter().any(|(n, _)| *n == name);
                match kw {
                    "ifdef" => stack.push(is_def),
                    "ifndef" => stack.push(!is_def),
                    "else" => {
                        if let Some(x) = stack.last_mut() {
                            *x = !*x;
                        }
                    }
                    "endif" => {
                        stack.pop();
                    }
                    "define" | "trydef" if active => defs.push((name, rest)),
                    _ => {}
                }
                out.push('\n');
                continue;
            }
            if active {
                let mut l = line.to_string();
                for (n, v) in &defs {
                    if !v.is_empty() {
                        l = replace_word(&l, n, v);
                    }
                }
                out.push_str(&l);
            }
            out.push('\n');
        }
        out
    }

    fn replace_word(line: &str, word: &str, value: &str) -> String {
        let mut out = String::new();
        let mut rest = line;
        while let Some(i) = rest.find(word) {
            let before = rest[..i].chars().last();
            let after = rest[i + word.len()..].chars().next();
            let boundary = |c: Option<char>| !c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            out.push_str(&rest[..i]);
            out.push_str(if boundary(before) && boundary(after) {
                value
            } else {
                word
            });
            rest = &rest[i + word.len()..];
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn stock_kamailio_cfg_parses() {
        let Ok(text) = std::fs::read_to_string("/etc/kamailio/kamailio.cfg") else {
            eprintln!("skipped: /etc/kamailio/kamailio.cfg not installed");
            return;
        };
        let all = [
            "WITH_MYSQL",
            "WITH_AUTH",
            "WITH_USRLOCDB",
            "WITH_NAT",
            "WITH_PRESENCE",
            "WITH_ALIASDB",
            "WITH_SPEEDDIAL",
            "WITH_MULTIDOMAIN",
            "WITH_TLS",
            "WITH_XMLRPC",
            "WITH_ANTIFLOOD",
            "WITH_BLOCK3XX",
            "WITH_BLOCK401407",
            "WITH_ACCDB",
            "WITH_DEBUG",
            "WITH_PSTN",
            "WITH_IPAUTH",
            "WITH_JSONRPC",
            "WITH_VOICEMAIL",
            "WITH_RTPENGINE",
            "WITH_SIPDUMP",
            "WITH_ACC",
            "WITH_CFGSAMPLES",
        ];
        for defined in [&[][..], &all[..]] {
            let pp = mini_preprocess(&text, defined);
            match parse_script(&pp) {
                Ok(s) => assert!(s.items.len() > 20),
                Err(errs) => {
                    let e = &errs[0];
                    let line = pp[..e.span.start as usize].lines().count();
                    panic!("line {line}: {} ({} errors)", e.message, errs.len());
                }
            }
        }
    }

    #[test]
    fn stateless_load_balancer_config() {
        let text = include_str!("../tests/data/stateless_lb.cfg");
        let s = parse(text);
        let routes: Vec<(RouteKindAst, Option<String>)> = s
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Route(r) => Some((r.kind, r.name.as_ref().map(|n| n.value.clone()))),
                _ => None,
            })
            .collect();
        assert_eq!(routes.len(), 7, "{routes:?}");
        assert!(routes.contains(&(RouteKindAst::Event, Some("dispatcher:dst-down".into()))));
        assert!(s.items.iter().any(|i| matches!(i, Item::ModParam(m) if m.module == "dispatcher" && m.param == "ds_ping_interval" && m.value == Literal::Int(10))));
        // Every statement span lies inside its route body.
        for i in &s.items {
            if let Item::Route(r) = i {
                for st in &r.body.stmts {
                    let sp = st.span();
                    assert!(sp.start >= r.body.span.start && sp.end <= r.body.span.end);
                }
            }
        }
    }
}

#[cfg(test)]
mod robustness {
    use super::parse_script;

    /// Random and mutated inputs never panic the parser (they may fail to parse).
    #[test]
    fn random_inputs_never_panic() {
        let base = "request_route { if ($rU =~ \"^\\+1\" && !has_totag()) { $var(x) = $(ru{uri.user}{s.len}) + 1; route(R); } else { sl_send_reply(\"404\", \"Not Found\"); } }\nroute[R] { switch ($rm) { case \"INVITE\": exit; default: drop; } }\n";
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"(){}[];,$\"'\\#/*!=~<>&|+-%^ \n\tabcXYZ019._:@";
        for _ in 0..3000 {
            let mut bytes = base.as_bytes().to_vec();
            for _ in 0..(next() % 6 + 1) {
                let pos = (next() as usize) % (bytes.len() + 1);
                match next() % 3 {
                    0 if pos < bytes.len() => {
                        bytes.remove(pos);
                    }
                    1 => bytes.insert(pos, alphabet[(next() as usize) % alphabet.len()]),
                    _ => bytes.truncate(pos),
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_script(&text);
        }
    }
}
