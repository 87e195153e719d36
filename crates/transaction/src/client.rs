//! Client transactions (RFC 3261 §17.1, RFC 6026 §7.2).

use std::time::Duration;

use bytes::Bytes;
use ferrosip_sip::SipMessage;

use crate::action::{Action, Actions, TuEvent};
use crate::build::build_ack;
use crate::timer::{TimerConfig, TimerId, TimerKind, Timers};

/// States of an INVITE client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientInviteState {
    /// INVITE sent, nothing heard yet.
    Calling,
    /// A provisional arrived.
    Proceeding,
    /// A non-2xx final arrived and was ACKed; absorbing its retransmissions.
    Completed,
    /// A 2xx arrived (RFC 6026): passing more 2xx up until Timer M.
    Accepted,
    /// Over.
    Terminated,
}

/// The client side of an INVITE transaction.
///
/// Keeps the request, parsed, because the ACK for a non-2xx final and a CANCEL are
/// built from it, until a final response arrives: after that neither can be needed, and
/// the request's memory goes back while the transaction lingers (Timers D and M).
#[derive(Debug, Clone)]
pub struct ClientInvite {
    state: ClientInviteState,
    reliable: bool,
    config: TimerConfig,
    /// `None` once a final response arrived.
    request: Option<SipMessage>,
    request_bytes: Bytes,
    ack: Option<Bytes>,
    a_interval: Duration,
    /// The TU asked to cancel before a provisional arrived (§9.1 makes it wait).
    cancel_wanted: bool,
    /// SendCancel was already given to the TU.
    cancel_sent: bool,
    /// The TU was already told this branch timed out (Fr), so the end of the CANCEL
    /// grace period need not tell it again.
    timeout_told: bool,
    last_status: Option<u16>,
    timers: Timers,
}

impl ClientInvite {
    /// Starts the transaction: the returned actions send the INVITE and start Timers A
    /// (unreliable transports), B and Fr (`fr_timer`).
    pub fn new(
        request: SipMessage,
        reliable: bool,
        config: TimerConfig,
    ) -> (ClientInvite, Actions) {
        let request_bytes = request.to_bytes();
        let mut t = ClientInvite {
            state: ClientInviteState::Calling,
            reliable,
            config,
            request: Some(request),
            request_bytes: request_bytes.clone(),
            ack: None,
            a_interval: config.t1,
            cancel_wanted: false,
            cancel_sent: false,
            timeout_told: false,
            last_status: None,
            timers: Timers::new(),
        };
        let mut out = Actions::new();
        out.push(Action::Send(request_bytes));
        if !reliable {
            t.timers.start(TimerKind::A, config.t1, &mut out);
        }
        t.timers.start(TimerKind::B, config.t1x64(), &mut out);
        t.timers.start(TimerKind::Fr, config.fr_timer, &mut out);
        (t, out)
    }

