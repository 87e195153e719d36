//! R-URI rewriting actions (`rewrite*`/`set*`, `prefix`, `strip`, `revert_uri`) and the
//! per-message forwarding flags (`force_rport`, `set_forward_close`, ...).

use bytes::Bytes;
use ferrosip_api::{FnError, FnResult, ForwardFlags, MsgContext, Verdict};
use ferrosip_sip::Uri;

fn err(e: impl std::fmt::Display) -> FnError {
    FnError::new(e.to_string())
}

/// A URI split into the pieces the rewrite actions replace.
#[derive(Debug, PartialEq, Eq)]
pub struct UriParts {
    /// `sip:`, `sips:` ...
    pub scheme: Vec<u8>,
    /// `user[:password]`, without the `@`.
    pub userinfo: Option<Vec<u8>>,
    pub host: Vec<u8>,
    pub port: Option<Vec<u8>>,
    /// `;params?headers`, as they were.
    pub rest: Vec<u8>,
}

impl UriParts {
    pub fn split(raw: &[u8]) -> Result<UriParts, FnError> {
        let u = Uri::parse(raw).map_err(err)?;
        let host = u
            .host()
            .ok_or_else(|| FnError::new("the R-URI has no host part"))?;
        let off = |s: &[u8]| s.as_ptr() as usize - raw.as_ptr() as usize;
        let scheme_end = u.scheme().len() + 1;
        let host_start = off(host);
        let host_end = host_start + host.len();
        let userinfo = (host_start > scheme_end).then(|| raw[scheme_end..host_start - 1].to_vec());
        let (port, rest_start) = if raw.get(host_end) == Some(&b':') {
            let p_end = raw[host_end + 1..]
                .iter()
                .position(|c| !c.is_ascii_digit())
                .map_or(raw.len(), |p| host_end + 1 + p);
            (Some(raw[host_end + 1..p_end].to_vec()), p_end)
        } else {
            (None, host_end)
        };
        Ok(UriParts {
            scheme: raw[..scheme_end].to_vec(),
            userinfo,
            host: host.to_vec(),
            port,
            rest: raw[rest_start..].to_vec(),
        })
    }

    pub fn user(&self) -> &[u8] {
        match &self.userinfo {
            Some(ui) => ui.split(|&c| c == b':').next().unwrap_or_default(),
            None => b"",
        }
    }

    /// Replaces the user, keeping any password; an empty user drops the user part.
    pub fn set_user(&mut self, user: &[u8]) {
        let pass = self
            .userinfo
            .as_ref()
            .and_then(|ui| ui.iter().position(|&c| c == b':').map(|p| ui[p..].to_vec()));
        self.userinfo = if user.is_empty() {
            None
        } else {
            let mut ui = user.to_vec();
            if let Some(p) = pass {
                ui.extend_from_slice(&p);
            }
            Some(ui)
        };
    }

    pub fn join(&self) -> Vec<u8> {
        let mut out = self.scheme.clone();
        if let Some(ui) = &self.userinfo {
            out.extend_from_slice(ui);
            out.push(b'@');
        }
        out.extend_from_slice(&self.host);
        if let Some(p) = &self.port {
            out.push(b':');
            out.extend_from_slice(p);
        }
        out.extend_from_slice(&self.rest);
        out
    }
}

fn with_ruri(
    ctx: &mut MsgContext,
    f: impl FnOnce(&mut UriParts) -> Result<(), FnError>,
) -> FnResult {
    let uri = ctx
        .msg
        .request_uri_bytes()
        .ok_or_else(|| FnError::new("not a request: no Request-URI"))?;
    let mut parts = UriParts::split(&uri)?;
    f(&mut parts)?;
    ctx.msg.set_request_uri(parts.join()).map_err(err)?;
    Ok(Verdict::TRUE)
}

/// `rewriteuri(uri)` / `seturi`.
pub fn rewrite_uri(ctx: &mut MsgContext, uri: Bytes) -> FnResult {
    ctx.msg.set_request_uri(&uri).map_err(err)?;
    Ok(Verdict::TRUE)
}

/// `rewritehost(host)` / `sethost` / `seth`: the port is kept.
pub fn rewrite_host(ctx: &mut MsgContext, host: Bytes) -> FnResult {
    with_ruri(ctx, |p| {
        p.host = host.to_vec();
        Ok(())
    })
}

/// Splits `host[:port]` (IPv6 references in brackets).
fn host_port(hp: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    let search_from = if hp.first() == Some(&b'[') {
        hp.iter().position(|&c| c == b']').unwrap_or(0)
    } else {
        0
    };
    match hp[search_from..].iter().rposition(|&c| c == b':') {
        Some(i) => {
            let i = search_from + i;
            (hp[..i].to_vec(), Some(hp[i + 1..].to_vec()))
        }
        None => (hp.to_vec(), None),
    }
}

