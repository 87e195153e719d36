//! `rtpengine`: Media relaying and manipulation through the rtpengine control protocol (ng).
//!
//! Kamailio's rtpengine module: the message's SDP goes to rtpengine in a bencoded ng
//! command (`offer`, `answer`, `delete`) over UDP and the SDP rtpengine answers replaces
//! the body. The relays, their sets, timeouts and failover are those of the rtpproxy
//! module (`ferrosip_mod_rtpproxy::control`); the exchange is awaited on the runtime.

mod bencode;
#[cfg(test)]
mod tests;

use bencode::Bval;
use bytes::Bytes;
use ferrosip_api::args::{Parsed, ParsedText, PvOut};
use ferrosip_api::registry::{BoxFuture, FnRow, ModuleParams, RpcValue, StateSlot};
use ferrosip_api::sip::Method;
use ferrosip_api::{
    apply_result, FnError, Module, ModuleBuilder, MsgContext, ParamType, RouteKind, RouteMask,
    Value, Verdict,
};
use ferrosip_mod_rtpproxy::control::{parse_sets, Endpoint, OfferLog, Relays, Timing};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Parameters this version does not act on: setting one fails the load rather than
/// being silently ignored.
const UNSUPPORTED_PARAMS: &[&str] = &[
    "aggressive_redetection",
    "queried_nodes_limit",
    "rtpengine_allow_op",
    "ping_mode",
    "ping_interval",
    "db_url",
    "table_name",
    "extra_id_pv",
    "setid_avp",
    "force_send_interface",
    "rtp_inst_pvar",
    "write_sdp_pv",
    "read_sdp_pv",
    "hash_table_tout",
    "hash_table_size",
    "media_duration",
    "hash_algo",
    "dtmf_events_sock",
    "event_callback",
    "enable_dmq",
    "wsapi",
    "dmq_peer_id",
    "mos_min_pv",
    "mos_max_pv",
    "mos_average_pv",
];

/// The module's state; shared with the exchanges in flight.
pub struct Rtpengine {
    inner: Arc<Inner>,
}

pub struct Inner {
    relays: Relays,
    default_set: u32,
    offers: Mutex<OfferLog>,
}

type Shared = StateSlot<Rtpengine>;

/// The set `set_rtpengine_set()` chose for this message.
struct ChosenSet(u32);

fn fail(msg: impl Into<String>) -> FnError {
    FnError::new(msg.into())
}

fn done(f: ferrosip_api::FnResult) -> BoxFuture<'static, ferrosip_api::ApplyResult> {
    Box::pin(std::future::ready(apply_result(move |_| f)))
}

/// The ng command a function sends.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Offer,
    Answer,
    Delete,
    Query,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Offer => "offer",
            Op::Answer => "answer",
            Op::Delete => "delete",
            Op::Query => "query",
        }
    }
}

/// A flags string as ng dictionary entries (Kamailio's rtpengine flags): `replace-X`,
/// `rtcp-mux-X`, `SDES-X`, `direction=X` and `codec-ACTION-X` add to lists; an
/// RTP profile sets transport-protocol; `key=value` sets a key; any other word is a flag.
/// `call-id=`, `from-tag=` and `to-tag=` override the message's values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NgFlags {
    entries: Vec<(Vec<u8>, Bval)>,
    call_id: Option<Vec<u8>>,
    from_tag: Option<Vec<u8>>,
    to_tag: Option<Vec<u8>>,
}

const PROFILES: &[&str] = &[
    "RTP/AVP",
    "RTP/SAVP",
    "RTP/AVPF",
    "RTP/SAVPF",
    "UDP/TLS/RTP/SAVP",
    "UDP/TLS/RTP/SAVPF",
];
const CODEC_ACTIONS: &[&str] = &[
    "strip",
    "offer",
    "transcode",
    "mask",
    "set",
    "accept",
    "consume",
    "except",
];
/// Keys the module computes itself: a flags string may not set them.
const RESERVED: &[&str] = &["command", "sdp", "received-from"];

