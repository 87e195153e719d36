//! Parse + hot-field access, ours vs rsip 0.4, on a typical 13-header INVITE with SDP;
//! and the proxy forwarding path (parse, set R-URI, prepend Via, serialize).
//!
//! Run with `cargo bench -p ferrosip-sip`. The last bench group name prints how many of
//! the 13 valid RFC 4475 messages rsip accepts.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use ferrosip_sip::SipMessage;

/// A typical INVITE: 13 headers and an SDP body (CRLF line ends, byte-exact file).
const INVITE: &[u8] = include_bytes!("invite.sip");

/// Hot accessors: the fields come from where `parse` found them.
fn ours_parse_access(buf: &Bytes) -> usize {
    let m = SipMessage::parse(buf.clone()).expect("parses");
    let branch = m.top_via_branch().map_or(0, <[u8]>::len);
    let from_tag = m.from_tag().map_or(0, <[u8]>::len);
    let to_tag = m.to_tag().map_or(0, <[u8]>::len);
    let call_id = m.call_id().map_or(0, <[u8]>::len);
    let cseq = m.cseq().expect("cseq").seq as usize;
    let mf = m.max_forwards().expect("mf").unwrap_or(0) as usize;
    let host = m.request_uri_host().map_or(0, <[u8]>::len);
    branch + from_tag + to_tag + call_id + cseq + mf + host
}

/// Full typed views (Via, From, To, Request-URI) built on demand.
fn ours_parse_views(buf: &Bytes) -> usize {
    let m = SipMessage::parse(buf.clone()).expect("parses");
    let via = m.top_via().expect("via");
    let branch = via.branch().map_or(0, <[u8]>::len);
    let from_tag = m.from().expect("from").tag().map_or(0, <[u8]>::len);
    let to_tag = m.to().expect("to").tag().map_or(0, <[u8]>::len);
    let call_id = m.call_id().map_or(0, <[u8]>::len);
    let cseq = m.cseq().expect("cseq").seq as usize;
    let mf = m.max_forwards().expect("mf").unwrap_or(0) as usize;
    let host = m
        .request_uri_parsed()
        .and_then(|u| u.host().map(<[u8]>::len))
        .unwrap_or(0);
    branch + from_tag + to_tag + call_id + cseq + mf + host
}

fn rsip_parse_access(buf: &[u8]) -> usize {
    use rsip::prelude::*;
    let m = rsip::SipMessage::try_from(buf).expect("rsip parses");
    let rsip::SipMessage::Request(req) = m else {
        panic!("request")
    };
    let via = req.via_header().expect("via").typed().expect("typed via");
    let branch = via.branch().map_or(0, |b| b.to_string().len());
    let from_tag = req
        .from_header()
        .expect("from")
        .tag()
        .expect("from tag")
        .map_or(0, |t| t.value().len());
    let to_tag = req
        .to_header()
        .expect("to")
        .tag()
        .expect("to tag")
        .map_or(0, |t| t.value().len());
    let call_id = req.call_id_header().expect("call-id").value().len();
    let cseq = req.cseq_header().expect("cseq").seq().expect("seq") as usize;
    let mf = req.max_forwards_header().expect("mf").num().expect("num") as usize;
    let host = req.uri.host().to_string().len();
    branch + from_tag + to_tag + call_id + cseq + mf + host
}

fn forward(buf: &Bytes) -> Bytes {
    let mut m = SipMessage::parse(buf.clone()).expect("parses");
    m.set_request_uri(&b"sip:bob@192.0.2.4:5060;transport=udp"[..])
        .expect("uri");
    m.prepend_via(&b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK87asdks7"[..])
        .expect("via");
    m.to_bytes()
}

/// The 13 RFC 4475 messages that must parse (§3.1.1.*).
const VALID: [&str; 13] = [
    "wsinv.dat",
    "intmeth.dat",
    "esc01.dat",
    "escnull.dat",
    "esc02.dat",
    "lwsdisp.dat",
    "longreq.dat",
    "dblreq.dat",
    "semiuri.dat",
    "transports.dat",
    "mpart01.dat",
    "unreason.dat",
    "noreason.dat",
];

fn rfc4475_counts() -> Option<(usize, usize)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus/rfc4475");
    let mut ours = 0;
    let mut theirs = 0;
    for f in VALID {
        let raw = std::fs::read(dir.join(f)).ok()?;
        if SipMessage::parse(Bytes::from(raw.clone())).is_ok() {
            ours += 1;
        }
        let ok = std::panic::catch_unwind(|| rsip::SipMessage::try_from(&raw[..]).is_ok())
            .unwrap_or(false);
        if ok {
            theirs += 1;
        } else {
            eprintln!("rsip rejects {f}");
        }
    }
    Some((ours, theirs))
}

fn benches(c: &mut Criterion) {
    let buf = Bytes::from_static(INVITE);
    assert_eq!(ours_parse_access(&buf), rsip_parse_access(INVITE));
    c.bench_function("ferrosip parse+access INVITE", |b| {
        b.iter(|| ours_parse_access(black_box(&buf)))
    });
    assert_eq!(ours_parse_views(&buf), rsip_parse_access(INVITE));
    c.bench_function("ferrosip parse+typed views INVITE", |b| {
        b.iter(|| ours_parse_views(black_box(&buf)))
    });
    c.bench_function("ferrosip parse only INVITE", |b| {
        b.iter(|| SipMessage::parse(black_box(buf.clone())).expect("parses"))
    });
    c.bench_function("rsip parse+access INVITE", |b| {
        b.iter(|| rsip_parse_access(black_box(INVITE)))
    });
    c.bench_function("ferrosip parse+set_ruri+prepend_via+to_bytes", |b| {
        b.iter(|| forward(black_box(&buf)))
    });
    match rfc4475_counts() {
        Some((ours, theirs)) => {
            println!("RFC 4475 valid messages accepted: ferrosip {ours}/13, rsip {theirs}/13")
        }
        None => println!("RFC 4475 corpus not found; skipping the acceptance count"),
    }
}

criterion_group!(parse, benches);
criterion_main!(parse);
