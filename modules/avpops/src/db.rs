//! avpops' database functions: AVPs kept per user in Kamailio's `usr_preferences` table
//! (`avp_db_load`, `avp_db_store`, `avp_db_delete`) and `avp_db_query`. Every query is
//! awaited without holding a worker; the AVPs change when it has answered.

use bytes::Bytes;
use ferrosip_api::args::Spec;
use ferrosip_api::pv::Binder;
use ferrosip_api::registry::AvpNames;
use ferrosip_api::registry::{apply_result, ApplyResult};
use ferrosip_api::{FnError, FnResult, ModuleParams, MsgContext, PvRef, Value, Verdict};
use ferrosip_db::{Cond, Db, DbValue};
use ferrosip_sip::Uri;
use std::future::Future;
use std::sync::{Arc, OnceLock};

/// The `type` column's bits (Kamailio's): the name is a number, the value is a number.
const NAME_INT: i64 = 1;
const VAL_INT: i64 = 2;

/// Rows `avp_db_query` keeps at most: a query is the operator's, its result goes into
/// the message's AVPs.
const MAX_QUERY_ROWS: usize = 1024;

/// The table and its columns, from the parameters.
#[derive(Clone, Debug)]
pub struct DbConfig {
    pub table: String,
    pub use_domain: bool,
    pub uuid: String,
    pub username: String,
    pub domain: String,
    pub attribute: String,
    pub kind: String,
    pub value: String,
}

impl DbConfig {
    pub fn from_params(p: &ModuleParams) -> Result<DbConfig, String> {
        let ident = |name: &str| -> Result<String, String> {
            let v = p.string(name);
            ferrosip_db::check_identifier(&v)
                .map(str::to_string)
                .map_err(|e| format!("{name}: {e}"))
        };
        if p.is_set("db_scheme") {
            return Err("db_scheme: named table layouts are not built; give avp_table and the *_column parameters".into());
        }
        let table = p.string("avp_table");
        if !table.is_empty() {
            ferrosip_db::check_identifier(&table).map_err(|e| format!("avp_table: {e}"))?;
        }
        Ok(DbConfig {
            table,
            use_domain: match p.int("use_domain") {
                0 => false,
                1 => true,
                n => return Err(format!("use_domain = {n}: 0 or 1")),
            },
            uuid: ident("uuid_column")?,
            username: ident("username_column")?,
            domain: ident("domain_column")?,
            attribute: ident("attribute_column")?,
            kind: ident("type_column")?,
            value: ident("value_column")?,
        })
    }
}

/// The database, once the server has started.
pub struct DbState {
    pub cfg: DbConfig,
    pub db: OnceLock<Db>,
    pub names: AvpNames,
}

/// Which columns identify the user (the `/flag` of the source).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Match {
    /// `uuid`: the value itself.
    Uuid,
    /// `uri`: user and (with `use_domain`) host of a SIP URI.
    Uri,
    /// `username`: the URI's user only.
    User,
    /// `domain`: the URI's host only.
    Domain,
}

#[derive(Clone)]
enum SourceValue {
    Text(Bytes),
    Pv(PvRef),
}

/// `avp_db_*`'s first argument: `$fu`, `$ru/username`, `$avp(uuid)`, a literal uuid...
#[derive(Clone)]
pub struct Source {
    value: SourceValue,
    by: Match,
}

impl Spec for Source {
    const KIND: &'static str = "source ($fu, $ru/username, $avp(x), uuid)";

