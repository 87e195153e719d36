//! `$xavp(name[i]=>field[j])`, `$xavu(name=>field)` and `$xavi(...)`: extended AVPs
//! (storage in `ferrosip_api::xavp`), with Kamailio's reading, assignment and deletion rules.
//!
//! Reading: no index means 0 (the newest item of that name), a negative index counts from
//! the oldest, `[*]` joins every value with ", ". Writing, as Kamailio's pv module does:
//! - `$xavp(r=>f) = v` adds a new item `r` holding the one field `f`;
//! - `$xavp(r[i]=>f) = v` adds field `f` to item `i` of `r` (nothing when there is no item i);
//! - `$xavp(r[i]=>f[j]) = v` replaces the value of the j-th field `f` of that item;
//! - `$xavp(r) = v` adds a plain item, `$xavp(r[i]) = v` replaces item i's value;
//! - `= $null` removes: the first (or the indexed) item or field; `[*]` removes them all,
//!   and `$xavp(r[*]=>f) = $null` removes `f` from every item of `r`.
//!
//! `$xavu` keeps one item per name and one field per name: assignment replaces. A negative
//! index here means the same as when reading (-1: the oldest); Kamailio's setter is off by
//! one there.

use bytes::Bytes;
use ferrosip_api::pv::{Binder, PvClass, PvParamRule};
use ferrosip_api::xavp::{XKind, XList, XVal, Xavps};
use ferrosip_api::{MsgContext, Pv, PvError, PvIndex, PvRef, SetOp, Value};
use std::sync::Arc;

/// An index written inside the name: `[2]`, `[-1]`, `[*]`, `[$var(i)]`.
#[derive(Clone, Debug)]
enum Idx {
    Fixed(i64),
    All,
    Dynamic(PvRef),
}

/// One level of the name: `root[idx]` or `field[idx]`.
#[derive(Clone, Debug)]
struct Level {
    name: Box<str>,
    idx: Option<Idx>,
}

/// A resolved index: a position, every item, or none written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    Default,
    Nth(i64),
    All,
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
}

fn parse_level(text: &str, binder: &Binder<'_>) -> Result<Level, String> {
    let text = text.trim();
    let (name, idx) = match text.find('[') {
        Some(open) => {
            let close = text
                .rfind(']')
                .filter(|&c| c > open && c == text.len() - 1)
                .ok_or_else(|| format!("unterminated index in '{text}'"))?;
            let inner = text[open + 1..close].trim();
            let idx = if inner == "*" {
                Idx::All
            } else if inner.starts_with('$') {
                Idx::Dynamic(binder.parse_pv(inner).map_err(|e| e.message)?)
            } else {
                Idx::Fixed(
                    inner
                        .parse()
                        .map_err(|_| format!("bad index '{inner}' in '{text}'"))?,
                )
            };
            (text[..open].trim_end(), Some(idx))
        }
        None => (text, None),
    };
    if name.is_empty() {
        return Err(format!("name missing in '{text}'"));
    }
    if let Some(c) = name.chars().find(|&c| !is_name_char(c)) {
        return Err(format!("'{c}' is not allowed in the name '{name}'"));
    }
    Ok(Level {
        name: name.into(),
        idx,
    })
}

/// A bound `$xavp(...)` / `$xavu(...)` / `$xavi(...)`.
struct XavpPv {
    kind: XKind,
    root: Level,
    field: Option<Level>,
}

impl XavpPv {
    fn at(&self, ctx: &MsgContext, idx: &Option<Idx>, outer: PvIndex) -> Result<At, PvError> {
        Ok(match idx {
            None => match outer {
                PvIndex::First => At::Default,
                PvIndex::Nth(n) => At::Nth(n as i64),
                PvIndex::All => At::All,
            },
            Some(_) if outer != PvIndex::First => {
                return Err(PvError::Invalid(format!(
                    "${}: an index both inside and outside the name",
                    self.kind.name()
                )))
            }
            Some(Idx::Fixed(n)) => At::Nth(*n),
            Some(Idx::All) => At::All,
            Some(Idx::Dynamic(pv)) => {
                let v = pv.get(ctx)?;
                At::Nth(v.as_int().ok_or_else(|| {
                    PvError::Invalid(format!(
                        "index {v} of ${} is not a number",
                        self.kind.name()
                    ))
                })?)
            }
        })
    }

