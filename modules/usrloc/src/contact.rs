//! One registered contact, stored compactly: a million of them must fit in well under a
//! GiB, so every string of a contact lives in one heap buffer (one allocation instead of
//! eight) and the fixed fields are small integers.

use std::fmt;

/// The string fields of a contact, in the order they are packed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Field {
    /// The Contact URI.
    Uri,
    /// Source address of the REGISTER when behind NAT (`received_avp`), as a SIP URI.
    Received,
    /// The Path header values (RFC 3327), comma-separated.
    Path,
    CallId,
    UserAgent,
    /// The local socket the REGISTER came in on (`udp:1.2.3.4:5060`).
    Socket,
    /// `+sip.instance` (RFC 5626).
    Instance,
    /// Record unique id (Kamailio's `ruid`): the key of the contact in the database.
    Ruid,
}

const FIELDS: usize = 8;

/// Methods bitmask value meaning "every method" (no Allow header in the REGISTER).
pub const ALL_METHODS: u32 = u32::MAX;

/// The values of a contact before it is packed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContactInfo {
    pub uri: Vec<u8>,
    pub received: Vec<u8>,
    pub path: Vec<u8>,
    pub callid: Vec<u8>,
    pub user_agent: Vec<u8>,
    pub socket: Vec<u8>,
    pub instance: Vec<u8>,
    pub ruid: Vec<u8>,
    /// Unix seconds when the binding ends; 0 never.
    pub expires: i64,
    /// Unix seconds of the last change.
    pub last_modified: i64,
    /// q in thousandths (0..=1000), -1 when the contact gave none.
    pub q: i16,
    pub cseq: u32,
    pub flags: u32,
    /// Branch flags (`nat_bflag` and the script's `setbflag`) given to lookup's branches.
    pub cflags: u32,
    /// Kamailio's method bitmask (INVITE=1, CANCEL=2, ...), [`ALL_METHODS`] for any.
    pub methods: u32,
    pub reg_id: u32,
}

/// A field did not fit: the packed strings are limited to 64 KiB per contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

impl fmt::Display for TooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("contact data longer than 64 KiB")
    }
}

/// A stored contact (Kamailio's `ucontact`).
#[derive(Clone, PartialEq, Eq)]
pub struct Contact {
    /// Every string field back to back; `ends[i]` is where field `i` ends.
    buf: Box<[u8]>,
    ends: [u16; FIELDS],
    /// Unix seconds when the binding ends; 0 never.
    pub expires: i64,
    pub last_modified: i64,
    pub cseq: u32,
    pub flags: u32,
    pub cflags: u32,
    pub methods: u32,
    pub reg_id: u32,
    /// q in thousandths, -1 none.
    pub q: i16,
}

impl Contact {
    pub fn new(info: &ContactInfo) -> Result<Contact, TooLong> {
        let parts: [&[u8]; FIELDS] = [
            &info.uri,
            &info.received,
            &info.path,
            &info.callid,
            &info.user_agent,
            &info.socket,
            &info.instance,
            &info.ruid,
        ];
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total > usize::from(u16::MAX) {
            return Err(TooLong);
        }
        let mut buf = Vec::with_capacity(total);
        let mut ends = [0u16; FIELDS];
        for (i, p) in parts.iter().enumerate() {
            buf.extend_from_slice(p);
            ends[i] = buf.len() as u16;
        }
        Ok(Contact {
            buf: buf.into_boxed_slice(),
            ends,
            expires: info.expires,
            last_modified: info.last_modified,
            cseq: info.cseq,
            flags: info.flags,
            cflags: info.cflags,
            methods: info.methods,
            reg_id: info.reg_id,
            q: info.q,
        })
    }

    pub fn get(&self, f: Field) -> &[u8] {
        let i = f as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.buf[start..self.ends[i] as usize]
    }

    pub fn uri(&self) -> &[u8] {
        self.get(Field::Uri)
    }
    pub fn received(&self) -> &[u8] {
        self.get(Field::Received)
    }
    pub fn path(&self) -> &[u8] {
        self.get(Field::Path)
    }
    pub fn callid(&self) -> &[u8] {
        self.get(Field::CallId)
    }
    pub fn user_agent(&self) -> &[u8] {
        self.get(Field::UserAgent)
    }
    pub fn socket(&self) -> &[u8] {
        self.get(Field::Socket)
    }
    pub fn instance(&self) -> &[u8] {
        self.get(Field::Instance)
    }
    pub fn ruid(&self) -> &[u8] {
        self.get(Field::Ruid)
    }

    /// Valid at `now`: not expired (a contact with `expires` 0 never expires).
    pub fn is_valid(&self, now: i64) -> bool {
        self.expires == 0 || self.expires > now
    }

    /// Seconds left at `now` (0 when expired; `u32::MAX`-ish never for permanent ones).
    pub fn remaining(&self, now: i64) -> i64 {
        if self.expires == 0 {
            i64::from(u32::MAX)
        } else {
            (self.expires - now).max(0)
        }
    }