fn parse_ng_flags(s: &[u8]) -> Result<NgFlags, String> {
    let text = std::str::from_utf8(s).map_err(|_| "flags are not UTF-8".to_string())?;
    let mut dict = Bval::Dict(Vec::new());
    let mut f = NgFlags::default();
    let push = |dict: &mut Bval, key: &str, item: &str| {
        if let Some(Bval::List(l)) = dict.entry(key, Bval::List(Vec::new())) {
            l.push(Bval::str(item));
        }
    };
    for word in text.split_ascii_whitespace() {
        if let Some(x) = word.strip_prefix("replace-") {
            push(&mut dict, "replace", x);
        } else if let Some(x) = word.strip_prefix("rtcp-mux-") {
            push(&mut dict, "rtcp-mux", x);
        } else if let Some(x) = word.strip_prefix("SDES-") {
            push(&mut dict, "SDES", x);
        } else if let Some(x) = word.strip_prefix("direction=") {
            push(&mut dict, "direction", x);
        } else if let Some((action, codec)) = word
            .strip_prefix("codec-")
            .and_then(|r| r.split_once('-'))
            .filter(|(a, _)| CODEC_ACTIONS.contains(a))
        {
            if let Some(c) = dict.entry("codec", Bval::Dict(Vec::new())) {
                if let Some(Bval::List(l)) = c.entry(action, Bval::List(Vec::new())) {
                    l.push(Bval::str(codec));
                }
            }
        } else if PROFILES.contains(&word) {
            if let Bval::Dict(d) = &mut dict {
                d.push((b"transport-protocol".to_vec(), Bval::str(word)));
            }
        } else if let Some((k, v)) = word.split_once('=') {
            match k {
                "call-id" => f.call_id = Some(v.as_bytes().to_vec()),
                "from-tag" => f.from_tag = Some(v.as_bytes().to_vec()),
                "to-tag" => f.to_tag = Some(v.as_bytes().to_vec()),
                "via-branch" => {
                    return Err(
                        "via-branch is not supported by this version of the rtpengine module"
                            .into(),
                    )
                }
                k if RESERVED.contains(&k) => {
                    return Err(format!("flag {k}= is set by the module"))
                }
                "" => return Err(format!("flag '{word}' has no name")),
                k => {
                    if let Bval::Dict(d) = &mut dict {
                        d.push((k.as_bytes().to_vec(), Bval::str(v)));
                    }
                }
            }
        } else {
            push(&mut dict, "flags", word);
        }
    }
    if let Bval::Dict(d) = dict {
        f.entries = d;
    }
    Ok(f)
}

impl ParsedText for NgFlags {
    const KIND: &'static str = "rtpengine flags";

    fn parse_text(text: &[u8]) -> Result<NgFlags, String> {
        parse_ng_flags(text)
    }
}

impl Inner {
    fn from_params(p: &ModuleParams, clock: ferrosip_api::Clock) -> Result<Inner, String> {
        for name in UNSUPPORTED_PARAMS {
            if p.is_set(name) {
                return Err(format!(
                    "parameter {name} is not supported by this version of the rtpengine module"
                ));
            }
        }
        let socks: Vec<String> = p
            .all("rtpengine_sock")
            .iter()
            .filter_map(|v| v.to_bytes())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .filter(|s| !s.trim().is_empty())
            .collect();
        let sets = parse_sets(&socks).map_err(|e| format!("rtpengine_sock: {e}"))?;
        if let Some(n) = sets
            .iter()
            .flat_map(|s| &s.nodes)
            .find(|n| matches!(n.endpoint, Endpoint::Unix(_)))
        {
            return Err(format!(
                "rtpengine_sock: {}: rtpengine's ng protocol runs over UDP (udp:host:port)",
                n.url
            ));
        }
        let tout = p.int("rtpengine_tout_ms");
        let retr = p.int("rtpengine_retr");
        let disable = p.int("rtpengine_disable_tout");
        if !(10..=60_000).contains(&tout) {
            return Err(format!("rtpengine_tout_ms {tout}: expected 10..60000"));
        }
        if !(1..=20).contains(&retr) {
            return Err(format!("rtpengine_retr {retr}: expected 1..20"));
        }
        if !(0..=86_400).contains(&disable) {
            return Err(format!(
                "rtpengine_disable_tout {disable}: expected 0..86400 seconds"
            ));
        }
        let default_set = u32::try_from(p.int("setid_default"))
            .map_err(|_| "setid_default: expected a set id >= 0".to_string())?;
        Ok(Inner {
            relays: Relays::new(
                sets,
                Timing {
                    timeout: Duration::from_millis(tout as u64),
                    tries: retr as u32,
                    disable_for: Duration::from_secs(disable as u64),
                },
                clock,
            ),
            default_set,
            offers: Mutex::new(OfferLog::default()),
        })
    }

