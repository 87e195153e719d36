//! The running module: its configuration (from the parameters, at load), the database
//! handle (at start) and the current snapshot of the tables, swapped whole on reload.

use crate::data::{GwOrdering, Snapshot};
use crate::load::{self, Limits, Tables};
use ferrosip_api::{AvpNames, ModuleParams};
use ferrosip_db::Db;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// The AVP slots named by the module parameters.
#[derive(Clone, Copy, Debug)]
pub struct AvpSlots {
    pub gw_uri: u32,
    pub ruri_user: u32,
    pub tag: Option<u32>,
    pub flags: Option<u32>,
    pub rule_id: Option<u32>,
    pub defunct_gw: Option<u32>,
    pub lcr_id: Option<u32>,
}

/// What the parameters say, checked once at load.
#[derive(Clone, Debug)]
pub struct Config {
    pub db_url: String,
    pub tables: Tables,
    pub limits: Limits,
    pub avps: AvpSlots,
    pub defunct_capability: bool,
    /// Message flag that keeps the R-URI user as it is (`dont_strip_or_prefix_flag`).
    pub keep_user_flag: Option<u8>,
    pub ordering: GwOrdering,
}

/// `$avp(name)`, `$avp(s:name)`, `$avp(i:709)` or a bare name -> the AVP's name.
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
        let slot = |param: &str| -> Result<Option<u32>, String> {
            Ok(avp_param(param, &p.string(param))?.map(|n| names.slot(&n)))
        };
        let required = |param: &str| -> Result<u32, String> {
            slot(param)?
                .ok_or_else(|| format!("{param} must be set (an AVP, e.g. \"$avp(lcr_gw)\")"))
        };
        if !p.string("mt_pv_values").trim().is_empty() {
            return Err("mt_pv_values: matching caller URIs against an mtree needs the mtree module, which Ferrosip does not have".into());
        }
        if p.int("ping_interval") > 0 {
            return Err("ping_interval: OPTIONS probing of inactivated gateways is not implemented (use defunct_gw())".into());
        }
        let lcr_count = p.int("lcr_count");
        if !(1..=65_535).contains(&lcr_count) {
            return Err(format!("lcr_count {lcr_count} is not 1-65535"));
        }
        let gw_count = p.int("lcr_gw_count");
        if gw_count < 1 {
            return Err(format!("lcr_gw_count {gw_count} must be positive"));
        }
        let keep_user_flag = match p.int("dont_strip_or_prefix_flag") {
            -1 => None,
            f @ 0..=63 => Some(f as u8),
            f => {
                return Err(format!(
                    "dont_strip_or_prefix_flag {f} is not -1 or a flag 0-63"
                ))
            }
        };
        let ordering = match p.int("priority_ordering") {
            0 => GwOrdering::PrefixFirst,
            1 => GwOrdering::PriorityOnly,
            o => return Err(format!("priority_ordering {o} is not 0 or 1")),
        };
        let defunct_capability = p.int("defunct_capability") != 0;
        let avps = AvpSlots {
            gw_uri: required("gw_uri_avp")?,
            ruri_user: required("ruri_user_avp")?,
            tag: slot("tag_avp")?,
            flags: slot("flags_avp")?,
            rule_id: slot("rule_id_avp")?,
            defunct_gw: slot("defunct_gw_avp")?,
            lcr_id: slot("lcr_id_avp")?,
        };
        if defunct_capability && (avps.defunct_gw.is_none() || avps.lcr_id.is_none()) {
            return Err(
                "defunct_capability needs the defunct_gw_avp and lcr_id_avp parameters".into(),
            );
        }
        Ok(Config {
            db_url: p.string("db_url"),
            tables: Tables::from_params(p)?,
            limits: Limits {
                lcr_count: lcr_count as u32,
                gw_count: gw_count as u32,
            },
            avps,
            defunct_capability,
            keep_user_flag,
            ordering,
        })
    }
}

