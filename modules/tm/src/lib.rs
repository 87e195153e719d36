//! `tm`: Transaction management: stateful forwarding, retransmissions, timers, serial and parallel forking.

use bytes::Bytes;
use ferrosip_api::pv::PvParamRule;
use ferrosip_api::registry::FnRow;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask, Value};

mod funcs;

/// The `tm` module.
pub struct TmModule;

impl Module for TmModule {
    fn name(&self) -> &'static str {
        "tm"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.example(include_str!("../example.cfg"));
        // Transaction PVs (Kamailio's tmx provides them; here they belong with tm).
        m.pv_fixed(
            "T_reply_code",
            "Status code of the reply being processed (onreply_route) or of the winning reply (failure_route); $null elsewhere.",
            funcs::ReplyPv { reason: false },
        );
        m.pv_fixed(
            "T_reply_reason",
            "Reason phrase of the reply $T_reply_code gives.",
            funcs::ReplyPv { reason: true },
        );
        m.pv("T_req", funcs::TransactionMsgClass { reply: false });
        m.pv("T_rpl", funcs::TransactionMsgClass { reply: true });
        m.pv_declared(
            "T_inv",
            PvParamRule::Required,
            "A PV evaluated against the INVITE a CANCEL matches.",
        );
        m.pv_declared(
            "T_reply_last",
            PvParamRule::None,
            "Status code of the last reply received.",
        );
        m.pv("branch", funcs::BranchClass);
        m.doc("Transaction management: stateful forwarding, retransmissions, timers, serial and parallel forking.");
        m.param(
            "fr_timer",
            ParamType::Int,
            30000_i64,
            "Final-response timeout in ms (timer B/F) when no reply arrives on a branch.",
        );
        m.param("fr_inv_timer", ParamType::Int, 120000_i64, "Timeout in ms for a final reply to an INVITE once a provisional reply was received (timer C-like).");
        m.param(
            "max_inv_lifetime",
            ParamType::Int,
            180000_i64,
            "Maximum lifetime in ms of an INVITE transaction (RFC 3261 timer C).",
        );
        m.param(
            "max_noninv_lifetime",
            ParamType::Int,
            32000_i64,
            "Maximum lifetime in ms of a non-INVITE transaction (RFC 3261 timer F).",
        );
        m.param(
            "max_transactions",
            ParamType::Int,
            200000_i64,
            "Ferrosip's own: open transactions at most; past it a request that would open one is answered 503 (Retry-After: 5) and counted, so a flood to a destination that never answers cannot grow memory without bound.",
        );
        m.param(
            "wt_timer",
            ParamType::Int,
            5000_i64,
            "Time in ms a completed transaction is kept to absorb retransmissions and ACKs.",
        );
        m.param(
            "retr_timer1",
            ParamType::Int,
            500_i64,
            "Initial retransmission interval in ms (T1).",
        );
        m.param(
            "retr_timer2",
            ParamType::Int,
            4000_i64,
            "Maximum retransmission interval in ms (T2).",
        );
        m.param("noisy_ctimer", ParamType::Int, 1_i64, "When 1, an INVITE branch with no reply is canceled when fr_inv_timer fires even if no provisional arrived.");
        m.param(
            "restart_fr_on_each_reply",
            ParamType::Int,
            1_i64,
            "When 1, restarts fr_inv_timer on every provisional reply.",
        );
        m.param(
            "auto_inv_100",
            ParamType::Int,
            1_i64,
            "When 1, answers every INVITE with 100 Trying as soon as the transaction is created.",
        );
        m.param(
            "auto_inv_100_reason",
            ParamType::Str,
            "trying -- your call is important to us",
            "Reason phrase of the automatic 100.",
        );
        m.param(
            "unix_tx_timeout",
            ParamType::Int,
            500_i64,
            "Send timeout in ms for t_write_unix().",
        );
        m.param(
            "aggregate_challenges",
            ParamType::Int,
            1_i64,
            "When 1, merges 401/407 challenges from several branches into one reply.",
        );
        m.param("reparse_invite", ParamType::Int, 1_i64, "When 1, builds CANCEL/ACK for INVITEs from the forwarded message so they carry its changes.");
        m.param(
            "ac_extra_hdrs",
            ParamType::Str,
            "",
            "Header name prefix copied from the INVITE into locally generated CANCEL/ACK.",
        );
        m.param(
            "blst_503",
            ParamType::Int,
            0_i64,
            "When 1, blocklists a destination that replied 503.",
        );
        m.param(
            "blst_503_def_timeout",
            ParamType::Int,
            0_i64,
            "Blocklist time in s for a 503 without Retry-After (0: do not blocklist).",
        );
        m.param(
            "blst_503_min_timeout",
            ParamType::Int,
            0_i64,
            "Minimum blocklist time in s for a 503.",
        );
        m.param(
            "blst_503_max_timeout",
            ParamType::Int,
            3600_i64,
            "Maximum blocklist time in s for a 503.",
        );
        m.param(
            "blst_methods_add",
            ParamType::Int,
            1_i64,
            "Bit mask of methods whose failures add the destination to the blocklist (1: INVITE).",
        );
        m.param(
            "blst_methods_lookup",
            ParamType::Int,
            4294967287_i64,
            "Bit mask of methods for which the blocklist is checked (all but BYE).",
        );
        m.param("cancel_b_method", ParamType::Int, 1_i64, "How unreplied branches are canceled: 0 fake reply, 1 retransmit and wait for reply, 2 send CANCEL anyway.");
        m.param(
            "reparse_on_dns_failover",
            ParamType::Int,
            1_i64,
            "When 1, reparses the request before a DNS failover branch.",
        );
        m.param("on_sl_reply", ParamType::Str, Value::Null, "Route run for replies that match no transaction (drop to stop them being forwarded statelessly).");
        m.param(
            "contacts_avp",
            ParamType::Str,
            Value::Null,
            "AVP name used by t_load_contacts()/t_next_contacts() to store contacts.",
        );
        m.param(
            "contact_flows_avp",
            ParamType::Str,
            Value::Null,
            "AVP name used by t_next_contact_flow() for RFC 5626 flows.",
        );
        m.param(
            "fr_timer_avp",
            ParamType::Str,
            Value::Null,
            "AVP that, when set, overrides fr_timer per transaction (deprecated).",
        );
        m.param(
            "fr_inv_timer_avp",
            ParamType::Str,
            Value::Null,
            "AVP that, when set, overrides fr_inv_timer per transaction (deprecated).",
        );
        m.param(
            "tw_append",
            ParamType::Str,
            Value::Null,
            "Defines named lists of values t_write_req()/t_write_unix() append.",
        );
        m.param("unmatched_cancel", ParamType::Int, 0_i64, "Handling of a CANCEL with no matching INVITE: 0 forward statelessly, 1 forward statefully, 2 drop.");
        m.param(
            "ruri_matching",
            ParamType::Int,
            1_i64,
            "When 1, the R-URI is compared when matching RFC 2543 transactions.",
        );
        m.param(
            "via1_matching",
            ParamType::Int,
            1_i64,
            "When 1, the top Via is compared when matching RFC 2543 transactions.",
        );
        m.param(
            "reply_matching",
            ParamType::Int,
            1_i64,
            "Reply matching mode: 1 matches on the Via branch added by this proxy.",
        );
        m.param(
            "callid_matching",
            ParamType::Int,
            0_i64,
            "When 1, the Call-ID is also compared when matching transactions.",
        );
        m.param(
            "callid_cseq_matching",
            ParamType::Int,
            0_i64,
            "When 1, matches transactions on Call-ID and CSeq only.",
        );
        m.param(
            "pass_provisional_replies",
            ParamType::Int,
            0_i64,
            "When 1, provisional replies are passed to modules even for local transactions.",
        );
        m.param(
            "default_code",
            ParamType::Int,
            500_i64,
            "Code of the reply sent when t_reply_error() has no specific error.",
        );
        m.param(
            "default_reason",
            ParamType::Str,
            "Server Internal Error",
            "Reason phrase paired with default_code.",
        );
        m.param(
            "disable_6xx_block",
            ParamType::Int,
            0_i64,
            "When 1, a 6xx reply does not cancel the other branches.",
        );
        m.param("local_ack_mode", ParamType::Int, 0_i64, "Where the ACK for a local 2xx goes: 0 per RFC 3261, 1 next hop of INVITE, 2 INVITE source.");
        m.param(
            "local_ack_branch_mode",
            ParamType::Int,
            0_i64,
            "How the Via branch of a locally generated ACK is built.",
        );
        m.param("failure_reply_mode", ParamType::Int, 3_i64, "Which replies are kept after failure_route adds new branches: 0 all, 1 last branch, 2 last set, 3 none of the old ones.");
        m.param(
            "faked_reply_prio",
            ParamType::Int,
            0_i64,
            "How faked (internal) replies rank against received ones when choosing the best reply.",
        );
        m.param(
            "local_cancel_reason",
            ParamType::Int,
            1_i64,
            "When 1, adds a Reason header to CANCELs generated locally.",
        );
        m.param(
            "e2e_cancel_reason",
            ParamType::Int,
            1_i64,
            "When 1, copies the Reason header of a received CANCEL into the forwarded CANCELs.",
        );
        m.param(
            "e2e_cancel_hop_by_hop",
            ParamType::Int,
            1_i64,
            "When 1, a received CANCEL is answered and new CANCELs are built per branch.",
        );
        m.param(
            "headers_mode",
            ParamType::Int,
            0_i64,
            "When 1, headers removed before t_relay() stay removed from the stored request.",
        );
        m.param(
            "remap_503_500",
            ParamType::Int,
            1_i64,
            "When 1, a 503 final reply is sent upstream as 500 (RFC 3261 section 16.7).",
        );
        m.param(
            "failure_exec_mode",
            ParamType::Int,
            0_i64,
            "When 1, branches that failed locally in the timer also trigger failure_route.",
        );
        m.param(
            "dns_reuse_rcv_socket",
            ParamType::Int,
            0_i64,
            "When 1, DNS failover branches reuse the socket the request was received on.",
        );
        m.param(
            "xavp_contact",
            ParamType::Str,
            Value::Null,
            "XAVP with per-contact attributes (same as usrloc's xavp_contact).",
        );
        m.param(
            "event_callback",
            ParamType::Str,
            Value::Null,
            "KEMI function run instead of event_route[tm:local-request].",
        );
        m.param(
            "evcb_local_ack_sent",
            ParamType::Str,
            Value::Null,
            "KEMI function run instead of event_route[tm:local-ack-sent].",
        );
        m.param(
            "relay_100",
            ParamType::Int,
            0_i64,
            "When 1, 100 Trying replies are relayed upstream (stateless use only).",
        );
        m.param(
            "rich_redirect",
            ParamType::Int,
            0_i64,
            "Bit mask for 3xx replies: 1 adds branch flags, 2 adds the path to the contacts.",
        );
        m.param(
            "event_callback_lres_sent",
            ParamType::Str,
            Value::Null,
            "KEMI function run instead of event_route[tm:local-response].",
        );
        m.param("exec_time_check", ParamType::Int, 5000_i64, "Time in ms after which running failure handling re-checks that the transaction is alive (0 off).");
        m.param(
            "reply_relay_mode",
            ParamType::Int,
            1_i64,
            "When 1, a suspended 200 OK is not relayed if another final reply went out meanwhile.",
        );
        m.param(
            "enable_uac_fr",
            ParamType::Int,
            0_i64,
            "When 1, failure_route can also run for locally generated (UAC) transactions.",
        );
        m.param("failover_reply_codes", ParamType::Str, "", "Extra reply codes (\"code=408;class=5\") that trigger DNS failover besides 503 and timeouts.");
        m.param(
            "reply_408_code",
            ParamType::Int,
            408_i64,
            "Status code of internally generated timeout replies.",
        );
        m.param(
            "reply_408_reason",
            ParamType::Str,
            "Request Timeout",
            "Reason phrase of internally generated timeout replies.",
        );
        m.param("delayed_reply", ParamType::Int, 1_i64, "When 1, the error reply for a failed relay is delayed until the script ends so it can send its own.");
        m.param(
            "evlreq_mode",
            ParamType::Int,
            0_i64,
            "Bit 1: event_route[tm:local-request] also runs for hop-by-hop CANCELs.",
        );
        const REQ_FAIL_EVENT: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::EVENT);
        const REQ_EVENT: RouteMask = RouteMask::REQUEST.union(RouteMask::EVENT);
        const REQ_FAIL_BRANCH_TM_REPLY_EVENT: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::BRANCH)
            .union(RouteMask::TM_ONREPLY)
            .union(RouteMask::EVENT);
        const REQ_FAIL_REPLY_EVENT: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::ONREPLY)
            .union(RouteMask::EVENT);
        const REQ_BRANCH_REPLY_EVENT: RouteMask = RouteMask::REQUEST
            .union(RouteMask::BRANCH)
            .union(RouteMask::ONREPLY)
            .union(RouteMask::EVENT);
        const REQ_FAIL_BRANCH_REPLY_EVENT: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::BRANCH)
            .union(RouteMask::ONREPLY)
            .union(RouteMask::EVENT);
        const HOST_PORT: &[&str] = &["host", "port"];
        const IP_PORT: &[&str] = &["ip", "port"];
        const PROXY_FLAGS: &[&str] = &["proxy", "flags"];
        const PROTO_HOSTPORT: &[&str] = &["proto", "hostport"];
        #[rustfmt::skip]
        m.functions([
            FnRow::sync("t_relay", &[], REQ_FAIL_EVENT, "Relays the request statefully to $du or the R-URI, creating the transaction if needed; 1 on success, negative on error.", funcs::t_relay),
            FnRow::sync("t_relay", HOST_PORT, REQ_FAIL_EVENT, "Relays the request statefully to host:port; 1 on success, negative on error.", funcs::t_relay_to),
            FnRow::sync("t_relay_to_udp", &[], REQ_FAIL_EVENT, "Relays statefully over UDP to the R-URI destination; 1 on success, negative on error.", funcs::t_relay_to_udp0),
            FnRow::sync("t_relay_to_udp", IP_PORT, REQ_FAIL_EVENT, "Relays statefully over UDP to ip:port; 1 on success, negative on error.", funcs::t_relay_to_udp),
            FnRow::sync("t_relay_to_tcp", &[], REQ_FAIL_EVENT, "Relays statefully over TCP to the R-URI destination; 1 on success, negative on error.", funcs::t_relay_to_tcp0),
            FnRow::sync("t_relay_to_tcp", IP_PORT, REQ_FAIL_EVENT, "Relays statefully over TCP to ip:port; 1 on success, negative on error.", funcs::t_relay_to_tcp),
            FnRow::sync("t_relay_to_tls", &[], REQ_FAIL_EVENT, "Relays statefully over TLS to the R-URI destination; 1 on success, negative on error.", funcs::t_relay_to_tls0),
            FnRow::sync("t_relay_to_tls", IP_PORT, REQ_FAIL_EVENT, "Relays statefully over TLS to ip:port; 1 on success, negative on error.", funcs::t_relay_to_tls),
            FnRow::declared::<()>("t_relay_to_sctp", &[], REQ_FAIL_EVENT, "Relays statefully over SCTP to the R-URI destination; 1 on success, negative on error."),
            FnRow::declared::<(Bytes, i64)>("t_relay_to_sctp", IP_PORT, REQ_FAIL_EVENT, "Relays statefully over SCTP to ip:port; 1 on success, negative on error."),
            FnRow::declared::<()>("t_relay_to", &[], REQ_FAIL_EVENT, "Relays statefully to the R-URI destination (generic form); 1 on success, negative on error."),
            FnRow::declared::<(Bytes,)>("t_relay_to", &["proxy"], REQ_FAIL_EVENT, "Relays statefully to a proxy given as \"proto:host:port\", or with relay flags when the argument is a number; 1 on success, negative on error."),
            FnRow::declared::<(Bytes, i64)>("t_relay_to", PROXY_FLAGS, REQ_FAIL_EVENT, "Relays statefully to \"proto:host:port\" with flags (0x01 no auto 100, 0x02 no internal error reply, 0x04 no DNS failover); 1 on success, negative on error."),
            FnRow::declared::<(Bytes,)>("t_relay_to_proxy", &["proxy"], REQ_FAIL_EVENT, "Relays statefully to a proxy address \"[proto:]host[:port]\"; 1 on success, negative on error."),
            FnRow::declared::<(Bytes, i64)>("t_relay_to_proxy", PROXY_FLAGS, REQ_FAIL_EVENT, "Relays statefully to a proxy address with relay flags; 1 on success, negative on error (Kamailio declares this overload with arity 1 by mistake)."),
            FnRow::declared::<(Bytes, Bytes)>("t_relay_to_avp", PROTO_HOSTPORT, REQ_EVENT, "Relays statefully using a protocol and a destination taken from AVPs; 1 on success, negative on error."),
            FnRow::declared::<()>("t_relay_cancel", &[], REQ_EVENT, "Relays a CANCEL to the branches of its INVITE transaction; 0 (stop) when relayed, 1 when no INVITE transaction was found, negative on error."),
            FnRow::declared::<()>("t_replicate", &[], REQ_EVENT, "Statefully sends a copy of the request to $du/R-URI without affecting the reply upstream; 1 on success, negative on error."),
            FnRow::declared::<(Bytes,)>("t_replicate", &["params"], REQ_EVENT, "Statefully sends a copy of the request to the given SIP URI; 1 on success, negative on error."),
            FnRow::declared::<(Bytes, i64)>("t_replicate", HOST_PORT, REQ_EVENT, "Statefully sends a copy of the request to host:port; 1 on success, negative on error."),
            FnRow::declared::<(Bytes, i64)>("t_replicate_udp", HOST_PORT, REQ_EVENT, "Replicates the request over UDP to host:port; 1 on success, negative on error."),
            FnRow::declared::<(Bytes, i64)>("t_replicate_tcp", HOST_PORT, REQ_EVENT, "Replicates the request over TCP to host:port; 1 on success, negative on error."),
            FnRow::declared::<(Bytes, i64)>("t_replicate_tls", HOST_PORT, REQ_EVENT, "Replicates the request over TLS to host:port; 1 on success, negative on error."),
            FnRow::declared::<(Bytes, i64)>("t_replicate_sctp", HOST_PORT, REQ_EVENT, "Replicates the request over SCTP to host:port; 1 on success, negative on error."),
            FnRow::declared::<(Bytes, Bytes)>("t_replicate_to", PROTO_HOSTPORT, REQ_EVENT, "Replicates the request with the given protocol to \"host:port\"; 1 on success, negative on error."),
            FnRow::sync("t_forward_nonack", IP_PORT, REQ_EVENT, "Forwards a non-ACK request statefully to ip:port (transaction must exist); 1 on success, negative on error.", funcs::t_relay_to),
            FnRow::declared::<()>("t_forward_nonack_uri", &[], REQ_EVENT, "Forwards a non-ACK request statefully to its R-URI; 1 on success, negative on error."),
            FnRow::declared::<(Bytes, i64)>("t_forward_nonack_udp", IP_PORT, REQ_EVENT, "As t_forward_nonack() over UDP; 1 on success, negative on error."),
            FnRow::declared::<(Bytes, i64)>("t_forward_nonack_tcp", IP_PORT, REQ_EVENT, "As t_forward_nonack() over TCP; 1 on success, negative on error."),
            FnRow::declared::<(Bytes, i64)>("t_forward_nonack_tls", IP_PORT, REQ_EVENT, "As t_forward_nonack() over TLS; 1 on success, negative on error."),
            FnRow::declared::<(Bytes, i64)>("t_forward_nonack_sctp", IP_PORT, REQ_EVENT, "As t_forward_nonack() over SCTP; 1 on success, negative on error."),
            FnRow::declared::<(Bytes, Bytes)>("t_forward_nonack_to", PROTO_HOSTPORT, REQ_EVENT, "As t_forward_nonack() with protocol and \"host:port\"; 1 on success, negative on error."),
            FnRow::sync("t_on_failure", &["failure_route"], REQ_FAIL_BRANCH_TM_REPLY_EVENT, "Arms failure_route[NAME] for the transaction (runs when all branches fail); always 1.", funcs::t_on_failure),
            FnRow::declared::<(Bytes,)>("t_on_branch_failure", &["branch_failure_route"], REQ_FAIL_BRANCH_TM_REPLY_EVENT, "Arms event_route[tm:branch-failure:NAME], run for each failed branch; always 1."),
            FnRow::sync("t_on_reply", &["onreply_route"], REQ_FAIL_BRANCH_TM_REPLY_EVENT, "Arms onreply_route[NAME] for replies of the transaction; always 1.", funcs::t_on_reply),
            FnRow::sync("t_on_branch", &["branch_route"], REQ_FAIL_EVENT, "Arms branch_route[NAME], run for each branch before it is sent; always 1.", funcs::t_on_branch),
            FnRow::sync("t_newtran", &[], REQ_EVENT, "Creates a transaction for the request (absorbs retransmissions from then on); 1 on success, 0 when it is a retransmission (stop), negative on error.", funcs::t_newtran),
            FnRow::sync("t_reply", &["code", "reason_phrase"], REQ_FAIL_REPLY_EVENT, "Sends a stateful reply through the request's transaction (t_newtran() or t_relay() creates it; an error without one); in failure_route, the final reply; 1 on success, -1 on failure.", funcs::t_reply),
            FnRow::declared::<()>("t_reply_error", &[], REQ_FAIL_REPLY_EVENT, "Sends a stateful reply for the last internal error; 1 on success, -1 on failure."),
            FnRow::declared::<(i64, Bytes)>("t_send_reply", &["code", "reason"], REQ_FAIL_REPLY_EVENT, "Sends a stateful reply, creating the transaction first if needed; 1 on success, -1 on failure."),
            FnRow::declared::<()>("t_lookup_request", &[], REQ_EVENT, "Checks whether the request belongs to an existing transaction; 1 when found, -1 otherwise."),
            FnRow::declared::<()>("t_lookup_cancel", &[], REQ_EVENT, "For a CANCEL, checks whether its INVITE transaction exists; 1 when found, -1 otherwise."),
            FnRow::declared::<(i64,)>("t_lookup_cancel", &["set_dst"], REQ_EVENT, "As t_lookup_cancel(); with 1 also sets $du/socket from the INVITE transaction; 1 when found, -1 otherwise."),
            FnRow::declared::<()>("t_retransmit_reply", &[], REQ_EVENT, "Retransmits the last reply sent for the transaction; 1 on success, -1 on failure."),
            FnRow::sync("t_release", &[], REQ_EVENT, "Frees the transaction of the request before its normal end; 1 on success, -1 on failure.", funcs::t_release),
            FnRow::sync("t_check_status", &["re"], REQ_FAIL_REPLY_EVENT, "Matches the reply code (or the winning reply code in failure_route) against a regex; 1 on match, -1 otherwise.", funcs::t_check_status),
            FnRow::sync("t_check_trans", &[], REQ_BRANCH_REPLY_EVENT, "Checks for a matching transaction; for retransmissions it retransmits/absorbs and stops the script (0), 1 when found (CANCEL/reply), -1 when not found.", funcs::t_check_trans),
            FnRow::declared::<(Bytes, Bytes)>("t_write_req", &["queue", "info"], REQ_FAIL_EVENT, "Writes request information to a FIFO queue for an external application; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("t_write_unix", &["sock", "info"], REQ_FAIL_EVENT, "Writes request information to a unix socket for an external application; 1 on success, -1 on failure."),
            FnRow::sync("t_set_fr", &["fr_inv_timeout"], REQ_FAIL_BRANCH_TM_REPLY_EVENT, "Sets fr_inv_timer in ms for the current/next transaction (0 keeps the default); 1 on success, -1 on failure.", funcs::t_set_fr1),
            FnRow::sync("t_set_fr", &["fr_inv_timeout", "fr_timeout"], REQ_FAIL_BRANCH_TM_REPLY_EVENT, "Sets fr_inv_timer and fr_timer in ms (0 keeps the default); 1 on success, -1 on failure.", funcs::t_set_fr2),
            FnRow::sync("t_reset_fr", &[], REQ_FAIL_BRANCH_TM_REPLY_EVENT, "Restores fr_inv_timer and fr_timer to the configured values; 1 on success, -1 on failure.", funcs::t_reset_fr),
            FnRow::declared::<(i64, i64)>("t_set_retr", &["retr_t1_interval", "retr_t2_interval"], REQ_FAIL_BRANCH_TM_REPLY_EVENT, "Sets T1 and T2 retransmission intervals in ms (0 keeps the default); 1 on success, -1 on failure."),
            FnRow::declared::<()>("t_reset_retr", &[], REQ_FAIL_BRANCH_TM_REPLY_EVENT, "Restores T1 and T2 to the configured values; 1 on success, -1 on failure."),
            FnRow::declared::<(i64, i64)>("t_set_max_lifetime", &["inv_lifetime", "noninv_lifetime"], REQ_FAIL_BRANCH_TM_REPLY_EVENT, "Sets the maximum INVITE and non-INVITE transaction lifetimes in ms (0 keeps the default); 1 on success, -1 on failure."),
            FnRow::declared::<()>("t_reset_max_lifetime", &[], REQ_FAIL_BRANCH_TM_REPLY_EVENT, "Restores the maximum lifetimes to the configured values; 1 on success, -1 on failure."),
            FnRow::declared::<(i64,)>("t_set_auto_inv_100", &["enable"], REQ_EVENT, "Turns the automatic 100 Trying for this INVITE on (1) or off (0); 1 on success, -1 on failure."),
            FnRow::declared::<(i64,)>("t_set_disable_6xx", &["disable"], REQ_FAIL_BRANCH_TM_REPLY_EVENT, "Turns the special 6xx handling off (1) or on (0) for this transaction; 1 on success, -1 on failure."),
            FnRow::declared::<(i64,)>("t_set_no_auto_ack", &["enable"], REQ_FAIL_BRANCH_TM_REPLY_EVENT, "When 1, no ACK is generated automatically for negative replies of this transaction; 1 on success, -1 on failure."),
            FnRow::declared::<(i64,)>("t_set_disable_failover", &["disable"], REQ_FAIL_BRANCH_TM_REPLY_EVENT, "Turns DNS failover off (1) or on (0) for this transaction; 1 on success, -1 on failure."),
            FnRow::declared::<(i64,)>("t_set_no_e2e_cancel_reason", &["disable"], REQ_FAIL_BRANCH_TM_REPLY_EVENT, "When 1, the Reason header of a received CANCEL is not copied to forwarded CANCELs; 1 on success, -1 on failure."),
            FnRow::declared::<(i64,)>("t_disable_e2e_cancel_reason", &["disable"], REQ_FAIL_BRANCH_TM_REPLY_EVENT, "Alias of t_set_no_e2e_cancel_reason(); 1 on success, -1 on failure."),
            FnRow::declared::<(i64,)>("t_set_disable_internal_reply", &["disable"], REQ_FAIL_BRANCH_TM_REPLY_EVENT, "When 1, tm sends no reply by itself when relaying fails; 1 on success, -1 on failure."),
            FnRow::sync("t_branch_timeout", &[], REQ_FAIL_EVENT, "True (1) when the failed branch ended by timeout; -1 otherwise.", funcs::t_branch_timeout),
            FnRow::sync("t_branch_replied", &[], REQ_FAIL_EVENT, "True (1) when the failed branch received at least one reply; -1 otherwise.", funcs::t_branch_replied),
            FnRow::sync("t_any_timeout", &[], REQ_FAIL_BRANCH_TM_REPLY_EVENT, "True (1) when any branch of the transaction timed out; -1 otherwise.", funcs::t_any_timeout),
            FnRow::sync("t_any_replied", &[], REQ_FAIL_BRANCH_TM_REPLY_EVENT, "True (1) when any branch received a reply; -1 otherwise.", funcs::t_any_replied),
            FnRow::sync("t_is_canceled", &[], REQ_FAIL_BRANCH_TM_REPLY_EVENT, "True (1) when the transaction was canceled; -1 otherwise.", funcs::t_is_canceled),
            FnRow::declared::<()>("t_is_retr_async_reply", &[], RouteMask::TM_ONREPLY, "True (1) when the reply is a retransmission of one suspended by t_suspend(); -1 otherwise."),
            FnRow::sync("t_is_expired", &[], REQ_FAIL_BRANCH_TM_REPLY_EVENT, "True (1) when the transaction passed its maximum lifetime; -1 otherwise.", funcs::t_is_expired),
            FnRow::declared::<(i64,)>("t_grep_status", &["code"], REQ_FAIL_BRANCH_TM_REPLY_EVENT, "True (1) when any branch received a reply with the given code; -1 otherwise."),
            FnRow::sync("t_drop_replies", &[], RouteMask::FAILURE, "Drops the replies received so far so they are not sent upstream; always 1.", funcs::t_drop_replies0),
            FnRow::sync("t_drop_replies", &["mode"], RouteMask::FAILURE, "Drops received replies: \"a\" all, \"l\" those of the last branch set, \"n\" none; always 1.", funcs::t_drop_replies1),
            FnRow::declared::<()>("t_save_lumps", &[], REQ_EVENT, "Saves the current message changes into the transaction so later branches start from them; 1 on success, -1 on failure."),
            FnRow::declared::<()>("t_load_contacts", &[], REQ_FAIL_EVENT, "Loads the R-URI and branches ordered by q value into contacts_avp for serial forking; 1 on success, -1 on failure."),
            FnRow::declared::<(i64,)>("t_load_contacts", &["mode"], REQ_FAIL_EVENT, "As t_load_contacts(); mode 1 treats equal q values as parallel-forked groups with proportional order; 1 on success, -1 on failure."),
            FnRow::declared::<()>("t_next_contacts", &[], REQ_FAIL_EVENT, "Takes the next group of contacts loaded by t_load_contacts() into R-URI/branches; 1 on success, -1 when none are left or on error."),
            FnRow::declared::<()>("t_next_contact_flow", &[], REQ_EVENT, "Takes the next RFC 5626 flow from contact_flows_avp as a new branch; 1 on success, -1 when none are left."),
            FnRow::sync("t_is_set", &["target"], RouteMask::ANY, "True (1) when the given route (\"branch_route\", \"failure_route\", \"onreply_route\") is already armed; -1 otherwise.", funcs::t_is_set),
            FnRow::declared::<()>("t_use_uac_headers", &[], RouteMask::ANY, "Makes locally generated requests (CANCEL/ACK) use the headers changed by the script; always 1."),
            FnRow::declared::<(Bytes, Bytes, Bytes, Bytes, Bytes, Bytes)>("t_uac_send", &["method", "ruri", "nexthop", "socket", "headers", "body"], RouteMask::ANY, "Sends a new request statefully from the proxy itself; 1 on success, -1 on failure."),
            FnRow::sync("t_get_status_code", &[], REQ_FAIL_BRANCH_REPLY_EVENT, "Returns the status code of the transaction's reply as the return code, or -1 when none.", funcs::t_get_status_code),
            FnRow::declared::<()>("t_clean", &[], RouteMask::ANY, "Cleans up the transaction left in the context (e.g. after an asynchronous resume); always 1."),
            FnRow::declared::<()>("t_exists", &[], RouteMask::ANY, "True (1) when a transaction exists for the current message; -1 otherwise."),
            FnRow::declared::<()>("t_msg_apply_changes", &[], RouteMask::BRANCH, "Applies the changes done in branch_route to the branch request buffer; 1 on success, -1 on failure."),
            FnRow::declared::<(i64, i64)>("t_cell_append_branches", &["tindex", "tlabel"], RouteMask::ANY, "Appends the branches of another transaction (by index and label) to the current message; 1 on success, -1 on failure."),
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ferrosip_api::tm::{BranchTarget, Branches, TmState};
    use ferrosip_api::{MsgContext, NetInfo, Registry, RouteKind};
    use ferrosip_script::vm::Outcome;
    use ferrosip_sip::SipMessage;
    use ferrosip_tests::Script;

    fn msg(raw: &'static str) -> SipMessage {
        SipMessage::parse(Bytes::from_static(raw.as_bytes())).expect("parses")
    }

    const INVITE: &str = "INVITE sip:bob@10.0.0.5 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
To: <sip:bob@10.0.0.5>\r\nFrom: <sip:alice@example.com>;tag=9\r\nCall-ID: c1@h\r\nCSeq: 1 INVITE\r\nX-Account: 42\r\nContent-Length: 0\r\n\r\n";
    const BUSY: &str = "SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
To: <sip:bob@10.0.0.5>;tag=x\r\nFrom: <sip:alice@example.com>;tag=9\r\nCall-ID: c1@h\r\nCSeq: 1 INVITE\r\nReason: Q.850;cause=17\r\nContent-Length: 0\r\n\r\n";

    /// The failure route sees the winning reply and the transaction's request through
    /// its PVs and checks.
    #[test]
    fn failure_route_reads_the_transaction() {
        let mut reg = Registry::new();
        ferrosip_script::register_core(&mut reg);
        reg.register(&TmModule);
        let cfg = r#"loadmodule "tm.so"
request_route { t_on_failure("F"); }
failure_route[F] {
    $var(ok) = 0;
    if (t_check_status("^486$") && !t_check_status("^5") && $T_reply_code == 486
        && $T_reply_reason == "Busy Here" && $T_req($hdr(X-Account)) == "42"
        && $T_rpl($hdr(Reason)) == "Q.850;cause=17" && t_branch_replied() && !t_is_canceled()) {
        $var(ok) = 1;
    }
    return $var(ok) + 1;
}
"#;
        let script = Script::load(&reg, cfg);
        let mut ctx = MsgContext::new(msg(INVITE), RouteKind::Failure, NetInfo::default());
        ctx.ext.insert(TmState {
            reply_code: 486,
            reply_reason: Bytes::from_static(b"Busy Here"),
            reply: Some(msg(BUSY)),
            request: Some(msg(INVITE)),
            branch_replied: true,
            ..TmState::default()
        });
        let (out, _) = script.run_named(RouteKind::Failure, "F", ctx);
        assert_eq!(out, Outcome::Return(2));
    }

    #[test]
    fn branch_pv_reads_appended_branches() {
        let mut reg = Registry::new();
        ferrosip_script::register_core(&mut reg);
        reg.register(&TmModule);
        let cfg = r#"loadmodule "tm.so"
request_route {
    if ($branch(count) == 2 && $branch(uri) == "sip:a@h" && $(branch(uri)[1]) == "sip:b@h"
        && $(branch(dst_uri)[1]) == "sip:p:5070" && $(branch(uri)[-1]) == "sip:b@h") {
        return 1;
    }
    return 2;
}
"#;
        let script = Script::load(&reg, cfg);
        let mut ctx = MsgContext::new(msg(INVITE), RouteKind::Request, NetInfo::default());
        let b = |u: &'static str, d: Option<&'static str>| BranchTarget {
            uri: Bytes::from_static(u.as_bytes()),
            dst_uri: d.map(|d| Bytes::from_static(d.as_bytes())),
            q: None,
            bflags: 0,
        };
        ctx.ext.insert(Branches(vec![
            b("sip:a@h", None),
            b("sip:b@h", Some("sip:p:5070")),
        ]));
        let (out, _) = script.run(ctx);
        assert_eq!(out, Outcome::Return(1));
    }
}
