//! The flows of issue 21 that need `sqlops` and `uac`, through the running proxy with
//! SIPp peers:
//!
//! - E911: the caller's identity is validated against a table of registered numbers with
//!   `sql_query`: the P-Asserted-Identity number first, then P-Preferred-Identity, then
//!   the From user, then the source address (a second table maps addresses to numbers).
//!   A validated call reaches the PSAP (a SIPp UAS) with the number it was validated by;
//!   a caller nothing validates gets 403. On SQLite, MariaDB and PostgreSQL (a database
//!   of the test's own, dropped after).
//! - NOTIFY provisioning, as a containerized SBC does: each phone (a SIPp process of its
//!   own) registers, and the proxy sends it a NOTIFY (Event: check-sync) with
//!   `uac_req_send()`; each phone must receive it and answer 200, and the outcome runs
//!   `event_route[uac:reply]` with the status.

use ferrosip_db::Db;
use ferrosip_tests::db::{Backend, TestDb};
use ferrosip_tests::sipp::Sipp;
use ferrosip_tests::{free_port, have_sipp, log_tails, Launch, Proxy};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/scenarios/{name}"))
}

fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrosip-test-{}-uac-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

fn wait_bound(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while UdpSocket::bind(("127.0.0.1", port)).is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The registered numbers and the addresses allowed to call with none.
const TABLES: &[&str] = &[
    "CREATE TABLE e911_numbers (number VARCHAR(32) NOT NULL, subscriber VARCHAR(64))",
    "INSERT INTO e911_numbers (number, subscriber) VALUES ('+15551230001', 'alice')",
    "INSERT INTO e911_numbers (number, subscriber) VALUES ('+15551230002', 'bob')",
    "INSERT INTO e911_numbers (number, subscriber) VALUES ('+15551230003', 'carol')",
    "INSERT INTO e911_numbers (number, subscriber) VALUES ('+15551230004', 'lobby phone')",
    "CREATE TABLE e911_sources (ip VARCHAR(64) NOT NULL, number VARCHAR(32) NOT NULL)",
    "INSERT INTO e911_sources (ip, number) VALUES ('127.0.0.3', '+15551230004')",
];

struct E911Lab {
    dir: PathBuf,
    _db: TestDb,
    port: u16,
    _psap: Sipp,
    _proxy: Proxy,
    runs: u32,
}

impl E911Lab {
    fn new(name: &str, backend: Backend) -> E911Lab {
        let dir = test_dir(&format!("e911-{name}"));
        let db = TestDb::empty(backend, &dir);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let conn = Db::connect(&db.url).await.expect("db");
            for sql in TABLES {
                conn.raw_query(sql, 0)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
        });
        let psap_port = free_port();
        let psap = Sipp(
            Command::new("sipp")
                .arg("-sf")
                .arg(scenario("call_uas.xml"))
                .args(["-i", "127.0.0.1", "-p", &psap_port.to_string(), "-nostdin"])
                .args(["-trace_msg", "-message_file"])
                .arg(dir.join("psap-messages.log"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("sipp starts"),
        );
        wait_bound(psap_port);
        let port = free_port();
        let cfg = format!(
            r#"#!KAMAILIO
debug=2
children=2
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "textops.so"
loadmodule "sqlops.so"
modparam("sqlops", "sqlcon", "e911=>{url}")
request_route {{
    if (method == "ACK") {{
        if (uri != myself) {{
            forward();
        }}
        exit;
    }}
    if (method == "BYE") {{
        t_relay();
        exit;
    }}
    $var(num) = "";
    if (is_present_hf("P-Asserted-Identity")) {{
        $var(cand) = $(hdr(P-Asserted-Identity){{nameaddr.uri}}{{uri.user}});
        route(VALID);
        if ($var(num) != "") {{ $var(by) = "pai"; }}
    }}
    if ($var(num) == "" && is_present_hf("P-Preferred-Identity")) {{
        $var(cand) = $(hdr(P-Preferred-Identity){{nameaddr.uri}}{{uri.user}});
        route(VALID);
        if ($var(num) != "") {{ $var(by) = "ppi"; }}
    }}
    if ($var(num) == "") {{
        $var(cand) = $fU;
        route(VALID);
        if ($var(num) != "") {{ $var(by) = "from"; }}
    }}
    if ($var(num) == "") {{
        sql_query("e911", "select number from e911_sources where ip='$si'", "src");
        if ($rc == 1) {{
            $var(num) = $dbr(src=>[0,0]);
            $var(by) = "source";
        }}
        sql_result_free("src");
    }}
    if ($var(num) == "") {{
        sl_send_reply("403", "Caller Not Validated");
        exit;
    }}
    append_hf("X-E911-Caller: $var(num);by=$var(by)\r\n");
    $du = "sip:127.0.0.1:{psap}";
    t_relay();
}}

route[VALID] {{
    sql_query("e911", "select number, subscriber from e911_numbers where number='$var(cand)'", "r");
    if ($rc == 1 && $dbr(r=>rows) == 1) {{
        $var(num) = $dbr(r=>[0,0]);
    }}
    sql_result_free("r");
}}
"#,
            url = db.url,
            psap = psap_port,
        );
        let path = dir.join("proxy.cfg");
        std::fs::write(&path, cfg).expect("cfg");
        let proxy = Launch::new(&path)
            .log(dir.join("proxy.log"))
            .listening_on(port)
            .start();
        E911Lab {
            dir,
            _db: db,
            port,
            _psap: psap,
            _proxy: proxy,
            runs: 0,
        }
    }

    /// One call from `ip` with those identity header lines; SIPp must end as `scenario_name`
    /// expects (answered, or refused with 403).
    fn call(&mut self, scenario_name: &str, ip: &str, from: &str, pai: &str, ppi: &str) {
        self.runs += 1;
        let tag = format!("caller{}", self.runs);
        let mut sipp = Sipp(
            Command::new("sipp")
                .arg(format!("127.0.0.1:{}", self.port))
                .arg("-sf")
                .arg(scenario(&format!("e911/{scenario_name}")))
                .args(["-i", ip, "-key", "from_user", from, "-key", "pai", pai])
                .args(["-key", "ppi", ppi, "-m", "1", "-nostdin", "-timeout", "20s"])
                .args(["-trace_err", "-trace_msg", "-error_file"])
                .arg(self.dir.join(format!("{tag}-errors.log")))
                .arg("-message_file")
                .arg(self.dir.join(format!("{tag}-messages.log")))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("sipp starts"),
        );
        let code = sipp.wait(Duration::from_secs(25));
        assert_eq!(
            code,
            Some(0),
            "{scenario_name} from {ip}, From {from}, {pai}, {ppi}:\n{}",
            log_tails(&self.dir)
        );
    }

    fn psap_saw(&self, line: &str) -> bool {
        std::fs::read_to_string(self.dir.join("psap-messages.log"))
            .unwrap_or_default()
            .contains(line)
    }
}

fn pai(number: &str) -> String {
    format!("P-Asserted-Identity: <sip:{number}@example.test>")
}

fn ppi(number: &str) -> String {
    format!("P-Preferred-Identity: \"Caller\" <sip:{number}@example.test>")
}

fn e911_flow(backend: Backend, name: &str) {
    let mut lab = E911Lab::new(name, backend);
    // A registered PAI wins, whatever the other identities say.
    lab.call(
        "caller.xml",
        "127.0.0.1",
        "nobody",
        &pai("+15551230001"),
        &ppi("+15551230002"),
    );
    assert!(
        lab.psap_saw("X-E911-Caller: +15551230001;by=pai"),
        "{}",
        log_tails(&lab.dir)
    );
    // An unknown PAI falls back to PPI.
    lab.call(
        "caller.xml",
        "127.0.0.1",
        "nobody",
        &pai("+15559999999"),
        &ppi("+15551230002"),
    );
    assert!(
        lab.psap_saw("X-E911-Caller: +15551230002;by=ppi"),
        "{}",
        log_tails(&lab.dir)
    );
    // No PAI at all: PPI.
    lab.call(
        "caller.xml",
        "127.0.0.1",
        "nobody",
        "X-No-Pai: 1",
        &ppi("+15551230002"),
    );
    // Neither identity registered: the From user.
    lab.call(
        "caller.xml",
        "127.0.0.1",
        "+15551230003",
        &pai("+15559999999"),
        "X-No-Ppi: 1",
    );
    assert!(
        lab.psap_saw("X-E911-Caller: +15551230003;by=from"),
        "{}",
        log_tails(&lab.dir)
    );
    // Nothing in the message is registered, but the source address is.
    lab.call(
        "caller.xml",
        "127.0.0.3",
        "lobby",
        &pai("+15559999999"),
        &ppi("+15559999998"),
    );
    assert!(
        lab.psap_saw("X-E911-Caller: +15551230004;by=source"),
        "{}",
        log_tails(&lab.dir)
    );
    // Nothing validates: 403, and the PSAP never sees it.
    lab.call(
        "refused.xml",
        "127.0.0.1",
        "mallory",
        &pai("+15559999999"),
        &ppi("+15559999998"),
    );
    // A PAI trying to rewrite the query does not validate.
    lab.call(
        "refused.xml",
        "127.0.0.1",
        "mallory",
        &pai("x'or'1'='1"),
        "X-No-Ppi: 1",
    );
    assert!(!lab.psap_saw("mallory"), "{}", log_tails(&lab.dir));
}

#[test]
fn e911_identity_fallbacks_sqlite() {
    if !have_sipp() {
        return;
    }
    e911_flow(Backend::Sqlite, "sqlite");
}

#[test]
fn e911_identity_fallbacks_mariadb() {
    if !have_sipp() {
        return;
    }
    e911_flow(Backend::Mariadb, "mariadb");
}

#[test]
fn e911_identity_fallbacks_postgres() {
    if !have_sipp() {
        return;
    }
    e911_flow(Backend::Postgres, "postgres");
}

#[test]
fn notify_provisioning_to_each_registered_phone() {
    if !have_sipp() {
        return;
    }
    let dir = test_dir("notify");
    let port = free_port();
    let cfg = format!(
        r#"#!KAMAILIO
debug=2
children=2
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
loadmodule "sl.so"
loadmodule "textops.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "uac.so"
loadmodule "xlog.so"
request_route {{
    if (method == "REGISTER") {{
        if (!save("location")) {{
            sl_reply_error();
            exit;
        }}
        # Provision the phone that just registered (its address as the REGISTER came).
        $uac_req(all) = $null;
        $uac_req(method) = "NOTIFY";
        $uac_req(ruri) = "sip:" + $fU + "@" + $si + ":" + $sp;
        $uac_req(furi) = "sip:provisioning@example.test";
        $uac_req(turi) = $fu;
        $uac_req(callid) = $ci;
        $uac_req(hdrs) = "Event: check-sync\r\nSubscription-State: terminated;reason=noresource\r\n";
        $uac_req(evroute) = 1;
        $uac_req(evparam) = $fU;
        uac_req_send();
        exit;
    }}
    sl_send_reply("405", "Not Here");
}}

event_route[uac:reply] {{
    xlog("L_NOTICE", "provisioning NOTIFY to $uac_req(evparam) answered $uac_req(evcode) type $uac_req(evtype)\n");
}}
"#
    );
    let path = dir.join("proxy.cfg");
    std::fs::write(&path, cfg).expect("cfg");
    let proxy = Launch::new(&path)
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .start();
    let phones: Vec<(String, Sipp)> = (1..=3)
        .map(|i| {
            let user = format!("phone{i}");
            let child = Command::new("sipp")
                .arg(format!("127.0.0.1:{port}"))
                .arg("-sf")
                .arg(scenario("uac/phone_notify.xml"))
                .args(["-i", "127.0.0.1", "-p", &free_port().to_string()])
                .args(["-s", &user, "-m", "1", "-nostdin", "-timeout", "20s"])
                .args(["-trace_err", "-trace_msg", "-error_file"])
                .arg(dir.join(format!("{user}-errors.log")))
                .arg("-message_file")
                .arg(dir.join(format!("{user}-messages.log")))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("sipp starts");
            (user, Sipp(child))
        })
        .collect();
    for (user, mut phone) in phones {
        assert_eq!(
            phone.wait(Duration::from_secs(25)),
            Some(0),
            "{user} did not get its NOTIFY:\n{}",
            log_tails(&dir)
        );
        let trace =
            std::fs::read_to_string(dir.join(format!("{user}-messages.log"))).unwrap_or_default();
        assert!(
            trace.contains("NOTIFY sip:")
                && trace.contains("From: <sip:provisioning@example.test>"),
            "{trace}"
        );
    }
    for i in 1..=3 {
        proxy.wait_log(
            &format!("provisioning NOTIFY to phone{i} answered 200 type 1"),
            1,
        );
    }
}

/// `uac_replace_from` towards a callee and `uac_auth` towards a carrier that challenges,
/// through one proxy.
struct UacLab {
    dir: PathBuf,
    port: u16,
    _callee: Sipp,
    carrier: Sipp,
    _proxy: Proxy,
}

fn uas(dir: &Path, tag: &str, scenario_name: &str, port: u16, calls: u32) -> Sipp {
    let child = Command::new("sipp")
        .arg("-sf")
        .arg(scenario(scenario_name))
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin"])
        .args([
            "-m",
            &calls.to_string(),
            "-trace_err",
            "-trace_msg",
            "-error_file",
        ])
        .arg(dir.join(format!("{tag}-errors.log")))
        .arg("-message_file")
        .arg(dir.join(format!("{tag}-messages.log")))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp starts");
    wait_bound(port);
    Sipp(child)
}

impl UacLab {
    fn new() -> UacLab {
        let dir = test_dir("calls");
        let (callee_port, carrier_port, port) = (free_port(), free_port(), free_port());
        let callee = uas(&dir, "callee", "call_uas.xml", callee_port, 1);
        let carrier = uas(&dir, "carrier", "uac/uas_challenge.xml", carrier_port, 1);
        let cfg = format!(
            r#"#!KAMAILIO
debug=2
children=2
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "uac.so"
modparam("uac", "restore_mode", "auto")
modparam("uac", "credential", "alice:carrier.example:s3cret")
modparam("uac", "credential", "bob:other.example:nope")
request_route {{
    if (method == "ACK") {{
        if (uri != myself) {{
            forward();
        }}
        exit;
    }}
    if (method == "BYE") {{
        t_relay();
        exit;
    }}
    if ($rU == "anon") {{
        uac_replace_from("Anonymous", "sip:anonymous@anonymous.invalid");
        $du = "sip:127.0.0.1:{callee_port}";
    }} else {{
        $du = "sip:127.0.0.1:{carrier_port}";
        t_on_failure("AUTH");
    }}
    t_relay();
}}

failure_route[AUTH] {{
    if (t_check_status("401|407")) {{
        if (uac_auth()) {{
            t_relay();
            exit;
        }}
    }}
}}
"#
        );
        let path = dir.join("proxy.cfg");
        std::fs::write(&path, cfg).expect("cfg");
        let proxy = Launch::new(&path)
            .log(dir.join("proxy.log"))
            .listening_on(port)
            .start();
        UacLab {
            dir,
            port,
            _callee: callee,
            carrier,
            _proxy: proxy,
        }
    }

    fn call(&self, tag: &str, service: &str) {
        let mut sipp = Sipp(
            Command::new("sipp")
                .arg(format!("127.0.0.1:{}", self.port))
                .arg("-sf")
                .arg(scenario("uac/caller.xml"))
                .args([
                    "-i",
                    "127.0.0.1",
                    "-s",
                    service,
                    "-key",
                    "from_user",
                    "caller",
                ])
                .args(["-m", "1", "-nostdin", "-timeout", "20s"])
                .args(["-trace_err", "-trace_msg", "-error_file"])
                .arg(self.dir.join(format!("{tag}-errors.log")))
                .arg("-message_file")
                .arg(self.dir.join(format!("{tag}-messages.log")))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("sipp starts"),
        );
        assert_eq!(
            sipp.wait(Duration::from_secs(25)),
            Some(0),
            "call to {service}:\n{}",
            log_tails(&self.dir)
        );
    }

    fn trace(&self, tag: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{tag}-messages.log"))).unwrap_or_default()
    }
}

/// The value of `name="..."` (or `name=...`) in a Digest header line.
fn digest_param(line: &str, name: &str) -> String {
    let at = line
        .find(&format!("{name}="))
        .unwrap_or_else(|| panic!("no {name} in {line}"));
    let v = &line[at + name.len() + 1..];
    match v.strip_prefix('"') {
        Some(q) => q[..q.find('"').expect("closing quote")].to_string(),
        None => v[..v.find([',', '\r', '\n']).unwrap_or(v.len())]
            .trim()
            .to_string(),
    }
}

fn md5_hex(s: &str) -> String {
    use md5::{Digest, Md5};
    Md5::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn replace_from_restored_and_auth_answered_upstream() {
    if !have_sipp() {
        return;
    }
    let mut lab = UacLab::new();

    // uac_replace_from: the callee sees the new From, the caller's replies the original.
    lab.call("anon", "anon");
    let callee = lab.trace("callee");
    assert!(
        callee.contains("From: \"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=t"),
        "{callee}"
    );
    // The INVITE carries no trace of the original From (the ACK and BYE go from the
    // caller to the callee's Contact directly, with the caller's own From).
    let invite = callee
        .split("-----")
        .find(|m| m.contains("INVITE sip:anon@"))
        .unwrap_or_else(|| panic!("no INVITE:\n{callee}"));
    assert!(!invite.contains("sip:caller@example.test"), "{invite}");
    let caller = lab.trace("anon");
    let replies: Vec<&str> = caller
        .split("SIP/2.0 ")
        .filter(|m| m.starts_with("180") || m.starts_with("200"))
        .collect();
    assert!(!replies.is_empty(), "{caller}");
    for r in replies {
        assert!(r.contains("From: <sip:caller@example.test>;tag=t"), "{r}");
        assert!(!r.contains("anonymous.invalid"), "{r}");
    }

    // uac_auth: the carrier's 407 is answered with alice's credentials; the call completes.
    lab.call("auth", "carrier");
    assert_eq!(
        lab.carrier.wait(Duration::from_secs(10)),
        Some(0),
        "{}",
        log_tails(&lab.dir)
    );
    let carrier = lab.trace("carrier");
    let line = carrier
        .lines()
        .find(|l| l.starts_with("Proxy-Authorization:"))
        .unwrap_or_else(|| panic!("no credentials sent:\n{carrier}"));
    let (nonce, cnonce, uri, nc) = (
        digest_param(line, "nonce"),
        digest_param(line, "cnonce"),
        digest_param(line, "uri"),
        digest_param(line, "nc"),
    );
    let ha1 = md5_hex("alice:carrier.example:s3cret");
    let ha2 = md5_hex(&format!("INVITE:{uri}"));
    let want = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
    assert_eq!(digest_param(line, "response"), want, "{line}");
    assert!(uri.starts_with("sip:carrier@example.test"), "{line}");
    // The caller never saw the challenge.
    assert!(
        !lab.trace("auth").contains("SIP/2.0 407"),
        "{}",
        lab.trace("auth")
    );
}

/// The callee hangs up a call whose From and To the proxy replaced (restore_mode auto,
/// restore_passwd set): the callee's BYE goes back through the proxy, which finds the
/// originals in its Route entry; the caller gets the BYE with its own From URI in the To
/// and the To URI it dialled in the From. The caller's ACK reaches the callee with the
/// replaced ones.
fn restore_flow(mode: &str) {
    let dir = test_dir(&format!("restore-{mode}"));
    let (callee_port, port) = (free_port(), free_port());
    let callee = uas(&dir, "callee", "uac/uas_hangup.xml", callee_port, 1);
    // Manual mode: the script restores, and only the BYE (the ACK keeps what the caller
    // sent: the callee then sees the caller's own URI, which the test checks too).
    let in_dialog = if mode == "manual" {
        "if (method == \"BYE\") { uac_restore_from(); uac_restore_to(); }"
    } else {
        ""
    };
    let cfg = format!(
        r#"#!KAMAILIO
debug=2
children=2
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "uac.so"
modparam("uac", "restore_mode", "{mode}")
modparam("uac", "restore_passwd", "k3y")
request_route {{
    if (loose_route()) {{
        {in_dialog}
        if (method == "ACK") {{
            forward();
            exit;
        }}
        t_relay();
        exit;
    }}
    record_route();
    uac_replace_from("Anonymous", "sip:anonymous@anonymous.invalid");
    uac_replace_to("sip:+15550001@carrier.test");
    $du = "sip:127.0.0.1:{callee_port}";
    t_relay();
}}
"#
    );
    let path = dir.join("proxy.cfg");
    std::fs::write(&path, cfg).expect("cfg");
    let _proxy = Launch::new(&path)
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .start();
    let mut caller = Sipp(
        Command::new("sipp")
            .arg(format!("127.0.0.1:{port}"))
            .arg("-sf")
            .arg(scenario("uac/caller_hungup.xml"))
            .args([
                "-i",
                "127.0.0.1",
                "-s",
                "dialled",
                "-key",
                "from_user",
                "caller",
            ])
            .args(["-m", "1", "-nostdin", "-timeout", "20s"])
            .args(["-trace_err", "-trace_msg", "-error_file"])
            .arg(dir.join("caller-errors.log"))
            .arg("-message_file")
            .arg(dir.join("caller-messages.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp starts"),
    );
    assert_eq!(
        caller.wait(Duration::from_secs(25)),
        Some(0),
        "{}",
        log_tails(&dir)
    );
    let mut callee = callee;
    assert_eq!(
        callee.wait(Duration::from_secs(10)),
        Some(0),
        "{}",
        log_tails(&dir)
    );
    let read = |tag: &str| {
        std::fs::read_to_string(dir.join(format!("{tag}-messages.log"))).unwrap_or_default()
    };
    // A message of a SIPp trace: its first line starts with `start`, and it has `with`.
    let message_with = |log: &str, start: &str, with: &str| -> String {
        log.split("-----")
            .find(|m| m.lines().any(|l| l.starts_with(start)) && m.contains(with))
            .unwrap_or_else(|| panic!("no {start} with {with}:\n{log}"))
            .to_string()
    };
    let message = |log: &str, start: &str| message_with(log, start, "");
    let header = |m: &str, name: &str| -> String {
        m.lines()
            .find(|l| l.starts_with(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in {m}"))
            .to_string()
    };
    let (caller_log, callee_log) = (read("caller"), read("callee"));
    // The initial request carries the encoded originals, never the URIs in clear.
    let invite = message(&callee_log, "INVITE sip:dialled@");
    assert!(
        header(&invite, "From").contains("sip:anonymous@anonymous.invalid"),
        "{invite}"
    );
    assert!(
        header(&invite, "To").contains("sip:+15550001@carrier.test"),
        "{invite}"
    );
    let rr = header(&invite, "Record-Route");
    assert!(rr.contains(";vsf=") && rr.contains(";vst="), "{rr}");
    assert!(!invite.contains("caller@example.test"), "{invite}");
    assert!(!invite.contains("dialled@example.test>"), "{invite}");
    // The callee's BYE reaches the caller with the caller's URIs back.
    let bye = message(&caller_log, "BYE ");
    let (from, to) = (header(&bye, "From"), header(&bye, "To"));
    assert!(to.contains("<sip:caller@example.test>;tag=t1"), "{bye}");
    assert!(from.contains("<sip:dialled@example.test>;tag="), "{bye}");
    assert!(
        !bye.contains("anonymous.invalid") && !bye.contains("carrier.test"),
        "{bye}"
    );
    let ack = message(&callee_log, "ACK ");
    if mode == "auto" {
        // The caller's ACK goes downstream: it leaves with the replaced URIs.
        assert!(
            header(&ack, "From").contains("sip:anonymous@anonymous.invalid"),
            "{ack}"
        );
        assert!(
            header(&ack, "To").contains("sip:+15550001@carrier.test"),
            "{ack}"
        );
    } else {
        assert!(
            header(&ack, "From").contains("sip:caller@example.test"),
            "{ack}"
        );
        // The reply to the restored BYE goes back to the callee as it sent the BYE.
        let ok = message_with(&callee_log, "SIP/2.0 200", "CSeq: 1 BYE");
        assert!(
            header(&ok, "To").contains("sip:anonymous@anonymous.invalid"),
            "{ok}"
        );
        assert!(header(&ok, "CSeq").contains("BYE"), "{ok}");
    }
}

#[test]
fn callee_hangup_restores_from_and_to_auto() {
    if !have_sipp() {
        return;
    }
    restore_flow("auto");
}

#[test]
fn callee_hangup_restores_from_and_to_manual() {
    if !have_sipp() {
        return;
    }
    restore_flow("manual");
}

/// `sql_query_async`: each OPTIONS queues an INSERT and is answered at once; the rows
/// all arrive, in order, written by the module's writer task.
fn async_flow(backend: Backend, name: &str) {
    let dir = test_dir(&format!("async-{name}"));
    let db = TestDb::empty(backend, &dir);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let conn = Db::connect(&db.url).await.expect("db");
        conn.raw_query(
            "CREATE TABLE pings (n INTEGER NOT NULL, callid VARCHAR(128) NOT NULL)",
            0,
        )
        .await
        .expect("create");
    });
    let port = free_port();
    let cfg = format!(
        r#"#!KAMAILIO
debug=2
children=2
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
loadmodule "sl.so"
loadmodule "sqlops.so"
modparam("sqlops", "sqlcon", "log=>{url}")
request_route {{
    $var(n) = $(hdr(X-N){{s.int}});
    if (!sql_query_async("log", "insert into pings (n, callid) values ($var(n), '$ci')")) {{
        sl_send_reply("500", "Not Queued");
        exit;
    }}
    sl_send_reply("200", "OK");
}}
"#,
        url = db.url
    );
    let path = dir.join("proxy.cfg");
    std::fs::write(&path, cfg).expect("cfg");
    let _proxy = Launch::new(&path)
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .start();
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let local = sock.local_addr().expect("addr");
    const N: i64 = 50;
    for n in 0..N {
        let req = format!(
            "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKa{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:m@example.test>;tag=a{n}\r\nTo: <sip:127.0.0.1>\r\n\
             Call-ID: async-{n}-x'y\r\nCSeq: 1 OPTIONS\r\nX-N: {n}\r\nContent-Length: 0\r\n\r\n"
        );
        sock.send_to(req.as_bytes(), ("127.0.0.1", port))
            .expect("send");
        let mut buf = [0u8; 4096];
        let (len, _) = sock.recv_from(&mut buf).expect("reply");
        let reply = String::from_utf8_lossy(&buf[..len]);
        assert!(
            reply.starts_with("SIP/2.0 200"),
            "{reply}\n{}",
            log_tails(&dir)
        );
    }
    let rows = rt.block_on(async {
        let conn = Db::connect(&db.url).await.expect("db");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = conn
                .raw_query("SELECT n, callid FROM pings", 1000)
                .await
                .expect("select");
            if r.rows.len() as i64 >= N || Instant::now() > deadline {
                return r.rows;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert_eq!(rows.len() as i64, N, "{}", log_tails(&dir));
    let mut ns: Vec<i64> = rows.iter().map(|r| r[0].as_int().expect("n")).collect();
    ns.sort();
    assert_eq!(ns, (0..N).collect::<Vec<_>>());
    // The quote in the Call-ID was escaped, not executed.
    assert!(
        rows.iter().any(|r| r[1].as_str() == Some("async-7-x'y")),
        "{rows:?}"
    );
}

#[test]
fn sql_query_async_sqlite() {
    async_flow(Backend::Sqlite, "sqlite");
}

#[test]
fn sql_query_async_mariadb() {
    async_flow(Backend::Mariadb, "mariadb");
}

#[test]
fn sql_query_async_postgres() {
    async_flow(Backend::Postgres, "postgres");
}

/// Remote registration (uac_reg) from a `uacreg` row: the carrier's registrar (SIPp)
/// challenges with 401, the proxy answers with the row's credentials, gets a 3 second
/// binding and refreshes it before it runs out (a second challenged registration).
/// `uac_reg_status` and `uac_reg_lookup` answer from the script meanwhile.
fn uac_reg_flow(backend: Backend, name: &str) {
    if !have_sipp() {
        return;
    }
    let dir = test_dir(&format!("reg-{name}"));
    let db = TestDb::empty(backend, &dir);
    let (carrier_port, port) = (free_port(), free_port());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let conn = Db::connect(&db.url).await.expect("db");
        // As `ferrosip db init --modules uac` creates it.
        ferrosip_db::schema::init(&conn, Some(&["uac"]))
            .await
            .expect("uacreg");
        conn.raw_query(
            &format!(
                "INSERT INTO uacreg (l_uuid, l_username, l_domain, r_username, r_domain, realm, \
                 auth_username, auth_password, auth_proxy, expires) VALUES ('trunk1', 'pbx', \
                 'local.test', '4415550100', 'carrier.test', '', 'acct77', 's3cret', \
                 'sip:127.0.0.1:{carrier_port}', 60)"
            ),
            0,
        )
        .await
        .expect("row");
    });
    let mut carrier = uas(&dir, "carrier", "uac/uas_registrar.xml", carrier_port, 2);
    let cfg = format!(
        r#"#!KAMAILIO
debug=2
children=2
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "uac.so"
modparam("uac", "reg_db_url", "{url}")
modparam("uac", "reg_contact_addr", "127.0.0.1:{port}")
modparam("uac", "reg_timer_interval", 1)
request_route {{
    uac_reg_status("trunk1");
    $var(rc) = $rc;
    uac_reg_lookup("trunk1", "$var(local)");
    uac_reg_lookup_uri("sip:pbx@local.test", "$var(uuid)");
    sl_send_reply("200", "status $var(rc) local $var(local) uuid $var(uuid)");
}}
"#,
        url = db.url
    );
    let path = dir.join("proxy.cfg");
    std::fs::write(&path, cfg).expect("cfg");
    let _proxy = Launch::new(&path)
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .start();
    // Two registrations, each challenged: the first and its refresh.
    assert_eq!(
        carrier.wait(Duration::from_secs(20)),
        Some(0),
        "{}",
        log_tails(&dir)
    );
    let trace = std::fs::read_to_string(dir.join("carrier-messages.log")).unwrap_or_default();
    let answers: Vec<&str> = trace
        .lines()
        .filter(|l| l.starts_with("Authorization:"))
        .collect();
    assert_eq!(answers.len(), 2, "{trace}");
    for line in answers {
        let (nonce, cnonce, uri, nc) = (
            digest_param(line, "nonce"),
            digest_param(line, "cnonce"),
            digest_param(line, "uri"),
            digest_param(line, "nc"),
        );
        assert_eq!(digest_param(line, "username"), "acct77", "{line}");
        assert_eq!(uri, "sip:carrier.test", "{line}");
        let ha1 = md5_hex("acct77:carrier.test:s3cret");
        let ha2 = md5_hex(&format!("REGISTER:{uri}"));
        let want = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        assert_eq!(digest_param(line, "response"), want, "{line}");
    }
    assert!(
        trace.contains(&format!("Contact: <sip:trunk1@127.0.0.1:{port}>")),
        "{trace}"
    );
    assert!(
        trace.contains("To: <sip:4415550100@carrier.test>"),
        "{trace}"
    );
    // Registered now (the refresh answered): the script sees it.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let local = sock.local_addr().expect("addr");
    let req = format!(
        "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKreg1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:m@example.test>;tag=r1\r\nTo: <sip:127.0.0.1>\r\n\
         Call-ID: reg-status-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    sock.send_to(req.as_bytes(), ("127.0.0.1", port))
        .expect("send");
    let mut buf = [0u8; 4096];
    let (len, _) = sock.recv_from(&mut buf).expect("reply");
    let reply = String::from_utf8_lossy(&buf[..len]);
    assert!(
        reply.starts_with("SIP/2.0 200 status 1 local sip:pbx@local.test uuid trunk1"),
        "{reply}\n{}",
        log_tails(&dir)
    );
}

#[test]
fn uac_reg_registers_and_refreshes_sqlite() {
    uac_reg_flow(Backend::Sqlite, "sqlite");
}

#[test]
fn uac_reg_registers_and_refreshes_mariadb() {
    uac_reg_flow(Backend::Mariadb, "mariadb");
}

#[test]
fn uac_reg_registers_and_refreshes_postgres() {
    uac_reg_flow(Backend::Postgres, "postgres");
}
