//! Record-Route written as a request leaves: `record_route()` and its relatives store a
//! [`RecordRoutePlan`] in the context's extensions (the outbound socket is not known yet),
//! and the module's per-branch outbound hook ([`branch_hook`]) turns it into headers on
//! each branch, from the inbound and outbound sockets ([`SocketDesc`], with the
//! advertised address when `listen=` has one). A plan holding only `add_rr_param()`
//! parameters (no `record_route()` yet) makes no header.

use bytes::Bytes;
use ferrosip_api::registry::OutgoingBranch;
use ferrosip_api::rr::SocketDesc;
use ferrosip_api::{Extensions, FnError, Proto};
use ferrosip_sip::{ParseError, SipMessage};
use std::io::Write;

/// The hook the module registers: the plan the routes left, as headers on top.
pub fn branch_hook(branch: &mut OutgoingBranch<'_>) -> Result<(), FnError> {
    if let Some(plan) = branch.ext.get::<RecordRoutePlan>() {
        let (inbound, outbound) = (branch.sockets.inbound(), branch.sockets.outbound());
        let values = record_route_headers(plan, &inbound, &outbound);
        insert_record_route(branch.request, &values).map_err(|e| FnError::new(e.to_string()))?;
    }
    Ok(())
}

/// What a transaction keeps of the request route for its later routes: the plan, and
/// this proxy's Route entry as loose_route() found it, so that check_route_param() and
/// is_direction() answer in branch and failure routes as in the request route.
pub fn keep_plan(from: &Extensions, to: &mut Extensions) {
    if let Some(plan) = from.get::<RecordRoutePlan>() {
        to.insert(plan.clone());
    }
    if let Some(local) = from.get::<ferrosip_api::rr::LocalRoute>() {
        to.insert(local.clone());
    }
}

/// The `rr` parameter `enable_double_rr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DoubleRr {
    /// 0: always one Record-Route.
    Off,
    /// 1 (default): two when the inbound and outbound sockets differ (transport, address
    /// or port; for `record_route_advertised_address()`, transport).
    #[default]
    WhenDifferent,
    /// 2: always two, each with an explicit transport.
    Always,
}

impl DoubleRr {
    pub fn from_param(v: i64) -> DoubleRr {
        match v {
            0 => DoubleRr::Off,
            1 => DoubleRr::WhenDifferent,
            _ => DoubleRr::Always,
        }
    }
}

/// Which address the Record-Route URI carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordRouteAddress {
    /// `record_route()`: the addresses of the inbound and outbound sockets.
    Socket,
    /// `record_route_advertised_address(addr)`: `addr` (`host[:port]`), with the sockets'
    /// transports when two headers are written.
    Advertised(Bytes),
    /// `record_route_preset(addr[, addr2])`: written as given; the first names the
    /// outbound side, the second the inbound side.
    Preset(Bytes, Option<Bytes>),
}

/// What the script asked the Record-Route of a request to be. Stored in `ctx.ext` by the
/// `rr` module; the server turns it into headers with [`record_route_headers`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordRoutePlan {
    /// `None` while only `add_rr_param()` was called: no header is written.
    pub address: Option<RecordRouteAddress>,
    /// Use `sips:` (the R-URI was `sips:` and `ignore_sips` is off).
    pub sips: bool,
    /// User part of the URI (`add_username`).
    pub user: Option<Bytes>,
    /// The `;ftag=` value (`append_fromtag`).
    pub ftag: Option<Bytes>,
    /// Parameters given to `record_route("...")`, each with its leading `;`.
    pub params: Bytes,
    /// Parameters added by `add_rr_param()`, in call order, each with its leading `;`.
    pub extra_params: Vec<u8>,
    /// `enable_full_lr`: `;lr=on` instead of `;lr`.
    pub full_lr: bool,
    pub double: DoubleRr,
    /// `sockname_mode`: add `;sn=` with the socket name.
    pub sockname: bool,
}

impl RecordRoutePlan {
    /// True when a Record-Route header will be written.
    pub fn is_active(&self) -> bool {
        self.address.is_some()
    }
}

/// The Record-Route header values (without `Record-Route: `) to put on top of a request
/// leaving on `outbound` that arrived on `inbound`: one, or two with double
/// record-routing, topmost first (the first names the outbound side, the next hop's).
/// Empty when the plan has no address yet.
///
/// Examples: `<sip:10.0.0.1;lr;ftag=abc>` (UDP to UDP on one socket);
/// `<sip:192.0.2.1:5080;transport=tcp;r2=on;lr;ftag=abc>` then
/// `<sip:10.0.0.1;r2=on;lr;ftag=abc>` (UDP in, TCP out).
/// One Record-Route value, built on the stack (they are short).
pub type RrValue = smallvec::SmallVec<[u8; 128]>;

/// The Record-Route values of one request: one, or two with double record-routing.
pub type RecordRouteValues = smallvec::SmallVec<[RrValue; 2]>;

