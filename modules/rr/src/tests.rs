//! Unit tests on real parsed messages, and script runs.

use crate::ops::*;
use crate::record::{insert_record_route, record_route_headers, DoubleRr, RecordRoutePlan};
use crate::RrModule;
use bytes::Bytes;
use ferrosip_api::rr::{LocalRoute, RouteSendSocket, SocketDesc};
use ferrosip_api::{MsgContext, NetInfo, Proto, Registry, RouteKind};
use ferrosip_script::vm::Outcome;
use ferrosip_sip::SipMessage;
use ferrosip_tests::{FakeServices, Script};
use regex::bytes::Regex;
use std::sync::Arc;

/// This proxy: 10.0.0.1:5060 (UDP) and 192.0.2.1:5080 (TCP), also known as
/// proxy.example.com; rr never sends a reply or forwards itself.
fn me() -> Arc<FakeServices> {
    Arc::new(
        FakeServices::new()
            .myself("10.0.0.1", Some(5060))
            .myself("proxy.example.com", Some(5060))
            .myself("192.0.2.1", Some(5080))
            .refusing_to_send(),
    )
}

fn msg(start: &str, headers: &str) -> MsgContext {
    let raw = format!(
        "{start} SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.7:5060;branch=z9hG4bK776asdhds\r\n\
{headers}\
Max-Forwards: 70\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
Content-Length: 0\r\n\r\n"
    );
    let m = SipMessage::parse(Bytes::from(raw)).expect("test message parses");
    let mut ctx = MsgContext::new(m, RouteKind::Request, NetInfo::default());
    ctx.services = Some(me());
    ctx
}

/// An initial INVITE from alice (tag "caller").
fn invite(extra: &str) -> MsgContext {
    msg(
        "INVITE sip:bob@biloxi.example.com",
        &format!(
            "To: Bob <sip:bob@biloxi.example.com>\r\n\
From: Alice <sip:alice@atlanta.example.com>;tag=caller\r\n\
CSeq: 1 INVITE\r\n{extra}"
        ),
    )
}

/// An in-dialog request; `upstream` sends it from bob (tag "callee") to alice.
fn in_dialog(ruri: &str, routes: &str, upstream: bool) -> MsgContext {
    let (from, to) = if upstream {
        (
            "From: Bob <sip:bob@biloxi.example.com>;tag=callee\r\n",
            "To: Alice <sip:alice@atlanta.example.com>;tag=caller\r\n",
        )
    } else {
        (
            "From: Alice <sip:alice@atlanta.example.com>;tag=caller\r\n",
            "To: Bob <sip:bob@biloxi.example.com>;tag=callee\r\n",
        )
    };
    msg(
        &format!("BYE {ruri}"),
        &format!("{routes}{from}{to}CSeq: 2 BYE\r\n"),
    )
}

fn cfg() -> RrConfig {
    RrConfig::default()
}

fn rc(r: ferrosip_api::FnResult) -> i32 {
    r.expect("no error").rc()
}

