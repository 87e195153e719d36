//! SIP over WebSocket (issue 17 point 2) through the real binary, with a WebSocket client
//! crate (tungstenite) on a plain socket: the upgrade needs the `sip` subprotocol, each
//! frame is one SIP message answered in a frame, a frame over `tcp_max_msg_size` closes
//! the connection (status 1009) and the server goes on serving; `$proto`, `$ws_conid`,
//! `ws_close()` and the `ws.dump` / `ws.close` commands. The browser-library flow
//! (SIP.js registering over WS and WSS and calling a SIPp UAS) is `sipjs_*` below, once
//! on `listen=ws:`/`wss:` sockets and once with Kamailio's own WebSocket config (HTTP on
//! `tcp`/`tls` sockets, `event_route[xhttp:request]` and `ws_handle_handshake()`), whose
//! HTTP side `kamailio_style_*` tests with raw requests.

use ferrosip_tests::{ferrosip_bin, free_port, Launch, Proxy};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::{Message, WebSocket};

fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrosip-ws-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn start(dir: &Path, cfg: &str, port: u16) -> Proxy {
    let path = dir.join("proxy.cfg");
    std::fs::write(&path, cfg).expect("cfg");
    Launch::new(&path)
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .start()
}

fn ctl(dir: &Path, args: &[&str]) -> Output {
    let sock = format!("unix:{}/ctl", dir.display());
    Command::new(ferrosip_bin())
        .args(["ctl", "-s", &sock])
        .args(args)
        .output()
        .expect("ferrosip ctl runs")
}

type Ws = WebSocket<TcpStream>;

/// Opens a WebSocket to `port`, offering `protocol` when given: the socket, or the HTTP
/// status of the refusal.
fn open(port: u16, protocol: Option<&str>) -> Result<Ws, u16> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).expect("tcp connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut req = format!("ws://127.0.0.1:{port}/")
        .into_client_request()
        .expect("request");
    if let Some(p) = protocol {
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(p).expect("header"),
        );
    }
    match tungstenite::client(req, tcp) {
        Ok((ws, resp)) => {
            let answered = resp
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap_or_default().to_string());
            assert_eq!(
                answered.as_deref(),
                Some("sip"),
                "the answer names the subprotocol"
            );
            Ok(ws)
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            Err(resp.status().as_u16())
        }
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

/// An OPTIONS as a browser library sends it: a `.invalid` Via host, no Content-Length.
fn options(tag: &str) -> String {
    format!(
        "OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bK{tag}\r\n\
         From: <sip:alice@example.com>;tag={tag}\r\nTo: <sip:probe@example.com>\r\n\
         Call-ID: {tag}@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\r\n"
    )
}

/// The next SIP message on `ws` (skipping pings), or how the connection ended.
fn next_message(ws: &mut Ws) -> Result<String, String> {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => return Ok(t.to_string()),
            Ok(Message::Binary(b)) => return Ok(String::from_utf8_lossy(&b).into_owned()),
            Ok(Message::Close(f)) => {
                return Err(format!("closed: {:?}", f.map(|f| (f.code, f.reason))))
            }
            Ok(_) => continue,
            Err(e) => return Err(format!("error: {e}")),
        }
    }
}

fn ask(ws: &mut Ws, tag: &str) -> String {
    ws.send(Message::text(options(tag))).expect("send");
    let reply = next_message(ws).expect("a reply");
    reply.lines().next().unwrap_or_default().to_string()
}

fn config(dir: &Path, udp: u16, ws: u16) -> String {
    let d = dir.display();
    format!(
        r#"
debug=2
log_stderror=yes
listen=udp:127.0.0.1:{udp}
listen=tcp:127.0.0.1:{udp}
listen=ws:127.0.0.1:{ws}
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "websocket.so"
loadmodule "ctl.so"
modparam("ctl", "binrpc", "unix:{d}/ctl")
modparam("websocket", "keepalive_timeout", 1)
request_route {{
    if ($hdr(Subject) == "close me") {{
        ws_close(4000, "asked to");
        exit;
    }}
    sl_send_reply("200", "OK $proto $ws_conid");
}}
"#
    )
}

