//! The relays a script may use (`rtpproxy_sock`), grouped in sets, and the exchange of
//! one control command with one of them: rtpproxy's text protocol over UDP (each command
//! prefixed with a cookie the answer repeats, re-sent `rtpproxy_retr` times, each time
//! waiting `rtpproxy_tout` seconds) or over a Unix stream socket (one connection per
//! command). A relay that does not answer is disabled for `rtpproxy_disable_tout` seconds
//! and the next one of the set is tried.

use ferrosip_api::tokio;
use ferrosip_api::Clock;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The largest answer read: a UDP datagram's payload (an ng answer carries an SDP).
const MAX_ANSWER: usize = 65_535;

/// Where a relay listens for commands.
#[derive(Clone, Debug, PartialEq)]
pub enum Endpoint {
    Udp(SocketAddr),
    Unix(PathBuf),
}

/// One relay.
#[derive(Debug)]
pub struct Node {
    /// As the script wrote it (`udp:127.0.0.1:7722`): the name RPCs use.
    pub url: String,
    pub endpoint: Endpoint,
    pub weight: u32,
    /// Disabled by `rtpproxy.enable <url> 0`: stays so until enabled again.
    pub admin_disabled: AtomicBool,
    /// Disabled after not answering: tried again from this instant on.
    pub retry_at: Mutex<Option<Instant>>,
}

impl Node {
    /// Whether commands may go to it now (a relay whose disabling ran out is tried again).
    pub fn usable(&self, now: Instant) -> bool {
        !self.admin_disabled.load(Ordering::Relaxed)
            && self
                .retry_at
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_none_or(|t| now >= t)
    }
}

/// A set of relays (`N == udp:... udp:...`); set 0 unless the script numbers it.
#[derive(Debug)]
pub struct Set {
    pub id: u32,
    pub nodes: Vec<Node>,
}

/// The timing parameters of the exchange.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub timeout: Duration,
    pub tries: u32,
    pub disable_for: Duration,
}

/// Why a command got no usable answer.
#[derive(Debug)]
pub enum SendError {
    /// No relay of the set is enabled.
    NoRelay(u32),
    /// Every relay tried stayed silent or could not be reached.
    Unreachable(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::NoRelay(set) => write!(f, "no rtpproxy of set {set} is enabled"),
            SendError::Unreachable(why) => write!(f, "no rtpproxy answered: {why}"),
        }
    }
}

/// Parses every `rtpproxy_sock` (or `rtpengine_sock`) value: `[SET ==] url[=weight] url ...`.
pub fn parse_sets(values: &[String]) -> Result<Vec<Set>, String> {
    let mut sets: Vec<Set> = Vec::new();
    for value in values {
        let (id, list) = match value.split_once("==") {
            Some((id, rest)) => (
                id.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("set id '{}' is not a number", id.trim()))?,
                rest,
            ),
            None => (0, value.as_str()),
        };
        let mut nodes = Vec::new();
        for url in list.split_ascii_whitespace() {
            nodes.push(parse_node(url)?);
        }
        if nodes.is_empty() {
            return Err(format!("'{value}' names no socket"));
        }
        match sets.iter_mut().find(|s| s.id == id) {
            Some(s) => s.nodes.extend(nodes),
            None => sets.push(Set { id, nodes }),
        }
    }
    Ok(sets)
}

fn parse_node(spec: &str) -> Result<Node, String> {
    // A weight is `=N` after the address; a Unix path may hold no '='.
    let (url, weight) = match spec.rsplit_once('=') {
        Some((u, w)) if !w.is_empty() && w.bytes().all(|c| c.is_ascii_digit()) => (
            u,
            w.parse::<u32>()
                .map_err(|_| format!("weight in '{spec}' is too large"))?,
        ),
        _ => (spec, 1),
    };
    let endpoint = if let Some(path) = url.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(format!("'{spec}' has an empty path"));
        }
        Endpoint::Unix(PathBuf::from(path))
    } else {
        let rest = url
            .strip_prefix("udp:")
            .or_else(|| url.strip_prefix("udp6:"))
            .ok_or_else(|| {
                format!("'{spec}' is neither udp:host:port, udp6:host:port nor unix:/path")
            })?;
        Endpoint::Udp(
            parse_host_port(rest)
                .ok_or_else(|| format!("'{spec}': expected an IP address and a port"))?,
        )
    };
    Ok(Node {
        url: url.to_string(),
        endpoint,
        weight: weight.max(1),
        admin_disabled: AtomicBool::new(false),
        retry_at: Mutex::new(None),
    })
}

/// `127.0.0.1:7722`, `[::1]:7722`, `localhost:7722` (the port defaults to 22222, rtpproxy's).
fn parse_host_port(s: &str) -> Option<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.starts_with('[') => (h, p.parse().ok()?),
        _ => (s, 22222),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::from([127, 0, 0, 1])
    } else {
        host.parse().ok()?
    };
    Some(SocketAddr::new(ip, port))
}

