//! The in-memory LCR tables of one load: gateways, rules with their targets, and the prefix
//! index, per LCR instance. A snapshot is immutable once built (only the gateways' defunct
//! times change) and is swapped as a whole on reload, so a lookup sees one consistent load.

use regex::bytes::Regex;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Kamailio's gateway transport codes (`lcr_gw.transport`, the `proto` arguments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GwTransport {
    Udp = 1,
    Tcp = 2,
    Tls = 3,
    Sctp = 4,
}

impl GwTransport {
    pub fn from_code(code: i64) -> Option<GwTransport> {
        match code {
            1 => Some(GwTransport::Udp),
            2 => Some(GwTransport::Tcp),
            3 => Some(GwTransport::Tls),
            4 => Some(GwTransport::Sctp),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            GwTransport::Udp => "udp",
            GwTransport::Tcp => "tcp",
            GwTransport::Tls => "tls",
            GwTransport::Sctp => "sctp",
        }
    }

    /// The transport of a `transport=` URI parameter value.
    pub fn from_name(name: &[u8]) -> Option<GwTransport> {
        [
            GwTransport::Udp,
            GwTransport::Tcp,
            GwTransport::Tls,
            GwTransport::Sctp,
        ]
        .into_iter()
        .find(|t| t.name().as_bytes().eq_ignore_ascii_case(name))
    }
}

/// One `lcr_gw` row as loaded.
#[derive(Debug)]
pub struct Gateway {
    pub id: u32,
    pub name: String,
    /// `sip:` or `sips:`.
    pub scheme: &'static str,
    pub ip: Option<IpAddr>,
    pub hostname: String,
    /// 0: none.
    pub port: u16,
    /// URI parameters, starting with `;` (or empty).
    pub params: String,
    pub transport: Option<GwTransport>,
    pub strip: u32,
    pub prefix: String,
    pub tag: String,
    pub flags: u32,
    /// Unix seconds until which the gateway is skipped (`defunct_gw()`, the column).
    pub defunct_until: AtomicU64,
}

impl Gateway {
    /// `scheme host[:port][;transport=x]`, as dumps show it.
    pub fn uri(&self) -> String {
        let host = match self.ip {
            Some(IpAddr::V6(v6)) => format!("[{v6}]"),
            Some(ip) => ip.to_string(),
            None => self.hostname.clone(),
        };
        let mut s = format!("{}{}", self.scheme, host);
        if self.port > 0 {
            s.push_str(&format!(":{}", self.port));
        }
        if let Some(t) = self.transport {
            s.push_str(";transport=");
            s.push_str(t.name());
        }
        s
    }

    pub fn is_defunct(&self, now: u64) -> bool {
        self.defunct_until.load(Ordering::Relaxed) > now
    }

    /// Copy for another instance (gateways of instance 0 belong to every instance, each
    /// with its own defunct state, as in Kamailio).
    pub fn duplicate(&self) -> Gateway {
        Gateway {
            id: self.id,
            name: self.name.clone(),
            scheme: self.scheme,
            ip: self.ip,
            hostname: self.hostname.clone(),
            port: self.port,
            params: self.params.clone(),
            transport: self.transport,
            strip: self.strip,
            prefix: self.prefix.clone(),
            tag: self.tag.clone(),
            flags: self.flags,
            defunct_until: AtomicU64::new(self.defunct_until.load(Ordering::Relaxed)),
        }
    }
}

/// A gateway a rule points to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// Index into the instance's gateways.
    pub gw: u32,
    pub priority: u8,
    pub weight: u32,
}

/// One enabled `lcr_rule` row with its targets.
#[derive(Debug)]
pub struct Rule {
    pub id: u32,
    pub prefix: Box<[u8]>,
    pub from_uri: Option<Regex>,
    pub request_uri: Option<Regex>,
    pub stopper: bool,
    /// Range into the instance's targets.
    pub targets: (u32, u32),
}

/// A rule as read from the database, before indexing.
#[derive(Debug)]
pub struct RuleRow {
    pub id: u32,
    pub prefix: String,
    pub from_uri: Option<Regex>,
    pub request_uri: Option<Regex>,
    pub stopper: bool,
}

