//! `textops`: Text operations on the SIP message: header and body search, replace, add and remove.

use bytes::Bytes;
use ferrosip_api::args::PvOut;
use ferrosip_api::registry::FnRow;
mod methods;
pub mod ops;
pub mod raw;
pub mod subst;

use ferrosip_api::{Module, ModuleBuilder, RouteMask};
pub use methods::MethodList;
use ops::*;

/// The `textops` module.
pub struct TextopsModule;

impl Module for TextopsModule {
    fn name(&self) -> &'static str {
        "textops"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.example(include_str!("../example.cfg"));
        m.doc(
            "Text operations on the SIP message: header and body search, replace, add and remove.",
        );
        const REQ_FAIL_BRANCH_EVENT: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::BRANCH)
            .union(RouteMask::EVENT);
        const REQ_FAIL_BRANCH_REPLY_EVENT: RouteMask = RouteMask::REQUEST
            .union(RouteMask::FAILURE)
            .union(RouteMask::BRANCH)
            .union(RouteMask::ONREPLY)
            .union(RouteMask::EVENT);
        const RE_TXT: &[&str] = &["re", "txt"];
        const MATCH_REPL_MODE: &[&str] = &["match", "repl", "mode"];
        const TXT_HDR: &[&str] = &["txt", "hdr"];
        const EXPMATCH_EXPSKIP: &[&str] = &["expmatch", "expskip"];
        const TXT_CONTENT_TYPE: &[&str] = &["txt", "content_type"];
        const SUBJECT_LIST_SEPARATOR: &[&str] = &["subject", "list", "separator"];
        const STR1_STR2: &[&str] = &["str1", "str2"];
        const TXT_CLIST: &[&str] = &["txt", "clist"];
        const TXT_CONTENT_TYPE_CONTENT_DISPOSITION: &[&str] =
            &["txt", "content_type", "content_disposition"];
        const CONTENT_TYPE_OPV: &[&str] = &["content_type", "opv"];
        #[rustfmt::skip]
        m.functions([
            FnRow::sync("search", &["re"], RouteMask::ALL, "Searches the whole message for a regex; 1 on match, -1 otherwise.", search),
            FnRow::sync("search_body", &["re"], RouteMask::ANY, "Searches the message body for a regex; 1 on match, -1 otherwise.", search_body),
            FnRow::sync("search_hf", &["hf", "re", "flags"], RouteMask::ANY, "Searches the bodies of headers named hf for a regex; flags \"f\" first, \"l\" last instance; 1 on match, -1 otherwise.", search_hf),
            FnRow::sync("search_append", RE_TXT, RouteMask::ANY, "Appends txt after the first match of the regex in the message; 1 on success, -1 when nothing matched.", search_append),
            FnRow::sync("search_append_body", RE_TXT, RouteMask::ANY, "Appends txt after the first match of the regex in the body; 1 on success, -1 when nothing matched.", search_append_body),
            FnRow::sync("replace", RE_TXT, RouteMask::ANY, "Replaces the first match of the regex in the message with txt; 1 on success, -1 when nothing matched.", replace),
            FnRow::sync("replace_str", MATCH_REPL_MODE, RouteMask::ANY, "Replaces a plain string in the message (\"f\" first, \"a\" all occurrences); 1 on success, -1 when nothing matched.", replace_str),
            FnRow::sync("replace_body", RE_TXT, RouteMask::ANY, "Replaces the first regex match in the body with txt; 1 on success, -1 when nothing matched.", replace_body),
            FnRow::sync("replace_body_str", MATCH_REPL_MODE, RouteMask::ANY, "Replaces a plain string in the body (\"f\" first, \"a\" all); 1 on success, -1 when nothing matched.", replace_body_str),
            FnRow::sync("replace_hdrs", RE_TXT, RouteMask::ANY, "Replaces the first regex match in the header part with txt; 1 on success, -1 when nothing matched.", replace_hdrs),
            FnRow::sync("replace_hdrs_str", MATCH_REPL_MODE, RouteMask::ANY, "Replaces a plain string in the header part (\"f\" first, \"a\" all); 1 on success, -1 when nothing matched.", replace_hdrs_str),
            FnRow::sync("replace_all", RE_TXT, RouteMask::ANY, "Replaces every regex match in the message with txt; 1 on success, -1 when nothing matched.", replace_all),
            FnRow::sync("replace_body_all", RE_TXT, RouteMask::ANY, "Replaces every regex match in the body with txt, line by line; 1 on success, -1 when nothing matched.", replace_body_all),
            FnRow::sync("replace_body_atonce", RE_TXT, RouteMask::ANY, "Replaces every regex match in the body taken as one string; 1 on success, -1 when nothing matched.", replace_body_atonce),
            FnRow::sync("append_to_reply", &["txt"], REQ_FAIL_BRANCH_EVENT, "Adds header text to the reply that will be generated for this request; 1 on success, -1 on failure.", append_to_reply),
            FnRow::sync("append_hf", &["txt"], RouteMask::ANY, "Appends a header (text with CRLF) after the last header; 1 on success, -1 on failure.", append_hf),
            FnRow::sync("append_hf", TXT_HDR, RouteMask::ANY, "Appends a header after the first header named hdr; 1 on success, -1 on failure.", append_hf_after),
            FnRow::sync("insert_hf", &["txt"], RouteMask::ANY, "Inserts a header (text with CRLF) before the first header; 1 on success, -1 on failure.", insert_hf),
            FnRow::sync("insert_hf", TXT_HDR, RouteMask::ANY, "Inserts a header before the first header named hdr; 1 on success, -1 on failure.", insert_hf_before),
            FnRow::sync("append_urihf", &["prefix", "suffix"], REQ_FAIL_BRANCH_EVENT, "Appends a header made of prefix, the R-URI and suffix; 1 on success, -1 on failure.", append_urihf),
            FnRow::sync("remove_hf", &["hname"], RouteMask::ANY, "Removes every header with this name (compact forms match); 1 when at least one was removed, -1 when none.", remove_hf),
            FnRow::sync("remove_hf_idx", &["hname", "idx"], RouteMask::ANY, "Removes the idx-th header with this name (negative counts from the end); 1 on success (or a negative index out of range), 2 when a non-negative index is past the last one.", remove_hf_idx),
            FnRow::sync("remove_hf_re", &["re"], RouteMask::ANY, "Removes every header whose name matches the regex; 1 when at least one was removed, -1 when none.", remove_hf_re),
            FnRow::sync("remove_hf_exp", EXPMATCH_EXPSKIP, RouteMask::ANY, "Removes headers whose name matches expmatch but not expskip; 1 when at least one was removed, -1 when none.", remove_hf_exp),
            FnRow::sync("is_present_hf", &["hf_name"], RouteMask::ANY, "True (1) when a header with this name exists; -1 otherwise.", is_present_hf),
            FnRow::sync("is_present_hf_re", &["hf_name_re"], RouteMask::ANY, "True (1) when a header whose name matches the regex exists; -1 otherwise.", is_present_hf_re),
            FnRow::sync("remove_hf_pv", &["hname"], RouteMask::ANY, "Like remove_hf() with a name computed at run time; always 1 (as Kamailio).", remove_hf_pv),
            FnRow::sync("remove_hf_re_pv", &["re"], RouteMask::ANY, "Like remove_hf_re() with a regex computed at run time; 1 when removed, -1 when none.", remove_hf_re_pv),
            FnRow::sync("remove_hf_exp_pv", EXPMATCH_EXPSKIP, RouteMask::ANY, "Like remove_hf_exp() with regexes computed at run time; 1 when removed, -1 when none.", remove_hf_exp_pv),
            FnRow::declared::<(Bytes, Bytes, Bytes)>("remove_hf_match", &["hname", "op", "expr"], RouteMask::ANY, "Removes headers named hname whose body matches expr with op (\"eq\", \"ne\", \"in\", \"re\", \"rs\"...); number removed, -1 when none."),
            FnRow::sync("is_present_hf_pv", &["hf_name"], RouteMask::ANY, "Like is_present_hf() with a name computed at run time; 1 when present, -1 otherwise.", is_present_hf),
            FnRow::sync("is_present_hf_re_pv", &["hf_name_re"], RouteMask::ANY, "Like is_present_hf_re() with a regex computed at run time; 1 when present, -1 otherwise.", is_present_hf_re_pv),
            FnRow::sync("subst", &["subst_expr"], RouteMask::ANY, "Applies a sed-like \"/re/repl/flags\" substitution to the whole message; 1 when something was replaced, -1 otherwise.", subst),
            FnRow::sync("subst_uri", &["subst_expr"], REQ_FAIL_BRANCH_REPLY_EVENT, "Applies a \"/re/repl/flags\" substitution to the R-URI; 1 when replaced, -1 otherwise.", subst_uri),
            FnRow::sync("subst_user", &["subst_expr"], REQ_FAIL_BRANCH_REPLY_EVENT, "Applies a \"/re/repl/flags\" substitution to the R-URI user part; 1 when replaced, -1 otherwise.", subst_user),
            FnRow::sync("subst_body", &["subst_expr"], RouteMask::ANY, "Applies a \"/re/repl/flags\" substitution to the body; 1 when replaced, -1 otherwise.", subst_body),
            FnRow::sync("subst_hf", &["hf", "subexp", "flags"], RouteMask::ANY, "Applies a substitution to headers named hf (\"f\" first, \"l\" last, \"a\" all); 1 when replaced, -1 otherwise.", subst_hf),
            FnRow::sync("subst_v", &["itext", "subexp", "ovp"], RouteMask::ANY, "Applies a substitution to a text and stores the result in a variable; 1 on success, -1 on failure.", subst_v),
            FnRow::declared::<(Bytes,)>("filter_body", &["content_type"], RouteMask::ANY, "Keeps only the body part of a multipart body with this content type; 1 on success, -1 on failure."),
            FnRow::declared::<()>("append_time", &[], REQ_FAIL_BRANCH_EVENT, "Adds a Date header with the current GMT time to the reply; 1 on success, -1 on failure."),
            FnRow::declared::<()>("append_time_to_request", &[], RouteMask::ANY, "Adds a Date header with the current GMT time to the request if it has none; 1 on success, -1 on failure."),
            FnRow::sync("set_body", TXT_CONTENT_TYPE, REQ_FAIL_BRANCH_REPLY_EVENT, "Replaces the body and sets Content-Type; 1 on success, -1 on failure.", set_body),
            FnRow::sync("set_body_hex", &["htxt", "content_type"], RouteMask::ANY, "Replaces the body with hex-decoded text and sets Content-Type; 1 on success, -1 on failure.", set_body_hex),
            FnRow::declared::<(Bytes, Bytes)>("set_reply_body", TXT_CONTENT_TYPE, REQ_FAIL_BRANCH_EVENT, "Sets the body of the reply that will be generated for this request; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("set_reply_body_hex", TXT_CONTENT_TYPE, REQ_FAIL_BRANCH_EVENT, "Sets the reply body from hex-encoded text; 1 on success, -1 on failure."),
            FnRow::sync("is_method", &["name"], RouteMask::ANY, "True (1) when the method (CSeq method for replies) is one of the \"|\"-separated names; -1 otherwise.", is_method),
            FnRow::sync("has_body", &[], RouteMask::ANY, "True (1) when the message has a non-empty body; -1 otherwise.", has_body),
            FnRow::sync("has_body", &["mime"], RouteMask::ANY, "True (1) when the message has a body of this Content-Type (e.g. \"application/sdp\"); -1 otherwise.", has_body_type),
            FnRow::sync("is_privacy", &["privacy_type"], RouteMask::ANY, "True (1) when the Privacy header contains this value (header, session, user, none, id, critical); -1 otherwise.", is_privacy),
            FnRow::sync("in_list", SUBJECT_LIST_SEPARATOR, RouteMask::ANY, "True (1) when subject equals an item of the separator-delimited list; -1 otherwise.", in_list),
            FnRow::sync("in_list_prefix", SUBJECT_LIST_SEPARATOR, RouteMask::ANY, "True (1) when an item of the list is a prefix of subject; -1 otherwise.", in_list_prefix),
            FnRow::sync("cmp_str", STR1_STR2, RouteMask::ANY, "Compares two strings; 1 when equal, -1/-2 (less/greater) otherwise.", cmp_str),
            FnRow::sync("cmp_istr", STR1_STR2, RouteMask::ANY, "Compares two strings ignoring case; 1 when equal, -1/-2 otherwise.", cmp_istr),
            FnRow::sync("search_str", &["text", "re"], RouteMask::ANY, "True (1) when the text matches the regex; -1 otherwise.", search_str),
            FnRow::sync("starts_with", STR1_STR2, RouteMask::ANY, "True (1) when str1 starts with str2; -1 otherwise.", starts_with),
            FnRow::sync("ends_with", STR1_STR2, RouteMask::ANY, "True (1) when str1 ends with str2; -1 otherwise.", ends_with),
            FnRow::sync("str_find", STR1_STR2, RouteMask::ANY, "Position of str2 in str1 plus one as the return code (true), -1 when absent.", str_find),
            FnRow::sync("str_ifind", STR1_STR2, RouteMask::ANY, "Case-insensitive str_find(); position plus one, -1 when absent.", str_ifind),
            FnRow::sync("str_any_in", TXT_CLIST, RouteMask::ANY, "True (1) when any character of clist occurs in txt; -1 otherwise.", str_any_in),
            FnRow::sync("str_all_in", TXT_CLIST, RouteMask::ANY, "True (1) when every character of clist occurs in txt (Kamailio checks this direction); -1 otherwise.", str_all_in),
            FnRow::declared::<()>("is_audio_on_hold", &[], RouteMask::ANY, "True when the SDP puts an audio stream on hold (1 sendonly/inactive, 2 zero address); -1 otherwise."),
            FnRow::declared::<(Bytes, i64)>("via_param_rm", &["name", "idx"], RouteMask::ANY, "Removes the named parameter from the idx-th Via header; 1 on success, -1 on failure."),
            FnRow::declared::<()>("set_body_multipart", &[], REQ_FAIL_BRANCH_EVENT, "Converts the body into a multipart body with the default boundary; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("set_body_multipart", &["txt"], REQ_FAIL_BRANCH_EVENT, "Sets a multipart body whose first part is txt; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("set_body_multipart", TXT_CONTENT_TYPE, REQ_FAIL_BRANCH_EVENT, "Sets a multipart body with a first part of the given type; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes, Bytes)>("set_body_multipart", &["txt", "content_type", "boundary"], REQ_FAIL_BRANCH_EVENT, "Sets a multipart body with an explicit boundary; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("append_body_part", TXT_CONTENT_TYPE, REQ_FAIL_BRANCH_EVENT, "Appends a part to a multipart body; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes, Bytes)>("append_body_part", TXT_CONTENT_TYPE_CONTENT_DISPOSITION, REQ_FAIL_BRANCH_EVENT, "Appends a part with a Content-Disposition; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes)>("append_body_part_hex", TXT_CONTENT_TYPE, REQ_FAIL_BRANCH_EVENT, "Appends a hex-decoded part to a multipart body; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes, Bytes, Bytes)>("append_body_part_hex", TXT_CONTENT_TYPE_CONTENT_DISPOSITION, REQ_FAIL_BRANCH_EVENT, "Appends a hex-decoded part with a Content-Disposition; 1 on success, -1 on failure."),
            FnRow::declared::<(Bytes,)>("remove_body_part", &["content_type"], REQ_FAIL_BRANCH_EVENT, "Removes the multipart body parts of this type; 1 on success, -1 when none."),
            FnRow::declared::<(Bytes, PvOut)>("get_body_part", CONTENT_TYPE_OPV, REQ_FAIL_BRANCH_REPLY_EVENT, "Stores the content of the body part of this type (without part headers) in a variable; 1 on success, -1 when absent."),
            FnRow::declared::<(Bytes, PvOut)>("get_body_part_raw", CONTENT_TYPE_OPV, REQ_FAIL_BRANCH_REPLY_EVENT, "Stores the body part of this type with its part headers in a variable; 1 on success, -1 when absent."),
            FnRow::declared::<(Bytes, Bytes, i64, i64, PvOut)>("regex_substring", &["itext", "regexp", "mindex", "mcount", "dpv"], REQ_FAIL_BRANCH_REPLY_EVENT, "Stores the mindex-th capture of the mcount-th regex match in a variable; 1 on success, -1 when nothing matched."),
        ]);
    }
}

#[cfg(test)]
mod tests_ops;
