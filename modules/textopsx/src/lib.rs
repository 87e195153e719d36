//! `textopsx`: Extra text operations: apply pending changes, header value editing, header and body-line iterators.

use bytes::Bytes;
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
        m.function("msg_apply_changes")
            .routes(RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Applies all pending changes so later functions see the new message; 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("msg_changed_route")
            .args(&["rname"])
            .routes(RouteMask::ANY)
            .doc("Runs route[rname] with the message as changed so far; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("msg_set_buffer")
            .args(&["data"])
            .routes(RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Replaces the whole message with the given text and reparses it; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("change_reply_status")
            .args(&["code", "reason"])
            .routes(RouteMask::ONREPLY)
            .doc("Changes the status code and reason of a received reply (class must stay the same for 2xx); 1 on success, -1 on failure.")
            .declared::<(i64, Bytes)>();
        m.function("change_reply_status_code")
            .args(&["vcode"])
            .routes(RouteMask::ONREPLY)
            .doc("Changes the status code of a received reply keeping the reason; 1 on success, -1 on failure.")
            .declared::<(i64,)>();
        m.function("remove_body")
            .routes(RouteMask::ANY)
            .doc("Removes the body and sets Content-Length to 0; 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("keep_hf")
            .routes(RouteMask::ANY)
            .doc("Removes every header except the mandatory ones; 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("keep_hf")
            .args(&["regexp"])
            .routes(RouteMask::ANY)
            .doc("Removes every non-mandatory header whose name does not match the regex; 1 on success, -1 on failure.")
            .declared::<(Arc<Regex>,)>();
        m.function("fnmatch")
            .args(&["value", "expr"])
            .routes(RouteMask::ANY)
            .doc("True (1) when value matches the shell wildcard pattern; -1 otherwise.")
            .declared::<(Bytes, Bytes)>();
        m.function("fnmatch")
            .args(&["value", "expr", "flags"])
            .routes(RouteMask::ANY)
            .doc("Wildcard match with flags (\"i\" ignore case); 1 on match, -1 otherwise.")
            .declared::<(Bytes, Bytes, Bytes)>();
        m.function("append_hf_value")
            .args(&["hf", "hvalue"])
            .routes(RouteMask::ONREPLY | RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Appends a value to a comma-separated header (name may carry an index); 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("insert_hf_value")
            .args(&["hf", "hvalue"])
            .routes(RouteMask::ONREPLY | RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Inserts a value before the values of a comma-separated header; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("remove_hf_value")
            .args(&["hf_par"])
            .routes(RouteMask::ONREPLY | RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Removes a value (or a parameter) from a comma-separated header; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("assign_hf_value")
            .args(&["hf", "hvalue"])
            .routes(RouteMask::ONREPLY | RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sets a value (or a parameter) of a comma-separated header; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("remove_hf_value2")
            .args(&["hf_par"])
            .routes(RouteMask::ONREPLY | RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As remove_hf_value() treating each header line separately; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("assign_hf_value2")
            .args(&["hf", "hvalue"])
            .routes(RouteMask::ONREPLY | RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("As assign_hf_value() treating each header line separately; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("include_hf_value")
            .args(&["hf", "hvalue"])
            .routes(
                RouteMask::ONREPLY
                    | RouteMask::FAILURE
                    | RouteMask::BRANCH
                    | RouteMask::REQUEST
                    | RouteMask::EVENT,
            )
            .doc(
                "Adds the value to the header if not already present; 1 on success, -1 on failure.",
            )
            .declared::<(Bytes, Bytes)>();
        m.function("exclude_hf_value")
            .args(&["hf", "hvalue"])
            .routes(
                RouteMask::ONREPLY
                    | RouteMask::FAILURE
                    | RouteMask::BRANCH
                    | RouteMask::REQUEST
                    | RouteMask::EVENT,
            )
            .doc("Removes the value from the header if present; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("hf_value_exists")
            .args(&["hf", "hvalue"])
            .routes(
                RouteMask::ONREPLY
                    | RouteMask::FAILURE
                    | RouteMask::BRANCH
                    | RouteMask::REQUEST
                    | RouteMask::EVENT,
            )
            .doc("True (1) when the comma-separated header contains the value; -1 otherwise.")
            .declared::<(Bytes, Bytes)>();
        m.function("hf_iterator_start")
            .args(&["iname"])
            .routes(RouteMask::ANY)
            .doc("Starts a named iterator over the headers; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("hf_iterator_next")
            .args(&["iname"])
            .routes(RouteMask::ANY)
            .doc("Moves the iterator to the next header; 1 when there is one, -1 at the end.")
            .declared::<(Bytes,)>();
        m.function("hf_iterator_prev")
            .args(&["iname"])
            .routes(RouteMask::ANY)
            .doc("Moves the iterator to the previous header; 1 when there is one, -1 at the start.")
            .declared::<(Bytes,)>();
        m.function("hf_iterator_end")
            .args(&["iname"])
            .routes(RouteMask::ANY)
            .doc("Ends the named header iterator; always 1.")
            .declared::<(Bytes,)>();
        m.function("hf_iterator_rm")
            .args(&["iname"])
            .routes(RouteMask::ANY)
            .doc("Removes the header at the iterator position; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("hf_iterator_append")
            .args(&["iname", "htext"])
            .routes(RouteMask::ANY)
            .doc("Adds header text after the header at the iterator position; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("hf_iterator_insert")
            .args(&["iname", "htext"])
            .routes(RouteMask::ANY)
            .doc("Adds header text before the header at the iterator position; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("bl_iterator_start")
            .args(&["iname"])
            .routes(RouteMask::ANY)
            .doc("Starts a named iterator over the body lines; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("bl_iterator_next")
            .args(&["iname"])
            .routes(RouteMask::ANY)
            .doc("Moves the body-line iterator to the next line; 1 when there is one, -1 at the end.")
            .declared::<(Bytes,)>();
        m.function("bl_iterator_end")
            .args(&["iname"])
            .routes(RouteMask::ANY)
            .doc("Ends the named body-line iterator; always 1.")
            .declared::<(Bytes,)>();
        m.function("bl_iterator_rm")
            .args(&["iname"])
            .routes(RouteMask::ANY)
            .doc("Removes the body line at the iterator position; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("bl_iterator_append")
            .args(&["iname", "text"])
            .routes(RouteMask::ANY)
            .doc("Adds text after the body line at the iterator position; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("bl_iterator_insert")
            .args(&["iname", "text"])
            .routes(RouteMask::ANY)
            .doc("Adds text before the body line at the iterator position; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
    }
}
