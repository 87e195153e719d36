//! The authentication engine shared by `auth`'s own functions and the credential back
//! ends (`auth_db`): finding and checking credentials, nonces, challenges, and the log of
//! failed attempts.

use crate::digest::{
    self, constant_time_eq, parse_credentials, push_quoted, Algorithm, Credentials,
    CredentialsError, DigestAlgorithm, ResponseInput,
};
use crate::nonce::{NonceError, NonceFactory, NonceInfo, ReplayCheck};
use bytes::Bytes;
use ferrosip_api::{FnError, FnResult, ModuleParams, MsgContext, ReplyHeaders, RouteKind, Verdict};
use ferrosip_sip::Method;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Kamailio's `auth_cfg_result` codes, as the script sees them.
pub mod code {
    pub const OK: i32 = 1;
    pub const ERROR: i32 = -1;
    pub const INVALID_PASSWORD: i32 = -2;
    pub const USER_UNKNOWN: i32 = -3;
    pub const STALE_NONCE: i32 = -4;
    pub const NO_CREDENTIALS: i32 = -5;
    pub const NONCE_REUSED: i32 = -6;
    pub const USER_MISMATCH: i32 = -8;
}

/// Which header carries the credentials, and so which challenge answers their absence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredHeader {
    /// `Authorization`, challenged by a 401 with `WWW-Authenticate` (registrars, UAS).
    Authorization,
    /// `Proxy-Authorization`, challenged by a 407 with `Proxy-Authenticate`.
    ProxyAuthorization,
}

impl CredHeader {
    pub const fn name(self) -> &'static str {
        match self {
            CredHeader::Authorization => "Authorization",
            CredHeader::ProxyAuthorization => "Proxy-Authorization",
        }
    }

    /// `Authorization` for REGISTER, `Proxy-Authorization` for anything else (what
    /// `auth_check` and `auth_challenge` pick).
    pub fn for_request(ctx: &MsgContext) -> CredHeader {
        if matches!(ctx.msg.method(), Some(Method::Register)) {
            CredHeader::Authorization
        } else {
            CredHeader::ProxyAuthorization
        }
    }
}

/// Per-message authentication state, kept in [`MsgContext::ext`].
#[derive(Default)]
struct AuthMsgState {
    /// Credentials for the realm carried a stale nonce: the next challenge says
    /// `stale=true`, so the user agent retries without asking its user.
    stale: bool,
    /// The header line a successful check used (`consume_credentials` removes it).
    authorized: Option<(CredHeader, Bytes)>,
    /// `auth_algorithm()`: algorithms for this message's challenges.
    algorithms: Option<Vec<Algorithm>>,
}

/// The `auth` module parameters, checked once at load.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    pub qop_auth: bool,
    pub qop_auth_int: bool,
    /// Offered in this order, one challenge header each (RFC 8760 §2.4: preferred first).
    pub algorithms: Vec<Algorithm>,
    pub realm_prefix: Vec<u8>,
    pub force_stateless_reply: bool,
    pub checks_register: u8,
    pub checks_no_dlg: u8,
    pub checks_in_dlg: u8,
    /// `protect_contacts`: the Contact values are signed into nonces too.
    pub protect_contacts: bool,
    pub use_domain: bool,
    pub add_authinfo_hdr: bool,
    pub www_header: String,
    pub proxy_header: String,
    /// AVP slot receiving challenges built by the `pv_*` functions (`challenge_attr`).
    pub challenge_avp: Option<u32>,
}

/// Where the engine writes AVPs named by parameters.
pub type AvpSlot = dyn Fn(&str) -> u32 + Send + Sync;

