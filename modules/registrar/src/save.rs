//! `save()`: a REGISTER's bindings applied to the location table (RFC 3261 §10.3), and
//! the reply that lists what is registered afterwards.
//!
//! Split in three so that the storage mode does not matter to the logic:
//! [`parse_register`] reads everything from the message (no lock held),
//! [`apply_register`] changes one record (under its shard lock in memory, or on rows
//! fetched from the database in db_mode 3), [`reply_headers`] writes the 200's headers.

use crate::common::{extract_aor, format_q, http_date, parse_q, parse_seconds, unescape};
use crate::config::{PathMode, RegConfig};
use ferrosip_api::{MsgContext, PvRef, Value};
use ferrosip_mod_usrloc::contact::methods_of_allow;
use ferrosip_mod_usrloc::{ContactInfo, MatchingMode, RecordEdit, UlConfig, ALL_METHODS};
use ferrosip_sip::{CommaList, NameAddr};

/// `save()` flags, as Kamailio documents them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaveFlags {
    /// 0x01: change memory only, no database write.
    pub mem_only: bool,
    /// 0x02: do not reply (reg_send_reply() can send it later).
    pub no_reply: bool,
    /// 0x04: keep one contact per address of record.
    pub single_contact: bool,
    /// 0x08: do not apply expires_range/default_expires_range.
    pub no_range: bool,
}

impl SaveFlags {
    pub fn from_bits(bits: i64) -> SaveFlags {
        SaveFlags {
            mem_only: bits & 0x01 != 0,
            no_reply: bits & 0x02 != 0,
            single_contact: bits & 0x04 != 0,
            no_range: bits & 0x08 != 0,
        }
    }
}

/// Why a REGISTER was not saved: the reply to send and save()'s return code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegError {
    pub code: u16,
    pub reason: &'static str,
    /// Extra reply header lines, each ending in CRLF.
    pub headers: String,
    pub rc: i32,
}

impl RegError {
    fn new(code: u16, reason: &'static str) -> RegError {
        RegError {
            code,
            reason,
            headers: String::new(),
            rc: -1,
        }
    }

    fn bad(reason: &'static str) -> RegError {
        RegError::new(400, reason)
    }

    fn header(mut self, line: String) -> RegError {
        self.headers.push_str(&line);
        self.headers.push_str("\r\n");
        self
    }
}

/// One Contact of the REGISTER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegContact {
    pub uri: Vec<u8>,
    /// Seconds granted (limits applied); 0 removes the binding.
    pub expires: u32,
    pub q: i16,
    pub instance: Vec<u8>,
    pub reg_id: u32,
}

/// Everything save() needs from the message, owned (no borrow of the context).
#[derive(Clone, Debug, Default)]
pub struct RegisterRequest {
    pub aor: Vec<u8>,
    /// `Contact: *` (with Expires: 0): remove every binding.
    pub star: bool,
    pub contacts: Vec<RegContact>,
    pub callid: Vec<u8>,
    pub cseq: u32,
    pub path: Vec<u8>,
    pub path_in_reply: bool,
    pub received: Vec<u8>,
    pub user_agent: Vec<u8>,
    pub socket: Vec<u8>,
    pub methods: u32,
    pub cflags: u32,
    pub flags: SaveFlags,
}

/// A random reduction of up to `percent`% of `value` (Kamailio's expires ranges).
fn reduce(value: u32, percent: u32) -> u32 {
    let span = u64::from(value) * u64::from(percent) / 100;
    if span == 0 {
        return value;
    }
    value - (rand::random::<u64>() % (span + 1)) as u32
}

