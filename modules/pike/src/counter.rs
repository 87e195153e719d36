//! Kamailio's pike counting: a prefix tree with one level per address byte, in which a
//! request is counted at the deepest node its address reaches, and the tree grows one
//! byte deeper only where a prefix is busy. The verdict is made at the node of the full
//! address, so a source only reaches the counting that can block it after its prefixes
//! were busy; with Kamailio's parameters our first block falls on the same request as
//! Kamailio 5.6's (tests/tests/pike_kamailio.rs runs both side by side).
//!
//! The rules, as in Kamailio 5.6 (`ip_tree.c`, `pike_funcs.c`), for `max` =
//! `reqs_density_per_unit`:
//! - the first request of an unknown first byte creates that byte's node, counted once;
//! - a request whose address stops at a prefix node counts there; once that prefix is
//!   *hot* (`max / 4` in the current or the previous unit, or their mean) the next byte
//!   of the address gets its own node, which inherits the prefix's count minus one;
//! - a request that reaches the node of its full address counts in that node's own
//!   ("leaf") counters; the address is blocked ("red") once they reach `max` in a unit
//!   (or the mean of two units does), and stays red until a unit ends with it cooled;
//! - every node lives `remove_latency` seconds: a full address from its last request, a
//!   prefix from its creation (requests stopping at a prefix do not renew it, so idle
//!   prefixes go); a node with children is kept until its last child is gone, and then
//!   gets a fresh `remove_latency`.
//!
//! Differences that are ours: the tree of each first byte is an arena behind its own
//! lock (Kamailio's 256 branch locks) whose children are found through a hash map
//! instead of a sibling list; units are numbers on the registry's clock and a node's
//! counts are brought to the present unit when it is touched, so a late sweeper changes
//! nothing; and the whole tree holds at most `max_nodes` nodes: past it a new node is not
//! made (the request is allowed, as Kamailio does when its memory runs out) until the
//! sweeper has removed idle ones. The bound and its cost are in docs/flood.md.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Pike's parameters, as the script set them.
#[derive(Clone, Debug)]
pub struct PikeConfig {
    /// Seconds per sampling unit (`sampling_time_unit`).
    pub sampling_time_unit: u32,
    /// Requests per unit from one address that make it hot (`reqs_density_per_unit`).
    pub reqs_density_per_unit: u32,
    /// Seconds a node is kept (`remove_latency`).
    pub remove_latency: u32,
    /// Kamailio log level of the "blocked" / "unblocked" lines (`pike_log_level`).
    pub log_level: i64,
    /// Most tree nodes at once (`max_nodes`, Ferrosip's bound).
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

const NONE: u32 = u32::MAX;
const PREV: usize = 0;
const CURR: usize = 1;
/// Kamailio counts in 16 bits and stops one below the top.
const COUNT_CAP: u16 = u16::MAX - 1;

/// A full address ends at this node (Kamailio's IP leaf).
const LEAF: u8 = 1;
/// Blocked.
const RED: u8 = 2;
/// Expires at `expires` (full addresses and nodes without children).
const IN_TIMER: u8 = 4;
/// The arena slot holds a node.
const LIVE: u8 = 8;

#[derive(Clone, Copy, Debug)]
struct Node {
    parent: u32,
    /// Second (since the counter started) at which the node is removed, if `IN_TIMER`.
    expires: u32,
    /// The sampling unit the `CURR` counts belong to.
    unit: u32,
    /// Requests that stopped at this node as a prefix, previous and current unit.
    hits: [u16; 2],
    /// Requests from the full address of this node, previous and current unit.
    leaf: [u16; 2],
    kids: u16,
    byte: u8,
    flags: u8,
}

/// The subtree of one first byte, behind one lock.
struct Branch {
    root: u32,
    nodes: Vec<Node>,
    free: Vec<u32>,
    /// [`kid_key`] (parent, next byte) -> child. SipHash with a random key, so chosen
    /// addresses cannot make one bucket long.
    kids: HashMap<u64, u32>,
}

impl Branch {
    fn new() -> Branch {
        Branch {
            root: NONE,
            nodes: Vec::new(),
            free: Vec::new(),
            kids: HashMap::new(),
        }
    }

    /// The address bytes from the first one down to node `i`.
    fn path(&self, mut i: u32) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(16);
        while i != NONE {
            let n = &self.nodes[i as usize];
            bytes.push(n.byte);
            i = n.parent;
        }
        bytes.reverse();
        bytes
    }
}

/// One integer for (parent, byte): one hash write per level of the walk.
fn kid_key(parent: u32, byte: u8) -> u64 {
    (u64::from(parent) << 8) | u64::from(byte)
}

fn address(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        16 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(bytes);
            Some(IpAddr::V6(Ipv6Addr::from(o)))
        }
        _ => None,
    }
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

