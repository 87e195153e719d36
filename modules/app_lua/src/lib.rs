//! `app_lua`: routing written in Lua, as Kamailio's KEMI (`cfgengine "lua"`).
//!
//! The config keeps its globals, `loadmodule` and `modparam` lines; the routes are the Lua
//! file's functions: `ksr_request_route()`, `ksr_reply_route()`, and any function named by
//! `KSR.tm.t_on_failure("name")` & co. The `KSR` table is generated from the registry:
//! every function a loaded module registers is `KSR.<module>.<name>(...)`, called by value
//! ([`ferrosip_api::FunctionDef::call_values`]).
//!
//! States: a pool of Lua states, each used by one route run at a time (see
//! [`LuaEngine::run`]). A KSR call to an async function (database, DNS, sleep) yields the
//! run's coroutine: the worker goes on with other messages, the run ends on the runtime.

mod budget;
mod ksr;
mod lint;
mod raw;

use ferrosip_api::registry::BoxFuture;
use ferrosip_api::{
    Module, ModuleBuilder, ModuleParams, MsgContext, ParamType, Registry, RouteKind, RpcValue,
    Value,
};
use ferrosip_script::vm::{Outcome, RuntimeError};
use ferrosip_script::{CfgEngine, EngineInput, Program, RouteEngine, RouteId};
use indexmap::IndexMap;
use mlua::{Function, HookTriggers, Lua, Thread, ThreadStatus, VmState};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub struct AppLuaModule;

use budget::HOOK_EVERY;

impl Module for AppLuaModule {
    fn name(&self) -> &'static str {
        "app_lua"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc(
            "Routing in Lua 5.4 (Kamailio's KEMI): with `cfgengine \"lua\"` the routes are the functions of the file \
             `load` names (`ksr_request_route`, `ksr_reply_route`, and those named by `KSR.tm.t_on_failure(\"name\")`, \
             `t_on_branch`, `t_on_reply`). `KSR.<module>.<function>(...)` calls any function a loaded module registers; \
             a call that waits (database, DNS, sleep) suspends the Lua coroutine without blocking the worker. \
             SIGHUP reloads the file with the config; a file that does not load keeps the old one. See docs/lua.md.",
        );
        m.param(
            "load",
            ParamType::Str,
            Value::Null,
            "The Lua file with the routing functions (required with `cfgengine \"lua\"`); a relative path is taken from the working directory, else (no such file there) from the config file's directory.",
        );
        m.param(
            "max_instructions",
            ParamType::Int,
            100_000_000_i64,
            "Ferrosip's: Lua instructions one route run may execute, counted once it has run Lua for 50 ms without a pause (waiting does not count), before it is aborted with an error; cuts a runaway loop.",
        );
        m.param(
            "max_states",
            ParamType::Int,
            256_i64,
            "Ferrosip's: Lua states (each one route run at a time); runs beyond it wait for a state.",
        );
        m.provide(Arc::new(CfgEngine {
            name: "lua",
            module: "app_lua",
            build: Box::new(build_engine),
        }));
        m.rpc(
            "app_lua.reload",
            "Reloads the config and its Lua file, as SIGHUP does (same atomic rules: a file that does not load keeps the running one); the outcome is logged.",
            |_args| {
                // The reload is the server's (it recompiles the config with the Lua file);
                // the module reaches it the way an operator does.
                // SAFETY: kill(2) on our own pid with a signal the server handles.
                let rc = unsafe { libc::kill(libc::getpid(), libc::SIGHUP) };
                if rc == 0 {
                    Ok(RpcValue::Str("reload requested; see the log for its outcome".into()))
                } else {
                    Err(format!("reload not requested: {}", std::io::Error::last_os_error()))
                }
            },
        );
    }
}

/// One routing function of the script.
struct LuaRoute {
    name: String,
}

/// Route ids from here on are events (`EVENT_BASE + index` in [`LuaEngine::events`]).
const EVENT_BASE: RouteId = 1 << 30;
/// Distinct event names an engine keeps (modules raise a handful).
const MAX_EVENTS: usize = 256;