    /// The current state.
    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    /// True once the transaction is over.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientInviteState::Terminated
    }

    /// The INVITE this transaction sends (for [`crate::build_cancel`]); `None` once a
    /// final response arrived.
    pub fn request(&self) -> Option<&SipMessage> {
        self.request.as_ref()
    }

    /// Lets go of the request once a final response made it useless.
    fn shed_request(&mut self) {
        self.request = None;
        self.request_bytes = Bytes::new();
    }

    /// The status of the last response passed up.
    pub fn last_status(&self) -> Option<u16> {
        self.last_status
    }

    /// True when the transport is reliable.
    pub fn is_reliable(&self) -> bool {
        self.reliable
    }

    /// The TU wants the INVITE cancelled (upstream CANCEL, a 2xx or 6xx on another
    /// branch). The transaction answers with [`TuEvent::SendCancel`] as soon as RFC
    /// 3261 §9.1 allows (now in Proceeding, at the first provisional in Calling) and
    /// then gives the INVITE 64*T1 to end, reusing Timer B.
    pub fn cancel(&mut self) -> Actions {
        let mut out = Actions::new();
        match self.state {
            ClientInviteState::Calling => self.cancel_wanted = true,
            ClientInviteState::Proceeding => self.send_cancel(&mut out),
            _ => {}
        }
        out
    }

    fn send_cancel(&mut self, out: &mut Actions) {
        if self.cancel_sent {
            return;
        }
        self.cancel_sent = true;
        out.push(Action::ToTu(TuEvent::SendCancel));
        self.timers.stop(TimerKind::Fr, out);
        self.timers.start(TimerKind::B, self.config.t1x64(), out);
    }

    /// A response that matched this transaction ([`crate::ClientKey::probe`]).
    pub fn on_reply(&mut self, resp: &SipMessage) -> Actions {
        let mut out = Actions::new();
        let Some(status) = resp.status() else {
            return out;
        };
        match (self.state, status) {
            (ClientInviteState::Calling, 100..=199) => {
                self.timers.stop(TimerKind::A, &mut out);
                self.timers.stop(TimerKind::B, &mut out);
                self.state = ClientInviteState::Proceeding;
                self.pass_up(status, &mut out);
                if self.cancel_wanted {
                    self.send_cancel(&mut out);
                } else {
                    // Kamailio's tm: once the callee is alerting, the wait is fr_inv_timer.
                    self.timers
                        .start(TimerKind::Fr, self.config.fr_inv_timer, &mut out);
                }
            }
            (ClientInviteState::Proceeding, 100..=199) => self.pass_up(status, &mut out),
            (ClientInviteState::Calling | ClientInviteState::Proceeding, 200..=299) => {
                self.timers.stop_all(&mut out);
                self.pass_up(status, &mut out);
                self.state = ClientInviteState::Accepted;
                self.shed_request();
                self.timers.start(
                    TimerKind::M,
                    self.config.lingering(self.config.t1x64()),
                    &mut out,
                );
            }
            (ClientInviteState::Calling | ClientInviteState::Proceeding, 300..=699) => {
                self.timers.stop_all(&mut out);
                // The ACK only fails for a request lacking what it copies, which a
                // request we sent does not; then there is nothing to send.
                self.ack = self.request.as_ref().and_then(|r| build_ack(r, resp).ok());
                self.shed_request();
                if let Some(ack) = &self.ack {
                    out.push(Action::Send(ack.clone()));
                }
                self.pass_up(status, &mut out);
                if self.reliable {
                    // Timer D is zero on reliable transports.
                    self.terminate(&mut out);
                } else {
                    self.state = ClientInviteState::Completed;
                    self.timers
                        .start(TimerKind::D, self.config.timer_d(), &mut out);
                }
            }
            (ClientInviteState::Completed, 300..=699) => {
                // The final was retransmitted: our ACK got lost.
                if let Some(ack) = &self.ack {
                    out.push(Action::Send(ack.clone()));
                }
            }
            (ClientInviteState::Accepted, 200..=299) => {
                self.last_status = Some(status);
                out.push(Action::ToTu(TuEvent::Later2xx(status)));
            }
            _ => {}
        }
        out
    }

    fn pass_up(&mut self, status: u16, out: &mut Actions) {
        self.last_status = Some(status);
        out.push(Action::ToTu(TuEvent::Response(status)));
    }

    /// A timer this transaction started fired.
    pub fn on_timer(&mut self, id: TimerId) -> Actions {
        let mut out = Actions::new();
        if !self.timers.fire(id) {
            return out;
        }
        match (self.state, id.kind) {
            (ClientInviteState::Calling, TimerKind::A) => {
                out.push(Action::Send(self.request_bytes.clone()));
                // Timer A doubles without the T2 cap non-INVITE requests get: B ends it.
                self.a_interval *= 2;
                self.timers.start(TimerKind::A, self.a_interval, &mut out);
            }
            (ClientInviteState::Calling, TimerKind::B | TimerKind::Fr) => {
                out.push(Action::ToTu(TuEvent::Timeout(id.kind)));
                self.terminate(&mut out);
            }
            (ClientInviteState::Proceeding, TimerKind::Fr) => {
                // fr_inv_timer: the branch is given up on (the TU counts it as a 408) and
                // cancelled; the transaction stays for the 487 (or a late 2xx, which
                // must still go up) for at most 64*T1.
                out.push(Action::ToTu(TuEvent::Timeout(TimerKind::Fr)));
                self.timeout_told = true;
                self.send_cancel(&mut out);
            }
            (ClientInviteState::Proceeding, TimerKind::B) => {
                // The INVITE never ended after our CANCEL (§9.1). The TU hears of it
                // unless fr_inv_timer already told it, so a response context waiting on
                // this branch is not left waiting.
                if !self.timeout_told {
                    out.push(Action::ToTu(TuEvent::Timeout(TimerKind::B)));
                }
                self.terminate(&mut out);
            }
            (ClientInviteState::Completed, TimerKind::D)
            | (ClientInviteState::Accepted, TimerKind::M) => self.terminate(&mut out),
            _ => {}
        }
        out
    }

    /// Sending failed (the INVITE, a retransmission or the ACK).
    pub fn on_transport_error(&mut self) -> Actions {
        let mut out = Actions::new();
        match self.state {
            ClientInviteState::Calling
            | ClientInviteState::Proceeding
            | ClientInviteState::Completed => {
                out.push(Action::ToTu(TuEvent::TransportError));
                self.terminate(&mut out);
            }
            ClientInviteState::Accepted | ClientInviteState::Terminated => {}
        }
        out
    }

    fn terminate(&mut self, out: &mut Actions) {
        self.timers.stop_all(out);
        self.state = ClientInviteState::Terminated;
        self.shed_request();
        out.push(Action::Terminated);
    }
}

