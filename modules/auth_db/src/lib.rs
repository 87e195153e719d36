//! `auth_db`: Digest authentication with credentials from a database table (Kamailio's
//! `subscriber`), on top of the `auth` module's engine.
//!
//! A check runs in three steps so that no worker waits for the database: what needs only
//! the message (credentials syntax, nonce signature, expiry, replay state) runs at once;
//! the subscriber query runs as an async call; the response comparison and the AVPs are
//! applied to the message when the row is back.

use bytes::Bytes;
use ferrosip_api::{apply_result, ApplyResult, AvpNames, FnError, MsgContext, Value, Verdict};
use ferrosip_api::{
    Module, ModuleApi, ModuleBuilder, ModuleParams, ParamType, RouteMask, StateSlot,
};
use ferrosip_db::{Cond, Db, DbValue, Row};
use ferrosip_mod_auth::engine::avp_name;
use ferrosip_mod_auth::{check_identity, code, AuthHandle, CredHeader, PreAuth, Secret};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};

/// Version of the `subscriber` table this module reads (Kamailio 5.x).
const SUBSCRIBER_VERSION: i64 = 7;

/// The `auth_db` module; uses the `auth` module's engine, which it reaches through the
/// registry (a script loads `auth` first).
pub struct AuthDbModule;

/// The `auth` module's handle, as the registry gives it.
type AuthApi = ModuleApi<AuthHandle>;

/// The `auth` engine, or the error a function reports when `auth` is not loaded.
fn auth_engine(auth: &AuthApi) -> Result<Arc<ferrosip_mod_auth::AuthEngine>, FnError> {
    auth.get()
        .ok_or_else(|| FnError::new("the auth module is not built in"))?
        .engine()
}

/// One `load_credentials` entry: a column and the AVP it goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Credential {
    column: String,
    avp: u32,
}

/// The module parameters, checked at load.
#[derive(Clone, Debug)]
struct DbConfig {
    db_url: String,
    user_column: String,
    domain_column: String,
    password_column: String,
    password_column_2: String,
    calculate_ha1: bool,
    use_domain: bool,
    credentials: Vec<Credential>,
    version_table: bool,
    force_generate_avps: bool,
}

fn identifier(name: &str, value: String) -> Result<String, String> {
    ferrosip_db::check_identifier(&value)
        .map(str::to_string)
        .map_err(|e| format!("{name}: {e}"))
}

/// `load_credentials`: `col` or `$avp(name)=col`, `;`-separated.
fn parse_credentials_list(list: &str, avps: &AvpNames) -> Result<Vec<Credential>, String> {
    let mut out = Vec::new();
    for item in list.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (target, column) = match item.rfind('=') {
            Some(eq) => (item[..eq].trim(), item[eq + 1..].trim()),
            None => (item, item),
        };
        let column = identifier("load_credentials", column.to_string())?;
        let avp = if target == column {
            column.clone()
        } else {
            avp_name(target)
                .map_err(|e| format!("load_credentials: {e}"))?
                .ok_or_else(|| format!("load_credentials: no AVP in '{item}'"))?
        };
        out.push(Credential {
            column,
            avp: avps.slot(&avp),
        });
    }
    Ok(out)
}

impl DbConfig {
    fn from_params(p: &ModuleParams, avps: &AvpNames) -> Result<DbConfig, String> {
        Ok(DbConfig {
            db_url: p.string("db_url"),
            user_column: identifier("user_column", p.string("user_column"))?,
            domain_column: identifier("domain_column", p.string("domain_column"))?,
            password_column: identifier("password_column", p.string("password_column"))?,
            password_column_2: identifier("password_column_2", p.string("password_column_2"))?,
            calculate_ha1: p.int("calculate_ha1") != 0,
            use_domain: p.int("use_domain") != 0,
            credentials: parse_credentials_list(&p.string("load_credentials"), avps)?,
            version_table: p.int("version_table") != 0,
            force_generate_avps: p.int("force_generate_avps") != 0,
        })
    }
}

/// The module state, built by init from the parameters: the configuration, the database
/// (connected by the start hook) and the table versions already checked.
struct State {
    config: Arc<DbConfig>,
    db: RwLock<Option<Db>>,
    /// Table name -> whether its version is the one this module reads.
    versions: Mutex<HashMap<String, bool>>,
}

