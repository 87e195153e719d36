//! The statement trace (debugger `cfgtrace`, `ferrosip run --trace`, RPC `dbg.trace`):
//! the exact lines a route produces through a collecting sink, then the real binary
//! logging them, switched off and on again through the control interface while it runs,
//! and a Lua route's KSR calls with their Lua file:line.

use ferrosip_api::trace::{TraceLines, TraceSink};
use ferrosip_api::Registry;
use ferrosip_tests::script::request;
use ferrosip_tests::{ferrosip_bin, free_port, Launch, Proxy, Script};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrosip-cfgtrace-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    dir
}

fn registry() -> Registry {
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&ferrosip_mod_core::CoreModule);
    reg.register(&ferrosip_mod_debugger::DebuggerModule);
    reg
}

const ROUTES: &str = r#"loadmodule "debugger.so"
request_route {
    $var(user) = $rU;
    if ($var(user) == "alice" && $si == "127.0.0.1") {
        route(ALICE);
    }
    setflag(3);
    if (!isflagset(3)) {
        exit;
    }
    drop;
}

route[ALICE] {
    switch ($rU) {
        case "alice":
            $var(n) = 1;
            break;
    }
    return 2;
}
"#;

const INVITE: &str = "INVITE sip:alice@example.com SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1
From: <sip:bob@example.com>;tag=1
To: <sip:alice@example.com>
Call-ID: trace-1
CSeq: 1 INVITE
Max-Forwards: 70
Content-Length: 0

";

#[test]
fn a_sink_gets_every_statement_with_file_line_route_values_and_codes() {
    let reg = registry();
    let script = Script::load(&reg, ROUTES);
    let lines = Arc::new(TraceLines::default());
    let trace = reg.cfg_trace();
    trace.set_sink(Some(lines.clone() as Arc<dyn TraceSink>));

    // Off: nothing is reported.
    let _ = script.run(request(INVITE));
    assert!(lines.take().is_empty(), "the trace is off by default");

    trace.set_on(true);
    let mut ctx = request(INVITE);
    ctx.net.source = "127.0.0.1:5070".parse().unwrap();
    let _ = script.run(ctx);
    let got = lines.take();
    let want = [
        "t.cfg:2 [request_route] enter request_route",
        "t.cfg:3 [request_route] set $var(user) = $rU; -> \"alice\" {$rU=\"alice\"}",
        "t.cfg:4 [request_route] test $var(user) == \"alice\" && $si == \"127.0.0.1\" -> 1 {$var(user)=\"alice\"}",
        "t.cfg:4 [request_route] test if ($var(user) == \"alice\" && $si == \"127.0.0.1\") -> 1 {$si=\"127.0.0.1\"}",
        "t.cfg:14 [route[ALICE]] enter route[ALICE]",
        "t.cfg:15 [route[ALICE]] switch switch ($rU) -> \"alice\" {$rU=\"alice\"}",
        "t.cfg:17 [route[ALICE]] set $var(n) = 1; -> 1",
        "t.cfg:20 [route[ALICE]] return return 2; -> 2",
        "t.cfg:7 [request_route] call setflag(3) -> 1",
        "t.cfg:8 [request_route] call isflagset(3) -> 1",
        "t.cfg:8 [request_route] test if (!isflagset(3)) -> 0",
        "t.cfg:11 [request_route] drop drop;",
    ];
    assert_eq!(got.len(), want.len(), "lines:\n{}", got.join("\n"));
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.trim_end(), w.trim_end(), "lines:\n{}", got.join("\n"));
    }

    trace.set_on(false);
    let _ = script.run(request(INVITE));
    assert!(lines.take().is_empty(), "switched off again");
}

