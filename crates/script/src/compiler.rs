//! AST -> bytecode. All checking that can be done before the first message happens here:
//! unknown functions, modules, routes and PVs, wrong arity, arguments that can never be
//! valid, and functions used in a route kind they do not allow (through `route()` calls too).

use crate::ast::{self, BinaryOp, Expr, Item, RouteKindAst, Stmt, UnaryOp};
use crate::core_params;
use crate::diag::{Diagnostic, SourceInfo};
use crate::program::{
    BinOp, BoundCall, Keyword, Limits, LocalIdentity, MyselfSubject, Op, Program, RouteId,
    RouteInfo, SwitchTable, UnOp,
};
use ferrosip_api::args::{compile_regex, FixupEnv, RawArg, RouteTable};
use ferrosip_api::pv::Binder;
use ferrosip_api::{
    Callable, FunctionDef, ModuleParams, ParamType, PvRef, Registry, RouteKind, RouteMask, SetOp,
    Span, Value,
};
use indexmap::IndexMap;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// What the compiler produces besides the program.
pub struct Compiled {
    pub program: Program,
    /// Modules named by `loadmodule`, in order, with their parameters.
    pub modules: IndexMap<&'static str, ModuleParams>,
    /// Core parameters as written (`listen` may repeat).
    pub globals: IndexMap<String, Vec<ast::GlobalValue>>,
    pub warnings: Vec<Diagnostic>,
    /// Declared-only functions (`name()`) and PV classes (`$name`) the script uses, sorted,
    /// each once. Non-empty only when such uses were allowed (they are errors otherwise).
    pub declared_only: Vec<String>,
}

fn span(s: &ast::Span) -> Span {
    Span::new(s.start, s.end)
}

struct RouteEntry {
    kind: RouteKind,
    name: Option<String>,
    span: Span,
}

/// Calls made from a `route[NAME]` body, checked once its callers are known.
struct DeferredCheck {
    def: Arc<FunctionDef>,
    span: Span,
}

struct Compiler<'a> {
    reg: &'a Registry,
    /// The preprocessed text spans point into: PV uses inside strings are found in it.
    source: Arc<SourceInfo>,
    /// Uses of declared-only functions and PVs are warnings instead of errors.
    allow_declared: bool,
    declared_only: std::collections::BTreeSet<String>,
    diags: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    loaded: IndexMap<&'static str, ModuleParams>,
    routes: Vec<RouteEntry>,
    route_index: HashMap<(RouteTable, String), RouteId>,
    code: Vec<Op>,
    spans: Vec<Span>,
    consts: Vec<Value>,
    const_index: HashMap<Value, u32>,
    pvs: Vec<PvRef>,
    pv_index: HashMap<String, u32>,
    regexes: Vec<Arc<regex::bytes::Regex>>,
    calls: Vec<BoundCall>,
    switches: Vec<SwitchTable>,
    loops: u32,
    /// Jump sites of `break` waiting for the end of their loop/switch.
    break_targets: Vec<Vec<usize>>,
    /// Route being compiled: its kind (None for a subroutine) and id.
    current: Option<(Option<RouteKind>, RouteId)>,
    /// Static `route(X)` edges: caller route -> callee routes.
    edges: HashMap<RouteId, HashSet<RouteId>>,
    deferred: HashMap<RouteId, Vec<DeferredCheck>>,
}

struct Env<'c> {
    reg: &'c Registry,
    route_index: &'c HashMap<(RouteTable, String), RouteId>,
    loaded: &'c IndexMap<&'static str, ModuleParams>,
}

impl FixupEnv for Env<'_> {
    fn binder(&self) -> Binder<'_> {
        Binder::new(self.reg)
    }

    fn route_index(&self, table: RouteTable, name: &str) -> Option<u32> {
        self.route_index.get(&(table, name.to_string())).copied()
    }

    fn module_param(&self, module: &str, name: &str) -> Option<ferrosip_api::Value> {
        self.loaded.get(module).map(|p| p.get(name))
    }
}

fn table_of(kind: RouteKind, named: bool) -> Option<RouteTable> {
    Some(match kind {
        RouteKind::Request if named => RouteTable::Named,
        RouteKind::Failure => RouteTable::Failure,
        RouteKind::Branch => RouteTable::Branch,
        RouteKind::TmOnReply => RouteTable::OnReply,
        RouteKind::Event => RouteTable::Event,
        _ => return None,
    })
}

/// Module name from `loadmodule "path/tm.so"`.
pub(crate) fn module_name(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.strip_suffix(".so").unwrap_or(base)
}

impl<'a> Compiler<'a> {
    fn new(reg: &'a Registry, source: Arc<SourceInfo>, allow_declared: bool) -> Self {
        let mut loaded = IndexMap::new();
        for m in reg.modules().filter(|m| m.always_loaded) {
            loaded.insert(m.name, m.default_params());
        }
        Compiler {
            reg,
            source,
            allow_declared,
            declared_only: std::collections::BTreeSet::new(),
            diags: Vec::new(),
            warnings: Vec::new(),
            loaded,
            routes: Vec::new(),
            route_index: HashMap::new(),
            code: Vec::new(),
            spans: Vec::new(),
            consts: Vec::new(),
            const_index: HashMap::new(),
            pvs: Vec::new(),
            pv_index: HashMap::new(),
            regexes: Vec::new(),
            calls: Vec::new(),
            switches: Vec::new(),
            loops: 0,
            break_targets: Vec::new(),
            current: None,
            edges: HashMap::new(),
            deferred: HashMap::new(),
        }
    }

