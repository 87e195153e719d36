//! Typed function arguments: converted and checked once at load time (the "fixup"), then
//! evaluated cheaply for each call.
//!
//! A function is registered with a typed Rust handler, e.g.
//! `|ctx: &mut MsgContext, code: i64, reason: Bytes| ...`; each parameter type implements
//! [`ArgType`], which says how the script's argument (a literal, an identifier, a PV, or a
//! string with PVs inside) is fixed up at load and turned into the Rust value per call.
//! A literal that can never be valid (`"abc"` for a number, a bad regex, an unknown route
//! name) is a load-time error at the argument's location.
//!
//! The same types also convert run-time [`Value`]s ([`ArgType::from_value`]): that is how
//! Lua's `KSR.*` and the control interface call a function with values computed while a
//! message is processed. Conversions follow Kamailio's KEMI: an int from an int or a
//! numeric string, a string from anything but null (an int printed in decimal), flags
//! range-checked, a regex compiled on the call (through a small per-thread cache), a
//! pseudo-variable or a route named by a string; a bad value is an [`FnError`], never a
//! panic. Where it is natural, a fixup of a literal is this conversion done once at load.

use crate::context::MsgContext;
use crate::error::FnError;
use crate::format::Format;
use crate::pv::{Binder, PvRef};
use crate::value::{parse_int, Value};
use bytes::Bytes;
use std::any::Any;
use std::sync::Arc;

/// A function argument as written in the script, before fixup.
#[derive(Clone, Debug)]
pub enum RawArg {
    /// An integer literal.
    Int(i64),
    /// A string literal (escapes already resolved; PVs inside not parsed yet).
    Str(String),
    /// A bare identifier (`route(RELAY)`, `t_on_failure(MANAGE_FAILURE)`).
    Ident(String),
    /// A single pseudo-variable.
    Pv(PvRef),
}

impl RawArg {
    /// The argument as the script wrote it, for error messages.
    pub fn describe(&self) -> String {
        match self {
            RawArg::Int(i) => format!("{i}"),
            RawArg::Str(s) => format!("\"{s}\""),
            RawArg::Ident(s) => s.clone(),
            RawArg::Pv(p) => p.text().to_string(),
        }
    }
}

/// The route tables a function argument can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteTable {
    /// `route[NAME]`
    Named,
    /// `failure_route[NAME]`
    Failure,
    /// `branch_route[NAME]`
    Branch,
    /// `onreply_route[NAME]`
    OnReply,
    /// `event_route[NAME]`
    Event,
}

impl RouteTable {
    /// The block keyword of the table (`failure_route`, ...).
    pub const fn keyword(self) -> &'static str {
        match self {
            RouteTable::Named => "route",
            RouteTable::Failure => "failure_route",
            RouteTable::Branch => "branch_route",
            RouteTable::OnReply => "onreply_route",
            RouteTable::Event => "event_route",
        }
    }
}

/// What converting an argument may consult besides the argument itself: the PV parser, the
/// routes of the script and the modules' parameters. At load time the compiler provides it
/// (the script being compiled: see [`FixupEnv`]); at run time the caller of
/// [`crate::FunctionDef::call_values`] does, for the program that is running
/// (`ferrosip_script::ScriptCallEnv`).
pub trait CallEnv {
    /// Parses pseudo-variables and formats against the registry.
    fn binder(&self) -> Binder<'_>;
    /// Index of the route `name` in `table`, if the script defines it.
    fn route_index(&self, table: RouteTable, name: &str) -> Option<u32>;
    /// The value a module parameter has, for arguments that depend on one (e.g.
    /// registrar's `received_avp` names the AVP `save()` reads). At load time this is the
    /// value at this point of the script (as in Kamailio, `modparam` lines come before the
    /// routes using them). `None` when the module is not loaded.
    fn module_param(&self, _module: &str, _name: &str) -> Option<Value> {
        None
    }
}

/// What the compiler offers a fixup: the same contract as a run-time call, answered for
/// the script being compiled.
pub use self::CallEnv as FixupEnv;

/// The kind of an argument, for docs, error messages and the Lua binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    /// An integer (`i64`): a literal, or a string or PV holding a decimal number.
    Int,
    /// A string ([`Bytes`]), possibly with PVs inside (a format).
    Str,
    /// Any script value ([`Value`]): null, integer or string.
    Value,
    /// A regular expression, compiled once at load when literal.
    Regex,
    /// A writable pseudo-variable.
    PvOut,
    /// A message or branch flag number, 0..63.
    Flag,
    /// The name of a route of the given table, resolved at load.
    Route(RouteTable),
    /// A module-specific type, named for the docs.
    Custom(&'static str),
}

