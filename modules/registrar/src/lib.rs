//! `registrar`: processes REGISTER requests (`save`) into usrloc's location table and
//! routes requests to the registered contacts (`lookup`), as Kamailio's registrar does
//! (RFC 3261 §10, RFC 3327 Path, the storable parts of RFC 5626).
//!
//! Every function that reads or writes the location table is registered as an async
//! handler: in usrloc's db_mode 3 it queries the database and the script waits without
//! holding a worker; in db_mode 0-2 it works on memory at once and its future is ready
//! when returned, so the route does not suspend. db_mode 1 waits for the row to be
//! written before replying (write-through).

mod common;
mod config;
mod lookup;
mod params;
pub mod save;

pub use config::RegConfig;

use bytes::Bytes;
use common::extract_aor;
use ferrosip_api::args::{value_to_text, ArgKind, ArgType, CallEnv, FixupEnv, RawArg};
use ferrosip_api::registry::BoxFuture;
use ferrosip_api::services::ReplyHeaders;
use ferrosip_api::tm::Branches;
use ferrosip_api::{
    apply_result, ApplyResult, FnError, FnResult, Module, ModuleApi, ModuleBuilder, MsgContext,
    PvRef, RouteKind, RouteMask, StateSlot, Value, Verdict,
};
use ferrosip_mod_usrloc::contact::method_bit;
use ferrosip_mod_usrloc::{Change, Contact, DbMode, RecordEdit, Usrloc, UsrlocApi};
use save::{apply_register, parse_register, reply_headers, RegError, RegisterRequest, SaveFlags};
use std::sync::Arc;

/// The location table a function works on (its first argument, a literal as in
/// Kamailio), with what save() needs from the module parameters at load.
#[derive(Clone)]
pub struct Table {
    name: Arc<str>,
    /// `received_avp`, bound at load.
    received: Option<PvRef>,
}

impl ArgType for Table {
    type Fixed = Table;
    const KIND: ArgKind = ArgKind::Custom("location table name");

    fn fixup(raw: RawArg, env: &dyn FixupEnv) -> Result<Table, String> {
        let name = match raw {
            RawArg::Str(s) | RawArg::Ident(s) => s,
            other => {
                return Err(format!(
                    "the location table must be written literally, not as {}",
                    other.describe()
                ))
            }
        };
        let table = Table::named(name, env)?;
        // The table must exist (and be loaded from the database) before the first request.
        if let Some(ul) = env.binder().registry.api::<UsrlocApi>() {
            ul.note_table(&table.name);
        }
        Ok(table)
    }

    fn eval(fixed: &Table, _ctx: &MsgContext) -> Result<Table, FnError> {
        Ok(fixed.clone())
    }

    /// A table named at run time that no script line names is created empty in memory
    /// on its first use (usrloc does not load it from the database).
    fn from_value(value: Value, env: &dyn CallEnv) -> Result<Table, FnError> {
        Table::named(value_to_text(value)?, env).map_err(FnError::new)
    }
}

impl Table {
    /// The table `name`, with `received_avp` bound as the registrar's parameters say.
    fn named(name: String, env: &dyn CallEnv) -> Result<Table, String> {
        if name.is_empty() || name.contains('$') {
            return Err(format!(
                "\"{name}\" is not a table name (a literal such as \"location\")"
            ));
        }
        let received = match env.module_param("registrar", "received_avp") {
            Some(Value::Str(text)) if !text.is_empty() => {
                let text = String::from_utf8_lossy(&text).into_owned();
                Some(
                    env.binder()
                        .parse_pv(&text)
                        .map_err(|e| format!("registrar received_avp \"{text}\": {e}"))?,
                )
            }
            _ => None,
        };
        Ok(Table {
            name: name.into(),
            received,
        })
    }
}

/// save()'s flags: a number in decimal or hexadecimal (`"0x04"`), as Kamailio takes it.
pub struct FlagBits(i64);

