//! `maxfwd`: Max-Forwards processing (RFC 3261 section 16.6 step 3).

use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask};

/// The `maxfwd` module.
pub struct MaxfwdModule;

impl Module for MaxfwdModule {
    fn name(&self) -> &'static str {
        "maxfwd"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Max-Forwards processing (RFC 3261 section 16.6 step 3).");
        m.param(
            "max_limit",
            ParamType::Int,
            70_i64,
            "Upper limit for Max-Forwards: a larger received value is lowered to it.",
        );
        m.function("mf_process_maxfwd_header")
            .args(&["max_value"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Decrements Max-Forwards or adds it with max_value when absent; 1 when processed, 2 when added, -1 when it was already 0 (reply 483), -2 on error.")
            .declared::<(i64,)>();
        m.function("maxfwd_process")
            .args(&["max_value"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Alias of mf_process_maxfwd_header(); 1/2 processed or added, -1 when it was 0, -2 on error.")
            .declared::<(i64,)>();
        m.function("process_maxfwd")
            .args(&["max_value"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Alias of mf_process_maxfwd_header(); 1/2 processed or added, -1 when it was 0, -2 on error.")
            .declared::<(i64,)>();
        m.function("is_maxfwd_lt")
            .args(&["max_value"])
            .routes(RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("True (1) when Max-Forwards is lower than max_value; -1 when not lower, -2 when the header is missing, -3 when it is malformed.")
            .declared::<(i64,)>();
        m.function("maxfwd_at_least")
            .args(&["max_value"])
            .routes(RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Alias of is_maxfwd_lt(); 1 when lower, -1 not lower, -2 missing, -3 malformed.")
            .declared::<(i64,)>();
        m.function("mf_lowlimit")
            .args(&["max_value"])
            .routes(RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Alias of is_maxfwd_lt(); 1 when lower, -1 not lower, -2 missing, -3 malformed.")
            .declared::<(i64,)>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrosip_api::Registry;

    #[test]
    fn declares_every_function_with_docs_and_routes() {
        let mut reg = Registry::new();
        reg.register(&MaxfwdModule);
        let def = reg.module("maxfwd").expect("module registered");
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