impl ArgKind {
    /// How the docs and error messages name the kind.
    pub fn describe(self) -> &'static str {
        match self {
            ArgKind::Int => "int",
            ArgKind::Str => "string",
            ArgKind::Value => "value",
            ArgKind::Regex => "regex",
            ArgKind::PvOut => "writable pseudo-variable",
            ArgKind::Flag => "flag (0..63)",
            ArgKind::Route(t) => t.keyword(),
            ArgKind::Custom(n) => n,
        }
    }
}

/// A fixed-up argument, stored in the compiled program.
pub struct FixedArg(Box<dyn Any + Send + Sync>);

impl FixedArg {
    /// Keeps `value` for run time.
    pub fn new<T: Any + Send + Sync>(value: T) -> FixedArg {
        FixedArg(Box::new(value))
    }

    /// The value kept, as the type the fixup stored; an internal error otherwise.
    pub fn downcast<T: Any>(&self) -> Result<&T, FnError> {
        self.0
            .downcast_ref()
            .ok_or_else(|| FnError::new("internal error: argument fixed up with another type"))
    }
}

impl std::fmt::Debug for FixedArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FixedArg")
    }
}

/// A Rust type a function parameter can have.
pub trait ArgType: Sized + 'static {
    /// What fixup keeps for run time.
    type Fixed: Send + Sync + 'static;
    /// The kind, for the docs, error messages and the Lua binding.
    const KIND: ArgKind;
    /// Load time: checks and converts the script's argument once.
    fn fixup(raw: RawArg, env: &dyn FixupEnv) -> Result<Self::Fixed, String>;
    /// Each call of a compiled script: the value from what fixup kept.
    fn eval(fixed: &Self::Fixed, ctx: &MsgContext) -> Result<Self, FnError>;
    /// A call by value (Lua `KSR.*`, the control interface): converts a run-time value,
    /// with the same rules a literal meets at load time.
    fn from_value(value: Value, env: &dyn CallEnv) -> Result<Self, FnError>;
}

/// An argument that is a small specification written in the script and parsed once, at
/// load (avpops' `"$avp(name)/g"`, `"op/value/flags"`): a literal, or a bare
/// pseudo-variable taken as its text. Implement it (with [`ArgType`] coming from it) for
/// a type with its own parser, instead of writing the four conversions by hand.
pub trait Spec: Clone + Send + Sync + 'static {
    /// What the argument is, for the docs and error messages.
    const KIND: &'static str;
    /// Parses the argument's text; the error is shown at the argument's location.
    fn parse(text: &str, binder: &Binder<'_>) -> Result<Self, String>;
}

impl<T: Spec> ArgType for T {
    type Fixed = T;
    const KIND: ArgKind = ArgKind::Custom(<T as Spec>::KIND);

    fn fixup(raw: RawArg, env: &dyn FixupEnv) -> Result<T, String> {
        match raw {
            RawArg::Str(s) => T::parse(&s, &env.binder()),
            RawArg::Pv(p) => T::parse(p.text(), &env.binder()),
            other => Err(format!(
                "expected {}, found {}",
                <T as Spec>::KIND,
                other.describe()
            )),
        }
    }

    fn eval(fixed: &T, _ctx: &MsgContext) -> Result<T, FnError> {
        Ok(fixed.clone())
    }

    fn from_value(value: Value, env: &dyn CallEnv) -> Result<T, FnError> {
        let text = value_to_text(value)?;
        T::parse(&text, &env.binder()).map_err(FnError::new)
    }
}

/// The integer a value stands for, as KEMI converts it: an int, or a string holding a
/// decimal number.
pub fn value_to_int(value: &Value) -> Result<i64, FnError> {
    match value {
        Value::Int(i) => Ok(*i),
        Value::Str(s) => parse_int(s).ok_or_else(|| {
            FnError::new(format!(
                "expected a number, found \"{}\"",
                String::from_utf8_lossy(s)
            ))
        }),
        Value::Null => Err(FnError::new("expected a number, found null")),
    }
}

/// The string a value stands for: a string itself, an int printed in decimal; null has
/// none (an error, as a nil string argument is in KEMI).
pub fn value_to_bytes(value: Value) -> Result<Bytes, FnError> {
    value
        .to_bytes()
        .ok_or_else(|| FnError::new("expected a string, found null"))
}