    /// Whether the contact accepts `method` (a Kamailio method bit).
    pub fn allows(&self, method_bit: u32) -> bool {
        method_bit == 0 || self.methods & method_bit != 0
    }

    /// The unpacked values (for the database and for building an updated contact).
    pub fn info(&self) -> ContactInfo {
        ContactInfo {
            uri: self.uri().to_vec(),
            received: self.received().to_vec(),
            path: self.path().to_vec(),
            callid: self.callid().to_vec(),
            user_agent: self.user_agent().to_vec(),
            socket: self.socket().to_vec(),
            instance: self.instance().to_vec(),
            ruid: self.ruid().to_vec(),
            expires: self.expires,
            last_modified: self.last_modified,
            q: self.q,
            cseq: self.cseq,
            flags: self.flags,
            cflags: self.cflags,
            methods: self.methods,
            reg_id: self.reg_id,
        }
    }

    /// Bytes of heap this contact owns (for the memory report).
    pub fn heap_bytes(&self) -> usize {
        self.buf.len()
    }
}

impl fmt::Debug for Contact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Contact")
            .field("uri", &String::from_utf8_lossy(self.uri()))
            .field("ruid", &String::from_utf8_lossy(self.ruid()))
            .field("expires", &self.expires)
            .field("q", &self.q)
            .field("callid", &String::from_utf8_lossy(self.callid()))
            .field("cseq", &self.cseq)
            .finish_non_exhaustive()
    }
}

/// Kamailio's method bit for a method name (0 for an unknown one, which every contact
/// accepts).
pub fn method_bit(method: &[u8]) -> u32 {
    const BITS: [(&[u8], u32); 19] = [
        (b"INVITE", 1),
        (b"CANCEL", 2),
        (b"ACK", 4),
        (b"BYE", 8),
        (b"INFO", 16),
        (b"REGISTER", 32),
        (b"SUBSCRIBE", 64),
        (b"NOTIFY", 128),
        (b"MESSAGE", 256),
        (b"OPTIONS", 512),
        (b"PRACK", 1024),
        (b"UPDATE", 2048),
        (b"REFER", 4096),
        (b"PUBLISH", 8192),
        (b"KDMQ", 16384),
        (b"GET", 32768),
        (b"POST", 65536),
        (b"PUT", 131072),
        (b"DELETE", 262144),
    ];
    BITS.iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(method))
        .map_or(0, |(_, bit)| *bit)
}

/// The method bitmask of an Allow header value (`INVITE, ACK, BYE`); unknown methods set
/// Kamailio's "other" bit.
pub fn methods_of_allow(allow: &[u8]) -> u32 {
    const OTHER: u32 = 524288;
    allow
        .split(|&c| c == b',')
        .map(|m| m.trim_ascii())
        .filter(|m| !m.is_empty())
        .fold(0, |acc, m| {
            acc | Some(method_bit(m)).filter(|b| *b != 0).unwrap_or(OTHER)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_and_reads_back_every_field() {
        let info = ContactInfo {
            uri: b"sip:alice@10.0.0.1:5060".to_vec(),
            received: b"sip:1.2.3.4:1024".to_vec(),
            path: b"<sip:edge;lr>".to_vec(),
            callid: b"abc@host".to_vec(),
            user_agent: b"phone/1.0".to_vec(),
            socket: b"udp:127.0.0.1:5060".to_vec(),
            instance: Vec::new(),
            ruid: b"uloc-1".to_vec(),
            expires: 100,
            q: 500,
            cseq: 7,
            methods: ALL_METHODS,
            ..Default::default()
        };
        let c = Contact::new(&info).unwrap();
        assert_eq!(c.uri(), b"sip:alice@10.0.0.1:5060");
        assert_eq!(c.received(), b"sip:1.2.3.4:1024");
        assert_eq!(c.path(), b"<sip:edge;lr>");
        assert_eq!(c.instance(), b"");
        assert_eq!(c.ruid(), b"uloc-1");
        assert_eq!(c.info(), info);
        assert!(c.is_valid(99) && !c.is_valid(100));
        assert_eq!(c.remaining(40), 60);
    }

    #[test]
    fn too_long_is_refused() {
        let info = ContactInfo {
            path: vec![b'x'; 70_000],
            ..Default::default()
        };
        assert_eq!(Contact::new(&info), Err(TooLong));
    }

    #[test]
    fn allow_header_to_bitmask() {
        assert_eq!(methods_of_allow(b"INVITE, ACK,bye"), 1 | 4 | 8);
        assert_eq!(methods_of_allow(b"INVITE, FOO"), 1 | 524288);
        assert_eq!(method_bit(b"message"), 256);
    }

    #[test]
    fn contact_struct_stays_small() {
        // The packed layout is what keeps 1M contacts far below a GiB; guard it.
        assert!(std::mem::size_of::<Contact>() <= 72);
    }
}
