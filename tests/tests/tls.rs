//! TLS (issue 17 point 1) through the real binary: certificates made by the `openssl` CLI
//! for each test, the TLS legs driven by a small rustls client or server written here
//! (Debian's SIPp has no TLS), the UDP legs by SIPp. Calls TLS→UDP and UDP→TLS through
//! the stateful proxy; a profile with `require_certificate` refuses a client without a
//! certificate; `tls.reload` gives new connections a new certificate while an open one
//! goes on; `openssl s_client -servername` gets the certificate of the profile for that
//! name; `tls_set_connect_server_id()` picks the client profile (and so the client
//! certificate) of the connection a relayed request opens.

use ferrosip_tests::{ferrosip_bin, free_port, have_sipp, header, log_tails, Launch, Proxy};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrosip-tls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`), and `<name>.pem` / `<name>.key` signed by it for each `(name,
/// subject, subjectAltName)`. P-256 keys: fast to make.
fn make_certs(dir: &Path, certs: &[(&str, &str, &str)]) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=Ferrosip Test CA",
    ]);
    openssl(dir, &ca);
    for (name, subject, san) in certs {
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        std::fs::write(
            dir.join(&ext),
            format!("basicConstraints=CA:FALSE\nsubjectAltName={san}\n"),
        )
        .expect("ext file");
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ],
        );
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    // ring, as the server uses (see crates/server/Cargo.toml).
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(dir: &Path) -> Arc<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca.pem")).expect("ca") {
        roots.add(c.expect("ca cert")).expect("add ca");
    }
    Arc::new(roots)
}

/// A TLS client trusting the test CA, with `client_cert` (`<name>` of [`make_certs`]) when
/// given.
fn client_config(dir: &Path, client_cert: Option<&str>) -> Arc<rustls::ClientConfig> {
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots(dir));
    let c = match client_cert {
        Some(name) => {
            let chain = CertificateDer::pem_file_iter(dir.join(format!("{name}.pem")))
                .expect("cert")
                .collect::<Result<Vec<_>, _>>()
                .expect("cert");
            let key = PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key"))).expect("key");
            b.with_client_auth_cert(chain, key).expect("client cert")
        }
        None => b.with_no_client_auth(),
    };
    Arc::new(c)
}

type TlsClient = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to the proxy at `port`, asking for `sni`, handshake done.
fn connect(
    dir: &Path,
    port: u16,
    sni: &str,
    client_cert: Option<&str>,
) -> std::io::Result<TlsClient> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    let name = ServerName::try_from(sni.to_string()).expect("server name");
    let conn = rustls::ClientConnection::new(client_config(dir, client_cert), name)
        .map_err(std::io::Error::other)?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// The CN of the certificate the server showed on `s`.
fn peer_cn(s: &TlsClient) -> String {
    cert_cn(&s.conn.peer_certificates().expect("server certificate")[0])
}

/// The subject CN of a certificate, as `openssl x509` reads it.
fn cert_cn(der: &CertificateDer<'_>) -> String {
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        base64(der.as_ref())
    );
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl x509");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(pem.as_bytes())
        .expect("write pem");
    let out = child.wait_with_output().expect("openssl x509");
    let subject = String::from_utf8_lossy(&out.stdout).into_owned();
    subject
        .split(',')
        .find_map(|p| p.trim().trim_start_matches("subject=").strip_prefix("CN="))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Reads one SIP message from a stream (framed by Content-Length); `None` at EOF or on
