//! The functions through the script engine, against a real SQLite `address`/`trusted`
//! table and real rule files, on a tokio runtime as the server runs them.

use super::*;
use ferrosip_api::{NetInfo, Proto, Registry, RouteKind};
use ferrosip_db::{Db, DbValue};
use ferrosip_tests::script::message_with;
use ferrosip_tests::Script;

struct Setup {
    script: Script,
    reg: Registry,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn s(v: &str) -> DbValue {
    DbValue::Str(v.into())
}

impl Setup {
    fn new(params: &str, route: &str) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/perm.db", dir.path().display());
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let db = Db::connect(&url).await.expect("sqlite");
            ferrosip_db::schema::init(&db, Some(&["permissions"]))
                .await
                .expect("schema");
            for (grp, ip, mask, port, tag) in [
                (1, "192.0.2.9", 32, 0, "pbx"),
                (2, "192.0.2.9", 32, 5099, "odd-port"),
                (3, "10.0.0.0", 8, 0, "lan"),
                (4, "10.1.0.0", 16, 5060, "office"),
            ] {
                db.insert(
                    "address",
                    &["grp", "ip_addr", "mask", "port", "tag"],
                    &[
                        grp.into(),
                        s(ip),
                        DbValue::Int(mask),
                        DbValue::Int(port),
                        s(tag),
                    ],
                )
                .await
                .expect("address row");
            }
            for (src, proto, from, tag, prio) in [
                (
                    "192.0.2.20",
                    "udp",
                    "^sip:.*@carrier\\.example$",
                    "carrier",
                    5,
                ),
                ("192.0.2.20", "any", "", "carrier-any", 1),
                ("192.0.2.21", "tcp", "", "tcp-peer", 0),
            ] {
                let from = if from.is_empty() {
                    DbValue::Null
                } else {
                    s(from)
                };
                db.insert(
                    "trusted",
                    &["src_ip", "proto", "from_pattern", "tag", "priority"],
                    &[s(src), s(proto), from, s(tag), DbValue::Int(prio)],
                )
                .await
                .expect("trusted row");
            }
        });
        std::fs::write(dir.path().join("rules.allow"), "\"^sip:boss@\" : ALL\n").unwrap();
        std::fs::write(dir.path().join("rules.deny"), "ALL : \"^sip:900[0-9]*@\"\n").unwrap();
        let mut reg = Registry::new();
        ferrosip_script::register_core(&mut reg);
        reg.register(&PermissionsModule);
        let base = dir.path().join("rules").display().to_string();
        let cfg = format!(
            "loadmodule \"permissions.so\"\n\
             modparam(\"permissions\", \"db_url\", \"{url}\")\n\
             modparam(\"permissions\", \"peer_tag_avp\", \"$avp(s:tag)\")\n{params}\n\
             request_route {{\n{}\n}}\n",
            route.replace("BASE", &base)
        );
        let script = Script::load(&reg, &cfg);
        script.start(&rt);
        Setup {
            script,
            reg,
            rt,
            _dir: dir,
        }
    }

    fn run_from(&self, source: &str, proto: Proto, from: &str, ruri: &str) -> MsgContext {
        let raw = format!(
            "INVITE {ruri} SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\n\
             From: <{from}>;tag=f1\nTo: <{ruri}>\nCall-ID: c1@h\nCSeq: 1 INVITE\n\
             Content-Length: 0\n\n"
        );
        let net = NetInfo {
            source: source.parse().unwrap(),
            proto,
            ..NetInfo::default()
        };
        let ctx = message_with(&raw, RouteKind::Request, net);
        self.rt.block_on(self.script.run_async(ctx)).1
    }

    fn run(&self, source: &str) -> MsgContext {
        self.run_from(
            source,
            Proto::Udp,
            "sip:alice@example.com",
            "sip:bob@example.com",
        )
    }

    fn var(&self, ctx: &MsgContext, name: &str) -> Value {
        ctx.vars.get(self.reg.intern_var(name)).clone()
    }

    fn tags(&self, ctx: &MsgContext) -> Vec<String> {
        ctx.avps
            .all(self.reg.intern_avp("tag"))
            .map(|v| String::from_utf8_lossy(&v.to_bytes().unwrap_or_default()).into_owned())
            .collect()
    }
}

