//! Stateful proxying (RFC 3261 §16 over the §17 transactions of `ferrosip-transaction`):
//! the transaction table, branches, forking, the routes a transaction runs
//! (`branch_route`, `onreply_route[X]`, `failure_route`), CANCEL, best-response
//! selection and the timer thread.
//!
//! A transaction "cell" (Kamailio's word) holds the server transaction towards the
//! caller and one client transaction per branch. Locks: a table lock is only held to
//! find or insert a cell, never while a cell is locked by the same thread the other way
//! round.
//!
//! No route runs while its cell is locked. An event that needs a route (a branch to send
//! through `branch_route`, a reply for `onreply_route`, the end of every branch for
//! `failure_route`) is queued in the cell as a [`Deferred`] job; when the event's handler
//! releases the lock, the cell's jobs run one at a time, in order: under the lock the job
//! takes a snapshot of what the route sees, the route runs unlocked (inline when it does
//! not wait; on the runtime when it awaits a database or a timer), and under the lock
//! again its result is applied. Meanwhile the cell goes on absorbing retransmissions,
//! firing timers and taking a CANCEL; it sends no best final while its failure_route
//! runs. Functions called from these routes never lock a cell: in `failure_route`,
//! `t_relay`/`t_reply` leave their work in the context for the job to apply.

use std::cell::RefCell;
use std::collections::HashMap;

use smallvec::SmallVec;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrosip_api::services::Target;
use ferrosip_api::tm::{Branches, TmMarks, TmState};
use ferrosip_api::{Avps, FnError, MsgContext, NetInfo, Proto, ReplyHeaders, RouteKind};
use ferrosip_script::vm::{Outcome, Vm};
use ferrosip_script::RouteId;
use ferrosip_sip::SipMessage;
use ferrosip_transaction::{
    assemble_best, build_cancel, choose_best, trying, Action, Actions, BranchOutcome, ClientKey,
    ClientNonInvite, ClientTransaction, ServerKey, ServerTransaction, TimerConfig, TimerHandle,
    TimerId, TimerWheel, TuEvent,
};

use crate::outbound::{Forwarding, Hop, HopsNow, Outbound};
use crate::routes::{RouteResult, RouteRun};
use crate::stats::Stats;
use ferrosip_api::registry::BranchHook;

/// Transaction keys come from the network: a seeded hash, but much cheaper than SipHash.
type KeyHasher = foldhash::quality::RandomState;

/// Resolution of the timer thread: retransmission timers start at T1 (500 ms), so 20 ms
/// is far below anything a peer could notice (Kamailio's timer ticks every 62.5 ms).
/// Each tick is a thread wake-up: under load, most of them only end lingering
/// transactions, and a finer tick cost ~5 % of the CPU at 500 calls/s.
const TICK: Duration = Duration::from_millis(20);

/// Kamailio's default for how many times `failure_route` may add branches to one
/// transaction (serial forking depth), against loops between failure routes.
const MAX_FAILURE_ROUNDS: u16 = 12;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Which transaction of a cell an event or timer belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leg {
    Server,
    Branch(usize),
    Cancel(usize),
}

/// Where a transaction sends its messages.
#[derive(Clone, Copy, Debug)]
struct Peer {
    proto: Proto,
    local: Option<SocketAddr>,
    remote: SocketAddr,
}

struct TimerEntry {
    cell: Weak<Cell>,
    leg: Leg,
    /// `None`: the cell's maximum lifetime (Kamailio's `max_inv_lifetime` /
    /// `max_noninv_lifetime`), the safety net against a transaction that never ends.
    id: Option<TimerId>,
}

/// One proxied transaction.
pub struct Cell {
    id: u64,
    key: ServerKey,
    /// The program the transaction started with: its routes run from it to the end,
    /// whatever reloads happen meanwhile (the route ids in its marks are that program's).
    scope: Arc<dyn TxnScope>,
    state: Mutex<CellState>,
}

/// A transaction's CANCEL legs. Most transactions are never canceled: the legs live
/// behind one pointer made at the first CANCEL, 8 bytes in the cell instead of 24.
/// The box is the point: the cell holds 8 bytes, not a 24-byte `Vec`.
#[allow(clippy::box_collection)]
#[derive(Default)]
struct CancelLegs(Option<Box<Vec<CancelLeg>>>);

impl std::ops::Deref for CancelLegs {
    type Target = [CancelLeg];
    fn deref(&self) -> &[CancelLeg] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl std::ops::DerefMut for CancelLegs {
    fn deref_mut(&mut self) -> &mut [CancelLeg] {
        match &mut self.0 {
            Some(legs) => legs.as_mut_slice(),
            None => &mut [],
        }
    }
}

impl CancelLegs {
    fn push(&mut self, leg: CancelLeg) {
        self.0.get_or_insert_with(Box::default).push(leg);
    }

    fn reserve_exact(&mut self, more: usize) {
        self.0.get_or_insert_with(Box::default).reserve_exact(more);
    }
}

/// Work of a cell that must run a route first; see the module documentation.
enum Deferred {
    /// Send a branch after its `branch_route`.
    Branch { spec: BranchSpec, route: RouteId },
    /// A reply a branch passed up, after `onreply_route`.
    Reply {
        branch: usize,
        msg: SipMessage,
        /// Where it came from.
        net: NetInfo,
        code: u16,
        route: RouteId,
    },
    /// Every branch has ended: `failure_route`, then the best final if it added none.
    Failure { failed: Option<usize> },
}

/// What applies a job's route result, once the route has run.
enum JobEnd {
    Branch { target: Option<Target> },
    Reply { branch: usize, code: u16 },
    Failure,
}

/// A job's route run, prepared under the cell's lock.
struct RouteJob {
    route: RouteId,
    ctx: MsgContext,
    end: JobEnd,
}

struct Branch {
    client: ClientTransaction,
    key: ClientKey,
    peer: Peer,
    /// The final response (≥ 200) received, kept for best-response selection.
    reply: Option<SipMessage>,
    replied: bool,
    timed_out: bool,
    transport_error: bool,
    /// The branch's outcome no longer counts (`t_drop_replies()` in a failure route).
    dropped: bool,
    done: bool,
    terminated: bool,
    /// The DNS targets left to try if this one fails (`use_dns_failover`).
    failover: Option<Box<Failover>>,
    /// Its branch flags as it was sent: the onreply and failure routes see them, as in
    /// Kamailio (usrloc's `nat_bflag` set by lookup() tells the reply route the callee
    /// is behind a NAT).
    bflags: u64,
}

/// What a branch needs to be sent again to the next target of its DNS answer
/// (RFC 3263 §4.3): the request as it was before this hop's Via, and the hops left.
struct Failover {
    msg: SipMessage,
    hops: Vec<Hop>,
}

struct CancelLeg {
    client: ClientNonInvite,
    key: ClientKey,
    peer: Peer,
    terminated: bool,
}

struct CellState {
    uas: ServerTransaction,
    uas_peer: Peer,
    uas_terminated: bool,
    /// The request as the script relayed it (what failure_route sees).
    request: SipMessage,
    net: NetInfo,
    marks: TmMarks,
    flags: u64,
    avps: Avps,
    /// What the request route decided beside the message (Record-Route plan,
    /// forwarding flags), reapplied to branches added by failure_route.
    /// What the per-branch hooks keep of the request route (rr's Record-Route plan).
    ext_kept: ferrosip_api::Extensions,
    ext_fwd: Option<ferrosip_api::ForwardFlags>,
    maxfwd_done: bool,
    /// The request's loop tag, put in every branch's Via (`None`: loop detection off).
    loop_tag: Option<crate::outbound::LoopTag>,
    branches: Vec<Branch>,
    cancels: CancelLegs,
    /// A relayed INVITE runs a few at a time (server, branch, lifetime): inline.
    timers: SmallVec<[(Leg, TimerId, TimerHandle); 4]>,
    /// The maximum-lifetime timer, cancelled when the cell ends normally.
    lifetime: Option<TimerHandle>,
    final_status: Option<u16>,
    canceled: bool,
    expired: bool,
    /// u16, not u32: with the loop tag, the cell stays in its allocation size class.
    failure_rounds: u16,
    /// Our To tag for local replies; derived on first use (most transactions never send
    /// one beyond the 100) and then kept, so every local reply carries the same tag.
    /// Boxed, not a `String`: a cell is allocated per transaction and a few bytes more
    /// move it to the allocator's next size class.
    to_tag: Option<Box<str>>,
    config: TimerConfig,
    is_invite: bool,
    /// A job's route is running (the cell is unlocked meanwhile).
    route_running: bool,
    /// The route jobs, allocated when the cell first needs one (a cell whose script arms
    /// no t_on_* route never does) and let go once the cell is settled.
    routes: Option<Box<RouteQueue>>,
}

/// A cell's route jobs and what they hold back.
#[derive(Default)]
struct RouteQueue {
    /// Jobs waiting for a route run, in order; one runs at a time.
    jobs: Vec<Deferred>,
    /// Branches queued or in their `branch_route`: not sent yet, not ended either.
    pending_branches: u32,
    /// `failure_route` is queued or running: the best final waits for it.
    failure_pending: bool,
    /// `t_relay` returned while branch routes were still running: if none of them sends
    /// a branch, the cell answers the caller itself.
    relay_detached: bool,
    /// What observing modules (acc) watch of this transaction, told of its final reply
    /// once, then dropped. Kept here, not in the cell: a cell stays in its allocation
    /// size class, and only watched cells allocate this queue for it (it is let go only
    /// after the final reply, when the watches are gone already).
    watches: Vec<Box<dyn ferrosip_api::TxnWatch>>,
    /// Watches waiting for the ACK of the 2xx they heard (`TxnWatch::wants_e2e_ack`),
    /// with that 2xx's To tag: the ACK of another fork's 2xx is not theirs. The cell is
    /// in `TmLayer::e2e_acks` meanwhile.
    ack_watches: Vec<Box<dyn ferrosip_api::TxnWatch>>,
    ack_to_tag: Option<Box<[u8]>>,
}

/// `$du` as the script relayed the request: failure_route sees it too, as Kamailio's
/// faked request keeps the transaction's destination URI. Kept among the cell's
/// extensions: a field would grow every cell past its allocation size class.
#[derive(Clone)]
struct RelayedDstUri(Bytes);

/// Work `t_relay`/`t_reply` leave for the cell when called from `failure_route`.
#[derive(Default)]
struct FailureActions {
    relays: Vec<PendingRelay>,
    reply: Option<(u16, Bytes, Option<ReplyHeaders>)>,
}

struct PendingRelay {
    msg: SipMessage,
    dst_uri: Option<Bytes>,
    target: Option<Target>,
    branches: Vec<ferrosip_api::tm::BranchTarget>,
    marks: Option<TmMarks>,
    flags: u64,
    avps: Avps,
}

/// The running transaction layer.
pub struct TmLayer {
    server_txns: Mutex<HashMap<ServerKey, Arc<Cell>, KeyHasher>>,
    /// Holds its cell too: a cell lives until its last transaction ends, whichever
    /// side that is.
    client_txns: Mutex<HashMap<ClientKey, (Arc<Cell>, Leg), KeyHasher>>,
    wheel: Mutex<TimerWheel<TimerEntry>>,
    /// The timer thread, parked while no timer is set: the first timer wakes it.
    timer_thread: std::sync::OnceLock<std::thread::Thread>,
    defaults: TimerConfig,
    max_inv_lifetime: Duration,
    max_noninv_lifetime: Duration,
    /// `max_transactions`: open server transactions (cells) at most; past it a request
    /// that would open one is answered 503, so a flood of requests to a destination that
    /// never answers cannot grow memory without bound.
    max_transactions: usize,
    /// When the last "full" warning was logged (seconds since start): one a second.
    full_warned: AtomicU64,
    started: Instant,
    next_id: AtomicU64,
    /// Makes our branch ids differ from those of an earlier run of the server.
    boot: u32,
    /// INVITE cells whose watches wait for the ACK of their 2xx, by the ACK's dialog
    /// keys ([`e2e_ack_key`]): an ACK of a 2xx has a Via branch of its own, so it does
    /// not find its INVITE through `server_txns`. Only watched cells are here, each until
    /// its ACK or its end, so it holds at most `max_transactions` entries.
    e2e_acks: Mutex<HashMap<Box<[u8]>, Weak<Cell>, KeyHasher>>,
    env: TmEnv,
}

/// What the transaction layer works with, all from below it: the forwarder its branches
/// and replies go out through, the counters it adds to and the runtime its waiting
/// routes finish on. Routes come from each transaction's [`TxnScope`].
pub struct TmEnv {
    pub outbound: Arc<Outbound>,
    pub stats: Arc<Stats>,
    pub runtime: tokio::runtime::Handle,
    /// `max_branches`: branches one transaction sends in all (parallel and serial).
    pub max_branches: usize,
    /// The modules watching transactions end (`acc`); usually none.
    pub observers: Arc<[Arc<dyn ferrosip_api::TmObserver>]>,
    /// What the timers measure time with: the system's, or a test's (`ferrosip test`).
    pub clock: Clock,
    /// `onsend_route_reply`: the program's `onsend_route` runs for relayed replies too.
    pub onsend_route_reply: bool,
}

/// The time transaction timers run on. The server runs on the system clock and its
/// timer thread; a script test (`ferrosip test`) runs on a manual clock it advances and
/// fires the due timers itself ([`TmLayer::fire_due_timers`]), so a 30 s `fr_inv_timer`
/// takes no real time and a timeout test cannot be flaky. It is the registry's clock, so
/// the modules' notion of time moves with it.
pub use ferrosip_api::clock::Clock;

/// The program a transaction started with, as the layer that created it hands it down:
/// it runs the transaction's branch, onreply and failure routes and is the [`Services`]
/// those routes reach. The transaction layer knows the script only through this.
///
/// [`Services`]: ferrosip_api::Services
pub trait TxnScope: ferrosip_api::Services {
    /// Starts `route` for `ctx` on `vm` (see [`crate::routes::start`]).
    fn start_route(&self, vm: &mut Vm, route: RouteId, ctx: MsgContext) -> RouteRun;