impl State {
    fn new(config: DbConfig) -> State {
        State {
            config: Arc::new(config),
            db: RwLock::new(None),
            versions: Mutex::new(HashMap::new()),
        }
    }

    fn db(&self) -> Result<Db, FnError> {
        self.db
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| FnError::new("auth_db: no database (the module was not started)"))
    }

    /// Kamailio checks the table version before using a table (`version_table`); done
    /// once per table, at its first use.
    async fn table_ok(&self, db: &Db, table: &str) -> bool {
        if let Some(ok) = self
            .versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(table)
        {
            return *ok;
        }
        let ok = match db.table_version(table).await {
            Ok(Some(SUBSCRIBER_VERSION)) => true,
            Ok(found) => {
                tracing::error!(
                    table,
                    found = ?found,
                    expected = SUBSCRIBER_VERSION,
                    "auth_db: wrong table version (create the table with `ferrosip db init`, or set version_table to 0)"
                );
                false
            }
            Err(e) => {
                // Not remembered: the database may come back.
                tracing::error!(table, error = %e, "auth_db: cannot read the table version");
                return false;
            }
        };
        self.versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(table.to_string(), ok);
        ok
    }
}

/// Copies the `load_credentials` columns of a row (after the first `skip` values) into
/// their AVPs.
fn load_avps(ctx: &mut MsgContext, credentials: &[Credential], row: &Row, skip: usize) {
    for (cred, value) in credentials.iter().zip(row.iter().skip(skip)) {
        let v = match value {
            DbValue::Null => continue,
            DbValue::Int(i) | DbValue::Time(i) => Value::Int(*i),
            DbValue::Str(s) => Value::from_string(s.clone()),
            DbValue::Double(d) => Value::from_string(d.to_string()),
        };
        ctx.avps.push(cred.avp, v);
    }
}

fn done(rc: i32) -> ApplyResult {
    apply_result(move |_| Ok(Verdict::code(rc)))
}

fn failed(e: FnError) -> ApplyResult {
    apply_result(move |_| Err(e))
}

/// How one of the checking functions was called.
struct Check<'a> {
    realm: &'a [u8],
    table: &'a [u8],
    /// The credentials header; None: chosen by the method (`auth_check`).
    header: Option<CredHeader>,
    /// The method in the digest when not the request's.
    method: Option<&'a [u8]>,
    /// `auth_check`'s flags (identity check).
    identity: Option<i64>,
}

/// What the synchronous part of a check decided.
enum Prepared {
    Done(i32),
    Failed(FnError),
    Query {
        engine: Arc<ferrosip_mod_auth::AuthEngine>,
        state: Arc<State>,
        cfg: Arc<DbConfig>,
        db: Db,
        table: String,
        pending: Box<ferrosip_mod_auth::Pending>,
    },
}

fn prepare(
    auth: &AuthApi,
    state: &StateSlot<State>,
    ctx: &mut MsgContext,
    call: &Check<'_>,
) -> Prepared {
    let engine = match auth_engine(auth) {
        Ok(e) => e,
        Err(e) => return Prepared::Failed(e),
    };
    let state = match state.get() {
        Ok(state) => state,
        Err(e) => return Prepared::Failed(e),
    };
    let cfg = state.config.clone();
    let db = match state.db() {
        Ok(db) => db,
        Err(e) => return Prepared::Failed(e),
    };
    let table = String::from_utf8_lossy(call.table).into_owned();
    if table.is_empty() {
        return Prepared::Failed(FnError::new("empty table name"));
    }
    let header = call.header.unwrap_or_else(|| CredHeader::for_request(ctx));
    match engine.pre_auth(ctx, call.realm, header, call.method, true) {
        PreAuth::Done(rc) => Prepared::Done(rc),
        PreAuth::Verify(pending) => Prepared::Query {
            engine,
            state,
            cfg,
            db,
            table,
            pending,
        },
    }
}

