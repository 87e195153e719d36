//! `ferrosip run -l`, as Kamailio's `-l`: sockets added to the config's `listen=` ones.

use ferrosip_tests::{free_port, Launch};
use std::net::UdpSocket;
use std::time::Duration;

/// The reply to an OPTIONS sent to `port` over UDP, `None` when nothing answers.
fn options(port: u16) -> Option<String> {
    let uac = UdpSocket::bind("127.0.0.1:0").expect("bind");
    uac.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let me = uac.local_addr().expect("addr");
    let request = format!(
        "OPTIONS sip:probe@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {me};branch=z9hG4bKcli{port}\r\n\
         From: <sip:t@127.0.0.1>;tag=cli\r\n\
         To: <sip:probe@127.0.0.1>\r\n\
         Call-ID: cli-listen-{port}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    );
    uac.send_to(request.as_bytes(), ("127.0.0.1", port))
        .expect("send");
    ferrosip_tests::peer::recv_text(&uac)
}

#[test]
fn listen_arguments_add_sockets_to_the_configs_and_a_reload_keeps_quiet_about_them() {
    let (in_config, first, second) = (free_port(), free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("ferrosip-test-{}-cli-listen", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cfg = dir.join("proxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "listen=udp:127.0.0.1:{in_config}\n\
             loadmodule \"sl.so\"\n\
             request_route {{\n    sl_send_reply(\"200\", \"On $Rp\");\n}}\n"
        ),
    )
    .expect("write cfg");
    let proxy = Launch::new(&cfg)
        .args([
            "-l".to_string(),
            format!("127.0.0.1:{first}"),
            "--listen".to_string(),
            format!("udp:127.0.0.1:{second}/192.0.2.7:5099"),
        ])
        .log(dir.join("proxy.log"))
        .listening_on(first)
        .start();
    for port in [in_config, first, second] {
        let reply =
            options(port).unwrap_or_else(|| panic!("no answer on {port}:\n{}", proxy.log_text()));
        assert!(
            reply.starts_with(&format!("SIP/2.0 200 On {port}\r\n")),
            "{reply}"
        );
    }
    let log = proxy.log_text();
    assert!(log.contains("advertise 192.0.2.7:5099"), "{log}");
    // The file says what it said: a reload must not take `-l` for a change of listen=.
    proxy.signal("HUP");
    proxy.wait_log("script reloaded", 1);
    let log = proxy.stop();
    assert!(!log.contains("listen="), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_listen_argument_with_a_socket_name_is_refused() {
    let dir = std::env::temp_dir().join(format!(
        "ferrosip-test-{}-cli-listen-bad",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let cfg = dir.join("proxy.cfg");
    std::fs::write(&cfg, "request_route {\n    drop;\n}\n").expect("write cfg");
    let out = std::process::Command::new(ferrosip_tests::ferrosip_bin())
        .args(["run", "-f"])
        .arg(&cfg)
        .args(["-l", "udp:127.0.0.1:5999/192.0.2.7:5099/sock1"])
        .output()
        .expect("ferrosip runs");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("socket names are not supported"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
