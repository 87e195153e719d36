//! The script functions, with Kamailio's return codes.

use crate::data::{GwTransport, Instance};
use crate::gwuri::GwEntry;
use crate::load::now;
use crate::state::{Config, State};
use bytes::Bytes;
use ferrosip_api::{FnResult, MsgContext, Proto, Value, Verdict};
use rand::Rng;
use std::net::IpAddr;
use std::sync::atomic::Ordering;

const ERROR: FnResult = Ok(Verdict::FALSE);

fn config(st: &State) -> Result<&Config, ferrosip_api::FnError> {
    Ok(&st.config)
}

/// `load_gws(lcr_id[, uri_user[, caller_uri]])`: 1 found, 2 none, -1 error.
pub fn load_gws(
    st: &State,
    ctx: &mut MsgContext,
    lcr_id: i64,
    uri_user: Option<Bytes>,
    caller_uri: Option<Bytes>,
) -> FnResult {
    let cfg = config(st)?;
    let snap = st.snapshot();
    let Some(inst) = valid_instance(cfg, &snap, lcr_id) else {
        tracing::error!(lcr_id, "load_gws: invalid lcr_id");
        return ERROR;
    };
    let Some(request_uri) = ctx.msg.request_uri_bytes() else {
        tracing::error!("load_gws: the message has no Request-URI");
        return ERROR;
    };
    let user: Bytes = match uri_user {
        Some(u) => u,
        None => match ctx.msg.request_uri_parsed().map(|u| u.user()) {
            Some(Some(u)) => Bytes::copy_from_slice(u),
            _ => {
                tracing::error!("load_gws: the Request-URI has no user part");
                return ERROR;
            }
        },
    };
    let from_uri = caller_uri.unwrap_or_default();
    let mut rng = rand::thread_rng();
    let matched = inst.matching(&user, &from_uri, &request_uri, now(), cfg.ordering, || {
        u64::from(rng.gen::<u32>())
    });
    let avps = &cfg.avps;
    ctx.avps.remove_all(avps.gw_uri);
    ctx.avps.remove_all(avps.ruri_user);
    // The best gateway goes on top of the AVP stack (pushed last), where next_gw() reads.
    for m in matched.iter().rev() {
        let gw = &inst.gateways[m.gw as usize];
        if gw.strip as usize > user.len() {
            tracing::error!(
                gw = gw.id,
                strip = gw.strip,
                "load_gws: strip count longer than the user"
            );
            continue;
        }
        let entry = GwEntry::of(m.gw + 1, gw, m.rule_id);
        ctx.avps
            .push(avps.gw_uri, Value::from_string(entry.encode()));
    }
    if cfg.defunct_capability {
        if let Some(slot) = avps.lcr_id {
            ctx.avps.replace(slot, Value::Int(lcr_id));
        }
    }
    Ok(Verdict::code(if matched.is_empty() { 2 } else { 1 }))
}

fn valid_instance<'s>(
    cfg: &Config,
    snap: &'s crate::data::Snapshot,
    lcr_id: i64,
) -> Option<&'s Instance> {
    if lcr_id < 1 || lcr_id > i64::from(cfg.limits.lcr_count) {
        return None;
    }
    snap.instance(lcr_id)
}