    /// Whether the program has an `onsend_route`: asked before a branch's view of the
    /// message is built, so a program without one pays this check only.
    fn has_onsend(&self) -> bool;

    /// Runs the program's `onsend_route` for `view`, about to leave as `send`; `false`
    /// when the route dropped it (the branch then fails as on a send error).
    fn onsend_allows(&self, view: MsgContext, send: ferrosip_api::SendInfo) -> bool;
}

thread_local! {
    /// VMs for the routes a transaction runs: the thread's own VM may be in the middle
    /// of the request route that called `t_relay`.
    static SPARE_VMS: RefCell<Vec<Vm>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn with_vm<R>(f: impl FnOnce(&mut Vm) -> R) -> R {
    let mut vm = SPARE_VMS.with(|v| v.borrow_mut().pop()).unwrap_or_default();
    let r = f(&mut vm);
    SPARE_VMS.with(|v| v.borrow_mut().push(vm));
    r
}

fn ms(v: i64, default: Duration) -> Duration {
    if v > 0 {
        Duration::from_millis(v as u64)
    } else {
        default
    }
}

impl TmLayer {
    /// The layer over `env` with the `tm` module's timer parameters (ms, as Kamailio's).
    pub fn new(params: Option<&ferrosip_api::ModuleParams>, env: TmEnv) -> TmLayer {
        let mut defaults = TimerConfig::default();
        let mut max_inv_lifetime = Duration::from_secs(180);
        let mut max_noninv_lifetime = Duration::from_secs(32);
        let mut max_transactions = DEFAULT_MAX_TRANSACTIONS;
        if let Some(p) = params {
            max_inv_lifetime = ms(p.int("max_inv_lifetime"), max_inv_lifetime);
            max_noninv_lifetime = ms(p.int("max_noninv_lifetime"), max_noninv_lifetime);
            defaults.fr_timer = ms(p.int("fr_timer"), defaults.fr_timer);
            defaults.fr_inv_timer = ms(p.int("fr_inv_timer"), defaults.fr_inv_timer);
            // Kamailio's wait timer: how long an ended transaction absorbs late
            // retransmissions (default 5 s).
            defaults.linger = Some(ms(p.int("wt_timer"), Duration::from_secs(5)));
            if p.is_set("retr_timer1") {
                defaults.t1 = ms(p.int("retr_timer1"), defaults.t1);
            }
            if p.is_set("retr_timer2") {
                defaults.t2 = ms(p.int("retr_timer2"), defaults.t2);
            }
            let n = p.int("max_transactions");
            if n > 0 {
                max_transactions = n as usize;
            }
        }
        let boot = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() ^ (d.as_secs() as u32));
        TmLayer {
            server_txns: Mutex::new(HashMap::default()),
            client_txns: Mutex::new(HashMap::default()),
            wheel: Mutex::new(TimerWheel::new(env.clock.now(), Duration::from_millis(1))),
            timer_thread: std::sync::OnceLock::new(),
            defaults,
            max_inv_lifetime,
            max_noninv_lifetime,
            max_transactions,
            full_warned: AtomicU64::new(u64::MAX),
            started: Instant::now(),
            next_id: AtomicU64::new(1),
            boot,
            e2e_acks: Mutex::new(HashMap::default()),
            env,
        }
    }

    /// Answers a request that would open a transaction past `max_transactions`: 503 with
    /// Retry-After, sent statelessly (nothing is kept for it), counted.
    fn refuse_overloaded(&self, ctx: &MsgContext) {
        self.env.stats.overloaded.fetch_add(1, Ordering::Relaxed);
        let now = self.started.elapsed().as_secs();
        let last = self.full_warned.load(Ordering::Relaxed);
        if last != now
            && self
                .full_warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                max_transactions = self.max_transactions,
                "transaction table full: requests answered 503 until transactions end"
            );
        }
        if ctx.msg.method_bytes() == Some(b"ACK") {
            return;
        }
        let tag = ctx.msg.stateless_to_tag();
        let reply = ctx
            .msg
            .reply(503, "Service Unavailable")
            .to_tag(tag)
            .header("Retry-After", b"5")
            .build();
        if let Ok(data) = reply {
            let net = &ctx.net;
            if self
                .env
                .outbound
                .send(net.proto, Some(net.local), net.source, data)
                .is_ok()
            {
                self.env.stats.replies_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Open transactions (for stats and tests).
    pub fn len(&self) -> usize {
        lock(&self.server_txns).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Starts the thread that fires transaction timers; it ends once the layer is gone.
    pub fn start_timer_thread(self: &Arc<Self>) -> std::io::Result<()> {
        let weak = Arc::downgrade(self);
        let runtime = self.env.runtime.clone();
        let thread = std::thread::Builder::new()
            .name("tm-timer".into())
            .spawn(move || {
                // Routes a timer starts (failure_route after a timeout) may wait on the
                // runtime.
                let _entered = runtime.enter();
                let mut due = Vec::new();
                let mut idle = false;
                loop {
                    if idle {
                        // Woken by the first timer set (`insert_timer`); the timeout only
                        // notices a stopped server.
                        std::thread::park_timeout(Duration::from_secs(1));
                    } else {
                        std::thread::sleep(TICK);
                    }
                    let Some(tm) = weak.upgrade() else {
                        return;
                    };
                    idle = tm.fire_due_into(&mut due);
                }
            })?;
        let _ = self.timer_thread.set(thread.thread().clone());
        Ok(())
    }

    /// Fires every timer due by the layer's clock; whether no timer is left set. The
    /// timer thread calls it each tick; a script test calls it after moving its clock.
    pub fn fire_due_timers(self: &Arc<Self>) -> bool {
        self.fire_due_into(&mut Vec::new())
    }

    fn fire_due_into(self: &Arc<Self>, due: &mut Vec<TimerEntry>) -> bool {
        let idle = {
            let mut wheel = lock(&self.wheel);
            wheel.advance_into(self.env.clock.now(), due);
            wheel.is_empty()
        };
        for entry in due.drain(..) {
            if let Some(cell) = entry.cell.upgrade() {
                let fire = std::panic::AssertUnwindSafe(|| match entry.id {
                    Some(id) => self.on_timer(&cell, entry.leg, id),
                    None => self.end_of_life(&cell),
                });
                if std::panic::catch_unwind(fire).is_err() {
                    self.env.stats.panics.fetch_add(1, Ordering::Relaxed);
                    tracing::error!("a transaction timer panicked; timers go on");
                }
            }
        }
        idle
    }

    /// Sets a timer, waking the timer thread when it was idle.
    fn insert_timer(&self, after: Duration, entry: TimerEntry) -> TimerHandle {
        let (handle, was_empty) = {
            let mut wheel = lock(&self.wheel);
            let was_empty = wheel.is_empty();
            (wheel.insert(self.env.clock.now(), after, entry), was_empty)
        };
        if was_empty {
            if let Some(t) = self.timer_thread.get() {
                t.unpark();
            }
        }
        handle
    }

    /// A transaction outlived its maximum lifetime: answer 408 if nobody has answered
    /// and forget it.
    fn end_of_life(&self, cell: &Arc<Cell>) {
        {
            let mut st = lock(&cell.state);
            if st.uas_terminated && st.branches.iter().all(|b| b.terminated) {
                return;
            }
            tracing::info!(call_id = %String::from_utf8_lossy(st.request.call_id().unwrap_or_default()), "transaction reached its maximum lifetime");
            if st.final_status.is_none() {
                let _ = self.local_reply(cell, &mut st, 408, b"Request Timeout", None);
            }
        }
        self.forget(cell);
    }

    fn on_timer(self: &Arc<Self>, cell: &Arc<Cell>, leg: Leg, id: TimerId) {
        let mut st = lock(&cell.state);
        if let Some(p) = st.timers.iter().position(|(l, i, _)| *l == leg && *i == id) {
            st.timers.swap_remove(p);
        }
        let actions = match leg {
            Leg::Server => st.uas.on_timer(id),
            Leg::Branch(i) => st.branches[i].client.on_timer(id),
            Leg::Cancel(i) => st.cancels[i].client.on_timer(id),
        };
        self.run(cell, &mut st, leg, actions, None);
        self.drive(cell, st);
    }

    // ----- script entry points -------------------------------------------------------

    /// `t_relay()`.
    pub fn relay(
        self: &Arc<Self>,
        scope: &Arc<dyn TxnScope>,
        ctx: &mut MsgContext,
        target: Option<Target>,
    ) -> Result<i32, FnError> {
        if ctx.route == RouteKind::Failure {
            let pending = PendingRelay {
                msg: ctx.msg.clone(),
                dst_uri: ctx.dst_uri.clone(),
                target,
                branches: ctx
                    .ext
                    .remove::<Branches>()
                    .map(|b| b.0)
                    .unwrap_or_default(),
                marks: ctx.ext.get::<TmMarks>().cloned(),
                flags: ctx.flags,
                avps: ctx.avps.clone(),
            };
            ctx.ext
                .get_or_insert_with(FailureActions::default)
                .relays
                .push(pending);
            return Ok(1);
        }
        match ctx.msg.method_bytes() {
            Some(b"ACK") => return self.relay_ack(scope, ctx, target),
            Some(b"CANCEL") => return self.relay_cancel(scope, ctx, target),
            _ => {}
        }
        let (cell, created) = match self.cell_for(scope, ctx)? {
            CellFor::Retransmission | CellFor::Full => return Ok(0),
            CellFor::Cell(c, created) => (c, created),
        };
        let mut st = lock(&cell.state);
        if !st.branches.is_empty() || st.pending_branches() > 0 {
            // t_relay twice on one request (e.g. after t_newtran it is fine; twice is not).
            return Err(FnError::new("t_relay: the transaction was already relayed"));
        }
        if !created {
            // t_newtran() stored the request earlier; the script may have changed it since.
            st.request = ctx.msg.clone();
        }
        st.marks = ctx.ext.get::<TmMarks>().cloned().unwrap_or_default();
        st.flags = ctx.flags;
        st.avps = ctx.avps.clone();
        self.observe(&mut st, ctx);
        st.ext_kept = ferrosip_api::Extensions::default();
        for hook in self.env.outbound.hooks() {
            (hook.keep)(&ctx.ext, &mut st.ext_kept);
        }
        if let Some(du) = &ctx.dst_uri {
            st.ext_kept.insert(RelayedDstUri(du.clone()));
        }
        st.ext_fwd = ctx.ext.get::<ferrosip_api::ForwardFlags>().copied();
        st.maxfwd_done = ctx
            .ext
            .get::<ferrosip_api::services::MaxForwardsDone>()
            .is_some();
        st.loop_tag = ctx.loop_tag.map(crate::outbound::LoopTag);
        self.apply_timer_marks(&mut st);
        let extra = ctx
            .ext
            .remove::<Branches>()
            .map(|b| b.0)
            .unwrap_or_default();
        let specs = branch_specs(&ctx.msg, ctx.dst_uri.clone(), target, ctx.bflags, extra);
        // Exact capacity: a Vec's first growth would reserve four branches (2 KiB),
        // which is most of a cell's memory while it lingers.
        st.branches.reserve_exact(specs.len());
        if specs.len() > 1 && max_breadth(&st.request) == 0 {
            // RFC 5393 §5.3.3.1: no breadth left to fork with.
            let replied = self.local_reply(&cell, &mut st, 440, b"Max-Breadth Exceeded", None);
            self.drive(&cell, st);
            return replied.map(|_| 1);
        }
        let branch_route = st.marks.on_branch;
        let mut sent = self.add_branches(&cell, &mut st, specs, branch_route);
        if st.pending_branches() > 0 {
            // The branch routes run now, with the cell unlocked; those that wait on
            // something finish on the runtime and send their branch from there.
            self.drive(&cell, st);
            st = lock(&cell.state);
            if st.pending_branches() > 0 {
                st.queue().relay_detached = true;
                return Ok(1);
            }
            sent = st.branches.len();
        }
        if sent == 0 {
            if st.final_status.is_some() {
                // Answered meanwhile (a CANCEL during the branch routes).
                return Ok(1);
            }
            if created {
                // Nothing went out and nothing was answered: forget the transaction so
                // the script's error reply (sl_reply_error) is the only answer.
                drop(st);
                self.forget(&cell);
            }
            return Ok(-1);
        }
        self.drive(&cell, st);
        Ok(1)
    }

    /// `t_newtran()`.
    pub fn new_transaction(
        &self,
        scope: &Arc<dyn TxnScope>,
        ctx: &mut MsgContext,
    ) -> Result<i32, FnError> {
        if matches!(ctx.msg.method_bytes(), Some(b"ACK")) {
            return Err(FnError::new("t_newtran: an ACK gets no transaction"));
        }
        match self.cell_for(scope, ctx)? {
            CellFor::Retransmission | CellFor::Full => Ok(0),
            CellFor::Cell(..) => Ok(1),
        }
    }

    /// `t_reply(code, reason)`.
    pub fn reply(
        self: &Arc<Self>,
        ctx: &mut MsgContext,
        code: u16,
        reason: &[u8],
    ) -> Result<i32, FnError> {
        if ctx.route == RouteKind::Failure {
            let headers = ctx.ext.remove::<ReplyHeaders>();
            ctx.ext.get_or_insert_with(FailureActions::default).reply =
                Some((code, Bytes::copy_from_slice(reason), headers));
            return Ok(1);
        }
        if ctx.route != RouteKind::Request {
            return Err(FnError::new("t_reply: not available in this route"));
        }
        // t_reply answers through an existing transaction (t_newtran, t_relay); without
        // one it is an error, as in Kamailio ("no T-state has been established").
        let Some(cell) = self.find(&ctx.msg) else {
            return Err(FnError::new(
                "t_reply: the request has no transaction (call t_newtran() first)",
            ));
        };
        let mut st = lock(&cell.state);
        if !self.env.observers.is_empty() && !st.watched() {
            // The request route answers its transaction itself (t_newtran + t_reply):
            // its flags now are what observers judge the transaction by.
            st.flags = ctx.flags;
            self.observe(&mut st, ctx);
        }
        let headers = ctx.ext.remove::<ReplyHeaders>();
        let rc = self.local_reply(&cell, &mut st, code, reason, headers);
        self.drive(&cell, st);
        rc
    }

    /// `t_check_trans()` in request_route.
    pub fn check(&self, ctx: &mut MsgContext) -> Result<i32, FnError> {
        let msg = &ctx.msg;
        match msg.method_bytes() {
            Some(b"CANCEL") => {
                let Ok(probe) = ServerKey::probe_cancel_target(msg) else {
                    return Ok(-1);
                };
                Ok(if lock(&self.server_txns).contains_key(probe.as_bytes()) {
                    1
                } else {
                    -1
                })
            }
            Some(b"ACK") => match self.find(msg) {
                // The ACK of a negative reply ends here (hop by hop); a 2xx ACK that
                // matched goes on with the script.
                Some(cell) => Ok(if self.absorb_ack(&cell) { 0 } else { 1 }),
                None => {
                    // An ACK of a 2xx whose watches wait for it (acc's report_ack) is
                    // theirs; it still is no transaction's own (-1).
                    self.e2e_ack(ctx);
                    Ok(-1)
                }
            },
            _ => match self.find(msg) {
                Some(cell) => {
                    self.absorb_retransmission(&cell, msg);
                    Ok(0)
                }
                None => Ok(-1),
            },
        }
    }

    /// `t_precheck_trans()`.
    pub fn exists(&self, ctx: &MsgContext) -> bool {
        self.find(&ctx.msg).is_some()
    }

    /// `t_release()`.
    pub fn release(&self, ctx: &MsgContext) -> i32 {
        match self.find(&ctx.msg) {
            Some(c) => {
                self.forget(&c);
                1
            }
            None => -1,
        }
    }

    // ----- replies from downstream ---------------------------------------------------

    /// A reply received from downstream: `true` when it belonged to a transaction (and
    /// was handled), `false` for the stateless path.
    pub fn on_reply(self: &Arc<Self>, msg: &SipMessage, net: NetInfo) -> bool {
        let Ok(probe) = ClientKey::probe(msg) else {
            return false;
        };
        let found = lock(&self.client_txns).get(probe.as_bytes()).cloned();
        let Some((cell, leg)) = found else {
            return false;
        };
        let mut st = lock(&cell.state);
        let actions = match leg {
            Leg::Branch(i) => st.branches[i].client.on_reply(msg),
            Leg::Cancel(i) => st.cancels[i].client.on_reply(msg),
            Leg::Server => Actions::new(),
        };
        self.run(&cell, &mut st, leg, actions, Some((msg, net)));
        self.drive(&cell, st);
        true
    }

    // ----- internals -----------------------------------------------------------------

    /// The cell of the transaction `msg` belongs to (an ACK: its INVITE's).
    fn find(&self, msg: &SipMessage) -> Option<Arc<Cell>> {
        let probe = ServerKey::probe(msg).ok()?;
        lock(&self.server_txns).get(probe.as_bytes()).cloned()
    }

    /// A retransmitted request: its transaction sends the last reply again.
    fn absorb_retransmission(&self, cell: &Arc<Cell>, msg: &SipMessage) {
        let mut st = lock(&cell.state);
        let actions = st.uas.on_request(msg);
        self.run(cell, &mut st, Leg::Server, actions, None);
    }

    /// An ACK that matched an INVITE transaction; true when it acknowledged our
    /// negative final reply, so it ends here (hop by hop).
    fn absorb_ack(&self, cell: &Arc<Cell>) -> bool {
        let mut st = lock(&cell.state);
        if st.final_status.is_none_or(|s| s < 300) {
            return false;
        }
        let actions = match &mut st.uas {
            ServerTransaction::Invite(t) => t.on_ack(),
            ServerTransaction::NonInvite(_) => Actions::new(),
        };
        self.run(cell, &mut st, Leg::Server, actions, None);
        self.cleanup(cell, &mut st);
        true
    }

    fn apply_timer_marks(&self, st: &mut CellState) {
        if let Some(d) = st.marks.fr_timer {
            st.config.fr_timer = d;
        }
        if let Some(d) = st.marks.fr_inv_timer {
            st.config.fr_inv_timer = d;
        }
    }

    /// The cell of the request, created if absent; `Retransmission` when it existed
    /// (its last reply was sent again).
    fn cell_for(
        &self,
        scope: &Arc<dyn TxnScope>,
        ctx: &mut MsgContext,
    ) -> Result<CellFor, FnError> {
        let probe = ServerKey::probe(&ctx.msg).map_err(|e| FnError::new(format!("{e:?}")))?;
        let (existing, full) = {
            let table = lock(&self.server_txns);
            let existing = table.get(probe.as_bytes()).cloned();
            (existing, table.len() >= self.max_transactions)
        };
        if let Some(cell) = existing {
            if ctx.ext.get::<OwnCell>().is_some_and(|o| o.0 == cell.id) {
                return Ok(CellFor::Cell(cell, false));
            }
            self.absorb_retransmission(&cell, &ctx.msg);
            return Ok(CellFor::Retransmission);
        }
        if full {
            // Before anything is built for it: under a flood this path is the hot one.
            self.refuse_overloaded(ctx);
            return Ok(CellFor::Full);
        }
        let reliable = ctx.net.proto != Proto::Udp;
        let uas = ServerTransaction::new(&ctx.msg, reliable, self.defaults)
            .ok_or_else(|| FnError::new("no transaction for this request"))?;
        let is_invite = matches!(uas, ServerTransaction::Invite(_));
        let uas_peer = Peer {
            proto: ctx.net.proto,
            local: Some(ctx.net.local),
            remote: response_address(&ctx.msg, &ctx.net),
        };
        let cell = Arc::new(Cell {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            key: probe.to_key(),
            scope: scope.clone(),
            state: Mutex::new(CellState::new(
                uas,
                uas_peer,
                ctx.msg.clone(),
                ctx.net,
                ctx.flags,
                self.defaults,
            )),
        });
        {
            let mut table = lock(&self.server_txns);
            if let Some(other) = table.get(&cell.key) {
                // Another worker created it a moment ago: this copy is a retransmission.
                let other = other.clone();
                drop(table);
                self.absorb_retransmission(&other, &ctx.msg);
                return Ok(CellFor::Retransmission);
            }
            if table.len() >= self.max_transactions {
                drop(table);
                self.refuse_overloaded(ctx);
                return Ok(CellFor::Full);
            }
            table.insert(cell.key.clone(), cell.clone());
        }
        ctx.ext.insert(OwnCell(cell.id));
        let lifetime = if is_invite {
            self.max_inv_lifetime
        } else {
            self.max_noninv_lifetime
        };
        let handle = self.insert_timer(
            lifetime,
            TimerEntry {
                cell: Arc::downgrade(&cell),
                leg: Leg::Server,
                id: None,
            },
        );
        lock(&cell.state).lifetime = Some(handle);
        if is_invite {
            // RFC 3261 §16.2 / §17.2.1: answer 100 at once so the caller stops
            // retransmitting while the next hop is tried.
            let force_rport = ctx
                .ext
                .get::<ferrosip_api::ForwardFlags>()
                .is_some_and(|f| f.force_rport);
            let basis = crate::outbound::reply_basis(&ctx.msg, &ctx.net, force_rport);
            if let Ok(bytes) = trying(&basis) {
                let mut st = lock(&cell.state);
                let actions = st.uas.send_reply(100, bytes);
                self.run(&cell, &mut st, Leg::Server, actions, None);
            }
        }
        Ok(CellFor::Cell(cell, true))
    }

    /// Creates and sends branches; the number that went out now. With a `branch_route`,
    /// each branch is queued to run it first (`pending_branches`) and none goes out here.
    fn add_branches(
        self: &Arc<Self>,
        cell: &Arc<Cell>,
        st: &mut CellState,
        mut specs: Vec<BranchSpec>,
        branch_route: Option<RouteId>,
    ) -> usize {
        // A location with hundreds of contacts (or a script that appends without end)
        // must not turn one request into hundreds: the branches past `max_branches` are
        // not sent, as in Kamailio.
        let used = st.branches.len() + st.pending_branches() as usize;
        let room = self.env.max_branches.saturating_sub(used);
        if specs.len() > room {
            tracing::warn!(
                call_id = %String::from_utf8_lossy(st.request.call_id().unwrap_or_default()),
                max_branches = self.env.max_branches,
                "{} branches not sent: max_branches reached",
                specs.len() - room
            );
            specs.truncate(room);
        }
        share_max_breadth(st, &mut specs);
        if let Some(route) = branch_route {
            let queue = st.queue();
            queue.pending_branches += specs.len() as u32;
            queue.jobs.extend(
                specs
                    .into_iter()
                    .map(|spec| Deferred::Branch { spec, route }),
            );
            return 0;
        }
        let mut sent = 0;
        for spec in specs {
            match self.send_branch(cell, st, spec, None) {
                Ok(true) => sent += 1,
                Ok(false) => {}
                Err(e) => self.log_unsent(st, &e),
            }
        }
        sent
    }

    fn log_unsent(&self, st: &CellState, e: &FnError) {
        tracing::info!(call_id = %String::from_utf8_lossy(st.request.call_id().unwrap_or_default()), "branch not sent: {}", e.message);
    }

    /// Sends a branch: `routed` is the context its `branch_route` left (what it decided
    /// about forwarding), `None` when it ran none. A destination whose host name must be
    /// looked up first is looked up on the runtime and sent from there: the branch is
    /// pending meanwhile, as one in its branch route is.
    fn send_branch(
        self: &Arc<Self>,
        cell: &Arc<Cell>,
        st: &mut CellState,
        spec: BranchSpec,
        routed: Option<ferrosip_api::Extensions>,
    ) -> Result<bool, FnError> {
        let hops = match self.env.outbound.hops_now(
            spec.target.clone(),
            spec.dst_uri.as_ref(),
            &spec.msg,
        )? {
            HopsNow::Ready(hops) => hops,
            HopsNow::Lookup(question) => {
                st.queue().pending_branches += 1;
                let tm = self.clone();
                let cell = cell.clone();
                self.env.runtime.spawn(async move {
                    let hops = tm.env.outbound.lookup(&question).await;
                    let mut st = lock(&cell.state);
                    st.queue().pending_branches -= 1;
                    if st.final_status.is_none() && !st.canceled {
                        let sent = hops.and_then(|hops| {
                            tm.send_to(&cell, &mut st, spec, routed.as_ref(), hops)
                        });
                        if let Err(e) = sent {
                            tm.log_unsent(&st, &e);
                        }
                    }
                    tm.branch_settled(&cell, &mut st);
                    tm.drive(&cell, st);
                });
                return Ok(false);
            }
        };
        self.send_to(cell, st, spec, routed.as_ref(), hops)
    }

    /// Sends a branch to the first of `hops`, keeping the others for failover when
    /// `use_dns_failover` is on.
    fn send_to(
        &self,
        cell: &Arc<Cell>,
        st: &mut CellState,
        spec: BranchSpec,
        routed: Option<&ferrosip_api::Extensions>,
        mut hops: Vec<Hop>,
    ) -> Result<bool, FnError> {
        let hop = hops.remove(0);
        let failover = (!hops.is_empty() && self.env.outbound.dns_failover()).then(|| {
            Box::new(Failover {
                msg: spec.msg.clone(),
                hops,
            })
        });
        self.send_branch_via(cell, st, spec.msg, spec.bflags, routed, hop, failover)
    }

    /// Sends `msg` as a new branch to `hop`.
    #[allow(clippy::too_many_arguments)]
    fn send_branch_via(
        &self,
        cell: &Arc<Cell>,
        st: &mut CellState,
        msg: SipMessage,
        bflags: u64,
        routed: Option<&ferrosip_api::Extensions>,
        hop: Hop,
        failover: Option<Box<Failover>>,
    ) -> Result<bool, FnError> {
        let idx = st.branches.len();
        let branch_id = branch_id(self.boot, cell.id, idx);
        let net = st.net;
        let fwd = match routed {
            // A branch route cannot change what the loop tag was computed from.
            Some(ext) => Forwarding {
                loop_tag: st.loop_tag,
                ..Forwarding::of(ext)
            },
            None => st.forwarding(),
        };
        // onsend_route sees the branch's request before our edits (Via, Max-Forwards),
        // with the transaction's flags and AVPs, and the bytes that go out.
        let view = cell.scope.has_onsend().then(|| {
            let mut view = MsgContext::new(msg.clone(), RouteKind::OnSend, net);
            view.flags = st.flags;
            view.avps = st.avps.clone();
            view.branch_idx = idx as i32;
            view
        });
        let out = self
            .env
            .outbound
            .prepare_request(fwd, &net, msg, &hop, &branch_id)?;
        if let Some(view) = view {
            let send = ferrosip_api::SendInfo {
                proto: hop.proto,
                local: hop.local.addr,
                dst: hop.dst,
                buf: out.to_bytes(),
            };
            if !cell.scope.onsend_allows(view, send) {
                return Err(FnError::new(format!(
                    "onsend_route dropped the request to {}",
                    hop.dst
                )));
            }
        }
        let key = ClientKey::of_request(&out).map_err(|e| FnError::new(format!("{e:?}")))?;
        let reliable = hop.proto != Proto::Udp;
        // fr_timer until the first provisional, then fr_inv_timer (the client INVITE
        // transaction switches), as Kamailio's tm does.
        let Some((client, actions)) = ClientTransaction::new(out, reliable, st.config) else {
            return Ok(false);
        };
        st.branches.push(Branch {
            client,
            key: key.clone(),
            peer: Peer {
                proto: hop.proto,
                local: Some(hop.local.addr),
                remote: hop.dst,
            },
            reply: None,
            replied: false,
            timed_out: false,
            transport_error: false,
            dropped: false,
            done: false,
            terminated: false,
            failover,
            bflags,
        });
        lock(&self.client_txns).insert(key, (cell.clone(), Leg::Branch(idx)));
        self.env.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        self.env.stats.fwd_requests.fetch_add(1, Ordering::Relaxed);
        self.run(cell, st, Leg::Branch(idx), actions, None);
        Ok(true)
    }

    /// Stateless forwarding of a request the layer does not keep (a 2xx ACK, a CANCEL
    /// without its INVITE here), past the program's `onsend_route`.
    fn forward_stateless(
        &self,
        scope: &Arc<dyn TxnScope>,
        ctx: &mut MsgContext,
        target: Option<Target>,
    ) -> Result<(), FnError> {
        let gate = |c: &MsgContext, send: ferrosip_api::SendInfo| {
            scope.onsend_allows(crate::outbound::onsend_view(c), send)
        };
        let onsend = scope
            .has_onsend()
            .then_some(&gate as &crate::outbound::OnSendGate<'_>);
        self.env.outbound.forward_stateless(ctx, target, onsend)?;
        self.env.stats.forwarded.fetch_add(1, Ordering::Relaxed);
        self.env.stats.fwd_requests.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn relay_ack(
        &self,
        scope: &Arc<dyn TxnScope>,
        ctx: &mut MsgContext,
        target: Option<Target>,
    ) -> Result<i32, FnError> {
        // The ACK of a negative reply we sent is absorbed by its transaction.
        if self
            .find(&ctx.msg)
            .is_some_and(|cell| self.absorb_ack(&cell))
        {
            return Ok(0);
        }
        // A 2xx ACK is end to end: forwarded statelessly (RFC 3261 §16.6, §17.1.1.3).
        self.e2e_ack(ctx);
        self.forward_stateless(scope, ctx, target).map(|()| 1)
    }

    fn relay_cancel(
        self: &Arc<Self>,
        scope: &Arc<dyn TxnScope>,
        ctx: &mut MsgContext,
        target: Option<Target>,
    ) -> Result<i32, FnError> {
        let invite = ServerKey::probe_cancel_target(&ctx.msg)
            .ok()
            .and_then(|p| lock(&self.server_txns).get(p.as_bytes()).cloned());
        let Some(invite) = invite else {
            // No transaction to cancel here: pass it on statelessly, as Kamailio does.
            return self.forward_stateless(scope, ctx, target).map(|()| 1);
        };
        // The CANCEL's own transaction answers it (and its retransmissions) with 200.
        let cancel_cell = match self.cell_for(scope, ctx)? {
            CellFor::Retransmission | CellFor::Full => return Ok(0),
            CellFor::Cell(c, _) => c,
        };
        {
            let mut st = lock(&cancel_cell.state);
            // The CANCEL's own transaction is watched like any (acc's report_cancels).
            self.observe(&mut st, ctx);
            let _ = self.local_reply(&cancel_cell, &mut st, 200, b"Canceling", None);
            self.cleanup(&cancel_cell, &mut st);
        }
        let mut st = lock(&invite.state);
        st.canceled = true;
        if st.final_status.is_none() {
            self.cancel_pending(&invite, &mut st, None);
        }
        self.drive(&invite, st);
        Ok(1)
    }

    /// Sends a locally generated final (or provisional) reply on the server transaction.
    fn local_reply(
        &self,
        cell: &Arc<Cell>,
        st: &mut CellState,
        code: u16,
        reason: &[u8],
        headers: Option<ReplyHeaders>,
    ) -> Result<i32, FnError> {
        // After a final, only another 2xx to an INVITE may follow (RFC 6026).
        if st.final_status.is_some() && !(st.is_invite && (200..300).contains(&code)) {
            return Ok(-1);
        }
        let reason = String::from_utf8_lossy(reason).into_owned();
        let tag = (code > 100).then(|| {
            let request = &st.request;
            st.to_tag
                .get_or_insert_with(|| request.stateless_to_tag().into_boxed_str())
                .to_string()
        });
        let force_rport = st.ext_fwd.is_some_and(|f| f.force_rport);
        let basis = crate::outbound::reply_basis(&st.request, &st.net, force_rport);
        let mut b = basis.reply(code, &reason);
        if let Some(tag) = tag {
            b = b.to_tag(tag);
        }
        if let Some(extra) = headers {
            b = crate::outbound::with_reply_headers(b, &extra);
        }
        let bytes = b.build().map_err(|e| FnError::new(e.to_string()))?;
        if code >= 200 {
            st.final_status = Some(code);
        }
        if st.watched() && code > 100 {
            let mut watches = st.take_watches();
            let reply = ferrosip_api::FinalReply {
                code,
                reason: reason.as_bytes(),
                to_tag: st.to_tag.as_deref().map(str::as_bytes),
                request: &st.request,
                flags: st.flags,
                local: true,
                reply: None,
            };
            if code >= 200 {
                let waiting = Self::tell_final(st.is_invite, watches, &reply);
                self.wait_for_ack(cell, st, waiting);
            } else {
                for w in &mut watches {
                    w.on_provisional(&reply);
                }
                st.queue().watches = watches;
            }
        }
        let actions = st.uas.send_reply(code, upstream(st, bytes));
        self.run(cell, st, Leg::Server, actions, None);
        self.env.stats.replies_sent.fetch_add(1, Ordering::Relaxed);
        if code >= 200 {
            self.cancel_pending(cell, st, None);
        }
        Ok(1)
    }

    /// Carries out a transaction's actions and the events they raise.
    fn run(
        &self,
        cell: &Arc<Cell>,
        st: &mut CellState,
        leg: Leg,
        actions: Actions,
        reply: Option<(&SipMessage, NetInfo)>,
    ) {
        // Most inputs produce a handful of actions and at most one event: no allocation.
        let mut events: SmallVec<[(Leg, TuEvent); 2]> = SmallVec::new();
        let mut work: SmallVec<[(Leg, Action); 8]> =
            actions.into_iter().map(|a| (leg, a)).collect();
        let mut next = 0;
        while next < work.len() {
            let (leg, action) = work[next].clone();
            next += 1;
            match action {
                Action::Send(bytes) => {
                    let peer = match leg {
                        Leg::Server => st.uas_peer,
                        Leg::Branch(i) => st.branches[i].peer,
                        Leg::Cancel(i) => st.cancels[i].peer,
                    };
                    if let Err(e) =
                        self.env
                            .outbound
                            .send(peer.proto, peer.local, peer.remote, bytes)
                    {
                        tracing::debug!(peer = %peer.remote, "send failed: {}", e.message);
                        let more = match leg {
                            Leg::Server => st.uas.on_transport_error(),
                            Leg::Branch(i) => st.branches[i].client.on_transport_error(),
                            Leg::Cancel(i) => st.cancels[i].client.on_transport_error(),
                        };
                        work.extend(more.into_iter().map(|a| (leg, a)));
                    }
                }
                Action::StartTimer(id, after) => {
                    let handle = self.insert_timer(
                        after,
                        TimerEntry {
                            cell: Arc::downgrade(cell),
                            leg,
                            id: Some(id),
                        },
                    );
                    st.timers.push((leg, id, handle));
                }
                Action::CancelTimer(id) => {
                    if let Some(p) = st.timers.iter().position(|(l, i, _)| *l == leg && *i == id) {
                        let (_, _, h) = st.timers.swap_remove(p);
                        lock(&self.wheel).cancel(h);
                    }
                }
                Action::ToTu(ev) => events.push((leg, ev)),
                Action::Terminated => match leg {
                    Leg::Server => st.uas_terminated = true,
                    Leg::Branch(i) => st.branches[i].terminated = true,
                    Leg::Cancel(i) => st.cancels[i].terminated = true,
                },
            }
        }
        for (leg, ev) in events {
            self.on_event(cell, st, leg, ev, reply);
        }
    }

    fn on_event(
        &self,
        cell: &Arc<Cell>,
        st: &mut CellState,
        leg: Leg,
        ev: TuEvent,
        reply: Option<(&SipMessage, NetInfo)>,
    ) {
        let Leg::Branch(i) = leg else {
            // Server and CANCEL legs: nothing for the proxy core to do (ACKs are seen
            // by the script, the 200 of a CANCEL ends there).
            return;
        };
        match ev {
            TuEvent::Response(code) | TuEvent::Later2xx(code) => {
                if let Some((m, net)) = reply {
                    self.branch_response(cell, st, i, m, net, code);
                }
            }
            TuEvent::Timeout(kind) => {
                // No answer at all, not even a provisional: the next DNS target.
                if !st.branches[i].replied && self.fail_over(cell, st, i) {
                    return;
                }
                let b = &mut st.branches[i];
                if !b.done {
                    b.done = true;
                    b.timed_out = true;
                    if kind == ferrosip_transaction::TimerKind::Fr {
                        st.expired = true;
                    }
                    self.completion(cell, st, Some(i));
                }
            }
            TuEvent::TransportError => {
                if self.fail_over(cell, st, i) {
                    return;
                }
                let b = &mut st.branches[i];
                if !b.done {
                    b.done = true;
                    b.transport_error = true;
                    self.completion(cell, st, Some(i));
                }
            }
            TuEvent::SendCancel => self.send_cancel(cell, st, i),
            TuEvent::AckReceived => {}
        }
    }

    /// Tries branch `i`'s request on the next target of its DNS answer (RFC 3263 §4.3,
    /// `use_dns_failover`); the failed branch ends without counting. `false` when there
    /// is no target left (or the transaction is over): the failure stands.
    fn fail_over(&self, cell: &Arc<Cell>, st: &mut CellState, i: usize) -> bool {
        if st.final_status.is_some() || st.canceled || st.branches[i].done {
            return false;
        }
        if st.branches.len() >= self.env.max_branches {
            return false;
        }
        let Some(mut failover) = st.branches[i].failover.take() else {
            return false;
        };
        {
            let b = &mut st.branches[i];
            b.done = true;
            b.dropped = true;
        }
        while !failover.hops.is_empty() {
            let hop = failover.hops.remove(0);
            let dst = hop.dst;
            let msg = failover.msg.clone();
            let rest = (!failover.hops.is_empty()).then(|| {
                Box::new(Failover {
                    msg: failover.msg.clone(),
                    hops: failover.hops.clone(),
                })
            });
            tracing::info!(
                call_id = %String::from_utf8_lossy(st.request.call_id().unwrap_or_default()),
                next = %dst,
                "DNS failover: trying the next target"
            );
            let bflags = st.branches[i].bflags;
            match self.send_branch_via(cell, st, msg, bflags, None, hop, rest) {
                Ok(true) => return true,
                Ok(false) => return false,
                // This address could not be used (no socket for it): the next one.
                Err(e) => self.log_unsent(st, &e),
            }
        }
        // Nothing could be sent: the failed branch's outcome counts after all.
        st.branches[i].dropped = false;
        st.branches[i].done = false;
        false
    }

    fn send_cancel(&self, cell: &Arc<Cell>, st: &mut CellState, i: usize) {
        st.cancels.reserve_exact(1);
        let ClientTransaction::Invite(inv) = &st.branches[i].client else {
            return;
        };
        // A branch still waiting for its final response has its request.
        let Some(invite) = inv.request() else {
            return;
        };
        let Ok(bytes) = build_cancel(invite) else {
            return;
        };
        let peer = st.branches[i].peer;
        let Ok(branch) = invite
            .top_via()
            .map(|v| v.branch().map(Bytes::copy_from_slice))
        else {
            return;
        };
        let key = ClientKey::new(&branch.unwrap_or_default(), b"CANCEL");
        let (client, actions) = ClientNonInvite::new(bytes, peer.proto != Proto::Udp, st.config);
        let idx = st.cancels.len();
        st.cancels.push(CancelLeg {
            client,
            key: key.clone(),
            peer,
            terminated: false,
        });
        lock(&self.client_txns).insert(key, (cell.clone(), Leg::Cancel(idx)));
        self.run(cell, st, Leg::Cancel(idx), actions, None);
    }

    /// Cancels the branches still waiting for a final (after a 2xx or 6xx, or a local
    /// final reply).
    fn cancel_pending(&self, cell: &Arc<Cell>, st: &mut CellState, except: Option<usize>) {
        for j in 0..st.branches.len() {
            if Some(j) == except || st.branches[j].done {
                continue;
            }
            let actions = st.branches[j].client.cancel();
            self.run(cell, st, Leg::Branch(j), actions, None);
        }
    }

    /// A response of branch `i` that its client transaction passes up (§16.7).
    fn branch_response(
        &self,
        cell: &Arc<Cell>,
        st: &mut CellState,
        i: usize,
        msg: &SipMessage,
        net: NetInfo,
        code: u16,
    ) {
        // RFC 3263 §4.3: a 503 from one target sends the request to the next one; the
        // 503 itself goes no further (neither upstream nor to the routes).
        if code == 503 && self.fail_over(cell, st, i) {
            return;
        }
        if let Some(route) = st.marks.on_reply {
            // onreply_route runs before the reply goes anywhere: queued, in order.
            // The onreply route's $si/$sp, and set_contact_alias() there, are the reply's.
            st.queue().jobs.push(Deferred::Reply {
                branch: i,
                msg: msg.clone(),
                net,
                code,
                route,
            });
            return;
        }
        self.reply_after_route(cell, st, i, msg, code);
    }

    /// A branch's response once its onreply_route (if any) has run (§16.7 steps 5-6).
    fn reply_after_route(
        &self,
        cell: &Arc<Cell>,
        st: &mut CellState,
        i: usize,
        msg: &SipMessage,
        code: u16,
    ) {
        if code < 200 {
            st.branches[i].replied = true;
            // 100 is hop by hop (§16.7 step 5); other provisionals go up unless a final
            // was sent already.
            if code > 100 && st.final_status.is_none() {
                self.relay_up(cell, st, msg, code);
                if st.watched() {
                    let mut watches = st.take_watches();
                    let reply = Self::relayed(st, msg, code);
                    for w in &mut watches {
                        w.on_provisional(&reply);
                    }
                    st.queue().watches = watches;
                }
            }
            return;
        }
        {
            let b = &mut st.branches[i];
            b.replied = true;
            if !b.done {
                b.done = true;
            }
        }
        if (200..300).contains(&code) {
            // Every 2xx goes up (§16.7 step 5), the late ones too.
            let first = st.final_status.is_none();
            if first && st.watched() {
                // Before the 2xx leaves: its ACK may come back (to another worker) before
                // this one is done, and must find the watches waiting for it.
                let watches = st.take_watches();
                let waiting =
                    Self::tell_final(st.is_invite, watches, &Self::relayed(st, msg, code));
                self.wait_for_ack(cell, st, waiting);
            }
            self.relay_up(cell, st, msg, code);
            if first {
                st.final_status = Some(code);
                self.cancel_pending(cell, st, Some(i));
            }
            return;
        }
        st.branches[i].reply = Some(msg.clone());
        if code >= 600 && st.final_status.is_none() {
            self.cancel_pending(cell, st, Some(i));
        }
        self.completion(cell, st, Some(i));
    }

    /// Sends a downstream response upstream with our Via removed.
    fn relay_up(&self, cell: &Arc<Cell>, st: &mut CellState, msg: &SipMessage, code: u16) {
        let bytes = if st.uas_peer.proto != Proto::Udp && msg.content_length().is_none() {
            // A stream needs Content-Length (RFC 3261 §18.3): edit a copy.
            let mut out = msg.clone();
            if out.remove_top_via().is_err() {
                return;
            }
            let body = out.body_bytes();
            out.set_body(body);
            out.to_bytes()
        } else {
            match msg.to_bytes_without_top_via() {
                Ok(b) => b,
                Err(_) => return,
            }
        };
        let bytes = upstream(st, bytes);
        let dropped = self.env.onsend_route_reply
            && cell.scope.has_onsend()
            && !self.reply_onsend(cell, st, msg, &bytes);
        let mut actions = st.uas.send_reply(code, bytes);
        if dropped {
            // The transaction goes on as if it was sent (as Kamailio's does); only the
            // bytes stay here.
            actions.retain(|a| !matches!(a, Action::Send(_)));
        }
        self.run(cell, st, Leg::Server, actions, None);
    }

    /// `onsend_route` for a reply relayed upstream as `bytes` (`onsend_route_reply`); the
    /// route sees the reply as received. `false` when it dropped it.
    fn reply_onsend(
        &self,
        cell: &Arc<Cell>,
        st: &CellState,
        msg: &SipMessage,
        bytes: &Bytes,
    ) -> bool {
        let mut view = MsgContext::new(msg.clone(), RouteKind::OnSend, st.net);
        view.flags = st.flags;
        view.avps = st.avps.clone();
        let peer = st.uas_peer;
        let send = ferrosip_api::SendInfo {
            proto: peer.proto,
            local: peer.local.unwrap_or(st.net.local),
            dst: peer.remote,
            buf: bytes.clone(),
        };
        cell.scope.onsend_allows(view, send)
    }

    /// When every branch has ended without a 2xx: failure_route (queued), else the best
    /// reply.
    fn completion(&self, cell: &Arc<Cell>, st: &mut CellState, failed: Option<usize>) {
        if st.final_status.is_some()
            || st.failure_pending()
            || st.pending_branches() > 0
            || st.branches.iter().any(|b| !b.done)
        {
            return;
        }
        if st.marks.on_failure.is_some() && st.failure_rounds < MAX_FAILURE_ROUNDS {
            // The watches hear of the failure when the route is about to run.
            let queue = st.queue();
            queue.failure_pending = true;
            queue.jobs.push(Deferred::Failure { failed });
            return;
        }
        self.notify_failure(st);
        self.send_best(cell, st);
    }

    /// The context failure_route runs with: the request as relayed, the winning reply
    /// (§16.7 step 6), what the request route decided.
    fn failure_context(
        &self,
        hooks: &[BranchHook],
        cell: &Arc<Cell>,
        st: &mut CellState,
        failed: Option<usize>,
    ) -> MsgContext {
        let outcomes = branch_outcomes(st);
        let best = choose_best(&outcomes);
        // failure_route sees the winning branch's own status (a 503 stays 503 there, as
        // in Kamailio); only the reply sent upstream turns 503 into 500.
        let winning_status = best
            .branch
            .and_then(|i| outcomes.get(i))
            .and_then(|o| o.status())
            .unwrap_or(best.status);
        drop(outcomes);
        let mut fctx = MsgContext::new(st.request.clone(), RouteKind::Failure, st.net);
        fctx.dst_uri = st.ext_kept.get::<RelayedDstUri>().map(|d| d.0.clone());
        fctx.flags = st.flags;
        fctx.bflags = best.branch.map_or(0, |b| st.branches[b].bflags);
        fctx.avps = st.avps.clone();
        fctx.services = Some(cell.scope.clone() as Arc<dyn ferrosip_api::Services>);
        let winner = best.branch.and_then(|b| st.branches[b].reply.clone());
        let mut state = self.route_state(st, failed.map_or(-1, |f| f as i32), winner.as_ref());
        state.reply_code = winning_status;
        if winner.is_none() {
            state.reply_reason =
                Bytes::from_static(ferrosip_transaction::reason_phrase(winning_status).as_bytes());
        }
        if let Some(f) = failed {
            state.branch_timeout = st.branches[f].timed_out;
            state.branch_replied = st.branches[f].replied;
        }
        fctx.ext.insert(state);
        st.restore_forwarding(hooks, &mut fctx);
        fctx
    }

    /// What failure_route decided: a local reply, new branches, or the best final.
    fn after_failure_route(
        self: &Arc<Self>,
        cell: &Arc<Cell>,
        st: &mut CellState,
        mut fctx: MsgContext,
    ) {
        if fctx.ext.get::<TmMarks>().is_some_and(|m| m.drop_replies) {
            for b in &mut st.branches {
                b.dropped = true;
            }
        }
        if st.final_status.is_some() {
            // Answered while the route ran (the transaction's lifetime ended).
            return;
        }
        // Flags failure_route set stay with the transaction (acc's missed-call flag).
        st.flags = fctx.flags;
        let actions = fctx.ext.remove::<FailureActions>().unwrap_or_default();
        if let Some((code, reason, headers)) = actions.reply {
            let _ = self.local_reply(cell, st, code, &reason, headers);
            return;
        }
        // A canceled transaction forks no more (as Kamailio's t_relay refuses).
        if !st.canceled {
            let mut sent = 0;
            for relay in actions.relays {
                st.marks = relay.marks.unwrap_or_default();
                st.flags = relay.flags;
                st.avps = relay.avps;
                self.apply_timer_marks(st);
                let specs =
                    branch_specs(&relay.msg, relay.dst_uri, relay.target, 0, relay.branches);
                let branch_route = st.marks.on_branch;
                sent += self.add_branches(cell, st, specs, branch_route);
            }
            if sent > 0 || st.pending_branches() > 0 {
                return;
            }
        }
        self.send_best(cell, st);
    }

    /// No new branch: the best final goes upstream (§16.7 step 6).
    fn send_best(&self, cell: &Arc<Cell>, st: &mut CellState) {
        let request = &st.request;
        let to_tag = st
            .to_tag
            .get_or_insert_with(|| request.stateless_to_tag().into_boxed_str())
            .to_string();
        let outcomes = branch_outcomes(st);
        let best = choose_best(&outcomes);
        let Ok(bytes) = assemble_best(&st.request, &outcomes, &best, Some(to_tag.as_bytes()))
        else {
            return;
        };
        drop(outcomes);
        st.final_status = Some(best.status);
        if st.watched() {
            // Only watched cells parse the reply they send again, for its reason and tag.
            let sent = SipMessage::parse(bytes.clone()).ok();
            let watches = st.take_watches();
            let reply = ferrosip_api::FinalReply {
                code: best.status,
                reason: sent.as_ref().and_then(|m| m.reason()).unwrap_or_default(),
                to_tag: sent.as_ref().and_then(|m| m.to_tag()),
                request: &st.request,
                flags: st.flags,
                local: true,
                reply: sent.as_ref(),
            };
            let waiting = Self::tell_final(st.is_invite, watches, &reply);
            self.wait_for_ack(cell, st, waiting);
        }
        let actions = st.uas.send_reply(best.status, upstream(st, bytes));
        self.run(cell, st, Leg::Server, actions, None);
    }

    // ----- routes a transaction runs ------------------------------------------------

    /// Runs the cell's queued jobs, one at a time, releasing `st` while a route runs;
    /// with nothing (more) to run, tidies the tables. Ends the caller's hold on the cell:
    /// call it last, with no other lock of this cell held up the stack.
    fn drive(self: &Arc<Self>, cell: &Arc<Cell>, mut st: MutexGuard<'_, CellState>) {
        let job = loop {
            let next = match st.route_running {
                false => st.next_job(),
                true => None,
            };
            let Some(next) = next else {
                self.cleanup(cell, &mut st);
                return;
            };
            if let Some(job) = self.start_job(cell, &mut st, next) {
                break job;
            }
        };
        st.route_running = true;
        drop(st);
        let RouteJob { route, ctx, end } = job;
        let run = with_vm(|vm| cell.scope.start_route(vm, route, ctx));
        let owner = cell.clone();
        let env = &self.env;
        crate::routes::then(
            self,
            run,
            &env.runtime,
            &env.stats,
            move |tm, result, ctx| {
                let mut st = lock(&owner.state);
                st.route_running = false;
                tm.finish_job(&owner, &mut st, end, result, ctx);
                tm.drive(&owner, st);
            },
        );
    }

    /// Takes, under the lock, the snapshot a job's route runs with; `None` when the job
    /// needs no route any more (its work, if any, is done here).
    fn start_job(&self, cell: &Arc<Cell>, st: &mut CellState, job: Deferred) -> Option<RouteJob> {
        match job {
            Deferred::Branch { spec, route } => {
                if st.final_status.is_some() || st.canceled {
                    st.queue().pending_branches -= 1;
                    self.branch_settled(cell, st);
                    return None;
                }
                let idx = st.branches.len();
                let mut bctx = MsgContext::new(spec.msg, RouteKind::Branch, st.net);
                bctx.dst_uri = spec.dst_uri;
                bctx.flags = st.flags;
                bctx.bflags = spec.bflags;
                bctx.avps = st.avps.clone();
                bctx.branch_idx = idx as i32;
                bctx.services = Some(cell.scope.clone() as Arc<dyn ferrosip_api::Services>);
                // The branch route sees (and may change) what the request route decided.
                st.restore_forwarding(self.env.outbound.hooks(), &mut bctx);
                bctx.ext.insert(self.route_state(st, idx as i32, None));
                Some(RouteJob {
                    route,
                    ctx: bctx,
                    end: JobEnd::Branch {
                        target: spec.target,
                    },
                })
            }
            Deferred::Reply {
                branch,
                msg,
                net,
                code,
                route,
            } => {
                let state = self.route_state(st, branch as i32, Some(&msg));
                let mut rctx = MsgContext::new(msg, RouteKind::TmOnReply, net);
                rctx.flags = st.flags;
                rctx.bflags = st.branches.get(branch).map_or(0, |b| b.bflags);
                rctx.avps = st.avps.clone();
                rctx.branch_idx = branch as i32;
                rctx.services = Some(cell.scope.clone() as Arc<dyn ferrosip_api::Services>);
                rctx.ext.insert(state);
                Some(RouteJob {
                    route,
                    ctx: rctx,
                    end: JobEnd::Reply { branch, code },
                })
            }
            Deferred::Failure { failed } => {
                let route = match st.marks.on_failure.take() {
                    Some(r) if st.final_status.is_none() => r,
                    _ => {
                        st.queue().failure_pending = false;
                        self.completion(cell, st, failed);
                        return None;
                    }
                };
                st.failure_rounds += 1;
                self.notify_failure(st);
                let fctx = self.failure_context(self.env.outbound.hooks(), cell, st, failed);
                Some(RouteJob {
                    route,
                    ctx: fctx,
                    end: JobEnd::Failure,
                })
            }
        }
    }

    /// Applies, under the lock, what a job's route decided.
    fn finish_job(
        self: &Arc<Self>,
        cell: &Arc<Cell>,
        st: &mut CellState,
        end: JobEnd,
        result: RouteResult,
        ctx: MsgContext,
    ) {
        let kind = match end {
            JobEnd::Branch { .. } => "branch_route",
            JobEnd::Reply { .. } => "onreply_route",
            JobEnd::Failure => "failure_route",
        };
        if let Err(e) = &result {
            tracing::error!(location = %e.location, "{kind} aborted: {}", e.message);
        }
        match end {
            JobEnd::Branch { target } => {
                st.queue().pending_branches -= 1;
                // `drop` (or an aborted route) cancels this branch only.
                let send = matches!(result, Ok(Outcome::Return(_) | Outcome::Exit));
                if send && st.final_status.is_none() && !st.canceled {
                    let MsgContext {
                        msg,
                        dst_uri,
                        bflags,
                        ext,
                        ..
                    } = ctx;
                    let spec = BranchSpec {
                        msg,
                        dst_uri,
                        target,
                        bflags,
                    };
                    if let Err(e) = self.send_branch(cell, st, spec, Some(ext)) {
                        self.log_unsent(st, &e);
                    }
                }
                self.branch_settled(cell, st);
            }
            JobEnd::Reply { branch, code } => {
                let mut rctx = ctx;
                st.flags = rctx.flags;
                if let Some(b) = st.branches.get_mut(branch) {
                    b.bflags = rctx.bflags;
                }
                st.avps = std::mem::take(&mut rctx.avps);
                if let Some(m) = rctx.ext.remove::<TmMarks>() {
                    st.marks.on_failure = m.on_failure.or(st.marks.on_failure);
                }
                // `drop` stops a provisional reply; a final one is needed to end the branch.
                if matches!(result, Ok(Outcome::Drop)) && code < 200 {
                    return;
                }
                self.reply_after_route(cell, st, branch, &rctx.msg, code);
            }
            JobEnd::Failure => {
                st.queue().failure_pending = false;
                self.after_failure_route(cell, st, ctx);
            }
        }
    }

    /// A queued branch was sent or dropped; once none is pending, the transaction goes
    /// on: every branch may have ended already, or none was sent at all.
    fn branch_settled(&self, cell: &Arc<Cell>, st: &mut CellState) {
        if st.pending_branches() > 0 || st.final_status.is_some() {
            return;
        }
        if !st.branches.is_empty() {
            self.completion(cell, st, None);
        } else if st.canceled {
            let _ = self.local_reply(cell, st, 487, b"Request Terminated", None);
        } else if st.routes.as_ref().is_some_and(|q| q.relay_detached) {
            // t_relay told the script it went; no branch route let a branch out.
            let _ = self.local_reply(cell, st, 500, b"No Branch Sent", None);
        }
        // Else t_relay is still waiting for its branch routes and answers the script.
    }

    fn route_state(&self, st: &CellState, branch: i32, reply: Option<&SipMessage>) -> TmState {
        TmState {
            reply_code: reply.and_then(SipMessage::status).unwrap_or(0),
            reply_reason: reply
                .and_then(|r| r.reason())
                .map(Bytes::copy_from_slice)
                .unwrap_or_default(),
            reply: reply.cloned(),
            request: Some(st.request.clone()),
            branch,
            canceled: st.canceled,
            expired: st.expired,
            branch_timeout: false,
            branch_replied: false,
            any_timeout: st.branches.iter().any(|b| b.timed_out),
            any_replied: st.branches.iter().any(|b| b.replied),
        }
    }

    /// Asks the observers whether they watch this transaction (once per cell); one
    /// branch and no allocation when no module observes.
    fn observe(&self, st: &mut CellState, ctx: &MsgContext) {
        if self.env.observers.is_empty() || st.watched() {
            return;
        }
        let watches: Vec<_> = self
            .env
            .observers
            .iter()
            .filter_map(|o| o.on_request(ctx))
            .collect();
        if !watches.is_empty() {
            st.queue().watches = watches;
        }
    }

    /// A reply relayed from a branch, as the watches see it.
    fn relayed<'a>(
        st: &'a CellState,
        msg: &'a SipMessage,
        code: u16,
    ) -> ferrosip_api::FinalReply<'a> {
        ferrosip_api::FinalReply {
            code,
            reason: msg.reason().unwrap_or_default(),
            to_tag: msg.to_tag(),
            request: &st.request,
            flags: st.flags,
            local: false,
            reply: Some(msg),
        }
    }

    /// Tells `watches` (taken from the cell) the final reply that went upstream; they
    /// hear it once. Returns those that want the ACK of a 2xx to an INVITE, with the To
    /// tag that ACK will carry.
    fn tell_final(
        is_invite: bool,
        watches: Vec<Box<dyn ferrosip_api::TxnWatch>>,
        reply: &ferrosip_api::FinalReply<'_>,
    ) -> Option<AckWait> {
        let ack_possible = is_invite && (200..300).contains(&reply.code);
        let mut waiting = Vec::new();
        for mut w in watches {
            w.on_final(reply);
            if ack_possible && w.wants_e2e_ack() {
                waiting.push(w);
            }
        }
        (!waiting.is_empty()).then(|| AckWait {
            watches: waiting,
            to_tag: reply.to_tag.map(Box::from),
        })
    }

    /// Keeps the watches waiting for the ACK of a 2xx with the cell, findable by the ACK.
    fn wait_for_ack(&self, cell: &Arc<Cell>, st: &mut CellState, waiting: Option<AckWait>) {
        let Some(waiting) = waiting else {
            return;
        };
        let Some(key) = e2e_ack_key(&st.request) else {
            return;
        };
        let queue = st.queue();
        queue.ack_watches = waiting.watches;
        queue.ack_to_tag = waiting.to_tag;
        lock(&self.e2e_acks).insert(key, Arc::downgrade(cell));
    }

    /// Every branch ended without a 2xx: the watches hear it before `failure_route` (or
    /// the best final), and the flags they return are reset in the transaction.
    fn notify_failure(&self, st: &mut CellState) {
        if !st.watched() {
            return;
        }
        let mut watches = st.take_watches();
        let outcomes = branch_outcomes(st);
        let best = choose_best(&outcomes);
        let code = best
            .branch
            .and_then(|i| outcomes.get(i))
            .and_then(|o| o.status())
            .unwrap_or(best.status);
        drop(outcomes);
        let winner = best.branch.and_then(|b| st.branches[b].reply.as_ref());
        // A branch that never answered has no reply: the standard reason and the To tag
        // this proxy's own final would carry.
        let request = &st.request;
        let local_tag = match winner {
            Some(_) => None,
            None => Some(
                st.to_tag
                    .get_or_insert_with(|| request.stateless_to_tag().into_boxed_str())
                    .clone(),
            ),
        };
        let winner = best.branch.and_then(|b| st.branches[b].reply.as_ref());
        let failed = ferrosip_api::FinalReply {
            code,
            reason: match winner {
                Some(r) => r.reason().unwrap_or_default(),
                None => ferrosip_transaction::reason_phrase(code).as_bytes(),
            },
            to_tag: match winner {
                Some(r) => r.to_tag(),
                None => local_tag.as_deref().map(str::as_bytes),
            },
            request: &st.request,
            flags: st.flags,
            local: winner.is_none(),
            reply: winner,
        };
        let mut reset = 0;
        for w in &mut watches {
            reset |= w.on_failure(&failed);
        }
        st.flags &= !reset;
        st.queue().watches = watches;
    }

    /// The ACK of a 2xx: the watches of its INVITE waiting for it hear it, once.
    fn e2e_ack(&self, ctx: &MsgContext) {
        if self.env.observers.is_empty() {
            // No module watches transactions: one branch per ACK, no lock.
            return;
        }
        let (cell, key) = {
            let mut table = lock(&self.e2e_acks);
            if table.is_empty() {
                return;
            }
            let Some(key) = e2e_ack_key(&ctx.msg) else {
                return;
            };
            match table.get(&key).map(Weak::upgrade) {
                Some(Some(cell)) => (cell, key),
                Some(None) => {
                    table.remove(&key);
                    return;
                }
                None => return,
            }
        };
        let (watches, code, flags) = {
            let mut st = lock(&cell.state);
            let Some(q) = st.routes.as_mut() else {
                return;
            };
            if q.ack_watches.is_empty() || q.ack_to_tag.as_deref() != ctx.msg.to_tag() {
                return;
            }
            q.ack_to_tag = None;
            let watches = std::mem::take(&mut q.ack_watches);
            (watches, st.final_status.unwrap_or(200), st.flags)
        };
        {
            let mut table = lock(&self.e2e_acks);
            if table
                .get(&key)
                .is_some_and(|w| w.ptr_eq(&Arc::downgrade(&cell)))
            {
                table.remove(&key);
            }
        }
        let ack = ferrosip_api::E2eAck {
            ctx,
            code,
            reason: ferrosip_transaction::reason_phrase(code).as_bytes(),
            flags,
        };
        for mut w in watches {
            w.on_e2e_ack(&ack);
        }
    }

    /// A cell leaving with watches still waiting for an ACK takes its entry along.
    fn forget_e2e_ack(&self, cell: &Arc<Cell>, st: &mut CellState) {
        let Some(q) = st.routes.as_mut() else {
            return;
        };
        if q.ack_watches.is_empty() {
            return;
        }
        q.ack_watches.clear();
        if let Some(key) = e2e_ack_key(&st.request) {
            let mut table = lock(&self.e2e_acks);
            if table
                .get(&key)
                .is_some_and(|w| w.ptr_eq(&Arc::downgrade(cell)))
            {
                table.remove(&key);
            }
        }
    }

    /// Removes what is over from the tables.
    fn cleanup(&self, cell: &Arc<Cell>, st: &mut CellState) {
        if st.uas_terminated {
            self.forget_e2e_ack(cell, st);
        }
        st.drop_settled_replies();
        if st.uas_terminated
            && st.branches.iter().all(|b| b.terminated)
            && st.cancels.iter().all(|c| c.terminated)
        {
            if let Some(h) = st.lifetime.take() {
                lock(&self.wheel).cancel(h);
            }
        }
        let mut done_keys: SmallVec<[&ClientKey; 4]> = SmallVec::new();
        for b in &st.branches {
            if b.terminated {
                done_keys.push(&b.key);
            }
        }
        for c in st.cancels.iter() {
            if c.terminated {
                done_keys.push(&c.key);
            }
        }
        if !done_keys.is_empty() {
            let mut table = lock(&self.client_txns);
            for k in done_keys {
                table.remove(k);
            }
        }
        if st.uas_terminated {
            let mut table = lock(&self.server_txns);
            if table.get(&cell.key).is_some_and(|c| Arc::ptr_eq(c, cell)) {
                table.remove(&cell.key);
            }
        }
    }

    /// Drops a cell and its timers at once (`t_release`, a relay that sent nothing).
    fn forget(&self, cell: &Arc<Cell>) {
        let mut st = lock(&cell.state);
        for mut w in st.take_watches() {
            w.on_dropped();
        }
        self.forget_e2e_ack(cell, &mut st);
        {
            let mut wheel = lock(&self.wheel);
            for (_, _, h) in st.timers.drain(..) {
                wheel.cancel(h);
            }
            if let Some(h) = st.lifetime.take() {
                wheel.cancel(h);
            }
        }
        {
            let mut table = lock(&self.client_txns);
            for b in &st.branches {
                table.remove(&b.key);
            }
            for c in st.cancels.iter() {
                table.remove(&c.key);
            }
        }
        st.uas_terminated = true;
        let mut table = lock(&self.server_txns);
        if table.get(&cell.key).is_some_and(|c| Arc::ptr_eq(c, cell)) {
            table.remove(&cell.key);
        }
    }
}

/// Watches that heard a 2xx and wait for its ACK.
struct AckWait {
    watches: Vec<Box<dyn ferrosip_api::TxnWatch>>,
    to_tag: Option<Box<[u8]>>,
}

/// What an ACK of a 2xx shares with its INVITE, whatever its Via and Request-URI:
/// Call-ID, CSeq number and From tag (RFC 3261 §17.2.3 cannot match it: the ACK of a 2xx
/// is a transaction of its own).
fn e2e_ack_key(msg: &SipMessage) -> Option<Box<[u8]>> {
    let call_id = msg.call_id()?;
    let seq = msg.cseq().ok()?.seq;
    let from_tag = msg.from_tag().unwrap_or_default();
    let mut key = Vec::with_capacity(call_id.len() + from_tag.len() + 12);
    key.extend_from_slice(call_id);
    key.push(b' ');
    key.extend_from_slice(seq.to_string().as_bytes());
    key.push(b' ');
    key.extend_from_slice(from_tag);
    Some(key.into())
}

/// The outcome of each branch for best-response selection.
fn branch_outcomes(st: &CellState) -> Vec<BranchOutcome<'_>> {
    st.branches
        .iter()
        .map(|b| {
            if b.dropped {
                BranchOutcome::Pending
            } else if let Some(r) = &b.reply {
                BranchOutcome::Response(r)
            } else if b.timed_out {
                BranchOutcome::TimedOut
            } else if b.transport_error {
                BranchOutcome::TransportError
            } else {
                BranchOutcome::Pending
            }
        })
        .collect()
}

/// Where responses to a request go (RFC 3261 §18.2.2, RFC 3581): over a stream, the
/// connection it came on; over UDP, the source address when the client asked for
/// `rport`, else the source IP (what `received` would say) and the Via port.
fn response_address(msg: &SipMessage, net: &NetInfo) -> SocketAddr {
    if net.proto != Proto::Udp {
        return net.source;
    }
    match msg.top_via() {
        Ok(v) if v.rport().is_some() => net.source,
        Ok(v) => SocketAddr::new(net.source.ip(), v.port().unwrap_or(5060)),
        Err(_) => net.source,
    }
}

enum CellFor {
    Retransmission,
    /// `max_transactions` are open: the request was answered 503 and gets none.
    Full,
    /// The cell, and whether this call created it.
    Cell(Arc<Cell>, bool),
}

/// Marks a context whose request created the cell with this id (`t_newtran` then
/// `t_relay` on the same message is not a retransmission).
#[derive(Clone, Copy, Debug)]
pub struct OwnCell(pub u64);

/// `max_transactions` when the tm module does not set it: ~3 KiB a cell with its
/// request and one branch, so at most ~600 MiB of transactions; 5,000 stateful calls/s keep
/// ~75,000 open (each lingers `wt_timer` after its final reply).
const DEFAULT_MAX_TRANSACTIONS: usize = 200_000;

/// Max-Breadth when a request has none (RFC 5393 §5.3.3.1).
const DEFAULT_MAX_BREADTH: u32 = 60;

/// The request's Max-Breadth (RFC 5393), 60 when absent or unreadable.
fn max_breadth(request: &SipMessage) -> usize {
    request
        .headers_named("Max-Breadth")
        .next()
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u32>().ok())
        .unwrap_or(DEFAULT_MAX_BREADTH) as usize
}

/// RFC 5393 Max-Breadth for branches sent at once: together they get no more than the
/// request's Max-Breadth (60 when absent), each at least 1, so a chain of forking proxies
/// cannot multiply one request without bound. A single branch is not parallel forking and
/// carries the value unchanged. Branches past the breadth are not sent (logged); when none
/// can be (`Max-Breadth: 0` and several targets) the transaction answers 440.
fn share_max_breadth(st: &CellState, specs: &mut Vec<BranchSpec>) {
    if specs.len() < 2 {
        return;
    }
    let breadth = max_breadth(&st.request);
    if specs.len() > breadth {
        tracing::warn!(
            call_id = %String::from_utf8_lossy(st.request.call_id().unwrap_or_default()),
            max_breadth = breadth,
            "{} parallel branches not sent: Max-Breadth reached",
            specs.len() - breadth
        );
        specs.truncate(breadth);
    }
    let (each, extra) = (breadth / specs.len().max(1), breadth % specs.len().max(1));
    for (i, spec) in specs.iter_mut().enumerate() {
        let share = each + usize::from(i < extra);
        // Only forking requests get here: a String per branch is not on the common path.
        if let Err(e) = spec.msg.set_header("Max-Breadth", share.to_string()) {
            tracing::debug!("Max-Breadth not set on a branch: {e}");
        }
    }
}

/// Our branch id for branch `idx` of cell `cell_id` (one per relayed request: on the
/// stack, at most 8 + 8 + 16 + 1 + 20 bytes).
fn branch_id(boot: u32, cell_id: u64, idx: usize) -> smallvec::SmallVec<[u8; 64]> {
    let mut id = smallvec::SmallVec::new();
    id.extend_from_slice(b"z9hG4bKf");
    crate::digits::push_hex(&mut id, boot.into());
    crate::digits::push_hex(&mut id, cell_id);
    id.push(b'.');
    crate::digits::push_decimal(&mut id, idx as u64);
    id
}

/// The R-URI branch (with `$du` or an explicit target) and one per `append_branch`.
fn branch_specs(
    msg: &SipMessage,
    dst_uri: Option<Bytes>,
    target: Option<Target>,
    bflags: u64,
    extra: Vec<ferrosip_api::tm::BranchTarget>,
) -> Vec<BranchSpec> {
    let mut specs = Vec::with_capacity(1 + extra.len());
    specs.push(BranchSpec {
        msg: msg.clone_for_edit(),
        dst_uri,
        target,
        bflags,
    });
    for b in extra {
        let mut msg = msg.clone_for_edit();
        if msg.set_request_uri(&b.uri).is_ok() {
            specs.push(BranchSpec {
                msg,
                dst_uri: b.dst_uri,
                target: None,
                bflags: b.bflags,
            });
        }
    }
    specs
}

impl CellState {
    fn new(
        uas: ServerTransaction,
        uas_peer: Peer,
        request: SipMessage,
        net: NetInfo,
        flags: u64,
        config: TimerConfig,
    ) -> CellState {
        CellState {
            is_invite: matches!(uas, ServerTransaction::Invite(_)),
            uas,
            uas_peer,
            uas_terminated: false,
            request,
            net,
            marks: TmMarks::default(),
            flags,
            avps: Avps::default(),
            ext_kept: ferrosip_api::Extensions::default(),
            ext_fwd: None,
            maxfwd_done: false,
            loop_tag: None,
            branches: Vec::new(),
            cancels: CancelLegs::default(),
            timers: SmallVec::new(),
            lifetime: None,
            final_status: None,
            canceled: false,
            expired: false,
            failure_rounds: 0,
            to_tag: None,
            config,
            route_running: false,
            routes: None,
        }
    }

