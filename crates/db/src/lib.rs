//! The database layer Ferrosip modules use (`usrloc`, `auth_db`, `acc`, `dispatcher`, …).
//!
//! One API over four backends, chosen by a Kamailio-style `db_url`:
//! `sqlite:///path/file.db`, `mysql://user:pass@host[:port]/db`,
//! `postgres://user[:pass]@host[:port]/db` and Kamailio's `text:///dir` (db_text).
//!
//! Every statement is prepared and every value is bound; table and column names (which
//! come from the config) are checked against `[A-Za-z_][A-Za-z0-9_]*` and quoted for the
//! dialect, so nothing a SIP message carries ever becomes SQL text.

use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;

mod sql;
mod sqlite_scan;
mod text;
mod time;
mod timeout;
mod url;

pub mod accounts;
pub mod schema;

#[doc(hidden)]
pub use text::reparse_table_text;
pub use timeout::{set_timeout, timeout, DEFAULT_TIMEOUT};
pub use url::{DbKind, DbUrl};

/// One value read from or written to a column.
///
/// `Time` is for DATETIME/TIMESTAMP columns: it is stored as a DATETIME in MariaDB, a
/// `TIMESTAMP WITHOUT TIME ZONE` in PostgreSQL and `'YYYY-MM-DD HH:MM:SS'` text in SQLite
/// (local time, as Kamailio does), and such columns read back as `Time`. Integer columns
/// that hold unix seconds (`htable.expires`) take an `Int`.
///
/// Give each column a value of its own kind: PostgreSQL refuses text for an integer or
/// timestamp column (it converts between numeric kinds, and anything to text).
#[derive(Clone, Debug, PartialEq)]
pub enum DbValue {
    Null,
    Int(i64),
    Double(f64),
    Str(String),
    /// Unix seconds.
    Time(i64),
}

impl DbValue {
    /// The integer of an `Int` or `Time` (Kamailio's db_text and some schemas keep
    /// timestamps in integer columns).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            DbValue::Int(i) | DbValue::Time(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            DbValue::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            DbValue::Double(d) => Some(*d),
            DbValue::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
    /// Unix seconds of a `Time`, or of an `Int` column holding a timestamp.
    pub fn as_time(&self) -> Option<i64> {
        match self {
            DbValue::Time(t) | DbValue::Int(t) => Some(*t),
            _ => None,
        }
    }
    pub fn is_null(&self) -> bool {
        matches!(self, DbValue::Null)
    }
}

impl fmt::Display for DbValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbValue::Null => f.write_str("NULL"),
            DbValue::Int(i) => write!(f, "{i}"),
            DbValue::Double(d) => write!(f, "{d}"),
            DbValue::Str(s) => f.write_str(s),
            DbValue::Time(t) => f.write_str(&time::format_local(*t)),
        }
    }
}

impl From<i64> for DbValue {
    fn from(v: i64) -> Self {
        DbValue::Int(v)
    }
}
impl From<i32> for DbValue {
    fn from(v: i32) -> Self {
        DbValue::Int(v.into())
    }
}
impl From<u32> for DbValue {
    fn from(v: u32) -> Self {
        DbValue::Int(v.into())
    }
}
impl From<f64> for DbValue {
    fn from(v: f64) -> Self {
        DbValue::Double(v)
    }
}
impl From<&str> for DbValue {
    fn from(v: &str) -> Self {
        DbValue::Str(v.to_string())
    }
}
impl From<String> for DbValue {
    fn from(v: String) -> Self {
        DbValue::Str(v)
    }
}
impl<T: Into<DbValue>> From<Option<T>> for DbValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(DbValue::Null, Into::into)
    }
}

/// One result row, in the order of the selected columns.
pub type Row = Vec<DbValue>;

/// The result of [`Db::raw_query`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawResult {
    /// The column names, in order (empty when no row came back).
    pub columns: Vec<String>,
    /// The rows kept.
    pub rows: Vec<Row>,
    /// More rows came than were kept.
    pub truncated: bool,
}

/// Comparison of a WHERE term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "<>",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }
}

/// One `col <op> value` term of a WHERE clause; the terms of a query are joined with AND.
/// `Eq`/`Ne` with `DbValue::Null` mean `IS NULL`/`IS NOT NULL`.
#[derive(Clone, Debug, PartialEq)]
pub struct Cond<'a> {
    pub col: &'a str,
    pub op: Op,
    pub val: DbValue,
}

