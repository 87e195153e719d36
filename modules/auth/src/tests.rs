use super::*;
use crate::digest::{
    constant_time_eq, ha1, parse_credentials, response, Algorithm, CredentialsError,
    DigestAlgorithm, ResponseInput,
};
use crate::nonce::{NonceError, NonceFactory, NonceSettings, ReplayCheck};
use ferrosip_api::{NetInfo, Registry, RouteKind};
use ferrosip_script::{load_str, LoadOptions};
use ferrosip_tests::script::message_with;
use ferrosip_tests::{FakeServices, Script};

// ----- digest computations: the RFCs' own examples -----

#[test]
fn rfc2617_md5_example() {
    // RFC 2617 §3.5.
    let h1 = ha1(
        Algorithm::Md5,
        b"Mufasa",
        b"testrealm@host.com",
        b"Circle Of Life",
    );
    let input = ResponseInput {
        method: b"GET",
        uri: b"/dir/index.html",
        nonce: b"dcd98b7102dd2f0e8b11d0f600bfb0c093",
        qop: Some((b"auth", b"00000001", b"0a4f113b")),
        body: b"",
    };
    let alg = DigestAlgorithm::parse(b"MD5").unwrap();
    assert_eq!(
        response(alg, &h1, &input),
        "6629fae49393a05397450978507c4ef1"
    );
}

#[test]
fn rfc7616_sha256_and_md5_examples() {
    // RFC 7616 §3.9.1: the same request answered with SHA-256 and with MD5.
    let input = ResponseInput {
        method: b"GET",
        uri: b"/dir/index.html",
        nonce: b"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        qop: Some((
            b"auth",
            b"00000001",
            b"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        )),
        body: b"",
    };
    let sha = DigestAlgorithm::parse(b"sha-256").unwrap();
    let h1 = ha1(
        Algorithm::Sha256,
        b"Mufasa",
        b"http-auth@example.org",
        b"Circle of Life",
    );
    assert_eq!(
        response(sha, &h1, &input),
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
    let md5 = DigestAlgorithm::parse(b"MD5").unwrap();
    let h1 = ha1(
        Algorithm::Md5,
        b"Mufasa",
        b"http-auth@example.org",
        b"Circle of Life",
    );
    assert_eq!(
        response(md5, &h1, &input),
        "8ca523f5e9506fed4657c9700eebdbec"
    );
}

#[test]
fn algorithm_names_and_sess() {
    let a = DigestAlgorithm::parse(b"SHA-512-256-sess").unwrap();
    assert_eq!(a.hash, Algorithm::Sha512_256);
    assert!(a.session);
    assert!(DigestAlgorithm::parse(b"SHA-1").is_none());
    assert_eq!(Algorithm::parse(b"md5"), Some(Algorithm::Md5));
    assert_eq!(Algorithm::parse(b"MD5-sess"), None);
    assert_eq!(Algorithm::Sha512_256.hash_hex(&[b""]).len(), 64);
}

#[test]
fn constant_time_eq_compares_whole_strings() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
    assert!(constant_time_eq(b"", b""));
}

#[test]
fn credentials_parser() {
    let c = parse_credentials(
        b"Digest username=\"al\\\"ice\",realm=\"x.org\" ,\r\n nonce=\"n1\", uri=\"sip:x.org\",\
          response=\"ABCDEF\", algorithm=SHA-256, qop=auth, nc=0000000a, cnonce=\"c\", foo=bar",
    )
    .unwrap();
    assert_eq!(c.username, b"al\"ice");
    assert_eq!(c.realm, b"x.org");
    assert_eq!(c.algorithm.as_deref(), Some(&b"SHA-256"[..]));
    assert_eq!(c.nonce_count(), Some(10));
    assert!(c.validate().is_ok());
    let c = parse_credentials(b"Digest username=\"bob@example.com\"").unwrap();
    assert_eq!(c.user(), b"bob");
    assert_eq!(c.user_domain(), Some(&b"example.com"[..]));
    assert!(c.validate().is_err());
    assert_eq!(
        parse_credentials(b"Basic dXNlcjpwYXNz"),
        Err(CredentialsError::NotDigest)
    );
    assert!(parse_credentials(b"Digest username=\"open").is_err());
    assert!(parse_credentials(b"Digest username").is_err());
    // qop without nc/cnonce, bad nc, unknown qop or algorithm are refused.
    let base = "Digest username=a, realm=r, nonce=n, uri=u, response=x";
    for extra in [
        ", qop=auth",
        ", qop=auth, cnonce=c, nc=1",
        ", qop=conf, cnonce=c, nc=00000001",
        ", algorithm=SHA-1",
        ", userhash=true",
    ] {
        let c = parse_credentials(format!("{base}{extra}").as_bytes()).unwrap();
        assert!(c.validate().is_err(), "{extra} should be refused");
    }
}

