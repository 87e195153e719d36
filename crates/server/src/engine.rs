//! The top of message processing: the [`Engine`] is the transports' sink. Received
//! bytes -> parse -> the current program's route run, in the [`ScriptScope`] current when
//! the message arrived; replies then go to their transaction or statelessly on. Below it
//! the layers call only downward: script scope -> [`Server`] (stateless services) ->
//! transaction layer -> outbound forwarder -> transports.

use crate::routes::logged_outcome;
use crate::script::ScriptScope;
use crate::server::Server;
use crate::transport::http::{HttpInbound, HttpOutcome};
use crate::transport::{raw_error_reply, Inbound, Sink};
use ferrosip_api::tm::Transactions;
use ferrosip_api::{FnError, MsgContext, NetInfo, Proto, RouteKind, Services, Target};
use ferrosip_script::vm::{Outcome, Vm};
use ferrosip_sip::SipMessage;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What the transports hand their messages to: the current program and the server it
/// runs on.
pub struct Engine {
    pub server: Arc<Server>,
    /// The routing program new messages run, replaced whole by a reload; messages and
    /// transactions in flight keep the one they started with.
    pub script: arc_swap::ArcSwap<ScriptScope>,
    /// Compiles the script again for a reload (`None` when the server was not started
    /// from a file).
    pub reloader: Option<crate::reload::Reloader>,
}

impl Engine {
    /// Processes one received message; a panic while doing so (a bug of ours) is logged
    /// and counted, and the worker goes on with a fresh VM instead of dying.
    pub fn handle_guarded(&self, vm: &mut Vm, inbound: Inbound) {
        let source = inbound.source;
        let run = std::panic::AssertUnwindSafe(|| self.handle(vm, inbound));
        if std::panic::catch_unwind(run).is_err() {
            self.server.stats.panics.fetch_add(1, Ordering::Relaxed);
            tracing::error!(source = %source, "processing a message panicked; worker continues");
            *vm = Vm::new();
        }
    }

    /// Processes one received message.
    pub fn handle(&self, vm: &mut Vm, inbound: Inbound) {
        let server = &self.server;
        let Inbound {
            bytes: raw,
            source,
            local,
            proto,
            connection: _,
        } = inbound;
        let origin = NetInfo {
            proto,
            source,
            local,
        };
        server.stats.received.fetch_add(1, Ordering::Relaxed);
        let taps = server.outbound.taps();
        if !taps.is_empty() {
            let tapped = ferrosip_api::trace::TappedMessage {
                direction: ferrosip_api::trace::Direction::Received,
                proto,
                source,
                destination: local,
                data: &raw,
            };
            for tap in taps {
                tap.message(&tapped);
            }
        }
        let max = match origin.proto {
            Proto::Udp => server.config.udp_max_size,
            _ => server.config.tcp.max_msg_size,
        };
        if raw.len() > max {
            server.stats.oversized.fetch_add(1, Ordering::Relaxed);
            if let Some(r) = raw_error_reply(&raw, 513, "Message Too Large") {
                let _ = server.send(origin.proto, Some(origin.local), origin.source, r);
            }
            return;
        }
        let msg = match SipMessage::parse_or_return(raw) {
            Ok(m) => m,
            Err((e, raw)) => {
                let code = if matches!(e, ferrosip_sip::ParseError::UnsupportedVersion { .. }) {
                    505
                } else {
                    400
                };
                let reason = if code == 505 {
                    "Version Not Supported".to_string()
                } else {
                    format!("Bad Request ({e})")
                        .replace(['\r', '\n'], " ")
                        .chars()
                        .take(120)
                        .collect()
                };
                match raw_error_reply(&raw, code, &reason) {
                    Some(r) => {
                        server
                            .stats
                            .malformed_answered
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(source = %origin.source, error = %e, "malformed request answered {code}");
                        let _ = server.send(origin.proto, Some(origin.local), origin.source, r);
                    }
                    None => {
                        server
                            .stats
                            .malformed_dropped
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(source = %origin.source, error = %e, "malformed message dropped");
                    }
                }
                return;
            }
        };
        let net = origin;
        if msg.is_request() {
            server.stats.rcv_requests.fetch_add(1, Ordering::Relaxed);
            let m = crate::stats::method_index(msg.method_bytes().unwrap_or_default());
            server.stats.rcv_requests_by_method[m].fetch_add(1, Ordering::Relaxed);
            self.handle_request(vm, msg, net);
        } else {
            server.stats.rcv_replies.fetch_add(1, Ordering::Relaxed);
            // The parser accepts only status codes 100-699.
            let class = usize::from(msg.status().unwrap_or(0) / 100).clamp(1, 6) - 1;
            server.stats.rcv_replies_by_class[class].fetch_add(1, Ordering::Relaxed);
            self.handle_reply(vm, msg, net);
        }
    }

