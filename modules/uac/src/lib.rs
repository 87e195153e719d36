//! `uac` (Kamailio's module of the same name), the part that sends requests of the
//! proxy's own: the script fills `$uac_req(...)` (method, URIs, headers, body) and
//! `uac_req_send()` sends it on a client transaction of the server's (retransmitted over
//! UDP, timed out as tm's `fr_timer`). With `$uac_req(evroute)` set, the final outcome
//! runs `event_route[uac:reply]`, where `$uac_req(evcode)` is the reply's status.
//!
//! `$uac_req` belongs to the message being routed (Kamailio keeps one per process): a
//! route sets every field it needs before `uac_req_send()`, as Kamailio's examples do.
//!
//! `uac_replace_from/to` rewrite the request's header and leave the original in the
//! message's extensions; a branch hook keeps it with the transaction, which restores it in
//! the replies it sends upstream ([`UpstreamHeaders`]). The original also goes into a
//! Record-Route parameter (Kamailio's `vsf`/`vst` encoding), from which the dialog's
//! in-dialog requests get it back: `uac_restore_from/to` in the script, or the branch hook
//! as each such request leaves (restore_mode auto). `uac_auth` answers the Digest
//! challenge of the reply failure_route sees, for `t_relay()` to send again.

use bytes::Bytes;
use ferrosip_api::args::PvOut;
use ferrosip_api::pv::{Binder, PvParamRule};
use ferrosip_api::registry::RpcValue;
use ferrosip_api::registry::{FnRow, OutgoingBranch};
use ferrosip_api::services::LocalRequest;
use ferrosip_api::tm::UpstreamHeaders;
use ferrosip_api::tokio::runtime::Handle;
use ferrosip_api::{
    FnError, FnResult, Module, ModuleBuilder, MsgContext, NetInfo, ParamType, Pv, PvClass, PvError,
    PvIndex, RouteKind, RouteMask, SetOp, Value, Verdict,
};
use ferrosip_sip::SipMessage;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Kamailio's bound on the request's text fields (`MAX_UACH_SIZE`, `MAX_UACB_SIZE`):
/// a script cannot build a request of unbounded size from message data.
const MAX_HEADERS: usize = 2048;
const MAX_BODY: usize = 32 * 1024;
const MAX_FIELD: usize = 1024;

/// What `$uac_req(...)` holds for the message.
#[derive(Clone, Debug, Default)]
pub struct UacReq {
    pub method: Bytes,
    pub ruri: Bytes,
    pub furi: Bytes,
    pub turi: Bytes,
    pub ouri: Bytes,
    pub hdrs: Bytes,
    pub body: Bytes,
    pub callid: Bytes,
    /// `fr_timeout`, milliseconds (0: tm's default).
    pub fr_timeout: i64,
    pub evroute: i64,
    pub evparam: Bytes,
    pub evcode: i64,
    pub evtype: i64,
}

#[derive(Clone, Copy, Debug)]
enum Field {
    All,
    Method,
    Ruri,
    Furi,
    Turi,
    Ouri,
    Hdrs,
    Body,
    Callid,
    FrTimeout,
    Evroute,
    Evparam,
    Evcode,
    Evtype,
}

impl Field {
    fn parse(name: &str) -> Result<Field, String> {
        Ok(match name {
            "all" => Field::All,
            "method" => Field::Method,
            "ruri" => Field::Ruri,
            "furi" => Field::Furi,
            "turi" => Field::Turi,
            "ouri" => Field::Ouri,
            "hdrs" => Field::Hdrs,
            "body" => Field::Body,
            "callid" => Field::Callid,
            "fr_timeout" => Field::FrTimeout,
            "evroute" => Field::Evroute,
            "evparam" => Field::Evparam,
            "evcode" => Field::Evcode,
            "evtype" => Field::Evtype,
            "ftag" | "ttag" | "sock" | "auser" | "apasswd" | "flags" | "cseqno"
            | "fr_inv_timeout" => {
                return Err(format!(
                    "$uac_req({name}) is declared but not implemented yet: a script that uses it cannot run"
                ))
            }
            other => {
                return Err(format!(
                    "$uac_req({other}): unknown field (method, ruri, furi, turi, ouri, hdrs, body, callid, fr_timeout, evroute, evparam, evcode, evtype, all)"
                ))
            }
        })
    }

    fn limit(self) -> usize {
        match self {
            Field::Hdrs => MAX_HEADERS,
            Field::Body => MAX_BODY,
            _ => MAX_FIELD,
        }
    }
}

struct UacReqPv(Field);

fn text(v: &Bytes) -> Value {
    if v.is_empty() {
        Value::Null
    } else {
        Value::Str(v.clone())
    }
}

impl Pv for UacReqPv {
    fn get(&self, ctx: &MsgContext, _index: PvIndex) -> Result<Value, PvError> {
        let Some(r) = ctx.ext.get::<UacReq>() else {
            return Ok(match self.0 {
                Field::Evroute | Field::Evcode | Field::Evtype | Field::FrTimeout => Value::Int(0),
                _ => Value::Null,
            });
        };
        Ok(match self.0 {
            Field::All => Value::Null,
            Field::Method => text(&r.method),
            Field::Ruri => text(&r.ruri),
            Field::Furi => text(&r.furi),
            Field::Turi => text(&r.turi),
            Field::Ouri => text(&r.ouri),
            Field::Hdrs => text(&r.hdrs),
            Field::Body => text(&r.body),
            Field::Callid => text(&r.callid),
            Field::Evparam => text(&r.evparam),
            Field::FrTimeout => Value::Int(r.fr_timeout),
            Field::Evroute => Value::Int(r.evroute),
            Field::Evcode => Value::Int(r.evcode),
            Field::Evtype => Value::Int(r.evtype),
        })
    }

    fn set(
        &self,
        ctx: &mut MsgContext,
        _index: PvIndex,
        _op: SetOp,
        value: Value,
    ) -> Result<(), PvError> {
        let r = ctx.ext.get_or_insert_with(UacReq::default);
        let int = |v: &Value| -> Result<i64, PvError> {
            match v {
                Value::Null => Ok(0),
                v => v
                    .as_int()
                    .ok_or_else(|| PvError::Invalid("$uac_req: expected a number".into())),
            }
        };
        let bytes = value.to_bytes().unwrap_or_default();
        if bytes.len() > self.0.limit() {
            return Err(PvError::Invalid(format!(
                "$uac_req: value of {} bytes is over the limit of {}",
                bytes.len(),
                self.0.limit()
            )));
        }
        match self.0 {
            Field::All => {
                if !value.is_null() {
                    return Err(PvError::Invalid(
                        "$uac_req(all) can only be reset ($uac_req(all) = $null)".into(),
                    ));
                }
                *r = UacReq::default();
            }
            Field::Method => r.method = bytes,
            Field::Ruri => r.ruri = bytes,
            Field::Furi => r.furi = bytes,
            Field::Turi => r.turi = bytes,
            Field::Ouri => r.ouri = bytes,
            Field::Hdrs => r.hdrs = bytes,
            Field::Body => r.body = bytes,
            Field::Callid => r.callid = bytes,
            Field::Evparam => r.evparam = bytes,
            Field::FrTimeout => r.fr_timeout = int(&value)?,
            Field::Evroute => r.evroute = int(&value)?,
            Field::Evcode => r.evcode = int(&value)?,
            Field::Evtype => r.evtype = int(&value)?,
        }
        Ok(())
    }

