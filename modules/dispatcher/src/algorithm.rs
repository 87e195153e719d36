//! Selection algorithms, one small type each (`ds_select_dst(set, alg)`'s numbers).
//!
//! An algorithm only says where in the set to start ([`Pick::Start`], the selection then
//! walks forward over unusable destinations, as Kamailio does) or which destination it
//! chose itself ([`Pick::Chosen`]); building the failover list is shared
//! ([`crate::select`]).

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering;

use ferrosip_api::{Format, MsgContext};
use ferrosip_sip::Uri;

use crate::sets::DestSet;

/// What one selection knows about the request.
pub struct Request<'a> {
    pub ctx: &'a MsgContext,
    /// `hash_pvar` (algorithm 7).
    pub hash_pvar: Option<&'a Format>,
    /// `flags` bit 1: URI hashes use the user part only.
    pub user_only: bool,
}

/// Where an algorithm points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pick {
    /// Start here (taken modulo the selectable span) and walk to the next usable one.
    Start(usize),
    /// This usable destination.
    Chosen(usize),
}

/// A destination selection algorithm.
pub trait Algorithm: Send + Sync {
    /// The number scripts pass.
    fn id(&self) -> i64;
    /// A short name for messages and docs.
    fn name(&self) -> &'static str;
    /// Where to go in `set` for this request; `span` is how many destinations take part
    /// (all but the last one when `use_default` is on). `None`: nothing selectable.
    fn pick(&self, set: &DestSet, req: &Request<'_>, span: usize) -> Option<Pick>;
    /// Every usable destination gets a branch at once (algorithm 12).
    fn parallel(&self) -> bool {
        false
    }
    /// Counts the call on the chosen destination (algorithm 10).
    fn tracks_load(&self) -> bool {
        false
    }
}

/// FNV-1a over the parts, with a separator so ("ab","c") and ("a","bc") differ.
pub fn hash_parts(parts: &[&[u8]]) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &c in p.iter().chain(std::iter::once(&0xff)) {
            h ^= u64::from(c);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    (h ^ (h >> 32)) as u32
}

/// The hash of a URI: its user, or user, host and a non-default port.
fn hash_uri(uri: &[u8], user_only: bool) -> Option<u32> {
    let u = Uri::parse(uri).ok()?;
    let user = u.user().unwrap_or_default();
    if user_only {
        return Some(hash_parts(&[user]));
    }
    let host = u.host().unwrap_or_default().to_ascii_lowercase();
    let port = match u.port() {
        Some(p) if p != 5060 && p != 5061 => p.to_string(),
        _ => String::new(),
    };
    Some(hash_parts(&[user, &host, port.as_bytes()]))
}

fn start(hash: u32, span: usize) -> Option<Pick> {
    (span > 0).then(|| Pick::Start(hash as usize % span))
}

/// 0: hash over the Call-ID.
pub struct CallIdHash;
impl Algorithm for CallIdHash {
    fn id(&self) -> i64 {
        0
    }
    fn name(&self) -> &'static str {
        "Call-ID hash"
    }
    fn pick(&self, _set: &DestSet, req: &Request<'_>, span: usize) -> Option<Pick> {
        start(
            hash_parts(&[req.ctx.msg.call_id().unwrap_or_default()]),
            span,
        )
    }
}

/// 1: hash over the From URI.
pub struct FromUriHash;
impl Algorithm for FromUriHash {
    fn id(&self) -> i64 {
        1
    }
    fn name(&self) -> &'static str {
        "From-URI hash"
    }
    fn pick(&self, _set: &DestSet, req: &Request<'_>, span: usize) -> Option<Pick> {
        let h = req
            .ctx
            .msg
            .from()
            .ok()
            .and_then(|f| hash_uri(f.uri_bytes(), req.user_only))
            .unwrap_or(0);
        start(h, span)
    }
}

/// 2: hash over the To URI.
pub struct ToUriHash;
impl Algorithm for ToUriHash {
    fn id(&self) -> i64 {
        2
    }
    fn name(&self) -> &'static str {
        "To-URI hash"
    }
    fn pick(&self, _set: &DestSet, req: &Request<'_>, span: usize) -> Option<Pick> {
        let h = req
            .ctx
            .msg
            .to()
            .ok()
            .and_then(|t| hash_uri(t.uri_bytes(), req.user_only))
            .unwrap_or(0);
        start(h, span)
    }
}

