//! The pseudo-variable framework.
//!
//! A PV class (`ru`, `hdr`, `var`, `avp`, `sht`, ...) is registered by name. When the
//! compiler meets `$hdr(From)` or `$(avp(x)[1]{s.len})` it asks the [`Binder`] for a
//! [`PvRef`]: the class binds its parameter once (names interned to slots, inner PVs and
//! formats parsed) and returns a [`Pv`] handler; index and transformations are attached
//! by the framework. At run time an access is one virtual call.

use crate::context::MsgContext;
use crate::format::Format;
use crate::registry::Registry;
use crate::transform::{TrArg, Transform};
use crate::value::Value;
use std::fmt;
use std::sync::Arc;

/// Which element of a multi-valued PV (AVP stack, repeated header) an access means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PvIndex {
    /// No index written: the first (newest) value.
    #[default]
    First,
    /// `[n]`, where negative counts from the last.
    Nth(i32),
    /// `[*]`: all values.
    All,
}

/// Assignment operator: `=` or `:=`. They differ only for multi-valued PVs: `=` adds a
/// value (AVPs) while `:=` replaces all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOp {
    /// `=`: assign (on an AVP, add a value).
    Assign,
    /// `:=`: replace every value.
    Replace,
}

/// Why a pseudo-variable could not be read or written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PvError {
    /// The PV (named) cannot be written.
    #[error("${0} is read-only")]
    ReadOnly(String),
    /// Any other failure, explained.
    #[error("{0}")]
    Invalid(String),
}

/// A bound pseudo-variable.
pub trait Pv: Send + Sync + 'static {
    /// Reads the value; a PV with no value (no such header, unset var) is `Value::Null`.
    fn get(&self, ctx: &MsgContext, index: PvIndex) -> Result<Value, PvError>;

    /// Writes (or, with `Value::Null`, deletes) the value.
    fn set(
        &self,
        _ctx: &mut MsgContext,
        _index: PvIndex,
        _op: SetOp,
        _value: Value,
    ) -> Result<(), PvError> {
        Err(PvError::ReadOnly("pseudo-variable".into()))
    }

    /// True when [`Pv::set`] is implemented: the compiler refuses an assignment otherwise.
    fn writable(&self) -> bool {
        false
    }
}

/// Whether a PV class takes a `(...)` parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PvParamRule {
    /// `$name` only.
    None,
    /// `$name(param)` only.
    Required,
    /// Either.
    Optional,
}

/// A family of pseudo-variables sharing a name (`$hdr(...)`, `$var(...)`) or one fixed PV.
pub trait PvClass: Send + Sync + 'static {
    /// Whether the class takes a `(...)` parameter (checked before [`PvClass::bind`]).
    fn param_rule(&self) -> PvParamRule;
    /// Binds `$name` or `$name(param)` once, at load time. Errors are shown to the
    /// operator at the PV's location.
    fn bind(&self, param: Option<&str>, binder: &Binder<'_>) -> Result<Arc<dyn Pv>, String>;
    /// One line for the docs.
    fn doc(&self) -> &str {
        ""
    }

    /// True for a class declared with its real syntax whose behaviour is not built yet
    /// ([`DeclaredPvClass`]): the compiler reports every use, and `run` refuses the script.
    fn declared(&self) -> bool {
        false
    }
}

/// Index as written: fixed, or from another PV (`$(avp(x)[$var(i)])`).
#[derive(Clone)]
enum IndexSpec {
    Fixed(PvIndex),
    Dynamic(PvRef),
}

struct PvRefInner {
    text: Box<str>,
    pv: Arc<dyn Pv>,
    index: IndexSpec,
    transforms: Vec<Arc<dyn Transform>>,
}

/// A compiled reference to a pseudo-variable, with its index and transformations.
/// Cheap to clone.
#[derive(Clone)]
pub struct PvRef(Arc<PvRefInner>);

impl PvRef {
    /// A reference to a handler without index or transformations (for module code that
    /// binds PVs programmatically).
    pub fn from_pv(text: &str, pv: Arc<dyn Pv>) -> PvRef {
        PvRef(Arc::new(PvRefInner {
            text: text.into(),
            pv,
            index: IndexSpec::Fixed(PvIndex::First),
            transforms: Vec::new(),
        }))
    }

    /// The PV as written in the script.
    pub fn text(&self) -> &str {
        &self.0.text
    }

    /// True when an assignment to it is allowed (writable, no transformation).
    pub fn is_writable(&self) -> bool {
        self.0.transforms.is_empty() && self.0.pv.writable()
    }

