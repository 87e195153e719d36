//! Sockets: UDP read by a pool of worker threads (Kamailio's model: every worker reads the
//! same socket, so even a single peer's traffic spreads over all cores), TCP served by a
//! tokio runtime with one task per connection.

use crate::server::{Origin, Server};
use bytes::{Bytes, BytesMut};
use ferrosip_api::{FnError, Proto};
use ferrosip_script::vm::Vm;
use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// The UDP sockets, bound at start.
pub struct Sockets {
    pub udp: Vec<(SocketAddr, Arc<UdpSocket>)>,
}

impl Sockets {
    /// The socket bound to `local`, else the one [`pick_source`] chooses for `dst`.
    pub fn udp_for(&self, local: Option<SocketAddr>, dst: &SocketAddr) -> Option<&Arc<UdpSocket>> {
        if let Some(l) = local {
            if let Some((_, s)) = self.udp.iter().find(|(a, _)| *a == l) {
                return Some(s);
            }
        }
        pick_source(&self.udp, |(a, _)| *a, dst).map(|(_, s)| s)
    }
}

/// The local address the kernel would send to `peer` from (its routing decision, read by
/// connecting a UDP socket, which sends nothing).
pub fn routed_source(peer: SocketAddr) -> Option<std::net::IpAddr> {
    let any: SocketAddr = if peer.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let probe = UdpSocket::bind(any).ok()?;
    probe.connect(peer).ok()?;
    probe.local_addr().ok().map(|a| a.ip())
}

/// Of the sockets bound to `addr_of(item)`, the one to send to `dst` from: a socket on
/// `dst`'s own address, a loopback socket for a loopback destination, the only
/// non-loopback socket of the family, else the one on the address the kernel routes `dst`
/// from (a loopback source cannot reach another host), else a wildcard one. Without a
/// socket of `dst`'s family, the first socket.
pub fn pick_source<'a, T>(
    items: &'a [T],
    addr_of: impl Fn(&T) -> SocketAddr,
    dst: &SocketAddr,
) -> Option<&'a T> {
    let same_family = || {
        items
            .iter()
            .filter(|i| addr_of(i).is_ipv4() == dst.is_ipv4())
    };
    let mut family = same_family();
    let first = family.next();
    if first.is_none() {
        return items.first();
    }
    if family.next().is_none() {
        return first;
    }
    let ip = |i: &T| addr_of(i).ip();
    let dst_ip = dst.ip();
    if let Some(i) = same_family().find(|i| ip(i) == dst_ip) {
        return Some(i);
    }
    let wildcard = || same_family().find(|i| ip(i).is_unspecified());
    if dst_ip.is_loopback() {
        return same_family()
            .find(|i| ip(i).is_loopback())
            .or_else(wildcard)
            .or(first);
    }
    let mut outward = same_family().filter(|i| !ip(i).is_loopback() && !ip(i).is_unspecified());
    let only = outward.next();
    if only.is_some() && outward.next().is_none() {
        return only;
    }
    routed_source(*dst)
        .and_then(|src| same_family().find(|i| ip(i) == src))
        .or_else(wildcard)
        .or(only)
        .or(first)
}

/// Open TCP connections by remote address: replies go back on the connection a request
/// came on, and requests to a destination reuse an open connection (RFC 3261 §18).
pub struct TcpRegistry {
    conns: Mutex<HashMap<SocketAddr, mpsc::UnboundedSender<Bytes>>>,
    handle: Mutex<Option<tokio::runtime::Handle>>,
    server: Mutex<Option<std::sync::Weak<Server>>>,
}

impl Default for TcpRegistry {
    fn default() -> Self {
        TcpRegistry {
            conns: Mutex::new(HashMap::new()),
            handle: Mutex::new(None),
            server: Mutex::new(None),
        }
    }
}

