//! Ferrosip's server runtime: binds the config's sockets, runs the route script for every
//! message, and implements the services script functions use to reply and forward.

pub mod config;
pub mod server;
pub mod tm;
pub mod transport;
pub mod uac;

pub use config::{ConfigError, Listen, ServerConfig};
pub use server::{Server, Stats};

use std::sync::Arc;

/// Starts the server for a loaded config and blocks until SIGINT/SIGTERM.
pub fn run(loaded: ferrosip_script::Loaded) -> Result<(), String> {
    let config = ServerConfig::from_globals(&loaded.globals).map_err(|e| e.to_string())?;
    // Module I/O (database pools, expiry timers) and route runs that await it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.children.clamp(2, 8))
        .thread_name("async")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    for (module, hook) in &loaded.start_hooks {
        let params = loaded.modules.get(module).cloned().unwrap_or_default();
        let env = ferrosip_api::StartEnv {
            params: &params,
            runtime: runtime.handle().clone(),
        };
        runtime
            .block_on(hook(&env))
            .map_err(|e| format!("module {module}: {e}"))?;
    }
    let sockets = transport::bind_udp(&config.listen, config.udp_buffer)
        .map_err(|e| format!("cannot bind UDP: {e}"))?;
    let script_awaits = loaded
        .program
        .calls
        .iter()
        .any(|c| matches!(c.def.call, ferrosip_api::Callable::Async(_)));
    let server = Arc::new(Server {
        program: loaded.program.clone(),
        config,
        sockets,
        tcp: transport::TcpRegistry::default(),
        stats: Stats::default(),
        tm: loaded.modules.get("tm").map(|p| tm::TmLayer::new(Some(p))),
        uac: uac::LocalRequests::default(),
        self_ref: std::sync::OnceLock::new(),
        runtime: runtime.handle().clone(),
        script_awaits,
    });
    let _ = server.self_ref.set(Arc::downgrade(&server));
    let services = server.clone() as Arc<dyn ferrosip_api::Services>;
    for (_, hook) in &loaded.ready_hooks {
        hook(&services);
    }
    if server.tm.is_some() {
        tm::TmLayer::start_timer_thread(&server)
            .map_err(|e| format!("cannot start the timer thread: {e}"))?;
    }
    let _tcp = transport::start_tcp(&server).map_err(|e| format!("cannot start TCP: {e}"))?;
    let _udp =
        transport::spawn_udp_workers(&server).map_err(|e| format!("cannot start workers: {e}"))?;
    for l in &server.config.listen {
        tracing::info!(proto = l.proto.name(), address = %l.addr, "listening");
    }
    tracing::info!(workers = server.config.children, "Ferrosip started");
    wait_for_signal();
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
        "Ferrosip stopping"
    );
    for (_, hook) in &loaded.stop_hooks {
        hook(runtime.handle());
    }
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(())
}

fn wait_for_signal() {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => loop {
            std::thread::park();
        },
    };
    rt.block_on(async {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(t) => t,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        // SIGHUP is reserved for reload: received and ignored for now.
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return,
                _ = term.recv() => return,
                _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending::<()>().await } } => {
                    tracing::info!("SIGHUP received: reload is not available yet");
                }
            }
        }
    });
}
