#![warn(missing_docs)]
//! The module API of Ferrosip: the one crate a module depends on.
//!
//! A module is a type implementing [`Module`]: a name (what `loadmodule "NAME.so"` and
//! `modparam("NAME", ...)` say) and a `declare` that tells a [`ModuleBuilder`] everything
//! the module offers. From those declarations the script compiler checks calls at load
//! (unknown function, wrong arity, wrong route kind, bad literal argument, each with its
//! file:line:column), the Lua binding builds `KSR.NAME.fn()`, the control interface finds
//! RPC commands, and `ferrosip docs` writes the module's page. A custom binary builds the
//! module in with `ferrosip::Server::builder().module(MyModule).run()`; Ferrosip's
//! `docs/dev/modules.md` walks from an empty crate to that binary, and `templates/` holds
//! both crates to copy.
//!
//! What lives here:
//! - [`Value`]: the script's value type (null, integer, byte string); [`Verdict`]: a
//!   function's return code;
//! - [`MsgContext`]: one SIP message and its per-message state (flags, AVPs, `$var`s,
//!   destination URI, return code, typed module extensions);
//! - [`RouteKind`] / [`RouteMask`]: the route kinds (phases) and which of them a function
//!   may run in;
//! - [`Registry`]: modules declare their parameters, typed functions, pseudo-variable
//!   classes, transformation classes and RPC commands here. The script VM, the Lua `KSR`
//!   binding and the generated docs are all driven by it. Every function can be called
//!   with load-time fixed arguments (compiled scripts) or with run-time values
//!   ([`FunctionDef::call_values`], given a [`CallEnv`]).
//! - module state and module APIs: a module's init builds its state from its parameters
//!   ([`ModuleBuilder::state`] -> [`StateSlot`], handlers get `&S`); a module offers a
//!   typed API to others ([`ModuleBuilder::provide`]) which they hold as a [`ModuleApi`]
//!   ([`ModuleBuilder::uses`], with [`ModuleBuilder::needs`] for the load order); start
//!   hooks are async.
//! - the pseudo-variable and transformation frameworks ([`pv`], [`transform`]) and format
//!   strings ([`Format`]);
//! - [`Services`]: what the running server offers functions (replies, forwarding, event
//!   routes, requests of its own); [`tm`] and [`tm_events`]: the transaction layer as
//!   functions and observers see it;
//! - re-exported at the versions Ferrosip uses: [`sip`] (the SIP message crate,
//!   `ferrosip-sip`), [`bytes`] (string arguments are [`bytes::Bytes`]) and [`tokio`]
//!   (the server's runtime). A module that keeps data adds `ferrosip-db`, the database
//!   layer (kept out of this crate so that modules without a database do not build one).
//!
//! # Parameters
//!
//! `modparam("NAME", "param", value)` sets a declared parameter; an undeclared one is a
//! load error. Read them in init or in [`ModuleBuilder::state`]:
//!
//! ```
//! use ferrosip_api::{Module, ModuleBuilder, ParamType, Registry};
//!
//! struct Greeter;
//! impl Module for Greeter {
//!     fn name(&self) -> &'static str {
//!         "greeter"
//!     }
//!     fn declare(&self, m: &mut ModuleBuilder<'_>) {
//!         m.param("greeting", ParamType::Str, "hello", "What greet() answers.");
//!         m.param("max_len", ParamType::Int, 64_i64, "Longest greeting, 1..1024.");
//!         m.on_init(|p| match p.int("max_len") {
//!             1..=1024 => Ok(()),
//!             n => Err(format!("max_len {n} is out of 1..1024")),
//!         });
//!     }
//! }
//!
//! let mut reg = Registry::new();
//! reg.register(&Greeter);
//! let def = reg.module("greeter").unwrap();
//! let mut params = def.default_params();
//! assert_eq!(params.string("greeting"), "hello");
//! params.push("max_len", ferrosip_api::Value::Int(5000));
//! assert!(def.init[0](&params).is_err()); // the load fails: "module greeter: max_len ..."
//! ```
//!
//! # State
//!
//! A module keeps what it needs between calls in its state, built from its parameters by
//! [`ModuleBuilder::state`] each time a script loading it loads; handlers registered
//! through [`StateSlot::with`] get `&S` (read without a lock). There are no module
//! globals: each registry has its own slots.
//!
//! ```
//! use ferrosip_api::{Module, ModuleBuilder, MsgContext, ParamType, Registry, Verdict};
//!
//! struct Limits {
//!     max: i64,
//! }
//! struct Limiter;
//! impl Module for Limiter {
//!     fn name(&self) -> &'static str {
//!         "limiter"
//!     }
//!     fn declare(&self, m: &mut ModuleBuilder<'_>) {
//!         m.param("max", ParamType::Int, 10_i64, "The limit.");
//!         let st = m.state(|p| Ok(Limits { max: p.int("max") }));
//!         m.function("under_limit").args(&["n"]).handler(st.with(
//!             |limits: &Limits, _ctx: &mut MsgContext, n: i64| {
//!                 Ok(if n < limits.max { Verdict::TRUE } else { Verdict::FALSE })
//!             },
//!         ));
//!     }
//! }
//! # let mut reg = Registry::new();
//! # reg.register(&Limiter);
//! # assert!(reg.declaration_errors().is_empty());
//! ```
//!
//! # Functions: argument kinds, route masks, return codes
//!
//! A handler is a typed Rust function; each parameter's type implements [`ArgType`]
//! (`i64`, [`bytes::Bytes`], [`Value`], regexes, [`args::PvOut`], [`args::Flag`], route
//! names...), which says how the script's argument is checked once at load (the fixup)
//! and evaluated per call. [`RouteMask`] says where the function may be called; a call
//! from another route kind is a load error. The return value is a [`Verdict`]: > 0 is
//! true, < 0 false, 0 stops the script (Kamailio's rule); an [`FnError`] is logged with
//! the call's location and returns its (negative) code.
//!
//! ```
//! use ferrosip_api::bytes::Bytes;
//! use ferrosip_api::registry::FnRow;
//! use ferrosip_api::{Module, ModuleBuilder, MsgContext, Registry, RouteMask, Verdict};
//!
//! fn has_header(ctx: &mut MsgContext, name: Bytes) -> ferrosip_api::FnResult {
//!     let name = String::from_utf8_lossy(&name);
//!     Ok(if ctx.msg.has_header(&name) { Verdict::TRUE } else { Verdict::FALSE })
//! }
//!
//! struct Headers;
//! impl Module for Headers {
//!     fn name(&self) -> &'static str {
//!         "headers"
//!     }
//!     fn declare(&self, m: &mut ModuleBuilder<'_>) {
//!         // One builder per overload...
//!         m.function("has_header")
//!             .args(&["name"])
//!             .routes(RouteMask::REQUEST | RouteMask::FAILURE)
//!             .doc("True when the request has the header.")
//!             .handler(has_header);
//!         // ...or a table, one row per overload (Kamailio's cmd_export_t).
//!         m.functions([FnRow::sync(
//!             "header_at_most",
//!             &["name", "count"],
//!             RouteMask::ANY,
//!             "True when the header appears at most COUNT times.",
//!             |ctx: &mut MsgContext, name: Bytes, count: i64| {
//!                 let n = ctx.msg.headers_named(&String::from_utf8_lossy(&name)).count();
//!                 Ok(if (n as i64) <= count { Verdict::TRUE } else { Verdict::FALSE })
//!             },
//!         )]);
//!     }
//! }
//!
//! let mut reg = Registry::new();
//! reg.register(&Headers);
//! let f = &reg.function("has_header").unwrap()[0];
//! assert_eq!(f.signature(), "has_header(name: string)");
//! assert!(!f.routes.contains(ferrosip_api::RouteKind::Branch));
//! ```
//!
//! A type of your own becomes an argument type by implementing [`ArgType`]: `fixup`
//! checks a literal once at load (its error is shown at the argument), `eval` produces
//! the value per call, `from_value` converts a run-time value (Lua, the control
//! interface). The template module's `DialPrefix` (`templates/module/src/lib.rs`) is a
//! complete one.
//!
//! # Async functions
//!
//! A function that waits (database, DNS, HTTP) is registered with
//! [`registry::FunctionBuilder::async_handler`] (or [`FnRow::asynchronous`]): the handler
//! takes what it needs from the message, returns a `'static` future that does the
//! waiting without borrowing the message, and the future's output
//! ([`apply_result`]) is applied to the message when the wait is over. The worker goes on
//! with other messages meanwhile.
//!
//! ```
//! use ferrosip_api::{apply_result, Module, ModuleBuilder, MsgContext, Verdict};
//! use std::time::Duration;
//!
//! struct Pause;
//! impl Module for Pause {
//!     fn name(&self) -> &'static str {
//!         "pause"
//!     }
//!     fn declare(&self, m: &mut ModuleBuilder<'_>) {
//!         m.function("pause_ms").args(&["ms"]).async_handler(
//!             |_ctx: &mut MsgContext, ms: i64| async move {
//!                 ferrosip_api::tokio::time::sleep(Duration::from_millis(ms.max(0) as u64)).await;
//!                 apply_result(move |ctx: &mut MsgContext| {
//!                     ctx.flags |= 1;
//!                     Ok(Verdict::TRUE)
//!                 })
//!             },
//!         );
//!     }
//! }
//! # let mut reg = ferrosip_api::Registry::new();
//! # reg.register(&Pause);
//! # assert!(matches!(reg.function("pause_ms").unwrap()[0].call, ferrosip_api::Callable::Async(_)));
//! ```
//!
//! # Typed handles to other modules
//!
//! A module that serves others provides a typed API ([`ModuleBuilder::provide`]); a user
//! takes a [`ModuleApi`] handle ([`ModuleBuilder::uses`]) and names the provider
//! ([`ModuleBuilder::needs`]) so that a script loading it must load the provider too (the
//! idea of Kamailio's `load_tm_api`/`bind_usrloc`).
//!
//! ```
//! use ferrosip_api::{FnError, Module, ModuleBuilder, MsgContext, Registry, Verdict};
//! use std::sync::atomic::{AtomicI32, Ordering};
//! use std::sync::Arc;
//!
//! pub struct CounterApi(AtomicI32);
//!
//! struct Counter;
//! impl Module for Counter {
//!     fn name(&self) -> &'static str {
//!         "counter"
//!     }
//!     fn declare(&self, m: &mut ModuleBuilder<'_>) {
//!         m.provide(Arc::new(CounterApi(AtomicI32::new(0))));
//!     }
//! }
//!
//! struct Bumper;
//! impl Module for Bumper {
//!     fn name(&self) -> &'static str {
//!         "bumper"
//!     }
//!     fn declare(&self, m: &mut ModuleBuilder<'_>) {
//!         m.needs("counter");
//!         let counter = m.uses::<CounterApi>();
//!         m.function("bump").handler(move |_ctx: &mut MsgContext| {
//!             let c = counter.get().ok_or_else(|| FnError::new("counter is not built in"))?;
//!             Ok(Verdict::code(c.0.fetch_add(1, Ordering::Relaxed) + 1))
//!         });
//!     }
//! }
//!
//! let mut reg = Registry::new();
//! reg.register(&Bumper); // either order works
//! reg.register(&Counter);
//! assert!(reg.api::<CounterApi>().is_some());
//! ```
//!
//! # Pseudo-variables and transformations
//!
//! A PV class is bound once per use at load ([`PvClass::bind`]: the parameter checked,
//! names interned) and read per message ([`Pv::get`]); a fixed PV without parameter
//! takes one line ([`ModuleBuilder::pv_fixed`]). A transformation class
//! (`{class.name,args}`) binds the same way ([`TransformClass`]).
//!
//! ```
//! use ferrosip_api::pv::{Binder, PvParamRule};
//! use ferrosip_api::transform::{FnTransform, TrArg};
//! use ferrosip_api::{
//!     Module, ModuleBuilder, MsgContext, Pv, PvClass, PvError, PvIndex, Transform,
//!     TransformClass, Value,
//! };
//! use std::sync::Arc;
//!
//! /// `$msglen`: the length of the message.
//! struct MsgLen;
//! impl Pv for MsgLen {
//!     fn get(&self, ctx: &MsgContext, _index: PvIndex) -> Result<Value, PvError> {
//!         Ok(Value::Int(ctx.msg.to_bytes().len() as i64))
//!     }
//! }
//!
//! /// `$const(NAME)`: a few constants, the name checked at load.
//! struct Consts;
//! impl PvClass for Consts {
//!     fn param_rule(&self) -> PvParamRule {
//!         PvParamRule::Required
//!     }
//!     fn bind(&self, param: Option<&str>, _b: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
//!         struct Fixed(i64);
//!         impl Pv for Fixed {
//!             fn get(&self, _: &MsgContext, _: PvIndex) -> Result<Value, PvError> {
//!                 Ok(Value::Int(self.0))
//!             }
//!         }
//!         match param {
//!             Some("answer") => Ok(Arc::new(Fixed(42))),
//!             other => Err(format!("$const({}): unknown constant", other.unwrap_or(""))),
//!         }
//!     }
//! }
//!
//! /// `{rev.bytes}`: the value's bytes reversed.
//! struct Rev;
//! impl TransformClass for Rev {
//!     fn bind(&self, name: &str, args: &[TrArg], _b: &Binder<'_>)
//!         -> Result<Arc<dyn Transform>, String> {
//!         if name != "bytes" || !args.is_empty() {
//!             return Err(format!("{{rev.{name}}}: only {{rev.bytes}} exists"));
//!         }
//!         Ok(Arc::new(FnTransform(|_: &MsgContext, v: Value| -> Result<Value, PvError> {
//!             let mut b = v.to_bytes().unwrap_or_default().to_vec();
//!             b.reverse();
//!             Ok(Value::from(ferrosip_api::bytes::Bytes::from(b)))
//!         })))
//!     }
//!     fn names(&self) -> &[&'static str] {
//!         &["bytes"]
//!     }
//! }
//!
//! struct Extras;
//! impl Module for Extras {
//!     fn name(&self) -> &'static str {
//!         "extras"
//!     }
//!     fn declare(&self, m: &mut ModuleBuilder<'_>) {
//!         m.pv_fixed("msglen", "The length of the message.", MsgLen)
//!             .pv("const", Consts)
//!             .transform("rev", Rev);
//!     }
//! }
//! # let mut reg = ferrosip_api::Registry::new();
//! # reg.register(&Extras);
//! # assert!(reg.pv_class("const").is_some() && reg.transform_class("rev").is_some());
//! ```
//!
//! # RPC commands
//!
//! `ferrosip ctl NAME args`, kamcmd and JSON-RPC reach a module's commands by name. A
//! synchronous handler ([`ModuleBuilder::rpc`]) runs on the runtime's blocking pool; one
//! that awaits I/O is async ([`ModuleBuilder::rpc_async`]). Either may fail with a
//! message; a panic answers an error.
//!
//! ```
//! use ferrosip_api::{Module, ModuleBuilder, Registry, RpcValue, Value};
//!
//! struct Admin;
//! impl Module for Admin {
//!     fn name(&self) -> &'static str {
//!         "admin"
//!     }
//!     fn declare(&self, m: &mut ModuleBuilder<'_>) {
//!         m.rpc("admin.sum", "Adds its integer arguments.", |args: &[Value]| {
//!             Ok(RpcValue::Int(args.iter().filter_map(Value::as_int).sum()))
//!         });
//!         m.rpc_async("admin.echo", "Answers its first argument.", |args: Vec<Value>| async move {
//!             match args.first() {
//!                 Some(v) => Ok(RpcValue::Str(v.to_string())),
//!                 None => Err("admin.echo needs an argument".to_string()),
//!             }
//!         });
//!     }
//! }
//!
//! let mut reg = Registry::new();
//! reg.register(&Admin);
//! let rt = ferrosip_api::tokio::runtime::Builder::new_current_thread().build().unwrap();
//! let sum = rt.block_on(reg.rpc("admin.sum").unwrap().call(vec![Value::Int(2), Value::Int(40)]));
//! assert_eq!(sum, Ok(RpcValue::Int(42)));
//! ```
//!
//! # Start and stop hooks, timers
//!
//! Init ([`ModuleBuilder::on_init`], [`ModuleBuilder::state`]) runs on every load,
//! `ferrosip check` included, and must not connect anywhere. What needs the running
//! server goes in the start hook ([`ModuleBuilder::on_start`], awaited before traffic):
//! connect databases, load tables, spawn timers on [`StartEnv::runtime`]. Stop hooks
//! ([`ModuleBuilder::on_stop`], [`ModuleBuilder::on_stop_async`]) flush what must be kept,
//! all together within [`STOP_HOOKS_LIMIT`].
//!
//! ```
//! use ferrosip_api::{Module, ModuleBuilder};
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! struct Ticker;
//! impl Module for Ticker {
//!     fn name(&self) -> &'static str {
//!         "ticker"
//!     }
//!     fn declare(&self, m: &mut ModuleBuilder<'_>) {
//!         let ticks = Arc::new(AtomicU64::new(0));
//!         let timer_ticks = ticks.clone();
//!         m.on_start(move |env| {
//!             // Kamailio's register_timer: a task on the server's runtime.
//!             let ticks = timer_ticks.clone();
//!             env.runtime.spawn(async move {
//!                 let mut every = ferrosip_api::tokio::time::interval(Duration::from_secs(1));
//!                 loop {
//!                     every.tick().await;
//!                     ticks.fetch_add(1, Ordering::Relaxed);
//!                 }
//!             });
//!             async { Ok(()) }
//!         });
//!         m.on_stop_async(move |_env| {
//!             let ticks = ticks.clone();
//!             async move {
//!                 let _ = ticks.load(Ordering::Relaxed); // write it somewhere durable
//!             }
//!         });
//!     }
//! }
//! # let mut reg = ferrosip_api::Registry::new();
//! # reg.register(&Ticker);
//! # assert_eq!(reg.module("ticker").unwrap().start.len(), 1);
//! ```
//!
//! # Event routes
//!
//! A module raises `event_route[module:event]` through the server's [`Services`], which
//! it receives once the server is up ([`ModuleBuilder::on_ready`]); the route runs on the
//! server's runtime with the context given (usually a dummy message).
//!
//! ```
//! use ferrosip_api::{Module, ModuleBuilder, Services};
//! use std::sync::{Arc, OnceLock};
//!
//! struct Watchdog;
//! impl Module for Watchdog {
//!     fn name(&self) -> &'static str {
//!         "watchdog"
//!     }
//!     fn declare(&self, m: &mut ModuleBuilder<'_>) {
//!         let services: Arc<OnceLock<Arc<dyn Services>>> = Arc::default();
//!         let keep = services.clone();
//!         m.on_ready(move |s| {
//!             let _ = keep.set(s.clone());
//!         });
//!         // Later, from a timer: services.get().map(|s| s.run_event_route("watchdog:late", ctx))
//!     }
//! }
//! # let mut reg = ferrosip_api::Registry::new();
//! # reg.register(&Watchdog);
//! ```
//!
//! # Transaction events
//!
//! A module that must see how transactions end (accounting) registers an observer
//! builder ([`ModuleBuilder::on_tm_event`]); see [`tm_events`].
//!
//! ```
//! use ferrosip_api::{FinalReply, Module, ModuleBuilder, MsgContext, TmObserver, TxnWatch};
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//!
//! struct Failures(Arc<AtomicU64>);
//! impl TmObserver for Failures {
//!     fn on_request(&self, _ctx: &MsgContext) -> Option<Box<dyn TxnWatch>> {
//!         Some(Box::new(Watch(self.0.clone())))
//!     }
//! }
//! struct Watch(Arc<AtomicU64>);
//! impl TxnWatch for Watch {
//!     fn on_final(&mut self, reply: &FinalReply<'_>) {
//!         if reply.failed() {
//!             self.0.fetch_add(1, Ordering::Relaxed);
//!         }
//!     }
//! }
//!
//! struct FailCount;
//! impl Module for FailCount {
//!     fn name(&self) -> &'static str {
//!         "failcount"
//!     }
//!     fn declare(&self, m: &mut ModuleBuilder<'_>) {
//!         let count = Arc::new(AtomicU64::new(0));
//!         m.on_tm_event(move |_params, _binder| {
//!             Ok(Some(Arc::new(Failures(count.clone())) as Arc<dyn TmObserver>))
//!         });
//!     }
//! }
//! # let mut reg = ferrosip_api::Registry::new();
//! # reg.register(&FailCount);
//! ```
//!
//! # Semver rules (what may change)
//!
//! Ferrosip is 0.x; this crate follows Cargo's rules for 0.x versions, and states what a
//! module may rely on within one minor version (0.N.*):
//! - Stable: the [`Module`] trait; [`ModuleBuilder`]'s declaration methods and
//!   [`registry::FunctionBuilder`]/[`FnRow`]; [`ArgType`] and the argument types it is
//!   implemented for; [`Verdict`] and its mapping to return codes; [`FnError`];
//!   [`StateSlot`], [`ModuleApi`]; the [`Pv`]/[`PvClass`]/[`Transform`]/[`TransformClass`]
//!   traits; [`RpcValue`]; [`StartEnv`], [`StopEnv`]; the public fields of [`MsgContext`];
//!   [`Services`] (methods are only added, with a default body).
//! - Additive only: new [`ModuleBuilder`] methods, new [`RouteKind`]s (match with a
//!   wildcard), new [`ArgKind`]s, new trait methods with defaults, new fields of structs
//!   built by the server (never by modules: [`StartEnv`], [`tm_events::FinalReply`]).
//! - May change in any release: what a module only reads through the registry for the
//!   server's own use ([`FunctionDef`]'s and [`ModuleDef`]'s fields, [`Callable`], the
//!   fixup plumbing [`FixedArg`]/[`registry::ArgList`]), [`rr`] and [`tm`] (the server's
//!   side of record-routing and transactions), and the re-exported crates' own versions
//!   (follow `ferrosip-api`'s, never pin them separately).
//! - A change to a stable item is a new minor version (0.N+1.0) and is named in the
//!   release notes with how to port.

