//! `auth_db`: Digest authentication with credentials from a database table (subscriber).

use bytes::Bytes;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask};

/// The `auth_db` module.
pub struct AuthDbModule;

impl Module for AuthDbModule {
    fn name(&self) -> &'static str {
        "auth_db"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Digest authentication with credentials from a database table (subscriber).");
        m.param(
            "db_url",
            ParamType::Str,
            "mysql://kamailioro:kamailioro@localhost/kamailio",
            "Database holding the credentials.",
        );
        m.param(
            "user_column",
            ParamType::Str,
            "username",
            "Database column holding the user name.",
        );
        m.param(
            "domain_column",
            ParamType::Str,
            "domain",
            "Database column holding the domain (realm).",
        );
        m.param(
            "password_column",
            ParamType::Str,
            "ha1",
            "Database column holding the password or HA1 hash.",
        );
        m.param("password_column_2", ParamType::Str, "ha1b", "Database column holding the HA1 of user@domain used when the user name includes the domain.");
        m.param(
            "calculate_ha1",
            ParamType::Int,
            0_i64,
            "When 1, password_column holds plain-text passwords and HA1 is computed.",
        );
        m.param(
            "use_domain",
            ParamType::Int,
            0_i64,
            "When 1, the domain is also used to look up credentials.",
        );
        m.param("load_credentials", ParamType::Str, "rpid", "Columns loaded into AVPs after successful authentication (\"col\" or \"avp=col\", \";\"-separated).");
        m.param(
            "version_table",
            ParamType::Int,
            1_i64,
            "When 1, the table version is checked at startup.",
        );
        m.param(
            "force_generate_avps",
            ParamType::Int,
            0_i64,
            "When 1, credentials AVPs are loaded even when authentication fails.",
        );
        m.function("www_authorize")
            .args(&["realm", "table"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Alias of www_authenticate(); same return codes.")
            .declared::<(Bytes, Bytes)>();
        m.function("www_authenticate")
            .args(&["realm", "table"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Checks Authorization credentials against the table; 1 success, -1 generic error, -2 invalid password, -3 invalid user, -4 nonce expired, -5 no credentials, -6 nonce reused, -7 auth user mismatch, -8 algorithm mismatch.")
            .declared::<(Bytes, Bytes)>();
        m.function("www_authenticate")
            .args(&["realm", "table", "method"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As www_authenticate() using the given method in the digest; same return codes.")
            .declared::<(Bytes, Bytes, Bytes)>();
        m.function("proxy_authorize")
            .args(&["realm", "table"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Alias of proxy_authenticate(); same return codes.")
            .declared::<(Bytes, Bytes)>();
        m.function("proxy_authenticate")
            .args(&["realm", "table"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Checks Proxy-Authorization credentials against the table; codes as www_authenticate().")
            .declared::<(Bytes, Bytes)>();
        m.function("auth_check")
            .args(&["realm", "table", "flags"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Authenticates with the header suited to the method; flags bit 1 checks From/To user against the auth user, bit 2 skips it for in-dialog requests; codes as www_authenticate().")
            .declared::<(Bytes, Bytes, i64)>();
        m.function("is_subscriber")
            .args(&["uri", "dbtable", "flags"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the user of the URI exists in the table; flags bit 1 loads credential AVPs; -1 otherwise.")
            .declared::<(Bytes, Bytes, i64)>();
    }
}
