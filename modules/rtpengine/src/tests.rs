//! The functions through a loaded script against an ng peer on a local UDP socket that
//! records each command and answers as rtpengine does.

use super::*;
use ferrosip_api::{NetInfo, Proto, Registry};
use ferrosip_script::vm::Outcome;
use ferrosip_tests::script::message_with;
use ferrosip_tests::Script;

fn registry() -> Registry {
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&RtpengineModule);
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
const RELAYED: &str = "v=0\r\no=- 1 1 IN IP4 203.0.113.9\r\ns=-\r\nc=IN IP4 203.0.113.9\r\nt=0 0\r\nm=audio 35000 RTP/AVP 0\r\n";

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

/// An ng peer: offer/answer get RELAYED back, delete "ok", anything else an error.
fn peer(rt: &tokio::runtime::Runtime) -> (String, Arc<Mutex<Vec<Bval>>>) {
    let sock = rt
        .block_on(tokio::net::UdpSocket::bind("127.0.0.1:0"))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    rt.spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            let (n, from) = sock.recv_from(&mut buf).await.unwrap();
            let pos = buf[..n].iter().position(|&c| c == b' ').unwrap();
            let cmd = bencode::decode(&buf[pos + 1..n]).unwrap();
            let name = cmd
                .get("command")
                .and_then(Bval::as_bytes)
                .unwrap()
                .to_vec();
            log.lock().unwrap().push(cmd);
            let answer = match name.as_slice() {
                b"offer" | b"answer" => Bval::Dict(vec![
                    (b"result".to_vec(), Bval::str("ok")),
                    (b"sdp".to_vec(), Bval::str(RELAYED)),
                ]),
                b"delete" => Bval::Dict(vec![(b"result".to_vec(), Bval::str("ok"))]),
                _ => Bval::Dict(vec![
                    (b"result".to_vec(), Bval::str("error")),
                    (b"error-reason".to_vec(), Bval::str("Unknown call-id")),
                ]),
            };
            let mut out = buf[..=pos].to_vec();
            out.extend(answer.to_bytes());
            sock.send_to(&out, from).await.unwrap();
        }
    });
    (format!("udp:{addr}"), seen)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn text(v: Option<&Bval>) -> String {
    String::from_utf8_lossy(v.and_then(Bval::as_bytes).unwrap_or(b"")).into_owned()
}

