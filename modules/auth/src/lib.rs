//! `auth`: Digest authentication framework (RFC 3261 §22, RFC 7616, RFC 8760): challenges,
//! signed nonces with replay protection, credential checks against passwords in variables.
//!
//! Credential back ends (`auth_db`) use the same engine through [`AuthHandle`], which this
//! module provides to them through the registry (`m.uses::<AuthHandle>()`): they call
//! [`AuthEngine::pre_auth`], look the user up, then [`AuthEngine::finish`].

pub mod digest;
pub mod engine;
pub mod nonce;

#[cfg(test)]
mod tests;

pub use engine::{
    check_identity, code, AuthConfig, AuthEngine, CredHeader, Offer, Pending, PreAuth, Secret,
};

use bytes::Bytes;
use engine::pv_flag;
use ferrosip_api::args::PvOut;
use ferrosip_api::pv::SetOp;
use ferrosip_api::{FnError, FnResult, ModuleParams, MsgContext, StateSlot, Value, Verdict};
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask};
use nonce::{round_down_pow2, NonceFactory, NonceSettings};
use sha2::{Digest as _, Sha256};
use std::sync::Arc;

/// The engine of a loaded `auth` module (its state, built from its parameters by init),
/// shared with the back-end modules that need it through the registry
/// (`m.uses::<AuthHandle>()`). Empty until a script loading `auth` is loaded.
#[derive(Clone)]
pub struct AuthHandle(StateSlot<AuthEngine>);

impl AuthHandle {
    /// The engine, once `auth` is loaded.
    pub fn get(&self) -> Option<Arc<AuthEngine>> {
        self.0.get().ok()
    }

    /// The engine, or the error a function reports when `auth` is not loaded.
    pub fn engine(&self) -> Result<Arc<AuthEngine>, FnError> {
        self.get()
            .ok_or_else(|| FnError::new("the auth module is not loaded (loadmodule \"auth.so\")"))
    }
}

/// The `auth` module. Back ends (and tests) get its [`AuthHandle`] through the registry.
#[derive(Default)]
pub struct AuthModule;

impl AuthModule {
    pub fn new() -> AuthModule {
        AuthModule
    }
}

/// Builds the engine from the module parameters.
fn build_engine(p: &ModuleParams, avp_slot: &engine::AvpSlot) -> Result<AuthEngine, String> {
    let config = AuthConfig::from_params(p, avp_slot)?;
    let secret = p.string("secret");
    let key: [u8; 32] = if secret.is_empty() {
        rand::random()
    } else {
        Sha256::digest(secret.as_bytes()).into()
    };
    let positive = |name: &str| -> Result<u64, String> {
        let v = p.int(name);
        u64::try_from(v).map_err(|_| format!("{name}: {v} is negative"))
    };
    let slots = |enabled: &str, size: &str, order: &str| -> Result<usize, String> {
        if p.int(enabled) == 0 {
            return Ok(0);
        }
        let n = if p.is_set(order) {
            let o = p.int(order);
            if !(1..=30).contains(&o) {
                return Err(format!("{order}: {o} is not in 1..30"));
            }
            1usize << o
        } else {
            round_down_pow2(positive(size)?.min(1 << 30) as usize)
        };
        if n == 0 {
            return Err(format!("{size}: 0 nonces cannot be tracked"));
        }
        Ok(n)
    };
    let settings = NonceSettings {
        key,
        expire: positive("nonce_expire")?,
        max_drift: positive("nonce_auth_max_drift")?,
        nc_slots: slots("nonce_count", "nc_array_size", "nc_array_order")?,
        otn_slots: slots("one_time_nonce", "otn_in_flight_no", "otn_in_flight_order")?,
        pools: round_down_pow2(positive("nid_pool_no")?.clamp(1, 64) as usize),
    };
    Ok(AuthEngine::new(config, NonceFactory::new(&settings)))
}