    fn handle_request(&self, vm: &mut Vm, msg: SipMessage, net: NetInfo) {
        let scope = self.script.load();
        let Some(route) = scope.program.main_route(RouteKind::Request) else {
            return;
        };
        let mut ctx = MsgContext::new(msg, RouteKind::Request, net);
        if self.server.stats.waiting_routes.load(Ordering::Relaxed)
            >= self.server.config.max_waiting_routes
            && !matches!(ctx.msg.method_bytes(), Some(b"ACK" | b"CANCEL"))
        {
            // Every waiting run holds its message and its state: past the cap a new
            // request is turned away before it starts one (ACK and CANCEL still end calls).
            self.server.stats.overloaded.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(source = %net.source, "max_waiting_routes reached: 503");
            let _ = self.server.reply(&mut ctx, 503, b"Service Unavailable");
            return;
        }
        if self.server.config.loop_detection {
            // Computed before the script can change the request: the tag is of the
            // request as received.
            let tag = self.server.outbound.loop_tag(&ctx.msg, &net);
            if self.server.outbound.has_looped(&ctx.msg, tag) {
                self.server.stats.loops.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    call_id = %String::from_utf8_lossy(ctx.msg.call_id().unwrap_or_default()),
                    source = %net.source,
                    "request looped back unchanged: 482 Loop Detected"
                );
                // An ACK is never answered; the loop ends with it.
                if ctx.msg.method_bytes() != Some(b"ACK") {
                    let _ = self.server.reply(&mut ctx, 482, b"Loop Detected");
                }
                return;
            }
            ctx.loop_tag = Some(tag.0);
        }
        ctx.services = Some(Arc::clone(&scope) as Arc<dyn Services>);
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(
                call_id = %String::from_utf8_lossy(ctx.msg.call_id().unwrap_or_default()),
                method = %String::from_utf8_lossy(ctx.msg.method_bytes().unwrap_or_default()),
                source = %net.source,
                "request_route"
            );
        }
        let started = std::time::Instant::now();
        scope.run_route_then(vm, route, ctx, move |server, result, ctx| {
            server.stats.route_run.observe(started.elapsed());
            logged_outcome(result, &ctx);
        });
    }

    fn handle_reply(&self, vm: &mut Vm, msg: SipMessage, net: NetInfo) {
        let scope = self.script.load();
        let mut ctx = MsgContext::new(msg, RouteKind::CoreOnReply, net);
        // The program whose onsend_route sees the reply relayed statelessly, when
        // `onsend_route_reply` asks for it.
        let onsend = (self.server.config.onsend_route_reply && scope.onsend.is_some())
            .then(|| Arc::clone(&scope));
        match scope.program.main_route(RouteKind::CoreOnReply) {
            Some(route) => {
                ctx.services = Some(Arc::clone(&scope) as Arc<dyn Services>);
                scope.run_route_then(vm, route, ctx, move |server, result, mut ctx| {
                    let outcome = logged_outcome(result, &ctx);
                    if matches!(outcome, Some(Outcome::Drop) | None) {
                        return;
                    }
                    relay_reply(server, &mut ctx, onsend.as_deref());
                })
            }
            None => relay_reply(&self.server, &mut ctx, onsend.as_deref()),
        }
    }
}

