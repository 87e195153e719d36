//! Running ferrosip as an operator does (issue 16 points 4–6): syslog lines on a socket
//! the test binds, JSON log lines, `-u` dropping root while SIP is still served, the pid
//! file, sd_notify readiness, `-c` exit codes, Kamailio flags and an unknown one, and
//! `ferrosip db` taking its URL from FERROSIP_DB_URL and the password from stdin.

use ferrosip_tests::{free_port, recv_text, Launch};
use std::io::Write;
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A directory of this test process for `name`.
fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrosip-test-{}-ops-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A config answering every request 200 after logging it with xlog.
fn config(port: u16, globals: &str) -> String {
    format!(
        "{globals}\nlisten=127.0.0.1:{port}\nloadmodule \"sl.so\"\nloadmodule \"xlog.so\"\n\
         request_route {{\n    xlog(\"L_NOTICE\", \"got $rm\\n\");\n    xlog(\"LOG_LOCAL5\", \"L_ERR\", \"facility form $rm\\n\");\n    sl_send_reply(\"200\", \"OK\");\n}}\n"
    )
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("proxy.cfg");
    std::fs::write(&path, text).expect("write cfg");
    path
}

/// The reply to an OPTIONS sent to `port` over UDP, `None` when nothing answers.
fn options(port: u16) -> Option<String> {
    let uac = UdpSocket::bind("127.0.0.1:0").expect("bind");
    uac.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let me = uac.local_addr().expect("addr");
    let request = format!(
        "OPTIONS sip:probe@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bKops{port}\r\n\
         From: <sip:t@127.0.0.1>;tag=ops\r\n\
         To: <sip:probe@127.0.0.1>\r\n\
         Call-ID: ops-{port}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    uac.send_to(request.as_bytes(), ("127.0.0.1", port))
        .expect("send");
    recv_text(&uac)
}

/// `ferrosip ARGS` with stdin `input`, waited for.
fn ferrosip(args: &[&str], envs: &[(&str, &str)], input: &str) -> Output {
    let mut child = Command::new(ferrosip_tests::ferrosip_bin())
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferrosip runs");
    // A command that fails before reading stdin (no database URL) may be gone already:
    // the write then meets a closed pipe, which is its answer, not the test's failure.
    match child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.expect("stdin written"),
    }
    child.wait_with_output().expect("ferrosip ends")
}

/// A server started without the testkit's `-E`, stopped by its PID.
struct Server(Child);

impl Server {
    fn start(args: &[&str], envs: &[(&str, &str)], port: u16) -> Server {
        Server::start_logging(args, envs, port, Stdio::null())
    }

