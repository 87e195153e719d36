//! `sht_iterator_*`: named iterators of a message over a table, at most four at once (as
//! Kamailio). An iterator copies one slot at a time and holds no lock between calls, so
//! a script that changes the table while iterating cannot deadlock (Kamailio keeps the
//! slot locked and warns against it).

use crate::table::{Item, Table};
use bytes::Bytes;
use std::sync::Arc;

/// The most iterators a message has open at once.
pub const MAX_ITERATORS: usize = 4;

struct Iter {
    name: Bytes,
    table: Arc<Table>,
    next_slot: usize,
    batch: Vec<(Bytes, Item)>,
    pos: usize,
    current: Option<(Bytes, Item)>,
}

/// The open iterators of a message (kept in its extensions).
#[derive(Default)]
pub struct Iterators {
    open: Vec<Iter>,
}

impl Iterators {
    /// Starts (or restarts) `name` over `table`; false when four others are open.
    pub fn start(&mut self, name: Bytes, table: Arc<Table>) -> bool {
        let fresh = Iter {
            name: name.clone(),
            table,
            next_slot: 0,
            batch: Vec::new(),
            pos: 0,
            current: None,
        };
        if let Some(it) = self.open.iter_mut().find(|i| i.name == name) {
            *it = fresh;
            return true;
        }
        if self.open.len() >= MAX_ITERATORS {
            return false;
        }
        self.open.push(fresh);
        true
    }

    /// Moves to the next item; false at the end (or for an unknown iterator).
    pub fn next(&mut self, name: &[u8]) -> bool {
        let Some(it) = self.open.iter_mut().find(|i| i.name == name) else {
            return false;
        };
        loop {
            if it.pos < it.batch.len() {
                it.current = Some(it.batch[it.pos].clone());
                it.pos += 1;
                return true;
            }
            if it.next_slot >= it.table.slot_count() {
                it.current = None;
                return false;
            }
            it.batch = it.table.slot_items(it.next_slot);
            it.next_slot += 1;
            it.pos = 0;
        }
    }

    /// Closes `name`; false when it was not open.
    pub fn end(&mut self, name: &[u8]) -> bool {
        let before = self.open.len();
        self.open.retain(|i| i.name != name);
        before != self.open.len()
    }

    /// The current item of `name`.
    pub fn current(&self, name: &[u8]) -> Option<&(Bytes, Item)> {
        self.open
            .iter()
            .find(|i| i.name == name)
            .and_then(|i| i.current.as_ref())
    }

    /// The table and current key of `name` (for `sht_iterator_rm`/`sets`/...).
    pub fn position(&self, name: &[u8]) -> Option<(Arc<Table>, Bytes)> {
        let it = self.open.iter().find(|i| i.name == name)?;
        let (key, _) = it.current.as_ref()?;
        Some((it.table.clone(), key.clone()))
    }
}
