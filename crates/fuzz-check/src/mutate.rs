//! A small seeded mutator (xorshift64*): byte flips, interesting bytes, dictionary tokens,
//! inserts, deletes, duplicated ranges and splices with another seed. No coverage
//! feedback; inputs the target accepts join the pool, which steers towards deep paths.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::Target;

/// xorshift64* (Vigna): fast, and the same sequence on every platform for a seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform enough in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// FNV-1a: the input's own seed for the choices a check makes (edits, cut points), so a
/// crashing input replays the same way.
pub fn hash(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

const INTERESTING: &[u8] = b"\r\n\t \0\x7f\xff:;,\"<>@%[]?=&\\/()${}#!'0129-+.";

/// Applies 1 to 8 random mutations to `data`, keeping it within `max_len` bytes.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, pool: &[Vec<u8>], target: &Target) {
    for _ in 0..1 + rng.below(8) {
        let len = data.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                data.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
            }
            3 | 4 if !target.dictionary.is_empty() => {
                let tok = target.dictionary[rng.below(target.dictionary.len())];
                let i = rng.below(len + 1);
                if rng.below(2) == 0 || len == 0 {
                    data.splice(i..i, tok.iter().copied());
                } else {
                    let end = (i + tok.len()).min(len);
                    data.splice(i..end, tok.iter().copied());
                }
            }
            5 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                data.drain(i..i + n);
            }
            6 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let copy: Vec<u8> = data[i..i + n].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, copy);
            }
            7 if !pool.is_empty() => {
                let other = &pool[rng.below(pool.len())];
                if !other.is_empty() {
                    let i = rng.below(other.len());
                    let n = 1 + rng.below((other.len() - i).min(256));
                    let at = rng.below(len + 1);
                    data.splice(at..at, other[i..i + n].iter().copied());
                }
            }
            8 if len > 0 => data.truncate(rng.below(len)),
            _ => {}
        }
    }
    data.truncate(target.max_len);
}

/// What a mutation run did.
#[derive(Debug, Default)]
pub struct RunStats {
    pub iterations: u64,
    /// Inputs the target accepted (parsed).
    pub accepted: u64,
    /// Inputs that panicked (a property broken or a crash).
    pub failures: Vec<(Vec<u8>, String)>,
}

/// When a run stops.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    Iterations(u64),
    Time(Duration),
}

/// Mutates seeds from `seeds` and runs the target on each result, under `catch_unwind`
/// so every failing input is collected. Accepted inputs join the pool (bounded).
pub fn run(target: &Target, seeds: &[Vec<u8>], seed: u64, budget: Budget) -> RunStats {
    const POOL_MAX: usize = 2048;
    let mut rng = Rng::new(seed);
    let mut pool: Vec<Vec<u8>> = seeds.to_vec();
    if pool.is_empty() {
        pool.push(Vec::new());
    }
    let mut stats = RunStats::default();
    let start = Instant::now();
    loop {
        match budget {
            Budget::Iterations(n) if stats.iterations >= n => break,
            Budget::Time(d) if stats.iterations % 64 == 0 && start.elapsed() >= d => break,
            _ => {}
        }
        let mut input = pool[rng.below(pool.len())].clone();
        mutate(&mut rng, &mut input, &pool, target);
        stats.iterations += 1;
        match catch_unwind(AssertUnwindSafe(|| (target.check)(&input))) {
            Ok(true) => {
                stats.accepted += 1;
                if pool.len() < POOL_MAX {
                    pool.push(input);
                } else if rng.below(16) == 0 {
                    let i = seeds.len() + rng.below(POOL_MAX - seeds.len().min(POOL_MAX - 1));
                    if i < pool.len() {
                        pool[i] = input;
                    }
                }
            }
            Ok(false) => {}
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                stats.failures.push((input, why));
                if stats.failures.len() >= 20 {
                    break;
                }
            }
        }
    }
    stats
}
