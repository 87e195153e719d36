//! Routing in Lua (`cfgengine "lua"`, app_lua) through the real binary: KSR calls, a
//! route that sleeps without holding its worker, runtime errors and runaway loops that
//! end the route (logged with file:line) but not the server, reload on SIGHUP (a file
//! that does not load keeps the running one), and `ferrosip check` reporting calls to
//! KSR functions that do not exist.

use ferrosip_tests::{ferrosip_bin, free_port, Launch, Proxy};
use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::Duration;

fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrosip-lua-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("test dir");
    dir
}

fn config(port: u16, extra: &str) -> String {
    format!(
        r#"listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
children=1
loadmodule "sl.so"
loadmodule "cfgutils.so"
loadmodule "textops.so"
loadmodule "app_lua.so"
modparam("app_lua", "load", "routes.lua")
{extra}
cfgengine "lua"
"#
    )
}

/// Starts ferrosip on `cfg` with `lua` as routes.lua beside it, logging to proxy.log.
fn start(name: &str, port: u16, cfg: &str, lua: &str) -> (Proxy, PathBuf) {
    let dir = test_dir(name);
    std::fs::write(dir.join("routes.lua"), lua).expect("write lua");
    std::fs::write(dir.join("proxy.cfg"), cfg).expect("write cfg");
    let proxy = Launch::new(dir.join("proxy.cfg"))
        .log(dir.join("proxy.log"))
        .listening_on(port)
        .start();
    (proxy, dir)
}