    fn parse(text: &str, binder: &Binder<'_>) -> Result<Source, String> {
        let (value, flag) = match text.rsplit_once('/') {
            Some((v, f)) if !f.contains(')') => (v.trim(), Some(f.trim())),
            _ => (text.trim(), None),
        };
        let by = match flag.map(str::to_ascii_lowercase).as_deref() {
            None => None,
            Some("uuid") => Some(Match::Uuid),
            Some("uri") => Some(Match::Uri),
            Some("username") => Some(Match::User),
            Some("domain") => Some(Match::Domain),
            Some(other) => {
                return Err(format!(
                    "unknown source flag /{other} (uuid, uri, username, domain)"
                ))
            }
        };
        if value.starts_with('$') {
            let pv = binder
                .parse_pv(value)
                .map_err(|e| format!("{value}: {}", e.message))?;
            // Kamailio reads the URIs of $ru, $fu, $tu and $ou by default, a uuid from
            // any other variable.
            let uri_pv = matches!(value, "$ru" | "$fu" | "$tu" | "$ou");
            Ok(Source {
                value: SourceValue::Pv(pv),
                by: by.unwrap_or(if uri_pv { Match::Uri } else { Match::Uuid }),
            })
        } else if value.is_empty() {
            Err("the source is empty".into())
        } else {
            Ok(Source {
                value: SourceValue::Text(Bytes::copy_from_slice(value.as_bytes())),
                by: by.unwrap_or(Match::Uuid),
            })
        }
    }
}

impl Source {
    /// The WHERE terms naming the user, as (column, value).
    fn keys(&self, cfg: &DbConfig, ctx: &MsgContext) -> Result<Vec<(String, String)>, FnError> {
        let text = match &self.value {
            SourceValue::Text(t) => t.clone(),
            SourceValue::Pv(p) => p.get(ctx)?.to_bytes().unwrap_or_default(),
        };
        if text.is_empty() {
            return Err(FnError::new("the source has no value"));
        }
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        if self.by == Match::Uuid {
            return Ok(vec![(cfg.uuid.clone(), s(&text))]);
        }
        let uri = Uri::parse(&text)
            .map_err(|_| FnError::new(format!("{} is not a SIP URI", s(&text))))?;
        let (user, host) = (
            uri.user().unwrap_or_default(),
            uri.host().unwrap_or_default(),
        );
        if user.is_empty() || host.is_empty() {
            return Err(FnError::new(format!(
                "{}: the URI needs a user and a host",
                s(&text)
            )));
        }
        let mut keys = Vec::new();
        if matches!(self.by, Match::Uri | Match::User) {
            keys.push((cfg.username.clone(), s(user)));
        }
        if self.by == Match::Domain || (self.by == Match::Uri && cfg.use_domain) {
            keys.push((cfg.domain.clone(), s(host)));
        }
        Ok(keys)
    }
}

/// Which attributes: one AVP, or every one (`*`/`a`), the string-named (`s`) or the
/// number-named (`i`) ones.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Which {
    One { name: String, slot: u32 },
    All,
    StrNamed,
    IntNamed,
}

/// `avp_db_*`'s second argument: `$avp(name)[/table]`, `*[/table]`, `s`, `i`.
#[derive(Clone, Debug)]
pub struct DbAvps {
    which: Which,
    table: Option<String>,
}

impl Spec for DbAvps {
    const KIND: &'static str = "$avp(name)[/table], *, s or i";

    fn parse(text: &str, binder: &Binder<'_>) -> Result<DbAvps, String> {
        let t = text.trim();
        // The table follows the AVP's closing parenthesis (or the letter) after a slash.
        let name_end = if t.starts_with("$avp(") {
            t.find(')').map_or(t.len(), |i| i + 1)
        } else {
            t.find('/').unwrap_or(t.len())
        };
        let (spec, rest) = t.split_at(name_end);
        let table = match rest.trim() {
            "" => None,
            r => Some(
                r.strip_prefix('/')
                    .ok_or_else(|| format!("\"{t}\": expected /table after the name"))?
                    .trim(),
            ),
        };
        let table = match table {
            Some(tb) => {
                ferrosip_db::check_identifier(tb).map_err(|e| format!("table: {e}"))?;
                Some(tb.to_string())
            }
            None => None,
        };
        let which =
            if let Some(inner) = spec.strip_prefix("$avp(").and_then(|r| r.strip_suffix(')')) {
                let inner = inner.trim();
                let name = inner
                    .strip_prefix("s:")
                    .or_else(|| inner.strip_prefix("i:"))
                    .unwrap_or(inner);
                if name.is_empty() || name.starts_with('$') {
                    return Err(format!("\"{t}\": the AVP needs a fixed name"));
                }
                Which::One {
                    name: name.to_string(),
                    slot: binder.avp_slot(name),
                }
            } else {
                match spec {
                    "*" | "a" | "A" => Which::All,
                    "s" | "S" => Which::StrNamed,
                    "i" | "I" => Which::IntNamed,
                    other if other.len() > 1 && "*aAsSiI".contains(&other[..1]) => {
                        return Err(format!("\"{t}\": AVP flags after the letter are not built"))
                    }
                    _ => {
                        return Err(format!(
                            "\"{t}\" is not $avp(name), *, s or i (with /table)"
                        ))
                    }
                }
            };
        Ok(DbAvps { which, table })
    }
}