    fn set_for(&self, ctx: &MsgContext) -> Result<u32, FnError> {
        let id = ctx.ext.get::<ChosenSet>().map_or(self.default_set, |s| s.0);
        if self.relays.set(id).is_some() {
            Ok(id)
        } else if self.relays.sets.is_empty() {
            Err(fail("no rtpengine_sock is set"))
        } else {
            Err(fail(format!("no rtpengine set {id} is defined")))
        }
    }

    /// The ng dictionary for `op` on this message.
    fn command(&self, ctx: &MsgContext, op: Op, flags: &NgFlags) -> Result<(Bval, Bytes), FnError> {
        let msg = &ctx.msg;
        let call_id = match &flags.call_id {
            Some(c) => Bytes::copy_from_slice(c),
            None => msg
                .call_id_bytes()
                .ok_or_else(|| fail("the message has no Call-ID"))?,
        };
        let mut from = flags
            .from_tag
            .clone()
            .or_else(|| msg.from_tag().map(<[u8]>::to_vec))
            .ok_or_else(|| fail("the message has no From tag"))?;
        let mut to = flags
            .to_tag
            .clone()
            .or_else(|| msg.to_tag().map(<[u8]>::to_vec));
        // Kamailio's order: the from-tag is the offerer's, so an offer in a reply and an
        // answer in a request swap the message's tags.
        let swap = match op {
            Op::Offer => !msg.is_request(),
            Op::Answer => msg.is_request(),
            _ => false,
        };
        if swap {
            let t = to.take().ok_or_else(|| fail("the message has no To tag"))?;
            to = Some(std::mem::replace(&mut from, t));
        }
        if op == Op::Answer && to.is_none() {
            return Err(fail("an answer needs a To tag"));
        }
        let mut d: Vec<(Vec<u8>, Bval)> = vec![
            (b"command".to_vec(), Bval::str(op.name())),
            (b"call-id".to_vec(), Bval::str(&call_id)),
            (b"from-tag".to_vec(), Bval::Str(from)),
        ];
        if let Some(t) = to {
            d.push((b"to-tag".to_vec(), Bval::Str(t)));
        }
        if matches!(op, Op::Offer | Op::Answer) {
            let body = msg.body();
            if body.is_empty() {
                return Err(fail("the message has no SDP body"));
            }
            d.push((b"sdp".to_vec(), Bval::str(body)));
            let ip = ctx.net.source.ip();
            d.push((
                b"received-from".to_vec(),
                Bval::List(vec![
                    Bval::str(if ip.is_ipv4() { "IP4" } else { "IP6" }),
                    Bval::str(ip.to_string()),
                ]),
            ));
        }
        d.extend(flags.entries.iter().cloned());
        Ok((Bval::Dict(d), call_id))
    }

