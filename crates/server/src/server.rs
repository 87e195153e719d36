//! Message processing. The [`Engine`] is the transports' sink: received bytes -> parse
//! -> the current program's route run. The [`Server`] below it is what route runs reach:
//! stateless reply and forward through the [`Outbound`], the transaction layer, local
//! requests, counters and the async runtime. Nothing here refers back to itself: the
//! engine owns the server, a script scope holds the server it runs on.

use crate::config::ServerConfig;
use crate::outbound::Outbound;
use crate::script::{RouteResult, ScriptScope};
use crate::transport::{raw_error_reply, Inbound, Sink};
use bytes::Bytes;
use ferrosip_api::tm::Transactions;
use ferrosip_api::{
    FnError, MsgContext, NetInfo, Proto, ReplyHeaders, RouteKind, Services, Target,
};
use ferrosip_script::vm::{Outcome, Vm};
use ferrosip_script::Program;
use ferrosip_sip::SipMessage;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counters an operator (and the tests) can read.
#[derive(Debug, Default)]
pub struct Stats {
    pub received: AtomicU64,
    pub malformed_dropped: AtomicU64,
    pub malformed_answered: AtomicU64,
    pub oversized: AtomicU64,
    pub forwarded: AtomicU64,
    pub replies_sent: AtomicU64,
    /// Messages whose processing panicked (a bug of ours; the worker carried on).
    pub panics: AtomicU64,
    /// Route runs that waited for an async function (database, DNS) and were finished on
    /// the async runtime while the worker went on with other messages.
    pub suspended: AtomicU64,
}

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

/// What route runs reach, shared by every worker and every program version.
pub struct Server {
    pub config: ServerConfig,
    /// Next hop, per-branch preparation and send, over the transports.
    pub outbound: Outbound,
    pub stats: Stats,
    /// The transaction layer, when the script loads `tm`.
    pub tm: Option<crate::tm::TmLayer>,
    /// Requests the server sends on its own behalf (keepalive probes).
    pub uac: crate::uac::LocalRequests,
    /// Where module I/O (database pools, timers) and suspended route runs execute.
    pub runtime: tokio::runtime::Handle,
}

/// A route run's outcome, its error logged with the script location and Call-ID.
fn route_outcome(result: RouteResult, ctx: &MsgContext) -> Option<Outcome> {
    match result {
        Ok(o) => Some(o),
        Err(e) => {
            let call_id = String::from_utf8_lossy(ctx.msg.call_id().unwrap_or_default());
            tracing::error!(location = %e.location, call_id = %call_id, "script aborted: {}", e.message);
            None
        }
    }
}

fn fnerr(e: impl std::fmt::Display) -> FnError {
    FnError::new(e.to_string())
}

impl Server {
    /// Sends bytes over `proto` to `dst`.
    pub fn send(
        &self,
        proto: Proto,
        local: Option<SocketAddr>,
        dst: SocketAddr,
        data: Bytes,
    ) -> Result<(), FnError> {
        self.outbound.send(proto, local, dst, data)
    }
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
        let max = match origin.proto {
            Proto::Udp => server.config.udp_max_size,
            _ => server.config.tcp_max_size,
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
            self.handle_request(vm, msg, net);
        } else {
            self.handle_reply(vm, msg, net);
        }
    }

    fn handle_request(&self, vm: &mut Vm, msg: SipMessage, net: NetInfo) {
        let scope = self.script.load();
        let Some(route) = scope.program.main_route(RouteKind::Request) else {
            return;
        };
        let mut ctx = MsgContext::new(msg, RouteKind::Request, net);
        ctx.services = Some(Arc::clone(&scope) as Arc<dyn Services>);
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(
                call_id = %String::from_utf8_lossy(ctx.msg.call_id().unwrap_or_default()),
                method = %String::from_utf8_lossy(ctx.msg.method_bytes().unwrap_or_default()),
                source = %net.source,
                "request_route"
            );
        }
        (self.server).run_route_then(vm, &scope, route, ctx, |_, result, ctx| {
            route_outcome(result, &ctx);
        });
    }

    fn handle_reply(&self, vm: &mut Vm, msg: SipMessage, net: NetInfo) {
        let scope = self.script.load();
        let mut ctx = MsgContext::new(msg, RouteKind::CoreOnReply, net);
        match scope.program.main_route(RouteKind::CoreOnReply) {
            Some(route) => {
                ctx.services = Some(Arc::clone(&scope) as Arc<dyn Services>);
                (self.server).run_route_then(vm, &scope, route, ctx, |server, result, mut ctx| {
                    let outcome = route_outcome(result, &ctx);
                    if matches!(outcome, Some(Outcome::Drop) | None) {
                        return;
                    }
                    server.relay_reply(&mut ctx);
                })
            }
            None => self.server.relay_reply(&mut ctx),
        }
    }
}

impl Server {
    /// After the core reply route: to its transaction, else statelessly by Via.
    fn relay_reply(self: &Arc<Self>, ctx: &mut MsgContext) {
        if self.uac.on_reply(&ctx.msg) {
            return;
        }
        if let Some(tm) = &self.tm {
            if tm.on_reply(self, &ctx.msg) {
                return;
            }
        }
        if let Err(e) = self.forward_reply(ctx) {
            tracing::debug!(source = %ctx.net.source, "reply not forwarded: {}", e.message);
        }
    }

