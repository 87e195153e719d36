//! The behaviour of the `tm` functions: marks kept on the message, checks of the
//! transaction state a route was given, and calls into the server's transaction layer.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferrosip_api::args::{BranchRoute, FailureRoute, ReplyRoute};
use ferrosip_api::pv::{Pv, PvError, PvIndex};
use ferrosip_api::services::Target;
use ferrosip_api::tm::{TmMarks, TmState, Transactions};
use ferrosip_api::{FnError, FnResult, MsgContext, Proto, RouteKind, Value, Verdict};
use regex::bytes::Regex;

fn with_tm<R>(
    ctx: &mut MsgContext,
    function: &str,
    f: impl FnOnce(&dyn Transactions, &mut MsgContext) -> Result<R, FnError>,
) -> Result<R, FnError> {
    let services = ctx.services(function)?;
    let tm = services
        .transactions()
        .ok_or_else(|| FnError::new(format!("{function}() needs the transaction layer")))?;
    f(tm, ctx)
}

fn code(rc: i32) -> FnResult {
    Ok(Verdict::code(rc))
}

fn target(host: Bytes, port: i64, proto: Option<Proto>) -> Result<Target, FnError> {
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| FnError::new(format!("bad port {port}")))?;
    Ok(Target {
        host,
        port: Some(port),
        proto,
    })
}

pub fn t_relay(ctx: &mut MsgContext) -> FnResult {
    with_tm(ctx, "t_relay", |tm, ctx| tm.relay(ctx, None)).and_then(code)
}

pub fn t_relay_to(ctx: &mut MsgContext, host: Bytes, port: i64) -> FnResult {
    let t = target(host, port, None)?;
    with_tm(ctx, "t_relay", |tm, ctx| tm.relay(ctx, Some(t))).and_then(code)
}

/// `t_relay_to_udp()` / `_tcp()` without a destination: the R-URI/`$du` over that transport.
fn relay_over(ctx: &mut MsgContext, proto: Proto, name: &str) -> FnResult {
    let uri = match &ctx.dst_uri {
        Some(d) => d.clone(),
        None => ctx
            .msg
            .request_uri_bytes()
            .ok_or_else(|| FnError::new("no request URI"))?,
    };
    let parsed = ferrosip_sip::Uri::parse(&uri).map_err(|e| FnError::new(e.to_string()))?;
    let host = Bytes::copy_from_slice(parsed.host().unwrap_or_default());
    let t = Target {
        host,
        port: parsed.port(),
        proto: Some(proto),
    };
    with_tm(ctx, name, |tm, ctx| tm.relay(ctx, Some(t))).and_then(code)
}

pub fn t_relay_to_udp0(ctx: &mut MsgContext) -> FnResult {
    relay_over(ctx, Proto::Udp, "t_relay_to_udp")
}

pub fn t_relay_to_tcp0(ctx: &mut MsgContext) -> FnResult {
    relay_over(ctx, Proto::Tcp, "t_relay_to_tcp")
}

pub fn t_relay_to_tls0(ctx: &mut MsgContext) -> FnResult {
    relay_over(ctx, Proto::Tls, "t_relay_to_tls")
}

pub fn t_relay_to_tls(ctx: &mut MsgContext, host: Bytes, port: i64) -> FnResult {
    let t = target(host, port, Some(Proto::Tls))?;
    with_tm(ctx, "t_relay_to_tls", |tm, ctx| tm.relay(ctx, Some(t))).and_then(code)
}

pub fn t_relay_to_udp(ctx: &mut MsgContext, host: Bytes, port: i64) -> FnResult {
    let t = target(host, port, Some(Proto::Udp))?;
    with_tm(ctx, "t_relay_to_udp", |tm, ctx| tm.relay(ctx, Some(t))).and_then(code)
}

pub fn t_relay_to_tcp(ctx: &mut MsgContext, host: Bytes, port: i64) -> FnResult {
    let t = target(host, port, Some(Proto::Tcp))?;
    with_tm(ctx, "t_relay_to_tcp", |tm, ctx| tm.relay(ctx, Some(t))).and_then(code)
}

pub fn t_newtran(ctx: &mut MsgContext) -> FnResult {
    with_tm(ctx, "t_newtran", |tm, ctx| tm.new_transaction(ctx)).and_then(code)
}

pub fn t_reply(ctx: &mut MsgContext, status: i64, reason: Bytes) -> FnResult {
    let status = u16::try_from(status)
        .ok()
        .filter(|s| (100..700).contains(s))
        .ok_or_else(|| FnError::new(format!("bad reply code {status}")))?;
    with_tm(ctx, "t_reply", |tm, ctx| tm.reply(ctx, status, &reason)).and_then(code)
}

pub fn t_check_trans(ctx: &mut MsgContext) -> FnResult {
    if ctx.route != RouteKind::Request {
        // Kamailio: in the other routes the message is the transaction's own.
        return Ok(Verdict::TRUE);
    }
    with_tm(ctx, "t_check_trans", |tm, ctx| tm.check(ctx)).and_then(code)
}

