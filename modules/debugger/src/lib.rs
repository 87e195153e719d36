//! `debugger`: Script debugging: config trace, breakpoints, variable dumps and per-module log levels.

use bytes::Bytes;
use ferrosip_api::registry::FnRow;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask, Value};

/// The `debugger` module.
pub struct DebuggerModule;

impl Module for DebuggerModule {
    fn name(&self) -> &'static str {
        "debugger"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Script debugging: config trace, breakpoints, variable dumps and per-module log levels.");
        m.param(
            "cfgtrace",
            ParamType::Int,
            0_i64,
            "When 1, every executed config action is logged.",
        );
        m.param(
            "cfgtrace_format",
            ParamType::Int,
            0_i64,
            "Bit mask of extra fields in trace lines (1 route name, 2 file).",
        );
        m.param(
            "breakpoint",
            ParamType::Int,
            0_i64,
            "When 1, execution can stop at breakpoints for interactive RPC debugging.",
        );
        m.param(
            "log_level",
            ParamType::Int,
            -1_i64,
            "Log level of trace messages (-1 = L_ERR).",
        );
        m.param(
            "log_facility",
            ParamType::Str,
            Value::Null,
            "Syslog facility of trace messages.",
        );
        m.param(
            "log_prefix",
            ParamType::Str,
            "*** cfgtrace:",
            "Prefix of trace messages.",
        );
        m.param(
            "log_level_name",
            ParamType::Str,
            Value::Null,
            "Level name printed in trace lines instead of the numeric level.",
        );
        m.param(
            "log_assign",
            ParamType::Int,
            0_i64,
            "When 1, assignments are logged with their values.",
        );
        m.param(
            "step_usleep",
            ParamType::Int,
            100000_i64,
            "Microseconds to sleep between checks while stopped at a breakpoint.",
        );
        m.param(
            "step_loops",
            ParamType::Int,
            200_i64,
            "Checks while stopped before execution continues.",
        );
        m.param(
            "mod_hash_size",
            ParamType::Int,
            0_i64,
            "Power of two of the per-module log level table (0: off).",
        );
        m.param(
            "mod_level_mode",
            ParamType::Int,
            0_i64,
            "When 1, per-module log levels are enabled.",
        );
        m.repeatable_param(
            "mod_level",
            ParamType::Str,
            "Per-module log level \"module=level\" (may be given several times).",
        );
        m.param(
            "mod_facility_mode",
            ParamType::Int,
            0_i64,
            "When 1, per-module log facilities are enabled.",
        );
        m.repeatable_param(
            "mod_facility",
            ParamType::Str,
            "Per-module log facility \"module=facility\" (may be given several times).",
        );
        m.param(
            "reset_msgid",
            ParamType::Int,
            0_i64,
            "When 1, the message id can be reset by RPC (for repeatable traces).",
        );
        m.param(
            "cfgpkgcheck",
            ParamType::Int,
            0_i64,
            "When 1, the integrity of shared memory is checked after each action.",
        );
        m.param(
            "cfgtest",
            ParamType::Int,
            0_i64,
            "When 1, the unit-test hooks of the config are enabled.",
        );
        const REQ_REPLY_EVENT: RouteMask = RouteMask::REQUEST
            .union(RouteMask::ONREPLY)
            .union(RouteMask::EVENT);
        #[rustfmt::skip]
        m.functions([
            FnRow::declared::<(i64,)>("dbg_breakpoint", &["mode"], RouteMask::ANY, "Enables (1) or disables (0) the breakpoint at the next action; always 1."),
            FnRow::declared::<()>("dbg_pv_dump", &[], RouteMask::ANY, "Logs every set pseudo-variable (debugging); always 1."),
            FnRow::declared::<(i64,)>("dbg_pv_dump", &["mask"], RouteMask::ANY, "Logs the pseudo-variables of the types in the mask (1 null, 2 int, 4 str...); always 1."),
            FnRow::declared::<(i64, i64)>("dbg_pv_dump", &["mask", "level"], RouteMask::ANY, "Logs the selected pseudo-variables at the given log level; always 1."),
            FnRow::declared::<()>("dbg_sip_msg", &[], REQ_REPLY_EVENT, "Logs the message as it will be sent with all pending changes applied; 1 on success, -1 on failure."),
            FnRow::declared::<(i64,)>("dbg_sip_msg", &["log_level"], REQ_REPLY_EVENT, "As dbg_sip_msg() at a log level; 1 on success, -1 on failure."),
            FnRow::declared::<(i64, Bytes)>("dbg_sip_msg", &["log_level", "facility"], REQ_REPLY_EVENT, "As dbg_sip_msg() at a log level and facility; 1 on success, -1 on failure."),
        ]);
    }
}
