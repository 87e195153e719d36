//! `rtpproxy`: Media relaying through rtpproxy instances.
//!
//! Kamailio's rtpproxy module: an offer (`U` command) or answer (`L`) per relayed SDP
//! stream, the SDP's c=, m= (and a=rtcp) then pointing at the relay's answer, and a delete
//! (`D`) when the call ends. The exchange with the relay is awaited on the runtime, never
//! holding a worker.

pub mod control;
mod sdp;
#[cfg(test)]
mod tests;

use bytes::Bytes;
use control::{parse_sets, Endpoint, OfferLog, Relays, Timing};
use ferrosip_api::args::{Parsed, ParsedText};
use ferrosip_api::registry::{BoxFuture, FnRow, RpcValue, StateSlot};
use ferrosip_api::sip::Method;
use ferrosip_api::{
    apply_result, FnError, FnResult, Module, ModuleBuilder, MsgContext, ParamType, RouteKind,
    RouteMask, Value, Verdict,
};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The module's state; shared with the exchanges in flight, which outlive the call.
pub struct Rtpproxy {
    inner: Arc<Inner>,
}

impl Rtpproxy {
    fn arc(&self) -> Arc<Inner> {
        self.inner.clone()
    }
}

/// The relays and what the functions need of the parameters.
pub struct Inner {
    relays: Relays,
    marker: Bytes,
    offers: Mutex<OfferLog>,
}

type Shared = StateSlot<Rtpproxy>;

/// The set `set_rtp_proxy_set()` chose for this message.
struct ChosenSet(u32);

/// The flags of rtpproxy_offer/answer/manage/destroy, checked at load when literal.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Flags {
    asymmetric: bool,
    symmetric: bool,
    /// `i`/`e`: the directions of the two legs, sent as `I`/`E` modifiers.
    directions: String,
    lookup: bool,
    force: bool,
    trust_address: bool,
    origin: bool,
    session_c: bool,
}

const FLAG_LETTERS: &str = "a, c, e, f, i, l, o, r, w";

fn parse_flags(s: &[u8]) -> Result<Flags, String> {
    let mut f = Flags::default();
    for &c in s {
        match c.to_ascii_lowercase() {
            b'a' => f.asymmetric = true,
            b'w' => f.symmetric = true,
            b'i' | b'e' if f.directions.len() < 2 => {
                f.directions.push(c.to_ascii_uppercase() as char)
            }
            b'i' | b'e' => return Err("more than two direction flags (i/e)".into()),
            b'l' => f.lookup = true,
            b'f' => f.force = true,
            b'r' => f.trust_address = true,
            b'o' => f.origin = true,
            b'c' => f.session_c = true,
            other => {
                return Err(format!(
                    "rtpproxy flag '{}' is not supported (supported: {FLAG_LETTERS})",
                    other as char
                ))
            }
        }
    }
    Ok(f)
}

impl ParsedText for Flags {
    const KIND: &'static str = "rtpproxy flags";

    fn parse_text(text: &[u8]) -> Result<Flags, String> {
        parse_flags(text)
    }
}

/// What a call asks of the relay, taken from the message before the wait.
struct Job {
    set: u32,
    call_id: Bytes,
    /// Offer (`U`) or answer (`L`) per stream; `None`: delete.
    exchange: Option<Exchange>,
    from_tag: Bytes,
    to_tag: Option<Bytes>,
}

struct Exchange {
    create: bool,
    /// An offer from the INVITE: its 2xx carries the answer.
    remember: bool,
    flags: Flags,
    streams: Vec<sdp::Stream>,
    source: IpAddr,
    new_ip: Option<String>,
}

fn fail(msg: impl Into<String>) -> FnError {
    FnError::new(msg.into())
}

fn done(f: FnResult) -> BoxFuture<'static, ferrosip_api::ApplyResult> {
    Box::pin(std::future::ready(apply_result(move |_| f)))
}