/// `avp_db_store`'s second argument: one AVP, `$avp(name)[/table]` (storing every AVP of
/// the message is not built).
#[derive(Clone, Debug)]
pub struct OneDbAvp(DbAvps);

impl Spec for OneDbAvp {
    const KIND: &'static str = "$avp(name)[/table]";

    fn parse(text: &str, binder: &Binder<'_>) -> Result<OneDbAvp, String> {
        let avps = DbAvps::parse(text, binder)?;
        if !matches!(avps.which, Which::One { .. }) {
            return Err(format!(
                "\"{text}\": name one AVP ($avp(name)); storing every AVP is not built"
            ));
        }
        Ok(OneDbAvp(avps))
    }
}

/// `avp_db_query`'s destinations: `$avp(a);$avp(b)`, one per column.
#[derive(Clone, Debug)]
pub struct AvpList(Vec<u32>);

impl Spec for AvpList {
    const KIND: &'static str = "$avp(a);$avp(b)...";

    fn parse(text: &str, binder: &Binder<'_>) -> Result<AvpList, String> {
        let mut out = Vec::new();
        for item in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let name = item
                .strip_prefix("$avp(")
                .and_then(|r| r.strip_suffix(')'))
                .map(str::trim)
                .filter(|n| !n.is_empty() && !n.starts_with('$'))
                .ok_or_else(|| format!("\"{item}\" is not $avp(name)"))?;
            out.push(binder.avp_slot(name));
        }
        if out.is_empty() {
            return Err("no AVP named".into());
        }
        Ok(AvpList(out))
    }
}

fn failed(function: &'static str, e: FnError) -> ApplyResult {
    apply_result(move |_| Err(FnError::new(format!("{function}: {}", e.message))))
}

/// What a call works on: the database, the table and the user's keys (column, value).
struct Target {
    db: Db,
    table: String,
    keys: Vec<(String, String)>,
}

/// The database and the table and user keys of a call.
fn prepare(
    st: &DbState,
    function: &'static str,
    ctx: &MsgContext,
    source: &Source,
    avps: &DbAvps,
) -> Result<Target, FnError> {
    let db = st
        .db
        .get()
        .cloned()
        .ok_or_else(|| FnError::new(format!("{function}: db_url is not set")))?;
    let table = match &avps.table {
        Some(t) => t.clone(),
        None if st.cfg.table.is_empty() => {
            return Err(FnError::new(format!(
                "{function}: avp_table is not set and the AVP names no table"
            )))
        }
        None => st.cfg.table.clone(),
    };
    let keys = source
        .keys(&st.cfg, ctx)
        .map_err(|e| FnError::new(format!("{function}: {}", e.message)))?;
    Ok(Target { db, table, keys })
}