#[test]
fn a_ws_client_is_answered_and_refused_upgrades_do_not_stop_the_server() {
    let dir = test_dir("basic");
    let (udp, ws_port) = (free_port(), free_port());
    let _proxy = start(&dir, &config(&dir, udp, ws_port), udp);

    // No subprotocol, or another one: refused with 400, no WebSocket.
    assert_eq!(open(ws_port, None).err(), Some(400));
    assert_eq!(open(ws_port, Some("msrp")).err(), Some(400));

    // With `sip`: each frame is one message, answered in a frame over the same
    // connection, $proto and $ws_conid telling it.
    let mut ws = open(ws_port, Some("sip")).expect("upgrade with sip");
    let first = ask(&mut ws, "a1");
    assert!(first.starts_with("SIP/2.0 200 OK ws "), "{first}");
    let conid: u64 = first
        .rsplit(' ')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("a connection id");
    assert_eq!(
        ask(&mut ws, "a2"),
        first,
        "the same connection, the same id"
    );

    // The server pings an idle connection (keepalive_timeout 1 s): the client library
    // answers each with a pong, and the connection stays open.
    let mut pinged = false;
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    for _ in 0..12 {
        match ws.read() {
            Ok(Message::Ping(data)) => {
                assert_eq!(&data[..], b"Ferrosip");
                pinged = true;
                break;
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("connection lost while idle: {e}"),
        }
    }
    assert!(pinged, "no keep-alive ping within 3.6 s");
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    assert_eq!(ask(&mut ws, "a3"), first);

    // ws.dump lists it, with its id.
    let dump = ctl(&dir, &["ws.dump"]);
    let dump_text = String::from_utf8_lossy(&dump.stdout).into_owned();
    assert!(dump.status.success(), "{dump:?}");
    assert!(dump_text.contains(&conid.to_string()), "{dump_text}");

    // A frame over tcp_max_msg_size (65536 by default) closes the connection with 1009.
    let mut big = open(ws_port, Some("sip")).expect("upgrade");
    let huge = format!(
        "{}X-Pad: {}\r\n\r\n",
        options("b1").trim_end(),
        "x".repeat(70000)
    );
    big.send(Message::text(huge)).expect("send big");
    match next_message(&mut big) {
        Err(why) => assert!(
            why.contains("Size") || why.contains("1009") || why.contains("error"),
            "{why}"
        ),
        Ok(m) => panic!("an oversized frame was answered: {m}"),
    }

    // The first connection and new ones are still served.
    assert_eq!(ask(&mut ws, "a4"), first);
    let mut other = open(ws_port, Some("sip")).expect("upgrade after the refusals");
    let other_first = ask(&mut other, "c1");
    assert!(
        other_first.starts_with("SIP/2.0 200 OK ws "),
        "{other_first}"
    );
    assert_ne!(other_first, first, "another connection, another id");

    // ws_close() from the script: a close frame with the status and reason given.
    other
        .send(Message::text(options("c2").replace(
            "Max-Forwards: 70\r\n",
            "Max-Forwards: 70\r\nSubject: close me\r\n",
        )))
        .expect("send");
    let why = next_message(&mut other).expect_err("closed by ws_close");
    assert!(
        why.contains("4000") || why.contains("Library(4000)"),
        "{why}"
    );
    assert!(why.contains("asked to"), "{why}");

    // ws.close from the control interface.
    let closed = ctl(&dir, &["ws.close", &conid.to_string()]);
    assert!(closed.status.success(), "{closed:?}");
    let why = next_message(&mut ws).expect_err("closed by ws.close");
    assert!(why.contains("Normal"), "{why}");
    let again = ctl(&dir, &["ws.close", &conid.to_string()]);
    assert!(
        !again.status.success() || String::from_utf8_lossy(&again.stdout).contains("no connection")
    );
}

#[test]
fn ws_listeners_need_the_websocket_module() {
    let dir = test_dir("needs-module");
    let (udp, ws_port) = (free_port(), free_port());
    let cfg = format!(
        "listen=udp:127.0.0.1:{udp}\nlisten=ws:127.0.0.1:{ws_port}\nrequest_route {{ drop; }}\n"
    );
    let path = dir.join("proxy.cfg");
    std::fs::write(&path, cfg).expect("cfg");
    let out = Command::new(ferrosip_bin())
        .args(["run", "-E", "-f"])
        .arg(&path)
        .output()
        .expect("ferrosip runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("websocket.so"), "{err}");
}

/// `tests/js`, with its npm packages installed from the committed package-lock.json
/// (`npm ci`: the exact versions, nothing resolved anew). `npm ci` first removes
/// `node_modules`, so it must not run while another test's SIP.js client runs: once per
/// process here (the two SIP.js tests under `cargo test`), and .config/nextest.toml runs
/// the processes of this file one at a time.
fn js_client_dir() -> PathBuf {
    static INSTALLED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(npm_ci).clone()
}

fn npm_ci() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("js");
    let npm = Command::new("npm")
        .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("npm is needed for the SIP.js test (node 20 and npm from Debian or nodejs.org): {e}")
        });
    assert!(
        npm.status.success(),
        "npm ci in {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&npm.stderr)
    );
    dir
}

