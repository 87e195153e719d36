//! save()/lookup() through the script engine, on raw SIP messages, with replies recorded
//! instead of sent (usrloc in memory).

use super::*;
use ferrosip_api::{NetInfo, Proto, Registry};
use ferrosip_script::{load_str, LoadOptions};
use ferrosip_tests::script::message_with;
use ferrosip_tests::{FakeServices, Script};

struct Harness {
    script: Script,
    /// Replies recorded instead of sent; this proxy is proxy.local.
    rec: Arc<FakeServices>,
}

impl Harness {
    /// A registrar with `params` (modparam lines) and `script` as request_route body.
    fn new(params: &str, script: &str) -> Harness {
        let mut reg = Registry::new();
        ferrosip_script::register_core(&mut reg);
        reg.register(&ferrosip_mod_sl::SlModule);
        reg.register(&ferrosip_mod_usrloc::UsrlocModule);
        reg.register(&RegistrarModule);
        let cfg = format!(
            "loadmodule \"sl.so\"\nloadmodule \"usrloc.so\"\nloadmodule \"registrar.so\"\n{params}\nrequest_route {{\n{script}\n}}\n"
        );
        Harness {
            script: Script::load(&reg, &cfg),
            rec: Arc::new(FakeServices::new().myself("proxy.local", None)),
        }
    }

    fn standard(params: &str) -> Harness {
        Harness::new(
            params,
            r#"if ($rm == "REGISTER") { save("location"); $var(x) = $rc; exit; }
               if (!lookup("location")) { sl_send_reply("404", "Not Found"); exit; }"#,
        )
    }

    fn run(&self, raw: &str) -> MsgContext {
        let net = NetInfo {
            proto: Proto::Udp,
            source: "10.0.0.1:5062".parse().unwrap(),
            local: "127.0.0.1:5060".parse().unwrap(),
        };
        let mut ctx = message_with(raw, RouteKind::Request, net);
        ctx.services = Some(self.rec.clone());
        self.script.run(ctx).1
    }

    /// The last reply: code, reason, extra headers.
    fn last(&self) -> (u16, String, String) {
        let r = self.rec.last_reply();
        (r.code, r.reason, r.headers)
    }

    fn replies(&self) -> usize {
        self.rec.replies().len()
    }
}

fn register(user: &str, contact: &str, extra: &str, callid: &str, cseq: u32) -> String {
    format!(
        "REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bK{cseq}{callid}
From: <sip:{user}@example.com>;tag=1
To: <sip:{user}@example.com>
Call-ID: {callid}
CSeq: {cseq} REGISTER
Contact: {contact}
{extra}Content-Length: 0

"
    )
    .replace("Contact: \n", "")
}

fn invite(user: &str) -> String {
    format!(
        "INVITE sip:{user}@example.com SIP/2.0
Via: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKinv
From: <sip:caller@example.com>;tag=2
To: <sip:{user}@example.com>
Call-ID: inv-1
CSeq: 1 INVITE
Content-Length: 0

"
    )
}

fn ruri(ctx: &MsgContext) -> String {
    String::from_utf8_lossy(ctx.msg.request_uri().unwrap()).into_owned()
}

#[test]
fn register_then_lookup_routes_to_the_contact() {
    let h = Harness::standard("");
    let c = h.run(&register(
        "alice",
        "<sip:alice@10.0.0.1:5062>",
        "Expires: 600\n",
        "c1",
        1,
    ));
    assert_eq!(c.rc, 1, "inserted");
    let (code, _, headers) = h.last();
    assert_eq!(code, 200);
    assert!(
        headers.contains("Contact: <sip:alice@10.0.0.1:5062>;expires=600\r\n"),
        "{headers}"
    );
    assert!(headers.contains("Date: "), "{headers}");
    let c = h.run(&invite("alice"));
    assert_eq!(ruri(&c), "sip:alice@10.0.0.1:5062");
    assert_eq!(c.dst_uri, None);
    // Case does not matter by default.
    let c = h.run(&invite("ALICE"));
    assert_eq!(ruri(&c), "sip:alice@10.0.0.1:5062");
}

#[test]
fn unknown_user_is_not_found() {
    let h = Harness::standard("");
    h.run(&invite("nobody"));
    assert_eq!(h.last().0, 404);
}