/// Rules whose prefixes all have one length, sorted by prefix: a binary search over
/// fixed-width keys laid end to end (no allocation per prefix, so a million prefixes cost
/// their bytes plus four bytes each).
#[derive(Debug, Default)]
struct LengthTable {
    len: usize,
    /// The distinct prefixes of this length, sorted, `len` bytes each.
    keys: Vec<u8>,
    /// `starts[i]..starts[i + 1]`: the rules (indexes into `Instance::rules`) of key `i`.
    starts: Vec<u32>,
}

impl LengthTable {
    fn find(&self, key: &[u8]) -> Option<std::ops::Range<usize>> {
        let n = self.starts.len().saturating_sub(1);
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let k = &self.keys[mid * self.len..(mid + 1) * self.len];
            match k.cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => {
                    return Some(self.starts[mid] as usize..self.starts[mid + 1] as usize)
                }
            }
        }
        None
    }
}

/// One LCR instance (`lcr_id`).
#[derive(Debug, Default)]
pub struct Instance {
    pub gateways: Vec<Gateway>,
    /// Sorted by (prefix length descending, prefix, rule id).
    pub rules: Vec<Rule>,
    pub targets: Vec<Target>,
    /// One table per prefix length, longest first (Kamailio's prefix-length list).
    lengths: Vec<LengthTable>,
    /// Some gateway has no IP address: from_gw()/to_gw() refuse this instance, as
    /// Kamailio does.
    pub gw_without_ip: bool,
}

/// A gateway that matched, with its sort keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Matched {
    pub gw: u32,
    pub rule_id: u32,
    pub prefix_len: u32,
    pub priority: u8,
    /// The target's weight times a random number (Kamailio's randomized weight: fast, and
    /// as unfair as Kamailio's, favouring larger weights).
    pub weight_key: u64,
}

/// How matched gateways are ordered (`priority_ordering`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GwOrdering {
    /// Longest prefix, then priority, then randomized weight.
    PrefixFirst,
    /// Priority, then randomized weight.
    PriorityOnly,
}