impl Inner {
    fn from_params(
        p: &ferrosip_api::registry::ModuleParams,
        clock: ferrosip_api::Clock,
    ) -> Result<Inner, String> {
        let socks: Vec<String> = p
            .all("rtpproxy_sock")
            .iter()
            .filter_map(|v| v.to_bytes())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .filter(|s| !s.trim().is_empty())
            .collect();
        let sets = parse_sets(&socks).map_err(|e| format!("rtpproxy_sock: {e}"))?;
        let tout = p.int("rtpproxy_tout");
        let retr = p.int("rtpproxy_retr");
        let disable = p.int("rtpproxy_disable_tout");
        if !(1..=60).contains(&tout) {
            return Err(format!("rtpproxy_tout {tout}: expected 1..60 seconds"));
        }
        if !(1..=20).contains(&retr) {
            return Err(format!("rtpproxy_retr {retr}: expected 1..20"));
        }
        if !(0..=86_400).contains(&disable) {
            return Err(format!(
                "rtpproxy_disable_tout {disable}: expected 0..86400 seconds"
            ));
        }
        for unsupported in [
            "timeout_socket",
            "timeout_tag_pv",
            "ice_candidate_priority_avp",
            "extra_id_pv",
            "db_url",
            "rtp_inst_pvar",
        ] {
            if !p.string(unsupported).is_empty() {
                return Err(format!(
                    "parameter {unsupported} is not supported by this version of the rtpproxy module"
                ));
            }
        }
        Ok(Inner {
            relays: Relays::new(
                sets,
                Timing {
                    timeout: Duration::from_secs(tout as u64),
                    tries: retr as u32,
                    disable_for: Duration::from_secs(disable as u64),
                },
                clock,
            ),
            marker: Bytes::from(p.string("nortpproxy_str").into_bytes()),
            offers: Mutex::new(OfferLog::default()),
        })
    }

    fn chosen_set(&self, ctx: &MsgContext) -> Result<u32, FnError> {
        match ctx.ext.get::<ChosenSet>() {
            Some(s) => Ok(s.0),
            None => self
                .relays
                .default_set()
                .ok_or_else(|| fail("no rtpproxy_sock is set")),
        }
    }

    fn job(
        &self,
        ctx: &MsgContext,
        exchange: Option<(bool, Flags, Option<Bytes>)>,
    ) -> Result<Job, FnError> {
        let msg = &ctx.msg;
        let call_id = msg
            .call_id_bytes()
            .ok_or_else(|| fail("the message has no Call-ID"))?;
        let mut from_tag = Bytes::copy_from_slice(
            msg.from_tag()
                .ok_or_else(|| fail("the message has no From tag"))?,
        );
        let mut to_tag = msg.to_tag().map(Bytes::copy_from_slice);
        // The control protocol separates fields with blanks and tags from stream numbers
        // with ';': a value holding either would change the command.
        for v in [Some(&call_id), Some(&from_tag), to_tag.as_ref()]
            .into_iter()
            .flatten()
        {
            if v.is_empty() || !v.iter().all(|c| c.is_ascii_graphic() && *c != b';') {
                return Err(fail("the Call-ID or a tag cannot be sent to rtpproxy"));
            }
        }
        let set = self.chosen_set(ctx)?;
        let exchange = match exchange {
            None => None,
            Some((offer, flags, new_ip)) => {
                let body = msg.body();
                if body.is_empty() {
                    return Err(fail("the message has no SDP body"));
                }
                let streams = sdp::streams(body).map_err(fail)?;
                // The first tag is that of the side that made the offer (Kamailio's
                // order, the same for U and L): a late offer in a reply and the answer in
                // an ACK are the callee's.
                let create = offer && !flags.lookup;
                let swap = msg.is_request() != offer;
                if swap || !create {
                    let to = to_tag
                        .take()
                        .ok_or_else(|| fail("an answer or lookup needs a To tag"))?;
                    to_tag = Some(if swap {
                        std::mem::replace(&mut from_tag, to)
                    } else {
                        to
                    });
                }
                Some(Exchange {
                    create,
                    remember: create && msg.is_request(),
                    flags,
                    streams,
                    source: ctx.net.source.ip(),
                    new_ip: new_ip.map(|b| String::from_utf8_lossy(&b).into_owned()),
                })
            }
        };
        Ok(Job {
            set,
            call_id,
            exchange,
            from_tag,
            to_tag,
        })
    }