/// an error.
fn read_message(s: &mut impl Read, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = header(&head, "content-length")
                .or_else(|| header(&head, "l"))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let msg: Vec<u8> = buf.drain(..end + 4 + len).collect();
                return Some(String::from_utf8_lossy(&msg).into_owned());
            }
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn options(port: u16, tag: &str) -> String {
    format!(
        "OPTIONS sip:probe@127.0.0.1:{port};transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bK{tag};rport\r\n\
         From: <sip:a@example.com>;tag={tag}\r\nTo: <sip:probe@example.com>\r\n\
         Call-ID: {tag}@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// Sends OPTIONS on `s` and returns the reply's status line, `None` when the connection
/// gives none (closed by the server).
fn ask(s: &mut TlsClient, port: u16, tag: &str) -> Option<String> {
    s.write_all(options(port, tag).as_bytes()).ok()?;
    s.flush().ok()?;
    let mut buf = Vec::new();
    let reply = read_message(s, &mut buf)?;
    reply.lines().next().map(str::to_string)
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

/// Server profiles: the default one (`sip.example.com`), one chosen by SNI
/// (`other.example.com`), and one on a second socket that requires a client certificate.
fn profile_file(dir: &Path, strict_port: u16) -> String {
    let d = dir.display();
    format!(
        "# test profiles\n\
         [server:default]\n\
         method = TLSv1.2+\n\
         certificate = {d}/server.pem\n\
         private_key = {d}/server.key\n\
         \n\
         [server:any]\n\
         server_name = other.example.com\n\
         certificate = {d}/other.pem\n\
         private_key = {d}/other.key\n\
         \n\
         [server:127.0.0.1:{strict_port}]\n\
         verify_certificate = yes\n\
         require_certificate = yes\n\
         ca_list = {d}/ca.pem\n\
         \n\
         [client:default]\n\
         verify_certificate = yes\n\
         ca_list = {d}/ca.pem\n\
         server_name = uas.example.com\n"
    )
}

const STD_CERTS: &[(&str, &str, &str)] = &[
    (
        "server",
        "/O=Ferrosip/CN=sip.example.com",
        "DNS:sip.example.com,IP:127.0.0.1",
    ),
    ("other", "/CN=other.example.com", "DNS:other.example.com"),
    (
        "client",
        "/O=Phones/CN=alice.example.com",
        "DNS:alice.example.com",
    ),
    ("uas", "/CN=uas.example.com", "DNS:uas.example.com"),
    (
        "renewed",
        "/O=Ferrosip/CN=renewed.example.com",
        "DNS:sip.example.com,IP:127.0.0.1",
    ),
];

fn base_cfg(dir: &Path, port: u16, strict_port: u16, body: &str) -> String {
    std::fs::write(dir.join("tls.cfg"), profile_file(dir, strict_port)).expect("tls.cfg");
    let d = dir.display();
    format!(
        r#"#!KAMAILIO
debug=3
children=2
listen=udp:127.0.0.1:{port}
listen=tls:127.0.0.1:{port}
listen=tls:127.0.0.1:{strict_port}
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "xlog.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "tls.so"
loadmodule "ctl.so"
modparam("tls", "config", "{d}/tls.cfg")
modparam("ctl", "binrpc", "unix:{d}/ctl")
{body}
"#
    )
}

#[test]
fn sni_selects_the_profile_and_a_strict_profile_refuses_clients_without_certificates() {
    let dir = test_dir("profiles");
    make_certs(&dir, STD_CERTS);
    let (port, strict) = (free_port(), free_port());
    let cfg = base_cfg(
        &dir,
        port,
        strict,
        r#"request_route {
    if (is_peer_verified()) {
        sl_send_reply("200", "Verified $tls_peer_subject_cn");
    } else {
        sl_send_reply("200", "Unverified $pr $tls_version");
    }
}"#,
    );
    let proxy = start(&dir, &cfg, port);

    // The default profile, and SIP over it: $pr is tls, no client certificate.
    let mut s = connect(&dir, port, "sip.example.com", None).expect("TLS to the default profile");
    assert_eq!(peer_cn(&s), "sip.example.com");
    let status = ask(&mut s, port, "plain").expect("a reply");
    assert!(
        status.starts_with("SIP/2.0 200 Unverified tls TLSv1."),
        "{status}"
    );

    // SNI picks [server:any] server_name=other.example.com, as openssl s_client sees it.
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "other.example.com",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("CN=other.example.com") || text.contains("CN = other.example.com"),
        "{text}"
    );
    let s2 = connect(&dir, port, "other.example.com", None).expect("TLS by SNI");
    assert_eq!(peer_cn(&s2), "other.example.com");

    // The strict socket: without a client certificate the server ends the handshake (in
    // TLS 1.3 the client may finish first, so no SIP reply ever comes either way).
    let refused = connect(&dir, strict, "sip.example.com", None)
        .ok()
        .and_then(|mut s| ask(&mut s, strict, "nocert"));
    assert_eq!(refused, None, "a client without certificate got an answer");
    // With a certificate of the CA: verified, and the variables show it.
    let mut s3 = connect(&dir, strict, "sip.example.com", Some("client"))
        .expect("TLS with a client certificate");
    let status = ask(&mut s3, strict, "cert").expect("a reply");
    assert_eq!(status, "SIP/2.0 200 Verified alice.example.com");

    // tls.list shows the open connections with their profile.
    let list = ctl(&dir, &["tls.list"]);
    let list_text = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{list_text}");
    assert!(list_text.contains("server:127.0.0.1:"), "{list_text}");
    assert!(list_text.contains("alice.example.com"), "{list_text}");
    drop(proxy);
}

#[test]
fn reload_gives_new_connections_the_new_certificate_and_open_ones_go_on() {
    let dir = test_dir("reload");
    make_certs(&dir, STD_CERTS);
    let (port, strict) = (free_port(), free_port());
    let cfg = base_cfg(
        &dir,
        port,
        strict,
        r#"request_route { sl_send_reply("200", "OK"); }"#,
    );
    let proxy = start(&dir, &cfg, port);

    let mut before = connect(&dir, port, "sip.example.com", None).expect("TLS");
    assert_eq!(peer_cn(&before), "sip.example.com");
    assert_eq!(
        ask(&mut before, port, "r1").as_deref(),
        Some("SIP/2.0 200 OK")
    );

    // A broken certificate file: the reload fails, the old profiles stay.
    std::fs::write(dir.join("server.pem"), "not a certificate").expect("write");
    let failed = ctl(&dir, &["tls.reload"]);
    assert!(
        !failed.status.success(),
        "{}",
        String::from_utf8_lossy(&failed.stdout)
    );
    let still = connect(&dir, port, "sip.example.com", None).expect("TLS after a failed reload");
    assert_eq!(peer_cn(&still), "sip.example.com");

    std::fs::copy(dir.join("renewed.pem"), dir.join("server.pem")).expect("copy");
    std::fs::copy(dir.join("renewed.key"), dir.join("server.key")).expect("copy");
    let ok = ctl(&dir, &["tls.reload"]);
    assert!(
        ok.status.success(),
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );

    let after = connect(&dir, port, "sip.example.com", None).expect("TLS after the reload");
    assert_eq!(peer_cn(&after), "renewed.example.com");
    // The connection opened before the reload keeps its session and is still served.
    assert_eq!(
        ask(&mut before, port, "r2").as_deref(),
        Some("SIP/2.0 200 OK")
    );
    drop(proxy);
}

/// The stateful proxy's script for both call directions: TLS in → the SIPp UAS on UDP;
/// UDP in → the test's TLS UAS (`sips:`), Record-Route on both legs.
fn call_cfg(dir: &Path, port: u16, strict: u16, uas_udp: u16, uas_tls: u16) -> String {
    base_cfg(
        dir,
        port,
        strict,
        &format!(
            r#"request_route {{
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{
            t_check_trans();
            exit;
        }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("INVITE")) {{
        xlog("L_INFO", "CALL-IN pr=$pr version=$tls_version cipher=$tls_cipher_info sni=$tls_peer_server_name my=$tls_my_subject_cn\n");
    }}
    record_route();
    if ($pr == "tls") {{
        $du = "sip:127.0.0.1:{uas_udp}";
        t_relay();
        exit;
    }}
    $ru = "sips:uas@127.0.0.1:{uas_tls}";
    t_relay();
}}"#
        ),
    )
}

