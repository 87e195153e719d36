//! `sqlops` (Kamailio's module of the same name): SQL statements written in the routing
//! script, on named connections (`sqlcon` "name=>db_url"), their rows read back through
//! `$dbr(result=>...)`, written into pseudo-variables (`sql_pvquery`) or into an XAVP
//! (`sql_xquery`).
//!
//! Values of pseudo-variables put into a query are never trusted: inside a quoted SQL
//! string they are escaped for the connection's dialect, outside quotes they must be a
//! number (or null, written `NULL`), so a header from the network cannot change the
//! statement. Results live with the message (its extensions), at most `results_maxsize`
//! of them and `results_maxrows` rows each.

use bytes::Bytes;
use ferrosip_api::args::{value_to_bytes, ArgKind, ArgType, CallEnv, FixupEnv};
use ferrosip_api::pv::{Binder, PvParamRule};
use ferrosip_api::registry::{apply_result, ApplyResult, FnRow};
use ferrosip_api::tokio::sync::mpsc;
use ferrosip_api::tokio::sync::OnceCell;
use ferrosip_api::xavp::{XKind, XList, XVal};
use ferrosip_api::{
    FnError, FnResult, Module, ModuleBuilder, ModuleParams, MsgContext, ParamType, Pv, PvClass,
    PvError, PvIndex, PvRef, RawArg, RouteMask, SetOp, Value, Verdict,
};
use ferrosip_db::{Db, DbKind, DbValue, RawResult};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock};

/// One named connection (`sqlcon`).
pub struct Connection {
    pub name: String,
    pub url: String,
    db: OnceCell<Db>,
}

impl Connection {
    /// The pool, opened now when the start hook could not (or `connect_mode` 2 said
    /// to wait for the first query).
    async fn db(&self) -> Result<Db, FnError> {
        self.db
            .get_or_try_init(|| Db::connect(&self.url))
            .await
            .cloned()
            .map_err(|e| FnError::new(format!("sqlops: connection {}: {e}", self.name)))
    }
}

pub struct State {
    pub connections: HashMap<String, Arc<Connection>>,
    pub connect_mode: i64,
    pub results_maxsize: usize,
    pub results_maxrows: usize,
    /// `sql_query_async` statements waiting for the writer task, at most
    /// `async_queue_size`; set by the start hook.
    async_queue: OnceLock<mpsc::Sender<AsyncQuery>>,
    pub async_queue_size: usize,
}

/// A statement of `sql_query_async`, its values already put in.
struct AsyncQuery {
    con: Arc<Connection>,
    query: Evaluated,
}

/// Runs the queued statements one after the other, in the order the script queued them
/// (an INSERT then an UPDATE of the same row stay in that order). Ends with the state.
async fn async_writer(mut rx: mpsc::Receiver<AsyncQuery>) {
    while let Some(AsyncQuery { con, query }) = rx.recv().await {
        let run = async {
            let db = con.db().await?;
            let sql = query.assemble(db.kind())?;
            tracing::debug!(connection = %con.name, sql, "sqlops: async query");
            db.raw_query(&sql, 0)
                .await
                .map_err(|e| FnError::new(format!("sqlops: {e}")))
        };
        if let Err(e) = run.await {
            tracing::warn!(connection = %con.name, "sql_query_async: {}", e.message);
        }
    }
}

/// `sql_query_async(con, query)`: queues the statement and returns at once; the worker
/// never waits for the database. A full queue (the database slower than the traffic for
/// too long) refuses the statement rather than grow.
fn sql_query_async(st: &State, ctx: &mut MsgContext, con: Bytes, query: QueryText) -> FnResult {
    let con = st.connection(&con)?;
    let query = query.eval(ctx)?;
    let Some(tx) = st.async_queue.get() else {
        return Err(FnError::new("sql_query_async: the server is not started"));
    };
    match tx.try_send(AsyncQuery { con, query }) {
        Ok(()) => Ok(Verdict::TRUE),
        Err(mpsc::error::TrySendError::Full(q)) => Err(FnError::new(format!(
            "sql_query_async: {} statements are waiting for connection {} already (async_queue_size); this one is dropped",
            st.async_queue_size, q.con.name
        ))),
        Err(mpsc::error::TrySendError::Closed(_)) => {
            Err(FnError::new("sql_query_async: the writer has stopped"))
        }
    }
}

