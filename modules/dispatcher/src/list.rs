//! Destination records as an operator writes them: the list file
//! (`setid uri [flags [priority [attrs]]]`, `#` comments) or rows of the `dispatcher`
//! table, and their attributes (`weight=50;duid=pbx1;...`).

use bytes::Bytes;
use ferrosip_sip::Uri;

/// Destination state bits, as in the list file's flags column and Kamailio's RPC.
pub mod flag {
    /// Not selected; probing (if enabled) may bring it back.
    pub const INACTIVE: u32 = 1;
    /// A failure was seen; still selected until `ds_probing_threshold` failures.
    pub const TRYING: u32 = 2;
    /// Disabled by the operator: never selected, never probed.
    pub const DISABLED: u32 = 4;
    /// Sent keepalive probes.
    pub const PROBING: u32 = 8;
    /// Do not resolve the hostname at load (SRV/NAPTR-only names).
    pub const NO_DNS: u32 = 16;
    /// Never probed, whatever `ds_probing_mode` says.
    pub const NO_PING: u32 = 32;
    /// The bits that make up the state shown by `dispatcher.list`.
    pub const STATE: u32 = INACTIVE | TRYING | DISABLED | PROBING;
}

/// One destination as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DestSpec {
    pub setid: i32,
    pub uri: Bytes,
    pub flags: u32,
    pub priority: i32,
    /// The attribute string as written (`weight=50;duid=a`).
    pub attrs: Bytes,
}

/// The attributes dispatcher itself reads; others stay in the string for `attrs_pvname`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attrs {
    /// Unique id for call-load dispatching (algorithm 10).
    pub duid: Option<Bytes>,
    /// Calls a destination takes at most under algorithm 10 (0: no limit).
    pub maxload: u32,
    /// Percentage of calls under algorithm 9 (1..=100, else 0).
    pub weight: u32,
    /// Relative weight under algorithm 11 (1..=100, else 0).
    pub rweight: u32,
    /// Sending socket (`udp:10.0.0.1:5060`).
    pub socket: Option<Bytes>,
    /// From URI of this destination's probes.
    pub ping_from: Option<Bytes>,
    /// Outbound proxy for this destination's probes.
    pub obproxy: Option<Bytes>,
}

impl Attrs {
    pub fn parse(raw: &[u8]) -> Attrs {
        let mut a = Attrs::default();
        for item in raw.split(|c| *c == b';') {
            let item = item.trim_ascii();
            if item.is_empty() {
                continue;
            }
            let (name, value) = match item.iter().position(|c| *c == b'=') {
                Some(p) => (item[..p].trim_ascii(), item[p + 1..].trim_ascii()),
                None => (item, &b""[..]),
            };
            let text = || Some(Bytes::copy_from_slice(value)).filter(|v| !v.is_empty());
            // A weight outside 1..=100 excludes the destination from the weighted
            // distributions, as Kamailio documents.
            let percent = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse::<u32>().ok())
                    .filter(|w| (1..=100).contains(w))
                    .unwrap_or(0)
            };
            match name.to_ascii_lowercase().as_slice() {
                b"duid" => a.duid = text(),
                b"maxload" => {
                    a.maxload = std::str::from_utf8(value)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0)
                }
                b"weight" => a.weight = percent(),
                b"rweight" => a.rweight = percent(),
                b"socket" => a.socket = text(),
                b"ping_from" => a.ping_from = text(),
                b"obproxy" => a.obproxy = text(),
                _ => {}
            }
        }
        a
    }
}

/// Parses an integer written in decimal or as `0x..` hexadecimal.
fn parse_number(s: &str) -> Option<i64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => i64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Checks that a destination address is a SIP URI with a host.
pub fn check_uri(uri: &[u8]) -> Result<(), String> {
    let parsed = Uri::parse(uri).map_err(|e| format!("not a SIP URI: {e}"))?;
    if !matches!(
        parsed.scheme().to_ascii_lowercase().as_slice(),
        b"sip" | b"sips"
    ) {
        return Err("not a sip: or sips: URI".into());
    }
    if parsed.host().is_none_or(|h| h.is_empty()) {
        return Err("the URI has no host".into());
    }
    Ok(())
}

/// Parses a destination list file. Errors name the line.
pub fn parse_list(text: &str) -> Result<Vec<DestSpec>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let at = |what: String| format!("line {}: {what}", n + 1);
        let mut fields = line.split_whitespace();
        let setid = fields.next().unwrap_or_default();
        let setid: i32 = parse_number(setid)
            .and_then(|v| i32::try_from(v).ok())
            .ok_or_else(|| at(format!("set id \"{setid}\" is not a number")))?;
        let uri = fields
            .next()
            .ok_or_else(|| at("destination URI missing".into()))?;
        check_uri(uri.as_bytes()).map_err(|e| at(format!("\"{uri}\": {e}")))?;
        let flags = match fields.next() {
            Some(f) => parse_number(f)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| at(format!("flags \"{f}\" are not a number")))?,
            None => 0,
        };
        let priority = match fields.next() {
            Some(p) => parse_number(p)
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(|| at(format!("priority \"{p}\" is not a number")))?,
            None => 0,
        };
        // The attributes are the rest of the line (they contain no blanks; a
        // description column after them is ignored).
        let attrs = fields.next().unwrap_or_default();
        out.push(DestSpec {
            setid,
            uri: Bytes::copy_from_slice(uri.as_bytes()),
            flags,
            priority,
            attrs: Bytes::copy_from_slice(attrs.as_bytes()),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_file_fields_comments_and_defaults() {
        let text = "# PBX pool\n\
                    1 sip:10.0.0.1:5060 0 5 weight=60;duid=a  # first\n\
                    1 sip:10.0.0.2:5060;transport=tcp 0x8\n\
                    \n\
                    2 sip:pbx.example.com\n";
        let l = parse_list(text).unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].setid, 1);
        assert_eq!(l[0].priority, 5);
        assert_eq!(&l[0].attrs[..], b"weight=60;duid=a");
        assert_eq!(l[1].flags, flag::PROBING);
        assert_eq!(&l[1].uri[..], b"sip:10.0.0.2:5060;transport=tcp");
        assert_eq!((l[2].setid, l[2].flags, l[2].priority), (2, 0, 0));
        let a = Attrs::parse(&l[0].attrs);
        assert_eq!(a.weight, 60);
        assert_eq!(a.duid.as_deref(), Some(&b"a"[..]));
    }

    #[test]
    fn list_file_errors_name_the_line() {
        let e = parse_list("1 sip:a\nx sip:b\n").unwrap_err();
        assert!(e.starts_with("line 2:"), "{e}");
        let e = parse_list("1\n").unwrap_err();
        assert!(e.contains("URI missing"), "{e}");
        let e = parse_list("1 http://x\n").unwrap_err();
        assert!(e.contains("sip:"), "{e}");
        let e = parse_list("1 sip:a zz\n").unwrap_err();
        assert!(e.contains("flags"), "{e}");
    }

    #[test]
    fn attributes_out_of_range_weights_are_zero() {
        let a = Attrs::parse(b"weight=0;rweight=101;maxload=20;socket=udp:1.2.3.4:5060;x=y");
        assert_eq!((a.weight, a.rweight, a.maxload), (0, 0, 20));
        assert_eq!(a.socket.as_deref(), Some(&b"udp:1.2.3.4:5060"[..]));
        assert_eq!(Attrs::parse(b"").weight, 0);
    }
}