/// The seconds a contact is granted: its `expires` parameter, else the Expires header,
/// else `default_expires`; then the ranges, `min_expires` (raised, or 423 with
/// `min_expires_mode`) and `max_expires`. 0 stays 0 (removal).
pub fn contact_expires(
    param: Option<u32>,
    header: Option<u32>,
    cfg: &RegConfig,
    flags: SaveFlags,
) -> Result<u32, RegError> {
    let (mut e, range) = match param.or(header) {
        Some(v) => (v, cfg.expires_range),
        None => (cfg.default_expires, cfg.default_expires_range),
    };
    if e == 0 {
        return Ok(0);
    }
    if !flags.no_range && range > 0 {
        e = reduce(e, range).max(1);
    }
    if cfg.min_expires != 0 && e < cfg.min_expires {
        if cfg.min_expires_reject {
            return Err(RegError::new(423, "Interval Too Brief")
                .header(format!("Min-Expires: {}", cfg.min_expires)));
        }
        e = cfg.min_expires;
    }
    if cfg.max_expires != 0 && e > cfg.max_expires {
        e = cfg.max_expires;
    }
    Ok(e)
}

fn token_listed(ctx: &MsgContext, header: &str, token: &[u8]) -> bool {
    ctx.msg
        .headers_named(header)
        .flat_map(CommaList::new)
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Reads a REGISTER into a [`RegisterRequest`]; the error says what to answer.
pub fn parse_register(
    ctx: &MsgContext,
    cfg: &RegConfig,
    ul: &UlConfig,
    flags: SaveFlags,
    aor_uri: Option<&[u8]>,
    received_avp: Option<&PvRef>,
) -> Result<RegisterRequest, RegError> {
    let msg = &ctx.msg;
    if !msg.is_request() {
        return Err(RegError::bad("Message parse error"));
    }
    let aor = match aor_uri {
        Some(u) => extract_aor(u, ul.use_domain, cfg.case_sensitive, &cfg.realm_prefix),
        None => {
            let to = msg.to().map_err(|_| RegError::bad("To header not found"))?;
            extract_aor(
                to.uri_bytes(),
                ul.use_domain,
                cfg.case_sensitive,
                &cfg.realm_prefix,
            )
        }
    }
    .ok_or_else(|| RegError::bad("Error while parsing AOR"))?;
    let callid = msg
        .call_id()
        .ok_or_else(|| RegError::bad("Call-ID header not found"))?
        .trim_ascii()
        .to_vec();
    if callid.len() > 255 {
        return Err(RegError::bad("Callid too long"));
    }
    let cseq = msg
        .cseq()
        .map_err(|_| RegError::bad("CSeq header not found"))?
        .seq;
    let header_expires = match msg.header("Expires") {
        None => None,
        Some(v) => Some(parse_seconds(v).ok_or_else(|| RegError::bad("Expires parse error"))?),
    };

    let mut req = RegisterRequest {
        aor,
        callid,
        cseq,
        flags,
        cflags: ctx.bflags as u32,
        ..Default::default()
    };

    if msg.is_contact_star() {
        if header_expires != Some(0) {
            return Err(RegError::bad("* used in contact and expires is not zero"));
        }
        if msg.contacts().next().is_some() {
            return Err(RegError::bad("* used in contact and more than 1 contact"));
        }
        req.star = true;
        return Ok(req);
    }

    for c in msg.contacts() {
        let c: NameAddr<'_> = c.map_err(|_| RegError::bad("Contact parse error"))?;
        let uri = c.uri_bytes();
        if uri.len() > cfg.contact_max_size {
            return Err(RegError::bad("Contact/received too long"));
        }
        let param = match c.param("expires") {
            None => None,
            Some(v) => Some(
                v.and_then(parse_seconds)
                    .ok_or_else(|| RegError::bad("Invalid expires param in contact"))?,
            ),
        };
        let expires = contact_expires(param, header_expires, cfg, flags)?;
        let q = match c.param("q") {
            None => cfg.default_q,
            Some(v) => v
                .and_then(parse_q)
                .ok_or_else(|| RegError::bad("Invalid q param in contact"))?,
        };
        let instance = c
            .param("+sip.instance")
            .flatten()
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        let reg_id = match c.param("reg-id") {
            None => 0,
            Some(v) => v
                .and_then(parse_seconds)
                .ok_or_else(|| RegError::bad("Invalid Reg-Id number"))?,
        };
        req.contacts.push(RegContact {
            uri: uri.to_vec(),
            expires,
            q,
            instance,
            reg_id,
        });
    }

    if cfg.use_path {
        let path: Vec<&[u8]> = msg.headers_named("Path").map(<[u8]>::trim_ascii).collect();
        if !path.is_empty() {
            let supported = token_listed(ctx, "Supported", b"path");
            if cfg.path_mode == PathMode::Strict && !supported {
                return Err(
                    RegError::new(420, "Bad Extension").header("Unsupported: path".to_string())
                );
            }
            req.path = path.join(b", ".as_slice());
            req.path_in_reply = match cfg.path_mode {
                PathMode::Off => false,
                PathMode::Lazy => supported,
                PathMode::Strict => true,
            };
            if cfg.path_use_received {
                if let Some(rcv) = first_path_received(&req.path) {
                    req.received = rcv;
                }
            }
        }
    }

    if req.received.is_empty() {
        if let Some(pv) = received_avp {
            match pv.get(ctx) {
                Ok(Value::Null) | Err(_) => {}
                Ok(v) => req.received = v.to_bytes().map(|b| b.to_vec()).unwrap_or_default(),
            }
        }
    }
    if req.received.len() > 255 {
        return Err(RegError::bad("Contact/received too long"));
    }

    req.user_agent = msg
        .user_agent()
        .map(|u| u.trim_ascii()[..u.trim_ascii().len().min(255)].to_vec())
        .unwrap_or_default();
    req.socket = socket_of(ctx, cfg);
    req.methods = if msg.has_header("Allow") {
        msg.headers_named("Allow")
            .fold(0, |acc, v| acc | methods_of_allow(v))
    } else {
        ALL_METHODS
    };
    Ok(req)
}

/// The `received` parameter of the first Path URI (set by an edge proxy in front of us).
fn first_path_received(path: &[u8]) -> Option<Vec<u8>> {
    let first = CommaList::new(path).next()?;
    let na = NameAddr::parse(first).ok()?;
    let v = na.uri().param("received").flatten()?;
    let v = v.strip_prefix(b"\"").unwrap_or(v);
    let v = v.strip_suffix(b"\"").unwrap_or(v);
    unescape(v).filter(|v| !v.is_empty())
}

/// `proto:ip:port` of the socket the REGISTER came in on, or the one named by the
/// `sock_hdr_name` header when `sock_flag` is set.
fn socket_of(ctx: &MsgContext, cfg: &RegConfig) -> Vec<u8> {
    if let Some(flag) = cfg.sock_flag {
        if ctx.flags & (1 << flag) != 0 && !cfg.sock_hdr_name.is_empty() {
            if let Some(v) = ctx.msg.header(&cfg.sock_hdr_name) {
                return v.trim_ascii().to_vec();
            }
        }
    }
    let local = ctx.net.local;
    let ip = match local.ip() {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    };
    format!("{}:{}:{}", ctx.net.proto.name(), ip, local.port()).into_bytes()
}

/// What save() did, for its return code: 1 inserted, 2 updated, 3 deleted, 4 nothing
/// changed (a query, or a retransmission).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Saved {
    Inserted = 1,
    Updated = 2,
    Deleted = 3,
    Queried = 4,
}