/// A UAS over TLS in a thread: accepts one connection, answers INVITE 200 (Contact on its
/// own TLS socket), takes the ACK, answers BYE 200; returns every request it received.
fn tls_uas(dir: &Path) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    let chain = CertificateDer::pem_file_iter(dir.join("uas.pem"))
        .expect("cert")
        .collect::<Result<Vec<_>, _>>()
        .expect("cert");
    let key = PrivateKeyDer::from_pem_file(dir.join("uas.key")).expect("key");
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("uas config"),
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let t = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().expect("accept");
        tcp.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let conn = rustls::ServerConnection::new(config).expect("conn");
        let mut s = rustls::StreamOwned::new(conn, tcp);
        let mut buf = Vec::new();
        let mut seen = Vec::new();
        while let Some(req) = read_message(&mut s, &mut buf) {
            seen.push(req.clone());
            let method = req.split(' ').next().unwrap_or_default().to_string();
            let reply = match method.as_str() {
                "INVITE" => Some(ferrosip_tests::uas_reply(
                    &req,
                    "200 OK",
                    Some(&format!("sips:uas@127.0.0.1:{port}")),
                )),
                "BYE" => Some(ferrosip_tests::uas_reply(&req, "200 OK", None)),
                _ => None,
            };
            if let Some(r) = reply {
                // Record-Route goes back in the 200 to the INVITE (RFC 3261 §12.1.1).
                let r = if method == "INVITE" {
                    let rr: String = req
                        .lines()
                        .filter(|l| l.starts_with("Record-Route:"))
                        .map(|l| format!("{l}\r\n"))
                        .collect();
                    r.replacen("Content-Length:", &format!("{rr}Content-Length:"), 1)
                } else {
                    r
                };
                if s.write_all(r.as_bytes()).is_err() {
                    break;
                }
            }
            if method == "BYE" {
                break;
            }
        }
        seen
    });
    (port, t)
}

