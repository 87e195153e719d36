//! `ferrosip test`: runs route-script test files (`*.test.toml`, docs/testing.md) on the
//! server's real engine — the same compiled program, modules and transaction layer as
//! `ferrosip run` — with an in-memory network, a manual clock for tm's timers, a DNS
//! answer table and a SQLite database of each test's own. Output and exit codes follow
//! `cargo test`: 0 all passed, 1 a test failed, 2 a test file could not run.
//!
//! A statement trace plugs in through the server's [`ferrosip_server::routes::RouteObserver`]
//! (see [`session::Recorder`]): [`Options::observer`] is handed every route run.

pub mod check;
pub mod digest;
pub mod file;
pub mod logs;
pub mod session;

use file::{parse_duration, TestFile};
use session::{parse_peer, unique, Names, RegistryFor, Session};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `ferrosip test` was asked.
#[derive(Default)]
pub struct Options {
    /// Test files, or directories searched (not recursively) for `*.test.toml`.
    pub paths: Vec<PathBuf>,
    /// Only tests whose name contains this.
    pub filter: Option<String>,
    /// Told of every route run of every test after the runner's own recorder: where a
    /// statement trace (`ferrosip test --trace`) plugs in.
    pub observer: Option<std::sync::Arc<dyn ferrosip_server::routes::RouteObserver>>,
    /// Trace every statement each test runs (`ferrosip test --trace`); a failing test's
    /// report ends with its trace lines (docs/debugging.md has their format).
    pub trace: bool,
}

/// The exit status: 0 passed, 1 a test failed, 2 a file could not run.
pub fn run(options: &Options, registry_for: RegistryFor) -> u8 {
    let started = Instant::now();
    let files = match collect(&options.paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let mut passed = 0;
    let mut failed = Vec::new();
    let mut broken = false;
    for path in &files {
        match run_file(path, options, registry_for) {
            Ok(outcome) => {
                passed += outcome.passed;
                failed.extend(outcome.failed);
            }
            Err(e) => {
                eprintln!("error: {e}");
                broken = true;
            }
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:");
        for (name, report) in &failed {
            println!("\n---- {name} ----\n{report}");
        }
        println!("\nfailures:");
        for (name, _) in &failed {
            println!("    {name}");
        }
    }
    let verdict = if failed.is_empty() && !broken {
        "ok"
    } else {
        "FAILED"
    };
    println!(
        "\ntest result: {verdict}. {passed} passed; {} failed; {} file(s); finished in {:.2}s",
        failed.len(),
        files.len(),
        started.elapsed().as_secs_f64()
    );
    if broken {
        2
    } else if failed.is_empty() {
        0
    } else {
        1
    }
}

/// The test files named, directories expanded to their `*.test.toml`, sorted.
fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let paths = if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths.to_vec()
    };
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(&p)
                .map_err(|e| format!("{}: {e}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.to_string_lossy().ends_with(".test.toml"))
                .collect();
            found.sort();
            files.extend(found);
        } else if p.exists() {
            files.push(p);
        } else {
            return Err(format!("{}: no such file or directory", p.display()));
        }
    }
    if files.is_empty() {
        return Err("no *.test.toml files found".into());
    }
    Ok(files)
}

struct FileOutcome {
    passed: usize,
    failed: Vec<(String, String)>,
}

