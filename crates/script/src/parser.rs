//! pest grammar -> AST.

use crate::ast::*;
use pest::iterators::Pair;
use pest::pratt_parser::{Assoc, Op, PrattParser};
use pest::Parser;
use std::sync::OnceLock;

#[derive(pest_derive::Parser)]
#[grammar = "grammar.pest"]
struct ScriptParser;

/// A syntax error at a place in the preprocessed text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub span: Span,
    pub message: String,
}

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

fn pratt() -> &'static PrattParser<Rule> {
    static P: OnceLock<PrattParser<Rule>> = OnceLock::new();
    P.get_or_init(|| {
        PrattParser::new()
            .op(Op::infix(Rule::op_or, Assoc::Left))
            .op(Op::infix(Rule::op_and, Assoc::Left))
            .op(Op::infix(Rule::op_bitor, Assoc::Left))
            .op(Op::infix(Rule::op_bitxor, Assoc::Left))
            .op(Op::infix(Rule::op_bitand, Assoc::Left))
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
            .op(Op::infix(Rule::op_shl, Assoc::Left) | Op::infix(Rule::op_shr, Assoc::Left))
            .op(Op::infix(Rule::op_add, Assoc::Left) | Op::infix(Rule::op_sub, Assoc::Left))
            .op(Op::infix(Rule::op_mul, Assoc::Left)
                | Op::infix(Rule::op_div, Assoc::Left)
                | Op::infix(Rule::op_mod, Assoc::Left))
            .op(Op::prefix(Rule::op_not)
                | Op::prefix(Rule::op_neg)
                | Op::prefix(Rule::op_bitnot)
                | Op::prefix(Rule::op_defined)
                | Op::prefix(Rule::op_strempty)
                | Op::prefix(Rule::op_strlen)
                | Op::prefix(Rule::cast_int)
                | Op::prefix(Rule::cast_str))
    })
}

/// Operator-language names for grammar rules, used in "expected ..." messages.
fn rule_name(r: &Rule) -> &'static str {
    match r {
        Rule::EOI => "end of file",
        Rule::item
        | Rule::loadmodule
        | Rule::modparam
        | Rule::global_param
        | Rule::cfg_var
        | Rule::loadpath => "a parameter, loadmodule, modparam or route block",
        Rule::route_block | Rule::route_kw => "a route block",
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
        Rule::case_clause => "'case' or 'default'",
        Rule::assign_op => "'=' or ':='",
        Rule::string | Rule::strings | Rule::dq_string | Rule::sq_string => "a string",
        Rule::int => "a number",
        Rule::pv => "a pseudo-variable",
        Rule::ident | Rule::call | Rule::bare_call => "a name",
        Rule::arg => "a function argument",
        Rule::literal => "a string or a number",
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
        _ => "something else",
    }
}

fn convert_error(e: pest::error::Error<Rule>, text: &str) -> SyntaxError {
    let pos = match e.location {
        pest::error::InputLocation::Pos(p) => p,
        pest::error::InputLocation::Span((s, _)) => s,
    };
    let message = match &e.variant {
        pest::error::ErrorVariant::ParsingError { positives, .. } => {
            let mut names: Vec<&str> = positives.iter().map(rule_name).collect();
            names.sort_unstable();
            names.dedup();
            names.retain(|n| *n != "something else");
            let found = text[pos.min(text.len())..]
                .chars()
                .next()
                .map_or("end of file".to_string(), |c| format!("'{c}'"));
            if names.contains(&"';'") {
                // Point just after the last token, where the ';' belongs.
                let before = text[..pos.min(text.len())].trim_end();
                let at = before.len();
                return SyntaxError {
                    span: Span {
                        start: at as u32,
                        end: at as u32 + 1,
                    },
                    message: format!("missing ';' (found {found} next)"),
                };
            } else if names.is_empty() {
                format!("unexpected {found}")
            } else {
                format!("expected {}, found {found}", names.join(" or "))
            }
        }
        pest::error::ErrorVariant::CustomError { message } => message.clone(),
    };
    SyntaxError {
        span: Span {
            start: pos as u32,
            end: pos as u32 + 1,
        },
        message,
    }
}

/// Resolves the escapes of a string literal; unknown escapes are kept as written, so
/// regexes like `"^\+[0-9]+$"` reach the regex engine intact (as in Kamailio).
fn unescape(raw: &str) -> String {
    let inner = &raw[1..raw.len().saturating_sub(1).max(1)];
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('\'') => out.push('\''),
            Some(o) => {
                out.push('\\');
                out.push(o);
            }
            None => out.push('\\'),
        }
    }
    out
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

struct Builder {
    errors: Vec<SyntaxError>,
}

