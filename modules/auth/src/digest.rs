//! Digest computations (RFC 2617, RFC 7616, RFC 8760) and the parser of the credentials a
//! user agent sends in `Authorization` / `Proxy-Authorization`.

use md5::Md5;
use sha2::{Digest as _, Sha256, Sha512_256};

/// A hash algorithm of HTTP digest authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
    Sha512_256,
}

/// An `algorithm=` value: the hash and whether it is a `-sess` variant (HA1 re-hashed with
/// the nonce and cnonce).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DigestAlgorithm {
    pub hash: Algorithm,
    pub session: bool,
}

impl Algorithm {
    /// The name used in challenges (`algorithm=SHA-256`).
    pub const fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha512_256 => "SHA-512-256",
        }
    }

    /// Length of a hash in lower-case hex.
    pub const fn hex_len(self) -> usize {
        match self {
            Algorithm::Md5 => 32,
            Algorithm::Sha256 | Algorithm::Sha512_256 => 64,
        }
    }

    /// Parses a plain algorithm name (no `-sess`), any case.
    pub fn parse(name: &[u8]) -> Option<Algorithm> {
        match DigestAlgorithm::parse(name)? {
            DigestAlgorithm {
                hash,
                session: false,
            } => Some(hash),
            _ => None,
        }
    }

    /// `H(p1:p2:...)` in lower-case hex: the parts are joined with `:` as RFC 7616 §3.4
    /// writes every digest input.
    pub fn hash_hex(self, parts: &[&[u8]]) -> String {
        fn run<D: sha2::Digest>(mut d: D, parts: &[&[u8]]) -> String {
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p);
            }
            to_hex(&d.finalize())
        }
        match self {
            Algorithm::Md5 => run(Md5::new(), parts),
            Algorithm::Sha256 => run(Sha256::new(), parts),
            Algorithm::Sha512_256 => run(Sha512_256::new(), parts),
        }
    }
}

impl DigestAlgorithm {
    /// Parses `MD5`, `MD5-sess`, `SHA-256`, `SHA-256-sess`, `SHA-512-256`,
    /// `SHA-512-256-sess` (any case).
    pub fn parse(name: &[u8]) -> Option<DigestAlgorithm> {
        let (base, session) = match name.len().checked_sub(5) {
            Some(cut) if name[cut..].eq_ignore_ascii_case(b"-sess") => (&name[..cut], true),
            _ => (name, false),
        };
        let hash = [Algorithm::Md5, Algorithm::Sha256, Algorithm::Sha512_256]
            .into_iter()
            .find(|a| a.name().as_bytes().eq_ignore_ascii_case(base))?;
        Some(DigestAlgorithm { hash, session })
    }
}

/// Lower-case hex of a byte string.
pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Compares two byte strings in time that depends only on their lengths, so that a peer
/// timing our answers learns nothing about how many leading bytes of a response matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// `HA1 = H(username:realm:password)`.
pub fn ha1(alg: Algorithm, username: &[u8], realm: &[u8], password: &[u8]) -> String {
    alg.hash_hex(&[username, realm, password])
}

/// What the response of a set of credentials is computed from, besides HA1.
#[derive(Clone, Copy, Debug)]
pub struct ResponseInput<'a> {
    pub method: &'a [u8],
    pub uri: &'a [u8],
    pub nonce: &'a [u8],
    /// `(qop, nc, cnonce)` when the credentials carry a qop.
    pub qop: Option<(&'a [u8], &'a [u8], &'a [u8])>,
    /// The message body, hashed into HA2 for `qop=auth-int`.
    pub body: &'a [u8],
}

/// The `response` value (RFC 7616 §3.4.1): with a qop
/// `H(HA1:nonce:nc:cnonce:qop:HA2)`, without one (RFC 2069 compatibility)
/// `H(HA1:nonce:HA2)`; `-sess` algorithms first replace HA1 with `H(HA1:nonce:cnonce)`.
pub fn response(alg: DigestAlgorithm, ha1: &str, input: &ResponseInput<'_>) -> String {
    let h = alg.hash;
    let cnonce = input.qop.map_or(&b""[..], |(_, _, c)| c);
    let session_ha1;
    let ha1 = if alg.session {
        session_ha1 = h.hash_hex(&[ha1.as_bytes(), input.nonce, cnonce]);
        session_ha1.as_str()
    } else {
        ha1
    };
    let ha2 = match input.qop {
        Some((qop, _, _)) if qop.eq_ignore_ascii_case(b"auth-int") => {
            let body = h.hash_hex(&[input.body]);
            h.hash_hex(&[input.method, input.uri, body.as_bytes()])
        }
        _ => h.hash_hex(&[input.method, input.uri]),
    };
    match input.qop {
        Some((qop, nc, cnonce)) => {
            h.hash_hex(&[ha1.as_bytes(), input.nonce, nc, cnonce, qop, ha2.as_bytes()])
        }
        None => h.hash_hex(&[ha1.as_bytes(), input.nonce, ha2.as_bytes()]),
    }
}

/// Digest credentials as sent by a user agent (values unquoted and unescaped).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: Vec<u8>,
    pub realm: Vec<u8>,
    pub nonce: Vec<u8>,
    pub uri: Vec<u8>,
    pub response: Vec<u8>,
    pub algorithm: Option<Vec<u8>>,
    pub cnonce: Option<Vec<u8>>,
    pub opaque: Option<Vec<u8>>,
    pub qop: Option<Vec<u8>>,
    pub nc: Option<Vec<u8>>,
    /// RFC 7616 `userhash=true`: the username is hashed; not supported (no table of hashed
    /// user names), such credentials are refused as malformed.
    pub userhash: bool,
}