/// Runs every test of one file. `Err` (exit 2) when the file cannot run: it does not
/// parse (with its line), or its config does not load.
fn run_file(
    path: &Path,
    options: &Options,
    registry_for: RegistryFor,
) -> Result<FileOutcome, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: TestFile = toml::from_str(&text).map_err(|e| {
        let line = e.span().map_or(1, |s| file::line_of(&text, s.start));
        format!("{}:{line}: {}", path.display(), e.message())
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tests: Vec<_> = file
        .tests
        .iter()
        .filter(|t| {
            options
                .filter
                .as_ref()
                .is_none_or(|f| t.get_ref().name.contains(f.as_str()))
        })
        .collect();
    println!("\nrunning {} tests from {}", tests.len(), path.display());
    let mut outcome = FileOutcome {
        passed: 0,
        failed: Vec::new(),
    };
    for test in tests {
        let line = file::line_of(&text, test.span().start);
        let t = test.get_ref();
        let full_name = format!("{}: {}", path.display(), t.name);
        let mut session =
            Session::start(&file, dir, &t.rows, registry_for, options.observer.clone())
                .map_err(|e| format!("{}:{line}: {}", path.display(), e.0))?;
        let trace = options.trace.then(|| {
            let lines = std::sync::Arc::new(ferrosip_api::trace::TraceLines::default());
            let switch = session.registry.cfg_trace();
            switch.set_sink(Some(lines.clone()));
            switch.set_on(true);
            lines
        });
        match run_test(&mut session, &file.ignore_requests, t, &text, path) {
            Ok(mut failures) if !failures.is_empty() && trace.is_some() => {
                let lines = trace.as_ref().map(|l| l.take()).unwrap_or_default();
                failures.push(format!("statement trace ({} lines):", lines.len()));
                failures.extend(lines.into_iter().map(|l| format!("  {l}")));
                println!("test {} ... FAILED", t.name);
                outcome.failed.push((full_name, failures.join("\n")));
            }
            Ok(failures) if failures.is_empty() => {
                println!("test {} ... ok", t.name);
                outcome.passed += 1;
            }
            Ok(failures) => {
                println!("test {} ... FAILED", t.name);
                outcome.failed.push((full_name, failures.join("\n")));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(outcome)
}

/// Runs one test's steps; the failures of its assertions (empty: passed). `Err` for a
/// step the runner cannot carry out (a bad address, an unknown PV): exit 2, file:line.
fn run_test(
    session: &mut Session,
    ignore: &[String],
    test: &file::Test,
    text: &str,
    path: &Path,
) -> Result<Vec<String>, String> {
    let mut names = Names {
        call_id: unique("call-"),
        tag: unique("tag-"),
        branch: String::new(),
        proxy: session.proxy,
        peer: "192.0.2.10:5060".parse().expect("address"),
        proto: ferrosip_api::Proto::Udp,
    };
    let mut failures = Vec::new();
    // Requests the proxy sent so far in this test (a `respond` answers one of them).
    let mut forwarded: Vec<session::Sent> = Vec::new();
    // Replies the proxy sent so far (an `auth` answers the last challenge).
    let mut forwarded_replies: Vec<session::Sent> = Vec::new();
    for (i, step) in test.steps.iter().enumerate() {
        let line = file::line_of(text, step.span().start);
        let at = |e: String| format!("{}:{line}: {e}", path.display());
        let s = step.get_ref();
        let actions = [s.send.is_some(), s.respond.is_some(), s.wait.is_some()];
        if actions.iter().filter(|a| **a).count() != 1 {
            return Err(at("a step does exactly one of send, respond, wait".into()));
        }
        let pvs: Vec<String> = s.pv.keys().cloned().collect();
        session.want(&pvs).map_err(at)?;
        let sent_before = session::lock_len(&session.sent);
        let runs_before = session.recorder.runs_len();
        let logs_before = logs::len();
        if let Some(msg) = &s.send {
            let (proto, peer) = match &s.from {
                Some(f) => parse_peer(f).map_err(at)?,
                None => (names.proto, names.peer),
            };
            names.proto = proto;
            names.peer = peer;
            // A new transaction per message sent; a `respond` step's `{branch}` is still
            // the one of the request it answers.
            names.branch = format!("z9hG4bK{}", unique("s"));
            let mut text = names.fill(msg);
            if let Some(auth) = &s.auth {
                text = with_credentials(&text, auth, &forwarded_replies).map_err(at)?;
            }
            let bytes = session::wire_message(&text);
            let local = session.proxy;
            session.receive(proto, peer, local, bytes);
        } else if let Some(code) = s.respond {
            let target = match s.forward {
                Some(n) => forwarded.get(n.wrapping_sub(1)).ok_or_else(|| {
                    at(format!(
                        "forward = {n}: the test forwarded {} request(s)",
                        forwarded.len()
                    ))
                })?,
                None => forwarded
                    .iter()
                    .rev()
                    .find(|f| !f.data.starts_with(b"ACK "))
                    .ok_or_else(|| at("respond: nothing was forwarded to answer".into()))?,
            }
            .clone();
            let reply = check::downstream_reply(&target, code, s, &names).map_err(at)?;
            let local = target.local.unwrap_or(session.proxy);
            session.receive(target.proto, target.dst, local, reply);
        } else if let Some(w) = &s.wait {
            session.wait(parse_duration(w).map_err(at)?);
        }
        let sent: Vec<session::Sent> = session::lock_slice(&session.sent, sent_before)
            .into_iter()
            .filter(|m| !m.retransmission && !ignored(m, ignore))
            .collect();
        forwarded.extend(sent.iter().filter(|m| !m.is_reply()).cloned());
        forwarded_replies.extend(sent.iter().filter(|m| m.is_reply()).cloned());
        let runs = session.recorder.runs_since(runs_before);
        let log = logs::since(logs_before);
        let mut step_failures = check::step(session, s, &sent, &runs, &log, &names).map_err(at)?;
        if !step_failures.is_empty() {
            step_failures.insert(0, format!("step {} ({}:{line}):", i + 1, path.display()));
            step_failures.push(check::context(&sent, &runs, &log));
            failures.extend(step_failures);
            // Later steps build on this one: their failures would only repeat it.
            break;
        }
    }
    Ok(failures)
}

/// `text` (a request) with the credentials answering the last 401/407 of the test.
fn with_credentials(
    text: &str,
    auth: &file::Auth,
    replies: &[session::Sent],
) -> Result<String, String> {
    let (challenge, proxy) = replies
        .iter()
        .rev()
        .find_map(|r| {
            let m = ferrosip_sip::SipMessage::parse(r.data.clone()).ok()?;
            let (name, proxy) = match m.status()? {
                401 => ("WWW-Authenticate", false),
                407 => ("Proxy-Authenticate", true),
                _ => return None,
            };
            let v = String::from_utf8_lossy(m.header(name)?).into_owned();
            Some((v, proxy))
        })
        .ok_or("auth: the proxy sent no 401/407 challenge in this test")?;
    let request_line = text.lines().next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (method, uri) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let (name, value) =
        digest::credentials(&challenge, proxy, &auth.user, &auth.password, method, uri)?;
    let mut lines: Vec<&str> = text.lines().collect();
    let header = format!("{name}: {value}");
    lines.insert(1, &header);
    let mut out = lines.join("\n");
    out.push('\n');
    Ok(out)
}

/// A request of a method the test file ignores.
fn ignored(m: &session::Sent, ignore: &[String]) -> bool {
    !m.is_reply()
        && ignore.iter().any(|method| {
            m.data.starts_with(method.as_bytes()) && m.data.get(method.len()) == Some(&b' ')
        })
}
