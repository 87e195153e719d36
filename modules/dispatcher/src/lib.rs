//! `dispatcher`: Load balancing and failover over destination sets, with OPTIONS probing of destinations.

use bytes::Bytes;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask, Value};

/// The `dispatcher` module.
pub struct DispatcherModule;

impl Module for DispatcherModule {
    fn name(&self) -> &'static str {
        "dispatcher"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Load balancing and failover over destination sets, with OPTIONS probing of destinations.");
        m.param(
            "list_file",
            ParamType::Str,
            "/etc/kamailio/dispatcher.list",
            "File with the destination sets, used when db_url is not set.",
        );
        m.param(
            "db_url",
            ParamType::Str,
            Value::Null,
            "Database holding the destination sets (unset: use list_file).",
        );
        m.param(
            "table_name",
            ParamType::Str,
            "dispatcher",
            "Database table with the destinations.",
        );
        m.param(
            "force_dst",
            ParamType::Int,
            1_i64,
            "When 1, ds_select_dst() overwrites an already set destination URI.",
        );
        m.param("flags", ParamType::Int, 0_i64, "Bit mask: 1 hash on the From/To user only, 2 enable failover (store next destinations).");
        m.param(
            "use_default",
            ParamType::Int,
            0_i64,
            "When 1, the last destination of a set is a default used only when all others fail.",
        );
        m.param(
            "xavp_dst",
            ParamType::Str,
            "_dsdst_",
            "XAVP storing the selected destinations for failover.",
        );
        m.param(
            "xavp_dst_mode",
            ParamType::Int,
            0_i64,
            "Bit mask of fields left out of xavp_dst records.",
        );
        m.param(
            "xavp_ctx",
            ParamType::Str,
            "_dsctx_",
            "XAVP storing the selection context (e.g. count of destinations).",
        );
        m.param(
            "xavp_ctx_mode",
            ParamType::Int,
            0_i64,
            "Bit mask of fields left out of xavp_ctx.",
        );
        m.param(
            "hash_pvar",
            ParamType::Str,
            Value::Null,
            "Format hashed by algorithm 7 (e.g. \"$fU@$ci\").",
        );
        m.param(
            "setid_pvname",
            ParamType::Str,
            Value::Null,
            "Variable receiving the set id matched by ds_is_from_list().",
        );
        m.param(
            "attrs_pvname",
            ParamType::Str,
            Value::Null,
            "Variable receiving the attributes of the destination matched by ds_is_from_list().",
        );
        m.param(
            "ds_probing_threshold",
            ParamType::Int,
            1_i64,
            "Failed probes before a destination is marked inactive.",
        );
        m.param(
            "ds_inactive_threshold",
            ParamType::Int,
            1_i64,
            "Successful probes before an inactive destination is marked active again.",
        );
        m.param(
            "ds_ping_method",
            ParamType::Str,
            "OPTIONS",
            "Method of the probing requests.",
        );
        m.param(
            "ds_ping_from",
            ParamType::Str,
            "sip:dispatcher@localhost",
            "From URI of the probing requests.",
        );
        m.param(
            "ds_ping_interval",
            ParamType::Int,
            0_i64,
            "Seconds between probes (0: probing off).",
        );
        m.param(
            "ds_ping_fr_timer",
            ParamType::Int,
            0_i64,
            "Final-response timeout in ms for probes (0: tm's default).",
        );
        m.param(
            "ds_ping_latency_stats",
            ParamType::Int,
            0_i64,
            "When 1, keeps latency statistics from probe replies.",
        );
        m.param(
            "ds_retain_latency_stats",
            ParamType::Int,
            0_i64,
            "When 1, latency statistics survive a reload.",
        );
        m.param(
            "ds_latency_estimator_alpha",
            ParamType::Int,
            100_i64,
            "Weight (per mille) of a new sample in the latency moving average.",
        );
        m.param(
            "ds_ping_reply_codes",
            ParamType::Str,
            Value::Null,
            "Reply codes that count as a successful probe besides 200 (\"code=404;class=3\").",
        );
        m.param("ds_probing_mode", ParamType::Int, 0_i64, "Which destinations are probed: 0 only those flagged for probing, 1 all, 2 only inactive, 3 only those flagged, active or not.");
        m.param(
            "ds_hash_size",
            ParamType::Int,
            0_i64,
            "Power of two of the call-load table size used by algorithm 10 (0: disabled).",
        );
        m.param(
            "ds_hash_expire",
            ParamType::Int,
            7200_i64,
            "Seconds an established call is kept in the call-load table.",
        );
        m.param(
            "ds_hash_initexpire",
            ParamType::Int,
            7200_i64,
            "Seconds an unconfirmed call is kept in the call-load table.",
        );
        m.param(
            "ds_hash_check_interval",
            ParamType::Int,
            30_i64,
            "Seconds between expiry checks of the call-load table.",
        );
        m.param(
            "outbound_proxy",
            ParamType::Str,
            Value::Null,
            "Outbound proxy for probing requests.",
        );
        m.param(
            "ds_default_socket",
            ParamType::Str,
            Value::Null,
            "Local socket used for probing and for destinations without one.",
        );
        m.param(
            "ds_default_sockname",
            ParamType::Str,
            Value::Null,
            "Local socket name used like ds_default_socket.",
        );
        m.param(
            "ds_ping_socket",
            ParamType::Str,
            Value::Null,
            "Local socket used for probing requests.",
        );
        m.param(
            "ds_timer_mode",
            ParamType::Int,
            0_i64,
            "Which timer runs the probing: 0 main timer, 1 secondary timer.",
        );
        m.param(
            "event_callback",
            ParamType::Str,
            Value::Null,
            "KEMI function run instead of the dispatcher event routes.",
        );
        m.param(
            "event_callback_mode",
            ParamType::Int,
            0_i64,
            "Bit mask selecting when event_callback runs.",
        );
        m.param(
            "ds_attrs_none",
            ParamType::Int,
            0_i64,
            "When 1, destinations without attributes get \"none=yes\".",
        );
        m.param(
            "ds_db_extra_attrs",
            ParamType::Str,
            Value::Null,
            "Extra database columns added to the attributes (\"name=column;...\").",
        );
        m.param(
            "ds_load_mode",
            ParamType::Int,
            0_i64,
            "When 1, a reload keeps the state of destinations that are still present.",
        );
        m.param(
            "reload_delta",
            ParamType::Int,
            0_i64,
            "Minimum seconds between two reloads (0: no limit).",
        );
        m.param(
            "ds_dns_mode",
            ParamType::Int,
            1_i64,
            "When destination hostnames are resolved: 1 at load, 2 always, 4 by timer, 8 none.",
        );
        m.param(
            "ds_dns_interval",
            ParamType::Int,
            600_i64,
            "Seconds between DNS re-resolutions in timer mode.",
        );
        m.param(
            "ds_dns_ttl",
            ParamType::Int,
            0_i64,
            "Override of DNS TTL in seconds (0: use the record's TTL).",
        );
        m.param(
            "ds_dns_match_all",
            ParamType::Int,
            0_i64,
            "When 1, ds_is_from_list() matches any address a destination hostname resolves to.",
        );
        m.function("ds_select")
            .args(&["set", "alg"])
            .routes(RouteMask::ANY)
            .doc("Selects destinations of a set with an algorithm into the failover XAVP without touching R-URI/$du; 1 on success, -1 when none available.")
            .declared::<(i64, i64)>();
        m.function("ds_select")
            .args(&["set", "alg", "limit"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As ds_select() keeping at most limit destinations; 1 on success, -1 when none available.")
            .declared::<(i64, i64, i64)>();
        m.function("ds_select_dst")
            .args(&["set", "alg"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Selects a destination of the set with the algorithm and sets $du; 1 on success, -1 when none available.")
            .declared::<(i64, i64)>();
        m.function("ds_select_dst")
            .args(&["set", "alg", "limit"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As ds_select_dst() keeping at most limit destinations for failover; 1 on success, -1 when none available.")
            .declared::<(i64, i64, i64)>();
        m.function("ds_select_domain")
            .args(&["set", "alg"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Selects a destination and writes its host:port into the R-URI; 1 on success, -1 when none available.")
            .declared::<(i64, i64)>();
        m.function("ds_select_domain")
            .args(&["set", "alg", "limit"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As ds_select_domain() keeping at most limit destinations; 1 on success, -1 when none available.")
            .declared::<(i64, i64, i64)>();
        m.function("ds_select_routes")
            .args(&["rules", "mode"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Selects over several \"set=alg\" rules at once; mode \"0\" $du, \"1\" R-URI, \"2\" none; 1 on success, -1 when none available.")
            .declared::<(Bytes, Bytes)>();
        m.function("ds_select_routes")
            .args(&["rules", "mode", "limit"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As ds_select_routes() keeping at most limit destinations; 1 on success, -1 when none available.")
            .declared::<(Bytes, Bytes, i64)>();
        m.function("ds_next_dst")
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sets $du to the next failover destination; 1 on success, -1 when none left.")
            .declared::<()>();
        m.function("ds_next_domain")
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sets the R-URI host to the next failover destination; 1 on success, -1 when none left.")
            .declared::<()>();
        m.function("ds_set_dst")
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sets $du to the current failover destination; 1 on success, -1 when none.")
            .declared::<()>();
        m.function("ds_set_domain")
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sets the R-URI host to the current failover destination; 1 on success, -1 when none.")
            .declared::<()>();
        m.function("ds_mark_dst")
            .routes(RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Marks the last used destination inactive; 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("ds_mark_dst")
            .args(&["state"])
            .routes(RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sets the state of the last used destination (\"a\" active, \"i\" inactive, \"d\" disabled, \"t\" trying, \"p\" probing); 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("ds_mark_addr")
            .args(&["state", "setid", "uri"])
            .routes(RouteMask::ANY)
            .doc("Sets the state of a destination given by set and URI; 1 on success, -1 on failure.")
            .declared::<(Bytes, i64, Bytes)>();
        m.function("ds_is_from_list")
            .routes(
                RouteMask::FAILURE
                    | RouteMask::ONREPLY
                    | RouteMask::BRANCH
                    | RouteMask::REQUEST
                    | RouteMask::EVENT,
            )
            .doc("True (1) when the source address matches a destination of any set; -1 otherwise.")
            .declared::<()>();
        m.function("ds_is_from_list")
            .args(&["groupid"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the source address matches a destination of the set (-1: any set); -1 otherwise.")
            .declared::<(i64,)>();
        m.function("ds_is_from_list")
            .args(&["groupid", "mode"])
            .routes(RouteMask::ANY)
            .doc("As ds_is_from_list(set) with a mode bit mask (1 ignore port, 2 ignore protocol, 4 stop at first match); 1 on match, -1 otherwise.")
            .declared::<(i64, i64)>();
        m.function("ds_is_from_list")
            .args(&["groupid", "mode", "uri"])
            .routes(RouteMask::ANY)
            .doc("Checks an address given as a SIP URI instead of the source address; 1 on match, -1 otherwise.")
            .declared::<(i64, i64, Bytes)>();
        m.function("ds_list_exist")
            .args(&["groupid"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the destination set exists; -1 otherwise.")
            .declared::<(i64,)>();
        m.function("ds_list_exists")
            .args(&["groupid"])
            .routes(RouteMask::ANY)
            .doc("Alias of ds_list_exist(); 1 when the set exists, -1 otherwise.")
            .declared::<(i64,)>();
        m.function("ds_load_unset")
            .routes(RouteMask::ANY)
            .doc("Removes the current call from the call-load table (algorithm 10); 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("ds_load_update")
            .routes(RouteMask::ANY)
            .doc("Updates the call-load table from the reply to an INVITE (algorithm 10); 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("ds_is_active")
            .args(&["groupid"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the set has at least one active destination; -1 otherwise.")
            .declared::<(i64,)>();
        m.function("ds_is_active")
            .args(&["groupid", "uri"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the destination URI of the set is active; -1 otherwise.")
            .declared::<(i64, Bytes)>();
        m.function("ds_reload")
            .routes(RouteMask::ANY)
            .doc("Reloads the destination sets from file or database; 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("ds_oc_set_attrs")
            .args(&["setid", "uri", "rval", "tval", "sval"])
            .routes(RouteMask::ANY)
            .doc("Sets overload-control attributes (rate, validity, sequence) of a destination; 1 on success, -1 on failure.")
            .declared::<(i64, Bytes, i64, i64, i64)>();
        m.function("ds_dsg_fetch")
            .args(&["setid"])
            .routes(RouteMask::ANY)
            .doc("Fills the $dsg() variable with the state of a set; 1 on success, -1 on failure.")
            .declared::<(i64,)>();
        m.function("ds_dsg_fetch_uri")
            .args(&["setid", "uri"])
            .routes(RouteMask::ANY)
            .doc("Fills $dsg() with the state of one destination of a set; 1 on success, -1 on failure.")
            .declared::<(i64, Bytes)>();
    }
}
