//! TCP: a tokio runtime of its own with one task per connection. Replies go back on the
//! connection their request came on, and requests to a destination reuse an open
//! connection (RFC 3261 §18).
//!
//! Every resource a peer can make us hold has a limit ([`TcpLimits`]): the number of
//! connections, the bytes queued for a peer that does not read, the time a message may
//! take to arrive (slowloris), the idle time of a connection (refreshed by whole messages
//! and keep-alives, not by single bytes), and the size of a message. Framing costs time
//! linear in the bytes received: the header section is searched for its end only in the
//! bytes that are new, and once it is complete the message's length is kept.

use super::{raw_error_reply, ConnectionId, Inbound, Listen, Sink, Transport};
use bytes::{Bytes, BytesMut};
use ferrosip_api::{FnError, Proto};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

/// What one peer may hold, with Kamailio's parameter names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpLimits {
    /// `tcp_max_msg_size`: largest message accepted.
    pub max_msg_size: usize,
    /// `tcp_connection_lifetime`: a connection with no whole message (or keep-alive) in
    /// this time is closed.
    pub lifetime: Duration,
    /// `tcp_max_connections`: open connections, accepted and opened by us together;
    /// connections past it are closed as soon as they are accepted.
    pub max_connections: usize,
    /// `tcp_conn_wq_max`: bytes queued for one connection and not yet taken by the
    /// kernel; a peer that lets more pile up (it does not read) is disconnected.
    pub write_queue_max: usize,
    /// `tcp_msg_read_timeout`: time from a message's first byte to its last.
    pub msg_read_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> TcpLimits {
        TcpLimits {
            max_msg_size: 65536,
            lifetime: Duration::from_secs(120),
            max_connections: 2048,
            write_queue_max: 32 * 1024,
            msg_read_timeout: Duration::from_secs(20),
        }
    }
}

/// A write the socket has not taken for this long means the peer is not reading (its
/// receive window and our send buffer are full): only then does `tcp_conn_wq_max` count,
/// as in Kamailio, where the limit is on what waits beyond the kernel's buffer. A busy
/// connection whose writer is merely behind (a trunk at thousands of messages a second
/// on a loaded machine) is not a slow reader.
const WRITE_STALL: Duration = Duration::from_millis(200);
/// Past this many times `tcp_conn_wq_max` a connection is closed whatever its writer is
/// doing: the bound on what one connection may hold.
const HARD_QUEUE_FACTOR: usize = 64;

/// Milliseconds since the first call: a clock for the writers' stall stamps.
fn mono_ms() -> u64 {
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
        + 1
}

/// The writing end of one connection, as senders see it.
#[derive(Clone)]
pub(super) struct ConnHandle {
    tx: mpsc::UnboundedSender<Bytes>,
    /// Bytes handed to the writer and not yet written to the socket.
    pub(super) queued: Arc<AtomicUsize>,
    /// When the write in progress began ([`mono_ms`]); 0 while the writer waits for data.
    pub(super) writing_since: Arc<AtomicU64>,
    /// Wakes the connection's reader to close it (write queue over its limit).
    pub(super) close: Arc<Notify>,
}

impl ConnHandle {
    pub(super) fn new() -> (ConnHandle, mpsc::UnboundedReceiver<Bytes>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = ConnHandle {
            tx,
            queued: Arc::default(),
            writing_since: Arc::default(),
            close: Arc::default(),
        };
        (handle, rx)
    }

    /// Whether the socket has refused bytes for [`WRITE_STALL`] (the peer does not read).
    fn stalled(&self) -> bool {
        let since = self.writing_since.load(Ordering::Acquire);
        since != 0 && mono_ms().saturating_sub(since) >= WRITE_STALL.as_millis() as u64
    }