#[test]
fn source_address_groups_subnets_and_tags() {
    let s = Setup::new(
        "",
        r#"
    allow_source_address(); $var(g1) = $rc;
    allow_source_address("4"); $var(g4) = $rc;
    allow_source_address_group(); $var(grp) = $rc;
    allow_address("2", "192.0.2.9", "5099"); $var(a2) = $rc;
    allow_address_group("10.200.1.1", "1"); $var(ag) = $rc;
    allow_address_group("not-an-ip", "1"); $var(bad) = $rc;
"#,
    );
    let int = |ctx: &MsgContext, v: &str| s.var(ctx, v).as_int();
    let ctx = s.run("192.0.2.9:5060");
    assert_eq!(int(&ctx, "g1"), Some(1));
    assert_eq!(int(&ctx, "g4"), Some(-1));
    assert_eq!(int(&ctx, "grp"), Some(1));
    assert_eq!(int(&ctx, "a2"), Some(1));
    assert_eq!(int(&ctx, "ag"), Some(3));
    assert_eq!(int(&ctx, "bad"), Some(-1));
    assert_eq!(s.tags(&ctx)[0], "lan", "latest tag on top");
    assert!(s.tags(&ctx).contains(&"pbx".to_string()));
    let ctx = s.run("192.0.2.10:5060");
    assert_eq!(int(&ctx, "g1"), Some(-1));
    assert_eq!(int(&ctx, "grp"), Some(-1));
    // 10.1.x.x: group 3 (/8, any port) and group 4 (/16, port 5060).
    let ctx = s.run("10.1.2.3:5060");
    assert_eq!(int(&ctx, "g4"), Some(1));
    assert_eq!(int(&ctx, "grp"), Some(3), "lowest group with mode 0");
    let ctx = s.run("10.1.2.3:5070");
    assert_eq!(int(&ctx, "g4"), Some(-1), "port of the /16 row");
}

#[test]
fn most_specific_subnet_with_mode_1() {
    let s = Setup::new(
        "modparam(\"permissions\", \"subnet_match_mode\", 1)",
        "allow_source_address_group(); $var(grp) = $rc;",
    );
    let ctx = s.run("10.1.2.3:5060");
    assert_eq!(s.var(&ctx, "grp").as_int(), Some(4));
}

#[test]
fn trusted_in_both_db_modes() {
    for mode in [0, 1] {
        let s = Setup::new(
            &format!("modparam(\"permissions\", \"db_mode\", {mode})"),
            r#"
    allow_trusted(); $var(t) = $rc;
    allow_trusted("192.0.2.21", "tcp"); $var(t2) = $rc;
    allow_trusted("192.0.2.20", "udp", "sip:7@carrier.example"); $var(t3) = $rc;
"#,
        );
        let int = |ctx: &MsgContext, v: &str| s.var(ctx, v).as_int();
        let ctx = s.run_from(
            "192.0.2.20:5060",
            Proto::Udp,
            "sip:100@carrier.example",
            "sip:bob@example.com",
        );
        assert_eq!(int(&ctx, "t"), Some(1), "mode {mode}");
        assert_eq!(int(&ctx, "t2"), Some(1), "mode {mode}");
        assert_eq!(int(&ctx, "t3"), Some(1), "mode {mode}");
        assert_eq!(
            s.tags(&ctx),
            ["carrier", "tcp-peer", "carrier"],
            "mode {mode}"
        );
        let ctx = s.run_from(
            "192.0.2.20:5060",
            Proto::Tcp,
            "sip:100@elsewhere.example",
            "sip:bob@example.com",
        );
        assert_eq!(int(&ctx, "t"), Some(1), "any-proto row, mode {mode}");
        assert_eq!(s.tags(&ctx)[2], "carrier-any", "mode {mode}");
        let ctx = s.run("192.0.2.21:5060");
        assert_eq!(int(&ctx, "t"), Some(-1), "udp from a tcp peer, mode {mode}");
    }
}

#[test]
fn peer_tag_mode_counts_every_match() {
    let s = Setup::new(
        "modparam(\"permissions\", \"db_mode\", 1)\nmodparam(\"permissions\", \"peer_tag_mode\", 1)",
        "allow_trusted(); $var(t) = $rc;",
    );
    let ctx = s.run_from(
        "192.0.2.20:5060",
        Proto::Udp,
        "sip:100@carrier.example",
        "sip:bob@example.com",
    );
    assert_eq!(s.var(&ctx, "t").as_int(), Some(2));
    assert_eq!(s.tags(&ctx), ["carrier-any", "carrier"]);
}