fn parse_flag_bits(s: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(s).ok()?.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => i64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

impl ArgType for FlagBits {
    type Fixed = ferrosip_api::args::Fixable<i64>;
    const KIND: ArgKind = ArgKind::Int;

    fn fixup(raw: RawArg, env: &dyn FixupEnv) -> Result<Self::Fixed, String> {
        use ferrosip_api::args::Fixable;
        if let RawArg::Int(i) = raw {
            return Ok(Fixable::Const(i));
        }
        let f = ferrosip_api::args::raw_to_format(raw, env)?;
        if f.is_literal() {
            parse_flag_bits(f.text().as_bytes())
                .map(Fixable::Const)
                .ok_or_else(|| {
                    format!("expected flags (decimal or 0x hex), found \"{}\"", f.text())
                })
        } else {
            Ok(Fixable::Dynamic(f))
        }
    }

    fn eval(fixed: &Self::Fixed, ctx: &MsgContext) -> Result<FlagBits, FnError> {
        use ferrosip_api::args::Fixable;
        match fixed {
            Fixable::Const(i) => Ok(FlagBits(*i)),
            Fixable::Dynamic(f) => {
                let b = f.eval(ctx)?;
                parse_flag_bits(&b).map(FlagBits).ok_or_else(|| {
                    FnError::new(format!(
                        "flags \"{}\" are not a number",
                        String::from_utf8_lossy(&b)
                    ))
                })
            }
        }
    }

    fn from_value(value: Value, _env: &dyn CallEnv) -> Result<FlagBits, FnError> {
        match value {
            Value::Int(i) => Ok(FlagBits(i)),
            other => {
                let text = value_to_text(other)?;
                parse_flag_bits(text.as_bytes())
                    .map(FlagBits)
                    .ok_or_else(|| {
                        FnError::new(format!(
                            "expected flags (decimal or 0x hex), found \"{text}\""
                        ))
                    })
            }
        }
    }
}

/// What the handlers share: usrloc's API (through the registry) and the module state
/// (its parameters, built by init).
struct Shared {
    ul: ModuleApi<UsrlocApi>,
    cfg: StateSlot<RegConfig>,
}

impl Shared {
    fn get(&self) -> Result<(Arc<Usrloc>, Arc<RegConfig>), FnError> {
        let ul = self
            .ul
            .get()
            .ok_or_else(|| FnError::new("registrar: usrloc is not built in"))?
            .store()?;
        Ok((ul, self.cfg.get()?))
    }
}

fn ready(result: FnResult) -> BoxFuture<'static, ApplyResult> {
    Box::pin(std::future::ready(apply_result(move |_| result)))
}

/// A reply prepared by save() with flag 0x02, sent by reg_send_reply().
struct PendingReply {
    code: u16,
    reason: &'static str,
    headers: String,
}

/// Replies through the transaction when the request has one, else statelessly (as sl's
/// send_reply), with `headers` added.
fn send_reply(ctx: &mut MsgContext, code: u16, reason: &str, headers: &str) -> Result<(), FnError> {
    if !headers.is_empty() {
        ctx.ext
            .get_or_insert_with(ReplyHeaders::default)
            .0
            .extend_from_slice(headers.as_bytes());
    }
    let services = ctx.services("save")?;
    if let Some(tm) = services.transactions() {
        if ctx.route == RouteKind::Failure || tm.exists(ctx) {
            tm.reply(ctx, code, reason.as_bytes())?;
            return Ok(());
        }
    }
    services.reply(ctx, code, reason.as_bytes())
}

fn internal(e: String) -> RegError {
    tracing::error!(error = %e, "registrar: location storage failed");
    RegError {
        code: 500,
        reason: "Server Internal Error",
        headers: String::new(),
        rc: -1,
    }
}

