//! SQLite, MariaDB/MySQL and PostgreSQL through sqlx pools.
//!
//! Statements are built from checked identifiers (quoted per dialect) and placeholders;
//! every value is bound. A NULL value is written as the keyword `NULL` rather than bound:
//! PostgreSQL must know a parameter's type, and a NULL has none we could honestly give.

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use futures_util::stream::{BoxStream, StreamExt};
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPool, MySqlPoolOptions, MySqlRow};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
};
use sqlx::{Column, ConnectOptions, Database, Row as _, TypeInfo, ValueRef};

use crate::time::{format_local, from_local_naive, parse_local, to_local_naive};
use crate::url::{DbKind, DbUrl};
use crate::{Cond, DbError, DbValue, OrderBy, RawResult, Row};

/// How long an SQLite query waits for a pooled connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// The pools' own limit on waiting for a connection to MariaDB/PostgreSQL: only a
/// backstop, since the driver timeout (`crate::timeout`, 2 s by default) ends each
/// operation first; it is read at every operation, so the pool cannot carry it.
const SERVER_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(60);
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const SERVER_POOL_SIZE: u32 = 8;
const SQLITE_POOL_SIZE: u32 = 4;
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Mysql,
    Postgres,
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Mysql(MySqlPool),
    Postgres(PgPool),
}

/// Connections the background reconnect opens (and hands to the pool) once the server
/// answers again.
const RECONNECT_WARM: usize = (SERVER_POOL_SIZE / 2) as usize;
/// Pause between reconnect attempts while the server refuses connections.
const RECONNECT_RETRY: Duration = Duration::from_millis(200);

impl Pool {
    /// Opens up to `n` connections and returns them to the pool; true when at least one
    /// opened.
    async fn warm(&self, n: usize) -> bool {
        macro_rules! hold {
            ($pool:expr) => {{
                let mut held = Vec::with_capacity(n);
                while held.len() < n {
                    match $pool.acquire().await {
                        Ok(c) => held.push(c),
                        Err(_) => break,
                    }
                }
                !held.is_empty()
            }};
        }
        match self {
            Pool::Sqlite(p) => hold!(p),
            Pool::Mysql(p) => hold!(p),
            Pool::Postgres(p) => hold!(p),
        }
    }
}

pub(crate) struct SqlDb {
    pool: Pool,
    /// A background reconnect is running (at most one per pool).
    reconnecting: Arc<AtomicBool>,
    url: String,
    /// SQLite only: the DATETIME/TIMESTAMP columns of each table. SQLite stores them as
    /// text, so only the declared type says a value is a time.
    sqlite_time_cols: Mutex<HashMap<String, Arc<HashSet<String>>>>,
}

fn is_closed(pool: &Pool) -> bool {
    match pool {
        Pool::Sqlite(p) => p.is_closed(),
        Pool::Mysql(p) => p.is_closed(),
        Pool::Postgres(p) => p.is_closed(),
    }
}

/// A statement being built: SQL text with placeholders, and the values to bind in order.
struct Stmt<'v> {
    dialect: Dialect,
    sql: String,
    binds: Vec<&'v DbValue>,
}

impl<'v> Stmt<'v> {
    fn new(dialect: Dialect) -> Self {
        Stmt {
            dialect,
            sql: String::with_capacity(128),
            binds: Vec::new(),
        }
    }

    fn push(&mut self, s: &str) -> &mut Self {
        self.sql.push_str(s);
        self
    }

    /// An identifier already checked by `check_identifier` (so it holds no quote).
    fn ident(&mut self, name: &str) -> &mut Self {
        let q = if self.dialect == Dialect::Mysql {
            '`'
        } else {
            '"'
        };
        self.sql.push(q);
        self.sql.push_str(name);
        self.sql.push(q);
        self
    }

    fn value(&mut self, v: &'v DbValue) -> &mut Self {
        if v.is_null() {
            self.sql.push_str("NULL");
            return self;
        }
        self.binds.push(v);
        if self.dialect == Dialect::Postgres {
            self.sql.push('$');
            self.sql.push_str(&self.binds.len().to_string());
        } else {
            self.sql.push('?');
        }
        self
    }

    fn where_clause(&mut self, conds: &'v [Cond<'_>]) -> &mut Self {
        for (i, c) in conds.iter().enumerate() {
            self.push(if i == 0 { " WHERE " } else { " AND " });
            self.ident(c.col);
            match (&c.val, c.op) {
                (DbValue::Null, crate::Op::Eq) => {
                    self.push(" IS NULL");
                }
                (DbValue::Null, _) => {
                    self.push(" IS NOT NULL");
                }
                (v, op) => {
                    self.push(" ").push(op.sql()).push(" ").value(v);
                }
            }
        }
        self
    }
}

