//! The running module: parameters checked at load, the default rule files (read at load,
//! as Kamailio's mod_init does), the database handle (at start) and the current snapshots
//! of the address and trusted tables, each swapped whole by its reload while calls in
//! flight keep the one they took.

use crate::address::{AddrEntry, AddressTable, SubnetMatch};
use crate::rules::RuleFile;
use crate::trusted::{self, TrustedEntry, TrustedTable};
use ferrosip_api::{AvpNames, ModuleParams};
use ferrosip_db::{Cond, Db, DbValue};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

/// `load_backends` bits.
const LOAD_ADDRESS: i64 = 1;
const LOAD_TRUSTED: i64 = 2;
/// How many distinct rule files (basename forms) one process keeps; a script that builds
/// file names from message content cannot grow the cache without bound.
const RULE_FILES_LIMIT: usize = 64;

/// Table and column names, checked as SQL identifiers at load.
#[derive(Clone, Debug)]
pub struct Columns {
    pub address_table: String,
    pub grp: String,
    pub ip_addr: String,
    pub mask: String,
    pub port: String,
    pub trusted_table: String,
    pub source: String,
    pub proto: String,
    pub from: String,
    pub ruri: String,
    pub tag: String,
    pub priority: String,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub db_url: Option<String>,
    pub cols: Columns,
    /// db_mode 1: the trusted table is kept in memory; 0: read for each call.
    pub trusted_cached: bool,
    pub tag_avp: Option<u32>,
    pub tag_all: bool,
    pub max_subnets: usize,
    pub subnet_match: SubnetMatch,
    pub load_address: bool,
    pub load_trusted: bool,
    pub reload_delta: Duration,
    pub check_all_branches: bool,
    pub allow_suffix: String,
    pub deny_suffix: String,
}

/// `$avp(name)`, `$avp(s:name)`, `$avp(i:7)` or a bare name -> the AVP's name.
pub fn avp_param(param: &str, value: &str) -> Result<Option<String>, String> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let inner = v
        .strip_prefix("$avp(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or(v);
    let name = inner
        .strip_prefix("s:")
        .or_else(|| inner.strip_prefix("i:"))
        .unwrap_or(inner);
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("{param}: '{value}' is not an AVP ($avp(name))"));
    }
    Ok(Some(name.to_string()))
}

impl Config {
    pub fn from_params(p: &ModuleParams, names: &AvpNames) -> Result<Config, String> {
        let ident = |name: &str| -> Result<String, String> {
            let v = p.string(name);
            ferrosip_db::check_identifier(&v)
                .map(str::to_string)
                .map_err(|e| format!("{name}: {e}"))
        };
        let db_mode = p.int("db_mode");
        if !(0..=1).contains(&db_mode) {
            return Err(format!("db_mode {db_mode} is not 0 or 1"));
        }
        if !p.string("address_file").trim().is_empty() {
            return Err("address_file: reading address groups from a file is not supported; use address_table".into());
        }
        let max_subnets = p.int("max_subnets");
        if !(0..=1_000_000).contains(&max_subnets) {
            return Err(format!("max_subnets {max_subnets} is not 0-1000000"));
        }
        let subnet_match = match p.int("subnet_match_mode") {
            0 => SubnetMatch::FirstGroup,
            1 => SubnetMatch::MostSpecific,
            m => return Err(format!("subnet_match_mode {m} is not 0 or 1")),
        };
        let delta = p.int("reload_delta");
        if delta < 0 {
            return Err(format!("reload_delta {delta} is negative"));
        }
        let tag_mode = p.int("peer_tag_mode");
        if !(0..=1).contains(&tag_mode) {
            return Err(format!("peer_tag_mode {tag_mode} is not 0 or 1"));
        }
        let db_url = Some(p.string("db_url")).filter(|u| !u.trim().is_empty());
        let backends = p.int("load_backends");
        Ok(Config {
            db_url,
            cols: Columns {
                address_table: ident("address_table")?,
                grp: ident("grp_col")?,
                ip_addr: ident("ip_addr_col")?,
                mask: ident("mask_col")?,
                port: ident("port_col")?,
                trusted_table: ident("trusted_table")?,
                source: ident("source_col")?,
                proto: ident("proto_col")?,
                from: ident("from_col")?,
                ruri: ident("ruri_col")?,
                tag: ident("tag_col")?,
                priority: ident("priority_col")?,
            },
            trusted_cached: db_mode == 1,
            tag_avp: avp_param("peer_tag_avp", &p.string("peer_tag_avp"))?.map(|n| names.slot(&n)),
            tag_all: tag_mode == 1,
            max_subnets: max_subnets as usize,
            subnet_match,
            load_address: backends & LOAD_ADDRESS != 0,
            load_trusted: backends & LOAD_TRUSTED != 0,
            reload_delta: Duration::from_secs(delta as u64),
            check_all_branches: p.int("check_all_branches") != 0,
            allow_suffix: p.string("allow_suffix"),
            deny_suffix: p.string("deny_suffix"),
        })
    }
}

