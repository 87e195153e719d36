//! The end-to-end tests of `phones.rs` (a phone registers with digest auth, another
//! subscriber calls it through `lookup("location")`; SQLite, MariaDB, PostgreSQL,
//! db_text; UDP and TCP) run on `examples/lua/registrar-auth.cfg`, the Lua twin of
//! `examples/registrar-auth.cfg`: the same tests must give the same outcomes.

#[path = "phones.rs"]
mod phones;
