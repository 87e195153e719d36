//! The control interface through real clients nobody here wrote: Debian's `kamcmd`
//! (BINRPC on the ctl socket) and `kamctl` (JSON-RPC over the jsonrpcs FIFO), plus
//! `ferrosip ctl` and raw JSON-RPC with bad input on the socket and the datagram
//! socket, against a live server that goes on answering SIP; and `ferrosip ctl reload`
//! under SIPp load with no failed call.

// The binary's catalog, to know every module's RPC commands.
#[path = "../../crates/ferrosip/src/catalog.rs"]
#[allow(dead_code)]
mod catalog;

use ferrosip_tests::{
    ferrosip_bin, free_port, have_sipp, kamctl_command, log_tails, packaged_path, traced_sipp,
    Launch, Proxy,
};
use std::io::{Read, Write};
use std::net::UdpSocket;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrosip-ctl-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn have(tool: &str) -> bool {
    packaged_path(&format!("/usr/sbin/{tool}")).exists()
}

/// A registrar with dispatcher and both control modules, every file in `dir`.
fn config(dir: &Path, port: u16, dispatcher_list: &str) -> PathBuf {
    std::fs::write(dir.join("dispatcher.list"), dispatcher_list).expect("list");
    let cfg = format!(
        r#"#!KAMAILIO
debug=2
children=2
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "textops.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "dispatcher.so"
loadmodule "jsonrpcs.so"
loadmodule "ctl.so"
modparam("dispatcher", "list_file", "{dir}/dispatcher.list")
modparam("ctl", "binrpc", "unix:{dir}/ctl")
modparam("ctl", "mode", 0660)
modparam("jsonrpcs", "fifo_name", "{dir}/rpc.fifo")
modparam("jsonrpcs", "dgram_socket", "{dir}/rpc.sock")
request_route {{
    if (is_method("REGISTER")) {{
        save("location");
        exit;
    }}
    sl_send_reply("404", "Not Here");
}}
"#,
        dir = dir.display()
    );
    let path = dir.join("proxy.cfg");
    std::fs::write(&path, cfg).expect("cfg");
    path
}

fn start(dir: &Path, port: u16) -> Proxy {
    let cfg = config(dir, port, "1 sip:127.0.0.1:5999\n");
    Launch::new(cfg)
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .terminate_on_drop()
        .start()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn kamcmd(dir: &Path, args: &[&str]) -> Output {
    let sock = format!("unix:{}/ctl", dir.display());
    Command::new(packaged_path("/usr/sbin/kamcmd"))
        .args(["-s", &sock])
        .args(args)
        .output()
        .expect("kamcmd runs")
}

fn ferrosip_ctl(dir: &Path, args: &[&str]) -> Output {
    let sock = format!("unix:{}/ctl", dir.display());
    Command::new(ferrosip_bin())
        .args(["ctl", "-s", &sock])
        .args(args)
        .output()
        .expect("ferrosip ctl runs")
}

/// A request OPTIONS the config answers 404: the SIP side still works.
fn sip_answers(port: u16) -> bool {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let me = sock.local_addr().expect("addr");
    let msg = format!(
        "OPTIONS sip:x@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-ctl{}\r\nFrom: <sip:t@{me}>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: ctl-{}@t\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        me.port(),
        me.port()
    );
    sock.send_to(msg.as_bytes(), ("127.0.0.1", port))
        .expect("send");
    let mut buf = [0u8; 4096];
    matches!(sock.recv(&mut buf), Ok(n) if buf[..n].starts_with(b"SIP/2.0 404"))
}

/// One REGISTER of `user` by SIPp, answered 200.
fn register(dir: &Path, port: u16, user: &str) {
    let scenario =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/registrar/uac_register_ok.xml");
    let status = traced_sipp(dir, user, &scenario, &format!("127.0.0.1:{port}"))
        .args([
            "-s",
            user,
            "-m",
            "1",
            "-key",
            "expires",
            "600",
            "-timeout",
            "15s",
            "-timeout_error",
        ])
        .status()
        .expect("sipp runs");
    assert!(
        status.success(),
        "REGISTER {user} failed:\n{}",
        log_tails(dir)
    );
}

#[test]
fn kamcmd_runs_core_stats_dispatcher_and_usrloc_commands() {
    if !have("kamcmd") || !have_sipp() {
        eprintln!("kamcmd or sipp missing: skipped");
        return;
    }
    let dir = test_dir("kamcmd");
    let port = free_port();
    let proxy = start(&dir, port);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join("ctl"))
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660, "ctl mode param");

    let up = kamcmd(&dir, &["core.uptime"]);
    assert!(
        up.status.success() && text(&up).contains("uptime:"),
        "{}",
        text(&up)
    );

    register(&dir, port, "alice");
    register(&dir, port, "bob");
    let ul = kamcmd(&dir, &["ul.dump"]);
    let out = text(&ul);
    assert!(ul.status.success(), "{out}");
    assert!(
        out.contains("alice") && out.contains("bob"),
        "ul.dump:\n{out}"
    );

    let stats = kamcmd(&dir, &["stats.get_statistics", "all"]);
    let out = text(&stats);
    let rcv: u64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("core:rcv_requests = "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no core:rcv_requests in:\n{out}"));
    assert!(rcv >= 2, "two REGISTERs counted:\n{out}");
    assert!(out.contains("usrloc:location-contacts = 2"), "{out}");

    let list = kamcmd(&dir, &["dispatcher.list"]);
    assert!(
        text(&list).contains("sip:127.0.0.1:5999"),
        "{}",
        text(&list)
    );
    std::fs::write(
        dir.join("dispatcher.list"),
        "1 sip:127.0.0.1:5999\n2 sip:127.0.0.1:5998\n",
    )
    .expect("list");
    let reload = kamcmd(&dir, &["dispatcher.reload"]);
    assert!(reload.status.success(), "{}", text(&reload));
    let list = kamcmd(&dir, &["dispatcher.list"]);
    assert!(
        text(&list).contains("sip:127.0.0.1:5998"),
        "{}",
        text(&list)
    );

    let bad = kamcmd(&dir, &["no.such.command"]);
    assert!(
        text(&bad).to_lowercase().contains("not found"),
        "{}",
        text(&bad)
    );
    assert!(
        sip_answers(port),
        "SIP after the commands:\n{}",
        proxy.log_text()
    );
}

