//! The Path values and the functions through a loaded script.

use super::*;
use ferrosip_api::{NetInfo, Registry, RouteKind};
use ferrosip_tests::script::message_with;
use ferrosip_tests::Script;

fn sock(proto: Proto, host: &'static str, port: u16) -> SocketDesc {
    SocketDesc::new(proto, Bytes::from_static(host.as_bytes()), port)
}

#[test]
fn one_path_names_the_outbound_socket_two_when_sockets_differ() {
    let plan = PathPlan {
        user: None,
        received: Some(escape_param("sip:127.0.0.2:4000;transport=tcp")),
        double: true,
    };
    let udp = sock(Proto::Udp, "127.0.0.1", 5060);
    assert_eq!(
        path_headers(&plan, &udp, &udp),
        vec!["<sip:127.0.0.1:5060;lr;received=sip:127.0.0.2:4000%3Btransport%3Dtcp>"]
    );
    let tcp = sock(Proto::Tcp, "10.0.0.1", 5080);
    assert_eq!(
        path_headers(&plan, &udp, &tcp),
        vec![
            "<sip:10.0.0.1:5080;transport=tcp;r2=on;lr>".to_string(),
            "<sip:127.0.0.1:5060;r2=on;lr;received=sip:127.0.0.2:4000%3Btransport%3Dtcp>"
                .to_string()
        ]
    );
    let single = PathPlan {
        user: Some(Bytes::from_static(b"sbc")),
        received: None,
        double: false,
    };
    assert_eq!(
        path_headers(&single, &udp, &tcp),
        vec!["<sip:sbc@10.0.0.1:5080;transport=tcp;lr>"]
    );
}

#[test]
fn functions_leave_a_plan_and_refuse_use_received() {
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&PathModule);
    let script = Script::load(
        &reg,
        "loadmodule \"path.so\"\nrequest_route {\n if (!add_path_received(\"edge\")) { return 2; }\n if (add_path()) { return 3; }\n return 1;\n}\n",
    );
    let net = NetInfo {
        proto: Proto::Udp,
        source: "127.0.0.2:40000".parse().unwrap(),
        local: "127.0.0.1:5060".parse().unwrap(),
    };
    let ctx = message_with(
        "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:40000;branch=z9hG4bK-1\n\
         From: <sip:a@example.com>;tag=1\nTo: <sip:a@example.com>\nCall-ID: p\nCSeq: 1 REGISTER\n\
         Contact: <sip:a@192.168.1.20>\nContent-Length: 0\n\n",
        RouteKind::Request,
        net,
    );
    let (outcome, ctx) = script.run(ctx);
    assert_eq!(outcome, ferrosip_script::vm::Outcome::Return(1));
    let plan = ctx.ext.get::<PathPlan>().expect("a plan");
    assert_eq!(plan.user.as_deref(), Some(&b"edge"[..]));
    assert_eq!(plan.received.as_deref(), Some("sip:127.0.0.2:40000"));

    let cfg = "loadmodule \"path.so\"\nmodparam(\"path\", \"use_received\", 1)\nrequest_route { add_path(); }\n";
    let errors = ferrosip_script::load_str("t.cfg", cfg, &Default::default(), &reg)
        .err()
        .expect("use_received is refused");
    assert!(errors.messages.join("\n").contains("use_received"));
}
