//! The `address` table in memory: exact addresses (IPv4 /32, IPv6 /128) in a hash by IP,
//! subnets in a hash by (prefix length, network) probed once per distinct prefix length,
//! so a lookup costs one hash probe plus one per mask length in use, whatever the table
//! size. As in Kamailio, exact addresses are checked before subnets, and a port of 0
//! matches any port.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// One row of the address table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddrEntry {
    pub grp: u32,
    pub ip: IpAddr,
    pub mask: u8,
    pub port: u16,
    pub tag: Option<Arc<str>>,
}

impl AddrEntry {
    fn port_matches(&self, port: u16) -> bool {
        self.port == 0 || self.port == port
    }
}

/// Which subnet wins when several hold an address (`subnet_match_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubnetMatch {
    /// 0: the lowest group (Kamailio keeps subnets sorted by group, first match wins).
    FirstGroup,
    /// 1: the longest mask.
    MostSpecific,
}

/// IPv4-mapped IPv6 addresses are their IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn full_mask(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// The network of `ip` under a `mask`-bit prefix.
fn network(ip: IpAddr, mask: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if mask == 0 {
                0
            } else {
                u32::MAX << (32 - mask)
            };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if mask == 0 {
                0
            } else {
                u128::MAX << (128 - mask)
            };
            IpAddr::V6((bits & m).into())
        }
    }
}

#[derive(Debug, Default)]
pub struct AddressTable {
    /// Exact addresses, each list sorted by group (stable: table order within a group).
    exact: HashMap<IpAddr, Vec<AddrEntry>>,
    /// Subnets by (mask, network), each list sorted by group.
    subnets: HashMap<(u8, IpAddr), Vec<AddrEntry>>,
    /// Mask lengths in use, longest first, per family.
    v4_masks: Vec<u8>,
    v6_masks: Vec<u8>,
    subnet_count: usize,
    exact_count: usize,
}

impl AddressTable {
    /// Builds the table; more than `max_subnets` subnets is an error, as in Kamailio.
    pub fn build(rows: Vec<AddrEntry>, max_subnets: usize) -> Result<AddressTable, String> {
        let mut t = AddressTable::default();
        for mut e in rows {
            e.ip = canonical(e.ip);
            if e.mask > full_mask(&e.ip) {
                return Err(format!(
                    "address {}/{}: mask longer than the address",
                    e.ip, e.mask
                ));
            }
            if e.mask == full_mask(&e.ip) {
                t.exact.entry(e.ip).or_default().push(e);
                t.exact_count += 1;
            } else {
                t.subnet_count += 1;
                if t.subnet_count > max_subnets {
                    return Err(format!(
                        "more than max_subnets ({max_subnets}) subnets in the address table"
                    ));
                }
                let masks = if e.ip.is_ipv4() {
                    &mut t.v4_masks
                } else {
                    &mut t.v6_masks
                };
                if !masks.contains(&e.mask) {
                    masks.push(e.mask);
                }
                let net = network(e.ip, e.mask);
                e.ip = net;
                t.subnets.entry((e.mask, net)).or_default().push(e);
            }
        }
        for list in t.exact.values_mut().chain(t.subnets.values_mut()) {
            list.sort_by_key(|e| e.grp);
        }
        t.v4_masks.sort_unstable_by(|a, b| b.cmp(a));
        t.v6_masks.sort_unstable_by(|a, b| b.cmp(a));
        Ok(t)
    }

    pub fn len(&self) -> (usize, usize) {
        (self.exact_count, self.subnet_count)
    }