    fn writable(&self) -> bool {
        true
    }
}

struct UacReqClass;

impl PvClass for UacReqClass {
    fn param_rule(&self) -> PvParamRule {
        PvParamRule::Required
    }

    fn bind(&self, param: Option<&str>, _binder: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
        Ok(Arc::new(UacReqPv(Field::parse(
            param.unwrap_or_default().trim(),
        )?)))
    }

    fn doc(&self) -> &str {
        "The request uac_req_send() sends: method, ruri, furi, turi, ouri (outbound proxy), hdrs (header lines, each ending in CRLF), body, callid, fr_timeout (ms), evroute (1: run event_route[uac:reply]), evparam; evcode and evtype (1 a reply came, 2 none) in that route; $uac_req(all) = $null resets it. ftag, ttag, sock, auser, apasswd, flags, cseqno and fr_inv_timeout are declared only."
    }
}

pub struct State {
    /// Where the event routes of outcomes are started from.
    runtime: OnceLock<Handle>,
    /// restore_mode is not "none": replies get the original From/To back.
    restore: bool,
    /// restore_mode "auto": in-dialog requests get their From/To restored as they leave.
    auto_restore: bool,
    /// The Record-Route parameters that carry the original From and To.
    rr_from: String,
    rr_to: String,
    /// `restore_passwd`: mixed into those parameters so they do not show the URI.
    passwd: Bytes,
    /// `credential` params: (username, realm, password).
    credentials: Vec<(Bytes, Bytes, Bytes)>,
    auth_username_avp: Option<u32>,
    auth_realm_avp: Option<u32>,
    auth_password_avp: Option<u32>,
    /// Remote registrations (`reg_db_url` set).
    reg: Option<Arc<reg::Registrations>>,
}

impl State {
    fn reg(&self, what: &str) -> Result<&Arc<reg::Registrations>, FnError> {
        self.reg.as_ref().ok_or_else(|| {
            FnError::new(format!(
                "{what}: remote registrations are off (modparam(\"uac\", \"reg_db_url\", ...) is not set)"
            ))
        })
    }
}

/// `uac_reg_lookup(uuid, dst)`: the local URI of a remote registration.
fn reg_lookup(st: &State, ctx: &mut MsgContext, uuid: Bytes, dst: PvOut) -> FnResult {
    let reg = st.reg("uac_reg_lookup")?;
    let uuid = String::from_utf8_lossy(&uuid);
    let found = reg.find("l_uuid", &uuid).map_err(FnError::new)?;
    let Some(r) = found.first() else {
        return Ok(Verdict::FALSE);
    };
    let uri = format!("sip:{}@{}", r.l_username, r.l_domain);
    dst.0
        .set(ctx, SetOp::Assign, Value::from_string(uri))
        .map_err(|e| FnError::new(format!("uac_reg_lookup: {e}")))?;
    Ok(Verdict::TRUE)
}

/// `uac_reg_lookup_uri(uri, dst)`: the l_uuid of the registration of the URI's user
/// (matched on l_username; `reg_use_domain` is not built, so the host is not compared).
fn reg_lookup_uri(st: &State, ctx: &mut MsgContext, uri: Bytes, dst: PvOut) -> FnResult {
    let reg = st.reg("uac_reg_lookup_uri")?;
    let Ok(parsed) = ferrosip_sip::Uri::parse(&uri) else {
        return Ok(Verdict::FALSE);
    };
    let user = String::from_utf8_lossy(parsed.user().unwrap_or_default()).into_owned();
    if user.is_empty() {
        return Ok(Verdict::FALSE);
    }
    let found = reg.find("l_username", &user).map_err(FnError::new)?;
    let Some(r) = found.first() else {
        return Ok(Verdict::FALSE);
    };
    dst.0
        .set(ctx, SetOp::Assign, Value::from_string(r.l_uuid.clone()))
        .map_err(|e| FnError::new(format!("uac_reg_lookup_uri: {e}")))?;
    Ok(Verdict::TRUE)
}

/// `uac_reg_request_to(user, mode)`: sends the request to the carrier of a remote
/// registration, with the credentials in the auth AVPs for `uac_auth()`.
fn reg_request_to(st: &State, ctx: &mut MsgContext, user: Bytes, mode: i64) -> FnResult {
    let reg = st.reg("uac_reg_request_to")?;
    let attr = match mode & 1 {
        0 => "l_uuid",
        _ => "auth_username",
    };
    let (Some(u), Some(r), Some(p)) = (
        st.auth_username_avp,
        st.auth_realm_avp,
        st.auth_password_avp,
    ) else {
        return Err(FnError::new(
            "uac_reg_request_to: set the auth_username_avp, auth_realm_avp and auth_password_avp parameters",
        ));
    };
    let found = reg
        .find(attr, &String::from_utf8_lossy(&user))
        .map_err(FnError::new)?;
    let Some(rec) = found.first() else {
        return Ok(Verdict::FALSE);
    };
    ctx.msg
        .set_request_uri(format!("sip:{}@{}", rec.r_username, rec.r_domain))
        .map_err(|e| FnError::new(format!("uac_reg_request_to: {e}")))?;
    if !rec.auth_proxy.is_empty() {
        ctx.dst_uri = Some(Bytes::from(rec.auth_proxy.clone()));
    }
    let user = if rec.auth_username.is_empty() {
        &rec.r_username
    } else {
        &rec.auth_username
    };
    ctx.avps.push(u, Value::from_string(user.clone()));
    ctx.avps.push(r, Value::from_string(rec.realm.clone()));
    let secret = if rec.auth_password.is_empty() {
        &rec.auth_ha1
    } else {
        &rec.auth_password
    };
    ctx.avps.push(p, Value::from_string(secret.clone()));
    Ok(Verdict::TRUE)
}

fn reg_switch(st: &State, attr: Bytes, val: Bytes, on: bool) -> FnResult {
    let reg = st.reg(if on {
        "uac_reg_enable"
    } else {
        "uac_reg_disable"
    })?;
    let (attr, val) = (
        String::from_utf8_lossy(&attr),
        String::from_utf8_lossy(&val),
    );
    let n = if on {
        reg.enable(&attr, &val)
    } else {
        reg.disable(&attr, &val)
    }
    .map_err(FnError::new)?;
    Ok(if n > 0 { Verdict::TRUE } else { Verdict::FALSE })
}

