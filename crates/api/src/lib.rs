//! The module API of Ferrosip.
//!
//! Everything a module (and the script engine) shares lives here:
//! - [`Value`]: the script's value type (null, integer, byte string);
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
//!   strings ([`Format`]).

pub mod args;
pub mod context;
pub mod error;
pub mod format;
pub mod pv;
pub mod registry;
pub mod route;
pub mod rr;
pub mod services;
pub mod tm;
pub mod tm_events;
pub mod trace;
pub mod transform;
pub mod value;

pub use args::{ArgKind, ArgType, CallEnv, FixedArg, FixupEnv, RawArg};
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
pub use services::{ForwardFlags, ReplyHeaders, Services, Target};
pub use tm_events::{FinalReply, TmObserver, TxnWatch};
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
