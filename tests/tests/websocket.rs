//! SIP over WebSocket (issue 17 point 2) through the real binary, with a WebSocket client
//! crate (tungstenite) on a plain socket: the upgrade needs the `sip` subprotocol, each
//! frame is one SIP message answered in a frame, a frame over `tcp_max_msg_size` closes
//! the connection (status 1009) and the server goes on serving; `$proto`, `$ws_conid`,
//! `ws_close()` and the `ws.dump` / `ws.close` commands. The browser-library flow
//! (JsSIP registering over WS and WSS and calling a SIPp UAS) is `jssip_*` below.

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
/// (`npm ci`: the exact versions, nothing resolved anew).
fn js_client_dir() -> PathBuf {
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
fn registrar_config(dir: &Path, db_url: &str, ports: (u16, u16, u16)) -> String {
    let (udp, ws, wss) = ports;
    let d = dir.display();
    format!(
        r#"#!KAMAILIO
debug=2
children=2
tcp_connection_lifetime=3605
listen=udp:127.0.0.1:{udp}
listen=tcp:127.0.0.1:{udp}
listen=ws:127.0.0.1:{ws}
listen=wss:127.0.0.1:{wss}
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
"#
    )
}

#[test]
fn sipjs_registers_over_ws_and_wss_and_calls_a_sipp_uas() {
    if !ferrosip_tests::have_sipp() {
        return;
    }
    let js = js_client_dir();
    let dir = test_dir("sipjs");
    make_cert(&dir);
    let db = ferrosip_tests::db::TestDb::with_users(
        ferrosip_tests::db::Backend::Sqlite,
        &dir,
        "auth_db",
        &[("alice@example.com", "secret")],
    );
    let (udp, ws, wss, uas) = (free_port(), free_port(), free_port(), free_port());
    let _proxy = start(&dir, &registrar_config(&dir, &db.url, (udp, ws, wss)), udp);
    let uas_port = uas.to_string();
    // A UAS that keeps the Record-Route in its answers (SIPp's built-in one does not).
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/call_uas.xml");
    let scenario = scenario.to_string_lossy().into_owned();
    let sipp = ferrosip_tests::sipp::spawn_sipp(&[
        "-sf",
        &scenario,
        "-i",
        "127.0.0.1",
        "-p",
        &uas_port,
        "-m",
        "2",
        "-nostdin",
    ]);
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
        ferrosip_tests::sipp::wait_exit(sipp, Duration::from_secs(10)),
        Some(0),
        "the SIPp UAS did not complete its 2 calls"
    );
}