    fn run(
        self: Arc<Self>,
        ctx: &mut MsgContext,
        op: Op,
        flags: NgFlags,
    ) -> BoxFuture<'static, ferrosip_api::ApplyResult> {
        let set = match self.set_for(ctx) {
            Ok(s) => s,
            Err(e) => return done(Err(e)),
        };
        let (cmd, call_id) = match self.command(ctx, op, &flags) {
            Ok(c) => c,
            Err(e) => return done(Err(e)),
        };
        let remember = op == Op::Offer && ctx.msg.is_request();
        Box::pin(async move {
            if op == Op::Delete {
                self.offers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&call_id);
            }
            let answer = match self.relays.send(set, &call_id, &cmd.to_bytes()).await {
                Ok((a, _)) => a,
                Err(e) => return apply_result(move |_| Err(fail(e.to_string()))),
            };
            let answer = match bencode::decode(&answer) {
                Ok(a) => a,
                Err(e) => {
                    return apply_result(move |_| {
                        Err(fail(format!("rtpengine's answer does not decode: {e}")))
                    })
                }
            };
            let result = answer.get("result").and_then(Bval::as_bytes).unwrap_or(b"");
            if result != b"ok" {
                let why = answer
                    .get("error-reason")
                    .and_then(Bval::as_bytes)
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_else(|| String::from_utf8_lossy(result).into_owned());
                return apply_result(move |_| {
                    Err(fail(format!("rtpengine refused the {}: {why}", op.name())))
                });
            }
            if remember {
                self.offers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .add(call_id);
            }
            let sdp = answer
                .get("sdp")
                .and_then(Bval::as_bytes)
                .map(<[u8]>::to_vec);
            apply_result(move |ctx| {
                if let (Op::Offer | Op::Answer, Some(sdp)) = (op, sdp) {
                    ctx.msg.set_body(sdp);
                }
                Ok(Verdict::TRUE)
            })
        })
    }

    /// rtpengine_manage: offer, answer or delete as the message calls for (Kamailio's
    /// rules, with UPDATE as INVITE).
    fn manage(
        self: Arc<Self>,
        ctx: &mut MsgContext,
        flags: NgFlags,
    ) -> BoxFuture<'static, ferrosip_api::ApplyResult> {
        let msg = &ctx.msg;
        let has_sdp = !msg.body().is_empty()
            && msg.content_type().is_none_or(|t| {
                t.trim_ascii()
                    .to_ascii_lowercase()
                    .starts_with(b"application/sdp")
            });
        if msg.is_request() {
            let method = msg.method();
            if matches!(method, Some(Method::Bye | Method::Cancel))
                || ctx.route == RouteKind::Failure
            {
                return self.run(ctx, Op::Delete, flags);
            }
            match method {
                Some(Method::Invite | Method::Update) if has_sdp => self.run(ctx, Op::Offer, flags),
                Some(Method::Ack) if has_sdp => self.run(ctx, Op::Answer, flags),
                _ => done(Ok(Verdict::FALSE)),
            }
        } else {
            if msg.status().unwrap_or(0) >= 300 {
                return self.run(ctx, Op::Delete, flags);
            }
            let invite = msg
                .cseq()
                .map(|c| matches!(c.method(), Method::Invite | Method::Update))
                .unwrap_or(false);
            if !has_sdp || !invite {
                return done(Ok(Verdict::FALSE));
            }
            let offered = msg.call_id().is_some_and(|c| {
                self.offers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(c)
            });
            let op = if offered { Op::Answer } else { Op::Offer };
            self.run(ctx, op, flags)
        }
    }
}

fn node_rows(r: &Inner, url: &str) -> Result<RpcValue, String> {
    let now = r.relays.clock_now();
    let rows: Vec<RpcValue> = r
        .relays
        .sets
        .iter()
        .flat_map(|set| {
            set.nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| url == "all" || n.url == url)
                .map(move |(i, n)| {
                    let retry = *n.retry_at.lock().unwrap_or_else(|e| e.into_inner());
                    let left = retry.map_or(0, |t| t.saturating_duration_since(now).as_secs());
                    RpcValue::Struct(vec![
                        ("url".into(), RpcValue::Str(n.url.clone())),
                        ("set".into(), RpcValue::Int(i64::from(set.id))),
                        ("index".into(), RpcValue::Int(i as i64)),
                        ("weight".into(), RpcValue::Int(i64::from(n.weight))),
                        ("disabled".into(), RpcValue::Int(i64::from(!n.usable(now)))),
                        (
                            "admin_disabled".into(),
                            RpcValue::Int(i64::from(n.admin_disabled.load(Ordering::Relaxed))),
                        ),
                        ("recheck_ticks".into(), RpcValue::Int(left as i64)),
                    ])
                })
        })
        .collect();
    if rows.is_empty() {
        Err(format!("no rtpengine with url {url}"))
    } else {
        Ok(RpcValue::Array(rows))
    }
}

fn url_arg(args: &[Value], usage: &str) -> Result<String, String> {
    args.first()
        .and_then(Value::to_bytes)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .ok_or_else(|| usage.to_string())
}

