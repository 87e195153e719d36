//! TLS profiles: the `tls` module's parameters and Kamailio's profile file (`tls.cfg`,
//! modparam `config`), turned into rustls server and client configurations.
//!
//! The file has sections `[server:default]`, `[client:default]`, `[server:IP:PORT]`,
//! `[client:IP:PORT]` and `[server:any]` / `[client:any]` (matched by server name only),
//! each with `key = value` lines (`#` starts a comment). As in Kamailio, what a profile
//! leaves out it takes from the default profile of its kind, whose values come from the
//! module's parameters. A server profile is chosen by the local socket a connection came
//! in on and the server name (SNI) the client asked for; a client profile by the
//! destination address, and its `server_name` is the SNI sent.
//!
//! rustls speaks TLS 1.2 and 1.3 only: a `method` that allows older versions (`SSLv23`,
//! `TLSv1+`) gets 1.2 and 1.3, one that names only an older version is refused.

use ferrosip_api::tls::TlsCertInfo;
use ferrosip_api::{ModuleParams, Value};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which side of a connection a profile serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Server,
    Client,
}

/// What a profile applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    Default,
    /// `[server:any]`: any socket, selected by server name.
    Any,
    Addr(SocketAddr),
}

/// One profile's settings as written (every value optional until defaults fill it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileSettings {
    pub method: Option<String>,
    pub certificate: Option<String>,
    pub private_key: Option<String>,
    pub ca_list: Option<String>,
    pub ca_path: Option<String>,
    pub crl: Option<String>,
    pub verify_certificate: Option<bool>,
    pub require_certificate: Option<bool>,
    pub server_name: Option<String>,
    pub server_id: Option<String>,
}

impl ProfileSettings {
    /// Fills what this profile leaves out from `base` (the default profile of its kind).
    /// The server name and id belong to one profile and are never inherited.
    fn or(mut self, base: &ProfileSettings) -> ProfileSettings {
        fn fill<T: Clone>(v: &mut Option<T>, b: &Option<T>) {
            if v.is_none() {
                v.clone_from(b);
            }
        }
        fill(&mut self.method, &base.method);
        fill(&mut self.certificate, &base.certificate);
        fill(&mut self.private_key, &base.private_key);
        fill(&mut self.ca_list, &base.ca_list);
        fill(&mut self.ca_path, &base.ca_path);
        fill(&mut self.crl, &base.crl);
        fill(&mut self.verify_certificate, &base.verify_certificate);
        fill(&mut self.require_certificate, &base.require_certificate);
        self
    }

    /// Every file name made absolute as Kamailio does: `/x` as is, `./x` from the working
    /// directory, any other from `base` (the main config file's directory).
    fn resolved(mut self, base: Option<&Path>) -> ProfileSettings {
        for path in [
            &mut self.certificate,
            &mut self.private_key,
            &mut self.ca_list,
            &mut self.ca_path,
            &mut self.crl,
        ] {
            if let Some(p) = path.as_mut() {
                *p = resolve_path(p, base).display().to_string();
            }
        }
        self
    }
}

/// A file name of the tls module or its profile file, as Kamailio reads it: absolute as
/// is, `./`-relative from the working directory, else from the config file's directory.
pub fn resolve_path(p: &str, base: Option<&Path>) -> PathBuf {
    let path = Path::new(p);
    match base {
        Some(dir) if !path.is_absolute() && !p.starts_with('.') => dir.join(path),
        _ => path.to_path_buf(),
    }
}

/// One `[side:scope]` section of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileSpec {
    pub side: Side,
    pub scope: Scope,
    pub settings: ProfileSettings,
    /// `file:line` of the section header, for errors.
    pub at: String,
}

impl ProfileSpec {
    pub fn name(&self) -> String {
        let side = match self.side {
            Side::Server => "server",
            Side::Client => "client",
        };
        match &self.scope {
            Scope::Default => format!("{side}:default"),
            Scope::Any => format!("{side}:any"),
            Scope::Addr(a) => format!("{side}:{a}"),
        }
    }
}

fn yes_no(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "yes" | "on" | "true" => Some(true),
        "0" | "no" | "off" | "false" => Some(false),
        _ => None,
    }
}