    fn index(&self, ctx: &MsgContext) -> Result<PvIndex, PvError> {
        match &self.0.index {
            IndexSpec::Fixed(i) => Ok(*i),
            IndexSpec::Dynamic(p) => {
                let v = p.get(ctx)?;
                let i = v.as_int().ok_or_else(|| {
                    PvError::Invalid(format!("index {} of {} is not a number", v, self.text()))
                })?;
                Ok(PvIndex::Nth(
                    i.clamp(i32::MIN as i64, i32::MAX as i64) as i32
                ))
            }
        }
    }

    /// Reads the value, index and transformations applied.
    pub fn get(&self, ctx: &MsgContext) -> Result<Value, PvError> {
        let mut v = self.0.pv.get(ctx, self.index(ctx)?)?;
        for t in &self.0.transforms {
            v = t.apply(ctx, v)?;
        }
        Ok(v)
    }

    /// Writes the value (null deletes).
    pub fn set(&self, ctx: &mut MsgContext, op: SetOp, value: Value) -> Result<(), PvError> {
        if !self.0.transforms.is_empty() {
            return Err(PvError::ReadOnly(format!(
                "{} (a transformed value)",
                self.text()
            )));
        }
        let index = self.index(ctx)?;
        self.0.pv.set(ctx, index, op, value)
    }
}

impl fmt::Debug for PvRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PvRef({})", self.text())
    }
}

/// Parses PV syntax against the registry. Given to PV and transformation classes so that
/// they can parse inner PVs and formats of their parameters.
pub struct Binder<'r> {
    /// The registry PV names are looked up in.
    pub registry: &'r Registry,
}

/// Where a PV failed to parse: byte offset within the text given, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PvParseError {
    /// Byte offset of the error in the text given.
    pub offset: usize,
    /// Why it did not parse.
    pub message: String,
}

impl fmt::Display for PvParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Finds the byte index of the delimiter that closes the bracket opened just before
/// `start`, honouring nesting of `()`, `[]` and `{}`.
fn find_close(s: &[u8], start: usize, open: u8, close: u8) -> Option<usize> {
    let mut depth = 1usize;
    let mut i = start;
    while i < s.len() {
        let b = s[i];
        if b == open {
            depth += 1;
        } else if b == close {
            depth -= 1;
            if depth == 0 {
                return Some(i);
            }
        }
        i += 1;
    }
    None
}

impl<'r> Binder<'r> {
    /// A binder looking PVs up in `registry`.
    pub fn new(registry: &'r Registry) -> Self {
        Binder { registry }
    }

    /// Slot of a `$var(name)`.
    pub fn var_slot(&self, name: &str) -> u32 {
        self.registry.intern_var(name)
    }

    /// Slot of an AVP name (`s:`/`i:` prefixes are part of Kamailio's syntax, not the name).
    pub fn avp_slot(&self, name: &str) -> u32 {
        let name = name
            .strip_prefix("s:")
            .or_else(|| name.strip_prefix("i:"))
            .unwrap_or(name);
        self.registry.intern_avp(name)
    }

    /// Parses a whole text as exactly one PV.
    pub fn parse_pv(&self, text: &str) -> Result<PvRef, PvParseError> {
        let (pv, used) = self.parse_pv_prefix(text)?;
        if used != text.len() {
            return Err(PvParseError {
                offset: used,
                message: format!(
                    "unexpected '{}' after pseudo-variable {}",
                    &text[used..],
                    &text[..used]
                ),
            });
        }
        Ok(pv)
    }

    /// Parses a format string (literal text with PVs inside).
    pub fn parse_format(&self, text: &str) -> Result<Format, PvParseError> {
        Format::parse(text, self)
    }

    /// Parses one PV at the start of `text` (which begins with `$`) and returns it with the
    /// number of bytes it used.
    pub fn parse_pv_prefix(&self, text: &str) -> Result<(PvRef, usize), PvParseError> {
        let s = text.as_bytes();
        let err = |offset: usize, message: String| PvParseError { offset, message };
        if s.first() != Some(&b'$') {
            return Err(err(0, "a pseudo-variable starts with '$'".into()));
        }
        if s.get(1) == Some(&b'(') {
            // $(name(param)[index]{tr}...)
            let close = find_close(s, 2, b'(', b')').ok_or_else(|| {
                err(
                    1,
                    format!("unbalanced parenthesis in pseudo-variable {text}"),
                )
            })?;
            let inner = &text[2..close];
            let pv = self.parse_inner(inner, 2, &text[..=close], true)?;
            return Ok((pv, close + 1));
        }
        // $name or $name(param): name bytes, then an optional parenthesised parameter.
        let mut end = 1;
        while end < s.len() && is_name_byte(s[end]) {
            end += 1;
        }
        if end == 1 {
            return Err(err(1, "expected a pseudo-variable name after '$'".into()));
        }
        let name = &text[1..end];
        let class = self.registry.pv_class(name).ok_or_else(|| {
            err(
                0,
                format!(
                    "unknown pseudo-variable ${name}{}",
                    self.registry.suggest_pv(name)
                ),
            )
        })?;
        let mut used = end;
        let mut param = None;
        if s.get(end) == Some(&b'(') && class.param_rule() != PvParamRule::None {
            let close = find_close(s, end + 1, b'(', b')').ok_or_else(|| {
                err(
                    end,
                    format!("unbalanced parenthesis in pseudo-variable {text}"),
                )
            })?;
            param = Some(&text[end + 1..close]);
            used = close + 1;
        }
        let pv = self.bind_class(name, class.as_ref(), param, 1)?;
        Ok((
            PvRef(Arc::new(PvRefInner {
                text: text[..used].into(),
                pv,
                index: IndexSpec::Fixed(PvIndex::First),
                transforms: Vec::new(),
            })),
            used,
        ))
    }

