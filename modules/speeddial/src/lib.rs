//! `speeddial`: Per-user speed dial: rewrites a short R-URI user to the number stored in a database table.

use bytes::Bytes;
use ferrosip_api::registry::FnRow;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask, Value};

/// The `speeddial` module.
pub struct SpeeddialModule;

impl Module for SpeeddialModule {
    fn name(&self) -> &'static str {
        "speeddial"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Per-user speed dial: rewrites a short R-URI user to the number stored in a database table.");
        m.param(
            "db_url",
            ParamType::Str,
            "mysql://kamailioro:kamailioro@localhost/kamailio",
            "Database holding the speed-dial table.",
        );
        m.param(
            "use_domain",
            ParamType::Int,
            0_i64,
            "When 1, the domain of the owner is matched as well.",
        );
        m.param(
            "domain_prefix",
            ParamType::Str,
            Value::Null,
            "Prefix stripped from the domain before matching.",
        );
        m.param(
            "user_column",
            ParamType::Str,
            "username",
            "Database column holding the owner user.",
        );
        m.param(
            "domain_column",
            ParamType::Str,
            "domain",
            "Database column holding the owner domain.",
        );
        m.param(
            "sd_user_column",
            ParamType::Str,
            "sd_username",
            "Database column holding the short number.",
        );
        m.param(
            "sd_domain_column",
            ParamType::Str,
            "sd_domain",
            "Database column holding the short number domain.",
        );
        m.param(
            "new_uri_column",
            ParamType::Str,
            "new_uri",
            "Database column holding the target URI.",
        );
        const REQ_EVENT: RouteMask = RouteMask::REQUEST.union(RouteMask::EVENT);
        #[rustfmt::skip]
        m.functions([
            FnRow::declared::<(Bytes,)>("sd_lookup", &["table"], REQ_EVENT, "Replaces the R-URI with the entry of the From user for the R-URI user; 1 found, -1 otherwise."),
            FnRow::declared::<(Bytes, Bytes)>("sd_lookup", &["table", "owner"], REQ_EVENT, "As sd_lookup() with the owner given as a URI; 1 found, -1 otherwise."),
        ]);
    }
}
