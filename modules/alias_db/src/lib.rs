//! `alias_db` (Kamailio's module of the same name): aliases kept in a database table
//! (Kamailio's `dbaliases`), looked up for each call without caching, so a row written by
//! provisioning counts at once. `alias_db_lookup()` rewrites the R-URI to the canonical
//! user (the reverse with the `r` flag); `alias_db_find()` stores the result in a variable.

use bytes::Bytes;
use ferrosip_api::args::PvOut;
use ferrosip_api::registry::{apply_result, ApplyResult, FnRow};
use ferrosip_api::tm::{BranchTarget, Branches};
use ferrosip_api::{
    FnError, FnResult, Module, ModuleBuilder, ModuleParams, MsgContext, ParamType, RouteMask,
    SetOp, Value, Verdict,
};
use ferrosip_db::{Cond, Db, DbValue};
use ferrosip_sip::Uri;
use std::future::Future;
use std::sync::{Arc, OnceLock};

/// Rows one lookup reads at most (the first is the answer, the others branches): a
/// table with thousands of rows for one alias must not make one call read them all.
const ROWS_LIMIT: usize = 32;

#[derive(Clone, Debug)]
pub struct Config {
    pub db_url: String,
    pub use_domain: bool,
    pub domain_prefix: String,
    pub append_branches: bool,
    pub user_col: String,
    pub domain_col: String,
    pub alias_user_col: String,
    pub alias_domain_col: String,
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
            use_domain: p.int("use_domain") != 0,
            domain_prefix: p.string("domain_prefix"),
            append_branches: p.int("append_branches") != 0,
            user_col: ident("user_column")?,
            domain_col: ident("domain_column")?,
            alias_user_col: ident("alias_user_column")?,
            alias_domain_col: ident("alias_domain_column")?,
        })
    }
}

pub struct State {
    pub config: Config,
    db: OnceLock<Db>,
}

/// The lookup flags: `d` no domain, `u` the domain too, `r` reverse (canonical ->
/// alias). Without `d`/`u`, `use_domain` decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags {
    pub use_domain: bool,
    pub reverse: bool,
}

impl Flags {
    pub fn parse(cfg: &Config, flags: &[u8]) -> Result<Flags, FnError> {
        let mut f = Flags {
            use_domain: cfg.use_domain,
            reverse: false,
        };
        for b in flags {
            match b.to_ascii_lowercase() {
                b'd' => f.use_domain = false,
                b'u' => f.use_domain = true,
                b'r' => f.reverse = true,
                _ => {
                    return Err(FnError::new(format!(
                        "alias_db: unknown flag '{}' (d, u, r)",
                        *b as char
                    )))
                }
            }
        }
        Ok(f)
    }
}

/// One query prepared from the message before the await.
struct Query {
    db: Db,
    table: String,
    cols: [String; 2],
    keys: Vec<(String, String)>,
    scheme: &'static str,
    /// The input host, for rows whose domain is empty.
    host: String,
}

impl Query {
    fn new(st: &State, table: &[u8], uri: &[u8], flags: Flags) -> Result<Query, FnError> {
        let c = &st.config;
        let db = st
            .db
            .get()
            .cloned()
            .ok_or_else(|| FnError::new("alias_db: not started (no database)"))?;
        let table = String::from_utf8_lossy(table).into_owned();
        ferrosip_db::check_identifier(&table)
            .map_err(|e| FnError::new(format!("alias_db: table: {e}")))?;
        let u = Uri::parse(uri).map_err(|_| FnError::new("alias_db: invalid URI"))?;
        let user = String::from_utf8_lossy(u.user().unwrap_or_default()).into_owned();
        let host = String::from_utf8_lossy(u.host().unwrap_or_default()).into_owned();
        let scheme = if u.scheme().eq_ignore_ascii_case(b"sips") {
            "sips:"
        } else {
            "sip:"
        };
        let (key_user, key_domain, out_user, out_domain) = if flags.reverse {
            (
                &c.user_col,
                &c.domain_col,
                &c.alias_user_col,
                &c.alias_domain_col,
            )
        } else {
            (
                &c.alias_user_col,
                &c.alias_domain_col,
                &c.user_col,
                &c.domain_col,
            )
        };
        let mut keys = vec![(key_user.clone(), user)];
        if flags.use_domain {
            let domain = host
                .strip_prefix(c.domain_prefix.as_str())
                .filter(|_| !c.domain_prefix.is_empty())
                .unwrap_or(&host)
                .to_string();
            keys.push((key_domain.clone(), domain));
        }
        Ok(Query {
            db,
            table,
            cols: [out_user.clone(), out_domain.clone()],
            keys,
            scheme,
            host,
        })
    }

