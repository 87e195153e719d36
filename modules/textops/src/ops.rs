//! The behaviour of the `textops` functions, following Kamailio's return codes.
//!
//! One difference by design: Kamailio queues changes as "lumps" applied when the message
//! is sent, so a header added by `append_hf()` is not seen by `is_present_hf()` until
//! `msg_apply_changes()`. Here every edit applies at once and later reads see it.

use crate::raw::{reparse, RawMsg};
use crate::subst::{compile_icase, IRegex, SubstExpr};
use crate::MethodList;
use bytes::Bytes;
use ferrosip_api::services::ReplyHeaders;
use ferrosip_api::{FnError, FnResult, MsgContext, Verdict};
use ferrosip_sip::{HeaderName, Uri};
use regex::bytes::{NoExpand, Regex};

fn err(e: impl std::fmt::Display) -> FnError {
    FnError::new(e.to_string())
}

fn v(b: bool) -> FnResult {
    Ok(Verdict::from(b))
}

/// Whether a header line named `name` is the header `want` (compact forms equal long ones).
pub fn same_header(name: &[u8], want: &[u8]) -> bool {
    let a = HeaderName::from_bytes(name);
    let b = HeaderName::from_bytes(want);
    if a != b {
        return false;
    }
    a != HeaderName::Other || name.eq_ignore_ascii_case(want)
}

// ----- search -----

pub fn search(ctx: &mut MsgContext, re: IRegex) -> FnResult {
    v(re.0.is_match(&ctx.msg.to_bytes()))
}

pub fn search_body(ctx: &mut MsgContext, re: IRegex) -> FnResult {
    let body = ctx.msg.body();
    v(!body.is_empty() && re.0.is_match(body))
}

/// `search_hf(hf, re, flags)`: `f` looks at the first header only, `l` at the last,
/// anything else at all of them.
pub fn search_hf(ctx: &mut MsgContext, hf: Bytes, re: IRegex, flags: Bytes) -> FnResult {
    let values: Vec<&[u8]> = ctx
        .msg
        .headers()
        .filter(|(n, _)| same_header(n, &hf))
        .map(|(_, v)| v)
        .collect();
    let pick: Vec<&[u8]> = match flags.first() {
        Some(b'f') => values.first().copied().into_iter().collect(),
        Some(b'l') => values.last().copied().into_iter().collect(),
        _ => values,
    };
    v(pick.iter().any(|v| re.0.is_match(v)))
}

pub fn search_str(_ctx: &mut MsgContext, text: Bytes, re: Bytes) -> FnResult {
    let re = compile_icase(&String::from_utf8_lossy(&re)).map_err(FnError::new)?;
    v(re.is_match(&text))
}

// ----- search_append / replace on the message text -----

/// Which part of the message an edit works on.
#[derive(Clone, Copy)]
enum Part {
    /// The whole message, start line included (`search_append`).
    Whole,
    /// Headers and body (`replace`, `subst`).
    AfterStartLine,
    /// The header lines (`replace_hdrs`).
    Headers,
}

fn edit_text(
    ctx: &mut MsgContext,
    part: Part,
    f: impl FnOnce(&[u8]) -> Result<Option<Vec<u8>>, FnError>,
) -> FnResult {
    let raw = RawMsg::of(&ctx.msg)?;
    let range = match part {
        Part::Whole => 0..raw.bytes.len(),
        Part::AfterStartLine => raw.after_start_line(),
        Part::Headers => raw.head(),
    };
    match f(&raw.bytes[range.clone()])? {
        None => Ok(Verdict::FALSE),
        Some(new) => {
            reparse(ctx, raw.splice(range, &new))?;
            Ok(Verdict::TRUE)
        }
    }
}

fn edit_body(
    ctx: &mut MsgContext,
    f: impl FnOnce(&[u8]) -> Result<Option<Vec<u8>>, FnError>,
) -> FnResult {
    let body = ctx.msg.body_bytes();
    if body.is_empty() {
        return Ok(Verdict::FALSE);
    }
    match f(&body)? {
        None => Ok(Verdict::FALSE),
        Some(new) => {
            ctx.msg.set_body(Bytes::from(new));
            Ok(Verdict::TRUE)
        }
    }
}

