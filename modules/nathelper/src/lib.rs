//! `nathelper`: NAT traversal helpers: NAT detection, Contact/SDP fixing, contact aliases and keepalive pings.

mod addr;
mod checks;
mod contact;
mod ping;
mod sdp;
#[cfg(test)]
mod tests;

use addr::{alias_value, dst_uri, is_private, parse_alias, parse_ip, source_uri, AddrMode};
use bytes::Bytes;
use checks::TestFlags;
use ferrosip_api::args::PvOut;
use ferrosip_api::pv::SetOp;
use ferrosip_api::registry::{FnRow, ModuleParams, RpcValue, StateSlot};
use ferrosip_api::{
    FnError, FnResult, Module, ModuleBuilder, MsgContext, ParamType, Proto, RouteMask, Value,
    Verdict,
};
use ferrosip_mod_usrloc::UsrlocApi;
use ping::{PingConfig, Pinger};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The module's parameters as the functions use them.
pub struct NatConfig {
    mode: AddrMode,
    /// `received_avp`'s slot, when set.
    received_avp: Option<u32>,
    alias_name: String,
    nortpproxy: Bytes,
    old_media_ip: bool,
    pinger: Arc<Pinger>,
}

/// `$avp(name)`, `$avp(s:name)` or a bare name -> the AVP's name.
fn avp_name(value: &str) -> Result<Option<String>, String> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let inner = v
        .strip_prefix("$avp(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or(v);
    let name = inner
        .strip_prefix("s:")
        .or_else(|| inner.strip_prefix("i:"))
        .unwrap_or(inner);
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!(
            "received_avp: '{value}' is not an AVP ($avp(name))"
        ));
    }
    Ok(Some(name.to_string()))
}

impl NatConfig {
    fn from_params(
        p: &ModuleParams,
        avps: &ferrosip_api::registry::AvpNames,
    ) -> Result<NatConfig, String> {
        let alias_name = p.string("alias_name");
        if alias_name.is_empty()
            || !alias_name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return Err(format!(
                "alias_name \"{alias_name}\" is not a URI parameter name"
            ));
        }
        Ok(NatConfig {
            mode: AddrMode::from_param(p.int("nat_addr_mode"))?,
            received_avp: avp_name(&p.string("received_avp"))?.map(|n| avps.slot(&n)),
            alias_name,
            nortpproxy: Bytes::from(p.string("nortpproxy_str")),
            old_media_ip: p.int("append_sdp_oldmediaip") != 0,
            pinger: Arc::new(Pinger::new(PingConfig::from_params(p)?)),
        })
    }
}

fn verdict(ok: bool) -> FnResult {
    Ok(if ok { Verdict::TRUE } else { Verdict::FALSE })
}

fn fix_nated_contact(ctx: &mut MsgContext) -> FnResult {
    let src = ctx.net.source;
    let host = addr::uri_host(src.ip());
    contact::edit_first_contact(&mut ctx.msg, |uri| {
        contact::with_hostport(uri, &host, src.port()).map(Some)
    })
    .map_err(|e| FnError::new(format!("fix_nated_contact: {e}")))?;
    Ok(Verdict::TRUE)
}

/// Adds the alias parameter for `addr`/`proto`; with `only_if_differs`, only when the
/// Contact's host, port or transport is not already that. `trim` drops existing ones.
fn add_alias(
    cfg: &NatConfig,
    ctx: &mut MsgContext,
    addr: SocketAddr,
    proto: Proto,
    only_if_differs: bool,
    trim: bool,
) -> FnResult {
    let name = cfg.alias_name.as_str();
    let value = alias_value(addr, proto);
    contact::edit_first_contact(&mut ctx.msg, |uri| {
        let (base, existing) = if trim {
            contact::without_param(uri, name)?
        } else {
            (uri.to_vec(), Vec::new())
        };
        if only_if_differs {
            let parsed =
                ferrosip_api::sip::Uri::parse(&base).map_err(|e| format!("bad URI: {e}"))?;
            let same_host = parsed.host().and_then(parse_ip) == Some(addr.ip());
            let default_port = if proto == Proto::Tls || proto == Proto::Wss {
                5061
            } else {
                5060
            };
            let same_port = parsed.port().unwrap_or(default_port) == addr.port();
            let uri_proto = match parsed.param("transport") {
                Some(Some(t)) => Proto::from_bytes(t),
                _ => Some(Proto::Udp),
            };
            if same_host && same_port && uri_proto == Some(proto) {
                return Ok((!existing.is_empty()).then_some(base));
            }
            if parsed.param(name).is_some() {
                // Already aliased by an earlier hop or call: left alone.
                return Ok((!existing.is_empty()).then_some(base));
            }
        }
        contact::with_param(&base, name, &value).map(Some)
    })
    .map_err(|e| FnError::new(format!("contact alias: {e}")))?;
    Ok(Verdict::TRUE)
}

