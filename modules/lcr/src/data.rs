//! The in-memory LCR tables of one load: gateways, rules with their targets, and the prefix
//! index, per LCR instance. A snapshot is immutable once built (only the gateways' defunct
//! times change) and is swapped as a whole on reload, so a lookup sees one consistent load.

use regex::bytes::Regex;
use smallvec::SmallVec;
use std::collections::HashMap;
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
    /// 1-254, as the loader checks.
    pub weight: u8,
}

/// One enabled `lcr_rule` row with its targets: a small fixed-size record, no heap. Its
/// prefix lives in the instance's prefix index and its regexes in the instance's shared
/// filter table (a million rules usually share a handful of patterns, or none).
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    pub id: u32,
    /// Range into the instance's targets.
    pub targets: (u32, u32),
    /// Index into `Instance::filters`; 0 is the filter without regexes.
    pub filter: u32,
    pub prefix_len: u16,
    pub stopper: bool,
}

/// The From URI and Request-URI regexes of rules (either may be absent).
#[derive(Debug, Default)]
pub struct Filter {
    pub from_uri: Option<Regex>,
    pub request_uri: Option<Regex>,
}

/// A rule as read from the database, before indexing (tests and small loads; the
/// database loader feeds an [`InstanceBuilder`] row by row instead).
#[derive(Debug)]
pub struct RuleRow {
    pub id: u32,
    pub prefix: String,
    pub from_uri: Option<Regex>,
    pub request_uri: Option<Regex>,
    pub stopper: bool,
}

/// The keys of one prefix length, sorted.
#[derive(Debug)]
enum Keys {
    /// Every prefix of this length is made of digits and they are at least a quarter of
    /// the 10^len numbers of that length (the short prefixes of a rate deck: country and
    /// area codes): the table's `starts` is indexed by the number itself, so a lookup is
    /// one read, and costs at most 16 bytes per key where the sorted form costs 13.
    Dense,
    /// Every prefix of this length is made of digits and fits in a u64 (up to 19
    /// digits, as telephone prefixes do): its number, with a bucket index over the
    /// number range so a lookup touches a cache line or two instead of a binary search
    /// over the whole table.
    Digits {
        values: Vec<u64>,
        /// `buckets[b]..buckets[b + 1]`: the values whose bucket is `b`.
        buckets: Vec<u32>,
        /// bucket(v) = (v * scale) >> 64.
        scale: u128,
    },
    /// Any other prefixes: `len` bytes each, laid end to end.
    Bytes(Vec<u8>),
}

/// Rules whose prefixes all have one length, sorted by prefix.
#[derive(Debug)]
struct LengthTable {
    len: usize,
    keys: Keys,
    /// `starts[i]..starts[i + 1]`: the rules (indexes into `Instance::rules`) of key `i`.
    starts: Vec<u32>,
}

/// The longest all-digit prefix kept as a number (10^19 < 2^64).
const MAX_NUMERIC_LEN: usize = 19;
/// The longest length that may be indexed densely (10^9 + 1 starts would be 4 GB: only a
/// table of 250 million keys qualifies).
const MAX_DENSE_LEN: usize = 9;