impl SqlDb {
    pub(crate) async fn connect(url: &DbUrl, shown: &str) -> Result<SqlDb, DbError> {
        let connect_err = |e: sqlx::Error| DbError::Connect {
            url: shown.to_string(),
            message: e.to_string(),
        };
        let pool = match url.kind {
            DbKind::Sqlite => {
                let path = url.path.clone().unwrap_or_default();
                let in_memory = path.as_os_str() == ":memory:";
                let opts = SqliteConnectOptions::new()
                    .filename(&path)
                    .create_if_missing(true)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT)
                    .journal_mode(if in_memory {
                        SqliteJournalMode::Memory
                    } else {
                        SqliteJournalMode::Wal
                    })
                    .disable_statement_logging();
                let pool_opts = SqlitePoolOptions::new()
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .test_before_acquire(true);
                // Every connection to ":memory:" is its own empty database: keep exactly
                // one, forever.
                let pool_opts = if in_memory {
                    pool_opts
                        .max_connections(1)
                        .min_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None)
                } else {
                    pool_opts
                        .max_connections(SQLITE_POOL_SIZE)
                        .idle_timeout(IDLE_TIMEOUT)
                };
                Pool::Sqlite(pool_opts.connect_with(opts).await.map_err(connect_err)?)
            }
            DbKind::Mysql => {
                let mut opts = MySqlConnectOptions::new()
                    .host(url.host.as_deref().unwrap_or("localhost"))
                    .port(url.port.unwrap_or(3306))
                    .username(url.user.as_deref().unwrap_or("root"))
                    .database(url.database.as_deref().unwrap_or_default())
                    // Keep the server's time zone, as Kamailio does: DATETIME values are
                    // local wall-clock times.
                    .timezone(None)
                    .disable_statement_logging();
                if let Some(p) = &url.password {
                    opts = opts.password(p);
                }
                let pool = MySqlPoolOptions::new()
                    .max_connections(SERVER_POOL_SIZE)
                    .acquire_timeout(SERVER_ACQUIRE_TIMEOUT)
                    .idle_timeout(IDLE_TIMEOUT)
                    .test_before_acquire(true)
                    .connect_with(opts)
                    .await
                    .map_err(connect_err)?;
                Pool::Mysql(pool)
            }
            DbKind::Postgres => {
                let mut opts = PgConnectOptions::new()
                    .host(url.host.as_deref().unwrap_or("localhost"))
                    .port(url.port.unwrap_or(5432))
                    .username(url.user.as_deref().unwrap_or("postgres"))
                    .database(url.database.as_deref().unwrap_or_default())
                    .application_name("ferrosip")
                    .disable_statement_logging();
                if let Some(p) = &url.password {
                    opts = opts.password(p);
                }
                let pool = PgPoolOptions::new()
                    .max_connections(SERVER_POOL_SIZE)
                    .acquire_timeout(SERVER_ACQUIRE_TIMEOUT)
                    .idle_timeout(IDLE_TIMEOUT)
                    .test_before_acquire(true)
                    .connect_with(opts)
                    .await
                    .map_err(connect_err)?;
                Pool::Postgres(pool)
            }
            DbKind::Text => unreachable!("db_text is not an SQL backend"),
        };
        Ok(SqlDb {
            pool,
            reconnecting: Arc::default(),
            url: shown.to_string(),
            sqlite_time_cols: Mutex::new(HashMap::new()),
        })
    }

    /// After a lost connection: opens connections again in a task of its own, retrying
    /// until the server answers. A caller's operation is bounded by the driver timeout
    /// and gives up its connection attempt with it; on a loaded machine opening a
    /// PostgreSQL connection can take longer than that timeout, and then no caller would
    /// ever finish one and the pool would stay empty after the server is back. This task
    /// is bounded only by the pool's own acquire timeout, so its connections complete and
    /// wait, idle, for the next callers.
    pub(crate) fn reconnect_in_background(&self) {
        if matches!(self.pool, Pool::Sqlite(_)) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.reconnecting.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool = self.pool.clone();
        let reconnecting = self.reconnecting.clone();
        runtime.spawn(async move {
            while !pool.warm(RECONNECT_WARM).await {
                if is_closed(&pool) {
                    break;
                }
                tokio::time::sleep(RECONNECT_RETRY).await;
            }
            reconnecting.store(false, Ordering::Release);
        });
    }

    fn dialect(&self) -> Dialect {
        match self.pool {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Mysql(_) => Dialect::Mysql,
            Pool::Postgres(_) => Dialect::Postgres,
        }
    }

    fn error(&self, table: &str, e: sqlx::Error) -> DbError {
        DbError::Query {
            url: self.url.clone(),
            table: table.to_string(),
            connection_lost: is_connection_error(&e) || matches!(e, sqlx::Error::PoolTimedOut),
            statement_refused: is_statement_refused(&e),
            message: e.to_string(),
        }
    }

    fn select_stmt<'v>(
        &self,
        table: &str,
        cols: &[&str],
        conds: &'v [Cond<'_>],
        order: Option<OrderBy<'_>>,
    ) -> Stmt<'v> {
        select_stmt(self.dialect(), table, cols, conds, order)
    }

    pub(crate) async fn select(
        &self,
        table: &str,
        cols: &[&str],
        conds: &[Cond<'_>],
        order: Option<OrderBy<'_>>,
    ) -> Result<Vec<Row>, DbError> {
        let st = self.select_stmt(table, cols, conds, order);
        // A SELECT is idempotent: retry once on a lost connection.
        match self.fetch(table, &st).await {
            Err(e) if is_connection_error(&e) => {
                self.log_retry(table, &e);
                self.fetch(table, &st).await
            }
            r => r,
        }
        .map_err(|e| self.error(table, e))
    }

    /// Streams the rows of a SELECT to `each`, one at a time, in one reused row buffer:
    /// a table of millions of rows never exists in memory as a whole. `limit` bounds the
    /// wait for each next batch of rows, not the whole read. Retried once on a lost
    /// connection when no row was handed out yet.
    pub(crate) async fn select_each(
        &self,
        table: &str,
        cols: &[&str],
        conds: &[Cond<'_>],
        order: Option<OrderBy<'_>>,
        limit: Option<Duration>,
        each: &mut (dyn FnMut(&[DbValue]) -> ControlFlow<()> + Send),
    ) -> Result<u64, DbError> {
        let st = self.select_stmt(table, cols, conds, order);
        let mut first = true;
        loop {
            let r = match &self.pool {
                Pool::Sqlite(p) => {
                    let time_cols = self
                        .sqlite_time_columns(p, table)
                        .await
                        .map_err(|e| self.error(table, e))?;
                    sqlite_select_each(p, &st, &time_cols, each).await
                }
                Pool::Mysql(p) => {
                    let mut q = sqlx::query(&st.sql);
                    for v in &st.binds {
                        q = bind_mysql(q, v);
                    }
                    drain(q.fetch(p), limit, mysql_row_into, each).await
                }
                Pool::Postgres(p) => {
                    let mut q = sqlx::query(&st.sql);
                    for v in &st.binds {
                        q = bind_pg(q, v);
                    }
                    drain(q.fetch(p), limit, pg_row_into, each).await
                }
            };
            match r {
                Ok(n) => return Ok(n),
                Err(Drained::Error(e, 0)) if first && is_connection_error(&e) => {
                    self.log_retry(table, &e);
                    first = false;
                }
                Err(Drained::Error(e, _)) => return Err(self.error(table, e)),
                Err(Drained::Stalled) => return Err(self.stalled(table, limit)),
            }
        }
    }

    fn stalled(&self, table: &str, limit: Option<Duration>) -> DbError {
        stalled_error(&self.url, table, limit)
    }

    pub(crate) async fn insert(
        &self,
        table: &str,
        cols: &[&str],
        vals: &[DbValue],
    ) -> Result<u64, DbError> {
        let st = self.insert_stmt(table, cols, vals);
        // Not retried: after a lost connection we cannot know whether the row went in.
        self.exec(&st).await.map_err(|e| self.error(table, e))
    }

    fn insert_stmt<'v>(&self, table: &str, cols: &[&str], vals: &'v [DbValue]) -> Stmt<'v> {
        insert_stmt(self.dialect(), table, cols, vals)
    }

    pub(crate) async fn update(
        &self,
        table: &str,
        conds: &[Cond<'_>],
        set: &[(&str, DbValue)],
    ) -> Result<u64, DbError> {
        let mut st = Stmt::new(self.dialect());
        st.push("UPDATE ").ident(table).push(" SET ");
        for (i, (c, v)) in set.iter().enumerate() {
            if i > 0 {
                st.push(", ");
            }
            st.ident(c).push(" = ").value(v);
        }
        st.where_clause(conds);
        self.exec_retry(table, &st)
            .await
            .map_err(|e| self.error(table, e))
    }

    pub(crate) async fn delete(&self, table: &str, conds: &[Cond<'_>]) -> Result<u64, DbError> {
        let mut st = Stmt::new(self.dialect());
        st.push("DELETE FROM ").ident(table).where_clause(conds);
        self.exec_retry(table, &st)
            .await
            .map_err(|e| self.error(table, e))
    }

    /// UPDATE the row matching the key columns; INSERT when none matched; UPDATE again if
    /// the INSERT lost a race against another writer (unique key violation). This needs no
    /// unique index on the key columns and keeps the row's id, unlike MySQL's REPLACE.
    pub(crate) async fn replace(
        &self,
        table: &str,
        key_cols: &[&str],
        cols: &[&str],
        vals: &[DbValue],
    ) -> Result<(), DbError> {
        let keys: Vec<Cond<'_>> = key_cols
            .iter()
            .map(|k| {
                let i = cols.iter().position(|c| c == k).unwrap_or_default();
                Cond::eq(k, vals[i].clone())
            })
            .collect();
        let set: Vec<(&str, DbValue)> = cols
            .iter()
            .zip(vals)
            .filter(|(c, _)| !key_cols.contains(c))
            .map(|(c, v)| (*c, v.clone()))
            .collect();
        let matched = if set.is_empty() {
            self.select(table, &[key_cols[0]], &keys, None).await?.len() as u64
        } else {
            self.update(table, &keys, &set).await?
        };
        if matched > 0 {
            return Ok(());
        }
        let st = self.insert_stmt(table, cols, vals);
        let mut attempt = self.exec(&st).await;
        if let Err(e) = &attempt {
            if is_connection_error(e) {
                // Safe to retry here: the key columns decide, so a row inserted by the lost
                // attempt is updated instead of duplicated.
                if !set.is_empty() && self.update(table, &keys, &set).await? > 0 {
                    return Ok(());
                }
                attempt = self.exec(&st).await;
            }
        }
        match attempt {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() && !set.is_empty() => {
                self.update(table, &keys, &set).await.map(|_| ())
            }
            Err(sqlx::Error::Database(d)) if d.is_unique_violation() => Ok(()),
            Err(e) => Err(self.error(table, e)),
        }
    }

    pub(crate) async fn raw_query(&self, sql: &str, max_rows: usize) -> Result<RawResult, DbError> {
        use futures_util::TryStreamExt as _;
        let mut out = RawResult::default();
        let no_time_cols = HashSet::new();
        let r: Result<(), sqlx::Error> = async {
            // The same loop for each pool; only the row decoder differs.
            macro_rules! read {
                ($pool:expr, $decode:expr) => {{
                    let mut rows = sqlx::query(sql).fetch($pool);
                    while let Some(row) = rows.try_next().await? {
                        if out.rows.len() == max_rows {
                            out.truncated = true;
                            break;
                        }
                        if out.columns.is_empty() {
                            out.columns = column_names(row.columns());
                        }
                        out.rows.push($decode(&row)?);
                    }
                }};
            }
            match &self.pool {
                Pool::Sqlite(p) => read!(p, |r| sqlite_row(r, &no_time_cols)),
                Pool::Mysql(p) => read!(p, mysql_row),
                Pool::Postgres(p) => read!(p, pg_row),
            }
            Ok(())
        }
        .await;
        r.map_err(|e| self.error("(query)", e))?;
        Ok(out)
    }

    pub(crate) async fn execute_ddl(
        &self,
        table: &str,
        statements: &[String],
    ) -> Result<(), DbError> {
        for s in statements {
            let r = match &self.pool {
                Pool::Sqlite(p) => sqlx::raw_sql(s).execute(p).await.map(|_| ()),
                Pool::Mysql(p) => sqlx::raw_sql(s).execute(p).await.map(|_| ()),
                Pool::Postgres(p) => sqlx::raw_sql(s).execute(p).await.map(|_| ()),
            };
            r.map_err(|e| self.error(table, e))?;
        }
        self.sqlite_time_cols
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        Ok(())
    }

    fn log_retry(&self, table: &str, e: &sqlx::Error) {
        tracing::warn!(url = %self.url, table, error = %e, "database connection lost; retrying once on a new connection");
    }

    async fn exec_retry(&self, table: &str, st: &Stmt<'_>) -> Result<u64, sqlx::Error> {
        match self.exec(st).await {
            Err(e) if is_connection_error(&e) => {
                self.log_retry(table, &e);
                self.exec(st).await
            }
            r => r,
        }
    }

    async fn exec(&self, st: &Stmt<'_>) -> Result<u64, sqlx::Error> {
        Ok(match &self.pool {
            Pool::Sqlite(p) => {
                let mut q = sqlx::query(&st.sql);
                for v in &st.binds {
                    q = bind_sqlite(q, v);
                }
                q.execute(p).await?.rows_affected()
            }
            Pool::Mysql(p) => {
                let mut q = sqlx::query(&st.sql);
                for v in &st.binds {
                    q = bind_mysql(q, v);
                }
                q.execute(p).await?.rows_affected()
            }
            Pool::Postgres(p) => {
                let mut q = sqlx::query(&st.sql);
                for v in &st.binds {
                    q = bind_pg(q, v);
                }
                q.execute(p).await?.rows_affected()
            }
        })
    }

    async fn fetch(&self, table: &str, st: &Stmt<'_>) -> Result<Vec<Row>, sqlx::Error> {
        match &self.pool {
            Pool::Sqlite(p) => {
                let time_cols = self.sqlite_time_columns(p, table).await?;
                let mut q = sqlx::query(&st.sql);
                for v in &st.binds {
                    q = bind_sqlite(q, v);
                }
                let rows = q.fetch_all(p).await?;
                rows.iter().map(|r| sqlite_row(r, &time_cols)).collect()
            }
            Pool::Mysql(p) => {
                let mut q = sqlx::query(&st.sql);
                for v in &st.binds {
                    q = bind_mysql(q, v);
                }
                let rows = q.fetch_all(p).await?;
                rows.iter().map(mysql_row).collect()
            }
            Pool::Postgres(p) => {
                let mut q = sqlx::query(&st.sql);
                for v in &st.binds {
                    q = bind_pg(q, v);
                }
                let rows = q.fetch_all(p).await?;
                rows.iter().map(pg_row).collect()
            }
        }
    }

    async fn sqlite_time_columns(
        &self,
        pool: &SqlitePool,
        table: &str,
    ) -> Result<Arc<HashSet<String>>, sqlx::Error> {
        if let Some(cols) = self
            .sqlite_time_cols
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(table)
        {
            return Ok(cols.clone());
        }
        let rows = sqlx::query("SELECT name, type FROM pragma_table_info(?)")
            .bind(table)
            .fetch_all(pool)
            .await?;
        let mut cols = HashSet::new();
        for r in &rows {
            let name: String = r.try_get(0)?;
            let decl: String = r.try_get::<Option<String>, _>(1)?.unwrap_or_default();
            let decl = decl.to_ascii_lowercase();
            if decl.contains("date") || decl.contains("time") {
                cols.insert(name.to_ascii_lowercase());
            }
        }
        let cols = Arc::new(cols);
        if !rows.is_empty() {
            self.sqlite_time_cols
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(table.to_string(), cols.clone());
        }
        Ok(cols)
    }
}

/// Errors after which the same statement on a fresh connection may succeed: the socket
/// broke, or the server said it is shutting down or dropped us.
/// The database answered no to the statement because of what it holds: running it
/// again gives the same answer (not a busy database, a deadlock or a shutdown).
fn is_statement_refused(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(d) = e else {
        return false;
    };
    let code = d.code().unwrap_or_default();
    if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // Extended result codes: the primary code is the low byte. 19 constraint,
        // 20 type mismatch, 25 range, 1 generic SQL error (no such table or column).
        return code
            .parse::<u32>()
            .is_ok_and(|c| matches!(c & 0xff, 1 | 19 | 20 | 25));
    }
    // SQLSTATE (PostgreSQL, MySQL/MariaDB): 22 data exception, 23 integrity constraint
    // violation, 42 syntax error or unknown table/column.
    code.starts_with("22") || code.starts_with("23") || code.starts_with("42")
}

