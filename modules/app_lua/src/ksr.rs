//! The `KSR` table of a Lua state: generated from the registry (`KSR.<module>.<fn>`), plus
//! the core functions of Kamailio's KEMI (`KSR.is_INVITE()`, `KSR.pv.*`, `KSR.hdr.*`,
//! `KSR.x.*`, `KSR.kx.*`, logging).
//!
//! A KSR function reaches the message of the route run that is using the state through
//! [`StateData`]: the run sets it before calling into Lua and clears it after
//! ([`begin_run`], [`end_run`]).

use crate::raw;
use crate::Shared;
use bytes::Bytes;
use ferrosip_api::registry::{CallOutcome, ValueCallable};
use ferrosip_api::{FnResult, FunctionDef, MsgContext, PvRef, RouteKind, SetOp, Value};
use ferrosip_script::program::MyselfSubject;
use ferrosip_script::vm::{is_myself_subject, Outcome};
use ferrosip_script::{Program, ScriptCallEnv};
use mlua::{ffi, Lua, MultiValue, Table, Value as LuaValue};
use smallvec::SmallVec;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;

/// Registry key of the function that runs a route function under `xpcall` with a traceback.
pub(crate) const RUNNER: &str = "__ferrosip_run";

/// PV names parsed once per state; the cache is emptied past this many names.
const PV_CACHE_MAX: usize = 1024;

/// The message of the run using the state.
#[derive(Clone, Copy)]
struct RunPtrs {
    ctx: *mut MsgContext,
    program: *const Program,
}

/// Per-state data the KSR functions read.
#[derive(Default)]
pub(crate) struct StateData {
    run: Cell<Option<RunPtrs>>,
    /// Set by `KSR.x.exit()`/`KSR.x.drop()`: how the run ends, whatever Lua does next.
    exit: Cell<Option<Outcome>>,
    /// Instructions counted by the budget hook in the current run.
    instructions: Cell<u64>,
    /// The budget (`max_instructions`).
    pub max_instructions: Cell<u64>,
    pvs: RefCell<HashMap<String, PvRef>>,
}

impl StateData {
    /// Counts one period of the budget hook ([`crate::budget::HOOK_EVERY`] instructions)
    /// against the run; the error to raise once the run is over `max_instructions`.
    pub(crate) fn charge_hook_period(&self) -> Result<(), String> {
        let used = self.instructions.get() + u64::from(crate::budget::HOOK_EVERY);
        self.instructions.set(used);
        let max = self.max_instructions.get();
        if used > max {
            return Err(format!(
                "the route ran more than {max} Lua instructions (app_lua max_instructions): aborted"
            ));
        }
        Ok(())
    }
}

// SAFETY: the raw pointers in `run` are only set while one route run polls the state (a
// state serves one run at a time) and only dereferenced from KSR functions that run inside
// that poll; the state moves between threads with its run, never used by two at once.
unsafe impl Send for StateData {}

/// The state's [`StateData`] as its KSR functions and pool entry reach it: a pointer, not
/// an app-data lookup (which cost ~140 instructions per KSR call).
#[derive(Clone, Copy)]
pub(crate) struct StateHandle(*const StateData);