/// 3: hash over the Request-URI.
pub struct RequestUriHash;
impl Algorithm for RequestUriHash {
    fn id(&self) -> i64 {
        3
    }
    fn name(&self) -> &'static str {
        "Request-URI hash"
    }
    fn pick(&self, _set: &DestSet, req: &Request<'_>, span: usize) -> Option<Pick> {
        let h = req
            .ctx
            .msg
            .request_uri()
            .and_then(|u| hash_uri(u, req.user_only))
            .unwrap_or(0);
        start(h, span)
    }
}

/// 4: round-robin. The position moves to just after the destination chosen, so an
/// unusable one does not hand its turn to its neighbour twice.
pub struct RoundRobin;
impl Algorithm for RoundRobin {
    fn id(&self) -> i64 {
        4
    }
    fn name(&self) -> &'static str {
        "round-robin"
    }
    fn pick(&self, set: &DestSet, _req: &Request<'_>, span: usize) -> Option<Pick> {
        if span == 0 {
            return None;
        }
        let mut cur = set.next.load(Ordering::Relaxed);
        loop {
            let from = cur % span;
            let chosen = (0..span)
                .map(|k| (from + k) % span)
                .find(|&i| set.dests[i].usable())?;
            match set.next.compare_exchange_weak(
                cur,
                chosen + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Pick::Chosen(chosen)),
                Err(now) => cur = now,
            }
        }
    }
}

/// 5: hash over the username of the credentials (Proxy-Authorization, else
/// Authorization); round-robin without credentials.
pub struct AuthUserHash;
impl Algorithm for AuthUserHash {
    fn id(&self) -> i64 {
        5
    }
    fn name(&self) -> &'static str {
        "auth-username hash"
    }
    fn pick(&self, set: &DestSet, req: &Request<'_>, span: usize) -> Option<Pick> {
        let msg = &req.ctx.msg;
        let user = msg
            .header("Proxy-Authorization")
            .or_else(|| msg.header("Authorization"))
            .and_then(credentials_username);
        match user {
            Some(u) => start(hash_parts(&[u]), span),
            None => RoundRobin.pick(set, req, span),
        }
    }
}

/// The `username` parameter of a Digest credentials header.
fn credentials_username(value: &[u8]) -> Option<&[u8]> {
    let lower = value.to_ascii_lowercase();
    let mut from = 0;
    while let Some(p) = lower[from..].windows(8).position(|w| w == b"username") {
        let at = from + p;
        let boundary = at == 0 || matches!(lower[at - 1], b' ' | b',' | b'\t');
        let rest = &value[at + 8..];
        let rest = rest.trim_ascii_start();
        if boundary {
            if let Some(v) = rest.strip_prefix(b"=") {
                let v = v.trim_ascii_start();
                return match v.strip_prefix(b"\"") {
                    Some(q) => q.iter().position(|c| *c == b'"').map(|e| &q[..e]),
                    None => Some(
                        &v[..v
                            .iter()
                            .position(|c| *c == b',' || c.is_ascii_whitespace())
                            .unwrap_or(v.len())],
                    ),
                };
            }
        }
        from = at + 8;
    }
    None
}

/// 6: a random destination.
pub struct Random;
impl Algorithm for Random {
    fn id(&self) -> i64 {
        6
    }
    fn name(&self) -> &'static str {
        "random"
    }
    fn pick(&self, _set: &DestSet, _req: &Request<'_>, span: usize) -> Option<Pick> {
        // std's hasher keys are random per process and per RandomState: a fresh one is a
        // cheap random number without a generator dependency.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(span);
        start(h.finish() as u32, span)
    }
}

/// 7: hash over the expansion of `hash_pvar`.
pub struct PvHash;
impl Algorithm for PvHash {
    fn id(&self) -> i64 {
        7
    }
    fn name(&self) -> &'static str {
        "hash_pvar hash"
    }
    fn pick(&self, _set: &DestSet, req: &Request<'_>, span: usize) -> Option<Pick> {
        let value = req
            .hash_pvar
            .and_then(|f| f.eval(req.ctx).ok())
            .unwrap_or_default();
        start(hash_parts(&[&value]), span)
    }
}

/// 8: the first destination in priority order (serial forking by priority).
pub struct PriorityOrder;
impl Algorithm for PriorityOrder {
    fn id(&self) -> i64 {
        8
    }
    fn name(&self) -> &'static str {
        "priority order"
    }
    fn pick(&self, _set: &DestSet, _req: &Request<'_>, span: usize) -> Option<Pick> {
        start(0, span)
    }
}

