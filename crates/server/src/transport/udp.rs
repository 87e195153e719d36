//! UDP: sockets bound at start, each read by a pool of worker threads (Kamailio's model:
//! every worker reads the same socket, so even a single peer's traffic spreads over all
//! cores).

use super::{pick_source, Inbound, Listen, Sink, Transport};
use bytes::Bytes;
use ferrosip_api::{FnError, Proto};
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

/// The UDP sockets, bound at start.
pub struct UdpTransport {
    sockets: Vec<(SocketAddr, Arc<UdpSocket>)>,
    /// The sockets' addresses, for [`Transport::local_addrs`].
    addrs: Vec<SocketAddr>,
}

impl UdpTransport {
    /// Binds every UDP listen socket of `listen`, asking for `buffer` bytes of kernel
    /// buffers each.
    pub fn bind(listen: &[Listen], buffer: usize) -> std::io::Result<UdpTransport> {
        let mut sockets = Vec::new();
        let mut addrs = Vec::new();
        for l in listen.iter().filter(|l| l.proto == Proto::Udp) {
            let domain = socket2::Domain::for_address(l.addr);
            let s =
                socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
            // Bursts (a 5,000 calls/s load, a worker briefly descheduled) must queue in the
            // kernel rather than be dropped: ask for large buffers, as Kamailio's -b does.
            // The kernel caps them at net.core.rmem_max / wmem_max.
            let _ = s.set_recv_buffer_size(buffer);
            let _ = s.set_send_buffer_size(buffer);
            s.bind(&l.addr.into())?;
            let s: UdpSocket = s.into();
            let addr = s.local_addr()?;
            addrs.push(addr);
            sockets.push((addr, Arc::new(s)));
        }
        Ok(UdpTransport { sockets, addrs })
    }

    /// Starts `children` worker threads per socket, handing what they read to `sink`:
    /// every socket is read by workers of its own, so each message is known to have come
    /// in on one address. Workers enter `runtime`, where async functions a route calls
    /// (database queries) register with the reactor when first polled.
    pub fn start<S: Sink>(
        &self,
        sink: &Arc<S>,
        children: usize,
        runtime: &tokio::runtime::Handle,
    ) -> std::io::Result<Vec<std::thread::JoinHandle<()>>> {
        let mut threads = Vec::new();
        for (local, sock) in &self.sockets {
            for n in 0..children {
                let sink = sink.clone();
                let sock = sock.clone();
                let local = *local;
                let runtime = runtime.clone();
                threads.push(
                    std::thread::Builder::new()
                        .name(format!("udp-{}-{n}", local.port()))
                        .spawn(move || {
                            let _runtime = runtime.enter();
                            receive(sink, sock, local)
                        })?,
                );
            }
        }
        Ok(threads)
    }
}

fn receive<S: Sink>(sink: Arc<S>, sock: Arc<UdpSocket>, local: SocketAddr) {
    let mut worker = sink.worker();
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
        let inbound = Inbound {
            bytes: Bytes::copy_from_slice(data),
            source,
            local,
            proto: Proto::Udp,
            connection: None,
        };
        sink.on_message(&mut worker, inbound);
    }
}

impl Transport for UdpTransport {
    fn proto(&self) -> Proto {
        Proto::Udp
    }

    fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// From the socket bound to `local`, else the one [`pick_source`] chooses for `dst`.
    fn send(&self, local: Option<SocketAddr>, dst: SocketAddr, data: Bytes) -> Result<(), FnError> {
        let bound = local.and_then(|l| self.sockets.iter().find(|(a, _)| *a == l));
        let (_, sock) = bound
            .or_else(|| pick_source(&self.sockets, |(a, _)| *a, &dst))
            .ok_or_else(|| FnError::new("no UDP socket to send from"))?;
        sock.send_to(&data, dst)
            .map_err(|e| FnError::new(e.to_string()))?;
        Ok(())
    }
}