/// Parses a profile file's text; `file` names it in errors.
pub fn parse_profiles(text: &str, file: &str) -> Result<Vec<ProfileSpec>, String> {
    let mut out: Vec<ProfileSpec> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let at = format!("{file}:{}", n + 1);
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(head) = line.strip_prefix('[') {
            let head = head
                .strip_suffix(']')
                .ok_or_else(|| format!("{at}: section header without ']'"))?
                .trim();
            let (side, scope) = head
                .split_once(':')
                .ok_or_else(|| format!("{at}: section must be [server:...] or [client:...]"))?;
            let side = match side.trim().to_ascii_lowercase().as_str() {
                "server" => Side::Server,
                "client" => Side::Client,
                other => {
                    return Err(format!(
                        "{at}: unknown profile kind '{other}' (server or client)"
                    ))
                }
            };
            let scope = match scope.trim() {
                s if s.eq_ignore_ascii_case("default") => Scope::Default,
                s if s.eq_ignore_ascii_case("any") => Scope::Any,
                s => Scope::Addr(
                    parse_addr(s)
                        .ok_or_else(|| format!("{at}: '{s}' is not default, any or IP:PORT"))?,
                ),
            };
            let spec = ProfileSpec {
                side,
                scope,
                settings: ProfileSettings::default(),
                at: at.clone(),
            };
            if let Some(prev) = out
                .iter()
                .find(|p| p.side == spec.side && p.scope == spec.scope && p.scope != Scope::Any)
            {
                return Err(format!(
                    "{at}: profile [{}] already defined at {}",
                    spec.name(),
                    prev.at
                ));
            }
            out.push(spec);
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("{at}: expected key = value"))?;
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim().trim_matches('"').to_string();
        let profile = out
            .last_mut()
            .ok_or_else(|| format!("{at}: '{key}' before any [server:...] or [client:...]"))?;
        let s = &mut profile.settings;
        let flag =
            |v: &str| yes_no(v).ok_or_else(|| format!("{at}: {key} must be yes or no, not '{v}'"));
        match key.as_str() {
            "method" | "tls_method" => s.method = Some(value),
            "certificate" => s.certificate = Some(value),
            "private_key" => s.private_key = Some(value),
            "ca_list" => s.ca_list = Some(value),
            "ca_path" => s.ca_path = Some(value),
            "crl" => s.crl = Some(value),
            "verify_certificate" => s.verify_certificate = Some(flag(&value)?),
            "require_certificate" => s.require_certificate = Some(flag(&value)?),
            "server_name" => s.server_name = Some(value),
            "server_id" => s.server_id = Some(value),
            "verify_depth" => {
                if value.parse::<u32>().is_err() {
                    return Err(format!("{at}: verify_depth must be a number"));
                }
                // webpki bounds chains itself; a depth is accepted as a number and has
                // no further effect, which `docs/tls.md` says.
            }
            "cipher_list" | "server_name_mode" | "verify_client" | "private_key_password" => {
                return Err(format!(
                    "{at}: {key} is not supported (rustls chooses its cipher suites; see docs/tls.md)"
                ))
            }
            other => return Err(format!("{at}: unknown profile setting '{other}'")),
        }
    }
    Ok(out)
}

fn parse_addr(s: &str) -> Option<SocketAddr> {
    if let Ok(a) = s.parse() {
        return Some(a);
    }
    // `[server:10.0.0.1]` without a port: TLS's default port.
    s.trim_matches(|c| c == '[' || c == ']')
        .parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 5061))
}

/// The module parameters that make the default profiles.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    /// modparam `config`: the profile file.
    pub config_file: Option<PathBuf>,
    /// The main config file's directory: relative file names start there.
    pub base_dir: Option<PathBuf>,
    pub defaults: ProfileSettings,
    /// modparam `connection_timeout`: idle seconds before a TLS connection is closed
    /// (the TCP transport's `tcp_connection_lifetime` when not set).
    pub idle_timeout: Option<std::time::Duration>,
}

