//! The functions against a real SQLite subscriber table, run by the script engine on a
//! tokio runtime as the server runs them.

use super::*;
use ferrosip_api::{NetInfo, Registry, RouteKind};
use ferrosip_mod_auth::digest::{ha1, response, Algorithm, DigestAlgorithm, ResponseInput};
use ferrosip_mod_auth::AuthModule;
use ferrosip_script::{load_str, LoadOptions};
use ferrosip_tests::script::message_with;
use ferrosip_tests::Script;

struct Setup {
    script: Script,
    reg: Registry,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// A subscriber table with alice (ha1 and ha1b of "secret", SHA-256 HA1 in `ha1` for
    /// sha) and bob, and a config with `params` and `route`.
    fn new(params: &str, route: &str) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/auth.db", dir.path().display());
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let db = Db::connect(&url).await.expect("sqlite");
            ferrosip_db::schema::init(&db, Some(&["auth_db"]))
                .await
                .expect("schema");
            for (user, domain, password, alg) in [
                ("alice", "example.com", "secret", Algorithm::Md5),
                ("bob", "example.com", "bobpw", Algorithm::Md5),
                ("sha", "example.com", "shapw", Algorithm::Sha256),
            ] {
                let h1 = ha1(alg, user.as_bytes(), domain.as_bytes(), password.as_bytes());
                let whole = format!("{user}@{domain}");
                let h1b = ha1(
                    alg,
                    whole.as_bytes(),
                    domain.as_bytes(),
                    password.as_bytes(),
                );
                db.insert(
                    "subscriber",
                    &["username", "domain", "password", "ha1", "ha1b"],
                    &[
                        user.into(),
                        domain.into(),
                        password.into(),
                        h1.into(),
                        h1b.into(),
                    ],
                )
                .await
                .expect("insert");
            }
        });
        let mut reg = Registry::new();
        ferrosip_script::register_core(&mut reg);
        let auth = AuthModule::new();
        reg.register(&auth);
        reg.register(&AuthDbModule);
        let cfg = format!(
            "loadmodule \"auth.so\"\nloadmodule \"auth_db.so\"\n\
             modparam(\"auth_db\", \"db_url\", \"{url}\")\n{params}\n\
             request_route {{\n{route}\n}}\n"
        );
        let script = Script::load(&reg, &cfg);
        script.start(&rt);
        Setup {
            script,
            reg,
            rt,
            _dir: dir,
        }
    }

    fn run(&self, raw: &str) -> MsgContext {
        let net = NetInfo {
            source: "192.0.2.9:5060".parse().unwrap(),
            ..NetInfo::default()
        };
        let ctx = message_with(raw, RouteKind::Request, net);
        self.rt.block_on(self.script.run_async(ctx)).1
    }

    fn var(&self, ctx: &MsgContext, name: &str) -> Value {
        ctx.vars.get(self.reg.intern_var(name)).clone()
    }

    fn rc(&self, ctx: &MsgContext) -> Option<i64> {
        self.var(ctx, "rc").as_int()
    }
}

/// A request from alice with credentials for a nonce issued by the engine itself
/// (taken from a challenge built by auth_get_www_authenticate()).
fn request(method: &str, from_user: &str, auth: Option<String>) -> String {
    let auth = auth.map_or(String::new(), |a| format!("{a}\n"));
    format!(
        "{method} sip:example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\n\
From: <sip:{from_user}@example.com>;tag=f1\nTo: <sip:{from_user}@example.com>\n\
Call-ID: c1@h\nCSeq: 1 {method}\n{auth}Content-Length: 0\n\n"
    )
}

fn credentials(header: &str, user: &str, password: &str, nonce: &str, method: &str) -> String {
    credentials_alg(header, "MD5", user, password, nonce, method)
}

