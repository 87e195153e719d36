//! The records of `dlgs`: one per call, found by its Call-ID, moved through Kamailio's six
//! states by the requests and replies of the call, and forgotten a while after they end
//! (each state has its lifetime, as in Kamailio).

use bytes::Bytes;
use regex::bytes::Regex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};

/// A call's state; the numbers are Kamailio's (`dlgs.list` shows them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The INVITE was seen, nothing answered yet.
    Init = 0,
    /// A provisional reply (1xx) went back.
    Progress = 1,
    /// A 2xx went back, its ACK not seen yet.
    Answered = 2,
    /// The ACK of the 2xx was seen.
    Confirmed = 3,
    /// A BYE ended the answered call.
    Terminated = 4,
    /// A negative final reply or a CANCEL ended the call before it was answered.
    NotAnswered = 5,
}

impl State {
    const ALL: [State; 6] = [
        State::Init,
        State::Progress,
        State::Answered,
        State::Confirmed,
        State::Terminated,
        State::NotAnswered,
    ];

    /// Whether the call is still going (counted by `dlgs_count`, `dlgs_tags_count`).
    pub fn live(self) -> bool {
        !matches!(self, State::Terminated | State::NotAnswered)
    }

    /// The name of the state in `dlgs.stats`.
    pub fn name(self) -> &'static str {
        match self {
            State::Init => "init",
            State::Progress => "progress",
            State::Answered => "answered",
            State::Confirmed => "confirmed",
            State::Terminated => "terminated",
            State::NotAnswered => "notanswered",
        }
    }
}

/// A number of records for each state, in Kamailio's order.
pub type StateCounts = [(State, u64); 6];

/// One tracked call.
#[derive(Clone, Debug)]
pub struct Item {
    pub callid: Bytes,
    pub ftag: Bytes,
    pub ttag: Bytes,
    /// The branch of the INVITE's top Via: a new INVITE with another branch after the
    /// call ended is a new attempt (serial forking); one with the same branch a
    /// retransmission.
    pub branch: Bytes,
    /// Unique id of the record.
    pub ruid: String,
    pub src: Bytes,
    pub dst: Bytes,
    pub data: Bytes,
    pub state: State,
    /// Unix seconds.
    pub ts_init: u64,
    pub ts_answer: u64,
    pub ts_finish: u64,
    pub tags: Vec<Bytes>,
}

/// The SIP fields of a message that find its record.
#[derive(Clone, Debug)]
pub struct SipFields {
    pub callid: Bytes,
    pub ftag: Bytes,
    pub ttag: Bytes,
    pub branch: Bytes,
}

/// Which text field `dlgs_count` and the RPCs compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// Every live call, whatever the operator and value.
    Any,
    Src,
    Dst,
    Data,
}

impl Field {
    pub fn parse(s: &[u8]) -> Option<Field> {
        match s.to_ascii_lowercase().as_slice() {
            b"any" => Some(Field::Any),
            b"src" => Some(Field::Src),
            b"dst" => Some(Field::Dst),
            b"data" => Some(Field::Data),
            _ => None,
        }
    }
}

/// How a field is compared with the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Matches the regular expression (extended, case-insensitive).
    Re,
    /// Starts with.
    Sw,
    /// Matches the shell wildcard pattern (fnmatch).
    Fm,
}

impl Op {
    pub fn parse(s: &[u8]) -> Option<Op> {
        match s.to_ascii_lowercase().as_slice() {
            b"eq" => Some(Op::Eq),
            b"ne" => Some(Op::Ne),
            b"re" => Some(Op::Re),
            b"sw" => Some(Op::Sw),
            b"fm" => Some(Op::Fm),
            _ => None,
        }
    }
}

/// A filter on the records: a field, an operator and a value, ready to test.
pub struct Filter {
    field: Field,
    test: Test,
}

enum Test {
    Eq(Bytes),
    Ne(Bytes),
    Re(Regex),
    Sw(Bytes),
    Fm(glob::Pattern),
}

impl Filter {
    /// Compiles the filter; an invalid regex or wildcard pattern is an error.
    pub fn new(field: Field, op: Op, value: &[u8]) -> Result<Filter, String> {
        let text = || String::from_utf8_lossy(value).into_owned();
        let test = match op {
            Op::Eq => Test::Eq(Bytes::copy_from_slice(value)),
            Op::Ne => Test::Ne(Bytes::copy_from_slice(value)),
            Op::Sw => Test::Sw(Bytes::copy_from_slice(value)),
            Op::Re => Test::Re(
                regex::bytes::RegexBuilder::new(&text())
                    .case_insensitive(true)
                    .multi_line(true)
                    .build()
                    .map_err(|e| format!("bad regex: {e}"))?,
            ),
            Op::Fm => Test::Fm(
                glob::Pattern::new(&text()).map_err(|e| format!("bad wildcard pattern: {e}"))?,
            ),
        };
        Ok(Filter { field, test })
    }