impl AuthConfig {
    /// Reads and checks the parameters; `avp_slot` resolves AVP names.
    pub fn from_params(p: &ModuleParams, avp_slot: &AvpSlot) -> Result<AuthConfig, String> {
        let mut qop_auth = false;
        let mut qop_auth_int = false;
        for q in p.string("qop").split(',').map(str::trim) {
            match q.to_ascii_lowercase().as_str() {
                "" => {}
                "auth" => qop_auth = true,
                "auth-int" => qop_auth_int = true,
                other => return Err(format!("qop: unknown value '{other}' (auth, auth-int)")),
            }
        }
        let algorithms = parse_algorithms(p.string("algorithm").as_bytes())
            .map_err(|e| format!("algorithm: {e}"))?;
        let mask = |name: &str| -> Result<u8, String> {
            let v = p.int(name);
            if !(0..=15).contains(&v) {
                return Err(format!("{name}: {v} is not a mask of 1, 2, 4, 8"));
            }
            Ok(v as u8)
        };
        let challenge_avp = avp_name(&p.string("challenge_attr"))
            .map_err(|e| format!("challenge_attr: {e}"))?
            .map(|n| avp_slot(&n));
        Ok(AuthConfig {
            qop_auth,
            qop_auth_int,
            algorithms,
            realm_prefix: p.string("realm_prefix").into_bytes(),
            force_stateless_reply: p.int("force_stateless_reply") != 0,
            checks_register: mask("auth_checks_register")?,
            checks_no_dlg: mask("auth_checks_no_dlg")?,
            checks_in_dlg: mask("auth_checks_in_dlg")?,
            protect_contacts: p.int("protect_contacts") != 0,
            use_domain: p.int("use_domain") != 0,
            add_authinfo_hdr: p.int("add_authinfo_hdr") != 0,
            www_header: non_empty(p.string("www_challenge_header"), "WWW-Authenticate"),
            proxy_header: non_empty(p.string("proxy_challenge_header"), "Proxy-Authenticate"),
            challenge_avp,
        })
    }
}

fn non_empty(s: String, default: &str) -> String {
    if s.trim().is_empty() {
        default.to_string()
    } else {
        s.trim().to_string()
    }
}

/// An AVP name as Kamailio writes it in parameters: `$avp(name)`, `$avp(s:name)`, or the
/// old alias form `$name`; empty: none.
pub fn avp_name(spec: &str) -> Result<Option<String>, String> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Ok(None);
    }
    let name = if let Some(inner) = spec.strip_prefix("$avp(").and_then(|s| s.strip_suffix(')')) {
        inner
    } else if let Some(alias) = spec.strip_prefix('$') {
        alias
    } else {
        spec
    };
    let name = name
        .strip_prefix("s:")
        .or_else(|| name.strip_prefix("i:"))
        .unwrap_or(name);
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("'{spec}' is not an AVP ($avp(name))"));
    }
    Ok(Some(name.to_string()))
}

/// `MD5`, `SHA-256`, `SHA-512-256`, comma-separated; empty means MD5.
pub fn parse_algorithms(list: &[u8]) -> Result<Vec<Algorithm>, String> {
    let mut out = Vec::new();
    for item in list.split(|&b| b == b',') {
        let item = item.trim_ascii();
        if item.is_empty() {
            continue;
        }
        let alg = Algorithm::parse(item).ok_or_else(|| {
            format!(
                "unknown algorithm '{}' (MD5, SHA-256, SHA-512-256)",
                String::from_utf8_lossy(item)
            )
        })?;
        if !out.contains(&alg) {
            out.push(alg);
        }
    }
    if out.is_empty() {
        out.push(Algorithm::Md5);
    }
    Ok(out)
}