fn s(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn routes(ctx: &MsgContext) -> Vec<String> {
    route_list(&ctx.msg).iter().map(|b| s(b)).collect()
}

fn ruri(ctx: &MsgContext) -> String {
    s(ctx.msg.request_uri().unwrap())
}

fn du(ctx: &MsgContext) -> Option<String> {
    ctx.dst_uri.as_deref().map(s)
}

fn udp() -> SocketDesc {
    SocketDesc::new(Proto::Udp, "10.0.0.1", 5060)
}

fn tcp() -> SocketDesc {
    SocketDesc::new(Proto::Tcp, "192.0.2.1", 5080)
}

fn headers(ctx: &MsgContext, inbound: &SocketDesc, outbound: &SocketDesc) -> Vec<String> {
    let plan = ctx.ext.get::<RecordRoutePlan>().expect("a plan");
    record_route_headers(plan, inbound, outbound)
        .iter()
        .map(|b| s(b))
        .collect()
}

fn re(r: &str) -> Regex {
    Regex::new(r).unwrap()
}

// ----- record_route() and friends -----

#[test]
fn record_route_is_written_for_the_sockets() {
    let mut c = invite("");
    assert_eq!(rc(record_route(&mut c, &cfg(), None)), 1);
    // Nothing in the message until the server forwards.
    assert!(!c.msg.is_modified());
    assert_eq!(
        headers(&c, &udp(), &udp()),
        ["<sip:10.0.0.1;lr;ftag=caller>"]
    );
    assert_eq!(
        headers(&c, &udp(), &tcp()),
        [
            "<sip:192.0.2.1:5080;transport=tcp;r2=on;lr;ftag=caller>",
            "<sip:10.0.0.1;r2=on;lr;ftag=caller>"
        ]
    );
    // What the server does with them.
    let mut out = c.msg.clone();
    let plan = c.ext.get::<RecordRoutePlan>().unwrap();
    insert_record_route(&mut out, &record_route_headers(plan, &udp(), &tcp())).unwrap();
    let rr: Vec<String> = out
        .record_routes()
        .map(|r| s(r.unwrap().uri_bytes()))
        .collect();
    assert_eq!(
        rr,
        [
            "sip:192.0.2.1:5080;transport=tcp;r2=on;lr;ftag=caller",
            "sip:10.0.0.1;r2=on;lr;ftag=caller"
        ]
    );
}

#[test]
fn double_rr_settings() {
    let mut c = invite("");
    let off = RrConfig {
        double_rr: DoubleRr::Off,
        ..cfg()
    };
    rc(record_route(&mut c, &off, None));
    assert_eq!(
        headers(&c, &udp(), &tcp()),
        ["<sip:10.0.0.1;lr;ftag=caller>"]
    );
    let mut c = invite("");
    let always = RrConfig {
        double_rr: DoubleRr::Always,
        full_lr: true,
        ..cfg()
    };
    rc(record_route(&mut c, &always, None));
    assert_eq!(
        headers(&c, &udp(), &udp()),
        [
            "<sip:10.0.0.1;r2=on;lr=on;ftag=caller>",
            "<sip:10.0.0.1;r2=on;lr=on;ftag=caller>"
        ]
    );
}

#[test]
fn rr_params_before_and_after_record_route() {
    let mut c = invite("");
    assert_eq!(rc(add_rr_param(&mut c, b";a=1")), 1);
    // Only parameters so far: no header.
    let plan = c.ext.get::<RecordRoutePlan>().unwrap();
    assert!(record_route_headers(plan, &udp(), &udp()).is_empty());
    assert_eq!(rc(record_route(&mut c, &cfg(), Some(b"p=2"))), 1);
    assert_eq!(rc(add_rr_param(&mut c, b";nat=yes")), 1);
    assert_eq!(
        headers(&c, &udp(), &udp()),
        ["<sip:10.0.0.1;lr;ftag=caller;p=2;a=1;nat=yes>"]
    );
    // A bad parameter is an error (-1), the plan unchanged.
    assert!(add_rr_param(&mut c, b";a=<b>").is_err());
    assert!(record_route(&mut invite(""), &cfg(), Some(b";x y")).is_err());
}

#[test]
fn record_route_twice_fails_until_removed() {
    let mut c = invite("");
    rc(record_route(&mut c, &cfg(), None));
    assert!(record_route(&mut c, &cfg(), None).is_err());
    assert!(record_route_preset(&mut c, &cfg(), b"1.2.3.4", None).is_err());
    assert_eq!(rc(remove_record_route(&mut c)), 1);
    assert!(c.ext.get::<RecordRoutePlan>().is_none());
    assert_eq!(rc(record_route(&mut c, &cfg(), None)), 1);
}

#[test]
fn preset_and_advertised() {
    let mut c = invite("");
    assert_eq!(
        rc(record_route_preset(&mut c, &cfg(), b"1.2.3.4:5090", None)),
        1
    );
    assert_eq!(
        headers(&c, &udp(), &tcp()),
        ["<sip:1.2.3.4:5090;ftag=caller;lr>"]
    );

    let mut c = invite("");
    rc(record_route_preset(
        &mut c,
        &cfg(),
        b"192.0.2.1:5080;transport=tcp;r2=on",
        Some(b"10.0.0.1;r2=on"),
    ));
    assert_eq!(
        headers(&c, &udp(), &udp()),
        [
            "<sip:192.0.2.1:5080;transport=tcp;r2=on;ftag=caller;lr>",
            "<sip:10.0.0.1;r2=on;ftag=caller;lr>"
        ]
    );
    let off = RrConfig {
        double_rr: DoubleRr::Off,
        ..cfg()
    };
    assert!(record_route_preset(&mut invite(""), &off, b"a.example.com", Some(b"b")).is_err());
    assert!(record_route_preset(&mut invite(""), &cfg(), b"", None).is_err());
    assert!(record_route_preset(&mut invite(""), &cfg(), b"a b", None).is_err());

    let mut c = invite("");
    assert_eq!(
        rc(record_route_advertised_address(
            &mut c,
            &cfg(),
            b"pbx.example.com:5080"
        )),
        1
    );
    assert_eq!(
        headers(&c, &udp(), &udp()),
        ["<sip:pbx.example.com:5080;ftag=caller;lr>"]
    );
    assert_eq!(
        headers(&c, &udp(), &tcp()),
        [
            "<sip:pbx.example.com:5080;transport=tcp;r2=on;ftag=caller;lr>",
            "<sip:pbx.example.com:5080;transport=udp;r2=on;ftag=caller;lr>"
        ]
    );
}

#[test]
fn username_sips_and_fromtag_settings() {
    let mut c = msg(
        "INVITE sips:bob@biloxi.example.com",
        "To: <sips:bob@biloxi.example.com>\r\nFrom: <sips:alice@a.example.com>;tag=t1\r\nCSeq: 1 INVITE\r\n",
    );
    let conf = RrConfig {
        add_username: true,
        append_fromtag: false,
        ..cfg()
    };
    rc(record_route(&mut c, &conf, None));
    let tls = SocketDesc::new(Proto::Tls, "10.0.0.1", 5061);
    assert_eq!(
        headers(&c, &tls, &tls),
        ["<sips:bob@10.0.0.1:5061;transport=tls;lr>"]
    );
    let mut c = msg(
        "INVITE sips:bob@biloxi.example.com",
        "To: <sips:bob@biloxi.example.com>\r\nFrom: <sips:alice@a.example.com>;tag=t1\r\nCSeq: 1 INVITE\r\n",
    );
    let conf = RrConfig {
        ignore_sips: true,
        ..cfg()
    };
    rc(record_route(&mut c, &conf, None));
    assert_eq!(
        headers(&c, &tls, &tls),
        ["<sip:10.0.0.1:5061;transport=tls;lr;ftag=t1>"]
    );
}

#[test]
fn sockname_mode_writes_the_socket_name() {
    let mut c = invite("");
    let conf = RrConfig {
        sockname_mode: true,
        ..cfg()
    };
    rc(record_route(&mut c, &conf, None));
    let mut sock = udp();
    sock.name = Some(Bytes::from_static(b"pub"));
    assert_eq!(
        headers(&c, &sock, &sock),
        ["<sip:10.0.0.1;sn=pub;lr;ftag=caller>"]
    );
}

// ----- loose_route() -----

#[test]
fn no_route_header() {
    let mut c = invite("");
    assert_eq!(rc(loose_route(&mut c, &cfg(), 0)), -1);
    assert_eq!(rc(check_route_param(&mut c, &re("ftag"))), -1);
    assert_eq!(rc(rr_next_hop_route(&mut c)), -1);
    assert_eq!(du(&c), None);
}

#[test]
fn in_dialog_bye_through_this_proxy() {
    let mut c = in_dialog(
        "sip:bob@192.0.2.50:5062",
        "Route: <sip:10.0.0.1;lr;ftag=caller;nat=yes>\r\nRoute: <sip:edge.biloxi.example.com;lr>\r\n",
        false,
    );
    assert_eq!(rc(loose_route(&mut c, &cfg(), 0)), 1);
    assert_eq!(du(&c).as_deref(), Some("sip:edge.biloxi.example.com;lr"));
    assert_eq!(routes(&c), ["<sip:edge.biloxi.example.com;lr>"]);
    assert_eq!(ruri(&c), "sip:bob@192.0.2.50:5062");
    assert_eq!(rc(rr_next_hop_route(&mut c)), 1);
    assert_eq!(rc(check_route_param(&mut c, &re("nat=yes"))), 1);
    assert_eq!(rc(check_route_param(&mut c, &re("^;lr;ftag=caller"))), 1);
    assert_eq!(rc(check_route_param(&mut c, &re("nat=no"))), -1);
    assert_eq!(rc(is_direction(&mut c, &cfg(), b"downstream")), 1);
    assert_eq!(rc(is_direction(&mut c, &cfg(), b"upstream")), -1);
    assert_eq!(
        c.ext.get::<LocalRoute>().unwrap().params.as_deref(),
        Some(&b";lr;ftag=caller;nat=yes"[..])
    );
    // The edited message still parses and shows the Route set.
    let again = SipMessage::parse(c.msg.to_bytes()).unwrap();
    assert_eq!(again.routes().count(), 1);
}

#[test]
fn in_dialog_upstream_and_record_route_keeps_the_callers_tag() {
    let mut c = in_dialog(
        "sip:alice@192.0.2.10",
        "Route: <sip:10.0.0.1;lr;ftag=caller>\r\n",
        true,
    );
    assert_eq!(rc(loose_route(&mut c, &cfg(), 0)), 1);
    // Only our entry: the R-URI is the next hop.
    assert_eq!(du(&c), None);
    assert!(routes(&c).is_empty());
    assert!(!c.msg.has_header("Route"));
    assert_eq!(rc(rr_next_hop_route(&mut c)), -1);
    assert_eq!(rc(is_direction(&mut c, &cfg(), b"upstream")), 1);
    assert_eq!(rc(is_direction(&mut c, &cfg(), b"UPSTREAM")), 1);
    assert_eq!(rc(is_direction(&mut c, &cfg(), b"downstream")), -1);
    assert!(is_direction(&mut c, &cfg(), b"sideways").is_err());
    let no_ftag = RrConfig {
        append_fromtag: false,
        ..cfg()
    };
    assert!(is_direction(&mut c, &no_ftag, b"upstream").is_err());
    // A re-INVITE upstream record-routed again carries the dialog's original From tag.
    rc(record_route(&mut c, &cfg(), None));
    assert_eq!(
        headers(&c, &udp(), &udp()),
        ["<sip:10.0.0.1;lr;ftag=caller>"]
    );
}

#[test]
fn double_record_route_entries_are_both_removed() {
    let mut c = in_dialog(
        "sip:bob@192.0.2.50",
        "Route: <sip:10.0.0.1;r2=on;lr;ftag=caller>, <sip:192.0.2.1:5080;transport=tcp;r2=on;lr;ftag=caller>, <sip:edge.example.net;lr>\r\n",
        false,
    );
    assert_eq!(rc(loose_route(&mut c, &cfg(), 0)), 1);
    assert_eq!(routes(&c), ["<sip:edge.example.net;lr>"]);
    assert_eq!(du(&c).as_deref(), Some("sip:edge.example.net;lr"));
    assert_eq!(
        c.ext.get::<RouteSendSocket>(),
        Some(&RouteSendSocket {
            proto: Some(Proto::Tcp),
            host: Bytes::from_static(b"192.0.2.1"),
            port: Some(5080),
            name: None,
        })
    );
    assert_eq!(rc(check_route_param(&mut c, &re("r2=on"))), 1);

    // Two lines, nothing after: 1, and the R-URI is the target.
    let mut c = in_dialog(
        "sip:bob@192.0.2.50",
        "Route: <sip:192.0.2.1:5080;transport=tcp;r2=on;lr>\r\nRoute: <sip:10.0.0.1;r2=on;lr>\r\n",
        true,
    );
    assert_eq!(rc(loose_route(&mut c, &cfg(), 0)), 1);
    assert!(routes(&c).is_empty());
    assert_eq!(du(&c), None);
    assert_eq!(
        c.ext.get::<RouteSendSocket>().map(|s| s.host.clone()),
        Some(Bytes::from_static(b"10.0.0.1"))
    );
}

#[test]
fn force_send_socket_names_our_single_entry() {
    let mut c = in_dialog(
        "sip:bob@192.0.2.50",
        "Route: <sip:proxy.example.com;lr>\r\n",
        false,
    );
    let conf = RrConfig {
        force_send_socket: true,
        ..cfg()
    };
    assert_eq!(rc(loose_route(&mut c, &conf, 0)), 1);
    assert_eq!(
        c.ext.get::<RouteSendSocket>().map(|s| s.host.clone()),
        Some(Bytes::from_static(b"proxy.example.com"))
    );
    let mut c = in_dialog(
        "sip:bob@192.0.2.50",
        "Route: <sip:proxy.example.com;lr>\r\n",
        false,
    );
    rc(loose_route(&mut c, &cfg(), 0));
    assert!(c.ext.get::<RouteSendSocket>().is_none());
}

#[test]
fn next_hop_strict_router() {
    let mut c = in_dialog(
        "sip:bob@192.0.2.50",
        "Route: <sip:10.0.0.1;lr>, <sip:strict.example.net;transport=tcp>, <sip:other.example.net;lr>\r\n",
        false,
    );
    assert_eq!(rc(loose_route(&mut c, &cfg(), 0)), 1);
    assert_eq!(ruri(&c), "sip:strict.example.net;transport=tcp");
    assert_eq!(
        routes(&c),
        ["<sip:other.example.net;lr>", "<sip:bob@192.0.2.50>"]
    );
    assert_eq!(du(&c), None);
}

#[test]
fn previous_hop_strict_router() {
    // A strict router put our Record-Route URI in the R-URI and the real target last.
    let mut c = in_dialog(
        "sip:10.0.0.1;lr;ftag=caller;nat=yes",
        "Route: <sip:next.example.net;lr>, <sip:bob@192.0.2.50:5062>\r\n",
        false,
    );
    assert_eq!(rc(loose_route(&mut c, &cfg(), 0)), 1);
    assert_eq!(du(&c).as_deref(), Some("sip:next.example.net;lr"));
    assert_eq!(ruri(&c), "sip:bob@192.0.2.50:5062");
    assert_eq!(routes(&c), ["<sip:next.example.net;lr>"]);
    assert_eq!(rc(check_route_param(&mut c, &re("nat=yes"))), 1);
    assert_eq!(rc(is_direction(&mut c, &cfg(), b"downstream")), 1);

    // ...and the next hop is a strict router too: behave as one.
    let mut c = in_dialog(
        "sip:10.0.0.1;lr",
        "Route: <sip:strict.example.net>, <sip:bob@192.0.2.50>\r\n",
        false,
    );
    assert_eq!(rc(loose_route(&mut c, &cfg(), 0)), 1);
    assert_eq!(ruri(&c), "sip:strict.example.net");
    assert_eq!(routes(&c), ["<sip:bob@192.0.2.50>"]);

    // loose_route_mode(1): the R-URI is left alone, the Route set drives.
    let mut c = in_dialog(
        "sip:10.0.0.1;lr",
        "Route: <sip:next.example.net;lr>\r\n",
        false,
    );
    assert_eq!(rc(loose_route(&mut c, &cfg(), 1)), 1);
    assert_eq!(ruri(&c), "sip:10.0.0.1;lr");
    assert_eq!(du(&c).as_deref(), Some("sip:next.example.net;lr"));
    assert_eq!(routes(&c), ["<sip:next.example.net;lr>"]);
}

#[test]
fn preloaded_route_on_initial_request() {
    let mut c = invite("Route: <sip:10.0.0.1;lr>\r\n");
    assert_eq!(rc(loose_route(&mut c, &cfg(), 0)), PRELOADED);
    assert!(!c.msg.has_header("Route"));
    assert_eq!(du(&c), None);

    let mut c = invite("Route: <sip:proxy.example.com;lr>\r\n");
    assert_eq!(rc(loose_route_preloaded(&mut c, &cfg())), 1);

    // Our entry and a further one: routed by it (1); not "preloaded only".
    let mut c = invite("Route: <sip:10.0.0.1;lr>, <sip:core.example.net;lr>\r\n");
    assert_eq!(rc(loose_route(&mut c, &cfg(), 0)), 1);
    assert_eq!(du(&c).as_deref(), Some("sip:core.example.net;lr"));
    let mut c = invite("Route: <sip:10.0.0.1;lr>, <sip:core.example.net;lr>\r\n");
    assert_eq!(rc(loose_route_preloaded(&mut c, &cfg())), -1);
    // In dialog: never preloaded.
    let mut c = in_dialog("sip:bob@192.0.2.50", "Route: <sip:10.0.0.1;lr>\r\n", false);
    assert_eq!(rc(loose_route_preloaded(&mut c, &cfg())), -1);
}

#[test]
fn foreign_top_route_and_maddr() {
    let mut c = in_dialog(
        "sip:bob@192.0.2.50",
        "Route: <sip:other.example.net;lr>\r\n",
        false,
    );
    assert_eq!(rc(loose_route(&mut c, &cfg(), 0)), 1);
    assert_eq!(du(&c).as_deref(), Some("sip:other.example.net;lr"));
    assert_eq!(routes(&c), ["<sip:other.example.net;lr>"]);
    assert_eq!(rc(check_route_param(&mut c, &re("lr"))), -1);
    assert_eq!(rc(rr_next_hop_route(&mut c)), -1);

    let mut c = in_dialog(
        "sip:bob@192.0.2.50",
        "Route: <sip:10.0.0.1;lr>,<sip:gw.example.net:5070;maddr=192.0.2.77;lr>\r\n",
        false,
    );
    assert_eq!(rc(loose_route(&mut c, &cfg(), 0)), 1);
    assert_eq!(du(&c).as_deref(), Some("sip:192.0.2.77:5070"));
    // Port: an entry for 10.0.0.1:5070 is not this proxy.
    let mut c = in_dialog(
        "sip:bob@192.0.2.50",
        "Route: <sip:10.0.0.1:5070;lr>\r\n",
        false,
    );
    assert_eq!(rc(loose_route(&mut c, &cfg(), 0)), 1);
    assert_eq!(du(&c).as_deref(), Some("sip:10.0.0.1:5070;lr"));
}

#[test]
fn check_route_param_before_loose_route() {
    let mut c = in_dialog(
        "sip:bob@192.0.2.50",
        "Route: <sip:10.0.0.1;lr;ftag=caller;nat=yes>\r\n",
        true,
    );
    assert_eq!(rc(check_route_param(&mut c, &re("nat=yes"))), 1);
    assert_eq!(rc(is_direction(&mut c, &cfg(), b"upstream")), 1);
    let mut c = in_dialog(
        "sip:bob@192.0.2.50",
        "Route: <sip:other.example.net;lr;nat=yes>\r\n",
        true,
    );
    assert_eq!(rc(check_route_param(&mut c, &re("nat=yes"))), -1);
}

#[test]
fn errors() {
    let mut c = in_dialog("sip:bob@192.0.2.50", "Route: <sip:10.0.0.1;lr>\r\n", false);
    c.services = None;
    assert!(loose_route(&mut c, &cfg(), 0).is_err());
    let mut c = in_dialog("sip:bob@192.0.2.50", "Route: <sip:10.0.0.1;lr\r\n", false);
    assert!(loose_route(&mut c, &cfg(), 0).is_err());
}

#[test]
fn top_route_uri_follows_the_message() {
    let mut c = in_dialog(
        "sip:bob@192.0.2.50",
        "Route: \"P\" <sip:10.0.0.1;lr>, <sip:edge.example.net;lr>\r\n",
        false,
    );
    assert_eq!(
        top_route_uri(&c.msg).as_deref(),
        Some(&b"sip:10.0.0.1;lr"[..])
    );
    rc(loose_route(&mut c, &cfg(), 0));
    assert_eq!(
        top_route_uri(&c.msg).as_deref(),
        Some(&b"sip:edge.example.net;lr"[..])
    );
    assert_eq!(top_route_uri(&invite("").msg), None);
}

// ----- scripts -----

fn run(cfg_text: &str, c: MsgContext) -> (i32, MsgContext) {
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&RrModule);
    let (o, c) = Script::load(&reg, cfg_text).run(c);
    let code = match o {
        Outcome::Return(n) => n,
        other => panic!("{other:?}"),
    };
    (code, c)
}

