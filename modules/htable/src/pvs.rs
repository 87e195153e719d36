//! The pseudo-variables: `$sht(t=>k)`, `$shtex`, `$shtcn`, `$shtcv`, `$shtinc`,
//! `$shtdec`, `$shtitkey`/`$shtitval` and `$shtrecord` (in the expired event).

use crate::iter::Iterators;
use crate::state::{ExpiredRecord, Htable};
use crate::table::{ItemValue, Matcher, WriteError};
use ferrosip_api::pv::{Binder, PvParamRule};
use ferrosip_api::{Format, MsgContext, Pv, PvClass, PvError, PvIndex, SetOp, StateSlot, Value};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemPv {
    /// `$sht`: the value (writable; `$null` deletes).
    Value,
    /// `$shtex`: seconds until expiry (writable).
    Expires,
    /// `$shtinc` / `$shtdec`: add one / subtract one, giving the new value.
    Inc,
    Dec,
    /// `$shtcn` / `$shtcv`: items whose name / value matches.
    CountNames,
    CountValues,
}

pub struct ItemClass {
    pub state: StateSlot<Htable>,
    pub kind: ItemPv,
    pub doc: &'static str,
}

/// The `table=>key` parameter, each side a format (`$sht(ipban=>$si)`).
struct Bound {
    state: StateSlot<Htable>,
    kind: ItemPv,
    table: Format,
    key: Format,
    /// A literal count expression, compiled once.
    matcher: Option<Matcher>,
}

fn pv_err(e: impl std::fmt::Display) -> PvError {
    PvError::Invalid(e.to_string())
}

impl PvClass for ItemClass {
    fn param_rule(&self) -> PvParamRule {
        PvParamRule::Required
    }

    fn bind(&self, param: Option<&str>, binder: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
        let param = param.unwrap_or_default();
        let (table, key) = param
            .split_once("=>")
            .ok_or_else(|| format!("the parameter is table=>key, not {param:?}"))?;
        let table = binder.parse_format(table.trim()).map_err(|e| e.message)?;
        let key = binder.parse_format(key).map_err(|e| e.message)?;
        let mut matcher = None;
        if matches!(self.kind, ItemPv::CountNames | ItemPv::CountValues) && key.is_literal() {
            matcher = Some(Matcher::from_count_expr(key.text().as_bytes())?);
        }
        Ok(Arc::new(Bound {
            state: self.state.clone(),
            kind: self.kind,
            table,
            key,
            matcher,
        }))
    }

    fn doc(&self) -> &str {
        self.doc
    }
}

/// Logs "table full" at most once a minute per table: a flood must not flood the log.
fn log_full(ht: &crate::table::Table) {
    if ht.note_full() {
        tracing::warn!(
            table = ht.name(),
            maxsize = ht.spec.maxsize,
            "htable: the table is full (maxsize); new items are refused"
        );
    }
}

impl Pv for Bound {
    fn get(&self, ctx: &MsgContext, _index: PvIndex) -> Result<Value, PvError> {
        let st = self.state.get().map_err(|e| pv_err(e.message))?;
        let name = self.table.eval(ctx)?;
        let table = st.require(&name).map_err(pv_err)?;
        let key = self.key.eval(ctx)?;
        Ok(match self.kind {
            ItemPv::Value => table.get(&key).map_or(Value::Null, |v| v.to_value()),
            ItemPv::Expires => Value::Int(table.expires_in(&key)),
            ItemPv::Inc | ItemPv::Dec => {
                let delta = if self.kind == ItemPv::Inc { 1 } else { -1 };
                match table.add(&key, delta) {
                    Ok(n) => Value::Int(n),
                    Err(WriteError::Full) => {
                        log_full(table);
                        Value::Null
                    }
                    Err(_) => Value::Null,
                }
            }
            ItemPv::CountNames | ItemPv::CountValues => {
                let by_value = self.kind == ItemPv::CountValues;
                let n = match &self.matcher {
                    Some(m) => table.count(m, by_value),
                    None => table.count(&Matcher::from_count_expr(&key).map_err(pv_err)?, by_value),
                };
                Value::Int(n as i64)
            }
        })
    }

    fn set(
        &self,
        ctx: &mut MsgContext,
        _index: PvIndex,
        _op: SetOp,
        value: Value,
    ) -> Result<(), PvError> {
        let st = self.state.get().map_err(|e| pv_err(e.message))?;
        let name = self.table.eval(ctx)?;
        let table = st.require(&name).map_err(pv_err)?;
        let key = self.key.eval(ctx)?;
        match self.kind {
            ItemPv::Value => match ItemValue::from_value(&value) {
                None => {
                    table.delete(&key);
                }
                Some(v) => {
                    if table.set(&key, v, None) == Err(WriteError::Full) {
                        log_full(table);
                    }
                }
            },
            ItemPv::Expires => {
                let secs = value.as_int().ok_or_else(|| {
                    pv_err(format!("$shtex takes a number of seconds, not {value}"))
                })?;
                table.set_expires(&key, secs.max(0) as u64);
            }
            _ => return Err(PvError::ReadOnly("a hash table counter".into())),
        }
        Ok(())
    }

    fn writable(&self) -> bool {
        matches!(self.kind, ItemPv::Value | ItemPv::Expires)
    }
}

/// `$shtitkey(iname)` / `$shtitval(iname)`: the iterator's current item.
pub struct IterClass {
    pub value: bool,
    pub doc: &'static str,
}

struct IterPv {
    value: bool,
    name: Format,
}

impl PvClass for IterClass {
    fn param_rule(&self) -> PvParamRule {
        PvParamRule::Required
    }

    fn bind(&self, param: Option<&str>, binder: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
        let name = binder
            .parse_format(param.unwrap_or_default().trim())
            .map_err(|e| e.message)?;
        Ok(Arc::new(IterPv {
            value: self.value,
            name,
        }))
    }

    fn doc(&self) -> &str {
        self.doc
    }
}

impl Pv for IterPv {
    fn get(&self, ctx: &MsgContext, _index: PvIndex) -> Result<Value, PvError> {
        let name = self.name.eval(ctx)?;
        let Some(current) = ctx.ext.get::<Iterators>().and_then(|i| i.current(&name)) else {
            return Ok(Value::Null);
        };
        Ok(if self.value {
            current.1.value.to_value()
        } else {
            Value::Str(current.0.clone())
        })
    }
}

/// `$shtrecord(key)` / `$shtrecord(value)` in `event_route[htable:expired:<table>]`.
pub struct RecordClass;

struct RecordPv {
    value: bool,
}

impl PvClass for RecordClass {
    fn param_rule(&self) -> PvParamRule {
        PvParamRule::Required
    }

    fn bind(&self, param: Option<&str>, _binder: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
        match param.map(str::trim) {
            Some("key") => Ok(Arc::new(RecordPv { value: false })),
            Some("value") => Ok(Arc::new(RecordPv { value: true })),
            other => Err(format!("$shtrecord takes key or value, not {other:?}")),
        }
    }

    fn doc(&self) -> &str {
        "The expired item in event_route[htable:expired:<table>]: $shtrecord(key), $shtrecord(value)."
    }
}

impl Pv for RecordPv {
    fn get(&self, ctx: &MsgContext, _index: PvIndex) -> Result<Value, PvError> {
        Ok(match ctx.ext.get::<ExpiredRecord>() {
            None => Value::Null,
            Some(r) if self.value => r.value.to_value(),
            Some(r) => Value::Str(r.key.clone()),
        })
    }
}