impl Builder {
    fn literal(&mut self, p: Pair<'_, Rule>) -> Literal {
        let inner = p.into_inner().next();
        match inner {
            Some(i) if i.as_rule() == Rule::int => match parse_int(&i) {
                Ok(v) => Literal::Int(v),
                Err(e) => {
                    self.errors.push(e);
                    Literal::Int(0)
                }
            },
            Some(i) if i.as_rule() == Rule::bool_lit => {
                Literal::Int(matches!(i.as_str(), "yes" | "true" | "on" | "enable") as i64)
            }
            Some(i) => Literal::Str(strings_of(i)),
            None => Literal::Str(String::new()),
        }
    }

    fn item(&mut self, p: Pair<'_, Rule>) -> Option<Item> {
        let span = sp(&p);
        Some(match p.as_rule() {
            Rule::loadmodule | Rule::loadpath => {
                let is_path = p.as_rule() == Rule::loadpath;
                let s = p.into_inner().find(|x| x.as_rule() == Rule::string)?;
                let lm = LoadModule {
                    path: unescape(s.as_str()),
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
                let group = it.next()?.as_str().to_string();
                let name = it.next()?.as_str().to_string();
                let value = it.next()?;
                let v = value.into_inner().next()?;
                let value = match v.as_rule() {
                    Rule::int => Literal::Int(parse_int(&v).unwrap_or(0)),
                    Rule::string => Literal::Str(unescape(v.as_str())),
                    _ => Literal::Str(v.as_str().to_string()),
                };
                let desc = it
                    .find(|x| x.as_rule() == Rule::string)
                    .map(|s| unescape(s.as_str()));
                Item::CfgVar(CfgVar {
                    group,
                    name,
                    value,
                    desc,
                    span,
                })
            }
            Rule::global_param => {
                let mut it = p.into_inner();
                let name = it.next()?;
                let value = it.next();
                let (raw, vspan) = match value {
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
                    None => (String::new(), span),
                };
                Item::GlobalParam(GlobalParam {
                    name: name.as_str().to_string(),
                    name_span: sp(&name),
                    value: GlobalValue { raw, span: vspan },
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

    fn stmt(&mut self, p: Pair<'_, Rule>) -> Option<Stmt> {
        let span = sp(&p);
        Some(match p.as_rule() {
            Rule::block => Stmt::Block(self.block(p)),
            Rule::empty_stmt => Stmt::Empty,
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
                let mut cases = Vec::new();
                for c in it {
                    let cspan = sp(&c);
                    let mut label = None;
                    let mut body = Vec::new();
                    for x in c.into_inner() {
                        match x.as_rule() {
                            Rule::case_label => {
                                let l = x.into_inner().next()?;
                                label = Some(if l.as_rule() == Rule::int {
                                    Literal::Int(parse_int(&l).unwrap_or(0))
                                } else {
                                    Literal::Str(unescape(l.as_str()))
                                });
                            }
                            Rule::case_body => {
                                body = x.into_inner().filter_map(|s| self.stmt(s)).collect();
                            }
                            _ => {}
                        }
                    }
                    cases.push(Case {
                        label,
                        body,
                        span: cspan,
                    });
                }
                Stmt::Switch(Switch { value, cases, span })
            }
            Rule::break_stmt => Stmt::Break(span),
            Rule::return_stmt => {
                let value = p
                    .into_inner()
                    .find(|x| x.as_rule() == Rule::expr)
                    .map(|e| self.expr(e));
                Stmt::Return(Return { value, span })
            }
            Rule::exit_stmt => Stmt::Exit(span),
            Rule::drop_stmt => Stmt::Drop(span),
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

    fn expr(&mut self, p: Pair<'_, Rule>) -> Expr {
        let pairs = p.into_inner();
        let errors = std::cell::RefCell::new(Vec::new());
        let e = pratt()
            .map_primary(|x| self_primary(x, &errors))
            .map_prefix(|op, rhs| {
                let s = join(sp(&op), *rhs.span());
                match op.as_rule() {
                    Rule::op_not => Expr::Unary(UnaryOp::Not, Box::new(rhs), s),
                    Rule::op_neg => Expr::Unary(UnaryOp::Neg, Box::new(rhs), s),
                    Rule::op_bitnot => Expr::Unary(UnaryOp::BitNot, Box::new(rhs), s),
                    Rule::op_defined => Expr::Defined(Box::new(rhs), s),
                    Rule::op_strempty => Expr::Unary(UnaryOp::StrEmpty, Box::new(rhs), s),
                    Rule::op_strlen => Expr::Unary(UnaryOp::StrLen, Box::new(rhs), s),
                    Rule::cast_int => Expr::Cast(true, Box::new(rhs), s),
                    _ => Expr::Cast(false, Box::new(rhs), s),
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
            .parse(pairs);
        self.errors.extend(errors.into_inner());
        e
    }
}

fn keyword_of(text: &str) -> Keyword {
    match text {
        "method" => Keyword::Method,
        "uri" => Keyword::Uri,
        "from_uri" => Keyword::FromUri,
        "to_uri" => Keyword::ToUri,
        "src_ip" => Keyword::SrcIp,
        "src_port" => Keyword::SrcPort,
        "dst_ip" | "to_ip" => Keyword::DstIp,
        "dst_port" | "to_port" => Keyword::DstPort,
        "snd_ip" => Keyword::DstIp,
        "snd_port" => Keyword::DstPort,
        "proto" => Keyword::Proto,
        "af" => Keyword::Af,
        "status" => Keyword::Status,
        "myself" => Keyword::Myself,
        "msg:len" => Keyword::MsgLen,
        "retcode" => Keyword::RetCode,
        other => Keyword::Const(match other.to_ascii_lowercase().as_str() {
            "udp" => 1,
            "tcp" => 2,
            "tls" => 3,
            "sctp" => 4,
            "ws" => 5,
            "wss" => 6,
            "inet" => 4,
            "inet6" => 6,
            _ => 0,
        }),
    }
}

fn call_of(p: Pair<'_, Rule>, errors: &std::cell::RefCell<Vec<SyntaxError>>) -> CallExpr {
    let span = sp(&p);
    let mut it = p.into_inner();
    let (name, name_span) = match it.next() {
        Some(n) => (n.as_str().to_string(), sp(&n)),
        None => (String::new(), span),
    };
    let args = it
        .filter_map(|a| {
            let inner = a.into_inner().next()?;
            let s = sp(&inner);
            Some(match inner.as_rule() {
                Rule::strings => Arg::Str(strings_of(inner), s),
                Rule::int => match parse_int(&inner) {
                    Ok(v) => Arg::Int(v, s),
                    Err(e) => {
                        errors.borrow_mut().push(e);
                        Arg::Int(0, s)
                    }
                },
                Rule::pv => Arg::Pv(inner.as_str().to_string(), s),
                Rule::ident => Arg::Ident(inner.as_str().to_string(), s),
                _ => Arg::Expr(Box::new(expr_of(inner, errors))),
            })
        })
        .collect();
    CallExpr {
        name,
        name_span,
        args,
        span,
    }
}

fn expr_of(p: Pair<'_, Rule>, errors: &std::cell::RefCell<Vec<SyntaxError>>) -> Expr {
    let mut b = Builder { errors: Vec::new() };
    let e = b.expr(p);
    errors.borrow_mut().extend(b.errors);
    e
}

fn self_primary(p: Pair<'_, Rule>, errors: &std::cell::RefCell<Vec<SyntaxError>>) -> Expr {
    let s = sp(&p);
    match p.as_rule() {
        Rule::paren => match p.into_inner().next() {
            Some(e) => expr_of(e, errors),
            None => Expr::Null(s),
        },
        Rule::int => match parse_int(&p) {
            Ok(v) => Expr::Int(v, s),
            Err(e) => {
                errors.borrow_mut().push(e);
                Expr::Int(0, s)
            }
        },
        Rule::strings => Expr::Str(strings_of(p), s),
        Rule::ip_lit => Expr::Str(p.as_str().to_string(), s),
        Rule::pv => Expr::Pv(p.as_str().to_string(), s),
        Rule::select => Expr::Select(p.as_str()[1..].to_string(), s),
        Rule::keyword => Expr::Keyword(keyword_of(p.as_str()), s),
        Rule::call => Expr::Call(call_of(p, errors)),
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
                Some(t) if t.as_rule() == Rule::string => RouteTarget::Name(unescape(t.as_str())),
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

/// Parses preprocessed script text.
pub fn parse_script(text: &str) -> Result<Script, Vec<SyntaxError>> {
    let mut pairs =
        ScriptParser::parse(Rule::script, text).map_err(|e| vec![convert_error(e, text)])?;
    let mut b = Builder { errors: Vec::new() };
    let mut items = Vec::new();
    if let Some(script) = pairs.next() {
        for p in script.into_inner() {
            if p.as_rule() == Rule::EOI {
                continue;
            }
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
                Stmt::Empty => "empty",
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
        assert_eq!(e.message, "missing ';' (found 'g' next)");
        let e = err("request_route {\n  if ($a == ) exit;\n}");
        assert!(e.message.contains("expression"), "{}", e.message);
        let e = err("request_route {\n  f(\"unterminated);\n}\n");
        assert!(e.span.start >= 16, "{e:?}");
        let e = err("request_route {\n  exit;\n");
        assert!(
            e.message.contains("'}'") || e.message.contains("statement"),
            "{}",
            e.message
        );
        let e = err("request_route { $(avp(x)[1] = 1; }");
        assert!(e.span.start >= 16, "{e:?}");
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
