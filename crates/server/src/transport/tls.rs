//! TLS (RFC 3261 §26.2.1, RFC 5630): the TCP transport's connections with a rustls session
//! on each. A runtime of its own, one task per connection; after the handshake a
//! connection is framed, limited and written exactly as a TCP one (the same
//! `serve_connection`), so `tcp_max_msg_size`, `tcp_msg_read_timeout`, `tcp_conn_wq_max`
//! hold for it; `tls_max_connections` caps the TLS connections and the handshake must end
//! within `tcp_msg_read_timeout`.
//!
//! Connections are kept by peer address, like TCP's: replies go back on the connection
//! their request came on and requests to a destination reuse an open connection. The
//! profiles ([`super::tls_config`]) are swapped whole by `tls.reload`: a handshake uses
//! the profiles current when it starts, an open connection keeps what it negotiated.

use super::tcp::{queue_on_open, send_on_new, serve_connection, ConnHandle, Shared, TcpLimits};
use super::tls_config::{cert_info, Profiles, TlsSettings};
use super::{Listen, Sink, Transport};
use arc_swap::ArcSwap;
use bytes::Bytes;
use ferrosip_api::tls::{TlsConnection, TlsControl, TlsSessionInfo};
use ferrosip_api::{FnError, Proto};
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

/// What the connection tasks and the `tls.*` RPC commands share: the profiles and the
/// session of every open connection.
pub struct TlsState {
    settings: TlsSettings,
    profiles: ArcSwap<Profiles>,
    sessions: Mutex<HashMap<SocketAddr, OpenSession>>,
    /// Client profiles chosen by `server_id` for the next connection to an address
    /// (`tls_set_connect_server_id()`), taken when that connection is opened; at most
    /// [`MAX_CHOICES`], each for [`CHOICE_LIFETIME`].
    choices: Mutex<HashMap<SocketAddr, (Arc<str>, Instant)>>,
}

/// Client profile choices kept at most at once (see [`TlsState::connect_with`]).
const MAX_CHOICES: usize = 1024;
/// How long a choice waits for its connection: a send gives up on a connection
/// sooner than this.
const CHOICE_LIFETIME: Duration = Duration::from_secs(60);

struct OpenSession {
    info: Arc<TlsSessionInfo>,
    local: SocketAddr,
    since: Instant,
}

impl TlsState {
    /// Loads the profiles `settings` name (the profile file and every certificate).
    pub fn new(settings: TlsSettings) -> Result<TlsState, String> {
        let profiles = Profiles::load(&settings)?;
        Ok(TlsState {
            settings,
            profiles: ArcSwap::from_pointee(profiles),
            sessions: Mutex::default(),
            choices: Mutex::default(),
        })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, OpenSession>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn opened(&self, peer: SocketAddr, local: SocketAddr, info: &Arc<TlsSessionInfo>) {
        self.sessions().insert(
            peer,
            OpenSession {
                info: info.clone(),
                local,
                since: Instant::now(),
            },
        );
    }

    /// The `server_id` chosen for the connection being opened to `dst`, if any.
    fn take_choice(&self, dst: SocketAddr) -> Option<Arc<str>> {
        let mut choices = self.choices.lock().unwrap_or_else(|e| e.into_inner());
        choices
            .remove(&dst)
            .filter(|(_, at)| at.elapsed() < CHOICE_LIFETIME)
            .map(|(id, _)| id)
    }

    /// Forgets `info`'s session unless another connection to the peer replaced it.
    pub(super) fn closed(&self, peer: SocketAddr, info: &Arc<TlsSessionInfo>) {
        let mut sessions = self.sessions();
        if sessions
            .get(&peer)
            .is_some_and(|s| Arc::ptr_eq(&s.info, info))
        {
            sessions.remove(&peer);
        }
    }
}

impl TlsControl for TlsState {
    fn session(&self, peer: SocketAddr) -> Option<Arc<TlsSessionInfo>> {
        self.sessions().get(&peer).map(|s| s.info.clone())
    }

    fn reload(&self) -> Result<String, String> {
        let profiles = Profiles::load(&self.settings)?;
        let summary = format!(
            "{} server and {} client profiles loaded",
            profiles.servers.len(),
            profiles.clients.len()
        );
        self.profiles.store(Arc::new(profiles));
        tracing::info!("tls.reload: {summary}");
        Ok(summary)
    }

    fn connect_with(&self, dst: SocketAddr, server_id: &str) {
        if self.sessions().contains_key(&dst) {
            return;
        }
        let mut choices = self.choices.lock().unwrap_or_else(|e| e.into_inner());
        if choices.len() >= MAX_CHOICES {
            choices.retain(|_, (_, at)| at.elapsed() < CHOICE_LIFETIME);
        }
        if choices.len() >= MAX_CHOICES && !choices.contains_key(&dst) {
            tracing::warn!(destination = %dst, server_id, "tls_set_connect_server_id: too many connections waiting to be opened; the address's own profile is used");
            return;
        }
        choices.insert(dst, (Arc::from(server_id), Instant::now()));
    }

