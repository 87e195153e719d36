//! Lints `ferrosip check` (and `run`, in its log) reports as warnings: the script loads and
//! runs, but something in it is most likely a mistake. Errors that make a script wrong
//! (a route called but not defined, an assignment to a read-only pseudo-variable) are the
//! compiler's; these are what it cannot call wrong:
//!
//! - a statement after `exit`, `drop`, `return` or `break` in the same block never runs;
//! - a `failure_route[X]` / `onreply_route[X]` /
//!   `branch_route[X]` no `t_on_*("X")` arms;
//! - a message or branch flag set but never tested, or tested but never set (a module
//!   parameter naming a flag, as `acc`'s `log_flag`, counts as both).

use crate::ast::{self, Arg, Expr, Item, RouteKindAst, RouteTarget, Stmt};
use crate::diag::Diagnostic;
use ferrosip_api::Span;
use std::collections::{BTreeMap, HashSet};

fn span(s: &ast::Span) -> Span {
    Span::new(s.start, s.end)
}

/// Functions that arm a route by its name (their first argument).
const ARMING: &[(&str, RouteKindAst)] = &[
    ("t_on_failure", RouteKindAst::Failure),
    ("t_on_reply", RouteKindAst::OnReply),
    ("t_on_branch", RouteKindAst::Branch),
];

/// Functions that set or reset a flag, and those that test one: (name, branch flag).
const SETS: &[(&str, bool)] = &[
    ("setflag", false),
    ("resetflag", false),
    ("setbflag", true),
    ("resetbflag", true),
];
const TESTS: &[(&str, bool)] = &[("isflagset", false), ("isbflagset", true)];

#[derive(Default)]
struct Uses {
    /// Routes armed by name, per kind.
    armed: HashSet<(RouteKindAst, String)>,
    /// An arming function with a computed name.
    dynamic_arm: bool,
    /// Flag (number, branch) -> the first place it is set / tested.
    set: BTreeMap<(i64, bool), ast::Span>,
    tested: BTreeMap<(i64, bool), ast::Span>,
    /// A flag function with a computed argument: flags are not reported.
    dynamic_flags: bool,
    warnings: Vec<Diagnostic>,
}

/// The lint warnings of a parsed script, in source order.
pub fn lints(script: &ast::Script) -> Vec<Diagnostic> {
    let mut u = Uses::default();
    let mut param_flags = HashSet::new();
    // Module parameters may name routes (a timer's route): such a route is not unused.
    let mut param_texts = Vec::new();
    for item in &script.items {
        match item {
            Item::Route(r) => u.block(&r.body.stmts),
            Item::ModParam(ast::ModParam {
                value: ast::Literal::Str(text),
                ..
            }) => param_texts.push(text.clone()),
            Item::ModParam(mp) if mp.param.to_ascii_lowercase().contains("flag") => {
                if let ast::Literal::Int(n) = mp.value {
                    param_flags.insert(n);
                }
            }
            _ => {}
        }
    }
    let mut out = std::mem::take(&mut u.warnings);
    for item in &script.items {
        let Item::Route(r) = item else { continue };
        let Some(name) = &r.name else { continue };
        // An uncalled route[X] is the compiler's warning already.
        let unused = match r.kind {
            RouteKindAst::Failure | RouteKindAst::OnReply | RouteKindAst::Branch => {
                !u.dynamic_arm && !u.armed.contains(&(r.kind, name.value.clone()))
            }
            _ => false,
        };
        if unused && !param_texts.iter().any(|t| t.contains(name.value.as_str())) {
            let how = match r.kind {
                RouteKindAst::Failure => format!("no t_on_failure(\"{}\") arms it", name.value),
                RouteKindAst::OnReply => format!("no t_on_reply(\"{}\") arms it", name.value),
                _ => format!("no t_on_branch(\"{}\") arms it", name.value),
            };
            out.push(Diagnostic::warning(
                span(&name.span),
                format!(
                    "{}[{}] is never used: {how}",
                    kind_keyword(r.kind),
                    name.value
                ),
            ));
        }
    }
    if !u.dynamic_flags {
        let kind = |branch: bool| if branch { "branch flag" } else { "flag" };
        for ((n, branch), at) in &u.set {
            if !u.tested.contains_key(&(*n, *branch)) && !param_flags.contains(n) {
                out.push(Diagnostic::warning(
                    span(at),
                    format!(
                        "{} {n} is set but never tested (no {}({n}) and no module parameter names it)",
                        kind(*branch),
                        if *branch { "isbflagset" } else { "isflagset" }
                    ),
                ));
            }
        }
        for ((n, branch), at) in &u.tested {
            if !u.set.contains_key(&(*n, *branch)) && !param_flags.contains(n) {
                out.push(Diagnostic::warning(
                    span(at),
                    format!(
                        "{} {n} is tested but never set (no {}({n}) and no module parameter names it)",
                        kind(*branch),
                        if *branch { "setbflag" } else { "setflag" }
                    ),
                ));
            }
        }
    }
    out.sort_by_key(|d| d.span.start);
    out
}

