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
        m.doc("JSON-RPC 2.0 server for the RPC commands, over HTTP (xhttp), FIFO and unix datagram sockets.");
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
            "kamailio_rpc.fifo",
            "Path of the FIFO file (relative to the runtime directory).",
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
            "kamailio_rpc.sock",
            "Path of the datagram socket (relative to the runtime directory).",
        );
        m.param(
            "dgram_workers",
            ParamType::Int,
            1_i64,
            "Number of datagram worker processes.",
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
            "TCP socket address for JSON-RPC (\"tcp:host:port\").",
        );
        const REQ_EVENT: RouteMask = RouteMask::REQUEST.union(RouteMask::EVENT);
        #[rustfmt::skip]
        m.functions([
            FnRow::declared::<()>("jsonrpc_dispatch", &[], REQ_EVENT, "Executes the JSON-RPC request carried in the HTTP body and sends the HTTP reply; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("jsonrpc_exec", &["cmd"], RouteMask::ANY, "Executes a JSON-RPC request given as text and keeps the result in $jsonrpl; 1 on success, -1 on failure."),
        ]);
    }
}