/// [`Server::relay_reply`] past `onsend`'s `onsend_route` when there is one.
fn relay_reply(server: &Server, ctx: &mut MsgContext, onsend: Option<&ScriptScope>) {
    match onsend.and_then(|scope| scope.onsend.map(|route| (scope, route))) {
        None => server.relay_reply(ctx, None),
        Some((scope, route)) => {
            let gate = |c: &MsgContext, send: ferrosip_api::SendInfo| {
                scope.run_onsend(route, crate::outbound::onsend_view(c), send)
            };
            server.relay_reply(ctx, Some(&gate));
        }
    }
}

impl Engine {
    /// Compiles the script again and, when it loads, makes it the program new messages
    /// run ([`crate::reload::Reloader::reload`]); every outcome is logged.
    pub fn reload_script(&self) -> Result<crate::reload::ReloadReport, Vec<String>> {
        match &self.reloader {
            Some(reloader) => reloader.reload(&self.script, &self.server),
            None => {
                let why = "this server was not started from a script file".to_string();
                tracing::error!("script not reloaded: {why}");
                Err(vec![why])
            }
        }
    }
}

/// The server is where transports hand what they receive: each receiving thread or
/// connection keeps its own VM.
impl Sink for Engine {
    type Worker = Vm;

    fn worker(&self) -> Vm {
        Vm::new()
    }

    fn on_message(self: &Arc<Self>, vm: &mut Vm, inbound: Inbound) {
        self.handle_guarded(vm, inbound);
    }

    fn on_panic(&self) {
        self.server.stats.panics.fetch_add(1, Ordering::Relaxed);
    }

    fn on_framing_error(&self, _source: SocketAddr) {
        self.server
            .stats
            .malformed_dropped
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Runs `event_route[xhttp:request]` on the runtime with the request made SIP-shaped
    /// (see [`crate::transport::http::sip_shaped`]); what its functions left in the
    /// context decides.
    fn on_http(
        self: &Arc<Self>,
        request: HttpInbound,
    ) -> ferrosip_api::registry::BoxFuture<'static, HttpOutcome> {
        use ferrosip_api::websocket::{HttpReply, HttpRequest, WsUpgrade};
        let scope = self.script.load_full();
        let Some(route) = scope.program.named_route(RouteKind::Event, "xhttp:request") else {
            let reply = crate::transport::http::plain_reply(404, "Not Found");
            return Box::pin(std::future::ready(HttpOutcome::Reply(reply)));
        };
        let Some(msg) = crate::transport::http::sip_shaped(&request) else {
            let reply = crate::transport::http::plain_reply(400, "Bad Request");
            return Box::pin(std::future::ready(HttpOutcome::Reply(reply)));
        };
        self.server.stats.received.fetch_add(1, Ordering::Relaxed);
        let net = NetInfo {
            proto: request.proto,
            source: request.source,
            local: request.local,
        };
        let mut ctx = MsgContext::new(msg, RouteKind::Event, net);
        ctx.ext.insert(HttpRequest { url: request.url });
        ctx.services = Some(Arc::clone(&scope) as Arc<dyn Services>);
        let run = self.server.runtime.spawn(async move {
            let mut vm = Vm::new();
            let result = vm.run(&scope.program, route, &mut ctx).await;
            logged_outcome(result, &ctx);
            if ctx.ext.get::<WsUpgrade>().is_some() {
                HttpOutcome::Upgrade
            } else {
                match ctx.ext.remove::<HttpReply>() {
                    Some(HttpReply(r)) => HttpOutcome::Reply(r),
                    None => HttpOutcome::Nothing,
                }
            }
        });
        Box::pin(async move { run.await.unwrap_or(HttpOutcome::Nothing) })
    }

