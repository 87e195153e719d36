//! Kamailio's BINRPC wire format (what `kamcmd` speaks on the `ctl` socket), written from
//! the format's description: a packet header (magic/version, type, total length, cookie)
//! then a body of typed records. Decoding never panics and never allocates more than the
//! packet it was given: every length is checked against the bytes present.

use ferrosip_api::registry::RpcValue;
use ferrosip_api::Value;

const MAGIC_VERSION: u8 = 0xA1;
pub const REQUEST: u8 = 0;
pub const REPLY: u8 = 1;
pub const FAULT: u8 = 3;

const T_INT: u8 = 0;
const T_STR: u8 = 1;
const T_DOUBLE: u8 = 2;
const T_STRUCT: u8 = 3;
const T_ARRAY: u8 = 4;
const T_AVP: u8 = 5;
const T_BYTES: u8 = 6;

/// Nesting allowed in a request's parameters (they are flat in practice).
const MAX_DEPTH: usize = 16;

/// Whether `first` starts a BINRPC packet (the ctl socket also takes JSON).
pub fn is_binrpc(first: u8) -> bool {
    first == MAGIC_VERSION
}

/// A packet header: the message type, the body length and the cookie a reply echoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: u8,
    pub body_len: usize,
    pub cookie: u32,
    /// Bytes the header itself takes.
    pub header_len: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// More bytes are needed (a stream read stopped inside the packet).
    Incomplete,
    /// Not a valid packet; the message says where.
    Bad(&'static str),
}

/// Reads a packet header from the start of `buf`.
pub fn parse_header(buf: &[u8]) -> Result<Header, DecodeError> {
    if buf.len() < 2 {
        return Err(DecodeError::Incomplete);
    }
    if buf[0] != MAGIC_VERSION {
        return Err(DecodeError::Bad("not a BINRPC packet (magic/version)"));
    }
    let kind = buf[1] >> 4;
    if !matches!(kind, REQUEST | REPLY | FAULT) {
        return Err(DecodeError::Bad("unknown packet type"));
    }
    let len_len = usize::from((buf[1] >> 2) & 3) + 1;
    let cookie_len = usize::from(buf[1] & 3) + 1;
    let header_len = 2 + len_len + cookie_len;
    if buf.len() < header_len {
        return Err(DecodeError::Incomplete);
    }
    let body_len = read_uint(&buf[2..2 + len_len]) as usize;
    let cookie = read_uint(&buf[2 + len_len..header_len]);
    Ok(Header {
        kind,
        body_len,
        cookie,
        header_len,
    })
}

fn read_uint(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
}

/// A request: the method and its parameters as script values.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    pub params: Vec<Value>,
}