    fn err(&mut self, s: Span, msg: impl Into<String>) {
        self.diags.push(Diagnostic::error(s, msg));
    }

    /// A use of something declared but not built: an error (the script cannot run), or a
    /// warning when the caller allows such uses (`check --allow-declared`).
    fn declared_use(&mut self, at: Span, what: String, module: &str, verb: &str) {
        let message = format!("{what} (module {module}){DECLARED_USE} {verb} it cannot run");
        if self.allow_declared {
            self.warnings.push(Diagnostic::warning(at, message));
        } else {
            self.diags.push(Diagnostic::error(at, message));
        }
        self.declared_only.insert(what);
    }

    /// Reports each declared-only PV class written in the script text at `at` (a PV, or a
    /// string argument whose PVs a format or fixup reads). With `written`, a PV at the very
    /// start of the text is the target of an assignment; every other one is read.
    fn declared_pvs(&mut self, at: Span, written: bool) {
        let text = self
            .source
            .text()
            .get(at.start as usize..at.end as usize)
            .unwrap_or("");
        let found: Vec<(usize, usize, String)> = pv_class_names(text)
            .into_iter()
            .filter(|(_, _, name)| self.reg.pv_class(name).is_some_and(|c| c.declared()))
            .map(|(off, len, name)| (off, len, name.to_string()))
            .collect();
        for (off, len, name) in found {
            let module = self.reg.pv_module(&name).unwrap_or("core");
            let verb = if written && off == 0 {
                "writes"
            } else {
                "reads"
            };
            let start = at.start + off as u32;
            self.declared_use(
                Span::new(start, start + len as u32),
                format!("${name}"),
                module,
                verb,
            );
        }
    }

    fn emit(&mut self, op: Op, s: Span) -> usize {
        self.code.push(op);
        self.spans.push(s);
        self.code.len() - 1
    }

    fn here(&self) -> u32 {
        self.code.len() as u32
    }

    fn patch(&mut self, at: usize, target: u32) {
        match &mut self.code[at] {
            Op::Jump(t) | Op::JumpIfFalse(t) | Op::JumpIfTrue(t) => *t = target,
            _ => {}
        }
    }

    fn konst(&mut self, v: Value) -> u32 {
        if let Some(i) = self.const_index.get(&v) {
            return *i;
        }
        let i = self.consts.len() as u32;
        self.consts.push(v.clone());
        self.const_index.insert(v, i);
        i
    }

    fn pv(&mut self, text: &str, s: Span) -> Option<u32> {
        if let Some(i) = self.pv_index.get(text) {
            return Some(*i);
        }
        match Binder::new(self.reg).parse_pv(text) {
            Ok(p) => {
                let i = self.pvs.len() as u32;
                self.pvs.push(p);
                self.pv_index.insert(text.to_string(), i);
                Some(i)
            }
            Err(e) => {
                let at = Span::new(s.start + e.offset as u32, s.end);
                self.err(at, e.message);
                None
            }
        }
    }

    // ---- top level -------------------------------------------------------------------

    fn declare_items(
        &mut self,
        script: &ast::Script,
        globals: &mut IndexMap<String, Vec<ast::GlobalValue>>,
    ) {
        for item in &script.items {
            match item {
                Item::GlobalParam(g) => {
                    let name = g.name.as_str();
                    if !core_params::is_core_param(name) {
                        let hint = suggest(name, core_params::CORE_PARAMS.iter().copied());
                        self.err(
                            span(&g.name_span),
                            format!("unknown core parameter '{name}'{hint}"),
                        );
                        continue;
                    }
                    if !core_params::ACTIVE_PARAMS.contains(&name) {
                        // Accepted so Kamailio configs load, but an operator must not
                        // believe it is in force: `check` and `run` name it.
                        self.warnings.push(Diagnostic::warning(
                            span(&g.name_span),
                            format!(
                                "core parameter '{name}' is accepted for compatibility but has no effect in Ferrosip"
                            ),
                        ));
                    }
                    globals
                        .entry(name.to_string())
                        .or_default()
                        .push(g.value.clone());
                }
                Item::CfgVar(c) => {
                    let key = format!("{}.{}", c.group, c.name);
                    let v = match &c.value {
                        ast::Literal::Int(i) => Value::Int(*i),
                        ast::Literal::Str(s) => Value::from_string(s.clone()),
                    };
                    let store = self.reg.cfg_vars();
                    let mut m = store.write().unwrap_or_else(|e| e.into_inner());
                    m.insert(key, v);
                }
                Item::LoadModule(l) => {
                    let name = module_name(&l.path);
                    match self.reg.module(name) {
                        Some(m) => {
                            if !self.loaded.contains_key(m.name) {
                                self.loaded.insert(m.name, m.default_params());
                            }
                        }
                        None => {
                            let hint = self.reg.suggest_module(name);
                            let mut known: Vec<&str> = self.reg.modules().map(|m| m.name).collect();
                            known.sort_unstable();
                            self.diags.push(
                                Diagnostic::error(
                                    span(&l.span),
                                    format!("unknown module '{name}'{hint}"),
                                )
                                .note(format!("modules available: {}", known.join(", "))),
                            );
                        }
                    }
                }
                Item::LoadPath(_) => {}
                Item::ModParam(mp) => self.modparam(mp),
                Item::Route(r) => {
                    let (kind, named) = match r.kind {
                        RouteKindAst::Request => (RouteKind::Request, r.name.is_some()),
                        RouteKindAst::Failure => (RouteKind::Failure, true),
                        RouteKindAst::Branch => (RouteKind::Branch, true),
                        RouteKindAst::OnReply => {
                            if r.name.is_some() {
                                (RouteKind::TmOnReply, true)
                            } else {
                                (RouteKind::CoreOnReply, false)
                            }
                        }
                        RouteKindAst::OnSend => (RouteKind::OnSend, false),
                        RouteKindAst::Event => (RouteKind::Event, true),
                        RouteKindAst::Local => (RouteKind::Local, false),
                        RouteKindAst::Error => (RouteKind::Error, false),
                    };
                    let name = r.name.as_ref().map(|n| n.value.clone());
                    if named && name.is_none() {
                        self.err(
                            span(&r.span),
                            format!("{} needs a name: {}[NAME]", kind.keyword(), kind.keyword()),
                        );
                        continue;
                    }
                    let id = self.routes.len() as RouteId;
                    let key_table = if named { table_of(kind, true) } else { None };
                    let dup = match (&key_table, &name) {
                        (Some(t), Some(n)) => {
                            self.route_index.insert((*t, n.clone()), id).is_some()
                        }
                        _ => self
                            .routes
                            .iter()
                            .any(|e| e.kind == kind && e.name.is_none() && name.is_none()),
                    };
                    if dup {
                        let what = match &name {
                            Some(n) => {
                                format!("{}[{n}]", key_table.map_or("route", |t| t.keyword()))
                            }
                            None => kind.keyword().to_string(),
                        };
                        self.err(span(&r.span), format!("{what} is defined twice"));
                    }
                    self.routes.push(RouteEntry {
                        kind,
                        name,
                        span: span(&r.span),
                    });
                }
            }
        }
    }