    /// Whether `it` passes; field `any` passes every record.
    pub fn matches(&self, it: &Item) -> bool {
        let v: &[u8] = match self.field {
            Field::Any => return true,
            Field::Src => &it.src,
            Field::Dst => &it.dst,
            Field::Data => &it.data,
        };
        match &self.test {
            Test::Eq(x) => v == &x[..],
            Test::Ne(x) => v != &x[..],
            Test::Re(re) => re.is_match(v),
            Test::Sw(x) => v.starts_with(x),
            // fnmatch() without flags: `*` and `?` match `/` and a leading dot too.
            Test::Fm(p) => p.matches_with(
                &String::from_utf8_lossy(v),
                glob::MatchOptions {
                    case_sensitive: true,
                    require_literal_separator: false,
                    require_literal_leading_dot: false,
                },
            ),
        }
    }
}

/// The lifetimes and limits of the table (module parameters).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Seconds a call may stay unanswered (init, progress, answered without ACK).
    pub init_lifetime: u64,
    /// Seconds an answered call is kept from its 2xx.
    pub active_lifetime: u64,
    /// Seconds an ended call stays listed.
    pub finish_lifetime: u64,
    /// At most this many records; `dlgs_init` fails beyond.
    pub max_items: usize,
    /// At most this many tags on one record.
    pub max_tags: usize,
    /// At most this many bytes of fields (src, dst, data, SIP ids, tags) in one record.
    pub max_item_size: usize,
}

/// Why a record was not added.
#[derive(Debug, PartialEq, Eq)]
pub enum AddError {
    /// `max_items` records exist.
    Full,
    /// The fields exceed `max_item_size`.
    TooBig,
}

