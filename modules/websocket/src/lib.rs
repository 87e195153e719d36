//! `websocket`: SIP over WebSocket (RFC 7118), as Kamailio's module of that name. The
//! transport itself is the server's (`listen=ws:` and `listen=wss:` sockets, and
//! connections upgraded on `tcp`/`tls` sockets by `ws_handle_handshake()` in
//! `event_route[xhttp:request]`); it reads this module's keep-alive parameters. Here: the
//! checks of those parameters, the upgrade check, `$ws_conid`, `ws_close()` and the
//! `ws.dump` / `ws.close` RPC commands.

use bytes::Bytes;
use ferrosip_api::registry::FnRow;
use ferrosip_api::websocket::{HttpReply, HttpRequest, WsControl, WsSettings, WsUpgrade};
use ferrosip_api::{
    FnError, FnResult, Module, ModuleBuilder, MsgContext, ParamType, Proto, Pv, PvError, PvIndex,
    RouteMask, RpcValue, Value, Verdict,
};
use std::sync::{Arc, OnceLock};

/// The module.
pub struct WebsocketModule;

/// The transports' connections, once the server runs.
type ControlSlot = Arc<OnceLock<Arc<dyn WsControl>>>;

/// The WebSocket connection `ctx`'s message came on: the transports' control and its id.
fn connection_of(ctx: &MsgContext) -> Option<(Arc<dyn WsControl>, u64)> {
    if !matches!(ctx.net.proto, Proto::Ws | Proto::Wss) {
        return None;
    }
    let control = ctx.services.as_ref()?.websocket()?;
    let id = control.connection_id(ctx.net.proto, ctx.net.source)?;
    Some((control, id))
}

/// `$ws_conid`.
struct ConnIdPv;

impl Pv for ConnIdPv {
    fn get(&self, ctx: &MsgContext, _index: PvIndex) -> Result<Value, PvError> {
        Ok(connection_of(ctx).map_or(Value::Null, |(_, id)| Value::Int(id as i64)))
    }
}

/// A close status a close frame may carry (RFC 6455 §7.4: 1000-4999, without the ones
/// reserved for the endpoint's own use).
fn close_code(code: i64) -> Result<u16, FnError> {
    match code {
        1000..=1003 | 1007..=1011 | 3000..=4999 => Ok(code as u16),
        _ => Err(FnError::new(format!(
            "ws_close: status {code} cannot be sent (1000-1003, 1007-1011 or 3000-4999)"
        ))),
    }
}

fn close(ctx: &MsgContext, code: i64, reason: &[u8], conid: Option<i64>) -> FnResult {
    let code = close_code(code)?;
    let reason = String::from_utf8_lossy(reason);
    // A close frame's payload is at most 125 bytes, the status's 2 included.
    let reason: String = reason.chars().take(61).collect();
    let target = match conid {
        None => connection_of(ctx),
        Some(id) => ctx
            .services
            .as_ref()
            .and_then(|s| s.websocket())
            .map(|c| (c, id.max(0) as u64)),
    };
    Ok(match target {
        Some((control, id)) if control.close(id, code, &reason) => Verdict::TRUE,
        _ => Verdict::FALSE,
    })
}