// ----- nonces -----

fn factory(expire: u64, nc: usize, otn: usize) -> NonceFactory {
    NonceFactory::new(&NonceSettings {
        key: [7; 32],
        expire,
        max_drift: 3,
        nc_slots: nc,
        otn_slots: otn,
        pools: 1,
    })
}

#[test]
fn nonce_roundtrip_tamper_and_expiry() {
    let f = factory(30, 0, 0);
    let n = f.issue(1000, 0, b"");
    assert!(n.len() < 64, "{n}");
    assert!(f.verify(n.as_bytes(), 1000).is_ok());
    assert!(f.verify(n.as_bytes(), 1030).is_ok());
    assert_eq!(f.verify(n.as_bytes(), 1031), Err(NonceError::Stale));
    // Issued in the future beyond the allowed drift.
    assert_eq!(f.verify(n.as_bytes(), 996), Err(NonceError::Stale));
    assert!(f.verify(n.as_bytes(), 997).is_ok());
    // Any changed character breaks the signature.
    for i in 0..n.len() {
        let mut t = n.clone().into_bytes();
        t[i] = if t[i] == b'A' { b'B' } else { b'A' };
        assert_eq!(f.verify(&t, 1000), Err(NonceError::Invalid), "position {i}");
    }
    // Another secret, garbage, an empty nonce.
    let other = NonceFactory::new(&NonceSettings {
        key: [8; 32],
        expire: 30,
        max_drift: 3,
        nc_slots: 0,
        otn_slots: 0,
        pools: 1,
    });
    assert_eq!(other.verify(n.as_bytes(), 1000), Err(NonceError::Invalid));
    assert_eq!(f.verify(b"not base64 !", 1000), Err(NonceError::Invalid));
    assert_eq!(f.verify(b"", 1000), Err(NonceError::Invalid));
}

#[test]
fn nonce_message_checks() {
    let f = factory(30, 0, 0);
    let n = f.issue(1000, 3, b"call-1");
    assert!(f.verify_message_checks(n.as_bytes(), 3, b"call-1").is_ok());
    assert_eq!(
        f.verify_message_checks(n.as_bytes(), 3, b"call-2"),
        Err(NonceError::Stale)
    );
    assert_eq!(
        f.verify_message_checks(n.as_bytes(), 1, b"call-1"),
        Err(NonceError::Stale)
    );
    let plain = f.issue(1000, 0, b"");
    assert!(f.verify_message_checks(plain.as_bytes(), 0, b"x").is_ok());
}