impl Instance {
    /// Builds an instance: `targets` are `(rule_id, target)` pairs; targets of rules that
    /// are not loaded (disabled) are dropped, as Kamailio skips them.
    pub fn build(
        gateways: Vec<Gateway>,
        mut rules: Vec<RuleRow>,
        mut targets: Vec<(u32, Target)>,
    ) -> Instance {
        rules.sort_by(|a, b| {
            b.prefix
                .len()
                .cmp(&a.prefix.len())
                .then_with(|| a.prefix.cmp(&b.prefix))
                .then(a.id.cmp(&b.id))
        });
        targets.sort_by_key(|(rule, t)| (*rule, t.priority, t.gw));
        let gw_without_ip = gateways.iter().any(|g| g.ip.is_none());
        let mut inst = Instance {
            gateways,
            rules: Vec::with_capacity(rules.len()),
            targets: Vec::with_capacity(targets.len()),
            lengths: Vec::new(),
            gw_without_ip,
        };
        // Rule ids are unique: find each rule's targets by merging two sorted lists.
        let mut by_id: Vec<(u32, u32)> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id, i as u32))
            .collect();
        by_id.sort_unstable();
        let mut ranges = vec![(0u32, 0u32); rules.len()];
        let mut kept: Vec<Target> = Vec::with_capacity(targets.len());
        let mut ti = 0;
        for (id, idx) in &by_id {
            while ti < targets.len() && targets[ti].0 < *id {
                ti += 1;
            }
            let start = kept.len() as u32;
            while ti < targets.len() && targets[ti].0 == *id {
                kept.push(targets[ti].1);
                ti += 1;
            }
            ranges[*idx as usize] = (start, kept.len() as u32);
        }
        inst.targets = kept;
        for (i, r) in rules.into_iter().enumerate() {
            let prefix: Box<[u8]> = r.prefix.into_bytes().into_boxed_slice();
            let len = prefix.len();
            if inst.lengths.last().is_none_or(|t| t.len != len) {
                inst.lengths.push(LengthTable {
                    len,
                    ..LengthTable::default()
                });
            }
            let table = inst.lengths.last_mut().expect("pushed above");
            let n = table.starts.len();
            let same_key = n > 0 && table.keys[(n - 1) * len..] == prefix[..];
            if !same_key {
                table.keys.extend_from_slice(&prefix);
                table.starts.push(i as u32);
            }
            inst.rules.push(Rule {
                id: r.id,
                prefix,
                from_uri: r.from_uri,
                request_uri: r.request_uri,
                stopper: r.stopper,
                targets: ranges[i],
            });
        }
        let total = inst.rules.len() as u32;
        for t in &mut inst.lengths {
            t.starts.push(total);
        }
        // Each table's last start is its own end: fix the ends to the next table's first.
        let firsts: Vec<u32> = inst.lengths.iter().map(|t| t.starts[0]).collect();
        for (k, t) in inst.lengths.iter_mut().enumerate() {
            let end = firsts.get(k + 1).copied().unwrap_or(total);
            if let Some(last) = t.starts.last_mut() {
                *last = end;
            }
        }
        inst
    }

    /// The rules whose prefix is a prefix of `user`, longest prefix first.
    pub fn rules_for<'a>(&'a self, user: &'a [u8]) -> impl Iterator<Item = &'a Rule> + 'a {
        self.lengths
            .iter()
            .filter(move |t| t.len <= user.len())
            .filter_map(move |t| t.find(&user[..t.len]))
            .flat_map(move |r| self.rules[r].iter())
    }

    /// The matching gateways in the order `next_gw()` tries them (Kamailio's load_gws()):
    /// rules by prefix, From URI and Request-URI regex; a matching stopper rule ends the
    /// search; defunct gateways are skipped; a gateway appears once, at its best place.
    pub fn matching(
        &self,
        user: &[u8],
        from_uri: &[u8],
        request_uri: &[u8],
        now: u64,
        ordering: GwOrdering,
        mut random: impl FnMut() -> u64,
    ) -> Vec<Matched> {
        let mut out = Vec::new();
        for rule in self.rules_for(user) {
            if let Some(re) = &rule.from_uri {
                if !re.is_match(from_uri) {
                    continue;
                }
            }
            if let Some(re) = &rule.request_uri {
                if !re.is_match(request_uri) {
                    continue;
                }
            }
            let (start, end) = rule.targets;
            for t in &self.targets[start as usize..end as usize] {
                let Some(gw) = self.gateways.get(t.gw as usize) else {
                    continue;
                };
                if gw.is_defunct(now) {
                    continue;
                }
                out.push(Matched {
                    gw: t.gw,
                    rule_id: rule.id,
                    prefix_len: rule.prefix.len() as u32,
                    priority: t.priority,
                    weight_key: u64::from(t.weight) * (random() & 0x7f_ffff),
                });
            }
            if rule.stopper {
                break;
            }
        }
        out.sort_by(|a, b| {
            let by_prefix = match ordering {
                GwOrdering::PrefixFirst => b.prefix_len.cmp(&a.prefix_len),
                GwOrdering::PriorityOnly => std::cmp::Ordering::Equal,
            };
            by_prefix
                .then(a.priority.cmp(&b.priority))
                .then(b.weight_key.cmp(&a.weight_key))
        });
        let mut seen = Vec::with_capacity(out.len());
        out.retain(|m| {
            if seen.contains(&m.gw) {
                false
            } else {
                seen.push(m.gw);
                true
            }
        });
        out
    }

    /// The gateway with this IP (and port, when `port` is not 0) whose transport fits
    /// (`None`: any), for from_gw()/to_gw().
    pub fn gateway_at(
        &self,
        ip: IpAddr,
        port: u16,
        transport: Option<GwTransport>,
    ) -> Option<&Gateway> {
        self.gateways.iter().find(|g| {
            g.ip.is_some_and(|a| same_ip(a, ip))
                && (port == 0 || g.port == port)
                && (transport.is_none() || g.transport == transport)
        })
    }
}

