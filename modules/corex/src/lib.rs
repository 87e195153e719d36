//! `corex`: Core extensions: branch and forwarding helpers, sockets, internal flags, file and network helpers.

use bytes::Bytes;
use ferrosip_api::args::{Flag, PvOut};
use ferrosip_api::registry::FnRow;
use ferrosip_api::tm::{BranchTarget, Branches};
use ferrosip_api::{
    FnError, FnResult, Module, ModuleBuilder, MsgContext, ParamType, RouteMask, Value, Verdict,
};

/// Branches beyond this many are refused, as Kamailio's `max_branches` (12) does.
const MAX_BRANCHES: usize = 12;

fn add_branch(
    ctx: &mut MsgContext,
    uri: Bytes,
    dst_uri: Option<Bytes>,
    q: Option<Bytes>,
) -> FnResult {
    if uri.is_empty() || ferrosip_sip::Uri::parse(&uri).is_err() {
        return Ok(Verdict::FALSE);
    }
    let bflags = ctx.bflags;
    let set = ctx.ext.get_or_insert_with(Branches::default);
    if set.0.len() + 1 >= MAX_BRANCHES {
        return Ok(Verdict::FALSE);
    }
    set.0.push(BranchTarget {
        uri,
        dst_uri,
        q,
        bflags,
    });
    Ok(Verdict::TRUE)
}

/// The `corex` module.
pub struct CorexModule;