    fn bind_class(
        &self,
        name: &str,
        class: &dyn PvClass,
        param: Option<&str>,
        offset: usize,
    ) -> Result<Arc<dyn Pv>, PvParseError> {
        match (class.param_rule(), param) {
            (PvParamRule::Required, None) => {
                return Err(PvParseError {
                    offset,
                    message: format!("${name} needs a parameter: ${name}(...)"),
                })
            }
            (PvParamRule::None, Some(_)) => {
                return Err(PvParseError {
                    offset,
                    message: format!("${name} takes no parameter"),
                })
            }
            _ => {}
        }
        class.bind(param, self).map_err(|m| PvParseError {
            offset,
            message: format!("${name}: {m}"),
        })
    }

    /// Parses the inside of `$( ... )`: `name[(param)][[index]]{tr}*`.
    fn parse_inner(
        &self,
        inner: &str,
        base: usize,
        whole: &str,
        _long: bool,
    ) -> Result<PvRef, PvParseError> {
        let s = inner.as_bytes();
        let err = |offset: usize, message: String| PvParseError {
            offset: base + offset,
            message,
        };
        let mut i = 0;
        while i < s.len() && is_name_byte(s[i]) {
            i += 1;
        }
        if i == 0 {
            return Err(err(0, "expected a pseudo-variable name after '$('".into()));
        }
        let name = &inner[..i];
        let class = self.registry.pv_class(name).ok_or_else(|| {
            err(
                0,
                format!(
                    "unknown pseudo-variable ${name}{}",
                    self.registry.suggest_pv(name)
                ),
            )
        })?;
        let mut param = None;
        if s.get(i) == Some(&b'(') {
            let close = find_close(s, i + 1, b'(', b')')
                .ok_or_else(|| err(i, "unbalanced parenthesis".into()))?;
            param = Some(&inner[i + 1..close]);
            i = close + 1;
        }
        let pv = self.bind_class(name, class.as_ref(), param, base)?;
        let mut index = IndexSpec::Fixed(PvIndex::First);
        if s.get(i) == Some(&b'[') {
            let close = find_close(s, i + 1, b'[', b']')
                .ok_or_else(|| err(i, "unterminated index '['".into()))?;
            let idx = inner[i + 1..close].trim();
            index = if idx == "*" {
                IndexSpec::Fixed(PvIndex::All)
            } else if idx.starts_with('$') {
                IndexSpec::Dynamic(self.parse_pv(idx).map_err(|e| PvParseError {
                    offset: base + i + 1 + e.offset,
                    message: e.message,
                })?)
            } else {
                let n: i32 = idx
                    .parse()
                    .map_err(|_| err(i + 1, format!("bad index '{idx}'")))?;
                IndexSpec::Fixed(PvIndex::Nth(n))
            };
            i = close + 1;
        }
        let mut transforms = Vec::new();
        while s.get(i) == Some(&b'{') {
            let close = find_close(s, i + 1, b'{', b'}')
                .ok_or_else(|| err(i, "unterminated transformation '{'".into()))?;
            let tr = self
                .parse_transform(&inner[i + 1..close])
                .map_err(|e| PvParseError {
                    offset: base + i + 1 + e.offset,
                    message: e.message,
                })?;
            transforms.push(tr);
            i = close + 1;
        }
        if i != s.len() {
            return Err(err(
                i,
                format!("unexpected '{}' in pseudo-variable", &inner[i..]),
            ));
        }
        Ok(PvRef(Arc::new(PvRefInner {
            text: whole.into(),
            pv,
            index,
            transforms,
        })))
    }