#[test]
fn nonce_count_replay() {
    let f = factory(30, 16, 0);
    let n = f.issue(1000, 0, b"");
    let info = f.verify(n.as_bytes(), 1000).unwrap();
    let nc = |v| f.replay_check(&info, Some(v));
    assert_eq!(nc(1), ReplayCheck::NonceCount(1));
    assert!(f.check_replay(&info, nc(1), true).is_ok());
    assert_eq!(f.check_replay(&info, nc(1), true), Err(NonceError::Reused));
    // Checking without recording leaves the state as it was.
    assert!(f.check_replay(&info, nc(3), false).is_ok());
    assert!(f.check_replay(&info, nc(2), true).is_ok());
    assert_eq!(f.check_replay(&info, nc(2), true), Err(NonceError::Reused));
    assert_eq!(f.check_replay(&info, nc(256), true), Err(NonceError::Stale));
    // No nc in the credentials: nothing to track without one_time_nonce.
    assert_eq!(f.replay_check(&info, None), ReplayCheck::None);
    // After 16 newer nonces the slot belongs to another nonce: stale.
    for _ in 0..16 {
        f.issue(1000, 0, b"");
    }
    assert_eq!(f.check_replay(&info, nc(9), true), Err(NonceError::Stale));
}

#[test]
fn one_time_nonce_and_invalidate() {
    let f = factory(30, 8, 64);
    let n = f.issue(1000, 0, b"");
    let info = f.verify(n.as_bytes(), 1000).unwrap();
    // Credentials without nc fall back to the one-time check.
    let check = f.replay_check(&info, None);
    assert_eq!(check, ReplayCheck::OneTime);
    assert!(f.check_replay(&info, check, true).is_ok());
    assert_eq!(f.check_replay(&info, check, true), Err(NonceError::Reused));
    let n2 = f.issue(1000, 0, b"");
    let info2 = f.verify(n2.as_bytes(), 1000).unwrap();
    f.invalidate(&info2);
    assert_eq!(
        f.check_replay(&info2, ReplayCheck::NonceCount(1), true),
        Err(NonceError::Reused)
    );
    assert_eq!(
        f.check_replay(&info2, ReplayCheck::OneTime, true),
        Err(NonceError::Reused)
    );
}

// ----- the functions, through the script engine -----

/// The `i`th reply recorded by `rec`: its code and extra header lines.
fn reply_at(rec: &FakeServices, i: usize) -> (u16, String) {
    let r = &rec.replies()[i];
    (r.code, r.headers.clone())
}

const SECRET: &str = "unit-test-secret";

struct Setup {
    script: Script,
    handle: AuthHandle,
    reg: Registry,
}

impl Setup {
    fn var(&self, ctx: &MsgContext, name: &str) -> Value {
        ctx.vars.get(self.reg.intern_var(name)).clone()
    }
    fn rc(&self, ctx: &MsgContext) -> Option<i64> {
        self.var(ctx, "rc").as_int()
    }
}

fn load(params: &str, body: &str) -> Setup {
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    let auth = AuthModule::new();
    reg.register(&auth);
    let cfg = format!(
        "loadmodule \"auth.so\"\nmodparam(\"auth\", \"secret\", \"{SECRET}\")\n{params}\nrequest_route {{\n{body}\n}}\n"
    );
    Setup {
        script: Script::load(&reg, &cfg),
        handle: reg.api::<AuthHandle>().map(|h| (*h).clone()).unwrap(),
        reg,
    }
}

fn run(script: &Script, raw: &str, rec: &Arc<FakeServices>) -> MsgContext {
    let net = NetInfo {
        source: "192.0.2.7:5060".parse().unwrap(),
        ..NetInfo::default()
    };
    let mut ctx = message_with(raw, RouteKind::Request, net);
    ctx.services = Some(rec.clone());
    script.run(ctx).1
}

fn request(method: &str, auth: Option<&str>) -> String {
    let auth = auth.map_or(String::new(), |a| format!("{a}\n"));
    format!(
        "{method} sip:example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK1\n\
From: <sip:alice@example.com>;tag=f1\nTo: <sip:alice@example.com>\nCall-ID: c1@h\n\
CSeq: 1 {method}\n{auth}Content-Length: 0\n\n"
    )
}

/// The `(name, value)` of a challenge directive in a header line.
fn directive(line: &str, name: &str) -> Option<String> {
    let start = line.find(&format!("{name}="))? + name.len() + 1;
    let rest = &line[start..];
    Some(if let Some(q) = rest.strip_prefix('"') {
        q[..q.find('"')?].to_string()
    } else {
        rest.split([',', '\r']).next()?.trim().to_string()
    })
}

