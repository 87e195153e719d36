//! `onsend_route` (and Lua's `ksr_onsend_route`) against the real binary with plain UDP
//! sockets as peers: it runs before every request leaves, statelessly forwarded or as a
//! transaction branch, with the destination and the bytes in `$snd(...)`/`$sndto(...)`,
//! the socket in `$sndfrom(...)` and the `to_ip`/`snd_*` keywords; `drop` there stops the
//! send: no packet reaches the peer, `forward()` fails, a branch fails as on a send error
//! (its transaction's other branches go on, failure_route runs when they fail; a request
//! whose only branch was dropped makes `t_relay()` fail, and the script's error reply
//! answers the caller).

use ferrosip_tests::{free_port, recv_text, uas_reply, Launch, Proxy};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::Duration;

fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrosip-onsend-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("test dir");
    dir
}

fn start(name: &str, port: u16, cfg: &str, lua: Option<&str>) -> Proxy {
    let dir = test_dir(name);
    if let Some(lua) = lua {
        std::fs::write(dir.join("routes.lua"), lua).expect("write lua");
    }
    std::fs::write(dir.join("proxy.cfg"), cfg).expect("write cfg");
    Launch::new(dir.join("proxy.cfg"))
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .start()
}

/// A UDP peer on `ip` (127.0.0.2 stands for the blocked range).
fn peer(ip: &str) -> (UdpSocket, u16) {
    let s = UdpSocket::bind((ip, 0)).expect("bind peer");
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .expect("timeout");
    let p = s.local_addr().expect("addr").port();
    (s, p)
}

