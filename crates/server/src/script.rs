//! The routing program a message runs and how its routes are driven.
//!
//! The server holds the current program in a [`ScriptScope`], swapped atomically on
//! reload. A message takes the scope current when it arrives and keeps it for all its
//! routes: the scope is the message's [`Services`], so a transaction created from it
//! (`t_relay`) keeps the same program for its branch, reply and failure routes, whose
//! ids in `t_on_*` marks belong to that program.
//!
//! A route run is a future (see [`crate::routes`]): polled once on the thread that has
//! the message, moved to the runtime when it waits. The transaction layer reaches the
//! scope that created a transaction only as its [`TxnScope`].

use crate::routes::{logged_outcome, RouteRun};
use crate::server::Server;
use crate::tm::TxnScope;
use ferrosip_api::services::{LocalOutcome, LocalRequest};
use ferrosip_api::tm::Transactions;
use ferrosip_api::SendInfo;
use ferrosip_api::{FnError, MsgContext, RouteKind, Services, Target};
use ferrosip_script::vm::Outcome;
use ferrosip_script::vm::Vm;
use ferrosip_script::{Program, RouteId};
use std::sync::{Arc, Weak};

/// One compiled program as the server runs it.
pub struct ScriptScope {
    pub program: Arc<Program>,
    /// Whether the program calls any async function: only then does a route run need an
    /// owned, movable state (a boxed future), which costs an allocation per message.
    pub awaits: bool,
    /// 1 for the program the server started with, +1 for each reload.
    pub generation: u64,
    /// The program's `onsend_route` (`ksr_onsend_route` in Lua): a send without one
    /// costs this one check.
    pub onsend: Option<RouteId>,
    server: Arc<Server>,
    /// The scope's own `Arc`, for the cells it creates (functions reach it as `&self`).
    me: Weak<ScriptScope>,
}

pub use crate::routes::RouteResult;

impl ScriptScope {
    pub fn new(program: Arc<Program>, generation: u64, server: Arc<Server>) -> Arc<ScriptScope> {
        // A route of another engine (Lua) may call any function, async ones included.
        let awaits = program.engine.is_some()
            || program
                .calls
                .iter()
                .any(|c| matches!(c.def.call, ferrosip_api::Callable::Async(_)));
        let onsend = program.main_route(RouteKind::OnSend);
        Arc::new_cyclic(|me| ScriptScope {
            program,
            awaits,
            generation,
            onsend,
            server,
            me: me.clone(),
        })
    }

    fn me(&self) -> Result<Arc<ScriptScope>, FnError> {
        self.me
            .upgrade()
            .ok_or_else(|| FnError::new("the script is being dropped"))
    }
}

impl ScriptScope {
    /// Starts `route` of this program for `ctx` on `vm` ([`crate::routes::start`]).
    #[inline]
    pub fn start_route(&self, vm: &mut Vm, route: RouteId, ctx: MsgContext) -> RouteRun {
        match &self.server.observer {
            None => crate::routes::start(vm, &self.program, self.awaits, route, ctx),
            Some(o) => crate::routes::start_observed(o, vm, &self.program, self.awaits, route, ctx),
        }
    }

    /// Runs `route` for `ctx`, then `then` with its result: before this returns when the
    /// run does not wait (a program without async functions never does), else on the
    /// runtime when it ends, while the caller goes on at once.
    #[inline]
    pub fn run_route_then(
        &self,
        vm: &mut Vm,
        route: RouteId,
        ctx: MsgContext,
        then: impl FnOnce(&Arc<Server>, RouteResult, MsgContext) + Send + 'static,
    ) {
        let run = self.start_route(vm, route, ctx);
        let server = &self.server;
        crate::routes::then(server, run, &server.runtime, &server.stats, then);
    }

    /// Runs `onsend_route` for `view`, the message about to leave as `send` says (its
    /// bytes, socket and destination); `false` when the route dropped it. The route runs
    /// to its end before the send, on a spare VM (the caller's may be in the middle of the
    /// route that sends); a route that would wait cannot (onsend functions are all
    /// synchronous) and counts as an error. As in Kamailio only `drop` stops the send: an
    /// error is logged and the message goes.
    pub fn run_onsend(&self, route: RouteId, mut view: MsgContext, send: SendInfo) -> bool {
        view.route = RouteKind::OnSend;
        if let Ok(me) = self.me() {
            view.services = Some(me as Arc<dyn Services>);
        }
        let dst = send.dst;
        view.ext.insert(send);
        let run = crate::tm::with_vm(|vm| match &self.server.observer {
            None => crate::routes::start(vm, &self.program, false, route, view),
            Some(o) => crate::routes::start_observed(o, vm, &self.program, false, route, view),
        });
        let (result, view) = match run {
            RouteRun::Done(result, view) => (result, view),
            // Not reached: a run started as not awaiting is finished or failed.
            RouteRun::Waiting(_) => return true,
        };
        match logged_outcome(result, &view) {
            Some(Outcome::Drop) => {
                tracing::info!(
                    call_id = %String::from_utf8_lossy(view.msg.call_id().unwrap_or_default()),
                    destination = %dst,
                    "message dropped by onsend_route"
                );
                false
            }
            _ => true,
        }
    }