/// Owns a state's [`StateData`]; kept in the state's app data, so it lives as long as the
/// state and every function holding a [`StateHandle`] to it.
struct OwnedStateData(#[allow(dead_code)] Box<StateData>);

// SAFETY: a handle is held only by its state's functions and its pool entry, which move
// between threads with the state and are never used by two threads at once (see
// `StateData`).
unsafe impl Send for StateHandle {}

impl StateHandle {
    /// Gives `lua` its data; call once per state.
    pub(crate) fn install(lua: &Lua) -> StateHandle {
        let data = Box::new(StateData::default());
        let handle = StateHandle(&*data);
        lua.set_app_data(OwnedStateData(data));
        handle
    }

    pub(crate) fn data(&self) -> &StateData {
        // SAFETY: the pointee is owned by the state's app data, alive while the state is.
        unsafe { &*self.0 }
    }

    pub(crate) fn begin_run(&self, ctx: &mut MsgContext, program: &Program) {
        let data = self.data();
        data.run.set(Some(RunPtrs {
            ctx: ctx as *mut MsgContext,
            program: program as *const Program,
        }));
        data.exit.set(None);
        data.instructions.set(0);
    }

    /// Ends the run; gives how `KSR.x.exit()/drop()` ended it, if they did.
    pub(crate) fn end_run(&self) -> Option<Outcome> {
        let data = self.data();
        data.run.set(None);
        data.exit.take()
    }

    /// Calls `f` with the message of the run using the state.
    fn try_ctx<R>(
        &self,
        f: impl FnOnce(&mut MsgContext, &Program, &StateData) -> R,
    ) -> Result<R, &'static str> {
        let data = self.data();
        let run = data
            .run
            .get()
            .ok_or("KSR functions can only be called while a route runs")?;
        // SAFETY: see `StateData`: the pointers come from the `&mut MsgContext` and
        // `&Program` the polling run holds for its whole life; no other reference to them
        // is used while Lua runs inside that poll.
        let (ctx, program) = unsafe { (&mut *run.ctx, &*run.program) };
        Ok(f(ctx, program, data))
    }

    fn with_ctx<R>(
        &self,
        f: impl FnOnce(&mut MsgContext, &Program, &StateData) -> R,
    ) -> mlua::Result<R> {
        self.try_ctx(f).map_err(mlua::Error::runtime)
    }
}

/// In `ksr_onsend_route`, whether `what` (a KSR function that edits the message) must be
/// refused: there the bytes are already built, so the edit could not take effect. The
/// call then fails (-1, logged), as a registry function outside its route kinds does.
fn refused_in_onsend(lua: &Lua, st: StateHandle, what: &str) -> mlua::Result<bool> {
    refused_in_onsend_at(st, what, || caller(lua)).map_err(mlua::Error::runtime)
}

/// [`refused_in_onsend`] for a raw function (`at` gives the caller's location).
fn refused_in_onsend_at(
    st: StateHandle,
    what: &str,
    at: impl FnOnce() -> String,
) -> Result<bool, &'static str> {
    if !st.try_ctx(|ctx, _, _| ctx.route == RouteKind::OnSend)? {
        return Ok(false);
    }
    tracing::error!(location = %at(), "{what} is not allowed in onsend_route");
    Ok(true)
}

fn to_value(v: &LuaValue, what: &str, i: usize) -> mlua::Result<Value> {
    Ok(match v {
        LuaValue::Nil => Value::Null,
        LuaValue::Integer(n) => Value::Int(*n),
        LuaValue::Number(n) => Value::Int(*n as i64),
        LuaValue::Boolean(b) => Value::Int(*b as i64),
        LuaValue::String(s) => Value::Str(Bytes::copy_from_slice(&s.as_bytes())),
        other => {
            return Err(mlua::Error::runtime(format!(
                "{what}: argument {} is a {} (strings and numbers only)",
                i + 1,
                other.type_name()
            )))
        }
    })
}

fn to_lua(lua: &Lua, v: Value) -> mlua::Result<LuaValue> {
    Ok(match v {
        Value::Null => LuaValue::Nil,
        Value::Int(n) => LuaValue::Integer(n),
        Value::Str(s) => LuaValue::String(lua.create_string(&s[..])?),
    })
}

/// The Lua file and line calling a KSR function, for its error messages.
fn caller(lua: &Lua) -> String {
    lua.inspect_stack(1)
        .map(|d| {
            let src = d.source();
            format!(
                "{}:{}",
                src.short_src.as_deref().unwrap_or("?"),
                d.curr_line()
            )
        })
        .unwrap_or_default()
}

/// A function's result as KEMI returns it: the code (negative is false); an error is
/// logged with the Lua location (`at`, asked for only then) and returns its code.
fn rc_of(at: impl FnOnce() -> String, name: &str, result: FnResult) -> i64 {
    match result {
        Ok(v) => v.rc() as i64,
        Err(e) => {
            tracing::error!(location = %at(), "{name}: {}", e.message);
            e.code as i64
        }
    }
}