/// `pv_*_authenticate`: checks the credentials against a password (or HA1) given by the
/// script. Returns the code and, on success, the authentication user.
fn pv_authenticate(
    engine: &AuthEngine,
    ctx: &mut MsgContext,
    realm: &[u8],
    password: &[u8],
    flags: i64,
    header: CredHeader,
    method: Option<&[u8]>,
) -> (i32, Option<Vec<u8>>) {
    let keep_nonce = flags & pv_flag::KEEP_NONCE != 0;
    let (rc, user) = match engine.pre_auth(ctx, realm, header, method, !keep_nonce) {
        PreAuth::Done(rc) => (rc, None),
        PreAuth::Verify(pending) => {
            let secret = if flags & pv_flag::PASSWORD_IS_HA1 != 0 {
                Secret::Ha1(password)
            } else {
                Secret::Password(password)
            };
            let rc = engine.finish(ctx, &pending, secret, keep_nonce);
            (rc, Some(pending.user().to_vec()))
        }
    };
    if rc < 0 {
        engine.store_challenge(ctx, realm, header, flags);
    }
    (rc, user)
}

fn verdict(rc: i32) -> FnResult {
    Ok(Verdict::code(rc))
}

impl Module for AuthModule {
    fn name(&self) -> &'static str {
        "auth"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.example(include_str!("../example.cfg"));
        m.doc("Digest authentication framework (RFC 3261 §22, RFC 7616, RFC 8760): challenges, signed nonces with replay protection, credential checks against passwords in variables.\n\nSends 401/407 challenges, issues self-contained nonces signed with HMAC-SHA256 (issue time inside, so expiry needs no state; optional replay protection by nonce count or one-time use in fixed-size arrays), checks credentials in MD5, SHA-256 or SHA-512-256 with qop auth/auth-int, compares responses in constant time, and logs repeated failures per user and source address (warning with the running count). Password back ends: variables here (pv_*), a database table in auth_db.\n\nReturn codes of the checking functions (Kamailio's): 1 authenticated, -1 error (malformed credentials, invalid nonce), -2 wrong password, -3 unknown user, -4 stale nonce (expired: challenge again, the challenge then says stale=true), -5 no credentials for the realm, -6 nonce reused (replay), -8 authentication user differs from From/To. ACK, CANCEL and PRACK are never challenged and return 1.");
        m.param(
            "secret",
            ParamType::Str,
            Value::Null,
            "Secret the nonces are signed with (HMAC-SHA256 keyed by its SHA-256). Default: random at each start, so nonces die with a restart; set the same secret on every node of a cluster that shares clients.",
        );
        m.param(
            "nonce_expire",
            ParamType::Int,
            300_i64,
            "Seconds a nonce stays valid; an older one gets -4 and a new challenge with stale=true.",
        );
        m.param(
            "nonce_auth_max_drift",
            ParamType::Int,
            3_i64,
            "Seconds a nonce's issue time may lie in the future (clock differences in a cluster) before it counts as stale.",
        );
        m.param("protect_contacts", ParamType::Int, 0_i64, "When 1, the Contact header values are signed into the nonce with the auth_checks_* parts: credentials cannot be replayed for other contacts (a changed Contact makes the nonce stale).");
        m.param(
            "challenge_attr",
            ParamType::Str,
            "$digest_challenge",
            "AVP receiving the challenge header that pv_*_authenticate() build on failure when their flags ask for one (2, 4, 8), ready for append_to_reply().",
        );
        m.param(
            "proxy_challenge_header",
            ParamType::Str,
            "Proxy-Authenticate",
            "Header name of proxy challenges (407).",
        );
        m.param(
            "www_challenge_header",
            ParamType::Str,
            "WWW-Authenticate",
            "Header name of WWW challenges (401).",
        );
        m.param("qop", ParamType::Str, "", "qop offered in every challenge besides what the flags ask: \"auth\", \"auth-int\", both comma-separated, or empty (only the flags decide).");
        m.param("auth_checks_register", ParamType::Int, 0_i64, "Message parts signed into REGISTER nonces; a nonce used with other values is stale. Bit mask: 1 R-URI, 2 Call-ID, 4 From tag, 8 source IP.");
        m.param(
            "auth_checks_no_dlg",
            ParamType::Int,
            0_i64,
            "As auth_checks_register, for requests outside a dialog (no To tag).",
        );
        m.param(
            "auth_checks_in_dlg",
            ParamType::Int,
            0_i64,
            "As auth_checks_register, for requests inside a dialog (To tag).",
        );
        m.param(
            "nonce_count",
            ParamType::Int,
            0_i64,
            "When 1, the nc of qop credentials must grow with each use of a nonce (up to 255): a replayed request gets -6. Nonces are tracked in nc_array_size slots (1 byte each); use qop and stateful replies (t_newtran) with it, since a retransmission counts as a replay.",
        );
        m.param(
            "nc_array_size",
            ParamType::Int,
            1048576_i64,
            "In-flight nonces tracked for nonce_count (rounded down to a power of two); older ones count as stale.",
        );
        m.param(
            "nc_array_order",
            ParamType::Int,
            20_i64,
            "nc_array_size as a power of two (when set, it wins).",
        );
        m.param(
            "one_time_nonce",
            ParamType::Int,
            0_i64,
            "When 1, each nonce authenticates one request only (a second use gets -6); used for credentials without nc when nonce_count is on too. Tracked in otn_in_flight_no slots (1 bit each).",
        );
        m.param(
            "otn_in_flight_no",
            ParamType::Int,
            1048576_i64,
            "In-flight nonces tracked for one_time_nonce (rounded down to a power of two); older ones count as stale.",
        );
        m.param(
            "otn_in_flight_order",
            ParamType::Int,
            20_i64,
            "otn_in_flight_no as a power of two (when set, it wins).",
        );
        m.param(
            "nid_pool_no",
            ParamType::Int,
            1_i64,
            "Partitions of the nonce tracking arrays (power of two, at most 64); workers issue from different partitions so they do not share one counter.",
        );
        m.param(
            "force_stateless_reply",
            ParamType::Int,
            0_i64,
            "When 1, challenges are sent statelessly even when the request has a transaction.",
        );
        m.param(
            "realm_prefix",
            ParamType::Str,
            "",
            "Prefix stripped from realms (\"sip.\": sip.example.com authenticates as example.com).",
        );
        m.param("use_domain", ParamType::Int, 0_i64, "When 1, pv_auth_check() compares the domains of the checked URIs as well as the users.");
        m.param("algorithm", ParamType::Str, "", "Digest algorithms offered in challenges, comma-separated in order of preference, one challenge header each (RFC 8760): \"MD5\" (default), \"SHA-256\", \"SHA-512-256\". A stored HA1 only works for the algorithm it was computed with; plain-text passwords work with any.");
        m.param(
            "add_authinfo_hdr",
            ParamType::Int,
            0_i64,
            "When 1, a successful qop authentication queues an Authentication-Info header (nextnonce, rspauth, cnonce, nc) for the next local reply, so the user agent can check the server too.",
        );