/// An allow/deny pair of rule files.
#[derive(Debug, Default)]
pub struct RulePair {
    pub allow: RuleFile,
    pub deny: RuleFile,
}

impl RulePair {
    pub fn load(allow: &Path, deny: &Path) -> Result<RulePair, String> {
        Ok(RulePair {
            allow: RuleFile::load(allow)?,
            deny: RuleFile::load(deny)?,
        })
    }
}

pub struct State {
    pub config: Config,
    pub default_rules: RulePair,
    rule_files: Mutex<HashMap<(PathBuf, PathBuf), Arc<RulePair>>>,
    address: RwLock<Arc<AddressTable>>,
    trusted: RwLock<Arc<TrustedTable>>,
    db: OnceLock<Db>,
    reloading: tokio::sync::Mutex<()>,
    last_reload: Mutex<HashMap<&'static str, Instant>>,
}

impl State {
    pub fn new(config: Config, default_rules: RulePair) -> State {
        State {
            config,
            default_rules,
            rule_files: Mutex::default(),
            address: RwLock::default(),
            trusted: RwLock::default(),
            db: OnceLock::new(),
            reloading: tokio::sync::Mutex::new(()),
            last_reload: Mutex::default(),
        }
    }

    pub fn address(&self) -> Arc<AddressTable> {
        self.address
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn trusted(&self) -> Arc<TrustedTable> {
        self.trusted
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn install_address(&self, t: AddressTable) {
        *self.address.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(t);
    }

    pub fn install_trusted(&self, t: TrustedTable) {
        *self.trusted.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(t);
    }

    pub fn db(&self) -> Option<&Db> {
        self.db.get()
    }

    /// The rule files of a pair of names (read once, then kept).
    pub fn rule_pair(&self, allow: PathBuf, deny: PathBuf) -> Result<Arc<RulePair>, String> {
        let key = (allow, deny);
        if let Some(p) = self
            .rule_files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(p.clone());
        }
        let pair = Arc::new(RulePair::load(&key.0, &key.1)?);
        let mut files = self.rule_files.lock().unwrap_or_else(|e| e.into_inner());
        if files.len() >= RULE_FILES_LIMIT {
            return Err(format!(
                "more than {RULE_FILES_LIMIT} different rule files named by the script"
            ));
        }
        files.insert(key, pair.clone());
        Ok(pair)
    }

    /// Connects and loads the cached tables (awaited on the server's runtime).
    pub async fn start(&self) -> Result<(), String> {
        let Some(url) = &self.config.db_url else {
            return Ok(());
        };
        let db = Db::connect(url)
            .await
            .map_err(|e| format!("cannot connect to db_url: {e}"))?;
        let _ = self.db.set(db);
        if self.config.load_address {
            let s = self.load_address().await?;
            tracing::info!("permissions: {s}");
        }
        if self.config.load_trusted && self.config.trusted_cached {
            let s = self.load_trusted().await?;
            tracing::info!("permissions: {s}");
        }
        Ok(())
    }

    fn started_db(&self) -> Result<&Db, String> {
        match (&self.config.db_url, self.db.get()) {
            (None, _) => Err("permissions: db_url is not set".into()),
            (Some(_), None) => Err("permissions: not started (no database)".into()),
            (Some(_), Some(db)) => Ok(db),
        }
    }

    pub async fn load_address(&self) -> Result<String, String> {
        let db = self.started_db()?;
        let c = &self.config.cols;
        let rows = db
            .select(
                &c.address_table,
                &[&c.grp, &c.ip_addr, &c.mask, &c.port, &c.tag],
                &[],
                None,
            )
            .await
            .map_err(|e| format!("{}: {e}", c.address_table))?;
        let mut entries = Vec::with_capacity(rows.len());
        for (n, row) in rows.iter().enumerate() {
            entries.push(
                address_row(row).map_err(|e| format!("{} row {}: {e}", c.address_table, n + 1))?,
            );
        }
        let table = AddressTable::build(entries, self.config.max_subnets)?;
        let (exact, subnets) = table.len();
        self.install_address(table);
        Ok(format!("loaded {exact} addresses and {subnets} subnets"))
    }

    pub async fn load_trusted(&self) -> Result<String, String> {
        let rows = trusted_rows(self.started_db()?, &self.config.cols, None).await?;
        let table = TrustedTable::build(rows);
        let n = table.len();
        self.install_trusted(table);
        Ok(format!("loaded {n} trusted peers"))
    }

    /// A reload by RPC: refused within `reload_delta` of the previous one of the same
    /// table (Kamailio's rate limit), one at a time; on an error the old table stays.
    pub async fn rpc_reload(&self, which: &'static str) -> Result<String, String> {
        let _one = self.reloading.lock().await;
        {
            let mut last = self.last_reload.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(t) = last.get(which) {
                if t.elapsed() < self.config.reload_delta {
                    return Err(format!(
                        "permissions: {which} reloaded less than reload_delta ({} s) ago",
                        self.config.reload_delta.as_secs()
                    ));
                }
            }
            last.insert(which, Instant::now());
        }
        let result = match which {
            "address" => self.load_address().await,
            _ => {
                if !self.config.trusted_cached {
                    return Err(
                        "permissions: trusted table is not cached (db_mode 0): nothing to reload"
                            .into(),
                    );
                }
                self.load_trusted().await
            }
        };
        result.map_err(|e| {
            format!("permissions: {which} reload failed, the loaded table stays in use: {e}")
        })
    }
}

/// Rows of the trusted table (those of `src` only, when given: db_mode 0), ordered for
/// matching.
pub async fn trusted_rows(
    db: &Db,
    c: &Columns,
    src: Option<&str>,
) -> Result<Vec<TrustedEntry>, String> {
    let conds: Vec<Cond<'_>> = src.map(|s| Cond::eq(&c.source, s)).into_iter().collect();
    let rows = db
        .select(
            &c.trusted_table,
            &[&c.source, &c.proto, &c.from, &c.ruri, &c.tag, &c.priority],
            &conds,
            None,
        )
        .await
        .map_err(|e| format!("{}: {e}", c.trusted_table))?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let text = |i: usize| row.get(i).map(db_text).unwrap_or_default();
        let tag = row.get(4).filter(|v| !v.is_null()).map(db_text);
        out.push(TrustedEntry::new(
            &text(0),
            &text(1),
            &text(2),
            &text(3),
            tag,
            row.get(5).and_then(db_int).unwrap_or(0),
        )?);
    }
    trusted::order(&mut out);
    Ok(out)
}

