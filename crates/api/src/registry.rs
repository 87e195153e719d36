//! The registry: one place where modules declare what they offer.
//!
//! ```ignore
//! m.function("mf_process_maxfwd_header")
//!     .args(&["max_value"])
//!     .routes(RouteMask::REQUEST | RouteMask::FAILURE | RouteMask::BRANCH)
//!     .doc("Decrements Max-Forwards, adding it with MAX if absent; -1 when it was 0.")
//!     .handler(|ctx: &mut MsgContext, max: i64| { /* ... */ Ok(Verdict::TRUE) });
//! ```
//! or, as a table with one row per overload (Kamailio's `cmd_export_t`):
//! ```ignore
//! m.functions([
//!     FnRow::sync("is_maxfwd_lt", &["max_value"], RouteMask::REQUEST, "True when ...", is_maxfwd_lt),
//!     FnRow::declared::<(Bytes,)>("later", &["text"], RouteMask::ANY, "Not built yet."),
//! ]);
//! ```
//! A name may be registered once per arity (Kamailio's optional parameters) by each module;
//! two modules may offer the same name (rtpengine's and rtpproxy's `start_recording()`).
//! The compiler picks the overload by argument count, preferring a loaded module's, runs
//! its fixup, and checks the route kind.
//!
//! One registration gives two ways to call the same typed handler:
//! - compiled scripts: arguments fixed up once at load ([`FunctionDef::fixup`]), evaluated
//!   per call ([`FunctionDef::call`]);
//! - calls by value (Lua's `KSR.*`, the control interface): run-time [`Value`]s converted
//!   by [`ArgType::from_value`] on each call ([`FunctionDef::call_values`]).
//!
//! Declaration mistakes (argument names that do not match the handler's arity, a name and
//! arity registered twice) are recorded in [`Registry::declaration_errors`], which the test
//! suite checks over the full registry.

use crate::args::{ArgKind, ArgType, CallEnv, FixedArg, FixupEnv, RawArg};
use crate::context::MsgContext;
use crate::pv::{PvClass, PvParamRule};
use crate::route::RouteMask;
use crate::transform::TransformClass;
use crate::value::Value;
use crate::{FnResult, Module};
use indexmap::{IndexMap, IndexSet};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

/// A boxed future borrowing the message context.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A synchronous function called with fixed-up arguments (compiled scripts).
pub type SyncCall = dyn Fn(&mut MsgContext, &[FixedArg]) -> FnResult + Send + Sync;
/// What an async function's future resolves to: the step that applies its result to the
/// message (set the R-URI, add branches, ...) once the awaited work is done. The future
/// itself owns what it needs, so no borrow of the context is held across the await.
pub type ApplyResult = Box<dyn FnOnce(&mut MsgContext) -> FnResult + Send>;
/// An asynchronous function called with fixed-up arguments; the future is as in [`ApplyResult`].
pub type AsyncCall =
    dyn Fn(&mut MsgContext, &[FixedArg]) -> BoxFuture<'static, ApplyResult> + Send + Sync;

/// Wraps the final step of an async function.
pub fn apply_result(f: impl FnOnce(&mut MsgContext) -> FnResult + Send + 'static) -> ApplyResult {
    Box::new(f)
}
/// Fixes up every argument of a call at load; an error names the argument (0-based) and why.
pub type FixupFn =
    dyn Fn(Vec<RawArg>, &dyn FixupEnv) -> Result<Vec<FixedArg>, (usize, String)> + Send + Sync;

/// A synchronous function called with run-time values (converted on each call).
pub type SyncValueCall = dyn Fn(&mut MsgContext, &[Value], &dyn CallEnv) -> FnResult + Send + Sync;
/// An asynchronous function called with run-time values; the future is as in [`AsyncCall`].
pub type AsyncValueCall = dyn Fn(&mut MsgContext, &[Value], &dyn CallEnv) -> BoxFuture<'static, ApplyResult>
    + Send
    + Sync;

/// How a function runs when called by value; always the same kind as its [`Callable`].
#[derive(Clone)]
pub enum ValueCallable {
    /// A synchronous handler.
    Sync(Arc<SyncValueCall>),
    /// An asynchronous handler.
    Async(Arc<AsyncValueCall>),
    /// Declared only: a call is an error.
    Declared,
}

/// What [`FunctionDef::call_values`] gives: the result of a synchronous function, or the
/// future of an asynchronous one, whose output is then applied to the context.
pub enum CallOutcome {
    /// A synchronous function ran: its result.
    Done(FnResult),
    /// An asynchronous function's work, to await and then apply.
    Pending(BoxFuture<'static, ApplyResult>),
}

impl CallOutcome {
    /// The function's result: awaits an asynchronous function's work and applies it to
    /// `ctx` (the context the call was made with).
    pub async fn finish(self, ctx: &mut MsgContext) -> FnResult {
        match self {
            CallOutcome::Done(result) => result,
            CallOutcome::Pending(work) => {
                let apply = work.await;
                apply(ctx)
            }
        }
    }
}

/// How a function runs.
#[derive(Clone)]
pub enum Callable {
    /// Runs inline on the thread that has the message.
    Sync(Arc<SyncCall>),
    /// Awaited by the VM without blocking other messages (database, DNS).
    Async(Arc<AsyncCall>),
    /// Declared with its real signature so that scripts using it load, but its behaviour is
    /// not built yet: `check` reports it, `run` refuses to start.
    Declared,
}

impl std::fmt::Debug for Callable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Callable::Sync(_) => "Sync",
            Callable::Async(_) => "Async",
            Callable::Declared => "Declared",
        })
    }
}

/// One overload of a script function.
pub struct FunctionDef {
    /// The name scripts call.
    pub name: &'static str,
    /// The module that declared it.
    pub module: String,
    /// The kind of each argument, from the handler's parameter types.
    pub arg_kinds: Vec<ArgKind>,
    /// The name of each argument (`.args(..)`), for docs and messages.
    pub arg_names: Vec<&'static str>,
    /// The route kinds it may be called in.
    pub routes: RouteMask,
    /// What it does and what its return codes mean.
    pub doc: &'static str,
    /// Checks and converts a compiled call's arguments at load.
    pub fixup: Arc<FixupFn>,
    /// The call with fixed-up arguments (compiled scripts).
    pub call: Callable,
    /// The same handler called with run-time values; use [`FunctionDef::call_values`].
    pub by_value: ValueCallable,
}

impl FunctionDef {
    /// How many arguments it takes.
    pub fn arity(&self) -> usize {
        self.arg_kinds.len()
    }

    /// Calls the function with run-time values, one per declared argument, each converted
    /// as [`ArgType::from_value`] says for its type; `env` resolves what a value names (a
    /// PV, a route of the running program, a module parameter).
    ///
    /// Errors, never panics, for: a wrong number of values, a value that does not convert,
    /// a route kind the function is not allowed in (`ctx.route`), a function that is only
    /// declared. A synchronous function has run when this returns ([`CallOutcome::Done`]);
    /// an asynchronous one gives its future ([`CallOutcome::Pending`]): await it with
    /// [`CallOutcome::finish`] on the same context.
    pub fn call_values(
        &self,
        ctx: &mut MsgContext,
        args: &[Value],
        env: &dyn CallEnv,
    ) -> CallOutcome {
        if args.len() != self.arity() {
            return CallOutcome::Done(Err(crate::FnError::new(format!(
                "{} takes {} argument{}, {} given",
                self.signature(),
                self.arity(),
                if self.arity() == 1 { "" } else { "s" },
                args.len()
            ))));
        }
        if !self.routes.contains(ctx.route) {
            return CallOutcome::Done(Err(crate::FnError::new(format!(
                "{} is not allowed in {} (allowed in: {})",
                self.name,
                ctx.route.keyword(),
                self.routes
            ))));
        }
        match &self.by_value {
            ValueCallable::Sync(f) => CallOutcome::Done(f(ctx, args, env)),
            ValueCallable::Async(f) => CallOutcome::Pending(f(ctx, args, env)),
            ValueCallable::Declared => CallOutcome::Done(Err(crate::FnError::new(format!(
                "{} is declared but not implemented in this version of Ferrosip",
                self.name
            )))),
        }
    }

    /// `name(arg1, arg2)` for messages and docs.
    pub fn signature(&self) -> String {
        let args: Vec<String> = self
            .arg_kinds
            .iter()
            .enumerate()
            .map(|(i, k)| match self.arg_names.get(i) {
                Some(n) => format!("{n}: {}", k.describe()),
                None => k.describe().to_string(),
            })
            .collect();
        format!("{}({})", self.name, args.join(", "))
    }
}

impl std::fmt::Debug for FunctionDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FunctionDef({} [{}])", self.signature(), self.module)
    }
}

/// Type of a module parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamType {
    /// An integer.
    Int,
    /// A string.
    Str,
}

/// A module parameter (`modparam`).
#[derive(Clone, Debug)]
pub struct ParamDef {
    /// The name `modparam` gives.
    pub name: &'static str,
    /// Integer or string.
    pub ty: ParamType,
    /// The value when the script sets none (Kamailio's default).
    pub default: Value,
    /// May be given several times, each adding a value (e.g. `htable`'s `htable`).
    pub repeatable: bool,
    /// What it sets, for the docs.
    pub doc: &'static str,
}

/// The values a script gave a module's parameters.
#[derive(Clone, Debug, Default)]
pub struct ModuleParams {
    defaults: HashMap<&'static str, Value>,
    values: HashMap<String, Vec<Value>>,
}

impl ModuleParams {
    /// The value of `name`: the script's last one, else the default, else null.
    pub fn get(&self, name: &str) -> Value {
        self.values
            .get(name)
            .and_then(|v| v.last().cloned())
            .or_else(|| self.defaults.get(name).cloned())
            .unwrap_or_default()
    }