impl State {
    pub fn from_params(p: &ModuleParams) -> Result<State, String> {
        let mut connections = HashMap::new();
        for v in p.all("sqlcon") {
            let text = v
                .to_bytes()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            let Some((name, url)) = text.split_once("=>") else {
                return Err(format!("sqlcon \"{text}\" is not name=>db_url"));
            };
            let (name, url) = (name.trim().to_string(), url.trim().to_string());
            if name.is_empty() || url.is_empty() {
                return Err(format!("sqlcon \"{text}\" is not name=>db_url"));
            }
            ferrosip_db::DbUrl::parse(&url).map_err(|e| format!("sqlcon {name}: {e}"))?;
            let con = Arc::new(Connection {
                name: name.clone(),
                url,
                db: OnceCell::new(),
            });
            if connections.insert(name.clone(), con).is_some() {
                return Err(format!("sqlcon {name} is defined twice"));
            }
        }
        let connect_mode = p.int("connect_mode");
        if !(0..=2).contains(&connect_mode) {
            return Err(format!("connect_mode {connect_mode} is not 0, 1 or 2"));
        }
        let bounded = |name: &str, max: i64| -> Result<usize, String> {
            let v = p.int(name);
            if !(1..=max).contains(&v) {
                return Err(format!("{name} {v} is not between 1 and {max}"));
            }
            Ok(v as usize)
        };
        Ok(State {
            connections,
            connect_mode,
            results_maxsize: bounded("results_maxsize", 1024)?,
            results_maxrows: bounded("results_maxrows", 100_000)?,
            async_queue: OnceLock::new(),
            async_queue_size: bounded("async_queue_size", 1_000_000)?,
        })
    }

    fn connection(&self, name: &[u8]) -> Result<Arc<Connection>, FnError> {
        let name = String::from_utf8_lossy(name);
        self.connections.get(name.as_ref()).cloned().ok_or_else(|| {
            FnError::new(format!(
                "sqlops: no connection named {name} (define it with modparam(\"sqlops\", \"sqlcon\", \"{name}=>db_url\"))"
            ))
        })
    }
}

/// The results of a message's queries, by container name.
#[derive(Default)]
pub struct SqlResults(Vec<(Bytes, RawResult)>);

impl SqlResults {
    fn get(&self, name: &[u8]) -> Option<&RawResult> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, r)| r)
    }
}

fn store_result(ctx: &mut MsgContext, name: Bytes, result: RawResult, max: usize) -> FnResult {
    let results = ctx.ext.get_or_insert_with(SqlResults::default);
    if let Some(slot) = results.0.iter_mut().find(|(n, _)| *n == name) {
        slot.1 = result;
        return Ok(Verdict::TRUE);
    }
    if results.0.len() >= max {
        return Err(FnError::new(format!(
            "sqlops: more than results_maxsize ({max}) result containers in one message"
        )));
    }
    results.0.push((name, result));
    Ok(Verdict::TRUE)
}

/// A query as written: literal SQL and the pseudo-variables inside it, each marked with
/// whether it sits inside a quoted string.
#[derive(Clone)]
pub struct QueryText(Arc<[QueryPart]>);

#[derive(Clone)]
enum QueryPart {
    Sql(String),
    Pv { pv: PvRef, quoted: bool },
}

/// A query's parts with the pseudo-variables read, ready to assemble for a dialect.
pub struct Evaluated(Vec<EvalPart>);

enum EvalPart {
    Sql(String),
    Quoted(Bytes),
    Bare(Value),
}

impl QueryText {
    fn parse(text: &str, binder: &Binder<'_>) -> Result<QueryText, String> {
        let s = text.as_bytes();
        let mut parts = Vec::new();
        let mut quoted = false;
        let mut lit_start = 0;
        let mut i = 0;
        while i < s.len() {
            let starts_pv = s[i] == b'$'
                && matches!(s.get(i + 1), Some(b) if b.is_ascii_alphabetic() || *b == b'_' || *b == b'(');
            if starts_pv {
                if lit_start < i {
                    parts.push(QueryPart::Sql(text[lit_start..i].to_string()));
                }
                let (pv, used) = binder
                    .parse_pv_prefix(&text[i..])
                    .map_err(|e| format!("at offset {}: {}", i + e.offset, e.message))?;
                parts.push(QueryPart::Pv { pv, quoted });
                i += used;
                lit_start = i;
                continue;
            }
            if s[i] == b'\'' {
                quoted = !quoted;
            }
            i += 1;
        }
        if lit_start < s.len() {
            parts.push(QueryPart::Sql(text[lit_start..].to_string()));
        }
        if quoted {
            return Err("the query has an unterminated quoted string".into());
        }
        Ok(QueryText(parts.into()))
    }

