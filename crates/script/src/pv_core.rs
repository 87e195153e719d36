//! Core pseudo-variables (Kamailio's `pv` module and core PVs), registered through the same
//! framework modules use.

use crate::program::MyselfSubject;
use bytes::Bytes;
use ferrosip_api::pv::{Binder, FnPv, PvClass, PvParamRule};
use ferrosip_api::xavp::XKind;
use ferrosip_api::{Format, Module, ModuleBuilder, MsgContext, Pv, PvError, PvIndex, SetOp, Value};
use ferrosip_sip::Uri;
use std::net::IpAddr;
use std::sync::Arc;

pub(crate) fn ip_value(ip: IpAddr) -> Value {
    Value::from_string(ip.to_string())
}

/// A value for a part of the message: a reference-counted slice of the received buffer
/// when it is one, so reading a header or URI part does not copy it.
fn bytes_value(ctx: &MsgContext, b: &[u8]) -> Value {
    Value::Str(ctx.msg.bytes_of(b))
}

fn opt_bytes(ctx: &MsgContext, b: Option<&[u8]>) -> Value {
    b.map(|b| bytes_value(ctx, b)).unwrap_or_default()
}

fn value_bytes(v: &Value) -> Option<Bytes> {
    v.to_bytes()
}

/// The request URI, or the From/To URI, as a value.
pub(crate) fn uri_of(ctx: &MsgContext, which: MyselfSubject) -> Value {
    match which {
        MyselfSubject::Uri => opt_bytes(ctx, ctx.msg.request_uri()),
        MyselfSubject::FromUri => ctx
            .msg
            .from()
            .ok()
            .map(|na| bytes_value(ctx, na.uri_bytes()))
            .unwrap_or_default(),
        MyselfSubject::ToUri => ctx
            .msg
            .to()
            .ok()
            .map(|na| bytes_value(ctx, na.uri_bytes()))
            .unwrap_or_default(),
        _ => Value::Null,
    }
}

/// Which part of a URI a PV reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UriPart {
    Whole,
    User,
    Host,
    Port,
}

fn uri_part(ctx: &MsgContext, uri: &[u8], part: UriPart) -> Value {
    if part == UriPart::Whole {
        return bytes_value(ctx, uri);
    }
    let Ok(u) = Uri::parse(uri) else {
        return Value::Null;
    };
    match part {
        UriPart::User => opt_bytes(ctx, u.user()),
        UriPart::Host => opt_bytes(ctx, u.host()),
        UriPart::Port => match u.port() {
            Some(p) => Value::Int(p as i64),
            None => Value::Null,
        },
        UriPart::Whole => unreachable!("handled above"),
    }
}

/// Offset of a sub-slice inside its parent slice.
fn offset_in(parent: &[u8], child: &[u8]) -> Option<usize> {
    let p = parent.as_ptr() as usize;
    let c = child.as_ptr() as usize;
    (c >= p && c + child.len() <= p + parent.len()).then(|| c - p)
}

