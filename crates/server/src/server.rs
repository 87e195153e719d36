//! Message processing: received bytes -> parse -> route script -> forward or reply.
//! Implements the [`Services`] that script functions use to send.

use crate::config::{Listen, ServerConfig};
use crate::script::{RouteResult, ScriptScope};
use crate::transport::{raw_error_reply, Inbound, Sink, Transports};
use bytes::Bytes;
use ferrosip_api::rr::{insert_record_route, record_route_headers, RecordRoutePlan, SocketDesc};
use ferrosip_api::{
    FnError, ForwardFlags, MsgContext, NetInfo, Proto, ReplyHeaders, RouteKind, Services, Target,
};
use ferrosip_script::vm::{Outcome, Vm};
use ferrosip_script::Program;
use ferrosip_sip::{SipMessage, Uri};
use std::io::Write;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
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

/// The running server: shared by every worker.
pub struct Server {
    /// The routing program new messages run, replaced whole by a reload; messages and
    /// transactions in flight keep the one they started with.
    pub script: arc_swap::ArcSwap<ScriptScope>,
    /// Compiles the script again for a reload (`None` when the server was not started
    /// from a file).
    pub reloader: Option<crate::reload::Reloader>,
    pub config: ServerConfig,
    /// Every protocol's sending side (UDP, TCP).
    pub transports: Transports,
    pub stats: Stats,
    /// The transaction layer, when the script loads `tm`.
    pub tm: Option<crate::tm::TmLayer>,
    /// Requests the server sends on its own behalf (keepalive probes).
    pub uac: crate::uac::LocalRequests,
    /// The server's own `Arc`, for work that outlives a borrowed `&self` (routes run by
    /// transactions hold the server as their `Services`).
    pub self_ref: std::sync::OnceLock<std::sync::Weak<Server>>,
    /// Where module I/O (database pools, timers) and suspended route runs execute.
    pub runtime: tokio::runtime::Handle,
}

fn fnerr(e: impl std::fmt::Display) -> FnError {
    FnError::new(e.to_string())
}

/// Our Via branch for a statelessly forwarded request (RFC 3261 §16.11): a hash of what
/// identifies the incoming transaction, so a retransmission — and the CANCEL of an
/// INVITE, which carries the INVITE's branch — gets the same branch.
fn stateless_branch(msg: &SipMessage) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for &c in b.iter().chain(std::iter::once(&0xfe)) {
            h ^= u64::from(c);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    match msg.top_via() {
        Ok(v) if v.has_rfc3261_branch() => {
            eat(v.branch().unwrap_or_default());
            eat(v.host());
        }
        _ => {
            // RFC 2543 peers: identify the transaction by its fields instead.
            eat(msg.request_uri().unwrap_or_default());
            eat(msg.call_id().unwrap_or_default());
            eat(msg.from_tag().unwrap_or_default());
            eat(msg.to_tag().unwrap_or_default());
            if let Ok(c) = msg.cseq() {
                eat(&c.seq.to_le_bytes());
            }
            if let Ok(v) = msg.top_via() {
                eat(v.as_bytes());
            }
        }
    }
    h
}

/// An IP address written in a Via sent-by or a URI host (IPv6 in brackets).
fn host_ip(host: &[u8]) -> Option<IpAddr> {
    let host = host.strip_prefix(b"[").unwrap_or(host);
    let host = host.strip_suffix(b"]").unwrap_or(host);
    std::str::from_utf8(host).ok()?.parse().ok()
}

fn default_port(proto: Proto, sips: bool) -> u16 {
    if sips || matches!(proto, Proto::Tls | Proto::Wss) {
        5061
    } else {
        5060
    }
}

fn resolve(host: &[u8], port: u16) -> Result<SocketAddr, FnError> {
    if let Some(ip) = host_ip(host) {
        return Ok(SocketAddr::new(ip, port));
    }
    let h = String::from_utf8_lossy(host);
    let h = h.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    (h, port)
        .to_socket_addrs()
        .map_err(|e| FnError::new(format!("cannot resolve {h}: {e}")))?
        .next()
        .ok_or_else(|| FnError::new(format!("{h} has no address")))
}