/// Credentials answering `nonce` the way a user agent does.
fn answer(
    header: &str,
    alg: &str,
    user: &str,
    password: &str,
    nonce: &str,
    method: &str,
    nc: u32,
) -> String {
    let digest_alg = DigestAlgorithm::parse(alg.as_bytes()).unwrap();
    let h1 = ha1(
        digest_alg.hash,
        user.as_bytes(),
        b"example.com",
        password.as_bytes(),
    );
    let nc_hex = format!("{nc:08x}");
    let input = ResponseInput {
        method: method.as_bytes(),
        uri: b"sip:example.com",
        nonce: nonce.as_bytes(),
        qop: Some((b"auth", nc_hex.as_bytes(), b"0a4f113b")),
        body: b"",
    };
    let resp = response(digest_alg, &h1, &input);
    format!(
        "{header}: Digest username=\"{user}\", realm=\"example.com\", nonce=\"{nonce}\", \
uri=\"sip:example.com\", response=\"{resp}\", algorithm={alg}, qop=auth, nc={nc_hex}, cnonce=\"0a4f113b\""
    )
}

const CHECK_ROUTE: &str = r#"
    if (!pv_www_authenticate("example.com", "secret123", "0")) {
        $var(rc) = $rc;
        www_challenge("example.com", "1");
        exit;
    }
    $var(rc) = 1;
    consume_credentials();
"#;

#[test]
fn challenge_then_authenticate_then_replay() {
    let t = load(
        "modparam(\"auth\", \"nonce_count\", 1)\nmodparam(\"auth\", \"algorithm\", \"SHA-256,MD5\")",
        CHECK_ROUTE,
    );
    let rec = Arc::new(FakeServices::new());
    run(&t.script, &request("REGISTER", None), &rec);
    let (code, headers) = reply_at(&rec, 0);
    assert_eq!(code, 401);
    let lines: Vec<&str> = headers.lines().collect();
    assert_eq!(lines.len(), 2, "{headers}");
    assert!(lines[0].starts_with("WWW-Authenticate: Digest realm=\"example.com\""));
    assert!(lines[0].ends_with("algorithm=SHA-256"), "{}", lines[0]);
    assert!(lines[1].ends_with("algorithm=MD5"), "{}", lines[1]);
    assert_eq!(directive(lines[0], "qop").as_deref(), Some("auth"));
    assert!(!headers.contains("stale"));
    let nonce = directive(lines[0], "nonce").unwrap();

    // The right password, SHA-256: authenticated, and the credentials are consumed.
    let creds = answer(
        "Authorization",
        "SHA-256",
        "alice",
        "secret123",
        &nonce,
        "REGISTER",
        1,
    );
    let ctx = run(&t.script, &request("REGISTER", Some(&creds)), &rec);
    assert_eq!(rec.replies().len(), 1, "no second challenge");
    assert!(!ctx
        .msg
        .to_bytes()
        .windows(14)
        .any(|w| w == b"Authorization:"));
    // nc 1 again: a replay (-6); nc 2: fine.
    let ctx = run(&t.script, &request("REGISTER", Some(&creds)), &rec);
    assert_eq!(t.rc(&ctx), Some(-6));
    let creds2 = answer(
        "Authorization",
        "SHA-256",
        "alice",
        "secret123",
        &nonce,
        "REGISTER",
        2,
    );
    run(&t.script, &request("REGISTER", Some(&creds2)), &rec);
    assert_eq!(rec.replies().len(), 2);

    // A wrong password: -2, counted for (user, source) and logged.
    let bad = answer(
        "Authorization",
        "MD5",
        "alice",
        "guess",
        &nonce,
        "REGISTER",
        3,
    );
    let ctx = run(&t.script, &request("REGISTER", Some(&bad)), &rec);
    assert_eq!(t.rc(&ctx), Some(-2));
    let engine = t.handle.get().unwrap();
    let source = "192.0.2.7".parse().unwrap();
    assert_eq!(engine.failures(b"alice", source), 1);
    // The wrong password used the nonce up: trying it again is a replay.
    let ctx = run(&t.script, &request("REGISTER", Some(&bad)), &rec);
    assert_eq!(t.rc(&ctx), Some(-6));
    // A second guess with a fresh nonce counts again.
    run(&t.script, &request("REGISTER", None), &rec);
    let fresh = directive(&rec.last_reply().headers, "nonce").unwrap();
    let bad = answer(
        "Authorization",
        "MD5",
        "alice",
        "guess2",
        &fresh,
        "REGISTER",
        1,
    );
    run(&t.script, &request("REGISTER", Some(&bad)), &rec);
    assert_eq!(engine.failures(b"alice", source), 2);
    // Credentials for another realm: -5.
    let other = creds.replace("realm=\"example.com\"", "realm=\"other.org\"");
    let ctx = run(&t.script, &request("REGISTER", Some(&other)), &rec);
    assert_eq!(t.rc(&ctx), Some(-5));
}