    /// Parses `class.name[,arg]*` (the inside of `{...}`).
    fn parse_transform(&self, text: &str) -> Result<Arc<dyn Transform>, PvParseError> {
        let err = |offset: usize, message: String| PvParseError { offset, message };
        let parts = split_top_level_commas(text);
        let head = parts[0].1.trim();
        let (class, name) = head.split_once('.').ok_or_else(|| {
            err(
                0,
                format!("transformation '{head}' should be written class.name, e.g. s.len"),
            )
        })?;
        let tc = self
            .registry
            .transform_class(class)
            .ok_or_else(|| err(0, format!("unknown transformation class '{class}'")))?;
        let mut args = Vec::new();
        for (off, a) in &parts[1..] {
            if a.starts_with('$') {
                let pv = self.parse_pv(a).map_err(|e| PvParseError {
                    offset: off + e.offset,
                    message: e.message,
                })?;
                args.push(TrArg::Pv(pv));
            } else {
                args.push(TrArg::Lit(unescape_tr_arg(a)));
            }
        }
        tc.bind(name, &args, self)
            .map_err(|m| err(0, format!("{{{class}.{name}}}: {m}")))
    }
}

/// Kamailio lets a transformation argument contain `\,` `\}` and similar escapes.
fn unescape_tr_arg(a: &str) -> String {
    let mut out = String::with_capacity(a.len());
    let mut chars = a.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Splits at commas not nested in `()`, `[]`, `{}` and not escaped; keeps each piece's offset.
fn split_top_level_commas(text: &str) -> Vec<(usize, &str)> {
    let s = text.as_bytes();
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 1,
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b',' if depth == 0 => {
                out.push((start, &text[start..i]));
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push((start, &text[start..]));
    out
}

/// A PV built from closures, for the many fixed PVs (`$ci`, `$rm`, ...).
pub struct FnPv<G, S = fn(&mut MsgContext, SetOp, Value) -> Result<(), PvError>> {
    /// The PV's name, for the read-only error.
    pub name: &'static str,
    /// Reads the value.
    pub get: G,
    /// Writes it; `None` for a read-only PV.
    pub set: Option<S>,
}

impl<G, S> Pv for FnPv<G, S>
where
    G: Fn(&MsgContext) -> Value + Send + Sync + 'static,
    S: Fn(&mut MsgContext, SetOp, Value) -> Result<(), PvError> + Send + Sync + 'static,
{
    fn get(&self, ctx: &MsgContext, _index: PvIndex) -> Result<Value, PvError> {
        Ok((self.get)(ctx))
    }

    fn set(
        &self,
        ctx: &mut MsgContext,
        _index: PvIndex,
        op: SetOp,
        value: Value,
    ) -> Result<(), PvError> {
        match &self.set {
            Some(s) => s(ctx, op, value),
            None => Err(PvError::ReadOnly(self.name.into())),
        }
    }

    fn writable(&self) -> bool {
        self.set.is_some()
    }
}

/// A parameterless PV class wrapping one handler.
pub struct FixedPvClass {
    /// The one handler.
    pub pv: Arc<dyn Pv>,
    /// One line for the docs.
    pub doc: &'static str,
}

impl PvClass for FixedPvClass {
    fn param_rule(&self) -> PvParamRule {
        PvParamRule::None
    }

    fn bind(&self, _param: Option<&str>, _binder: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
        Ok(self.pv.clone())
    }

    fn doc(&self) -> &str {
        self.doc
    }
}

/// A PV class declared with its real syntax whose values come with a later release (e.g.
/// tm's `$T_inv`). It binds at load, so `check` parses and reports every use; `run` refuses
/// a script that reads or writes it. A program loaded anyway (`check --allow-declared`,
/// tests) gets an error naming it at each access.
pub struct DeclaredPvClass {
    /// The class name, for the error at each access.
    pub name: &'static str,
    /// Whether it takes a parameter.
    pub rule: PvParamRule,
    /// One line for the docs.
    pub doc: &'static str,
}

struct DeclaredPv(&'static str);

impl Pv for DeclaredPv {
    fn get(&self, _ctx: &MsgContext, _index: PvIndex) -> Result<Value, PvError> {
        Err(PvError::Invalid(format!(
            "${} is declared but not implemented in this version of Ferrosip",
            self.0
        )))
    }

    fn set(
        &self,
        _ctx: &mut MsgContext,
        _index: PvIndex,
        _op: SetOp,
        _value: Value,
    ) -> Result<(), PvError> {
        self.get(_ctx, _index).map(|_| ())
    }

    fn writable(&self) -> bool {
        true
    }
}

impl PvClass for DeclaredPvClass {
    fn param_rule(&self) -> PvParamRule {
        self.rule
    }

    fn bind(&self, _param: Option<&str>, _binder: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
        Ok(Arc::new(DeclaredPv(self.name)))
    }

    fn doc(&self) -> &str {
        self.doc
    }

    fn declared(&self) -> bool {
        true
    }
}