pub fn t_release(ctx: &mut MsgContext) -> FnResult {
    with_tm(ctx, "t_release", |tm, ctx| Ok(tm.release(ctx))).and_then(code)
}

fn marks(ctx: &mut MsgContext) -> &mut TmMarks {
    ctx.ext.get_or_insert_with(TmMarks::default)
}

pub fn t_on_failure(ctx: &mut MsgContext, route: FailureRoute) -> FnResult {
    marks(ctx).on_failure = Some(route.0);
    Ok(Verdict::TRUE)
}

pub fn t_on_branch(ctx: &mut MsgContext, route: BranchRoute) -> FnResult {
    marks(ctx).on_branch = Some(route.0);
    Ok(Verdict::TRUE)
}

pub fn t_on_reply(ctx: &mut MsgContext, route: ReplyRoute) -> FnResult {
    marks(ctx).on_reply = Some(route.0);
    Ok(Verdict::TRUE)
}

/// `t_is_set("failure_route"|"branch_route"|"onreply_route")`.
pub fn t_is_set(ctx: &mut MsgContext, which: Bytes) -> FnResult {
    let m = ctx.ext.get::<TmMarks>().cloned().unwrap_or_default();
    let set = match &which[..] {
        b"failure_route" => m.on_failure.is_some(),
        b"branch_route" => m.on_branch.is_some(),
        b"onreply_route" => m.on_reply.is_some(),
        other => {
            return Err(FnError::new(format!(
                "t_is_set: unknown route kind {:?} (failure_route, branch_route, onreply_route)",
                String::from_utf8_lossy(other)
            )))
        }
    };
    Ok(Verdict::from(set))
}

fn state(ctx: &MsgContext) -> Option<&TmState> {
    ctx.ext.get::<TmState>()
}

/// `t_check_status(re)`: the reply being processed (onreply_route), the winning one
/// (failure_route) or, in request_route, the last reply the transaction sent.
pub fn t_check_status(ctx: &mut MsgContext, re: Arc<Regex>) -> FnResult {
    let status = match state(ctx) {
        Some(s) if s.reply_code > 0 => s.reply_code,
        _ => return Ok(Verdict::FALSE),
    };
    // Like Kamailio's regexec: a match anywhere in the code counts.
    Ok(Verdict::from(re.is_match(status.to_string().as_bytes())))
}

fn flag(ctx: &MsgContext, f: impl Fn(&TmState) -> bool) -> FnResult {
    Ok(Verdict::from(state(ctx).is_some_and(f)))
}

pub fn t_is_canceled(ctx: &mut MsgContext) -> FnResult {
    flag(ctx, |s| s.canceled)
}

pub fn t_is_expired(ctx: &mut MsgContext) -> FnResult {
    flag(ctx, |s| s.expired)
}

pub fn t_branch_timeout(ctx: &mut MsgContext) -> FnResult {
    flag(ctx, |s| s.branch_timeout)
}

pub fn t_branch_replied(ctx: &mut MsgContext) -> FnResult {
    flag(ctx, |s| s.branch_replied)
}

pub fn t_any_timeout(ctx: &mut MsgContext) -> FnResult {
    flag(ctx, |s| s.any_timeout)
}

pub fn t_any_replied(ctx: &mut MsgContext) -> FnResult {
    flag(ctx, |s| s.any_replied)
}

fn ms(v: i64) -> Option<Duration> {
    (v > 0).then(|| Duration::from_millis(v as u64))
}

pub fn t_set_fr1(ctx: &mut MsgContext, inv: i64) -> FnResult {
    marks(ctx).fr_inv_timer = ms(inv);
    Ok(Verdict::TRUE)
}

pub fn t_set_fr2(ctx: &mut MsgContext, inv: i64, noninv: i64) -> FnResult {
    let m = marks(ctx);
    m.fr_inv_timer = ms(inv);
    m.fr_timer = ms(noninv);
    Ok(Verdict::TRUE)
}

pub fn t_reset_fr(ctx: &mut MsgContext) -> FnResult {
    let m = marks(ctx);
    m.fr_inv_timer = None;
    m.fr_timer = None;
    Ok(Verdict::TRUE)
}

pub fn t_drop_replies0(ctx: &mut MsgContext) -> FnResult {
    marks(ctx).drop_replies = true;
    Ok(Verdict::TRUE)
}

/// `t_drop_replies(mode)`: "n" keeps the replies, anything else drops them.
pub fn t_drop_replies1(ctx: &mut MsgContext, mode: Bytes) -> FnResult {
    marks(ctx).drop_replies = &mode[..] != b"n";
    Ok(Verdict::TRUE)
}

pub fn t_get_status_code(ctx: &mut MsgContext) -> FnResult {
    Ok(Verdict::code(
        state(ctx).map_or(-1, |s| i32::from(s.reply_code).max(-1)),
    ))
}

/// `$T_reply_code` / `$T_reply_reason`: the reply of the transaction route running.
pub struct ReplyPv {
    pub reason: bool,
}

