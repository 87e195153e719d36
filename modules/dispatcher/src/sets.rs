//! The destination sets in memory: each destination with its live state (flags, failure
//! and success counters, active calls), built from the configured records and swapped
//! as a whole on reload.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use ferrosip_api::Proto;
use ferrosip_sip::Uri;

use crate::list::{flag, Attrs, DestSpec};

/// One destination of a set.
#[derive(Debug)]
pub struct Destination {
    pub setid: i32,
    pub uri: Bytes,
    pub priority: i32,
    pub attrs_raw: Bytes,
    pub attrs: Attrs,
    /// Where the URI resolved at load, for `ds_is_from_list()`.
    pub addrs: Vec<IpAddr>,
    pub port: u16,
    pub proto: Proto,
    flags: AtomicU32,
    failures: AtomicU32,
    successes: AtomicU32,
    /// Active calls (algorithm 10).
    pub load: AtomicU32,
    /// A probe of this destination is in flight.
    pub probing_now: AtomicBool,
}

impl Destination {
    pub fn new(spec: &DestSpec) -> Destination {
        let (host, port, proto) = address_of(&spec.uri);
        let addrs = match (&host, spec.flags & flag::NO_DNS) {
            (Some(h), 0) => resolve(h, port),
            _ => Vec::new(),
        };
        Destination {
            setid: spec.setid,
            uri: spec.uri.clone(),
            priority: spec.priority,
            attrs: Attrs::parse(&spec.attrs),
            attrs_raw: spec.attrs.clone(),
            addrs,
            port,
            proto,
            flags: AtomicU32::new(spec.flags),
            failures: AtomicU32::new(0),
            successes: AtomicU32::new(0),
            load: AtomicU32::new(0),
            probing_now: AtomicBool::new(false),
        }
    }

    pub fn flags(&self) -> u32 {
        self.flags.load(Ordering::Relaxed)
    }

    /// Selectable: neither inactive nor disabled (a `trying` one still is).
    pub fn usable(&self) -> bool {
        self.flags() & (flag::INACTIVE | flag::DISABLED) == 0
    }

    /// Replaces the state bits, keeping the others (no-DNS, no-ping). Returns the old
    /// flags.
    pub fn set_state(&self, state: u32) -> u32 {
        let mut old = self.flags();
        loop {
            let new = (old & !flag::STATE) | (state & flag::STATE);
            match self
                .flags
                .compare_exchange(old, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return old,
                Err(now) => old = now,
            }
        }
    }

    pub fn reset_counters(&self) {
        self.failures.store(0, Ordering::Relaxed);
        self.successes.store(0, Ordering::Relaxed);
    }

    /// Counts a failure; the new count.
    pub fn count_failure(&self) -> u32 {
        self.successes.store(0, Ordering::Relaxed);
        self.failures.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts a success; the new count.
    pub fn count_success(&self) -> u32 {
        self.failures.store(0, Ordering::Relaxed);
        self.successes.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// `AP`, `IX`, ...: the state letter, then `P` (probed) or `X`, as Kamailio's RPC.
    pub fn state_letters(&self) -> String {
        let f = self.flags();
        let state = if f & flag::DISABLED != 0 {
            'D'
        } else if f & flag::INACTIVE != 0 {
            'I'
        } else if f & flag::TRYING != 0 {
            'T'
        } else {
            'A'
        };
        let probe = if f & flag::PROBING != 0 { 'P' } else { 'X' };
        format!("{state}{probe}")
    }

    /// Whether a packet from `ip:port` over `proto` comes from this destination, with
    /// `ds_is_from_list()`'s mode bits (1 ignore port, 2 ignore protocol).
    pub fn matches(&self, ip: IpAddr, port: u16, proto: Proto, mode: i64) -> bool {
        self.addrs.contains(&ip)
            && (mode & 1 != 0 || self.port == port)
            && (mode & 2 != 0 || self.proto == proto)
    }
}

/// Host, port and transport of a destination URI (RFC 3263 defaults without DNS SRV:
/// UDP for sip:, TCP/TLS for sips:, port 5060/5061).
pub fn address_of(uri: &[u8]) -> (Option<String>, u16, Proto) {
    let Ok(u) = Uri::parse(uri) else {
        return (None, 5060, Proto::Udp);
    };
    let sips = u.scheme().eq_ignore_ascii_case(b"sips");
    let proto = match u.param("transport").flatten() {
        Some(t) => Proto::from_bytes(t).unwrap_or(Proto::Udp),
        None if sips => Proto::Tls,
        None => Proto::Udp,
    };
    let port = u.port().unwrap_or(if sips || proto == Proto::Tls {
        5061
    } else {
        5060
    });
    let host = u.host().map(|h| {
        String::from_utf8_lossy(h)
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string()
    });
    (host, port, proto)
}

fn resolve(host: &str, port: u16) -> Vec<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![ip];
    }
    match (host, port).to_socket_addrs() {
        Ok(it) => it.map(|a: SocketAddr| a.ip()).collect(),
        Err(e) => {
            tracing::warn!(host, "dispatcher: cannot resolve destination: {e}");
            Vec::new()
        }
    }
}

/// One destination set, ordered as Kamailio orders it: by priority, highest first,
/// and among equal priorities the later line first.
#[derive(Debug)]
pub struct DestSet {
    pub id: i32,
    pub dests: Vec<Arc<Destination>>,
    /// Round-robin position (algorithms 4 and 5 without credentials).
    pub next: AtomicUsize,
    /// Position in the 100-call cycles of algorithms 9 and 11.
    pub weight_pos: AtomicUsize,
    pub rweight_pos: AtomicUsize,
    /// Algorithm 9: which destination takes each of 100 calls, spread by a fixed shuffle.
    pub weight_slots: Vec<usize>,
}

