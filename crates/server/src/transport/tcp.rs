//! TCP: a tokio runtime of its own with one task per connection. Replies go back on the
//! connection their request came on, and requests to a destination reuse an open
//! connection (RFC 3261 §18).

use super::{raw_error_reply, ConnectionId, Inbound, Listen, Sink, Transport};
use bytes::{Bytes, BytesMut};
use ferrosip_api::{FnError, Proto};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

type Connections = Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<Bytes>>>;

/// The TCP listeners and open connections, by remote address.
pub struct TcpTransport<S: Sink> {
    conns: Arc<Connections>,
    listeners: Mutex<Vec<std::net::TcpListener>>,
    addrs: Vec<SocketAddr>,
    /// Largest message accepted (`tcp_max_size`) and idle seconds before a connection
    /// closes.
    max: usize,
    idle: u64,
    /// Set by [`TcpTransport::start`]: where connection tasks run, and the sink that
    /// connections we open hand their messages to. Weak: the sink owns the transports.
    running: OnceLock<(tokio::runtime::Handle, Weak<S>)>,
}

fn lock(
    conns: &Connections,
) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, mpsc::UnboundedSender<Bytes>>> {
    conns.lock().unwrap_or_else(|e| e.into_inner())
}

impl<S: Sink> TcpTransport<S> {
    /// Binds every TCP listen socket of `listen`.
    pub fn bind(listen: &[Listen], max: usize, idle: u64) -> std::io::Result<TcpTransport<S>> {
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for l in listen.iter().filter(|l| l.proto == Proto::Tcp) {
            let s = std::net::TcpListener::bind(l.addr)?;
            s.set_nonblocking(true)?;
            addrs.push(s.local_addr()?);
            listeners.push(s);
        }
        Ok(TcpTransport {
            conns: Arc::default(),
            listeners: Mutex::new(listeners),
            addrs,
            max,
            idle,
            running: OnceLock::new(),
        })
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
        let conns = self.conns.clone();
        let (max, idle) = (self.max, self.idle);
        let t = std::thread::Builder::new()
            .name("tcp-main".into())
            .spawn(move || {
                rt.block_on(async move {
                    let mut tasks = Vec::new();
                    for l in listeners {
                        let sink = sink.clone();
                        let conns = conns.clone();
                        tasks.push(tokio::spawn(accept(l, sink, conns, max, idle)));
                    }
                    for t in tasks {
                        let _ = t.await;
                    }
                });
            })?;
        Ok(Some(t))
    }
}

async fn accept<S: Sink>(
    l: std::net::TcpListener,
    sink: Arc<S>,
    conns: Arc<Connections>,
    max: usize,
    idle: u64,
) {
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
                let (tx, rx) = mpsc::unbounded_channel();
                lock(&conns).insert(peer, tx);
                let local = local.unwrap_or(peer);
                tokio::spawn(serve_connection(
                    sink.clone(),
                    conns.clone(),
                    stream,
                    peer,
                    local,
                    rx,
                    max,
                    idle,
                ));
            }
            Err(e) => {
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
        if let Some(tx) = lock(&self.conns).get(&dst) {
            if tx.send(data.clone()).is_ok() {
                return Ok(());
            }
        }
        let (handle, sink) = self
            .running
            .get()
            .ok_or_else(|| FnError::new("TCP is disabled"))?;
        let sink = sink
            .upgrade()
            .ok_or_else(|| FnError::new("server is stopping"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(data);
        lock(&self.conns).insert(dst, tx);
        let conns = self.conns.clone();
        let (max, idle) = (self.max, self.idle);
        handle.spawn(async move {
            match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(dst))
                .await
            {
                Ok(Ok(stream)) => {
                    let local = stream.local_addr().unwrap_or(dst);
                    serve_connection(sink, conns, stream, dst, local, rx, max, idle).await;
                }
                _ => {
                    tracing::warn!(destination = %dst, "TCP connect failed");
                    lock(&conns).remove(&dst);
                }
            }
        });
        Ok(())
    }
}

/// Reads framed messages from one connection and writes what is queued for it.
#[allow(clippy::too_many_arguments)]
async fn serve_connection<S: Sink>(
    sink: Arc<S>,
    conns: Arc<Connections>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    max: usize,
    idle: u64,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            if wr.write_all(&data).await.is_err() {
                break;
            }
        }
    });
    let mut worker = sink.worker();
    let mut buf = BytesMut::with_capacity(8192);
    loop {
        // Consume complete messages (and CRLF keep-alives) already buffered.
        loop {
            let ka = ferrosip_sip::keepalive_len(&buf);
            if ka > 0 {
                // RFC 5626 §3.5.1: a double-CRLF ping gets a single-CRLF pong.
                if ka >= 4 {
                    if let Some(tx) = lock(&conns).get(&peer) {
                        let _ = tx.send(Bytes::from_static(b"\r\n"));
                    }
                }
                let _ = buf.split_to(ka);
                continue;
            }
            match ferrosip_sip::frame_len(&buf, max) {
                Ok(Some(n)) => {
                    let inbound = Inbound {
                        bytes: buf.split_to(n).freeze(),
                        source: peer,
                        local,
                        proto: Proto::Tcp,
                        connection: Some(ConnectionId(peer)),
                    };
                    sink.on_message(&mut worker, inbound);
                }
                Ok(None) => break,
                Err(e) => {
                    // Framing is lost: answer if possible, then close (RFC 3261 §18.3).
                    tracing::debug!(peer = %peer, error = %e, "TCP framing error, closing");
                    sink.on_framing_error(peer);
                    if let Some(r) = raw_error_reply(&buf, 400, "Bad Request (framing)") {
                        if let Some(tx) = lock(&conns).get(&peer) {
                            let _ = tx.send(r);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    lock(&conns).remove(&peer);
                    writer.abort();
                    return;
                }
            }
        }
        let read = tokio::time::timeout(Duration::from_secs(idle), rd.read_buf(&mut buf)).await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(_)) => {}
        }
    }
    lock(&conns).remove(&peer);
    writer.abort();
}
