//! `xhttp`: Embedded HTTP server: HTTP requests received on SIP TCP ports run event_route[xhttp:request].

use bytes::Bytes;
use ferrosip_api::pv::PvParamRule;
use ferrosip_api::registry::FnRow;
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
        const REQ_EVENT: RouteMask = RouteMask::REQUEST.union(RouteMask::EVENT);
        #[rustfmt::skip]
        m.functions([
            FnRow::declared::<(i64, Bytes, Bytes, Bytes)>("xhttp_reply", &["code", "reason", "ctype", "body"], REQ_EVENT, "Sends an HTTP reply with code, reason, Content-Type and body; 1 on success, -1 on failure."),
        ]);
    }
}