impl Uses {
    /// A block's statements; the first one after an unconditional end is reported.
    fn block(&mut self, stmts: &[Stmt]) {
        let mut ended: Option<&'static str> = None;
        for s in stmts {
            if let Some(by) = ended.take() {
                if !matches!(s, Stmt::Empty(_)) {
                    self.warnings.push(Diagnostic::warning(
                        span(&s.span()),
                        format!("unreachable: this statement follows `{by}` in the same block"),
                    ));
                    // One warning per block: the rest is unreachable for the same reason.
                    self.stmts_after(stmts, s);
                    return;
                }
            }
            self.stmt(s);
            ended = match s {
                Stmt::Exit(_) => Some("exit"),
                Stmt::Drop(_) => Some("drop"),
                Stmt::Return(_) => Some("return"),
                Stmt::Break(_) => Some("break"),
                _ => None,
            };
        }
    }

    /// Walks the statements from `from` on for uses only (they are already reported).
    fn stmts_after(&mut self, stmts: &[Stmt], from: &Stmt) {
        let start = stmts
            .iter()
            .position(|s| std::ptr::eq(s, from))
            .unwrap_or(stmts.len());
        let before = self.warnings.len();
        for s in &stmts[start..] {
            self.stmt(s);
        }
        self.warnings.truncate(before);
    }

    fn stmt(&mut self, s: &Stmt) {
        match s {
            Stmt::Empty(_) | Stmt::Break(_) => {}
            Stmt::Block(b) => self.block(&b.stmts),
            Stmt::Expr(e) => self.expr(e),
            Stmt::Call(c) => self.call(c),
            Stmt::RouteCall(r) => self.route_call(r),
            Stmt::Assign(a) => self.expr(&a.value),
            Stmt::If(i) => {
                self.expr(&i.cond);
                self.stmt(&i.then);
                if let Some(o) = &i.otherwise {
                    self.stmt(o);
                }
            }
            Stmt::While(w) => {
                self.expr(&w.cond);
                self.stmt(&w.body);
            }
            Stmt::Switch(sw) => {
                self.expr(&sw.value);
                for c in &sw.cases {
                    self.block(&c.body);
                }
            }
            Stmt::Return(r) => {
                if let Some(v) = &r.value {
                    self.expr(v);
                }
            }
            Stmt::Exit(e) | Stmt::Drop(e) => {
                if let Some(v) = &e.value {
                    self.expr(v);
                }
            }
        }
    }

    fn expr(&mut self, e: &Expr) {
        match e {
            Expr::Call(c) => self.call(c),
            Expr::RouteCall(r) => self.route_call(r),
            Expr::Defined(x, _) | Expr::Cast(_, x, _) | Expr::Unary(_, x, _) => self.expr(x),
            Expr::Binary(_, a, b, _) => {
                self.expr(a);
                self.expr(b);
            }
            _ => {}
        }
    }

    fn route_call(&mut self, r: &ast::RouteCallExpr) {
        if let RouteTarget::Dynamic(e) = &r.target {
            self.expr(e);
        }
    }

    fn call(&mut self, c: &ast::CallExpr) {
        for a in &c.args {
            if let Arg::Expr(e) = a {
                self.expr(e);
            }
        }
        let first = c.args.first();
        if let Some((_, kind)) = ARMING.iter().find(|(n, _)| *n == c.name) {
            match first {
                Some(Arg::Str(name, _) | Arg::Ident(name, _)) => {
                    self.armed.insert((*kind, name.clone()));
                }
                _ => self.dynamic_arm = true,
            }
        }
        let flag_use = SETS
            .iter()
            .map(|(n, b)| (n, b, true))
            .chain(TESTS.iter().map(|(n, b)| (n, b, false)))
            .find(|(n, _, _)| **n == c.name);
        if let Some((_, branch, is_set)) = flag_use {
            let number = match first {
                Some(Arg::Int(n, _)) => Some(*n),
                Some(Arg::Str(s, _)) => s.trim().parse().ok(),
                _ => None,
            };
            match number {
                Some(n) => {
                    let map = if is_set {
                        &mut self.set
                    } else {
                        &mut self.tested
                    };
                    map.entry((n, *branch)).or_insert(c.span);
                }
                None => self.dynamic_flags = true,
            }
        }
    }
}

fn kind_keyword(kind: RouteKindAst) -> &'static str {
    match kind {
        RouteKindAst::Failure => "failure_route",
        RouteKindAst::OnReply => "onreply_route",
        RouteKindAst::Branch => "branch_route",
        _ => "route",
    }
}
