//! `counters`: Script-defined statistics counters readable over RPC (cnt.get, cnt.list_vars...).

use bytes::Bytes;
use ferrosip_api::registry::FnRow;
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
        const REQ_FAIL_REPLY_ONSEND_EVENT: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::ONREPLY)
            .union(RouteMask::ONSEND)
            .union(RouteMask::EVENT);
        #[rustfmt::skip]
        m.functions([
            FnRow::declared::<(Bytes,)>("cnt_inc", &["group_name"], REQ_FAIL_REPLY_ONSEND_EVENT, "Increments a counter (\"name\" or \"group.name\"); always 1."),
            FnRow::declared::<(Bytes, i64)>("cnt_add", &["group_name", "number"], REQ_FAIL_REPLY_ONSEND_EVENT, "Adds a number to a counter; always 1."),
            FnRow::declared::<(Bytes,)>("cnt_reset", &["group_name"], REQ_FAIL_REPLY_ONSEND_EVENT, "Sets a counter to 0; always 1."),
        ]);
    }
}
