//! Whole transaction lifecycles as a driver runs them, timer wheel and table included.
//!
//! Run with `cargo bench -p ferrosip-transaction --bench transaction`.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use ferrosip_sip::SipMessage;
use ferrosip_transaction::*;

const OPTIONS: &[u8] = b"OPTIONS sip:proxy.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:proxy.example.com>\r\n\
From: Alice <sip:alice@example.com>;tag=9fxced76sl\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 63104 OPTIONS\r\n\
Contact: <sip:alice@192.0.2.10>\r\n\
Accept: application/sdp\r\n\
Content-Length: 0\r\n\r\n";

const INVITE: &[u8] = b"INVITE sip:bob@192.0.2.20 SIP/2.0\r\n\
Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK5ee1.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport=5060\r\n\
Record-Route: <sip:proxy.example.com;lr>\r\n\
Max-Forwards: 69\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Alice <sip:alice@example.com>;tag=9fxced76sl\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@192.0.2.10>\r\n\
Content-Length: 0\r\n\r\n";

fn response(status: u16) -> Bytes {
    Bytes::from(format!(
        "SIP/2.0 {status} {}\r\n\
Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bK5ee1.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport=5060\r\n\
To: Bob <sip:bob@example.com>;tag=8321234356\r\n\
From: Alice <sip:alice@example.com>;tag=9fxced76sl\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        reason_phrase(status)
    ))
}

type Key = (u32, TimerId);

/// Carries out actions: timers into the wheel, sends counted.
fn drive(
    actions: Actions,
    slot: u32,
    now: Instant,
    wheel: &mut TimerWheel<Key>,
    handles: &mut Vec<(TimerId, TimerHandle)>,
) -> (usize, bool) {
    let mut sent = 0;
    let mut done = false;
    for a in actions {
        match a {
            Action::Send(b) => sent += black_box(b).len(),
            Action::ToTu(e) => {
                black_box(e);
            }
            Action::StartTimer(id, after) => {
                handles.push((id, wheel.insert(now, after, (slot, id))));
            }
            Action::CancelTimer(id) => {
                if let Some(k) = handles.iter().position(|(i, _)| *i == id) {
                    wheel.cancel(handles.swap_remove(k).1);
                }
            }
            Action::Terminated => done = true,
        }
    }
    (sent, done)
}

fn bench(c: &mut Criterion) {
    let cfg = TimerConfig::default();
    let mut g = c.benchmark_group("transaction");

    // Receive OPTIONS, miss in the table, create, TU answers 200 (local reply built),
    // one retransmission absorbed with the 200 resent, Timer J ends it, removed.
    g.bench_function("server_non_invite_lifecycle", |b| {
        let raw = Bytes::from_static(OPTIONS);
        let mut table: HashMap<ServerKey, (ServerNonInvite, Vec<(TimerId, TimerHandle)>)> =
            HashMap::new();
        let t0 = Instant::now();
        let mut wheel = TimerWheel::new(t0, Duration::from_millis(1));
        let mut now = t0;
        let mut expired = Vec::new();
        b.iter(|| {
            let req = SipMessage::parse(raw.clone()).unwrap();
            let probe = ServerKey::probe(&req).unwrap();
            assert!(!table.contains_key(probe.as_bytes()));
            table.insert(
                probe.to_key(),
                (ServerNonInvite::new(false, cfg), Vec::with_capacity(2)),
            );
            let ok = local_reply(&req, 200, "OK", None).unwrap();
            let (t, handles) = table.get_mut(probe.as_bytes()).unwrap();
            let a = t.send_reply(200, ok);
            drive(a, 0, now, &mut wheel, handles);

            let again = SipMessage::parse(raw.clone()).unwrap();
            let probe2 = ServerKey::probe(&again).unwrap();
            let (t, handles) = table.get_mut(probe2.as_bytes()).unwrap();
            let a = t.on_request(&again);
            drive(a, 0, now, &mut wheel, handles);

            now += Duration::from_secs(33);
            wheel.advance_into(now, &mut expired);
            for (_, id) in expired.drain(..) {
                let (t, handles) = table.get_mut(probe.as_bytes()).unwrap();
                let a = t.on_timer(id);
                if drive(a, 0, now, &mut wheel, handles).1 {
                    table.remove(probe.as_bytes());
                }
            }
            assert!(table.is_empty());
        })
    });

    // The state machine alone: create, 200, retransmission, Timer J.
    g.bench_function("server_non_invite_machine_only", |b| {
        let ok = Bytes::from_static(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n");
        b.iter(|| {
            let mut t = ServerNonInvite::new(false, cfg);
            let a = t.send_reply(200, ok.clone());
            let Action::StartTimer(j, _) = a[1] else {
                unreachable!()
            };
            black_box(t.on_retransmission());
            black_box(t.on_timer(j));
            assert!(t.is_terminated());
        })
    });

    // Proxy side of a rejected call: INVITE out, 180 and 486 in (ACK built and sent),
    // the 486 retransmitted once, Timer D ends it.
    g.bench_function("client_invite_486_lifecycle", |b| {
        let invite = SipMessage::parse(Bytes::from_static(INVITE)).unwrap();
        let r180 = response(180);
        let r486 = response(486);
        let mut table: HashMap<ClientKey, (ClientInvite, Vec<(TimerId, TimerHandle)>)> =
            HashMap::new();
        let t0 = Instant::now();
        let mut wheel = TimerWheel::new(t0, Duration::from_millis(1));
        let mut now = t0;
        let mut expired = Vec::new();
        b.iter(|| {
            let key = ClientKey::of_request(&invite).unwrap();
            let (t, a) = ClientInvite::new(invite.clone(), false, cfg);
            let mut handles = Vec::with_capacity(4);
            drive(a, 0, now, &mut wheel, &mut handles);
            table.insert(key, (t, handles));
            for raw in [&r180, &r486, &r486] {
                let resp = SipMessage::parse(raw.clone()).unwrap();
                let probe = ClientKey::probe(&resp).unwrap();
                let (t, handles) = table.get_mut(probe.as_bytes()).unwrap();
                let a = t.on_reply(&resp);
                drive(a, 0, now, &mut wheel, handles);
            }
            now += Duration::from_secs(33);
            wheel.advance_into(now, &mut expired);
            let key = ClientKey::new(b"z9hG4bK5ee1.0", b"INVITE");
            for (_, id) in expired.drain(..) {
                let (t, handles) = table.get_mut(key.as_bytes()).unwrap();
                let a = t.on_timer(id);
                if drive(a, 0, now, &mut wheel, handles).1 {
                    table.remove(key.as_bytes());
                }
            }
            assert!(table.is_empty());
        })
    });

    g.bench_function("server_key_probe", |b| {
        let req = SipMessage::parse(Bytes::from_static(OPTIONS)).unwrap();
        b.iter(|| black_box(ServerKey::probe(black_box(&req)).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
