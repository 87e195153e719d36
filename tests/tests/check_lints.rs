//! `ferrosip check`'s lints (issue 20 point 4): warnings at file:line:col for what loads but
//! is most likely a mistake, exit 0; and the two mistakes that make a script wrong (a route
//! called but not defined, an assignment to a read-only pseudo-variable) as errors, exit 1.

use std::process::Command;

fn check(name: &str, cfg: &str) -> (i32, String, String) {
    let dir = std::env::temp_dir().join(format!("ferrosip-lints-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("lints.cfg");
    std::fs::write(&file, cfg).expect("cfg");
    let out = Command::new(ferrosip_tests::ferrosip_bin())
        .arg("check")
        .arg("-f")
        .arg(&file)
        .output()
        .expect("ferrosip runs");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    (
        out.status.code().unwrap_or(-1),
        text,
        file.display().to_string(),
    )
}

const LINTED: &str = r#"loadmodule "sl.so"
loadmodule "kex.so"
loadmodule "textops.so"
loadmodule "tm.so"
loadmodule "xlog.so"
loadmodule "acc.so"
modparam("acc", "log_flag", 7)
request_route {
	setflag(4);
	setflag(7);
	if (isflagset(5)) {
		sl_send_reply("500", "x");
	}
	setbflag(2);
	t_on_failure("ARMED");
	if (is_method("BYE")) {
		drop;
		xlog("L_INFO", "never\n");
		xlog("L_INFO", "never either\n");
	}
	exit;
	sl_send_reply("200", "never");
}
failure_route[ARMED] {
	if (isbflagset(2)) {
		return;
	}
	exit;
}
failure_route[NEVERARMED] {
	exit;
}
onreply_route[REPLIES] {
	xlog("L_INFO", "reply\n");
}
"#;

#[test]
fn lints_are_warnings_with_their_location() {
    let (code, out, file) = check("warn", LINTED);
    assert_eq!(code, 0, "warnings only:\n{out}");
    for (at, message) in [
        ("9:2", "flag 4 is set but never tested"),
        ("11:6", "flag 5 is tested but never set"),
        (
            "18:3",
            "unreachable: this statement follows `drop` in the same block",
        ),
        (
            "22:2",
            "unreachable: this statement follows `exit` in the same block",
        ),
        (
            "30:15",
            "failure_route[NEVERARMED] is never used: no t_on_failure(\"NEVERARMED\") arms it",
        ),
        (
            "33:15",
            "onreply_route[REPLIES] is never used: no t_on_reply(\"REPLIES\") arms it",
        ),
    ] {
        let want = format!("{file}:{at}: warning: {message}");
        assert!(out.contains(&want), "wanted:\n{want}\n---\n{out}");
    }
    // One warning per unreachable block, not per statement.
    assert!(!out.contains(":19:3: warning"), "{out}");
    // Flag 7 is tested by acc (log_flag); branch flag 2 is set and tested; ARMED is armed.
    assert!(!out.contains("flag 7"), "{out}");
    assert!(!out.contains("branch flag 2"), "{out}");
    assert!(!out.contains("ARMED is never used"), "{out}");
}

#[test]
fn a_clean_script_has_no_lint_warning() {
    let clean = r#"loadmodule "sl.so"
request_route {
	setflag(1);
	if (isflagset(1)) {
		sl_send_reply("200", "OK");
		exit;
	}
	sl_send_reply("500", "Flag Lost");
}
"#;
    let (code, out, _) = check("clean", clean);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("warning"), "{out}");
}

#[test]
fn an_undefined_route_and_a_read_only_assignment_are_errors() {
    let wrong =
        "loadmodule \"sl.so\"\nrequest_route {\n\t$si = \"192.0.2.1\";\n\troute(MISSING);\n}\n";
    let (code, out, file) = check("errors", wrong);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("{file}:3:2: error: $si cannot be assigned")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "{file}:4:2: error: no route[MISSING] in this script"
        )),
        "{out}"
    );
}
