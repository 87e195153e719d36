//! `debugger`: Script debugging: config trace, breakpoints, variable dumps and per-module log levels.
//!
//! What works is the statement trace (`cfgtrace`, with `log_level`, `log_prefix`,
//! `log_level_name` and the RPC `dbg.trace on|off`): it drives the registry's
//! [`ferrosip_api::trace::CfgTrace`], which the script VM reads once per route run.
//! Breakpoints, per-module log levels and the other switches are refused at load when set
//! to anything but their default, rather than accepted and ignored.

use bytes::Bytes;
use ferrosip_api::registry::FnRow;
use ferrosip_api::trace::TraceLog;
use ferrosip_api::{Module, ModuleBuilder, ModuleParams, ParamType, RouteMask, RpcValue, Value};

/// Parameters this version does not implement, with the default a script may still
/// write (`None`: any value is refused): a script that sets one otherwise is refused at
/// load, not run with the setting ignored.
const UNSUPPORTED: &[(&str, Option<i64>)] = &[
    ("cfgtrace_format", Some(0)),
    ("breakpoint", Some(0)),
    ("log_facility", None),
    ("log_assign", Some(0)),
    ("step_usleep", Some(100000)),
    ("step_loops", Some(200)),
    ("mod_hash_size", Some(0)),
    ("mod_level_mode", Some(0)),
    ("mod_level", None),
    ("mod_facility_mode", Some(0)),
    ("mod_facility", None),
    ("reset_msgid", Some(0)),
    ("cfgpkgcheck", Some(0)),
    ("cfgtest", Some(0)),
];

fn check_supported(p: &ModuleParams) -> Result<(), String> {
    for (name, default) in UNSUPPORTED {
        let refused = p
            .all(name)
            .iter()
            .any(|v| default.is_none() || v.as_int() != *default);
        if refused {
            return Err(format!(
                "{name} is not supported by Ferrosip's debugger (cfgtrace, log_level, log_prefix and log_level_name are)"
            ));
        }
    }
    Ok(())
}

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
        let trace = m.registry().cfg_trace();
        let init_trace = trace.clone();
        m.on_init(move |p| {
            check_supported(p)?;
            let level_name = p.string("log_level_name");
            init_trace.set_log(TraceLog {
                prefix: p.string("log_prefix"),
                level: p.int("log_level"),
                level_name: (!level_name.is_empty()).then_some(level_name),
            });
            // Only switches on: `ferrosip run --trace` or an RPC may have turned it on
            // already, and a script without `cfgtrace` must not turn that off.
            if p.int("cfgtrace") != 0 {
                init_trace.set_on(true);
            }
            Ok(())
        });
        m.rpc(
            "dbg.trace",
            "Turns the statement trace on or off (\"on\" / \"off\"); without an argument, says whether it is on.",
            move |args| {
                match args.first().map(|v| v.to_string().to_ascii_lowercase()) {
                    None => {}
                    Some(a) if a == "on" || a == "1" => trace.set_on(true),
                    Some(a) if a == "off" || a == "0" => trace.set_on(false),
                    Some(other) => return Err(format!("dbg.trace: \"{other}\": give on or off")),
                }
                Ok(RpcValue::Str(if trace.is_on() { "on" } else { "off" }.into()))
            },
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