fn enable(r: &Inner, args: &[Value]) -> Result<RpcValue, String> {
    const USAGE: &str = "usage: rtpengine.enable <url|all> <0|1>";
    let url = url_arg(args, USAGE)?;
    let on = match args.get(1).map(ferrosip_api::args::value_to_int) {
        Some(Ok(0)) => false,
        Some(Ok(1)) => true,
        _ => return Err(USAGE.into()),
    };
    let mut found = false;
    for n in r.relays.sets.iter().flat_map(|s| &s.nodes) {
        if url == "all" || n.url == url {
            n.admin_disabled.store(!on, Ordering::Relaxed);
            if on {
                *n.retry_at.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
            found = true;
        }
    }
    if found {
        Ok(RpcValue::Int(1))
    } else {
        Err(format!("no rtpengine with url {url}"))
    }
}

/// rtpengine.ping: an ng `ping` to each instance named, `pong` or why not.
async fn ping(r: Arc<Inner>, url: String) -> Result<RpcValue, String> {
    let mut rows = Vec::new();
    let cmd = Bval::Dict(vec![(b"command".to_vec(), Bval::str("ping"))]).to_bytes();
    for set in &r.relays.sets {
        for (i, n) in set.nodes.iter().enumerate() {
            if url != "all" && n.url != url {
                continue;
            }
            let answer = match r.relays.send_to(set.id, i, &cmd).await {
                Ok(a) => bencode::decode(&a)
                    .ok()
                    .and_then(|v| v.get("result").and_then(Bval::as_bytes).map(<[u8]>::to_vec))
                    .map_or_else(
                        || "bad answer".to_string(),
                        |b| String::from_utf8_lossy(&b).into_owned(),
                    ),
                Err(e) => e,
            };
            rows.push(RpcValue::Struct(vec![
                ("url".into(), RpcValue::Str(n.url.clone())),
                ("status".into(), RpcValue::Str(answer)),
            ]));
        }
    }
    if rows.is_empty() {
        Err(format!("no rtpengine with url {url}"))
    } else {
        Ok(RpcValue::Array(rows))
    }
}

/// The `rtpengine` module.
pub struct RtpengineModule;

impl Module for RtpengineModule {
    fn name(&self) -> &'static str {
        "rtpengine"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Media relaying and manipulation through the rtpengine control protocol (ng): the message's SDP is sent to rtpengine (bencoded, over UDP) with the Call-ID, the tags, the source address and the flags, and the SDP rtpengine answers replaces the body. Flags are a space-separated string passed through as Kamailio does: replace-X, rtcp-mux-X, SDES-X, direction=X and codec-ACTION-X add to lists, an RTP profile (RTP/AVP, ...) sets transport-protocol, key=value sets a key, other words are flags (trust-address, symmetric, ...); call-id=, from-tag= and to-tag= override the message's. via-branch is not supported (refused at load). Parameters other than rtpengine_sock, rtpengine_tout_ms, rtpengine_retr, rtpengine_disable_tout and setid_default are not supported: setting one fails the load.");
        m.repeatable_param("rtpengine_sock", ParamType::Str, "Control socket(s) of rtpengine instances (ng protocol): \"udp:host:port\" or \"udp6:host:port\", several separated by spaces, each optionally \"=weight\"; \"N == ...\" puts them in set N (else set 0). May be given several times.");
        m.param(
            "rtpengine_disable_tout",
            ParamType::Int,
            60_i64,
            "Seconds an unreachable instance stays disabled.",
        );
        m.param(
            "aggressive_redetection",
            ParamType::Int,
            0_i64,
            "When 1, all instances are re-tried when every one is disabled.",
        );
        m.param(
            "rtpengine_retr",
            ParamType::Int,
            5_i64,
            "Retries of a control command before an instance is disabled.",
        );
        m.param(
            "rtpengine_tout_ms",
            ParamType::Int,
            1000_i64,
            "Milliseconds to wait for an instance's answer.",
        );
        m.param(
            "queried_nodes_limit",
            ParamType::Int,
            10_i64,
            "Maximum number of instances tried for one command.",
        );
        m.param(
            "rtpengine_allow_op",
            ParamType::Int,
            0_i64,
            "When 1, calls continue on instances being disabled by the administrator.",
        );
        m.param(
            "ping_mode",
            ParamType::Int,
            1_i64,
            "When 1, instances are pinged periodically.",
        );
        m.param(
            "ping_interval",
            ParamType::Int,
            60_i64,
            "Seconds between pings of instances.",
        );
        m.param(
            "db_url",
            ParamType::Str,
            Value::Null,
            "Database holding the instance list.",
        );
        m.param(
            "table_name",
            ParamType::Str,
            "rtpengine",
            "Table of instances.",
        );
        m.param(
            "extra_id_pv",
            ParamType::Str,
            Value::Null,
            "Variable whose value is sent as extra call id (flag \"b\").",
        );
        m.param(
            "setid_avp",
            ParamType::Str,
            Value::Null,
            "AVP receiving the selected set id.",
        );
        m.param(
            "force_send_interface",
            ParamType::Str,
            Value::Null,
            "Local address used to talk to instances.",
        );
        m.param(
            "rtp_inst_pvar",
            ParamType::Str,
            Value::Null,
            "Variable receiving the address of the selected instance.",
        );
        m.param(
            "write_sdp_pv",
            ParamType::Str,
            Value::Null,
            "Variable receiving the rewritten SDP instead of the message body.",
        );
        m.param(
            "read_sdp_pv",
            ParamType::Str,
            Value::Null,
            "Variable from which the SDP is read instead of the message body.",
        );
        m.param(
            "hash_table_tout",
            ParamType::Int,
            3600_i64,
            "Seconds a call-to-instance mapping is kept.",
        );
        m.param(
            "hash_table_size",
            ParamType::Int,
            256_i64,
            "Size of the call-to-instance hash table.",
        );
        m.param("setid_default", ParamType::Int, 0_i64, "Default set id.");
        m.param(
            "media_duration",
            ParamType::Str,
            Value::Null,
            "Variable receiving the duration of played media.",
        );
        m.param(
            "hash_algo",
            ParamType::Int,
            2_i64,
            "Hash used to pick an instance per call: 0 sum, 1 crc32, 2 crc32 of Call-ID.",
        );
        m.param(
            "dtmf_events_sock",
            ParamType::Str,
            Value::Null,
            "Socket receiving DTMF events from rtpengine.",
        );
        m.param(
            "event_callback",
            ParamType::Str,
            Value::Null,
            "KEMI function run instead of event_route[rtpengine:dtmf-event].",
        );
        m.param(
            "enable_dmq",
            ParamType::Int,
            0_i64,
            "When 1, call-to-instance mappings are replicated with DMQ.",
        );
        m.param(
            "wsapi",
            ParamType::Str,
            Value::Null,
            "WebSocket API URL of rtpengine (for ws control sockets).",
        );
        m.param(
            "dmq_peer_id",
            ParamType::Str,
            "rtpengine",
            "DMQ peer name used for replication.",
        );
        m.param(
            "mos_min_pv",
            ParamType::Str,
            Value::Null,
            "Variable receiving the minimum MOS reported on delete.",
        );
        m.param(
            "mos_max_pv",
            ParamType::Str,
            Value::Null,
            "Variable receiving the maximum MOS reported on delete.",
        );
        m.param(
            "mos_average_pv",
            ParamType::Str,
            Value::Null,
            "Variable receiving the average MOS reported on delete.",
        );
        let clock = m.clock();
        let st: Shared = m.state(move |p| {
            Ok(Rtpengine {
                inner: Arc::new(Inner::from_params(p, clock.clone())?),
            })
        });
        const FLAGS_VIA_BRANCH: &[&str] = &["flags", "via_branch"];
        let f = |op: Op| {
            st.with(move |s: &Rtpengine, ctx: &mut MsgContext| {
                s.inner.clone().run(ctx, op, NgFlags::default())
            })
        };
        let g = |op: Op| {
            st.with(
                move |s: &Rtpengine, ctx: &mut MsgContext, Parsed(flags): Parsed<NgFlags>| {
                    s.inner.clone().run(ctx, op, flags)
                },
            )
        };
        let manage0 = st.with(|s: &Rtpengine, ctx: &mut MsgContext| {
            s.inner.clone().manage(ctx, NgFlags::default())
        });
        let manage1 = st.with(
            |s: &Rtpengine, ctx: &mut MsgContext, Parsed(flags): Parsed<NgFlags>| {
                s.inner.clone().manage(ctx, flags)
            },
        );
        let set1 = st.with(|s: &Rtpengine, ctx: &mut MsgContext, id: i64| {
            let id = u32::try_from(id).map_err(|_| fail(format!("set {id} is out of range")))?;
            if s.inner.relays.set(id).is_none() {
                return Err(fail(format!("no rtpengine set {id} is defined")));
            }
            ctx.ext.insert(ChosenSet(id));
            Ok(Verdict::TRUE)
        });
        #[rustfmt::skip]
        m.functions([
            FnRow::asynchronous("rtpengine_manage", &[], RouteMask::ANY, "Offers, answers or deletes as suited to the message: BYE, CANCEL, a reply >= 300 or a request in a failure route deletes; an INVITE or UPDATE with SDP offers; an ACK with SDP answers; a 1xx/2xx reply to an INVITE/UPDATE with SDP answers when the request offered, else offers. 1 on success, -1 when there was nothing to do or rtpengine failed.", manage0),
            FnRow::asynchronous("rtpengine_manage", &["flags"], RouteMask::ANY, "As rtpengine_manage() with ng flags (\"replace-origin trust-address RTP/AVP ...\"); 1 on success, -1 on failure.", manage1),
            FnRow::declared::<(Bytes, Bytes)>("rtpengine_manage", FLAGS_VIA_BRANCH, RouteMask::ANY, "As rtpengine_manage() with flags and a Via branch selector; 1 on success, -1 on failure."),
            FnRow::asynchronous("rtpengine_offer", &[], RouteMask::ANY, "Sends the SDP as an ng offer and puts rtpengine's SDP in its place; 1 on success, -1 on failure.", f(Op::Offer)),
            FnRow::asynchronous("rtpengine_offer", &["flags"], RouteMask::ANY, "Sends an offer with ng flags; 1 on success, -1 on failure.", g(Op::Offer)),
            FnRow::declared::<(Bytes, Bytes)>("rtpengine_offer", FLAGS_VIA_BRANCH, RouteMask::ANY, "Sends an offer with flags and a Via branch selector; 1 on success, -1 on failure."),
            FnRow::asynchronous("rtpengine_answer", &[], RouteMask::ANY, "Sends the SDP as an ng answer and puts rtpengine's SDP in its place; 1 on success, -1 on failure.", f(Op::Answer)),
            FnRow::asynchronous("rtpengine_answer", &["flags"], RouteMask::ANY, "Sends an answer with ng flags; 1 on success, -1 on failure.", g(Op::Answer)),
            FnRow::declared::<(Bytes, Bytes)>("rtpengine_answer", FLAGS_VIA_BRANCH, RouteMask::ANY, "Sends an answer with flags and a Via branch selector; 1 on success, -1 on failure."),
            FnRow::asynchronous("rtpengine_delete", &[], RouteMask::ANY, "Deletes the media session (ng delete with Call-ID, From tag and To tag if any); 1 on success, -1 on failure.", f(Op::Delete)),
            FnRow::asynchronous("rtpengine_delete", &["flags"], RouteMask::ANY, "Deletes the media session with ng flags; 1 on success, -1 on failure.", g(Op::Delete)),
            FnRow::declared::<(Bytes, Bytes)>("rtpengine_delete", FLAGS_VIA_BRANCH, RouteMask::ANY, "Deletes with flags and a Via branch selector; 1 on success, -1 on failure."),
            FnRow::declared::<()>("rtpengine_destroy", &[], RouteMask::ANY, "Deletes the media session and ends the call at rtpengine; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("rtpengine_destroy", &["flags"], RouteMask::ANY, "As rtpengine_destroy() with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("rtpengine_destroy", FLAGS_VIA_BRANCH, RouteMask::ANY, "As rtpengine_destroy() with flags and a Via branch selector; 1 on success, -1 on failure."),
            FnRow::asynchronous("rtpengine_query", &[], RouteMask::ANY, "Asks rtpengine about the session (ng query); 1 when it knows it, -1 otherwise.", f(Op::Query)),
            FnRow::asynchronous("rtpengine_query", &["flags"], RouteMask::ANY, "As rtpengine_query() with ng flags; 1 when rtpengine knows the session, -1 otherwise.", g(Op::Query)),
            FnRow::declared::<(Bytes, Bytes)>("rtpengine_query", FLAGS_VIA_BRANCH, RouteMask::ANY, "Queries with flags and a Via branch selector; 1 on success, -1 on failure."),
            FnRow::declared::<()>("rtpengine_info", &[], RouteMask::ANY, "Sends session information to rtpengine; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("rtpengine_info", &["flags"], RouteMask::ANY, "Sends session information with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("rtpengine_info", FLAGS_VIA_BRANCH, RouteMask::ANY, "Sends session information with flags and a Via branch selector; 1 on success, -1 on failure."),
            FnRow::sync("set_rtpengine_set", &["setid"], RouteMask::ANY, "Selects the rtpengine set for the following commands on this message; 1, or an error when the set is not defined.", set1),
            FnRow::declared::<(i64, i64)>("set_rtpengine_set", &["setid", "setid2"], RouteMask::ANY, "Selects the sets for the offer and the answer side; 1 on success, -1 on failure."),
            FnRow::declared::<()>("start_recording", &[], RouteMask::ANY, "Starts call recording at rtpengine; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("start_recording", &["flags"], RouteMask::ANY, "Starts call recording with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<()>("stop_recording", &[], RouteMask::ANY, "Stops call recording; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("stop_recording", &["flags"], RouteMask::ANY, "Stops call recording with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<()>("block_dtmf", &[], RouteMask::ANY, "Blocks DTMF events of the call; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("block_dtmf", &["flags"], RouteMask::ANY, "Blocks DTMF with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<()>("unblock_dtmf", &[], RouteMask::ANY, "Unblocks DTMF events of the call; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("unblock_dtmf", &["flags"], RouteMask::ANY, "Unblocks DTMF with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<()>("block_media", &[], RouteMask::ANY, "Blocks the media of the call; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("block_media", &["flags"], RouteMask::ANY, "Blocks media with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<()>("unblock_media", &[], RouteMask::ANY, "Unblocks the media of the call; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("unblock_media", &["flags"], RouteMask::ANY, "Unblocks media with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<()>("silence_media", &[], RouteMask::ANY, "Replaces the media with silence; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("silence_media", &["flags"], RouteMask::ANY, "Silences media with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<()>("unsilence_media", &[], RouteMask::ANY, "Stops silencing the media; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("unsilence_media", &["flags"], RouteMask::ANY, "Stops silencing with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<()>("start_forwarding", &[], RouteMask::ANY, "Starts forwarding media to the recording daemon; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("start_forwarding", &["flags"], RouteMask::ANY, "Starts forwarding with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<()>("stop_forwarding", &[], RouteMask::ANY, "Stops forwarding media; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("stop_forwarding", &["flags"], RouteMask::ANY, "Stops forwarding with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("play_media", &["flags"], RouteMask::ANY, "Plays a media file or prompt into the call; 1 on success, -1 on failure."),
            FnRow::declared::<()>("stop_media", &[], RouteMask::ANY, "Stops media playback; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("stop_media", &["flags"], RouteMask::ANY, "Stops media playback with ng flags; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("play_dtmf", &["flags"], RouteMask::ANY, "Injects DTMF tones into the call; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, PvOut)>("rtpengine_query_v", &["fmt", "var"], RouteMask::ANY, "Queries session statistics into a variable (\"j\" JSON format); 1 on success, -1 on failure."),
        ]);
        let s = st.clone();
        m.rpc(
            "rtpengine.show",
            "Shows the rtpengine instances (\"all\" or one url): url, set, index, weight, disabled (after not answering or by rtpengine.enable), admin_disabled and the seconds before a disabled one is tried again.",
            move |args| {
                let url = url_arg(args, "usage: rtpengine.show <url|all>")?;
                node_rows(&s.get().map_err(|e| e.message)?.inner, &url)
            },
        );
        let s = st.clone();
        m.rpc(
            "rtpengine.enable",
            "Enables (1) or disables (0) an instance by url (\"all\": every one): rtpengine.enable udp:127.0.0.1:2223 0.",
            move |args| enable(&s.get().map_err(|e| e.message)?.inner, args),
        );
        let s = st.clone();
        m.rpc_async(
            "rtpengine.ping",
            "Sends an ng ping to an instance (\"all\": every one) and answers each one's status (pong, or why not); one that does not answer is disabled as after a failed command.",
            move |args| {
                let r = s.get().map_err(|e| e.message);
                let url = url_arg(&args, "usage: rtpengine.ping <url|all>");
                async move { ping(r?.inner.clone(), url?).await }
            },
        );
        m.example("loadmodule \"tm.so\"\nloadmodule \"rtpengine.so\"\nmodparam(\"rtpengine\", \"rtpengine_sock\", \"udp:127.0.0.1:2223\")\nrequest_route {\n\tif (is_method(\"INVITE|ACK|BYE|CANCEL\")) {\n\t\trtpengine_manage(\"replace-origin replace-session-connection\");\n\t}\n\tt_on_reply(\"MEDIA\");\n\tt_relay();\n}\nonreply_route[MEDIA] {\n\trtpengine_manage(\"replace-origin replace-session-connection\");\n}\n");
    }
}