#[test]
fn kamctl_talks_over_the_jsonrpcs_fifo() {
    if !have("kamctl") {
        eprintln!("kamctl missing: skipped");
        return;
    }
    let dir = test_dir("kamctl");
    let port = free_port();
    let proxy = start(&dir, port);
    let kamctl = |args: &[&str]| {
        kamctl_command()
            .args(args)
            .env("RPCFIFOPATH", dir.join("rpc.fifo"))
            .output()
            .expect("kamctl runs")
    };
    let v = kamctl(&["rpc", "core.version"]);
    assert!(
        text(&v).contains("ferrosip"),
        "kamctl rpc core.version:\n{}\n{}",
        text(&v),
        proxy.log_text()
    );
    let u = kamctl(&["rpc", "core.uptime"]);
    assert!(text(&u).contains("uptime"), "{}", text(&u));
    let s = kamctl(&["rpc", "stats.get_statistics", "core:"]);
    assert!(text(&s).contains("core:rcv_requests"), "{}", text(&s));
}

/// Sends `bytes` on the ctl socket and reads until the server closes or answers one
/// JSON document.
fn raw(dir: &Path, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(dir.join("ctl")).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if serde_like_complete(&out) {
            break;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `b` holds a whole JSON object (braces balanced outside strings).
fn serde_like_complete(b: &[u8]) -> bool {
    let (mut depth, mut in_str, mut esc, mut seen) = (0i32, false, false, false);
    for &c in b {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' => {
                depth += 1;
                seen = true
            }
            b'}' => depth -= 1,
            _ => {}
        }
    }
    seen && depth == 0
}