/// Rewrites one part of a SIP URI, keeping every other byte.
pub(crate) fn rewrite_uri(
    uri: &[u8],
    part: UriPart2,
    new: Option<&[u8]>,
) -> Result<Vec<u8>, PvError> {
    let u = Uri::parse(uri)
        .map_err(|e| PvError::Invalid(format!("cannot rewrite a malformed URI: {e}")))?;
    let host = u
        .host()
        .ok_or_else(|| PvError::Invalid("URI has no host".into()))?;
    let host_off =
        offset_in(uri, host).ok_or_else(|| PvError::Invalid("URI host not found".into()))?;
    let mut out = Vec::with_capacity(uri.len() + 16);
    match part {
        UriPart2::User => match (u.user(), new) {
            (Some(user), new) => {
                let off = offset_in(uri, user)
                    .ok_or_else(|| PvError::Invalid("URI user not found".into()))?;
                match new {
                    Some(n) if !n.is_empty() => {
                        out.extend_from_slice(&uri[..off]);
                        out.extend_from_slice(n);
                        out.extend_from_slice(&uri[off + user.len()..]);
                    }
                    _ => {
                        // Removing the user removes "user[:password]@" too.
                        out.extend_from_slice(&uri[..off]);
                        out.extend_from_slice(&uri[host_off..]);
                    }
                }
            }
            (None, Some(n)) if !n.is_empty() => {
                out.extend_from_slice(&uri[..host_off]);
                out.extend_from_slice(n);
                out.push(b'@');
                out.extend_from_slice(&uri[host_off..]);
            }
            (None, _) => out.extend_from_slice(uri),
        },
        UriPart2::Host => {
            let n = new
                .filter(|n| !n.is_empty())
                .ok_or_else(|| PvError::Invalid("a URI host cannot be empty".into()))?;
            out.extend_from_slice(&uri[..host_off]);
            out.extend_from_slice(n);
            out.extend_from_slice(&uri[host_off + host.len()..]);
        }
        UriPart2::Port => {
            let after_host = host_off + host.len();
            // The port, when present, directly follows ":" after the host.
            let mut port_end = after_host;
            if uri.get(after_host) == Some(&b':') {
                port_end += 1;
                while port_end < uri.len() && uri[port_end].is_ascii_digit() {
                    port_end += 1;
                }
            }
            out.extend_from_slice(&uri[..after_host]);
            if let Some(n) = new.filter(|n| !n.is_empty() && *n != b"0") {
                out.push(b':');
                out.extend_from_slice(n);
            }
            out.extend_from_slice(&uri[port_end..]);
        }
    }
    Ok(out)
}

/// The writable parts of a URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UriPart2 {
    User,
    Host,
    Port,
}

struct RuriPv(UriPart);

impl Pv for RuriPv {
    fn get(&self, ctx: &MsgContext, _i: PvIndex) -> Result<Value, PvError> {
        Ok(match ctx.msg.request_uri() {
            Some(u) => uri_part(ctx, u, self.0),
            None => Value::Null,
        })
    }

    fn set(&self, ctx: &mut MsgContext, _i: PvIndex, _op: SetOp, v: Value) -> Result<(), PvError> {
        let Some(cur) = ctx.msg.request_uri().map(|u| u.to_vec()) else {
            return Err(PvError::Invalid("only a request has a request URI".into()));
        };
        let new_bytes = value_bytes(&v);
        let new_uri = match self.0 {
            UriPart::Whole => {
                let n = new_bytes
                    .ok_or_else(|| PvError::Invalid("the request URI cannot be null".into()))?;
                Uri::parse(&n).map_err(|e| {
                    PvError::Invalid(format!(
                        "\"{}\" is not a valid URI: {e}",
                        String::from_utf8_lossy(&n)
                    ))
                })?;
                n.to_vec()
            }
            UriPart::User => rewrite_uri(&cur, UriPart2::User, new_bytes.as_deref())?,
            UriPart::Host => rewrite_uri(&cur, UriPart2::Host, new_bytes.as_deref())?,
            UriPart::Port => rewrite_uri(&cur, UriPart2::Port, new_bytes.as_deref())?,
        };
        ctx.msg
            .set_request_uri(&new_uri)
            .map_err(|e| PvError::Invalid(format!("cannot set the request URI: {e}")))
    }

    fn writable(&self) -> bool {
        true
    }
}

/// `$du`: the destination URI.
struct DuPv;

impl Pv for DuPv {
    fn get(&self, ctx: &MsgContext, _i: PvIndex) -> Result<Value, PvError> {
        Ok(ctx.dst_uri.clone().map(Value::Str).unwrap_or_default())
    }

    fn set(&self, ctx: &mut MsgContext, _i: PvIndex, _op: SetOp, v: Value) -> Result<(), PvError> {
        match v {
            Value::Null => ctx.dst_uri = None,
            v => {
                let b = value_bytes(&v).unwrap_or_default();
                if b.is_empty() {
                    ctx.dst_uri = None;
                } else {
                    Uri::parse(&b).map_err(|e| {
                        PvError::Invalid(format!(
                            "\"{}\" is not a valid destination URI: {e}",
                            String::from_utf8_lossy(&b)
                        ))
                    })?;
                    ctx.dst_uri = Some(b);
                }
            }
        }
        Ok(())
    }

    fn writable(&self) -> bool {
        true
    }
}

