//! The outbound forwarder: where a request goes next (next hop and the socket it leaves
//! from), how it is prepared for each branch (received/rport, Max-Forwards, Record-Route,
//! our Via, Content-Length), and the send through its transport. Stateless forwarding
//! and the transaction layer both send through it; it knows neither.

use crate::digits::{hex_fixed, push_decimal};
use crate::dns::{Destination, Question, Resolver};
use crate::transport::{Listen, Transports};
use bytes::Bytes;
use ferrosip_api::registry::{BoxFuture, BranchHook, BranchSockets, OutgoingBranch};
use ferrosip_api::rr::SocketDesc;
use ferrosip_api::services::MaxForwardsDone;
use ferrosip_api::{FnError, ForwardFlags, MsgContext, NetInfo, Proto, SendInfo, Target};
use ferrosip_sip::{HeaderName, SipMessage, Uri};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

fn fnerr(e: impl std::fmt::Display) -> FnError {
    FnError::new(e.to_string())
}

/// The program's `onsend_route` as the senders below the script see it: asked with the
/// context of the message and what is about to be sent; `false` stops the send.
pub type OnSendGate<'a> = dyn Fn(&MsgContext, SendInfo) -> bool + 'a;

/// The sending side of the server: its transports, listen sockets and the modules'
/// per-branch hooks.
pub struct Outbound {
    transports: Transports,
    listen: Vec<Listen>,
    hooks: Vec<BranchHook>,
    /// Keys the loop tags: a tag in a Via branch can only match one this process wrote.
    loop_seed: foldhash::quality::RandomState,
    /// Host names to addresses (RFC 3263); without one only IP addresses are reached.
    resolver: Option<Arc<Resolver>>,
    /// Lookups started for a forward that could not wait for them (stateless forwarding,
    /// a reply to a Via host name): each question once at a time, so many at most.
    warming: Arc<Mutex<std::collections::HashSet<Question>>>,
    /// Where those lookups run.
    runtime: Option<tokio::runtime::Handle>,
    /// Replies waiting for the DNS answer of their Via's host (at most [`MAX_WAITING`]).
    waiting: AtomicUsize,
}

/// Lookups started in the background at most at once (see [`Outbound::warm`]).
const MAX_WARMING: usize = 256;

/// Replies waiting for a DNS answer at most at once (see [`Outbound::forward_reply`]).
const MAX_WAITING: usize = 1024;

pub use crate::dns::DnsTable;

/// The next hops of a request as far as they are known without waiting.
pub enum HopsNow {
    /// Known: in the order to try them (RFC 3263), at least one.
    Ready(Vec<Hop>),
    /// The host name must be looked up first ([`Outbound::lookup`]).
    Lookup(Question),
}

/// The loop-detection part of our Via branches (RFC 3261 §16.6 step 8), computed when a
/// request arrives from what a loop leaves unchanged: Request-URI, From and To tags,
/// Call-ID, CSeq number, Route, Proxy-Require and Proxy-Authorization as received, and the
/// socket it arrived on. Every branch we send for the request carries it as `-L` + 8 hex
/// digits; when a request comes back with one of our Vias carrying the tag it would get
/// again, nothing that decides its routing has changed: it has looped (§16.3 step 4). A
/// request that comes back changed (a new Request-URI, one Route fewer, another socket)
/// gets another tag and spirals on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoopTag(pub std::num::NonZeroU32);

const LOOP_MARK: &[u8] = b"-L";
const LOOP_HEX: usize = 8;

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

/// What our branch carries for `tag`: `-L` and the tag's 8 hex digits, at its end.
fn loop_mark(tag: LoopTag) -> [u8; LOOP_MARK.len() + LOOP_HEX] {
    let mut mark = [0u8; LOOP_MARK.len() + LOOP_HEX];
    mark[..LOOP_MARK.len()].copy_from_slice(LOOP_MARK);
    mark[LOOP_MARK.len()..].copy_from_slice(&hex_fixed::<LOOP_HEX>(tag.0.get().into()));
    mark
}