#[test]
fn expires_zero_and_star_remove_bindings() {
    let h = Harness::standard("");
    h.run(&register("bob", "<sip:bob@10.0.0.1:1>", "", "c1", 1));
    h.run(&register("bob", "<sip:bob@10.0.0.1:2>", "", "c2", 1));
    let c = h.run(&register(
        "bob",
        "<sip:bob@10.0.0.1:1>;expires=0",
        "",
        "c1",
        2,
    ));
    assert_eq!(c.rc, 3, "deleted");
    let headers = h.last().2;
    assert!(!headers.contains("10.0.0.1:1>"), "{headers}");
    assert!(
        headers.contains("<sip:bob@10.0.0.1:2>;expires=3600"),
        "{headers}"
    );
    // `*` needs Expires: 0.
    h.run(&register("bob", "*", "Expires: 10\n", "c2", 2));
    assert_eq!(h.last().0, 400);
    let c = h.run(&register("bob", "*", "Expires: 0\n", "c2", 3));
    assert_eq!(c.rc, 3);
    assert_eq!(h.last().0, 200);
    assert!(!h.last().2.contains("Contact:"));
    h.run(&invite("bob"));
    assert_eq!(h.last().0, 404);
}

#[test]
fn min_expires_raises_or_refuses_with_423() {
    let h = Harness::standard("modparam(\"registrar\", \"min_expires\", 120)\nmodparam(\"registrar\", \"max_expires\", 1800)");
    h.run(&register(
        "carol",
        "<sip:carol@h>",
        "Expires: 30\n",
        "c1",
        1,
    ));
    assert!(h.last().2.contains(";expires=120"), "{}", h.last().2);
    h.run(&register(
        "carol",
        "<sip:carol@h>;expires=7200",
        "Expires: 30\n",
        "c1",
        2,
    ));
    assert!(
        h.last().2.contains(";expires=1800"),
        "param beats header, capped: {}",
        h.last().2
    );

    let h = Harness::standard(
        "modparam(\"registrar\", \"min_expires\", 120)\nmodparam(\"registrar\", \"min_expires_mode\", 1)",
    );
    let c = h.run(&register(
        "carol",
        "<sip:carol@h>",
        "Expires: 30\n",
        "c1",
        1,
    ));
    let (code, reason, headers) = h.last();
    assert_eq!((code, reason.as_str()), (423, "Interval Too Brief"));
    assert!(headers.contains("Min-Expires: 120\r\n"), "{headers}");
    assert_eq!(c.rc, -1);
    // Removing is always allowed.
    h.run(&register("carol", "<sip:carol@h>", "Expires: 0\n", "c1", 2));
    assert_eq!(h.last().0, 200);
}

#[test]
fn call_id_and_cseq_rules() {
    let h = Harness::standard("modparam(\"usrloc\", \"cseq_delay\", 20)");
    h.run(&register("dave", "<sip:dave@h:1>", "", "cid", 5));
    // Lower CSeq on the same Call-ID: out of order.
    let c = h.run(&register("dave", "<sip:dave@h:1>", "", "cid", 4));
    assert_eq!((h.last().0, c.rc), (400, -1));
    // Same CSeq right away: a retransmission, answered with the bindings.
    let c = h.run(&register("dave", "<sip:dave@h:1>", "", "cid", 5));
    assert_eq!((h.last().0, c.rc), (200, 4));
    assert!(h.last().2.contains("<sip:dave@h:1>"));
    // Higher CSeq refreshes.
    let c = h.run(&register("dave", "<sip:dave@h:1>", "", "cid", 6));
    assert_eq!((h.last().0, c.rc), (200, 2));
    // Another Call-ID (a rebooted phone) with a low CSeq replaces the binding.
    let c = h.run(&register("dave", "<sip:dave@h:1>", "", "other", 1));
    assert_eq!((h.last().0, c.rc), (200, 2));
}

#[test]
fn q_orders_forking_and_branches_get_the_rest() {
    let h = Harness::standard("");
    h.run(&register(
        "erin",
        "<sip:erin@10.0.0.1:1>;q=0.5",
        "",
        "c1",
        1,
    ));
    h.run(&register(
        "erin",
        "<sip:erin@10.0.0.2:2>;q=1.0",
        "",
        "c2",
        1,
    ));
    let headers = h.last().2;
    assert!(
        headers.contains(
            "<sip:erin@10.0.0.1:1>;q=0.5;expires=3600, <sip:erin@10.0.0.2:2>;q=1;expires=3600"
        ),
        "{headers}"
    );
    let c = h.run(&invite("erin"));
    assert_eq!(ruri(&c), "sip:erin@10.0.0.2:2");
    let b = c.ext.get::<Branches>().expect("branches appended");
    assert_eq!(b.0.len(), 1);
    assert_eq!(b.0[0].uri.as_ref(), b"sip:erin@10.0.0.1:1");
    assert_eq!(b.0[0].q.as_deref(), Some(b"0.5".as_slice()));

    let h = Harness::standard("modparam(\"registrar\", \"append_branches\", 0)");
    h.run(&register(
        "erin",
        "<sip:erin@10.0.0.1:1>, <sip:erin@10.0.0.2:2>",
        "",
        "c1",
        1,
    ));
    let c = h.run(&invite("erin"));
    assert!(c.ext.get::<Branches>().is_none());
}

