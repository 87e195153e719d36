//! `counters`: Script-defined statistics counters readable over RPC (cnt.get, cnt.list_vars...).

use bytes::Bytes;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask};

/// The `counters` module.
pub struct CountersModule;

impl Module for CountersModule {
    fn name(&self) -> &'static str {
        "counters"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Script-defined statistics counters readable over RPC (cnt.get, cnt.list_vars...).");
        m.param(
            "script_cnt_grp_name",
            ParamType::Str,
            "script",
            "Group of counters declared with script_counter.",
        );
        m.repeatable_param("script_counter", ParamType::Str, "Declares a counter \"name[:description]\" in script_cnt_grp_name (may be given several times).");
        m.function("cnt_inc")
            .args(&["group_name"])
            .routes(
                RouteMask::ONREPLY
                    | RouteMask::FAILURE
                    | RouteMask::ONSEND
                    | RouteMask::REQUEST
                    | RouteMask::EVENT,
            )
            .doc("Increments a counter (\"name\" or \"group.name\"); always 1.")
            .declared::<(Bytes,)>();
        m.function("cnt_add")
            .args(&["group_name", "number"])
            .routes(
                RouteMask::ONREPLY
                    | RouteMask::FAILURE
                    | RouteMask::ONSEND
                    | RouteMask::REQUEST
                    | RouteMask::EVENT,
            )
            .doc("Adds a number to a counter; always 1.")
            .declared::<(Bytes, i64)>();
        m.function("cnt_reset")
            .args(&["group_name"])
            .routes(
                RouteMask::ONREPLY
                    | RouteMask::FAILURE
                    | RouteMask::ONSEND
                    | RouteMask::REQUEST
                    | RouteMask::EVENT,
            )
            .doc("Sets a counter to 0; always 1.")
            .declared::<(Bytes,)>();
    }
}
