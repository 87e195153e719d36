//! The SDP as a media relay sees it: each m= stream's port and connection address, and the
//! body rewritten so that the far end sends its media to the relay (RFC 4566 §5.7, §5.14;
//! the a=rtcp attribute of RFC 3605).

/// Streams beyond this many are refused: each costs one control command, and a body from
/// the network must not make us send an unbounded number of them.
pub const MAX_STREAMS: usize = 16;

/// One m= line of the body.
#[derive(Clone, Debug, PartialEq)]
pub struct Stream {
    /// 1-based position among the m= lines (rtpproxy's "medianum").
    pub index: usize,
    /// The m= port; 0 is a stream turned off, which is not relayed.
    pub port: u16,
    /// The media-level c= address, else the session-level one.
    pub addr: Option<String>,
    /// Whether that address is IP6.
    pub ipv6: bool,
}

/// Where the relay wants a stream's media sent.
#[derive(Clone, Debug, PartialEq)]
pub struct Relay {
    pub port: u16,
    pub ip: String,
}

/// What else the rewrite does besides the relayed ports and addresses.
pub struct Rewrite<'a> {
    /// Rewrite the session-level c= even when every stream has its own (Kamailio's `c`).
    pub session_c: bool,
    /// Rewrite the o= address (Kamailio's `o`).
    pub origin: bool,
    /// The marker line to append when absent (empty: none).
    pub marker: &'a [u8],
}

fn lines(body: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    body.split_inclusive(|&c| c == b'\n').map(|raw| {
        let line = raw.trim_ascii_end();
        (line, &raw[line.len()..])
    })
}

/// `c=IN IP4 1.2.3.4[/ttl]` -> (address, is IP6).
fn connection(line: &[u8]) -> Option<(String, bool)> {
    let rest = std::str::from_utf8(line.strip_prefix(b"c=")?).ok()?;
    let mut f = rest.split_ascii_whitespace();
    let (_net, family, addr) = (f.next()?, f.next()?, f.next()?);
    let addr = addr.split('/').next().unwrap_or(addr);
    Some((addr.to_string(), family.eq_ignore_ascii_case("IP6")))
}

/// `m=audio 4000[/2] RTP/AVP 0` -> the port's byte range in the line.
fn port_range(line: &[u8]) -> Option<(usize, usize)> {
    if !line.starts_with(b"m=") {
        return None;
    }
    let start = line.iter().position(|&c| c == b' ')? + 1;
    let len = line[start..]
        .iter()
        .take_while(|c| c.is_ascii_digit())
        .count();
    (len > 0).then_some((start, start + len))
}

/// The body's streams, in order.
pub fn streams(body: &[u8]) -> Result<Vec<Stream>, String> {
    let mut session: Option<(String, bool)> = None;
    let mut out: Vec<Stream> = Vec::new();
    for (line, _) in lines(body) {
        if line.starts_with(b"m=") {
            if out.len() == MAX_STREAMS {
                return Err(format!("the SDP has more than {MAX_STREAMS} m= lines"));
            }
            let (s, e) = port_range(line).ok_or("an m= line without a port")?;
            let port = std::str::from_utf8(&line[s..e])
                .ok()
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or("an m= port out of range")?;
            out.push(Stream {
                index: out.len() + 1,
                port,
                addr: session.as_ref().map(|s| s.0.clone()),
                ipv6: session.as_ref().is_some_and(|s| s.1),
            });
        } else if let Some((addr, v6)) = connection(line) {
            match out.last_mut() {
                Some(m) => {
                    m.addr = Some(addr);
                    m.ipv6 = v6;
                }
                None => session = Some((addr, v6)),
            }
        }
    }
    if out.is_empty() {
        return Err("the SDP has no m= line".into());
    }
    Ok(out)
}

fn family(ip: &str) -> &'static str {
    if ip.contains(':') {
        "IP6"
    } else {
        "IP4"
    }
}

/// True when the body already carries `marker` (a relay earlier on the path took it).
pub fn has_marker(body: &[u8], marker: &[u8]) -> bool {
    let m = marker.trim_ascii();
    !m.is_empty() && lines(body).any(|(l, _)| l == m)
}

