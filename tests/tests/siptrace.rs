//! siptrace through the real binary: SIPp calls mirrored (`trace_mode=1`) as HEP3 packets
//! to a collector on a loopback UDP socket, decoded here by a decoder written from the
//! HEP3 specification (not the module's encoder), and into a pcap file read back with the
//! `pcap-file` crate; then `sip_trace()` with tracing switched on and off through the RPC
//! `siptrace.status`, and with a destination given as argument.

use ferrosip_tests::{ferrosip_bin, free_port, have_sipp, log_tails, traced_sipp, Launch};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrosip-siptrace-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    dir
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(name)
}

/// One HEP3 packet, decoded: generic chunks by type (vendor 0 only).
#[derive(Debug)]
struct Hep {
    chunks: HashMap<u16, Vec<u8>>,
}

impl Hep {
    /// Decodes a packet; panics on anything the specification does not allow.
    fn decode(p: &[u8]) -> Hep {
        assert!(p.len() >= 6 && &p[..4] == b"HEP3", "not HEP3: {p:?}");
        let total = u16::from_be_bytes([p[4], p[5]]) as usize;
        assert_eq!(total, p.len(), "the length field counts the whole packet");
        let mut chunks = HashMap::new();
        let mut at = 6;
        while at < total {
            assert!(at + 6 <= total, "a truncated chunk header");
            let vendor = u16::from_be_bytes([p[at], p[at + 1]]);
            let kind = u16::from_be_bytes([p[at + 2], p[at + 3]]);
            let len = u16::from_be_bytes([p[at + 4], p[at + 5]]) as usize;
            assert!(len >= 6 && at + len <= total, "chunk {kind} length {len}");
            assert_eq!(vendor, 0, "generic chunks only");
            chunks.insert(kind, p[at + 6..at + len].to_vec());
            at += len;
        }
        Hep { chunks }
    }

    fn u8(&self, kind: u16) -> u8 {
        self.chunks[&kind][0]
    }

    fn u16(&self, kind: u16) -> u16 {
        let c = &self.chunks[&kind];
        assert_eq!(c.len(), 2, "chunk {kind}");
        u16::from_be_bytes([c[0], c[1]])
    }

    fn u32(&self, kind: u16) -> u32 {
        let c = &self.chunks[&kind];
        assert_eq!(c.len(), 4, "chunk {kind}");
        u32::from_be_bytes([c[0], c[1], c[2], c[3]])
    }

    fn ipv4(&self, kind: u16) -> Ipv4Addr {
        let c = &self.chunks[&kind];
        assert_eq!(c.len(), 4, "chunk {kind}");
        Ipv4Addr::new(c[0], c[1], c[2], c[3])
    }

    fn source(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ipv4(3)), self.u16(7))
    }

    fn destination(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.ipv4(4)), self.u16(8))
    }

    fn payload(&self) -> String {
        String::from_utf8_lossy(&self.chunks[&15]).into_owned()
    }
}

/// Every packet the collector gets until it has been quiet for `quiet`.
fn collect(sock: &UdpSocket, quiet: Duration) -> Vec<Vec<u8>> {
    sock.set_read_timeout(Some(quiet)).expect("timeout");
    let mut out = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while let Ok(n) = sock.recv(&mut buf) {
        out.push(buf[..n].to_vec());
    }
    out
}

fn now_secs() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