/// What every Lua state of one engine shares.
pub(crate) struct Shared {
    pub registry: Arc<Registry>,
    pub modules: IndexMap<&'static str, ModuleParams>,
    pub path: PathBuf,
    pub source: Vec<u8>,
    pub max_instructions: u64,
    /// The statement trace switch: KSR calls are reported while it is on.
    pub trace: Arc<ferrosip_api::trace::CfgTrace>,
}

/// An idle Lua state: the coroutine routes run in, and the runner function it is reset
/// to after each run (kept here, not looked up in the registry on every run).
struct PooledState {
    /// Owns the state: the handles below hold it weakly (mlua), and it closes with this.
    #[allow(dead_code, reason = "held for ownership only")]
    lua: Lua,
    data: ksr::StateHandle,
    /// `thread`'s `lua_State`, for the instruction budget's hook.
    coroutine: *mut mlua::ffi::lua_State,
    thread: Thread,
    runner: Function,
    /// The globals table and each route's name as a Lua string, by route id: a route
    /// function is still looked up by name on every run (a script may replace it), without
    /// interning its name again (~1,500 instructions per call).
    globals: mlua::Table,
    route_names: Vec<mlua::String>,
}

// SAFETY: `coroutine` points into `lua`'s own heap and is only used by the run that holds
// this entry; it moves between threads with `lua`, which mlua's `send` feature allows.
unsafe impl Send for PooledState {}

/// A loaded Lua script: its routes and a pool of states running it.
pub struct LuaEngine {
    shared: Arc<Shared>,
    routes: Vec<LuaRoute>,
    by_name: HashMap<String, RouteId>,
    request: Option<RouteId>,
    reply: Option<RouteId>,
    /// `ksr_onsend_route`, run before each request leaves (Kamailio's KEMI onsend).
    onsend: Option<RouteId>,
    /// Idle states, each with its route coroutine (reset between runs, hook kept).
    pool: Mutex<Vec<PooledState>>,
    /// Event names (`dispatcher:dst-down`) seen by [`RouteEngine::named_route`], each with
    /// the function its module's `event_callback` parameter names.
    events: Mutex<Vec<(String, RouteId)>>,
    permits: tokio::sync::Semaphore,
}

fn build_engine(input: &EngineInput<'_>) -> Result<Arc<dyn RouteEngine>, Vec<String>> {
    let params = input.modules.get("app_lua").ok_or_else(|| {
        vec!["error: cfgengine \"lua\" needs loadmodule \"app_lua.so\"".to_string()]
    })?;
    let path = params.string("load");
    if path.is_empty() {
        return Err(vec![
            "error: cfgengine \"lua\" needs modparam(\"app_lua\", \"load\", \"FILE.lua\")"
                .to_string(),
        ]);
    }
    // A relative path is taken from the working directory as Kamailio does; when no such
    // file is there, from the config file's directory (a config and its script then move
    // together whatever directory the server starts in).
    let path = match input.config_dir {
        Some(dir) if PathBuf::from(&path).is_relative() && !PathBuf::from(&path).exists() => {
            dir.join(path)
        }
        _ => PathBuf::from(path),
    };
    let source = std::fs::read(&path).map_err(|e| {
        vec![format!(
            "error: app_lua: cannot read {}: {e}",
            path.display()
        )]
    })?;
    let max_instructions = params.int("max_instructions").max(HOOK_EVERY as i64) as u64;
    let max_states = params.int("max_states").clamp(1, 65_536) as usize;
    let shared = Arc::new(Shared {
        registry: input.registry.clone(),
        modules: input.modules.clone(),
        path,
        source,
        max_instructions,
        trace: input.registry.cfg_trace(),
    });
    let problems = lint::check(&shared);
    if !problems.is_empty() {
        return Err(problems);
    }
    let (first, data) = new_state(&shared).map_err(|e| vec![format!("error: app_lua: {e}")])?;
    let mut routes = Vec::new();
    let mut by_name = HashMap::new();
    for pair in first.globals().pairs::<mlua::Value, mlua::Value>() {
        let Ok((mlua::Value::String(k), mlua::Value::Function(_))) = pair else {
            continue;
        };
        let Ok(name) = k.to_str().map(|s| s.to_string()) else {
            continue;
        };
        if name.starts_with("__ferrosip") {
            continue;
        }
        by_name.insert(name.clone(), routes.len() as RouteId);
        routes.push(LuaRoute { name });
    }
    let first = pooled(first, data, &routes).map_err(|e| vec![format!("error: app_lua: {e}")])?;
    let file = shared.path.display().to_string();
    let Some(request) = by_name.get("ksr_request_route").copied() else {
        return Err(vec![format!(
            "error: {file}: no function ksr_request_route() (cfgengine \"lua\" runs it for every request)"
        )]);
    };
    let reply = by_name.get("ksr_reply_route").copied();
    let onsend = by_name.get("ksr_onsend_route").copied();
    Ok(Arc::new(LuaEngine {
        shared,
        routes,
        by_name,
        request: Some(request),
        reply,
        onsend,
        pool: Mutex::new(vec![first]),
        events: Mutex::new(Vec::new()),
        permits: tokio::sync::Semaphore::new(max_states),
    }))
}

