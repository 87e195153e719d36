//! Matching keys (RFC 3261 §17.1.3, §17.2.3).
//!
//! A key is the fields that must be equal for two messages to belong to one
//! transaction, written one after the other (each with its length) into a single byte
//! string. That string is all a key holds: one allocation, compared and hashed as bytes.
//! Looking a message up needs no allocation at all: [`Probe`] writes the same string
//! into a buffer on the stack, and a `HashMap<ServerKey, _>` accepts it through
//! `Borrow<[u8]>`. The string is built once per message either way, so the hash is over
//! contiguous bytes rather than a walk over scattered slices.

use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use ferrosip_sip::{ParseError, SipMessage};
use smallvec::SmallVec;

/// The RFC 3261 branch prefix that promises a globally unique branch (§8.1.1.7).
pub const MAGIC_COOKIE: &[u8] = b"z9hG4bK";

const SERVER_3261: u8 = 1;
const SERVER_2543: u8 = 2;
const CLIENT: u8 = 3;

/// Why a message yields no key. Such a message cannot be matched to a transaction; a
/// proxy answers a request like that with 400 or drops it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// A server key needs a request.
    NotARequest,
    /// A client key needs a response.
    NotAResponse,
    /// A header the key is made of is missing or does not parse.
    Header(ParseError),
    /// A client key needs the top Via branch (every request we send has one).
    NoBranch,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::NotARequest => f.write_str("a server transaction key needs a request"),
            KeyError::NotAResponse => f.write_str("a client transaction key needs a response"),
            KeyError::Header(e) => write!(f, "transaction key: {e}"),
            KeyError::NoBranch => f.write_str("top Via has no branch"),
        }
    }
}

impl std::error::Error for KeyError {}

impl From<ParseError> for KeyError {
    fn from(e: ParseError) -> Self {
        KeyError::Header(e)
    }
}

/// Room for a typical key (branch, host, method, or the longer RFC 2543 set) without
/// spilling to the heap.
type Buf = SmallVec<[u8; 192]>;

fn put_len(out: &mut Buf, mut n: usize) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn put(out: &mut Buf, field: &[u8]) {
    put_len(out, field.len());
    out.extend_from_slice(field);
}

fn put_lower(out: &mut Buf, field: &[u8]) {
    put_len(out, field.len());
    out.extend(field.iter().map(u8::to_ascii_lowercase));
}

/// ACK is matched to the INVITE it acknowledges (§17.2.3), so both write `INVITE`.
fn server_method(method: &[u8]) -> &[u8] {
    if method == b"ACK" {
        b"INVITE"
    } else {
        method
    }
}

/// Writes the server key of `req` as if its method were `method`.
fn server_key_into(req: &SipMessage, method: &[u8], out: &mut Buf) -> Result<(), KeyError> {
    let method = server_method(method);
    let via = req.top_via()?;
    if via.has_rfc3261_branch() {
        // §17.2.3: branch, sent-by, method. Host names compare case-insensitively.
        out.push(SERVER_3261);
        put(out, via.branch().unwrap_or_default());
        put_lower(out, via.host());
        out.extend_from_slice(&via.port().unwrap_or(0).to_be_bytes());
        put(out, method);
        return Ok(());
    }
    // RFC 2543 fallback: Request-URI, To tag, From tag, Call-ID, CSeq, top Via. The To
    // tag is left out for INVITE and ACK: an INVITE has none while the ACK carries the
    // one our response added, and the other fields (same CSeq number, Call-ID, From tag
    // and byte-identical top Via) already single out the INVITE.
    let cseq = req.cseq()?;
    out.push(SERVER_2543);
    put(out, req.request_uri().unwrap_or_default());
    if method == b"INVITE" {
        put(out, b"");
    } else {
        put(out, req.to_tag().unwrap_or_default());
    }
    put(out, req.from_tag().unwrap_or_default());
    put(out, req.call_id().unwrap_or_default());
    out.extend_from_slice(&cseq.seq.to_be_bytes());
    put(out, method);
    put(out, via.as_bytes());
    Ok(())
}