fn loop_tag_of_branch(branch: &[u8]) -> Option<u32> {
    let at = branch.len().checked_sub(LOOP_HEX + LOOP_MARK.len())?;
    let (mark, hex) = branch[at..].split_at(LOOP_MARK.len());
    if mark != LOOP_MARK {
        return None;
    }
    u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

use crate::dns::ip_literal;

/// An IP address written in a Via sent-by or a URI host (IPv6 in brackets).
fn host_ip(host: &[u8]) -> Option<IpAddr> {
    ip_literal(host)
}

/// The transport a `sips:` URI is reached over (RFC 3261 §26.2.2, RFC 5630 §3.1.3):
/// TLS on every hop, `transport=tcp` naming TLS's underlying TCP and `transport=ws` a
/// secure WebSocket; there is no SIPS over UDP.
fn secure(proto: Proto) -> Result<Proto, FnError> {
    match proto {
        Proto::Tcp | Proto::Tls => Ok(Proto::Tls),
        Proto::Ws | Proto::Wss => Ok(Proto::Wss),
        other => Err(FnError::new(format!(
            "a sips: URI cannot be reached over {} (RFC 3261 §26.2.2: TLS only)",
            other.name()
        ))),
    }
}

fn default_port(proto: Proto, sips: bool) -> u16 {
    if sips || matches!(proto, Proto::Tls | Proto::Wss) {
        5061
    } else {
        5060
    }
}

/// What the script decided about forwarding a request beside the message itself
/// (rport handling, Max-Forwards already done, the extensions per-branch hooks read).
#[derive(Clone, Copy, Default)]
pub struct Forwarding<'a> {
    pub flags: ForwardFlags,
    pub maxfwd_done: bool,
    pub ext: Option<&'a ferrosip_api::Extensions>,
    /// Written after our branch when loop detection is on ([`MsgContext::loop_tag`]).
    pub loop_tag: Option<LoopTag>,
}

impl<'a> Forwarding<'a> {
    /// As a route left it in its context's extensions (the loop tag is the caller's to
    /// add: it is on the context, not in the extensions).
    pub fn of(ext: &'a ferrosip_api::Extensions) -> Forwarding<'a> {
        Forwarding {
            flags: ext.get::<ForwardFlags>().copied().unwrap_or_default(),
            maxfwd_done: ext.get::<MaxForwardsDone>().is_some(),
            ext: Some(ext),
            loop_tag: None,
        }
    }
}

/// Where a request goes next and the socket it leaves from.
#[derive(Clone, Debug)]
pub struct Hop {
    pub proto: Proto,
    pub dst: SocketAddr,
    pub local: Listen,
}

impl Outbound {
    pub fn new(transports: Transports, listen: Vec<Listen>, hooks: Vec<BranchHook>) -> Outbound {
        Outbound {
            transports,
            listen,
            hooks,
            loop_seed: foldhash::quality::RandomState::default(),
            resolver: None,
            warming: Arc::default(),
            runtime: None,
            waiting: AtomicUsize::new(0),
        }
    }

    /// Resolves host names through `resolver`; lookups nobody waits for run on `runtime`.
    pub fn with_resolver(
        mut self,
        resolver: Arc<Resolver>,
        runtime: tokio::runtime::Handle,
    ) -> Outbound {
        self.resolver = Some(resolver);
        self.runtime = Some(runtime);
        self
    }

    /// The transports the server has sockets for (what DNS answers are filtered by).
    pub fn protocols(&self) -> Vec<Proto> {
        let mut protos: Vec<Proto> = Vec::new();
        for l in &self.listen {
            if !protos.contains(&l.proto) {
                protos.push(l.proto);
            }
        }
        protos
    }

    /// The resolver, when host names are resolved.
    pub fn resolver(&self) -> Option<&Arc<Resolver>> {
        self.resolver.as_ref()
    }

    /// Whether a stateful branch that fails is tried on its next DNS target
    /// (`use_dns_failover`).
    pub fn dns_failover(&self) -> bool {
        self.resolver
            .as_ref()
            .is_some_and(|r| r.settings().use_failover)
    }