fn credentials_alg(
    header: &str,
    alg: &str,
    user: &str,
    password: &str,
    nonce: &str,
    method: &str,
) -> String {
    let a = DigestAlgorithm::parse(alg.as_bytes()).unwrap();
    let h1 = ha1(a.hash, user.as_bytes(), b"example.com", password.as_bytes());
    let input = ResponseInput {
        method: method.as_bytes(),
        uri: b"sip:example.com",
        nonce: nonce.as_bytes(),
        qop: Some((b"auth", b"00000001", b"abc")),
        body: b"",
    };
    let resp = response(a, &h1, &input);
    format!(
        "{header}: Digest username=\"{user}\", realm=\"example.com\", nonce=\"{nonce}\", \
uri=\"sip:example.com\", response=\"{resp}\", algorithm={alg}, qop=auth, nc=00000001, cnonce=\"abc\""
    )
}

const NONCE_ROUTE: &str = r#"
    if ($hdr(X-Nonce) == $null) {
        auth_get_www_authenticate("example.com", "4", "$var(ch)");
        exit;
    }
"#;

/// A fresh nonce from the engine of `s`.
fn nonce(s: &Setup) -> String {
    let ctx = s.run(&request("OPTIONS", "alice", None));
    let ch = s.var(&ctx, "ch").to_bytes().expect("challenge built");
    let ch = String::from_utf8_lossy(&ch).into_owned();
    let start = ch.find("nonce=\"").expect("nonce") + 7;
    ch[start..start + ch[start..].find('"').unwrap()].to_string()
}

fn with_marker(raw: String) -> String {
    raw.replace("Content-Length", "X-Nonce: 1\nContent-Length")
}

#[test]
fn www_authorize_against_sqlite() {
    let s = Setup::new(
        "modparam(\"auth_db\", \"use_domain\", 1)\nmodparam(\"auth_db\", \"load_credentials\", \"$avp(sid)=id;domain\")",
        &format!(
            "{NONCE_ROUTE}\nwww_authorize(\"example.com\", \"subscriber\"); $var(rc) = $rc;\n$var(sid) = $avp(sid);\n$var(dom) = $avp(domain);"
        ),
    );
    let n = nonce(&s);
    // Right password.
    let ok = credentials("Authorization", "alice", "secret", &n, "REGISTER");
    let ctx = s.run(&with_marker(request("REGISTER", "alice", Some(ok))));
    assert_eq!(s.rc(&ctx), Some(1));
    assert_eq!(s.var(&ctx, "sid").as_int(), Some(1));
    assert_eq!(
        s.var(&ctx, "dom").to_bytes().as_deref(),
        Some(&b"example.com"[..])
    );
    // Wrong password, unknown user, no credentials, invalid nonce.
    let n = nonce(&s);
    let bad = credentials("Authorization", "alice", "guess", &n, "REGISTER");
    let ctx = s.run(&with_marker(request("REGISTER", "alice", Some(bad))));
    assert_eq!(s.rc(&ctx), Some(-2));
    assert!(s.var(&ctx, "sid").is_null(), "no AVPs after a failure");
    let n = nonce(&s);
    let who = credentials("Authorization", "mallory", "x", &n, "REGISTER");
    let ctx = s.run(&with_marker(request("REGISTER", "mallory", Some(who))));
    assert_eq!(s.rc(&ctx), Some(-3));
    let ctx = s.run(&with_marker(request("REGISTER", "alice", None)));
    assert_eq!(s.rc(&ctx), Some(-5));
    let forged = credentials(
        "Authorization",
        "alice",
        "secret",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "REGISTER",
    );
    let ctx = s.run(&with_marker(request("REGISTER", "alice", Some(forged))));
    assert_eq!(s.rc(&ctx), Some(-1));
    // "user@domain" as user name: checked against ha1b.
    let n = nonce(&s);
    let at = credentials(
        "Authorization",
        "alice@example.com",
        "secret",
        &n,
        "REGISTER",
    );
    let ctx = s.run(&with_marker(request("REGISTER", "alice", Some(at))));
    assert_eq!(s.rc(&ctx), Some(1));
}

