//! `usrloc`: user location storage — the registrar's contact table — in memory, with
//! optional persistence in a database (Kamailio's `location` table).
//!
//! The module has no script functions; `registrar` uses it through [`Usrloc`]:
//! [`Usrloc::domain`] gives the in-memory table of a location domain, edited under a
//! per-shard lock with [`store::Domain::edit`]; the changes an edit journals are handed to
//! [`Usrloc::commit`] (db_mode 1 and 2) or written with [`Usrloc::write`] after a
//! [`Usrloc::fetch`] (db_mode 3, where nothing is kept in memory).
//!
//! How `registrar` finds the instance: the state is created in `declare` (one per
//! registry, so registries built side by side in one process stay independent) and handed
//! over while a script loads: `usrloc`'s init hook leaves its `Arc` in a thread-local slot
//! that `registrar`'s init hook — run next, on the same thread, because Kamailio scripts
//! load usrloc before registrar — takes. No process-wide registry of instances exists.

pub mod contact;
pub mod db;
mod params;
pub mod store;

pub use contact::{Contact, ContactInfo, Field, ALL_METHODS};
pub use store::{Change, Domain, RecordEdit};

use ferrosip_api::{FnError, Module, ModuleBuilder, ModuleParams, RpcValue, StateSlot};
use ferrosip_db::Db;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// How contacts are persisted (`db_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbMode {
    Memory,
    WriteThrough,
    WriteBack,
    DbOnly,
}

/// How a REGISTER's contact is matched to a stored one (`matching_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchingMode {
    Contact,
    ContactCallId,
    ContactPath,
    CallIdOnly,
}

/// The parameters that change behaviour.
#[derive(Clone, Copy, Debug)]
pub struct UlConfig {
    pub db_mode: DbMode,
    pub timer_interval: u64,
    pub use_domain: bool,
    pub desc_time_order: bool,
    pub matching_mode: MatchingMode,
    pub cseq_delay: i64,
    /// `nat_bflag`, when set.
    pub nat_bflag: Option<u8>,
    pub db_load: bool,
    pub db_timer_clean: bool,
    pub shard_bits: u32,
}

impl Default for UlConfig {
    fn default() -> Self {
        UlConfig {
            db_mode: DbMode::Memory,
            timer_interval: 60,
            use_domain: false,
            desc_time_order: false,
            matching_mode: MatchingMode::Contact,
            cseq_delay: 20,
            nat_bflag: None,
            db_load: true,
            db_timer_clean: false,
            shard_bits: 10,
        }
    }
}

impl UlConfig {
    fn from_params(p: &ModuleParams) -> Result<UlConfig, String> {
        let db_mode = match p.int("db_mode") {
            0 => DbMode::Memory,
            1 => DbMode::WriteThrough,
            2 => DbMode::WriteBack,
            3 => DbMode::DbOnly,
            n => return Err(format!("db_mode {n} is not 0, 1, 2 or 3")),
        };
        let matching_mode = match p.int("matching_mode") {
            0 => MatchingMode::Contact,
            1 => MatchingMode::ContactCallId,
            2 => MatchingMode::ContactPath,
            3 => MatchingMode::CallIdOnly,
            n => return Err(format!("matching_mode {n} is not 0, 1, 2 or 3")),
        };
        let nat_bflag = match p.int("nat_bflag") {
            -1 => None,
            n @ 0..=31 => Some(n as u8),
            n => return Err(format!("nat_bflag {n} is not in -1..31")),
        };
        let timer_interval = p.int("timer_interval");
        if timer_interval <= 0 {
            return Err(format!("timer_interval {timer_interval} must be positive"));
        }
        for col in COLUMN_PARAMS {
            let default = col.trim_end_matches("_column");
            let default = match default {
                "user" => "username",
                other => other,
            };
            if p.is_set(col) && p.string(col) != default {
                return Err(format!(
                    "{col}: only Kamailio's column name \"{default}\" is supported"
                ));
            }
        }
        Ok(UlConfig {
            db_mode,
            timer_interval: timer_interval as u64,
            use_domain: p.int("use_domain") != 0,
            desc_time_order: p.int("desc_time_order") != 0,
            matching_mode,
            cseq_delay: p.int("cseq_delay"),
            nat_bflag,
            db_load: p.int("db_load") != 0,
            db_timer_clean: p.int("db_timer_clean") != 0,
            shard_bits: p.int("hash_size").clamp(6, 12) as u32,
        })
    }
}