    fn connections(&self) -> Vec<TlsConnection> {
        let mut list: Vec<TlsConnection> = self
            .sessions()
            .iter()
            .map(|(peer, s)| TlsConnection {
                peer: *peer,
                local: s.local,
                session: s.info.clone(),
                age_secs: s.since.elapsed().as_secs(),
            })
            .collect();
        list.sort_by_key(|c| c.peer);
        list
    }
}

/// The TLS listeners, open connections and profiles.
pub struct TlsTransport<S: Sink> {
    shared: Arc<Shared>,
    state: Arc<TlsState>,
    listeners: Mutex<Vec<std::net::TcpListener>>,
    addrs: Vec<SocketAddr>,
    /// Set by [`TlsTransport::start`]; weak: the sink owns the transports.
    running: OnceLock<(tokio::runtime::Handle, Weak<S>)>,
}

impl<S: Sink> TlsTransport<S> {
    /// Binds every TLS listen socket of `listen`; `state` has the profiles loaded.
    pub fn bind(
        listen: &[Listen],
        limits: TcpLimits,
        state: Arc<TlsState>,
    ) -> std::io::Result<TlsTransport<S>> {
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for l in listen.iter().filter(|l| l.proto == Proto::Tls) {
            let s = std::net::TcpListener::bind(l.addr)?;
            s.set_nonblocking(true)?;
            addrs.push(s.local_addr()?);
            listeners.push(s);
        }
        let mut limits = limits;
        if let Some(idle) = state.settings.idle_timeout {
            limits.lifetime = idle;
        }
        Ok(TlsTransport {
            shared: Arc::new(Shared::new(Proto::Tls, limits)),
            state,
            listeners: Mutex::new(listeners),
            addrs,
            running: OnceLock::new(),
        })
    }

    /// The profiles and sessions, for the `tls` module's RPC commands and variables.
    pub fn control(&self) -> Arc<TlsState> {
        self.state.clone()
    }

    /// Connections open now (handshaking ones included).
    pub fn open_connections(&self) -> usize {
        self.shared.open()
    }

    /// Takes HTTP requests on the connections (`xhttp`); before [`TlsTransport::start`].
    pub fn serve_http(&self, side: Arc<super::http::HttpSide>) {
        let _ = self.shared.http.set(side);
    }

    /// Starts the TLS runtime (`threads` workers), its listeners, and the runtime the
    /// connections we open run on.
    pub fn start(
        &self,
        sink: &Arc<S>,
        threads: usize,
    ) -> std::io::Result<std::thread::JoinHandle<()>> {
        let listeners =
            std::mem::take(&mut *self.listeners.lock().unwrap_or_else(|e| e.into_inner()));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("tls")
            .enable_all()
            .build()?;
        let _ = self
            .running
            .set((rt.handle().clone(), Arc::downgrade(sink)));
        let sink = sink.clone();
        let shared = self.shared.clone();
        let state = self.state.clone();
        std::thread::Builder::new()
            .name("tls-main".into())
            .spawn(move || {
                rt.block_on(async move {
                    let mut tasks = Vec::new();
                    for l in listeners {
                        tasks.push(tokio::spawn(accept(
                            l,
                            sink.clone(),
                            shared.clone(),
                            state.clone(),
                        )));
                    }
                    drop(sink);
                    for t in tasks {
                        let _ = t.await;
                    }
                    // Outbound connections run on this runtime: keep it while the
                    // process runs.
                    std::future::pending::<()>().await;
                });
            })
    }
}

async fn accept<S: Sink>(
    l: std::net::TcpListener,
    sink: Arc<S>,
    shared: Arc<Shared>,
    state: Arc<TlsState>,
) {
    let listener = match tokio::net::TcpListener::from_std(l) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "TLS listener failed");
            return;
        }
    };
    let local = listener.local_addr().ok();
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let Some(slot) = shared.admit() else {
                    tracing::debug!(peer = %peer, "TLS connection refused: tls_max_connections");
                    drop(stream);
                    continue;
                };
                let local = local.unwrap_or(peer);
                let counted = sink.clone();
                let task = serve_accepted(
                    sink.clone(),
                    shared.clone(),
                    state.clone(),
                    slot,
                    stream,
                    peer,
                    local,
                );
                tokio::spawn(crate::guard::guarded(
                    move || counted.on_panic(),
                    "tls connection",
                    task,
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The key size of a cipher suite, from its name (`..._AES_128_...`, `CHACHA20`).
fn cipher_bits(name: &str) -> i64 {
    if name.contains("_128_") {
        128
    } else if name.contains("_256_") || name.contains("CHACHA20") {
        256
    } else {
        0
    }
}

/// What a finished handshake negotiated.
fn session_info(
    common: &rustls::CommonState,
    verifies: bool,
    mine: Option<Arc<ferrosip_api::tls::TlsCertInfo>>,
    server_name: Option<String>,
    profile: &str,
    outbound: bool,
) -> TlsSessionInfo {
    let version = match common.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(v) => format!("{v:?}"),
        None => String::new(),
    };
    let cipher = common
        .negotiated_cipher_suite()
        .and_then(|c| c.suite().as_str())
        .unwrap_or_default()
        .to_string();
    let peer_certs = common.peer_certificates();
    let peer = peer_certs
        .and_then(|c| c.first())
        .and_then(cert_info)
        .map(Arc::new);
    TlsSessionInfo {
        version,
        cipher_bits: cipher_bits(&cipher),
        cipher,
        // A profile that verifies fails the handshake on a certificate it cannot verify:
        // a certificate that got this far was verified.
        peer_verified: verifies && peer_certs.is_some_and(|c| !c.is_empty()),
        peer,
        mine,
        server_name,
        profile: profile.to_string(),
        outbound,
    }
}

/// Handshakes an accepted connection with the profile for its socket and server name,
/// then serves it as a stream connection.
async fn serve_accepted<S: Sink>(
    sink: Arc<S>,
    shared: Arc<Shared>,
    state: Arc<TlsState>,
    slot: super::tcp::Slot,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
) {
    let Some((tls, info)) =
        handshake_accepted(&state, stream, peer, local, shared.limits.msg_read_timeout).await
    else {
        return;
    };
    let (handle, rx) = ConnHandle::new();
    shared.conns().insert(peer, handle.clone());
    let halves = tokio::io::split(tls);
    serve_connection(sink, shared, slot, halves, peer, local, (handle, rx)).await;
    state.closed(peer, &info);
}

/// The server side of the TLS handshake on an accepted connection (the profile for its
/// socket and server name), within `limit`; the session is noted open (the caller tells
/// [`TlsState::closed`] when the connection ends). `None` when it failed (logged).
pub(super) async fn handshake_accepted(
    state: &Arc<TlsState>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    limit: Duration,
) -> Option<(
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    Arc<TlsSessionInfo>,
)> {
    let _ = stream.set_nodelay(true);
    let handshake = async {
        let start =
            tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream)
                .await?;
        let sni = start.client_hello().server_name().map(str::to_string);
        let profiles = state.profiles.load_full();
        let profile = profiles.server_for(local, sni.as_deref());
        let tls = start.into_stream(profile.config.clone()).await?;
        let info = session_info(
            tls.get_ref().1,
            profile.verify,
            profile.cert.clone(),
            sni,
            &profile.name,
            false,
        );
        Ok::<_, std::io::Error>((tls, info))
    };
    let (tls, info) = match tokio::time::timeout(limit, handshake).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(peer = %peer, "TLS handshake not done within tcp_msg_read_timeout");
            return None;
        }
    };
    let info = Arc::new(info);
    state.opened(peer, local, &info);
    Some((tls, info))
}