impl<'a> Cond<'a> {
    pub fn new(col: &'a str, op: Op, val: impl Into<DbValue>) -> Self {
        Cond {
            col,
            op,
            val: val.into(),
        }
    }
    pub fn eq(col: &'a str, val: impl Into<DbValue>) -> Self {
        Self::new(col, Op::Eq, val)
    }
    pub fn ne(col: &'a str, val: impl Into<DbValue>) -> Self {
        Self::new(col, Op::Ne, val)
    }
    pub fn lt(col: &'a str, val: impl Into<DbValue>) -> Self {
        Self::new(col, Op::Lt, val)
    }
    pub fn le(col: &'a str, val: impl Into<DbValue>) -> Self {
        Self::new(col, Op::Le, val)
    }
    pub fn gt(col: &'a str, val: impl Into<DbValue>) -> Self {
        Self::new(col, Op::Gt, val)
    }
    pub fn ge(col: &'a str, val: impl Into<DbValue>) -> Self {
        Self::new(col, Op::Ge, val)
    }
}

/// A database error, with where it happened: the URL (password hidden) and the table.
#[derive(thiserror::Error, Debug)]
pub enum DbError {
    #[error("invalid db_url '{url}': {reason}")]
    Url { url: String, reason: String },
    #[error("invalid SQL identifier {ident:?}: table and column names must match [A-Za-z_][A-Za-z0-9_]*")]
    Identifier { ident: String },
    #[error("{url}: cannot connect: {message}")]
    Connect { url: String, message: String },
    #[error("{url}: table {table}: {message}")]
    Query {
        url: String,
        table: String,
        message: String,
        /// The connection failed (server gone, restarting): the same call may succeed later.
        connection_lost: bool,
        /// The database refused the statement for what it holds (SQLSTATE class 22 data
        /// exception, 23 constraint violation, 42 unknown column or table; SQLite's
        /// constraint and type mismatch errors): the same call gets the same answer.
        statement_refused: bool,
    },
    #[error("{url}: table {table}: {message}")]
    Invalid {
        url: String,
        table: String,
        message: String,
    },
}

impl DbError {
    /// True when retrying cannot help: the database answered and refused the statement
    /// for its content (see `DbError::Query::statement_refused`).
    pub fn is_statement_refused(&self) -> bool {
        matches!(
            self,
            DbError::Query {
                statement_refused: true,
                ..
            }
        )
    }

    /// True when the error came from a lost or refused connection rather than from the
    /// statement itself.
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            DbError::Connect { .. }
                | DbError::Query {
                    connection_lost: true,
                    ..
                }
        )
    }
}

/// Checks a table or column name from the config: `[A-Za-z_][A-Za-z0-9_]*`, at most 64
/// characters (MySQL's limit).
pub fn check_identifier(ident: &str) -> Result<&str, DbError> {
    let mut chars = ident.chars();
    let valid = ident.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(ident)
    } else {
        Err(DbError::Identifier {
            ident: ident.to_string(),
        })
    }
}

enum Backend {
    Sql(sql::SqlDb),
    Text(text::TextDb),
}

struct Inner {
    url: DbUrl,
    /// `url` rendered once, password hidden, for error messages.
    url_shown: String,
    backend: Backend,
}

/// A handle to one database: a connection pool (or the db_text directory cache). Cheap to
/// clone and shared by all workers.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("url", &self.inner.url_shown)
            .finish()
    }
}