    fn modparam(&mut self, mp: &ast::ModParam) {
        let value = match &mp.value {
            ast::Literal::Int(i) => Value::Int(*i),
            ast::Literal::Str(s) => Value::from_string(s.clone()),
        };
        for module in mp.module.split('|') {
            let module = module.trim();
            let Some(def) = self.reg.module(module) else {
                let hint = self.reg.suggest_module(module);
                self.err(
                    span(&mp.module_span),
                    format!("modparam for unknown module '{module}'{hint}"),
                );
                continue;
            };
            if !self.loaded.contains_key(def.name) {
                self.err(
                    span(&mp.module_span),
                    format!("modparam for module '{module}' before its loadmodule \"{module}.so\""),
                );
                continue;
            }
            if def.absorbed && def.param(&mp.param).is_none() {
                // Parameters of modules whose work the core does are accepted unchecked,
                // but for the few such a module declares (the database drivers' timeouts).
                continue;
            }
            let Some(p) = def.param(&mp.param) else {
                let names: Vec<&str> = def.params.iter().map(|p| p.name).collect();
                let hint = suggest(&mp.param, names.iter().copied());
                self.err(
                    span(&mp.param_span),
                    format!("module '{module}' has no parameter '{}'{hint}", mp.param),
                );
                continue;
            };
            if self.reg.module_is_declared_only(def.name) {
                self.warnings.push(Diagnostic::warning(
                    span(&mp.param_span),
                    format!(
                        "{}: the module is declared but not implemented yet: parameter {} has no effect",
                        def.name, p.name
                    ),
                ));
            }
            let converted = match (p.ty, &value) {
                (ParamType::Int, Value::Int(_)) | (ParamType::Str, Value::Str(_)) => {
                    Some(value.clone())
                }
                (ParamType::Int, v) => v.as_int().map(Value::Int),
                (ParamType::Str, Value::Int(i)) => Some(Value::from_string(i.to_string())),
                _ => None,
            };
            match converted {
                Some(v) => {
                    if let Some(params) = self.loaded.get_mut(def.name) {
                        params.push(p.name, v);
                    }
                }
                None => {
                    let want = match p.ty {
                        ParamType::Int => "a number",
                        ParamType::Str => "a string",
                    };
                    self.err(
                        span(&mp.value_span),
                        format!("parameter '{}' of module '{module}' takes {want}", mp.param),
                    );
                }
            }
        }
    }

    // ---- statements ------------------------------------------------------------------

    fn block(&mut self, stmts: &[Stmt]) {
        for s in stmts {
            self.stmt(s);
        }
    }

