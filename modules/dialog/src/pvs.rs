//! `$dlg(...)`, `$dlg_var(name)` and `$dlg_ctx(...)`.

use bytes::Bytes;
use ferrosip_api::pv::{Binder, Pv, PvClass, PvError, PvIndex, PvParamRule, SetOp};
use ferrosip_api::registry::StateSlot;
use ferrosip_api::{ModuleBuilder, MsgContext, Value};
use std::sync::Arc;

use crate::table::{now_ms, DlgState};
use crate::{current, Current, Dir, Dlg, DlgCtx};

pub fn declare(m: &mut ModuleBuilder<'_>, state: &StateSlot<Dlg>) {
    m.pv("dlg", DlgClass(state.clone()));
    m.pv("dlg_var", VarClass(state.clone()));
    m.pv("dlg_ctx", CtxClass(state.clone()));
}

fn state(slot: &StateSlot<Dlg>) -> Result<Arc<Dlg>, PvError> {
    slot.get().map_err(|e| PvError::Invalid(e.message))
}

fn text(b: &Bytes) -> Value {
    Value::Str(b.clone())
}

/// The keys of `$dlg(key)`.
const DLG_KEYS: &[&str] = &[
    "h_id",
    "h_entry",
    "ref",
    "state",
    "to_rs",
    "from_rs",
    "dflags",
    "sflags",
    "callid",
    "to_uri",
    "to_tag",
    "from_uri",
    "from_tag",
    "toroute",
    "lifetime",
    "start_ts",
    "to_cseq",
    "from_cseq",
    "to_contact",
    "from_contact",
    "to_bindaddr",
    "from_bindaddr",
    "ruri",
];

struct DlgClass(StateSlot<Dlg>);
struct DlgPv {
    slot: StateSlot<Dlg>,
    key: &'static str,
}

fn join_routes(r: &[Bytes]) -> Value {
    if r.is_empty() {
        return Value::Null;
    }
    let v: Vec<String> = r
        .iter()
        .map(|u| format!("<{}>", String::from_utf8_lossy(u)))
        .collect();
    Value::from_string(v.join(","))
}

impl Pv for DlgPv {
    fn get(&self, ctx: &MsgContext, _index: PvIndex) -> Result<Value, PvError> {
        let st = state(&self.slot)?;
        let Some((d, _)) = current(&st, ctx) else {
            return Ok(Value::Null);
        };
        let live = d.live();
        Ok(match self.key {
            "h_id" => Value::Int(i64::from(d.h_id)),
            "h_entry" => Value::Int(i64::from(d.h_entry)),
            "ref" => Value::Int(Arc::strong_count(&d) as i64),
            "state" => Value::Int(live.state.code()),
            "to_rs" => join_routes(&live.callee_route_set),
            "from_rs" => join_routes(&d.caller_route_set),
            "dflags" => Value::Int(i64::from(live.timeout_bye)),
            "sflags" => Value::Int(i64::from(live.sflags)),
            "callid" => text(&d.callid),
            "to_uri" => text(&d.to_uri),
            "to_tag" => text(&live.to_tag),
            "from_uri" => text(&d.from_uri),
            "from_tag" => text(&d.from_tag),
            "toroute" => Value::Null,
            "lifetime" => Value::Int(i64::from(live.lifetime)),
            "start_ts" => Value::Int(live.start_ts),
            "to_cseq" => Value::Int(i64::from(live.callee_cseq)),
            "from_cseq" => Value::Int(i64::from(live.caller_cseq)),
            "to_contact" => text(&live.callee_contact),
            "from_contact" => text(&d.caller_contact),
            "to_bindaddr" => text(&live.callee_sock),
            "from_bindaddr" => text(&d.caller_sock),
            "ruri" => text(&d.req_uri),
            _ => Value::Null,
        })
    }
}

impl PvClass for DlgClass {
    fn param_rule(&self) -> PvParamRule {
        PvParamRule::Required
    }