    /// [`ModuleParams::get`] as an integer (0 when it is none).
    pub fn int(&self, name: &str) -> i64 {
        self.get(name).as_int().unwrap_or(0)
    }

    /// [`ModuleParams::get`] as text (empty for null).
    pub fn string(&self, name: &str) -> String {
        self.get(name)
            .to_bytes()
            .map_or_else(String::new, |b| String::from_utf8_lossy(&b).into_owned())
    }

    /// Every value given to a repeatable parameter, in script order.
    pub fn all(&self, name: &str) -> &[Value] {
        self.values.get(name).map_or(&[], |v| v.as_slice())
    }

    /// True when the script set `name`.
    pub fn is_set(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// Adds a value the script gave `name` (the loader calls it for each `modparam`).
    pub fn push(&mut self, name: &str, value: Value) {
        self.values.entry(name.to_string()).or_default().push(value);
    }
}

/// A value returned by an RPC command (JSON-RPC compatible shape).
#[derive(Clone, Debug, PartialEq)]
pub enum RpcValue {
    /// No value.
    Null,
    /// An integer.
    Int(i64),
    /// A string.
    Str(String),
    /// A list.
    Array(Vec<RpcValue>),
    /// Named members, in order.
    Struct(Vec<(String, RpcValue)>),
}

/// A synchronous RPC handler ([`ModuleBuilder::rpc`]).
pub type RpcHandler = dyn Fn(&[Value]) -> Result<RpcValue, String> + Send + Sync;
/// An asynchronous RPC handler ([`ModuleBuilder::rpc_async`]): database reloads, flushes.
pub type AsyncRpcHandler =
    dyn Fn(Vec<Value>) -> BoxFuture<'static, Result<RpcValue, String>> + Send + Sync;

/// How an RPC command runs.
#[derive(Clone)]
pub enum RpcCallable {
    /// Runs on the async runtime's blocking pool when called through [`RpcDef::call`]: it
    /// may read a file or take a lock without stalling the runtime's workers.
    Sync(Arc<RpcHandler>),
    /// Awaited on the runtime (its I/O is async).
    Async(Arc<AsyncRpcHandler>),
}

/// An RPC command (`dispatcher.list`, ...).
#[derive(Clone)]
pub struct RpcDef {
    /// The command's name (`module.command`).
    pub name: &'static str,
    /// What it does, for the docs and `system.listMethods`-style help.
    pub doc: &'static str,
    /// The module that declared it.
    pub module: &'static str,
    /// How it runs.
    pub handler: RpcCallable,
}

impl RpcDef {
    /// Runs the command with its arguments, whichever kind it is. Inside a Tokio runtime a
    /// synchronous handler runs on the blocking pool (`spawn_blocking`) and an async one on
    /// a task of its own, so a handler that panics answers an error instead of taking the
    /// caller down; outside a runtime (tests, tools) a synchronous handler runs inline.
    pub fn call(&self, args: Vec<Value>) -> BoxFuture<'static, Result<RpcValue, String>> {
        let name = self.name;
        let panicked = move |e: tokio::task::JoinError| format!("rpc {name} failed: {e}");
        match &self.handler {
            RpcCallable::Sync(handler) => {
                let handler = handler.clone();
                Box::pin(async move {
                    match tokio::runtime::Handle::try_current() {
                        Ok(rt) => rt
                            .spawn_blocking(move || handler(&args))
                            .await
                            .unwrap_or_else(|e| Err(panicked(e))),
                        Err(_) => handler(&args),
                    }
                })
            }
            RpcCallable::Async(handler) => {
                let work = handler(args);
                Box::pin(async move {
                    match tokio::runtime::Handle::try_current() {
                        Ok(rt) => rt.spawn(work).await.unwrap_or_else(|e| Err(panicked(e))),
                        Err(_) => work.await,
                    }
                })
            }
        }
    }

    /// True for an [`RpcCallable::Async`] command.
    pub fn is_async(&self) -> bool {
        matches!(self.handler, RpcCallable::Async(_))
    }
}

/// Runs after each load of a script loading the module, with its parameters ([`ModuleBuilder::on_init`]).
pub type InitHook = dyn Fn(&ModuleParams) -> Result<(), String> + Send + Sync;

/// What a module sees when the server starts (not during `ferrosip check`).
pub struct StartEnv<'a> {
    /// The module's parameters as the script set them.
    pub params: &'a ModuleParams,
    /// The server's async runtime: database pools, timers and background tasks run here.
    pub runtime: tokio::runtime::Handle,
}

