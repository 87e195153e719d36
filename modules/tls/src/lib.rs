//! `tls`: the TLS transport's certificates, verification and per-address profiles
//! (Kamailio's module of that name, with rustls instead of OpenSSL). The transport itself
//! is the server's (`listen=tls:`); it reads this module's parameters and profile file.
//! Here: the checks of those parameters, `is_peer_verified()`, the `$tls_*`
//! pseudo-variables of the connection a message came on, and the `tls.reload` /
//! `tls.list` RPC commands.

use bytes::Bytes;
use ferrosip_api::registry::FnRow;
use ferrosip_api::tls::{TlsCertInfo, TlsControl, TlsSessionInfo};
use ferrosip_api::{
    FnResult, Module, ModuleBuilder, ModuleParams, MsgContext, ParamType, Proto, Pv, PvError,
    PvIndex, RouteMask, RpcValue, Value, Verdict,
};
use std::sync::{Arc, OnceLock};

/// Parameters of Kamailio's module that tune OpenSSL and have no rustls counterpart,
/// with the one value that says what rustls does anyway (`None`: none does). Any other
/// value is refused at load, so that no one believes it is in force.
const OPENSSL_ONLY: &[(&str, Option<i64>)] = &[
    ("cipher_list", None),
    ("private_key_password", None),
    ("verify_client", None),
    ("xavp_cfg", None),
    ("event_callback", None),
    ("key_password_mode", Some(0)),
    ("renegotiation", Some(0)),
    ("tls_disable_compression", Some(1)),
    ("ssl_release_buffers", Some(-1)),
    ("init_mode", Some(0)),
    ("con_ct_wq_max", None),
    ("ct_wq_max", None),
    ("ct_wq_blk_size", None),
    ("session_cache", None),
    ("session_id", None),
    ("send_close_notify", Some(0)),
];

/// Checks the parameters the transport does not read itself.
fn check_params(p: &ModuleParams) -> Result<(), String> {
    for (name, same) in OPENSSL_ONLY {
        if p.is_set(name) && (same.is_none() || p.get(name).as_int() != *same) {
            return Err(format!(
                "{name} is an OpenSSL setting with no counterpart in Ferrosip's rustls transport (see docs/tls.md)"
            ));
        }
    }
    if let Some(d) = p.get("verify_depth").as_int() {
        if !(1..=100).contains(&d) {
            return Err(format!("verify_depth must be 1 to 100, not {d}"));
        }
    }
    Ok(())
}

/// The transport's sessions, once the server runs.
type ControlSlot = Arc<OnceLock<Arc<dyn TlsControl>>>;

/// `tls_set_connect_server_id()`'s choice, in the message's extensions: the branch hook
/// hands it to the transport for the destination of each TLS branch. Kamailio keeps it
/// in the process until the next connect; here it goes with the message (and its
/// transaction's branches), since workers are not processes.
#[derive(Clone)]
struct ConnectServerId(Arc<str>);

fn keep_server_id(from: &ferrosip_api::Extensions, to: &mut ferrosip_api::Extensions) {
    if let Some(id) = from.get::<ConnectServerId>() {
        to.insert(id.clone());
    }
}

fn set_connect_server_id(ctx: &mut MsgContext, id: Bytes) -> FnResult {
    if id.is_empty() {
        ctx.ext.remove::<ConnectServerId>();
    } else {
        let id = String::from_utf8_lossy(&id);
        ctx.ext.insert(ConnectServerId(Arc::from(id.as_ref())));
    }
    Ok(Verdict::TRUE)
}

/// The session of the connection `ctx`'s message came on, if it came over TLS.
fn session_of(ctx: &MsgContext) -> Option<Arc<TlsSessionInfo>> {
    if ctx.net.proto != Proto::Tls {
        return None;
    }
    ctx.services.as_ref()?.tls()?.session(ctx.net.source)
}

fn is_peer_verified(ctx: &mut MsgContext) -> FnResult {
    Ok(match session_of(ctx) {
        Some(s) if s.peer_verified => Verdict::TRUE,
        _ => Verdict::FALSE,
    })
}

/// A `$tls_*` variable: one field of the message's TLS session, `$null` on another
/// transport.
struct SessionPv(SessionField);

