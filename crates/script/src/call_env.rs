//! What a call by value resolves against while a script runs: the registry's PV parser, the
//! routes of the running program and the loaded modules' parameters.
//!
//! Lua's `KSR.*` and the control interface call [`ferrosip_api::FunctionDef::call_values`]
//! with this environment, so a value that names a route (`"MANAGE_FAILURE"` for
//! `t_on_failure`) or a pseudo-variable (`"$avp(dst)"`) means what it would mean written in
//! the script itself.

use crate::program::Program;
use ferrosip_api::args::RouteTable;
use ferrosip_api::pv::Binder;
use ferrosip_api::{CallEnv, ModuleParams, Registry, RouteKind, Value};
use indexmap::IndexMap;

/// The environment of calls by value made for one loaded program.
pub struct ScriptCallEnv<'a> {
    registry: &'a Registry,
    program: &'a Program,
    modules: &'a IndexMap<&'static str, ModuleParams>,
}

impl<'a> ScriptCallEnv<'a> {
    /// For `program`, compiled against `registry`, with the loaded modules' parameters
    /// (`Loaded::modules`).
    pub fn new(
        registry: &'a Registry,
        program: &'a Program,
        modules: &'a IndexMap<&'static str, ModuleParams>,
    ) -> ScriptCallEnv<'a> {
        ScriptCallEnv {
            registry,
            program,
            modules,
        }
    }

    /// For a config as [`crate::load_str`]/[`crate::load_file`] loaded it.
    pub fn for_loaded(registry: &'a Registry, loaded: &'a crate::Loaded) -> ScriptCallEnv<'a> {
        ScriptCallEnv::new(registry, &loaded.program, &loaded.modules)
    }
}

impl CallEnv for ScriptCallEnv<'_> {
    fn binder(&self) -> Binder<'_> {
        Binder::new(self.registry)
    }

    fn route_index(&self, table: RouteTable, name: &str) -> Option<u32> {
        let kind = match table {
            // `route[NAME]` subroutines are kept under the request kind.
            RouteTable::Named => RouteKind::Request,
            RouteTable::Failure => RouteKind::Failure,
            RouteTable::Branch => RouteKind::Branch,
            RouteTable::OnReply => RouteKind::TmOnReply,
            RouteTable::Event => RouteKind::Event,
        };
        self.program.named_route(kind, name)
    }

    fn module_param(&self, module: &str, name: &str) -> Option<Value> {
        self.modules.get(module).map(|p| p.get(name))
    }
}
