//! Kamailio modules whose job Ferrosip's core does.
//!
//! `loadmodule "NAME.so"` of one of these is accepted and adds nothing. Only modules that
//! export no script functions are listed here; modules that do (`pv`, `kex`, `corex`, `tmx`,
//! `jsonrpcs`, `textopsx`, ...) have their own crates declaring those functions.
//!
//! `db_mysql` and `db_postgres` are absorbed too, but their timeout parameters still mean
//! something: each declares that one parameter ([`DbMysqlModule`], [`DbPostgresModule`])
//! and hands its value to `ferrosip-db`; their other parameters stay accepted unchecked.

use std::time::Duration;

use ferrosip_api::{Module, ModuleBuilder, ParamType, Registry};
use ferrosip_db::DbKind;

/// `(name, what does the job in Ferrosip)` for every absorbed module.
pub const ABSORBED: &[(&str, &str)] = &[
    ("cfg_rpc", "RPC commands to read and set config variables at run time; built into Ferrosip's RPC layer."),
    ("mi_fifo", "Legacy MI interface over a FIFO; Ferrosip's RPC layer replaces it."),
    ("mi_rpc", "Legacy MI-to-RPC bridge; Ferrosip's RPC layer replaces it."),
    ("db_sqlite", "SQLite driver for db_url; database access is provided by Ferrosip's core."),
    ("db_text", "Text-file database driver for db_url; database access is provided by Ferrosip's core."),
];

/// Registers every absorbed module, and the database drivers' timeout parameters.
pub fn register_absorbed(reg: &mut Registry) {
    for (name, doc) in ABSORBED {
        reg.register_absorbed(name, doc);
    }
    // Still absorbed (their other Kamailio parameters are accepted unchecked, as before);
    // only the declared timeout is read.
    reg.register(&DbMysqlModule);
    reg.register_absorbed("db_mysql", DB_MYSQL_DOC);
    reg.register(&DbPostgresModule);
    reg.register_absorbed("db_postgres", DB_POSTGRES_DOC);
}

const DB_MYSQL_DOC: &str = "MariaDB/MySQL driver for db_url: database access is provided by Ferrosip's core; of its parameters only timeout_interval has an effect.";
const DB_POSTGRES_DOC: &str = "PostgreSQL driver for db_url: database access is provided by Ferrosip's core; of its parameters only timeout has an effect.";

/// Declares a driver module: its one timeout parameter, in seconds, set for every pool of
/// `kind` when the config loads.
fn declare_driver(
    m: &mut ModuleBuilder<'_>,
    kind: DbKind,
    param: &'static str,
    doc: &'static str,
    param_doc: &'static str,
) {
    m.doc(doc);
    m.param(
        param,
        ParamType::Int,
        ferrosip_db::DEFAULT_TIMEOUT.as_secs() as i64,
        param_doc,
    );
    m.on_init(move |p| {
        let secs = p.int(param);
        if secs < 0 {
            return Err(format!("{param} must be 0 or more seconds, not {secs}"));
        }
        ferrosip_db::set_timeout(kind, Duration::from_secs(secs as u64));
        Ok(())
    });
}

/// Kamailio's MySQL driver: the core does its work; `timeout_interval` bounds each
/// operation on a `mysql://` database.
pub struct DbMysqlModule;

impl Module for DbMysqlModule {
    fn name(&self) -> &'static str {
        "db_mysql"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        declare_driver(
            m,
            DbKind::Mysql,
            "timeout_interval",
            DB_MYSQL_DOC,
            "Seconds one database operation on a mysql:// db_url may take (waiting for a pooled connection, connecting, the statement and its one retry) before it fails as a connection error: the module function returns its error code (save() answers 500). Applies to every mysql:// URL of the process. 0 keeps the default.",
        );
    }
}

/// Kamailio's PostgreSQL driver: the core does its work; `timeout` bounds each operation
/// on a `postgres://` database.
pub struct DbPostgresModule;

impl Module for DbPostgresModule {
    fn name(&self) -> &'static str {
        "db_postgres"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        declare_driver(
            m,
            DbKind::Postgres,
            "timeout",
            DB_POSTGRES_DOC,
            "Seconds one database operation on a postgres:// db_url may take (waiting for a pooled connection, connecting, the statement and its one retry) before it fails as a connection error: the module function returns its error code (save() answers 500). Applies to every postgres:// URL of the process. 0 keeps the default (Kamailio's 0 means no timeout; Ferrosip always keeps one).",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absorbed_modules_are_registered_without_functions() {
        let mut reg = Registry::new();
        register_absorbed(&mut reg);
        for (name, _) in ABSORBED {
            let m = reg.module(name).expect("registered");
            assert!(m.absorbed);
            assert!(m.functions.is_empty());
        }
    }
}
