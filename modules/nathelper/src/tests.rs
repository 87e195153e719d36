//! The functions through a loaded script, on messages "received" from a chosen address.

use super::*;
use ferrosip_api::{NetInfo, Registry, RouteKind};
use ferrosip_script::vm::Outcome;
use ferrosip_tests::script::message_with;
use ferrosip_tests::Script;

fn registry() -> Registry {
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&ferrosip_mod_usrloc::UsrlocModule);
    reg.register(&NathelperModule);
    reg
}

fn config(params: &str, route: &str) -> String {
    format!("loadmodule \"nathelper.so\"\n{params}\nrequest_route {{\n{route}\n}}\n")
}

fn returned(outcome: Outcome) -> i32 {
    match outcome {
        Outcome::Return(code) => code,
        other => panic!("the route returns a code, not {other:?}"),
    }
}

/// A REGISTER with `contact` and `via` from `source` over `proto`, with `body` as SDP.
fn register_from(source: &str, proto: Proto, via: &str, contact: &str) -> MsgContext {
    let raw = format!(
        "REGISTER sip:example.com SIP/2.0\n\
         Via: SIP/2.0/UDP {via};branch=z9hG4bK-1\n\
         From: <sip:alice@example.com>;tag=1\n\
         To: <sip:alice@example.com>\n\
         Call-ID: nat-test\n\
         CSeq: 1 REGISTER\n\
         Contact: {contact}\n\
         Content-Length: 0\n\n"
    );
    let net = NetInfo {
        proto,
        source: source.parse().unwrap(),
        local: "127.0.0.1:5060".parse().unwrap(),
    };
    message_with(&raw, RouteKind::Request, net)
}

#[test]
fn bad_flags_fail_the_load_at_their_column() {
    for (call, what, at) in [
        ("nat_uac_test(\"abc\")", "abc", "t.cfg:4:18"),
        ("nat_uac_test(\"256\")", "1..255", "t.cfg:4:18"),
        ("fix_nated_sdp(\"16\")", "1..15", "t.cfg:4:19"),
    ] {
        let cfg = config("", &format!("if ({call}) {{ return 1; }}"));
        let errors = ferrosip_script::load_str("t.cfg", &cfg, &Default::default(), &registry())
            .err()
            .unwrap_or_else(|| panic!("{call} must fail the load"));
        let text = errors.messages.join("\n");
        assert!(text.contains(at), "{call}: {text}");
        assert!(text.contains(what), "{call}: {text}");
    }
}

#[test]
fn unsupported_ping_parameters_are_refused() {
    let cfg = config(
        "modparam(\"nathelper\", \"keepalive_timeout\", 60)",
        "return 1;",
    );
    let errors = ferrosip_script::load_str("t.cfg", &cfg, &Default::default(), &registry())
        .err()
        .expect("keepalive_timeout is refused");
    assert!(errors.messages.join("\n").contains("keepalive_timeout"));
}

#[test]
fn nat_uac_test_flags_each_detect_their_case() {
    let reg = registry();
    let script = Script::load(
        &reg,
        &config(
            "",
            "$var(r) = 0;\n\
             if (nat_uac_test(\"1\")) { $var(r) = $var(r) + 1; }\n\
             if (nat_uac_test(\"2\")) { $var(r) = $var(r) + 2; }\n\
             if (nat_uac_test(\"4\")) { $var(r) = $var(r) + 4; }\n\
             if (nat_uac_test(\"16\")) { $var(r) = $var(r) + 16; }\n\
             if (nat_uac_test(\"32\")) { $var(r) = $var(r) + 32; }\n\
             if (nat_uac_test(\"64\")) { $var(r) = $var(r) + 64; }\n\
             if (nat_uac_test(\"128\")) { $var(r) = $var(r) + 128; }\n\
             return 1;",
        ),
    );
    // Behind NAT: private Contact and Via, seen from a public address and another port.
    let hits = |ctx: MsgContext| {
        let (outcome, ctx) = script.run(ctx);
        assert_eq!(returned(outcome), 1);
        ctx.vars.get(reg.intern_var("r")).clone()
    };
    let ctx = register_from(
        "203.0.113.9:40000",
        Proto::Udp,
        "192.168.1.20:5060",
        "<sip:alice@192.168.1.20:5060>",
    );
    assert_eq!(hits(ctx), Value::Int(1 + 2 + 4 + 16 + 128));
    // Not behind NAT: everything matches the source.
    let ctx = register_from(
        "203.0.113.9:5060",
        Proto::Udp,
        "203.0.113.9",
        "<sip:alice@203.0.113.9>",
    );
    assert_eq!(hits(ctx), Value::Int(0));
    // A private source over WebSocket.
    let ctx = register_from(
        "10.0.0.5:5060",
        Proto::Ws,
        "10.0.0.5",
        "<sip:alice@10.0.0.5;transport=ws>",
    );
    assert_eq!(hits(ctx), Value::Int(1 + 4 + 32 + 64));
}