/// [`value_to_bytes`] as text, for arguments that are parsed (regexes, names).
pub fn value_to_text(value: Value) -> Result<String, FnError> {
    value_to_bytes(value).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// How many compiled regexes a thread keeps.
const REGEX_CACHE_SIZE: usize = 64;

thread_local! {
    /// Regexes compiled on calls, by flavour and text: a value call or a dynamic argument
    /// usually repeats the same few patterns. Per thread, so a lookup takes no lock.
    static REGEX_CACHE: std::cell::RefCell<
        std::collections::HashMap<(&'static str, String), Arc<regex::bytes::Regex>>,
    > = std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Compiles `text` with `compile` (named `flavour`, e.g. `"extended"` or `"icase"`), or
/// takes it from the per-thread cache. The cache forgets everything when it is full: it
/// stays small and a hot pattern comes back on its next call.
pub fn cached_regex(
    flavour: &'static str,
    text: &str,
    compile: fn(&str) -> Result<Arc<regex::bytes::Regex>, String>,
) -> Result<Arc<regex::bytes::Regex>, String> {
    let key = (flavour, text.to_string());
    if let Some(re) = REGEX_CACHE.with(|c| c.borrow().get(&key).cloned()) {
        return Ok(re);
    }
    let re = compile(text)?;
    REGEX_CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= REGEX_CACHE_SIZE {
            c.clear();
        }
        c.insert(key, re.clone());
    });
    Ok(re)
}

/// Either known at load time or computed per call.
pub enum Fixable<T> {
    /// Known at load: the value itself.
    Const(T),
    /// Computed per call from a format with PVs.
    Dynamic(Format),
}

/// Turns a raw argument into a format (literal or with PVs).
pub fn raw_to_format(raw: RawArg, env: &dyn FixupEnv) -> Result<Format, String> {
    match raw {
        RawArg::Int(i) => Ok(Format::literal(&i.to_string())),
        RawArg::Ident(s) => Ok(Format::literal(&s)),
        RawArg::Str(s) => env.binder().parse_format(&s).map_err(|e| e.message),
        RawArg::Pv(p) => {
            let text = p.text().to_string();
            env.binder().parse_format(&text).map_err(|e| e.message)
        }
    }
}

/// A text argument with a parser of its module's (rtpproxy's flags, rtpengine's ng
/// flags): a literal is parsed once at load, where an error is a load error; a string
/// with pseudo-variables is parsed at each call, as is a value from Lua or the control
/// interface. Handlers take it as [`Parsed<T>`].
pub trait ParsedText: Clone + Send + Sync + 'static {
    /// What the argument is, for the docs and error messages.
    const KIND: &'static str;
    /// Parses the argument's text.
    fn parse_text(text: &[u8]) -> Result<Self, String>;
}

/// A [`ParsedText`] argument as a handler receives it.
#[derive(Clone, Debug)]
pub struct Parsed<T>(pub T);

impl<T: ParsedText> ArgType for Parsed<T> {
    type Fixed = Fixable<T>;
    const KIND: ArgKind = ArgKind::Custom(T::KIND);

    fn fixup(raw: RawArg, env: &dyn FixupEnv) -> Result<Fixable<T>, String> {
        let f = raw_to_format(raw, env)?;
        if f.is_literal() {
            T::parse_text(f.text().as_bytes()).map(Fixable::Const)
        } else {
            Ok(Fixable::Dynamic(f))
        }
    }

    fn eval(fixed: &Fixable<T>, ctx: &MsgContext) -> Result<Parsed<T>, FnError> {
        match fixed {
            Fixable::Const(t) => Ok(Parsed(t.clone())),
            Fixable::Dynamic(f) => T::parse_text(&f.eval(ctx)?)
                .map(Parsed)
                .map_err(FnError::new),
        }
    }

    fn from_value(value: Value, _env: &dyn CallEnv) -> Result<Parsed<T>, FnError> {
        T::parse_text(&value_to_bytes(value)?)
            .map(Parsed)
            .map_err(FnError::new)
    }
}

impl ArgType for i64 {
    type Fixed = Fixable<i64>;
    const KIND: ArgKind = ArgKind::Int;

    fn fixup(raw: RawArg, env: &dyn FixupEnv) -> Result<Self::Fixed, String> {
        match raw {
            RawArg::Int(i) => Ok(Fixable::Const(i)),
            other => {
                let f = raw_to_format(other, env)?;
                if f.is_literal() {
                    value_to_int(&Value::from(f.text().to_string()))
                        .map(Fixable::Const)
                        .map_err(|e| e.message)
                } else {
                    Ok(Fixable::Dynamic(f))
                }
            }
        }
    }