/// `www_authenticate` / `proxy_authenticate` / `auth_check`: checks the credentials
/// against the subscriber row of their user.
fn authenticate(
    auth: &AuthApi,
    state: &StateSlot<State>,
    ctx: &mut MsgContext,
    call: Check<'_>,
) -> impl Future<Output = ApplyResult> + Send + 'static {
    let prepared = prepare(auth, state, ctx, &call);
    let identity = call.identity;
    async move {
        let (engine, state, cfg, db, table, pending) = match prepared {
            Prepared::Failed(e) => return failed(e),
            Prepared::Done(rc) => return done(rc),
            Prepared::Query {
                engine,
                state,
                cfg,
                db,
                table,
                pending,
            } => (engine, state, cfg, db, table, pending),
        };
        if cfg.version_table && !state.table_ok(&db, &table).await {
            return done(code::ERROR);
        }
        // A user name with "@domain" is checked against ha1b (HA1 of "user@domain"),
        // unless HA1 is computed from a plain password anyway.
        let user_domain = pending.user_domain().map(<[u8]>::to_vec);
        let password_column = if user_domain.is_some() && !cfg.calculate_ha1 {
            &cfg.password_column_2
        } else {
            &cfg.password_column
        };
        let mut columns: Vec<&str> = vec![password_column];
        columns.extend(cfg.credentials.iter().map(|c| c.column.as_str()));
        let user = String::from_utf8_lossy(pending.user()).into_owned();
        let domain =
            String::from_utf8_lossy(user_domain.as_deref().unwrap_or(&pending.realm)).into_owned();
        let mut conds = vec![Cond::eq(&cfg.user_column, user.as_str())];
        if cfg.use_domain {
            conds.push(Cond::eq(&cfg.domain_column, domain.as_str()));
        }
        let rows = db.select(&table, &columns, &conds, None).await;
        apply_result(move |ctx: &mut MsgContext| {
            let rows = match rows {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(table, error = %e, "auth_db: subscriber query failed");
                    return Ok(Verdict::code(code::ERROR));
                }
            };
            let Some(row) = rows.first() else {
                return Ok(Verdict::code(engine.user_unknown(&pending)));
            };
            let stored = match row.first() {
                Some(DbValue::Str(s)) => s.clone().into_bytes(),
                Some(DbValue::Null) | None => Vec::new(),
                Some(other) => other.to_string().into_bytes(),
            };
            let secret = if cfg.calculate_ha1 {
                Secret::Password(&stored)
            } else {
                Secret::Ha1(&stored)
            };
            if cfg.force_generate_avps {
                load_avps(ctx, &cfg.credentials, row, 1);
            }
            let rc = engine.finish(ctx, &pending, secret, false);
            if rc != code::OK {
                return Ok(Verdict::code(rc));
            }
            if !cfg.force_generate_avps {
                load_avps(ctx, &cfg.credentials, row, 1);
            }
            if let Some(flags) = identity.filter(|f| f & 1 != 0) {
                let id = check_identity(ctx, pending.user(), flags, cfg.use_domain);
                return Ok(Verdict::code(id));
            }
            Ok(Verdict::code(code::OK))
        })
    }
}

/// `is_subscriber(uri, table, flags)`: 1 when the URI's user (and host with flag 1) has a
/// row; its `load_credentials` columns go to AVPs unless flag 2. -2 when there is none,
/// -1 on errors.
fn is_subscriber(
    state: &StateSlot<State>,
    uri: &[u8],
    table: &[u8],
    flags: i64,
) -> impl Future<Output = ApplyResult> + Send + 'static {
    let prepared = (|| {
        let state = state.get()?;
        let cfg = state.config.clone();
        let db = state.db()?;
        let table = String::from_utf8_lossy(table).into_owned();
        let parsed = ferrosip_sip::Uri::parse(uri)
            .map_err(|_| FnError::new("is_subscriber: invalid URI"))?;
        let user = parsed
            .user()
            .filter(|u| !u.is_empty())
            .ok_or_else(|| FnError::new("is_subscriber: URI without user"))?;
        let user = String::from_utf8_lossy(user).into_owned();
        let host = String::from_utf8_lossy(parsed.host().unwrap_or_default()).into_owned();
        if table.is_empty() {
            return Err(FnError::new("empty table name"));
        }
        Ok((state, cfg, db, table, user, host))
    })();
    async move {
        let (state, cfg, db, table, user, host) = match prepared {
            Ok(p) => p,
            Err(e) => return failed(e),
        };
        if cfg.version_table && !state.table_ok(&db, &table).await {
            return done(code::ERROR);
        }
        let load = flags & 2 == 0 && !cfg.credentials.is_empty();
        let columns: Vec<&str> = if load {
            cfg.credentials.iter().map(|c| c.column.as_str()).collect()
        } else {
            vec![cfg.user_column.as_str()]
        };
        let mut conds = vec![Cond::eq(&cfg.user_column, user.as_str())];
        if flags & 1 != 0 {
            conds.push(Cond::eq(&cfg.domain_column, host.as_str()));
        }
        let rows = db.select(&table, &columns, &conds, None).await;
        apply_result(move |ctx: &mut MsgContext| match rows {
            Err(e) => {
                tracing::error!(table, error = %e, "auth_db: subscriber query failed");
                Ok(Verdict::code(-1))
            }
            Ok(rows) => match rows.first() {
                None => Ok(Verdict::code(-2)),
                Some(row) => {
                    if load {
                        load_avps(ctx, &cfg.credentials, row, 0);
                    }
                    Ok(Verdict::TRUE)
                }
            },
        })
    }
}

