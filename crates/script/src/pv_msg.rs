//! Message-level PVs: the `$msg(attr)` family (parts of the message as received), the
//! source URI (`$su`, `$sut`), the updated buffer (`$mbu`), identity headers (`$ai`,
//! `$pu $pU $pd $pn`), and `$sel(...)` selects, parsed once at load.

use ferrosip_api::pv::{Binder, FnPv, PvClass, PvParamRule};
use ferrosip_api::sip::{CommaList, NameAddr, Uri, Via};
use ferrosip_api::{ModuleBuilder, MsgContext, Proto, Pv, PvError, PvIndex, Value};
use std::net::IpAddr;
use std::sync::Arc;

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if first.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if last.is_ascii_whitespace() {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Where the first line and the header block end in a received message.
struct Layout {
    /// Length of the first line with its line end.
    fline: usize,
    /// Start of the body (just after the empty line); the buffer's length without one.
    body: usize,
}

fn layout(buf: &[u8]) -> Layout {
    let fline = buf
        .iter()
        .position(|&b| b == b'\n')
        .map_or(buf.len(), |i| i + 1);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let body = match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b).unwrap_or(buf.len()),
    };
    Layout {
        fline: fline.min(body),
        body,
    }
}

/// The attributes of `$msg(...)`, as Kamailio's pv module names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MsgAttr {
    Len,
    Buf,
    Body,
    BodyLen,
    Hdrs,
    HdrsLen,
    Hdrc,
    Fline,
    Fpart,
    Lpart,
}

const MSG_ATTRS: &[(&str, MsgAttr)] = &[
    ("len", MsgAttr::Len),
    ("buf", MsgAttr::Buf),
    ("body", MsgAttr::Body),
    ("body_len", MsgAttr::BodyLen),
    ("hdrs", MsgAttr::Hdrs),
    ("hdrs_len", MsgAttr::HdrsLen),
    ("hdrc", MsgAttr::Hdrc),
    ("fline", MsgAttr::Fline),
    ("fpart", MsgAttr::Fpart),
    ("lpart", MsgAttr::Lpart),
];

fn msg_attr(ctx: &MsgContext, attr: MsgAttr) -> Value {
    // Kamailio reads the buffer as received: edits made by the script are not in it.
    let buf = ctx.msg.as_bytes();
    let l = layout(buf);
    let share = |s: &[u8]| Value::Str(ctx.msg.bytes_of(s));
    let hdrs = || trim(&buf[l.fline..l.body]);
    match attr {
        MsgAttr::Len => Value::Int(buf.len() as i64),
        MsgAttr::Buf => share(buf),
        MsgAttr::Body => share(&buf[l.body..]),
        MsgAttr::BodyLen => Value::Int((buf.len() - l.body) as i64),
        MsgAttr::Hdrs => share(hdrs()),
        MsgAttr::HdrsLen => Value::Int(hdrs().len() as i64),
        MsgAttr::Hdrc => Value::Int(ctx.msg.header_count() as i64),
        MsgAttr::Fline => share(trim(&buf[..l.fline])),
        MsgAttr::Fpart => share(trim(&buf[..l.body])),
        MsgAttr::Lpart => share(&buf[l.fline..]),
    }
}

struct MsgClass;

impl PvClass for MsgClass {
    fn param_rule(&self) -> PvParamRule {
        PvParamRule::Required
    }

    fn bind(&self, param: Option<&str>, _b: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
        let p = param.unwrap_or("").trim();
        let Some(&(_, attr)) = MSG_ATTRS.iter().find(|(n, _)| *n == p) else {
            let names: Vec<&str> = MSG_ATTRS.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "unknown attribute '{p}' (one of: {})",
                names.join(", ")
            ));
        };
        Ok(Arc::new(FnPv::<_> {
            name: "msg",
            get: move |ctx: &MsgContext| msg_attr(ctx, attr),
            set: None,
        }))
    }

    fn doc(&self) -> &str {
        "The message as received: $msg(len|buf|body|body_len|hdrs|hdrs_len|hdrc|fline|fpart|lpart)."
    }
}

