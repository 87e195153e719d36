//! The module's functions on a loaded script (no network): dialogs created and matched,
//! profiles counted, a refused INVITE's dialog gone with its message.

use super::*;
use ferrosip_api::Registry;
use ferrosip_tests::script::{request, Script};

fn registry() -> Registry {
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&DialogModule);
    reg.register(&ferrosip_mod_rr::RrModule);
    reg.register(&ferrosip_mod_tm::TmModule);
    reg
}

const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
From: <sip:alice@example.com>;tag=a1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c1@x\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:alice@10.0.0.1>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

fn cfg(body: &str) -> String {
    format!(
        "loadmodule \"tm.so\"\nloadmodule \"rr.so\"\nloadmodule \"dialog.so\"\n\
         modparam(\"dialog\", \"profiles_with_value\", \"caller\")\n\
         modparam(\"dialog\", \"profiles_no_value\", \"calls\")\n\
         request_route {{\n{body}\n}}\n"
    )
}

#[test]
fn a_dialog_refused_by_the_script_leaves_its_profiles() {
    let reg = registry();
    let s = Script::load(
        &reg,
        &cfg(
            "dlg_manage();\nset_dlg_profile(\"caller\", \"$fU\");\nset_dlg_profile(\"calls\");\n\
              get_profile_size(\"caller\", \"$fU\", \"$var(n)\");\n\
              $dlg_var(x) = \"y\";\n$var(state) = $dlg(state);\n$var(x) = $dlg_var(x);\n\
              if (!is_in_profile(\"caller\", \"alice\")) { $var(n) = -1; }",
        ),
    );
    let (_, ctx) = s.run(request(INVITE));
    assert_eq!(ctx.vars.get(reg.intern_var("n")), &Value::Int(1));
    assert_eq!(ctx.vars.get(reg.intern_var("state")), &Value::Int(1));
    assert_eq!(ctx.vars.get(reg.intern_var("x")), &Value::from_static("y"));
    let st = ctx.ext.get::<Current>().expect("attached").dlg.clone();
    let shared = ctx.ext.get::<Current>().unwrap().owner.clone().unwrap();
    assert_eq!(shared.table.profile_size("caller", Some(b"alice")), 1);
    assert_eq!(shared.table.profile_size("calls", None), 1);
    // No transaction took the INVITE: the dialog goes with its message.
    drop(ctx);
    assert_eq!(st.live().state, DlgState::Deleted);
    assert_eq!(shared.table.profile_size("caller", Some(b"alice")), 0);
    assert_eq!(shared.table.profile_size("calls", None), 0);
    assert_eq!(shared.table.len(), 0);
}

#[test]
fn bad_profiles_and_keys_are_refused() {
    let reg = registry();
    let s = Script::load(&reg, &cfg("dlg_manage();\nif (set_dlg_profile(\"nope\", \"x\")) { $var(r) = 1; } else { $var(r) = 2; }"));
    let (_, ctx) = s.run(request(INVITE));
    assert_eq!(
        ctx.vars.get(reg.intern_var("r")),
        &Value::Int(2),
        "an undeclared profile fails"
    );
    let s = Script::load(&reg, &cfg("dlg_manage();\nif (set_dlg_profile(\"caller\")) { $var(r) = 1; } else { $var(r) = 2; }"));
    let (_, ctx) = s.run(request(INVITE));
    assert_eq!(
        ctx.vars.get(reg.intern_var("r")),
        &Value::Int(2),
        "a valued profile needs a value"
    );
    let err = ferrosip_script::load_str(
        "t.cfg",
        &cfg("$var(x) = $dlg(nonsense);"),
        &Default::default(),
        &reg,
    )
    .err()
    .expect("refused");
    let msg = err.messages.join("\n");
    assert!(msg.contains("unknown $dlg key"), "{msg}");
}

#[test]
fn matching_finds_the_dialog_of_an_in_dialog_request() {
    let reg = registry();
    let s = Script::load(&reg, &cfg("dlg_manage();"));
    let (_, ctx) = s.run(request(INVITE));
    let cur = ctx.ext.get::<Current>().unwrap();
    let d = cur.dlg.clone();
    let shared = cur.owner.clone().unwrap();
    {
        let mut live = d.live();
        live.relayed = true;
        live.to_tag = Bytes::from_static(b"b1");
        live.state = DlgState::Confirmed;
    }
    drop(ctx);
    assert_eq!(
        shared.table.len(),
        1,
        "a relayed dialog outlives its INVITE"
    );
    let bye = "BYE sip:alice@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2\r\n\
From: <sip:bob@example.com>;tag=b1\r\nTo: <sip:alice@example.com>;tag=a1\r\nCall-ID: c1@x\r\nCSeq: 7 BYE\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let s = Script::load(
        &reg,
        &cfg("if (dlg_manage()) { $var(dir) = $dlg_ctx(dir); $var(h) = $dlg(h_id); }"),
    );
    let (_, ctx) = s.run(request(bye));
    assert_eq!(
        ctx.vars.get(reg.intern_var("dir")),
        &Value::Int(2),
        "upstream"
    );
    assert_eq!(
        ctx.vars.get(reg.intern_var("h")),
        &Value::Int(i64::from(d.h_id))
    );
}
