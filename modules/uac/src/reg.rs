//! Remote registrations (Kamailio's `uac_reg`): the proxy registers itself to upstream
//! carriers, one binding per row of the `uacreg` table, answering their Digest challenges
//! and refreshing each binding before the registrar lets it expire.
//!
//! The rows are loaded at start (and by `uac.reg_reload`), at most `reg_max_records`.
//! A timer task wakes every `reg_timer_interval` seconds and starts the REGISTER of every
//! record that is due: never registered, expiring before the next wake-up, or failed and
//! past `reg_retry_interval`. Each exchange (REGISTER, 401/407, REGISTER with credentials,
//! final reply) runs as its own task on the server's client transactions; a record with
//! an exchange in flight is not started again.

use super::{authorization, parse_challenge};
use bytes::Bytes;
use ferrosip_api::clock::Clock;
use ferrosip_api::registry::RpcValue;
use ferrosip_api::services::{LocalRequest, Services};
use ferrosip_api::ModuleParams;
use ferrosip_db::{Cond, Db, DbValue};
use ferrosip_sip::SipMessage;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Kamailio's state bits, as `uac.reg_dump` shows them.
pub const FL_DISABLED: u32 = 1;
pub const FL_ONGOING: u32 = 2;
pub const FL_REGISTERED: u32 = 4;
pub const FL_AUTHSENT: u32 = 8;
pub const FL_INIT: u32 = 16;

const COLUMNS: [&str; 15] = [
    "l_uuid",
    "l_username",
    "l_domain",
    "r_username",
    "r_domain",
    "realm",
    "auth_username",
    "auth_password",
    "auth_ha1",
    "auth_proxy",
    "expires",
    "flags",
    "reg_delay",
    "contact_addr",
    "socket",
];

/// The `reg_*` parameters.
pub struct RegConfig {
    pub db_url: String,
    pub table: String,
    pub timer_interval: Duration,
    /// 0: a failed registration waits for a reload, a refresh or an enable.
    pub retry_interval: Duration,
    pub contact_addr: String,
    pub keep_callid: bool,
    pub active: bool,
    pub max_records: usize,
    pub reload_delta: Duration,
}

impl RegConfig {
    /// `None` when `reg_db_url` is empty (no remote registrations).
    pub fn from_params(p: &ModuleParams) -> Result<Option<RegConfig>, String> {
        let db_url = p.string("reg_db_url");
        if db_url.is_empty() {
            return Ok(None);
        }
        ferrosip_db::DbUrl::parse(&db_url).map_err(|e| format!("reg_db_url: {e}"))?;
        let table = p.string("reg_db_table");
        ferrosip_db::check_identifier(&table).map_err(|e| format!("reg_db_table: {e}"))?;
        let contact_addr = p.string("reg_contact_addr");
        if contact_addr.is_empty()
            || contact_addr
                .bytes()
                .any(|c| c.is_ascii_whitespace() || b"<>\"@;".contains(&c))
        {
            return Err(format!(
                "reg_contact_addr \"{contact_addr}\" must be host[:port] (remote registrations need it)"
            ));
        }
        let secs = |name: &str, min: i64| -> Result<Duration, String> {
            let v = p.int(name);
            if !(min..=86_400).contains(&v) {
                return Err(format!("{name} {v} is not between {min} and 86400"));
            }
            Ok(Duration::from_secs(v as u64))
        };
        for (name, what) in [
            ("reg_use_domain", "matching by domain"),
            ("reg_random_delay", "a random first delay"),
        ] {
            if p.int(name) != 0 {
                return Err(format!(
                    "{name} ({what}) is declared but not implemented: leave it 0"
                ));
            }
        }
        let max = p.int("reg_max_records");
        if !(1..=1_000_000).contains(&max) {
            return Err(format!(
                "reg_max_records {max} is not between 1 and 1000000"
            ));
        }
        Ok(Some(RegConfig {
            db_url,
            table,
            timer_interval: secs("reg_timer_interval", 1)?,
            retry_interval: secs("reg_retry_interval", 0)?,
            contact_addr,
            keep_callid: p.int("reg_keep_callid") != 0,
            active: p.int("reg_active") != 0,
            max_records: max as usize,
            reload_delta: secs("reload_delta", 0)?,
        }))
    }
}