/// Answers a save() (or keeps the answer for reg_send_reply()) and gives its code.
fn finish_save(
    ctx: &mut MsgContext,
    result: Result<(save::Saved, Vec<save::Binding>), RegError>,
    req: &RegisterRequest,
    cfg: &RegConfig,
    now: i64,
) -> FnResult {
    let (code, reason, headers, rc) = match result {
        Ok((saved, bindings)) => (
            200,
            "OK",
            reply_headers(&bindings, req, cfg, now),
            saved as i32,
        ),
        Err(e) => {
            tracing::debug!(
                code = e.code,
                reason = e.reason,
                "registrar: REGISTER refused"
            );
            (e.code, e.reason, e.headers, e.rc)
        }
    };
    finish_reply(ctx, code, reason, headers, req.flags)?;
    Ok(Verdict::code(rc))
}

fn finish_reply(
    ctx: &mut MsgContext,
    code: u16,
    reason: &'static str,
    headers: String,
    flags: SaveFlags,
) -> Result<(), FnError> {
    if flags.no_reply || ctx.route == RouteKind::TmOnReply || ctx.route == RouteKind::CoreOnReply {
        ctx.ext.insert(PendingReply {
            code,
            reason,
            headers,
        });
        return Ok(());
    }
    send_reply(ctx, code, reason, &headers)
}

fn save(
    sh: &Shared,
    ctx: &mut MsgContext,
    table: Table,
    flags: i64,
    uri: Option<Bytes>,
) -> BoxFuture<'static, ApplyResult> {
    let (ul, cfg) = match sh.get() {
        Ok(v) => v,
        Err(e) => return ready(Err(e)),
    };
    let ulcfg = ul.config();
    let flags = SaveFlags::from_bits(flags);
    let now = ul.unix_now();
    let req = match parse_register(
        ctx,
        &cfg,
        &ulcfg,
        flags,
        uri.as_deref(),
        table.received.as_ref(),
    ) {
        Ok(r) => r,
        Err(e) => {
            let rc = e.rc;
            let sent = finish_reply(ctx, e.code, e.reason, e.headers, flags);
            return ready(sent.map(|_| Verdict::code(rc)));
        }
    };
    if ulcfg.db_mode == DbMode::DbOnly {
        let fetch = ul.fetch(&table.name, &req.aor);
        return Box::pin(async move {
            let result = match fetch.await {
                Err(e) => Err(internal(e)),
                Ok(mut contacts) => {
                    let mut journal = Vec::new();
                    let applied = apply_register(
                        &mut RecordEdit::new(&req.aor, &mut contacts, Some(&mut journal)),
                        &req,
                        &cfg,
                        &ulcfg,
                        now,
                        &mut || ul.new_ruid(),
                    );
                    match applied {
                        Ok(ok) => match ul.write(&table.name, journal).await {
                            Ok(()) => Ok(ok),
                            Err(e) => Err(internal(e)),
                        },
                        Err(e) => Err(e),
                    }
                }
            };
            apply_result(move |ctx| finish_save(ctx, result, &req, &cfg, now))
        });
    }
    let dom = ul.domain(&table.name);
    let mut journal = Vec::new();
    let persist = ul.persists(flags.mem_only);
    let result = dom.edit(&req.aor, persist.then_some(&mut journal), |rec| {
        apply_register(rec, &req, &cfg, &ulcfg, now, &mut || ul.new_ruid())
    });
    match ul.commit(&table.name, journal) {
        None => ready(finish_save(ctx, result, &req, &cfg, now)),
        Some(write) => Box::pin(async move {
            let result = match write.await {
                Ok(()) => result,
                Err(e) => Err(internal(e)),
            };
            apply_result(move |ctx| finish_save(ctx, result, &req, &cfg, now))
        }),
    }
}