/// A self-signed certificate for 127.0.0.1 (`server.pem`, `server.key`), which the SIP.js
/// client trusts through NODE_EXTRA_CA_CERTS.
fn make_cert(dir: &Path) {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Kamailio-style registrar and proxy for WebSocket clients: REGISTER and INVITE with
/// digest authentication against auth_db (SQLite); a WebSocket client's binding keeps the
/// address it registered from (received_avp, what nathelper's fix_nated_register() does),
/// so that requests to it find its connection; calls are record-routed (double, WS and
/// UDP) and relayed; in-dialog requests follow the Route set.
fn registrar_config(dir: &Path, db_url: &str, ports: (u16, u16, u16), style: Style) -> String {
    let (udp, ws, wss) = ports;
    let d = dir.display();
    let (sockets, xhttp) = match style {
        Style::WsSockets => (
            format!("listen=ws:127.0.0.1:{ws}\nlisten=wss:127.0.0.1:{wss}"),
            String::new(),
        ),
        Style::Kamailio => (
            format!(
                "listen=tcp:127.0.0.1:{ws}\nlisten=tls:127.0.0.1:{wss}\ntcp_accept_no_cl=yes\n\
                 loadmodule \"kex.so\"\nloadmodule \"xhttp.so\""
            ),
            kamailio_xhttp_route(ws, wss),
        ),
    };
    format!(
        r#"#!KAMAILIO
debug=2
children=2
tcp_connection_lifetime=3605
listen=udp:127.0.0.1:{udp}
listen=tcp:127.0.0.1:{udp}
{sockets}
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
loadmodule "tls.so"
loadmodule "websocket.so"
modparam("tls", "certificate", "{d}/server.pem")
modparam("tls", "private_key", "{d}/server.key")
modparam("auth_db", "db_url", "{db_url}")
modparam("registrar", "received_avp", "$avp(RECEIVED)")
modparam("rr", "enable_double_rr", 1)
modparam("websocket", "keepalive_timeout", 30)

request_route {{
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            # The ACK of a challenge (stateless): nothing to relay.
            if (t_check_trans()) {{
                t_relay();
            }}
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (is_method("REGISTER")) {{
        if (!www_authorize("$fd", "subscriber")) {{
            www_challenge("$fd", "0");
            exit;
        }}
        consume_credentials();
        if ($proto == "ws" || $proto == "wss") {{
            $avp(RECEIVED) = "sip:" + $si + ":" + $sp + ";transport=" + $proto;
        }}
        if (!save("location")) {{
            sl_reply_error();
        }}
        exit;
    }}
    if (is_method("INVITE")) {{
        if (!proxy_authorize("$fd", "subscriber")) {{
            proxy_challenge("$fd", "0");
            exit;
        }}
        consume_credentials();
        xlog("L_INFO", "call from $fu over $proto connection $ws_conid\n");
        record_route();
        t_relay();
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}
{xhttp}
"#
    )
}

/// Where WebSocket clients connect: `listen=ws:`/`wss:` sockets, or Kamailio's way
/// (HTTP on `tcp`/`tls` sockets upgraded by `ws_handle_handshake()`).
#[derive(Clone, Copy)]
enum Style {
    WsSockets,
    Kamailio,
}

/// The `event_route[xhttp:request]` of Kamailio's WebSocket example configs (the
/// websocket module's documentation), for WS on `ws_port` and WSS on `wss_port`, and its
/// `event_route[websocket:closed]`.
fn kamailio_xhttp_route(ws_port: u16, wss_port: u16) -> String {
    format!(
        r#"
event_route[xhttp:request] {{
    set_reply_close();
    set_reply_no_connect();

    if ($Rp != {ws_port} && $Rp != {wss_port}) {{
        xlog("L_WARN", "HTTP request received on $Rp\n");
        xhttp_reply("403", "Forbidden", "", "");
        exit;
    }}

    xlog("L_DBG", "HTTP Request Received\n");

    if ($hu == "/health") {{
        xhttp_reply("200", "OK", "text/plain", "up $si\n");
        exit;
    }}

    if ($hdr(Upgrade) =~ "websocket"
            && $hdr(Connection) =~ "Upgrade"
            && $rm =~ "GET") {{

        # Validate Host: the client must use an address of ours.
        if ($hdr(Host) == $null || !is_myself("sip:" + $hdr(Host))) {{
            xlog("L_WARN", "Bad host $hdr(Host)\n");
            xhttp_reply("403", "Forbidden", "", "");
            exit;
        }}

        # ws_handle_handshake() exits (no further configuration file
        # processing of the request) when complete.
        if (ws_handle_handshake()) {{
            exit;
        }}
    }}

    xhttp_reply("404", "Not Found", "", "");
}}

event_route[websocket:closed] {{
    xlog("L_INFO", "WebSocket connection from $si:$sp has closed\n");
}}
"#
    )
}

#[test]
fn sipjs_registers_over_ws_and_wss_and_calls_a_sipp_uas() {
    sipjs_flow("sipjs", Style::WsSockets);
}

/// The same flow against Kamailio's WebSocket config: `listen=tcp:`/`tls:` sockets and
/// the xhttp event route upgrading the connections.
#[test]
fn sipjs_works_with_kamailios_xhttp_websocket_config() {
    sipjs_flow("sipjs-xhttp", Style::Kamailio);
}

fn sipjs_flow(name: &str, style: Style) {
    if !ferrosip_tests::have_sipp() {
        return;
    }
    let js = js_client_dir();
    let dir = test_dir(name);
    make_cert(&dir);
    let db = ferrosip_tests::db::TestDb::with_users(
        ferrosip_tests::db::Backend::Sqlite,
        &dir,
        "auth_db",
        &[("alice@example.com", "secret")],
    );
    let (udp, ws, wss, uas) = (free_port(), free_port(), free_port(), free_port());
    let _proxy = start(
        &dir,
        &registrar_config(&dir, &db.url, (udp, ws, wss), style),
        udp,
    );
    let uas_port = uas.to_string();
    // A UAS that keeps the Record-Route in its answers (SIPp's built-in one does not).
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/call_uas.xml");
    let scenario = scenario.to_string_lossy().into_owned();
    // Killed when dropped: a failing client must not leave the UAS running.
    let mut sipp = ferrosip_tests::sipp::Sipp(ferrosip_tests::sipp::spawn_sipp(&[
        "-sf",
        &scenario,
        "-i",
        "127.0.0.1",
        "-p",
        &uas_port,
        "-m",
        "2",
        "-nostdin",
    ]));
    let target = format!("sip:bob@127.0.0.1:{uas}");
    for url in [
        format!("ws://127.0.0.1:{ws}"),
        format!("wss://127.0.0.1:{wss}"),
    ] {
        let out = Command::new("node")
            .arg(js.join("client.mjs"))
            .args([&url, "alice", "secret", "example.com", &target])
            .env("NODE_EXTRA_CA_CERTS", dir.join("server.pem"))
            .output()
            .expect("node runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let log = std::fs::read_to_string(dir.join("proxy.log")).unwrap_or_default();
        assert!(
            out.status.success(),
            "SIP.js over {url}:\n{stdout}\n{}\nproxy log:\n{log}",
            String::from_utf8_lossy(&out.stderr)
        );
        for step in ["REGISTERED", "ESTABLISHED", "BYE 200", "UNREGISTERED"] {
            assert!(stdout.contains(step), "{url}: no {step}:\n{stdout}");
        }
    }
    let log = std::fs::read_to_string(dir.join("proxy.log")).unwrap_or_default();
    assert!(log.contains("over ws connection"), "{log}");
    assert!(log.contains("over wss connection"), "{log}");
    assert_eq!(
        sipp.wait(Duration::from_secs(10)),
        Some(0),
        "the SIPp UAS did not complete its 2 calls"
    );
}

/// Sends raw bytes on a new connection to `port` and reads until the server closes it.
fn http_exchange(port: u16, request: &str) -> String {
    use std::io::{Read, Write};
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).expect("tcp connect");
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    tcp.write_all(request.as_bytes()).expect("send");
    let mut out = Vec::new();
    let _ = tcp.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn kamailio_style_http_on_a_tcp_socket_is_answered_upgraded_or_refused() {
    let dir = test_dir("xhttp");
    let (udp, tcp) = (free_port(), free_port());
    let cfg = format!(
        r#"#!KAMAILIO
debug=3
log_stderror=yes
listen=udp:127.0.0.1:{udp}
listen=tcp:127.0.0.1:{udp}
listen=tcp:127.0.0.1:{tcp}
tcp_accept_no_cl=yes
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "kex.so"
loadmodule "xhttp.so"
loadmodule "websocket.so"
modparam("xhttp", "url_skip", "^/private")
request_route {{
    sl_send_reply("200", "OK $proto $ws_conid");
}}
{route}"#,
        route = kamailio_xhttp_route(tcp, tcp)
    );
    let proxy = start(&dir, &cfg, udp);

    // xhttp_reply() answers a plain GET, then the connection closes.
    let health = http_exchange(
        tcp,
        &format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{tcp}\r\n\r\n"),
    );
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    assert!(health.contains("Content-Type: text/plain\r\n"), "{health}");
    assert!(health.ends_with("\r\n\r\nup 127.0.0.1\n"), "{health}");
    // A request with a body (bounded by tcp_max_msg_size) reaches the route too.
    let posted = http_exchange(
        tcp,
        &format!("POST /other HTTP/1.1\r\nHost: 127.0.0.1:{tcp}\r\nContent-Length: 5\r\n\r\nhello"),
    );
    assert!(posted.starts_with("HTTP/1.1 404 Not Found\r\n"), "{posted}");
    // url_skip: not handed to the route at all.
    let skipped = http_exchange(
        tcp,
        &format!("GET /private/x HTTP/1.1\r\nHost: 127.0.0.1:{tcp}\r\n\r\n"),
    );
    assert!(
        skipped.starts_with("HTTP/1.1 404 Not Found\r\n"),
        "{skipped}"
    );
    // A body over tcp_max_msg_size is refused before it is read.
    let big = http_exchange(
        tcp,
        &format!("POST /rpc HTTP/1.1\r\nHost: 127.0.0.1:{tcp}\r\nContent-Length: 900000\r\n\r\n"),
    );
    assert!(big.starts_with("HTTP/1.1 413 "), "{big}");
    // The script refuses a foreign Host; ws_handle_handshake() an upgrade without the sip
    // subprotocol.
    let foreign = http_exchange(
        tcp,
        "GET / HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert!(
        foreign.starts_with("HTTP/1.1 403 Forbidden\r\n"),
        "{foreign}"
    );
    assert_eq!(open(tcp, None).err(), Some(400));
    assert_eq!(open(tcp, Some("msrp")).err(), Some(400));

    // SIP over the same socket is still SIP.
    let sip = http_exchange(
        tcp,
        "OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKtcp1\r\n\
         From: <sip:a@example.com>;tag=t1\r\nTo: <sip:probe@example.com>\r\nCall-ID: tcp1@test\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(sip.starts_with("SIP/2.0 200 OK tcp"), "{sip}");

    // The upgrade with `sip`: the connection carries SIP over WebSocket from then on.
    let mut ws = open(tcp, Some("sip")).expect("upgrade on the tcp socket");
    let first = ask(&mut ws, "x1");
    assert!(first.starts_with("SIP/2.0 200 OK ws "), "{first}");
    assert_eq!(ask(&mut ws, "x2"), first, "the same connection");
    let local = ws.get_ref().local_addr().expect("addr").port();
    ws.close(None).expect("close");
    let _ = next_message(&mut ws);
    drop(ws);
    proxy.wait_log(
        &format!("WebSocket connection from 127.0.0.1:{local} has closed"),
        1,
    );
}