impl TlsSettings {
    /// From the `tls` module's parameters (the script's `modparam("tls", ...)`).
    pub fn from_params(p: &ModuleParams, base_dir: Option<&Path>) -> Result<TlsSettings, String> {
        let text = |name: &str| -> Option<String> {
            match p.get(name) {
                Value::Null => None,
                v => v
                    .to_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .filter(|s| !s.is_empty()),
            }
        };
        let flag = |name: &str| p.get(name).as_int().map(|i| i != 0);
        for unsupported in ["cipher_list", "private_key_password"] {
            if p.is_set(unsupported) && text(unsupported).is_some() {
                return Err(format!(
                    "modparam {unsupported} is not supported (rustls; see docs/tls.md)"
                ));
            }
        }
        Ok(TlsSettings {
            config_file: text("config").map(|f| resolve_path(&f, base_dir)),
            base_dir: base_dir.map(Path::to_path_buf),
            defaults: ProfileSettings {
                method: text("tls_method"),
                certificate: text("certificate"),
                private_key: text("private_key"),
                ca_list: text("ca_list"),
                ca_path: text("ca_path"),
                crl: text("crl"),
                verify_certificate: flag("verify_certificate"),
                require_certificate: flag("require_certificate"),
                server_name: text("server_name"),
                server_id: None,
            },
            idle_timeout: p
                .is_set("connection_timeout")
                .then(|| p.get("connection_timeout").as_int())
                .flatten()
                .map(|s| std::time::Duration::from_secs(s.clamp(1, 86_400) as u64)),
        })
    }
}

/// A server profile ready for handshakes.
pub struct ServerProfile {
    pub name: String,
    pub scope: Scope,
    pub server_name: Option<String>,
    /// Client certificates are asked for and verified.
    pub verify: bool,
    pub config: Arc<ServerConfig>,
    pub cert: Option<Arc<TlsCertInfo>>,
}

/// A client profile ready for connections we open.
pub struct ClientProfile {
    pub name: String,
    pub scope: Scope,
    pub server_name: Option<String>,
    pub server_id: Option<String>,
    pub config: Arc<ClientConfig>,
    pub verify: bool,
    pub cert: Option<Arc<TlsCertInfo>>,
}

/// Every profile, built once per load or `tls.reload`.
pub struct Profiles {
    pub servers: Vec<ServerProfile>,
    pub clients: Vec<ClientProfile>,
}

impl Profiles {
    /// Reads the profile file (if any) and every certificate and key it names.
    pub fn load(settings: &TlsSettings) -> Result<Profiles, String> {
        let mut specs = match &settings.config_file {
            Some(f) => {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| format!("cannot read TLS profile file {}: {e}", f.display()))?;
                parse_profiles(&text, &f.display().to_string())?
            }
            None => Vec::new(),
        };
        let mut server_default = settings.defaults.clone();
        let mut client_default = settings.defaults.clone();
        // The module's server_name is the SNI of the default client profile only.
        server_default.server_name = None;
        for p in &specs {
            if p.scope == Scope::Default {
                match p.side {
                    Side::Server => server_default = p.settings.clone().or(&server_default),
                    Side::Client => client_default = p.settings.clone().or(&client_default),
                }
            }
        }
        specs.retain(|p| p.scope != Scope::Default);
        let base = settings.base_dir.as_deref();
        let server_default = server_default.resolved(base);
        let client_default = client_default.resolved(base);
        // rustls marks ring's provider deprecated for lacking post-quantum key exchange,
        // which only the aws-lc provider has; aws-lc needs cmake and nasm to build.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut servers = vec![build_server(
            "server:default",
            Scope::Default,
            &server_default,
            &provider,
        )?];
        let mut clients = vec![build_client(
            "client:default",
            Scope::Default,
            &client_default,
            &provider,
        )?];
        for p in specs {
            let name = p.name();
            match p.side {
                Side::Server => {
                    let s = p.settings.clone().resolved(base).or(&server_default);
                    servers.push(
                        build_server(&name, p.scope.clone(), &s, &provider)
                            .map_err(|e| format!("{}: [{name}]: {e}", p.at))?,
                    );
                }
                Side::Client => {
                    let s = p.settings.clone().resolved(base).or(&client_default);
                    clients.push(
                        build_client(&name, p.scope.clone(), &s, &provider)
                            .map_err(|e| format!("{}: [{name}]: {e}", p.at))?,
                    );
                }
            }
        }
        Ok(Profiles { servers, clients })
    }

    /// The server profile for a connection accepted on `local` asking for `sni`: one for
    /// this socket and this name, then `[server:any]` with this name, then one for this
    /// socket, then the default.
    pub fn server_for(&self, local: SocketAddr, sni: Option<&str>) -> &ServerProfile {
        let named = |p: &&ServerProfile| {
            sni.is_some_and(|n| {
                p.server_name
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case(n))
            })
        };
        let at_local = |p: &&ServerProfile| matches_addr(&p.scope, local);
        self.servers
            .iter()
            .find(|p| at_local(p) && named(p))
            .or_else(|| {
                self.servers
                    .iter()
                    .find(|p| p.scope == Scope::Any && named(p))
            })
            .or_else(|| {
                self.servers
                    .iter()
                    .find(|p| at_local(p) && p.server_name.is_none())
            })
            .or_else(|| self.servers.iter().find(at_local))
            .unwrap_or(&self.servers[0])
    }

    /// The client profile whose `server_id` is `id`, else the default one (as Kamailio,
    /// which then looks no further at the address).
    pub fn client_by_id(&self, id: &str, dst: SocketAddr) -> &ClientProfile {
        match self
            .clients
            .iter()
            .find(|p| p.server_id.as_deref() == Some(id))
        {
            Some(p) => p,
            None => {
                tracing::warn!(server_id = id, destination = %dst, "no TLS client profile has this server_id: the default one is used");
                &self.clients[0]
            }
        }
    }

    /// The client profile for a connection to `dst`.
    pub fn client_for(&self, dst: SocketAddr) -> &ClientProfile {
        self.clients
            .iter()
            .find(|p| matches_addr(&p.scope, dst))
            .unwrap_or(&self.clients[0])
    }
}