    /// The outer `$(xavp(...)[i])` index applies to the last level written.
    fn indexes(&self, ctx: &MsgContext, outer: PvIndex) -> Result<(At, At), PvError> {
        match &self.field {
            None => Ok((self.at(ctx, &self.root.idx, outer)?, At::Default)),
            Some(f) => Ok((
                self.at(ctx, &self.root.idx, PvIndex::First)?,
                self.at(ctx, &f.idx, outer)?,
            )),
        }
    }
}

/// A position from a possibly negative index (-1: the last of `count`).
fn resolve(n: i64, count: usize) -> Option<usize> {
    if n >= 0 {
        usize::try_from(n).ok()
    } else {
        let back = usize::try_from(n.unsigned_abs()).ok()?;
        count.checked_sub(back)
    }
}

fn nth(list: &XList, kind: XKind, name: &str, at: At) -> Option<usize> {
    match at {
        At::Default | At::All => Some(0),
        At::Nth(n) => resolve(n, list.count(kind, name)),
    }
}

fn join(values: impl Iterator<Item = Value>) -> Value {
    let mut out = Vec::new();
    let mut any = false;
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        v.write_to(&mut out);
        any = true;
    }
    if any {
        Value::Str(Bytes::from(out))
    } else {
        Value::Null
    }
}

fn full(e: ferrosip_api::xavp::XavpError) -> PvError {
    PvError::Invalid(e.to_string())
}

impl Pv for XavpPv {
    fn get(&self, ctx: &MsgContext, index: PvIndex) -> Result<Value, PvError> {
        let kind = self.kind;
        let (ri, fi) = self.indexes(ctx, index)?;
        let roots = ctx.avps.xavps.list(kind);
        let root = &*self.root.name;
        let Some(field) = &self.field else {
            if ri == At::All {
                return Ok(join(roots.all(kind, root).map(XVal::to_value)));
            }
            return Ok(nth(roots, kind, root, ri)
                .and_then(|i| roots.get(kind, root, i))
                .map(XVal::to_value)
                .unwrap_or_default());
        };
        let item = nth(roots, kind, root, ri).and_then(|i| roots.get(kind, root, i));
        let Some(XVal::List(fields)) = item else {
            return Ok(Value::Null);
        };
        let name = &*field.name;
        if fi == At::All {
            return Ok(join(fields.all(kind, name).map(XVal::to_value)));
        }
        Ok(nth(fields, kind, name, fi)
            .and_then(|i| fields.get(kind, name, i))
            .map(XVal::to_value)
            .unwrap_or_default())
    }

    fn set(
        &self,
        ctx: &mut MsgContext,
        index: PvIndex,
        _op: SetOp,
        v: Value,
    ) -> Result<(), PvError> {
        let (ri, fi) = self.indexes(ctx, index)?;
        let store = &mut ctx.avps.xavps;
        if self.kind == XKind::Xavu {
            return set_xavu(
                store,
                &self.root.name,
                self.field.as_ref().map(|f| &*f.name),
                v,
            );
        }
        match &self.field {
            None => set_root(store, self.kind, &self.root.name, ri, v),
            Some(f) => set_field(store, self.kind, &self.root.name, ri, &f.name, fi, v),
        }
    }

    fn writable(&self) -> bool {
        true
    }
}

fn set_xavu(store: &mut Xavps, root: &str, field: Option<&str>, v: Value) -> Result<(), PvError> {
    let kind = XKind::Xavu;
    match (field, v) {
        (None, Value::Null) => {
            store.list_mut(kind).remove_all(kind, root);
        }
        (None, v) => {
            store.room(1).map_err(full)?;
            store.list_mut(kind).set_unique(kind, root, XVal::Value(v));
        }
        (Some(f), Value::Null) => {
            store.remove_child(kind, root, f);
        }
        (Some(f), v) => {
            if !store.set_child(kind, root, f, v).map_err(full)? {
                return Err(PvError::Invalid(format!(
                    "$xavu({root}) holds a value, not fields"
                )));
            }
        }
    }
    Ok(())
}