    fn stmt(&mut self, s: &Stmt) {
        match s {
            Stmt::Empty(_) => {}
            Stmt::Block(b) => self.block(&b.stmts),
            Stmt::Expr(e) => {
                // A bare call statement: the return code lands in $rc only.
                match e {
                    Expr::Call(c) => self.call(c, false),
                    Expr::RouteCall(r) => self.route_call(r, false),
                    other => {
                        self.expr(other);
                        self.emit(Op::Pop, span(other.span()));
                    }
                }
            }
            Stmt::Call(c) => self.call(c, false),
            Stmt::RouteCall(r) => self.route_call(r, false),
            Stmt::Assign(a) => {
                let sp = span(&a.span);
                let Some(pv) = self.pv(&a.target, span(&a.target_span)) else {
                    return;
                };
                if !self.pvs[pv as usize].is_writable() {
                    self.err(
                        span(&a.target_span),
                        format!("{} cannot be assigned", a.target),
                    );
                    return;
                }
                self.declared_pvs(span(&a.target_span), true);
                self.expr(&a.value);
                let op = if a.colon {
                    SetOp::Replace
                } else {
                    SetOp::Assign
                };
                self.emit(Op::StorePv(pv, op), sp);
            }
            Stmt::If(i) => {
                self.expr(&i.cond);
                let jf = self.emit(Op::JumpIfFalse(0), span(&i.span));
                self.stmt(&i.then);
                match &i.otherwise {
                    Some(e) => {
                        let j = self.emit(Op::Jump(0), span(&i.span));
                        let t = self.here();
                        self.patch(jf, t);
                        self.stmt(e);
                        let t = self.here();
                        self.patch(j, t);
                    }
                    None => {
                        let t = self.here();
                        self.patch(jf, t);
                    }
                }
            }
            Stmt::While(w) => {
                let sp = span(&w.span);
                let id = self.loops;
                self.loops += 1;
                self.emit(Op::LoopStart(id), sp);
                let top = self.here();
                self.expr(&w.cond);
                let jf = self.emit(Op::JumpIfFalse(0), sp);
                self.emit(Op::LoopIter(id), sp);
                self.break_targets.push(Vec::new());
                self.stmt(&w.body);
                self.emit(Op::Jump(top), sp);
                let end = self.here();
                self.patch(jf, end);
                for b in self.break_targets.pop().unwrap_or_default() {
                    self.patch(b, end);
                }
            }
            Stmt::Switch(sw) => self.switch(sw),
            Stmt::Break(sp) => {
                let at = self.emit(Op::Jump(0), span(sp));
                match self.break_targets.last_mut() {
                    Some(v) => v.push(at),
                    None => self.err(span(sp), "break outside of a while or switch"),
                }
            }
            Stmt::Return(r) => match &r.value {
                Some(v) => {
                    self.expr(v);
                    self.emit(Op::Return(true), span(&r.span));
                }
                None => {
                    self.emit(Op::Return(false), span(&r.span));
                }
            },
            // Kamailio turns `exit(v)`/`drop(v)` values into the return code; the VM ends
            // the script either way, so the value is evaluated only for its side effects.
            Stmt::Exit(e) => {
                self.exit_value(e);
                self.emit(Op::Exit, span(&e.span));
            }
            Stmt::Drop(e) => {
                self.exit_value(e);
                self.emit(Op::Drop, span(&e.span));
            }
        }
    }

    fn exit_value(&mut self, e: &ast::Exit) {
        if let Some(v) = &e.value {
            self.expr(v);
            self.emit(Op::Pop, span(v.span()));
        }
    }

    fn switch(&mut self, sw: &ast::Switch) {
        let sp = span(&sw.span);
        self.expr(&sw.value);
        let table_id = self.switches.len() as u32;
        self.switches.push(SwitchTable::default());
        self.emit(Op::Switch(table_id), sp);
        self.break_targets.push(Vec::new());
        let mut has_default = false;
        for case in &sw.cases {
            if case.regex {
                self.err(
                    span(&case.span),
                    "regular-expression case labels (case /\"re\":) are not supported yet; use if (... =~ ...)",
                );
            }
            let target = self.here();
            let table = &mut self.switches[table_id as usize];
            match &case.label {
                None => {
                    table.default = target;
                    has_default = true;
                }
                Some(ast::Literal::Int(i)) => {
                    if table.ints.insert(*i, target).is_some() {
                        self.err(span(&case.span), format!("case {i} appears twice"));
                    }
                }
                Some(ast::Literal::Str(s)) => {
                    if table.strs.insert(s.as_bytes().to_vec(), target).is_some() {
                        self.err(span(&case.span), format!("case \"{s}\" appears twice"));
                    }
                }
            }
            self.block(&case.body);
        }
        let end = self.here();
        if !has_default {
            self.switches[table_id as usize].default = end;
        }
        for b in self.break_targets.pop().unwrap_or_default() {
            self.patch(b, end);
        }
    }

    fn route_call(&mut self, r: &ast::RouteCallExpr, push: bool) {
        let sp = span(&r.span);
        match &r.target {
            ast::RouteTarget::Name(name) => {
                match self
                    .route_index
                    .get(&(RouteTable::Named, name.clone()))
                    .copied()
                {
                    Some(id) => {
                        if let Some((_, cur)) = self.current {
                            self.edges.entry(cur).or_default().insert(id);
                        }
                        self.emit(Op::CallRoute(id, push), sp);
                    }
                    None => {
                        let names = self
                            .route_index
                            .keys()
                            .filter(|(t, _)| *t == RouteTable::Named)
                            .map(|(_, n)| n.as_str());
                        let hint = suggest(name, names);
                        self.err(sp, format!("no route[{name}] in this script{hint}"));
                    }
                }
            }
            ast::RouteTarget::Dynamic(e) => {
                self.expr(e);
                self.emit(Op::CallRouteDynamic(push), sp);
            }
        }
    }