#[test]
fn invalid_q_or_expires_is_refused() {
    let h = Harness::standard("");
    h.run(&register("f", "<sip:f@h>;q=2", "", "c1", 1));
    assert_eq!(
        h.last(),
        (400, "Invalid q param in contact".into(), String::new())
    );
    h.run(&register("f", "<sip:f@h>;expires=soon", "", "c1", 2));
    assert_eq!(h.last().0, 400);
    h.run(&register("f", "<sip:f@h>", "Expires: x\n", "c1", 3));
    assert_eq!(h.last().0, 400);
    h.run(&invite("f"));
    assert_eq!(h.last().0, 404, "nothing was stored");
}

#[test]
fn max_contacts_gives_503() {
    let h = Harness::standard(
        "modparam(\"registrar\", \"max_contacts\", 1)\nmodparam(\"registrar\", \"retry_after\", 30)",
    );
    h.run(&register("gus", "<sip:gus@h:1>", "", "c1", 1));
    let c = h.run(&register("gus", "<sip:gus@h:2>", "", "c2", 1));
    let (code, _, headers) = h.last();
    assert_eq!((code, c.rc), (503, -2));
    assert!(headers.contains("Retry-After: 30\r\n"));
    // Replacing the one contact in one request is fine.
    h.run(&register(
        "gus",
        "<sip:gus@h:1>;expires=0, <sip:gus@h:2>",
        "",
        "c1",
        2,
    ));
    assert_eq!(h.last().0, 200);
}

#[test]
fn single_contact_flag_drops_the_others() {
    let h = Harness::new(
        "",
        r#"if ($rm == "REGISTER") { if ($ci == "solo") { save("location", "0x04"); } else { save("location"); } exit; }
           lookup("location");"#,
    );
    h.run(&register("hal", "<sip:hal@h:1>", "", "c1", 1));
    h.run(&register("hal", "<sip:hal@h:2>", "", "c2", 1));
    h.run(&register("hal", "<sip:hal@h:3>", "", "solo", 1));
    let headers = h.last().2;
    assert!(
        headers.contains("<sip:hal@h:3>") && !headers.contains("<sip:hal@h:1>"),
        "{headers}"
    );
}

#[test]
fn path_is_checked_stored_and_used() {
    let h = Harness::standard("modparam(\"registrar\", \"use_path\", 1)");
    let path = "Path: <sip:edge.example.net;lr>\n";
    h.run(&register("ida", "<sip:ida@192.168.1.5>", path, "c1", 1));
    let (code, _, headers) = h.last();
    assert_eq!(code, 420);
    assert!(headers.contains("Unsupported: path"));
    h.run(&register(
        "ida",
        "<sip:ida@192.168.1.5>",
        &format!("{path}Supported: path\n"),
        "c1",
        2,
    ));
    let (code, _, headers) = h.last();
    assert_eq!(code, 200);
    assert!(
        headers.contains("Path: <sip:edge.example.net;lr>\r\n"),
        "{headers}"
    );
    let c = h.run(&invite("ida"));
    assert_eq!(ruri(&c), "sip:ida@192.168.1.5");
    assert_eq!(
        c.dst_uri.as_deref(),
        Some(b"sip:edge.example.net;lr".as_slice())
    );
    assert_eq!(
        c.msg.header("Route"),
        Some(b"<sip:edge.example.net;lr>".as_slice())
    );
}

#[test]
fn path_check_local_skips_our_own_hop() {
    let h = Harness::standard(
        "modparam(\"registrar\", \"use_path\", 1)\nmodparam(\"registrar\", \"path_mode\", 0)\nmodparam(\"registrar\", \"path_check_local\", 1)",
    );
    h.run(&register(
        "ivy",
        "<sip:ivy@192.168.1.5>",
        "Path: <sip:proxy.local;lr>, <sip:edge;lr>\n",
        "c1",
        1,
    ));
    assert!(
        !h.last().2.contains("Path:"),
        "path_mode 0 keeps it out of the reply"
    );
    let c = h.run(&invite("ivy"));
    assert_eq!(c.dst_uri.as_deref(), Some(b"sip:edge;lr".as_slice()));
}

#[test]
fn received_avp_is_stored_and_becomes_the_destination() {
    let h = Harness::new(
        "modparam(\"registrar\", \"received_avp\", \"$avp(rcv)\")",
        r#"if ($rm == "REGISTER") { $avp(rcv) = "sip:" + $si + ":" + $sp; save("location"); exit; }
           lookup("location");"#,
    );
    h.run(&register("jo", "<sip:jo@192.168.0.10:5060>", "", "c1", 1));
    let headers = h.last().2;
    assert!(
        headers.contains(";received=\"sip:10.0.0.1:5062\""),
        "{headers}"
    );
    let c = h.run(&invite("jo"));
    assert_eq!(ruri(&c), "sip:jo@192.168.0.10:5060");
    assert_eq!(c.dst_uri.as_deref(), Some(b"sip:10.0.0.1:5062".as_slice()));
}