    /// Queues `data`; false when the connection is gone or its queue would pass `max`
    /// while the peer does not read (or `max` many times over), and the connection is
    /// then told to close.
    pub(super) fn push(&self, data: Bytes, max: usize) -> bool {
        let len = data.len();
        let queued = self.queued.fetch_add(len, Ordering::AcqRel) + len;
        if queued > max && (queued > max.saturating_mul(HARD_QUEUE_FACTOR) || self.stalled()) {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            self.close.notify_one();
            return false;
        }
        if self.tx.send(data).is_err() {
            self.queued.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        true
    }
}

type Connections = Mutex<HashMap<SocketAddr, ConnHandle>>;

/// What every connection task of one stream transport (TCP, TLS) shares.
pub(super) struct Shared {
    pub(super) conns: Connections,
    /// Connections open now (accepted and opened by us).
    open: AtomicUsize,
    pub(super) limits: TcpLimits,
    /// The transport, for the logs.
    pub(super) proto: Proto,
    /// Set once the connection limit has been reached, so that it is logged once as a
    /// warning (each refusal is logged at debug level).
    limit_warned: AtomicBool,
    /// HTTP on this transport's connections (`xhttp` loaded, TCP and TLS only): without
    /// it an HTTP request is a framing error, as any non-SIP bytes.
    pub(super) http: OnceLock<Arc<super::http::HttpSide>>,
}

impl Shared {
    pub(super) fn new(proto: Proto, limits: TcpLimits) -> Shared {
        Shared {
            conns: Mutex::default(),
            open: AtomicUsize::new(0),
            limits,
            proto,
            limit_warned: AtomicBool::new(false),
            http: OnceLock::new(),
        }
    }

    pub(super) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    pub(super) fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, ConnHandle>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a connection slot; `None` at the limit.
    pub(super) fn admit(self: &Arc<Self>) -> Option<Slot> {
        let max = self.limits.max_connections;
        let taken = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if taken {
            Some(Slot(self.clone()))
        } else {
            if !self.limit_warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    max_connections = max,
                    "{} connection limit reached: new connections are closed",
                    self.proto.name()
                );
            }
            None
        }
    }
}

/// One open connection's place in the count, given back when the connection ends.
pub(super) struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The TCP listeners and open connections, by remote address.
pub struct TcpTransport<S: Sink> {
    shared: Arc<Shared>,
    listeners: Mutex<Vec<std::net::TcpListener>>,
    addrs: Vec<SocketAddr>,
    /// Set by [`TcpTransport::start`]: where connection tasks run, and the sink that
    /// connections we open hand their messages to. Weak: the sink owns the transports.
    running: OnceLock<(tokio::runtime::Handle, Weak<S>)>,
}

impl<S: Sink> TcpTransport<S> {
    /// Binds every TCP listen socket of `listen`.
    pub fn bind(listen: &[Listen], limits: TcpLimits) -> std::io::Result<TcpTransport<S>> {
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for l in listen.iter().filter(|l| l.proto == Proto::Tcp) {
            let s = std::net::TcpListener::bind(l.addr)?;
            s.set_nonblocking(true)?;
            addrs.push(s.local_addr()?);
            listeners.push(s);
        }
        Ok(TcpTransport {
            shared: Arc::new(Shared::new(Proto::Tcp, limits)),
            listeners: Mutex::new(listeners),
            addrs,
            running: OnceLock::new(),
        })
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.shared.open()
    }

    /// Takes HTTP requests on the connections (`xhttp`); before [`TcpTransport::start`].
    pub fn serve_http(&self, side: Arc<super::http::HttpSide>) {
        let _ = self.shared.http.set(side);
    }

    /// Starts the TCP runtime (`threads` workers) and its listeners, handing every
    /// message to `sink`. Nothing to start without a TCP listen socket.
    pub fn start(
        &self,
        sink: &Arc<S>,
        threads: usize,
    ) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
        let listeners =
            std::mem::take(&mut *self.listeners.lock().unwrap_or_else(|e| e.into_inner()));
        if listeners.is_empty() {
            return Ok(None);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("tcp")
            .enable_all()
            .build()?;
        let _ = self
            .running
            .set((rt.handle().clone(), Arc::downgrade(sink)));
        let sink = sink.clone();
        let shared = self.shared.clone();
        let t = std::thread::Builder::new()
            .name("tcp-main".into())
            .spawn(move || {
                rt.block_on(async move {
                    let mut tasks = Vec::new();
                    for l in listeners {
                        tasks.push(tokio::spawn(accept(l, sink.clone(), shared.clone())));
                    }
                    for t in tasks {
                        let _ = t.await;
                    }
                });
            })?;
        Ok(Some(t))
    }
}

