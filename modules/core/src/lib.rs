//! `core`: Core actions of the Kamailio config language that look like function calls (drop, exit, return, route() are statements of the script grammar).

use bytes::Bytes;
use ferrosip_api::registry::{apply_result, ApplyResult, BoxFuture, FnRow};
use ferrosip_api::{FnError, FnResult, Proto, Target};
pub use uri_ops::ConnFlags;
use uri_ops::*;

#[cfg(test)]
mod tests_ops;
pub mod uri_ops;
use ferrosip_api::args::Flag;
use ferrosip_api::{Module, ModuleBuilder, MsgContext, RouteMask, Verdict};

/// The `core` module.
pub struct CoreModule;

impl Module for CoreModule {
    fn name(&self) -> &'static str {
        "core"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Core actions of the Kamailio config language that look like function calls (drop, exit, return, route() are statements of the script grammar).");
        m.always_loaded();
        const HOST_PORT: &[&str] = &["host", "port"];
        const AVP_FLAG: &[&str] = &["avp", "flag"];
        let setflag = |ctx: &mut MsgContext, f: Flag| {
            set_bit(&mut ctx.flags, f);
            Ok(Verdict::TRUE)
        };
        let resetflag = |ctx: &mut MsgContext, f: Flag| {
            reset_bit(&mut ctx.flags, f);
            Ok(Verdict::TRUE)
        };
        #[rustfmt::skip]
        m.functions([
            FnRow::asynchronous("forward", &[], RouteMask::ANY, "Forwards the message statelessly to $du or the R-URI (replies to the next Via); 1 on success, -1 on failure.", |ctx: &mut MsgContext| forward_async(ctx, None, None, None)),
            FnRow::asynchronous("forward", &["host"], RouteMask::ANY, "Forwards statelessly to the host (port 5060 or from SRV); 1 on success, -1 on failure.", |ctx: &mut MsgContext, host: Bytes| forward_async(ctx, Some(host), None, None)),
            FnRow::asynchronous("forward", HOST_PORT, RouteMask::ANY, "Forwards statelessly to host:port; 1 on success, -1 on failure.", |ctx: &mut MsgContext, host: Bytes, port: i64| forward_async(ctx, Some(host), Some(port), None)),
            FnRow::asynchronous("forward_udp", &[], RouteMask::ANY, "Forwards statelessly over UDP to $du or the R-URI; 1 on success, -1 on failure.", |ctx: &mut MsgContext| forward_async(ctx, None, None, Some(Proto::Udp))),
            FnRow::asynchronous("forward_udp", &["host"], RouteMask::ANY, "Forwards statelessly over UDP to the host; 1 on success, -1 on failure.", |ctx: &mut MsgContext, host: Bytes| forward_async(ctx, Some(host), None, Some(Proto::Udp))),
            FnRow::asynchronous("forward_udp", HOST_PORT, RouteMask::ANY, "Forwards statelessly over UDP to host:port; 1 on success, -1 on failure.", |ctx: &mut MsgContext, host: Bytes, port: i64| forward_async(ctx, Some(host), Some(port), Some(Proto::Udp))),
            FnRow::asynchronous("forward_tcp", &[], RouteMask::ANY, "Forwards statelessly over TCP to $du or the R-URI; 1 on success, -1 on failure.", |ctx: &mut MsgContext| forward_async(ctx, None, None, Some(Proto::Tcp))),
            FnRow::asynchronous("forward_tcp", &["host"], RouteMask::ANY, "Forwards statelessly over TCP to the host; 1 on success, -1 on failure.", |ctx: &mut MsgContext, host: Bytes| forward_async(ctx, Some(host), None, Some(Proto::Tcp))),
            FnRow::asynchronous("forward_tcp", HOST_PORT, RouteMask::ANY, "Forwards statelessly over TCP to host:port; 1 on success, -1 on failure.", |ctx: &mut MsgContext, host: Bytes, port: i64| forward_async(ctx, Some(host), Some(port), Some(Proto::Tcp))),
            FnRow::asynchronous("forward_tls", &[], RouteMask::ANY, "Forwards statelessly over TLS to $du or the R-URI; 1 on success, -1 on failure.", |ctx: &mut MsgContext| forward_async(ctx, None, None, Some(Proto::Tls))),
            FnRow::asynchronous("forward_tls", &["host"], RouteMask::ANY, "Forwards statelessly over TLS to the host (port 5061); 1 on success, -1 on failure.", |ctx: &mut MsgContext, host: Bytes| forward_async(ctx, Some(host), None, Some(Proto::Tls))),
            FnRow::asynchronous("forward_tls", HOST_PORT, RouteMask::ANY, "Forwards statelessly over TLS to host:port; 1 on success, -1 on failure.", |ctx: &mut MsgContext, host: Bytes, port: i64| forward_async(ctx, Some(host), Some(port), Some(Proto::Tls))),
            FnRow::declared::<()>("forward_sctp", &[], RouteMask::ANY, "Forwards statelessly over SCTP to $du or the R-URI; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("forward_sctp", &["host"], RouteMask::ANY, "Forwards statelessly over SCTP to the host; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, i64)>("forward_sctp", HOST_PORT, RouteMask::ANY, "Forwards statelessly over SCTP to host:port; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("log", &["message"], RouteMask::ALL, "Logs a plain message (no pseudo-variables) at the default level; always 1."),
            FnRow::declared::<(i64, Bytes)>("log", &["level", "message"], RouteMask::ALL, "Logs a plain message at the numeric level; always 1."),
            FnRow::sync("setflag", &["flag"], RouteMask::ALL, "Sets a message flag (0..63), visible to tm/acc/registrar for the whole transaction; always 1.", setflag),
            FnRow::sync("resetflag", &["flag"], RouteMask::ALL, "Resets a message flag; always 1.", resetflag),
            FnRow::sync("isflagset", &["flag"], RouteMask::ALL, "True (1) when the message flag is set; -1 otherwise.", |ctx: &mut MsgContext, f: Flag| Ok(Verdict::from(bit_is_set(ctx.flags, f)))),
            FnRow::declared::<(Bytes, i64)>("setavpflag", AVP_FLAG, RouteMask::ANY, "Sets a flag declared with avpflags on an AVP; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, i64)>("resetavpflag", AVP_FLAG, RouteMask::ANY, "Resets an AVP flag; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, i64)>("isavpflagset", AVP_FLAG, RouteMask::ANY, "True (1) when the AVP flag is set; -1 otherwise."),
            FnRow::sync("rewriteuri", &["uri"], RouteMask::ANY, "Replaces the whole R-URI; 1 on success, -1 on failure.", rewrite_uri),
            FnRow::sync("seturi", &["uri"], RouteMask::ANY, "Alias of rewriteuri(); 1 on success, -1 on failure.", rewrite_uri),
            FnRow::sync("rewritehost", &["host"], RouteMask::ANY, "Replaces the R-URI host; 1 on success, -1 on failure.", rewrite_host),
            FnRow::sync("sethost", &["host"], RouteMask::ANY, "Alias of rewritehost(); 1 on success, -1 on failure.", rewrite_host),
            FnRow::sync("seth", &["host"], RouteMask::ANY, "Alias of rewritehost(); 1 on success, -1 on failure.", rewrite_host),
            FnRow::sync("rewritehostport", &["hostport"], RouteMask::ANY, "Replaces the R-URI host and port (\"host:port\"); 1 on success, -1 on failure.", rewrite_hostport),
            FnRow::sync("sethostport", &["hostport"], RouteMask::ANY, "Alias of rewritehostport(); 1 on success, -1 on failure.", rewrite_hostport),
            FnRow::sync("sethp", &["hostport"], RouteMask::ANY, "Alias of rewritehostport(); 1 on success, -1 on failure.", rewrite_hostport),
            FnRow::declared::<(Bytes,)>("rewritehostporttrans", &["hostport"], RouteMask::ANY, "Replaces the R-URI host, port and transport (\"host:port;transport=x\"); 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("sethostporttrans", &["hostport"], RouteMask::ANY, "Alias of rewritehostporttrans(); 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("sethpt", &["hostport"], RouteMask::ANY, "Alias of rewritehostporttrans(); 1 on success, -1 on failure."),
            FnRow::sync("rewriteuser", &["user"], RouteMask::ANY, "Replaces the R-URI user part (adds one when absent); 1 on success, -1 on failure.", rewrite_user),
            FnRow::sync("setuser", &["user"], RouteMask::ANY, "Alias of rewriteuser(); 1 on success, -1 on failure.", rewrite_user),
            FnRow::sync("setu", &["user"], RouteMask::ANY, "Alias of rewriteuser(); 1 on success, -1 on failure.", rewrite_user),
            FnRow::sync("rewriteuserpass", &["userpass"], RouteMask::ANY, "Replaces the R-URI password; 1 on success, -1 on failure.", rewrite_userpass),
            FnRow::sync("setuserpass", &["userpass"], RouteMask::ANY, "Alias of rewriteuserpass(); 1 on success, -1 on failure.", rewrite_userpass),
            FnRow::sync("setup", &["userpass"], RouteMask::ANY, "Alias of rewriteuserpass(); 1 on success, -1 on failure.", rewrite_userpass),
            FnRow::sync("rewriteport", &["port"], RouteMask::ANY, "Replaces the R-URI port; 1 on success, -1 on failure.", rewrite_port),
            FnRow::sync("setport", &["port"], RouteMask::ANY, "Alias of rewriteport(); 1 on success, -1 on failure.", rewrite_port),
            FnRow::sync("setp", &["port"], RouteMask::ANY, "Alias of rewriteport(); 1 on success, -1 on failure.", rewrite_port),
            FnRow::sync("revert_uri", &[], RouteMask::ANY, "Restores the R-URI received with the message; 1 (-1 on a reply).", revert_uri),
            FnRow::sync("prefix", &["prefix"], RouteMask::ANY, "Adds a prefix to the R-URI user part; 1 on success, -1 on failure.", prefix),
            FnRow::sync("strip", &["count"], RouteMask::ANY, "Removes count characters from the start of the R-URI user part; 1 on success, -1 on failure.", strip),
            FnRow::sync("strip_tail", &["count"], RouteMask::ANY, "Removes count characters from the end of the R-URI user part; 1 on success, -1 on failure.", strip_tail),
            FnRow::declared::<()>("userphone", &[], RouteMask::ANY, "Adds \";user=phone\" to the R-URI; 1 on success, -1 on failure."),
            FnRow::declared::<(i64,)>("remove_branch", &["index"], RouteMask::ANY, "Removes the branch with this index from the destination set; 1 on success, -1 on a bad index."),
            FnRow::declared::<()>("clear_branches", &[], RouteMask::ANY, "Removes every branch from the destination set (keeps the R-URI); always 1."),
            FnRow::declared::<(Bytes,)>("set_advertised_address", &["address"], RouteMask::ANY, "Sets the address advertised in Via/Record-Route for this message; always 1."),
            FnRow::declared::<(i64,)>("set_advertised_port", &["port"], RouteMask::ANY, "Sets the port advertised in Via/Record-Route for this message; always 1."),
            FnRow::declared::<(Bytes,)>("force_send_socket", &["socket"], RouteMask::ANY, "Forces the local socket (\"proto:ip:port\") used to send this message; 1 on success, -1 when no such socket."),
            FnRow::sync("force_rport", &[], RouteMask::ANY, "Adds rport to the top Via so the reply goes back to the source port (RFC 3581); always 1.", force_rport),
            FnRow::sync("add_rport", &[], RouteMask::ANY, "Alias of force_rport(); always 1.", force_rport),
            FnRow::sync("add_local_rport", &[], RouteMask::ANY, "Adds the rport parameter to the Via this proxy inserts; always 1.", add_local_rport),
            FnRow::declared::<()>("force_tcp_alias", &[], RouteMask::ANY, "Makes the TCP connection reusable for requests to the Via address (port of the Via); always 1."),
            FnRow::declared::<(i64,)>("force_tcp_alias", &["port"], RouteMask::ANY, "As force_tcp_alias() with the alias port given; always 1."),
            FnRow::declared::<()>("add_tcp_alias", &[], RouteMask::ANY, "Alias of force_tcp_alias(); always 1."),
            FnRow::declared::<(i64,)>("add_tcp_alias", &["port"], RouteMask::ANY, "Alias of force_tcp_alias(port) (shadows corex's add_tcp_alias, as in Kamailio's parser); always 1."),
            FnRow::declared::<(Bytes,)>("udp_mtu_try_proto", &["proto"], RouteMask::ANY, "Protocol (TCP, TLS, SCTP) to switch to when a request exceeds the UDP MTU; always 1."),
            FnRow::sync("set_forward_no_connect", &[], RouteMask::ANY, "Forwarding of this message must not open a new TCP/TLS connection; always 1.", |ctx: &mut MsgContext| conn_flag(ctx, |f| f.forward_no_connect = true)),
            FnRow::sync("set_reply_no_connect", &[], RouteMask::ANY, "The reply to this message must not open a new TCP/TLS connection; always 1.", |ctx: &mut MsgContext| conn_flag(ctx, |f| f.reply_no_connect = true)),
            FnRow::sync("set_forward_close", &[], RouteMask::ANY, "Closes the TCP/TLS connection after forwarding this message; always 1.", |ctx: &mut MsgContext| conn_flag(ctx, |f| f.forward_close = true)),
            FnRow::sync("set_reply_close", &[], RouteMask::ANY, "Closes the TCP/TLS connection after sending the reply; always 1.", |ctx: &mut MsgContext| conn_flag(ctx, |f| f.reply_close = true)),
        ]);
    }
}

fn set_bit(bits: &mut u64, f: Flag) {
    *bits |= 1 << f.0;
}

fn reset_bit(bits: &mut u64, f: Flag) {
    *bits &= !(1 << f.0);
}

fn bit_is_set(bits: u64, f: Flag) -> bool {
    bits & (1 << f.0) != 0
}

/// Stateless forwarding through the server: to `host[:port]` when given, else to `$du` or
/// the R-URI (with `proto` forced when given).
/// Where `forward*()` sends: an explicit host, else `$du` / the R-URI (with `forward_tcp()`
/// and the like, over their transport).
fn forward_target(
    ctx: &MsgContext,
    host: Option<Bytes>,
    port: Option<i64>,
    proto: Option<Proto>,
) -> Result<Option<Target>, FnError> {
    let port = match port {
        Some(p) if (1..=65535).contains(&p) => Some(p as u16),
        Some(p) => return Err(FnError::new(format!("port {p} is out of range"))),
        None => None,
    };
    Ok(match host {
        Some(host) => Some(Target { host, port, proto }),
        None => match (&ctx.dst_uri, proto) {
            // forward_tcp() without a host: the usual destination, over TCP.
            (_, Some(p)) => {
                let uri = ctx
                    .dst_uri
                    .clone()
                    .or_else(|| ctx.msg.request_uri_bytes())
                    .ok_or_else(|| FnError::new("no destination"))?;
                let u = ferrosip_sip::Uri::parse(&uri).map_err(|e| FnError::new(e.to_string()))?;
                let host = u
                    .host()
                    .ok_or_else(|| FnError::new("destination has no host"))?;
                Some(Target {
                    host: Bytes::copy_from_slice(host),
                    port: u.port(),
                    proto: Some(p),
                })
            }
            _ => None,
        },
    })
}

fn forward_now(ctx: &mut MsgContext, target: Option<Target>) -> FnResult {
    ctx.services("forward")?.forward(ctx, target)?;
    Ok(Verdict::TRUE)
}

/// `forward*()`: a next hop whose host name is not in the DNS cache is looked up first;
/// the route waits for the answer (RFC 3263) without holding a worker, then sends.
fn forward_async(
    ctx: &mut MsgContext,
    host: Option<Bytes>,
    port: Option<i64>,
    proto: Option<Proto>,
) -> BoxFuture<'static, ApplyResult> {
    let target = match forward_target(ctx, host, port, proto) {
        Ok(t) => t,
        Err(e) => return Box::pin(std::future::ready(apply_result(move |_| Err(e)))),
    };
    let lookup = ctx
        .services
        .as_ref()
        .and_then(|s| s.forward_lookup(ctx, target.as_ref()));
    match lookup {
        None => Box::pin(std::future::ready(apply_result(move |ctx| {
            forward_now(ctx, target)
        }))),
        Some(lookup) => Box::pin(async move {
            let hop = lookup.await;
            apply_result(move |ctx| forward_now(ctx, Some(hop?)))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_bits() {
        let mut bits = 0u64;
        set_bit(&mut bits, Flag(0));
        set_bit(&mut bits, Flag(63));
        assert!(bit_is_set(bits, Flag(0)));
        assert!(bit_is_set(bits, Flag(63)));
        assert!(!bit_is_set(bits, Flag(5)));
        reset_bit(&mut bits, Flag(63));
        assert!(!bit_is_set(bits, Flag(63)));
        assert_eq!(bits, 1);
    }
}
