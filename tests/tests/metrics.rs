//! `/metrics` (xhttp_prom) scraped while SIPp makes calls and registrations through the
//! proxy: every scrape passes `promtool check metrics` (Debian's prometheus package), the
//! counters only grow, and at the end the per-method request and per-class reply counters
//! equal what SIPp sent (counted in SIPp's own message traces, retransmissions included).

use ferrosip_tests::{free_port, have_sipp, log_tails, promtool, traced_sipp, Launch, Proxy};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrosip-metrics-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}

/// Whether promtool is there; scripts/test.sh unpacks it, and under its
/// FERROSIP_REQUIRE_STOCK_CFG a missing one fails instead of skipping.
fn have_promtool() -> bool {
    let found = Command::new(promtool()).arg("--version").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("FERROSIP_REQUIRE_STOCK_CFG").is_none(),
            "scripts/test.sh unpacks prometheus (promtool), but promtool is missing"
        );
        eprintln!("skipped: promtool not there (scripts/test.sh unpacks it)");
    }
    found
}

/// A proxy that registers, and relays calls (record-routed) to dispatcher set 1; set 2
/// holds a disabled destination.
fn start(dir: &Path, port: u16, metrics_port: u16, uas: u16) -> Proxy {
    std::fs::write(
        dir.join("dispatcher.list"),
        format!("1 sip:127.0.0.1:{uas}\n2 sip:127.0.0.1:5999 4\n"),
    )
    .expect("list");
    let cfg = format!(
        r#"#!KAMAILIO
debug=2
children=2
auto_aliases=no
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "dispatcher.so"
loadmodule "xhttp_prom.so"
modparam("dispatcher", "list_file", "{dir}/dispatcher.list")
modparam("xhttp_prom", "listen", "127.0.0.1:{metrics_port}")
request_route {{
    if (is_method("REGISTER")) {{
        save("location");
        exit;
    }}
    if (has_totag()) {{
        if (loose_route()) {{
            t_relay();
            exit;
        }}
        sl_send_reply("404", "Not Here");
        exit;
    }}
    if (is_method("INVITE")) {{
        record_route();
    }}
    if (!ds_select_dst("1", "4")) {{
        sl_send_reply("503", "No Destination");
        exit;
    }}
    t_relay();
}}
"#,
        dir = dir.display()
    );
    let path = dir.join("proxy.cfg");
    std::fs::write(&path, cfg).expect("cfg");
    Launch::new(path)
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .terminate_on_drop()
        .start()
}

/// One HTTP/1.1 request; the status code and the body.
fn http(port: u16, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("metrics listener");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("answer");
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head}"));
    (status, body.to_string())
}

fn scrape(port: u16) -> String {
    let (status, body) = http(
        port,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n",
    );
    assert_eq!(status, 200, "{body}");
    body
}

/// `promtool check metrics` on `text`: passes with no lint problem.
fn promtool_check(text: &str) {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("promtool ends");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- scraped:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The value of the sample `name{labels}` exactly as written (labels as in the text).
fn value(text: &str, sample: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no sample {sample} in:\n{text}"))
}

/// Every counter sample (`*_total` and histogram buckets/counts) with its value.
fn counters(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(k, _)| {
            let name = k.split('{').next().unwrap_or(k);
            name.ends_with("_total") || name.ends_with("_bucket") || name.ends_with("_count")
        })
        .map(|(k, v)| (k.to_string(), v.parse().expect("a number")))
        .collect()
}

/// Lines of SIPp's message trace `file` that start with `start` (each a message SIPp
/// sent or received, retransmissions included).
fn traced(file: &Path, start: &str) -> u64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(start))
        .count() as u64
}

