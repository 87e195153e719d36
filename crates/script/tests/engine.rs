//! The script engine end to end, without sockets: config text -> preprocess -> parse ->
//! compile -> run against a real parsed SIP message.

use bytes::Bytes;
use ferrosip_api::{
    FnResult, Module, ModuleBuilder, MsgContext, NetInfo, Proto, Registry, RouteKind, RouteMask,
    Value, Verdict,
};
use ferrosip_script::vm::{run_blocking, Outcome, Vm};
use ferrosip_script::{load_str, LoadOptions, Loaded};
use ferrosip_sip::SipMessage;

const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@10.0.0.1:5060>\r\n\
User-Agent: softphone/1.0\r\n\
X-Custom: one\r\n\
X-Custom: two\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

/// A test module whose functions record what the script did, so the tests can see it.
struct Probe;

fn record(ctx: &mut MsgContext, what: String) {
    let slot = 10_000;
    ctx.avps.push(slot, Value::from_string(what));
}

fn recorded(ctx: &MsgContext) -> Vec<String> {
    let mut v: Vec<String> = ctx.avps.all(10_000).map(|v| v.to_string()).collect();
    v.reverse();
    v
}

impl Module for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.function("mark")
            .handler(|ctx: &mut MsgContext, s: Bytes| -> FnResult {
                record(ctx, String::from_utf8_lossy(&s).into_owned());
                Ok(Verdict::TRUE)
            });
        m.function("ret")
            .handler(|_ctx: &mut MsgContext, n: i64| -> FnResult { Ok(Verdict::code(n as i32)) });
        m.function("only_failure")
            .routes(RouteMask::FAILURE)
            .handler(|_ctx: &mut MsgContext| -> FnResult { Ok(Verdict::TRUE) });
        m.function("ret_async")
            .async_handler(|_ctx: &mut MsgContext, n: i64| async move {
                ferrosip_api::apply_result(move |ctx: &mut MsgContext| {
                    record(ctx, format!("async {n}"));
                    Ok(Verdict::code(n as i32))
                })
            });
    }
}

/// A module that only declares: a function taking a regular expression and a PV class.
struct Stub;

impl Module for Stub {
    fn name(&self) -> &'static str {
        "stub"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Declared only.");
        m.param("size", ferrosip_api::ParamType::Int, 8, "Table size.");
        m.function("stub_check")
            .args(&["pattern"])
            .declared::<(std::sync::Arc<regex::bytes::Regex>,)>();
        m.pv_declared(
            "stub",
            ferrosip_api::pv::PvParamRule::Required,
            "A stub value.",
        );
    }
}

fn registry() -> Registry {
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&ferrosip_mod_core::CoreModule);
    reg.register(&ferrosip_mod_kex::KexModule);
    reg.register(&Probe);
    reg.register(&Stub);
    reg
}

fn load(cfg: &str) -> (Registry, Loaded) {
    let reg = registry();
    let text = format!("loadmodule \"probe\"\n{cfg}");
    let loaded = match load_str("test.cfg", &text, &LoadOptions::default(), &reg) {
        Ok(l) => l,
        Err(e) => panic!("config did not load:\n{e}"),
    };
    (reg, loaded)
}

fn load_err(cfg: &str) -> String {
    let reg = registry();
    let text = format!("loadmodule \"probe\"\n{cfg}");
    match load_str("test.cfg", &text, &LoadOptions::default(), &reg) {
        Ok(_) => panic!("config loaded but should not have"),
        Err(e) => e.to_string(),
    }
}

fn ctx() -> MsgContext {
    let msg = SipMessage::parse(Bytes::from_static(INVITE.as_bytes())).expect("test INVITE parses");
    let net = NetInfo {
        proto: Proto::Udp,
        source: "10.0.0.1:5062".parse().unwrap(),
        local: "127.0.0.1:5060".parse().unwrap(),
    };
    MsgContext::new(msg, RouteKind::Request, net)
}

fn run(cfg: &str) -> (MsgContext, Outcome) {
    let (_reg, loaded) = load(cfg);
    let mut c = ctx();
    let route = loaded
        .program
        .main_route(RouteKind::Request)
        .expect("request_route");
    let mut vm = Vm::new();
    let out = run_blocking(&mut vm, &loaded.program, route, &mut c).expect("runs");
    (c, out)
}

fn marks(cfg: &str) -> Vec<String> {
    recorded(&run(cfg).0)
}