/// The key under which a server transaction is stored. Shared: the transaction and the
/// table it is filed in hold the same bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerKey(Arc<[u8]>);

/// The key under which a client transaction is stored.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey(Arc<[u8]>);

/// A key written on the stack, for looking up a message without allocating.
///
/// Use it with `map.get(probe.as_bytes())` (the owned keys implement `Borrow<[u8]>`),
/// and turn it into the owned key with [`Probe::to_key`] when a new transaction is
/// stored.
pub struct Probe<K> {
    bytes: Buf,
    _key: PhantomData<K>,
}

impl<K: From<Arc<[u8]>>> Probe<K> {
    fn new(bytes: Buf) -> Self {
        Probe {
            bytes,
            _key: PhantomData,
        }
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The owned key.
    pub fn to_key(&self) -> K {
        K::from(Arc::from(&self.bytes[..]))
    }
}

impl<K> std::ops::Deref for Probe<K> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl<K> fmt::Debug for Probe<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_key(f, "Probe", &self.bytes)
    }
}

impl From<Arc<[u8]>> for ServerKey {
    fn from(b: Arc<[u8]>) -> Self {
        ServerKey(b)
    }
}

impl From<Arc<[u8]>> for ClientKey {
    fn from(b: Arc<[u8]>) -> Self {
        ClientKey(b)
    }
}

impl Borrow<[u8]> for ServerKey {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl Borrow<[u8]> for ClientKey {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

fn write_key(f: &mut fmt::Formatter<'_>, name: &str, b: &[u8]) -> fmt::Result {
    write!(f, "{name}(")?;
    for &c in b {
        if c.is_ascii_graphic() {
            write!(f, "{}", c as char)?;
        } else {
            write!(f, "\\x{c:02x}")?;
        }
    }
    f.write_str(")")
}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_key(f, "ServerKey", &self.0)
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_key(f, "ClientKey", &self.0)
    }
}

impl ServerKey {
    /// The lookup key of a received request: the INVITE transaction for an ACK, the
    /// request's own transaction otherwise (a CANCEL has its own).
    pub fn probe(req: &SipMessage) -> Result<Probe<ServerKey>, KeyError> {
        let method = req.method_bytes().ok_or(KeyError::NotARequest)?;
        let mut b = Buf::new();
        server_key_into(req, method, &mut b)?;
        Ok(Probe::new(b))
    }

    /// The key of the INVITE server transaction a CANCEL targets (§9.2: the same
    /// matching, with the method taken as INVITE).
    pub fn probe_cancel_target(cancel: &SipMessage) -> Result<Probe<ServerKey>, KeyError> {
        if !cancel.is_request() {
            return Err(KeyError::NotARequest);
        }
        let mut b = Buf::new();
        server_key_into(cancel, b"INVITE", &mut b)?;
        Ok(Probe::new(b))
    }

    /// [`ServerKey::probe`], owned.
    pub fn of(req: &SipMessage) -> Result<ServerKey, KeyError> {
        Ok(ServerKey::probe(req)?.to_key())
    }

