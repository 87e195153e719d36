//! Server transactions (RFC 3261 §17.2, RFC 6026 §7.1).

use std::time::Duration;

use bytes::Bytes;
use ferrosip_sip::SipMessage;

use crate::action::{Action, Actions, TuEvent};
use crate::timer::{TimerConfig, TimerId, TimerKind, Timers};

/// States of an INVITE server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerInviteState {
    /// Waiting for the TU's final response; provisionals may have gone out.
    Proceeding,
    /// A non-2xx final went out; retransmitting it until the ACK comes.
    Completed,
    /// The ACK came; absorbing its retransmissions.
    Confirmed,
    /// A 2xx went out (RFC 6026): absorbing INVITE retransmissions, relaying more 2xx
    /// from the TU, passing ACKs up.
    Accepted,
    /// Over.
    Terminated,
}

/// The server side of an INVITE transaction.
///
/// Create one when an INVITE matches no transaction, then feed it the requests that
/// match its key ([`crate::ServerKey::probe`]; retransmitted INVITEs and ACKs), the
/// responses the TU wants sent, timer firings and transport errors.
#[derive(Debug, Clone)]
pub struct ServerInvite {
    state: ServerInviteState,
    reliable: bool,
    config: TimerConfig,
    last_response: Option<Bytes>,
    g_interval: Duration,
    timers: Timers,
}

impl ServerInvite {
    /// A transaction for an INVITE that just arrived. It sends nothing yet: whether and
    /// when to send 100 Trying is the TU's call ([`crate::trying`]).
    pub fn new(reliable: bool, config: TimerConfig) -> ServerInvite {
        ServerInvite {
            state: ServerInviteState::Proceeding,
            reliable,
            config,
            last_response: None,
            g_interval: config.t1,
            timers: Timers::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    /// True once the transaction is over.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerInviteState::Terminated
    }

    /// The last response sent (what a retransmitted request gets again).
    pub fn last_response(&self) -> Option<&Bytes> {
        self.last_response.as_ref()
    }

    /// True when the transport is reliable (no retransmissions, zero-length waits).
    pub fn is_reliable(&self) -> bool {
        self.reliable
    }

    /// A request that matched this transaction: a retransmitted INVITE or an ACK.
    pub fn on_request(&mut self, req: &SipMessage) -> Actions {
        match req.method_bytes() {
            Some(b"ACK") => self.on_ack(),
            Some(b"INVITE") => self.on_retransmission(),
            _ => Actions::new(),
        }
    }

    /// A retransmission of the INVITE.
    pub fn on_retransmission(&mut self) -> Actions {
        let mut out = Actions::new();
        match self.state {
            // §17.2.1: the most recent provisional (if the TU sent one) or the final
            // goes out again; the peer evidently did not get it.
            ServerInviteState::Proceeding | ServerInviteState::Completed => {
                if let Some(r) = &self.last_response {
                    out.push(Action::Send(r.clone()));
                }
            }
            // RFC 6026 §7.1: absorbed; the UAS core retransmits its 2xx on its own.
            ServerInviteState::Accepted
            | ServerInviteState::Confirmed
            | ServerInviteState::Terminated => {}
        }
        out
    }

    /// An ACK that matched this transaction.
    pub fn on_ack(&mut self) -> Actions {
        let mut out = Actions::new();
        match self.state {
            ServerInviteState::Completed => {
                self.timers.stop(TimerKind::G, &mut out);
                self.timers.stop(TimerKind::H, &mut out);
                if self.reliable {
                    // Timer I is zero on reliable transports: no ACK retransmissions
                    // will come to absorb.
                    self.terminate(&mut out);
                } else {
                    self.state = ServerInviteState::Confirmed;
                    self.timers.start(TimerKind::I, self.config.t4, &mut out);
                }
            }
            // RFC 6026 §7.1: an ACK here acknowledges a 2xx, which is the TU's business.
            ServerInviteState::Accepted => out.push(Action::ToTu(TuEvent::AckReceived)),
            ServerInviteState::Proceeding
            | ServerInviteState::Confirmed
            | ServerInviteState::Terminated => {}
        }
        out
    }

    /// The TU sends a response. Ignored (no actions) when the state does not allow it:
    /// anything after a non-2xx final, and anything but 2xx after a 2xx.
    pub fn send_reply(&mut self, status: u16, reply: Bytes) -> Actions {
        let mut out = Actions::new();
        match (self.state, status) {
            (ServerInviteState::Proceeding, 100..=199) => {
                self.last_response = Some(reply.clone());
                out.push(Action::Send(reply));
            }
            (ServerInviteState::Proceeding, 200..=299) => {
                // The 2xx is not kept: retransmitting it is the UAS core's job, and an
                // INVITE retransmission in Accepted is absorbed.
                self.last_response = None;
                out.push(Action::Send(reply));
                self.state = ServerInviteState::Accepted;
                self.timers.start(
                    TimerKind::L,
                    self.config.lingering(self.config.t1x64()),
                    &mut out,
                );
            }
            (ServerInviteState::Proceeding, 300..=699) => {
                self.last_response = Some(reply.clone());
                out.push(Action::Send(reply));
                self.state = ServerInviteState::Completed;
                if !self.reliable {
                    self.g_interval = self.config.t1;
                    self.timers.start(TimerKind::G, self.g_interval, &mut out);
                }
                self.timers
                    .start(TimerKind::H, self.config.t1x64(), &mut out);
            }
            (ServerInviteState::Accepted, 200..=299) => out.push(Action::Send(reply)),
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
            (ServerInviteState::Completed, TimerKind::G) => {
                if let Some(r) = &self.last_response {
                    out.push(Action::Send(r.clone()));
                }
                self.g_interval = (self.g_interval * 2).min(self.config.t2);
                self.timers.start(TimerKind::G, self.g_interval, &mut out);
            }
            (ServerInviteState::Completed, TimerKind::H) => {
                out.push(Action::ToTu(TuEvent::Timeout(TimerKind::H)));
                self.terminate(&mut out);
            }
            (ServerInviteState::Confirmed, TimerKind::I)
            | (ServerInviteState::Accepted, TimerKind::L) => self.terminate(&mut out),
            _ => {}
        }
        out
    }

    /// Sending a response failed.
    pub fn on_transport_error(&mut self) -> Actions {
        let mut out = Actions::new();
        match self.state {
            ServerInviteState::Proceeding | ServerInviteState::Completed => {
                out.push(Action::ToTu(TuEvent::TransportError));
                self.terminate(&mut out);
            }
            // RFC 6026 §7.1: the TU hears of it but the transaction stays, because the
            // TU may still hand it 2xx retransmissions to send.
            ServerInviteState::Accepted => out.push(Action::ToTu(TuEvent::TransportError)),
            ServerInviteState::Confirmed | ServerInviteState::Terminated => {}
        }
        out
    }

    fn terminate(&mut self, out: &mut Actions) {
        self.timers.stop_all(out);
        self.state = ServerInviteState::Terminated;
        out.push(Action::Terminated);
    }
}

/// States of a non-INVITE server transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerNonInviteState {
    /// Nothing sent yet.
    Trying,
    /// A provisional went out.
    Proceeding,
    /// The final went out; absorbing request retransmissions (Timer J).
    Completed,
    /// Over.
    Terminated,
}