/// Whether a profile's address is `addr` (a profile for 0.0.0.0:PORT serves any address
/// on that port).
fn matches_addr(scope: &Scope, addr: SocketAddr) -> bool {
    match scope {
        Scope::Addr(a) => {
            a.port() == addr.port() && (a.ip() == addr.ip() || a.ip().is_unspecified())
        }
        _ => false,
    }
}

/// TLS versions for a `method` value.
fn versions(
    method: Option<&str>,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let both = vec![&rustls::version::TLS13, &rustls::version::TLS12];
    let m = method.unwrap_or("TLSv1.2+").to_ascii_uppercase();
    match m.as_str() {
        "" | "TLSV1.2+" | "SSLV23" | "TLSV1+" | "TLSV1.1+" | "ANY" => Ok(both),
        "TLSV1.2" => Ok(vec![&rustls::version::TLS12]),
        "TLSV1.3" | "TLSV1.3+" => Ok(vec![&rustls::version::TLS13]),
        "TLSV1" | "TLSV1.0" | "TLSV1.1" | "SSLV3" | "SSLV2" => Err(format!(
            "method {} is not available: TLS 1.2 and 1.3 only (TLSv1.2+, TLSv1.2, TLSv1.3)",
            method.unwrap_or_default()
        )),
        _ => Err(format!(
            "unknown method '{}' (TLSv1.2+, TLSv1.2, TLSv1.3, SSLv23)",
            method.unwrap_or_default()
        )),
    }
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read certificate {path}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("certificate {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{path} holds no certificate"));
    }
    Ok(certs)
}

fn read_key(path: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("cannot read private key {path}: {e}"))
}

/// The trusted CAs of `ca_list` (a PEM file) and `ca_path` (every PEM file in a directory).
fn roots(s: &ProfileSettings) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(f) = &s.ca_list {
        files.push(PathBuf::from(f));
    }
    if let Some(dir) = &s.ca_path {
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("cannot read ca_path {dir}: {e}"))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        found.sort();
        files.extend(found);
    }
    for f in files {
        let path = f.display().to_string();
        for cert in read_certs(&path)? {
            store
                .add(cert)
                .map_err(|e| format!("CA certificate in {path}: {e}"))?;
        }
    }
    Ok(store)
}

fn crls(s: &ProfileSettings) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let Some(path) = &s.crl else {
        return Ok(Vec::new());
    };
    CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read crl {path}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("crl {path}: {e}"))
}

fn exists(path: &Option<String>) -> bool {
    path.as_deref().is_some_and(|p| Path::new(p).is_file())
}