/// The table of records, in shards (Kamailio's `hash_size` slots) so that messages of
/// different calls rarely wait for each other.
pub struct Table {
    shards: Vec<Mutex<HashMap<Bytes, Item>>>,
    limits: RwLock<Limits>,
    len: AtomicUsize,
    /// Records removed by the timer, by their state then (`dlgs.stats` "final").
    finished: [AtomicU64; 6],
    next_ruid: AtomicU64,
    ruid_prefix: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Table {
    /// A table of `shards` slots (rounded up to a power of two); `start` (unix seconds)
    /// makes the record ids of this run differ from those of an earlier one.
    pub fn new(shards: usize, limits: Limits, start: u64) -> Table {
        let n = shards.clamp(1, 1 << 16).next_power_of_two();
        Table {
            shards: (0..n).map(|_| Mutex::new(HashMap::new())).collect(),
            limits: RwLock::new(limits),
            len: AtomicUsize::new(0),
            finished: Default::default(),
            next_ruid: AtomicU64::new(1),
            ruid_prefix: format!("dlgs-{start:x}"),
        }
    }

    /// The lifetimes and limits now.
    pub fn limits(&self) -> Limits {
        *self.limits.read().unwrap_or_else(|e| e.into_inner())
    }

    /// New lifetimes and limits (a reload); records beyond a lower `max_items` stay until
    /// they expire.
    pub fn set_limits(&self, limits: Limits) {
        *self.limits.write().unwrap_or_else(|e| e.into_inner()) = limits;
    }

    fn shard(&self, callid: &[u8]) -> &Mutex<HashMap<Bytes, Item>> {
        // FNV-1a: cheap and spreads Call-IDs that differ in a few characters.
        let mut h: u32 = 0x811c_9dc5;
        for b in callid {
            h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
        }
        &self.shards[h as usize & (self.shards.len() - 1)]
    }

    /// How many records exist.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether there are none (the reply tap skips its parsing then).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds the record of an INVITE. `Ok(false)`: a record of that Call-ID exists and is
    /// kept (a retransmission, a spiral or a parallel fork, which are not tracked apart).
    /// A new branch after the call ended replaces the ended record (serial forking).
    pub fn add(
        &self,
        sf: SipFields,
        src: Bytes,
        dst: Bytes,
        data: Bytes,
        now: u64,
    ) -> Result<bool, AddError> {
        let size = sf.callid.len()
            + sf.ftag.len()
            + sf.ttag.len()
            + sf.branch.len()
            + src.len()
            + dst.len()
            + data.len();
        if size > self.limits().max_item_size {
            return Err(AddError::TooBig);
        }
        let mut shard = lock(self.shard(&sf.callid));
        if let Some(old) = shard.get(&sf.callid) {
            if old.branch == sf.branch || old.state.live() {
                return Ok(false);
            }
            self.finished[old.state as usize].fetch_add(1, Ordering::Relaxed);
        } else {
            if self.len() >= self.limits().max_items {
                return Err(AddError::Full);
            }
            self.len.fetch_add(1, Ordering::Relaxed);
        }
        let n = self.next_ruid.fetch_add(1, Ordering::Relaxed);
        let item = Item {
            callid: sf.callid.clone(),
            ftag: sf.ftag,
            ttag: sf.ttag,
            branch: sf.branch,
            ruid: format!("{}-{n:x}", self.ruid_prefix),
            src,
            dst,
            data,
            state: State::Init,
            ts_init: now,
            ts_answer: 0,
            ts_finish: 0,
            tags: Vec::new(),
        };
        shard.insert(sf.callid, item);
        Ok(true)
    }

    /// Runs `f` on the record of `callid`; `None` when there is none.
    pub fn with_item<R>(&self, callid: &[u8], f: impl FnOnce(&mut Item) -> R) -> Option<R> {
        let mut shard = lock(self.shard(callid));
        shard.get_mut(callid).map(f)
    }

    /// A request of the call: the ACK of the 2xx confirms it, a CANCEL ends it unanswered,
    /// a BYE ends it answered.
    pub fn on_request(&self, callid: &[u8], method: &ferrosip_sip::Method, now: u64) {
        use ferrosip_sip::Method;
        self.with_item(callid, |it| match method {
            Method::Ack if it.state == State::Answered => it.state = State::Confirmed,
            Method::Cancel if matches!(it.state, State::Init | State::Progress) => {
                it.state = State::NotAnswered;
                it.ts_finish = now;
            }
            Method::Bye if matches!(it.state, State::Answered | State::Confirmed) => {
                it.state = State::Terminated;
                it.ts_finish = now;
            }
            _ => {}
        });
    }

    /// A reply to the call's INVITE: a 1xx makes it progress, a 2xx answers it (keeping
    /// the callee's To tag), a negative final ends it unanswered.
    pub fn on_invite_reply(&self, callid: &[u8], code: u16, to_tag: &[u8], now: u64) {
        let max_tag = self.limits().max_item_size;
        self.with_item(callid, |it| match code {
            100..=199 if it.state == State::Init => it.state = State::Progress,
            200..=299 if matches!(it.state, State::Init | State::Progress) => {
                it.state = State::Answered;
                it.ts_answer = now;
                if it.ttag.is_empty() && to_tag.len() < max_tag {
                    it.ttag = Bytes::copy_from_slice(to_tag);
                }
            }
            300.. if matches!(it.state, State::Init | State::Progress) => {
                it.state = State::NotAnswered;
                it.ts_finish = now;
            }
            _ => {}
        });
    }

    /// Live records passing `filter`.
    pub fn count(&self, filter: &Filter) -> usize {
        self.fold(0, |n, it| {
            n + usize::from(it.state.live() && filter.matches(it))
        })
    }

    /// Adds `tag` to the record of `callid`; false when there is no record or it has
    /// `max_tags` tags or too many bytes.
    pub fn tags_add(&self, callid: &[u8], tag: &[u8]) -> bool {
        let limits = self.limits();
        self.with_item(callid, |it| {
            let used: usize = it.tags.iter().map(Bytes::len).sum();
            if it.tags.len() >= limits.max_tags || used + tag.len() > limits.max_item_size {
                return false;
            }
            it.tags.push(Bytes::copy_from_slice(tag));
            true
        })
        .unwrap_or(false)
    }

    /// Removes one `tag` from the record of `callid`; `None` when there is no record,
    /// else whether the tag was there.
    pub fn tags_rm(&self, callid: &[u8], tag: &[u8]) -> Option<bool> {
        self.with_item(callid, |it| {
            let at = it.tags.iter().rposition(|t| t == tag);
            if let Some(i) = at {
                it.tags.remove(i);
            }
            at.is_some()
        })
    }

    /// How many times `tag` is on live records.
    pub fn tags_count(&self, tag: &[u8]) -> usize {
        self.fold(0, |n, it| {
            if it.state.live() {
                n + it.tags.iter().filter(|t| &t[..] == tag).count()
            } else {
                n
            }
        })
    }

    /// Folds over every record, one shard locked at a time.
    pub fn fold<A>(&self, init: A, mut f: impl FnMut(A, &Item) -> A) -> A {
        let mut acc = init;
        for s in &self.shards {
            for it in lock(s).values() {
                acc = f(acc, it);
            }
        }
        acc
    }

    /// Records per state now, and records removed per their state at removal.
    pub fn stats(&self) -> (StateCounts, StateCounts) {
        let mut active = [0u64; 6];
        self.fold((), |(), it| active[it.state as usize] += 1);
        let a = State::ALL.map(|s| (s, active[s as usize]));
        let f = State::ALL.map(|s| (s, self.finished[s as usize].load(Ordering::Relaxed)));
        (a, f)
    }

    /// Removes the records whose lifetime in their state is over; answers how many.
    pub fn expire(&self, now: u64) -> usize {
        let l = self.limits();
        let mut removed = 0;
        for s in &self.shards {
            lock(s).retain(|_, it| {
                let (since, life) = match it.state {
                    State::Init | State::Progress | State::Answered => {
                        (it.ts_init, l.init_lifetime)
                    }
                    State::Confirmed => (it.ts_answer, l.active_lifetime),
                    State::Terminated | State::NotAnswered => (it.ts_finish, l.finish_lifetime),
                };
                let keep = since.saturating_add(life) >= now;
                if !keep {
                    self.finished[it.state as usize].fetch_add(1, Ordering::Relaxed);
                    removed += 1;
                }
                keep
            });
        }
        self.len.fetch_sub(removed, Ordering::Relaxed);
        removed
    }
}
