//! Digest authentication (`auth` + `auth_db`) on the real binary: SIPp user agents with
//! `[authentication]` against subscribers in SQLite, MariaDB, PostgreSQL and db_text, and
//! a raw UDP client for what SIPp cannot do (replaying a request byte for byte, SHA-256).
//!
//! MariaDB (127.0.0.1:3306, root) and PostgreSQL (127.0.0.1:5432, postgres) run on the
//! machine; each test creates its own database (`ferrosip_t_<pid>_<n>`) and drops it.

use ferrosip_mod_auth::digest::{ha1, response, DigestAlgorithm, ResponseInput};
use ferrosip_tests::db::{Backend, TestDb};
use ferrosip_tests::{free_port, have_sipp, start_proxy};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(name)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "ferrosip-auth-{}-{name}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The subscribers of one test: alice (password "secret", stored in clear too) and bob,
/// in example.com. db_text files are written by hand as kamdbctl writes them, to show
/// that existing db_text setups load.
fn subscribers(backend: Backend, dir: &Path) -> TestDb {
    if backend == Backend::DbText {
        let db = TestDb::empty(backend, dir);
        write_db_text(Path::new(db.url.trim_start_matches("text://")));
        return db;
    }
    TestDb::with_users(
        backend,
        dir,
        "auth_db",
        &[
            ("alice@example.com", "secret"),
            ("bob@example.com", "bobpw"),
        ],
    )
}

/// Kamailio's db_text files for the subscriber table, written as kamdbctl would.
fn write_db_text(dir: &Path) {
    let mut rows = String::from(
        "id(int,auto) username(string) domain(string) password(string) ha1(string) ha1b(string)\n",
    );
    for (id, user, pw) in [(1, "alice", "secret"), (2, "bob", "bobpw")] {
        let alg = ferrosip_mod_auth::digest::Algorithm::Md5;
        let h1 = ha1(alg, user.as_bytes(), b"example.com", pw.as_bytes());
        let whole = format!("{user}@example.com");
        let h1b = ha1(alg, whole.as_bytes(), b"example.com", pw.as_bytes());
        rows.push_str(&format!("{id}:{user}:example.com:{pw}:{h1}:{h1b}\n"));
    }
    std::fs::write(dir.join("subscriber"), rows).expect("subscriber file");
    std::fs::write(
        dir.join("version"),
        "table_name(string) table_version(int)\nsubscriber:7\n",
    )
    .expect("version file");
}

/// The proxy's config: REGISTER authenticated by www_authorize (200 on success, 403 on a
/// wrong password or unknown user, a challenge otherwise), INVITE by proxy_authorize then
/// relayed to the UAS, as the rest of its dialog. REGISTER replies say which code the
/// check gave (X-Auth-Rc).
fn config(port: u16, url: &str, params: &str, uas: u16) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
children=2
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
loadmodule "sl.so"
loadmodule "tm.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
modparam("auth_db", "db_url", "{url}")
modparam("auth", "qop", "auth")
{params}

request_route {{
    if (is_method("ACK")) {{
        # ACK of a 407: absorbed by its transaction; ACK of a 200: to the UAS.
        if (t_check_trans()) {{
            exit;
        }}
        $du = "sip:127.0.0.1:{uas}";
        t_relay();
        exit;
    }}
    if (has_totag()) {{
        $du = "sip:127.0.0.1:{uas}";
        t_relay();
        exit;
    }}
    if (is_method("REGISTER")) {{
        if (!www_authorize("example.com", "subscriber")) {{
            $var(rc) = $rc;
            append_to_reply("X-Auth-Rc: $var(rc)\r\n");
            if ($var(rc) == -2 || $var(rc) == -3) {{
                sl_send_reply("403", "Forbidden");
                exit;
            }}
            www_challenge("example.com", "0");
            exit;
        }}
        consume_credentials();
        append_to_reply("X-Auth-Rc: 1\r\n");
        sl_send_reply("200", "OK");
        exit;
    }}
    if (is_method("INVITE")) {{
        t_newtran();
        if (!proxy_authorize("", "subscriber")) {{
            proxy_challenge("", "0");
            exit;
        }}
        consume_credentials();
        $du = "sip:127.0.0.1:{uas}";
        t_relay();
        exit;
    }}
    sl_send_reply("405", "Method Not Allowed");
}}
"#
    )
}

