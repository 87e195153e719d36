//! One hash table: Kamailio's slots (2^size buckets, each behind its own lock), items
//! with an optional absolute expiry, and Ferrosip's cap on the number of items.
//!
//! A worker locks only the slot of the key it touches, so workers meet on a lock only
//! when they touch keys of the same slot; no lock covers the whole table on the hot path.
//! Expired items read as absent at once; the sweeper task removes them every
//! `timer_interval` seconds (and runs `event_route[htable:expired:<table>]` for each),
//! so no message ever scans a table.

use bytes::Bytes;
use ferrosip_api::Clock;
use ferrosip_api::Value;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

/// Default cap on items per table when the definition gives no `maxsize`.
pub const DEFAULT_MAX_SIZE: usize = 1_000_000;

/// A table definition: `name=>size=8;autoexpire=300;...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableSpec {
    pub name: String,
    /// log2 of the slot count, clamped to 3..=14 as Kamailio does.
    pub size: u32,
    pub autoexpire: u64,
    pub updateexpire: bool,
    pub initval: Option<i64>,
    pub dbtable: Option<String>,
    pub dbmode: u32,
    /// Database columns (`cols='key,v1,v2'`): first the key, then the values packed with
    /// commas. When given, the table is never written back (as in Kamailio).
    pub cols: Vec<String>,
    /// Ferrosip's bound: the most items the table holds.
    pub maxsize: usize,
}

impl TableSpec {
    /// Parses a definition as Kamailio writes it.
    pub fn parse(text: &str) -> Result<TableSpec, String> {
        let (name, attrs) = text
            .split_once("=>")
            .ok_or_else(|| format!("htable definition {text:?} has no \"name=>\""))?;
        let name = name.trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            return Err(format!(
                "htable definition {text:?}: bad table name {name:?}"
            ));
        }
        let mut spec = TableSpec {
            name: name.to_string(),
            size: 4,
            autoexpire: 0,
            updateexpire: true,
            initval: None,
            dbtable: None,
            dbmode: 0,
            cols: Vec::new(),
            maxsize: DEFAULT_MAX_SIZE,
        };
        for attr in split_attrs(attrs) {
            let attr = attr.trim();
            if attr.is_empty() {
                continue;
            }
            let (key, value) = attr
                .split_once('=')
                .ok_or_else(|| format!("htable {name}: attribute {attr:?} has no value"))?;
            let value = value.trim();
            let int = |v: &str| -> Result<i64, String> {
                v.parse::<i64>()
                    .map_err(|_| format!("htable {name}: {key}={v:?} is not a number"))
            };
            let unsigned = |v: &str| -> Result<u64, String> {
                v.parse::<u64>()
                    .map_err(|_| format!("htable {name}: {key}={v:?} is not a number >= 0"))
            };
            match key.trim() {
                "size" => spec.size = unsigned(value)?.clamp(3, 14) as u32,
                "autoexpire" => spec.autoexpire = unsigned(value)?,
                "updateexpire" => spec.updateexpire = unsigned(value)? != 0,
                "initval" => spec.initval = Some(int(value)?),
                "dbtable" => {
                    spec.dbtable = (!value.is_empty()).then(|| value.to_string());
                }
                "dbmode" => spec.dbmode = unsigned(value)?.min(1) as u32,
                "cols" => {
                    let list = value.trim_matches(|c| c == '\'' || c == '"');
                    spec.cols = list.split(',').map(|c| c.trim().to_string()).collect();
                    if spec.cols.len() < 2 || spec.cols.iter().any(String::is_empty) {
                        return Err(format!(
                            "htable {name}: cols needs at least two column names, got {value:?}"
                        ));
                    }
                }
                "maxsize" => {
                    let n = unsigned(value)?;
                    if n == 0 || n > 100_000_000 {
                        return Err(format!("htable {name}: maxsize must be 1..100000000"));
                    }
                    spec.maxsize = n as usize;
                }
                "dmqreplicate" => {
                    if unsigned(value)? != 0 {
                        return Err(format!(
                            "htable {name}: dmqreplicate=1 needs DMQ, which this version of Ferrosip does not have"
                        ));
                    }
                }
                other => return Err(format!("htable {name}: unknown attribute {other:?}")),
            }
        }
        Ok(spec)
    }
}