/// The contacts of each address of record (from memory, or the database in db_mode 3),
/// then `then` on the message.
fn with_contacts(
    ul: &Usrloc,
    table: &str,
    aors: Vec<Vec<u8>>,
    ctx: &mut MsgContext,
    then: impl FnOnce(&mut MsgContext, Vec<Vec<Contact>>) -> FnResult + Send + 'static,
) -> BoxFuture<'static, ApplyResult> {
    if ul.config().db_mode == DbMode::DbOnly {
        let fetches: Vec<_> = aors.iter().map(|a| ul.fetch(table, a)).collect();
        return Box::pin(async move {
            let mut all = Vec::with_capacity(fetches.len());
            for f in fetches {
                match f.await {
                    Ok(c) => all.push(c),
                    Err(e) => {
                        tracing::error!(error = %e, "registrar: location lookup failed");
                        return apply_result(|_| Ok(Verdict::code(lookup::INTERNAL_ERROR)));
                    }
                }
            }
            apply_result(move |ctx| then(ctx, all))
        });
    }
    let dom = ul.domain(table);
    let all = aors
        .iter()
        .map(|a| dom.read(a, <[Contact]>::to_vec))
        .collect();
    ready(then(ctx, all))
}

/// The address of record of `uri`, else of the R-URI (of the To URI for a reply).
fn target_aor(
    ctx: &MsgContext,
    ul: &Usrloc,
    cfg: &RegConfig,
    uri: Option<&[u8]>,
) -> Option<Vec<u8>> {
    let ulcfg = ul.config();
    let to;
    let uri = match uri {
        Some(u) => u,
        None if ctx.msg.is_request() => ctx.msg.request_uri()?,
        None => {
            to = ctx.msg.to().ok()?.uri_bytes().to_vec();
            &to
        }
    };
    extract_aor(uri, ulcfg.use_domain, cfg.case_sensitive, &cfg.realm_prefix)
}

/// The method bit lookup() filters contacts by (method_filtering, initial requests).
fn method_filter(ctx: &MsgContext, cfg: &RegConfig) -> Option<u32> {
    if !cfg.method_filtering || ctx.msg.to_tag().is_some() {
        return None;
    }
    ctx.msg.method_bytes().map(method_bit).filter(|b| *b != 0)
}

fn lookup(
    sh: &Shared,
    ctx: &mut MsgContext,
    table: Table,
    uri: Option<Bytes>,
    dset_only: bool,
) -> BoxFuture<'static, ApplyResult> {
    let (ul, cfg) = match sh.get() {
        Ok(v) => v,
        Err(e) => return ready(Err(e)),
    };
    let Some(aor) = target_aor(ctx, &ul, &cfg, uri.as_deref()) else {
        return ready(Ok(Verdict::code(lookup::INTERNAL_ERROR)));
    };
    let method = method_filter(ctx, &cfg);
    let desc_time = ul.config().desc_time_order;
    let opts = lookup::RouteOpts {
        append_branches: cfg.append_branches,
        dset_only,
        path_check_local: cfg.path_check_local,
    };
    let clock = ul.clock();
    with_contacts(&ul, &table.name, vec![aor], ctx, move |ctx, all| {
        let contacts = all.into_iter().next().unwrap_or_default();
        match lookup::pick(&contacts, clock.unix_secs() as i64, method, desc_time) {
            Ok(targets) => lookup::route_to(ctx, targets, opts),
            Err(rc) => Ok(Verdict::code(rc)),
        }
    })
}

