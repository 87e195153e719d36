//! `xhttp`: Embedded HTTP server: HTTP requests received on SIP TCP ports run event_route[xhttp:request].

use bytes::Bytes;
use ferrosip_api::pv::PvParamRule;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask, Value};

/// The `xhttp` module.
pub struct XhttpModule;

impl Module for XhttpModule {
    fn name(&self) -> &'static str {
        "xhttp"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.pv_declared(
            "hu",
            PvParamRule::None,
            "URL of the HTTP request (in event_route[xhttp:request]).",
        );
        m.doc("Embedded HTTP server: HTTP requests received on SIP TCP ports run event_route[xhttp:request].");
        m.param(
            "url_match",
            ParamType::Str,
            Value::Null,
            "Regex a request URL must match to be handled (default: all).",
        );
        m.param(
            "url_skip",
            ParamType::Str,
            Value::Null,
            "Regex of request URLs that are not handled.",
        );
        m.param(
            "event_callback",
            ParamType::Str,
            Value::Null,
            "KEMI function run instead of event_route[xhttp:request].",
        );
        m.function("xhttp_reply")
            .args(&["code", "reason", "ctype", "body"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sends an HTTP reply with code, reason, Content-Type and body; 1 on success, -1 on failure.")
            .declared::<(i64, Bytes, Bytes, Bytes)>();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrosip_api::Registry;

    #[test]
    fn declares_every_function_with_docs_and_routes() {
        let mut reg = Registry::new();
        reg.register(&XhttpModule);
        let def = reg.module("xhttp").expect("module registered");
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
