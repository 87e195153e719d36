//! Ferrosip's control interface, as Kamailio's `ctl` and `jsonrpcs` modules serve theirs:
//! Kamailio's BINRPC on the ctl socket (Debian's `kamcmd` works unchanged), JSON-RPC 2.0
//! on the same socket (`ferrosip ctl`), on jsonrpcs' datagram socket and on its FIFO
//! (`kamctl`'s transport). Every RPC command a loaded module registers is served, plus
//! the core ones ([`core`]). The sockets are chosen by the modules' parameters; the
//! binary starts the interface through [`attachment`] and it stops with the server.

pub mod binrpc;
pub mod core;
pub mod json;
pub mod methods;
pub mod serve;

pub use crate::core::{CoreEnv, LogLevel};
pub use methods::{Methods, RpcError};

use ferrosip_api::{ModuleParams, Registry, Value};
use ferrosip_server::Engine;
use serve::{Limits, Shared};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The runtime directory relative socket and FIFO names are in (Kamailio's is
/// /run/kamailio).
pub const RUNTIME_DIR: &str = "/run/ferrosip";
/// The ctl socket when `binrpc` is not set (and where `ferrosip ctl` looks).
pub const DEFAULT_CTL_SOCKET: &str = "/run/ferrosip/ferrosip_ctl";

/// Where a stream socket listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl Endpoint {
    /// `unix:/path`, a plain path, or `tcp:host:port` (ctl's `binrpc` values).
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        let s = s.trim();
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(Endpoint::Unix(PathBuf::from(p)));
        }
        if let Some(a) = s.strip_prefix("tcp:") {
            return a
                .parse()
                .map(Endpoint::Tcp)
                .map_err(|_| format!("ctl binrpc {s}: give tcp:ADDRESS:PORT"));
        }
        if s.starts_with('/') {
            return Ok(Endpoint::Unix(PathBuf::from(s)));
        }
        Err(format!(
            "ctl binrpc {s}: only unix:/path and tcp:ADDRESS:PORT are served (udp and unix datagram BINRPC are not)"
        ))
    }
}

/// Who owns a socket or FIFO file and its permissions.
#[derive(Debug, Clone, Default)]
pub struct FileAccess {
    pub mode: Option<u32>,
    pub user: Option<String>,
    pub group: Option<String>,
}

/// Every socket the interface serves and its limits, from the modules' parameters.
#[derive(Debug, Clone)]
pub struct Settings {
    pub streams: Vec<Endpoint>,
    /// Whether `streams` is the default (a default path that cannot be created is
    /// logged, not fatal).
    pub default_stream: bool,
    pub stream_access: FileAccess,
    pub fifo: Option<(PathBuf, FileAccess)>,
    pub fifo_reply_dir: PathBuf,
    pub dgram: Option<(PathBuf, FileAccess)>,
    /// Whether the FIFO and datagram paths are the defaults (as `default_stream`).
    pub default_fifo: bool,
    pub default_dgram: bool,
    pub dgram_timeout: Duration,
    pub limits: Limits,
}

/// A permission parameter: Kamailio configs write them in octal (0660); a number whose
/// decimal digits read as octal and is beyond 0777 was written that way.
fn file_mode(v: i64) -> Result<u32, String> {
    let digits = v.to_string();
    let mode = if v > 0o777 && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        u32::from_str_radix(&digits, 8).map_err(|e| e.to_string())?
    } else {
        u32::try_from(v).map_err(|_| format!("bad file mode {v}"))?
    };
    if mode > 0o7777 {
        return Err(format!("bad file mode {v}"));
    }
    Ok(mode)
}

fn opt_string(p: &ModuleParams, name: &str) -> Option<String> {
    match p.get(name) {
        Value::Null => None,
        v => v
            .to_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .filter(|s| !s.is_empty()),
    }
}

fn in_runtime_dir(name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        Path::new(RUNTIME_DIR).join(p)
    }
}

