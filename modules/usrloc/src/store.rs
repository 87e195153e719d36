//! The in-memory location table of one domain (Kamailio's `udomain`): address of record →
//! its contacts, split over many independently locked shards so that workers saving
//! different users never wait for each other.

use crate::contact::{Contact, ContactInfo, TooLong};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

type Shard = HashMap<Box<[u8]>, Vec<Contact>>;

/// A change to persist (db_mode 1-3), keyed by the contact's ruid as in Kamailio's
/// `db_ops_ruid` mode.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Insert the contact, or update the row with its ruid.
    Upsert {
        aor: Box<[u8]>,
        info: Box<ContactInfo>,
    },
    Delete {
        ruid: Box<[u8]>,
    },
}

impl Change {
    pub fn ruid(&self) -> &[u8] {
        match self {
            Change::Upsert { info, .. } => &info.ruid,
            Change::Delete { ruid } => ruid,
        }
    }
}

/// The contacts of one address of record, open for changes; every change is also written
/// to the journal when the storage keeps a database.
pub struct RecordEdit<'a> {
    aor: &'a [u8],
    contacts: &'a mut Vec<Contact>,
    journal: Option<&'a mut Vec<Change>>,
}

impl<'a> RecordEdit<'a> {
    pub fn new(
        aor: &'a [u8],
        contacts: &'a mut Vec<Contact>,
        journal: Option<&'a mut Vec<Change>>,
    ) -> RecordEdit<'a> {
        RecordEdit {
            aor,
            contacts,
            journal,
        }
    }

    pub fn aor(&self) -> &[u8] {
        self.aor
    }

    /// Every stored contact, expired ones included (see [`Contact::is_valid`]).
    pub fn contacts(&self) -> &[Contact] {
        self.contacts
    }

    fn log_upsert(&mut self, info: &ContactInfo) {
        if let Some(j) = self.journal.as_deref_mut() {
            j.push(Change::Upsert {
                aor: self.aor.into(),
                info: Box::new(info.clone()),
            });
        }
    }

    pub fn insert(&mut self, info: ContactInfo) -> Result<(), TooLong> {
        let c = Contact::new(&info)?;
        // Exact growth: a Vec's first push would reserve room for four contacts.
        self.contacts.reserve_exact(1);
        self.contacts.push(c);
        self.log_upsert(&info);
        Ok(())
    }

    /// Replaces the contact at `index` (an out-of-range index is ignored).
    pub fn replace(&mut self, index: usize, info: ContactInfo) -> Result<(), TooLong> {
        if index >= self.contacts.len() {
            return Ok(());
        }
        self.contacts[index] = Contact::new(&info)?;
        self.log_upsert(&info);
        Ok(())
    }

    /// Removes the contact at `index` (an out-of-range index is ignored).
    pub fn remove(&mut self, index: usize) -> Option<Contact> {
        if index >= self.contacts.len() {
            return None;
        }
        let c = self.contacts.remove(index);
        if let Some(j) = self.journal.as_deref_mut() {
            j.push(Change::Delete {
                ruid: c.ruid().into(),
            });
        }
        Some(c)
    }

    /// Removes every contact.
    pub fn clear(&mut self) {
        while !self.contacts.is_empty() {
            self.remove(self.contacts.len() - 1);
        }
    }

    /// Drops the contacts expired at `now` from memory only (their rows are removed by
    /// the timer's bulk delete).
    pub fn drop_expired(&mut self, now: i64) {
        self.contacts.retain(|c| c.is_valid(now));
    }
}

/// One location table (`save("location")` → domain "location").
pub struct Domain {
    name: Box<str>,
    shards: Box<[Mutex<Shard>]>,
    hasher: std::collections::hash_map::RandomState,
    /// db_mode 2: changes waiting for the timer to write them.
    pending: Mutex<Vec<Change>>,
    contacts: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Domain {
    /// A table with `2^shard_bits` shards (clamped to 64..=4096).
    pub fn new(name: &str, shard_bits: u32) -> Domain {
        let n = 1usize << shard_bits.clamp(6, 12);
        Domain {
            name: name.into(),
            shards: (0..n).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: Default::default(),
            pending: Mutex::new(Vec::new()),
            contacts: AtomicU64::new(0),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn shard(&self, aor: &[u8]) -> &Mutex<Shard> {
        let h = self.hasher.hash_one(aor) as usize;
        &self.shards[h & (self.shards.len() - 1)]
    }

    /// Runs `f` on the contacts of `aor` (an empty record when there is none) under the
    /// shard's lock; a record left without contacts is removed. Changes go to `journal`.
    pub fn edit<R>(
        &self,
        aor: &[u8],
        journal: Option<&mut Vec<Change>>,
        f: impl FnOnce(&mut RecordEdit<'_>) -> R,
    ) -> R {
        let mut shard = lock(self.shard(aor));
        let (result, before, after) = match shard.get_mut(aor) {
            Some(contacts) => {
                let before = contacts.len();
                let r = f(&mut RecordEdit::new(aor, contacts, journal));
                let after = contacts.len();
                if after == 0 {
                    shard.remove(aor);
                } else if contacts.capacity() > after {
                    contacts.shrink_to_fit();
                }
                (r, before, after)
            }
            None => {
                let mut contacts = Vec::new();
                let r = f(&mut RecordEdit::new(aor, &mut contacts, journal));
                let after = contacts.len();
                if after > 0 {
                    contacts.shrink_to_fit();
                    shard.insert(aor.into(), contacts);
                }
                (r, 0, after)
            }
        };
        drop(shard);
        self.count_change(before, after);
        result
    }

    fn count_change(&self, before: usize, after: usize) {
        if after > before {
            self.contacts
                .fetch_add((after - before) as u64, Ordering::Relaxed);
        } else if before > after {
            self.contacts
                .fetch_sub((before - after) as u64, Ordering::Relaxed);
        }
    }

    /// Reads the contacts of `aor` under the shard's lock.
    pub fn read<R>(&self, aor: &[u8], f: impl FnOnce(&[Contact]) -> R) -> R {
        let shard = lock(self.shard(aor));
        f(shard.get(aor).map_or(&[], |v| v.as_slice()))
    }

    /// Adds a contact read from the database at start, without journaling it.
    pub fn load(&self, aor: &[u8], contact: Contact) {
        self.edit(aor, None, |rec| {
            rec.contacts.reserve_exact(1);
            rec.contacts.push(contact);
        });
    }

    /// Removes the contacts expired at `now`; returns how many.
    pub fn expire(&self, now: i64) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.retain(|_, contacts| {
                let before = contacts.len();
                contacts.retain(|c| c.is_valid(now));
                removed += before - contacts.len();
                !contacts.is_empty()
            });
        }
        self.contacts.fetch_sub(removed as u64, Ordering::Relaxed);
        removed
    }

    /// Contacts stored (expired ones not yet removed included).
    pub fn contact_count(&self) -> u64 {
        self.contacts.load(Ordering::Relaxed)
    }

    /// Addresses of record stored.
    pub fn record_count(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Calls `f` for every record, one shard locked at a time.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], &[Contact])) {
        for shard in self.shards.iter() {
            let shard = lock(shard);
            for (aor, contacts) in shard.iter() {
                f(aor, contacts);
            }
        }
    }

