//! Ferrosip's script engine: Kamailio-compatible route scripts compiled to bytecode.
//!
//! `load_file` runs the whole pipeline: preprocessor (`ferrosip-preprocess`) -> pest grammar
//! ([`parser`]) -> AST ([`ast`]) -> [`compiler`] (fixups, route resolution, route-kind
//! checks) -> immutable [`program::Program`] -> [`vm::Vm`].

pub mod ast;
pub mod call_env;
pub mod compiler;
pub mod core_params;
pub mod diag;
pub mod engine;
pub mod lint;
pub mod load;
pub mod parser;
pub mod program;
pub mod pv_core;
mod pv_msg;
pub mod pv_snd;
pub mod pv_time;
mod pv_xavp;
pub mod transforms;
pub mod vm;

pub use call_env::ScriptCallEnv;
pub use diag::{Diagnostic, Location, SourceInfo};
pub use engine::{CfgEngine, EngineInput, RouteEngine, SharedRegistry};
pub use load::{load_file, load_str, loaded_module_names, LoadErrors, LoadOptions, Loaded};
pub use program::{Program, RouteId};
pub use vm::{Outcome, RuntimeError, Vm};

/// Registers what the script engine itself provides: the core PVs and transformations.
pub fn register_core(reg: &mut ferrosip_api::Registry) {
    reg.register(&pv_core::CorePvModule);
    reg.register(&transforms::CoreTransformsModule);
}
