//! The routes a transaction runs, against the real binary with plain sockets as peers:
//! `branch_route` sees each branch (its R-URI, `$T_branch_idx`) and may drop it or edit
//! what is sent; `onreply_route[X]` sees each reply and may drop a provisional one.

use ferrosip_tests::{free_port, recv_text, start_proxy, uas_reply};
use std::net::UdpSocket;
use std::time::Duration;

#[test]
fn branch_route_drops_and_edits_branches_and_onreply_route_drops_provisionals() {
    let port = free_port();
    let uas1 = UdpSocket::bind("127.0.0.1:0").expect("uas1");
    let uas2 = UdpSocket::bind("127.0.0.1:0").expect("uas2");
    for s in [&uas1, &uas2] {
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
    }
    let (p1, p2) = (
        uas1.local_addr().expect("addr").port(),
        uas2.local_addr().expect("addr").port(),
    );
    let cfg = format!(
        r#"#!KAMAILIO
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
loadmodule "tm.so"
loadmodule "corex.so"
loadmodule "textops.so"
request_route {{
    if (is_method("ACK")) {{ t_relay(); exit; }}
    t_on_branch("PER_BRANCH");
    t_on_reply("REPLIES");
    $ru = "sip:keep@127.0.0.1:{p1}";
    append_branch("sip:drop@127.0.0.1:{p2}");
    t_relay();
}}
branch_route[PER_BRANCH] {{
    if ($rU == "drop") {{
        drop;
    }}
    append_hf("X-Branch: $T_branch_idx\r\n");
}}
onreply_route[REPLIES] {{
    if ($rs == 180) {{
        drop;
    }}
}}
"#
    );
    let _proxy = start_proxy("tm", &cfg, port);
    let uac = UdpSocket::bind("127.0.0.1:0").expect("uac");
    uac.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let uac_port = uac.local_addr().expect("addr").port();
    let invite = format!(
        "INVITE sip:someone@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{uac_port};branch=z9hG4bKtmr1;rport\r\nMax-Forwards: 70\r\nFrom: <sip:a@127.0.0.1>;tag=a\r\nTo: <sip:someone@127.0.0.1>\r\nCall-ID: tm-routes@t\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    uac.send_to(invite.as_bytes(), ("127.0.0.1", port))
        .expect("send");

    let got = recv_text(&uas1).expect("the kept branch reaches UAS1");
    assert!(
        got.starts_with(&format!("INVITE sip:keep@127.0.0.1:{p1} ")),
        "{got}"
    );
    assert!(
        got.contains("X-Branch: 0\r\n"),
        "branch_route edited the branch:\n{got}"
    );
    assert!(
        recv_text(&uas2).is_none(),
        "the dropped branch was not sent"
    );

    uas1.send_to(
        uas_reply(&got, "180 Ringing", None).as_bytes(),
        ("127.0.0.1", port),
    )
    .expect("180");
    uas1.send_to(
        uas_reply(&got, "200 OK", None).as_bytes(),
        ("127.0.0.1", port),
    )
    .expect("200");
    let mut statuses = Vec::new();
    while let Some(m) = recv_text(&uac) {
        let status = m.lines().next().unwrap_or_default().to_string();
        let done = status.starts_with("SIP/2.0 200");
        statuses.push(status);
        if done {
            break;
        }
    }
    assert_eq!(
        statuses,
        ["SIP/2.0 100 Trying", "SIP/2.0 200 OK"],
        "the caller sees the proxy's 100 and the 200; onreply_route dropped the 180"
    );
}
