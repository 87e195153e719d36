//! The script functions' behaviour.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use ferrosip_api::args::{value_to_int, ArgKind, ArgType, CallEnv, Fixable, FixupEnv, RawArg};
use ferrosip_api::tm::{BranchTarget, Branches};
use ferrosip_api::{FnError, FnResult, Format, MsgContext, Value, Verdict};
use ferrosip_sip::Uri;

use crate::algorithm::{self, Algorithm, Request};
use crate::health;
use crate::select::{self, Options};
use crate::sets::address_of;
use crate::state::Dispatcher;

/// The `alg` argument: a constant that names no implemented algorithm is a load-time
/// error at the call; a variable is checked when the call runs (an error return).
pub struct AlgArg {
    pub alg: &'static dyn Algorithm,
    pub hash_pvar: Option<Arc<Format>>,
}

impl ArgType for AlgArg {
    type Fixed = (Fixable<i64>, Option<Arc<Format>>);
    const KIND: ArgKind = ArgKind::Custom("algorithm");

    fn fixup(raw: RawArg, env: &dyn FixupEnv) -> Result<Self::Fixed, String> {
        let id = <i64 as ArgType>::fixup(raw, env)?;
        let hash_pvar = hash_pvar(env)?;
        if let Fixable::Const(n) = &id {
            AlgArg::checked(*n, hash_pvar.clone())?;
        }
        Ok((id, hash_pvar))
    }

    fn eval(fixed: &Self::Fixed, ctx: &MsgContext) -> Result<Self, FnError> {
        let id = <i64 as ArgType>::eval(&fixed.0, ctx)?;
        Ok(AlgArg {
            alg: algorithm::by_id(id).map_err(FnError::new)?,
            hash_pvar: fixed.1.clone(),
        })
    }

    fn from_value(value: Value, env: &dyn CallEnv) -> Result<Self, FnError> {
        let id = value_to_int(&value)?;
        hash_pvar(env)
            .and_then(|hash_pvar| AlgArg::checked(id, hash_pvar))
            .map_err(FnError::new)
    }
}

impl AlgArg {
    /// Algorithm `id`, refused when it names none or needs a `hash_pvar` that is not set.
    fn checked(id: i64, hash_pvar: Option<Arc<Format>>) -> Result<AlgArg, String> {
        let alg = algorithm::by_id(id)?;
        if alg.id() == 7 && hash_pvar.is_none() {
            return Err(
                "algorithm 7 hashes modparam(\"dispatcher\", \"hash_pvar\", ...), which is not set"
                    .into(),
            );
        }
        Ok(AlgArg { alg, hash_pvar })
    }
}

/// modparam("dispatcher", "hash_pvar"), parsed; `None` when it is not set.
fn hash_pvar(env: &dyn CallEnv) -> Result<Option<Arc<Format>>, String> {
    match env
        .module_param("dispatcher", "hash_pvar")
        .and_then(|v| v.to_bytes())
        .filter(|b| !b.is_empty())
    {
        Some(text) => Ok(Some(Arc::new(
            env.binder()
                .parse_format(&String::from_utf8_lossy(&text))
                .map_err(|e| format!("modparam hash_pvar: {}", e.message))?,
        ))),
        None => Ok(None),
    }
}

/// Where the chosen destination goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `$du` (ds_select_dst, ds_next_dst).
    DstUri,
    /// The R-URI's host and port (ds_select_domain, ds_next_domain).
    RequestUri,
    /// Only the failover AVPs (ds_select).
    None,
}

fn verdict(ok: bool) -> FnResult {
    Ok(if ok { Verdict::TRUE } else { Verdict::FALSE })
}

/// The R-URI with the host and port of `dest` (user, parameters and headers kept).
pub fn with_hostport(ruri: &[u8], dest: &[u8]) -> Option<Vec<u8>> {
    let old = Uri::parse(ruri).ok()?;
    let new = Uri::parse(dest).ok()?;
    let mut s = Vec::with_capacity(ruri.len() + dest.len());
    s.extend_from_slice(old.scheme());
    s.push(b':');
    if let Some(u) = old.user() {
        s.extend_from_slice(u);
        if let Some(p) = old.password() {
            s.push(b':');
            s.extend_from_slice(p);
        }
        s.push(b'@');
    }
    s.extend_from_slice(new.host()?);
    if let Some(p) = new.port() {
        s.extend_from_slice(format!(":{p}").as_bytes());
    }
    if let Some(params) = old.params_raw() {
        s.push(b';');
        s.extend_from_slice(params);
    }
    if let Some(h) = old.headers_raw() {
        s.push(b'?');
        s.extend_from_slice(h);
    }
    Some(s)
}

/// Sends the request to `uri` as `mode` says.
fn push(ctx: &mut MsgContext, uri: &Bytes, mode: Mode) -> Result<bool, FnError> {
    match mode {
        Mode::DstUri => {
            ctx.dst_uri = Some(uri.clone());
            Ok(true)
        }
        Mode::RequestUri => {
            let ruri = ctx
                .msg
                .request_uri()
                .ok_or_else(|| FnError::new("no request URI"))?;
            let new = with_hostport(ruri, uri)
                .ok_or_else(|| FnError::new("cannot rewrite the request URI"))?;
            ctx.msg
                .set_request_uri(&new)
                .map_err(|e| FnError::new(e.to_string()))?;
            Ok(true)
        }
        Mode::None => Ok(true),
    }
}