    /// The [`LoopTag`] of a request as received on `net`.
    pub fn loop_tag(&self, msg: &SipMessage, net: &NetInfo) -> LoopTag {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut h = self.loop_seed.build_hasher();
        msg.request_uri().unwrap_or_default().hash(&mut h);
        msg.from_tag().unwrap_or_default().hash(&mut h);
        msg.to_tag().unwrap_or_default().hash(&mut h);
        msg.call_id().unwrap_or_default().hash(&mut h);
        msg.cseq().map(|c| c.seq).unwrap_or_default().hash(&mut h);
        for kind in [
            HeaderName::Route,
            HeaderName::ProxyRequire,
            HeaderName::ProxyAuthorization,
        ] {
            for value in msg.headers_of(kind) {
                value.hash(&mut h);
            }
        }
        net.local.hash(&mut h);
        (net.proto as u8).hash(&mut h);
        // 32 bits: a transaction cell has room for no more. Zero is the cell's "none", so
        // it is folded onto 1.
        let tag = (h.finish() >> 32) as u32;
        LoopTag(std::num::NonZeroU32::new(tag).unwrap_or(std::num::NonZeroU32::MIN))
    }

    /// Whether one of the request's Vias is ours with the tag it would get again: it went
    /// round and came back unchanged.
    pub fn has_looped(&self, msg: &SipMessage, tag: LoopTag) -> bool {
        // A branch of ours with this tag holds its mark as written: when no Via line has
        // it, no Via needs parsing (nearly every request).
        let mark = loop_mark(tag);
        if !msg
            .headers_of(HeaderName::Via)
            .any(|v| v.windows(mark.len()).any(|w| w == mark))
        {
            return false;
        }
        msg.vias().any(|via| {
            via.ok()
                .and_then(|v| v.branch().and_then(loop_tag_of_branch))
                .is_some_and(|t| t == tag.0.get())
        })
    }

    /// The loaded modules' message taps (see [`Transports::taps`]).
    pub fn taps(&self) -> &[std::sync::Arc<dyn ferrosip_api::trace::MessageTap>] {
        self.transports.taps()
    }

    /// The modules' per-branch hooks, in load order.
    pub fn hooks(&self) -> &[BranchHook] {
        &self.hooks
    }

    /// The TLS transport's sessions and profiles, when it runs.
    pub fn tls(&self) -> Option<std::sync::Arc<dyn ferrosip_api::tls::TlsControl>> {
        self.transports.tls.clone()
    }

    /// The WebSocket transports' connections, when they run.
    pub fn websocket(&self) -> Option<std::sync::Arc<dyn ferrosip_api::websocket::WsControl>> {
        self.transports.websocket.clone()
    }

    /// Sends bytes over `proto` to `dst` (from `local` when given).
    pub fn send(
        &self,
        proto: Proto,
        local: Option<SocketAddr>,
        dst: SocketAddr,
        data: Bytes,
    ) -> Result<(), FnError> {
        self.transports.send(proto, local, dst, data)
    }

    /// The listen socket to send from for `proto` towards `dst` (see
    /// [`crate::transport::pick_source`]), as `dst` sees it.
    fn local_for(&self, proto: Proto, dst: &SocketAddr) -> Option<Listen> {
        let of_proto: smallvec::SmallVec<[&Listen; 8]> =
            self.listen.iter().filter(|l| l.proto == proto).collect();
        crate::transport::pick_source(&of_proto, |l| l.addr, dst).map(|l| l.towards(*dst))
    }

    /// Stateless forwarding of the context's request (RFC 3261 §16.11): next hop, the
    /// request prepared with a branch derived from the incoming transaction, `onsend`
    /// asked, send.
    pub fn forward_stateless(
        &self,
        ctx: &MsgContext,
        target: Option<Target>,
        onsend: Option<&OnSendGate<'_>>,
    ) -> Result<(), FnError> {
        let hop = self.next_hop(target, ctx.dst_uri.as_ref(), &ctx.msg)?;
        // "z9hG4bKsl" + 16 hex digits, written without a heap allocation.
        let mut branch = [0u8; 25];
        branch[..9].copy_from_slice(b"z9hG4bKsl");
        branch[9..].copy_from_slice(&hex_fixed::<16>(stateless_branch(&ctx.msg)));
        let out = self.outgoing_request(ctx, &ctx.msg, &hop, &branch)?;
        let data = out.to_bytes();
        if let Some(gate) = onsend {
            let send = SendInfo {
                proto: hop.proto,
                local: hop.local.addr,
                dst: hop.dst,
                buf: data.clone(),
            };
            if !gate(ctx, send) {
                return Err(FnError::new(format!(
                    "onsend_route dropped the request to {}",
                    hop.dst
                )));
            }
        }
        self.send(hop.proto, Some(hop.local.addr), hop.dst, data)
    }