/// Runs when the server starts, before it takes traffic: connect to databases, load
/// tables, spawn timers. The hook reads what it needs from the environment and returns a
/// future the server awaits on its runtime; an error stops the start with the message.
pub type StartHook = dyn Fn(&StartEnv<'_>) -> BoxFuture<'static, Result<(), String>> + Send + Sync;
/// Runs once the server is up (after every start hook, before traffic) with its services:
/// for modules that send requests of their own (dispatcher's probes) or run event routes.
pub type ReadyHook = dyn Fn(&Arc<dyn crate::services::Services>) + Send + Sync;
/// Runs when the server stops (flush write-back caches); the runtime is still up.
/// Sync hooks run on the runtime's blocking pool, async ones as tasks; see
/// [`run_stop_hooks`].
pub enum StopHook {
    /// Runs on the blocking pool ([`ModuleBuilder::on_stop`]).
    Sync(Box<dyn Fn(&tokio::runtime::Handle) + Send + Sync>),
    /// Awaited as a task ([`ModuleBuilder::on_stop_async`]).
    Async(Box<dyn Fn(StopEnv) -> BoxFuture<'static, ()> + Send + Sync>),
}

/// What a stop hook sees: the runtime is still up while stop hooks run.
#[derive(Clone)]
pub struct StopEnv {
    /// The server's runtime.
    pub runtime: tokio::runtime::Handle,
}

/// How long the server gives its stop hooks, all together: a database that does not answer
/// a write-back flush must not keep the process from ending.
pub const STOP_HOOKS_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs every stop hook at once (sync ones on the blocking pool, async ones as tasks) and
/// waits for them at most `limit` in all. Answers the modules whose hooks had not finished
/// by then, once each in hook order, for the caller to log; an async hook still running is
/// aborted, a sync one is left to the runtime's shutdown. A hook that panics counts as
/// finished (its panic is the runtime's to report).
pub async fn run_stop_hooks(
    hooks: &[(&'static str, Arc<StopHook>)],
    runtime: tokio::runtime::Handle,
    limit: std::time::Duration,
) -> Vec<&'static str> {
    let tasks: Vec<(&'static str, tokio::task::JoinHandle<()>)> = hooks
        .iter()
        .map(|(module, hook)| {
            let hook = hook.clone();
            let task = match &*hook {
                StopHook::Sync(_) => {
                    let rt = runtime.clone();
                    runtime.spawn_blocking(move || {
                        if let StopHook::Sync(run) = &*hook {
                            run(&rt)
                        }
                    })
                }
                StopHook::Async(run) => runtime.spawn(run(StopEnv {
                    runtime: runtime.clone(),
                })),
            };
            (*module, task)
        })
        .collect();
    let deadline = tokio::time::Instant::now() + limit;
    let mut unfinished: Vec<&'static str> = Vec::new();
    for (module, mut task) in tasks {
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            task.abort();
            if !unfinished.contains(&module) {
                unfinished.push(module);
            }
        }
    }
    unfinished
}

/// A request leaving on one branch, as per-branch outbound hooks see it: already
/// prepared (received/rport, Max-Forwards, our Via, Content-Length).
pub struct OutgoingBranch<'a> {
    /// The request as it will be sent; hooks edit it.
    pub request: &'a mut ferrosip_sip::SipMessage,
    /// The socket the request came in on and the one it leaves from.
    pub sockets: &'a dyn BranchSockets,
    /// What the routes left for this branch (the request route's, or its branch route's).
    pub ext: &'a crate::Extensions,
}

/// The sockets of an outgoing branch, described on demand: a wildcard socket's address
/// depends on the peer and costs a system call to learn, so only a hook that writes it
/// asks.
pub trait BranchSockets {
    /// The socket the request came in on.
    fn inbound(&self) -> crate::rr::SocketDesc;
    /// The socket the request leaves from.
    fn outbound(&self) -> crate::rr::SocketDesc;
    /// Where the request is sent: its transport and the next hop's address.
    fn destination(&self) -> (crate::Proto, std::net::SocketAddr);
}

/// Edits a request as it leaves on a branch (rr's Record-Route).
pub type BranchHookFn = dyn Fn(&mut OutgoingBranch<'_>) -> Result<(), crate::FnError> + Send + Sync;

/// A per-branch outbound hook. A transaction sends branches after its request route
/// has ended (after `branch_route`, from `failure_route`): `keep` copies what the hook
/// reads from the request's extensions into the transaction's, and back into the
/// context of each route the transaction runs.
#[derive(Clone)]
pub struct BranchHook {
    /// Edits the request on each branch.
    pub run: Arc<BranchHookFn>,
    /// Copies what `run` reads from one extension set to another.
    pub keep: fn(from: &crate::Extensions, to: &mut crate::Extensions),
}

/// What the registry knows about one module.
pub struct ModuleDef {
    /// The name `loadmodule` gives.
    pub name: &'static str,
    /// What it does (its first line is the docs index's summary).
    pub doc: &'static str,
    /// Its parameters.
    pub params: Vec<ParamDef>,
    /// The names of its functions (overloads are in the registry).
    pub functions: Vec<&'static str>,
    /// The names of its PV classes.
    pub pvs: Vec<String>,
    /// Its RPC commands.
    pub rpcs: Vec<RpcDef>,
    /// Init hooks, run after each load.
    pub init: Vec<Arc<InitHook>>,
    /// Start hooks, awaited before traffic.
    pub start: Vec<Arc<StartHook>>,
    /// Ready hooks, run once the server is up.
    pub ready: Vec<Arc<ReadyHook>>,
    /// Stop hooks.
    pub stop: Vec<Arc<StopHook>>,
    /// Per-branch outbound hooks, run in load order on every request sent.
    pub branch: Vec<BranchHook>,
    /// Builders of transaction observers (see [`crate::tm_events`]).
    pub tm_observers: Vec<Arc<crate::tm_events::TmObserverBuild>>,
    /// Taps that see every message received and sent (see [`crate::trace::MessageTap`]).
    pub taps: Vec<Arc<dyn crate::trace::MessageTap>>,
    /// Loaded without `loadmodule` (the core).
    pub always_loaded: bool,
    /// A Kamailio module whose job Ferrosip's core already does (`pv`, `kex`, `tmx`, ...):
    /// `loadmodule` accepts it and it adds nothing.
    pub absorbed: bool,
    /// A complete config showing the module at work (checked by the test suite).
    pub example: &'static str,
    /// Modules a script must load before this one (registrar needs usrloc).
    pub needs: Vec<&'static str>,
}

impl ModuleDef {
    /// The declared parameter `name`.
    pub fn param(&self, name: &str) -> Option<&ParamDef> {
        self.params.iter().find(|p| p.name == name)
    }

    /// Parameter defaults, ready to receive the script's values.
    pub fn default_params(&self) -> ModuleParams {
        ModuleParams {
            defaults: self
                .params
                .iter()
                .map(|p| (p.name, p.default.clone()))
                .collect(),
            values: HashMap::new(),
        }
    }
}

/// Every module, function, PV class and transformation class Ferrosip has.
#[derive(Default)]
pub struct Registry {
    modules: IndexMap<&'static str, ModuleDef>,
    functions: HashMap<&'static str, Vec<Arc<FunctionDef>>>,
    pv_classes: HashMap<String, (Arc<dyn PvClass>, &'static str)>,
    transforms: HashMap<String, Arc<dyn TransformClass>>,
    vars: Mutex<IndexSet<String>>,
    avps: AvpNames,
    cfg_vars: Arc<std::sync::RwLock<HashMap<String, Value>>>,
    cfg_trace: Arc<crate::trace::CfgTrace>,
    clock: crate::clock::Clock,
    declaration_errors: Vec<String>,
    /// Typed module APIs by type: each an `Arc<OnceLock<Arc<T>>>` (see [`ModuleApi`]).
    apis: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

/// A module's state, built from its parameters by the init hook [`ModuleBuilder::state`]
/// registers; replaced as a whole when a script is loaded again. Handlers read it without a
/// lock (it is read on every call and written once per load).
pub struct StateSlot<S> {
    module: &'static str,
    state: Arc<arc_swap::ArcSwapOption<S>>,
}

impl<S> Clone for StateSlot<S> {
    fn clone(&self) -> Self {
        StateSlot {
            module: self.module,
            state: self.state.clone(),
        }
    }
}

impl<S> StateSlot<S> {
    /// The state, or an error when no script loading the module has been loaded yet.
    pub fn get(&self) -> Result<Arc<S>, crate::FnError> {
        self.state.load_full().ok_or_else(|| self.not_initialised())
    }

    fn not_initialised(&self) -> crate::FnError {
        crate::FnError::new(format!("module {} is not initialised", self.module))
    }

    /// A handler that gets the state first: `slot.with(|s: &S, ctx: &mut MsgContext, a:
    /// i64| ...)`, registered like any handler (sync or async, builder or [`FnRow`]).
    pub fn with<F>(&self, handler: F) -> WithState<S, F> {
        WithState {
            slot: self.clone(),
            handler,
        }
    }
}

/// A handler of a module's state; made by [`StateSlot::with`].
pub struct WithState<S, F> {
    slot: StateSlot<S>,
    handler: F,
}

impl<S, F: Clone> Clone for WithState<S, F> {
    fn clone(&self) -> Self {
        WithState {
            slot: self.slot.clone(),
            handler: self.handler.clone(),
        }
    }
}

/// A typed handle to the API a module provides to others (the idea of Kamailio's
/// `bind_usrloc`/`load_tm_api`): obtained in `declare` with [`ModuleBuilder::uses`], filled
/// when the providing module is registered, whichever comes first. Each registry has its
/// own, so modules stay testable alone and two registries never share state.
pub struct ModuleApi<T>(Arc<OnceLock<Arc<T>>>);

impl<T> Clone for ModuleApi<T> {
    fn clone(&self) -> Self {
        ModuleApi(self.0.clone())
    }
}

impl<T> ModuleApi<T> {
    /// The API, or `None` when no registered module provides it.
    pub fn get(&self) -> Option<&Arc<T>> {
        self.0.get()
    }
}

impl Registry {
    /// An empty registry (no core, no module).
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds a module's declarations.
    pub fn register(&mut self, module: &dyn Module) {
        let name = module.name();
        self.ensure_module(name);
        let mut b = ModuleBuilder {
            reg: self,
            module: name,
        };
        module.declare(&mut b);
    }

    /// Declares a Kamailio module whose work Ferrosip's core does, so `loadmodule` of it is
    /// accepted and does nothing.
    pub fn register_absorbed(&mut self, name: &'static str, doc: &'static str) {
        let m = self.ensure_module(name);
        m.absorbed = true;
        m.doc = doc;
    }

    fn ensure_module(&mut self, name: &'static str) -> &mut ModuleDef {
        self.modules.entry(name).or_insert_with(|| ModuleDef {
            name,
            doc: "",
            params: Vec::new(),
            functions: Vec::new(),
            pvs: Vec::new(),
            rpcs: Vec::new(),
            init: Vec::new(),
            start: Vec::new(),
            ready: Vec::new(),
            stop: Vec::new(),
            branch: Vec::new(),
            tm_observers: Vec::new(),
            taps: Vec::new(),
            always_loaded: false,
            absorbed: false,
            example: "",
            needs: Vec::new(),
        })
    }

    /// The module `name`, if registered.
    pub fn module(&self, name: &str) -> Option<&ModuleDef> {
        self.modules.get(name)
    }

    /// Every module, in registration order.
    pub fn modules(&self) -> impl Iterator<Item = &ModuleDef> {
        self.modules.values()
    }

    /// All overloads of a function, sorted by arity; when two modules offer the same name
    /// and arity, both are here (see [`FunctionDef::module`]).
    pub fn function(&self, name: &str) -> Option<&[Arc<FunctionDef>]> {
        self.functions.get(name).map(|v| v.as_slice())
    }

    /// Every overload of every function.
    pub fn functions(&self) -> impl Iterator<Item = &Arc<FunctionDef>> {
        self.functions.values().flatten()
    }

    /// True for a module that only declares: it offers script functions or PV classes,
    /// every one of them declared-only, and has no hooks or RPC commands. Nothing reads its
    /// parameters yet, so the compiler warns at each `modparam` of it and the docs say so.
    pub fn module_is_declared_only(&self, name: &str) -> bool {
        let Some(m) = self.modules.get(name) else {
            return false;
        };
        let has_behaviour_hooks = !(m.init.is_empty()
            && m.start.is_empty()
            && m.ready.is_empty()
            && m.stop.is_empty()
            && m.tm_observers.is_empty()
            && m.rpcs.is_empty());
        if m.absorbed || m.always_loaded || has_behaviour_hooks {
            return false;
        }
        if m.functions.is_empty() && m.pvs.is_empty() {
            return false;
        }
        let functions_declared = m.functions.iter().all(|f| {
            self.function(f)
                .unwrap_or(&[])
                .iter()
                .all(|d| matches!(d.call, Callable::Declared))
        });
        let pvs_declared = m
            .pvs
            .iter()
            .all(|p| self.pv_class(p).is_none_or(|c| c.declared()));
        functions_declared && pvs_declared
    }

    /// The PV class `name` (`$name`, `$name(...)`).
    pub fn pv_class(&self, name: &str) -> Option<Arc<dyn PvClass>> {
        self.pv_classes.get(name).map(|(c, _)| c.clone())
    }

    /// The module that provides a PV class.
    pub fn pv_module(&self, name: &str) -> Option<&'static str> {
        self.pv_classes.get(name).map(|(_, m)| *m)
    }

    /// The names of every PV class.
    pub fn pv_names(&self) -> impl Iterator<Item = &str> {
        self.pv_classes.keys().map(String::as_str)
    }

    /// The transformation class `name` (`{name.*}`).
    pub fn transform_class(&self, name: &str) -> Option<Arc<dyn TransformClass>> {
        self.transforms.get(name).cloned()
    }

    /// The slot of `$var(name)`, allocated at its first use.
    pub fn intern_var(&self, name: &str) -> u32 {
        intern(&self.vars, name)
    }

    /// The slot of `$avp(name)`, allocated at its first use.
    pub fn intern_avp(&self, name: &str) -> u32 {
        self.avps.slot(name)
    }

    /// The AVP name table, for modules that write AVPs named by their parameters
    /// (`load_credentials`, `received_avp`, ...): parameters are only known after
    /// `declare`, so they keep this handle and resolve names in `on_init`.
    pub fn avp_names(&self) -> AvpNames {
        self.avps.clone()
    }

    /// Custom config variables (`group.name = value desc "..."`), read by `$sel(cfg_get.group.name)`.
    pub fn cfg_vars(&self) -> Arc<std::sync::RwLock<HashMap<String, Value>>> {
        self.cfg_vars.clone()
    }

    /// The statement trace switch of the scripts loaded against this registry.
    pub fn cfg_trace(&self) -> Arc<crate::trace::CfgTrace> {
        self.cfg_trace.clone()
    }

    /// The clock of everything loaded against this registry (the system's, unless
    /// `ferrosip test` stopped it: [`crate::Clock::stop`]).
    pub fn clock(&self) -> crate::clock::Clock {
        self.clock.clone()
    }

    /// Names of all `$var`s interned so far, by slot.
    pub fn var_names(&self) -> Vec<String> {
        let set = self.vars.lock().unwrap_or_else(|e| e.into_inner());
        set.iter().cloned().collect()
    }

    /// ", did you mean X?" for an unknown function name, or "".
    pub fn suggest_function(&self, name: &str) -> String {
        suggest(name, self.functions.keys().copied())
    }

    /// ", did you mean $X?" for an unknown PV name, or "".
    pub fn suggest_pv(&self, name: &str) -> String {
        suggest(name, self.pv_classes.keys().map(String::as_str))
            .replace("did you mean ", "did you mean $")
    }

    /// ", did you mean X?" for an unknown module name, or "".
    pub fn suggest_module(&self, name: &str) -> String {
        suggest(name, self.modules.keys().copied())
    }

    /// The API of type `T` a module provides (for code that has the registry, such as a
    /// fixup through its binder), or `None`.
    pub fn api<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.apis
            .get(&TypeId::of::<T>())
            .and_then(|slot| slot.downcast_ref::<Arc<OnceLock<Arc<T>>>>())
            .and_then(|slot| slot.get().cloned())
    }

    fn api_slot<T: Send + Sync + 'static>(&mut self) -> Arc<OnceLock<Arc<T>>> {
        self.apis
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(Arc::new(OnceLock::<Arc<T>>::new())))
            .downcast_ref::<Arc<OnceLock<Arc<T>>>>()
            .cloned()
            .unwrap_or_default()
    }

    /// An RPC command by name (`dispatcher.reload`), with the module that declared it.
    pub fn rpc(&self, name: &str) -> Option<RpcDef> {
        self.rpcs().find(|r| r.name == name).cloned()
    }

    /// Every RPC command, module by module in registration order ([`RpcDef::module`]).
    pub fn rpcs(&self) -> impl Iterator<Item = &RpcDef> {
        self.modules.values().flat_map(|m| m.rpcs.iter())
    }

    /// Mistakes in the modules' declarations, one line each: argument names that do not
    /// match the handler's arity, a name and arity registered twice by one module (the
    /// later one replaced the earlier), an RPC name declared twice (the first one kept). Empty for a correct build; the test suite checks it.
    pub fn declaration_errors(&self) -> &[String] {
        &self.declaration_errors
    }
}

/// AVP names and their slots, shared by the registry and the modules that keep it.
#[derive(Clone, Default)]
pub struct AvpNames(Arc<Mutex<IndexSet<String>>>);

impl AvpNames {
    /// The slot of an AVP name (as `$avp(name)` in the script gets it).
    pub fn slot(&self, name: &str) -> u32 {
        intern(&self.0, name)
    }

    /// The name of a slot.
    pub fn name(&self, slot: u32) -> Option<String> {
        let set = self.0.lock().unwrap_or_else(|e| e.into_inner());
        set.get_index(slot as usize).cloned()
    }
}

fn intern(set: &Mutex<IndexSet<String>>, name: &str) -> u32 {
    let mut set = set.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = set.get_index_of(name) {
        return i as u32;
    }
    set.insert_full(name.to_string()).0 as u32
}

/// Edit distance counting a swap of two neighbours as one edit (typos like "mrak").
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// ", did you mean X?" when a candidate is a plausible typo of `name`, else "".
pub fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    let limit = (name.chars().count() / 3).max(1);
    let best = candidates
        .map(|c| (distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min();
    match best {
        Some((_, c)) => format!(", did you mean {c}?"),
        None => String::new(),
    }
}

/// Declares one module's contents.
pub struct ModuleBuilder<'r> {
    reg: &'r mut Registry,
    module: &'static str,
}

impl<'r> ModuleBuilder<'r> {
    fn def(&mut self) -> &mut ModuleDef {
        self.reg.ensure_module(self.module)
    }

    /// What the module does; its first line is the docs index's summary.
    pub fn doc(&mut self, doc: &'static str) -> &mut Self {
        self.def().doc = doc;
        self
    }

    /// A complete config showing the module at work, for its documentation page.
    pub fn example(&mut self, config: &'static str) -> &mut Self {
        self.def().example = config;
        self
    }

    /// The registry's clock: what the module reads the time from (never the system's
    /// clocks directly, so that `ferrosip test` can move time for it).
    pub fn clock(&self) -> crate::clock::Clock {
        self.reg.clock()
    }

    /// Marks the module as loaded without `loadmodule` (the core).
    pub fn always_loaded(&mut self) -> &mut Self {
        self.def().always_loaded = true;
        self
    }

    /// A parameter `modparam` may set, with its type, default and doc.
    pub fn param(
        &mut self,
        name: &'static str,
        ty: ParamType,
        default: impl Into<Value>,
        doc: &'static str,
    ) -> &mut Self {
        let default = default.into();
        self.def().params.push(ParamDef {
            name,
            ty,
            default,
            repeatable: false,
            doc,
        });
        self
    }

    /// A parameter that may be given several times, each value kept.
    pub fn repeatable_param(
        &mut self,
        name: &'static str,
        ty: ParamType,
        doc: &'static str,
    ) -> &mut Self {
        self.def().params.push(ParamDef {
            name,
            ty,
            default: Value::Null,
            repeatable: true,
            doc,
        });
        self
    }

    /// Declares functions as a table, one [`FnRow`] per overload (Kamailio's
    /// `cmd_export_t`): `m.functions([FnRow::sync("name", &["arg"], routes, "doc", f), ...])`.
    pub fn functions(&mut self, rows: impl IntoIterator<Item = FnRow>) -> &mut Self {
        for row in rows {
            self.add(row);
        }
        self
    }

    /// Registers one overload, recording declaration mistakes.
    fn add(&mut self, row: FnRow) {
        let def = Arc::new(FunctionDef {
            name: row.name,
            module: self.module.to_string(),
            arg_kinds: row.arg_kinds,
            arg_names: row.arg_names,
            routes: row.routes,
            doc: row.doc,
            fixup: row.fixup,
            call: row.call,
            by_value: row.by_value,
        });
        let reg = &mut *self.reg;
        if def.arg_names.len() != def.arity() {
            reg.declaration_errors.push(format!(
                "module {}: {}/{} names {} argument{} ({})",
                def.module,
                def.name,
                def.arity(),
                def.arg_names.len(),
                if def.arg_names.len() == 1 { "" } else { "s" },
                def.arg_names.join(", ")
            ));
        }
        let overloads = reg.functions.entry(def.name).or_default();
        let same = |f: &Arc<FunctionDef>| f.arity() == def.arity() && f.module == def.module;
        if overloads.iter().any(same) {
            reg.declaration_errors.push(format!(
                "module {}: {}/{} is registered twice",
                def.module,
                def.name,
                def.arity()
            ));
        }
        overloads.retain(|f| !same(f));
        let name = def.name;
        overloads.push(def);
        overloads.sort_by_key(|f| f.arity());
        let m = reg.ensure_module(self.module);
        if !m.functions.contains(&name) {
            m.functions.push(name);
        }
    }

    /// Declares one overload of a function (see [`FunctionBuilder`]).
    pub fn function(&mut self, name: &'static str) -> FunctionBuilder<'_, 'r> {
        FunctionBuilder {
            module: self,
            name,
            routes: RouteMask::ANY,
            doc: "",
            arg_names: Vec::new(),
        }
    }

    /// A PV class: `$name` or `$name(param)` (see [`crate::pv`]).
    pub fn pv(&mut self, name: &str, class: impl PvClass) -> &mut Self {
        let module = self.module;
        self.reg
            .pv_classes
            .insert(name.to_string(), (Arc::new(class), module));
        self.def().pvs.push(name.to_string());
        self
    }

    /// Shorthand for a fixed, parameterless PV.
    pub fn pv_fixed(&mut self, name: &str, doc: &'static str, pv: impl crate::pv::Pv) -> &mut Self {
        self.pv(
            name,
            crate::pv::FixedPvClass {
                pv: Arc::new(pv),
                doc,
            },
        )
    }

    /// Declares a PV class whose behaviour comes with a later release (see
    /// [`crate::pv::DeclaredPvClass`]).
    pub fn pv_declared(
        &mut self,
        name: &'static str,
        rule: PvParamRule,
        doc: &'static str,
    ) -> &mut Self {
        self.pv(name, crate::pv::DeclaredPvClass { name, rule, doc })
    }

    /// A transformation class: `{class.name,args}` (see [`crate::transform`]).
    pub fn transform(&mut self, class: &str, tc: impl TransformClass) -> &mut Self {
        self.reg.transforms.insert(class.to_string(), Arc::new(tc));
        self
    }

    /// An RPC command with a synchronous handler, for cheap in-memory work (listing a
    /// table, setting a state). Called through [`RpcDef::call`] it runs on the blocking
    /// pool; anything that awaits I/O belongs in [`ModuleBuilder::rpc_async`].
    pub fn rpc(
        &mut self,
        name: &'static str,
        doc: &'static str,
        handler: impl Fn(&[Value]) -> Result<RpcValue, String> + Send + Sync + 'static,
    ) -> &mut Self {
        self.add_rpc(name, doc, RpcCallable::Sync(Arc::new(handler)))
    }

    /// An RPC command whose handler is async (a reload from a database, a flush):
    /// `m.rpc_async("x.reload", "doc", move |args: Vec<Value>| { let s = s.clone(); async
    /// move { ... } })`.
    pub fn rpc_async<F, Fut>(
        &mut self,
        name: &'static str,
        doc: &'static str,
        handler: F,
    ) -> &mut Self
    where
        F: Fn(Vec<Value>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<RpcValue, String>> + Send + 'static,
    {
        let handler = move |args: Vec<Value>| -> BoxFuture<'static, Result<RpcValue, String>> {
            Box::pin(handler(args))
        };
        self.add_rpc(name, doc, RpcCallable::Async(Arc::new(handler)))
    }

    /// Records an RPC command; a name some module already declared is a declaration error
    /// (the control interface finds commands by name alone).
    fn add_rpc(
        &mut self,
        name: &'static str,
        doc: &'static str,
        handler: RpcCallable,
    ) -> &mut Self {
        if let Some(first) = self.reg.rpc(name) {
            let error = format!(
                "module {}: rpc {name} is already declared by module {}",
                self.module, first.module
            );
            self.reg.declaration_errors.push(error);
            return self;
        }
        let module = self.module;
        self.def().rpcs.push(RpcDef {
            name,
            doc,
            module,
            handler,
        });
        self
    }

    /// The module's state, built by `init` from its parameters once the script is loaded
    /// (again on each load); handlers get it as `&S` through [`StateSlot::with`]:
    /// `let st = m.state(|p| Config::from_params(p)); m.function("f").handler(st.with(|cfg:
    /// &Config, ctx: &mut MsgContext, n: i64| ...))`. An error stops the load.
    pub fn state<S: Send + Sync + 'static>(
        &mut self,
        init: impl Fn(&ModuleParams) -> Result<S, String> + Send + Sync + 'static,
    ) -> StateSlot<S> {
        let slot = StateSlot {
            module: self.module,
            state: Arc::default(),
        };
        let filled = slot.clone();
        self.on_init(move |params| {
            filled.state.store(Some(Arc::new(init(params)?)));
            Ok(())
        });
        slot
    }

    /// Runs once after the script is loaded, with the module's parameters.
    pub fn on_init(
        &mut self,
        hook: impl Fn(&ModuleParams) -> Result<(), String> + Send + Sync + 'static,
    ) -> &mut Self {
        self.def().init.push(Arc::new(hook));
        self
    }

    /// Runs when the server starts (never during `ferrosip check`): connect, load, spawn
    /// timers on `env.runtime`. The hook returns a future (`move |env| { let x = ...;
    /// async move { ... } }`) that the server awaits on its runtime before taking traffic.
    /// What exists only once the server runs (a database pool, the runtime handle) goes
    /// into the module's state: the hook clones the [`StateSlot`] and calls `get()`.
    pub fn on_start<F, Fut>(&mut self, hook: F) -> &mut Self
    where
        F: Fn(&StartEnv<'_>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        self.def().start.push(Arc::new(
            move |env: &StartEnv<'_>| -> BoxFuture<'static, _> { Box::pin(hook(env)) },
        ));
        self
    }

    /// Runs once the server is up, with its services (see [`ReadyHook`]); keep the handle
    /// to send requests or run event routes later (never during `ferrosip check`).
    pub fn on_ready(
        &mut self,
        hook: impl Fn(&Arc<dyn crate::services::Services>) + Send + Sync + 'static,
    ) -> &mut Self {
        self.def().ready.push(Arc::new(hook));
        self
    }

    /// Runs on every request the server sends (stateless forward, each transaction
    /// branch) once it is prepared; see [`BranchHook`] for `keep`.
    pub fn on_branch(
        &mut self,
        run: impl Fn(&mut OutgoingBranch<'_>) -> Result<(), crate::FnError> + Send + Sync + 'static,
        keep: fn(&crate::Extensions, &mut crate::Extensions),
    ) -> &mut Self {
        self.def().branch.push(BranchHook {
            run: Arc::new(run),
            keep,
        });
        self
    }

    /// Watches transactions end (see [`crate::tm_events`]): `build` makes the observer
    /// from the module's parameters each time a script loading the module is loaded
    /// (the server keeps the one built at start).
    pub fn on_tm_event(
        &mut self,
        build: impl Fn(
                &ModuleParams,
                &crate::pv::Binder<'_>,
            ) -> Result<Option<Arc<dyn crate::tm_events::TmObserver>>, String>
            + Send
            + Sync
            + 'static,
    ) -> &mut Self {
        self.def().tm_observers.push(Arc::new(build));
        self
    }

    /// Sees every SIP message the server receives and sends while a script loading this
    /// module runs (siptrace's `trace_mode`).
    pub fn message_tap(&mut self, tap: Arc<dyn crate::trace::MessageTap>) -> &mut Self {
        self.def().taps.push(tap);
        self
    }

    /// Runs when the server stops, before the runtime shuts down, on the runtime's blocking
    /// pool (it may block); with every other stop hook under [`STOP_HOOKS_LIMIT`] in all.
    pub fn on_stop(
        &mut self,
        hook: impl Fn(&tokio::runtime::Handle) + Send + Sync + 'static,
    ) -> &mut Self {
        self.def()
            .stop
            .push(Arc::new(StopHook::Sync(Box::new(hook))));
        self
    }

    /// An async stop hook (a write-back flush to a database): `m.on_stop_async(move |env|
    /// { let s = s.clone(); async move { ... } })`, awaited as a task with the other stop
    /// hooks under [`STOP_HOOKS_LIMIT`] in all.
    pub fn on_stop_async<F, Fut>(&mut self, hook: F) -> &mut Self
    where
        F: Fn(StopEnv) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let hook = move |env: StopEnv| -> BoxFuture<'static, ()> { Box::pin(hook(env)) };
        self.def()
            .stop
            .push(Arc::new(StopHook::Async(Box::new(hook))));
        self
    }

    /// Offers `api` to other modules ([`ModuleBuilder::uses`]); one module per type.
    pub fn provide<T: Send + Sync + 'static>(&mut self, api: Arc<T>) -> &mut Self {
        if self.reg.api_slot::<T>().set(api).is_err() {
            let error = format!(
                "module {}: {} is provided twice",
                self.module,
                std::any::type_name::<T>()
            );
            self.reg.declaration_errors.push(error);
        }
        self
    }

    /// The handle to the API of type `T` another module provides (see [`ModuleApi`]).
    /// Pair it with [`ModuleBuilder::needs`] so that a script loading this module loads
    /// the provider too.
    pub fn uses<T: Send + Sync + 'static>(&mut self) -> ModuleApi<T> {
        ModuleApi(self.reg.api_slot::<T>())
    }

    /// A module the script must load before this one: the loader refuses a script that
    /// does not, naming both.
    pub fn needs(&mut self, module: &'static str) -> &mut Self {
        self.def().needs.push(module);
        self
    }

    /// The registry being declared into (for a fixup binder or an API lookup).
    pub fn registry(&self) -> &Registry {
        self.reg
    }
}