impl Dispatcher {
    fn options(&self, limit: i64) -> Options {
        Options {
            use_default: self.cfg.use_default,
            failover: self.cfg.failover,
            limit: usize::try_from(limit).unwrap_or(0),
        }
    }

    /// `ds_select_dst` / `ds_select_domain` / `ds_select`.
    pub fn select(
        &self,
        ctx: &mut MsgContext,
        setid: i64,
        alg: &AlgArg,
        limit: i64,
        mode: Mode,
    ) -> FnResult {
        if mode == Mode::DstUri && !self.cfg.force_dst && ctx.dst_uri.is_some() {
            tracing::debug!("ds_select_dst: destination already set and force_dst is 0");
            return verdict(false);
        }
        let sets = self.sets();
        let Some(set) = i32::try_from(setid).ok().and_then(|id| sets.get(id)) else {
            tracing::debug!(setid, "dispatcher: no such destination set");
            return verdict(false);
        };
        let req = Request {
            ctx,
            hash_pvar: alg.hash_pvar.as_deref(),
            user_only: self.cfg.user_only_hash,
        };
        let Some(sel) = select::select(set, alg.alg, &req, self.options(limit)) else {
            return verdict(false);
        };
        let first = sel.dests[0].clone();
        push(ctx, &first.uri, mode)?;
        if sel.parallel {
            let ruri = ctx.msg.request_uri_bytes().unwrap_or_default();
            let branches = ctx.ext.get_or_insert_with(Branches::default);
            for d in &sel.dests[1..] {
                let (uri, dst_uri) = match mode {
                    Mode::RequestUri => (
                        with_hostport(&ruri, &d.uri).map_or(ruri.clone(), Bytes::from),
                        None,
                    ),
                    _ => (ruri.clone(), Some(d.uri.clone())),
                };
                branches.0.push(BranchTarget {
                    uri,
                    dst_uri,
                    q: None,
                    bflags: 0,
                });
            }
            return verdict(true);
        }
        if alg.alg.tracks_load() && ctx.msg.method_bytes() == Some(b"INVITE") {
            if let Some(call_id) = ctx.msg.call_id_bytes() {
                self.load_add(call_id, &first);
            }
        }
        self.cfg
            .slots
            .store(ctx, &sel.dests, self.cfg.attrs_in_records);
        verdict(true)
    }

    /// `ds_select_routes(rules, mode[, limit])`.
    pub fn select_routes(
        &self,
        ctx: &mut MsgContext,
        rules: &[u8],
        mode: &[u8],
        limit: i64,
        hash_pvar: Option<&Format>,
    ) -> FnResult {
        let mode = match mode.first() {
            Some(b'0' | b'd' | b'D') => Mode::DstUri,
            Some(b'1' | b'r' | b'R') => Mode::RequestUri,
            Some(b'2' | b'x' | b'X') => Mode::None,
            _ => {
                return Err(FnError::new(format!(
                    "ds_select_routes: mode \"{}\" is not d, r or x",
                    String::from_utf8_lossy(mode)
                )))
            }
        };
        let mut limit = usize::try_from(limit).unwrap_or(0);
        let sets = self.sets();
        let mut chosen = Vec::new();
        for rule in rules.split(|c| *c == b';').filter(|r| !r.is_empty()) {
            let text = String::from_utf8_lossy(rule);
            let (set, alg) = text
                .split_once('=')
                .and_then(|(s, a)| {
                    Some((s.trim().parse::<i32>().ok()?, a.trim().parse::<i64>().ok()?))
                })
                .ok_or_else(|| FnError::new(format!("ds_select_routes: bad rule \"{text}\"")))?;
            let alg = algorithm::by_id(alg).map_err(FnError::new)?;
            let Some(set) = sets.get(set) else {
                continue;
            };
            let req = Request {
                ctx,
                hash_pvar,
                user_only: self.cfg.user_only_hash,
            };
            let opts = Options {
                limit,
                ..self.options(0)
            };
            if let Some(sel) = select::select(set, alg, &req, opts) {
                if limit != 0 {
                    limit = limit.saturating_sub(sel.dests.len()).max(1);
                }
                chosen.extend(sel.dests);
            }
        }
        let Some(first) = chosen.first().cloned() else {
            return verdict(false);
        };
        push(ctx, &first.uri, mode)?;
        self.cfg
            .slots
            .store(ctx, &chosen, self.cfg.attrs_in_records);
        verdict(true)
    }

