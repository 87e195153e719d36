//! Running one route of a program, for whichever layer needs it: the script scope runs
//! request and reply routes, the transaction layer its branch, onreply and failure
//! routes. This module knows neither of them.
//!
//! A route run is a future. It is polled once on the thread that has the message; when
//! it waits on an async function (a database query, `sleep`), it moves to the runtime and
//! the thread goes on. Nothing spins and nothing waits with a lock held.

use crate::stats::Stats;
use ferrosip_api::MsgContext;
use ferrosip_script::vm::{Outcome, RuntimeError, Vm};
use ferrosip_script::{Program, RouteId};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// How a route run ended: its outcome, or the error that aborted it.
pub type RouteResult = Result<Outcome, RuntimeError>;

/// A route run that waits on an async function, to finish on the runtime.
pub type WaitingRoute = Pin<Box<dyn Future<Output = (RouteResult, MsgContext)> + Send>>;

/// A route run once started: most finish at once; some wait.
// `Done` is the common case and carries the context by value: boxing it would cost an
// allocation per message.
#[allow(clippy::large_enum_variant)]
pub enum RouteRun {
    Done(RouteResult, MsgContext),
    Waiting(WaitingRoute),
}

/// Polls a future once with a waker that does nothing: for a route run that may finish
/// without waiting (most do), before deciding whether it must move to the runtime.
pub(crate) fn poll_once<F: Future>(fut: Pin<&mut F>) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

/// Starts `route` of `program` for `ctx` on `vm`. `awaits` says whether the program
/// calls any async function.
///
/// A program without async functions runs inline on `vm`: nothing is allocated. Otherwise
/// the run (with its own VM, taken from `vm`) is polled once; if it waits, it is handed
/// back to be finished on the runtime, and `vm` is a fresh one.
#[inline]
pub fn start(
    vm: &mut Vm,
    program: &Arc<Program>,
    awaits: bool,
    route: RouteId,
    mut ctx: MsgContext,
) -> RouteRun {
    if !awaits {
        let run = vm.run(program, route, &mut ctx);
        let result = poll_once(std::pin::pin!(run)).unwrap_or_else(|| {
            // Only an async function can leave a route pending; a program without any
            // cannot get here.
            Err(RuntimeError {
                location: String::new(),
                message: "a route without async functions did not finish".into(),
            })
        });
        return RouteRun::Done(result, ctx);
    }
    let mut run = Box::pin(owned_run(
        Box::new(std::mem::take(vm)),
        program.clone(),
        route,
        ctx,
    ));
    match poll_once(run.as_mut()) {
        Some((owned_vm, result, ctx)) => {
            *vm = *owned_vm;
            RouteRun::Done(result, ctx)
        }
        None => RouteRun::Waiting(Box::pin(async move {
            let (_, result, ctx) = run.await;
            (result, ctx)
        })),
    }
}

/// A route run with a VM of its own, for a program that may wait: boxed by [`start`].
/// The VM rides in a box of its own so that this future stays within glibc's per-thread
/// cache (tcache: up to 1,032 bytes): with the VM inline it was 1,088 bytes, and every
/// message of a program with async functions (every Lua one) paid ~1,300 instructions
/// more to allocate and free it than the small box costs.
// A function returning an async block rather than an `async fn`: an async fn's future
// holds its arguments and their moved-in copies both (1,600 bytes here), a block's
// captures once.
#[allow(clippy::manual_async_fn)]
fn owned_run(
    mut vm: Box<Vm>,
    program: Arc<Program>,
    route: RouteId,
    mut ctx: MsgContext,
) -> impl Future<Output = (Box<Vm>, RouteResult, MsgContext)> + Send {
    async move {
        let result = vm.run(&program, route, &mut ctx).await;
        (vm, result, ctx)
    }
}