impl TcpRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, mpsc::UnboundedSender<Bytes>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `data` on the connection to `dst`, connecting first if there is none.
    pub fn send(&self, dst: SocketAddr, data: Bytes, max: usize, idle: u64) -> Result<(), FnError> {
        if let Some(tx) = self.lock().get(&dst) {
            if tx.send(data.clone()).is_ok() {
                return Ok(());
            }
        }
        let handle = self
            .handle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| FnError::new("TCP is disabled"))?;
        let server = self
            .server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|w| w.upgrade())
            .ok_or_else(|| FnError::new("server is stopping"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(data);
        self.lock().insert(dst, tx);
        handle.spawn(async move {
            match tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(dst))
                .await
            {
                Ok(Ok(stream)) => {
                    let local = stream.local_addr().unwrap_or(dst);
                    serve_connection(server, stream, dst, local, rx, max, idle).await;
                }
                _ => {
                    tracing::warn!(destination = %dst, "TCP connect failed");
                    server.tcp.lock().remove(&dst);
                }
            }
        });
        Ok(())
    }
}

/// Binds every UDP listen socket.
pub fn bind_udp(listen: &[crate::config::Listen], buffer: usize) -> std::io::Result<Sockets> {
    let mut udp = Vec::new();
    for l in listen.iter().filter(|l| l.proto == Proto::Udp) {
        let domain = socket2::Domain::for_address(l.addr);
        let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
        // Bursts (a 5,000 calls/s load, a worker briefly descheduled) must queue in the
        // kernel rather than be dropped: ask for large buffers, as Kamailio's -b does. The
        // kernel caps them at net.core.rmem_max / wmem_max.
        let _ = s.set_recv_buffer_size(buffer);
        let _ = s.set_send_buffer_size(buffer);
        s.bind(&l.addr.into())?;
        let s: UdpSocket = s.into();
        udp.push((s.local_addr()?, Arc::new(s)));
    }
    Ok(Sockets { udp })
}

/// Starts `children` worker threads per UDP socket: every socket is read by workers of
/// its own, so each message is known to have come in on one address.
pub fn spawn_udp_workers(
    server: &Arc<Server>,
) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut threads = Vec::new();
    for (local, sock) in &server.sockets.udp {
        for n in 0..server.config.children {
            let server = server.clone();
            let sock = sock.clone();
            let local = *local;
            threads.push(
                std::thread::Builder::new()
                    .name(format!("udp-{}-{n}", local.port()))
                    .spawn(move || udp_worker(server, sock, local))?,
            );
        }
    }
    Ok(threads)
}

fn udp_worker(server: Arc<Server>, sock: Arc<UdpSocket>, local: SocketAddr) {
    // Async functions a route calls (database queries) register with the async runtime's
    // reactor when first polled on this thread.
    let _runtime = server.runtime.enter();
    let mut vm = Vm::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, source) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "UDP receive failed");
                continue;
            }
        };
        let data = &buf[..n];
        // Keep-alives and padding: nothing to do.
        if data.iter().all(|c| matches!(c, b'\r' | b'\n' | 0 | b' ')) {
            continue;
        }
        let raw = Bytes::copy_from_slice(data);
        server.handle_guarded(
            &mut vm,
            raw,
            Origin {
                proto: Proto::Udp,
                source,
                local,
            },
        );
    }
}

/// Starts the TCP runtime and its listeners.
pub fn start_tcp(server: &Arc<Server>) -> std::io::Result<Option<std::thread::JoinHandle<()>>> {
    let listens: Vec<SocketAddr> = server
        .config
        .listen
        .iter()
        .filter(|l| l.proto == Proto::Tcp)
        .map(|l| l.addr)
        .collect();
    if listens.is_empty() {
        return Ok(None);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(server.config.children.max(1))
        .thread_name("tcp")
        .enable_all()
        .build()?;
    let mut listeners = Vec::new();
    for addr in listens {
        let l = std::net::TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        listeners.push(l);
    }
    *server.tcp.handle.lock().unwrap_or_else(|e| e.into_inner()) = Some(rt.handle().clone());
    *server.tcp.server.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::downgrade(server));
    let server = server.clone();
    let t = std::thread::Builder::new()
        .name("tcp-main".into())
        .spawn(move || {
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for l in listeners {
                    let server = server.clone();
                    tasks.push(tokio::spawn(async move {
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
                                    let server = server.clone();
                                    let (tx, rx) = mpsc::unbounded_channel();
                                    server.tcp.lock().insert(peer, tx);
                                    let max = server.config.tcp_max_size;
                                    let idle = server.config.tcp_idle_secs;
                                    let local = local.unwrap_or(peer);
                                    tokio::spawn(serve_connection(
                                        server, stream, peer, local, rx, max, idle,
                                    ));
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "TCP accept failed");
                                    tokio::time::sleep(Duration::from_millis(50)).await;
                                }
                            }
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
            });
        })?;
    Ok(Some(t))
}