/// lookup() for the R-URI and for every branch that has only a URI.
fn lookup_branches(
    sh: &Shared,
    ctx: &mut MsgContext,
    table: Table,
) -> BoxFuture<'static, ApplyResult> {
    let (ul, cfg) = match sh.get() {
        Ok(v) => v,
        Err(e) => return ready(Err(e)),
    };
    let ulcfg = ul.config();
    let branches = ctx.ext.remove::<Branches>().unwrap_or_default().0;
    let mut aors = Vec::new();
    let main = target_aor(ctx, &ul, &cfg, None);
    aors.push(main.clone().unwrap_or_default());
    let mut plain = Vec::new();
    let mut kept = Vec::new();
    for b in branches {
        let aor = (b.dst_uri.is_none() && b.q.is_none() && b.bflags == 0)
            .then(|| {
                extract_aor(
                    &b.uri,
                    ulcfg.use_domain,
                    cfg.case_sensitive,
                    &cfg.realm_prefix,
                )
            })
            .flatten();
        match aor {
            Some(a) => {
                aors.push(a);
                plain.push(b);
            }
            None => kept.push(b),
        }
    }
    let method = method_filter(ctx, &cfg);
    let opts = lookup::RouteOpts {
        append_branches: cfg.append_branches,
        dset_only: false,
        path_check_local: cfg.path_check_local,
    };
    let clock = ul.clock();
    with_contacts(&ul, &table.name, aors, ctx, move |ctx, all| {
        let now = clock.unix_secs() as i64;
        let mut all = all.into_iter();
        let main_contacts = all.next().unwrap_or_default();
        if !kept.is_empty() {
            ctx.ext.get_or_insert_with(Branches::default).0.extend(kept);
        }
        let mut rc = match main {
            None => lookup::INTERNAL_ERROR,
            Some(_) => match lookup::pick(&main_contacts, now, method, ulcfg.desc_time_order) {
                Ok(t) => lookup::route_to(ctx, t, opts)?.rc(),
                Err(rc) => rc,
            },
        };
        for (branch, contacts) in plain.into_iter().zip(all) {
            match lookup::pick(&contacts, now, method, ulcfg.desc_time_order) {
                Ok(t) => {
                    let dset = lookup::RouteOpts {
                        dset_only: true,
                        ..opts
                    };
                    let taken = if opts.append_branches {
                        t
                    } else {
                        t.into_iter().take(1).collect()
                    };
                    lookup::route_to(ctx, taken, dset)?;
                    rc = 1;
                }
                Err(_) => {
                    // Not a local user: the branch stays as it was.
                    ctx.ext.get_or_insert_with(Branches::default).0.push(branch);
                }
            }
        }
        Ok(Verdict::code(rc))
    })
}

fn registered(
    sh: &Shared,
    ctx: &mut MsgContext,
    table: Table,
    uri: Option<Bytes>,
) -> BoxFuture<'static, ApplyResult> {
    let (ul, cfg) = match sh.get() {
        Ok(v) => v,
        Err(e) => return ready(Err(e)),
    };
    let Some(aor) = target_aor(ctx, &ul, &cfg, uri.as_deref()) else {
        return ready(Ok(Verdict::code(-1)));
    };
    let clock = ul.clock();
    with_contacts(&ul, &table.name, vec![aor], ctx, move |_, all| {
        let now = clock.unix_secs() as i64;
        let found = all.iter().flatten().any(|c| c.is_valid(now));
        Ok(Verdict::code(if found { 1 } else { -1 }))
    })
}

/// Removes contacts: all of `aor`, or the one with `ruid`. 1 done, -3 none found.
fn remove_contacts(rec: &mut RecordEdit<'_>, ruid: Option<&[u8]>) -> i32 {
    let before = rec.contacts().len();
    match ruid {
        None => rec.clear(),
        Some(r) => {
            if let Some(i) = rec.contacts().iter().position(|c| c.ruid() == r) {
                rec.remove(i);
            }
        }
    }
    if rec.contacts().len() < before {
        1
    } else {
        -3
    }
}

