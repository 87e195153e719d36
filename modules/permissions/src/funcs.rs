//! The script functions of `permissions`.

use crate::state::{Columns, RulePair, State};
use crate::trusted::{self, TrustedMatch};
use bytes::Bytes;
use ferrosip_api::registry::{apply_result, ApplyResult};
use ferrosip_api::tm::Branches;
use ferrosip_api::{FnError, FnResult, MsgContext, Proto, Value, Verdict};
use ferrosip_sip::Uri;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The rule files `basename` + allow_suffix / deny_suffix.
pub fn basename_pair(st: &State, base: &[u8]) -> Result<Arc<RulePair>, FnError> {
    let base = text(base);
    let c = &st.config;
    st.rule_pair(
        PathBuf::from(format!("{base}{}", c.allow_suffix)),
        PathBuf::from(format!("{base}{}", c.deny_suffix)),
    )
    .map_err(FnError::new)
}

pub fn file_pair(st: &State, allow: &[u8], deny: &[u8]) -> Result<Arc<RulePair>, FnError> {
    st.rule_pair(PathBuf::from(text(allow)), PathBuf::from(text(deny)))
        .map_err(FnError::new)
}

/// `sip:user@host` (or `sip:host`), the form Kamailio matches rules against; with
/// `port`, `:port` when the URI has one.
fn plain_uri(uri: &[u8], port: bool) -> Option<String> {
    let u = Uri::parse(uri).ok()?;
    let host = text(u.host()?);
    let mut out = String::from("sip:");
    if let Some(user) = u.user().filter(|u| !u.is_empty()) {
        out.push_str(&text(user));
        out.push('@');
    }
    out.push_str(&host);
    if port {
        if let Some(p) = u.port() {
            out.push_str(&format!(":{p}"));
        }
    }
    Some(out)
}

fn from_uri(ctx: &MsgContext) -> Option<String> {
    ctx.msg.from().ok().map(|f| text(f.uri_bytes()))
}

/// One pair against the files: allowed by an allow rule, denied by a deny rule, or
/// neither.
fn verdict_of(rules: &RulePair, left: &str, right: &str) -> Option<bool> {
    if rules.allow.matches(left, right) {
        Some(true)
    } else if rules.deny.matches(left, right) {
        Some(false)
    } else {
        None
    }
}

fn no_rules(rules: &RulePair) -> bool {
    rules.allow.is_empty() && rules.deny.is_empty()
}

pub fn allow_routing(st: &State, ctx: &mut MsgContext, rules: &RulePair) -> FnResult {
    if no_rules(rules) {
        return Ok(Verdict::TRUE);
    }
    let Some(from) = from_uri(ctx) else {
        tracing::warn!("allow_routing: no valid From header");
        return Ok(Verdict::FALSE);
    };
    let Some(ruri) = ctx.msg.request_uri().and_then(|r| plain_uri(r, false)) else {
        return Ok(Verdict::FALSE);
    };
    // Kamailio: a deny rule ends it; otherwise, with check_all_branches, every branch
    // must pass too (an allow rule for the R-URI does not cover them).
    match verdict_of(rules, &from, &ruri) {
        Some(false) => return Ok(Verdict::FALSE),
        _ if !st.config.check_all_branches => return Ok(Verdict::TRUE),
        _ => {}
    }
    if let Some(branches) = ctx.ext.get::<Branches>() {
        for b in &branches.0 {
            let Some(uri) = plain_uri(&b.uri, false) else {
                return Ok(Verdict::FALSE);
            };
            if verdict_of(rules, &from, &uri) == Some(false) {
                return Ok(Verdict::FALSE);
            }
        }
    }
    Ok(Verdict::TRUE)
}

pub fn allow_register(ctx: &mut MsgContext, rules: &RulePair, with_port: bool) -> FnResult {
    if no_rules(rules) || ctx.msg.is_contact_star() {
        return Ok(Verdict::TRUE);
    }
    let Some(to) = ctx.msg.to().ok().map(|t| text(t.uri_bytes())) else {
        return Ok(Verdict::FALSE);
    };
    for contact in ctx.msg.contacts() {
        let Ok(c) = contact else {
            return Ok(Verdict::FALSE);
        };
        let Some(uri) = plain_uri(c.uri_bytes(), with_port) else {
            return Ok(Verdict::FALSE);
        };
        if verdict_of(rules, &to, &uri) == Some(false) {
            return Ok(Verdict::FALSE);
        }
    }
    Ok(Verdict::TRUE)
}

pub fn allow_uri(ctx: &mut MsgContext, rules: &RulePair, uri: &[u8]) -> FnResult {
    let Some(from) = from_uri(ctx) else {
        return Ok(Verdict::FALSE);
    };
    let Some(uri) = plain_uri(uri, false) else {
        return Ok(Verdict::FALSE);
    };
    Ok(Verdict::from(verdict_of(rules, &from, &uri) != Some(false)))
}