    fn eval(&self, ctx: &MsgContext) -> Result<Evaluated, FnError> {
        let mut out = Vec::with_capacity(self.0.len());
        for p in self.0.iter() {
            out.push(match p {
                QueryPart::Sql(s) => EvalPart::Sql(s.clone()),
                QueryPart::Pv { pv, quoted } => {
                    let v = pv.get(ctx)?;
                    if *quoted {
                        EvalPart::Quoted(v.to_bytes().unwrap_or_default())
                    } else {
                        EvalPart::Bare(v)
                    }
                }
            });
        }
        Ok(Evaluated(out))
    }
}

impl Evaluated {
    /// The statement for `kind`: quoted values escaped, bare ones checked to be numbers.
    fn assemble(&self, kind: DbKind) -> Result<String, FnError> {
        let mut sql = String::new();
        for p in &self.0 {
            match p {
                EvalPart::Sql(s) => sql.push_str(s),
                EvalPart::Quoted(b) => {
                    for c in String::from_utf8_lossy(b).chars() {
                        match c {
                            '\'' => sql.push_str("''"),
                            '\\' if kind == DbKind::Mysql => sql.push_str("\\\\"),
                            '\0' => {}
                            c => sql.push(c),
                        }
                    }
                }
                EvalPart::Bare(Value::Null) => sql.push_str("NULL"),
                EvalPart::Bare(Value::Int(i)) => sql.push_str(&i.to_string()),
                EvalPart::Bare(v) => {
                    let text = v.to_bytes().unwrap_or_default();
                    if !is_number(&text) {
                        return Err(FnError::new(format!(
                            "sqlops: \"{}\" is not a number; a text value must be inside quotes in the query",
                            String::from_utf8_lossy(&text)
                        )));
                    }
                    sql.push_str(&String::from_utf8_lossy(&text));
                }
            }
        }
        Ok(sql)
    }
}

fn is_number(b: &[u8]) -> bool {
    let b = b.strip_prefix(b"-").unwrap_or(b);
    let mut parts = b.splitn(2, |c| *c == b'.');
    let int = parts.next().unwrap_or_default();
    let frac = parts.next();
    !int.is_empty()
        && int.iter().all(u8::is_ascii_digit)
        && frac.is_none_or(|f| !f.is_empty() && f.iter().all(u8::is_ascii_digit))
}

impl ArgType for QueryText {
    type Fixed = QueryText;
    const KIND: ArgKind = ArgKind::Custom("SQL query");

    fn fixup(raw: RawArg, env: &dyn FixupEnv) -> Result<Self::Fixed, String> {
        match raw {
            RawArg::Str(s) => QueryText::parse(&s, &env.binder()),
            RawArg::Pv(pv) => Err(format!(
                "the query must be written as a string (\"... {} ...\"), so that sqlops knows where each value goes",
                pv.text()
            )),
            other => Err(format!("expected an SQL query, found {}", other.describe())),
        }
    }

    fn eval(fixed: &Self::Fixed, _ctx: &MsgContext) -> Result<Self, FnError> {
        Ok(fixed.clone())
    }

    fn from_value(value: Value, env: &dyn CallEnv) -> Result<Self, FnError> {
        let text = value_to_bytes(value)?;
        QueryText::parse(&String::from_utf8_lossy(&text), &env.binder()).map_err(FnError::new)
    }
}

/// A list of pseudo-variables to write (`sql_pvquery`'s "$var(a),$avp(b)").
#[derive(Clone)]
pub struct PvList(Vec<PvRef>);

impl PvList {
    fn parse(text: &str, binder: &Binder<'_>) -> Result<PvList, String> {
        let mut out = Vec::new();
        for name in text.split(',') {
            let pv = binder
                .parse_pv(name.trim())
                .map_err(|e| format!("{}: {}", name.trim(), e.message))?;
            if !pv.is_writable() {
                return Err(format!("{} cannot be written", pv.text()));
            }
            out.push(pv);
        }
        Ok(PvList(out))
    }
}

