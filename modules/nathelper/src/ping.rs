//! NAT keepalives: every `natping_interval` seconds each registered UDP contact gets a
//! 4-byte UDP packet or, when flagged with `sipping_bflag`, a SIP request (OPTIONS), sent
//! from the socket it registered through to the address it registered from.

use crate::addr::parse_ip;
use ferrosip_api::bytes::Bytes;
use ferrosip_api::registry::ModuleParams;
use ferrosip_api::services::LocalRequest;
use ferrosip_api::sip::{CommaList, NameAddr, Uri};
use ferrosip_api::tokio;
use ferrosip_api::{Proto, Services};
use ferrosip_mod_usrloc::{Contact, Usrloc};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The UDP keepalive: four zero bytes, which a SIP stack ignores.
const UDP_PING: &[u8] = &[0, 0, 0, 0];

/// The ping parameters, checked at load.
#[derive(Clone, Debug)]
pub struct PingConfig {
    /// Seconds between rounds; 0 is off.
    pub interval: u64,
    pub nated_only: bool,
    /// `sipping_from`: SIP pings need it.
    pub sipping_from: Option<Bytes>,
    pub sipping_method: Bytes,
    pub sipping_bflag: Option<u8>,
    pub disable_bflag: Option<u8>,
    /// `force_socket`: the local socket UDP pings leave from instead of the registered one.
    pub force_socket: Option<SocketAddr>,
    pub ignore_path: bool,
}

fn bflag(p: &ModuleParams, name: &str) -> Result<Option<u8>, String> {
    match p.int(name) {
        -1 => Ok(None),
        n @ 0..=31 => Ok(Some(n as u8)),
        n => Err(format!("{name} {n} is not -1 or a branch flag 0..31")),
    }
}

/// `udp:1.2.3.4:5060`, `1.2.3.4:5060` or `[::1]:5060`.
fn socket_addr(text: &str) -> Option<SocketAddr> {
    let t = text.trim();
    let t = t.strip_prefix("udp:").unwrap_or(t);
    t.parse().ok()
}

impl PingConfig {
    pub fn from_params(p: &ModuleParams) -> Result<PingConfig, String> {
        let interval = p.int("natping_interval");
        if interval < 0 {
            return Err(format!("natping_interval {interval} is negative"));
        }
        // What Ferrosip does not do is refused rather than silently ignored.
        if p.int("keepalive_timeout") != 0 {
            return Err("keepalive_timeout: removing contacts that do not answer pings is not implemented (leave it 0)".into());
        }
        if p.int("udpping_from_path") != 0 {
            return Err("udpping_from_path: raw-socket pings from the Path address are not implemented (leave it 0)".into());
        }
        if !p.string("natping_socket").trim().is_empty() {
            return Err("natping_socket: spoofing the ping source address needs a raw socket, which Ferrosip does not use (use force_socket)".into());
        }
        if p.int("filter_server_id") != 0 {
            return Err(
                "filter_server_id: usrloc keeps no server_id per contact here (leave it 0)".into(),
            );
        }
        let force = p.string("force_socket");
        let force_socket = if force.trim().is_empty() {
            None
        } else {
            Some(
                socket_addr(&force)
                    .ok_or_else(|| format!("force_socket \"{force}\" is not [udp:]IP:PORT"))?,
            )
        };
        let from = p.string("sipping_from");
        let sipping_from = (!from.trim().is_empty()).then(|| Bytes::from(from.trim().to_string()));
        if let Some(f) = &sipping_from {
            Uri::parse(f).map_err(|e| format!("sipping_from \"{from}\": {e}"))?;
        }
        let method = p.string("sipping_method");
        if method.is_empty() || !method.bytes().all(|c| c.is_ascii_alphabetic()) {
            return Err(format!("sipping_method \"{method}\" is not a SIP method"));
        }
        Ok(PingConfig {
            interval: interval as u64,
            nated_only: p.int("ping_nated_only") != 0,
            sipping_from,
            sipping_method: Bytes::from(method),
            sipping_bflag: bflag(p, "sipping_bflag")?,
            disable_bflag: bflag(p, "natping_disable_bflag")?,
            force_socket,
            ignore_path: p.int("ignore_path") != 0,
        })
    }
}

/// How a contact is pinged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ping {
    /// The keepalive packet from `local` (the registered socket) to `dst`.
    Udp {
        local: Option<SocketAddr>,
        dst: SocketAddr,
    },
    /// A SIP request to the contact URI, sent to `dst_uri` (received address or Path hop).
    Sip {
        uri: Bytes,
        dst_uri: Option<Bytes>,
        route: Option<Bytes>,
    },
}

fn has(cflags: u32, flag: Option<u8>) -> bool {
    flag.is_some_and(|f| cflags & (1 << f) != 0)
}

/// The transport a URI asks for (UDP when it names none).
fn uri_proto(uri: &Uri<'_>) -> Option<Proto> {
    match uri.param("transport") {
        Some(Some(t)) => Proto::from_bytes(t),
        Some(None) => None,
        None => Some(if uri.kind() == ferrosip_api::sip::Scheme::Sips {
            Proto::Tls
        } else {
            Proto::Udp
        }),
    }
}

