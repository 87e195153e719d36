//! `ctl`: the control socket. Kamailio's BINRPC (what `kamcmd` speaks) and, on the same
//! socket, JSON-RPC (what `ferrosip ctl` speaks). The module only declares the parameters;
//! the server's control interface (crates/ctl) reads them and serves the sockets.

use ferrosip_api::{Module, ModuleBuilder, ParamType, Value};

/// Where the control socket listens when `binrpc` is not set.
pub const DEFAULT_SOCKET: &str = "unix:/run/ferrosip/ferrosip_ctl";

/// The `ctl` module.
pub struct CtlModule;

impl Module for CtlModule {
    fn name(&self) -> &'static str {
        "ctl"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Control socket for kamcmd (Kamailio's BINRPC) and `ferrosip ctl` (JSON-RPC on the same socket): every RPC command the loaded modules declare, plus the core ones (core.*, system.*, stats.*, cfg.*).");
        m.repeatable_param(
            "binrpc",
            ParamType::Str,
            "Socket to listen on: unix:/path (stream) or tcp:host:port; repeat for more. Default unix:/run/ferrosip/ferrosip_ctl (its directory is created).",
        );
        m.param(
            "mode",
            ParamType::Int,
            0o600_i64,
            "Permissions of the unix socket file (octal in the config, e.g. 0660).",
        );
        m.param(
            "user",
            ParamType::Str,
            Value::Null,
            "User (name or uid) owning the unix socket file.",
        );
        m.param(
            "group",
            ParamType::Str,
            Value::Null,
            "Group (name or gid) owning the unix socket file.",
        );
        m.param(
            "fifo",
            ParamType::Str,
            Value::Null,
            "Kamailio's old text FIFO protocol of ctl: not served (the server refuses to start when it is set); use jsonrpcs' fifo_name.",
        );
        m.param(
            "max_clients",
            ParamType::Int,
            16_i64,
            "Ferrosip: connections served at once on all control sockets; more are closed at once.",
        );
        m.param(
            "read_timeout",
            ParamType::Int,
            5000_i64,
            "Ferrosip: milliseconds a client may take to send a whole request (and stay idle between requests) before it is disconnected.",
        );
        m.param(
            "max_request_size",
            ParamType::Int,
            65536_i64,
            "Ferrosip: largest request accepted in bytes (BINRPC or JSON); a larger one gets an error and the connection is closed.",
        );
    }
}
