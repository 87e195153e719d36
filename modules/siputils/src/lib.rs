//! `siputils`: SIP utilities: message type checks, URI parameter helpers, E.164 checks, OPTIONS replies, contact encoding.

use bytes::Bytes;
use ferrosip_api::args::PvOut;
use ferrosip_api::{Module, ModuleBuilder, MsgContext, ParamType, RouteMask, Verdict};
use ops::*;

pub mod ops;
#[cfg(test)]
mod tests_ops;

/// The module's state: the `e164_max_len` parameter (with the leading "+").
struct E164MaxLen(usize);

/// The `siputils` module.
pub struct SiputilsModule;

impl Module for SiputilsModule {
    fn name(&self) -> &'static str {
        "siputils"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.example(include_str!("../example.cfg"));
        m.doc("SIP utilities: message type checks, URI parameter helpers, E.164 checks, OPTIONS replies, contact encoding.");
        m.param(
            "options_accept",
            ParamType::Str,
            "*/*",
            "Accept header value used by options_reply().",
        );
        m.param(
            "options_accept_encoding",
            ParamType::Str,
            "",
            "Accept-Encoding header value used by options_reply() (empty: not added).",
        );
        m.param(
            "options_accept_language",
            ParamType::Str,
            "en",
            "Accept-Language header value used by options_reply().",
        );
        m.param(
            "options_support",
            ParamType::Str,
            "",
            "Supported header value used by options_reply() (empty: not added).",
        );
        m.param(
            "contact_flds_separator",
            ParamType::Str,
            "*",
            "Separator between the fields encoded into a contact by encode_contact().",
        );
        m.param(
            "rpid_prefix",
            ParamType::Str,
            "",
            "Text put before the Remote-Party-ID value by append_rpid_hf().",
        );
        m.param(
            "rpid_suffix",
            ParamType::Str,
            ";party=calling;id-type=subscriber;screen=yes",
            "Text put after the Remote-Party-ID value by append_rpid_hf().",
        );
        m.param(
            "rpid_avp",
            ParamType::Str,
            "$avp(s:rpid)",
            "AVP holding the Remote-Party-ID value.",
        );
        m.param(
            "e164_max_len",
            ParamType::Int,
            16_i64,
            "Maximum length (with the leading \"+\") accepted as an E.164 number.",
        );
        let e164_max = m.state(|p| {
            let max = p.int("e164_max_len");
            if !(3..=64).contains(&max) {
                return Err(format!(
                    "e164_max_len must be 3..64 (\"+\" and at least 2 digits), not {max}"
                ));
            }
            Ok(E164MaxLen(max as usize))
        });
        m.function("options_reply")
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Answers an OPTIONS request addressed to the server (no user part) with 200 and the Accept/Supported headers; 1 on success, -1 otherwise.")
            .declared::<()>();
        m.function("is_user")
            .args(&["username"])
            .routes(RouteMask::LOCAL | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("True (1) when the username of the credentials in the request equals the argument; -1 otherwise.")
            .declared::<(Bytes,)>();
        m.function("has_totag")
            .routes(RouteMask::ANY)
            .doc("True (1) when the To header has a tag parameter (in-dialog request); -1 otherwise.")
            .handler(has_totag);
        m.function("uri_param")
            .args(&["param"])
            .routes(RouteMask::BRANCH | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("True (1) when the R-URI has this parameter; -1 otherwise.")
            .handler(uri_param);
        m.function("uri_param")
            .args(&["param", "value"])
            .routes(RouteMask::BRANCH | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("True (1) when the R-URI has this parameter with this value; -1 otherwise.")
            .handler(uri_param_value);
        m.function("uri_param_any")
            .args(&["param"])
            .routes(RouteMask::BRANCH | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("True (1) when the R-URI has this parameter, with or without a value; -1 otherwise.")
            .declared::<(Bytes,)>();
        m.function("add_uri_param")
            .args(&["param"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Adds a \"name=value\" parameter to the R-URI (or to a tel: URI's header part); 1 on success, -1 on failure.")
            .handler(add_uri_param);
        m.function("get_uri_param")
            .args(&["name", "var"])
            .routes(RouteMask::LOCAL | RouteMask::REQUEST | RouteMask::EVENT)
            .doc(
                "Stores the value of an R-URI parameter in a variable; 1 when found, -1 otherwise.",
            )
            .declared::<(Bytes, PvOut)>();
        m.function("uri_param_rm")
            .args(&["param"])
            .routes(RouteMask::BRANCH | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Removes a parameter from the R-URI; 1 on success, -1 when absent or on error.")
            .declared::<(Bytes,)>();
        m.function("tel2sip")
            .args(&["uri", "hostpart", "result"])
            .routes(RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Converts a tel: URI into a sip: URI with the given host and \";user=phone\"; 1 converted, 2 not a tel URI, -1 on error.")
            .declared::<(Bytes, Bytes, PvOut)>();
        m.function("tel2sip2")
            .args(&["uri", "hostpart", "result"])
            .routes(RouteMask::FAILURE | RouteMask::BRANCH | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Like tel2sip() keeping visual separators out and parameters in the user part; 1 converted, 2 not a tel URI, -1 on error.")
            .declared::<(Bytes, Bytes, PvOut)>();
        m.function("is_uri")
            .args(&["uri"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the value parses as a SIP/SIPS/tel URI; -1 otherwise.")
            .handler(is_uri);
        m.function("is_e164")
            .args(&["number"])
            .routes(RouteMask::FAILURE | RouteMask::LOCAL | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("True (1) when the value is an E.164 number (\"+\" and 2..15 digits); -1 otherwise.")
            .handler(e164_max.with(|max: &E164MaxLen, _ctx: &mut MsgContext, n: Bytes| Ok(Verdict::from(e164(&n, max.0)))));
        m.function("is_uri_user_e164")
            .args(&["uri"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the user part of the URI is an E.164 number; -1 otherwise.")
            .handler(
                e164_max.with(|max: &E164MaxLen, _ctx: &mut MsgContext, u: Bytes| {
                    Ok(Verdict::from(uri_user_e164(&u, max.0)))
                }),
            );
        m.function("encode_contact")
            .args(&["encoding_prefix", "hostpart"])
            .routes(RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Encodes the Contact URI into a new URI with the given prefix and host; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("decode_contact")
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Decodes an R-URI produced by encode_contact() back into the original; 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("decode_contact_header")
            .routes(RouteMask::FAILURE | RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Decodes a Contact header URI produced by encode_contact(); 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("cmp_uri")
            .args(&["str1", "str2"])
            .routes(RouteMask::ANY)
            .doc("Compares two SIP URIs per RFC 3261 rules; 1 when equal, -1 otherwise, -2 on parse error.")
            .declared::<(Bytes, Bytes)>();
        m.function("cmp_aor")
            .args(&["str1", "str2"])
            .routes(RouteMask::ANY)
            .doc("Compares the address-of-record parts (user and host) of two URIs; 1 when equal, -1 otherwise, -2 on parse error.")
            .declared::<(Bytes, Bytes)>();
        m.function("cmp_hdr_name")
            .args(&["str1", "str2"])
            .routes(RouteMask::ANY)
            .doc("Compares two header names, compact forms included; 1 when equal, -1 otherwise.")
            .declared::<(Bytes, Bytes)>();
        m.function("is_rpid_user_e164")
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("True (1) when the user part of the Remote-Party-ID URI is an E.164 number; -1 otherwise.")
            .declared::<()>();
        m.function("append_rpid_hf")
            .routes(RouteMask::BRANCH | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Adds a Remote-Party-ID header from rpid_avp with rpid_prefix/rpid_suffix; 1 on success, -1 on failure.")
            .declared::<()>();
        m.function("append_rpid_hf")
            .args(&["prefix", "suffix"])
            .routes(RouteMask::BRANCH | RouteMask::FAILURE | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Adds a Remote-Party-ID header with the given prefix and suffix; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("set_uri_user")
            .args(&["uri", "user"])
            .routes(RouteMask::ANY)
            .doc("Sets the user part of the URI stored in a variable; 1 on success, -1 on failure.")
            .declared::<(PvOut, Bytes)>();
        m.function("set_uri_host")
            .args(&["uri", "host"])
            .routes(RouteMask::ANY)
            .doc("Sets the host part of the URI stored in a variable; 1 on success, -1 on failure.")
            .declared::<(PvOut, Bytes)>();
        m.function("is_request")
            .routes(RouteMask::ANY)
            .doc("True (1) when the message is a request; -1 otherwise.")
            .handler(is_request);
        m.function("is_reply")
            .routes(RouteMask::ANY)
            .doc("True (1) when the message is a reply; -1 otherwise.")
            .handler(is_reply);
        m.function("is_sip")
            .routes(RouteMask::ANY)
            .doc("True (1) when the message is a SIP message (not HTTP); -1 otherwise.")
            .handler(is_sip);
        m.function("is_http")
            .routes(RouteMask::ANY)
            .doc("True (1) when the message is an HTTP request or reply; -1 otherwise.")
            .declared::<()>();
        m.function("is_gruu")
            .routes(RouteMask::ANY)
            .doc("True when the R-URI is a GRUU (1 public, 2 temporary); -1 otherwise.")
            .declared::<()>();
        m.function("is_gruu")
            .args(&["uri"])
            .routes(RouteMask::ANY)
            .doc("True when the URI is a GRUU (1 public, 2 temporary); -1 otherwise.")
            .declared::<(Bytes,)>();
        m.function("is_supported")
            .args(&["option"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the Supported header lists this option (e.g. \"outbound\", \"path\", \"gruu\"); -1 otherwise.")
            .declared::<(Bytes,)>();
        m.function("is_first_hop")
            .routes(RouteMask::ANY)
            .doc("True (1) at the first hop: a request with one Via; a reply without Record-Route or whose top Record-Route is this server (as an IP address) and that did not come from it; -1 otherwise.")
            .handler(|ctx: &mut MsgContext| is_first_hop(ctx, 0));
        m.function("is_first_hop")
            .args(&["mode"])
            .routes(RouteMask::ANY)
            .doc("Like is_first_hop(); with mode 1 a reply's top Record-Route may name this server by host name and the loop check is skipped; 1 true, -1 otherwise.")
            .handler(is_first_hop);
        m.function("is_tel_number")
            .args(&["tval"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the value is a telephone number (digits, or \"+\", a non-zero digit and digits); -2 otherwise.")
            .handler(is_tel_number);
        m.function("is_numeric")
            .args(&["tval"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the value is made only of digits; -2 otherwise (also when empty).")
            .handler(is_numeric);
        m.function("is_alphanum")
            .args(&["tval"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the value is made only of letters and digits; -2 when empty, -3 otherwise.")
            .handler(is_alphanum);
        m.function("is_alphanumex")
            .args(&["tval", "eset"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the value has only letters, digits and characters of eset; -2 when empty, -3 otherwise.")
            .handler(is_alphanumex);
        m.function("sip_p_charging_vector")
            .args(&["flags"])
            .routes(RouteMask::ANY)
            .doc("Manages the P-Charging-Vector header (\"g\" generate, \"r\" remove, \"f\" force); 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("contact_param_encode")
            .args(&["pname", "saddr"])
            .routes(RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Encodes each Contact URI into a parameter of a new URI pointing to saddr; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("contact_param_encode_alias")
            .args(&["pname", "saddr"])
            .routes(RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Like contact_param_encode() also recording the source address as alias; 1 on success, -1 on failure.")
            .declared::<(Bytes, Bytes)>();
        m.function("contact_param_decode")
            .args(&["pname"])
            .routes(RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Decodes Contact URIs encoded by contact_param_encode(); 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("contact_param_decode_ruri")
            .args(&["pname"])
            .routes(RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Decodes an R-URI encoded by contact_param_encode(); 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("contact_param_rm")
            .args(&["pname"])
            .routes(RouteMask::ONREPLY | RouteMask::REQUEST | RouteMask::EVENT)
            .doc("Removes the encoding parameter from Contact URIs; 1 on success, -1 on failure.")
            .declared::<(Bytes,)>();
        m.function("contact_param_check")
            .args(&["pname"])
            .routes(RouteMask::ANY)
            .doc("True (1) when a Contact URI carries the encoding parameter; -1 otherwise.")
            .declared::<(Bytes,)>();
        m.function("hdr_date_check")
            .args(&["tdiff"])
            .routes(RouteMask::ANY)
            .doc("True (1) when the Date header is within tdiff seconds of now; -1 otherwise.")
            .declared::<(i64,)>();
        m.function("sip_parse_headers")
            .routes(RouteMask::ANY)
            .doc("Parses all headers of the message; 1 on success, -1 on parse error.")
            .declared::<()>();
    }
}