impl Module for AuthDbModule {
    fn name(&self) -> &'static str {
        "auth_db"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.example(include_str!("../example.cfg"));
        m.doc("Digest authentication with credentials from a database table (subscriber) in SQLite, MariaDB/MySQL, PostgreSQL or db_text.\n\nThe table is Kamailio's subscriber (username, domain, password, ha1, ha1b); the module works on top of the auth module's challenges and nonces (load auth.so first). The database (SQLite, MariaDB/MySQL, PostgreSQL or db_text, chosen by db_url) is queried without blocking a worker; the connection is opened when the server starts, which fails with the database's error if it cannot be reached. Return codes as the auth module's: 1 authenticated, -1 error (malformed credentials, invalid nonce, database error), -2 wrong password, -3 unknown user, -4 stale nonce, -5 no credentials, -6 nonce reused, -8 authentication user differs from From/To (auth_check). Wrong passwords and unknown users are logged with user, source address and a running count.");
        m.param(
            "db_url",
            ParamType::Str,
            "mysql://kamailioro:kamailioro@localhost/kamailio",
            "Database with the credentials: sqlite:///path/file.db, mysql://user:pass@host[:port]/db, postgres://user:pass@host[:port]/db or text:///directory (db_text).",
        );
        m.param(
            "user_column",
            ParamType::Str,
            "username",
            "Column holding the user name.",
        );
        m.param(
            "domain_column",
            ParamType::Str,
            "domain",
            "Column holding the domain (compared with the realm, or the domain in the credentials' user name, when use_domain is 1).",
        );
        m.param(
            "password_column",
            ParamType::Str,
            "ha1",
            "Column holding HA1 = H(user:realm:password) in hex (MD5, or SHA-256 for SHA-256 credentials), or the plain password with calculate_ha1.",
        );
        m.param("password_column_2", ParamType::Str, "ha1b", "Column holding H(user@domain:realm:password), used for user agents that send \"user@domain\" as user name (without calculate_ha1).");
        m.param(
            "calculate_ha1",
            ParamType::Int,
            0_i64,
            "When 1, password_column holds plain-text passwords and HA1 is computed with the credentials' algorithm (works for MD5 and SHA-256 alike).",
        );
        m.param(
            "use_domain",
            ParamType::Int,
            0_i64,
            "When 1, the lookup also matches domain_column (multi-domain setups), and auth_check() compares the From/To domains.",
        );
        m.param("load_credentials", ParamType::Str, "", "Columns copied into AVPs after a successful check (and by is_subscriber()): \"col\" (into $avp(col)) or \"$avp(name)=col\", ';'-separated. Empty: none.");
        m.param(
            "version_table",
            ParamType::Int,
            1_i64,
            "When 1, a table's version (in the version table) must be 7 before it is used; checked at its first use.",
        );
        m.param(
            "force_generate_avps",
            ParamType::Int,
            0_i64,
            "When 1, load_credentials AVPs are set even when the password is wrong.",
        );

        m.needs("auth");
        let auth_api: AuthApi = m.uses();
        let state = {
            let avps = m.registry().avp_names();
            m.state(move |p| Ok(State::new(DbConfig::from_params(p, &avps)?)))
        };
        {
            let state = state.clone();
            m.on_start(move |_env| {
                let state = state.get();
                async move {
                    let state = state.map_err(|e| e.message)?;
                    let url = state.config.db_url.clone();
                    let db = Db::connect(&url)
                        .await
                        .map_err(|e| format!("cannot connect to db_url: {e}"))?;
                    *state.db.write().unwrap_or_else(|e| e.into_inner()) = Some(db);
                    state
                        .versions
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clear();
                    Ok(())
                }
            });
        }

