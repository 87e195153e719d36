//! State machine paths, driven by a fake clock that carries out the actions the way a
//! driver would and checks they are consistent (no timer started twice, no cancel of a
//! timer that is not running, no timer left at termination, nothing after it).

use std::time::Duration;

use bytes::Bytes;
use ferrosip_sip::SipMessage;

use crate::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[derive(Default)]
struct Sim {
    now: Duration,
    running: Vec<(TimerId, Duration)>,
    sent: Vec<(Duration, Bytes)>,
    tu: Vec<(Duration, TuEvent)>,
    terminated: Option<Duration>,
}

impl Sim {
    fn apply(&mut self, actions: Actions) {
        for a in actions {
            assert!(self.terminated.is_none(), "action after Terminated: {a:?}");
            match a {
                Action::Send(b) => self.sent.push((self.now, b)),
                Action::ToTu(e) => self.tu.push((self.now, e)),
                Action::StartTimer(id, after) => {
                    assert!(
                        !self.running.iter().any(|(r, _)| r.kind == id.kind),
                        "{:?} started twice",
                        id.kind
                    );
                    self.running.push((id, self.now + after));
                }
                Action::CancelTimer(id) => {
                    let k = self
                        .running
                        .iter()
                        .position(|(r, _)| *r == id)
                        .unwrap_or_else(|| panic!("cancel of {id:?}, not running"));
                    self.running.remove(k);
                }
                Action::Terminated => {
                    assert!(self.running.is_empty(), "timers left: {:?}", self.running);
                    self.terminated = Some(self.now);
                }
            }
        }
    }

    fn deadline(&self, kind: TimerKind) -> Option<Duration> {
        self.running
            .iter()
            .find(|(id, _)| id.kind == kind)
            .map(|(_, at)| *at)
    }

    fn kinds(&self) -> Vec<TimerKind> {
        let mut k: Vec<_> = self.running.iter().map(|(id, _)| id.kind).collect();
        k.sort();
        k
    }

    /// Fires the earliest timer due at or before `until`; false when there is none.
    fn fire_next(
        &mut self,
        until: Duration,
        on_timer: &mut impl FnMut(TimerId) -> Actions,
    ) -> bool {
        let Some(k) = (0..self.running.len())
            .filter(|&k| self.running[k].1 <= until)
            .min_by_key(|&k| self.running[k].1)
        else {
            return false;
        };
        let (id, at) = self.running.remove(k);
        self.now = at;
        let actions = on_timer(id);
        self.apply(actions);
        true
    }

    /// Fires every timer due up to `until`, then sets the clock there.
    fn run_until(&mut self, until: Duration, mut on_timer: impl FnMut(TimerId) -> Actions) {
        while self.fire_next(until, &mut on_timer) {}
        self.now = self.now.max(until);
    }

    fn send_times(&self) -> Vec<Duration> {
        self.sent.iter().map(|(t, _)| *t).collect()
    }

    fn events(&self) -> Vec<TuEvent> {
        self.tu.iter().map(|(_, e)| *e).collect()
    }

    fn clear(&mut self) {
        self.sent.clear();
        self.tu.clear();
    }
}

const INVITE: &str = "INVITE sip:bob@b.example SIP/2.0\r\n\
Via: SIP/2.0/UDP proxy.example;branch=z9hG4bKp1\r\n\
Via: SIP/2.0/UDP pc.a.example;branch=z9hG4bKa1\r\n\
Route: <sip:r1.example;lr>\r\n\
Max-Forwards: 69\r\n\
To: <sip:bob@b.example>\r\n\
From: <sip:alice@a.example>;tag=1928\r\n\
Call-ID: c1@a.example\r\n\
CSeq: 7 INVITE\r\n\
Content-Length: 0\r\n\r\n";

fn invite() -> SipMessage {
    SipMessage::parse_slice(INVITE.as_bytes()).unwrap()
}

