//! The full registry, checked as a whole: its declarations are consistent, every implemented
//! function can be called with run-time values without panicking, and a call by value does
//! what the same call with literal arguments in a compiled script does.

// The registry of the binary is built by its catalog; the binary has no library target,
// so the test compiles that one file itself (its docs writer is not used here).
#[allow(dead_code)]
#[path = "../../crates/ferrosip/src/catalog.rs"]
mod catalog;

use bytes::Bytes;
use ferrosip_api::args::{ArgKind, RawArg, RouteTable};
use ferrosip_api::{
    CallEnv, Callable, FunctionDef, MsgContext, NetInfo, Registry, RouteKind, Value,
};
use ferrosip_script::{LoadOptions, Loaded, ScriptCallEnv};
use ferrosip_sip::SipMessage;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Alice <sip:+4930123@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@10.0.0.1:5060>\r\n\
Record-Route: <sip:10.9.9.9;lr;ftag=1928301774>\r\n\
User-Agent: softphone 1.0\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 31\r\n\r\n\
v=0\r\no=alice 1 1 IN IP4 10.0.0.1\r\n";

const REGISTER: &str = "REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnashds7\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Bob <sip:bob@example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.4:5060>;expires=3600\r\n\
Expires: 7200\r\n\
Content-Length: 0\r\n\r\n";

/// A script that names a route of every table a function argument can name, and loads
/// modules whose functions read their parameters or need their init (usrloc for registrar).
const SCRIPT: &str = r#"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "sanity.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "cfgutils.so"
request_route {
    route(R1);
}
route[R1] {
    return;
}
failure_route[F1] {
    return;
}
branch_route[B1] {
    return;
}
onreply_route[O1] {
    return;
}
"#;

fn load(reg: &Registry) -> Loaded {
    ferrosip_script::load_str("registry_calls.cfg", SCRIPT, &LoadOptions::default(), reg)
        .unwrap_or_else(|e| panic!("test script loads: {e}"))
}

fn context(text: &str, route: RouteKind) -> MsgContext {
    let msg =
        SipMessage::parse(Bytes::copy_from_slice(text.as_bytes())).expect("test message parses");
    let net = NetInfo {
        source: "10.0.0.1:5060".parse().expect("address"),
        local: "10.0.0.100:5060".parse().expect("address"),
        ..NetInfo::default()
    };
    MsgContext::new(msg, route, net)
}

/// A value of the kind an argument declares.
fn sample(kind: ArgKind) -> Value {
    match kind {
        ArgKind::Int | ArgKind::Flag => Value::Int(1),
        ArgKind::Str => Value::from_static("X-Test"),
        ArgKind::Value => Value::from_static("1"),
        ArgKind::Regex => Value::from_static("^INVITE"),
        ArgKind::PvOut => Value::from_static("$var(x)"),
        ArgKind::Route(RouteTable::Named) => Value::from_static("R1"),
        ArgKind::Route(RouteTable::Failure) => Value::from_static("F1"),
        ArgKind::Route(RouteTable::Branch) => Value::from_static("B1"),
        ArgKind::Route(RouteTable::OnReply) => Value::from_static("O1"),
        ArgKind::Route(RouteTable::Event) => Value::from_static("xhttp:request"),
        ArgKind::Custom("location table name") => Value::from_static("location"),
        ArgKind::Custom("algorithm") => Value::Int(0),
        ArgKind::Custom("method list") => Value::from_static("INVITE|REGISTER"),
        ArgKind::Custom("substitution /re/repl/flags") => Value::from_static("/bob/carol/"),
        ArgKind::Custom(_) => Value::from_static("1"),
    }
}

/// The route kind a call is made in: the request route when the function allows it.
fn route_for(def: &FunctionDef) -> RouteKind {
    if def.routes.contains(RouteKind::Request) {
        RouteKind::Request
    } else {
        def.routes.kinds().next().unwrap_or(RouteKind::Request)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("test runtime")
}

/// Calls `def` with `args` by value and waits for an async function (bounded, so that a
/// function waiting for a server that is not there cannot hang the test).
fn call_by_value(
    rt: &tokio::runtime::Runtime,
    def: &FunctionDef,
    ctx: &mut MsgContext,
    args: &[Value],
    env: &dyn CallEnv,
) -> Result<ferrosip_api::FnResult, &'static str> {
    let outcome = def.call_values(ctx, args, env);
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), outcome.finish(ctx))
            .await
            .map_err(|_| "did not finish within 10 s")
    })
}