impl LengthTable {
    fn key_count(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    fn rules_of(&self, i: usize) -> std::ops::Range<usize> {
        self.starts[i] as usize..self.starts[i + 1] as usize
    }

    /// Turns byte keys into numbers when they are all digits.
    fn from_bytes(len: usize, bytes: Vec<u8>, starts: Vec<u32>) -> LengthTable {
        let numeric = len <= MAX_NUMERIC_LEN && bytes.iter().all(u8::is_ascii_digit);
        if !numeric {
            return LengthTable {
                len,
                keys: Keys::Bytes(bytes),
                starts,
            };
        }
        let values: Vec<u64> = if len == 0 {
            vec![0; starts.len().saturating_sub(1)]
        } else {
            bytes.chunks(len).map(digits_value).collect()
        };
        drop(bytes);
        let range = 10u128.pow(len as u32);
        let n = values.len();
        if len <= MAX_DENSE_LEN && range <= 4 * n as u128 {
            // dense[v] = the start of the first key >= v: key v's rules are
            // dense[v]..dense[v + 1], an empty range for a number without a key.
            let mut dense = Vec::with_capacity(range as usize + 1);
            let mut k = 0;
            for v in 0..=range as u64 {
                while k < n && values[k] < v {
                    k += 1;
                }
                dense.push(starts[k]);
            }
            return LengthTable {
                len,
                keys: Keys::Dense,
                starts: dense,
            };
        }
        let nb = ((n / 4).max(1).next_power_of_two() as u128).min(range);
        let scale = (nb << 64) / range;
        let mut buckets = Vec::with_capacity(nb as usize + 1);
        let mut i = 0;
        for b in 0..nb as usize {
            while i < n && bucket_of(values[i], scale) < b {
                i += 1;
            }
            buckets.push(i as u32);
        }
        buckets.push(n as u32);
        LengthTable {
            len,
            keys: Keys::Digits {
                values,
                buckets,
                scale,
            },
            starts,
        }
    }

    /// The rules of the key that `user` starts with; `numbers[k]` is the number of the
    /// user's first k characters when they are all digits (k < `digit_run`).
    fn find(
        &self,
        user: &[u8],
        numbers: &[u64; MAX_NUMERIC_LEN + 1],
        digit_run: usize,
    ) -> Option<std::ops::Range<usize>> {
        match &self.keys {
            Keys::Dense => {
                if self.len > digit_run {
                    return None;
                }
                let rules = self.rules_of(numbers[self.len] as usize);
                (!rules.is_empty()).then_some(rules)
            }
            Keys::Digits {
                values,
                buckets,
                scale,
            } => {
                if self.len > digit_run {
                    return None;
                }
                let key = numbers[self.len];
                let b = bucket_of(key, *scale);
                let (lo, hi) = (buckets[b] as usize, buckets[b + 1] as usize);
                let i = lo + values[lo..hi].binary_search(&key).ok()?;
                Some(self.rules_of(i))
            }
            Keys::Bytes(keys) => {
                let key = &user[..self.len];
                let (mut lo, mut hi) = (0usize, self.key_count());
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    let k = &keys[mid * self.len..(mid + 1) * self.len];
                    match k.cmp(key) {
                        std::cmp::Ordering::Less => lo = mid + 1,
                        std::cmp::Ordering::Greater => hi = mid,
                        std::cmp::Ordering::Equal => return Some(self.rules_of(mid)),
                    }
                }
                None
            }
        }
    }

    /// The prefix of key `i`.
    fn key(&self, i: usize) -> Vec<u8> {
        match &self.keys {
            Keys::Digits { .. } | Keys::Dense if self.len == 0 => Vec::new(),
            Keys::Dense => format!("{i:0width$}", width = self.len).into_bytes(),
            Keys::Digits { values, .. } => {
                format!("{:0width$}", values[i], width = self.len).into_bytes()
            }
            Keys::Bytes(keys) => keys[i * self.len..(i + 1) * self.len].to_vec(),
        }
    }
}

fn bucket_of(value: u64, scale: u128) -> usize {
    ((u128::from(value) * scale) >> 64) as usize
}

/// The number an all-digit string spells (at most 19 digits).
fn digits_value(digits: &[u8]) -> u64 {
    digits
        .iter()
        .fold(0u64, |v, d| v * 10 + u64::from(d - b'0'))
}