fn build_server(
    name: &str,
    scope: Scope,
    s: &ProfileSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<ServerProfile, String> {
    let (Some(cert_path), Some(key_path)) = (&s.certificate, &s.private_key) else {
        return Err("a server profile needs certificate and private_key".into());
    };
    let chain = read_certs(cert_path)?;
    let key = read_key(key_path)?;
    let cert = cert_info(&chain[0]).map(Arc::new);
    let verify = s.verify_certificate.unwrap_or(false);
    let require = s.require_certificate.unwrap_or(false);
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(s.method.as_deref())?)
        .map_err(|e| e.to_string())?;
    let builder = if verify || require {
        let roots = roots(s)?;
        if roots.is_empty() {
            return Err("verify_certificate/require_certificate need ca_list or ca_path".into());
        }
        let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .with_crls(crls(s)?);
        let v = if require {
            v
        } else {
            v.allow_unauthenticated()
        };
        builder.with_client_cert_verifier(v.build().map_err(|e| e.to_string())?)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("certificate {cert_path} with key {key_path}: {e}"))?;
    // SIP over TLS has no ALPN; sessions resume by ticket (TLS 1.3) or id (1.2).
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(1024);
    Ok(ServerProfile {
        name: name.to_string(),
        scope,
        server_name: s.server_name.clone(),
        verify: verify || require,
        config: Arc::new(config),
        cert,
    })
}

fn build_client(
    name: &str,
    scope: Scope,
    s: &ProfileSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<ClientProfile, String> {
    let verify = s.verify_certificate.unwrap_or(false);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(s.method.as_deref())?)
        .map_err(|e| e.to_string())?;
    let builder = if verify {
        let roots = roots(s)?;
        if roots.is_empty() {
            return Err("verify_certificate needs ca_list or ca_path".into());
        }
        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .with_crls(crls(s)?)
        .build()
        .map_err(|e| e.to_string())?;
        builder.with_webpki_verifier(v)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider.clone())))
    };
    // A client certificate is sent when the profile has one whose files exist (the
    // defaults name /etc/kamailio/cert.pem, absent on most hosts).
    let (config, cert) = if exists(&s.certificate) && exists(&s.private_key) {
        let cert_path = s.certificate.as_deref().unwrap_or_default();
        let key_path = s.private_key.as_deref().unwrap_or_default();
        let chain = read_certs(cert_path)?;
        let info = cert_info(&chain[0]).map(Arc::new);
        let key = read_key(key_path)?;
        let c = builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("certificate {cert_path} with key {key_path}: {e}"))?;
        (c, info)
    } else {
        (builder.with_no_client_auth(), None)
    };
    Ok(ClientProfile {
        name: name.to_string(),
        scope,
        server_name: s.server_name.clone(),
        server_id: s.server_id.clone(),
        config: Arc::new(config),
        verify,
        cert,
    })
}

