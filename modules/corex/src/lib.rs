//! `corex`: Core extensions: branch and forwarding helpers, sockets, internal flags, file and network helpers.

use bytes::Bytes;
use ferrosip_api::args::{Flag, PvOut};
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
        m.function("append_branch")
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Adds the current R-URI (and $du) as a new branch; 1 on success, -1 on failure.")
            .handler(|ctx: &mut MsgContext| {
                let uri = ctx
                    .msg
                    .request_uri_bytes()
                    .ok_or_else(|| FnError::new("no request URI"))?;
                let dst = ctx.dst_uri.clone();
                add_branch(ctx, uri, dst, None)
            });
        m.function("append_branch")
            .args(&["uri"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Adds the given URI as a new branch; 1 on success, -1 on failure.")
            .handler(|ctx: &mut MsgContext, uri: Bytes| add_branch(ctx, uri, None, None));
        m.function("append_branch")
            .args(&["uri", "q"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Adds the given URI with a q value as a new branch; 1 on success, -1 on failure.")
            .handler(|ctx: &mut MsgContext, uri: Bytes, q: Bytes| {
                add_branch(ctx, uri, None, Some(q))
            });
        m.function("forward_uac")
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Forwards the request statelessly as a new UAC request (new Via branch); 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("forward_uac")
            .args(&["bindex"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As forward_uac() for the branch with the given index; 1 on success, -1 on failure.")
            .declared::<(i64,)>();
        m.function("forward_uac_uri")
            .args(&["vuri"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As forward_uac() to the given URI; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("forward_uac_uri")
            .args(&["vuri", "bindex"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As forward_uac_uri() for the branch with the given index; 1 on success, -1 on failure.")
            .declared::<(Bytes, i64)>();
        m.function("forward_reply")
            .routes(RouteMask::CORE_ONREPLY)
            .doc("Forwards the reply statelessly to the next Via; 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("send_udp")
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sends the request over UDP to the R-URI destination without changing it; 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("send_udp")
            .args(&["host"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sends the request over UDP to \"host:port\" without changing it; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("send_tcp")
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sends the request over TCP to the R-URI destination without changing it; 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("send_tcp")
            .args(&["host"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sends the request over TCP to \"host:port\" without changing it; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("send_data")
            .args(&["uri", "data"])
            .routes(RouteMask::ANY)
            .doc("Sends raw data to the address of a SIP URI; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("sendx")
            .args(&["uri", "sock", "data"])
            .routes(RouteMask::ANY)
            .doc("Sends raw data to a SIP URI from the given local socket; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes, Bytes)>();
        m.function("is_incoming")
            .routes(RouteMask::ANY)
            .doc("True (1) in event_route[corex:nio-*] when the message is incoming; -1 otherwise.")
            .declared::<()>();
        m.function("msg_iflag_set")
            .args(&["flagname"])
            .routes(RouteMask::ANY)
            .doc("Sets an internal message flag by name (\"USE_UAC_FROM\", ...); 1 on success, -1 on an unknown name.")
            .declared::<(Bytes,)>();
        m.function("msg_iflag_reset")
            .args(&["flagname"])
            .routes(RouteMask::ANY)
            .doc("Resets an internal message flag by name; 1 on success, -1 on an unknown name.")
            .declared::<(Bytes,)>();
        m.function("msg_iflag_is_set")
            .args(&["flagname"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the named internal message flag is set; -1 otherwise.")
            .declared::<(Bytes,)>();
        m.function("file_read")
            .args(&["fpath", "var"])
            .routes(RouteMask::ANY)
            .doc("Reads a file into a variable; 1 on success, -1 on failure.")
            .declared::<(Bytes, PvOut)>();
        m.function("file_write")
            .args(&["fpath", "content"])
            .routes(RouteMask::ANY)
            .doc("Writes text into a file (replacing it); 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("setxflag")
            .args(&["flag"])
            .routes(RouteMask::ANY)
            .doc("Sets an extended message flag (0..63); always 1.")
            .declared::<(Flag,)>();
        m.function("resetxflag")
            .args(&["flag"])
            .routes(RouteMask::ANY)
            .doc("Resets an extended message flag; always 1.")
            .declared::<(Flag,)>();
        m.function("isxflagset")
            .args(&["flag"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the extended message flag is set; -1 otherwise.")
            .declared::<(Flag,)>();
        m.function("set_send_socket")
            .args(&["saddr"])
            .routes(RouteMask::ANY)
            .doc("Forces the local socket for sending (\"proto:ip:port\"); 1 on success, -1 when no such socket.")
            .declared::<(Bytes,)>();
        m.function("set_send_socket_name")
            .args(&["sname"])
            .routes(RouteMask::ANY)
            .doc("Forces the local socket for sending by its name; 1 on success, -1 when no such socket.")
            .declared::<(Bytes,)>();
        m.function("set_recv_socket")
            .args(&["saddr"])
            .routes(RouteMask::ANY)
            .doc("Sets the socket the message is considered received on; 1 on success, -1 when no such socket.")
            .declared::<(Bytes,)>();
        m.function("set_recv_socket_name")
            .args(&["sname"])
            .routes(RouteMask::ANY)
            .doc("Sets the receiving socket by name; 1 on success, -1 when no such socket.")
            .declared::<(Bytes,)>();
        m.function("set_source_address")
            .args(&["saddr"])
            .routes(RouteMask::ANY)
            .doc("Sets the source address the message is considered received from; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("via_add_srvid")
            .args(&["flags"])
            .routes(RouteMask::ANY)
            .doc("When 1, a srvid parameter is added to the Via of forwarded requests; always 1.")
            .declared::<(i64,)>();
        m.function("via_add_xavp_params")
            .args(&["flags"])
            .routes(RouteMask::ANY)
            .doc("When 1, the fields of the via-params XAVP are added to the Via; always 1.")
            .declared::<(i64,)>();
        m.function("via_use_xavp_fields")
            .args(&["flags"])
            .routes(RouteMask::ANY)
            .doc("When 1, Via fields are taken from the via-fields XAVP; always 1.")
            .declared::<(i64,)>();
        m.function("via_reply_add_xavp_params")
            .args(&["flags"])
            .routes(RouteMask::ANY)
            .doc("When 1, the via-reply-params XAVP fields are added to the Via of replies; always 1.")
            .declared::<(i64,)>();
        m.function("is_faked_msg")
            .routes(RouteMask::ANY)
            .doc("True (1) when the message is a faked one (e.g. a failure_route built reply); -1 otherwise.")
            .declared::<()>();
        m.function("is_socket_name")
            .args(&["sockname"])
            .routes(RouteMask::ANY)
            .doc("True (1) when a listen socket with this name exists; -1 otherwise.")
            .declared::<(Bytes,)>();
        m.function("msg_vbflag_set")
            .args(&["flag"])
            .routes(RouteMask::ANY)
            .doc("Sets a flag in the message's variable-bit flag set; always 1.")
            .declared::<(Flag,)>();
        m.function("msg_vbflag_reset")
            .args(&["flag"])
            .routes(RouteMask::ANY)
            .doc("Resets a flag in the message's variable-bit flag set; always 1.")
            .declared::<(Flag,)>();
        m.function("msg_vbflag_is_set")
            .args(&["flag"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the flag is set in the variable-bit flag set; -1 otherwise.")
            .declared::<(Flag,)>();
        m.function("msg_vbflag_parse")
            .args(&["pvname"])
            .routes(RouteMask::ANY)
            .doc("Parses flag names from a variable into the variable-bit flag set; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
    }
}