fn is_connection_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => {
            let state = d.code().unwrap_or_default();
            // SQLSTATE class 08: connection exception; 57P01-57P03: admin/crash shutdown,
            // cannot connect now (PostgreSQL).
            state.starts_with("08")
                || state.starts_with("57P0")
                || d.try_downcast_ref::<MySqlDatabaseError>()
                    .is_some_and(|m| matches!(m.number(), 1053 | 1927 | 2006 | 2013))
        }
        _ => false,
    }
}

type Query<'q, DB> = sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>;

fn bind_sqlite<'q>(q: Query<'q, sqlx::Sqlite>, v: &'q DbValue) -> Query<'q, sqlx::Sqlite> {
    match v {
        DbValue::Null => q.bind(None::<i64>),
        DbValue::Int(i) => q.bind(*i),
        DbValue::Double(d) => q.bind(*d),
        DbValue::Str(s) => q.bind(s.as_str()),
        // Kamailio's db_sqlite convention: local time as 'YYYY-MM-DD HH:MM:SS' text, which
        // also compares correctly as text.
        DbValue::Time(t) => q.bind(format_local(*t)),
    }
}

fn bind_mysql<'q>(q: Query<'q, sqlx::MySql>, v: &'q DbValue) -> Query<'q, sqlx::MySql> {
    match v {
        DbValue::Null => q.bind(None::<i64>),
        DbValue::Int(i) => q.bind(*i),
        DbValue::Double(d) => q.bind(*d),
        DbValue::Str(s) => q.bind(s.as_str()),
        DbValue::Time(t) => q.bind(to_local_naive(*t)),
    }
}