#[test]
fn if_else_and_comparisons() {
    assert_eq!(
        marks(
            r#"request_route { if ($rm == "INVITE") { mark("a"); } else { mark("b"); } if (1 < 2 && !(2 < 1)) mark("c"); }"#
        ),
        ["a", "c"]
    );
    assert_eq!(
        marks(r#"request_route { if (method == "invite") mark("ci"); }"#),
        ["ci"]
    );
    assert_eq!(
        marks(r#"request_route { if ($rU =~ "^b.b$") mark("re"); if ($rU !~ "^x") mark("nre"); }"#),
        ["re", "nre"]
    );
    assert_eq!(
        marks(
            r#"request_route { if ("abc" eq "abc" && "ABC" ieq "abc" && "a" ne "b") mark("s"); }"#
        ),
        ["s"]
    );
}

#[test]
fn arithmetic_and_concatenation() {
    assert_eq!(
        marks(
            r#"request_route { $var(x) = 2 + 3 * 4; $var(s) = "n=" + $var(x); mark("$var(s)"); $var(y) = (7 % 4) | 8; mark("$var(y)"); $var(z) = 1 << 4; mark("$var(z)"); }"#
        ),
        ["n=14", "11", "16"]
    );
    assert_eq!(
        marks(
            r#"request_route { $var(a) = -5; $var(b) = ~0; if ($var(a) < 0 && $var(b) == -1) mark("neg"); }"#
        ),
        ["neg"]
    );
    assert_eq!(
        marks(r#"request_route { $var(i) = (int)"42"; $var(j) = $var(i) + 1; mark("$var(j)"); }"#),
        ["43"]
    );
}

#[test]
fn expressions_as_arguments_are_evaluated_at_each_call() {
    assert_eq!(
        marks(
            r#"request_route { $var(i) = 0; while ($var(i) < 2) { mark("sip:" + $rU + "@" + $var(i)); $var(i) = $var(i) + 1; } if (ret(1 + 1)) mark("true"); mark($var(i) * 10); }"#
        ),
        ["sip:bob@0", "sip:bob@1", "true", "20"]
    );
}

#[test]
fn switch_on_ints_and_strings() {
    let cfg = r#"request_route {
        switch ($rm) {
            case "REGISTER": mark("reg"); break;
            case "INVITE": mark("inv");
            case "FALL": mark("fell"); break;
            default: mark("default");
        }
        $var(n) = 3;
        switch ($var(n)) { case 1: mark("one"); break; case 3: mark("three"); break; default: mark("d"); }
        switch ($var(n)) { case 9: mark("nine"); break; default: mark("dflt"); }
    }"#;
    assert_eq!(marks(cfg), ["inv", "fell", "three", "dflt"]);
}

#[test]
fn while_loop_and_break() {
    let cfg = r#"request_route {
        $var(i) = 0;
        while ($var(i) < 5) { $var(i) = $var(i) + 1; if ($var(i) == 3) break; }
        mark("$var(i)");
    }"#;
    assert_eq!(marks(cfg), ["3"]);
}

#[test]
fn runaway_loop_is_stopped() {
    let (_r, loaded) = load("max_while_loops=50\nrequest_route { while (1) { $var(x) = 1; } }");
    let mut c = ctx();
    let route = loaded.program.main_route(RouteKind::Request).unwrap();
    let err = run_blocking(&mut Vm::new(), &loaded.program, route, &mut c).unwrap_err();
    assert!(err.message.contains("max_while_loops=50"), "{err}");
    assert!(err.location.starts_with("test.cfg:3:"), "{err}");
}

#[test]
fn runaway_recursion_is_stopped() {
    let (_r, loaded) = load("request_route { route(R); }\nroute[R] { route(R); }");
    let mut c = ctx();
    let route = loaded.program.main_route(RouteKind::Request).unwrap();
    let err = run_blocking(&mut Vm::new(), &loaded.program, route, &mut c).unwrap_err();
    assert!(err.message.contains("max_recursive_level"), "{err}");
}

#[test]
fn return_codes_follow_kamailio() {
    // > 0 true, < 0 false, 0 ends the script.
    assert_eq!(
        marks(
            r#"request_route { if (ret(5)) mark("t"); if (!ret(-2)) { $var(r) = $rc; mark("f"); } mark("$var(r)"); }"#
        ),
        ["t", "f", "-2"]
    );
    let (c, out) = run(r#"request_route { mark("before"); ret(0); mark("after"); }"#);
    assert_eq!(recorded(&c), ["before"]);
    assert_eq!(out, Outcome::Exit);
    // route() return values, $retcode, return 0 = exit
    assert_eq!(
        marks("request_route { route(A); mark(\"$retcode\"); if (route(B)) mark(\"b-true\"); if (!route(C)) mark(\"c-false\"); route(Z); mark(\"unreached\"); }\n\
               route[A] { return 7; }\nroute[B] { return; }\nroute[C] { return -1; }\nroute[Z] { return 0; }"),
        ["7", "b-true", "c-false"]
    );
}

#[test]
fn exit_and_drop() {
    let (c, out) = run(r#"request_route { mark("a"); exit; mark("b"); }"#);
    assert_eq!((recorded(&c), out), (vec!["a".to_string()], Outcome::Exit));
    let (_, out) = run(r#"request_route { drop; }"#);
    assert_eq!(out, Outcome::Drop);
    let (_, out) = run(r#"request_route { $var(x) = 1; }"#);
    assert_eq!(out, Outcome::Return(1));
}

#[test]
fn pseudo_variables_read() {
    let cfg = r#"request_route {
        mark("$ru|$rU|$rd|$rm|$fu|$fU|$fd|$ft|$tu|$tU|$ci|$cs|$si|$sp|$Ri|$Rp|$pr|$ua");
        mark("$hdr(X-Custom)|$(hdr(X-Custom)[1])|$(hdr(X-Custom)[*])|$hdr(Max-Forwards)|$hdr(i)");
        mark("[$tt]|$fn|$rb");
    }"#;
    assert_eq!(
        marks(cfg),
        [
            "sip:bob@example.com|bob|example.com|INVITE|sip:alice@atlanta.com|alice|atlanta.com|1928301774|sip:bob@example.com|bob|a84b4c76e66710@pc33.atlanta.com|314159|10.0.0.1|5062|127.0.0.1|5060|udp|softphone/1.0",
            "one|two|one,two|70|a84b4c76e66710@pc33.atlanta.com",
            "[<null>]|Alice|v=0\n",
        ]
    );
}

#[test]
fn request_uri_and_destination_writes() {
    let (c, _) = run(
        r#"request_route { $rU = "carol"; $rd = "b.example.org"; $rp = 5080; $du = "sip:10.1.1.1:5070"; mark("$ru $du"); }"#,
    );
    assert_eq!(
        recorded(&c),
        ["sip:carol@b.example.org:5080 sip:10.1.1.1:5070"]
    );
    assert_eq!(
        c.msg.request_uri(),
        Some(&b"sip:carol@b.example.org:5080"[..])
    );
    let (c, _) =
        run(r#"request_route { $ru = "sip:x@y.z;transport=tcp"; $du = $null; mark("$rU@$rd"); }"#);
    assert_eq!(recorded(&c), ["x@y.z"]);
    assert_eq!(c.dst_uri, None);
}

#[test]
fn avps_stack() {
    let cfg = r#"request_route {
        $avp(x) = 1; $avp(x) = 2; $avp(x) = "three";
        mark("$avp(x)|$(avp(x)[1])|$(avp(x)[2])|$(avp(x)[*])");
        $avp(x) := 9; mark("$(avp(x)[*])");
        $avp(x) = $null; if (!defined $avp(x)) mark("gone");
    }"#;
    assert_eq!(marks(cfg), ["three|2|1|three,2,1", "9", "gone"]);
}

#[test]
fn transformations() {
    let cfg = r#"request_route {
        mark("$(ru{uri.user})|$(ru{uri.host})|$(fu{uri.user}{s.toupper})|$(ci{s.len})|$(rU{s.substr,1,1})");
        $var(p) = "a=1;b=two;c";
        mark("$(var(p){param.value,b})|$(var(p){param.count})|$(var(p){s.select,1,;})");
        mark("$(hdr(To){nameaddr.uri})|$(hdr(From){tobody.tag})|$(var(p){s.int})");
    }"#;
    assert_eq!(
        marks(cfg),
        [
            "bob|example.com|ALICE|31|o",
            "two|3|b=two",
            "sip:bob@example.com|1928301774|0"
        ]
    );
}

#[test]
fn cfg_vars_and_defines() {
    let cfg = "#!define GREETING \"hello\"\n\
               my.limit = 12 desc \"a limit\"\n\
               request_route { mark(GREETING); mark(\"$sel(cfg_get.my.limit)\"); }";
    assert_eq!(marks(cfg), ["hello", "12"]);
}

#[test]
fn myself_and_keywords() {
    let cfg = "listen=udp:127.0.0.1:5060\nalias=\"example.com\"\n\
        request_route { if (uri == myself) mark(\"uri-mine\"); if (src_ip != myself) mark(\"src-not-mine\"); \
        if (from_uri == myself) mark(\"from-mine\"); if (src_port == 5062 && proto == UDP) mark(\"kw\"); }";
    assert_eq!(marks(cfg), ["uri-mine", "src-not-mine", "kw"]);
}

#[test]
fn myself_compares_a_uri_without_port_on_its_default_port() {
    // The request's R-URI is sip:bob@example.com: port 5060 as far as myself is concerned.
    let on = |alias: &str| {
        marks(&format!(
            "alias=\"{alias}\"\nrequest_route {{ if (uri == myself) mark(\"ruri\"); \
             if (\"sips:x@example.com\" == myself) mark(\"sips\"); \
             if (\"sip:x@example.com;transport=tls\" == myself) mark(\"tls\"); }}"
        ))
    };
    assert_eq!(on("example.com:5060"), ["ruri"]);
    assert_eq!(on("example.com:5061"), ["sips", "tls"]);
    assert_eq!(on("example.com:5070"), Vec::<String>::new());
    assert_eq!(on("example.com"), ["ruri", "sips", "tls"]);
}

#[test]
fn async_functions_are_awaited() {
    assert_eq!(
        marks(r#"request_route { if (ret_async(3)) mark("$rc"); }"#),
        ["async 3", "3"]
    );
}

#[test]
fn flags() {
    let cfg = r#"loadmodule "kex.so"
    request_route { setflag(3); if (isflagset(3)) mark("set"); resetflag(3); if (!isflagset(3)) mark("reset"); setbflag(1); mark("$bf"); }"#;
    assert_eq!(marks(cfg), ["set", "reset", "2"]);
}

// ---- load-time errors, each at the right place ----------------------------------------

#[test]
fn error_unknown_function_with_suggestion() {
    let e = load_err("request_route {\n  mrak(\"x\");\n}");
    assert!(
        e.contains("test.cfg:3:3: error: unknown function 'mrak', did you mean mark?"),
        "{e}"
    );
}

#[test]
fn error_wrong_arity() {
    let e = load_err("request_route {\n  mark(\"a\", \"b\");\n}");
    assert!(
        e.contains("test.cfg:3:3: error: mark() takes 1 argument(s), 2 given"),
        "{e}"
    );
}

#[test]
fn error_function_not_allowed_in_route_kind() {
    let e = load_err("request_route {\n    only_failure();\n}");
    assert!(e.contains("test.cfg:3:5: error: only_failure() is not allowed in request_route (allowed in: failure_route)"), "{e}");
}

#[test]
fn error_route_kind_through_subroutine() {
    // Reached only from request_route: certain misuse, an error.
    let e = load_err("request_route { route(SUB); }\nroute[SUB] {\n  only_failure();\n}");
    assert!(
        e.contains("test.cfg:4:3: error: only_failure() is not allowed in request_route"),
        "{e}"
    );
    assert!(
        e.contains(
            "note: route[SUB] runs in request_route because it is called from request_route"
        ),
        "{e}"
    );
}

#[test]
fn subroutine_reached_from_several_kinds_is_checked_per_message() {
    let (_r, loaded) = load("request_route { route(SUB); }\nfailure_route[F] { route(SUB); }\nroute[SUB] {\n  if (only_failure()) mark(\"ran\");\n}");
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w
                .contains("test.cfg:5:7: warning: only_failure() is not allowed in request_route")),
        "{:?}",
        loaded.warnings
    );
    let mut c = ctx();
    let route = loaded.program.main_route(RouteKind::Request).unwrap();
    run_blocking(&mut Vm::new(), &loaded.program, route, &mut c).unwrap();
    assert!(recorded(&c).is_empty());
    let mut c = ctx();
    c.route = RouteKind::Failure;
    let f = loaded.program.named_route(RouteKind::Failure, "F").unwrap();
    run_blocking(&mut Vm::new(), &loaded.program, f, &mut c).unwrap();
    assert_eq!(recorded(&c), ["ran"]);
}

#[test]
fn error_unknown_route() {
    let e = load_err("request_route {\n  route(NOPE);\n}\nroute[NOPF] { exit; }");
    assert!(
        e.contains("test.cfg:3:3: error: no route[NOPE] in this script, did you mean NOPF?"),
        "{e}"
    );
}

#[test]
fn error_bad_argument_literal() {
    let e = load_err("request_route {\n  ret(\"abc\");\n}");
    assert!(
        e.contains("test.cfg:3:7: error: ret(): argument 1: expected a number, found \"abc\""),
        "{e}"
    );
}

#[test]
fn error_unknown_pv_and_bad_regex() {
    let e = load_err("request_route {\n  $var(x) = $nosuch;\n  if ($ru =~ \"(\") exit;\n}");
    assert!(
        e.contains("test.cfg:3:13: error: unknown pseudo-variable $nosuch"),
        "{e}"
    );
    assert!(
        e.contains("test.cfg:4:14: error: invalid regular expression"),
        "{e}"
    );
}

#[test]
fn error_read_only_pv() {
    let e = load_err("request_route {\n  $ci = \"x\";\n}");
    assert!(
        e.contains("test.cfg:3:3: error: $ci cannot be assigned"),
        "{e}"
    );
}

#[test]
fn error_unknown_module_param_and_core_param() {
    let e = load_err("loadmodule \"nosuch.so\"\nchildern=4\nmodparam(\"probe\", \"nope\", 1)\nrequest_route { exit; }");
    assert!(
        e.contains("test.cfg:2:1: error: unknown module 'nosuch'"),
        "{e}"
    );
    assert!(
        e.contains(
            "test.cfg:3:1: error: unknown core parameter 'childern', did you mean children?"
        ),
        "{e}"
    );
    assert!(
        e.contains("error: module 'probe' has no parameter 'nope'"),
        "{e}"
    );
}

#[test]
fn error_syntax_location() {
    let e = load_err("request_route {\n  mark(\"a\")\n  mark(\"b\");\n}");
    assert!(
        e.contains("test.cfg:3:") || e.contains("test.cfg:4:"),
        "{e}"
    );
    assert!(e.contains("error:"), "{e}");
}

#[test]
fn dump_lists_routes() {
    let (_r, loaded) = load("request_route { mark(\"x\"); route(R); }\nroute[R] { return 2; }");
    let d = loaded.program.dump();
    assert!(d.contains("request_route"), "{d}");
    assert!(d.contains("route[R]"), "{d}");
    assert!(d.contains("call      mark/1"), "{d}");
}

const DECLARED_USES: &str = "loadmodule \"stub\"
modparam(\"stub\", \"size\", 4)
request_route {
  if (stub_check(\"^x$stub(k)\")) exit;
  $var(x) = $(var(y){s.replace,a,$stub(k)});
  mark(\"seen $stub(k) for $$ 5\");
  $stub(k) = 1;
  if (defined $stub(j)) exit;
}";

/// Every use of a declared-only function or PV is an error at its place, whether the PV is
/// read, written, nested in a transformation or inside a format string or regex argument.
#[test]
fn declared_only_uses_are_errors_at_each_place() {
    let e = load_err(DECLARED_USES);
    let wanted = [
        "test.cfg:5:7: error: stub_check() (module stub) is declared but not implemented yet: a script that calls it cannot run",
        "test.cfg:5:21: error: $stub (module stub) is declared but not implemented yet: a script that reads it cannot run",
        "test.cfg:6:34: error: $stub (module stub) is declared but not implemented yet: a script that reads it cannot run",
        "test.cfg:7:14: error: $stub (module stub) is declared but not implemented yet: a script that reads it cannot run",
        "test.cfg:8:3: error: $stub (module stub) is declared but not implemented yet: a script that writes it cannot run",
        "test.cfg:9:15: error: $stub (module stub) is declared but not implemented yet: a script that reads it cannot run",
    ];
    for w in wanted {
        assert!(e.contains(w), "wanted {w}\n{e}");
    }
    assert_eq!(e.matches(": error: ").count(), wanted.len(), "{e}");
}

#[test]
fn declared_only_uses_are_warnings_when_allowed() {
    let reg = registry();
    let text = format!("loadmodule \"probe\"\n{DECLARED_USES}");
    let opts = LoadOptions {
        allow_declared: true,
        ..LoadOptions::default()
    };
    let loaded = load_str("test.cfg", &text, &opts, &reg).expect("loads with warnings");
    assert_eq!(loaded.declared_only, vec!["$stub", "stub_check()"]);
    let warnings = loaded.warnings.join("\n");
    assert_eq!(
        warnings
            .matches("is declared but not implemented yet: a script that")
            .count(),
        6,
        "{warnings}"
    );
    assert!(
        warnings.contains("test.cfg:3:18: warning: stub: the module is declared but not implemented yet: parameter size has no effect"),
        "{warnings}"
    );
    assert!(!reg.module_is_declared_only("probe"));
    assert!(reg.module_is_declared_only("stub"));
}
