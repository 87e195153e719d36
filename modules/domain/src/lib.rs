//! `domain`: Local domain list from the database (multi-domain support), also usable by "myself" checks.

use bytes::Bytes;
use ferrosip_api::registry::FnRow;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask};

/// The `domain` module.
pub struct DomainModule;

impl Module for DomainModule {
    fn name(&self) -> &'static str {
        "domain"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Local domain list from the database (multi-domain support), also usable by \"myself\" checks.");
        m.param(
            "db_url",
            ParamType::Str,
            "mysql://kamailioro:kamailioro@localhost/kamailio",
            "Database holding the domain tables.",
        );
        m.param(
            "domain_table",
            ParamType::Str,
            "domain",
            "Table of local domains.",
        );
        m.param(
            "domain_attrs_table",
            ParamType::Str,
            "domain_attrs",
            "Table of domain attributes.",
        );
        m.param(
            "did_col",
            ParamType::Str,
            "did",
            "Database column holding the domain id.",
        );
        m.param(
            "domain_col",
            ParamType::Str,
            "domain",
            "Database column holding the domain name.",
        );
        m.param(
            "name_col",
            ParamType::Str,
            "name",
            "Database column holding the attribute name.",
        );
        m.param(
            "type_col",
            ParamType::Str,
            "type",
            "Database column holding the attribute type.",
        );
        m.param(
            "value_col",
            ParamType::Str,
            "value",
            "Database column holding the attribute value.",
        );
        m.param(
            "register_myself",
            ParamType::Int,
            0_i64,
            "When 1, the local domains are also matched by \"myself\" and is_myself().",
        );
        const REQ_FAIL_BRANCH_EVENT_LOCAL: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::BRANCH)
            .union(RouteMask::EVENT)
            .union(RouteMask::LOCAL);
        #[rustfmt::skip]
        m.functions([
            FnRow::declared::<()>("is_from_local", &[], REQ_FAIL_BRANCH_EVENT_LOCAL, "True (1) when the From URI host is a local domain; -1 otherwise."),
            FnRow::declared::<()>("is_uri_host_local", &[], REQ_FAIL_BRANCH_EVENT_LOCAL, "True (1) when the R-URI host is a local domain; -1 otherwise."),
            FnRow::declared::<(Bytes,)>("is_domain_local", &["domain"], REQ_FAIL_BRANCH_EVENT_LOCAL, "True (1) when the given domain is local; -1 otherwise."),
            FnRow::declared::<(Bytes,)>("lookup_domain", &["domain"], REQ_FAIL_BRANCH_EVENT_LOCAL, "Loads the id and attributes of a local domain into AVPs; 1 found, -1 otherwise."),
            FnRow::declared::<(Bytes, Bytes)>("lookup_domain", &["domain", "prefix"], REQ_FAIL_BRANCH_EVENT_LOCAL, "As lookup_domain() with AVP names prefixed; 1 found, -1 otherwise."),
        ]);
    }
}