/// One record of a body, as the decoder meets it.
enum Record<'a> {
    Int(i32),
    Str(&'a [u8]),
    Double(f64),
    Bytes(&'a [u8]),
    Open(u8),
    Close(u8),
    Avp(&'a [u8]),
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(DecodeError::Bad("record runs past the end of the packet"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn record(&mut self) -> Result<Record<'a>, DecodeError> {
        let head = self.take(1)?[0];
        let kind = head & 0x0f;
        let size_field = head >> 4;
        let has_len = size_field & 8 != 0;
        let len = if has_len {
            let n = usize::from(size_field & 7);
            if n > 4 {
                return Err(DecodeError::Bad("record length on more than 4 bytes"));
            }
            read_uint(self.take(n)?) as usize
        } else {
            usize::from(size_field)
        };
        match kind {
            T_STRUCT | T_ARRAY => {
                // A tag: start (S=0) or end (S=1, no length bytes).
                if has_len {
                    Ok(Record::Close(kind))
                } else {
                    self.take(len)?;
                    Ok(Record::Open(kind))
                }
            }
            T_INT => {
                if len > 4 {
                    return Err(DecodeError::Bad("int longer than 4 bytes"));
                }
                Ok(Record::Int(read_uint(self.take(len)?) as i32))
            }
            T_DOUBLE => {
                if len > 4 {
                    return Err(DecodeError::Bad("double longer than 4 bytes"));
                }
                // Kamailio's double: fixed point, thousandths in an int.
                Ok(Record::Double(
                    f64::from(read_uint(self.take(len)?) as i32) / 1000.0,
                ))
            }
            T_STR | T_AVP => {
                let s = self.take(len)?;
                // The length counts a terminating NUL.
                let s = match s.split_last() {
                    Some((0, text)) => text,
                    Some(_) => s,
                    None => s,
                };
                Ok(if kind == T_STR {
                    Record::Str(s)
                } else {
                    Record::Avp(s)
                })
            }
            T_BYTES => Ok(Record::Bytes(self.take(len)?)),
            _ => Err(DecodeError::Bad("unknown record type")),
        }
    }
}

/// Decodes a request body: the method name (a string) then the parameters. Structs and
/// arrays are not parameters any RPC takes: they are refused.
pub fn decode_request(body: &[u8]) -> Result<Request, DecodeError> {
    let mut r = Reader { buf: body, pos: 0 };
    let method = match r.record()? {
        Record::Str(s) | Record::Bytes(s) => String::from_utf8_lossy(s).into_owned(),
        _ => {
            return Err(DecodeError::Bad(
                "the request does not start with a method name",
            ))
        }
    };
    let mut params = Vec::new();
    while !r.done() {
        let v = match r.record()? {
            Record::Int(i) => Value::Int(i64::from(i)),
            Record::Str(s) | Record::Bytes(s) => Value::Str(bytes::Bytes::copy_from_slice(s)),
            Record::Double(d) => Value::from_string(format_double(d)),
            Record::Open(_) | Record::Close(_) | Record::Avp(_) => {
                return Err(DecodeError::Bad(
                    "structured parameters are not supported (give plain values)",
                ))
            }
        };
        params.push(v);
    }
    Ok(Request { method, params })
}

fn format_double(d: f64) -> String {
    if d.fract() == 0.0 {
        format!("{}", d as i64)
    } else {
        format!("{d}")
    }
}

/// Decodes a reply body into values (what `ferrosip ctl` and the tests read), nested at
/// most [`MAX_DEPTH`] deep.
pub fn decode_values(body: &[u8]) -> Result<Vec<RpcValue>, DecodeError> {
    let mut r = Reader { buf: body, pos: 0 };
    let mut out = Vec::new();
    while !r.done() {
        out.push(value(&mut r, 0)?);
    }
    Ok(out)
}

fn value(r: &mut Reader<'_>, depth: usize) -> Result<RpcValue, DecodeError> {
    let rec = r.record()?;
    value_of(r, rec, depth)
}

fn value_of(r: &mut Reader<'_>, rec: Record<'_>, depth: usize) -> Result<RpcValue, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::Bad("nested too deep"));
    }
    Ok(match rec {
        Record::Int(i) => RpcValue::Int(i64::from(i)),
        Record::Str(s) | Record::Bytes(s) => RpcValue::Str(String::from_utf8_lossy(s).into()),
        Record::Double(d) => RpcValue::Str(format_double(d)),
        Record::Open(T_ARRAY) => {
            let mut items = Vec::new();
            loop {
                if r.done() {
                    return Err(DecodeError::Bad("array not closed"));
                }
                match r.record()? {
                    Record::Close(T_ARRAY) => break,
                    Record::Close(_) => return Err(DecodeError::Bad("mismatched end tag")),
                    Record::Avp(_) => return Err(DecodeError::Bad("member outside a struct")),
                    rec => items.push(value_of(r, rec, depth + 1)?),
                }
            }
            RpcValue::Array(items)
        }
        Record::Open(_) => {
            let mut members = Vec::new();
            loop {
                if r.done() {
                    return Err(DecodeError::Bad("struct not closed"));
                }
                match r.record()? {
                    Record::Close(T_STRUCT) => break,
                    Record::Avp(name) => {
                        let name = String::from_utf8_lossy(name).into_owned();
                        members.push((name, value(r, depth + 1)?));
                    }
                    _ => return Err(DecodeError::Bad("a struct holds named members only")),
                }
            }
            RpcValue::Struct(members)
        }
        Record::Close(_) => return Err(DecodeError::Bad("end tag without a start")),
        Record::Avp(_) => return Err(DecodeError::Bad("member outside a struct")),
    })
}

/// Builds reply bodies.
#[derive(Default)]
pub struct Encoder {
    pub body: Vec<u8>,
}

impl Encoder {
    fn int(&mut self, i: i32) {
        let bytes = i.to_be_bytes();
        // Minimal length: leading zero bytes dropped (0 has no value bytes at all).
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let size = 4 - skip;
        self.body.push(((size as u8) << 4) | T_INT);
        self.body.extend_from_slice(&bytes[skip..]);
    }

