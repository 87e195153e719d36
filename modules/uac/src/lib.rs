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
//! the replies it sends upstream ([`UpstreamHeaders`]). `uac_auth` answers the Digest
//! challenge of the reply failure_route sees, for `t_relay()` to send again.

use bytes::Bytes;
use ferrosip_api::pv::{Binder, PvParamRule};
use ferrosip_api::registry::FnRow;
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
    /// `credential` params: (username, realm, password).
    credentials: Vec<(Bytes, Bytes, Bytes)>,
    auth_username_avp: Option<u32>,
    auth_realm_avp: Option<u32>,
    auth_password_avp: Option<u32>,
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
    let display: Option<Vec<u8>> = match display {
        // The two-argument form sets the display name; an empty one removes it.
        Some(d) if d.is_empty() => None,
        Some(d) => Some(d.to_vec()),
        None => parsed.display_name().map(<[u8]>::to_vec),
    };
    let mut value = Vec::with_capacity(original.len() + uri.len());
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
    ctx.msg
        .set_header(name, &value)
        .map_err(|e| FnError::new(format!("cannot set {name}: {e}")))?;
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
        m.doc("Requests sent by the proxy itself (uac_req_send() with $uac_req), From/To replacement restored in the replies, digest authentication towards an upstream that challenges (uac_auth in failure_route). Registrations to carriers (uac_reg_*, the reg_* parameters) are declared only.\n\nuac_req_send() needs no tm module: the request runs on a client transaction of the server's own. With $uac_req(evroute) = 1 its outcome runs event_route[uac:reply] ($uac_req(evcode) the status, $uac_req(evtype) 1 for a reply received, 2 for a timeout or a send failure).");
        m.param("rr_from_store_param", ParamType::Str, "vsf", "Record-Route parameter that would keep the original From for in-dialog requests; no effect yet (in-dialog requests are not rewritten).");
        m.param(
            "rr_to_store_param",
            ParamType::Str,
            "vst",
            "As rr_from_store_param, for the To; no effect yet.",
        );
        m.param("restore_mode", ParamType::Str, "auto", "none: replies keep the replaced From/To; auto or manual: the replies of the transaction get the original back (in-dialog requests are not rewritten yet).");
        m.param(
            "restore_dlg",
            ParamType::Int,
            0_i64,
            "Accepted for Kamailio configs; no effect yet (in-dialog restore is not built).",
        );
        m.param(
            "restore_passwd",
            ParamType::Str,
            "",
            "Accepted for Kamailio configs; no effect (nothing is stored in Record-Route).",
        );
        m.param(
            "restore_from_avp",
            ParamType::Str,
            "",
            "Accepted for Kamailio configs; no effect yet.",
        );
        m.param(
            "restore_to_avp",
            ParamType::Str,
            "",
            "Accepted for Kamailio configs; no effect yet.",
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
            "Seconds between checks of the remote registrations.",
        );
        m.param(
            "reg_retry_interval",
            ParamType::Int,
            0_i64,
            "Seconds before a failed registration is tried again.",
        );
        m.param(
            "reg_keep_callid",
            ParamType::Int,
            0_i64,
            "1: keep the Call-ID of a registration across refreshes.",
        );
        m.param(
            "reg_random_delay",
            ParamType::Int,
            0_i64,
            "Random delay (seconds) of the first registrations.",
        );
        m.param(
            "reg_active",
            ParamType::Int,
            1_i64,
            "0: remote registrations start disabled.",
        );
        m.param(
            "reg_gc_interval",
            ParamType::Int,
            150_i64,
            "Seconds before removed registrations are freed.",
        );
        m.param(
            "reg_hash_size",
            ParamType::Int,
            4_i64,
            "Size (power of two) of the registrations' hash table.",
        );
        m.param(
            "reg_use_domain",
            ParamType::Int,
            0_i64,
            "1: registrations are looked up by user and domain.",
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
            "Seconds between two reloads of the registrations.",
        );
        let avps = m.registry().avp_names();
        let state = m.state(move |p| {
            let rr_from = p.string("rr_from_store_param");
            let rr_to = p.string("rr_to_store_param");
            for (name, v) in [("rr_from_store_param", &rr_from), ("rr_to_store_param", &rr_to)] {
                if v.is_empty() || !v.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-') {
                    return Err(format!("{name} \"{v}\" is not a URI parameter name"));
                }
            }
            if !p.string("reg_db_url").is_empty() {
                return Err("reg_db_url: remote registrations (uac_reg) are declared but not implemented yet".into());
            }
            let mode = p.string("restore_mode");
            if !matches!(mode.as_str(), "none" | "manual" | "auto") {
                return Err(format!("restore_mode \"{mode}\" is not none, manual or auto"));
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
                credentials,
                auth_username_avp: avp("auth_username_avp")?,
                auth_realm_avp: avp("auth_realm_avp")?,
                auth_password_avp: avp("auth_password_avp")?,
            })
        });
        // The originals travel with the transaction, which restores them in the replies
        // it sends upstream.
        m.on_branch(
            |_branch| Ok(()),
            |from, to| {
                if let Some(kept) = from.get::<UpstreamHeaders>() {
                    to.insert(kept.clone());
                }
            },
        );
        {
            let st = state.clone();
            m.on_start(move |env| {
                let st = st.get();
                let rt = env.runtime.clone();
                Box::pin(async move {
                    let st: Arc<State> = st.map_err(|e| e.message)?;
                    let _ = st.runtime.set(rt);
                    Ok(())
                })
            });
        }
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
            FnRow::declared::<()>("uac_restore_from", &[], RouteMask::REQUEST,
                "Restores the From replaced earlier in the dialog in an in-dialog request (restore_mode manual); 1 done, -1 nothing to restore."),
            FnRow::sync("uac_replace_to", &["display", "uri"], RouteMask::REQUEST,
                "Replaces the To of the request with DISPLAY (empty: none) and URI; with restore_mode auto or manual the replies of the transaction carry the original To (with the callee's tag). 1 done, -1 on failure.",
                s.with(|st: &State, ctx: &mut MsgContext, display: Bytes, uri: Bytes| replace(st, ctx, Which::To, Some(&display[..]), &uri))),
            FnRow::sync("uac_replace_to", &["uri"], RouteMask::REQUEST,
                "As uac_replace_to(display, uri), keeping the display name.",
                s.with(|st: &State, ctx: &mut MsgContext, uri: Bytes| replace(st, ctx, Which::To, None, &uri))),
            FnRow::declared::<()>("uac_restore_to", &[], RouteMask::REQUEST,
                "Restores the To replaced earlier in the dialog in an in-dialog request; 1 done, -1 nothing to restore."),
            FnRow::sync("uac_auth", &[], FAIL_EVENT,
                "In failure_route: answers the winning 401/407 (its WWW-/Proxy-Authenticate Digest MD5 challenge) with an Authorization/Proxy-Authorization header computed from the auth_*_avp AVPs when set, else the credential params of the challenged realm; then t_relay() sends the request again. 1 done, -1 no credentials for the realm, an error when there is no 401/407.",
                s.with(|st: &State, ctx: &mut MsgContext| uac_auth(st, ctx, 0))),
            FnRow::sync("uac_auth", &["mode"], FAIL_EVENT,
                "As uac_auth(); with mode 1 the password (AVP or credential) is HA1 already.",
                s.with(|st: &State, ctx: &mut MsgContext, mode: i64| uac_auth(st, ctx, mode))),
            FnRow::sync("uac_auth_mode", &["mode"], FAIL_EVENT,
                "As uac_auth(mode).",
                s.with(|st: &State, ctx: &mut MsgContext, mode: i64| uac_auth(st, ctx, mode))),
            FnRow::declared::<(Bytes, ferrosip_api::args::PvOut)>("uac_reg_lookup", &["uuid", "dst"], RouteMask::ANY,
                "Stores in DST the local URI of the remote registration UUID; 1 found, -1 not found."),
            FnRow::declared::<(Bytes, ferrosip_api::args::PvOut)>("uac_reg_lookup_uri", &["uri", "dst"], RouteMask::ANY,
                "Stores in DST the uuid of the remote registration of URI; 1 found, -1 not found."),
            FnRow::declared::<(Bytes,)>("uac_reg_status", &["id"], RouteMask::ANY,
                "1 when the remote registration is active, negative codes otherwise."),
            FnRow::declared::<(Bytes, i64)>("uac_reg_request_to", &["user", "mode"], RouteMask::REQUEST.union(RouteMask::FAILURE),
                "Sets the R-URI (and auth AVPs) to the remote registration of USER; 1 found, -1 not found."),
            FnRow::declared::<(Bytes, Bytes)>("uac_reg_enable", &["attr", "val"], RouteMask::ANY,
                "Enables a remote registration; 1 done, -1 not found."),
            FnRow::declared::<(Bytes, Bytes)>("uac_reg_disable", &["attr", "val"], RouteMask::ANY,
                "Disables a remote registration; 1 done, -1 not found."),
            FnRow::declared::<(Bytes,)>("uac_reg_refresh", &["luuid"], RouteMask::ANY,
                "Reloads one remote registration from the database; 1 done, -1 not found."),
            FnRow::declared::<(Bytes, Bytes)>("uac_reg_send_register", &["attr", "val"], RouteMask::ANY,
                "Sends a REGISTER for a remote registration now; 1 sent, -1 not found."),
            FnRow::declared::<(Bytes, Bytes)>("uac_reg_send_unregister", &["attr", "val"], RouteMask::ANY,
                "Sends an un-REGISTER for a remote registration now; 1 sent, -1 not found."),
        ]);
        m.example(
            "loadmodule \"sl.so\"\nloadmodule \"uac.so\"\n\
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

#[cfg(test)]
mod tests;