fn request(method: &str) -> SipMessage {
    SipMessage::parse_slice(
        INVITE
            .replace("INVITE sip:", &format!("{method} sip:"))
            .replace("7 INVITE", &format!("7 {method}"))
            .as_bytes(),
    )
    .unwrap()
}

fn response(status: u16, method: &str) -> SipMessage {
    SipMessage::parse_slice(
        format!(
            "SIP/2.0 {status} {}\r\nVia: SIP/2.0/UDP proxy.example;branch=z9hG4bKp1\r\n\
Via: SIP/2.0/UDP pc.a.example;branch=z9hG4bKa1\r\nTo: <sip:bob@b.example>;tag=b{status}\r\n\
From: <sip:alice@a.example>;tag=1928\r\nCall-ID: c1@a.example\r\nCSeq: 7 {method}\r\n\
Content-Length: 0\r\n\r\n",
            reason_phrase(status)
        )
        .as_bytes(),
    )
    .unwrap()
}

fn reply_bytes(status: u16) -> Bytes {
    Bytes::from(format!("SIP/2.0 {status} X\r\n\r\n"))
}

fn cfg() -> TimerConfig {
    TimerConfig::default()
}

// ---------- server INVITE ----------

#[test]
fn server_invite_sends_nothing_itself_and_absorbs_early_retransmissions() {
    let mut t = ServerInvite::new(false, cfg());
    assert_eq!(t.state(), ServerInviteState::Proceeding);
    assert!(t.on_request(&invite()).is_empty());
    assert!(t.on_request(&request("ACK")).is_empty());
    let trying = trying(&invite()).unwrap();
    assert_eq!(
        t.send_reply(100, trying.clone()).as_slice(),
        &[Action::Send(trying.clone())]
    );
    let ringing = reply_bytes(180);
    t.send_reply(180, ringing.clone());
    // The most recent provisional is what a retransmission gets.
    assert_eq!(t.on_request(&invite()).as_slice(), &[Action::Send(ringing)]);
    assert_eq!(t.state(), ServerInviteState::Proceeding);
}

#[test]
fn server_invite_non_2xx_retransmits_with_timer_g_until_h() {
    let mut t = ServerInvite::new(false, cfg());
    let mut sim = Sim::default();
    let busy = reply_bytes(486);
    sim.apply(t.send_reply(486, busy.clone()));
    assert_eq!(t.state(), ServerInviteState::Completed);
    assert_eq!(sim.kinds(), [TimerKind::G, TimerKind::H]);
    assert_eq!(sim.deadline(TimerKind::H), Some(secs(32)));
    sim.run_until(secs(40), |id| t.on_timer(id));
    // G: 0.5, then doubling to T2 = 4 s: 1.5, 3.5, 7.5, 11.5, ... 31.5; H at 32 s.
    let expect: Vec<Duration> = [
        0, 500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500,
    ]
    .iter()
    .map(|&m| ms(m))
    .collect();
    assert_eq!(sim.send_times(), expect);
    assert!(sim.sent.iter().all(|(_, b)| *b == busy));
    assert_eq!(sim.events(), [TuEvent::Timeout(TimerKind::H)]);
    assert_eq!(sim.terminated, Some(secs(32)));
    assert!(t.is_terminated());
}

#[test]
fn server_invite_ack_confirms_then_timer_i() {
    let mut t = ServerInvite::new(false, cfg());
    let mut sim = Sim::default();
    let busy = reply_bytes(486);
    sim.apply(t.send_reply(486, busy.clone()));
    sim.run_until(ms(600), |id| t.on_timer(id));
    // A retransmitted INVITE in Completed gets the final again.
    sim.apply(t.on_request(&invite()));
    assert_eq!(sim.sent.len(), 3);
    sim.apply(t.on_request(&request("ACK")));
    assert_eq!(t.state(), ServerInviteState::Confirmed);
    assert_eq!(sim.kinds(), [TimerKind::I]);
    assert_eq!(sim.deadline(TimerKind::I), Some(ms(600) + secs(5)));
    // Confirmed absorbs ACKs and INVITEs.
    sim.clear();
    sim.apply(t.on_request(&request("ACK")));
    sim.apply(t.on_request(&invite()));
    sim.apply(t.send_reply(200, reply_bytes(200)));
    assert!(sim.sent.is_empty() && sim.tu.is_empty());
    sim.run_until(secs(10), |id| t.on_timer(id));
    assert_eq!(sim.terminated, Some(ms(5600)));
    assert!(sim.tu.is_empty());
}