    fn queue(&mut self) -> &mut RouteQueue {
        self.routes.get_or_insert_with(Box::default)
    }

    fn watched(&self) -> bool {
        self.routes.as_ref().is_some_and(|q| !q.watches.is_empty())
    }

    fn take_watches(&mut self) -> Vec<Box<dyn ferrosip_api::TxnWatch>> {
        self.routes
            .as_mut()
            .map(|q| std::mem::take(&mut q.watches))
            .unwrap_or_default()
    }

    fn next_job(&mut self) -> Option<Deferred> {
        let queue = self.routes.as_mut()?;
        (!queue.jobs.is_empty()).then(|| queue.jobs.remove(0))
    }

    fn pending_branches(&self) -> u32 {
        self.routes.as_ref().map_or(0, |q| q.pending_branches)
    }

    fn failure_pending(&self) -> bool {
        self.routes.as_ref().is_some_and(|q| q.failure_pending)
    }

    /// Once the final response is chosen and sent, the branches' negative replies have
    /// served their one use (that choice) and need not linger with the transaction.
    fn drop_settled_replies(&mut self) {
        if self.final_status.is_some() && self.branches.iter().all(|b| b.done) {
            for b in &mut self.branches {
                b.reply = None;
            }
            if !self.route_running
                && self
                    .routes
                    .as_ref()
                    .is_some_and(|q| q.jobs.is_empty() && q.ack_watches.is_empty())
            {
                // The job queue of a cell that ran routes; a lingering cell needs none.
                self.routes = None;
            }
        }
    }