        let avps = m.registry().avp_names();
        let clock = m.clock();
        let handle = AuthHandle(m.state(move |p| {
            let avps = avps.clone();
            Ok(build_engine(p, &move |n: &str| avps.slot(n))?.with_clock(clock.clone()))
        }));
        m.provide(Arc::new(handle.clone()));

        m.function("consume_credentials")
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Removes the credentials header that authenticated the request, so they do not travel downstream; 1 when removed, -1 when the request was not authenticated here.")
            .handler(|ctx: &mut MsgContext| verdict(AuthEngine::consume_credentials(ctx)));

        let challenge_routes =
            RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT;
        type Pick = fn(&MsgContext) -> CredHeader;
        let kinds: [(&'static str, &'static str, &'static str, Pick); 3] = [
            (
                "www_challenge",
                "Sends 401 Unauthorized with a WWW-Authenticate challenge per configured algorithm (realm empty: the To host). Flags: 1 qop=auth, 2 qop=auth-int, 4 no automatic 500 reply when the challenge cannot be built, 16 stale=true (also set by itself after a stale nonce). Through the transaction when there is one (see force_stateless_reply). 1 when sent, -1 on failure.",
                "As www_challenge(realm, flags), offering the listed algorithms (\"SHA-256,MD5\") instead of the algorithm parameter; 1 when sent, -1 on failure.",
                |_| CredHeader::Authorization,
            ),
            (
                "proxy_challenge",
                "Sends 407 Proxy Authentication Required with a Proxy-Authenticate challenge per configured algorithm (realm empty: the From host); flags as www_challenge(). 1 when sent, -1 on failure.",
                "As proxy_challenge(realm, flags), offering the listed algorithms; 1 when sent, -1 on failure.",
                |_| CredHeader::ProxyAuthorization,
            ),
            (
                "auth_challenge",
                "www_challenge() for REGISTER, proxy_challenge() for other requests; flags as www_challenge(). 1 when sent, -1 on failure.",
                "As auth_challenge(realm, flags), offering the listed algorithms; 1 when sent, -1 on failure.",
                CredHeader::for_request,
            ),
        ];
        for (name, doc2, doc3, pick) in kinds {
            let h = handle.clone();
            m.function(name)
                .args(&["realm", "flags"])
                .routes(challenge_routes)
                .doc(doc2)
                .handler(move |ctx: &mut MsgContext, realm: Bytes, flags: i64| {
                    let header = pick(ctx);
                    h.engine()?.challenge(ctx, &realm, flags, header, None)
                });
            let h = handle.clone();
            m.function(name)
                .args(&["realm", "flags", "algorithms"])
                .routes(challenge_routes)
                .doc(doc3)
                .handler(
                    move |ctx: &mut MsgContext, realm: Bytes, flags: i64, algs: Bytes| {
                        let header = pick(ctx);
                        h.engine()?
                            .challenge(ctx, &realm, flags, header, Some(&algs))
                    },
                );
        }

        const PV_DOC: &str = "Checks the Authorization credentials for the realm (empty: the To host) against the password argument; flags: 1 the password is an HA1, 2/4/8 on failure build a challenge with no qop / qop=auth / qop=auth-int into challenge_attr, 16 that challenge says stale=true, 32 a wrong password does not use up the nonce. 1 authenticated, -1 error, -2 wrong password, -4 stale nonce, -5 no credentials, -6 nonce reused.";
        for name in ["pv_www_authenticate", "pv_www_authorize"] {
            let h = handle.clone();
            m.function(name)
                .args(&["realm", "passwd", "flags"])
                .routes(RouteMask::REQUEST | RouteMask::EVENT)
                .doc(if name == "pv_www_authorize" {
                    "Alias of pv_www_authenticate(realm, passwd, flags); same flags and return codes."
                } else {
                    PV_DOC
                })
                .handler(
                    move |ctx: &mut MsgContext, realm: Bytes, pw: Bytes, flags: i64| {
                        let e = h.engine()?;
                        let header = CredHeader::Authorization;
                        verdict(pv_authenticate(&e, ctx, &realm, &pw, flags, header, None).0)
                    },
                );
        }
        let h = handle.clone();
        m.function("pv_www_authenticate")
            .args(&["realm", "passwd", "flags", "method"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As pv_www_authenticate(realm, passwd, flags) with the given method in the digest instead of the request's; same return codes.")
            .handler(
                move |ctx: &mut MsgContext, realm: Bytes, pw: Bytes, flags: i64, method: Bytes| {
                    let e = h.engine()?;
                    let header = CredHeader::Authorization;
                    verdict(pv_authenticate(&e, ctx, &realm, &pw, flags, header, Some(&method)).0)
                },
            );
        for name in ["pv_proxy_authenticate", "pv_proxy_authorize"] {
            let h = handle.clone();
            m.function(name)
                .args(&["realm", "passwd", "flags"])
                .routes(RouteMask::REQUEST | RouteMask::EVENT)
                .doc(if name == "pv_proxy_authorize" {
                    "Alias of pv_proxy_authenticate(realm, passwd, flags); same flags and return codes."
                } else {
                    "As pv_www_authenticate() with the Proxy-Authorization credentials (realm empty: the From host); same flags and return codes."
                })
                .handler(
                    move |ctx: &mut MsgContext, realm: Bytes, pw: Bytes, flags: i64| {
                        let e = h.engine()?;
                        let header = CredHeader::ProxyAuthorization;
                        verdict(pv_authenticate(&e, ctx, &realm, &pw, flags, header, None).0)
                    },
                );
        }
        let h = handle.clone();
        m.function("pv_auth_check")
            .args(&["realm", "passwd", "flags", "checks"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("pv_www_authenticate() for REGISTER, pv_proxy_authenticate() otherwise; checks bit 1: the authentication user must be the To user (REGISTER, PUBLISH; From and To users equal) or the From user (others), bit 2 with it: INVITE, BYE, PRACK, UPDATE, MESSAGE skip that comparison. Codes as pv_www_authenticate(), plus -8 when the users differ.")
            .handler(
                move |ctx: &mut MsgContext, realm: Bytes, pw: Bytes, flags: i64, checks: i64| {
                    let e = h.engine()?;
                    let header = CredHeader::for_request(ctx);
                    let (rc, user) = pv_authenticate(&e, ctx, &realm, &pw, flags, header, None);
                    match user {
                        Some(user) if rc == code::OK && checks & 1 != 0 => {
                            verdict(check_identity(ctx, &user, checks, e.config.use_domain))
                        }
                        _ => verdict(rc),
                    }
                },
            );
        let h = handle.clone();
        m.function("auth_get_www_authenticate")
            .args(&["realm", "flags", "pvdest"])
            .routes(RouteMask::ANY)
            .doc("Builds a WWW-Authenticate value (realm empty: the To host; flags as pv_www_authenticate(): 4 qop=auth, 8 qop=auth-int, 16 stale=true) with a fresh nonce into the variable, without replying; 1 on success, -1 on failure.")
            .handler(
                move |ctx: &mut MsgContext, realm: Bytes, flags: i64, dest: PvOut| {
                    let e = h.engine()?;
                    let header = CredHeader::Authorization;
                    let Some(realm) = e.realm(ctx, &realm, header) else {
                        return Ok(Verdict::FALSE);
                    };
                    let offer = Offer {
                        qop_auth: flags & pv_flag::CHALLENGE_AUTH != 0,
                        qop_auth_int: flags & pv_flag::CHALLENGE_AUTH_INT != 0,
                        stale: flags & pv_flag::CHALLENGE_STALE != 0,
                        algorithms: None,
                    };
                    let lines = e.challenge_lines(ctx, &realm, header, offer);
                    let first = lines.split("\r\n").next().unwrap_or_default();
                    let value = first.split_once(": ").map_or(first, |(_, v)| v);
                    dest.0
                        .set(ctx, SetOp::Assign, Value::from_string(value.to_string()))
                        .map_err(|e| FnError::new(e.to_string()))?;
                    Ok(Verdict::TRUE)
                },
            );
        m.function("has_credentials")
            .args(&["realm"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("1 when the request has Digest credentials (Authorization or Proxy-Authorization) for the realm, -1 otherwise.")
            .handler(|ctx: &mut MsgContext, realm: Bytes| {
                Ok(AuthEngine::has_credentials(ctx, &realm).into())
            });
        m.function("auth_algorithm")
            .args(&["algorithm"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sets the digest algorithms (\"SHA-256\", or a list in order of preference) of the following challenges for this message; 1 on success, -1 on an unknown algorithm.")
            .handler(|ctx: &mut MsgContext, alg: Bytes| verdict(AuthEngine::set_algorithm(ctx, &alg)));
    }
}
