//! SIP over WebSocket (RFC 7118): `listen=ws:` and `listen=wss:` sockets, and connections
//! upgraded on `tcp`/`tls` sockets (Kamailio's `xhttp` + `ws_handle_handshake()`, see
//! [`Carrier`]). A runtime of its own per protocol, one task per connection. A connection starts as HTTP: the upgrade is
//! accepted only when the client offers the `sip` subprotocol (`Sec-WebSocket-Protocol`),
//! which the answer names. After it, each text or binary frame carries one whole SIP
//! message (no Content-Length framing), and each message we send goes out as one frame
//! (text when it is UTF-8, binary otherwise).
//!
//! A WebSocket client cannot be connected to (it has no listening socket): requests and
//! replies to it go over the connection it opened, found by its address as for TCP
//! (RFC 7118 §5: the registrar keeps the address the client registered from, see
//! `docs/websocket.md`). Sending to an address without an open connection fails.
//!
//! Limits: the TCP ones (`tcp_max_msg_size` is also the largest frame and message, a
//! larger one closes the connection with status 1009; `tcp_connection_lifetime` closes
//! a connection with no frame for that long; `tcp_conn_wq_max`; `tcp_msg_read_timeout`
//! for the HTTP upgrade, and for WSS the TLS handshake before it), `tcp_max_connections`
//! for WS and `tls_max_connections` for WSS. Keep-alives as the `websocket` module's
//! parameters say ([`WsSettings`]): a ping (or an unsolicited pong) on a connection
//! idle for `keepalive_timeout`, checked every `keepalive_interval`; any frame the
//! client sends, its pongs included, keeps the connection open.

use super::tcp::{forget, queue_on_open, ConnHandle, Shared, Slot, TcpLimits};
use super::tls::{handshake_accepted, TlsState};
use super::{ConnectionId, Inbound, Listen, Sink, Transport};
use bytes::Bytes;
use ferrosip_api::websocket::{Keepalive, WsConnection, WsControl, WsSettings};
use ferrosip_api::{FnError, Proto};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;

/// The open WebSocket connections of both transports (WS and WSS), by id: what
/// `$ws_conid`, `ws_close()` and the `ws.*` RPC commands see.
#[derive(Default)]
pub struct WsTable {
    next_id: AtomicU64,
    open: Mutex<OpenTable>,
}

#[derive(Default)]
struct OpenTable {
    by_id: HashMap<u64, OpenWs>,
    by_peer: HashMap<(Proto, SocketAddr), u64>,
}

struct OpenWs {
    proto: Proto,
    peer: SocketAddr,
    local: SocketAddr,
    control: Arc<ConnControl>,
}

/// What a connection's task shares with the table: when it started, its last frame,
/// and a close asked for by `ws_close()` or `ws.close`.
struct ConnControl {
    since: Instant,
    /// Milliseconds from `since` to the client's last frame.
    last_frame_ms: AtomicU64,
    close: Notify,
    close_with: Mutex<Option<(u16, String)>>,
}

impl ConnControl {
    fn saw_frame(&self) {
        let ms = self.since.elapsed().as_millis() as u64;
        self.last_frame_ms.store(ms, Ordering::Relaxed);
    }
}

impl WsTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, OpenTable> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn opened(&self, proto: Proto, peer: SocketAddr, local: SocketAddr) -> (u64, Arc<ConnControl>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let control = Arc::new(ConnControl {
            since: Instant::now(),
            last_frame_ms: AtomicU64::new(0),
            close: Notify::new(),
            close_with: Mutex::new(None),
        });
        let mut t = self.lock();
        t.by_id.insert(
            id,
            OpenWs {
                proto,
                peer,
                local,
                control: control.clone(),
            },
        );
        t.by_peer.insert((proto, peer), id);
        (id, control)
    }

    fn closed(&self, id: u64) {
        let mut t = self.lock();
        if let Some(c) = t.by_id.remove(&id) {
            if t.by_peer.get(&(c.proto, c.peer)) == Some(&id) {
                t.by_peer.remove(&(c.proto, c.peer));
            }
        }
    }
}

impl WsControl for WsTable {
    fn connection_id(&self, proto: Proto, peer: SocketAddr) -> Option<u64> {
        self.lock().by_peer.get(&(proto, peer)).copied()
    }

