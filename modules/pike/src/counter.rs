//! Kamailio's pike counting: per source IP, the requests of the current and of the
//! previous sampling unit; an address is "hot" (blocked) while either unit reached
//! `reqs_density_per_unit` (or their mean did), and forgotten `remove_latency` seconds
//! after its last request.
//!
//! Kamailio keeps the counters in a byte trie whose inner nodes only exist to spread
//! allocation; the decision is made at the leaf (one full address), as here. The
//! addresses live in a fixed number of shards, each behind its own lock (a worker
//! locks one shard for one counter update), with a hard cap on the number of
//! addresses tracked so that a flood from many random sources cannot grow memory
//! without bound: past the cap a new address is not tracked (and so not blocked) until
//! the sweeper has forgotten idle ones. The cap and its memory cost are in docs/flood.md.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Number of shards (a power of two): enough that the workers rarely meet on one lock.
const SHARDS: usize = 64;

/// Pike's parameters, as the script set them.
#[derive(Clone, Debug)]
pub struct PikeConfig {
    /// Seconds per sampling unit (`sampling_time_unit`).
    pub sampling_time_unit: u32,
    /// Requests per unit from one address that make it hot (`reqs_density_per_unit`).
    pub reqs_density_per_unit: u32,
    /// Seconds an address is kept after its last request (`remove_latency`).
    pub remove_latency: u32,
    /// Kamailio log level of the "blocked" / "unblocked" lines (`pike_log_level`).
    pub log_level: i64,
    /// Most addresses tracked at once (`max_nodes`, Ferrosip's bound).
    pub max_nodes: usize,
}

impl Default for PikeConfig {
    fn default() -> Self {
        PikeConfig {
            sampling_time_unit: 2,
            reqs_density_per_unit: 30,
            remove_latency: 120,
            log_level: 1,
            max_nodes: 500_000,
        }
    }
}

/// What one request from an address means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Below the limit (1).
    Allowed,
    /// Hot, and already was (-1).
    Blocked,
    /// Became hot with this request (-2): the moment Kamailio logs and raises
    /// `event_route[pike:blocked]`.
    JustBlocked,
}