/// The server side of a non-INVITE transaction (including CANCEL).
#[derive(Debug, Clone)]
pub struct ServerNonInvite {
    state: ServerNonInviteState,
    reliable: bool,
    config: TimerConfig,
    last_response: Option<Bytes>,
    timers: Timers,
}

impl ServerNonInvite {
    /// A transaction for a request that just arrived.
    pub fn new(reliable: bool, config: TimerConfig) -> ServerNonInvite {
        ServerNonInvite {
            state: ServerNonInviteState::Trying,
            reliable,
            config,
            last_response: None,
            timers: Timers::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    /// True once the transaction is over.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerNonInviteState::Terminated
    }

    /// The last response sent.
    pub fn last_response(&self) -> Option<&Bytes> {
        self.last_response.as_ref()
    }

    /// True when the transport is reliable.
    pub fn is_reliable(&self) -> bool {
        self.reliable
    }

    /// A retransmission of the request.
    pub fn on_request(&mut self, _req: &SipMessage) -> Actions {
        self.on_retransmission()
    }

    /// A retransmission of the request: absorbed in Trying, answered with the last
    /// response after one was sent (§17.2.2).
    pub fn on_retransmission(&mut self) -> Actions {
        let mut out = Actions::new();
        if matches!(
            self.state,
            ServerNonInviteState::Proceeding | ServerNonInviteState::Completed
        ) {
            if let Some(r) = &self.last_response {
                out.push(Action::Send(r.clone()));
            }
        }
        out
    }

    /// The TU sends a response; ignored after the final.
    pub fn send_reply(&mut self, status: u16, reply: Bytes) -> Actions {
        let mut out = Actions::new();
        if !matches!(
            self.state,
            ServerNonInviteState::Trying | ServerNonInviteState::Proceeding
        ) || !(100..=699).contains(&status)
        {
            return out;
        }
        self.last_response = Some(reply.clone());
        out.push(Action::Send(reply));
        if status < 200 {
            self.state = ServerNonInviteState::Proceeding;
        } else if self.reliable {
            // Timer J is zero on reliable transports.
            self.terminate(&mut out);
        } else {
            self.state = ServerNonInviteState::Completed;
            self.timers.start(
                TimerKind::J,
                self.config.lingering(self.config.t1x64()),
                &mut out,
            );
        }
        out
    }

    /// A timer this transaction started fired.
    pub fn on_timer(&mut self, id: TimerId) -> Actions {
        let mut out = Actions::new();
        if self.timers.fire(id)
            && self.state == ServerNonInviteState::Completed
            && id.kind == TimerKind::J
        {
            self.terminate(&mut out);
        }
        out
    }

    /// Sending a response failed.
    pub fn on_transport_error(&mut self) -> Actions {
        let mut out = Actions::new();
        if self.state != ServerNonInviteState::Terminated {
            out.push(Action::ToTu(TuEvent::TransportError));
            self.terminate(&mut out);
        }
        out
    }

    fn terminate(&mut self, out: &mut Actions) {
        self.timers.stop_all(out);
        self.state = ServerNonInviteState::Terminated;
        out.push(Action::Terminated);
    }
}

/// Either kind of server transaction, for a driver that keeps them in one table.
#[derive(Debug, Clone)]
pub enum ServerTransaction {
    /// INVITE.
    Invite(ServerInvite),
    /// Anything else except ACK (which never creates a server transaction).
    NonInvite(ServerNonInvite),
}

impl ServerTransaction {
    /// The transaction for a request that matched none: INVITE or non-INVITE by its
    /// method. An ACK that matches nothing gets no transaction (it is a 2xx ACK, to be
    /// forwarded statelessly); `None` then.
    pub fn new(req: &SipMessage, reliable: bool, config: TimerConfig) -> Option<Self> {
        match req.method_bytes()? {
            b"INVITE" => Some(ServerTransaction::Invite(ServerInvite::new(
                reliable, config,
            ))),
            b"ACK" => None,
            _ => Some(ServerTransaction::NonInvite(ServerNonInvite::new(
                reliable, config,
            ))),
        }
    }