/// The body with each relayed stream (`relays[i]` for stream i+1; `None` left alone)
/// pointed at the relay.
pub fn rewrite(body: &[u8], relays: &[Option<Relay>], how: &Rewrite<'_>) -> Vec<u8> {
    let first = relays.iter().flatten().next();
    let mut media_c = vec![false; relays.len()];
    {
        let mut section = 0usize;
        for (line, _) in lines(body) {
            if line.starts_with(b"m=") {
                section += 1;
            } else if section > 0 && line.starts_with(b"c=") && section <= media_c.len() {
                media_c[section - 1] = true;
            }
        }
    }
    // The session-level c= serves every stream without its own: it must follow the relay
    // then, and otherwise only when asked.
    let session_c = how.session_c
        || relays
            .iter()
            .zip(&media_c)
            .any(|(r, has)| r.is_some() && !has);
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut section = 0usize;
    let mut last_eol: &[u8] = b"\r\n";
    for (line, eol) in lines(body) {
        if !eol.is_empty() {
            last_eol = eol;
        }
        let relay = section
            .checked_sub(1)
            .and_then(|i| relays.get(i))
            .and_then(Option::as_ref);
        if line.starts_with(b"m=") {
            section += 1;
            if let (Some(r), Some((s, e))) = (
                relays.get(section - 1).and_then(Option::as_ref),
                port_range(line),
            ) {
                out.extend_from_slice(&line[..s]);
                out.extend_from_slice(r.port.to_string().as_bytes());
                out.extend_from_slice(&line[e..]);
                out.extend_from_slice(eol);
                continue;
            }
        } else if line.starts_with(b"c=") && connection(line).is_some() {
            let target = if section == 0 {
                first.filter(|_| session_c)
            } else {
                relay
            };
            if let Some(r) = target {
                out.extend_from_slice(format!("c=IN {} {}", family(&r.ip), r.ip).as_bytes());
                out.extend_from_slice(eol);
                continue;
            }
        } else if let (Some(r), Some(rest)) = (relay, line.strip_prefix(b"a=rtcp:")) {
            // RFC 3605: RTCP goes to the relay's port + 1, at its address when one is given.
            let has_addr = rest.split(|&c| c == b' ').count() >= 4;
            out.extend_from_slice(b"a=rtcp:");
            out.extend_from_slice(r.port.saturating_add(1).to_string().as_bytes());
            if has_addr {
                out.extend_from_slice(format!(" IN {} {}", family(&r.ip), r.ip).as_bytes());
            }
            out.extend_from_slice(eol);
            continue;
        } else if how.origin && line.starts_with(b"o=") {
            let fields: Vec<&[u8]> = line[2..].split(|&c| c == b' ').collect();
            if let (Some(r), 6) = (first, fields.len()) {
                out.extend_from_slice(b"o=");
                for f in &fields[..4] {
                    out.extend_from_slice(f);
                    out.push(b' ');
                }
                out.extend_from_slice(format!("{} {}", family(&r.ip), r.ip).as_bytes());
                out.extend_from_slice(eol);
                continue;
            }
        }
        out.extend_from_slice(line);
        out.extend_from_slice(eol);
    }
    let marker = how.marker.trim_ascii();
    if !marker.is_empty() && !has_marker(body, marker) {
        if !out.is_empty() && !out.ends_with(b"\n") {
            out.extend_from_slice(last_eol);
        }
        out.extend_from_slice(marker);
        out.extend_from_slice(last_eol);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 192.168.1.20\r\ns=-\r\nc=IN IP4 192.168.1.20\r\nt=0 0\r\n\
        m=audio 4000 RTP/AVP 0 8\r\na=rtcp:4001\r\nm=video 0 RTP/AVP 31\r\nm=audio 5000/2 RTP/AVP 0\r\nc=IN IP4 10.0.0.9/127\r\n";

    #[test]
    fn streams_take_the_nearest_connection_address() {
        let s = streams(SDP.as_bytes()).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!((s[0].index, s[0].port), (1, 4000));
        assert_eq!(s[0].addr.as_deref(), Some("192.168.1.20"));
        assert_eq!(s[1].port, 0);
        assert_eq!((s[2].port, s[2].addr.as_deref()), (5000, Some("10.0.0.9")));
        assert!(streams(b"v=0\r\nc=IN IP4 1.2.3.4\r\n").is_err());
        let many = "m=audio 1 RTP/AVP 0\r\n".repeat(MAX_STREAMS + 1);
        assert!(streams(many.as_bytes()).is_err());
        assert!(streams(b"m=audio 70000 RTP/AVP 0\r\n").is_err());
    }

    #[test]
    fn rewrite_points_relayed_streams_at_the_relay() {
        let relays = [
            Some(Relay {
                port: 30000,
                ip: "203.0.113.5".into(),
            }),
            None,
            Some(Relay {
                port: 30002,
                ip: "203.0.113.5".into(),
            }),
        ];
        let how = Rewrite {
            session_c: false,
            origin: true,
            marker: b"a=nortpproxy:yes\r\n",
        };
        let out = String::from_utf8(rewrite(SDP.as_bytes(), &relays, &how)).unwrap();
        assert_eq!(
            out,
            "v=0\r\no=- 1 1 IN IP4 203.0.113.5\r\ns=-\r\nc=IN IP4 203.0.113.5\r\nt=0 0\r\n\
             m=audio 30000 RTP/AVP 0 8\r\na=rtcp:30001\r\nm=video 0 RTP/AVP 31\r\nm=audio 30002/2 RTP/AVP 0\r\n\
             c=IN IP4 203.0.113.5\r\na=nortpproxy:yes\r\n"
        );
        assert!(has_marker(out.as_bytes(), b"a=nortpproxy:yes"));
        // Every stream with its own c=: the session-level one stays unless asked.
        let own = "v=0\r\nc=IN IP4 1.1.1.1\r\nm=audio 4000 RTP/AVP 0\r\nc=IN IP4 2.2.2.2\r\n";
        let only = [Some(Relay {
            port: 1,
            ip: "::1".into(),
        })];
        let keep = Rewrite {
            session_c: false,
            origin: false,
            marker: b"",
        };
        assert_eq!(
            String::from_utf8(rewrite(own.as_bytes(), &only, &keep)).unwrap(),
            "v=0\r\nc=IN IP4 1.1.1.1\r\nm=audio 1 RTP/AVP 0\r\nc=IN IP6 ::1\r\n"
        );
        let change = Rewrite {
            session_c: true,
            ..keep
        };
        assert!(String::from_utf8(rewrite(own.as_bytes(), &only, &change))
            .unwrap()
            .starts_with("v=0\r\nc=IN IP6 ::1\r\n"));
    }
}