impl ArgType for PvList {
    type Fixed = PvList;
    const KIND: ArgKind = ArgKind::Custom("list of pseudo-variables");

    fn fixup(raw: RawArg, env: &dyn FixupEnv) -> Result<Self::Fixed, String> {
        match raw {
            RawArg::Str(s) => PvList::parse(&s, &env.binder()),
            RawArg::Pv(pv) if pv.is_writable() => Ok(PvList(vec![pv])),
            other => Err(format!(
                "expected \"$pv1,$pv2,...\", found {}",
                other.describe()
            )),
        }
    }

    fn eval(fixed: &Self::Fixed, _ctx: &MsgContext) -> Result<Self, FnError> {
        Ok(fixed.clone())
    }

    fn from_value(value: Value, env: &dyn CallEnv) -> Result<Self, FnError> {
        let text = value_to_bytes(value)?;
        PvList::parse(&String::from_utf8_lossy(&text), &env.binder()).map_err(FnError::new)
    }
}

fn failed(e: FnError) -> ApplyResult {
    apply_result(move |_| Err(e))
}

/// Kamailio's codes: 1 rows kept in a result, 2 no rows, 3 rows but no result named.
fn code_of(result: &RawResult, named: bool) -> Verdict {
    match (result.rows.is_empty(), named) {
        (true, _) => Verdict::code(2),
        (false, true) => Verdict::TRUE,
        (false, false) => Verdict::code(3),
    }
}

fn run_query(
    st: &State,
    ctx: &mut MsgContext,
    con: &[u8],
    query: &QueryText,
) -> Result<impl Future<Output = Result<RawResult, FnError>> + Send + 'static, FnError> {
    let con = st.connection(con)?;
    let evaluated = query.eval(ctx)?;
    let max_rows = st.results_maxrows;
    Ok(async move {
        let db = con.db().await?;
        let sql = evaluated.assemble(db.kind())?;
        tracing::debug!(connection = %con.name, sql, "sqlops: query");
        let result = db
            .raw_query(&sql, max_rows)
            .await
            .map_err(|e| FnError::new(format!("sqlops: {e}")))?;
        if result.truncated {
            tracing::warn!(connection = %con.name, max_rows, "sqlops: query returned more rows than results_maxrows; the rest are dropped");
        }
        Ok(result)
    })
}

fn sql_query(
    st: &State,
    ctx: &mut MsgContext,
    con: Bytes,
    query: QueryText,
    res: Option<Bytes>,
) -> impl Future<Output = ApplyResult> + Send + 'static {
    let run = run_query(st, ctx, &con, &query);
    let max = st.results_maxsize;
    async move {
        let result = match run {
            Ok(f) => f.await,
            Err(e) => return failed(e),
        };
        apply_result(move |ctx: &mut MsgContext| -> FnResult {
            let result = result?;
            let code = code_of(&result, res.is_some());
            if let Some(name) = res {
                store_result(ctx, name, result, max)?;
            }
            Ok(code)
        })
    }
}

fn to_value(v: &DbValue) -> Value {
    match v {
        DbValue::Null => Value::Null,
        DbValue::Int(i) | DbValue::Time(i) => Value::Int(*i),
        DbValue::Double(d) => Value::from_string(d.to_string()),
        DbValue::Str(s) => Value::from_string(s.clone()),
    }
}

fn sql_pvquery(
    st: &State,
    ctx: &mut MsgContext,
    con: Bytes,
    query: QueryText,
    pvs: PvList,
) -> impl Future<Output = ApplyResult> + Send + 'static {
    let run = run_query(st, ctx, &con, &query);
    async move {
        let result = match run {
            Ok(f) => f.await,
            Err(e) => return failed(e),
        };
        apply_result(move |ctx: &mut MsgContext| -> FnResult {
            let result = result?;
            let Some(first) = result.rows.first() else {
                return Ok(Verdict::code(2));
            };
            if first.len() != pvs.0.len() {
                return Err(FnError::new(format!(
                    "sqlops: the query returned {} columns for {} pseudo-variables",
                    first.len(),
                    pvs.0.len()
                )));
            }
            for (i, pv) in pvs.0.iter().enumerate() {
                // An AVP takes every row (the first row's value ends on top of the
                // stack only when it is the only one, as Kamailio adds them in order);
                // any other variable takes the first row's.
                if pv.text().starts_with("$avp(") {
                    for row in &result.rows {
                        pv.set(ctx, SetOp::Assign, to_value(&row[i]))?;
                    }
                } else {
                    pv.set(ctx, SetOp::Assign, to_value(&first[i]))?;
                }
            }
            Ok(Verdict::TRUE)
        })
    }
}

