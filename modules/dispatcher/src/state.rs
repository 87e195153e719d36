//! The module's state while the server runs: configuration read from the parameters,
//! the destination sets (swapped whole on reload), the call-load table, the prober.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferrosip_api::{AvpNames, ModuleParams, MsgContext, NetInfo, RouteKind, Services};
use ferrosip_sip::SipMessage;

use crate::health::{
    self, HealthCheck, OptionsCheck, ProbingMode, ReplyCodes, Thresholds, Transition,
};
use crate::list::{self, DestSpec};
use crate::select::Slots;
use crate::sets::{Destination, Sets};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where the destination sets come from.
#[derive(Clone, Debug)]
pub enum Source {
    File(String),
    Db {
        url: String,
        table: String,
        /// setid, destination, flags, priority, attrs column names.
        cols: [String; 5],
    },
}

/// The parameters, read once at load.
#[derive(Clone, Debug)]
pub struct Config {
    pub source: Source,
    pub force_dst: bool,
    pub user_only_hash: bool,
    pub failover: bool,
    pub use_default: bool,
    /// `xavp_dst_mode` bit 1: attributes are left out of the failover records.
    pub attrs_in_records: bool,
    pub slots: Slots,
    pub setid_avp: Option<u32>,
    pub attrs_avp: Option<u32>,
    pub thresholds: Thresholds,
    pub ping_interval: Duration,
    pub ping_method: Bytes,
    pub ping_from: Bytes,
    pub ping_timeout: Option<Duration>,
    pub reply_codes: ReplyCodes,
    pub probing_mode: ProbingMode,
    pub outbound_proxy: Option<Bytes>,
    /// `ds_load_mode` 1: a reload keeps the state of destinations still listed.
    pub keep_state_on_reload: bool,
    pub hash_expire: Duration,
    pub hash_initexpire: Duration,
    pub hash_check_interval: Duration,
}