    /// Queues changes for the write-back timer (db_mode 2).
    pub fn queue(&self, changes: Vec<Change>) {
        if !changes.is_empty() {
            lock(&self.pending).extend(changes);
        }
    }

    /// Takes the queued changes, keeping only the last one per contact (a contact
    /// refreshed ten times between two flushes is written once).
    pub fn take_pending(&self) -> Vec<Change> {
        let all = std::mem::take(&mut *lock(&self.pending));
        let mut last: HashMap<&[u8], usize> = HashMap::with_capacity(all.len());
        for (i, c) in all.iter().enumerate() {
            last.insert(c.ruid(), i);
        }
        let keep: std::collections::HashSet<usize> = last.into_values().collect();
        all.iter()
            .enumerate()
            .filter(|(i, _)| keep.contains(i))
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// Puts back changes a flush could not write, ahead of newer ones.
    pub fn requeue(&self, mut changes: Vec<Change>) {
        let mut pending = lock(&self.pending);
        changes.append(&mut pending);
        *pending = changes;
    }

    pub fn pending_len(&self) -> usize {
        lock(&self.pending).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(uri: &str, ruid: &str, expires: i64) -> ContactInfo {
        ContactInfo {
            uri: uri.as_bytes().to_vec(),
            ruid: ruid.as_bytes().to_vec(),
            expires,
            ..Default::default()
        }
    }

    #[test]
    fn edit_creates_updates_and_drops_empty_records() {
        let d = Domain::new("location", 6);
        let mut journal = Vec::new();
        d.edit(b"alice", Some(&mut journal), |r| {
            r.insert(info("sip:a@1", "r1", 100)).unwrap();
            r.insert(info("sip:a@2", "r2", 100)).unwrap();
        });
        assert_eq!(d.contact_count(), 2);
        assert_eq!(d.record_count(), 1);
        assert_eq!(journal.len(), 2);
        d.edit(b"alice", Some(&mut journal), |r| {
            r.replace(0, info("sip:a@1", "r1", 200)).unwrap();
            r.remove(1);
        });
        assert_eq!(d.read(b"alice", |c| c[0].expires), 200);
        assert_eq!(
            journal.last(),
            Some(&Change::Delete {
                ruid: b"r2".as_slice().into()
            })
        );
        d.edit(b"alice", None, |r| r.clear());
        assert_eq!(d.record_count(), 0);
        assert_eq!(d.contact_count(), 0);
        // Reading a missing record does not create it.
        assert_eq!(d.read(b"bob", |c| c.len()), 0);
        assert_eq!(d.record_count(), 0);
    }

    #[test]
    fn expiry_removes_contacts_and_records() {
        let d = Domain::new("location", 6);
        d.edit(b"a", None, |r| {
            r.insert(info("sip:a@1", "r1", 10)).unwrap();
            r.insert(info("sip:a@2", "r2", 30)).unwrap();
        });
        d.edit(b"b", None, |r| r.insert(info("sip:b@1", "r3", 10)).unwrap());
        d.edit(b"c", None, |r| r.insert(info("sip:c@1", "r4", 0)).unwrap());
        assert_eq!(d.expire(20), 2);
        assert_eq!(d.record_count(), 2);
        assert_eq!(d.read(b"a", |c| c.len()), 1);
        // expires 0: permanent.
        assert_eq!(d.expire(1_000_000), 1);
        assert_eq!(d.read(b"c", |c| c.len()), 1);
    }

    #[test]
    fn pending_keeps_the_last_change_per_contact() {
        let d = Domain::new("location", 6);
        let up = |e| Change::Upsert {
            aor: b"a".as_slice().into(),
            info: Box::new(info("sip:a@1", "r1", e)),
        };
        d.queue(vec![up(1), up(2)]);
        d.queue(vec![
            up(3),
            Change::Delete {
                ruid: b"r9".as_slice().into(),
            },
        ]);
        let taken = d.take_pending();
        assert_eq!(taken.len(), 2);
        assert_eq!(taken[0], up(3));
        assert_eq!(d.pending_len(), 0);
        d.requeue(taken);
        assert_eq!(d.pending_len(), 2);
    }
}