    /// The URIs found, first the answer.
    async fn run(self) -> Result<Vec<String>, String> {
        let conds: Vec<Cond<'_>> = self
            .keys
            .iter()
            .map(|(k, v)| Cond::eq(k, v.as_str()))
            .collect();
        let rows = self
            .db
            .select(&self.table, &[&self.cols[0], &self.cols[1]], &conds, None)
            .await
            .map_err(|e| e.to_string())?;
        let text = |v: Option<&DbValue>| match v {
            Some(DbValue::Str(s)) => s.clone(),
            Some(DbValue::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        Ok(rows
            .iter()
            .take(ROWS_LIMIT)
            .filter_map(|row| {
                let user = text(row.first());
                if user.is_empty() {
                    return None;
                }
                let domain = text(row.get(1));
                let domain = if domain.is_empty() {
                    &self.host
                } else {
                    &domain
                };
                Some(format!("{}{user}@{domain}", self.scheme))
            })
            .collect())
    }
}

fn failed(e: FnError) -> ApplyResult {
    apply_result(move |_| Err(e))
}

fn lookup(
    st: &State,
    ctx: &mut MsgContext,
    table: &[u8],
    flags: &[u8],
) -> impl Future<Output = ApplyResult> + Send + 'static {
    let append = st.config.append_branches;
    let prepared = Flags::parse(&st.config, flags).and_then(|f| {
        let ruri = ctx
            .msg
            .request_uri()
            .ok_or_else(|| FnError::new("alias_db_lookup: not a request"))?
            .to_vec();
        Query::new(st, table, &ruri, f)
    });
    async move {
        let q = match prepared {
            Ok(q) => q,
            Err(e) => return failed(e),
        };
        let found = q.run().await;
        apply_result(move |ctx: &mut MsgContext| -> FnResult {
            let uris = match found {
                Ok(u) => u,
                Err(e) => {
                    tracing::error!("alias_db_lookup: {e}");
                    return Ok(Verdict::FALSE);
                }
            };
            let Some(first) = uris.first() else {
                return Ok(Verdict::FALSE);
            };
            ctx.msg
                .set_request_uri(first.as_bytes())
                .map_err(|e| FnError::new(format!("alias_db_lookup: '{first}': {e}")))?;
            if append {
                let set = ctx.ext.get_or_insert_with(Branches::default);
                for uri in &uris[1..] {
                    set.0.push(BranchTarget {
                        uri: Bytes::from(uri.clone()),
                        dst_uri: None,
                        q: None,
                        bflags: 0,
                    });
                }
            }
            Ok(Verdict::TRUE)
        })
    }
}

fn find(
    st: &State,
    table: &[u8],
    input: &[u8],
    out: PvOut,
    flags: &[u8],
) -> impl Future<Output = ApplyResult> + Send + 'static {
    let prepared = Flags::parse(&st.config, flags).and_then(|f| Query::new(st, table, input, f));
    async move {
        let q = match prepared {
            Ok(q) => q,
            Err(e) => return failed(e),
        };
        let found = q.run().await;
        apply_result(move |ctx: &mut MsgContext| -> FnResult {
            match found {
                Err(e) => {
                    tracing::error!("alias_db_find: {e}");
                    Ok(Verdict::FALSE)
                }
                Ok(uris) => match uris.into_iter().next() {
                    None => Ok(Verdict::FALSE),
                    Some(uri) => {
                        out.0.set(ctx, SetOp::Assign, Value::from(uri))?;
                        Ok(Verdict::TRUE)
                    }
                },
            }
        })
    }
}