#[test]
fn fix_nated_contact_and_register_use_the_source() {
    let reg = registry();
    let script = Script::load(
        &reg,
        &config(
            "modparam(\"nathelper\", \"received_avp\", \"$avp(RECEIVED)\")",
            "fix_nated_register(); fix_nated_contact(); return 1;",
        ),
    );
    let ctx = register_from(
        "127.0.0.2:40000",
        Proto::Tcp,
        "192.168.1.20:5060",
        "\"A\" <sip:alice@192.168.1.20:5060;ob>;expires=60",
    );
    let (outcome, ctx) = script.run(ctx);
    assert_eq!(returned(outcome), 1);
    assert_eq!(
        ctx.msg.headers_named("Contact").next().unwrap(),
        b"\"A\" <sip:alice@127.0.0.2:40000;ob>;expires=60"
    );
    let slot = reg.intern_avp("RECEIVED");
    assert_eq!(
        ctx.avps.get(slot, 0),
        Some(&Value::from("sip:127.0.0.2:40000;transport=tcp"))
    );
}

#[test]
fn contact_alias_then_ruri_alias_route_back_to_the_source() {
    let reg = registry();
    let script = Script::load(
        &reg,
        &config(
            "",
            "if (!add_contact_alias()) { return 9; } $var(c) = $ct; return 1;",
        ),
    );
    let ctx = register_from(
        "127.0.0.2:40000",
        Proto::Udp,
        "192.168.1.20:5060",
        "<sip:alice@192.168.1.20:5060>",
    );
    let (outcome, ctx) = script.run(ctx);
    assert_eq!(returned(outcome), 1);
    let contact = ctx.msg.headers_named("Contact").next().unwrap().to_vec();
    assert_eq!(
        contact,
        b"<sip:alice@192.168.1.20:5060;alias=127.0.0.2~40000~1>"
    );
    // Already where the source is: nothing added.
    let ctx = register_from(
        "127.0.0.2:5060",
        Proto::Udp,
        "127.0.0.2",
        "<sip:alice@127.0.0.2>",
    );
    let (_, ctx) = script.run(ctx);
    assert_eq!(
        ctx.msg.headers_named("Contact").next().unwrap(),
        b"<sip:alice@127.0.0.2>"
    );

    // A request to that contact: handle_ruri_alias() sends it to the alias address.
    let script = Script::load(&reg, &config("", "handle_ruri_alias(); return $rc;"));
    let invite = |ruri: &str| {
        message_with(
            &format!(
                "INVITE {ruri} SIP/2.0\nVia: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bK-2\n\
                 From: <sip:bob@example.com>;tag=2\nTo: <sip:alice@example.com>\nCall-ID: x\n\
                 CSeq: 1 INVITE\nContent-Length: 0\n\n"
            ),
            RouteKind::Request,
            NetInfo::default(),
        )
    };
    let (outcome, ctx) = script.run(invite(
        "sip:alice@192.168.1.20:5060;alias=127.0.0.2~40000~2;ob",
    ));
    assert_eq!(returned(outcome), 1);
    assert_eq!(
        ctx.msg.request_uri().unwrap(),
        b"sip:alice@192.168.1.20:5060;ob"
    );
    assert_eq!(
        ctx.dst_uri.as_deref(),
        Some(&b"sip:127.0.0.2:40000;transport=tcp"[..])
    );
    let (outcome, ctx) = script.run(invite("sip:alice@192.168.1.20:5060"));
    assert_eq!(returned(outcome), 2);
    assert_eq!(ctx.dst_uri, None);
}