#[test]
fn script_in_dialog_routing_and_pvs() {
    let cfg_text = "loadmodule \"rr.so\"\n\
request_route {\n\
  if ($tt != $null) {\n\
    if (loose_route()) {\n\
      if (is_direction(\"upstream\") && check_route_param(\"nat=yes\") && $rdir(name) == \"upstream\" && $rdir(id) == 2 && $fti == \"caller\" && $tti == \"callee\" && $route_uri == \"sip:edge.example.net;lr\" && rr_next_hop_route()) {\n\
        return(7);\n\
      }\n\
      return(5);\n\
    }\n\
    return(3);\n\
  }\n\
  return(1);\n\
}\n";
    let c = in_dialog(
        "sip:alice@192.0.2.10",
        "Route: <sip:10.0.0.1;lr;ftag=caller;nat=yes>, <sip:edge.example.net;lr>\r\n",
        true,
    );
    let (code, c) = run(cfg_text, c);
    assert_eq!(code, 7);
    assert_eq!(du(&c).as_deref(), Some("sip:edge.example.net;lr"));
}

#[test]
fn script_record_route_with_modparams() {
    let cfg_text = "loadmodule \"rr.so\"\n\
modparam(\"rr\", \"enable_double_rr\", 0)\n\
modparam(\"rr\", \"append_fromtag\", 0)\n\
modparam(\"rr\", \"enable_full_lr\", 1)\n\
request_route {\n\
  $var(n) = \"yes\";\n\
  add_rr_param(\";nat=$var(n)\");\n\
  if (loose_route()) { return(9); }\n\
  if (!record_route(\"m=$rm\")) { return(2); }\n\
  if (record_route()) { return(4); }\n\
  return(1);\n\
}\n";
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&RrModule);
    let script = Script::load(&reg, cfg_text);
    for hook in &reg.module("rr").unwrap().init {
        hook(&script.loaded.modules["rr"]).unwrap();
    }
    let (o, c) = script.run(invite(""));
    assert!(matches!(o, Outcome::Return(1)), "{o:?}");
    assert_eq!(
        headers(&c, &udp(), &tcp()),
        ["<sip:10.0.0.1;lr=on;m=INVITE;nat=yes>"]
    );
}

#[test]
fn out_of_range_parameters_fail_the_load_naming_module_and_param() {
    for (param, value) in [("enable_double_rr", "3"), ("loose_route_mode", "2")] {
        let cfg_text = format!(
            "loadmodule \"rr.so\"\nmodparam(\"rr\", \"{param}\", {value})\nrequest_route {{ return(1); }}\n"
        );
        let mut reg = Registry::new();
        ferrosip_script::register_core(&mut reg);
        reg.register(&RrModule);
        let err = ferrosip_script::load_str(
            "t.cfg",
            &cfg_text,
            &ferrosip_script::LoadOptions::default(),
            &reg,
        )
        .err()
        .expect("the load fails")
        .to_string();
        assert!(err.contains("module rr") && err.contains(param), "{err}");
    }
}