    /// Stateless reply forwarding (RFC 3261 §16.7 step 3 and §18.2.2 as a stateless
    /// proxy does it): drop our top Via, send to the next one's received/rport or sent-by.
    /// A sent-by host name that is not in the DNS cache is looked up on the runtime and
    /// the reply sent from there once the answer arrives (at most [`MAX_WAITING`] replies
    /// wait at once; past that the reply is dropped as any unsendable one).
    pub fn forward_reply(
        self: &Arc<Self>,
        ctx: &mut MsgContext,
        is_ours: impl Fn(&[u8], Option<u16>) -> bool,
        onsend: Option<&OnSendGate<'_>>,
    ) -> Result<(), FnError> {
        {
            let top = ctx.msg.top_via().map_err(fnerr)?;
            // A sent-by without a port means its transport's default one (RFC 3261 §18.2.2).
            let proto = Proto::from_bytes(top.transport()).unwrap_or(Proto::Udp);
            let port = top.port().unwrap_or(default_port(proto, false));
            if !is_ours(top.host(), Some(port)) {
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
            let question = Question {
                host: String::from_utf8_lossy(host).to_ascii_lowercase(),
                port: Some(port),
                proto: Some(proto),
                sips: false,
            };
            let dst = match ip_literal(host) {
                Some(ip) => Ok(SocketAddr::new(ip, port)),
                None => self.cached_first(&question)?.ok_or(question),
            };
            (proto, dst)
        };
        if proto != Proto::Udp && ctx.msg.content_length().is_none() {
            let body = ctx.msg.body_bytes();
            ctx.msg.set_body(body);
        }
        let data = ctx.msg.to_bytes();
        let dst = match (dst, onsend) {
            (Ok(dst), _) => dst,
            (Err(question), None) => return self.send_when_resolved(question, proto, data),
            // onsend_route needs the destination before the send and the message while it
            // runs: a reply to a Via host name not yet in the cache is not sent this time
            // (its retransmission finds the answer), rather than sent around the route.
            (Err(question), Some(_)) => {
                self.warm(&question);
                return Err(FnError::new(format!(
                    "{} is being resolved: reply not sent this time (onsend_route)",
                    question.host
                )));
            }
        };
        if let Some(gate) = onsend {
            let send = SendInfo {
                proto,
                local: self
                    .local_for(proto, &dst)
                    .map_or(ctx.net.local, |l| l.addr),
                dst,
                buf: data.clone(),
            };
            if !gate(ctx, send) {
                return Err(FnError::new(format!(
                    "onsend_route dropped the reply to {dst}"
                )));
            }
        }
        self.send(proto, None, dst, data)
    }

    /// The first destination of `q` when the cache has its answer (an error for a name
    /// known not to resolve); `None` when it must be looked up.
    fn cached_first(&self, q: &Question) -> Result<Option<SocketAddr>, FnError> {
        let resolver = self
            .resolver
            .as_ref()
            .ok_or_else(|| FnError::new(format!("cannot resolve {}: no resolver", q.host)))?;
        match resolver.cached(q) {
            Some(answer) => Ok(Some(answer?[0].addr)),
            None => Ok(None),
        }
    }

    /// Looks `q` up on the runtime, then sends `data` over `proto` to its first address.
    fn send_when_resolved(
        self: &Arc<Self>,
        q: Question,
        proto: Proto,
        data: Bytes,
    ) -> Result<(), FnError> {
        let (Some(resolver), Some(runtime)) = (&self.resolver, &self.runtime) else {
            return Err(FnError::new(format!(
                "cannot resolve {}: no resolver",
                q.host
            )));
        };
        let waiting = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_WAITING).then_some(n + 1)
            });
        if waiting.is_err() {
            return Err(FnError::new(format!(
                "{}: too many messages wait for DNS answers",
                q.host
            )));
        }
        let resolver = resolver.clone();
        let me = self.clone();
        runtime.spawn(async move {
            match resolver.resolve(&q).await {
                Ok(answer) => {
                    if let Err(e) = me.send(proto, None, answer[0].addr, data) {
                        tracing::debug!(host = %q.host, "reply not forwarded: {}", e.message);
                    }
                }
                Err(e) => tracing::info!("reply not forwarded: {}", e.message),
            }
            me.waiting.fetch_sub(1, Ordering::AcqRel);
        });
        Ok(())
    }

    /// For a stateless forward whose next hop is a host name not in the DNS cache: a
    /// future that looks it up (on the runtime) and gives the first destination we have
    /// a socket for as an address. `None` when the hop is known now, or when finding it
    /// fails at once: the forward then goes (or fails) without waiting.
    pub fn stateless_lookup(
        &self,
        target: Option<Target>,
        dst_uri: Option<&Bytes>,
        msg: &SipMessage,
    ) -> Option<BoxFuture<'static, Result<Target, FnError>>> {
        let Ok(HopsNow::Lookup(q)) = self.hops_now(target, dst_uri, msg) else {
            return None;
        };
        let resolver = self.resolver.clone()?;
        let runtime = self.runtime.clone()?;
        let protos = self.protocols();
        Some(Box::pin(async move {
            let host = q.host.clone();
            // Spawned: the route's future may be polled outside the runtime the resolver
            // needs; the join handle can be awaited anywhere.
            let answer = runtime
                .spawn(async move { resolver.resolve(&q).await })
                .await
                .map_err(|e| FnError::new(format!("lookup of {host} failed: {e}")))??;
            let d = answer
                .iter()
                .find(|d| protos.contains(&d.proto))
                .ok_or_else(|| {
                    FnError::new(format!(
                        "{host}: no socket to send from to any of its addresses"
                    ))
                })?;
            Ok(Target {
                host: Bytes::from(d.addr.ip().to_string()),
                port: Some(d.addr.port()),
                proto: Some(d.proto),
            })
        }))
    }

    /// The next hop of a request when it is known without waiting (an IP address, a
    /// cached DNS answer); else the lookup is started for the next request to the same
    /// place and this one fails. Only for senders that cannot wait: the transaction layer
    /// uses [`Outbound::hops_now`] and [`Outbound::lookup`].
    pub fn next_hop(
        &self,
        target: Option<Target>,
        dst_uri: Option<&Bytes>,
        msg: &SipMessage,
    ) -> Result<Hop, FnError> {
        match self.hops_now(target, dst_uri, msg)? {
            HopsNow::Ready(mut hops) => Ok(hops.swap_remove(0)),
            HopsNow::Lookup(q) => {
                self.warm(&q);
                Err(FnError::new(format!(
                    "{} is being resolved: not sent this time",
                    q.host
                )))
            }
        }
    }

    /// The addresses of `host` (A/AAAA) if known now; else starts the lookup (see
    /// [`ferrosip_api::Services::cached_addresses`]).
    pub fn cached_addresses(&self, host: &str) -> Option<Vec<IpAddr>> {
        if let Some(ip) = ip_literal(host.as_bytes()) {
            return Some(vec![ip]);
        }
        let resolver = self.resolver.as_ref()?;
        let q = Question {
            host: host.to_ascii_lowercase(),
            port: Some(5060),
            proto: Some(Proto::Udp),
            sips: false,
        };
        match resolver.cached(&q) {
            Some(Ok(dests)) => Some(dests.iter().map(|d| d.addr.ip()).collect()),
            Some(Err(_)) => Some(Vec::new()),
            None => {
                self.warm(&q);
                None
            }
        }
    }

    /// Starts looking `q` up on the runtime, so that the next message to it finds the
    /// answer cached; at most [`MAX_WARMING`] at once, one per question.
    fn warm(&self, q: &Question) {
        let (Some(resolver), Some(runtime)) = (&self.resolver, &self.runtime) else {
            return;
        };
        {
            let mut warming = self.warming.lock().unwrap_or_else(|e| e.into_inner());
            if warming.len() >= MAX_WARMING || !warming.insert(q.clone()) {
                return;
            }
        }
        let resolver = resolver.clone();
        let warming = self.warming.clone();
        let q = q.clone();
        runtime.spawn(async move {
            if let Err(e) = resolver.resolve(&q).await {
                tracing::info!("{}", e.message);
            }
            warming.lock().unwrap_or_else(|e| e.into_inner()).remove(&q);
        });
    }

    /// Where a request goes (an explicit target, else `dst_uri` ($du), else the R-URI of
    /// `msg`) as a DNS question, or the hop itself for an IP address.
    fn question(
        &self,
        target: Option<Target>,
        dst_uri: Option<&Bytes>,
        msg: &SipMessage,
    ) -> Result<Result<Hop, Question>, FnError> {
        let (host, port, proto, sips) = match target {
            Some(t) => (t.host, t.port, t.proto, false),
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
                let proto = uri
                    .param("transport")
                    .flatten()
                    .map(|t| Proto::from_bytes(t).unwrap_or(Proto::Udp));
                let proto = match (proto, sips) {
                    (Some(p), true) => Some(secure(p)?),
                    (p, _) => p,
                };
                (uri_bytes.slice_ref(host), uri.port(), proto, sips)
            }
        };
        if let Some(ip) = ip_literal(&host) {
            let proto = proto.unwrap_or(if sips { Proto::Tls } else { Proto::Udp });
            let dst = SocketAddr::new(ip, port.unwrap_or(default_port(proto, sips)));
            return self.hop_to(proto, dst).map(Ok);
        }
        Ok(Err(Question {
            host: String::from_utf8_lossy(&host).to_ascii_lowercase(),
            port,
            proto,
            sips,
        }))
    }

    fn hop_to(&self, proto: Proto, dst: SocketAddr) -> Result<Hop, FnError> {
        let local = self
            .local_for(proto, &dst)
            .ok_or_else(|| FnError::new(format!("no {} socket to send from", proto.name())))?;
        Ok(Hop { proto, dst, local })
    }

    /// The hops of resolved destinations we have a socket for, in their order.
    fn hops_of(&self, host: &str, dests: &[Destination]) -> Result<Vec<Hop>, FnError> {
        let hops: Vec<Hop> = dests
            .iter()
            .filter_map(|d| self.hop_to(d.proto, d.addr).ok())
            .collect();
        if hops.is_empty() {
            return Err(FnError::new(format!(
                "{host}: no socket to send from to any of its addresses"
            )));
        }
        Ok(hops)
    }

    /// The next hops of a request (RFC 3263), or the question to look up first.
    pub fn hops_now(
        &self,
        target: Option<Target>,
        dst_uri: Option<&Bytes>,
        msg: &SipMessage,
    ) -> Result<HopsNow, FnError> {
        let q = match self.question(target, dst_uri, msg)? {
            Ok(hop) => return Ok(HopsNow::Ready(vec![hop])),
            Err(q) => q,
        };
        let resolver = self
            .resolver
            .as_ref()
            .ok_or_else(|| FnError::new(format!("cannot resolve {}: no resolver", q.host)))?;
        match resolver.cached(&q) {
            Some(answer) => self.hops_of(&q.host, &answer?).map(HopsNow::Ready),
            None => Ok(HopsNow::Lookup(q)),
        }
    }

    /// Looks `q` up (on the runtime: this awaits the DNS) and gives its hops.
    pub async fn lookup(&self, q: &Question) -> Result<Vec<Hop>, FnError> {
        let resolver = self
            .resolver
            .as_ref()
            .ok_or_else(|| FnError::new(format!("cannot resolve {}: no resolver", q.host)))?;
        let answer = resolver.resolve(q).await?;
        self.hops_of(&q.host, &answer)
    }

    /// The request as it leaves for `hop`: `received`/`rport` noted in the sender's Via
    /// (RFC 3261 §18.2.1, RFC 3581), Max-Forwards decremented (§16.6 step 3, unless the
    /// script's maxfwd functions did it), our Via with `branch` on top, Content-Length on
    /// stream transports, then the modules' per-branch hooks (rr's Record-Route). `msg` is the
    /// request to send (the context's, or a branch's copy of it).
    pub fn outgoing_request(
        &self,
        ctx: &MsgContext,
        msg: &SipMessage,
        hop: &Hop,
        branch: &[u8],
    ) -> Result<SipMessage, FnError> {
        self.prepare_request(
            Forwarding {
                loop_tag: ctx.loop_tag.map(LoopTag),
                ..Forwarding::of(&ctx.ext)
            },
            &ctx.net,
            msg.clone_for_edit(),
            hop,
            branch,
        )
    }

    /// [`Outbound::outgoing_request`] on a message the caller owns (a branch's own copy):
    /// edited in place, not copied again.
    pub fn prepare_request(
        &self,
        fwd: Forwarding<'_>,
        net: &NetInfo,
        mut out: SipMessage,
        hop: &Hop,
        branch: &[u8],
    ) -> Result<SipMessage, FnError> {
        let flags = fwd.flags;
        let received = received_top_via(&out, net, flags.force_rport)?;
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
        let mut via: smallvec::SmallVec<[u8; 128]> = smallvec::SmallVec::new();
        via.extend_from_slice(b"SIP/2.0/");
        via.extend(hop.proto.name().bytes().map(|c| c.to_ascii_uppercase()));
        via.push(b' ');
        via.extend_from_slice(&hop.local.sent_by_host);
        via.push(b':');
        push_decimal(&mut via, hop.local.sent_by_port.into());
        via.extend_from_slice(b";branch=");
        via.extend_from_slice(branch);
        if let Some(tag) = fwd.loop_tag {
            via.extend_from_slice(&loop_mark(tag));
        }
        if flags.local_rport {
            via.extend_from_slice(b";rport");
        }
        out.prepend_via(&via).map_err(fnerr)?;
        // Stream transports frame by Content-Length (RFC 3261 §18.3): add it if missing.
        if hop.proto != Proto::Udp && out.content_length().is_none() {
            let body = out.body_bytes();
            out.set_body(body);
        }
        if let (false, Some(ext)) = (self.hooks.is_empty(), fwd.ext) {
            let sockets = Sockets {
                listen: &self.listen,
                net,
                hop,
            };
            let mut branch = OutgoingBranch {
                request: &mut out,
                sockets: &sockets,
                ext,
            };
            for hook in &self.hooks {
                (hook.run)(&mut branch)?;
            }
        }
        Ok(out)
    }
}

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

