//! Ferrosip's server runtime: binds the config's sockets, runs the route script for every
//! message, and implements the services script functions use to reply and forward.

// Layers, each calling only those below it: engine (the transports' sink) -> script
// (a program version) -> server (stateless services) -> tm -> outbound -> transport.
// `routes` runs a route for whichever layer needs one; `reload` builds a new script scope.
pub mod config;
mod digits;
pub mod dns;
pub mod engine;
pub mod guard;
pub mod myself;
pub mod outbound;
pub mod reload;
mod residency;
pub mod routes;
pub mod script;
pub mod server;
pub mod stats;
pub mod tm;
pub mod transport;
pub mod uac;

pub use config::{ConfigError, ServerConfig};
pub use engine::Engine;
pub use reload::{ReloadReport, Reloader};
pub use script::ScriptScope;
pub use server::Server;
pub use stats::Stats;
pub use transport::Listen;

use std::sync::Arc;

/// Something started with the server (the control interface): it gets the engine once
/// the modules are ready, before SIP traffic; what it returns lives until the server
/// stops.
pub type Attachment = Box<dyn FnOnce(&Arc<Engine>) -> Result<Box<dyn std::any::Any>, String>>;

/// Starts the server for a loaded config and blocks until SIGINT/SIGTERM; SIGHUP reloads
/// the script through `reloader` (a server without one logs that it cannot).
pub fn run(loaded: ferrosip_script::Loaded, reloader: Option<Reloader>) -> Result<(), String> {
    run_with(loaded, reloader, Vec::new())
}

/// [`run`], with `attachments` started before the SIP sockets take traffic.
pub fn run_with(
    loaded: ferrosip_script::Loaded,
    reloader: Option<Reloader>,
    attachments: Vec<Attachment>,
) -> Result<(), String> {
    run_with_lifecycle(loaded, reloader, attachments, Lifecycle::default())
}

/// What the process tells its service manager (sd_notify `READY=1`, `STOPPING=1`).
#[derive(Default)]
pub struct Lifecycle {
    /// Called once every socket is bound and its workers run.
    pub started: Option<Box<dyn FnOnce()>>,
    /// Called when a stop signal came, before modules stop.
    pub stopping: Option<Box<dyn FnOnce()>>,
}