#[test]
fn server_invite_reliable_has_no_g_and_ends_at_the_ack() {
    let mut t = ServerInvite::new(true, cfg());
    let mut sim = Sim::default();
    sim.apply(t.send_reply(404, reply_bytes(404)));
    assert_eq!(sim.kinds(), [TimerKind::H]);
    sim.apply(t.on_ack());
    assert_eq!(sim.terminated, Some(Duration::ZERO));
    assert!(t.on_request(&invite()).is_empty());
}

#[test]
fn server_invite_2xx_goes_to_accepted() {
    let mut t = ServerInvite::new(false, cfg());
    let mut sim = Sim::default();
    let ok = reply_bytes(200);
    sim.apply(t.send_reply(180, reply_bytes(180)));
    sim.apply(t.send_reply(200, ok.clone()));
    assert_eq!(t.state(), ServerInviteState::Accepted);
    assert_eq!(sim.kinds(), [TimerKind::L]);
    assert_eq!(sim.deadline(TimerKind::L), Some(secs(32)));
    assert_eq!(t.last_response(), None);
    sim.clear();
    // INVITE retransmissions are absorbed, not answered and not passed up.
    sim.apply(t.on_request(&invite()));
    assert!(sim.sent.is_empty() && sim.tu.is_empty());
    // ACKs go up; more 2xx from the TU go out; anything else is refused.
    sim.apply(t.on_request(&request("ACK")));
    assert_eq!(sim.events(), [TuEvent::AckReceived]);
    sim.apply(t.send_reply(200, ok.clone()));
    assert_eq!(sim.sent.len(), 1);
    assert!(t.send_reply(486, reply_bytes(486)).is_empty());
    assert!(t.send_reply(183, reply_bytes(183)).is_empty());
    // A transport error is reported, but the transaction stays.
    sim.apply(t.on_transport_error());
    assert_eq!(
        sim.events(),
        [TuEvent::AckReceived, TuEvent::TransportError]
    );
    assert_eq!(t.state(), ServerInviteState::Accepted);
    sim.run_until(secs(60), |id| t.on_timer(id));
    assert_eq!(sim.terminated, Some(secs(32)));
}

#[test]
fn server_invite_transport_error_terminates() {
    for final_first in [false, true] {
        let mut t = ServerInvite::new(false, cfg());
        let mut sim = Sim::default();
        if final_first {
            sim.apply(t.send_reply(500, reply_bytes(500)));
        }
        sim.apply(t.on_transport_error());
        assert_eq!(sim.events(), [TuEvent::TransportError]);
        assert_eq!(sim.terminated, Some(Duration::ZERO));
        assert!(t.on_transport_error().is_empty());
        assert!(t.send_reply(200, reply_bytes(200)).is_empty());
    }
}

#[test]
fn server_invite_ignores_stale_and_foreign_timers() {
    let mut t = ServerInvite::new(false, cfg());
    let mut sim = Sim::default();
    sim.apply(t.send_reply(486, reply_bytes(486)));
    let g = sim
        .running
        .iter()
        .find(|(id, _)| id.kind == TimerKind::G)
        .unwrap()
        .0;
    assert!(t
        .on_timer(TimerId {
            kind: TimerKind::A,
            seq: g.seq
        })
        .is_empty());
    assert!(t
        .on_timer(TimerId {
            kind: TimerKind::G,
            seq: g.seq + 100
        })
        .is_empty());
    assert_eq!(t.on_timer(g).len(), 2); // resend + restart
    assert!(t.on_timer(g).is_empty(), "a fired id does not fire twice");
}

