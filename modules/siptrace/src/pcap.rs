//! A local capture file in the classic pcap format (what tcpdump and Wireshark read), with
//! link type "raw IP": each SIP message becomes one IPv4 or IPv6 packet with a synthesized
//! UDP header carrying the message's addresses and ports, whatever transport it came
//! over, so Wireshark's SIP dissector shows it on its ports.

use std::io::Write;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

/// LINKTYPE_RAW: the packet begins with the IP header, v4 or v6 by its first nibble.
const LINKTYPE_RAW: u32 = 101;
const SNAPLEN: u32 = 65_535;
/// The most SIP payload one synthesized datagram carries (IPv4 total length is 16 bits).
pub const MAX_PAYLOAD: usize = 65_535 - 20 - 8;

/// The file header: magic, version 2.4, UTC, no accuracy figure, snap length, link type.
pub fn file_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_RAW.to_le_bytes());
    h
}

fn checksum_add(mut sum: u32, data: &[u8]) -> u32 {
    for pair in data.chunks(2) {
        let word = if pair.len() == 2 {
            u16::from_be_bytes([pair[0], pair[1]])
        } else {
            u16::from_be_bytes([pair[0], 0])
        };
        sum += word as u32;
    }
    sum
}

fn checksum_fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// One record (record header + IP + UDP + payload); `None` when the payload is too big.
pub fn record(
    source: SocketAddr,
    destination: SocketAddr,
    time: SystemTime,
    payload: &[u8],
) -> Option<Vec<u8>> {
    if payload.len() > MAX_PAYLOAD {
        return None;
    }
    let udp_len = (8 + payload.len()) as u16;
    let mut udp = Vec::with_capacity(8);
    udp.extend_from_slice(&source.port().to_be_bytes());
    udp.extend_from_slice(&destination.port().to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(IpAddr::V6(a), IpAddr::V4),
        a => a,
    };
    let mut packet = Vec::with_capacity(48 + payload.len());
    match (canon(source.ip()), canon(destination.ip())) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            // A UDP checksum of 0 means "none" over IPv4.
            udp.extend_from_slice(&[0, 0]);
            let mut ip = [0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&(20 + udp_len).to_be_bytes());
            ip[6] = 0x40; // don't fragment
            ip[8] = 64; // TTL
            ip[9] = 17; // UDP
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let sum = checksum_fold(checksum_add(0, &ip));
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            packet.extend_from_slice(&ip);
        }
        (s, d) => {
            let (s, d) = (v6(s), v6(d));
            // IPv6 requires the UDP checksum: over the pseudo-header, UDP header and data.
            let mut sum = checksum_add(0, &s.octets());
            sum = checksum_add(sum, &d.octets());
            sum += udp_len as u32 + 17;
            sum = checksum_add(sum, &udp);
            sum = checksum_add(sum, payload);
            let c = match checksum_fold(sum) {
                0 => 0xffff,
                c => c,
            };
            udp.extend_from_slice(&c.to_be_bytes());
            let mut ip = [0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&udp_len.to_be_bytes());
            ip[6] = 17;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            packet.extend_from_slice(&ip);
        }
    }
    packet.extend_from_slice(&udp);
    packet.extend_from_slice(payload);
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut out = Vec::with_capacity(16 + packet.len());
    out.extend_from_slice(&(since.as_secs() as u32).to_le_bytes());
    out.extend_from_slice(&since.subsec_micros().to_le_bytes());
    out.extend_from_slice(&(packet.len() as u32).to_le_bytes());
    out.extend_from_slice(&(packet.len() as u32).to_le_bytes());
    out.extend_from_slice(&packet);
    Some(out)
}

/// An open capture file with a size limit: past it, further messages are left out (and
/// that is logged once), so a forgotten trace cannot fill the disk.
pub struct PcapFile {
    file: std::fs::File,
    written: u64,
    limit: u64,
    full: bool,
}

impl PcapFile {
    /// Creates (truncates) `path` and writes the file header.
    pub fn create(path: &std::path::Path, limit: u64) -> std::io::Result<PcapFile> {
        let mut file = std::fs::File::create(path)?;
        file.write_all(&file_header())?;
        Ok(PcapFile {
            file,
            written: 24,
            limit,
            full: false,
        })
    }

    /// Appends one message; each record is one `write` so a reader never sees half of one
    /// unless the disk fails.
    pub fn write(&mut self, source: SocketAddr, destination: SocketAddr, payload: &[u8]) {
        let Some(rec) = record(source, destination, SystemTime::now(), payload) else {
            return;
        };
        if self.written + rec.len() as u64 > self.limit {
            if !self.full {
                self.full = true;
                tracing::warn!(
                    limit = self.limit,
                    "siptrace: trace_pcap_file reached trace_pcap_max_size; further messages are not written"
                );
            }
            return;
        }
        match self.file.write_all(&rec) {
            Ok(()) => self.written += rec.len() as u64,
            Err(e) => {
                if !self.full {
                    self.full = true;
                    tracing::warn!("siptrace: cannot write trace_pcap_file: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_record_has_a_valid_header_checksum() {
        let r = record(
            "10.0.0.1:5060".parse().unwrap(),
            "10.0.0.2:5070".parse().unwrap(),
            SystemTime::now(),
            b"SIP/2.0 200 OK\r\n\r\n",
        )
        .unwrap();
        let ip = &r[16..36];
        assert_eq!(checksum_fold(checksum_add(0, ip)), 0);
        assert_eq!(
            u32::from_le_bytes(r[8..12].try_into().unwrap()) as usize,
            r.len() - 16
        );
    }

    #[test]
    fn an_ipv6_record_has_a_valid_udp_checksum() {
        let payload = b"OPTIONS sip:x SIP/2.0\r\n\r\n";
        let r = record(
            "[2001:db8::1]:5060".parse().unwrap(),
            "[2001:db8::2]:5070".parse().unwrap(),
            SystemTime::now(),
            payload,
        )
        .unwrap();
        let ip = &r[16..56];
        let udp = &r[56..];
        let mut sum = checksum_add(0, &ip[8..40]);
        sum += udp.len() as u32 + 17;
        sum = checksum_add(sum, udp);
        assert_eq!(checksum_fold(sum), 0);
    }
}