fn budget_triggers() -> HookTriggers {
    HookTriggers::new().every_nth_instruction(HOOK_EVERY)
}

/// Counts the instructions of the script's top level (`new_state`) against the budget.
fn budget_hook(
    st: ksr::StateHandle,
) -> impl Fn(&Lua, mlua::Debug) -> mlua::Result<VmState> + Send + 'static {
    move |_, _debug| {
        st.data()
            .charge_hook_period()
            .map_err(mlua::Error::runtime)?;
        Ok(VmState::Continue)
    }
}

/// `lua` ready for the pool: the coroutine its routes run in (the runner), reset and
/// reused run after run. The instruction budget's hook is set on it only when a run goes
/// on too long (`budget`).
fn pooled(lua: Lua, data: ksr::StateHandle, routes: &[LuaRoute]) -> mlua::Result<PooledState> {
    let runner: Function = lua.named_registry_value(ksr::RUNNER)?;
    let thread = lua.create_thread(runner.clone())?;
    // For a coroutine, Lua's `lua_topointer` is its `lua_State`.
    let coroutine = thread.to_pointer() as *mut mlua::ffi::lua_State;
    let route_names = routes
        .iter()
        .map(|r| lua.create_string(&r.name))
        .collect::<mlua::Result<Vec<_>>>()?;
    Ok(PooledState {
        globals: lua.globals(),
        route_names,
        lua,
        data,
        coroutine,
        thread,
        runner,
    })
}

/// A new Lua state with the `KSR` table, the script loaded and the instruction budget hook.
fn new_state(shared: &Arc<Shared>) -> mlua::Result<(Lua, ksr::StateHandle)> {
    let lua = Lua::new();
    let data = ksr::StateHandle::install(&lua);
    lua.set_app_data(raw::Bodies::default());
    ksr::install(&lua, shared, data)?;
    data.data().max_instructions.set(shared.max_instructions);
    // The script's top level runs under the same budget as a route, counted from its
    // start (it runs once per state).
    lua.set_hook(budget_triggers(), budget_hook(data));
    let name = format!("@{}", shared.path.display());
    let loaded = lua.load(&shared.source[..]).set_name(name).exec();
    lua.remove_hook();
    loaded?;
    Ok((lua, data))
}

impl LuaEngine {
    /// The route of event `name` (`module:event`): the function the module's
    /// `event_callback` parameter names, run with the event name (Kamailio's KEMI way).
    fn event_route(&self, name: &str) -> Option<RouteId> {
        let module = name.split(':').next()?;
        let callback = self.shared.modules.get(module)?;
        let function = callback.string("event_callback");
        let target = *self.by_name.get(function.as_str())?;
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = events.iter().position(|(n, _)| n == name) {
            return Some(EVENT_BASE + i as RouteId);
        }
        if events.len() >= MAX_EVENTS {
            tracing::warn!(
                event = name,
                "app_lua: too many distinct event names; event not run"
            );
            return None;
        }
        events.push((name.to_string(), target));
        Some(EVENT_BASE + (events.len() - 1) as RouteId)
    }