    /// Runs `event_route[name]` of this program on the runtime.
    fn run_event_route_on(self: &Arc<Self>, name: &str, mut ctx: MsgContext) -> bool {
        let Some(route) = self.program.named_route(RouteKind::Event, name) else {
            return false;
        };
        ctx.route = RouteKind::Event;
        ctx.services = Some(self.clone() as Arc<dyn Services>);
        let scope = self.clone();
        self.server.runtime.spawn(async move {
            let mut vm = Vm::new();
            let result = vm.run(&scope.program, route, &mut ctx).await;
            logged_outcome(result, &ctx);
        });
        true
    }
}

impl TxnScope for ScriptScope {
    fn start_route(&self, vm: &mut Vm, route: RouteId, ctx: MsgContext) -> RouteRun {
        ScriptScope::start_route(self, vm, route, ctx)
    }

    fn has_onsend(&self) -> bool {
        self.onsend.is_some()
    }

    fn onsend_allows(&self, view: MsgContext, send: SendInfo) -> bool {
        match self.onsend {
            Some(route) => self.run_onsend(route, view, send),
            None => true,
        }
    }
}

/// The services a message's functions reach: the server's, with this program for the
/// transactions they create and the event routes they run.
impl Services for ScriptScope {
    fn reply(&self, ctx: &mut MsgContext, code: u16, reason: &[u8]) -> Result<(), FnError> {
        self.server.reply(ctx, code, reason)
    }

    fn forward(&self, ctx: &mut MsgContext, target: Option<Target>) -> Result<(), FnError> {
        match self.onsend {
            None => self.server.forward(ctx, target, None),
            Some(route) => {
                let gate = |c: &MsgContext, send: SendInfo| {
                    self.run_onsend(route, crate::outbound::onsend_view(c), send)
                };
                self.server.forward(ctx, target, Some(&gate))
            }
        }
    }

    fn forward_lookup(
        &self,
        ctx: &MsgContext,
        target: Option<&Target>,
    ) -> Option<ferrosip_api::registry::BoxFuture<'static, Result<Target, FnError>>> {
        if !ctx.msg.is_request() {
            return None;
        }
        self.server
            .outbound
            .stateless_lookup(target.cloned(), ctx.dst_uri.as_ref(), &ctx.msg)
    }

    fn is_myself(&self, host: &[u8], port: Option<u16>) -> bool {
        // The server's sockets, aliases and reverse-DNS names decide, whichever program
        // version runs (a change of `listen=`/`alias=` needs a restart).
        self.server.is_myself(host, port) || self.program.is_module_local(host)
    }

    fn transactions(&self) -> Option<&dyn Transactions> {
        self.server.tm.as_ref().map(|_| self as &dyn Transactions)
    }

    fn send_request(
        &self,
        request: LocalRequest,
    ) -> Result<ferrosip_api::registry::BoxFuture<'static, LocalOutcome>, FnError> {
        self.server.uac.send(request)
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

    fn send_raw(
        &self,
        proto: ferrosip_api::Proto,
        local: Option<std::net::SocketAddr>,
        dst: std::net::SocketAddr,
        data: bytes::Bytes,
    ) -> Result<(), FnError> {
        self.server.outbound.send(proto, local, dst, data)
    }

    fn websocket(&self) -> Option<Arc<dyn ferrosip_api::websocket::WsControl>> {
        self.server.outbound.websocket()
    }

    fn run_event_route(&self, name: &str, ctx: MsgContext) -> bool {
        match self.me() {
            Ok(me) => me.run_event_route_on(name, ctx),
            Err(_) => false,
        }
    }
}

impl Transactions for ScriptScope {
    fn relay(&self, ctx: &mut MsgContext, target: Option<Target>) -> Result<i32, FnError> {
        let me: Arc<dyn TxnScope> = self.me()?;
        self.server.tm_layer()?.relay(&me, ctx, target)
    }

    fn new_transaction(&self, ctx: &mut MsgContext) -> Result<i32, FnError> {
        let me: Arc<dyn TxnScope> = self.me()?;
        self.server.tm_layer()?.new_transaction(&me, ctx)
    }

    fn reply(&self, ctx: &mut MsgContext, code: u16, reason: &[u8]) -> Result<i32, FnError> {
        self.server.tm_layer()?.reply(ctx, code, reason)
    }

    fn check(&self, ctx: &mut MsgContext) -> Result<i32, FnError> {
        self.server.tm_layer()?.check(ctx)
    }

    fn exists(&self, ctx: &MsgContext) -> bool {
        self.server.tm.as_ref().is_some_and(|tm| tm.exists(ctx))
    }

    fn release(&self, ctx: &mut MsgContext) -> i32 {
        self.server.tm.as_ref().map_or(-1, |tm| tm.release(ctx))
    }
}
