//! The dialogs this proxy tracks, and the profiles they are in.
//!
//! One lock guards the indexes and the profile counts, so that a dialog joins, leaves and
//! is counted in a profile in one step: the count a script reads is the number of live
//! dialogs in the profile, never a dialog counted twice or after it ended. Lock order:
//! the table, then a dialog's [`Live`] part; never the other way round.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// At most this many dialogs are tracked at once: `dlg_manage()` fails past it, so a flood
/// of INVITEs cannot grow the table without a bound.
pub const MAX_DIALOGS: usize = 1_000_000;

/// Kamailio's dialog states, with its numbers (`$dlg(state)`, the `state` column).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DlgState {
    /// The INVITE went out, no reply yet.
    Unconfirmed = 1,
    /// A provisional reply came back.
    Early = 2,
    /// The 2xx went upstream, its ACK has not been seen.
    ConfirmedNa = 3,
    /// The ACK of the 2xx was seen.
    Confirmed = 4,
    /// Ended (BYE, failure, timeout).
    Deleted = 5,
}

impl DlgState {
    /// Kamailio's number for the state.
    pub fn code(self) -> i64 {
        self as i64
    }

    /// The state of a stored number; `None` for an unknown one.
    pub fn from_code(n: i64) -> Option<DlgState> {
        Some(match n {
            1 => DlgState::Unconfirmed,
            2 => DlgState::Early,
            3 => DlgState::ConfirmedNa,
            4 => DlgState::Confirmed,
            5 => DlgState::Deleted,
            _ => return None,
        })
    }
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One dialog. What the INVITE fixed is immutable; the rest is in [`Live`].
pub struct Dialog {
    /// Hash bucket of the Call-ID (Kamailio's `h_entry`).
    pub h_entry: u32,
    /// Sequence number in the table (Kamailio's `h_id`).
    pub h_id: u32,
    /// The Call-ID.
    pub callid: Bytes,
    /// The caller's From URI.
    pub from_uri: Bytes,
    /// The caller's From tag.
    pub from_tag: Bytes,
    /// The To URI of the INVITE.
    pub to_uri: Bytes,
    /// The Request-URI of the INVITE as received.
    pub req_uri: Bytes,
    /// The caller's Contact URI.
    pub caller_contact: Bytes,
    /// The caller's side of the route set (the INVITE's Record-Route entries, the hop
    /// next to this proxy first), each a URI.
    pub caller_route_set: Vec<Bytes>,
    /// The socket the INVITE came in on (`udp:ip:port`).
    pub caller_sock: Bytes,
    pub(crate) live: Mutex<Live>,
}

/// What changes during a dialog's life.
#[derive(Clone, Debug)]
pub struct Live {
    /// The state.
    pub state: DlgState,
    /// The callee's tag (empty until a reply with one).
    pub to_tag: Bytes,
    /// The callee's Contact URI.
    pub callee_contact: Bytes,
    /// The callee's side of the route set (the hop next to this proxy first).
    pub callee_route_set: Vec<Bytes>,
    /// The socket towards the callee.
    pub callee_sock: Bytes,
    /// The last CSeq the caller used.
    pub caller_cseq: u32,
    /// The last CSeq the callee used (0: none yet).
    pub callee_cseq: u32,
    /// Unix seconds of the 2xx (0 before).
    pub start_ts: i64,
    /// Unix seconds the dialog was created.
    pub created: i64,
    /// Unix milliseconds of the 2xx (0 before) and of the creation: CDR times.
    pub start_ms: i64,
    pub created_ms: i64,
    /// The timeout in seconds, counted from the 2xx.
    pub lifetime: u32,
    /// When the timeout fires (unix ms), once confirmed.
    pub expires_ms: Option<i64>,
    /// Script flags (`dlg_setflag`).
    pub sflags: u32,
    /// BYE both sides when the timeout fires.
    pub timeout_bye: bool,
    /// Dialog variables (`$dlg_var`), in the order they were first set.
    pub vars: Vec<(Bytes, Bytes)>,
    /// Profiles the dialog is in: (profile, value; empty for a profile without values).
    pub profiles: Vec<(Arc<str>, Bytes)>,
    /// The request that created it went to a transaction (else it is dropped with its
    /// message).
    pub relayed: bool,
}

impl Dialog {
    /// The changing part, locked.
    pub fn live(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `h_entry.h_id` in hex, the value of the `did` Record-Route parameter.
    pub fn did(&self) -> String {
        format!("{:x}.{:x}", self.h_entry, self.h_id)
    }
}

/// The fixed part of a new dialog, as the INVITE gives it.
pub struct NewDialog {
    /// See [`Dialog::callid`].
    pub callid: Bytes,
    /// See [`Dialog::from_uri`].
    pub from_uri: Bytes,
    /// See [`Dialog::from_tag`].
    pub from_tag: Bytes,
    /// See [`Dialog::to_uri`].
    pub to_uri: Bytes,
    /// See [`Dialog::req_uri`].
    pub req_uri: Bytes,
    /// See [`Dialog::caller_contact`].
    pub caller_contact: Bytes,
    /// See [`Dialog::caller_route_set`].
    pub caller_route_set: Vec<Bytes>,
    /// See [`Dialog::caller_sock`].
    pub caller_sock: Bytes,
    /// The INVITE's CSeq.
    pub caller_cseq: u32,
    /// The timeout, seconds.
    pub lifetime: u32,
    /// See [`Live::timeout_bye`].
    pub timeout_bye: bool,
}

/// Which way an in-dialog request goes, relative to the INVITE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Caller to callee.
    Downstream,
    /// Callee to caller.
    Upstream,
}

#[derive(Default)]
struct Index {
    by_key: HashMap<(u32, u32), Arc<Dialog>>,
    by_callid: HashMap<Bytes, Vec<(u32, u32)>>,
    /// Live dialogs per (profile, value) and per profile.
    counts: HashMap<(Arc<str>, Bytes), usize>,
    totals: HashMap<Arc<str>, usize>,
}

/// Every tracked dialog.
pub struct Table {
    index: Mutex<Index>,
    next_id: AtomicU32,
    hash_size: AtomicU32,
}

impl Default for Table {
    fn default() -> Table {
        Table {
            index: Mutex::default(),
            next_id: AtomicU32::new(1),
            hash_size: AtomicU32::new(4096),
        }
    }
}

/// Kamailio's string hash is its own; any stable spread over the buckets does.
fn bucket(callid: &[u8], size: u32) -> u32 {
    let mut h: u32 = 2_166_136_261;
    for b in callid {
        h ^= u32::from(*b);
        h = h.wrapping_mul(16_777_619);
    }
    h % size.max(1)
}

/// How counts change when a dialog enters or leaves a profile.
fn count(ix: &mut Index, profile: &Arc<str>, value: &Bytes, up: bool) {
    let key = (profile.clone(), value.clone());
    let c = ix.counts.entry(key.clone()).or_default();
    let t = ix.totals.entry(profile.clone()).or_default();
    if up {
        *c += 1;
        *t += 1;
    } else {
        *c = c.saturating_sub(1);
        *t = t.saturating_sub(1);
        if *c == 0 {
            ix.counts.remove(&key);
        }
    }
}

impl Table {
    fn index(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets the number of hash buckets (`hash_size`).
    pub fn set_hash_size(&self, size: u32) {
        self.hash_size.store(size.max(1), Ordering::Relaxed);
    }

    /// Tracks a new dialog; `None` when [`MAX_DIALOGS`] are tracked already.
    pub fn create(&self, n: NewDialog) -> Option<Arc<Dialog>> {
        let mut ix = self.index();
        if ix.by_key.len() >= MAX_DIALOGS {
            return None;
        }
        let h_entry = bucket(&n.callid, self.hash_size.load(Ordering::Relaxed));
        let h_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let now_ms = now_ms();
        let now = now_ms / 1000;
        let d = Arc::new(Dialog {
            h_entry,
            h_id,
            callid: n.callid,
            from_uri: n.from_uri,
            from_tag: n.from_tag,
            to_uri: n.to_uri,
            req_uri: n.req_uri,
            caller_contact: n.caller_contact,
            caller_route_set: n.caller_route_set,
            caller_sock: n.caller_sock,
            live: Mutex::new(Live {
                state: DlgState::Unconfirmed,
                to_tag: Bytes::new(),
                callee_contact: Bytes::new(),
                callee_route_set: Vec::new(),
                callee_sock: Bytes::new(),
                caller_cseq: n.caller_cseq,
                callee_cseq: 0,
                start_ts: 0,
                created: now,
                start_ms: 0,
                created_ms: now_ms,
                lifetime: n.lifetime,
                expires_ms: None,
                sflags: 0,
                timeout_bye: n.timeout_bye,
                vars: Vec::new(),
                profiles: Vec::new(),
                relayed: false,
            }),
        });
        Self::insert_locked(&mut ix, d.clone());
        Some(d)
    }

    fn insert_locked(ix: &mut Index, d: Arc<Dialog>) {
        let key = (d.h_entry, d.h_id);
        ix.by_callid.entry(d.callid.clone()).or_default().push(key);
        for (p, v) in d.live().profiles.clone() {
            count(ix, &p, &v, true);
        }
        ix.by_key.insert(key, d);
    }

    /// Puts back a dialog loaded from the database, profiles counted; later ids are
    /// above its `h_id`.
    pub fn restore(&self, d: Dialog) -> Arc<Dialog> {
        let d = Arc::new(d);
        let mut ix = self.index();
        self.next_id
            .fetch_max(d.h_id.wrapping_add(1), Ordering::Relaxed);
        Self::insert_locked(&mut ix, d.clone());
        d
    }

    /// The dialog `h_entry`/`h_id`.
    pub fn get(&self, h_entry: u32, h_id: u32) -> Option<Arc<Dialog>> {
        self.index().by_key.get(&(h_entry, h_id)).cloned()
    }

    /// The dialog an in-dialog request belongs to, by Call-ID and tags, and its direction.
    pub fn find(
        &self,
        callid: &[u8],
        from_tag: &[u8],
        to_tag: &[u8],
    ) -> Option<(Arc<Dialog>, Dir)> {
        let ix = self.index();
        for key in ix.by_callid.get(callid)? {
            let Some(d) = ix.by_key.get(key) else {
                continue;
            };
            let live = d.live();
            if live.to_tag.is_empty() {
                continue;
            }
            if d.from_tag == from_tag && live.to_tag == to_tag {
                return Some((d.clone(), Dir::Downstream));
            }
            if d.from_tag == to_tag && live.to_tag == from_tag {
                return Some((d.clone(), Dir::Upstream));
            }
        }
        None
    }

    /// Removes the dialog and its profile memberships; `false` when it had ended already
    /// (so each dialog is counted out exactly once).
    pub fn end(&self, d: &Dialog) -> bool {
        let mut ix = self.index();
        let profiles = {
            let mut live = d.live();
            if live.state == DlgState::Deleted {
                return false;
            }
            live.state = DlgState::Deleted;
            live.expires_ms = None;
            std::mem::take(&mut live.profiles)
        };
        for (p, v) in &profiles {
            count(&mut ix, p, v, false);
        }
        let key = (d.h_entry, d.h_id);
        ix.by_key.remove(&key);
        if let Some(keys) = ix.by_callid.get_mut(&d.callid) {
            keys.retain(|k| *k != key);
            if keys.is_empty() {
                ix.by_callid.remove(&d.callid);
            }
        }
        true
    }

    /// Adds the dialog to a profile (once per value); `false` when it has ended.
    pub fn set_profile(&self, d: &Dialog, profile: &Arc<str>, value: Bytes) -> bool {
        let mut ix = self.index();
        let mut live = d.live();
        if live.state == DlgState::Deleted {
            return false;
        }
        if !live
            .profiles
            .iter()
            .any(|(p, v)| p == profile && *v == value)
        {
            live.profiles.push((profile.clone(), value.clone()));
            drop(live);
            count(&mut ix, profile, &value, true);
        }
        true
    }

    /// Takes the dialog out of a profile (the given value, or every value); whether it
    /// was in.
    pub fn unset_profile(&self, d: &Dialog, profile: &str, value: Option<&[u8]>) -> bool {
        let mut ix = self.index();
        let mut live = d.live();
        let mut removed = Vec::new();
        live.profiles.retain(|(p, v)| {
            let hit = &**p == profile && value.is_none_or(|x| x == v);
            if hit {
                removed.push((p.clone(), v.clone()));
            }
            !hit
        });
        drop(live);
        for (p, v) in &removed {
            count(&mut ix, p, v, false);
        }
        !removed.is_empty()
    }

    /// Live dialogs in a profile (with that value, or with any).
    pub fn profile_size(&self, profile: &str, value: Option<&[u8]>) -> usize {
        let ix = self.index();
        let key: Arc<str> = Arc::from(profile);
        match value {
            None => ix.totals.get(&key).copied().unwrap_or(0),
            Some(v) => ix
                .counts
                .get(&(key, Bytes::copy_from_slice(v)))
                .copied()
                .unwrap_or(0),
        }
    }

    /// Every tracked dialog, ordered by `h_entry`, `h_id`.
    pub fn all(&self) -> Vec<Arc<Dialog>> {
        let mut v: Vec<_> = self.index().by_key.values().cloned().collect();
        v.sort_by_key(|d| (d.h_entry, d.h_id));
        v
    }

    /// Confirmed dialogs whose timeout is due at `now` (unix ms).
    pub fn expired(&self, now: i64) -> Vec<Arc<Dialog>> {
        let ix = self.index();
        ix.by_key
            .values()
            .filter(|d| d.live().expires_ms.is_some_and(|e| e <= now))
            .cloned()
            .collect()
    }

    /// Tracked dialogs.
    pub fn len(&self) -> usize {
        self.index().by_key.len()
    }

    /// No dialog is tracked.
    pub fn is_empty(&self) -> bool {
        self.index().by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(callid: &str) -> NewDialog {
        NewDialog {
            callid: Bytes::copy_from_slice(callid.as_bytes()),
            from_uri: Bytes::from_static(b"sip:a@x"),
            from_tag: Bytes::from_static(b"ft"),
            to_uri: Bytes::from_static(b"sip:b@x"),
            req_uri: Bytes::from_static(b"sip:b@x"),
            caller_contact: Bytes::from_static(b"sip:a@1.2.3.4"),
            caller_route_set: Vec::new(),
            caller_sock: Bytes::from_static(b"udp:127.0.0.1:5060"),
            caller_cseq: 1,
            lifetime: 10,
            timeout_bye: false,
        }
    }

    #[test]
    fn a_dialog_counts_once_in_a_profile_and_leaves_it_once() {
        let t = Table::default();
        let p: Arc<str> = Arc::from("caller");
        let d = t.create(new("c1")).unwrap();
        assert!(t.set_profile(&d, &p, Bytes::from_static(b"alice")));
        assert!(t.set_profile(&d, &p, Bytes::from_static(b"alice")));
        let e = t.create(new("c2")).unwrap();
        t.set_profile(&e, &p, Bytes::from_static(b"bob"));
        assert_eq!(t.profile_size("caller", Some(b"alice")), 1);
        assert_eq!(t.profile_size("caller", None), 2);
        assert!(t.end(&d));
        assert!(!t.end(&d), "ended once");
        assert_eq!(t.profile_size("caller", Some(b"alice")), 0);
        assert_eq!(t.profile_size("caller", None), 1);
        assert!(!t.set_profile(&d, &p, Bytes::from_static(b"alice")));
        assert!(t.unset_profile(&e, "caller", None));
        assert_eq!(t.profile_size("caller", None), 0);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn in_dialog_requests_match_both_ways() {
        let t = Table::default();
        let d = t.create(new("c1")).unwrap();
        assert!(t.find(b"c1", b"ft", b"tt").is_none(), "no To tag yet");
        d.live().to_tag = Bytes::from_static(b"tt");
        assert_eq!(t.find(b"c1", b"ft", b"tt").unwrap().1, Dir::Downstream);
        assert_eq!(t.find(b"c1", b"tt", b"ft").unwrap().1, Dir::Upstream);
        assert!(t.find(b"c1", b"ft", b"other").is_none());
        assert!(t.find(b"c9", b"ft", b"tt").is_none());
    }
}