/// States of a non-INVITE client transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientNonInviteState {
    /// Request sent, nothing heard yet.
    Trying,
    /// A provisional arrived.
    Proceeding,
    /// The final arrived; absorbing its retransmissions (Timer K).
    Completed,
    /// Over.
    Terminated,
}

/// The client side of a non-INVITE transaction (including CANCEL).
#[derive(Debug, Clone)]
pub struct ClientNonInvite {
    state: ClientNonInviteState,
    reliable: bool,
    config: TimerConfig,
    request: Bytes,
    e_interval: Duration,
    last_status: Option<u16>,
    timers: Timers,
}

impl ClientNonInvite {
    /// Starts the transaction: the returned actions send the request and start Timers
    /// E (unreliable transports), F and Fr (`fr_timer`).
    pub fn new(request: Bytes, reliable: bool, config: TimerConfig) -> (ClientNonInvite, Actions) {
        let mut t = ClientNonInvite {
            state: ClientNonInviteState::Trying,
            reliable,
            config,
            request: request.clone(),
            e_interval: config.t1,
            last_status: None,
            timers: Timers::new(),
        };
        let mut out = Actions::new();
        out.push(Action::Send(request));
        if !reliable {
            t.timers.start(TimerKind::E, config.t1, &mut out);
        }
        t.timers.start(TimerKind::F, config.t1x64(), &mut out);
        t.timers.start(TimerKind::Fr, config.fr_timer, &mut out);
        (t, out)
    }

    /// The current state.
    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    /// True once the transaction is over.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientNonInviteState::Terminated
    }

    /// The request this transaction sends (empty once a final response arrived).
    pub fn request(&self) -> &Bytes {
        &self.request
    }

    /// The status of the last response passed up.
    pub fn last_status(&self) -> Option<u16> {
        self.last_status
    }

    /// True when the transport is reliable.
    pub fn is_reliable(&self) -> bool {
        self.reliable
    }

    /// A response that matched this transaction.
    pub fn on_reply(&mut self, resp: &SipMessage) -> Actions {
        match resp.status() {
            Some(status) => self.on_status(status),
            None => Actions::new(),
        }
    }

    /// [`ClientNonInvite::on_reply`] given only the status code, which is all a
    /// non-INVITE transaction looks at.
    pub fn on_status(&mut self, status: u16) -> Actions {
        let mut out = Actions::new();
        match (self.state, status) {
            (ClientNonInviteState::Trying | ClientNonInviteState::Proceeding, 100..=199) => {
                // Kamailio's tm keeps fr_timer running for non-INVITE: a provisional
                // does not buy the request more time.
                self.state = ClientNonInviteState::Proceeding;
                self.last_status = Some(status);
                out.push(Action::ToTu(TuEvent::Response(status)));
            }
            (ClientNonInviteState::Trying | ClientNonInviteState::Proceeding, 200..=699) => {
                self.timers.stop_all(&mut out);
                // Nothing retransmits the request any more: its memory goes back while
                // the transaction lingers (Timer K).
                self.request = Bytes::new();
                self.last_status = Some(status);
                out.push(Action::ToTu(TuEvent::Response(status)));
                if self.reliable {
                    // Timer K is zero on reliable transports.
                    self.terminate(&mut out);
                } else {
                    self.state = ClientNonInviteState::Completed;
                    self.timers.start(TimerKind::K, self.config.t4, &mut out);
                }
            }
            _ => {}
        }
        out
    }

    /// A timer this transaction started fired.
    pub fn on_timer(&mut self, id: TimerId) -> Actions {
        let mut out = Actions::new();
        if !self.timers.fire(id) {
            return out;
        }
        match (self.state, id.kind) {
            (ClientNonInviteState::Trying, TimerKind::E) => {
                out.push(Action::Send(self.request.clone()));
                self.e_interval = (self.e_interval * 2).min(self.config.t2);
                self.timers.start(TimerKind::E, self.e_interval, &mut out);
            }
            (ClientNonInviteState::Proceeding, TimerKind::E) => {
                // §17.1.2.2: once the server is known to be working, retransmit at T2.
                out.push(Action::Send(self.request.clone()));
                self.e_interval = self.config.t2;
                self.timers.start(TimerKind::E, self.e_interval, &mut out);
            }
            (
                ClientNonInviteState::Trying | ClientNonInviteState::Proceeding,
                TimerKind::F | TimerKind::Fr,
            ) => {
                out.push(Action::ToTu(TuEvent::Timeout(id.kind)));
                self.terminate(&mut out);
            }
            (ClientNonInviteState::Completed, TimerKind::K) => self.terminate(&mut out),
            _ => {}
        }
        out
    }

    /// Sending the request failed.
    pub fn on_transport_error(&mut self) -> Actions {
        let mut out = Actions::new();
        if matches!(
            self.state,
            ClientNonInviteState::Trying | ClientNonInviteState::Proceeding
        ) {
            out.push(Action::ToTu(TuEvent::TransportError));
            self.terminate(&mut out);
        }
        out
    }

    fn terminate(&mut self, out: &mut Actions) {
        self.timers.stop_all(out);
        self.state = ClientNonInviteState::Terminated;
        out.push(Action::Terminated);
    }
}

