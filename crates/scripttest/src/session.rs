//! One test's proxy: the config loaded as `ferrosip run` loads it, its modules started,
//! and the server's real layers (engine, script scope, tm, outbound) assembled over an
//! in-memory transport that keeps what is sent, a manual tm clock, a DNS answer table and
//! a SQLite database of the test's own. Nothing touches the network.

use crate::file::{Row, TestFile};
use bytes::Bytes;
use ferrosip_api::{MsgContext, Proto, Registry, RouteKind, Value};
use ferrosip_script::vm::Vm;
use ferrosip_script::{Program, RouteId};
use ferrosip_server::routes::{RouteObserver, RouteResult};
use ferrosip_server::tm::Clock;
use ferrosip_server::transport::{ConnectionId, Inbound, Transport, Transports};
use ferrosip_server::Engine;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Builds the registry of the modules a config loads (the binary's catalog).
pub type RegistryFor = fn(&[String]) -> Registry;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One message the proxy sent.
#[derive(Clone, Debug)]
pub struct Sent {
    pub proto: Proto,
    pub local: Option<SocketAddr>,
    pub dst: SocketAddr,
    pub data: Bytes,
    /// The same bytes went to the same destination before (a timer's retransmission):
    /// left out of what a step's expectations see.
    pub retransmission: bool,
}

impl Sent {
    pub fn is_reply(&self) -> bool {
        self.data.starts_with(b"SIP/")
    }

    /// `proto:host:port`, as a test writes a destination.
    pub fn to_text(&self) -> String {
        format!("{}:{}", self.proto.name(), self.dst)
    }
}

/// The transport of a test: every send is kept, nothing goes out.
struct Capture {
    proto: Proto,
    local: Vec<SocketAddr>,
    sent: Arc<Mutex<Vec<Sent>>>,
}

impl Transport for Capture {
    fn proto(&self) -> Proto {
        self.proto
    }

    fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    fn send(
        &self,
        local: Option<SocketAddr>,
        dst: SocketAddr,
        data: Bytes,
    ) -> Result<(), ferrosip_api::FnError> {
        let mut sent = lock(&self.sent);
        let retransmission = sent
            .iter()
            .any(|s| s.dst == dst && s.proto == self.proto && s.data == data);
        sent.push(Sent {
            proto: self.proto,
            local,
            dst,
            data,
            retransmission,
        });
        Ok(())
    }
}

/// One route run as the test sees it afterwards.
#[derive(Clone, Debug)]
pub struct RouteRecord {
    /// `request_route`, `failure_route[NAME]`, ...
    pub name: String,
    /// The step's `pv` texts with their values at the end of the run.
    pub values: Vec<(String, String)>,
    pub flags: u64,
    /// The run's error, when it aborted.
    pub error: Option<String>,
}

/// Records every route run (the server's [`RouteObserver`] seam).
#[derive(Default)]
pub struct Recorder {
    wanted: Mutex<Vec<(String, ferrosip_api::pv::PvRef)>>,
    runs: Mutex<Vec<RouteRecord>>,
    /// Told of every route run too (a statement trace).
    next: Option<Arc<dyn RouteObserver>>,
}

/// A route's name as the config writes it.
pub fn route_name(program: &Program, route: RouteId, ctx_kind: RouteKind) -> String {
    let Some(info) = program.routes.get(route as usize) else {
        // A route of another engine (Lua): known by its kind only.
        return match ctx_kind {
            RouteKind::Request => "request_route".into(),
            other => kind_name(other).into(),
        };
    };
    match (&info.name, info.kind) {
        (None, RouteKind::Request) => "request_route".into(),
        (None, kind) => kind_name(kind).into(),
        (Some(n), kind) => format!("{}[{n}]", kind_name(kind)),
    }
}

fn kind_name(kind: RouteKind) -> &'static str {
    match kind {
        RouteKind::Request => "route",
        RouteKind::Failure => "failure_route",
        RouteKind::TmOnReply => "onreply_route",
        RouteKind::CoreOnReply => "reply_route",
        RouteKind::Branch => "branch_route",
        RouteKind::OnSend => "onsend_route",
        RouteKind::Event => "event_route",
        RouteKind::Local => "local_route",
        RouteKind::Error => "error_route",
    }
}

