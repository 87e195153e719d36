use super::table::{ItemValue, Matcher, Table, TableSpec, WriteError};
use super::HtableModule;
use bytes::Bytes;
use ferrosip_api::{NetInfo, Registry, RouteKind, Value};
use ferrosip_tests::script::{message_with, Script};
use std::net::SocketAddr;

fn spec(text: &str) -> TableSpec {
    TableSpec::parse(text).expect("spec parses")
}

#[test]
fn table_definitions_as_kamailio_writes_them() {
    let s = spec("ipban=>size=8;autoexpire=300;");
    assert_eq!(
        (s.name.as_str(), s.size, s.autoexpire, s.updateexpire),
        ("ipban", 8, 300, true)
    );
    let s = spec("a=>size=40;initval=-3;updateexpire=0;dbtable=htable;dbmode=1;maxsize=10");
    assert_eq!(
        (s.size, s.initval, s.updateexpire, s.dbmode, s.maxsize),
        (14, Some(-3), false, 1, 10)
    );
    assert_eq!(s.dbtable.as_deref(), Some("htable"));
    let s = spec("c=>size=1;cols='k,v1,v2';dbtable=t");
    assert_eq!((s.size, s.cols.len()), (3, 3));
    assert!(TableSpec::parse("noarrow").is_err());
    assert!(TableSpec::parse("a=>bogus=1").is_err());
    assert!(TableSpec::parse("a=>size=x").is_err());
    assert!(TableSpec::parse("a=>dmqreplicate=1").is_err());
    assert!(TableSpec::parse("a=>cols='only'").is_err());
}

#[test]
fn set_get_delete_initval_and_counters() {
    let t = Table::new(spec("t=>size=4;initval=0"));
    assert_eq!(
        t.get(b"x"),
        Some(ItemValue::Int(0)),
        "initval for a missing key"
    );
    t.set(b"x", ItemValue::Str(Bytes::from_static(b"abc")), None)
        .unwrap();
    assert_eq!(
        t.get(b"x"),
        Some(ItemValue::Str(Bytes::from_static(b"abc")))
    );
    assert_eq!(t.add(b"x", 1), Err(WriteError::NotInteger));
    assert_eq!(t.add(b"n", 5), Ok(5));
    assert_eq!(t.add(b"n", -1), Ok(4));
    assert_eq!(t.len(), 2);
    assert!(t.delete(b"x"));
    assert!(!t.delete(b"x"));
    assert_eq!(t.len(), 1);
    let plain = Table::new(spec("p=>size=4"));
    assert_eq!(
        plain.add(b"n", 1),
        Err(WriteError::Missing),
        "no initval: no creation"
    );
    assert_eq!(plain.get(b"n"), None);
}

#[test]
fn the_cap_refuses_new_items_but_updates_go_through() {
    let t = Table::new(spec("t=>size=3;maxsize=100"));
    for i in 0..100 {
        t.set(format!("k{i}").as_bytes(), ItemValue::Int(i), None)
            .unwrap();
    }
    assert_eq!(
        t.set(b"one-more", ItemValue::Int(1), None),
        Err(WriteError::Full)
    );
    assert_eq!(t.set(b"k7", ItemValue::Int(70), None), Ok(()));
    assert_eq!(t.get(b"k7"), Some(ItemValue::Int(70)));
    t.delete(b"k1");
    assert_eq!(t.set(b"one-more", ItemValue::Int(1), None), Ok(()));
    assert_eq!(t.len(), 100);
    assert_eq!(t.stats().items, 100);
}

#[test]
fn expired_items_read_as_absent_and_the_sweep_removes_them() {
    let t = Table::new(spec("t=>size=4;autoexpire=100"));
    t.set(b"old", ItemValue::Int(1), Some(1)).unwrap();
    t.set(b"live", ItemValue::Int(2), None).unwrap();
    assert!((99..=100).contains(&t.expires_in(b"live")));
    let later = t.unix_now() + 5;
    let expired = t.take_expired(later);
    assert_eq!(
        expired,
        vec![(Bytes::from_static(b"old"), ItemValue::Int(1))]
    );
    assert_eq!(t.len(), 1);
    // $shtex written: 0 means never.
    t.set_expires(b"live", 0);
    assert_eq!(t.expires_in(b"live"), 0);
    assert!(t.take_expired(later + 1000).is_empty());
}

#[test]
fn matching_counting_and_removing() {
    let t = Table::new(spec("t=>size=4"));
    for (k, v) in [("alice", "x1"), ("alina", "y2"), ("bob", "x3")] {
        t.set(k.as_bytes(), ItemValue::Str(Bytes::from(v)), None)
            .unwrap();
    }
    t.set(b"n", ItemValue::Int(7), None).unwrap();
    let c = |e: &str, by_value| t.count(&Matcher::from_count_expr(e.as_bytes()).unwrap(), by_value);
    assert_eq!(c("~~^ali", false), 2);
    assert_eq!(c("%~al", false), 2);
    assert_eq!(c("~%ob", false), 1);
    assert_eq!(c("==bob", false), 1);
    assert_eq!(c("**", false), 4);
    assert_eq!(c("~~^x", true), 2);
    assert_eq!(c("eq7", true), 1);
    assert!(t.any(&Matcher::from_op(b"sw", b"ali").unwrap(), false));
    assert!(!t.any(&Matcher::from_op(b"eq", b"carol").unwrap(), false));
    assert!(t.any(&Matcher::from_op(b"in", b"3").unwrap(), true));
    assert_eq!(
        t.remove_matching(&Matcher::from_op(b"re", b"^AL").unwrap(), false),
        2,
        "case-insensitive as Kamailio"
    );
    assert_eq!(t.len(), 2);
    assert!(Matcher::from_op(b"zz", b"x").is_err());
}