/// `next_gw()`: 1 when the R-URI (and maybe `$du`) now point to the next gateway, -1 when
/// none is left or on error.
pub fn next_gw(st: &State, ctx: &mut MsgContext) -> FnResult {
    let cfg = config(st)?;
    let avps = &cfg.avps;
    let saved_user = ctx.avps.get(avps.ruri_user, 0).and_then(Value::to_bytes);
    let first_call = saved_user.is_none();
    let user = match saved_user {
        Some(u) => u,
        None => match ctx.msg.request_uri_parsed() {
            Some(u) => Bytes::copy_from_slice(u.user().unwrap_or_default()),
            None => {
                tracing::error!("next_gw: cannot parse the Request-URI");
                return ERROR;
            }
        },
    };
    let Some(value) = ctx.avps.get(avps.gw_uri, 0).and_then(Value::to_bytes) else {
        return ERROR; // no gateways left
    };
    let Some(entry) = GwEntry::decode(&value) else {
        tracing::error!("next_gw: gw_uri_avp holds a value load_gws() did not write");
        ctx.avps.pop(avps.gw_uri);
        return ERROR;
    };
    let keep_user = cfg
        .keep_user_flag
        .is_some_and(|f| ctx.flags & (1u64 << f) != 0);
    let Some((ruri, du)) = entry.uris(&user, keep_user) else {
        tracing::error!(
            strip = entry.strip,
            "next_gw: strip count longer than the user"
        );
        return ERROR;
    };
    if let Err(e) = ctx.msg.set_request_uri(&ruri) {
        tracing::error!(error = %e, uri = %String::from_utf8_lossy(&ruri), "next_gw: cannot set the Request-URI");
        return ERROR;
    }
    if let Some(du) = du {
        ctx.dst_uri = Some(Bytes::from(du));
    }
    ctx.avps.pop(avps.gw_uri);
    if first_call {
        ctx.avps.push(avps.ruri_user, Value::Str(user));
    }
    if let Some(slot) = avps.flags {
        ctx.avps.push(slot, Value::Int(i64::from(entry.flags)));
    }
    if let Some(slot) = avps.tag {
        ctx.avps.push(slot, Value::from_string(entry.tag.clone()));
    }
    if let Some(slot) = avps.rule_id {
        ctx.avps.push(slot, Value::Int(i64::from(entry.rule_id)));
    }
    if cfg.defunct_capability {
        if let Some(slot) = avps.defunct_gw {
            ctx.avps.replace(slot, Value::Int(i64::from(entry.index)));
        }
    }
    Ok(Verdict::TRUE)
}

/// `defunct_gw(period)`: the gateway next_gw() chose last is skipped for `period` seconds.
pub fn defunct_gw(st: &State, ctx: &mut MsgContext, period: i64) -> FnResult {
    let cfg = config(st)?;
    if !cfg.defunct_capability {
        tracing::error!("defunct_gw: set modparam(\"lcr\", \"defunct_capability\", 1) first");
        return ERROR;
    }
    if period < 0 {
        tracing::error!(period, "defunct_gw: negative period");
        return ERROR;
    }
    let read = |slot: Option<u32>| {
        slot.and_then(|s| ctx.avps.get(s, 0)).and_then(|v| {
            v.as_int().or_else(|| {
                v.to_bytes()
                    .and_then(|b| ferrosip_api::value::parse_int(&b))
            })
        })
    };
    let (Some(lcr_id), Some(index)) = (read(cfg.avps.lcr_id), read(cfg.avps.defunct_gw)) else {
        tracing::error!("defunct_gw: no gateway chosen by load_gws()/next_gw() in this message");
        return ERROR;
    };
    let snap = st.snapshot();
    let Some(gw) = snap.instance(lcr_id).and_then(|i| {
        usize::try_from(index - 1)
            .ok()
            .and_then(|k| i.gateways.get(k))
    }) else {
        tracing::error!(lcr_id, index, "defunct_gw: gateway index out of bounds");
        return ERROR;
    };
    let until = now().saturating_add(period as u64);
    gw.defunct_until.store(until, Ordering::Relaxed);
    tracing::info!(gw = gw.id, name = %gw.name, until, "lcr: gateway defunct");
    Ok(Verdict::TRUE)
}

/// A `proto` argument: 0 any, 1 udp, 2 tcp, 3 tls, 4 sctp; `Err` otherwise.
fn proto_arg(proto: i64) -> Result<Option<GwTransport>, ()> {
    match proto {
        0 => Ok(None),
        p => GwTransport::from_code(p).map(Some).ok_or(()),
    }
}