    fn eval(fixed: &Self::Fixed, ctx: &MsgContext) -> Result<Self, FnError> {
        match fixed {
            Fixable::Const(i) => Ok(*i),
            Fixable::Dynamic(f) => {
                let b = f.eval(ctx)?;
                parse_int(&b).ok_or_else(|| {
                    FnError::new(format!(
                        "{} gave \"{}\", not a number",
                        f.text(),
                        String::from_utf8_lossy(&b)
                    ))
                })
            }
        }
    }

    fn from_value(value: Value, _env: &dyn CallEnv) -> Result<Self, FnError> {
        value_to_int(&value)
    }
}

impl ArgType for Bytes {
    type Fixed = Format;
    const KIND: ArgKind = ArgKind::Str;

    fn fixup(raw: RawArg, env: &dyn FixupEnv) -> Result<Self::Fixed, String> {
        raw_to_format(raw, env)
    }

    fn eval(fixed: &Self::Fixed, ctx: &MsgContext) -> Result<Self, FnError> {
        Ok(fixed.eval(ctx)?)
    }

    fn from_value(value: Value, _env: &dyn CallEnv) -> Result<Self, FnError> {
        value_to_bytes(value)
    }
}

/// Any value, keeping the type of a lone PV (an int stays an int).
impl ArgType for Value {
    type Fixed = Fixable<Value>;
    const KIND: ArgKind = ArgKind::Value;

    fn fixup(raw: RawArg, env: &dyn FixupEnv) -> Result<Self::Fixed, String> {
        match raw {
            RawArg::Int(i) => Ok(Fixable::Const(Value::Int(i))),
            other => {
                let f = raw_to_format(other, env)?;
                if f.is_literal() {
                    Ok(Fixable::Const(Value::from_string(f.text().to_string())))
                } else {
                    Ok(Fixable::Dynamic(f))
                }
            }
        }
    }

    fn eval(fixed: &Self::Fixed, ctx: &MsgContext) -> Result<Self, FnError> {
        match fixed {
            Fixable::Const(v) => Ok(v.clone()),
            Fixable::Dynamic(f) => match f.as_single_pv() {
                Some(pv) => Ok(pv.get(ctx)?),
                None => Ok(Value::Str(f.eval(ctx)?)),
            },
        }
    }

    fn from_value(value: Value, _env: &dyn CallEnv) -> Result<Self, FnError> {
        Ok(value)
    }
}

/// A regular expression over bytes, compiled at load time when it is a literal.
impl ArgType for Arc<regex::bytes::Regex> {
    type Fixed = Fixable<Arc<regex::bytes::Regex>>;
    const KIND: ArgKind = ArgKind::Regex;

    fn fixup(raw: RawArg, env: &dyn FixupEnv) -> Result<Self::Fixed, String> {
        let f = raw_to_format(raw, env)?;
        if f.is_literal() {
            compile_regex(f.text()).map(Fixable::Const)
        } else {
            Ok(Fixable::Dynamic(f))
        }
    }

    fn eval(fixed: &Self::Fixed, ctx: &MsgContext) -> Result<Self, FnError> {
        match fixed {
            Fixable::Const(r) => Ok(r.clone()),
            Fixable::Dynamic(f) => {
                let b = f.eval(ctx)?;
                cached_regex("extended", &String::from_utf8_lossy(&b), compile_regex)
                    .map_err(FnError::new)
            }
        }
    }

    fn from_value(value: Value, _env: &dyn CallEnv) -> Result<Self, FnError> {
        cached_regex("extended", &value_to_text(value)?, compile_regex).map_err(FnError::new)
    }
}

/// Compiles a POSIX-extended-style regex as Kamailio scripts write them.
pub fn compile_regex(text: &str) -> Result<Arc<regex::bytes::Regex>, String> {
    regex::bytes::Regex::new(text)
        .map(Arc::new)
        .map_err(|e| format!("invalid regular expression \"{text}\": {e}"))
}

/// A pseudo-variable the function writes to (e.g. the output of `ds_select` helpers).
#[derive(Clone, Debug)]
pub struct PvOut(
    /// The pseudo-variable, as bound at load.
    pub PvRef,
);

impl ArgType for PvOut {
    type Fixed = PvRef;
    const KIND: ArgKind = ArgKind::PvOut;

    fn fixup(raw: RawArg, env: &dyn FixupEnv) -> Result<Self::Fixed, String> {
        let pv = match raw {
            RawArg::Pv(p) => p,
            // Kamailio configs usually pass the PV's name quoted: "$avp(x)".
            RawArg::Str(s) => return writable_pv(&s, env),
            other => {
                return Err(format!(
                    "expected a pseudo-variable, found {}",
                    other.describe()
                ))
            }
        };
        if !pv.is_writable() {
            return Err(format!("{} cannot be written", pv.text()));
        }
        Ok(pv)
    }