/// A fixed permutation of 0..100 (the same every run), so that a weighted destination's
/// calls are spread over the cycle instead of coming in a block.
pub fn spread() -> Vec<usize> {
    let mut slots: Vec<usize> = (0..100).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..slots.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        slots.swap(i, (x % (i as u64 + 1)) as usize);
    }
    slots
}

/// Splits 100 slots by `weights` (each w% of the calls; destinations past a sum of
/// 100 get none; a sum under 100 leaves the rest to the last destination). `None`
/// when no weight is set.
pub fn weight_table(weights: &[u32]) -> Option<Vec<usize>> {
    if weights.iter().all(|w| *w == 0) {
        return None;
    }
    let mut owner = Vec::with_capacity(100);
    for (i, w) in weights.iter().enumerate() {
        let room = 100 - owner.len();
        if *w as usize > room {
            continue;
        }
        owner.extend(std::iter::repeat_n(i, *w as usize));
    }
    let last = weights.len() - 1;
    owner.resize(100, last);
    let order = spread();
    Some(order.iter().map(|&s| owner[s]).collect())
}

impl DestSet {
    fn new(id: i32, mut dests: Vec<Arc<Destination>>) -> DestSet {
        // Stable sort by descending priority on the reversed file order.
        dests.reverse();
        dests.sort_by_key(|d| std::cmp::Reverse(d.priority));
        let weights: Vec<u32> = dests.iter().map(|d| d.attrs.weight).collect();
        let weight_slots = weight_table(&weights).unwrap_or_default();
        DestSet {
            id,
            dests,
            next: AtomicUsize::new(0),
            weight_pos: AtomicUsize::new(0),
            rweight_pos: AtomicUsize::new(0),
            weight_slots,
        }
    }

    pub fn find(&self, uri: &[u8]) -> Option<&Arc<Destination>> {
        self.dests.iter().find(|d| d.uri[..] == *uri)
    }
}

/// Every destination set.
#[derive(Debug, Default)]
pub struct Sets {
    pub sets: BTreeMap<i32, DestSet>,
}

impl Sets {
    pub fn build(specs: &[DestSpec]) -> Sets {
        let mut by_id: BTreeMap<i32, Vec<Arc<Destination>>> = BTreeMap::new();
        for s in specs {
            by_id
                .entry(s.setid)
                .or_default()
                .push(Arc::new(Destination::new(s)));
        }
        Sets {
            sets: by_id
                .into_iter()
                .map(|(id, d)| (id, DestSet::new(id, d)))
                .collect(),
        }
    }

    /// Carries the live state of destinations that are still configured (same set and
    /// URI) over from the previous sets: flags when `keep_state`, active calls always.
    pub fn inherit(&self, old: &Sets, keep_state: bool) {
        for set in self.sets.values() {
            let Some(prev) = old.sets.get(&set.id) else {
                continue;
            };
            for d in &set.dests {
                if let Some(p) = prev.find(&d.uri) {
                    d.load
                        .store(p.load.load(Ordering::Relaxed), Ordering::Relaxed);
                    if keep_state {
                        d.set_state(p.flags());
                    }
                }
            }
        }
    }

    pub fn get(&self, id: i32) -> Option<&DestSet> {
        self.sets.get(&id)
    }

    pub fn find(&self, setid: i32, uri: &[u8]) -> Option<&Arc<Destination>> {
        self.get(setid).and_then(|s| s.find(uri))
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Destination>> {
        self.sets.values().flat_map(|s| s.dests.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::list::parse_list;

    #[test]
    fn order_is_priority_then_later_line_first() {
        let specs =
            parse_list("1 sip:a.invalid 16 0\n1 sip:b.invalid 16 5\n1 sip:c.invalid 16 0\n")
                .unwrap();
        let sets = Sets::build(&specs);
        let order: Vec<&[u8]> = sets
            .get(1)
            .unwrap()
            .dests
            .iter()
            .map(|d| &d.uri[..])
            .collect();
        assert_eq!(
            order,
            vec![&b"sip:b.invalid"[..], b"sip:c.invalid", b"sip:a.invalid"]
        );
    }

    #[test]
    fn weights_fill_100_slots() {
        let t = weight_table(&[50, 30, 0]).unwrap();
        assert_eq!(t.len(), 100);
        let count = |i| t.iter().filter(|&&x| x == i).count();
        // The missing 20% go to the last destination.
        assert_eq!((count(0), count(1), count(2)), (50, 30, 20));
        let t = weight_table(&[70, 40, 30]).unwrap();
        let count = |i| t.iter().filter(|&&x| x == i).count();
        // 40 would go over 100: ignored.
        assert_eq!((count(0), count(1), count(2)), (70, 0, 30));
        assert!(weight_table(&[0, 0]).is_none());
        // Spread, not in a block.
        let t = weight_table(&[50, 50]).unwrap();
        assert!(t[..10].contains(&0) && t[..10].contains(&1));
    }

    #[test]
    fn state_letters_and_matching() {
        let specs = parse_list("1 sip:127.0.0.1:5080;transport=tcp 9\n").unwrap();
        let sets = Sets::build(&specs);
        let d = sets.find(1, b"sip:127.0.0.1:5080;transport=tcp").unwrap();
        assert_eq!(d.state_letters(), "IP");
        assert!(!d.usable());
        d.set_state(0);
        assert_eq!(d.state_letters(), "AX");
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(d.matches(ip, 5080, Proto::Tcp, 0));
        assert!(!d.matches(ip, 5080, Proto::Udp, 0));
        assert!(d.matches(ip, 5080, Proto::Udp, 2));
        assert!(!d.matches(ip, 5081, Proto::Tcp, 0));
        assert!(d.matches(ip, 5081, Proto::Tcp, 1));
    }
}