/// A value as a test compares it: `<null>` for no value.
pub fn value_text(v: &Value) -> String {
    match v {
        Value::Null => "<null>".into(),
        Value::Int(i) => i.to_string(),
        Value::Str(s) => String::from_utf8_lossy(s).into_owned(),
    }
}

impl RouteObserver for Recorder {
    fn route_starting(&self, program: &Program, route: RouteId, ctx: &mut MsgContext) {
        if let Some(next) = &self.next {
            next.route_starting(program, route, ctx);
        }
    }

    fn route_done(
        &self,
        program: &Program,
        route: RouteId,
        result: &RouteResult,
        ctx: &MsgContext,
    ) {
        let values = lock(&self.wanted)
            .iter()
            .map(|(text, pv)| {
                let v = match pv.get(ctx) {
                    Ok(v) => value_text(&v),
                    Err(e) => format!("<error: {e}>"),
                };
                (text.clone(), v)
            })
            .collect();
        let error = result
            .as_ref()
            .err()
            .map(|e| format!("{}: {}", e.location, e.message));
        lock(&self.runs).push(RouteRecord {
            name: route_name(program, route, ctx.route),
            values,
            flags: ctx.flags,
            error,
        });
        if let Some(next) = &self.next {
            next.route_done(program, route, result, ctx);
        }
    }
}

/// Placeholders of one test: the same Call-ID and tags for all its messages.
pub struct Names {
    pub call_id: String,
    pub tag: String,
    pub branch: String,
    pub proxy: SocketAddr,
    pub peer: SocketAddr,
    pub proto: Proto,
}

impl Names {
    /// `text` with `{proxy}`, `{peer}`, `{branch}`, `{tag}`, `{call_id}`, ... filled in.
    pub fn fill(&self, text: &str) -> String {
        text.replace("{proxy}", &self.proxy.to_string())
            .replace("{proxy_host}", &self.proxy.ip().to_string())
            .replace("{proxy_port}", &self.proxy.port().to_string())
            .replace("{peer}", &self.peer.to_string())
            .replace("{peer_host}", &self.peer.ip().to_string())
            .replace("{peer_port}", &self.peer.port().to_string())
            .replace("{transport}", &self.proto.name().to_ascii_uppercase())
            .replace("{branch}", &self.branch)
            .replace("{tag}", &self.tag)
            .replace("{call_id}", &self.call_id)
    }
}

