//! `rr`: Record-Route and Route handling (RFC 3261 loose routing, with strict-router compatibility).

use bytes::Bytes;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask, Value};
use regex::bytes::Regex;
use std::sync::Arc;

/// The `rr` module.
pub struct RrModule;

impl Module for RrModule {
    fn name(&self) -> &'static str {
        "rr"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Record-Route and Route handling (RFC 3261 loose routing, with strict-router compatibility).");
        m.param(
            "enable_full_lr",
            ParamType::Int,
            0_i64,
            "When 1, writes \";lr=on\" instead of \";lr\" for broken parsers.",
        );
        m.param(
            "append_fromtag",
            ParamType::Int,
            1_i64,
            "Adds the From tag as \";ftag=\" to Record-Route so is_direction() works.",
        );
        m.param("enable_double_rr", ParamType::Int, 1_i64, "Adds two Record-Route headers when the in and out sockets differ (1: when interface differs, 2: always).");
        m.param(
            "add_username",
            ParamType::Int,
            0_i64,
            "Puts the R-URI user part into the Record-Route URI.",
        );
        m.param(
            "enable_socket_mismatch_warning",
            ParamType::Int,
            1_i64,
            "Warns when a preset Record-Route address does not match the outgoing socket.",
        );
        m.param(
            "custom_user_avp",
            ParamType::Str,
            Value::Null,
            "AVP whose value is used as the user part of Record-Route instead of the R-URI user.",
        );
        m.param(
            "force_send_socket",
            ParamType::Int,
            0_i64,
            "When 1, loose_route() forces the send socket taken from the Route header.",
        );
        m.param(
            "ignore_sips",
            ParamType::Int,
            0_i64,
            "When 1, always uses \"sip:\" in Record-Route even if the R-URI is sips.",
        );
        m.param("sockname_mode", ParamType::Int, 0_i64, "When 1, adds the socket name as a Record-Route parameter and uses it in loose_route().");
        m.param(
            "loose_route_mode",
            ParamType::Int,
            0_i64,
            "Bit 1: loose_route() does not consider the R-URI a strict-router Route (skips it).",
        );
        m.function("loose_route")
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Routes by the Route header set; 1 if routed by Route headers, 2 if a preloaded local Route was removed, -1 if there was none (initial request), -2 on error.")
            .declared::<()>();
        m.function("loose_route_preloaded")
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Like loose_route() but true only for a preloaded route (initial request with a local Route); 1 true, -1 otherwise.")
            .declared::<()>();
        m.function("loose_route_mode")
            .args(&["vmode"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("loose_route() with a mode bit mask (1: skip strict-routing R-URI); same return codes.")
            .declared::<(i64,)>();
        m.function("record_route")
            .routes(RouteMask::BRANCH | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Adds a Record-Route header with the outgoing address; 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("record_route")
            .args(&["sparams"])
            .routes(RouteMask::BRANCH | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Adds a Record-Route header with extra URI parameters; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("record_route_preset")
            .args(&["address"])
            .routes(RouteMask::BRANCH | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Adds a Record-Route whose URI host part is the given string; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("record_route_preset")
            .args(&["address", "second_address"])
            .routes(RouteMask::BRANCH | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Adds two Record-Route headers with the given addresses (double RR); 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("record_route_advertised_address")
            .args(&["address"])
            .routes(RouteMask::BRANCH | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Adds Record-Route with the given address as if it were the advertised address; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("add_rr_param")
            .args(&["param"])
            .routes(RouteMask::BRANCH | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Appends a parameter to the Record-Route header this proxy adds; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("check_route_param")
            .args(&["re"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Matches the parameters of the Route header that pointed to this proxy against a regex; 1 on match, -1 otherwise.")
            .declared::<(Arc<Regex>,)>();
        m.function("is_direction")
            .args(&["dir"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Checks the in-dialog request direction (\"downstream\" or \"upstream\") with the ftag parameter; 1 on match, -1 otherwise.")
            .declared::<(Bytes,)>();
        m.function("remove_record_route")
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Removes the Record-Route headers this proxy added to the request; always 1.")
            .declared::<()>();
        m.function("rr_next_hop_route")
            .routes(RouteMask::ANY)
            .doc("True (1) when the message has a Route header for a next hop after this proxy; -1 otherwise.")
            .declared::<()>();
    }
}