    fn text(&mut self, kind: u8, s: &[u8]) {
        let nul = kind == T_STR || kind == T_AVP;
        let len = s.len() + usize::from(nul);
        if len < 8 {
            self.body.push(((len as u8) << 4) | kind);
        } else {
            let bytes = (len as u32).to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            self.body.push((((4 - skip) as u8 | 8) << 4) | kind);
            self.body.extend_from_slice(&bytes[skip..]);
        }
        self.body.extend_from_slice(s);
        if nul {
            self.body.push(0);
        }
    }

    pub fn string(&mut self, s: &str) {
        // A NUL inside would end the string early for C readers.
        if s.contains('\0') {
            self.text(T_STR, s.replace('\0', " ").as_bytes());
        } else {
            self.text(T_STR, s.as_bytes());
        }
    }

    fn tag(&mut self, kind: u8, end: bool) {
        self.body.push(if end { 0x80 | kind } else { kind });
    }

    /// A value at the top of a reply: an array's items are records of their own, as
    /// Kamailio's RPCs add them one by one (kamcmd prints one per line).
    pub fn top(&mut self, v: &RpcValue) {
        match v {
            RpcValue::Null => {}
            RpcValue::Array(items) => {
                for item in items {
                    self.value(item);
                }
            }
            other => self.value(other),
        }
    }

    /// A value as one record (an array as array tags).
    pub fn value(&mut self, v: &RpcValue) {
        match v {
            RpcValue::Null => self.text(T_STR, b""),
            RpcValue::Int(i) => match i32::try_from(*i) {
                Ok(i) => self.int(i),
                // BINRPC ints are 32-bit: a larger counter goes as its decimal text.
                Err(_) => self.string(&i.to_string()),
            },
            RpcValue::Str(s) => self.string(s),
            RpcValue::Array(items) => {
                self.tag(T_ARRAY, false);
                for item in items {
                    self.value(item);
                }
                self.tag(T_ARRAY, true);
            }
            RpcValue::Struct(members) => {
                self.tag(T_STRUCT, false);
                for (name, v) in members {
                    self.member(name, v);
                }
                self.tag(T_STRUCT, true);
            }
        }
    }

    /// A struct member. BINRPC has no array as a member's value (kamcmd refuses one):
    /// an array member is written as one member of that name per item, as Kamailio's
    /// own RPCs repeat a name.
    fn member(&mut self, name: &str, v: &RpcValue) {
        match v {
            RpcValue::Array(items) => {
                for item in items {
                    self.member(name, item);
                }
            }
            v => {
                self.text(T_AVP, name.replace('\0', " ").as_bytes());
                self.value(v);
            }
        }
    }
}

/// A whole packet: header then body.
pub fn packet(kind: u8, cookie: u32, body: &[u8]) -> Vec<u8> {
    let len = body.len() as u32;
    let len_bytes = len.to_be_bytes();
    let len_skip = len_bytes.iter().take_while(|b| **b == 0).count().min(3);
    let cookie_bytes = cookie.to_be_bytes();
    let cookie_skip = cookie_bytes.iter().take_while(|b| **b == 0).count().min(3);
    let len_len = 4 - len_skip;
    let cookie_len = 4 - cookie_skip;
    let mut out = Vec::with_capacity(2 + len_len + cookie_len + body.len());
    out.push(MAGIC_VERSION);
    out.push((kind << 4) | (((len_len - 1) as u8) << 2) | (cookie_len - 1) as u8);
    out.extend_from_slice(&len_bytes[len_skip..]);
    out.extend_from_slice(&cookie_bytes[cookie_skip..]);
    out.extend_from_slice(body);
    out
}

/// A reply packet carrying `value`.
pub fn reply(cookie: u32, value: &RpcValue) -> Vec<u8> {
    let mut e = Encoder::default();
    e.top(value);
    packet(REPLY, cookie, &e.body)
}

/// A fault packet: the code, then the message.
pub fn fault(cookie: u32, code: i64, message: &str) -> Vec<u8> {
    let mut e = Encoder::default();
    e.int(i32::try_from(code).unwrap_or(500));
    e.string(message);
    packet(FAULT, cookie, &e.body)
}

/// A request packet (the client side: `ferrosip ctl`, tests).
pub fn request(cookie: u32, method: &str, params: &[Value]) -> Vec<u8> {
    let mut e = Encoder::default();
    e.string(method);
    for p in params {
        match p {
            Value::Int(i) => e.value(&RpcValue::Int(*i)),
            Value::Str(s) => e.string(&String::from_utf8_lossy(s)),
            Value::Null => e.string(""),
        }
    }
    packet(REQUEST, cookie, &e.body)
}

#[cfg(test)]
mod tests;