    fn connections(&self) -> Vec<WsConnection> {
        let mut list: Vec<WsConnection> = self
            .lock()
            .by_id
            .iter()
            .map(|(id, c)| {
                let age = c.control.since.elapsed();
                let last = Duration::from_millis(c.control.last_frame_ms.load(Ordering::Relaxed));
                WsConnection {
                    id: *id,
                    proto: c.proto,
                    peer: c.peer,
                    local: c.local,
                    age_secs: age.as_secs(),
                    idle_secs: age.saturating_sub(last).as_secs(),
                }
            })
            .collect();
        list.sort_by_key(|c| c.id);
        list
    }

    fn close(&self, id: u64, code: u16, reason: &str) -> bool {
        let Some(control) = self.lock().by_id.get(&id).map(|c| c.control.clone()) else {
            return false;
        };
        *control.close_with.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((code, reason.to_string()));
        control.close.notify_one();
        true
    }
}

/// Whether a `Sec-WebSocket-Protocol` value offers `sip` (a comma-separated token list).
fn offers_sip(value: &[u8]) -> bool {
    value
        .split(|c| *c == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"sip"))
}

/// The WS or WSS listeners and open connections.
pub struct WsTransport<S: Sink> {
    proto: Proto,
    shared: Arc<Shared>,
    settings: Arc<WsSettings>,
    /// The TLS profiles, for WSS.
    tls: Option<Arc<TlsState>>,
    table: Arc<WsTable>,
    listeners: Mutex<Vec<std::net::TcpListener>>,
    addrs: Vec<SocketAddr>,
    /// Set by [`WsTransport::start`]; weak: the sink owns the transports.
    running: OnceLock<Weak<S>>,
}

impl<S: Sink> WsTransport<S> {
    /// Binds every `proto` (WS or WSS) listen socket of `listen`. WSS needs `tls`, the TLS
    /// profiles its handshakes use. `table` lists the connections (one for both).
    pub fn bind(
        proto: Proto,
        listen: &[Listen],
        (limits, settings): (TcpLimits, WsSettings),
        tls: Option<Arc<TlsState>>,
        table: Arc<WsTable>,
    ) -> std::io::Result<WsTransport<S>> {
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        // A ws (wss) socket at the address of a tcp (tls) one is that socket's WebSocket
        // side (its connections upgrade there, see [`Carrier`]): nothing to bind.
        let under = if proto == Proto::Wss {
            Proto::Tls
        } else {
            Proto::Tcp
        };
        let carried = |l: &Listen| listen.iter().any(|o| o.proto == under && o.addr == l.addr);
        for l in listen.iter().filter(|l| l.proto == proto && !carried(l)) {
            let s = std::net::TcpListener::bind(l.addr)?;
            s.set_nonblocking(true)?;
            addrs.push(s.local_addr()?);
            listeners.push(s);
        }
        Ok(WsTransport {
            proto,
            shared: Arc::new(Shared::new(proto, limits)),
            settings: Arc::new(settings),
            tls,
            table,
            listeners: Mutex::new(listeners),
            addrs,
            running: OnceLock::new(),
        })
    }

    /// Serves connections upgraded on the TCP (WS) or TLS (WSS) sockets.
    pub fn carrier(&self) -> Carrier {
        Carrier {
            shared: self.shared.clone(),
            settings: self.settings.clone(),
            table: self.table.clone(),
        }
    }

    /// Connections open now (those still in their handshake included).
    pub fn open_connections(&self) -> usize {
        self.shared.open()
    }

    /// Starts the runtime (`threads` workers) and the listeners.
    pub fn start(
        &self,
        sink: &Arc<S>,
        threads: usize,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let listeners =
            std::mem::take(&mut *self.listeners.lock().unwrap_or_else(|e| e.into_inner()));
        let name = self.proto.name();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(name)
            .enable_all()
            .build()?;
        let _ = self.running.set(Arc::downgrade(sink));
        let accepting = Accepting {
            sink: sink.clone(),
            shared: self.shared.clone(),
            settings: self.settings.clone(),
            tls: self.tls.clone(),
            table: self.table.clone(),
        };
        std::thread::Builder::new()
            .name(format!("{name}-main"))
            .spawn(move || {
                rt.block_on(async move {
                    let mut tasks = Vec::new();
                    for l in listeners {
                        tasks.push(tokio::spawn(accepting.clone().accept(l)));
                    }
                    drop(accepting);
                    for t in tasks {
                        let _ = t.await;
                    }
                });
            })
    }
}

