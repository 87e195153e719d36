//! `sql_query`, `$dbr`, `sql_pvquery` through the script engine on a real SQLite file.

use super::*;
use ferrosip_api::tokio::runtime::Runtime;
use ferrosip_api::{NetInfo, Registry, RouteKind};
use ferrosip_tests::script::message_with;
use ferrosip_tests::Script;

struct Setup {
    script: Script,
    reg: Registry,
    rt: Runtime,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn new(route: &str) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/e911.db", dir.path().display());
        let rt = Runtime::new().expect("runtime");
        rt.block_on(async {
            let db = Db::connect(&url).await.expect("sqlite");
            for sql in [
                "CREATE TABLE numbers (number TEXT, name TEXT, zone INTEGER)",
                "INSERT INTO numbers VALUES ('+15551230001', 'alice', 7)",
                "INSERT INTO numbers VALUES ('+15551230002', 'o''brien', 8)",
                "INSERT INTO numbers VALUES ('+15551230003', NULL, 9)",
            ] {
                db.raw_query(sql, 10).await.expect(sql);
            }
        });
        let mut reg = Registry::new();
        ferrosip_script::register_core(&mut reg);
        reg.register(&SqlopsModule);
        let cfg = format!(
            "loadmodule \"sqlops.so\"\nmodparam(\"sqlops\", \"sqlcon\", \"ca=>{url}\")\n\
             modparam(\"sqlops\", \"results_maxrows\", 2)\n\
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

    fn run(&self, header: &str) -> MsgContext {
        let raw = format!(
            "INVITE sip:911@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1\n\
             From: <sip:a@example.com>;tag=f1\nTo: <sip:911@example.com>\nCall-ID: c1@h\n\
             CSeq: 1 INVITE\nX-Num: {header}\nContent-Length: 0\n\n"
        );
        let ctx = message_with(&raw, RouteKind::Request, NetInfo::default());
        self.rt.block_on(self.script.run_async(ctx)).1
    }

    fn var(&self, ctx: &MsgContext, name: &str) -> Value {
        ctx.vars.get(self.reg.intern_var(name)).clone()
    }
}

#[test]
fn query_results_and_codes() {
    let s = Setup::new(
        "sql_query(\"ca\", \"select name, zone from numbers where number='$hdr(X-Num)'\", \"r\");\n\
         $var(rc) = $rc;\n\
         $var(rows) = $dbr(r=>rows); $var(cols) = $dbr(r=>cols);\n\
         $var(name) = $dbr(r=>[0,0]); $var(zone) = $dbr(r=>[0,1]);\n\
         $var(c1) = $dbr(r=>colname[1]); $var(i) = 1; $var(dyn) = $dbr(r=>[0,$var(i)]);\n\
         sql_result_free(\"r\"); $var(after) = $dbr(r=>rows);",
    );
    let ctx = s.run("+15551230001");
    assert_eq!(s.var(&ctx, "rc"), Value::Int(1));
    assert_eq!(s.var(&ctx, "rows"), Value::Int(1));
    assert_eq!(s.var(&ctx, "cols"), Value::Int(2));
    assert_eq!(s.var(&ctx, "name"), Value::from_static("alice"));
    assert_eq!(s.var(&ctx, "zone"), Value::Int(7));
    assert_eq!(s.var(&ctx, "c1"), Value::from_static("zone"));
    assert_eq!(s.var(&ctx, "dyn"), Value::Int(7));
    assert_eq!(s.var(&ctx, "after"), Value::Int(0), "freed");

    let ctx = s.run("+15550000000");
    assert_eq!(s.var(&ctx, "rc"), Value::Int(2), "no rows");
    assert_eq!(s.var(&ctx, "rows"), Value::Int(0));
}

#[test]
fn values_cannot_change_the_statement() {
    let s = Setup::new(
        "sql_query(\"ca\", \"select count(*) from numbers where number='$hdr(X-Num)'\", \"r\");\n\
         $var(rc) = $rc; $var(n) = $dbr(r=>[0,0]);",
    );
    let ctx = s.run("x' or '1'='1");
    assert_eq!(s.var(&ctx, "rc"), Value::Int(1));
    assert_eq!(
        s.var(&ctx, "n"),
        Value::Int(0),
        "the quote stayed inside the string"
    );

    let s = Setup::new(
        "sql_query(\"ca\", \"select name from numbers where zone=$hdr(X-Num)\", \"r\");\n\
         $var(rc) = $rc; $var(n) = $dbr(r=>rows);",
    );
    let ctx = s.run("8");
    assert_eq!(
        (s.var(&ctx, "rc"), s.var(&ctx, "n")),
        (Value::Int(1), Value::Int(1))
    );
    let ctx = s.run("8 or 1=1");
    assert_eq!(
        s.var(&ctx, "rc"),
        Value::Int(-1),
        "a bare value must be a number"
    );
}

#[test]
fn row_bound_pvquery_and_no_result() {
    let s = Setup::new(
        "sql_query(\"ca\", \"select number from numbers order by number\", \"r\");\n\
         $var(rows) = $dbr(r=>rows);\n\
         sql_pvquery(\"ca\", \"select name, zone from numbers where number='+15551230002'\", \"$var(nm),$avp(zone)\");\n\
         $var(pv) = $rc;\n\
         sql_query(\"ca\", \"update numbers set zone=zone+1\");\n\
         $var(upd) = $rc;\n\
         sql_query(\"ca\", \"select name from numbers\");\n\
         $var(sel) = $rc;",
    );
    let ctx = s.run("-");
    assert_eq!(s.var(&ctx, "rows"), Value::Int(2), "results_maxrows");
    assert_eq!(s.var(&ctx, "pv"), Value::Int(1));
    assert_eq!(s.var(&ctx, "nm"), Value::from_static("o'brien"));
    assert_eq!(
        ctx.avps.get(s.reg.intern_avp("zone"), 0),
        Some(&Value::Int(8))
    );
    assert_eq!(s.var(&ctx, "upd"), Value::Int(2));
    assert_eq!(
        s.var(&ctx, "sel"),
        Value::Int(3),
        "rows but no result named"
    );
}

#[test]
fn bad_arguments_fail_the_load() {
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&SqlopsModule);
    for (route, want) in [
        ("sql_query(\"ca\", \"select 'x\", \"r\");", "unterminated"),
        ("$var(x) = $dbr(r=>size);", "unknown field"),
        ("$var(x) = $dbr(r=>[0]);", "[row,col]"),
    ] {
        let cfg = format!(
            "loadmodule \"sqlops.so\"\nmodparam(\"sqlops\", \"sqlcon\", \"ca=>sqlite:///tmp/x.db\")\n\
             request_route {{\n{route}\n}}\n"
        );
        let e = match ferrosip_script::load_str(
            "t.cfg",
            &cfg,
            &ferrosip_script::LoadOptions::default(),
            &reg,
        ) {
            Ok(_) => panic!("{route} loads"),
            Err(e) => e.messages.join("\n"),
        };
        assert!(e.contains(want), "{route}: {e}");
    }
    let def = reg.module("sqlops").unwrap();
    let mut p = def.default_params();
    p.push("sqlcon", Value::from_static("nourl"));
    let e = def.init.iter().find_map(|h| h(&p).err()).unwrap();
    assert!(e.contains("name=>db_url"), "{e}");
}
