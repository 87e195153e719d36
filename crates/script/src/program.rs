//! The compiled, immutable form of a script: one flat instruction vector for all routes,
//! a constant pool, the bound function calls and PV references, and a span per instruction.
//! Shared by `Arc` between workers and swapped as a whole on reload.

use crate::diag::SourceInfo;
use ferrosip_api::args::FixedArg;
use ferrosip_api::{FunctionDef, PvRef, RouteKind, SetOp, Span, Value};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

/// Index of a route in [`Program::routes`].
pub type RouteId = u32;

/// Binary operators on values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    BitAnd,
    BitOr,
    BitXor,
    Shl,
    Shr,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// String equality (`eq`), case-insensitive with `IEq`.
    StrEq,
    StrNe,
    IEq,
    INe,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    Not,
    Neg,
    BitNot,
    ToInt,
    ToStr,
    StrEmpty,
    StrLen,
}

/// The message attributes scripts reach by keyword (`method`, `src_ip`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keyword {
    Method,
    Uri,
    FromUri,
    ToUri,
    SrcIp,
    SrcPort,
    DstIp,
    DstPort,
    Proto,
    Af,
    Status,
    MsgLen,
    RetCode,
    /// The send side, in `onsend_route` only (null elsewhere): the local socket a message
    /// leaves from (`snd_ip`, `snd_port`), its transport and family (`snd_proto`,
    /// `snd_af`), where it goes (`to_ip`, `to_port`).
    SndIp,
    SndPort,
    SndProto,
    SndAf,
    ToIp,
    ToPort,
}

/// Which value a `myself` comparison looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MyselfSubject {
    Uri,
    FromUri,
    ToUri,
    SrcIp,
    DstIp,
    /// Any other value: compared as a URI, else as a host.
    Value,
}

/// One instruction. Operands are indexes into the program's tables.
#[derive(Clone, Debug)]
pub enum Op {
    /// Push `consts[i]`.
    Const(u32),
    /// Push the value of `pvs[i]`.
    LoadPv(u32),
    /// Pop a value and assign it to `pvs[i]` (`Value::Null` deletes).
    StorePv(u32, SetOp),
    /// Push 1 if `pvs[i]` has a value, else 0.
    Defined(u32),
    Keyword(Keyword),
    Unary(UnOp),
    /// Pop right, pop left, push the result.
    Binary(BinOp),
    /// Pop a value; push whether it matches `regexes[i]` (negated for `!~`).
    Match(u32, bool),
    /// Pop a regex text, pop a value; push whether it matches (negated for `!~`).
    MatchDynamic(bool),
    /// `method == "INVITE"`: case-insensitive method test against `consts[i]`.
    MethodIs(u32, bool),
    /// Push whether the subject (popped when `Value`) is a local address (negated for `!=`).
    Myself(MyselfSubject, bool),
    /// Call `calls[i]`; its return code becomes `$rc`; a code of 0 ends the script.
    /// Pushes the code when `push` is set (the call is used as a value).
    Call(u32, bool),
    /// Run route `i` as a subroutine; its return value becomes `$rc` (pushed when set).
    CallRoute(RouteId, bool),
    /// Pop a route name and run that `route[NAME]` (`route($var(r))`).
    CallRouteDynamic(bool),
    Jump(u32),
    /// Pop; jump when false.
    JumpIfFalse(u32),
    /// Pop; jump when true.
    JumpIfTrue(u32),
    /// Pop and discard.
    Pop,
    /// Pop a value and branch through `switches[i]`.
    Switch(u32),
    /// Reset the iteration counter of loop `i` (entering a `while`).
    LoopStart(u32),
    /// Count one iteration of loop `i`; fails past `max_while_loops`.
    LoopIter(u32),
    /// `return;` (1) or `return expr;` (popped); 0 ends the script.
    Return(bool),
    Exit,
    Drop,
}

/// A function call bound at load time.
pub struct BoundCall {
    pub def: Arc<FunctionDef>,
    pub args: Vec<FixedArg>,
    pub span: Span,
    /// A call in a `route[NAME]` subroutine that some reaching route kind does not allow:
    /// the kind is checked for each message.
    pub check_route: bool,
}

