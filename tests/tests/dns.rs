//! RFC 3263 server location through the real `ferrosip` binary, against a DNS server the
//! test runs on loopback (a small authoritative responder built on hickory-proto, whose
//! records the test changes while the proxy runs) and SIPp UASs:
//!
//! - SRV order: two targets, priority 10 and 20, both up: every call goes to the
//!   priority 10 one, and the SRV name is asked once for all of them (its TTL holds);
//! - SRV failover: the priority 10 target is silent (no UAS), with `use_dns_failover=1`
//!   every call completes through the priority 20 one before any failure_route;
//!   with failover off, the same call fails (408);
//! - TTL: the SRV record changes; once its 1 s TTL has run out the next call goes to
//!   the new target;
//! - NAPTR: `dns_try_naptr=yes` follows a NAPTR record to its SRV name;
//! - a dispatcher set whose destination is a host name;
//! - stateless `forward()` to a name not yet cached: the request goes out on its first
//!   try once the SRV and A answers arrive, and the reply to a Via whose sent-by is a
//!   name (no `received`) is sent once that name is looked up; a name that does not
//!   resolve makes `forward()` fail (the script answers 500).
//!
//! Every SIPp runs with `-m CALLS` and must exit 0: a UAS has then handled exactly that
//! many calls.

use ferrosip_tests::{free_port, have_sipp, Launch, Proxy};
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, NAPTR, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use std::collections::HashMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The zone the test serves: records by (lower-case name, type), and how often each
/// name was asked.
#[derive(Default)]
struct Zone {
    records: HashMap<(String, RecordType), Vec<(u32, RData)>>,
    asked: HashMap<(String, RecordType), u32>,
}

/// An authoritative DNS server on 127.0.0.1 (UDP), stopped when dropped.
struct DnsServer {
    port: u16,
    zone: Arc<Mutex<Zone>>,
    stop: Arc<AtomicBool>,
}

fn fqdn(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    if name.ends_with('.') {
        name
    } else {
        name + "."
    }
}

impl DnsServer {
    fn start() -> DnsServer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("dns socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let port = socket.local_addr().expect("addr").port();
        let zone = Arc::new(Mutex::new(Zone::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (z, s) = (zone.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let answer = answer(&z, &query);
                if let Ok(bytes) = answer.to_vec() {
                    let _ = socket.send_to(&bytes, from);
                }
            }
        });
        DnsServer { port, zone, stop }
    }

    fn set(&self, name: &str, rtype: RecordType, ttl: u32, data: Vec<RData>) {
        self.zone.lock().unwrap().records.insert(
            (fqdn(name), rtype),
            data.into_iter().map(|d| (ttl, d)).collect(),
        );
    }

    fn a(&self, name: &str, ttl: u32) {
        self.set(
            name,
            RecordType::A,
            ttl,
            vec![RData::A(A(Ipv4Addr::LOCALHOST))],
        );
    }

    /// SRV records (priority, weight, port, target) at `name`.
    fn srv(&self, name: &str, ttl: u32, targets: &[(u16, u16, u16, &str)]) {
        let data = targets
            .iter()
            .map(|(p, w, port, t)| {
                RData::SRV(SRV::new(*p, *w, *port, Name::from_str(&fqdn(t)).unwrap()))
            })
            .collect();
        self.set(name, RecordType::SRV, ttl, data);
    }

