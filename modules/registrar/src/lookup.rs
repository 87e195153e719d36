//! `lookup()` and friends: the registered contacts of an address of record turned into
//! the request's destination (R-URI, `$du`, Route from Path) and extra branches.

use crate::common::format_q;
use bytes::Bytes;
use ferrosip_api::tm::{BranchTarget, Branches};
use ferrosip_api::{FnError, FnResult, MsgContext, Verdict};
use ferrosip_mod_usrloc::Contact;
use ferrosip_sip::{CommaList, NameAddr};

/// lookup() return codes.
pub const NOT_FOUND: i32 = -1;
pub const METHOD_NOT_ALLOWED: i32 = -2;
pub const INTERNAL_ERROR: i32 = -3;

/// One contact to send the request to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub uri: Bytes,
    pub received: Bytes,
    pub path: Bytes,
    pub q: i16,
    pub cflags: u32,
}

/// The valid contacts in forking order (q descending, or newest first with
/// `desc_time_order`); with `method` (a Kamailio method bit), only contacts allowing it.
/// Err: [`NOT_FOUND`] or [`METHOD_NOT_ALLOWED`].
pub fn pick(
    contacts: &[Contact],
    now: i64,
    method: Option<u32>,
    desc_time_order: bool,
) -> Result<Vec<Target>, i32> {
    let mut valid: Vec<&Contact> = contacts.iter().filter(|c| c.is_valid(now)).collect();
    if valid.is_empty() {
        return Err(NOT_FOUND);
    }
    if let Some(bit) = method {
        valid.retain(|c| c.allows(bit));
        if valid.is_empty() {
            return Err(METHOD_NOT_ALLOWED);
        }
    }
    if desc_time_order {
        valid.sort_by_key(|c| std::cmp::Reverse(c.last_modified));
    } else {
        valid.sort_by_key(|c| std::cmp::Reverse(c.q));
    }
    Ok(valid
        .into_iter()
        .map(|c| Target {
            uri: Bytes::copy_from_slice(c.uri()),
            received: Bytes::copy_from_slice(c.received()),
            path: Bytes::copy_from_slice(c.path()),
            q: c.q,
            cflags: c.cflags,
        })
        .collect())
}

/// The URI of the first hop of a Path vector.
fn first_hop(path: &[u8]) -> Option<Bytes> {
    let first = CommaList::new(path).next()?;
    let na = NameAddr::parse(first).ok()?;
    Some(Bytes::copy_from_slice(na.uri_bytes()))
}

/// Drops the first Path hop when it is this server (`path_check_local`).
fn skip_local_hop(ctx: &MsgContext, path: &Bytes) -> Bytes {
    let Some(services) = ctx.services.as_ref() else {
        return path.clone();
    };
    let mut hops = CommaList::new(path);
    let Some(first) = hops.next() else {
        return path.clone();
    };
    let local = NameAddr::parse(first)
        .ok()
        .and_then(|na| {
            na.uri()
                .host()
                .map(|h| services.is_myself(h, na.uri().port()))
        })
        .unwrap_or(false);
    if !local {
        return path.clone();
    }
    let rest: Vec<&[u8]> = hops.map(<[u8]>::trim_ascii).collect();
    Bytes::from(rest.join(b", ".as_slice()))
}

/// Where a contact's request goes first: its Path's first hop, else the NAT address
/// it registered from.
fn destination(t: &Target) -> Option<Bytes> {
    if !t.path.is_empty() {
        return first_hop(&t.path);
    }
    (!t.received.is_empty()).then(|| t.received.clone())
}

fn branch_of(t: &Target) -> BranchTarget {
    BranchTarget {
        uri: t.uri.clone(),
        dst_uri: destination(t),
        q: (t.q >= 0).then(|| Bytes::from(format_q(t.q))),
        bflags: u64::from(t.cflags),
    }
}

/// Options of [`route_to`].
#[derive(Clone, Copy, Debug)]
pub struct RouteOpts {
    /// Add the other contacts as branches (`append_branches`).
    pub append_branches: bool,
    /// Leave the R-URI alone and add every contact as a branch (`lookup_to_dset`).
    pub dset_only: bool,
    pub path_check_local: bool,
}

