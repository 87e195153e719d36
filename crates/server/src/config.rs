//! Server settings read from the config's core parameters (`listen=`, `port=`, `children=`,
//! `disable_tcp=`, `alias=`, `auto_aliases=`, ...).

use crate::myself::Myself;
pub use crate::transport::Listen;
use ferrosip_api::Proto;
use ferrosip_script::ast::GlobalValue;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

/// Everything the runtime needs from the config.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: Vec<Listen>,
    pub children: usize,
    /// `max_branches` (Kamailio's default 12, at most 31): branches per transaction.
    pub max_branches: usize,
    /// `loop_detection` (default on): a request that comes back unchanged through one of
    /// our Vias is answered 482 before the script runs (RFC 3261 §16.3 step 4).
    pub loop_detection: bool,
    /// `onsend_route_reply` (default off): `onsend_route` runs for the replies the proxy
    /// relays too (statelessly or by a transaction), as Kamailio 5's does.
    pub onsend_route_reply: bool,
    /// `max_waiting_routes` (Ferrosip's own, default 10,000): route runs waiting for I/O
    /// (database, DNS, sleep) at most; while that many wait, new requests are answered 503.
    pub max_waiting_routes: u64,
    pub udp_max_size: usize,
    /// Socket buffer size asked for UDP sockets (`maxbuffer`, default 4 MiB).
    pub udp_buffer: usize,
    /// `tcp_max_msg_size`, `tcp_connection_lifetime`, `tcp_max_connections`,
    /// `tcp_conn_wq_max`, `tcp_msg_read_timeout`.
    pub tcp: crate::transport::tcp::TcpLimits,
    /// `enable_tls` (or `tls_disable=no`): TLS sockets are added where a listen= without a
    /// protocol, or no listen= at all, opens UDP and TCP (Kamailio's behaviour).
    pub enable_tls: bool,
    /// `tls_max_connections` (default 2048): open TLS connections at most, apart from
    /// `tcp_max_connections`.
    pub tls_max_connections: usize,
    /// `alias=` entries: host (lower case) and port (`None`: any port).
    pub aliases: Vec<(String, Option<u16>)>,
    /// `auto_aliases` (default on): the listen addresses' reverse-DNS names are ours too.
    pub auto_aliases: bool,
    /// Whether the sockets are the machine's interfaces, found because no `listen=` names
    /// any (Kamailio's behaviour), rather than given.
    pub listen_discovered: bool,
    /// What `myself` matches: built from the above once, at load.
    pub myself: Myself,
    /// How host names are resolved (`dns_*`, `use_dns_*`, `dns_nameserver`).
    pub dns: crate::dns::DnsSettings,
}

#[derive(Debug, thiserror::Error)]
#[error("{param}: {message}")]
pub struct ConfigError {
    pub param: String,
    pub message: String,
}

/// Core parameters as the script loader returns them.
pub type Globals = indexmap::IndexMap<String, Vec<GlobalValue>>;

/// Core parameters read once when the server starts (sockets, workers, log level): a
/// reloaded script that changes them is told they need a restart.
pub const STARTUP_GLOBALS: &[&str] = &[
    "listen",
    "port",
    "disable_tcp",
    "children",
    "alias",
    "maxbuffer",
    "tcp_max_msg_size",
    "tcp_connection_lifetime",
    "tcp_max_connections",
    "tcp_conn_wq_max",
    "tcp_msg_read_timeout",
    "max_branches",
    "loop_detection",
    "onsend_route_reply",
    "max_waiting_routes",
    "debug",
    "dns_try_naptr",
    "dns_srv_lb",
    "dns_srv_loadbalancing",
    "use_dns_cache",
    "dns_use_cache",
    "use_dns_failover",
    "dns_use_failover",
    "dns_try_ipv6",
    "dns_retr_time",
    "dns_retr_no",
    "dns_cache_max_ttl",
    "dns_cache_min_ttl",
    "dns_cache_negative_ttl",
    "dns_nameserver",
];