    /// What the request route decided about forwarding, for a branch no route changed.
    fn forwarding(&self) -> Forwarding<'_> {
        Forwarding {
            flags: self.ext_fwd.unwrap_or_default(),
            maxfwd_done: self.maxfwd_done,
            ext: Some(&self.ext_kept),
            loop_tag: self.loop_tag,
        }
    }

    /// Gives a route run for this transaction what the request route decided about
    /// forwarding (Record-Route, rport, Max-Forwards handled).
    fn restore_forwarding(&self, hooks: &[BranchHook], ctx: &mut MsgContext) {
        for hook in hooks {
            (hook.keep)(&self.ext_kept, &mut ctx.ext);
        }
        if let Some(f) = self.ext_fwd {
            ctx.ext.insert(f);
        }
        if self.maxfwd_done {
            ctx.ext.insert(ferrosip_api::services::MaxForwardsDone);
        }
    }
}

struct BranchSpec {
    msg: SipMessage,
    dst_uri: Option<Bytes>,
    target: Option<Target>,
    bflags: u64,
}

/// A reply as it goes upstream: with the From/To the request came with when a module
/// replaced them (uac's restore); one extension lookup otherwise.
fn upstream(st: &CellState, bytes: Bytes) -> Bytes {
    match st.ext_kept.get::<ferrosip_api::tm::UpstreamHeaders>() {
        Some(original) => original.apply(bytes),
        None => bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> TimerEntry {
        TimerEntry {
            cell: Weak::new(),
            leg: Leg::Server,
            id: None,
        }
    }

    fn parse(text: &str) -> SipMessage {
        SipMessage::parse(Bytes::from(text.replace('\n', "\r\n"))).expect("test message")
    }

    const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKc1\n\
From: <sip:a@example.com>;tag=a\n\
To: <sip:bob@example.com>\n\
Call-ID: settled@test\n\
CSeq: 1 INVITE\n\
Content-Length: 0\n\n";

    /// A cell with one branch whose 486 was received (done) and kept for the choice.
    fn cell_with_busy_branch() -> CellState {
        let request = parse(INVITE);
        let peer = Peer {
            proto: Proto::Udp,
            local: None,
            remote: "127.0.0.1:5070".parse().expect("address"),
        };
        let config = TimerConfig::default();
        let uas = ServerTransaction::new(&request, false, config).expect("server transaction");
        let mut st = CellState::new(uas, peer, request.clone(), NetInfo::default(), 0, config);
        let (client, _) = ClientTransaction::new(request.clone(), false, config).expect("client");
        let busy = parse(
            "SIP/2.0 486 Busy Here\n\
Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKc1\n\
From: <sip:a@example.com>;tag=a\n\
To: <sip:bob@example.com>;tag=b\n\
Call-ID: settled@test\n\
CSeq: 1 INVITE\n\
Content-Length: 0\n\n",
        );
        st.branches.push(Branch {
            client,
            key: ClientKey::of_request(&request).expect("key"),
            peer,
            reply: Some(busy),
            replied: true,
            timed_out: false,
            transport_error: false,
            dropped: false,
            done: true,
            terminated: false,
            failover: None,
            bflags: 0,
        });
        st
    }

    #[test]
    fn negative_replies_stay_until_the_final_is_sent_then_go() {
        let mut st = cell_with_busy_branch();
        // failure_route may still run and read the reply ($T_rpl, t_check_status).
        st.drop_settled_replies();
        assert!(st.branches[0].reply.is_some());
        // Another branch still pending: its reply may yet change the choice.
        st.final_status = Some(486);
        st.branches.push(Branch {
            reply: None,
            done: false,
            ..cell_with_busy_branch().branches.remove(0)
        });
        st.drop_settled_replies();
        assert!(st.branches[0].reply.is_some());
        st.branches[1].done = true;
        st.drop_settled_replies();
        assert!(st.branches.iter().all(|b| b.reply.is_none()));
    }

    /// A cell is allocated per transaction and lingers seconds after it (5 s wait timer):
    /// at a few thousand calls/s tens of thousands are alive, and 8 bytes more than this
    /// take glibc's next 16-byte size class (16 bytes more per cell, ~0.5 MB for the
    /// ~30,000 cells alive at 2,000 calls/s).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn a_cell_stays_in_its_allocation_size_class() {
        let size = std::mem::size_of::<Cell>();
        assert!(size <= 1304, "Cell is {size} bytes");
    }

    /// The timer thread parks while the wheel is empty; the first timer set must wake it,
    /// or that timer would wait for the park's timeout.
    #[test]
    fn first_timer_wakes_the_parked_timer_thread() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let env = TmEnv {
            outbound: Arc::new(Outbound::new(Default::default(), Vec::new(), Vec::new())),
            stats: Arc::default(),
            runtime: runtime.handle().clone(),
            max_branches: 12,
            observers: Arc::new([]),
            clock: Clock::system(),
            onsend_route_reply: false,
        };
        let tm = Arc::new(TmLayer::new(None, env));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let sleeper = std::thread::spawn(move || {
            ready_tx.send(()).expect("ready");
            let start = Instant::now();
            std::thread::park_timeout(Duration::from_secs(20));
            start.elapsed()
        });
        tm.timer_thread
            .set(sleeper.thread().clone())
            .expect("timer thread set once");
        ready_rx.recv().expect("sleeper started");
        std::thread::sleep(Duration::from_millis(50));
        tm.insert_timer(Duration::from_secs(1), entry());
        let parked = sleeper.join().expect("sleeper");
        assert!(parked < Duration::from_secs(10), "parked for {parked:?}");
        // A second timer finds the wheel busy: the thread is ticking, no wake-up needed.
        assert_eq!(lock(&tm.wheel).len(), 1);
        tm.insert_timer(Duration::from_secs(1), entry());
        assert_eq!(lock(&tm.wheel).len(), 2);
    }
}