    /// Stateless reply forwarding (RFC 3261 §16.7 step 3 and §18.2.2 as a stateless
    /// proxy does it): when the top Via is ours (one of our addresses), by the next Via.
    fn forward_reply(&self, ctx: &mut MsgContext) -> Result<(), FnError> {
        self.outbound
            .forward_reply(ctx, |host, port| self.is_myself(host, port))?;
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn tm_layer(&self) -> Result<&crate::tm::TmLayer, FnError> {
        self.tm
            .as_ref()
            .ok_or_else(|| FnError::new("the tm module is not loaded"))
    }

    /// A stateless reply to the context's request ([`Services::reply`]).
    pub fn reply(&self, ctx: &mut MsgContext, code: u16, reason: &[u8]) -> Result<(), FnError> {
        if !ctx.msg.is_request() {
            return Err(FnError::new("cannot reply to a reply"));
        }
        if ctx.msg.method_bytes() == Some(b"ACK") {
            return Err(FnError::new("an ACK is never answered"));
        }
        let reason = String::from_utf8_lossy(reason).into_owned();
        let tag = ctx.msg.stateless_to_tag();
        let mut b = ctx.msg.reply(code, &reason).to_tag(tag);
        if let Some(extra) = ctx.ext.remove::<ReplyHeaders>() {
            b = with_reply_headers(b, &extra);
        }
        let data = b.build().map_err(fnerr)?;
        // RFC 3261 §18.2.2 / RFC 3581: answer the address the request came from (over TCP,
        // the same connection).
        self.send(ctx.net.proto, Some(ctx.net.local), ctx.net.source, data)?;
        self.stats.replies_sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Stateless forwarding of the context's message ([`Services::forward`]): a reply by
    /// its Via, a request to its next hop.
    pub fn forward(&self, ctx: &mut MsgContext, target: Option<Target>) -> Result<(), FnError> {
        if !ctx.msg.is_request() {
            return self.forward_reply(ctx);
        }
        self.outbound.forward_stateless(ctx, target)?;
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Whether `host[:port]` is one of ours ([`Services::is_myself`]).
    pub fn is_myself(&self, host: &[u8], port: Option<u16>) -> bool {
        self.config.myself.matches(host, port)
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

    fn on_framing_error(&self, _source: SocketAddr) {
        self.server
            .stats
            .malformed_dropped
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// The services of whatever program is current, for module code that runs outside a
/// message (start-up hooks, timers): each call goes to the current [`ScriptScope`].
impl Services for Engine {
    fn reply(&self, ctx: &mut MsgContext, code: u16, reason: &[u8]) -> Result<(), FnError> {
        self.server.reply(ctx, code, reason)
    }

    fn forward(&self, ctx: &mut MsgContext, target: Option<Target>) -> Result<(), FnError> {
        self.server.forward(ctx, target)
    }

    fn is_myself(&self, host: &[u8], port: Option<u16>) -> bool {
        self.server.is_myself(host, port)
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
        self.server.send_local_request(request)
    }

    fn run_event_route(&self, name: &str, ctx: MsgContext) -> bool {
        self.server
            .run_event_route_in(&self.script.load(), name, ctx)
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

impl Server {
    /// [`Services::is_myself`] as a transaction's scope asks it: the server's sockets,
    /// aliases and reverse-DNS names decide, whichever program version runs (a change
    /// of `listen=`/`alias=` needs a restart).
    pub(crate) fn is_myself_in(&self, _program: &Program, host: &[u8], port: Option<u16>) -> bool {
        self.config.myself.matches(host, port)
    }

    /// Runs `event_route[name]` of `scope`'s program on the runtime.
    pub(crate) fn run_event_route_in(
        self: &Arc<Self>,
        scope: &Arc<ScriptScope>,
        name: &str,
        mut ctx: MsgContext,
    ) -> bool {
        let Some(route) = scope.program.named_route(RouteKind::Event, name) else {
            return false;
        };
        ctx.route = RouteKind::Event;
        ctx.services = Some(scope.clone() as Arc<dyn Services>);
        let scope = scope.clone();
        self.runtime.spawn(async move {
            let mut vm = Vm::new();
            let result = vm.run(&scope.program, route, &mut ctx).await;
            route_outcome(result, &ctx);
        });
        true
    }
}

/// Adds the header lines queued by `append_to_reply` to a local reply.
pub(crate) fn with_reply_headers<'a>(
    mut b: ferrosip_sip::ReplyBuilder<'a>,
    extra: &ReplyHeaders,
) -> ferrosip_sip::ReplyBuilder<'a> {
    for line in extra.0.split(|c| *c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(colon) = line.iter().position(|c| *c == b':') {
            let name = String::from_utf8_lossy(&line[..colon]).trim().to_string();
            b = b.header(&name, line[colon + 1..].trim_ascii());
        }
    }
    b
}

/// Set by the `maxfwd` functions: the script handled Max-Forwards itself.
pub use ferrosip_api::services::MaxForwardsDone;
