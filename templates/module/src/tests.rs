//! Unit tests with Ferrosip's shared testkit: the module in a registry of its own, a
//! config loaded against it, routes run on a message, a db_text table as the database.

use super::*;
use ferrosip_api::{Registry, StartEnv};
use ferrosip_script::vm::Outcome;
use ferrosip_tests::script::request;
use ferrosip_tests::Script;

/// The core's functions and PVs plus this module, as a server loading it has them.
fn registry() -> Registry {
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&NuminfoModule);
    reg
}

fn invite(user: &str) -> MsgContext {
    request(&format!(
        "INVITE sip:{user}@example.com SIP/2.0\n\
         Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-1\n\
         From: <sip:alice@example.com>;tag=1\n\
         To: <sip:{user}@example.com>\n\
         Call-ID: numinfo-test\n\
         CSeq: 1 INVITE\n\
         Content-Length: 0\n\n"
    ))
}

/// A config loading the module with its table in `db_url`, then `route`.
fn config(db_url: &str, route: &str) -> String {
    format!(
        "loadmodule \"numinfo.so\"\n\
         modparam(\"numinfo\", \"db_url\", \"{db_url}\")\n\
         request_route {{\n{route}\n}}\n"
    )
}

/// The route's return code (`return N`) once it ran.
fn returned(outcome: Outcome) -> i32 {
    match outcome {
        Outcome::Return(code) => code,
        other => panic!("the route returns a code, not {other:?}"),
    }
}

#[test]
fn a_literal_prefix_is_checked_when_the_script_loads() {
    let cfg = config(
        "text:///nonexistent",
        "if (numinfo_prefix(\"$rU\", \"49x\")) { return 1; }",
    );
    let errors = ferrosip_script::load_str("t.cfg", &cfg, &Default::default(), &registry())
        .err()
        .expect("a bad literal prefix fails the load");
    let text = errors.messages.join("\n");
    assert!(text.contains("t.cfg:4:"), "{text}");
    assert!(text.contains("\"49x\" is not a dialling prefix"), "{text}");
}

#[test]
fn a_bad_parameter_fails_the_load_naming_it() {
    let cfg = "loadmodule \"numinfo.so\"\n\
               modparam(\"numinfo\", \"db_url\", \"text:///tmp\")\n\
               modparam(\"numinfo\", \"table\", \"no such table\")\n\
               request_route { return 1; }\n";
    let errors = ferrosip_script::load_str("t.cfg", cfg, &Default::default(), &registry())
        .err()
        .expect("a bad table name fails the load");
    let text = errors.messages.join("\n");
    assert!(text.contains("numinfo") && text.contains("table"), "{text}");
}

#[test]
fn prefixes_match_from_literals_and_pseudo_variables() {
    let reg = registry();
    let script = Script::load(
        &reg,
        &config(
            "text:///nonexistent",
            "if (numinfo_prefix(\"$rU\", \"+49\")) { return 1; }\n\
             $var(p) = \"493\";\n\
             if (numinfo_prefix(\"$rU\", \"$var(p)\")) { return 2; }\n\
             $var(p) = \"4x\";\n\
             if (numinfo_prefix(\"$rU\", \"$var(p)\")) { return 3; }\n\
             return 4;",
        ),
    );
    assert_eq!(returned(script.run(invite("+4930123")).0), 1);
    assert_eq!(returned(script.run(invite("4930123")).0), 2);
    // A prefix only known per call is checked per call: the call fails (false).
    assert_eq!(returned(script.run(invite("4x1")).0), 4);
}

/// Runs the module's start hooks as the server does before it takes traffic.
fn start(reg: &Registry, db_url: &str, rt: &ferrosip_api::tokio::runtime::Runtime) {
    let def = reg.module("numinfo").expect("numinfo is registered");
    let mut params = def.default_params();
    params.push("db_url", Value::from(db_url.to_string()));
    for hook in &def.start {
        let env = StartEnv {
            params: &params,
            runtime: rt.handle().clone(),
        };
        rt.block_on(hook(&env)).expect("numinfo starts");
    }
}

#[test]
fn a_lookup_waits_on_the_database_then_sets_the_label() {
    let dir = std::env::temp_dir().join(format!("numinfo-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("numinfo"),
        "number(str) label(str)\n4930123:Berlin office\n",
    )
    .unwrap();
    let db_url = format!("text://{}", dir.display());
    let reg = registry();
    let script = Script::load(
        &reg,
        &config(
            &db_url,
            "if (numinfo_lookup(\"$rU\")) { $var(label) = $numinfo(label); return 1; }\n\
             return 2;",
        ),
    );
    let rt = ferrosip_api::tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    start(&reg, &db_url, &rt);

    let (outcome, ctx) = rt.block_on(script.run_async(invite("4930123")));
    assert_eq!(returned(outcome), 1);
    let label = ctx.vars.get(reg.intern_var("label"));
    assert_eq!(label, &Value::from("Berlin office"));

    let (outcome, ctx) = rt.block_on(script.run_async(invite("4930999")));
    assert_eq!(returned(outcome), 2);
    assert!(ctx.ext.get::<Label>().is_none());

    let stats = rt.block_on(reg.rpc("numinfo.stats").unwrap().call(vec![]));
    assert_eq!(
        stats,
        Ok(RpcValue::Struct(vec![
            ("lookups".to_string(), RpcValue::Int(2)),
            ("found".to_string(), RpcValue::Int(1)),
        ]))
    );
    std::fs::remove_dir_all(&dir).ok();
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
