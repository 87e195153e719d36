//! `textops`: Text operations on the SIP message: header and body search, replace, add and remove.

use bytes::Bytes;
use ferrosip_api::args::PvOut;
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
        m.function("search")
            .args(&["re"])
            .routes(RouteMask::ANY)
            .doc("Searches the whole message for a regex; 1 on match, -1 otherwise.")
            .handler(search);
        m.function("search_body")
            .args(&["re"])
            .routes(RouteMask::ANY)
            .doc("Searches the message body for a regex; 1 on match, -1 otherwise.")
            .handler(search_body);
        m.function("search_hf")
            .args(&["hf", "re", "flags"])
            .routes(RouteMask::ANY)
            .doc("Searches the bodies of headers named hf for a regex; flags \"f\" first, \"l\" last instance; 1 on match, -1 otherwise.")
            .handler(search_hf);
        m.function("search_append")
            .args(&["re", "txt"])
            .routes(RouteMask::ANY)
            .doc("Appends txt after the first match of the regex in the message; 1 on success, -1 when nothing matched.")
            .handler(search_append);
        m.function("search_append_body")
            .args(&["re", "txt"])
            .routes(RouteMask::ANY)
            .doc("Appends txt after the first match of the regex in the body; 1 on success, -1 when nothing matched.")
            .handler(search_append_body);
        m.function("replace")
            .args(&["re", "txt"])
            .routes(RouteMask::ANY)
            .doc("Replaces the first match of the regex in the message with txt; 1 on success, -1 when nothing matched.")
            .handler(replace);
        m.function("replace_str")
            .args(&["match", "repl", "mode"])
            .routes(RouteMask::ANY)
            .doc("Replaces a plain string in the message (\"f\" first, \"a\" all occurrences); 1 on success, -1 when nothing matched.")
            .handler(replace_str);
        m.function("replace_body")
            .args(&["re", "txt"])
            .routes(RouteMask::ANY)
            .doc("Replaces the first regex match in the body with txt; 1 on success, -1 when nothing matched.")
            .handler(replace_body);
        m.function("replace_body_str")
            .args(&["match", "repl", "mode"])
            .routes(RouteMask::ANY)
            .doc("Replaces a plain string in the body (\"f\" first, \"a\" all); 1 on success, -1 when nothing matched.")
            .handler(replace_body_str);
        m.function("replace_hdrs")
            .args(&["re", "txt"])
            .routes(RouteMask::ANY)
            .doc("Replaces the first regex match in the header part with txt; 1 on success, -1 when nothing matched.")
            .handler(replace_hdrs);
        m.function("replace_hdrs_str")
            .args(&["match", "repl", "mode"])
            .routes(RouteMask::ANY)
            .doc("Replaces a plain string in the header part (\"f\" first, \"a\" all); 1 on success, -1 when nothing matched.")
            .handler(replace_hdrs_str);
        m.function("replace_all")
            .args(&["re", "txt"])
            .routes(RouteMask::ANY)
            .doc("Replaces every regex match in the message with txt; 1 on success, -1 when nothing matched.")
            .handler(replace_all);
        m.function("replace_body_all")
            .args(&["re", "txt"])
            .routes(RouteMask::ANY)
            .doc("Replaces every regex match in the body with txt, line by line; 1 on success, -1 when nothing matched.")
            .handler(replace_body_all);
        m.function("replace_body_atonce")
            .args(&["re", "txt"])
            .routes(RouteMask::ANY)
            .doc("Replaces every regex match in the body taken as one string; 1 on success, -1 when nothing matched.")
            .handler(replace_body_atonce);
        m.function("append_to_reply")
            .args(&["txt"])
            .routes(RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Adds header text to the reply that will be generated for this request; 1 on success, -1 on failure.")
            .handler(append_to_reply);
        m.function("append_hf")
            .args(&["txt"])
            .routes(RouteMask::ANY)
            .doc("Appends a header (text with CRLF) after the last header; 1 on success, -1 on failure.")
            .handler(append_hf);
        m.function("append_hf")
            .args(&["txt", "hdr"])
            .routes(RouteMask::ANY)
            .doc("Appends a header after the first header named hdr; 1 on success, -1 on failure.")
            .handler(append_hf_after);
        m.function("insert_hf")
            .args(&["txt"])
            .routes(RouteMask::ANY)
            .doc("Inserts a header (text with CRLF) before the first header; 1 on success, -1 on failure.")
            .handler(insert_hf);
        m.function("insert_hf")
            .args(&["txt", "hdr"])
            .routes(RouteMask::ANY)
            .doc("Inserts a header before the first header named hdr; 1 on success, -1 on failure.")
            .handler(insert_hf_before);
        m.function("append_urihf")
            .args(&["prefix", "suffix"])
            .routes(RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Appends a header made of prefix, the R-URI and suffix; 1 on success, -1 on failure.")
            .handler(append_urihf);
        m.function("remove_hf")
            .args(&["hname"])
            .routes(RouteMask::ANY)
            .doc("Removes every header with this name (compact forms match); 1 when at least one was removed, -1 when none.")
            .handler(remove_hf);
        m.function("remove_hf_idx")
            .args(&["hname", "idx"])
            .routes(RouteMask::ANY)
            .doc("Removes the idx-th header with this name (negative counts from the end); 1 on success (or a negative index out of range), 2 when a non-negative index is past the last one.")
            .handler(remove_hf_idx);
        m.function("remove_hf_re")
            .args(&["re"])
            .routes(RouteMask::ANY)
            .doc("Removes every header whose name matches the regex; 1 when at least one was removed, -1 when none.")
            .handler(remove_hf_re);
        m.function("remove_hf_exp")
            .args(&["expmatch", "expskip"])
            .routes(RouteMask::ANY)
            .doc("Removes headers whose name matches expmatch but not expskip; 1 when at least one was removed, -1 when none.")
            .handler(remove_hf_exp);
        m.function("is_present_hf")
            .args(&["hf_name"])
            .routes(RouteMask::ANY)
            .doc("True (1) when a header with this name exists; -1 otherwise.")
            .handler(is_present_hf);
        m.function("is_present_hf_re")
            .args(&["hf_name_re"])
            .routes(RouteMask::ANY)
            .doc("True (1) when a header whose name matches the regex exists; -1 otherwise.")
            .handler(is_present_hf_re);
        m.function("remove_hf_pv")
            .args(&["hname"])
            .routes(RouteMask::ANY)
            .doc("Like remove_hf() with a name computed at run time; always 1 (as Kamailio).")
            .handler(remove_hf_pv);
        m.function("remove_hf_re_pv")
            .args(&["re"])
            .routes(RouteMask::ANY)
            .doc("Like remove_hf_re() with a regex computed at run time; 1 when removed, -1 when none.")
            .handler(remove_hf_re_pv);
        m.function("remove_hf_exp_pv")
            .args(&["expmatch", "expskip"])
            .routes(RouteMask::ANY)
            .doc("Like remove_hf_exp() with regexes computed at run time; 1 when removed, -1 when none.")
            .handler(remove_hf_exp_pv);
        m.function("remove_hf_match")
            .args(&["hname", "op", "expr"])
            .routes(RouteMask::ANY)
            .doc("Removes headers named hname whose body matches expr with op (\"eq\", \"ne\", \"in\", \"re\", \"rs\"...); number removed, -1 when none.")
            .declared::<(Bytes, Bytes, Bytes)>();
        m.function("is_present_hf_pv")
            .args(&["hf_name"])
            .routes(RouteMask::ANY)
            .doc("Like is_present_hf() with a name computed at run time; 1 when present, -1 otherwise.")
            .handler(is_present_hf);
        m.function("is_present_hf_re_pv")
            .args(&["hf_name_re"])
            .routes(RouteMask::ANY)
            .doc("Like is_present_hf_re() with a regex computed at run time; 1 when present, -1 otherwise.")
            .handler(is_present_hf_re_pv);
        m.function("subst")
            .args(&["subst_expr"])
            .routes(RouteMask::ANY)
            .doc("Applies a sed-like \"/re/repl/flags\" substitution to the whole message; 1 when something was replaced, -1 otherwise.")
            .handler(subst);
        m.function("subst_uri")
            .args(&["subst_expr"])
            .routes(RouteMask::ONREPLY | RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Applies a \"/re/repl/flags\" substitution to the R-URI; 1 when replaced, -1 otherwise.")
            .handler(subst_uri);
        m.function("subst_user")
            .args(&["subst_expr"])
            .routes(RouteMask::ONREPLY | RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Applies a \"/re/repl/flags\" substitution to the R-URI user part; 1 when replaced, -1 otherwise.")
            .handler(subst_user);
        m.function("subst_body")
            .args(&["subst_expr"])
            .routes(RouteMask::ANY)
            .doc("Applies a \"/re/repl/flags\" substitution to the body; 1 when replaced, -1 otherwise.")
            .handler(subst_body);
        m.function("subst_hf")
            .args(&["hf", "subexp", "flags"])
            .routes(RouteMask::ANY)
            .doc("Applies a substitution to headers named hf (\"f\" first, \"l\" last, \"a\" all); 1 when replaced, -1 otherwise.")
            .handler(subst_hf);
        m.function("subst_v")
            .args(&["itext", "subexp", "ovp"])
            .routes(RouteMask::ANY)
            .doc("Applies a substitution to a text and stores the result in a variable; 1 on success, -1 on failure.")
            .handler(subst_v);
        m.function("filter_body")
            .args(&["content_type"])
            .routes(RouteMask::ANY)
            .doc("Keeps only the body part of a multipart body with this content type; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("append_time")
            .routes(RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Adds a Date header with the current GMT time to the reply; 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("append_time_to_request")
            .routes(RouteMask::ANY)
            .doc("Adds a Date header with the current GMT time to the request if it has none; 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("set_body")
            .args(&["txt", "content_type"])
            .routes(
                RouteMask::FAILURE
                    | RouteMask::BRANCH
                    | RouteMask::ONREPLY
                    | RouteMask::REQUEST
                    | RouteMask::EVENT,
            )
            .doc("Replaces the body and sets Content-Type; 1 on success, -1 on failure.")
            .handler(set_body);
        m.function("set_body_hex")
            .args(&["htxt", "content_type"])
            .routes(RouteMask::ANY)
            .doc("Replaces the body with hex-decoded text and sets Content-Type; 1 on success, -1 on failure.")
            .handler(set_body_hex);
        m.function("set_reply_body")
            .args(&["txt", "content_type"])
            .routes(RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sets the body of the reply that will be generated for this request; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("set_reply_body_hex")
            .args(&["txt", "content_type"])
            .routes(RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sets the reply body from hex-encoded text; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("is_method")
            .args(&["name"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the method (CSeq method for replies) is one of the \"|\"-separated names; -1 otherwise.")
            .handler(is_method);
        m.function("has_body")
            .routes(RouteMask::ANY)
            .doc("True (1) when the message has a non-empty body; -1 otherwise.")
            .handler(has_body);
        m.function("has_body")
            .args(&["mime"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the message has a body of this Content-Type (e.g. \"application/sdp\"); -1 otherwise.")
            .handler(has_body_type);
        m.function("is_privacy")
            .args(&["privacy_type"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the Privacy header contains this value (header, session, user, none, id, critical); -1 otherwise.")
            .handler(is_privacy);
        m.function("in_list")
            .args(&["subject", "list", "separator"])
            .routes(RouteMask::ANY)
            .doc("True (1) when subject equals an item of the separator-delimited list; -1 otherwise.")
            .handler(in_list);
        m.function("in_list_prefix")
            .args(&["subject", "list", "separator"])
            .routes(RouteMask::ANY)
            .doc("True (1) when an item of the list is a prefix of subject; -1 otherwise.")
            .handler(in_list_prefix);
        m.function("cmp_str")
            .args(&["str1", "str2"])
            .routes(RouteMask::ANY)
            .doc("Compares two strings; 1 when equal, -1/-2 (less/greater) otherwise.")
            .handler(cmp_str);
        m.function("cmp_istr")
            .args(&["str1", "str2"])
            .routes(RouteMask::ANY)
            .doc("Compares two strings ignoring case; 1 when equal, -1/-2 otherwise.")
            .handler(cmp_istr);
        m.function("search_str")
            .args(&["text", "re"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the text matches the regex; -1 otherwise.")
            .handler(search_str);
        m.function("starts_with")
            .args(&["str1", "str2"])
            .routes(RouteMask::ANY)
            .doc("True (1) when str1 starts with str2; -1 otherwise.")
            .handler(starts_with);
        m.function("ends_with")
            .args(&["str1", "str2"])
            .routes(RouteMask::ANY)
            .doc("True (1) when str1 ends with str2; -1 otherwise.")
            .handler(ends_with);
        m.function("str_find")
            .args(&["str1", "str2"])
            .routes(RouteMask::ANY)
            .doc("Position of str2 in str1 plus one as the return code (true), -1 when absent.")
            .handler(str_find);
        m.function("str_ifind")
            .args(&["str1", "str2"])
            .routes(RouteMask::ANY)
            .doc("Case-insensitive str_find(); position plus one, -1 when absent.")
            .handler(str_ifind);
        m.function("str_any_in")
            .args(&["txt", "clist"])
            .routes(RouteMask::ANY)
            .doc("True (1) when any character of clist occurs in txt; -1 otherwise.")
            .handler(str_any_in);
        m.function("str_all_in")
            .args(&["txt", "clist"])
            .routes(RouteMask::ANY)
            .doc("True (1) when every character of clist occurs in txt (Kamailio checks this direction); -1 otherwise.")
            .handler(str_all_in);
        m.function("is_audio_on_hold")
            .routes(RouteMask::ANY)
            .doc("True when the SDP puts an audio stream on hold (1 sendonly/inactive, 2 zero address); -1 otherwise.")
            .declared::<()>();
        m.function("via_param_rm")
            .args(&["name", "idx"])
            .routes(RouteMask::ANY)
            .doc("Removes the named parameter from the idx-th Via header; 1 on success, -1 on failure.")
            .declared::<(Bytes, i64)>();
        m.function("set_body_multipart")
            .routes(RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Converts the body into a multipart body with the default boundary; 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("set_body_multipart")
            .args(&["txt"])
            .routes(RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sets a multipart body whose first part is txt; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("set_body_multipart")
            .args(&["txt", "content_type"])
            .routes(RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sets a multipart body with a first part of the given type; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("set_body_multipart")
            .args(&["txt", "content_type", "boundary"])
            .routes(RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Sets a multipart body with an explicit boundary; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes, Bytes)>();
        m.function("append_body_part")
            .args(&["txt", "content_type"])
            .routes(RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Appends a part to a multipart body; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("append_body_part")
            .args(&["txt", "content_type", "content_disposition"])
            .routes(RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Appends a part with a Content-Disposition; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes, Bytes)>();
        m.function("append_body_part_hex")
            .args(&["txt", "content_type"])
            .routes(RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Appends a hex-decoded part to a multipart body; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("append_body_part_hex")
            .args(&["txt", "content_type", "content_disposition"])
            .routes(RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Appends a hex-decoded part with a Content-Disposition; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes, Bytes)>();
        m.function("remove_body_part")
            .args(&["content_type"])
            .routes(RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Removes the multipart body parts of this type; 1 on success, -1 when none.")
            .declared::<(Bytes,)>();
        m.function("get_body_part")
            .args(&["content_type", "opv"])
            .routes(RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Stores the content of the body part of this type (without part headers) in a variable; 1 on success, -1 when absent.")
            .declared::<(Bytes, PvOut)>();
        m.function("get_body_part_raw")
            .args(&["content_type", "opv"])
            .routes(RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Stores the body part of this type with its part headers in a variable; 1 on success, -1 when absent.")
            .declared::<(Bytes, PvOut)>();
        m.function("regex_substring")
            .args(&["itext", "regexp", "mindex", "mcount", "dpv"])
            .routes(RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Stores the mindex-th capture of the mcount-th regex match in a variable; 1 on success, -1 when nothing matched.")
            .declared::<(Bytes, Bytes, i64, i64, PvOut)>();
    }
}

#[cfg(test)]
mod tests_ops;
