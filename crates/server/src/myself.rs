//! The server's own identity, what `myself` and `is_myself()` match, with Kamailio's rules:
//! every bound address (each address of the machine for a wildcard socket), `advertise`
//! addresses, `alias=` names (without a port: any port), and with `auto_aliases` the names
//! the bound addresses have in reverse DNS, plus `localhost` for loopback addresses.
//! Also the machine's interface addresses, which a config without `listen=` binds.

use crate::transport::Listen;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// How long reverse lookups of the listen addresses may take at start before the names
/// not found by then are left out (a dead resolver must not stall the start).
const REVERSE_DNS_LIMIT: Duration = Duration::from_secs(3);

/// A host that is ours: an address, or a name (lower case).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

impl Host {
    fn parse(host: &str) -> Host {
        let h = host.trim_start_matches('[').trim_end_matches(']');
        match h.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(canonical(ip)),
            Err(_) => Host::Name(h.trim_end_matches('.').to_ascii_lowercase()),
        }
    }

    /// Whether `host` (brackets and a final dot already removed) names this one; compares
    /// without allocating: `uri == myself` runs for most requests.
    fn is(&self, host: &str, ip: Option<IpAddr>) -> bool {
        match (self, ip) {
            (Host::Ip(mine), Some(ip)) => *mine == ip,
            (Host::Name(mine), None) => mine.eq_ignore_ascii_case(host),
            _ => false,
        }
    }
}

/// IPv4-mapped IPv6 addresses compare as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The hosts and ports this server answers for.
#[derive(Clone, Debug, Default)]
pub struct Myself {
    /// Host and port; a `None` port matches any port (an `alias=` without one).
    entries: Vec<(Host, Option<u16>)>,
}

impl Myself {
    /// The identity of a server bound to `listen` with `aliases` (`alias=`); with
    /// `auto_aliases`, the reverse-DNS names of the bound addresses and `localhost` for
    /// loopback ones are added with the port of their socket. `interfaces` are the
    /// machine's addresses, which a wildcard socket (0.0.0.0, ::) stands for.
    pub fn new(
        listen: &[Listen],
        aliases: &[(String, Option<u16>)],
        auto_aliases: bool,
        interfaces: &[IpAddr],
    ) -> Myself {
        let mut me = Myself::default();
        let mut bound: Vec<(IpAddr, u16)> = Vec::new();
        for l in listen {
            let ip = l.addr.ip();
            if ip.is_unspecified() {
                for i in interfaces.iter().filter(|i| i.is_ipv4() == ip.is_ipv4()) {
                    bound.push((*i, l.addr.port()));
                }
            } else {
                bound.push((ip, l.addr.port()));
            }
            if let Some((host, port)) = &l.advertise {
                me.add(host, Some(*port));
            }
        }
        for (ip, port) in &bound {
            me.add_ip(*ip, Some(*port));
        }
        for (name, port) in aliases {
            me.add(name, *port);
        }
        if auto_aliases {
            let mut ips: Vec<IpAddr> = bound.iter().map(|(ip, _)| *ip).collect();
            ips.sort();
            ips.dedup();
            let names = reverse_names(&ips, REVERSE_DNS_LIMIT);
            for (ip, port) in &bound {
                if ip.is_loopback() {
                    me.add("localhost", Some(*port));
                }
                for (_, name) in names.iter().filter(|(n, _)| n == ip) {
                    me.add(name, Some(*port));
                }
            }
        }
        me
    }

    /// Adds `host` (a name or an address, IPv6 with or without brackets) with `port`
    /// (`None`: any port).
    pub fn add(&mut self, host: &str, port: Option<u16>) {
        self.push(Host::parse(host), port);
    }

    fn add_ip(&mut self, ip: IpAddr, port: Option<u16>) {
        self.push(Host::Ip(canonical(ip)), port);
    }

    fn push(&mut self, host: Host, port: Option<u16>) {
        if !self.entries.contains(&(host.clone(), port)) {
            self.entries.push((host, port));
        }
    }

