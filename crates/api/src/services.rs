//! What the running server offers to functions that send messages or ask about the
//! server itself. The server puts an implementation in [`MsgContext::services`]; without
//! one (tests, `ferrosip check`) such functions fail with a clear error.

use crate::context::{MsgContext, Proto};
use crate::error::FnError;
use crate::registry::BoxFuture;
use bytes::Bytes;
use std::time::Duration;

/// A destination given explicitly (`forward("10.0.0.1", 5070)`), else `$du` / the R-URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Host name or IP address.
    pub host: Bytes,
    /// The port; the protocol's default (or DNS) when none.
    pub port: Option<u16>,
    /// The transport; as the URI or the socket says when none.
    pub proto: Option<Proto>,
}

/// Hosts a module makes local beyond the server's sockets and aliases (Kamailio's
/// `register_check_self_func`, used by the `domain` module's `register_myself`): `myself`
/// and `is_myself()` match them on any port. A module offers it with
/// `m.provide(Arc::new(LocalHosts(...)))`; the compiler keeps it in the program.
#[derive(Clone)]
pub struct LocalHosts(pub std::sync::Arc<IsLocalHost>);

/// Whether a host (as written in a URI, brackets removed) is local.
pub type IsLocalHost = dyn Fn(&[u8]) -> bool + Send + Sync;

impl LocalHosts {
    /// Whether `host` names this server (the `myself` test the provider answers).
    pub fn is_local(&self, host: &[u8]) -> bool {
        (self.0)(host)
    }
}

/// Services of the running server.
pub trait Services: Send + Sync {
    /// Sends a stateless reply to the request being processed (`sl_send_reply`), with the
    /// headers queued by `append_to_reply` ([`ReplyHeaders`]) and a To-tag of the server's.
    fn reply(&self, ctx: &mut MsgContext, code: u16, reason: &[u8]) -> Result<(), FnError>;

    /// Forwards the message statelessly (`forward()`): a request to `target` or to `$du` /
    /// the R-URI, with our Via on top; a reply to the address in its second Via.
    fn forward(&self, ctx: &mut MsgContext, target: Option<Target>) -> Result<(), FnError>;

    /// For a stateless forward of a request whose next hop (`target`, else `$du` / the
    /// R-URI) is a host name not in the DNS cache: a future that looks it up and gives the
    /// hop as an address, to [`Services::forward`] to once it is ready (the route waits
    /// for it without holding a worker). `None`: forward at once.
    fn forward_lookup(
        &self,
        _ctx: &MsgContext,
        _target: Option<&Target>,
    ) -> Option<BoxFuture<'static, Result<Target, FnError>>> {
        None
    }

    /// Whether `host[:port]` is this server (listen addresses, aliases).
    fn is_myself(&self, host: &[u8], port: Option<u16>) -> bool;

    /// The transaction layer (`tm`), when the server runs one.
    fn transactions(&self) -> Option<&dyn crate::tm::Transactions> {
        None
    }

    /// Sends a request the server originates itself (a keepalive probe, a notification)
    /// on a client transaction of its own, retransmitted as RFC 3261 §17.1.2 says; the
    /// future resolves once with the final outcome. Needs no `tm` module.
    fn send_request(
        &self,
        _request: LocalRequest,
    ) -> Result<BoxFuture<'static, LocalOutcome>, FnError> {
        Err(FnError::new(
            "sending requests of its own needs a running server",
        ))
    }

    /// Sends `data` as it is (no SIP processing) over `proto` to `dst`, from the listen
    /// socket bound to `local` when given: NAT keepalive packets, which must leave from
    /// the socket a phone registered through so that its NAT binding stays open.
    fn send_raw(
        &self,
        _proto: Proto,
        _local: Option<std::net::SocketAddr>,
        _dst: std::net::SocketAddr,
        _data: Bytes,
    ) -> Result<(), FnError> {
        Err(FnError::new("sending packets needs a running server"))
    }

    /// Runs `event_route[name]` (e.g. `dispatcher:dst-down`) for `ctx` on the server's
    /// runtime, without waiting for it; `false` when the script has no such route.
    fn run_event_route(&self, _name: &str, _ctx: MsgContext) -> bool {
        false
    }

    /// The addresses of a host name (A/AAAA) as the server's resolver knows them now,
    /// without waiting: `None` when not known yet, in which case the lookup is started and
    /// a later call finds its answer (kept for the records' TTL). An IP address is its own
    /// answer. An empty list: the name does not resolve.
    fn cached_addresses(&self, host: &str) -> Option<Vec<std::net::IpAddr>> {
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()
            .map(|ip| vec![ip])
    }

    /// The TLS transport, when the server runs one (`listen=tls:...`).
    fn tls(&self) -> Option<std::sync::Arc<dyn crate::tls::TlsControl>> {
        None
    }

    /// The WebSocket transports' connections, when the server runs a `listen=ws:` or
    /// `listen=wss:` socket.
    fn websocket(&self) -> Option<std::sync::Arc<dyn crate::websocket::WsControl>> {
        None
    }

    /// The control interface's commands over JSON-RPC, when `jsonrpcs` is loaded
    /// (`jsonrpc_dispatch()`, `jsonrpc_exec()`).
    fn json_rpc(&self) -> Option<std::sync::Arc<dyn crate::jsonrpc::JsonRpc>> {
        None
    }
}

