//! The functions through a loaded script against a relay on a local UDP socket that
//! records each command and answers as rtpproxy does.

use super::*;
use ferrosip_api::{NetInfo, Proto, Registry};
use ferrosip_script::vm::Outcome;
use ferrosip_tests::script::message_with;
use ferrosip_tests::Script;
use std::sync::Arc;

fn registry() -> Registry {
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&RtpproxyModule);
    reg
}

fn returned(outcome: Outcome) -> i32 {
    match outcome {
        Outcome::Return(code) => code,
        other => panic!("the route returns a code, not {other:?}"),
    }
}

const SDP: &str =
    "v=0\no=- 1 1 IN IP4 192.168.1.20\ns=-\nc=IN IP4 192.168.1.20\nt=0 0\nm=audio 4000 RTP/AVP 0\n";

fn message(first_line: &str, cseq: &str, to_tag: &str, body: &str) -> MsgContext {
    let raw = format!(
        "{first_line}\n\
         Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-1\n\
         From: <sip:alice@example.com>;tag=ft\n\
         To: <sip:bob@example.com>{to_tag}\n\
         Call-ID: call-1\n\
         CSeq: {cseq}\n\
         Content-Type: application/sdp\n\
         Content-Length: {}\n\n{body}",
        body.replace('\n', "\r\n").len()
    );
    let net = NetInfo {
        proto: Proto::Udp,
        source: "198.51.100.7:5060".parse().unwrap(),
        local: "127.0.0.1:5060".parse().unwrap(),
    };
    message_with(&raw, ferrosip_api::RouteKind::Request, net)
}

/// A relay answering `port 203.0.113.9` to U/L and `0` to D; the commands it got.
fn relay(rt: &ferrosip_api::tokio::runtime::Runtime) -> (String, Arc<Mutex<Vec<String>>>) {
    let sock = rt
        .block_on(tokio::net::UdpSocket::bind("127.0.0.1:0"))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    rt.spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            let (n, from) = sock.recv_from(&mut buf).await.unwrap();
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            let (cookie, cmd) = text.split_once(' ').unwrap();
            log.lock().unwrap().push(cmd.to_string());
            let answer = if cmd.starts_with('D') {
                "0".to_string()
            } else {
                "35000 203.0.113.9".to_string()
            };
            sock.send_to(format!("{cookie} {answer}\n").as_bytes(), from)
                .await
                .unwrap();
        }
    });
    (format!("udp:{addr}"), seen)
}