// ---------- server non-INVITE ----------

#[test]
fn server_non_invite_paths() {
    let mut t = ServerNonInvite::new(false, cfg());
    let mut sim = Sim::default();
    let req = request("OPTIONS");
    // Trying: retransmissions absorbed.
    sim.apply(t.on_request(&req));
    assert!(sim.sent.is_empty());
    sim.apply(t.send_reply(100, reply_bytes(100)));
    assert_eq!(t.state(), ServerNonInviteState::Proceeding);
    sim.apply(t.on_request(&req));
    assert_eq!(sim.sent.len(), 2);
    assert_eq!(sim.sent[1].1, reply_bytes(100));
    sim.apply(t.send_reply(200, reply_bytes(200)));
    assert_eq!(t.state(), ServerNonInviteState::Completed);
    assert_eq!(sim.kinds(), [TimerKind::J]);
    assert_eq!(sim.deadline(TimerKind::J), Some(secs(32)));
    sim.apply(t.on_request(&req));
    assert_eq!(sim.sent.last().unwrap().1, reply_bytes(200));
    assert!(t.send_reply(500, reply_bytes(500)).is_empty());
    sim.run_until(secs(40), |id| t.on_timer(id));
    assert_eq!(sim.terminated, Some(secs(32)));
    assert!(sim.tu.is_empty());
    assert!(t.on_request(&req).is_empty());
}

#[test]
fn server_non_invite_reliable_ends_at_the_final() {
    let mut t = ServerNonInvite::new(true, cfg());
    let mut sim = Sim::default();
    sim.apply(t.send_reply(404, reply_bytes(404)));
    assert_eq!(sim.sent.len(), 1);
    assert_eq!(sim.terminated, Some(Duration::ZERO));
    assert!(t.send_reply(1000, reply_bytes(200)).is_empty());
}

#[test]
fn server_non_invite_transport_error_and_bad_status() {
    let mut t = ServerNonInvite::new(false, cfg());
    assert!(t.send_reply(99, reply_bytes(200)).is_empty());
    assert_eq!(t.state(), ServerNonInviteState::Trying);
    let mut sim = Sim::default();
    sim.apply(t.on_transport_error());
    assert_eq!(sim.events(), [TuEvent::TransportError]);
    assert!(t.is_terminated());
}

#[test]
fn server_transaction_by_method() {
    let c = cfg();
    assert!(matches!(
        ServerTransaction::new(&invite(), false, c),
        Some(ServerTransaction::Invite(_))
    ));
    assert!(matches!(
        ServerTransaction::new(&request("CANCEL"), false, c),
        Some(ServerTransaction::NonInvite(_))
    ));
    assert!(ServerTransaction::new(&request("ACK"), false, c).is_none());
    assert!(ServerTransaction::new(&response(200, "INVITE"), false, c).is_none());
    let mut t = ServerTransaction::new(&request("BYE"), true, c).unwrap();
    assert_eq!(
        t.send_reply(200, reply_bytes(200)).last(),
        Some(&Action::Terminated)
    );
    assert!(t.is_terminated());
    assert_eq!(t.last_response(), Some(&reply_bytes(200)));
}

// ---------- client INVITE ----------

fn client_invite(reliable: bool, config: TimerConfig) -> (ClientInvite, Sim) {
    let (t, actions) = ClientInvite::new(invite(), reliable, config);
    let mut sim = Sim::default();
    sim.apply(actions);
    (t, sim)
}