    fn call(&mut self, c: &ast::CallExpr, push: bool) {
        let sp = span(&c.span);
        let name = c.name.as_str();
        let Some(overloads) = self.reg.function(name) else {
            let hint = self.reg.suggest_function(name);
            self.err(
                span(&c.name_span),
                format!("unknown function '{name}'{hint}"),
            );
            return;
        };
        // Two modules may offer the same name and arity: the loaded one's is meant.
        let Some(def) = overloads
            .iter()
            .find(|f| f.arity() == c.args.len() && self.loaded.contains_key(f.module.as_str()))
            .or_else(|| overloads.iter().find(|f| f.arity() == c.args.len()))
            .cloned()
        else {
            let arities: Vec<String> = overloads.iter().map(|f| f.signature()).collect();
            self.err(
                sp,
                format!(
                    "{name}() takes {} argument(s), {} given: {}",
                    overloads
                        .iter()
                        .map(|f| f.arity().to_string())
                        .collect::<Vec<_>>()
                        .join(" or "),
                    c.args.len(),
                    arities.join(" | ")
                ),
            );
            return;
        };
        if !self.loaded.contains_key(def.module.as_str()) {
            self.err(
                span(&c.name_span),
                format!(
                    "{name}() is provided by module '{}', which is not loaded: add loadmodule \"{}.so\"",
                    def.module, def.module
                ),
            );
            return;
        }
        if matches!(def.call, Callable::Declared) {
            self.declared_use(
                span(&c.name_span),
                format!("{name}()"),
                &def.module,
                "calls",
            );
        }
        // A PV argument, or a string one (formats, regular expressions and PV names are all
        // read with the PVs written in them), may use declared-only PVs.
        for a in &c.args {
            if let ast::Arg::Pv(_, sp) | ast::Arg::Str(_, sp) = a {
                self.declared_pvs(span(sp), false);
            }
        }
        // Route-kind check: directly for top-level routes, later for subroutines.
        match self.current {
            Some((Some(kind), _)) if !def.routes.contains(kind) => {
                self.err(
                    span(&c.name_span),
                    format!(
                        "{name}() is not allowed in {} (allowed in: {})",
                        kind.keyword(),
                        def.routes
                    ),
                );
            }
            Some((None, id)) => self.deferred.entry(id).or_default().push(DeferredCheck {
                def: def.clone(),
                span: span(&c.name_span),
            }),
            _ => {}
        }
        let mut raws = Vec::with_capacity(c.args.len());
        let mut arg_spans = Vec::with_capacity(c.args.len());
        for a in &c.args {
            arg_spans.push(span(a.span()));
            match self.raw_arg(a) {
                Some(r) => raws.push(r),
                None => return,
            }
        }
        let env = Env {
            reg: self.reg,
            route_index: &self.route_index,
            loaded: &self.loaded,
        };
        let fixed = (def.fixup)(raws, &env);
        match fixed {
            Ok(args) => {
                let id = self.calls.len() as u32;
                let check_route = matches!(self.current, Some((None, _)));
                self.calls.push(BoundCall {
                    def,
                    args,
                    span: sp,
                    check_route,
                });
                self.emit(Op::Call(id, push), sp);
            }
            Err((i, msg)) => {
                let at = arg_spans.get(i).copied().unwrap_or(sp);
                let pname = def
                    .arg_names
                    .get(i)
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default();
                self.err(at, format!("{name}(): argument {}{pname}: {msg}", i + 1));
            }
        }
    }

    fn raw_arg(&mut self, a: &ast::Arg) -> Option<RawArg> {
        Some(match a {
            ast::Arg::Int(i, _) => RawArg::Int(*i),
            ast::Arg::Str(s, _) => RawArg::Str(s.clone()),
            ast::Arg::Ident(s, _) => RawArg::Ident(s.clone()),
            ast::Arg::Pv(text, sp) => {
                let i = self.pv(text, span(sp))?;
                RawArg::Pv(self.pvs[i as usize].clone())
            }
            // Kamailio evaluates an expression argument before the call. Here it is stored
            // in a `$var` of the call site's own (`.arg.<code offset>`, a name scripts do
            // not write) and the function reads it as a PV argument, so its fixup treats
            // it as any run-time value.
            ast::Arg::Expr(e) => {
                let sp = span(e.span());
                let hidden = format!("$var(.arg.{})", self.code.len());
                let i = self.pv(&hidden, sp)?;
                self.expr(e);
                self.emit(Op::StorePv(i, SetOp::Assign), sp);
                RawArg::Pv(self.pvs[i as usize].clone())
            }
        })
    }

    // ---- expressions -----------------------------------------------------------------