/// What the accepting task gives each connection.
struct Accepting<S: Sink> {
    sink: Arc<S>,
    shared: Arc<Shared>,
    settings: Arc<WsSettings>,
    tls: Option<Arc<TlsState>>,
    table: Arc<WsTable>,
}

impl<S: Sink> Clone for Accepting<S> {
    fn clone(&self) -> Self {
        Accepting {
            sink: self.sink.clone(),
            shared: self.shared.clone(),
            settings: self.settings.clone(),
            tls: self.tls.clone(),
            table: self.table.clone(),
        }
    }
}

impl<S: Sink> Accepting<S> {
    async fn accept(self, l: std::net::TcpListener) {
        let proto = self.shared.proto.name();
        let listener = match tokio::net::TcpListener::from_std(l) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "{proto} listener failed");
                return;
            }
        };
        let local = listener.local_addr().ok();
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let Some(slot) = self.shared.admit() else {
                        tracing::debug!(peer = %peer, "{proto} connection refused: connection limit");
                        drop(stream);
                        continue;
                    };
                    let local = local.unwrap_or(peer);
                    let counted = self.sink.clone();
                    let task = self.clone().serve(slot, stream, peer, local);
                    tokio::spawn(crate::guard::guarded(
                        move || counted.on_panic(),
                        "websocket connection",
                        task,
                    ));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "{proto} accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// The TLS handshake (WSS), the HTTP upgrade, then the frames.
    async fn serve(
        self,
        slot: Slot,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
        local: SocketAddr,
    ) {
        let _ = stream.set_nodelay(true);
        let limit = self.shared.limits.msg_read_timeout;
        match self.tls.clone() {
            None => self.upgrade(slot, stream, peer, local).await,
            Some(state) => {
                let Some((tls, info)) =
                    handshake_accepted(&state, stream, peer, local, limit).await
                else {
                    return;
                };
                self.upgrade(slot, tls, peer, local).await;
                state.closed(peer, &info);
            }
        }
    }

    async fn upgrade<St>(self, slot: Slot, stream: St, peer: SocketAddr, local: SocketAddr)
    where
        St: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    {
        let proto = self.shared.proto.name();
        let limits = self.shared.limits;
        let check = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
            let offered = req
                .headers()
                .get_all("sec-websocket-protocol")
                .iter()
                .any(|v| offers_sip(v.as_bytes()));
            if !offered {
                let mut refusal = ErrorResponse::new(Some(
                    "this server speaks the sip WebSocket subprotocol only\n".into(),
                ));
                *refusal.status_mut() = StatusCode::BAD_REQUEST;
                return Err(refusal);
            }
            resp.headers_mut()
                .insert("sec-websocket-protocol", HeaderValue::from_static("sip"));
            Ok(resp)
        };
        let config = ws_config(&limits);
        let handshake =
            tokio_tungstenite::accept_hdr_async_with_config(stream, check, Some(config));
        let ws = match tokio::time::timeout(limits.msg_read_timeout, handshake).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                tracing::debug!(peer = %peer, error = %e, "{proto} upgrade refused or failed");
                return;
            }
            Err(_) => {
                tracing::debug!(peer = %peer, "{proto} upgrade not done within tcp_msg_read_timeout");
                return;
            }
        };
        let carrier = Carrier {
            shared: self.shared,
            settings: self.settings,
            table: self.table,
        };
        carrier.serve(self.sink, slot, ws, peer, local).await;
    }
}

/// The frames' limits: `tcp_max_msg_size` for a frame and a message, the write buffer
/// after `tcp_conn_wq_max`.
fn ws_config(limits: &TcpLimits) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(limits.write_queue_max.max(4096) * 2)
        .max_message_size(Some(limits.max_msg_size))
        .max_frame_size(Some(limits.max_msg_size))
}