/// One overload of a function as one row of a module's table (see
/// [`ModuleBuilder::functions`]): name, argument names, route kinds, doc and behaviour.
pub struct FnRow {
    name: &'static str,
    arg_names: Vec<&'static str>,
    routes: RouteMask,
    doc: &'static str,
    arg_kinds: Vec<ArgKind>,
    fixup: Arc<FixupFn>,
    call: Callable,
    by_value: ValueCallable,
}

impl FnRow {
    /// A synchronous typed handler (as [`FunctionBuilder::handler`]).
    pub fn sync<A: ArgList, H: SyncHandler<A>>(
        name: &'static str,
        args: &[&'static str],
        routes: RouteMask,
        doc: &'static str,
        handler: H,
    ) -> FnRow {
        let (fixed, by_value) = handler.into_calls();
        FnRow::new::<A>(
            name,
            args,
            routes,
            doc,
            Callable::Sync(fixed),
            ValueCallable::Sync(by_value),
        )
    }

    /// An asynchronous typed handler (as [`FunctionBuilder::async_handler`]).
    pub fn asynchronous<A: ArgList, H: AsyncHandler<A>>(
        name: &'static str,
        args: &[&'static str],
        routes: RouteMask,
        doc: &'static str,
        handler: H,
    ) -> FnRow {
        let (fixed, by_value) = handler.into_calls();
        FnRow::new::<A>(
            name,
            args,
            routes,
            doc,
            Callable::Async(fixed),
            ValueCallable::Async(by_value),
        )
    }

    /// A signature whose behaviour comes later (as [`FunctionBuilder::declared`]).
    pub fn declared<A: ArgList>(
        name: &'static str,
        args: &[&'static str],
        routes: RouteMask,
        doc: &'static str,
    ) -> FnRow {
        FnRow::new::<A>(
            name,
            args,
            routes,
            doc,
            Callable::Declared,
            ValueCallable::Declared,
        )
    }

    fn new<A: ArgList>(
        name: &'static str,
        args: &[&'static str],
        routes: RouteMask,
        doc: &'static str,
        call: Callable,
        by_value: ValueCallable,
    ) -> FnRow {
        FnRow {
            name,
            arg_names: args.to_vec(),
            routes,
            doc,
            arg_kinds: A::arg_kinds(),
            fixup: Arc::new(A::fixup),
            call,
            by_value,
        }
    }
}

/// Declares one overload of a function; ends with `handler`, `async_handler` or `declared`.
pub struct FunctionBuilder<'b, 'r> {
    module: &'b mut ModuleBuilder<'r>,
    name: &'static str,
    routes: RouteMask,
    doc: &'static str,
    arg_names: Vec<&'static str>,
}

impl<'b, 'r> FunctionBuilder<'b, 'r> {
    /// Route kinds the function may run in (default: any).
    pub fn routes(mut self, routes: RouteMask) -> Self {
        self.routes = routes;
        self
    }

    /// What the function does and what its return codes mean.
    pub fn doc(mut self, doc: &'static str) -> Self {
        self.doc = doc;
        self
    }

    /// Parameter names, for docs and error messages.
    pub fn args(mut self, names: &[&'static str]) -> Self {
        self.arg_names = names.to_vec();
        self
    }

    fn finish(
        self,
        arg_kinds: Vec<ArgKind>,
        fixup: Arc<FixupFn>,
        call: Callable,
        by_value: ValueCallable,
    ) {
        self.module.add(FnRow {
            name: self.name,
            arg_names: self.arg_names,
            routes: self.routes,
            doc: self.doc,
            arg_kinds,
            fixup,
            call,
            by_value,
        });
    }

    /// Registers a synchronous typed handler.
    pub fn handler<A: ArgList, H: SyncHandler<A>>(self, h: H) {
        let (fixed, by_value) = h.into_calls();
        self.finish(
            A::arg_kinds(),
            Arc::new(A::fixup),
            Callable::Sync(fixed),
            ValueCallable::Sync(by_value),
        );
    }

    /// Registers an asynchronous typed handler: it reads what it needs from the context and
    /// returns a `'static` future (`|ctx: &mut MsgContext, a: Bytes| { let k = ...; async move
    /// { ...; apply_result(move |ctx| ...) } }`).
    pub fn async_handler<A: ArgList, H: AsyncHandler<A>>(self, h: H) {
        let (fixed, by_value) = h.into_calls();
        self.finish(
            A::arg_kinds(),
            Arc::new(A::fixup),
            Callable::Async(fixed),
            ValueCallable::Async(by_value),
        );
    }

    /// Declares the signature only (`.declared::<(i64, Bytes)>()`): the behaviour comes with a
    /// later release. Arguments are still fixed up with these types, so a script's mistakes
    /// show at load.
    pub fn declared<A: ArgList>(self) {
        self.finish(
            A::arg_kinds(),
            Arc::new(A::fixup),
            Callable::Declared,
            ValueCallable::Declared,
        );
    }
}

/// A tuple of argument types: fixes up the raw arguments one by one, and turns a handler
/// of these types into the two entry points (fixed arguments, run-time values).
///
/// The entry points are built here, generic over the argument types only: a handler is
/// erased once to `dyn Fn` and every handler with the same argument types shares the same
/// glue, so the binary holds one copy per signature shape rather than two per function
/// (registration touches ~700 functions at start, and their glue stayed resident).
pub trait ArgList: 'static {
    /// `dyn Fn(&mut MsgContext, A0, A1, ..) -> FnResult`.
    type SyncFn: ?Sized + Send + Sync;
    /// `dyn Fn(&mut MsgContext, A0, A1, ..) -> BoxFuture<ApplyResult>`.
    type AsyncFn: ?Sized + Send + Sync;
    /// The kind of each argument.
    fn arg_kinds() -> Vec<ArgKind>;
    /// Fixes up a compiled call's arguments at load.
    fn fixup(raw: Vec<RawArg>, env: &dyn FixupEnv) -> Result<Vec<FixedArg>, (usize, String)>;
    /// A synchronous handler as both calls (fixed-up arguments, values).
    fn sync_calls(handler: Arc<Self::SyncFn>) -> (Arc<SyncCall>, Arc<SyncValueCall>);
    /// An asynchronous handler as both calls (fixed-up arguments, values).
    fn async_calls(handler: Arc<Self::AsyncFn>) -> (Arc<AsyncCall>, Arc<AsyncValueCall>);
}

/// A typed synchronous handler with argument types `Args` (a tuple).
pub trait SyncHandler<Args>: Send + Sync + 'static {
    /// The handler behind both calls: with fixed-up arguments and with values.
    fn into_calls(self) -> (Arc<SyncCall>, Arc<SyncValueCall>);
}

/// A typed asynchronous handler with argument types `Args` (a tuple).
pub trait AsyncHandler<Args>: Send + Sync + 'static {
    /// The handler behind both calls: with fixed-up arguments and with values.
    fn into_calls(self) -> (Arc<AsyncCall>, Arc<AsyncValueCall>);
}

/// "argument N: why" for a value that did not convert.
fn argument_error(index: usize, e: crate::FnError) -> crate::FnError {
    crate::FnError {
        message: format!("argument {}: {}", index + 1, e.message),
        code: e.code,
    }
}

/// An async call that failed before its work started.
fn failed_call(e: crate::FnError) -> BoxFuture<'static, ApplyResult> {
    Box::pin(std::future::ready(apply_result(move |_| Err(e))))
}

fn missing_argument() -> crate::FnError {
    crate::FnError::new("missing argument")
}

macro_rules! impl_handlers {
    ($($A:ident $i:tt),*) => {
        #[allow(non_snake_case, unused_mut, unused_variables)]
        impl<$($A: ArgType),*> ArgList for ($($A,)*) {
            type SyncFn = dyn Fn(&mut MsgContext, $($A),*) -> FnResult + Send + Sync;
            type AsyncFn = dyn Fn(&mut MsgContext, $($A),*) -> BoxFuture<'static, ApplyResult> + Send + Sync;

            fn arg_kinds() -> Vec<ArgKind> {
                vec![$($A::KIND),*]
            }

            fn fixup(raw: Vec<RawArg>, env: &dyn FixupEnv) -> Result<Vec<FixedArg>, (usize, String)> {
                let mut it = raw.into_iter();
                let mut out = Vec::new();
                $(
                    let r = it.next().ok_or(($i, "missing argument".to_string()))?;
                    out.push(FixedArg::new($A::fixup(r, env).map_err(|e| ($i, e))?));
                )*
                Ok(out)
            }

            fn sync_calls(handler: Arc<Self::SyncFn>) -> (Arc<SyncCall>, Arc<SyncValueCall>) {
                let by_value = handler.clone();
                let fixed = Arc::new(move |ctx: &mut MsgContext, args: &[FixedArg]| {
                    $(
                        let fixed = args.get($i).ok_or_else(missing_argument)?;
                        let $A = $A::eval(fixed.downcast::<$A::Fixed>()?, ctx)?;
                    )*
                    (*handler)(ctx, $($A),*)
                });
                let by_value = Arc::new(move |ctx: &mut MsgContext, args: &[Value], env: &dyn CallEnv| {
                    $(
                        let value = args.get($i).cloned().ok_or_else(missing_argument)?;
                        let $A = $A::from_value(value, env).map_err(|e| argument_error($i, e))?;
                    )*
                    (*by_value)(ctx, $($A),*)
                });
                (fixed, by_value)
            }

            fn async_calls(handler: Arc<Self::AsyncFn>) -> (Arc<AsyncCall>, Arc<AsyncValueCall>) {
                let by_value = handler.clone();
                let fixed = Arc::new(move |ctx: &mut MsgContext, args: &[FixedArg]| -> BoxFuture<'static, ApplyResult> {
                    $(
                        let $A = match args
                            .get($i)
                            .ok_or_else(missing_argument)
                            .and_then(|f| f.downcast::<$A::Fixed>())
                            .and_then(|f| $A::eval(f, ctx))
                        {
                            Ok(v) => v,
                            Err(e) => return failed_call(e),
                        };
                    )*
                    (*handler)(ctx, $($A),*)
                });
                let by_value = Arc::new(move |ctx: &mut MsgContext, args: &[Value], env: &dyn CallEnv| -> BoxFuture<'static, ApplyResult> {
                    $(
                        let $A = match args
                            .get($i)
                            .cloned()
                            .ok_or_else(missing_argument)
                            .and_then(|v| $A::from_value(v, env).map_err(|e| argument_error($i, e)))
                        {
                            Ok(v) => v,
                            Err(e) => return failed_call(e),
                        };
                    )*
                    (*by_value)(ctx, $($A),*)
                });
                (fixed, by_value)
            }
        }