    fn asked(&self, name: &str, rtype: RecordType) -> u32 {
        let zone = self.zone.lock().unwrap();
        zone.asked.get(&(fqdn(name), rtype)).copied().unwrap_or(0)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn answer(zone: &Mutex<Zone>, query: &Message) -> Message {
    let mut out = Message::new();
    out.set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true);
    out.add_queries(query.queries().to_vec());
    let mut zone = zone.lock().unwrap();
    let mut found = false;
    for q in query.queries() {
        let key = (q.name().to_ascii().to_ascii_lowercase(), q.query_type());
        *zone.asked.entry(key.clone()).or_default() += 1;
        if let Some(records) = zone.records.get(&key) {
            found = true;
            for (ttl, data) in records {
                out.add_answer(Record::from_rdata(q.name().clone(), *ttl, data.clone()));
            }
        }
    }
    if !found {
        let name_exists = query.queries().iter().any(|q| {
            let name = q.name().to_ascii().to_ascii_lowercase();
            zone.records.keys().any(|(n, _)| *n == name)
        });
        if !name_exists {
            out.set_response_code(ResponseCode::NXDomain);
        }
    }
    out
}

/// A running process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// The exit code once it ended within `limit`, else `None` (left running).
    fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios")
}

/// A SIPp UAS on `port` that ends (exit 0) after `calls` calls.
fn uas(dir: &Path, port: u16, calls: u32) -> Proc {
    let p = Proc(
        Command::new("sipp")
            .arg("-sf")
            .arg(scenarios().join("call_uas.xml"))
            .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin"])
            .args(["-m", &calls.to_string(), "-trace_err"])
            .arg("-error_file")
            .arg(dir.join(format!("uas-{port}-errors.log")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while UdpSocket::bind(("127.0.0.1", port)).is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    p
}

/// `calls` calls to `user@proxy`, one at a time; SIPp's exit code.
fn call(dir: &Path, proxy: u16, user: &str, calls: u32) -> Option<i32> {
    let port = free_port();
    let mut p = Proc(
        Command::new("sipp")
            .arg("-sf")
            .arg(scenarios().join("call_uac.xml"))
            .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-s", user])
            .args(["-m", &calls.to_string(), "-l", "1", "-r", "20"])
            .args([
                "-timeout",
                "30s",
                "-timeout_error",
                "-nostdin",
                "-trace_err",
            ])
            .arg("-error_file")
            .arg(dir.join(format!("uac-{port}-errors.log")))
            .arg(format!("127.0.0.1:{proxy}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp starts"),
    );
    p.wait_exit(Duration::from_secs(60))
}

struct Lab {
    dir: PathBuf,
    dns: DnsServer,
    port: u16,
}

const CFG: &str = r#"#!KAMAILIO
debug=3
log_stderror=yes
children=2
listen=127.0.0.1:PROXY_PORT
auto_aliases=no
dns_nameserver="127.0.0.1:DNS_PORT"
use_dns_failover=FAILOVER
dns_try_naptr=NAPTR

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "xlog.so"
loadmodule "dispatcher.so"

modparam("tm", "fr_timer", 1000)
modparam("tm", "fr_inv_timer", 10000)
modparam("dispatcher", "list_file", "LIST_FILE")

request_route {
	if (has_totag()) {
		if (loose_route()) {
			t_relay();
			exit;
		}
		if (is_method("ACK")) {
			if (t_check_trans()) {
				t_relay();
			}
			exit;
		}
		sl_send_reply("404", "Not here");
		exit;
	}
	if (is_method("CANCEL")) {
		if (t_check_trans()) {
			t_relay();
		}
		exit;
	}
	if ($rU =~ "^sl") {
		# Stateless: the route waits for the lookup of the next hop's name.
		$du = "sip:" + $rU + ".example.test";
		if (!forward()) {
			sl_send_reply("500", "Not forwarded");
		}
		exit;
	}
	record_route();
	if ($rU == "ds") {
		if (!ds_select_dst("1", "4")) {
			sl_send_reply("500", "No destination");
			exit;
		}
	} else {
		# The user part names the domain to locate (RFC 3263): no port, no transport.
		$du = "sip:" + $rU + ".example.test";
	}
	t_on_failure("FAILED");
	if (!t_relay()) {
		sl_reply_error();
	}
}

failure_route[FAILED] {
	xlog("L_INFO", "failure_route: $T_reply_code for $ci\n");
}
"#;

impl Lab {
    fn new(name: &str) -> Lab {
        let dir =
            std::env::temp_dir().join(format!("ferrosip-test-{}-dns-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        Lab {
            dir,
            dns: DnsServer::start(),
            port: free_port(),
        }
    }

    fn proxy(&self, failover: bool, naptr: bool, dispatcher_list: &str) -> Proxy {
        let list = self.dir.join("dispatcher.list");
        std::fs::write(&list, dispatcher_list).expect("list");
        let cfg = CFG
            .replace("PROXY_PORT", &self.port.to_string())
            .replace("DNS_PORT", &self.dns.port.to_string())
            .replace("FAILOVER", if failover { "1" } else { "0" })
            .replace("NAPTR", if naptr { "yes" } else { "no" })
            .replace("LIST_FILE", &list.display().to_string());
        let path = self.dir.join("proxy.cfg");
        std::fs::write(&path, cfg).expect("cfg");
        Launch::new(&path)
            .log(self.dir.join("proxy.log"))
            .listening_on(self.port)
            .start()
    }

    fn logs(&self) -> String {
        ferrosip_tests::log_tails(&self.dir)
    }
}

#[test]
fn calls_go_to_the_srv_target_of_lowest_priority() {
    if !have_sipp() {
        return;
    }
    let lab = Lab::new("order");
    let (first, second) = (free_port(), free_port());
    lab.dns.srv(
        "_sip._udp.order.example.test",
        300,
        &[
            (20, 0, second, "b.example.test"),
            (10, 0, first, "a.example.test"),
        ],
    );
    lab.dns.a("a.example.test", 300);
    lab.dns.a("b.example.test", 300);
    let _proxy = lab.proxy(false, false, "");
    let mut uas_a = uas(&lab.dir, first, 3);
    let _uas_b = uas(&lab.dir, second, 1);
    assert_eq!(
        call(&lab.dir, lab.port, "order", 3),
        Some(0),
        "{}",
        lab.logs()
    );
    assert_eq!(
        uas_a.wait_exit(Duration::from_secs(10)),
        Some(0),
        "the priority 10 UAS took every call\n{}",
        lab.logs()
    );
    // Three calls, one lookup: the answer was kept for its TTL.
    assert_eq!(
        lab.dns
            .asked("_sip._udp.order.example.test", RecordType::SRV),
        1
    );
}

#[test]
fn a_silent_srv_target_fails_over_to_the_next_one() {
    if !have_sipp() {
        return;
    }
    let lab = Lab::new("failover");
    let (silent, live) = (free_port(), free_port());
    lab.dns.srv(
        "_sip._udp.failover.example.test",
        300,
        &[
            (10, 0, silent, "dead.example.test"),
            (20, 0, live, "live.example.test"),
        ],
    );
    lab.dns.a("dead.example.test", 300);
    lab.dns.a("live.example.test", 300);
    // Holds the silent target's port so that nothing else answers there.
    let watch = UdpSocket::bind(("127.0.0.1", silent)).expect("silent port");
    let proxy = lab.proxy(true, false, "");
    let mut live_uas = uas(&lab.dir, live, 2);
    assert_eq!(
        call(&lab.dir, lab.port, "failover", 2),
        Some(0),
        "{}",
        lab.logs()
    );
    assert_eq!(live_uas.wait_exit(Duration::from_secs(10)), Some(0));
    // The silent target did get each INVITE first (priority 10).
    watch
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = watch.recv(&mut buf).expect("the silent target was tried");
    assert!(buf[..n].starts_with(b"INVITE "));
    let log = proxy.log_text();
    assert!(log.contains("DNS failover"), "{log}");
    assert!(
        !log.contains("failure_route:"),
        "failover happens before failure_route\n{log}"
    );
}

#[test]
fn without_failover_a_silent_first_target_fails_the_call() {
    if !have_sipp() {
        return;
    }
    let lab = Lab::new("nofailover");
    let (silent, live) = (free_port(), free_port());
    lab.dns.srv(
        "_sip._udp.nofo.example.test",
        300,
        &[
            (10, 0, silent, "dead.example.test"),
            (20, 0, live, "live.example.test"),
        ],
    );
    lab.dns.a("dead.example.test", 300);
    lab.dns.a("live.example.test", 300);
    let _watch = UdpSocket::bind(("127.0.0.1", silent)).expect("silent port");
    let proxy = lab.proxy(false, false, "");
    let _live_uas = uas(&lab.dir, live, 1);
    assert_ne!(call(&lab.dir, lab.port, "nofo", 1), Some(0));
    let log = proxy.log_text();
    assert!(log.contains("failure_route: 408"), "{log}");
}

#[test]
fn a_changed_record_is_used_once_its_ttl_ran_out() {
    if !have_sipp() {
        return;
    }
    let lab = Lab::new("ttl");
    let (old, new) = (free_port(), free_port());
    lab.dns.srv(
        "_sip._udp.ttl.example.test",
        1,
        &[(10, 0, old, "t.example.test")],
    );
    lab.dns.a("t.example.test", 1);
    let _proxy = lab.proxy(false, false, "");
    let mut old_uas = uas(&lab.dir, old, 1);
    assert_eq!(
        call(&lab.dir, lab.port, "ttl", 1),
        Some(0),
        "{}",
        lab.logs()
    );
    assert_eq!(old_uas.wait_exit(Duration::from_secs(10)), Some(0));
    lab.dns.srv(
        "_sip._udp.ttl.example.test",
        1,
        &[(10, 0, new, "t.example.test")],
    );
    std::thread::sleep(Duration::from_millis(1500));
    let mut new_uas = uas(&lab.dir, new, 1);
    assert_eq!(
        call(&lab.dir, lab.port, "ttl", 1),
        Some(0),
        "{}",
        lab.logs()
    );
    assert_eq!(new_uas.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(
        lab.dns.asked("_sip._udp.ttl.example.test", RecordType::SRV),
        2
    );
}

#[test]
fn naptr_leads_to_its_srv_name() {
    if !have_sipp() {
        return;
    }
    let lab = Lab::new("naptr");
    let target = free_port();
    lab.dns.set(
        "np.example.test",
        RecordType::NAPTR,
        300,
        vec![
            // TCP comes first by order, but its SRV name has no records: the UDP one is next.
            RData::NAPTR(NAPTR::new(
                10,
                10,
                b"s".to_vec().into(),
                b"SIP+D2T".to_vec().into(),
                Vec::new().into(),
                Name::from_str("_sip._tcp.np.example.test.").unwrap(),
            )),
            RData::NAPTR(NAPTR::new(
                20,
                10,
                b"s".to_vec().into(),
                b"SIP+D2U".to_vec().into(),
                Vec::new().into(),
                Name::from_str("_sip._udp.elsewhere.example.test.").unwrap(),
            )),
        ],
    );
    lab.dns.srv(
        "_sip._udp.elsewhere.example.test",
        300,
        &[(10, 0, target, "n.example.test")],
    );
    lab.dns.a("n.example.test", 300);
    let _proxy = lab.proxy(false, true, "");
    let mut uas_n = uas(&lab.dir, target, 1);
    assert_eq!(call(&lab.dir, lab.port, "np", 1), Some(0), "{}", lab.logs());
    assert_eq!(uas_n.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(lab.dns.asked("np.example.test", RecordType::NAPTR), 1);
}

#[test]
fn a_dispatcher_destination_given_by_name_is_resolved() {
    if !have_sipp() {
        return;
    }
    let lab = Lab::new("dispatcher");
    let target = free_port();
    lab.dns.a("pbx.example.test", 300);
    let _proxy = lab.proxy(
        false,
        false,
        &format!("1 sip:pbx.example.test:{target} 0 0\n"),
    );
    let mut pbx = uas(&lab.dir, target, 2);
    assert_eq!(call(&lab.dir, lab.port, "ds", 2), Some(0), "{}", lab.logs());
    assert_eq!(pbx.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(lab.dns.asked("pbx.example.test", RecordType::A) >= 1);
}

/// Reads one datagram within `limit` as text.
fn recv_text(socket: &UdpSocket, limit: Duration) -> Option<(String, std::net::SocketAddr)> {
    socket.set_read_timeout(Some(limit)).expect("timeout");
    let mut buf = [0u8; 8192];
    let (n, from) = socket.recv_from(&mut buf).ok()?;
    Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from))
}

/// An OPTIONS to `user` through the proxy, from a client whose Via names it by host name.
fn options_from_named_client(client: &UdpSocket, proxy: u16, user: &str, branch: &str) {
    let port = client.local_addr().unwrap().port();
    let msg = format!(
        "OPTIONS sip:{user}@127.0.0.1:{proxy} SIP/2.0\r\n\
         Via: SIP/2.0/UDP client.example.test:{port};branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:edge@example.test>;tag=f{branch}\r\n\
         To: <sip:{user}@example.test>\r\n\
         Call-ID: {branch}@client.example.test\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    );
    client
        .send_to(msg.as_bytes(), ("127.0.0.1", proxy))
        .expect("send");
}

#[test]
fn a_stateless_forward_waits_for_the_lookup_of_its_next_hop() {
    let lab = Lab::new("stateless");
    let uas = UdpSocket::bind("127.0.0.1:0").expect("uas");
    let uas_port = uas.local_addr().unwrap().port();
    lab.dns.srv(
        "_sip._udp.sl.example.test",
        300,
        &[(10, 0, uas_port, "s.example.test")],
    );
    lab.dns.a("s.example.test", 300);
    lab.dns.a("client.example.test", 300);
    let _proxy = lab.proxy(false, false, "");
    let client = UdpSocket::bind("127.0.0.1:0").expect("client");

    // Sent once, no retransmission: it reaches the UAS only if forward() waited.
    options_from_named_client(&client, lab.port, "sl", "stateless1");
    let (request, from) = recv_text(&uas, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the request was not forwarded\n{}", lab.logs()));
    assert!(request.starts_with("OPTIONS sip:sl@"), "{request}");
    assert_eq!(from.port(), lab.port);
    assert_eq!(lab.dns.asked("s.example.test", RecordType::A), 1);

    // The reply, with the client's Via as it was sent (its `received` taken off): the
    // proxy must look client.example.test up to send it.
    let mut reply = String::from("SIP/2.0 200 OK\r\n");
    for line in request.split("\r\n").skip(1) {
        if line.is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("via:") {
            reply.push_str(&line.replace(";received=127.0.0.1", ""));
            reply.push_str("\r\n");
        } else if ["from:", "to:", "call-id:", "cseq:"]
            .iter()
            .any(|h| lower.starts_with(h))
        {
            reply.push_str(line);
            if lower.starts_with("to:") {
                reply.push_str(";tag=uas1");
            }
            reply.push_str("\r\n");
        }
    }
    reply.push_str("Content-Length: 0\r\n\r\n");
    assert!(reply.contains("client.example.test"), "{reply}");
    uas.send_to(reply.as_bytes(), from).expect("reply");
    let (answer, _) = recv_text(&client, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("the reply was not forwarded\n{}", lab.logs()));
    assert!(answer.starts_with("SIP/2.0 200 OK"), "{answer}");
    assert!(lab.dns.asked("client.example.test", RecordType::A) >= 1);

    // A name with no records: forward() fails once the answer says so.
    options_from_named_client(&client, lab.port, "slnx", "stateless2");
    let (answer, _) = recv_text(&client, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no answer for an unknown name\n{}", lab.logs()));
    assert!(answer.starts_with("SIP/2.0 500 Not forwarded"), "{answer}");
    assert!(recv_text(&uas, Duration::from_millis(300)).is_none());
}