#[test]
fn client_invite_timer_a_doubles_until_b() {
    let config = TimerConfig {
        fr_timer: secs(60),
        ..cfg()
    };
    let (mut t, mut sim) = client_invite(false, config);
    assert_eq!(sim.kinds(), [TimerKind::A, TimerKind::B, TimerKind::Fr]);
    assert_eq!(sim.deadline(TimerKind::B), Some(secs(32)));
    sim.run_until(secs(70), |id| t.on_timer(id));
    // A: 0.5, 1, 2, 4, 8, 16 s intervals (no T2 cap), until B at 64*T1.
    let expect: Vec<Duration> = [0, 500, 1500, 3500, 7500, 15_500, 31_500]
        .iter()
        .map(|&m| ms(m))
        .collect();
    assert_eq!(sim.send_times(), expect);
    assert!(sim.sent.iter().all(|(_, b)| *b == invite().to_bytes()));
    assert_eq!(sim.events(), [TuEvent::Timeout(TimerKind::B)]);
    assert_eq!(sim.terminated, Some(secs(32)));
}

#[test]
fn client_invite_fr_timer_shortens_calling() {
    let (mut t, mut sim) = client_invite(false, cfg());
    sim.run_until(secs(70), |id| t.on_timer(id));
    assert_eq!(sim.events(), [TuEvent::Timeout(TimerKind::Fr)]);
    assert_eq!(sim.terminated, Some(secs(30)));
    // No CANCEL: none may be sent before a provisional.
    let (mut t, mut sim) = client_invite(
        false,
        TimerConfig {
            fr_timer: secs(2),
            ..cfg()
        },
    );
    sim.apply(t.cancel());
    sim.run_until(secs(70), |id| t.on_timer(id));
    assert_eq!(sim.events(), [TuEvent::Timeout(TimerKind::Fr)]);
    assert_eq!(sim.terminated, Some(secs(2)));
}

#[test]
fn client_invite_provisional_then_non_2xx() {
    let (mut t, mut sim) = client_invite(false, cfg());
    sim.run_until(ms(700), |id| t.on_timer(id));
    sim.clear();
    sim.apply(t.on_reply(&response(180, "INVITE")));
    assert_eq!(t.state(), ClientInviteState::Proceeding);
    assert_eq!(sim.events(), [TuEvent::Response(180)]);
    // A and B stop; the final-response wait becomes fr_inv_timer.
    assert_eq!(sim.kinds(), [TimerKind::Fr]);
    assert_eq!(sim.deadline(TimerKind::Fr), Some(ms(700) + secs(120)));
    sim.apply(t.on_reply(&response(183, "INVITE")));
    assert_eq!(
        sim.events(),
        [TuEvent::Response(180), TuEvent::Response(183)]
    );
    sim.clear();
    let busy = response(486, "INVITE");
    sim.apply(t.on_reply(&busy));
    assert_eq!(t.state(), ClientInviteState::Completed);
    assert_eq!(sim.events(), [TuEvent::Response(486)]);
    assert_eq!(t.last_status(), Some(486));
    assert_eq!(sim.sent.len(), 1);
    let ack = SipMessage::parse(sim.sent[0].1.clone()).unwrap();
    assert_eq!(ack.method_bytes(), Some(&b"ACK"[..]));
    assert_eq!(ack.to_tag(), Some(&b"b486"[..]));
    assert_eq!(ack.cseq().unwrap().seq, 7);
    assert_eq!(ack.vias().count(), 1);
    assert_eq!(sim.kinds(), [TimerKind::D]);
    assert_eq!(sim.deadline(TimerKind::D), Some(ms(700) + secs(32)));
    // The request is let go (the ACK is kept); a retransmitted final: the ACK
    // again, nothing up.
    assert!(t.request().is_none());
    sim.clear();
    sim.apply(t.on_reply(&busy));
    assert_eq!(sim.sent.len(), 1);
    assert_eq!(sim.sent[0].1, ack.to_bytes());
    assert!(sim.tu.is_empty());
    // Provisionals and 2xx are ignored now.
    assert!(t.on_reply(&response(180, "INVITE")).is_empty());
    assert!(t.on_reply(&response(200, "INVITE")).is_empty());
    sim.run_until(secs(60), |id| t.on_timer(id));
    assert_eq!(sim.terminated, Some(ms(700) + secs(32)));
}