/// One LCR instance (`lcr_id`).
#[derive(Debug, Default)]
pub struct Instance {
    pub gateways: Vec<Gateway>,
    /// Sorted by (prefix length descending, prefix, rule id).
    pub rules: Vec<Rule>,
    pub targets: Vec<Target>,
    /// The rules' regexes, each distinct pair once; index 0 has none.
    pub filters: Vec<Filter>,
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

/// A rule waiting for the build: its prefix is a slice of the builder's arena.
#[derive(Clone, Copy, Debug)]
struct PendingRule {
    id: u32,
    prefix_at: u32,
    prefix_len: u16,
    stopper: bool,
    filter: u32,
}

/// Collects one instance's rules and targets as the database hands them out, each in a
/// fixed-size record (prefixes in one shared byte arena, regexes compiled once per
/// distinct pattern), then sorts and indexes them in [`InstanceBuilder::finish`].
#[derive(Debug)]
pub struct InstanceBuilder {
    rules: Vec<PendingRule>,
    prefixes: Vec<u8>,
    filters: Vec<Filter>,
    filter_ids: HashMap<(Box<str>, Box<str>), u32>,
    targets: Vec<(u32, Target)>,
}

impl Default for InstanceBuilder {
    fn default() -> Self {
        InstanceBuilder {
            rules: Vec::new(),
            prefixes: Vec::new(),
            filters: vec![Filter::default()],
            filter_ids: HashMap::from([((Box::from(""), Box::from("")), 0)]),
            targets: Vec::new(),
        }
    }
}

impl InstanceBuilder {
    /// Adds an enabled rule; empty patterns mean "no regex". A pattern that does not
    /// compile is an error naming the rule.
    pub fn add_rule(
        &mut self,
        id: u32,
        prefix: &[u8],
        from_uri: &str,
        request_uri: &str,
        stopper: bool,
    ) -> Result<(), String> {
        let filter = match self
            .filter_ids
            .get(&(Box::from(from_uri), Box::from(request_uri)))
        {
            Some(&f) => f,
            None => {
                let compile = |pattern: &str, what: &str| -> Result<Option<Regex>, String> {
                    if pattern.is_empty() {
                        return Ok(None);
                    }
                    Regex::new(pattern)
                        .map(Some)
                        .map_err(|e| format!("lcr rule {id}: {what} regex '{pattern}': {e}"))
                };
                let f = Filter {
                    from_uri: compile(from_uri, "from_uri")?,
                    request_uri: compile(request_uri, "request_uri")?,
                };
                self.intern(from_uri, request_uri, f)
            }
        };
        self.push_rule(id, prefix, stopper, filter)
    }

    /// Adds a rule whose regexes are already compiled.
    pub fn add_rule_row(&mut self, r: RuleRow) -> Result<(), String> {
        let pattern = |re: &Option<Regex>| re.as_ref().map_or("", Regex::as_str).to_string();
        let (from, ruri) = (pattern(&r.from_uri), pattern(&r.request_uri));
        let filter = match self
            .filter_ids
            .get(&(Box::from(from.as_str()), Box::from(ruri.as_str())))
        {
            Some(&f) => f,
            None => self.intern(
                &from,
                &ruri,
                Filter {
                    from_uri: r.from_uri,
                    request_uri: r.request_uri,
                },
            ),
        };
        self.push_rule(r.id, r.prefix.as_bytes(), r.stopper, filter)
    }

    fn intern(&mut self, from_uri: &str, request_uri: &str, f: Filter) -> u32 {
        let id = self.filters.len() as u32;
        self.filters.push(f);
        self.filter_ids
            .insert((Box::from(from_uri), Box::from(request_uri)), id);
        id
    }

    fn push_rule(
        &mut self,
        id: u32,
        prefix: &[u8],
        stopper: bool,
        filter: u32,
    ) -> Result<(), String> {
        let prefix_len = u16::try_from(prefix.len()).map_err(|_| {
            format!(
                "lcr rule {id}: prefix of {} bytes is too long",
                prefix.len()
            )
        })?;
        let prefix_at = u32::try_from(self.prefixes.len())
            .map_err(|_| "lcr: more than 4 GiB of rule prefixes".to_string())?;
        self.prefixes.extend_from_slice(prefix);
        self.rules.push(PendingRule {
            id,
            prefix_at,
            prefix_len,
            stopper,
            filter,
        });
        Ok(())
    }

