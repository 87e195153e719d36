//! Tests of the checks on real parsed messages, the handler and the script binding.

use super::checks::*;
use super::*;
use bytes::Bytes;
use ferrosip_api::{NetInfo, Registry, RouteKind, Services};
use ferrosip_script::vm::Outcome;
use ferrosip_sip::SipMessage;
use ferrosip_tests::services::SentReply;
use ferrosip_tests::{FakeServices, Script};
use std::sync::Arc;

const VIA: &str = "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n";
const FROM: &str = "From: <sip:a@example.com>;tag=9\r\n";
const TO: &str = "To: <sip:bob@example.com>\r\n";

/// A request: `start` line, Via, To, From, Call-ID, `CSeq: {cseq}`, the `extra` header
/// lines, a matching Content-Length and `body`.
fn req(start: &str, cseq: &str, extra: &str, body: &str) -> SipMessage {
    let raw = format!(
        "{start}\r\n{VIA}{TO}{FROM}Call-ID: c@h\r\nCSeq: {cseq}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    SipMessage::parse(Bytes::from(raw)).expect("test message parses")
}

fn opts(extra: &str) -> SipMessage {
    req(
        "OPTIONS sip:bob@example.com SIP/2.0",
        "1 OPTIONS",
        extra,
        "",
    )
}

fn raw(s: &str) -> SipMessage {
    SipMessage::parse(Bytes::from(s.to_owned())).expect("test message parses")
}

fn code(r: Result<(), Failure>) -> Option<u16> {
    r.err().map(|f| f.reply.map_or(0, |(c, _)| c))
}

#[test]
fn default_masks_match_kamailio() {
    assert_eq!(DEFAULT_CHECKS, 3047);
    assert_eq!(DEFAULT_URI_CHECKS, 7);
    assert!(run(&opts(""), DEFAULT_CHECKS | 0xFFFF, 15, &Config::default()).is_ok());
}

#[test]
fn ruri_version_and_scheme() {
    assert_eq!(code(check_ruri_version(&opts(""))), None);
    let reply = raw(&format!(
        "SIP/2.0 200 OK\r\n{VIA}{TO}{FROM}Call-ID: c@h\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ));
    assert_eq!(code(check_ruri_version(&reply)), None);
    assert_eq!(code(check_ruri_scheme(&reply)), None);
    for good in ["sip:b@h", "sips:b@h", "tel:+15551234", "urn:service:sos"] {
        let m = req(&format!("OPTIONS {good} SIP/2.0"), "1 OPTIONS", "", "");
        assert_eq!(code(check_ruri_scheme(&m)), None, "{good}");
    }
    let m = req(
        "OPTIONS mailto:bob@example.com SIP/2.0",
        "1 OPTIONS",
        "",
        "",
    );
    assert_eq!(code(check_ruri_scheme(&m)), Some(416));
    // A Request-Line version other than 2.0 is already refused by the parser (505).
    let bad = format!(
        "OPTIONS sip:b@h SIP/3.0\r\n{VIA}{TO}{FROM}Call-ID: c@h\r\nCSeq: 1 OPTIONS\r\n\r\n"
    );
    assert!(SipMessage::parse(Bytes::from(bad)).is_err());
}

#[test]
fn required_headers() {
    assert_eq!(code(check_required_headers(&opts(""))), None);
    let no_callid = raw(&format!(
        "OPTIONS sip:b@h SIP/2.0\r\n{VIA}{TO}{FROM}CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ));
    assert_eq!(code(check_required_headers(&no_callid)), Some(0));
    let no_via = raw(&format!(
        "OPTIONS sip:b@h SIP/2.0\r\n{TO}{FROM}Call-ID: c@h\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ));
    assert_eq!(code(check_required_headers(&no_via)), Some(0));
    let two_to = opts("t: <sip:x@example.com>\r\n");
    assert_eq!(code(check_required_headers(&two_to)), Some(0));
}

#[test]
fn cseq_method_and_value() {
    assert_eq!(code(check_cseq_method(&opts(""))), None);
    let m = req("OPTIONS sip:b@h SIP/2.0", "1 INVITE", "", "");
    let f = check_cseq_method(&m).unwrap_err();
    assert_eq!(
        f.reply,
        Some((400, "CSeq method does not match request method"))
    );
    assert_eq!(code(check_cseq_value(&opts(""))), None);
    let m = req("OPTIONS sip:b@h SIP/2.0", "2147483647 OPTIONS", "", "");
    assert_eq!(code(check_cseq_value(&m)), None);
    let m = req("OPTIONS sip:b@h SIP/2.0", "2147483648 OPTIONS", "", "");
    assert_eq!(
        check_cseq_value(&m).unwrap_err().reply,
        Some((400, "CSeq number is illegal"))
    );
}

#[test]
fn content_length() {
    let m = req("MESSAGE sip:b@h SIP/2.0", "1 MESSAGE", "", "hello");
    assert_eq!(code(check_content_length(&m)), None);
    // A datagram longer than Content-Length says.
    let long = format!(
        "OPTIONS sip:b@h SIP/2.0\r\n{VIA}{TO}{FROM}Call-ID: c@h\r\nCSeq: 1 OPTIONS\r\nContent-Length: 2\r\n\r\nhello"
    );
    let m = raw(&long);
    assert_eq!(
        check_content_length(&m).unwrap_err().reply,
        Some((400, "Content-Length mis-match"))
    );
    let none = raw(&format!(
        "OPTIONS sip:b@h SIP/2.0\r\n{VIA}{TO}{FROM}Call-ID: c@h\r\nCSeq: 1 OPTIONS\r\n\r\n"
    ));
    assert_eq!(code(check_content_length(&none)), None);
}

#[test]
fn expires() {
    assert_eq!(code(check_expires(&opts(""))), None);
    assert_eq!(code(check_expires(&opts("Expires: 3600\r\n"))), None);
    assert_eq!(code(check_expires(&opts("Expires: 4294967295\r\n"))), None);
    for bad in ["4294967296", "abc", "-1", "12345678901"] {
        let m = opts(&format!("Expires: {bad}\r\n"));
        assert_eq!(
            check_expires(&m).unwrap_err().reply,
            Some((400, "Expires value is illegal")),
            "{bad}"
        );
    }
    assert_eq!(
        check_expires(&opts("Expires: \r\n")).unwrap_err().reply,
        Some((400, "Missing number in Expires header"))
    );
}

#[test]
fn proxy_require() {
    let supported = parse_list(" foo , bar,");
    assert_eq!(supported, ["foo", "bar"]);
    assert_eq!(code(check_proxy_require(&opts(""), &[])), None);
    let m = opts("Proxy-Require: bar, foo\r\n");
    assert_eq!(code(check_proxy_require(&m, &supported)), None);
    let m = opts("Proxy-Require: foo\r\nProxy-Require: sec-agree\r\n");
    let f = check_proxy_require(&m, &supported).unwrap_err();
    assert_eq!(f.reply, Some((420, "Bad Proxy Require Extension")));
    assert_eq!(f.unsupported.as_deref(), Some("sec-agree"));
    let f = check_proxy_require(&opts("Proxy-Require: foo\r\n"), &[]).unwrap_err();
    assert_eq!(f.unsupported.as_deref(), Some("foo"));
}

#[test]
fn parse_uris() {
    assert_eq!(code(check_parse_uris(&opts(""), 15)), None);
    let m = opts("Contact: <sip:a@192.0.2.1;transport=tcp>\r\n");
    assert_eq!(code(check_parse_uris(&m, 15)), None);
    let m = opts("Contact: <sip:a@192.0.2.1\r\n");
    assert_eq!(
        check_parse_uris(&m, URI_CONTACT).unwrap_err().reply,
        Some((400, "Bad Contact Header"))
    );
    // Contact is only checked when asked for.
    assert_eq!(code(check_parse_uris(&m, DEFAULT_URI_CHECKS)), None);
    let no_to = raw(&format!(
        "OPTIONS sip:b@h SIP/2.0\r\n{VIA}{FROM}Call-ID: c@h\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ));
    assert_eq!(code(check_parse_uris(&no_to, URI_TO)), Some(0));
    assert_eq!(code(check_parse_uris(&no_to, URI_FROM)), None);
}

#[test]
fn digest_and_authorization() {
    let good = "Authorization: Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:b@h\", response=\"0123\"\r\n";
    assert_eq!(code(check_digest(&opts(""), false)), None);
    assert_eq!(code(check_digest(&opts(good), false)), None);
    let qop = "Proxy-Authorization: Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:b@h\", response=\"0123\", qop=auth\r\n";
    assert_eq!(
        check_digest(&opts(qop), false).unwrap_err().reply,
        Some((400, "Bad Auth Credentials"))
    );
    let qop_ok = "Proxy-Authorization: Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:b@h\", response=\"0123\", qop=auth, nc=00000001, cnonce=\"x\"\r\n";
    assert_eq!(code(check_digest(&opts(qop_ok), false)), None);
    let empty_nonce = "Authorization: Digest username=\"a\", realm=\"r\", nonce=\"\", uri=\"sip:b@h\", response=\"0123\"\r\n";
    assert_eq!(
        check_digest(&opts(empty_nonce), false).unwrap_err().reply,
        Some((400, "Auth Empty Nonce"))
    );
    let broken = "Authorization: Digest username\r\n";
    assert_eq!(
        check_digest(&opts(broken), false).unwrap_err().reply,
        Some((400, "Bad Auth Header"))
    );
    let basic = "Authorization: Basic YTpi\r\n";
    assert_eq!(code(check_digest(&opts(basic), false)), Some(0));
    assert_eq!(code(check_digest(&opts(basic), true)), None);
    assert_eq!(code(check_digest(&opts(empty_nonce), true)), Some(400));
}

#[test]
fn duplicate_tags() {
    assert_eq!(code(check_duptags(&opts(""))), None);
    let m = raw(&format!(
        "OPTIONS sip:b@h SIP/2.0\r\n{VIA}To: <sip:b@h>;tag=1;tag=2\r\n{FROM}Call-ID: c@h\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ));
    assert_eq!(
        check_duptags(&m).unwrap_err().reply,
        Some((400, "Many To Tag Params"))
    );
    let m = raw(&format!(
        "OPTIONS sip:b@h SIP/2.0\r\n{VIA}{TO}From: <sip:a@h>;tag=1;TAG=2\r\nCall-ID: c@h\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ));
    assert_eq!(
        check_duptags(&m).unwrap_err().reply,
        Some((400, "Many From Tag Params"))
    );
}

fn with_via(via: &str, extra: &str) -> SipMessage {
    raw(&format!(
        "OPTIONS sip:b@h SIP/2.0\r\nVia: {via}\r\n{TO}{FROM}Call-ID: c@h\r\nCSeq: 1 OPTIONS\r\n{extra}Content-Length: 0\r\n\r\n"
    ))
}

#[test]
fn via1_and_rfc3261() {
    assert_eq!(code(check_via1(&opts(""))), None);
    assert_eq!(
        code(check_via1(&with_via("SIP/2.0/UDP 192.0.2.1", ""))),
        Some(0)
    );
    let old = with_via("SIP/2.0/UDP 192.0.2.1;branch=1234", "");
    assert_eq!(code(check_via1(&old)), None);
    assert_eq!(code(check_rfc3261(&old)), Some(0));
    let lr = "Route: <sip:p1.example.com;lr>\r\nRecord-Route: <sip:p2.example.com;lr>\r\n";
    assert_eq!(code(check_rfc3261(&opts(lr))), None);
    let strict = "Route: <sip:p1.example.com;lr>, <sip:p3.example.com>\r\n";
    assert_eq!(code(check_rfc3261(&opts(strict))), Some(0));
}

#[test]
fn sizes() {
    let cfg = Config::default();
    assert_eq!(code(check_sizes(&opts(""), &cfg)), None);
    let small = |f: fn(&mut Config)| {
        let mut c = Config::default();
        f(&mut c);
        c
    };
    let m = opts(
        "Path: <sip:proxy.example.com;lr>\r\nP-Asserted-Identity: <sip:someone@example.com>\r\n",
    );
    assert_eq!(code(check_sizes(&m, &cfg)), None);
    for c in [
        small(|c| c.size_message = 100),
        small(|c| c.size_ruri = 5),
        small(|c| c.size_method = 3),
        small(|c| c.size_header = 20),
        small(|c| c.size_headers = 100),
        small(|c| c.size_from_uri = 5),
        small(|c| c.size_to_uri = 5),
        small(|c| c.size_path_uri = 10),
        small(|c| c.size_pai_uri = 10),
    ] {
        assert_eq!(code(check_sizes(&m, &c)), Some(0), "{c:?}");
    }
    let body = req("MESSAGE sip:b@h SIP/2.0", "1 MESSAGE", "", "hello world");
    assert_eq!(
        code(check_sizes(&body, &small(|c| c.size_body = 5))),
        Some(0)
    );
    // Off unless the bit or size_checks asks for it.
    let c = small(|c| c.size_ruri = 5);
    assert!(run(&m, RURI_SCHEME, 1, &c).is_ok());
    assert!(run(&m, CHECK_SIZES, 1, &c).is_err());
    assert!(run(
        &m,
        RURI_SCHEME,
        1,
        &Config {
            size_checks: 1,
            ..c
        }
    )
    .is_err());
}

fn ctx(msg: SipMessage, rec: Option<&Arc<FakeServices>>) -> MsgContext {
    let mut c = MsgContext::new(msg, RouteKind::Request, NetInfo::default());
    c.services = rec.map(|r| r.clone() as Arc<dyn Services>);
    c
}

#[test]
fn handler_replies_and_return_codes() {
    let rec = Arc::new(FakeServices::new());
    let cfg = Config {
        proxy_require: vec!["foo".into()],
        ..Config::default()
    };
    let mut c = ctx(opts("Proxy-Require: bar\r\n"), Some(&rec));
    assert_eq!(sanity_check(&mut c, 512, 7, &cfg).unwrap().rc(), 0);
    let no_drop = Config {
        autodrop: false,
        ..cfg.clone()
    };
    assert_eq!(sanity_check(&mut c, 512, 7, &no_drop).unwrap().rc(), -1);
    assert_eq!(sanity_check(&mut c, 1, 7, &cfg).unwrap().rc(), 1);
    {
        let r = rec.replies();
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            SentReply {
                code: 420,
                reason: "Bad Proxy Require Extension".to_string(),
                headers: "Unsupported: bar\r\n".to_string()
            }
        );
    }
    // Masks out of range.
    for (m, u) in [(0, 7), (MAX_CHECKS, 7), (1, 0), (1, URI_MAX_CHECKS)] {
        assert_eq!(sanity_check(&mut c, m, u, &cfg).unwrap().rc(), -1);
    }
    // Silent failures and ACKs get no reply.
    let mut c = ctx(with_via("SIP/2.0/UDP 192.0.2.1", ""), Some(&rec));
    assert_eq!(sanity_check(&mut c, VIA1_HEADER, 7, &cfg).unwrap().rc(), 0);
    let ack = req("ACK sip:b@h SIP/2.0", "1 ACK", "Expires: x\r\n", "");
    let mut c = ctx(ack, Some(&rec));
    assert_eq!(
        sanity_check(&mut c, EXPIRES_VALUE, 7, &cfg).unwrap().rc(),
        0
    );
    assert_eq!(rec.replies().len(), 2);
    // Without a server nothing is sent, the code is still returned.
    let mut c = ctx(opts("Expires: x\r\n"), None);
    assert_eq!(
        sanity_check(&mut c, EXPIRES_VALUE, 7, &cfg).unwrap().rc(),
        0
    );
}

#[test]
fn noreply_keeps_the_reply_for_sanity_reply() {
    let rec = Arc::new(FakeServices::new());
    let cfg = Config {
        noreply: true,
        autodrop: false,
        ..Config::default()
    };
    let mut c = ctx(opts("Expires: x\r\n"), Some(&rec));
    assert_eq!(
        sanity_check(&mut c, EXPIRES_VALUE, 7, &cfg).unwrap().rc(),
        -1
    );
    assert!(rec.replies().is_empty());
    assert_eq!(sanity_reply(&mut c, &cfg).unwrap().rc(), 1);
    // Nothing pending any more: the generic 500.
    assert_eq!(sanity_reply(&mut c, &cfg).unwrap().rc(), 1);
    let r = rec.replies();
    assert_eq!(r[0].code, 400);
    assert_eq!(r[0].reason, "Expires value is illegal");
    assert_eq!(r[1].code, 500);
    // Without noreply, sanity_reply() does nothing.
    assert_eq!(sanity_reply(&mut c, &Config::default()).unwrap().rc(), 1);
    assert_eq!(rec.replies().len(), 2);
}

#[test]
fn script_uses_the_modparams() {
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&SanityModule);
    let cfg = "loadmodule \"sanity.so\"\n\
modparam(\"sanity\", \"autodrop\", 0)\n\
modparam(\"sanity\", \"default_checks\", 512)\n\
modparam(\"sanity\", \"proxy_require\", \"foo, bar\")\n\
request_route {\n if (!sanity_check()) { return(5); }\n if (!sanity_check(256)) { return(6); }\n\
 if (!sanity_check(1024, 8)) { return(7); }\n return(3);\n}\n";
    let script = Script::load(&reg, cfg);
    let def = reg.module("sanity").unwrap();
    for hook in &def.init {
        hook(&script.loaded.modules["sanity"]).unwrap();
    }
    let run_with = |extra: &str| match script.run(ctx(opts(extra), None)).0 {
        Outcome::Return(n) => n,
        o => panic!("{o:?}"),
    };
    assert_eq!(run_with("Proxy-Require: bar\r\n"), 3);
    assert_eq!(run_with("Proxy-Require: baz\r\n"), 5);
    assert_eq!(run_with("Expires: soon\r\n"), 6);
    assert_eq!(run_with("Contact: <sip:a@h\r\n"), 7);
}

#[test]
fn rfc3261_grammar_bit_answers_what_validate_refuses() {
    assert_eq!(code(check_grammar(&opts(""))), None);
    let headers_in_ruri = req("OPTIONS sip:b@h?Route=x SIP/2.0", "1 OPTIONS", "", "");
    assert_eq!(code(check_grammar(&headers_in_ruri)), Some(400));
    let bad_date = opts("Date: Fri, 01 Jan 2010 16:00:00 EST\r\n");
    assert_eq!(code(check_grammar(&bad_date)), Some(400));
    let mismatch = req("OPTIONS sip:b@h SIP/2.0", "1 INVITE", "", "");
    assert_eq!(code(check_grammar(&mismatch)), Some(400));
    // Outside Kamailio's bits (up to 1 << 16): a Kamailio mask never turns it on.
    let kamailio_masks = DEFAULT_CHECKS | CHECK_SIZES | (CHECK_SIZES - 1);
    assert_eq!(kamailio_masks & RFC3261_GRAMMAR, 0);
}

#[test]
fn a_negative_mask_or_size_fails_the_load_naming_module_and_param() {
    for param in ["default_checks", "uri_checks", "size_message", "size_body"] {
        let mut reg = Registry::new();
        ferrosip_script::register_core(&mut reg);
        reg.register(&SanityModule);
        let cfg = format!(
            "loadmodule \"sanity.so\"\nmodparam(\"sanity\", \"{param}\", -1)\nrequest_route {{ return(1); }}\n"
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
            err.contains("module sanity") && err.contains(param),
            "{err}"
        );
    }
}