#[test]
fn client_invite_2xx_goes_to_accepted() {
    let (mut t, mut sim) = client_invite(false, cfg());
    sim.clear();
    sim.apply(t.on_reply(&response(200, "INVITE")));
    assert_eq!(t.state(), ClientInviteState::Accepted);
    assert_eq!(sim.events(), [TuEvent::Response(200)]);
    assert!(sim.sent.is_empty(), "a 2xx is ACKed end to end, not here");
    assert_eq!(sim.kinds(), [TimerKind::M]);
    sim.apply(t.on_reply(&response(200, "INVITE")));
    sim.apply(t.on_reply(&response(202, "INVITE")));
    assert!(t.on_reply(&response(486, "INVITE")).is_empty());
    assert!(t.on_reply(&response(180, "INVITE")).is_empty());
    assert_eq!(
        sim.events(),
        [
            TuEvent::Response(200),
            TuEvent::Later2xx(200),
            TuEvent::Later2xx(202)
        ]
    );
    assert!(t.on_transport_error().is_empty());
    assert!(t.cancel().is_empty());
    sim.run_until(secs(60), |id| t.on_timer(id));
    assert_eq!(sim.terminated, Some(secs(32)));
}

#[test]
fn client_invite_fr_inv_timer_cancels_and_waits_64_t1() {
    let (mut t, mut sim) = client_invite(false, cfg());
    sim.apply(t.on_reply(&response(180, "INVITE")));
    sim.clear();
    sim.run_until(secs(119), |id| t.on_timer(id));
    assert!(sim.tu.is_empty());
    sim.run_until(secs(121), |id| t.on_timer(id));
    assert_eq!(
        sim.events(),
        [TuEvent::Timeout(TimerKind::Fr), TuEvent::SendCancel]
    );
    assert_eq!(sim.kinds(), [TimerKind::B]);
    assert_eq!(sim.deadline(TimerKind::B), Some(secs(152)));
    // The 487 after our CANCEL still ends the transaction normally.
    let mut late = t.clone();
    let mut late_sim = Sim {
        now: sim.now,
        running: sim.running.clone(),
        ..Sim::default()
    };
    late_sim.apply(late.on_reply(&response(487, "INVITE")));
    assert_eq!(late_sim.events(), [TuEvent::Response(487)]);
    assert_eq!(late.state(), ClientInviteState::Completed);
    // Without it, B ends the wait, quietly: the TU heard of the timeout already.
    sim.clear();
    sim.run_until(secs(200), |id| t.on_timer(id));
    assert!(sim.tu.is_empty());
    assert_eq!(sim.terminated, Some(secs(152)));
}

#[test]
fn client_invite_cancel_waits_for_a_provisional() {
    let (mut t, mut sim) = client_invite(false, cfg());
    sim.apply(t.cancel());
    assert!(sim.tu.is_empty(), "no CANCEL before a provisional (§9.1)");
    sim.run_until(secs(1), |id| t.on_timer(id));
    sim.apply(t.on_reply(&response(100, "INVITE")));
    assert_eq!(sim.events(), [TuEvent::Response(100), TuEvent::SendCancel]);
    assert_eq!(sim.kinds(), [TimerKind::B]);
    assert_eq!(sim.deadline(TimerKind::B), Some(secs(33)));
    // Asking again sends no second CANCEL.
    sim.apply(t.cancel());
    assert_eq!(sim.events().len(), 2);
    // No final at all: the TU hears of the timeout at the end of the grace period.
    sim.run_until(secs(60), |id| t.on_timer(id));
    assert_eq!(sim.events()[2..], [TuEvent::Timeout(TimerKind::B)]);
    assert_eq!(sim.terminated, Some(secs(33)));
}

