//! `domain` (Kamailio's module of the same name): the local domains of a multi-domain
//! proxy, from the `domain` table, with per-domain attributes from `domain_attrs`.
//!
//! Both tables are read at start into one snapshot (a hash by lower-case domain name, and
//! the attributes by domain id), swapped whole by `domain.reload` while calls in flight
//! keep the one they took.

use bytes::Bytes;
use ferrosip_api::registry::FnRow;
use ferrosip_api::services::LocalHosts;
use ferrosip_api::{
    AvpNames, FnResult, Module, ModuleBuilder, ModuleParams, MsgContext, ParamType, RouteMask,
    RpcValue, Value, Verdict,
};
use ferrosip_db::{Db, DbValue};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

/// Table and column names, checked as SQL identifiers at load.
#[derive(Clone, Debug)]
pub struct Config {
    pub db_url: String,
    pub domain_table: String,
    pub attrs_table: String,
    pub did_col: String,
    pub domain_col: String,
    pub name_col: String,
    pub type_col: String,
    pub value_col: String,
    pub register_myself: bool,
}

impl Config {
    pub fn from_params(p: &ModuleParams) -> Result<Config, String> {
        let ident = |name: &str| -> Result<String, String> {
            let v = p.string(name);
            ferrosip_db::check_identifier(&v)
                .map(str::to_string)
                .map_err(|e| format!("{name}: {e}"))
        };
        Ok(Config {
            db_url: p.string("db_url"),
            domain_table: ident("domain_table")?,
            attrs_table: ident("domain_attrs_table")?,
            did_col: ident("did_col")?,
            domain_col: ident("domain_col")?,
            name_col: ident("name_col")?,
            type_col: ident("type_col")?,
            value_col: ident("value_col")?,
            register_myself: p.int("register_myself") != 0,
        })
    }
}

/// The loaded tables.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Lower-case domain -> domain id (the domain itself when `did` is NULL or empty).
    pub domains: HashMap<String, String>,
    /// Domain id -> attributes (name, value) in table order.
    pub attrs: HashMap<String, Vec<(String, Value)>>,
}

impl Snapshot {
    pub fn did(&self, domain: &[u8]) -> Option<&str> {
        let d = std::str::from_utf8(domain).ok()?;
        let d = d.trim_end_matches('.');
        match self.domains.get(d) {
            Some(did) => Some(did),
            None if d.bytes().any(|b| b.is_ascii_uppercase()) => self
                .domains
                .get(&d.to_ascii_lowercase())
                .map(String::as_str),
            None => None,
        }
    }
}

pub struct State {
    pub config: Config,
    avps: AvpNames,
    snapshot: RwLock<Arc<Snapshot>>,
    db: OnceLock<Db>,
    reloading: tokio::sync::Mutex<()>,
}