/// `sip:ip:port[;transport=proto]`, Kamailio's source URI; UDP is written only when
/// `always_transport` (`$sut`).
fn source_uri(ctx: &MsgContext, always_transport: bool) -> Value {
    let src = ctx.net.source;
    let host = match src.ip() {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let mut s = format!("sip:{host}:{}", src.port());
    if always_transport || ctx.net.proto != Proto::Udp {
        s.push_str(";transport=");
        s.push_str(ctx.net.proto.name());
    }
    Value::from_string(s)
}

/// The first name-addr of the first header `name` (PAI and PPI may list several).
fn first_name_addr<'m>(ctx: &'m MsgContext, name: &str) -> Option<NameAddr<'m>> {
    let h = ctx.msg.header(name)?;
    let first = CommaList::new(h).next()?;
    NameAddr::parse(first).ok()
}

#[derive(Clone, Copy)]
enum IdPart {
    Uri,
    User,
    Host,
    Display,
}

fn identity(ctx: &MsgContext, header: &str, part: IdPart) -> Value {
    let Some(na) = first_name_addr(ctx, header) else {
        return Value::Null;
    };
    let share = |b: &[u8]| Value::Str(ctx.msg.bytes_of(b));
    match part {
        IdPart::Uri => share(na.uri_bytes()),
        IdPart::User => na.uri().user().map(share).unwrap_or_default(),
        IdPart::Host => na.uri().host().map(share).unwrap_or_default(),
        IdPart::Display => na.display_name().map(share).unwrap_or_default(),
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

/// Registers the PVs of this file on the core `pv` module.
pub(crate) fn declare(m: &mut ModuleBuilder<'_>) {
    m.pv("msg", MsgClass);
    m.pv_fixed(
        "su",
        "Source address as a SIP URI: sip:ip:port, with ;transport= unless UDP.",
        ro("su", |ctx| source_uri(ctx, false)),
    );
    m.pv_fixed(
        "sut",
        "Source address as a SIP URI, always with ;transport=.",
        ro("sut", |ctx| source_uri(ctx, true)),
    );
    m.pv_fixed(
        "mbu",
        "The whole message with the script's changes applied so far.",
        ro("mbu", |ctx| Value::Str(ctx.msg.to_bytes())),
    );
    let ids: [(&'static str, &'static str, &'static str, IdPart); 5] = [
        (
            "ai",
            "P-Asserted-Identity",
            "URI in the (first) P-Asserted-Identity header.",
            IdPart::Uri,
        ),
        (
            "pu",
            "P-Preferred-Identity",
            "URI in the P-Preferred-Identity header.",
            IdPart::Uri,
        ),
        (
            "pU",
            "P-Preferred-Identity",
            "User of the P-Preferred-Identity URI.",
            IdPart::User,
        ),
        (
            "pd",
            "P-Preferred-Identity",
            "Host of the P-Preferred-Identity URI.",
            IdPart::Host,
        ),
        (
            "pn",
            "P-Preferred-Identity",
            "Display name in the P-Preferred-Identity header.",
            IdPart::Display,
        ),
    ];
    for (name, header, doc, part) in ids {
        m.pv_fixed(name, doc, ro(name, move |ctx| identity(ctx, header, part)));
    }
    m.pv("sel", SelClass);
}

// ----- $sel -----

/// A part of a URI a select reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UriSel {
    Whole,
    User,
    Host,
    Port,
    Params,
    Transport,
}

/// Which header (and which of several) a select starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NaHeader {
    From,
    To,
    /// Contact number n (0-based over all Contact headers).
    Contact(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NaSel {
    Whole,
    Uri(UriSel),
    Tag,
    Name,
    Params,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ViaSel {
    Whole,
    Host,
    Port,
    Transport,
    Branch,
    Received,
    Rport,
    Params,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Select {
    Ruri(UriSel),
    NameAddr(NaHeader, NaSel),
    /// Via number n (0-based over every Via value).
    Via(usize, ViaSel),
    CseqMethod,
    CseqNum,
    Cseq,
    CallId,
    Cfg(String),
}

/// One `name` or `name[n]` of a select path.
struct Seg<'a> {
    name: &'a str,
    idx: Option<usize>,
}

fn segments(path: &str) -> Result<Vec<Seg<'_>>, String> {
    let mut out = Vec::new();
    for raw in path.split('.') {
        let (name, idx) = match raw.split_once('[') {
            Some((n, rest)) => {
                let inner = rest
                    .strip_suffix(']')
                    .ok_or_else(|| format!("unterminated index in '{raw}'"))?;
                let i: usize = inner
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad index '{inner}' in '{raw}'"))?;
                (n, Some(i))
            }
            None => (raw, None),
        };
        if name.is_empty() {
            return Err(format!("empty part in select '{path}'"));
        }
        out.push(Seg { name, idx });
    }
    Ok(out)
}

fn no_index(s: &Seg<'_>) -> Result<(), String> {
    match s.idx {
        Some(_) => Err(format!("'{}' takes no index", s.name)),
        None => Ok(()),
    }
}

fn uri_sel(rest: &[Seg<'_>]) -> Result<UriSel, String> {
    let Some(s) = rest.first() else {
        return Ok(UriSel::Whole);
    };
    no_index(s)?;
    if rest.len() > 1 {
        return Err(format!("nothing is selectable below '{}'", s.name));
    }
    Ok(match s.name {
        "user" | "username" => UriSel::User,
        "host" | "hostname" => UriSel::Host,
        "port" => UriSel::Port,
        "params" => UriSel::Params,
        "transport" => UriSel::Transport,
        other => {
            return Err(format!(
                "unknown URI part '{other}' (user, host, port, params, transport)"
            ))
        }
    })
}

fn na_sel(rest: &[Seg<'_>]) -> Result<NaSel, String> {
    let Some(s) = rest.first() else {
        return Ok(NaSel::Whole);
    };
    no_index(s)?;
    let leaf = |v: NaSel| {
        if rest.len() > 1 {
            Err(format!("nothing is selectable below '{}'", s.name))
        } else {
            Ok(v)
        }
    };
    match s.name {
        "uri" => Ok(NaSel::Uri(uri_sel(&rest[1..])?)),
        "tag" => leaf(NaSel::Tag),
        "name" => leaf(NaSel::Name),
        "params" => leaf(NaSel::Params),
        other => Err(format!("unknown part '{other}' (uri, tag, name, params)")),
    }
}

fn via_sel(rest: &[Seg<'_>]) -> Result<ViaSel, String> {
    let Some(s) = rest.first() else {
        return Ok(ViaSel::Whole);
    };
    no_index(s)?;
    if rest.len() > 1 {
        return Err(format!("nothing is selectable below '{}'", s.name));
    }
    Ok(match s.name {
        "host" => ViaSel::Host,
        "port" => ViaSel::Port,
        "transport" => ViaSel::Transport,
        "branch" => ViaSel::Branch,
        "received" => ViaSel::Received,
        "rport" => ViaSel::Rport,
        "params" => ViaSel::Params,
        other => {
            return Err(format!(
            "unknown Via part '{other}' (host, port, transport, branch, received, rport, params)"
        ))
        }
    })
}

/// Kamailio numbers repeated headers from 1 (`via[1]` is the top Via).
fn one_based(s: &Seg<'_>) -> Result<usize, String> {
    match s.idx {
        None => Ok(0),
        Some(0) => Err(format!("'{}[0]': selects count from 1", s.name)),
        Some(n) => Ok(n - 1),
    }
}

fn parse_select(text: &str) -> Result<Select, String> {
    let text = text.trim().trim_start_matches('@');
    if let Some(name) = text.strip_prefix("cfg_get.") {
        return Ok(Select::Cfg(name.to_string()));
    }
    let segs = segments(text)?;
    let head = &segs[0];
    let rest = &segs[1..];
    let leaf = |v: Select| {
        no_index(head)?;
        if rest.is_empty() {
            Ok(v)
        } else {
            Err(format!("nothing is selectable below '{}'", head.name))
        }
    };
    match head.name {
        "ruri" | "request_uri" => {
            no_index(head)?;
            Ok(Select::Ruri(uri_sel(rest)?))
        }
        "from" | "f" => {
            no_index(head)?;
            Ok(Select::NameAddr(NaHeader::From, na_sel(rest)?))
        }
        "to" | "t" => {
            no_index(head)?;
            Ok(Select::NameAddr(NaHeader::To, na_sel(rest)?))
        }
        "contact" | "m" => Ok(Select::NameAddr(
            NaHeader::Contact(one_based(head)?),
            na_sel(rest)?,
        )),
        "via" | "v" => Ok(Select::Via(one_based(head)?, via_sel(rest)?)),
        "cseq" => {
            no_index(head)?;
            match rest {
                [] => Ok(Select::Cseq),
                [s] if s.name == "method" && s.idx.is_none() => Ok(Select::CseqMethod),
                [s] if s.name == "num" && s.idx.is_none() => Ok(Select::CseqNum),
                _ => Err("cseq selects are cseq, cseq.method and cseq.num".into()),
            }
        }
        "call_id" | "callid" | "i" => leaf(Select::CallId),
        other => Err(format!(
            "unknown select '{other}' (ruri, from, to, contact, via, cseq, call_id, cfg_get)"
        )),
    }
}

fn uri_value(ctx: &MsgContext, uri: &[u8], sel: UriSel) -> Value {
    let share = |b: &[u8]| Value::Str(ctx.msg.bytes_of(b));
    if sel == UriSel::Whole {
        return share(uri);
    }
    let Ok(u) = Uri::parse(uri) else {
        return Value::Null;
    };
    match sel {
        UriSel::Whole => unreachable!("handled above"),
        UriSel::User => u.user().map(share).unwrap_or_default(),
        UriSel::Host => u.host().map(share).unwrap_or_default(),
        UriSel::Port => u.port().map(|p| Value::Int(p as i64)).unwrap_or_default(),
        UriSel::Params => u.params_raw().map(share).unwrap_or_default(),
        UriSel::Transport => u
            .param("transport")
            .flatten()
            .map(share)
            .unwrap_or_default(),
    }
}

fn na_value(ctx: &MsgContext, na: &NameAddr<'_>, sel: NaSel) -> Value {
    let share = |b: &[u8]| Value::Str(ctx.msg.bytes_of(b));
    match sel {
        NaSel::Whole => share(na.as_bytes()),
        NaSel::Uri(u) => uri_value(ctx, na.uri_bytes(), u),
        NaSel::Tag => na.tag().map(share).unwrap_or_default(),
        NaSel::Name => na.display_name().map(share).unwrap_or_default(),
        NaSel::Params => na.params_raw().map(share).unwrap_or_default(),
    }
}

fn via_value(ctx: &MsgContext, via: &Via<'_>, sel: ViaSel) -> Value {
    let share = |b: &[u8]| Value::Str(ctx.msg.bytes_of(b));
    match sel {
        ViaSel::Whole => share(via.as_bytes()),
        ViaSel::Host => share(via.host()),
        ViaSel::Port => via.port().map(|p| Value::Int(p as i64)).unwrap_or_default(),
        ViaSel::Transport => share(via.transport()),
        ViaSel::Branch => via.branch().map(share).unwrap_or_default(),
        ViaSel::Received => via.received().map(share).unwrap_or_default(),
        ViaSel::Rport => match via.rport() {
            Some(Some(p)) => Value::Int(p as i64),
            _ => Value::Null,
        },
        ViaSel::Params => via.params_raw().map(share).unwrap_or_default(),
    }
}

fn select_value(ctx: &MsgContext, sel: &Select) -> Value {
    let msg = &ctx.msg;
    match sel {
        Select::Ruri(u) => match msg.request_uri() {
            Some(uri) => uri_value(ctx, uri, *u),
            None => Value::Null,
        },
        Select::NameAddr(h, s) => {
            let na = match h {
                NaHeader::From => msg.from().ok(),
                NaHeader::To => msg.to().ok(),
                NaHeader::Contact(n) => msg.contacts().nth(*n).and_then(Result::ok),
            };
            na.map(|na| na_value(ctx, &na, *s)).unwrap_or_default()
        }
        Select::Via(n, s) => match msg.vias().nth(*n) {
            Some(Ok(via)) => via_value(ctx, &via, *s),
            _ => Value::Null,
        },
        Select::CseqMethod => msg
            .cseq()
            .map(|c| Value::Str(msg.bytes_of(c.method_bytes())))
            .unwrap_or_default(),
        Select::CseqNum => msg
            .cseq()
            .map(|c| Value::Int(c.seq as i64))
            .unwrap_or_default(),
        Select::Cseq => msg
            .header("CSeq")
            .map(|b| Value::Str(msg.bytes_of(b)))
            .unwrap_or_default(),
        Select::CallId => msg
            .call_id()
            .map(|b| Value::Str(msg.bytes_of(b)))
            .unwrap_or_default(),
        Select::Cfg(_) => Value::Null,
    }
}

struct SelPv(Select);

impl Pv for SelPv {
    fn get(&self, ctx: &MsgContext, _i: PvIndex) -> Result<Value, PvError> {
        Ok(select_value(ctx, &self.0))
    }
}

/// `$sel(...)`: Kamailio's select expressions (`via[1].branch`, `from.uri.user`,
/// `cfg_get.group.name`...), parsed at load so an unknown one fails `check`.
struct SelClass;

impl PvClass for SelClass {
    fn param_rule(&self) -> PvParamRule {
        PvParamRule::Required
    }

    fn bind(&self, param: Option<&str>, binder: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
        let sel = parse_select(param.unwrap_or(""))?;
        let Select::Cfg(name) = sel else {
            return Ok(Arc::new(SelPv(sel)));
        };
        let store = binder.registry.cfg_vars();
        let known = store.read().map(|m| m.contains_key(&name)).unwrap_or(false);
        if !known {
            return Err(format!(
                "no config variable {name} (declare it as `{name} = value desc \"...\"`)"
            ));
        }
        Ok(Arc::new(FnPv::<_> {
            name: "sel",
            get: move |_ctx: &MsgContext| {
                store
                    .read()
                    .ok()
                    .and_then(|m| m.get(&name).cloned())
                    .unwrap_or_default()
            },
            set: None,
        }))
    }

    fn doc(&self) -> &str {
        "Select expressions: ruri[.user|.host|.port|.params|.transport], from/to[.uri[.user|.host|...]|.tag|.name|.params], contact[n].…, via[n][.host|.port|.transport|.branch|.received|.rport|.params], cseq[.method|.num], call_id, cfg_get.group.name."
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_parse_at_load() {
        assert_eq!(
            parse_select("via[1].branch"),
            Ok(Select::Via(0, ViaSel::Branch))
        );
        assert_eq!(
            parse_select("@to.uri.user"),
            Ok(Select::NameAddr(NaHeader::To, NaSel::Uri(UriSel::User)))
        );
        assert_eq!(
            parse_select("contact[2].uri.host"),
            Ok(Select::NameAddr(
                NaHeader::Contact(1),
                NaSel::Uri(UriSel::Host)
            ))
        );
        assert_eq!(parse_select("cseq.method"), Ok(Select::CseqMethod));
        assert!(parse_select("via[0].host").is_err());
        assert!(parse_select("from.uri.user.x").is_err());
        assert!(parse_select("nosuch")
            .unwrap_err()
            .contains("unknown select"));
        assert!(parse_select("ruri.usr")
            .unwrap_err()
            .contains("unknown URI part"));
    }

    #[test]
    fn layout_of_a_message() {
        let m = b"OPTIONS sip:a SIP/2.0\r\nVia: x\r\nTo: y\r\n\r\nbody";
        let l = layout(m);
        assert_eq!(&m[..l.fline], b"OPTIONS sip:a SIP/2.0\r\n");
        assert_eq!(&m[l.body..], b"body");
        assert_eq!(trim(&m[l.fline..l.body]), b"Via: x\r\nTo: y");
    }
}