/// Reads framed messages from one connection and writes what is queued for it.
async fn serve_connection(
    server: Arc<Server>,
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
    let mut vm = Vm::new();
    let mut buf = BytesMut::with_capacity(8192);
    loop {
        // Consume complete messages (and CRLF keep-alives) already buffered.
        loop {
            let ka = ferrosip_sip::keepalive_len(&buf);
            if ka > 0 {
                // RFC 5626 §3.5.1: a double-CRLF ping gets a single-CRLF pong.
                if ka >= 4 {
                    if let Some(tx) = server.tcp.lock().get(&peer) {
                        let _ = tx.send(Bytes::from_static(b"\r\n"));
                    }
                }
                let _ = buf.split_to(ka);
                continue;
            }
            match ferrosip_sip::frame_len(&buf, max) {
                Ok(Some(n)) => {
                    let msg = buf.split_to(n).freeze();
                    server.handle_guarded(
                        &mut vm,
                        msg,
                        Origin {
                            proto: Proto::Tcp,
                            source: peer,
                            local,
                        },
                    );
                }
                Ok(None) => break,
                Err(e) => {
                    // Framing is lost: answer if possible, then close (RFC 3261 §18.3).
                    tracing::debug!(peer = %peer, error = %e, "TCP framing error, closing");
                    server
                        .stats
                        .malformed_dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if let Some(r) =
                        crate::server::raw_error_reply(&buf, 400, "Bad Request (framing)")
                    {
                        if let Some(tx) = server.tcp.lock().get(&peer) {
                            let _ = tx.send(r);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    server.tcp.lock().remove(&peer);
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
    server.tcp.lock().remove(&peer);
    writer.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(bound: &[&str], dst: &str) -> Option<SocketAddr> {
        let bound: Vec<SocketAddr> = bound.iter().map(|a| a.parse().unwrap()).collect();
        pick_source(&bound, |a| *a, &dst.parse().unwrap()).copied()
    }

    #[test]
    fn source_follows_the_destination() {
        let every = [
            "127.0.0.1:5060",
            "192.0.2.2:5060",
            "[::1]:5060",
            "[fd00::2]:5060",
        ];
        let at = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        assert_eq!(pick(&every, "127.0.0.1:5070"), at("127.0.0.1:5060"));
        assert_eq!(pick(&every, "127.0.0.5:5070"), at("127.0.0.1:5060"));
        assert_eq!(pick(&every, "198.51.100.7:5060"), at("192.0.2.2:5060"));
        assert_eq!(pick(&every, "192.0.2.2:5070"), at("192.0.2.2:5060"));
        assert_eq!(pick(&every, "[::1]:5070"), at("[::1]:5060"));
        assert_eq!(pick(&every, "[2001:db8::9]:5060"), at("[fd00::2]:5060"));
        // Only one socket of the family: that one, whatever the destination.
        assert_eq!(
            pick(&["127.0.0.1:5060"], "198.51.100.7:5060"),
            at("127.0.0.1:5060")
        );
        // No socket of the family: the first one (the send then fails with the OS's reason).
        assert_eq!(
            pick(&["127.0.0.1:5060"], "[::1]:5060"),
            at("127.0.0.1:5060")
        );
        // A wildcard socket serves a loopback destination when no loopback one is bound.
        assert_eq!(
            pick(&["0.0.0.0:5060", "192.0.2.2:5060"], "127.0.0.1:5070"),
            at("0.0.0.0:5060")
        );
        assert_eq!(pick(&[], "127.0.0.1:5070"), None);
    }
}
