//! What route runs reach below the script, shared by every worker and every program
//! version: stateless reply and forward through the [`Outbound`], the transaction layer,
//! local requests, counters and the async runtime. It knows no program: the script scope
//! above holds the server it runs on, and the engine above that owns both.

use crate::config::ServerConfig;
use crate::outbound::{with_reply_headers, OnSendGate, Outbound};
use crate::tm::TmLayer;
use crate::uac::LocalRequests;
use bytes::Bytes;
use ferrosip_api::{FnError, MsgContext, Proto, ReplyHeaders, Target};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub use crate::stats::Stats;

/// What route runs reach, shared by every worker and every program version.
pub struct Server {
    pub config: ServerConfig,
    /// Next hop, per-branch preparation and send, over the transports.
    pub outbound: Arc<Outbound>,
    pub stats: Arc<Stats>,
    /// The transaction layer, when the script loads `tm`.
    pub tm: Option<Arc<TmLayer>>,
    /// Requests the server sends on its own behalf (keepalive probes).
    pub uac: Arc<LocalRequests>,
    /// Where module I/O (database pools, timers) and suspended route runs execute.
    pub runtime: tokio::runtime::Handle,
    /// Told of every route run (`ferrosip test`, a trace); `None` in a plain server.
    pub observer: Option<Arc<dyn crate::routes::RouteObserver>>,
    /// The control interface's commands for `jsonrpc_dispatch()`/`jsonrpc_exec()`: set
    /// by the control interface when it starts with `jsonrpcs` loaded.
    pub json_rpc: std::sync::OnceLock<Arc<dyn ferrosip_api::jsonrpc::JsonRpc>>,
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

impl Server {
    /// After the core reply route: to its transaction, else statelessly by Via (past
    /// `onsend`, the program's `onsend_route`, when `onsend_route_reply` is on).
    pub fn relay_reply(&self, ctx: &mut MsgContext, onsend: Option<&OnSendGate<'_>>) {
        if self.uac.on_reply(&ctx.msg) {
            return;
        }
        if let Some(tm) = &self.tm {
            if tm.on_reply(&ctx.msg, ctx.net) {
                return;
            }
        }
        if let Err(e) = self.forward_reply(ctx, onsend) {
            tracing::debug!(source = %ctx.net.source, "reply not forwarded: {}", e.message);
        }
    }

    /// Stateless reply forwarding (RFC 3261 §16.7 step 3 and §18.2.2 as a stateless
    /// proxy does it): when the top Via is ours (one of our addresses), by the next Via.
    fn forward_reply(
        &self,
        ctx: &mut MsgContext,
        onsend: Option<&OnSendGate<'_>>,
    ) -> Result<(), FnError> {
        let onsend = onsend.filter(|_| self.config.onsend_route_reply);
        self.outbound
            .forward_reply(ctx, |host, port| self.is_myself(host, port), onsend)?;
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        self.stats.fwd_replies.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub(crate) fn tm_layer(&self) -> Result<&Arc<TmLayer>, FnError> {
        self.tm
            .as_ref()
            .ok_or_else(|| FnError::new("the tm module is not loaded"))
    }

    /// A stateless reply to the context's request ([`ferrosip_api::Services::reply`]).
    pub fn reply(&self, ctx: &mut MsgContext, code: u16, reason: &[u8]) -> Result<(), FnError> {
        if !ctx.msg.is_request() {
            return Err(FnError::new("cannot reply to a reply"));
        }
        if ctx.msg.method_bytes() == Some(b"ACK") {
            return Err(FnError::new("an ACK is never answered"));
        }
        let reason = String::from_utf8_lossy(reason).into_owned();
        let tag = ctx.msg.stateless_to_tag();
        let force_rport = ctx
            .ext
            .get::<ferrosip_api::ForwardFlags>()
            .is_some_and(|f| f.force_rport);
        let basis = crate::outbound::reply_basis(&ctx.msg, &ctx.net, force_rport);
        let mut b = basis.reply(code, &reason).to_tag(tag);
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

    /// Stateless forwarding of the context's message ([`ferrosip_api::Services::forward`]): a reply by
    /// its Via, a request to its next hop, past `onsend` (the program's `onsend_route`)
    /// when there is one.
    pub fn forward(
        &self,
        ctx: &mut MsgContext,
        target: Option<Target>,
        onsend: Option<&OnSendGate<'_>>,
    ) -> Result<(), FnError> {
        if !ctx.msg.is_request() {
            return self.forward_reply(ctx, onsend);
        }
        self.outbound.forward_stateless(ctx, target, onsend)?;
        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        self.stats.fwd_requests.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Whether `host[:port]` is one of ours ([`ferrosip_api::Services::is_myself`]).
    pub fn is_myself(&self, host: &[u8], port: Option<u16>) -> bool {
        self.config.myself.matches(host, port)
    }
}

/// Set by the `maxfwd` functions: the script handled Max-Forwards itself.
pub use ferrosip_api::services::MaxForwardsDone;