#[test]
fn stale_nonce_gets_a_stale_challenge() {
    let t = load("modparam(\"auth\", \"nonce_expire\", 30)", CHECK_ROUTE);
    let rec = Arc::new(FakeServices::new());
    // A nonce signed with the configured secret, issued an hour ago.
    let old = NonceFactory::new(&NonceSettings {
        key: Sha256::digest(SECRET.as_bytes()).into(),
        expire: 30,
        max_drift: 3,
        nc_slots: 0,
        otn_slots: 0,
        pools: 1,
    })
    .issue(ferrosip_api::Clock::system().unix_secs() - 3600, 0, b"");
    let creds = answer(
        "Authorization",
        "MD5",
        "alice",
        "secret123",
        &old,
        "REGISTER",
        1,
    );
    let ctx = run(&t.script, &request("REGISTER", Some(&creds)), &rec);
    assert_eq!(t.rc(&ctx), Some(-4));
    let (code, headers) = reply_at(&rec, 0);
    assert_eq!(code, 401);
    assert!(headers.contains(", stale=true"), "{headers}");
    // A forged nonce is invalid (-1), not stale.
    let forged = creds.replace(&old[..6], "AAAAAA");
    let ctx = run(&t.script, &request("REGISTER", Some(&forged)), &rec);
    assert_eq!(t.rc(&ctx), Some(-1));
    assert!(!rec.replies()[1].headers.contains("stale"));
}

#[test]
fn proxy_check_identity_and_cancel() {
    let route = r#"
    if (!pv_auth_check("", "$avp(pw)", "0", "1")) {
        $var(rc) = $rc;
        auth_challenge("", "0");
        exit;
    }
    $var(rc) = 1;
"#;
    let t = load("", &format!("$avp(pw) = \"pw1\";\n{route}"));
    let rec = Arc::new(FakeServices::new());
    run(&t.script, &request("INVITE", None), &rec);
    let (code, headers) = reply_at(&rec, 0);
    assert_eq!(code, 407);
    assert!(headers.starts_with("Proxy-Authenticate: Digest realm=\"example.com\""));
    assert!(
        !headers.contains("qop"),
        "flags 0 and no qop parameter: {headers}"
    );
    let nonce = directive(&headers, "nonce").unwrap();
    let alice = answer(
        "Proxy-Authorization",
        "MD5",
        "alice",
        "pw1",
        &nonce,
        "INVITE",
        1,
    );
    let ctx = run(&t.script, &request("INVITE", Some(&alice)), &rec);
    assert_eq!(t.rc(&ctx), Some(1));
    // Bob's valid credentials on a request From alice: user mismatch.
    let bob = answer(
        "Proxy-Authorization",
        "MD5",
        "bob",
        "pw1",
        &nonce,
        "INVITE",
        2,
    );
    let ctx = run(&t.script, &request("INVITE", Some(&bob)), &rec);
    assert_eq!(t.rc(&ctx), Some(-8));
    // CANCEL is never challenged.
    let ctx = run(&t.script, &request("CANCEL", None), &rec);
    assert_eq!(t.rc(&ctx), Some(1));
    // No credentials at all: -5.
    let ctx = run(&t.script, &request("MESSAGE", None), &rec);
    assert_eq!(t.rc(&ctx), Some(-5));
}