impl Db {
    /// Parses `url`, opens a pool and checks the server answers (SQLite creates the file if
    /// it is missing; db_text checks the directory exists).
    ///
    /// Call it on the runtime that will run the queries (a module's `on_start`, with the
    /// server's runtime): the pool's connections belong to the runtime that opened them.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        let url = DbUrl::parse(url)?;
        let url_shown = url.to_string();
        let backend = match url.kind {
            DbKind::Text => Backend::Text(text::TextDb::open(&url, &url_shown)?),
            kind => {
                let connect = sql::SqlDb::connect(&url, &url_shown);
                let db = match timeout::timeout(kind) {
                    Some(limit) => tokio::time::timeout(limit, connect).await.map_err(|_| {
                        DbError::Connect {
                            url: url_shown.clone(),
                            message: format!(
                                "no answer within the {} ms database timeout",
                                limit.as_millis()
                            ),
                        }
                    })?,
                    None => connect.await,
                }?;
                Backend::Sql(db)
            }
        };
        Ok(Db {
            inner: Arc::new(Inner {
                url,
                url_shown,
                backend,
            }),
        })
    }

    pub fn kind(&self) -> DbKind {
        self.inner.url.kind
    }

    pub fn url(&self) -> &DbUrl {
        &self.inner.url
    }

    /// `SELECT cols FROM table WHERE conds [ORDER BY order_by]`; `cols` empty selects all
    /// columns. `order_by` is a column name, optionally followed by ` ASC` or ` DESC`.
    pub async fn select(
        &self,
        table: &str,
        cols: &[&str],
        conds: &[Cond<'_>],
        order_by: Option<&str>,
    ) -> Result<Vec<Row>, DbError> {
        check_identifier(table)?;
        for c in cols {
            check_identifier(c)?;
        }
        self.check_conds(table, conds)?;
        let order = order_by.map(parse_order_by).transpose()?;
        match &self.inner.backend {
            Backend::Sql(s) => {
                self.bounded(table, s.select(table, cols, conds, order))
                    .await
            }
            Backend::Text(t) => t.select(table, cols, conds, order),
        }
    }

    /// Like [`Db::select`], but hands the rows to `each` one at a time (Kamailio's
    /// `fetch_rows`): the result is never held in memory as a whole, so loading a table of
    /// millions of rows costs what the caller keeps of each. `each` returns
    /// `ControlFlow::Break` to stop early. The driver timeout bounds each wait for rows,
    /// not the whole read. Returns the number of rows handed out.
    pub async fn select_each(
        &self,
        table: &str,
        cols: &[&str],
        conds: &[Cond<'_>],
        order_by: Option<&str>,
        mut each: impl FnMut(&[DbValue]) -> ControlFlow<()> + Send,
    ) -> Result<u64, DbError> {
        check_identifier(table)?;
        for c in cols {
            check_identifier(c)?;
        }
        self.check_conds(table, conds)?;
        let order = order_by.map(parse_order_by).transpose()?;
        match &self.inner.backend {
            Backend::Sql(s) => {
                let result = s
                    .select_each(table, cols, conds, order, self.limit(), &mut each)
                    .await;
                self.after_sql(&result);
                result
            }
            Backend::Text(t) => {
                let mut n = 0;
                for row in t.select(table, cols, conds, order)? {
                    n += 1;
                    if each(&row).is_break() {
                        break;
                    }
                }
                Ok(n)
            }
        }
    }

    /// Inserts one row; returns the number of rows inserted (1).
    pub async fn insert(
        &self,
        table: &str,
        cols: &[&str],
        vals: &[DbValue],
    ) -> Result<u64, DbError> {
        self.check_row(table, cols, vals)?;
        match &self.inner.backend {
            Backend::Sql(s) => self.bounded(table, s.insert(table, cols, vals)).await,
            Backend::Text(t) => t.insert(table, cols, vals),
        }
    }

    /// Inserts the row, or updates the row whose `key_cols` (a subset of `cols`) match
    /// (Kamailio's db "replace"/upsert). Works without a unique index on `key_cols`.
    pub async fn replace(
        &self,
        table: &str,
        key_cols: &[&str],
        cols: &[&str],
        vals: &[DbValue],
    ) -> Result<(), DbError> {
        self.check_row(table, cols, vals)?;
        if key_cols.is_empty() || key_cols.iter().any(|k| !cols.contains(k)) {
            return Err(self.invalid(table, "replace: key columns must be among the columns"));
        }
        match &self.inner.backend {
            Backend::Sql(s) => {
                self.bounded(table, s.replace(table, key_cols, cols, vals))
                    .await
            }
            Backend::Text(t) => t.replace(table, key_cols, cols, vals),
        }
    }

    /// `UPDATE table SET set WHERE conds`; returns the number of rows matched.
    pub async fn update(
        &self,
        table: &str,
        conds: &[Cond<'_>],
        set: &[(&str, DbValue)],
    ) -> Result<u64, DbError> {
        check_identifier(table)?;
        self.check_conds(table, conds)?;
        if set.is_empty() {
            return Err(self.invalid(table, "update without columns to set"));
        }
        for (c, _) in set {
            check_identifier(c)?;
        }
        match &self.inner.backend {
            Backend::Sql(s) => self.bounded(table, s.update(table, conds, set)).await,
            Backend::Text(t) => t.update(table, conds, set),
        }
    }

    /// `DELETE FROM table WHERE conds` (no conds: every row); returns the rows deleted.
    pub async fn delete(&self, table: &str, conds: &[Cond<'_>]) -> Result<u64, DbError> {
        check_identifier(table)?;
        self.check_conds(table, conds)?;
        match &self.inner.backend {
            Backend::Sql(s) => self.bounded(table, s.delete(table, conds)).await,
            Backend::Text(t) => t.delete(table, conds),
        }
    }

    /// The version of `table` recorded in the `version` table, as Kamailio modules check it
    /// at start; `None` when there is no row for it.
    pub async fn table_version(&self, table: &str) -> Result<Option<i64>, DbError> {
        check_identifier(table)?;
        let rows = self
            .select(
                "version",
                &["table_version"],
                &[Cond::eq("table_name", table)],
                None,
            )
            .await?;
        Ok(rows.first().and_then(|r| r.first()).and_then(|v| match v {
            DbValue::Str(s) => s.trim().parse().ok(),
            v => v.as_int(),
        }))
    }

    /// Runs one SQL statement written by the operator (sqlops' `sql_query`), with no
    /// values bound: the caller has escaped what it put inside. Keeps at most `max_rows`
    /// rows (`truncated` says more came); a statement that returns no rows gives none.
    /// The column names come from the first row (none without rows). Not retried: the
    /// statement may not be idempotent. db_text has no SQL and refuses it.
    pub async fn raw_query(&self, sql: &str, max_rows: usize) -> Result<RawResult, DbError> {
        match &self.inner.backend {
            Backend::Sql(s) => self.bounded("(query)", s.raw_query(sql, max_rows)).await,
            Backend::Text(_) => Err(self.invalid("(query)", "db_text has no SQL")),
        }
    }

    /// Runs statements that take no values (DDL from [`schema`]). Not for anything built
    /// from runtime data.
    pub(crate) async fn execute_ddl(
        &self,
        table: &str,
        statements: &[String],
    ) -> Result<(), DbError> {
        match &self.inner.backend {
            Backend::Sql(s) => s.execute_ddl(table, statements).await,
            Backend::Text(_) => Err(self.invalid(table, "db_text has no SQL")),
        }
    }

    pub(crate) fn text_backend(&self) -> Option<&text::TextDb> {
        match &self.inner.backend {
            Backend::Text(t) => Some(t),
            Backend::Sql(_) => None,
        }
    }

    fn check_row(&self, table: &str, cols: &[&str], vals: &[DbValue]) -> Result<(), DbError> {
        check_identifier(table)?;
        for c in cols {
            check_identifier(c)?;
        }
        if cols.is_empty() || cols.len() != vals.len() {
            return Err(self.invalid(
                table,
                &format!("{} columns but {} values", cols.len(), vals.len()),
            ));
        }
        Ok(())
    }

    fn check_conds(&self, table: &str, conds: &[Cond<'_>]) -> Result<(), DbError> {
        for c in conds {
            check_identifier(c.col)?;
            if c.val.is_null() && !matches!(c.op, Op::Eq | Op::Ne) {
                return Err(self.invalid(
                    table,
                    &format!("column {}: only = and <> compare with NULL", c.col),
                ));
            }
        }
        Ok(())
    }

    /// Runs one operation within the driver's timeout (see [`set_timeout`]): past it the
    /// operation is dropped (sqlx discards a connection left mid-statement) and the caller
    /// gets a connection error, as when the server is gone.
    async fn bounded<T>(
        &self,
        table: &str,
        op: impl std::future::Future<Output = Result<T, DbError>>,
    ) -> Result<T, DbError> {
        let Some(limit) = timeout::timeout(self.kind()) else {
            return op.await;
        };
        let result = match tokio::time::timeout(limit, op).await {
            Ok(r) => r,
            Err(_) => Err(DbError::Query {
                url: self.inner.url_shown.clone(),
                table: table.to_string(),
                message: format!(
                    "no answer within the {} ms database timeout",
                    limit.as_millis()
                ),
                connection_lost: true,
                statement_refused: false,
            }),
        };
        self.after_sql(&result);
        result
    }

    /// After an SQL operation: a lost connection starts the pool's background reconnect
    /// (see `SqlDb::reconnect_in_background`), whichever way the operation read.
    fn after_sql<T>(&self, result: &Result<T, DbError>) {
        if let (Err(e), Backend::Sql(sql)) = (result, &self.inner.backend) {
            if e.is_connection_error() {
                sql.reconnect_in_background();
            }
        }
    }

    fn limit(&self) -> Option<std::time::Duration> {
        timeout::timeout(self.kind())
    }

    fn invalid(&self, table: &str, message: &str) -> DbError {
        DbError::Invalid {
            url: self.inner.url_shown.clone(),
            table: table.to_string(),
            message: message.to_string(),
        }
    }
}

impl Db {
    /// Opens a transaction: the inserts and deletes made through it become visible to
    /// other connections together when [`Transaction::commit`] returns, or not at all
    /// (dropping it without commit rolls back). SQL backends only; db_text has none.
    pub async fn transaction(&self) -> Result<Transaction, DbError> {
        match &self.inner.backend {
            Backend::Sql(s) => Ok(Transaction {
                tx: self.bounded("", s.begin()).await?,
                db: self.clone(),
            }),
            Backend::Text(_) => Err(self.invalid("", "db_text has no transactions")),
        }
    }
}

/// Writes that are applied together (see [`Db::transaction`]), e.g. replacing every row of
/// one LCR instance while a server keeps reading the old ones until the commit.
pub struct Transaction {
    tx: sql::SqlTx,
    db: Db,
}

impl Transaction {
    /// Inserts one row; returns the number of rows inserted (1).
    pub async fn insert(
        &mut self,
        table: &str,
        cols: &[&str],
        vals: &[DbValue],
    ) -> Result<u64, DbError> {
        self.db.check_row(table, cols, vals)?;
        self.tx.insert(table, cols, vals).await
    }

    /// Inserts one row and returns the value its auto-increment column `id_col` got.
    pub async fn insert_returning_id(
        &mut self,
        table: &str,
        cols: &[&str],
        vals: &[DbValue],
        id_col: &str,
    ) -> Result<i64, DbError> {
        self.db.check_row(table, cols, vals)?;
        check_identifier(id_col)?;
        self.tx.insert_returning_id(table, cols, vals, id_col).await
    }

    /// Inserts many rows at once: `values` holds them one after the other, `cols.len()`
    /// values each. Sent as multi-row INSERTs (a few thousand rows per statement), the
    /// bulk path of all three SQL databases; returns the number of rows inserted.
    pub async fn insert_rows(
        &mut self,
        table: &str,
        cols: &[&str],
        values: &[DbValue],
    ) -> Result<u64, DbError> {
        check_identifier(table)?;
        for c in cols {
            check_identifier(c)?;
        }
        if cols.is_empty() || !values.len().is_multiple_of(cols.len()) {
            return Err(self.db.invalid(
                table,
                &format!(
                    "{} values do not make rows of {} columns",
                    values.len(),
                    cols.len()
                ),
            ));
        }
        self.tx.insert_rows(table, cols, values).await
    }

    /// [`Db::select_each`] inside the transaction: it sees the rows written by it.
    pub async fn select_each(
        &mut self,
        table: &str,
        cols: &[&str],
        conds: &[Cond<'_>],
        mut each: impl FnMut(&[DbValue]) -> ControlFlow<()> + Send,
    ) -> Result<u64, DbError> {
        check_identifier(table)?;
        for c in cols {
            check_identifier(c)?;
        }
        self.db.check_conds(table, conds)?;
        let limit = self.db.limit();
        self.tx
            .select_each(table, cols, conds, limit, &mut each)
            .await
    }

    /// `DELETE FROM table WHERE conds`; returns the rows deleted.
    pub async fn delete(&mut self, table: &str, conds: &[Cond<'_>]) -> Result<u64, DbError> {
        check_identifier(table)?;
        self.db.check_conds(table, conds)?;
        self.tx.delete(table, conds).await
    }

    /// Makes every write of the transaction visible at once.
    pub async fn commit(self) -> Result<(), DbError> {
        self.tx.commit().await
    }
}

/// An ORDER BY column and direction, both checked.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OrderBy<'a> {
    pub col: &'a str,
    pub desc: bool,
}

fn parse_order_by(spec: &str) -> Result<OrderBy<'_>, DbError> {
    let mut words = spec.split_whitespace();
    let col = check_identifier(words.next().unwrap_or(""))?;
    let desc = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("asc") => false,
        Some(w) if w.eq_ignore_ascii_case("desc") => true,
        Some(_) => {
            return Err(DbError::Identifier {
                ident: spec.to_string(),
            })
        }
    };
    if words.next().is_some() {
        return Err(DbError::Identifier {
            ident: spec.to_string(),
        });
    }
    Ok(OrderBy { col, desc })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for ok in ["location", "_x", "a1_b2", "ha1b"] {
            assert!(check_identifier(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1abc",
            "a-b",
            "a b",
            "x;drop table t",
            "a\"b",
            "a`b",
            "é",
            &"a".repeat(65),
        ] {
            assert!(check_identifier(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn order_by_forms() {
        let o = parse_order_by("q DESC").unwrap();
        assert_eq!((o.col, o.desc), ("q", true));
        let o = parse_order_by("  expires ").unwrap();
        assert_eq!((o.col, o.desc), ("expires", false));
        assert!(parse_order_by("q; drop").is_err());
        assert!(parse_order_by("q desc, id").is_err());
        assert!(parse_order_by("").is_err());
    }
}
