//! Kamailio modules whose job Ferrosip's core does.
//!
//! `loadmodule "NAME.so"` of one of these is accepted and adds nothing. Only modules that
//! export no script functions are listed here; modules that do (`pv`, `kex`, `corex`, `tmx`,
//! `jsonrpcs`, `textopsx`, ...) have their own crates declaring those functions.

use ferrosip_api::Registry;

/// `(name, what does the job in Ferrosip)` for every absorbed module.
pub const ABSORBED: &[(&str, &str)] = &[
    ("cfg_rpc", "RPC commands to read and set config variables at run time; built into Ferrosip's RPC layer."),
    ("mi_fifo", "Legacy MI interface over a FIFO; Ferrosip's RPC layer replaces it."),
    ("mi_rpc", "Legacy MI-to-RPC bridge; Ferrosip's RPC layer replaces it."),
    ("db_mysql", "MySQL driver for db_url; database access is provided by Ferrosip's core."),
    ("db_postgres", "PostgreSQL driver for db_url; database access is provided by Ferrosip's core."),
    ("db_sqlite", "SQLite driver for db_url; database access is provided by Ferrosip's core."),
    ("db_text", "Text-file database driver for db_url; database access is provided by Ferrosip's core."),
];

/// Registers every absorbed module.
pub fn register_absorbed(reg: &mut Registry) {
    for (name, doc) in ABSORBED {
        reg.register_absorbed(name, doc);
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