fn add_tag(st: &State, ctx: &mut MsgContext, tag: Option<&Arc<str>>) {
    if let (Some(slot), Some(tag)) = (st.config.tag_avp, tag) {
        ctx.avps.push(slot, Value::from(tag.to_string()));
    }
}

/// The group that admits `ip:port` (in `grp` when given), its tag stored; `None` when
/// none does.
fn find_group(
    st: &State,
    ctx: &mut MsgContext,
    grp: Option<i64>,
    ip: IpAddr,
    port: u16,
) -> Option<u32> {
    let grp = match grp {
        Some(g) => Some(u32::try_from(g).ok()?),
        None => None,
    };
    let table = st.address();
    let e = table.find(ip, port, grp, st.config.subnet_match)?;
    add_tag(st, ctx, e.tag.as_ref());
    Some(e.grp)
}

pub fn allow_address(
    st: &State,
    ctx: &mut MsgContext,
    grp: Option<i64>,
    ip: &[u8],
    port: i64,
) -> Result<Option<u32>, FnError> {
    let Ok(ip) = text(ip)
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return Ok(None);
    };
    let Ok(port) = u16::try_from(port) else {
        return Ok(None);
    };
    Ok(find_group(st, ctx, grp, ip, port))
}

pub fn allow_source(
    st: &State,
    ctx: &mut MsgContext,
    grp: Option<i64>,
) -> Result<Option<u32>, FnError> {
    let src = ctx.net.source;
    Ok(find_group(st, ctx, grp, src.ip(), src.port()))
}

/// 1/-1, or the group itself as the return code (`*_group` functions).
pub fn group_verdict(found: Option<u32>, as_group: bool) -> Verdict {
    match found {
        None => Verdict::FALSE,
        Some(g) if as_group => Verdict::code(i32::try_from(g).unwrap_or(i32::MAX)),
        Some(_) => Verdict::TRUE,
    }
}

/// The return code and tags of a trusted match (`tag_avp`/`tag_all` from the config,
/// copied so that the result applies after an await).
fn trusted_verdict(
    ctx: &mut MsgContext,
    tag_avp: Option<u32>,
    tag_all: bool,
    m: &TrustedMatch,
) -> FnResult {
    if m.matched == 0 {
        return Ok(Verdict::FALSE);
    }
    if let Some(slot) = tag_avp {
        for t in &m.tags {
            ctx.avps.push(slot, Value::from(t.to_string()));
        }
    }
    Ok(if tag_all {
        Verdict::code(i32::try_from(m.matched).unwrap_or(i32::MAX))
    } else {
        Verdict::TRUE
    })
}

/// `allow_trusted([src_ip, proto[, uri]])`: from memory (db_mode 1), or from the rows of
/// the source address read for this call (db_mode 0).
pub fn allow_trusted(
    st: &State,
    ctx: &mut MsgContext,
    given: Option<(Bytes, Bytes, Option<Bytes>)>,
) -> impl Future<Output = ApplyResult> + Send + 'static {
    let ruri = ctx.msg.request_uri().map(text);
    let (src, proto, from) = match given {
        None => (
            ctx.net.source.ip().to_string(),
            Some(ctx.net.proto),
            from_uri(ctx),
        ),
        Some((ip, proto, uri)) => (
            text(&ip),
            Proto::from_bytes(proto.as_ref()),
            match uri {
                Some(u) => Some(text(&u)),
                None => from_uri(ctx),
            },
        ),
    };
    let (tag_avp, all) = (st.config.tag_avp, st.config.tag_all);
    enum Work {
        Done(TrustedMatch),
        Query(ferrosip_db::Db, Box<Columns>, Proto),
    }
    let work = match proto {
        // A transport name that is not one ("any", empty) is no message's transport:
        // nothing matches, as in Kamailio.
        None => Work::Done(TrustedMatch::default()),
        Some(proto) if st.config.trusted_cached => {
            Work::Done(
                st.trusted()
                    .lookup(&src, proto, from.as_deref(), ruri.as_deref(), all),
            )
        }
        Some(proto) => match st.db() {
            Some(db) => Work::Query(db.clone(), Box::new(st.config.cols.clone()), proto),
            None => {
                tracing::error!("allow_trusted: db_url is not set or the database is not started");
                Work::Done(TrustedMatch::default())
            }
        },
    };
    async move {
        let m = match work {
            Work::Done(m) => m,
            Work::Query(db, cols, proto) => {
                match crate::state::trusted_rows(&db, &cols, Some(&trusted::key(&src))).await {
                    Ok(rows) => {
                        trusted::match_entries(&rows, proto, from.as_deref(), ruri.as_deref(), all)
                    }
                    Err(e) => {
                        tracing::error!("allow_trusted: {e}");
                        TrustedMatch::default()
                    }
                }
            }
        };
        apply_result(move |ctx: &mut MsgContext| trusted_verdict(ctx, tag_avp, all, &m))
    }
}