/// SIP text as a test writes it (LF line ends, no Content-Length needed) as sent on the
/// wire: CRLF line ends, the blank line after the headers, Content-Length added when the
/// text has none.
pub fn wire_message(text: &str) -> Bytes {
    let text = text.trim_start_matches(['\n', '\r']);
    let normalized = text.replace("\r\n", "\n");
    let (head, body) = match normalized.find("\n\n") {
        Some(i) => (&normalized[..i], &normalized[i + 2..]),
        None => (normalized.trim_end_matches('\n'), ""),
    };
    let mut out = String::new();
    let mut has_length = false;
    for line in head.lines() {
        let name = line.split(':').next().unwrap_or_default().trim();
        has_length |= name.eq_ignore_ascii_case("content-length") || name == "l";
        out.push_str(line);
        out.push_str("\r\n");
    }
    let body = body.replace('\n', "\r\n");
    if !has_length {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    out.push_str(&body);
    Bytes::from(out)
}

/// `[proto:]host:port` (UDP when no protocol is given).
pub fn parse_peer(text: &str) -> Result<(Proto, SocketAddr), String> {
    let (proto, addr) = match text.split_once(':') {
        Some((p, rest)) if Proto::from_bytes(p.as_bytes()).is_some() && rest.contains(':') => {
            (Proto::from_bytes(p.as_bytes()).unwrap_or(Proto::Udp), rest)
        }
        _ => (Proto::Udp, text),
    };
    let addr = addr
        .parse()
        .map_err(|_| format!("{text:?} is not [proto:]address:port"))?;
    if !matches!(proto, Proto::Udp | Proto::Tcp) {
        return Err(format!("{text:?}: tests send over udp or tcp"));
    }
    Ok((proto, addr))
}

static UNIQUE: AtomicU64 = AtomicU64::new(1);

/// A name no other test of this process uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

/// A directory of the test's own, removed with the value.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Result<TempDir, String> {
        let dir = std::env::temp_dir().join(unique("ferrosip-test-"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The proxy of one test.
pub struct Session {
    pub runtime: tokio::runtime::Runtime,
    pub engine: Arc<Engine>,
    pub registry: Arc<Registry>,
    pub recorder: Arc<Recorder>,
    pub clock: Clock,
    pub sent: Arc<Mutex<Vec<Sent>>>,
    /// The proxy's UDP address (its TCP one has the same address).
    pub proxy: SocketAddr,
    pub db: Option<ferrosip_db::Db>,
    vm: Vm,
    pub tmp: TempDir,
}

/// A load error of the config (exit 2: the test file cannot run).
pub struct LoadFailure(pub String);

impl Session {
    pub fn start(
        file: &TestFile,
        file_dir: &Path,
        rows: &[Row],
        registry_for: RegistryFor,
        trace: Option<Arc<dyn RouteObserver>>,
    ) -> Result<Session, LoadFailure> {
        let tmp = TempDir::new().map_err(LoadFailure)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-async")
            .enable_all()
            .build()
            .map_err(|e| LoadFailure(format!("cannot start a runtime: {e}")))?;
        let db_url = format!("sqlite://{}", tmp.0.join("test.db").display());
        let fill = |s: &str| {
            s.replace("{db}", &db_url)
                .replace("{tmp}", &tmp.0.display().to_string())
                .replace("{dir}", &file_dir.display().to_string())
        };
        let db = match &file.database {
            None => None,
            Some(d) => Some(
                runtime
                    .block_on(seed(&db_url, &d.modules, d.rows.iter().chain(rows)))
                    .map_err(|e| LoadFailure(format!("database: {e}")))?,
            ),
        };
        let config_path = file_dir.join(&file.config);
        let defines = file
            .defines
            .iter()
            .map(|d| match d.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(fill(v))),
                None => (d.clone(), None),
            })
            .collect();
        let opts = ferrosip_script::LoadOptions {
            defines,
            ..Default::default()
        };
        let names = ferrosip_script::loaded_module_names(&config_path, &opts).unwrap_or_default();
        let registry = Arc::new(registry_for(&names));
        // Stopped before anything loads, so that modules and pseudo-variables read the
        // test's time from the first message on, and only `wait` moves it.
        let clock = registry.clock();
        match file.now {
            Some(ref now) => clock.stop_at(now.to_system_time().map_err(LoadFailure)?),
            None => clock.stop(),
        }
        let opts = ferrosip_script::LoadOptions {
            shared_registry: Some(ferrosip_script::SharedRegistry(registry.clone())),
            ..opts
        };
        let mut loaded = {
            let _in_runtime = runtime.enter();
            ferrosip_script::load_file(&config_path, &opts, &registry).map_err(|e| {
                LoadFailure(format!(
                    "{} does not load:\n{}",
                    config_path.display(),
                    e.messages.join("\n")
                ))
            })?
        };
        let proxy = proxy_address(file, &mut loaded).map_err(LoadFailure)?;
        let config = ferrosip_server::ServerConfig::from_globals(&loaded.globals)
            .map_err(|e| LoadFailure(e.to_string()))?;
        let sent = Arc::new(Mutex::new(Vec::new()));
        let mut transports = Transports::default();
        for proto in [Proto::Udp, Proto::Tcp] {
            let local = config
                .listen
                .iter()
                .filter(|l| l.proto == proto)
                .map(|l| l.addr)
                .collect();
            transports.add(Arc::new(Capture {
                proto,
                local,
                sent: sent.clone(),
            }));
        }
        let dns = if file.dns.is_empty() {
            None
        } else {
            let mut table = std::collections::HashMap::new();
            for (name, ips) in &file.dns {
                let ips = ips
                    .iter()
                    .map(|ip| {
                        ip.parse::<IpAddr>()
                            .map_err(|_| LoadFailure(format!("dns: {name}: bad address {ip:?}")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                table.insert(name.to_ascii_lowercase(), ips);
            }
            Some(Arc::new(table))
        };
        let recorder = Arc::new(Recorder {
            next: trace,
            ..Recorder::default()
        });
        runtime
            .block_on(ferrosip_server::run_start_hooks(&loaded, runtime.handle()))
            .map_err(LoadFailure)?;
        let engine = ferrosip_server::assemble(
            &loaded,
            config,
            transports,
            runtime.handle().clone(),
            ferrosip_server::Layers {
                clock: clock.clone(),
                observer: Some(recorder.clone() as Arc<dyn RouteObserver>),
                dns,
            },
            None,
        );
        {
            let _in_runtime = runtime.enter();
            ferrosip_server::run_ready_hooks(&loaded, &engine);
        }
        Ok(Session {
            runtime,
            engine,
            registry,
            recorder,
            clock,
            sent,
            proxy,
            db,
            vm: Vm::new(),
            tmp,
        })
    }

    /// Sets the pseudo-variables each route run records from now on.
    pub fn want(&self, pvs: &[String]) -> Result<(), String> {
        let binder = ferrosip_api::pv::Binder::new(&self.registry);
        let parsed = pvs
            .iter()
            .map(|t| {
                binder
                    .parse_pv(t)
                    .map(|pv| (t.clone(), pv))
                    .map_err(|e| format!("pv {t:?}: {}", e.message))
            })
            .collect::<Result<Vec<_>, _>>()?;
        *lock(&self.recorder.wanted) = parsed;
        Ok(())
    }

    /// The proxy receives `bytes` from `source` over `proto` (on its own address).
    pub fn receive(&mut self, proto: Proto, source: SocketAddr, local: SocketAddr, bytes: Bytes) {
        let _in_runtime = self.runtime.enter();
        let connection = (proto != Proto::Udp).then_some(ConnectionId(source));
        self.engine.handle_guarded(
            &mut self.vm,
            Inbound {
                bytes,
                source,
                local,
                proto,
                connection,
            },
        );
        self.settle();
    }

    /// Moves the test clock by `by` in 10 ms ticks, firing tm's timers as they fall due;
    /// once no tm timer is left, the rest of the wait passes in one move (nothing else
    /// fires on the test clock: expiry times are compared when read).
    pub fn wait(&mut self, by: Duration) {
        let _in_runtime = self.runtime.enter();
        let tick = Duration::from_millis(10);
        let mut left = by;
        while !left.is_zero() {
            let step = left.min(tick);
            self.clock.advance(step);
            left -= step;
            if let Some(tm) = &self.engine.server.tm {
                tm.fire_due_timers();
            }
            self.settle();
            // Asked after the step settled: what fired or ran may have armed new timers.
            let idle = self
                .engine
                .server
                .tm
                .as_ref()
                .is_none_or(|tm| tm.fire_due_timers());
            if idle && !left.is_zero() {
                self.clock.advance(left);
                left = Duration::ZERO;
                self.settle();
            }
        }
    }

    /// Waits (real time, at most 10 s) until no route run waits on the runtime, so that
    /// what a step sent is all there when its expectations are checked.
    fn settle(&self) {
        let stats = &self.engine.server.stats;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut quiet = 0;
        let mut seen = lock(&self.sent).len();
        while std::time::Instant::now() < deadline {
            if stats.waiting_routes.load(Ordering::Relaxed) > 0 {
                quiet = 0;
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            if !self.engine.script.load().awaits {
                return;
            }
            // A finished run may have spawned work (a reply sent from the runtime): the
            // step is over once nothing more is sent for a few polls.
            let now = lock(&self.sent).len();
            if now == seen {
                quiet += 1;
                if quiet >= 3 {
                    return;
                }
            } else {
                seen = now;
                quiet = 0;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Rows of `table` matching `conditions`.
    pub fn count_rows(
        &self,
        table: &str,
        conditions: &std::collections::BTreeMap<String, toml::Value>,
    ) -> Result<usize, String> {
        let db = self
            .db
            .as_ref()
            .ok_or("a `db` expectation needs a [database] in the test file")?;
        let vals: Vec<(String, ferrosip_db::DbValue)> = conditions
            .iter()
            .map(|(k, v)| Ok((k.clone(), db_value(v)?)))
            .collect::<Result<_, String>>()?;
        let conds: Vec<ferrosip_db::Cond> = vals
            .iter()
            .map(|(k, v)| ferrosip_db::Cond::eq(k, v.clone()))
            .collect();
        self.runtime
            .block_on(db.select(table, &[], &conds, None))
            .map(|rows| rows.len())
            .map_err(|e| e.to_string())
    }
}

/// Where the proxy listens: the test file's `proxy`, else the config's first UDP
/// `listen=`, else 127.0.0.1 on the config's `port`. Sockets the config does not have are
/// added as `-l` adds them.
fn proxy_address(
    file: &TestFile,
    loaded: &mut ferrosip_script::Loaded,
) -> Result<SocketAddr, String> {
    let has_listen = loaded.globals.get("listen").is_some_and(|v| !v.is_empty());
    let addr: SocketAddr = match &file.proxy {
        Some(p) => p
            .parse()
            .map_err(|_| format!("proxy = {p:?} is not address:port"))?,
        None if has_listen => {
            let config = ferrosip_server::ServerConfig::from_globals(&loaded.globals)
                .map_err(|e| e.to_string())?;
            let first = config
                .listen
                .iter()
                .find(|l| l.proto == Proto::Udp)
                .or(config.listen.first())
                .ok_or("the config listens nowhere")?;
            return Ok(first.addr);
        }
        None => {
            let port = loaded
                .globals
                .get("port")
                .and_then(|v| v.last())
                .and_then(|v| v.unquoted().trim().parse().ok())
                .unwrap_or(5060);
            SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port)
        }
    };
    let listen = loaded.globals.entry("listen".to_string()).or_default();
    for proto in ["udp", "tcp"] {
        listen.push(ferrosip_script::ast::GlobalValue {
            raw: format!("{proto}:{addr}"),
            span: Default::default(),
            parsed: None,
        });
    }
    Ok(addr)
}

fn db_value(v: &toml::Value) -> Result<ferrosip_db::DbValue, String> {
    Ok(match v {
        toml::Value::String(s) => ferrosip_db::DbValue::Str(s.clone()),
        toml::Value::Integer(i) => ferrosip_db::DbValue::Int(*i),
        toml::Value::Float(f) => ferrosip_db::DbValue::Double(*f),
        toml::Value::Boolean(b) => ferrosip_db::DbValue::Int(i64::from(*b)),
        other => return Err(format!("{other:?} is not a column value")),
    })
}

/// Creates the test's SQLite database: the modules' tables, then the rows.
async fn seed(
    url: &str,
    modules: &[String],
    rows: impl Iterator<Item = &Row>,
) -> Result<ferrosip_db::Db, String> {
    let db = ferrosip_db::Db::connect(url)
        .await
        .map_err(|e| e.to_string())?;
    let modules: Vec<&str> = modules.iter().map(String::as_str).collect();
    ferrosip_db::schema::init(&db, Some(&modules))
        .await
        .map_err(|e| e.to_string())?;
    for row in rows {
        let cols: Vec<&str> = row.values.keys().map(String::as_str).collect();
        let vals = row
            .values
            .values()
            .map(db_value)
            .collect::<Result<Vec<_>, _>>()?;
        db.insert(&row.table, &cols, &vals)
            .await
            .map_err(|e| format!("{}: {e}", row.table))?;
    }
    Ok(db)
}

pub fn lock_len(sent: &Mutex<Vec<Sent>>) -> usize {
    lock(sent).len()
}

/// What was sent from index `from` on.
pub fn lock_slice(sent: &Mutex<Vec<Sent>>, from: usize) -> Vec<Sent> {
    lock(sent)
        .get(from..)
        .map(<[Sent]>::to_vec)
        .unwrap_or_default()
}

impl Recorder {
    pub fn runs_len(&self) -> usize {
        lock(&self.runs).len()
    }

    pub fn runs_since(&self, from: usize) -> Vec<RouteRecord> {
        lock(&self.runs)
            .get(from..)
            .map(<[RouteRecord]>::to_vec)
            .unwrap_or_default()
    }
}