    fn expr(&mut self, e: &Expr) {
        let sp = span(e.span());
        match e {
            Expr::Int(i, _) => {
                let k = self.konst(Value::Int(*i));
                self.emit(Op::Const(k), sp);
            }
            Expr::Str(s, _) => {
                let v = Value::from_string(s.clone());
                let k = self.konst(v);
                self.emit(Op::Const(k), sp);
            }
            Expr::Null(_) => {
                let k = self.konst(Value::Null);
                self.emit(Op::Const(k), sp);
            }
            Expr::Pv(text, _) => {
                if let Some(i) = self.pv(text, sp) {
                    self.declared_pvs(sp, false);
                    self.emit(Op::LoadPv(i), sp);
                }
            }
            // `@via[1].branch` is the same select as `$sel(via[1].branch)`.
            Expr::Select(text, _) => {
                if let Some(i) = self.pv(&format!("$sel({text})"), sp) {
                    self.emit(Op::LoadPv(i), sp);
                }
            }
            Expr::Keyword(k, _) => self.keyword(*k, sp),
            Expr::Defined(inner, _) => match inner.as_ref() {
                Expr::Pv(text, psp) => {
                    if let Some(i) = self.pv(text, span(psp)) {
                        self.declared_pvs(span(psp), false);
                        self.emit(Op::Defined(i), sp);
                    }
                }
                other => {
                    self.expr(other);
                    let k = self.konst(Value::Null);
                    self.emit(Op::Const(k), sp);
                    self.emit(Op::Binary(BinOp::Ne), sp);
                }
            },
            Expr::Cast(to_int, inner, _) => {
                self.expr(inner);
                self.emit(
                    Op::Unary(if *to_int { UnOp::ToInt } else { UnOp::ToStr }),
                    sp,
                );
            }
            Expr::Unary(op, inner, _) => {
                self.expr(inner);
                let u = match op {
                    UnaryOp::Not => UnOp::Not,
                    UnaryOp::Neg => UnOp::Neg,
                    UnaryOp::BitNot => UnOp::BitNot,
                    UnaryOp::StrEmpty => UnOp::StrEmpty,
                    UnaryOp::StrLen => UnOp::StrLen,
                };
                self.emit(Op::Unary(u), sp);
            }
            Expr::Call(c) => self.call(c, true),
            Expr::RouteCall(r) => self.route_call(r, true),
            Expr::Binary(op, l, r, _) => self.binary(*op, l, r, sp),
        }
    }

    fn keyword(&mut self, k: ast::Keyword, sp: Span) {
        let kw = match k {
            ast::Keyword::Method => Keyword::Method,
            ast::Keyword::Uri => Keyword::Uri,
            ast::Keyword::FromUri => Keyword::FromUri,
            ast::Keyword::ToUri => Keyword::ToUri,
            ast::Keyword::SrcIp => Keyword::SrcIp,
            ast::Keyword::SrcPort => Keyword::SrcPort,
            ast::Keyword::DstIp => Keyword::DstIp,
            ast::Keyword::DstPort => Keyword::DstPort,
            ast::Keyword::SndIp => Keyword::SndIp,
            ast::Keyword::SndPort => Keyword::SndPort,
            ast::Keyword::ToIp => Keyword::ToIp,
            ast::Keyword::ToPort => Keyword::ToPort,
            ast::Keyword::SndProto => Keyword::SndProto,
            ast::Keyword::SndAf => Keyword::SndAf,
            ast::Keyword::Proto => Keyword::Proto,
            ast::Keyword::Af => Keyword::Af,
            ast::Keyword::Status => Keyword::Status,
            ast::Keyword::MsgLen => Keyword::MsgLen,
            ast::Keyword::RetCode => Keyword::RetCode,
            ast::Keyword::Myself => {
                self.err(
                    sp,
                    "myself can only be compared with == or != (e.g. uri==myself)",
                );
                return;
            }
            ast::Keyword::Const(c) => {
                let k = self.konst(Value::Int(c));
                self.emit(Op::Const(k), sp);
                return;
            }
        };
        self.emit(Op::Keyword(kw), sp);
    }

    fn binary(&mut self, op: BinaryOp, l: &Expr, r: &Expr, sp: Span) {
        // Short-circuit logic.
        if matches!(op, BinaryOp::And | BinaryOp::Or) {
            self.expr(l);
            let is_and = op == BinaryOp::And;
            let j = self.emit(
                if is_and {
                    Op::JumpIfFalse(0)
                } else {
                    Op::JumpIfTrue(0)
                },
                sp,
            );
            self.expr(r);
            self.emit(Op::Unary(UnOp::Not), sp);
            self.emit(Op::Unary(UnOp::Not), sp);
            let end_jump = self.emit(Op::Jump(0), sp);
            let short = self.here();
            self.patch(j, short);
            let k = self.konst(Value::Int(if is_and { 0 } else { 1 }));
            self.emit(Op::Const(k), sp);
            let end = self.here();
            self.patch(end_jump, end);
            return;
        }
        let is_eq = matches!(op, BinaryOp::Eq | BinaryOp::Ne);
        let neg = op == BinaryOp::Ne;
        // X == myself
        if is_eq {
            let (subject, other) = match (l, r) {
                (o, Expr::Keyword(ast::Keyword::Myself, _)) => (Some(o), true),
                (Expr::Keyword(ast::Keyword::Myself, _), o) => (Some(o), true),
                _ => (None, false),
            };
            if let (Some(subject), true) = (subject, other) {
                let subj = match subject {
                    Expr::Keyword(ast::Keyword::Uri, _) => MyselfSubject::Uri,
                    Expr::Keyword(ast::Keyword::FromUri, _) => MyselfSubject::FromUri,
                    Expr::Keyword(ast::Keyword::ToUri, _) => MyselfSubject::ToUri,
                    Expr::Keyword(ast::Keyword::SrcIp, _) => MyselfSubject::SrcIp,
                    Expr::Keyword(ast::Keyword::DstIp, _) => MyselfSubject::DstIp,
                    other => {
                        self.expr(other);
                        MyselfSubject::Value
                    }
                };
                self.emit(Op::Myself(subj, neg), sp);
                return;
            }
            // method == "INVITE" compares case-insensitively, as Kamailio does.
            if let (Expr::Keyword(ast::Keyword::Method, _), Expr::Str(s, _)) = (l, r) {
                let k = self.konst(Value::from_string(s.clone()));
                self.emit(Op::MethodIs(k, neg), sp);
                return;
            }
        }
        if matches!(op, BinaryOp::Match | BinaryOp::NotMatch) {
            let neg = op == BinaryOp::NotMatch;
            self.expr(l);
            match r {
                Expr::Str(re, rsp) => match compile_regex(re) {
                    Ok(rx) => {
                        let i = self.regexes.len() as u32;
                        self.regexes.push(rx);
                        self.emit(Op::Match(i, neg), sp);
                    }
                    Err(e) => self.err(span(rsp), e),
                },
                other => {
                    self.expr(other);
                    self.emit(Op::MatchDynamic(neg), sp);
                }
            }
            return;
        }
        self.expr(l);
        self.expr(r);
        let b = match op {
            BinaryOp::Add => BinOp::Add,
            BinaryOp::Sub => BinOp::Sub,
            BinaryOp::Mul => BinOp::Mul,
            BinaryOp::Div => BinOp::Div,
            BinaryOp::Mod => BinOp::Mod,
            BinaryOp::BitAnd => BinOp::BitAnd,
            BinaryOp::BitOr => BinOp::BitOr,
            BinaryOp::BitXor => BinOp::BitXor,
            BinaryOp::Shl => BinOp::Shl,
            BinaryOp::Shr => BinOp::Shr,
            BinaryOp::Eq => BinOp::Eq,
            BinaryOp::Ne => BinOp::Ne,
            BinaryOp::Lt => BinOp::Lt,
            BinaryOp::Le => BinOp::Le,
            BinaryOp::Gt => BinOp::Gt,
            BinaryOp::Ge => BinOp::Ge,
            BinaryOp::StrEq => BinOp::StrEq,
            BinaryOp::StrNe => BinOp::StrNe,
            BinaryOp::IEq => BinOp::IEq,
            BinaryOp::INe => BinOp::INe,
            BinaryOp::And | BinaryOp::Or | BinaryOp::Match | BinaryOp::NotMatch => {
                unreachable!("handled above")
            }
        };
        self.emit(Op::Binary(b), sp);
    }