#[test]
fn trace_mode_mirrors_sipp_calls_as_hep3_and_into_a_pcap_file() {
    if !have_sipp() {
        return;
    }
    let dir = test_dir("mirror");
    let collector = UdpSocket::bind("127.0.0.1:0").expect("collector");
    let hep_port = collector.local_addr().unwrap().port();
    let port = free_port();
    let sipp_port = free_port();
    let pcap_path = dir.join("trace.pcap");
    let cfg = format!(
        r#"listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
children=2
loadmodule "sl.so"
loadmodule "siptrace.so"
modparam("siptrace", "trace_on", 1)
modparam("siptrace", "trace_mode", 1)
modparam("siptrace", "hep_mode_on", 1)
modparam("siptrace", "duplicate_uri", "sip:127.0.0.1:{hep_port}")
modparam("siptrace", "hep_capture_id", 4242)
modparam("siptrace", "trace_pcap_file", "{pcap}")
request_route {{
    sl_send_reply("200", "OK");
}}
"#,
        pcap = pcap_path.display()
    );
    std::fs::write(dir.join("proxy.cfg"), cfg).expect("cfg");
    let proxy = Launch::new(dir.join("proxy.cfg"))
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .start();
    let before = now_secs();
    let status = traced_sipp(
        &dir,
        "uac",
        &scenario("options_uac.xml"),
        &format!("127.0.0.1:{port}"),
    )
    .args([
        "-p",
        &sipp_port.to_string(),
        "-m",
        "3",
        "-r",
        "10",
        "-timeout",
        "10",
    ])
    .status()
    .expect("sipp runs");
    assert!(status.success(), "sipp: {status}\n{}", log_tails(&dir));

    let packets = collect(&collector, Duration::from_millis(700));
    let heps: Vec<Hep> = packets.iter().map(|p| Hep::decode(p)).collect();
    assert_eq!(heps.len(), 6, "3 requests in, 3 replies out: {heps:#?}");
    let proxy_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let sipp_addr: SocketAddr = format!("127.0.0.1:{sipp_port}").parse().unwrap();
    let mut requests = 0;
    let mut replies = 0;
    for h in &heps {
        assert_eq!(h.u8(1), 2, "IPv4");
        assert_eq!(h.u8(2), 17, "UDP");
        assert_eq!(h.u8(11), 1, "SIP");
        assert_eq!(h.u32(12), 4242, "capture id");
        let t = h.u32(9);
        assert!(t + 1 >= before && t <= now_secs() + 1, "timestamp {t}");
        assert!(h.u32(10) < 1_000_000, "microseconds");
        let payload = h.payload();
        if payload.starts_with("OPTIONS ") {
            requests += 1;
            assert_eq!(h.source(), sipp_addr);
            assert_eq!(h.destination(), proxy_addr);
        } else {
            assert!(payload.starts_with("SIP/2.0 200 OK\r\n"), "{payload}");
            replies += 1;
            assert_eq!(h.source(), proxy_addr);
            assert_eq!(h.destination(), sipp_addr);
        }
        assert!(payload.contains("CSeq: 1 OPTIONS"), "{payload}");
    }
    assert_eq!((requests, replies), (3, 3));

    // The same six messages in the pcap file, as raw IPv4 + UDP packets.
    let file = std::fs::File::open(&pcap_path).expect("pcap file");
    let mut reader = pcap_file::pcap::PcapReader::new(file).expect("a pcap file");
    assert_eq!(reader.header().datalink, pcap_file::DataLink::RAW);
    let mut seen = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet.expect("a pcap record");
        let d = &packet.data;
        assert_eq!(d[0] >> 4, 4, "IPv4");
        assert_eq!(d[9], 17, "UDP");
        assert_eq!(
            u16::from_be_bytes([d[2], d[3]]) as usize,
            d.len(),
            "IP total length"
        );
        let src = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(d[12], d[13], d[14], d[15])),
            u16::from_be_bytes([d[20], d[21]]),
        );
        let dst = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(d[16], d[17], d[18], d[19])),
            u16::from_be_bytes([d[22], d[23]]),
        );
        assert_eq!(u16::from_be_bytes([d[24], d[25]]) as usize, d.len() - 20);
        let payload = String::from_utf8_lossy(&d[28..]).into_owned();
        seen.push((src, dst, payload));
    }
    assert_eq!(seen.len(), 6, "{seen:#?}");
    for (src, dst, payload) in &seen {
        if payload.starts_with("OPTIONS ") {
            assert_eq!((*src, *dst), (sipp_addr, proxy_addr));
        } else {
            assert!(payload.starts_with("SIP/2.0 200 OK"), "{payload}");
            assert_eq!((*src, *dst), (proxy_addr, sipp_addr));
        }
    }
    drop(proxy);
}

