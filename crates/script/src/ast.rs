//! The syntax tree of a route script. Every node an error can be about carries a [`Span`]
//! (byte offsets in the preprocessed text).

/// A byte range in the preprocessed text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

#[derive(Clone, Debug, Default)]
pub struct Script {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug)]
pub enum Item {
    GlobalParam(GlobalParam),
    CfgVar(CfgVar),
    LoadModule(LoadModule),
    LoadPath(LoadModule),
    ModParam(ModParam),
    Route(RouteBlock),
}

/// `name = value` with the value as written (trimmed); the compiler interprets it per
/// parameter (`listen=udp:1.2.3.4:5060 advertise 5.6.7.8:5060` is not a single token).
#[derive(Clone, Debug)]
pub struct GlobalParam {
    pub name: String,
    pub name_span: Span,
    pub value: GlobalValue,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalValue {
    pub raw: String,
    pub span: Span,
    /// Set when the whole value is one number, string or word (`children=8`, `dns=no`,
    /// `alias="example.com"`, `log_facility=LOG_LOCAL0`).
    pub parsed: Option<ParamValue>,
}

/// A global parameter value that is a single token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamValue {
    /// Also `yes`/`true`/`on`/`enable` (1) and `no`/`false`/`off`/`disable` (0), which
    /// Kamailio's lexer turns into numbers.
    Int(i64),
    /// Unescaped.
    Str(String),
    Ident(String),
}

impl GlobalValue {
    /// The value without surrounding quotes.
    pub fn unquoted(&self) -> &str {
        let r = self.raw.trim();
        r.strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .unwrap_or(r)
    }
}

/// `group.name = value desc "text"`.
#[derive(Clone, Debug)]
pub struct CfgVar {
    pub group: String,
    pub name: String,
    /// `group.name`.
    pub name_span: Span,
    pub value: Literal,
    pub value_span: Span,
    pub desc: Option<String>,
    pub span: Span,
}

