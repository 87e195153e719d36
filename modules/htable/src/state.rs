//! The module's state: the tables by name, the database settings, and the work done
//! outside messages (loading, write-back, the expiry sweeper and its event routes).

use crate::table::{Item, ItemValue, Table, TableSpec};
use bytes::Bytes;
use ferrosip_api::{ModuleParams, MsgContext, NetInfo, RouteKind, Services};
use ferrosip_db::{Db, DbKind, DbValue};
use ferrosip_sip::SipMessage;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Most `event_route[htable:expired:<table>]` runs started by one sweep of one table: each
/// run is a task with a message of its own, and a million items expiring together must not
/// become a million tasks at once.
pub const MAX_EXPIRED_EVENTS: usize = 10_000;

/// Database columns and options (the module parameters of the same names).
#[derive(Clone, Debug)]
pub struct DbConfig {
    pub url: Option<String>,
    pub key_name_column: String,
    pub key_type_column: String,
    pub value_type_column: String,
    pub key_value_column: String,
    pub expires_column: String,
    pub array_size_suffix: String,
    pub db_expires: bool,
}

/// Every table of the script.
pub struct Htable {
    tables: HashMap<String, Arc<Table>>,
    /// In definition order (dump, stats, sweeping).
    pub order: Vec<Arc<Table>>,
    pub db: DbConfig,
    pub timer_interval: u64,
    services: OnceLock<Arc<dyn Services>>,
    connection: OnceLock<Db>,
    next_token: AtomicU64,
    clock: ferrosip_api::Clock,
}

/// The record an `event_route[htable:expired:<table>]` sees as `$shtrecord(key)` and
/// `$shtrecord(value)`.
#[derive(Clone, Debug)]
pub struct ExpiredRecord {
    pub key: Bytes,
    pub value: ItemValue,
}

/// The token of a message holding `sht_lock()`s (see [`crate::table::Table::script_lock`]).
#[derive(Clone, Copy, Debug)]
pub struct LockToken(pub u64);

impl Htable {
    pub fn from_params(p: &ModuleParams, clock: ferrosip_api::Clock) -> Result<Htable, String> {
        let mut tables = HashMap::new();
        let mut order = Vec::new();
        for def in p.all("htable") {
            let text = def.to_bytes().unwrap_or_default();
            let spec = TableSpec::parse(&String::from_utf8_lossy(&text))?;
            if tables.contains_key(&spec.name) {
                return Err(format!("htable {} is defined twice", spec.name));
            }
            let table = Arc::new(Table::with_clock(spec, clock.clone()));
            tables.insert(table.name().to_string(), table.clone());
            order.push(table);
        }
        let url = p
            .get("db_url")
            .to_bytes()
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let url = url.filter(|u| !u.is_empty());
        if url.is_none() {
            if let Some(t) = order.iter().find(|t| t.spec.dbtable.is_some()) {
                return Err(format!(
                    "htable {} has dbtable={} but the module has no db_url",
                    t.name(),
                    t.spec.dbtable.as_deref().unwrap_or_default()
                ));
            }
        }
        if p.int("enable_dmq") != 0 || p.int("dmq_init_sync") != 0 {
            return Err("htable: enable_dmq/dmq_init_sync need DMQ, which this version of Ferrosip does not have".into());
        }
        if p.is_set("event_callback") && !p.get("event_callback").is_null() {
            return Err("htable: event_callback needs a KEMI script, which this version of Ferrosip does not run; use event_route[htable:...]".into());
        }
        let timer_interval = p.int("timer_interval");
        if !(1..=86_400).contains(&timer_interval) {
            return Err(format!(
                "htable: timer_interval must be 1..86400, not {timer_interval}"
            ));
        }
        Ok(Htable {
            tables,
            order,
            db: DbConfig {
                url,
                key_name_column: p.string("key_name_column"),
                key_type_column: p.string("key_type_column"),
                value_type_column: p.string("value_type_column"),
                key_value_column: p.string("key_value_column"),
                expires_column: p.string("expires_column"),
                array_size_suffix: p.string("array_size_suffix"),
                db_expires: p.int("db_expires") != 0,
            },
            timer_interval: timer_interval as u64,
            services: OnceLock::new(),
            connection: OnceLock::new(),
            next_token: AtomicU64::new(1),
            clock,
        })
    }

    pub fn table(&self, name: &[u8]) -> Option<&Arc<Table>> {
        std::str::from_utf8(name)
            .ok()
            .and_then(|n| self.tables.get(n))
    }

    /// The table, or an error naming it.
    pub fn require(&self, name: &[u8]) -> Result<&Arc<Table>, String> {
        self.table(name)
            .ok_or_else(|| format!("no hash table {:?}", String::from_utf8_lossy(name)))
    }