fn rpc_text(args: &[Value], i: usize, what: &str) -> Result<String, String> {
    args.get(i)
        .and_then(|v| v.to_bytes())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("missing {what}"))
}

/// Header lines as the script wrote them, made to end in CRLF.
fn header_lines(h: &Bytes) -> Bytes {
    if h.is_empty() || h.ends_with(b"\r\n") {
        return h.clone();
    }
    let mut v = h.to_vec();
    if v.ends_with(b"\n") {
        v.pop();
    }
    v.extend_from_slice(b"\r\n");
    Bytes::from(v)
}

fn uac_req_send(st: &State, ctx: &mut MsgContext) -> FnResult {
    let Some(r) = ctx.ext.get::<UacReq>().cloned() else {
        return Err(FnError::new("uac_req_send: $uac_req is not set"));
    };
    if r.method.is_empty() || r.ruri.is_empty() {
        return Err(FnError::new(
            "uac_req_send: $uac_req(method) and $uac_req(ruri) are required",
        ));
    }
    let services = ctx.services("uac_req_send")?;
    let from = if r.furi.is_empty() {
        r.ruri.clone()
    } else {
        r.furi.clone()
    };
    let request = LocalRequest {
        method: r.method.clone(),
        uri: r.ruri.clone(),
        dst_uri: (!r.ouri.is_empty()).then(|| r.ouri.clone()),
        from,
        to: r.turi.clone(),
        headers: header_lines(&r.hdrs),
        body: r.body.clone(),
        timeout: (r.fr_timeout > 0).then(|| Duration::from_millis(r.fr_timeout as u64)),
        call_id: (!r.callid.is_empty()).then(|| r.callid.clone()),
        ..LocalRequest::default()
    };
    let outcome = services.send_request(request)?;
    if r.evroute == 0 {
        // The transaction runs on its own; nobody waits for its end.
        return Ok(Verdict::TRUE);
    }
    let Some(runtime) = st.runtime.get() else {
        return Err(FnError::new("uac_req_send: the server is not started"));
    };
    runtime.spawn(async move {
        let end = outcome.await;
        tracing::debug!(code = end.code, local = end.local, "uac: request answered");
        let raw = format!(
            "{m} {ru} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKuacev\r\n\
             From: <{fu}>;tag=uac\r\nTo: <{tu}>\r\nCall-ID: uac-reply-event\r\n\
             CSeq: 1 {m}\r\nContent-Length: 0\r\n\r\n",
            m = String::from_utf8_lossy(&r.method),
            ru = String::from_utf8_lossy(&r.ruri),
            fu = String::from_utf8_lossy(if r.furi.is_empty() { &r.ruri } else { &r.furi }),
            tu = String::from_utf8_lossy(if r.turi.is_empty() { &r.ruri } else { &r.turi }),
        );
        let Ok(msg) = SipMessage::parse(Bytes::from(raw)) else {
            return;
        };
        let mut ev = MsgContext::new(msg, RouteKind::Event, NetInfo::default());
        ev.ext.insert(UacReq {
            evcode: end.code as i64,
            evtype: if end.local { 2 } else { 1 },
            ..r
        });
        services.run_event_route("uac:reply", ev);
    });
    Ok(Verdict::TRUE)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    From,
    To,
}

impl Which {
    fn header(self) -> &'static str {
        match self {
            Which::From => "From",
            Which::To => "To",
        }
    }
}

/// Checks a display name or URI from the script: one line, no quote or angle bracket
/// that would end the name-addr early.
fn clean(what: &str, v: &[u8], forbidden: &[u8]) -> Result<(), FnError> {
    if v.iter()
        .any(|c| *c == b'\r' || *c == b'\n' || forbidden.contains(c))
    {
        return Err(FnError::new(format!(
            "{what} \"{}\" contains a line break or one of {}",
            String::from_utf8_lossy(v),
            String::from_utf8_lossy(forbidden)
        )));
    }
    Ok(())
}

/// `uac_replace_from/to`: writes the new name-addr, keeping the header's parameters
/// (the tag), and remembers the original for the replies (restore_mode auto/manual).
fn replace(
    st: &State,
    ctx: &mut MsgContext,
    which: Which,
    display: Option<&[u8]>,
    uri: &[u8],
) -> FnResult {
    clean("display name", display.unwrap_or_default(), b"\"<>")?;
    clean("URI", uri, b"<> \"")?;
    if uri.is_empty() {
        return Err(FnError::new("the new URI is empty"));
    }
    let name = which.header();
    let original = ctx
        .msg
        .header_bytes(name)
        .ok_or_else(|| FnError::new(format!("no {name} header")))?;
    let parsed = ferrosip_sip::NameAddr::parse(&original)
        .map_err(|e| FnError::new(format!("{name} header: {e}")))?;
    let value = rebuild(name, &parsed, display, uri)?;
    ctx.msg
        .set_header(name, &value)
        .map_err(|e| FnError::new(format!("cannot set {name}: {e}")))?;
    if st.restore && ctx.msg.to_tag().is_none() {
        // The dialog's later requests find the original URI in this proxy's Route entry
        // (Kamailio's encoding, so either proxy can restore the other's dialogs).
        let param = match which {
            Which::From => &st.rr_from,
            Which::To => &st.rr_to,
        };
        let encoded = encode_restore(parsed.uri_bytes(), uri, &st.passwd);
        ferrosip_mod_rr::ops::add_rr_param(ctx, format!(";{param}={encoded}").as_bytes())?;
    }
    if st.restore {
        let kept = ctx.ext.get_or_insert_with(UpstreamHeaders::default);
        // A second replacement keeps the first original: that is what the caller sent.
        match which {
            Which::From => {
                kept.from.get_or_insert(original);
            }
            Which::To => {
                // The caller's To of an initial request has no tag; a reply's tag is added
                // back when it is restored.
                let without_tag = match parsed.tag() {
                    Some(_) => {
                        let mut v = original.to_vec();
                        if let Some(i) = find_tag_param(&v) {
                            v.truncate(i);
                        }
                        Bytes::from(v)
                    }
                    None => original,
                };
                kept.to.get_or_insert(without_tag);
            }
        }
    }
    Ok(Verdict::TRUE)
}

/// The name-addr `parsed` with URI `uri` and, when `display` is given, that display name
/// (empty: none); the header parameters (the tag) are kept.
fn rebuild(
    name: &str,
    parsed: &ferrosip_sip::NameAddr<'_>,
    display: Option<&[u8]>,
    uri: &[u8],
) -> Result<Vec<u8>, FnError> {
    let display: Option<Vec<u8>> = match display {
        // The two-argument form sets the display name; an empty one removes it.
        Some([]) => None,
        Some(d) => Some(d.to_vec()),
        None => parsed.display_name().map(<[u8]>::to_vec),
    };
    let mut value = Vec::with_capacity(parsed.as_bytes().len() + uri.len());
    if let Some(d) = &display {
        value.push(b'"');
        value.extend_from_slice(d);
        value.extend_from_slice(b"\" ");
    }
    value.push(b'<');
    value.extend_from_slice(uri);
    value.push(b'>');
    let params = parsed.params().as_bytes();
    if !params.is_empty() {
        value.push(b';');
        value.extend_from_slice(params);
    }
    ferrosip_sip::NameAddr::parse(&value).map_err(|e| {
        FnError::new(format!(
            "new {name} \"{}\": {e}",
            String::from_utf8_lossy(&value)
        ))
    })?;
    Ok(value)
}