    /// [`Server::start`] with stderr to `stderr`.
    fn start_logging(
        args: &[&str],
        envs: &[(&str, &str)],
        port: u16,
        stderr: impl Into<Stdio>,
    ) -> Server {
        let child = Command::new(ferrosip_tests::ferrosip_bin())
            .args(args)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("ferrosip starts");
        let mut server = Server(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            assert!(
                matches!(server.0.try_wait(), Ok(None)),
                "ferrosip ended before listening"
            );
            assert!(
                Instant::now() < deadline,
                "ferrosip did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-s", "TERM", &pid]).status();
        self.0.wait().expect("ferrosip ends")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Datagrams on `socket` until one contains `what` (panics with those seen after 10 s).
fn recv_until(socket: &UnixDatagram, what: &str, seen: &mut Vec<String>) -> String {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 65536];
    loop {
        if let Some(line) = seen.iter().find(|l| l.contains(what)) {
            return line.clone();
        }
        assert!(Instant::now() < deadline, "no \"{what}\" in {seen:#?}");
        if let Ok(n) = socket.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

#[test]
fn without_e_lines_go_to_syslog_with_the_configs_facility_and_name() {
    let dir = test_dir("syslog");
    let port = free_port();
    let socket_path = dir.join("log.sock");
    let _ = std::fs::remove_file(&socket_path);
    let socket = UnixDatagram::bind(&socket_path).expect("bind the syslog socket");
    let cfg = write_config(
        &dir,
        &config(
            port,
            "log_stderror=no\nlog_facility=LOG_LOCAL3\nlog_name=\"fsip-test\"",
        ),
    );
    let server = Server::start(
        &["-f", cfg.to_str().unwrap()],
        &[("FERROSIP_SYSLOG_SOCKET", socket_path.to_str().unwrap())],
        port,
    );
    let pid = server.0.id();
    let mut seen = Vec::new();
    // LOG_LOCAL3 (19) * 8 + info (6): the server's own start line.
    let started = recv_until(&socket, "Ferrosip started", &mut seen);
    assert!(
        started.starts_with("<158>")
            && started.contains(&format!(" fsip-test[{pid}]: INFO ferrosip_server: ")),
        "{started}"
    );
    assert!(options(port).is_some_and(|r| r.starts_with("SIP/2.0 200")));
    // xlog's L_NOTICE is syslog's notice (5); xlog(facility, ...) picks LOG_LOCAL5 (21).
    let notice = recv_until(&socket, "got OPTIONS", &mut seen);
    assert!(notice.starts_with("<157>"), "{notice}");
    let local5 = recv_until(&socket, "facility form OPTIONS", &mut seen);
    assert!(local5.starts_with(&format!("<{}>", 21 * 8 + 3)), "{local5}");
    assert!(server.stop().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn json_log_lines_parse() {
    let dir = test_dir("json");
    let port = free_port();
    let cfg = write_config(&dir, &config(port, "log_engine_type=\"json\""));
    let proxy = Launch::new(&cfg)
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .start();
    assert!(options(port).is_some_and(|r| r.starts_with("SIP/2.0 200")));
    proxy.wait_log("got OPTIONS", 1);
    let log = proxy.stop();
    let docs: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{log}")))
        .collect();
    let started = docs
        .iter()
        .find(|d| d["message"] == "Ferrosip started")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(started["level"], "INFO", "{started}");
    assert!(started["workers"].as_u64().is_some(), "{started}");
    assert!(started["pid"].as_u64().is_some(), "{started}");
    let xlog = docs
        .iter()
        .find(|d| d["message"] == "<script>: got OPTIONS") // xlog's default prefix
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(xlog["method"], "OPTIONS", "{xlog}");
    assert_eq!(xlog["call_id"], format!("ops-{port}"), "{xlog}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stderr_that_is_the_journal_gets_priority_prefixes() {
    use std::os::unix::fs::MetadataExt;
    let dir = test_dir("journal");
    let port = free_port();
    let cfg = write_config(&dir, &config(port, ""));
    let log_path = dir.join("journal.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let meta = log.metadata().expect("metadata");
    // What systemd sets for a service whose stderr is the journal's stream.
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let server = Server::start_logging(
        &["-E", "-f", cfg.to_str().unwrap()],
        &[("JOURNAL_STREAM", stream.as_str())],
        port,
        log,
    );
    assert!(options(port).is_some_and(|r| r.starts_with("SIP/2.0 200")));
    assert!(server.stop().success());
    let text = std::fs::read_to_string(&log_path).expect("log");
    // info is 6, xlog's L_NOTICE 5 and L_ERR 3; no time (the journal stamps lines) and
    // no colour.
    let started = text
        .lines()
        .find(|l| l.contains("Ferrosip started"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(started.starts_with("<6>INFO ferrosip_server: "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("<5>") && l.contains("got OPTIONS")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("<3>") && l.contains("facility form")),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The `Uid:`/`Gid:` line of a process: real, effective, saved, filesystem ids.
fn status_ids(pid: u32, key: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .expect("id line")
        .split_whitespace()
        .map(|v| v.parse().expect("id"))
        .collect()
}

#[test]
fn u_drops_root_after_binding_and_the_pid_file_names_the_process() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: the privilege drop cannot be tested");
        return;
    }
    let dir = test_dir("privileges");
    let port = free_port();
    let cfg = write_config(&dir, &config(port, ""));
    let pid_file = dir.join("ferrosip.pid");
    let proxy = Launch::new(&cfg)
        .args(["-u", "nobody", "-P"])
        .args([&pid_file])
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .start();
    let pid = proxy.child.id();
    let written = std::fs::read_to_string(&pid_file).expect("pid file");
    assert_eq!(written.trim(), pid.to_string());
    // The sockets were bound as root; the process now runs as nobody, and still serves.
    let reply = options(port).unwrap_or_else(|| panic!("no reply:\n{}", proxy.log_text()));
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
    let uid = status_ids(pid, "Uid:");
    let gid = status_ids(pid, "Gid:");
    assert_eq!(uid, vec![65534; 4], "{}", proxy.log_text());
    assert!(gid.iter().all(|g| *g != 0), "{gid:?}");
    // Every thread, not only the main one (glibc's setuid applies to all).
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks") {
        let tid: u32 = task.unwrap().file_name().to_string_lossy().parse().unwrap();
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap_or_default();
        if let Some(line) = status.lines().find(|l| l.starts_with("Uid:")) {
            assert!(!line.split_whitespace().any(|v| v == "0"), "{line}");
        }
    }
    proxy.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sd_notify_says_ready_once_listening_and_stopping_at_the_end() {
    let dir = test_dir("notify");
    let port = free_port();
    let cfg = write_config(&dir, &config(port, ""));
    let socket_path = dir.join("notify.sock");
    let _ = std::fs::remove_file(&socket_path);
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let server = Server::start(
        &["-E", "-f", cfg.to_str().unwrap()],
        &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())],
        port,
    );
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).expect("READY=1 within 20 s");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means serving.
    assert!(options(port).is_some_and(|r| r.starts_with("SIP/2.0 200")));
    assert!(server.stop().success());
    let n = socket.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn c_checks_the_config_and_says_so_by_its_exit_code() {
    let dir = test_dir("check");
    let good = write_config(&dir, &config(5060, ""));
    let out = ferrosip(&["-c", "-f", good.to_str().unwrap()], &[], "");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.join("bad.cfg");
    std::fs::write(&bad, "request_route {\n    no_such_function();\n}\n").unwrap();
    let out = ferrosip(&["-c", "-f", bad.to_str().unwrap()], &[], "");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("bad.cfg:2:"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kamailio_flags_are_taken_or_refused_with_a_reason() {
    let unknown = ferrosip(&["-f", "/nonexistent.cfg", "-K"], &[], "");
    let text = String::from_utf8_lossy(&unknown.stderr);
    assert_eq!(unknown.status.code(), Some(2), "{text}");
    assert!(
        text.contains("'-K'") && text.contains("ferrosip knows these of Kamailio's flags"),
        "{text}"
    );
    let daemonize = ferrosip(&["-DDD", "-f", "/nonexistent.cfg"], &[], "");
    let text = String::from_utf8_lossy(&daemonize.stderr);
    assert_eq!(daemonize.status.code(), Some(2), "{text}");
    assert!(text.contains("always runs in the foreground"), "{text}");
    let level = ferrosip(&["-L", "debug", "-f", "/nonexistent.cfg"], &[], "");
    let text = String::from_utf8_lossy(&level.stderr);
    assert!(text.contains("--log-level debug"), "{text}");
    // -m/-M/-DD/-E are taken; the notice says -m does not apply; then the missing
    // file stops it.
    let taken = ferrosip(
        &["-DD", "-E", "-m", "64", "-M", "8", "-f", "/nonexistent.cfg"],
        &[],
        "",
    );
    let text = String::from_utf8_lossy(&taken.stderr);
    assert_eq!(taken.status.code(), Some(1), "{text}");
    assert!(
        text.contains("-m 64: ferrosip has no shared memory pool"),
        "{text}"
    );
    assert!(text.contains("/nonexistent.cfg"), "{text}");
}

#[test]
fn db_takes_its_url_from_the_environment_and_the_password_from_stdin() {
    let dir = test_dir("db");
    let url = format!("sqlite://{}", dir.join("subscribers.db").display());
    let env = [("FERROSIP_DB_URL", url.as_str())];
    let init = ferrosip(&["db", "init", "--modules", "auth_db"], &env, "");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let add = ferrosip(&["db", "add-user", "alice@example.com"], &env, "s3cret\n");
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    // The hash of the password read from stdin.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let rows = rt.block_on(async {
        let db = ferrosip_db::Db::connect(&url).await.expect("db");
        db.select(
            "subscriber",
            &["ha1"],
            &[ferrosip_db::Cond::eq("username", "alice")],
            None,
        )
        .await
        .expect("query")
    });
    let expected = ferrosip_db::accounts::ha1("alice", "example.com", "s3cret");
    assert_eq!(rows, vec![vec![ferrosip_db::DbValue::Str(expected)]]);
    // No URL at all: the message says where it is looked for.
    let none = ferrosip(&["db", "add-user", "bob@example.com"], &[], "pw\n");
    let text = String::from_utf8_lossy(&none.stderr);
    assert!(!none.status.success());
    assert!(text.contains("FERROSIP_DB_URL"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