/// `verify_certificate = no` on a client profile: any server certificate is accepted
/// (Kamailio's default), though the handshake's signatures are still checked.
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The fields of a DER certificate the `$tls_*` variables show; `None` if it does not
/// parse (rustls accepted it, so only an odd extension can cause that).
pub fn cert_info(der: &CertificateDer<'_>) -> Option<TlsCertInfo> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
    fn first<'a>(
        mut it: impl Iterator<Item = &'a x509_parser::x509::AttributeTypeAndValue<'a>>,
    ) -> String {
        it.next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or_default()
            .to_string()
    }
    fn oneline(name: &X509Name<'_>) -> String {
        let reg = x509_parser::objects::oid_registry();
        let mut out = String::new();
        for rdn in name.iter() {
            for atv in rdn.iter() {
                let key = x509_parser::objects::oid2abbrev(atv.attr_type(), reg)
                    .map(str::to_string)
                    .unwrap_or_else(|_| atv.attr_type().to_id_string());
                out.push('/');
                out.push_str(&key);
                out.push('=');
                out.push_str(atv.as_str().unwrap_or("?"));
            }
        }
        out
    }
    let subject = cert.subject();
    let issuer = cert.issuer();
    let mut info = TlsCertInfo {
        subject: oneline(subject),
        issuer: oneline(issuer),
        subject_cn: first(subject.iter_common_name()),
        issuer_cn: first(issuer.iter_common_name()),
        subject_organization: first(subject.iter_organization()),
        subject_unit: first(subject.iter_organizational_unit()),
        subject_country: first(subject.iter_country()),
        subject_state: first(subject.iter_state_or_province()),
        subject_locality: first(subject.iter_locality()),
        issuer_organization: first(issuer.iter_organization()),
        serial: cert.tbs_certificate.serial.to_string(),
        version: i64::from(cert.version().0),
        not_before: cert.validity().not_before.to_string(),
        not_after: cert.validity().not_after.to_string(),
        expired: !cert.validity().is_valid(),
        self_signed: subject.as_raw() == issuer.as_raw(),
        ..TlsCertInfo::default()
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(s) => info.san_dns.push(s.to_string()),
                GeneralName::RFC822Name(s) => info.san_email.push(s.to_string()),
                GeneralName::URI(s) => info.san_uri.push(s.to_string()),
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(std::net::IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(std::net::IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        info.san_ip.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Some(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse_with_sections_and_flags() {
        let text = "# comment\n[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = yes\n\n[client:10.0.0.1:5061]\nserver_name = sip.example.com\n[server:any]\nserver_name=a.example.com\n";
        let p = parse_profiles(text, "tls.cfg").unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].scope, Scope::Default);
        assert_eq!(p[0].settings.require_certificate, Some(true));
        assert_eq!(p[0].settings.verify_certificate, Some(false));
        assert_eq!(p[1].scope, Scope::Addr("10.0.0.1:5061".parse().unwrap()));
        assert_eq!(p[1].side, Side::Client);
        assert_eq!(
            p[1].settings.server_name.as_deref(),
            Some("sip.example.com")
        );
        assert_eq!(p[2].scope, Scope::Any);
    }

    #[test]
    fn profile_file_errors_are_located() {
        let e = parse_profiles("[server:default]\nbogus = 1\n", "t.cfg").unwrap_err();
        assert_eq!(e, "t.cfg:2: unknown profile setting 'bogus'");
        let e = parse_profiles("method = TLSv1.2\n", "t.cfg").unwrap_err();
        assert!(e.starts_with("t.cfg:1: 'method' before any"), "{e}");
        let e = parse_profiles("[server:default]\n[server:default]\n", "t.cfg").unwrap_err();
        assert!(e.contains("already defined at t.cfg:1"), "{e}");
        let e =
            parse_profiles("[server:default]\nverify_certificate = maybe\n", "t.cfg").unwrap_err();
        assert!(e.contains("yes or no"), "{e}");
        let e = parse_profiles("[server:default]\ncipher_list = HIGH\n", "t.cfg").unwrap_err();
        assert!(e.contains("not supported"), "{e}");
    }

    #[test]
    fn methods_map_to_rustls_versions() {
        assert_eq!(versions(Some("TLSv1.2+")).unwrap().len(), 2);
        assert_eq!(versions(Some("SSLv23")).unwrap().len(), 2);
        assert_eq!(
            versions(Some("TLSv1.3")).unwrap()[0].version,
            rustls::ProtocolVersion::TLSv1_3
        );
        assert!(versions(Some("TLSv1")).is_err());
        assert!(versions(Some("bogus")).is_err());
    }

    #[test]
    fn a_profile_inherits_from_the_default_but_not_its_name() {
        let base = ProfileSettings {
            certificate: Some("a.pem".into()),
            server_name: Some("x".into()),
            verify_certificate: Some(true),
            ..Default::default()
        };
        let own = ProfileSettings {
            verify_certificate: Some(false),
            ..Default::default()
        }
        .or(&base);
        assert_eq!(own.certificate.as_deref(), Some("a.pem"));
        assert_eq!(own.verify_certificate, Some(false));
        assert_eq!(own.server_name, None);
    }

    #[test]
    fn relative_files_start_at_the_config_directory() {
        let base = Path::new("/etc/ferrosip");
        assert_eq!(
            resolve_path("/a/cert.pem", Some(base)),
            Path::new("/a/cert.pem")
        );
        assert_eq!(
            resolve_path("tls/cert.pem", Some(base)),
            Path::new("/etc/ferrosip/tls/cert.pem")
        );
        assert_eq!(
            resolve_path("./cert.pem", Some(base)),
            Path::new("./cert.pem")
        );
        assert_eq!(resolve_path("cert.pem", None), Path::new("cert.pem"));
    }
}
