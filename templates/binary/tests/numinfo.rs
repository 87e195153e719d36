//! The custom binary as an operator runs it: `my-ferrosip run -f` on a config that loads
//! the added module with its table on PostgreSQL, answering SIP requests from a
//! kamailio.cfg-style script and from Lua (`KSR.numinfo.*`); `check` naming the modules
//! this binary has; `docs` writing the added module's page.

use ferrosip_tests::db::{Backend, TestDb};
use ferrosip_tests::{free_port, recv_text, Launch, Proxy};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The binary this package builds (cargo builds it for its integration tests).
const BINARY: &str = env!("CARGO_BIN_EXE_my-ferrosip");

fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("my-ferrosip-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("test dir");
    dir
}

/// A PostgreSQL database of the test's own holding the module's table.
fn numbers_db(dir: &Path) -> TestDb {
    let db = TestDb::empty(Backend::Postgres, dir);
    let name = db.url.rsplit('/').next().expect("database name");
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            "5432",
            "-U",
            "postgres",
            "-d",
            name,
        ])
        .args([
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "CREATE TABLE numinfo (number VARCHAR(32) PRIMARY KEY, label VARCHAR(64) NOT NULL); \
             INSERT INTO numinfo VALUES ('4930123', 'Berlin office');",
        ])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    db
}

/// The head of a config for `port` loading sl and numinfo on `db_url`.
fn head(port: u16, db_url: &str) -> String {
    format!(
        "listen=udp:127.0.0.1:{port}\n\
         listen=tcp:127.0.0.1:{port}\n\
         children=1\n\
         loadmodule \"sl.so\"\n\
         loadmodule \"numinfo.so\"\n\
         modparam(\"numinfo\", \"db_url\", \"{db_url}\")\n"
    )
}

const ROUTE: &str = r#"
request_route {
    if (!numinfo_prefix("$rU", "49")) {
        sl_send_reply("404", "Not here");
        exit;
    }
    if (numinfo_lookup("$rU")) {
        sl_send_reply("200", "$numinfo(label)");
        exit;
    }
    sl_send_reply("404", "Unknown number");
}
"#;

const LUA: &str = r#"
function ksr_request_route()
    local number = KSR.pv.get("$rU")
    if KSR.numinfo.numinfo_prefix(number, "49") < 0 then
        KSR.sl.sl_send_reply(404, "Not here")
        return
    end
    if KSR.numinfo.numinfo_lookup(number) > 0 then
        KSR.sl.sl_send_reply(200, KSR.pv.get("$numinfo(label)"))
        return
    end
    KSR.sl.sl_send_reply(404, "Unknown number")
end
"#;

fn start(dir: &Path, cfg: &str, port: u16) -> Proxy {
    std::fs::write(dir.join("proxy.cfg"), cfg).expect("write cfg");
    Launch::new(dir.join("proxy.cfg"))
        .binary(BINARY)
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .start()
}

/// Sends an OPTIONS for `user` and answers the reply's status line.
fn ask(port: u16, user: &str) -> String {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let local = sock.local_addr().unwrap().port();
    let request = format!(
        "OPTIONS sip:{user}@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-{user}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:t@127.0.0.1>;tag=1\r\n\
         To: <sip:{user}@127.0.0.1>\r\n\
         Call-ID: numinfo-{user}-{local}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    sock.send_to(request.as_bytes(), ("127.0.0.1", port))
        .expect("send");
    let reply = recv_text(&sock).expect("a reply");
    reply.lines().next().unwrap_or_default().to_string()
}

fn answers_as_the_table_says(proxy: &Proxy, port: u16) {
    for (user, expected) in [
        ("4930123", "SIP/2.0 200 Berlin office"),
        ("4930999", "SIP/2.0 404 Unknown number"),
        ("3312", "SIP/2.0 404 Not here"),
    ] {
        assert_eq!(ask(port, user), expected, "{}", proxy.log_text());
    }
}

#[test]
fn a_cfg_script_calls_the_added_module() {
    let dir = test_dir("cfg");
    let db = numbers_db(&dir);
    let port = free_port();
    let proxy = start(&dir, &format!("{}{ROUTE}", head(port, &db.url)), port);
    answers_as_the_table_says(&proxy, port);
}

#[test]
fn a_lua_script_calls_the_added_module() {
    let dir = test_dir("lua");
    let db = numbers_db(&dir);
    std::fs::write(dir.join("routes.lua"), LUA).expect("write lua");
    let port = free_port();
    let cfg = format!(
        "{}loadmodule \"app_lua.so\"\n\
         modparam(\"app_lua\", \"load\", \"routes.lua\")\n\
         cfgengine \"lua\"\n",
        head(port, &db.url)
    );
    let proxy = start(&dir, &cfg, port);
    answers_as_the_table_says(&proxy, port);
}

#[test]
fn check_names_the_modules_this_binary_has() {
    let dir = test_dir("check");
    let cfg = dir.join("unknown.cfg");
    std::fs::write(
        &cfg,
        "loadmodule \"numinfo.so\"\nloadmodule \"nosuch.so\"\nrequest_route { exit; }\n",
    )
    .unwrap();
    let out = Command::new(BINARY)
        .args(["check", "-f"])
        .arg(&cfg)
        .output()
        .expect("check runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("unknown module 'nosuch'"), "{stderr}");
    let available = stderr
        .lines()
        .find(|l| l.contains("modules available:"))
        .unwrap_or_else(|| panic!("no module list: {stderr}"));
    assert!(
        available.contains("numinfo") && available.contains("sl"),
        "{available}"
    );
}

#[test]
fn docs_include_the_added_module() {
    let dir = test_dir("docs");
    let out = Command::new(BINARY)
        .args(["docs", "--out"])
        .arg(&dir)
        .output()
        .expect("docs runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = std::fs::read_to_string(dir.join("numinfo.md")).expect("numinfo.md");
    assert!(page.contains("numinfo_lookup(number: string)"), "{page}");
    assert!(page.contains("`numinfo.stats`"), "{page}");
    let index = std::fs::read_to_string(dir.join("README.md")).expect("README.md");
    assert!(index.contains("[numinfo](numinfo.md)"), "{index}");
}