/// The relays and what choosing and talking to them needs.
pub struct Relays {
    pub sets: Vec<Set>,
    pub timing: Timing,
    clock: Clock,
    cookies: AtomicU64,
}

impl Relays {
    pub fn new(sets: Vec<Set>, timing: Timing, clock: Clock) -> Relays {
        Relays {
            sets,
            timing,
            clock,
            cookies: AtomicU64::new(0),
        }
    }

    pub fn clock_now(&self) -> Instant {
        self.clock.now()
    }

    /// The set a message uses when the script chose none: set 0, else the first listed.
    pub fn default_set(&self) -> Option<u32> {
        self.sets
            .iter()
            .find(|s| s.id == 0)
            .or(self.sets.first())
            .map(|s| s.id)
    }

    pub fn set(&self, id: u32) -> Option<&Set> {
        self.sets.iter().find(|s| s.id == id)
    }

    /// The node for `call_id` among the usable ones of `set`, weighted: the same call goes
    /// to the same relay as long as the usable relays stay the same.
    fn pick(&self, set: &Set, call_id: &[u8], skip: &[usize]) -> Option<usize> {
        let now = self.clock.now();
        let usable: Vec<usize> = (0..set.nodes.len())
            .filter(|i| !skip.contains(i) && set.nodes[*i].usable(now))
            .collect();
        let total: u64 = usable.iter().map(|&i| u64::from(set.nodes[i].weight)).sum();
        if total == 0 {
            return None;
        }
        // FNV-1a: stable across runs, so a restart keeps calls on their relays.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in call_id {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        let mut point = h % total;
        for &i in &usable {
            let w = u64::from(set.nodes[i].weight);
            if point < w {
                return Some(i);
            }
            point -= w;
        }
        usable.last().copied()
    }

    /// Sends `command` to the relay of `set` chosen for `call_id`, failing over to the
    /// others of the set; the answer without its cookie, and the relay's index.
    pub async fn send(
        &self,
        set_id: u32,
        call_id: &[u8],
        command: &[u8],
    ) -> Result<(Vec<u8>, usize), SendError> {
        let set = self.set(set_id).ok_or(SendError::NoRelay(set_id))?;
        let mut tried = Vec::new();
        let mut last = String::new();
        while let Some(i) = self.pick(set, call_id, &tried) {
            let node = &set.nodes[i];
            match self.exchange(node, command).await {
                Ok(answer) => {
                    *node.retry_at.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    return Ok((answer, i));
                }
                Err(e) => {
                    tracing::warn!(url = %node.url, error = %e, "rtpproxy: relay disabled");
                    *node.retry_at.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(self.clock.now() + self.timing.disable_for);
                    last = format!("{}: {e}", node.url);
                    tried.push(i);
                }
            }
        }
        if tried.is_empty() {
            Err(SendError::NoRelay(set_id))
        } else {
            Err(SendError::Unreachable(last))
        }
    }

    /// Sends `command` to one relay (`rtpengine.ping`): its answer, or why none; a relay
    /// that does not answer is disabled as after a failed command.
    pub async fn send_to(
        &self,
        set_id: u32,
        index: usize,
        command: &[u8],
    ) -> Result<Vec<u8>, String> {
        let node = self
            .set(set_id)
            .and_then(|s| s.nodes.get(index))
            .ok_or("no such relay")?;
        let r = self.exchange(node, command).await;
        *node.retry_at.lock().unwrap_or_else(|e| e.into_inner()) = match &r {
            Ok(_) => None,
            Err(_) => Some(self.clock.now() + self.timing.disable_for),
        };
        r
    }

    async fn exchange(&self, node: &Node, command: &[u8]) -> Result<Vec<u8>, String> {
        match &node.endpoint {
            Endpoint::Udp(addr) => self.exchange_udp(*addr, command).await,
            Endpoint::Unix(path) => self.exchange_unix(path, command).await,
        }
    }