    /// True for a key of the RFC 2543 fallback (the request's branch lacked the magic
    /// cookie).
    pub fn is_rfc2543(&self) -> bool {
        self.0.first() == Some(&SERVER_2543)
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl ClientKey {
    /// The key of a client transaction that sends a request with this top Via branch
    /// and CSeq method (the key the driver stores when it creates the transaction).
    pub fn new(branch: &[u8], cseq_method: &[u8]) -> ClientKey {
        Probe::<ClientKey>::new(client_bytes(branch, cseq_method)).to_key()
    }

    /// The key of a request about to be sent (its top Via is ours).
    pub fn of_request(req: &SipMessage) -> Result<ClientKey, KeyError> {
        if !req.is_request() {
            return Err(KeyError::NotARequest);
        }
        let branch = req.top_via_branch().ok_or(KeyError::NoBranch)?;
        let cseq = req.cseq()?;
        Ok(ClientKey::new(branch, cseq.method_bytes()))
    }

    /// The lookup key of a received response (§17.1.3: top Via branch and CSeq
    /// method, so a CANCEL's responses do not reach the INVITE's transaction).
    pub fn probe(resp: &SipMessage) -> Result<Probe<ClientKey>, KeyError> {
        if resp.is_request() {
            return Err(KeyError::NotAResponse);
        }
        let branch = resp.top_via_branch().ok_or(KeyError::NoBranch)?;
        let cseq = resp.cseq()?;
        Ok(Probe::new(client_bytes(branch, cseq.method_bytes())))
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

fn client_bytes(branch: &[u8], method: &[u8]) -> Buf {
    let mut b = Buf::new();
    b.push(CLIENT);
    put(&mut b, branch);
    put(&mut b, method);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::collections::HashMap;

    fn msg(s: &str) -> SipMessage {
        SipMessage::parse(Bytes::copy_from_slice(s.as_bytes())).unwrap()
    }

    fn req(method: &str, via: &str, to_tag: &str, cseq: &str) -> SipMessage {
        let to = if to_tag.is_empty() {
            String::new()
        } else {
            format!(";tag={to_tag}")
        };
        msg(&format!(
            "{method} sip:bob@b.example SIP/2.0\r\nVia: {via}\r\nVia: SIP/2.0/UDP up;branch=z9hG4bKup\r\n\
To: <sip:bob@b.example>{to}\r\nFrom: <sip:a@a.example>;tag=f1\r\nCall-ID: c1@a\r\n\
CSeq: {cseq}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        ))
    }

    const V: &str = "SIP/2.0/UDP pc.a.example:5060;branch=z9hG4bKabc";

    #[test]
    fn ack_matches_invite_cancel_does_not() {
        let invite = req("INVITE", V, "", "1 INVITE");
        let ack = req("ACK", V, "totag", "1 ACK");
        let cancel = req("CANCEL", V, "", "1 CANCEL");
        let k = ServerKey::of(&invite).unwrap();
        assert!(!k.is_rfc2543());
        assert_eq!(ServerKey::of(&ack).unwrap(), k);
        assert_ne!(ServerKey::of(&cancel).unwrap(), k);
        assert_eq!(
            ServerKey::probe_cancel_target(&cancel).unwrap().as_bytes(),
            k.as_bytes()
        );
        let mut map = HashMap::new();
        map.insert(k.clone(), 7);
        let p = ServerKey::probe(&ack).unwrap();
        assert_eq!(map.get(p.as_bytes()), Some(&7));
        assert_eq!(map.get(&*ServerKey::probe(&cancel).unwrap()), None);
    }

    #[test]
    fn sent_by_and_method_matter() {
        let a = ServerKey::of(&req("OPTIONS", V, "", "1 OPTIONS")).unwrap();
        let host_case = ServerKey::of(&req(
            "OPTIONS",
            "SIP/2.0/UDP PC.A.example:5060;branch=z9hG4bKabc",
            "",
            "1 OPTIONS",
        ))
        .unwrap();
        assert_eq!(a, host_case);
        let port = ServerKey::of(&req(
            "OPTIONS",
            "SIP/2.0/UDP pc.a.example:5070;branch=z9hG4bKabc",
            "",
            "1 OPTIONS",
        ))
        .unwrap();
        assert_ne!(a, port);
        let host = ServerKey::of(&req(
            "OPTIONS",
            "SIP/2.0/UDP pc.b.example:5060;branch=z9hG4bKabc",
            "",
            "1 OPTIONS",
        ))
        .unwrap();
        assert_ne!(a, host);
        let branch = ServerKey::of(&req(
            "OPTIONS",
            "SIP/2.0/UDP pc.a.example:5060;branch=z9hG4bKabd",
            "",
            "1 OPTIONS",
        ))
        .unwrap();
        assert_ne!(a, branch);
        let method = ServerKey::of(&req("INFO", V, "", "1 INFO")).unwrap();
        assert_ne!(a, method);
    }

    #[test]
    fn rfc2543_fallback() {
        let old = "SIP/2.0/UDP pc.a.example:5060;branch=1234";
        let bare = "SIP/2.0/UDP pc.a.example:5060";
        let invite = req("INVITE", old, "", "5 INVITE");
        let k = ServerKey::of(&invite).unwrap();
        assert!(k.is_rfc2543());
        // The ACK carries the To tag of our final response and still matches.
        assert_eq!(ServerKey::of(&req("ACK", old, "t9", "5 ACK")).unwrap(), k);
        // A retransmission matches; another CSeq, Via or Call-ID does not.
        assert_eq!(ServerKey::of(&invite.clone()).unwrap(), k);
        assert_ne!(
            ServerKey::of(&req("INVITE", old, "", "6 INVITE")).unwrap(),
            k
        );
        assert_ne!(
            ServerKey::of(&req("INVITE", bare, "", "5 INVITE")).unwrap(),
            k
        );
        let cancel = req("CANCEL", old, "", "5 CANCEL");
        assert_ne!(ServerKey::of(&cancel).unwrap(), k);
        assert_eq!(ServerKey::probe_cancel_target(&cancel).unwrap().to_key(), k);
        // Non-INVITE: the To tag counts.
        let bye1 = ServerKey::of(&req("BYE", bare, "x", "7 BYE")).unwrap();
        let bye2 = ServerKey::of(&req("BYE", bare, "y", "7 BYE")).unwrap();
        assert!(bye1.is_rfc2543());
        assert_ne!(bye1, bye2);
        let mut other_call = req("BYE", bare, "x", "7 BYE");
        other_call.set_header("Call-ID", "other@a").unwrap();
        assert_ne!(ServerKey::of(&other_call).unwrap(), bye1);
        let mut other_ruri = req("BYE", bare, "x", "7 BYE");
        other_ruri.set_request_uri("sip:carol@c.example").unwrap();
        assert_ne!(ServerKey::of(&other_ruri).unwrap(), bye1);
    }

    #[test]
    fn client_keys() {
        let invite = req("INVITE", V, "", "1 INVITE");
        let k = ClientKey::of_request(&invite).unwrap();
        assert_eq!(k, ClientKey::new(b"z9hG4bKabc", b"INVITE"));
        let resp = msg(&format!(
            "SIP/2.0 180 Ringing\r\nVia: {V}\r\nTo: <sip:b@b>;tag=1\r\nFrom: <sip:a@a>;tag=f\r\n\
Call-ID: c1@a\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        ));
        let mut map = HashMap::new();
        map.insert(k.clone(), 1);
        map.insert(ClientKey::new(b"z9hG4bKabc", b"CANCEL"), 2);
        assert_eq!(
            map.get(ClientKey::probe(&resp).unwrap().as_bytes()),
            Some(&1)
        );
        let cancel_resp = msg(&format!(
            "SIP/2.0 200 OK\r\nVia: {V}\r\nTo: <sip:b@b>;tag=1\r\nFrom: <sip:a@a>;tag=f\r\n\
Call-ID: c1@a\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
        ));
        assert_eq!(map.get(&*ClientKey::probe(&cancel_resp).unwrap()), Some(&2));
        assert_eq!(
            ClientKey::probe(&invite).unwrap_err(),
            KeyError::NotAResponse
        );
        assert_eq!(ServerKey::probe(&resp).unwrap_err(), KeyError::NotARequest);
        let no_branch = msg("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\nCSeq: 1 INVITE\r\n\r\n");
        assert_eq!(
            ClientKey::probe(&no_branch).unwrap_err(),
            KeyError::NoBranch
        );
        let no_via = msg("OPTIONS sip:a@b SIP/2.0\r\nCSeq: 1 OPTIONS\r\n\r\n");
        assert!(matches!(
            ServerKey::probe(&no_via),
            Err(KeyError::Header(_))
        ));
        assert!(format!("{k:?}").contains("z9hG4bKabc"));
    }

    #[test]
    fn long_fields_spill_and_still_match() {
        let branch = format!("z9hG4bK{}", "x".repeat(300));
        let via = format!("SIP/2.0/UDP h;branch={branch}");
        let r = req("OPTIONS", &via, "", "1 OPTIONS");
        let k = ServerKey::of(&r).unwrap();
        assert!(k.as_bytes().len() > 300);
        assert_eq!(ServerKey::probe(&r).unwrap().as_bytes(), k.as_bytes());
    }
}
