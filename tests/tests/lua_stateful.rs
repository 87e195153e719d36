//! The stateful proxy flows of `stateful.rs` (serial failover, parallel forking, CANCEL,
//! in-dialog requests, packet loss; SIPp on both sides) run on `examples/lua/stateful.cfg`,
//! the Lua twin of `examples/stateful.cfg`: the same scenarios must give the same outcomes.

#[path = "stateful.rs"]
mod stateful;