    /// `ds_next_dst()` / `ds_next_domain()`: drops the destination that failed and
    /// goes on with the next usable one of the list.
    pub fn next(&self, ctx: &mut MsgContext, mode: Mode) -> FnResult {
        if !self.cfg.failover {
            tracing::debug!("ds_next_dst: failover is off (flags bit 2)");
            return verdict(false);
        }
        let sets = self.sets();
        while let Some(rec) = self.cfg.slots.advance(ctx) {
            // One that went down since the selection is skipped.
            if sets.find(rec.setid, &rec.uri).is_some_and(|d| !d.usable()) {
                continue;
            }
            return verdict(push(ctx, &rec.uri, mode)?);
        }
        verdict(false)
    }

    /// `ds_set_dst()` / `ds_set_domain()`.
    pub fn set_current(&self, ctx: &mut MsgContext, mode: Mode) -> FnResult {
        match self.cfg.slots.current(ctx) {
            Some(rec) => verdict(push(ctx, &rec.uri, mode)?),
            None => verdict(false),
        }
    }

    /// Sets the state of destination `uri` of set `setid` (and runs the event route of
    /// a change).
    pub fn mark_addr(&self, state: &[u8], setid: i32, uri: &[u8]) -> Result<bool, FnError> {
        let (st, probe) = health::parse_state(state).map_err(FnError::new)?;
        let sets = self.sets();
        let Some(dest) = sets.find(setid, uri) else {
            return Ok(false);
        };
        if let Some(t) = health::mark(dest, st, probe, self.cfg.thresholds) {
            self.announce(dest, t);
        }
        Ok(true)
    }

    /// `ds_mark_dst([state])`: the destination in use now.
    pub fn mark_current(&self, ctx: &MsgContext, state: &[u8]) -> FnResult {
        match self.cfg.slots.current(ctx) {
            Some(rec) => verdict(self.mark_addr(state, rec.setid, &rec.uri)?),
            None => verdict(false),
        }
    }

    /// `ds_is_from_list([group[, mode[, uri]]])`.
    pub fn is_from_list(
        &self,
        ctx: &mut MsgContext,
        group: i64,
        mode: i64,
        uri: Option<&[u8]>,
    ) -> FnResult {
        let (ip, port, proto) = match uri.filter(|u| !u.is_empty()) {
            Some(u) => {
                let (host, port, proto) = address_of(u);
                // A host name goes through the server's resolver, which never blocks
                // this worker: an answer not cached yet is looked up meanwhile and this
                // call does not match.
                let Some(ip) = host.and_then(|h| {
                    h.parse::<IpAddr>().ok().or_else(|| {
                        ctx.services
                            .as_ref()?
                            .cached_addresses(&h)?
                            .first()
                            .copied()
                    })
                }) else {
                    return verdict(false);
                };
                (ip, port, proto)
            }
            None => (ctx.net.source.ip(), ctx.net.source.port(), ctx.net.proto),
        };
        let sets = self.sets();
        let found = sets
            .sets
            .values()
            .filter(|s| group == -1 || i64::from(s.id) == group)
            .flat_map(|s| s.dests.iter())
            .find(|d| (mode & 4 == 0 || d.usable()) && d.matches(ip, port, proto, mode))
            .cloned();
        let Some(d) = found else {
            return verdict(false);
        };
        if let Some(slot) = self.cfg.setid_avp {
            ctx.avps.replace(slot, Value::Int(i64::from(d.setid)));
        }
        if let Some(slot) = self.cfg.attrs_avp {
            ctx.avps.replace(slot, Value::Str(d.attrs_raw.clone()));
        }
        verdict(true)
    }

    /// `ds_is_active(group[, uri])`.
    pub fn is_active(&self, group: i64, uri: Option<&[u8]>) -> FnResult {
        let sets = self.sets();
        let Some(set) = i32::try_from(group).ok().and_then(|g| sets.get(g)) else {
            return verdict(false);
        };
        verdict(
            set.dests
                .iter()
                .any(|d| d.usable() && uri.is_none_or(|u| u.is_empty() || d.uri[..] == *u)),
        )
    }

    /// `ds_load_update()`: a BYE or CANCEL ends the call's load, a 2xx to the INVITE
    /// confirms it.
    pub fn load_update(&self, ctx: &MsgContext) -> FnResult {
        let Some(call_id) = ctx.msg.call_id() else {
            return verdict(false);
        };
        if ctx.msg.is_request() {
            return match ctx.msg.method_bytes() {
                Some(b"BYE" | b"CANCEL") => verdict(self.load_remove(call_id)),
                _ => verdict(false),
            };
        }
        let invite = ctx.msg.cseq().is_ok_and(|c| c.method_bytes() == b"INVITE");
        let ok = ctx.msg.status().is_some_and(|s| (200..300).contains(&s));
        verdict(invite && ok && self.load_confirm(call_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostport_rewrite_keeps_user_params_and_headers() {
        let out = with_hostport(
            b"sip:bob:pw@old.com;user=phone?X=1",
            b"sip:10.0.0.1:5080;transport=tcp",
        )
        .unwrap();
        assert_eq!(out, b"sip:bob:pw@10.0.0.1:5080;user=phone?X=1");
        let out = with_hostport(b"sips:example.com:5061", b"sip:pbx").unwrap();
        assert_eq!(out, b"sips:pbx");
        assert!(with_hostport(b"garbage", b"sip:pbx").is_none());
    }
}
