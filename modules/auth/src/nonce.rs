//! Nonces: self-contained, signed with HMAC-SHA256, and (optionally) tracked for replay
//! protection in fixed-size arrays, as Kamailio's `nonce_count` / `one_time_nonce` do.
//!
//! Binary layout before base64url (no padding):
//!
//! | bytes  | content                                                            |
//! |--------|--------------------------------------------------------------------|
//! | 0      | format version (1)                                                 |
//! | 1      | flags: 1 nc tracked, 2 one-time tracked, 4 message checks present  |
//! | 2      | `auth_checks_*` mask the message checks were computed with        |
//! | 3..11  | issue time, Unix seconds, big endian                               |
//! | 11     | nonce-id pool                                                      |
//! | 12..16 | nonce id in the pool, big endian                                   |
//! | 16..32 | HMAC over bytes 0..16 (tamper protection)                          |
//! | 32..48 | only with flag 4: HMAC over bytes 0..16 and the checked message parts |
//!
//! The two MACs are separate so that a message whose checked parts changed (another
//! Call-ID, another source address) makes the nonce *stale* — the user agent is asked again
//! without bothering its user — while a forged nonce is just invalid.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
const FLAG_NC: u8 = 1;
const FLAG_OTN: u8 = 2;
const FLAG_CHECKS: u8 = 4;
const HEAD_LEN: usize = 16;
const MAC_LEN: usize = 16;
/// Kamailio keeps one byte of nc per nonce: a higher nc makes the nonce stale.
pub const MAX_NC: u32 = 255;

/// Why a nonce was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceError {
    /// Not one of ours (bad encoding, bad MAC): Kamailio's "invalid nonce", code -1.
    Invalid,
    /// Expired, issued too far in the future, made for other message parts, or no longer
    /// tracked: re-challenge with `stale=true` (code -4).
    Stale,
    /// Already used (one-time nonce) or an nc not above the last one seen (code -6).
    Reused,
}

/// What a valid nonce says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NonceInfo {
    pub issued: u64,
    pub pool: u8,
    pub nid: u32,
    pub flags: u8,
}

/// How replays of a nonce are recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayCheck {
    /// Only expiry (and the message checks).
    None,
    /// `nonce_count`: the nc must grow (updated now).
    NonceCount(u32),
    /// `one_time_nonce`: first use only (marked used now).
    OneTime,
}

/// Settings of the nonce factory (from the `auth` module parameters).
#[derive(Clone, Debug)]
pub struct NonceSettings {
    pub key: [u8; 32],
    pub expire: u64,
    pub max_drift: u64,
    /// In-flight nonces tracked for `nonce_count` (0: off); a power of two.
    pub nc_slots: usize,
    /// In-flight nonces tracked for `one_time_nonce` (0: off); a power of two.
    pub otn_slots: usize,
    /// Number of pools the arrays are split into (a power of two, 1..=64).
    pub pools: usize,
}

/// Issues and verifies nonces; shared by every worker.
pub struct NonceFactory {
    key: [u8; 32],
    expire: u64,
    max_drift: u64,
    pools: Box<[NidPool]>,
}

/// One partition of the nonce-id space with its replay state. Workers are spread over the
/// pools so that they do not all increment the same counter.
struct NidPool {
    next: AtomicU32,
    /// Highest nc seen per in-flight nonce (`nonce_count`).
    nc: Box<[AtomicU8]>,
    /// One bit per in-flight nonce: used (`one_time_nonce`).
    otn: Box<[AtomicU64]>,
    otn_slots: u32,
}

impl NidPool {
    fn new(nc_slots: usize, otn_slots: usize, start: u32) -> NidPool {
        NidPool {
            next: AtomicU32::new(start),
            nc: (0..nc_slots).map(|_| AtomicU8::new(0)).collect(),
            otn: (0..otn_slots.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
            otn_slots: otn_slots as u32,
        }
    }

    /// The window of ids whose state is still in the arrays: the last `slots` issued.
    /// Older ids had their slot reused by newer nonces; "future" ids come from another
    /// server run (counters start at a random value) — both are stale.
    fn in_window(&self, nid: u32, slots: usize) -> bool {
        let age = self.next.load(Ordering::Acquire).wrapping_sub(nid);
        age >= 1 && (age as usize) <= slots
    }

    fn nc_slot(&self, nid: u32) -> &AtomicU8 {
        &self.nc[nid as usize & (self.nc.len() - 1)]
    }

    fn otn_bit(&self, nid: u32) -> (&AtomicU64, u64) {
        let i = nid & (self.otn_slots - 1);
        (&self.otn[(i / 64) as usize], 1u64 << (i % 64))
    }
}

fn mac(key: &[u8; 32], label: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    // A key of any length is accepted by HMAC: this cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(label);
    for p in parts {
        m.update(&(p.len() as u32).to_be_bytes());
        m.update(p);
    }
    let full = m.finalize().into_bytes();
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&full[..MAC_LEN]);
    out
}

