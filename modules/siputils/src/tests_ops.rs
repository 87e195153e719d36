//! Unit tests on real parsed messages, and one script run.

use crate::ops::*;
use crate::SiputilsModule;
use bytes::Bytes;
use ferrosip_api::{MsgContext, NetInfo, Registry, RouteKind};
use ferrosip_sip::SipMessage;
use ferrosip_tests::{FakeServices, Script};
use std::sync::Arc;

const REQ: &str = "INVITE sip:bob@example.com;transport=tcp;lr SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Content-Length: 0\r\n\r\n";

const REPLY: &str = "SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK1\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds\r\n\
Record-Route: <sip:10.0.0.9;lr>\r\n\
To: Bob <sip:bob@example.com>;tag=77\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Content-Length: 0\r\n\r\n";

fn ctx(s: &str) -> MsgContext {
    let msg = SipMessage::parse(Bytes::copy_from_slice(s.as_bytes())).expect("test message parses");
    let net = NetInfo {
        source: "10.0.0.2:5060".parse().unwrap(),
        ..NetInfo::default()
    };
    MsgContext::new(msg, RouteKind::Request, net)
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn rc(r: ferrosip_api::FnResult) -> i32 {
    r.unwrap().rc()
}

#[test]
fn message_kind_and_totag() {
    let mut r = ctx(REQ);
    assert_eq!(rc(has_totag(&mut r)), -1);
    assert_eq!(rc(is_request(&mut r)), 1);
    assert_eq!(rc(is_reply(&mut r)), -1);
    let mut p = ctx(REPLY);
    assert_eq!(rc(has_totag(&mut p)), 1);
    assert_eq!(rc(is_reply(&mut p)), 1);
}

#[test]
fn uri_params() {
    let mut c = ctx(REQ);
    assert_eq!(rc(uri_param(&mut c, b("lr"))), 1);
    assert_eq!(rc(uri_param(&mut c, b("maddr"))), -1);
    assert_eq!(rc(uri_param_value(&mut c, b("transport"), b("tcp"))), 1);
    assert_eq!(rc(uri_param_value(&mut c, b("transport"), b("udp"))), -1);
    assert_eq!(rc(add_uri_param(&mut c, b("user=phone"))), 1);
    assert_eq!(
        c.msg.request_uri(),
        Some(&b"sip:bob@example.com;transport=tcp;lr;user=phone"[..])
    );
    let mut c = ctx(&REQ.replace(";transport=tcp;lr", "?Subject=x"));
    assert_eq!(rc(add_uri_param(&mut c, b("a=1"))), 1);
    assert_eq!(
        c.msg.request_uri(),
        Some(&b"sip:bob@example.com;a=1?Subject=x"[..])
    );
    assert!(c
        .msg
        .to_bytes()
        .starts_with(b"INVITE sip:bob@example.com;a=1?Subject=x SIP/2.0\r\n"));
}

#[test]
fn number_checks() {
    let mut c = ctx(REQ);
    assert!(e164(b"+4930123456", 16));
    assert!(!e164(b"4930123456", 16));
    assert!(!e164(b"+49", 2));
    assert!(!e164(b"+49a", 16));
    assert!(uri_user_e164(b"sip:+4930123@example.com", 16));
    assert!(!uri_user_e164(b"sip:example.com", 16));
    assert_eq!(rc(is_uri(&mut c, b("sip:a@b.c"))), 1);
    assert_eq!(rc(is_uri(&mut c, b("not a uri"))), -1);
    assert_eq!(rc(is_tel_number(&mut c, b("+4930"))), 1);
    assert_eq!(rc(is_tel_number(&mut c, b("+0930"))), -2);
    assert_eq!(rc(is_numeric(&mut c, b("0123"))), 1);
    assert_eq!(rc(is_numeric(&mut c, b(""))), -2);
    assert_eq!(rc(is_alphanum(&mut c, b("ab12"))), 1);
    assert_eq!(rc(is_alphanum(&mut c, b("ab-12"))), -3);
    assert_eq!(rc(is_alphanumex(&mut c, b("ab-12"), b("-"))), 1);
}

#[test]
fn first_hop() {
    let mut c = ctx(REQ);
    assert_eq!(rc(is_first_hop(&mut c, 0)), 1);
    let mut c = ctx(&REQ.replace(
        "Max-Forwards",
        "Via: SIP/2.0/UDP 10.0.0.7;branch=z9hG4bK2\r\nMax-Forwards",
    ));
    assert_eq!(rc(is_first_hop(&mut c, 0)), -1);
    let mut p = ctx(REPLY);
    assert!(is_first_hop(&mut p, 0).is_err(), "needs the server");
    p.services = Some(Arc::new(FakeServices::new().myself("10.0.0.9", None)));
    assert_eq!(rc(is_first_hop(&mut p, 0)), 1);
    // Received from the Record-Route address itself: a loop.
    p.net.source = "10.0.0.9:5060".parse().unwrap();
    assert_eq!(rc(is_first_hop(&mut p, 0)), -1);
}

#[test]
fn script_runs_siputils() {
    use ferrosip_script::vm::Outcome;
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&SiputilsModule);
    let cfg = r#"loadmodule "siputils.so"
modparam("siputils", "e164_max_len", 8)
request_route {
    if (has_totag()) { return(9); }
    if (!is_request() || is_reply()) { return(8); }
    if (is_e164("+491234567")) { return(7); }
    if (!is_e164("+4912345")) { return(6); }
    if (uri_param("lr")) { add_uri_param("x=1"); return(5); }
    return(3);
}
"#;
    let script = Script::load(&reg, cfg);
    for hook in &reg.module("siputils").unwrap().init {
        hook(&script.loaded.modules["siputils"]).unwrap();
    }
    let (o, c) = script.run(ctx(REQ));
    assert!(matches!(o, Outcome::Return(5)), "{o:?}");
    assert_eq!(
        c.msg.request_uri(),
        Some(&b"sip:bob@example.com;transport=tcp;lr;x=1"[..])
    );
}

#[test]
fn an_impossible_e164_max_len_fails_the_load_naming_module_and_param() {
    for value in [0, 2, 65] {
        let mut reg = Registry::new();
        ferrosip_script::register_core(&mut reg);
        reg.register(&SiputilsModule);
        let cfg = format!(
            "loadmodule \"siputils.so\"\nmodparam(\"siputils\", \"e164_max_len\", {value})\nrequest_route {{ return(1); }}\n"
        );
        let err = ferrosip_script::load_str(
            "t.cfg",
            &cfg,
            &ferrosip_script::LoadOptions::default(),
            &reg,
        )
        .err()
        .expect("the load fails")
        .to_string();
        assert!(
            err.contains("module siputils") && err.contains("e164_max_len"),
            "{err}"
        );
    }
}