/// The TCP limits, Kamailio's defaults where the config is silent. A limit of 0 or less
/// is refused: it would refuse every connection or message rather than lift the limit.
fn tcp_limits(g: &Globals) -> Result<crate::transport::tcp::TcpLimits, ConfigError> {
    use std::time::Duration;
    let d = crate::transport::tcp::TcpLimits::default();
    let positive = |name: &str| -> Result<Option<u64>, ConfigError> {
        match int(g, name)? {
            Some(v) if v <= 0 => Err(err(name, format!("must be positive, not {v}"))),
            v => Ok(v.map(|v| v as u64)),
        }
    };
    Ok(crate::transport::tcp::TcpLimits {
        max_msg_size: positive("tcp_max_msg_size")?
            .map_or(d.max_msg_size, |v| (v as usize).max(1024)),
        lifetime: positive("tcp_connection_lifetime")?.map_or(d.lifetime, Duration::from_secs),
        max_connections: positive("tcp_max_connections")?.map_or(d.max_connections, |v| v as usize),
        write_queue_max: positive("tcp_conn_wq_max")?
            .map_or(d.write_queue_max, |v| (v as usize).max(4096)),
        msg_read_timeout: positive("tcp_msg_read_timeout")?
            .map_or(d.msg_read_timeout, Duration::from_secs),
    })
}

fn err(param: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        param: param.to_string(),
        message: message.into(),
    }
}

fn last<'a>(g: &'a Globals, name: &str) -> Option<&'a GlobalValue> {
    g.get(name).and_then(|v| v.last())
}

fn int(g: &Globals, name: &str) -> Result<Option<i64>, ConfigError> {
    match last(g, name) {
        None => Ok(None),
        Some(v) => v
            .unquoted()
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| err(name, format!("'{}' is not a number", v.raw))),
    }
}

fn flag(g: &Globals, name: &str) -> bool {
    last(g, name).is_some_and(|v| {
        matches!(
            v.unquoted().trim().to_ascii_lowercase().as_str(),
            "yes" | "on" | "true" | "1" | "enable"
        )
    })
}

/// A boolean parameter that is on unless the config turns it off.
fn flag_default_on(g: &Globals, name: &str) -> bool {
    !last(g, name).is_some_and(|v| {
        matches!(
            v.unquoted().trim().to_ascii_lowercase().as_str(),
            "no" | "off" | "false" | "0" | "disable"
        )
    })
}

fn resolve(host: &str, port: u16, param: &str) -> Result<IpAddr, ConfigError> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Ok(ip);
    }
    (h, port)
        .to_socket_addrs()
        .map_err(|e| err(param, format!("cannot resolve {host}: {e}")))?
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| err(param, format!("{host} has no address")))
}

/// Splits `host:port` / `[v6]:port` / `host`.
pub fn split_host_port(s: &str) -> (String, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, after)) = rest.split_once(']') {
            return (
                h.to_string(),
                after.strip_prefix(':').and_then(|p| p.parse().ok()),
            );
        }
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_string(), p.parse().ok()),
        _ => (s.to_string(), None),
    }
}