impl Settings {
    /// From the parameters of `ctl` and `jsonrpcs` (`None`: the module is not loaded).
    /// Nothing is served unless one of them is loaded.
    pub fn from_params(
        ctl: Option<&ModuleParams>,
        jsonrpcs: Option<&ModuleParams>,
    ) -> Result<Option<Settings>, String> {
        if ctl.is_none() && jsonrpcs.is_none() {
            return Ok(None);
        }
        let mut settings = Settings {
            streams: Vec::new(),
            default_stream: false,
            stream_access: FileAccess::default(),
            fifo: None,
            fifo_reply_dir: PathBuf::from("/tmp/"),
            dgram: None,
            default_fifo: false,
            default_dgram: false,
            dgram_timeout: Duration::from_millis(2000),
            limits: Limits {
                max_clients: 16,
                read_timeout: Duration::from_millis(5000),
                max_request: 65536,
                pretty: true,
            },
        };
        if let Some(p) = ctl {
            if let Some(f) = opt_string(p, "fifo") {
                return Err(format!(
                    "ctl fifo {f}: ctl's text FIFO protocol is not served; use jsonrpcs' fifo_name (kamctl's transport)"
                ));
            }
            for v in p.all("binrpc") {
                let s = v
                    .to_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                settings.streams.push(Endpoint::parse(&s)?);
            }
            if settings.streams.is_empty() {
                settings
                    .streams
                    .push(Endpoint::Unix(PathBuf::from(DEFAULT_CTL_SOCKET)));
                settings.default_stream = true;
            }
            settings.stream_access = FileAccess {
                mode: Some(file_mode(p.int("mode"))?),
                user: opt_string(p, "user"),
                group: opt_string(p, "group"),
            };
            let positive = |name: &str| -> Result<u64, String> {
                u64::try_from(p.int(name))
                    .ok()
                    .filter(|v| *v > 0)
                    .ok_or_else(|| format!("ctl {name}: give a positive number"))
            };
            settings.limits.max_clients = positive("max_clients")? as usize;
            settings.limits.read_timeout = Duration::from_millis(positive("read_timeout")?);
            settings.limits.max_request = positive("max_request_size")? as usize;
        }
        if let Some(p) = jsonrpcs {
            settings.limits.pretty = p.int("pretty_format") != 0;
            let transport = p.int("transport");
            // 0: every transport. HTTP (1) is xhttp's event route calling
            // jsonrpc_dispatch(), a script function; TCP (8) is not served.
            let wants = |bit: i64| transport == 0 || transport & bit != 0;
            if let Some(addr) = opt_string(p, "tcp_socket") {
                return Err(format!(
                    "jsonrpcs tcp_socket {addr}: the TCP transport is not served (use the ctl socket: modparam(\"ctl\", \"binrpc\", \"tcp:ADDRESS:PORT\") takes JSON-RPC too)"
                ));
            }
            if wants(2) {
                let access = FileAccess {
                    mode: Some(file_mode(p.int("fifo_mode"))?),
                    user: opt_string(p, "fifo_user"),
                    group: opt_string(p, "fifo_group"),
                };
                settings.fifo = Some((in_runtime_dir(&p.string("fifo_name")), access));
                settings.default_fifo = !p.is_set("fifo_name");
                settings.fifo_reply_dir = PathBuf::from(p.string("fifo_reply_dir"));
            }
            if wants(4) {
                let access = FileAccess {
                    mode: Some(file_mode(p.int("dgram_mode"))?),
                    user: opt_string(p, "dgram_user"),
                    group: opt_string(p, "dgram_group"),
                };
                settings.dgram = Some((in_runtime_dir(&p.string("dgram_socket")), access));
                settings.default_dgram = !p.is_set("dgram_socket");
                if p.int("dgram_workers") != 1 {
                    tracing::info!("jsonrpcs dgram_workers: one task serves the datagram socket");
                }
                settings.dgram_timeout =
                    Duration::from_millis(u64::try_from(p.int("dgram_timeout")).unwrap_or(2000));
            }
        }
        Ok(Some(settings))
    }
}

/// The running interface: its tasks stop and its files are removed when it is dropped.
pub struct Interface {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    files: Vec<PathBuf>,
}