const COLUMN_PARAMS: [&str; 21] = [
    "ruid_column",
    "user_column",
    "domain_column",
    "contact_column",
    "expires_column",
    "q_column",
    "callid_column",
    "cseq_column",
    "flags_column",
    "cflags_column",
    "user_agent_column",
    "received_column",
    "path_column",
    "socket_column",
    "methods_column",
    "instance_column",
    "reg_id_column",
    "server_id_column",
    "connection_id_column",
    "keepalive_column",
    "partition_column",
];

/// A database write to await (db_mode 1) before answering.
pub type PendingWrite = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// The user location store of one registry.
pub struct Usrloc {
    config: UlConfig,
    db_url: String,
    domains: RwLock<HashMap<String, Arc<Domain>>>,
    db: RwLock<Option<Db>>,
    timer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    ruid_prefix: String,
    ruid_counter: AtomicU64,
    /// Expiry times are absolute Unix seconds on this clock (the registry's, so that
    /// `ferrosip test` moves it).
    clock: ferrosip_api::Clock,
}

impl Default for Usrloc {
    fn default() -> Self {
        Usrloc::new(UlConfig::default())
    }
}

fn read<T: Clone>(l: &RwLock<T>) -> T {
    l.read().unwrap_or_else(|e| e.into_inner()).clone()
}

impl Usrloc {
    pub fn new(config: UlConfig) -> Usrloc {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        // Unique across restarts and across servers sharing one table: start time, and
        // the pid mixed with the sub-second clock.
        let salt = (std::process::id()).wrapping_mul(2_654_435_761) ^ now.subsec_nanos();
        Usrloc {
            config,
            db_url: String::new(),
            domains: RwLock::new(HashMap::new()),
            db: RwLock::new(None),
            timer: Mutex::new(None),
            ruid_prefix: format!("uloc-{:x}-{:x}-", now.as_secs(), salt),
            ruid_counter: AtomicU64::new(0),
            clock: ferrosip_api::Clock::system(),
        }
    }

    /// The store the module's init builds: its parameters checked, `tables` (those the
    /// script names, and `preload`) created, to be loaded from the database at start.
    pub fn from_params(p: &ModuleParams, tables: Vec<String>) -> Result<Usrloc, String> {
        let cfg = UlConfig::from_params(p)?;
        let db_url = p.string("db_url");
        if cfg.db_mode != DbMode::Memory && db_url.is_empty() {
            return Err("db_mode needs a db_url".to_string());
        }
        let mut ul = Usrloc::new(cfg);
        ul.db_url = db_url;
        let preload = p.string("preload");
        for t in tables
            .iter()
            .chain((!preload.is_empty()).then_some(&preload))
        {
            ul.domain(t);
        }
        Ok(ul)
    }

    /// Reads expiry times from `clock` instead of the system's.
    pub fn with_clock(mut self, clock: ferrosip_api::Clock) -> Usrloc {
        self.clock = clock;
        self
    }

    /// The clock expiry times are measured on.
    pub fn clock(&self) -> ferrosip_api::Clock {
        self.clock.clone()
    }

    /// Seconds since the Unix epoch on the store's clock.
    pub fn unix_now(&self) -> i64 {
        self.clock.unix_secs() as i64
    }

    pub fn config(&self) -> UlConfig {
        self.config
    }

