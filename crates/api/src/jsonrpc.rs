//! The control interface's commands as a script reaches them: `jsonrpcs`'
//! `jsonrpc_dispatch()` (the JSON-RPC request in an HTTP body, from
//! `event_route[xhttp:request]`) and `jsonrpc_exec()`. The control interface lives above
//! the modules; it gives the server this handle when `jsonrpcs` is loaded, and functions
//! reach it through [`crate::Services::json_rpc`].

use crate::registry::BoxFuture;

/// What one JSON-RPC request gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonRpcReply {
    /// 200 when the command ran; 400 for a request that is not JSON-RPC; 500 when the
    /// command failed or is unknown (Kamailio's `$jsonrpl(code)`).
    pub code: u16,
    /// `OK`, or the error's message (`$jsonrpl(text)`).
    pub text: String,
    /// The response document (`$jsonrpl(body)`); empty for a notification, which has
    /// no response.
    pub body: String,
}

/// Runs JSON-RPC 2.0 requests against every command the control interface serves.
pub trait JsonRpc: Send + Sync {
    /// Runs the request document `request` (one JSON object, as a client sends it).
    fn execute(&self, request: bytes::Bytes) -> BoxFuture<'static, JsonRpcReply>;
}