#[test]
fn message_checks_and_pv_challenge_attr() {
    let t = load(
        "modparam(\"auth\", \"auth_checks_register\", 2)",
        r#"
    if (!pv_www_authenticate("example.com", "secret123", "4")) {
        $var(rc) = $rc;
        $var(ch) = $avp(digest_challenge);
        exit;
    }
    $var(rc) = 1;
"#,
    );
    let rec = Arc::new(FakeServices::new());
    let ctx = run(&t.script, &request("REGISTER", None), &rec);
    assert_eq!(t.rc(&ctx), Some(-5));
    let ch = t.var(&ctx, "ch").to_bytes().unwrap();
    let ch = String::from_utf8_lossy(&ch).into_owned();
    assert!(
        ch.starts_with("WWW-Authenticate: Digest realm=\"example.com\""),
        "{ch}"
    );
    assert!(ch.contains("qop=\"auth\""));
    assert!(rec.replies().is_empty(), "pv functions do not reply");
    let nonce = directive(&ch, "nonce").unwrap();
    let creds = answer(
        "Authorization",
        "MD5",
        "alice",
        "secret123",
        &nonce,
        "REGISTER",
        1,
    );
    let ctx = run(&t.script, &request("REGISTER", Some(&creds)), &rec);
    assert_eq!(t.rc(&ctx), Some(1));
    // Same credentials with another Call-ID (checked by auth_checks_register=2): stale.
    let other_call = request("REGISTER", Some(&creds)).replace("c1@h", "c2@h");
    let ctx = run(&t.script, &other_call, &rec);
    assert_eq!(t.rc(&ctx), Some(-4));
}

#[test]
fn has_credentials_and_algorithm_choice() {
    let t = load(
        "",
        r#"
    if (has_credentials("example.com")) { $var(rc) = 1; } else { $var(rc) = -1; }
    auth_algorithm("SHA-512-256");
    proxy_challenge("example.com", "3");
"#,
    );
    let rec = Arc::new(FakeServices::new());
    let creds = "Proxy-Authorization: Digest username=\"a\", realm=\"example.com\", nonce=\"x\", uri=\"sip:example.com\", response=\"0\"";
    let ctx = run(&t.script, &request("OPTIONS", Some(creds)), &rec);
    assert_eq!(t.rc(&ctx), Some(1));
    let ctx = run(&t.script, &request("OPTIONS", None), &rec);
    assert_eq!(t.rc(&ctx), Some(-1));
    let (code, headers) = reply_at(&rec, 0);
    assert_eq!(code, 407);
    assert!(headers.contains("qop=\"auth,auth-int\""), "{headers}");
    assert!(
        headers.trim_end().ends_with("algorithm=SHA-512-256"),
        "{headers}"
    );
}

#[test]
fn bad_parameters_stop_the_load() {
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&AuthModule::new());
    for bad in [
        "modparam(\"auth\", \"algorithm\", \"SHA-1\")",
        "modparam(\"auth\", \"qop\", \"auth-conf\")",
        "modparam(\"auth\", \"auth_checks_register\", 99)",
        "modparam(\"auth\", \"nonce_expire\", -1)",
    ] {
        let cfg = format!("loadmodule \"auth.so\"\n{bad}\nrequest_route {{ exit; }}\n");
        let err = load_str("t.cfg", &cfg, &LoadOptions::default(), &reg)
            .err()
            .unwrap_or_else(|| panic!("{bad} should be refused"))
            .to_string();
        let param = bad.split('"').nth(3).unwrap();
        assert!(
            err.contains("module auth") && err.contains(param),
            "{bad}: {err}"
        );
    }
}
