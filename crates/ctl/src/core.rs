//! The core RPC commands: core.*, system.*, stats.*, cfg.* and the script reload.

use crate::methods::{Methods, RpcError};
use ferrosip_api::registry::RpcValue;
use ferrosip_api::Value;
use ferrosip_server::Engine;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The log level, changed at run time (`cfg.seti core debug N`): the binary's logger
/// gives the setter, which takes Kamailio's `debug=` number.
pub struct LogLevel {
    current: AtomicI64,
    set: Box<dyn Fn(i64) -> Result<(), String> + Send + Sync>,
}

impl LogLevel {
    /// `current` is the `debug=` value the server started with.
    pub fn new(
        current: i64,
        set: impl Fn(i64) -> Result<(), String> + Send + Sync + 'static,
    ) -> LogLevel {
        LogLevel {
            current: AtomicI64::new(current),
            set: Box::new(set),
        }
    }

    pub fn get(&self) -> i64 {
        self.current.load(Relaxed)
    }

    pub fn set(&self, level: i64) -> Result<(), String> {
        (self.set)(level)?;
        self.current.store(level, Relaxed);
        tracing::info!(debug = level, "log level changed");
        Ok(())
    }
}

/// What the core commands read.
pub struct CoreEnv {
    pub engine: Arc<Engine>,
    pub log: Option<Arc<LogLevel>>,
    pub started_at: SystemTime,
    pub started: Instant,
}

fn arg_str(args: &[Value], i: usize) -> Option<String> {
    args.get(i)
        .and_then(Value::to_bytes)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn http_date(t: SystemTime) -> String {
    // UTC, as "Sun Dec  6 02:28:37 2026" (Kamailio prints ctime()).
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    let wd = (days + 4).rem_euclid(7) as usize;
    const WD: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MO: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        WD[wd],
        MO[(mo - 1) as usize],
        d,
        h,
        m,
        s,
        y
    )
}

const VERSION: &str = concat!("ferrosip ", env!("CARGO_PKG_VERSION"));

/// One statistic: `group:name` and how to read (and maybe reset) it.
struct Stat {
    group: &'static str,
    name: &'static str,
    read: Box<dyn Fn(&CoreEnv) -> i64 + Send + Sync>,
    /// The counter `stats.reset_statistics` zeroes (none for a gauge).
    reset: Option<fn(&ferrosip_server::Stats) -> &AtomicU64>,
}

fn counter(
    group: &'static str,
    name: &'static str,
    field: fn(&ferrosip_server::Stats) -> &AtomicU64,
) -> Stat {
    Stat {
        group,
        name,
        read: Box::new(move |env| field(&env.engine.server.stats).load(Relaxed) as i64),
        reset: Some(field),
    }
}

fn gauge(
    group: &'static str,
    name: &'static str,
    read: impl Fn(&CoreEnv) -> i64 + Send + Sync + 'static,
) -> Stat {
    Stat {
        group,
        name,
        read: Box::new(read),
        reset: None,
    }
}

/// The statistics served, with Kamailio's names where Kamailio has the counter
/// (`core:rcv_requests`...), and a `ferrosip` group for ours.
fn statistics(methods: &Methods) -> Vec<Stat> {
    let mut stats = vec![
        counter("core", "rcv_requests", |s| &s.rcv_requests),
        counter("core", "rcv_replies", |s| &s.rcv_replies),
        gauge("core", "fwd_requests", |env| {
            let s = &env.engine.server.stats;
            s.forwarded
                .load(Relaxed)
                .saturating_sub(s.fwd_replies.load(Relaxed)) as i64
        }),
        counter("core", "fwd_replies", |s| &s.fwd_replies),
        // Requests answered 400/505 because they did not parse.
        counter("core", "err_requests", |s| &s.malformed_answered),
        counter("ferrosip", "received", |s| &s.received),
        counter("ferrosip", "malformed_dropped", |s| &s.malformed_dropped),
        counter("ferrosip", "oversized", |s| &s.oversized),
        counter("ferrosip", "replies_sent", |s| &s.replies_sent),
        counter("ferrosip", "panics", |s| &s.panics),
        counter("ferrosip", "suspended_routes", |s| &s.suspended),
    ];
    stats.push(gauge("tm", "active_transactions", |env| {
        env.engine
            .server
            .tm
            .as_ref()
            .map_or(0, |tm| tm.len() as i64)
    }));
    // usrloc's counts come from its own command (the module keeps them).
    if let Some(ul) = methods.get("ul.stats") {
        let ul = ul.clone();
        let sum = move |key: &'static str| {
            let ul = ul.clone();
            move |_: &CoreEnv| match ul.call_blocking(&[]) {
                Ok(RpcValue::Array(tables)) => tables
                    .iter()
                    .map(|t| match t {
                        RpcValue::Struct(m) => m
                            .iter()
                            .find(|(k, _)| k == key)
                            .and_then(|(_, v)| match v {
                                RpcValue::Int(i) => Some(*i),
                                _ => None,
                            })
                            .unwrap_or(0),
                        _ => 0,
                    })
                    .sum(),
                _ => 0,
            }
        };
        stats.push(gauge("usrloc", "registered_users", sum("records")));
        stats.push(gauge("usrloc", "location-users", sum("records")));
        stats.push(gauge("usrloc", "location-contacts", sum("contacts")));
    }
    stats
}

