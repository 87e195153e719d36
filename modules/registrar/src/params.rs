//! Parameters of `registrar`, in Kamailio's names; the ones Ferrosip does not use say so.

use ferrosip_api::{ModuleBuilder, ParamType, Value};

pub(crate) fn declare(m: &mut ModuleBuilder<'_>) {
    m.param(
            "default_expires",
            ParamType::Int,
            3600_i64,
            "Seconds granted to a contact when neither its expires parameter nor an Expires header gives any.",
        );
    m.param(
            "default_expires_range",
            ParamType::Int,
            0_i64,
            "Up to this percentage is randomly taken off default_expires (spreads refreshes); save() flag 0x08 turns it off.",
        );
    m.param(
            "expires_range",
            ParamType::Int,
            0_i64,
            "Up to this percentage is randomly taken off the expires a contact asks for; save() flag 0x08 turns it off.",
        );
    m.param(
            "default_q",
            ParamType::Int,
            -1_i64,
            "q (in thousandths, 0..1000) given to contacts without one; -1 none (then the reply shows no q and such contacts sort last).",
        );
    m.param(
            "append_branches",
            ParamType::Int,
            1_i64,
            "When 1, lookup() adds the contacts after the best one as branches, so t_relay() forks to all of them in parallel.",
        );
    m.param(
            "case_sensitive",
            ParamType::Int,
            0_i64,
            "When 1, addresses of record are stored and compared case-sensitively; when 0 they are lower-cased.",
        );
    m.param(
            "realm_prefix",
            ParamType::Str,
            Value::Null,
            "Prefix taken off the domain of the address of record (\"sip.\" makes sip.example.com the same as example.com; with usrloc use_domain).",
        );
    m.param("min_expires", ParamType::Int, 60_i64, "Shortest expires granted; shorter requests are raised to it, or refused with 423 when min_expires_mode is 1 (0: no minimum).");
    m.param(
        "max_expires",
        ParamType::Int,
        0_i64,
        "Longer expires are lowered to this (0: no limit).",
    );
    m.param(
        "received_param",
        ParamType::Str,
        "received",
        "Contact parameter of the 200 OK carrying a binding's received address (empty: none).",
    );
    m.param("received_avp", ParamType::Str, Value::Null, "Pseudo-variable (normally an AVP) whose value save() stores as the contact's received address: a SIP URI of the REGISTER's source when behind NAT (e.g. $avp(RECEIVED) set by the script or fix_nated_register()); lookup() then sends to it.");
    m.param(
            "max_contacts",
            ParamType::Int,
            0_i64,
            "Most valid contacts per address of record; a REGISTER that would exceed it gets 503 (0: no limit).",
        );
    m.param(
        "retry_after",
        ParamType::Int,
        0_i64,
        "Retry-After seconds added to the 503 for too many contacts (0: none).",
    );
    m.param(
        "sock_mode",
        ParamType::Int,
        0_i64,
        "Accepted, ignored: the receiving socket (or sock_hdr_name's) is stored.",
    );
    m.param(
            "sock_flag",
            ParamType::Int,
            -1_i64,
            "Message flag that makes save() store the socket named in the sock_hdr_name header instead of the receiving one (-1: none).",
        );
    m.param(
        "sock_hdr_name",
        ParamType::Str,
        Value::Null,
        "Header carrying the socket to store (proto:ip:port), see sock_flag and add_sock_hdr().",
    );
    m.param(
            "method_filtering",
            ParamType::Int,
            0_i64,
            "When 1, lookup() on an initial request (no To-tag) only uses contacts whose REGISTER's Allow header listed the method.",
        );
    m.param(
            "use_path",
            ParamType::Int,
            0_i64,
            "When 1, the Path headers of a REGISTER are stored with its contacts (see path_mode); lookup() sends to the first Path hop and adds the Path as Route.",
        );
    m.param("path_mode", ParamType::Int, 2_i64, "Path handling: 0 store, never return it; 1 store, return it in the 200 OK when the REGISTER has Supported: path; 2 (RFC 3327) refuse a Path without Supported: path with 420 and Unsupported: path, else store and return it.");
    m.param(
            "path_use_received",
            ParamType::Int,
            0_i64,
            "When 1, the received parameter of the first Path URI is stored as the contact's received address.",
        );
    m.param(
            "path_check_local",
            ParamType::Int,
            0_i64,
            "When 1, lookup() skips a first Path hop that is this server (servers sharing one location table).",
        );
    m.param(
        "xavp_cfg",
        ParamType::Str,
        Value::Null,
        "Accepted, ignored: XAVPs are not available.",
    );
    m.param(
        "xavp_rcd",
        ParamType::Str,
        Value::Null,
        "Accepted, ignored: XAVPs are not available.",
    );
    m.param(
        "xavp_rcd_mask",
        ParamType::Int,
        0_i64,
        "Accepted, ignored: XAVPs are not available.",
    );
    m.param(
        "gruu_enabled",
        ParamType::Int,
        1_i64,
        "Accepted, ignored: +sip.instance is stored and matched, but no GRUUs are generated.",
    );
    m.param(
            "outbound_mode",
            ParamType::Int,
            0_i64,
            "RFC 5626 outbound: contacts with +sip.instance and reg-id are stored and matched by them in every mode; the 421/439 checks of modes 1 and 2 are not built.",
        );
    m.param(
        "regid_mode",
        ParamType::Int,
        0_i64,
        "Accepted, ignored: reg-id is always used for matching when present.",
    );
    m.param(
        "flow_timer",
        ParamType::Int,
        0_i64,
        "Flow-Timer header value added to the 200 OK of a registration with a reg-id (0: none).",
    );
    m.param(
        "contact_max_size",
        ParamType::Int,
        512_i64,
        "Longest contact URI accepted; longer ones get 400.",
    );
    m.param(
        "event_callback",
        ParamType::Str,
        Value::Null,
        "Accepted, ignored: the contact-expired event is not raised.",
    );
    m.param(
        "lookup_filter_mode",
        ParamType::Int,
        0_i64,
        "Accepted, ignored.",
    );
    m.param(
            "min_expires_mode",
            ParamType::Int,
            0_i64,
            "When 1, an expires below min_expires is refused with 423 Interval Too Brief and a Min-Expires header instead of being raised.",
        );
    m.param(
        "use_expired_contacts",
        ParamType::Int,
        0_i64,
        "Accepted, ignored: expired contacts are never used.",
    );
}