pub fn db_text(v: &DbValue) -> String {
    match v {
        DbValue::Null => String::new(),
        DbValue::Str(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn db_int(v: &DbValue) -> Option<i64> {
    v.as_int()
        .or_else(|| v.as_f64().map(|f| f as i64))
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// One address row (grp, ip_addr, mask, port, tag).
fn address_row(row: &[DbValue]) -> Result<AddrEntry, String> {
    let grp = row
        .first()
        .and_then(db_int)
        .and_then(|g| u32::try_from(g).ok())
        .ok_or("grp is not a number")?;
    let text = row.get(1).map(db_text).unwrap_or_default();
    let ip: IpAddr = text
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| format!("ip_addr '{text}' is not an IP address"))?;
    let full = if ip.is_ipv4() { 32 } else { 128 };
    let mask = match row.get(2).and_then(db_int) {
        None => full,
        Some(m) => u8::try_from(m)
            .ok()
            .filter(|m| *m <= full)
            .ok_or_else(|| format!("mask {m} is not 0-{full}"))?,
    };
    let port = match row.get(3).and_then(db_int) {
        None => 0,
        Some(p) => u16::try_from(p).map_err(|_| format!("port {p} is not 0-65535"))?,
    };
    let tag = row
        .get(4)
        .filter(|v| !v.is_null())
        .map(db_text)
        .filter(|t| !t.is_empty())
        .map(Arc::from);
    Ok(AddrEntry {
        grp,
        ip,
        mask,
        port,
        tag,
    })
}
