//! `numinfo`: labels a telephone number from a database table.
//!
//! A template for a Ferrosip module kept outside Ferrosip's repository: copy this crate,
//! rename it, and build it into a binary of your own (`templates/binary`). It has one of
//! each thing a module usually has, and Ferrosip's `docs/dev/modules.md` explains each:
//! - parameters (`db_url`, `table`), checked when a script loading the module loads;
//! - state built from the parameters (`m.state`), a database connected by the start hook;
//! - a synchronous function whose argument is checked once, at load (a fixup):
//!   `numinfo_prefix(number, prefix)`;
//! - an asynchronous function that waits on the database without holding a worker:
//!   `numinfo_lookup(number)`;
//! - a pseudo-variable, `$numinfo(label)`;
//! - an RPC command, `numinfo.stats`.

use ferrosip_api::args::{raw_to_format, value_to_bytes, CallEnv, Fixable, FixupEnv};
use ferrosip_api::bytes::Bytes;
use ferrosip_api::pv::{Binder, PvParamRule};
use ferrosip_api::registry::FnRow;
use ferrosip_api::{
    apply_result, ArgKind, ArgType, FnError, FnResult, Module, ModuleBuilder, ModuleParams,
    MsgContext, ParamType, Pv, PvClass, PvError, PvIndex, RawArg, RouteMask, RpcValue, Value,
    Verdict,
};
use ferrosip_db::{Cond, Db, DbValue};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// The `numinfo` module, as a custom binary adds it:
/// `ferrosip::Server::builder().module(NuminfoModule).run()`.
pub struct NuminfoModule;

/// The longest prefix `numinfo_prefix` takes, in digits.
const MAX_PREFIX_DIGITS: usize = 16;

/// The module's parameters, checked once per load (a bad one stops the load, naming it).
struct Config {
    db_url: String,
    table: String,
}

impl Config {
    fn from_params(p: &ModuleParams) -> Result<Config, String> {
        let db_url = p.string("db_url");
        if db_url.is_empty() {
            return Err("db_url is not set".to_string());
        }
        let table = p.string("table");
        // Checked here so that a typo fails the load, not every lookup.
        ferrosip_db::check_identifier(&table).map_err(|e| format!("table: {e}"))?;
        Ok(Config { db_url, table })
    }
}

/// Counters the RPC command reports. They outlive a script reload (the state does not),
/// so they are made once per registry, in `declare`.
#[derive(Default)]
struct Stats {
    lookups: AtomicU64,
    found: AtomicU64,
}

/// The module state: what the parameters say, and the database the start hook connects
/// (a `check` run never starts the server, so it never connects).
struct State {
    config: Config,
    db: RwLock<Option<Db>>,
    stats: Arc<Stats>,
}

impl State {
    fn db(&self) -> Result<Db, FnError> {
        self.db
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| FnError::new("numinfo: no database (the server has not started)"))
    }
}

/// The label the last `numinfo_lookup` of this message found, kept in the message
/// context's extensions for `$numinfo(label)`.
#[derive(Clone)]
struct Label(Bytes);

/// A dialling prefix: an optional `+`, then 1 to 16 digits.
///
/// As an argument type it shows a load-time fixup: a literal prefix is checked once, when
/// the script loads (a bad one is an error at its file:line:column and the script does
/// not start); a prefix that comes from a pseudo-variable can only be checked on each
/// call, where a bad one is a run-time error of that call.
pub struct DialPrefix(pub Bytes);

impl DialPrefix {
    fn parse(text: Bytes) -> Result<DialPrefix, String> {
        let digits = text.strip_prefix(b"+").unwrap_or(&text);
        if digits.is_empty()
            || digits.len() > MAX_PREFIX_DIGITS
            || !digits.iter().all(u8::is_ascii_digit)
        {
            return Err(format!(
                "\"{}\" is not a dialling prefix (an optional + and 1 to {MAX_PREFIX_DIGITS} digits)",
                String::from_utf8_lossy(&text)
            ));
        }
        Ok(DialPrefix(text))
    }
}

impl ArgType for DialPrefix {
    type Fixed = Fixable<Bytes>;
    const KIND: ArgKind = ArgKind::Custom("dialling prefix");

    fn fixup(raw: RawArg, env: &dyn FixupEnv) -> Result<Self::Fixed, String> {
        let format = raw_to_format(raw, env)?;
        if format.is_literal() {
            let text = Bytes::from(format.text().to_string());
            return DialPrefix::parse(text).map(|p| Fixable::Const(p.0));
        }
        Ok(Fixable::Dynamic(format))
    }

    fn eval(fixed: &Self::Fixed, ctx: &MsgContext) -> Result<Self, FnError> {
        match fixed {
            Fixable::Const(prefix) => Ok(DialPrefix(prefix.clone())),
            Fixable::Dynamic(format) => DialPrefix::parse(format.eval(ctx)?).map_err(FnError::new),
        }
    }

    fn from_value(value: Value, _env: &dyn CallEnv) -> Result<Self, FnError> {
        DialPrefix::parse(value_to_bytes(value)?).map_err(FnError::new)
    }
}

/// `numinfo_prefix(number, prefix)`: true when `number` starts with `prefix`.
fn numinfo_prefix(_ctx: &mut MsgContext, number: Bytes, prefix: DialPrefix) -> FnResult {
    Ok(if number.starts_with(&prefix.0) {
        Verdict::TRUE
    } else {
        Verdict::FALSE
    })
}

/// `$numinfo(label)`: the label the last lookup found; null when it found none.
struct LabelPv;

