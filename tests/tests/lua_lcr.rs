//! The carrier LCR tests of `lcr.rs` (cheapest carrier per prefix, re-import, failover
//! on 503 and on silence, defunct gateways; SQLite and PostgreSQL; SIPp carriers) run on
//! `examples/lua/carrier-lcr.cfg`, the Lua twin of `examples/carrier-lcr.cfg`: the same
//! tests must give the same outcomes. Its database-backed KSR calls (auth_db, lcr) are
//! async: they yield the Lua coroutine.

#[path = "lcr.rs"]
mod lcr;
