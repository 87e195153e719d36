//! `ferrosip check` on real configs: the shipped examples, Kamailio's stock config, and
//! configs with mistakes (exit code 1, every error at its file:line:column); `check` and
//! `run` on scripts that use declared-only functions and PVs.

use std::path::{Path, PathBuf};
use std::process::Command;

fn bin() -> Command {
    Command::new(ferrosip_tests::ferrosip_bin())
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn check(args: &[&str]) -> (bool, String) {
    let out = bin()
        .current_dir(repo())
        .arg("check")
        .args(args)
        .output()
        .expect("ferrosip runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn examples_pass_check() {
    for (file, defines) in [
        ("examples/stateless-lb.cfg", vec![]),
        ("examples/registrar-auth.cfg", vec![]),
        ("examples/registrar.cfg", vec![]),
        ("examples/registrar.cfg", vec!["DBMODE=3"]),
        ("examples/proxy-features.cfg", vec![]),
        (
            "examples/proxy-features.cfg",
            vec!["WITH_DEBUG", "WITH_FAILOVER"],
        ),
    ] {
        let mut args = vec!["-f", file];
        for d in &defines {
            args.push("-A");
            args.push(d);
        }
        let (ok, out) = check(&args);
        assert!(ok, "{file} {defines:?} failed:\n{out}");
        assert!(out.contains(": OK ("), "{out}");
    }
}

/// The `#!ifdef WITH_*` names Kamailio's stock config tests.
fn stock_features(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            l.strip_prefix("#!ifdef ")
                .or_else(|| l.strip_prefix("#!ifndef "))
        })
        .map(|n| n.trim().to_string())
        .filter(|n| n.starts_with("WITH_"))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// What the stock configs use that is declared but not built, by the `WITH_*` features
/// that bring it in together (any release; features not listed bring in nothing). `check`
/// passes these only with `--allow-declared`, and `run` refuses them; everything else is
/// built.
/// Each row: the features that must be on, those that must be off, the uses.
type DeclaredRow = (
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);
const STOCK_DECLARED_ONLY: &[DeclaredRow] = &[
    (
        &["WITH_PRESENCE"],
        &[],
        &["handle_publish()", "handle_subscribe()"],
    ),
    (
        &["WITH_PRESENCE", "WITH_MSGREBUILD"],
        &[],
        &["msg_apply_changes()"],
    ),
];

/// The features a feature needs, as the config's header says ("enable mysql"): without
/// `WITH_MYSQL` there is no `DBURL`, and Kamailio refuses the config as well.
fn with_prerequisites(feature: &str) -> Vec<String> {
    let needs: &[&str] = match feature {
        "WITH_AUTH" | "WITH_USRLOCDB" | "WITH_ACCDB" | "WITH_ALIASDB" | "WITH_SPEEDDIAL"
        | "WITH_MULTIDOMAIN" | "WITH_PRESENCE" => &["WITH_MYSQL"],
        "WITH_IPAUTH" => &["WITH_MYSQL", "WITH_AUTH"],
        _ => &[],
    };
    needs
        .iter()
        .map(|n| n.to_string())
        .chain([feature.to_string()])
        .collect()
}

/// The declared-only uses of `check --allow-declared` on `cfg` with `defines` (sorted), or
/// the output when it fails anyway.
fn declared_only_uses(cfg: &str, defines: &[String]) -> CheckOutcome {
    let mut args = vec!["-f", cfg, "--allow-declared"];
    for d in defines {
        args.push("-A");
        args.push(d);
    }
    let (ok, out) = check(&args);
    if !ok || !out.contains(": OK (") {
        return Err(out);
    }
    let marker = "(allowed by --allow-declared; `run` refuses this config): ";
    let mut names: Vec<String> = out
        .lines()
        .filter_map(|l| l.split_once(marker).map(|(_, names)| names))
        .flat_map(|names| names.split(", "))
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// The declared-only uses `check --allow-declared` named, or its output when it failed.
type CheckOutcome = Result<Vec<String>, String>;

/// What [`STOCK_DECLARED_ONLY`] expects with `features` on.
fn expected_declared(features: &[String]) -> Vec<String> {
    let mut names: Vec<String> = STOCK_DECLARED_ONLY
        .iter()
        .filter(|(on, off, _)| {
            on.iter().all(|n| features.iter().any(|f| f == n))
                && !off.iter().any(|n| features.iter().any(|f| f == n))
        })
        .flat_map(|(_, _, names)| names.iter().map(|n| n.to_string()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Kamailio's stock config of every release (5.6, 6.0, 6.1) passes `check` with every
/// feature off, with each `WITH_*` feature on (with the features it needs), and with all
/// of them on; what each
/// uses that is declared-only is exactly [`STOCK_DECLARED_ONLY`]. Two `check`s run at a
/// time.
#[test]
fn kamailio_stock_configs_pass_with_each_feature_and_all() {
    let releases = ferrosip_tests::kamailio_releases();
    let mut failures = Vec::new();
    let mut runs = 0;
    for k in &releases {
        let stock = k.stock_cfg();
        let stock_arg = stock.to_str().expect("UTF-8 path").to_string();
        let text = std::fs::read_to_string(&stock).expect("readable");
        let features = stock_features(&text);
        assert!(
            features.len() >= 20,
            "{}: found only {features:?}",
            k.version
        );
        // Without any feature nothing declared-only is used: `check` passes as `run` loads it.
        let (ok, out) = check(&["-f", &stock_arg]);
        assert!(
            ok,
            "Kamailio {} stock config, all features off:\n{out}",
            k.version
        );
        // acc is loaded and set up for flag-driven accounting, which is built: no warning.
        assert!(!out.contains("warning: acc:"), "{out}");
        let mut sets: Vec<Vec<String>> = features
            .iter()
            .map(|f| with_prerequisites(f.as_str()))
            .collect();
        sets.push(features.clone());
        let results: Vec<(Vec<String>, CheckOutcome)> = std::thread::scope(|s| {
            let halves: Vec<_> = sets
                .chunks(sets.len().div_ceil(2))
                .map(|chunk| {
                    let stock_arg = &stock_arg;
                    s.spawn(move || {
                        chunk
                            .iter()
                            .map(|set| (set.clone(), declared_only_uses(stock_arg, set)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            halves
                .into_iter()
                .flat_map(|h| h.join().expect("check thread"))
                .collect()
        });
        for (set, result) in results {
            runs += 1;
            let label = if set.len() == features.len() {
                "all features".to_string()
            } else {
                set.join(" ")
            };
            match result {
                Err(out) => failures.push(format!(
                    "Kamailio {} with {label}: check fails:\n{out}",
                    k.version
                )),
                Ok(names) if names != expected_declared(&set) => failures.push(format!(
                    "Kamailio {} with {label}: declared-only {names:?}, expected {:?}",
                    k.version,
                    expected_declared(&set)
                )),
                Ok(_) => {}
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    eprintln!("{runs} checks of {} releases", releases.len());
}

/// With WITH_ANTIFLOOD, the stock config asks pike whether to drop each request and keeps
/// banned sources in `$sht(ipban=>$si)`: both are built (issue 15), so `check` passes
/// without `--allow-declared` and names neither as declared-only.
#[test]
fn kamailio_stock_config_with_antiflood_passes() {
    let stock = ferrosip_tests::kamailio_stock_cfg();
    if !stock.exists() {
        assert!(std::env::var_os("FERROSIP_REQUIRE_STOCK_CFG").is_none());
        eprintln!("skipped: {} not there", stock.display());
        return;
    }
    let stock_arg = stock.to_str().expect("UTF-8 path");
    let (ok, out) = check(&["-f", stock_arg, "-A", "WITH_ANTIFLOOD"]);
    assert!(ok, "{out}");
    assert!(
        !out.contains("pike_check_req() (module pike) is declared"),
        "{out}"
    );
    assert!(!out.contains("$sht (module htable) is declared"), "{out}");
}

const DECLARED_CFG: &str = "#!KAMAILIO
listen=udp:127.0.0.1:PORT
loadmodule \"presence.so\"
loadmodule \"tm.so\"
loadmodule \"xlog.so\"
modparam(\"presence\", \"db_url\", \"mysql://kamailio@localhost/kamailio\")
request_route {
\tif (!handle_publish()) {
\t\texit;
\t}
\t$var(banned) = $T_reply_last;
\t$T_reply_last = 1;
\txlog(\"L_INFO\", \"banned: $T_reply_last\\n\");
\texit;
}
";

/// The message of each declared-only use, at its exact location, for `check` and `run`.
const DECLARED_USES: [&str; 4] = [
    "declared.cfg:8:7: error: handle_publish() (module presence) is declared but not implemented yet: a script that calls it cannot run\n    | \tif (!handle_publish()) {\n    | \t     ^^^^^^^^^^^^^^",
    "declared.cfg:11:17: error: $T_reply_last (module tm) is declared but not implemented yet: a script that reads it cannot run\n    | \t$var(banned) = $T_reply_last;\n    | \t               ^^^^^^^^^^^^^",
    "declared.cfg:12:2: error: $T_reply_last (module tm) is declared but not implemented yet: a script that writes it cannot run\n    | \t$T_reply_last = 1;\n    | \t^^^^^^^^^^^^^",
    "declared.cfg:13:26: error: $T_reply_last (module tm) is declared but not implemented yet: a script that reads it cannot run",
];

#[test]
fn declared_only_uses_fail_check_with_locations() {
    let p = write_cfg("declared.cfg", &DECLARED_CFG.replace("PORT", "5999"));
    let path = p.to_string_lossy().into_owned();
    let (ok, out) = check(&["-f", &path]);
    assert!(!ok, "{out}");
    for use_ in DECLARED_USES {
        assert!(out.contains(use_), "wanted:\n{use_}\n---\n{out}");
    }
    assert!(out.contains("declared.cfg: 4 error(s)\n"), "{out}");
    assert!(
        out.contains(
            "4 of them use functions or pseudo-variables that are declared but not implemented yet"
        ),
        "{out}"
    );

    // --allow-declared: the same uses as warnings, exit 0, the parameter of presence said to do nothing.
    let (ok, out) = check(&["-f", &path, "--allow-declared"]);
    assert!(ok, "{out}");
    for use_ in DECLARED_USES {
        let warning = use_.replacen(": error: ", ": warning: ", 1);
        assert!(out.contains(&warning), "wanted:\n{warning}\n---\n{out}");
    }
    assert!(
        out.contains("declared.cfg:6:22: warning: presence: the module is declared but not implemented yet: parameter db_url has no effect"),
        "{out}"
    );
    assert!(
        out.contains(
            "(allowed by --allow-declared; `run` refuses this config): $T_reply_last, handle_publish()"
        ),
        "{out}"
    );
    assert!(out.contains("declared.cfg: OK ("), "{out}");
}

#[test]
fn run_refuses_declared_only_uses() {
    let p = write_cfg("declared.cfg", &DECLARED_CFG.replace("PORT", "5999"));
    let out = bin()
        .arg("run")
        .arg("-f")
        .arg(&p)
        .output()
        .expect("ferrosip runs");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for use_ in DECLARED_USES {
        assert!(text.contains(use_), "wanted:\n{use_}\n---\n{text}");
    }
    assert!(
        text.contains("declared.cfg: 4 error(s); not starting"),
        "{text}"
    );
}

/// `run` declares only the modules a script loads; a call to a function of another module
/// is still named with its module, as `check` (which declares every module) names it.
#[test]
fn run_names_the_module_of_a_function_the_script_does_not_load() {
    let p = write_cfg(
        "unloaded.cfg",
        "listen=udp:127.0.0.1:5998\nloadmodule \"sl.so\"\nrequest_route {\n\tt_relay();\n}\n",
    );
    let out = bin()
        .arg("run")
        .arg("-f")
        .arg(&p)
        .output()
        .expect("ferrosip runs");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("unloaded.cfg:4:2: error: t_relay() is provided by module 'tm', which is not loaded: add loadmodule \"tm.so\""),
        "{text}"
    );
}

/// A module whose behaviour is not built (presence) still loads and takes its parameters: `run`
/// starts, and says at each `modparam` that it has no effect.
#[test]
fn run_starts_and_warns_for_parameters_of_an_unbuilt_module() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port();
    let p = write_cfg(
        "acc.cfg",
        &format!("listen=udp:127.0.0.1:{port}\nloadmodule \"tm.so\"\nloadmodule \"presence.so\"\nmodparam(\"presence\", \"db_url\", \"sqlite:///nowhere.db\")\nrequest_route {{\n\texit;\n}}\n"),
    );
    let mut child = bin()
        .arg("run")
        .arg("-f")
        .arg(&p)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferrosip starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut seen = Vec::new();
    let mut warned = false;
    while !warned {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                warned = line.contains("acc.cfg:4:22: warning: presence: the module is declared but not implemented yet: parameter db_url has no effect");
                seen.push(line);
            }
            Err(_) => break,
        }
    }
    // Still running (it started): the warning did not stop it.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let running = child.try_wait().expect("try_wait").is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(warned, "no warning for db_url:\n{}", seen.join("\n"));
    assert!(running, "run stopped:\n{}", seen.join("\n"));
}

fn write_cfg(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrosip-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write cfg");
    p
}

#[test]
fn mistakes_fail_with_locations() {
    let inc = write_cfg(
        "routes.inc",
        "route[RELAY] {\n\tt_relay();\n\tt_drop_replies();\n}\n",
    );
    let main = write_cfg(
        "bad.cfg",
        &format!(
            "#!KAMAILIO\nloadmodule \"tm.so\"\nloadmodule \"sl.so\"\ninclude_file \"{}\"\nrequest_route {{\n\tsl_send_reply(\"404\");\n\tt_relya();\n\troute(RELAY);\n}}\n",
            inc.file_name().unwrap().to_string_lossy()
        ),
    );
    let main_s = main.to_string_lossy().to_string();
    let (ok, out) = check(&["-f", &main_s]);
    assert!(!ok, "should fail:\n{out}");
    assert!(
        out.contains("bad.cfg:6:2: error: sl_send_reply() takes 2 argument(s), 1 given"),
        "{out}"
    );
    assert!(
        out.contains("bad.cfg:7:2: error: unknown function 't_relya', did you mean t_relay?"),
        "{out}"
    );
    // The error inside the included file names that file and its line.
    assert!(
        out.contains("routes.inc:3:2: error: t_drop_replies() is not allowed in request_route"),
        "{out}"
    );
    assert!(out.contains("3 error(s)"), "{out}");
}

#[test]
fn unknown_module_names_what_exists() {
    let p = write_cfg(
        "mod.cfg",
        "loadmodule \"dispatchr.so\"\nrequest_route { exit; }\n",
    );
    let (ok, out) = check(&["-f", &p.to_string_lossy()]);
    assert!(!ok);
    assert!(
        out.contains("mod.cfg:1:1: error: unknown module 'dispatchr', did you mean dispatcher?"),
        "{out}"
    );
    assert!(out.contains("modules available:"), "{out}");
}

#[test]
fn dump_prints_bytecode() {
    let (ok, out) = check(&["-f", "examples/stateless-lb.cfg", "--dump"]);
    assert!(ok, "{out}");
    assert!(out.contains("route[BALANCE]"), "{out}");
    assert!(out.contains("call      ds_select_dst/2"), "{out}");
}

#[test]
fn defines_from_the_command_line() {
    let p = write_cfg(
        "defs.cfg",
        "#!ifdef WITH_X\nloadmodule \"nosuchmod.so\"\n#!endif\nrequest_route { exit; }\n",
    );
    let s = p.to_string_lossy().to_string();
    assert!(check(&["-f", &s]).0);
    let (ok, out) = check(&["-f", &s, "-A", "WITH_X"]);
    assert!(!ok);
    assert!(
        out.contains("defs.cfg:2:1: error: unknown module 'nosuchmod'"),
        "{out}"
    );
}

/// Runs `ferrosip docs` into a fresh temporary directory of this test.
fn generated_docs(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrosip-docs-{tag}-{}", std::process::id()));
    let out = bin()
        .args(["docs", "--out"])
        .arg(&dir)
        .output()
        .expect("ferrosip docs runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

#[test]
fn module_docs_match_the_registry() {
    let dir = generated_docs("sync");
    let committed = repo().join("docs/modules");
    let mut stale = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("generated") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        let fresh = std::fs::read_to_string(entry.path()).expect("read");
        let old = std::fs::read_to_string(committed.join(&name)).unwrap_or_default();
        if fresh != old {
            stale.push(name.to_string_lossy().into_owned());
        }
    }
    assert!(
        stale.is_empty(),
        "docs/modules is stale for {stale:?}: run `ferrosip docs --out docs/modules`"
    );
}

/// Every module of the binary documents what it declares: module doc, every function
/// overload with a doc, route kinds and argument names, every parameter with a doc.
#[test]
fn every_declaration_is_documented() {
    let dir = generated_docs("lint");
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("docs/modules") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read");
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        if name == "README.md" {
            continue;
        }
        let lines: Vec<&str> = text.lines().collect();
        if lines.get(2).is_none_or(|l| l.trim().is_empty()) {
            problems.push(format!("{name}: module has no description"));
        }
        for (i, l) in lines.iter().enumerate() {
            if l.starts_with("### `") {
                // "### `f(a: int)`", blank line, then the doc.
                if lines.get(i + 2).is_none_or(|d| d.trim().is_empty()) {
                    problems.push(format!("{name}: {l} has no doc"));
                }
                if l.contains("(int")
                    || l.contains("(string")
                    || l.contains(", int")
                    || l.contains(", string")
                {
                    problems.push(format!("{name}: {l} has unnamed arguments"));
                }
            }
            if l.starts_with("| `") && l.trim_end().ends_with("|  |") {
                problems.push(format!("{name}: parameter without doc: {l}"));
            }
            if l.starts_with("Allowed in: .") {
                problems.push(format!("{name}: a function without route kinds"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every module example (shown on its docs page) is a config that passes `check`.
#[test]
fn module_examples_pass_check() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo().join("modules")).expect("modules") {
        let example = entry.expect("entry").path().join("example.cfg");
        if !example.exists() {
            continue;
        }
        let path = example.to_string_lossy().into_owned();
        let (ok, out) = check(&["-f", &path]);
        assert!(ok, "{path} does not pass check:\n{out}");
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} module examples found");
}

/// In `onsend_route` only what inspects runs (flags, logging, `search`, the send-side
/// keywords and PVs): a function that would edit or send the message is refused with its
/// location, also in a route only onsend_route calls.
#[test]
fn onsend_route_refuses_functions_not_allowed_there() {
    let head = "loadmodule \"sl.so\"\nloadmodule \"textops.so\"\nloadmodule \"xlog.so\"\nrequest_route {\n\tforward(\"127.0.0.1\", 5099);\n}\nonsend_route {\n\tif (to_ip == \"127.0.0.2\" && !isflagset(3) && search(\"^INVITE\")) {\n\t\txlog(\"L_INFO\", \"blocked $snd(ip) $sndfrom(port)\\n\");\n\t\tdrop;\n\t}\n";
    let good = write_cfg("onsend-ok.cfg", &format!("{head}}}\n"));
    let (ok, out) = check(&["-f", &good.to_string_lossy()]);
    assert!(ok, "{out}");
    let bad = write_cfg(
        "onsend.cfg",
        &format!("{head}\tappend_hf(\"X-Late: 1\\r\\n\");\n\troute(MORE);\n}}\nroute[MORE] {{\n\tsl_send_reply(\"403\", \"No\");\n}}\n"),
    );
    let (ok, out) = check(&["-f", &bad.to_string_lossy()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("onsend.cfg:12:2: error: append_hf() is not allowed in onsend_route"),
        "{out}"
    );
    assert!(
        out.contains("onsend.cfg:16:2: error: sl_send_reply() is not allowed in onsend_route"),
        "{out}"
    );
}