    /// Whether `host` with `port` is ours; `port: None` asks about the host on any port
    /// (`src_ip == myself`, `is_myhost()`). A URI without a port must be asked with its
    /// scheme's default port (5060, 5061 for sips and TLS), as Kamailio does.
    pub fn matches(&self, host: &[u8], port: Option<u16>) -> bool {
        let Ok(host) = std::str::from_utf8(host) else {
            return false;
        };
        let host = host.trim();
        let ip = crate::dns::ip_literal(host.as_bytes()).map(canonical);
        let host = host.strip_prefix('[').unwrap_or(host);
        let host = host.strip_suffix(']').unwrap_or(host);
        let host = host.strip_suffix('.').unwrap_or(host);
        self.entries.iter().any(|(h, p)| {
            h.is(host, ip)
                && match (p, port) {
                    (Some(p), Some(q)) => *p == q,
                    _ => true,
                }
        })
    }

    /// The names (not addresses) that are ours, with their port, for the start log.
    pub fn names(&self) -> impl Iterator<Item = (&str, Option<u16>)> {
        self.entries.iter().filter_map(|(h, p)| match h {
            Host::Name(n) => Some((n.as_str(), *p)),
            Host::Ip(_) => None,
        })
    }
}

/// The addresses of the machine's interfaces that are up, IPv4 and IPv6, in the order the
/// kernel lists them. IPv6 link-local addresses are left out: they are only usable with a
/// scope (interface) that neither a Via nor a URI can carry.
pub fn interface_addresses() -> std::io::Result<Vec<IpAddr>> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list that we only read, then free once.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not freed yet.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_flags & libc::IFF_UP as libc::c_uint == 0 {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr whose family says which struct it is.
        let ip = unsafe {
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
                }
                libc::AF_INET6 => {
                    let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                    IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
                }
                _ => continue,
            }
        };
        if is_link_local_v6(&ip) || out.contains(&ip) {
            continue;
        }
        out.push(ip);
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

