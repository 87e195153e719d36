//! A hierarchical hashed timing wheel for transaction timers.
//!
//! A proxy under load holds several timers per transaction (retransmission, timeout,
//! final-response), most of which are cancelled long before they fire, so insert and
//! cancel must be O(1) and the cost of time passing must not grow with the number of
//! timers. A binary heap makes cancel O(log n) (or leaves dead entries behind); a
//! single flat wheel needs as many slots as the longest timeout has ticks. Levels of
//! 64 slots each, every level's slot spanning a whole turn of the level below, cover
//! about two years of 1 ms ticks in 6 × 64 slots.
//!
//! An entry goes to the level of the highest 6-bit digit in which its deadline differs
//! from the current tick, so it sits in the lowest level whose turn still reaches it.
//! When time reaches a slot of a higher level, its entries move down ("cascade") to
//! where their exact tick is resolved. An entry thus moves at most five times in its
//! life, and `advance` jumps from occupied slot to occupied slot using one bitmap word
//! per level, never visiting empty ticks.
//!
//! Entries live in a slab (one `Vec`, indices instead of pointers) and each slot is a
//! doubly linked list through it, so cancel is an unlink. A [`TimerHandle`] carries
//! the entry's generation, which changes when the entry is freed, so a handle kept
//! after its timer fired or was cancelled cancels nothing.

use std::time::{Duration, Instant};

const LEVELS: usize = 6;
const BITS: u32 = 6;
const SLOTS: usize = 1 << BITS;
const NIL: u32 = u32::MAX;
/// Farther deadlines are brought in to this many ticks: beyond it the top level would
/// wrap onto its current slot.
const MAX_DELAY: u64 = ((SLOTS as u64) - 1) << (BITS as u64 * (LEVELS as u64 - 1));

/// Names one inserted timer, for [`TimerWheel::cancel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerHandle {
    index: u32,
    generation: u32,
}

#[derive(Debug)]
struct Node<T> {
    item: Option<T>,
    when: u64,
    generation: u32,
    prev: u32,
    /// Next in the slot list, or in the free list.
    next: u32,
    slot: u16,
}

/// A timer wheel holding items of type `T` (for a transaction layer: which
/// transaction, and the [`crate::TimerId`] to feed it).
#[derive(Debug)]
pub struct TimerWheel<T> {
    origin: Instant,
    tick_ns: u64,
    /// The current tick: every deadline up to it has fired.
    now: u64,
    heads: Box<[u32]>,
    occupied: [u64; LEVELS],
    nodes: Vec<Node<T>>,
    free: u32,
    len: usize,
}

impl<T> TimerWheel<T> {
    /// A wheel whose time starts at `origin`, with `tick` resolution (1 ms suits SIP:
    /// its shortest timer is T1 = 500 ms). Deadlines are rounded up to a tick, so
    /// nothing fires early.
    pub fn new(origin: Instant, tick: Duration) -> TimerWheel<T> {
        let tick_ns = u64::try_from(tick.as_nanos()).unwrap_or(u64::MAX);
        assert!(tick_ns > 0, "tick must be positive");
        TimerWheel {
            origin,
            tick_ns,
            now: 0,
            heads: vec![NIL; LEVELS * SLOTS].into_boxed_slice(),
            occupied: [0; LEVELS],
            nodes: Vec::new(),
            free: NIL,
            len: 0,
        }
    }

