//! Pseudo-variables of issue 21 through the real binary: `$xavp`/`$xavu`/`$xavi` (also
//! across failure routes), `$msg(...)`, `$su`, `$mbu`, `$ai`/`$pU`/`$pd` and `$sel(...)`
//! with `ferrosip test` on tests/pv (native and Lua), bad arguments refused by `check` at
//! their line:column, and sqlops' `sql_xquery` into an XAVP on SQLite, MariaDB and
//! PostgreSQL.

use ferrosip_tests::db::{Backend, TestDb};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `ferrosip ARGS` from the repository root: (exit code, stdout + stderr).
fn ferrosip(args: &[&str]) -> (i32, String) {
    let out = Command::new(ferrosip_tests::ferrosip_bin())
        .current_dir(repo())
        .args(args)
        .output()
        .expect("ferrosip runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// A directory of the test's own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("ferrosip-pv-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    fn write(&self, file: &str, text: &str) -> String {
        let p = self.0.join(file);
        std::fs::write(&p, text).expect("write");
        p.to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn pv_families_on_real_messages_native_and_lua() {
    let (code, out) = ferrosip(&["test", "tests/pv/pv.test.toml", "tests/pv/pv-lua.test.toml"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("6 passed; 0 failed"), "{out}");
}

#[test]
fn bad_pv_arguments_fail_check_at_their_column() {
    let s = Scratch::new("check");
    let cfg = s.write(
        "bad.cfg",
        "loadmodule \"sl.so\"\nloadmodule \"pv.so\"\nrequest_route {\n\
         \t$var(a) = $xavp(a[x]=>b);\n\
         \t$var(b) = $msg(first_line);\n\
         \t$var(c) = $sel(via[1].nosuch);\n\
         \t$var(d) = $xavu(u[1]=>f);\n\
         \t$var(e) = @ruri.usr;\n\
         \t$var(f) = $sel(via[0].host);\n\
         \tsl_send_reply(\"200\", \"OK\");\n}\n",
    );
    let (code, out) = ferrosip(&["check", "-f", &cfg]);
    assert_ne!(code, 0, "{out}");
    for want in [
        "bad.cfg:4:13: error: $xavp: bad index 'x' in 'a[x]'",
        "bad.cfg:5:13: error: $msg: unknown attribute 'first_line' (one of: len, buf, body",
        "bad.cfg:6:13: error: $sel: unknown Via part 'nosuch'",
        "bad.cfg:7:13: error: $xavu: an $xavu holds one item per name: no index",
        "bad.cfg:8:13: error: $sel: unknown URI part 'usr'",
        "bad.cfg:9:13: error: $sel: 'via[0]': selects count from 1",
    ] {
        assert!(out.contains(want), "wanted:\n{want}\n---\n{out}");
    }
    assert!(out.contains("6 error(s)"), "{out}");
}

/// `sql_xquery` fills an XAVP item per row (the first row at index 0), one field per
/// column, NULL columns as null fields; 2 when no row came back.
fn xquery_on(backend: Backend) {
    let s = Scratch::new(&format!("xquery-{backend:?}").to_lowercase());
    let db = TestDb::empty(backend, &s.0);
    let cfg = format!(
        r#"debug=3
log_stderror=yes
port=5060
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "sqlops.so"
modparam("sqlops", "sqlcon", "gw=>{url}")
request_route {{
	if ($hdr(X-Setup) == "yes") {{
		sql_query("gw", "CREATE TABLE gws (id INTEGER, uri VARCHAR(64), weight INTEGER, note VARCHAR(16))");
		sql_query("gw", "INSERT INTO gws VALUES (1, 'sip:a.example.com', 10, NULL), (2, 'sip:b.example.com', 20, 'backup')");
		sl_send_reply("200", "Setup");
		exit;
	}}
	sql_xquery("gw", "SELECT id, uri, weight, note FROM gws WHERE weight >= $hdr(X-Min) ORDER BY id", "gw");
	$var(rc) = $rc;
	sql_xquery("gw", "SELECT uri FROM gws WHERE id = 99", "none");
	$var(rc_none) = $rc;
	sl_send_reply("200", "OK");
}}
"#,
        url = db.url
    );
    s.write("xq.cfg", &cfg);
    let request = |extra: &str| {
        format!(
            r#"send = """
OPTIONS sip:{{proxy}} SIP/2.0
Via: SIP/2.0/UDP {{peer}};branch={{branch}}
From: <sip:monitor@example.com>;tag={{tag}}
To: <sip:{{proxy}}>
Call-ID: {{call_id}}
CSeq: 1 OPTIONS
{extra}
Max-Forwards: 70
""""#
        )
    };
    let tests = format!(
        r#"config = "xq.cfg"
[[test]]
name = "rows into an xavp"
[[test.step]]
{setup}
replies = [{{ status = 200, reason = "Setup" }}]
[[test.step]]
{query}
replies = [200]
pv = {{ "$var(rc)" = 1, "$var(rc_none)" = 2, "$xavp(gw=>uri)" = "sip:a.example.com", "$xavp(gw[0]=>id)" = 1, "$xavp(gw[0]=>note)" = "<null>", "$xavp(gw[1]=>uri)" = "sip:b.example.com", "$xavp(gw[1]=>weight)" = 20, "$xavp(gw[1]=>note)" = "backup", "$xavp(gw[-1]=>id)" = 2, "$xavp(gw[2]=>id)" = "<null>", "$xavp(none=>uri)" = "<null>" }}
"#,
        setup = request("X-Setup: yes"),
        query = request("X-Min: 10"),
    );
    let file = s.write("xq.test.toml", &tests);
    let (code, out) = ferrosip(&["test", &file]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 passed; 0 failed"), "{out}");
}

#[test]
fn sql_xquery_sqlite() {
    xquery_on(Backend::Sqlite);
}

#[test]
fn sql_xquery_mariadb() {
    xquery_on(Backend::Mariadb);
}

#[test]
fn sql_xquery_postgres() {
    xquery_on(Backend::Postgres);
}