/// [`run_with`], telling `lifecycle` when the server is up and when it stops.
pub fn run_with_lifecycle(
    loaded: ferrosip_script::Loaded,
    reloader: Option<Reloader>,
    attachments: Vec<Attachment>,
    mut lifecycle: Lifecycle,
) -> Result<(), String> {
    let mut config = ServerConfig::from_globals(&loaded.globals).map_err(|e| e.to_string())?;
    fit_open_files(&mut config.tcp);
    let http = http_filters(&loaded)?;
    if http.is_some() && loaded.modules.contains_key("websocket") {
        carry_websockets(&mut config.listen);
    }
    // Module I/O (database pools, expiry timers) and route runs that await it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.children.clamp(2, 8))
        .thread_name("async")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let signals = register_signals(&runtime);
    runtime.block_on(run_start_hooks(&loaded, runtime.handle()))?;
    let udp = Arc::new(
        transport::udp::UdpTransport::bind(&config.listen, config.udp_buffer)
            .map_err(|e| format!("cannot bind UDP: {e}"))?,
    );
    let tcp = Arc::new(
        transport::tcp::TcpTransport::<Engine>::bind(&config.listen, config.tcp)
            .map_err(|e| format!("cannot bind TCP: {e}"))?,
    );
    let config_dir = reloader
        .as_ref()
        .and_then(|r| r.path().parent().map(std::path::Path::to_path_buf));
    let tls = start_tls(&loaded, &config, config_dir.as_deref())?;
    let websockets = bind_websockets(&loaded, &config, tls.as_ref())?;
    if let Some((url_match, url_skip)) = http {
        use transport::Transport;
        let carrier = |proto: ferrosip_api::Proto| {
            websockets
                .iter()
                .flat_map(|(_, list)| list)
                .find(|ws| ws.proto() == proto)
                .map(|ws| Arc::new(ws.carrier()))
        };
        let side = |ws: Option<Arc<transport::ws::Carrier>>| {
            Arc::new(transport::http::HttpSide {
                url_match: url_match.clone(),
                url_skip: url_skip.clone(),
                ws,
            })
        };
        tcp.serve_http(side(carrier(ferrosip_api::Proto::Ws)));
        if let Some(tls) = &tls {
            tls.serve_http(side(carrier(ferrosip_api::Proto::Wss)));
        }
    }
    let mut transports = transport::Transports::default();
    transports.add(udp.clone());
    transports.add(tcp.clone());
    if let Some(tls) = &tls {
        transports.add(tls.clone());
        transports.tls = Some(tls.control());
    }
    if let Some((table, list)) = &websockets {
        for ws in list {
            transports.add(ws.clone());
        }
        transports.websocket = Some(table.clone());
    }
    let engine = assemble(
        &loaded,
        config,
        transports,
        runtime.handle().clone(),
        Layers::default(),
        reloader,
    );
    let server = engine.server.clone();
    run_ready_hooks(&loaded, &engine);
    let attached = attachments
        .into_iter()
        .map(|attach| attach(&engine))
        .collect::<Result<Vec<_>, String>>()?;
    if let Some(tm) = &server.tm {
        tm.start_timer_thread()
            .map_err(|e| format!("cannot start the timer thread: {e}"))?;
    }
    let _tcp = tcp
        .start(&engine, server.config.children)
        .map_err(|e| format!("cannot start TCP: {e}"))?;
    let _tls = match &tls {
        Some(tls) => Some(
            tls.start(&engine, server.config.children)
                .map_err(|e| format!("cannot start TLS: {e}"))?,
        ),
        None => None,
    };
    let _websockets = websockets
        .iter()
        .flat_map(|(_, list)| list)
        .map(|ws| ws.start(&engine, server.config.children))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot start WebSocket: {e}"))?;
    let _udp = udp
        .start(&engine, server.config.children, &server.runtime)
        .map_err(|e| format!("cannot start workers: {e}"))?;
    log_sockets(&server.config);
    tracing::info!(workers = server.config.children, "Ferrosip started");
    residency::release_startup_pages();
    if let Some(started) = lifecycle.started.take() {
        started();
    }
    wait_for_signal(&runtime, signals, &engine);
    if let Some(stopping) = lifecycle.stopping.take() {
        stopping();
    }
    let s = &server.stats;
    use std::sync::atomic::Ordering::Relaxed;
    tracing::info!(
        received = s.received.load(Relaxed),
        forwarded = s.forwarded.load(Relaxed),
        replies = s.replies_sent.load(Relaxed),
        malformed_answered = s.malformed_answered.load(Relaxed),
        malformed_dropped = s.malformed_dropped.load(Relaxed),
        open_transactions = server.tm.as_ref().map_or(0, |tm| tm.len()),
        suspended_routes = s.suspended.load(Relaxed),
        loops = s.loops.load(Relaxed),
        overloaded = s.overloaded.load(Relaxed),
        panics = s.panics.load(Relaxed),
        "Ferrosip stopping"
    );
    drop(attached);
    let unfinished = runtime.block_on(ferrosip_api::run_stop_hooks(
        &loaded.stop_hooks,
        runtime.handle().clone(),
        ferrosip_api::STOP_HOOKS_LIMIT,
    ));
    for module in unfinished {
        tracing::warn!(
            module,
            limit_s = ferrosip_api::STOP_HOOKS_LIMIT.as_secs(),
            "module {module}: its stop hook did not finish in time, stopping without it"
        );
    }
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(())
}

/// The TLS transport, when the script loads the `tls` module: its profiles loaded (a bad
/// certificate or profile file stops the start) and its sockets bound.
fn start_tls(
    loaded: &ferrosip_script::Loaded,
    config: &ServerConfig,
    config_dir: Option<&std::path::Path>,
) -> Result<Option<Arc<transport::tls::TlsTransport<Engine>>>, String> {
    let wants_listen = config
        .listen
        .iter()
        .any(|l| l.proto == ferrosip_api::Proto::Tls);
    let Some(params) = loaded.modules.get("tls") else {
        if wants_listen {
            return Err(
                "listen=tls: needs loadmodule \"tls.so\" (its certificates and profiles)".into(),
            );
        }
        return Ok(None);
    };
    let settings = transport::tls_config::TlsSettings::from_params(params, config_dir)
        .map_err(|e| format!("tls: {e}"))?;
    let state = transport::tls::TlsState::new(settings).map_err(|e| format!("tls: {e}"))?;
    let mut limits = config.tcp;
    limits.max_connections = config.tls_max_connections;
    let tls = transport::tls::TlsTransport::bind(&config.listen, limits, Arc::new(state))
        .map_err(|e| format!("cannot bind TLS: {e}"))?;
    Ok(Some(Arc::new(tls)))
}