/// Jump table of a `switch`.
#[derive(Debug, Default)]
pub struct SwitchTable {
    pub ints: HashMap<i64, u32>,
    pub strs: HashMap<Vec<u8>, u32>,
    pub default: u32,
}

/// A route's entry in the program.
#[derive(Clone, Debug)]
pub struct RouteInfo {
    pub kind: RouteKind,
    /// `None` for the unnamed request/reply/onsend routes.
    pub name: Option<String>,
    pub entry: u32,
    pub span: Span,
    /// For `route[NAME]` subroutines: the kinds of routes that reach it.
    pub reached_from: ferrosip_api::RouteMask,
}

/// Limits that keep a runaway script from hanging a worker.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Kamailio's `max_while_loops`: iterations of one `while` before it fails.
    pub max_while_loops: u32,
    /// Kamailio's `max_recursive_level`: nested `route()` calls.
    pub max_route_depth: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_while_loops: 100,
            max_route_depth: 256,
        }
    }
}

/// Local addresses and aliases that `myself` matches when no server runs the script
/// (tests, `ferrosip check`): what `listen=`, `advertise` and `alias=` name. A running
/// server answers from its bound sockets instead (`Services::is_myself`).
#[derive(Clone, Debug, Default)]
pub struct LocalIdentity {
    /// Host (lower-case; IPv6 without brackets) and port (`None` = any port).
    pub addresses: Vec<(String, Option<u16>)>,
}

impl LocalIdentity {
    pub fn add(&mut self, host: &str, port: Option<u16>) {
        let h = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if !self.addresses.contains(&(h.clone(), port)) {
            self.addresses.push((h, port));
        }
    }

    /// Whether `host[:port]` is one of ours; `port: None` asks about the host on any port
    /// (a URI without a port is asked with its scheme's default port).
    pub fn matches(&self, host: &[u8], port: Option<u16>) -> bool {
        let host = host.strip_prefix(b"[").unwrap_or(host);
        let host = host.strip_suffix(b"]").unwrap_or(host);
        self.addresses.iter().any(|(h, p)| {
            h.as_bytes().eq_ignore_ascii_case(host)
                && match (p, port) {
                    (Some(p), Some(q)) => *p == q,
                    _ => true,
                }
        })
    }
}

/// A compiled script.
pub struct Program {
    pub code: Vec<Op>,
    /// Span of each instruction, for run-time errors.
    pub spans: Vec<Span>,
    pub consts: Vec<Value>,
    pub pvs: Vec<PvRef>,
    pub regexes: Vec<Arc<regex::bytes::Regex>>,
    pub calls: Vec<BoundCall>,
    pub switches: Vec<SwitchTable>,
    pub routes: Vec<RouteInfo>,
    pub loops: u32,
    pub limits: Limits,
    pub myself: LocalIdentity,
    /// Hosts a module made local (`domain`'s `register_myself`), asked after `myself`.
    pub local_hosts: Option<Arc<ferrosip_api::services::LocalHosts>>,
    /// Maps spans back to file:line:column.
    pub source: Arc<SourceInfo>,
    by_name: HashMap<(RouteKind, String), RouteId>,
    main: HashMap<RouteKind, RouteId>,
    /// Routes written in another language (`cfgengine "lua"`): when set, route lookups and
    /// runs go to it instead of the bytecode (see [`crate::engine`]).
    pub engine: Option<Arc<dyn crate::engine::RouteEngine>>,
    /// The statement trace switch of the registry the program was compiled against
    /// (`None` for a program built without one): looked at once per route run.
    pub trace: Option<Arc<ferrosip_api::trace::CfgTrace>>,
}