fn options(call_id: &str, port: u16, local: u16) -> Vec<u8> {
    format!(
        "OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:t@127.0.0.1>;tag=1\r\n\
         To: <sip:ping@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Sends an OPTIONS and returns the reply's status line.
fn ping(port: u16, call_id: &str) -> String {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let local = sock.local_addr().unwrap().port();
    sock.send_to(&options(call_id, port, local), ("127.0.0.1", port))
        .expect("send");
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a reply");
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

fn rpc(dir: &Path, args: &[&str]) -> String {
    let sock = format!("unix:{}/ctl", dir.display());
    let out = Command::new(ferrosip_bin())
        .args(["ctl", "-s", &sock])
        .args(args)
        .output()
        .expect("ferrosip ctl runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn sip_trace_follows_the_rpc_switch_and_its_destination_argument() {
    let dir = test_dir("function");
    let collector = UdpSocket::bind("127.0.0.1:0").expect("collector");
    let other = UdpSocket::bind("127.0.0.1:0").expect("second collector");
    let hep_port = collector.local_addr().unwrap().port();
    let other_port = other.local_addr().unwrap().port();
    let port = free_port();
    let cfg = format!(
        r#"listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
children=1
loadmodule "sl.so"
loadmodule "ctl.so"
loadmodule "siptrace.so"
modparam("ctl", "binrpc", "unix:{dir}/ctl")
modparam("siptrace", "hep_mode_on", 1)
modparam("siptrace", "duplicate_uri", "sip:127.0.0.1:{hep_port}")
request_route {{
    if ($ci =~ "^other") {{
        sip_trace("sip:127.0.0.1:{other_port}");
    }} else if (!sip_trace()) {{
        sl_send_reply("200", "Untraced");
        exit;
    }}
    sl_send_reply("200", "Traced");
}}
"#,
        dir = dir.display()
    );
    std::fs::write(dir.join("proxy.cfg"), cfg).expect("cfg");
    let _proxy = Launch::new(dir.join("proxy.cfg"))
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .start();

    // trace_on defaults to 0: nothing is copied.
    assert!(rpc(&dir, &["siptrace.status", "check"]).contains("disabled"));
    assert_eq!(ping(port, "off-1"), "SIP/2.0 200 Untraced");
    assert!(collect(&collector, Duration::from_millis(300)).is_empty());

    assert!(rpc(&dir, &["siptrace.status", "on"]).contains("enabled"));
    assert_eq!(ping(port, "on-1"), "SIP/2.0 200 Traced");
    let packets = collect(&collector, Duration::from_millis(500));
    assert_eq!(packets.len(), 1, "only the request: no trace_mode");
    let h = Hep::decode(&packets[0]);
    assert!(h.payload().contains("Call-ID: on-1\r\n"), "{}", h.payload());
    assert_eq!(h.u32(12), 1, "the default capture id");
    assert_eq!(h.destination().port(), port);

    assert_eq!(ping(port, "other-1"), "SIP/2.0 200 Traced");
    let packets = collect(&other, Duration::from_millis(500));
    assert_eq!(packets.len(), 1);
    assert!(Hep::decode(&packets[0])
        .payload()
        .contains("Call-ID: other-1\r\n"));
    assert!(collect(&collector, Duration::from_millis(200)).is_empty());

    assert!(rpc(&dir, &["siptrace.status", "off"]).contains("disabled"));
    assert_eq!(ping(port, "off-2"), "SIP/2.0 200 Untraced");
}

#[test]
fn database_tracing_is_refused_with_the_reason() {
    let dir = test_dir("db");
    let cfg = "loadmodule \"siptrace.so\"\nmodparam(\"siptrace\", \"trace_to_database\", 1)\nrequest_route { exit; }\n";
    std::fs::write(dir.join("proxy.cfg"), cfg).expect("cfg");
    let out = Command::new(ferrosip_bin())
        .args(["check", "-f"])
        .arg(dir.join("proxy.cfg"))
        .output()
        .expect("ferrosip check runs");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("trace_to_database") && text.contains("not built"),
        "{text}"
    );
}