impl Pv for LabelPv {
    fn get(&self, ctx: &MsgContext, _index: PvIndex) -> Result<Value, PvError> {
        Ok(ctx
            .ext
            .get::<Label>()
            .map_or(Value::Null, |l| Value::Str(l.0.clone())))
    }
}

/// The `$numinfo(...)` class: its one field is bound (checked) when the script loads.
struct NuminfoPvClass;

impl PvClass for NuminfoPvClass {
    fn param_rule(&self) -> PvParamRule {
        PvParamRule::Required
    }

    fn bind(&self, param: Option<&str>, _binder: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
        match param {
            Some("label") => Ok(Arc::new(LabelPv)),
            Some(other) => Err(format!("$numinfo({other}): the only field is label")),
            None => Err("$numinfo needs a field: $numinfo(label)".to_string()),
        }
    }

    fn doc(&self) -> &str {
        "`$numinfo(label)`: the label the last `numinfo_lookup` of this message found (null if none)."
    }
}

/// A complete config using the module, for its docs page.
const EXAMPLE: &str = r#"loadmodule "sl.so"
loadmodule "numinfo.so"
modparam("numinfo", "db_url", "postgres://ferrosip@127.0.0.1/ferrosip")

request_route {
    if (!numinfo_prefix("$rU", "49")) {
        sl_send_reply("404", "Not here");
        exit;
    }
    if (numinfo_lookup("$rU")) {
        sl_send_reply("200", "$numinfo(label)");
        exit;
    }
    sl_send_reply("404", "Unknown number");
}
"#;

impl Module for NuminfoModule {
    fn name(&self) -> &'static str {
        "numinfo"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc(
            "Labels a telephone number from a database table (a template for out-of-tree modules).",
        )
        .example(EXAMPLE);
        m.param(
            "db_url",
            ParamType::Str,
            "",
            "Database holding the table (required): sqlite://, mysql://, postgres:// or text://.",
        );
        m.param(
            "table",
            ParamType::Str,
            "numinfo",
            "Table with the columns `number` and `label`.",
        );

        let stats = Arc::new(Stats::default());
        let state_stats = stats.clone();
        let st = m.state(move |p| {
            Ok(State {
                config: Config::from_params(p)?,
                db: RwLock::new(None),
                stats: state_stats.clone(),
            })
        });

        // The server is starting: connect before it takes traffic. A database that does
        // not answer stops the start with this message.
        let slot = st.clone();
        m.on_start(move |_env| {
            let slot = slot.clone();
            async move {
                let state = slot.get().map_err(|e| e.message)?;
                let db = Db::connect(&state.config.db_url)
                    .await
                    .map_err(|e| format!("numinfo: {e}"))?;
                *state.db.write().unwrap_or_else(|e| e.into_inner()) = Some(db);
                Ok(())
            }
        });

        const ROUTES: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::BRANCH);
        m.functions([
            FnRow::sync(
                "numinfo_prefix",
                &["number", "prefix"],
                ROUTES,
                "True (1) when the number starts with the prefix, false (-1) otherwise; a literal prefix is checked when the script loads.",
                numinfo_prefix,
            ),
            FnRow::asynchronous(
                "numinfo_lookup",
                &["number"],
                ROUTES,
                "Looks the number up in the table: 1 and `$numinfo(label)` set when found, -1 when not, -2 when the database fails.",
                st.with(|state: &State, _ctx: &mut MsgContext, number: Bytes| {
                    // What the future needs is taken now: it must not borrow the context
                    // or the state across the wait.
                    let db = state.db();
                    let table = state.config.table.clone();
                    let stats = state.stats.clone();
                    async move {
                        let db = match db {
                            Ok(db) => db,
                            Err(e) => return apply_result(move |_| Err(e)),
                        };
                        stats.lookups.fetch_add(1, Ordering::Relaxed);
                        let number = String::from_utf8_lossy(&number).into_owned();
                        let rows = db
                            .select(&table, &["label"], &[Cond::eq("number", number)], None)
                            .await;
                        let label = match rows {
                            Ok(rows) => rows.into_iter().next().and_then(|row| {
                                match row.into_iter().next() {
                                    Some(DbValue::Str(s)) => Some(Bytes::from(s)),
                                    _ => None,
                                }
                            }),
                            Err(e) => {
                                let e = FnError::new(format!("numinfo: {e}")).with_code(-2);
                                return apply_result(move |_| Err(e));
                            }
                        };
                        if label.is_some() {
                            stats.found.fetch_add(1, Ordering::Relaxed);
                        }
                        // Runs on the message once the query is back.
                        apply_result(move |ctx| match label {
                            Some(label) => {
                                ctx.ext.insert(Label(label));
                                Ok(Verdict::TRUE)
                            }
                            None => {
                                ctx.ext.remove::<Label>();
                                Ok(Verdict::FALSE)
                            }
                        })
                    }
                }),
            ),
        ]);

        m.pv("numinfo", NuminfoPvClass);

        m.rpc(
            "numinfo.stats",
            "Lookups made and numbers found since the server started.",
            move |_args| {
                Ok(RpcValue::Struct(vec![
                    (
                        "lookups".to_string(),
                        RpcValue::Int(stats.lookups.load(Ordering::Relaxed) as i64),
                    ),
                    (
                        "found".to_string(),
                        RpcValue::Int(stats.found.load(Ordering::Relaxed) as i64),
                    ),
                ]))
            },
        );
    }
}

#[cfg(test)]
mod tests;
