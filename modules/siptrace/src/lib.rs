//! `siptrace`: copies SIP messages to a capture server (Homer and other HEP collectors, or
//! a plain SIP address) and to a local pcap file.
//!
//! Two ways in, as in Kamailio: `sip_trace()` in a route copies the message being routed;
//! `trace_mode=1` copies every message the server receives and sends (a
//! [`ferrosip_api::trace::MessageTap`] the server calls on its receive and send paths).
//! Both work while tracing is on (`trace_on`, RPC `siptrace.status on|off`). With
//! `hep_mode_on=1` each copy is a HEP3 packet ([`hep`]) sent over UDP; without it, the SIP
//! message itself is sent to `duplicate_uri`. `trace_pcap_file` (Ferrosip's own) writes
//! each copy to a pcap file as well ([`pcap`]). Storing to a database is not built.

pub mod hep;
pub mod pcap;

use bytes::Bytes;
use ferrosip_api::trace::{MessageTap, TappedMessage};
use ferrosip_api::{
    FnError, Module, ModuleBuilder, ModuleParams, MsgContext, ParamType, Proto, RouteMask,
    RpcValue, StateSlot, Value, Verdict,
};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The `siptrace` module.
pub struct SiptraceModule;

/// Default bound of `trace_pcap_max_size`.
const PCAP_MAX_SIZE: i64 = 1 << 30;

/// The module's state, built from its parameters at load.
pub struct Siptrace {
    /// `trace_on` and the RPC's switch; kept across reloads (a reload skips init).
    on: Arc<AtomicBool>,
    /// `trace_mode=1`: every message received and sent is copied.
    mirror: bool,
    /// `duplicate_uri`, resolved at load.
    destination: Option<SocketAddr>,
    hep: bool,
    capture_id: u32,
    auth_key: Option<String>,
    socket: Option<UdpSocket>,
    pcap: Option<Mutex<pcap::PcapFile>>,
    /// Copies that could not be sent (the collector's socket refused them).
    send_errors: AtomicU64,
}

