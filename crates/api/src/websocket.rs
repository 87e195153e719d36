//! The WebSocket transports (`listen=ws:`/`wss:`) as modules see them: the `websocket`
//! module's `$ws_conid`, `ws_close()` and `ws.*` RPC commands.

use crate::{ModuleParams, Proto, Value};
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Duration;

/// One open WebSocket connection, for `ws.dump`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsConnection {
    /// The connection's id (`$ws_conid`), unique while the server runs.
    pub id: u64,
    /// WS or WSS.
    pub proto: Proto,
    /// The client's address.
    pub peer: SocketAddr,
    /// Our end's address.
    pub local: SocketAddr,
    /// Seconds since the upgrade.
    pub age_secs: u64,
    /// Seconds since the client's last frame.
    pub idle_secs: u64,
}

/// The WebSocket transports' open connections.
pub trait WsControl: Send + Sync {
    /// The id of the `proto` connection from `peer` (a message's source), if it is open.
    fn connection_id(&self, proto: Proto, peer: SocketAddr) -> Option<u64>;

    /// The open connections, by id.
    fn connections(&self) -> Vec<WsConnection>;

    /// Closes connection `id` with a close frame of status `code` and `reason`; false
    /// when there is no such connection.
    fn close(&self, id: u64, code: u16, reason: &str) -> bool;
}

/// What a keep-alive is (`keepalive_mechanism`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keepalive {
    /// 0: none.
    None,
    /// 1: a ping, which the client answers with a pong.
    Ping,
    /// 2: an unsolicited pong (no answer expected).
    Pong,
}

/// The `websocket` module's parameters, as the transport uses them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsSettings {
    /// `keepalive_mechanism`.
    pub keepalive: Keepalive,
    /// `keepalive_timeout`: idle time after which a keep-alive is sent.
    pub keepalive_timeout: Duration,
    /// `keepalive_interval`: how often a connection checks whether it is due one.
    pub keepalive_interval: Duration,
    /// `ping_application_data`: the payload of our pings and pongs.
    pub ping_data: Bytes,
}

impl Default for WsSettings {
    fn default() -> WsSettings {
        WsSettings {
            keepalive: Keepalive::Ping,
            keepalive_timeout: Duration::from_secs(180),
            keepalive_interval: Duration::from_secs(1),
            ping_data: Bytes::from_static(b"Ferrosip"),
        }
    }
}

impl WsSettings {
    /// Reads and checks the `websocket` module's parameters.
    pub fn from_params(p: &ModuleParams) -> Result<WsSettings, String> {
        let d = WsSettings::default();
        let int = |name: &str, default: i64| p.get(name).as_int().unwrap_or(default);
        let keepalive = match int("keepalive_mechanism", 1) {
            0 => Keepalive::None,
            1 => Keepalive::Ping,
            2 => Keepalive::Pong,
            n => {
                return Err(format!(
                    "keepalive_mechanism {n}: 0 (none), 1 (ping) or 2 (pong)"
                ))
            }
        };
        let secs = |name: &str, default: Duration| -> Result<Duration, String> {
            match int(name, default.as_secs() as i64) {
                n if (1..=86_400).contains(&n) => Ok(Duration::from_secs(n as u64)),
                n => Err(format!("{name} {n}: 1 to 86400 seconds")),
            }
        };
        let ping_data = match p.get("ping_application_data") {
            Value::Null => d.ping_data.clone(),
            v => v.to_bytes().unwrap_or(d.ping_data.clone()),
        };
        // A control frame's payload is at most 125 bytes (RFC 6455 §5.5).
        if ping_data.len() > 125 {
            return Err("ping_application_data: at most 125 bytes".into());
        }
        match int("sub_protocols", 1) {
            1 => {}
            n => {
                return Err(format!(
                    "sub_protocols {n}: only 1 (sip) is available (MSRP over WebSocket is not)"
                ))
            }
        }
        Ok(WsSettings {
            keepalive,
            keepalive_timeout: secs("keepalive_timeout", d.keepalive_timeout)?,
            keepalive_interval: secs("keepalive_interval", d.keepalive_interval)?,
            ping_data,
        })
    }
}

/// An HTTP request received on a SIP TCP or TLS socket (Kamailio's `xhttp`), in the
/// extensions of the context `event_route[xhttp:request]` runs with. The context's
/// message is the request made SIP-shaped: its method and header lines as received,
/// a Request-URI naming the socket; `$hu` is [`HttpRequest::url`].
#[derive(Clone, Debug)]
pub struct HttpRequest {
    /// The request target as received (`/ws`, `/rpc?x=1`).
    pub url: Bytes,
}

/// The HTTP reply `xhttp_reply()` built, whole (status line, headers, body); sent once
/// the event route has ended, then the connection is closed.
#[derive(Clone, Debug)]
pub struct HttpReply(pub Bytes);

impl HttpReply {
    /// The whole HTTP/1.1 reply: status `code` (200 to 599), `reason`, a Content-Type
    /// unless `ctype` is empty, and `body`. It says the connection closes after it. An
    /// error for another status, or a reason or type that is not one clean line.
    pub fn build(code: i64, reason: &[u8], ctype: &[u8], body: &[u8]) -> Result<HttpReply, String> {
        use bytes::{BufMut, BytesMut};
        let clean = |b: &[u8]| !b.iter().any(|c| matches!(c, b'\r' | b'\n' | 0));
        if !(200..=599).contains(&code) {
            return Err(format!("status {code} must be 200 to 599"));
        }
        if !clean(reason) || !clean(ctype) {
            return Err("reason and content type must be one line".into());
        }
        let mut out = BytesMut::with_capacity(128 + body.len());
        out.put_slice(format!("HTTP/1.1 {code} ").as_bytes());
        out.put_slice(reason);
        out.put_slice(b"\r\nServer: Ferrosip\r\nConnection: close\r\n");
        if !ctype.is_empty() {
            out.put_slice(b"Content-Type: ");
            out.put_slice(ctype);
            out.put_slice(b"\r\n");
        }
        out.put_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        out.put_slice(body);
        Ok(HttpReply(out.freeze()))
    }
}

/// Set by `ws_handle_handshake()` once the request is a valid WebSocket upgrade offering
/// the `sip` subprotocol: the transport answers 101 and carries SIP over WebSocket on
/// the connection from then on.
#[derive(Clone, Copy, Debug)]
pub struct WsUpgrade;
