//! `jsonrpcs`: JSON-RPC 2.0 server for the RPC commands, over HTTP (xhttp), FIFO and unix datagram sockets.

use bytes::Bytes;
use ferrosip_api::jsonrpc::{JsonRpc, JsonRpcReply};
use ferrosip_api::pv::{Binder, PvClass, PvParamRule};
use ferrosip_api::registry::{apply_result, ApplyResult};
use ferrosip_api::websocket::{HttpReply, HttpRequest};
use ferrosip_api::{
    FnError, Module, ModuleBuilder, MsgContext, ParamType, Pv, PvError, PvIndex, RouteMask, Value,
    Verdict,
};
use std::future::Future;
use std::sync::Arc;

/// The control interface's commands, or why a function cannot reach them.
fn json_rpc(ctx: &MsgContext, function: &str) -> Result<Arc<dyn JsonRpc>, FnError> {
    ctx.services
        .as_ref()
        .and_then(|s| s.json_rpc())
        .ok_or_else(|| FnError::new(format!("{function}: the control interface is not running")))
}

/// `jsonrpc_dispatch()`: the HTTP body is the request; the answer is the HTTP reply,
/// with the status Kamailio gives (200, 400 for a request that is not JSON-RPC, 500 when
/// the command failed), sent when the event route ends.
fn dispatch(ctx: &mut MsgContext) -> impl Future<Output = ApplyResult> {
    let ready = if ctx.ext.get::<HttpRequest>().is_none() {
        Err(FnError::new(
            "jsonrpc_dispatch: not handling an HTTP request (only in event_route[xhttp:request])",
        ))
    } else {
        json_rpc(ctx, "jsonrpc_dispatch").map(|rpc| (rpc, ctx.msg.body_bytes()))
    };
    async move {
        let (rpc, body) = match ready {
            Ok(r) => r,
            Err(e) => return apply_result(move |_| Err(e)),
        };
        let reply = rpc.execute(body).await;
        apply_result(move |ctx: &mut MsgContext| {
            let reason: &[u8] = match reply.code {
                200 => b"OK",
                400 => b"Bad Request",
                _ => b"Internal Server Error",
            };
            let http = HttpReply::build(
                i64::from(reply.code),
                reason,
                b"application/json",
                reply.body.as_bytes(),
            )
            .map_err(FnError::new)?;
            ctx.ext.insert(http);
            Ok(if reply.code == 200 {
                Verdict::TRUE
            } else {
                Verdict::FALSE
            })
        })
    }
}

/// `jsonrpc_exec(cmd)`: the answer is kept for `$jsonrpl(...)`; 1 when the command ran.
fn exec(ctx: &mut MsgContext, cmd: Bytes) -> impl Future<Output = ApplyResult> {
    let ready = json_rpc(ctx, "jsonrpc_exec");
    async move {
        let rpc = match ready {
            Ok(r) => r,
            Err(e) => return apply_result(move |_| Err(e)),
        };
        let reply = rpc.execute(cmd).await;
        apply_result(move |ctx: &mut MsgContext| {
            let ran = reply.code == 200;
            ctx.ext.insert(reply);
            Ok(if ran { Verdict::TRUE } else { Verdict::FALSE })
        })
    }
}

/// `$jsonrpl(code|text|body)`: the last `jsonrpc_exec()` answer of this message.
struct ReplyPvClass;

#[derive(Clone, Copy)]
enum ReplyField {
    Code,
    Text,
    Body,
}

struct ReplyPv(ReplyField);

impl Pv for ReplyPv {
    fn get(&self, ctx: &MsgContext, _index: PvIndex) -> Result<Value, PvError> {
        let Some(r) = ctx.ext.get::<JsonRpcReply>() else {
            return Ok(Value::Null);
        };
        Ok(match self.0 {
            ReplyField::Code => Value::Int(i64::from(r.code)),
            ReplyField::Text => Value::from_string(r.text.clone()),
            ReplyField::Body => Value::from_string(r.body.clone()),
        })
    }
}

impl PvClass for ReplyPvClass {
    fn param_rule(&self) -> PvParamRule {
        PvParamRule::Required
    }

    fn bind(&self, param: Option<&str>, _binder: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
        let field = match param.unwrap_or("").trim() {
            "code" => ReplyField::Code,
            "text" => ReplyField::Text,
            "body" => ReplyField::Body,
            other => return Err(format!("$jsonrpl({other}): give code, text or body")),
        };
        Ok(Arc::new(ReplyPv(field)))
    }

