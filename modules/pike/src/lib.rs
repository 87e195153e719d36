//! `pike`: Flood detection: counts requests per source IP and blocks sources above a rate.

use bytes::Bytes;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask};

/// The `pike` module.
pub struct PikeModule;

impl Module for PikeModule {
    fn name(&self) -> &'static str {
        "pike"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Flood detection: counts requests per source IP and blocks sources above a rate.");
        m.param(
            "sampling_time_unit",
            ParamType::Int,
            2_i64,
            "Length in seconds of the sampling window.",
        );
        m.param(
            "reqs_density_per_unit",
            ParamType::Int,
            30_i64,
            "Requests per window above which a source IP is blocked.",
        );
        m.param(
            "remove_latency",
            ParamType::Int,
            120_i64,
            "Seconds an idle IP stays in the tree (and blocked) after its last request.",
        );
        m.param(
            "pike_log_level",
            ParamType::Int,
            1_i64,
            "Log level of the \"IP blocked\" messages (1 = L_WARN).",
        );
        m.function("pike_check_req")
            .routes(RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Counts the request against its source IP; 1 when allowed, -1 when the IP is blocked, -2 when it was just blocked (-1 and -2 are false).")
            .declared::<()>();
        m.function("pike_check_ip")
            .args(&["ipaddr"])
            .routes(RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As pike_check_req() for an address given as text; 1 allowed, -1 blocked, -2 just blocked.")
            .declared::<(Bytes,)>();
    }
}
