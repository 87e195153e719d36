//! Transports: every protocol behind one [`Transport`] trait (send, protocol, local
//! addresses), each handing what it receives to a [`Sink`] as an [`Inbound`] message.
//! UDP ([`udp`]) and TCP ([`tcp`]) now; TLS, WS and WSS are further implementations.
//! A transport knows SIP only as far as framing needs; it never parses or routes.

pub mod http;
pub mod tcp;
pub mod tls;
pub mod tls_config;
pub mod udp;
pub mod ws;

use bytes::{Bytes, BytesMut};
use ferrosip_api::{FnError, Proto};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;

/// The connection a stream message arrived on. Today the peer's address, by which the
/// TCP transport keeps its connections (a reply goes back on the connection its request
/// came on, RFC 3261 §18.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub SocketAddr);

/// One message as a transport received it: nothing parsed yet.
#[derive(Clone, Debug)]
pub struct Inbound {
    pub bytes: Bytes,
    pub source: SocketAddr,
    /// The local address it was received on.
    pub local: SocketAddr,
    pub proto: Proto,
    /// The stream connection it came on; `None` for datagrams.
    pub connection: Option<ConnectionId>,
}

/// A socket to listen on, as `listen=proto:host:port [advertise host:port]` gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    pub proto: Proto,
    pub addr: SocketAddr,
    /// Host and port to put in Via/Record-Route instead of the bound address.
    pub advertise: Option<(String, u16)>,
    /// The host Via and Record-Route carry for this socket (the advertised one, else the
    /// bound address, IPv6 in brackets), formatted once: every forwarded request needs it.
    /// A wildcard socket (0.0.0.0, ::) has no single address: [`Listen::towards`] gives
    /// the one that routes to a destination.
    pub sent_by_host: Bytes,
    pub sent_by_port: u16,
}

impl Listen {
    pub fn new(proto: Proto, addr: SocketAddr, advertise: Option<(String, u16)>) -> Listen {
        let (host, port) = match &advertise {
            Some((h, p)) => (h.clone(), *p),
            None => (host_text(addr.ip()), addr.port()),
        };
        Listen {
            proto,
            addr,
            advertise,
            sent_by_host: Bytes::from(host),
            sent_by_port: port,
        }
    }

    /// Whether this is a wildcard socket (0.0.0.0, ::) without an advertised address,
    /// whose Via/Record-Route host depends on where a message goes.
    pub fn is_wildcard(&self) -> bool {
        self.addr.ip().is_unspecified() && self.advertise.is_none()
    }

    /// This socket as seen from `peer`: a wildcard socket takes, as its Via/Record-Route
    /// host, the local address the kernel routes `peer` from; any other is itself.
    pub fn towards(&self, peer: SocketAddr) -> Listen {
        let mut l = self.clone();
        if self.is_wildcard() {
            if let Some(ip) = routed_source(peer) {
                l.sent_by_host = Bytes::from(host_text(ip));
            }
        }
        l
    }
}