    fn take_state(&self) -> Result<PooledState, RuntimeError> {
        if let Some(state) = self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(state);
        }
        new_state(&self.shared)
            .and_then(|(lua, data)| pooled(lua, data, &self.routes))
            .map_err(|e| RuntimeError {
                location: self.shared.path.display().to_string(),
                message: format!("a new Lua state did not load: {e}"),
            })
    }

    /// Puts a state back in the pool once its coroutine is ready for the next run; a
    /// state whose coroutine cannot be reset is dropped.
    fn give_back(&self, state: PooledState) {
        if !matches!(
            state.thread.status(),
            ThreadStatus::Finished | ThreadStatus::Error
        ) {
            return;
        }
        if state.thread.reset(state.runner.clone()).is_ok() {
            self.pool
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(state);
        }
    }
}

impl RouteEngine for LuaEngine {
    fn name(&self) -> &'static str {
        "lua"
    }

    fn main_route(&self, kind: RouteKind) -> Option<RouteId> {
        match kind {
            RouteKind::Request => self.request,
            RouteKind::CoreOnReply => self.reply,
            RouteKind::OnSend => self.onsend,
            _ => None,
        }
    }

    fn named_route(&self, kind: RouteKind, name: &str) -> Option<RouteId> {
        match kind {
            RouteKind::Failure | RouteKind::Branch | RouteKind::TmOnReply | RouteKind::Request => {
                self.by_name.get(name).copied()
            }
            RouteKind::Event => self.event_route(name),
            _ => None,
        }
    }

    fn run<'a>(
        &'a self,
        program: &'a Program,
        route: RouteId,
        ctx: &'a mut MsgContext,
    ) -> BoxFuture<'a, Result<Outcome, RuntimeError>> {
        Box::pin(async move {
            let location = || self.shared.path.display().to_string();
            // An event runs its callback with the event name as argument.
            let (route, event) = if route >= EVENT_BASE {
                let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
                match events.get((route - EVENT_BASE) as usize) {
                    Some((name, target)) => (*target, Some(name.clone())),
                    None => (route, None),
                }
            } else {
                (route, None)
            };
            let Some(r) = self.routes.get(route as usize) else {
                return Err(RuntimeError {
                    location: location(),
                    message: format!("no Lua route #{route}"),
                });
            };
            // One run per state at a time: the state's KSR functions reach this run's
            // context through the state (`ksr::StateData`).
            let _permit = self.permits.acquire().await.map_err(|_| RuntimeError {
                location: location(),
                message: "the Lua engine is closed".into(),
            })?;
            let state = self.take_state()?;
            let thread = &state.thread;
            let target: mlua::Value = match state.route_names.get(route as usize) {
                Some(name) => state.globals.raw_get(name).unwrap_or(mlua::Value::Nil),
                None => mlua::Value::Nil,
            };
            state.data.begin_run(ctx, program);
            // SAFETY: the pool gave this run the state; nothing else runs its coroutine.
            unsafe { budget::clear(state.coroutine) };
            // The coroutine yields on async KSR calls; this future then waits.
            let result = budget::Watched {
                inner: thread
                    .clone()
                    .into_async::<(bool, mlua::Value)>((target, event)),
                coroutine: state.coroutine,
                data: state.data.data(),
            }
            .await;
            let exit = state.data.end_run();
            self.give_back(state);
            if let Some(outcome) = exit {
                return Ok(outcome);
            }
            match result {
                Ok((true, _)) => Ok(Outcome::Return(1)),
                Ok((false, err)) => Err(RuntimeError {
                    location: format!("{} ({})", location(), r.name),
                    message: match err {
                        mlua::Value::String(s) => s.to_string_lossy().to_string(),
                        other => format!("{other:?}"),
                    },
                }),
                Err(e) => Err(RuntimeError {
                    location: format!("{} ({})", location(), r.name),
                    message: e.to_string(),
                }),
            }
        })
    }
}