/// The stored secret of a user, as a back end found it.
#[derive(Clone, Copy, Debug)]
pub enum Secret<'a> {
    /// Plain-text password (`calculate_ha1`): HA1 is computed with the credentials'
    /// algorithm.
    Password(&'a [u8]),
    /// A stored HA1 in hex, for the algorithm of the same hex length.
    Ha1(&'a [u8]),
}

/// Credentials that passed the checks that need no password; the back end looks the user
/// up and calls [`AuthEngine::finish`] (or [`AuthEngine::user_unknown`]).
#[derive(Debug)]
pub struct Pending {
    pub credentials: Credentials,
    /// The realm the credentials were searched for.
    pub realm: Vec<u8>,
    pub header: CredHeader,
    header_value: Bytes,
    method: Bytes,
    algorithm: DigestAlgorithm,
    nonce: NonceInfo,
    replay: ReplayCheck,
    source: IpAddr,
}

impl Pending {
    /// The user part of the credentials' user name.
    pub fn user(&self) -> &[u8] {
        self.credentials.user()
    }

    /// The domain the user agent appended to the user name, if any.
    pub fn user_domain(&self) -> Option<&[u8]> {
        self.credentials.user_domain()
    }
}

/// What [`AuthEngine::pre_auth`] decided.
#[derive(Debug)]
pub enum PreAuth {
    /// Finished with this code (1 for ACK/CANCEL/PRACK, which cannot be challenged).
    Done(i32),
    /// Look the user up, then finish.
    Verify(Box<Pending>),
}

type FailureKey = (Vec<u8>, IpAddr);

/// Failed attempts per (user, source address), so that guessing one user's password is
/// visible in the log. Bounded: the oldest entry goes when it is full.
struct FailureLog {
    /// (user name, source) -> (failures, last failure).
    entries: Mutex<HashMap<FailureKey, (u64, Instant)>>,
    len: AtomicUsize,
    capacity: usize,
}

impl FailureLog {
    fn new(capacity: usize) -> FailureLog {
        FailureLog {
            entries: Mutex::new(HashMap::new()),
            len: AtomicUsize::new(0),
            capacity,
        }
    }

    fn failed(&self, user: &[u8], realm: &[u8], source: IpAddr, rc: i32) -> u64 {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let key = (user.to_vec(), source);
        if !map.contains_key(&key) && map.len() >= self.capacity {
            if let Some(oldest) = map.iter().min_by_key(|(_, v)| v.1).map(|(k, _)| k.clone()) {
                map.remove(&oldest);
            }
        }
        let entry = map.entry(key).or_insert((0, Instant::now()));
        entry.0 += 1;
        entry.1 = Instant::now();
        let count = entry.0;
        self.len.store(map.len(), Ordering::Relaxed);
        drop(map);
        // Debug formatting quotes and escapes: the names come from the network.
        tracing::warn!(
            user = ?String::from_utf8_lossy(user),
            realm = ?String::from_utf8_lossy(realm),
            source = %source,
            failures = count,
            reason = if rc == code::USER_UNKNOWN { "unknown user" } else { "wrong password" },
            "digest authentication failed"
        );
        count
    }

    fn succeeded(&self, user: &[u8], source: IpAddr) {
        if self.len.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.remove(&(user.to_vec(), source));
        self.len.store(map.len(), Ordering::Relaxed);
    }

    fn count(&self, user: &[u8], source: IpAddr) -> u64 {
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(user.to_vec(), source)).map_or(0, |e| e.0)
    }
}

/// Flags of the `*_challenge` functions.
pub mod challenge_flag {
    pub const QOP_AUTH: i64 = 1;
    pub const QOP_AUTH_INT: i64 = 2;
    /// Do not answer 500 when the challenge cannot be built.
    pub const NO_ERROR_REPLY: i64 = 4;
    pub const STALE: i64 = 16;
}

/// Flags of the `pv_*` functions.
pub mod pv_flag {
    /// The password argument is an HA1.
    pub const PASSWORD_IS_HA1: i64 = 1;
    /// On failure, build a challenge (no qop / qop=auth / qop=auth-int) into
    /// `challenge_attr`.
    pub const CHALLENGE_NO_QOP: i64 = 2;
    pub const CHALLENGE_AUTH: i64 = 4;
    pub const CHALLENGE_AUTH_INT: i64 = 8;
    pub const CHALLENGE_STALE: i64 = 16;
    /// Keep the nonce usable after a wrong password.
    pub const KEEP_NONCE: i64 = 32;
}

/// Bit of the nonce check mask for `protect_contacts` (above Kamailio's four bits).
const CHECK_CONTACTS: u8 = 16;

/// Size of the failed-attempts table.
const FAILURE_LOG_CAPACITY: usize = 10_000;

/// The engine: configuration, nonce factory and the failed-attempts log.
pub struct AuthEngine {
    pub config: AuthConfig,
    nonces: NonceFactory,
    failures: FailureLog,
    /// Nonces carry their issue time and expire on this clock (the registry's).
    clock: ferrosip_api::Clock,
}