fn append_after(re: &Regex, txt: &[u8], input: &[u8]) -> Option<Vec<u8>> {
    let m = re.find(input)?;
    let mut out = input[..m.end()].to_vec();
    out.extend_from_slice(txt);
    out.extend_from_slice(&input[m.end()..]);
    Some(out)
}

fn replace_re(re: &Regex, txt: &[u8], input: &[u8], all: bool) -> Option<Vec<u8>> {
    if !re.is_match(input) {
        return None;
    }
    Some(if all {
        re.replace_all(input, NoExpand(txt)).into_owned()
    } else {
        re.replace(input, NoExpand(txt)).into_owned()
    })
}

fn replace_plain(needle: &[u8], repl: &[u8], input: &[u8], all: bool) -> Option<Vec<u8>> {
    if needle.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    let mut any = false;
    while i + needle.len() <= input.len() {
        if &input[i..i + needle.len()] == needle && (all || !any) {
            out.extend_from_slice(repl);
            i += needle.len();
            any = true;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    out.extend_from_slice(&input[i..]);
    any.then_some(out)
}

fn mode_all(mode: &[u8]) -> Result<bool, FnError> {
    match mode.first() {
        Some(b'a') | Some(b'A') => Ok(true),
        Some(b'f') | Some(b'F') | None => Ok(false),
        Some(_) => Err(FnError::new(format!(
            "unknown mode \"{}\" (f: first, a: all)",
            String::from_utf8_lossy(mode)
        ))),
    }
}

pub fn search_append(ctx: &mut MsgContext, re: IRegex, txt: Bytes) -> FnResult {
    edit_text(ctx, Part::Whole, |i| Ok(append_after(&re.0, &txt, i)))
}

pub fn search_append_body(ctx: &mut MsgContext, re: IRegex, txt: Bytes) -> FnResult {
    edit_body(ctx, |i| Ok(append_after(&re.0, &txt, i)))
}

pub fn replace(ctx: &mut MsgContext, re: IRegex, txt: Bytes) -> FnResult {
    edit_text(ctx, Part::AfterStartLine, |i| {
        Ok(replace_re(&re.0, &txt, i, false))
    })
}

pub fn replace_all(ctx: &mut MsgContext, re: IRegex, txt: Bytes) -> FnResult {
    edit_text(ctx, Part::AfterStartLine, |i| {
        Ok(replace_re(&re.0, &txt, i, true))
    })
}

pub fn replace_hdrs(ctx: &mut MsgContext, re: IRegex, txt: Bytes) -> FnResult {
    edit_text(ctx, Part::Headers, |i| {
        Ok(replace_re(&re.0, &txt, i, false))
    })
}

pub fn replace_body(ctx: &mut MsgContext, re: IRegex, txt: Bytes) -> FnResult {
    edit_body(ctx, |i| Ok(replace_re(&re.0, &txt, i, false)))
}

pub fn replace_body_all(ctx: &mut MsgContext, re: IRegex, txt: Bytes) -> FnResult {
    edit_body(ctx, |i| Ok(replace_re(&re.0, &txt, i, true)))
}

/// `replace_body_atonce`: the body as one string (`^`/`$` only at its ends).
pub fn replace_body_atonce(ctx: &mut MsgContext, re: IRegex, txt: Bytes) -> FnResult {
    let whole = regex::bytes::RegexBuilder::new(&format!("(?-m:{})", re.0.as_str()))
        .case_insensitive(true)
        .build()
        .map_err(err)?;
    edit_body(ctx, |i| Ok(replace_re(&whole, &txt, i, true)))
}

pub fn replace_str(ctx: &mut MsgContext, needle: Bytes, repl: Bytes, mode: Bytes) -> FnResult {
    let all = mode_all(&mode)?;
    edit_text(ctx, Part::AfterStartLine, |i| {
        Ok(replace_plain(&needle, &repl, i, all))
    })
}

pub fn replace_hdrs_str(ctx: &mut MsgContext, needle: Bytes, repl: Bytes, mode: Bytes) -> FnResult {
    let all = mode_all(&mode)?;
    edit_text(ctx, Part::Headers, |i| {
        Ok(replace_plain(&needle, &repl, i, all))
    })
}

pub fn replace_body_str(ctx: &mut MsgContext, needle: Bytes, repl: Bytes, mode: Bytes) -> FnResult {
    let all = mode_all(&mode)?;
    edit_body(ctx, |i| Ok(replace_plain(&needle, &repl, i, all)))
}

// ----- subst -----

pub fn subst(ctx: &mut MsgContext, e: SubstExpr) -> FnResult {
    let raw = RawMsg::of(&ctx.msg)?;
    let range = raw.after_start_line();
    match e.apply(ctx, &raw.bytes[range.clone()])? {
        None => Ok(Verdict::FALSE),
        Some(new) => {
            reparse(ctx, raw.splice(range, &new))?;
            Ok(Verdict::TRUE)
        }
    }
}

pub fn subst_body(ctx: &mut MsgContext, e: SubstExpr) -> FnResult {
    let body = ctx.msg.body_bytes();
    if body.is_empty() {
        return Ok(Verdict::FALSE);
    }
    match e.apply(ctx, &body)? {
        None => Ok(Verdict::FALSE),
        Some(new) => {
            ctx.msg.set_body(Bytes::from(new));
            Ok(Verdict::TRUE)
        }
    }
}

/// `subst_uri`: on the R-URI as it stands (after earlier rewrites).
pub fn subst_uri(ctx: &mut MsgContext, e: SubstExpr) -> FnResult {
    let Some(uri) = ctx.msg.request_uri_bytes() else {
        return Err(FnError::new("subst_uri() on a reply"));
    };
    match e.apply(ctx, &uri)? {
        None => Ok(Verdict::FALSE),
        Some(new) => {
            ctx.msg.set_request_uri(&new).map_err(err)?;
            Ok(Verdict::TRUE)
        }
    }
}

/// `subst_user`: on the R-URI user part (an empty one when the URI has none); an empty
/// result removes the user part.
pub fn subst_user(ctx: &mut MsgContext, e: SubstExpr) -> FnResult {
    let Some(uri) = ctx.msg.request_uri_bytes() else {
        return Err(FnError::new("subst_user() on a reply"));
    };
    let parsed = Uri::parse(&uri).map_err(err)?;
    let user = parsed.user().unwrap_or_default();
    let Some(new_user) = e.apply(ctx, user)? else {
        return Ok(Verdict::FALSE);
    };
    let new = with_user(&uri, &parsed, &new_user);
    ctx.msg.set_request_uri(&new).map_err(err)?;
    Ok(Verdict::TRUE)
}

/// The URI with its user part replaced (keeping any password), or removed when empty.
pub fn with_user(raw: &[u8], uri: &Uri<'_>, user: &[u8]) -> Vec<u8> {
    let scheme_end = uri.scheme().len() + 1;
    let host_start = match uri.host() {
        Some(h) => h.as_ptr() as usize - raw.as_ptr() as usize,
        None => scheme_end,
    };
    // user[:password]@ sits between the scheme and the host.
    let password = match (uri.user(), uri.password()) {
        (Some(_), Some(p)) => Some(p),
        _ => None,
    };
    let mut out = raw[..scheme_end].to_vec();
    if !user.is_empty() {
        out.extend_from_slice(user);
        if let Some(p) = password {
            out.push(b':');
            out.extend_from_slice(p);
        }
        out.push(b'@');
    }
    out.extend_from_slice(&raw[host_start..]);
    out
}

/// `subst_hf(hf, subexp, flags)`: `f` the first header named hf, `l` the last, `a` all.
pub fn subst_hf(ctx: &mut MsgContext, hf: Bytes, e: SubstExpr, flags: Bytes) -> FnResult {
    let raw = RawMsg::of(&ctx.msg)?;
    let idx: Vec<usize> = raw
        .lines
        .iter()
        .enumerate()
        .filter(|(_, (n, _))| same_header(&raw.bytes[n.clone()], &hf))
        .map(|(i, _)| i)
        .collect();
    let pick: Vec<usize> = match flags.first() {
        Some(b'f') => idx.first().copied().into_iter().collect(),
        Some(b'l') => idx.last().copied().into_iter().collect(),
        _ => idx,
    };
    let mut out = Vec::with_capacity(raw.bytes.len());
    let mut pos = 0;
    let mut any = false;
    for i in pick {
        let (name, line) = raw.lines[i].clone();
        // The value: after the colon and blanks, up to the line end (CRLF kept).
        let line_b = &raw.bytes[line.clone()];
        let colon = line_b[name.end - line.start..]
            .iter()
            .position(|&c| c == b':')
            .map_or(name.end, |p| name.end + p + 1);
        let mut vs = colon;
        while vs < line.end && matches!(raw.bytes[vs], b' ' | b'\t') {
            vs += 1;
        }
        let mut ve = line.end;
        while ve > vs && matches!(raw.bytes[ve - 1], b'\r' | b'\n') {
            ve -= 1;
        }
        if let Some(new) = e.apply(ctx, &raw.bytes[vs..ve])? {
            out.extend_from_slice(&raw.bytes[pos..vs]);
            out.extend_from_slice(&new);
            pos = ve;
            any = true;
        }
    }
    if !any {
        return Ok(Verdict::FALSE);
    }
    out.extend_from_slice(&raw.bytes[pos..]);
    reparse(ctx, out)?;
    Ok(Verdict::TRUE)
}

pub fn subst_v(
    ctx: &mut MsgContext,
    text: Bytes,
    e: SubstExpr,
    out: ferrosip_api::args::PvOut,
) -> FnResult {
    match e.apply(ctx, &text)? {
        None => Ok(Verdict::FALSE),
        Some(new) => {
            out.0
                .set(ctx, ferrosip_api::SetOp::Assign, Bytes::from(new).into())?;
            Ok(Verdict::TRUE)
        }
    }
}

// ----- headers -----

/// Header text as scripts give it ("Name: value" with or without CRLF, possibly several
/// lines), ending in CRLF.
fn header_text(txt: &[u8]) -> Result<Vec<u8>, FnError> {
    if txt.trim_ascii().is_empty() {
        return Err(FnError::new("nothing to add"));
    }
    let mut t = txt.to_vec();
    if !t.ends_with(b"\n") {
        t.extend_from_slice(b"\r\n");
    }
    Ok(t)
}

/// `Name: value` when `t` is exactly one header line.
fn single_line(t: &[u8]) -> Option<(&str, &[u8])> {
    let body = t.strip_suffix(b"\r\n").or_else(|| t.strip_suffix(b"\n"))?;
    if body.iter().any(|&c| c == b'\r' || c == b'\n') {
        return None;
    }
    let colon = body.iter().position(|&c| c == b':')?;
    let name = std::str::from_utf8(body[..colon].trim_ascii()).ok()?;
    if name.is_empty()
        || name.eq_ignore_ascii_case("content-length")
        || name.eq_ignore_ascii_case("l")
    {
        return None;
    }
    Some((name, body[colon + 1..].trim_ascii()))
}

/// `append_hf(txt)`: after the last header.
pub fn append_hf(ctx: &mut MsgContext, txt: Bytes) -> FnResult {
    let t = header_text(&txt)?;
    if let Some((name, value)) = single_line(&t) {
        if ctx.msg.add_header(name, value).is_ok() {
            return Ok(Verdict::TRUE);
        }
    }
    let raw = RawMsg::of(&ctx.msg)?;
    reparse(ctx, raw.splice(raw.head_end..raw.head_end, &t))?;
    Ok(Verdict::TRUE)
}

/// `append_hf(txt, hdr)`: after the last header named hdr, else after the last header.
pub fn append_hf_after(ctx: &mut MsgContext, txt: Bytes, hdr: Bytes) -> FnResult {
    let t = header_text(&txt)?;
    let raw = RawMsg::of(&ctx.msg)?;
    let at = raw
        .lines
        .iter()
        .rev()
        .find(|(n, _)| same_header(&raw.bytes[n.clone()], &hdr))
        .map_or(raw.head_end, |(_, l)| l.end);
    reparse(ctx, raw.splice(at..at, &t))?;
    Ok(Verdict::TRUE)
}

/// `insert_hf(txt)`: before the first header.
pub fn insert_hf(ctx: &mut MsgContext, txt: Bytes) -> FnResult {
    let t = header_text(&txt)?;
    if let Some((name, value)) = single_line(&t) {
        if ctx.msg.insert_header_first(name, value).is_ok() {
            return Ok(Verdict::TRUE);
        }
    }
    let raw = RawMsg::of(&ctx.msg)?;
    let at = raw.start_line_end;
    reparse(ctx, raw.splice(at..at, &t))?;
    Ok(Verdict::TRUE)
}

/// `insert_hf(txt, hdr)`: before the first header named hdr, else before the first header.
pub fn insert_hf_before(ctx: &mut MsgContext, txt: Bytes, hdr: Bytes) -> FnResult {
    let t = header_text(&txt)?;
    let raw = RawMsg::of(&ctx.msg)?;
    let at = raw
        .lines
        .iter()
        .find(|(n, _)| same_header(&raw.bytes[n.clone()], &hdr))
        .map_or(raw.start_line_end, |(n, _)| n.start);
    reparse(ctx, raw.splice(at..at, &t))?;
    Ok(Verdict::TRUE)
}

/// `append_urihf(prefix, suffix)`: a header made of prefix, the received R-URI and suffix.
pub fn append_urihf(ctx: &mut MsgContext, prefix: Bytes, suffix: Bytes) -> FnResult {
    let uri = request_line_uri(ctx)?;
    let mut t = prefix.to_vec();
    t.extend_from_slice(&uri);
    t.extend_from_slice(&suffix);
    let raw = RawMsg::of(&ctx.msg)?;
    reparse(ctx, raw.splice(raw.head_end..raw.head_end, &t))?;
    Ok(Verdict::TRUE)
}

/// The Request-URI of the request line as received.
fn request_line_uri(ctx: &MsgContext) -> Result<Vec<u8>, FnError> {
    let first = ctx.msg.as_bytes();
    let line = first.split(|&c| c == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&c| c == b' ');
    match (parts.next(), parts.next()) {
        (Some(_), Some(uri)) if ctx.msg.is_request() => Ok(uri.to_vec()),
        _ => Err(FnError::new("not a request")),
    }
}

/// `remove_hf(name)`: 1 when at least one header went, -1 when there was none.
pub fn remove_hf(ctx: &mut MsgContext, name: Bytes) -> FnResult {
    v(ctx.msg.remove_headers_where(|n, _| same_header(n, &name)) > 0)
}

/// `remove_hf_pv(name)`: Kamailio answers 1 whether or not a header was removed.
pub fn remove_hf_pv(ctx: &mut MsgContext, name: Bytes) -> FnResult {
    ctx.msg.remove_headers_where(|n, _| same_header(n, &name));
    Ok(Verdict::TRUE)
}

/// `remove_hf_idx(name, idx)`: removes the idx-th header named name (negative counts from
/// the end); 1 when removed or when a negative index is out of range, 2 when a
/// non-negative index is beyond the last header (Kamailio's codes).
pub fn remove_hf_idx(ctx: &mut MsgContext, name: Bytes, idx: i64) -> FnResult {
    let count = ctx
        .msg
        .headers()
        .filter(|(n, _)| same_header(n, &name))
        .count() as i64;
    let pos = if idx >= 0 { idx } else { count + idx };
    if idx >= 0 && pos >= count {
        return Ok(Verdict::code(2));
    }
    if pos < 0 {
        return Ok(Verdict::TRUE);
    }
    let mut i = -1;
    ctx.msg.remove_headers_where(|n, _| {
        if same_header(n, &name) {
            i += 1;
            i == pos
        } else {
            false
        }
    });
    Ok(Verdict::TRUE)
}

pub fn remove_hf_re(ctx: &mut MsgContext, re: IRegex) -> FnResult {
    v(ctx.msg.remove_headers_where(|n, _| re.0.is_match(n)) > 0)
}

/// `remove_hf_exp(match, skip)`: names matching `match` but not `skip`.
pub fn remove_hf_exp(ctx: &mut MsgContext, m: IRegex, skip: IRegex) -> FnResult {
    v(ctx
        .msg
        .remove_headers_where(|n, _| !skip.0.is_match(n) && m.0.is_match(n))
        > 0)
}

pub fn remove_hf_re_pv(ctx: &mut MsgContext, re: Bytes) -> FnResult {
    let re = IRegex(compile_icase(&String::from_utf8_lossy(&re)).map_err(FnError::new)?);
    remove_hf_re(ctx, re)
}

pub fn remove_hf_exp_pv(ctx: &mut MsgContext, m: Bytes, skip: Bytes) -> FnResult {
    let m = IRegex(compile_icase(&String::from_utf8_lossy(&m)).map_err(FnError::new)?);
    let skip = IRegex(compile_icase(&String::from_utf8_lossy(&skip)).map_err(FnError::new)?);
    remove_hf_exp(ctx, m, skip)
}

pub fn is_present_hf(ctx: &mut MsgContext, name: Bytes) -> FnResult {
    v(!name.is_empty() && ctx.msg.headers().any(|(n, _)| same_header(n, &name)))
}

pub fn is_present_hf_re(ctx: &mut MsgContext, re: IRegex) -> FnResult {
    v(ctx.msg.headers().any(|(n, _)| re.0.is_match(n)))
}

pub fn is_present_hf_re_pv(ctx: &mut MsgContext, re: Bytes) -> FnResult {
    let re = IRegex(compile_icase(&String::from_utf8_lossy(&re)).map_err(FnError::new)?);
    is_present_hf_re(ctx, re)
}

/// `append_to_reply(txt)`: queued for the next reply this server generates.
pub fn append_to_reply(ctx: &mut MsgContext, txt: Bytes) -> FnResult {
    let t = header_text(&txt)?;
    ctx.ext
        .get_or_insert_with(ReplyHeaders::default)
        .0
        .extend_from_slice(&t);
    Ok(Verdict::TRUE)
}

// ----- body -----

/// `set_body(txt, content_type)`: new body, Content-Type and Content-Length.
pub fn set_body(ctx: &mut MsgContext, txt: Bytes, ctype: Bytes) -> FnResult {
    if txt.is_empty() {
        return Err(FnError::new("empty body"));
    }
    if !ctype.is_empty() {
        ctx.msg.set_header("Content-Type", &ctype).map_err(err)?;
    }
    ctx.msg.set_body(txt);
    Ok(Verdict::TRUE)
}

pub fn set_body_hex(ctx: &mut MsgContext, htxt: Bytes, ctype: Bytes) -> FnResult {
    let body = unhex(&htxt).ok_or_else(|| FnError::new("body is not valid hex"))?;
    set_body(ctx, Bytes::from(body), ctype)
}

fn unhex(s: &[u8]) -> Option<Vec<u8>> {
    let s: Vec<u8> = s
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.chunks(2)
        .map(|p| {
            let h = (p[0] as char).to_digit(16)?;
            let l = (p[1] as char).to_digit(16)?;
            Some((h * 16 + l) as u8)
        })
        .collect()
}

/// `has_body()`: Content-Length present and above 0.
pub fn has_body(ctx: &mut MsgContext) -> FnResult {
    v(ctx.msg.content_length().is_some_and(|n| n > 0))
}

/// `has_body(mime)`: and its type is `mime` (no Content-Type counts as application/sdp).
pub fn has_body_type(ctx: &mut MsgContext, mime: Bytes) -> FnResult {
    if ctx.msg.content_length().is_none_or(|n| n == 0) {
        return Ok(Verdict::FALSE);
    }
    let ct = ctx.msg.content_type().unwrap_or(b"application/sdp");
    let ct = ct.split(|&c| c == b';').next().unwrap_or_default();
    let ct: Vec<u8> = ct
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    v(ct.eq_ignore_ascii_case(mime.trim_ascii()))
}

// ----- methods and strings -----

/// `is_method(list)`: the request method, or the CSeq method of a reply.
pub fn is_method(ctx: &mut MsgContext, list: MethodList) -> FnResult {
    if let Some(m) = ctx.msg.method_bytes() {
        return v(list.contains(m));
    }
    match ctx.msg.cseq() {
        Ok(c) => v(list.contains(c.method_bytes())),
        Err(_) => Ok(Verdict::FALSE),
    }
}

/// `is_privacy(type)`: the Privacy header lists the value (`;`-separated, any case).
pub fn is_privacy(ctx: &mut MsgContext, ty: Bytes) -> FnResult {
    const KNOWN: [&[u8]; 6] = [b"header", b"session", b"user", b"none", b"id", b"critical"];
    let ty = ty.trim_ascii();
    if !KNOWN.iter().any(|k| k.eq_ignore_ascii_case(ty)) {
        return Err(FnError::new(format!(
            "unknown privacy type \"{}\"",
            String::from_utf8_lossy(ty)
        )));
    }
    v(ctx
        .msg
        .headers_named("Privacy")
        .flat_map(|h| h.split(|&c| c == b';'))
        .any(|p| p.trim_ascii().eq_ignore_ascii_case(ty)))
}

fn list_items<'a>(list: &'a [u8], sep: &[u8]) -> Result<impl Iterator<Item = &'a [u8]>, FnError> {
    let &[sep] = sep else {
        return Err(FnError::new("the separator must be one character"));
    };
    Ok(list.split(move |&c| c == sep))
}