/// 9: each destination takes `weight`% of 100 consecutive calls.
pub struct Weight;
impl Algorithm for Weight {
    fn id(&self) -> i64 {
        9
    }
    fn name(&self) -> &'static str {
        "weight-based"
    }
    fn pick(&self, set: &DestSet, _req: &Request<'_>, span: usize) -> Option<Pick> {
        if set.weight_slots.is_empty() {
            return start(0, span);
        }
        let pos = set.weight_pos.fetch_add(1, Ordering::Relaxed) % 100;
        start(set.weight_slots[pos] as u32, span)
    }
}

/// 10: the destination with the fewest active calls under its `maxload`.
pub struct CallLoad;
impl Algorithm for CallLoad {
    fn id(&self) -> i64 {
        10
    }
    fn name(&self) -> &'static str {
        "call load"
    }
    fn pick(&self, set: &DestSet, req: &Request<'_>, span: usize) -> Option<Pick> {
        // Only an INVITE starts a call; anything else goes to the first destination.
        if req.ctx.msg.method_bytes() != Some(b"INVITE") {
            return start(0, span);
        }
        set.dests[..span]
            .iter()
            .enumerate()
            .filter(|(_, d)| d.usable() && !over_load(d))
            .min_by_key(|(_, d)| d.load.load(Ordering::Relaxed))
            .map(|(i, _)| Pick::Chosen(i))
    }
    fn tracks_load(&self) -> bool {
        true
    }
}

/// Whether a destination reached its `maxload` of calls.
pub fn over_load(d: &crate::sets::Destination) -> bool {
    d.attrs.maxload != 0 && d.load.load(Ordering::Relaxed) >= d.attrs.maxload
}

/// 11: `rweight` shares among the usable destinations only, so the traffic of one
/// that goes down is shared out by the others' weights.
pub struct RelativeWeight;
impl Algorithm for RelativeWeight {
    fn id(&self) -> i64 {
        11
    }
    fn name(&self) -> &'static str {
        "relative weight"
    }
    fn pick(&self, set: &DestSet, _req: &Request<'_>, span: usize) -> Option<Pick> {
        let live: Vec<(usize, u32)> = set.dests[..span]
            .iter()
            .enumerate()
            .filter(|(_, d)| d.usable() && d.attrs.rweight > 0)
            .map(|(i, d)| (i, d.attrs.rweight))
            .collect();
        let total: u32 = live.iter().map(|(_, w)| w).sum();
        if total == 0 {
            return start(0, span);
        }
        let pos = set.rweight_pos.fetch_add(1, Ordering::Relaxed) % 100;
        let slot = crate::sets::spread()[pos] as u32;
        // Each destination owns floor(w * 100 / total) slots; the rounding rest goes
        // to the last one.
        let mut upto = 0;
        for (i, w) in &live {
            upto += w * 100 / total;
            if slot < upto {
                return Some(Pick::Chosen(*i));
            }
        }
        live.last().map(|(i, _)| Pick::Chosen(*i))
    }
}

/// 12: all destinations at once (parallel forking).
pub struct Parallel;
impl Algorithm for Parallel {
    fn id(&self) -> i64 {
        12
    }
    fn name(&self) -> &'static str {
        "parallel to all"
    }
    fn pick(&self, _set: &DestSet, _req: &Request<'_>, span: usize) -> Option<Pick> {
        start(0, span)
    }
    fn parallel(&self) -> bool {
        true
    }
}

static ALGORITHMS: [&dyn Algorithm; 13] = [
    &CallIdHash,
    &FromUriHash,
    &ToUriHash,
    &RequestUriHash,
    &RoundRobin,
    &AuthUserHash,
    &Random,
    &PvHash,
    &PriorityOrder,
    &Weight,
    &CallLoad,
    &RelativeWeight,
    &Parallel,
];

/// Kamailio algorithms Ferrosip does not implement.
const NOT_BUILT: [(i64, &str); 4] = [
    (13, "latency-optimized dispatching"),
    (14, "round-robin or serial by priority"),
    (15, "priority and weight (SRV-style)"),
    (64, "round-robin with overload control"),
];

/// The algorithm with Kamailio's number `id`, or why there is none.
pub fn by_id(id: i64) -> Result<&'static dyn Algorithm, String> {
    if let Some(a) = usize::try_from(id).ok().and_then(|i| ALGORITHMS.get(i)) {
        return Ok(*a);
    }
    match NOT_BUILT.iter().find(|(n, _)| *n == id) {
        Some((n, name)) => Err(format!(
            "dispatcher algorithm {n} ({name}) is not supported by Ferrosip"
        )),
        None => Err(format!("{id} is not a dispatcher algorithm (0..12)")),
    }
}