impl Drop for Interface {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

fn uid_of(user: &str) -> Result<u32, String> {
    if let Ok(n) = user.parse() {
        return Ok(n);
    }
    let name = std::ffi::CString::new(user).map_err(|_| format!("bad user name {user:?}"))?;
    // SAFETY: getpwnam reads the passwd database; the result is read at once, while the
    // interface starts (before any other thread looks users up).
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(format!("no user {user}"));
    }
    Ok(unsafe { (*pw).pw_uid })
}

fn gid_of(group: &str) -> Result<u32, String> {
    if let Ok(n) = group.parse() {
        return Ok(n);
    }
    let name = std::ffi::CString::new(group).map_err(|_| format!("bad group name {group:?}"))?;
    // SAFETY: as in uid_of.
    let gr = unsafe { libc::getgrnam(name.as_ptr()) };
    if gr.is_null() {
        return Err(format!("no group {group}"));
    }
    Ok(unsafe { (*gr).gr_gid })
}

fn apply_access(path: &Path, access: &FileAccess) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(mode) = access.mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("{}: cannot set mode {mode:o}: {e}", path.display()))?;
    }
    let uid = access.user.as_deref().map(uid_of).transpose()?;
    let gid = access.group.as_deref().map(gid_of).transpose()?;
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::chown(path, uid, gid)
            .map_err(|e| format!("{}: cannot change owner: {e}", path.display()))?;
    }
    Ok(())
}

/// Makes way for a socket file: its directory exists; a stale socket left by a server
/// that died is removed, a live one (another server answers) is an error.
fn prepare_socket_path(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "{}: another process answers on this control socket",
                    path.display()
                ));
            }
            std::fs::remove_file(path).map_err(|e| format!("{}: {e}", path.display()))
        }
        Ok(_) => Err(format!("{}: exists and is not a socket", path.display())),
    }
}

