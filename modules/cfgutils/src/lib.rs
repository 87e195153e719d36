//! `cfgutils`: script utilities. `sleep`/`usleep` pause the route without blocking the
//! worker (Kamailio's block the whole process): the route is suspended on the async runtime
//! and the worker goes on with other messages.

use ferrosip_api::registry::FnRow;
use ferrosip_api::{
    apply_result, ApplyResult, FnError, Module, ModuleBuilder, MsgContext, ParamType, RouteMask,
    Verdict,
};
use rand::Rng;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The `cfgutils` module.
pub struct CfgutilsModule;

/// The module's state: the `rand_event` probability in percent, as configured and as
/// changed by `rand_set_prob`.
struct Probability {
    initial: u32,
    current: AtomicU32,
}

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
        let probability = m.state(|params| {
            let p = params.int("initial_probability");
            if !(0..=100).contains(&p) {
                return Err(format!("initial_probability {p} is not a percentage"));
            }
            Ok(Probability {
                initial: p as u32,
                current: AtomicU32::new(p as u32),
            })
        });
        let rand_event = probability.with(|p: &Probability, _ctx: &mut MsgContext| {
            let hit = rand::thread_rng().gen_range(0..100) < p.current.load(Ordering::Relaxed);
            Ok(if hit { Verdict::TRUE } else { Verdict::FALSE })
        });
        let rand_set_prob =
            probability.with(|p: &Probability, _ctx: &mut MsgContext, percent: i64| {
                if !(0..=100).contains(&percent) {
                    return Err(FnError::new(format!("{percent} is not a percentage")));
                }
                p.current.store(percent as u32, Ordering::Relaxed);
                Ok(Verdict::TRUE)
            });
        let rand_reset_prob = probability.with(|p: &Probability, _ctx: &mut MsgContext| {
            p.current.store(p.initial, Ordering::Relaxed);
            Ok(Verdict::TRUE)
        });
        let sleep = |_ctx: &mut MsgContext, seconds: i64| {
            pause_route(Duration::from_secs(seconds.max(0) as u64))
        };
        let usleep = |_ctx: &mut MsgContext, micros: i64| {
            pause_route(Duration::from_micros(micros.max(0) as u64))
        };
        #[rustfmt::skip]
        m.functions([
            FnRow::asynchronous("sleep", &["seconds"], RouteMask::ANY, "Pauses the route for SECONDS without blocking the worker; 1 when done.", sleep),
            FnRow::asynchronous("usleep", &["microseconds"], RouteMask::ANY, "Pauses the route for MICROSECONDS without blocking the worker; 1 when done.", usleep),
            FnRow::sync("rand_event", &[], RouteMask::ANY, "True (1) with the probability set by initial_probability or rand_set_prob(), else -1.", rand_event),
            FnRow::sync("rand_set_prob", &["percent"], RouteMask::ANY, "Sets the rand_event() probability (0..100) for this process.", rand_set_prob),
            FnRow::sync("rand_reset_prob", &[], RouteMask::ANY, "Restores the rand_event() probability to initial_probability.", rand_reset_prob),
        ]);
    }
}