fn bind_pg<'q>(q: Query<'q, sqlx::Postgres>, v: &'q DbValue) -> Query<'q, sqlx::Postgres> {
    match v {
        DbValue::Null => q.bind(None::<String>),
        DbValue::Int(i) => q.bind(*i),
        DbValue::Double(d) => q.bind(*d),
        DbValue::Str(s) => q.bind(s.as_str()),
        DbValue::Time(t) => q.bind(to_local_naive(*t)),
    }
}

/// A FLOAT/REAL read as f32, widened to the f64 of its shortest decimal form (so a q of
/// 0.9 reads as 0.9, not 0.899999976).
fn widen(f: f32) -> f64 {
    f.to_string().parse().unwrap_or(f as f64)
}

fn column_names<C: Column>(cols: &[C]) -> Vec<String> {
    cols.iter().map(|c| c.name().to_string()).collect()
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn sqlite_row(row: &SqliteRow, time_cols: &HashSet<String>) -> Result<Row, sqlx::Error> {
    let mut out = Vec::with_capacity(row.len());
    sqlite_row_into(row, &sqlite_time_flags(row, time_cols), &mut out)?;
    Ok(out)
}

/// A SELECT on SQLite stepped on this thread (`sqlite_scan`): no row crosses sqlx's
/// worker thread. On a multi-threaded runtime the scan tells tokio it blocks, so the
/// worker's other tasks move to another thread meanwhile. SQLite's busy_timeout bounds
/// any wait for a lock; there is no other wait for rows to bound.
async fn sqlite_select_each(
    pool: &SqlitePool,
    st: &Stmt<'_>,
    time_cols: &HashSet<String>,
    each: &mut (dyn FnMut(&[DbValue]) -> ControlFlow<()> + Send),
) -> Result<u64, Drained> {
    let mut conn = pool.acquire().await.map_err(|e| Drained::Error(e, 0))?;
    let mut handle = conn.lock_handle().await.map_err(|e| Drained::Error(e, 0))?;
    let db = handle.as_raw_handle();
    let mut run = || crate::sqlite_scan::scan(db, &st.sql, &st.binds, time_cols, &mut *each);
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    let result = if multi_thread {
        tokio::task::block_in_place(run)
    } else {
        run()
    };
    result.map_err(|e| Drained::Error(sqlx::Error::Protocol(e.message), e.rows))
}

/// Which columns of a result are DATETIME ones (the same for every row of a query).
fn sqlite_time_flags(row: &SqliteRow, time_cols: &HashSet<String>) -> Vec<bool> {
    (0..row.len())
        .map(|i| time_cols.contains(&row.column(i).name().to_ascii_lowercase()))
        .collect()
}

fn sqlite_row_into(row: &SqliteRow, is_time: &[bool], out: &mut Row) -> Result<(), sqlx::Error> {
    out.clear();
    for i in 0..row.len() {
        let raw = row.try_get_raw(i)?;
        if raw.is_null() {
            out.push(DbValue::Null);
            continue;
        }
        let is_time = is_time.get(i).copied().unwrap_or(false);
        let v = match raw.type_info().name() {
            "INTEGER" if is_time => DbValue::Time(row.try_get_unchecked::<i64, _>(i)?),
            "INTEGER" => DbValue::Int(row.try_get_unchecked::<i64, _>(i)?),
            "REAL" if is_time => DbValue::Time(row.try_get_unchecked::<f64, _>(i)? as i64),
            "REAL" => DbValue::Double(row.try_get_unchecked::<f64, _>(i)?),
            "BLOB" => DbValue::Str(lossy(row.try_get_unchecked::<&[u8], _>(i)?)),
            _ => {
                let s: String = row.try_get_unchecked(i)?;
                match is_time.then(|| parse_local(&s)).flatten() {
                    Some(t) => DbValue::Time(t),
                    None => DbValue::Str(s),
                }
            }
        };
        out.push(v);
    }
    Ok(())
}

fn mysql_row(row: &MySqlRow) -> Result<Row, sqlx::Error> {
    let mut out = Vec::with_capacity(row.len());
    mysql_row_into(row, &mut out)?;
    Ok(out)
}

fn mysql_row_into(row: &MySqlRow, out: &mut Row) -> Result<(), sqlx::Error> {
    out.clear();
    for i in 0..row.len() {
        if row.try_get_raw(i)?.is_null() {
            out.push(DbValue::Null);
            continue;
        }
        let ty = row.column(i).type_info().name();
        let v = match ty {
            "BOOLEAN" | "TINYINT" | "SMALLINT" | "INT" | "MEDIUMINT" | "BIGINT" | "YEAR" => {
                DbValue::Int(row.try_get_unchecked::<i64, _>(i)?)
            }
            _ if ty.ends_with(" UNSIGNED") || ty == "BIT" => {
                let u = row.try_get_unchecked::<u64, _>(i)?;
                DbValue::Int(i64::try_from(u).unwrap_or(i64::MAX))
            }
            "FLOAT" => DbValue::Double(widen(row.try_get_unchecked::<f32, _>(i)?)),
            "DOUBLE" => DbValue::Double(row.try_get_unchecked::<f64, _>(i)?),
            "DECIMAL" => {
                let s: String = row.try_get_unchecked(i)?;
                DbValue::Double(s.trim().parse().unwrap_or(0.0))
            }
            // A zero date ('0000-00-00 00:00:00') does not decode: it means "no time".
            "DATETIME" | "TIMESTAMP" => DbValue::Time(
                row.try_get_unchecked::<NaiveDateTime, _>(i)
                    .map(from_local_naive)
                    .unwrap_or(0),
            ),
            "DATE" => DbValue::Time(
                row.try_get_unchecked::<NaiveDate, _>(i)
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(from_local_naive)
                    .unwrap_or(0),
            ),
            _ => DbValue::Str(lossy(row.try_get_unchecked::<&[u8], _>(i)?)),
        };
        out.push(v);
    }
    Ok(())
}

fn pg_row(row: &PgRow) -> Result<Row, sqlx::Error> {
    let mut out = Vec::with_capacity(row.len());
    pg_row_into(row, &mut out)?;
    Ok(out)
}

fn pg_row_into(row: &PgRow, out: &mut Row) -> Result<(), sqlx::Error> {
    out.clear();
    for i in 0..row.len() {
        if row.try_get_raw(i)?.is_null() {
            out.push(DbValue::Null);
            continue;
        }
        let ty = row.column(i).type_info().name();
        let v = match ty {
            "BOOL" => DbValue::Int(row.try_get::<bool, _>(i)? as i64),
            "INT2" => DbValue::Int(row.try_get::<i16, _>(i)?.into()),
            "INT4" => DbValue::Int(row.try_get::<i32, _>(i)?.into()),
            "INT8" => DbValue::Int(row.try_get::<i64, _>(i)?),
            "OID" => DbValue::Int(row.try_get::<sqlx::postgres::types::Oid, _>(i)?.0.into()),
            "FLOAT4" => DbValue::Double(widen(row.try_get::<f32, _>(i)?)),
            "FLOAT8" => DbValue::Double(row.try_get::<f64, _>(i)?),
            "TIMESTAMP" => DbValue::Time(from_local_naive(row.try_get::<NaiveDateTime, _>(i)?)),
            "TIMESTAMPTZ" => DbValue::Time(row.try_get::<DateTime<Utc>, _>(i)?.timestamp()),
            "DATE" => DbValue::Time(
                row.try_get::<NaiveDate, _>(i)?
                    .and_hms_opt(0, 0, 0)
                    .map(from_local_naive)
                    .unwrap_or(0),
            ),
            "BYTEA" => DbValue::Str(lossy(row.try_get::<&[u8], _>(i)?)),
            "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "CHAR" | "CITEXT" | "UNKNOWN" => {
                DbValue::Str(row.try_get::<String, _>(i)?)
            }
            other => {
                return Err(sqlx::Error::Decode(
                    format!(
                        "column {}: type {other} is not supported (use integer, real, \
                         text or timestamp columns)",
                        row.column(i).name()
                    )
                    .into(),
                ))
            }
        };
        out.push(v);
    }
    Ok(())
}