    /// Runs `event_route[websocket:closed]` when the script has one; `$si`/`$sp` are the
    /// client's, `$proto` ws or wss.
    fn on_ws_closed(&self, proto: Proto, peer: SocketAddr, local: SocketAddr) {
        let scope = self.script.load_full();
        if scope
            .program
            .named_route(RouteKind::Event, "websocket:closed")
            .is_none()
        {
            return;
        }
        let raw = "OPTIONS sip:websocket@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/WS 127.0.0.1;branch=z9hG4bKwsclosed\r\n\
                   From: <sip:websocket@127.0.0.1>;tag=ws\r\nTo: <sip:websocket@127.0.0.1>\r\n\
                   Call-ID: websocket-closed\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        let Ok(msg) = SipMessage::parse(bytes::Bytes::from_static(raw.as_bytes())) else {
            return;
        };
        let net = NetInfo {
            proto,
            source: peer,
            local,
        };
        scope.run_event_route(
            "websocket:closed",
            MsgContext::new(msg, RouteKind::Event, net),
        );
    }
}

/// The services of whatever program is current, for module code that runs outside a
/// message (start-up hooks, timers): each call goes to the current [`ScriptScope`].
impl Services for Engine {
    fn reply(&self, ctx: &mut MsgContext, code: u16, reason: &[u8]) -> Result<(), FnError> {
        self.server.reply(ctx, code, reason)
    }

    fn forward(&self, ctx: &mut MsgContext, target: Option<Target>) -> Result<(), FnError> {
        // Through the current program, for its onsend_route.
        Services::forward(&**self.script.load(), ctx, target)
    }

    fn is_myself(&self, host: &[u8], port: Option<u16>) -> bool {
        self.server.is_myself(host, port) || self.script.load().program.is_module_local(host)
    }

    fn transactions(&self) -> Option<&dyn Transactions> {
        self.server.tm.as_ref().map(|_| self as &dyn Transactions)
    }

    fn send_request(
        &self,
        request: ferrosip_api::services::LocalRequest,
    ) -> Result<
        ferrosip_api::registry::BoxFuture<'static, ferrosip_api::services::LocalOutcome>,
        FnError,
    > {
        self.server.uac.send(request)
    }

    fn send_raw(
        &self,
        proto: ferrosip_api::Proto,
        local: Option<std::net::SocketAddr>,
        dst: std::net::SocketAddr,
        data: bytes::Bytes,
    ) -> Result<(), FnError> {
        self.server.outbound.send(proto, local, dst, data)
    }

    fn run_event_route(&self, name: &str, ctx: MsgContext) -> bool {
        self.script.load().run_event_route(name, ctx)
    }

    fn tls(&self) -> Option<Arc<dyn ferrosip_api::tls::TlsControl>> {
        self.server.outbound.tls()
    }

    fn json_rpc(&self) -> Option<Arc<dyn ferrosip_api::jsonrpc::JsonRpc>> {
        self.server.json_rpc.get().cloned()
    }

    fn cached_addresses(&self, host: &str) -> Option<Vec<std::net::IpAddr>> {
        self.server.outbound.cached_addresses(host)
    }

    fn websocket(&self) -> Option<Arc<dyn ferrosip_api::websocket::WsControl>> {
        self.server.outbound.websocket()
    }
}

impl Transactions for Engine {
    fn relay(&self, ctx: &mut MsgContext, target: Option<Target>) -> Result<i32, FnError> {
        self.script.load().relay(ctx, target)
    }

    fn new_transaction(&self, ctx: &mut MsgContext) -> Result<i32, FnError> {
        self.script.load().new_transaction(ctx)
    }

    fn reply(&self, ctx: &mut MsgContext, code: u16, reason: &[u8]) -> Result<i32, FnError> {
        Transactions::reply(&**self.script.load(), ctx, code, reason)
    }

    fn check(&self, ctx: &mut MsgContext) -> Result<i32, FnError> {
        self.script.load().check(ctx)
    }

    fn exists(&self, ctx: &MsgContext) -> bool {
        self.script.load().exists(ctx)
    }

    fn release(&self, ctx: &mut MsgContext) -> i32 {
        self.script.load().release(ctx)
    }
}