#[test]
fn is_rfc1918_takes_pseudo_variables() {
    let reg = registry();
    let script = Script::load(
        &reg,
        &config("", "if (is_rfc1918(\"$si\")) { return 1; } return 2;"),
    );
    let ctx = register_from(
        "172.20.1.1:5060",
        Proto::Udp,
        "172.20.1.1",
        "<sip:a@172.20.1.1>",
    );
    assert_eq!(returned(script.run(ctx).0), 1);
    let ctx = register_from(
        "127.0.0.2:5060",
        Proto::Udp,
        "127.0.0.2",
        "<sip:a@127.0.0.2>",
    );
    assert_eq!(returned(script.run(ctx).0), 2);
}

#[test]
fn contacts_are_pinged_at_their_received_address_from_their_socket() {
    use ferrosip_mod_usrloc::{Contact, ContactInfo};
    let reg = registry();
    let mut params = reg.module("nathelper").unwrap().default_params();
    params.push("natping_interval", Value::Int(10));
    params.push("sipping_from", Value::from("sip:pinger@example.com"));
    params.push("sipping_bflag", Value::Int(7));
    params.push("natping_disable_bflag", Value::Int(8));
    let cfg = PingConfig::from_params(&params).unwrap();
    let contact = |received: &str, cflags: u32, path: &str| {
        Contact::new(&ContactInfo {
            uri: b"sip:alice@192.168.1.20:5060".to_vec(),
            received: received.as_bytes().to_vec(),
            path: path.as_bytes().to_vec(),
            socket: b"udp:127.0.0.1:5060".to_vec(),
            expires: i64::MAX,
            cflags,
            ..ContactInfo::default()
        })
        .unwrap()
    };
    let now = 1000;
    assert_eq!(
        ping::plan(&cfg, None, &contact("sip:127.0.0.2:40000", 0, ""), now),
        Some(ping::Ping::Udp {
            local: Some("127.0.0.1:5060".parse().unwrap()),
            dst: "127.0.0.2:40000".parse().unwrap()
        })
    );
    assert_eq!(ping::plan(&cfg, None, &contact("", 1 << 8, ""), now), None);
    assert_eq!(
        ping::plan(&cfg, None, &contact("sip:127.0.0.2:40000", 1 << 7, ""), now),
        Some(ping::Ping::Sip {
            uri: Bytes::from_static(b"sip:alice@192.168.1.20:5060"),
            dst_uri: Some(Bytes::from_static(b"sip:127.0.0.2:40000")),
            route: None
        })
    );
    // Over TCP, or behind an edge proxy (Path), no UDP packet.
    assert_eq!(
        ping::plan(
            &cfg,
            None,
            &contact("sip:127.0.0.2:40000;transport=tcp", 0, ""),
            now
        ),
        None
    );
    assert_eq!(
        ping::plan(&cfg, None, &contact("", 0, "<sip:10.0.0.1;lr>"), now),
        None
    );
    // ping_nated_only: only contacts with usrloc's nat_bflag.
    let mut params2 = params.clone();
    params2.push("ping_nated_only", Value::Int(1));
    let only = PingConfig::from_params(&params2).unwrap();
    assert_eq!(
        ping::plan(&only, Some(3), &contact("sip:127.0.0.2:40000", 0, ""), now),
        None
    );
    assert!(ping::plan(
        &only,
        Some(3),
        &contact("sip:127.0.0.2:40000", 1 << 3, ""),
        now
    )
    .is_some());
}