/// `loadmodule "tm.so"` (also `loadmodule("tm.so", "opts")`), or `loadpath "dir"` /
/// `mpath "dir"`.
#[derive(Clone, Debug)]
pub struct LoadModule {
    pub path: String,
    /// The string literal.
    pub path_span: Span,
    /// Kamailio's second `loadmodule` argument.
    pub opts: Option<String>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct ModParam {
    pub module: String,
    pub module_span: Span,
    pub param: String,
    pub param_span: Span,
    pub value: Literal,
    pub value_span: Span,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Literal {
    Int(i64),
    Str(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteKindAst {
    /// `request_route`, `route`, `route[NAME]`
    Request,
    Failure,
    Branch,
    /// `onreply_route[NAME]`, or unnamed `onreply_route`/`reply_route`
    OnReply,
    OnSend,
    Event,
    Local,
    Error,
}

#[derive(Clone, Debug)]
pub struct Name {
    pub value: String,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct RouteBlock {
    pub kind: RouteKindAst,
    pub name: Option<Name>,
    pub body: Block,
    /// The header (`failure_route[X]`).
    pub span: Span,
}

#[derive(Clone, Debug, Default)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum Stmt {
    /// A lone `;`.
    Empty(Span),
    Block(Block),
    Expr(Expr),
    Call(CallExpr),
    RouteCall(RouteCallExpr),
    Assign(Assign),
    If(If),
    While(While),
    Switch(Switch),
    Break(Span),
    Return(Return),
    /// `exit`, `exit()`, `exit(expr)`, `exit expr`.
    Exit(Exit),
    /// `drop`, `drop()`, `drop(expr)`, `drop expr`.
    Drop(Exit),
}

impl Stmt {
    pub fn span(&self) -> Span {
        match self {
            Stmt::Empty(s) | Stmt::Break(s) => *s,
            Stmt::Block(b) => b.span,
            Stmt::Expr(e) => *e.span(),
            Stmt::Call(c) => c.span,
            Stmt::RouteCall(r) => r.span,
            Stmt::Assign(a) => a.span,
            Stmt::If(i) => i.span,
            Stmt::While(w) => w.span,
            Stmt::Switch(s) => s.span,
            Stmt::Return(r) => r.span,
            Stmt::Exit(e) | Stmt::Drop(e) => e.span,
        }
    }
}

/// `exit` or `drop` with the optional value Kamailio accepts (it becomes the return code).
#[derive(Clone, Debug)]
pub struct Exit {
    pub value: Option<Expr>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Assign {
    /// The PV as written.
    pub target: String,
    pub target_span: Span,
    pub value: Expr,
    /// `:=` rather than `=`.
    pub colon: bool,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct If {
    pub cond: Expr,
    pub then: Box<Stmt>,
    pub otherwise: Option<Box<Stmt>>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct While {
    pub cond: Expr,
    pub body: Box<Stmt>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Switch {
    pub value: Expr,
    pub cases: Vec<Case>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Case {
    /// `None` for `default`.
    pub label: Option<Literal>,
    pub label_span: Option<Span>,
    /// `case /"regex":` matches the switch value against the label as a regex.
    pub regex: bool,
    pub body: Vec<Stmt>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct Return {
    pub value: Option<Expr>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct CallExpr {
    pub name: String,
    pub name_span: Span,
    pub args: Vec<Arg>,
    pub span: Span,
}

/// A function argument, kept in the form it was written so the compiler can apply the
/// function's own fixup.
#[derive(Clone, Debug)]
pub enum Arg {
    Int(i64, Span),
    /// Unescaped; PVs inside are not split here (the format layer does that).
    Str(String, Span),
    /// A bare word as written: a name (`RELAY`, `MANAGE_FAILURE`), a constant (`UDP`), or
    /// an address Kamailio accepts unquoted (`1.2.3.4`, `udp:10.0.0.1:5060`).
    Ident(String, Span),
    /// The PV token as written (`$var(x)`, `$(hdr(Via)[0])`).
    Pv(String, Span),
    /// Anything else (`$var(a) + 1`, `"x" + $rU`).
    Expr(Box<Expr>),
}

impl Arg {
    pub fn span(&self) -> &Span {
        match self {
            Arg::Int(_, s) | Arg::Str(_, s) | Arg::Ident(_, s) | Arg::Pv(_, s) => s,
            Arg::Expr(e) => e.span(),
        }
    }
}

#[derive(Clone, Debug)]
pub enum RouteTarget {
    Name(String),
    Dynamic(Box<Expr>),
}

#[derive(Clone, Debug)]
pub struct RouteCallExpr {
    pub target: RouteTarget,
    pub span: Span,
}

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
    /// `snd_ip`, `snd_port`, `snd_proto`, `snd_af`: the socket a message leaves from
    /// (onsend_route).
    SndIp,
    SndPort,
    SndProto,
    SndAf,
    /// `to_ip`, `to_port`: where a message is sent (onsend_route).
    ToIp,
    ToPort,
    MsgLen,
    RetCode,
    Myself,
    /// `UDP`, `TCP`, `INET`, ... as their numeric values.
    Const(i64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Not,
    Neg,
    BitNot,
    /// `strempty(x)`: 1 when x is null or the empty string.
    StrEmpty,
    /// `strlen(x)`
    StrLen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Or,
    And,
    BitOr,
    BitXor,
    BitAnd,
    Eq,
    Ne,
    Match,
    NotMatch,
    StrEq,
    StrNe,
    IEq,
    INe,
    Lt,
    Le,
    Gt,
    Ge,
    Shl,
    Shr,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

#[derive(Clone, Debug)]
pub enum Expr {
    Int(i64, Span),
    Str(String, Span),
    /// `$null`.
    Null(Span),
    /// The PV token as written.
    Pv(String, Span),
    /// `@ruri.user` without the `@`, unparsed.
    Select(String, Span),
    Keyword(Keyword, Span),
    Defined(Box<Expr>, Span),
    /// `(int)x` when true, `(str)x` when false.
    Cast(bool, Box<Expr>, Span),
    Unary(UnaryOp, Box<Expr>, Span),
    Binary(BinaryOp, Box<Expr>, Box<Expr>, Span),
    Call(CallExpr),
    RouteCall(RouteCallExpr),
}

impl Expr {
    pub fn span(&self) -> &Span {
        match self {
            Expr::Int(_, s)
            | Expr::Str(_, s)
            | Expr::Null(s)
            | Expr::Pv(_, s)
            | Expr::Select(_, s)
            | Expr::Keyword(_, s)
            | Expr::Defined(_, s)
            | Expr::Cast(_, _, s)
            | Expr::Unary(_, _, s)
            | Expr::Binary(_, _, _, s) => s,
            Expr::Call(c) => &c.span,
            Expr::RouteCall(r) => &r.span,
        }
    }
}