/// The same call through a compiled script's path: fixup of literals, then the fixed call.
fn call_fixed(
    rt: &tokio::runtime::Runtime,
    def: &FunctionDef,
    ctx: &mut MsgContext,
    raw: Vec<RawArg>,
    env: &dyn CallEnv,
) -> ferrosip_api::FnResult {
    let fixed = (def.fixup)(raw, env)
        .unwrap_or_else(|(i, e)| panic!("{}: argument {i} does not fix up: {e}", def.name));
    match &def.call {
        Callable::Sync(f) => f(ctx, &fixed),
        Callable::Async(f) => rt.block_on(async {
            let apply = f(ctx, &fixed).await;
            apply(ctx)
        }),
        Callable::Declared => panic!("{} is declared only", def.name),
    }
}

#[test]
fn declarations_are_consistent() {
    let reg = catalog::registry();
    let errors = reg.declaration_errors();
    assert!(
        errors.is_empty(),
        "{} declaration error(s):\n{}",
        errors.len(),
        errors.join("\n")
    );
}

/// A server declares the core and the modules its script loads, nothing else; the
/// catalog's names are the names the modules declare.
#[test]
fn a_server_registry_has_only_the_loaded_modules() {
    let full = catalog::registry();
    let reg = catalog::registry_for(&["tm".to_string(), "sl".to_string()]);
    for m in full.modules() {
        let expected = m.absorbed || matches!(m.name, "core" | "tm" | "sl") || m.always_loaded;
        assert_eq!(
            reg.module(m.name).is_some(),
            expected,
            "module {} in the server's registry",
            m.name
        );
    }
    assert!(reg.function("t_relay").is_some());
    assert!(reg.function("pike_check_req").is_none());
    for (name, _) in catalog::MODULES {
        assert!(
            catalog::registry_for(&[name.to_string()])
                .module(name)
                .is_some(),
            "catalog entry {name} declares a module of that name"
        );
    }
}