/// What serves a WebSocket connection once upgraded: the WS or WSS transport's table of
/// connections (sends find the client there), its keep-alive settings and the list
/// `ws.dump` shows. Connections accepted on `listen=ws:`/`wss:` sockets use it, and so do
/// those upgraded on a `tcp`/`tls` socket by `ws_handle_handshake()`.
pub struct Carrier {
    shared: Arc<Shared>,
    settings: Arc<WsSettings>,
    table: Arc<WsTable>,
}

impl Carrier {
    /// WS or WSS.
    pub fn proto(&self) -> Proto {
        self.shared.proto
    }

    /// Takes over a connection whose HTTP upgrade was answered `101`: `taken` is what was
    /// read after the upgrade request (frames the client sent at once). `slot` is the
    /// connection's place in its listener's count, kept while it lives.
    pub(super) async fn upgraded<S, St>(
        &self,
        sink: Arc<S>,
        slot: Slot,
        stream: St,
        taken: Vec<u8>,
        (peer, local): (SocketAddr, SocketAddr),
    ) where
        S: Sink,
        St: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    {
        let config = ws_config(&self.shared.limits);
        let ws = tokio_tungstenite::WebSocketStream::from_partially_read(
            stream,
            taken,
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            Some(config),
        )
        .await;
        self.serve(sink, slot, ws, peer, local).await;
    }

    async fn serve<S, St>(
        &self,
        sink: Arc<S>,
        slot: Slot,
        ws: tokio_tungstenite::WebSocketStream<St>,
        peer: SocketAddr,
        local: SocketAddr,
    ) where
        S: Sink,
        St: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    {
        let proto = self.shared.proto;
        let (id, control) = self.table.opened(proto, peer, local);
        serve_frames(
            (sink.clone(), self.shared.clone(), slot),
            ws,
            (peer, local),
            &self.settings,
            &control,
        )
        .await;
        self.table.closed(id);
        // Kamailio's event_route[websocket:closed], when the script has one.
        sink.on_ws_closed(proto, peer, local);
    }
}

/// Why a connection ended.
#[derive(Debug)]
enum Closed {
    /// The client closed it (a close frame, or the socket).
    Peer,
    Idle,
    WriteQueue,
    /// A frame or message over `tcp_max_msg_size`.
    TooBig,
    /// A protocol error or a failed write.
    Broken(String),
    /// `ws_close()` or `ws.close`, with this status and reason.
    Asked(u16, String),
}

/// Whether a frame is only line ends: a CRLF keep-alive some clients send (RFC 5626
/// §3.5.1 style) rather than a SIP message.
fn is_crlf_keepalive(frame: &[u8]) -> bool {
    !frame.is_empty() && frame.iter().all(|c| *c == b'\r' || *c == b'\n')
}