#[test]
fn method_filtering_gives_minus_two() {
    let h = Harness::new(
        "modparam(\"registrar\", \"method_filtering\", 1)",
        r#"if ($rm == "REGISTER") { save("location"); exit; }
           lookup("location"); $var(rc) = $rc; sl_send_reply("299", "rc $var(rc)");"#,
    );
    h.run(&register(
        "kim",
        "<sip:kim@h>",
        "Allow: INVITE, ACK, BYE, CANCEL\n",
        "c1",
        1,
    ));
    h.run(&invite("kim"));
    assert_eq!(h.last().1, "rc 1");
    h.run(&invite("kim").replace("INVITE", "MESSAGE"));
    assert_eq!(h.last().1, "rc -2");
    h.run(&invite("nobody"));
    assert_eq!(h.last().1, "rc -1");
}

#[test]
fn registered_unregister_and_deferred_reply() {
    let h = Harness::new(
        "",
        r#"if ($rm == "REGISTER") { save("location", "0x02"); $var(r) = $rc; sl_send_reply("299", "saved $var(r)"); reg_send_reply(); exit; }
           if ($rm == "OPTIONS") { unregister("location", "sip:$rU@example.com"); $var(r) = $rc; sl_send_reply("299", "unreg $var(r)"); exit; }
           if (registered("location")) { sl_send_reply("299", "yes"); } else { sl_send_reply("299", "no"); }"#,
    );
    h.run(&register("lee", "<sip:lee@h>", "", "c1", 1));
    let r = h.rec.replies();
    assert_eq!(r[0].reason, "saved 1", "save() did not reply itself");
    assert_eq!(r[1].code, 200, "reg_send_reply() sent the 200");
    h.run(&invite("lee"));
    assert_eq!(h.last().1, "yes");
    h.run(&invite("lee").replace("INVITE", "OPTIONS"));
    assert_eq!(h.last().1, "unreg 1");
    h.run(&invite("lee"));
    assert_eq!(h.last().1, "no");
    h.run(&invite("lee").replace("INVITE", "OPTIONS"));
    assert_eq!(h.last().1, "unreg -3");
    assert_eq!(h.replies(), 6);
}

#[test]
fn use_domain_keeps_domains_apart() {
    let h = Harness::standard("modparam(\"usrloc\", \"use_domain\", 1)");
    h.run(&register("max", "<sip:max@h>", "", "c1", 1));
    let c = h.run(&invite("max"));
    assert_eq!(ruri(&c), "sip:max@h");
    h.run(&invite("max").replace("max@example.com", "max@other.org"));
    assert_eq!(h.last().0, 404);
}

#[test]
fn registrar_without_usrloc_does_not_load() {
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&ferrosip_mod_usrloc::UsrlocModule);
    reg.register(&RegistrarModule);
    let err = load_str(
        "t.cfg",
        "loadmodule \"registrar.so\"\nrequest_route { lookup(\"location\"); }\n",
        &LoadOptions::default(),
        &reg,
    )
    .err()
    .expect("refused");
    assert!(
        err.messages.join("\n").contains("needs usrloc"),
        "{:?}",
        err.messages
    );
    let err = load_str(
        "t.cfg",
        "loadmodule \"usrloc.so\"\nloadmodule \"registrar.so\"\nrequest_route { lookup(\"$var(t)\"); }\n",
        &LoadOptions::default(),
        &reg,
    )
    .err()
    .expect("refused");
    assert!(
        err.messages.join("\n").contains("table name"),
        "{:?}",
        err.messages
    );
}

#[test]
fn a_bad_parameter_fails_the_load_naming_module_and_param() {
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&ferrosip_mod_usrloc::UsrlocModule);
    reg.register(&RegistrarModule);
    for (module, param, value) in [
        ("registrar", "default_q", "1001"),
        ("usrloc", "db_mode", "9"),
    ] {
        let cfg = format!(
            "loadmodule \"usrloc.so\"\nloadmodule \"registrar.so\"\nmodparam(\"{module}\", \"{param}\", {value})\nrequest_route {{ lookup(\"location\"); }}\n"
        );
        let err = load_str("t.cfg", &cfg, &LoadOptions::default(), &reg)
            .err()
            .expect("refused")
            .messages
            .join("\n");
        assert!(
            err.contains(&format!("module {module}")) && err.contains(param),
            "{err}"
        );
    }
}