        #[allow(non_snake_case, unused_mut, unused_variables)]
        impl<F, $($A: ArgType),*> SyncHandler<($($A,)*)> for F
        where
            F: Fn(&mut MsgContext, $($A),*) -> FnResult + Send + Sync + 'static,
        {
            fn into_calls(self) -> (Arc<SyncCall>, Arc<SyncValueCall>) {
                let handler: Arc<dyn Fn(&mut MsgContext, $($A),*) -> FnResult + Send + Sync> = Arc::new(self);
                <($($A,)*) as ArgList>::sync_calls(handler)
            }
        }

        #[allow(non_snake_case, unused_mut, unused_variables)]
        impl<F, Fut, $($A: ArgType),*> AsyncHandler<($($A,)*)> for F
        where
            F: Fn(&mut MsgContext, $($A),*) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = ApplyResult> + Send + 'static,
        {
            fn into_calls(self) -> (Arc<AsyncCall>, Arc<AsyncValueCall>) {
                let handler: Arc<dyn Fn(&mut MsgContext, $($A),*) -> BoxFuture<'static, ApplyResult> + Send + Sync> =
                    Arc::new(move |ctx: &mut MsgContext, $($A: $A),*| -> BoxFuture<'static, ApplyResult> {
                        Box::pin(self(ctx, $($A),*))
                    });
                <($($A,)*) as ArgList>::async_calls(handler)
            }
        }
    };
}