impl Pv for SessionPv {
    fn get(&self, ctx: &MsgContext, _index: PvIndex) -> Result<Value, PvError> {
        Ok(session_of(ctx).map_or(Value::Null, |s| (self.0)(&s)))
    }
}

fn text(s: &str) -> Value {
    Value::from_string(s.to_string())
}

fn first(list: &[String]) -> Value {
    list.first().map_or(Value::Null, |s| text(s))
}

fn peer(s: &TlsSessionInfo, f: fn(&TlsCertInfo) -> Value) -> Value {
    s.peer.as_deref().map_or(Value::Null, f)
}

fn mine(s: &TlsSessionInfo, f: fn(&TlsCertInfo) -> Value) -> Value {
    s.mine.as_deref().map_or(Value::Null, f)
}

/// Reads one field of a session.
type SessionField = fn(&TlsSessionInfo) -> Value;

/// Name, doc and reader of every `$tls_*` variable.
#[rustfmt::skip]
const SESSION_PVS: &[(&str, &str, SessionField)] = &[
    ("tls_version", "TLS version of the connection (TLSv1.2, TLSv1.3).", |s| text(&s.version)),
    ("tls_description", "The cipher suite and the TLS version.", |s| Value::from_string(format!("{} {}", s.cipher, s.version))),
    ("tls_cipher_info", "Name of the negotiated cipher suite.", |s| text(&s.cipher)),
    ("tls_cipher_bits", "Key size of the cipher suite, in bits.", |s| Value::Int(s.cipher_bits)),
    ("tls_peer_verified", "1 when the peer sent a certificate and it was verified, else 0.", |s| Value::Int(i64::from(s.peer_verified))),
    ("tls_peer_server_name", "The server name (SNI) the client asked for.", |s| s.server_name.as_deref().map_or(Value::Null, text)),
    ("tls_peer_subject", "Subject of the peer's certificate (/C=../O=../CN=..).", |s| peer(s, |c| text(&c.subject))),
    ("tls_peer_issuer", "Issuer of the peer's certificate.", |s| peer(s, |c| text(&c.issuer))),
    ("tls_peer_subject_cn", "Common name in the subject of the peer's certificate.", |s| peer(s, |c| text(&c.subject_cn))),
    ("tls_peer_issuer_cn", "Common name in the issuer of the peer's certificate.", |s| peer(s, |c| text(&c.issuer_cn))),
    ("tls_peer_subject_organization", "Organization in the subject of the peer's certificate.", |s| peer(s, |c| text(&c.subject_organization))),
    ("tls_peer_subject_unit", "Organizational unit in the subject of the peer's certificate.", |s| peer(s, |c| text(&c.subject_unit))),
    ("tls_peer_subject_country", "Country in the subject of the peer's certificate.", |s| peer(s, |c| text(&c.subject_country))),
    ("tls_peer_subject_state", "State or province in the subject of the peer's certificate.", |s| peer(s, |c| text(&c.subject_state))),
    ("tls_peer_subject_locality", "Locality in the subject of the peer's certificate.", |s| peer(s, |c| text(&c.subject_locality))),
    ("tls_peer_issuer_organization", "Organization in the issuer of the peer's certificate.", |s| peer(s, |c| text(&c.issuer_organization))),
    ("tls_peer_serial", "Serial number of the peer's certificate (decimal).", |s| peer(s, |c| text(&c.serial))),
    ("tls_peer_version", "Version field of the peer's certificate (2 for X.509 v3).", |s| peer(s, |c| Value::Int(c.version))),
    ("tls_peer_notBefore", "Start of the peer certificate's validity.", |s| peer(s, |c| text(&c.not_before))),
    ("tls_peer_notAfter", "End of the peer certificate's validity.", |s| peer(s, |c| text(&c.not_after))),
    ("tls_peer_expired", "1 when the peer's certificate is outside its validity, else 0.", |s| peer(s, |c| Value::Int(i64::from(c.expired)))),
    ("tls_peer_selfsigned", "1 when the peer's certificate is self-signed, else 0.", |s| peer(s, |c| Value::Int(i64::from(c.self_signed)))),
    ("tls_peer_san_hostname", "First DNS name in the peer certificate's subjectAltName.", |s| peer(s, |c| first(&c.san_dns))),
    ("tls_peer_san_email", "First e-mail in the peer certificate's subjectAltName.", |s| peer(s, |c| first(&c.san_email))),
    ("tls_peer_san_uri", "First URI in the peer certificate's subjectAltName.", |s| peer(s, |c| first(&c.san_uri))),
    ("tls_peer_san_ip", "First IP address in the peer certificate's subjectAltName.", |s| peer(s, |c| first(&c.san_ip))),
    ("tls_my_subject", "Subject of our certificate on this connection.", |s| mine(s, |c| text(&c.subject))),
    ("tls_my_issuer", "Issuer of our certificate on this connection.", |s| mine(s, |c| text(&c.issuer))),
    ("tls_my_subject_cn", "Common name in the subject of our certificate.", |s| mine(s, |c| text(&c.subject_cn))),
    ("tls_my_issuer_cn", "Common name in the issuer of our certificate.", |s| mine(s, |c| text(&c.issuer_cn))),
    ("tls_my_subject_organization", "Organization in the subject of our certificate.", |s| mine(s, |c| text(&c.subject_organization))),
    ("tls_my_subject_unit", "Organizational unit in the subject of our certificate.", |s| mine(s, |c| text(&c.subject_unit))),
    ("tls_my_serial", "Serial number of our certificate (decimal).", |s| mine(s, |c| text(&c.serial))),
    ("tls_my_version", "Version field of our certificate (2 for X.509 v3).", |s| mine(s, |c| Value::Int(c.version))),
    ("tls_my_notBefore", "Start of our certificate's validity.", |s| mine(s, |c| text(&c.not_before))),
    ("tls_my_notAfter", "End of our certificate's validity.", |s| mine(s, |c| text(&c.not_after))),
    ("tls_my_san_hostname", "First DNS name in our certificate's subjectAltName.", |s| mine(s, |c| first(&c.san_dns))),
];

