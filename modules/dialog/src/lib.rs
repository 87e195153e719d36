//! `dialog`: dialog tracking from INVITE to BYE, profiles for concurrent-call limits,
//! timeouts with BYEs to both sides, and storage in Kamailio's `dialog` tables.
//!
//! A dialog is created by `dlg_manage()` (or `dlg_flag`, `$dlg_ctx(on)`) on an initial
//! INVITE and follows its transaction through tm's watch ([`ferrosip_api::TmObserver`]):
//! a provisional makes it early, the 2xx confirmed, the ACK of the 2xx fully confirmed, a
//! failure, CANCEL or transaction timeout ends it. An INVITE whose message is done without
//! reaching a transaction (answered with `sl_send_reply`, dropped) ends its dialog when
//! the message goes, so a profile never keeps counting a call that was refused. In-dialog
//! requests find their dialog by the `did` parameter of this proxy's Route (after
//! `loose_route()`) or by Call-ID and tags (`dlg_match_mode`); a BYE handed to a
//! transaction ends it.

mod pvs;
mod rpc;
mod store;
mod table;

use bytes::Bytes;
use ferrosip_api::args::PvOut;
use ferrosip_api::pv::SetOp;
use ferrosip_api::registry::FnRow;
use ferrosip_api::rr::LocalRoute;
use ferrosip_api::services::{InDialog, LocalRequest, Services};
use ferrosip_api::{
    E2eAck, FinalReply, FnError, FnResult, Module, ModuleBuilder, ModuleParams, MsgContext,
    ParamType, RouteMask, TmObserver, TxnWatch, Value, Verdict,
};
use ferrosip_sip::{Method, SipMessage};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use store::Store;
use table::{now_ms, NewDialog};
pub use table::{Dialog, Dir, DlgState, Live, Table};

/// How often the timeout timer looks for dialogs that are due.
const TIMER_TICK: Duration = Duration::from_millis(250);

/// The module's parameters, checked at load.
#[derive(Clone, Debug)]
pub struct Config {
    /// `dlg_flag`: the message flag that makes `t_relay()` create a dialog (-1: none).
    pub dlg_flag: i64,
    /// `default_timeout`, seconds.
    pub default_timeout: u32,
    /// `send_bye`: BYE both sides when a dialog times out.
    pub send_bye: bool,
    /// `dlg_extra_hdrs`: header lines added to the BYEs this module sends.
    pub extra_hdrs: Bytes,
    /// `dlg_match_mode`: 0 `did` only, 1 `did` then Call-ID and tags, 2 Call-ID and tags.
    pub match_mode: i64,
    /// `rr_param`: the Record-Route parameter holding the dialog id.
    pub rr_param: String,
    /// `profiles_with_value`.
    pub with_value: Vec<Arc<str>>,
    /// `profiles_no_value`.
    pub no_value: Vec<Arc<str>>,
    /// `db_mode`.
    pub db_mode: i64,
    /// `db_url`.
    pub db_url: String,
    /// `db_update_period`, seconds.
    pub db_update_period: u64,
    /// `table_name`.
    pub table: String,
    /// `vars_table_name`.
    pub vars_table: String,
    /// `hash_size`.
    pub hash_size: u32,
}

fn profile_names(p: &ModuleParams, name: &str) -> Result<Vec<Arc<str>>, String> {
    let mut out: Vec<Arc<str>> = Vec::new();
    for v in p.all(name) {
        let text = v
            .to_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        for n in text.split(';').map(str::trim).filter(|n| !n.is_empty()) {
            if n.bytes().any(|c| c.is_ascii_whitespace() || c == b'/') {
                return Err(format!("{name}: \"{n}\" is not a profile name"));
            }
            if !out.iter().any(|o| &**o == n) {
                out.push(Arc::from(n));
            }
        }
    }
    Ok(out)
}

impl Config {
    /// Reads and checks the parameters.
    pub fn from_params(p: &ModuleParams) -> Result<Config, String> {
        let dlg_flag = p.int("dlg_flag");
        if !(-1..=63).contains(&dlg_flag) {
            return Err(format!(
                "dlg_flag {dlg_flag} is not a flag (0..63, -1 for none)"
            ));
        }
        let default_timeout = p.int("default_timeout");
        if !(1..=i64::from(u32::MAX)).contains(&default_timeout) {
            return Err(format!(
                "default_timeout {default_timeout} is not a number of seconds"
            ));
        }
        let match_mode = p.int("dlg_match_mode");
        if !(0..=2).contains(&match_mode) {
            return Err(format!("dlg_match_mode {match_mode} is not 0, 1 or 2"));
        }
        let db_mode = p.int("db_mode");
        if !(0..=3).contains(&db_mode) {
            return Err(format!("db_mode {db_mode} is not 0, 1, 2 or 3"));
        }
        let period = p.int("db_update_period");
        if period < 1 {
            return Err(format!(
                "db_update_period {period} must be 1 second or more"
            ));
        }
        let hash_size = p.int("hash_size");
        if !(1..=1 << 20).contains(&hash_size) {
            return Err(format!("hash_size {hash_size} is out of 1..1048576"));
        }
        let extra = p.string("dlg_extra_hdrs");
        if !extra.is_empty() && !extra.ends_with("\r\n") {
            return Err("dlg_extra_hdrs must end with \\r\\n".into());
        }
        let ident = |name: &str| -> Result<String, String> {
            let v = p.string(name);
            ferrosip_db::check_identifier(&v)
                .map(str::to_string)
                .map_err(|e| format!("{name}: {e}"))
        };
        if p.is_set("timeout_avp") {
            return Err("timeout_avp is not built in Ferrosip: set $dlg_ctx(timeout) or call dlg_set_timeout() (docs/dialog.md)".into());
        }
        let with_value = profile_names(p, "profiles_with_value")?;
        let no_value = profile_names(p, "profiles_no_value")?;
        if let Some(dup) = with_value.iter().find(|n| no_value.contains(n)) {
            return Err(format!(
                "profile {dup} is declared both with and without values"
            ));
        }
        let rr_param = p.string("rr_param");
        if rr_param.is_empty()
            || !rr_param
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        {
            return Err(format!(
                "rr_param \"{rr_param}\" is not a URI parameter name"
            ));
        }
        Ok(Config {
            dlg_flag,
            default_timeout: default_timeout as u32,
            send_bye: p.int("send_bye") != 0,
            extra_hdrs: Bytes::from(extra.into_bytes()),
            match_mode,
            rr_param,
            with_value,
            no_value,
            db_mode,
            db_url: p.string("db_url"),
            db_update_period: period as u64,
            table: ident("table_name")?,
            vars_table: ident("vars_table_name")?,
            hash_size: hash_size as u32,
        })
    }