macro_rules! impl_state_handlers {
    ($($A:ident),*) => {
        #[allow(non_snake_case)]
        impl<S, F, $($A: ArgType),*> SyncHandler<($($A,)*)> for WithState<S, F>
        where
            S: Send + Sync + 'static,
            F: Fn(&S, &mut MsgContext, $($A),*) -> FnResult + Send + Sync + 'static,
        {
            fn into_calls(self) -> (Arc<SyncCall>, Arc<SyncValueCall>) {
                let WithState { slot, handler } = self;
                let with_state = move |ctx: &mut MsgContext, $($A: $A),*| -> FnResult {
                    let state = slot.state.load();
                    match state.as_deref() {
                        Some(state) => handler(state, ctx, $($A),*),
                        None => Err(slot.not_initialised()),
                    }
                };
                SyncHandler::<($($A,)*)>::into_calls(with_state)
            }
        }

        #[allow(non_snake_case)]
        impl<S, F, Fut, $($A: ArgType),*> AsyncHandler<($($A,)*)> for WithState<S, F>
        where
            S: Send + Sync + 'static,
            F: Fn(&S, &mut MsgContext, $($A),*) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = ApplyResult> + Send + 'static,
        {
            fn into_calls(self) -> (Arc<AsyncCall>, Arc<AsyncValueCall>) {
                let WithState { slot, handler } = self;
                let handler: Arc<dyn Fn(&mut MsgContext, $($A),*) -> BoxFuture<'static, ApplyResult> + Send + Sync> =
                    Arc::new(move |ctx: &mut MsgContext, $($A: $A),*| -> BoxFuture<'static, ApplyResult> {
                        let state = slot.state.load();
                        match state.as_deref() {
                            Some(state) => Box::pin(handler(state, ctx, $($A),*)),
                            None => failed_call(slot.not_initialised()),
                        }
                    });
                <($($A,)*) as ArgList>::async_calls(handler)
            }
        }
    };
}