/// `$fu`, `$tu` and their parts, read-only.
struct NameAddrPv {
    to: bool,
    part: NaPart,
}

#[derive(Clone, Copy)]
enum NaPart {
    Uri(UriPart),
    Tag,
    Display,
}

impl Pv for NameAddrPv {
    fn get(&self, ctx: &MsgContext, _i: PvIndex) -> Result<Value, PvError> {
        let na = if self.to {
            ctx.msg.to()
        } else {
            ctx.msg.from()
        };
        let Ok(na) = na else {
            return Ok(Value::Null);
        };
        Ok(match self.part {
            NaPart::Uri(p) => uri_part(ctx, na.uri_bytes(), p),
            NaPart::Tag => opt_bytes(ctx, na.tag()),
            NaPart::Display => opt_bytes(ctx, na.display_name()),
        })
    }
}

/// `$hdr(Name)`: header value by name (compact forms included); `$(hdr(Name)[n])`, `[*]`.
struct HdrPv {
    name: Format,
}

impl Pv for HdrPv {
    fn get(&self, ctx: &MsgContext, index: PvIndex) -> Result<Value, PvError> {
        let name = self.name.eval(ctx)?;
        let name = String::from_utf8_lossy(&name);
        let mut values = ctx.msg.headers_named(&name);
        Ok(match index {
            PvIndex::First => opt_bytes(ctx, values.next()),
            PvIndex::Nth(n) if n >= 0 => opt_bytes(ctx, values.nth(n as usize)),
            PvIndex::Nth(n) => {
                let all: Vec<&[u8]> = values.collect();
                let back = n.unsigned_abs() as usize;
                opt_bytes(ctx, all.len().checked_sub(back).map(|i| all[i]))
            }
            PvIndex::All => {
                let all: Vec<&[u8]> = values.collect();
                if all.is_empty() {
                    Value::Null
                } else {
                    Value::Str(Bytes::from(all.join(&b","[..])))
                }
            }
        })
    }
}

struct HdrClass;

impl PvClass for HdrClass {
    fn param_rule(&self) -> PvParamRule {
        PvParamRule::Required
    }

    fn bind(&self, param: Option<&str>, binder: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
        let p = param.unwrap_or("").trim();
        if p.is_empty() {
            return Err("header name missing".into());
        }
        let name = binder.parse_format(p).map_err(|e| e.message)?;
        Ok(Arc::new(HdrPv { name }))
    }

    fn doc(&self) -> &str {
        "Value of a header by name: $hdr(Name), $(hdr(Name)[n]), $(hdr(Name)[*])."
    }
}

/// `$hdrc(Name)`: how many headers of that name.
struct HdrCountClass;

impl PvClass for HdrCountClass {
    fn param_rule(&self) -> PvParamRule {
        PvParamRule::Required
    }

    fn bind(&self, param: Option<&str>, _b: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
        let name = param.unwrap_or("").trim().to_string();
        if name.is_empty() {
            return Err("header name missing".into());
        }
        Ok(Arc::new(FnPv::<_> {
            name: "hdrc",
            get: move |ctx: &MsgContext| Value::Int(ctx.msg.headers_named(&name).count() as i64),
            set: None,
        }))
    }
}

/// `$var(name)`: per-message script variables.
struct VarPv(u32);

impl Pv for VarPv {
    fn get(&self, ctx: &MsgContext, _i: PvIndex) -> Result<Value, PvError> {
        Ok(ctx.vars.get(self.0).clone())
    }

    fn set(&self, ctx: &mut MsgContext, _i: PvIndex, _op: SetOp, v: Value) -> Result<(), PvError> {
        // Kamailio sets a $var to 0 on `= $null`; we keep null, which `defined` can see.
        ctx.vars.set(self.0, v);
        Ok(())
    }

    fn writable(&self) -> bool {
        true
    }
}

struct VarClass;

impl PvClass for VarClass {
    fn param_rule(&self) -> PvParamRule {
        PvParamRule::Required
    }

    fn bind(&self, param: Option<&str>, binder: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
        let name = param.unwrap_or("").trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            return Err(format!("invalid variable name '{name}'"));
        }
        Ok(Arc::new(VarPv(binder.var_slot(name))))
    }

    fn doc(&self) -> &str {
        "Script variable, empty at the start of each message."
    }
}