/// Typed function arguments and their load-time fixups.
pub mod args;
/// The clocks the server and modules read (stopped and moved by `ferrosip test`).
pub mod clock;
/// The per-message context a route runs against.
pub mod context;
/// Script spans and function errors.
pub mod error;
/// Strings with pseudo-variables inside, parsed once and evaluated per message.
pub mod format;
/// The control interface's JSON-RPC commands as script functions reach them.
pub mod jsonrpc;
/// The pseudo-variable framework.
pub mod pv;
/// The registry where modules declare what they offer.
pub mod registry;
/// Route kinds and route masks.
pub mod route;
/// Record-Route as the server and `rr` share it.
pub mod rr;
/// What the running server offers functions.
pub mod services;
/// TLS connection facts (`$tls_*` variables) as the transport shares them with modules.
pub mod tls;
/// The transaction layer as the `tm` functions see it.
pub mod tm;
/// Transaction events for modules watching transactions end.
pub mod tm_events;
/// Statement trace (`cfgtrace`) and message taps (`siptrace`).
pub mod trace;
/// The transformation framework (`{class.name,args}`).
pub mod transform;
/// The script value type and function verdicts.
pub mod value;
pub mod websocket;
pub mod xavp;

// What a module's signatures name, re-exported so that a module needs this crate only,
// at the versions Ferrosip itself uses.
pub use bytes;
pub use ferrosip_sip as sip;
pub use tokio;