/// Splits `a=1;cols='x,y';b=2` at semicolons outside quotes.
fn split_attrs(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quote = None;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ';') => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// One item's value: an integer or a string, as in Kamailio.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemValue {
    Int(i64),
    Str(Bytes),
}

impl ItemValue {
    pub fn to_value(&self) -> Value {
        match self {
            ItemValue::Int(i) => Value::Int(*i),
            ItemValue::Str(s) => Value::Str(s.clone()),
        }
    }

    /// A script value as an item: null has none (it deletes).
    pub fn from_value(v: &Value) -> Option<ItemValue> {
        match v {
            Value::Null => None,
            Value::Int(i) => Some(ItemValue::Int(*i)),
            Value::Str(s) => Some(ItemValue::Str(s.clone())),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Item {
    pub value: ItemValue,
    /// Absolute expiry (Unix seconds); 0 never.
    pub expires: u64,
}

impl Item {
    fn expired(&self, now: u64) -> bool {
        self.expires != 0 && self.expires < now
    }
}

/// Why a write failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// The table holds `maxsize` items already.
    Full,
    /// An increment of a string item.
    NotInteger,
    /// An increment of a missing item in a table without `initval`.
    Missing,
}

/// The lock `sht_lock()` takes: held by one message (its token) at a time, re-entrant for
/// that message, independent of the short data lock so that the holder's own reads and
/// writes go through.
#[derive(Default)]
struct ScriptLock {
    owner: Mutex<Option<(u64, u32)>>,
    released: Condvar,
}

struct Slot {
    items: Mutex<HashMap<Bytes, Item>>,
    script: ScriptLock,
}

/// A hash table.
pub struct Table {
    pub spec: TableSpec,
    slots: Box<[Slot]>,
    hasher: RandomState,
    count: AtomicUsize,
    /// When "table full" was last logged (Unix seconds).
    full_logged: AtomicU64,
    /// Expiry is absolute Unix time (as Kamailio keeps it, and the database `expires`
    /// column holds it), read from the registry's clock so that tests move it.
    clock: Clock,
}

/// A match operator of `sht_rm_name`, `sht_match_name`, ...
#[derive(Clone, Debug)]
pub enum Matcher {
    Eq(Bytes),
    Ne(Bytes),
    Re(regex::bytes::Regex),
    StartsWith(Bytes),
    EndsWith(Bytes),
    Contains(Bytes),
    /// Integer value equal (`$shtcv(t=>eqN)`).
    IntEq(i64),
    /// Everything (`$shtcn(t=>**)`).
    All,
}

impl Matcher {
    /// `op` as the functions take it: eq, ne, re, sw, ew, in.
    pub fn from_op(op: &[u8], val: &[u8]) -> Result<Matcher, String> {
        Ok(match op {
            b"eq" => Matcher::Eq(Bytes::copy_from_slice(val)),
            b"ne" => Matcher::Ne(Bytes::copy_from_slice(val)),
            b"re" => Matcher::Re(regex(val)?),
            b"sw" => Matcher::StartsWith(Bytes::copy_from_slice(val)),
            b"ew" => Matcher::EndsWith(Bytes::copy_from_slice(val)),
            b"in" => Matcher::Contains(Bytes::copy_from_slice(val)),
            other => {
                return Err(format!(
                    "unknown match operator {:?} (eq, ne, re, sw, ew, in)",
                    String::from_utf8_lossy(other)
                ))
            }
        })
    }

    /// The expression of `$shtcn`/`$shtcv`: `~~re`, `~%suffix`, `%~prefix`, `==str`,
    /// `eqN`, `**`; anything else is a regular expression.
    pub fn from_count_expr(expr: &[u8]) -> Result<Matcher, String> {
        let rest = expr.get(2..).unwrap_or_default();
        Ok(match expr.get(..2) {
            Some(b"**") => Matcher::All,
            Some(b"~~") => Matcher::Re(regex(rest)?),
            Some(b"~%") => Matcher::EndsWith(Bytes::copy_from_slice(rest)),
            Some(b"%~") => Matcher::StartsWith(Bytes::copy_from_slice(rest)),
            Some(b"==") => Matcher::Eq(Bytes::copy_from_slice(rest)),
            Some(b"eq") => {
                Matcher::IntEq(ferrosip_api::value::parse_int(rest).ok_or_else(|| {
                    format!("eq needs a number: {:?}", String::from_utf8_lossy(expr))
                })?)
            }
            _ => Matcher::Re(regex(expr)?),
        })
    }

    fn matches(&self, s: &[u8]) -> bool {
        match self {
            Matcher::Eq(v) => s == v.as_ref(),
            Matcher::Ne(v) => s != v.as_ref(),
            Matcher::Re(re) => re.is_match(s),
            Matcher::StartsWith(v) => s.starts_with(v),
            Matcher::EndsWith(v) => s.ends_with(v),
            Matcher::Contains(v) => v.is_empty() || s.windows(v.len()).any(|w| w == v.as_ref()),
            Matcher::IntEq(_) => false,
            Matcher::All => true,
        }
    }

    /// Matches an item's name.
    pub fn name(&self, name: &[u8]) -> bool {
        self.matches(name)
    }

    /// Matches an item's value: string operators see string values only, `eqN` integer
    /// values only (as Kamailio).
    pub fn value(&self, v: &ItemValue) -> bool {
        match (self, v) {
            (Matcher::All, _) => true,
            (Matcher::IntEq(n), ItemValue::Int(i)) => n == i,
            (Matcher::IntEq(_), _) => false,
            (_, ItemValue::Str(s)) => self.matches(s),
            (_, ItemValue::Int(_)) => false,
        }
    }
}

/// Regular expressions as Kamailio compiles them (extended, case-insensitive), with a
/// size limit: the pattern may come from a message.
fn regex(pattern: &[u8]) -> Result<regex::bytes::Regex, String> {
    let text = String::from_utf8_lossy(pattern);
    regex::bytes::RegexBuilder::new(&text)
        .case_insensitive(true)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| format!("bad regular expression {text:?}: {e}"))
}

/// One slot's statistics (`htable.stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    pub slots: usize,
    pub items: usize,
    pub min_slot: usize,
    pub max_slot: usize,
}