/// `$avp(name)` (or a bare name, or Kamailio's `$avp(s:name)`) to the AVP's name.
fn avp_name(param: &str, text: &str) -> Result<String, String> {
    let inner = text
        .strip_prefix("$avp(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or(text);
    let inner = inner.strip_prefix("s:").unwrap_or(inner);
    if inner.is_empty() || inner.starts_with('$') || inner.contains(['(', ')', ' ']) {
        return Err(format!(
            "{param}: \"{text}\" is not supported here; give an AVP as $avp(name)"
        ));
    }
    Ok(inner.to_string())
}

fn secs(v: i64) -> Duration {
    Duration::from_secs(v.max(0) as u64)
}

impl Config {
    pub fn from_params(p: &ModuleParams, avps: &AvpNames) -> Result<Config, String> {
        let source = match p.get("db_url").to_bytes() {
            Some(url) if !url.is_empty() => Source::Db {
                url: String::from_utf8_lossy(&url).into_owned(),
                table: p.string("table_name"),
                cols: [
                    p.string("setid_col"),
                    p.string("destination_col"),
                    p.string("flags_col"),
                    p.string("priority_col"),
                    p.string("attrs_col"),
                ],
            },
            _ => Source::File(p.string("list_file")),
        };
        // Kamailio's XAVP fields become AVPs named "<xavp>.<field>", unless the older
        // AVP parameters name them.
        let named = |param: &str, default: String| -> Result<u32, String> {
            let v = p.string(param);
            let name = if v.is_empty() {
                default
            } else {
                avp_name(param, &v)?
            };
            Ok(avps.slot(&name))
        };
        let dst = p.string("xavp_dst");
        let ctx = p.string("xavp_ctx");
        let slots = Slots {
            uri: named("dst_avp", format!("{dst}.uri"))?,
            grp: named("grp_avp", format!("{dst}.grp"))?,
            attrs: named("attrs_avp", format!("{dst}.attrs"))?,
            dstid: avps.slot(&format!("{dst}.dstid")),
            cnt: named("cnt_avp", format!("{ctx}.cnt"))?,
        };
        let optional_avp = |param: &str| -> Result<Option<u32>, String> {
            let v = p.string(param);
            if v.is_empty() {
                return Ok(None);
            }
            avp_name(param, &v).map(|n| Some(avps.slot(&n)))
        };
        let opt_bytes = |name: &str| p.get(name).to_bytes().filter(|b| !b.is_empty());
        let ping_from = opt_bytes("ds_ping_from")
            .unwrap_or_else(|| Bytes::from_static(b"sip:dispatcher@localhost"));
        list::check_uri(&ping_from).map_err(|e| format!("ds_ping_from: {e}"))?;
        let fr = p.int("ds_ping_fr_timer");
        Ok(Config {
            source,
            force_dst: p.int("force_dst") != 0,
            user_only_hash: p.int("flags") & 1 != 0,
            failover: p.int("flags") & 2 != 0,
            use_default: p.int("use_default") != 0,
            attrs_in_records: p.int("xavp_dst_mode") & 1 == 0,
            slots,
            setid_avp: optional_avp("setid_pvname")?,
            attrs_avp: optional_avp("attrs_pvname")?,
            thresholds: Thresholds {
                down_after: p.int("ds_probing_threshold").max(1) as u32,
                up_after: p.int("ds_inactive_threshold").max(1) as u32,
            },
            ping_interval: secs(p.int("ds_ping_interval")),
            ping_method: opt_bytes("ds_ping_method").unwrap_or(Bytes::from_static(b"OPTIONS")),
            ping_from,
            ping_timeout: (fr > 0).then(|| Duration::from_millis(fr as u64)),
            reply_codes: ReplyCodes::parse(&p.string("ds_ping_reply_codes"))?,
            probing_mode: ProbingMode::from_param(p.int("ds_probing_mode"))?,
            outbound_proxy: opt_bytes("outbound_proxy"),
            keep_state_on_reload: p.int("ds_load_mode") == 1,
            hash_expire: secs(p.int("ds_hash_expire")),
            hash_initexpire: secs(p.int("ds_hash_initexpire")),
            hash_check_interval: secs(p.int("ds_hash_check_interval").max(1)),
        })
    }
}

/// A call counted on a destination (algorithm 10).
#[derive(Clone, Debug)]
struct CallEntry {
    setid: i32,
    uri: Bytes,
    expires: Instant,
}

/// The running module.
pub struct Dispatcher {
    pub cfg: Config,
    sets: RwLock<Arc<Sets>>,
    calls: Mutex<HashMap<Bytes, CallEntry>>,
    services: OnceLock<Arc<dyn Services>>,
    runtime: OnceLock<tokio::runtime::Handle>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Dispatcher {
    pub fn new(cfg: Config) -> Dispatcher {
        Dispatcher {
            cfg,
            sets: RwLock::new(Arc::new(Sets::default())),
            calls: Mutex::new(HashMap::new()),
            services: OnceLock::new(),
            runtime: OnceLock::new(),
            tasks: Mutex::new(Vec::new()),
        }
    }

    /// The sets now (a snapshot: a reload swaps them, never edits them in place).
    pub fn sets(&self) -> Arc<Sets> {
        self.sets.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Installs new destination records; the number of destinations.
    pub fn install(&self, specs: &[DestSpec]) -> usize {
        let new = Sets::build(specs);
        let mut guard = self.sets.write().unwrap_or_else(|e| e.into_inner());
        new.inherit(&guard, self.cfg.keep_state_on_reload);
        let n = new.all().count();
        *guard = Arc::new(new);
        n
    }

    /// Reads the records from the list file or the database.
    pub async fn read_source(&self) -> Result<Vec<DestSpec>, String> {
        match &self.cfg.source {
            Source::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read list_file {path}: {e}"))?;
                list::parse_list(&text).map_err(|e| format!("{path}: {e}"))
            }
            Source::Db { url, table, cols } => crate::db::read(url, table, cols).await,
        }
    }

    /// Reloads the sets. Calls in flight keep their failover lists (they hold URIs).
    pub async fn reload(&self) -> Result<usize, String> {
        let specs = self.read_source().await?;
        let n = self.install(&specs);
        tracing::info!(destinations = n, "dispatcher: destination sets loaded");
        Ok(n)
    }

    pub fn set_runtime(&self, rt: tokio::runtime::Handle) {
        let _ = self.runtime.set(rt);
    }

    /// Keeps the server's services and starts the prober and the call-load expiry.
    pub fn start_background(self: &Arc<Self>, services: Arc<dyn Services>) {
        let _ = self.services.set(services.clone());
        let Some(rt) = self.runtime.get() else {
            return;
        };
        let mut tasks = lock(&self.tasks);
        if !self.cfg.ping_interval.is_zero() {
            let check: Arc<dyn HealthCheck> = Arc::new(OptionsCheck {
                services,
                method: self.cfg.ping_method.clone(),
                from: self.cfg.ping_from.clone(),
                outbound_proxy: self.cfg.outbound_proxy.clone(),
                timeout: self.cfg.ping_timeout,
                codes: self.cfg.reply_codes.clone(),
            });
            tasks.push(rt.spawn(self.clone().probe_loop(check)));
        }
        let me = self.clone();
        tasks.push(rt.spawn(async move {
            let mut tick = tokio::time::interval(me.cfg.hash_check_interval);
            loop {
                tick.tick().await;
                me.expire_calls(Instant::now());
            }
        }));
    }

    pub fn stop_background(&self) {
        for t in lock(&self.tasks).drain(..) {
            t.abort();
        }
    }

    async fn probe_loop(self: Arc<Self>, check: Arc<dyn HealthCheck>) {
        let mut tick = tokio::time::interval(self.cfg.ping_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let sets = self.sets();
            for dest in sets.all() {
                if !self.cfg.probing_mode.wants(dest)
                    || dest
                        .probing_now
                        .swap(true, std::sync::atomic::Ordering::AcqRel)
                {
                    continue;
                }
                let dest = dest.clone();
                let probe = check.check(&dest);
                let me = self.clone();
                tokio::spawn(async move {
                    let h = probe.await;
                    let t = health::on_probe(&dest, h, me.cfg.probing_mode, me.cfg.thresholds);
                    dest.probing_now
                        .store(false, std::sync::atomic::Ordering::Release);
                    if let Some(t) = t {
                        me.announce(&dest, t);
                    }
                });
            }
        }
    }

    /// Logs a change of a destination's selectability and runs its event route.
    pub fn announce(&self, dest: &Destination, t: Transition) {
        let uri = String::from_utf8_lossy(&dest.uri).into_owned();
        let event = match t {
            Transition::Down => "dispatcher:dst-down",
            Transition::Up => "dispatcher:dst-up",
        };
        tracing::info!(destination = %uri, setid = dest.setid, state = %dest.state_letters(), "{event}");
        let Some(services) = self.services.get() else {
            return;
        };
        // The event route sees a request to the destination: $ru and $du are its URI.
        let raw = format!(
            "{m} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKdsevent\r\n\
             From: <{from}>;tag=ds\r\nTo: <{uri}>\r\nCall-ID: dispatcher-event\r\n\
             CSeq: 1 {m}\r\nContent-Length: 0\r\n\r\n",
            m = String::from_utf8_lossy(&self.cfg.ping_method),
            from = String::from_utf8_lossy(&self.cfg.ping_from),
        );
        let Ok(msg) = SipMessage::parse(Bytes::from(raw)) else {
            return;
        };
        let mut ctx = MsgContext::new(msg, RouteKind::Event, NetInfo::default());
        ctx.dst_uri = Some(dest.uri.clone());
        services.run_event_route(event, ctx);
    }

    // ----- call load (algorithm 10) ------------------------------------------------

    /// Counts a new call on `dest`.
    pub fn load_add(&self, call_id: Bytes, dest: &Destination) {
        let mut calls = lock(&self.calls);
        if let Some(old) = calls.remove(&call_id) {
            self.unload(&old);
        }
        dest.load.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        calls.insert(
            call_id,
            CallEntry {
                setid: dest.setid,
                uri: dest.uri.clone(),
                expires: Instant::now() + self.cfg.hash_initexpire,
            },
        );
    }

    /// The call was answered: it stays counted for `ds_hash_expire`.
    pub fn load_confirm(&self, call_id: &[u8]) -> bool {
        match lock(&self.calls).get_mut(call_id) {
            Some(e) => {
                e.expires = Instant::now() + self.cfg.hash_expire;
                true
            }
            None => false,
        }
    }

    /// The call ended (or failed): no longer counted.
    pub fn load_remove(&self, call_id: &[u8]) -> bool {
        let removed = lock(&self.calls).remove(call_id);
        match removed {
            Some(e) => {
                self.unload(&e);
                true
            }
            None => false,
        }
    }

    fn unload(&self, e: &CallEntry) {
        if let Some(d) = self.sets().find(e.setid, &e.uri) {
            let _ = d.load.fetch_update(
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
                |v| Some(v.saturating_sub(1)),
            );
        }
    }

    pub fn expire_calls(&self, now: Instant) {
        let expired: Vec<CallEntry> = {
            let mut calls = lock(&self.calls);
            let keys: Vec<Bytes> = calls
                .iter()
                .filter(|(_, e)| e.expires <= now)
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| calls.remove(k)).collect()
        };
        for e in &expired {
            self.unload(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avp_names_from_parameters() {
        assert_eq!(avp_name("p", "$avp(dsdst)").unwrap(), "dsdst");
        assert_eq!(avp_name("p", "$avp(s:grp)").unwrap(), "grp");
        assert_eq!(avp_name("p", "cnt").unwrap(), "cnt");
        let e = avp_name("setid_pvname", "$var(setid)").unwrap_err();
        assert!(
            e.contains("setid_pvname") && e.contains("$avp(name)"),
            "{e}"
        );
    }

    #[test]
    fn call_load_counts_confirms_and_expires() {
        let mut p = ModuleParams::default();
        p.push("ds_hash_initexpire", ferrosip_api::Value::Int(10));
        p.push("ds_hash_expire", ferrosip_api::Value::Int(100));
        let d = Dispatcher::new(Config::from_params(&p, &AvpNames::default()).unwrap());
        d.install(&list::parse_list("1 sip:10.0.0.1 0 0 duid=a\n").unwrap());
        let sets = d.sets();
        let dest = sets.find(1, b"sip:10.0.0.1").unwrap();
        d.load_add(Bytes::from_static(b"c1"), dest);
        d.load_add(Bytes::from_static(b"c2"), dest);
        assert_eq!(dest.load.load(std::sync::atomic::Ordering::Relaxed), 2);
        assert!(d.load_confirm(b"c1"));
        // c2 was never answered: gone after ds_hash_initexpire; c1 stays.
        d.expire_calls(Instant::now() + Duration::from_secs(11));
        assert_eq!(dest.load.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert!(d.load_remove(b"c1"));
        assert!(!d.load_remove(b"c1"));
        assert_eq!(dest.load.load(std::sync::atomic::Ordering::Relaxed), 0);
        // A reload keeps the count of a destination still listed.
        d.load_add(Bytes::from_static(b"c3"), dest);
        d.install(&list::parse_list("1 sip:10.0.0.1 0 0 duid=a\n1 sip:10.0.0.2\n").unwrap());
        let after = d.sets();
        assert_eq!(
            after
                .find(1, b"sip:10.0.0.1")
                .unwrap()
                .load
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert!(d.load_remove(b"c3"));
    }
}