/// One open WebSocket connection: its frames in, what is queued for it out, keep-alives.
async fn serve_frames<S, St>(
    (sink, shared, _slot): (Arc<S>, Arc<Shared>, Slot),
    ws: tokio_tungstenite::WebSocketStream<St>,
    (peer, local): (SocketAddr, SocketAddr),
    settings: &WsSettings,
    control: &ConnControl,
) where
    S: Sink,
    St: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let proto = shared.proto;
    let limits = shared.limits;
    let (conn, mut rx) = ConnHandle::new();
    shared.conns().insert(peer, conn.clone());
    let (mut wr, mut rd) = ws.split();
    let mut worker = sink.worker();
    let mut last_frame = Instant::now();
    let mut last_keepalive = Instant::now();
    let mut tick = tokio::time::interval(settings.keepalive_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let keepalive = settings.keepalive != Keepalive::None;
    let closed = loop {
        let idle_deadline = last_frame + limits.lifetime;
        tokio::select! {
            frame = rd.next() => {
                let data = match frame {
                    Some(Ok(Message::Text(t))) => Bytes::from(t),
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                        last_frame = Instant::now();
                        control.saw_frame();
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | None => break Closed::Peer,
                    Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(e))) => {
                        tracing::debug!(peer = %peer, error = %e, "{} frame over tcp_max_msg_size", proto.name());
                        break Closed::TooBig;
                    }
                    Some(Err(e)) => break Closed::Broken(e.to_string()),
                };
                last_frame = Instant::now();
                control.saw_frame();
                if is_crlf_keepalive(&data) {
                    if data.len() >= 4 {
                        conn.push(Bytes::from_static(b"\r\n"), limits.write_queue_max);
                    }
                    continue;
                }
                let inbound = Inbound {
                    bytes: data,
                    source: peer,
                    local,
                    proto,
                    connection: Some(ConnectionId(peer)),
                };
                sink.on_message(&mut worker, inbound);
            }
            out = rx.recv() => {
                let Some(data) = out else { break Closed::Broken("queue closed".into()) };
                let len = data.len();
                let frame = match tokio_tungstenite::tungstenite::Utf8Bytes::try_from(data.clone()) {
                    Ok(text) => Message::Text(text),
                    Err(_) => Message::Binary(data),
                };
                if let Err(e) = wr.send(frame).await {
                    break Closed::Broken(e.to_string());
                }
                conn.queued.fetch_sub(len, Ordering::AcqRel);
            }
            _ = tick.tick(), if keepalive => {
                let due = last_frame.max(last_keepalive) + settings.keepalive_timeout;
                if Instant::now() >= due {
                    last_keepalive = Instant::now();
                    let data = settings.ping_data.clone();
                    let frame = match settings.keepalive {
                        Keepalive::Pong => Message::Pong(data),
                        _ => Message::Ping(data),
                    };
                    if let Err(e) = wr.send(frame).await {
                        break Closed::Broken(e.to_string());
                    }
                }
            }
            () = tokio::time::sleep_until(idle_deadline) => break Closed::Idle,
            () = conn.close.notified() => break Closed::WriteQueue,
            () = control.close.notified() => {
                let asked = control.close_with.lock().unwrap_or_else(|e| e.into_inner()).take();
                let (code, reason) = asked.unwrap_or((1000, String::new()));
                break Closed::Asked(code, reason);
            }
        }
    };
    forget(&shared, peer, &conn);
    let (code, reason) = match &closed {
        Closed::Peer => (CloseCode::Normal, ""),
        Closed::Idle => (CloseCode::Away, "idle"),
        Closed::WriteQueue => (CloseCode::Policy, "write queue full"),
        Closed::TooBig => (CloseCode::Size, "message too big"),
        Closed::Broken(_) => (CloseCode::Protocol, ""),
        Closed::Asked(code, reason) => (CloseCode::from(*code), reason.as_str()),
    };
    match &closed {
        Closed::WriteQueue => tracing::warn!(
            peer = %peer,
            tcp_conn_wq_max = limits.write_queue_max,
            "{} peer does not read its messages: write queue full, connection closed",
            proto.name()
        ),
        Closed::Broken(why) => {
            tracing::debug!(peer = %peer, error = %why, "{} connection broken", proto.name())
        }
        other => {
            tracing::debug!(peer = %peer, reason = ?other, "{} connection closed", proto.name())
        }
    }
    if !matches!(closed, Closed::Broken(_)) {
        let bye = Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = wr.send(bye).await;
            let _ = wr.close().await;
        })
        .await;
    }
}

impl<S: Sink> Transport for WsTransport<S> {
    fn proto(&self) -> Proto {
        self.proto
    }

    fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Queues `data` on the client's open connection; there is no connecting to a
    /// WebSocket client.
    fn send(
        &self,
        _local: Option<SocketAddr>,
        dst: SocketAddr,
        data: Bytes,
    ) -> Result<(), FnError> {
        if self.running.get().is_none() {
            return Err(FnError::new(format!(
                "{} is not running",
                self.proto.name()
            )));
        }
        match queue_on_open(&self.shared, dst, data)? {
            None => Ok(()),
            Some(_) => Err(FnError::new(format!(
                "no {} connection from {dst} (a WebSocket client is reached only over the connection it opened)",
                self.proto.name()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sip_subprotocol_is_found_in_a_list() {
        assert!(offers_sip(b"sip"));
        assert!(offers_sip(b"msrp, SIP"));
        assert!(!offers_sip(b"sips"));
        assert!(!offers_sip(b""));
    }

    #[test]
    fn crlf_frames_are_keepalives() {
        assert!(is_crlf_keepalive(b"\r\n\r\n"));
        assert!(!is_crlf_keepalive(b""));
        assert!(!is_crlf_keepalive(b"OPTIONS"));
    }
}