    /// Adds a target of rule `rule_id` (one of a rule not added is dropped at the build).
    pub fn add_target(&mut self, rule_id: u32, target: Target) {
        self.targets.push((rule_id, target));
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Sorts and indexes the rules: targets of rules that are not loaded (disabled) are
    /// dropped, as Kamailio skips them.
    pub fn finish(self, gateways: Vec<Gateway>) -> Instance {
        let InstanceBuilder {
            mut rules,
            prefixes,
            filters,
            mut targets,
            ..
        } = self;
        let prefix_of = |r: &PendingRule| {
            &prefixes[r.prefix_at as usize..r.prefix_at as usize + r.prefix_len as usize]
        };
        rules.sort_unstable_by(|a, b| {
            b.prefix_len
                .cmp(&a.prefix_len)
                .then_with(|| prefix_of(a).cmp(prefix_of(b)))
                .then(a.id.cmp(&b.id))
        });
        targets.sort_unstable_by_key(|(rule, t)| (*rule, t.priority, t.gw));
        let gw_without_ip = gateways.iter().any(|g| g.ip.is_none());
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
        drop(by_id);
        drop(targets);
        kept.shrink_to_fit();

        let mut lengths = Vec::new();
        let mut out_rules = Vec::with_capacity(rules.len());
        let mut i = 0;
        while i < rules.len() {
            let len = rules[i].prefix_len as usize;
            let mut keys: Vec<u8> = Vec::new();
            let mut starts: Vec<u32> = Vec::new();
            while i < rules.len() && rules[i].prefix_len as usize == len {
                let r = rules[i];
                let prefix = prefix_of(&r);
                let n = starts.len();
                if n == 0 || keys[(n - 1) * len..] != *prefix {
                    keys.extend_from_slice(prefix);
                    starts.push(i as u32);
                }
                out_rules.push(Rule {
                    id: r.id,
                    targets: ranges[i],
                    filter: r.filter,
                    prefix_len: r.prefix_len,
                    stopper: r.stopper,
                });
                i += 1;
            }
            starts.push(i as u32);
            starts.shrink_to_fit();
            lengths.push(LengthTable::from_bytes(len, keys, starts));
        }
        Instance {
            gateways,
            rules: out_rules,
            targets: kept,
            filters,
            lengths,
            gw_without_ip,
        }
    }
}

impl Instance {
    /// Builds an instance: `targets` are `(rule_id, target)` pairs; targets of rules that
    /// are not loaded (disabled) are dropped, as Kamailio skips them.
    pub fn build(
        gateways: Vec<Gateway>,
        rules: Vec<RuleRow>,
        targets: Vec<(u32, Target)>,
    ) -> Instance {
        let mut b = InstanceBuilder::default();
        for r in rules {
            // A prefix of 64 KiB or more cannot come from a test's rows.
            b.add_rule_row(r).expect("a prefix shorter than 64 KiB");
        }
        for (rule, t) in targets {
            b.add_target(rule, t);
        }
        b.finish(gateways)
    }

    /// The regexes of a rule.
    pub fn filter(&self, rule: &Rule) -> &Filter {
        &self.filters[rule.filter as usize]
    }

    /// The rules whose prefix is a prefix of `user`, longest prefix first.
    pub fn rules_for<'a>(&'a self, user: &'a [u8]) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rule_ranges(user)
            .into_iter()
            .flat_map(move |r| self.rules[r].iter())
    }

    /// The ranges of `rules` whose prefix is a prefix of `user`, longest prefix first.
    /// Every length is looked up before any rule is read, so the table reads of the
    /// different lengths are independent and overlap.
    fn rule_ranges(&self, user: &[u8]) -> SmallVec<[std::ops::Range<usize>; 8]> {
        let mut numbers = [0u64; MAX_NUMERIC_LEN + 1];
        let mut digit_run = 0;
        while digit_run < MAX_NUMERIC_LEN
            && digit_run < user.len()
            && user[digit_run].is_ascii_digit()
        {
            numbers[digit_run + 1] = numbers[digit_run] * 10 + u64::from(user[digit_run] - b'0');
            digit_run += 1;
        }
        self.lengths
            .iter()
            .filter(|t| t.len <= user.len())
            .filter_map(|t| t.find(user, &numbers, digit_run))
            .collect()
    }