impl Pv for ReplyPv {
    fn get(&self, ctx: &MsgContext, _index: PvIndex) -> Result<Value, PvError> {
        Ok(match ctx.ext.get::<TmState>() {
            Some(s) if s.reply_code > 0 => {
                if self.reason {
                    Value::Str(s.reply_reason.clone())
                } else {
                    Value::Int(i64::from(s.reply_code))
                }
            }
            _ => Value::Null,
        })
    }
}

/// `$T_req(pv)` / `$T_rpl(pv)`: a PV read against the transaction's request, or the reply
/// the route was run for, from `onreply_route` and `failure_route`.
pub struct TransactionMsgClass {
    pub reply: bool,
}

struct TransactionMsgPv {
    inner: ferrosip_api::PvRef,
    reply: bool,
}

impl Pv for TransactionMsgPv {
    fn get(&self, ctx: &MsgContext, _index: PvIndex) -> Result<Value, PvError> {
        let Some(state) = ctx.ext.get::<TmState>() else {
            return Ok(Value::Null);
        };
        let msg = if self.reply {
            state.reply.as_ref()
        } else {
            state.request.as_ref()
        };
        let Some(msg) = msg else {
            return Ok(Value::Null);
        };
        let view = MsgContext::new(msg.clone(), ctx.route, ctx.net);
        self.inner.get(&view)
    }
}

impl ferrosip_api::PvClass for TransactionMsgClass {
    fn param_rule(&self) -> ferrosip_api::pv::PvParamRule {
        ferrosip_api::pv::PvParamRule::Required
    }

    fn bind(
        &self,
        param: Option<&str>,
        binder: &ferrosip_api::pv::Binder<'_>,
    ) -> Result<Arc<dyn Pv>, String> {
        let text = param.map(str::trim).unwrap_or_default();
        let inner = binder.parse_pv(text).map_err(|e| e.to_string())?;
        Ok(Arc::new(TransactionMsgPv {
            inner,
            reply: self.reply,
        }))
    }

    fn doc(&self) -> &str {
        if self.reply {
            "A PV read against the reply being processed (onreply_route) or the winning reply (failure_route): $T_rpl($hdr(Reason))."
        } else {
            "A PV read against the transaction's request from onreply_route and failure_route: $T_req($hdr(X-Account))."
        }
    }
}

/// `$branch(uri|dst_uri|q|flags|count)`: the branches `append_branch` added, indexed as
/// `$(branch(uri)[1])`.
pub struct BranchClass;

#[derive(Clone, Copy)]
enum BranchKey {
    Uri,
    DstUri,
    Q,
    Flags,
    Count,
}

struct BranchPv(BranchKey);

impl Pv for BranchPv {
    fn get(&self, ctx: &MsgContext, index: PvIndex) -> Result<Value, PvError> {
        let set = ctx
            .ext
            .get::<ferrosip_api::tm::Branches>()
            .map(|b| b.0.as_slice())
            .unwrap_or_default();
        if let BranchKey::Count = self.0 {
            return Ok(Value::Int(set.len() as i64));
        }
        let i = match index {
            PvIndex::First | PvIndex::All => 0,
            PvIndex::Nth(n) if n < 0 => set.len() as i64 + i64::from(n),
            PvIndex::Nth(n) => i64::from(n),
        };
        let Some(b) = usize::try_from(i).ok().and_then(|i| set.get(i)) else {
            return Ok(Value::Null);
        };
        Ok(match self.0 {
            BranchKey::Uri => Value::Str(b.uri.clone()),
            BranchKey::DstUri => b.dst_uri.clone().map_or(Value::Null, Value::Str),
            BranchKey::Q => b.q.clone().map_or(Value::Null, Value::Str),
            BranchKey::Flags => Value::Int(b.bflags as i64),
            BranchKey::Count => Value::Int(set.len() as i64),
        })
    }
}

impl ferrosip_api::PvClass for BranchClass {
    fn param_rule(&self) -> ferrosip_api::pv::PvParamRule {
        ferrosip_api::pv::PvParamRule::Required
    }

    fn bind(
        &self,
        param: Option<&str>,
        _binder: &ferrosip_api::pv::Binder<'_>,
    ) -> Result<Arc<dyn Pv>, String> {
        let key = match param.map(str::trim) {
            Some("uri") => BranchKey::Uri,
            Some("dst_uri" | "duri") => BranchKey::DstUri,
            Some("q") => BranchKey::Q,
            Some("flags") => BranchKey::Flags,
            Some("count") => BranchKey::Count,
            other => {
                return Err(format!(
                    "unknown $branch key \"{}\": use uri, dst_uri, q, flags or count",
                    other.unwrap_or("")
                ))
            }
        };
        Ok(Arc::new(BranchPv(key)))
    }

    fn doc(&self) -> &str {
        "Attributes of the branches append_branch() added: $branch(uri), $branch(dst_uri), $branch(q), $branch(flags), $branch(count); $(branch(uri)[1]) for the second."
    }
}