#[test]
fn calls_tls_to_udp_and_udp_to_tls_through_the_stateful_proxy() {
    if !have_sipp() {
        return;
    }
    let dir = test_dir("calls");
    make_certs(&dir, STD_CERTS);
    let (port, strict, uas_udp) = (free_port(), free_port(), free_port());
    let (uas_tls, uas) = tls_uas(&dir);
    let proxy = start(&dir, &call_cfg(&dir, port, strict, uas_udp, uas_tls), port);

    // UDP → TLS: SIPp's UAC calls; the proxy opens TLS to the test's UAS (client profile:
    // verified against the CA, SNI uas.example.com) and the ACK and BYE reuse it.
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/call_uac.xml");
    let uac = Command::new("sipp")
        .args([&format!("127.0.0.1:{port}"), "-m", "1", "-i", "127.0.0.1"])
        .arg("-sf")
        .arg(&scenario)
        .args([
            "-p",
            &free_port().to_string(),
            "-nostdin",
            "-timeout",
            "20",
            "-timeout_error",
        ])
        .args([
            "-trace_err",
            "-error_file",
            &dir.join("uac-errors.log").display().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sipp uac");
    assert!(
        uac.success(),
        "UDP→TLS call failed:\n{}\n{}",
        log_tails(&dir),
        proxy.log_text()
    );
    let seen = uas.join().expect("uas thread");
    let methods: Vec<&str> = seen
        .iter()
        .map(|m| m.split(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(methods, ["INVITE", "ACK", "BYE"], "{seen:?}");
    let invite = &seen[0];
    assert!(invite.starts_with("INVITE sips:uas@127.0.0.1:"), "{invite}");
    let via = header(invite, "via").expect("via");
    assert!(via.starts_with("SIP/2.0/TLS 127.0.0.1:"), "{invite}");
    // The request changed transport: two Record-Routes (RFC 5658), the TLS-side one a sips
    // URI for the sips Request-URI (RFC 5630 §4.1.1), the UDP-side one plain.
    let rrs: Vec<&str> = invite
        .lines()
        .filter(|l| l.starts_with("Record-Route:"))
        .collect();
    assert_eq!(rrs.len(), 2, "{invite}");
    assert!(
        rrs[0].contains(&format!("127.0.0.1:{port}")) && rrs[0].contains("transport=tls"),
        "{invite}"
    );
    assert!(
        rrs[0].contains("<sips:") || rrs[0].contains("<sip:"),
        "{invite}"
    );

    // TLS → UDP: the test's TLS client calls a SIPp UAS on UDP.
    let uas_scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/call_uas.xml");
    let uas_child = Command::new("sipp")
        .arg("-sf")
        .arg(&uas_scenario)
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &uas_udp.to_string(),
            "-m",
            "1",
            "-nostdin",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp uas");
    std::thread::sleep(Duration::from_millis(300));
    let mut s = connect(&dir, port, "sip.example.com", Some("client")).expect("TLS to the proxy");
    let local = s.sock.local_addr().expect("local").port();
    let invite = format!(
        "INVITE sip:bob@127.0.0.1:{uas_udp} SIP/2.0\r\n\
         Via: SIP/2.0/TLS 127.0.0.1:{local};branch=z9hG4bKtlsinv;rport\r\n\
         From: <sip:alice@example.com>;tag=alice\r\nTo: <sip:bob@example.com>\r\n\
         Call-ID: tls-udp@test\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
         Contact: <sip:alice@127.0.0.1:{local};transport=tls>\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(invite.as_bytes()).expect("send INVITE");
    let mut buf = Vec::new();
    let ok = loop {
        let reply = read_message(&mut s, &mut buf).expect("a reply over TLS");
        if reply.starts_with("SIP/2.0 200") {
            break reply;
        }
        assert!(reply.starts_with("SIP/2.0 1"), "{reply}");
    };
    let to = header(&ok, "to").expect("to").to_string();
    let contact = header(&ok, "contact")
        .expect("contact")
        .trim_matches(|c| c == '<' || c == '>')
        .to_string();
    // The route set, as the caller uses it: the Record-Routes of the 200 in reverse
    // (RFC 3261 §12.1.2).
    let mut routes: Vec<String> = ok
        .lines()
        .filter_map(|l| l.strip_prefix("Record-Route:"))
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .collect();
    routes.reverse();
    assert_eq!(routes.len(), 2, "{ok}");
    assert!(
        routes[0].contains("transport=tls"),
        "the caller's side is TLS: {ok}"
    );
    assert!(
        !routes[1].contains("transport="),
        "the callee's side is UDP: {ok}"
    );
    let route = format!("Route: {}\r\n", routes.join(", "));
    for (method, cseq, branch) in [("ACK", 1, "z9hG4bKtlsack"), ("BYE", 2, "z9hG4bKtlsbye")] {
        let req = format!(
            "{method} {contact} SIP/2.0\r\n\
             Via: SIP/2.0/TLS 127.0.0.1:{local};branch={branch};rport\r\n\
             {route}From: <sip:alice@example.com>;tag=alice\r\nTo: {to}\r\n\
             Call-ID: tls-udp@test\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        );
        s.write_all(req.as_bytes()).expect("send");
    }
    let bye_ok = read_message(&mut s, &mut buf).expect("the BYE's reply");
    assert!(bye_ok.starts_with("SIP/2.0 200"), "{bye_ok}");
    assert_eq!(
        ferrosip_tests::wait_exit(uas_child, Duration::from_secs(10)),
        Some(0),
        "{}",
        proxy.log_text()
    );
    proxy.wait_log("CALL-IN pr=tls version=TLSv1.3 cipher=TLS13_", 1);
    let log = proxy.log_text();
    assert!(
        log.contains("sni=sip.example.com my=sip.example.com"),
        "{log}"
    );
    drop(proxy);
}

/// `examples/tls.cfg` with its profile file as shipped, certificates beside them under the
/// names the profile file gives (relative to the config's directory).
#[test]
fn the_shipped_example_serves_tls() {
    let dir = test_dir("example");
    make_certs(
        &dir,
        &[
            (
                "ferrosip",
                "/CN=sip.example.com",
                "DNS:sip.example.com,IP:127.0.0.1",
            ),
            ("client", "/CN=alice.example.com", "DNS:alice.example.com"),
        ],
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::copy(root.join("examples/tls.cfg"), dir.join("tls.cfg")).expect("copy example");
    std::fs::copy(
        root.join("examples/tls-profiles.cfg"),
        dir.join("tls-profiles.cfg"),
    )
    .expect("copy profiles");
    // UDP and TLS on the same port number: Launch waits for both to be taken.
    let tls = free_port();
    let proxy = Launch::new(dir.join("tls.cfg"))
        .define(format!("PROXY_PORT={tls}"))
        .define(format!("TLS_PORT={tls}"))
        .define(format!("CTL_SOCKET=\"unix:{}/ctl\"", dir.display()))
        .log(dir.join("proxy.log"))
        .listening_on(tls)
        .start();
    let mut s = connect(&dir, tls, "sip.example.com", Some("client")).expect("TLS to the example");
    assert_eq!(peer_cn(&s), "sip.example.com");
    let probe = format!(
        "OPTIONS sip:127.0.0.1:{tls};transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bKexample;rport\r\n\
         From: <sip:alice@example.com>;tag=ex\r\nTo: <sip:127.0.0.1>\r\n\
         Call-ID: example@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    s.write_all(probe.as_bytes()).expect("send");
    let mut buf = Vec::new();
    let reply = read_message(&mut s, &mut buf).expect("a reply");
    assert!(reply.starts_with("SIP/2.0 200 OK"), "{reply}");
    proxy.wait_log("probe over TLSv1.3 (TLS13_", 1);
    assert!(
        proxy
            .log_text()
            .contains("SNI sip.example.com, our certificate sip.example.com"),
        "{}",
        proxy.log_text()
    );
    drop(proxy);
}

/// A TLS server in a thread that asks for a client certificate (accepting none): accepts
/// one connection, reads one request; gives the client certificate's CN ("" for none)
/// and the request.
fn cert_seeing_uas(dir: &Path) -> (u16, std::thread::JoinHandle<(String, String)>) {
    let chain = CertificateDer::pem_file_iter(dir.join("uas.pem"))
        .expect("cert")
        .collect::<Result<Vec<_>, _>>()
        .expect("cert");
    let key = PrivateKeyDer::from_pem_file(dir.join("uas.key")).expect("key");
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(dir), provider())
            .allow_unauthenticated()
            .build()
            .expect("verifier");
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .expect("uas config"),
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let t = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().expect("accept");
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let conn = rustls::ServerConnection::new(config).expect("conn");
        let mut s = rustls::StreamOwned::new(conn, tcp);
        let mut buf = Vec::new();
        let request = read_message(&mut s, &mut buf).unwrap_or_default();
        let cn = s
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(cert_cn)
            .unwrap_or_default();
        (cn, request)
    });
    (port, t)
}

#[test]
fn tls_set_connect_server_id_picks_the_client_profile_of_the_next_connection() {
    let dir = test_dir("server-id");
    make_certs(&dir, STD_CERTS);
    let (port, strict) = (free_port(), free_port());
    let cfg = base_cfg(
        &dir,
        port,
        strict,
        r#"request_route {
    if ($hdr(X-Profile) == "phones") {
        tls_set_connect_server_id("phones");
    }
    $du = "sip:127.0.0.1:" + $hdr(X-Port) + ";transport=tls";
    t_relay();
}"#,
    );
    // A client profile reachable only by its server_id, with the client certificate
    // (CN alice.example.com); the default client profile has none.
    let d = dir.display();
    let mut profiles = std::fs::read_to_string(dir.join("tls.cfg")).expect("tls.cfg");
    profiles.push_str(&format!(
        "\n[client:any]\n\
         server_id = phones\n\
         server_name = uas.example.com\n\
         certificate = {d}/client.pem\n\
         private_key = {d}/client.key\n"
    ));
    std::fs::write(dir.join("tls.cfg"), profiles).expect("tls.cfg");
    let proxy = start(&dir, &cfg, port);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let local = udp.local_addr().expect("addr").port();
    let send = |uas: u16, profile: Option<&str>, tag: &str| {
        let extra = profile
            .map(|p| format!("X-Profile: {p}\r\n"))
            .unwrap_or_default();
        let msg = format!(
            "OPTIONS sip:uas@127.0.0.1:{uas} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{tag}\r\n\
             From: <sip:a@example.com>;tag={tag}\r\nTo: <sip:uas@example.com>\r\n\
             Call-ID: {tag}@test\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
             X-Port: {uas}\r\n{extra}Content-Length: 0\r\n\r\n"
        );
        udp.send_to(msg.as_bytes(), ("127.0.0.1", port))
            .expect("send");
    };

    let (chosen_port, chosen) = cert_seeing_uas(&dir);
    send(chosen_port, Some("phones"), "srvid1");
    let (cn, request) = chosen.join().expect("uas thread");
    assert!(
        request.starts_with("OPTIONS sip:uas@"),
        "{request}\n{}",
        proxy.log_text()
    );
    assert_eq!(cn, "alice.example.com", "the phones profile's certificate");

    // Without the function: the default client profile, no client certificate.
    let (plain_port, plain) = cert_seeing_uas(&dir);
    send(plain_port, None, "srvid2");
    let (cn, request) = plain.join().expect("uas thread");
    assert!(
        request.starts_with("OPTIONS sip:uas@"),
        "{request}\n{}",
        proxy.log_text()
    );
    assert_eq!(cn, "", "the default client profile sends no certificate");
    drop(proxy);
}