fn request(method: &str, ruri: &str, call_id: &str, local: u16, extra: &str) -> Vec<u8> {
    format!(
        "{method} {ruri} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-{call_id};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:a@127.0.0.1>;tag=a-{call_id}\r\n\
         To: <sip:b@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 {method}\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// The status lines `sock` receives until a final one (or silence).
fn finals(sock: &UdpSocket) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = recv_text(sock) {
        let status = m.lines().next().unwrap_or_default().to_string();
        let code: u16 = status
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        out.push(status);
        if code >= 200 {
            break;
        }
    }
    out
}

#[test]
fn onsend_route_sees_each_send_and_its_drop_blocks_it() {
    let port = free_port();
    let (ok_peer, ok_port) = peer("127.0.0.1");
    let (blocked_peer, blocked_port) = peer("127.0.0.2");
    let cfg = format!(
        r#"#!KAMAILIO
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
onsend_route_reply=yes
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "xlog.so"
loadmodule "textops.so"
loadmodule "corex.so"
request_route {{
    if (is_method("ACK")) {{ t_relay(); exit; }}
    setflag(5);
    $var(seen) = "yes";
    if ($hdr(X-Mode) == "stateless") {{
        if (!forward()) {{
            sl_send_reply("403", "Not Forwarded");
        }}
        exit;
    }}
    if ($hdr(X-Fork) == "yes") {{
        append_branch("sip:blocked@127.0.0.2:{blocked_port}");
    }}
    t_on_failure("FAILED");
    if (!t_relay()) {{
        sl_reply_error();
    }}
}}
failure_route[FAILED] {{
    xlog("L_INFO", "failure_route ran: $T_reply_code\n");
}}
onsend_route {{
    xlog("L_INFO", "onsend $rm $ci to $snd(ip):$snd(port) proto=$snd(proto) af=$snd(af) from=$sndfrom(ip):$sndfrom(port) flag5=$mf var=$var(seen)\n");
    if (to_port != $snd(port) || msg:len != $snd(len) || snd_port != {port} || snd_proto != UDP || snd_af != INET) {{
        xlog("L_ERR", "onsend keywords disagree\n");
    }}
    if (!($snd(buf) =~ "^([A-Z]+ sip:|SIP/2.0 [0-9]+ )" && search("CSeq: 1 "))) {{
        xlog("L_ERR", "onsend buffer or message unexpected\n");
    }}
    if (to_ip == "127.0.0.2" && isflagset(5)) {{
        drop;
    }}
    if ($rs == 180) {{
        drop;
    }}
}}
"#
    );
    let proxy = start("native", port, &cfg, None);
    let (uac, uac_port) = peer("127.0.0.1");

    // Stateless, allowed: it arrives, and onsend_route saw where it went.
    uac.send_to(
        &request(
            "MESSAGE",
            &format!("sip:ok@127.0.0.1:{ok_port}"),
            "sl-ok",
            uac_port,
            "X-Mode: stateless\r\n",
        ),
        ("127.0.0.1", port),
    )
    .expect("send");
    let got = recv_text(&ok_peer).expect("the allowed stateless MESSAGE arrives");
    assert!(got.starts_with("MESSAGE sip:ok@127.0.0.1:"), "{got}");
    proxy.wait_log(
        &format!("onsend MESSAGE sl-ok to 127.0.0.1:{ok_port} proto=1 af=2 from=127.0.0.1:{port} flag5=32 var=yes"),
        1,
    );
    // Its reply is relayed statelessly, past onsend_route too (onsend_route_reply).
    ok_peer
        .send_to(
            uas_reply(&got, "200 OK", None).as_bytes(),
            ("127.0.0.1", port),
        )
        .expect("200");
    assert_eq!(finals(&uac), ["SIP/2.0 200 OK"]);
    proxy.wait_log(&format!("onsend MESSAGE sl-ok to 127.0.0.1:{uac_port}"), 1);

    // Stateless, blocked: nothing reaches the peer and forward() fails.
    uac.send_to(
        &request(
            "MESSAGE",
            &format!("sip:no@127.0.0.2:{blocked_port}"),
            "sl-blocked",
            uac_port,
            "X-Mode: stateless\r\n",
        ),
        ("127.0.0.1", port),
    )
    .expect("send");
    assert_eq!(finals(&uac), ["SIP/2.0 403 Not Forwarded"]);
    assert!(
        recv_text(&blocked_peer).is_none(),
        "a request dropped in onsend_route must not be sent"
    );
    proxy.wait_log(
        &format!("onsend MESSAGE sl-blocked to 127.0.0.2:{blocked_port}"),
        1,
    );

    // Stateful, its only branch blocked: t_relay() fails, the caller gets the error reply.
    uac.send_to(
        &request(
            "INVITE",
            &format!("sip:no@127.0.0.2:{blocked_port}"),
            "tm-blocked",
            uac_port,
            "",
        ),
        ("127.0.0.1", port),
    )
    .expect("send");
    let statuses = finals(&uac);
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("SIP/2.0 500 Server Internal Error"),
        "{statuses:?}"
    );
    assert!(
        recv_text(&blocked_peer).is_none(),
        "the blocked branch was sent"
    );

    // Stateful, forked: the blocked branch fails, the other goes; when that one fails
    // too, failure_route runs and the caller gets its reply.
    uac.send_to(
        &request(
            "INVITE",
            &format!("sip:ok@127.0.0.1:{ok_port}"),
            "tm-fork",
            uac_port,
            "X-Fork: yes\r\n",
        ),
        ("127.0.0.1", port),
    )
    .expect("send");
    let inv = recv_text(&ok_peer).expect("the allowed branch arrives");
    assert!(inv.starts_with("INVITE sip:ok@127.0.0.1:"), "{inv}");
    assert!(
        recv_text(&blocked_peer).is_none(),
        "the blocked branch was sent"
    );
    // The 180 it relays is dropped in onsend_route (onsend_route_reply): the caller
    // sees tm's own 100 and the final. The 486 is sent once the 180's drop is logged:
    // two datagrams sent back to back may be taken by two workers, and a 180 handled
    // after the 486 is discarded by tm (a provisional after the final) before any send.
    let send_reply = |status: &str| {
        ok_peer
            .send_to(
                uas_reply(&inv, status, None).as_bytes(),
                ("127.0.0.1", port),
            )
            .expect("reply");
    };
    send_reply("180 Ringing");
    proxy.wait_log("message dropped by onsend_route", 4);
    send_reply("486 Busy Here");
    let statuses = finals(&uac);
    assert_eq!(
        statuses,
        ["SIP/2.0 100 Trying", "SIP/2.0 486 Busy Here"],
        "the 180 dropped in onsend_route"
    );
    proxy.wait_log("failure_route ran: 486", 1);
    // The proxy's ACK of the 486 is hop by hop: no onsend there (a retransmission-like
    // message of the transaction layer, as in Kamailio).
    let log = proxy.log_text();
    assert!(
        log.contains(&format!("onsend INVITE tm-fork to 127.0.0.1:{ok_port}")),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "onsend INVITE tm-fork to 127.0.0.2:{blocked_port}"
        )),
        "{log}"
    );
    // Two stateless and one branch request, one relayed reply.
    assert_eq!(
        log.matches("message dropped by onsend_route").count(),
        4,
        "{log}"
    );
    assert!(!log.contains("disagree"), "{log}");
    assert!(!log.contains("unexpected"), "{log}");
}