/// Whether a comma-separated header value holds `token` (case-insensitive).
fn has_token<'a>(values: impl IntoIterator<Item = &'a [u8]>, token: &[u8]) -> bool {
    values.into_iter().any(|v| {
        v.split(|c| *c == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
    })
}

/// Why an HTTP request is not a WebSocket upgrade we take (RFC 6455 §4.2.1, RFC 7118
/// §4): the status and reason to answer, or `None` when it is one.
fn upgrade_refusal(msg: &ferrosip_sip::SipMessage) -> Option<(u16, &'static str)> {
    if !msg
        .method_bytes()
        .is_some_and(|m| m.eq_ignore_ascii_case(b"GET"))
    {
        return Some((400, "Bad Request (not a GET)"));
    }
    if !has_token(msg.headers_named("Upgrade"), b"websocket")
        || !has_token(msg.headers_named("Connection"), b"upgrade")
    {
        return Some((400, "Bad Request (not a WebSocket upgrade)"));
    }
    if msg
        .header("Sec-WebSocket-Key")
        .is_none_or(|k| k.trim_ascii().is_empty())
    {
        return Some((400, "Bad Request (no Sec-WebSocket-Key)"));
    }
    if msg.header("Sec-WebSocket-Version").map(<[u8]>::trim_ascii) != Some(b"13") {
        return Some((426, "Upgrade Required"));
    }
    if !has_token(msg.headers_named("Sec-WebSocket-Protocol"), b"sip") {
        return Some((400, "Bad Request (the sip subprotocol is not offered)"));
    }
    None
}

fn handle_handshake(ctx: &mut MsgContext) -> FnResult {
    if ctx.ext.get::<HttpRequest>().is_none() {
        return Err(FnError::new(
            "ws_handle_handshake: not handling an HTTP request (only in event_route[xhttp:request])",
        ));
    }
    match upgrade_refusal(&ctx.msg) {
        None => {
            ctx.ext.remove::<HttpReply>();
            ctx.ext.insert(WsUpgrade);
        }
        Some((code, reason)) => {
            let reply = format!(
                "HTTP/1.1 {code} {reason}\r\nServer: Ferrosip\r\nConnection: close\r\n{}Content-Length: 0\r\n\r\n",
                if code == 426 { "Sec-WebSocket-Version: 13\r\n" } else { "" }
            );
            ctx.ext.insert(HttpReply(Bytes::from(reply)));
        }
    }
    Ok(Verdict::STOP)
}

fn dump(control: &dyn WsControl) -> RpcValue {
    let list = control
        .connections()
        .into_iter()
        .map(|c| {
            RpcValue::Struct(vec![
                ("id".into(), RpcValue::Int(c.id as i64)),
                ("proto".into(), RpcValue::Str(c.proto.name().into())),
                ("src".into(), RpcValue::Str(c.peer.to_string())),
                ("dst".into(), RpcValue::Str(c.local.to_string())),
                ("age".into(), RpcValue::Int(c.age_secs as i64)),
                ("idle".into(), RpcValue::Int(c.idle_secs as i64)),
            ])
        })
        .collect::<Vec<_>>();
    RpcValue::Struct(vec![
        ("connections".into(), RpcValue::Array(list.clone())),
        ("count".into(), RpcValue::Int(list.len() as i64)),
    ])
}

impl Module for WebsocketModule {
    fn name(&self) -> &'static str {
        "websocket"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("SIP over WebSocket (RFC 7118): the `listen=ws:` and `listen=wss:` transports' keep-alives, `$ws_conid`, `ws_close()` and the `ws.dump`/`ws.close` commands. The upgrade needs the `sip` subprotocol; each frame carries one SIP message. Limits are the TCP ones (`tcp_max_msg_size` is the largest frame, `tcp_connection_lifetime` the idle time, `tcp_max_connections` / `tls_max_connections` the connections). See docs/websocket.md.");
        m.param("keepalive_mechanism", ParamType::Int, 1_i64, "Keep-alive sent on an idle connection: 0 none, 1 a ping (the client answers with a pong), 2 an unsolicited pong.");
        m.param("keepalive_timeout", ParamType::Int, 180_i64, "Seconds without a frame from the client after which a keep-alive is sent (again every keepalive_timeout while idle), 1 to 86400. Any frame from the client, its pongs included, refreshes tcp_connection_lifetime: keep that longer than this.");
        m.param(
            "keepalive_interval",
            ParamType::Int,
            1_i64,
            "Seconds between two checks of a connection for a due keep-alive, 1 to 86400.",
        );
        m.param("keepalive_processes", ParamType::Int, 1_i64, "Kamailio's number of keep-alive processes. Ferrosip has one process and each connection checks its own keep-alive: any value 1 to 16 is accepted and changes nothing.");
        m.param(
            "ping_application_data",
            ParamType::Str,
            "Ferrosip",
            "Payload of the pings and pongs sent (at most 125 bytes).",
        );
        m.param("sub_protocols", ParamType::Int, 1_i64, "Subprotocols accepted in the upgrade: 1 (sip) only; 2 and 3 (MSRP) are refused at load.");
        m.param(
            "cors_mode",
            ParamType::Int,
            0_i64,
            "CORS headers in the upgrade answer: 0 (none) only; other modes are refused at load.",
        );
        let _checked = m.state(|p| {
            let settings = WsSettings::from_params(p)?;
            match p.get("keepalive_processes").as_int() {
                Some(1..=16) | None => {}
                Some(n) => return Err(format!("keepalive_processes {n}: 1 to 16")),
            }
            match p.get("cors_mode").as_int() {
                Some(0) | None => {}
                Some(n) => {
                    return Err(format!(
                        "cors_mode {n}: only 0 (no CORS headers) is available"
                    ))
                }
            }
            Ok(settings)
        });
        let control: ControlSlot = Arc::default();
        {
            let control = control.clone();
            m.on_ready(move |services| {
                if let Some(c) = services.websocket() {
                    let _ = control.set(c);
                }
            });
        }
        m.pv_fixed(
            "ws_conid",
            "Id of the WebSocket connection the message came on (as ws.dump lists it); $null on another transport.",
            ConnIdPv,
        );
        let c = control.clone();
        m.rpc(
            "ws.dump",
            "Lists the open WebSocket connections: id, proto (ws/wss), client address (src), our address (dst), age and idle time in seconds; then their count.",
            move |_args| {
                let control = c.get().ok_or("no WebSocket transport is running")?;
                Ok(dump(&**control))
            },
        );
        let c = control;
        m.rpc(
            "ws.close",
            "Closes connection ID (from ws.dump) with status 1000 (normal closure).",
            move |args| {
                let control = c.get().ok_or("no WebSocket transport is running")?;
                let id = args
                    .first()
                    .and_then(|v| v.as_int())
                    .ok_or("ws.close: needs a connection id")?;
                if control.close(id.max(0) as u64, 1000, "Normal closure") {
                    Ok(RpcValue::Str(format!("connection {id} closed")))
                } else {
                    Err(format!("ws.close: no connection {id}"))
                }
            },
        );
        #[rustfmt::skip]
        m.functions([
            FnRow::sync("ws_close", &[], RouteMask::ANY, "Closes the WebSocket connection the message came on with status 1000 (Normal closure); 1 when it was open, -1 otherwise (another transport, already closed).", |ctx: &mut MsgContext| close(ctx, 1000, b"Normal closure", None)),
            FnRow::sync("ws_close", &["status", "reason"], RouteMask::ANY, "Closes the message's WebSocket connection with STATUS (1000-1003, 1007-1011, 3000-4999) and REASON; 1 when it was open, -1 otherwise.", |ctx: &mut MsgContext, code: i64, reason: Bytes| close(ctx, code, &reason, None)),
            FnRow::sync("ws_close", &["status", "reason", "connection_id"], RouteMask::ANY, "Closes WebSocket connection CONNECTION_ID ($ws_conid of one of its messages) with STATUS and REASON; 1 when it was open, -1 otherwise.", |ctx: &mut MsgContext, code: i64, reason: Bytes, id: i64| close(ctx, code, &reason, Some(id))),
            FnRow::sync("ws_handle_handshake", &[], RouteMask::REQUEST.union(RouteMask::EVENT), "In event_route[xhttp:request]: checks the HTTP request is a WebSocket upgrade (GET, Upgrade: websocket, Connection: Upgrade, Sec-WebSocket-Key, Sec-WebSocket-Version 13) offering the sip subprotocol, and upgrades the connection (101 Switching Protocols) when the route ends; otherwise answers 400 Bad Request (426 for another version). Ends the route (0) either way, as Kamailio's; -1 outside an HTTP request.", handle_handshake),
        ]);
        m.example(
            r#"loadmodule "sl.so"
loadmodule "xlog.so"
loadmodule "websocket.so"
listen=udp:127.0.0.1:5060
listen=ws:127.0.0.1:8080
modparam("websocket", "keepalive_timeout", 30)
tcp_connection_lifetime=3605
request_route {
    if ($proto == "ws" && is_method("OPTIONS")) {
        xlog("L_INFO", "OPTIONS on WebSocket connection $ws_conid\n");
        sl_send_reply("200", "OK");
        exit;
    }
}
"#,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sendable_close_codes_pass() {
        assert!(close_code(1000).is_ok());
        assert!(close_code(4000).is_ok());
        assert!(close_code(1005).is_err());
        assert!(close_code(1006).is_err());
        assert!(close_code(999).is_err());
    }
}