/// Kamailio's `MAX_URI_SIZE`: a Route parameter cannot make us decode more than this.
const MAX_RESTORE_URI: usize = 1024;

/// Base64 as Kamailio's uac writes it: the standard alphabet, `-` for padding (`=` would
/// end the URI parameter's value).
const RESTORE_B64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone),
);

/// The Route parameter value that lets an in-dialog request get `old` back from `new`:
/// the longer URI with the shorter XORed over its start, XORed with the password, in
/// base64. Which of the two a request carries decides which one comes out.
fn encode_restore(old: &[u8], new: &[u8], passwd: &[u8]) -> String {
    use base64::Engine;
    let (mut buf, other) = if old.len() > new.len() {
        (old.to_vec(), new)
    } else {
        (new.to_vec(), old)
    };
    for (b, o) in buf.iter_mut().zip(other) {
        *b ^= o;
    }
    if !passwd.is_empty() {
        for (b, p) in buf.iter_mut().zip(passwd.iter().cycle()) {
            *b ^= p;
        }
    }
    let mut out = RESTORE_B64.encode(&buf);
    while !out.len().is_multiple_of(4) {
        out.push('-');
    }
    out
}

/// The other URI of a pair [`encode_restore`] wrote, given the one the request carries;
/// `None` when the value is not ours (bad base64, too long, shorter than `current`).
fn decode_restore(value: &[u8], current: &[u8], passwd: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    let trimmed = value
        .strip_suffix(b"--")
        .or_else(|| value.strip_suffix(b"-"))
        .unwrap_or(value);
    if trimmed.len() > MAX_RESTORE_URI * 4 / 3 + 4 {
        return None;
    }
    let mut buf = RESTORE_B64.decode(trimmed).ok()?;
    if !passwd.is_empty() {
        for (b, p) in buf.iter_mut().zip(passwd.iter().cycle()) {
            *b ^= p;
        }
    }
    if buf.len() < current.len() {
        return None;
    }
    for (i, c) in current.iter().enumerate() {
        buf[i] ^= c;
        // The current URI was the longer one: the rest of the buffer is its own tail.
        if buf[i] == 0 {
            buf.truncate(i);
            break;
        }
    }
    (!buf.is_empty()).then_some(buf)
}

/// Marks a request whose From/To a restore has handled already (uac_restore_from/to in
/// the script): the auto-mode hook leaves it alone.
#[derive(Clone, Copy, Debug, Default)]
struct Restored;

/// Restores, in the in-dialog request `msg`, the URI the Route parameter `param` of this
/// proxy's Route entry keeps (Kamailio's rule: the From parameter restores the From of a
/// request going downstream and the To of one going upstream; the To parameter the
/// other way round). Returns the header changed and its value before; `None` when the
/// Route entry has no such parameter or it does not decode against the header.
fn restore_in(
    msg: &mut SipMessage,
    local: &ferrosip_api::rr::LocalRoute,
    param: &str,
    which: Which,
    passwd: &[u8],
) -> Result<Option<(Which, Bytes)>, FnError> {
    use ferrosip_api::rr::Direction;
    let Some(value) = local.param(param) else {
        return Ok(None);
    };
    let upstream = local.direction(msg.from_tag()) == Direction::Upstream;
    let target = match (which, upstream) {
        (Which::From, false) | (Which::To, true) => Which::From,
        _ => Which::To,
    };
    let name = target.header();
    let Some(original) = msg.header_bytes(name) else {
        return Ok(None);
    };
    let parsed = ferrosip_sip::NameAddr::parse(&original)
        .map_err(|e| FnError::new(format!("{name} header: {e}")))?;
    let Some(uri) = decode_restore(value, parsed.uri_bytes(), passwd) else {
        tracing::debug!(
            param,
            "uac: Route parameter does not decode against the {name} URI"
        );
        return Ok(None);
    };
    clean("restored URI", &uri, b"<> \"")?;
    let rebuilt = rebuild(name, &parsed, None, &uri)?;
    msg.set_header(name, &rebuilt)
        .map_err(|e| FnError::new(format!("cannot set {name}: {e}")))?;
    Ok(Some((target, original)))
}

/// `uac_restore_from()` / `uac_restore_to()`: the restore of one parameter in the
/// script (restore_mode manual, or auto where the script wants it earlier); the replies
/// carry the header back as the request came.
fn restore(st: &State, ctx: &mut MsgContext, which: Which) -> FnResult {
    let Some(local) = ctx.ext.get::<ferrosip_api::rr::LocalRoute>().cloned() else {
        return Ok(Verdict::FALSE);
    };
    let param = match which {
        Which::From => &st.rr_from,
        Which::To => &st.rr_to,
    };
    let Some((target, original)) = restore_in(&mut ctx.msg, &local, param, which, &st.passwd)?
    else {
        return Ok(Verdict::FALSE);
    };
    // A re-INVITE that is record-routed again keeps the parameter in the new route set.
    if let Some(value) = local.param(param) {
        let mut p = format!(";{param}=").into_bytes();
        p.extend_from_slice(value);
        ferrosip_mod_rr::ops::add_rr_param(ctx, &p)?;
    }
    ctx.ext.insert(Restored);
    let kept = ctx.ext.get_or_insert_with(UpstreamHeaders::default);
    match target {
        Which::From => {
            kept.from.get_or_insert(original);
        }
        Which::To => {
            let mut v = original.to_vec();
            if let Some(i) = find_tag_param(&v) {
                v.truncate(i);
            }
            kept.to.get_or_insert(Bytes::from(v));
        }
    }
    Ok(Verdict::TRUE)
}

/// What the auto-mode hook needs from the request's extensions, kept with a transaction.
fn keep_restore(from: &ferrosip_api::Extensions, to: &mut ferrosip_api::Extensions) {
    if let Some(kept) = from.get::<UpstreamHeaders>() {
        to.insert(kept.clone());
    }
    if let Some(local) = from.get::<ferrosip_api::rr::LocalRoute>() {
        to.insert(local.clone());
    }
    if from.get::<Restored>().is_some() {
        to.insert(Restored);
    }
}

/// restore_mode auto: an in-dialog request this proxy routed by its own Route entry
/// leaves with the From/To its Route parameters restore.
fn auto_restore(st: &State, branch: &mut OutgoingBranch<'_>) -> Result<(), FnError> {
    if !st.auto_restore || branch.ext.get::<Restored>().is_some() {
        return Ok(());
    }
    let Some(local) = branch.ext.get::<ferrosip_api::rr::LocalRoute>() else {
        return Ok(());
    };
    restore_in(branch.request, local, &st.rr_from, Which::From, &st.passwd)?;
    restore_in(branch.request, local, &st.rr_to, Which::To, &st.passwd)?;
    Ok(())
}