/// `xhttp`'s URL filters (`url_match`, `url_skip`) when the module is loaded: HTTP
/// requests on the TCP and TLS sockets then run `event_route[xhttp:request]`.
#[allow(clippy::type_complexity)]
fn http_filters(
    loaded: &ferrosip_script::Loaded,
) -> Result<Option<(Option<regex::bytes::Regex>, Option<regex::bytes::Regex>)>, String> {
    let Some(params) = loaded.modules.get("xhttp") else {
        return Ok(None);
    };
    let regex = |name: &str| -> Result<Option<regex::bytes::Regex>, String> {
        let re = params.string(name);
        if re.is_empty() {
            return Ok(None);
        }
        regex::bytes::Regex::new(&re)
            .map(Some)
            .map_err(|e| format!("xhttp: {name}: {e}"))
    };
    Ok(Some((regex("url_match")?, regex("url_skip")?)))
}

/// Kamailio's WebSocket over `tcp`/`tls` sockets (`xhttp` and `websocket` loaded): each
/// `tcp` socket gets a `ws` side and each `tls` socket a `wss` one, at the same address.
/// Nothing more is bound (see [`transport::ws::Carrier`]); the sides are what requests
/// to WebSocket clients leave from and what their Via and Record-Route name.
fn carry_websockets(listen: &mut Vec<transport::Listen>) {
    use ferrosip_api::Proto;
    let mut sides = Vec::new();
    for l in listen.iter() {
        let proto = match l.proto {
            Proto::Tcp => Proto::Ws,
            Proto::Tls => Proto::Wss,
            _ => continue,
        };
        if !listen.iter().any(|o| o.proto == proto && o.addr == l.addr) {
            sides.push(transport::Listen::new(proto, l.addr, l.advertise.clone()));
        }
    }
    listen.extend(sides);
}

/// The WS and WSS transports of the `listen=ws:`/`wss:` sockets, which need the
/// `websocket` module (its keep-alive parameters) and, for WSS, the `tls` module's
/// profiles; with the table of their connections. None without such a socket.
#[allow(clippy::type_complexity)]
fn bind_websockets(
    loaded: &ferrosip_script::Loaded,
    config: &ServerConfig,
    tls: Option<&Arc<transport::tls::TlsTransport<Engine>>>,
) -> Result<
    Option<(
        Arc<transport::ws::WsTable>,
        Vec<Arc<transport::ws::WsTransport<Engine>>>,
    )>,
    String,
> {
    use ferrosip_api::Proto;
    let table = Arc::new(transport::ws::WsTable::default());
    let mut out = Vec::new();
    for proto in [Proto::Ws, Proto::Wss] {
        if !config.listen.iter().any(|l| l.proto == proto) {
            continue;
        }
        let name = proto.name();
        let params = loaded.modules.get("websocket").ok_or_else(|| {
            format!("listen={name}: needs loadmodule \"websocket.so\" (its keep-alive parameters)")
        })?;
        let settings = ferrosip_api::websocket::WsSettings::from_params(params)
            .map_err(|e| format!("websocket: {e}"))?;
        let mut limits = config.tcp;
        let tls_state = if proto == Proto::Wss {
            let tls = tls.ok_or_else(|| {
                "listen=wss: needs loadmodule \"tls.so\" (its certificates and profiles)"
                    .to_string()
            })?;
            limits.max_connections = config.tls_max_connections;
            Some(tls.control())
        } else {
            None
        };
        let ws = transport::ws::WsTransport::bind(
            proto,
            &config.listen,
            (limits, settings),
            tls_state,
            table.clone(),
        )
        .map_err(|e| format!("cannot bind {}: {e}", name.to_uppercase()))?;
        out.push(Arc::new(ws));
    }
    Ok((!out.is_empty()).then_some((table, out)))
}