/// What a challenge offers.
#[derive(Clone, Debug, Default)]
pub struct Offer {
    pub qop_auth: bool,
    pub qop_auth_int: bool,
    pub stale: bool,
    /// None: `auth_algorithm()`'s choice for the message, else the `algorithm` parameter.
    pub algorithms: Option<Vec<Algorithm>>,
}

impl AuthEngine {
    pub fn new(config: AuthConfig, nonces: NonceFactory) -> AuthEngine {
        AuthEngine {
            config,
            nonces,
            failures: FailureLog::new(FAILURE_LOG_CAPACITY),
            clock: ferrosip_api::Clock::system(),
        }
    }

    /// Issues and checks nonces on `clock` instead of the system's.
    pub fn with_clock(mut self, clock: ferrosip_api::Clock) -> AuthEngine {
        self.clock = clock;
        self
    }

    /// Seconds since the Unix epoch on the engine's clock.
    pub fn unix_now(&self) -> u64 {
        self.clock.unix_secs()
    }

    /// Failed attempts logged for a user from a source address (tests, diagnostics).
    pub fn failures(&self, user: &[u8], source: IpAddr) -> u64 {
        self.failures.count(user, source)
    }

    /// The realm to use: the argument, or the To (REGISTER credentials) / From host when
    /// it is empty; `realm_prefix` stripped.
    pub fn realm(&self, ctx: &MsgContext, arg: &[u8], header: CredHeader) -> Option<Vec<u8>> {
        let realm: Vec<u8> = if arg.is_empty() {
            let na = match header {
                CredHeader::Authorization => ctx.msg.to(),
                CredHeader::ProxyAuthorization => ctx.msg.from(),
            }
            .ok()?;
            na.uri().host()?.to_vec()
        } else {
            arg.to_vec()
        };
        let prefix = &self.config.realm_prefix;
        if !prefix.is_empty()
            && realm.len() > prefix.len()
            && realm[..prefix.len()].eq_ignore_ascii_case(prefix)
        {
            return Some(realm[prefix.len()..].to_vec());
        }
        Some(realm)
    }

    /// The `auth_checks_*` mask for this message and the parts it selects.
    fn message_checks(&self, ctx: &MsgContext) -> (u8, Vec<u8>) {
        let mut mask = if matches!(ctx.msg.method(), Some(Method::Register)) {
            self.config.checks_register
        } else if ctx.msg.to_tag().is_some() {
            self.config.checks_in_dlg
        } else {
            self.config.checks_no_dlg
        };
        if self.config.protect_contacts {
            mask |= CHECK_CONTACTS;
        }
        let mut parts = Vec::new();
        let mut push = |b: &[u8]| {
            parts.extend_from_slice(&(b.len() as u32).to_be_bytes());
            parts.extend_from_slice(b);
        };
        if mask & 1 != 0 {
            push(ctx.msg.request_uri().unwrap_or_default());
        }
        if mask & 2 != 0 {
            push(ctx.msg.call_id().unwrap_or_default());
        }
        if mask & 4 != 0 {
            push(ctx.msg.from_tag().unwrap_or_default());
        }
        if mask & 8 != 0 {
            push(ctx.net.source.ip().to_string().as_bytes());
        }
        if mask & CHECK_CONTACTS != 0 {
            for contact in ctx.msg.headers_named("Contact") {
                push(contact);
            }
        }
        (mask, parts)
    }

    fn state(ctx: &mut MsgContext) -> &mut AuthMsgState {
        ctx.ext.get_or_insert_with(AuthMsgState::default)
    }