impl Program {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        code: Vec<Op>,
        spans: Vec<Span>,
        consts: Vec<Value>,
        pvs: Vec<PvRef>,
        regexes: Vec<Arc<regex::bytes::Regex>>,
        calls: Vec<BoundCall>,
        switches: Vec<SwitchTable>,
        routes: Vec<RouteInfo>,
        loops: u32,
        limits: Limits,
        myself: LocalIdentity,
        source: Arc<SourceInfo>,
    ) -> Program {
        let mut by_name = HashMap::new();
        let mut main = HashMap::new();
        for (i, r) in routes.iter().enumerate() {
            match &r.name {
                Some(n) => {
                    by_name.insert((r.kind, n.clone()), i as RouteId);
                }
                None => {
                    main.insert(r.kind, i as RouteId);
                }
            }
        }
        Program {
            code,
            spans,
            consts,
            pvs,
            regexes,
            calls,
            switches,
            routes,
            loops,
            limits,
            myself,
            local_hosts: None,
            source,
            by_name,
            main,
            engine: None,
            trace: None,
        }
    }

    /// Whether a module made `host` local ([`Program::local_hosts`]).
    pub fn is_module_local(&self, host: &[u8]) -> bool {
        self.local_hosts.as_ref().is_some_and(|h| h.is_local(host))
    }

    /// The unnamed route of a kind: `request_route`, the core `onreply_route`, `onsend_route`.
    pub fn main_route(&self, kind: RouteKind) -> Option<RouteId> {
        if let Some(engine) = &self.engine {
            return engine.main_route(kind);
        }
        self.main.get(&kind).copied()
    }

    /// A named route: `failure_route[NAME]`, `event_route[dispatcher:dst-down]`; for
    /// `route[NAME]` subroutines use `RouteKind::Request`.
    pub fn named_route(&self, kind: RouteKind, name: &str) -> Option<RouteId> {
        if let Some(engine) = &self.engine {
            return engine.named_route(kind, name);
        }
        self.by_name.get(&(kind, name.to_string())).copied()
    }

    /// A human-readable listing of the bytecode, route by route (`ferrosip check --dump`).
    pub fn dump(&self) -> String {
        let mut out = String::new();
        let mut entries: Vec<(u32, usize)> = self
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| (r.entry, i))
            .collect();
        entries.sort();
        for (n, (entry, ri)) in entries.iter().enumerate() {
            let r = &self.routes[*ri];
            let end = entries
                .get(n + 1)
                .map_or(self.code.len() as u32, |(e, _)| *e);
            let title = self.route_title(*ri as RouteId);
            let loc = self.source.locate(r.span.start);
            let _ = writeln!(out, "{title}  ; {loc}");
            for pc in *entry..end {
                let op = &self.code[pc as usize];
                let _ = writeln!(out, "  {pc:5}  {}", self.describe(op));
            }
            out.push('\n');
        }
        out
    }

    /// How a route is written in the config: `request_route`, `route[AUTH]`,
    /// `failure_route[MISSED]`.
    pub fn route_title(&self, id: RouteId) -> String {
        let Some(r) = self.routes.get(id as usize) else {
            return format!("route #{id}");
        };
        match (&r.kind, &r.name) {
            (RouteKind::Request, Some(name)) => format!("route[{name}]"),
            (k, Some(name)) => format!("{}[{name}]", k.keyword().trim_end_matches("[...]")),
            (k, None) => k.keyword().to_string(),
        }
    }

    fn describe(&self, op: &Op) -> String {
        match op {
            Op::Const(i) => format!("const     {:?}", self.consts[*i as usize].to_string()),
            Op::LoadPv(i) => format!("load      {}", self.pvs[*i as usize].text()),
            Op::StorePv(i, SetOp::Assign) => format!("store     {}", self.pvs[*i as usize].text()),
            Op::StorePv(i, SetOp::Replace) => {
                format!("store:=   {}", self.pvs[*i as usize].text())
            }
            Op::Defined(i) => format!("defined   {}", self.pvs[*i as usize].text()),
            Op::Match(i, neg) => format!(
                "{}     /{}/",
                if *neg { "nmatch" } else { "match " },
                self.regexes[*i as usize].as_str()
            ),
            Op::MethodIs(i, neg) => format!(
                "{} {}",
                if *neg { "method!=" } else { "method==" },
                self.consts[*i as usize]
            ),
            Op::Call(i, push) => {
                let c = &self.calls[*i as usize];
                format!(
                    "call      {}/{}{}",
                    c.def.name,
                    c.def.arity(),
                    if *push { "  (value)" } else { "" }
                )
            }
            Op::CallRoute(r, push) => {
                let name = self.routes[*r as usize].name.clone().unwrap_or_default();
                format!("route     {name}{}", if *push { "  (value)" } else { "" })
            }
            other => format!("{other:?}").to_lowercase(),
        }
    }
}