/// An open transaction on one pooled connection.
enum TxConn {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Mysql(sqlx::Transaction<'static, sqlx::MySql>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Statements that become visible together at `commit` (or not at all). Not retried on a
/// lost connection: the whole transaction is gone then, and the caller starts again.
pub(crate) struct SqlTx {
    conn: TxConn,
    dialect: Dialect,
    url: String,
}

impl SqlDb {
    pub(crate) async fn begin(&self) -> Result<SqlTx, DbError> {
        let conn = match &self.pool {
            Pool::Sqlite(p) => p.begin().await.map(TxConn::Sqlite),
            Pool::Mysql(p) => p.begin().await.map(TxConn::Mysql),
            Pool::Postgres(p) => p.begin().await.map(TxConn::Postgres),
        }
        .map_err(|e| self.error("", e))?;
        Ok(SqlTx {
            conn,
            dialect: self.dialect(),
            url: self.url.clone(),
        })
    }
}

impl SqlTx {
    fn error(&self, table: &str, e: sqlx::Error) -> DbError {
        DbError::Query {
            url: self.url.clone(),
            table: table.to_string(),
            connection_lost: is_connection_error(&e),
            statement_refused: is_statement_refused(&e),
            message: e.to_string(),
        }
    }

    async fn exec(&mut self, st: &Stmt<'_>) -> Result<u64, sqlx::Error> {
        Ok(match &mut self.conn {
            TxConn::Sqlite(tx) => {
                let mut q = sqlx::query(&st.sql);
                for v in &st.binds {
                    q = bind_sqlite(q, v);
                }
                q.execute(&mut **tx).await?.rows_affected()
            }
            TxConn::Mysql(tx) => {
                let mut q = sqlx::query(&st.sql);
                for v in &st.binds {
                    q = bind_mysql(q, v);
                }
                q.execute(&mut **tx).await?.rows_affected()
            }
            TxConn::Postgres(tx) => {
                let mut q = sqlx::query(&st.sql);
                for v in &st.binds {
                    q = bind_pg(q, v);
                }
                q.execute(&mut **tx).await?.rows_affected()
            }
        })
    }

    fn insert_stmt<'v>(&self, table: &str, cols: &[&str], vals: &'v [DbValue]) -> Stmt<'v> {
        insert_stmt(self.dialect, table, cols, vals)
    }