fn text(v: Option<&DbValue>) -> String {
    match v {
        None | Some(DbValue::Null) => String::new(),
        Some(DbValue::Str(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

impl State {
    pub fn new(config: Config, avps: AvpNames) -> State {
        State {
            config,
            avps,
            snapshot: RwLock::default(),
            db: OnceLock::new(),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn install(&self, s: Snapshot) {
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(s);
    }

    pub async fn start(&self) -> Result<(), String> {
        let db = Db::connect(&self.config.db_url)
            .await
            .map_err(|e| format!("cannot connect to db_url: {e}"))?;
        let _ = self.db.set(db);
        let summary = self.reload().await?;
        tracing::info!("domain: {summary}");
        Ok(())
    }

    /// Reads both tables and swaps the snapshot; on an error the old one stays.
    pub async fn reload(&self) -> Result<String, String> {
        let _one = self.reloading.lock().await;
        let db = self.db.get().ok_or("domain: not started (no database)")?;
        let c = &self.config;
        let fail = |t: &str, e: ferrosip_db::DbError| {
            format!("domain reload failed, the loaded domains stay in use: {t}: {e}")
        };
        let rows = db
            .select(&c.domain_table, &[&c.domain_col, &c.did_col], &[], None)
            .await
            .map_err(|e| fail(&c.domain_table, e))?;
        let mut snap = Snapshot::default();
        for row in &rows {
            let domain = text(row.first()).trim().to_ascii_lowercase();
            if domain.is_empty() {
                continue;
            }
            let did = text(row.get(1));
            let did = if did.is_empty() { domain.clone() } else { did };
            snap.domains.insert(domain, did);
        }
        let rows = db
            .select(
                &c.attrs_table,
                &[&c.did_col, &c.name_col, &c.type_col, &c.value_col],
                &[],
                Some(&c.did_col),
            )
            .await
            .map_err(|e| fail(&c.attrs_table, e))?;
        let mut attrs = 0;
        for row in &rows {
            let did = text(row.first());
            let name = text(row.get(1));
            let value = text(row.get(3));
            // Kamailio's attribute types: 0 integer, 2 string.
            let ty = row.get(2).and_then(|v| {
                v.as_int()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            });
            let value = match ty {
                Some(0) => match value.trim().parse::<i64>() {
                    Ok(i) => Value::Int(i),
                    Err(_) => {
                        return Err(format!(
                            "domain reload failed, the loaded domains stay in use: {} {did}/{name}: '{value}' is not an integer (type 0)",
                            c.attrs_table
                        ))
                    }
                },
                Some(2) => Value::from(value),
                other => {
                    return Err(format!(
                        "domain reload failed, the loaded domains stay in use: {} {did}/{name}: type {other:?} is not 0 (integer) or 2 (string)",
                        c.attrs_table
                    ))
                }
            };
            snap.attrs.entry(did).or_default().push((name, value));
            attrs += 1;
        }
        let summary = format!(
            "loaded {} domains and {attrs} attributes",
            snap.domains.len()
        );
        self.install(snap);
        Ok(summary)
    }

    fn is_local(&self, host: Option<&[u8]>) -> Verdict {
        Verdict::from(host.is_some_and(|h| self.snapshot().did(h).is_some()))
    }

    /// `lookup_domain`: the domain id into `$avp(<prefix>did)` and each attribute into
    /// `$avp(<prefix><name>)`.
    fn lookup(&self, ctx: &mut MsgContext, domain: &[u8], prefix: &[u8]) -> FnResult {
        let snap = self.snapshot();
        let Some(did) = snap.did(domain) else {
            return Ok(Verdict::FALSE);
        };
        let prefix = String::from_utf8_lossy(prefix);
        ctx.avps.push(
            self.avps.slot(&format!("{prefix}did")),
            Value::from(did.to_string()),
        );
        for (name, value) in snap.attrs.get(did).into_iter().flatten() {
            ctx.avps
                .push(self.avps.slot(&format!("{prefix}{name}")), value.clone());
        }
        Ok(Verdict::TRUE)
    }
}

fn from_host(ctx: &MsgContext) -> Option<Bytes> {
    let f = ctx.msg.from().ok()?;
    f.uri().host().map(Bytes::copy_from_slice)
}

/// A host that a domain function may be given as a URI or as a bare name.
fn host_of(arg: &[u8]) -> &[u8] {
    let a = arg.trim_ascii();
    a.strip_prefix(b"[")
        .and_then(|s| s.strip_suffix(b"]"))
        .unwrap_or(a)
}

/// The `domain` module.
pub struct DomainModule;

impl Module for DomainModule {
    fn name(&self) -> &'static str {
        "domain"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Local domain list from the database (multi-domain support), with per-domain attributes; also usable by \"myself\" checks.");
        m.param(
            "db_url",
            ParamType::Str,
            "mysql://kamailioro:kamailioro@localhost/kamailio",
            "Database holding the domain tables (sqlite://, mysql://, postgres://, text://); both are read at start.",
        );
        m.param(
            "domain_table",
            ParamType::Str,
            "domain",
            "Table of local domains.",
        );
        m.param(
            "domain_attrs_table",
            ParamType::Str,
            "domain_attrs",
            "Table of domain attributes (did, name, type 0 integer / 2 string, value).",
        );
        m.param(
            "did_col",
            ParamType::Str,
            "did",
            "Database column holding the domain id (NULL or empty: the domain name).",
        );
        m.param(
            "domain_col",
            ParamType::Str,
            "domain",
            "Database column holding the domain name.",
        );
        m.param(
            "name_col",
            ParamType::Str,
            "name",
            "Database column holding the attribute name.",
        );
        m.param(
            "type_col",
            ParamType::Str,
            "type",
            "Database column holding the attribute type.",
        );
        m.param(
            "value_col",
            ParamType::Str,
            "value",
            "Database column holding the attribute value.",
        );
        m.param(
            "register_myself",
            ParamType::Int,
            0_i64,
            "When 1, the local domains are also matched by \"myself\" and is_myself() (any port), after the server's own addresses and aliases; a domain.reload changes them at once.",
        );
        let state = {
            let avps = m.registry().avp_names();
            m.state(move |p| Ok(State::new(Config::from_params(p)?, avps.clone())))
        };
        {
            // Kamailio's register_myself: the core's myself check asks the domain table
            // too. Offered whenever the module is registered; it answers only for a
            // loaded module with the parameter set.
            let st = state.clone();
            m.provide(Arc::new(LocalHosts(Arc::new(move |host: &[u8]| {
                st.get().is_ok_and(|s| {
                    s.config.register_myself && s.snapshot().did(host_of(host)).is_some()
                })
            }))));
        }
        {
            let st = state.clone();
            m.on_start(move |_env| {
                let st = st.get();
                async move { st.map_err(|e| e.message)?.start().await }
            });
        }
        {
            let st = state.clone();
            m.rpc_async(
                "domain.reload",
                "Reads the domain and domain_attrs tables again and swaps them in at once; on an error the loaded domains stay.",
                move |_| {
                    let st = st.get().map_err(|e| e.message);
                    async move { st?.reload().await.map(RpcValue::Str) }
                },
            );
            let st = state.clone();
            m.rpc(
                "domain.dump",
                "Lists the local domains with their domain id and attributes.",
                move |_| {
                    let st = st.get().map_err(|e| e.message)?;
                    let snap = st.snapshot();
                    let mut names: Vec<&String> = snap.domains.keys().collect();
                    names.sort();
                    Ok(RpcValue::Array(
                        names
                            .into_iter()
                            .map(|d| {
                                let did = &snap.domains[d];
                                let attrs = snap
                                    .attrs
                                    .get(did)
                                    .into_iter()
                                    .flatten()
                                    .map(|(n, v)| {
                                        RpcValue::Str(format!(
                                            "{n}={}",
                                            String::from_utf8_lossy(
                                                &v.to_bytes().unwrap_or_default()
                                            )
                                        ))
                                    })
                                    .collect();
                                RpcValue::Struct(vec![
                                    ("domain".into(), RpcValue::Str(d.clone())),
                                    ("did".into(), RpcValue::Str(did.clone())),
                                    ("attrs".into(), RpcValue::Array(attrs)),
                                ])
                            })
                            .collect(),
                    ))
                },
            );
        }
        const ROUTES: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::BRANCH)
            .union(RouteMask::EVENT)
            .union(RouteMask::LOCAL);
        let s = &state;
        #[rustfmt::skip]
        m.functions([
            FnRow::sync("is_from_local", &[], ROUTES,
                "True (1) when the From URI host is a local domain; -1 otherwise.",
                s.with(|st: &State, ctx: &mut MsgContext| Ok(st.is_local(from_host(ctx).as_deref())))),
            FnRow::sync("is_uri_host_local", &[], ROUTES,
                "True (1) when the R-URI host is a local domain; -1 otherwise.",
                s.with(|st: &State, ctx: &mut MsgContext| {
                    let host = ctx.msg.request_uri_host().map(Bytes::copy_from_slice);
                    Ok(st.is_local(host.as_deref()))
                })),
            FnRow::sync("is_domain_local", &["domain"], ROUTES,
                "True (1) when the given domain (e.g. \"$fd\", \"$rd\") is local; -1 otherwise.",
                s.with(|st: &State, _ctx: &mut MsgContext, d: Bytes| Ok(st.is_local(Some(host_of(&d)))))),
            FnRow::sync("lookup_domain", &["domain"], ROUTES,
                "When the domain is local: its domain id into $avp(did) and each of its domain_attrs into $avp(<name>) (integers for type 0, strings for type 2); 1. -1 when it is not local.",
                s.with(|st: &State, ctx: &mut MsgContext, d: Bytes| st.lookup(ctx, host_of(&d), b""))),
            FnRow::sync("lookup_domain", &["domain", "prefix"], ROUTES,
                "As lookup_domain(domain) with the AVP names prefixed: $avp(<prefix>did), $avp(<prefix><name>).",
                s.with(|st: &State, ctx: &mut MsgContext, d: Bytes, prefix: Bytes| st.lookup(ctx, host_of(&d), &prefix))),
        ]);
    }
}

#[cfg(test)]
mod tests;
