//! Addresses: which ones count as private, the source of a message as a URI, and the
//! `alias` parameter value (`ip~port~proto`).

use ferrosip_api::{NetInfo, Proto};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// `nat_addr_mode`: which IPv4 ranges count as behind NAT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrMode {
    /// 0: RFC 1918, the RFC 6598 shared range and the RFC 7335 /29.
    Private,
    /// 1 (default): also the rest of 192.0.0.0/24 (IETF protocol assignments).
    WithReserved,
}

impl AddrMode {
    pub fn from_param(v: i64) -> Result<AddrMode, String> {
        match v {
            0 => Ok(AddrMode::Private),
            1 => Ok(AddrMode::WithReserved),
            _ => Err(format!("nat_addr_mode {v} is not 0 or 1")),
        }
    }
}

/// (network, prefix length) of the ranges every mode treats as private.
const PRIVATE_V4: [(Ipv4Addr, u32); 5] = [
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(192, 0, 0, 0), 29),
];

fn in_net(ip: Ipv4Addr, net: Ipv4Addr, len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

/// Whether `ip` is an address a NAT hides. IPv6 addresses never are (as in Kamailio).
pub fn is_private(ip: IpAddr, mode: AddrMode) -> bool {
    let IpAddr::V4(v4) = ip else {
        return false;
    };
    PRIVATE_V4.iter().any(|(net, len)| in_net(v4, *net, *len))
        || (mode == AddrMode::WithReserved && in_net(v4, Ipv4Addr::new(192, 0, 0, 0), 24))
}

/// An IP address as written in a URI or a Via host (IPv6 with or without brackets).
pub fn parse_ip(host: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(host).ok()?.trim();
    let text = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    text.parse().ok()
}

/// Whether `host` is a private IP address; a host name is not.
pub fn is_private_host(host: &[u8], mode: AddrMode) -> bool {
    parse_ip(host).is_some_and(|ip| is_private(ip, mode))
}

/// An IP for a URI host: IPv6 in brackets.
pub fn uri_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    }
}

/// `sip:IP:PORT`, with `;transport=` when the message did not come over UDP: what
/// fix_nated_register() stores and the registrar sends to.
pub fn source_uri(net: &NetInfo) -> String {
    let mut uri = format!("sip:{}:{}", uri_host(net.source.ip()), net.source.port());
    if net.proto != Proto::Udp {
        uri.push_str(";transport=");
        uri.push_str(net.proto.name());
    }
    uri
}

/// The `alias` parameter value for `addr` over `proto`: `IP~PORT~N`, N being Kamailio's
/// protocol number (1 UDP, 2 TCP, 3 TLS, 4 SCTP, 5 WS, 6 WSS).
pub fn alias_value(addr: SocketAddr, proto: Proto) -> String {
    format!("{}~{}~{}", uri_host(addr.ip()), addr.port(), proto.id())
}

/// The address and protocol an `alias` value names.
pub fn parse_alias(value: &[u8]) -> Option<(IpAddr, u16, Proto)> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.rsplitn(3, '~');
    let proto = parts.next()?;
    let port = parts.next()?.parse::<u16>().ok().filter(|p| *p != 0)?;
    let ip = parse_ip(parts.next()?.as_bytes())?;
    let proto = match proto.parse::<i64>() {
        Ok(n) => proto_by_id(n)?,
        Err(_) => Proto::parse(proto)?,
    };
    Some((ip, port, proto))
}

fn proto_by_id(n: i64) -> Option<Proto> {
    [
        Proto::Udp,
        Proto::Tcp,
        Proto::Tls,
        Proto::Sctp,
        Proto::Ws,
        Proto::Wss,
    ]
    .into_iter()
    .find(|p| p.id() == n)
}

/// `sip:IP:PORT[;transport=x]` for a destination ($du).
pub fn dst_uri(ip: IpAddr, port: u16, proto: Proto) -> String {
    let mut uri = format!("sip:{}:{}", uri_host(ip), port);
    if proto != Proto::Udp {
        uri.push_str(";transport=");
        uri.push_str(proto.name());
    }
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn private_ranges_follow_nat_addr_mode() {
        for a in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.20",
            "100.64.0.1",
            "100.127.255.254",
            "192.0.0.7",
        ] {
            assert!(is_private(ip(a), AddrMode::Private), "{a}");
        }
        for a in [
            "172.32.0.1",
            "8.8.8.8",
            "127.0.0.2",
            "100.128.0.1",
            "192.0.0.8",
            "::1",
            "fc00::1",
        ] {
            assert!(!is_private(ip(a), AddrMode::Private), "{a}");
        }
        assert!(is_private(ip("192.0.0.170"), AddrMode::WithReserved));
        assert!(!is_private(ip("192.0.1.1"), AddrMode::WithReserved));
    }

    #[test]
    fn alias_values_round_trip() {
        let a: SocketAddr = "127.0.0.2:5070".parse().unwrap();
        let v = alias_value(a, Proto::Tcp);
        assert_eq!(v, "127.0.0.2~5070~2");
        assert_eq!(parse_alias(v.as_bytes()), Some((a.ip(), 5070, Proto::Tcp)));
        let six: SocketAddr = "[2001:db8::1]:5060".parse().unwrap();
        let v = alias_value(six, Proto::Wss);
        assert_eq!(v, "[2001:db8::1]~5060~6");
        assert_eq!(
            parse_alias(v.as_bytes()),
            Some((six.ip(), 5060, Proto::Wss))
        );
        assert_eq!(parse_alias(b"1.2.3.4~0~1"), None);
        assert_eq!(parse_alias(b"host~5060~1"), None);
        assert_eq!(parse_alias(b"1.2.3.4~5060~9"), None);
        assert_eq!(dst_uri(ip("1.2.3.4"), 5060, Proto::Udp), "sip:1.2.3.4:5060");
        assert_eq!(
            dst_uri(ip("1.2.3.4"), 80, Proto::Ws),
            "sip:1.2.3.4:80;transport=ws"
        );
    }
}
