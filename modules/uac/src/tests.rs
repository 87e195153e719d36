//! `$uac_req` and `uac_req_send()` checks through the script engine (the sending itself
//! runs against SIPp phones in tests/tests/uac_sqlops.rs).

use super::*;
use ferrosip_api::Registry;
use ferrosip_tests::script::request;
use ferrosip_tests::Script;

fn registry() -> Registry {
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&UacModule);
    reg
}

const INVITE: &str =
    "INVITE sip:b@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\n\
                      From: <sip:a@example.com>;tag=f1\nTo: <sip:b@example.com>\nCall-ID: c1@h\n\
                      CSeq: 1 INVITE\nContent-Length: 0\n\n";

#[test]
fn fields_read_back_and_reset() {
    let reg = registry();
    let script = Script::load(
        &reg,
        "loadmodule \"uac.so\"\nrequest_route {\n\
         $uac_req(method) = \"NOTIFY\"; $uac_req(ruri) = \"sip:\" + $fU + \"@192.0.2.9\";\n\
         $uac_req(evroute) = 1; $var(m) = $uac_req(method); $var(r) = $uac_req(ruri);\n\
         $var(e) = $uac_req(evroute);\n\
         $uac_req(all) = $null; $var(after) = $uac_req(method);\n\
         uac_req_send(); $var(rc) = $rc;\n}\n",
    );
    let ctx = script.run(request(INVITE)).1;
    let var = |n: &str| ctx.vars.get(reg.intern_var(n)).clone();
    assert_eq!(var("m"), Value::from_static("NOTIFY"));
    assert_eq!(var("r"), Value::from_static("sip:a@192.0.2.9"));
    assert_eq!(var("e"), Value::Int(1));
    assert_eq!(var("after"), Value::Null);
    assert_eq!(var("rc"), Value::Int(-1), "nothing to send after the reset");
}

#[test]
fn unknown_and_declared_fields_fail_the_load() {
    let reg = registry();
    for (pv, want) in [
        ("$uac_req(nope)", "unknown field"),
        ("$uac_req(auser)", "declared but not implemented"),
    ] {
        let cfg = format!("loadmodule \"uac.so\"\nrequest_route {{\n{pv} = \"x\";\n}}\n");
        let e = match ferrosip_script::load_str(
            "t.cfg",
            &cfg,
            &ferrosip_script::LoadOptions::default(),
            &reg,
        ) {
            Ok(_) => panic!("{pv} loads"),
            Err(e) => e.messages.join("\n"),
        };
        assert!(e.contains(want), "{pv}: {e}");
    }
    let def = reg.module("uac").unwrap();
    let mut p = def.default_params();
    p.push("credential", Value::from_static("alice-secret"));
    let e = def.init.iter().find_map(|h| h(&p).err()).unwrap();
    assert!(e.contains("username:realm:password"), "{e}");
}

#[test]
fn digest_answer_matches_rfc_2617() {
    let c = parse_challenge(
        b"Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
          nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
    )
    .expect("challenge");
    assert!(c.qop_auth);
    let v = authorization(
        &c,
        b"Mufasa",
        b"Circle Of Life",
        false,
        b"GET",
        b"/dir/index.html",
        "0a4f113b",
    );
    assert!(
        v.contains("response=\"6629fae49393a05397450978507c4ef1\""),
        "{v}"
    );
    assert!(
        v.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""),
        "{v}"
    );
    assert!(parse_challenge(b"Basic realm=\"x\"").is_none());
    assert!(parse_challenge(b"Digest realm=\"x\"").is_none(), "no nonce");
}