/// A request generated by the server (not proxied): what [`Services::send_request`]
/// builds it from. CSeq, From tag, Via and Max-Forwards are the server's, and the
/// Call-ID unless one is given.
#[derive(Clone, Debug, Default)]
pub struct LocalRequest {
    /// `OPTIONS`, `INFO`, ...
    pub method: Bytes,
    /// The Request-URI.
    pub uri: Bytes,
    /// Where to send it instead of the Request-URI's host (an outbound proxy), like `$du`.
    pub dst_uri: Option<Bytes>,
    /// The From URI.
    pub from: Bytes,
    /// The To URI; the Request-URI when empty.
    pub to: Bytes,
    /// Extra header lines, each ending in CRLF.
    pub headers: Bytes,
    /// The body (with a Content-Type among `headers`).
    pub body: Bytes,
    /// How long to wait for a final reply (`None`: tm's `fr_timer`, 30 s by default).
    pub timeout: Option<Duration>,
    /// The dialog the request belongs to (the BYEs the `dialog` module sends): its
    /// Call-ID, tags and CSeq replace the fresh ones of the server's. Route headers go in
    /// `headers`, the first hop in `dst_uri`.
    pub in_dialog: Option<InDialog>,
    /// The Call-ID to use (`$uac_req(callid)`); the server makes one up when `None`.
    pub call_id: Option<Bytes>,
    /// The CSeq number of a request outside a dialog (10 when `None`): the REGISTERs of
    /// one binding share a Call-ID and count up (RFC 3261 §10.2).
    pub cseq: Option<u32>,
}

/// The identifiers of an established dialog, as seen by the side a [`LocalRequest`]
/// speaks for: its From tag is that side's tag.
#[derive(Clone, Debug, Default)]
pub struct InDialog {
    /// The dialog's Call-ID.
    pub call_id: Bytes,
    /// The tag of the side the request is sent for (written in From).
    pub from_tag: Bytes,
    /// The tag of the side the request goes to (written in To).
    pub to_tag: Bytes,
    /// The CSeq number to use.
    pub cseq: u32,
}

/// How a [`LocalRequest`] ended: the final reply's status, or one the server made up
/// (`local`): 408 when nothing answered in time, 503 when it could not be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalOutcome {
    /// The final status code.
    pub code: u16,
    /// Its reason phrase.
    pub reason: Bytes,
    /// Made up by the server (408, 503), not received.
    pub local: bool,
    /// The final reply as received (empty when `local`): a 401/407's challenge, a
    /// REGISTER's granted expiry.
    pub reply: Bytes,
}

impl LocalOutcome {
    /// An outcome the server decided without a reply from the peer.
    pub fn local(code: u16, reason: &'static str) -> LocalOutcome {
        LocalOutcome {
            code,
            reason: Bytes::from_static(reason.as_bytes()),
            local: true,
            reply: Bytes::new(),
        }
    }
}

/// Headers to add to the next locally generated reply (`append_to_reply`), each line
/// ending in CRLF.
#[derive(Clone, Debug, Default)]
pub struct ReplyHeaders(
    /// The header lines, each ending in CRLF.
    pub Vec<u8>,
);

/// Per-message choices that change how the server forwards or replies.
#[derive(Clone, Copy, Debug, Default)]
pub struct ForwardFlags {
    /// `force_rport()`: act as if the top Via had `;rport` (RFC 3581).
    pub force_rport: bool,
    /// `add_local_rport()`: put `;rport` in the Via the server adds.
    pub local_rport: bool,
}

/// Marks that the script's `maxfwd` functions handled Max-Forwards, so `forward()` does not
/// decrement it a second time.
#[derive(Clone, Copy, Debug, Default)]
pub struct MaxForwardsDone;

/// A message about to leave, as `onsend_route` sees it (Kamailio's onsend info): attached
/// to the route's context by the server, read by `$snd(...)`, `$sndto(...)`,
/// `$sndfrom(...)` and the `snd_*`/`to_*` keywords. Its bytes are exactly what goes on
/// the wire; the context's message is the request before the server's own edits (Via,
/// Max-Forwards), so changing it there changes nothing that is sent.
#[derive(Clone, Debug)]
pub struct SendInfo {
    /// The transport it leaves over.
    pub proto: Proto,
    /// The local socket it leaves from.
    pub local: std::net::SocketAddr,
    /// Where it goes.
    pub dst: std::net::SocketAddr,
    /// The bytes sent.
    pub buf: Bytes,
}