#[test]
fn many_workers_count_on_one_key_without_losing_increments() {
    let t = std::sync::Arc::new(Table::new(spec("t=>size=8;initval=0")));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let t = t.clone();
            std::thread::spawn(move || {
                for i in 0..10_000 {
                    t.add(b"hits", 1).unwrap();
                    t.set(format!("k{}", i % 100).as_bytes(), ItemValue::Int(i), None)
                        .unwrap();
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    assert_eq!(t.get(b"hits"), Some(ItemValue::Int(80_000)));
    assert_eq!(t.len(), 101);
}

#[test]
fn the_script_lock_is_reentrant_and_excludes_other_holders() {
    let t = std::sync::Arc::new(Table::new(spec("t=>size=4")));
    t.script_lock(b"k", 1);
    t.script_lock(b"k", 1);
    let other = {
        let t = t.clone();
        std::thread::spawn(move || {
            t.script_lock(b"k", 2);
            t.script_unlock(b"k", 2)
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(
        !other.is_finished(),
        "token 2 waits while token 1 holds the slot"
    );
    assert!(t.script_unlock(b"k", 1));
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(
        !other.is_finished(),
        "one unlock of two locks still holds it"
    );
    assert!(t.script_unlock(b"k", 1));
    assert!(other.join().unwrap());
    assert!(!t.script_unlock(b"k", 1));
}

fn registry() -> Registry {
    let mut reg = Registry::new();
    ferrosip_script::register_core(&mut reg);
    reg.register(&HtableModule);
    reg
}

fn request(method: &str, source: &str) -> ferrosip_api::MsgContext {
    let net = NetInfo {
        source: source.parse::<SocketAddr>().unwrap(),
        ..NetInfo::default()
    };
    message_with(
        &format!(
            "{method} sip:x@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\n\
             From: <sip:a@example.com>;tag=1\nTo: <sip:x@example.com>\nCall-ID: h1\n\
             CSeq: 1 {method}\nContent-Length: 0\n\n"
        ),
        RouteKind::Request,
        net,
    )
}

#[test]
fn the_stock_ipban_block_and_the_pvs_in_a_script() {
    let reg = registry();
    let script = Script::load(
        &reg,
        "loadmodule \"htable.so\"\n\
         modparam(\"htable\", \"htable\", \"ipban=>size=8;autoexpire=300;\")\n\
         modparam(\"htable\", \"htable\", \"c=>size=4;initval=0;\")\n\
         request_route {\n\
             if ($sht(ipban=>$si) != $null) { $var(r) = \"banned\"; return 2; }\n\
             $sht(ipban=>$si) = 1;\n\
             $var(i) = $shtinc(c=>n);\n\
             $var(i) = $shtinc(c=>n);\n\
             $var(d) = $shtdec(c=>n);\n\
             $sht(c=>s) = \"text\";\n\
             if ($shtex(ipban=>$si) < 299) { return -5; }\n\
             if ($shtcn(ipban=>%~192.0.2.) < 1) { return -6; }\n\
             if ($shtcv(c=>==text) != 1) { return -7; }\n\
             if (!sht_is_null(\"c\", \"nothing\")) { return -8; }\n\
             if (sht_is_null(\"c\", \"s\")) { return -9; }\n\
             sht_is_null(\"nosuchtable\", \"s\"); if ($rc != -2) { return -10; }\n\
             sht_iterator_start(\"i\", \"c\");\n\
             $var(n) = 0;\n\
             while (sht_iterator_next(\"i\")) { $var(n) = $var(n) + 1; $var(k) = $shtitkey(i); }\n\
             sht_iterator_end(\"i\");\n\
             if ($var(n) != 2) { return -11; }\n\
             sht_lock(\"c=>n\"); $sht(c=>n) = $sht(c=>n) + 10; sht_unlock(\"c=>n\");\n\
             sht_setxi(\"c\", \"tmp\", 5, 60);\n\
             sht_rm_name_re(\"c=>^tm\");\n\
             if (sht_match_name(\"c\", \"eq\", \"tmp\")) { return -12; }\n\
             if (!sht_has_str_value(\"c\", \"sw\", \"te\")) { return -13; }\n\
             return 1;\n\
         }\n",
    );
    let mut st_rc = Vec::new();
    for _ in 0..2 {
        let (_, ctx) = script.run(request("OPTIONS", "192.0.2.7:5060"));
        st_rc.push(ctx.rc);
    }
    assert_eq!(
        st_rc,
        [1, 2],
        "first request is recorded, the second is banned"
    );
    let (_, ctx) = script.run(request("OPTIONS", "192.0.2.8:5060"));
    assert_eq!(ctx.rc, 1);
    // Both runs counted: 2 runs x (+1 +1 -1) + 2 x 10 under the lock.
    let rpc = reg
        .module("htable")
        .unwrap()
        .rpcs
        .iter()
        .find(|r| r.name == "htable.get")
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got = runtime
        .block_on(rpc.call(vec![Value::from("c"), Value::from("n")]))
        .unwrap();
    assert_eq!(
        got,
        ferrosip_api::RpcValue::Struct(vec![
            ("name".into(), ferrosip_api::RpcValue::Str("n".into())),
            ("value".into(), ferrosip_api::RpcValue::Int(22)),
        ])
    );
}