#[test]
fn auth_check_identity_and_calculated_sha256() {
    let s = Setup::new(
        "modparam(\"auth_db\", \"calculate_ha1\", 1)\nmodparam(\"auth_db\", \"password_column\", \"password\")",
        &format!("{NONCE_ROUTE}\nauth_check(\"\", \"subscriber\", \"1\"); $var(rc) = $rc;"),
    );
    let n = nonce(&s);
    let creds = credentials("Proxy-Authorization", "bob", "bobpw", &n, "INVITE");
    let ctx = s.run(&with_marker(request("INVITE", "bob", Some(creds.clone()))));
    assert_eq!(s.rc(&ctx), Some(1));
    // Bob's credentials on a request From alice.
    let n = nonce(&s);
    let creds = credentials("Proxy-Authorization", "bob", "bobpw", &n, "INVITE");
    let ctx = s.run(&with_marker(request("INVITE", "alice", Some(creds))));
    assert_eq!(s.rc(&ctx), Some(-8));
    // SHA-256 credentials; HA1 computed from the plain password.
    let n = nonce(&s);
    let creds = credentials_alg("Authorization", "SHA-256", "sha", "shapw", &n, "REGISTER");
    let ctx = s.run(&with_marker(request("REGISTER", "sha", Some(creds))));
    assert_eq!(s.rc(&ctx), Some(1));
    // ACK passes.
    let ctx = s.run(&with_marker(request("ACK", "alice", None)));
    assert_eq!(s.rc(&ctx), Some(1));
}

#[test]
fn is_subscriber_codes() {
    let s = Setup::new(
        "modparam(\"auth_db\", \"load_credentials\", \"password\")",
        r#"
    is_subscriber("$hdr(X-Uri)", "subscriber", "1"); $var(rc) = $rc;
    $var(pw) = $avp(password);
"#,
    );
    let raw = |uri: &str| {
        request("OPTIONS", "alice", None)
            .replace("Content-Length", &format!("X-Uri: {uri}\nContent-Length"))
    };
    let ctx = s.run(&raw("sip:bob@example.com"));
    assert_eq!(s.rc(&ctx), Some(1));
    assert_eq!(s.var(&ctx, "pw").to_bytes().as_deref(), Some(&b"bobpw"[..]));
    let ctx = s.run(&raw("sip:bob@other.org"));
    assert_eq!(s.rc(&ctx), Some(-2));
    let ctx = s.run(&raw("sip:nobody@example.com"));
    assert_eq!(s.rc(&ctx), Some(-2));
    let ctx = s.run(&raw("not a uri"));
    assert_eq!(s.rc(&ctx), Some(-1));
}

#[test]
fn load_errors() {
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    let auth = AuthModule::new();
    reg.register(&auth);
    reg.register(&AuthDbModule);
    let load = |cfg: &str| load_str("t.cfg", cfg, &LoadOptions::default(), &reg);
    // auth_db without auth.
    let e = load("loadmodule \"auth_db.so\"\nrequest_route { exit; }\n")
        .err()
        .expect("auth_db without auth is refused");
    let text = e.messages.join("\n");
    assert!(text.contains("auth.so"), "{text}");
    for bad in [
        "modparam(\"auth_db\", \"user_column\", \"user name\")",
        "modparam(\"auth_db\", \"load_credentials\", \"$var(x)=id\")",
    ] {
        let cfg = format!(
            "loadmodule \"auth.so\"\nloadmodule \"auth_db.so\"\n{bad}\nrequest_route {{ exit; }}\n"
        );
        let text = load(&cfg)
            .err()
            .unwrap_or_else(|| panic!("{bad} should be refused"))
            .messages
            .join("\n");
        let param = bad.split('"').nth(3).unwrap();
        assert!(
            text.contains("module auth_db") && text.contains(param),
            "{bad}: {text}"
        );
    }
}