fn sql_xquery(
    st: &State,
    ctx: &mut MsgContext,
    con: Bytes,
    query: QueryText,
    xavp: Bytes,
) -> impl Future<Output = ApplyResult> + Send + 'static {
    let run = run_query(st, ctx, &con, &query);
    async move {
        let result = match run {
            Ok(f) => f.await,
            Err(e) => return failed(e),
        };
        apply_result(move |ctx: &mut MsgContext| -> FnResult {
            let result = result?;
            let name = std::str::from_utf8(&xavp)
                .ok()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| FnError::new("sqlops: sql_xquery needs an XAVP name"))?;
            if result.rows.is_empty() {
                return Ok(Verdict::code(2));
            }
            let cells: usize = result.rows.iter().map(|r| r.len() + 1).sum();
            ctx.avps
                .xavps
                .room(cells)
                .map_err(|e| FnError::new(format!("sqlops: sql_xquery: {e}")))?;
            // Rows go to the head one by one from the last, so the first row ends at
            // index 0 (as Kamailio's); fields keep the column order.
            for row in result.rows.iter().rev() {
                let mut fields = XList::default();
                for (col, v) in result.columns.iter().zip(row) {
                    fields.push_back(col, XVal::Value(to_value(v)));
                }
                ctx.avps
                    .xavps
                    .add_list(XKind::Xavp, name, fields)
                    .map_err(|e| FnError::new(format!("sqlops: sql_xquery: {e}")))?;
            }
            Ok(Verdict::TRUE)
        })
    }
}

/// `$dbr(name=>field)`.
#[derive(Clone)]
enum DbrField {
    Rows,
    Cols,
    Cell(DbrIndex, DbrIndex),
    ColName(DbrIndex),
}

#[derive(Clone)]
enum DbrIndex {
    Fixed(i64),
    Pv(PvRef),
}

impl DbrIndex {
    fn parse(text: &str, binder: &Binder<'_>) -> Result<DbrIndex, String> {
        let t = text.trim();
        if t.starts_with('$') {
            return binder
                .parse_pv(t)
                .map(DbrIndex::Pv)
                .map_err(|e| format!("{t}: {}", e.message));
        }
        t.parse::<i64>()
            .map(DbrIndex::Fixed)
            .map_err(|_| format!("\"{t}\" is not an index (a number or a pseudo-variable)"))
    }

    fn get(&self, ctx: &MsgContext) -> Result<Option<usize>, PvError> {
        let n = match self {
            DbrIndex::Fixed(n) => *n,
            DbrIndex::Pv(pv) => match pv.get(ctx)?.as_int() {
                Some(n) => n,
                None => return Ok(None),
            },
        };
        Ok(usize::try_from(n).ok())
    }
}

struct DbrPv {
    name: Bytes,
    field: DbrField,
}

impl Pv for DbrPv {
    fn get(&self, ctx: &MsgContext, _index: PvIndex) -> Result<Value, PvError> {
        let Some(r) = ctx
            .ext
            .get::<SqlResults>()
            .and_then(|all| all.get(&self.name))
        else {
            return Ok(match self.field {
                DbrField::Rows | DbrField::Cols => Value::Int(0),
                _ => Value::Null,
            });
        };
        Ok(match &self.field {
            DbrField::Rows => Value::Int(r.rows.len() as i64),
            DbrField::Cols => Value::Int(r.columns.len() as i64),
            DbrField::Cell(row, col) => match (row.get(ctx)?, col.get(ctx)?) {
                (Some(row), Some(col)) => r
                    .rows
                    .get(row)
                    .and_then(|cells| cells.get(col))
                    .map_or(Value::Null, to_value),
                _ => Value::Null,
            },
            DbrField::ColName(col) => col
                .get(ctx)?
                .and_then(|c| r.columns.get(c))
                .map_or(Value::Null, |n| Value::from_string(n.clone())),
        })
    }
}