/// The Lua function calling a KSR function through mlua (`caller` for raw functions).
fn mlua_caller(lua: &Lua) -> raw::Caller {
    lua.inspect_stack(1)
        .map(|d| {
            let src = d.source();
            raw::Caller {
                file: src.short_src.as_deref().unwrap_or("?").to_string(),
                line: d.curr_line(),
                function: d.names().name.as_deref().unwrap_or("lua").to_string(),
            }
        })
        .unwrap_or_else(|| raw::Caller {
            file: "?".into(),
            line: 0,
            function: "lua".into(),
        })
}

/// Reports a KSR call to the statement trace with the Lua file:line and function calling
/// it, its arguments and its return code.
fn trace_call(
    st: StateHandle,
    shared: &Shared,
    caller: raw::Caller,
    what: &str,
    args: &[Value],
    rc: i64,
) {
    let args: Vec<String> = args
        .iter()
        .map(|v| ferrosip_api::trace::TraceValue(v).to_string())
        .collect();
    let text = format!("{what}({})", args.join(", "));
    let _ = st.try_ctx(|ctx, _, _| {
        shared.trace.emit(&ferrosip_api::trace::TraceEvent {
            file: &caller.file,
            line: caller.line.max(0) as u32,
            route: &caller.function,
            kind: ferrosip_api::trace::TraceKind::Ksr,
            text: &text,
            result: Some(Value::Int(rc)),
            values: &[],
            call_id: ctx.msg.call_id().unwrap_or_default(),
        })
    });
}

/// The overload of `defs` taking `n` arguments.
fn pick<'d>(
    defs: &'d [Arc<FunctionDef>],
    n: usize,
    what: &str,
) -> Result<&'d Arc<FunctionDef>, String> {
    defs.iter().find(|d| d.arity() == n).ok_or_else(|| {
        let arities: Vec<String> = defs.iter().map(|d| d.arity().to_string()).collect();
        format!(
            "{what} takes {} argument(s), {n} given",
            arities.join(" or ")
        )
    })
}

fn args_of(args: &MultiValue, what: &str) -> mlua::Result<Vec<Value>> {
    args.iter()
        .enumerate()
        .map(|(i, v)| to_value(v, what, i))
        .collect()
}

/// A Lua function calling the registry function `defs` (its overloads) by value.
fn module_function(
    lua: &Lua,
    shared: &Arc<Shared>,
    st: StateHandle,
    what: String,
    defs: Vec<Arc<FunctionDef>>,
) -> mlua::Result<mlua::Function> {
    let defs: Arc<[Arc<FunctionDef>]> = defs.into();
    let shared = shared.clone();
    let any_async = defs
        .iter()
        .any(|d| matches!(d.by_value, ValueCallable::Async(_)));
    if !any_async {
        return raw::function(
            lua,
            Box::new(move |l| {
                // SAFETY: `l` is the state running this raw function.
                let n = unsafe { ffi::lua_gettop(l) }.max(0);
                let mut values: SmallVec<[Value; 4]> = SmallVec::with_capacity(n as usize);
                for i in 1..=n {
                    // SAFETY: as above; `i` is one of its arguments.
                    values.push(unsafe { raw::arg(l, i) }.map_err(|e| format!("{what}: {e}"))?);
                }
                let def = pick(&defs, values.len(), &what)?;
                let result = st.try_ctx(|ctx, program, _| {
                    let env = ScriptCallEnv::new(&shared.registry, program, &shared.modules);
                    match def.call_values(ctx, &values, &env) {
                        CallOutcome::Done(r) => r,
                        CallOutcome::Pending(_) => Err(ferrosip_api::FnError::new(
                            "an async call from a sync binding",
                        )),
                    }
                })?;
                // SAFETY (both): `l` is the state running this raw function.
                let rc = rc_of(|| unsafe { raw::Caller::of(l) }.location(), &what, result);
                if shared.trace.is_on() {
                    let caller = unsafe { raw::Caller::of(l) };
                    trace_call(st, &shared, caller, &what, &values, rc);
                }
                // SAFETY: a C function has LUA_MINSTACK free slots for its results.
                unsafe { ffi::lua_pushinteger(l, rc) };
                Ok(1)
            }),
        );
    }
    lua.create_async_function(move |lua, args: MultiValue| {
        let defs = defs.clone();
        let shared = shared.clone();
        let what = what.clone();
        async move {
            let values = args_of(&args, &what)?;
            let def = pick(&defs, values.len(), &what)
                .map_err(mlua::Error::runtime)?
                .clone();
            let outcome = st.with_ctx(|ctx, program, _| {
                let env = ScriptCallEnv::new(&shared.registry, program, &shared.modules);
                def.call_values(ctx, &values, &env)
            })?;
            let result = match outcome {
                CallOutcome::Done(r) => r,
                // The coroutine yields here: the worker goes on, the run resumes on the
                // runtime when the work is done.
                CallOutcome::Pending(work) => {
                    let apply = work.await;
                    st.with_ctx(|ctx, _, _| apply(ctx))?
                }
            };
            let rc = rc_of(|| caller(&lua), &what, result);
            if shared.trace.is_on() {
                trace_call(st, &shared, mlua_caller(&lua), &what, &values, rc);
            }
            Ok(rc)
        }
    })
}

