//! The behaviour of the `siputils` functions that need only the message, with Kamailio's
//! return codes.

use bytes::Bytes;
use ferrosip_api::{FnError, FnResult, MsgContext, Verdict};
use ferrosip_sip::Uri;
use std::net::IpAddr;

fn v(b: bool) -> FnResult {
    Ok(Verdict::from(b))
}

fn err(e: impl std::fmt::Display) -> FnError {
    FnError::new(e.to_string())
}

/// `has_totag()`: the To header has a non-empty tag.
pub fn has_totag(ctx: &mut MsgContext) -> FnResult {
    v(ctx.msg.to_tag().is_some_and(|t| !t.is_empty()))
}

pub fn is_request(ctx: &mut MsgContext) -> FnResult {
    v(ctx.msg.is_request())
}

pub fn is_reply(ctx: &mut MsgContext) -> FnResult {
    v(!ctx.msg.is_request())
}

/// `is_sip()`: Ferrosip only parses SIP messages, so always true.
pub fn is_sip(_ctx: &mut MsgContext) -> FnResult {
    Ok(Verdict::TRUE)
}

fn ruri(ctx: &MsgContext) -> Result<Bytes, FnError> {
    ctx.msg
        .request_uri_bytes()
        .ok_or_else(|| FnError::new("not a request: no Request-URI"))
}

/// `uri_param(name)`: the R-URI has the parameter (with or without a value).
pub fn uri_param(ctx: &mut MsgContext, name: Bytes) -> FnResult {
    let uri = ruri(ctx)?;
    let u = Uri::parse(&uri).map_err(err)?;
    let name = String::from_utf8_lossy(&name);
    v(u.param(&name).is_some())
}

/// `uri_param(name, value)`: the R-URI has the parameter with this value.
pub fn uri_param_value(ctx: &mut MsgContext, name: Bytes, value: Bytes) -> FnResult {
    let uri = ruri(ctx)?;
    let u = Uri::parse(&uri).map_err(err)?;
    let name = String::from_utf8_lossy(&name);
    v(u.param(&name).flatten() == Some(&value[..]))
}

/// `add_uri_param(param)`: appends `;param` to the R-URI (before any `?headers`); an
/// empty param is a no-op returning 1.
pub fn add_uri_param(ctx: &mut MsgContext, param: Bytes) -> FnResult {
    if param.is_empty() {
        return Ok(Verdict::TRUE);
    }
    let uri = ruri(ctx)?;
    let u = Uri::parse(&uri).map_err(err)?;
    let at = match u.headers_raw() {
        // The `?` sits just before the headers.
        Some(h) => (h.as_ptr() as usize - uri.as_ptr() as usize).saturating_sub(1),
        None => uri.len(),
    };
    let mut new = uri[..at].to_vec();
    new.push(b';');
    new.extend_from_slice(&param);
    new.extend_from_slice(&uri[at..]);
    ctx.msg.set_request_uri(&new).map_err(err)?;
    Ok(Verdict::TRUE)
}

/// `is_uri(uri)`: the text parses as a URI.
pub fn is_uri(_ctx: &mut MsgContext, uri: Bytes) -> FnResult {
    v(!uri.is_empty() && Uri::parse(&uri).is_ok())
}

/// Kamailio's E.164 check: `+` then digits, 3..=`max_len` characters in all.
pub fn e164(user: &[u8], max_len: usize) -> bool {
    user.len() > 2
        && user.len() <= max_len
        && user[0] == b'+'
        && user[1..].iter().all(u8::is_ascii_digit)
}

/// `is_uri_user_e164(uri)`: the user part (between the scheme's `:` and `@`) is E.164;
/// -1 when not, or when there is no user part.
pub fn uri_user_e164(uri: &[u8], max_len: usize) -> bool {
    let Some(colon) = uri.iter().position(|&c| c == b':') else {
        return false;
    };
    let rest = &uri[colon + 1..];
    match rest.iter().position(|&c| c == b'@') {
        Some(at) => e164(&rest[..at], max_len),
        None => false,
    }
}

/// `is_tel_number(tval)`: digits, optionally after `+` and a non-zero digit; -2 otherwise.
pub fn is_tel_number(_ctx: &mut MsgContext, t: Bytes) -> FnResult {
    let digits = match t.first() {
        None => return Ok(Verdict::code(-2)),
        Some(b'+') => match t.get(1) {
            Some(b'1'..=b'9') => &t[2..],
            _ => return Ok(Verdict::code(-2)),
        },
        Some(_) => &t[..],
    };
    Ok(if digits.iter().all(u8::is_ascii_digit) {
        Verdict::TRUE
    } else {
        Verdict::code(-2)
    })
}

/// `is_numeric(tval)`: only digits; -2 otherwise (also when empty).
pub fn is_numeric(_ctx: &mut MsgContext, t: Bytes) -> FnResult {
    Ok(if !t.is_empty() && t.iter().all(u8::is_ascii_digit) {
        Verdict::TRUE
    } else {
        Verdict::code(-2)
    })
}

/// `is_alphanum(tval)`: only ASCII letters and digits; -2 when empty, -3 otherwise.
pub fn is_alphanum(ctx: &mut MsgContext, t: Bytes) -> FnResult {
    is_alphanumex(ctx, t, Bytes::new())
}

/// `is_alphanumex(tval, eset)`: letters, digits and the characters of eset; -2 when
/// empty, -3 otherwise.
pub fn is_alphanumex(_ctx: &mut MsgContext, t: Bytes, eset: Bytes) -> FnResult {
    if t.is_empty() {
        return Ok(Verdict::code(-2));
    }
    Ok(
        if t.iter()
            .all(|c| c.is_ascii_alphanumeric() || eset.contains(c))
        {
            Verdict::TRUE
        } else {
            Verdict::code(-3)
        },
    )
}

/// `is_first_hop([mode])`: a request is at its first hop when it has one Via; a reply
/// when it has no Record-Route, or its top Record-Route is this server (mode 0: given as
/// an IP address, and the reply did not come from that address, i.e. no loop).
pub fn is_first_hop(ctx: &mut MsgContext, mode: i64) -> FnResult {
    if ctx.msg.is_request() {
        let second = ctx.msg.vias().nth(1);
        return v(!matches!(second, Some(Ok(_))));
    }
    let top = match ctx.msg.record_routes().next() {
        None => return Ok(Verdict::TRUE),
        Some(Err(_)) => return Ok(Verdict::FALSE),
        Some(Ok(na)) => na,
    };
    let uri = top.uri();
    let host = uri.host().unwrap_or_default();
    let port = uri.port();
    let ip: Option<IpAddr> = std::str::from_utf8(host)
        .ok()
        .and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse().ok());
    if mode == 0 && ip.is_none() {
        return Ok(Verdict::FALSE);
    }
    let host = host.to_vec();
    let services = ctx.services("is_first_hop")?;
    if !services.is_myself(&host, port) {
        return Ok(Verdict::FALSE);
    }
    if mode == 0 {
        let src = ctx.net.source;
        if ip == Some(src.ip()) && src.port() == port.unwrap_or(5060) {
            return Ok(Verdict::FALSE);
        }
    }
    Ok(Verdict::TRUE)
}
