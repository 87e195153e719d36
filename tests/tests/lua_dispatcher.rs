//! The load balancer tests of `dispatcher.rs` (round-robin, failover, a silent PBX taken
//! out and back with dst-down/dst-up events, From-hash; SIPp PBXs) run on
//! `examples/lua/load-balancer.cfg`, the Lua twin of `examples/load-balancer.cfg`: the
//! same tests must give the same outcomes. The events reach Lua through dispatcher's
//! `event_callback` parameter.

#[path = "dispatcher.rs"]
mod dispatcher;