impl Server {
    /// The listen socket to send from for `proto` towards `dst` (see
    /// [`crate::transport::pick_source`]), as `dst` sees it.
    fn local_for(&self, proto: Proto, dst: &SocketAddr) -> Option<Listen> {
        let of_proto: smallvec::SmallVec<[&Listen; 8]> = self
            .config
            .listen
            .iter()
            .filter(|l| l.proto == proto)
            .collect();
        crate::transport::pick_source(&of_proto, |l| l.addr, dst).map(|l| l.towards(*dst))
    }

    /// Sends bytes over `proto` to `dst`.
    pub fn send(
        &self,
        proto: Proto,
        local: Option<SocketAddr>,
        dst: SocketAddr,
        data: Bytes,
    ) -> Result<(), FnError> {
        self.transports.send(proto, local, dst, data)
    }

    /// Processes one received message; a panic while doing so (a bug of ours) is logged
    /// and counted, and the worker goes on with a fresh VM instead of dying.
    pub fn handle_guarded(self: &Arc<Self>, vm: &mut Vm, inbound: Inbound) {
        let source = inbound.source;
        let run = std::panic::AssertUnwindSafe(|| self.handle(vm, inbound));
        if std::panic::catch_unwind(run).is_err() {
            self.stats.panics.fetch_add(1, Ordering::Relaxed);
            tracing::error!(source = %source, "processing a message panicked; worker continues");
            *vm = Vm::new();
        }
    }

