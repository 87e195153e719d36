//! `tmx`: Transaction management extensions: route-type checks, pre-checks, cancel/reply by Call-ID, suspend/continue.

use bytes::Bytes;
use ferrosip_api::args::{Flag, NamedRoute};
use ferrosip_api::{Module, ModuleBuilder, MsgContext, ParamType, RouteKind, RouteMask, Verdict};

/// The `tmx` module.
pub struct TmxModule;

impl Module for TmxModule {
    fn name(&self) -> &'static str {
        "tmx"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.example(include_str!("../example.cfg"));
        m.doc("Transaction management extensions: route-type checks, pre-checks, cancel/reply by Call-ID, suspend/continue.");
        m.param("precheck_trans", ParamType::Int, 1_i64, "When 1, t_precheck_trans() tracks requests being processed to catch retransmissions before a transaction exists.");
        m.function("t_precheck_trans")
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("True (1) when a transaction for this request exists already (a retransmission); -1 otherwise.")
            .handler(|ctx: &mut MsgContext| {
                let services = ctx.services("t_precheck_trans")?;
                Ok(Verdict::from(services.transactions().is_some_and(|tm| tm.exists(ctx))))
            });
        m.function("t_is_request_route")
            .routes(RouteMask::ANY)
            .doc("True (1) when running in request_route; -1 otherwise.")
            .handler(|ctx: &mut MsgContext| Ok(Verdict::from(ctx.route == RouteKind::Request)));
        m.function("t_is_failure_route")
            .routes(RouteMask::ANY)
            .doc("True (1) when running in failure_route; -1 otherwise.")
            .handler(|ctx: &mut MsgContext| Ok(Verdict::from(ctx.route == RouteKind::Failure)));
        m.function("t_is_branch_route")
            .routes(RouteMask::ANY)
            .doc("True (1) when running in branch_route; -1 otherwise.")
            .handler(|ctx: &mut MsgContext| Ok(Verdict::from(ctx.route == RouteKind::Branch)));
        m.function("t_is_reply_route")
            .routes(RouteMask::ANY)
            .doc("True (1) when running in a reply route; -1 otherwise.")
            .handler(|ctx: &mut MsgContext| Ok(Verdict::from(ctx.route.is_reply())));
        m.function("t_flush_flags")
            .routes(RouteMask::ANY)
            .doc("Copies the message flags into the transaction; 1 on success, -1 when there is none.")
            .declared::<()>();
        m.function("t_flush_xflags")
            .routes(RouteMask::ANY)
            .doc("Copies the extended message flags into the transaction; 1 on success, -1 when there is none.")
            .declared::<()>();
        m.function("t_suspend")
            .routes(RouteMask::ANY)
            .doc("Suspends the transaction for asynchronous processing ($T(id_index)/$T(id_label) identify it); 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("t_continue")
            .args(&["tindex", "tlabel", "rtname"])
            .routes(RouteMask::ANY)
            .doc("Resumes a suspended transaction in route[rtname]; 1 on success, -1 on failure.")
            .declared::<(i64, i64, NamedRoute)>();
        m.function("t_cancel_branches")
            .args(&["which"])
            .routes(RouteMask::ONREPLY)
            .doc("Cancels branches of the transaction (\"all\", \"others\", \"this\"); 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("t_cancel_callid")
            .args(&["callid", "cseq", "flag"])
            .routes(RouteMask::ANY)
            .doc("Cancels the INVITE transaction with this Call-ID and CSeq, setting a branch flag; 1 on success, -1 when not found.")
            .declared::<(Bytes, Bytes, i64)>();
        m.function("t_cancel_callid")
            .args(&["callid", "cseq", "flag", "rcode"])
            .routes(RouteMask::ANY)
            .doc("As t_cancel_callid() replying with rcode; 1 on success, -1 when not found.")
            .declared::<(Bytes, Bytes, i64, i64)>();
        m.function("t_cancel_branch_idx")
            .args(&["tindex", "tlabel", "bindex"])
            .routes(RouteMask::ANY)
            .doc("Cancels one branch of a transaction given by index and label; 1 on success, -1 on failure.")
            .declared::<(i64, i64, i64)>();
        m.function("t_reply_callid")
            .args(&["callid", "cseq", "code", "reason"])
            .routes(RouteMask::ANY)
            .doc("Replies to the transaction with this Call-ID and CSeq; 1 on success, -1 when not found.")
            .declared::<(Bytes, Bytes, i64, Bytes)>();
        m.function("t_uac_ack_local")
            .args(&["callid", "cseq"])
            .routes(RouteMask::ANY)
            .doc("Sends the ACK for a 2xx of a locally generated INVITE; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("t_uac_ack_local")
            .args(&["callid", "cseq", "headers"])
            .routes(RouteMask::ANY)
            .doc("As t_uac_ack_local() with extra headers; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes, Bytes)>();
        m.function("t_uac_ack_local")
            .args(&["callid", "cseq", "headers", "body"])
            .routes(RouteMask::ANY)
            .doc("As t_uac_ack_local() with extra headers and a body; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes, Bytes, Bytes)>();
        m.function("t_reuse_branch")
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Reuses the branch of the failed transaction for a new attempt (tm:branch-failure event route); 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("t_drop")
            .routes(RouteMask::ANY)
            .doc("Drops the transaction without sending a reply (for suspended or local processing); 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("t_drop")
            .args(&["rcode"])
            .routes(RouteMask::ANY)
            .doc("Drops the transaction keeping rcode as its status; 1 on success, -1 on failure.")
            .declared::<(i64,)>();
        m.function("t_vbflag_set")
            .args(&["flag"])
            .routes(RouteMask::ANY)
            .doc("Sets a flag in the transaction's variable-bit flag set; 1 on success, -1 when there is none.")
            .declared::<(Flag,)>();
        m.function("t_vbflag_reset")
            .args(&["flag"])
            .routes(RouteMask::ANY)
            .doc("Resets a flag in the transaction's variable-bit flag set; 1 on success, -1 when there is none.")
            .declared::<(Flag,)>();
        m.function("t_vbflag_is_set")
            .args(&["flag"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the flag is set in the transaction's variable-bit flag set; -1 otherwise.")
            .declared::<(Flag,)>();
    }
}