    /// The profile named `name` and whether it takes values.
    fn profile(&self, name: &[u8]) -> Result<(Arc<str>, bool), FnError> {
        let find = |list: &[Arc<str>]| list.iter().find(|p| p.as_bytes() == name).cloned();
        if let Some(p) = find(&self.with_value) {
            return Ok((p, true));
        }
        if let Some(p) = find(&self.no_value) {
            return Ok((p, false));
        }
        Err(FnError::new(format!(
            "dialog: no profile \"{}\" (declare it in profiles_with_value or profiles_no_value)",
            String::from_utf8_lossy(name)
        )))
    }
}

/// Why a dialog ended, as [`DialogEvents`] tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// A BYE reached its transaction.
    Bye,
    /// The INVITE got a final reply >= 300, or its transaction ended without one.
    Failed,
    /// The INVITE was never relayed (its message was done with first).
    NotRelayed,
    /// The dialog's timeout fired.
    Timeout,
    /// `dlg_bye()` from the script.
    Script,
    /// `dlg.end_dlg` or `dlg.terminate_dlg` from the control interface.
    Rpc,
}

/// A dialog that has just ended, as other modules see it.
pub struct DialogEnd<'a> {
    pub dialog: &'a Dialog,
    /// Its state when it ended (times, tags, variables).
    pub live: &'a table::Live,
    pub reason: EndReason,
    /// Unix milliseconds of the end.
    pub ended_ms: i64,
    /// The request that ended it (the BYE), when a request did.
    pub request: Option<&'a MsgContext>,
}