/// Either kind of client transaction, for a driver that keeps them in one table.
#[derive(Debug, Clone)]
pub enum ClientTransaction {
    /// INVITE (boxed: it keeps the parsed request, which makes it several times the
    /// size of a non-INVITE transaction).
    Invite(Box<ClientInvite>),
    /// Anything else except ACK (which is sent without a transaction).
    NonInvite(ClientNonInvite),
}

impl ClientTransaction {
    /// Starts the transaction for a request by its method. `None` for ACK: a 2xx ACK
    /// is sent once, without a transaction, and a non-2xx ACK comes from
    /// [`ClientInvite`] itself.
    pub fn new(
        request: SipMessage,
        reliable: bool,
        config: TimerConfig,
    ) -> Option<(ClientTransaction, Actions)> {
        match request.method_bytes()? {
            b"INVITE" => {
                let (t, a) = ClientInvite::new(request, reliable, config);
                Some((ClientTransaction::Invite(Box::new(t)), a))
            }
            b"ACK" => None,
            _ => {
                let (t, a) = ClientNonInvite::new(request.to_bytes(), reliable, config);
                Some((ClientTransaction::NonInvite(t), a))
            }
        }
    }

    /// See [`ClientInvite::on_reply`], [`ClientNonInvite::on_reply`].
    pub fn on_reply(&mut self, resp: &SipMessage) -> Actions {
        match self {
            ClientTransaction::Invite(t) => t.on_reply(resp),
            ClientTransaction::NonInvite(t) => t.on_reply(resp),
        }
    }

    /// See [`ClientInvite::on_timer`], [`ClientNonInvite::on_timer`].
    pub fn on_timer(&mut self, id: TimerId) -> Actions {
        match self {
            ClientTransaction::Invite(t) => t.on_timer(id),
            ClientTransaction::NonInvite(t) => t.on_timer(id),
        }
    }

    /// See [`ClientInvite::on_transport_error`].
    pub fn on_transport_error(&mut self) -> Actions {
        match self {
            ClientTransaction::Invite(t) => t.on_transport_error(),
            ClientTransaction::NonInvite(t) => t.on_transport_error(),
        }
    }

    /// [`ClientInvite::cancel`]; nothing for a non-INVITE (only INVITE is cancelled).
    pub fn cancel(&mut self) -> Actions {
        match self {
            ClientTransaction::Invite(t) => t.cancel(),
            ClientTransaction::NonInvite(_) => Actions::new(),
        }
    }

    /// True once the transaction is over.
    pub fn is_terminated(&self) -> bool {
        match self {
            ClientTransaction::Invite(t) => t.is_terminated(),
            ClientTransaction::NonInvite(t) => t.is_terminated(),
        }
    }
}