    /// The entry that admits `ip:port` (in `grp` when given): an exact address first, then
    /// a subnet chosen by `mode`.
    pub fn find(
        &self,
        ip: IpAddr,
        port: u16,
        grp: Option<u32>,
        mode: SubnetMatch,
    ) -> Option<&AddrEntry> {
        let ip = canonical(ip);
        let wanted = |e: &&AddrEntry| e.port_matches(port) && grp.map_or(true, |g| e.grp == g);
        if let Some(e) = self.exact.get(&ip).and_then(|l| l.iter().find(wanted)) {
            return Some(e);
        }
        let masks = if ip.is_ipv4() {
            &self.v4_masks
        } else {
            &self.v6_masks
        };
        let mut best: Option<&AddrEntry> = None;
        for &mask in masks {
            let Some(e) = self
                .subnets
                .get(&(mask, network(ip, mask)))
                .and_then(|l| l.iter().find(wanted))
            else {
                continue;
            };
            if mode == SubnetMatch::MostSpecific {
                return Some(e);
            }
            if best.map_or(true, |b| e.grp < b.grp) {
                best = Some(e);
            }
        }
        best
    }

    /// Exact entries, by group then address, for `permissions.addressDump`.
    pub fn exact_entries(&self) -> Vec<&AddrEntry> {
        let mut v: Vec<&AddrEntry> = self.exact.values().flatten().collect();
        v.sort_by_key(|e| (e.grp, e.ip, e.port));
        v
    }

    /// Subnet entries (network address), by group then network, for
    /// `permissions.subnetDump`.
    pub fn subnet_entries(&self) -> Vec<&AddrEntry> {
        let mut v: Vec<&AddrEntry> = self.subnets.values().flatten().collect();
        v.sort_by_key(|e| (e.grp, e.ip, e.mask, e.port));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(grp: u32, ip: &str, mask: u8, port: u16, tag: &str) -> AddrEntry {
        AddrEntry {
            grp,
            ip: ip.parse().unwrap(),
            mask,
            port,
            tag: (!tag.is_empty()).then(|| Arc::from(tag)),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn exact_then_subnets_with_ports_and_groups() {
        let t = AddressTable::build(
            vec![
                e(1, "192.0.2.10", 32, 0, "pbx"),
                e(2, "192.0.2.10", 32, 5080, "other"),
                e(3, "10.0.0.0", 8, 0, "wide"),
                e(2, "10.1.2.77", 16, 5060, "narrow"),
                e(4, "2001:db8::", 32, 0, "v6"),
            ],
            16,
        )
        .unwrap();
        assert_eq!(t.len(), (2, 3));
        let fm = SubnetMatch::FirstGroup;
        let ms = SubnetMatch::MostSpecific;
        assert_eq!(t.find(ip("192.0.2.10"), 1, None, fm).unwrap().grp, 1);
        assert_eq!(t.find(ip("192.0.2.10"), 5080, Some(2), fm).unwrap().grp, 2);
        assert!(t.find(ip("192.0.2.10"), 5081, Some(2), fm).is_none());
        assert!(t.find(ip("192.0.2.11"), 1, None, fm).is_none());
        // 10.1.x.x is in both subnets: group 2 is lower, /16 more specific.
        assert_eq!(t.find(ip("10.1.9.9"), 5060, None, fm).unwrap().grp, 2);
        assert_eq!(t.find(ip("10.1.9.9"), 5060, None, ms).unwrap().mask, 16);
        assert_eq!(t.find(ip("10.1.9.9"), 5061, None, fm).unwrap().grp, 3);
        assert_eq!(t.find(ip("10.1.9.9"), 5060, Some(3), ms).unwrap().grp, 3);
        assert_eq!(
            t.find(ip("::ffff:10.200.0.1"), 1, None, fm)
                .unwrap()
                .tag
                .as_deref(),
            Some("wide"),
            "v4-mapped"
        );
        assert_eq!(t.find(ip("2001:db8:1::5"), 9, None, fm).unwrap().grp, 4);
        assert!(t.find(ip("2001:db9::5"), 9, None, fm).is_none());
        assert_eq!(t.subnet_entries()[0].ip, ip("10.1.0.0"), "network stored");
    }

    #[test]
    fn limits_and_bad_masks() {
        let rows = vec![e(1, "10.0.0.0", 8, 0, ""), e(1, "10.0.0.0", 16, 0, "")];
        assert!(AddressTable::build(rows, 1)
            .unwrap_err()
            .contains("max_subnets"));
        assert!(AddressTable::build(vec![e(1, "10.0.0.1", 33, 0, "")], 8).is_err());
    }
}