#[test]
fn ksr_onsend_route_reads_snd_and_drops_with_ksr_x_drop() {
    let port = free_port();
    let (ok_peer, ok_port) = peer("127.0.0.1");
    let (blocked_peer, blocked_port) = peer("127.0.0.2");
    let cfg = format!(
        r#"listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
loadmodule "sl.so"
loadmodule "textops.so"
loadmodule "app_lua.so"
modparam("app_lua", "load", "routes.lua")
cfgengine "lua"
"#
    );
    let lua = r#"
function ksr_request_route()
    if KSR.forward() < 0 then
        KSR.sl.sl_send_reply(403, "Not Forwarded")
    end
end

function ksr_onsend_route()
    local ip = KSR.pv.get("$snd(ip)")
    KSR.info("lua onsend " .. KSR.pv.get("$ci") .. " to " .. ip .. ":" .. KSR.pv.get("$sndto(port)") .. " len " .. KSR.pv.get("$snd(len)") .. "\n")
    if ip == "127.0.0.2" then
        KSR.x.drop()
    end
    if KSR.pv.get("$ci") == "lua-edit" then
        KSR.textops.append_hf("X-Late: 1\r\n")
    end
end
"#;
    let proxy = start("lua", port, &cfg, Some(lua));
    let (uac, uac_port) = peer("127.0.0.1");

    uac.send_to(
        &request(
            "MESSAGE",
            &format!("sip:ok@127.0.0.1:{ok_port}"),
            "lua-ok",
            uac_port,
            "",
        ),
        ("127.0.0.1", port),
    )
    .expect("send");
    let got = recv_text(&ok_peer).expect("the allowed MESSAGE arrives");
    proxy.wait_log(
        &format!("lua onsend lua-ok to 127.0.0.1:{ok_port} len {}", got.len()),
        1,
    );

    uac.send_to(
        &request(
            "MESSAGE",
            &format!("sip:no@127.0.0.2:{blocked_port}"),
            "lua-blocked",
            uac_port,
            "",
        ),
        ("127.0.0.1", port),
    )
    .expect("send");
    assert_eq!(finals(&uac), ["SIP/2.0 403 Not Forwarded"]);
    assert!(
        recv_text(&blocked_peer).is_none(),
        "KSR.x.drop() in ksr_onsend_route must stop the send"
    );

    // A function that would edit the message is refused there: the call fails with its
    // reason logged, and the message goes unchanged.
    uac.send_to(
        &request(
            "MESSAGE",
            &format!("sip:ok@127.0.0.1:{ok_port}"),
            "lua-edit",
            uac_port,
            "",
        ),
        ("127.0.0.1", port),
    )
    .expect("send");
    let got = recv_text(&ok_peer).expect("the MESSAGE still goes");
    assert!(!got.contains("X-Late"), "{got}");
    proxy.wait_log("append_hf is not allowed in onsend_route", 1);
}