/// Runs the modules' start hooks (database pools, timers), in load order, before
/// anything takes traffic; the first failure names its module.
pub async fn run_start_hooks(
    loaded: &ferrosip_script::Loaded,
    runtime: &tokio::runtime::Handle,
) -> Result<(), String> {
    for (module, hook) in &loaded.start_hooks {
        let params = loaded.modules.get(module).cloned().unwrap_or_default();
        let env = ferrosip_api::StartEnv {
            params: &params,
            runtime: runtime.clone(),
        };
        hook(&env)
            .await
            .map_err(|e| format!("module {module}: {e}"))?;
    }
    Ok(())
}

/// Hands the modules' ready hooks the engine's services, once it is assembled.
pub fn run_ready_hooks(loaded: &ferrosip_script::Loaded, engine: &Arc<Engine>) {
    let services = engine.clone() as Arc<dyn ferrosip_api::Services>;
    for (_, hook) in &loaded.ready_hooks {
        hook(&services);
    }
}

/// What [`assemble`] can be given instead of the server's defaults: the seams a script
/// test (`ferrosip test`) runs the real engine through.
#[derive(Default)]
pub struct Layers {
    /// The clock of transaction timers ([`tm::Clock::system`] by default; with a manual
    /// clock nobody starts the timer thread: the owner fires timers).
    pub clock: tm::Clock,
    /// Told of every route run.
    pub observer: Option<Arc<dyn routes::RouteObserver>>,
    /// DNS answers instead of the system resolver, for next hops.
    pub dns: Option<dns::DnsTable>,
}

/// The server's layers, bottom up, over `transports`: outbound, tm (when the script
/// loads it), local requests, the server and the engine running `loaded`'s program.
/// Nothing is started: no socket reads and no timer thread runs yet.
pub fn assemble(
    loaded: &ferrosip_script::Loaded,
    config: ServerConfig,
    transports: transport::Transports,
    runtime: tokio::runtime::Handle,
    layers: Layers,
    reloader: Option<Reloader>,
) -> Arc<Engine> {
    let mut transports = transports;
    transports.set_taps(loaded.message_taps.clone());
    let mut outbound = outbound::Outbound::new(
        transports,
        config.listen.clone(),
        loaded.branch_hooks.clone(),
    );
    let protocols = outbound.protocols();
    let resolver = match layers.dns {
        Some(table) => Some(dns::Resolver::from_table(table, protocols)),
        None => match dns::Resolver::new(config.dns.clone(), protocols) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!("host names will not resolve: {e}");
                None
            }
        },
    };
    if let Some(resolver) = resolver {
        outbound = outbound.with_resolver(Arc::new(resolver), runtime.clone());
    }
    let outbound = Arc::new(outbound);
    let stats = Arc::new(Stats::default());
    let tm = loaded.modules.get("tm").map(|params| {
        let env = tm::TmEnv {
            outbound: outbound.clone(),
            stats: stats.clone(),
            runtime: runtime.clone(),
            max_branches: config.max_branches,
            observers: loaded.tm_observers.clone().into(),
            clock: layers.clock,
            onsend_route_reply: config.onsend_route_reply,
        };
        Arc::new(tm::TmLayer::new(Some(params), env))
    });
    let server = Arc::new(Server {
        config,
        uac: Arc::new(uac::LocalRequests::new(outbound.clone(), runtime.clone())),
        outbound,
        stats,
        tm,
        runtime,
        observer: layers.observer,
        json_rpc: std::sync::OnceLock::new(),
    });
    Arc::new(Engine {
        script: arc_swap::ArcSwap::new(ScriptScope::new(loaded.program.clone(), 1, server.clone())),
        reloader,
        server,
    })
}

/// The sockets and the names that are ours, as Kamailio lists them at start.
/// Descriptors kept for what is not a TCP connection: sockets, database pools, log and
/// list files.
const OTHER_FILES: u64 = 512;

