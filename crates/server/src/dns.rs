//! Locating SIP servers (RFC 3263 §4): a URI's host name becomes an ordered list of
//! (transport, address, port) to try, through NAPTR, SRV and A/AAAA lookups on
//! hickory's asynchronous resolver. Lookups never run on a worker thread: a caller
//! asks [`Resolver::cached`] first (no I/O) and awaits [`Resolver::resolve`] on the
//! runtime when the answer is not known yet.
//!
//! Two caches: hickory's, per record set, honouring each record's TTL; and ours, per
//! question, holding the finished target list until the shortest TTL among the records
//! it was built from runs out. Ours is what lets the forwarding path decide without
//! awaiting anything once a destination was resolved.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferrosip_api::{FnError, Proto};
use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, Protocol, ResolverConfig, ResolverOpts,
};
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioAsyncResolver;

/// Questions whose answers our cache keeps at most: a flood of requests to random host
/// names cannot grow it further (hickory's own cache is bounded by `cache_size`).
const MAX_CACHED_QUESTIONS: usize = 4096;
/// Targets one question yields at most (SRV targets times addresses).
const MAX_TARGETS: usize = 16;
/// SRV targets followed per SRV name at most.
const MAX_SRV_TARGETS: usize = 8;

/// The core parameters that shape resolution, Kamailio's names and defaults.
#[derive(Clone, Debug)]
pub struct DnsSettings {
    /// `dns_try_naptr` (default off, as Kamailio): look up NAPTR records first for a URI
    /// with neither port nor `transport=`.
    pub try_naptr: bool,
    /// `dns_srv_lb` (default off): among SRV records of one priority, pick by weight at
    /// random (RFC 2782) instead of heaviest first.
    pub srv_lb: bool,
    /// `use_dns_cache` (default on): keep answers for their TTL. Off, every next hop
    /// with a host name is looked up anew.
    pub use_cache: bool,
    /// `use_dns_failover` (default off): a stateful branch whose target times out, fails
    /// to send or answers 503 is tried again on the next target of its DNS answer.
    pub use_failover: bool,
    /// `dns_try_ipv6` (default on): AAAA records are looked up after A records.
    pub try_ipv6: bool,
    /// `dns_retr_time` (seconds, default 2): how long one query waits for an answer.
    pub retr_time: Duration,
    /// `dns_retr_no` (default 2): how many times a query is sent.
    pub retr_no: usize,
    /// `dns_cache_max_ttl`: an answer is kept at most this long, whatever its TTL.
    pub max_ttl: Option<Duration>,
    /// `dns_cache_min_ttl`: an answer is kept at least this long.
    pub min_ttl: Option<Duration>,
    /// `dns_cache_negative_ttl` (default 60 s): how long "no such name" is kept.
    pub negative_ttl: Duration,
    /// `dns_nameserver` (Ferrosip's own, `IP[:port]`, repeatable): the servers to ask
    /// instead of those of /etc/resolv.conf.
    pub nameservers: Vec<SocketAddr>,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            try_naptr: false,
            srv_lb: false,
            use_cache: true,
            use_failover: false,
            try_ipv6: true,
            retr_time: Duration::from_secs(2),
            retr_no: 2,
            max_ttl: None,
            min_ttl: None,
            negative_ttl: Duration::from_secs(60),
            nameservers: Vec::new(),
        }
    }
}

/// Host names (lower case) to their addresses, standing in for DNS (`ferrosip test`'s
/// `[dns]` table): a name not in it does not resolve.
pub type DnsTable = Arc<HashMap<String, Vec<IpAddr>>>;

/// What a next hop's URI says about where it goes (RFC 3263 §4.1, §4.2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Question {
    /// The host name, lower case, without brackets.
    pub host: String,
    /// The URI's port, when it has one: then no NAPTR or SRV is looked up.
    pub port: Option<u16>,
    /// The URI's `transport=` (or the one a target gave): no NAPTR then.
    pub proto: Option<Proto>,
    /// A `sips:` URI: TLS only.
    pub sips: bool,
}

/// One place to send to: a resolved transport and address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Destination {
    pub proto: Proto,
    pub addr: SocketAddr,
}

/// The resolved list, in the order to try it.
pub type Destinations = Arc<[Destination]>;

struct Cached {
    until: Instant,
    answer: Result<Destinations, String>,
}

enum Backend {
    Dns(Box<TokioAsyncResolver>),
    Table(DnsTable),
}

