//! `tls`: TLS transport (OpenSSL in Kamailio): certificates, verification and per-domain profiles.

use bytes::Bytes;
use ferrosip_api::registry::FnRow;
use ferrosip_api::{Module, ModuleBuilder, ParamType, RouteMask, Value};

/// The `tls` module.
pub struct TlsModule;

impl Module for TlsModule {
    fn name(&self) -> &'static str {
        "tls"
    }

    fn declare(&self, m: &mut ModuleBuilder<'_>) {
        m.doc("TLS transport (OpenSSL in Kamailio): certificates, verification and per-domain profiles.");
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
        const REQ_EVENT: RouteMask = RouteMask::REQUEST.union(RouteMask::EVENT);
        #[rustfmt::skip]
        m.functions([
            FnRow::declared::<()>("is_peer_verified", &[], REQ_EVENT, "True (1) when the request came over TLS with a verified peer certificate; -1 otherwise."),
            FnRow::declared::<(Bytes,)>("tls_set_connect_server_id", &["srvid"], RouteMask::ANY, "Selects the client profile (by server_id) for the next outgoing TLS connection; 1 on success, -1 on failure."),
        ]);
    }
}