/// `$avp(name)`: attribute-value pairs, a stack per name.
struct AvpPv(u32);

impl Pv for AvpPv {
    fn get(&self, ctx: &MsgContext, index: PvIndex) -> Result<Value, PvError> {
        Ok(match index {
            PvIndex::First => ctx.avps.get(self.0, 0).cloned().unwrap_or_default(),
            PvIndex::Nth(n) => ctx.avps.get(self.0, n).cloned().unwrap_or_default(),
            PvIndex::All => {
                let mut out = Vec::new();
                for (i, v) in ctx.avps.all(self.0).enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    v.write_to(&mut out);
                }
                if out.is_empty() {
                    Value::Null
                } else {
                    Value::Str(out.into())
                }
            }
        })
    }

    fn set(
        &self,
        ctx: &mut MsgContext,
        index: PvIndex,
        op: SetOp,
        v: Value,
    ) -> Result<(), PvError> {
        match (index, v) {
            (PvIndex::All, Value::Null) => ctx.avps.remove_all(self.0),
            (PvIndex::First, Value::Null) => match op {
                SetOp::Replace => ctx.avps.remove_all(self.0),
                SetOp::Assign => {
                    ctx.avps.pop(self.0);
                }
            },
            (PvIndex::Nth(n), Value::Null) if n >= 0 => {
                ctx.avps.remove_nth(self.0, n as usize);
            }
            (PvIndex::Nth(n), v) if n >= 0 => {
                if !ctx.avps.set_nth(self.0, n as usize, v) {
                    return Err(PvError::Invalid(format!("no value at index {n}")));
                }
            }
            (PvIndex::Nth(_), _) => {
                return Err(PvError::Invalid(
                    "negative index in an AVP assignment".into(),
                ))
            }
            (PvIndex::All, v) | (PvIndex::First, v) => match op {
                SetOp::Assign if index == PvIndex::First => ctx.avps.push(self.0, v),
                _ => ctx.avps.replace(self.0, v),
            },
        }
        Ok(())
    }

    fn writable(&self) -> bool {
        true
    }
}

struct AvpClass;

impl PvClass for AvpClass {
    fn param_rule(&self) -> PvParamRule {
        PvParamRule::Required
    }

    fn bind(&self, param: Option<&str>, binder: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
        let name = param.unwrap_or("").trim();
        if name.is_empty() {
            return Err("AVP name missing".into());
        }
        if name.starts_with('$') {
            return Err("dynamic AVP names are not supported; use $xavp or a fixed name".into());
        }
        Ok(Arc::new(AvpPv(binder.avp_slot(name))))
    }
}

/// Flags as a bitmask: `$mf` message flags, `$bf` branch flags.
fn flags_pv(branch: bool) -> impl Pv {
    FnPv {
        name: if branch { "bf" } else { "mf" },
        get: move |ctx: &MsgContext| Value::Int(if branch { ctx.bflags } else { ctx.flags } as i64),
        set: Some(move |ctx: &mut MsgContext, _op: SetOp, v: Value| {
            let n = v
                .as_int()
                .ok_or_else(|| PvError::Invalid("flags must be a number".into()))?
                as u64;
            if branch {
                ctx.bflags = n;
            } else {
                ctx.flags = n;
            }
            Ok(())
        }),
    }
}

fn ro<G>(name: &'static str, get: G) -> FnPv<G>
where
    G: Fn(&MsgContext) -> Value + Send + Sync + 'static,
{
    FnPv {
        name,
        get,
        set: None,
    }
}

/// A parameter of the digest credentials (`username="alice"`), from Proxy-Authorization or
/// Authorization.
fn credential(ctx: &MsgContext, name: &str) -> Value {
    let h = ctx
        .msg
        .header("Proxy-Authorization")
        .or_else(|| ctx.msg.header("Authorization"));
    let Some(h) = h else {
        return Value::Null;
    };
    let h = String::from_utf8_lossy(h);
    let rest = h.trim_start();
    let rest = rest.split_once(char::is_whitespace).map_or("", |(_, r)| r);
    for part in split_commas_outside_quotes(rest) {
        if let Some((k, v)) = part.split_once('=') {
            if k.trim().eq_ignore_ascii_case(name) {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|x| x.strip_suffix('"'))
                    .unwrap_or(v);
                return Value::from_string(v.to_string());
            }
        }
    }
    Value::Null
}