impl<S: Sink> Transport for TlsTransport<S> {
    fn proto(&self) -> Proto {
        Proto::Tls
    }

    fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Queues `data` on the connection to `dst`, connecting (TCP, then the handshake
    /// with the client profile for `dst`) first if there is none.
    fn send(
        &self,
        _local: Option<SocketAddr>,
        dst: SocketAddr,
        data: Bytes,
    ) -> Result<(), FnError> {
        let Some(data) = queue_on_open(&self.shared, dst, data)? else {
            return Ok(());
        };
        let state = self.state.clone();
        let limit = Duration::from_secs(5).max(self.shared.limits.msg_read_timeout);
        send_on_new(
            &self.shared,
            &self.running,
            (dst, limit),
            data,
            |_| async move {
                let profiles = state.profiles.load_full();
                let profile = match state.take_choice(dst) {
                    Some(id) => profiles.client_by_id(&id, dst),
                    None => profiles.client_for(dst),
                };
                let name = match &profile.server_name {
                    Some(n) => ServerName::try_from(n.clone()).ok(),
                    None => Some(ServerName::IpAddress(dst.ip().into())),
                };
                let name = name.ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "bad server_name")
                })?;
                let tcp = tokio::net::TcpStream::connect(dst).await?;
                let _ = tcp.set_nodelay(true);
                let local = tcp.local_addr()?;
                let connector = tokio_rustls::TlsConnector::from(profile.config.clone());
                let tls = connector.connect(name, tcp).await?;
                let info = Arc::new(session_info(
                    tls.get_ref().1,
                    profile.verify,
                    profile.cert.clone(),
                    profile.server_name.clone(),
                    &profile.name,
                    true,
                ));
                state.opened(dst, local, &info);
                Ok((
                    tls,
                    local,
                    SessionGuard {
                        state,
                        peer: dst,
                        info,
                    },
                ))
            },
        )
    }
}

/// Forgets a connection's session when the connection ends.
struct SessionGuard {
    state: Arc<TlsState>,
    peer: SocketAddr,
    info: Arc<TlsSessionInfo>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.state.closed(self.peer, &self.info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_bits_come_from_the_suite_name() {
        assert_eq!(cipher_bits("TLS13_AES_128_GCM_SHA256"), 128);
        assert_eq!(cipher_bits("TLS13_AES_256_GCM_SHA384"), 256);
        assert_eq!(cipher_bits("TLS13_CHACHA20_POLY1305_SHA256"), 256);
        assert_eq!(cipher_bits("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"), 128);
    }
}
