//! `pike`: Flood detection: counts requests per source IP and blocks sources above a rate.
//!
//! The counting is in [`counter`]; this file wires it to the script: the parameters,
//! `pike_check_req()`/`pike_check_ip()`, `event_route[pike:blocked]`, the sweeper task
//! and the `pike.top` RPC.

pub mod counter;

use bytes::Bytes;
use counter::{Check, PikeConfig, PikeCounter, TopFilter};
use ferrosip_api::{
    FnError, FnResult, Module, ModuleBuilder, ModuleParams, MsgContext, NetInfo, ParamType,
    RouteKind, RouteMask, RpcValue, Services, Value, Verdict,
};
use ferrosip_sip::SipMessage;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The `pike` module.
pub struct PikeModule;

/// The module's state: the counters and, once the server is up, its services (to run
/// `event_route[pike:blocked]`).
pub struct Pike {
    pub counter: PikeCounter,
    services: OnceLock<Arc<dyn Services>>,
}

impl Pike {
    pub fn new(cfg: PikeConfig, clock: ferrosip_api::Clock) -> Pike {
        Pike {
            counter: PikeCounter::with_clock(cfg, clock),
            services: OnceLock::new(),
        }
    }

    /// Counts a request from `ip`, logging and raising the event when it becomes blocked.
    pub fn check(&self, ip: IpAddr) -> Check {
        let (check, unblocked) = self.counter.check_noting_unblock(ip);
        if unblocked {
            log_at(
                self.counter.config().log_level,
                &format!("PIKE - UNBLOCKing ip {ip}"),
            );
        }
        if check == Check::JustBlocked {
            log_at(
                self.counter.config().log_level,
                &format!("PIKE - BLOCKing ip {ip}"),
            );
            self.raise_blocked(ip);
        }
        check
    }

    fn raise_blocked(&self, ip: IpAddr) {
        let Some(services) = self.services.get() else {
            return;
        };
        // The event route sees a request from the blocked address: $si is the address.
        let raw = format!(
            "OPTIONS sip:pike@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {host};branch=z9hG4bKpike\r\n\
             From: <sip:pike@127.0.0.1>;tag=pike\r\nTo: <sip:pike@127.0.0.1>\r\n\
             Call-ID: pike-blocked\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            host = match ip {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("[{v6}]"),
            }
        );
        let Ok(msg) = SipMessage::parse(Bytes::from(raw)) else {
            return;
        };
        let net = NetInfo {
            source: SocketAddr::new(ip, 0),
            ..NetInfo::default()
        };
        services.run_event_route("pike:blocked", MsgContext::new(msg, RouteKind::Event, net));
    }
}

/// Logs at a Kamailio log level (-5 alert .. -1 error, 0..1 warning, 2 info, 3 debug).
fn log_at(level: i64, text: &str) {
    match level {
        i64::MIN..=-1 => tracing::error!(target: "pike", "{text}"),
        0..=1 => tracing::warn!(target: "pike", "{text}"),
        2 => tracing::info!(target: "pike", "{text}"),
        _ => tracing::debug!(target: "pike", "{text}"),
    }
}

fn config_from(p: &ModuleParams) -> Result<PikeConfig, String> {
    let positive = |name: &str| -> Result<u32, String> {
        let v = p.int(name);
        u32::try_from(v)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| format!("pike: {name} must be a positive number, not {v}"))
    };
    let max_nodes = p.int("max_nodes");
    // Kamailio keeps the counts and the limit in 16 bits.
    let density = positive("reqs_density_per_unit")?;
    if density > u32::from(u16::MAX) {
        return Err(format!(
            "pike: reqs_density_per_unit must be at most 65535 (Kamailio counts in 16 bits), not {density}"
        ));
    }
    Ok(PikeConfig {
        sampling_time_unit: positive("sampling_time_unit")?,
        reqs_density_per_unit: density,
        remove_latency: positive("remove_latency")?,
        log_level: p.int("pike_log_level"),
        max_nodes: usize::try_from(max_nodes)
            .ok()
            .filter(|n| (1..=50_000_000).contains(n))
            .ok_or_else(|| format!("pike: max_nodes must be 1..50000000, not {max_nodes}"))?,
    })
}

fn verdict(check: Check) -> FnResult {
    Ok(Verdict::code(check.code()))
}