/// The parsed PV `name`, cached in the state.
fn with_pv<R>(
    data: &StateData,
    shared: &Shared,
    name: &str,
    f: impl FnOnce(&PvRef) -> R,
) -> mlua::Result<R> {
    if let Some(pv) = data.pvs.borrow().get(name) {
        return Ok(f(pv));
    }
    let pv = ferrosip_api::pv::Binder::new(&shared.registry)
        .parse_pv(name)
        .map_err(|e| mlua::Error::runtime(format!("KSR.pv: {name}: {e}")))?;
    let r = f(&pv);
    let mut cache = data.pvs.borrow_mut();
    if cache.len() >= PV_CACHE_MAX {
        cache.clear();
    }
    cache.insert(name.to_string(), pv);
    Ok(r)
}

fn pv_get(st: StateHandle, shared: &Shared, name: &str) -> mlua::Result<Value> {
    st.with_ctx(|ctx, _, data| {
        with_pv(data, shared, name, |pv| {
            pv.get(ctx)
                .map_err(|e| mlua::Error::runtime(format!("KSR.pv.get({name}): {e}")))
        })?
    })?
}

fn pv_set(st: StateHandle, shared: &Shared, name: &str, v: Value) -> mlua::Result<()> {
    st.with_ctx(|ctx, _, data| {
        with_pv(data, shared, name, |pv| {
            pv.set(ctx, SetOp::Assign, v)
                .map_err(|e| mlua::Error::runtime(format!("KSR.pv.set({name}): {e}")))
        })?
    })?
}

pub(crate) const METHODS: &[&str] = &[
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "SUBSCRIBE",
    "NOTIFY",
    "PUBLISH",
    "MESSAGE",
    "INFO",
    "PRACK",
    "UPDATE",
    "REFER",
    "KDMQ",
    "GET",
    "POST",
    "PUT",
    "DELETE",
];

/// Letters of `KSR.is_method_in("IRB")`, as Kamailio's core reads them.
const METHOD_LETTERS: &[(u8, &str)] = &[
    (b'I', "INVITE"),
    (b'A', "ACK"),
    (b'B', "BYE"),
    (b'C', "CANCEL"),
    (b'R', "REGISTER"),
    (b'M', "MESSAGE"),
    (b'O', "OPTIONS"),
    (b'S', "SUBSCRIBE"),
    (b'N', "NOTIFY"),
    (b'P', "PUBLISH"),
    (b'F', "INFO"),
    (b'U', "UPDATE"),
    (b'E', "REFER"),
    (b'K', "KDMQ"),
    (b'G', "GET"),
];

fn method_is(ctx: &MsgContext, m: &str) -> bool {
    ctx.msg
        .method_bytes()
        .is_some_and(|b| b.eq_ignore_ascii_case(m.as_bytes()))
}

