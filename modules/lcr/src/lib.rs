//! `lcr`: Least-cost routing: picks gateways by R-URI prefix, From URI and priority/weight rules from the database.

use bytes::Bytes;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask, Value};

/// The `lcr` module.
pub struct LcrModule;

impl Module for LcrModule {
    fn name(&self) -> &'static str {
        "lcr"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Least-cost routing: picks gateways by R-URI prefix, From URI and priority/weight rules from the database.");
        m.param(
            "db_url",
            ParamType::Str,
            "mysql://kamailioro:kamailioro@localhost/kamailio",
            "Database holding the LCR rules and gateways.",
        );
        m.param(
            "lcr_rule_table",
            ParamType::Str,
            "lcr_rule",
            "Table of routing rules.",
        );
        m.param(
            "lcr_rule_target_table",
            ParamType::Str,
            "lcr_rule_target",
            "Table linking rules to gateways.",
        );
        m.param(
            "lcr_gw_table",
            ParamType::Str,
            "lcr_gw",
            "Table of gateways.",
        );
        m.param(
            "lcr_id_column",
            ParamType::Str,
            "lcr_id",
            "Database column holding the LCR instance id.",
        );
        m.param(
            "id_column",
            ParamType::Str,
            "id",
            "Database column holding the row id.",
        );
        m.param(
            "prefix_column",
            ParamType::Str,
            "prefix",
            "Database column holding the R-URI user prefix of a rule.",
        );
        m.param(
            "from_uri_column",
            ParamType::Str,
            "from_uri",
            "Database column holding the From URI regex of a rule.",
        );
        m.param(
            "mt_tvalue_column",
            ParamType::Str,
            "mt_tvalue",
            "Database column holding the mtree value of a rule.",
        );
        m.param(
            "request_uri_column",
            ParamType::Str,
            "request_uri",
            "Database column holding the R-URI regex of a rule.",
        );
        m.param(
            "stopper_column",
            ParamType::Str,
            "stopper",
            "Database column holding the flag that stops matching of shorter prefixes.",
        );
        m.param(
            "enabled_column",
            ParamType::Str,
            "enabled",
            "Database column holding the enabled flag of a rule.",
        );
        m.param(
            "rule_id_column",
            ParamType::Str,
            "rule_id",
            "Database column holding the rule id in the target table.",
        );
        m.param(
            "priority_column",
            ParamType::Str,
            "priority",
            "Database column holding the priority of a rule target.",
        );
        m.param(
            "gw_id_column",
            ParamType::Str,
            "gw_id",
            "Database column holding the gateway id in the target table.",
        );
        m.param(
            "weight_column",
            ParamType::Str,
            "weight",
            "Database column holding the weight of a rule target.",
        );
        m.param(
            "gw_name_column",
            ParamType::Str,
            "gw_name",
            "Database column holding the gateway name.",
        );
        m.param(
            "ip_addr_column",
            ParamType::Str,
            "ip_addr",
            "Database column holding the gateway IP address.",
        );
        m.param(
            "port_column",
            ParamType::Str,
            "port",
            "Database column holding the gateway port.",
        );
        m.param(
            "uri_scheme_column",
            ParamType::Str,
            "uri_scheme",
            "Database column holding the gateway URI scheme.",
        );
        m.param(
            "transport_column",
            ParamType::Str,
            "transport",
            "Database column holding the gateway transport.",
        );
        m.param(
            "params_column",
            ParamType::Str,
            "params",
            "Database column holding the gateway URI parameters.",
        );
        m.param(
            "hostname_column",
            ParamType::Str,
            "hostname",
            "Database column holding the gateway hostname.",
        );
        m.param(
            "strip_column",
            ParamType::Str,
            "strip",
            "Database column holding the number of user digits to strip for a gateway.",
        );
        m.param(
            "tag_column",
            ParamType::Str,
            "tag",
            "Database column holding the gateway tag (prefix added to the user).",
        );
        m.param(
            "flags_column",
            ParamType::Str,
            "flags",
            "Database column holding the gateway flags.",
        );
        m.param(
            "defunct_column",
            ParamType::Str,
            "defunct",
            "Database column holding the time until which a gateway is defunct.",
        );
        m.param(
            "gw_uri_avp",
            ParamType::Str,
            Value::Null,
            "AVP storing the URIs of the matched gateways (required).",
        );
        m.param(
            "ruri_user_avp",
            ParamType::Str,
            Value::Null,
            "AVP storing the original R-URI user (required).",
        );
        m.param(
            "tag_avp",
            ParamType::Str,
            Value::Null,
            "AVP receiving the tag of the selected gateway.",
        );
        m.param(
            "flags_avp",
            ParamType::Str,
            Value::Null,
            "AVP receiving the flags of the selected gateway.",
        );
        m.param(
            "rule_id_avp",
            ParamType::Str,
            Value::Null,
            "AVP receiving the id of the matched rule.",
        );
        m.param(
            "defunct_capability",
            ParamType::Int,
            0_i64,
            "When 1, defunct_gw() is allowed.",
        );
        m.param(
            "defunct_gw_avp",
            ParamType::Str,
            Value::Null,
            "AVP storing the gateway that defunct_gw() may disable.",
        );
        m.param(
            "lcr_id_avp",
            ParamType::Str,
            Value::Null,
            "AVP storing the LCR instance of the current selection.",
        );
        m.param(
            "mt_pv_values",
            ParamType::Str,
            Value::Null,
            "Variable whose value is matched against the mtree of rules.",
        );
        m.param(
            "mtree",
            ParamType::Str,
            "lcr",
            "Name of the mtree used with mt_pv_values.",
        );
        m.param(
            "lcr_count",
            ParamType::Int,
            1_i64,
            "Number of LCR instances.",
        );
        m.param(
            "lcr_rule_hash_size",
            ParamType::Int,
            128_i64,
            "Size of the rule hash table.",
        );
        m.param(
            "lcr_gw_count",
            ParamType::Int,
            128_i64,
            "Maximum number of gateways per instance.",
        );
        m.param(
            "dont_strip_or_prefix_flag",
            ParamType::Int,
            -1_i64,
            "Message flag that disables stripping/tagging the user part (-1: none).",
        );
        m.param("priority_ordering", ParamType::Int, 0_i64, "How gateways are ordered: 0 by prefix length then priority, 1 by priority only, 2 by weight only.");
        m.param(
            "fetch_rows",
            ParamType::Int,
            1024_i64,
            "Rows fetched per database query.",
        );
        m.param(
            "ping_interval",
            ParamType::Int,
            0_i64,
            "Seconds between OPTIONS probes of inactive gateways (0: off).",
        );
        m.param(
            "ping_inactivate_threshold",
            ParamType::Int,
            1_i64,
            "Failed probes before a gateway is inactivated.",
        );
        m.param(
            "ping_valid_reply_codes",
            ParamType::Str,
            "",
            "Reply codes counted as a successful probe besides 2xx.",
        );
        m.param(
            "ping_from",
            ParamType::Str,
            "sip:pinger@localhost",
            "From URI of the probing requests.",
        );
        m.param(
            "ping_socket",
            ParamType::Str,
            "",
            "Local socket for probing requests.",
        );
        m.function("load_gws")
            .args(&["lcr_id"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Loads the gateways matching the R-URI user and From URI of instance lcr_id into gw_uri_avp; 1 when some were found, 2 when none, -1 on error.")
            .declared::<(i64,)>();
        m.function("load_gws")
            .args(&["lcr_id", "uri_user"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As load_gws() matching the given user instead of the R-URI user; 1 found, 2 none, -1 on error.")
            .declared::<(i64, Bytes)>();
        m.function("load_gws")
            .args(&["lcr_id", "uri_user", "from_uri"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As load_gws() with the user and From URI given; 1 found, 2 none, -1 on error.")
            .declared::<(i64, Bytes, Bytes)>();
        m.function("load_gws")
            .args(&["lcr_id", "uri_user", "from_uri", "request_uri"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As load_gws() with user, From URI and R-URI given; 1 found, 2 none, -1 on error.")
            .declared::<(i64, Bytes, Bytes, Bytes)>();
        m.function("next_gw")
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Rewrites the R-URI (or $du) with the next loaded gateway; 1 on success, -1 when none left.")
            .declared::<()>();
        m.function("defunct_gw")
            .args(&["period"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Marks the current gateway defunct for period seconds; 1 on success, -1 on failure.")
            .declared::<(i64,)>();
        m.function("inactivate_gw")
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Marks the current gateway inactive until it answers probes; 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("from_gw")
            .args(&["lcr_id"])
            .routes(RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("True (1) when the source address is a gateway of the instance; -1 otherwise.")
            .declared::<(i64,)>();
        m.function("from_gw")
            .args(&["lcr_id", "ip_addr", "proto"])
            .routes(RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("True (1) when the given address and protocol are a gateway of the instance; -1 otherwise.")
            .declared::<(i64, Bytes, i64)>();
        m.function("from_gw")
            .args(&["lcr_id", "ip_addr", "proto", "src_port"])
            .routes(RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As from_gw() with the port also compared; 1 on match, -1 otherwise.")
            .declared::<(i64, Bytes, i64, i64)>();
        m.function("from_any_gw")
            .routes(RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("True (the instance id) when the source address is a gateway of any instance; -1 otherwise.")
            .declared::<()>();
        m.function("from_any_gw")
            .args(&["ip_addr", "proto"])
            .routes(RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("True (the instance id) when the address is a gateway of any instance; -1 otherwise.")
            .declared::<(Bytes, i64)>();
        m.function("from_any_gw")
            .args(&["ip_addr", "proto", "src_port"])
            .routes(RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc(
                "As from_any_gw() with the port also compared; instance id on match, -1 otherwise.",
            )
            .declared::<(Bytes, i64, i64)>();
        m.function("to_gw")
            .args(&["lcr_id"])
            .routes(RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("True (1) when the R-URI host is a gateway of the instance; -1 otherwise.")
            .declared::<(i64,)>();
        m.function("to_gw")
            .args(&["lcr_id", "ip_addr", "proto"])
            .routes(RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("True (1) when the given address and protocol are a gateway of the instance; -1 otherwise.")
            .declared::<(i64, Bytes, i64)>();
        m.function("to_any_gw")
            .routes(RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("True (the instance id) when the R-URI host is a gateway of any instance; -1 otherwise.")
            .declared::<()>();
        m.function("to_any_gw")
            .args(&["ip_addr", "proto"])
            .routes(RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("True (the instance id) when the address is a gateway of any instance; -1 otherwise.")
            .declared::<(Bytes, i64)>();
    }
}
