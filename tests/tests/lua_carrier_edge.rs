//! The carrier edge tests of `carrier_edge.rs` (authenticated customers and 407 for
//! strangers, acc rows, failover between carriers and missed calls, a flooding source
//! banned while customers' calls complete; SQLite; SIPp peers) run on
//! `examples/lua/carrier-edge.cfg`, the Lua twin of `examples/carrier-edge.cfg`: the same
//! tests must give the same outcomes.

#[path = "carrier_edge.rs"]
mod carrier_edge;