    // ---- route-kind checks through route() calls -------------------------------------

    /// A `route[NAME]` subroutine runs in the kinds of the routes that reach it. A call in it
    /// that no reaching kind allows is an error; one that only some allow is a warning and is
    /// checked per message (scripts guard such calls with `is_request()` and the like, as
    /// Kamailio's stock config does).
    fn check_subroutines(&mut self) -> Vec<ferrosip_api::RouteMask> {
        let n = self.routes.len();
        let mut reached = vec![RouteMask::NONE; n];
        let mut via: HashMap<(RouteId, RouteKind), RouteId> = HashMap::new();
        for (root, entry) in self.routes.iter().enumerate() {
            let is_sub = entry.kind == RouteKind::Request && entry.name.is_some();
            if is_sub {
                continue;
            }
            let mut stack = vec![root as RouteId];
            let mut seen = HashSet::new();
            while let Some(r) = stack.pop() {
                if !seen.insert(r) {
                    continue;
                }
                for &callee in self.edges.get(&r).into_iter().flatten() {
                    reached[callee as usize] |= entry.kind.mask();
                    via.entry((callee, entry.kind)).or_insert(root as RouteId);
                    stack.push(callee);
                }
            }
        }
        let describe = |routes: &[RouteEntry], r: RouteId| {
            let e = &routes[r as usize];
            match &e.name {
                Some(n) => format!("{}[{n}]", e.kind.keyword().trim_end_matches("[...]")),
                None => e.kind.keyword().to_string(),
            }
        };
        for (id, checks) in std::mem::take(&mut self.deferred) {
            let mask = reached[id as usize];
            let route_name = self.routes[id as usize].name.clone().unwrap_or_default();
            for c in checks {
                let bad: Vec<RouteKind> = mask
                    .kinds()
                    .filter(|k| !c.def.routes.contains(*k))
                    .collect();
                let Some(first) = bad.first().copied() else {
                    continue;
                };
                let from = via
                    .get(&(id, first))
                    .map(|r| describe(&self.routes, *r))
                    .unwrap_or_default();
                let all_bad = bad.len() == mask.kinds().count();
                let message = format!(
                    "{}() is not allowed in {} (allowed in: {})",
                    c.def.name,
                    first.keyword(),
                    c.def.routes
                );
                let note = format!(
                    "route[{route_name}] runs in {} because it is called from {from}",
                    first.keyword()
                );
                if all_bad {
                    self.diags
                        .push(Diagnostic::error(c.span, message).note(note));
                } else {
                    self.warnings.push(
                        Diagnostic::warning(c.span, message)
                            .note(note)
                            .note("checked for each message: there the call fails with -1"),
                    );
                }
            }
        }
        for (i, e) in self.routes.iter().enumerate() {
            if e.kind == RouteKind::Request && e.name.is_some() && reached[i].is_empty() {
                self.warnings.push(Diagnostic::warning(
                    e.span,
                    format!(
                        "route[{}] is never called",
                        e.name.clone().unwrap_or_default()
                    ),
                ));
            }
        }
        reached
    }
}

pub(crate) use ferrosip_api::registry::suggest;

/// The part of the message every use of a declared-only function or PV carries.
const DECLARED_USE: &str = " is declared but not implemented yet: a script that";

/// True for the diagnostic of a use of a declared-only function or PV.
pub fn is_declared_use(d: &Diagnostic) -> bool {
    d.message.contains(DECLARED_USE)
}