fn runtime() -> ferrosip_api::tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn offer_answer_and_delete_talk_to_the_relay_and_rewrite_the_sdp() {
    let rt = runtime();
    let (url, seen) = relay(&rt);
    let reg = registry();
    let cfg = format!(
        "loadmodule \"rtpproxy.so\"\nmodparam(\"rtpproxy\", \"rtpproxy_sock\", \"{url}\")\n\
         request_route {{\n\
         \tif ($rm == \"INVITE\") {{ rtpproxy_offer(\"co\"); return $rc; }}\n\
         \tif ($rm == \"ACK\") {{ rtpproxy_answer(\"r\"); return $rc; }}\n\
         \trtpproxy_manage();\n\treturn $rc;\n}}\n"
    );
    let script = Script::load(&reg, &cfg);

    let (out, ctx) = rt.block_on(script.run_async(message(
        "INVITE sip:bob@example.com SIP/2.0",
        "1 INVITE",
        "",
        SDP,
    )));
    assert_eq!(returned(out), 1);
    let body = String::from_utf8_lossy(ctx.msg.body()).to_string();
    assert_eq!(
        body,
        "v=0\r\no=- 1 1 IN IP4 203.0.113.9\r\ns=-\r\nc=IN IP4 203.0.113.9\r\nt=0 0\r\nm=audio 35000 RTP/AVP 0\r\na=nortpproxy:yes\r\n"
    );
    // Without r the message's source address is sent, not the SDP's.
    assert_eq!(
        seen.lock().unwrap().last().unwrap(),
        "U call-1 198.51.100.7 4000 ft;1"
    );

    // An SDP a relay already took is left alone.
    let (out, _) = rt.block_on(script.run_async(message(
        "INVITE sip:bob@example.com SIP/2.0",
        "1 INVITE",
        "",
        &body.replace("\r\n", "\n"),
    )));
    assert_eq!(returned(out), -1);
    assert_eq!(seen.lock().unwrap().len(), 1);

    // The answer in an ACK: the callee's tag first, the SDP's address trusted.
    let (out, _) = rt.block_on(script.run_async(message(
        "ACK sip:bob@example.com SIP/2.0",
        "1 ACK",
        ";tag=tt",
        SDP,
    )));
    assert_eq!(returned(out), 1);
    assert_eq!(
        seen.lock().unwrap().last().unwrap(),
        "L call-1 192.168.1.20 4000 tt;1 ft;1"
    );

    // BYE through rtpproxy_manage: a delete.
    let (out, _) = rt.block_on(script.run_async(message(
        "BYE sip:bob@example.com SIP/2.0",
        "2 BYE",
        ";tag=tt",
        "",
    )));
    assert_eq!(returned(out), 1);
    assert_eq!(seen.lock().unwrap().last().unwrap(), "D call-1 ft tt");

    let list = rt
        .block_on(reg.rpc("rtpproxy.list").unwrap().call(vec![]))
        .unwrap();
    let RpcValue::Array(nodes) = list else {
        panic!("{list:?}")
    };
    assert_eq!(nodes.len(), 1);
    assert!(format!("{nodes:?}").contains("(\"disabled\", Int(0))"));
    // Disabled by the operator: no relay left, the call fails without sending.
    rt.block_on(
        reg.rpc("rtpproxy.enable")
            .unwrap()
            .call(vec![Value::from(url.clone()), Value::Int(0)]),
    )
    .unwrap();
    let (out, _) = rt.block_on(script.run_async(message(
        "BYE sip:bob@example.com SIP/2.0",
        "3 BYE",
        ";tag=tt",
        "",
    )));
    assert_eq!(returned(out), -1);
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[test]
fn bad_flags_and_parameters_fail_the_load() {
    let reg = registry();
    let bad = "loadmodule \"rtpproxy.so\"\nmodparam(\"rtpproxy\", \"rtpproxy_sock\", \"udp:127.0.0.1:7722\")\nrequest_route {\n\trtpproxy_manage(\"cxo\");\n}\n";
    let err = ferrosip_script::load_str("t.cfg", bad, &Default::default(), &reg)
        .err()
        .expect("bad flag refused");
    assert!(
        err.messages.join("\n").contains("t.cfg:4:18")
            && err.messages.join("\n").contains("rtpproxy flag 'x'"),
        "{:?}",
        err.messages
    );
    let sock = "loadmodule \"rtpproxy.so\"\nmodparam(\"rtpproxy\", \"rtpproxy_sock\", \"tcp:127.0.0.1:7722\")\nrequest_route {\n\trtpproxy_manage();\n}\n";
    let err = ferrosip_script::load_str("t.cfg", sock, &Default::default(), &reg)
        .err()
        .expect("bad socket refused");
    assert!(
        err.messages.join("\n").contains("tcp:127.0.0.1:7722"),
        "{:?}",
        err.messages
    );
    let set = "loadmodule \"rtpproxy.so\"\nmodparam(\"rtpproxy\", \"rtpproxy_sock\", \"udp:127.0.0.1:7722\")\nrequest_route {\n\tif (!set_rtp_proxy_set(\"3\")) {\n\t\treturn -5;\n\t}\n\trtpproxy_manage();\n}\n";
    let script = Script::load(&reg, set);
    let rt = runtime();
    let (out, _) = rt.block_on(script.run_async(message(
        "BYE sip:bob@example.com SIP/2.0",
        "2 BYE",
        ";tag=tt",
        "",
    )));
    assert_eq!(returned(out), -5);
}

#[test]
fn declarations_are_consistent() {
    let reg = registry();
    assert!(
        reg.declaration_errors().is_empty(),
        "{:?}",
        reg.declaration_errors()
    );
}