fn int_of(v: &DbValue) -> Option<i64> {
    v.as_int()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

fn text_of(v: &DbValue) -> String {
    match v {
        DbValue::Null => String::new(),
        DbValue::Int(i) | DbValue::Time(i) => i.to_string(),
        DbValue::Double(d) => d.to_string(),
        DbValue::Str(s) => s.clone(),
    }
}

/// The WHERE terms of the rows a call means: the user's keys, the attribute of one AVP,
/// and for `s`/`i` the `type` values with that kind of name (a value of either kind:
/// 0 and 2, or 1 and 3), one set of terms per value.
fn row_conds<'a>(
    c: &'a DbConfig,
    keys: &'a [(String, String)],
    which: &'a Which,
) -> Vec<Vec<Cond<'a>>> {
    let user: Vec<Cond<'a>> = keys.iter().map(|(k, v)| Cond::eq(k, v.as_str())).collect();
    let with = |extra: Cond<'a>| {
        let mut v = user.clone();
        v.push(extra);
        v
    };
    match which {
        Which::One { name, .. } => vec![with(Cond::eq(&c.attribute, name.as_str()))],
        Which::All => vec![user.clone()],
        Which::StrNamed => vec![
            with(Cond::eq(&c.kind, 0_i64)),
            with(Cond::eq(&c.kind, VAL_INT)),
        ],
        Which::IntNamed => vec![
            with(Cond::eq(&c.kind, NAME_INT)),
            with(Cond::eq(&c.kind, NAME_INT | VAL_INT)),
        ],
    }
}

/// `avp_db_load(source, name)`: 1 when AVPs were loaded, -1 none.
pub fn load(
    st: &Arc<DbState>,
    ctx: &mut MsgContext,
    source: Source,
    avps: DbAvps,
) -> impl Future<Output = ApplyResult> + Send + 'static {
    let prepared = prepare(st, "avp_db_load", ctx, &source, &avps);
    let st = st.clone();
    async move {
        let Target { db, table, keys } = match prepared {
            Ok(p) => p,
            Err(e) => return apply_result(move |_| Err(e)),
        };
        let c = &st.cfg;
        let mut rows = Vec::new();
        for conds in row_conds(c, &keys, &avps.which) {
            match db
                .select(&table, &[&c.value, &c.attribute, &c.kind], &conds, None)
                .await
            {
                Ok(r) => rows.extend(r),
                Err(e) => return failed("avp_db_load", FnError::new(e.to_string())),
            }
        }
        let names = st.names.clone();
        apply_result(move |ctx: &mut MsgContext| -> FnResult {
            let mut loaded = 0;
            for row in &rows {
                let kind = row.get(2).and_then(int_of).unwrap_or(0);
                let slot = match &avps.which {
                    Which::One { slot, .. } => *slot,
                    Which::StrNamed if kind & NAME_INT != 0 => continue,
                    Which::IntNamed if kind & NAME_INT == 0 => continue,
                    _ => {
                        let name = row.get(1).map(text_of).unwrap_or_default();
                        if name.is_empty() {
                            continue;
                        }
                        names.slot(&name)
                    }
                };
                let raw = row.first().map(text_of).unwrap_or_default();
                let value = if kind & VAL_INT != 0 {
                    match raw.trim().parse::<i64>() {
                        Ok(i) => Value::Int(i),
                        Err(_) => continue,
                    }
                } else {
                    Value::from_string(raw)
                };
                ctx.avps.push(slot, value);
                loaded += 1;
            }
            Ok(if loaded > 0 {
                Verdict::TRUE
            } else {
                Verdict::FALSE
            })
        })
    }
}

