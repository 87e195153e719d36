//! `sl`: Stateless replies: answers a request without creating a transaction.

use ferrosip_api::{FnError, FnResult, MsgContext, Verdict};
use bytes::Bytes;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask, Value};

/// The `sl` module.
pub struct SlModule;

impl Module for SlModule {
    fn name(&self) -> &'static str {
        "sl"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Stateless replies: answers a request without creating a transaction.");
        m.param("default_code", ParamType::Int, 500_i64, "Status code sent by sl_reply_error()/send_reply_error() when no specific error code is known.");
        m.param(
            "default_reason",
            ParamType::Str,
            "Internal Server Error",
            "Reason phrase paired with default_code.",
        );
        m.param(
            "bind_tm",
            ParamType::Int,
            1_i64,
            "When 1, send_reply() uses the transaction if one exists (needs tm loaded).",
        );
        m.param(
            "rich_redirect",
            ParamType::Int,
            0_i64,
            "Bit mask for 3xx replies: 1 adds branch flags, 2 adds the path as contact parameters.",
        );
        m.param(
            "event_callback_fl_ack",
            ParamType::Str,
            Value::Null,
            "KEMI function run instead of event_route[sl:filtered-ack].",
        );
        m.param(
            "event_callback_lres_sent",
            ParamType::Str,
            Value::Null,
            "KEMI function run instead of event_route[sl:local-response].",
        );
        m.function("sl_send_reply")
            .args(&["code", "reason"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sends a stateless reply with the given code and reason; 1 on success, -1 on failure.")
            .handler(|ctx: &mut MsgContext, code: i64, reason: Bytes| reply(ctx, code, &reason));
        m.function("sl_reply")
            .args(&["code", "reason"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Alias of sl_send_reply(); 1 on success, -1 on failure.")
            .handler(|ctx: &mut MsgContext, code: i64, reason: Bytes| reply(ctx, code, &reason));
        m.function("send_reply")
            .args(&["code", "reason"])
            .routes(RouteMask::ONREPLY | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Replies statefully when a transaction exists, otherwise statelessly; 1 on success, -1 on failure.")
            .handler(|ctx: &mut MsgContext, code: i64, reason: Bytes| reply(ctx, code, &reason));
        m.function("send_reply_mode")
            .args(&["code", "reason", "mode"])
            .routes(RouteMask::ONREPLY | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Like send_reply(), mode bit 1 forces a stateless reply even if a transaction exists; 1 on success, -1 on failure.")
            .declared::<(i64, Bytes, i64)>();
        m.function("send_reply_error")
            .routes(RouteMask::ONREPLY | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Replies (stateful if possible) with the code derived from the last internal error; 1 on success, -1 on failure.")
            .handler(|ctx: &mut MsgContext| reply(ctx, 500, b"Server Internal Error"));
        m.function("sl_reply_error")
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sends a stateless reply for the last internal error (e.g. 500 or 483); 1 on success, -1 on failure.")
            .handler(|ctx: &mut MsgContext| reply(ctx, 500, b"Server Internal Error"));
        m.function("sl_forward_reply")
            .routes(RouteMask::ONREPLY)
            .doc("Forwards the received reply statelessly to the next Via; 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("sl_forward_reply")
            .args(&["code"])
            .routes(RouteMask::ONREPLY)
            .doc("Forwards the reply statelessly after changing its status code; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("sl_forward_reply")
            .args(&["code", "reason"])
            .routes(RouteMask::ONREPLY)
            .doc("Forwards the reply statelessly after changing its status code and reason; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
    }
}

/// Sends a stateless reply through the server; codes outside 100..=699 are refused.
fn reply(ctx: &mut MsgContext, code: i64, reason: &[u8]) -> FnResult {
    if !(100..=699).contains(&code) {
        return Err(FnError::new(format!("status code {code} is not in 100..699")));
    }
    ctx.services("sl_send_reply")?.reply(ctx, code as u16, reason)?;
    Ok(Verdict::TRUE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrosip_api::Registry;

    #[test]
    fn declares_every_function_with_docs_and_routes() {
        let mut reg = Registry::new();
        reg.register(&SlModule);
        let def = reg.module("sl").expect("module registered");
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