/// An address as a Via sent-by or URI host writes it (IPv6 in brackets).
fn host_text(ip: IpAddr) -> String {
    if ip.is_ipv6() {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

/// Where transports hand what they receive.
pub trait Sink: Send + Sync + 'static {
    /// What a receiving thread or connection task keeps between its messages (the server's
    /// route VM), so handling a message needs no lock and no allocation for it.
    type Worker: Send + 'static;

    fn worker(&self) -> Self::Worker;

    fn on_message(self: &Arc<Self>, worker: &mut Self::Worker, inbound: Inbound);

    /// A stream lost its framing (the transport answered 400 where it could and closes).
    fn on_framing_error(&self, source: SocketAddr);

    /// A transport's task (a connection: its framing, its reads and writes) panicked, a
    /// bug of ours; the task ended, the transport goes on.
    fn on_panic(&self) {}

    /// An HTTP request on a SIP stream socket (with `xhttp` loaded): what
    /// `event_route[xhttp:request]` decided.
    fn on_http(
        self: &Arc<Self>,
        request: http::HttpInbound,
    ) -> ferrosip_api::registry::BoxFuture<'static, http::HttpOutcome>;

    /// A WebSocket connection ended (`event_route[websocket:closed]`).
    fn on_ws_closed(&self, proto: Proto, peer: SocketAddr, local: SocketAddr);
}

/// One protocol's way of sending.
pub trait Transport: Send + Sync {
    fn proto(&self) -> Proto;

    /// The addresses this transport listens on.
    fn local_addrs(&self) -> &[SocketAddr];

    /// Sends `data` to `dst`, from the socket bound to `local` when there is one (else the
    /// one that suits `dst`; a stream transport uses its connection to `dst`).
    fn send(&self, local: Option<SocketAddr>, dst: SocketAddr, data: Bytes) -> Result<(), FnError>;
}

/// The transports the server runs, one per protocol.
#[derive(Default)]
pub struct Transports {
    list: smallvec::SmallVec<[Arc<dyn Transport>; 2]>,
    /// The TLS transport's sessions and profiles, when it runs (the `tls` module's
    /// variables and RPC commands read them).
    pub tls: Option<Arc<dyn ferrosip_api::tls::TlsControl>>,
    /// The WS and WSS transports' connections, when one runs (the `websocket` module's
    /// variables, functions and RPC commands read them).
    pub websocket: Option<Arc<dyn ferrosip_api::websocket::WsControl>>,
    /// The loaded modules' message taps (siptrace): they see each message sent, and the
    /// engine shows them each one received. Usually empty.
    taps: Vec<Arc<dyn ferrosip_api::trace::MessageTap>>,
}

impl Transports {
    pub fn set_taps(&mut self, taps: Vec<Arc<dyn ferrosip_api::trace::MessageTap>>) {
        self.taps = taps;
    }

    pub fn taps(&self) -> &[Arc<dyn ferrosip_api::trace::MessageTap>] {
        &self.taps
    }

    pub fn add(&mut self, transport: Arc<dyn Transport>) {
        self.list.push(transport);
    }

    pub fn get(&self, proto: Proto) -> Option<&dyn Transport> {
        self.list.iter().find(|t| t.proto() == proto).map(|t| &**t)
    }

    /// Sends over `proto`'s transport.
    pub fn send(
        &self,
        proto: Proto,
        local: Option<SocketAddr>,
        dst: SocketAddr,
        data: Bytes,
    ) -> Result<(), FnError> {
        match self.get(proto) {
            Some(t) if !self.taps.is_empty() => {
                let source = local
                    .or_else(|| t.local_addrs().first().copied())
                    .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
                let tapped = ferrosip_api::trace::TappedMessage {
                    direction: ferrosip_api::trace::Direction::Sent,
                    proto,
                    source,
                    destination: dst,
                    data: &data,
                };
                for tap in &self.taps {
                    tap.message(&tapped);
                }
                t.send(local, dst, data)
            }
            Some(t) => t.send(local, dst, data),
            None => Err(FnError::new(format!(
                "{} transport is not available",
                proto.name()
            ))),
        }
    }
}

/// A reply to a request that could not be parsed or framed: the request's Via, From, To,
/// Call-ID and CSeq lines copied as found. `None` when there is no Via to send it to.
pub fn raw_error_reply(raw: &[u8], code: u16, reason: &str) -> Option<Bytes> {
    if raw.starts_with(b"SIP/") {
        return None;
    }
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |p| p + 2);
    let head = &raw[..head_end];
    let mut out = BytesMut::with_capacity(512);
    out.extend_from_slice(format!("SIP/2.0 {code} {reason}\r\n").as_bytes());
    let mut has_via = false;
    for line in head.split(|c| *c == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|c| *c == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon])
            .trim()
            .to_ascii_lowercase();
        let keep = matches!(
            name.as_str(),
            "via" | "v" | "from" | "f" | "to" | "t" | "call-id" | "i" | "cseq"
        );
        if keep && !line.contains(&0) {
            has_via |= name == "via" || name == "v";
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
    if !has_via {
        return None;
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    Some(out.freeze())
}

/// The local address the kernel would send to `peer` from (its routing decision, read by
/// connecting a UDP socket, which sends nothing).
pub fn routed_source(peer: SocketAddr) -> Option<std::net::IpAddr> {
    let any: SocketAddr = if peer.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let probe = UdpSocket::bind(any).ok()?;
    probe.connect(peer).ok()?;
    probe.local_addr().ok().map(|a| a.ip())
}

/// Of the sockets bound to `addr_of(item)`, the one to send to `dst` from: a socket on
/// `dst`'s own address, a loopback socket for a loopback destination, the only
/// non-loopback socket of the family, else the one on the address the kernel routes `dst`
/// from (a loopback source cannot reach another host), else a wildcard one. Without a
/// socket of `dst`'s family, the first socket.
pub fn pick_source<'a, T>(
    items: &'a [T],
    addr_of: impl Fn(&T) -> SocketAddr,
    dst: &SocketAddr,
) -> Option<&'a T> {
    let same_family = || {
        items
            .iter()
            .filter(|i| addr_of(i).is_ipv4() == dst.is_ipv4())
    };
    let mut family = same_family();
    let first = family.next();
    if first.is_none() {
        return items.first();
    }
    if family.next().is_none() {
        return first;
    }
    let ip = |i: &T| addr_of(i).ip();
    let dst_ip = dst.ip();
    if let Some(i) = same_family().find(|i| ip(i) == dst_ip) {
        return Some(i);
    }
    let wildcard = || same_family().find(|i| ip(i).is_unspecified());
    if dst_ip.is_loopback() {
        return same_family()
            .find(|i| ip(i).is_loopback())
            .or_else(wildcard)
            .or(first);
    }
    let mut outward = same_family().filter(|i| !ip(i).is_loopback() && !ip(i).is_unspecified());
    let only = outward.next();
    if only.is_some() && outward.next().is_none() {
        return only;
    }
    routed_source(*dst)
        .and_then(|src| same_family().find(|i| ip(i) == src))
        .or_else(wildcard)
        .or(only)
        .or(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(bound: &[&str], dst: &str) -> Option<SocketAddr> {
        let bound: Vec<SocketAddr> = bound.iter().map(|a| a.parse().unwrap()).collect();
        pick_source(&bound, |a| *a, &dst.parse().unwrap()).copied()
    }

    #[test]
    fn source_follows_the_destination() {
        let every = [
            "127.0.0.1:5060",
            "192.0.2.2:5060",
            "[::1]:5060",
            "[fd00::2]:5060",
        ];
        let at = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        assert_eq!(pick(&every, "127.0.0.1:5070"), at("127.0.0.1:5060"));
        assert_eq!(pick(&every, "127.0.0.5:5070"), at("127.0.0.1:5060"));
        assert_eq!(pick(&every, "198.51.100.7:5060"), at("192.0.2.2:5060"));
        assert_eq!(pick(&every, "192.0.2.2:5070"), at("192.0.2.2:5060"));
        assert_eq!(pick(&every, "[::1]:5070"), at("[::1]:5060"));
        assert_eq!(pick(&every, "[2001:db8::9]:5060"), at("[fd00::2]:5060"));
        // Only one socket of the family: that one, whatever the destination.
        assert_eq!(
            pick(&["127.0.0.1:5060"], "198.51.100.7:5060"),
            at("127.0.0.1:5060")
        );
        // No socket of the family: the first one (the send then fails with the OS's reason).
        assert_eq!(
            pick(&["127.0.0.1:5060"], "[::1]:5060"),
            at("127.0.0.1:5060")
        );
        // A wildcard socket serves a loopback destination when no loopback one is bound.
        assert_eq!(
            pick(&["0.0.0.0:5060", "192.0.2.2:5060"], "127.0.0.1:5070"),
            at("0.0.0.0:5060")
        );
        assert_eq!(pick(&[], "127.0.0.1:5070"), None);
    }
}
