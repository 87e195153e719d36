//! `tmx`: Transaction management extensions: route-type checks, pre-checks, cancel/reply by Call-ID, suspend/continue.

use bytes::Bytes;
use ferrosip_api::args::{Flag, NamedRoute};
use ferrosip_api::registry::FnRow;
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
        const REQ_EVENT: RouteMask = RouteMask::REQUEST.union(RouteMask::EVENT);
        let t_precheck_trans = |ctx: &mut MsgContext| {
            let services = ctx.services("t_precheck_trans")?;
            Ok(Verdict::from(
                services.transactions().is_some_and(|tm| tm.exists(ctx)),
            ))
        };
        #[rustfmt::skip]
        m.functions([
            FnRow::sync("t_precheck_trans", &[], REQ_EVENT, "True (1) when a transaction for this request exists already (a retransmission); -1 otherwise.", t_precheck_trans),
            FnRow::sync("t_is_request_route", &[], RouteMask::ANY, "True (1) when running in request_route; -1 otherwise.", |ctx: &mut MsgContext| Ok(Verdict::from(ctx.route == RouteKind::Request))),
            FnRow::sync("t_is_failure_route", &[], RouteMask::ANY, "True (1) when running in failure_route; -1 otherwise.", |ctx: &mut MsgContext| Ok(Verdict::from(ctx.route == RouteKind::Failure))),
            FnRow::sync("t_is_branch_route", &[], RouteMask::ANY, "True (1) when running in branch_route; -1 otherwise.", |ctx: &mut MsgContext| Ok(Verdict::from(ctx.route == RouteKind::Branch))),
            FnRow::sync("t_is_reply_route", &[], RouteMask::ANY, "True (1) when running in a reply route; -1 otherwise.", |ctx: &mut MsgContext| Ok(Verdict::from(ctx.route.is_reply()))),
            FnRow::declared::<()>("t_flush_flags", &[], RouteMask::ANY, "Copies the message flags into the transaction; 1 on success, -1 when there is none."),
            FnRow::declared::<()>("t_flush_xflags", &[], RouteMask::ANY, "Copies the extended message flags into the transaction; 1 on success, -1 when there is none."),
            FnRow::declared::<()>("t_suspend", &[], RouteMask::ANY, "Suspends the transaction for asynchronous processing ($T(id_index)/$T(id_label) identify it); 1 on success, -1 on failure."),
            FnRow::declared::<(i64, i64, NamedRoute)>("t_continue", &["tindex", "tlabel", "rtname"], RouteMask::ANY, "Resumes a suspended transaction in route[rtname]; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("t_cancel_branches", &["which"], RouteMask::ONREPLY, "Cancels branches of the transaction (\"all\", \"others\", \"this\"); 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes, i64)>("t_cancel_callid", &["callid", "cseq", "flag"], RouteMask::ANY, "Cancels the INVITE transaction with this Call-ID and CSeq, setting a branch flag; 1 on success, -1 when not found."),
            FnRow::declared::<(Bytes, Bytes, i64, i64)>("t_cancel_callid", &["callid", "cseq", "flag", "rcode"], RouteMask::ANY, "As t_cancel_callid() replying with rcode; 1 on success, -1 when not found."),
            FnRow::declared::<(i64, i64, i64)>("t_cancel_branch_idx", &["tindex", "tlabel", "bindex"], RouteMask::ANY, "Cancels one branch of a transaction given by index and label; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes, i64, Bytes)>("t_reply_callid", &["callid", "cseq", "code", "reason"], RouteMask::ANY, "Replies to the transaction with this Call-ID and CSeq; 1 on success, -1 when not found."),
            FnRow::declared::<(Bytes, Bytes)>("t_uac_ack_local", &["callid", "cseq"], RouteMask::ANY, "Sends the ACK for a 2xx of a locally generated INVITE; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes, Bytes)>("t_uac_ack_local", &["callid", "cseq", "headers"], RouteMask::ANY, "As t_uac_ack_local() with extra headers; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes, Bytes, Bytes)>("t_uac_ack_local", &["callid", "cseq", "headers", "body"], RouteMask::ANY, "As t_uac_ack_local() with extra headers and a body; 1 on success, -1 on failure."),
            FnRow::declared::<()>("t_reuse_branch", &[], REQ_EVENT, "Reuses the branch of the failed transaction for a new attempt (tm:branch-failure event route); 1 on success, -1 on failure."),
            FnRow::declared::<()>("t_drop", &[], RouteMask::ANY, "Drops the transaction without sending a reply (for suspended or local processing); 1 on success, -1 on failure."),
            FnRow::declared::<(i64,)>("t_drop", &["rcode"], RouteMask::ANY, "Drops the transaction keeping rcode as its status; 1 on success, -1 on failure."),
            FnRow::declared::<(Flag,)>("t_vbflag_set", &["flag"], RouteMask::ANY, "Sets a flag in the transaction's variable-bit flag set; 1 on success, -1 when there is none."),
            FnRow::declared::<(Flag,)>("t_vbflag_reset", &["flag"], RouteMask::ANY, "Resets a flag in the transaction's variable-bit flag set; 1 on success, -1 when there is none."),
            FnRow::declared::<(Flag,)>("t_vbflag_is_set", &["flag"], RouteMask::ANY, "True (1) when the flag is set in the transaction's variable-bit flag set; -1 otherwise."),
        ]);
    }
}