    async fn exchange_udp(&self, addr: SocketAddr, command: &[u8]) -> Result<Vec<u8>, String> {
        let local: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let sock = tokio::net::UdpSocket::bind(local)
            .await
            .map_err(|e| e.to_string())?;
        sock.connect(addr).await.map_err(|e| e.to_string())?;
        let cookie = format!(
            "{}_{}",
            std::process::id(),
            self.cookies.fetch_add(1, Ordering::Relaxed)
        );
        let mut packet = Vec::with_capacity(cookie.len() + 1 + command.len());
        packet.extend_from_slice(cookie.as_bytes());
        packet.push(b' ');
        packet.extend_from_slice(command);
        let mut buf = vec![0u8; MAX_ANSWER];
        for _ in 0..self.timing.tries.max(1) {
            // An ICMP refusal shows as an error on send or receive: the next try may find
            // the relay started.
            if sock.send(&packet).await.is_err() {
                tokio::time::sleep(self.timing.timeout).await;
                continue;
            }
            let deadline = tokio::time::Instant::now() + self.timing.timeout;
            loop {
                match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                    Err(_) => break,
                    Ok(Err(_)) => {
                        tokio::time::sleep_until(deadline).await;
                        break;
                    }
                    Ok(Ok(n)) => {
                        let answer = &buf[..n];
                        // An answer to an earlier try of another command is skipped.
                        if let Some(rest) = answer
                            .strip_prefix(cookie.as_bytes())
                            .and_then(|r| r.strip_prefix(b" "))
                        {
                            return Ok(rest.to_vec());
                        }
                    }
                }
            }
        }
        Err(format!(
            "no answer after {} tries of {:?}",
            self.timing.tries.max(1),
            self.timing.timeout
        ))
    }

    async fn exchange_unix(&self, path: &PathBuf, command: &[u8]) -> Result<Vec<u8>, String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let work = async {
            let mut s = tokio::net::UnixStream::connect(path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
            s.write_all(command).await.map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; MAX_ANSWER];
            let n = s.read(&mut buf).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the relay closed the connection without answering".to_string());
            }
            buf.truncate(n);
            Ok(buf)
        };
        tokio::time::timeout(self.timing.timeout, work)
            .await
            .map_err(|_| format!("no answer within {:?}", self.timing.timeout))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_parse_into_sets() {
        let sets = parse_sets(&[
            "udp:127.0.0.1:7722 udp:[::1]:7723=3".into(),
            "2 == unix:/run/rtpproxy.sock udp:localhost".into(),
        ])
        .unwrap();
        assert_eq!(sets.len(), 2);
        assert_eq!(sets[0].id, 0);
        assert_eq!(
            sets[0].nodes[1].endpoint,
            Endpoint::Udp("[::1]:7723".parse().unwrap())
        );
        assert_eq!(sets[0].nodes[1].weight, 3);
        assert_eq!(sets[1].id, 2);
        assert_eq!(
            sets[1].nodes[0].endpoint,
            Endpoint::Unix("/run/rtpproxy.sock".into())
        );
        assert_eq!(
            sets[1].nodes[1].endpoint,
            Endpoint::Udp("127.0.0.1:22222".parse().unwrap())
        );
        assert!(parse_sets(&["tcp:1.2.3.4:5".into()]).is_err());
        assert!(parse_sets(&["x == udp:1.2.3.4:5".into()]).is_err());
        assert!(parse_sets(&["udp:nohost.example:5".into()]).is_err());
        assert!(parse_sets(&["1 == ".into()]).is_err());
    }

    #[tokio::test]
    async fn a_silent_relay_is_disabled_and_the_next_answers() {
        let live = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let spec = format!(
            "udp:{} udp:{}",
            dead.local_addr().unwrap(),
            live.local_addr().unwrap()
        );
        let clock = Clock::system();
        let relays = Relays::new(
            parse_sets(&[spec]).unwrap(),
            Timing {
                timeout: Duration::from_millis(100),
                tries: 2,
                disable_for: Duration::from_secs(60),
            },
            clock,
        );
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                let (n, from) = live.recv_from(&mut buf).await.unwrap();
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                let cookie = text.split(' ').next().unwrap().to_string();
                live.send_to(format!("{cookie} 35000 127.0.0.1\n").as_bytes(), from)
                    .await
                    .unwrap();
            }
        });
        // Whichever the call hashes to, the answer comes from the live relay, and a dead
        // one tried on the way stays disabled.
        for call in ["a", "b", "c", "d"] {
            let (answer, i) = relays.send(0, call.as_bytes(), b"V").await.unwrap();
            assert_eq!((answer.as_slice(), i), (&b"35000 127.0.0.1\n"[..], 1));
        }
        let now = Instant::now();
        assert!(!relays.sets[0].nodes[0].usable(now));
        relays.sets[0].nodes[1]
            .admin_disabled
            .store(true, Ordering::Relaxed);
        assert!(matches!(
            relays.send(0, b"a", b"V").await,
            Err(SendError::NoRelay(0))
        ));
        drop(dead);
    }
}

/// Calls whose offer came with the INVITE, remembered so that the 2xx's SDP is taken as
/// the answer (an INVITE without SDP makes the 2xx the offer). Beyond [`MAX_OFFERS`] calls
/// the oldest are forgotten: a forgotten call's 2xx is then sent as a late offer.
#[derive(Default)]
pub struct OfferLog {
    set: std::collections::HashSet<bytes::Bytes>,
    order: std::collections::VecDeque<bytes::Bytes>,
}

/// How many calls an [`OfferLog`] remembers.
pub const MAX_OFFERS: usize = 65_536;

impl OfferLog {
    pub fn add(&mut self, call_id: bytes::Bytes) {
        if self.set.insert(call_id.clone()) {
            self.order.push_back(call_id);
            while self.order.len() > MAX_OFFERS {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    pub fn remove(&mut self, call_id: &[u8]) {
        if self.set.remove(call_id) {
            self.order.retain(|c| c.as_ref() != call_id);
        }
    }

    pub fn contains(&self, call_id: &[u8]) -> bool {
        self.set.contains(call_id)
    }
}
