//! Server settings read from the config's core parameters (`listen=`, `port=`, `children=`,
//! `disable_tcp=`, ...).

use bytes::Bytes;
use ferrosip_api::Proto;
use ferrosip_script::ast::GlobalValue;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

/// A socket to listen on, as `listen=proto:host:port [advertise host:port]` gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    pub proto: Proto,
    pub addr: SocketAddr,
    /// Host and port to put in Via/Record-Route instead of the bound address.
    pub advertise: Option<(String, u16)>,
    /// The host Via and Record-Route carry for this socket (the advertised one, else the
    /// bound address, IPv6 in brackets), formatted once: every forwarded request needs it.
    pub sent_by_host: Bytes,
    pub sent_by_port: u16,
}

impl Listen {
    pub fn new(proto: Proto, addr: SocketAddr, advertise: Option<(String, u16)>) -> Listen {
        let (host, port) = match &advertise {
            Some((h, p)) => (h.clone(), *p),
            None => {
                let ip = addr.ip();
                let host = if ip.is_unspecified() {
                    "127.0.0.1".to_string()
                } else if ip.is_ipv6() {
                    format!("[{ip}]")
                } else {
                    ip.to_string()
                };
                (host, addr.port())
            }
        };
        Listen {
            proto,
            addr,
            advertise,
            sent_by_host: Bytes::from(host),
            sent_by_port: port,
        }
    }
}

/// Everything the runtime needs from the config.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: Vec<Listen>,
    pub children: usize,
    pub udp_max_size: usize,
    /// Socket buffer size asked for UDP sockets (`maxbuffer`, default 4 MiB).
    pub udp_buffer: usize,
    pub tcp_max_size: usize,
    pub tcp_idle_secs: u64,
    pub aliases: Vec<(String, Option<u16>)>,
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
    "debug",
];

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
        let mut listen = Vec::new();
        for v in g.get("listen").into_iter().flatten() {
            let raw = v.unquoted().trim().to_string();
            let mut words = raw.split_whitespace();
            let sock = words.next().ok_or_else(|| err("listen", "empty value"))?;
            let (protos, rest): (Vec<Proto>, &str) = match sock.split_once(':') {
                Some((p, r)) if Proto::parse(p).is_some() => {
                    (vec![Proto::parse(p).unwrap_or_default()], r)
                }
                _ => {
                    let mut p = vec![Proto::Udp];
                    if !disable_tcp {
                        p.push(Proto::Tcp);
                    }
                    (p, sock)
                }
            };
            let (host, port) = split_host_port(rest);
            let port = port.unwrap_or(default_port);
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
                if matches!(proto, Proto::Tls | Proto::Sctp | Proto::Ws | Proto::Wss) {
                    return Err(err(
                        "listen",
                        format!(
                            "{} listeners are not available yet (UDP and TCP are)",
                            proto.name()
                        ),
                    ));
                }
                if proto == Proto::Tcp && disable_tcp {
                    continue;
                }
                listen.push(Listen::new(
                    proto,
                    SocketAddr::new(ip, port),
                    advertise.clone(),
                ));
            }
        }
        if listen.is_empty() {
            let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), default_port);
            listen.push(Listen::new(Proto::Udp, any, None));
            if !disable_tcp {
                listen.push(Listen::new(Proto::Tcp, any, None));
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
        Ok(ServerConfig {
            listen,
            children,
            udp_max_size: 65535,
            udp_buffer: int(g, "maxbuffer")?.map_or(4 << 20, |v| v.clamp(65536, 64 << 20) as usize),
            tcp_max_size: int(g, "tcp_max_msg_size")?.map_or(65536, |v| v.max(1024) as usize),
            tcp_idle_secs: int(g, "tcp_connection_lifetime")?.map_or(120, |v| v.max(1) as u64),
            aliases,
        })
    }
}