/// One row of `uacreg` and where its registration stands.
#[derive(Clone, Debug, Default)]
pub struct Record {
    pub l_uuid: String,
    pub l_username: String,
    pub l_domain: String,
    pub r_username: String,
    pub r_domain: String,
    pub realm: String,
    pub auth_username: String,
    pub auth_password: String,
    pub auth_ha1: String,
    pub auth_proxy: String,
    pub expires: u32,
    pub db_flags: i64,
    pub reg_delay: u32,
    pub contact_addr: String,
    pub socket: String,
    /// `FL_*` bits.
    pub flags: u32,
    call_id: String,
    cseq: u32,
    /// When the timer starts the next REGISTER (`None`: not scheduled).
    next_at: Option<Instant>,
    /// The registrar's binding ends then.
    expires_at: Option<Instant>,
    /// Unix time of the last successful registration.
    pub registered: u64,
    pub last_code: u16,
    /// Bumped when the record is reloaded: an exchange started before ignores its end.
    generation: u64,
}

impl Record {
    fn from_row(row: &[DbValue]) -> Result<Record, String> {
        let s = |i: usize| row[i].as_str().unwrap_or_default().trim().to_string();
        let n = |i: usize| row[i].as_int().unwrap_or(0);
        let r = Record {
            l_uuid: s(0),
            l_username: s(1),
            l_domain: s(2),
            r_username: s(3),
            r_domain: s(4),
            realm: s(5),
            auth_username: s(6),
            auth_password: s(7),
            auth_ha1: s(8),
            auth_proxy: s(9),
            expires: n(10).clamp(0, 1 << 30) as u32,
            db_flags: n(11),
            reg_delay: n(12).clamp(0, 86_400) as u32,
            contact_addr: s(13),
            socket: s(14),
            ..Record::default()
        };
        if r.l_uuid.is_empty() || r.r_username.is_empty() || r.r_domain.is_empty() {
            return Err(format!(
                "uacreg row {:?}: l_uuid, r_username and r_domain are required",
                r.l_uuid
            ));
        }
        // Every field goes into header lines or URIs of the REGISTER.
        for (name, v) in [
            ("l_uuid", &r.l_uuid),
            ("l_username", &r.l_username),
            ("l_domain", &r.l_domain),
            ("r_username", &r.r_username),
            ("r_domain", &r.r_domain),
            ("realm", &r.realm),
            ("auth_username", &r.auth_username),
            ("auth_proxy", &r.auth_proxy),
            ("contact_addr", &r.contact_addr),
        ] {
            if v.bytes()
                .any(|c| c.is_ascii_control() || c == b' ' || b"<>\"".contains(&c))
            {
                return Err(format!(
                    "uacreg row {}: {name} \"{v}\" has a blank, a quote or an angle bracket",
                    r.l_uuid
                ));
            }
        }
        Ok(r)
    }

    /// The same row as `other` (the registration state aside).
    fn same_row(&self, other: &Record) -> bool {
        let key = |r: &Record| {
            (
                [
                    r.l_uuid.clone(),
                    r.l_username.clone(),
                    r.l_domain.clone(),
                    r.r_username.clone(),
                    r.r_domain.clone(),
                    r.realm.clone(),
                    r.auth_username.clone(),
                    r.auth_password.clone(),
                    r.auth_ha1.clone(),
                    r.auth_proxy.clone(),
                    r.contact_addr.clone(),
                ],
                r.expires,
                r.db_flags,
            )
        };
        key(self) == key(other)
    }

    fn matches(&self, attr: &str, val: &str) -> Result<bool, String> {
        Ok(match attr {
            "l_uuid" => self.l_uuid == val,
            "l_username" => self.l_username == val,
            "r_username" => self.r_username == val,
            "auth_username" => self.auth_username == val,
            other => {
                return Err(format!(
                    "unknown attribute {other} (l_uuid, l_username, r_username, auth_username)"
                ))
            }
        })
    }