#[test]
fn every_function_is_callable_by_value() {
    let reg = catalog::registry();
    let loaded = load(&reg);
    let env = ScriptCallEnv::for_loaded(&reg, &loaded);
    let rt = runtime();
    let mut defs: Vec<&Arc<FunctionDef>> = reg.functions().collect();
    defs.sort_by_key(|d| (d.name, d.arity()));
    let mut failures = Vec::new();
    let mut called = 0;
    for def in &defs {
        let args: Vec<Value> = def.arg_kinds.iter().map(|k| sample(*k)).collect();
        for message in [INVITE, REGISTER] {
            let mut ctx = context(message, route_for(def));
            let result = catch_unwind(AssertUnwindSafe(|| {
                call_by_value(&rt, def, &mut ctx, &args, &env)
            }));
            let method = &message[..message.find(' ').unwrap_or(0)];
            match (result, &def.call) {
                (Err(_), _) => failures.push(format!("{} on {method}: panicked", def.signature())),
                (Ok(Err(why)), _) => {
                    failures.push(format!("{} on {method}: {why}", def.signature()))
                }
                (Ok(Ok(Ok(_))), Callable::Declared) => failures.push(format!(
                    "{} on {method}: declared only, yet the call succeeded",
                    def.signature()
                )),
                (Ok(Ok(Err(e))), Callable::Declared) if !e.message.contains("declared") => failures
                    .push(format!(
                        "{} on {method}: declared only, but the error says: {}",
                        def.signature(),
                        e.message
                    )),
                _ => {}
            }
            called += 1;
        }
    }
    assert!(called > 500, "only {called} calls made");
    assert!(
        failures.is_empty(),
        "{} call(s) by value failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// An argument written literally in a script, and the same as a run-time value.
#[derive(Clone, Copy)]
enum Lit {
    I(i64),
    S(&'static str),
}

impl Lit {
    fn raw(self) -> RawArg {
        match self {
            Lit::I(i) => RawArg::Int(i),
            Lit::S(s) => RawArg::Str(s.to_string()),
        }
    }

    fn value(self) -> Value {
        match self {
            Lit::I(i) => Value::Int(i),
            Lit::S(s) => Value::from_static(s),
        }
    }
}

use Lit::{I, S};

/// Everything a function can change that a later route sees.
fn snapshot(ctx: &MsgContext) -> String {
    format!(
        "message:\n{}\nruri: {:?}\ndu: {:?}\nflags: {:x} bflags: {:x}\nvars: {:?}\navps: {:?}\nbranch: {} ext: {:?}",
        String::from_utf8_lossy(&ctx.msg.to_bytes()),
        ctx.msg.request_uri().map(String::from_utf8_lossy),
        ctx.dst_uri,
        ctx.flags,
        ctx.bflags,
        ctx.vars,
        ctx.avps,
        ctx.branch_idx,
        ctx.ext,
    )
}

fn result_text(r: &ferrosip_api::FnResult) -> String {
    match r {
        Ok(v) => format!("rc {}", v.rc()),
        Err(e) => format!("error {} ({})", e.code, e.message),
    }
}

#[test]
fn value_calls_do_what_fixed_calls_do() {
    // (message, [(function, arguments)]): each sequence runs on a fresh message through
    // both paths; every return code and the final message and context must agree. A
    // sequence that changes module state (usrloc) ends with calls that undo it, so that
    // the second path starts from the same state as the first.
    type Call = (&'static str, Vec<Lit>);
    type Case = (&'static str, Vec<Call>);
    let cases: Vec<Case> = vec![
        (INVITE, vec![("mf_process_maxfwd_header", vec![I(10)])]),
        (
            INVITE,
            vec![
                ("is_maxfwd_lt", vec![I(80)]),
                ("maxfwd_at_least", vec![S("71")]),
            ],
        ),
        (INVITE, vec![("append_hf", vec![S("X-Added: 1\r\n")])]),
        (INVITE, vec![("remove_hf", vec![S("User-Agent")])]),
        (INVITE, vec![("is_method", vec![S("INVITE|BYE")])]),
        (REGISTER, vec![("is_method", vec![S("INVITE|BYE")])]),
        (INVITE, vec![("search", vec![S("^User-Agent: soft")])]),
        (INVITE, vec![("is_present_hf_re", vec![S("^record-")])]),
        (INVITE, vec![("replace", vec![S("Alice"), S("Carol")])]),
        (
            INVITE,
            vec![("subst_uri", vec![S("/bob@example.com/carol@example.org/")])],
        ),
        (
            INVITE,
            vec![(
                "subst_v",
                vec![
                    S("sip:bob@example.com"),
                    S("/sip:(.*)@.*/\\1/"),
                    S("$var(user)"),
                ],
            )],
        ),
        (
            INVITE,
            vec![
                ("cmp_str", vec![S("abc"), S("abc")]),
                ("starts_with", vec![S("abc"), S("b")]),
            ],
        ),
        (
            INVITE,
            vec![
                ("is_e164", vec![S("+4930123")]),
                ("is_uri", vec![S("sip:a@b")]),
            ],
        ),
        (
            INVITE,
            vec![
                ("add_uri_param", vec![S("foo=bar")]),
                ("uri_param", vec![S("foo")]),
            ],
        ),
        (
            INVITE,
            vec![("has_totag", vec![]), ("is_first_hop", vec![])],
        ),
        (
            INVITE,
            vec![
                ("rewritehost", vec![S("10.0.0.2")]),
                ("strip", vec![I(1)]),
                ("prefix", vec![S("00")]),
                ("setflag", vec![I(5)]),
                ("isflagset", vec![S("5")]),
                ("resetflag", vec![I(5)]),
            ],
        ),
        (INVITE, vec![("seturi", vec![S("sip:bob@10.1.1.1:5070")])]),
        (
            INVITE,
            vec![
                ("setdsturi", vec![S("sip:10.0.0.9:5070")]),
                ("isdsturiset", vec![]),
                ("setbflag", vec![I(2)]),
                ("isbflagset", vec![I(2)]),
            ],
        ),
        (INVITE, vec![("pv_printf", vec![S("$var(out)"), S("text")])]),
        (
            INVITE,
            vec![("is_int", vec![I(7)]), ("is_int", vec![S("x7")])],
        ),
        (
            INVITE,
            vec![
                ("record_route", vec![]),
                ("add_rr_param", vec![S(";foo=1")]),
            ],
        ),
        (
            INVITE,
            vec![("record_route_preset", vec![S("10.0.0.100:5060")])],
        ),
        (INVITE, vec![("loose_route", vec![])]),
        (INVITE, vec![("check_route_param", vec![S("ftag=")])]),
        (INVITE, vec![("sanity_check", vec![I(1), I(7)])]),
        (REGISTER, vec![("sanity_check", vec![])]),
        (
            INVITE,
            vec![
                ("t_on_failure", vec![S("F1")]),
                ("t_is_set", vec![S("failure_route")]),
            ],
        ),
        (
            INVITE,
            vec![
                ("t_on_branch", vec![S("B1")]),
                ("t_is_set", vec![S("branch_route")]),
            ],
        ),
        (INVITE, vec![("sl_send_reply", vec![I(404), S("Not Here")])]),
        (INVITE, vec![("ds_select_dst", vec![I(1), I(4)])]),
        (
            REGISTER,
            vec![
                ("registered", vec![S("location")]),
                ("save", vec![S("location"), S("0x02")]),
                ("registered", vec![S("location"), S("sip:bob@example.com")]),
                ("lookup", vec![S("location"), S("sip:bob@example.com")]),
                ("unregister", vec![S("location"), S("sip:bob@example.com")]),
            ],
        ),
        (INVITE, vec![("rand_set_prob", vec![I(50)])]),
    ];
    let reg = catalog::registry();
    let loaded = load(&reg);
    let env = ScriptCallEnv::for_loaded(&reg, &loaded);
    let rt = runtime();
    let mut modules = std::collections::BTreeSet::new();
    let mut functions = std::collections::BTreeSet::new();
    let def_of = |name: &str, arity: usize| {
        reg.function(name)
            .and_then(|o| o.iter().find(|d| d.arity() == arity))
            .unwrap_or_else(|| panic!("{name}/{arity} is registered"))
    };
    for (message, calls) in &cases {
        let mut by_value = context(message, RouteKind::Request);
        let mut fixed = context(message, RouteKind::Request);
        let mut value_results = Vec::new();
        for (name, args) in calls {
            let def = def_of(name, args.len());
            modules.insert(def.module.clone());
            functions.insert(*name);
            let values: Vec<Value> = args.iter().map(|a| a.value()).collect();
            let v = call_by_value(&rt, def, &mut by_value, &values, &env)
                .unwrap_or_else(|why| panic!("{name}: {why}"));
            value_results.push(result_text(&v));
        }
        for ((name, args), v) in calls.iter().zip(&value_results) {
            let def = def_of(name, args.len());
            let raw: Vec<RawArg> = args.iter().map(|a| a.raw()).collect();
            let f = call_fixed(&rt, def, &mut fixed, raw, &env);
            assert_eq!(
                *v,
                result_text(&f),
                "{name} by value and fixed returned differently"
            );
        }
        assert_eq!(
            snapshot(&by_value),
            snapshot(&fixed),
            "by value and fixed left different states after {:?}",
            calls.iter().map(|c| c.0).collect::<Vec<_>>()
        );
    }
    assert!(functions.len() >= 15, "{functions:?}");
    assert!(modules.len() >= 8, "{modules:?}");
}

#[test]
fn bad_values_are_errors_not_panics() {
    let reg = catalog::registry();
    let loaded = load(&reg);
    let env = ScriptCallEnv::for_loaded(&reg, &loaded);
    let rt = runtime();
    let def = |name: &str, arity: usize| -> Arc<FunctionDef> {
        reg.function(name)
            .and_then(|o| o.iter().find(|d| d.arity() == arity).cloned())
            .unwrap_or_else(|| panic!("{name}/{arity} is registered"))
    };
    let cases: Vec<(Arc<FunctionDef>, Vec<Value>, &str)> = vec![
        (
            def("setflag", 1),
            vec![Value::Int(64)],
            "flag 64 is out of range 0..63",
        ),
        (
            def("setflag", 1),
            vec![Value::from_static("abc")],
            "expected a number, found \"abc\"",
        ),
        (
            def("mf_process_maxfwd_header", 1),
            vec![Value::Null],
            "expected a number, found null",
        ),
        (
            def("append_hf", 1),
            vec![Value::Null],
            "expected a string, found null",
        ),
        (
            def("t_on_failure", 1),
            vec![Value::from_static("NOPE")],
            "no failure_route[NOPE] in this script",
        ),
        (
            def("pv_printf", 2),
            vec![Value::from_static("$nosuchpv"), Value::from_static("x")],
            "argument 1",
        ),
        (
            def("pv_printf", 2),
            vec![Value::Int(3), Value::from_static("x")],
            "expected the name of a pseudo-variable",
        ),
        (
            def("search", 1),
            vec![Value::from_static("(")],
            "invalid regular expression",
        ),
        (
            def("subst", 1),
            vec![Value::from_static("nonsense")],
            "argument 1",
        ),
        (
            def("ds_select_dst", 2),
            vec![Value::Int(1), Value::Int(99)],
            "argument 2",
        ),
        (
            def("save", 1),
            vec![Value::from_static("")],
            "is not a table name",
        ),
        (def("append_hf", 1), vec![], "takes 1 argument, 0 given"),
        (def("t_on_failure", 1), vec![Value::from_static("F1")], ""),
    ];
    for (def, args, expected) in cases {
        let mut ctx = context(INVITE, RouteKind::Request);
        let r = call_by_value(&rt, &def, &mut ctx, &args, &env)
            .unwrap_or_else(|why| panic!("{}: {why}", def.name));
        match r {
            Err(e) if !expected.is_empty() => assert!(
                e.message.contains(expected),
                "{}({args:?}): \"{}\" does not say \"{expected}\"",
                def.name,
                e.message
            ),
            Ok(_) if expected.is_empty() => {}
            other => panic!("{}({args:?}): {other:?}, expected \"{expected}\"", def.name),
        }
    }
    // A function outside the route kinds it allows.
    let relay = def("t_check_status", 1);
    let mut ctx = context(INVITE, RouteKind::Branch);
    if !relay.routes.contains(RouteKind::Branch) {
        let r = call_by_value(&rt, &relay, &mut ctx, &[Value::from_static("404")], &env)
            .expect("finishes");
        let e = r.expect_err("not allowed in branch_route");
        assert!(
            e.message.contains("not allowed in branch_route"),
            "{}",
            e.message
        );
    }
}

#[test]
fn a_name_two_modules_offer_resolves_to_the_loaded_one() {
    let reg = catalog::registry();
    for module in ["rtpengine", "rtpproxy"] {
        let script =
            format!("loadmodule \"{module}.so\"\nrequest_route {{\n    start_recording();\n}}\n");
        // Both overloads are declared only: `check --allow-declared` is how such a script
        // loads at all, and resolution is what this test is about.
        let opts = LoadOptions {
            allow_declared: true,
            ..Default::default()
        };
        let loaded = ferrosip_script::load_str("two.cfg", &script, &opts, &reg)
            .unwrap_or_else(|e| panic!("start_recording() with {module} loaded: {e}"));
        let call = loaded
            .program
            .calls
            .iter()
            .find(|c| c.def.name == "start_recording")
            .expect("the call is compiled");
        assert_eq!(call.def.module, module);
    }
}

#[test]
fn a_module_using_another_needs_it_loaded_first() {
    let reg = catalog::registry();
    for (user, provider) in [("registrar", "usrloc"), ("auth_db", "auth")] {
        let alone = format!("loadmodule \"{user}.so\"\nrequest_route {{\n    exit;\n}}\n");
        let err = ferrosip_script::load_str("needs.cfg", &alone, &LoadOptions::default(), &reg)
            .err()
            .unwrap_or_else(|| panic!("{user} without {provider} loads"));
        let expected = format!(
            "module {user} needs {provider}: loadmodule \"{provider}.so\" before \"{user}.so\""
        );
        assert!(
            err.messages.iter().any(|m| m.contains(&expected)),
            "{:?}",
            err.messages
        );
        let both = format!("loadmodule \"{provider}.so\"\n{alone}");
        ferrosip_script::load_str("needs.cfg", &both, &LoadOptions::default(), &reg)
            .unwrap_or_else(|e| panic!("{provider} then {user}: {e}"));
    }
}
