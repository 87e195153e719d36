//! Ferrosip's Prometheus exporter, configured as Kamailio's `xhttp_prom` module:
//! `GET /metrics` answers the text exposition format (version 0.0.4). Kamailio serves it
//! through xhttp on a SIP port; Ferrosip has no xhttp server, so the exporter has a small
//! HTTP/1.1 listener of its own ([`http`]), on 127.0.0.1:9090 unless `listen` says
//! otherwise. The binary starts it through [`attach`] and it stops with the server.

pub mod http;
pub mod render;

use ferrosip_api::{ModuleParams, Registry};
use ferrosip_ctl::Methods;
use ferrosip_server::Engine;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// Where and how the metrics are served, from xhttp_prom's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Prefix of every metric name (`xhttp_prom_beginning`).
    pub prefix: String,
}

/// A valid Prometheus metric name prefix: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn valid_prefix(p: &str) -> bool {
    let mut bytes = p.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

impl Settings {
    /// From xhttp_prom's parameters (`None`: the module is not loaded, nothing served).
    pub fn from_params(params: Option<&ModuleParams>) -> Result<Option<Settings>, String> {
        let Some(p) = params else {
            return Ok(None);
        };
        let listen = p.string("listen");
        let listen = listen.trim().parse().map_err(|_| {
            format!("xhttp_prom listen {listen:?}: give ADDRESS:PORT (e.g. 127.0.0.1:9090)")
        })?;
        let prefix = p.string("xhttp_prom_beginning");
        if !valid_prefix(&prefix) {
            return Err(format!(
                "xhttp_prom xhttp_prom_beginning {prefix:?}: a metric name prefix is letters, digits, '_' and ':' and does not start with a digit"
            ));
        }
        Ok(Some(Settings { listen, prefix }))
    }
}

/// What a scrape reads: the engine's counters and the modules' RPC commands (usrloc and
/// dispatcher keep their own state; their commands are how it is read from outside).
pub struct Sources {
    pub engine: Arc<Engine>,
    pub methods: Methods,
    pub started: Instant,
}

/// The running listener; dropping it stops serving.
pub struct Exporter {
    task: tokio::task::JoinHandle<()>,
    /// The address bound (the port is known even when `listen` gave port 0).
    pub local: SocketAddr,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the server calls once its modules are ready: binds the listener when
/// xhttp_prom is loaded (`None` when it is not). A listener that cannot bind fails the
/// start, naming the address.
pub fn attach(
    engine: &Arc<Engine>,
    registry: &Registry,
    params: Option<&ModuleParams>,
) -> Result<Option<Exporter>, String> {
    let Some(settings) = Settings::from_params(params)? else {
        return Ok(None);
    };
    let sources = Arc::new(Sources {
        engine: engine.clone(),
        methods: Methods::from_registry(registry),
        started: Instant::now(),
    });
    let runtime = engine.server.runtime.clone();
    let _in_runtime = runtime.enter();
    let std_listener = std::net::TcpListener::bind(settings.listen).map_err(|e| {
        format!(
            "xhttp_prom: cannot bind the metrics listener {}: {e}",
            settings.listen
        )
    })?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    let local = std_listener.local_addr().map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::from_std(std_listener).map_err(|e| e.to_string())?;
    tracing::info!("Prometheus metrics at http://{local}/metrics");
    let task = tokio::spawn(http::serve(listener, sources, Arc::from(settings.prefix)));
    Ok(Some(Exporter { task, local }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_follow_prometheus_names() {
        assert!(valid_prefix("ferrosip_"));
        assert!(valid_prefix("kamailio:"));
        assert!(!valid_prefix(""));
        assert!(!valid_prefix("1x"));
        assert!(!valid_prefix("a-b"));
    }
}