/// Every PV class name written in `text` (`$name`, `$name(...)`, `$(name...)`, nested ones
/// too) with its byte offset and the length of `$name` / `$(name`.
fn pv_class_names(text: &str) -> Vec<(usize, usize, &str)> {
    let s = text.as_bytes();
    let mut found = Vec::new();
    for (i, _) in text.match_indices('$') {
        let start = if s.get(i + 1) == Some(&b'(') {
            i + 2
        } else {
            i + 1
        };
        let end = s[start.min(s.len())..]
            .iter()
            .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
            .map_or(s.len(), |p| start + p);
        if end > start {
            found.push((i, end - i, &text[start..end]));
        }
    }
    found
}

fn global_int(globals: &IndexMap<String, Vec<ast::GlobalValue>>, name: &str) -> Option<i64> {
    globals
        .get(name)
        .and_then(|v| v.last())
        .and_then(|g| g.raw.trim().parse().ok())
}

/// Builds the `myself` identity from `listen=`, `port=`, `advertise` and `alias=`.
fn local_identity(globals: &IndexMap<String, Vec<ast::GlobalValue>>) -> LocalIdentity {
    let mut id = LocalIdentity::default();
    let default_port = global_int(globals, "port").map(|p| p as u16);
    for g in globals.get("listen").into_iter().flatten() {
        let raw = g.raw.trim().trim_matches('"');
        let mut words = raw.split_whitespace();
        if let Some(sock) = words.next() {
            let (host, port) = split_socket(sock);
            id.add(&host, port.or(default_port));
        }
        while let Some(w) = words.next() {
            if w.eq_ignore_ascii_case("advertise") {
                if let Some(adv) = words.next() {
                    let (host, port) = split_host_port(adv);
                    id.add(&host, port);
                }
            }
        }
    }
    for g in globals.get("alias").into_iter().flatten() {
        let raw = g.raw.trim().trim_matches('"');
        let raw = raw
            .split_once(':')
            .filter(|(p, _)| ["udp", "tcp", "tls", "sctp", "ws", "wss"].contains(p))
            .map_or(raw, |(_, r)| r);
        let (host, port) = split_host_port(raw);
        id.add(&host, port);
    }
    id
}

/// `proto:host:port`, `host:port`, `[v6]:port`, `host`.
fn split_socket(s: &str) -> (String, Option<u16>) {
    let s = match s.split_once(':') {
        Some((p, rest))
            if ["udp", "tcp", "tls", "sctp", "ws", "wss", "any"]
                .contains(&p.to_ascii_lowercase().as_str()) =>
        {
            rest
        }
        _ => s,
    };
    split_host_port(s)
}

fn split_host_port(s: &str) -> (String, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return (h.to_string(), port);
        }
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_string(), p.parse().ok()),
        _ => (s.to_string(), None),
    }
}

/// Compiles a parsed script.
///
/// A use of a declared-only function or PV is an error, unless `allow_declared` makes it a
/// warning (for checking configs that are not meant to run).
pub fn compile(
    script: &ast::Script,
    source: Arc<SourceInfo>,
    reg: &Registry,
    allow_declared: bool,
) -> Result<Compiled, Vec<Diagnostic>> {
    let mut c = Compiler::new(reg, source.clone(), allow_declared);
    let mut globals = IndexMap::new();
    c.declare_items(script, &mut globals);
    let mut route_id: RouteId = 0;
    let mut entries = Vec::with_capacity(c.routes.len());
    for item in &script.items {
        let Item::Route(r) = item else {
            continue;
        };
        let id = route_id;
        route_id += 1;
        if id as usize >= c.routes.len() {
            break;
        }
        let entry = c.here();
        entries.push(entry);
        let kind = c.routes[id as usize].kind;
        let is_sub = kind == RouteKind::Request && c.routes[id as usize].name.is_some();
        c.current = Some((if is_sub { None } else { Some(kind) }, id));
        c.block(&r.body.stmts);
        // Falling off the end of a route returns 1.
        c.emit(Op::Return(false), span(&r.span));
    }
    let reached = c.check_subroutines();
    if !c.diags.is_empty() {
        return Err(c.diags);
    }
    c.warnings.extend(crate::lint::lints(script));
    let routes = c
        .routes
        .iter()
        .enumerate()
        .map(|(i, e)| RouteInfo {
            kind: e.kind,
            name: e.name.clone(),
            entry: entries.get(i).copied().unwrap_or(0),
            span: e.span,
            reached_from: reached[i],
        })
        .collect();
    let limits = Limits {
        max_while_loops: global_int(&globals, "max_while_loops")
            .map_or(100, |v| v.clamp(1, u32::MAX as i64) as u32),
        max_route_depth: global_int(&globals, "max_recursive_level")
            .map_or(256, |v| v.clamp(1, 10_000) as u32),
    };
    let myself = local_identity(&globals);
    let mut program = Program::new(
        c.code, c.spans, c.consts, c.pvs, c.regexes, c.calls, c.switches, routes, c.loops, limits,
        myself, source,
    );
    program.local_hosts = reg.api::<ferrosip_api::services::LocalHosts>();
    program.trace = Some(reg.cfg_trace());
    Ok(Compiled {
        program,
        modules: c.loaded,
        globals,
        warnings: c.warnings,
        declared_only: c.declared_only.into_iter().collect(),
    })
}