/// `KSR.kx.get_*` getters: the PV each reads ("" when it has no value).
pub(crate) const KX_GETTERS: &[(&str, &str)] = &[
    ("get_ruri", "$ru"),
    ("get_method", "$rm"),
    ("get_srcip", "$si"),
    ("get_srcport", "$sp"),
    ("get_callid", "$ci"),
    ("get_ua", "$ua"),
    ("get_furi", "$fu"),
    ("get_fuser", "$fU"),
    ("get_fhost", "$fd"),
    ("get_ftag", "$ft"),
    ("get_turi", "$tu"),
    ("get_tuser", "$tU"),
    ("get_thost", "$td"),
    ("get_rusername", "$rU"),
    ("get_ruser", "$rU"),
    ("get_rhost", "$rd"),
    ("get_duri", "$du"),
    ("get_proto", "$pr"),
    ("get_body", "$rb"),
    ("get_status", "$rs"),
    ("get_srcuri", "$su"),
    ("get_nhuri", "$nh(u)"),
];

fn log_fn(lua: &Lua, level: tracing::Level) -> mlua::Result<mlua::Function> {
    lua.create_function(move |lua, msg: mlua::String| {
        let text = msg.to_string_lossy();
        let text = text.trim_end();
        let at = caller(lua);
        match level {
            tracing::Level::ERROR => tracing::error!(location = %at, "{text}"),
            tracing::Level::WARN => tracing::warn!(location = %at, "{text}"),
            tracing::Level::INFO => tracing::info!(location = %at, "{text}"),
            _ => tracing::debug!(location = %at, "{text}"),
        }
        Ok(())
    })
}

/// Header name and value of `KSR.hdr.append("X-A: b\r\n")`.
fn split_header(text: &str) -> mlua::Result<(String, String)> {
    let line = text.trim_end_matches(['\r', '\n']);
    let (name, value) = line.split_once(':').ok_or_else(|| {
        mlua::Error::runtime(format!(
            "KSR.hdr: {line:?} is not a header line (Name: value)"
        ))
    })?;
    Ok((name.trim().to_string(), value.trim().to_string()))
}

/// The value `KSR.x.exit()`/`drop()` raise: one table per state.
fn exit_sentinel(lua: &Lua) -> mlua::Result<Table> {
    const KEY: &str = "__ferrosip_exit";
    if let Ok(t) = lua.named_registry_value::<Table>(KEY) {
        return Ok(t);
    }
    let t = lua.create_table()?;
    lua.set_named_registry_value(KEY, t.clone())?;
    Ok(t)
}

