//! What `load_gws()` leaves in `gw_uri_avp` for `next_gw()`: one value per gateway, in the
//! field order Kamailio uses (`index|scheme|strip|prefix|tag|ip|hostname|port|params|
//! transport|flags|rule_id`), so it survives into `failure_route` with the transaction's
//! AVPs and does not depend on the tables still being the same after a reload. Unlike
//! Kamailio, the IP address is written as text (Kamailio writes an IPv4 as its integer).

use crate::data::Gateway;
use std::net::IpAddr;

/// One decoded `gw_uri_avp` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GwEntry {
    /// 1-based index of the gateway in its instance (what defunct_gw_avp keeps).
    pub index: u32,
    pub scheme: String,
    pub strip: usize,
    pub prefix: String,
    pub tag: String,
    pub ip: Option<IpAddr>,
    pub hostname: String,
    pub port: Option<u16>,
    pub params: String,
    /// `;transport=x` or empty.
    pub transport: String,
    pub flags: u32,
    pub rule_id: u32,
}

impl GwEntry {
    pub fn of(index: u32, gw: &Gateway, rule_id: u32) -> GwEntry {
        GwEntry {
            index,
            scheme: gw.scheme.to_string(),
            strip: gw.strip as usize,
            prefix: gw.prefix.clone(),
            tag: gw.tag.clone(),
            ip: gw.ip,
            hostname: gw.hostname.clone(),
            port: (gw.port > 0).then_some(gw.port),
            params: gw.params.clone(),
            transport: gw
                .transport
                .map(|t| format!(";transport={}", t.name()))
                .unwrap_or_default(),
            flags: gw.flags,
            rule_id,
        }
    }

    pub fn encode(&self) -> String {
        let ip = match self.ip {
            Some(IpAddr::V6(v6)) => format!("[{v6}]"),
            Some(ip) => ip.to_string(),
            None => String::new(),
        };
        format!(
            "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
            self.index,
            self.scheme,
            self.strip,
            self.prefix,
            self.tag,
            ip,
            self.hostname,
            self.port.map(|p| p.to_string()).unwrap_or_default(),
            self.params,
            self.transport,
            self.flags,
            self.rule_id
        )
    }

    /// Parses a value; `None` when it is not one `encode` wrote (a script may have
    /// written anything into the AVP).
    pub fn decode(value: &[u8]) -> Option<GwEntry> {
        let text = std::str::from_utf8(value).ok()?;
        let f: Vec<&str> = text.split('|').collect();
        if f.len() != 12 {
            return None;
        }
        let ip = match f[5] {
            "" => None,
            s => Some(
                s.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse()
                    .ok()?,
            ),
        };
        Some(GwEntry {
            index: f[0].parse().ok()?,
            scheme: f[1].to_string(),
            strip: f[2].parse().ok()?,
            prefix: f[3].to_string(),
            tag: f[4].to_string(),
            ip,
            hostname: f[6].to_string(),
            port: match f[7] {
                "" => None,
                p => Some(p.parse().ok()?),
            },
            params: f[8].to_string(),
            transport: f[9].to_string(),
            flags: f[10].parse().ok()?,
            rule_id: f[11].parse().ok()?,
        })
    }

    /// The Request-URI and, when the gateway has both an IP address and a hostname, the
    /// destination URI (`$du`) for the user `user`, as Kamailio's next_gw() builds them:
    /// the user loses `strip` characters and gains the gateway's prefix (unless
    /// `keep_user`); with both an address and a hostname the hostname goes into the
    /// R-URI and the address, port and transport into `$du`. `None` when `strip` is
    /// longer than the user.
    pub fn uris(&self, user: &[u8], keep_user: bool) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
        let (strip, prefix) = if keep_user {
            (0, "")
        } else {
            (self.strip, self.prefix.as_str())
        };
        let rest = user.get(strip..)?;
        let ip = self.ip.map(|ip| match ip {
            IpAddr::V6(v6) => format!("[{v6}]"),
            ip => ip.to_string(),
        });
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        let mut ruri = Vec::with_capacity(64);
        ruri.extend_from_slice(self.scheme.as_bytes());
        ruri.extend_from_slice(prefix.as_bytes());
        ruri.extend_from_slice(rest);
        ruri.push(b'@');
        match ip {
            Some(ip) if !self.hostname.is_empty() => {
                ruri.extend_from_slice(self.hostname.as_bytes());
                ruri.extend_from_slice(self.params.as_bytes());
                let du = format!("{}{}{}{}", self.scheme, ip, port, self.transport);
                Some((ruri, Some(du.into_bytes())))
            }
            ip => {
                let host = ip.unwrap_or_else(|| self.hostname.clone());
                ruri.extend_from_slice(host.as_bytes());
                ruri.extend_from_slice(port.as_bytes());
                ruri.extend_from_slice(self.transport.as_bytes());
                ruri.extend_from_slice(self.params.as_bytes());
                Some((ruri, None))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> GwEntry {
        GwEntry {
            index: 3,
            scheme: "sip:".into(),
            strip: 2,
            prefix: "99".into(),
            tag: "carrier-a".into(),
            ip: Some("192.0.2.7".parse().unwrap()),
            hostname: String::new(),
            port: Some(5080),
            params: ";user=phone".into(),
            transport: ";transport=tcp".into(),
            flags: 5,
            rule_id: 42,
        }
    }

    #[test]
    fn round_trip() {
        let e = entry();
        assert_eq!(
            e.encode(),
            "3|sip:|2|99|carrier-a|192.0.2.7||5080|;user=phone|;transport=tcp|5|42"
        );
        assert_eq!(GwEntry::decode(e.encode().as_bytes()), Some(e.clone()));
        let mut v6 = e;
        v6.ip = Some("2001:db8::1".parse().unwrap());
        v6.port = None;
        assert_eq!(GwEntry::decode(v6.encode().as_bytes()), Some(v6));
        assert_eq!(GwEntry::decode(b"1|2|3"), None);
        assert_eq!(GwEntry::decode(b"x|sip:|0||||||||0|0"), None);
    }

    #[test]
    fn request_uri_from_ip_only() {
        let (ruri, du) = entry().uris(b"0049301234", false).unwrap();
        assert_eq!(
            String::from_utf8(ruri).unwrap(),
            "sip:9949301234@192.0.2.7:5080;transport=tcp;user=phone"
        );
        assert_eq!(du, None);
        let (ruri, _) = entry().uris(b"0049301234", true).unwrap();
        assert!(ruri.starts_with(b"sip:0049301234@"));
        assert!(
            entry().uris(b"0", false).is_none(),
            "strip longer than the user"
        );
    }

    #[test]
    fn hostname_and_ip_split_into_ruri_and_du() {
        let mut e = entry();
        e.hostname = "gw.carrier.example".into();
        e.ip = Some("2001:db8::5".parse().unwrap());
        let (ruri, du) = e.uris(b"12345", false).unwrap();
        assert_eq!(
            String::from_utf8(ruri).unwrap(),
            "sip:99345@gw.carrier.example;user=phone"
        );
        assert_eq!(
            String::from_utf8(du.unwrap()).unwrap(),
            "sip:[2001:db8::5]:5080;transport=tcp"
        );
        e.ip = None;
        let (ruri, du) = e.uris(b"12345", false).unwrap();
        assert_eq!(
            String::from_utf8(ruri).unwrap(),
            "sip:99345@gw.carrier.example:5080;transport=tcp;user=phone"
        );
        assert_eq!(du, None);
    }
}