fn add_contact_alias_given(
    cfg: &NatConfig,
    ctx: &mut MsgContext,
    ip: Bytes,
    port: Bytes,
    proto: Bytes,
) -> FnResult {
    let ip = parse_ip(&ip).ok_or_else(|| {
        FnError::new(format!(
            "add_contact_alias: \"{}\" is not an IP address",
            String::from_utf8_lossy(&ip)
        ))
    })?;
    let port = std::str::from_utf8(&port)
        .ok()
        .and_then(|p| p.trim().parse::<u16>().ok())
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            FnError::new(format!(
                "add_contact_alias: \"{}\" is not a port",
                String::from_utf8_lossy(&port)
            ))
        })?;
    let proto = Proto::from_bytes(proto.trim_ascii()).ok_or_else(|| {
        FnError::new(format!(
            "add_contact_alias: \"{}\" is not a transport",
            String::from_utf8_lossy(&proto)
        ))
    })?;
    add_alias(cfg, ctx, SocketAddr::new(ip, port), proto, false, false)
}

/// handle_ruri_alias(): 1 $du set from the alias (parameter removed), 2 no alias.
fn handle_ruri_alias(cfg: &NatConfig, ctx: &mut MsgContext, keep_others: bool) -> FnResult {
    let Some(ruri) = ctx.msg.request_uri().map(<[u8]>::to_vec) else {
        return Err(FnError::new("handle_ruri_alias: not a request"));
    };
    let (stripped, values) = contact::without_param(&ruri, &cfg.alias_name)
        .map_err(|e| FnError::new(format!("handle_ruri_alias: R-URI: {e}")))?;
    let Some(last) = values.last() else {
        return Ok(Verdict::code(2));
    };
    let (ip, port, proto) = parse_alias(last).ok_or_else(|| {
        FnError::new(format!(
            "handle_ruri_alias: bad alias \"{}\"",
            String::from_utf8_lossy(last)
        ))
    })?;
    let new_ruri = if keep_others && values.len() > 1 {
        // mode 1: only the last alias goes; earlier ones (from other hops) stay.
        let mut uri = stripped;
        for v in &values[..values.len() - 1] {
            uri = contact::with_param(&uri, &cfg.alias_name, &String::from_utf8_lossy(v))
                .map_err(FnError::new)?;
        }
        uri
    } else {
        stripped
    };
    ctx.msg
        .set_request_uri(&new_ruri)
        .map_err(|e| FnError::new(format!("handle_ruri_alias: {e}")))?;
    ctx.dst_uri = Some(Bytes::from(dst_uri(ip, port, proto)));
    Ok(Verdict::TRUE)
}

fn fix_nated_register(cfg: &NatConfig, ctx: &mut MsgContext) -> FnResult {
    let Some(slot) = cfg.received_avp else {
        return Err(FnError::new(
            "fix_nated_register: set modparam(\"nathelper\", \"received_avp\", ...) (the same AVP as registrar's)",
        ));
    };
    ctx.avps
        .replace(slot, Value::Str(Bytes::from(source_uri(&ctx.net))));
    Ok(Verdict::TRUE)
}

fn fix_nated_sdp(cfg: &NatConfig, ctx: &mut MsgContext, flags: i64, ip: Option<Bytes>) -> FnResult {
    let ip = match ip {
        Some(text) => parse_ip(&text).ok_or_else(|| {
            FnError::new(format!(
                "fix_nated_sdp: \"{}\" is not an IP address",
                String::from_utf8_lossy(&text)
            ))
        })?,
        None => ctx.net.source.ip(),
    };
    if ctx.msg.body().is_empty() {
        return Err(FnError::new("fix_nated_sdp: the message has no body"));
    }
    let fix = sdp::SdpFix {
        flags,
        ip,
        nortpproxy: &cfg.nortpproxy,
        old_media_ip: cfg.old_media_ip,
    };
    match sdp::fix_sdp(ctx.msg.body(), &fix) {
        Some((body, replaced)) => {
            ctx.msg.set_body(body);
            Ok(Verdict::code(if replaced { 1 } else { 2 }))
        }
        None => Ok(Verdict::code(2)),
    }
}

