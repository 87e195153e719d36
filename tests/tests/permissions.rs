//! The table-driven access and rewriting modules through the running proxy, with SIPp
//! callers and a SIPp callee, on a database made by `ferrosip db init --modules
//! permissions,domain,alias_db,speeddial`:
//!
//! - `permissions`: a caller from 127.0.0.2 is admitted by the address table (group 1),
//!   one from 127.0.0.1 only as a trusted peer whose From matches the trusted row's
//!   from_pattern (its tag reaches the callee), another From from 127.0.0.1 gets 403;
//! - `domain` with register_myself: the R-URI host example.test is `myself` and local;
//! - `alias_db` and `speeddial` rewrite the R-URI before forwarding (the callee's trace
//!   shows the rewritten R-URI);
//! - `permissions.addressReload` by `ferrosip ctl` while calls run: none fails, and the
//!   address added meanwhile is admitted afterwards;
//! - the same flow on SQLite, MariaDB and PostgreSQL (a database of the test's own,
//!   dropped after).

use ferrosip_db::{Db, DbValue};
use ferrosip_tests::db::{Backend, TestDb};
use ferrosip_tests::sipp::Sipp;
use ferrosip_tests::{ferrosip_bin, free_port, have_sipp, log_tails, Launch, Proxy};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/scenarios/{name}"))
}

fn s(v: &str) -> DbValue {
    DbValue::Str(v.into())
}

struct Lab {
    dir: PathBuf,
    db: TestDb,
    port: u16,
    uas_port: u16,
    _uas: Sipp,
    proxy: Option<Proxy>,
    runs: u32,
}