async fn accept<S: Sink>(l: std::net::TcpListener, sink: Arc<S>, shared: Arc<Shared>) {
    let listener = match tokio::net::TcpListener::from_std(l) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "TCP listener failed");
            return;
        }
    };
    let local = listener.local_addr().ok();
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Some(slot) = shared.admit() else {
                    tracing::debug!(peer = %peer, "TCP connection refused: tcp_max_connections");
                    drop(stream);
                    continue;
                };
                let (handle, rx) = ConnHandle::new();
                shared.conns().insert(peer, handle.clone());
                let local = local.unwrap_or(peer);
                let counted = sink.clone();
                let _ = stream.set_nodelay(true);
                let (rd, wr) = stream.into_split();
                tokio::spawn(crate::guard::guarded(
                    move || counted.on_panic(),
                    "tcp connection",
                    serve_connection(
                        sink.clone(),
                        shared.clone(),
                        slot,
                        (rd, wr),
                        peer,
                        local,
                        (handle, rx),
                    ),
                ));
            }
            Err(e) => {
                // Out of file descriptors (EMFILE) or a peer that reset before accept:
                // wait a little rather than spin.
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl<S: Sink> Transport for TcpTransport<S> {
    fn proto(&self) -> Proto {
        Proto::Tcp
    }

    fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Queues `data` on the connection to `dst`, connecting first if there is none.
    fn send(
        &self,
        _local: Option<SocketAddr>,
        dst: SocketAddr,
        data: Bytes,
    ) -> Result<(), FnError> {
        let Some(data) = queue_on_open(&self.shared, dst, data)? else {
            return Ok(());
        };
        let limit = (dst, Duration::from_secs(5));
        send_on_new(&self.shared, &self.running, limit, data, |_| async move {
            let stream = tokio::net::TcpStream::connect(dst).await?;
            let local = stream.local_addr()?;
            let _ = stream.set_nodelay(true);
            Ok((stream, local, ()))
        })
    }
}

/// Queues `data` on the open connection to `dst`. `Ok(None)` when it is queued,
/// `Ok(Some(data))` when there is no usable connection (none, or one that has gone),
/// an error when the connection's write queue is full.
pub(super) fn queue_on_open(
    shared: &Shared,
    dst: SocketAddr,
    data: Bytes,
) -> Result<Option<Bytes>, FnError> {
    let max_queue = shared.limits.write_queue_max;
    let existing = shared.conns().get(&dst).cloned();
    if let Some(conn) = existing {
        if conn.push(data.clone(), max_queue) {
            return Ok(None);
        }
        if conn.queued.load(Ordering::Acquire) > 0 {
            return Err(FnError::new(format!(
                "{} connection to {dst}: write queue full (tcp_conn_wq_max)",
                shared.proto.name()
            )));
        }
    }
    Ok(Some(data))
}

/// Opens a connection to `dst` with `connect` (the TCP connect and, for TLS, the
/// handshake; it gets a clone of `shared`), queues `data` on it at once, and serves it
/// as a stream connection (TCP, TLS). `connect` also returns a guard dropped when the
/// connection ends (TLS forgets its session then). `limit` holds for all of `connect`.
pub(super) fn send_on_new<S, St, G, F, Fut>(
    shared: &Arc<Shared>,
    running: &OnceLock<(tokio::runtime::Handle, Weak<S>)>,
    (dst, limit): (SocketAddr, Duration),
    data: Bytes,
    connect: F,
) -> Result<(), FnError>
where
    S: Sink,
    St: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    G: Send + 'static,
    F: FnOnce(Arc<Shared>) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<(St, SocketAddr, G)>> + Send + 'static,
{
    let proto = shared.proto.name();
    let (handle, sink) = running
        .get()
        .ok_or_else(|| FnError::new(format!("{proto} is not running")))?;
    let sink = sink
        .upgrade()
        .ok_or_else(|| FnError::new("server is stopping"))?;
    let slot = shared.admit().ok_or_else(|| {
        FnError::new(format!(
            "{proto} connection to {dst}: {}_max_connections reached",
            if shared.proto == Proto::Tcp {
                "tcp"
            } else {
                "tls"
            }
        ))
    })?;
    let (conn, rx) = ConnHandle::new();
    conn.push(data, shared.limits.write_queue_max);
    shared.conns().insert(dst, conn.clone());
    let shared = shared.clone();
    let connecting = connect(shared.clone());
    handle.spawn(async move {
        match tokio::time::timeout(limit, connecting).await {
            Ok(Ok((stream, local, guard))) => {
                let halves = tokio::io::split(stream);
                serve_connection(sink, shared, slot, halves, dst, local, (conn, rx)).await;
                drop(guard);
            }
            Ok(Err(e)) => {
                tracing::warn!(destination = %dst, error = %e, "{proto} connection failed");
                forget(&shared, dst, &conn);
            }
            Err(_) => {
                tracing::warn!(destination = %dst, "{proto} connection timed out");
                forget(&shared, dst, &conn);
            }
        }
    });
    Ok(())
}

/// Removes `conn` from the table unless another connection to the same address has
/// taken its place meanwhile.
pub(super) fn forget(shared: &Shared, peer: SocketAddr, conn: &ConnHandle) {
    let mut conns = shared.conns();
    if conns
        .get(&peer)
        .is_some_and(|c| Arc::ptr_eq(&c.close, &conn.close))
    {
        conns.remove(&peer);
    }
}

/// Why a connection's reader stopped.
#[derive(Clone, Copy, Debug)]
enum Closed {
    Eof,
    Idle,
    SlowMessage,
    WriteQueue,
    Framing,
    /// An HTTP request starts at the head of the buffer (`xhttp`).
    Http,
}

/// Bytes the writer of a connection gathers from its queue into one write at most.
const WRITE_BATCH: usize = 64 * 1024;

/// Reads framed messages from one connection (its two halves: a TCP socket's, or a TLS
/// stream's over one) and writes what is queued for it, under the transport's limits.
pub(super) async fn serve_connection<S, R, W>(
    sink: Arc<S>,
    shared: Arc<Shared>,
    slot: Slot,
    (mut rd, mut wr): (R, W),
    peer: SocketAddr,
    local: SocketAddr,
    (conn, mut rx): (ConnHandle, mpsc::UnboundedReceiver<Bytes>),
) where
    S: Sink,
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let proto = shared.proto;
    let queued = conn.queued.clone();
    let writing_since = conn.writing_since.clone();
    // Stopped (and the socket's writing half given back) when the connection turns to
    // HTTP; aborted otherwise.
    let (stop_writer, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                data = rx.recv() => {
                    let Some(first) = data else { break };
                    // What piled up meanwhile goes in the same write: one syscall (and
                    // for TLS one flush) for many messages lets a busy connection (a
                    // trunk carrying thousands of messages a second) catch up at once
                    // instead of falling behind its write queue.
                    let mut len = first.len();
                    let mut batch: Option<BytesMut> = None;
                    while len < WRITE_BATCH {
                        let Ok(more) = rx.try_recv() else { break };
                        let b = batch.get_or_insert_with(|| {
                            let mut b = BytesMut::with_capacity(WRITE_BATCH.max(len + more.len()));
                            b.extend_from_slice(&first);
                            b
                        });
                        b.extend_from_slice(&more);
                        len += more.len();
                    }
                    let bytes: &[u8] = batch.as_deref().unwrap_or(&first);
                    writing_since.store(mono_ms(), Ordering::Release);
                    if wr.write_all(bytes).await.is_err() || wr.flush().await.is_err() {
                        break;
                    }
                    writing_since.store(0, Ordering::Release);
                    queued.fetch_sub(len, Ordering::AcqRel);
                }
            }
        }
        wr
    });
    let limits = shared.limits;
    let mut worker = sink.worker();
    let mut buf = BytesMut::with_capacity(8192);
    // Framing state of the message at the start of `buf`: bytes already searched for
    // the end of its header section, and its whole length once that end is found.
    let mut searched = 0usize;
    let mut total: Option<usize> = None;
    let mut last_message = Instant::now();
    let mut message_started: Option<Instant> = None;
    let closed = 'conn: loop {
        // Consume complete messages (and CRLF keep-alives) already buffered.
        loop {
            if total.is_none() && searched == 0 {
                let ka = ferrosip_sip::keepalive_len(&buf);
                if ka > 0 {
                    // RFC 5626 §3.5.1: a double-CRLF ping gets a single-CRLF pong.
                    if ka >= 4 {
                        conn.push(Bytes::from_static(b"\r\n"), limits.write_queue_max);
                    }
                    let _ = buf.split_to(ka);
                    last_message = Instant::now();
                    continue;
                }
            }
            if total.is_none() {
                if !header_end_in(&buf, searched) {
                    searched = buf.len();
                    if buf.len() > limits.max_msg_size {
                        break 'conn framing_error(&sink, &conn, &buf, peer, limits).await;
                    }
                    break;
                }
                if shared.http.get().is_some() && super::http::is_request(&buf) {
                    break 'conn Closed::Http;
                }
                match ferrosip_sip::frame_total(&buf, limits.max_msg_size) {
                    Ok(Some(n)) => total = Some(n),
                    Ok(None) => {
                        searched = buf.len();
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(peer = %peer, error = %e, "{} framing error, closing", proto.name());
                        break 'conn framing_error(&sink, &conn, &buf, peer, limits).await;
                    }
                }
            }
            let Some(n) = total.filter(|&n| buf.len() >= n) else {
                break;
            };
            total = None;
            searched = 0;
            last_message = Instant::now();
            message_started = None;
            let inbound = Inbound {
                bytes: buf.split_to(n).freeze(),
                source: peer,
                local,
                proto,
                connection: Some(ConnectionId(peer)),
            };
            sink.on_message(&mut worker, inbound);
        }
        if buf.is_empty() {
            message_started = None;
        } else if message_started.is_none() {
            message_started = Some(Instant::now());
        }
        let idle_deadline = last_message + limits.lifetime;
        let message_deadline = message_started.map(|t| t + limits.msg_read_timeout);
        let deadline = message_deadline.map_or(idle_deadline, |m| m.min(idle_deadline));
        tokio::select! {
            read = rd.read_buf(&mut buf) => match read {
                Ok(0) | Err(_) => break Closed::Eof,
                Ok(_) => {}
            },
            () = tokio::time::sleep_until(deadline) => {
                break if message_deadline.is_some_and(|m| m <= idle_deadline) {
                    Closed::SlowMessage
                } else {
                    Closed::Idle
                };
            }
            () = conn.close.notified() => break Closed::WriteQueue,
        }
        if message_started.is_none() {
            message_started = Some(Instant::now());
        }
    };
    match closed {
        Closed::WriteQueue => tracing::warn!(
            peer = %peer,
            tcp_conn_wq_max = limits.write_queue_max,
            "{} peer does not read its replies: write queue full, connection closed",
            proto.name()
        ),
        Closed::SlowMessage => tracing::debug!(
            peer = %peer,
            "{} message not complete within tcp_msg_read_timeout, connection closed",
            proto.name()
        ),
        other => {
            tracing::trace!(peer = %peer, reason = ?other, "{} connection closed", proto.name())
        }
    }
    forget(&shared, peer, &conn);
    if matches!(closed, Closed::Http) {
        let _ = stop_writer.send(());
        if let Ok(wr) = writer.await {
            serve_http(sink, &shared, slot, (rd, wr), buf, (peer, local)).await;
        }
        return;
    }
    writer.abort();
}