/// Where `;tag=` starts in a header value (outside the `<>`), to drop it.
fn find_tag_param(v: &[u8]) -> Option<usize> {
    let start = v.iter().rposition(|c| *c == b'>').unwrap_or(0);
    let lower = v.to_ascii_lowercase();
    let mut i = start;
    while let Some(off) = lower[i..].iter().position(|c| *c == b';') {
        let at = i + off;
        let rest = lower[at + 1..].trim_ascii_start();
        if rest.starts_with(b"tag") && rest[3..].trim_ascii_start().starts_with(b"=") {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

/// The parameters of a `Digest` challenge (RFC 2617 / 3261 §22.4).
#[derive(Debug, Default, PartialEq, Eq)]
struct Challenge {
    realm: String,
    nonce: String,
    opaque: Option<String>,
    algorithm: Option<String>,
    qop_auth: bool,
}

/// Parses `Digest realm="r", nonce="n", ...`; `None` for another scheme or no nonce.
fn parse_challenge(v: &[u8]) -> Option<Challenge> {
    let v = std::str::from_utf8(v).ok()?.trim();
    let (scheme, rest) = v.split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let mut c = Challenge::default();
    let mut rest = rest.trim_start();
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            match after.find(',') {
                Some(i) => (after[..i].trim_end(), &after[i..]),
                None => (after.trim_end(), ""),
            }
        };
        match name.trim().to_ascii_lowercase().as_str() {
            "realm" => c.realm = value.to_string(),
            "nonce" => c.nonce = value.to_string(),
            "opaque" => c.opaque = Some(value.to_string()),
            "algorithm" => c.algorithm = Some(value.to_string()),
            "qop" => {
                c.qop_auth = value
                    .split(',')
                    .any(|q| q.trim().eq_ignore_ascii_case("auth"))
            }
            _ => {}
        }
        rest = next
            .trim_start()
            .strip_prefix(',')
            .unwrap_or(next)
            .trim_start();
    }
    (!c.nonce.is_empty()).then_some(c)
}

fn md5_hex(parts: &[&[u8]]) -> String {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The `Authorization`/`Proxy-Authorization` value answering `c` for `method uri`;
/// `ha1_given`: the password is HA1 already (uac_auth mode 1).
fn authorization(
    c: &Challenge,
    user: &[u8],
    password: &[u8],
    ha1_given: bool,
    method: &[u8],
    uri: &[u8],
    cnonce: &str,
) -> String {
    let ha1 = if ha1_given {
        String::from_utf8_lossy(password).into_owned()
    } else {
        md5_hex(&[user, c.realm.as_bytes(), password])
    };
    let ha2 = md5_hex(&[method, uri]);
    let nc = "00000001";
    let response = if c.qop_auth {
        md5_hex(&[
            ha1.as_bytes(),
            c.nonce.as_bytes(),
            nc.as_bytes(),
            cnonce.as_bytes(),
            b"auth",
            ha2.as_bytes(),
        ])
    } else {
        md5_hex(&[ha1.as_bytes(), c.nonce.as_bytes(), ha2.as_bytes()])
    };
    let mut out = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{response}\", algorithm=MD5",
        String::from_utf8_lossy(user),
        c.realm,
        c.nonce,
        String::from_utf8_lossy(uri),
    );
    if let Some(o) = &c.opaque {
        out.push_str(&format!(", opaque=\"{o}\""));
    }
    if c.qop_auth {
        out.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
    }
    out
}

/// `uac_auth([mode])` in failure_route: answers the winning 401/407 with credentials.
fn uac_auth(st: &State, ctx: &mut MsgContext, mode: i64) -> FnResult {
    let Some(reply) = ctx
        .ext
        .get::<ferrosip_api::tm::TmState>()
        .and_then(|t| t.reply.clone())
    else {
        return Err(FnError::new(
            "uac_auth: no reply to answer (failure_route only)",
        ));
    };
    let (challenge_hdr, answer_hdr) = match reply.status() {
        Some(401) => ("WWW-Authenticate", "Authorization"),
        Some(407) => ("Proxy-Authenticate", "Proxy-Authorization"),
        other => {
            return Err(FnError::new(format!(
                "uac_auth: the reply is {} (not 401 or 407)",
                other.unwrap_or_default()
            )))
        }
    };
    let avp = |slot: Option<u32>| -> Option<Bytes> {
        slot.and_then(|s| ctx.avps.get(s, 0))
            .and_then(Value::to_bytes)
    };
    let from_avps = match (
        avp(st.auth_username_avp),
        avp(st.auth_realm_avp),
        avp(st.auth_password_avp),
    ) {
        (Some(u), r, Some(p)) => Some((u, r, p)),
        _ => None,
    };
    let mut chosen = None;
    for value in reply.headers_named(challenge_hdr) {
        let Some(c) = parse_challenge(value) else {
            continue;
        };
        if c.algorithm
            .as_deref()
            .is_some_and(|a| !a.eq_ignore_ascii_case("MD5"))
        {
            continue;
        }
        let creds = match &from_avps {
            Some((u, r, p)) if r.as_ref().is_none_or(|r| r == c.realm.as_bytes()) => {
                Some((u.clone(), p.clone()))
            }
            Some(_) => None,
            None => st
                .credentials
                .iter()
                .find(|(_, r, _)| r == c.realm.as_bytes())
                .map(|(u, _, p)| (u.clone(), p.clone())),
        };
        if let Some((u, p)) = creds {
            chosen = Some((c, u, p));
            break;
        }
    }
    let Some((challenge, user, password)) = chosen else {
        tracing::debug!("uac_auth: no credentials for the realms challenged");
        return Ok(Verdict::FALSE);
    };
    let method = ctx
        .msg
        .method_bytes()
        .map(<[u8]>::to_vec)
        .ok_or_else(|| FnError::new("uac_auth: not a request"))?;
    let uri = ctx
        .msg
        .request_uri()
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    let cnonce = format!(
        "{:08x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() ^ d.as_secs() as u32)
    );
    let value = authorization(
        &challenge,
        &user,
        &password,
        mode & 1 == 1,
        &method,
        &uri,
        &cnonce,
    );
    ctx.msg.remove_headers(answer_hdr);
    ctx.msg
        .add_header(answer_hdr, value)
        .map_err(|e| FnError::new(format!("uac_auth: {e}")))?;
    Ok(Verdict::TRUE)
}

/// The `uac` module.
pub struct UacModule;

impl Module for UacModule {
    fn name(&self) -> &'static str {
        "uac"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Requests sent by the proxy itself (uac_req_send() with $uac_req), From/To replacement restored in the replies and in the dialog's in-dialog requests (Record-Route parameters, as Kamailio), digest authentication towards an upstream that challenges (uac_auth in failure_route). Registrations to upstream carriers from the uacreg table (reg_* parameters, uac_reg_* functions, uac.reg_* RPCs), with Digest authentication and refresh before expiry.\n\nuac_req_send() needs no tm module: the request runs on a client transaction of the server's own. With $uac_req(evroute) = 1 its outcome runs event_route[uac:reply] ($uac_req(evcode) the status, $uac_req(evtype) 1 for a reply received, 2 for a timeout or a send failure).");
        m.param("rr_from_store_param", ParamType::Str, "vsf", "Record-Route parameter that keeps the original From (encoded as Kamailio does) for the in-dialog requests of a dialog whose initial request had it replaced.");
        m.param(
            "rr_to_store_param",
            ParamType::Str,
            "vst",
            "As rr_from_store_param, for the To.",
        );
        m.param("restore_mode", ParamType::Str, "auto", "none: nothing is restored; manual: the replies of the transaction get the original From/To back, uac_restore_from()/uac_restore_to() restore in-dialog requests; auto: as manual, and every in-dialog request this proxy routes by its own Route entry (loose_route) leaves with the From/To restored (the replies to those in-dialog requests are restored only after uac_restore_from/to in the script). Direction is told by the rr ftag parameter (rr append_fromtag, on by default).");
        m.param(
            "restore_dlg",
            ParamType::Int,
            0_i64,
            "0 only: 1 (keep the URIs in the dialog instead of Record-Route) is declared, and refused at load.",
        );
        m.param(
            "restore_passwd",
            ParamType::Str,
            "",
            "A password XORed into the rr_from/to_store_param values, so the Route parameter does not show the original URI.",
        );
        m.param(
            "restore_from_avp",
            ParamType::Str,
            "",
            "Declared: a value is refused at load (the original From travels with the transaction instead).",
        );
        m.param(
            "restore_to_avp",
            ParamType::Str,
            "",
            "Declared: a value is refused at load.",
        );
        m.repeatable_param(
            "credential",
            ParamType::Str,
            "Credentials for uac_auth(): \"username:realm:password\".",
        );
        m.param(
            "auth_username_avp",
            ParamType::Str,
            "",
            "AVP with the username for uac_auth().",
        );
        m.param(
            "auth_realm_avp",
            ParamType::Str,
            "",
            "AVP with the realm for uac_auth().",
        );
        m.param(
            "auth_password_avp",
            ParamType::Str,
            "",
            "AVP with the password for uac_auth().",
        );
        m.param(
            "reg_db_url",
            ParamType::Str,
            "",
            "Database of the uacreg table (remote registrations).",
        );
        m.param(
            "reg_db_table",
            ParamType::Str,
            "uacreg",
            "The remote registrations table.",
        );
        m.param(
            "reg_contact_addr",
            ParamType::Str,
            "",
            "Address of the Contact in remote registrations.",
        );
        m.param(
            "reg_timer_interval",
            ParamType::Int,
            90_i64,
            "Seconds between two rounds of the registration timer: a binding is refreshed in the last round before it expires (at half its life when that is shorter).",
        );
        m.param(
            "reg_retry_interval",
            ParamType::Int,
            0_i64,
            "Seconds before a failed registration is tried again; 0: not until uac.reg_reload, uac.reg_refresh or uac_reg_enable after a disable.",
        );
        m.param(
            "reg_keep_callid",
            ParamType::Int,
            0_i64,
            "1: refreshes of a registration keep its Call-ID (RFC 3261 10.2.4); a new one after a failure.",
        );
        m.param(
            "reg_random_delay",
            ParamType::Int,
            0_i64,
            "Declared: a non-zero value (random delay of the first registrations) is refused at load; the rows' reg_delay works.",
        );
        m.param(
            "reg_active",
            ParamType::Int,
            1_i64,
            "0: no REGISTER is sent until the RPC uac.reg_active 1.",
        );
        m.param(
            "reg_gc_interval",
            ParamType::Int,
            150_i64,
            "Accepted for Kamailio configs: removed registrations are freed at once, there is nothing to collect later.",
        );
        m.param(
            "reg_hash_size",
            ParamType::Int,
            4_i64,
            "Accepted for Kamailio configs: the registrations are bounded by reg_max_records, not a hash table.",
        );
        m.param(
            "reg_use_domain",
            ParamType::Int,
            0_i64,
            "Declared: 1 (matching by user and domain) is refused at load.",
        );
        m.param(
            "default_socket",
            ParamType::Str,
            "",
            "Socket requests of uac are sent from.",
        );
        m.param(
            "event_callback",
            ParamType::Str,
            "",
            "KEMI function run for uac events.",
        );
        m.param(
            "reload_delta",
            ParamType::Int,
            30_i64,
            "uac.reg_reload is refused when the last load was less than this many seconds ago.",
        );
        m.param(
            "reg_max_records",
            ParamType::Int,
            10_000_i64,
            "Ferrosip's bound on the remote registrations: a uacreg table with more rows is refused at start and by uac.reg_reload.",
        );
        let avps = m.registry().avp_names();
        let clock = m.clock();
        let state = m.state(move |p| {
            let rr_from = p.string("rr_from_store_param");
            let rr_to = p.string("rr_to_store_param");
            for (name, v) in [("rr_from_store_param", &rr_from), ("rr_to_store_param", &rr_to)] {
                if v.is_empty() || !v.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-') {
                    return Err(format!("{name} \"{v}\" is not a URI parameter name"));
                }
            }
            let mode = p.string("restore_mode");
            if !matches!(mode.as_str(), "none" | "manual" | "auto") {
                return Err(format!("restore_mode \"{mode}\" is not none, manual or auto"));
            }
            if p.int("restore_dlg") != 0 {
                return Err("restore_dlg 1 (URIs kept in the dialog) is declared but not implemented: leave it 0, the Record-Route parameters carry them".into());
            }
            for name in ["restore_from_avp", "restore_to_avp"] {
                if !p.string(name).is_empty() {
                    return Err(format!("{name} is declared but not implemented: the originals travel with the transaction"));
                }
            }
            for v in p.all("credential") {
                let c = v.to_bytes().unwrap_or_default();
                if c.iter().filter(|b| **b == b':').count() < 2 {
                    return Err(format!(
                        "credential \"{}\" is not username:realm:password",
                        String::from_utf8_lossy(&c)
                    ));
                }
            }
            let mut credentials = Vec::new();
            for v in p.all("credential") {
                let c = v.to_bytes().unwrap_or_default();
                let mut it = c.splitn(3, |b| *b == b':');
                let (Some(u), Some(r), Some(pw)) = (it.next(), it.next(), it.next()) else {
                    unreachable!("checked above");
                };
                credentials.push((c.slice_ref(u), c.slice_ref(r), c.slice_ref(pw)));
            }
            let avp = |name: &str| -> Result<Option<u32>, String> {
                let v = p.string(name);
                if v.is_empty() {
                    return Ok(None);
                }
                let inner = v
                    .trim()
                    .strip_prefix("$avp(")
                    .and_then(|n| n.strip_suffix(')'))
                    .ok_or_else(|| format!("{name} \"{v}\" is not $avp(name)"))?;
                let inner = inner.strip_prefix("s:").or_else(|| inner.strip_prefix("i:")).unwrap_or(inner);
                Ok(Some(avps.slot(inner)))
            };
            Ok(State {
                runtime: OnceLock::new(),
                restore: mode != "none",
                auto_restore: mode == "auto",
                rr_from,
                rr_to,
                passwd: Bytes::from(p.string("restore_passwd").into_bytes()),
                credentials,
                auth_username_avp: avp("auth_username_avp")?,
                auth_realm_avp: avp("auth_realm_avp")?,
                auth_password_avp: avp("auth_password_avp")?,
                reg: reg::RegConfig::from_params(p)?
                    .map(|cfg| Arc::new(reg::Registrations::new(cfg, clock.clone()))),
            })
        });
        // The originals travel with the transaction, which restores them in the replies
        // it sends upstream.
        {
            let st = state.clone();
            m.on_branch(
                move |branch| match st.get() {
                    Ok(st) => auto_restore(&st, branch),
                    Err(_) => Ok(()),
                },
                keep_restore,
            );
        }
        {
            let st = state.clone();
            m.on_start(move |env| {
                let st = st.get();
                let rt = env.runtime.clone();
                Box::pin(async move {
                    let st: Arc<State> = st.map_err(|e| e.message)?;
                    let _ = st.runtime.set(rt.clone());
                    if let Some(reg) = &st.reg {
                        reg.set_runtime(rt);
                        let n = reg.reload().await?;
                        tracing::info!(records = n, "uac: remote registrations loaded");
                    }
                    Ok(())
                })
            });
        }
        {
            let st = state.clone();
            m.on_ready(move |services| {
                if let Ok(st) = st.get() {
                    if let Some(reg) = &st.reg {
                        reg.start(services.clone());
                    }
                }
            });
        }
        declare_rpcs(m, &state);
        m.pv("uac_req", UacReqClass);
        const FAIL_EVENT: RouteMask = RouteMask::FAILURE.union(RouteMask::EVENT);
        let s = &state;
        #[rustfmt::skip]
        m.functions([
            FnRow::sync("uac_req_send", &[], RouteMask::ANY,
                "Sends the request $uac_req describes on a transaction of the server's; 1 sent (its outcome goes to event_route[uac:reply] when $uac_req(evroute) is 1), -1 when $uac_req lacks method or ruri or the request cannot be built or sent.",
                s.with(|st: &State, ctx: &mut MsgContext| uac_req_send(st, ctx))),
            FnRow::sync("uac_replace_from", &["display", "uri"], RouteMask::REQUEST,
                "Replaces the From of the request with DISPLAY (empty: none) and URI, keeping its tag; with restore_mode auto or manual the replies of the transaction (tm) carry the original From back to the caller. 1 done, -1 on failure (no From, a URI or display name that would break the header).",
                s.with(|st: &State, ctx: &mut MsgContext, display: Bytes, uri: Bytes| replace(st, ctx, Which::From, Some(&display[..]), &uri))),
            FnRow::sync("uac_replace_from", &["uri"], RouteMask::REQUEST,
                "As uac_replace_from(display, uri), keeping the display name.",
                s.with(|st: &State, ctx: &mut MsgContext, uri: Bytes| replace(st, ctx, Which::From, None, &uri))),
            FnRow::sync("uac_restore_from", &[], RouteMask::REQUEST,
                "After loose_route(), in an in-dialog request: restores the URI rr_from_store_param of this proxy's Route entry keeps (the From of a request going to the callee, the To of one coming back), and the reply gets the header back as it came; 1 done, -1 nothing to restore (no such parameter, no loose_route(), a value that does not decode).",
                s.with(|st: &State, ctx: &mut MsgContext| restore(st, ctx, Which::From))),
            FnRow::sync("uac_replace_to", &["display", "uri"], RouteMask::REQUEST,
                "Replaces the To of the request with DISPLAY (empty: none) and URI; with restore_mode auto or manual the replies of the transaction carry the original To (with the callee's tag). 1 done, -1 on failure.",
                s.with(|st: &State, ctx: &mut MsgContext, display: Bytes, uri: Bytes| replace(st, ctx, Which::To, Some(&display[..]), &uri))),
            FnRow::sync("uac_replace_to", &["uri"], RouteMask::REQUEST,
                "As uac_replace_to(display, uri), keeping the display name.",
                s.with(|st: &State, ctx: &mut MsgContext, uri: Bytes| replace(st, ctx, Which::To, None, &uri))),
            FnRow::sync("uac_restore_to", &[], RouteMask::REQUEST,
                "As uac_restore_from(), for the To replaced by uac_replace_to() (rr_to_store_param).",
                s.with(|st: &State, ctx: &mut MsgContext| restore(st, ctx, Which::To))),
            FnRow::sync("uac_auth", &[], FAIL_EVENT,
                "In failure_route: answers the winning 401/407 (its WWW-/Proxy-Authenticate Digest MD5 challenge) with an Authorization/Proxy-Authorization header computed from the auth_*_avp AVPs when set, else the credential params of the challenged realm; then t_relay() sends the request again. 1 done, -1 no credentials for the realm, an error when there is no 401/407.",
                s.with(|st: &State, ctx: &mut MsgContext| uac_auth(st, ctx, 0))),
            FnRow::sync("uac_auth", &["mode"], FAIL_EVENT,
                "As uac_auth(); with mode 1 the password (AVP or credential) is HA1 already.",
                s.with(|st: &State, ctx: &mut MsgContext, mode: i64| uac_auth(st, ctx, mode))),
            FnRow::sync("uac_auth_mode", &["mode"], FAIL_EVENT,
                "As uac_auth(mode).",
                s.with(|st: &State, ctx: &mut MsgContext, mode: i64| uac_auth(st, ctx, mode))),
            FnRow::sync("uac_reg_lookup", &["uuid", "dst"], RouteMask::ANY,
                "Stores in DST the local URI (sip:l_username@l_domain) of the remote registration whose l_uuid is UUID; 1 found, -1 not found (an error when reg_db_url is not set).",
                s.with(|st: &State, ctx: &mut MsgContext, uuid: Bytes, dst: PvOut| reg_lookup(st, ctx, uuid, dst))),
            FnRow::sync("uac_reg_lookup_uri", &["uri", "dst"], RouteMask::ANY,
                "Stores in DST the l_uuid of the remote registration whose l_username is the user of URI; 1 found, -1 not found or URI has no user (an error when reg_db_url is not set).",
                s.with(|st: &State, ctx: &mut MsgContext, uri: Bytes, dst: PvOut| reg_lookup_uri(st, ctx, uri, dst))),
            FnRow::sync("uac_reg_status", &["uuid"], RouteMask::ANY,
                "The state of the remote registration UUID: 1 registered (and not expired), -2 a REGISTER in progress, -3 disabled, -99 not registered (failed or not yet), -1 no such registration.",
                s.with(|st: &State, _ctx: &mut MsgContext, uuid: Bytes| -> FnResult {
                    let code = st.reg("uac_reg_status")?.status(&String::from_utf8_lossy(&uuid));
                    Ok(Verdict::code(code as i32))
                })),
            FnRow::sync("uac_reg_request_to", &["user", "mode"], RouteMask::REQUEST.union(RouteMask::FAILURE),
                "Sends the request to the carrier of the remote registration whose l_uuid (MODE 0) or auth_username (MODE 1) is USER: the R-URI becomes sip:r_username@r_domain, $du the auth_proxy when set, and the auth_username/realm/password AVPs get its credentials for uac_auth() (auth_password, else auth_ha1: then call uac_auth(1)). 1 found, -1 not found; an error without the three auth AVP parameters.",
                s.with(|st: &State, ctx: &mut MsgContext, user: Bytes, mode: i64| reg_request_to(st, ctx, user, mode))),
            FnRow::sync("uac_reg_enable", &["attr", "val"], RouteMask::ANY,
                "Enables the remote registrations whose ATTR (l_uuid, l_username, r_username, auth_username) is VAL; a disabled one registers at the next timer round. 1 some matched, -1 none.",
                s.with(|st: &State, _ctx: &mut MsgContext, attr: Bytes, val: Bytes| reg_switch(st, attr, val, true))),
            FnRow::sync("uac_reg_disable", &["attr", "val"], RouteMask::ANY,
                "Disables the remote registrations whose ATTR is VAL: no more REGISTERs for them (the registrar's binding runs out). 1 some matched, -1 none.",
                s.with(|st: &State, _ctx: &mut MsgContext, attr: Bytes, val: Bytes| reg_switch(st, attr, val, false))),
            FnRow::asynchronous("uac_reg_refresh", &["luuid"], RouteMask::ANY,
                "Loads the uacreg row LUUID again (added, changed or removed since the start) and registers it anew; 1 done, -1 not in the table nor in memory, or a database error.",
                s.with(|st: &State, _ctx: &mut MsgContext, luuid: Bytes| {
                    let reg = st.reg("uac_reg_refresh").map(Arc::clone);
                    async move {
                        let done = match reg {
                            Ok(reg) => reg.refresh(&String::from_utf8_lossy(&luuid)).await.map_err(FnError::new),
                            Err(e) => Err(e),
                        };
                        ferrosip_api::registry::apply_result(move |_| done.map(|found| if found { Verdict::TRUE } else { Verdict::FALSE }))
                    }
                })),
        ]);
        m.example(
            "loadmodule \"sl.so\"\nloadmodule \"textops.so\"\nloadmodule \"uac.so\"\n\
             request_route {\n    \
                 if (is_method(\"REGISTER\")) {\n        \
                     sl_send_reply(\"200\", \"OK\");\n        \
                     $uac_req(method) = \"NOTIFY\";\n        \
                     $uac_req(ruri) = \"sip:\" + $fU + \"@\" + $si + \":\" + $sp;\n        \
                     $uac_req(furi) = \"sip:provisioning@example.com\";\n        \
                     $uac_req(turi) = $fu;\n        \
                     $uac_req(hdrs) = \"Event: check-sync\\r\\nSubscription-State: terminated\\r\\n\";\n        \
                     uac_req_send();\n        exit;\n    }\n}\n",
        );
    }
}