/// IPv4 and its IPv4-mapped IPv6 form are the same address.
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// Every instance of one load; index 0 is unused (instances are numbered from 1).
#[derive(Debug, Default)]
pub struct Snapshot {
    pub instances: Vec<Instance>,
    pub loaded_at: u64,
}

impl Snapshot {
    pub fn instance(&self, lcr_id: i64) -> Option<&Instance> {
        usize::try_from(lcr_id)
            .ok()
            .filter(|&i| i >= 1)
            .and_then(|i| self.instances.get(i))
    }

    pub fn rule_count(&self) -> usize {
        self.instances.iter().map(|i| i.rules.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn gw(id: u32, ip: &str) -> Gateway {
        Gateway {
            id,
            name: format!("gw{id}"),
            scheme: "sip:",
            ip: ip.parse().ok(),
            hostname: String::new(),
            port: 5060,
            params: String::new(),
            transport: None,
            strip: 0,
            prefix: String::new(),
            tag: String::new(),
            flags: 0,
            defunct_until: AtomicU64::new(0),
        }
    }

    fn rule(id: u32, prefix: &str) -> RuleRow {
        RuleRow {
            id,
            prefix: prefix.into(),
            from_uri: None,
            request_uri: None,
            stopper: false,
        }
    }

    fn t(gw: u32, priority: u8, weight: u32) -> Target {
        Target {
            gw,
            priority,
            weight,
        }
    }

    fn order(inst: &Instance, user: &str) -> Vec<u32> {
        let mut n = 0u64;
        inst.matching(
            user.as_bytes(),
            b"",
            b"sip:x@y",
            0,
            GwOrdering::PrefixFirst,
            || {
                n += 1;
                n
            },
        )
        .iter()
        .map(|m| m.gw)
        .collect()
    }

    #[test]
    fn longest_prefix_first_then_priority() {
        let gws = vec![gw(1, "10.0.0.1"), gw(2, "10.0.0.2"), gw(3, "10.0.0.3")];
        let rules = vec![rule(1, "49"), rule(2, "4930"), rule(3, ""), rule(4, "31")];
        let targets = vec![
            (1, t(0, 1, 1)),
            (1, t(1, 0, 1)),
            (2, t(2, 5, 1)),
            (3, t(0, 9, 1)),
            (4, t(1, 0, 1)),
        ];
        let inst = Instance::build(gws, rules, targets);
        // 4930... matches "4930" (gw 2), then "49" (gw 1 prio 0, gw 0 prio 1); "" adds gw 0
        // again, which is dropped as a duplicate of its better place.
        assert_eq!(order(&inst, "493012345"), vec![2, 1, 0]);
        assert_eq!(order(&inst, "4912"), vec![1, 0]);
        assert_eq!(order(&inst, "33"), vec![0]);
        assert_eq!(order(&inst, "3"), vec![0]);
        assert_eq!(order(&inst, "31"), vec![1, 0]);
        let ids: Vec<u32> = inst.rules_for(b"4930").map(|r| r.id).collect();
        assert_eq!(ids, vec![2, 1, 3]);
    }

    #[test]
    fn stopper_and_regexes() {
        let gws = vec![gw(1, "10.0.0.1"), gw(2, "10.0.0.2")];
        let mut stop = rule(1, "49");
        stop.stopper = true;
        stop.from_uri = Some(Regex::new("^sip:vip@").unwrap());
        let mut by_ruri = rule(2, "4");
        by_ruri.request_uri = Some(Regex::new("@example\\.com").unwrap());
        let inst = Instance::build(
            gws,
            vec![stop, by_ruri],
            vec![(1, t(0, 0, 1)), (2, t(1, 0, 1))],
        );
        let m = |user: &str, from: &str, ruri: &str| -> Vec<u32> {
            inst.matching(
                user.as_bytes(),
                from.as_bytes(),
                ruri.as_bytes(),
                0,
                GwOrdering::PrefixFirst,
                || 1,
            )
            .iter()
            .map(|m| m.gw)
            .collect()
        };
        assert_eq!(m("491", "sip:vip@a", "sip:491@example.com"), vec![0]);
        assert_eq!(m("491", "sip:bob@a", "sip:491@example.com"), vec![1]);
        assert_eq!(
            m("491", "sip:bob@a", "sip:491@other.net"),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn defunct_gateways_are_skipped() {
        let inst = Instance::build(
            vec![gw(1, "10.0.0.1"), gw(2, "10.0.0.2")],
            vec![rule(1, "1")],
            vec![(1, t(0, 0, 1)), (1, t(1, 1, 1))],
        );
        inst.gateways[0].defunct_until.store(100, Ordering::Relaxed);
        let now = |n| {
            inst.matching(b"12", b"", b"", n, GwOrdering::PrefixFirst, || 1)
                .iter()
                .map(|m| m.gw)
                .collect::<Vec<_>>()
        };
        assert_eq!(now(99), vec![1]);
        assert_eq!(now(100), vec![0, 1]);
    }

    #[test]
    fn priority_ordering_ignores_prefix_length() {
        let inst = Instance::build(
            vec![gw(1, "10.0.0.1"), gw(2, "10.0.0.2")],
            vec![rule(1, "1"), rule(2, "12")],
            vec![(1, t(0, 0, 1)), (2, t(1, 3, 1))],
        );
        let m = |o| {
            inst.matching(b"123", b"", b"", 0, o, || 1)
                .iter()
                .map(|m| m.gw)
                .collect::<Vec<_>>()
        };
        assert_eq!(m(GwOrdering::PrefixFirst), vec![1, 0]);
        assert_eq!(m(GwOrdering::PriorityOnly), vec![0, 1]);
    }

    #[test]
    fn equal_priority_is_spread_by_weight() {
        let inst = Instance::build(
            vec![gw(1, "10.0.0.1"), gw(2, "10.0.0.2")],
            vec![rule(1, "")],
            vec![(1, t(0, 0, 1)), (1, t(1, 0, 3))],
        );
        // A small xorshift: the same spread as a real random source, reproducibly.
        let mut s = 0x2545_f491_4f6c_dd1d_u64;
        let mut first = [0u32; 2];
        for _ in 0..10_000 {
            let m = inst.matching(b"1", b"", b"", 0, GwOrdering::PrefixFirst, || {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s
            });
            assert_eq!(m.len(), 2);
            first[m[0].gw as usize] += 1;
        }
        // Weights 1 and 3: the weight-3 gateway comes first 5/6 of the time with this
        // randomization (P(w1*u1 > 3*u2) = 1/6).
        let share = f64::from(first[1]) / 10_000.0;
        assert!((0.80..0.87).contains(&share), "{first:?}");
    }

    #[test]
    fn many_prefixes_binary_search() {
        let gws = vec![gw(1, "10.0.0.1")];
        let rules: Vec<RuleRow> = (0..5000u32)
            .map(|i| rule(i + 1, &format!("{}", 10_000 + i * 7)))
            .collect();
        let targets = (0..5000u32).map(|i| (i + 1, t(0, 0, 1))).collect();
        let inst = Instance::build(gws, rules, targets);
        for i in (0..5000u32).step_by(97) {
            let p = format!("{}", 10_000 + i * 7);
            let ids: Vec<u32> = inst
                .rules_for(format!("{p}99").as_bytes())
                .map(|r| r.id)
                .collect();
            assert_eq!(ids, vec![i + 1], "{p}");
        }
        assert_eq!(inst.rules_for(b"10001").count(), 0);
    }

    #[test]
    fn gateway_by_address() {
        let mut g = gw(1, "10.0.0.1");
        g.transport = Some(GwTransport::Tcp);
        let inst = Instance::build(vec![g], vec![], vec![]);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(inst.gateway_at(ip, 0, None).is_some());
        assert!(inst.gateway_at(ip, 5060, Some(GwTransport::Tcp)).is_some());
        assert!(inst.gateway_at(ip, 5061, None).is_none());
        assert!(inst.gateway_at(ip, 0, Some(GwTransport::Udp)).is_none());
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert!(inst.gateway_at(mapped, 0, None).is_some());
    }
}