/// The prefix tree of every source address.
pub struct PikeCounter {
    cfg: PikeConfig,
    /// `reqs_density_per_unit` in Kamailio's 16 bits.
    max: u16,
    branches: Box<[Mutex<Branch>]>,
    nodes: AtomicUsize,
    /// New nodes not made because the cap was reached (since the last sweep).
    untracked: AtomicU64,
    /// Units and expiry are measured on this clock (the registry's, so `ferrosip test`
    /// moves them).
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

    /// A counter whose units and expiry are measured on `clock`.
    pub fn with_clock(cfg: PikeConfig, clock: ferrosip_api::Clock) -> PikeCounter {
        let branches = (0..256).map(|_| Mutex::new(Branch::new())).collect();
        PikeCounter {
            max: u16::try_from(cfg.reqs_density_per_unit).unwrap_or(u16::MAX),
            cfg,
            branches,
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

    fn unit_of(&self, now: u32) -> u32 {
        now / self.cfg.sampling_time_unit.max(1)
    }

    fn hot_leaf(&self, n: &Node) -> bool {
        let max = self.max;
        n.leaf[PREV] >= max
            || n.leaf[CURR] >= max
            || ((u32::from(n.leaf[PREV]) + u32::from(n.leaf[CURR])) >> 1) >= u32::from(max)
    }

    fn hot_prefix(&self, n: &Node) -> bool {
        let quarter = self.max >> 2;
        n.hits[PREV] >= quarter
            || n.hits[CURR] >= quarter
            || ((u32::from(n.hits[PREV]) + u32::from(n.hits[CURR])) >> 1) >= u32::from(quarter)
    }

    /// Brings a node's counts to `unit`: what Kamailio's swap timer does at the end of
    /// every unit, done when the node is next looked at. Returns true when this
    /// unblocks it.
    fn roll(&self, n: &mut Node, unit: u32) -> bool {
        match unit.saturating_sub(n.unit) {
            0 => return false,
            1 => {
                n.hits = [n.hits[CURR], 0];
                n.leaf = [n.leaf[CURR], 0];
            }
            _ => {
                n.hits = [0, 0];
                n.leaf = [0, 0];
            }
        }
        n.unit = unit;
        if n.flags & RED != 0 && !self.hot_leaf(n) {
            n.flags &= !RED;
            return true;
        }
        false
    }

    /// A new node in `b`, unless the cap is reached.
    fn alloc(&self, b: &mut Branch, parent: u32, byte: u8, unit: u32, now: u32) -> Option<u32> {
        let reserved = self
            .nodes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.cfg.max_nodes).then_some(n + 1)
            })
            .is_ok();
        if !reserved {
            self.untracked.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let node = Node {
            parent,
            expires: now.saturating_add(self.cfg.remove_latency),
            unit,
            hits: [0, 0],
            leaf: [0, 0],
            kids: 0,
            byte,
            flags: LIVE | IN_TIMER,
        };
        Some(match b.free.pop() {
            Some(i) => {
                b.nodes[i as usize] = node;
                i
            }
            None => {
                b.nodes.push(node);
                (b.nodes.len() - 1) as u32
            }
        })
    }

    /// Counts one request from `ip`.
    pub fn check(&self, ip: IpAddr) -> Check {
        self.check_noting_unblock(ip).0
    }

    /// As [`check`](Self::check), also saying whether the address was unblocked on the
    /// way (a unit ended since it was last seen and it had cooled).
    pub fn check_noting_unblock(&self, ip: IpAddr) -> (Check, bool) {
        let octets: [u8; 16];
        let bytes: &[u8] = match canonical(ip) {
            IpAddr::V4(v4) => {
                let mut o = [0u8; 16];
                o[..4].copy_from_slice(&v4.octets());
                octets = o;
                &octets[..4]
            }
            IpAddr::V6(v6) => {
                octets = v6.octets();
                &octets[..]
            }
        };
        let now = self.now();
        let unit = self.unit_of(now);
        let mut guard = self.branches[usize::from(bytes[0])]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let b = &mut *guard;
        if b.root == NONE {
            if let Some(i) = self.alloc(b, NONE, bytes[0], unit, now) {
                b.nodes[i as usize].hits[CURR] = 1;
                b.root = i;
            }
            return (Check::Allowed, false);
        }
        // The longest prefix of the address already in the tree.
        let mut at = b.root;
        let mut depth = 1;
        while depth < bytes.len() {
            match b.kids.get(&kid_key(at, bytes[depth])) {
                Some(&kid) => {
                    at = kid;
                    depth += 1;
                }
                None => break,
            }
        }
        if depth == bytes.len() {
            let n = &mut b.nodes[at as usize];
            let unblocked = self.roll(n, unit);
            n.flags |= LEAF | IN_TIMER;
            if n.leaf[CURR] < COUNT_CAP {
                n.leaf[CURR] += 1;
            }
            n.expires = now.saturating_add(self.cfg.remove_latency);
            let check = if n.flags & RED != 0 {
                Check::Blocked
            } else if self.hot_leaf(n) {
                n.flags |= RED;
                Check::JustBlocked
            } else {
                Check::Allowed
            };
            return (check, unblocked);
        }
        // Only a prefix is known: count there, and once it is busy give the next byte
        // its own node.
        let n = &mut b.nodes[at as usize];
        let unblocked = self.roll(n, unit);
        if n.hits[CURR] < COUNT_CAP {
            n.hits[CURR] += 1;
        }
        if self.hot_prefix(n) {
            let hits = n.hits[CURR].saturating_sub(1);
            // Kamailio's split also hands down the leaf counts of a prefix that is
            // itself an address (an IPv4 address at the head of an IPv6 one).
            let leaf_prev = if n.leaf[CURR] >= 1 {
                n.leaf[PREV].saturating_sub(1)
            } else {
                0
            };
            if let Some(kid) = self.alloc(b, at, bytes[depth], unit, now) {
                let k = &mut b.nodes[kid as usize];
                k.hits[CURR] = hits;
                k.leaf[PREV] = leaf_prev;
                b.kids.insert(kid_key(at, bytes[depth]), kid);
                let dad = &mut b.nodes[at as usize];
                dad.kids += 1;
                // A prefix with children lives as long as they do.
                if dad.flags & LEAF == 0 && dad.kids == 1 {
                    dad.flags &= !IN_TIMER;
                }
            }
        }
        (Check::Allowed, unblocked)
    }