impl_state_handlers!();
impl_state_handlers!(A0);
impl_state_handlers!(A0, A1);
impl_state_handlers!(A0, A1, A2);
impl_state_handlers!(A0, A1, A2, A3);
impl_state_handlers!(A0, A1, A2, A3, A4);
impl_state_handlers!(A0, A1, A2, A3, A4, A5);

impl_handlers!();
impl_handlers!(A0 0);
impl_handlers!(A0 0, A1 1);
impl_handlers!(A0 0, A1 1, A2 2);
impl_handlers!(A0 0, A1 1, A2 2, A3 3);
impl_handlers!(A0 0, A1 1, A2 2, A3 3, A4 4);
impl_handlers!(A0 0, A1 1, A2 2, A3 3, A4 4, A5 5);

/// Whether a PV class name needs a parameter — re-exported for the docs generator.
pub fn pv_param_rule(reg: &Registry, name: &str) -> Option<PvParamRule> {
    reg.pv_class(name).map(|c| c.param_rule())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::RouteTable;
    use crate::pv::Binder;
    use crate::Verdict;
    use bytes::Bytes;

    struct Env<'r>(&'r Registry);
    impl FixupEnv for Env<'_> {
        fn binder(&self) -> Binder<'_> {
            Binder::new(self.0)
        }
        fn route_index(&self, table: RouteTable, name: &str) -> Option<u32> {
            (table == RouteTable::Failure && name == "FAIL").then_some(3)
        }
    }

    struct Demo;
    impl Module for Demo {
        fn name(&self) -> &'static str {
            "demo"
        }
        fn declare(&self, m: &mut ModuleBuilder<'_>) {
            m.param("size", ParamType::Int, 8, "table size");
            m.function("twice")
                .args(&["n"])
                .routes(RouteMask::REQUEST)
                .handler(|_ctx: &mut MsgContext, n: i64| Ok(Verdict::code((n * 2) as i32)));
            m.function("twice")
                .args(&["n", "m"])
                .handler(|_ctx: &mut MsgContext, n: i64, m: i64| Ok(Verdict::code((n * m) as i32)));
            m.function("later").declared::<(Bytes,)>();
            m.function("on_fail")
                .handler(|_ctx: &mut MsgContext, r: crate::args::FailureRoute| {
                    Ok(Verdict::code(r.0 as i32 + 1))
                });
            m.function("slow")
                .async_handler(|_ctx: &mut MsgContext, n: i64| async move {
                    apply_result(move |ctx: &mut MsgContext| {
                        ctx.rc = n as i32;
                        Ok(Verdict::code(n as i32))
                    })
                });
        }
    }

    #[test]
    fn typed_registration_and_fixup() {
        let mut reg = Registry::new();
        reg.register(&Demo);
        let env = Env(&reg);
        let twice = reg.function("twice").unwrap();
        assert_eq!(twice.len(), 2);
        assert_eq!(twice[0].signature(), "twice(n: int)");
        assert!((twice[0].fixup)(vec![RawArg::Str("abc".into())], &env).is_err());
        assert!((twice[0].fixup)(vec![RawArg::Str("21".into())], &env).is_ok());
        let fail = &reg.function("on_fail").unwrap()[0];
        assert!((fail.fixup)(vec![RawArg::Ident("FAIL".into())], &env).is_ok());
        let err = (fail.fixup)(vec![RawArg::Ident("NOPE".into())], &env).unwrap_err();
        assert_eq!(err.0, 0);
        assert!(err.1.contains("failure_route[NOPE]"), "{}", err.1);
        assert!(matches!(
            reg.function("later").unwrap()[0].call,
            Callable::Declared
        ));
        assert!(matches!(
            reg.function("slow").unwrap()[0].call,
            Callable::Async(_)
        ));
        assert_eq!(reg.suggest_function("twise"), ", did you mean twice?");
        assert_eq!(reg.module("demo").unwrap().default_params().int("size"), 8);
    }

    fn invite() -> MsgContext {
        let msg = ferrosip_sip::SipMessage::parse(Bytes::from_static(
            b"INVITE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        ))
        .unwrap();
        MsgContext::new(
            msg,
            crate::RouteKind::Request,
            crate::context::NetInfo::default(),
        )
    }

    #[test]
    fn calls_by_value_share_the_handler() {
        let mut reg = Registry::new();
        reg.register(&Demo);
        let env = Env(&reg);
        let mut ctx = invite();
        let one = |name: &str, arity: usize| {
            reg.function(name)
                .unwrap()
                .iter()
                .find(|f| f.arity() == arity)
                .unwrap()
                .clone()
        };
        let run = |ctx: &mut MsgContext, f: &FunctionDef, args: &[Value]| {
            let outcome = f.call_values(ctx, args, &env);
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(outcome.finish(ctx))
        };
        let twice = one("twice", 2);
        let r = run(
            &mut ctx,
            &twice,
            &[Value::Int(3), Value::from_static(" 7 ")],
        );
        assert_eq!(r.unwrap().rc(), 21);
        let e = run(&mut ctx, &twice, &[Value::Int(3), Value::from_static("x")]).unwrap_err();
        assert_eq!(e.message, "argument 2: expected a number, found \"x\"");
        let e = run(&mut ctx, &twice, &[Value::Int(3)]).unwrap_err();
        assert!(
            e.message.contains("takes 2 arguments, 1 given"),
            "{}",
            e.message
        );
        let fail = one("on_fail", 1);
        assert_eq!(
            run(&mut ctx, &fail, &[Value::from_static("FAIL")])
                .unwrap()
                .rc(),
            4
        );
        let e = run(&mut ctx, &fail, &[Value::from_static("NOPE")]).unwrap_err();
        assert!(
            e.message.contains("no failure_route[NOPE]"),
            "{}",
            e.message
        );
        let slow = one("slow", 1);
        assert_eq!(run(&mut ctx, &slow, &[Value::Int(5)]).unwrap().rc(), 5);
        assert_eq!(ctx.rc, 5);
        let later = one("later", 1);
        let e = run(&mut ctx, &later, &[Value::from_static("x")]).unwrap_err();
        assert!(
            e.message.contains("declared but not implemented"),
            "{}",
            e.message
        );
        ctx.route = crate::RouteKind::Failure;
        let e = run(&mut ctx, &one("twice", 1), &[Value::Int(1)]).unwrap_err();
        assert!(
            e.message.contains("not allowed in failure_route"),
            "{}",
            e.message
        );
    }

    struct Sloppy;
    impl Module for Sloppy {
        fn name(&self) -> &'static str {
            "sloppy"
        }
        fn declare(&self, m: &mut ModuleBuilder<'_>) {
            m.function("f")
                .args(&["a", "b"])
                .handler(|_ctx: &mut MsgContext, _a: i64| Ok(Verdict::TRUE));
            m.function("f")
                .args(&["a"])
                .handler(|_ctx: &mut MsgContext, _a: i64| Ok(Verdict::TRUE));
            m.function("g")
                .handler(|_ctx: &mut MsgContext| Ok(Verdict::TRUE));
            m.functions([
                FnRow::sync(
                    "h",
                    &[],
                    RouteMask::ANY,
                    "",
                    |_: &mut MsgContext, _a: i64| Ok(Verdict::TRUE),
                ),
                FnRow::declared::<(Bytes,)>("h", &["text"], RouteMask::ANY, ""),
            ]);
            m.rpc("sloppy.list", "A list.", |_| Ok(RpcValue::Int(1)));
        }
    }

    struct AlsoG;
    impl Module for AlsoG {
        fn name(&self) -> &'static str {
            "also_g"
        }
        fn declare(&self, m: &mut ModuleBuilder<'_>) {
            m.function("g")
                .handler(|_ctx: &mut MsgContext| Ok(Verdict::FALSE));
            m.rpc("sloppy.list", "Also a list.", |_| Ok(RpcValue::Int(2)));
        }
    }

    struct Counter(std::sync::atomic::AtomicU32);
    struct User;
    impl Module for User {
        fn name(&self) -> &'static str {
            "user"
        }
        fn declare(&self, m: &mut ModuleBuilder<'_>) {
            m.needs("provider");
            let api = m.uses::<Counter>();
            assert!(api.get().is_none(), "the provider registers later");
            m.function("bump").handler(move |_: &mut MsgContext| {
                let c = api.get().ok_or_else(|| crate::FnError::new("no counter"))?;
                Ok(Verdict::code(
                    c.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as i32 + 1,
                ))
            });
        }
    }
    struct Provider;
    impl Module for Provider {
        fn name(&self) -> &'static str {
            "provider"
        }
        fn declare(&self, m: &mut ModuleBuilder<'_>) {
            m.provide(Arc::new(Counter(std::sync::atomic::AtomicU32::new(0))));
        }
    }

    #[test]
    fn a_module_reaches_another_through_its_typed_api() {
        let mut reg = Registry::new();
        reg.register(&User);
        reg.register(&Provider);
        let bump = reg.function("bump").unwrap()[0].clone();
        let Callable::Sync(call) = &bump.call else {
            panic!("sync")
        };
        let mut ctx = invite();
        assert_eq!(call(&mut ctx, &[]).unwrap().rc(), 1);
        assert_eq!(call(&mut ctx, &[]).unwrap().rc(), 2);
        assert!(reg.api::<Counter>().is_some());
        assert_eq!(reg.module("user").unwrap().needs, ["provider"]);
        // A second registry has its own instance.
        let mut other = Registry::new();
        other.register(&User);
        other.register(&Provider);
        let Callable::Sync(call) = &other.function("bump").unwrap()[0].call else {
            panic!("sync")
        };
        assert_eq!(call(&mut ctx, &[]).unwrap().rc(), 1);
        other.register(&Provider);
        assert_eq!(
            other.declaration_errors().len(),
            1,
            "{:?}",
            other.declaration_errors()
        );
    }

    struct Greeter;
    struct Greeting(i64);
    impl Module for Greeter {
        fn name(&self) -> &'static str {
            "greeter"
        }
        fn declare(&self, m: &mut ModuleBuilder<'_>) {
            m.param("base", ParamType::Int, 10, "added to n");
            let st = m.state(|p| match p.int("base") {
                b if b < 0 => Err(format!("base {b} is negative")),
                b => Ok(Greeting(b)),
            });
            m.function("add").args(&["n"]).handler(st.with(
                |g: &Greeting, _: &mut MsgContext, n: i64| Ok(Verdict::code((g.0 + n) as i32)),
            ));
            m.function("add_later").args(&["n"]).async_handler(st.with(
                |g: &Greeting, _: &mut MsgContext, n: i64| {
                    let sum = (g.0 + n) as i32;
                    async move { apply_result(move |_| Ok(Verdict::code(sum))) }
                },
            ));
        }
    }

    #[test]
    fn handlers_get_the_state_init_built() {
        let mut reg = Registry::new();
        reg.register(&Greeter);
        let env = Env(&reg);
        let mut ctx = invite();
        let add = reg.function("add").unwrap()[0].clone();
        let add_later = reg.function("add_later").unwrap()[0].clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut run = |f: &FunctionDef| {
            rt.block_on(
                f.call_values(&mut ctx, &[Value::Int(1)], &env)
                    .finish(&mut ctx),
            )
        };
        let e = run(&add).unwrap_err();
        assert_eq!(e.message, "module greeter is not initialised");
        let def = reg.module("greeter").unwrap();
        let mut params = def.default_params();
        for hook in &def.init {
            hook(&params).unwrap();
        }
        assert_eq!(run(&add).unwrap().rc(), 11);
        assert_eq!(run(&add_later).unwrap().rc(), 11);
        params.push("base", Value::Int(-1));
        assert!(def.init[0](&params).is_err());
        params.push("base", Value::Int(5));
        def.init[0](&params).unwrap();
        assert_eq!(run(&add).unwrap().rc(), 6);
    }

    #[test]
    fn declaration_mistakes_are_recorded() {
        let mut reg = Registry::new();
        reg.register(&Sloppy);
        reg.register(&AlsoG);
        assert_eq!(
            reg.declaration_errors(),
            [
                "module sloppy: f/1 names 2 arguments (a, b)",
                "module sloppy: f/1 is registered twice",
                "module sloppy: h/1 names 0 arguments ()",
                "module sloppy: h/1 is registered twice",
                "module also_g: rpc sloppy.list is already declared by module sloppy",
            ]
        );
        // The first declaration of an RPC name stays.
        let list = reg.rpc("sloppy.list").unwrap();
        assert_eq!((list.module, list.doc), ("sloppy", "A list."));
        assert_eq!(reg.rpcs().count(), 1);
        // Two modules may offer the same name and arity.
        assert_eq!(reg.function("g").unwrap().len(), 2);
        assert_eq!(reg.function("f").unwrap().len(), 1);
    }

    struct Rpcs;
    impl Module for Rpcs {
        fn name(&self) -> &'static str {
            "rpcs"
        }
        fn declare(&self, m: &mut ModuleBuilder<'_>) {
            m.rpc("rpcs.sum", "Adds its integer arguments.", |args| {
                Ok(RpcValue::Int(args.iter().filter_map(|v| v.as_int()).sum()))
            });
            m.rpc("rpcs.where", "The thread it runs on.", |_| {
                Ok(RpcValue::Str(format!("{:?}", std::thread::current().id())))
            });
            m.rpc_async(
                "rpcs.later",
                "Echoes its first argument after a yield.",
                |args: Vec<Value>| async move {
                    tokio::task::yield_now().await;
                    match args.first() {
                        Some(Value::Str(s)) => {
                            Ok(RpcValue::Str(String::from_utf8_lossy(s).into_owned()))
                        }
                        _ => Err("rpcs.later needs a string".to_string()),
                    }
                },
            );
            m.rpc("rpcs.panics", "Panics.", |_| panic!("rpc handler bug"));
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn rpcs_are_found_by_name_and_called_whichever_kind() {
        let mut reg = Registry::new();
        reg.register(&Demo);
        reg.register(&Rpcs);
        let names: Vec<_> = reg
            .rpcs()
            .map(|r| (r.module, r.name, r.is_async()))
            .collect();
        assert_eq!(
            names,
            [
                ("rpcs", "rpcs.sum", false),
                ("rpcs", "rpcs.where", false),
                ("rpcs", "rpcs.later", true),
                ("rpcs", "rpcs.panics", false),
            ]
        );
        assert!(reg.rpc("rpcs.nothing").is_none());
        let rt = runtime();
        let call = |name: &str, args: Vec<Value>| rt.block_on(reg.rpc(name).unwrap().call(args));
        assert_eq!(
            call("rpcs.sum", vec![Value::Int(2), Value::Int(40)]),
            Ok(RpcValue::Int(42))
        );
        assert_eq!(
            call("rpcs.later", vec![Value::from("x")]),
            Ok(RpcValue::Str("x".into()))
        );
        assert!(call("rpcs.later", vec![]).is_err());
        // A synchronous handler runs on the blocking pool, not on the runtime's thread.
        let Ok(RpcValue::Str(thread)) = call("rpcs.where", vec![]) else {
            panic!("rpcs.where answers a string");
        };
        assert_ne!(thread, format!("{:?}", std::thread::current().id()));
        // A handler that panics answers an error.
        let err = call("rpcs.panics", vec![]).unwrap_err();
        assert!(err.contains("rpc rpcs.panics failed"), "{err}");
        // Outside a runtime a synchronous handler runs inline.
        let sum = reg.rpc("rpcs.sum").unwrap().call(vec![Value::Int(1)]);
        assert_eq!(futures_block_on(sum), Ok(RpcValue::Int(1)));
    }

    /// Polls a future that never waits (no runtime around).
    fn futures_block_on<T>(fut: BoxFuture<'static, T>) -> T {
        let mut fut = fut;
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the future waited"),
        }
    }

    struct Stoppers;
    impl Module for Stoppers {
        fn name(&self) -> &'static str {
            "stoppers"
        }
        fn declare(&self, m: &mut ModuleBuilder<'_>) {
            // The sync hook blocks until the async one has run: on a single-threaded
            // runtime that only ends if the sync hook is on another thread.
            let (tx, rx) = std::sync::mpsc::channel::<&'static str>();
            let rx = Mutex::new(rx);
            let seen = Arc::new(Mutex::new(Vec::new()));
            let sync_seen = seen.clone();
            m.on_stop(move |_rt| {
                let got = rx.lock().unwrap().recv().unwrap();
                sync_seen.lock().unwrap().push(got);
            });
            let tx = Mutex::new(tx);
            m.on_stop_async(move |env: StopEnv| {
                let tx = tx.lock().unwrap().clone();
                async move {
                    tokio::task::yield_now().await;
                    env.runtime.spawn(async {}).await.unwrap();
                    tx.send("async ran").unwrap();
                }
            });
            m.rpc(
                "stoppers.seen",
                "What the sync stop hook received.",
                move |_| {
                    Ok(RpcValue::Array(
                        seen.lock()
                            .unwrap()
                            .iter()
                            .map(|s| RpcValue::Str(s.to_string()))
                            .collect(),
                    ))
                },
            );
        }
    }

    struct Hung;
    impl Module for Hung {
        fn name(&self) -> &'static str {
            "hung"
        }
        fn declare(&self, m: &mut ModuleBuilder<'_>) {
            m.on_stop_async(|_env| std::future::pending::<()>());
        }
    }

    fn stop_hooks(reg: &Registry) -> Vec<(&'static str, Arc<StopHook>)> {
        reg.modules()
            .flat_map(|m| m.stop.iter().map(|h| (m.name, h.clone())))
            .collect()
    }

    #[test]
    fn stop_hooks_run_sync_ones_on_the_blocking_pool() {
        let mut reg = Registry::new();
        reg.register(&Stoppers);
        let hooks = stop_hooks(&reg);
        assert_eq!(hooks.len(), 2);
        let rt = runtime();
        let unfinished = rt.block_on(run_stop_hooks(
            &hooks,
            rt.handle().clone(),
            STOP_HOOKS_LIMIT,
        ));
        assert!(unfinished.is_empty(), "{unfinished:?}");
        let seen = rt.block_on(reg.rpc("stoppers.seen").unwrap().call(vec![]));
        assert_eq!(
            seen,
            Ok(RpcValue::Array(vec![RpcValue::Str("async ran".into())]))
        );
    }

    #[test]
    fn a_hung_stop_hook_is_named_and_does_not_hold_the_others() {
        let mut reg = Registry::new();
        reg.register(&Hung);
        reg.register(&Stoppers);
        let hooks = stop_hooks(&reg);
        let rt = runtime();
        let unfinished = rt.block_on(run_stop_hooks(
            &hooks,
            rt.handle().clone(),
            std::time::Duration::from_millis(200),
        ));
        assert_eq!(unfinished, ["hung"]);
        let seen = rt.block_on(reg.rpc("stoppers.seen").unwrap().call(vec![]));
        assert_eq!(
            seen,
            Ok(RpcValue::Array(vec![RpcValue::Str("async ran".into())]))
        );
    }
}