thread_local! {
    /// The pool this thread issues nonces from, assigned round-robin on first use.
    static POOL_OF_THREAD: usize = {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed)
    };
}

impl NonceFactory {
    pub fn new(s: &NonceSettings) -> NonceFactory {
        let pools = s.pools.clamp(1, 64);
        // Random start: ids from a previous run (same secret) fall outside the window.
        let start: u32 = rand::random();
        NonceFactory {
            key: s.key,
            expire: s.expire,
            max_drift: s.max_drift,
            pools: (0..pools)
                .map(|_| {
                    NidPool::new(
                        (s.nc_slots / pools).max(usize::from(s.nc_slots > 0)),
                        (s.otn_slots / pools).max(usize::from(s.otn_slots > 0)),
                        start,
                    )
                })
                .collect(),
        }
    }

    fn nc_enabled(&self) -> bool {
        !self.pools[0].nc.is_empty()
    }

    fn otn_enabled(&self) -> bool {
        self.pools[0].otn_slots > 0
    }

    /// A new nonce issued at `now`; `checks`/`checked` are the `auth_checks_*` mask and the
    /// message parts it selects (empty mask: none).
    pub fn issue(&self, now: u64, checks: u8, checked: &[u8]) -> String {
        let pool_index = POOL_OF_THREAD.with(|p| *p) % self.pools.len();
        let pool = &self.pools[pool_index];
        let nid = pool.next.fetch_add(1, Ordering::AcqRel);
        let mut flags = 0;
        if self.nc_enabled() {
            pool.nc_slot(nid).store(0, Ordering::Release);
            flags |= FLAG_NC;
        }
        if self.otn_enabled() {
            let (word, bit) = pool.otn_bit(nid);
            word.fetch_and(!bit, Ordering::AcqRel);
            flags |= FLAG_OTN;
        }
        if checks != 0 {
            flags |= FLAG_CHECKS;
        }
        let mut raw = Vec::with_capacity(HEAD_LEN + 2 * MAC_LEN);
        raw.extend_from_slice(&[VERSION, flags, checks]);
        raw.extend_from_slice(&now.to_be_bytes());
        raw.push(pool_index as u8);
        raw.extend_from_slice(&nid.to_be_bytes());
        let head: [u8; HEAD_LEN] = raw[..HEAD_LEN].try_into().expect("16-byte head");
        raw.extend_from_slice(&mac(&self.key, b"nonce", &[&head]));
        if checks != 0 {
            raw.extend_from_slice(&mac(&self.key, b"checks", &[&head, checked]));
        }
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Decodes and authenticates a nonce, then checks its age.
    pub fn verify(&self, nonce: &[u8], now: u64) -> Result<NonceInfo, NonceError> {
        let raw = self.decode(nonce)?;
        let head = &raw[..HEAD_LEN];
        let issued = u64::from_be_bytes(head[3..11].try_into().expect("8 bytes"));
        let info = NonceInfo {
            issued,
            pool: head[11],
            nid: u32::from_be_bytes(head[12..16].try_into().expect("4 bytes")),
            flags: head[1],
        };
        if issued > now.saturating_add(self.max_drift) {
            return Err(NonceError::Stale);
        }
        if now > issued.saturating_add(self.expire) {
            return Err(NonceError::Stale);
        }
        Ok(info)
    }

    /// The `auth_checks_*` part: the nonce was made with the mask the current message
    /// requires (`checks`) over the same message parts (`checked`); stale otherwise.
    pub fn verify_message_checks(
        &self,
        nonce: &[u8],
        checks: u8,
        checked: &[u8],
    ) -> Result<(), NonceError> {
        let raw = self.decode(nonce)?;
        let head = &raw[..HEAD_LEN];
        if head[2] != checks {
            return Err(NonceError::Stale);
        }
        if head[1] & FLAG_CHECKS != 0 {
            let expected = mac(&self.key, b"checks", &[head, checked]);
            if !crate::digest::constant_time_eq(&raw[HEAD_LEN + MAC_LEN..], &expected) {
                return Err(NonceError::Stale);
            }
        }
        Ok(())
    }

    /// Base64 and the tamper MAC.
    fn decode(&self, nonce: &[u8]) -> Result<Vec<u8>, NonceError> {
        if nonce.len() > 128 {
            return Err(NonceError::Invalid);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(nonce)
            .map_err(|_| NonceError::Invalid)?;
        if raw.len() < HEAD_LEN + MAC_LEN || raw[0] != VERSION {
            return Err(NonceError::Invalid);
        }
        let expected = mac(&self.key, b"nonce", &[&raw[..HEAD_LEN]]);
        if !crate::digest::constant_time_eq(&raw[HEAD_LEN..HEAD_LEN + MAC_LEN], &expected) {
            return Err(NonceError::Invalid);
        }
        let with_checks = raw[1] & FLAG_CHECKS != 0;
        if raw.len() != HEAD_LEN + MAC_LEN + if with_checks { MAC_LEN } else { 0 } {
            return Err(NonceError::Invalid);
        }
        Ok(raw)
    }

    /// Which replay check applies to a nonce used with this nc (Kamailio's order: nc when
    /// the credentials carry one, else the one-time check).
    pub fn replay_check(&self, info: &NonceInfo, nc: Option<u32>) -> ReplayCheck {
        match nc {
            Some(nc) if info.flags & FLAG_NC != 0 && self.nc_enabled() => {
                ReplayCheck::NonceCount(nc)
            }
            _ if info.flags & FLAG_OTN != 0 && self.otn_enabled() => ReplayCheck::OneTime,
            _ => ReplayCheck::None,
        }
    }

    fn pool(&self, info: &NonceInfo) -> Result<&NidPool, NonceError> {
        self.pools.get(info.pool as usize).ok_or(NonceError::Stale)
    }

    /// Checks the replay state of a nonce and, when `update`, records this use atomically
    /// (so two copies of one request racing on two workers cannot both pass).
    pub fn check_replay(
        &self,
        info: &NonceInfo,
        check: ReplayCheck,
        update: bool,
    ) -> Result<(), NonceError> {
        match check {
            ReplayCheck::None => Ok(()),
            ReplayCheck::NonceCount(nc) => {
                let pool = self.pool(info)?;
                if nc > MAX_NC || !pool.in_window(info.nid, pool.nc.len()) {
                    return Err(NonceError::Stale);
                }
                let slot = pool.nc_slot(info.nid);
                let nc = nc as u8;
                let mut seen = slot.load(Ordering::Acquire);
                loop {
                    if nc <= seen {
                        return Err(NonceError::Reused);
                    }
                    if !update {
                        return Ok(());
                    }
                    match slot.compare_exchange_weak(seen, nc, Ordering::AcqRel, Ordering::Acquire)
                    {
                        Ok(_) => return Ok(()),
                        Err(now) => seen = now,
                    }
                }
            }
            ReplayCheck::OneTime => {
                let pool = self.pool(info)?;
                if !pool.in_window(info.nid, pool.otn_slots as usize) {
                    return Err(NonceError::Stale);
                }
                let (word, bit) = pool.otn_bit(info.nid);
                let before = if update {
                    word.fetch_or(bit, Ordering::AcqRel)
                } else {
                    word.load(Ordering::Acquire)
                };
                if before & bit != 0 {
                    Err(NonceError::Reused)
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Makes a nonce unusable (after a wrong password, so that it cannot be tried again).
    pub fn invalidate(&self, info: &NonceInfo) {
        let Ok(pool) = self.pool(info) else { return };
        if info.flags & FLAG_NC != 0 && self.nc_enabled() && pool.in_window(info.nid, pool.nc.len())
        {
            pool.nc_slot(info.nid).store(u8::MAX, Ordering::Release);
        }
        if info.flags & FLAG_OTN != 0
            && self.otn_enabled()
            && pool.in_window(info.nid, pool.otn_slots as usize)
        {
            let (word, bit) = pool.otn_bit(info.nid);
            word.fetch_or(bit, Ordering::AcqRel);
        }
    }
}

/// Rounds down to a power of two (Kamailio's rule for the array sizes); 0 stays 0.
pub fn round_down_pow2(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        1 << (usize::BITS - 1 - n.leading_zeros())
    }
}