/// An HTTP request at the head of `buf` (its header section complete), on a connection
/// the SIP side has let go: its body read within `tcp_msg_read_timeout` and
/// `tcp_max_msg_size`, `event_route[xhttp:request]` run, then its reply sent and the
/// connection closed, or the connection upgraded to WebSocket in place.
async fn serve_http<S, R, W>(
    sink: Arc<S>,
    shared: &Arc<Shared>,
    slot: Slot,
    (mut rd, mut wr): (R, W),
    mut buf: BytesMut,
    (peer, local): (SocketAddr, SocketAddr),
) where
    S: Sink,
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use super::http::{self, HttpOutcome};
    let Some(side) = shared.http.get().cloned() else {
        return;
    };
    let limits = shared.limits;
    let proto = shared.proto.name();
    let answer = |code: u16, reason: &str| http::plain_reply(code, reason);
    let reply = 'reply: {
        let Some(head_len) = http::head_len(&buf) else {
            break 'reply Some(answer(400, "Bad Request"));
        };
        let body_len = match http::header(&buf[..head_len], "content-length") {
            None => 0,
            Some(v) => match std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
            {
                Some(n) => n,
                None => break 'reply Some(answer(400, "Bad Request (Content-Length)")),
            },
        };
        let total = head_len.saturating_add(body_len);
        if total > limits.max_msg_size {
            break 'reply Some(answer(413, "Content Too Large"));
        }
        let deadline = Instant::now() + limits.msg_read_timeout;
        while buf.len() < total {
            match tokio::time::timeout_at(deadline, rd.read_buf(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                Ok(_) => return,
                Err(_) => {
                    tracing::debug!(peer = %peer, "{proto} HTTP request not complete within tcp_msg_read_timeout");
                    return;
                }
            }
        }
        let request = buf.split_to(total).freeze();
        let url = http::url(&request);
        if !side.handles(&url) {
            break 'reply Some(answer(404, "Not Found"));
        }
        let key = http::header(&request[..head_len], "sec-websocket-key").map(<[u8]>::to_vec);
        let outcome = sink
            .on_http(http::HttpInbound {
                bytes: request,
                url,
                source: peer,
                local,
                proto: shared.proto,
            })
            .await;
        match outcome {
            HttpOutcome::Reply(r) => Some(r),
            HttpOutcome::Nothing => None,
            HttpOutcome::Upgrade => {
                let (Some(carrier), Some(key)) = (side.ws.clone(), key) else {
                    break 'reply Some(answer(500, "No WebSocket transport"));
                };
                let accepted = http::switching_protocols(&key);
                let sent = tokio::time::timeout(limits.msg_read_timeout, async {
                    wr.write_all(&accepted).await?;
                    wr.flush().await
                })
                .await;
                if !matches!(sent, Ok(Ok(()))) {
                    return;
                }
                tracing::debug!(peer = %peer, "{proto} connection upgraded to {}", carrier.proto().name());
                let taken = buf.to_vec();
                drop(buf);
                carrier
                    .upgraded(sink, slot, tokio::io::join(rd, wr), taken, (peer, local))
                    .await;
                return;
            }
        }
    };
    if let Some(reply) = reply {
        let _ = tokio::time::timeout(limits.msg_read_timeout, async {
            wr.write_all(&reply).await?;
            wr.flush().await?;
            wr.shutdown().await
        })
        .await;
    }
    drop(slot);
}