/// `tls.list`: every open connection, as Kamailio lists them.
fn list(control: &dyn TlsControl) -> RpcValue {
    let conns = control
        .connections()
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let s = &c.session;
            RpcValue::Struct(vec![
                ("id".into(), RpcValue::Int(i as i64 + 1)),
                ("src_ip".into(), RpcValue::Str(c.peer.ip().to_string())),
                ("src_port".into(), RpcValue::Int(i64::from(c.peer.port()))),
                ("dst_ip".into(), RpcValue::Str(c.local.ip().to_string())),
                ("dst_port".into(), RpcValue::Int(i64::from(c.local.port()))),
                (
                    "direction".into(),
                    RpcValue::Str(if s.outbound { "out" } else { "in" }.into()),
                ),
                ("profile".into(), RpcValue::Str(s.profile.clone())),
                ("tls_version".into(), RpcValue::Str(s.version.clone())),
                ("cipher".into(), RpcValue::Str(s.cipher.clone())),
                (
                    "server_name".into(),
                    RpcValue::Str(s.server_name.clone().unwrap_or_default()),
                ),
                (
                    "peer_subject_cn".into(),
                    RpcValue::Str(
                        s.peer
                            .as_ref()
                            .map(|p| p.subject_cn.clone())
                            .unwrap_or_default(),
                    ),
                ),
                (
                    "peer_verified".into(),
                    RpcValue::Int(i64::from(s.peer_verified)),
                ),
                ("age".into(), RpcValue::Int(c.age_secs as i64)),
            ])
        })
        .collect();
    RpcValue::Array(conns)
}

/// The `tls` module.
pub struct TlsModule;