fn set_root(store: &mut Xavps, kind: XKind, root: &str, at: At, v: Value) -> Result<(), PvError> {
    let list = store.list(kind);
    let count = list.count(kind, root);
    if v.is_null() {
        let list = store.list_mut(kind);
        match at {
            At::All => {
                list.remove_all(kind, root);
            }
            At::Default => {
                list.remove_nth(kind, root, 0);
            }
            At::Nth(n) => {
                if let Some(i) = resolve(n, count) {
                    list.remove_nth(kind, root, i);
                }
            }
        }
        return Ok(());
    }
    match at {
        At::All => Err(PvError::Invalid(format!(
            "${}({root}[*]) cannot be assigned a value (only $null)",
            kind.name()
        ))),
        At::Default => {
            store.room(1).map_err(full)?;
            store.list_mut(kind).push_front(root, XVal::Value(v));
            Ok(())
        }
        At::Nth(n) => {
            let done = resolve(n, count)
                .is_some_and(|i| store.list_mut(kind).set_nth(kind, root, i, XVal::Value(v)));
            if done {
                Ok(())
            } else {
                Err(PvError::Invalid(format!(
                    "${}({root}[{n}]): no such item",
                    kind.name()
                )))
            }
        }
    }
}

fn remove_field(fields: &mut XList, kind: XKind, field: &str, at: At) {
    match at {
        At::All => {
            fields.remove_all(kind, field);
        }
        At::Default => {
            fields.remove_nth(kind, field, 0);
        }
        At::Nth(n) => {
            if let Some(i) = resolve(n, fields.count(kind, field)) {
                fields.remove_nth(kind, field, i);
            }
        }
    }
}

fn set_field(
    store: &mut Xavps,
    kind: XKind,
    root: &str,
    ri: At,
    field: &str,
    fi: At,
    v: Value,
) -> Result<(), PvError> {
    let count = store.list(kind).count(kind, root);
    if v.is_null() {
        let list = store.list_mut(kind);
        let targets: Vec<usize> = match ri {
            At::All => (0..count).collect(),
            At::Default => vec![0],
            At::Nth(n) => resolve(n, count).into_iter().collect(),
        };
        for i in targets {
            if let Some(XVal::List(fields)) = list.get_mut(kind, root, i) {
                remove_field(fields, kind, field, fi);
            }
        }
        return Ok(());
    }
    let name = kind.name();
    let i = match ri {
        // No index on the root: a new item holding this one field.
        At::Default => {
            store.room(2).map_err(full)?;
            let mut fields = XList::default();
            fields.push_front(field, XVal::Value(v));
            store.list_mut(kind).push_front(root, XVal::List(fields));
            return Ok(());
        }
        At::All => {
            return Err(PvError::Invalid(format!(
                "${name}({root}[*]=>{field}) cannot be assigned a value (only $null)"
            )))
        }
        At::Nth(n) => resolve(n, count),
    };
    let room = store.room(1).map_err(full);
    // Kamailio leaves a missing item alone; so do we.
    let Some(item) = i.and_then(|i| store.list_mut(kind).get_mut(kind, root, i)) else {
        return Ok(());
    };
    let XVal::List(fields) = item else {
        return Err(PvError::Invalid(format!(
            "${name}({root}) holds a value, not fields"
        )));
    };
    match fi {
        At::Default => {
            room?;
            fields.push_front(field, XVal::Value(v));
        }
        At::All => {
            return Err(PvError::Invalid(format!(
                "${name}({root}=>{field}[*]) cannot be assigned a value (only $null)"
            )))
        }
        At::Nth(n) => {
            if let Some(j) = resolve(n, fields.count(kind, field)) {
                fields.set_nth(kind, field, j, XVal::Value(v));
            }
        }
    }
    Ok(())
}

/// The `$xavp`, `$xavu` and `$xavi` classes.
pub(crate) struct XavpClass(pub XKind);

impl PvClass for XavpClass {
    fn param_rule(&self) -> PvParamRule {
        PvParamRule::Required
    }

    fn bind(&self, param: Option<&str>, binder: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
        let p = param.unwrap_or("").trim();
        let (root, field) = match p.split_once("=>") {
            Some((r, f)) => (parse_level(r, binder)?, Some(parse_level(f, binder)?)),
            None => (parse_level(p, binder)?, None),
        };
        if self.0 == XKind::Xavu
            && (root.idx.is_some() || field.as_ref().is_some_and(|f| f.idx.is_some()))
        {
            return Err("an $xavu holds one item per name: no index".into());
        }
        Ok(Arc::new(XavpPv {
            kind: self.0,
            root,
            field,
        }))
    }

    fn doc(&self) -> &str {
        match self.0 {
            XKind::Xavp => "Extended AVP: $xavp(name), $xavp(name[i]=>field[j]) (writable; = $null deletes; follows the transaction).",
            XKind::Xavu => "Extended AVP with one item per name: $xavu(name), $xavu(name=>field) (writable, assignment replaces).",
            XKind::Xavi => "Extended AVP with names compared ignoring case: $xavi(name[i]=>field[j]) (writable).",
        }
    }
}
