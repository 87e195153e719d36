//! The bound on one database operation, per driver.
//!
//! Kamailio sets it per driver module (`db_mysql`'s `timeout_interval`, `db_postgres`'s
//! `timeout`), for the whole process; so does Ferrosip: the `db_mysql` and `db_postgres`
//! modules set it from those parameters when the config loads, and every pool of that
//! driver reads it at each operation. A SIP request waiting on a database that is down or
//! restarting gets its error after this long instead of holding its route run (and the
//! phone's transaction) for as long as TCP cares to retry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::DbKind;

/// Kamailio's `db_mysql` default `timeout_interval` (2 s); PostgreSQL gets the same bound,
/// where Kamailio's `db_postgres` has none by default: a proxy never waits unboundedly.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

static MYSQL_MS: AtomicU64 = AtomicU64::new(DEFAULT_TIMEOUT.as_millis() as u64);
static POSTGRES_MS: AtomicU64 = AtomicU64::new(DEFAULT_TIMEOUT.as_millis() as u64);

fn slot(kind: DbKind) -> Option<&'static AtomicU64> {
    match kind {
        DbKind::Mysql => Some(&MYSQL_MS),
        DbKind::Postgres => Some(&POSTGRES_MS),
        // Local files: SQLite's busy timeout bounds its waits, db_text never waits.
        DbKind::Sqlite | DbKind::Text => None,
    }
}

/// Sets the bound on one operation (waiting for a connection, connecting, the statement
/// and its retry) of every pool of `kind` (MariaDB/MySQL or PostgreSQL; ignored for the
/// local backends). A zero duration keeps the default.
pub fn set_timeout(kind: DbKind, limit: Duration) {
    let limit = if limit.is_zero() {
        DEFAULT_TIMEOUT
    } else {
        limit
    };
    if let Some(s) = slot(kind) {
        s.store(limit.as_millis().max(1) as u64, Ordering::Relaxed);
    }
}

/// The bound on one operation of `kind`; `None` for the local backends.
pub fn timeout(kind: DbKind) -> Option<Duration> {
    slot(kind).map(|s| Duration::from_millis(s.load(Ordering::Relaxed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_driver_with_zero_keeping_the_default() {
        assert_eq!(timeout(DbKind::Sqlite), None);
        assert_eq!(timeout(DbKind::Text), None);
        // Other tests of this process may use PostgreSQL: only ever raise it, then restore.
        set_timeout(DbKind::Postgres, Duration::from_secs(7));
        assert_eq!(timeout(DbKind::Postgres), Some(Duration::from_secs(7)));
        set_timeout(DbKind::Postgres, Duration::ZERO);
        assert_eq!(timeout(DbKind::Postgres), Some(DEFAULT_TIMEOUT));
        assert_eq!(timeout(DbKind::Mysql), Some(DEFAULT_TIMEOUT));
    }
}