/// Why credentials cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialsError {
    /// Another scheme than Digest (`Basic`, ...).
    NotDigest,
    /// Broken syntax or a missing or invalid required directive.
    Malformed(&'static str),
}

impl Credentials {
    /// The user part of `username` (before `@` when the user agent added its domain).
    pub fn user(&self) -> &[u8] {
        match self.username.iter().position(|&b| b == b'@') {
            Some(at) => &self.username[..at],
            None => &self.username,
        }
    }

    /// The domain some user agents append to the username (`alice@example.com`).
    pub fn user_domain(&self) -> Option<&[u8]> {
        let at = self.username.iter().position(|&b| b == b'@')?;
        Some(&self.username[at + 1..])
    }

    /// The algorithm of the credentials (MD5 when absent, as RFC 2617 says).
    pub fn digest_algorithm(&self) -> Result<DigestAlgorithm, CredentialsError> {
        match &self.algorithm {
            None => Ok(DigestAlgorithm {
                hash: Algorithm::Md5,
                session: false,
            }),
            Some(a) => DigestAlgorithm::parse(a)
                .ok_or(CredentialsError::Malformed("unsupported algorithm")),
        }
    }

    /// Checks what Kamailio's `check_dig_cred` checks: the required directives are there,
    /// a qop comes with nc and cnonce, nc is 8 hex digits, the qop and algorithm are known.
    pub fn validate(&self) -> Result<(), CredentialsError> {
        let required = [
            (&self.username, "username missing"),
            (&self.realm, "realm missing"),
            (&self.nonce, "nonce missing"),
            (&self.uri, "uri missing"),
            (&self.response, "response missing"),
        ];
        for (value, why) in required {
            if value.is_empty() {
                return Err(CredentialsError::Malformed(why));
            }
        }
        if self.userhash {
            return Err(CredentialsError::Malformed("userhash is not supported"));
        }
        self.digest_algorithm()?;
        if let Some(qop) = &self.qop {
            if !qop.eq_ignore_ascii_case(b"auth") && !qop.eq_ignore_ascii_case(b"auth-int") {
                return Err(CredentialsError::Malformed("unknown qop"));
            }
            if !matches!(&self.cnonce, Some(c) if !c.is_empty()) {
                return Err(CredentialsError::Malformed("qop without cnonce"));
            }
            if self.nonce_count().is_none() {
                return Err(CredentialsError::Malformed("qop without a valid nc"));
            }
        }
        Ok(())
    }

    /// The nonce count (`nc`, 8 hex digits).
    pub fn nonce_count(&self) -> Option<u32> {
        let nc = self.nc.as_ref()?;
        if nc.len() != 8 || !nc.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u32::from_str_radix(std::str::from_utf8(nc).ok()?, 16).ok()
    }
}

/// Parses a credentials header value: `Digest name=value, name="quoted", ...`.
pub fn parse_credentials(value: &[u8]) -> Result<Credentials, CredentialsError> {
    let mut p = Cursor { s: value, i: 0 };
    p.skip_ws();
    let scheme = p.token();
    if !scheme.eq_ignore_ascii_case(b"Digest") {
        return Err(CredentialsError::NotDigest);
    }
    let mut c = Credentials::default();
    loop {
        p.skip_ws();
        if p.at_end() {
            break;
        }
        let name = p.token();
        if name.is_empty() {
            return Err(CredentialsError::Malformed("directive name expected"));
        }
        p.skip_ws();
        if !p.eat(b'=') {
            return Err(CredentialsError::Malformed("'=' expected"));
        }
        p.skip_ws();
        let value = if p.peek() == Some(b'"') {
            p.quoted()
                .ok_or(CredentialsError::Malformed("unterminated quoted string"))?
        } else {
            p.token().to_vec()
        };
        store(&mut c, name, value);
        p.skip_ws();
        if !p.at_end() && !p.eat(b',') {
            return Err(CredentialsError::Malformed("',' expected"));
        }
    }
    Ok(c)
}

fn store(c: &mut Credentials, name: &[u8], value: Vec<u8>) {
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    if is("username") {
        c.username = value;
    } else if is("realm") {
        c.realm = value;
    } else if is("nonce") {
        c.nonce = value;
    } else if is("uri") {
        c.uri = value;
    } else if is("response") {
        c.response = value;
    } else if is("algorithm") {
        c.algorithm = Some(value);
    } else if is("cnonce") {
        c.cnonce = Some(value);
    } else if is("opaque") {
        c.opaque = Some(value);
    } else if is("qop") {
        c.qop = Some(value);
    } else if is("nc") {
        c.nc = Some(value);
    } else if is("userhash") {
        c.userhash = value.eq_ignore_ascii_case(b"true");
    }
    // Other directives (auth-param extensions) are ignored, as RFC 7616 §3.4 asks.
}

/// Writes `value` as a quoted-string (RFC 3261 §25.1): `"` and `\` are escaped.
pub fn push_quoted(out: &mut String, value: &str) {
    out.push('"');
    for ch in value.chars() {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// Blanks, including folded lines (CRLF followed by a blank).
    fn skip_ws(&mut self) {
        while let Some(b) = self.peek() {
            if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    /// A token: anything up to a separator of this grammar.
    fn token(&mut self) -> &'a [u8] {
        let start = self.i;
        while let Some(b) = self.peek() {
            if matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b',' | b'=' | b'"') {
                break;
            }
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    /// A quoted-string starting at `"`; returns the unescaped content.
    fn quoted(&mut self) -> Option<Vec<u8>> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let b = self.peek()?;
            self.i += 1;
            match b {
                b'"' => return Some(out),
                b'\\' => {
                    out.push(self.peek()?);
                    self.i += 1;
                }
                _ => out.push(b),
            }
        }
    }
}