/// `sip:HOST:PORT` (Kamailio's form), `udp:HOST:PORT` or `HOST:PORT`; the port defaults
/// to 5060 as in a SIP URI.
fn parse_destination(uri: &str) -> Result<SocketAddr, String> {
    let rest = uri.trim();
    let rest = ["sip:", "udp:", "hep3:", "hep:"]
        .iter()
        .find_map(|p| {
            rest.get(..p.len())
                .filter(|h| h.eq_ignore_ascii_case(p))
                .map(|_| &rest[p.len()..])
        })
        .unwrap_or(rest);
    let rest = rest.split(';').next().unwrap_or(rest);
    let with_port = if rest.starts_with('[') {
        if rest.contains("]:") {
            rest.to_string()
        } else {
            format!("{rest}:5060")
        }
    } else if rest.contains(':') {
        rest.to_string()
    } else {
        format!("{rest}:5060")
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| format!("duplicate_uri {uri:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("duplicate_uri {uri:?}: no address"))
}

impl Siptrace {
    fn from_params(p: &ModuleParams, on: Arc<AtomicBool>) -> Result<Siptrace, String> {
        if p.int("trace_to_database") != 0 {
            return Err(
                "trace_to_database: storing traces in a database is not built in this version of Ferrosip; send them to a HEP collector (hep_mode_on, duplicate_uri) or a pcap file (trace_pcap_file)"
                    .into(),
            );
        }
        let mirror = match p.int("trace_mode") {
            0 => false,
            1 => true,
            other => {
                return Err(format!(
                    "trace_mode {other}: only 0 (sip_trace() only) and 1 (mirror every message to duplicate_uri/the pcap file) are built; storing to a database (2) is not"
                ))
            }
        };
        if p.int("hep_version") != 3 {
            return Err(format!(
                "hep_version {}: only HEP version 3 is sent",
                p.int("hep_version")
            ));
        }
        let capture_id = u32::try_from(p.int("hep_capture_id"))
            .map_err(|_| "hep_capture_id must be 0..4294967295".to_string())?;
        let uri = p.string("duplicate_uri");
        let destination = if uri.is_empty() {
            None
        } else {
            Some(parse_destination(&uri)?)
        };
        let socket = match destination {
            Some(d) => {
                let any: SocketAddr = if d.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let s = UdpSocket::bind(any).map_err(|e| format!("duplicate_uri socket: {e}"))?;
                // A slow collector must never hold a SIP worker: a full buffer drops the copy.
                s.set_nonblocking(true)
                    .map_err(|e| format!("duplicate_uri socket: {e}"))?;
                Some(s)
            }
            None => None,
        };
        let path = p.string("trace_pcap_file");
        let pcap = if path.is_empty() {
            None
        } else {
            let limit = p.int("trace_pcap_max_size");
            if limit < 24 {
                return Err("trace_pcap_max_size must be at least 24 (the file header)".into());
            }
            let f = pcap::PcapFile::create(std::path::Path::new(&path), limit as u64)
                .map_err(|e| format!("trace_pcap_file {path}: {e}"))?;
            Some(Mutex::new(f))
        };
        let auth_key = p.string("auth_key");
        if p.int("trace_on") != 0 {
            on.store(true, Ordering::Relaxed);
        }
        Ok(Siptrace {
            on,
            mirror,
            destination,
            hep: p.int("hep_mode_on") != 0,
            capture_id,
            auth_key: (!auth_key.is_empty()).then_some(auth_key),
            socket,
            pcap,
            send_errors: AtomicU64::new(0),
        })
    }

    fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Copies one message to `destination` (HEP3 or plain) and to the pcap file.
    fn copy(
        &self,
        destination: Option<SocketAddr>,
        proto: Proto,
        source: SocketAddr,
        target: SocketAddr,
        data: &[u8],
    ) -> bool {
        let mut done = false;
        if let (Some(dst), Some(socket)) = (destination, &self.socket) {
            let sent = if self.hep {
                let packet = hep::encode(&hep::Capture {
                    source,
                    destination: target,
                    ip_proto: if proto == Proto::Udp { 17 } else { 6 },
                    time: SystemTime::now(),
                    capture_id: self.capture_id,
                    auth_key: self.auth_key.as_deref(),
                    payload: data,
                });
                packet.is_some_and(|p| socket.send_to(&p, dst).is_ok())
            } else {
                socket.send_to(data, dst).is_ok()
            };
            if sent {
                done = true;
            } else {
                self.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(pcap) = &self.pcap {
            pcap.lock()
                .unwrap_or_else(|e| e.into_inner())
                .write(source, target, data);
            done = true;
        }
        done
    }
}

/// Sees every message when `trace_mode=1`.
struct Mirror(StateSlot<Siptrace>);

impl MessageTap for Mirror {
    fn message(&self, m: &TappedMessage<'_>) {
        let Ok(st) = self.0.get() else {
            return;
        };
        if st.mirror && st.is_on() {
            st.copy(st.destination, m.proto, m.source, m.destination, m.data);
        }
    }
}

/// `sip_trace([uri])`: the message being routed, as it was received.
fn sip_trace(st: &Siptrace, ctx: &MsgContext, uri: Option<&[u8]>) -> Result<Verdict, FnError> {
    if !st.is_on() {
        return Ok(Verdict::FALSE);
    }
    let destination = match uri {
        Some(u) => Some(parse_destination(&String::from_utf8_lossy(u)).map_err(FnError::new)?),
        None => st.destination,
    };
    if destination.is_some() && st.socket.is_none() {
        return Err(FnError::new(
            "sip_trace(uri) needs duplicate_uri set (its socket is opened at load)",
        ));
    }
    let net = &ctx.net;
    Ok(Verdict::from(st.copy(
        destination,
        net.proto,
        net.source,
        net.local,
        ctx.msg.as_bytes(),
    )))
}

impl Module for SiptraceModule {
    fn name(&self) -> &'static str {
        "siptrace"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("Copies SIP messages to a HEP3 (Homer) collector or a plain SIP address, and to a local pcap file.");
        m.param(
            "trace_on",
            ParamType::Int,
            0_i64,
            "1: tracing is on at start (RPC siptrace.status switches it).",
        );
        m.param("trace_mode", ParamType::Int, 0_i64, "1: copy every SIP message received and sent (not only those sip_trace() names); 0: sip_trace() only. Database modes are not built.");
        m.param("duplicate_uri", ParamType::Str, "", "Where copies go: sip:HOST:PORT of the HEP collector (or of a SIP capture with hep_mode_on=0), over UDP.");
        m.param(
            "hep_mode_on",
            ParamType::Int,
            0_i64,
            "1: copies are HEP packets; 0: the SIP message itself is sent to duplicate_uri.",
        );
        m.param(
            "hep_version",
            ParamType::Int,
            3_i64,
            "HEP version; only 3 is built.",
        );
        m.param(
            "hep_capture_id",
            ParamType::Int,
            1_i64,
            "Capture agent id written in each HEP packet.",
        );
        m.param(
            "auth_key",
            ParamType::Str,
            "",
            "HEP authentication key chunk, when set.",
        );
        m.param(
            "trace_to_database",
            ParamType::Int,
            0_i64,
            "1 is refused: storing traces in a database is not built in Ferrosip.",
        );
        m.param("trace_pcap_file", ParamType::Str, "", "Ferrosip's own: also write each copy to this pcap file (created at start; raw IP link type, a synthesized UDP header per message).");
        m.param(
            "trace_pcap_max_size",
            ParamType::Int,
            PCAP_MAX_SIZE,
            "Ferrosip's own: the pcap file stops growing at this many bytes.",
        );
        // The switch outlives a reload's new state (RPC-set value kept).
        let on = Arc::new(AtomicBool::new(false));
        let init_on = on.clone();
        let st = m.state(move |p| Siptrace::from_params(p, init_on.clone()));
        m.message_tap(Arc::new(Mirror(st.clone())));
        m.function("sip_trace")
            .routes(RouteMask::ANY)
            .doc("Copies the message being routed to duplicate_uri (HEP or plain) and the pcap file; 1 when copied, -1 when tracing is off or nothing is configured.")
            .handler(st.with(|s: &Siptrace, ctx: &mut MsgContext| sip_trace(s, ctx, None)));
        m.function("sip_trace")
            .args(&["uri"])
            .routes(RouteMask::ANY)
            .doc("As sip_trace(), sent to the address in the argument (sip:HOST:PORT) instead of duplicate_uri.")
            .handler(st.with(|s: &Siptrace, ctx: &mut MsgContext, uri: Bytes| {
                sip_trace(s, ctx, Some(&uri))
            }));
        m.rpc(
            "siptrace.status",
            "Tracing on or off: \"on\", \"off\", or \"check\" (the default) to ask.",
            move |args: &[Value]| {
                match args
                    .first()
                    .and_then(Value::to_bytes)
                    .map(|a| a.to_ascii_lowercase())
                {
                    None => {}
                    Some(a) if a == b"on" => on.store(true, Ordering::Relaxed),
                    Some(a) if a == b"off" => on.store(false, Ordering::Relaxed),
                    Some(a) if a == b"check" => {}
                    Some(_) => return Err("give on, off or check".into()),
                }
                let state = if on.load(Ordering::Relaxed) {
                    "enabled"
                } else {
                    "disabled"
                };
                Ok(RpcValue::Str(format!("Tracing {state}")))
            },
        );
        m.example(EXAMPLE);
    }
}

const EXAMPLE: &str = r#"listen=udp:127.0.0.1:5060
loadmodule "sl.so"
loadmodule "siptrace.so"
modparam("siptrace", "trace_on", 1)
modparam("siptrace", "hep_mode_on", 1)
modparam("siptrace", "duplicate_uri", "sip:127.0.0.1:9060")
modparam("siptrace", "hep_capture_id", 101)
request_route {
    sip_trace();
    sl_send_reply("404", "Not here");
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_take_kamailio_forms() {
        assert_eq!(
            parse_destination("sip:127.0.0.1:9060").unwrap(),
            "127.0.0.1:9060".parse().unwrap()
        );
        assert_eq!(
            parse_destination("sip:[::1]").unwrap(),
            "[::1]:5060".parse().unwrap()
        );
        assert_eq!(
            parse_destination("127.0.0.1;transport=udp").unwrap(),
            "127.0.0.1:5060".parse().unwrap()
        );
    }
}