fn options(call_id: &str, port: u16, local: u16, extra: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:ping@127.0.0.1:{port} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:t@127.0.0.1>;tag=1\r\n\
         To: <sip:ping@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         {extra}\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

struct Peer {
    sock: UdpSocket,
    port: u16,
    local: u16,
}

impl Peer {
    fn new(port: u16) -> Peer {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let local = sock.local_addr().unwrap().port();
        Peer { sock, port, local }
    }

    fn send(&self, call_id: &str, extra: &str) {
        self.sock
            .send_to(
                &options(call_id, self.port, self.local, extra),
                ("127.0.0.1", self.port),
            )
            .unwrap();
    }

    /// The next reply, or `None` when none comes within `wait`.
    fn recv_within(&self, wait: Duration) -> Option<String> {
        self.sock.set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 8192];
        let n = self.sock.recv(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    fn recv(&self) -> String {
        self.recv_within(Duration::from_secs(10)).expect("a reply")
    }
}

fn header<'a>(reply: &'a str, name: &str) -> Option<&'a str> {
    reply.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn status_line(reply: &str) -> &str {
    reply.lines().next().unwrap_or_default()
}

#[test]
fn ksr_calls_reach_modules_pvs_and_headers() {
    let port = free_port();
    let lua = r#"
function ksr_request_route()
    if not KSR.is_OPTIONS() or KSR.is_INVITE() then
        KSR.sl.sl_send_reply(500, "method tests")
        KSR.x.exit()
    end
    if not KSR.is_method_in("RO") then
        KSR.sl.sl_send_reply(500, "is_method_in")
        KSR.x.exit()
    end
    KSR.pv.sets("$var(who)", KSR.pv.get("$rU"))
    KSR.pv.seti("$var(n)", 41)
    local n = KSR.pv.get("$var(n)") + 1
    if KSR.pv.is_null("$avp(nothing)") ~= true or KSR.pv.gete("$avp(nothing)") ~= "" then
        KSR.sl.sl_send_reply(500, "null pv")
        KSR.x.exit()
    end
    if KSR.hdr.is_present("X-Probe") > 0 then
        KSR.hdr.remove("X-Probe")
    end
    if KSR.textops.is_present_hf("X-Probe") > 0 then
        KSR.sl.sl_send_reply(500, "header not removed")
        KSR.x.exit()
    end
    -- an unknown arity is an error, a false call is negative
    if KSR.textops.is_present_hf("X-Absent") >= 0 then
        KSR.sl.sl_send_reply(500, "negative is false")
        KSR.x.exit()
    end
    KSR.textops.append_to_reply("X-Who: " .. KSR.pv.get("$var(who)") .. "\r\n")
    KSR.textops.append_to_reply("X-N: " .. n .. "\r\n")
    KSR.textops.append_to_reply("X-Kx: " .. KSR.kx.get_method() .. "\r\n")
    KSR.sl.sl_send_reply(200, "Lua")
    KSR.x.exit()
    KSR.sl.sl_send_reply(500, "after exit")
end
"#;
    let (_proxy, _dir) = start("ksr", port, &config(port, ""), lua);
    let peer = Peer::new(port);
    peer.send("ksr-1", "X-Probe: yes\r\n");
    let reply = peer.recv();
    assert_eq!(status_line(&reply), "SIP/2.0 200 Lua", "{reply}");
    assert_eq!(header(&reply, "X-Who"), Some("ping"), "{reply}");
    assert_eq!(header(&reply, "X-N"), Some("42"), "{reply}");
    assert_eq!(header(&reply, "X-Kx"), Some("OPTIONS"), "{reply}");
    // exit ended the route: no second reply
    assert!(peer.recv_within(Duration::from_millis(300)).is_none());
}

/// A Lua route that sleeps 1 s (an async KSR call) does not hold the only worker: 50
/// requests sent while it sleeps are all answered before it.
#[test]
fn sleeping_lua_route_does_not_hold_the_worker() {
    let port = free_port();
    let lua = r#"
function ksr_request_route()
    if KSR.hdr.get("X-Pause") == "yes" then
        KSR.cfgutils.sleep(1)
    end
    KSR.sl.sl_send_reply(200, "OK")
end
"#;
    let (_proxy, _dir) = start("sleep", port, &config(port, ""), lua);
    let peer = Peer::new(port);
    peer.send("paused", "X-Pause: yes\r\n");
    std::thread::sleep(Duration::from_millis(100));
    for i in 0..50 {
        peer.send(&format!("quick-{i}"), "");
    }
    let mut order = Vec::new();
    for _ in 0..51 {
        let reply = peer.recv();
        order.push(header(&reply, "Call-ID").unwrap_or_default().to_string());
    }
    assert_eq!(
        order.last().map(String::as_str),
        Some("paused"),
        "{order:?}"
    );
    assert_eq!(order.iter().filter(|c| c.starts_with("quick-")).count(), 50);
}

#[test]
fn lua_errors_end_the_route_not_the_server() {
    let port = free_port();
    let lua = r#"
function ksr_request_route()
    local kind = KSR.hdr.get("X-Fail")
    if kind == "error" then
        local t = nil
        return t.field
    elseif kind == "loop" then
        local i = 0
        while true do i = i + 1 end
    elseif kind == "argument" then
        KSR.sl.sl_send_reply({}, "a table")
    elseif kind == "caught" then
        local ok, err = pcall(KSR.sl.sl_send_reply, 200)
        KSR.sl.sl_send_reply(200, "caught " .. tostring(not ok) .. ": " .. err)
        return
    end
    KSR.sl.sl_send_reply(200, "OK")
end
"#;
    let cfg = config(port, "modparam(\"app_lua\", \"max_instructions\", 1000000)");
    let (proxy, _dir) = start("errors", port, &cfg, lua);
    let peer = Peer::new(port);
    peer.send("err-1", "X-Fail: error\r\n");
    proxy.wait_log("routes.lua:6: attempt to index a nil value", 1);
    assert!(
        peer.recv_within(Duration::from_millis(300)).is_none(),
        "an aborted route is dropped"
    );
    peer.send("loop-1", "X-Fail: loop\r\n");
    proxy.wait_log("max_instructions", 1);
    // A KSR function given a wrong argument raises a Lua error at the caller's line.
    peer.send("arg-1", "X-Fail: argument\r\n");
    proxy.wait_log(
        "routes.lua:11: KSR.sl.sl_send_reply: argument 1 is a table (strings and numbers only)",
        1,
    );
    // The script's own pcall catches it, and the route goes on.
    peer.send("caught-1", "X-Fail: caught\r\n");
    let reply = peer.recv();
    assert_eq!(
        status_line(&reply),
        "SIP/2.0 200 caught true: KSR.sl.sl_send_reply takes 2 argument(s), 1 given",
        "{reply}"
    );
    peer.send("ok-1", "");
    let reply = peer.recv();
    assert_eq!(header(&reply, "Call-ID"), Some("ok-1"), "{reply}");
    let log = proxy.log_text();
    assert!(log.contains("stack traceback:"), "{log}");
}

/// The budget counts only a run that keeps running Lua (50 ms in one go): a short busy
/// route far over `max_instructions` is not cut, a runaway loop still is, and the next
/// run of the same state starts uncounted again.
#[test]
fn only_a_route_that_keeps_running_is_counted() {
    let port = free_port();
    let lua = r#"
function ksr_request_route()
    local n = 0
    if KSR.hdr.get("X-Work") == "forever" then
        while true do n = n + 1 end
    end
    for i = 1, 20000 do n = n + i end
    KSR.sl.sl_send_reply(200, "done " .. n)
end
"#;
    // The smallest budget there is: one hook period.
    let cfg = config(port, "modparam(\"app_lua\", \"max_instructions\", 10000)");
    let (proxy, _dir) = start("budget", port, &cfg, lua);
    let peer = Peer::new(port);
    peer.send("short-1", "");
    let reply = peer.recv();
    assert_eq!(status_line(&reply), "SIP/2.0 200 done 200010000", "{reply}");
    peer.send("forever-1", "X-Work: forever\r\n");
    proxy.wait_log("more than 10000 Lua instructions", 1);
    peer.send("short-2", "");
    let reply = peer.recv();
    assert_eq!(header(&reply, "Call-ID"), Some("short-2"), "{reply}");
    assert_eq!(status_line(&reply), "SIP/2.0 200 done 200010000", "{reply}");
}

#[test]
fn sighup_reloads_the_lua_file_and_keeps_it_when_broken() {
    let port = free_port();
    let version = |n: u32| {
        format!("function ksr_request_route()\n    KSR.sl.sl_send_reply(200, \"v{n}\")\nend\n")
    };
    let (proxy, dir) = start("reload", port, &config(port, ""), &version(1));
    let peer = Peer::new(port);
    peer.send("r-1", "");
    assert_eq!(status_line(&peer.recv()), "SIP/2.0 200 v1");
    std::fs::write(dir.join("routes.lua"), version(2)).unwrap();
    proxy.signal("HUP");
    proxy.wait_log("reload", 1);
    std::thread::sleep(Duration::from_millis(200));
    peer.send("r-2", "");
    assert_eq!(status_line(&peer.recv()), "SIP/2.0 200 v2");
    // a syntax error at line 2: refused with its location, v2 goes on
    std::fs::write(
        dir.join("routes.lua"),
        "function ksr_request_route()\n    if then\nend\n",
    )
    .unwrap();
    proxy.signal("HUP");
    proxy.wait_log("routes.lua:2:", 1);
    peer.send("r-3", "");
    assert_eq!(status_line(&peer.recv()), "SIP/2.0 200 v2");
}

#[test]
fn check_reports_unknown_and_declared_ksr_calls_with_their_line() {
    let dir = test_dir("check");
    std::fs::write(
        dir.join("routes.lua"),
        "function ksr_request_route()\n    KSR.sl.sl_send_reply(200, \"OK\")\n    KSR.sl.no_such_function()\n    KSR.nosuchmodule.f()\n    -- KSR.commented.out()\nend\n",
    )
    .unwrap();
    std::fs::write(dir.join("proxy.cfg"), config(5060, "")).unwrap();
    let out = std::process::Command::new(ferrosip_bin())
        .args(["check", "-f"])
        .arg(dir.join("proxy.cfg"))
        .output()
        .expect("check runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("routes.lua:3: KSR.sl.no_such_function() does not exist"),
        "{text}"
    );
    assert!(
        text.contains("routes.lua:4: KSR.nosuchmodule.f(): no module nosuchmodule"),
        "{text}"
    );
    assert!(!text.contains("commented"), "{text}");
    // both spellings of cfgengine load
    std::fs::write(
        dir.join("routes.lua"),
        "function ksr_request_route()\nend\n",
    )
    .unwrap();
    for spelling in ["cfgengine \"lua\"", "cfgengine = \"lua\""] {
        let cfg = config(5060, "").replace("cfgengine \"lua\"", spelling);
        std::fs::write(dir.join("proxy.cfg"), cfg).unwrap();
        let out = std::process::Command::new(ferrosip_bin())
            .args(["check", "-f"])
            .arg(dir.join("proxy.cfg"))
            .output()
            .expect("check runs");
        assert!(
            out.status.success(),
            "{spelling}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `app_lua.reload` over the control socket does what SIGHUP does: the new file serves the
/// next message; a broken one is refused with its location and the running one goes on.
#[test]
fn app_lua_reload_rpc_loads_the_new_file_and_keeps_the_old_when_broken() {
    let port = free_port();
    let version = |n: u32| {
        format!("function ksr_request_route()\n    KSR.sl.sl_send_reply(200, \"v{n}\")\nend\n")
    };
    let ctl = format!(
        "loadmodule \"ctl.so\"\nmodparam(\"ctl\", \"binrpc\", \"unix:{}/ctl\")",
        test_dir("reload-rpc").display()
    );
    let (proxy, dir) = start("reload-rpc", port, &config(port, &ctl), &version(1));
    let sock = format!("unix:{}/ctl", dir.display());
    let reload = || {
        let out = std::process::Command::new(ferrosip_bin())
            .args(["ctl", "-s", &sock, "app_lua.reload"])
            .output()
            .expect("ferrosip ctl runs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let peer = Peer::new(port);
    peer.send("rr-1", "");
    assert_eq!(status_line(&peer.recv()), "SIP/2.0 200 v1");
    std::fs::write(dir.join("routes.lua"), version(2)).unwrap();
    let said = reload();
    proxy.wait_log("reload", 1);
    std::thread::sleep(Duration::from_millis(200));
    peer.send("rr-2", "");
    assert_eq!(
        status_line(&peer.recv()),
        "SIP/2.0 200 v2",
        "ctl said: {said}"
    );
    std::fs::write(
        dir.join("routes.lua"),
        "function ksr_request_route()\n    if then\nend\n",
    )
    .unwrap();
    reload();
    proxy.wait_log("routes.lua:2:", 1);
    peer.send("rr-3", "");
    assert_eq!(status_line(&peer.recv()), "SIP/2.0 200 v2");
}