    /// A wheel with room for `n` timers before it reallocates.
    pub fn with_capacity(origin: Instant, tick: Duration, n: usize) -> TimerWheel<T> {
        let mut w = TimerWheel::new(origin, tick);
        w.nodes.reserve(n);
        w
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Nanoseconds since the origin; u64 holds 584 years of them, and u64 division is
    /// several times cheaper than the u128 that `Duration::as_nanos` gives.
    fn nanos_since_origin(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.origin);
        d.as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(d.subsec_nanos()))
    }

    fn ticks_ceil(&self, at: Instant) -> u64 {
        self.nanos_since_origin(at).div_ceil(self.tick_ns)
    }

    fn ticks_floor(&self, at: Instant) -> u64 {
        self.nanos_since_origin(at) / self.tick_ns
    }

    /// Adds a timer that fires at the first `advance` at or after `deadline` (a
    /// deadline in the past fires at the next `advance`).
    pub fn insert_at(&mut self, deadline: Instant, item: T) -> TimerHandle {
        let when = self.ticks_ceil(deadline);
        self.insert_tick(when, item)
    }

    /// Adds a timer that fires `delay` after `now`.
    pub fn insert(&mut self, now: Instant, delay: Duration, item: T) -> TimerHandle {
        self.insert_at(now + delay, item)
    }

    fn insert_tick(&mut self, when: u64, item: T) -> TimerHandle {
        let when = when.clamp(self.now, self.now.saturating_add(MAX_DELAY));
        let index = match self.free {
            NIL => {
                let i = u32::try_from(self.nodes.len()).expect("fewer than 2^32 timers");
                assert!(i != NIL, "fewer than 2^32 - 1 timers");
                self.nodes.push(Node {
                    item: Some(item),
                    when,
                    generation: 0,
                    prev: NIL,
                    next: NIL,
                    slot: 0,
                });
                i
            }
            i => {
                let n = &mut self.nodes[i as usize];
                self.free = n.next;
                n.item = Some(item);
                n.when = when;
                i
            }
        };
        self.link(index);
        self.len += 1;
        TimerHandle {
            index,
            generation: self.nodes[index as usize].generation,
        }
    }

    /// Which slot (level * 64 + slot) holds a deadline, seen from the current tick.
    fn slot_for(&self, when: u64) -> usize {
        let differing = (self.now ^ when) | (SLOTS as u64 - 1);
        let level = ((63 - differing.leading_zeros()) / BITS) as usize;
        let level = level.min(LEVELS - 1);
        let slot = ((when >> (BITS as usize * level)) as usize) & (SLOTS - 1);
        level * SLOTS + slot
    }

    fn link(&mut self, index: u32) {
        let s = self.slot_for(self.nodes[index as usize].when);
        let head = self.heads[s];
        {
            let n = &mut self.nodes[index as usize];
            n.slot = s as u16;
            n.prev = NIL;
            n.next = head;
        }
        if head != NIL {
            self.nodes[head as usize].prev = index;
        }
        self.heads[s] = index;
        self.occupied[s / SLOTS] |= 1 << (s % SLOTS);
    }

    fn unlink(&mut self, index: u32) {
        let (prev, next, s) = {
            let n = &self.nodes[index as usize];
            (n.prev, n.next, n.slot as usize)
        };
        if prev == NIL {
            self.heads[s] = next;
            if next == NIL {
                self.occupied[s / SLOTS] &= !(1 << (s % SLOTS));
            }
        } else {
            self.nodes[prev as usize].next = next;
        }
        if next != NIL {
            self.nodes[next as usize].prev = prev;
        }
    }

    fn release(&mut self, index: u32) -> Option<T> {
        let n = &mut self.nodes[index as usize];
        let item = n.item.take();
        n.generation = n.generation.wrapping_add(1);
        n.next = self.free;
        self.free = index;
        self.len -= 1;
        item
    }

    /// Removes a pending timer and returns its item; `None` when it already fired or
    /// was cancelled.
    pub fn cancel(&mut self, handle: TimerHandle) -> Option<T> {
        let n = self.nodes.get(handle.index as usize)?;
        if n.generation != handle.generation || n.item.is_none() {
            return None;
        }
        self.unlink(handle.index);
        self.release(handle.index)
    }

    /// True when `handle` names a pending timer.
    pub fn contains(&self, handle: TimerHandle) -> bool {
        self.nodes
            .get(handle.index as usize)
            .is_some_and(|n| n.generation == handle.generation && n.item.is_some())
    }

    /// The next slot to process: (slot index, its start tick).
    fn next_slot(&self) -> Option<(usize, u64)> {
        for level in 0..LEVELS {
            let bits = self.occupied[level];
            if bits == 0 {
                continue;
            }
            let shift = BITS as usize * level;
            let pos = ((self.now >> shift) as usize) & (SLOTS - 1);
            let slot = (pos + bits.rotate_right(pos as u32).trailing_zeros() as usize) % SLOTS;
            let span = 1u64 << shift;
            let turn = span << BITS;
            let turn_start = self.now & !(turn - 1);
            let mut start = turn_start + slot as u64 * span;
            if slot < pos {
                // Only the top level wraps: a deadline in its next turn.
                start += turn;
            }
            // The lowest level with anything pending holds the earliest deadline: each
            // level's occupied slots lie within the current slot of the level above.
            return Some((level * SLOTS + slot, start));
        }
        None
    }

    /// A time by which the wheel next needs an `advance`: the earliest deadline, or
    /// earlier (when entries must move down a level first). `None` when empty. A driver
    /// sleeps until then, or until a new timer is inserted.
    pub fn next_deadline(&self) -> Option<Instant> {
        let (_, start) = self.next_slot()?;
        let ticks = start.max(self.now);
        let nanos = u128::from(ticks) * u128::from(self.tick_ns);
        let d = Duration::new(
            (nanos / 1_000_000_000).min(u128::from(u64::MAX)) as u64,
            (nanos % 1_000_000_000) as u32,
        );
        Some(self.origin + d)
    }

    /// Moves time to `now` and appends every item whose deadline passed to `out`
    /// (earlier deadlines first; items due at the same tick in no set order).
    pub fn advance_into(&mut self, now: Instant, out: &mut Vec<T>) {
        let target = self.ticks_floor(now);
        while let Some((s, start)) = self.next_slot() {
            if start > target {
                break;
            }
            self.now = self.now.max(start);
            let mut i = std::mem::replace(&mut self.heads[s], NIL);
            self.occupied[s / SLOTS] &= !(1 << (s % SLOTS));
            while i != NIL {
                let next = self.nodes[i as usize].next;
                if self.nodes[i as usize].when <= self.now {
                    if let Some(item) = self.release(i) {
                        out.push(item);
                    }
                } else {
                    self.link(i);
                }
                i = next;
            }
        }
        self.now = self.now.max(target);
    }

    /// Moves time to `now` and returns every item whose deadline passed.
    pub fn advance(&mut self, now: Instant) -> Vec<T> {
        let mut out = Vec::new();
        self.advance_into(now, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn fires_in_order_and_never_early() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, ms(1));
        for d in [
            500u64, 1, 64, 65, 4095, 4096, 4097, 32_000, 262_144, 120_000,
        ] {
            w.insert(t0, ms(d), d);
        }
        assert_eq!(w.len(), 10);
        let mut fired = Vec::new();
        let mut at = 0;
        while !w.is_empty() {
            at += 1;
            for item in w.advance(t0 + ms(at)) {
                assert_eq!(item, at, "fired at the wrong tick");
                fired.push(item);
            }
        }
        let mut expect = vec![
            500u64, 1, 64, 65, 4095, 4096, 4097, 32_000, 262_144, 120_000,
        ];
        expect.sort_unstable();
        assert_eq!(fired, expect);
    }

    #[test]
    fn big_jumps_fire_everything_due() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, ms(1));
        for d in 0..10_000u64 {
            w.insert(t0, ms(d * 37 % 100_000), d);
        }
        let first = w.advance(t0 + ms(50_000));
        assert!(first.iter().all(|d| d * 37 % 100_000 <= 50_000));
        let rest = w.advance(t0 + ms(100_000));
        assert_eq!(first.len() + rest.len(), 10_000);
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None);
        // Earlier deadlines first across one advance.
        let mut w = TimerWheel::new(t0, ms(1));
        for d in [9000u64, 3, 70, 5000, 64] {
            w.insert(t0, ms(d), d);
        }
        assert_eq!(w.advance(t0 + ms(10_000)), vec![3, 64, 70, 5000, 9000]);
    }

    #[test]
    fn cancel_and_stale_handles() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, ms(1));
        let a = w.insert(t0, ms(10), 'a');
        let b = w.insert(t0, ms(10), 'b');
        let c = w.insert(t0, ms(10_000), 'c');
        assert!(w.contains(b));
        assert_eq!(w.cancel(b), Some('b'));
        assert_eq!(w.cancel(b), None);
        assert!(!w.contains(b));
        assert_eq!(w.cancel(c), Some('c'));
        // The freed entry is reused; the old handle must not cancel the new timer.
        let d = w.insert(t0, ms(20), 'd');
        assert_eq!(w.cancel(c), None);
        assert_eq!(w.advance(t0 + ms(10)), vec!['a']);
        assert_eq!(w.cancel(a), None);
        assert_eq!(w.advance(t0 + ms(25)), vec!['d']);
        assert_eq!(w.cancel(d), None);
        assert!(w.is_empty());
    }

    #[test]
    fn past_deadlines_and_rounding() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, ms(10));
        w.advance(t0 + ms(1000));
        w.insert_at(t0, 'p');
        assert_eq!(w.next_deadline(), Some(t0 + ms(1000)));
        assert_eq!(w.advance(t0 + ms(1000)), vec!['p']);
        // 1001 ms rounds up to the 1010 ms tick.
        w.insert_at(t0 + ms(1001), 'r');
        assert!(w.advance(t0 + ms(1009)).is_empty());
        assert_eq!(w.advance(t0 + ms(1010)), vec!['r']);
    }

    #[test]
    fn next_deadline_is_never_late() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, ms(1));
        w.insert(t0, ms(100_000), 1);
        let mut fired = Vec::new();
        let mut steps = 0;
        while let Some(at) = w.next_deadline() {
            assert!(at <= t0 + ms(100_000));
            fired.extend(w.advance(at));
            steps += 1;
        }
        assert_eq!(fired, vec![1]);
        assert!(steps <= LEVELS + 1, "{steps} wake-ups");
    }

    #[test]
    fn top_level_wraps_and_far_deadlines_clamp() {
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, ms(1));
        // Just below a top-level turn boundary, a short timer crosses it.
        let turn = 1u64 << 36;
        w.advance(t0 + ms(turn - 10));
        w.insert(t0 + ms(turn - 10), ms(20), 'x');
        assert!(w.advance(t0 + ms(turn + 9)).is_empty());
        assert_eq!(w.advance(t0 + ms(turn + 10)), vec!['x']);
        let far = w.insert(
            t0 + ms(turn + 10),
            Duration::from_secs(100 * 365 * 86_400),
            'f',
        );
        assert!(w.contains(far));
        assert!(w.advance(t0 + ms(turn + 10 + MAX_DELAY - 1)).is_empty());
        assert_eq!(w.advance(t0 + ms(turn + 10 + MAX_DELAY)), vec!['f']);
    }

    #[test]
    fn matches_a_simple_model() {
        // Pseudo-random inserts, cancels and advances against a sorted list.
        let t0 = Instant::now();
        let mut w = TimerWheel::new(t0, ms(1));
        let mut model: Vec<(u64, u32, TimerHandle)> = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut now = 0u64;
        for id in 0..20_000u32 {
            match rnd() % 10 {
                0..=5 => {
                    let d = match rnd() % 3 {
                        0 => rnd() % 100,
                        1 => rnd() % 10_000,
                        _ => rnd() % 5_000_000,
                    };
                    let h = w.insert(t0 + ms(now), ms(d), id);
                    model.push((now + d, id, h));
                }
                6 | 7 if !model.is_empty() => {
                    let k = (rnd() as usize) % model.len();
                    let (_, id, h) = model.swap_remove(k);
                    assert_eq!(w.cancel(h), Some(id));
                }
                _ => {
                    now += rnd() % 3000;
                    let mut got = w.advance(t0 + ms(now));
                    let mut want: Vec<u32> = model
                        .iter()
                        .filter(|(when, _, _)| *when <= now)
                        .map(|m| m.1)
                        .collect();
                    model.retain(|(when, _, _)| *when > now);
                    got.sort_unstable();
                    want.sort_unstable();
                    assert_eq!(got, want, "at {now}");
                }
            }
            assert_eq!(w.len(), model.len());
        }
    }
}
