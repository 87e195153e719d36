//! The `trusted` table: peers by source address and protocol, with an optional regular
//! expression on the From URI (`from_pattern`) and on the R-URI (`ruri_pattern`), a tag and
//! a priority (higher first). Kept in a hash by source address (db_mode 1), or read for
//! each call (db_mode 0) and matched the same way.

use ferrosip_api::Proto;
use regex::Regex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Which transports an entry admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoMatch {
    Any,
    One(Proto),
}

impl ProtoMatch {
    pub fn parse(s: &str) -> Option<ProtoMatch> {
        if s.eq_ignore_ascii_case("any") {
            Some(ProtoMatch::Any)
        } else {
            Proto::parse(s).map(ProtoMatch::One)
        }
    }

    fn admits(self, proto: Proto) -> bool {
        match self {
            ProtoMatch::Any => true,
            ProtoMatch::One(p) => p == proto,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ProtoMatch::Any => "any",
            ProtoMatch::One(p) => p.name(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct TrustedEntry {
    pub src_ip: String,
    pub proto: ProtoMatch,
    pub from_pattern: Option<Regex>,
    pub ruri_pattern: Option<Regex>,
    pub tag: Option<Arc<str>>,
    pub priority: i64,
}

impl TrustedEntry {
    /// An entry from column texts; a bad protocol or expression is an error naming it.
    pub fn new(
        src_ip: &str,
        proto: &str,
        from_pattern: &str,
        ruri_pattern: &str,
        tag: Option<String>,
        priority: i64,
    ) -> Result<TrustedEntry, String> {
        let err = |m: String| format!("trusted {src_ip}: {m}");
        let proto = ProtoMatch::parse(proto.trim()).ok_or_else(|| {
            err(format!(
                "unknown proto '{proto}' (any, udp, tcp, tls, sctp, ws, wss)"
            ))
        })?;
        let re = |p: &str, what: &str| -> Result<Option<Regex>, String> {
            if p.is_empty() {
                return Ok(None);
            }
            Regex::new(p)
                .map(Some)
                .map_err(|e| err(format!("{what} '{p}': {e}")))
        };
        Ok(TrustedEntry {
            src_ip: key(src_ip),
            proto,
            from_pattern: re(from_pattern, "from_pattern")?,
            ruri_pattern: re(ruri_pattern, "ruri_pattern")?,
            tag: tag.filter(|t| !t.is_empty()).map(Arc::from),
            priority,
        })
    }

    fn admits(&self, proto: Proto, from: Option<&str>, ruri: Option<&str>) -> bool {
        let re_ok = |re: &Option<Regex>, s: Option<&str>| match re {
            None => true,
            Some(re) => s.is_some_and(|s| re.is_match(s)),
        };
        self.proto.admits(proto)
            && re_ok(&self.from_pattern, from)
            && re_ok(&self.ruri_pattern, ruri)
    }
}

/// The hash key of a source address: an IP address in its canonical text (so that
/// `::ffff:192.0.2.1` and `192.0.2.1` meet), anything else as written, lower case.
pub fn key(src: &str) -> String {
    let s = src.trim();
    match s
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) => crate::address::canonical(ip).to_string(),
        Err(_) => s.to_ascii_lowercase(),
    }
}

/// Sorts entries for matching: higher priority first, table order otherwise.
pub fn order(entries: &mut [TrustedEntry]) {
    entries.sort_by(|a, b| b.priority.cmp(&a.priority));
}

/// What a trusted check found: the tags to add (in order) and how many entries matched.
#[derive(Debug, Default, PartialEq)]
pub struct TrustedMatch {
    pub matched: usize,
    pub tags: Vec<Arc<str>>,
}

/// Matches `entries` (ordered by [`order`]); with `all`, every matching entry counts
/// (peer_tag_mode 1), else the first.
pub fn match_entries<'a>(
    entries: impl IntoIterator<Item = &'a TrustedEntry>,
    proto: Proto,
    from: Option<&str>,
    ruri: Option<&str>,
    all: bool,
) -> TrustedMatch {
    let mut m = TrustedMatch::default();
    for e in entries {
        if e.admits(proto, from, ruri) {
            m.matched += 1;
            if let Some(t) = &e.tag {
                m.tags.push(t.clone());
            }
            if !all {
                break;
            }
        }
    }
    m
}

#[derive(Debug, Default)]
pub struct TrustedTable {
    by_src: HashMap<String, Vec<TrustedEntry>>,
    count: usize,
}

impl TrustedTable {
    pub fn build(rows: Vec<TrustedEntry>) -> TrustedTable {
        let count = rows.len();
        let mut by_src: HashMap<String, Vec<TrustedEntry>> = HashMap::new();
        for e in rows {
            by_src.entry(e.src_ip.clone()).or_default().push(e);
        }
        for list in by_src.values_mut() {
            order(list);
        }
        TrustedTable { by_src, count }
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn lookup(
        &self,
        src: &str,
        proto: Proto,
        from: Option<&str>,
        ruri: Option<&str>,
        all: bool,
    ) -> TrustedMatch {
        match self.by_src.get(&key(src)) {
            None => TrustedMatch::default(),
            Some(list) => match_entries(list, proto, from, ruri, all),
        }
    }

    /// Every entry, by source address then priority, for `permissions.trustedDump`.
    pub fn entries(&self) -> Vec<&TrustedEntry> {
        let mut keys: Vec<&String> = self.by_src.keys().collect();
        keys.sort();
        keys.into_iter()
            .flat_map(|k| self.by_src[k].iter())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(src: &str, proto: &str, from: &str, tag: &str, prio: i64) -> TrustedEntry {
        TrustedEntry::new(src, proto, from, "", Some(tag.into()), prio).unwrap()
    }

    #[test]
    fn source_protocol_pattern_priority() {
        let table = TrustedTable::build(vec![
            t(
                "192.0.2.5",
                "udp",
                "^sip:.*@carrier\\.example$",
                "carrier",
                1,
            ),
            t("192.0.2.5", "any", "", "fallback", 0),
            t("192.0.2.6", "tcp", "", "tcp-only", 0),
        ]);
        let f = Some("sip:100@carrier.example");
        let m = table.lookup("192.0.2.5", Proto::Udp, f, None, false);
        assert_eq!(m.tags, vec![Arc::from("carrier")]);
        let m = table.lookup("192.0.2.5", Proto::Udp, Some("sip:x@other"), None, false);
        assert_eq!(m.tags, vec![Arc::from("fallback")]);
        let m = table.lookup("192.0.2.5", Proto::Udp, f, None, true);
        assert_eq!(m.matched, 2, "peer_tag_mode 1 counts every match");
        assert_eq!(
            table
                .lookup("192.0.2.6", Proto::Udp, f, None, false)
                .matched,
            0
        );
        assert_eq!(
            table
                .lookup("::ffff:192.0.2.6", Proto::Tcp, f, None, false)
                .matched,
            1
        );
        assert_eq!(
            table
                .lookup("192.0.2.7", Proto::Tcp, f, None, false)
                .matched,
            0
        );
    }

    #[test]
    fn bad_rows_are_named() {
        let e = TrustedEntry::new("192.0.2.1", "carrier-pigeon", "", "", None, 0).unwrap_err();
        assert!(e.contains("proto"), "{e}");
        let e = TrustedEntry::new("192.0.2.1", "udp", "(", "", None, 0).unwrap_err();
        assert!(e.contains("from_pattern"), "{e}");
    }
}