    fn bind(&self, param: Option<&str>, _b: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
        let p = param.unwrap_or("").trim();
        let key = DLG_KEYS
            .iter()
            .find(|k| **k == p)
            .ok_or_else(|| format!("unknown $dlg key \"{p}\" (known: {})", DLG_KEYS.join(", ")))?;
        Ok(Arc::new(DlgPv {
            slot: self.0.clone(),
            key,
        }))
    }

    fn doc(&self) -> &str {
        "Attributes of the message's dialog (null without one): h_id, h_entry, ref, state (1 unconfirmed, 2 early, 3 confirmed without ACK, 4 confirmed, 5 deleted), callid, from_uri, from_tag, to_uri, to_tag, from_contact, to_contact, from_cseq, to_cseq, from_rs, to_rs, from_bindaddr, to_bindaddr, ruri, lifetime, start_ts, sflags, dflags, toroute."
    }
}

struct VarClass(StateSlot<Dlg>);
struct VarPv {
    slot: StateSlot<Dlg>,
    name: Bytes,
}

/// Longest dialog variable value kept (the `dialog_value` column's size).
const MAX_VAR: usize = 512;
/// Most variables per dialog.
const MAX_VARS: usize = 64;

impl Pv for VarPv {
    fn get(&self, ctx: &MsgContext, _index: PvIndex) -> Result<Value, PvError> {
        let st = state(&self.slot)?;
        let Some((d, _)) = current(&st, ctx) else {
            return Ok(Value::Null);
        };
        let live = d.live();
        Ok(live
            .vars
            .iter()
            .find(|(k, _)| *k == self.name)
            .map_or(Value::Null, |(_, v)| Value::Str(v.clone())))
    }

    fn set(
        &self,
        ctx: &mut MsgContext,
        _i: PvIndex,
        _op: SetOp,
        value: Value,
    ) -> Result<(), PvError> {
        let st = state(&self.slot)?;
        let Some((d, _)) = current(&st, ctx) else {
            return Err(PvError::Invalid(
                "$dlg_var: the message has no dialog".into(),
            ));
        };
        {
            let mut live = d.live();
            match value.to_bytes().filter(|_| !value.is_null()) {
                None => live.vars.retain(|(k, _)| *k != self.name),
                Some(v) => {
                    if v.len() > MAX_VAR {
                        return Err(PvError::Invalid(format!(
                            "$dlg_var: a value is at most {MAX_VAR} bytes"
                        )));
                    }
                    let full = live.vars.len() >= MAX_VARS;
                    match live.vars.iter_mut().find(|(k, _)| *k == self.name) {
                        Some(slot) => slot.1 = v,
                        None if full => {
                            return Err(PvError::Invalid(format!(
                                "$dlg_var: a dialog has at most {MAX_VARS} variables"
                            )))
                        }
                        None => live.vars.push((self.name.clone(), v)),
                    }
                }
            }
        }
        st.shared.save(&d);
        Ok(())
    }

    fn writable(&self) -> bool {
        true
    }
}

impl PvClass for VarClass {
    fn param_rule(&self) -> PvParamRule {
        PvParamRule::Required
    }

    fn bind(&self, param: Option<&str>, _b: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
        let p = param.unwrap_or("").trim();
        if p.is_empty() || p.len() > 128 {
            return Err("$dlg_var needs a name of 1..128 characters".into());
        }
        Ok(Arc::new(VarPv {
            slot: self.0.clone(),
            name: Bytes::copy_from_slice(p.as_bytes()),
        }))
    }

    fn doc(&self) -> &str {
        "A variable of the message's dialog, kept with it for its life (and stored with db_mode); null when unset or without a dialog. Assign $null to remove it."
    }
}

struct CtxClass(StateSlot<Dlg>);
#[derive(Clone, Copy)]
enum CtxKey {
    On,
    Set,
    Dir,
    Timeout,
    TimeoutBye,
}
struct CtxPv {
    slot: StateSlot<Dlg>,
    key: CtxKey,
}