    /// The table named `name`, created empty on first use.
    pub fn domain(&self, name: &str) -> Arc<Domain> {
        if let Some(d) = self
            .domains
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return d.clone();
        }
        let bits = self.config().shard_bits;
        self.domains
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(Domain::new(name, bits)))
            .clone()
    }

    pub fn domains(&self) -> Vec<Arc<Domain>> {
        self.domains
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// A new record unique id.
    pub fn new_ruid(&self) -> Vec<u8> {
        let n = self.ruid_counter.fetch_add(1, Ordering::Relaxed);
        format!("{}{n}", self.ruid_prefix).into_bytes()
    }

    /// Whether edits should be journaled (something is persisted), unless the caller
    /// asked for memory only.
    pub fn persists(&self, mem_only: bool) -> bool {
        !mem_only && self.config().db_mode != DbMode::Memory
    }

    fn database(&self) -> Result<Db, String> {
        read(&self.db).ok_or_else(|| {
            "usrloc: no database connection (the server did not start usrloc)".to_string()
        })
    }

    /// Hands the journal of a memory edit to storage: db_mode 2 queues it for the timer,
    /// db_mode 1 returns the write to await before replying.
    pub fn commit(&self, table: &str, changes: Vec<Change>) -> Option<PendingWrite> {
        if changes.is_empty() {
            return None;
        }
        match self.config().db_mode {
            DbMode::Memory => None,
            DbMode::WriteBack => {
                self.domain(table).queue(changes);
                None
            }
            DbMode::WriteThrough | DbMode::DbOnly => Some(self.write(table, changes)),
        }
    }

    /// Writes changes to the database.
    pub fn write(&self, table: &str, changes: Vec<Change>) -> PendingWrite {
        let db = self.database();
        let use_domain = self.config().use_domain;
        let table = table.to_string();
        Box::pin(async move {
            let db = db?;
            db::apply(&db, &table, &changes, use_domain, 0).await
        })
    }

    /// The contacts of `aor` as stored in the database (db_mode 3).
    pub fn fetch(
        &self,
        table: &str,
        aor: &[u8],
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Contact>, String>> + Send>> {
        let db = self.database();
        let use_domain = self.config().use_domain;
        let table = table.to_string();
        let aor = aor.to_vec();
        Box::pin(async move { db::fetch(&db?, &table, &aor, use_domain).await })
    }

    /// Connects and loads (db_mode 1 and 2) every known table.
    async fn start(self: Arc<Self>) -> Result<(), String> {
        let cfg = self.config();
        if cfg.db_mode == DbMode::Memory {
            return Ok(());
        }
        let url = &self.db_url;
        let db = Db::connect(url)
            .await
            .map_err(|e| format!("cannot connect to {url}: {e}"))?;
        *self.db.write().unwrap_or_else(|e| e.into_inner()) = Some(db.clone());
        if !cfg.db_load || cfg.db_mode == DbMode::DbOnly {
            return Ok(());
        }
        self.load_tables(&db).await.map(|_| ())
    }

    /// Loads every known table's unexpired contacts from `db` into memory, row by row as
    /// the database hands them out (no copy of the whole table in between); returns how
    /// many were loaded.
    pub async fn load_tables(&self, db: &Db) -> Result<usize, String> {
        let use_domain = self.config().use_domain;
        let now = self.unix_now();
        let mut total = 0;
        for dom in self.domains() {
            let mut loaded = 0usize;
            db.select_each(dom.name(), &db::COLUMNS, &[], None, |row| {
                if let (Some(aor), Some(c)) =
                    (db::aor_of_row(row, use_domain), db::contact_of_row(row))
                {
                    if c.is_valid(now) {
                        dom.load(&aor, c);
                        loaded += 1;
                    }
                }
                std::ops::ControlFlow::Continue(())
            })
            .await
            .map_err(|e| format!("cannot load table {}: {e}", dom.name()))?;
            tracing::info!(
                table = dom.name(),
                contacts = loaded,
                "usrloc: table loaded"
            );
            total += loaded;
        }
        Ok(total)
    }

    /// One timer run: expire contacts, write pending changes.
    pub async fn tick(&self, now: i64) {
        let cfg = self.config();
        let db = read(&self.db);
        for dom in self.domains() {
            if cfg.db_mode == DbMode::WriteBack {
                self.flush(&dom).await;
            }
            if cfg.db_mode != DbMode::DbOnly {
                dom.expire(now);
            }
            let clean_db = match cfg.db_mode {
                DbMode::Memory => false,
                DbMode::WriteThrough | DbMode::WriteBack => true,
                DbMode::DbOnly => cfg.db_timer_clean,
            };
            if let (true, Some(db)) = (clean_db, db.as_ref()) {
                if let Err(e) = db::delete_expired(db, dom.name(), now).await {
                    tracing::warn!(table = dom.name(), error = %e, "usrloc: cannot delete expired rows");
                }
            }
        }
    }

    /// Writes the changes db_mode 2 queued; on failure they are queued again.
    pub async fn flush(&self, dom: &Domain) {
        let changes = dom.take_pending();
        if changes.is_empty() {
            return;
        }
        let Some(db) = read(&self.db) else {
            dom.requeue(changes);
            return;
        };
        let use_domain = self.config().use_domain;
        // Written one by one so that a failure keeps exactly the unwritten ones.
        for (i, change) in changes.iter().enumerate() {
            if let Err(e) =
                db::apply(&db, dom.name(), std::slice::from_ref(change), use_domain, 0).await
            {
                tracing::warn!(table = dom.name(), error = %e, "usrloc: write-back failed, will retry");
                dom.requeue(changes[i..].to_vec());
                return;
            }
        }
    }

    fn start_timer(self: &Arc<Self>, rt: &tokio::runtime::Handle) {
        let interval = Duration::from_secs(self.config().timer_interval);
        let ul = Arc::downgrade(self);
        let task = rt.spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(ul) = ul.upgrade() else { return };
                let now = ul.unix_now();
                ul.tick(now).await;
            }
        });
        if let Some(old) = self
            .timer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(task)
        {
            old.abort();
        }
    }

    /// The stop hook: ends the timer and, in write-back mode, writes the pending changes.
    async fn stop(&self) {
        if let Some(t) = self.timer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
        if self.config().db_mode == DbMode::WriteBack {
            let pending: usize = self.domains().iter().map(|d| d.pending_len()).sum();
            for dom in self.domains() {
                self.flush(&dom).await;
            }
            let left: usize = self.domains().iter().map(|d| d.pending_len()).sum();
            tracing::info!(
                changes = pending.saturating_sub(left),
                unwritten = left,
                "usrloc: write-back cache flushed at stop"
            );
        }
    }
}