pub fn record_route_headers(
    plan: &RecordRoutePlan,
    inbound: &SocketDesc,
    outbound: &SocketDesc,
) -> RecordRouteValues {
    let Some(address) = &plan.address else {
        return RecordRouteValues::new();
    };
    match address {
        RecordRouteAddress::Socket => {
            let double = match plan.double {
                DoubleRr::Off => false,
                DoubleRr::Always => true,
                DoubleRr::WhenDifferent => !inbound.same_realm(outbound),
            };
            if double {
                smallvec::smallvec![
                    socket_rr(plan, outbound, true),
                    socket_rr(plan, inbound, true),
                ]
            } else {
                smallvec::smallvec![socket_rr(plan, inbound, false)]
            }
        }
        RecordRouteAddress::Advertised(addr) => {
            let double = match plan.double {
                DoubleRr::Off => false,
                DoubleRr::Always => true,
                DoubleRr::WhenDifferent => inbound.proto != outbound.proto,
            };
            if double {
                smallvec::smallvec![
                    advertised_rr(plan, addr, Some(outbound.proto)),
                    advertised_rr(plan, addr, Some(inbound.proto)),
                ]
            } else {
                smallvec::smallvec![advertised_rr(plan, addr, None)]
            }
        }
        RecordRouteAddress::Preset(first, second) => {
            let mut v = smallvec::smallvec![preset_rr(plan, first)];
            if let Some(s) = second {
                v.push(preset_rr(plan, s));
            }
            v
        }
    }
}

/// Puts Record-Route values on top of `msg`, before any Record-Route it already has (the
/// values as [`record_route_headers`] orders them).
pub fn insert_record_route(msg: &mut SipMessage, values: &[RrValue]) -> Result<(), ParseError> {
    for v in values.iter().rev() {
        msg.insert_header_first("Record-Route", v)?;
    }
    Ok(())
}

fn start(plan: &RecordRoutePlan) -> RrValue {
    let mut s = RrValue::new();
    s.extend_from_slice(if plan.sips { b"<sips:" } else { b"<sip:" });
    if let Some(u) = &plan.user {
        s.extend_from_slice(u);
        s.push(b'@');
    }
    s
}

fn lr(plan: &RecordRoutePlan, s: &mut RrValue) {
    s.extend_from_slice(if plan.full_lr { b";lr=on" } else { b";lr" });
}

fn ftag(plan: &RecordRoutePlan, s: &mut RrValue) {
    if let Some(t) = plan.ftag.as_ref().filter(|t| !t.is_empty()) {
        s.extend_from_slice(b";ftag=");
        s.extend_from_slice(t);
    }
}

fn finish(plan: &RecordRoutePlan, mut s: RrValue) -> RrValue {
    s.extend_from_slice(&plan.extra_params);
    s.push(b'>');
    s
}

fn push_host(s: &mut RrValue, host: &[u8]) {
    if host.contains(&b':') && !host.starts_with(b"[") {
        s.push(b'[');
        s.extend_from_slice(host);
        s.push(b']');
    } else {
        s.extend_from_slice(host);
    }
}

/// `host[:port][;transport=x][;sn=name][;r2=on];lr[;ftag=t][params][extra]`: the port is
/// left out when it is 5060 on UDP, TCP or SCTP, the transport when it is UDP.
fn socket_rr(plan: &RecordRoutePlan, sock: &SocketDesc, r2: bool) -> RrValue {
    let mut s = start(plan);
    push_host(&mut s, &sock.host);
    let default_port =
        sock.port == 5060 && matches!(sock.proto, Proto::Udp | Proto::Tcp | Proto::Sctp);
    if !default_port {
        let _ = write!(s, ":{}", sock.port);
    }
    if sock.proto != Proto::Udp {
        s.extend_from_slice(b";transport=");
        s.extend_from_slice(transport_name(sock.proto).as_bytes());
    }
    if plan.sockname {
        if let Some(n) = sock.name.as_ref().filter(|n| !n.is_empty()) {
            s.extend_from_slice(b";sn=");
            s.extend_from_slice(n);
        }
    }
    if r2 {
        s.extend_from_slice(b";r2=on");
    }
    lr(plan, &mut s);
    ftag(plan, &mut s);
    s.extend_from_slice(&plan.params);
    finish(plan, s)
}

/// `addr[;transport=x][;r2=on][;ftag=t];lr[extra]`; the transport only with two headers.
fn advertised_rr(plan: &RecordRoutePlan, addr: &[u8], proto: Option<Proto>) -> RrValue {
    let mut s = start(plan);
    s.extend_from_slice(addr);
    if let Some(p) = proto {
        s.extend_from_slice(b";transport=");
        s.extend_from_slice(transport_name(p).as_bytes());
        s.extend_from_slice(b";r2=on");
    }
    ftag(plan, &mut s);
    lr(plan, &mut s);
    finish(plan, s)
}

/// `addr[;ftag=t];lr[extra]`; `addr` may carry its own scheme.
fn preset_rr(plan: &RecordRoutePlan, addr: &[u8]) -> RrValue {
    let has_scheme = starts_with_ic(addr, b"sip:") || starts_with_ic(addr, b"sips:");
    let mut s = if has_scheme {
        RrValue::from_slice(b"<")
    } else {
        start(plan)
    };
    s.extend_from_slice(addr);
    ftag(plan, &mut s);
    lr(plan, &mut s);
    finish(plan, s)
}