    fn doc(&self) -> &str {
        "The answer of the last jsonrpc_exec() of this message: $jsonrpl(code) (200 when the command ran, 400 for a request that is not JSON-RPC, 500 when it failed), $jsonrpl(text) (OK or the error), $jsonrpl(body) (the JSON-RPC response)."
    }
}

/// The `jsonrpcs` module.
pub struct JsonrpcsModule;

impl Module for JsonrpcsModule {
    fn name(&self) -> &'static str {
        "jsonrpcs"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("JSON-RPC 2.0 server for the RPC commands over a FIFO (kamctl's transport) and a unix datagram socket, served by the control interface (crates/ctl) with every RPC command the loaded modules declare; HTTP goes through xhttp's event route and jsonrpc_dispatch().");
        // The control interface reads these parameters when the server starts; this
        // check refuses values it could not serve at load time, with the config's location.
        m.on_init(|p| {
            let transport = p.int("transport");
            if !(0..=15).contains(&transport) {
                return Err(format!(
                    "transport {transport}: give 0 (all) or a sum of 1 HTTP, 2 FIFO, 4 datagram, 8 TCP"
                ));
            }
            let wants = |bit: i64| transport == 0 || transport & bit != 0;
            if wants(2) && p.string("fifo_name").trim().is_empty() {
                return Err("fifo_name is empty while the FIFO transport is on".into());
            }
            if wants(4) && p.string("dgram_socket").trim().is_empty() {
                return Err("dgram_socket is empty while the datagram transport is on".into());
            }
            Ok(())
        });
        m.param(
            "pretty_format",
            ParamType::Int,
            1_i64,
            "When 1, JSON replies are indented.",
        );
        m.param(
            "transport",
            ParamType::Int,
            6_i64,
            "Bit mask of transports: 1 HTTP, 2 FIFO, 4 datagram, 8 TCP socket.",
        );
        m.param(
            "fifo_name",
            ParamType::Str,
            "ferrosip_rpc.fifo",
            "Path of the FIFO file (a relative name is in /run/ferrosip; kamctl's RPCFIFOPATH names it).",
        );
        m.param(
            "fifo_mode",
            ParamType::Int,
            432_i64,
            "Permissions of the FIFO file (0660).",
        );
        m.param(
            "fifo_group",
            ParamType::Str,
            Value::Null,
            "Group owning the FIFO file.",
        );
        m.param(
            "fifo_user",
            ParamType::Str,
            Value::Null,
            "User owning the FIFO file.",
        );
        m.param(
            "fifo_reply_dir",
            ParamType::Str,
            "/tmp/",
            "Directory of FIFO reply files.",
        );
        m.param(
            "dgram_socket",
            ParamType::Str,
            "ferrosip_rpc.sock",
            "Path of the datagram socket (a relative name is in /run/ferrosip).",
        );
        m.param(
            "dgram_workers",
            ParamType::Int,
            1_i64,
            "Number of datagram worker processes (one task serves the socket; other values are logged).",
        );
        m.param(
            "dgram_timeout",
            ParamType::Int,
            2000_i64,
            "Milliseconds to wait when sending a datagram reply.",
        );
        m.param(
            "dgram_mode",
            ParamType::Int,
            432_i64,
            "Permissions of the datagram socket (0660).",
        );
        m.param(
            "dgram_group",
            ParamType::Str,
            Value::Null,
            "Group owning the datagram socket.",
        );
        m.param(
            "dgram_user",
            ParamType::Str,
            Value::Null,
            "User owning the datagram socket.",
        );
        m.param(
            "tcp_socket",
            ParamType::Str,
            "",
            "TCP socket address for JSON-RPC: not served (the server refuses to start when it is set); the ctl socket takes JSON-RPC over tcp:ADDRESS:PORT.",
        );
        const REQ_EVENT: RouteMask = RouteMask::REQUEST.union(RouteMask::EVENT);
        m.function("jsonrpc_dispatch")
            .routes(REQ_EVENT)
            .doc("In event_route[xhttp:request]: runs the JSON-RPC request in the HTTP body with the control interface's commands and answers it (application/json; 200, 400 for a request that is not JSON-RPC, 500 when the command failed) when the route ends. 1 when the command ran, -1 otherwise.")
            .async_handler(dispatch);
        m.function("jsonrpc_exec")
            .args(&["cmd"])
            .routes(RouteMask::ANY)
            .doc("Runs the JSON-RPC request CMD (text, pseudo-variables allowed) with the control interface's commands; the answer is in $jsonrpl(code/text/body). 1 when the command ran, -1 otherwise.")
            .async_handler(exec);
        m.pv("jsonrpl", ReplyPvClass);
    }
}