/// Calls `then` with the end of a started route run: before this returns when the run is
/// done, else on `runtime` when it ends (counted in `stats.suspended`). `owner` is what
/// `then` works on; it is cloned only for a run that waits.
#[inline]
pub fn then<C: Send + Sync + 'static>(
    owner: &Arc<C>,
    run: RouteRun,
    runtime: &tokio::runtime::Handle,
    stats: &Arc<Stats>,
    then: impl FnOnce(&Arc<C>, RouteResult, MsgContext) + Send + 'static,
) {
    match run {
        RouteRun::Done(result, ctx) => then(owner, result, ctx),
        RouteRun::Waiting(run) => {
            stats.suspended.fetch_add(1, Ordering::Relaxed);
            stats.waiting_routes.fetch_add(1, Ordering::Relaxed);
            let owner = owner.clone();
            let counted = stats.clone();
            let on_panic = move || {
                counted.panics.fetch_add(1, Ordering::Relaxed);
            };
            // Leaves the gauge however the run ends (finished, panicked, or dropped with
            // the runtime at shutdown).
            let waiting = WaitingRun(stats.clone());
            runtime.spawn(crate::guard::guarded(on_panic, "route run", async move {
                let _waiting = waiting;
                let (result, ctx) = run.await;
                then(&owner, result, ctx);
            }));
        }
    }
}

/// One route run counted in [`Stats::waiting_routes`] while it lives.
struct WaitingRun(Arc<Stats>);

impl Drop for WaitingRun {
    fn drop(&mut self) {
        self.0.waiting_routes.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Watches every route run of the server's programs: `ferrosip test` reads the
/// pseudo-variables and flags a route left, and a statement trace can start and end its
/// record per route here. The server runs without one (`Server::observer` is `None`):
/// then a route run costs one branch more.
pub trait RouteObserver: Send + Sync {
    /// Before `route` of `program` runs for `ctx`.
    fn route_starting(&self, _program: &Program, _route: RouteId, _ctx: &mut MsgContext) {}

    /// After `route` ran (or aborted) for `ctx`, with its result.
    fn route_done(
        &self,
        _program: &Program,
        _route: RouteId,
        _result: &RouteResult,
        _ctx: &MsgContext,
    ) {
    }
}

/// [`start`], with `observer` told when the run starts and when it ends (on the runtime
/// for a run that waits).
pub fn start_observed(
    observer: &Arc<dyn RouteObserver>,
    vm: &mut Vm,
    program: &Arc<Program>,
    awaits: bool,
    route: RouteId,
    mut ctx: MsgContext,
) -> RouteRun {
    observer.route_starting(program, route, &mut ctx);
    match start(vm, program, awaits, route, ctx) {
        RouteRun::Done(result, ctx) => {
            observer.route_done(program, route, &result, &ctx);
            RouteRun::Done(result, ctx)
        }
        RouteRun::Waiting(run) => {
            let observer = observer.clone();
            let program = program.clone();
            RouteRun::Waiting(Box::pin(async move {
                let (result, ctx) = run.await;
                observer.route_done(&program, route, &result, &ctx);
                (result, ctx)
            }))
        }
    }
}

/// A route run's outcome, its error logged with the script location and Call-ID.
pub fn logged_outcome(result: RouteResult, ctx: &MsgContext) -> Option<Outcome> {
    match result {
        Ok(o) => Some(o),
        Err(e) => {
            let call_id = String::from_utf8_lossy(ctx.msg.call_id().unwrap_or_default());
            tracing::error!(location = %e.location, call_id = %call_id, "script aborted: {}", e.message);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The largest allocation glibc's malloc serves from its per-thread cache (tcache) on
    /// 64-bit targets: anything larger takes the arena's slower path on every allocation.
    const MAX_CACHED_ALLOCATION: usize = 1032;

    fn size_of_output<A, B, C, D, R>(_: impl Fn(A, B, C, D) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    #[test]
    fn a_route_runs_future_fits_glibcs_per_thread_cache() {
        let size = size_of_output(owned_run);
        assert!(
            size <= MAX_CACHED_ALLOCATION,
            "a route run's future is {size} bytes, over glibc's per-thread cache"
        );
    }
}