    /// Whether the SDP already went through a relay (and `f` does not force another).
    fn already_relayed(&self, ctx: &MsgContext, flags: &Flags) -> bool {
        !flags.force && sdp::has_marker(ctx.msg.body(), &self.marker)
    }

    fn run(self: Arc<Self>, job: Job) -> BoxFuture<'static, ferrosip_api::ApplyResult> {
        Box::pin(async move {
            let call_id = String::from_utf8_lossy(&job.call_id).into_owned();
            let from = String::from_utf8_lossy(&job.from_tag).into_owned();
            let to = job
                .to_tag
                .as_ref()
                .map(|t| String::from_utf8_lossy(t).into_owned());
            let Some(ex) = job.exchange else {
                self.offers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&job.call_id);
                let mut cmd = format!("D {call_id} {from}");
                if let Some(to) = &to {
                    cmd.push(' ');
                    cmd.push_str(to);
                }
                let r = self
                    .relays
                    .send(job.set, &job.call_id, cmd.as_bytes())
                    .await;
                return apply_result(move |_| match r {
                    Ok((a, _)) if !a.starts_with(b"E") => Ok(Verdict::TRUE),
                    Ok((a, _)) => Err(fail(format!(
                        "the relay refused the delete: {}",
                        String::from_utf8_lossy(&a).trim()
                    ))),
                    Err(e) => Err(fail(e.to_string())),
                });
            };
            let mut relays: Vec<Option<sdp::Relay>> = Vec::with_capacity(ex.streams.len());
            for s in &ex.streams {
                if s.port == 0 {
                    relays.push(None);
                    continue;
                }
                let addr = if ex.flags.trust_address {
                    match &s.addr {
                        Some(a) => a.clone(),
                        None => {
                            return apply_result(|_| Err(fail("an SDP stream has no c= address")))
                        }
                    }
                } else {
                    ex.source.to_string()
                };
                let mut mods = String::new();
                if ex.flags.asymmetric {
                    mods.push('A');
                }
                if ex.flags.symmetric {
                    mods.push('W');
                }
                mods.push_str(&ex.flags.directions);
                if addr.contains(':') {
                    mods.push('6');
                }
                let mut cmd = format!(
                    "{}{mods} {call_id} {addr} {} {from};{}",
                    if ex.create { 'U' } else { 'L' },
                    s.port,
                    s.index
                );
                if let Some(to) = &to {
                    cmd.push_str(&format!(" {to};{}", s.index));
                }
                let (answer, node) = match self
                    .relays
                    .send(job.set, &job.call_id, cmd.as_bytes())
                    .await
                {
                    Ok((a, n)) => (String::from_utf8_lossy(&a).trim().to_string(), n),
                    Err(e) => return apply_result(move |_| Err(fail(e.to_string()))),
                };
                let mut words = answer.split_ascii_whitespace();
                let port = words.next().and_then(|p| p.parse::<u16>().ok());
                let port = match port {
                    Some(p) if p != 0 => p,
                    _ => {
                        return apply_result(move |_| {
                            Err(fail(format!(
                                "the relay did not relay the stream: {answer}"
                            )))
                        })
                    }
                };
                let ip = match (&ex.new_ip, words.next()) {
                    (Some(ip), _) => ip.clone(),
                    (None, Some(ip)) if ip.parse::<IpAddr>().is_ok() => ip.to_string(),
                    _ => match &self.relays.set(job.set).map(|s| &s.nodes[node].endpoint) {
                        Some(Endpoint::Udp(a)) => a.ip().to_string(),
                        _ => {
                            return apply_result(|_| {
                                Err(fail("the relay's answer has no address to put in the SDP"))
                            })
                        }
                    },
                };
                relays.push(Some(sdp::Relay { port, ip }));
            }
            if ex.remember {
                self.offers
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .add(job.call_id.clone());
            }
            let marker = self.marker.clone();
            apply_result(move |ctx| {
                let how = sdp::Rewrite {
                    session_c: ex.flags.session_c,
                    origin: ex.flags.origin,
                    marker: &marker,
                };
                let body = sdp::rewrite(ctx.msg.body(), &relays, &how);
                ctx.msg.set_body(body);
                Ok(Verdict::TRUE)
            })
        })
    }

    /// rtpproxy_offer / rtpproxy_answer.
    fn exchange(
        self: Arc<Self>,
        ctx: &mut MsgContext,
        offer: bool,
        flags: Flags,
        ip: Option<Bytes>,
    ) -> BoxFuture<'static, ferrosip_api::ApplyResult> {
        if self.already_relayed(ctx, &flags) {
            return done(Ok(Verdict::FALSE));
        }
        match self.job(ctx, Some((offer, flags, ip))) {
            Ok(job) => self.run(job),
            Err(e) => done(Err(e)),
        }
    }

    fn destroy(
        self: Arc<Self>,
        ctx: &mut MsgContext,
    ) -> BoxFuture<'static, ferrosip_api::ApplyResult> {
        match self.job(ctx, None) {
            Ok(job) => self.run(job),
            Err(e) => done(Err(e)),
        }
    }

    /// rtpproxy_manage: Kamailio's choice of offer, answer or delete from the message.
    fn manage(
        self: Arc<Self>,
        ctx: &mut MsgContext,
        flags: Flags,
        ip: Option<Bytes>,
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
                return self.destroy(ctx);
            }
            match method {
                Some(Method::Invite) if has_sdp => self.exchange(ctx, true, flags, ip),
                Some(Method::Ack) if has_sdp => self.exchange(ctx, false, flags, ip),
                _ => done(Ok(Verdict::FALSE)),
            }
        } else {
            let status = msg.status().unwrap_or(0);
            if status >= 300 {
                return self.destroy(ctx);
            }
            let invite = msg
                .cseq()
                .map(|c| c.method() == Method::Invite)
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
            // The INVITE had no SDP: this is the offer, the ACK will carry the answer.
            self.exchange(ctx, !offered, flags, ip)
        }
    }
}

