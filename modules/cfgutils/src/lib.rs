//! `cfgutils`: script utilities. `sleep`/`usleep` pause the route without blocking the
//! worker (Kamailio's block the whole process): the route is suspended on the async runtime
//! and the worker goes on with other messages.

use ferrosip_api::{
    apply_result, ApplyResult, FnError, Module, ModuleBuilder, MsgContext, ParamType, RouteMask,
    Verdict,
};
use rand::Rng;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The `cfgutils` module.
pub struct CfgutilsModule;

/// Kamailio's `initial_probability` default (percent).
const DEFAULT_PROBABILITY: i64 = 10;

/// A pause longer than this is refused: a route that holds a message for minutes is a
/// configuration mistake, and each suspended route holds its message in memory.
const MAX_PAUSE: Duration = Duration::from_secs(60);

/// The future of `sleep`/`usleep`: waits on the async runtime's timer, then lets the
/// route go on.
async fn pause_route(length: Duration) -> ApplyResult {
    if length > MAX_PAUSE {
        let e = FnError::new(format!(
            "pause of {} ms is longer than the {} s limit",
            length.as_millis(),
            MAX_PAUSE.as_secs()
        ));
        return apply_result(move |_| Err(e));
    }
    tokio::time::sleep(length).await;
    apply_result(|_| Ok(Verdict::TRUE))
}

impl Module for CfgutilsModule {
    fn name(&self) -> &'static str {
        "cfgutils"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Script utilities: pauses that do not block a worker (`sleep`, `usleep`), random events (`rand_event`).");
        m.example(include_str!("../example.cfg"));
        m.param(
            "initial_probability",
            ParamType::Int,
            DEFAULT_PROBABILITY,
            "Percentage of rand_event() calls that return true, 0..100.",
        );
        let probability = Arc::new(AtomicU32::new(DEFAULT_PROBABILITY as u32));
        let initial = Arc::new(AtomicU32::new(DEFAULT_PROBABILITY as u32));
        let (init_probability, init_initial) = (probability.clone(), initial.clone());
        m.on_init(move |params| {
            let p = params.int("initial_probability");
            if !(0..=100).contains(&p) {
                return Err(format!("initial_probability {p} is not a percentage"));
            }
            init_probability.store(p as u32, Ordering::Relaxed);
            init_initial.store(p as u32, Ordering::Relaxed);
            Ok(())
        });
        let all_routes = RouteMask::ANY;
        m.function("sleep")
            .args(&["seconds"])
            .routes(all_routes)
            .doc("Pauses the route for SECONDS without blocking the worker; 1 when done.")
            .async_handler(|_ctx: &mut MsgContext, seconds: i64| {
                pause_route(Duration::from_secs(seconds.max(0) as u64))
            });
        m.function("usleep")
            .args(&["microseconds"])
            .routes(all_routes)
            .doc("Pauses the route for MICROSECONDS without blocking the worker; 1 when done.")
            .async_handler(|_ctx: &mut MsgContext, micros: i64| {
                pause_route(Duration::from_micros(micros.max(0) as u64))
            });
        let p = probability.clone();
        m.function("rand_event")
            .routes(all_routes)
            .doc("True (1) with the probability set by initial_probability or rand_set_prob(), else -1.")
            .handler(move |_ctx: &mut MsgContext| {
                let hit = rand::thread_rng().gen_range(0..100) < p.load(Ordering::Relaxed);
                Ok(if hit { Verdict::TRUE } else { Verdict::FALSE })
            });
        let p = probability.clone();
        m.function("rand_set_prob")
            .args(&["percent"])
            .routes(all_routes)
            .doc("Sets the rand_event() probability (0..100) for this process.")
            .handler(move |_ctx: &mut MsgContext, percent: i64| {
                if !(0..=100).contains(&percent) {
                    return Err(FnError::new(format!("{percent} is not a percentage")));
                }
                p.store(percent as u32, Ordering::Relaxed);
                Ok(Verdict::TRUE)
            });
        let p = probability;
        m.function("rand_reset_prob")
            .routes(all_routes)
            .doc("Restores the rand_event() probability to initial_probability.")
            .handler(move |_ctx: &mut MsgContext| {
                p.store(initial.load(Ordering::Relaxed), Ordering::Relaxed);
                Ok(Verdict::TRUE)
            });
    }
}
