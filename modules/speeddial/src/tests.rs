//! `sd_lookup()` through the script engine against a real SQLite `speed_dial` table.

use super::*;
use ferrosip_api::{NetInfo, Registry, RouteKind};
use ferrosip_tests::script::message_with;
use ferrosip_tests::Script;

struct Setup {
    script: Script,
    reg: Registry,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn new(params: &str, route: &str) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/sd.db", dir.path().display());
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let db = Db::connect(&url).await.expect("sqlite");
            ferrosip_db::schema::init(&db, Some(&["speeddial"]))
                .await
                .expect("schema");
            for (u, d, sd, sdd, new) in [
                (
                    "alice",
                    "example.com",
                    "11",
                    "example.com",
                    "sip:bob@example.com",
                ),
                (
                    "alice",
                    "other.org",
                    "12",
                    "example.com",
                    "+4930123@gw.example.com",
                ),
                (
                    "carol",
                    "example.com",
                    "11",
                    "example.com",
                    "sip:dave@example.com",
                ),
            ] {
                db.insert(
                    "speed_dial",
                    &["username", "domain", "sd_username", "sd_domain", "new_uri"],
                    &[u.into(), d.into(), sd.into(), sdd.into(), new.into()],
                )
                .await
                .expect("speed_dial row");
            }
        });
        let mut reg = Registry::new();
        ferrosip_script::register_core(&mut reg);
        reg.register(&SpeeddialModule);
        let cfg = format!(
            "loadmodule \"speeddial.so\"\nmodparam(\"speeddial\", \"db_url\", \"{url}\")\n{params}\n\
             request_route {{\n{route}\n}}\n"
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

    fn run(&self, from: &str, ruri: &str) -> (Option<i64>, String) {
        let raw = format!(
            "INVITE {ruri} SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\n\
             From: <{from}>;tag=f1\nTo: <{ruri}>\nCall-ID: c1@h\nCSeq: 1 INVITE\n\
             Content-Length: 0\n\n"
        );
        let ctx = message_with(&raw, RouteKind::Request, NetInfo::default());
        let ctx = self.rt.block_on(self.script.run_async(ctx)).1;
        (
            ctx.vars.get(self.reg.intern_var("rc")).as_int(),
            String::from_utf8_lossy(ctx.msg.request_uri().unwrap()).into_owned(),
        )
    }
}

#[test]
fn caller_short_numbers() {
    let s = Setup::new("", "sd_lookup(\"speed_dial\"); $var(rc) = $rc;");
    assert_eq!(
        s.run("sip:alice@example.com", "sip:11@example.com"),
        (Some(1), "sip:bob@example.com".into())
    );
    assert_eq!(
        s.run("sip:carol@example.com", "sip:11@example.com"),
        (Some(1), "sip:dave@example.com".into()),
        "per owner"
    );
    assert_eq!(
        s.run("sip:alice@example.com", "sip:12@example.com"),
        (Some(1), "sip:+4930123@gw.example.com".into()),
        "a value without a scheme gets sip:"
    );
    assert_eq!(
        s.run("sip:alice@example.com", "sip:13@example.com"),
        (Some(-1), "sip:13@example.com".into())
    );
}

#[test]
fn domains_and_owner() {
    let s = Setup::new(
        "modparam(\"speeddial\", \"use_domain\", 2)\nmodparam(\"speeddial\", \"domain_prefix\", \"sip.\")",
        "sd_lookup(\"speed_dial\", \"$hdr(X-Owner)\"); $var(rc) = $rc;",
    );
    let run = |owner: &str, ruri: &str| {
        let raw = format!(
            "INVITE {ruri} SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\n\
             From: <sip:nobody@example.com>;tag=f1\nTo: <{ruri}>\nCall-ID: c1@h\n\
             CSeq: 1 INVITE\nX-Owner: {owner}\nContent-Length: 0\n\n"
        );
        let ctx = message_with(&raw, RouteKind::Request, NetInfo::default());
        let ctx = s.rt.block_on(s.script.run_async(ctx)).1;
        (
            ctx.vars.get(s.reg.intern_var("rc")).as_int(),
            String::from_utf8_lossy(ctx.msg.request_uri().unwrap()).into_owned(),
        )
    };
    assert_eq!(
        run("sip:alice@sip.other.org", "sip:12@sip.example.com").0,
        Some(1)
    );
    assert_eq!(
        run("sip:alice@example.com", "sip:12@example.com").0,
        Some(-1),
        "owner domain"
    );
    assert_eq!(
        run("sip:alice@example.com", "sip:11@other.net").0,
        Some(-1),
        "sd domain"
    );
    assert_eq!(
        run("not a uri", "sip:11@example.com").0,
        Some(-1),
        "bad owner"
    );
}

#[test]
fn bad_use_domain_fails_the_load() {
    let mut reg = Registry::new();
    reg.register(&SpeeddialModule);
    let def = reg.module("speeddial").unwrap();
    let mut p = def.default_params();
    p.push("use_domain", Value::Int(3));
    let e = def.init.iter().find_map(|h| h(&p).err()).unwrap();
    assert!(e.contains("use_domain"), "{e}");
}
