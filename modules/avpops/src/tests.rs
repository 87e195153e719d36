//! The avpops functions through the script engine.

use super::*;
use ferrosip_api::{NetInfo, Registry, RouteKind};
use ferrosip_tests::script::message_with;
use ferrosip_tests::Script;

fn run(route: &str) -> (Registry, MsgContext) {
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&AvpopsModule);
    let cfg = format!("loadmodule \"avpops.so\"\nrequest_route {{\n{route}\n}}\n");
    let script = Script::load(&reg, &cfg);
    let raw = "INVITE sip:911@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\n\
               From: <sip:a@example.com>;tag=f1\nTo: <sip:911@example.com>\nCall-ID: c1@h\n\
               CSeq: 1 INVITE\nContent-Length: 0\n\n";
    let ctx = message_with(raw, RouteKind::Request, NetInfo::default());
    let ctx = script.run(ctx).1;
    (reg, ctx)
}

fn var(reg: &Registry, ctx: &MsgContext, name: &str) -> Value {
    ctx.vars.get(reg.intern_var(name)).clone()
}

#[test]
fn set_delete_copy_check_push() {
    let (reg, ctx) = run(
        "$avp(a) = \"one\"; $avp(a) = \"two\"; $avp(n) = 10;\n\
         $var(set) = 0; if (is_avp_set(\"$avp(a)\")) { $var(set) = 1; }\n\
         avp_copy(\"$avp(a)\", \"$avp(b)/g\"); $var(b0) = $(avp(b)[0]); $var(b1) = $(avp(b)[1]);\n\
         avp_copy(\"$avp(a)\", \"$avp(c)/d\"); $var(a0) = $avp(a); $var(c0) = $avp(c);\n\
         avp_check(\"$avp(n)\", \"gt/i:9\"); $var(gt) = $rc;\n\
         avp_check(\"$avp(n)\", \"lt/i:9\"); $var(lt) = $rc;\n\
         avp_check(\"$avp(b)/g\", \"re/^ON/i\"); $var(re) = $rc;\n\
         $avp(dst) = \"sip:gw@192.0.2.1\"; avp_pushto(\"$du\", \"$avp(dst)\");\n\
         avp_delete(\"$avp(b)/g\"); $var(gone) = 0; if (!is_avp_set(\"$avp(b)\")) { $var(gone) = 1; }\n\
         $var(none) = 0; if (!avp_delete(\"$avp(b)\")) { $var(none) = 1; }",
    );
    assert_eq!(var(&reg, &ctx, "set"), Value::Int(1));
    assert_eq!(
        var(&reg, &ctx, "b0"),
        Value::from_static("two"),
        "order kept"
    );
    assert_eq!(var(&reg, &ctx, "b1"), Value::from_static("one"));
    assert_eq!(
        var(&reg, &ctx, "a0"),
        Value::from_static("one"),
        "/d took the newest"
    );
    assert_eq!(var(&reg, &ctx, "c0"), Value::from_static("two"));
    assert_eq!(var(&reg, &ctx, "gt"), Value::Int(1));
    assert_eq!(var(&reg, &ctx, "lt"), Value::Int(-1));
    assert_eq!(var(&reg, &ctx, "re"), Value::Int(1));
    assert_eq!(ctx.dst_uri.as_deref(), Some(&b"sip:gw@192.0.2.1"[..]));
    assert_eq!(var(&reg, &ctx, "gone"), Value::Int(1));
    assert_eq!(var(&reg, &ctx, "none"), Value::Int(1));
}