fn unregister(
    sh: &Shared,
    _ctx: &mut MsgContext,
    table: Table,
    uri: Bytes,
    ruid: Option<Bytes>,
) -> BoxFuture<'static, ApplyResult> {
    let (ul, cfg) = match sh.get() {
        Ok(v) => v,
        Err(e) => return ready(Err(e)),
    };
    let ulcfg = ul.config();
    let ruid = ruid.filter(|r| !r.is_empty());
    let aor = if uri.is_empty() {
        None
    } else {
        match extract_aor(
            &uri,
            ulcfg.use_domain,
            cfg.case_sensitive,
            &cfg.realm_prefix,
        ) {
            Some(a) => Some(a),
            None => return ready(Ok(Verdict::code(-1))),
        }
    };
    if ulcfg.db_mode == DbMode::DbOnly {
        let write_ruid = match (&aor, &ruid) {
            (None, Some(r)) => Some(r.clone()),
            (None, None) => return ready(Ok(Verdict::code(-1))),
            _ => None,
        };
        if let Some(r) = write_ruid {
            let write = ul.write(
                &table.name,
                vec![Change::Delete {
                    ruid: r.as_ref().into(),
                }],
            );
            return Box::pin(async move {
                let rc = match write.await {
                    Ok(()) => 1,
                    Err(e) => {
                        internal(e);
                        -2
                    }
                };
                apply_result(move |_| Ok(Verdict::code(rc)))
            });
        }
        let aor = aor.unwrap_or_default();
        let fetch = ul.fetch(&table.name, &aor);
        return Box::pin(async move {
            let rc = match fetch.await {
                Err(e) => {
                    internal(e);
                    -2
                }
                Ok(mut contacts) => {
                    let mut journal = Vec::new();
                    let rc = remove_contacts(
                        &mut RecordEdit::new(&aor, &mut contacts, Some(&mut journal)),
                        ruid.as_deref(),
                    );
                    match ul.write(&table.name, journal).await {
                        Ok(()) => rc,
                        Err(e) => {
                            internal(e);
                            -2
                        }
                    }
                }
            };
            apply_result(move |_| Ok(Verdict::code(rc)))
        });
    }
    let dom = ul.domain(&table.name);
    let aor = match (aor, &ruid) {
        (Some(a), _) => a,
        (None, Some(r)) => {
            // Only the ruid: find its record.
            let mut owner = None;
            dom.for_each(|aor, contacts| {
                if owner.is_none() && contacts.iter().any(|c| c.ruid() == r.as_ref()) {
                    owner = Some(aor.to_vec());
                }
            });
            match owner {
                Some(a) => a,
                None => return ready(Ok(Verdict::code(-3))),
            }
        }
        (None, None) => return ready(Ok(Verdict::code(-1))),
    };
    let mut journal = Vec::new();
    let persist = ul.persists(false);
    let rc = dom.edit(&aor, persist.then_some(&mut journal), |rec| {
        remove_contacts(rec, ruid.as_deref())
    });
    match ul.commit(&table.name, journal) {
        None => ready(Ok(Verdict::code(rc))),
        Some(write) => Box::pin(async move {
            let rc = match write.await {
                Ok(()) => rc,
                Err(e) => {
                    internal(e);
                    -2
                }
            };
            apply_result(move |_| Ok(Verdict::code(rc)))
        }),
    }
}

/// The `registrar` module.
pub struct RegistrarModule;

