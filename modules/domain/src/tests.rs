//! The functions through the script engine against a real SQLite domain table.

use super::*;
use ferrosip_api::{NetInfo, Registry, RouteKind};
use ferrosip_tests::script::message_with;
use ferrosip_tests::Script;

struct Setup {
    script: Script,
    reg: Registry,
    rt: tokio::runtime::Runtime,
    url: String,
    _dir: tempfile::TempDir,
}

fn s(v: &str) -> DbValue {
    DbValue::Str(v.into())
}

impl Setup {
    fn new(route: &str) -> Setup {
        Setup::with_params("", route)
    }

    fn with_params(params: &str, route: &str) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/domain.db", dir.path().display());
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let db = Db::connect(&url).await.expect("sqlite");
            ferrosip_db::schema::init(&db, Some(&["domain"]))
                .await
                .expect("schema");
            for (domain, did) in [("Example.COM", Some("ex")), ("other.org", None)] {
                db.insert(
                    "domain",
                    &["domain", "did"],
                    &[s(domain), did.map_or(DbValue::Null, s)],
                )
                .await
                .expect("domain row");
            }
            for (did, name, ty, value) in
                [("ex", "max_calls", 0, "5"), ("ex", "realm", 2, "ex-realm")]
            {
                db.insert(
                    "domain_attrs",
                    &["did", "name", "type", "value"],
                    &[s(did), s(name), DbValue::Int(ty), s(value)],
                )
                .await
                .expect("attr row");
            }
        });
        let mut reg = Registry::new();
        ferrosip_script::register_core(&mut reg);
        reg.register(&DomainModule);
        let cfg = format!(
            "loadmodule \"domain.so\"\nmodparam(\"domain\", \"db_url\", \"{url}\")\n{params}\n\
             request_route {{\n{route}\n}}\n"
        );
        let script = Script::load(&reg, &cfg);
        script.start(&rt);
        Setup {
            script,
            reg,
            rt,
            url,
            _dir: dir,
        }
    }

    fn run(&self, from: &str, ruri: &str) -> MsgContext {
        let raw = format!(
            "INVITE {ruri} SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\n\
             From: <{from}>;tag=f1\nTo: <{ruri}>\nCall-ID: c1@h\nCSeq: 1 INVITE\n\
             Content-Length: 0\n\n"
        );
        let ctx = message_with(&raw, RouteKind::Request, NetInfo::default());
        self.rt.block_on(self.script.run_async(ctx)).1
    }

    fn int(&self, ctx: &MsgContext, name: &str) -> Option<i64> {
        ctx.vars.get(self.reg.intern_var(name)).as_int()
    }

    fn avp(&self, ctx: &MsgContext, name: &str) -> Option<Value> {
        ctx.avps.get(self.reg.intern_avp(name), 0).cloned()
    }
}

#[test]
fn local_checks_and_attributes() {
    let s = Setup::new(
        r#"
    is_from_local(); $var(f) = $rc;
    is_uri_host_local(); $var(u) = $rc;
    is_domain_local("$rd"); $var(d) = $rc;
    lookup_domain("$fd"); $var(l) = $rc;
    lookup_domain("$rd", "r_"); $var(l2) = $rc;
"#,
    );
    let ctx = s.run("sip:alice@example.com", "sip:bob@OTHER.org");
    assert_eq!(s.int(&ctx, "f"), Some(1));
    assert_eq!(s.int(&ctx, "u"), Some(1), "case-insensitive");
    assert_eq!(s.int(&ctx, "d"), Some(1));
    assert_eq!(s.int(&ctx, "l"), Some(1));
    assert_eq!(s.avp(&ctx, "did"), Some(Value::from_static("ex")));
    assert_eq!(s.avp(&ctx, "max_calls"), Some(Value::Int(5)));
    assert_eq!(s.avp(&ctx, "realm"), Some(Value::from_static("ex-realm")));
    assert_eq!(
        s.avp(&ctx, "r_did"),
        Some(Value::from_static("other.org")),
        "NULL did"
    );
    let ctx = s.run("sip:alice@elsewhere.net", "sip:bob@192.0.2.1");
    for v in ["f", "u", "d", "l", "l2"] {
        assert_eq!(s.int(&ctx, v), Some(-1), "{v}");
    }
}

#[test]
fn register_myself_extends_myself() {
    let s = Setup::new("if (uri == myself) { $var(m) = 1; } else { $var(m) = -1; }");
    let ctx = s.run("sip:a@x", "sip:bob@example.com");
    assert_eq!(
        s.int(&ctx, "m"),
        Some(-1),
        "register_myself is 0 by default"
    );
    let s = Setup::with_params(
        "modparam(\"domain\", \"register_myself\", 1)",
        "if (uri == myself) { $var(m) = 1; } else { $var(m) = -1; }",
    );
    let ctx = s.run("sip:a@x", "sip:bob@EXAMPLE.com:5099");
    assert_eq!(s.int(&ctx, "m"), Some(1), "any port, any case");
    let ctx = s.run("sip:a@x", "sip:bob@elsewhere.net");
    assert_eq!(s.int(&ctx, "m"), Some(-1));
}

#[test]
fn reload_swaps_and_keeps_old_on_error() {
    let s = Setup::new("is_from_local(); $var(f) = $rc;");
    let ctx = s.run("sip:a@new.example", "sip:b@x");
    assert_eq!(s.int(&ctx, "f"), Some(-1));
    s.rt.block_on(async {
        let db = Db::connect(&s.url).await.unwrap();
        db.insert("domain", &["domain"], &[DbValue::Str("new.example".into())])
            .await
            .unwrap();
    });
    let reload = s.reg.rpc("domain.reload").unwrap();
    assert_eq!(
        s.rt.block_on(reload.call(vec![])),
        Ok(RpcValue::Str("loaded 3 domains and 2 attributes".into()))
    );
    let ctx = s.run("sip:a@new.example", "sip:b@x");
    assert_eq!(s.int(&ctx, "f"), Some(1));
    s.rt.block_on(async {
        let db = Db::connect(&s.url).await.unwrap();
        db.insert(
            "domain_attrs",
            &["did", "name", "type", "value"],
            &[
                DbValue::Str("ex".into()),
                DbValue::Str("bad".into()),
                DbValue::Int(7),
                DbValue::Str("x".into()),
            ],
        )
        .await
        .unwrap();
        db.delete("domain", &[ferrosip_db::Cond::eq("domain", "new.example")])
            .await
            .unwrap();
    });
    let e = s.rt.block_on(reload.call(vec![])).unwrap_err();
    assert!(e.contains("stay in use") && e.contains("type"), "{e}");
    let ctx = s.run("sip:a@new.example", "sip:b@x");
    assert_eq!(s.int(&ctx, "f"), Some(1), "old snapshot serves");
    let dump =
        s.rt.block_on(s.reg.rpc("domain.dump").unwrap().call(vec![]))
            .unwrap();
    let RpcValue::Array(rows) = dump else {
        panic!("array")
    };
    assert_eq!(rows.len(), 3);
}
