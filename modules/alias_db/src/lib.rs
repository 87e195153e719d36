//! `alias_db`: Alias lookup in a database table: rewrites the R-URI from an alias to the canonical user.

use bytes::Bytes;
use ferrosip_api::args::PvOut;
use ferrosip_api::registry::FnRow;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask, Value};

/// The `alias_db` module.
pub struct AliasDbModule;

impl Module for AliasDbModule {
    fn name(&self) -> &'static str {
        "alias_db"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Alias lookup in a database table: rewrites the R-URI from an alias to the canonical user.");
        m.param(
            "db_url",
            ParamType::Str,
            "mysql://kamailioro:kamailioro@localhost/kamailio",
            "Database holding the alias tables.",
        );
        m.param(
            "use_domain",
            ParamType::Int,
            0_i64,
            "When 1, the domain is matched as well as the user.",
        );
        m.param(
            "domain_prefix",
            ParamType::Str,
            Value::Null,
            "Prefix stripped from the domain before matching.",
        );
        m.param(
            "append_branches",
            ParamType::Int,
            0_i64,
            "When 1, every match beyond the first is added as a branch.",
        );
        m.param(
            "user_column",
            ParamType::Str,
            "username",
            "Database column holding the canonical user.",
        );
        m.param(
            "domain_column",
            ParamType::Str,
            "domain",
            "Database column holding the canonical domain.",
        );
        m.param(
            "alias_user_column",
            ParamType::Str,
            "alias_username",
            "Database column holding the alias user.",
        );
        m.param(
            "alias_domain_column",
            ParamType::Str,
            "alias_domain",
            "Database column holding the alias domain.",
        );
        const REQ_FAIL_EVENT: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::EVENT);
        const REQ_FAIL_BRANCH_REPLY_EVENT_LOCAL: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::BRANCH)
            .union(RouteMask::ONREPLY)
            .union(RouteMask::EVENT)
            .union(RouteMask::LOCAL);
        #[rustfmt::skip]
        m.functions([
            FnRow::declared::<(Bytes,)>("alias_db_lookup", &["table_name"], REQ_FAIL_EVENT, "Replaces the R-URI with the canonical URI of the alias found in the table; 1 found, -1 otherwise."),
            FnRow::declared::<(Bytes, Bytes)>("alias_db_lookup", &["table_name", "flags"], REQ_FAIL_EVENT, "As alias_db_lookup() with flags (\"d\" no domain, \"r\" reverse lookup); 1 found, -1 otherwise."),
            FnRow::declared::<(Bytes, Bytes, PvOut)>("alias_db_find", &["table_name", "input", "output"], REQ_FAIL_BRANCH_REPLY_EVENT_LOCAL, "Looks up the URI given as input and stores the result in a variable; 1 found, -1 otherwise."),
            FnRow::declared::<(Bytes, Bytes, PvOut, Bytes)>("alias_db_find", &["table_name", "input", "output", "flags"], REQ_FAIL_BRANCH_REPLY_EVENT_LOCAL, "As alias_db_find() with flags (\"d\", \"r\"); 1 found, -1 otherwise."),
        ]);
    }
}
