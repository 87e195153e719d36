//! `registrar`: SIP registrar: processes REGISTER (save) and routes to registered contacts (lookup).

use bytes::Bytes;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask, Value};

/// The `registrar` module.
pub struct RegistrarModule;

impl Module for RegistrarModule {
    fn name(&self) -> &'static str {
        "registrar"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc(
            "SIP registrar: processes REGISTER (save) and routes to registered contacts (lookup).",
        );
        m.param(
            "default_expires",
            ParamType::Int,
            3600_i64,
            "Expires used when the REGISTER carries none.",
        );
        m.param(
            "default_expires_range",
            ParamType::Int,
            0_i64,
            "Percentage by which default_expires is randomly lowered.",
        );
        m.param(
            "expires_range",
            ParamType::Int,
            0_i64,
            "Percentage by which the requested expires is randomly lowered.",
        );
        m.param(
            "default_q",
            ParamType::Int,
            0_i64,
            "q value (in thousandths, -1 none) given to contacts without one.",
        );
        m.param(
            "append_branches",
            ParamType::Int,
            1_i64,
            "When 1, lookup() adds every contact as a branch (parallel forking).",
        );
        m.param(
            "case_sensitive",
            ParamType::Int,
            0_i64,
            "When 1, address-of-record comparison is case-sensitive.",
        );
        m.param(
            "realm_prefix",
            ParamType::Str,
            Value::Null,
            "Prefix stripped from the domain of the address of record.",
        );
        m.param("min_expires", ParamType::Int, 60_i64, "Minimum accepted expires; lower requests are raised or refused (see min_expires_mode).");
        m.param(
            "max_expires",
            ParamType::Int,
            0_i64,
            "Maximum expires (0: no limit).",
        );
        m.param(
            "received_param",
            ParamType::Str,
            "received",
            "Contact parameter name used to return the received address.",
        );
        m.param("received_avp", ParamType::Str, Value::Null, "AVP holding the received address to store with the contact (set by fix_nated_register()).");
        m.param(
            "max_contacts",
            ParamType::Int,
            0_i64,
            "Maximum contacts per address of record (0: no limit).",
        );
        m.param(
            "retry_after",
            ParamType::Int,
            0_i64,
            "Retry-After value added to 503 replies (0: none).",
        );
        m.param("sock_mode", ParamType::Int, 0_i64, "Which socket is stored: 0 the receiving one, 1 from the header named by sock_hdr_name.");
        m.param(
            "sock_flag",
            ParamType::Int,
            -1_i64,
            "Message flag that makes save() take the socket from sock_hdr_name (-1: none).",
        );
        m.param(
            "sock_hdr_name",
            ParamType::Str,
            Value::Null,
            "Header carrying the socket to store.",
        );
        m.param(
            "method_filtering",
            ParamType::Int,
            0_i64,
            "When 1, lookup() only uses contacts that advertise the request method.",
        );
        m.param(
            "use_path",
            ParamType::Int,
            0_i64,
            "When 1, Path headers are stored and used as Route set on lookup().",
        );
        m.param("path_mode", ParamType::Int, 2_i64, "Path handling: 0 store without checks, 1 reply with Path only if supported, 2 reject if path not supported.");
        m.param(
            "path_use_received",
            ParamType::Int,
            0_i64,
            "When 1, the received parameter of the Path URI is used as destination.",
        );
        m.param(
            "path_check_local",
            ParamType::Int,
            0_i64,
            "When 1, a first Path hop pointing to this server is skipped.",
        );
        m.param(
            "xavp_cfg",
            ParamType::Str,
            Value::Null,
            "XAVP with per-request registrar settings (max_contacts, ...).",
        );
        m.param(
            "xavp_rcd",
            ParamType::Str,
            Value::Null,
            "XAVP receiving the details of the saved or looked-up contact.",
        );
        m.param(
            "xavp_rcd_mask",
            ParamType::Int,
            0_i64,
            "Bit mask of fields left out of xavp_rcd.",
        );
        m.param(
            "gruu_enabled",
            ParamType::Int,
            1_i64,
            "When 1, GRUUs (RFC 5627) are supported.",
        );
        m.param(
            "outbound_mode",
            ParamType::Int,
            0_i64,
            "RFC 5626 outbound: 0 no support, 1 supported, 2 required.",
        );
        m.param(
            "regid_mode",
            ParamType::Int,
            0_i64,
            "When 1, reg-id is used for matching even without outbound.",
        );
        m.param(
            "flow_timer",
            ParamType::Int,
            0_i64,
            "Flow-Timer value returned for outbound registrations (0: none).",
        );
        m.param(
            "contact_max_size",
            ParamType::Int,
            512_i64,
            "Maximum length of a contact URI.",
        );
        m.param(
            "event_callback",
            ParamType::Str,
            Value::Null,
            "KEMI function run instead of event_route[usrloc:contact-expired].",
        );
        m.param(
            "lookup_filter_mode",
            ParamType::Int,
            0_i64,
            "Bit mask of extra filters applied by lookup().",
        );
        m.param(
            "min_expires_mode",
            ParamType::Int,
            0_i64,
            "When 1, a too short expires is refused with 423 instead of raised.",
        );
        m.param(
            "use_expired_contacts",
            ParamType::Int,
            0_i64,
            "When 1, lookup() may use contacts that expired but are not removed yet.",
        );
        m.function("save")
            .args(&["domain"])
            .routes(RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Stores the contacts of a REGISTER into the location table and replies; 1 on success, -1 on failure (reply sent), -2 on internal error.")
            .declared::<(Bytes,)>();
        m.function("save")
            .args(&["domain", "flags"])
            .routes(RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As save() with flags (0x01 no reply, 0x02 memory only, 0x04 single contact, 0x08 no expiry...); 1 on success, negative on failure.")
            .declared::<(Bytes, i64)>();
        m.function("save")
            .args(&["domain", "flags", "uri"])
            .routes(RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As save() for the given address of record instead of the To URI; 1 on success, negative on failure.")
            .declared::<(Bytes, i64, Bytes)>();
        m.function("lookup")
            .args(&["domain"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Rewrites the R-URI with the registered contacts; 1 found, -1 no contact (404), -2 contacts exist but none supports the method, -3 internal error.")
            .declared::<(Bytes,)>();
        m.function("lookup")
            .args(&["domain", "uri"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As lookup() for the given address of record; 1 found, -1 none, -2 method not supported, -3 error.")
            .declared::<(Bytes, Bytes)>();
        m.function("lookup_to_dset")
            .args(&["domain"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Adds the registered contacts to the destination set without touching the R-URI; 1 found, negative otherwise.")
            .declared::<(Bytes,)>();
        m.function("lookup_to_dset")
            .args(&["domain", "uri"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc(
                "As lookup_to_dset() for the given address of record; 1 found, negative otherwise.",
            )
            .declared::<(Bytes, Bytes)>();
        m.function("lookup_branches")
            .args(&["domain"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Runs lookup() for the R-URI and every branch URI; 1 when something was found, negative otherwise.")
            .declared::<(Bytes,)>();
        m.function("registered")
            .args(&["domain"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the R-URI address of record has a contact; -1 otherwise.")
            .declared::<(Bytes,)>();
        m.function("registered")
            .args(&["domain", "uri"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the given address of record has a contact; -1 otherwise.")
            .declared::<(Bytes, Bytes)>();
        m.function("registered")
            .args(&["domain", "uri", "match_option"])
            .routes(RouteMask::ANY)
            .doc("As registered() also matching Call-ID (1), ruid (2) or received (4) from $ulc; 1 found, -1 otherwise.")
            .declared::<(Bytes, Bytes, i64)>();
        m.function("registered")
            .args(&["domain", "uri", "match_option", "match_action"])
            .routes(RouteMask::ANY)
            .doc("As registered() with an action on match (1: set bflags); 1 found, -1 otherwise.")
            .declared::<(Bytes, Bytes, i64, i64)>();
        m.function("add_sock_hdr")
            .args(&["hdr_name"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Adds a header with the receiving socket so a next hop registrar can store it; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("unregister")
            .args(&["domain", "uri"])
            .routes(RouteMask::ANY)
            .doc("Removes every contact of the address of record; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("unregister")
            .args(&["domain", "uri", "ruid"])
            .routes(RouteMask::ANY)
            .doc("Removes the contact with this ruid; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes, Bytes)>();
        m.function("reg_fetch_contacts")
            .args(&["domain", "uri", "profile"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Loads the contacts of the address of record into $ulc(profile); 1 found, -1 none or error.")
            .declared::<(Bytes, Bytes, Bytes)>();
        m.function("reg_free_contacts")
            .args(&["profile"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Frees the contacts loaded into $ulc(profile); always 1.")
            .declared::<(Bytes,)>();
        m.function("lookup_xavp")
            .args(&["ultable", "uri", "rxname", "cxname"])
            .routes(RouteMask::ANY)
            .doc("Stores the contacts of the address of record as XAVPs; 1 found, negative otherwise.")
            .declared::<(Bytes, Bytes, Bytes, Bytes)>();
        m.function("reg_from_user")
            .args(&["ultable", "uri", "mode"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the source address matches a contact of the address of record (mode bit 1 also compares port); -1 otherwise.")
            .declared::<(Bytes, Bytes, i64)>();
        m.function("reg_send_reply")
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sends the reply prepared by save() with flag 0x01 (no reply); 1 on success, -1 on failure.")
            .declared::<()>();
    }
}
