//! The send-side pseudo-variables of `onsend_route`: `$snd(name)` and its alias
//! `$sndto(name)` describe where the message goes, `$sndfrom(name)` the local socket it
//! leaves from. They read the [`SendInfo`] the server attaches to the onsend route's
//! context; in any other route there is none and they are `$null`, as in Kamailio.
//!
//! Names as Kamailio's `pv` module has them: `ip`, `port`, `proto` (Kamailio's protocol
//! number: 1 udp, 2 tcp, 3 tls, 4 sctp, 5 ws, 6 wss), `af` (the address family number,
//! 2 for IPv4 and 10 for IPv6, Linux's `AF_INET`/`AF_INET6` that Kamailio returns),
//! `buf` (the bytes sent) and `len` (their length).

use std::net::SocketAddr;
use std::sync::Arc;

use ferrosip_api::pv::{Binder, FnPv, PvClass, PvParamRule};
use ferrosip_api::{ModuleBuilder, MsgContext, Pv, SendInfo, Value};

/// Registers `$snd`, `$sndto` and `$sndfrom` on the core (`pv`) module.
pub fn declare(m: &mut ModuleBuilder<'_>) {
    m.pv("snd", SndClass { from: false });
    m.pv("sndto", SndClass { from: false });
    m.pv("sndfrom", SndClass { from: true });
}

#[derive(Clone, Copy)]
enum Field {
    Ip,
    Port,
    Proto,
    Af,
    Buf,
    Len,
}

struct SndClass {
    /// `$sndfrom`: the local socket instead of the destination.
    from: bool,
}

impl PvClass for SndClass {
    fn param_rule(&self) -> PvParamRule {
        PvParamRule::Required
    }

    fn doc(&self) -> &'static str {
        if self.from {
            "In onsend_route, the local socket the message leaves from: `ip`, `port`, `proto` \
             (1 udp .. 6 wss), `af` (2 IPv4, 10 IPv6), `buf` (the bytes sent), `len`; $null \
             elsewhere."
        } else {
            "In onsend_route, where the message goes: `ip`, `port`, `proto` (1 udp .. 6 wss), \
             `af` (2 IPv4, 10 IPv6), `buf` (the bytes sent), `len`; $null elsewhere."
        }
    }

    fn bind(&self, param: Option<&str>, _binder: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
        let field = match param.unwrap_or("").trim() {
            "ip" => Field::Ip,
            "port" => Field::Port,
            "proto" => Field::Proto,
            "af" => Field::Af,
            "buf" => Field::Buf,
            "len" => Field::Len,
            other => {
                return Err(format!(
                    "unknown send attribute '{other}' (ip, port, proto, af, buf or len)"
                ))
            }
        };
        let from = self.from;
        let name = if from { "sndfrom" } else { "snd" };
        Ok(Arc::new(FnPv::<_> {
            name,
            get: move |ctx: &MsgContext| match ctx.ext.get::<SendInfo>() {
                Some(snd) => value(snd, if from { snd.local } else { snd.dst }, field),
                None => Value::Null,
            },
            set: None,
        }))
    }
}

fn value(snd: &SendInfo, addr: SocketAddr, field: Field) -> Value {
    match field {
        Field::Ip => crate::pv_core::ip_value(addr.ip()),
        Field::Port => Value::Int(i64::from(addr.port())),
        Field::Proto => Value::Int(snd.proto.id()),
        Field::Af => Value::Int(if addr.is_ipv4() { 2 } else { 10 }),
        Field::Buf => Value::Str(snd.buf.clone()),
        Field::Len => Value::Int(snd.buf.len() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrosip_api::{NetInfo, Proto, Registry, RouteKind};

    fn ctx_with(snd: Option<SendInfo>) -> MsgContext {
        let msg = ferrosip_api::sip::SipMessage::parse(bytes::Bytes::from_static(
            b"OPTIONS sip:a@example.org SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:b@example.org>;tag=1\r\nTo: <sip:a@example.org>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        ))
        .expect("parse");
        let net = NetInfo {
            proto: Proto::Udp,
            source: "192.0.2.1:5060".parse().unwrap(),
            local: "192.0.2.9:5060".parse().unwrap(),
        };
        let mut ctx = MsgContext::new(msg, RouteKind::OnSend, net);
        if let Some(s) = snd {
            ctx.ext.insert(s);
        }
        ctx
    }

    fn registry() -> Registry {
        let mut reg = Registry::new();
        crate::register_core(&mut reg);
        reg
    }

    fn get(reg: &Registry, pv: &str, ctx: &MsgContext) -> Value {
        Binder::new(reg)
            .parse_pv(pv)
            .expect("binds")
            .get(ctx)
            .expect("reads")
    }

    #[test]
    fn snd_reads_the_destination_and_sndfrom_the_socket() {
        let reg = registry();
        let ctx = ctx_with(Some(SendInfo {
            proto: Proto::Tcp,
            local: "192.0.2.9:5060".parse().unwrap(),
            dst: "[2001:db8::7]:5090".parse().unwrap(),
            buf: bytes::Bytes::from_static(b"INVITE x"),
        }));
        assert_eq!(
            get(&reg, "$snd(ip)", &ctx),
            Value::from_string("2001:db8::7".into())
        );
        assert_eq!(get(&reg, "$sndto(port)", &ctx), Value::Int(5090));
        assert_eq!(get(&reg, "$snd(proto)", &ctx), Value::Int(2));
        assert_eq!(get(&reg, "$snd(af)", &ctx), Value::Int(10));
        assert_eq!(get(&reg, "$snd(len)", &ctx), Value::Int(8));
        assert_eq!(
            get(&reg, "$snd(buf)", &ctx),
            Value::Str(bytes::Bytes::from_static(b"INVITE x"))
        );
        assert_eq!(
            get(&reg, "$sndfrom(ip)", &ctx),
            Value::from_string("192.0.2.9".into())
        );
        assert_eq!(get(&reg, "$sndfrom(af)", &ctx), Value::Int(2));
    }

    #[test]
    fn outside_onsend_they_are_null_and_a_bad_name_is_refused() {
        let reg = registry();
        assert_eq!(get(&reg, "$snd(ip)", &ctx_with(None)), Value::Null);
        assert!(Binder::new(&reg).parse_pv("$snd(host)").is_err());
    }
}