impl ServerConfig {
    pub fn from_globals(g: &Globals) -> Result<ServerConfig, ConfigError> {
        let default_port = int(g, "port")?.map_or(Ok(5060), |p| {
            u16::try_from(p).map_err(|_| err("port", "out of range"))
        })?;
        let disable_tcp = flag(g, "disable_tcp");
        // Kamailio's TLS is off unless enable_tls (tls_enable) is on or disable_tls
        // (tls_disable) is given and off.
        let disabled_off = |name: &str| last(g, name).is_some() && !flag(g, name);
        let enable_tls = (flag(g, "enable_tls")
            || flag(g, "tls_enable")
            || disabled_off("disable_tls")
            || disabled_off("tls_disable"))
            && !flag(g, "disable_tls")
            && !flag(g, "tls_disable");
        let tls_port = int(g, "tls_port_no")?.map_or(Ok(5061), |p| {
            u16::try_from(p).map_err(|_| err("tls_port_no", "out of range"))
        })?;
        let mut listen = Vec::new();
        for v in g.get("listen").into_iter().flatten() {
            let raw = v.unquoted().trim().to_string();
            let mut words = raw.split_whitespace();
            let sock = words.next().ok_or_else(|| err("listen", "empty value"))?;
            let (protos, rest, explicit): (Vec<Proto>, &str, bool) = match sock.split_once(':') {
                Some((p, r)) if Proto::parse(p).is_some() => {
                    (vec![Proto::parse(p).unwrap_or_default()], r, true)
                }
                _ => {
                    let mut p = vec![Proto::Udp];
                    if !disable_tcp {
                        p.push(Proto::Tcp);
                    }
                    if enable_tls {
                        p.push(Proto::Tls);
                    }
                    (p, sock, false)
                }
            };
            let (host, given_port) = split_host_port(rest);
            let port = given_port.unwrap_or(default_port);
            let ip = resolve(&host, port, "listen")?;
            let mut advertise = None;
            while let Some(w) = words.next() {
                if w.eq_ignore_ascii_case("advertise") {
                    let a = words
                        .next()
                        .ok_or_else(|| err("listen", "advertise needs host:port"))?;
                    let (h, p) = split_host_port(a);
                    advertise = Some((h, p.unwrap_or(port)));
                }
            }
            for proto in protos {
                if proto == Proto::Sctp {
                    return Err(err(
                        "listen",
                        format!(
                            "{} listeners are not available yet (UDP, TCP, TLS, WS and WSS are)",
                            proto.name()
                        ),
                    ));
                }
                if proto == Proto::Tcp && disable_tcp {
                    continue;
                }
                // A TLS socket without a port of its own takes the TLS port (5061), as
                // does the TLS socket a protocol-less listen= adds beside UDP and TCP.
                let tls_own_port = proto == Proto::Tls && (!explicit || given_port.is_none());
                let (port, advertise) = if tls_own_port {
                    (tls_port, advertise.clone().map(|(h, _)| (h, tls_port)))
                } else {
                    (port, advertise.clone())
                };
                listen.push(Listen::new(proto, SocketAddr::new(ip, port), advertise));
            }
        }
        let interfaces = crate::myself::interface_addresses().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot list the network interfaces");
            Vec::new()
        });
        let listen_discovered = listen.is_empty();
        if listen_discovered {
            // As Kamailio does without `listen=`: a socket on each interface address, so
            // each message is known to have come in on one address, which then leaves in
            // the Via and Record-Route of what goes out.
            let mut addrs: Vec<IpAddr> = interfaces.clone();
            if addrs.is_empty() {
                addrs.push(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
            }
            for ip in addrs {
                let addr = SocketAddr::new(ip, default_port);
                listen.push(Listen::new(Proto::Udp, addr, None));
                if !disable_tcp {
                    listen.push(Listen::new(Proto::Tcp, addr, None));
                }
                if enable_tls {
                    listen.push(Listen::new(Proto::Tls, SocketAddr::new(ip, tls_port), None));
                }
            }
        }
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let children = int(g, "children")?.map_or(cpus, |c| c.clamp(1, 256) as usize);
        let mut aliases = Vec::new();
        for v in g.get("alias").into_iter().flatten() {
            let raw = v.unquoted().trim();
            let raw = match raw.split_once(':') {
                Some((p, r)) if Proto::parse(p).is_some() => r,
                _ => raw,
            };
            let (h, p) = split_host_port(raw);
            aliases.push((h.to_ascii_lowercase(), p));
        }
        let auto_aliases = flag_default_on(g, "auto_aliases");
        let myself = Myself::new(&listen, &aliases, auto_aliases, &interfaces);
        let max_branches = match int(g, "max_branches")? {
            None => 12,
            Some(n @ 1..=31) => n as usize,
            Some(n) => return Err(err("max_branches", format!("must be 1 to 31, not {n}"))),
        };
        Ok(ServerConfig {
            listen,
            children,
            max_branches,
            loop_detection: flag_default_on(g, "loop_detection"),
            onsend_route_reply: flag(g, "onsend_route_reply"),
            max_waiting_routes: match int(g, "max_waiting_routes")? {
                None => 10_000,
                Some(n) if n > 0 => n as u64,
                Some(n) => {
                    return Err(err(
                        "max_waiting_routes",
                        format!("must be positive, not {n}"),
                    ))
                }
            },
            udp_max_size: 65535,
            udp_buffer: int(g, "maxbuffer")?.map_or(4 << 20, |v| v.clamp(65536, 64 << 20) as usize),
            tcp: tcp_limits(g)?,
            enable_tls,
            tls_max_connections: match int(g, "tls_max_connections")? {
                None => 2048,
                Some(n) if n > 0 => n as usize,
                Some(n) => {
                    return Err(err(
                        "tls_max_connections",
                        format!("must be positive, not {n}"),
                    ))
                }
            },
            aliases,
            auto_aliases,
            listen_discovered,
            myself,
            dns: dns_settings(g)?,
        })
    }
}