#[test]
fn replace_from_keeps_the_tag_and_remembers_the_original() {
    let reg = registry();
    let script = Script::load(
        &reg,
        "loadmodule \"uac.so\"\nrequest_route {\n\
         uac_replace_from(\"Anonymous\", \"sip:anonymous@anonymous.invalid\");\n\
         uac_replace_to(\"sip:+15551234@carrier.example\");\n}\n",
    );
    let ctx = script.run(request(INVITE)).1;
    assert_eq!(
        ctx.msg.header("From"),
        Some(&b"\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=f1"[..])
    );
    assert_eq!(
        ctx.msg.header("To"),
        Some(&b"<sip:+15551234@carrier.example>"[..])
    );
    let kept = ctx.ext.get::<UpstreamHeaders>().expect("originals kept");
    assert_eq!(
        kept.from.as_deref(),
        Some(&b"<sip:a@example.com>;tag=f1"[..])
    );
    assert_eq!(kept.to.as_deref(), Some(&b"<sip:b@example.com>"[..]));
    let reply = Bytes::from_static(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\r\n\
          From: \"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=f1\r\n\
          To: <sip:+15551234@carrier.example>;tag=callee\r\nCall-ID: c1@h\r\n\
          CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    );
    let back = SipMessage::parse(kept.apply(reply)).unwrap();
    assert_eq!(
        back.header("From"),
        Some(&b"<sip:a@example.com>;tag=f1"[..])
    );
    assert_eq!(
        back.header("To"),
        Some(&b"<sip:b@example.com>;tag=callee"[..])
    );

    let e = match ferrosip_script::load_str(
        "t.cfg",
        "loadmodule \"uac.so\"\nfailure_route[F] {\n uac_replace_from(\"sip:x@y\");\n}\nrequest_route { drop; }\n",
        &ferrosip_script::LoadOptions::default(),
        &reg,
    ) {
        Ok(_) => String::new(),
        Err(e) => e.messages.join("\n"),
    };
    assert!(e.contains("not allowed in failure_route"), "{e}");
}

#[test]
fn restore_param_round_trips_both_ways() {
    for (old, new, pw) in [
        (
            &b"sip:caller@example.test"[..],
            &b"sip:anonymous@anonymous.invalid"[..],
            &b""[..],
        ),
        (
            b"sip:a-much-longer-original-uri@example.test",
            b"sip:x@y",
            b"k3y",
        ),
        (b"sip:same@length.aa", b"sip:diff@length.bb", b"p"),
    ] {
        let enc = encode_restore(old, new, pw);
        assert!(enc.len().is_multiple_of(4) && !enc.contains('='), "{enc}");
        // The request carrying the new URI gets the old one back, and the other way round.
        assert_eq!(
            decode_restore(enc.as_bytes(), new, pw).as_deref(),
            Some(old)
        );
        assert_eq!(
            decode_restore(enc.as_bytes(), old, pw).as_deref(),
            Some(new)
        );
    }
    // Kamailio's encoding of the same pair (its base64 alphabet, '-' padding).
    assert_eq!(encode_restore(b"sip:a@b", b"sip:c@d", b""), "AAAAAAIABg--");
    assert_eq!(decode_restore(b"!!!!", b"sip:a@b", b""), None);
    assert_eq!(
        decode_restore(b"AAAA", b"sip:a@b", b""),
        None,
        "shorter than the URI"
    );
}

#[test]
fn restore_in_follows_the_direction() {
    let enc = encode_restore(b"sip:caller@example.test", b"sip:anon@anon.invalid", b"");
    let local = ferrosip_api::rr::LocalRoute {
        params: Some(Bytes::from(format!(";lr;ftag=t1;vsf={enc}"))),
        next_hop_route: false,
    };
    // The callee's BYE (From tag differs from ftag): the To gets the caller's URI.
    let mut bye = SipMessage::parse(Bytes::from_static(
        b"BYE sip:caller@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK2\r\n\
          From: <sip:callee@example.test>;tag=c9\r\nTo: \"Anonymous\" <sip:anon@anon.invalid>;tag=t1\r\n\
          Call-ID: c1@h\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
    ))
    .unwrap();
    let done = restore_in(&mut bye, &local, "vsf", Which::From, b"").unwrap();
    assert!(matches!(done, Some((Which::To, _))));
    assert_eq!(
        bye.header_bytes("To").unwrap(),
        Bytes::from_static(b"\"Anonymous\" <sip:caller@example.test>;tag=t1")
    );
    // The caller's request (From tag = ftag): the From gets the replaced URI.
    let mut ack = SipMessage::parse(Bytes::from_static(
        b"ACK sip:callee@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK3\r\n\
          From: <sip:caller@example.test>;tag=t1\r\nTo: <sip:callee@example.test>;tag=c9\r\n\
          Call-ID: c1@h\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
    ))
    .unwrap();
    restore_in(&mut ack, &local, "vsf", Which::From, b"").unwrap();
    assert_eq!(
        ack.header_bytes("From").unwrap(),
        Bytes::from_static(b"<sip:anon@anon.invalid>;tag=t1")
    );
    // No such parameter: nothing happens.
    assert!(restore_in(&mut ack, &local, "vst", Which::To, b"")
        .unwrap()
        .is_none());
}
