//! `nathelper`: NAT traversal helpers: NAT detection, Contact/SDP fixing, contact aliases and keepalive pings.

use bytes::Bytes;
use ferrosip_api::args::PvOut;
use ferrosip_api::registry::FnRow;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask, Value};

/// The `nathelper` module.
pub struct NathelperModule;

impl Module for NathelperModule {
    fn name(&self) -> &'static str {
        "nathelper"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("NAT traversal helpers: NAT detection, Contact/SDP fixing, contact aliases and keepalive pings.");
        m.param(
            "natping_interval",
            ParamType::Int,
            0_i64,
            "Seconds between keepalive pings to registered NAT-ed contacts (0: off).",
        );
        m.param(
            "ping_nated_only",
            ParamType::Int,
            0_i64,
            "When 1, only contacts flagged as behind NAT are pinged.",
        );
        m.param(
            "nortpproxy_str",
            ParamType::Str,
            "a=nortpproxy:yes\r\n",
            "SDP line marking that no RTP relay is needed.",
        );
        m.param(
            "received_avp",
            ParamType::Str,
            Value::Null,
            "AVP receiving the source URI for the registrar (set by fix_nated_register()).",
        );
        m.param(
            "force_socket",
            ParamType::Str,
            Value::Null,
            "Local socket used for sending pings.",
        );
        m.param(
            "sipping_from",
            ParamType::Str,
            Value::Null,
            "From URI of SIP OPTIONS pings (unset: UDP keepalive packets instead of SIP).",
        );
        m.param(
            "sipping_method",
            ParamType::Str,
            "OPTIONS",
            "Method of SIP pings.",
        );
        m.param(
            "sipping_bflag",
            ParamType::Int,
            -1_i64,
            "Branch flag marking contacts that get SIP pings (-1: none).",
        );
        m.param(
            "natping_disable_bflag",
            ParamType::Int,
            -1_i64,
            "Branch flag marking contacts that get no pings (-1: none).",
        );
        m.param(
            "natping_processes",
            ParamType::Int,
            1_i64,
            "Number of processes sending pings.",
        );
        m.param(
            "natping_socket",
            ParamType::Str,
            Value::Null,
            "Socket(s) from which pings are sent.",
        );
        m.param(
            "keepalive_timeout",
            ParamType::Int,
            0_i64,
            "Seconds without a ping reply after which a contact is removed (0: never).",
        );
        m.param(
            "udpping_from_path",
            ParamType::Int,
            0_i64,
            "When 1, UDP pings are sent from the address in the Path header.",
        );
        m.param(
            "ignore_path",
            ParamType::Int,
            0_i64,
            "When 1, pings ignore the Path header.",
        );
        m.param(
            "append_sdp_oldmediaip",
            ParamType::Int,
            1_i64,
            "When 1, fix_nated_sdp() adds an a=oldmediaip line.",
        );
        m.param(
            "filter_server_id",
            ParamType::Int,
            0_i64,
            "When 1, only contacts with this server's server_id are pinged.",
        );
        m.param(
            "nat_addr_mode",
            ParamType::Int,
            1_i64,
            "Which addresses count as private: 1 also the RFC 6598 shared range, 0 only RFC 1918.",
        );
        m.param(
            "alias_name",
            ParamType::Str,
            "alias",
            "Name of the contact URI parameter used by the *_contact_alias functions.",
        );
        const REQ_BRANCH_REPLY_EVENT_LOCAL: RouteMask = RouteMask::REQUEST
            .union(RouteMask::BRANCH)
            .union(RouteMask::ONREPLY)
            .union(RouteMask::EVENT)
            .union(RouteMask::LOCAL);
        const REQ_FAIL_BRANCH_REPLY_EVENT: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::BRANCH)
            .union(RouteMask::ONREPLY)
            .union(RouteMask::EVENT);
        const REQ_BRANCH_EVENT_LOCAL: RouteMask = RouteMask::REQUEST
            .union(RouteMask::BRANCH)
            .union(RouteMask::EVENT)
            .union(RouteMask::LOCAL);
        const REQ_FAIL_BRANCH_REPLY_EVENT_LOCAL: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::BRANCH)
            .union(RouteMask::ONREPLY)
            .union(RouteMask::EVENT)
            .union(RouteMask::LOCAL);
        const REQ_EVENT: RouteMask = RouteMask::REQUEST.union(RouteMask::EVENT);
        #[rustfmt::skip]
        m.functions([
            FnRow::declared::<()>("fix_nated_contact", &[], REQ_BRANCH_REPLY_EVENT_LOCAL, "Rewrites the Contact host:port with the source address; 1 on success, -1 on failure."),
            FnRow::declared::<()>("add_contact_alias", &[], REQ_BRANCH_REPLY_EVENT_LOCAL, "Adds an alias parameter with the source address to the Contact URI when it differs; 1 on success (or nothing to do), -1 on failure."),
            FnRow::declared::<(Bytes, Bytes, Bytes)>("add_contact_alias", &["ip_addr", "port", "proto"], REQ_FAIL_BRANCH_REPLY_EVENT, "Adds an alias parameter with the given address to the Contact URI; 1 on success, -1 on failure."),
            FnRow::declared::<()>("set_contact_alias", &[], REQ_BRANCH_REPLY_EVENT_LOCAL, "Like add_contact_alias() but changes the Contact in place so later modules see it; 1 on success, -1 on failure."),
            FnRow::declared::<(i64,)>("set_contact_alias", &["trim"], REQ_BRANCH_REPLY_EVENT_LOCAL, "As set_contact_alias(); with 1 an existing alias parameter is removed first; 1 on success, -1 on failure."),
            FnRow::declared::<()>("handle_ruri_alias", &[], REQ_BRANCH_EVENT_LOCAL, "Moves the alias parameter of the R-URI into $du and removes it; 1 on success or no alias, -1 on failure."),
            FnRow::declared::<(i64,)>("handle_ruri_alias", &["mode"], REQ_BRANCH_EVENT_LOCAL, "As handle_ruri_alias(); mode 1 keeps the parameter in the R-URI; 1 on success, -1 on failure."),
            FnRow::declared::<(i64,)>("fix_nated_sdp", &["flags"], REQ_FAIL_BRANCH_REPLY_EVENT_LOCAL, "Rewrites SDP addresses with the source address (1 c= line, 2 a=direction, 4 o= line, 8 all c= lines); 1 on success, -1 on failure."),
            FnRow::declared::<(i64, Bytes)>("fix_nated_sdp", &["flags", "ip_address"], REQ_FAIL_BRANCH_REPLY_EVENT_LOCAL, "As fix_nated_sdp() with the given address; 1 on success, -1 on failure."),
            FnRow::declared::<(i64,)>("nat_uac_test", &["flags"], REQ_FAIL_BRANCH_REPLY_EVENT_LOCAL, "Tests for NAT with the bit mask of checks (1 private Contact, 2 Via received differs, 4 private top Via, 8 private SDP, 16 source port differs from Via, 32 private source, 64 WebSocket, 128 Contact port differs, 256 private SDP o=); 1 when a test hit, -1 otherwise."),
            FnRow::declared::<()>("fix_nated_register", &[], REQ_EVENT, "Stores the source URI in received_avp for the registrar; 1 on success, -1 on failure."),
            FnRow::declared::<()>("add_rcv_param", &[], REQ_EVENT, "Adds a received parameter with the source URI to the Contact header field; 1 on success, -1 on failure."),
            FnRow::declared::<(i64,)>("add_rcv_param", &["flag"], REQ_EVENT, "As add_rcv_param(); with 1 the parameter goes into the Contact URI; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("is_rfc1918", &["ip_address"], RouteMask::ANY, "True (1) when the address is private (RFC 1918 or shared range per nat_addr_mode); -1 otherwise."),
            FnRow::declared::<(PvOut,)>("set_alias_to_pv", &["target_avp"], RouteMask::ANY, "Stores the URI built from the alias parameter of the Contact in a variable; 1 on success, -1 on failure."),
        ]);
    }
}