/// The last value of the first of `names` the config gives (Kamailio's aliases).
fn first_of<'a>(g: &'a Globals, names: &[&'a str]) -> Option<&'a str> {
    names.iter().copied().find(|n| last(g, n).is_some())
}

/// The resolver's settings from `dns_*` / `use_dns_*` (Kamailio's names and defaults)
/// and Ferrosip's `dns_nameserver`.
fn dns_settings(g: &Globals) -> Result<crate::dns::DnsSettings, ConfigError> {
    use std::time::Duration;
    let mut s = crate::dns::DnsSettings::default();
    let on = |names: &[&str], default: bool| match first_of(g, names) {
        None => default,
        Some(n) => flag(g, n),
    };
    s.try_naptr = on(&["dns_try_naptr"], s.try_naptr);
    s.srv_lb = on(&["dns_srv_lb", "dns_srv_loadbalancing"], s.srv_lb);
    s.use_cache = on(&["use_dns_cache", "dns_use_cache"], s.use_cache);
    s.use_failover = on(&["use_dns_failover", "dns_use_failover"], s.use_failover);
    s.try_ipv6 = on(&["dns_try_ipv6"], s.try_ipv6);
    let seconds = |name: &str, min: i64| -> Result<Option<Duration>, ConfigError> {
        match int(g, name)? {
            None => Ok(None),
            Some(v) if v < min => Err(err(name, format!("must be at least {min}, not {v}"))),
            Some(v) => Ok(Some(Duration::from_secs(v as u64))),
        }
    };
    if let Some(d) = seconds("dns_retr_time", 1)? {
        s.retr_time = d;
    }
    if let Some(n) = int(g, "dns_retr_no")? {
        if !(1..=10).contains(&n) {
            return Err(err("dns_retr_no", format!("must be 1 to 10, not {n}")));
        }
        s.retr_no = n as usize;
    }
    s.max_ttl = seconds("dns_cache_max_ttl", 1)?;
    s.min_ttl = seconds("dns_cache_min_ttl", 0)?;
    if let Some(d) = seconds("dns_cache_negative_ttl", 0)? {
        s.negative_ttl = d;
    }
    for v in g.get("dns_nameserver").into_iter().flatten() {
        let text = v.unquoted();
        let text = text.trim();
        let (host, port) = split_host_port(text);
        let ip: IpAddr = host.parse().map_err(|_| {
            err(
                "dns_nameserver",
                format!("'{text}' is not an IP address with an optional port"),
            )
        })?;
        s.nameservers.push(SocketAddr::new(ip, port.unwrap_or(53)));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globals(params: &[(&str, &str)]) -> Globals {
        let mut g = Globals::new();
        for (name, raw) in params {
            g.entry(name.to_string()).or_default().push(GlobalValue {
                raw: raw.to_string(),
                span: Default::default(),
                parsed: None,
            });
        }
        g
    }

    #[test]
    fn no_listen_binds_every_interface_address_udp_and_tcp() {
        let c = ServerConfig::from_globals(&globals(&[("port", "5072")])).unwrap();
        assert!(c.listen_discovered);
        let loopback: SocketAddr = "127.0.0.1:5072".parse().unwrap();
        for proto in [Proto::Udp, Proto::Tcp] {
            assert!(
                c.listen
                    .iter()
                    .any(|l| l.proto == proto && l.addr == loopback),
                "{:?}",
                c.listen
            );
        }
        assert!(c.listen.iter().all(|l| !l.addr.ip().is_unspecified()));
        assert!(c.myself.matches(b"127.0.0.1", Some(5072)));
        assert!(c.myself.matches(b"localhost", Some(5072)));
        assert!(!c.myself.matches(b"127.0.0.1", Some(5060)));
    }

    #[test]
    fn disable_tcp_and_auto_aliases_off() {
        let c =
            ServerConfig::from_globals(&globals(&[("disable_tcp", "yes"), ("auto_aliases", "no")]))
                .unwrap();
        assert!(c.listen.iter().all(|l| l.proto == Proto::Udp));
        assert!(!c.auto_aliases);
        assert!(c.myself.matches(b"127.0.0.1", Some(5060)));
        assert!(!c.myself.matches(b"localhost", Some(5060)));
    }

    #[test]
    fn listen_alias_and_advertise_make_up_myself() {
        let c = ServerConfig::from_globals(&globals(&[
            ("listen", "udp:127.0.0.1:5080 advertise 203.0.113.5:5090"),
            ("alias", "\"udp:sip.example.com\""),
            ("alias", "pbx.example.com:5099"),
            ("auto_aliases", "off"),
        ]))
        .unwrap();
        assert!(!c.listen_discovered);
        assert_eq!(c.listen.len(), 1);
        assert_eq!(&c.listen[0].sent_by_host[..], b"203.0.113.5");
        assert_eq!(c.listen[0].sent_by_port, 5090);
        let me = &c.myself;
        assert!(me.matches(b"127.0.0.1", Some(5080)));
        assert!(!me.matches(b"127.0.0.1", Some(5060)));
        assert!(me.matches(b"203.0.113.5", Some(5090)));
        assert!(me.matches(b"sip.example.com", Some(1234)));
        assert!(me.matches(b"pbx.example.com", Some(5099)));
        assert!(!me.matches(b"pbx.example.com", Some(5060)));
    }

    #[test]
    fn tls_sockets_take_the_tls_port_unless_given_one() {
        let c = ServerConfig::from_globals(&globals(&[
            ("listen", "tls:127.0.0.1"),
            ("listen", "tls:127.0.0.1:5071"),
            ("tls_max_connections", "100"),
        ]))
        .unwrap();
        let ports: Vec<(Proto, u16)> = c.listen.iter().map(|l| (l.proto, l.addr.port())).collect();
        assert_eq!(ports, [(Proto::Tls, 5061), (Proto::Tls, 5071)]);
        assert_eq!(c.tls_max_connections, 100);
        // enable_tls adds TLS on tls_port_no beside a protocol-less listen=.
        let c = ServerConfig::from_globals(&globals(&[
            ("listen", "127.0.0.1:5080"),
            ("enable_tls", "yes"),
            ("tls_port_no", "5081"),
        ]))
        .unwrap();
        let ports: Vec<(Proto, u16)> = c.listen.iter().map(|l| (l.proto, l.addr.port())).collect();
        assert_eq!(
            ports,
            [(Proto::Udp, 5080), (Proto::Tcp, 5080), (Proto::Tls, 5081)]
        );
        let c = ServerConfig::from_globals(&globals(&[("listen", "127.0.0.1:5080")])).unwrap();
        assert!(c.listen.iter().all(|l| l.proto != Proto::Tls));
        // WebSocket sockets are their own protocols (RFC 7118), never TLS ones.
        let c = ServerConfig::from_globals(&globals(&[("listen", "ws:127.0.0.1:8080")])).unwrap();
        assert_eq!(c.listen[0].proto, Proto::Ws);
    }

    #[test]
    fn a_wildcard_socket_advertises_the_address_that_routes_to_the_peer() {
        let any = Listen::new(Proto::Udp, "0.0.0.0:5060".parse().unwrap(), None);
        assert!(any.is_wildcard());
        let towards = any.towards("127.0.0.1:5070".parse().unwrap());
        assert_eq!(&towards.sent_by_host[..], b"127.0.0.1");
        let bound = Listen::new(Proto::Udp, "[::1]:5060".parse().unwrap(), None);
        assert_eq!(
            &bound.towards("[::1]:9".parse().unwrap()).sent_by_host[..],
            b"[::1]"
        );
    }
}