impl Module for TlsModule {
    fn name(&self) -> &'static str {
        "tls"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("TLS transport (rustls; OpenSSL in Kamailio): certificates, verification and per-address profiles for listen=tls: sockets and TLS destinations.");
        m.param(
            "config",
            ParamType::Str,
            Value::Null,
            "File with per-domain TLS profiles (server/client sections).",
        );
        m.param(
            "tls_method",
            ParamType::Str,
            "TLSv1.2+",
            "Protocol versions accepted (\"TLSv1.2+\", \"TLSv1.3\", \"SSLv23\"...).",
        );
        m.param(
            "server_name",
            ParamType::Str,
            Value::Null,
            "SNI server name for the default client profile.",
        );
        m.param(
            "verify_certificate",
            ParamType::Int,
            0_i64,
            "When 1, the peer certificate is verified.",
        );
        m.param(
            "verify_depth",
            ParamType::Int,
            9_i64,
            "Maximum certificate chain depth accepted.",
        );
        m.param(
            "require_certificate",
            ParamType::Int,
            0_i64,
            "When 1, a client certificate is required on incoming connections.",
        );
        m.param("verify_client", ParamType::Str, "off", "Client certificate verification mode (\"off\", \"on\", \"optional\", \"optional_no_ca\").");
        m.param(
            "private_key",
            ParamType::Str,
            "/etc/kamailio/cert.pem",
            "File with the private key.",
        );
        m.param(
            "private_key_password",
            ParamType::Str,
            Value::Null,
            "Password of the private key.",
        );
        m.param(
            "ca_list",
            ParamType::Str,
            Value::Null,
            "File with the trusted CA certificates.",
        );
        m.param(
            "ca_path",
            ParamType::Str,
            Value::Null,
            "Directory with trusted CA certificates.",
        );
        m.param(
            "certificate",
            ParamType::Str,
            "/etc/kamailio/cert.pem",
            "File with the certificate (chain).",
        );
        m.param(
            "crl",
            ParamType::Str,
            Value::Null,
            "File with the certificate revocation list.",
        );
        m.param(
            "cipher_list",
            ParamType::Str,
            Value::Null,
            "OpenSSL cipher list (default: all supported).",
        );
        m.param(
            "connection_timeout",
            ParamType::Int,
            600_i64,
            "Seconds an idle TLS connection is kept.",
        );
        m.param(
            "tls_log",
            ParamType::Int,
            3_i64,
            "Log level of TLS messages.",
        );
        m.param(
            "tls_debug",
            ParamType::Int,
            3_i64,
            "Log level of TLS debugging messages.",
        );
        m.param(
            "session_cache",
            ParamType::Int,
            0_i64,
            "When 1, TLS session resumption is enabled.",
        );
        m.param(
            "session_id",
            ParamType::Str,
            "kamailio-tls-5.x.x",
            "Session id context for resumption.",
        );
        m.param(
            "tls_disable_compression",
            ParamType::Int,
            1_i64,
            "When 1, TLS compression is disabled.",
        );
        m.param(
            "ssl_release_buffers",
            ParamType::Int,
            -1_i64,
            "When 1, OpenSSL buffers of idle connections are released.",
        );
        m.param(
            "send_close_notify",
            ParamType::Int,
            0_i64,
            "When 1, close_notify is sent when a connection is closed.",
        );
        m.param(
            "con_ct_wq_max",
            ParamType::Int,
            65536_i64,
            "Maximum bytes queued per connection while the handshake is in progress.",
        );
        m.param(
            "ct_wq_max",
            ParamType::Int,
            10485760_i64,
            "Maximum bytes queued on all connections during handshakes.",
        );
        m.param(
            "ct_wq_blk_size",
            ParamType::Int,
            4096_i64,
            "Block size of the handshake write queue.",
        );
        m.param(
            "renegotiation",
            ParamType::Int,
            0_i64,
            "When 1, client-initiated renegotiation is allowed.",
        );
        m.param(
            "xavp_cfg",
            ParamType::Str,
            Value::Null,
            "XAVP selecting the TLS profile per connection.",
        );
        m.param(
            "event_callback",
            ParamType::Str,
            Value::Null,
            "KEMI function run instead of event_route[tls:connection-out].",
        );
        m.param(
            "init_mode",
            ParamType::Int,
            0_i64,
            "Bit mask of initialization options (1: PRNG engine fork handling).",
        );
        m.param(
            "key_password_mode",
            ParamType::Int,
            0_i64,
            "When 1, the private key password may be asked interactively.",
        );
        let _checked = m.state(check_params);
        let control: ControlSlot = Arc::default();
        {
            let control = control.clone();
            m.on_ready(move |services| {
                if let Some(c) = services.tls() {
                    let _ = control.set(c);
                }
            });
        }
        for (name, doc, get) in SESSION_PVS {
            m.pv_fixed(name, doc, SessionPv(*get));
        }
        let c = control.clone();
        m.rpc(
            "tls.list",
            "Lists the open TLS connections: addresses, direction, profile, version, cipher, server name, peer certificate CN, whether it was verified, age in seconds.",
            move |_args| {
                let control = c.get().ok_or("TLS is not running")?;
                Ok(list(&**control))
            },
        );
        let c = control.clone();
        m.rpc(
            "tls.reload",
            "Reads the profile file and every certificate, key and CA list again: new connections use them, open connections keep theirs. On an error the old profiles stay and the error is answered.",
            move |_args| {
                let control = c.get().ok_or("TLS is not running")?;
                control.reload().map(RpcValue::Str)
            },
        );
        {
            m.on_branch(
                move |branch| {
                    let Some(ConnectServerId(id)) = branch.ext.get::<ConnectServerId>() else {
                        return Ok(());
                    };
                    let (proto, dst) = branch.sockets.destination();
                    if proto == Proto::Tls {
                        if let Some(c) = control.get() {
                            c.connect_with(dst, id);
                        }
                    }
                    Ok(())
                },
                keep_server_id,
            );
        }
        const REQ_EVENT: RouteMask = RouteMask::REQUEST.union(RouteMask::EVENT);
        #[rustfmt::skip]
        m.functions([
            FnRow::sync("is_peer_verified", &[], REQ_EVENT, "True (1) when the request came over TLS with a verified peer certificate; -1 otherwise.", is_peer_verified),
            FnRow::sync("tls_set_connect_server_id", &["srvid"], RouteMask::ANY, "Chooses the client profile whose server_id is SRVID (tls.cfg) for the TLS connections this message's forwarding opens (t_relay, forward, their branches); the default client profile when none has it. A connection already open to the destination is reused as it is. An empty SRVID clears the choice. Always 1.", set_connect_server_id),
        ]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrosip_api::Registry;

    /// Loads a script with `modparams` (the load runs the module's init): the error.
    fn init(modparams: &str) -> Result<(), String> {
        let mut reg = Registry::new();
        ferrosip_script::register_core(&mut reg);
        reg.register(&TlsModule);
        let cfg = format!("loadmodule \"tls.so\"\n{modparams}\nrequest_route {{ exit; }}\n");
        ferrosip_script::load::load_str("t.cfg", &cfg, &Default::default(), &reg)
            .map(|_| ())
            .map_err(|e| e.messages.join("\n"))
    }

    #[test]
    fn openssl_only_parameters_are_refused_unless_they_say_what_rustls_does() {
        assert!(init("modparam(\"tls\", \"config\", \"/etc/ferrosip/tls.cfg\")").is_ok());
        assert!(init("modparam(\"tls\", \"tls_disable_compression\", 1)").is_ok());
        assert!(init("modparam(\"tls\", \"renegotiation\", 0)").is_ok());
        let e = init("modparam(\"tls\", \"cipher_list\", \"HIGH\")").unwrap_err();
        assert!(
            e.contains("module tls: cipher_list is an OpenSSL setting"),
            "{e}"
        );
        assert!(init("modparam(\"tls\", \"renegotiation\", 1)").is_err());
        assert!(init("modparam(\"tls\", \"session_cache\", 1)").is_err());
        let e = init("modparam(\"tls\", \"verify_depth\", 0)").unwrap_err();
        assert!(
            e.contains("module tls: verify_depth must be 1 to 100, not 0"),
            "{e}"
        );
    }

    #[test]
    fn without_a_tls_connection_the_variables_are_null_and_the_peer_unverified() {
        let mut ctx = ferrosip_tests::script::request(
            "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n",
        );
        assert_eq!(is_peer_verified(&mut ctx).unwrap(), Verdict::FALSE);
        let pv = SessionPv(SESSION_PVS[0].2);
        assert_eq!(pv.get(&ctx, PvIndex::default()).unwrap(), Value::Null);
    }
}