/// One current binding, as the 200 OK lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub uri: Vec<u8>,
    pub expires: i64,
    pub q: i16,
    pub received: Vec<u8>,
    pub instance: Vec<u8>,
    pub reg_id: u32,
}

/// How a REGISTER contact relates to a stored one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Match {
    New,
    Found(usize),
    /// Same Call-ID and CSeq within cseq_delay: a retransmission, left alone.
    Retransmission,
}

fn find_contact(
    rec: &RecordEdit<'_>,
    c: &RegContact,
    req: &RegisterRequest,
    ul: &UlConfig,
    now: i64,
) -> Result<Match, RegError> {
    let stored = rec.contacts();
    let by_instance = (!c.instance.is_empty())
        .then(|| {
            stored
                .iter()
                .position(|s| s.instance() == c.instance.as_slice() && s.reg_id == c.reg_id)
        })
        .flatten();
    let found = by_instance.or_else(|| {
        stored.iter().position(|s| match ul.matching_mode {
            MatchingMode::Contact => s.uri() == c.uri.as_slice(),
            MatchingMode::ContactCallId => {
                s.uri() == c.uri.as_slice() && s.callid() == req.callid.as_slice()
            }
            MatchingMode::ContactPath => {
                s.uri() == c.uri.as_slice() && s.path() == req.path.as_slice()
            }
            MatchingMode::CallIdOnly => s.callid() == req.callid.as_slice(),
        })
    });
    let Some(i) = found else {
        return Ok(Match::New);
    };
    let s = &stored[i];
    // RFC 3261 §10.3 step 7: within one Call-ID the CSeq must grow.
    if s.callid() == req.callid.as_slice() {
        if req.cseq < s.cseq {
            return Err(RegError::bad("Invalid CSeq number"));
        }
        if req.cseq == s.cseq {
            return if s.last_modified + ul.cseq_delay > now {
                Ok(Match::Retransmission)
            } else {
                Err(RegError::bad("Invalid CSeq number"))
            };
        }
    }
    Ok(Match::Found(i))
}