    /// The lock token of the message, given one on first use.
    pub fn token(&self, ctx: &mut MsgContext) -> u64 {
        if let Some(t) = ctx.ext.get::<LockToken>() {
            return t.0;
        }
        let t = self.next_token.fetch_add(1, Ordering::Relaxed);
        ctx.ext.insert(LockToken(t));
        t
    }

    pub fn set_services(&self, services: Arc<dyn Services>) {
        let _ = self.services.set(services);
    }

    fn event_ctx() -> Option<MsgContext> {
        let raw = "OPTIONS sip:htable@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKht\r\n\
                   From: <sip:htable@127.0.0.1>;tag=ht\r\nTo: <sip:htable@127.0.0.1>\r\n\
                   Call-ID: htable-event\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        let msg = SipMessage::parse(Bytes::from_static(raw.as_bytes())).ok()?;
        Some(MsgContext::new(msg, RouteKind::Event, NetInfo::default()))
    }

    /// Runs `event_route[htable:mod-init]`, if the script has one.
    pub fn run_mod_init(&self) {
        if let (Some(services), Some(ctx)) = (self.services.get(), Self::event_ctx()) {
            services.run_event_route("htable:mod-init", ctx);
        }
    }

    /// One sweep: removes the expired items of every table and runs
    /// `event_route[htable:expired:<table>]` for each (when the script has it).
    pub fn sweep(&self) -> usize {
        let now = self.clock.unix_secs();
        let mut total = 0;
        for table in &self.order {
            let expired = table.take_expired(now);
            total += expired.len();
            let Some(services) = self.services.get() else {
                continue;
            };
            let event = format!("htable:expired:{}", table.name());
            let count = expired.len();
            for (key, value) in expired.into_iter().take(MAX_EXPIRED_EVENTS) {
                let Some(mut ctx) = Self::event_ctx() else {
                    break;
                };
                ctx.ext.insert(ExpiredRecord { key, value });
                if !services.run_event_route(&event, ctx) {
                    break; // no such route: nothing to run for the others either
                }
            }
            if count > MAX_EXPIRED_EVENTS {
                tracing::warn!(
                    table = table.name(),
                    expired = count,
                    ran = MAX_EXPIRED_EVENTS,
                    "htable: more items expired in one sweep than event routes are run for"
                );
            }
        }
        total
    }

    // ----- database ---------------------------------------------------------------

    async fn connection(&self) -> Result<Db, String> {
        if let Some(db) = self.connection.get() {
            return Ok(db.clone());
        }
        let url = self.db.url.as_deref().ok_or("htable: no db_url")?;
        let db = Db::connect(url).await.map_err(|e| format!("htable: {e}"))?;
        Ok(self.connection.get_or_init(|| db).clone())
    }

    /// Loads every table that has a `dbtable` (at start).
    pub async fn load_all(&self) -> Result<(), String> {
        for table in &self.order {
            if table.spec.dbtable.is_some() {
                let n = self.load(table).await?;
                tracing::info!(
                    table = table.name(),
                    items = n,
                    "htable loaded from the database"
                );
            }
        }
        Ok(())
    }

