//! The seam between the server and the language a routing program is written in.
//!
//! A [`Program`] is normally the bytecode compiled from the config's route blocks. With
//! `cfgengine "lua"` (Kamailio's KEMI) the config keeps its globals, `loadmodule` and
//! `modparam` lines, and the routes come from another engine: the program then carries a
//! [`RouteEngine`], which answers route lookups and runs routes in place of the VM. The
//! program (with its engine) is immutable and swapped whole on reload, so a message, and a
//! transaction created from it, runs every route with the engine version it started with.
//!
//! An engine is provided by a module (`app_lua`) as a [`CfgEngine`] through the registry
//! (`m.provide`), so this crate depends on no language runtime.

use crate::program::{Program, RouteId};
use crate::vm::{Outcome, RuntimeError};
use ferrosip_api::registry::BoxFuture;
use ferrosip_api::{ModuleParams, MsgContext, Registry, RouteKind};
use indexmap::IndexMap;
use std::sync::Arc;

/// Routes written in another language, run in place of the bytecode VM.
pub trait RouteEngine: Send + Sync {
    /// The `cfgengine` name (`"lua"`).
    fn name(&self) -> &'static str;
    /// The route of an unnamed kind (`ksr_request_route` for [`RouteKind::Request`]).
    fn main_route(&self, kind: RouteKind) -> Option<RouteId>;
    /// A named route (`t_on_failure("name")` names a function of the script).
    fn named_route(&self, kind: RouteKind, name: &str) -> Option<RouteId>;
    /// Runs `route` for `ctx`; `program` is the program holding this engine (for calls by
    /// value that resolve route names).
    fn run<'a>(
        &'a self,
        program: &'a Program,
        route: RouteId,
        ctx: &'a mut MsgContext,
    ) -> BoxFuture<'a, Result<Outcome, RuntimeError>>;
    /// Problems a static look at the script finds (`ferrosip check`): calls to functions
    /// that do not exist or are declared only, each with file:line.
    fn check(&self) -> Vec<String> {
        Vec::new()
    }
}

/// What an engine is built from when a config with `cfgengine` loads.
pub struct EngineInput<'a> {
    /// The registry the config loads against, shared: the engine keeps it for calls by
    /// value (PV names, route names) while the server runs.
    pub registry: &'a Arc<Registry>,
    /// The loaded modules with their parameters (`modparam("app_lua", "load", ...)`).
    pub modules: &'a IndexMap<&'static str, ModuleParams>,
    /// The directory of the config file: relative script paths are taken from it.
    pub config_dir: Option<&'a std::path::Path>,
}

/// A routing language a module offers for `cfgengine "NAME"`.
pub struct CfgEngine {
    pub name: &'static str,
    /// The module that provides it (`loadmodule` it to use the engine).
    pub module: &'static str,
    /// Builds the engine: loads the script file; errors carry file:line.
    #[allow(clippy::type_complexity)]
    pub build:
        Box<dyn Fn(&EngineInput<'_>) -> Result<Arc<dyn RouteEngine>, Vec<String>> + Send + Sync>,
}

/// The registry a load is made against, shared, for engines that keep it
/// ([`crate::LoadOptions::shared_registry`]).
#[derive(Clone)]
pub struct SharedRegistry(pub Arc<Registry>);

impl std::fmt::Debug for SharedRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedRegistry")
    }
}