pub fn in_list(_ctx: &mut MsgContext, subject: Bytes, list: Bytes, sep: Bytes) -> FnResult {
    let mut items = list_items(&list, &sep)?;
    v(items.any(|i| i.trim_ascii() == &subject[..]))
}

pub fn in_list_prefix(_ctx: &mut MsgContext, subject: Bytes, list: Bytes, sep: Bytes) -> FnResult {
    let mut items = list_items(&list, &sep)?;
    v(items.any(|i| {
        let i = i.trim_ascii();
        !i.is_empty() && subject.starts_with(i)
    }))
}

fn ordering_code(o: std::cmp::Ordering) -> FnResult {
    Ok(Verdict::code(match o {
        std::cmp::Ordering::Equal => 1,
        std::cmp::Ordering::Greater => -1,
        std::cmp::Ordering::Less => -2,
    }))
}

/// `cmp_str`: 1 equal, -1 when str1 sorts after str2, -2 before.
pub fn cmp_str(_ctx: &mut MsgContext, a: Bytes, b: Bytes) -> FnResult {
    ordering_code(a.cmp(&b))
}

pub fn cmp_istr(_ctx: &mut MsgContext, a: Bytes, b: Bytes) -> FnResult {
    ordering_code(a.to_ascii_lowercase().cmp(&b.to_ascii_lowercase()))
}