    /// See [`ServerInvite::on_request`], [`ServerNonInvite::on_request`].
    pub fn on_request(&mut self, req: &SipMessage) -> Actions {
        match self {
            ServerTransaction::Invite(t) => t.on_request(req),
            ServerTransaction::NonInvite(t) => t.on_request(req),
        }
    }

    /// See [`ServerInvite::send_reply`], [`ServerNonInvite::send_reply`].
    pub fn send_reply(&mut self, status: u16, reply: Bytes) -> Actions {
        match self {
            ServerTransaction::Invite(t) => t.send_reply(status, reply),
            ServerTransaction::NonInvite(t) => t.send_reply(status, reply),
        }
    }

    /// See [`ServerInvite::on_timer`], [`ServerNonInvite::on_timer`].
    pub fn on_timer(&mut self, id: TimerId) -> Actions {
        match self {
            ServerTransaction::Invite(t) => t.on_timer(id),
            ServerTransaction::NonInvite(t) => t.on_timer(id),
        }
    }

    /// See [`ServerInvite::on_transport_error`].
    pub fn on_transport_error(&mut self) -> Actions {
        match self {
            ServerTransaction::Invite(t) => t.on_transport_error(),
            ServerTransaction::NonInvite(t) => t.on_transport_error(),
        }
    }

    /// True once the transaction is over.
    pub fn is_terminated(&self) -> bool {
        match self {
            ServerTransaction::Invite(t) => t.is_terminated(),
            ServerTransaction::NonInvite(t) => t.is_terminated(),
        }
    }

    /// The last response sent.
    pub fn last_response(&self) -> Option<&Bytes> {
        match self {
            ServerTransaction::Invite(t) => t.last_response(),
            ServerTransaction::NonInvite(t) => t.last_response(),
        }
    }
}