struct DbrClass;

impl PvClass for DbrClass {
    fn param_rule(&self) -> PvParamRule {
        PvParamRule::Required
    }

    fn bind(&self, param: Option<&str>, binder: &Binder<'_>) -> Result<Arc<dyn Pv>, String> {
        let p = param.unwrap_or_default();
        let Some((name, key)) = p.split_once("=>") else {
            return Err(format!(
                "$dbr({p}): expected result=>rows, =>cols, =>[row,col] or =>colname[col]"
            ));
        };
        let (name, key) = (name.trim(), key.trim());
        if name.is_empty() {
            return Err("$dbr: the result name is missing".into());
        }
        let field = if key == "rows" {
            DbrField::Rows
        } else if key == "cols" {
            DbrField::Cols
        } else if let Some(inner) = key.strip_prefix('[').and_then(|k| k.strip_suffix(']')) {
            let Some((r, c)) = inner.split_once(',') else {
                return Err(format!("$dbr({p}): a cell is [row,col]"));
            };
            DbrField::Cell(DbrIndex::parse(r, binder)?, DbrIndex::parse(c, binder)?)
        } else if let Some(inner) = key
            .strip_prefix("colname[")
            .and_then(|k| k.strip_suffix(']'))
        {
            DbrField::ColName(DbrIndex::parse(inner, binder)?)
        } else {
            return Err(format!(
                "$dbr({p}): unknown field {key} (rows, cols, [row,col], colname[col])"
            ));
        };
        Ok(Arc::new(DbrPv {
            name: Bytes::copy_from_slice(name.as_bytes()),
            field,
        }))
    }

    fn doc(&self) -> &str {
        "A query result: $dbr(res=>rows) and $dbr(res=>cols) count rows and columns, $dbr(res=>[r,c]) is a cell (0-based; indexes may be pseudo-variables), $dbr(res=>colname[c]) a column's name. An unknown result reads 0 rows and null cells."
    }
}

/// The `sqlops` module.
pub struct SqlopsModule;