/// `avp_db_store(source, $avp(name))`: a row per value of the AVP; 1 stored, -1 the AVP
/// had no value.
pub fn store(
    st: &Arc<DbState>,
    ctx: &mut MsgContext,
    source: Source,
    OneDbAvp(avps): OneDbAvp,
) -> impl Future<Output = ApplyResult> + Send + 'static {
    let prepared = prepare(st, "avp_db_store", ctx, &source, &avps).and_then(|p| {
        let Which::One { name, slot } = &avps.which else {
            return Err(FnError::new("avp_db_store: name one AVP ($avp(name))"));
        };
        // Oldest first, so that a later load gives them back in the same order.
        let values: Vec<Value> = ctx
            .avps
            .all(*slot)
            .cloned()
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        Ok((p, name.clone(), values))
    });
    let st = st.clone();
    async move {
        let (Target { db, table, keys }, name, values) = match prepared {
            Ok(p) => p,
            Err(e) => return apply_result(move |_| Err(e)),
        };
        if values.is_empty() {
            return apply_result(|_| Ok(Verdict::FALSE));
        }
        let c = &st.cfg;
        let (uuid, username, domain) = {
            let get = |col: &str| {
                keys.iter()
                    .find(|(k, _)| k == col)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            (get(&c.uuid), get(&c.username), get(&c.domain))
        };
        let cols = [
            c.uuid.as_str(),
            c.username.as_str(),
            c.domain.as_str(),
            c.attribute.as_str(),
            c.kind.as_str(),
            c.value.as_str(),
        ];
        for v in values {
            let (kind, text) = match &v {
                Value::Int(i) => (VAL_INT, i.to_string()),
                other => (
                    0,
                    other
                        .to_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default(),
                ),
            };
            let row = [
                DbValue::Str(uuid.clone()),
                DbValue::Str(username.clone()),
                DbValue::Str(domain.clone()),
                DbValue::Str(name.clone()),
                DbValue::Int(kind),
                DbValue::Str(text),
            ];
            if let Err(e) = db.insert(&table, &cols, &row).await {
                return failed("avp_db_store", FnError::new(e.to_string()));
            }
        }
        apply_result(|_| Ok(Verdict::TRUE))
    }
}

/// `avp_db_delete(source, name)`: 1 done (rows or not), an error when the query fails.
pub fn delete(
    st: &Arc<DbState>,
    ctx: &mut MsgContext,
    source: Source,
    avps: DbAvps,
) -> impl Future<Output = ApplyResult> + Send + 'static {
    let prepared = prepare(st, "avp_db_delete", ctx, &source, &avps);
    let st = st.clone();
    async move {
        let Target { db, table, keys } = match prepared {
            Ok(p) => p,
            Err(e) => return apply_result(move |_| Err(e)),
        };
        for conds in row_conds(&st.cfg, &keys, &avps.which) {
            if let Err(e) = db.delete(&table, &conds).await {
                return failed("avp_db_delete", FnError::new(e.to_string()));
            }
        }
        apply_result(|_| Ok(Verdict::TRUE))
    }
}

/// `avp_db_query(query[, dest])`: the columns of each row go to the DEST AVPs, in order;
/// 1 when rows came back (or a statement without rows ran, with no DEST), -1 none.
pub fn query(
    st: &Arc<DbState>,
    query: Bytes,
    dest: Option<AvpList>,
) -> impl Future<Output = ApplyResult> + Send + 'static {
    let db = st.db.get().cloned();
    async move {
        let Some(db) = db else {
            return failed("avp_db_query", FnError::new("db_url is not set"));
        };
        let sql = String::from_utf8_lossy(&query).into_owned();
        let result = match db.raw_query(&sql, MAX_QUERY_ROWS).await {
            Ok(r) => r,
            Err(e) => return failed("avp_db_query", FnError::new(e.to_string())),
        };
        apply_result(move |ctx: &mut MsgContext| -> FnResult {
            let Some(dest) = dest else {
                return Ok(Verdict::TRUE);
            };
            if result.rows.is_empty() {
                return Ok(Verdict::FALSE);
            }
            for row in &result.rows {
                for (slot, v) in dest.0.iter().zip(row) {
                    let value = match v {
                        DbValue::Null => continue,
                        DbValue::Int(i) | DbValue::Time(i) => Value::Int(*i),
                        other => Value::from_string(text_of(other)),
                    };
                    ctx.avps.push(*slot, value);
                }
            }
            Ok(Verdict::TRUE)
        })
    }
}