#[test]
fn routing_rules_from_files() {
    let s = Setup::new(
        "",
        r#"
    allow_routing("BASE"); $var(r) = $rc;
    allow_uri("BASE", "sip:9001@example.com"); $var(u) = $rc;
    allow_routing(); $var(d) = $rc;
"#,
    );
    let int = |ctx: &MsgContext, v: &str| s.var(ctx, v).as_int();
    let ctx = s.run_from(
        "192.0.2.1:5060",
        Proto::Udp,
        "sip:alice@a",
        "sip:9001@example.com",
    );
    assert_eq!(int(&ctx, "r"), Some(-1), "denied number");
    assert_eq!(int(&ctx, "u"), Some(-1));
    assert_eq!(int(&ctx, "d"), Some(1), "no default files: allowed");
    let ctx = s.run_from(
        "192.0.2.1:5060",
        Proto::Udp,
        "sip:boss@a",
        "sip:9001@example.com",
    );
    assert_eq!(int(&ctx, "r"), Some(1), "allow rule first");
    assert_eq!(int(&ctx, "u"), Some(1));
    let ctx = s.run_from(
        "192.0.2.1:5060",
        Proto::Udp,
        "sip:alice@a",
        "sip:1001@example.com",
    );
    assert_eq!(int(&ctx, "r"), Some(1), "no rule");
}

#[test]
fn reload_keeps_old_table_on_error_and_rate_limits() {
    let s = Setup::new(
        "modparam(\"permissions\", \"reload_delta\", 0)",
        "allow_source_address(\"7\"); $var(g) = $rc;",
    );
    let ctx = s.run("198.51.100.1:5060");
    assert_eq!(s.var(&ctx, "g").as_int(), Some(-1));
    let url = format!("sqlite://{}/perm.db", s._dir.path().display());
    s.rt.block_on(async {
        let db = Db::connect(&url).await.unwrap();
        db.insert(
            "address",
            &["grp", "ip_addr", "mask", "port"],
            &[
                DbValue::Int(7),
                DbValue::Str("198.51.100.0".into()),
                DbValue::Int(24),
                DbValue::Int(0),
            ],
        )
        .await
        .unwrap();
    });
    let reload = s.reg.rpc("permissions.addressReload").unwrap();
    let out = s.rt.block_on(reload.call(vec![])).unwrap();
    assert_eq!(
        out,
        RpcValue::Str("loaded 2 addresses and 3 subnets".into())
    );
    let ctx = s.run("198.51.100.1:5060");
    assert_eq!(s.var(&ctx, "g").as_int(), Some(1));
    s.rt.block_on(async {
        let db = Db::connect(&url).await.unwrap();
        db.insert(
            "address",
            &["grp", "ip_addr", "mask", "port"],
            &[
                DbValue::Int(8),
                DbValue::Str("bad".into()),
                DbValue::Int(32),
                DbValue::Int(0),
            ],
        )
        .await
        .unwrap();
    });
    let e = s.rt.block_on(reload.call(vec![])).unwrap_err();
    assert!(e.contains("stays in use") && e.contains("'bad'"), "{e}");
    let ctx = s.run("198.51.100.1:5060");
    assert_eq!(s.var(&ctx, "g").as_int(), Some(1), "old table serves");
    let dump =
        s.rt.block_on(s.reg.rpc("permissions.subnetDump").unwrap().call(vec![]))
            .unwrap();
    let RpcValue::Array(rows) = dump else {
        panic!("array")
    };
    assert_eq!(rows.len(), 3);
}

#[test]
fn bad_parameters_fail_the_load() {
    let mut reg = Registry::new();
    reg.register(&PermissionsModule);
    let def = reg.module("permissions").unwrap();
    let init_error = |p: &ferrosip_api::ModuleParams| def.init.iter().find_map(|h| h(p).err());
    for (param, value, what) in [
        ("db_mode", Value::Int(2), "db_mode"),
        ("subnet_match_mode", Value::Int(5), "subnet_match_mode"),
        (
            "address_file",
            Value::from_static("/etc/addr"),
            "address_file",
        ),
        (
            "peer_tag_avp",
            Value::from_static("$avp(a b)"),
            "peer_tag_avp",
        ),
        ("grp_col", Value::from_static("grp;drop"), "grp_col"),
    ] {
        let mut p = def.default_params();
        p.push(param, value);
        let e = init_error(&p).unwrap_or_else(|| panic!("{param} accepted"));
        assert!(e.contains(what), "{e}");
    }
    assert_eq!(init_error(&def.default_params()), None);
}