/// Decides how (and whether) one contact gets a ping this round.
pub fn plan(cfg: &PingConfig, nat_bflag: Option<u8>, c: &Contact, now: i64) -> Option<Ping> {
    if c.expires != 0 && c.expires <= now {
        return None;
    }
    if has(c.cflags, cfg.disable_bflag) {
        return None;
    }
    let sip = cfg.sipping_from.is_some() && has(c.cflags, cfg.sipping_bflag);
    if cfg.nated_only && !has(c.cflags, nat_bflag) && !sip {
        return None;
    }
    let path = if cfg.ignore_path { &[][..] } else { c.path() };
    // Behind NAT the registrar kept where the REGISTER came from; else the contact itself.
    let target = if c.received().is_empty() {
        c.uri()
    } else {
        c.received()
    };
    let target_uri = Uri::parse(target).ok()?;
    if sip {
        let first_hop = CommaList::new(path)
            .next()
            .and_then(|h| NameAddr::parse(h).ok())
            .map(|na| Bytes::copy_from_slice(na.uri_bytes()));
        if first_hop.is_none() && uri_proto(&target_uri) != Some(Proto::Udp) {
            return None;
        }
        return Some(Ping::Sip {
            uri: Bytes::copy_from_slice(c.uri()),
            dst_uri: first_hop.clone().or_else(|| {
                (!c.received().is_empty()).then(|| Bytes::copy_from_slice(c.received()))
            }),
            route: first_hop.map(|_| Bytes::copy_from_slice(path)),
        });
    }
    // A contact registered through an edge proxy is kept open by that proxy.
    if !path.is_empty() || uri_proto(&target_uri) != Some(Proto::Udp) {
        return None;
    }
    let ip = parse_ip(target_uri.host()?)?;
    let dst = SocketAddr::new(ip, target_uri.port().unwrap_or(5060));
    let local = cfg.force_socket.or_else(|| {
        let s = std::str::from_utf8(c.socket()).ok()?;
        socket_addr(s).filter(|a| !a.ip().is_unspecified())
    });
    Some(Ping::Udp { local, dst })
}

/// The running pinger (one per server).
pub struct Pinger {
    pub cfg: PingConfig,
    /// `nathelper.enable_ping`.
    pub enabled: AtomicBool,
    pub udp_sent: AtomicU64,
    pub sip_sent: AtomicU64,
    pub failed: AtomicU64,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The runtime and the contacts, from the start hook, for the ready hook.
    setup: Mutex<Option<(tokio::runtime::Handle, Arc<Usrloc>)>>,
}

impl Pinger {
    pub fn new(cfg: PingConfig) -> Pinger {
        Pinger {
            cfg,
            enabled: AtomicBool::new(true),
            udp_sent: AtomicU64::new(0),
            sip_sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            task: Mutex::new(None),
            setup: Mutex::new(None),
        }
    }

    /// Keeps what the timer needs until the server's services exist.
    pub fn prepare(&self, runtime: tokio::runtime::Handle, store: Arc<Usrloc>) {
        *self.setup.lock().unwrap_or_else(|e| e.into_inner()) = Some((runtime, store));
    }

    /// Starts the timer task on `runtime` (once).
    pub fn start(self: &Arc<Self>, services: Arc<dyn Services>) {
        let Some((runtime, store)) = self.setup.lock().unwrap_or_else(|e| e.into_inner()).clone()
        else {
            return;
        };
        if self.cfg.interval == 0 {
            return;
        }
        let me = self.clone();
        let rt = runtime.clone();
        let task = runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(me.cfg.interval));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if me.enabled.load(Ordering::Relaxed) {
                    me.round(&rt, &services, &store);
                }
            }
        });
        let mut slot = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = slot.replace(task) {
            old.abort();
        }
    }

    pub fn stop(&self) {
        if let Some(t) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
    }

    /// One round over every contact in memory.
    fn round(&self, rt: &tokio::runtime::Handle, services: &Arc<dyn Services>, store: &Usrloc) {
        let now = store.unix_now();
        let nat_bflag = store.config().nat_bflag;
        let mut pings = Vec::new();
        for domain in store.domains() {
            domain.for_each(|_aor, contacts| {
                pings.extend(
                    contacts
                        .iter()
                        .filter_map(|c| plan(&self.cfg, nat_bflag, c, now)),
                );
            });
        }
        tracing::debug!(contacts = pings.len(), "nathelper: keepalive round");
        for ping in pings {
            match ping {
                Ping::Udp { local, dst } => {
                    match services.send_raw(Proto::Udp, local, dst, Bytes::from_static(UDP_PING)) {
                        Ok(()) => self.udp_sent.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            tracing::debug!(%dst, "nathelper: keepalive not sent: {}", e.message);
                            self.failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
                Ping::Sip {
                    uri,
                    dst_uri,
                    route,
                } => {
                    let headers = route
                        .map(|r| Bytes::from([b"Route: ", &r[..], b"\r\n"].concat()))
                        .unwrap_or_default();
                    let request = LocalRequest {
                        method: self.cfg.sipping_method.clone(),
                        uri,
                        dst_uri,
                        from: self.cfg.sipping_from.clone().unwrap_or_default(),
                        headers,
                        // A ping older than the next round is of no use.
                        timeout: Some(Duration::from_secs(self.cfg.interval.clamp(1, 32))),
                        ..LocalRequest::default()
                    };
                    match services.send_request(request) {
                        Ok(outcome) => {
                            self.sip_sent.fetch_add(1, Ordering::Relaxed);
                            rt.spawn(outcome);
                        }
                        Err(e) => {
                            tracing::debug!("nathelper: SIP ping not sent: {}", e.message);
                            self.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
    }
}
