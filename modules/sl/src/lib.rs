//! `sl`: Stateless replies: answers a request without creating a transaction.

use bytes::Bytes;
use ferrosip_api::registry::FnRow;
use ferrosip_api::{FnError, FnResult, MsgContext, Verdict};
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask, Value};

/// The `sl` module.
pub struct SlModule;

impl Module for SlModule {
    fn name(&self) -> &'static str {
        "sl"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.example(include_str!("../example.cfg"));
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
        const REQ_EVENT: RouteMask = RouteMask::REQUEST.union(RouteMask::EVENT);
        const REQ_FAIL_REPLY_EVENT: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::ONREPLY)
            .union(RouteMask::EVENT);
        const CODE_REASON: &[&str] = &["code", "reason"];
        #[rustfmt::skip]
        m.functions([
            FnRow::sync("sl_send_reply", CODE_REASON, REQ_EVENT, "Sends a stateless reply with the given code and reason; 1 on success, -1 on failure.", |ctx: &mut MsgContext, code: i64, reason: Bytes| reply(ctx, code, &reason)),
            FnRow::sync("sl_reply", CODE_REASON, REQ_EVENT, "Alias of sl_send_reply(); 1 on success, -1 on failure.", |ctx: &mut MsgContext, code: i64, reason: Bytes| reply(ctx, code, &reason)),
            FnRow::sync("send_reply", CODE_REASON, REQ_FAIL_REPLY_EVENT, "Replies statefully when a transaction exists, otherwise statelessly; 1 on success, -1 on failure.", |ctx: &mut MsgContext, code: i64, reason: Bytes| send_reply(ctx, code, &reason)),
            FnRow::declared::<(i64, Bytes, i64)>("send_reply_mode", &["code", "reason", "mode"], REQ_FAIL_REPLY_EVENT, "Like send_reply(), mode bit 1 forces a stateless reply even if a transaction exists; 1 on success, -1 on failure."),
            FnRow::sync("send_reply_error", &[], REQ_FAIL_REPLY_EVENT, "Replies (stateful if possible) with the code derived from the last internal error; 1 on success, -1 on failure.", |ctx: &mut MsgContext| reply(ctx, 500, b"Server Internal Error")),
            FnRow::sync("sl_reply_error", &[], REQ_EVENT, "Sends a stateless reply for the last internal error (e.g. 500 or 483); 1 on success, -1 on failure.", |ctx: &mut MsgContext| reply(ctx, 500, b"Server Internal Error")),
            FnRow::declared::<()>("sl_forward_reply", &[], RouteMask::ONREPLY, "Forwards the received reply statelessly to the next Via; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("sl_forward_reply", &["code"], RouteMask::ONREPLY, "Forwards the reply statelessly after changing its status code; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("sl_forward_reply", CODE_REASON, RouteMask::ONREPLY, "Forwards the reply statelessly after changing its status code and reason; 1 on success, -1 on failure."),
        ]);
    }
}

/// Sends a stateless reply through the server; codes outside 100..=699 are refused.
fn reply(ctx: &mut MsgContext, code: i64, reason: &[u8]) -> FnResult {
    if !(100..=699).contains(&code) {
        return Err(FnError::new(format!(
            "status code {code} is not in 100..699"
        )));
    }
    ctx.services("sl_send_reply")?
        .reply(ctx, code as u16, reason)?;
    Ok(Verdict::TRUE)
}

/// `send_reply`: through the transaction when the request has one (Kamailio's rule: a
/// stateless reply would bypass the transaction's retransmission handling), else like
/// `sl_send_reply`.
fn send_reply(ctx: &mut MsgContext, code: i64, reason: &[u8]) -> FnResult {
    let services = ctx.services("send_reply")?;
    if let Some(tm) = services.transactions() {
        let in_transaction = ctx.route == ferrosip_api::RouteKind::Failure || tm.exists(ctx);
        if in_transaction {
            if !(100..=699).contains(&code) {
                return Err(FnError::new(format!(
                    "status code {code} is not in 100..699"
                )));
            }
            return Ok(Verdict::code(tm.reply(ctx, code as u16, reason)?));
        }
    }
    reply(ctx, code, reason)
}

#[cfg(test)]
mod tests_reply {
    use super::*;
    use ferrosip_api::{NetInfo, Registry, ReplyHeaders, RouteKind};
    use ferrosip_script::vm::Outcome;
    use ferrosip_sip::SipMessage;
    use ferrosip_tests::services::SentReply;
    use ferrosip_tests::{FakeServices, Script};
    use std::sync::Arc;

    fn ctx(rec: &Arc<FakeServices>) -> MsgContext {
        let raw = "OPTIONS sip:bob@10.0.0.5 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
To: <sip:bob@10.0.0.5>\r\nFrom: <sip:alice@example.com>;tag=9\r\nCall-ID: c1@h\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        let msg = SipMessage::parse(Bytes::from_static(raw.as_bytes())).expect("parses");
        let mut c = MsgContext::new(msg, RouteKind::Request, NetInfo::default());
        c.services = Some(rec.clone());
        c
    }

    #[test]
    fn codes_are_checked_and_server_is_needed() {
        let rec = Arc::new(FakeServices::new());
        let mut c = ctx(&rec);
        assert!(reply(&mut c, 99, b"x").is_err());
        assert!(reply(&mut c, 700, b"x").is_err());
        assert_eq!(reply(&mut c, 404, b"Not Here").unwrap().rc(), 1);
        c.services = None;
        assert!(reply(&mut c, 200, b"OK").is_err());
        assert_eq!(rec.replies().len(), 1);
    }

    #[test]
    fn script_replies_with_appended_headers() {
        let mut reg = Registry::new();
        ferrosip_script::register_core(&mut reg);
        reg.register(&SlModule);
        let cfg = r#"loadmodule "sl.so"
request_route {
    if ($rm == "OPTIONS") { sl_send_reply("200", "Alive $rU"); }
    sl_reply_error();
    exit;
}
"#;
        let rec = Arc::new(FakeServices::new());
        let mut c = ctx(&rec);
        c.ext.insert(ReplyHeaders(b"X-A: 1\r\n".to_vec()));
        let (o, _) = Script::load(&reg, cfg).run(c);
        assert!(matches!(o, Outcome::Exit), "{o:?}");
        let sent = |code, reason: &str, headers: &str| SentReply {
            code,
            reason: reason.to_string(),
            headers: headers.to_string(),
        };
        assert_eq!(
            rec.replies(),
            [
                sent(200, "Alive bob", "X-A: 1\r\n"),
                sent(500, "Server Internal Error", "")
            ]
        );
    }
}
