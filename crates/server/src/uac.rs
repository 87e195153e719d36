//! Requests the server originates itself (dispatcher's keepalive probes, later
//! notifications): each runs on its own non-INVITE client transaction
//! (`ferrosip-transaction`'s state machine, driven by a task on the async runtime), and
//! its final outcome is handed back once through a future.
//!
//! These transactions are not proxy cells: no server transaction, no routes of their
//! own. Replies find them by their branch (the same client key tm uses), after the core
//! `onreply_route`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use ferrosip_api::services::{LocalOutcome, LocalRequest};
use ferrosip_api::{FnError, Proto};
use ferrosip_sip::SipMessage;
use ferrosip_transaction::{
    Action, Actions, ClientKey, ClientNonInvite, TimerConfig, TimerId, TuEvent,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::outbound::{Hop, HopsNow, Outbound};

/// Kamailio's default `fr_timer`: how long a request of ours waits for a final reply.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A reply routed to a waiting transaction: status and reason phrase.
type ReplyMsg = (u16, Bytes, Bytes);

/// The table of open locally originated transactions.
pub struct LocalRequests {
    pending: Mutex<HashMap<ClientKey, mpsc::UnboundedSender<ReplyMsg>>>,
    next: AtomicU64,
    /// Makes our Call-IDs and branches differ from those of an earlier run.
    boot: u64,
    outbound: Arc<Outbound>,
    /// Where each request's transaction runs.
    runtime: tokio::runtime::Handle,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LocalRequests {
    /// Requests sent through `outbound`, their transactions driven on `runtime`.
    pub fn new(outbound: Arc<Outbound>, runtime: tokio::runtime::Handle) -> LocalRequests {
        let boot = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        LocalRequests {
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            boot,
            outbound,
            runtime,
        }
    }

    /// A reply to one of our requests: handed to its transaction (`true`), else `false`.
    pub fn on_reply(&self, msg: &SipMessage) -> bool {
        let Ok(probe) = ClientKey::probe(msg) else {
            return false;
        };
        let Some(tx) = lock(&self.pending).get(probe.as_bytes()).cloned() else {
            return false;
        };
        let status = msg.status().unwrap_or(500);
        let reason = msg.reason().map(Bytes::copy_from_slice).unwrap_or_default();
        // Only a final reply is handed to the sender.
        let raw = if status >= 200 {
            msg.to_bytes()
        } else {
            Bytes::new()
        };
        let _ = tx.send((status, reason, raw));
        true
    }

    /// Open transactions (for tests and stats).
    pub fn len(&self) -> usize {
        lock(&self.pending).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Header values come from the config or a destination list, never from the network;
/// still, a line break in one would let it inject headers.
fn one_line(what: &str, v: &[u8]) -> Result<(), FnError> {
    if v.iter().any(|c| *c == b'\r' || *c == b'\n') {
        return Err(FnError::new(format!("{what} contains a line break")));
    }
    Ok(())
}

impl LocalRequests {
    /// Sends `req` on a transaction of its own ([`ferrosip_api::Services::send_request`]).
    pub fn send(
        self: &Arc<Self>,
        req: LocalRequest,
    ) -> Result<std::pin::Pin<Box<dyn std::future::Future<Output = LocalOutcome> + Send>>, FnError>
    {
        let table = self;
        one_line("method", &req.method)?;
        one_line("request URI", &req.uri)?;
        one_line("From URI", &req.from)?;
        one_line("To URI", &req.to)?;
        let method = String::from_utf8_lossy(&req.method).into_owned();
        if method.is_empty() || method.bytes().any(|c| !c.is_ascii_alphabetic()) {
            return Err(FnError::new(format!("\"{method}\" is not a SIP method")));
        }
        let n = table.next.fetch_add(1, Ordering::Relaxed);
        let uri = String::from_utf8_lossy(&req.uri);
        let to = if req.to.is_empty() {
            uri.clone()
        } else {
            String::from_utf8_lossy(&req.to)
        };
        let call_id = match &req.call_id {
            Some(c) => {
                one_line("Call-ID", c)?;
                String::from_utf8_lossy(c).into_owned()
            }
            None => format!("{:x}-{n:x}@ferrosip", table.boot),
        };
        let mut text = String::with_capacity(384 + req.body.len());
        let from = String::from_utf8_lossy(&req.from);
        match &req.in_dialog {
            None => {
                let _ = write!(
                    text,
                    "{method} {uri} SIP/2.0\r\nMax-Forwards: 70\r\nFrom: <{from}>;tag={:x}\r\nTo: <{to}>\r\n\
                     Call-ID: {call_id}\r\nCSeq: {} {method}\r\nContent-Length: {}\r\n",
                    table.boot ^ n.rotate_left(17),
                    req.cseq.unwrap_or(10),
                    req.body.len()
                );
            }
            Some(d) => {
                // The dialog's identifiers come from messages of the network: refuse a
                // line break rather than write it into a header.
                one_line("Call-ID", &d.call_id)?;
                one_line("From tag", &d.from_tag)?;
                one_line("To tag", &d.to_tag)?;
                let _ = write!(
                    text,
                    "{method} {uri} SIP/2.0\r\nMax-Forwards: 70\r\nFrom: <{from}>;tag={}\r\nTo: <{to}>;tag={}\r\n\
                     Call-ID: {}\r\nCSeq: {} {method}\r\nContent-Length: {}\r\n",
                    String::from_utf8_lossy(&d.from_tag),
                    String::from_utf8_lossy(&d.to_tag),
                    String::from_utf8_lossy(&d.call_id),
                    d.cseq,
                    req.body.len()
                );
            }
        }
        let mut raw = text.into_bytes();
        raw.extend_from_slice(&req.headers);
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(&req.body);
        let msg = SipMessage::parse(Bytes::from(raw))
            .map_err(|e| FnError::new(format!("cannot build the {method} request: {e}")))?;
        let target = req.dst_uri.clone().unwrap_or_else(|| req.uri.clone());
        let timeout = req.timeout;
        let done_rx = match self.outbound.hops_now(None, Some(&target), &msg)? {
            HopsNow::Ready(mut hops) => self.launch(msg, hops.swap_remove(0), n, timeout)?,
            HopsNow::Lookup(question) => {
                // The host name is looked up in the request's own future, on the runtime.
                let table = self.clone();
                return Ok(Box::pin(async move {
                    let hop = match table.outbound.lookup(&question).await {
                        Ok(mut hops) => hops.swap_remove(0),
                        Err(e) => {
                            tracing::info!("{}", e.message);
                            return LocalOutcome::local(503, "Unresolvable Destination");
                        }
                    };
                    match table.launch(msg, hop, n, timeout) {
                        Ok(rx) => rx
                            .await
                            .unwrap_or_else(|_| LocalOutcome::local(500, "Server Stopping")),
                        Err(e) => {
                            tracing::info!("{}", e.message);
                            LocalOutcome::local(503, "Service Unavailable")
                        }
                    }
                }));
            }
        };
        Ok(Box::pin(async move {
            done_rx
                .await
                .unwrap_or_else(|_| LocalOutcome::local(500, "Server Stopping"))
        }))
    }

    /// Puts our Via on `msg`, opens its transaction towards `hop` and starts it.
    fn launch(
        self: &Arc<Self>,
        mut msg: SipMessage,
        hop: Hop,
        n: u64,
        timeout: Option<Duration>,
    ) -> Result<oneshot::Receiver<LocalOutcome>, FnError> {
        let table = self;
        let host = String::from_utf8_lossy(&hop.local.sent_by_host);
        let port = hop.local.sent_by_port;
        let via = format!(
            "SIP/2.0/{} {host}:{port};branch=z9hG4bKlr{:x}{n:x};rport",
            hop.proto.name().to_ascii_uppercase(),
            table.boot & 0xffff_ffff
        );
        msg.prepend_via(via.as_bytes())
            .map_err(|e| FnError::new(e.to_string()))?;
        let key = ClientKey::of_request(&msg).map_err(|e| FnError::new(format!("{e:?}")))?;
        let config = TimerConfig {
            fr_timer: timeout.unwrap_or(DEFAULT_TIMEOUT),
            ..TimerConfig::default()
        };
        let (client, actions) =
            ClientNonInvite::new(msg.to_bytes(), hop.proto != Proto::Udp, config);
        let (reply_tx, reply_rx) = mpsc::unbounded_channel();
        lock(&table.pending).insert(key.clone(), reply_tx);
        let (done_tx, done_rx) = oneshot::channel();
        let run = LocalTransaction {
            table: self.clone(),
            client,
            key,
            proto: hop.proto,
            local: hop.local.addr,
            dst: hop.dst,
            replies: reply_rx,
            done: Some(done_tx),
        };
        self.runtime.spawn(run.drive(actions));
        Ok(done_rx)
    }
}

/// One request of ours in flight.
struct LocalTransaction {
    /// The table it is in, to leave when it ends, and the sending side.
    table: Arc<LocalRequests>,
    client: ClientNonInvite,
    key: ClientKey,
    proto: Proto,
    local: std::net::SocketAddr,
    dst: std::net::SocketAddr,
    replies: mpsc::UnboundedReceiver<ReplyMsg>,
    done: Option<oneshot::Sender<LocalOutcome>>,
}

impl LocalTransaction {
    async fn drive(mut self, first: Actions) {
        let mut timers: Vec<(Instant, TimerId)> = Vec::new();
        let mut reason = Bytes::new();
        let mut reply = Bytes::new();
        let mut work: Vec<Action> = first.into_vec();
        let mut over = false;
        while !over {
            let mut i = 0;
            while i < work.len() {
                match work[i].clone() {
                    Action::Send(bytes) => {
                        if let Err(e) =
                            self.table
                                .outbound
                                .send(self.proto, Some(self.local), self.dst, bytes)
                        {
                            tracing::debug!(peer = %self.dst, "request not sent: {}", e.message);
                            work.extend(self.client.on_transport_error());
                        }
                    }
                    Action::StartTimer(id, after) => timers.push((Instant::now() + after, id)),
                    Action::CancelTimer(id) => timers.retain(|(_, t)| *t != id),
                    Action::ToTu(TuEvent::Response(code)) if code >= 200 => {
                        self.finish(LocalOutcome {
                            code,
                            reason: reason.clone(),
                            local: false,
                            reply: reply.clone(),
                        })
                    }
                    Action::ToTu(TuEvent::Timeout(_)) => {
                        self.finish(LocalOutcome::local(408, "Request Timeout"))
                    }
                    Action::ToTu(TuEvent::TransportError) => {
                        self.finish(LocalOutcome::local(503, "Service Unavailable"))
                    }
                    Action::ToTu(_) => {}
                    Action::Terminated => over = true,
                }
                i += 1;
            }
            work.clear();
            if over {
                break;
            }
            let next = timers
                .iter()
                .enumerate()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(i, t)| (i, *t));
            tokio::select! {
                got = self.replies.recv() => match got {
                    Some((code, why, raw)) => {
                        reason = why;
                        reply = raw;
                        work.extend(self.client.on_status(code));
                    }
                    None => break,
                },
                () = async {
                    match next {
                        Some((_, (at, _))) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some((i, (_, id))) = next {
                        timers.swap_remove(i);
                        work.extend(self.client.on_timer(id));
                    }
                }
            }
        }
        lock(&self.table.pending).remove(&self.key);
        // A transaction that ended without a final (cannot happen by the state machine,
        // but the caller must never wait forever).
        self.finish(LocalOutcome::local(408, "Request Timeout"));
    }

    fn finish(&mut self, outcome: LocalOutcome) {
        if let Some(tx) = self.done.take() {
            let _ = tx.send(outcome);
        }
    }
}