    /// Every rule with its prefix, in the rules' order (for dumps).
    pub fn rules_with_prefixes(&self) -> impl Iterator<Item = (Vec<u8>, &Rule)> + '_ {
        self.lengths.iter().flat_map(move |t| {
            (0..t.key_count()).flat_map(move |i| {
                let prefix = t.key(i);
                self.rules[t.rules_of(i)]
                    .iter()
                    .map(move |r| (prefix.clone(), r))
            })
        })
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
        let ranges = self.rule_ranges(user);
        // Each matching rule and its first target are read once before the rules are
        // walked: in a large table each is a cache miss, and these reads do not depend
        // on one another, so the misses overlap instead of following one another.
        let mut touched = 0u32;
        for r in &ranges {
            for rule in &self.rules[r.clone()] {
                if let Some(t) = self.targets.get(rule.targets.0 as usize) {
                    touched ^= t.gw;
                }
            }
        }
        std::hint::black_box(touched);
        let mut out = Vec::with_capacity(16);
        for rule in ranges.into_iter().flat_map(|r| self.rules[r].iter()) {
            let filter = self.filter(rule);
            if let Some(re) = &filter.from_uri {
                if !re.is_match(from_uri) {
                    continue;
                }
            }
            if let Some(re) = &filter.request_uri {
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
                    prefix_len: u32::from(rule.prefix_len),
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
        // Keep each gateway's first (best) place; the list is a handful long.
        let mut kept = 0;
        for i in 0..out.len() {
            let m = out[i];
            if !out[..kept].iter().any(|k| k.gw == m.gw) {
                out[kept] = m;
                kept += 1;
            }
        }
        out.truncate(kept);
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

    fn t(gw: u32, priority: u8, weight: u8) -> Target {
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
    fn digit_and_other_prefixes_side_by_side() {
        let gws = vec![gw(1, "10.0.0.1")];
        // "0049" and "049" must stay apart (same number, other lengths), "+49" and "49a"
        // are not all digits, "" matches everything.
        let prefixes = [
            "0049",
            "049",
            "+49",
            "49a",
            "",
            "49",
            "4",
            "9999999999999999999",
        ];
        let rules: Vec<RuleRow> = prefixes
            .iter()
            .enumerate()
            .map(|(i, p)| rule(i as u32 + 1, p))
            .collect();
        let targets = (1..=prefixes.len() as u32)
            .map(|i| (i, t(0, 0, 1)))
            .collect();
        let inst = Instance::build(gws, rules, targets);
        let ids =
            |user: &str| -> Vec<u32> { inst.rules_for(user.as_bytes()).map(|r| r.id).collect() };
        assert_eq!(ids("00491"), vec![1, 5]);
        assert_eq!(ids("0491"), vec![2, 5]);
        assert_eq!(ids("+491"), vec![3, 5]);
        assert_eq!(ids("49a1"), vec![4, 6, 7, 5]);
        assert_eq!(ids("491"), vec![6, 7, 5]);
        assert_eq!(ids("99999999999999999999"), vec![8, 5]);
        assert_eq!(ids("x"), vec![5]);
        let dumped: Vec<(String, u32)> = inst
            .rules_with_prefixes()
            .map(|(p, r)| (String::from_utf8(p).unwrap(), r.id))
            .collect();
        assert_eq!(
            dumped,
            vec![
                ("9999999999999999999".to_string(), 8),
                ("0049".to_string(), 1),
                ("+49".to_string(), 3),
                ("049".to_string(), 2),
                ("49a".to_string(), 4),
                ("49".to_string(), 6),
                ("4".to_string(), 7),
                (String::new(), 5),
            ]
        );
    }

    #[test]
    fn bucket_index_finds_every_key_of_a_dense_table() {
        let gws = vec![gw(1, "10.0.0.1")];
        // Every third 6-digit number from 100000: dense enough for many keys per bucket,
        // with gaps a lookup must not fall into.
        let rules: Vec<RuleRow> = (0..50_000u32)
            .map(|i| rule(i + 1, &(100_000 + i * 3).to_string()))
            .collect();
        let targets = (0..50_000u32).map(|i| (i + 1, t(0, 0, 1))).collect();
        let inst = Instance::build(gws, rules, targets);
        for n in 100_000u32..250_000 {
            let ids: Vec<u32> = inst
                .rules_for(format!("{n}12").as_bytes())
                .map(|r| r.id)
                .collect();
            let want = if (n - 100_000) % 3 == 0 {
                vec![(n - 100_000) / 3 + 1]
            } else {
                vec![]
            };
            assert_eq!(ids, want, "{n}");
        }
        assert_eq!(inst.rules_for(b"099999").count(), 0);
        assert_eq!(inst.rules_for(b"999999").count(), 0);
    }

    #[test]
    fn direct_index_of_a_dense_length() {
        let gws = vec![gw(1, "10.0.0.1")];
        // Every even 3-digit number, "000" and "998" included (half the numbers: indexed
        // directly), "042" twice (two rules of one key), and one 2-digit prefix.
        let mut rules: Vec<RuleRow> = (0..500u32)
            .map(|i| rule(i + 1, &format!("{:03}", i * 2)))
            .collect();
        rules.push(rule(1000, "042"));
        rules.push(rule(2000, "04"));
        let targets = (1..=500u32)
            .chain([1000, 2000])
            .map(|id| (id, t(0, 0, 1)))
            .collect();
        let inst = Instance::build(gws, rules, targets);
        assert!(inst
            .lengths
            .iter()
            .any(|l| l.len == 3 && matches!(l.keys, Keys::Dense)));
        for n in 0u32..1000 {
            let user = format!("{n:03}77");
            let ids: Vec<u32> = inst.rules_for(user.as_bytes()).map(|r| r.id).collect();
            let mut want = Vec::new();
            if n % 2 == 0 {
                want.push(n / 2 + 1);
            }
            if n == 42 {
                want.push(1000);
            }
            if n / 10 == 4 {
                want.push(2000);
            }
            assert_eq!(ids, want, "{user}");
        }
        // Too short for the 3-digit keys, or not digits there.
        assert_eq!(ids_of(&inst, b"04"), [2000]);
        assert_eq!(ids_of(&inst, b"04x"), [2000]);
        let dumped: Vec<(Vec<u8>, u32)> =
            inst.rules_with_prefixes().map(|(p, r)| (p, r.id)).collect();
        assert_eq!(dumped.len(), 502);
        assert!(dumped.contains(&(b"000".to_vec(), 1)));
        assert!(dumped.contains(&(b"042".to_vec(), 1000)));
        assert!(dumped.contains(&(b"998".to_vec(), 500)));
    }

    fn ids_of(inst: &Instance, user: &[u8]) -> Vec<u32> {
        inst.rules_for(user).map(|r| r.id).collect()
    }

    #[test]
    fn shared_regexes_are_compiled_once() {
        let mut b = InstanceBuilder::default();
        for i in 0..100u32 {
            b.add_rule(i + 1, format!("{i}").as_bytes(), "^sip:a@", "", false)
                .unwrap();
        }
        b.add_rule(500, b"1", "", "", false).unwrap();
        let e = b.add_rule(501, b"1", "(", "", false).unwrap_err();
        assert!(e.contains("lcr rule 501") && e.contains("from_uri"), "{e}");
        let inst = b.finish(vec![gw(1, "10.0.0.1")]);
        assert_eq!(
            inst.filters.len(),
            2,
            "the no-regex filter and one shared pair"
        );
        assert_eq!(inst.rules.len(), 101);
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