#[test]
fn the_debugger_refuses_what_it_does_not_do() {
    let reg = registry();
    let cfg = "loadmodule \"debugger.so\"\nmodparam(\"debugger\", \"breakpoint\", 1)\nrequest_route { exit; }\n";
    let err = match ferrosip_script::load_str("t.cfg", cfg, &Default::default(), &reg) {
        Ok(_) => panic!("a breakpoint setting must not load"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("breakpoint is not supported"), "{err}");
}

fn options(call_id: &str, port: u16, local: u16) -> Vec<u8> {
    format!(
        "OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:t@127.0.0.1>;tag=1\r\n\
         To: <sip:ping@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Sends an OPTIONS and waits for the reply's status line.
fn ping(port: u16, call_id: &str) -> String {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let local = sock.local_addr().unwrap().port();
    sock.send_to(&options(call_id, port, local), ("127.0.0.1", port))
        .expect("send");
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a reply");
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

fn dbg_trace(dir: &Path, arg: &str) -> String {
    let sock = format!("unix:{}/ctl", dir.display());
    let out = Command::new(ferrosip_bin())
        .args(["ctl", "-s", &sock, "dbg.trace", arg])
        .output()
        .expect("ferrosip ctl runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn traced(proxy: &Proxy, call_id: &str) -> Vec<String> {
    proxy
        .log_text()
        .lines()
        .filter(|l| l.contains("*** cfgtrace:") && l.contains(call_id))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_server_logs_the_trace_and_the_rpc_switches_it() {
    let dir = test_dir("rpc");
    let port = free_port();
    let cfg = format!(
        r#"listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
children=1
loadmodule "sl.so"
loadmodule "ctl.so"
loadmodule "debugger.so"
modparam("debugger", "cfgtrace", 1)
modparam("debugger", "log_level_name", "exec")
modparam("ctl", "binrpc", "unix:{dir}/ctl")
request_route {{
    $var(m) = $rm;
    sl_send_reply("404", "Nobody");
}}
"#,
        dir = dir.display()
    );
    std::fs::write(dir.join("proxy.cfg"), cfg).expect("cfg");
    let proxy = Launch::new(dir.join("proxy.cfg"))
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .start();
    assert!(ping(port, "on-1").contains("404"));
    proxy.wait_log("sl_send_reply", 1);
    let lines = traced(&proxy, "on-1");
    assert!(
        lines.iter().any(|l| l.contains("*** cfgtrace: exec ")
            && l.contains(
                "proxy.cfg:12 [request_route] call sl_send_reply(\"404\", \"Nobody\") -> 1"
            )),
        "{lines:#?}\n{}",
        proxy.log_text()
    );
    assert!(
        lines.iter().any(|l| l.contains(
            "proxy.cfg:11 [request_route] set $var(m) = $rm; -> \"OPTIONS\" {$rm=\"OPTIONS\"}"
        )),
        "{lines:#?}"
    );

    assert!(dbg_trace(&dir, "off").contains("off"));
    assert!(ping(port, "off-1").contains("404"));
    assert!(dbg_trace(&dir, "on").contains("on"));
    assert!(ping(port, "on-2").contains("404"));
    proxy.wait_log("on-2", 1);
    assert!(traced(&proxy, "off-1").is_empty(), "{}", proxy.log_text());
    assert!(!traced(&proxy, "on-2").is_empty(), "{}", proxy.log_text());
}

#[test]
fn run_trace_reports_lua_ksr_calls_with_their_lua_line() {
    let dir = test_dir("lua");
    let port = free_port();
    std::fs::write(
        dir.join("routes.lua"),
        "function ksr_request_route()\n    KSR.setflag(2)\n    KSR.sl.sl_send_reply(404, \"Not here\")\nend\n",
    )
    .expect("lua");
    let cfg = format!(
        r#"listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
children=1
loadmodule "sl.so"
loadmodule "app_lua.so"
modparam("app_lua", "load", "routes.lua")
cfgengine "lua"
"#
    );
    std::fs::write(dir.join("proxy.cfg"), cfg).expect("cfg");
    let proxy = Launch::new(dir.join("proxy.cfg"))
        .args(["--trace"])
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .start();
    assert!(ping(port, "lua-1").contains("404"));
    proxy.wait_log("sl_send_reply", 1);
    let lines = traced(&proxy, "lua-1");
    assert!(
        lines
            .iter()
            .any(|l| l
                .contains("routes.lua:3 [lua] ksr KSR.sl.sl_send_reply(404, \"Not here\") -> 1")),
        "{lines:#?}\n{}",
        proxy.log_text()
    );
}
