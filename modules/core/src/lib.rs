//! `core`: Core actions of the Kamailio config language that look like function calls (drop, exit, return, route() are statements of the script grammar).

use bytes::Bytes;
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
        m.function("forward")
            .routes(RouteMask::ANY)
            .doc("Forwards the message statelessly to $du or the R-URI (replies to the next Via); 1 on success, -1 on failure.")
            .handler(|ctx: &mut MsgContext| forward_to(ctx, None, None, None));
        m.function("forward")
            .args(&["host"])
            .routes(RouteMask::ANY)
            .doc("Forwards statelessly to the host (port 5060 or from SRV); 1 on success, -1 on failure.")
            .handler(|ctx: &mut MsgContext, host: Bytes| forward_to(ctx, Some(host), None, None));
        m.function("forward")
            .args(&["host", "port"])
            .routes(RouteMask::ANY)
            .doc("Forwards statelessly to host:port; 1 on success, -1 on failure.")
            .handler(|ctx: &mut MsgContext, host: Bytes, port: i64| {
                forward_to(ctx, Some(host), Some(port), None)
            });
        m.function("forward_udp")
            .routes(RouteMask::ANY)
            .doc("Forwards statelessly over UDP to $du or the R-URI; 1 on success, -1 on failure.")
            .handler(|ctx: &mut MsgContext| forward_to(ctx, None, None, Some(Proto::Udp)));
        m.function("forward_udp")
            .args(&["host"])
            .routes(RouteMask::ANY)
            .doc("Forwards statelessly over UDP to the host; 1 on success, -1 on failure.")
            .handler(|ctx: &mut MsgContext, host: Bytes| {
                forward_to(ctx, Some(host), None, Some(Proto::Udp))
            });
        m.function("forward_udp")
            .args(&["host", "port"])
            .routes(RouteMask::ANY)
            .doc("Forwards statelessly over UDP to host:port; 1 on success, -1 on failure.")
            .handler(|ctx: &mut MsgContext, host: Bytes, port: i64| {
                forward_to(ctx, Some(host), Some(port), Some(Proto::Udp))
            });
        m.function("forward_tcp")
            .routes(RouteMask::ANY)
            .doc("Forwards statelessly over TCP to $du or the R-URI; 1 on success, -1 on failure.")
            .handler(|ctx: &mut MsgContext| forward_to(ctx, None, None, Some(Proto::Tcp)));
        m.function("forward_tcp")
            .args(&["host"])
            .routes(RouteMask::ANY)
            .doc("Forwards statelessly over TCP to the host; 1 on success, -1 on failure.")
            .handler(|ctx: &mut MsgContext, host: Bytes| {
                forward_to(ctx, Some(host), None, Some(Proto::Tcp))
            });
        m.function("forward_tcp")
            .args(&["host", "port"])
            .routes(RouteMask::ANY)
            .doc("Forwards statelessly over TCP to host:port; 1 on success, -1 on failure.")
            .handler(|ctx: &mut MsgContext, host: Bytes, port: i64| {
                forward_to(ctx, Some(host), Some(port), Some(Proto::Tcp))
            });
        m.function("forward_tls")
            .routes(RouteMask::ANY)
            .doc("Forwards statelessly over TLS to $du or the R-URI; 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("forward_tls")
            .args(&["host"])
            .routes(RouteMask::ANY)
            .doc("Forwards statelessly over TLS to the host; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("forward_tls")
            .args(&["host", "port"])
            .routes(RouteMask::ANY)
            .doc("Forwards statelessly over TLS to host:port; 1 on success, -1 on failure.")
            .declared::<(Bytes, i64)>();
        m.function("forward_sctp")
            .routes(RouteMask::ANY)
            .doc("Forwards statelessly over SCTP to $du or the R-URI; 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("forward_sctp")
            .args(&["host"])
            .routes(RouteMask::ANY)
            .doc("Forwards statelessly over SCTP to the host; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("forward_sctp")
            .args(&["host", "port"])
            .routes(RouteMask::ANY)
            .doc("Forwards statelessly over SCTP to host:port; 1 on success, -1 on failure.")
            .declared::<(Bytes, i64)>();
        m.function("log")
            .args(&["message"])
            .routes(RouteMask::ANY)
            .doc("Logs a plain message (no pseudo-variables) at the default level; always 1.")
            .declared::<(Bytes,)>();
        m.function("log")
            .args(&["level", "message"])
            .routes(RouteMask::ANY)
            .doc("Logs a plain message at the numeric level; always 1.")
            .declared::<(i64, Bytes)>();
        m.function("setflag")
            .args(&["flag"])
            .routes(RouteMask::ANY)
            .doc("Sets a message flag (0..63), visible to tm/acc/registrar for the whole transaction; always 1.")
            .handler(|ctx: &mut MsgContext, f: Flag| {
                set_bit(&mut ctx.flags, f);
                Ok(Verdict::TRUE)
            });
        m.function("resetflag")
            .args(&["flag"])
            .routes(RouteMask::ANY)
            .doc("Resets a message flag; always 1.")
            .handler(|ctx: &mut MsgContext, f: Flag| {
                reset_bit(&mut ctx.flags, f);
                Ok(Verdict::TRUE)
            });
        m.function("isflagset")
            .args(&["flag"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the message flag is set; -1 otherwise.")
            .handler(|ctx: &mut MsgContext, f: Flag| Ok(Verdict::from(bit_is_set(ctx.flags, f))));
        m.function("setavpflag")
            .args(&["avp", "flag"])
            .routes(RouteMask::ANY)
            .doc("Sets a flag declared with avpflags on an AVP; 1 on success, -1 on failure.")
            .declared::<(Bytes, i64)>();
        m.function("resetavpflag")
            .args(&["avp", "flag"])
            .routes(RouteMask::ANY)
            .doc("Resets an AVP flag; 1 on success, -1 on failure.")
            .declared::<(Bytes, i64)>();
        m.function("isavpflagset")
            .args(&["avp", "flag"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the AVP flag is set; -1 otherwise.")
            .declared::<(Bytes, i64)>();
        m.function("rewriteuri")
            .args(&["uri"])
            .routes(RouteMask::ANY)
            .doc("Replaces the whole R-URI; 1 on success, -1 on failure.")
            .handler(rewrite_uri);
        m.function("seturi")
            .args(&["uri"])
            .routes(RouteMask::ANY)
            .doc("Alias of rewriteuri(); 1 on success, -1 on failure.")
            .handler(rewrite_uri);
        m.function("rewritehost")
            .args(&["host"])
            .routes(RouteMask::ANY)
            .doc("Replaces the R-URI host; 1 on success, -1 on failure.")
            .handler(rewrite_host);
        m.function("sethost")
            .args(&["host"])
            .routes(RouteMask::ANY)
            .doc("Alias of rewritehost(); 1 on success, -1 on failure.")
            .handler(rewrite_host);
        m.function("seth")
            .args(&["host"])
            .routes(RouteMask::ANY)
            .doc("Alias of rewritehost(); 1 on success, -1 on failure.")
            .handler(rewrite_host);
        m.function("rewritehostport")
            .args(&["hostport"])
            .routes(RouteMask::ANY)
            .doc("Replaces the R-URI host and port (\"host:port\"); 1 on success, -1 on failure.")
            .handler(rewrite_hostport);
        m.function("sethostport")
            .args(&["hostport"])
            .routes(RouteMask::ANY)
            .doc("Alias of rewritehostport(); 1 on success, -1 on failure.")
            .handler(rewrite_hostport);
        m.function("sethp")
            .args(&["hostport"])
            .routes(RouteMask::ANY)
            .doc("Alias of rewritehostport(); 1 on success, -1 on failure.")
            .handler(rewrite_hostport);
        m.function("rewritehostporttrans")
            .args(&["hostport"])
            .routes(RouteMask::ANY)
            .doc("Replaces the R-URI host, port and transport (\"host:port;transport=x\"); 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("sethostporttrans")
            .args(&["hostport"])
            .routes(RouteMask::ANY)
            .doc("Alias of rewritehostporttrans(); 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("sethpt")
            .args(&["hostport"])
            .routes(RouteMask::ANY)
            .doc("Alias of rewritehostporttrans(); 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("rewriteuser")
            .args(&["user"])
            .routes(RouteMask::ANY)
            .doc(
                "Replaces the R-URI user part (adds one when absent); 1 on success, -1 on failure.",
            )
            .handler(rewrite_user);
        m.function("setuser")
            .args(&["user"])
            .routes(RouteMask::ANY)
            .doc("Alias of rewriteuser(); 1 on success, -1 on failure.")
            .handler(rewrite_user);
        m.function("setu")
            .args(&["user"])
            .routes(RouteMask::ANY)
            .doc("Alias of rewriteuser(); 1 on success, -1 on failure.")
            .handler(rewrite_user);
        m.function("rewriteuserpass")
            .args(&["userpass"])
            .routes(RouteMask::ANY)
            .doc("Replaces the R-URI password; 1 on success, -1 on failure.")
            .handler(rewrite_userpass);
        m.function("setuserpass")
            .args(&["userpass"])
            .routes(RouteMask::ANY)
            .doc("Alias of rewriteuserpass(); 1 on success, -1 on failure.")
            .handler(rewrite_userpass);
        m.function("setup")
            .args(&["userpass"])
            .routes(RouteMask::ANY)
            .doc("Alias of rewriteuserpass(); 1 on success, -1 on failure.")
            .handler(rewrite_userpass);
        m.function("rewriteport")
            .args(&["port"])
            .routes(RouteMask::ANY)
            .doc("Replaces the R-URI port; 1 on success, -1 on failure.")
            .handler(rewrite_port);
        m.function("setport")
            .args(&["port"])
            .routes(RouteMask::ANY)
            .doc("Alias of rewriteport(); 1 on success, -1 on failure.")
            .handler(rewrite_port);
        m.function("setp")
            .args(&["port"])
            .routes(RouteMask::ANY)
            .doc("Alias of rewriteport(); 1 on success, -1 on failure.")
            .handler(rewrite_port);
        m.function("revert_uri")
            .routes(RouteMask::ANY)
            .doc("Restores the R-URI received with the message; 1 (-1 on a reply).")
            .handler(revert_uri);
        m.function("prefix")
            .args(&["prefix"])
            .routes(RouteMask::ANY)
            .doc("Adds a prefix to the R-URI user part; 1 on success, -1 on failure.")
            .handler(prefix);
        m.function("strip")
            .args(&["count"])
            .routes(RouteMask::ANY)
            .doc("Removes count characters from the start of the R-URI user part; 1 on success, -1 on failure.")
            .handler(strip);
        m.function("strip_tail")
            .args(&["count"])
            .routes(RouteMask::ANY)
            .doc("Removes count characters from the end of the R-URI user part; 1 on success, -1 on failure.")
            .handler(strip_tail);
        m.function("userphone")
            .routes(RouteMask::ANY)
            .doc("Adds \";user=phone\" to the R-URI; 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("remove_branch")
            .args(&["index"])
            .routes(RouteMask::ANY)
            .doc("Removes the branch with this index from the destination set; 1 on success, -1 on a bad index.")
            .declared::<(i64,)>();
        m.function("clear_branches")
            .routes(RouteMask::ANY)
            .doc("Removes every branch from the destination set (keeps the R-URI); always 1.")
            .declared::<()>();
        m.function("set_advertised_address")
            .args(&["address"])
            .routes(RouteMask::ANY)
            .doc("Sets the address advertised in Via/Record-Route for this message; always 1.")
            .declared::<(Bytes,)>();
        m.function("set_advertised_port")
            .args(&["port"])
            .routes(RouteMask::ANY)
            .doc("Sets the port advertised in Via/Record-Route for this message; always 1.")
            .declared::<(i64,)>();
        m.function("force_send_socket")
            .args(&["socket"])
            .routes(RouteMask::ANY)
            .doc("Forces the local socket (\"proto:ip:port\") used to send this message; 1 on success, -1 when no such socket.")
            .declared::<(Bytes,)>();
        m.function("force_rport")
            .routes(RouteMask::ANY)
            .doc("Adds rport to the top Via so the reply goes back to the source port (RFC 3581); always 1.")
            .handler(force_rport);
        m.function("add_rport")
            .routes(RouteMask::ANY)
            .doc("Alias of force_rport(); always 1.")
            .handler(force_rport);
        m.function("add_local_rport")
            .routes(RouteMask::ANY)
            .doc("Adds the rport parameter to the Via this proxy inserts; always 1.")
            .handler(add_local_rport);
        m.function("force_tcp_alias")
            .routes(RouteMask::ANY)
            .doc("Makes the TCP connection reusable for requests to the Via address (port of the Via); always 1.")
            .declared::<()>();
        m.function("force_tcp_alias")
            .args(&["port"])
            .routes(RouteMask::ANY)
            .doc("As force_tcp_alias() with the alias port given; always 1.")
            .declared::<(i64,)>();
        m.function("add_tcp_alias")
            .routes(RouteMask::ANY)
            .doc("Alias of force_tcp_alias(); always 1.")
            .declared::<()>();
        m.function("add_tcp_alias")
            .args(&["port"])
            .routes(RouteMask::ANY)
            .doc("Alias of force_tcp_alias(port) (shadows corex's add_tcp_alias, as in Kamailio's parser); always 1.")
            .declared::<(i64,)>();
        m.function("udp_mtu_try_proto")
            .args(&["proto"])
            .routes(RouteMask::ANY)
            .doc("Protocol (TCP, TLS, SCTP) to switch to when a request exceeds the UDP MTU; always 1.")
            .declared::<(Bytes,)>();
        m.function("set_forward_no_connect")
            .routes(RouteMask::ANY)
            .doc("Forwarding of this message must not open a new TCP/TLS connection; always 1.")
            .handler(|ctx: &mut MsgContext| conn_flag(ctx, |f| f.forward_no_connect = true));
        m.function("set_reply_no_connect")
            .routes(RouteMask::ANY)
            .doc("The reply to this message must not open a new TCP/TLS connection; always 1.")
            .handler(|ctx: &mut MsgContext| conn_flag(ctx, |f| f.reply_no_connect = true));
        m.function("set_forward_close")
            .routes(RouteMask::ANY)
            .doc("Closes the TCP/TLS connection after forwarding this message; always 1.")
            .handler(|ctx: &mut MsgContext| conn_flag(ctx, |f| f.forward_close = true));
        m.function("set_reply_close")
            .routes(RouteMask::ANY)
            .doc("Closes the TCP/TLS connection after sending the reply; always 1.")
            .handler(|ctx: &mut MsgContext| conn_flag(ctx, |f| f.reply_close = true));
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
fn forward_to(
    ctx: &mut MsgContext,
    host: Option<Bytes>,
    port: Option<i64>,
    proto: Option<Proto>,
) -> FnResult {
    let port = match port {
        Some(p) if (1..=65535).contains(&p) => Some(p as u16),
        Some(p) => return Err(FnError::new(format!("port {p} is out of range"))),
        None => None,
    };
    let target = match host {
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
    };
    ctx.services("forward")?.forward(ctx, target)?;
    Ok(Verdict::TRUE)
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