impl Lab {
    fn new(name: &str, backend: Backend) -> Lab {
        let dir =
            std::env::temp_dir().join(format!("ferrosip-test-{}-perms-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let db = TestDb::with_users(backend, &dir, "permissions,domain,alias_db,speeddial", &[]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let db = Db::connect(&db.url).await.expect("db");
            let ins = |table: &'static str, cols: &'static [&'static str], vals: Vec<DbValue>| {
                let db = db.clone();
                async move {
                    db.insert(table, cols, &vals)
                        .await
                        .unwrap_or_else(|e| panic!("insert into {table}: {e}"));
                }
            };
            ins(
                "address",
                &["grp", "ip_addr", "mask", "port", "tag"],
                vec![
                    DbValue::Int(1),
                    s("127.0.0.2"),
                    DbValue::Int(32),
                    DbValue::Int(0),
                    s("pbx"),
                ],
            )
            .await;
            ins(
                "trusted",
                &["src_ip", "proto", "from_pattern", "tag", "priority"],
                vec![
                    s("127.0.0.1"),
                    s("udp"),
                    s("^sip:[a-z]+@carrier\\.example$"),
                    s("carrier"),
                    DbValue::Int(1),
                ],
            )
            .await;
            ins(
                "domain",
                &["domain", "did"],
                vec![s("example.test"), s("test")],
            )
            .await;
            ins(
                "dbaliases",
                &["alias_username", "alias_domain", "username", "domain"],
                vec![s("sales"), s("example.test"), s("uas"), s("example.test")],
            )
            .await;
            ins(
                "speed_dial",
                &["username", "domain", "sd_username", "sd_domain", "new_uri"],
                vec![
                    s("caller"),
                    s("carrier.example"),
                    s("11"),
                    s("example.test"),
                    s("sip:uas@example.test"),
                ],
            )
            .await;
        });
        let uas_port = free_port();
        let uas = Sipp(
            Command::new("sipp")
                .arg("-sf")
                .arg(scenario("call_uas.xml"))
                .args(["-i", "127.0.0.1", "-p", &uas_port.to_string(), "-nostdin"])
                .args(["-trace_msg", "-message_file"])
                .arg(dir.join("uas-messages.log"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("sipp starts"),
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while UdpSocket::bind(("127.0.0.1", uas_port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut lab = Lab {
            dir,
            db,
            port: free_port(),
            uas_port,
            _uas: uas,
            proxy: None,
            runs: 0,
        };
        lab.start_proxy();
        lab
    }

    fn start_proxy(&mut self) {
        let cfg = format!(
            r#"#!KAMAILIO
debug=2
children=2
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "textops.so"
loadmodule "ctl.so"
loadmodule "permissions.so"
loadmodule "domain.so"
loadmodule "alias_db.so"
loadmodule "speeddial.so"
modparam("ctl", "binrpc", "unix:{dir}/ctl")
modparam("permissions", "db_url", "{url}")
modparam("permissions", "db_mode", 1)
modparam("permissions", "reload_delta", 0)
modparam("permissions", "peer_tag_avp", "$avp(s:peer)")
modparam("domain", "db_url", "{url}")
modparam("domain", "register_myself", 1)
modparam("alias_db", "db_url", "{url}")
modparam("speeddial", "db_url", "{url}")
modparam("speeddial", "use_domain", 2)
request_route {{
    # SIPp sends the ACK and BYE of a call to the proxy too, with the callee's Contact
    # as R-URI; the ACK of a refusal (R-URI ours) ends here.
    if (method == "ACK") {{
        if (uri != myself) {{
            forward();
        }}
        exit;
    }}
    if (method == "BYE") {{
        t_relay();
        exit;
    }}
    if (allow_source_address("1")) {{
        $var(by) = "address";
    }} else if (allow_trusted()) {{
        $var(by) = "trusted " + $avp(s:peer);
    }} else {{
        sl_send_reply("403", "Not Allowed");
        exit;
    }}
    if (uri != myself || !is_uri_host_local()) {{
        sl_send_reply("404", "Not Here");
        exit;
    }}
    if (!alias_db_lookup("dbaliases")) {{
        sd_lookup("speed_dial");
    }}
    append_hf("X-By: $var(by)\r\n");
    $du = "sip:127.0.0.1:{uas}";
    t_relay();
}}
"#,
            port = self.port,
            dir = self.dir.display(),
            url = self.db.url,
            uas = self.uas_port,
        );
        let path = self.dir.join("proxy.cfg");
        std::fs::write(&path, cfg).expect("cfg");
        self.proxy = Some(
            Launch::new(&path)
                .log(self.dir.join("proxy.log"))
                .listening_on(self.port)
                .start(),
        );
    }

    /// `calls` calls from `ip` to `service` with From host `from_host`; SIPp's exit code
    /// (0: every call as the scenario expects).
    fn calls(
        &mut self,
        scenario_name: &str,
        ip: &str,
        service: &str,
        from_host: &str,
        calls: u32,
        rate: u32,
    ) -> Sipp {
        self.runs += 1;
        let tag = format!("uac{}", self.runs);
        let child = Command::new("sipp")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("-sf")
            .arg(scenario(&format!("perms/{scenario_name}")))
            .args(["-i", ip, "-s", service, "-key", "from_host", from_host])
            .args(["-m", &calls.to_string(), "-r", &rate.to_string()])
            .args(["-nostdin", "-timeout", "20s", "-trace_err", "-trace_msg"])
            .arg("-error_file")
            .arg(self.dir.join(format!("{tag}-errors.log")))
            .arg("-message_file")
            .arg(self.dir.join(format!("{tag}-messages.log")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sipp starts");
        Sipp(child)
    }

    fn run(&mut self, scenario_name: &str, ip: &str, service: &str, from_host: &str) {
        let mut sipp = self.calls(scenario_name, ip, service, from_host, 1, 10);
        let code = sipp.wait(Duration::from_secs(20));
        assert_eq!(
            code,
            Some(0),
            "{scenario_name} from {ip} to {service} (From @{from_host}):\n{}",
            log_tails(&self.dir)
        );
    }

    fn uas_trace(&self) -> String {
        std::fs::read_to_string(self.dir.join("uas-messages.log")).unwrap_or_default()
    }

    fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new(ferrosip_bin())
            .args(["ctl", "-s", &format!("unix:{}/ctl", self.dir.display())])
            .args(args)
            .output()
            .expect("ferrosip ctl runs");
        assert!(
            out.status.success(),
            "ferrosip ctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Address, trusted, refused; alias and speed dial rewrite the R-URI.
fn admission_and_rewrites(lab: &mut Lab) {
    lab.run("uac.xml", "127.0.0.2", "sales", "example.org");
    lab.run("uac.xml", "127.0.0.1", "11", "carrier.example");
    lab.run("refused.xml", "127.0.0.1", "11", "example.org");
    let trace = lab.uas_trace();
    assert_eq!(
        trace.matches("INVITE sip:uas@example.test SIP/2.0").count(),
        2,
        "both admitted calls rewritten:\n{}",
        log_tails(&lab.dir)
    );
    assert_eq!(trace.matches("X-By: address").count(), 1, "{trace}");
    assert_eq!(trace.matches("X-By: trusted carrier").count(), 1, "{trace}");
    assert!(
        !trace.contains("INVITE sip:sales@") && !trace.contains("INVITE sip:11@"),
        "forwarded without the rewrite"
    );
}

#[test]
fn sqlite_admission_rewrites_and_reload_under_traffic() {
    if !have_sipp() {
        return;
    }
    let mut lab = Lab::new("sqlite", Backend::Sqlite);
    admission_and_rewrites(&mut lab);
    // 127.0.0.3 is not in the address table yet.
    lab.run("refused.xml", "127.0.0.3", "sales", "example.org");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let db = Db::connect(&lab.db.url).await.expect("db");
        db.insert(
            "address",
            &["grp", "ip_addr", "mask", "port"],
            &[
                DbValue::Int(1),
                s("127.0.0.0"),
                DbValue::Int(24),
                DbValue::Int(0),
            ],
        )
        .await
        .expect("insert");
    });
    // Reloads while 40 calls from 127.0.0.2 run: the table being replaced serves every
    // one of them.
    let mut load = lab.calls("uac.xml", "127.0.0.2", "sales", "example.org", 40, 20);
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(300));
        let out = lab.ctl(&["permissions.addressReload"]);
        assert!(out.contains("loaded 1 addresses and 1 subnets"), "{out}");
    }
    assert_eq!(
        load.wait(Duration::from_secs(30)),
        Some(0),
        "calls during reloads:\n{}",
        log_tails(&lab.dir)
    );
    lab.run("uac.xml", "127.0.0.3", "sales", "example.org");
    let subnets = lab.ctl(&["permissions.subnetDump"]);
    assert!(subnets.contains("127.0.0.0"), "{subnets}");
    let trusted = lab.ctl(&["permissions.trustedDump"]);
    assert!(trusted.contains("carrier"), "{trusted}");
    let domains = lab.ctl(&["domain.dump"]);
    assert!(domains.contains("example.test"), "{domains}");
}

#[test]
fn mariadb_admission_and_rewrites() {
    if !have_sipp() {
        return;
    }
    let mut lab = Lab::new("mariadb", Backend::Mariadb);
    admission_and_rewrites(&mut lab);
}

#[test]
fn postgres_admission_and_rewrites() {
    if !have_sipp() {
        return;
    }
    let mut lab = Lab::new("postgres", Backend::Postgres);
    admission_and_rewrites(&mut lab);
}