/// `rewritehostport("host[:port]")` / `sethostport` / `sethp`: without a port in the
/// argument the URI ends up without one.
pub fn rewrite_hostport(ctx: &mut MsgContext, hp: Bytes) -> FnResult {
    let (host, port) = host_port(&hp);
    with_ruri(ctx, |p| {
        p.host = host;
        p.port = port.filter(|p| !p.is_empty());
        Ok(())
    })
}

/// `rewriteport(port)` / `setport` / `setp`: an empty value removes the port.
pub fn rewrite_port(ctx: &mut MsgContext, port: Bytes) -> FnResult {
    if !port.iter().all(u8::is_ascii_digit) {
        return Err(FnError::new(format!(
            "invalid port \"{}\"",
            String::from_utf8_lossy(&port)
        )));
    }
    with_ruri(ctx, |p| {
        p.port = (!port.is_empty()).then(|| port.to_vec());
        Ok(())
    })
}

/// `rewriteuser(user)` / `setuser` / `setu`: an empty user removes the user part.
pub fn rewrite_user(ctx: &mut MsgContext, user: Bytes) -> FnResult {
    with_ruri(ctx, |p| {
        p.set_user(&user);
        Ok(())
    })
}

/// `rewriteuserpass("user:pass")` / `setuserpass` / `setup`.
pub fn rewrite_userpass(ctx: &mut MsgContext, up: Bytes) -> FnResult {
    with_ruri(ctx, |p| {
        p.userinfo = (!up.is_empty()).then(|| up.to_vec());
        Ok(())
    })
}

/// `prefix(p)`: prepends p to the R-URI user.
pub fn prefix(ctx: &mut MsgContext, pre: Bytes) -> FnResult {
    with_ruri(ctx, |p| {
        let mut u = pre.to_vec();
        u.extend_from_slice(p.user());
        p.set_user(&u);
        Ok(())
    })
}

/// `strip(n)`: drops the first n characters of the R-URI user (all of it when n is
/// larger, as Kamailio does with a warning).
pub fn strip(ctx: &mut MsgContext, n: i64) -> FnResult {
    if n < 0 {
        return Err(FnError::new(format!("negative strip count {n}")));
    }
    with_ruri(ctx, |p| {
        let u = p.user();
        let n = (n as usize).min(u.len());
        let rest = u[n..].to_vec();
        p.set_user(&rest);
        Ok(())
    })
}

/// `strip_tail(n)`: drops the last n characters of the R-URI user.
pub fn strip_tail(ctx: &mut MsgContext, n: i64) -> FnResult {
    if n < 0 {
        return Err(FnError::new(format!("negative strip count {n}")));
    }
    with_ruri(ctx, |p| {
        let u = p.user();
        let keep = u.len().saturating_sub(n as usize);
        let rest = u[..keep].to_vec();
        p.set_user(&rest);
        Ok(())
    })
}

/// `revert_uri()`: the Request-URI as received.
pub fn revert_uri(ctx: &mut MsgContext) -> FnResult {
    let line = ctx
        .msg
        .as_bytes()
        .split(|&c| c == b'\n')
        .next()
        .unwrap_or_default();
    let mut it = line.split(|&c| c == b' ');
    let (Some(_), Some(uri)) = (it.next(), it.next()) else {
        return Err(FnError::new("not a request"));
    };
    if ctx.msg.is_request() && ctx.msg.request_uri() != Some(uri) {
        let uri = uri.to_vec();
        ctx.msg.set_request_uri(uri).map_err(err)?;
    }
    Ok(Verdict::TRUE)
}

/// Connection choices for this message (`set_forward_no_connect()`, `set_reply_close()`,
/// ...): recorded for the transport layer; they change nothing on UDP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnFlags {
    pub forward_no_connect: bool,
    pub reply_no_connect: bool,
    pub forward_close: bool,
    pub reply_close: bool,
}

pub fn force_rport(ctx: &mut MsgContext) -> FnResult {
    ctx.ext
        .get_or_insert_with(ForwardFlags::default)
        .force_rport = true;
    Ok(Verdict::TRUE)
}

pub fn add_local_rport(ctx: &mut MsgContext) -> FnResult {
    ctx.ext
        .get_or_insert_with(ForwardFlags::default)
        .local_rport = true;
    Ok(Verdict::TRUE)
}

pub fn conn_flag(ctx: &mut MsgContext, set: impl FnOnce(&mut ConnFlags)) -> FnResult {
    set(ctx.ext.get_or_insert_with(ConnFlags::default));
    Ok(Verdict::TRUE)
}