/// Runs a SIPp UAC scenario against the proxy; true when it completed.
fn sipp_uac(port: u16, file: &str, service: &str, user: &str, password: &str) -> bool {
    let local = free_port();
    let status = Command::new("sipp")
        .arg(format!("127.0.0.1:{port}"))
        .args(["-sf"])
        .arg(scenario(file))
        .args(["-s", service, "-au", user, "-ap", password])
        .args(["-i", "127.0.0.1", "-p", &local.to_string()])
        .args([
            "-m",
            "1",
            "-t",
            "u1",
            "-timeout",
            "30s",
            "-timeout_error",
            "-nostdin",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sipp runs");
    status.success()
}

fn register_flows(backend: Backend) {
    if !have_sipp() {
        return;
    }
    let dir = temp_dir(&format!("{backend:?}"));
    let db = subscribers(backend, &dir);
    let port = free_port();
    let _proxy = start_proxy(
        &format!("auth-register-{backend:?}-{port}"),
        &config(port, &db.url, "", 9),
        port,
    );
    assert!(
        sipp_uac(port, "auth/uac_register.xml", "alice", "alice", "secret"),
        "{backend:?}: REGISTER -> 401 -> REGISTER with credentials -> 200"
    );
    assert!(
        sipp_uac(
            port,
            "auth/uac_register_forbidden.xml",
            "alice",
            "alice",
            "wrong"
        ),
        "{backend:?}: a wrong password gets 403"
    );
    assert!(
        sipp_uac(
            port,
            "auth/uac_register_forbidden.xml",
            "mallory",
            "mallory",
            "x"
        ),
        "{backend:?}: an unknown user gets 403"
    );
}

#[test]
fn register_against_sqlite() {
    register_flows(Backend::Sqlite);
}

#[test]
fn register_against_mariadb() {
    register_flows(Backend::Mariadb);
}

#[test]
fn register_against_postgres() {
    register_flows(Backend::Postgres);
}

#[test]
fn register_against_db_text() {
    register_flows(Backend::DbText);
}

#[test]
fn expired_nonce_is_challenged_again_with_stale_true() {
    if !have_sipp() {
        return;
    }
    let dir = temp_dir("stale");
    let db = subscribers(Backend::Sqlite, &dir);
    let port = free_port();
    let params = "modparam(\"auth\", \"nonce_expire\", 2)";
    let _proxy = start_proxy(
        &format!("auth-stale-{port}"),
        &config(port, &db.url, params, 9),
        port,
    );
    assert!(sipp_uac(
        port,
        "auth/uac_register_stale.xml",
        "alice",
        "alice",
        "secret"
    ));
}

#[test]
fn invite_is_challenged_with_407_then_relayed() {
    if !have_sipp() {
        return;
    }
    let dir = temp_dir("invite");
    let db = subscribers(Backend::Sqlite, &dir);
    let port = free_port();
    let uas = free_port();
    let _proxy = start_proxy(
        &format!("auth-invite-{port}"),
        &config(port, &db.url, "", uas),
        port,
    );
    let mut callee = Command::new("sipp")
        .args(["-sf"])
        .arg(scenario("call_uas.xml"))
        .args(["-i", "127.0.0.1", "-p", &uas.to_string()])
        .args([
            "-m",
            "1",
            "-t",
            "u1",
            "-timeout",
            "30s",
            "-timeout_error",
            "-nostdin",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp uas");
    std::thread::sleep(Duration::from_millis(300));
    let caller_ok = sipp_uac(port, "auth/uac_invite.xml", "bob", "alice", "secret");
    let callee_ok = callee.wait().map(|s| s.success()).unwrap_or(false);
    assert!(caller_ok, "INVITE -> 407 -> INVITE with credentials -> 200");
    assert!(callee_ok, "the authenticated INVITE reached the UAS");
}

// ----- a raw UDP user agent -----

struct Ua {
    sock: UdpSocket,
    port: u16,
    cseq: u32,
}

/// A parsed reply: status code and its header lines.
struct Reply {
    code: u16,
    headers: Vec<String>,
}

impl Reply {
    fn header(&self, name: &str) -> Vec<&str> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.headers
            .iter()
            .filter(|h| h.to_ascii_lowercase().starts_with(&prefix))
            .map(|h| h[prefix.len()..].trim())
            .collect()
    }
}

fn directive(value: &str, name: &str) -> String {
    let start = value.find(&format!("{name}=")).expect(name) + name.len() + 1;
    let rest = &value[start..];
    match rest.strip_prefix('"') {
        Some(q) => q[..q.find('"').expect("closing quote")].to_string(),
        None => rest.split(',').next().unwrap_or("").trim().to_string(),
    }
}

impl Ua {
    fn new(port: u16) -> Ua {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        Ua {
            sock,
            port,
            cseq: 0,
        }
    }

    /// Sends a REGISTER for alice (with `auth` as an extra header line) and reads the reply.
    fn register(&mut self, auth: Option<&str>) -> Reply {
        self.cseq += 1;
        let local = self.sock.local_addr().expect("addr");
        let auth = auth.map_or(String::new(), |a| format!("{a}\r\n"));
        let msg = format!(
            "REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-raw{}\r\n\
Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=raw1\r\nTo: <sip:alice@example.com>\r\n\
Call-ID: raw-{}@test\r\nCSeq: {} REGISTER\r\nContact: <sip:alice@{local}>\r\n{auth}Content-Length: 0\r\n\r\n",
            self.cseq,
            self.port,
            self.cseq
        );
        self.sock
            .send_to(msg.as_bytes(), ("127.0.0.1", self.port))
            .expect("send");
        let mut buf = [0u8; 8192];
        let n = self.sock.recv(&mut buf).expect("a reply");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let mut lines = text.split("\r\n");
        let code = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .expect("status line");
        Reply {
            code,
            headers: lines
                .take_while(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }
}

/// Credentials answering `challenge` as a user agent computes them.
fn credentials(challenge: &str, user: &str, password: &str, nc: u32) -> String {
    let realm = directive(challenge, "realm");
    let nonce = directive(challenge, "nonce");
    let alg = directive(challenge, "algorithm");
    let a = DigestAlgorithm::parse(alg.as_bytes()).expect("known algorithm");
    let h1 = ha1(
        a.hash,
        user.as_bytes(),
        realm.as_bytes(),
        password.as_bytes(),
    );
    let nc = format!("{nc:08x}");
    let input = ResponseInput {
        method: b"REGISTER",
        uri: b"sip:example.com",
        nonce: nonce.as_bytes(),
        qop: Some((b"auth", nc.as_bytes(), b"c0ffee")),
        body: b"",
    };
    let resp = response(a, &h1, &input);
    format!(
        "Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", \
uri=\"sip:example.com\", response=\"{resp}\", algorithm={alg}, qop=auth, nc={nc}, cnonce=\"c0ffee\""
    )
}

#[test]
fn replayed_credentials_are_rejected_with_nonce_count() {
    let dir = temp_dir("replay");
    let db = subscribers(Backend::Sqlite, &dir);
    let port = free_port();
    let params = "modparam(\"auth\", \"nonce_count\", 1)";
    let _proxy = start_proxy(
        &format!("auth-replay-{port}"),
        &config(port, &db.url, params, 9),
        port,
    );
    let mut ua = Ua::new(port);
    let challenge = ua.register(None);
    assert_eq!(challenge.code, 401);
    let www = challenge.header("WWW-Authenticate")[0].to_string();
    let creds = credentials(&www, "alice", "secret", 1);
    let ok = ua.register(Some(&creds));
    assert_eq!(ok.code, 200);
    // The same credentials again (a new transaction: another branch and CSeq): replay.
    let replay = ua.register(Some(&creds));
    assert_eq!(replay.code, 401);
    assert_eq!(replay.header("X-Auth-Rc"), ["-6"]);
    // The next nc of the same nonce is fine.
    let next = ua.register(Some(&credentials(&www, "alice", "secret", 2)));
    assert_eq!(next.code, 200);
}

#[test]
fn sha256_and_md5_are_both_offered_and_both_work() {
    let dir = temp_dir("sha256");
    let db = subscribers(Backend::Sqlite, &dir);
    let port = free_port();
    let params = "modparam(\"auth\", \"algorithm\", \"SHA-256,MD5\")\n\
modparam(\"auth_db\", \"calculate_ha1\", 1)\nmodparam(\"auth_db\", \"password_column\", \"password\")";
    let _proxy = start_proxy(
        &format!("auth-sha256-{port}"),
        &config(port, &db.url, params, 9),
        port,
    );
    let mut ua = Ua::new(port);
    let challenge = ua.register(None);
    assert_eq!(challenge.code, 401);
    let offers = challenge.header("WWW-Authenticate");
    assert_eq!(offers.len(), 2, "one challenge per algorithm: {offers:?}");
    assert_eq!(directive(offers[0], "algorithm"), "SHA-256");
    assert_eq!(directive(offers[1], "algorithm"), "MD5");
    for offer in offers.iter().map(|s| s.to_string()).collect::<Vec<_>>() {
        let ok = ua.register(Some(&credentials(&offer, "alice", "secret", 1)));
        assert_eq!(ok.code, 200, "{offer}");
        let bad = ua.register(Some(&credentials(&offer, "alice", "nope", 2)));
        assert_eq!(bad.code, 403);
        assert_eq!(bad.header("X-Auth-Rc"), ["-2"]);
    }
    // A tampered nonce is not ours: -1, challenged again without stale.
    let forged = credentials(offers_first(&challenge).as_str(), "alice", "secret", 3).replacen(
        "nonce=\"",
        "nonce=\"x",
        1,
    );
    let again = ua.register(Some(&forged));
    assert_eq!(again.code, 401);
    assert_eq!(again.header("X-Auth-Rc"), ["-1"]);
    assert!(!again.header("WWW-Authenticate")[0].contains("stale"));
}

fn offers_first(r: &Reply) -> String {
    r.header("WWW-Authenticate")[0].to_string()
}
