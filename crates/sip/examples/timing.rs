//! Noise-resistant timing (minimum over batches) of the hot path; a sanity check next
//! to the criterion bench on a shared machine: `cargo run --release -p ferrosip-sip --example timing`.
use bytes::Bytes;
use ferrosip_sip::SipMessage;
use std::hint::black_box;
use std::time::Instant;

const INVITE: &[u8] = include_bytes!("../benches/invite.sip");

fn min_ns(mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..3000 {
        let t = Instant::now();
        for _ in 0..100 {
            f();
        }
        best = best.min(t.elapsed().as_nanos() as f64 / 100.0);
    }
    best
}

fn main() {
    let buf = Bytes::from_static(INVITE);
    // `timing parse N` runs only the parse N times, for `perf stat` instruction counts
    // that a busy machine does not blur.
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 {
        let n: usize = args[2].parse().expect("count");
        for _ in 0..n {
            match args[1].as_str() {
                "parse" => {
                    black_box(SipMessage::parse(black_box(buf.clone())).unwrap());
                }
                "index" => {
                    black_box(ferrosip_sip::frame_len(black_box(INVITE), 65536).unwrap());
                }
                _ => {
                    black_box(rsip::SipMessage::try_from(black_box(INVITE)).unwrap());
                }
            }
        }
        return;
    }
    let parse = min_ns(|| {
        black_box(SipMessage::parse(black_box(buf.clone())).unwrap());
    });
    let access = min_ns(|| {
        let m = SipMessage::parse(black_box(buf.clone())).unwrap();
        let v = m.top_via().unwrap();
        black_box((
            v.branch(),
            m.from_tag(),
            m.to_tag(),
            m.call_id(),
            m.cseq().unwrap().seq,
            m.max_forwards().unwrap(),
        ));
        black_box(m.request_uri_parsed().unwrap().host());
    });
    let parsed = SipMessage::parse(buf.clone()).unwrap();
    let access_only = min_ns(|| {
        let m = black_box(&parsed);
        black_box((m.top_via_branch(), m.from_tag(), m.to_tag(), m.call_id()));
        black_box((
            m.cseq().unwrap().seq,
            m.max_forwards().unwrap(),
            m.request_uri_host(),
        ));
    });
    println!("hot access alone {access_only:.1} ns");
    let fwd = min_ns(|| {
        let mut m = SipMessage::parse(black_box(buf.clone())).unwrap();
        m.set_request_uri(&b"sip:bob@192.0.2.4:5060;transport=udp"[..])
            .unwrap();
        m.prepend_via(&b"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK87asdks7"[..])
            .unwrap();
        black_box(m.to_bytes());
    });
    let frame = min_ns(|| {
        black_box(ferrosip_sip::frame_len(black_box(INVITE), 65536).unwrap());
    });
    let uri = min_ns(|| {
        black_box(ferrosip_sip::Uri::parse(black_box(b"sip:alice@atlanta.example.com")).unwrap());
    });
    let na = min_ns(|| {
        black_box(
            ferrosip_sip::NameAddr::parse(black_box(
                b"Alice <sip:alice@atlanta.example.com>;tag=1928301774",
            ))
            .unwrap(),
        );
    });
    let via = min_ns(|| {
        black_box(
            ferrosip_sip::Via::parse(black_box(
                b"SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport",
            ))
            .unwrap(),
        );
    });
    println!("index-only (frame_len) {frame:.0} ns, uri {uri:.0}, name-addr {na:.0}, via {via:.0}");
    let rsip = min_ns(|| {
        black_box(rsip::SipMessage::try_from(black_box(INVITE)).unwrap());
    });
    println!("parse {parse:.0} ns, parse+access {access:.0} ns, forward {fwd:.0} ns, rsip parse-only {rsip:.0} ns");
}