fn split_commas_outside_quotes(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Registers the core PVs as the `pv` module (always loaded).
pub struct CorePvModule;

impl Module for CorePvModule {
    fn name(&self) -> &'static str {
        "pv"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Core pseudo-variables: message fields, script variables, AVPs, flags.")
            .always_loaded();
        m.pv_fixed("ru", "Request URI (writable).", RuriPv(UriPart::Whole));
        m.pv_fixed(
            "rU",
            "User of the request URI (writable).",
            RuriPv(UriPart::User),
        );
        m.pv_fixed(
            "rd",
            "Host of the request URI (writable).",
            RuriPv(UriPart::Host),
        );
        m.pv_fixed(
            "rp",
            "Port of the request URI (writable).",
            RuriPv(UriPart::Port),
        );
        m.pv_fixed("du", "Destination URI (writable; $null resets).", DuPv);
        m.pv_fixed(
            "fu",
            "From URI.",
            NameAddrPv {
                to: false,
                part: NaPart::Uri(UriPart::Whole),
            },
        );
        m.pv_fixed(
            "fU",
            "From URI user.",
            NameAddrPv {
                to: false,
                part: NaPart::Uri(UriPart::User),
            },
        );
        m.pv_fixed(
            "fd",
            "From URI host.",
            NameAddrPv {
                to: false,
                part: NaPart::Uri(UriPart::Host),
            },
        );
        m.pv_fixed(
            "fn",
            "From display name.",
            NameAddrPv {
                to: false,
                part: NaPart::Display,
            },
        );
        m.pv_fixed(
            "ft",
            "From tag.",
            NameAddrPv {
                to: false,
                part: NaPart::Tag,
            },
        );
        m.pv_fixed(
            "tu",
            "To URI.",
            NameAddrPv {
                to: true,
                part: NaPart::Uri(UriPart::Whole),
            },
        );
        m.pv_fixed(
            "tU",
            "To URI user.",
            NameAddrPv {
                to: true,
                part: NaPart::Uri(UriPart::User),
            },
        );
        m.pv_fixed(
            "td",
            "To URI host.",
            NameAddrPv {
                to: true,
                part: NaPart::Uri(UriPart::Host),
            },
        );
        m.pv_fixed(
            "tn",
            "To display name.",
            NameAddrPv {
                to: true,
                part: NaPart::Display,
            },
        );
        m.pv_fixed(
            "tt",
            "To tag.",
            NameAddrPv {
                to: true,
                part: NaPart::Tag,
            },
        );
        m.pv_fixed(
            "ci",
            "Call-ID.",
            ro("ci", |ctx| opt_bytes(ctx, ctx.msg.call_id())),
        );
        m.pv_fixed(
            "cs",
            "CSeq number.",
            ro("cs", |ctx| {
                ctx.msg
                    .cseq()
                    .map(|c| Value::Int(c.seq as i64))
                    .unwrap_or_default()
            }),
        );
        m.pv_fixed(
            "rm",
            "Request method (of the CSeq for replies).",
            ro("rm", |ctx| match ctx.msg.method_bytes() {
                Some(m) => bytes_value(ctx, m),
                None => ctx
                    .msg
                    .cseq()
                    .map(|c| bytes_value(ctx, c.method_bytes()))
                    .unwrap_or_default(),
            }),
        );
        m.pv_fixed(
            "rs",
            "Reply status code.",
            ro("rs", |ctx| {
                ctx.msg
                    .status()
                    .map(|s| Value::Int(s as i64))
                    .unwrap_or_default()
            }),
        );
        m.pv_fixed(
            "rr",
            "Reply reason phrase.",
            ro("rr", |ctx| opt_bytes(ctx, ctx.msg.reason())),
        );
        m.pv_fixed(
            "si",
            "Source IP address.",
            ro("si", |ctx| ip_value(ctx.net.source.ip())),
        );
        m.pv_fixed(
            "sp",
            "Source port.",
            ro("sp", |ctx| Value::Int(ctx.net.source.port() as i64)),
        );
        m.pv_fixed(
            "Ri",
            "Local IP address the message arrived on.",
            ro("Ri", |ctx| ip_value(ctx.net.local.ip())),
        );
        m.pv_fixed(
            "Rp",
            "Local port the message arrived on.",
            ro("Rp", |ctx| Value::Int(ctx.net.local.port() as i64)),
        );
        m.pv_fixed(
            "pr",
            "Transport protocol (udp, tcp, tls, ...).",
            ro("pr", |ctx| Value::from_static(ctx.net.proto.name())),
        );
        m.pv_fixed(
            "proto",
            "Transport protocol (udp, tcp, tls, ...).",
            ro("proto", |ctx| Value::from_static(ctx.net.proto.name())),
        );
        m.pv_fixed(
            "ua",
            "User-Agent header.",
            ro("ua", |ctx| opt_bytes(ctx, ctx.msg.header("User-Agent"))),
        );
        m.pv_fixed(
            "ml",
            "Message length.",
            ro("ml", |ctx| Value::Int(ctx.msg.len() as i64)),
        );
        m.pv_fixed(
            "mb",
            "The whole message.",
            ro("mb", |ctx| Value::Str(ctx.msg.to_bytes())),
        );
        m.pv_fixed(
            "rb",
            "Message body.",
            ro("rb", |ctx| bytes_value(ctx, ctx.msg.body())),
        );
        m.pv_fixed(
            "cl",
            "Content-Length.",
            ro("cl", |ctx| opt_bytes(ctx, ctx.msg.header("Content-Length"))),
        );
        m.pv_fixed(
            "cT",
            "Content-Type.",
            ro("cT", |ctx| opt_bytes(ctx, ctx.msg.header("Content-Type"))),
        );
        m.pv_fixed(
            "ct",
            "Contact header.",
            ro("ct", |ctx| opt_bytes(ctx, ctx.msg.header("Contact"))),
        );
        m.pv_fixed(
            "rc",
            "Return code of the last function or route.",
            ro("rc", |ctx| Value::Int(ctx.rc as i64)),
        );
        m.pv_fixed(
            "retcode",
            "Return code of the last function or route.",
            ro("retcode", |ctx| Value::Int(ctx.rc as i64)),
        );
        m.pv_fixed(
            "null",
            "The null value; assigning it deletes.",
            ro("null", |_| Value::Null),
        );
        m.pv_fixed(
            "T_branch_idx",
            "Index of the current branch.",
            ro("T_branch_idx", |ctx| Value::Int(ctx.branch_idx as i64)),
        );
        m.pv_fixed(
            "mf",
            "Message flags as a bitmask (writable).",
            flags_pv(false),
        );
        m.pv_fixed(
            "bf",
            "Branch flags as a bitmask (writable).",
            flags_pv(true),
        );
        m.pv_fixed(
            "pp",
            "Process id.",
            ro("pp", |_| Value::Int(std::process::id() as i64)),
        );
        crate::pv_time::declare(m);
        crate::pv_snd::declare(m);
        m.pv_fixed(
            "mt",
            "Message type: 1 request, 2 reply.",
            ro("mt", |ctx| {
                Value::Int(if ctx.msg.is_request() { 1 } else { 2 })
            }),
        );
        m.pv_fixed(
            "au",
            "User name in the Authorization/Proxy-Authorization credentials.",
            ro("au", |ctx| credential(ctx, "username")),
        );
        m.pv_fixed(
            "ar",
            "Realm in the credentials.",
            ro("ar", |ctx| credential(ctx, "realm")),
        );
        m.pv_fixed(
            "adu",
            "Digest URI in the credentials.",
            ro("adu", |ctx| credential(ctx, "uri")),
        );
        m.pv("hdr", HdrClass);
        m.pv("hdrc", HdrCountClass);
        m.pv("var", VarClass);
        m.pv("avp", AvpClass);
        m.pv("xavp", crate::pv_xavp::XavpClass(XKind::Xavp));
        m.pv("xavu", crate::pv_xavp::XavpClass(XKind::Xavu));
        m.pv("xavi", crate::pv_xavp::XavpClass(XKind::Xavi));
        crate::pv_msg::declare(m);
    }
}
