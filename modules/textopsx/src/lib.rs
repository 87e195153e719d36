//! `textopsx`: Extra text operations: apply pending changes, header value editing, header and body-line iterators.

use bytes::Bytes;
use ferrosip_api::registry::FnRow;
use ferrosip_api::{Module, ModuleBuilder, RouteMask};
use regex::bytes::Regex;
use std::sync::Arc;

/// The `textopsx` module.
pub struct TextopsxModule;

impl Module for TextopsxModule {
    fn name(&self) -> &'static str {
        "textopsx"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Extra text operations: apply pending changes, header value editing, header and body-line iterators.");
        const REQ_REPLY_EVENT: RouteMask = RouteMask::REQUEST
            .union(RouteMask::ONREPLY)
            .union(RouteMask::EVENT);
        const REQ_FAIL_BRANCH_REPLY_EVENT: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::BRANCH)
            .union(RouteMask::ONREPLY)
            .union(RouteMask::EVENT);
        const HF_HVALUE: &[&str] = &["hf", "hvalue"];
        const INAME_HTEXT: &[&str] = &["iname", "htext"];
        const INAME_TEXT: &[&str] = &["iname", "text"];
        #[rustfmt::skip]
        m.functions([
            FnRow::declared::<()>("msg_apply_changes", &[], REQ_REPLY_EVENT, "Applies all pending changes so later functions see the new message; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("msg_changed_route", &["rname"], RouteMask::ANY, "Runs route[rname] with the message as changed so far; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("msg_set_buffer", &["data"], REQ_REPLY_EVENT, "Replaces the whole message with the given text and reparses it; 1 on success, -1 on failure."),
            FnRow::declared::<(i64, Bytes)>("change_reply_status", &["code", "reason"], RouteMask::ONREPLY, "Changes the status code and reason of a received reply (class must stay the same for 2xx); 1 on success, -1 on failure."),
            FnRow::declared::<(i64,)>("change_reply_status_code", &["vcode"], RouteMask::ONREPLY, "Changes the status code of a received reply keeping the reason; 1 on success, -1 on failure."),
            FnRow::declared::<()>("remove_body", &[], RouteMask::ANY, "Removes the body and sets Content-Length to 0; 1 on success, -1 on failure."),
            FnRow::declared::<()>("keep_hf", &[], RouteMask::ANY, "Removes every header except the mandatory ones; 1 on success, -1 on failure."),
            FnRow::declared::<(Arc<Regex>,)>("keep_hf", &["regexp"], RouteMask::ANY, "Removes every non-mandatory header whose name does not match the regex; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("fnmatch", &["value", "expr"], RouteMask::ANY, "True (1) when value matches the shell wildcard pattern; -1 otherwise."),
            FnRow::declared::<(Bytes, Bytes, Bytes)>("fnmatch", &["value", "expr", "flags"], RouteMask::ANY, "Wildcard match with flags (\"i\" ignore case); 1 on match, -1 otherwise."),
            FnRow::declared::<(Bytes, Bytes)>("append_hf_value", HF_HVALUE, REQ_FAIL_BRANCH_REPLY_EVENT, "Appends a value to a comma-separated header (name may carry an index); 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("insert_hf_value", HF_HVALUE, REQ_FAIL_BRANCH_REPLY_EVENT, "Inserts a value before the values of a comma-separated header; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("remove_hf_value", &["hf_par"], REQ_FAIL_BRANCH_REPLY_EVENT, "Removes a value (or a parameter) from a comma-separated header; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("assign_hf_value", HF_HVALUE, REQ_FAIL_BRANCH_REPLY_EVENT, "Sets a value (or a parameter) of a comma-separated header; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("remove_hf_value2", &["hf_par"], REQ_FAIL_BRANCH_REPLY_EVENT, "As remove_hf_value() treating each header line separately; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("assign_hf_value2", HF_HVALUE, REQ_FAIL_BRANCH_REPLY_EVENT, "As assign_hf_value() treating each header line separately; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("include_hf_value", HF_HVALUE, REQ_FAIL_BRANCH_REPLY_EVENT, "Adds the value to the header if not already present; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("exclude_hf_value", HF_HVALUE, REQ_FAIL_BRANCH_REPLY_EVENT, "Removes the value from the header if present; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("hf_value_exists", HF_HVALUE, REQ_FAIL_BRANCH_REPLY_EVENT, "True (1) when the comma-separated header contains the value; -1 otherwise."),
            FnRow::declared::<(Bytes,)>("hf_iterator_start", &["iname"], RouteMask::ANY, "Starts a named iterator over the headers; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("hf_iterator_next", &["iname"], RouteMask::ANY, "Moves the iterator to the next header; 1 when there is one, -1 at the end."),
            FnRow::declared::<(Bytes,)>("hf_iterator_prev", &["iname"], RouteMask::ANY, "Moves the iterator to the previous header; 1 when there is one, -1 at the start."),
            FnRow::declared::<(Bytes,)>("hf_iterator_end", &["iname"], RouteMask::ANY, "Ends the named header iterator; always 1."),
            FnRow::declared::<(Bytes,)>("hf_iterator_rm", &["iname"], RouteMask::ANY, "Removes the header at the iterator position; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("hf_iterator_append", INAME_HTEXT, RouteMask::ANY, "Adds header text after the header at the iterator position; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("hf_iterator_insert", INAME_HTEXT, RouteMask::ANY, "Adds header text before the header at the iterator position; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("bl_iterator_start", &["iname"], RouteMask::ANY, "Starts a named iterator over the body lines; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("bl_iterator_next", &["iname"], RouteMask::ANY, "Moves the body-line iterator to the next line; 1 when there is one, -1 at the end."),
            FnRow::declared::<(Bytes,)>("bl_iterator_end", &["iname"], RouteMask::ANY, "Ends the named body-line iterator; always 1."),
            FnRow::declared::<(Bytes,)>("bl_iterator_rm", &["iname"], RouteMask::ANY, "Removes the body line at the iterator position; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("bl_iterator_append", INAME_TEXT, RouteMask::ANY, "Adds text after the body line at the iterator position; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("bl_iterator_insert", INAME_TEXT, RouteMask::ANY, "Adds text before the body line at the iterator position; 1 on success, -1 on failure."),
        ]);
    }
}
