//! TCP under attack (issue 18's acceptance): with `tcp_max_connections=500`, 2,000 idle
//! connections, 50 slowloris connections and one client that sends OPTIONS without ever
//! reading its replies. Connections past the limit are closed at once, slowloris ones
//! within `tcp_msg_read_timeout`, the client that does not read is disconnected once its
//! write queue is full, memory stays bounded, UDP is answered throughout, no panic.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use ferrosip_tests::{free_port, Launch};

const MAX_CONNECTIONS: usize = 500;
const SLOWLORIS: usize = 50;
const IDLE: usize = 2000;
/// `tcp_msg_read_timeout` of the test config, in seconds.
const MSG_READ_TIMEOUT: u64 = 3;

fn cfg(port: u16) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
tcp_max_connections={MAX_CONNECTIONS}
tcp_msg_read_timeout={MSG_READ_TIMEOUT}
loadmodule "sl.so"
request_route {{
    sl_send_reply("200", "OK");
}}
"#
    )
}

fn options(port: u16, i: usize, proto: &str) -> String {
    format!(
        "OPTIONS sip:probe@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/{proto} 127.0.0.1:9;branch=z9hG4bKlim{i};rport\r\n\
         From: <sip:a@x>;tag={i}\r\nTo: <sip:b@x>\r\nCall-ID: lim{i}\r\nCSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The test opens ~2,100 sockets: more than a default soft limit of 1,024.
fn raise_own_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain calls on a struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max.min(8192);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    assert!(
        lim.rlim_cur >= 2600,
        "this test needs 2,600 open files; the hard limit is {}",
        lim.rlim_max
    );
}

/// Whether the server has closed `conn` (EOF or reset), looking without waiting.
fn closed_by_server(mut conn: &TcpStream) -> bool {
    conn.set_nonblocking(true).expect("nonblocking");
    let mut b = [0u8; 1];
    let closed = match conn.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(_) => true,
    };
    conn.set_nonblocking(false).expect("blocking");
    closed
}

fn udp_round_trip(port: u16, i: usize) -> Option<Duration> {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    let start = Instant::now();
    sock.send_to(options(port, i, "UDP").as_bytes(), ("127.0.0.1", port))
        .expect("send");
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).ok()?;
    buf[..n]
        .starts_with(b"SIP/2.0 200")
        .then(|| start.elapsed())
}

#[test]
fn connection_limit_slowloris_and_a_client_that_never_reads() {
    raise_own_file_limit();
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("ferrosip-test-{}-tcp-limits", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("proxy.cfg"), cfg(port)).expect("cfg");
    let proxy = Launch::new(dir.join("proxy.cfg"))
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .start();
    let pid = proxy.child.id();
    let rss_before = rss_kib(pid);

    // Slowloris: a message that never ends, one more byte every second.
    let mut slow: Vec<TcpStream> = (0..SLOWLORIS)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", port)).expect("slowloris connects");
            c.write_all(b"OPTIONS sip:slow@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9\r\n")
                .expect("first bytes");
            c
        })
        .collect();
    let slow_started = Instant::now();

    // The client that never reads: its own thread, writing until the server gives up on it.
    let flood = std::thread::spawn(move || {
        let mut c = TcpStream::connect(("127.0.0.1", port)).expect("flood connects");
        let mut sent = 0usize;
        for i in 0..50_000 {
            if c.write_all(options(port, i, "TCP").as_bytes()).is_err() {
                break;
            }
            sent += 1;
        }
        // Its replies were never read; once the server has closed, a read sees the end.
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut sink = vec![0u8; 1 << 20];
        let mut closed = false;
        while let Ok(n) = c.read(&mut sink) {
            if n == 0 {
                closed = true;
                break;
            }
        }
        (sent, closed || c.read(&mut sink).is_err())
    });

    // 2,000 idle connections: the ones past the limit are closed as soon as accepted.
    let mut idle: Vec<TcpStream> = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => idle.push(c),
            Err(e) => panic!("connect: {e}"),
        }
    }

    // UDP is answered during all this.
    let mut rtts = Vec::new();
    for i in 0..5 {
        let rtt =
            udp_round_trip(port, 1_000_000 + i).expect("UDP OPTIONS answered during the attack");
        rtts.push(rtt);
        std::thread::sleep(Duration::from_millis(100));
    }
    rtts.sort();
    let median = rtts[rtts.len() / 2];

    std::thread::sleep(Duration::from_millis(500));
    let refused = idle.iter().filter(|c| closed_by_server(c)).count();
    let kept = IDLE - refused;
    // The kernel completes connections before the server accepts them, so the slots the
    // slowloris and flood connections free (closed meanwhile) may go to idle ones.
    assert!(
        kept <= MAX_CONNECTIONS,
        "{kept} idle connections kept open, limit {MAX_CONNECTIONS}"
    );
    assert!(
        kept >= MAX_CONNECTIONS - SLOWLORIS - 1 - 5,
        "only {kept} idle connections kept: the limit refuses too early"
    );

    // Slowloris: one byte a second does not keep a message alive past its deadline.
    let deadline = slow_started + Duration::from_secs(MSG_READ_TIMEOUT + 3);
    loop {
        for c in &mut slow {
            let _ = c.write_all(b"X");
        }
        let open = slow.iter().filter(|c| !closed_by_server(c)).count();
        if open == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{open} slowloris connections still open {:?} after their first byte",
            slow_started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let (sent, flood_closed) = flood.join().expect("flood thread");
    let rss_after = rss_kib(pid);
    drop(idle);
    let log = proxy.stop();
    println!(
        "after {:?}: kept {kept}, refused {refused}, UDP median {median:?} (all {rtts:?}), flood sent {sent}, \
         closed {flood_closed}, RSS {rss_before} -> {rss_after} KiB",
        slow_started.elapsed()
    );
    assert!(
        flood_closed && log.contains("write queue full"),
        "the client that never reads is disconnected (sent {sent}):\n{log}"
    );
    assert!(
        rss_after.saturating_sub(rss_before) < 200 * 1024,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    assert!(
        median < Duration::from_millis(100),
        "UDP OPTIONS answered in {rtts:?} during the attack"
    );
    assert!(!log.contains("panicked"), "no panic:\n{log}");
}