/// Sets the request's destination from the picked contacts: R-URI and `$du` of the
/// first (Route headers from its Path), the others as branches.
pub fn route_to(ctx: &mut MsgContext, mut targets: Vec<Target>, opts: RouteOpts) -> FnResult {
    if opts.path_check_local {
        for t in &mut targets {
            if !t.path.is_empty() {
                t.path = skip_local_hop(ctx, &t.path);
            }
        }
    }
    let mut targets = targets.into_iter();
    if !opts.dset_only {
        let Some(first) = targets.next() else {
            return Ok(Verdict::code(NOT_FOUND));
        };
        let rest: Vec<Target> = if opts.append_branches {
            targets.by_ref().collect()
        } else {
            Vec::new()
        };
        ctx.msg
            .set_request_uri(&first.uri)
            .map_err(|e| FnError::new(format!("lookup: contact is not a valid URI: {e}")))?;
        ctx.dst_uri = destination(&first);
        ctx.bflags |= u64::from(first.cflags);
        // The Path of the first contact becomes Route headers of the request. Branches
        // are copies of this request, so that is only right when the other contacts
        // came through the same Path; otherwise their $du alone leads to their hop.
        if !first.path.is_empty() && rest.iter().all(|t| t.path == first.path) {
            ctx.msg
                .insert_header_first("Route", &first.path)
                .map_err(|e| FnError::new(format!("lookup: bad Path stored: {e}")))?;
        }
        if !rest.is_empty() {
            let set = ctx.ext.get_or_insert_with(Branches::default);
            set.0.extend(rest.iter().map(branch_of));
        }
    } else {
        let set = ctx.ext.get_or_insert_with(Branches::default);
        set.0.extend(targets.map(|t| branch_of(&t)));
    }
    Ok(Verdict::TRUE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrosip_mod_usrloc::{ContactInfo, ALL_METHODS};

    fn contact(uri: &str, q: i16, expires: i64, methods: u32, modified: i64) -> Contact {
        Contact::new(&ContactInfo {
            uri: uri.as_bytes().to_vec(),
            q,
            expires,
            methods,
            last_modified: modified,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn orders_by_q_and_skips_expired() {
        let cs = [
            contact("sip:a@1", 500, 100, ALL_METHODS, 1),
            contact("sip:b@1", 1000, 100, ALL_METHODS, 2),
            contact("sip:c@1", 900, 10, ALL_METHODS, 3),
            contact("sip:d@1", -1, 100, ALL_METHODS, 4),
        ];
        let t = pick(&cs, 50, None, false).unwrap();
        let uris: Vec<&[u8]> = t.iter().map(|t| t.uri.as_ref()).collect();
        assert_eq!(uris, [b"sip:b@1".as_slice(), b"sip:a@1", b"sip:d@1"]);
        let t = pick(&cs, 50, None, true).unwrap();
        assert_eq!(t[0].uri.as_ref(), b"sip:d@1");
        assert_eq!(pick(&cs, 200, None, false), Err(NOT_FOUND));
        assert_eq!(pick(&[], 0, None, false), Err(NOT_FOUND));
    }

    #[test]
    fn method_filtering() {
        let cs = [
            contact("sip:a@1", 0, 100, 1 | 4 | 8, 1),
            contact("sip:b@1", 0, 100, 256, 1),
        ];
        let t = pick(&cs, 0, Some(256), false).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].uri.as_ref(), b"sip:b@1");
        assert_eq!(pick(&cs, 0, Some(4096), false), Err(METHOD_NOT_ALLOWED));
    }

    #[test]
    fn destination_prefers_path_then_received() {
        let mut t = Target {
            uri: Bytes::from_static(b"sip:a@10.0.0.1"),
            received: Bytes::from_static(b"sip:1.2.3.4:5060"),
            path: Bytes::new(),
            q: -1,
            cflags: 0,
        };
        assert_eq!(
            destination(&t).as_deref(),
            Some(b"sip:1.2.3.4:5060".as_slice())
        );
        t.path = Bytes::from_static(b"<sip:edge1;lr>, <sip:edge2;lr>");
        assert_eq!(destination(&t).as_deref(), Some(b"sip:edge1;lr".as_slice()));
    }
}
