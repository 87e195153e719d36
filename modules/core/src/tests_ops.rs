//! R-URI rewriting, forwarding flags and forward() through a recording Services.

use crate::uri_ops::*;
use crate::CoreModule;
use bytes::Bytes;
use ferrosip_api::{ForwardFlags, MsgContext, NetInfo, Proto, Registry, RouteKind, Target};
use ferrosip_sip::SipMessage;
use ferrosip_tests::{FakeServices, Script};
use std::sync::Arc;

const REQ: &str = "INVITE sip:+4930123:secret@example.com:5070;transport=tcp?Subject=x SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Content-Length: 0\r\n\r\n";

fn ctx() -> MsgContext {
    let msg = SipMessage::parse(Bytes::from_static(REQ.as_bytes())).expect("test message parses");
    MsgContext::new(msg, RouteKind::Request, NetInfo::default())
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn ruri(c: &MsgContext) -> String {
    String::from_utf8_lossy(c.msg.request_uri().unwrap()).into_owned()
}

#[test]
fn rewrite_parts() {
    let mut c = ctx();
    rewrite_host(&mut c, b("10.0.0.2")).unwrap();
    assert_eq!(
        ruri(&c),
        "sip:+4930123:secret@10.0.0.2:5070;transport=tcp?Subject=x"
    );
    rewrite_port(&mut c, b("5080")).unwrap();
    assert_eq!(
        ruri(&c),
        "sip:+4930123:secret@10.0.0.2:5080;transport=tcp?Subject=x"
    );
    rewrite_port(&mut c, b("")).unwrap();
    assert_eq!(
        ruri(&c),
        "sip:+4930123:secret@10.0.0.2;transport=tcp?Subject=x"
    );
    assert!(rewrite_port(&mut c, b("x")).is_err());
    rewrite_hostport(&mut c, b("[2001:db8::1]:5090")).unwrap();
    assert_eq!(
        ruri(&c),
        "sip:+4930123:secret@[2001:db8::1]:5090;transport=tcp?Subject=x"
    );
    rewrite_hostport(&mut c, b("h.example.com")).unwrap();
    assert_eq!(
        ruri(&c),
        "sip:+4930123:secret@h.example.com;transport=tcp?Subject=x"
    );
    rewrite_user(&mut c, b("alice")).unwrap();
    assert_eq!(
        ruri(&c),
        "sip:alice:secret@h.example.com;transport=tcp?Subject=x"
    );
    rewrite_userpass(&mut c, b("bob:pw")).unwrap();
    assert_eq!(ruri(&c), "sip:bob:pw@h.example.com;transport=tcp?Subject=x");
    rewrite_user(&mut c, b("")).unwrap();
    assert_eq!(ruri(&c), "sip:h.example.com;transport=tcp?Subject=x");
    rewrite_uri(&mut c, b("sips:carol@example.org")).unwrap();
    assert_eq!(ruri(&c), "sips:carol@example.org");
    assert!(rewrite_uri(&mut c, b("not a uri")).is_err());
    revert_uri(&mut c).unwrap();
    assert_eq!(
        ruri(&c),
        "sip:+4930123:secret@example.com:5070;transport=tcp?Subject=x"
    );
    assert!(c.msg.to_bytes().starts_with(
        b"INVITE sip:+4930123:secret@example.com:5070;transport=tcp?Subject=x SIP/2.0\r\n"
    ));
}

#[test]
fn prefix_and_strip() {
    let mut c = ctx();
    strip(&mut c, 3).unwrap();
    assert_eq!(
        ruri(&c),
        "sip:30123:secret@example.com:5070;transport=tcp?Subject=x"
    );
    prefix(&mut c, b("0049")).unwrap();
    assert_eq!(
        ruri(&c),
        "sip:004930123:secret@example.com:5070;transport=tcp?Subject=x"
    );
    strip_tail(&mut c, 2).unwrap();
    assert_eq!(
        ruri(&c),
        "sip:0049301:secret@example.com:5070;transport=tcp?Subject=x"
    );
    strip(&mut c, 99).unwrap();
    assert_eq!(ruri(&c), "sip:example.com:5070;transport=tcp?Subject=x");
    prefix(&mut c, b("9")).unwrap();
    assert_eq!(ruri(&c), "sip:9@example.com:5070;transport=tcp?Subject=x");
}

#[test]
fn forwarding_flags() {
    let mut c = ctx();
    force_rport(&mut c).unwrap();
    add_local_rport(&mut c).unwrap();
    let f = c.ext.get::<ForwardFlags>().unwrap();
    assert!(f.force_rport && f.local_rport);
    conn_flag(&mut c, |f| f.reply_close = true).unwrap();
    assert!(c.ext.get::<ConnFlags>().unwrap().reply_close);
}

#[test]
fn script_rewrites_and_forwards() {
    use ferrosip_script::vm::Outcome;
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&CoreModule);
    let cfg = r#"request_route {
    strip(3);
    prefix("0");
    rewritehostport("10.0.0.9:5062");
    force_rport();
    forward();
    forward_tcp("10.1.1.1", 5070);
    forward_udp();
    return(4);
}
"#;
    let rec = Arc::new(FakeServices::new());
    let mut c = ctx();
    c.services = Some(rec.clone());
    let (o, c) = Script::load(&reg, cfg).run(c);
    assert!(matches!(o, Outcome::Return(4)), "{o:?}");
    assert_eq!(
        ruri(&c),
        "sip:030123:secret@10.0.0.9:5062;transport=tcp?Subject=x"
    );
    assert!(c.ext.get::<ForwardFlags>().unwrap().force_rport);
    let f = rec.forwards();
    assert_eq!(f.len(), 3);
    assert_eq!(f[0], None);
    assert_eq!(
        f[1],
        Some(Target {
            host: b("10.1.1.1"),
            port: Some(5070),
            proto: Some(Proto::Tcp)
        })
    );
    assert_eq!(
        f[2],
        Some(Target {
            host: b("10.0.0.9"),
            port: Some(5062),
            proto: Some(Proto::Udp)
        })
    );
}

#[test]
fn forward_without_server_is_an_error() {
    let mut reg = Registry::new();
    reg.register(&CoreModule);
    let f = &reg.function("forward").unwrap()[0];
    // Async: a next hop given by a host name not in the DNS cache is awaited.
    let ferrosip_api::Callable::Async(call) = &f.call else {
        panic!("forward() is an async function")
    };
    let mut c = ctx();
    let runtime = ferrosip_api::tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let apply = runtime.block_on(call(&mut c, &[]));
    let e = apply(&mut c).unwrap_err();
    assert!(
        e.message.contains("needs a running server"),
        "{}",
        e.message
    );
}
