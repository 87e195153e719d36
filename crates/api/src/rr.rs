//! Route state shared by the `rr` module and other modules, and the socket description
//! per-branch outbound hooks see.
//!
//! Record-Route itself is the `rr` module's own business: it registers a per-branch
//! outbound hook ([`crate::registry::OutgoingBranch`]) that writes the headers as each
//! branch leaves, when the outbound socket is known.
//!
//! # Route processing
//!
//! `loose_route()` removes this proxy's own Route entry from the message; what it held is
//! kept as a [`LocalRoute`] in [`MsgContext::ext`] for `check_route_param()`,
//! `is_direction()` and other modules. When this proxy's Route entries name the socket to
//! send from (the second entry of a double Record-Route, or any with the `rr`
//! `force_send_socket` parameter), `loose_route()` also stores a [`RouteSendSocket`]; the
//! server should send from the matching local socket when it has one.
//!
//! [`MsgContext::ext`]: crate::MsgContext::ext

use crate::context::Proto;
use bytes::Bytes;

/// A local socket as Record-Route (and any per-branch hook) shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketDesc {
    /// Its transport.
    pub proto: Proto,
    /// The host to write: the advertised address when the socket has one, else the bound
    /// IP. An IPv6 address may be given with or without brackets.
    pub host: Bytes,
    /// The advertised port when the socket has one, else the bound port.
    pub port: u16,
    /// The socket's name (`listen=... name "x"`), written as `;sn=` with the `rr`
    /// parameter `sockname_mode`.
    pub name: Option<Bytes>,
}

impl SocketDesc {
    /// A socket without a name.
    pub fn new(proto: Proto, host: impl Into<Bytes>, port: u16) -> SocketDesc {
        SocketDesc {
            proto,
            host: host.into(),
            port,
            name: None,
        }
    }

    /// Same transport, address and port: one Record-Route is enough.
    pub fn same_realm(&self, other: &SocketDesc) -> bool {
        self.proto == other.proto
            && self.port == other.port
            && unbracket(&self.host).eq_ignore_ascii_case(unbracket(&other.host))
    }
}

fn unbracket(h: &[u8]) -> &[u8] {
    h.strip_prefix(b"[")
        .and_then(|h| h.strip_suffix(b"]"))
        .unwrap_or(h)
}

/// Flow direction of an in-dialog request relative to the request that created the dialog.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From caller to callee, as the initial request went.
    Downstream,
    /// From callee to caller.
    Upstream,
}

/// This proxy's own Route entry, as `loose_route()` found (and removed) it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalRoute {
    /// The URI parameters of this proxy's Route entry (of the R-URI when the previous hop
    /// was a strict router), with the leading `;` (`;lr;ftag=a;nat=yes`). `None` when the
    /// top Route was not this proxy's.
    pub params: Option<Bytes>,
    /// A Route entry after this proxy's own ones decided the next hop
    /// (`rr_next_hop_route()`).
    pub next_hop_route: bool,
}

impl LocalRoute {
    /// A parameter of the local Route: `Some(value)` (empty for a flag), `None` when absent.
    pub fn param(&self, name: &str) -> Option<&[u8]> {
        let p = self.params.as_deref()?;
        p.split(|&c| c == b';').find_map(|kv| {
            let kv = kv.trim_ascii();
            let (k, v) = match kv.iter().position(|&c| c == b'=') {
                Some(e) => (kv[..e].trim_ascii(), kv[e + 1..].trim_ascii()),
                None => (kv, &kv[kv.len()..]),
            };
            (!k.is_empty() && k.eq_ignore_ascii_case(name.as_bytes())).then_some(v)
        })
    }

    /// The direction of a request with this From tag: upstream when the Route's `ftag`
    /// differs from it; downstream otherwise (also when either is missing).
    pub fn direction(&self, from_tag: Option<&[u8]>) -> Direction {
        direction_of(self.param("ftag"), from_tag)
    }
}

/// Upstream when both tags are present and differ, else downstream.
pub fn direction_of(ftag: Option<&[u8]>, from_tag: Option<&[u8]>) -> Direction {
    match (
        ftag.filter(|t| !t.is_empty()),
        from_tag.filter(|t| !t.is_empty()),
    ) {
        (Some(f), Some(t)) if f != t => Direction::Upstream,
        _ => Direction::Downstream,
    }
}

/// The local socket `loose_route()` asks the request to be sent from, taken from this
/// proxy's Route entry: its host, port and transport (and `;sn=` name with
/// `sockname_mode`). The server sends from the local socket matching it, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSendSocket {
    /// The transport the Route entry names, if any.
    pub proto: Option<Proto>,
    /// The host of the Route entry.
    pub host: Bytes,
    /// The port of the Route entry, if any.
    pub port: Option<u16>,
    /// The socket name (`;sn=`), if any.
    pub name: Option<Bytes>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_route_params_and_direction() {
        let l = LocalRoute {
            params: Some(Bytes::from_static(b";lr;ftag=abc;nat=yes")),
            next_hop_route: false,
        };
        assert_eq!(l.param("lr"), Some(&b""[..]));
        assert_eq!(l.param("NAT"), Some(&b"yes"[..]));
        assert_eq!(l.param("x"), None);
        assert_eq!(l.direction(Some(b"abc")), Direction::Downstream);
        assert_eq!(l.direction(Some(b"xyz")), Direction::Upstream);
        assert_eq!(l.direction(None), Direction::Downstream);
        assert_eq!(
            LocalRoute::default().direction(Some(b"x")),
            Direction::Downstream
        );
    }
}