pub fn starts_with(_ctx: &mut MsgContext, s: Bytes, prefix: Bytes) -> FnResult {
    if s.len() < prefix.len() {
        return Ok(Verdict::FALSE);
    }
    ordering_code(s[..prefix.len()].cmp(&prefix[..]))
}

pub fn ends_with(_ctx: &mut MsgContext, s: Bytes, suffix: Bytes) -> FnResult {
    if s.len() < suffix.len() {
        return Ok(Verdict::FALSE);
    }
    ordering_code(s[s.len() - suffix.len()..].cmp(&suffix[..]))
}

fn find(hay: &[u8], needle: &[u8], icase: bool) -> FnResult {
    if needle.len() > hay.len() || needle.is_empty() {
        return Ok(Verdict::FALSE);
    }
    let pos = hay.windows(needle.len()).position(|w| {
        if icase {
            w.eq_ignore_ascii_case(needle)
        } else {
            w == needle
        }
    });
    Ok(pos.map_or(Verdict::FALSE, |p| Verdict::code(p as i32 + 1)))
}

pub fn str_find(_ctx: &mut MsgContext, s: Bytes, needle: Bytes) -> FnResult {
    find(&s, &needle, false)
}

pub fn str_ifind(_ctx: &mut MsgContext, s: Bytes, needle: Bytes) -> FnResult {
    find(&s, &needle, true)
}

/// `str_any_in(txt, clist)`: a character of clist occurs in txt.
pub fn str_any_in(_ctx: &mut MsgContext, txt: Bytes, clist: Bytes) -> FnResult {
    v(!txt.is_empty() && !clist.is_empty() && txt.iter().any(|c| clist.contains(c)))
}

/// `str_all_in(txt, clist)`: every character of clist occurs in txt (Kamailio's check).
pub fn str_all_in(_ctx: &mut MsgContext, txt: Bytes, clist: Bytes) -> FnResult {
    v(!txt.is_empty() && !clist.is_empty() && clist.iter().all(|c| txt.contains(c)))
}
