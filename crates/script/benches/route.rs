//! A typical request_route of ~40 statements against a parsed INVITE: what one message
//! costs in the VM (no I/O). Run: cargo bench -p ferrosip-script --bench route

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use ferrosip_api::{MsgContext, NetInfo, Proto, Registry, RouteKind};
use ferrosip_script::vm::{run_blocking, Vm};
use ferrosip_script::{load_str, LoadOptions};
use ferrosip_sip::SipMessage;

const INVITE: &[u8] = b"INVITE sip:+4930123456@sip.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=9fxced76sl\r\n\
To: <sip:+4930123456@sip.example.com>\r\n\
Call-ID: 3848276298220188511@192.0.2.10\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@192.0.2.10:5060>\r\n\
User-Agent: PolycomVVX-VVX_411-UA/5.9.0\r\n\
Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE\r\n\
Supported: replaces, timer\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 0\r\n\
\r\n";

/// ~40 statements of the kind every production request_route starts with.
const SCRIPT: &str = r#"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"

request_route {
    if (!mf_process_maxfwd_header("10")) {
        exit;
    }
    if (is_method("PUBLISH|SUBSCRIBE")) {
        exit;
    }
    if ($ua =~ "friendly-scanner|sipcli|sipvicious") {
        exit;
    }
    if (has_totag()) {
        exit;
    }
    if (is_method("CANCEL")) {
        exit;
    }
    $var(caller) = $fU;
    $var(callee) = $rU;
    $var(domain) = $rd;
    $var(count) = 0;
    $var(is_intl) = 0;
    if ($var(callee) =~ "^\+") {
        $var(is_intl) = 1;
        $var(count) = $var(count) + 1;
    }
    if (!is_present_hf("Contact")) {
        exit;
    }
    if ($hdr(Supported) =~ "timer") {
        $var(count) = $var(count) + 1;
    }
    switch ($rm) {
        case "INVITE":
            $var(kind) = "call";
            break;
        case "REGISTER":
            $var(kind) = "reg";
            break;
        case "OPTIONS":
            $var(kind) = "ping";
            break;
        default:
            $var(kind) = "other";
    }
    if ($var(kind) == "call" && $var(is_intl) == 1) {
        $var(route) = "intl";
    } else if ($var(kind) == "call") {
        $var(route) = "national";
    } else {
        $var(route) = "none";
    }
    if ($si == "10.0.0.1" || $sp == 1) {
        exit;
    }
    if (uri == myself) {
        $var(local) = 1;
    }
    $var(prefix) = $(var(callee){s.substr,0,3});
    if ($var(prefix) == "+49") {
        $var(country) = "DE";
    }
    $du = "sip:127.0.0.1:5070";
    return 1;
}
"#;

fn bench(c: &mut Criterion) {
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&ferrosip_mod_maxfwd::MaxfwdModule);
    reg.register(&ferrosip_mod_textops::TextopsModule);
    reg.register(&ferrosip_mod_siputils::SiputilsModule);
    let loaded = match load_str("bench.cfg", SCRIPT, &LoadOptions::default(), &reg) {
        Ok(l) => l,
        Err(e) => panic!("{e}"),
    };
    let prog = loaded.program.clone();
    let route = prog.main_route(RouteKind::Request).expect("request_route");
    let net = NetInfo {
        proto: Proto::Udp,
        source: "192.0.2.10:5060".parse().expect("addr"),
        local: "127.0.0.1:5060".parse().expect("addr"),
    };
    let buf = Bytes::from_static(INVITE);
    let mut vm = Vm::new();
    c.bench_function("request_route_40_statements", |b| {
        b.iter(|| {
            let msg = SipMessage::parse(buf.clone()).expect("parses");
            let mut ctx = MsgContext::new(msg, RouteKind::Request, net);
            let out = run_blocking(&mut vm, &prog, route, &mut ctx).expect("runs");
            criterion::black_box(out);
        })
    });
    // The same route with the statement trace on, its events discarded: what tracing a
    // message costs (with the trace off, the bench above runs the untraced loop).
    struct Discard;
    impl ferrosip_api::trace::TraceSink for Discard {
        fn event(&self, e: &ferrosip_api::trace::TraceEvent<'_>) {
            criterion::black_box(e);
        }
    }
    let trace = reg.cfg_trace();
    trace.set_sink(Some(std::sync::Arc::new(Discard)));
    trace.set_on(true);
    c.bench_function("request_route_40_statements_traced", |b| {
        b.iter(|| {
            let msg = SipMessage::parse(buf.clone()).expect("parses");
            let mut ctx = MsgContext::new(msg, RouteKind::Request, net);
            let out = run_blocking(&mut vm, &prog, route, &mut ctx).expect("runs");
            criterion::black_box(out);
        })
    });
    trace.set_on(false);
    let msg = SipMessage::parse(buf.clone()).expect("parses");
    c.bench_function("parse_only_same_invite", |b| {
        b.iter(|| criterion::black_box(SipMessage::parse(buf.clone()).expect("parses")))
    });
    drop(msg);
}

criterion_group!(benches, bench);
criterion_main!(benches);