fn contact_info(c: &RegContact, req: &RegisterRequest, ruid: Vec<u8>, now: i64) -> ContactInfo {
    ContactInfo {
        uri: c.uri.clone(),
        received: req.received.clone(),
        path: req.path.clone(),
        callid: req.callid.clone(),
        user_agent: req.user_agent.clone(),
        socket: req.socket.clone(),
        instance: c.instance.clone(),
        ruid,
        expires: now + i64::from(c.expires),
        last_modified: now,
        q: c.q,
        cseq: req.cseq,
        flags: 0,
        cflags: req.cflags,
        methods: req.methods,
        reg_id: c.reg_id,
    }
}

/// Applies a REGISTER to the record of its address of record; returns what happened and
/// the bindings valid afterwards. Nothing is changed when an error is returned.
pub fn apply_register(
    rec: &mut RecordEdit<'_>,
    req: &RegisterRequest,
    cfg: &RegConfig,
    ul: &UlConfig,
    now: i64,
    new_ruid: &mut dyn FnMut() -> Vec<u8>,
) -> Result<(Saved, Vec<Binding>), RegError> {
    let mut result = Saved::Queried;
    if req.star {
        if !rec.contacts().is_empty() {
            rec.clear();
            result = Saved::Deleted;
        }
        return Ok((result, Vec::new()));
    }
    // Check every contact first, so that a bad CSeq or too many contacts changes nothing.
    let mut matches = Vec::with_capacity(req.contacts.len());
    let mut valid = rec.contacts().iter().filter(|c| c.is_valid(now)).count() as i64;
    for c in &req.contacts {
        let m = find_contact(rec, c, req, ul, now)?;
        match m {
            Match::New if c.expires != 0 => valid += 1,
            Match::Found(i) => {
                let was_valid = rec.contacts()[i].is_valid(now);
                if c.expires == 0 && was_valid {
                    valid -= 1;
                } else if c.expires != 0 && !was_valid {
                    valid += 1;
                }
            }
            _ => {}
        }
        matches.push(m);
    }
    if cfg.max_contacts > 0 && !req.flags.single_contact && valid > i64::from(cfg.max_contacts) {
        let mut e = RegError::new(503, "Too many registered contacts");
        e.rc = -2;
        if cfg.retry_after > 0 {
            e = e.header(format!("Retry-After: {}", cfg.retry_after));
        }
        return Err(e);
    }

    let mut kept: Vec<Vec<u8>> = Vec::new();
    let (mut inserted, mut updated, mut deleted) = (false, false, false);
    for (c, m) in req.contacts.iter().zip(matches) {
        // A contact listed twice in one REGISTER: the earlier change moved indexes, so
        // look it up again.
        let m = match m {
            Match::Found(_) => find_contact(rec, c, req, ul, now).unwrap_or(Match::Retransmission),
            other => other,
        };
        match m {
            Match::Retransmission => {
                if let Some(s) = rec.contacts().iter().find(|s| s.uri() == c.uri.as_slice()) {
                    kept.push(s.ruid().to_vec());
                }
            }
            Match::Found(i) if c.expires == 0 => {
                rec.remove(i);
                deleted = true;
            }
            Match::Found(i) => {
                let ruid = rec.contacts()[i].ruid().to_vec();
                kept.push(ruid.clone());
                rec.replace(i, contact_info(c, req, ruid, now))
                    .map_err(|_| RegError::bad("Contact/received too long"))?;
                updated = true;
            }
            Match::New if c.expires == 0 => {}
            Match::New => {
                let ruid = new_ruid();
                kept.push(ruid.clone());
                rec.insert(contact_info(c, req, ruid, now))
                    .map_err(|_| RegError::bad("Contact/received too long"))?;
                inserted = true;
            }
        }
    }
    if req.flags.single_contact && !kept.is_empty() {
        let mut i = 0;
        while i < rec.contacts().len() {
            if kept
                .iter()
                .any(|k| k.as_slice() == rec.contacts()[i].ruid())
            {
                i += 1;
            } else {
                rec.remove(i);
                deleted = true;
            }
        }
    }
    if inserted {
        result = Saved::Inserted;
    } else if updated {
        result = Saved::Updated;
    } else if deleted {
        result = Saved::Deleted;
    }
    Ok((result, bindings(rec, now)))
}