    /// The registration as `uac.reg_dump` and `uac.reg_info` show it.
    pub fn rpc(&self, now: Instant, unix_now: u64) -> RpcValue {
        let str = |v: &str| RpcValue::Str(v.to_string());
        let left = self
            .expires_at
            .map_or(0, |e| e.saturating_duration_since(now).as_secs() as i64);
        RpcValue::Struct(vec![
            ("l_uuid".into(), str(&self.l_uuid)),
            ("l_username".into(), str(&self.l_username)),
            ("l_domain".into(), str(&self.l_domain)),
            ("r_username".into(), str(&self.r_username)),
            ("r_domain".into(), str(&self.r_domain)),
            ("realm".into(), str(&self.realm)),
            ("auth_username".into(), str(&self.auth_username)),
            (
                "auth_password".into(),
                str(if self.auth_password.is_empty() {
                    ""
                } else {
                    "*"
                }),
            ),
            ("auth_proxy".into(), str(&self.auth_proxy)),
            ("expires".into(), RpcValue::Int(self.expires.into())),
            ("flags".into(), RpcValue::Int(self.flags.into())),
            ("diff_expires".into(), RpcValue::Int(left)),
            (
                "timer_expires".into(),
                RpcValue::Int(unix_now as i64 + left),
            ),
            ("reg_init".into(), RpcValue::Int(self.registered as i64)),
            ("last_code".into(), RpcValue::Int(self.last_code.into())),
            ("contact_addr".into(), str(&self.contact_addr)),
            ("socket".into(), str(&self.socket)),
        ])
    }
}

/// The remote registrations of one loaded script.
pub struct Registrations {
    pub cfg: RegConfig,
    clock: Clock,
    records: Mutex<Vec<Record>>,
    active: AtomicBool,
    db: ferrosip_api::tokio::sync::OnceCell<Db>,
    services: OnceLock<Arc<dyn Services>>,
    runtime: OnceLock<ferrosip_api::tokio::runtime::Handle>,
    counter: AtomicU64,
    last_reload: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What one exchange needs, copied out of the table.
struct Attempt {
    l_uuid: String,
    generation: u64,
    request: LocalRequest,
    auth_user: String,
    secret: String,
    ha1_given: bool,
    realm: String,
    requested: u32,
}

impl Registrations {
    pub fn new(cfg: RegConfig, clock: Clock) -> Registrations {
        Registrations {
            active: AtomicBool::new(cfg.active),
            cfg,
            clock,
            records: Mutex::new(Vec::new()),
            db: Default::default(),
            services: OnceLock::new(),
            runtime: OnceLock::new(),
            counter: AtomicU64::new(1),
            last_reload: Mutex::new(None),
        }
    }

    async fn db(&self) -> Result<Db, String> {
        self.db
            .get_or_try_init(|| Db::connect(&self.cfg.db_url))
            .await
            .cloned()
            .map_err(|e| format!("uac: reg_db_url: {e}"))
    }

