//! fix_nated_sdp(): SDP addresses rewritten to where the media really comes from.

use crate::checks::connection_address;
use std::net::IpAddr;

/// Adds `a=direction:active`.
pub const ADD_DIRECTION: i64 = 0x01;
/// Rewrites the c= addresses.
pub const REWRITE_CONNECTION: i64 = 0x02;
/// Adds the `nortpproxy_str` line.
pub const ADD_NORTPPROXY: i64 = 0x04;
/// Rewrites the o= address.
pub const REWRITE_ORIGIN: i64 = 0x08;

/// What fix_nated_sdp() is told to do.
pub struct SdpFix<'a> {
    pub flags: i64,
    pub ip: IpAddr,
    pub nortpproxy: &'a [u8],
    pub old_media_ip: bool,
}

fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IP4"
    } else {
        "IP6"
    }
}

/// The body rewritten, and whether an address was replaced. `None`: nothing changed.
pub fn fix_sdp(body: &[u8], fix: &SdpFix<'_>) -> Option<(Vec<u8>, bool)> {
    let ip = fix.ip.to_string();
    let mut out = Vec::with_capacity(body.len() + 96);
    let mut replaced = false;
    let mut added = false;
    let nortpproxy_present = !fix.nortpproxy.is_empty()
        && body
            .windows(fix.nortpproxy.trim_ascii().len().max(1))
            .any(|w| w == fix.nortpproxy.trim_ascii());
    for raw in body.split_inclusive(|&c| c == b'\n') {
        let line = raw.trim_ascii_end();
        let eol: &[u8] = if raw.ends_with(b"\r\n") {
            b"\r\n"
        } else {
            b"\n"
        };
        if fix.flags & REWRITE_CONNECTION != 0 {
            if let Some(addr) = connection_address(line) {
                // 0.0.0.0 means "on hold" (RFC 2543): left as it is.
                if addr != b"0.0.0.0" && addr != ip.as_bytes() {
                    out.extend_from_slice(format!("c=IN {} {ip}", family(fix.ip)).as_bytes());
                    out.extend_from_slice(eol);
                    if fix.old_media_ip {
                        out.extend_from_slice(b"a=oldmediaip:");
                        out.extend_from_slice(addr);
                        out.extend_from_slice(eol);
                    }
                    replaced = true;
                    added |= add_attributes(&mut out, fix, eol, added, nortpproxy_present);
                    continue;
                }
            }
        }
        if fix.flags & REWRITE_ORIGIN != 0 && line.starts_with(b"o=") {
            let fields: Vec<&[u8]> = line[2..].split(|&c| c == b' ').collect();
            if fields.len() == 6 && fields[5] != ip.as_bytes() {
                out.extend_from_slice(b"o=");
                for f in &fields[..4] {
                    out.extend_from_slice(f);
                    out.push(b' ');
                }
                out.extend_from_slice(format!("{} {ip}", family(fix.ip)).as_bytes());
                out.extend_from_slice(eol);
                replaced = true;
                continue;
            }
        }
        out.extend_from_slice(raw);
        if connection_address(line).is_some() {
            added |= add_attributes(&mut out, fix, eol, added, nortpproxy_present);
        }
    }
    (out != body).then_some((out, replaced))
}

/// After the first c= line: the direction and nortpproxy attributes asked for.
fn add_attributes(
    out: &mut Vec<u8>,
    fix: &SdpFix<'_>,
    eol: &[u8],
    added: bool,
    present: bool,
) -> bool {
    if added {
        return false;
    }
    if fix.flags & ADD_DIRECTION != 0 {
        out.extend_from_slice(b"a=direction:active");
        out.extend_from_slice(eol);
    }
    if fix.flags & ADD_NORTPPROXY != 0 && !present && !fix.nortpproxy.is_empty() {
        out.extend_from_slice(fix.nortpproxy.trim_ascii_end());
        out.extend_from_slice(eol);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.168.1.20\r\ns=-\r\nc=IN IP4 192.168.1.20\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

    #[test]
    fn addresses_are_rewritten_and_lines_added() {
        let fix = SdpFix {
            flags: ADD_DIRECTION | REWRITE_CONNECTION | ADD_NORTPPROXY | REWRITE_ORIGIN,
            ip: "203.0.113.7".parse().unwrap(),
            nortpproxy: b"a=nortpproxy:yes\r\n",
            old_media_ip: true,
        };
        let (body, replaced) = fix_sdp(SDP.as_bytes(), &fix).unwrap();
        assert!(replaced);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "v=0\r\no=- 1 1 IN IP4 203.0.113.7\r\ns=-\r\nc=IN IP4 203.0.113.7\r\na=oldmediaip:192.168.1.20\r\n\
             a=direction:active\r\na=nortpproxy:yes\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
        );
        let held = SDP.replace("c=IN IP4 192.168.1.20", "c=IN IP4 0.0.0.0");
        let only_c = SdpFix {
            flags: REWRITE_CONNECTION,
            ..fix
        };
        assert!(fix_sdp(held.as_bytes(), &only_c).is_none());
    }
}
