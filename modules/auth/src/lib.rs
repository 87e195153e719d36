//! `auth`: Digest authentication framework (RFC 2617/7616): challenges, nonce handling, credential checks against variables.

use bytes::Bytes;
use ferrosip_api::args::PvOut;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask, Value};

/// The `auth` module.
pub struct AuthModule;

impl Module for AuthModule {
    fn name(&self) -> &'static str {
        "auth"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Digest authentication framework (RFC 2617/7616): challenges, nonce handling, credential checks against variables.");
        m.param(
            "secret",
            ParamType::Str,
            Value::Null,
            "Secret used to sign nonces (default: random per start; set it in a cluster).",
        );
        m.param(
            "nonce_expire",
            ParamType::Int,
            300_i64,
            "Seconds a nonce stays valid.",
        );
        m.param(
            "nonce_auth_max_drift",
            ParamType::Int,
            3_i64,
            "Maximum seconds a nonce timestamp may be in the future (clock drift in clusters).",
        );
        m.param("protect_contacts", ParamType::Int, 0_i64, "When 1, the Contact URIs are included in the nonce so credentials cannot be replayed for other contacts.");
        m.param(
            "challenge_attr",
            ParamType::Str,
            "$digest_challenge",
            "AVP receiving the challenge header built by the *_challenge() functions.",
        );
        m.param(
            "proxy_challenge_header",
            ParamType::Str,
            "Proxy-Authenticate",
            "Header name used for proxy challenges.",
        );
        m.param(
            "www_challenge_header",
            ParamType::Str,
            "WWW-Authenticate",
            "Header name used for WWW challenges.",
        );
        m.param("qop", ParamType::Str, "", "Quality of protection offered in challenges (\"auth\", \"auth-int\", or both comma-separated; empty: none).");
        m.param("auth_checks_register", ParamType::Int, 0_i64, "Bit mask of extra nonce checks for REGISTER (1 R-URI, 2 Call-ID, 4 From tag, 8 source IP).");
        m.param(
            "auth_checks_no_dlg",
            ParamType::Int,
            0_i64,
            "Bit mask of extra nonce checks for out-of-dialog requests.",
        );
        m.param(
            "auth_checks_in_dlg",
            ParamType::Int,
            0_i64,
            "Bit mask of extra nonce checks for in-dialog requests.",
        );
        m.param(
            "nonce_count",
            ParamType::Int,
            0_i64,
            "When 1, checks the nc value of qop replies to stop replays.",
        );
        m.param(
            "nc_array_size",
            ParamType::Int,
            1048576_i64,
            "Number of in-flight nonces tracked for nonce_count.",
        );
        m.param(
            "nc_array_order",
            ParamType::Int,
            20_i64,
            "Power of two form of nc_array_size.",
        );
        m.param(
            "one_time_nonce",
            ParamType::Int,
            0_i64,
            "When 1, each nonce may be used once only.",
        );
        m.param(
            "otn_in_flight_no",
            ParamType::Int,
            1048576_i64,
            "Number of in-flight nonces tracked for one_time_nonce.",
        );
        m.param(
            "otn_in_flight_order",
            ParamType::Int,
            20_i64,
            "Power of two form of otn_in_flight_no.",
        );
        m.param(
            "nid_pool_no",
            ParamType::Int,
            1_i64,
            "Number of nonce id pools (more pools reduce contention).",
        );
        m.param(
            "force_stateless_reply",
            ParamType::Int,
            0_i64,
            "When 1, challenges are sent statelessly even if a transaction exists.",
        );
        m.param(
            "realm_prefix",
            ParamType::Str,
            "",
            "Prefix stripped from the domain to build the realm.",
        );
        m.param("use_domain", ParamType::Int, 0_i64, "When 1, the domain is compared as well as the user in has_credentials()/is_user checks.");
        m.param("algorithm", ParamType::Str, "", "Digest algorithm offered in challenges (\"MD5\" default, \"SHA-256\", \"SHA-512-256\").");
        m.param(
            "add_authinfo_hdr",
            ParamType::Int,
            0_i64,
            "When 1, adds an Authentication-Info header after successful authentication.",
        );
        m.function("consume_credentials")
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Removes the credentials used for authentication from the request before forwarding; 1 on success, -1 when none.")
            .declared::<()>();
        m.function("www_challenge")
            .args(&["realm", "flags"])
            .routes(RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sends a 401 with a WWW-Authenticate challenge (flags: 1 qop auth, 2 qop auth-int, 4/16 options); 1 when the reply was sent, negative on failure.")
            .declared::<(Bytes, i64)>();
        m.function("www_challenge")
            .args(&["realm", "flags", "algorithms"])
            .routes(RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As www_challenge() offering the listed digest algorithms; 1 when sent, negative on failure.")
            .declared::<(Bytes, i64, Bytes)>();
        m.function("proxy_challenge")
            .args(&["realm", "flags"])
            .routes(RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sends a 407 with a Proxy-Authenticate challenge; 1 when the reply was sent, negative on failure.")
            .declared::<(Bytes, i64)>();
        m.function("proxy_challenge")
            .args(&["realm", "flags", "algorithms"])
            .routes(RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As proxy_challenge() offering the listed digest algorithms; 1 when sent, negative on failure.")
            .declared::<(Bytes, i64, Bytes)>();
        m.function("auth_challenge")
            .args(&["realm", "flags"])
            .routes(RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sends 401 for REGISTER and 407 for other requests; 1 when sent, negative on failure.")
            .declared::<(Bytes, i64)>();
        m.function("auth_challenge")
            .args(&["realm", "flags", "algorithms"])
            .routes(RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As auth_challenge() offering the listed digest algorithms; 1 when sent, negative on failure.")
            .declared::<(Bytes, i64, Bytes)>();
        m.function("pv_www_authorize")
            .args(&["realm", "passwd", "flags"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Alias of pv_www_authenticate(); same return codes.")
            .declared::<(Bytes, Bytes, i64)>();
        m.function("pv_www_authenticate")
            .args(&["realm", "passwd", "flags"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Checks Authorization credentials against a password (or HA1 when flags bit 1); 1 success, -1 generic error, -2 invalid password, -3 invalid user, -4 nonce expired, -5 no credentials, -6 nonce reused, -7 auth user mismatch, -8 algorithm mismatch.")
            .declared::<(Bytes, Bytes, i64)>();
        m.function("pv_www_authenticate")
            .args(&["realm", "passwd", "flags", "method"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc(
                "As pv_www_authenticate() using the given method in the digest; same return codes.",
            )
            .declared::<(Bytes, Bytes, i64, Bytes)>();
        m.function("pv_proxy_authorize")
            .args(&["realm", "passwd", "flags"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Alias of pv_proxy_authenticate(); same return codes.")
            .declared::<(Bytes, Bytes, i64)>();
        m.function("pv_proxy_authenticate")
            .args(&["realm", "passwd", "flags"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Checks Proxy-Authorization credentials against a password or HA1; return codes as pv_www_authenticate().")
            .declared::<(Bytes, Bytes, i64)>();
        m.function("auth_get_www_authenticate")
            .args(&["realm", "flags", "pvdest"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Builds a WWW-Authenticate header value into a variable without replying; 1 on success, -1 on failure.")
            .declared::<(Bytes, i64, PvOut)>();
        m.function("has_credentials")
            .args(&["realm"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("True (1) when the request carries credentials for the realm; -1 otherwise.")
            .declared::<(Bytes,)>();
        m.function("pv_auth_check")
            .args(&["realm", "passwd", "flags", "checks"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Authenticates with the right header for the method and checks From/To user against the auth user (checks bit 1); codes as pv_www_authenticate().")
            .declared::<(Bytes, Bytes, i64, i64)>();
        m.function("auth_algorithm")
            .args(&["algorithm"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sets the digest algorithm for the following challenges of this message; 1 on success, -1 on an unknown algorithm.")
            .declared::<(Bytes,)>();
    }
}
