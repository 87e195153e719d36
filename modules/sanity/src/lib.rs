//! `sanity`: Sanity checks of incoming messages (versions, schemes, CSeq, Content-Length, URIs, sizes, ...).

use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask};

/// The `sanity` module.
pub struct SanityModule;

impl Module for SanityModule {
    fn name(&self) -> &'static str {
        "sanity"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Sanity checks of incoming messages (versions, schemes, CSeq, Content-Length, URIs, sizes, ...).");
        m.param(
            "default_checks",
            ParamType::Int,
            3047_i64,
            "Bit mask of the checks sanity_check() runs without arguments.",
        );
        m.param("uri_checks", ParamType::Int, 7_i64, "Bit mask of the URIs checked when URI checks are on (1 R-URI, 2 From, 4 To, 8 Contact).");
        m.param(
            "size_checks",
            ParamType::Int,
            0_i64,
            "Bit mask of size checks enabled against the size_* limits.",
        );
        m.param(
            "size_message",
            ParamType::Int,
            16384_i64,
            "Maximum message size in bytes for size checks.",
        );
        m.param(
            "size_method",
            ParamType::Int,
            32_i64,
            "Maximum method length for size checks.",
        );
        m.param(
            "size_ruri",
            ParamType::Int,
            256_i64,
            "Maximum R-URI length for size checks.",
        );
        m.param(
            "size_from_uri",
            ParamType::Int,
            256_i64,
            "Maximum From URI length for size checks.",
        );
        m.param(
            "size_to_uri",
            ParamType::Int,
            256_i64,
            "Maximum To URI length for size checks.",
        );
        m.param(
            "size_contact_uri",
            ParamType::Int,
            256_i64,
            "Maximum Contact URI length for size checks.",
        );
        m.param(
            "size_route_uri",
            ParamType::Int,
            256_i64,
            "Maximum Route URI length for size checks.",
        );
        m.param(
            "size_path_uri",
            ParamType::Int,
            256_i64,
            "Maximum Path URI length for size checks.",
        );
        m.param(
            "size_pai_uri",
            ParamType::Int,
            256_i64,
            "Maximum P-Asserted-Identity URI length for size checks.",
        );
        m.param(
            "size_header",
            ParamType::Int,
            2048_i64,
            "Maximum length of one header for size checks.",
        );
        m.param(
            "size_headers",
            ParamType::Int,
            8192_i64,
            "Maximum length of all headers for size checks.",
        );
        m.param(
            "size_body",
            ParamType::Int,
            8192_i64,
            "Maximum body length for size checks.",
        );
        m.param(
            "proxy_require",
            ParamType::Str,
            "",
            "Comma-separated extensions this proxy supports when checking Proxy-Require.",
        );
        m.param("autodrop", ParamType::Int, 1_i64, "When 1, a failed check stops the script (return 0) after replying; when 0 it returns -1 instead.");
        m.param(
            "noreply",
            ParamType::Int,
            0_i64,
            "When 1, no error reply is sent on a failed check (use sanity_reply()).",
        );
        m.function("sanity_check")
            .routes(RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Runs the default_checks; 1 when the message passed, 0 (stop) or -1 (autodrop off) when it failed.")
            .declared::<()>();
        m.function("sanity_check")
            .args(&["msg_checks"])
            .routes(RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Runs the checks of the bit mask; 1 passed, 0 or -1 failed.")
            .declared::<(i64,)>();
        m.function("sanity_check")
            .args(&["msg_checks", "uri_checks"])
            .routes(RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Runs the checks and URI checks of the bit masks; 1 passed, 0 or -1 failed.")
            .declared::<(i64, i64)>();
        m.function("sanity_reply")
            .routes(RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sends the error reply prepared by a failed sanity_check() when noreply is set; 1 on success, -1 on failure.")
            .declared::<()>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrosip_api::Registry;

    #[test]
    fn declares_every_function_with_docs_and_routes() {
        let mut reg = Registry::new();
        reg.register(&SanityModule);
        let def = reg.module("sanity").expect("module registered");
        assert!(!def.doc.is_empty());
        for name in &def.functions {
            for f in reg.function(name).unwrap() {
                assert!(!f.doc.is_empty(), "{} has no doc", f.signature());
                assert!(!f.routes.is_empty(), "{} has no route kinds", f.signature());
                assert_eq!(f.arg_names.len(), f.arity(), "{}", f.signature());
            }
        }
        for p in &def.params {
            assert!(!p.doc.is_empty(), "param {} has no doc", p.name);
        }
    }
}
