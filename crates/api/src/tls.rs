//! What the TLS transport tells modules about its connections: the negotiated session and
//! both certificates of a connection (the `tls` module's `$tls_*` pseudo-variables and
//! `is_peer_verified()` read it), and the control the `tls.reload` / `tls.list` RPC
//! commands use. The transport lives in the server; modules reach it through
//! [`crate::Services::tls`].

use std::net::SocketAddr;
use std::sync::Arc;

/// The fields of one X.509 certificate the `$tls_peer_*` / `$tls_my_*` variables give.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsCertInfo {
    /// Subject in OpenSSL's one-line form (`/C=DE/O=Example/CN=sip.example.com`), as
    /// Kamailio prints it.
    pub subject: String,
    /// Issuer in the same one-line form.
    pub issuer: String,
    /// The subject's common name (CN).
    pub subject_cn: String,
    /// The issuer's common name (CN).
    pub issuer_cn: String,
    /// The subject's organization (O).
    pub subject_organization: String,
    /// The subject's organizational unit (OU).
    pub subject_unit: String,
    /// The subject's country (C).
    pub subject_country: String,
    /// The subject's state or province (ST).
    pub subject_state: String,
    /// The subject's locality (L).
    pub subject_locality: String,
    /// The issuer's organization (O).
    pub issuer_organization: String,
    /// Serial number, in decimal.
    pub serial: String,
    /// The X.509 version field as encoded (2 for a v3 certificate).
    pub version: i64,
    /// Start of the validity period, as OpenSSL prints it.
    pub not_before: String,
    /// End of the validity period, as OpenSSL prints it.
    pub not_after: String,
    /// DNS names of the subject alternative name extension.
    pub san_dns: Vec<String>,
    /// E-mail addresses of the subject alternative name extension.
    pub san_email: Vec<String>,
    /// URIs of the subject alternative name extension.
    pub san_uri: Vec<String>,
    /// IP addresses of the subject alternative name extension.
    pub san_ip: Vec<String>,
    /// Outside its validity period now (checked when the connection was made).
    pub expired: bool,
    /// Issuer and subject are the same name.
    pub self_signed: bool,
}

/// One established TLS connection, as the handshake left it.
#[derive(Clone, Debug, Default)]
pub struct TlsSessionInfo {
    /// `TLSv1.2`, `TLSv1.3`.
    pub version: String,
    /// The cipher suite (`TLS13_AES_256_GCM_SHA384`).
    pub cipher: String,
    /// Symmetric key size of the cipher suite, in bits.
    pub cipher_bits: i64,
    /// The peer sent a certificate and it was verified against the profile's CA list.
    pub peer_verified: bool,
    /// The peer's certificate, when it sent one.
    pub peer: Option<Arc<TlsCertInfo>>,
    /// Our certificate on this connection.
    pub mine: Option<Arc<TlsCertInfo>>,
    /// The server name (SNI) the client asked for; on a connection we opened, the one we
    /// sent.
    pub server_name: Option<String>,
    /// The tls.cfg profile that served the connection (`server:default`,
    /// `client:10.0.0.1:5061`).
    pub profile: String,
    /// Opened by us (a client connection) rather than accepted.
    pub outbound: bool,
}

/// One open TLS connection, for `tls.list`.
#[derive(Clone, Debug)]
pub struct TlsConnection {
    /// The other end's address.
    pub peer: SocketAddr,
    /// Our end's address.
    pub local: SocketAddr,
    /// What the handshake negotiated.
    pub session: Arc<TlsSessionInfo>,
    /// Seconds since the handshake ended.
    pub age_secs: u64,
}

/// The TLS transport as modules see it.
pub trait TlsControl: Send + Sync {
    /// The session of the connection to `peer` (a message's source), if it is open.
    fn session(&self, peer: SocketAddr) -> Option<Arc<TlsSessionInfo>>;

    /// Reads the profile file and the certificates again: new connections get them, open
    /// ones keep what they negotiated. Answers a summary, or why the old profiles stay.
    fn reload(&self) -> Result<String, String>;

    /// The open connections.
    fn connections(&self) -> Vec<TlsConnection>;

    /// Makes the next connection we open to `dst` use the client profile whose
    /// `server_id` is `server_id` (`tls_set_connect_server_id()`); nothing when a
    /// connection to `dst` is open already (it is reused, whatever its profile).
    fn connect_with(&self, dst: SocketAddr, server_id: &str);
}