/// Every implemented algorithm, for the docs.
pub fn all() -> &'static [&'static dyn Algorithm] {
    &ALGORITHMS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::list::parse_list;
    use crate::sets::Sets;
    use ferrosip_api::{NetInfo, RouteKind};
    use ferrosip_sip::SipMessage;

    fn ctx(call_id: &str, from: &str, extra: &str) -> MsgContext {
        let raw = format!(
            "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK1\r\n\
             From: <{from}>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        let msg = SipMessage::parse(bytes::Bytes::from(raw)).unwrap();
        MsgContext::new(msg, RouteKind::Request, NetInfo::default())
    }

    fn set(text: &str) -> Sets {
        Sets::build(&parse_list(text).unwrap())
    }

    const THREE: &str = "1 sip:10.0.0.1\n1 sip:10.0.0.2\n1 sip:10.0.0.3\n";

    fn req(c: &MsgContext) -> Request<'_> {
        Request {
            ctx: c,
            hash_pvar: None,
            user_only: false,
        }
    }

    #[test]
    fn hashes_are_stable_per_key_and_spread_over_keys() {
        let s = set(THREE);
        let s = s.get(1).unwrap();
        for alg in [
            &CallIdHash as &dyn Algorithm,
            &FromUriHash,
            &ToUriHash,
            &RequestUriHash,
        ] {
            let c = ctx("abc@x", "sip:alice@a.com", "");
            let first = alg.pick(s, &req(&c), 3);
            for _ in 0..5 {
                assert_eq!(alg.pick(s, &req(&c), 3), first, "{}", alg.name());
            }
        }
        let mut seen = std::collections::HashSet::new();
        for i in 0..60 {
            let c = ctx(&format!("call-{i}"), &format!("sip:u{i}@a.com"), "");
            seen.insert(CallIdHash.pick(s, &req(&c), 3));
            seen.insert(FromUriHash.pick(s, &req(&c), 3));
        }
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn from_hash_with_user_only_ignores_the_host() {
        let s = set(THREE);
        let s = s.get(1).unwrap();
        let a = ctx("1", "sip:alice@a.com", "");
        let b = ctx("2", "sip:alice@b.com:5080", "");
        let user_only = |c| Request {
            ctx: c,
            hash_pvar: None,
            user_only: true,
        };
        assert_eq!(
            FromUriHash.pick(s, &user_only(&a), 3),
            FromUriHash.pick(s, &user_only(&b), 3)
        );
        assert_eq!(
            hash_uri(b"sip:x@h:5060", false),
            hash_uri(b"sip:x@h", false)
        );
        assert_ne!(
            hash_uri(b"sip:x@h:5080", false),
            hash_uri(b"sip:x@h", false)
        );
    }

    #[test]
    fn round_robin_cycles_and_skips_unusable_without_doubling() {
        let s = set(THREE);
        let s = s.get(1).unwrap();
        let c = ctx("1", "sip:a@b", "");
        let picks: Vec<_> = (0..6).map(|_| RoundRobin.pick(s, &req(&c), 3)).collect();
        assert_eq!(
            picks,
            [0, 1, 2, 0, 1, 2].map(|i| Some(Pick::Chosen(i))).to_vec()
        );
        s.dests[1].set_state(crate::list::flag::INACTIVE);
        let picks: Vec<_> = (0..4).map(|_| RoundRobin.pick(s, &req(&c), 3)).collect();
        assert_eq!(picks, [0, 2, 0, 2].map(|i| Some(Pick::Chosen(i))).to_vec());
        for d in &s.dests {
            d.set_state(crate::list::flag::INACTIVE);
        }
        assert_eq!(RoundRobin.pick(s, &req(&c), 3), None);
    }

    #[test]
    fn auth_username_hash_and_round_robin_fallback() {
        let s = set(THREE);
        let s = s.get(1).unwrap();
        let a = ctx(
            "1",
            "sip:x@y",
            "Proxy-Authorization: Digest realm=\"r\", username=\"alice\", nonce=\"n\"\r\n",
        );
        let b = ctx(
            "2",
            "sip:z@y",
            "Authorization: Digest username=\"alice\",realm=\"q\"\r\n",
        );
        assert_eq!(
            AuthUserHash.pick(s, &req(&a), 3),
            AuthUserHash.pick(s, &req(&b), 3)
        );
        assert!(matches!(
            AuthUserHash.pick(s, &req(&a), 3),
            Some(Pick::Start(_))
        ));
        let none = ctx("3", "sip:x@y", "");
        assert!(matches!(
            AuthUserHash.pick(s, &req(&none), 3),
            Some(Pick::Chosen(_))
        ));
        assert_eq!(
            credentials_username(b"Digest username=bob, realm=x"),
            Some(&b"bob"[..])
        );
        assert_eq!(credentials_username(b"Digest realm=\"x\""), None);
    }

    #[test]
    fn random_covers_the_set() {
        let s = set(THREE);
        let s = s.get(1).unwrap();
        let c = ctx("1", "sip:a@b", "");
        let seen: std::collections::HashSet<_> =
            (0..200).map(|_| Random.pick(s, &req(&c), 3)).collect();
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn priority_order_starts_at_the_highest_priority() {
        let s = set("1 sip:10.0.0.1 0 1\n1 sip:10.0.0.2 0 9\n");
        let s = s.get(1).unwrap();
        let c = ctx("1", "sip:a@b", "");
        assert_eq!(PriorityOrder.pick(s, &req(&c), 2), Some(Pick::Start(0)));
        assert_eq!(&s.dests[0].uri[..], b"sip:10.0.0.2");
    }

    #[test]
    fn weights_give_their_share_of_100_calls() {
        let s = set("1 sip:10.0.0.1 0 0 weight=20\n1 sip:10.0.0.2 0 0 weight=80\n");
        let s = s.get(1).unwrap();
        let c = ctx("1", "sip:a@b", "");
        let mut count = [0; 2];
        for _ in 0..100 {
            let Some(Pick::Start(i)) = Weight.pick(s, &req(&c), 2) else {
                panic!()
            };
            count[i] += 1;
        }
        // Later line first: dests[0] is the 80% one.
        assert_eq!(count, [80, 20]);
    }

    #[test]
    fn relative_weights_reshare_when_one_goes_down() {
        let s = set(
            "1 sip:10.0.0.1 0 0 rweight=1\n1 sip:10.0.0.2 0 0 rweight=2\n1 sip:10.0.0.3 0 0 rweight=1\n",
        );
        let s = s.get(1).unwrap();
        let c = ctx("1", "sip:a@b", "");
        let mut count = [0; 3];
        for _ in 0..100 {
            let Some(Pick::Chosen(i)) = RelativeWeight.pick(s, &req(&c), 3) else {
                panic!()
            };
            count[i] += 1;
        }
        assert_eq!(count, [25, 50, 25]);
        s.dests[0].set_state(crate::list::flag::INACTIVE);
        let mut count = [0; 3];
        for _ in 0..100 {
            let Some(Pick::Chosen(i)) = RelativeWeight.pick(s, &req(&c), 3) else {
                panic!()
            };
            count[i] += 1;
        }
        // The rounding rest goes to the last usable destination, as Kamailio does.
        assert_eq!(count, [0, 66, 34]);
    }

    #[test]
    fn call_load_picks_the_least_loaded_under_maxload() {
        let s = set("1 sip:10.0.0.1 0 0 duid=a;maxload=1\n1 sip:10.0.0.2 0 0 duid=b\n");
        let s = s.get(1).unwrap();
        let c = ctx("1", "sip:a@b", "");
        assert_eq!(CallLoad.pick(s, &req(&c), 2), Some(Pick::Chosen(0)));
        s.dests[0].load.store(3, Ordering::Relaxed);
        assert_eq!(CallLoad.pick(s, &req(&c), 2), Some(Pick::Chosen(1)));
        s.dests[0].load.store(0, Ordering::Relaxed);
        s.dests[1].load.store(1, Ordering::Relaxed);
        // dests[1] (maxload=1) is full.
        assert_eq!(CallLoad.pick(s, &req(&c), 2), Some(Pick::Chosen(0)));
        s.dests[0].load.store(5, Ordering::Relaxed);
        assert_eq!(CallLoad.pick(s, &req(&c), 2), Some(Pick::Chosen(0)));
        assert!(CallLoad.tracks_load());
    }

    #[test]
    fn parallel_and_unknown_numbers() {
        assert!(by_id(12).unwrap().parallel());
        assert_eq!(by_id(4).unwrap().name(), "round-robin");
        let e = by_id(13).err().unwrap();
        assert!(e.contains("13 (latency-optimized"), "{e}");
        assert!(by_id(99)
            .err()
            .unwrap()
            .contains("not a dispatcher algorithm"));
        assert!(by_id(-1).is_err());
        assert_eq!(all().len(), 13);
        for (i, a) in all().iter().enumerate() {
            assert_eq!(a.id(), i as i64);
        }
    }
}
