//! The functions through the script engine against a real SQLite `dbaliases` table.

use super::*;
use ferrosip_api::tm::Branches;
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
        let url = format!("sqlite://{}/alias.db", dir.path().display());
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let db = Db::connect(&url).await.expect("sqlite");
            ferrosip_db::schema::init(&db, Some(&["alias_db"]))
                .await
                .expect("schema");
            for (au, ad, u, d) in [
                ("sales", "example.com", "alice", "example.com"),
                ("sales", "example.com", "bob", "example.com"),
                ("support", "other.org", "carol", ""),
                ("help", "example.com", "dave", "example.com"),
            ] {
                db.insert(
                    "dbaliases",
                    &["alias_username", "alias_domain", "username", "domain"],
                    &[au.into(), ad.into(), u.into(), d.into()],
                )
                .await
                .expect("alias row");
            }
        });
        let mut reg = Registry::new();
        ferrosip_script::register_core(&mut reg);
        reg.register(&AliasDbModule);
        let cfg = format!(
            "loadmodule \"alias_db.so\"\nmodparam(\"alias_db\", \"db_url\", \"{url}\")\n{params}\n\
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

    fn run(&self, ruri: &str) -> MsgContext {
        let raw = format!(
            "INVITE {ruri} SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\n\
             From: <sip:x@example.com>;tag=f1\nTo: <{ruri}>\nCall-ID: c1@h\nCSeq: 1 INVITE\n\
             Content-Length: 0\n\n"
        );
        let ctx = message_with(&raw, RouteKind::Request, NetInfo::default());
        self.rt.block_on(self.script.run_async(ctx)).1
    }

    fn var(&self, ctx: &MsgContext, name: &str) -> Value {
        ctx.vars.get(self.reg.intern_var(name)).clone()
    }
}

fn ruri(ctx: &MsgContext) -> String {
    String::from_utf8_lossy(ctx.msg.request_uri().unwrap()).into_owned()
}

#[test]
fn lookup_rewrites_the_request_uri() {
    let s = Setup::new(
        "modparam(\"alias_db\", \"append_branches\", 1)",
        "alias_db_lookup(\"dbaliases\"); $var(rc) = $rc;",
    );
    let ctx = s.run("sip:sales@example.com:5070;transport=udp");
    assert_eq!(s.var(&ctx, "rc").as_int(), Some(1));
    assert_eq!(ruri(&ctx), "sip:alice@example.com");
    let branches = ctx.ext.get::<Branches>().expect("branch added");
    assert_eq!(branches.0.len(), 1);
    assert_eq!(&branches.0[0].uri[..], b"sip:bob@example.com");
    // use_domain 0: the alias matches whatever the domain; an empty domain keeps the host.
    let ctx = s.run("sip:support@nowhere.net");
    assert_eq!(ruri(&ctx), "sip:carol@nowhere.net");
    let ctx = s.run("sip:nobody@example.com");
    assert_eq!(s.var(&ctx, "rc").as_int(), Some(-1));
    assert_eq!(ruri(&ctx), "sip:nobody@example.com");
}

#[test]
fn domain_prefix_flags_and_find() {
    let s = Setup::new(
        "modparam(\"alias_db\", \"use_domain\", 1)\nmodparam(\"alias_db\", \"domain_prefix\", \"sip.\")",
        r#"
    alias_db_find("dbaliases", "sip:dave@example.com", "$var(alias)", "r"); $var(f) = $rc;
    alias_db_lookup("dbaliases"); $var(rc) = $rc;
"#,
    );
    let ctx = s.run("sip:help@sip.example.com");
    assert_eq!(s.var(&ctx, "rc").as_int(), Some(1));
    assert_eq!(
        ruri(&ctx),
        "sip:dave@example.com",
        "domain matched after the prefix"
    );
    assert_eq!(s.var(&ctx, "f").as_int(), Some(1));
    assert_eq!(
        s.var(&ctx, "alias").to_bytes().as_deref(),
        Some(&b"sip:help@example.com"[..]),
        "reverse lookup"
    );
    let ctx = s.run("sip:help@third.example");
    assert_eq!(s.var(&ctx, "rc").as_int(), Some(-1), "domain compared");
}

#[test]
fn bad_flags_and_tables_are_errors_not_matches() {
    let s = Setup::new(
        "",
        r#"
    alias_db_lookup("dbaliases", "x"); $var(a) = $rc;
    alias_db_lookup("no such table"); $var(b) = $rc;
    alias_db_lookup("missing"); $var(c) = $rc;
"#,
    );
    let ctx = s.run("sip:sales@example.com");
    for v in ["a", "b", "c"] {
        assert_eq!(s.var(&ctx, v).as_int(), Some(-1), "{v}");
    }
}