    fn eval(fixed: &Self::Fixed, _ctx: &MsgContext) -> Result<Self, FnError> {
        Ok(PvOut(fixed.clone()))
    }

    /// The PV is named by a string (`"$avp(x)"`), bound on each call.
    fn from_value(value: Value, env: &dyn CallEnv) -> Result<Self, FnError> {
        match value {
            Value::Str(s) => writable_pv(&String::from_utf8_lossy(&s), env)
                .map(PvOut)
                .map_err(FnError::new),
            other => Err(FnError::new(format!(
                "expected the name of a pseudo-variable, found {} {other}",
                other.type_name()
            ))),
        }
    }
}

/// Binds `text` as one writable pseudo-variable.
fn writable_pv(text: &str, env: &dyn CallEnv) -> Result<PvRef, String> {
    let pv = env.binder().parse_pv(text).map_err(|e| e.message)?;
    if !pv.is_writable() {
        return Err(format!("{} cannot be written", pv.text()));
    }
    Ok(pv)
}

/// A message or branch flag number, 0..=63.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flag(
    /// The flag number, 0..=63.
    pub u8,
);

impl ArgType for Flag {
    type Fixed = Fixable<u8>;
    const KIND: ArgKind = ArgKind::Flag;

    fn fixup(raw: RawArg, env: &dyn FixupEnv) -> Result<Self::Fixed, String> {
        match i64::fixup(raw, env)? {
            Fixable::Const(i) => flag_number(i).map(|f| Fixable::Const(f.0)),
            Fixable::Dynamic(f) => Ok(Fixable::Dynamic(f)),
        }
    }

    fn eval(fixed: &Self::Fixed, ctx: &MsgContext) -> Result<Self, FnError> {
        match fixed {
            Fixable::Const(i) => Ok(Flag(*i)),
            Fixable::Dynamic(f) => {
                let b = f.eval(ctx)?;
                match parse_int(&b) {
                    Some(i) if (0..64).contains(&i) => Ok(Flag(i as u8)),
                    _ => Err(FnError::new(format!(
                        "flag \"{}\" is not in 0..63",
                        String::from_utf8_lossy(&b)
                    ))),
                }
            }
        }
    }

    fn from_value(value: Value, _env: &dyn CallEnv) -> Result<Self, FnError> {
        flag_number(value_to_int(&value)?).map_err(FnError::new)
    }
}

fn flag_number(i: i64) -> Result<Flag, String> {
    if (0..64).contains(&i) {
        Ok(Flag(i as u8))
    } else {
        Err(format!("flag {i} is out of range 0..63"))
    }
}

/// The index of route `name` of `table` in the script `env` describes.
fn route_by_name(table: RouteTable, name: &str, env: &dyn CallEnv) -> Result<u32, String> {
    env.route_index(table, name)
        .ok_or_else(|| format!("no {}[{}] in this script", table.keyword(), name))
}

macro_rules! route_arg {
    ($(#[$doc:meta])* $name:ident, $table:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name(
            /// The route's index in its table of the program.
            pub u32,
        );

        impl ArgType for $name {
            type Fixed = u32;
            const KIND: ArgKind = ArgKind::Route($table);

            fn fixup(raw: RawArg, env: &dyn FixupEnv) -> Result<u32, String> {
                let name = match raw {
                    RawArg::Ident(s) | RawArg::Str(s) => s,
                    RawArg::Int(i) => i.to_string(),
                    RawArg::Pv(p) => {
                        return Err(format!(
                            "the {} name must be written literally, not as {}",
                            $table.keyword(),
                            p.text()
                        ))
                    }
                };
                route_by_name($table, &name, env)
            }

            fn eval(fixed: &u32, _ctx: &MsgContext) -> Result<Self, FnError> {
                Ok($name(*fixed))
            }

            /// The route is named by a string (an int is taken as its name).
            fn from_value(value: Value, env: &dyn CallEnv) -> Result<Self, FnError> {
                route_by_name($table, &value_to_text(value)?, env)
                    .map($name)
                    .map_err(FnError::new)
            }
        }
    };
}

route_arg!(
    /// The index of a `route[NAME]` block.
    NamedRoute,
    RouteTable::Named
);
route_arg!(
    /// The index of a `failure_route[NAME]` block.
    FailureRoute,
    RouteTable::Failure
);
route_arg!(
    /// The index of a `branch_route[NAME]` block.
    BranchRoute,
    RouteTable::Branch
);
route_arg!(
    /// The index of an `onreply_route[NAME]` block.
    ReplyRoute,
    RouteTable::OnReply
);
