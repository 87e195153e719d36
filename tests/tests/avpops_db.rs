//! avpops' database functions through the running proxy, on Kamailio's `usr_preferences`
//! table (made by `ferrosip db init --modules avpops`) in SQLite, MariaDB and PostgreSQL:
//! a caller's AVPs stored with `avp_db_store`, loaded back by name and all at once with
//! `avp_db_load` (numbers stay numbers), by uuid and by domain, read with
//! `avp_db_query`, and gone after `avp_db_delete`. Each answer's reason phrase carries
//! what the route saw.

use ferrosip_tests::db::{Backend, TestDb};
use ferrosip_tests::{free_port, Launch};
use std::net::UdpSocket;
use std::time::Duration;

fn config(port: u16, url: &str) -> String {
    format!(
        r#"#!KAMAILIO
children=2
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
loadmodule "sl.so"
loadmodule "textops.so"
loadmodule "avpops.so"
modparam("avpops", "db_url", "{url}")
modparam("avpops", "avp_table", "usr_preferences")
request_route {{
    $var(op) = $hdr(X-Op);
    if ($var(op) == "store") {{
        $avp(fwd) = "sip:voicemail@example.com";
        $avp(limit) = 5;
        $avp(limit) = 7;
        if (avp_db_store("$fu", "$avp(fwd)") && avp_db_store("$fu", "$avp(limit)")) {{
            sl_send_reply("200", "stored");
        }} else {{
            sl_send_reply("500", "not stored");
        }}
        exit;
    }}
    if ($var(op) == "load-one") {{
        if (!avp_db_load("$fu", "$avp(limit)")) {{
            sl_send_reply("404", "none");
            exit;
        }}
        $var(sum) = $(avp(limit)[0]) + $(avp(limit)[1]);
        sl_send_reply("200", "limit $(avp(limit)[*]) sum $var(sum) fwd $avp(fwd)");
        exit;
    }}
    if ($var(op) == "load-all") {{
        if (!avp_db_load("$fu/username", "*")) {{
            sl_send_reply("404", "none");
            exit;
        }}
        sl_send_reply("200", "fwd $avp(fwd) limit $avp(limit)");
        exit;
    }}
    if ($var(op) == "uuid") {{
        avp_db_query("INSERT INTO usr_preferences (uuid, username, domain, attribute, type, value) VALUES ('u-77', '', 'example.org', 'tier', 0, 'gold')");
        if (avp_db_load("$hdr(X-Uuid)", "$avp(tier)") && avp_db_load("sip:x@example.org/domain", "$avp(tier)")) {{
            sl_send_reply("200", "tier $(avp(tier)[*])");
        }} else {{
            sl_send_reply("404", "no tier");
        }}
        exit;
    }}
    if ($var(op) == "query") {{
        if (avp_db_query("SELECT value, type FROM usr_preferences WHERE attribute = 'fwd' AND username = '$fU'", "$avp(v);$avp(t)")) {{
            sl_send_reply("200", "query $avp(v) type $avp(t)");
        }} else {{
            sl_send_reply("404", "no rows");
        }}
        exit;
    }}
    if ($var(op) == "delete") {{
        avp_db_delete("$fu", "$avp(fwd)");
        if (avp_db_load("$fu", "$avp(fwd)")) {{
            sl_send_reply("500", "still there");
        }} else if (avp_db_load("$fu", "*")) {{
            sl_send_reply("200", "deleted, limit $avp(limit)");
        }} else {{
            sl_send_reply("500", "all gone");
        }}
        exit;
    }}
    sl_send_reply("400", "no op");
}}
"#
    )
}

fn ask(sock: &UdpSocket, port: u16, op: &str, extra: &str) -> String {
    let local = sock.local_addr().expect("addr").port();
    let msg = format!(
        "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-{op}\r\n\
         From: <sip:alice@example.com>;tag={op}\r\n\
         To: <sip:127.0.0.1:{port}>\r\n\
         Call-ID: avpops-{op}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\n\
         X-Op: {op}\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n"
    );
    sock.send_to(msg.as_bytes(), ("127.0.0.1", port))
        .expect("send");
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).expect("an answer");
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.lines().next().unwrap_or_default().to_string()
}

fn avps_in_the_database(backend: Backend) {
    let dir = std::env::temp_dir().join(format!(
        "ferrosip-avpops-{}-{backend:?}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let db = TestDb::with_users(backend, &dir, "avpops", &[]);
    let port = free_port();
    std::fs::write(dir.join("proxy.cfg"), config(port, &db.url)).expect("cfg");
    let proxy = Launch::new(dir.join("proxy.cfg"))
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .terminate_on_drop()
        .start();
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let log = || proxy.log_text();

    assert_eq!(
        ask(&sock, port, "store", ""),
        "SIP/2.0 200 stored",
        "{}",
        log()
    );
    // Stored oldest first, loaded in that order: newest last, as the route set them.
    assert_eq!(
        ask(&sock, port, "load-one", ""),
        "SIP/2.0 200 limit 7,5 sum 12 fwd <null>",
        "{}",
        log()
    );
    assert_eq!(
        ask(&sock, port, "load-all", ""),
        "SIP/2.0 200 fwd sip:voicemail@example.com limit 7",
        "{}",
        log()
    );
    assert_eq!(
        ask(&sock, port, "uuid", "X-Uuid: u-77\r\n"),
        "SIP/2.0 200 tier gold,gold",
        "{}",
        log()
    );
    assert_eq!(
        ask(&sock, port, "query", ""),
        "SIP/2.0 200 query sip:voicemail@example.com type 0",
        "{}",
        log()
    );
    assert_eq!(
        ask(&sock, port, "delete", ""),
        "SIP/2.0 200 deleted, limit 7",
        "{}",
        log()
    );
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn avps_in_sqlite() {
    avps_in_the_database(Backend::Sqlite);
}

#[test]
fn avps_in_mariadb() {
    avps_in_the_database(Backend::Mariadb);
}

#[test]
fn avps_in_postgresql() {
    avps_in_the_database(Backend::Postgres);
}