/// The top Via as the server transport marks a received request (RFC 3261 §18.2.1,
/// RFC 3581): `received` when the sent-by host is not the source address (or rport is
/// wanted), `rport` filled in when the client asked for it, `force_rport()` was called or
/// the request came on a stream. `None` when the Via needs nothing.
fn received_top_via(
    msg: &SipMessage,
    net: &NetInfo,
    force_rport: bool,
) -> Result<Option<Vec<u8>>, FnError> {
    let top = msg.top_via().map_err(fnerr)?;
    let src_ip = net.source.ip();
    let sent_by_ip = host_ip(top.host());
    // On a stream the reply must find the connection again, whose port is the
    // peer's ephemeral one: note it as rport, as if the client had asked.
    let stream = net.proto != Proto::Udp;
    let rport = top.rport();
    let wants_rport = matches!(rport, Some(None)) || force_rport || stream;
    let add_received = (sent_by_ip != Some(src_ip) || wants_rport) && top.received().is_none();
    let add_rport = wants_rport && !matches!(rport, Some(Some(_)));
    Ok((add_received || add_rport).then(|| {
        let mut v = Vec::with_capacity(top.as_bytes().len() + 48);
        v.extend_from_slice(top.as_bytes());
        if matches!(rport, Some(None)) {
            // Replace the bare ";rport" instead of adding a second one.
            if let Some(p) = find_bare_rport(&v) {
                v.drain(p..p + 6);
            }
        }
        if add_received {
            let _ = write!(v, ";received={src_ip}");
        }
        if add_rport {
            v.extend_from_slice(b";rport=");
            push_decimal(&mut v, net.source.port().into());
        }
        v
    }))
}