/// What other modules get of usrloc through the registry (Kamailio's `bind_usrloc`):
/// the store built by the module's init, and the tables a script names, collected while
/// it compiles so that init creates (and start loads) them before the first request.
pub struct UsrlocApi {
    store: StateSlot<Usrloc>,
    noted_tables: Arc<Mutex<Vec<String>>>,
}

impl UsrlocApi {
    /// Called by registrar's argument fixup for every table a script names.
    pub fn note_table(&self, name: &str) {
        let mut t = self.noted_tables.lock().unwrap_or_else(|e| e.into_inner());
        if !t.iter().any(|n| n == name) {
            t.push(name.to_string());
        }
    }

    /// The store, once a script loading usrloc has been loaded.
    pub fn store(&self) -> Result<Arc<Usrloc>, FnError> {
        self.store.get()
    }
}

/// The `usrloc` module.
pub struct UsrlocModule;

impl Module for UsrlocModule {
    fn name(&self) -> &'static str {
        "usrloc"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("User location storage (the registrar's contact table): in memory, sharded by address of record, with optional persistence in Kamailio's `location` table (db_mode 1 write-through, 2 write-back, 3 database only). No script functions of its own: registrar's save(), lookup() and registered() use it.");
        m.example(include_str!("../example.cfg"));
        params::declare(m);
        let noted_tables = Arc::new(Mutex::new(Vec::new()));
        let store = {
            let noted = noted_tables.clone();
            let clock = m.clock();
            m.state(move |p| {
                let tables = std::mem::take(&mut *noted.lock().unwrap_or_else(|e| e.into_inner()));
                Ok(Usrloc::from_params(p, tables)?.with_clock(clock.clone()))
            })
        };
        // registrar reaches the store through the registry.
        m.provide(Arc::new(UsrlocApi {
            store: store.clone(),
            noted_tables,
        }));
        {
            let store = store.clone();
            m.on_start(move |env| {
                let (ul, rt) = (store.get(), env.runtime.clone());
                async move {
                    let ul = ul.map_err(|e| e.message)?;
                    ul.clone().start().await?;
                    ul.start_timer(&rt);
                    Ok(())
                }
            });
        }
        {
            let store = store.clone();
            m.on_stop_async(move |_env| {
                let ul = store.get();
                async move {
                    if let Ok(ul) = ul {
                        ul.stop().await;
                    }
                }
            });
        }
        {
            let store = store.clone();
            m.rpc(
                "ul.dump",
                "Lists every location table with its addresses of record and contacts (memory; empty in db_mode 3).",
                move |_args| Ok(dump(&*store.get().map_err(|e| e.message)?)),
            );
        }
        m.rpc(
            "ul.stats",
            "Number of records and contacts per location table.",
            move |_args| {
                let ul = store.get().map_err(|e| e.message)?;
                Ok(RpcValue::Array(
                    ul.domains()
                        .iter()
                        .map(|d| {
                            RpcValue::Struct(vec![
                                ("table".into(), RpcValue::Str(d.name().into())),
                                ("records".into(), RpcValue::Int(d.record_count() as i64)),
                                ("contacts".into(), RpcValue::Int(d.contact_count() as i64)),
                            ])
                        })
                        .collect(),
                ))
            },
        );
    }
}