/// Fills the state's `KSR` table.
pub(crate) fn install(lua: &Lua, shared: &Arc<Shared>, st: StateHandle) -> mlua::Result<()> {
    let ksr = lua.create_table()?;
    // Every registered function, by module; the core's at the top (`KSR.setflag`).
    let mut by_module: HashMap<(String, &'static str), Vec<Arc<FunctionDef>>> = HashMap::new();
    for def in shared.registry.functions() {
        by_module
            .entry((def.module.clone(), def.name))
            .or_default()
            .push(def.clone());
    }
    let all = lua.create_table()?;
    for ((module, name), defs) in by_module {
        let top = module == "core";
        let what = if top {
            format!("KSR.{name}")
        } else {
            format!("KSR.{module}.{name}")
        };
        let f = module_function(lua, shared, st, what, defs)?;
        all.set(name, f.clone())?;
        if top {
            ksr.set(name, f)?;
        } else {
            let t: Table = match ksr.get::<Option<Table>>(module.as_str())? {
                Some(t) => t,
                None => {
                    let t = lua.create_table()?;
                    ksr.set(module.as_str(), t.clone())?;
                    t
                }
            };
            t.set(name, f)?;
        }
    }
    // Modules whose work Ferrosip's core does (pv, kex, tmx, ...): Kamailio's scripts call
    // `KSR.tmx.t_precheck_trans()`; the function is found wherever it is registered.
    let fallback = lua.create_table()?;
    fallback.set("__index", all.clone())?;
    for m in shared.registry.modules().filter(|m| m.absorbed) {
        let t: Table = match ksr.get::<Option<Table>>(m.name)? {
            Some(t) => t,
            None => lua.create_table()?,
        };
        t.set_metatable(Some(fallback.clone()));
        ksr.set(m.name, t)?;
    }

    // Method tests.
    for m in METHODS {
        // Raw: routes test the method on every message.
        let f = raw::function(
            lua,
            Box::new(move |l| {
                let is = st.try_ctx(|ctx, _, _| method_is(ctx, m))?;
                // SAFETY: `l` is the state running this raw function.
                unsafe { ffi::lua_pushboolean(l, std::ffi::c_int::from(is)) };
                Ok(1)
            }),
        )?;
        ksr.set(format!("is_{m}"), f)?;
    }
    ksr.set(
        "is_method_in",
        lua.create_function(move |_, letters: mlua::String| {
            let letters = letters.as_bytes().to_vec();
            st.with_ctx(|ctx, _, _| {
                letters.iter().any(|l| {
                    METHOD_LETTERS
                        .iter()
                        .any(|(c, m)| c.eq_ignore_ascii_case(l) && method_is(ctx, m))
                })
            })
        })?,
    )?;
    // `myself` tests, as the native script's `uri == myself`.
    for (name, subject) in [
        ("is_myself_ruri", MyselfSubject::Uri),
        ("is_myself_furi", MyselfSubject::FromUri),
        ("is_myself_turi", MyselfSubject::ToUri),
        ("is_myself_srcip", MyselfSubject::SrcIp),
        ("is_myself_dstip", MyselfSubject::DstIp),
    ] {
        let f = lua.create_function(move |_, ()| {
            st.with_ctx(|ctx, program, _| is_myself_subject(program, ctx, subject, b""))
        })?;
        ksr.set(name, f)?;
    }
    ksr.set(
        "is_myself",
        lua.create_function(move |_, v: mlua::String| {
            let v = v.as_bytes().to_vec();
            st.with_ctx(|ctx, program, _| is_myself_subject(program, ctx, MyselfSubject::Value, &v))
        })?,
    )?;
    ksr.set(
        "is_method",
        lua.create_function(move |_, m: String| st.with_ctx(|ctx, _, _| method_is(ctx, &m)))?,
    )?;
    ksr.set(
        "setdsturi",
        // Raw: every relaying route calls it.
        raw::function(
            lua,
            Box::new(move |l| {
                // SAFETY (all three): `l` is the state running this raw function.
                let uri = match unsafe { raw::arg(l, 1) } {
                    Ok(Value::Str(uri)) => uri,
                    Ok(Value::Int(n)) => Bytes::from(n.to_string()),
                    Ok(Value::Null) => return Err("KSR.setdsturi: a URI string is needed".into()),
                    Err(e) => return Err(format!("KSR.setdsturi: {e}")),
                };
                let rc = if refused_in_onsend_at(st, "KSR.setdsturi", || {
                    unsafe { raw::Caller::of(l) }.location()
                })? {
                    -1
                } else {
                    st.try_ctx(|ctx, _, _| ctx.dst_uri = Some(uri))?;
                    1
                };
                unsafe { ffi::lua_pushinteger(l, rc) };
                Ok(1)
            }),
        )?,
    )?;
    ksr.set(
        "resetdsturi",
        lua.create_function(move |lua, ()| {
            if refused_in_onsend(lua, st, "KSR.resetdsturi")? {
                return Ok(-1);
            }
            st.with_ctx(|ctx, _, _| {
                ctx.dst_uri = None;
                1
            })
        })?,
    )?;
    ksr.set(
        "isdsturiset",
        lua.create_function(move |_, ()| st.with_ctx(|ctx, _, _| ctx.dst_uri.is_some()))?,
    )?;
    // Logging: KSR.info("text"), KSR.log("err", "text").
    ksr.set("err", log_fn(lua, tracing::Level::ERROR)?)?;
    ksr.set("crit", log_fn(lua, tracing::Level::ERROR)?)?;
    ksr.set("warn", log_fn(lua, tracing::Level::WARN)?)?;
    ksr.set("notice", log_fn(lua, tracing::Level::INFO)?)?;
    ksr.set("info", log_fn(lua, tracing::Level::INFO)?)?;
    ksr.set("dbg", log_fn(lua, tracing::Level::DEBUG)?)?;
    ksr.set(
        "log",
        lua.create_function(move |lua, (level, msg): (String, mlua::String)| {
            let text = msg.to_string_lossy();
            let at = caller(lua);
            match level.as_str() {
                "err" | "crit" | "alert" => tracing::error!(location = %at, "{}", text.trim_end()),
                "warn" => tracing::warn!(location = %at, "{}", text.trim_end()),
                "info" | "notice" => tracing::info!(location = %at, "{}", text.trim_end()),
                _ => tracing::debug!(location = %at, "{}", text.trim_end()),
            }
            Ok(())
        })?,
    )?;

    // KSR.pv
    let pv = lua.create_table()?;
    let s = shared.clone();
    pv.set(
        "get",
        lua.create_function(move |lua, name: String| to_lua(lua, pv_get(st, &s, &name)?))?,
    )?;
    let s = shared.clone();
    pv.set(
        "gete",
        lua.create_function(move |lua, name: String| match pv_get(st, &s, &name)? {
            Value::Null => Ok(LuaValue::String(lua.create_string("")?)),
            v => to_lua(lua, v),
        })?,
    )?;
    let s = shared.clone();
    pv.set(
        "getw",
        lua.create_function(move |lua, name: String| match pv_get(st, &s, &name)? {
            Value::Null => Ok(LuaValue::String(lua.create_string("<null>")?)),
            v => to_lua(lua, v),
        })?,
    )?;
    let s = shared.clone();
    pv.set(
        "sets",
        lua.create_function(move |_, (name, v): (String, mlua::String)| {
            pv_set(
                st,
                &s,
                &name,
                Value::Str(Bytes::copy_from_slice(&v.as_bytes())),
            )
        })?,
    )?;
    let s = shared.clone();
    pv.set(
        "seti",
        lua.create_function(move |_, (name, v): (String, i64)| {
            pv_set(st, &s, &name, Value::Int(v))
        })?,
    )?;
    let s = shared.clone();
    pv.set(
        "unset",
        lua.create_function(move |_, name: String| pv_set(st, &s, &name, Value::Null))?,
    )?;
    let s = shared.clone();
    pv.set(
        "is_null",
        lua.create_function(move |_, name: String| {
            Ok(matches!(pv_get(st, &s, &name)?, Value::Null))
        })?,
    )?;
    ksr.set("pv", pv)?;

    // KSR.kx getters.
    let kx = lua.create_table()?;
    for (getter, name) in KX_GETTERS {
        let s = shared.clone();
        kx.set(
            *getter,
            lua.create_function(move |lua, ()| match pv_get(st, &s, name)? {
                Value::Null => Ok(LuaValue::String(lua.create_string("")?)),
                v => to_lua(lua, v),
            })?,
        )?;
    }
    ksr.set("kx", kx)?;

    // KSR.hdr
    let hdr = lua.create_table()?;
    hdr.set(
        "append",
        lua.create_function(move |lua, text: String| {
            let (name, value) = split_header(&text)?;
            if refused_in_onsend(lua, st, "KSR.hdr.append")? {
                return Ok(-1);
            }
            st.with_ctx(|ctx, _, _| {
                if ctx.msg.add_header(&name, value).is_ok() {
                    1
                } else {
                    -1
                }
            })
        })?,
    )?;
    hdr.set(
        "insert",
        lua.create_function(move |lua, text: String| {
            let (name, value) = split_header(&text)?;
            if refused_in_onsend(lua, st, "KSR.hdr.insert")? {
                return Ok(-1);
            }
            st.with_ctx(|ctx, _, _| {
                if ctx.msg.insert_header_first(&name, value).is_ok() {
                    1
                } else {
                    -1
                }
            })
        })?,
    )?;
    hdr.set(
        "remove",
        lua.create_function(move |lua, name: String| {
            if refused_in_onsend(lua, st, "KSR.hdr.remove")? {
                return Ok(-1);
            }
            st.with_ctx(|ctx, _, _| {
                if ctx.msg.remove_headers(&name) > 0 {
                    1
                } else {
                    -1
                }
            })
        })?,
    )?;
    hdr.set(
        "is_present",
        lua.create_function(move |_, name: String| {
            st.with_ctx(|ctx, _, _| {
                if ctx.msg.header(&name).is_some() {
                    1
                } else {
                    -1
                }
            })
        })?,
    )?;
    hdr.set(
        "get",
        lua.create_function(move |lua, name: String| {
            let v = st.with_ctx(|ctx, _, _| ctx.msg.header_bytes(&name))?;
            match v {
                Some(b) => Ok(LuaValue::String(lua.create_string(&b[..])?)),
                None => Ok(LuaValue::Nil),
            }
        })?,
    )?;
    ksr.set("hdr", hdr)?;

    // KSR.x: exit, drop, modf.
    let x = lua.create_table()?;
    // exit/drop raise a sentinel error from Lua: it unwinds the route (even through the
    // script's own pcall, which cannot tell it from others: it is rethrown by the runner's
    // handler only) without a Rust error and its traceback, which cost more than the
    // route itself.
    let set_exit = lua.create_function(move |_, drop: bool| {
        st.data()
            .exit
            .set(Some(if drop { Outcome::Drop } else { Outcome::Exit }));
        Ok(())
    })?;
    let (exit, drop): (mlua::Function, mlua::Function) = lua
        .load(
            "local set_exit, sentinel, error = ...\n\
             return function() set_exit(false) error(sentinel, 0) end,\n\
                    function() set_exit(true) error(sentinel, 0) end",
        )
        .set_name("=KSR.x")
        .call((
            set_exit,
            exit_sentinel(lua)?,
            lua.globals().get::<mlua::Function>("error")?,
        ))?;
    x.set("exit", exit)?;
    x.set("drop", drop)?;
    let modf: mlua::Function = lua
        .load(
            "local all = ...\n\
             return function(name, ...)\n\
               local f = all[name]\n\
               if f == nil then error('KSR.x.modf: no function ' .. tostring(name), 2) end\n\
               return f(...)\n\
             end",
        )
        .set_name("=KSR.x.modf")
        .call(all)?;
    x.set("modf", modf)?;
    ksr.set("x", x)?;

    lua.globals().set("KSR", ksr)?;
    // The message handler of the run's xpcall: the error with the Lua stack (file:line of
    // each frame) at the point it was raised. Built here rather than with the `debug`
    // library, which the state does not load (scripts must not reach it).
    let traceback = lua.create_function(move |lua, msg: LuaValue| {
        let mut text = match &msg {
            LuaValue::String(s) => s.to_string_lossy().to_string(),
            LuaValue::Error(e) => e.to_string(),
            other => format!("{other:?}"),
        };
        text.push_str("\nstack traceback:");
        for level in 1..32 {
            let Some(d) = lua.inspect_stack(level) else {
                break;
            };
            let src = d.source();
            let short = src.short_src.as_deref().unwrap_or("?");
            if src.what == "C" || short.starts_with("ferrosip") {
                continue;
            }
            let names = d.names();
            let name = names.name.as_deref().unwrap_or("?");
            text.push_str(&format!("\n\t{short}:{}: in {name}", d.curr_line()));
        }
        Ok(text)
    })?;
    let runner: mlua::Function = lua
        .load(
            "local xpcall, traceback, sentinel = xpcall, ...\n\
             local function handler(e)\n\
               if e == sentinel then return e end\n\
               return traceback(e)\n\
             end\n\
             return function(f, arg)\n\
               if type(f) ~= 'function' then return false, 'the route function is not defined' end\n\
               return xpcall(f, handler, arg)\n\
             end",
        )
        .set_name("=ferrosip")
        .call((traceback, exit_sentinel(lua)?))?;
    lua.set_named_registry_value(RUNNER, runner)?;
    Ok(())
}