impl Module for CorexModule {
    fn name(&self) -> &'static str {
        "corex"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.example(include_str!("../example.cfg"));
        m.doc("Core extensions: branch and forwarding helpers, sockets, internal flags, file and network helpers.");
        m.repeatable_param("alias_subdomains", ParamType::Str, "Adds a domain whose subdomains are all local (\"[proto:]domain[:port]\", may be given several times).");
        m.repeatable_param(
            "dns_cache",
            ParamType::Str,
            "Adds a static DNS cache record (may be given several times).",
        );
        m.param(
            "dns_file",
            ParamType::Str,
            Value::Null,
            "File with static DNS cache records.",
        );
        m.param(
            "nio_intercept",
            ParamType::Int,
            0_i64,
            "When 1, network I/O can be intercepted in event_route[corex:nio-*].",
        );
        m.param(
            "nio_min_msg_len",
            ParamType::Int,
            0_i64,
            "Minimum message length for network I/O interception.",
        );
        m.param(
            "nio_msg_avp",
            ParamType::Str,
            Value::Null,
            "AVP exchanging the message with the nio event routes.",
        );
        m.param(
            "evcb_reply_out",
            ParamType::Str,
            Value::Null,
            "KEMI function run instead of event_route[corex:reply-out].",
        );
        const REQ_FAIL_EVENT: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::EVENT);
        const REQ_EVENT: RouteMask = RouteMask::REQUEST.union(RouteMask::EVENT);
        let append_branch = |ctx: &mut MsgContext| {
            let uri = ctx
                .msg
                .request_uri_bytes()
                .ok_or_else(|| FnError::new("no request URI"))?;
            let dst = ctx.dst_uri.clone();
            add_branch(ctx, uri, dst, None)
        };
        #[rustfmt::skip]
        m.functions([
            FnRow::sync("append_branch", &[], REQ_FAIL_EVENT, "Adds the current R-URI (and $du) as a new branch; 1 on success, -1 on failure.", append_branch),
            FnRow::sync("append_branch", &["uri"], REQ_FAIL_EVENT, "Adds the given URI as a new branch; 1 on success, -1 on failure.", |ctx: &mut MsgContext, uri: Bytes| add_branch(ctx, uri, None, None)),
            FnRow::sync("append_branch", &["uri", "q"], REQ_FAIL_EVENT, "Adds the given URI with a q value as a new branch; 1 on success, -1 on failure.", |ctx: &mut MsgContext, uri: Bytes, q: Bytes| add_branch(ctx, uri, None, Some(q))),
            FnRow::declared::<()>("forward_uac", &[], REQ_EVENT, "Forwards the request statelessly as a new UAC request (new Via branch); 1 on success, -1 on failure."),
            FnRow::declared::<(i64,)>("forward_uac", &["bindex"], REQ_EVENT, "As forward_uac() for the branch with the given index; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("forward_uac_uri", &["vuri"], REQ_EVENT, "As forward_uac() to the given URI; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, i64)>("forward_uac_uri", &["vuri", "bindex"], REQ_EVENT, "As forward_uac_uri() for the branch with the given index; 1 on success, -1 on failure."),
            FnRow::declared::<()>("forward_reply", &[], RouteMask::CORE_ONREPLY, "Forwards the reply statelessly to the next Via; 1 on success, -1 on failure."),
            FnRow::declared::<()>("send_udp", &[], REQ_FAIL_EVENT, "Sends the request over UDP to the R-URI destination without changing it; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("send_udp", &["host"], REQ_FAIL_EVENT, "Sends the request over UDP to \"host:port\" without changing it; 1 on success, -1 on failure."),
            FnRow::declared::<()>("send_tcp", &[], REQ_FAIL_EVENT, "Sends the request over TCP to the R-URI destination without changing it; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("send_tcp", &["host"], REQ_FAIL_EVENT, "Sends the request over TCP to \"host:port\" without changing it; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("send_data", &["uri", "data"], RouteMask::ANY, "Sends raw data to the address of a SIP URI; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes, Bytes)>("sendx", &["uri", "sock", "data"], RouteMask::ANY, "Sends raw data to a SIP URI from the given local socket; 1 on success, -1 on failure."),
            FnRow::declared::<()>("is_incoming", &[], RouteMask::ANY, "True (1) in event_route[corex:nio-*] when the message is incoming; -1 otherwise."),
            FnRow::declared::<(Bytes,)>("msg_iflag_set", &["flagname"], RouteMask::ANY, "Sets an internal message flag by name (\"USE_UAC_FROM\", ...); 1 on success, -1 on an unknown name."),
            FnRow::declared::<(Bytes,)>("msg_iflag_reset", &["flagname"], RouteMask::ANY, "Resets an internal message flag by name; 1 on success, -1 on an unknown name."),
            FnRow::declared::<(Bytes,)>("msg_iflag_is_set", &["flagname"], RouteMask::ANY, "True (1) when the named internal message flag is set; -1 otherwise."),
            FnRow::declared::<(Bytes, PvOut)>("file_read", &["fpath", "var"], RouteMask::ANY, "Reads a file into a variable; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("file_write", &["fpath", "content"], RouteMask::ANY, "Writes text into a file (replacing it); 1 on success, -1 on failure."),
            FnRow::declared::<(Flag,)>("setxflag", &["flag"], RouteMask::ANY, "Sets an extended message flag (0..63); always 1."),
            FnRow::declared::<(Flag,)>("resetxflag", &["flag"], RouteMask::ANY, "Resets an extended message flag; always 1."),
            FnRow::declared::<(Flag,)>("isxflagset", &["flag"], RouteMask::ANY, "True (1) when the extended message flag is set; -1 otherwise."),
            FnRow::declared::<(Bytes,)>("set_send_socket", &["saddr"], RouteMask::ANY, "Forces the local socket for sending (\"proto:ip:port\"); 1 on success, -1 when no such socket."),
            FnRow::declared::<(Bytes,)>("set_send_socket_name", &["sname"], RouteMask::ANY, "Forces the local socket for sending by its name; 1 on success, -1 when no such socket."),
            FnRow::declared::<(Bytes,)>("set_recv_socket", &["saddr"], RouteMask::ANY, "Sets the socket the message is considered received on; 1 on success, -1 when no such socket."),
            FnRow::declared::<(Bytes,)>("set_recv_socket_name", &["sname"], RouteMask::ANY, "Sets the receiving socket by name; 1 on success, -1 when no such socket."),
            FnRow::declared::<(Bytes,)>("set_source_address", &["saddr"], RouteMask::ANY, "Sets the source address the message is considered received from; 1 on success, -1 on failure."),
            FnRow::declared::<(i64,)>("via_add_srvid", &["flags"], RouteMask::ANY, "When 1, a srvid parameter is added to the Via of forwarded requests; always 1."),
            FnRow::declared::<(i64,)>("via_add_xavp_params", &["flags"], RouteMask::ANY, "When 1, the fields of the via-params XAVP are added to the Via; always 1."),
            FnRow::declared::<(i64,)>("via_use_xavp_fields", &["flags"], RouteMask::ANY, "When 1, Via fields are taken from the via-fields XAVP; always 1."),
            FnRow::declared::<(i64,)>("via_reply_add_xavp_params", &["flags"], RouteMask::ANY, "When 1, the via-reply-params XAVP fields are added to the Via of replies; always 1."),
            FnRow::declared::<()>("is_faked_msg", &[], RouteMask::ANY, "True (1) when the message is a faked one (e.g. a failure_route built reply); -1 otherwise."),
            FnRow::declared::<(Bytes,)>("is_socket_name", &["sockname"], RouteMask::ANY, "True (1) when a listen socket with this name exists; -1 otherwise."),
            FnRow::declared::<(Flag,)>("msg_vbflag_set", &["flag"], RouteMask::ANY, "Sets a flag in the message's variable-bit flag set; always 1."),
            FnRow::declared::<(Flag,)>("msg_vbflag_reset", &["flag"], RouteMask::ANY, "Resets a flag in the message's variable-bit flag set; always 1."),
            FnRow::declared::<(Flag,)>("msg_vbflag_is_set", &["flag"], RouteMask::ANY, "True (1) when the flag is set in the variable-bit flag set; -1 otherwise."),
            FnRow::declared::<(Bytes,)>("msg_vbflag_parse", &["pvname"], RouteMask::ANY, "Parses flag names from a variable into the variable-bit flag set; 1 on success, -1 on failure."),
        ]);
    }
}