    /// Loads one table from its database table (adding to what it holds); the number of
    /// rows loaded.
    pub async fn load(&self, table: &Table) -> Result<usize, String> {
        let Some(dbtable) = table.spec.dbtable.as_deref() else {
            return Err(format!("htable {} has no dbtable", table.name()));
        };
        let db = self.connection().await?;
        let c = &self.db;
        if !table.spec.cols.is_empty() {
            // Custom columns: the first is the key, the others are packed with commas.
            let cols: Vec<&str> = table.spec.cols.iter().map(String::as_str).collect();
            let rows = db
                .select(dbtable, &cols, &[], None)
                .await
                .map_err(|e| format!("htable {}: {e}", table.name()))?;
            let mut n = 0;
            for row in rows {
                let Some(key) = row.first().and_then(db_text) else {
                    continue;
                };
                let value: Vec<String> = row[1..]
                    .iter()
                    .map(|v| db_text(v).unwrap_or_default())
                    .collect();
                self.put_loaded(
                    table,
                    Bytes::from(key),
                    ItemValue::Str(Bytes::from(value.join(","))),
                    0,
                )?;
                n += 1;
            }
            return Ok(n);
        }
        let cols = [
            c.key_name_column.as_str(),
            c.key_type_column.as_str(),
            c.value_type_column.as_str(),
            c.key_value_column.as_str(),
            c.expires_column.as_str(),
        ];
        let rows = db
            .select(dbtable, &cols, &[], None)
            .await
            .map_err(|e| format!("htable {}: {e}", table.name()))?;
        let now = self.clock.unix_secs();
        let mut arrays: HashMap<String, i64> = HashMap::new();
        let mut n = 0;
        for row in rows {
            let Some(name) = row.first().and_then(db_text) else {
                continue;
            };
            let key_type = row.get(1).and_then(DbValue::as_int).unwrap_or(0);
            let value_type = row.get(2).and_then(DbValue::as_int).unwrap_or(0);
            let text = row.get(3).and_then(db_text).unwrap_or_default();
            let expires = row.get(4).and_then(DbValue::as_int).unwrap_or(0);
            let expires = if self.db.db_expires && table.spec.autoexpire > 0 {
                if expires > 0 && (expires as u64) < now {
                    continue; // already expired
                }
                expires.max(0) as u64
            } else if table.spec.autoexpire > 0 {
                now + table.spec.autoexpire
            } else {
                0
            };
            let value = if value_type == 1 {
                match ferrosip_api::value::parse_int(text.as_bytes()) {
                    Some(i) => ItemValue::Int(i),
                    None => {
                        tracing::warn!(table = table.name(), key = %name, "htable: integer value {text:?} is not a number; skipped");
                        continue;
                    }
                }
            } else {
                ItemValue::Str(Bytes::from(text))
            };
            let key = if key_type == 1 {
                let index = arrays.entry(name.clone()).or_insert(0);
                let key = format!("{name}[{index}]");
                *index += 1;
                key
            } else {
                name
            };
            self.put_loaded(table, Bytes::from(key), value, expires)?;
            n += 1;
        }
        for (name, size) in arrays {
            let key = format!("{name}{}", self.db.array_size_suffix);
            self.put_loaded(table, Bytes::from(key), ItemValue::Int(size), 0)?;
        }
        Ok(n)
    }

    fn put_loaded(
        &self,
        table: &Table,
        key: Bytes,
        value: ItemValue,
        expires: u64,
    ) -> Result<(), String> {
        table.load_item(key, Item { value, expires }).map_err(|_| {
            format!(
                "htable {}: the database holds more rows than maxsize={}",
                table.name(),
                table.spec.maxsize
            )
        })
    }

    /// Writes back the tables with `dbmode=1` (at stop): the database table is emptied
    /// and refilled with the live items, as Kamailio does.
    pub async fn save_all(&self) -> Result<(), String> {
        for table in &self.order {
            if table.spec.dbmode == 1 && table.spec.dbtable.is_some() && table.spec.cols.is_empty()
            {
                let n = self.save(table).await?;
                tracing::info!(
                    table = table.name(),
                    items = n,
                    "htable written to the database"
                );
            }
        }
        Ok(())
    }

    pub async fn save(&self, table: &Table) -> Result<usize, String> {
        let Some(dbtable) = table.spec.dbtable.as_deref() else {
            return Ok(0);
        };
        let db = self.connection().await?;
        let c = &self.db;
        let err = |e: ferrosip_db::DbError| format!("htable {}: {e}", table.name());
        let cols = [
            c.key_name_column.as_str(),
            c.key_type_column.as_str(),
            c.value_type_column.as_str(),
            c.key_value_column.as_str(),
            c.expires_column.as_str(),
        ];
        let items = table.snapshot();
        let rows: Vec<[DbValue; 5]> = items
            .iter()
            .map(|(key, item)| {
                let (value_type, text) = match &item.value {
                    ItemValue::Int(i) => (1, i.to_string()),
                    ItemValue::Str(s) => (0, String::from_utf8_lossy(s).into_owned()),
                };
                let expires = if c.db_expires { item.expires as i64 } else { 0 };
                [
                    DbValue::Str(String::from_utf8_lossy(key).into_owned()),
                    DbValue::Int(0),
                    DbValue::Int(value_type),
                    DbValue::Str(text),
                    DbValue::Int(expires),
                ]
            })
            .collect();
        if db.kind() == DbKind::Text {
            // db_text has no transactions: the file is rewritten row by row.
            db.delete(dbtable, &[]).await.map_err(err)?;
            for vals in &rows {
                db.insert(dbtable, &cols, vals).await.map_err(err)?;
            }
        } else {
            // One transaction: readers see the old rows or the new ones, never none.
            let mut tx = db.transaction().await.map_err(err)?;
            tx.delete(dbtable, &[]).await.map_err(err)?;
            for vals in &rows {
                tx.insert(dbtable, &cols, vals).await.map_err(err)?;
            }
            tx.commit().await.map_err(err)?;
        }
        Ok(items.len())
    }
}

fn db_text(v: &DbValue) -> Option<String> {
    match v {
        DbValue::Null => None,
        DbValue::Int(i) | DbValue::Time(i) => Some(i.to_string()),
        DbValue::Double(d) => Some(d.to_string()),
        DbValue::Str(s) => Some(s.clone()),
    }
}
