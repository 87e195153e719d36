//! `max_branches`: 500 contacts registered for one AoR, one INVITE: at most
//! `max_branches` (12 by default) branches leave, and the proxy logs the rest as not sent.

use std::collections::HashSet;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use ferrosip_tests::{free_port, recv_text, Launch};

const CONTACTS: usize = 500;
const PER_REGISTER: usize = 50;

fn cfg(port: u16, max_branches: Option<u32>) -> String {
    let limit = max_branches.map_or(String::new(), |n| format!("max_branches={n}\n"));
    format!(
        r#"listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
{limit}loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
modparam("usrloc", "db_mode", 0)
request_route {{
    if ($rm == "REGISTER") {{
        save("location");
        exit;
    }}
    if (!lookup("location")) {{
        sl_send_reply("404", "Not Found");
        exit;
    }}
    t_relay();
}}
"#
    )
}

fn register(port: u16, client: &UdpSocket, uas: u16, batch: usize) {
    let contacts: String = (0..PER_REGISTER)
        .map(|i| {
            let n = batch * PER_REGISTER + i;
            format!("Contact: <sip:alice-{n}@127.0.0.1:{uas}>;expires=600\r\n")
        })
        .collect();
    let local = client.local_addr().expect("addr").port();
    let msg = format!(
        "REGISTER sip:127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bKreg{batch};rport\r\n\
         From: <sip:alice@127.0.0.1>;tag=r{batch}\r\nTo: <sip:alice@127.0.0.1>\r\n\
         Call-ID: reg-max-branches\r\nCSeq: {} REGISTER\r\nMax-Forwards: 70\r\n{contacts}\
         Content-Length: 0\r\n\r\n",
        batch + 1
    );
    client
        .send_to(msg.as_bytes(), ("127.0.0.1", port))
        .expect("send");
    let reply = recv_text(client).expect("REGISTER answered");
    assert!(reply.starts_with("SIP/2.0 200"), "REGISTER: {reply}");
}

/// Registers 500 contacts on the UAS socket, sends one INVITE and returns the number of
/// distinct branches (R-URIs) that reached the UAS, with the proxy's log.
fn branches_for_one_invite(max_branches: Option<u32>) -> (usize, String) {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!(
        "ferrosip-test-{}-max-branches-{port}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("proxy.cfg"), cfg(port, max_branches)).expect("cfg");
    let proxy = Launch::new(dir.join("proxy.cfg"))
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .start();
    let uas = UdpSocket::bind("127.0.0.1:0").expect("uas");
    let uas_port = uas.local_addr().expect("addr").port();
    let client = UdpSocket::bind("127.0.0.1:0").expect("client");
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    for batch in 0..CONTACTS / PER_REGISTER {
        register(port, &client, uas_port, batch);
    }
    let local = client.local_addr().expect("addr").port();
    let invite = format!(
        "INVITE sip:alice@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bKinv;rport\r\n\
         From: <sip:bob@127.0.0.1>;tag=b\r\nTo: <sip:alice@127.0.0.1>\r\n\
         Call-ID: inv-max-branches\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
         Contact: <sip:bob@127.0.0.1:{local}>\r\nContent-Length: 0\r\n\r\n"
    );
    client
        .send_to(invite.as_bytes(), ("127.0.0.1", port))
        .expect("send");
    uas.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut uris = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Some(req) = recv_text(&uas) {
            if let Some(line) = req.lines().next().filter(|l| l.starts_with("INVITE ")) {
                uris.insert(line.to_string());
            }
        }
    }
    (uris.len(), proxy.stop())
}

#[test]
fn five_hundred_contacts_fork_into_at_most_max_branches() {
    let (default_limit, log) = branches_for_one_invite(None);
    assert_eq!(
        default_limit, 12,
        "branches with the default max_branches:\n{log}"
    );
    assert!(
        log.contains("488 branches not sent: max_branches reached"),
        "{log}"
    );
    let (set_limit, log) = branches_for_one_invite(Some(3));
    assert_eq!(set_limit, 3, "branches with max_branches=3:\n{log}");
}