/// Whether the header section's end (an empty line, CRLF or bare LF) lies in `buf`,
/// searching only from `searched` on (minus the 3 bytes an end can straddle).
fn header_end_in(buf: &[u8], searched: usize) -> bool {
    let from = searched.saturating_sub(3);
    let tail = &buf[from..];
    tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n")
}

/// Framing is lost: answer if possible, then close (RFC 3261 §18.3).
async fn framing_error<S: Sink>(
    sink: &Arc<S>,
    conn: &ConnHandle,
    buf: &[u8],
    peer: SocketAddr,
    limits: TcpLimits,
) -> Closed {
    sink.on_framing_error(peer);
    if let Some(r) = raw_error_reply(buf, 400, "Bad Request (framing)") {
        conn.push(r, limits.write_queue_max);
    }
    // Lets the writer put the answer on the wire before the connection is dropped.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Closed::Framing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_end_is_found_across_reads() {
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n";
        for cut in 1..msg.len() {
            let searched = if header_end_in(&msg[..cut], 0) {
                continue;
            } else {
                cut
            };
            assert!(header_end_in(msg, searched), "cut {cut}");
        }
        assert!(header_end_in(b"A\n\nB", 0));
        assert!(!header_end_in(b"A\r\nB\r\n", 0));
    }

    #[test]
    fn a_full_write_queue_refuses_and_asks_to_close() {
        let (conn, _rx) = ConnHandle::new();
        // The writer is behind but the socket takes bytes: over the limit is tolerated,
        // up to the hard bound.
        assert!(conn.push(Bytes::from_static(&[0; 600]), 1000));
        assert!(conn.push(Bytes::from_static(&[0; 600]), 1000));
        let big = Bytes::from(vec![0u8; 64 * 1000]);
        assert!(!conn.push(big, 1000), "past 64 times the limit");
        assert_eq!(conn.queued.load(Ordering::Acquire), 1200);
        // A write the socket has not taken for the stall time: the limit holds.
        let started = mono_ms();
        std::thread::sleep(WRITE_STALL + Duration::from_millis(10));
        conn.writing_since.store(started, Ordering::Release);
        assert!(!conn.push(Bytes::from_static(&[0; 600]), 1000));
        assert_eq!(conn.queued.load(Ordering::Acquire), 1200);
    }
}