/// fix_nated_sdp()'s flags: 1..15, checked at load.
pub struct SdpFlags(i64);

impl ferrosip_api::ArgType for SdpFlags {
    type Fixed = ferrosip_api::args::Fixable<i64>;
    const KIND: ferrosip_api::ArgKind = ferrosip_api::ArgKind::Custom("SDP fix bit mask (1..15)");

    fn fixup(
        raw: ferrosip_api::RawArg,
        env: &dyn ferrosip_api::FixupEnv,
    ) -> Result<Self::Fixed, String> {
        let fixed = i64::fixup(raw, env)?;
        if let ferrosip_api::args::Fixable::Const(n) = fixed {
            sdp_flags(n)?;
        }
        Ok(fixed)
    }

    fn eval(fixed: &Self::Fixed, ctx: &MsgContext) -> Result<Self, FnError> {
        sdp_flags(i64::eval(fixed, ctx)?).map_err(FnError::new)
    }

    fn from_value(value: Value, _env: &dyn ferrosip_api::CallEnv) -> Result<Self, FnError> {
        sdp_flags(ferrosip_api::args::value_to_int(&value)?).map_err(FnError::new)
    }
}

fn sdp_flags(n: i64) -> Result<SdpFlags, String> {
    if (1..=15).contains(&n) {
        Ok(SdpFlags(n))
    } else {
        Err(format!(
            "fix_nated_sdp flags {n}: expected a sum of 1, 2, 4 and 8 (1..15)"
        ))
    }
}

fn set_alias_to_pv(cfg: &NatConfig, ctx: &mut MsgContext, out: &PvOut) -> FnResult {
    let Some(uri) = contact::first_contact_uri(&ctx.msg) else {
        return Ok(Verdict::FALSE);
    };
    let (_, values) = contact::without_param(&uri, &cfg.alias_name)
        .map_err(|e| FnError::new(format!("set_alias_to_pv: {e}")))?;
    let Some((ip, port, proto)) = values.last().and_then(|v| parse_alias(v)) else {
        return Ok(Verdict::FALSE);
    };
    out.0
        .set(
            ctx,
            SetOp::Assign,
            Value::Str(Bytes::from(dst_uri(ip, port, proto))),
        )
        .map_err(|e| FnError::new(format!("set_alias_to_pv: {e}")))?;
    Ok(Verdict::TRUE)
}

/// The `nathelper` module.
pub struct NathelperModule;