    /// The first credentials in `header` lines whose realm is `realm`.
    fn find_credentials(
        ctx: &MsgContext,
        realm: &[u8],
        header: CredHeader,
    ) -> Result<Option<(Credentials, Bytes)>, CredentialsError> {
        let mut malformed = None;
        for value in ctx.msg.headers_named(header.name()) {
            match parse_credentials(value) {
                Ok(c) if c.realm.eq_ignore_ascii_case(realm) => {
                    return Ok(Some((c, ctx.msg.bytes_of(value))));
                }
                Ok(_) | Err(CredentialsError::NotDigest) => {}
                Err(e) => malformed = Some(e),
            }
        }
        match malformed {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// Everything that needs no password: finds the credentials of `realm` in `header`,
    /// checks their syntax, the nonce (signature, age, message checks) and its replay
    /// state. `method` overrides the request method in the digest. With `record_use`
    /// false the replay state is only checked; [`AuthEngine::finish`] records it on
    /// success.
    pub fn pre_auth(
        &self,
        ctx: &mut MsgContext,
        realm_arg: &[u8],
        header: CredHeader,
        method: Option<&[u8]>,
        record_use: bool,
    ) -> PreAuth {
        // ACK and CANCEL cannot be challenged (no reply / same CSeq as the request they
        // cancel), PRACK neither: Kamailio lets them through.
        if matches!(
            ctx.msg.method(),
            Some(Method::Ack | Method::Cancel | Method::Prack)
        ) {
            return PreAuth::Done(code::OK);
        }
        let Some(realm) = self.realm(ctx, realm_arg, header) else {
            tracing::debug!("no realm: empty realm argument and no From/To host");
            return PreAuth::Done(code::ERROR);
        };
        let (credentials, header_value) = match Self::find_credentials(ctx, &realm, header) {
            Ok(Some(found)) => found,
            Ok(None) => return PreAuth::Done(code::NO_CREDENTIALS),
            Err(e) => {
                tracing::debug!(error = ?e, "malformed credentials");
                return PreAuth::Done(code::ERROR);
            }
        };
        if let Err(e) = credentials.validate() {
            tracing::debug!(error = ?e, "credentials refused");
            return PreAuth::Done(code::ERROR);
        }
        let Ok(algorithm) = credentials.digest_algorithm() else {
            return PreAuth::Done(code::ERROR);
        };
        let nc = credentials.nonce_count();
        let (mask, checked) = self.message_checks(ctx);
        let replay_and_nonce = self
            .nonces
            .verify(&credentials.nonce, self.unix_now())
            .and_then(|info| {
                let check = self.nonces.replay_check(&info, nc);
                // Kamailio: an nc tracked by nonce_count replaces the message checks.
                if !matches!(check, ReplayCheck::NonceCount(_)) {
                    self.nonces
                        .verify_message_checks(&credentials.nonce, mask, &checked)?;
                }
                self.nonces.check_replay(&info, check, record_use)?;
                Ok((info, check))
            });
        let (nonce, replay) = match replay_and_nonce {
            Ok(ok) => ok,
            Err(NonceError::Invalid) => {
                tracing::debug!("invalid nonce");
                return PreAuth::Done(code::ERROR);
            }
            Err(NonceError::Stale) => {
                Self::state(ctx).stale = true;
                return PreAuth::Done(code::STALE_NONCE);
            }
            Err(NonceError::Reused) => return PreAuth::Done(code::NONCE_REUSED),
        };
        let method = match method {
            Some(m) => Bytes::copy_from_slice(m),
            None => ctx
                .msg
                .method_bytes()
                .map(|m| ctx.msg.bytes_of(m))
                .unwrap_or_default(),
        };
        PreAuth::Verify(Box::new(Pending {
            credentials,
            realm,
            header,
            header_value,
            method,
            algorithm,
            nonce,
            replay: if record_use {
                ReplayCheck::None
            } else {
                replay
            },
            source: ctx.net.source.ip(),
        }))
    }

    /// The user was not found: logged as a failed attempt; code -3.
    pub fn user_unknown(&self, pending: &Pending) -> i32 {
        self.failures.failed(
            &pending.credentials.username,
            &pending.realm,
            pending.source,
            code::USER_UNKNOWN,
        );
        code::USER_UNKNOWN
    }

    /// Compares the response with the one computed from the stored secret (in constant
    /// time). On success the credentials are marked authorized (for
    /// `consume_credentials`), an `Authentication-Info` header is queued when configured,
    /// and 1 is returned; otherwise the attempt is logged and -2 returned (the nonce made
    /// unusable unless `keep_nonce`).
    pub fn finish(
        &self,
        ctx: &mut MsgContext,
        pending: &Pending,
        secret: Secret<'_>,
        keep_nonce: bool,
    ) -> i32 {
        let c = &pending.credentials;
        let alg = pending.algorithm;
        let ha1 = match secret {
            Secret::Password(pw) => digest::ha1(alg.hash, &c.username, &pending.realm, pw),
            Secret::Ha1(h) => String::from_utf8_lossy(h.trim_ascii()).to_ascii_lowercase(),
        };
        let qop = c.qop.as_deref().map(|q| {
            (
                q,
                c.nc.as_deref().unwrap_or_default(),
                c.cnonce.as_deref().unwrap_or_default(),
            )
        });
        let input = ResponseInput {
            method: &pending.method,
            uri: &c.uri,
            nonce: &c.nonce,
            qop,
            body: ctx.msg.body(),
        };
        let matched = ha1.len() == alg.hash.hex_len() && {
            let expected = digest::response(alg, &ha1, &input);
            let got = c.response.to_ascii_lowercase();
            constant_time_eq(expected.as_bytes(), &got)
        };
        if !matched {
            if ha1.len() != alg.hash.hex_len() {
                tracing::debug!(
                    algorithm = alg.hash.name(),
                    "stored HA1 does not fit the credentials' algorithm"
                );
            }
            if !keep_nonce {
                self.nonces.invalidate(&pending.nonce);
            }
            self.failures.failed(
                &c.username,
                &pending.realm,
                pending.source,
                code::INVALID_PASSWORD,
            );
            return code::INVALID_PASSWORD;
        }
        if self
            .nonces
            .check_replay(&pending.nonce, pending.replay, true)
            .is_err()
        {
            // Another copy of this request used the nonce meanwhile.
            return code::NONCE_REUSED;
        }
        self.failures.succeeded(&c.username, pending.source);
        if self.config.add_authinfo_hdr {
            self.queue_authentication_info(ctx, pending, &ha1);
        }
        Self::state(ctx).authorized = Some((pending.header, pending.header_value.clone()));
        code::OK
    }

    /// `Authentication-Info` (RFC 7616 §3.5) on the next local reply: the next nonce and
    /// `rspauth`, which proves to the user agent that we know its secret.
    fn queue_authentication_info(&self, ctx: &mut MsgContext, pending: &Pending, ha1: &str) {
        let c = &pending.credentials;
        let (Some(qop), Some(nc), Some(cnonce)) = (&c.qop, &c.nc, &c.cnonce) else {
            return;
        };
        let input = ResponseInput {
            method: b"",
            uri: &c.uri,
            nonce: &c.nonce,
            qop: Some((qop, nc, cnonce)),
            body: ctx.msg.body(),
        };
        let rspauth = digest::response(pending.algorithm, ha1, &input);
        let next = if pending.nonce.flags & 2 != 0 {
            let (mask, checked) = self.message_checks(ctx);
            self.nonces.issue(self.unix_now(), mask, &checked)
        } else {
            String::from_utf8_lossy(&c.nonce).into_owned()
        };
        let mut line = String::from("Authentication-Info: nextnonce=");
        push_quoted(&mut line, &next);
        line.push_str(&format!(
            ", qop={}, rspauth=\"{rspauth}\", cnonce=",
            String::from_utf8_lossy(qop)
        ));
        push_quoted(&mut line, &String::from_utf8_lossy(cnonce));
        line.push_str(&format!(", nc={}\r\n", String::from_utf8_lossy(nc)));
        ctx.ext
            .get_or_insert_with(ReplyHeaders::default)
            .0
            .extend_from_slice(line.as_bytes());
    }

    /// Challenge header lines (each ending in CRLF), one per algorithm.
    pub fn challenge_lines(
        &self,
        ctx: &mut MsgContext,
        realm: &[u8],
        header: CredHeader,
        offer: Offer,
    ) -> String {
        let Offer {
            qop_auth,
            qop_auth_int,
            stale,
            algorithms,
        } = offer;
        let algorithms = algorithms
            .or_else(|| Self::state(ctx).algorithms.clone())
            .unwrap_or_else(|| self.config.algorithms.clone());
        let (mask, checked) = self.message_checks(ctx);
        let nonce = self.nonces.issue(self.unix_now(), mask, &checked);
        let name = match header {
            CredHeader::Authorization => &self.config.www_header,
            CredHeader::ProxyAuthorization => &self.config.proxy_header,
        };
        let qop = match (qop_auth, qop_auth_int) {
            (true, true) => Some("auth,auth-int"),
            (true, false) => Some("auth"),
            (false, true) => Some("auth-int"),
            (false, false) => None,
        };
        let mut out = String::new();
        for alg in algorithms {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(&challenge_value(realm, &nonce, stale, qop, alg));
            out.push_str("\r\n");
        }
        out
    }

    /// `www_challenge` / `proxy_challenge` / `auth_challenge`: sends 401/407 with the
    /// challenge, through the transaction when there is one (unless
    /// `force_stateless_reply`). 1 when sent.
    pub fn challenge(
        &self,
        ctx: &mut MsgContext,
        realm_arg: &[u8],
        flags: i64,
        header: CredHeader,
        algorithms: Option<&[u8]>,
    ) -> FnResult {
        let fail = |ctx: &mut MsgContext, why: String| -> FnResult {
            if flags & challenge_flag::NO_ERROR_REPLY == 0 {
                let _ = self.send_reply(ctx, 500, b"Internal Server Error");
            }
            Err(FnError::new(why))
        };
        let algorithms = match algorithms.map(parse_algorithms).transpose() {
            Ok(a) => a,
            Err(e) => return fail(ctx, e),
        };
        let Some(realm) = self.realm(ctx, realm_arg, header) else {
            return fail(
                ctx,
                "no realm: empty realm argument and no From/To host".to_string(),
            );
        };
        let stale = flags & challenge_flag::STALE != 0 || Self::state(ctx).stale;
        let offer = Offer {
            qop_auth: self.config.qop_auth || flags & challenge_flag::QOP_AUTH != 0,
            qop_auth_int: self.config.qop_auth_int || flags & challenge_flag::QOP_AUTH_INT != 0,
            stale,
            algorithms,
        };
        let lines = self.challenge_lines(ctx, &realm, header, offer);
        ctx.ext
            .get_or_insert_with(ReplyHeaders::default)
            .0
            .extend_from_slice(lines.as_bytes());
        let (code, reason): (u16, &[u8]) = match header {
            CredHeader::Authorization => (401, b"Unauthorized"),
            CredHeader::ProxyAuthorization => (407, b"Proxy Authentication Required"),
        };
        self.send_reply(ctx, code, reason)
    }

    /// A local reply as `send_reply` sends it: through the transaction when the request
    /// has one, else statelessly.
    fn send_reply(&self, ctx: &mut MsgContext, code: u16, reason: &[u8]) -> FnResult {
        let services = ctx.services("auth challenge")?;
        if !self.config.force_stateless_reply {
            if let Some(tm) = services.transactions() {
                if ctx.route == RouteKind::Failure || tm.exists(ctx) {
                    return Ok(Verdict::code(tm.reply(ctx, code, reason)?));
                }
            }
        }
        services.reply(ctx, code, reason)?;
        Ok(Verdict::TRUE)
    }

    /// After a failed `pv_*` check: the challenge the flags ask for, into `challenge_attr`.
    pub fn store_challenge(
        &self,
        ctx: &mut MsgContext,
        realm_arg: &[u8],
        header: CredHeader,
        flags: i64,
    ) {
        use pv_flag::*;
        if flags & (CHALLENGE_NO_QOP | CHALLENGE_AUTH | CHALLENGE_AUTH_INT) == 0 {
            return;
        }
        let (Some(slot), Some(realm)) = (
            self.config.challenge_avp,
            self.realm(ctx, realm_arg, header),
        ) else {
            return;
        };
        let stale = flags & CHALLENGE_STALE != 0 || Self::state(ctx).stale;
        let offer = Offer {
            qop_auth: flags & CHALLENGE_AUTH != 0,
            qop_auth_int: flags & CHALLENGE_AUTH_INT != 0,
            stale,
            algorithms: None,
        };
        let lines = self.challenge_lines(ctx, &realm, header, offer);
        // append_to_reply() adds the CRLF of the last line itself.
        let value = lines.strip_suffix("\r\n").unwrap_or(&lines).to_string();
        ctx.avps
            .replace(slot, ferrosip_api::Value::from_string(value));
    }

    /// `consume_credentials()`: removes the header line that authenticated the request.
    pub fn consume_credentials(ctx: &mut MsgContext) -> i32 {
        let Some((header, value)) = Self::state(ctx).authorized.take() else {
            return code::ERROR;
        };
        let removed = ctx.msg.remove_headers_where(|name, v| {
            name.eq_ignore_ascii_case(header.name().as_bytes()) && v == &value[..]
        });
        if removed > 0 {
            code::OK
        } else {
            code::ERROR
        }
    }

    /// `has_credentials(realm)`: an Authorization or Proxy-Authorization header with
    /// Digest credentials for the realm.
    pub fn has_credentials(ctx: &MsgContext, realm: &[u8]) -> bool {
        [CredHeader::Authorization, CredHeader::ProxyAuthorization]
            .into_iter()
            .any(|h| matches!(Self::find_credentials(ctx, realm, h), Ok(Some(_))))
    }

    /// `auth_algorithm(alg)`: the algorithms of this message's next challenges.
    pub fn set_algorithm(ctx: &mut MsgContext, list: &[u8]) -> i32 {
        match parse_algorithms(list) {
            Ok(a) => {
                Self::state(ctx).algorithms = Some(a);
                code::OK
            }
            Err(e) => {
                tracing::debug!("auth_algorithm: {e}");
                code::ERROR
            }
        }
    }
}

/// The value of one challenge header (RFC 7616 §3.3): `Digest realm="...", nonce="..."`,
/// then `stale`, `qop` and `algorithm` as needed.
fn challenge_value(
    realm: &[u8],
    nonce: &str,
    stale: bool,
    qop: Option<&str>,
    alg: Algorithm,
) -> String {
    let mut v = String::from("Digest realm=");
    push_quoted(&mut v, &String::from_utf8_lossy(realm));
    v.push_str(", nonce=\"");
    v.push_str(nonce);
    v.push('"');
    if stale {
        v.push_str(", stale=true");
    }
    if let Some(q) = qop {
        v.push_str(", qop=\"");
        v.push_str(q);
        v.push('"');
    }
    v.push_str(", algorithm=");
    v.push_str(alg.name());
    v
}

/// `auth_check`'s identity check (flag 1): the authentication user must be the From user
/// (the To user too for REGISTER and PUBLISH, which must also equal the From user, and
/// for PUBLISH the R-URI user). With flag 2, INVITE, BYE, PRACK, UPDATE and MESSAGE skip
/// the user comparison (anonymous caller ids). `use_domain` compares the hosts as well.
pub fn check_identity(ctx: &MsgContext, auth_user: &[u8], flags: i64, use_domain: bool) -> i32 {
    let method = ctx.msg.method();
    let Ok(from) = ctx.msg.from() else {
        return code::ERROR;
    };
    let from = from.uri();
    let register_like = matches!(method, Some(Method::Register | Method::Publish));
    let to = if register_like {
        match ctx.msg.to() {
            Ok(t) => Some(*t.uri()),
            Err(_) => return code::ERROR,
        }
    } else {
        None
    };
    let checked = to.as_ref().unwrap_or(from);
    let skip_user = flags & 2 != 0
        && matches!(
            method,
            Some(Method::Invite | Method::Bye | Method::Prack | Method::Update | Method::Message)
        );
    if !skip_user && checked.user().unwrap_or_default() != auth_user {
        tracing::debug!("authentication user differs from the From/To user");
        return code::USER_MISMATCH;
    }
    if let Some(to) = to {
        if from.user() != to.user() {
            return code::USER_MISMATCH;
        }
        let hosts_differ = |a: Option<&[u8]>, b: Option<&[u8]>| match (a, b) {
            (Some(a), Some(b)) => !a.eq_ignore_ascii_case(b),
            _ => true,
        };
        if use_domain && hosts_differ(from.host(), to.host()) {
            return code::USER_MISMATCH;
        }
        if matches!(method, Some(Method::Publish)) {
            let Some(ruri) = ctx.msg.request_uri_parsed() else {
                return code::ERROR;
            };
            if from.user() != ruri.user() {
                return code::USER_MISMATCH;
            }
            if use_domain && hosts_differ(from.host(), ruri.host()) {
                return code::USER_MISMATCH;
            }
        }
    }
    code::OK
}