/// The request a local reply is built from: `req` itself, or a copy whose top Via carries
/// the `received`/`rport` the server transport notes (see [`received_top_via`]), so that
/// the client learns the address it was seen from, as in a relayed reply.
pub fn reply_basis<'m>(
    req: &'m SipMessage,
    net: &NetInfo,
    force_rport: bool,
) -> std::borrow::Cow<'m, SipMessage> {
    match received_top_via(req, net, force_rport) {
        Ok(Some(top)) => {
            let mut copy = req.clone();
            match replace_top_via(&mut copy, &top) {
                Ok(()) => std::borrow::Cow::Owned(copy),
                Err(_) => std::borrow::Cow::Borrowed(req),
            }
        }
        _ => std::borrow::Cow::Borrowed(req),
    }
}

/// Replaces the first Via entry's value with `new_value`.
fn replace_top_via(msg: &mut SipMessage, new_value: &[u8]) -> Result<(), FnError> {
    msg.remove_top_via().map_err(fnerr)?;
    msg.prepend_via(new_value).map_err(fnerr)
}

/// A branch's sockets as per-branch hooks ask for them.
struct Sockets<'a> {
    listen: &'a [Listen],
    net: &'a NetInfo,
    hop: &'a Hop,
}

fn socket_desc(l: &Listen) -> SocketDesc {
    SocketDesc::new(l.proto, l.sent_by_host.clone(), l.sent_by_port)
}

