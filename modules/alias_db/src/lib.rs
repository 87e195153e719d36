//! `alias_db`: Alias lookup in a database table: rewrites the R-URI from an alias to the canonical user.

use bytes::Bytes;
use ferrosip_api::args::PvOut;
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
        m.function("alias_db_lookup")
            .args(&["table_name"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Replaces the R-URI with the canonical URI of the alias found in the table; 1 found, -1 otherwise.")
            .declared::<(Bytes,)>();
        m.function("alias_db_lookup")
            .args(&["table_name", "flags"])
            .routes(RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As alias_db_lookup() with flags (\"d\" no domain, \"r\" reverse lookup); 1 found, -1 otherwise.")
            .declared::<(Bytes, Bytes)>();
        m.function("alias_db_find")
            .args(&["table_name", "input", "output"])
            .routes(RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::BRANCH | RouteMask::LOCAL | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Looks up the URI given as input and stores the result in a variable; 1 found, -1 otherwise.")
            .declared::<(Bytes, Bytes, PvOut)>();
        m.function("alias_db_find")
            .args(&["table_name", "input", "output", "flags"])
            .routes(
                RouteMask::FAILURE
                    | RouteMask::ONREPLY
                    | RouteMask::BRANCH
                    | RouteMask::LOCAL
                    | RouteMask::REQUEST
                    | RouteMask::EVENT,
            )
            .doc("As alias_db_find() with flags (\"d\", \"r\"); 1 found, -1 otherwise.")
            .declared::<(Bytes, Bytes, PvOut, Bytes)>();
    }
}