/// Starts serving `settings` on `runtime`.
pub fn start(
    settings: &Settings,
    methods: Arc<Methods>,
    runtime: &tokio::runtime::Handle,
) -> Result<Interface, String> {
    let _in_runtime = runtime.enter();
    let shared = Arc::new(Shared {
        methods,
        limits: settings.limits.clone(),
        clients: Arc::new(tokio::sync::Semaphore::new(settings.limits.max_clients)),
    });
    let mut iface = Interface {
        tasks: Vec::new(),
        files: Vec::new(),
    };
    for endpoint in &settings.streams {
        match endpoint {
            Endpoint::Unix(path) => {
                let bound = prepare_socket_path(path).and_then(|()| {
                    tokio::net::UnixListener::bind(path)
                        .map_err(|e| format!("cannot bind the ctl socket {}: {e}", path.display()))
                });
                let listener = match bound {
                    Ok(l) => l,
                    Err(e) if settings.default_stream => {
                        tracing::error!("{e}: no control socket (set modparam(\"ctl\", \"binrpc\", \"unix:/path\"))");
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                iface.files.push(path.clone());
                apply_access(path, &settings.stream_access)?;
                tracing::info!("control socket unix:{}", path.display());
                let shared = shared.clone();
                iface.tasks.push(tokio::spawn(async move {
                    loop {
                        match listener.accept().await {
                            Ok((s, _)) => {
                                tokio::spawn(serve::serve_stream(s, shared.clone()));
                            }
                            Err(e) => {
                                tracing::warn!("control socket accept failed: {e}");
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                }));
            }
            Endpoint::Tcp(addr) => {
                let std_listener = std::net::TcpListener::bind(addr)
                    .map_err(|e| format!("cannot bind the ctl socket tcp:{addr}: {e}"))?;
                std_listener
                    .set_nonblocking(true)
                    .map_err(|e| e.to_string())?;
                let listener =
                    tokio::net::TcpListener::from_std(std_listener).map_err(|e| e.to_string())?;
                tracing::info!("control socket tcp:{addr}");
                let shared = shared.clone();
                iface.tasks.push(tokio::spawn(async move {
                    loop {
                        match listener.accept().await {
                            Ok((s, _)) => {
                                tokio::spawn(serve::serve_stream(s, shared.clone()));
                            }
                            Err(e) => {
                                tracing::warn!("control socket accept failed: {e}");
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                }));
            }
        }
    }
    if let Some((path, access)) = &settings.dgram {
        match bind_dgram(path) {
            Ok(sock) => {
                iface.files.push(path.clone());
                apply_access(path, access)?;
                tracing::info!("JSON-RPC datagram socket {}", path.display());
                iface.tasks.push(tokio::spawn(serve::serve_dgram(
                    sock,
                    shared.clone(),
                    settings.dgram_timeout,
                )));
            }
            Err(e) if settings.default_dgram => tracing::error!(
                "{e}: no JSON-RPC datagram socket (set modparam(\"jsonrpcs\", \"dgram_socket\", \"/path\"))"
            ),
            Err(e) => return Err(e),
        }
    }
    if let Some((path, access)) = &settings.fifo {
        match open_fifo(path) {
            Ok(receiver) => {
                iface.files.push(path.clone());
                apply_access(path, access)?;
                tracing::info!("JSON-RPC FIFO {}", path.display());
                iface.tasks.push(tokio::spawn(serve::serve_fifo(
                    receiver,
                    shared.clone(),
                    settings.fifo_reply_dir.clone(),
                )));
            }
            Err(e) if settings.default_fifo => tracing::error!(
                "{e}: no JSON-RPC FIFO (set modparam(\"jsonrpcs\", \"fifo_name\", \"/path\"))"
            ),
            Err(e) => return Err(e),
        }
    }
    Ok(iface)
}

fn bind_dgram(path: &Path) -> Result<tokio::net::UnixDatagram, String> {
    prepare_socket_path(path)?;
    tokio::net::UnixDatagram::bind(path).map_err(|e| {
        format!(
            "cannot bind the JSON-RPC datagram socket {}: {e}",
            path.display()
        )
    })
}

/// Creates the FIFO and opens it for reading and writing: it then never reports an end
/// when a client closes its end.
fn open_fifo(path: &Path) -> Result<tokio::net::unix::pipe::Receiver, String> {
    make_fifo(path)?;
    tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(path)
        .map_err(|e| format!("cannot open the JSON-RPC FIFO {}: {e}", path.display()))
}

/// Creates the FIFO (a stale one is replaced; any other file there is an error).
fn make_fifo(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if !m.file_type().is_fifo() {
            return Err(format!("{}: exists and is not a FIFO", path.display()));
        }
        std::fs::remove_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("bad FIFO path {}", path.display()))?;
    // SAFETY: mkfifo reads the NUL-terminated path only.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(format!(
            "cannot create the FIFO {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// What the server calls once its modules are ready: builds the command table (the
/// registry's commands and the core ones) and serves the configured sockets. `None`
/// when neither ctl nor jsonrpcs is loaded.
pub fn attach(
    engine: &Arc<Engine>,
    registry: &Registry,
    ctl: Option<&ModuleParams>,
    jsonrpcs: Option<&ModuleParams>,
    log: Option<Arc<LogLevel>>,
) -> Result<Option<Interface>, String> {
    let Some(settings) = Settings::from_params(ctl, jsonrpcs)? else {
        return Ok(None);
    };
    let mut methods = Methods::from_registry(registry);
    let env = Arc::new(CoreEnv {
        engine: engine.clone(),
        log,
        started_at: std::time::SystemTime::now(),
        started: std::time::Instant::now(),
    });
    core::add_core(&mut methods, env);
    let methods = Arc::new(methods);
    if jsonrpcs.is_some() {
        let script_rpc = serve::ScriptRpc {
            methods: methods.clone(),
            pretty: settings.limits.pretty,
            max_request: settings.limits.max_request,
        };
        // Set once: the server outlives reloads, and the table is the same for each.
        let _ = engine.server.json_rpc.set(Arc::new(script_rpc));
    }
    start(&settings, methods, &engine.server.runtime).map(Some)
}

#[cfg(test)]
mod tests;