/// A SIPp UAS answering `calls` calls (180, 200; 200 to BYE), its messages traced.
fn uas(dir: &Path, port: u16, calls: u32) -> Child {
    Command::new("sipp")
        .arg("-sf")
        .arg(scenarios().join("call_uas.xml"))
        .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin"])
        .args(["-m", &calls.to_string(), "-trace_msg", "-message_file"])
        .arg(dir.join("uas-messages.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp starts")
}

fn wait(child: Child, limit: Duration) -> Option<i32> {
    ferrosip_tests::wait_exit(child, limit)
}

#[test]
fn metrics_pass_promtool_under_load_and_count_what_sipp_sent() {
    if !have_sipp() || !have_promtool() {
        return;
    }
    const CALLS: u32 = 60;
    const REGISTRATIONS: u32 = 20;
    let dir = test_dir("load");
    let (port, metrics_port, uas_port) = (free_port(), free_port(), free_port());
    let proxy = start(&dir, port, metrics_port, uas_port);

    let idle = scrape(metrics_port);
    promtool_check(&idle);
    assert_eq!(
        value(&idle, "ferrosip_core_rcv_requests_total{method=\"INVITE\"}"),
        0
    );
    assert_eq!(value(&idle, "ferrosip_panics_total"), 0);
    assert_eq!(
        value(
            &idle,
            &format!(
                "ferrosip_dispatcher_destination_up{{set=\"1\",uri=\"sip:127.0.0.1:{uas_port}\"}}"
            )
        ),
        1
    );
    assert_eq!(
        value(
            &idle,
            "ferrosip_dispatcher_destinations{set=\"2\",state=\"disabled\"}"
        ),
        1
    );
    // Other paths and methods are refused; the listener goes on serving.
    assert_eq!(http(metrics_port, "GET / HTTP/1.1\r\n\r\n").0, 404);
    assert_eq!(http(metrics_port, "POST /metrics HTTP/1.1\r\n\r\n").0, 405);
    assert_eq!(http(metrics_port, "nonsense\r\n\r\n").0, 400);
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
    assert_eq!(http(metrics_port, &huge).0, 431);
    let (status, head_only) = http(metrics_port, "HEAD /metrics HTTP/1.1\r\n\r\n");
    assert_eq!((status, head_only.as_str()), (200, ""));

    let callee = uas(&dir, uas_port, CALLS);
    std::thread::sleep(Duration::from_millis(200));
    let target = format!("127.0.0.1:{port}");
    let caller = traced_sipp(&dir, "uac", &scenarios().join("call_uac.xml"), &target)
        .args(["-s", "bob", "-p", &free_port().to_string()])
        .args(["-m", &CALLS.to_string(), "-r", "20", "-l", "10"])
        .args(["-timeout", "60s", "-timeout_error"])
        .spawn()
        .expect("sipp starts");
    let registrar = traced_sipp(
        &dir,
        "reg",
        &scenarios().join("registrar/uac_register_ok.xml"),
        &target,
    )
    .args(["-s", "alice", "-p", &free_port().to_string()])
    .args(["-m", &REGISTRATIONS.to_string(), "-r", "10"])
    .args([
        "-key",
        "expires",
        "600",
        "-timeout",
        "60s",
        "-timeout_error",
    ])
    .spawn()
    .expect("sipp starts");

    // Scrapes while the calls run: each valid, no counter going down.
    let mut last = counters(&idle);
    let mut scrapes = 0;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let text = scrape(metrics_port);
        promtool_check(&text);
        let now = counters(&text);
        for (name, before) in &last {
            let after = now
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| *v)
                .unwrap_or_else(|| panic!("{name} disappeared:\n{text}"));
            assert!(after >= *before, "{name} went from {before} to {after}");
        }
        last = now;
        scrapes += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(scrapes >= 5, "only {scrapes} scrapes");

    let uac_exit = wait(caller, Duration::from_secs(90));
    let reg_exit = wait(registrar, Duration::from_secs(90));
    let uas_exit = wait(callee, Duration::from_secs(30));
    assert_eq!(
        (uac_exit, reg_exit, uas_exit),
        (Some(0), Some(0), Some(0)),
        "SIPp runs failed:\n{}",
        log_tails(&dir)
    );

    let end = scrape(metrics_port);
    promtool_check(&end);
    let uac_log = dir.join("uac-messages.log");
    let uas_log = dir.join("uas-messages.log");
    for method in ["INVITE", "ACK", "BYE"] {
        let sent = traced(&uac_log, &format!("{method} sip:"));
        assert!(sent >= u64::from(CALLS), "{method}: SIPp sent {sent}");
        assert_eq!(
            value(
                &end,
                &format!("ferrosip_core_rcv_requests_total{{method=\"{method}\"}}")
            ),
            sent,
            "{method}"
        );
    }
    let registers = traced(&dir.join("reg-messages.log"), "REGISTER sip:");
    assert!(registers >= u64::from(REGISTRATIONS));
    assert_eq!(
        value(
            &end,
            "ferrosip_core_rcv_requests_total{method=\"REGISTER\"}"
        ),
        registers
    );
    assert_eq!(
        value(&end, "ferrosip_core_rcv_requests_total{method=\"OPTIONS\"}"),
        0
    );
    // The proxy receives replies from the UAS only.
    for (class, start) in [("1xx", "SIP/2.0 1"), ("2xx", "SIP/2.0 2")] {
        let sent = traced(&uas_log, start);
        assert!(sent >= u64::from(CALLS), "{class}: UAS sent {sent}");
        assert_eq!(
            value(
                &end,
                &format!("ferrosip_core_rcv_replies_total{{class=\"{class}\"}}")
            ),
            sent,
            "{class}"
        );
    }
    assert_eq!(
        value(&end, "ferrosip_core_rcv_replies_total{class=\"4xx\"}"),
        0
    );
    // Each call's INVITE, ACK and BYE went on to the UAS once (REGISTERs were answered
    // here); a retransmission tm absorbed is not forwarded again, a repeated 2xx ACK is.
    let relayed: u64 = ["INVITE", "ACK", "BYE"]
        .iter()
        .map(|m| {
            value(
                &end,
                &format!("ferrosip_core_rcv_requests_total{{method=\"{m}\"}}"),
            )
        })
        .sum();
    let forwarded = value(&end, "ferrosip_core_fwd_requests_total");
    assert!(
        (3 * u64::from(CALLS)..=relayed).contains(&forwarded),
        "{forwarded} requests forwarded, {relayed} received"
    );
    // Every request ran request_route once.
    let requests: u64 = ["INVITE", "ACK", "BYE", "REGISTER"]
        .iter()
        .map(|m| {
            value(
                &end,
                &format!("ferrosip_core_rcv_requests_total{{method=\"{m}\"}}"),
            )
        })
        .sum();
    assert_eq!(
        value(&end, "ferrosip_route_run_duration_seconds_count"),
        requests
    );
    assert_eq!(
        value(
            &end,
            "ferrosip_usrloc_location_contacts{table=\"location\"}"
        ),
        1,
        "alice registered one contact"
    );
    assert_eq!(value(&end, "ferrosip_panics_total"), 0);
    let log = proxy.stop();
    assert!(
        log.contains("Prometheus metrics at http://127.0.0.1:"),
        "{log}"
    );
}

#[test]
fn a_metrics_address_that_does_not_parse_fails_the_start() {
    let dir = test_dir("badlisten");
    let port = free_port();
    let cfg = format!(
        "listen=udp:127.0.0.1:{port}\nloadmodule \"sl.so\"\nloadmodule \"xhttp_prom.so\"\nmodparam(\"xhttp_prom\", \"listen\", \"localhost\")\nrequest_route {{ sl_send_reply(\"404\", \"x\"); }}\n"
    );
    let path = dir.join("bad.cfg");
    std::fs::write(&path, cfg).expect("cfg");
    let log = dir.join("bad.log");
    let child = Command::new(ferrosip_tests::ferrosip_bin())
        .args(["-E", "-f"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("runs");
    // A server that started anyway is killed (by its PID) at the limit: None.
    let exit = wait(child, Duration::from_secs(20));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(matches!(exit, Some(c) if c != 0), "{exit:?}: {text}");
    assert!(text.contains("xhttp_prom listen \"localhost\""), "{text}");
}
