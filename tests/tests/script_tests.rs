//! `ferrosip test` (docs/testing.md): every example config's test file passes through the
//! real binary, and the runner itself reports a failed assertion as a diff (exit 1) and a
//! test file it cannot run with its file:line (exit 2).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `ferrosip test args` from the repository root: (exit code, stdout + stderr).
fn ferrosip_test(args: &[&Path]) -> (i32, String) {
    let out = Command::new(ferrosip_tests::ferrosip_bin())
        .current_dir(repo())
        .arg("test")
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

/// A directory of the test's own with a config and a test file.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str, cfg: &str, tests: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("ferrosip-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        std::fs::write(dir.join("proxy.cfg"), cfg).expect("cfg");
        std::fs::write(dir.join("proxy.test.toml"), tests).expect("test file");
        Scratch(dir)
    }

    fn test_file(&self) -> PathBuf {
        self.0.join("proxy.test.toml")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const KEEPALIVE_CFG: &str = r#"
loadmodule "sl.so"
loadmodule "xlog.so"
request_route {
	$var(seen) = $rm;
	setflag(3);
	xlog("L_INFO", "keepalive from $si\n");
	sl_send_reply("200", "Keepalive");
	exit;
}
"#;

const OPTIONS: &str = r#"send = """
OPTIONS sip:{proxy} SIP/2.0
Via: SIP/2.0/UDP {peer};branch={branch}
From: <sip:monitor@example.com>;tag={tag}
To: <sip:{proxy}>
Call-ID: {call_id}
CSeq: 1 OPTIONS
Max-Forwards: 70
""""#;

#[test]
fn every_example_config_passes_its_test_file() {
    let (code, out) = ferrosip_test(&[Path::new("examples"), Path::new("examples/lua")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("test result: ok."), "{out}");
    // One test file per example config, native and Lua.
    let configs = |dir: &str| {
        std::fs::read_dir(repo().join(dir))
            .expect("examples")
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "cfg"))
            .map(|e| e.path())
            // A routing config loads modules; tls-profiles.cfg (a tls.cfg profile file)
            // does not and has no routes to test.
            .filter(|p| std::fs::read_to_string(p).is_ok_and(|t| t.contains("loadmodule")))
            .collect::<Vec<_>>()
    };
    for cfg in configs("examples")
        .into_iter()
        .chain(configs("examples/lua"))
    {
        let test_file = cfg.with_extension("test.toml");
        assert!(
            test_file.exists(),
            "{} has no test file {}",
            cfg.display(),
            test_file.display()
        );
    }
}

#[test]
fn a_passing_test_checks_replies_pvs_flags_and_logs() {
    let tests = format!(
        r#"config = "proxy.cfg"
[[test]]
name = "keepalive"
[[test.step]]
{OPTIONS}
replies = [{{ status = 200, reason = "Keepalive", to = "udp:{{peer}}" }}]
forwards = []
pv = {{ "$var(seen)" = "OPTIONS", "$rU" = "<null>" }}
flags = [3]
no_flags = [4]
log = ["keepalive from 192.0.2.10"]
"#
    );
    let scratch = Scratch::new("pass", KEEPALIVE_CFG, &tests);
    let (code, out) = ferrosip_test(&[&scratch.test_file()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("test keepalive ... ok"), "{out}");
    assert!(out.contains("1 passed; 0 failed"), "{out}");
}

#[test]
fn a_failing_assertion_shows_a_diff_and_exits_1() {
    let tests = format!(
        r#"config = "proxy.cfg"
[[test]]
name = "expects a 404"
[[test.step]]
{OPTIONS}
replies = [{{ status = 404 }}]
pv = {{ "$var(seen)" = "INVITE" }}
flags = [5]

[[test]]
name = "still passes"
[[test.step]]
{OPTIONS}
replies = [200]
"#
    );
    let scratch = Scratch::new("fail", KEEPALIVE_CFG, &tests);
    let (code, out) = ferrosip_test(&[&scratch.test_file()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("test expects a 404 ... FAILED"), "{out}");
    assert!(out.contains("test still passes ... ok"), "{out}");
    assert!(out.contains("reply 1: status:\n  - 404\n  + 200"), "{out}");
    assert!(
        out.contains("$var(seen) after request_route:\n  - INVITE\n  + OPTIONS"),
        "{out}"
    );
    assert!(
        out.contains("flag 5 is not set after request_route"),
        "{out}"
    );
    // The message as sent, for context.
    assert!(out.contains("| SIP/2.0 200 Keepalive"), "{out}");
    assert!(out.contains("1 passed; 1 failed"), "{out}");

    // With --trace the failing test's report ends with the statements it ran, each with
    // the config's file:line; a passing test prints none.
    let file = scratch.test_file();
    let (code, out) = ferrosip_test(&[Path::new("--trace"), file.as_path()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("statement trace ("), "{out}");
    assert!(out.contains("proxy.cfg:"), "{out}");
    assert_eq!(out.matches("statement trace (").count(), 1, "{out}");
}

#[test]
fn a_bad_test_file_exits_2_with_its_line() {
    let tests = "config = \"proxy.cfg\"\n[[test]]\nname = \"typo\"\n[[test.step]]\nsend = \"x\"\nreplys = [200]\n";
    let scratch = Scratch::new("bad", KEEPALIVE_CFG, tests);
    let (code, out) = ferrosip_test(&[&scratch.test_file()]);
    assert_eq!(code, 2, "{out}");
    let at = format!("{}:6:", scratch.test_file().display());
    assert!(out.contains(&at), "expected {at} in:\n{out}");
    assert!(out.contains("replys"), "{out}");
}

#[test]
fn a_step_the_runner_cannot_carry_out_exits_2_with_its_line() {
    let tests = format!(
        "config = \"proxy.cfg\"\n[[test]]\nname = \"bad peer\"\n\n[[test.step]]\nfrom = \"not an address\"\n{OPTIONS}\n"
    );
    let scratch = Scratch::new("badstep", KEEPALIVE_CFG, &tests);
    let (code, out) = ferrosip_test(&[&scratch.test_file()]);
    assert_eq!(code, 2, "{out}");
    let at = format!("{}:5:", scratch.test_file().display());
    assert!(out.contains(&at), "expected {at} in:\n{out}");
    assert!(out.contains("not an address"), "{out}");
}

#[test]
fn a_config_that_does_not_load_exits_2() {
    let tests =
        format!("config = \"proxy.cfg\"\n[[test]]\nname = \"t\"\n[[test.step]]\n{OPTIONS}\n");
    let scratch = Scratch::new(
        "badcfg",
        "request_route {\n\tno_such_function();\n}\n",
        &tests,
    );
    let (code, out) = ferrosip_test(&[&scratch.test_file()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no_such_function"), "{out}");
    assert!(out.contains("proxy.cfg"), "{out}");
}

const CLOCK_CFG: &str = r#"
loadmodule "sl.so"
loadmodule "htable.so"
loadmodule "pike.so"
modparam("htable", "htable", "seen=>size=4;autoexpire=10;")
modparam("pike", "sampling_time_unit", 2)
modparam("pike", "reqs_density_per_unit", 3)
modparam("pike", "remove_latency", 4)
request_route {
	if (!pike_check_req()) {
		sl_send_reply("503", "Flooding");
		exit;
	}
	if ($sht(seen=>$fU) == $null) {
		$sht(seen=>$fU) = $Ts;
		sl_send_reply("200", "First");
		exit;
	}
	sl_send_reply("200", "Again");
}
"#;

/// `now` and `wait` are the only time a test sees: the time pseudo-variables, htable's
/// autoexpire and pike's sampling windows all read the test's clock.
#[test]
fn time_pvs_htable_expiry_and_pike_windows_follow_the_test_clock() {
    let step = |reason: &str, extra: &str| {
        format!("[[test.step]]\n{OPTIONS}\nreplies = [{{ status = 200, reason = \"{reason}\" }}]\n{extra}\n")
    };
    let flood = |status: u16| format!("[[test.step]]\n{OPTIONS}\nreplies = [{status}]\n");
    let tests = format!(
        r#"config = "proxy.cfg"
now = 2026-03-01T09:00:00Z

[[test]]
name = "time and expiry"
{first}
[[test.step]]
wait = "5s"
{again}
[[test.step]]
wait = "6s"
{expired}
[[test]]
name = "flood window"
{f1}{f1}{f1}{f1}{f1}{f1}{f3}{f4}
[[test.step]]
wait = "10s"
{f5}"#,
        first = step(
            "First",
            r#"pv = { "$Ts" = 1772355600, "$TS" = 1772355600, "$TV(Sn)" = "1772355600.000000", "$utimef(%Y-%m-%d %H:%M:%S)" = "2026-03-01 09:00:00", "$sht(seen=>monitor)" = 1772355600 }"#
        ),
        again = step(
            "Again",
            r#"pv = { "$Ts" = 1772355605, "$TV(s)" = 1772355605 }"#
        ),
        expired = step("First", r#"pv = { "$sht(seen=>monitor)" = 1772355611 }"#),
        // Kamailio's prefix tree blocks a new address later than a flat counter would:
        // with a density of 3, at its 7th request within one unit.
        f1 = flood(200),
        f3 = flood(503),
        f4 = flood(503),
        f5 = flood(200),
    );
    let scratch = Scratch::new("clock", CLOCK_CFG, &tests);
    let (code, out) = ferrosip_test(&[&scratch.test_file()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 passed; 0 failed"), "{out}");
}