/// The module state shared by the handlers, the RPC commands and the reload signal:
/// built from the parameters by init; the database and the runtime come with the start
/// hook.
pub struct State {
    pub config: Config,
    snapshot: RwLock<Arc<Snapshot>>,
    db: OnceLock<Db>,
    runtime: OnceLock<tokio::runtime::Handle>,
    /// One reload at a time; a second request waits and then loads again (it may have
    /// been made for rows written after the first one read them).
    reloading: tokio::sync::Mutex<()>,
    /// The last reload error, for the RPC answer and the logs.
    pub last_error: Mutex<Option<String>>,
}

impl State {
    pub fn new(config: Config) -> State {
        State {
            config,
            snapshot: RwLock::default(),
            db: OnceLock::new(),
            runtime: OnceLock::new(),
            reloading: tokio::sync::Mutex::new(()),
            last_error: Mutex::new(None),
        }
    }

    /// The tables as last loaded; calls in flight keep the snapshot they took.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn install(&self, snap: Snapshot) {
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snap);
    }

    /// Connects and loads the tables the first time (awaited on the server's runtime).
    pub async fn start(&self, runtime: &tokio::runtime::Handle) -> Result<(), String> {
        let cfg = &self.config;
        let _ = self.runtime.set(runtime.clone());
        let db = Db::connect(&cfg.db_url)
            .await
            .map_err(|e| format!("cannot connect to db_url: {e}"))?;
        let _ = self.db.set(db);
        let summary = self.reload().await?;
        tracing::info!("lcr: {summary}");
        Ok(())
    }

    /// Reads the tables again and swaps the snapshot; on an error the old one stays.
    pub async fn reload(&self) -> Result<String, String> {
        let _one_at_a_time = self.reloading.lock().await;
        let cfg = &self.config;
        let db = self.db.get().ok_or("lcr: not started (no database)")?;
        let started = std::time::Instant::now();
        let result = load::load(db, &cfg.tables, cfg.limits).await;
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(snap) => {
                let gws: usize = snap.instances.iter().map(|i| i.gateways.len()).sum();
                let summary = format!(
                    "loaded {} rules and {gws} gateways in {} instance(s) in {} ms",
                    snap.rule_count(),
                    cfg.limits.lcr_count,
                    started.elapsed().as_millis()
                );
                self.install(snap);
                *last = None;
                Ok(summary)
            }
            Err(e) => {
                *last = Some(e.clone());
                Err(format!(
                    "lcr reload failed, the loaded tables stay in use: {e}"
                ))
            }
        }
    }

    /// Reload for the `lcr.reload` RPC command: refused before the server has started
    /// (the tables are loaded by the start hook).
    pub async fn reload_started(&self) -> Result<String, String> {
        if self.runtime.get().is_none() {
            return Err("lcr: not started (no server runtime)".into());
        }
        self.reload().await
    }

    /// Reloads on SIGHUP, until the runtime stops: the way to pick up a new rate import
    /// while there is no RPC transport (`ferrosip ctl`) yet.
    pub fn reload_on_sighup(self: &Arc<Self>, runtime: &tokio::runtime::Handle) {
        let me = self.clone();
        runtime.spawn(async move {
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                tracing::warn!("lcr: cannot listen for SIGHUP; reload with lcr.reload");
                return;
            };
            while hup.recv().await.is_some() {
                match me.reload().await {
                    Ok(summary) => tracing::info!("lcr: SIGHUP: {summary}"),
                    Err(e) => tracing::error!("{e}"),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avp_parameter_forms() {
        assert_eq!(
            avp_param("x", "$avp(i:709)").unwrap().as_deref(),
            Some("709")
        );
        assert_eq!(avp_param("x", "$avp(s:gw)").unwrap().as_deref(), Some("gw"));
        assert_eq!(
            avp_param("x", "$avp(lcr_tag)").unwrap().as_deref(),
            Some("lcr_tag")
        );
        assert_eq!(avp_param("x", "").unwrap(), None);
        assert!(avp_param("x", "$avp(a b)").is_err());
    }
}