/// The server's resolver: RFC 3263 over hickory, with the answers cache of this module.
pub struct Resolver {
    backend: Backend,
    settings: DnsSettings,
    /// The transports the server can send over: NAPTR and SRV records of others are
    /// skipped (RFC 3263 §4.1).
    supported: Vec<Proto>,
    cache: Mutex<HashMap<Question, Cached>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn default_port(proto: Proto, sips: bool) -> u16 {
    if sips || matches!(proto, Proto::Tls | Proto::Wss) {
        5061
    } else {
        5060
    }
}

/// The NAPTR service field of a transport (RFC 3263 §4.1, RFC 7118 for WebSocket).
fn naptr_proto(service: &[u8]) -> Option<(Proto, bool)> {
    match service.to_ascii_uppercase().as_slice() {
        b"SIP+D2U" => Some((Proto::Udp, false)),
        b"SIP+D2T" => Some((Proto::Tcp, false)),
        b"SIPS+D2T" => Some((Proto::Tls, true)),
        b"SIP+D2W" => Some((Proto::Ws, false)),
        b"SIPS+D2W" => Some((Proto::Wss, true)),
        _ => None,
    }
}

/// The SRV owner name prefix for a transport (RFC 3263 §4.1).
fn srv_prefix(proto: Proto, sips: bool) -> &'static str {
    match (proto, sips) {
        (Proto::Udp, _) => "_sip._udp.",
        (Proto::Tls, _) | (Proto::Tcp, true) => "_sips._tcp.",
        (Proto::Wss, _) | (Proto::Ws, true) => "_sips._ws.",
        (Proto::Ws, false) => "_sip._ws.",
        _ => "_sip._tcp.",
    }
}

/// One SRV record as read.
#[derive(Clone, Debug)]
struct Srv {
    priority: u16,
    weight: u16,
    port: u16,
    target: String,
}

/// Orders SRV records (RFC 2782): by priority, lowest first; within one priority by
/// weight, either heaviest first or (load balancing) drawn at random in proportion to
/// the weights.
fn order_srv(mut records: Vec<Srv>, load_balance: bool) -> Vec<Srv> {
    records.sort_by(|a, b| a.priority.cmp(&b.priority).then(b.weight.cmp(&a.weight)));
    if !load_balance {
        return records;
    }
    let mut out = Vec::with_capacity(records.len());
    let mut rest = records.as_slice();
    while let Some(first) = rest.first() {
        let same = rest
            .iter()
            .take_while(|r| r.priority == first.priority)
            .count();
        let mut group: Vec<Srv> = rest[..same].to_vec();
        rest = &rest[same..];
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let pick = if total == 0 {
                0
            } else {
                let mut roll = random_below(total + 1);
                group
                    .iter()
                    .position(|r| {
                        if roll <= u32::from(r.weight) {
                            true
                        } else {
                            roll -= u32::from(r.weight);
                            false
                        }
                    })
                    .unwrap_or(0)
            };
            out.push(group.remove(pick));
        }
    }
    out
}

fn random_below(n: u32) -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = foldhash::fast::RandomState::default().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    (h.finish() % u64::from(n.max(1))) as u32
}

/// Whether `host` is an IP address literal (IPv6 with or without brackets).
pub fn ip_literal(host: &[u8]) -> Option<IpAddr> {
    let host = host.strip_prefix(b"[").unwrap_or(host);
    let host = host.strip_suffix(b"]").unwrap_or(host);
    if let Some(v4) = plain_ipv4(host) {
        return Some(IpAddr::V4(v4));
    }
    std::str::from_utf8(host).ok()?.parse().ok()
}

/// Dotted-quad IPv4 in its usual form (no leading zeros), read without the UTF-8 check
/// and the generic address parser: the hosts of nearly every Via and URI a proxy reads.
/// `None` for anything else, which the caller hands to the standard parser.
fn plain_ipv4(host: &[u8]) -> Option<std::net::Ipv4Addr> {
    if !(7..=15).contains(&host.len()) {
        return None;
    }
    let mut octets = [0u8; 4];
    let (mut index, mut value, mut digits) = (0usize, 0u16, 0u8);
    for &c in host {
        match c {
            b'0'..=b'9' if digits < 3 && !(digits == 1 && value == 0) => {
                value = value * 10 + u16::from(c - b'0');
                digits += 1;
            }
            b'.' if digits > 0 && index < 3 => {
                octets[index] = u8::try_from(value).ok()?;
                (index, value, digits) = (index + 1, 0, 0);
            }
            _ => return None,
        }
    }
    if digits == 0 || index != 3 {
        return None;
    }
    octets[3] = u8::try_from(value).ok()?;
    Some(std::net::Ipv4Addr::from(octets))
}