/// A module's hook on dialog ends.
pub type EndHook = dyn Fn(&DialogEnd<'_>) + Send + Sync;

/// Dialog ends for other modules (acc's CDRs), through `m.uses::<DialogEvents>()`. Each
/// module keeps one hook, replaced when its script is reloaded. A hook runs on the
/// thread that ended the dialog: it hands work on (acc queues a record) and returns.
#[derive(Default)]
pub struct DialogEvents {
    on_end: std::sync::RwLock<Vec<(&'static str, Arc<EndHook>)>>,
}

impl DialogEvents {
    /// Sets `module`'s hook (`None`: removes it).
    pub fn set_on_end(&self, module: &'static str, hook: Option<Arc<EndHook>>) {
        let mut hooks = self.on_end.write().unwrap_or_else(|e| e.into_inner());
        hooks.retain(|(m, _)| *m != module);
        if let Some(h) = hook {
            hooks.push((module, h));
        }
    }

    fn ended(&self, end: &DialogEnd<'_>) {
        let hooks = self.on_end.read().unwrap_or_else(|e| e.into_inner());
        for (_, hook) in hooks.iter() {
            hook(end);
        }
    }

    fn is_empty(&self) -> bool {
        self.on_end
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }
}

/// What the module keeps for the life of the server (across script reloads).
#[derive(Default)]
pub struct Shared {
    /// The dialogs.
    pub table: Table,
    /// Who is told of dialog ends.
    pub events: Arc<DialogEvents>,
    services: OnceLock<Arc<dyn Services>>,
    runtime: OnceLock<tokio::runtime::Handle>,
    store: OnceLock<Arc<Store>>,
    extra_hdrs: OnceLock<Bytes>,
}

impl Shared {
    /// Ends `d` once: out of the table and its profiles, removed from the database.
    fn end(&self, d: &Dialog, why: EndReason) -> bool {
        self.end_by(d, why, None)
    }

    /// As [`Shared::end`], by `request` (the BYE) when a request ended it; the modules
    /// that watch dialog ends are told.
    fn end_by(&self, d: &Dialog, why: EndReason, request: Option<&MsgContext>) -> bool {
        if !self.table.end(d) {
            return false;
        }
        tracing::debug!(callid = %String::from_utf8_lossy(&d.callid), reason = ?why, "dialog: ended");
        if let Some(s) = self.store.get() {
            s.push(store::Op::Remove(d.h_entry, d.h_id));
        }
        if !self.events.is_empty() {
            let live = d.live().clone();
            self.events.ended(&DialogEnd {
                dialog: d,
                live: &live,
                reason: why,
                ended_ms: now_ms(),
                request,
            });
        }
        true
    }

    /// Stores the dialog as it is now, when it is confirmed and a database is used.
    fn save(&self, d: &Arc<Dialog>) {
        if let Some(s) = self.store.get() {
            let st = d.live().state;
            if st >= DlgState::ConfirmedNa && st < DlgState::Deleted {
                s.push(store::Op::Save(d.clone()));
            }
        }
    }

    /// Sends a BYE for `d` to the callee (`to_callee`) or the caller, on a transaction of
    /// the server's own; its outcome is only logged.
    fn send_bye(&self, d: &Dialog, to_callee: bool) -> Result<(), FnError> {
        let services = self
            .services
            .get()
            .ok_or_else(|| FnError::new("dialog: sending a BYE needs a running server"))?;
        let (uri, route, from, to, ids) = {
            let mut live = d.live();
            if to_callee {
                live.caller_cseq = live.caller_cseq.saturating_add(1);
                let ids = InDialog {
                    call_id: d.callid.clone(),
                    from_tag: d.from_tag.clone(),
                    to_tag: live.to_tag.clone(),
                    cseq: live.caller_cseq,
                };
                (
                    live.callee_contact.clone(),
                    live.callee_route_set.clone(),
                    d.from_uri.clone(),
                    d.to_uri.clone(),
                    ids,
                )
            } else {
                live.callee_cseq = live.callee_cseq.max(1).saturating_add(1);
                let ids = InDialog {
                    call_id: d.callid.clone(),
                    from_tag: live.to_tag.clone(),
                    to_tag: d.from_tag.clone(),
                    cseq: live.callee_cseq,
                };
                (
                    d.caller_contact.clone(),
                    d.caller_route_set.clone(),
                    d.to_uri.clone(),
                    d.from_uri.clone(),
                    ids,
                )
            }
        };
        if uri.is_empty() || (to_callee && ids.to_tag.is_empty()) {
            return Err(FnError::new(
                "dialog: the dialog has no target for a BYE yet",
            ));
        }
        let mut headers = Vec::new();
        for r in &route {
            headers.extend_from_slice(b"Route: <");
            headers.extend_from_slice(r);
            headers.extend_from_slice(b">\r\n");
        }
        if let Some(x) = self.extra_hdrs.get() {
            headers.extend_from_slice(x);
        }
        let req = LocalRequest {
            method: Bytes::from_static(b"BYE"),
            uri,
            dst_uri: route.first().cloned(),
            from,
            to,
            headers: Bytes::from(headers),
            in_dialog: Some(ids),
            ..LocalRequest::default()
        };
        let outcome = services.send_request(req)?;
        let callid = String::from_utf8_lossy(&d.callid).into_owned();
        let side = if to_callee { "callee" } else { "caller" };
        if let Some(rt) = self.runtime.get() {
            rt.spawn(async move {
                let o = outcome.await;
                tracing::debug!(callid, side, code = o.code, "dialog: BYE answered");
            });
        }
        Ok(())
    }

    /// Ends `d` and sends BYEs to the sides asked.
    fn bye(&self, d: &Dialog, caller: bool, callee: bool, why: EndReason) -> bool {
        let ended = self.end(d, why);
        for (wanted, to_callee) in [(callee, true), (caller, false)] {
            if wanted {
                if let Err(e) = self.send_bye(d, to_callee) {
                    tracing::error!(callid = %String::from_utf8_lossy(&d.callid), error = %e.message, "dialog: cannot send a BYE");
                }
            }
        }
        ended
    }

    /// Fires the timeouts that are due.
    fn expire(&self) {
        for d in self.table.expired(now_ms()) {
            let bye = d.live().timeout_bye;
            if self.end(&d, EndReason::Timeout) && bye {
                for to_callee in [true, false] {
                    if let Err(e) = self.send_bye(&d, to_callee) {
                        tracing::error!(error = %e.message, "dialog: cannot send the timeout BYE");
                    }
                }
            }
        }
    }
}

/// The module's state: the parameters of the loaded script and the dialogs.
pub struct Dlg {
    /// The parameters.
    pub cfg: Config,
    /// The dialogs, shared with the watches and the timer.
    pub shared: Arc<Shared>,
}

/// The dialog of the message being processed, once known.
struct Current {
    dlg: Arc<Dialog>,
    dir: Dir,
    /// Set when this message created the dialog: if the message is done without handing
    /// the INVITE to a transaction, the dialog ends with it.
    owner: Option<Arc<Shared>>,
}

impl Drop for Current {
    fn drop(&mut self) {
        if let Some(sh) = &self.owner {
            let relayed = self.dlg.live().relayed;
            if !relayed {
                sh.end(&self.dlg, EndReason::NotRelayed);
            }
        }
    }
}

/// `$dlg_ctx(...)` values set before the dialog exists.
#[derive(Clone, Debug, Default)]
struct DlgCtx {
    on: bool,
    timeout: Option<u32>,
    timeout_bye: Option<bool>,
}

fn is_initial_invite(msg: &SipMessage) -> bool {
    matches!(msg.method(), Some(Method::Invite)) && msg.to_tag().is_none_or(<[u8]>::is_empty)
}

fn parse_did(v: &[u8]) -> Option<(u32, u32)> {
    let t = std::str::from_utf8(v).ok()?;
    let (e, i) = t.split_once('.')?;
    Some((
        u32::from_str_radix(e, 16).ok()?,
        u32::from_str_radix(i, 16).ok()?,
    ))
}

/// The dialog of an in-dialog request: by the `did` of this proxy's Route, then (match
/// mode 1, 2) by Call-ID and tags.
fn match_request(
    cfg: &Config,
    sh: &Shared,
    msg: &SipMessage,
    route: Option<&LocalRoute>,
) -> Option<(Arc<Dialog>, Dir)> {
    let callid = msg.call_id()?;
    let ftag = msg.from_tag().unwrap_or_default();
    let ttag = msg.to_tag().filter(|t| !t.is_empty())?;
    if cfg.match_mode != 2 {
        if let Some((e, i)) = route
            .and_then(|r| r.param(&cfg.rr_param))
            .and_then(parse_did)
        {
            if let Some(d) = sh.table.get(e, i).filter(|d| d.callid == callid) {
                let dir = if d.from_tag == ftag {
                    Dir::Downstream
                } else {
                    Dir::Upstream
                };
                return Some((d, dir));
            }
        }
        if cfg.match_mode == 0 {
            return None;
        }
    }
    sh.table.find(callid, ftag, ttag)
}

/// The dialog of `ctx`: the one attached to it, else the one its request belongs to.
fn current(st: &Dlg, ctx: &MsgContext) -> Option<(Arc<Dialog>, Dir)> {
    if let Some(c) = ctx.ext.get::<Current>() {
        return Some((c.dlg.clone(), c.dir));
    }
    if !ctx.msg.is_request() {
        return None;
    }
    match_request(&st.cfg, &st.shared, &ctx.msg, ctx.ext.get::<LocalRoute>())
}

/// The fixed part of a dialog for the INVITE of `ctx`.
fn new_dialog(cfg: &Config, ctx: &MsgContext) -> Result<NewDialog, FnError> {
    let msg = &ctx.msg;
    let bad = |what: &str| FnError::new(format!("dialog: the INVITE has no valid {what}"));
    let callid = msg.call_id_bytes().ok_or_else(|| bad("Call-ID"))?;
    let from = msg.from().map_err(|_| bad("From"))?;
    let from_tag = from
        .tag()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("From tag"))?;
    let to = msg.to().map_err(|_| bad("To"))?;
    let contact = msg
        .contacts()
        .next()
        .and_then(Result::ok)
        .map(|c| msg.bytes_of(c.uri_bytes()))
        .unwrap_or_default();
    let caller_route_set = msg
        .record_routes()
        .filter_map(Result::ok)
        .map(|r| msg.bytes_of(r.uri_bytes()))
        .collect();
    let cseq = msg.cseq().map_err(|_| bad("CSeq"))?.seq;
    let dctx = ctx.ext.get::<DlgCtx>();
    Ok(NewDialog {
        callid,
        from_uri: msg.bytes_of(from.uri_bytes()),
        from_tag: msg.bytes_of(from_tag),
        to_uri: msg.bytes_of(to.uri_bytes()),
        req_uri: msg
            .request_uri()
            .map(|u| msg.bytes_of(u))
            .unwrap_or_default(),
        caller_contact: contact,
        caller_route_set,
        caller_sock: Bytes::from(
            format!("{}:{}", ctx.net.proto.name(), ctx.net.local).into_bytes(),
        ),
        caller_cseq: cseq,
        lifetime: dctx.and_then(|c| c.timeout).unwrap_or(cfg.default_timeout),
        timeout_bye: dctx.and_then(|c| c.timeout_bye).unwrap_or(cfg.send_bye),
    })
}

/// Creates the dialog of the initial INVITE of `ctx` (once) and attaches it.
fn manage_initial(st: &Dlg, ctx: &mut MsgContext) -> Result<Arc<Dialog>, FnError> {
    if let Some(c) = ctx.ext.get::<Current>() {
        return Ok(c.dlg.clone());
    }
    let n = new_dialog(&st.cfg, ctx)?;
    let d = st
        .shared
        .table
        .create(n)
        .ok_or_else(|| FnError::new("dialog: too many dialogs tracked"))?;
    let param = format!(";{}={}", st.cfg.rr_param, d.did());
    ferrosip_mod_rr::ops::add_rr_param(ctx, param.as_bytes())?;
    ctx.ext.insert(Current {
        dlg: d.clone(),
        dir: Dir::Downstream,
        owner: Some(st.shared.clone()),
    });
    Ok(d)
}

fn dlg_flag_set(cfg: &Config, ctx: &MsgContext) -> bool {
    (cfg.dlg_flag >= 0 && ctx.flags & (1u64 << cfg.dlg_flag) != 0)
        || ctx.ext.get::<DlgCtx>().is_some_and(|c| c.on)
}

/// The dialog a profile function works on: the current one, or for an initial INVITE
/// flagged with `dlg_flag`, the one it creates.
fn dialog_for_profile(st: &Dlg, ctx: &mut MsgContext) -> Result<Option<Arc<Dialog>>, FnError> {
    if let Some((d, _)) = current(st, ctx) {
        return Ok(Some(d));
    }
    if ctx.msg.is_request() && is_initial_invite(&ctx.msg) && dlg_flag_set(&st.cfg, ctx) {
        return manage_initial(st, ctx).map(Some);
    }
    Ok(None)
}

fn dlg_manage(st: &Dlg, ctx: &mut MsgContext) -> FnResult {
    if !ctx.msg.is_request() {
        return Ok(Verdict::FALSE);
    }
    if is_initial_invite(&ctx.msg) {
        // A retransmission belongs to the dialog its first copy created: counting it
        // again would make a profile see the same call twice.
        let retransmission = ctx
            .services
            .as_ref()
            .and_then(|s| s.transactions().map(|t| t.exists(ctx)))
            .unwrap_or(false);
        if !retransmission {
            manage_initial(st, ctx)?;
        }
        return Ok(Verdict::TRUE);
    }
    match current(st, ctx) {
        Some((dlg, dir)) => {
            if ctx.ext.get::<Current>().is_none() {
                ctx.ext.insert(Current {
                    dlg,
                    dir,
                    owner: None,
                });
            }
            Ok(Verdict::TRUE)
        }
        None => Ok(Verdict::FALSE),
    }
}

fn profile_value(has_value: bool, profile: &[u8], value: Option<Bytes>) -> Result<Bytes, FnError> {
    match (has_value, value) {
        (true, Some(v)) => Ok(v),
        (true, None) => Err(FnError::new(format!(
            "dialog: profile {} needs a value",
            String::from_utf8_lossy(profile)
        ))),
        (false, None) => Ok(Bytes::new()),
        (false, Some(_)) => Err(FnError::new(format!(
            "dialog: profile {} takes no value",
            String::from_utf8_lossy(profile)
        ))),
    }
}

fn set_profile(st: &Dlg, ctx: &mut MsgContext, profile: Bytes, value: Option<Bytes>) -> FnResult {
    let (name, has_value) = st.cfg.profile(&profile)?;
    let value = profile_value(has_value, &profile, value)?;
    let Some(d) = dialog_for_profile(st, ctx)? else {
        return Err(FnError::new(
            "set_dlg_profile: the message has no dialog (call dlg_manage() first)",
        ));
    };
    if !st.shared.table.set_profile(&d, &name, value) {
        return Ok(Verdict::FALSE);
    }
    st.shared.save(&d);
    Ok(Verdict::TRUE)
}

fn unset_profile(st: &Dlg, ctx: &mut MsgContext, profile: Bytes, value: Option<Bytes>) -> FnResult {
    let (name, has_value) = st.cfg.profile(&profile)?;
    if !has_value && value.is_some() {
        profile_value(has_value, &profile, value.clone())?;
    }
    let Some((d, _)) = current(st, ctx) else {
        return Ok(Verdict::FALSE);
    };
    if !st.shared.table.unset_profile(&d, &name, value.as_deref()) {
        return Ok(Verdict::FALSE);
    }
    st.shared.save(&d);
    Ok(Verdict::TRUE)
}

fn in_profile(st: &Dlg, ctx: &mut MsgContext, profile: Bytes, value: Option<Bytes>) -> FnResult {
    let (name, _) = st.cfg.profile(&profile)?;
    let Some((d, _)) = current(st, ctx) else {
        return Ok(Verdict::FALSE);
    };
    let live = d.live();
    let hit = live
        .profiles
        .iter()
        .any(|(p, v)| *p == name && value.as_deref().is_none_or(|x| x == v));
    Ok(if hit { Verdict::TRUE } else { Verdict::FALSE })
}

fn profile_size(
    st: &Dlg,
    ctx: &mut MsgContext,
    profile: Bytes,
    value: Option<Bytes>,
    out: PvOut,
) -> FnResult {
    let (name, _) = st.cfg.profile(&profile)?;
    let n = st.shared.table.profile_size(&name, value.as_deref());
    out.0.set(ctx, SetOp::Assign, Value::Int(n as i64))?;
    Ok(Verdict::TRUE)
}

fn bit(flag: i64) -> Result<u32, FnError> {
    if !(0..32).contains(&flag) {
        return Err(FnError::new(format!("dialog: flag {flag} is out of 0..31")));
    }
    Ok(1 << flag)
}

fn set_timeout(st: &Dlg, d: &Arc<Dialog>, secs: i64) -> FnResult {
    if !(1..=i64::from(u32::MAX)).contains(&secs) {
        return Err(FnError::new(format!(
            "dlg_set_timeout: {secs} is not a number of seconds"
        )));
    }
    {
        let mut live = d.live();
        live.lifetime = secs as u32;
        if live.state >= DlgState::ConfirmedNa && live.state < DlgState::Deleted {
            live.expires_ms = Some(now_ms() + secs * 1000);
        }
    }
    st.shared.save(d);
    Ok(Verdict::TRUE)
}

fn dlg_bye(st: &Dlg, ctx: &mut MsgContext, side: Bytes) -> FnResult {
    let (caller, callee) = match &side[..] {
        b"caller" => (true, false),
        b"callee" => (false, true),
        b"all" => (true, true),
        _ => {
            return Err(FnError::new(format!(
                "dlg_bye: side \"{}\" is not caller, callee or all",
                String::from_utf8_lossy(&side)
            )))
        }
    };
    let Some((d, _)) = current(st, ctx) else {
        return Ok(Verdict::FALSE);
    };
    if d.live().state < DlgState::ConfirmedNa {
        return Ok(Verdict::FALSE);
    }
    Ok(if st.shared.bye(&d, caller, callee, EndReason::Script) {
        Verdict::TRUE
    } else {
        Verdict::FALSE
    })
}

/// The route set towards the callee from the 2xx's Record-Route: the entries above this
/// proxy's own (those the caller's side and this proxy added are below), the hop next to
/// this proxy first.
fn callee_route_set(sh: &Shared, d: &Dialog, reply: &SipMessage, rr_param: &str) -> Vec<Bytes> {
    let all: Vec<Bytes> = reply
        .record_routes()
        .filter_map(Result::ok)
        .map(|r| reply.bytes_of(r.uri_bytes()))
        .collect();
    let mut upper: Vec<Bytes> = all[..all.len().saturating_sub(d.caller_route_set.len())].to_vec();
    let did = d.did();
    let ours = |u: &Bytes| -> bool {
        let Ok(uri) = ferrosip_sip::Uri::parse(u) else {
            return false;
        };
        if uri.param(rr_param).flatten() == Some(did.as_bytes()) {
            return true;
        }
        match (sh.services.get(), uri.host()) {
            (Some(s), Some(h)) => s.is_myself(h, uri.port()),
            _ => false,
        }
    };
    while upper.last().is_some_and(ours) {
        upper.pop();
    }
    upper.reverse();
    upper
}

/// Follows the INVITE transaction of one dialog.
struct Watch {
    dlg: Arc<Dialog>,
    shared: Arc<Shared>,
    rr_param: String,
    confirmed: bool,
}

impl TxnWatch for Watch {
    fn on_provisional(&mut self, reply: &FinalReply<'_>) {
        let mut live = self.dlg.live();
        if live.state == DlgState::Unconfirmed && reply.code > 100 {
            live.state = DlgState::Early;
        }
    }

    fn on_final(&mut self, reply: &FinalReply<'_>) {
        if reply.failed() {
            self.shared.end(&self.dlg, EndReason::Failed);
            return;
        }
        let routes = reply
            .reply
            .map(|r| callee_route_set(&self.shared, &self.dlg, r, &self.rr_param))
            .unwrap_or_default();
        {
            let mut live = self.dlg.live();
            if live.state == DlgState::Deleted {
                return;
            }
            live.state = DlgState::ConfirmedNa;
            live.to_tag = reply.to_tag.map(Bytes::copy_from_slice).unwrap_or_default();
            if let Some(r) = reply.reply {
                live.callee_contact = r
                    .contacts()
                    .next()
                    .and_then(Result::ok)
                    .map(|c| r.bytes_of(c.uri_bytes()))
                    .unwrap_or_default();
                live.callee_cseq = 0;
            }
            live.callee_route_set = routes;
            let now = now_ms();
            live.start_ts = now / 1000;
            live.start_ms = now;
            live.expires_ms = Some(now + i64::from(live.lifetime) * 1000);
        }
        self.confirmed = true;
        self.shared.save(&self.dlg);
    }

    fn on_dropped(&mut self) {
        if !self.confirmed {
            self.shared.end(&self.dlg, EndReason::Failed);
        }
    }

    fn wants_e2e_ack(&self) -> bool {
        self.confirmed
    }

    fn on_e2e_ack(&mut self, _ack: &E2eAck<'_>) {
        let changed = {
            let mut live = self.dlg.live();
            let c = live.state == DlgState::ConfirmedNa;
            if c {
                live.state = DlgState::Confirmed;
            }
            c
        };
        if changed {
            self.shared.save(&self.dlg);
        }
    }
}

/// Hands each dialog-creating INVITE's transaction a [`Watch`], and ends a dialog when
/// its BYE reaches a transaction.
struct Observer {
    cfg: Config,
    shared: Arc<Shared>,
}

impl TmObserver for Observer {
    fn on_request(&self, ctx: &MsgContext) -> Option<Box<dyn TxnWatch>> {
        let msg = &ctx.msg;
        if is_initial_invite(msg) {
            let dlg = match ctx.ext.get::<Current>() {
                Some(c) if c.owner.is_some() => c.dlg.clone(),
                Some(_) => return None,
                None if dlg_flag_set(&self.cfg, ctx) => {
                    let n = new_dialog(&self.cfg, ctx).ok()?;
                    self.shared.table.create(n)?
                }
                None => return None,
            };
            {
                let mut live = dlg.live();
                if live.relayed || live.state == DlgState::Deleted {
                    return None;
                }
                live.relayed = true;
            }
            return Some(Box::new(Watch {
                dlg,
                shared: self.shared.clone(),
                rr_param: self.cfg.rr_param.clone(),
                confirmed: false,
            }));
        }
        let (d, dir) = match ctx.ext.get::<Current>() {
            Some(c) => (c.dlg.clone(), c.dir),
            None => match_request(&self.cfg, &self.shared, msg, ctx.ext.get::<LocalRoute>())?,
        };
        let seq = msg.cseq().map(|c| c.seq).unwrap_or(0);
        {
            let mut live = d.live();
            match dir {
                Dir::Downstream => live.caller_cseq = live.caller_cseq.max(seq),
                Dir::Upstream => live.callee_cseq = live.callee_cseq.max(seq),
            }
        }
        if matches!(msg.method(), Some(Method::Bye)) {
            self.shared.end_by(&d, EndReason::Bye, Some(ctx));
        }
        None
    }
}

/// The `dialog` module.
pub struct DialogModule;

impl Module for DialogModule {
    fn name(&self) -> &'static str {
        "dialog"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Dialog tracking from INVITE to BYE: dialog states, profiles that count live calls (concurrent-call limits), $dlg/$dlg_var/$dlg_ctx, timeouts that BYE both sides, and storage in Kamailio's dialog and dialog_vars tables so that dialogs survive a restart (docs/dialog.md).");
        m.example(include_str!("../example.cfg"));
        m.needs("tm");
        m.needs("rr");
        m.param(
            "enable_stats",
            ParamType::Int,
            1_i64,
            "Kept for Kamailio configs: the counts are always available through dlg.stats_active.",
        );
        m.param("hash_size", ParamType::Int, 4096_i64, "Number of hash buckets of the dialog table ($dlg(h_entry) is the bucket of the Call-ID).");
        m.param(
            "rr_param",
            ParamType::Str,
            "did",
            "Name of the Record-Route parameter holding the dialog id.",
        );
        m.param("dlg_flag", ParamType::Int, -1_i64, "Message flag that makes t_relay() of an initial INVITE create a dialog (-1: only dlg_manage() does).");
        m.param(
            "timeout_avp",
            ParamType::Str,
            Value::Null,
            "Not built: setting it is a load error (use $dlg_ctx(timeout) or dlg_set_timeout()).",
        );
        m.param("default_timeout", ParamType::Int, 43200_i64, "Lifetime of a dialog in seconds, counted from its 2xx; when it ends the dialog is removed (and BYEs sent with send_bye).");
        m.param("send_bye", ParamType::Int, 0_i64, "When 1, a dialog that times out gets a BYE sent to both sides ($dlg_ctx(timeout_bye) per dialog).");
        m.param(
            "dlg_extra_hdrs",
            ParamType::Str,
            Value::Null,
            "Header lines (each ending in \\r\\n) added to the BYEs the module sends.",
        );
        m.param("dlg_match_mode", ParamType::Int, 1_i64, "How in-dialog requests find their dialog: 0 the did parameter of this proxy's Route only, 1 did then Call-ID and tags, 2 Call-ID and tags only.");
        m.param(
            "db_url",
            ParamType::Str,
            "mysql://kamailio:kamailiorw@localhost/kamailio",
            "Database of the dialog tables (db_mode 1..3).",
        );
        m.param("db_mode", ParamType::Int, 0_i64, "0: memory only; 1: each change written at once; 2: changes written every db_update_period; 3: written when the server stops. Stored dialogs load at start.");
        m.param(
            "db_update_period",
            ParamType::Int,
            60_i64,
            "Seconds between writes in db_mode 2.",
        );
        m.param(
            "table_name",
            ParamType::Str,
            "dialog",
            "Table of the dialogs.",
        );
        m.param(
            "vars_table_name",
            ParamType::Str,
            "dialog_vars",
            "Table of the dialog variables.",
        );
        m.repeatable_param(
            "profiles_with_value",
            ParamType::Str,
            "Profiles whose members carry a value (\"caller;trunk\"); may be given more than once.",
        );
        m.repeatable_param(
            "profiles_no_value",
            ParamType::Str,
            "Profiles without values (\"calls;inbound\"); may be given more than once.",
        );

        let shared = Arc::new(Shared::default());
        m.provide(shared.events.clone());
        let state = {
            let shared = shared.clone();
            m.state(move |p| {
                let cfg = Config::from_params(p)?;
                shared.table.set_hash_size(cfg.hash_size);
                Ok(Dlg {
                    cfg,
                    shared: shared.clone(),
                })
            })
        };
        {
            let shared = shared.clone();
            m.on_tm_event(move |p, _binder| {
                let cfg = Config::from_params(p)?;
                Ok(Some(Arc::new(Observer {
                    cfg,
                    shared: shared.clone(),
                }) as Arc<dyn TmObserver>))
            });
        }
        {
            let shared = shared.clone();
            m.on_ready(move |services| {
                let _ = shared.services.set(services.clone());
            });
        }
        {
            let shared = shared.clone();
            m.on_start(move |env| {
                let shared = shared.clone();
                let cfg = Config::from_params(env.params);
                let runtime = env.runtime.clone();
                async move {
                    let cfg = cfg?;
                    let _ = shared.runtime.set(runtime.clone());
                    let _ = shared.extra_hdrs.set(cfg.extra_hdrs.clone());
                    if cfg.db_mode > 0 {
                        let db = ferrosip_db::Db::connect(&cfg.db_url)
                            .await
                            .map_err(|e| format!("cannot connect to db_url: {e}"))?;
                        let store = Arc::new(Store::new(
                            db,
                            cfg.db_mode,
                            cfg.table.clone(),
                            cfg.vars_table.clone(),
                        ));
                        let n = store.load(&shared.table).await?;
                        tracing::info!(dialogs = n, "dialog: stored dialogs loaded");
                        let period =
                            (cfg.db_mode == 2).then(|| Duration::from_secs(cfg.db_update_period));
                        runtime.spawn(store.clone().run_writer(period));
                        let _ = shared.store.set(store);
                    }
                    let timer = shared.clone();
                    runtime.spawn(async move {
                        let mut tick = tokio::time::interval(TIMER_TICK);
                        loop {
                            tick.tick().await;
                            timer.expire();
                        }
                    });
                    Ok(())
                }
            });
        }
        {
            let shared = shared.clone();
            m.on_stop_async(move |_env| {
                let shared = shared.clone();
                async move {
                    let Some(store) = shared.store.get().cloned() else {
                        return;
                    };
                    if store.mode == 3 {
                        store.write_all(&shared.table).await;
                    } else {
                        store.flush().await;
                    }
                }
            });
        }

        const REQ: RouteMask = RouteMask::REQUEST;
        const ANYREQ: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::BRANCH)
            .union(RouteMask::ONREPLY);
        let s = &state;
        #[rustfmt::skip]
        m.functions([
            FnRow::sync("dlg_manage", &[], REQ,
                "Tracks the dialog of an initial INVITE (created now, followed through its transaction; its id goes in the Record-Route as rr_param) or attaches an in-dialog request to its dialog; 1 done, -1 no dialog for an in-dialog request or not a request.",
                s.with(|st: &Dlg, ctx: &mut MsgContext| dlg_manage(st, ctx))),
            FnRow::sync("set_dlg_profile", &["profile"], ANYREQ,
                "Adds the current dialog to a profile without values; 1 done, -1 the dialog has ended; an error without a dialog (dlg_manage() first, or dlg_flag set on an initial INVITE).",
                s.with(|st: &Dlg, ctx: &mut MsgContext, p: Bytes| set_profile(st, ctx, p, None))),
            FnRow::sync("set_dlg_profile", &["profile", "value"], ANYREQ,
                "Adds the current dialog to a profile with VALUE (counted once however often it is called); as set_dlg_profile(profile). Call it before get_profile_size() for a limit that holds under concurrency.",
                s.with(|st: &Dlg, ctx: &mut MsgContext, p: Bytes, v: Bytes| set_profile(st, ctx, p, Some(v)))),
            FnRow::sync("unset_dlg_profile", &["profile"], ANYREQ,
                "Takes the current dialog out of a profile (every value); 1 it was in, -1 not.",
                s.with(|st: &Dlg, ctx: &mut MsgContext, p: Bytes| unset_profile(st, ctx, p, None))),
            FnRow::sync("unset_dlg_profile", &["profile", "value"], ANYREQ,
                "Takes the current dialog out of a profile for VALUE; 1 it was in, -1 not.",
                s.with(|st: &Dlg, ctx: &mut MsgContext, p: Bytes, v: Bytes| unset_profile(st, ctx, p, Some(v)))),
            FnRow::sync("is_in_profile", &["profile"], ANYREQ,
                "1 when the current dialog is in the profile (any value), -1 otherwise.",
                s.with(|st: &Dlg, ctx: &mut MsgContext, p: Bytes| in_profile(st, ctx, p, None))),
            FnRow::sync("is_in_profile", &["profile", "value"], ANYREQ,
                "1 when the current dialog is in the profile with VALUE, -1 otherwise.",
                s.with(|st: &Dlg, ctx: &mut MsgContext, p: Bytes, v: Bytes| in_profile(st, ctx, p, Some(v)))),
            FnRow::sync("get_profile_size", &["profile", "size"], RouteMask::ANY,
                "Writes the number of live dialogs in the profile (all values) to SIZE; 1.",
                s.with(|st: &Dlg, ctx: &mut MsgContext, p: Bytes, out: PvOut| profile_size(st, ctx, p, None, out))),
            FnRow::sync("get_profile_size", &["profile", "value", "size"], RouteMask::ANY,
                "Writes the number of live dialogs in the profile with VALUE to SIZE; 1.",
                s.with(|st: &Dlg, ctx: &mut MsgContext, p: Bytes, v: Bytes, out: PvOut| profile_size(st, ctx, p, Some(v), out))),
            FnRow::sync("is_known_dlg", &[], ANYREQ,
                "1 when the message belongs to a tracked dialog, -1 otherwise.",
                s.with(|st: &Dlg, ctx: &mut MsgContext| Ok(if current(st, ctx).is_some() { Verdict::TRUE } else { Verdict::FALSE }))),
            FnRow::sync("dlg_setflag", &["flag"], ANYREQ,
                "Sets dialog flag FLAG (0..31, $dlg(sflags)); 1, -1 without a dialog.",
                s.with(|st: &Dlg, ctx: &mut MsgContext, f: i64| {
                    let b = bit(f)?;
                    let Some((d, _)) = current(st, ctx) else { return Ok(Verdict::FALSE) };
                    d.live().sflags |= b;
                    st.shared.save(&d);
                    Ok(Verdict::TRUE)
                })),
            FnRow::sync("dlg_resetflag", &["flag"], ANYREQ,
                "Clears dialog flag FLAG; 1, -1 without a dialog.",
                s.with(|st: &Dlg, ctx: &mut MsgContext, f: i64| {
                    let b = bit(f)?;
                    let Some((d, _)) = current(st, ctx) else { return Ok(Verdict::FALSE) };
                    d.live().sflags &= !b;
                    st.shared.save(&d);
                    Ok(Verdict::TRUE)
                })),
            FnRow::sync("dlg_isflagset", &["flag"], ANYREQ,
                "1 when dialog flag FLAG is set, -1 when not or without a dialog.",
                s.with(|st: &Dlg, ctx: &mut MsgContext, f: i64| {
                    let b = bit(f)?;
                    let set = current(st, ctx).is_some_and(|(d, _)| d.live().sflags & b != 0);
                    Ok(if set { Verdict::TRUE } else { Verdict::FALSE })
                })),
            FnRow::sync("dlg_set_timeout", &["timeout"], ANYREQ,
                "Sets the current dialog's lifetime to TIMEOUT seconds (from now once confirmed, else from its 2xx); 1, -1 without a dialog.",
                s.with(|st: &Dlg, ctx: &mut MsgContext, t: i64| {
                    let Some((d, _)) = current(st, ctx) else { return Ok(Verdict::FALSE) };
                    set_timeout(st, &d, t)
                })),
            FnRow::sync("dlg_set_timeout", &["timeout", "h_entry", "h_id"], RouteMask::ANY,
                "As dlg_set_timeout(timeout) for the dialog H_ENTRY/H_ID; -1 when there is none.",
                s.with(|st: &Dlg, _ctx: &mut MsgContext, t: i64, e: i64, i: i64| {
                    let Some(d) = st.shared.table.get(e as u32, i as u32) else { return Ok(Verdict::FALSE) };
                    set_timeout(st, &d, t)
                })),
            FnRow::sync("dlg_bye", &["side"], ANYREQ,
                "Ends the current confirmed dialog with a BYE sent by this proxy to SIDE: caller, callee or all; 1 sent, -1 no confirmed dialog.",
                s.with(|st: &Dlg, ctx: &mut MsgContext, side: Bytes| dlg_bye(st, ctx, side))),
            FnRow::declared::<(Bytes, Bytes)>("dlg_refer", &["side", "to"], ANYREQ, "Sends a REFER to SIDE of the dialog (not built)."),
            FnRow::declared::<(Bytes, Bytes, Bytes)>("dlg_bridge", &["from", "to", "op"], RouteMask::ANY, "Bridges two parties with a dialog of this proxy's (not built)."),
            FnRow::declared::<(Bytes, Bytes, Bytes)>("dlg_get", &["callid", "ftag", "ttag"], RouteMask::ANY, "Makes the dialog of the given ids current (not built)."),
            FnRow::declared::<(Bytes,)>("dlg_set_property", &["attr"], ANYREQ, "Sets ka-src, ka-dst or timeout-noreset on the dialog (not built)."),
            FnRow::declared::<(Bytes,)>("dlg_reset_property", &["attr"], ANYREQ, "Resets a dialog property (not built)."),
            FnRow::declared::<(Bytes, Bytes, i64)>("dlg_set_timeout_by_profile", &["profile", "value", "timeout"], RouteMask::ANY, "Sets the timeout of every dialog in a profile (not built)."),
            FnRow::declared::<(Bytes,)>("dlg_db_load_callid", &["callid"], RouteMask::ANY, "Loads the dialog of a Call-ID from the database (not built)."),
            FnRow::declared::<()>("dlg_db_load_extra", &[], RouteMask::ANY, "Loads dialogs other instances stored (not built)."),
            FnRow::declared::<(Bytes, Bytes, Bytes, i64)>("dlg_remote_profile", &["cmd", "profile", "value", "uid"], RouteMask::ANY, "Adds a remote dialog to a profile (not built)."),
        ]);
        pvs::declare(m, &state);
        rpc::declare(m, &shared);
    }
}

#[cfg(test)]
mod tests;
