//! Random event sequences against every state machine: no panic, the actions stay
//! consistent (no timer started twice or cancelled when not running, none left at the
//! end, nothing after Terminated), and once the TU has answered, timers alone always
//! bring the transaction to an end.

use std::time::Duration;

use bytes::Bytes;
use ferrosip_sip::SipMessage;
use ferrosip_transaction::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Event {
    /// A retransmitted request (server) or nothing (client).
    Request,
    Ack,
    /// The TU sends a response (server) or a response arrives (client).
    Status(u16),
    /// The k-th running timer fires (modulo how many run).
    Fire(usize),
    /// A timer id the transaction never started, or no longer runs.
    Stale(u8, u32),
    TransportError,
    Cancel,
}

fn event() -> impl Strategy<Value = Event> {
    let status = prop_oneof![
        Just(100u16),
        Just(180),
        Just(183),
        Just(200),
        Just(202),
        Just(302),
        Just(401),
        Just(486),
        Just(487),
        Just(500),
        Just(503),
        Just(603),
        100u16..700,
    ];
    prop_oneof![
        2 => Just(Event::Request),
        2 => Just(Event::Ack),
        4 => status.prop_map(Event::Status),
        4 => (0usize..8).prop_map(Event::Fire),
        1 => (0u8..13, 0u32..40).prop_map(|(k, s)| Event::Stale(k, s)),
        1 => Just(Event::TransportError),
        1 => Just(Event::Cancel),
    ]
}

const KINDS: [TimerKind; 13] = [
    TimerKind::A,
    TimerKind::B,
    TimerKind::D,
    TimerKind::E,
    TimerKind::F,
    TimerKind::G,
    TimerKind::H,
    TimerKind::I,
    TimerKind::J,
    TimerKind::K,
    TimerKind::L,
    TimerKind::M,
    TimerKind::Fr,
];

const INVITE: &str = "INVITE sip:bob@b.example SIP/2.0\r\n\
Via: SIP/2.0/UDP proxy.example;branch=z9hG4bKp1\r\n\
To: <sip:bob@b.example>\r\nFrom: <sip:a@a.example>;tag=1\r\nCall-ID: c@a\r\n\
CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

fn msg(s: &str) -> SipMessage {
    SipMessage::parse_slice(s.as_bytes()).unwrap()
}