/// Raises the open-file limit to what `tcp_max_connections` needs; where the hard limit
/// is lower, lowers the connection limit to fit and says so, so that accepts, outbound
/// connections and database reconnects do not start failing near the limit instead.
fn fit_open_files(tcp: &mut transport::tcp::TcpLimits) {
    let needed = tcp.max_connections as u64 + OTHER_FILES;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    if lim.rlim_cur >= needed {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: needed.min(lim.rlim_max),
        rlim_max: lim.rlim_max,
    };
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        lim.rlim_cur = raised.rlim_cur;
    }
    if lim.rlim_cur < needed {
        let fits = lim.rlim_cur.saturating_sub(OTHER_FILES).max(16) as usize;
        tracing::warn!(
            tcp_max_connections = tcp.max_connections,
            open_file_limit = lim.rlim_cur,
            "the open-file limit is below what tcp_max_connections needs: at most {fits} TCP connections"
        );
        tcp.max_connections = fits;
    }
}

fn log_sockets(config: &ServerConfig) {
    if config.listen_discovered {
        tracing::info!("no listen= in the config: listening on every interface address");
    }
    for l in &config.listen {
        match &l.advertise {
            Some((h, p)) => tracing::info!(
                "listening on {}:{} advertise {h}:{p}",
                l.proto.name(),
                l.addr
            ),
            None => tracing::info!("listening on {}:{}", l.proto.name(), l.addr),
        }
    }
    for (name, port) in config.myself.names() {
        match port {
            Some(p) => tracing::info!("alias {name}:{p}"),
            None => tracing::info!("alias {name}"),
        }
    }
}

/// The signals the server answers. Registered before the sockets are bound: a SIGHUP
/// sent as soon as the ports answer must reload, not end the process (SIGHUP's default).
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

fn register_signals(runtime: &tokio::runtime::Runtime) -> Signals {
    use tokio::signal::unix::{signal, SignalKind};
    let _in_runtime = runtime.enter();
    Signals {
        term: signal(SignalKind::terminate()).ok(),
        hup: signal(SignalKind::hangup()).ok(),
    }
}

/// Blocks until SIGINT or SIGTERM; each SIGHUP reloads the script meanwhile.
fn wait_for_signal(runtime: &tokio::runtime::Runtime, mut signals: Signals, engine: &Engine) {
    async fn next(s: Option<&mut tokio::signal::unix::Signal>) {
        match s {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    }
    runtime.block_on(async {
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return,
                _ = next(signals.term.as_mut()) => return,
                _ = next(signals.hup.as_mut()) => {
                    tracing::info!("SIGHUP received: reloading the script");
                    // Outcomes (and every error, located) are logged by the reload.
                    let _ = engine.reload_script();
                }
            }
        }
    });
}

#[cfg(test)]
mod layering {
    /// The crate's modules from the top layer down; a module may use only those after it.
    const LAYERS: &[(&str, &str)] = &[
        ("engine", include_str!("engine.rs")),
        ("reload", include_str!("reload.rs")),
        ("script", include_str!("script.rs")),
        ("server", include_str!("server.rs")),
        ("uac", include_str!("uac.rs")),
        ("tm", include_str!("tm.rs")),
        ("routes", include_str!("routes.rs")),
        ("stats", include_str!("stats.rs")),
        ("outbound", include_str!("outbound.rs")),
        ("config", include_str!("config.rs")),
        ("myself", include_str!("myself.rs")),
        ("dns", include_str!("dns.rs")),
        ("transport", include_str!("transport/mod.rs")),
        ("guard", include_str!("guard.rs")),
    ];

    /// The layers call downward only: no `crate::x` in a module names one above it
    /// (transport's submodules reach their parent as `super::`, inside the layer).
    #[test]
    fn no_module_imports_a_layer_above_it() {
        let mut upward = Vec::new();
        for (rank, (name, text)) in LAYERS.iter().enumerate() {
            for (line_no, line) in text.lines().enumerate() {
                for used in line.split("crate::").skip(1) {
                    let target: String = used
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    let Some(target_rank) = LAYERS.iter().position(|(n, _)| *n == target) else {
                        continue;
                    };
                    if target_rank <= rank && target != *name {
                        upward.push(format!("{name}.rs:{}: {}", line_no + 1, line.trim()));
                    }
                }
            }
        }
        assert!(upward.is_empty(), "upward imports:\n{}", upward.join("\n"));
    }
}