/// The valid bindings of a record, for a reply.
pub fn bindings(rec: &RecordEdit<'_>, now: i64) -> Vec<Binding> {
    rec.contacts()
        .iter()
        .filter(|c| c.is_valid(now))
        .map(|c| Binding {
            uri: c.uri().to_vec(),
            expires: c.remaining(now),
            q: c.q,
            received: c.received().to_vec(),
            instance: c.instance().to_vec(),
            reg_id: c.reg_id,
        })
        .collect()
}

/// Header lines of the 200 OK: the bindings in one Contact header (each with `expires`,
/// its q and the received address), Path when the UA gets it back, Flow-Timer, Date.
pub fn reply_headers(
    bindings: &[Binding],
    req: &RegisterRequest,
    cfg: &RegConfig,
    now: i64,
) -> String {
    let mut out = String::new();
    if !bindings.is_empty() {
        out.push_str("Contact: ");
        for (i, b) in bindings.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push('<');
            out.push_str(&String::from_utf8_lossy(&b.uri));
            out.push('>');
            if b.q >= 0 {
                out.push_str(";q=");
                out.push_str(&format_q(b.q));
            }
            out.push_str(&format!(";expires={}", b.expires));
            if !b.received.is_empty() && !cfg.received_param.is_empty() {
                out.push_str(&format!(
                    ";{}=\"{}\"",
                    String::from_utf8_lossy(&cfg.received_param),
                    String::from_utf8_lossy(&b.received)
                ));
            }
            if !b.instance.is_empty() {
                out.push_str(";+sip.instance=");
                out.push_str(&String::from_utf8_lossy(&b.instance));
            }
            if b.reg_id > 0 {
                out.push_str(&format!(";reg-id={}", b.reg_id));
            }
        }
        out.push_str("\r\n");
    }
    if req.path_in_reply && !req.path.is_empty() {
        out.push_str("Path: ");
        out.push_str(&String::from_utf8_lossy(&req.path));
        out.push_str("\r\n");
    }
    if cfg.flow_timer > 0 && bindings.iter().any(|b| b.reg_id > 0) {
        out.push_str(&format!("Flow-Timer: {}\r\n", cfg.flow_timer));
    }
    out.push_str("Date: ");
    out.push_str(&http_date(now));
    out.push_str("\r\n");
    out
}