#[test]
fn ferrosip_ctl_and_bad_json_rpc_while_sip_goes_on() {
    let dir = test_dir("json");
    let port = free_port();
    let proxy = start(&dir, port);

    let v = ferrosip_ctl(&dir, &["core.version"]);
    assert!(
        v.status.success() && text(&v).contains("ferrosip"),
        "{}",
        text(&v)
    );
    let s = ferrosip_ctl(&dir, &["--json", "stats", "core"]);
    assert!(text(&s).contains("core:rcv_requests"), "{}", text(&s));
    let methods = ferrosip_ctl(&dir, &["system.listMethods"]);
    for m in ["dispatcher.reload", "ul.dump", "core.reload", "cfg.seti"] {
        assert!(
            text(&methods).contains(m),
            "{m} listed:\n{}",
            text(&methods)
        );
    }

    // The log level at run time: debug lines appear once it is raised.
    let set = ferrosip_ctl(&dir, &["log-level", "debug"]);
    assert!(set.status.success(), "{}", text(&set));
    let get = ferrosip_ctl(&dir, &["cfg.get", "core", "debug"]);
    assert_eq!(text(&get).trim(), "3");
    assert!(sip_answers(port));
    proxy.wait_log("DEBUG", 1);
    let bad_var = ferrosip_ctl(&dir, &["cfg.seti", "core", "nosuch", "1"]);
    assert!(!bad_var.status.success());

    let unknown = ferrosip_ctl(&dir, &["nope.nothing"]);
    assert!(
        !unknown.status.success() && text(&unknown).contains("-32601"),
        "{}",
        text(&unknown)
    );

    let parse = raw(&dir, b"{\"jsonrpc\": \"2.0\", \"method\": ");
    // Half a request: the server waits for the rest, then gives up at the read timeout.
    assert!(parse.is_empty(), "{parse}");
    let parse = raw(&dir, b"{\"jsonrpc\": 2.0 \"method\": \"x\"}");
    assert!(parse.contains("-32700"), "{parse}");
    let params = raw(
        &dir,
        br#"{"jsonrpc":"2.0","method":"core.uptime","params":{"a":1},"id":1}"#,
    );
    assert!(params.contains("-32602"), "{params}");
    let wrong = raw(
        &dir,
        br#"{"jsonrpc":"2.0","method":"dispatcher.set_state","params":["zz"],"id":2}"#,
    );
    assert!(wrong.contains("\"error\""), "{wrong}");
    let mut huge = br#"{"jsonrpc":"2.0","method":"core.uptime","params":[""#.to_vec();
    huge.extend_from_slice(&vec![b'x'; 200_000]);
    let huge = raw(&dir, &huge);
    assert!(huge.contains("-32600"), "{huge}");

    let me = dir.join("client.sock");
    let c = UnixDatagram::bind(&me).expect("bind");
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = vec![0u8; 65536];
    c.send_to(b"{{{", dir.join("rpc.sock")).expect("send");
    let n = c.recv(&mut buf).expect("answer");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("-32700"));
    c.send_to(
        br#"{"jsonrpc":"2.0","method":"core.uptime","id":5}"#,
        dir.join("rpc.sock"),
    )
    .expect("send");
    let n = c.recv(&mut buf).expect("answer");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("uptime"));

    assert!(
        sip_answers(port),
        "SIP after bad input:\n{}",
        proxy.log_text()
    );
    let log = proxy.stop();
    assert!(!dir.join("ctl").exists(), "socket removed at stop");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn reload_through_ferrosip_ctl_under_load_fails_no_call() {
    if !have_sipp() {
        eprintln!("sipp missing: skipped");
        return;
    }
    let dir = test_dir("reload");
    let (port, uas_port) = (free_port(), free_port());
    let cfg = format!(
        r#"#!KAMAILIO
children=2
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "textops.so"
loadmodule "ctl.so"
modparam("ctl", "binrpc", "unix:{dir}/ctl")
request_route {{
    $du = "sip:127.0.0.1:{uas_port}";
    if (!t_relay()) {{
        sl_reply_error();
    }}
    exit;
}}
"#,
        dir = dir.display()
    );
    let cfg_path = dir.join("proxy.cfg");
    std::fs::write(&cfg_path, cfg).expect("cfg");
    let proxy = Launch::new(&cfg_path)
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .terminate_on_drop()
        .start();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _uas = Kill(
        Command::new("sipp")
            .args(["-sn", "uas", "-i", "127.0.0.1", "-p", &uas_port.to_string()])
            .args(["-nostdin"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("uas"),
    );
    std::thread::sleep(Duration::from_millis(300));
    let calls = 1500;
    let mut uac = Kill(
        Command::new("sipp")
            .args([
                "-sn",
                "uac",
                "-i",
                "127.0.0.1",
                "-p",
                &free_port().to_string(),
            ])
            .args([
                "-r",
                "150",
                "-m",
                &calls.to_string(),
                "-timeout",
                "60s",
                "-timeout_error",
            ])
            .args(["-nostdin", "-trace_stat", "-stf"])
            .arg(dir.join("uac_stats.csv"))
            .arg(format!("127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("uac"),
    );
    for n in 0..5 {
        std::thread::sleep(Duration::from_millis(1200));
        let r = ferrosip_ctl(&dir, &["reload"]);
        assert!(r.status.success(), "reload {n}: {}", text(&r));
        assert!(text(&r).contains("generation"), "{}", text(&r));
    }
    let status = uac.0.wait().expect("uac ends");
    let stats = std::fs::read_to_string(dir.join("uac_stats.csv")).unwrap_or_default();
    assert!(
        status.success(),
        "SIPp reported failed calls ({status}):\n{stats}\n{}",
        proxy.log_text()
    );
    assert_eq!(
        proxy.log_text().matches("script reloaded").count(),
        5,
        "{}",
        proxy.log_text()
    );
}

fn operations_page() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md"))
        .expect("docs/operations.md")
}

#[test]
fn the_operations_page_names_every_module_command() {
    let page = operations_page();
    let reg = catalog::registry();
    let missing: Vec<&str> = reg
        .rpcs()
        .map(|r| r.name)
        .filter(|n| !page.contains(&format!("`{n}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/operations.md does not name {missing:?}"
    );
}

/// One HTTP request on a new TCP connection; the whole answer (the server closes it).
fn http(port: u16, request: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn post(port: u16, url: &str, body: &str) -> String {
    http(
        port,
        &format!(
            "POST {url} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

#[test]
fn json_rpc_over_http_with_jsonrpc_dispatch_and_from_the_script_with_jsonrpc_exec() {
    let dir = test_dir("http");
    let port = free_port();
    // Kamailio's stock config serves JSON-RPC this way (WITH_JSONRPC): only HTTP among
    // jsonrpcs' transports, xhttp on the SIP TCP socket, /RPC to jsonrpc_dispatch().
    let cfg = format!(
        r#"#!KAMAILIO
children=2
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
tcp_accept_no_cl=yes
loadmodule "sl.so"
loadmodule "textops.so"
loadmodule "xlog.so"
loadmodule "xhttp.so"
loadmodule "jsonrpcs.so"
loadmodule "dispatcher.so"
modparam("jsonrpcs", "transport", 1)
modparam("jsonrpcs", "pretty_format", 0)
modparam("dispatcher", "list_file", "{dir}/dispatcher.list")
request_route {{
    if (is_method("OPTIONS")) {{
        if (jsonrpc_exec("{{\"jsonrpc\": \"2.0\", \"method\": \"dispatcher.list\", \"id\": " + $cs + "}}")) {{
            xlog("L_INFO", "exec: $jsonrpl(code) $jsonrpl(text) $jsonrpl(body)\n");
            sl_send_reply("200", "Ran $jsonrpl(code)");
            exit;
        }}
        xlog("L_INFO", "exec failed: $jsonrpl(code) $jsonrpl(text)\n");
        sl_send_reply("500", "Failed $jsonrpl(code)");
        exit;
    }}
    sl_send_reply("404", "Not Here");
}}
event_route[xhttp:request] {{
    if ($hu =~ "^/RPC") {{
        jsonrpc_dispatch();
        exit;
    }}
    xhttp_reply("404", "Not Found", "text/plain", "no\n");
}}
"#,
        dir = dir.display()
    );
    std::fs::write(dir.join("dispatcher.list"), "7 sip:127.0.0.1:5999\n").expect("list");
    std::fs::write(dir.join("proxy.cfg"), cfg).expect("cfg");
    let proxy = Launch::new(dir.join("proxy.cfg"))
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .terminate_on_drop()
        .start();

    let ok = post(
        port,
        "/RPC",
        r#"{"jsonrpc": "2.0", "method": "dispatcher.list", "id": 41}"#,
    );
    assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
    assert!(ok.contains("Content-Type: application/json\r\n"), "{ok}");
    let body = &ok[ok.find("\r\n\r\n").expect("head end") + 4..];
    let doc: serde_json::Value = serde_json::from_str(body).expect("JSON body");
    assert_eq!(doc["id"], 41, "{body}");
    assert!(
        body.contains("sip:127.0.0.1:5999") && body.contains("\"ID\":7"),
        "{body}"
    );

    let unknown = post(
        port,
        "/RPC",
        r#"{"jsonrpc": "2.0", "method": "no.such", "id": "x"}"#,
    );
    assert!(
        unknown.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
        "{unknown}"
    );
    assert!(unknown.contains("-32601"), "{unknown}");
    let bad = post(port, "/RPC", "{not json");
    assert!(bad.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{bad}");
    assert!(bad.contains("-32700"), "{bad}");
    let elsewhere = post(port, "/other", "{}");
    assert!(
        elsewhere.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{elsewhere}"
    );

    // jsonrpc_exec() from a SIP route, with an expression as its argument.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let local = sock.local_addr().expect("addr").port();
    let options = format!(
        "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-rpc\r\n\
         From: <sip:a@127.0.0.1>;tag=rpc\r\n\
         To: <sip:127.0.0.1:{port}>\r\n\
         Call-ID: rpc-exec\r\n\
         CSeq: 12 OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    sock.send_to(options.as_bytes(), ("127.0.0.1", port))
        .expect("send");
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).expect("reply");
    let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(reply.starts_with("SIP/2.0 200 Ran 200\r\n"), "{reply}");
    proxy.wait_log("exec: 200 OK {\"jsonrpc\":\"2.0\",\"result\":", 1);
    assert!(
        proxy.log_text().contains("\"id\":12}"),
        "{}",
        proxy.log_text()
    );
}