    pub(crate) async fn insert(
        &mut self,
        table: &str,
        cols: &[&str],
        vals: &[DbValue],
    ) -> Result<u64, DbError> {
        let st = self.insert_stmt(table, cols, vals);
        self.exec(&st).await.map_err(|e| self.error(table, e))
    }

    /// Inserts and returns the new row's auto-increment `id_col`.
    pub(crate) async fn insert_returning_id(
        &mut self,
        table: &str,
        cols: &[&str],
        vals: &[DbValue],
        id_col: &str,
    ) -> Result<i64, DbError> {
        let mut st = self.insert_stmt(table, cols, vals);
        let r: Result<i64, sqlx::Error> = match &mut self.conn {
            TxConn::Sqlite(tx) => {
                let mut q = sqlx::query(&st.sql);
                for v in &st.binds {
                    q = bind_sqlite(q, v);
                }
                q.execute(&mut **tx).await.map(|r| r.last_insert_rowid())
            }
            TxConn::Mysql(tx) => {
                let mut q = sqlx::query(&st.sql);
                for v in &st.binds {
                    q = bind_mysql(q, v);
                }
                q.execute(&mut **tx)
                    .await
                    .map(|r| r.last_insert_id() as i64)
            }
            TxConn::Postgres(tx) => {
                st.push(" RETURNING ").ident(id_col);
                let mut q = sqlx::query(&st.sql);
                for v in &st.binds {
                    q = bind_pg(q, v);
                }
                match q.fetch_one(&mut **tx).await {
                    Ok(row) => row
                        .try_get::<i32, _>(0)
                        .map(i64::from)
                        .or_else(|_| row.try_get::<i64, _>(0)),
                    Err(e) => Err(e),
                }
            }
        };
        r.map_err(|e| self.error(table, e))
    }