/// Which statistics a `stats.*` argument names: `all`, `group:` or `[group:]name`.
fn selects(stat: &Stat, which: &str) -> bool {
    if which == "all" {
        return true;
    }
    match which.split_once(':') {
        Some((g, "")) => g == stat.group,
        Some((g, n)) => g == stat.group && n == stat.name,
        None => which == stat.name,
    }
}

/// Adds the core commands to `methods` (after the modules' ones: system.listMethods
/// lists them all).
pub fn add_core(methods: &mut Methods, env: Arc<CoreEnv>) {
    let e = env.clone();
    methods.add(
        "core.uptime",
        "Time now, when the server started and the seconds since.",
        move |_| {
            Ok(RpcValue::Struct(vec![
                ("now".into(), RpcValue::Str(http_date(SystemTime::now()))),
                ("up_since".into(), RpcValue::Str(http_date(e.started_at))),
                (
                    "uptime".into(),
                    RpcValue::Int(e.started.elapsed().as_secs() as i64),
                ),
            ]))
        },
    );
    methods.add("core.version", "The server's version.", |_| {
        Ok(RpcValue::Str(VERSION.into()))
    });
    let e = env.clone();
    methods.add(
        "core.info",
        "Version, process id and the script generation running.",
        move |_| {
            Ok(RpcValue::Struct(vec![
                ("version".into(), RpcValue::Str(VERSION.into())),
                ("pid".into(), RpcValue::Int(i64::from(std::process::id()))),
                (
                    "script_generation".into(),
                    RpcValue::Int(e.engine.script.load().generation as i64),
                ),
                (
                    "workers".into(),
                    RpcValue::Int(e.engine.server.config.children as i64),
                ),
            ]))
        },
    );
    methods.add(
        "core.ps",
        "The server's threads: id and name of each (one process, many threads).",
        |_| {
            let mut out = Vec::new();
            let tasks = std::fs::read_dir("/proc/self/task")
                .map_err(|e| RpcError::failed(format!("cannot list threads: {e}")))?;
            let mut ids: Vec<i64> = tasks
                .filter_map(|t| t.ok()?.file_name().to_str()?.parse().ok())
                .collect();
            ids.sort_unstable();
            for id in ids {
                let name = std::fs::read_to_string(format!("/proc/self/task/{id}/comm"))
                    .unwrap_or_default();
                out.push(RpcValue::Int(id));
                out.push(RpcValue::Str(name.trim().to_string()));
            }
            Ok(RpcValue::Array(out))
        },
    );
    let e = env.clone();
    methods.add(
        "core.reload",
        "Compiles the routing script again and runs it for new messages (as SIGHUP); errors keep the running script and are answered with their locations.",
        move |_| match e.engine.reload_script() {
            Ok(report) => Ok(RpcValue::Struct(vec![
                ("generation".into(), RpcValue::Int(report.generation as i64)),
                ("routes".into(), RpcValue::Int(report.routes as i64)),
                (
                    "needs_restart".into(),
                    RpcValue::Array(report.needs_restart.into_iter().map(RpcValue::Str).collect()),
                ),
            ])),
            Err(errors) => Err(RpcError::failed(format!(
                "script not reloaded: {}",
                errors.join("; ")
            ))),
        },
    );
    let stats = Arc::new(statistics(methods));
    let (e, s) = (env.clone(), stats.clone());
    methods.add(
        "stats.get_statistics",
        "Statistics as \"group:name = value\": arguments all, group: or [group:]name.",
        move |args| {
            let which: Vec<String> = if args.is_empty() {
                vec!["all".into()]
            } else {
                (0..args.len()).filter_map(|i| arg_str(args, i)).collect()
            };
            let out: Vec<RpcValue> = s
                .iter()
                .filter(|st| which.iter().any(|w| selects(st, w)))
                .map(|st| RpcValue::Str(format!("{}:{} = {}", st.group, st.name, (st.read)(&e))))
                .collect();
            if out.is_empty() {
                return Err(RpcError::failed("Statistics Not Found"));
            }
            Ok(RpcValue::Array(out))
        },
    );
    let (e, s) = (env.clone(), stats);
    methods.add(
        "stats.reset_statistics",
        "Zeroes counters (gauges such as tm:active_transactions are not reset): arguments all, group: or [group:]name.",
        move |args| {
            let which: Vec<String> = (0..args.len()).filter_map(|i| arg_str(args, i)).collect();
            if which.is_empty() {
                return Err(RpcError::new(crate::json::INVALID_PARAMS, "give all, group: or name"));
            }
            let mut n = 0;
            for st in s.iter().filter(|st| which.iter().any(|w| selects(st, w))) {
                if let Some(field) = st.reset {
                    field(&e.engine.server.stats).store(0, Relaxed);
                    n += 1;
                }
            }
            if n == 0 {
                return Err(RpcError::failed("Statistics Not Found"));
            }
            Ok(RpcValue::Null)
        },
    );
    let e = env.clone();
    methods.add(
        "cfg.get",
        "A run-time config variable: cfg.get core debug.",
        move |args| {
            cfg_var(args)?;
            let log = e
                .log
                .as_ref()
                .ok_or_else(|| RpcError::failed("the log level cannot change in this server"))?;
            Ok(RpcValue::Int(log.get()))
        },
    );
    for (name, doc) in [
        (
            "cfg.seti",
            "Sets a run-time config variable to a number: cfg.seti core debug 3 (the log level, Kamailio's debug= values).",
        ),
        (
            "cfg.sets",
            "Sets a run-time config variable from text: cfg.sets core debug 3.",
        ),
    ] {
        let e = env.clone();
        methods.add(name, doc, move |args| {
            cfg_var(args)?;
            let value = args
                .get(2)
                .and_then(Value::as_int)
                .ok_or_else(|| RpcError::new(crate::json::INVALID_PARAMS, "give a number: debug levels are -5..3 (and 4 for trace)"))?;
            let log = e
                .log
                .as_ref()
                .ok_or_else(|| RpcError::failed("the log level cannot change in this server"))?;
            log.set(value).map_err(RpcError::failed)?;
            Ok(RpcValue::Null)
        });
    }
    // Listed last, they see every command above.
    let names: Vec<RpcValue> = methods
        .list()
        .map(|m| RpcValue::Str(m.name.clone()))
        .chain(
            ["system.listMethods", "system.methodHelp"]
                .into_iter()
                .map(|n| RpcValue::Str(n.into())),
        )
        .collect();
    let mut docs: std::collections::HashMap<String, String> = methods
        .list()
        .map(|m| (m.name.clone(), m.doc.clone()))
        .collect();
    docs.insert(
        "system.listMethods".into(),
        "Every RPC command served.".into(),
    );
    docs.insert(
        "system.methodHelp".into(),
        "The help text of a command: system.methodHelp NAME.".into(),
    );
    let mut sorted = names;
    sorted.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    methods.add(
        "system.listMethods",
        "Every RPC command served.",
        move |_| Ok(RpcValue::Array(sorted.clone())),
    );
    methods.add(
        "system.methodHelp",
        "The help text of a command: system.methodHelp NAME.",
        move |args| {
            let name = arg_str(args, 0)
                .ok_or_else(|| RpcError::new(crate::json::INVALID_PARAMS, "give a command name"))?;
            docs.get(&name)
                .map(|d| RpcValue::Str(d.clone()))
                .ok_or_else(|| RpcError::failed("Method Not Found"))
        },
    );
}

/// The only run-time variable today: `core debug`.
fn cfg_var(args: &[Value]) -> Result<(), RpcError> {
    match (arg_str(args, 0).as_deref(), arg_str(args, 1).as_deref()) {
        (Some("core"), Some("debug")) => Ok(()),
        (Some(g), Some(v)) => Err(RpcError::failed(format!(
            "unknown config variable {g}.{v} (only core debug changes at run time)"
        ))),
        _ => Err(RpcError::new(
            crate::json::INVALID_PARAMS,
            "give a group and a variable: core debug",
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_print_as_ctime_in_utc() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_524_117);
        assert_eq!(super::http_date(t), "Sun Dec  6 02:28:37 2026");
        assert_eq!(
            super::http_date(std::time::UNIX_EPOCH),
            "Thu Jan  1 00:00:00 1970"
        );
    }
}