impl Module for NathelperModule {
    fn name(&self) -> &'static str {
        "nathelper"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("NAT traversal helpers: NAT detection, Contact/SDP fixing, contact aliases and keepalive pings to registered contacts (UDP packets or SIP OPTIONS from the socket they registered through). See docs/nat.md.");
        m.param(
            "natping_interval",
            ParamType::Int,
            0_i64,
            "Seconds between keepalive rounds over the registered contacts (0: off). Needs usrloc loaded.",
        );
        m.param(
            "ping_nated_only",
            ParamType::Int,
            0_i64,
            "When 1, only contacts saved with usrloc's nat_bflag (or sipping_bflag) among their branch flags are pinged.",
        );
        m.param(
            "nortpproxy_str",
            ParamType::Str,
            "a=nortpproxy:yes\r\n",
            "SDP line marking that no RTP relay is needed.",
        );
        m.param(
            "received_avp",
            ParamType::Str,
            Value::Null,
            "AVP receiving the source URI for the registrar (set by fix_nated_register()).",
        );
        m.param(
            "force_socket",
            ParamType::Str,
            Value::Null,
            "Local socket ([udp:]IP:PORT, one the server listens on) UDP keepalives leave from instead of the one the contact registered through.",
        );
        m.param(
            "sipping_from",
            ParamType::Str,
            Value::Null,
            "From URI of SIP pings; contacts flagged with sipping_bflag get SIP pings only when it is set.",
        );
        m.param(
            "sipping_method",
            ParamType::Str,
            "OPTIONS",
            "Method of SIP pings (a token such as OPTIONS or INFO).",
        );
        m.param(
            "sipping_bflag",
            ParamType::Int,
            -1_i64,
            "Branch flag (0..31, saved with the contact by save()) marking contacts that get a SIP request instead of the UDP packet (-1: none).",
        );
        m.param(
            "natping_disable_bflag",
            ParamType::Int,
            -1_i64,
            "Branch flag (0..31) marking contacts that get no pings at all (-1: none).",
        );
        m.param(
            "natping_processes",
            ParamType::Int,
            1_i64,
            "Accepted for compatibility: one timer task sends every ping.",
        );
        m.param(
            "natping_socket",
            ParamType::Str,
            Value::Null,
            "Spoofed source of pings through a raw socket: not available (setting it fails the load; use force_socket).",
        );
        m.param(
            "keepalive_timeout",
            ParamType::Int,
            0_i64,
            "Removing contacts that do not answer SIP pings is not available: anything but 0 fails the load.",
        );
        m.param(
            "udpping_from_path",
            ParamType::Int,
            0_i64,
            "UDP pings from the Path address through a raw socket: not available (1 fails the load).",
        );
        m.param(
            "ignore_path",
            ParamType::Int,
            0_i64,
            "When 1, a contact's Path is ignored: it gets UDP pings as a direct contact and SIP pings go to its received address. When 0, SIP pings follow the Path and contacts with a Path get no UDP packet.",
        );
        m.param(
            "append_sdp_oldmediaip",
            ParamType::Int,
            1_i64,
            "When 1, fix_nated_sdp() adds an a=oldmediaip line after each c= line it rewrites.",
        );
        m.param(
            "filter_server_id",
            ParamType::Int,
            0_i64,
            "Pinging only contacts saved by this server_id is not available (1 fails the load).",
        );
        m.param(
            "nat_addr_mode",
            ParamType::Int,
            1_i64,
            "Which addresses count as private: 0 RFC 1918, RFC 6598 (100.64/10) and 192.0.0.0/29; 1 also the rest of 192.0.0.0/24.",
        );
        m.param(
            "alias_name",
            ParamType::Str,
            "alias",
            "Name of the Contact URI parameter the alias functions write and handle_ruri_alias() reads.",
        );
        const REQ_BRANCH_REPLY_EVENT_LOCAL: RouteMask = RouteMask::REQUEST
            .union(RouteMask::BRANCH)
            .union(RouteMask::ONREPLY)
            .union(RouteMask::EVENT)
            .union(RouteMask::LOCAL);
        const REQ_FAIL_BRANCH_REPLY_EVENT: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::BRANCH)
            .union(RouteMask::ONREPLY)
            .union(RouteMask::EVENT);
        const REQ_BRANCH_EVENT_LOCAL: RouteMask = RouteMask::REQUEST
            .union(RouteMask::BRANCH)
            .union(RouteMask::EVENT)
            .union(RouteMask::LOCAL);
        const REQ_FAIL_BRANCH_REPLY_EVENT_LOCAL: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::BRANCH)
            .union(RouteMask::ONREPLY)
            .union(RouteMask::EVENT)
            .union(RouteMask::LOCAL);
        const REQ_EVENT: RouteMask = RouteMask::REQUEST.union(RouteMask::EVENT);
        let avps = m.registry().avp_names();
        let st: StateSlot<NatConfig> = m.state(move |p| NatConfig::from_params(p, &avps));
        let usrloc = m.uses::<UsrlocApi>();
        {
            let st = st.clone();
            m.on_start(move |env| {
                let state = st.get();
                let runtime = env.runtime.clone();
                let usrloc = usrloc.clone();
                async move {
                    let state = state.map_err(|e| e.message)?;
                    if state.pinger.cfg.interval == 0 {
                        return Ok(());
                    }
                    let store = usrloc
                        .get()
                        .ok_or("nathelper: natping_interval needs the usrloc module loaded (the pinged contacts are its)")?
                        .store()
                        .map_err(|e| e.message)?;
                    state.pinger.prepare(runtime, store);
                    Ok(())
                }
            });
        }
        {
            let st = st.clone();
            m.on_ready(move |services| {
                if let Ok(state) = st.get() {
                    state.pinger.start(services.clone());
                }
            });
        }
        {
            let st = st.clone();
            m.on_stop(move |_| {
                if let Ok(state) = st.get() {
                    state.pinger.stop();
                }
            });
        }
        {
            let st = st.clone();
            m.rpc("nathelper.enable_ping", "Turns the keepalive pings on (a non-zero number) or off (0); without a number, says whether they are on.", move |args| {
                let state = st.get().map_err(|e| e.message)?;
                if let Some(v) = args.first() {
                    let on = ferrosip_api::args::value_to_int(v).map_err(|e| e.message)? != 0;
                    state.pinger.enabled.store(on, Ordering::Relaxed);
                }
                Ok(RpcValue::Int(i64::from(state.pinger.enabled.load(Ordering::Relaxed))))
            });
        }
        {
            let st = st.clone();
            m.rpc("nathelper.ping_stats", "Keepalive counters since start: UDP packets sent, SIP pings sent, pings that could not be sent, and whether pinging is on.", move |_| {
                let state = st.get().map_err(|e| e.message)?;
                let p = &state.pinger;
                let n = |a: &std::sync::atomic::AtomicU64| RpcValue::Int(a.load(Ordering::Relaxed) as i64);
                Ok(RpcValue::Struct(vec![
                    ("enabled".into(), RpcValue::Int(i64::from(p.enabled.load(Ordering::Relaxed)))),
                    ("interval".into(), RpcValue::Int(p.cfg.interval as i64)),
                    ("udp_sent".into(), n(&p.udp_sent)),
                    ("sip_sent".into(), n(&p.sip_sent)),
                    ("failed".into(), n(&p.failed)),
                ]))
            });
        }
        m.function("nat_uac_test")
            .args(&["flags"])
            .routes(REQ_FAIL_BRANCH_REPLY_EVENT_LOCAL)
            .doc("Tests for NAT with the bit mask of checks: 1 the Contact URI host is private (RFC 1918/6598), 2 the top Via host is not the source IP, 4 the top Via host is private, 8 an SDP c= address is private, 16 the top Via port (5060 when absent) is not the source port, 32 the source IP is private, 64 received over WebSocket (ws/wss), 128 the Contact URI port (5060 when absent) is not the source port. 1 when any test hit, -1 otherwise. Flags outside 1..255 fail the load.")
            .handler(st.with(|c: &NatConfig, ctx: &mut MsgContext, f: TestFlags| verdict(checks::nat_uac_test(ctx, f.0, c.mode))));
        m.function("is_rfc1918")
            .args(&["ip_address"])
            .routes(RouteMask::ANY)
            .doc("1 when the address is private (10/8, 172.16/12, 192.168/16, the RFC 6598 100.64/10 and 192.0.0.0/29; with nat_addr_mode 1 also 192.0.0.0/24); -1 otherwise (an IPv6 address or a host name is not private).")
            .handler(st.with(|c: &NatConfig, _ctx: &mut MsgContext, ip: Bytes| verdict(parse_ip(&ip).is_some_and(|ip| is_private(ip, c.mode)))));
        m.function("fix_nated_contact")
            .routes(REQ_BRANCH_REPLY_EVENT_LOCAL)
            .doc("Rewrites the host and port of the first Contact URI with the source IP and port of the message (user and parameters kept). 1 on success; an error (-1) when there is no usable Contact.")
            .handler(|ctx: &mut MsgContext| fix_nated_contact(ctx));
        m.function("fix_nated_register")
            .routes(REQ_EVENT)
            .doc("Stores the source as a URI (sip:IP:PORT, ;transport= unless UDP) in received_avp, which save() keeps as the contact's received address and lookup() sends to. Set received_avp in nathelper and registrar to the same AVP. 1 on success; an error (-1) when received_avp is not set.")
            .handler(st.with(|c: &NatConfig, ctx: &mut MsgContext| fix_nated_register(c, ctx)));
        m.function("add_contact_alias")
            .routes(REQ_BRANCH_REPLY_EVENT_LOCAL)
            .doc("Adds ;alias=IP~PORT~PROTO (the source address, PROTO Kamailio's number: 1 udp, 2 tcp, 3 tls, 4 sctp, 5 ws, 6 wss) to the first Contact URI when its host, port or transport differ from the source and it has no alias yet. Later reads of the Contact (save(), $ct) see the change. 1 on success or nothing to do; an error (-1) without a usable Contact.")
            .handler(st.with(|c: &NatConfig, ctx: &mut MsgContext| {
                let (src, proto) = (ctx.net.source, ctx.net.proto);
                add_alias(c, ctx, src, proto, true, false)
            }));
        m.function("add_contact_alias")
            .args(&["ip_addr", "port", "proto"])
            .routes(REQ_FAIL_BRANCH_REPLY_EVENT)
            .doc("Adds ;alias=IP~PORT~PROTO with the given address, port and transport (udp, tcp, tls, sctp, ws, wss) to the first Contact URI. 1 on success; an error (-1) on a bad address, port or transport or without a usable Contact.")
            .handler(st.with(|c: &NatConfig, ctx: &mut MsgContext, ip: Bytes, port: Bytes, proto: Bytes| add_contact_alias_given(c, ctx, ip, port, proto)));
        m.function("set_contact_alias")
            .routes(REQ_BRANCH_REPLY_EVENT_LOCAL | RouteMask::FAILURE)
            .doc("Adds ;alias=IP~PORT~PROTO with the source address to the first Contact URI unless it already points there; the change is visible at once to later functions (as with add_contact_alias(), since Ferrosip's edits always are). 1 on success; an error (-1) without a usable Contact.")
            .handler(st.with(|c: &NatConfig, ctx: &mut MsgContext| {
                let (src, proto) = (ctx.net.source, ctx.net.proto);
                add_alias(c, ctx, src, proto, true, false)
            }));
        m.function("set_contact_alias")
            .args(&["trim"])
            .routes(REQ_BRANCH_REPLY_EVENT_LOCAL | RouteMask::FAILURE)
            .doc("As set_contact_alias(); with trim 1 any alias parameter already in the Contact URI is removed first (then the source alias is added when needed). 1 on success; an error (-1) without a usable Contact.")
            .handler(st.with(|c: &NatConfig, ctx: &mut MsgContext, trim: i64| {
                let (src, proto) = (ctx.net.source, ctx.net.proto);
                add_alias(c, ctx, src, proto, true, trim != 0)
            }));
        m.function("handle_ruri_alias")
            .routes(REQ_BRANCH_EVENT_LOCAL)
            .doc("When the R-URI has alias parameters, sets $du to the address the last one names (sip:IP:PORT;transport=...) and removes them from the R-URI. 1 $du set; 2 no alias parameter (nothing done); an error (-1) for a malformed alias.")
            .handler(st.with(|c: &NatConfig, ctx: &mut MsgContext| handle_ruri_alias(c, ctx, false)));
        m.function("handle_ruri_alias")
            .args(&["mode"])
            .routes(REQ_BRANCH_EVENT_LOCAL)
            .doc("handle_ruri_alias() with a mode: 0 removes every alias parameter (as without a mode), 1 removes only the last one (the one used for $du) and keeps earlier ones. Same return codes.")
            .handler(st.with(|c: &NatConfig, ctx: &mut MsgContext, mode: i64| handle_ruri_alias(c, ctx, mode == 1)));
        m.function("fix_nated_sdp")
            .args(&["flags"])
            .routes(REQ_FAIL_BRANCH_REPLY_EVENT_LOCAL)
            .doc("Rewrites the SDP for a UA behind NAT, flags summed: 1 adds a=direction:active, 2 rewrites the c= addresses (not 0.0.0.0) with the source IP (adding a=oldmediaip when append_sdp_oldmediaip is 1), 4 adds the nortpproxy_str line, 8 rewrites the o= address. 1 an address was replaced; 2 none was; an error (-1) without a body. Flags outside 1..15 fail the load.")
            .handler(st.with(|c: &NatConfig, ctx: &mut MsgContext, f: SdpFlags| fix_nated_sdp(c, ctx, f.0, None)));
        m.function("fix_nated_sdp")
            .args(&["flags", "ip_address"])
            .routes(REQ_FAIL_BRANCH_REPLY_EVENT_LOCAL)
            .doc("As fix_nated_sdp(flags), with the given IP instead of the source IP for flags 2 and 8. Same return codes; an error (-1) when ip_address is not an IP.")
            .handler(st.with(|c: &NatConfig, ctx: &mut MsgContext, f: SdpFlags, ip: Bytes| fix_nated_sdp(c, ctx, f.0, Some(ip))));
        m.function("set_alias_to_pv")
            .args(&["target_avp"])
            .routes(RouteMask::ANY)
            .doc("Stores the address named by the first Contact URI's alias parameter as a URI (sip:IP:PORT;transport=...) in the variable. 1 on success; -1 when the Contact has no valid alias.")
            .handler(st.with(|c: &NatConfig, ctx: &mut MsgContext, out: PvOut| set_alias_to_pv(c, ctx, &out)));
        #[rustfmt::skip]
        m.functions([
            FnRow::declared::<()>("add_rcv_param", &[], REQ_EVENT, "Adds a received parameter with the source URI to the Contact header field; 1 on success, -1 on failure."),
            FnRow::declared::<(i64,)>("add_rcv_param", &["flag"], REQ_EVENT, "As add_rcv_param(); with 1 the parameter goes into the Contact URI; 1 on success, -1 on failure."),
        ]);
    }
}
