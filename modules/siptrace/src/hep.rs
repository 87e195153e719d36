//! HEP version 3 (EEP), the Homer encapsulation: a `HEP3` header with the total length,
//! then chunks of (vendor 0, type, length including the 6-byte chunk header, value), all
//! in network byte order. Only the generic chunks a SIP capture needs are written.

use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

/// Chunk types of the generic vendor (0) that this encoder writes.
pub mod chunk {
    pub const IP_FAMILY: u16 = 0x0001;
    pub const IP_PROTO: u16 = 0x0002;
    pub const IPV4_SRC: u16 = 0x0003;
    pub const IPV4_DST: u16 = 0x0004;
    pub const IPV6_SRC: u16 = 0x0005;
    pub const IPV6_DST: u16 = 0x0006;
    pub const SRC_PORT: u16 = 0x0007;
    pub const DST_PORT: u16 = 0x0008;
    pub const TIME_SEC: u16 = 0x0009;
    pub const TIME_USEC: u16 = 0x000a;
    pub const PROTO_TYPE: u16 = 0x000b;
    pub const CAPTURE_ID: u16 = 0x000c;
    pub const AUTH_KEY: u16 = 0x000e;
    pub const PAYLOAD: u16 = 0x000f;
}

/// `PROTO_TYPE` of a SIP payload.
pub const PROTO_SIP: u8 = 1;

/// What one HEP packet says about one captured message.
pub struct Capture<'a> {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    /// IP protocol number of the transport (17 UDP, 6 TCP).
    pub ip_proto: u8,
    pub time: SystemTime,
    pub capture_id: u32,
    pub auth_key: Option<&'a str>,
    pub payload: &'a [u8],
}

/// The largest HEP packet: its length field is 16 bits.
pub const MAX_PACKET: usize = u16::MAX as usize;

fn put(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&((value.len() + 6) as u16).to_be_bytes());
    out.extend_from_slice(value);
}

/// Encodes one capture; `None` when the payload does not fit in a HEP packet.
pub fn encode(c: &Capture<'_>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(c.payload.len() + 128);
    out.extend_from_slice(b"HEP3");
    out.extend_from_slice(&[0, 0]);
    // An IPv4-mapped peer on a dual-stack socket is reported as the IPv4 address it is.
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match (canon(c.source.ip()), canon(c.destination.ip())) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            put(&mut out, chunk::IP_FAMILY, &[2]);
            put(&mut out, chunk::IP_PROTO, &[c.ip_proto]);
            put(&mut out, chunk::IPV4_SRC, &s.octets());
            put(&mut out, chunk::IPV4_DST, &d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            put(&mut out, chunk::IP_FAMILY, &[10]);
            put(&mut out, chunk::IP_PROTO, &[c.ip_proto]);
            put(&mut out, chunk::IPV6_SRC, &v6(s).octets());
            put(&mut out, chunk::IPV6_DST, &v6(d).octets());
        }
    }
    put(&mut out, chunk::SRC_PORT, &c.source.port().to_be_bytes());
    put(
        &mut out,
        chunk::DST_PORT,
        &c.destination.port().to_be_bytes(),
    );
    let since = c.time.duration_since(UNIX_EPOCH).unwrap_or_default();
    put(
        &mut out,
        chunk::TIME_SEC,
        &(since.as_secs() as u32).to_be_bytes(),
    );
    put(
        &mut out,
        chunk::TIME_USEC,
        &since.subsec_micros().to_be_bytes(),
    );
    put(&mut out, chunk::PROTO_TYPE, &[PROTO_SIP]);
    put(&mut out, chunk::CAPTURE_ID, &c.capture_id.to_be_bytes());
    if let Some(key) = c.auth_key {
        put(&mut out, chunk::AUTH_KEY, key.as_bytes());
    }
    if out.len() + 6 + c.payload.len() > MAX_PACKET {
        return None;
    }
    put(&mut out, chunk::PAYLOAD, c.payload);
    let total = out.len() as u16;
    out[4..6].copy_from_slice(&total.to_be_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_starts_with_its_length_and_carries_each_chunk() {
        let p = encode(&Capture {
            source: "10.0.0.1:5060".parse().unwrap(),
            destination: "10.0.0.2:5070".parse().unwrap(),
            ip_proto: 17,
            time: UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456),
            capture_id: 7,
            auth_key: None,
            payload: b"OPTIONS sip:a SIP/2.0\r\n\r\n",
        })
        .unwrap();
        assert_eq!(&p[..4], b"HEP3");
        assert_eq!(u16::from_be_bytes([p[4], p[5]]) as usize, p.len());
        // IP family chunk first: vendor 0, type 1, length 7, value 2.
        assert_eq!(&p[6..13], &[0, 0, 0, 1, 0, 7, 2]);
        assert!(p.ends_with(b"OPTIONS sip:a SIP/2.0\r\n\r\n"));
    }

    #[test]
    fn a_payload_too_big_for_the_length_field_is_not_encoded() {
        let big = vec![b'x'; MAX_PACKET];
        assert!(encode(&Capture {
            source: "[::1]:5060".parse().unwrap(),
            destination: "[::1]:5070".parse().unwrap(),
            ip_proto: 6,
            time: SystemTime::now(),
            capture_id: 1,
            auth_key: Some("k"),
            payload: &big,
        })
        .is_none());
    }
}