    /// Inserts many rows (`values` holds them one after the other, `cols.len()` values
    /// each): PostgreSQL's `COPY ... FROM STDIN`, the others multi-row INSERTs of up to
    /// [`ROWS_PER_INSERT`] rows; one round trip per batch instead of per row.
    pub(crate) async fn insert_rows(
        &mut self,
        table: &str,
        cols: &[&str],
        values: &[DbValue],
    ) -> Result<u64, DbError> {
        if let TxConn::Postgres(tx) = &mut self.conn {
            let r = pg_copy_rows(tx, table, cols, values).await;
            return r.map_err(|e| self.error(table, e));
        }
        let per_stmt = rows_per_insert(cols.len());
        let mut done = 0;
        for batch in values.chunks(per_stmt * cols.len()) {
            let st = insert_rows_stmt(self.dialect, table, cols, batch);
            done += self.exec(&st).await.map_err(|e| self.error(table, e))?;
        }
        Ok(done)
    }

    /// [`SqlDb::select_each`] inside the transaction (it sees the transaction's writes).
    pub(crate) async fn select_each(
        &mut self,
        table: &str,
        cols: &[&str],
        conds: &[Cond<'_>],
        limit: Option<Duration>,
        each: &mut (dyn FnMut(&[DbValue]) -> ControlFlow<()> + Send),
    ) -> Result<u64, DbError> {
        let st = select_stmt(self.dialect, table, cols, conds, None);
        let r = match &mut self.conn {
            TxConn::Sqlite(tx) => {
                let mut q = sqlx::query(&st.sql);
                for v in &st.binds {
                    q = bind_sqlite(q, v);
                }
                // Only for the import's read-back of ids and prefixes: no DATETIME columns.
                drain(
                    q.fetch(&mut **tx),
                    limit,
                    |r, out| sqlite_row_into(r, &[], out),
                    each,
                )
                .await
            }
            TxConn::Mysql(tx) => {
                let mut q = sqlx::query(&st.sql);
                for v in &st.binds {
                    q = bind_mysql(q, v);
                }
                drain(q.fetch(&mut **tx), limit, mysql_row_into, each).await
            }
            TxConn::Postgres(tx) => {
                let mut q = sqlx::query(&st.sql);
                for v in &st.binds {
                    q = bind_pg(q, v);
                }
                drain(q.fetch(&mut **tx), limit, pg_row_into, each).await
            }
        };
        match r {
            Ok(n) => Ok(n),
            Err(Drained::Error(e, _)) => Err(self.error(table, e)),
            Err(Drained::Stalled) => Err(stalled_error(&self.url, table, limit)),
        }
    }

    pub(crate) async fn delete(&mut self, table: &str, conds: &[Cond<'_>]) -> Result<u64, DbError> {
        let mut st = Stmt::new(self.dialect);
        st.push("DELETE FROM ").ident(table).where_clause(conds);
        self.exec(&st).await.map_err(|e| self.error(table, e))
    }

    pub(crate) async fn commit(self) -> Result<(), DbError> {
        let url = self.url.clone();
        let r = match self.conn {
            TxConn::Sqlite(tx) => tx.commit().await,
            TxConn::Mysql(tx) => tx.commit().await,
            TxConn::Postgres(tx) => tx.commit().await,
        };
        r.map_err(|e| DbError::Query {
            url,
            table: String::new(),
            connection_lost: is_connection_error(&e),
            statement_refused: is_statement_refused(&e),
            message: e.to_string(),
        })
    }
}

/// `INSERT INTO table (cols...) VALUES (?...)`, the same for a pool and a transaction.
fn insert_stmt<'v>(dialect: Dialect, table: &str, cols: &[&str], vals: &'v [DbValue]) -> Stmt<'v> {
    let mut st = Stmt::new(dialect);
    st.push("INSERT INTO ").ident(table).push(" (");
    for (i, c) in cols.iter().enumerate() {
        if i > 0 {
            st.push(", ");
        }
        st.ident(c);
    }
    st.push(") VALUES (");
    for (i, v) in vals.iter().enumerate() {
        if i > 0 {
            st.push(", ");
        }
        st.value(v);
    }
    st.push(")");
    st
}

