//! The routing program a message runs and how its routes are driven.
//!
//! The server holds the current program in a [`ScriptScope`], swapped atomically on
//! reload. A message takes the scope current when it arrives and keeps it for all its
//! routes: the scope is the message's [`Services`], so a transaction created from it
//! (`t_relay`) keeps the same program for its branch, reply and failure routes, whose
//! ids in `t_on_*` marks belong to that program.
//!
//! A route run is a future. It is polled once on the thread that has the message; when
//! it waits on an async function (a database query, `sleep`), it moves to the runtime and
//! the thread goes on. Nothing spins and nothing waits with a lock held.

use crate::server::Server;
use ferrosip_api::services::{LocalOutcome, LocalRequest};
use ferrosip_api::tm::Transactions;
use ferrosip_api::{FnError, MsgContext, Services, Target};
use ferrosip_script::vm::{Outcome, RuntimeError, Vm};
use ferrosip_script::{Program, RouteId};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

/// One compiled program as the server runs it.
pub struct ScriptScope {
    pub program: Arc<Program>,
    /// Whether the program calls any async function: only then does a route run need an
    /// owned, movable state (a boxed future), which costs an allocation per message.
    pub awaits: bool,
    /// 1 for the program the server started with, +1 for each reload.
    pub generation: u64,
    server: Arc<Server>,
    /// The scope's own `Arc`, for the cells it creates (functions reach it as `&self`).
    me: Weak<ScriptScope>,
}

/// How a route run ended: its outcome, or the error that aborted it.
pub type RouteResult = Result<Outcome, RuntimeError>;

impl ScriptScope {
    pub fn new(program: Arc<Program>, generation: u64, server: Arc<Server>) -> Arc<ScriptScope> {
        let awaits = program
            .calls
            .iter()
            .any(|c| matches!(c.def.call, ferrosip_api::Callable::Async(_)));
        Arc::new_cyclic(|me| ScriptScope {
            program,
            awaits,
            generation,
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

/// Polls a future once with a waker that does nothing: for a route run that may finish
/// without waiting (most do), before deciding whether it must move to the runtime.
pub(crate) fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

impl Server {
    /// Runs `route` of `scope`'s program for `ctx`, then `then` with its result.
    ///
    /// A program without async functions runs inline on `vm`: nothing is allocated and
    /// `then` runs before this returns. Otherwise the run is polled once; if it waits,
    /// it moves (with its own VM) to the runtime and `then` runs there when it ends, and
    /// the caller goes on at once.
    pub(crate) fn run_route_then(
        self: &Arc<Self>,
        vm: &mut Vm,
        scope: &Arc<ScriptScope>,
        route: RouteId,
        ctx: MsgContext,
        then: impl FnOnce(&Arc<Server>, RouteResult, MsgContext) + Send + 'static,
    ) {
        let mut ctx = ctx;
        if !scope.awaits {
            let run = vm.run(&scope.program, route, &mut ctx);
            let result = poll_once(std::pin::pin!(run)).unwrap_or_else(|| {
                // Only an async function can leave a route pending; a program without
                // any cannot get here.
                Err(RuntimeError {
                    location: String::new(),
                    message: "a route without async functions did not finish".into(),
                })
            });
            then(self, result, ctx);
            return;
        }
        let program = scope.program.clone();
        let mut owned_vm = std::mem::take(vm);
        let mut run = Box::pin(async move {
            let result = owned_vm.run(&program, route, &mut ctx).await;
            (owned_vm, result, ctx)
        });
        match poll_once(run.as_mut()) {
            Some((owned_vm, result, ctx)) => {
                *vm = owned_vm;
                then(self, result, ctx);
            }
            None => {
                self.stats.suspended.fetch_add(1, Ordering::Relaxed);
                let server = self.clone();
                self.runtime.spawn(async move {
                    let (_, result, ctx) = run.await;
                    then(&server, result, ctx);
                });
            }
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
        self.server.forward(ctx, target)
    }

    fn is_myself(&self, host: &[u8], port: Option<u16>) -> bool {
        self.server.is_myself_in(&self.program, host, port)
    }

    fn transactions(&self) -> Option<&dyn Transactions> {
        self.server.tm.as_ref().map(|_| self as &dyn Transactions)
    }

    fn send_request(
        &self,
        request: LocalRequest,
    ) -> Result<ferrosip_api::registry::BoxFuture<'static, LocalOutcome>, FnError> {
        self.server.send_local_request(request)
    }

    fn run_event_route(&self, name: &str, ctx: MsgContext) -> bool {
        match self.me() {
            Ok(me) => self.server.run_event_route_in(&me, name, ctx),
            Err(_) => false,
        }
    }
}

impl Transactions for ScriptScope {
    fn relay(&self, ctx: &mut MsgContext, target: Option<Target>) -> Result<i32, FnError> {
        let server = &self.server;
        server.tm_layer()?.relay(server, &self.me()?, ctx, target)
    }

    fn new_transaction(&self, ctx: &mut MsgContext) -> Result<i32, FnError> {
        let server = &self.server;
        server.tm_layer()?.new_transaction(server, &self.me()?, ctx)
    }

    fn reply(&self, ctx: &mut MsgContext, code: u16, reason: &[u8]) -> Result<i32, FnError> {
        let server = &self.server;
        server.tm_layer()?.reply(server, ctx, code, reason)
    }

    fn check(&self, ctx: &mut MsgContext) -> Result<i32, FnError> {
        let server = &self.server;
        server.tm_layer()?.check(server, ctx)
    }

    fn exists(&self, ctx: &MsgContext) -> bool {
        self.server.tm.as_ref().is_some_and(|tm| tm.exists(ctx))
    }

    fn release(&self, ctx: &mut MsgContext) -> i32 {
        self.server.tm.as_ref().map_or(-1, |tm| tm.release(ctx))
    }
}