fn resolve_err(host: &str, e: impl std::fmt::Display) -> String {
    format!("cannot resolve {host}: {e}")
}

impl Resolver {
    /// A resolver asking the configured name servers, else those of /etc/resolv.conf.
    /// `supported`: the transports the server has sockets for.
    pub fn new(settings: DnsSettings, supported: Vec<Proto>) -> Result<Resolver, String> {
        let (config, mut opts) = if settings.nameservers.is_empty() {
            hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| format!("cannot read the system's DNS settings: {e}"))?
        } else {
            let mut config = ResolverConfig::new();
            for ns in &settings.nameservers {
                config.add_name_server(NameServerConfig::new(*ns, Protocol::Udp));
                // A truncated answer is asked again over TCP (RFC 7766).
                config.add_name_server(NameServerConfig::new(*ns, Protocol::Tcp));
            }
            (config, ResolverOpts::default())
        };
        opts.timeout = settings.retr_time;
        opts.attempts = settings.retr_no.max(1);
        opts.cache_size = if settings.use_cache { 1024 } else { 0 };
        opts.positive_max_ttl = settings.max_ttl;
        opts.positive_min_ttl = settings.min_ttl;
        opts.negative_max_ttl = Some(settings.negative_ttl);
        opts.ip_strategy = if settings.try_ipv6 {
            LookupIpStrategy::Ipv4thenIpv6
        } else {
            LookupIpStrategy::Ipv4Only
        };
        opts.use_hosts_file = settings.nameservers.is_empty();
        Ok(Resolver {
            backend: Backend::Dns(Box::new(TokioAsyncResolver::tokio(config, opts))),
            settings,
            supported,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// A resolver answering from `table` only (script tests).
    pub fn from_table(table: DnsTable, supported: Vec<Proto>) -> Resolver {
        Resolver {
            backend: Backend::Table(table),
            settings: DnsSettings::default(),
            supported,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &DnsSettings {
        &self.settings
    }

    /// The answer to `q` when it is known without asking anyone: an answer from the
    /// table, or one cached and not expired. `None`: [`Resolver::resolve`] must be awaited.
    pub fn cached(&self, q: &Question) -> Option<Result<Destinations, FnError>> {
        match &self.backend {
            Backend::Table(t) => Some(self.table_answer(t, q)),
            Backend::Dns(_) => {
                let cache = lock(&self.cache);
                let c = cache.get(q)?;
                (c.until > Instant::now()).then(|| c.answer.clone().map_err(FnError::new))
            }
        }
    }

    fn table_answer(&self, table: &DnsTable, q: &Question) -> Result<Destinations, FnError> {
        let proto = self.plain_proto(q);
        let port = q.port.unwrap_or(default_port(proto, q.sips));
        let ips = table
            .get(&q.host)
            .filter(|ips| !ips.is_empty())
            .ok_or_else(|| {
                FnError::new(format!("cannot resolve {}: not in the DNS table", q.host))
            })?;
        Ok(ips
            .iter()
            .map(|ip| Destination {
                proto,
                addr: SocketAddr::new(*ip, port),
            })
            .collect())
    }

    /// The transport when DNS says nothing about it: the URI's, else TLS for sips,
    /// else UDP (RFC 3263 §4.1).
    fn plain_proto(&self, q: &Question) -> Proto {
        match q.proto {
            Some(p) => p,
            None if q.sips => Proto::Tls,
            None => Proto::Udp,
        }
    }

    /// Resolves `q` (RFC 3263 §4), keeping the answer for its TTL.
    pub async fn resolve(&self, q: &Question) -> Result<Destinations, FnError> {
        if let Some(known) = self.cached(q) {
            return known;
        }
        let Backend::Dns(dns) = &self.backend else {
            return Err(FnError::new("no resolver"));
        };
        let (answer, until) = match self.locate(dns, q).await {
            Ok((list, until)) if !list.is_empty() => (Ok(Destinations::from(list)), until),
            Ok(_) => (
                Err(resolve_err(&q.host, "no address")),
                Instant::now() + self.settings.negative_ttl,
            ),
            Err(e) => (Err(e), Instant::now() + self.settings.negative_ttl),
        };
        if self.settings.use_cache {
            let mut cache = lock(&self.cache);
            if cache.len() >= MAX_CACHED_QUESTIONS {
                let now = Instant::now();
                cache.retain(|_, c| c.until > now);
                if cache.len() >= MAX_CACHED_QUESTIONS {
                    cache.clear();
                }
            }
            cache.insert(
                q.clone(),
                Cached {
                    until,
                    answer: answer.clone(),
                },
            );
        }
        answer.map_err(FnError::new)
    }

    /// NAPTR, SRV, A/AAAA as §4.1/§4.2 say for this URI; the list and until when it holds.
    async fn locate(
        &self,
        dns: &TokioAsyncResolver,
        q: &Question,
    ) -> Result<(Vec<Destination>, Instant), String> {
        let mut until =
            Instant::now() + self.settings.max_ttl.unwrap_or(Duration::from_secs(86400));
        let mut out = Vec::new();
        if let Some(port) = q.port {
            // A port: A/AAAA only (§4.2), on the URI's transport.
            let proto = self.plain_proto(q);
            self.addresses(dns, &q.host, port, proto, &mut out, &mut until)
                .await?;
            return Ok((out, until));
        }
        // SRV names to ask, in order, each with its transport.
        let mut srv_names: Vec<(String, Proto)> = Vec::new();
        if q.proto.is_none() && self.settings.try_naptr {
            srv_names = self.naptr(dns, q, &mut until).await;
        }
        if srv_names.is_empty() {
            let protos: Vec<Proto> = match q.proto {
                Some(p) => vec![if q.sips { secure(p) } else { p }],
                None if q.sips => vec![Proto::Tls],
                // §4.1: without NAPTR, SRV for each transport we support; UDP first.
                None => vec![Proto::Udp, Proto::Tcp, Proto::Tls],
            };
            for p in protos {
                if self.supported.contains(&p) || q.proto.is_some() {
                    srv_names.push((format!("{}{}", srv_prefix(p, q.sips), q.host), p));
                }
            }
        }
        for (name, proto) in &srv_names {
            let records = match dns.srv_lookup(name.as_str()).await {
                Ok(l) => {
                    until = until.min(l.as_lookup().valid_until());
                    l.iter()
                        .map(|s| Srv {
                            priority: s.priority(),
                            weight: s.weight(),
                            port: s.port(),
                            target: s.target().to_ascii(),
                        })
                        .collect::<Vec<_>>()
                }
                Err(e) => {
                    tracing::debug!(name, "no SRV: {e}");
                    continue;
                }
            };
            if records.is_empty() {
                continue;
            }
            for srv in order_srv(records, self.settings.srv_lb)
                .into_iter()
                .take(MAX_SRV_TARGETS)
            {
                // "." as target: the service is decidedly not offered there (RFC 2782).
                if srv.target == "." || srv.target.is_empty() {
                    continue;
                }
                if let Err(e) = self
                    .addresses(dns, &srv.target, srv.port, *proto, &mut out, &mut until)
                    .await
                {
                    tracing::debug!(target = srv.target, "SRV target without address: {e}");
                }
                if out.len() >= MAX_TARGETS {
                    break;
                }
            }
            if !out.is_empty() {
                // §4.1: the first SRV name that has records decides; no mixing.
                return Ok((out, until));
            }
        }
        // No SRV: A/AAAA of the host itself on the default port.
        let proto = self.plain_proto(q);
        let proto = if q.sips { secure(proto) } else { proto };
        self.addresses(
            dns,
            &q.host,
            default_port(proto, q.sips),
            proto,
            &mut out,
            &mut until,
        )
        .await?;
        Ok((out, until))
    }

    /// NAPTR records of the host, for transports we support, in order and preference
    /// (§4.1): the SRV names they lead to.
    async fn naptr(
        &self,
        dns: &TokioAsyncResolver,
        q: &Question,
        until: &mut Instant,
    ) -> Vec<(String, Proto)> {
        let lookup = match dns.lookup(q.host.as_str(), RecordType::NAPTR).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(host = q.host, "no NAPTR: {e}");
                return Vec::new();
            }
        };
        *until = (*until).min(lookup.valid_until());
        let mut found: Vec<(u16, u16, String, Proto)> = lookup
            .record_iter()
            .filter_map(|r| match r.data() {
                Some(RData::NAPTR(n)) => {
                    // Only "s" records lead to SRV names; others are not for us here.
                    if !n.flags().eq_ignore_ascii_case(b"s") {
                        return None;
                    }
                    let (proto, secure) = naptr_proto(n.services())?;
                    if (q.sips && !secure) || !self.supported.contains(&proto) {
                        return None;
                    }
                    Some((n.order(), n.preference(), n.replacement().to_ascii(), proto))
                }
                _ => None,
            })
            .collect();
        found.sort_by_key(|a| (a.0, a.1));
        found.truncate(MAX_SRV_TARGETS);
        found
            .into_iter()
            .map(|(_, _, name, proto)| (name, proto))
            .collect()
    }

    async fn addresses(
        &self,
        dns: &TokioAsyncResolver,
        host: &str,
        port: u16,
        proto: Proto,
        out: &mut Vec<Destination>,
        until: &mut Instant,
    ) -> Result<(), String> {
        if let Some(ip) = ip_literal(host.as_bytes()) {
            out.push(Destination {
                proto,
                addr: SocketAddr::new(ip, port),
            });
            return Ok(());
        }
        let ips = dns
            .lookup_ip(host)
            .await
            .map_err(|e| resolve_err(host, e))?;
        *until = (*until).min(ips.valid_until());
        for ip in ips.iter() {
            if out.len() >= MAX_TARGETS {
                break;
            }
            out.push(Destination {
                proto,
                addr: SocketAddr::new(ip, port),
            });
        }
        Ok(())
    }
}

/// The secure transport of a sips: URI (RFC 5630 §3.1.3).
fn secure(proto: Proto) -> Proto {
    match proto {
        Proto::Ws | Proto::Wss => Proto::Wss,
        _ => Proto::Tls,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port: 5060,
            target: target.into(),
        }
    }

    #[test]
    fn the_ipv4_fast_path_agrees_with_the_standard_parser() {
        let mut cases: Vec<String> = [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "256.0.0.1",
            "1.2.3",
            "1.2.3.4.5",
            "01.2.3.4",
            "1.2.3.04",
            "1..2.3",
            ".1.2.3",
            "1.2.3.",
            "1.2.3.4 ",
            "a.b.c.d",
            "1.2.3.4a",
            "1000.1.1.1",
            "::1",
            "::ffff:1.2.3.4",
            "example.com",
            "",
            "1.2.3.-4",
            "+1.2.3.4",
            "999.999.999.999",
            "0.00.0.0",
        ]
        .map(String::from)
        .to_vec();
        // Every octet text from "" to "999" and the leading-zero forms, in each position.
        for n in 0..1000 {
            for text in [n.to_string(), format!("0{n}"), format!("00{n}")] {
                cases.push(format!("{text}.1.2.3"));
                cases.push(format!("1.2.3.{text}"));
            }
        }
        for case in &cases {
            let std = case.parse::<IpAddr>().ok();
            assert_eq!(ip_literal(case.as_bytes()), std, "{case:?}");
            if let Some(fast) = plain_ipv4(case.as_bytes()) {
                assert_eq!(Some(IpAddr::V4(fast)), std, "{case:?}");
            }
        }
        assert!(plain_ipv4(b"127.0.0.1").is_some());
    }

    #[test]
    fn srv_records_go_by_priority_then_weight() {
        let ordered = order_srv(
            vec![srv(20, 5, "c"), srv(10, 1, "b"), srv(10, 9, "a")],
            false,
        );
        let names: Vec<&str> = ordered.iter().map(|s| s.target.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn load_balancing_keeps_priorities_apart() {
        for _ in 0..50 {
            let ordered = order_srv(
                vec![
                    srv(20, 5, "c"),
                    srv(10, 1, "b"),
                    srv(10, 9, "a"),
                    srv(10, 0, "z"),
                ],
                true,
            );
            assert_eq!(ordered.len(), 4);
            assert_eq!(ordered[3].target, "c");
        }
    }

    #[test]
    fn naptr_services_map_to_transports() {
        assert_eq!(naptr_proto(b"SIP+D2U"), Some((Proto::Udp, false)));
        assert_eq!(naptr_proto(b"sips+d2t"), Some((Proto::Tls, true)));
        assert_eq!(naptr_proto(b"E2U+sip"), None);
        assert_eq!(srv_prefix(Proto::Tls, true), "_sips._tcp.");
        assert_eq!(srv_prefix(Proto::Udp, false), "_sip._udp.");
    }
}
