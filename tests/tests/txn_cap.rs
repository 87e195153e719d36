//! The transaction cap (issue 18): 20,000 INVITEs at 20,000 a second from one address, to a
//! destination that never answers, with no flood blocking in the script. Past
//! `max_transactions` the proxy answers 503 instead of keeping a transaction, its memory
//! stays bounded, and once the burst's transactions have ended, a call from another address
//! goes through. The same for route runs waiting for I/O past `max_waiting_routes`.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrosip_tests::{free_port, recv_text, uas_reply, Launch};

const BURST: usize = 20_000;
const CAP: usize = 500;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn past_max_transactions_requests_get_503_and_memory_stays_bounded() {
    let port = free_port();
    let dead = UdpSocket::bind("127.0.0.1:0").expect("dead destination");
    let dead_port = dead.local_addr().expect("addr").port();
    let cfg = format!(
        r#"listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
loadmodule "tm.so"
loadmodule "sl.so"
modparam("tm", "max_transactions", {CAP})
modparam("tm", "fr_timer", 1000)
modparam("tm", "fr_inv_timer", 1000)
modparam("tm", "wt_timer", 500)
modparam("tm", "retr_timer1", 50)
request_route {{
    if (!t_relay()) {{
        sl_reply_error();
    }}
}}
"#
    );
    let dir = std::env::temp_dir().join(format!("ferrosip-test-{}-txn-cap", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("proxy.cfg"), cfg).expect("cfg");
    let proxy = Launch::new(dir.join("proxy.cfg"))
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .start();
    let pid = proxy.child.id();
    let rss_before = rss_kib(pid);

    let client = Arc::new(UdpSocket::bind("127.0.0.1:0").expect("client"));
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let local = client.local_addr().expect("addr").port();
    let refused = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let counter = {
        let (client, refused, done) = (client.clone(), refused.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match client.recv(&mut buf) {
                    Ok(n) => {
                        if buf[..n].starts_with(b"SIP/2.0 503") {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) if done.load(Ordering::Relaxed) => return,
                    Err(_) => {}
                }
            }
        })
    };
    let mut peak_rss = 0;
    let started = Instant::now();
    for i in 0..BURST {
        let invite = format!(
            "INVITE sip:nobody@127.0.0.1:{dead_port} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bKcap{i}\r\n\
             From: <sip:flood@127.0.0.1>;tag=f{i}\r\nTo: <sip:nobody@127.0.0.1>\r\n\
             Call-ID: cap-{i}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
             Contact: <sip:flood@127.0.0.1:{local}>\r\nContent-Length: 0\r\n\r\n"
        );
        let _ = client.send_to(invite.as_bytes(), ("127.0.0.1", port));
        // 20,000 a second: paced so the socket buffer, not the proxy, is not what drops.
        if i % 200 == 199 {
            std::thread::sleep(Duration::from_millis(10));
        }
        if i % 2_000 == 0 {
            peak_rss = peak_rss.max(rss_kib(pid));
        }
    }
    let burst_secs = started.elapsed().as_secs_f64();
    peak_rss = peak_rss.max(rss_kib(pid));
    // The burst's transactions end before the next call: 408 after fr_timer (1 s), which
    // the flooder never ACKs, so each waits out timer H (64 x T1 = 3.2 s with T1 = 50 ms).
    std::thread::sleep(Duration::from_secs(6));
    done.store(true, Ordering::Relaxed);
    counter.join().expect("counter");
    let refused = refused.load(Ordering::Relaxed);

    // A call from a second address, answered by a UAS.
    let uas = UdpSocket::bind("127.0.0.1:0").expect("uas");
    uas.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let uas_port = uas.local_addr().expect("addr").port();
    let answering = std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        if let Ok((n, from)) = uas.recv_from(&mut buf) {
            let req = String::from_utf8_lossy(&buf[..n]).into_owned();
            let _ = uas.send_to(uas_reply(&req, "200 OK", None).as_bytes(), from);
        }
    });
    let second = UdpSocket::bind("127.0.0.2:0").expect("second address");
    second
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let second_port = second.local_addr().expect("addr").port();
    let options = format!(
        "OPTIONS sip:pbx@127.0.0.1:{uas_port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.2:{second_port};branch=z9hG4bKafter\r\n\
         From: <sip:b@127.0.0.2>;tag=b\r\nTo: <sip:pbx@127.0.0.1>\r\n\
         Call-ID: cap-after\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    second
        .send_to(options.as_bytes(), ("127.0.0.1", port))
        .expect("send");
    let reply = recv_text(&second).unwrap_or_default();
    answering.join().expect("uas");
    let log = proxy.stop();
    eprintln!(
        "{BURST} INVITEs in {burst_secs:.2} s, {refused} answered 503; RSS {rss_before} -> peak {peak_rss} KiB"
    );
    assert!(
        reply.starts_with("SIP/2.0 200"),
        "after the burst: {reply}\n{log}"
    );
    // At most CAP transactions at a time; over the burst a few thousand end and are
    // replaced, the rest are refused.
    assert!(refused >= BURST / 2, "503s: {refused}\n{log}");
    assert!(log.contains("transaction table full"), "{log}");
    assert!(log.contains("panics=0"), "{log}");
    let overloaded: usize = log
        .split("overloaded=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    assert!(overloaded >= refused, "overloaded={overloaded} < {refused}");
    assert!(
        peak_rss < rss_before + 64 * 1024,
        "RSS grew from {rss_before} to {peak_rss} KiB"
    );
}

#[test]
fn past_max_waiting_routes_new_requests_get_503() {
    let port = free_port();
    let cfg = format!(
        r#"listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
children=1
max_waiting_routes=5
loadmodule "sl.so"
loadmodule "cfgutils.so"
request_route {{
    usleep(1000000);
    sl_send_reply("200", "OK");
}}
"#
    );
    let dir =
        std::env::temp_dir().join(format!("ferrosip-test-{}-waiting-cap", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("proxy.cfg"), cfg).expect("cfg");
    let proxy = Launch::new(dir.join("proxy.cfg"))
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .start();
    let client = UdpSocket::bind("127.0.0.1:0").expect("client");
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let local = client.local_addr().expect("addr").port();
    for i in 0..20 {
        let options = format!(
            "OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bKwait{i}\r\n\
             From: <sip:w@127.0.0.1>;tag=w{i}\r\nTo: <sip:ping@127.0.0.1>\r\n\
             Call-ID: wait-{i}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        client
            .send_to(options.as_bytes(), ("127.0.0.1", port))
            .expect("send");
    }
    let (mut ok, mut refused) = (0, 0);
    while let Some(reply) = recv_text(&client) {
        if reply.starts_with("SIP/2.0 200") {
            ok += 1;
        } else if reply.starts_with("SIP/2.0 503") {
            refused += 1;
        }
        if ok + refused == 20 {
            break;
        }
    }
    let log = proxy.stop();
    assert_eq!((ok, refused), (5, 15), "{log}");
    assert!(log.contains("overloaded=15"), "{log}");
    assert!(log.contains("panics=0"), "{log}");
}
