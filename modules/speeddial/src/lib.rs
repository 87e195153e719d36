//! `speeddial` (Kamailio's module of the same name): per-user short numbers kept in a
//! database table (Kamailio's `speed_dial`), read for each call: `sd_lookup()` replaces
//! the R-URI with the `new_uri` the caller (the From URI, or a given owner) stored for the
//! R-URI user.

use bytes::Bytes;
use ferrosip_api::registry::{apply_result, ApplyResult, FnRow};
use ferrosip_api::{
    FnError, FnResult, Module, ModuleBuilder, ModuleParams, MsgContext, ParamType, RouteMask,
    Value, Verdict,
};
use ferrosip_db::{Cond, Db, DbValue};
use ferrosip_sip::Uri;
use std::future::Future;
use std::sync::{Arc, OnceLock};

#[derive(Clone, Debug)]
pub struct Config {
    pub db_url: String,
    /// 0: users only; 1: the owner's domain too; 2: the short number's domain too.
    pub use_domain: i64,
    pub domain_prefix: String,
    pub user_col: String,
    pub domain_col: String,
    pub sd_user_col: String,
    pub sd_domain_col: String,
    pub new_uri_col: String,
}

impl Config {
    pub fn from_params(p: &ModuleParams) -> Result<Config, String> {
        let ident = |name: &str| -> Result<String, String> {
            let v = p.string(name);
            ferrosip_db::check_identifier(&v)
                .map(str::to_string)
                .map_err(|e| format!("{name}: {e}"))
        };
        let use_domain = p.int("use_domain");
        if !(0..=2).contains(&use_domain) {
            return Err(format!("use_domain {use_domain} is not 0, 1 or 2"));
        }
        Ok(Config {
            db_url: p.string("db_url"),
            use_domain,
            domain_prefix: p.string("domain_prefix"),
            user_col: ident("user_column")?,
            domain_col: ident("domain_column")?,
            sd_user_col: ident("sd_user_column")?,
            sd_domain_col: ident("sd_domain_column")?,
            new_uri_col: ident("new_uri_column")?,
        })
    }

    /// A domain as matched: without `domain_prefix` when it starts with it (and is longer).
    fn domain(&self, host: &[u8]) -> String {
        let p = self.domain_prefix.as_bytes();
        let h = if !p.is_empty() && host.len() > p.len() && host[..p.len()].eq_ignore_ascii_case(p)
        {
            &host[p.len()..]
        } else {
            host
        };
        String::from_utf8_lossy(h).into_owned()
    }
}

pub struct State {
    pub config: Config,
    db: OnceLock<Db>,
}

fn failed(e: FnError) -> ApplyResult {
    apply_result(move |_| Err(e))
}

