//! `permissions`: Access control: routing/registration rules from files, trusted peers and address groups from the database.

use bytes::Bytes;
use ferrosip_api::registry::FnRow;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask, Value};

/// The `permissions` module.
pub struct PermissionsModule;

impl Module for PermissionsModule {
    fn name(&self) -> &'static str {
        "permissions"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Access control: routing/registration rules from files, trusted peers and address groups from the database.");
        m.param(
            "default_allow_file",
            ParamType::Str,
            "permissions.allow",
            "Rules file of allowed From/R-URI pairs for allow_routing().",
        );
        m.param(
            "default_deny_file",
            ParamType::Str,
            "permissions.deny",
            "Rules file of denied From/R-URI pairs for allow_routing().",
        );
        m.param(
            "check_all_branches",
            ParamType::Int,
            1_i64,
            "When 1, allow_routing() checks every branch URI, not only the R-URI.",
        );
        m.param(
            "allow_suffix",
            ParamType::Str,
            ".allow",
            "Suffix appended to a basename to form the allow file.",
        );
        m.param(
            "deny_suffix",
            ParamType::Str,
            ".deny",
            "Suffix appended to a basename to form the deny file.",
        );
        m.param(
            "db_url",
            ParamType::Str,
            Value::Null,
            "Database holding the trusted and address tables.",
        );
        m.param(
            "db_mode",
            ParamType::Int,
            0_i64,
            "0 queries the database each time, 1 caches the tables in memory.",
        );
        m.param(
            "trusted_table",
            ParamType::Str,
            "trusted",
            "Table of trusted peers for allow_trusted().",
        );
        m.param(
            "peer_tag_avp",
            ParamType::Str,
            Value::Null,
            "AVP receiving the tag of a matched trusted peer or address.",
        );
        m.param(
            "peer_tag_mode",
            ParamType::Int,
            0_i64,
            "When 1, tags of all matching trusted entries are added, not only the first.",
        );
        m.param(
            "address_table",
            ParamType::Str,
            "address",
            "Table of address groups for allow_address()/allow_source_address().",
        );
        m.param(
            "address_file",
            ParamType::Str,
            Value::Null,
            "File with address groups used instead of address_table.",
        );
        m.param(
            "max_subnets",
            ParamType::Int,
            512_i64,
            "Maximum number of subnets in the address cache.",
        );
        m.param(
            "subnet_match_mode",
            ParamType::Int,
            0_i64,
            "When 1, the most specific matching subnet wins.",
        );
        m.param(
            "load_backends",
            ParamType::Int,
            65535_i64,
            "Bit mask of the backends loaded at startup (1 address, 2 trusted, ...).",
        );
        m.param(
            "reload_delta",
            ParamType::Int,
            5_i64,
            "Minimum seconds between two RPC reloads.",
        );
        m.param(
            "trusted_cleanup_interval",
            ParamType::Int,
            60_i64,
            "Seconds between cleanups of the old trusted table after a reload.",
        );
        const REQ_FAIL_EVENT: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::EVENT);
        const ALLOW_FILE_DENY_FILE: &[&str] = &["allow_file", "deny_file"];
        #[rustfmt::skip]
        m.functions([
            FnRow::declared::<()>("allow_routing", &[], RouteMask::ANY, "Checks the From and R-URI against the default allow/deny files; 1 allowed, -1 denied."),
            FnRow::declared::<(Bytes,)>("allow_routing", &["basename"], RouteMask::ANY, "Checks against basename.allow/basename.deny; 1 allowed, -1 denied."),
            FnRow::declared::<(Bytes, Bytes)>("allow_routing", ALLOW_FILE_DENY_FILE, RouteMask::ANY, "Checks against the given allow and deny files; 1 allowed, -1 denied."),
            FnRow::declared::<(Bytes,)>("allow_register", &["basename"], REQ_FAIL_EVENT, "Checks the To URI and Contacts of a REGISTER against basename.allow/.deny; 1 allowed, -1 denied."),
            FnRow::declared::<(Bytes, Bytes)>("allow_register", ALLOW_FILE_DENY_FILE, REQ_FAIL_EVENT, "Checks a REGISTER against the given allow and deny files; 1 allowed, -1 denied."),
            FnRow::declared::<(Bytes,)>("allow_register_include_port", &["basename"], REQ_FAIL_EVENT, "As allow_register() with the contact port included; 1 allowed, -1 denied."),
            FnRow::declared::<(Bytes, Bytes)>("allow_register_include_port", ALLOW_FILE_DENY_FILE, REQ_FAIL_EVENT, "As allow_register() with the contact port included; 1 allowed, -1 denied."),
            FnRow::declared::<()>("allow_trusted", &[], RouteMask::ANY, "True (1) when the source address and protocol match the trusted table; -1 otherwise."),
            FnRow::declared::<(Bytes, Bytes)>("allow_trusted", &["src_ip_pvar", "proto_pvar"], RouteMask::ANY, "True (1) when the given address and protocol match the trusted table; -1 otherwise."),
            FnRow::declared::<(Bytes, Bytes, Bytes)>("allow_trusted", &["src_ip_pvar", "proto_pvar", "furi_pvar"], RouteMask::ANY, "As allow_trusted() with the From URI pattern matched against the given URI; 1 on match, -1 otherwise."),
            FnRow::declared::<(Bytes, Bytes)>("allow_uri", &["basename", "pvar"], REQ_FAIL_EVENT, "Checks the From URI and the URI in the variable against basename.allow/.deny; 1 allowed, -1 denied."),
            FnRow::declared::<(i64, Bytes, i64)>("allow_address", &["group_id", "ip_addr_pvar", "port_pvar"], RouteMask::ANY, "True (1) when the address and port belong to the address group; -1 otherwise."),
            FnRow::declared::<()>("allow_source_address", &[], RouteMask::ANY, "True (1) when the source address and port belong to address group 1; -1 otherwise."),
            FnRow::declared::<(i64,)>("allow_source_address", &["group_id"], RouteMask::ANY, "True (1) when the source address and port belong to the group; -1 otherwise."),
            FnRow::declared::<()>("allow_source_address_group", &[], RouteMask::ANY, "Returns the group id that the source address belongs to (true), -1 when none."),
            FnRow::declared::<(Bytes, i64)>("allow_address_group", &["addr", "port"], RouteMask::ANY, "Returns the group id the address and port belong to (true), -1 when none."),
        ]);
    }
}