impl Module for RegistrarModule {
    fn name(&self) -> &'static str {
        "registrar"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("SIP registrar: save() stores the bindings of a REGISTER in usrloc's location table and answers with every current binding; lookup() sends requests to the registered contacts (R-URI, $du from Path or the NAT address, parallel branches by q). Needs usrloc loaded before it.");
        m.example(include_str!("../example.cfg"));
        params::declare(m);
        m.needs("usrloc");
        let shared = Arc::new(Shared {
            ul: m.uses::<UsrlocApi>(),
            cfg: m.state(RegConfig::from_params),
        });
        let save_routes =
            RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT;
        let sh = shared.clone();
        m.function("save")
            .args(&["domain"])
            .routes(save_routes)
            .doc("Applies the REGISTER's Contact/Expires to the location table `domain` and replies 200 OK with every current binding (each with its expires, q and received), a Date header and the Path when asked for. Returns 1 contacts inserted, 2 updated, 3 deleted, 4 only returned (query or retransmission); -1 refused (the error reply is sent: 400 for bad headers or an out-of-order CSeq, 423 with Min-Expires, 420 for an unsupported Path, 500 storage failure), -2 too many contacts (503).")
            .async_handler(move |ctx: &mut MsgContext, t: Table| save(&sh, ctx, t, 0, None));
        let sh = shared.clone();
        m.function("save")
            .args(&["domain", "flags"])
            .routes(save_routes)
            .doc("save() with flags: 0x01 memory only (no database write), 0x02 no reply (reg_send_reply() sends it), 0x04 one contact per address of record (others removed), 0x08 no expires_range/default_expires_range. Same return codes.")
            .async_handler(move |ctx: &mut MsgContext, t: Table, f: FlagBits| {
                save(&sh, ctx, t, f.0, None)
            });
        let sh = shared.clone();
        m.function("save")
            .args(&["domain", "flags", "uri"])
            .routes(save_routes)
            .doc("save() for the address of record of `uri` instead of the To URI. Same return codes.")
            .async_handler(move |ctx: &mut MsgContext, t: Table, f: FlagBits, uri: Bytes| {
                save(&sh, ctx, t, f.0, Some(uri))
            });
        let lookup_routes = RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT;
        let sh = shared.clone();
        m.function("lookup")
            .args(&["domain"])
            .routes(lookup_routes)
            .doc("Sets the R-URI to the best contact (highest q) of the R-URI's address of record, $du to its Path's first hop (Path also added as Route) or to the address it registered from behind NAT, and with append_branches the other contacts as branches for parallel forking. 1 found; -1 no valid contact; -2 contacts exist but none allows the method (method_filtering); -3 internal error (unusable URI, database failure).")
            .async_handler(move |ctx: &mut MsgContext, t: Table| lookup(&sh, ctx, t, None, false));
        let sh = shared.clone();
        m.function("lookup")
            .args(&["domain", "uri"])
            .routes(lookup_routes)
            .doc("lookup() for the address of record of `uri` instead of the R-URI. Same return codes.")
            .async_handler(move |ctx: &mut MsgContext, t: Table, uri: Bytes| {
                lookup(&sh, ctx, t, Some(uri), false)
            });
        let sh = shared.clone();
        m.function("lookup_to_dset")
            .args(&["domain"])
            .routes(lookup_routes)
            .doc("Adds every contact of the R-URI's address of record as a branch, leaving the R-URI alone. lookup()'s return codes.")
            .async_handler(move |ctx: &mut MsgContext, t: Table| lookup(&sh, ctx, t, None, true));
        let sh = shared.clone();
        m.function("lookup_to_dset")
            .args(&["domain", "uri"])
            .routes(lookup_routes)
            .doc("lookup_to_dset() for the address of record of `uri`. lookup()'s return codes.")
            .async_handler(move |ctx: &mut MsgContext, t: Table, uri: Bytes| {
                lookup(&sh, ctx, t, Some(uri), true)
            });
        let sh = shared.clone();
        m.function("lookup_branches")
            .args(&["domain"])
            .routes(lookup_routes)
            .doc("lookup() for the R-URI and for every branch that has only a URI (no $du, q or flags); branches of unknown users stay as they were. 1 when something was found, else lookup()'s code for the R-URI.")
            .async_handler(move |ctx: &mut MsgContext, t: Table| lookup_branches(&sh, ctx, t));
        let sh = shared.clone();
        m.function("registered")
            .args(&["domain"])
            .routes(RouteMask::ANY)
            .doc("1 when the address of record of the R-URI (the To URI for a reply) has a valid contact, -1 otherwise; the message is not changed.")
            .async_handler(move |ctx: &mut MsgContext, t: Table| registered(&sh, ctx, t, None));
        let sh = shared.clone();
        m.function("registered")
            .args(&["domain", "uri"])
            .routes(RouteMask::ANY)
            .doc("registered() for the address of record of `uri`; 1 found, -1 otherwise.")
            .async_handler(move |ctx: &mut MsgContext, t: Table, uri: Bytes| {
                registered(&sh, ctx, t, Some(uri))
            });
        let sh = shared.clone();
        m.function("registered")
            .args(&["domain", "uri", "match_option"])
            .routes(RouteMask::ANY)
            .doc("registered(domain, uri); match_option (Call-ID/received/contact matching through xavp_cfg) is accepted and ignored: XAVPs are not available.")
            .async_handler(move |ctx: &mut MsgContext, t: Table, uri: Bytes, _o: i64| {
                registered(&sh, ctx, t, Some(uri))
            });
        let sh = shared.clone();
        m.function("registered")
            .args(&["domain", "uri", "match_option", "match_action"])
            .routes(RouteMask::ANY)
            .doc("registered(domain, uri); match_option and match_action are accepted and ignored: XAVPs are not available.")
            .async_handler(
                move |ctx: &mut MsgContext, t: Table, uri: Bytes, _o: i64, _a: i64| {
                    registered(&sh, ctx, t, Some(uri))
                },
            );
        m.function("add_sock_hdr")
            .args(&["hdr_name"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Adds a header `hdr_name` with the receiving socket (proto:ip:port), for a registrar behind this proxy that stores it (sock_flag/sock_hdr_name); 1 on success, -1 on a bad header name.")
            .handler(|ctx: &mut MsgContext, name: Bytes| {
                let name = String::from_utf8_lossy(&name).into_owned();
                let local = ctx.net.local;
                let ip = match local.ip() {
                    std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                    v4 => v4.to_string(),
                };
                let value = format!("{}:{}:{}", ctx.net.proto.name(), ip, local.port());
                Ok(Verdict::code(match ctx.msg.add_header(&name, value) {
                    Ok(()) => 1,
                    Err(_) => -1,
                }))
            });
        let sh = shared.clone();
        m.function("unregister")
            .args(&["domain", "uri"])
            .routes(RouteMask::ANY)
            .doc("Removes every contact of the address of record of `uri`; 1 done, -1 bad URI, -2 storage error, -3 no contact.")
            .async_handler(move |ctx: &mut MsgContext, t: Table, uri: Bytes| {
                unregister(&sh, ctx, t, uri, None)
            });
        let sh = shared;
        m.function("unregister")
            .args(&["domain", "uri", "ruid"])
            .routes(RouteMask::ANY)
            .doc("Removes the contact with this ruid (`uri` may be empty); 1 done, -1 bad URI, -2 storage error, -3 no such contact.")
            .async_handler(move |ctx: &mut MsgContext, t: Table, uri: Bytes, ruid: Bytes| {
                unregister(&sh, ctx, t, uri, Some(ruid))
            });
        m.function("reg_send_reply")
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sends the reply save() prepared when called with flag 0x02; 1 on success, -1 when there is none.")
            .handler(|ctx: &mut MsgContext| match ctx.ext.remove::<PendingReply>() {
                None => Ok(Verdict::code(-1)),
                Some(r) => {
                    send_reply(ctx, r.code, r.reason, &r.headers)?;
                    Ok(Verdict::TRUE)
                }
            });
        m.function("reg_fetch_contacts")
            .args(&["domain", "uri", "profile"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Loads the contacts of the address of record into $ulc(profile); 1 found, -1 none or error.")
            .declared::<(Bytes, Bytes, Bytes)>();
        m.function("reg_free_contacts")
            .args(&["profile"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Frees the contacts loaded into $ulc(profile); always 1.")
            .declared::<(Bytes,)>();
        m.function("lookup_xavp")
            .args(&["ultable", "uri", "rxname", "cxname"])
            .routes(RouteMask::ANY)
            .doc("Stores the contacts of the address of record as XAVPs; 1 found, negative otherwise.")
            .declared::<(Bytes, Bytes, Bytes, Bytes)>();
        m.function("reg_from_user")
            .args(&["ultable", "uri", "mode"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the source address matches a contact of the address of record (mode bit 1 also compares port); -1 otherwise.")
            .declared::<(Bytes, Bytes, i64)>();
    }
}

#[cfg(test)]
mod tests;