#[test]
fn offer_answer_and_delete_speak_ng() {
    let rt = runtime();
    let (url, seen) = peer(&rt);
    let reg = registry();
    let cfg = format!(
        "loadmodule \"rtpengine.so\"\nmodparam(\"rtpengine\", \"rtpengine_sock\", \"{url}\")\n\
         request_route {{\n\
         \tif ($rm == \"INVITE\") {{ rtpengine_offer(\"replace-origin trust-address RTP/AVP ICE=remove codec-strip-PCMA direction=internal\"); return $rc; }}\n\
         \tif ($rm == \"OPTIONS\") {{ rtpengine_query(); return $rc; }}\n\
         \trtpengine_manage();\n\treturn $rc;\n}}\n"
    );
    let script = Script::load(&reg, &cfg);
    let (out, ctx) = rt.block_on(script.run_async(message(
        "INVITE sip:bob@example.com SIP/2.0",
        "1 INVITE",
        "",
        SDP,
    )));
    assert_eq!(returned(out), 1);
    assert_eq!(ctx.msg.body(), RELAYED.as_bytes());
    let offer = seen.lock().unwrap().last().unwrap().clone();
    assert_eq!(text(offer.get("command")), "offer");
    assert_eq!(text(offer.get("call-id")), "call-1");
    assert_eq!(text(offer.get("from-tag")), "ft");
    assert!(offer.get("to-tag").is_none());
    assert_eq!(text(offer.get("sdp")), SDP.replace('\n', "\r\n"));
    assert_eq!(
        offer.get("received-from"),
        Some(&Bval::List(vec![
            Bval::str("IP4"),
            Bval::str("198.51.100.7")
        ]))
    );
    assert_eq!(
        offer.get("flags"),
        Some(&Bval::List(vec![Bval::str("trust-address")]))
    );
    assert_eq!(
        offer.get("replace"),
        Some(&Bval::List(vec![Bval::str("origin")]))
    );
    assert_eq!(text(offer.get("transport-protocol")), "RTP/AVP");
    assert_eq!(text(offer.get("ICE")), "remove");
    assert_eq!(
        offer.get("direction"),
        Some(&Bval::List(vec![Bval::str("internal")]))
    );
    assert_eq!(
        offer.get("codec").and_then(|c| c.get("strip")),
        Some(&Bval::List(vec![Bval::str("PCMA")]))
    );

    // ACK with SDP through rtpengine_manage: an answer, the callee's tag as from-tag.
    let (out, _) = rt.block_on(script.run_async(message(
        "ACK sip:bob@example.com SIP/2.0",
        "1 ACK",
        ";tag=tt",
        SDP,
    )));
    assert_eq!(returned(out), 1);
    let answer = seen.lock().unwrap().last().unwrap().clone();
    assert_eq!(text(answer.get("command")), "answer");
    assert_eq!(
        (text(answer.get("from-tag")), text(answer.get("to-tag"))),
        ("tt".into(), "ft".into())
    );

    // An error answer fails the function.
    let (out, _) = rt.block_on(script.run_async(message(
        "OPTIONS sip:bob@example.com SIP/2.0",
        "1 OPTIONS",
        "",
        "",
    )));
    assert_eq!(returned(out), -1);

    let (out, _) = rt.block_on(script.run_async(message(
        "BYE sip:bob@example.com SIP/2.0",
        "2 BYE",
        ";tag=tt",
        "",
    )));
    assert_eq!(returned(out), 1);
    let delete = seen.lock().unwrap().last().unwrap().clone();
    assert_eq!(text(delete.get("command")), "delete");
    assert!(delete.get("sdp").is_none());

    let show = rt
        .block_on(
            reg.rpc("rtpengine.show")
                .unwrap()
                .call(vec![Value::from("all")]),
        )
        .unwrap();
    assert!(format!("{show:?}").contains(&url), "{show:?}");
    let ping = rt
        .block_on(
            reg.rpc("rtpengine.ping")
                .unwrap()
                .call(vec![Value::from(url.clone())]),
        )
        .unwrap();
    // The peer answers ping with an error ("Unknown call-id"): shown as it is.
    assert!(format!("{ping:?}").contains("error"), "{ping:?}");
}

#[test]
fn unsupported_flags_and_parameters_fail_the_load() {
    let reg = registry();
    let cfg = |params: &str, call: &str| {
        format!("loadmodule \"rtpengine.so\"\nmodparam(\"rtpengine\", \"rtpengine_sock\", \"udp:127.0.0.1:2223\")\n{params}\nrequest_route {{\n\t{call};\n}}\n")
    };
    for (params, call, wanted) in [
        ("", "rtpengine_offer(\"via-branch=1\")", "via-branch"),
        ("", "rtpengine_offer(\"sdp=x\")", "set by the module"),
        (
            "modparam(\"rtpengine\", \"hash_table_size\", 16)",
            "rtpengine_manage()",
            "hash_table_size",
        ),
        (
            "modparam(\"rtpengine\", \"rtpengine_sock\", \"unix:/tmp/x\")",
            "rtpengine_manage()",
            "UDP",
        ),
    ] {
        let err = ferrosip_script::load_str("t.cfg", &cfg(params, call), &Default::default(), &reg)
            .err()
            .unwrap_or_else(|| panic!("{call} with {params} loads"));
        assert!(
            err.messages.join("\n").contains(wanted),
            "{:?}",
            err.messages
        );
    }
    assert_eq!(parse_ng_flags(b"  ").unwrap(), NgFlags::default());
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