pub use args::{ArgKind, ArgType, CallEnv, FixedArg, FixupEnv, RawArg};
pub use clock::Clock;
pub use context::{Avps, Extensions, MsgContext, NetInfo, Proto, Vars};
pub use error::{FnError, Span};
pub use format::Format;
pub use pv::{Pv, PvClass, PvError, PvIndex, PvRef, SetOp};
pub use registry::{
    apply_result, run_stop_hooks, ApplyResult, AvpNames, CallOutcome, Callable, FnRow, FunctionDef,
    ModuleApi, ModuleBuilder, ModuleDef, ModuleParams, ParamDef, ParamType, Registry, RpcCallable,
    RpcDef, RpcValue, StartEnv, StartHook, StateSlot, StopEnv, StopHook, ValueCallable, WithState,
    STOP_HOOKS_LIMIT,
};
pub use route::{RouteKind, RouteMask};
pub use services::{ForwardFlags, ReplyHeaders, SendInfo, Services, Target};
pub use tm_events::{E2eAck, FinalReply, TmObserver, TxnWatch};
pub use transform::{Transform, TransformClass};
pub use value::{Value, Verdict};

/// Result of a module function: a Kamailio-style return code, or an error that the VM
/// logs with the call site's location and turns into a negative return code.
pub type FnResult = Result<Verdict, FnError>;

/// A module of Ferrosip. Implemented once per crate under `modules/`.
pub trait Module: Send + Sync + 'static {
    /// The name scripts use in `loadmodule "NAME.so"` and `modparam("NAME", ...)`.
    fn name(&self) -> &'static str;
    /// Declares parameters, functions, pseudo-variables, transformations and RPC commands.
    fn declare(&self, m: &mut ModuleBuilder<'_>);
}