#[test]
fn client_invite_cancel_in_proceeding() {
    let (mut t, mut sim) = client_invite(false, cfg());
    sim.apply(t.on_reply(&response(180, "INVITE")));
    sim.clear();
    sim.apply(t.cancel());
    assert_eq!(sim.events(), [TuEvent::SendCancel]);
    assert_eq!(sim.kinds(), [TimerKind::B]);
    // The TU builds the CANCEL from the kept request when told to send it.
    let cancel = SipMessage::parse(build_cancel(t.request().unwrap()).unwrap()).unwrap();
    assert_eq!(cancel.top_via_branch(), Some(&b"z9hG4bKp1"[..]));
    // A 2xx may still win the race with the CANCEL; it goes up.
    sim.apply(t.on_reply(&response(200, "INVITE")));
    assert_eq!(sim.events(), [TuEvent::SendCancel, TuEvent::Response(200)]);
    assert_eq!(t.state(), ClientInviteState::Accepted);
    // Nothing can need the request after a final: it is not kept while Timer M runs.
    assert!(t.request().is_none());
}

#[test]
fn client_invite_reliable() {
    let (mut t, mut sim) = client_invite(true, cfg());
    assert_eq!(sim.kinds(), [TimerKind::B, TimerKind::Fr]);
    sim.apply(t.on_reply(&response(603, "INVITE")));
    assert_eq!(sim.sent.len(), 2); // INVITE, ACK
    assert_eq!(sim.events(), [TuEvent::Response(603)]);
    assert_eq!(sim.terminated, Some(Duration::ZERO));
}

#[test]
fn client_invite_transport_errors() {
    let (mut t, mut sim) = client_invite(false, cfg());
    sim.apply(t.on_transport_error());
    assert_eq!(sim.events(), [TuEvent::TransportError]);
    assert!(t.is_terminated());
    assert!(t.on_reply(&response(200, "INVITE")).is_empty());
    // In Completed (the ACK could not be sent) too.
    let (mut t, mut sim) = client_invite(false, cfg());
    sim.apply(t.on_reply(&response(500, "INVITE")));
    sim.apply(t.on_transport_error());
    assert_eq!(
        sim.events(),
        [TuEvent::Response(500), TuEvent::TransportError]
    );
    assert!(t.is_terminated());
    // A request given as a response is ignored.
    let (mut t, _) = client_invite(false, cfg());
    assert!(t.on_reply(&invite()).is_empty());
}

// ---------- client non-INVITE ----------

fn client_non_invite(reliable: bool, config: TimerConfig) -> (ClientNonInvite, Sim) {
    let (t, actions) = ClientNonInvite::new(request("OPTIONS").to_bytes(), reliable, config);
    let mut sim = Sim::default();
    sim.apply(actions);
    (t, sim)
}

#[test]
fn client_non_invite_timer_e_caps_at_t2_until_f() {
    let config = TimerConfig {
        fr_timer: secs(60),
        ..cfg()
    };
    let (mut t, mut sim) = client_non_invite(false, config);
    assert_eq!(sim.kinds(), [TimerKind::E, TimerKind::F, TimerKind::Fr]);
    sim.run_until(secs(70), |id| t.on_timer(id));
    let expect: Vec<Duration> = [
        0, 500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500,
    ]
    .iter()
    .map(|&m| ms(m))
    .collect();
    assert_eq!(sim.send_times(), expect);
    assert_eq!(sim.events(), [TuEvent::Timeout(TimerKind::F)]);
    assert_eq!(sim.terminated, Some(secs(32)));
}

