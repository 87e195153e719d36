//! Selection shared by every algorithm (the walk over unusable destinations, the
//! failover list, `use_default`), and the failover list kept in the message's AVPs so
//! that it travels with the transaction into `failure_route`.

use std::sync::Arc;

use bytes::Bytes;
use ferrosip_api::{MsgContext, Value};

use crate::algorithm::{over_load, Algorithm, Pick, Request};
use crate::sets::{DestSet, Destination};

/// How a selection is made.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// `use_default`: the last destination is only used when all others fail.
    pub use_default: bool,
    /// `flags` bit 2: keep the other destinations for `ds_next_dst()`.
    pub failover: bool,
    /// At most this many destinations in the list (0: no limit).
    pub limit: usize,
}

/// The destinations chosen, the one to use now first.
#[derive(Debug)]
pub struct Selection {
    pub dests: Vec<Arc<Destination>>,
    /// Algorithm 12: every destination is a branch now; no failover list.
    pub parallel: bool,
}

/// Runs `alg` over `set`.
pub fn select(
    set: &DestSet,
    alg: &dyn Algorithm,
    req: &Request<'_>,
    opts: Options,
) -> Option<Selection> {
    let n = set.dests.len();
    if n == 0 {
        return None;
    }
    let span = if opts.use_default && n > 1 { n - 1 } else { n };
    let usable = |i: usize| set.dests[i].usable();
    let chosen = match alg.pick(set, req, span) {
        Some(Pick::Chosen(i)) => i,
        Some(Pick::Start(first)) => {
            let first = first % span;
            match (0..span).map(|k| (first + k) % span).find(|&i| usable(i)) {
                Some(i) => i,
                None if opts.use_default && usable(n - 1) => n - 1,
                None => return None,
            }
        }
        None if opts.use_default && usable(n - 1) => n - 1,
        None => return None,
    };
    let limit = if opts.limit == 0 {
        usize::MAX
    } else {
        opts.limit
    };
    let mut dests = vec![set.dests[chosen].clone()];
    if alg.parallel() {
        dests.extend(
            (0..n)
                .filter(|&i| i != chosen && usable(i))
                .map(|i| set.dests[i].clone()),
        );
        return Some(Selection {
            dests,
            parallel: true,
        });
    }
    if opts.failover {
        for i in (chosen + 1..n).chain(0..chosen) {
            if dests.len() >= limit {
                break;
            }
            let d = &set.dests[i];
            let is_default = opts.use_default && n > 1 && i == n - 1;
            if !d.usable() || is_default || (alg.tracks_load() && over_load(d)) {
                continue;
            }
            dests.push(d.clone());
        }
        if opts.use_default && n > 1 && chosen != n - 1 && dests.len() < limit {
            dests.push(set.dests[n - 1].clone());
        }
    }
    Some(Selection {
        dests,
        parallel: false,
    })
}

/// AVP slots of the failover list: one value per destination in each, the current
/// destination newest (index 0), as Kamailio's `_dsdst_` XAVP records (`uri`, `grp`,
/// `attrs`, `dstid`) and `_dsctx_`'s `cnt`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Slots {
    pub uri: u32,
    pub grp: u32,
    pub attrs: u32,
    pub dstid: u32,
    pub cnt: u32,
}

/// One failover record as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub uri: Bytes,
    pub setid: i32,
}

impl Slots {
    /// Replaces the list with `dests` (first = current).
    pub fn store(&self, ctx: &mut MsgContext, dests: &[Arc<Destination>], with_attrs: bool) {
        self.clear(ctx);
        self.append(ctx, dests, with_attrs);
    }

    /// Adds `dests` after the records already there (`ds_select_routes` over several
    /// sets).
    pub fn append(&self, ctx: &mut MsgContext, dests: &[Arc<Destination>], with_attrs: bool) {
        // Stacks are newest first: rebuild with the new ones below the old ones.
        let mut all: Vec<(Value, Value, Value, Value)> = (0..ctx.avps.count(self.uri))
            .map(|i| {
                let get = |slot| ctx.avps.get(slot, i as i32).cloned().unwrap_or_default();
                (
                    get(self.uri),
                    get(self.grp),
                    get(self.attrs),
                    get(self.dstid),
                )
            })
            .collect();
        for d in dests {
            all.push((
                Value::Str(d.uri.clone()),
                Value::Int(i64::from(d.setid)),
                if with_attrs {
                    Value::Str(d.attrs_raw.clone())
                } else {
                    Value::Null
                },
                d.attrs.duid.clone().map_or(Value::Null, Value::Str),
            ));
        }
        self.clear(ctx);
        let count = all.len();
        for (uri, grp, attrs, dstid) in all.into_iter().rev() {
            ctx.avps.push(self.uri, uri);
            ctx.avps.push(self.grp, grp);
            ctx.avps.push(self.attrs, attrs);
            ctx.avps.push(self.dstid, dstid);
        }
        ctx.avps.replace(self.cnt, Value::Int(count as i64));
    }

    pub fn clear(&self, ctx: &mut MsgContext) {
        for s in [self.uri, self.grp, self.attrs, self.dstid] {
            ctx.avps.remove_all(s);
        }
        ctx.avps.remove_all(self.cnt);
    }