#[test]
fn bad_arguments_fail_the_load() {
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&AvpopsModule);
    for (route, want) in [
        ("avp_delete(\"$var(x)\");", "not an AVP"),
        ("avp_delete(\"$avp(x)/q\");", "unknown flag"),
        (
            "avp_check(\"$avp(x)\", \"zz/1\");",
            "unknown avp_check operation",
        ),
        ("avp_check(\"$avp(x)\", \"re/(\");", "regular expression"),
        ("avp_db_store(\"$fu\", \"*\");", "storing every AVP"),
        ("avp_db_load(\"$fu/bad\", \"*\");", "unknown source flag"),
        ("avp_db_load(\"$fu\", \"x5\");", "is not $avp(name)"),
        ("avp_op(\"$avp(x)\", \"pow/2\");", "unknown operation"),
        ("avp_op(\"$avp(x)\", \"add/two\");", "must be an integer"),
        (
            "avp_subst(\"$avp(x)\", \"/a/b/q\");",
            "unknown substitution flag",
        ),
        ("avp_subst(\"$avp(x)\", \"/a(/b/\");", "regular expression"),
    ] {
        let cfg = format!("loadmodule \"avpops.so\"\nrequest_route {{\n{route}\n}}\n");
        let e = match ferrosip_script::load_str(
            "t.cfg",
            &cfg,
            &ferrosip_script::LoadOptions::default(),
            &reg,
        ) {
            Ok(_) => panic!("{route} loads"),
            Err(e) => e.messages.join("\n"),
        };
        assert!(e.contains(want), "{route}: {e}");
    }
}

#[test]
fn arithmetic_and_substitutions() {
    let (reg, ctx) = run(
        "$avp(n) = 7; $avp(n) = 10;\n\
         avp_op(\"$avp(n)\", \"add/i:5\"); $var(add) = $avp(n); $var(kept) = $(avp(n)[1]);\n\
         avp_op(\"$avp(n)/$avp(m)\", \"mul/3\"); $var(mul) = $avp(m);\n\
         avp_op(\"$avp(n)\", \"sub/$avp(m)/d\"); $var(sub) = $avp(n); $var(count) = 0;\n\
         $var(i) = 0; while ($(avp(n)[$var(i)]) != $null) { $var(i) = $var(i) + 1; } $var(count) = $var(i);\n\
         $var(s) = \"x\"; if (!avp_op(\"$avp(none)\", \"add/1\")) { $var(s) = \"no value\"; }\n\
         $avp(u) = \"sip:Alice@example.com\";\n\
         avp_subst(\"$avp(u)\", \"/^sip:([a-z]+)@(.*)/sip:\\2:\\1/i\"); $var(sub1) = $avp(u);\n\
         $avp(p) = \"a-b-c\"; avp_subst(\"$avp(p)/$avp(q)\", \"/-/+/g\"); $var(q) = $avp(q); $var(p) = $avp(p);\n\
         $var(nomatch) = 0; if (!avp_subst(\"$avp(p)\", \"/z/y/\")) { $var(nomatch) = 1; }\n\
         $avp(r) = \"user\"; avp_subst_pv(\"$avp(r)\", \"/user/$rU/\"); $var(pv) = $avp(r);\n\
         avp_print();",
    );
    assert_eq!(var(&reg, &ctx, "add"), Value::Int(15));
    assert_eq!(
        var(&reg, &ctx, "kept"),
        Value::Int(10),
        "a new value on top"
    );
    assert_eq!(var(&reg, &ctx, "mul"), Value::Int(45));
    assert_eq!(
        var(&reg, &ctx, "sub"),
        Value::Int(-30),
        "15 - 45, the 15 deleted"
    );
    assert_eq!(var(&reg, &ctx, "count"), Value::Int(3), "-30, 10, 7");
    assert_eq!(var(&reg, &ctx, "s"), Value::from_static("no value"));
    assert_eq!(
        var(&reg, &ctx, "sub1"),
        Value::from_static("sip:example.com:Alice")
    );
    assert_eq!(var(&reg, &ctx, "q"), Value::from_static("a+b+c"));
    assert_eq!(
        var(&reg, &ctx, "p"),
        Value::from_static("a-b-c"),
        "source kept"
    );
    assert_eq!(var(&reg, &ctx, "nomatch"), Value::Int(1));
    assert_eq!(var(&reg, &ctx, "pv"), Value::from_static("911"));
}