impl Pv for CtxPv {
    fn get(&self, ctx: &MsgContext, _index: PvIndex) -> Result<Value, PvError> {
        let c = ctx.ext.get::<DlgCtx>().cloned().unwrap_or_default();
        Ok(match self.key {
            CtxKey::On => Value::Int(i64::from(c.on)),
            CtxKey::Set => Value::Int(i64::from(ctx.ext.get::<Current>().is_some())),
            CtxKey::Dir => {
                let st = state(&self.slot)?;
                Value::Int(match current(&st, ctx) {
                    None => 0,
                    Some((_, Dir::Downstream)) => 1,
                    Some((_, Dir::Upstream)) => 2,
                })
            }
            CtxKey::Timeout => {
                let st = state(&self.slot)?;
                match (c.timeout, current(&st, ctx)) {
                    (Some(t), _) => Value::Int(i64::from(t)),
                    (None, Some((d, _))) => Value::Int(i64::from(d.live().lifetime)),
                    (None, None) => Value::Int(i64::from(st.cfg.default_timeout)),
                }
            }
            CtxKey::TimeoutBye => {
                let st = state(&self.slot)?;
                Value::Int(i64::from(c.timeout_bye.unwrap_or(st.cfg.send_bye)))
            }
        })
    }

    fn set(
        &self,
        ctx: &mut MsgContext,
        _i: PvIndex,
        _op: SetOp,
        value: Value,
    ) -> Result<(), PvError> {
        let n = value.as_int().unwrap_or(0);
        let st = state(&self.slot)?;
        match self.key {
            CtxKey::On => ctx.ext.get_or_insert_with(DlgCtx::default).on = n != 0,
            CtxKey::TimeoutBye => {
                ctx.ext.get_or_insert_with(DlgCtx::default).timeout_bye = Some(n != 0);
                if let Some((d, _)) = current(&st, ctx) {
                    d.live().timeout_bye = n != 0;
                    st.shared.save(&d);
                }
            }
            CtxKey::Timeout => {
                if !(1..=i64::from(u32::MAX)).contains(&n) {
                    return Err(PvError::Invalid(format!(
                        "$dlg_ctx(timeout): {n} is not a number of seconds"
                    )));
                }
                ctx.ext.get_or_insert_with(DlgCtx::default).timeout = Some(n as u32);
                if let Some((d, _)) = current(&st, ctx) {
                    let mut live = d.live();
                    live.lifetime = n as u32;
                    if live.state >= DlgState::ConfirmedNa && live.state < DlgState::Deleted {
                        live.expires_ms = Some(now_ms() + n * 1000);
                    }
                    drop(live);
                    st.shared.save(&d);
                }
            }
            CtxKey::Set | CtxKey::Dir => return Err(PvError::ReadOnly("dlg_ctx".into())),
        }
        Ok(())
    }

    fn writable(&self) -> bool {
        matches!(self.key, CtxKey::On | CtxKey::Timeout | CtxKey::TimeoutBye)
    }
}

impl PvClass for CtxClass {
    fn param_rule(&self) -> PvParamRule {
        PvParamRule::Required
    }

    fn bind(&self, param: Option<&str>, _b: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
        let key = match param.unwrap_or("").trim() {
            "on" => CtxKey::On,
            "set" => CtxKey::Set,
            "dir" => CtxKey::Dir,
            "timeout" => CtxKey::Timeout,
            "timeout_bye" => CtxKey::TimeoutBye,
            other => {
                return Err(format!(
                    "unknown $dlg_ctx key \"{other}\" (known: on, set, dir, timeout, timeout_bye)"
                ))
            }
        };
        Ok(Arc::new(CtxPv {
            slot: self.0.clone(),
            key,
        }))
    }

    fn doc(&self) -> &str {
        "The message's dialog context: on (1: t_relay() of this initial INVITE creates a dialog, as dlg_flag), set (1 when a dialog is attached), dir (0 unknown, 1 downstream, 2 upstream), timeout (seconds, for the dialog being created or the current one), timeout_bye (1: BYE both sides on timeout)."
    }
}