    /// The destination in use now.
    pub fn current(&self, ctx: &MsgContext) -> Option<Record> {
        let uri = ctx.avps.get(self.uri, 0)?.to_bytes()?;
        let setid = ctx
            .avps
            .get(self.grp, 0)
            .and_then(Value::as_int)
            .unwrap_or(0) as i32;
        Some(Record { uri, setid })
    }

    /// Drops the current destination; the next one, now current.
    pub fn advance(&self, ctx: &mut MsgContext) -> Option<Record> {
        for s in [self.uri, self.grp, self.attrs, self.dstid] {
            ctx.avps.pop(s);
        }
        self.current(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::{by_id, RoundRobin};
    use crate::list::{flag, parse_list};
    use crate::sets::Sets;
    use ferrosip_api::{NetInfo, RouteKind};
    use ferrosip_sip::SipMessage;

    fn ctx() -> MsgContext {
        let raw =
            "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK1\r\n\
                   From: <sip:a@b>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c1\r\n\
                   CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        MsgContext::new(
            SipMessage::parse(Bytes::from(raw)).unwrap(),
            RouteKind::Request,
            NetInfo::default(),
        )
    }

    fn uris(s: &Selection) -> Vec<String> {
        s.dests
            .iter()
            .map(|d| String::from_utf8_lossy(&d.uri).into_owned())
            .collect()
    }

    const FOUR: &str = "1 sip:d\n1 sip:c\n1 sip:b\n1 sip:a\n"; // kept as a, b, c, d

    #[test]
    fn failover_list_wraps_skips_unusable_and_respects_limit() {
        let sets = Sets::build(&parse_list(FOUR).unwrap());
        let set = sets.get(1).unwrap();
        let c = ctx();
        let req = Request {
            ctx: &c,
            hash_pvar: None,
            user_only: false,
        };
        let opts = Options {
            use_default: false,
            failover: true,
            limit: 0,
        };
        set.next.store(2, std::sync::atomic::Ordering::Relaxed);
        let s = select(set, &RoundRobin, &req, opts).unwrap();
        assert_eq!(uris(&s), ["sip:c", "sip:d", "sip:a", "sip:b"]);
        set.dests[3].set_state(flag::INACTIVE);
        let s = select(set, by_id(8).unwrap(), &req, Options { limit: 2, ..opts }).unwrap();
        assert_eq!(uris(&s), ["sip:a", "sip:b"]);
        let s = select(set, by_id(8).unwrap(), &req, opts).unwrap();
        assert_eq!(uris(&s), ["sip:a", "sip:b", "sip:c"]);
        let s = select(
            set,
            by_id(8).unwrap(),
            &req,
            Options {
                failover: false,
                ..opts
            },
        )
        .unwrap();
        assert_eq!(uris(&s), ["sip:a"]);
    }

    #[test]
    fn use_default_keeps_the_last_one_for_the_end() {
        let sets = Sets::build(&parse_list(FOUR).unwrap());
        let set = sets.get(1).unwrap();
        let c = ctx();
        let req = Request {
            ctx: &c,
            hash_pvar: None,
            user_only: false,
        };
        let opts = Options {
            use_default: true,
            failover: true,
            limit: 0,
        };
        let s = select(set, by_id(8).unwrap(), &req, opts).unwrap();
        assert_eq!(uris(&s), ["sip:a", "sip:b", "sip:c", "sip:d"]);
        for i in 0..3 {
            set.dests[i].set_state(flag::INACTIVE);
        }
        let s = select(set, &RoundRobin, &req, opts).unwrap();
        assert_eq!(uris(&s), ["sip:d"]);
        set.dests[3].set_state(flag::DISABLED);
        assert!(select(set, &RoundRobin, &req, opts).is_none());
    }

    #[test]
    fn parallel_takes_every_usable_destination() {
        let sets = Sets::build(&parse_list(FOUR).unwrap());
        let set = sets.get(1).unwrap();
        set.dests[1].set_state(flag::INACTIVE);
        let c = ctx();
        let req = Request {
            ctx: &c,
            hash_pvar: None,
            user_only: false,
        };
        let opts = Options {
            use_default: false,
            failover: false,
            limit: 0,
        };
        let s = select(set, by_id(12).unwrap(), &req, opts).unwrap();
        assert!(s.parallel);
        assert_eq!(uris(&s), ["sip:a", "sip:c", "sip:d"]);
    }

    #[test]
    fn avp_list_current_and_advance() {
        let sets = Sets::build(&parse_list("1 sip:b 0 0 duid=x\n1 sip:a\n2 sip:z\n").unwrap());
        let slots = Slots {
            uri: 100,
            grp: 101,
            attrs: 102,
            dstid: 103,
            cnt: 104,
        };
        let mut c = ctx();
        slots.store(&mut c, &sets.get(1).unwrap().dests, true);
        slots.append(&mut c, &sets.get(2).unwrap().dests, true);
        assert_eq!(c.avps.get(104, 0), Some(&Value::Int(3)));
        assert_eq!(
            slots.current(&c),
            Some(Record {
                uri: Bytes::from_static(b"sip:a"),
                setid: 1
            })
        );
        assert_eq!(
            slots.advance(&mut c).unwrap().uri,
            Bytes::from_static(b"sip:b")
        );
        assert_eq!(
            c.avps.get(103, 0),
            Some(&Value::Str(Bytes::from_static(b"x")))
        );
        assert_eq!(slots.advance(&mut c).unwrap().setid, 2);
        assert_eq!(slots.advance(&mut c), None);
    }
}