fn sd_lookup(
    st: &State,
    ctx: &mut MsgContext,
    table: &[u8],
    owner: Option<&[u8]>,
) -> impl Future<Output = ApplyResult> + Send + 'static {
    let c = st.config.clone();
    let prepared = (|| -> Result<_, FnError> {
        let db = st
            .db
            .get()
            .cloned()
            .ok_or_else(|| FnError::new("sd_lookup: not started (no database)"))?;
        let table = String::from_utf8_lossy(table).into_owned();
        ferrosip_db::check_identifier(&table)
            .map_err(|e| FnError::new(format!("sd_lookup: table: {e}")))?;
        let from;
        let owner_uri = match owner {
            Some(o) => Uri::parse(o).map_err(|_| FnError::new("sd_lookup: bad owner URI"))?,
            None => {
                from = ctx
                    .msg
                    .from()
                    .map_err(|_| FnError::new("sd_lookup: no valid From header"))?;
                from.uri().clone()
            }
        };
        let mut keys = vec![(
            c.user_col.clone(),
            String::from_utf8_lossy(owner_uri.user().unwrap_or_default()).into_owned(),
        )];
        if c.use_domain >= 1 {
            keys.push((
                c.domain_col.clone(),
                c.domain(owner_uri.host().unwrap_or_default()),
            ));
        }
        let ruri = ctx
            .msg
            .request_uri_parsed()
            .ok_or_else(|| FnError::new("sd_lookup: not a request"))?;
        keys.push((
            c.sd_user_col.clone(),
            String::from_utf8_lossy(ruri.user().unwrap_or_default()).into_owned(),
        ));
        if c.use_domain >= 2 {
            keys.push((
                c.sd_domain_col.clone(),
                c.domain(ruri.host().unwrap_or_default()),
            ));
        }
        Ok((db, table, keys))
    })();
    async move {
        let (db, table, keys) = match prepared {
            Ok(p) => p,
            Err(e) => return failed(e),
        };
        let conds: Vec<Cond<'_>> = keys.iter().map(|(k, v)| Cond::eq(k, v.as_str())).collect();
        let rows = db.select(&table, &[&c.new_uri_col], &conds, None).await;
        apply_result(move |ctx: &mut MsgContext| -> FnResult {
            let rows = match rows {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!("sd_lookup: {e}");
                    return Ok(Verdict::FALSE);
                }
            };
            let uri = match rows.first().and_then(|r| r.first()) {
                Some(DbValue::Str(s)) if !s.is_empty() => s.clone(),
                _ => return Ok(Verdict::FALSE),
            };
            // Kamailio stores numbers or URIs: a value without a scheme gets "sip:".
            let uri = if uri.len() >= 4 && uri[..4].eq_ignore_ascii_case("sip:")
                || uri.starts_with("sips:")
                || uri.starts_with("tel:")
            {
                uri
            } else {
                format!("sip:{uri}")
            };
            ctx.msg
                .set_request_uri(uri.as_bytes())
                .map_err(|e| FnError::new(format!("sd_lookup: new_uri '{uri}': {e}")))?;
            Ok(Verdict::TRUE)
        })
    }
}

/// The `speeddial` module.
pub struct SpeeddialModule;

impl Module for SpeeddialModule {
    fn name(&self) -> &'static str {
        "speeddial"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Per-user speed dial: rewrites a short R-URI user to the URI the caller stored for it in a database table (read for each call).");
        m.param(
            "db_url",
            ParamType::Str,
            "mysql://kamailioro:kamailioro@localhost/kamailio",
            "Database holding the speed-dial table.",
        );
        m.param(
            "use_domain",
            ParamType::Int,
            0_i64,
            "0: only users are matched; 1: the owner's domain too; 2: the R-URI (short number) domain too.",
        );
        m.param(
            "domain_prefix",
            ParamType::Str,
            Value::Null,
            "Prefix stripped from the domain before matching.",
        );
        m.param(
            "user_column",
            ParamType::Str,
            "username",
            "Database column holding the owner user.",
        );
        m.param(
            "domain_column",
            ParamType::Str,
            "domain",
            "Database column holding the owner domain.",
        );
        m.param(
            "sd_user_column",
            ParamType::Str,
            "sd_username",
            "Database column holding the short number.",
        );
        m.param(
            "sd_domain_column",
            ParamType::Str,
            "sd_domain",
            "Database column holding the short number domain.",
        );
        m.param(
            "new_uri_column",
            ParamType::Str,
            "new_uri",
            "Database column holding the target URI.",
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
        const REQ_EVENT: RouteMask = RouteMask::REQUEST.union(RouteMask::EVENT);
        let s = &state;
        #[rustfmt::skip]
        m.functions([
            FnRow::asynchronous("sd_lookup", &["table"], REQ_EVENT,
                "Replaces the R-URI with the new_uri the From user (and domain, with use_domain) stored for the R-URI user (\"sip:\" is added to a value without a scheme); 1 found, -1 not found or on a database error.",
                s.with(|st: &State, ctx: &mut MsgContext, table: Bytes| sd_lookup(st, ctx, &table, None))),
            FnRow::asynchronous("sd_lookup", &["table", "owner"], REQ_EVENT,
                "As sd_lookup(table) with the owner given as a URI (e.g. \"$fu\" or \"sip:$au@$ad\").",
                s.with(|st: &State, ctx: &mut MsgContext, table: Bytes, owner: Bytes| sd_lookup(st, ctx, &table, Some(&owner)))),
        ]);
    }
}

#[cfg(test)]
mod tests;