fn dump(ul: &Usrloc) -> RpcValue {
    let now = ul.unix_now();
    let text = |b: &[u8]| RpcValue::Str(String::from_utf8_lossy(b).into_owned());
    let mut tables = Vec::new();
    for dom in ul.domains() {
        let mut records = Vec::new();
        dom.for_each(|aor, contacts| {
            let contacts = contacts
                .iter()
                .map(|c| {
                    RpcValue::Struct(vec![
                        ("address".into(), text(c.uri())),
                        ("expires".into(), RpcValue::Int(c.remaining(now))),
                        ("q".into(), RpcValue::Int(i64::from(c.q))),
                        ("callid".into(), text(c.callid())),
                        ("cseq".into(), RpcValue::Int(i64::from(c.cseq))),
                        ("received".into(), text(c.received())),
                        ("path".into(), text(c.path())),
                        ("user_agent".into(), text(c.user_agent())),
                        ("socket".into(), text(c.socket())),
                        ("ruid".into(), text(c.ruid())),
                    ])
                })
                .collect();
            records.push(RpcValue::Struct(vec![
                ("aor".into(), text(aor)),
                ("contacts".into(), RpcValue::Array(contacts)),
            ]));
        });
        tables.push(RpcValue::Struct(vec![
            ("table".into(), RpcValue::Str(dom.name().into())),
            ("records".into(), RpcValue::Array(records)),
        ]));
    }
    RpcValue::Array(tables)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrosip_api::Value;

    #[test]
    fn ruids_are_unique() {
        let ul = Usrloc::default();
        let a = ul.new_ruid();
        let b = ul.new_ruid();
        assert_ne!(a, b);
        assert!(a.starts_with(b"uloc-"));
    }

    #[test]
    fn config_from_params_checks_values() {
        let mut reg = ferrosip_api::Registry::new();
        reg.register(&UsrlocModule);
        let def = reg.module("usrloc").unwrap();
        let mut p = def.default_params();
        let cfg = UlConfig::from_params(&p).unwrap();
        assert_eq!(cfg.db_mode, DbMode::Memory);
        assert_eq!(cfg.cseq_delay, 20);
        p.push("db_mode", Value::Int(4));
        assert!(UlConfig::from_params(&p).is_err());
        let mut p = def.default_params();
        p.push("user_column", Value::from_string("username".into()));
        assert!(UlConfig::from_params(&p).is_ok());
        p.push("user_column", Value::from_string("user".into()));
        assert!(UlConfig::from_params(&p).is_err());
    }

    #[test]
    fn a_bad_parameter_fails_the_init_naming_it() {
        let mut reg = ferrosip_api::Registry::new();
        reg.register(&UsrlocModule);
        let def = reg.module("usrloc").unwrap();
        let init_error = |p: &ModuleParams| def.init.iter().find_map(|h| h(p).err());
        let mut p = def.default_params();
        assert_eq!(init_error(&p), None);
        p.push("db_mode", Value::Int(2));
        p.push("db_url", Value::from_string(String::new()));
        let e = init_error(&p).unwrap();
        assert!(e.contains("db_mode") && e.contains("db_url"), "{e}");
        let mut p = def.default_params();
        p.push("db_mode", Value::Int(7));
        assert!(init_error(&p).unwrap().contains("db_mode"));
    }

    #[test]
    fn tables_noted_through_the_api_exist_after_init() {
        let mut reg = ferrosip_api::Registry::new();
        reg.register(&UsrlocModule);
        let api = reg.api::<UsrlocApi>().unwrap();
        assert!(api.store().is_err(), "no state before init");
        api.note_table("location");
        api.note_table("aliases");
        let def = reg.module("usrloc").unwrap();
        let mut p = def.default_params();
        p.push("preload", Value::from_string("pbx".into()));
        for h in &def.init {
            h(&p).unwrap();
        }
        let mut names: Vec<_> = api
            .store()
            .unwrap()
            .domains()
            .iter()
            .map(|d| d.name().to_string())
            .collect();
        names.sort();
        assert_eq!(names, ["aliases", "location", "pbx"]);
    }

    #[tokio::test]
    async fn timer_expires_contacts_in_memory() {
        let ul = Arc::new(Usrloc::default());
        let dom = ul.domain("location");
        let now = ul.unix_now();
        dom.edit(b"alice", None, |r| {
            r.insert(ContactInfo {
                uri: b"sip:alice@10.0.0.1".to_vec(),
                ruid: ul.new_ruid(),
                expires: now + 30,
                ..Default::default()
            })
            .unwrap()
        });
        ul.tick(now + 10).await;
        assert_eq!(dom.contact_count(), 1);
        ul.tick(now + 31).await;
        assert_eq!(dom.contact_count(), 0);
    }
}