impl Module for PikeModule {
    fn name(&self) -> &'static str {
        "pike"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Flood detection: counts requests per source IP and blocks sources above a rate.");
        m.param(
            "sampling_time_unit",
            ParamType::Int,
            2_i64,
            "Length in seconds of the sampling window.",
        );
        m.param(
            "reqs_density_per_unit",
            ParamType::Int,
            30_i64,
            "Requests per window above which a source IP is blocked.",
        );
        m.param(
            "remove_latency",
            ParamType::Int,
            120_i64,
            "Seconds an address stays in the tree after its last request (a prefix: after it was made).",
        );
        m.param(
            "pike_log_level",
            ParamType::Int,
            1_i64,
            "Log level of the \"IP blocked\" messages (1 = L_WARN).",
        );
        m.param(
            "max_nodes",
            ParamType::Int,
            500_000_i64,
            "Ferrosip's bound: most nodes of pike's address tree at once (one per busy prefix byte and per counted address, under 100 bytes each); past it a new node is not made (its request is allowed) until idle ones are removed.",
        );
        let clock = m.clock();
        let state = m.state(move |p| Ok(Pike::new(config_from(p)?, clock.clone())));
        {
            let state = state.clone();
            m.on_start(move |env| {
                let pike = state.get();
                let runtime = env.runtime.clone();
                async move {
                    let pike = pike.map_err(|e| e.message)?;
                    let weak = Arc::downgrade(&pike);
                    let unit = u64::from(pike.counter.config().sampling_time_unit);
                    runtime.spawn(async move {
                        // Every second, as Kamailio's cleaning timer: node expiry is
                        // counted in seconds.
                        let mut tick = tokio::time::interval(Duration::from_secs(1));
                        tick.tick().await;
                        let mut seconds = 0u64;
                        let mut untracked = 0u64;
                        loop {
                            tick.tick().await;
                            let Some(pike) = weak.upgrade() else {
                                return;
                            };
                            let (unblocked, refused) = pike.counter.sweep();
                            let level = pike.counter.config().log_level;
                            for ip in unblocked {
                                log_at(level, &format!("PIKE - UNBLOCKing ip {ip}"));
                            }
                            // The cap warning at most once per sampling unit.
                            untracked += refused;
                            seconds += 1;
                            if untracked > 0 && seconds.is_multiple_of(unit) {
                                tracing::warn!(
                                    target: "pike",
                                    untracked,
                                    max_nodes = pike.counter.config().max_nodes,
                                    "pike: address cap reached, new sources were not counted"
                                );
                                untracked = 0;
                            }
                        }
                    });
                    Ok(())
                }
            });
        }
        {
            let state = state.clone();
            m.on_ready(move |services| {
                if let Ok(pike) = state.get() {
                    let _ = pike.services.set(services.clone());
                }
            });
        }
        m.function("pike_check_req")
            .routes(RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Counts the request against its source IP; 1 when allowed, -1 when the IP is blocked, -2 when it was just blocked (-1 and -2 are false).")
            .handler(state.with(|pike: &Pike, ctx: &mut MsgContext| {
                verdict(pike.check(ctx.net.source.ip()))
            }));
        m.function("pike_check_ip")
            .args(&["ipaddr"])
            .routes(RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As pike_check_req() for an address given as text; 1 allowed, -1 blocked, -2 just blocked.")
            .handler(state.with(|pike: &Pike, _ctx: &mut MsgContext, ip: Bytes| {
                let text = String::from_utf8_lossy(&ip);
                let text = text.trim().trim_start_matches('[').trim_end_matches(']');
                let ip: IpAddr = text
                    .parse()
                    .map_err(|_| FnError::new(format!("pike_check_ip: {text:?} is not an IP address")))?;
                verdict(pike.check(ip))
            }));
        {
            let state = state.clone();
            m.rpc(
                "pike.top",
                "Lists the source addresses in pike's tree with their request counts; optional filter HOT (default, as Kamailio), ALL or WARM.",
                move |args: &[Value]| {
                    let pike = state.get().map_err(|e| e.message)?;
                    let filter = match args.first().and_then(Value::to_bytes) {
                        None => TopFilter::Hot,
                        Some(f) => match f.to_ascii_uppercase().as_slice() {
                            b"ALL" => TopFilter::All,
                            b"HOT" => TopFilter::Hot,
                            b"WARM" => TopFilter::Warm,
                            _ => return Err("filter must be ALL, HOT or WARM".into()),
                        },
                    };
                    let rows = pike
                        .counter
                        .top(filter)
                        .into_iter()
                        .map(|n| {
                            RpcValue::Struct(vec![
                                ("ip_addr".into(), RpcValue::Str(n.ip.to_string())),
                                ("leaf_hits_prev".into(), RpcValue::Int(i64::from(n.hits_prev))),
                                ("leaf_hits_curr".into(), RpcValue::Int(i64::from(n.hits_curr))),
                                ("expires".into(), RpcValue::Int(i64::from(n.expires_in))),
                                (
                                    "status".into(),
                                    RpcValue::Str(
                                        if n.hot { "HOT" } else if n.warm { "WARM" } else { "" }.into(),
                                    ),
                                ),
                            ])
                        })
                        .collect();
                    Ok(RpcValue::Array(rows))
                },
            );
        }
    }
}

#[cfg(test)]
mod tests;