    /// Processes one received message.
    pub fn handle(self: &Arc<Self>, vm: &mut Vm, inbound: Inbound) {
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
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let max = match origin.proto {
            Proto::Udp => self.config.udp_max_size,
            _ => self.config.tcp_max_size,
        };
        if raw.len() > max {
            self.stats.oversized.fetch_add(1, Ordering::Relaxed);
            if let Some(r) = raw_error_reply(&raw, 513, "Message Too Large") {
                let _ = self.send(origin.proto, Some(origin.local), origin.source, r);
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
                        self.stats
                            .malformed_answered
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(source = %origin.source, error = %e, "malformed request answered {code}");
                        let _ = self.send(origin.proto, Some(origin.local), origin.source, r);
                    }
                    None => {
                        self.stats.malformed_dropped.fetch_add(1, Ordering::Relaxed);
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

    fn route_outcome(&self, result: RouteResult, ctx: &MsgContext) -> Option<Outcome> {
        match result {
            Ok(o) => Some(o),
            Err(e) => {
                let call_id = String::from_utf8_lossy(ctx.msg.call_id().unwrap_or_default());
                tracing::error!(location = %e.location, call_id = %call_id, "script aborted: {}", e.message);
                None
            }
        }
    }

    fn handle_request(self: &Arc<Self>, vm: &mut Vm, msg: SipMessage, net: NetInfo) {
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
        self.run_route_then(vm, &scope, route, ctx, |server, result, ctx| {
            server.route_outcome(result, &ctx);
        });
    }

    fn handle_reply(self: &Arc<Self>, vm: &mut Vm, msg: SipMessage, net: NetInfo) {
        let scope = self.script.load();
        let mut ctx = MsgContext::new(msg, RouteKind::CoreOnReply, net);
        match scope.program.main_route(RouteKind::CoreOnReply) {
            Some(route) => {
                ctx.services = Some(Arc::clone(&scope) as Arc<dyn Services>);
                self.run_route_then(vm, &scope, route, ctx, |server, result, mut ctx| {
                    let outcome = server.route_outcome(result, &ctx);
                    if matches!(outcome, Some(Outcome::Drop) | None) {
                        return;
                    }
                    server.relay_reply(&mut ctx);
                })
            }
            None => self.relay_reply(&mut ctx),
        }
    }

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

    /// Is this Via one we added (sent-by is one of our addresses)?
    fn via_is_ours(&self, host: &[u8], port: Option<u16>) -> bool {
        self.is_myself(host, port)
    }

    /// Stateless reply forwarding (RFC 3261 §16.7 step 3 and §18.2.2 as a stateless
    /// proxy does it): drop our top Via, send to the next one's received/rport or sent-by.
    fn forward_reply(&self, ctx: &mut MsgContext) -> Result<(), FnError> {
        {
            let top = ctx.msg.top_via().map_err(fnerr)?;
            // A sent-by without a port means its transport's default one (RFC 3261 §18.2.2).
            let proto = Proto::from_bytes(top.transport()).unwrap_or(Proto::Udp);
            let port = top.port().unwrap_or(default_port(proto, false));
            if !self.via_is_ours(top.host(), Some(port)) {
                return Err(FnError::new("top Via is not ours"));
            }
        }
        ctx.msg.remove_top_via().map_err(fnerr)?;
        let (proto, dst) = {
            let next = ctx
                .msg
                .top_via()
                .map_err(|_| FnError::new("no Via left to send the reply to"))?;
            let proto = Proto::from_bytes(next.transport()).unwrap_or(Proto::Udp);
            let host = next.received().unwrap_or(next.host());
            let port = match next.rport() {
                Some(Some(p)) => p,
                _ => next.port().unwrap_or(default_port(proto, false)),
            };
            (proto, resolve(host, port)?)
        };
        if proto != Proto::Udp && ctx.msg.content_length().is_none() {
            let body = ctx.msg.body_bytes();
            ctx.msg.set_body(body);
        }
        let data = ctx.msg.to_bytes();
        self.send(proto, None, dst, data)?;
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The server is where transports hand what they receive: each receiving thread or
/// connection keeps its own VM.
impl Sink for Server {
    type Worker = Vm;

    fn worker(&self) -> Vm {
        Vm::new()
    }

    fn on_message(self: &Arc<Self>, vm: &mut Vm, inbound: Inbound) {
        self.handle_guarded(vm, inbound);
    }

    fn on_framing_error(&self, _source: SocketAddr) {
        self.stats.malformed_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

impl Server {
    pub(crate) fn arc(&self) -> Result<Arc<Server>, FnError> {
        self.self_ref
            .get()
            .and_then(std::sync::Weak::upgrade)
            .ok_or_else(|| FnError::new("server is stopping"))
    }

    pub(crate) fn tm_layer(&self) -> Result<&crate::tm::TmLayer, FnError> {
        self.tm
            .as_ref()
            .ok_or_else(|| FnError::new("the tm module is not loaded"))
    }
}

impl ferrosip_api::tm::Transactions for Server {
    fn relay(&self, ctx: &mut MsgContext, target: Option<Target>) -> Result<i32, FnError> {
        self.tm_layer()?
            .relay(&self.arc()?, &self.script.load(), ctx, target)
    }

    fn new_transaction(&self, ctx: &mut MsgContext) -> Result<i32, FnError> {
        self.tm_layer()?
            .new_transaction(&self.arc()?, &self.script.load(), ctx)
    }

    fn reply(&self, ctx: &mut MsgContext, code: u16, reason: &[u8]) -> Result<i32, FnError> {
        self.tm_layer()?.reply(&self.arc()?, ctx, code, reason)
    }

    fn check(&self, ctx: &mut MsgContext) -> Result<i32, FnError> {
        self.tm_layer()?.check(&self.arc()?, ctx)
    }

    fn exists(&self, ctx: &MsgContext) -> bool {
        self.tm.as_ref().is_some_and(|tm| tm.exists(ctx))
    }

    fn release(&self, ctx: &mut MsgContext) -> i32 {
        self.tm.as_ref().map_or(-1, |tm| tm.release(ctx))
    }
}

impl Services for Server {
    fn transactions(&self) -> Option<&dyn ferrosip_api::tm::Transactions> {
        self.tm
            .as_ref()
            .map(|_| self as &dyn ferrosip_api::tm::Transactions)
    }

    fn send_request(
        &self,
        request: ferrosip_api::services::LocalRequest,
    ) -> Result<
        ferrosip_api::registry::BoxFuture<'static, ferrosip_api::services::LocalOutcome>,
        FnError,
    > {
        self.arc()?.send_local_request(request)
    }

    fn run_event_route(&self, name: &str, ctx: MsgContext) -> bool {
        match self.arc() {
            Ok(server) => server.run_event_route_in(&self.script.load(), name, ctx),
            Err(_) => false,
        }
    }

    fn reply(&self, ctx: &mut MsgContext, code: u16, reason: &[u8]) -> Result<(), FnError> {
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

    fn forward(&self, ctx: &mut MsgContext, target: Option<Target>) -> Result<(), FnError> {
        if !ctx.msg.is_request() {
            return self.forward_reply(ctx);
        }
        let hop = self.next_hop(target, ctx.dst_uri.as_ref(), &ctx.msg)?;
        // "z9hG4bKsl" + 16 hex digits, written without a heap allocation.
        let mut branch = [0u8; 25];
        let _ = write!(
            &mut branch[..],
            "z9hG4bKsl{:016x}",
            stateless_branch(&ctx.msg)
        );
        let branch = std::str::from_utf8(&branch).unwrap_or_default();
        let out = self.outgoing_request(ctx, &ctx.msg, &hop, branch)?;
        self.send(hop.proto, Some(hop.local.addr), hop.dst, out.to_bytes())?;
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn is_myself(&self, host: &[u8], port: Option<u16>) -> bool {
        self.config.myself.matches(host, port)
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
        let server = self.clone();
        let scope = scope.clone();
        self.runtime.spawn(async move {
            let mut vm = Vm::new();
            let result = vm.run(&scope.program, route, &mut ctx).await;
            server.route_outcome(result, &ctx);
        });
        true
    }
}

/// What the script decided about forwarding a request beside the message itself
/// (rport handling, Max-Forwards already done, the Record-Route to insert).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Forwarding<'a> {
    pub flags: ForwardFlags,
    pub maxfwd_done: bool,
    pub record_route: Option<&'a RecordRoutePlan>,
}

impl<'a> Forwarding<'a> {
    /// As a route left it in its context's extensions.
    pub fn of(ext: &'a ferrosip_api::Extensions) -> Forwarding<'a> {
        Forwarding {
            flags: ext.get::<ForwardFlags>().copied().unwrap_or_default(),
            maxfwd_done: ext.get::<MaxForwardsDone>().is_some(),
            record_route: ext.get::<RecordRoutePlan>(),
        }
    }
}

/// Where a request goes next and the socket it leaves from.
#[derive(Clone, Debug)]
pub(crate) struct Hop {
    pub proto: Proto,
    pub dst: SocketAddr,
    pub local: Listen,
}

impl Server {
    /// The next hop of a request: an explicit target, else `dst_uri` ($du), else the
    /// R-URI of `msg` (RFC 3263 without DNS SRV/NAPTR yet: host, port, `transport=`).
    pub(crate) fn next_hop(
        &self,
        target: Option<Target>,
        dst_uri: Option<&Bytes>,
        msg: &SipMessage,
    ) -> Result<Hop, FnError> {
        let (host, port, proto) = match target {
            Some(t) => {
                let proto = t.proto.unwrap_or(Proto::Udp);
                let port = t.port.unwrap_or(default_port(proto, false));
                (t.host, port, proto)
            }
            None => {
                let uri_bytes = match dst_uri {
                    Some(d) => d.clone(),
                    None => msg
                        .request_uri_bytes()
                        .ok_or_else(|| FnError::new("no request URI"))?,
                };
                let uri = Uri::parse(&uri_bytes).map_err(fnerr)?;
                let host = uri
                    .host()
                    .ok_or_else(|| FnError::new("destination URI has no host"))?;
                let sips = uri.scheme().eq_ignore_ascii_case(b"sips");
                let proto = match uri.param("transport").flatten() {
                    Some(t) => Proto::from_bytes(t).unwrap_or(Proto::Udp),
                    None if sips => Proto::Tls,
                    None => Proto::Udp,
                };
                let port = uri.port().unwrap_or(default_port(proto, sips));
                (uri_bytes.slice_ref(host), port, proto)
            }
        };
        let dst = resolve(&host, port)?;
        let local = self
            .local_for(proto, &dst)
            .ok_or_else(|| FnError::new(format!("no {} socket to send from", proto.name())))?;
        Ok(Hop { proto, dst, local })
    }

    /// Record-Route's view of a listen socket.
    fn socket_desc(&self, l: &Listen) -> SocketDesc {
        SocketDesc::new(l.proto, l.sent_by_host.clone(), l.sent_by_port)
    }

    /// The request as it leaves for `hop`: `received`/`rport` noted in the sender's Via
    /// (RFC 3261 §18.2.1, RFC 3581), Max-Forwards decremented (§16.6 step 3, unless the
    /// script's maxfwd functions did it), the Record-Route the script asked for, our Via
    /// with `branch` on top, and Content-Length on stream transports. `msg` is the
    /// request to send (the context's, or a branch's copy of it).
    pub(crate) fn outgoing_request(
        &self,
        ctx: &MsgContext,
        msg: &SipMessage,
        hop: &Hop,
        branch: &str,
    ) -> Result<SipMessage, FnError> {
        self.prepare_request(
            Forwarding::of(&ctx.ext),
            &ctx.net,
            msg.clone_for_edit(),
            hop,
            branch,
        )
    }

    /// [`Server::outgoing_request`] on a message the caller owns (a branch's own copy):
    /// edited in place, not copied again.
    pub(crate) fn prepare_request(
        &self,
        fwd: Forwarding<'_>,
        net: &NetInfo,
        mut out: SipMessage,
        hop: &Hop,
        branch: &str,
    ) -> Result<SipMessage, FnError> {
        let flags = fwd.flags;
        let received = {
            let top = out.top_via().map_err(fnerr)?;
            let src_ip = net.source.ip();
            let sent_by_ip = host_ip(top.host());
            // On a stream the reply must find the connection again, whose port is the
            // peer's ephemeral one: note it as rport, as if the client had asked.
            let stream = net.proto != Proto::Udp;
            let wants_rport = matches!(top.rport(), Some(None)) || flags.force_rport || stream;
            let add_received =
                (sent_by_ip != Some(src_ip) || wants_rport) && top.received().is_none();
            let add_rport = wants_rport && !matches!(top.rport(), Some(Some(_)));
            (add_received || add_rport).then(|| {
                let mut v = Vec::with_capacity(top.as_bytes().len() + 48);
                v.extend_from_slice(top.as_bytes());
                if matches!(top.rport(), Some(None)) {
                    // Replace the bare ";rport" instead of adding a second one.
                    if let Some(p) = find_bare_rport(&v) {
                        v.drain(p..p + 6);
                    }
                }
                if add_received {
                    let _ = write!(v, ";received={src_ip}");
                }
                if add_rport {
                    let _ = write!(v, ";rport={}", net.source.port());
                }
                v
            })
        };
        if let Some(new_top) = received {
            replace_top_via(&mut out, &new_top)?;
        }
        if !fwd.maxfwd_done {
            match out.max_forwards() {
                Ok(Some(0)) => return Err(FnError::new("Max-Forwards is 0: not forwarding")),
                Ok(Some(n)) => out.set_max_forwards(n - 1),
                Ok(None) => out.set_max_forwards(70),
                Err(e) => return Err(fnerr(e)),
            }
        }
        if let Some(plan) = fwd.record_route {
            let inbound = self
                .config
                .listen
                .iter()
                .find(|l| l.addr == net.local && l.proto == net.proto)
                .map(|l| self.socket_desc(&l.towards(net.source)))
                .unwrap_or_else(|| self.socket_desc(&hop.local));
            let outbound = self.socket_desc(&hop.local);
            let values = record_route_headers(plan, &inbound, &outbound);
            insert_record_route(&mut out, &values).map_err(fnerr)?;
        }
        let mut via: smallvec::SmallVec<[u8; 128]> = smallvec::SmallVec::new();
        via.extend_from_slice(b"SIP/2.0/");
        via.extend(hop.proto.name().bytes().map(|c| c.to_ascii_uppercase()));
        via.push(b' ');
        via.extend_from_slice(&hop.local.sent_by_host);
        let _ = write!(via, ":{};branch={branch}", hop.local.sent_by_port);
        if flags.local_rport {
            via.extend_from_slice(b";rport");
        }
        out.prepend_via(&via).map_err(fnerr)?;
        // Stream transports frame by Content-Length (RFC 3261 §18.3): add it if missing.
        if hop.proto != Proto::Udp && out.content_length().is_none() {
            let body = out.body_bytes();
            out.set_body(body);
        }
        Ok(out)
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

fn find_bare_rport(v: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = v[i..]
        .windows(6)
        .position(|w| w.eq_ignore_ascii_case(b";rport"))
    {
        let at = i + p;
        let next = v.get(at + 6).copied();
        if next != Some(b'=') {
            return Some(at);
        }
        i = at + 6;
    }
    None
}

/// Replaces the first Via entry's value with `new_value`.
fn replace_top_via(msg: &mut SipMessage, new_value: &[u8]) -> Result<(), FnError> {
    msg.remove_top_via().map_err(fnerr)?;
    msg.prepend_via(new_value).map_err(fnerr)
}