impl Module for SqlopsModule {
    fn name(&self) -> &'static str {
        "sqlops"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("SQL statements from the routing script on named database connections (SQLite, MariaDB/MySQL, PostgreSQL), their results read through $dbr.\n\nA pseudo-variable inside a quoted string of the query is escaped for the connection's dialect; one outside quotes must hold a number (null is written NULL), otherwise the call fails: a value from the network cannot change the statement. Results belong to the message being routed: at most results_maxsize of them, each keeping at most results_maxrows rows.");
        m.repeatable_param(
            "sqlcon",
            ParamType::Str,
            "A connection: \"name=>db_url\" (repeat for more connections).",
        );
        m.repeatable_param(
            "sqlres",
            ParamType::Str,
            "A result container name. Optional: results are created by sql_query(); accepted for Kamailio configs.",
        );
        m.param(
            "connect_mode",
            ParamType::Int,
            0_i64,
            "0: connect at start or refuse to start; 1: connect at start, start anyway when a database does not answer (it is tried again at its first query); 2: connect at the first query.",
        );
        m.param(
            "results_maxsize",
            ParamType::Int,
            32_i64,
            "How many result containers one message may fill.",
        );
        m.param(
            "results_maxrows",
            ParamType::Int,
            1000_i64,
            "Ferrosip's bound on the rows a result keeps; further rows are dropped with a warning.",
        );
        m.param(
            "async_queue_size",
            ParamType::Int,
            1024_i64,
            "Ferrosip's bound on the sql_query_async statements waiting for the database; when it is full, sql_query_async returns -1 and the statement is dropped.",
        );
        m.param(
            "tr_buf_size",
            ParamType::Int,
            2048_i64,
            "Accepted for Kamailio configs; no effect (buffers are sized per value).",
        );
        m.param(
            "log_buf_size",
            ParamType::Int,
            128_i64,
            "Accepted for Kamailio configs; no effect (queries are logged whole at debug level).",
        );
        let state = m.state(State::from_params);
        {
            let st = state.clone();
            m.on_start(move |env| {
                let st = st.get();
                let rt = env.runtime.clone();
                async move {
                    let st: Arc<State> = st.map_err(|e| e.message)?;
                    let (tx, rx) = mpsc::channel(st.async_queue_size);
                    if st.async_queue.set(tx).is_ok() {
                        rt.spawn(async_writer(rx));
                    }
                    if st.connect_mode == 2 {
                        return Ok(());
                    }
                    for con in st.connections.values() {
                        match con.db().await {
                            Ok(_) => {}
                            Err(e) if st.connect_mode == 1 => {
                                tracing::warn!("{} (connect_mode 1: starting anyway)", e.message)
                            }
                            Err(e) => return Err(e.message),
                        }
                    }
                    Ok(())
                }
            });
        }
        m.pv("dbr", DbrClass);
        let s = &state;
        #[rustfmt::skip]
        m.functions([
            FnRow::asynchronous("sql_query", &["con", "query", "res"], RouteMask::ANY,
                "Runs QUERY on connection CON and keeps its rows in result RES ($dbr(RES=>...)); 1 rows kept, 2 no rows, -1 error (unknown connection, database error, a bare value that is not a number).",
                s.with(|st: &State, ctx: &mut MsgContext, con: Bytes, query: QueryText, res: Bytes| sql_query(st, ctx, con, query, Some(res)))),
            FnRow::asynchronous("sql_query", &["con", "query"], RouteMask::ANY,
                "Runs QUERY on connection CON without keeping rows (INSERT, UPDATE, DELETE); 2 no rows, 3 rows came back, -1 error.",
                s.with(|st: &State, ctx: &mut MsgContext, con: Bytes, query: QueryText| sql_query(st, ctx, con, query, None))),
            FnRow::asynchronous("sql_pvquery", &["con", "query", "res"], RouteMask::ANY,
                "Runs QUERY and writes the columns of the result into the comma-separated pseudo-variables RES, one per column: an $avp gets the value of every row, any other variable the first row's; 1 done, 2 no rows, -1 error (also when the column count differs).",
                s.with(|st: &State, ctx: &mut MsgContext, con: Bytes, query: QueryText, pvs: PvList| sql_pvquery(st, ctx, con, query, pvs))),
            FnRow::sync("sql_result_free", &["res"], RouteMask::ANY,
                "Forgets result RES (it is dropped with the message anyway); always 1.",
                |ctx: &mut MsgContext, res: Bytes| -> FnResult {
                    if let Some(all) = ctx.ext.get_mut::<SqlResults>() {
                        all.0.retain(|(n, _)| *n != res);
                    }
                    Ok(Verdict::TRUE)
                }),
            FnRow::asynchronous("sql_xquery", &["con", "query", "xavp"], RouteMask::ANY,
                "Runs QUERY and adds its rows to $xavp(XAVP): one item per row, the first row at index 0, one field per column named as the column ($xavp(XAVP[i]=>column)); a NULL column is a field with no value. 1 rows, 2 no rows, -1 error (also when the rows would pass the per-message XAVP limit).",
                s.with(|st: &State, ctx: &mut MsgContext, con: Bytes, query: QueryText, xavp: Bytes| sql_xquery(st, ctx, con, query, xavp))),
            FnRow::sync("sql_query_async", &["con", "query"], RouteMask::ANY,
                "Queues QUERY (its pseudo-variables evaluated and escaped now) for connection CON and returns without waiting: a writer task runs the queued statements one after the other, in order; an error is logged, no result is kept. 1 queued, -1 unknown connection, a bare value that is not a number, or the queue (async_queue_size) full. Statements still queued when the server stops are lost.",
                s.with(|st: &State, ctx: &mut MsgContext, con: Bytes, query: QueryText| sql_query_async(st, ctx, con, query))),
        ]);
        m.example(
            "loadmodule \"sl.so\"\nloadmodule \"sqlops.so\"\n\
             modparam(\"sqlops\", \"sqlcon\", \"e911=>sqlite:///var/lib/ferrosip/e911.db\")\n\
             request_route {\n    \
                 if (sql_query(\"e911\", \"select number from registered where number='$fU'\", \"r\") != 1) {\n        \
                     sl_send_reply(\"403\", \"Unknown caller\");\n        exit;\n    }\n    \
                 xlog(\"L_INFO\", \"caller $dbr(r=>[0,0]) is registered\\n\");\n    \
                 sql_result_free(\"r\");\n    \
                 sl_send_reply(\"200\", \"OK\");\n}\n",
        );
    }
}

#[cfg(test)]
mod tests;