#[test]
fn client_non_invite_fr_timer() {
    let (mut t, mut sim) = client_non_invite(false, cfg());
    sim.run_until(secs(70), |id| t.on_timer(id));
    assert_eq!(sim.events(), [TuEvent::Timeout(TimerKind::Fr)]);
    assert_eq!(sim.terminated, Some(secs(30)));
    // A provisional does not extend it.
    let (mut t, mut sim) = client_non_invite(
        false,
        TimerConfig {
            fr_timer: secs(5),
            ..cfg()
        },
    );
    sim.apply(t.on_status(100));
    sim.run_until(secs(70), |id| t.on_timer(id));
    assert_eq!(
        sim.events(),
        [TuEvent::Response(100), TuEvent::Timeout(TimerKind::Fr)]
    );
    assert_eq!(sim.terminated, Some(secs(5)));
}

#[test]
fn client_non_invite_proceeding_retransmits_at_t2() {
    let (mut t, mut sim) = client_non_invite(false, cfg());
    sim.now = ms(200);
    sim.apply(t.on_reply(&response(100, "OPTIONS")));
    assert_eq!(t.state(), ClientNonInviteState::Proceeding);
    sim.run_until(ms(13_000), |id| t.on_timer(id));
    // E still fires at 0.5 s (its interval was set in Trying), then every T2.
    let expect: Vec<Duration> = [0, 500, 4500, 8500, 12_500]
        .iter()
        .map(|&m| ms(m))
        .collect();
    assert_eq!(sim.send_times(), expect);
    sim.apply(t.on_reply(&response(200, "OPTIONS")));
    assert_eq!(t.state(), ClientNonInviteState::Completed);
    assert_eq!(
        sim.events(),
        [TuEvent::Response(100), TuEvent::Response(200)]
    );
    assert_eq!(sim.kinds(), [TimerKind::K]);
    assert_eq!(sim.deadline(TimerKind::K), Some(ms(18_000)));
    // Retransmitted finals and late provisionals are absorbed.
    assert!(t.on_reply(&response(200, "OPTIONS")).is_empty());
    assert!(t.on_reply(&response(180, "OPTIONS")).is_empty());
    assert!(t.on_transport_error().is_empty());
    sim.run_until(secs(60), |id| t.on_timer(id));
    assert_eq!(sim.terminated, Some(ms(18_000)));
    assert_eq!(t.last_status(), Some(200));
}

#[test]
fn client_non_invite_reliable_and_errors() {
    let (mut t, mut sim) = client_non_invite(true, cfg());
    assert_eq!(sim.kinds(), [TimerKind::F, TimerKind::Fr]);
    sim.apply(t.on_status(404));
    assert_eq!(sim.events(), [TuEvent::Response(404)]);
    assert_eq!(sim.terminated, Some(Duration::ZERO));
    assert!(
        t.request().is_empty(),
        "nothing retransmits it after the final"
    );
    assert!(t.on_status(200).is_empty());

    let (mut t, mut sim) = client_non_invite(false, cfg());
    sim.apply(t.on_transport_error());
    assert_eq!(sim.events(), [TuEvent::TransportError]);
    assert!(t.is_terminated());
    assert_eq!(t.request(), &request("OPTIONS").to_bytes());
}

#[test]
fn client_transaction_by_method() {
    let c = cfg();
    let (mut t, a) = ClientTransaction::new(invite(), false, c).unwrap();
    assert!(matches!(t, ClientTransaction::Invite(_)));
    assert_eq!(a.len(), 4);
    assert!(t.cancel().is_empty());
    let (mut n, _) = ClientTransaction::new(request("CANCEL"), false, c).unwrap();
    assert!(matches!(n, ClientTransaction::NonInvite(_)));
    assert!(n.cancel().is_empty());
    assert!(ClientTransaction::new(request("ACK"), false, c).is_none());
    let done = n.on_reply(&response(200, "CANCEL"));
    assert_eq!(
        done.last(),
        Some(&Action::StartTimer(
            TimerId {
                kind: TimerKind::K,
                seq: 4
            },
            secs(5)
        ))
    );
    assert!(t.on_transport_error().last() == Some(&Action::Terminated));
    assert!(t.is_terminated());
    assert!(!n.is_terminated());
}