/// The `alias_db` module.
pub struct AliasDbModule;

impl Module for AliasDbModule {
    fn name(&self) -> &'static str {
        "alias_db"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Alias lookup in a database table (read for each call): rewrites the R-URI from an alias to the canonical user, or the reverse.");
        m.param(
            "db_url",
            ParamType::Str,
            "mysql://kamailioro:kamailioro@localhost/kamailio",
            "Database holding the alias tables (sqlite://, mysql://, postgres://, text://).",
        );
        m.param(
            "use_domain",
            ParamType::Int,
            0_i64,
            "When 1, the domain is matched as well as the user (the flags d and u override it per call).",
        );
        m.param(
            "domain_prefix",
            ParamType::Str,
            Value::Null,
            "Prefix stripped from the domain before matching (e.g. \"sip.\").",
        );
        m.param(
            "append_branches",
            ParamType::Int,
            0_i64,
            "When 1, alias_db_lookup() adds every match beyond the first (up to 32 rows) as a branch (parallel forking with t_relay()).",
        );
        m.param(
            "user_column",
            ParamType::Str,
            "username",
            "Database column holding the canonical user.",
        );
        m.param(
            "domain_column",
            ParamType::Str,
            "domain",
            "Database column holding the canonical domain (empty: the domain of the URI looked up is kept).",
        );
        m.param(
            "alias_user_column",
            ParamType::Str,
            "alias_username",
            "Database column holding the alias user.",
        );
        m.param(
            "alias_domain_column",
            ParamType::Str,
            "alias_domain",
            "Database column holding the alias domain.",
        );
        let state = m.state(|p| {
            Ok(State {
                config: Config::from_params(p)?,
                db: OnceLock::new(),
            })
        });
        {
            let st = state.clone();
            m.on_start(move |_env| {
                let st = st.get();
                async move {
                    let st: Arc<State> = st.map_err(|e| e.message)?;
                    let db = Db::connect(&st.config.db_url)
                        .await
                        .map_err(|e| format!("cannot connect to db_url: {e}"))?;
                    let _ = st.db.set(db);
                    Ok(())
                }
            });
        }
        const LOOKUP: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::EVENT);
        const FIND: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::BRANCH)
            .union(RouteMask::ONREPLY)
            .union(RouteMask::EVENT)
            .union(RouteMask::LOCAL);
        let s = &state;
        #[rustfmt::skip]
        m.functions([
            FnRow::asynchronous("alias_db_lookup", &["table_name"], LOOKUP,
                "Looks the R-URI user (and domain, with use_domain) up among the aliases of the table and rewrites the R-URI to sip:<user>@<domain> of the first match (more matches become branches with append_branches). 1 found, -1 not found or on a database error.",
                s.with(|st: &State, ctx: &mut MsgContext, table: Bytes| lookup(st, ctx, &table, b""))),
            FnRow::asynchronous("alias_db_lookup", &["table_name", "flags"], LOOKUP,
                "As alias_db_lookup(table) with flags: d match the user only, u match the domain too, r reverse (canonical user -> its alias). An unknown flag is an error.",
                s.with(|st: &State, ctx: &mut MsgContext, table: Bytes, flags: Bytes| lookup(st, ctx, &table, &flags))),
            FnRow::asynchronous("alias_db_find", &["table_name", "input", "output"], FIND,
                "Looks the URI given as input up as alias_db_lookup() does and stores the canonical URI in the output variable instead of rewriting the R-URI; 1 found, -1 not found or on a database error.",
                s.with(|st: &State, _ctx: &mut MsgContext, table: Bytes, input: Bytes, out: PvOut| find(st, &table, &input, out, b""))),
            FnRow::asynchronous("alias_db_find", &["table_name", "input", "output", "flags"], FIND,
                "As alias_db_find() with flags (d, u, r as for alias_db_lookup()).",
                s.with(|st: &State, _ctx: &mut MsgContext, table: Bytes, input: Bytes, out: PvOut, flags: Bytes| find(st, &table, &input, out, &flags))),
        ]);
    }
}

#[cfg(test)]
mod tests;