/// `INSERT INTO table (cols...) VALUES (...), (...), ...` for the rows laid end to end
/// in `vals`.
/// COPY's text format: one line per row, tab-separated, `\\N` for NULL, backslash escapes.
fn pg_copy_text(out: &mut Vec<u8>, v: &DbValue) {
    use std::io::Write;
    match v {
        DbValue::Null => out.extend_from_slice(b"\\N"),
        DbValue::Int(i) => {
            let _ = write!(out, "{i}");
        }
        DbValue::Double(d) => {
            let _ = write!(out, "{d:?}");
        }
        DbValue::Time(t) => out.extend_from_slice(format_local(*t).as_bytes()),
        DbValue::Str(s) => {
            for &b in s.as_bytes() {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    _ => out.push(b),
                }
            }
        }
    }
}

/// PostgreSQL's bulk path: the rows streamed through one `COPY ... FROM STDIN` in chunks
/// of about a megabyte, several times faster than INSERTs with bound values.
async fn pg_copy_rows(
    conn: &mut sqlx::PgConnection,
    table: &str,
    cols: &[&str],
    values: &[DbValue],
) -> Result<u64, sqlx::Error> {
    const CHUNK: usize = 1 << 20;
    if values.is_empty() || cols.is_empty() {
        return Ok(0);
    }
    let mut sql = format!("COPY \"{table}\" (");
    for (i, c) in cols.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('"');
        sql.push_str(c);
        sql.push('"');
    }
    sql.push_str(") FROM STDIN");
    let mut copy = conn.copy_in_raw(&sql).await?;
    let mut buf = Vec::with_capacity(CHUNK + 4096);
    for row in values.chunks(cols.len()) {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                buf.push(b'\t');
            }
            pg_copy_text(&mut buf, v);
        }
        buf.push(b'\n');
        if buf.len() >= CHUNK {
            copy.send(std::mem::take(&mut buf)).await?;
            buf.reserve(CHUNK + 4096);
        }
    }
    if !buf.is_empty() {
        copy.send(buf).await?;
    }
    copy.finish().await
}

fn insert_rows_stmt<'v>(
    dialect: Dialect,
    table: &str,
    cols: &[&str],
    vals: &'v [DbValue],
) -> Stmt<'v> {
    let mut st = Stmt::new(dialect);
    st.push("INSERT INTO ").ident(table).push(" (");
    for (i, c) in cols.iter().enumerate() {
        if i > 0 {
            st.push(", ");
        }
        st.ident(c);
    }
    st.push(") VALUES ");
    for (r, row) in vals.chunks(cols.len()).enumerate() {
        st.push(if r == 0 { "(" } else { ", (" });
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                st.push(", ");
            }
            st.value(v);
        }
        st.push(")");
    }
    st
}

/// The most rows one multi-row INSERT carries.
pub(crate) const ROWS_PER_INSERT: usize = 2_000;

/// Rows per INSERT for `cols` columns: SQLite binds at most 32,766 values per statement,
/// PostgreSQL and MariaDB 65,535.
fn rows_per_insert(cols: usize) -> usize {
    (30_000 / cols.max(1)).clamp(1, ROWS_PER_INSERT)
}

fn select_stmt<'v>(
    dialect: Dialect,
    table: &str,
    cols: &[&str],
    conds: &'v [Cond<'_>],
    order: Option<OrderBy<'_>>,
) -> Stmt<'v> {
    let mut st = Stmt::new(dialect);
    st.push("SELECT ");
    if cols.is_empty() {
        st.push("*");
    }
    for (i, c) in cols.iter().enumerate() {
        if i > 0 {
            st.push(", ");
        }
        st.ident(c);
    }
    st.push(" FROM ").ident(table).where_clause(conds);
    if let Some(o) = order {
        st.push(" ORDER BY ")
            .ident(o.col)
            .push(if o.desc { " DESC" } else { " ASC" });
    }
    st
}

/// Why a streamed read stopped early.
enum Drained {
    /// The driver's error, and how many rows had been handed out before it.
    Error(sqlx::Error, u64),
    /// No row arrived within the limit.
    Stalled,
}

fn stalled_error(url: &str, table: &str, limit: Option<Duration>) -> DbError {
    DbError::Query {
        url: url.to_string(),
        table: table.to_string(),
        message: format!(
            "no rows within the {} ms database timeout",
            limit.unwrap_or_default().as_millis()
        ),
        connection_lost: true,
        statement_refused: false,
    }
}

/// Hands the rows of `stream` to `each` in one reused buffer until the end, an error or
/// `each` breaks. With a `limit`, the read fails when a whole `limit` passes without a
/// row (a watchdog re-armed while rows flow: no timer per row).
async fn drain<R>(
    mut stream: BoxStream<'_, Result<R, sqlx::Error>>,
    limit: Option<Duration>,
    mut convert: impl FnMut(&R, &mut Row) -> Result<(), sqlx::Error>,
    each: &mut (dyn FnMut(&[DbValue]) -> ControlFlow<()> + Send),
) -> Result<u64, Drained> {
    let mut buf: Row = Vec::new();
    let mut n = 0u64;
    let watchdog = tokio::time::sleep(limit.unwrap_or(Duration::from_secs(86_400)));
    tokio::pin!(watchdog);
    let mut seen_at_last_check = 0u64;
    loop {
        let item = tokio::select! {
            biased;
            item = stream.next() => item,
            _ = &mut watchdog, if limit.is_some() => {
                if n == seen_at_last_check {
                    return Err(Drained::Stalled);
                }
                seen_at_last_check = n;
                watchdog
                    .as_mut()
                    .reset(tokio::time::Instant::now() + limit.unwrap_or_default());
                continue;
            }
        };
        let Some(row) = item else {
            return Ok(n);
        };
        let row = row.map_err(|e| Drained::Error(e, n))?;
        convert(&row, &mut buf).map_err(|e| Drained::Error(e, n))?;
        n += 1;
        if each(&buf).is_break() {
            return Ok(n);
        }
    }
}