fn declare_rpcs(m: &mut ModuleBuilder<'_>, state: &ferrosip_api::registry::StateSlot<State>) {
    let reg_of = |state: &ferrosip_api::registry::StateSlot<State>| -> Result<Arc<reg::Registrations>, String> {
        let st = state.get().map_err(|e| e.message)?;
        st.reg
            .clone()
            .ok_or_else(|| "remote registrations are off (reg_db_url is not set)".to_string())
    };
    {
        let s = state.clone();
        m.rpc("uac.reg_dump", "Every remote registration: its row, flags (1 disabled, 2 in progress, 4 registered, 8 credentials sent, 16 loaded), seconds left (diff_expires), the last status.", move |_| {
            Ok(reg_of(&s)?.dump())
        });
    }
    {
        let s = state.clone();
        m.rpc("uac.reg_info", "uac.reg_info attr val: the registration whose attr (l_uuid, l_username, r_username, auth_username) is val.", move |args| {
            let reg = reg_of(&s)?;
            reg.info(&rpc_text(args, 0, "attribute")?, &rpc_text(args, 1, "value")?)
        });
    }
    for (name, on) in [("uac.reg_enable", true), ("uac.reg_disable", false)] {
        let s = state.clone();
        let doc = if on {
            "uac.reg_enable attr val: enables the matching registrations (they register at the next timer round)."
        } else {
            "uac.reg_disable attr val: disables the matching registrations (no more REGISTERs)."
        };
        m.rpc(name, doc, move |args| {
            let reg = reg_of(&s)?;
            let (attr, val) = (rpc_text(args, 0, "attribute")?, rpc_text(args, 1, "value")?);
            let n = if on {
                reg.enable(&attr, &val)
            } else {
                reg.disable(&attr, &val)
            }?;
            if n == 0 {
                return Err(format!("no registration with {attr} {val}"));
            }
            Ok(RpcValue::Int(n as i64))
        });
    }
    {
        let s = state.clone();
        m.rpc(
            "uac.reg_active",
            "uac.reg_active 0|1: stops or resumes sending REGISTERs (reg_active at run time).",
            move |args| {
                let reg = reg_of(&s)?;
                let on = args
                    .first()
                    .and_then(|v| v.as_int())
                    .ok_or("missing 0 or 1")?;
                reg.set_active(on != 0);
                Ok(RpcValue::Int(on))
            },
        );
    }
    {
        let s = state.clone();
        m.rpc_async("uac.reg_reload", "Loads the uacreg table again: new and changed rows register anew, removed ones stop; unchanged ones keep their binding. At most once per reload_delta.", move |_| {
            let reg = reg_of(&s);
            async move { Ok(RpcValue::Int(reg?.reload_rpc().await? as i64)) }
        });
    }
    {
        let s = state.clone();
        m.rpc_async(
            "uac.reg_refresh",
            "uac.reg_refresh l_uuid: loads that row again and registers it anew.",
            move |args| {
                let reg = reg_of(&s);
                let uuid = rpc_text(&args, 0, "l_uuid");
                async move {
                    let uuid = uuid?;
                    if reg?.refresh(&uuid).await? {
                        Ok(RpcValue::Int(1))
                    } else {
                        Err(format!("no registration {uuid}"))
                    }
                }
            },
        );
    }
}

mod reg;

#[cfg(test)]
mod tests;
