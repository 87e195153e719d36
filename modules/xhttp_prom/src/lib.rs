//! `xhttp_prom`: Prometheus metrics. Kamailio's module answers `/metrics` through xhttp
//! on a SIP port; Ferrosip has no xhttp server yet, so the metrics are served on an HTTP
//! listener of their own (`listen`). The module only declares the parameters; the
//! server's exporter (crates/metrics) reads them and serves the listener.

use ferrosip_api::{Module, ModuleBuilder, ParamType};

/// Where `/metrics` is served when `listen` is not set.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9090";

/// The `xhttp_prom` module.
pub struct XhttpPromModule;

impl Module for XhttpPromModule {
    fn name(&self) -> &'static str {
        "xhttp_prom"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Prometheus metrics (text format 0.0.4) at GET /metrics on an HTTP listener of its own: messages by method and reply class, active transactions, route-run latency, dispatcher destinations, usrloc contacts, panics caught.");
        m.param(
            "listen",
            ParamType::Str,
            DEFAULT_LISTEN,
            "Ferrosip: ADDRESS:PORT the metrics HTTP listener binds (Kamailio serves them on an xhttp SIP port). Default 127.0.0.1:9090; anything but a loopback address exposes the metrics to that network.",
        );
        m.param(
            "xhttp_prom_beginning",
            ParamType::Str,
            "ferrosip_",
            "Prefix of every metric name (Kamailio's default is \"kamailio_\").",
        );
    }
}