impl Table {
    /// A table on the system clock.
    pub fn new(spec: TableSpec) -> Table {
        Table::with_clock(spec, Clock::system())
    }

    /// A table whose expiry times are read from `clock`.
    pub fn with_clock(spec: TableSpec, clock: Clock) -> Table {
        let slots = (0..1usize << spec.size)
            .map(|_| Slot {
                items: Mutex::new(HashMap::new()),
                script: ScriptLock::default(),
            })
            .collect();
        Table {
            spec,
            slots,
            hasher: RandomState::new(),
            count: AtomicUsize::new(0),
            full_logged: AtomicU64::new(0),
            clock,
        }
    }

    /// Seconds since the Unix epoch on the table's clock.
    pub fn unix_now(&self) -> u64 {
        self.clock.unix_secs()
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The slot of a key (random hash key per table: names chosen by a peer cannot pile
    /// up in one slot).
    pub fn slot_index(&self, key: &[u8]) -> usize {
        (self.hasher.hash_one(key) as usize) & (self.slots.len() - 1)
    }

    fn slot(&self, key: &[u8]) -> MutexGuard<'_, HashMap<Bytes, Item>> {
        self.lock_slot(self.slot_index(key))
    }

    fn lock_slot(&self, i: usize) -> MutexGuard<'_, HashMap<Bytes, Item>> {
        self.slots[i]
            .items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// True at most once a minute: whether to log that the table is full now.
    pub fn note_full(&self) -> bool {
        let now = self.unix_now();
        let last = self.full_logged.load(Ordering::Relaxed);
        now >= last + 60
            && self
                .full_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn new_expiry(&self, now: u64) -> u64 {
        if self.spec.autoexpire > 0 {
            now + self.spec.autoexpire
        } else {
            0
        }
    }

    /// Reserves room for one more item under the cap.
    fn reserve(&self) -> Result<(), WriteError> {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.spec.maxsize).then_some(n + 1)
            })
            .map(|_| ())
            .map_err(|_| WriteError::Full)
    }

    fn released(&self, n: usize) {
        if n > 0 {
            self.count.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// The item's value (expired items are absent); `initval` when missing.
    pub fn get(&self, key: &[u8]) -> Option<ItemValue> {
        let now = self.unix_now();
        let slot = self.slot(key);
        match slot.get(key) {
            Some(item) if !item.expired(now) => Some(item.value.clone()),
            _ => self.spec.initval.map(ItemValue::Int),
        }
    }

    /// Whether a live item exists (initval aside).
    pub fn contains(&self, key: &[u8]) -> bool {
        let now = self.unix_now();
        self.slot(key).get(key).is_some_and(|it| !it.expired(now))
    }

    /// Sets an item; `expires` overrides the table's autoexpire (seconds from now).
    pub fn set(
        &self,
        key: &[u8],
        value: ItemValue,
        expires: Option<u64>,
    ) -> Result<(), WriteError> {
        let now = self.unix_now();
        let mut slot = self.slot(key);
        if let Some(item) = slot.get_mut(key) {
            let renew = item.expired(now) || self.spec.updateexpire || expires.is_some();
            item.value = value;
            if renew {
                item.expires = match expires {
                    Some(s) if s > 0 => now + s,
                    Some(_) => 0,
                    None => self.new_expiry(now),
                };
            }
            return Ok(());
        }
        self.reserve()?;
        let expires = match expires {
            Some(s) if s > 0 => now + s,
            Some(_) => 0,
            None => self.new_expiry(now),
        };
        slot.insert(Bytes::copy_from_slice(key), Item { value, expires });
        Ok(())
    }

    /// Puts an item as loaded from the database (absolute expiry kept).
    pub fn load_item(&self, key: Bytes, item: Item) -> Result<(), WriteError> {
        let mut slot = self.slot(&key);
        if let Some(old) = slot.get_mut(&key) {
            *old = item;
            return Ok(());
        }
        self.reserve()?;
        slot.insert(key, item);
        Ok(())
    }

    /// Removes an item; true when it was there.
    pub fn delete(&self, key: &[u8]) -> bool {
        let removed = self.slot(key).remove(key).is_some();
        self.released(usize::from(removed));
        removed
    }

    /// Adds `delta` to an integer item, creating it from `initval` when missing (or
    /// expired); the new value. As Kamailio, a missing item in a table without
    /// `initval` is an error, and so is a string item.
    pub fn add(&self, key: &[u8], delta: i64) -> Result<i64, WriteError> {
        let now = self.unix_now();
        let mut slot = self.slot(key);
        if let Some(item) = slot.get_mut(key) {
            if item.expired(now) {
                let Some(init) = self.spec.initval else {
                    slot.remove(key);
                    self.released(1);
                    return Err(WriteError::Missing);
                };
                item.value = ItemValue::Int(init);
            }
            let ItemValue::Int(n) = &mut item.value else {
                return Err(WriteError::NotInteger);
            };
            *n = n.wrapping_add(delta);
            let n = *n;
            item.expires = self.new_expiry(now);
            return Ok(n);
        }
        let Some(init) = self.spec.initval else {
            return Err(WriteError::Missing);
        };
        self.reserve()?;
        let n = init.wrapping_add(delta);
        slot.insert(
            Bytes::copy_from_slice(key),
            Item {
                value: ItemValue::Int(n),
                expires: self.new_expiry(now),
            },
        );
        Ok(n)
    }

    /// Seconds until the item expires (`$shtex`): 0 for a table without autoexpire or a
    /// missing item.
    pub fn expires_in(&self, key: &[u8]) -> i64 {
        if self.spec.autoexpire == 0 {
            return 0;
        }
        let now = self.unix_now();
        match self.slot(key).get(key) {
            Some(item) if item.expires != 0 => item.expires as i64 - now as i64,
            _ => 0,
        }
    }

    /// Sets the item's expiry to `secs` from now (0: never) (`$shtex` written); as
    /// Kamailio, only in a table with autoexpire.
    pub fn set_expires(&self, key: &[u8], secs: u64) {
        if self.spec.autoexpire == 0 {
            return;
        }
        let now = self.unix_now();
        if let Some(item) = self.slot(key).get_mut(key) {
            item.expires = if secs > 0 { now + secs } else { 0 };
        }
    }

    /// Counts the live items whose name (or value) matches.
    pub fn count(&self, m: &Matcher, by_value: bool) -> usize {
        if matches!(m, Matcher::All) {
            return self.len();
        }
        let now = self.unix_now();
        (0..self.slots.len())
            .map(|i| {
                self.lock_slot(i)
                    .iter()
                    .filter(|(k, it)| {
                        !it.expired(now)
                            && if by_value {
                                m.value(&it.value)
                            } else {
                                m.name(k)
                            }
                    })
                    .count()
            })
            .sum()
    }

    /// True when some live item's name (or value) matches.
    pub fn any(&self, m: &Matcher, by_value: bool) -> bool {
        let now = self.unix_now();
        (0..self.slots.len()).any(|i| {
            self.lock_slot(i).iter().any(|(k, it)| {
                !it.expired(now)
                    && if by_value {
                        m.value(&it.value)
                    } else {
                        m.name(k)
                    }
            })
        })
    }

    /// Removes the items whose name (or value) matches; how many.
    pub fn remove_matching(&self, m: &Matcher, by_value: bool) -> usize {
        let mut removed = 0;
        for i in 0..self.slots.len() {
            let mut slot = self.lock_slot(i);
            let before = slot.len();
            slot.retain(|k, it| {
                !(if by_value {
                    m.value(&it.value)
                } else {
                    m.name(k)
                })
            });
            removed += before - slot.len();
        }
        self.released(removed);
        removed
    }

    /// Removes every item.
    pub fn reset(&self) {
        self.remove_matching(&Matcher::All, false);
    }

    /// Removes the expired items and gives them back (the sweeper's work).
    pub fn take_expired(&self, now: u64) -> Vec<(Bytes, ItemValue)> {
        let mut out = Vec::new();
        for i in 0..self.slots.len() {
            let mut slot = self.lock_slot(i);
            if slot.values().all(|it| !it.expired(now)) {
                continue;
            }
            slot.retain(|k, it| {
                if it.expired(now) {
                    out.push((k.clone(), it.value.clone()));
                    false
                } else {
                    true
                }
            });
        }
        self.released(out.len());
        out
    }

    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// A copy of the live items of slot `i` (iterators).
    pub fn slot_items(&self, i: usize) -> Vec<(Bytes, Item)> {
        let now = self.unix_now();
        self.lock_slot(i)
            .iter()
            .filter(|(_, it)| !it.expired(now))
            .map(|(k, it)| (k.clone(), it.clone()))
            .collect()
    }

    /// A copy of the live items, slot by slot (dump, iterators, write-back).
    pub fn snapshot(&self) -> Vec<(Bytes, Item)> {
        let now = self.unix_now();
        let mut out = Vec::with_capacity(self.len());
        for i in 0..self.slots.len() {
            let slot = self.lock_slot(i);
            out.extend(
                slot.iter()
                    .filter(|(_, it)| !it.expired(now))
                    .map(|(k, it)| (k.clone(), it.clone())),
            );
        }
        out
    }

    pub fn stats(&self) -> TableStats {
        let mut st = TableStats {
            slots: self.slots.len(),
            min_slot: usize::MAX,
            ..TableStats::default()
        };
        for i in 0..self.slots.len() {
            let n = self.lock_slot(i).len();
            st.items += n;
            st.min_slot = st.min_slot.min(n);
            st.max_slot = st.max_slot.max(n);
        }
        st
    }

    /// `sht_lock()`: waits until no other message holds the key's slot, then holds it
    /// for `token` (re-entrant).
    pub fn script_lock(&self, key: &[u8], token: u64) {
        let lock = &self.slots[self.slot_index(key)].script;
        let mut owner = lock.owner.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match &mut *owner {
                None => {
                    *owner = Some((token, 1));
                    return;
                }
                Some((t, depth)) if *t == token => {
                    *depth += 1;
                    return;
                }
                Some(_) => {
                    owner = lock.released.wait(owner).unwrap_or_else(|e| e.into_inner());
                }
            }
        }
    }

    /// `sht_unlock()`: releases one level of `token`'s hold; false when it held none.
    pub fn script_unlock(&self, key: &[u8], token: u64) -> bool {
        let lock = &self.slots[self.slot_index(key)].script;
        let mut owner = lock.owner.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *owner {
            Some((t, depth)) if *t == token => {
                *depth -= 1;
                if *depth == 0 {
                    *owner = None;
                    lock.released.notify_one();
                }
                true
            }
            _ => false,
        }
    }

    /// Releases every hold of `token` (a message that ended with slots still locked).
    pub fn script_unlock_all(&self, token: u64) {
        for slot in self.slots.iter() {
            let mut owner = slot.script.owner.lock().unwrap_or_else(|e| e.into_inner());
            if matches!(&*owner, Some((t, _)) if *t == token) {
                *owner = None;
                slot.script.released.notify_one();
            }
        }
    }
}