    async fn load_rows(&self, conds: &[Cond<'_>]) -> Result<Vec<Record>, String> {
        let db = self.db().await?;
        let rows = db
            .select(&self.cfg.table, &COLUMNS, conds, None)
            .await
            .map_err(|e| format!("uac: {}: {e}", self.cfg.table))?;
        if rows.len() > self.cfg.max_records {
            return Err(format!(
                "uac: {} has {} rows, more than reg_max_records ({})",
                self.cfg.table,
                rows.len(),
                self.cfg.max_records
            ));
        }
        let mut out: Vec<Record> = Vec::with_capacity(rows.len());
        for row in &rows {
            let r = Record::from_row(row)?;
            if out.iter().any(|o| o.l_uuid == r.l_uuid) {
                return Err(format!(
                    "uac: l_uuid {} is in {} twice",
                    r.l_uuid, self.cfg.table
                ));
            }
            out.push(r);
        }
        Ok(out)
    }

    /// Starts a loaded record: disabled (flags bit 0 in the row), or due after its
    /// `reg_delay`.
    fn arm(&self, r: &mut Record, now: Instant) {
        r.flags = FL_INIT;
        if r.db_flags & 1 != 0 {
            r.flags |= FL_DISABLED;
            r.next_at = None;
        } else {
            r.next_at = Some(now + Duration::from_secs(r.reg_delay.into()));
        }
    }

    /// Loads every row, keeping the state of the records whose row did not change.
    pub async fn reload(&self) -> Result<usize, String> {
        let fresh = self.load_rows(&[]).await?;
        let now = self.clock.now();
        let mut records = lock(&self.records);
        let mut next = Vec::with_capacity(fresh.len());
        for mut r in fresh {
            match records.iter().find(|o| o.same_row(&r)) {
                Some(old) => next.push(old.clone()),
                None => {
                    r.generation = self.counter.fetch_add(1, Ordering::Relaxed);
                    self.arm(&mut r, now);
                    next.push(r);
                }
            }
        }
        let n = next.len();
        *records = next;
        *lock(&self.last_reload) = Some(now);
        Ok(n)
    }

    /// `uac.reg_reload`: as [`Self::reload`], at most once per `reload_delta`.
    pub async fn reload_rpc(&self) -> Result<usize, String> {
        let now = self.clock.now();
        if let Some(last) = *lock(&self.last_reload) {
            if now.saturating_duration_since(last) < self.cfg.reload_delta {
                return Err(format!(
                    "reloaded less than reload_delta ({} s) ago",
                    self.cfg.reload_delta.as_secs()
                ));
            }
        }
        self.reload().await
    }

    /// `uac_reg_refresh` / `uac.reg_refresh`: loads the row of `l_uuid` again (added,
    /// changed or removed) and registers it anew. False when it is in neither the table
    /// nor memory.
    pub async fn refresh(&self, l_uuid: &str) -> Result<bool, String> {
        let rows = self
            .load_rows(&[Cond::eq("l_uuid", l_uuid.to_string())])
            .await?;
        let now = self.clock.now();
        let mut records = lock(&self.records);
        let at = records.iter().position(|r| r.l_uuid == l_uuid);
        match (rows.into_iter().next(), at) {
            (None, None) => Ok(false),
            (None, Some(i)) => {
                records.remove(i);
                Ok(true)
            }
            (Some(mut r), at) => {
                r.generation = self.counter.fetch_add(1, Ordering::Relaxed);
                self.arm(&mut r, now);
                match at {
                    Some(i) => records[i] = r,
                    None if records.len() >= self.cfg.max_records => {
                        return Err(format!(
                            "more than reg_max_records ({}) registrations",
                            self.cfg.max_records
                        ))
                    }
                    None => records.push(r),
                }
                Ok(true)
            }
        }
    }

    /// Starts the timer task once the server can send requests.
    pub fn start(self: &Arc<Self>, services: Arc<dyn Services>) {
        let _ = self.services.set(services);
        let Some(rt) = self.runtime.get() else {
            return;
        };
        let me = Arc::downgrade(self);
        let every = self.cfg.timer_interval;
        rt.spawn(async move {
            // The first round right away: registrations start with the server.
            let mut tick = ferrosip_api::tokio::time::interval(every);
            loop {
                tick.tick().await;
                // The state of a reloaded script replaces this one: its task ends.
                let Some(me) = me.upgrade() else {
                    return;
                };
                me.on_timer();
            }
        });
    }

    pub fn set_runtime(&self, rt: ferrosip_api::tokio::runtime::Handle) {
        let _ = self.runtime.set(rt);
    }

    pub fn set_active(&self, on: bool) {
        self.active.store(on, Ordering::Relaxed);
    }

    /// One timer round: starts every due registration.
    fn on_timer(self: &Arc<Self>) {
        if !self.active.load(Ordering::Relaxed) {
            return;
        }
        let now = self.clock.now();
        let due: Vec<Attempt> = {
            let mut records = lock(&self.records);
            records
                .iter_mut()
                .filter(|r| {
                    r.flags & (FL_DISABLED | FL_ONGOING) == 0 && r.next_at.is_some_and(|t| t <= now)
                })
                .map(|r| self.attempt(r))
                .collect()
        };
        for a in due {
            self.launch(a);
        }
    }

    /// Marks `r` in flight and builds its REGISTER.
    fn attempt(&self, r: &mut Record) -> Attempt {
        r.flags |= FL_ONGOING;
        r.flags &= !FL_AUTHSENT;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // RFC 3261 §10.2.4 wants one Call-ID per binding; Kamailio keeps it only with
        // reg_keep_callid, and never after a failure.
        if r.call_id.is_empty() || !self.cfg.keep_callid || r.flags & FL_REGISTERED == 0 {
            r.call_id = format!(
                "{:x}{n:x}-{}@ferrosip",
                self.clock.since_epoch().as_nanos() & 0xffff_ffff_ffff,
                r.l_uuid
            );
            r.cseq = 0;
        }
        r.cseq += 1;
        let contact = if r.contact_addr.is_empty() {
            &self.cfg.contact_addr
        } else {
            &r.contact_addr
        };
        let aor = format!("sip:{}@{}", r.r_username, r.r_domain);
        let request = LocalRequest {
            method: Bytes::from_static(b"REGISTER"),
            uri: Bytes::from(format!("sip:{}", r.r_domain)),
            dst_uri: (!r.auth_proxy.is_empty()).then(|| Bytes::from(r.auth_proxy.clone())),
            from: Bytes::from(aor.clone()),
            to: Bytes::from(aor),
            headers: Bytes::from(format!(
                "Contact: <sip:{}@{contact}>\r\nExpires: {}\r\n",
                r.l_uuid, r.expires
            )),
            call_id: Some(Bytes::from(r.call_id.clone())),
            cseq: Some(r.cseq),
            ..LocalRequest::default()
        };
        let (secret, ha1_given) = if r.auth_password.is_empty() && !r.auth_ha1.is_empty() {
            (r.auth_ha1.clone(), true)
        } else {
            (r.auth_password.clone(), false)
        };
        Attempt {
            l_uuid: r.l_uuid.clone(),
            generation: r.generation,
            request,
            auth_user: if r.auth_username.is_empty() {
                r.r_username.clone()
            } else {
                r.auth_username.clone()
            },
            secret,
            ha1_given,
            realm: r.realm.clone(),
            requested: r.expires,
        }
    }

    fn launch(self: &Arc<Self>, a: Attempt) {
        let (Some(services), Some(rt)) = (self.services.get().cloned(), self.runtime.get()) else {
            return;
        };
        let me = self.clone();
        rt.spawn(async move {
            let outcome = me.exchange(&services, &a).await;
            me.finish(&a, outcome);
        });
    }

    /// The REGISTER, and once more with credentials when the registrar challenges it:
    /// the final status and reply.
    async fn exchange(
        &self,
        services: &Arc<dyn Services>,
        a: &Attempt,
    ) -> (u16, Option<SipMessage>) {
        let send = |req: LocalRequest| services.send_request(req);
        let first = match send(a.request.clone()) {
            Ok(f) => f.await,
            Err(e) => {
                tracing::warn!(uuid = %a.l_uuid, "uac: REGISTER not sent: {}", e.message);
                return (503, None);
            }
        };
        let reply = SipMessage::parse(first.reply.clone()).ok();
        let (challenge_hdr, answer_hdr) = match first.code {
            401 => ("WWW-Authenticate", "Authorization"),
            407 => ("Proxy-Authenticate", "Proxy-Authorization"),
            code => return (code, reply),
        };
        let Some(challenge) = reply
            .as_ref()
            .and_then(|m| m.header_bytes(challenge_hdr))
            .and_then(|v| parse_challenge(&v))
        else {
            return (first.code, reply);
        };
        if a.secret.is_empty() {
            return (first.code, reply);
        }
        let mut challenge = challenge;
        // The row's realm, when set, is the one the credentials belong to (Kamailio
        // answers with it whatever the challenge says).
        if !a.realm.is_empty() {
            challenge.realm = a.realm.clone();
        }
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let cnonce = format!("{:x}{n:x}", self.clock.since_epoch().subsec_nanos());
        let value = authorization(
            &challenge,
            a.auth_user.as_bytes(),
            a.secret.as_bytes(),
            a.ha1_given,
            b"REGISTER",
            &a.request.uri,
            &cnonce,
        );
        let cseq = {
            let mut records = lock(&self.records);
            match records
                .iter_mut()
                .find(|r| r.l_uuid == a.l_uuid && r.generation == a.generation)
            {
                Some(r) => {
                    r.flags |= FL_AUTHSENT;
                    r.cseq += 1;
                    r.cseq
                }
                None => return (first.code, reply),
            }
        };
        let mut headers = a.request.headers.to_vec();
        headers.extend_from_slice(format!("{answer_hdr}: {value}\r\n").as_bytes());
        let again = LocalRequest {
            headers: Bytes::from(headers),
            cseq: Some(cseq),
            ..a.request.clone()
        };
        match send(again) {
            Ok(f) => {
                let end = f.await;
                let reply = SipMessage::parse(end.reply.clone()).ok();
                (end.code, reply)
            }
            Err(e) => {
                tracing::warn!(uuid = %a.l_uuid, "uac: REGISTER not sent: {}", e.message);
                (503, None)
            }
        }
    }

    fn finish(&self, a: &Attempt, (code, reply): (u16, Option<SipMessage>)) {
        let now = self.clock.now();
        let mut records = lock(&self.records);
        let Some(r) = records
            .iter_mut()
            .find(|r| r.l_uuid == a.l_uuid && r.generation == a.generation)
        else {
            return;
        };
        r.flags &= !(FL_ONGOING | FL_AUTHSENT);
        r.last_code = code;
        if (200..300).contains(&code) {
            let granted = reply
                .as_ref()
                .and_then(|m| granted_expires(m, &r.l_uuid))
                .unwrap_or(a.requested);
            r.flags |= FL_REGISTERED;
            r.registered = self.clock.unix_secs();
            let life = Duration::from_secs(granted.max(1).into());
            r.expires_at = Some(now + life);
            // Refreshed in the timer round before the one that would be too late; a
            // short binding at half its life.
            let before = self.cfg.timer_interval.min(life / 2);
            r.next_at = Some(now + life - before);
            tracing::info!(uuid = %r.l_uuid, granted, "uac: registered");
        } else {
            r.flags &= !FL_REGISTERED;
            r.expires_at = None;
            r.next_at = (!self.cfg.retry_interval.is_zero()).then(|| now + self.cfg.retry_interval);
            tracing::warn!(uuid = %r.l_uuid, code, "uac: registration failed");
        }
    }

    /// Applies `f` to the records whose `attr` is `val`; how many.
    pub fn update(
        &self,
        attr: &str,
        val: &str,
        f: impl Fn(&mut Record, Instant),
    ) -> Result<usize, String> {
        let now = self.clock.now();
        let mut records = lock(&self.records);
        let mut n = 0;
        for r in records.iter_mut() {
            if r.matches(attr, val)? {
                f(r, now);
                n += 1;
            }
        }
        Ok(n)
    }

    pub fn enable(&self, attr: &str, val: &str) -> Result<usize, String> {
        self.update(attr, val, |r, now| {
            if r.flags & FL_DISABLED != 0 {
                r.flags &= !FL_DISABLED;
                r.next_at = Some(now);
            }
        })
    }

    pub fn disable(&self, attr: &str, val: &str) -> Result<usize, String> {
        self.update(attr, val, |r, _| {
            r.flags |= FL_DISABLED;
            r.next_at = None;
        })
    }

    /// A copy of the records whose `attr` is `val`.
    pub fn find(&self, attr: &str, val: &str) -> Result<Vec<Record>, String> {
        let records = lock(&self.records);
        let mut out = Vec::new();
        for r in records.iter() {
            if r.matches(attr, val)? {
                out.push(r.clone());
            }
        }
        Ok(out)
    }

    /// Kamailio's `uac_reg_status` codes: 1 registered, -2 in progress, -3 disabled,
    /// -99 not registered, -1 no such record.
    pub fn status(&self, l_uuid: &str) -> i64 {
        let now = self.clock.now();
        let records = lock(&self.records);
        match records.iter().find(|r| r.l_uuid == l_uuid) {
            None => -1,
            Some(r) if r.flags & FL_DISABLED != 0 => -3,
            Some(r) if r.flags & FL_ONGOING != 0 => -2,
            Some(r) if r.flags & FL_REGISTERED != 0 && r.expires_at.is_some_and(|e| e > now) => 1,
            Some(_) => -99,
        }
    }

    pub fn dump(&self) -> RpcValue {
        let (now, unix) = (self.clock.now(), self.clock.unix_secs());
        RpcValue::Array(
            lock(&self.records)
                .iter()
                .map(|r| r.rpc(now, unix))
                .collect(),
        )
    }

    pub fn info(&self, attr: &str, val: &str) -> Result<RpcValue, String> {
        let (now, unix) = (self.clock.now(), self.clock.unix_secs());
        let found = self.find(attr, val)?;
        found
            .first()
            .map(|r| r.rpc(now, unix))
            .ok_or_else(|| format!("no registration with {attr} {val}"))
    }
}

/// The expiry the registrar granted: our Contact's `expires` parameter, else the
/// reply's Expires header (RFC 3261 §10.2.4).
fn granted_expires(reply: &SipMessage, l_uuid: &str) -> Option<u32> {
    let ours = format!("sip:{l_uuid}@");
    for c in reply.contacts().flatten() {
        if c.uri_bytes().starts_with(ours.as_bytes()) {
            if let Some(Some(v)) = c.param("expires") {
                if let Some(n) = std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                {
                    return Some(n);
                }
            }
        }
    }
    reply
        .header_bytes("Expires")
        .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse().ok())
}
