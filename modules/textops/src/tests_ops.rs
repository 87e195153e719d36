//! Unit tests on real parsed messages, and one script run.

use crate::ops::*;
use crate::subst::{compile_icase, IRegex, SubstExpr};
use crate::{MethodList, TextopsModule};
use bytes::Bytes;
use ferrosip_api::services::ReplyHeaders;
use ferrosip_api::{MsgContext, NetInfo, Registry, RouteKind};
use ferrosip_sip::SipMessage;

const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
X-Custom: one\r\n\
x-custom: two\r\n\
Privacy: id;header\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

fn ctx() -> MsgContext {
    ctx_of(INVITE)
}

fn ctx_of(s: &str) -> MsgContext {
    let msg = SipMessage::parse(Bytes::copy_from_slice(s.as_bytes())).expect("test message parses");
    MsgContext::new(msg, RouteKind::Request, NetInfo::default())
}

fn text(c: &MsgContext) -> String {
    String::from_utf8_lossy(&c.msg.to_bytes()).into_owned()
}

fn re(s: &str) -> IRegex {
    IRegex(compile_icase(s).unwrap())
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn se(s: &str) -> SubstExpr {
    SubstExpr::parse(s, None).unwrap()
}

fn rc(r: ferrosip_api::FnResult) -> i32 {
    r.unwrap().rc()
}

#[test]
fn search_functions() {
    let mut c = ctx();
    assert_eq!(rc(search(&mut c, re("^call-id: a84b"))), 1);
    assert_eq!(rc(search(&mut c, re("^INVITE sip:bob"))), 1);
    assert_eq!(rc(search(&mut c, re("nothere"))), -1);
    assert_eq!(rc(search_body(&mut c, re("^v=0$"))), 1);
    assert_eq!(rc(search_body(&mut c, re("Alice"))), -1);
    assert_eq!(rc(search_hf(&mut c, b("X-Custom"), re("^two$"), b("a"))), 1);
    assert_eq!(
        rc(search_hf(&mut c, b("X-Custom"), re("^two$"), b("f"))),
        -1
    );
    assert_eq!(rc(search_hf(&mut c, b("x-custom"), re("two"), b("l"))), 1);
    assert_eq!(rc(search_str(&mut c, b("Hello"), b("^hel"))), 1);
}

#[test]
fn header_add_and_remove() {
    let mut c = ctx();
    assert_eq!(rc(append_hf(&mut c, b("X-A: 1\r\n"))), 1);
    assert!(
        text(&c).contains("Content-Length: 4\r\nX-A: 1\r\n\r\nv=0\n"),
        "{}",
        text(&c)
    );
    assert_eq!(rc(insert_hf(&mut c, b("X-B: 2\r\n"))), 1);
    assert!(text(&c).starts_with("INVITE sip:bob@example.com SIP/2.0\r\nX-B: 2\r\nVia:"));
    assert_eq!(
        rc(append_hf_after(&mut c, b("X-C: 3\r\n"), b("X-Custom"))),
        1
    );
    assert!(
        text(&c).contains("x-custom: two\r\nX-C: 3\r\nPrivacy:"),
        "{}",
        text(&c)
    );
    assert_eq!(
        rc(insert_hf_before(&mut c, b("X-D: 4\r\n"), b("x-custom"))),
        1
    );
    assert!(
        text(&c).contains("X-D: 4\r\nX-Custom: one\r\n"),
        "{}",
        text(&c)
    );
    // Two lines at once go in verbatim.
    assert_eq!(rc(append_hf(&mut c, b("X-E: 5\r\nX-F: 6\r\n"))), 1);
    assert!(text(&c).contains("X-E: 5\r\nX-F: 6\r\n\r\nv=0\n"));
    assert_eq!(rc(is_present_hf(&mut c, b("X-F"))), 1);
    assert_eq!(
        rc(is_present_hf(&mut c, b("i"))),
        1,
        "compact form of Call-ID"
    );
    assert_eq!(rc(is_present_hf_re(&mut c, re("^x-[ef]$"))), 1);
    assert_eq!(rc(remove_hf(&mut c, b("x-custom"))), 1);
    assert_eq!(rc(remove_hf(&mut c, b("x-custom"))), -1);
    assert_eq!(rc(remove_hf_re(&mut c, re("^X-[A-D]$"))), 1);
    assert_eq!(rc(remove_hf_exp(&mut c, re("^X-"), re("^X-F$"))), 1);
    assert_eq!(rc(is_present_hf(&mut c, b("X-E"))), -1);
    assert_eq!(rc(is_present_hf(&mut c, b("X-F"))), 1);
    assert_eq!(rc(remove_hf_pv(&mut c, b("X-Nope"))), 1);
    assert_eq!(text(&c).matches("\r\nX-").count(), 1);
    assert!(c.msg.validate().is_ok());
}

#[test]
fn remove_by_index() {
    let mut c = ctx();
    assert_eq!(rc(remove_hf_idx(&mut c, b("X-Custom"), 5)), 2);
    assert_eq!(rc(remove_hf_idx(&mut c, b("X-Custom"), -1)), 1);
    assert!(text(&c).contains("X-Custom: one\r\n") && !text(&c).contains("two"));
}

#[test]
fn replace_and_subst() {
    let mut c = ctx();
    assert_eq!(rc(replace(&mut c, re("alice"), b("carol"))), 1);
    assert!(
        text(&c).contains("From: Alice <sip:carol@atlanta.com>")
            || text(&c).contains("From: carol")
    );
    let mut c = ctx();
    assert_eq!(
        rc(replace_all(&mut c, re("example\\.com"), b("example.org"))),
        1
    );
    assert!(
        !text(&c).contains("example.com\r\n") && text(&c).contains("To: Bob <sip:bob@example.org>")
    );
    // The start line is not part of replace().
    assert!(text(&c).starts_with("INVITE sip:bob@example.com SIP/2.0"));
    let mut c = ctx();
    assert_eq!(
        rc(subst(&mut c, se("/^(X-Custom): (.*)$/\\1: <\\2>/ig"))),
        1
    );
    assert!(
        text(&c).contains("X-Custom: <one>\r\nx-custom: <two>\r\n"),
        "{}",
        text(&c)
    );
    assert_eq!(rc(subst(&mut c, se("/nomatch//"))), -1);
    // A body edit keeps Content-Length right.
    let mut c = ctx();
    assert_eq!(
        rc(subst_body(
            &mut c,
            se("/v=0/v=0\\r\\no=- 1 1 IN IP4 1.2.3.4/")
        )),
        1
    );
    assert_eq!(c.msg.content_length(), Some(c.msg.body().len()));
    assert!(c.msg.body().starts_with(b"v=0\r\no=-"));
    let mut c = ctx();
    assert_eq!(rc(subst(&mut c, se("/v=0/v=0 and more/"))), 1);
    assert_eq!(c.msg.body(), b"v=0 and more\n");
    assert!(text(&c).contains("Content-Length: 13\r\n"), "{}", text(&c));
    let mut c = ctx();
    assert_eq!(rc(replace_body(&mut c, re("0"), b("1"))), 1);
    assert_eq!(c.msg.body(), b"v=1\n");
    assert_eq!(
        rc(replace_hdrs(&mut c, re("^x-custom: two"), b("X-Other: 2"))),
        1
    );
    assert!(text(&c).contains("X-Other: 2\r\n"));
    assert_eq!(rc(replace_str(&mut c, b("Bob"), b("Robert"), b("a"))), 1);
    assert!(text(&c).contains("To: Robert <sip:bob@example.com>"));
    assert_eq!(rc(search_append(&mut c, re("^Call-ID: [^\r]*"), b("X"))), 1);
    assert_eq!(
        c.msg.call_id(),
        Some(&b"a84b4c76e66710@pc33.atlanta.comX"[..])
    );
}

#[test]
fn subst_on_uri_parts() {
    let mut c = ctx();
    assert_eq!(
        rc(subst_uri(
            &mut c,
            se("/^sip:(.*)@example.com$/sip:\\1@10.0.0.2:5070/")
        )),
        1
    );
    assert_eq!(c.msg.request_uri(), Some(&b"sip:bob@10.0.0.2:5070"[..]));
    assert_eq!(rc(subst_user(&mut c, se("/^bob$/+4930123/"))), 1);
    assert_eq!(
        c.msg.request_uri(),
        Some(&b"sip:+4930123@10.0.0.2:5070"[..])
    );
    assert_eq!(rc(subst_user(&mut c, se("/^nobody$/x/"))), -1);
    assert_eq!(rc(subst_user(&mut c, se("/.*//"))), 1);
    assert_eq!(c.msg.request_uri(), Some(&b"sip:10.0.0.2:5070"[..]));
    assert_eq!(rc(subst_hf(&mut c, b("X-Custom"), se("/o/0/g"), b("l"))), 1);
    assert!(
        text(&c).contains("X-Custom: one\r\nx-custom: tw0\r\n"),
        "{}",
        text(&c)
    );
}

#[test]
fn subst_expressions() {
    assert!(SubstExpr::parse("/a/b", None).is_err());
    assert!(SubstExpr::parse("/a/b/q", None).is_err());
    assert!(SubstExpr::parse("/(/b/", None).is_err());
    let c = ctx();
    assert_eq!(se("|a\\|b|x|").apply(&c, b"a|b").unwrap().unwrap(), b"x");
    assert_eq!(se("/A/b/").apply(&c, b"a").unwrap(), None);
    assert_eq!(se("/A/b/i").apply(&c, b"aa").unwrap().unwrap(), b"ba");
    assert_eq!(se("/A/b/gi").apply(&c, b"aa").unwrap().unwrap(), b"bb");
}

#[test]
fn body_functions() {
    let mut c = ctx();
    assert_eq!(rc(has_body(&mut c)), 1);
    assert_eq!(rc(has_body_type(&mut c, b("application/sdp"))), 1);
    assert_eq!(rc(has_body_type(&mut c, b("text/plain"))), -1);
    assert_eq!(rc(set_body(&mut c, b("hello"), b("text/plain"))), 1);
    assert!(
        text(&c).contains("Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"),
        "{}",
        text(&c)
    );
    assert_eq!(rc(has_body_type(&mut c, b("text/plain"))), 1);
    assert_eq!(rc(set_body_hex(&mut c, b("414243"), b("text/plain"))), 1);
    assert_eq!(c.msg.body(), b"ABC");
    assert!(set_body(&mut c, b(""), b("text/plain")).is_err());
    let mut c = ctx_of("OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(rc(has_body(&mut c)), -1);
}

#[test]
fn methods_and_privacy() {
    let mut c = ctx();
    assert_eq!(
        rc(is_method(&mut c, MethodList::parse(b"REGISTER|INVITE"))),
        1
    );
    assert_eq!(rc(is_method(&mut c, MethodList::parse(b"BYE"))), -1);
    let mut r = ctx_of("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>;tag=2\r\nFrom: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(rc(is_method(&mut r, MethodList::parse(b"bye"))), 1);
    assert_eq!(rc(is_privacy(&mut c, b("header"))), 1);
    assert_eq!(rc(is_privacy(&mut c, b("user"))), -1);
    assert!(is_privacy(&mut c, b("bogus")).is_err());
}

#[test]
fn string_helpers() {
    let mut c = ctx();
    assert_eq!(rc(in_list(&mut c, b("b"), b("a,b,c"), b(","))), 1);
    assert_eq!(rc(in_list(&mut c, b("d"), b("a,b,c"), b(","))), -1);
    assert_eq!(
        rc(in_list_prefix(&mut c, b("+4930"), b("+49,+33"), b(","))),
        1
    );
    assert_eq!(rc(cmp_str(&mut c, b("abc"), b("abc"))), 1);
    assert_eq!(rc(cmp_str(&mut c, b("abd"), b("abc"))), -1);
    assert_eq!(rc(cmp_str(&mut c, b("abb"), b("abc"))), -2);
    assert_eq!(rc(cmp_istr(&mut c, b("ABC"), b("abc"))), 1);
    assert_eq!(rc(starts_with(&mut c, b("sip:alice"), b("sip:"))), 1);
    assert_eq!(rc(starts_with(&mut c, b("sip"), b("sip:"))), -1);
    assert_eq!(rc(ends_with(&mut c, b("alice@x.com"), b(".com"))), 1);
    assert_eq!(rc(str_find(&mut c, b("abcabc"), b("ca"))), 3);
    assert_eq!(rc(str_ifind(&mut c, b("abcabc"), b("CA"))), 3);
    assert_eq!(rc(str_find(&mut c, b("abc"), b("x"))), -1);
    assert_eq!(rc(str_any_in(&mut c, b("abc"), b("xyc"))), 1);
    assert_eq!(rc(str_all_in(&mut c, b("abc"), b("ca"))), 1);
    assert_eq!(rc(str_all_in(&mut c, b("abc"), b("cd"))), -1);
}

#[test]
fn reply_headers_and_urihf() {
    let mut c = ctx();
    assert_eq!(rc(append_to_reply(&mut c, b("Contact: <sip:x@y>"))), 1);
    assert_eq!(rc(append_to_reply(&mut c, b("X-R: 1\r\n"))), 1);
    assert_eq!(
        c.ext.get::<ReplyHeaders>().unwrap().0,
        b"Contact: <sip:x@y>\r\nX-R: 1\r\n"
    );
    assert_eq!(rc(append_urihf(&mut c, b("X-Orig: <"), b(">\r\n"))), 1);
    assert!(text(&c).contains("X-Orig: <sip:bob@example.com>\r\n\r\n"));
}

#[test]
fn script_runs_textops() {
    use ferrosip_script::vm::Outcome;
    use ferrosip_tests::Script;
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&TextopsModule);
    let cfg = r#"loadmodule "textops.so"
request_route {
    if (!is_method("INVITE|BYE")) { return(9); }
    if (search("^X-Custom: one")) { remove_hf("X-Custom"); }
    append_hf("X-Seen: $rm from $fU\r\n");
    subst_uri("/^sip:bob@(.*)$/sip:robert@\1/");
    if (is_present_hf("X-Seen") && !is_present_hf("X-Custom") && has_body("application/sdp")) { return(5); }
    return(3);
}
"#;
    let (o, c) = Script::load(&reg, cfg).run(ctx());
    assert!(matches!(o, Outcome::Return(5)), "{o:?}");
    assert!(
        text(&c).contains("X-Seen: INVITE from alice\r\n"),
        "{}",
        text(&c)
    );
    assert_eq!(c.msg.request_uri(), Some(&b"sip:robert@example.com"[..]));
}