fn response(status: u16) -> SipMessage {
    msg(&format!(
        "SIP/2.0 {status} R\r\nVia: SIP/2.0/UDP proxy.example;branch=z9hG4bKp1\r\n\
To: <sip:bob@b.example>;tag=x\r\nFrom: <sip:a@a.example>;tag=1\r\nCall-ID: c@a\r\n\
CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ))
}

/// The uniform face of the four machines for this test.
trait Machine {
    fn event(&mut self, e: &Event, ids: &[TimerId]) -> Actions;
    fn timer(&mut self, id: TimerId) -> Actions;
    /// What the TU eventually does if it has not yet: answer (servers) or nothing.
    fn finish(&mut self) -> Actions;
    fn done(&self) -> bool;
}

fn stale(k: u8, s: u32) -> TimerId {
    TimerId {
        kind: KINDS[k as usize % KINDS.len()],
        seq: s,
    }
}

fn pick(ids: &[TimerId], k: usize) -> Option<TimerId> {
    (!ids.is_empty()).then(|| ids[k % ids.len()])
}

impl Machine for ServerInvite {
    fn event(&mut self, e: &Event, ids: &[TimerId]) -> Actions {
        match e {
            Event::Request => self.on_request(&msg(INVITE)),
            Event::Ack => self.on_ack(),
            Event::Status(s) => self.send_reply(*s, Bytes::from(format!("SIP/2.0 {s} R\r\n\r\n"))),
            Event::Fire(k) => pick(ids, *k)
                .map(|id| self.on_timer(id))
                .unwrap_or_default(),
            Event::Stale(k, s) => self.on_timer(stale(*k, *s)),
            Event::TransportError => self.on_transport_error(),
            Event::Cancel => Actions::new(),
        }
    }
    fn timer(&mut self, id: TimerId) -> Actions {
        self.on_timer(id)
    }
    fn finish(&mut self) -> Actions {
        self.send_reply(500, Bytes::from_static(b"SIP/2.0 500 R\r\n\r\n"))
    }
    fn done(&self) -> bool {
        self.is_terminated()
    }
}

impl Machine for ServerNonInvite {
    fn event(&mut self, e: &Event, ids: &[TimerId]) -> Actions {
        match e {
            Event::Request | Event::Ack => self.on_retransmission(),
            Event::Status(s) => self.send_reply(*s, Bytes::from(format!("SIP/2.0 {s} R\r\n\r\n"))),
            Event::Fire(k) => pick(ids, *k)
                .map(|id| self.on_timer(id))
                .unwrap_or_default(),
            Event::Stale(k, s) => self.on_timer(stale(*k, *s)),
            Event::TransportError => self.on_transport_error(),
            Event::Cancel => Actions::new(),
        }
    }
    fn timer(&mut self, id: TimerId) -> Actions {
        self.on_timer(id)
    }
    fn finish(&mut self) -> Actions {
        self.send_reply(200, Bytes::from_static(b"SIP/2.0 200 R\r\n\r\n"))
    }
    fn done(&self) -> bool {
        self.is_terminated()
    }
}

impl Machine for ClientInvite {
    fn event(&mut self, e: &Event, ids: &[TimerId]) -> Actions {
        match e {
            Event::Request | Event::Ack => Actions::new(),
            Event::Status(s) => self.on_reply(&response(*s)),
            Event::Fire(k) => pick(ids, *k)
                .map(|id| self.on_timer(id))
                .unwrap_or_default(),
            Event::Stale(k, s) => self.on_timer(stale(*k, *s)),
            Event::TransportError => self.on_transport_error(),
            Event::Cancel => self.cancel(),
        }
    }
    fn timer(&mut self, id: TimerId) -> Actions {
        self.on_timer(id)
    }
    fn finish(&mut self) -> Actions {
        Actions::new()
    }
    fn done(&self) -> bool {
        self.is_terminated()
    }
}

impl Machine for ClientNonInvite {
    fn event(&mut self, e: &Event, ids: &[TimerId]) -> Actions {
        match e {
            Event::Request | Event::Ack | Event::Cancel => Actions::new(),
            Event::Status(s) => self.on_status(*s),
            Event::Fire(k) => pick(ids, *k)
                .map(|id| self.on_timer(id))
                .unwrap_or_default(),
            Event::Stale(k, s) => self.on_timer(stale(*k, *s)),
            Event::TransportError => self.on_transport_error(),
        }
    }
    fn timer(&mut self, id: TimerId) -> Actions {
        self.on_timer(id)
    }
    fn finish(&mut self) -> Actions {
        Actions::new()
    }
    fn done(&self) -> bool {
        self.is_terminated()
    }
}

#[derive(Default)]
struct Checker {
    running: Vec<(TimerId, Duration)>,
    terminated: bool,
    now: Duration,
}

impl Checker {
    fn apply(&mut self, actions: Actions) -> Result<(), TestCaseError> {
        for a in actions {
            prop_assert!(!self.terminated, "action after Terminated: {:?}", a);
            match a {
                Action::Send(b) => prop_assert!(!b.is_empty()),
                Action::ToTu(_) => {}
                Action::StartTimer(id, after) => {
                    prop_assert!(
                        !self.running.iter().any(|(r, _)| r.kind == id.kind),
                        "{:?} started twice",
                        id.kind
                    );
                    prop_assert!(after <= Duration::from_secs(120));
                    self.running.push((id, self.now + after));
                }
                Action::CancelTimer(id) => {
                    let k = self.running.iter().position(|(r, _)| *r == id);
                    prop_assert!(k.is_some(), "cancel of {:?}, not running", id);
                    self.running.remove(k.unwrap());
                }
                Action::Terminated => {
                    prop_assert!(self.running.is_empty(), "left: {:?}", self.running);
                    self.terminated = true;
                }
            }
        }
        Ok(())
    }

    fn ids(&self) -> Vec<TimerId> {
        self.running.iter().map(|(id, _)| *id).collect()
    }

    fn fire_earliest(&mut self, m: &mut dyn Machine) -> Result<bool, TestCaseError> {
        let Some(k) = (0..self.running.len()).min_by_key(|&k| self.running[k].1) else {
            return Ok(false);
        };
        let (id, at) = self.running.remove(k);
        self.now = self.now.max(at);
        self.apply(m.timer(id))?;
        Ok(true)
    }
}

fn run(m: &mut dyn Machine, start: Actions, events: &[Event]) -> Result<(), TestCaseError> {
    let mut c = Checker::default();
    c.apply(start)?;
    for e in events {
        let ids = c.ids();
        // A fired timer leaves the running set before its handler runs, as in a wheel.
        if let Event::Fire(k) = e {
            if let Some(id) = pick(&ids, *k) {
                let pos = c.running.iter().position(|(r, _)| *r == id).unwrap();
                let (_, at) = c.running.remove(pos);
                c.now = c.now.max(at);
                let actions = m.timer(id);
                c.apply(actions)?;
                continue;
            }
        }
        // A guessed id may name a running timer: then it is a real firing.
        if let Event::Stale(k, s) = e {
            if let Some(pos) = c.running.iter().position(|(r, _)| *r == stale(*k, *s)) {
                c.running.remove(pos);
            }
        }
        let actions = m.event(e, &ids);
        c.apply(actions)?;
        prop_assert_eq!(m.done(), c.terminated);
    }
    if !c.terminated {
        let actions = m.finish();
        c.apply(actions)?;
    }
    let mut firings = 0;
    while !c.terminated {
        prop_assert!(c.fire_earliest(m)?, "stuck without a running timer");
        firings += 1;
        prop_assert!(firings < 100, "no end after 100 timer firings");
    }
    prop_assert!(m.done());
    // Nothing comes out of a terminated transaction.
    for e in events.iter().take(5) {
        prop_assert!(m.event(e, &[]).is_empty());
    }
    prop_assert!(m.finish().is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn server_invite(reliable: bool, events in prop::collection::vec(event(), 0..40)) {
        let mut m = ServerInvite::new(reliable, TimerConfig::default());
        run(&mut m, Actions::new(), &events)?;
    }

    #[test]
    fn server_non_invite(reliable: bool, events in prop::collection::vec(event(), 0..40)) {
        let mut m = ServerNonInvite::new(reliable, TimerConfig::default());
        run(&mut m, Actions::new(), &events)?;
    }

    #[test]
    fn client_invite(reliable: bool, fr in 1u64..200, events in prop::collection::vec(event(), 0..40)) {
        let config = TimerConfig { fr_timer: Duration::from_secs(fr.min(100)), ..TimerConfig::default() };
        let (mut m, start) = ClientInvite::new(msg(INVITE), reliable, config);
        run(&mut m, start, &events)?;
    }

    #[test]
    fn client_non_invite(reliable: bool, events in prop::collection::vec(event(), 0..40)) {
        let (mut m, start) = ClientNonInvite::new(Bytes::from_static(INVITE.as_bytes()), reliable, TimerConfig::default());
        run(&mut m, start, &events)?;
    }
}