fn starts_with_ic(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// The `transport=` value of a protocol (WebSocket over TLS is `ws` too, RFC 7118).
fn transport_name(p: Proto) -> &'static str {
    match p {
        Proto::Wss => "ws",
        p => p.name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(address: RecordRouteAddress) -> RecordRoutePlan {
        RecordRoutePlan {
            address: Some(address),
            ftag: Some(Bytes::from_static(b"abc")),
            ..RecordRoutePlan::default()
        }
    }

    fn strs(v: RecordRouteValues) -> Vec<String> {
        v.iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[test]
    fn socket_single_and_double() {
        let udp = SocketDesc::new(Proto::Udp, "10.0.0.1", 5060);
        let tcp = SocketDesc::new(Proto::Tcp, "192.0.2.1", 5080);
        let p = plan(RecordRouteAddress::Socket);
        assert_eq!(
            strs(record_route_headers(&p, &udp, &udp)),
            ["<sip:10.0.0.1;lr;ftag=abc>"]
        );
        assert_eq!(
            strs(record_route_headers(&p, &udp, &tcp)),
            [
                "<sip:192.0.2.1:5080;transport=tcp;r2=on;lr;ftag=abc>",
                "<sip:10.0.0.1;r2=on;lr;ftag=abc>"
            ]
        );
        let off = RecordRoutePlan {
            double: DoubleRr::Off,
            ..p.clone()
        };
        assert_eq!(record_route_headers(&off, &udp, &tcp).len(), 1);
        let always = RecordRoutePlan {
            double: DoubleRr::Always,
            ..p
        };
        assert_eq!(record_route_headers(&always, &udp, &udp).len(), 2);
    }

    #[test]
    fn ipv6_tls_and_params() {
        let v6 = SocketDesc::new(Proto::Tls, "::1", 5061);
        let p = RecordRoutePlan {
            address: Some(RecordRouteAddress::Socket),
            sips: true,
            user: Some(Bytes::from_static(b"bob")),
            params: Bytes::from_static(b";a=1"),
            extra_params: b";nat=yes".to_vec(),
            full_lr: true,
            ..RecordRoutePlan::default()
        };
        assert_eq!(
            strs(record_route_headers(&p, &v6, &v6)),
            ["<sips:bob@[::1]:5061;transport=tls;lr=on;a=1;nat=yes>"]
        );
    }

    #[test]
    fn advertised_and_preset() {
        let udp = SocketDesc::new(Proto::Udp, "10.0.0.1", 5060);
        let tcp = SocketDesc::new(Proto::Tcp, "10.0.0.1", 5060);
        let p = plan(RecordRouteAddress::Advertised(Bytes::from_static(
            b"pbx.example.com:5080",
        )));
        assert_eq!(
            strs(record_route_headers(&p, &udp, &udp)),
            ["<sip:pbx.example.com:5080;ftag=abc;lr>"]
        );
        assert_eq!(
            strs(record_route_headers(&p, &udp, &tcp)),
            [
                "<sip:pbx.example.com:5080;transport=tcp;r2=on;ftag=abc;lr>",
                "<sip:pbx.example.com:5080;transport=udp;r2=on;ftag=abc;lr>"
            ]
        );
        let p = plan(RecordRouteAddress::Preset(
            Bytes::from_static(b"1.2.3.4:5090;r2=on"),
            Some(Bytes::from_static(b"sip:5.6.7.8;r2=on")),
        ));
        assert_eq!(
            strs(record_route_headers(&p, &udp, &udp)),
            [
                "<sip:1.2.3.4:5090;r2=on;ftag=abc;lr>",
                "<sip:5.6.7.8;r2=on;ftag=abc;lr>"
            ]
        );
        assert!(record_route_headers(&RecordRoutePlan::default(), &udp, &udp).is_empty());
    }

    #[test]
    fn inserted_on_top() {
        let raw = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK1\r\n\
Record-Route: <sip:10.0.0.9;lr>\r\n\
To: <sip:bob@example.com>\r\nFrom: <sip:a@example.com>;tag=9\r\n\
Call-ID: c@h\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let mut m = SipMessage::parse(Bytes::from(raw)).unwrap();
        let udp = SocketDesc::new(Proto::Udp, "10.0.0.1", 5060);
        let tcp = SocketDesc::new(Proto::Tcp, "10.0.0.1", 5060);
        let v = record_route_headers(&plan(RecordRouteAddress::Socket), &udp, &tcp);
        insert_record_route(&mut m, &v).unwrap();
        let rr: Vec<Vec<u8>> = m
            .record_routes()
            .map(|r| r.unwrap().uri_bytes().to_vec())
            .collect();
        assert_eq!(
            rr,
            [
                &b"sip:10.0.0.1;transport=tcp;r2=on;lr;ftag=abc"[..],
                b"sip:10.0.0.1;r2=on;lr;ftag=abc",
                b"sip:10.0.0.9;lr"
            ]
        );
    }
}