fn is_link_local_v6(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

/// The name of each address in reverse DNS (or /etc/hosts), looked up in parallel; the
/// ones without a name, or not answered within `limit`, are left out.
pub fn reverse_names(ips: &[IpAddr], limit: Duration) -> Vec<(IpAddr, String)> {
    let (tx, rx) = std::sync::mpsc::channel();
    for ip in ips {
        let ip = *ip;
        let tx = tx.clone();
        let spawned = std::thread::Builder::new()
            .name("rev-dns".into())
            .spawn(move || {
                let _ = tx.send((ip, reverse_name(ip)));
            });
        if spawned.is_err() {
            tracing::warn!(address = %ip, "no thread for its reverse DNS lookup");
        }
    }
    drop(tx);
    let deadline = std::time::Instant::now() + limit;
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok((ip, Some(name))) => out.push((ip, name)),
            Ok((_, None)) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!("reverse DNS of the listen addresses is slow: names not found by now are not aliases");
                break;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    out
}

/// getnameinfo with NI_NAMEREQD: the address's name, `None` when it has none.
fn reverse_name(ip: IpAddr) -> Option<String> {
    let mut host = [0 as libc::c_char; 1025];
    let rc = match ip {
        IpAddr::V4(v4) => {
            // SAFETY: a zeroed sockaddr_in is valid; the fields are set below.
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from(v4).to_be();
            // SAFETY: the sockaddr and the output buffer are valid for the given lengths.
            unsafe {
                libc::getnameinfo(
                    &sin as *const libc::sockaddr_in as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                    host.as_mut_ptr(),
                    host.len() as libc::socklen_t,
                    std::ptr::null_mut(),
                    0,
                    libc::NI_NAMEREQD,
                )
            }
        }
        IpAddr::V6(v6) => {
            // SAFETY: a zeroed sockaddr_in6 is valid; the fields are set below.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = v6.octets();
            // SAFETY: the sockaddr and the output buffer are valid for the given lengths.
            unsafe {
                libc::getnameinfo(
                    &sin6 as *const libc::sockaddr_in6 as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                    host.as_mut_ptr(),
                    host.len() as libc::socklen_t,
                    std::ptr::null_mut(),
                    0,
                    libc::NI_NAMEREQD,
                )
            }
        }
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: getnameinfo succeeded, so `host` holds a NUL-terminated string.
    let name = unsafe { std::ffi::CStr::from_ptr(host.as_ptr()) };
    let name = name
        .to_str()
        .ok()?
        .trim_end_matches('.')
        .to_ascii_lowercase();
    // A name that is only the address written out is no name.
    (!name.is_empty() && name.parse::<IpAddr>().is_err()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrosip_api::Proto;
    use std::net::SocketAddr;

    fn listen(addr: &str) -> Listen {
        Listen::new(Proto::Udp, addr.parse::<SocketAddr>().unwrap(), None)
    }

    #[test]
    fn listen_addresses_with_their_port() {
        let me = Myself::new(
            &[listen("127.0.0.1:5060"), listen("[fd00::2]:5070")],
            &[],
            false,
            &[],
        );
        assert!(me.matches(b"127.0.0.1", Some(5060)));
        assert!(!me.matches(b"127.0.0.1", Some(5070)));
        assert!(me.matches(b"127.0.0.1", None));
        assert!(me.matches(b"[fd00::2]", Some(5070)));
        assert!(me.matches(b"fd00:0:0:0:0:0:0:2", Some(5070)));
        assert!(me.matches(b"::ffff:127.0.0.1", Some(5060)));
        assert!(!me.matches(b"192.0.2.9", Some(5060)));
        assert!(!me.matches(b"localhost", Some(5060)), "auto_aliases is off");
    }

    #[test]
    fn wildcard_socket_stands_for_every_interface_of_its_family() {
        let ifs: Vec<IpAddr> = vec![
            "127.0.0.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            "::1".parse().unwrap(),
        ];
        let me = Myself::new(&[listen("0.0.0.0:5060")], &[], false, &ifs);
        assert!(me.matches(b"192.0.2.2", Some(5060)));
        assert!(me.matches(b"127.0.0.1", Some(5060)));
        assert!(
            !me.matches(b"::1", Some(5060)),
            "an IPv4 wildcard is not bound on ::1"
        );
    }

    #[test]
    fn aliases_with_and_without_port() {
        let aliases = vec![
            ("sip.example.com".to_string(), None),
            ("pbx.example.com".to_string(), Some(5080)),
        ];
        let me = Myself::new(&[listen("127.0.0.1:5060")], &aliases, false, &[]);
        assert!(me.matches(b"SIP.Example.COM", Some(5060)));
        assert!(me.matches(b"sip.example.com", Some(7000)));
        assert!(me.matches(b"sip.example.com.", Some(5060)));
        assert!(me.matches(b"pbx.example.com", Some(5080)));
        assert!(!me.matches(b"pbx.example.com", Some(5060)));
        assert!(!me.matches(b"example.com", Some(5060)));
    }

    #[test]
    fn advertised_address_is_ours() {
        let l = Listen::new(
            Proto::Udp,
            "10.0.0.10:5060".parse().unwrap(),
            Some(("203.0.113.7".to_string(), 5062)),
        );
        let me = Myself::new(&[l], &[], false, &[]);
        assert!(me.matches(b"203.0.113.7", Some(5062)));
        assert!(!me.matches(b"203.0.113.7", Some(5060)));
        assert!(me.matches(b"10.0.0.10", Some(5060)));
    }

    #[test]
    fn auto_aliases_name_loopback_localhost() {
        let me = Myself::new(&[listen("127.0.0.1:5060")], &[], true, &[]);
        assert!(me.matches(b"localhost", Some(5060)));
        assert!(me.matches(b"LOCALHOST", None));
        assert!(!me.matches(b"localhost", Some(5070)));
        assert!(me.names().any(|(n, p)| n == "localhost" && p == Some(5060)));
    }

    #[test]
    fn loopback_has_a_reverse_name_on_this_machine() {
        // /etc/hosts names 127.0.0.1 on every Linux machine the tests run on.
        let names = reverse_names(&["127.0.0.1".parse().unwrap()], Duration::from_secs(5));
        assert!(!names.is_empty(), "no name for 127.0.0.1");
    }

    #[test]
    fn interfaces_include_loopback() {
        let ifs = interface_addresses().unwrap();
        assert!(
            ifs.contains(&"127.0.0.1".parse::<IpAddr>().unwrap()),
            "{ifs:?}"
        );
        assert!(!ifs.iter().any(is_link_local_v6));
    }
}