    /// Removes node `i` (expired), or, if it has children, only ends it as an address.
    fn expire(&self, b: &mut Branch, i: u32, now: u32) {
        let n = b.nodes[i as usize];
        if n.kids > 0 {
            let n = &mut b.nodes[i as usize];
            n.flags &= !(LEAF | IN_TIMER);
            n.leaf[CURR] = 0;
            return;
        }
        if n.parent == NONE {
            b.root = NONE;
        } else {
            b.kids.remove(&kid_key(n.parent, n.byte));
            let dad = &mut b.nodes[n.parent as usize];
            dad.kids -= 1;
            if dad.kids == 0 && dad.flags & LEAF == 0 {
                dad.flags |= IN_TIMER;
                dad.expires = now.saturating_add(self.cfg.remove_latency);
            }
        }
        b.nodes[i as usize].flags = 0;
        b.free.push(i);
        self.nodes.fetch_sub(1, Ordering::AcqRel);
    }

    /// Kamailio's two timers in one pass: counts are brought to the present unit
    /// (unblocking cooled addresses) and nodes whose time is up are removed. Returns the
    /// addresses unblocked and how many new nodes were refused by the cap since the last
    /// sweep. The sweeper task calls it every second; messages never scan.
    pub fn sweep(&self) -> (Vec<IpAddr>, u64) {
        let now = self.now();
        let unit = self.unit_of(now);
        let mut unblocked = Vec::new();
        for branch in self.branches.iter() {
            let mut guard = branch.lock().unwrap_or_else(|e| e.into_inner());
            let b = &mut *guard;
            if b.root == NONE {
                continue;
            }
            for i in 0..b.nodes.len() as u32 {
                let n = &mut b.nodes[i as usize];
                if n.flags & LIVE == 0 {
                    continue;
                }
                if self.roll(n, unit) {
                    if let Some(ip) = address(&b.path(i)) {
                        unblocked.push(ip);
                    }
                }
                let n = &b.nodes[i as usize];
                if n.flags & IN_TIMER != 0 && n.expires <= now {
                    self.expire(b, i, now);
                }
            }
            if b.root == NONE {
                // The branch emptied: give its memory back.
                *b = Branch::new();
            }
        }
        (unblocked, self.untracked.swap(0, Ordering::Relaxed))
    }

    /// Tree nodes now.
    pub fn len(&self) -> usize {
        self.nodes.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The addresses in the tree (`pike.top`): all, or only the hot or warm ones. As in
    /// Kamailio, HOT is the blocking rule and WARM means the node's prefix count reached
    /// a quarter of the limit in the current unit.
    pub fn top(&self, filter: TopFilter) -> Vec<NodeView> {
        let now = self.now();
        let unit = self.unit_of(now);
        let mut out = Vec::new();
        for branch in self.branches.iter() {
            let b = branch.lock().unwrap_or_else(|e| e.into_inner());
            for (i, n) in b.nodes.iter().enumerate() {
                if n.flags & (LIVE | LEAF) != LIVE | LEAF {
                    continue;
                }
                let mut n = *n;
                self.roll(&mut n, unit);
                let hot = self.hot_leaf(&n);
                let warm = !hot && n.hits[CURR] >= self.max >> 2;
                let keep = match filter {
                    TopFilter::All => true,
                    TopFilter::Hot => hot,
                    TopFilter::Warm => warm,
                };
                let Some(ip) = address(&b.path(i as u32)) else {
                    continue;
                };
                if keep {
                    out.push(NodeView {
                        ip,
                        hits_prev: u32::from(n.leaf[PREV]),
                        hits_curr: u32::from(n.leaf[CURR]),
                        expires_in: n.expires.saturating_sub(now),
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