impl BranchSockets for Sockets<'_> {
    /// The listen socket the request came in on, as its sender sees it.
    fn inbound(&self) -> SocketDesc {
        let net = self.net;
        self.listen
            .iter()
            .find(|l| l.addr == net.local && l.proto == net.proto)
            .map(|l| socket_desc(&l.towards(net.source)))
            .unwrap_or_else(|| self.outbound())
    }

    fn outbound(&self) -> SocketDesc {
        socket_desc(&self.hop.local)
    }

    fn destination(&self) -> (Proto, SocketAddr) {
        (self.hop.proto, self.hop.dst)
    }
}

/// Adds the header lines queued by `append_to_reply` to a local reply.
pub fn with_reply_headers<'a>(
    mut b: ferrosip_sip::ReplyBuilder<'a>,
    extra: &ferrosip_api::ReplyHeaders,
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

/// What `onsend_route` runs with for a message a route sends: a copy of its context (the
/// request as the script left it, its flags, AVPs and variables). What the route changes
/// there stays there: the bytes are already built.
pub(crate) fn onsend_view(ctx: &MsgContext) -> MsgContext {
    let mut view = MsgContext::new(ctx.msg.clone(), ferrosip_api::RouteKind::OnSend, ctx.net);
    view.flags = ctx.flags;
    view.bflags = ctx.bflags;
    view.dst_uri = ctx.dst_uri.clone();
    view.avps = ctx.avps.clone();
    view.vars = ctx.vars.clone();
    view.branch_idx = ctx.branch_idx;
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_a_branch_gets_is_read_back_as_its_tag() {
        let tag = LoopTag(std::num::NonZeroU32::new(0x00ab_12cd).unwrap());
        assert_eq!(&loop_mark(tag), b"-L00ab12cd");
        let branch = [&b"z9hG4bK1f2e"[..], &loop_mark(tag)].concat();
        assert_eq!(loop_tag_of_branch(&branch), Some(0x00ab_12cd));
    }

    #[test]
    fn only_a_tag_of_ours_is_read_from_a_branch() {
        assert_eq!(
            loop_tag_of_branch(b"z9hG4bKf1a2b.0-L0badcafe"),
            Some(0x0bad_cafe)
        );
        assert_eq!(loop_tag_of_branch(b"z9hG4bKf1a2b.0"), None);
        assert_eq!(loop_tag_of_branch(b"z9hG4bK-Lzzzzzzzz"), None);
        assert_eq!(loop_tag_of_branch(b"-L"), None);
        assert_eq!(loop_tag_of_branch(b""), None);
    }

    #[test]
    fn a_sips_uri_goes_over_tls_only() {
        assert_eq!(secure(Proto::Tcp).unwrap(), Proto::Tls);
        assert_eq!(secure(Proto::Tls).unwrap(), Proto::Tls);
        assert_eq!(secure(Proto::Ws).unwrap(), Proto::Wss);
        assert!(secure(Proto::Udp).is_err());
        assert_eq!(default_port(Proto::Tls, false), 5061);
        assert_eq!(default_port(Proto::Tcp, true), 5061);
    }
}
