//! Database layer for Ferrosip modules (skeleton; real backends follow).

use std::fmt;
use std::sync::Arc;

pub mod schema;

/// Which backend a `db_url` selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Mysql,
    Postgres,
    Text,
}

/// A parsed Kamailio-style `db_url`.
#[derive(Clone, PartialEq, Eq)]
pub struct DbUrl {
    pub kind: DbKind,
    pub user: Option<String>,
    pub password: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// Database name (MySQL/PostgreSQL) or file/directory path (SQLite/db_text).
    pub database: String,
}

impl DbUrl {
    pub fn parse(url: &str) -> Result<DbUrl, DbError> {
        Err(DbError::Url {
            url: url.to_string(),
            reason: "not implemented yet".into(),
        })
    }
}

impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}://{}", self.kind, self.database)
    }
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One value read from or written to a column.
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

pub type Row = Vec<DbValue>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// One `col <op> value` term of a WHERE clause; terms are joined with AND.
#[derive(Clone, Debug)]
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

#[derive(thiserror::Error, Debug)]
pub enum DbError {
    #[error("invalid db_url '{url}': {reason}")]
    Url { url: String, reason: String },
    #[error("invalid identifier '{0}' (allowed: [A-Za-z_][A-Za-z0-9_]*)")]
    Identifier(String),
    #[error("{url}: {message}")]
    Backend {
        url: String,
        table: Option<String>,
        message: String,
    },
}

struct Inner {
    url: DbUrl,
}

/// A handle to one database; cheap to clone, shared by all workers.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

impl Db {
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        let url = DbUrl::parse(url)?;
        Ok(Db {
            inner: Arc::new(Inner { url }),
        })
    }
    pub fn kind(&self) -> DbKind {
        self.inner.url.kind
    }
    pub async fn select(
        &self,
        _table: &str,
        _cols: &[&str],
        _conds: &[Cond<'_>],
        _order_by: Option<&str>,
    ) -> Result<Vec<Row>, DbError> {
        Ok(Vec::new())
    }
    pub async fn insert(
        &self,
        _table: &str,
        _cols: &[&str],
        _vals: &[DbValue],
    ) -> Result<u64, DbError> {
        Ok(0)
    }
    /// Insert, or update the row whose `key_cols` match (Kamailio's db "replace").
    pub async fn replace(
        &self,
        _table: &str,
        _key_cols: &[&str],
        _cols: &[&str],
        _vals: &[DbValue],
    ) -> Result<(), DbError> {
        Ok(())
    }
    pub async fn update(
        &self,
        _table: &str,
        _conds: &[Cond<'_>],
        _set: &[(&str, DbValue)],
    ) -> Result<u64, DbError> {
        Ok(0)
    }
    pub async fn delete(&self, _table: &str, _conds: &[Cond<'_>]) -> Result<u64, DbError> {
        Ok(0)
    }
    pub async fn table_version(&self, _table: &str) -> Result<Option<i64>, DbError> {
        Ok(None)
    }
}