        const WWW_DOC: &str = "Checks the Authorization credentials for the realm (empty: the To host) against the subscriber row of their user in the table. 1 authenticated, -1 error, -2 wrong password, -3 unknown user, -4 stale nonce (challenge again: stale=true is added by itself), -5 no credentials for the realm, -6 nonce reused.";
        for name in ["www_authenticate", "www_authorize"] {
            let (auth, st) = (auth_api.clone(), state.clone());
            m.function(name)
                .args(&["realm", "table"])
                .routes(RouteMask::REQUEST | RouteMask::EVENT)
                .doc(if name == "www_authorize" {
                    "Alias of www_authenticate(realm, table); same return codes."
                } else {
                    WWW_DOC
                })
                .async_handler(move |ctx: &mut MsgContext, realm: Bytes, table: Bytes| {
                    let call = Check {
                        realm: &realm,
                        table: &table,
                        header: Some(CredHeader::Authorization),
                        method: None,
                        identity: None,
                    };
                    authenticate(&auth, &st, ctx, call)
                });
        }
        let (auth, st) = (auth_api.clone(), state.clone());
        m.function("www_authenticate")
            .args(&["realm", "table", "method"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As www_authenticate(realm, table) with the given method in the digest instead of the request's; same return codes.")
            .async_handler(
                move |ctx: &mut MsgContext, realm: Bytes, table: Bytes, method: Bytes| {
                    let call = Check {
                        realm: &realm,
                        table: &table,
                        header: Some(CredHeader::Authorization),
                        method: Some(&method),
                        identity: None,
                    };
                    authenticate(&auth, &st, ctx, call)
                },
            );
        for name in ["proxy_authenticate", "proxy_authorize"] {
            let (auth, st) = (auth_api.clone(), state.clone());
            m.function(name)
                .args(&["realm", "table"])
                .routes(RouteMask::REQUEST | RouteMask::EVENT)
                .doc(if name == "proxy_authorize" {
                    "Alias of proxy_authenticate(realm, table); same return codes."
                } else {
                    "As www_authenticate() with the Proxy-Authorization credentials (realm empty: the From host); same return codes."
                })
                .async_handler(move |ctx: &mut MsgContext, realm: Bytes, table: Bytes| {
                    let call = Check {
                        realm: &realm,
                        table: &table,
                        header: Some(CredHeader::ProxyAuthorization),
                        method: None,
                        identity: None,
                    };
                    authenticate(&auth, &st, ctx, call)
                });
        }
        let (auth, st) = (auth_api.clone(), state.clone());
        m.function("auth_check")
            .args(&["realm", "table", "flags"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("www_authenticate() for REGISTER, proxy_authenticate() for other requests (ACK, CANCEL, PRACK pass with 1). Flags: 1 the authentication user must be the To user for REGISTER and PUBLISH (whose From and To users must match, and for PUBLISH the R-URI user too) and the From user otherwise; 2 with 1: INVITE, BYE, PRACK, UPDATE and MESSAGE skip that comparison (anonymous caller ids). Codes as www_authenticate(), plus -8 when the users differ.")
            .async_handler(
                move |ctx: &mut MsgContext, realm: Bytes, table: Bytes, flags: i64| {
                    let call = Check {
                        realm: &realm,
                        table: &table,
                        header: None,
                        method: None,
                        identity: Some(flags),
                    };
                    authenticate(&auth, &st, ctx, call)
                },
            );
        let st = state.clone();
        m.function("is_subscriber")
            .args(&["uri", "dbtable", "flags"])
            .routes(RouteMask::ANY)
            .doc("1 when the user of the URI has a row in the table; flags: 1 match the URI host against domain_column too, 2 only check (do not load the load_credentials AVPs). -2 when there is no such subscriber, -1 on errors (invalid URI, database).")
            .async_handler(move |_ctx: &mut MsgContext, uri: Bytes, table: Bytes, flags: i64| {
                is_subscriber(&st, &uri, &table, flags)
            });
    }
}

#[cfg(test)]
mod tests;