/// The message's own transport as a gateway transport; `Err` for WebSocket (no gateway
/// can have it, so nothing matches).
fn msg_transport(proto: Proto) -> Result<Option<GwTransport>, ()> {
    match proto {
        Proto::Udp => Ok(Some(GwTransport::Udp)),
        Proto::Tcp => Ok(Some(GwTransport::Tcp)),
        Proto::Tls => Ok(Some(GwTransport::Tls)),
        Proto::Sctp => Ok(Some(GwTransport::Sctp)),
        Proto::Ws | Proto::Wss => Err(()),
    }
}

fn parse_ip(s: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(s)
        .ok()?
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// The address a from_gw()/to_gw() call checks.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    pub ip: IpAddr,
    /// 0: not compared.
    pub port: u16,
    pub transport: Option<GwTransport>,
}

impl Probe {
    /// The source of the message (address, port, transport).
    pub fn source(ctx: &MsgContext) -> Option<Probe> {
        Some(Probe {
            ip: ctx.net.source.ip(),
            port: ctx.net.source.port(),
            transport: msg_transport(ctx.net.proto).ok()?,
        })
    }

    /// Address and proto given by the script (port as given, 0 = any).
    pub fn given(ip: &[u8], proto: i64, port: i64) -> Option<Probe> {
        let ip = parse_ip(ip)?;
        let transport = proto_arg(proto).ok()?;
        let port = u16::try_from(port).ok()?;
        Some(Probe {
            ip,
            port,
            transport,
        })
    }

    /// The Request-URI host (an IP address) and its transport parameter; the port is not
    /// compared, as in Kamailio.
    pub fn request_uri(ctx: &MsgContext) -> Option<Probe> {
        let uri = ctx.msg.request_uri_parsed()?;
        let ip = parse_ip(uri.host()?)?;
        let transport = match uri.param("transport") {
            Some(Some(t)) => Some(GwTransport::from_name(t)?),
            _ => None,
        };
        Some(Probe {
            ip,
            port: 0,
            transport,
        })
    }
}

/// Whether the probe is a gateway of `lcr_id`; on a match from a `from_*` function, the
/// gateway's tag and flags go to tag_avp/flags_avp.
fn check(
    cfg: &Config,
    inst: &Instance,
    probe: Probe,
    ctx: &mut MsgContext,
    store_attrs: bool,
) -> bool {
    if inst.gw_without_ip {
        return false;
    }
    let Some(gw) = inst.gateway_at(probe.ip, probe.port, probe.transport) else {
        return false;
    };
    if store_attrs {
        if let Some(slot) = cfg.avps.tag {
            ctx.avps.push(slot, Value::from_string(gw.tag.clone()));
        }
        if let Some(slot) = cfg.avps.flags {
            ctx.avps.push(slot, Value::Int(i64::from(gw.flags)));
        }
    }
    true
}

/// `from_gw(lcr_id, ...)` / `to_gw(lcr_id, ...)`: 1 when the address is a gateway of the
/// instance, -1 otherwise or on error.
pub fn is_gw(
    st: &State,
    ctx: &mut MsgContext,
    lcr_id: i64,
    probe: Option<Probe>,
    from: bool,
) -> FnResult {
    let cfg = config(st)?;
    let snap = st.snapshot();
    let (Some(inst), Some(probe)) = (valid_instance(cfg, &snap, lcr_id), probe) else {
        return ERROR;
    };
    Ok(if check(cfg, inst, probe, ctx, from) {
        Verdict::TRUE
    } else {
        Verdict::FALSE
    })
}

/// `from_any_gw(...)` / `to_any_gw(...)`: the first instance id the address is a gateway
/// of, -1 when none.
pub fn is_any_gw(st: &State, ctx: &mut MsgContext, probe: Option<Probe>, from: bool) -> FnResult {
    let cfg = config(st)?;
    let Some(probe) = probe else {
        return ERROR;
    };
    let snap = st.snapshot();
    for lcr_id in 1..=i64::from(cfg.limits.lcr_count) {
        if let Some(inst) = snap.instance(lcr_id) {
            if check(cfg, inst, probe, ctx, from) {
                return Ok(Verdict::code(lcr_id as i32));
            }
        }
    }
    ERROR
}