impl Check {
    /// Kamailio's return code of `pike_check_req()` / `pike_check_ip()`.
    pub fn code(self) -> i32 {
        match self {
            Check::Allowed => 1,
            Check::Blocked => -1,
            Check::JustBlocked => -2,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Node {
    /// Requests in the previous and in the current unit.
    prev: u32,
    curr: u32,
    /// Seconds since the counter started, at the last request.
    last_hit: u32,
    /// The sampling unit `curr` counts (seconds since the start / `sampling_time_unit`).
    unit: u32,
    /// Hot when last checked (blocked); cleared by the sweeper once it cools down.
    red: bool,
}

/// One address as `pike.top` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    pub ip: IpAddr,
    pub hits_prev: u32,
    pub hits_curr: u32,
    /// Seconds until it is forgotten if no request comes.
    pub expires_in: u32,
    pub hot: bool,
    pub warm: bool,
}

/// The counters of every source address.
pub struct PikeCounter {
    cfg: PikeConfig,
    shards: Box<[Mutex<HashMap<IpAddr, Node>>]>,
    nodes: AtomicUsize,
    /// New addresses not tracked because the cap was reached (since the last sweep).
    untracked: AtomicU64,
    /// Windows are measured on this clock (the registry's, so `ferrosip test` moves them).
    clock: ferrosip_api::Clock,
    started: Instant,
}

fn canonical(ip: IpAddr) -> IpAddr {
    // An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d: count it as itself.
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl PikeCounter {
    /// A counter on the system clock.
    pub fn new(cfg: PikeConfig) -> PikeCounter {
        PikeCounter::with_clock(cfg, ferrosip_api::Clock::system())
    }

    /// A counter whose sampling windows are measured on `clock`.
    pub fn with_clock(cfg: PikeConfig, clock: ferrosip_api::Clock) -> PikeCounter {
        let shards = (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect();
        PikeCounter {
            cfg,
            shards,
            nodes: AtomicUsize::new(0),
            untracked: AtomicU64::new(0),
            started: clock.now(),
            clock,
        }
    }

    pub fn config(&self) -> &PikeConfig {
        &self.cfg
    }

    fn now(&self) -> u32 {
        let elapsed = self.clock.now().saturating_duration_since(self.started);
        u32::try_from(elapsed.as_secs()).unwrap_or(u32::MAX)
    }

    fn shard(&self, ip: &IpAddr) -> &Mutex<HashMap<IpAddr, Node>> {
        // The shard comes from the address's low bits (the part a flood from one
        // network varies most); the map inside hashes with a random key (SipHash), so
        // chosen addresses cannot make one bucket long.
        let low = match ip {
            IpAddr::V4(v4) => u32::from(*v4) as usize,
            IpAddr::V6(v6) => {
                let o = v6.octets();
                usize::from(o[15]) ^ (usize::from(o[14]) << 8) ^ (usize::from(o[7]) << 3)
            }
        };
        &self.shards[low % SHARDS]
    }

    fn unit_of(&self, now: u32) -> u32 {
        now / self.cfg.sampling_time_unit.max(1)
    }

    /// Brings a node's counts to the unit of `now`: the counts of the unit before become
    /// the previous ones, older ones are dropped. Counting by unit number rather than
    /// by the sweeper's ticks keeps the counts exact when the sweeper runs late, and lets
    /// a test clock drive them.
    fn roll(&self, n: &mut Node, now: u32) {
        let unit = self.unit_of(now);
        match unit.saturating_sub(n.unit) {
            0 => {}
            1 => {
                n.prev = n.curr;
                n.curr = 0;
            }
            _ => {
                n.prev = 0;
                n.curr = 0;
            }
        }
        n.unit = unit;
    }

    fn is_hot(&self, n: &Node) -> bool {
        let limit = self.cfg.reqs_density_per_unit;
        n.prev >= limit || n.curr >= limit || (n.prev.saturating_add(n.curr) >> 1) >= limit
    }

    /// Counts one request from `ip`.
    pub fn check(&self, ip: IpAddr) -> Check {
        let ip = canonical(ip);
        let now = self.now();
        let mut shard = self.shard(&ip).lock().unwrap_or_else(|e| e.into_inner());
        let node = match shard.get_mut(&ip) {
            Some(n) => n,
            None => {
                // Reserve a place under the cap before inserting.
                let reserved = self
                    .nodes
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < self.cfg.max_nodes).then_some(n + 1)
                    })
                    .is_ok();
                if !reserved {
                    self.untracked.fetch_add(1, Ordering::Relaxed);
                    return Check::Allowed;
                }
                shard.entry(ip).or_insert(Node {
                    prev: 0,
                    curr: 0,
                    last_hit: now,
                    unit: self.unit_of(now),
                    red: false,
                })
            }
        };
        self.roll(node, now);
        node.curr = node.curr.saturating_add(1);
        node.last_hit = now;
        if !self.is_hot(node) {
            return Check::Allowed;
        }
        if node.red {
            Check::Blocked
        } else {
            node.red = true;
            Check::JustBlocked
        }
    }

    /// The end of a sampling unit: counts are brought to the present unit, cooled
    /// addresses are unblocked, idle ones forgotten. Returns the addresses unblocked and
    /// how many new addresses went untracked since the last sweep. The sweeper task
    /// calls it every `sampling_time_unit` seconds; messages never scan.
    pub fn sweep(&self) -> (Vec<IpAddr>, u64) {
        let now = self.now();
        let mut unblocked = Vec::new();
        for shard in self.shards.iter() {
            let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
            let before = map.len();
            map.retain(|ip, n| {
                self.roll(n, now);
                if n.red && !self.is_hot(n) {
                    n.red = false;
                    unblocked.push(*ip);
                }
                now.saturating_sub(n.last_hit) < self.cfg.remove_latency || n.red
            });
            let removed = before - map.len();
            if removed > 0 {
                self.nodes.fetch_sub(removed, Ordering::AcqRel);
            }
        }
        (unblocked, self.untracked.swap(0, Ordering::Relaxed))
    }

    /// Addresses tracked now.
    pub fn len(&self) -> usize {
        self.nodes.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tracked addresses (`pike.top`): all, or only the hot or warm ones (warm: at
    /// least half the limit in a unit).
    pub fn top(&self, filter: TopFilter) -> Vec<NodeView> {
        let now = self.now();
        let limit = self.cfg.reqs_density_per_unit;
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let map = shard.lock().unwrap_or_else(|e| e.into_inner());
            for (ip, n) in map.iter() {
                let mut n = *n;
                self.roll(&mut n, now);
                let n = &n;
                let hot = self.is_hot(n);
                let warm = !hot && (n.prev.max(n.curr) >= limit / 2);
                let keep = match filter {
                    TopFilter::All => true,
                    TopFilter::Hot => hot,
                    TopFilter::Warm => warm,
                };
                if keep {
                    out.push(NodeView {
                        ip: *ip,
                        hits_prev: n.prev,
                        hits_curr: n.curr,
                        expires_in: (n.last_hit + self.cfg.remove_latency).saturating_sub(now),
                        hot,
                        warm,
                    });
                }
            }
        }
        out.sort_by(|a, b| {
            (b.hits_prev + b.hits_curr)
                .cmp(&(a.hits_prev + a.hits_curr))
                .then(a.ip.cmp(&b.ip))
        });
        out
    }
}

/// Which addresses `pike.top` lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopFilter {
    All,
    Hot,
    Warm,
}