fn list(r: &Inner) -> RpcValue {
    let now = r.relays.clock_now();
    RpcValue::Array(
        r.relays
            .sets
            .iter()
            .flat_map(|set| {
                set.nodes.iter().enumerate().map(move |(i, n)| {
                    let retry = *n.retry_at.lock().unwrap_or_else(|e| e.into_inner());
                    let admin = n.admin_disabled.load(Ordering::Relaxed);
                    let left = retry.map_or(0, |t| t.saturating_duration_since(now).as_secs());
                    RpcValue::Struct(vec![
                        ("setid".into(), RpcValue::Int(i64::from(set.id))),
                        ("url".into(), RpcValue::Str(n.url.clone())),
                        ("index".into(), RpcValue::Int(i as i64)),
                        (
                            "disabled".into(),
                            RpcValue::Int(i64::from(admin || !n.usable(now))),
                        ),
                        ("weight".into(), RpcValue::Int(i64::from(n.weight))),
                        ("recheck_ticks".into(), RpcValue::Int(left as i64)),
                    ])
                })
            })
            .collect(),
    )
}

fn enable(r: &Inner, args: &[Value]) -> Result<RpcValue, String> {
    let url = args
        .first()
        .and_then(Value::to_bytes)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .ok_or("usage: rtpproxy.enable <url> <0|1>")?;
    let on = match args.get(1).map(ferrosip_api::args::value_to_int) {
        Some(Ok(0)) => false,
        Some(Ok(1)) => true,
        _ => return Err("usage: rtpproxy.enable <url> <0|1>".into()),
    };
    let mut found = false;
    for set in &r.relays.sets {
        for n in set.nodes.iter().filter(|n| n.url == url || url == "all") {
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
        Err(format!("no rtpproxy with url {url}"))
    }
}

/// The `rtpproxy` module.
pub struct RtpproxyModule;

impl Module for RtpproxyModule {
    fn name(&self) -> &'static str {
        "rtpproxy"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Media relaying through rtpproxy instances: the SDP of a call is sent to a relay (rtpproxy's control protocol over UDP or a Unix socket; rtpengine's --listen-udp speaks it too) and its c=, m= and a=rtcp lines rewritten to the relay's address and ports; the relay is told to delete the session when the call ends. Each exchange is awaited without holding a worker. Flags: a (the UA is asymmetric), w (symmetric), i/e (directions of the two legs, up to two), l (lookup only: no new session), f (relay even when the SDP carries nortpproxy_str), r (trust the SDP address; without it the message's source address is sent), o (rewrite o=), c (rewrite the session-level c= even when every stream has its own).");
        m.repeatable_param("rtpproxy_sock", ParamType::Str, "Control socket(s) of rtpproxy instances: \"udp:host:port\", \"udp6:host:port\" or \"unix:/path\", several separated by spaces, each optionally \"=weight\"; \"N == ...\" puts them in set N (else set 0). May be given several times.");
        m.param(
            "rtpproxy_disable_tout",
            ParamType::Int,
            60_i64,
            "Seconds an unreachable instance stays disabled (0..86400).",
        );
        m.param(
            "rtpproxy_retr",
            ParamType::Int,
            5_i64,
            "Times a command is sent to an instance before it is disabled (1..20).",
        );
        m.param(
            "rtpproxy_tout",
            ParamType::Int,
            1_i64,
            "Seconds to wait for an instance's answer to each try (1..60).",
        );
        m.param(
            "nortpproxy_str",
            ParamType::Str,
            "a=nortpproxy:yes\r\n",
            "SDP line added to a relayed SDP; an SDP carrying it is not relayed again unless the f flag is given. Empty: neither added nor checked.",
        );
        m.param(
            "timeout_socket",
            ParamType::Str,
            "",
            "Socket rtpproxy notifies of media timeouts. Not supported: setting it fails the load.",
        );
        m.param(
            "timeout_tag_pv",
            ParamType::Str,
            "",
            "Variable with the tag for timeout notifications. Not supported: setting it fails the load.",
        );
        m.param(
            "ice_candidate_priority_avp",
            ParamType::Str,
            Value::Null,
            "AVP with the ICE candidate priority to use. Not supported: setting it fails the load.",
        );
        m.param(
            "extra_id_pv",
            ParamType::Str,
            Value::Null,
            "Variable whose value is sent as extra call id. Not supported: setting it fails the load.",
        );
        m.param(
            "db_url",
            ParamType::Str,
            Value::Null,
            "Database holding the instance list. Not supported: setting it fails the load.",
        );
        m.param(
            "table_name",
            ParamType::Str,
            "rtpproxy",
            "Table of instances (used with db_url, which is not supported).",
        );
        m.param(
            "rtp_inst_pvar",
            ParamType::Str,
            Value::Null,
            "Variable receiving the address of the selected instance. Not supported: setting it fails the load.",
        );
        let clock = m.clock();
        let st: Shared = m.state(move |p| {
            Ok(Rtpproxy {
                inner: Arc::new(Inner::from_params(p, clock.clone())?),
            })
        });

        const FLAGS_IP_ADDRESS: &[&str] = &["flags", "ip_address"];
        const PROMPT_NAME_COUNT: &[&str] = &["prompt_name", "count"];
        let manage0 = st
            .with(|s: &Rtpproxy, ctx: &mut MsgContext| s.arc().manage(ctx, Flags::default(), None));
        let manage1 = st.with(
            |s: &Rtpproxy, ctx: &mut MsgContext, Parsed(f): Parsed<Flags>| {
                s.arc().manage(ctx, f, None)
            },
        );
        let manage2 = st.with(
            |s: &Rtpproxy, ctx: &mut MsgContext, Parsed(f): Parsed<Flags>, ip: Bytes| {
                s.arc().manage(ctx, f, Some(ip))
            },
        );
        let offer0 = st.with(|s: &Rtpproxy, ctx: &mut MsgContext| {
            s.arc().exchange(ctx, true, Flags::default(), None)
        });
        let offer1 = st.with(
            |s: &Rtpproxy, ctx: &mut MsgContext, Parsed(f): Parsed<Flags>| {
                s.arc().exchange(ctx, true, f, None)
            },
        );
        let offer2 = st.with(
            |s: &Rtpproxy, ctx: &mut MsgContext, Parsed(f): Parsed<Flags>, ip: Bytes| {
                s.arc().exchange(ctx, true, f, Some(ip))
            },
        );
        let answer0 = st.with(|s: &Rtpproxy, ctx: &mut MsgContext| {
            s.arc().exchange(ctx, false, Flags::default(), None)
        });
        let answer1 = st.with(
            |s: &Rtpproxy, ctx: &mut MsgContext, Parsed(f): Parsed<Flags>| {
                s.arc().exchange(ctx, false, f, None)
            },
        );
        let answer2 = st.with(
            |s: &Rtpproxy, ctx: &mut MsgContext, Parsed(f): Parsed<Flags>, ip: Bytes| {
                s.arc().exchange(ctx, false, f, Some(ip))
            },
        );
        let destroy0 = st.with(|s: &Rtpproxy, ctx: &mut MsgContext| s.arc().destroy(ctx));
        let destroy1 =
            st.with(|s: &Rtpproxy, ctx: &mut MsgContext, _f: Parsed<Flags>| s.arc().destroy(ctx));
        let set_set = st.with(|s: &Rtpproxy, ctx: &mut MsgContext, id: i64| {
            let id = u32::try_from(id).map_err(|_| fail(format!("set {id} is out of range")))?;
            if s.inner.relays.set(id).is_none() {
                return Err(fail(format!("no rtpproxy set {id} is defined")));
            }
            ctx.ext.insert(ChosenSet(id));
            Ok(Verdict::TRUE)
        });
        #[rustfmt::skip]
        m.functions([
            FnRow::asynchronous("rtpproxy_manage", &[], RouteMask::ANY, "Offers, answers or deletes the session as suited to the message (Kamailio's rules): BYE, CANCEL, a reply >= 300 or any request in a failure route deletes; an INVITE with SDP offers; an ACK with SDP answers; a 1xx/2xx reply to an INVITE with SDP answers when the INVITE offered, else offers. 1 on success, -1 when there was nothing to do or the relay failed.", manage0.clone()),
            FnRow::asynchronous("rtpproxy_manage", &["flags"], RouteMask::ANY, "As rtpproxy_manage() with flags (see the module's description); 1 on success, -1 on failure.", manage1),
            FnRow::asynchronous("rtpproxy_manage", FLAGS_IP_ADDRESS, RouteMask::ANY, "As rtpproxy_manage() with flags and the address to put into the SDP instead of the relay's; 1 on success, -1 on failure.", manage2),
            FnRow::asynchronous("rtpproxy_offer", &[], RouteMask::ANY, "Sends the SDP as an offer (U command) and rewrites it to the relay; 1 on success, -1 when the SDP is already relayed (nortpproxy_str) or the relay failed.", offer0),
            FnRow::asynchronous("rtpproxy_offer", &["flags"], RouteMask::ANY, "Sends an offer with flags; 1 on success, -1 on failure.", offer1),
            FnRow::asynchronous("rtpproxy_offer", FLAGS_IP_ADDRESS, RouteMask::ANY, "Sends an offer with flags and a new SDP address; 1 on success, -1 on failure.", offer2),
            FnRow::asynchronous("rtpproxy_answer", &[], RouteMask::ANY, "Sends the SDP as an answer (L command) and rewrites it to the relay; 1 on success, -1 on failure.", answer0),
            FnRow::asynchronous("rtpproxy_answer", &["flags"], RouteMask::ANY, "Sends an answer with flags; 1 on success, -1 on failure.", answer1),
            FnRow::asynchronous("rtpproxy_answer", FLAGS_IP_ADDRESS, RouteMask::ANY, "Sends an answer with flags and a new SDP address; 1 on success, -1 on failure.", answer2),
            FnRow::asynchronous("rtpproxy_destroy", &[], RouteMask::ANY, "Deletes the media session (D command with Call-ID, From tag and To tag if any); 1 on success, -1 on failure.", destroy0.clone()),
            FnRow::asynchronous("rtpproxy_destroy", &["flags"], RouteMask::ANY, "As rtpproxy_destroy(); the flags are checked and have no effect on a delete. 1 on success, -1 on failure.", destroy1.clone()),
            FnRow::asynchronous("unforce_rtp_proxy", &[], RouteMask::ANY, "Alias of rtpproxy_destroy(); 1 on success, -1 on failure.", destroy0),
            FnRow::asynchronous("unforce_rtp_proxy", &["flags"], RouteMask::ANY, "Alias of rtpproxy_destroy(flags); 1 on success, -1 on failure.", destroy1),
            FnRow::sync("set_rtp_proxy_set", &["setid"], RouteMask::ANY, "Selects the rtpproxy set for the following commands on this message; 1, or an error when the set is not defined.", set_set),
            FnRow::declared::<()>("start_recording", &[], RouteMask::ANY, "Starts recording the media of the session; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, i64)>("rtpproxy_stream2uac", PROMPT_NAME_COUNT, RouteMask::ANY, "Streams a prerecorded prompt to the caller count times (-1 forever); 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, i64)>("rtpproxy_stream2uas", PROMPT_NAME_COUNT, RouteMask::ANY, "Streams a prerecorded prompt to the callee count times (-1 forever); 1 on success, -1 on failure."),
            FnRow::declared::<()>("rtpproxy_stop_stream2uac", &[], RouteMask::ANY, "Stops streaming to the caller; 1 on success, -1 on failure."),
            FnRow::declared::<()>("rtpproxy_stop_stream2uas", &[], RouteMask::ANY, "Stops streaming to the callee; 1 on success, -1 on failure."),
        ]);
        let s = st.clone();
        m.rpc(
            "rtpproxy.list",
            "Lists the rtpproxy instances: set id, url, index in the set, disabled (1 when disabled by rtpproxy.enable or after not answering), weight and the seconds before a disabled one is tried again.",
            move |_| Ok(list(&s.get().map_err(|e| e.message)?.inner)),
        );
        let s = st.clone();
        m.rpc(
            "rtpproxy.enable",
            "Enables (1) or disables (0) an instance by url (\"all\": every one): rtpproxy.enable udp:127.0.0.1:7722 0. A disabled one gets no command until enabled again.",
            move |args| enable(&s.get().map_err(|e| e.message)?.inner, args),
        );
        m.example("loadmodule \"tm.so\"\nloadmodule \"rtpproxy.so\"\nmodparam(\"rtpproxy\", \"rtpproxy_sock\", \"udp:127.0.0.1:7722\")\nrequest_route {\n\tif (is_method(\"INVITE|ACK|BYE|CANCEL\")) {\n\t\trtpproxy_manage(\"co\");\n\t}\n\tt_on_reply(\"MEDIA\");\n\tt_relay();\n}\nonreply_route[MEDIA] {\n\trtpproxy_manage(\"co\");\n}\n");
    }
}
