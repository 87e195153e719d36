//! `jsonrpcs`: JSON-RPC 2.0 server for the RPC commands, over HTTP (xhttp), FIFO and unix datagram sockets.

use bytes::Bytes;
use ferrosip_api::registry::FnRow;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask, Value};

/// The `jsonrpcs` module.
pub struct JsonrpcsModule;

impl Module for JsonrpcsModule {
    fn name(&self) -> &'static str {
        "jsonrpcs"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("JSON-RPC 2.0 server for the RPC commands over a FIFO (kamctl's transport) and a unix datagram socket, served by the control interface (crates/ctl) with every RPC command the loaded modules declare; HTTP goes through xhttp's event route and jsonrpc_dispatch().");
        // The control interface reads these parameters when the server starts; this
        // check refuses values it could not serve at load time, with the config's location.
        m.on_init(|p| {
            let transport = p.int("transport");
            if !(0..=15).contains(&transport) {
                return Err(format!(
                    "transport {transport}: give 0 (all) or a sum of 1 HTTP, 2 FIFO, 4 datagram, 8 TCP"
                ));
            }
            let wants = |bit: i64| transport == 0 || transport & bit != 0;
            if wants(2) && p.string("fifo_name").trim().is_empty() {
                return Err("fifo_name is empty while the FIFO transport is on".into());
            }
            if wants(4) && p.string("dgram_socket").trim().is_empty() {
                return Err("dgram_socket is empty while the datagram transport is on".into());
            }
            Ok(())
        });
        m.param(
            "pretty_format",
            ParamType::Int,
            1_i64,
            "When 1, JSON replies are indented.",
        );
        m.param(
            "transport",
            ParamType::Int,
            6_i64,
            "Bit mask of transports: 1 HTTP, 2 FIFO, 4 datagram, 8 TCP socket.",
        );
        m.param(
            "fifo_name",
            ParamType::Str,
            "ferrosip_rpc.fifo",
            "Path of the FIFO file (a relative name is in /run/ferrosip; kamctl's RPCFIFOPATH names it).",
        );
        m.param(
            "fifo_mode",
            ParamType::Int,
            432_i64,
            "Permissions of the FIFO file (0660).",
        );
        m.param(
            "fifo_group",
            ParamType::Str,
            Value::Null,
            "Group owning the FIFO file.",
        );
        m.param(
            "fifo_user",
            ParamType::Str,
            Value::Null,
            "User owning the FIFO file.",
        );
        m.param(
            "fifo_reply_dir",
            ParamType::Str,
            "/tmp/",
            "Directory of FIFO reply files.",
        );
        m.param(
            "dgram_socket",
            ParamType::Str,
            "ferrosip_rpc.sock",
            "Path of the datagram socket (a relative name is in /run/ferrosip).",
        );
        m.param(
            "dgram_workers",
            ParamType::Int,
            1_i64,
            "Number of datagram worker processes (one task serves the socket; other values are logged).",
        );
        m.param(
            "dgram_timeout",
            ParamType::Int,
            2000_i64,
            "Milliseconds to wait when sending a datagram reply.",
        );
        m.param(
            "dgram_mode",
            ParamType::Int,
            432_i64,
            "Permissions of the datagram socket (0660).",
        );
        m.param(
            "dgram_group",
            ParamType::Str,
            Value::Null,
            "Group owning the datagram socket.",
        );
        m.param(
            "dgram_user",
            ParamType::Str,
            Value::Null,
            "User owning the datagram socket.",
        );
        m.param(
            "tcp_socket",
            ParamType::Str,
            "",
            "TCP socket address for JSON-RPC: not served (the server refuses to start when it is set); the ctl socket takes JSON-RPC over tcp:ADDRESS:PORT.",
        );
        const REQ_EVENT: RouteMask = RouteMask::REQUEST.union(RouteMask::EVENT);
        #[rustfmt::skip]
        m.functions([
            FnRow::declared::<()>("jsonrpc_dispatch", &[], REQ_EVENT, "Executes the JSON-RPC request carried in the HTTP body and sends the HTTP reply; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("jsonrpc_exec", &["cmd"], RouteMask::ANY, "Executes a JSON-RPC request given as text and keeps the result in $jsonrpl; 1 on success, -1 on failure."),
        ]);
    }
}
