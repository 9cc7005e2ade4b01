//! TLS to the agent (`LIBPROCESS_SSL_ENABLED`): the `LIBPROCESS_SSL_*` settings, read as
//! libprocess 1.11 reads them for an outgoing connection, and the rustls client built from
//! them.
//!
//! What libprocess does for a client connection (`3rdparty/libprocess/src/openssl.cpp` at
//! 1.11.0), and what we do:
//! - `CERT_FILE` and `KEY_FILE` are required whenever TLS is on; the certificate chain is
//!   always offered to a server that asks for one (so an agent with `REQUIRE_CLIENT_CERT` gets
//!   it).
//! - The server's certificate is verified only with `VERIFY_SERVER_CERT` (or its old name
//!   `VERIFY_CERT`, or `REQUIRE_CLIENT_CERT` / `REQUIRE_CERT`, which imply it), against
//!   `CA_FILE` and/or every certificate in `CA_DIR`, else the system's default CA paths
//!   (`SSL_CERT_FILE` / `SSL_CERT_DIR` honoured as OpenSSL does). Without verification any
//!   certificate is accepted.
//! - Hostname validation, `HOSTNAME_VALIDATION_SCHEME`: `legacy` (default) looks the agent's
//!   IP up in reverse DNS and wants that name among the certificate's DNS names (or the IP
//!   among its IP addresses with `VERIFY_IPADD`); no reverse name and no `VERIFY_IPADD` means
//!   no name check. `openssl` wants the IP among the IP addresses and requires `VERIFY_IPADD`
//!   (the agent is reached by IP, so there is no DNS name to check).
//! - Protocol versions: TLS 1.2 only by default; `ENABLE_TLS_V1_3` adds 1.3.
//!
//! What rustls cannot honour is logged once at start-up, naming the variable: SSLv3, TLS 1.0
//! and 1.1, OpenSSL cipher-string keywords and ciphers rustls does not implement, curves other
//! than `auto`, `VERIFICATION_DEPTH`, and legacy validation's fallback to the subject's common
//! name (webpki reads only subjectAltName).
//!
//! Nothing here is touched unless TLS is on.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// libprocess's default `LIBPROCESS_SSL_CIPHERS`.
pub const DEFAULT_CIPHERS: &str = "AES128-SHA:AES256-SHA:RC4-SHA:DHE-RSA-AES128-SHA:\
DHE-DSS-AES128-SHA:DHE-RSA-AES256-SHA:DHE-DSS-AES256-SHA";

/// Every `LIBPROCESS_SSL_*` variable libprocess 1.11 knows.
const KNOWN: &[&str] = &[
    "ENABLED",
    "SUPPORT_DOWNGRADE",
    "CERT_FILE",
    "KEY_FILE",
    "VERIFY_CERT",
    "VERIFY_SERVER_CERT",
    "REQUIRE_CERT",
    "REQUIRE_CLIENT_CERT",
    "VERIFY_IPADD",
    "VERIFICATION_DEPTH",
    "CA_DIR",
    "CA_FILE",
    "CIPHERS",
    "ECDH_CURVES",
    "HOSTNAME_VALIDATION_SCHEME",
    "ENABLE_SSL_V3",
    "ENABLE_TLS_V1_0",
    "ENABLE_TLS_V1_1",
    "ENABLE_TLS_V1_2",
    "ENABLE_TLS_V1_3",
];

/// How the agent's name is checked against its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostnameScheme {
    Legacy,
    OpenSsl,
}

/// The `LIBPROCESS_SSL_*` settings of an outgoing connection, parsed once.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: Option<PathBuf>,
    pub ca_dir: Option<PathBuf>,
    /// Verify the agent's certificate (after the implications libprocess applies).
    pub verify_server_cert: bool,
    /// `REQUIRE_CLIENT_CERT` / `REQUIRE_CERT`: a server-side setting; for a client it implies
    /// verification and makes a missing peer name an error under `legacy`.
    pub require_client_cert: bool,
    pub verify_ipadd: bool,
    pub hostname_scheme: HostnameScheme,
    pub tls12: bool,
    pub tls13: bool,
    /// `LIBPROCESS_SSL_CIPHERS` (or libprocess's default).
    pub ciphers: String,
    /// What we cannot honour or what deserves a word, one line each (logged at start-up).
    pub notes: Vec<String>,
}

/// A bad TLS setting or file. Never retryable: the agent starts us with the same environment.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {setting}={}: {reason}", path.display())]
    File {
        setting: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{setting}={} holds no PEM {what}", path.display())]
    Empty {
        setting: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    #[error("LIBPROCESS_SSL_KEY_FILE={} does not match the certificate of LIBPROCESS_SSL_CERT_FILE={}: {reason}", key.display(), cert.display())]
    KeyMismatch {
        key: PathBuf,
        cert: PathBuf,
        reason: String,
    },
    #[error("no CA certificates for verifying the agent: {0}")]
    NoRoots(String),
    #[error("TLS to the agent: {0}")]
    Setup(String),
}

impl TlsError {
    pub fn is_retryable(&self) -> bool {
        false
    }
}

fn flag(
    env: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: bool,
    problems: &mut Vec<String>,
) -> bool {
    let var = format!("LIBPROCESS_SSL_{name}");
    match env(&var).as_deref().map(str::trim) {
        None | Some("") => default,
        Some("true") | Some("1") => true,
        Some("false") | Some("0") => false,
        Some(other) => {
            problems.push(format!("{var}={other:?}: expected true, false, 1 or 0"));
            default
        }
    }
}

impl TlsSettings {
    /// `None` unless `LIBPROCESS_SSL_ENABLED` is true; problems are added to `problems`.
    /// `all_vars` lists the environment's variable names (to point out unknown ones).
    pub fn parse(
        env: impl Fn(&str) -> Option<String>,
        all_vars: &[String],
        problems: &mut Vec<String>,
    ) -> Option<TlsSettings> {
        let mut notes = Vec::new();
        if env("LIBPROCESS_SSL_ENABLED").is_none()
            && matches!(env("SSL_ENABLED").as_deref(), Some("true") | Some("1"))
        {
            // libprocess still reads the deprecated SSL_* names; we do not (SSL_CERT_FILE and
            // SSL_CERT_DIR are OpenSSL's default CA paths to everything else).
            problems.push(
                "SSL_ENABLED is set: the deprecated SSL_* names of libprocess are not read; \
                 set LIBPROCESS_SSL_ENABLED and the other LIBPROCESS_SSL_* variables instead"
                    .to_string(),
            );
            return None;
        }
        if !flag(&env, "ENABLED", false, problems) {
            return None;
        }
        let path = |name: &str| {
            env(&format!("LIBPROCESS_SSL_{name}"))
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let cert_file = path("CERT_FILE");
        let key_file = path("KEY_FILE");
        if key_file.is_none() {
            problems.push(
                "LIBPROCESS_SSL_ENABLED is set but LIBPROCESS_SSL_KEY_FILE is not (TLS requires a key)"
                    .into(),
            );
        }
        if cert_file.is_none() {
            problems.push(
                "LIBPROCESS_SSL_ENABLED is set but LIBPROCESS_SSL_CERT_FILE is not (TLS requires a certificate)"
                    .into(),
            );
        }
        let verify_cert = flag(&env, "VERIFY_CERT", false, problems);
        let require_cert = flag(&env, "REQUIRE_CERT", false, problems);
        let require_client_cert =
            flag(&env, "REQUIRE_CLIENT_CERT", false, problems) || require_cert;
        let verify_server_cert =
            flag(&env, "VERIFY_SERVER_CERT", false, problems) || verify_cert || require_client_cert;
        let verify_ipadd = flag(&env, "VERIFY_IPADD", false, problems);
        let hostname_scheme = match env("LIBPROCESS_SSL_HOSTNAME_VALIDATION_SCHEME").as_deref() {
            None | Some("") | Some("legacy") => HostnameScheme::Legacy,
            Some("openssl") => HostnameScheme::OpenSsl,
            Some(other) => {
                problems.push(format!(
                    "LIBPROCESS_SSL_HOSTNAME_VALIDATION_SCHEME={other:?}: expected legacy or openssl"
                ));
                HostnameScheme::Legacy
            }
        };
        for (name, what) in [
            ("ENABLE_SSL_V3", "SSLv3"),
            ("ENABLE_TLS_V1_0", "TLS 1.0"),
            ("ENABLE_TLS_V1_1", "TLS 1.1"),
        ] {
            if flag(&env, name, false, problems) {
                notes.push(format!(
                    "LIBPROCESS_SSL_{name} is set, but {what} is not available (rustls speaks \
                     TLS 1.2 and 1.3 only)"
                ));
            }
        }
        let tls12 = flag(&env, "ENABLE_TLS_V1_2", true, problems);
        let tls13 = flag(&env, "ENABLE_TLS_V1_3", false, problems);
        if !tls12 && !tls13 {
            problems.push(
                "LIBPROCESS_SSL_ENABLE_TLS_V1_2 and LIBPROCESS_SSL_ENABLE_TLS_V1_3 are both off: \
                 no TLS version left to talk to the agent"
                    .into(),
            );
        }
        if hostname_scheme == HostnameScheme::OpenSsl && verify_server_cert && !verify_ipadd {
            problems.push(
                "LIBPROCESS_SSL_HOSTNAME_VALIDATION_SCHEME=openssl verifies the agent by its IP \
                 (MESOS_AGENT_ENDPOINT has no DNS name) and needs LIBPROCESS_SSL_VERIFY_IPADD=true"
                    .into(),
            );
        }
        if let Some(depth) = env("LIBPROCESS_SSL_VERIFICATION_DEPTH").filter(|d| d.trim() != "4") {
            notes.push(format!(
                "LIBPROCESS_SSL_VERIFICATION_DEPTH={depth} is not honoured (rustls applies its \
                 own chain length limit)"
            ));
        }
        if let Some(curves) = env("LIBPROCESS_SSL_ECDH_CURVES").filter(|c| c.trim() != "auto") {
            notes.push(format!(
                "LIBPROCESS_SSL_ECDH_CURVES={curves} is not honoured (rustls offers X25519, \
                 P-256 and P-384)"
            ));
        }
        if flag(&env, "SUPPORT_DOWNGRADE", false, problems) {
            notes.push(
                "LIBPROCESS_SSL_SUPPORT_DOWNGRADE only concerns a server accepting connections; \
                 the executor always talks TLS to the agent"
                    .into(),
            );
        }
        if verify_server_cert && hostname_scheme == HostnameScheme::Legacy {
            notes.push(
                "hostname validation (legacy): the agent's reverse-DNS name is matched against \
                 the certificate's subjectAltName only, not its common name"
                    .into(),
            );
        }
        let ciphers = env("LIBPROCESS_SSL_CIPHERS")
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| DEFAULT_CIPHERS.to_string());
        let mut unknown: Vec<&str> = all_vars
            .iter()
            .filter_map(|v| v.strip_prefix("LIBPROCESS_SSL_"))
            .filter(|n| !KNOWN.contains(n))
            .collect();
        unknown.sort_unstable();
        for n in unknown {
            notes.push(format!(
                "LIBPROCESS_SSL_{n} is not a libprocess setting; ignored"
            ));
        }
        let mut s = TlsSettings {
            cert_file: cert_file.unwrap_or_default(),
            key_file: key_file.unwrap_or_default(),
            ca_file: path("CA_FILE"),
            ca_dir: path("CA_DIR"),
            verify_server_cert,
            require_client_cert,
            verify_ipadd,
            hostname_scheme,
            tls12,
            tls13,
            ciphers,
            notes,
        };
        let (_, cipher_notes) = s.tls12_suites();
        s.notes.extend(cipher_notes);
        Some(s)
    }

    /// The TLS 1.2 suites `ciphers` names that rustls implements, and a note for the rest.
    /// When none is left, rustls's own TLS 1.2 suites are offered (the agent picks from its
    /// list anyway) and the note says the agent will likely refuse.
    fn tls12_suites(&self) -> (Vec<rustls::SupportedCipherSuite>, Vec<String>) {
        use ring::cipher_suite as cs;
        let map = [
            (
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            ),
            (
                "ECDHE-ECDSA-AES256-GCM-SHA384",
                cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            ),
            (
                "ECDHE-ECDSA-CHACHA20-POLY1305",
                cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            ),
            (
                "ECDHE-RSA-AES128-GCM-SHA256",
                cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            ),
            (
                "ECDHE-RSA-AES256-GCM-SHA384",
                cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            ),
            (
                "ECDHE-RSA-CHACHA20-POLY1305",
                cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            ),
        ];
        let mut suites = Vec::new();
        let mut ignored = Vec::new();
        for name in self
            .ciphers
            .split([':', ',', ' '])
            .filter(|n| !n.is_empty())
        {
            match map.iter().find(|(n, _)| *n == name) {
                Some((_, s)) if !suites.contains(s) => suites.push(*s),
                Some(_) => {}
                None => ignored.push(name),
            }
        }
        let mut notes = Vec::new();
        if !self.tls12 {
            return (suites, notes);
        }
        if !ignored.is_empty() {
            notes.push(format!(
                "LIBPROCESS_SSL_CIPHERS: {} not available in rustls (it implements \
                 ECDHE-{{ECDSA,RSA}}-{{AES128-GCM-SHA256,AES256-GCM-SHA384,CHACHA20-POLY1305}} for \
                 TLS 1.2; OpenSSL keywords are not interpreted)",
                ignored.join(":")
            ));
        }
        if suites.is_empty() {
            notes.push(format!(
                "LIBPROCESS_SSL_CIPHERS names no TLS 1.2 cipher rustls implements: offering \
                 rustls's ECDHE-GCM/CHACHA20 suites{}; an agent limited to the same list will \
                 refuse the handshake (add ECDHE-RSA-AES128-GCM-SHA256 or enable \
                 LIBPROCESS_SSL_ENABLE_TLS_V1_3 on both sides)",
                if self.tls13 { " (and TLS 1.3)" } else { "" }
            ));
        }
        (suites, notes)
    }

    /// A one-line summary for the start-up log.
    pub fn summary(&self) -> String {
        format!(
            "cert={} key={} ca_file={} ca_dir={} verify_server_cert={} verify_ipadd={} \
             hostname_validation={:?} versions={}",
            self.cert_file.display(),
            self.key_file.display(),
            self.ca_file
                .as_ref()
                .map_or("-".into(), |p| p.display().to_string()),
            self.ca_dir
                .as_ref()
                .map_or("-".into(), |p| p.display().to_string()),
            self.verify_server_cert,
            self.verify_ipadd,
            self.hostname_scheme,
            match (self.tls12, self.tls13) {
                (true, true) => "TLS1.2,TLS1.3",
                (true, false) => "TLS1.2",
                _ => "TLS1.3",
            }
        )
    }

    /// Where the agent's certificate is checked against, for error messages.
    pub fn trust_description(&self) -> String {
        if !self.verify_server_cert {
            return "server certificate not verified".into();
        }
        match (&self.ca_file, &self.ca_dir) {
            (Some(f), Some(d)) => format!(
                "verified against LIBPROCESS_SSL_CA_FILE={} and LIBPROCESS_SSL_CA_DIR={}",
                f.display(),
                d.display()
            ),
            (Some(f), None) => format!("verified against LIBPROCESS_SSL_CA_FILE={}", f.display()),
            (None, Some(d)) => format!("verified against LIBPROCESS_SSL_CA_DIR={}", d.display()),
            (None, None) => "verified against the system's default CA certificates".into(),
        }
    }
}

/// The TLS client of the agent link: the rustls configuration and how the agent is named.
pub struct AgentTls {
    pub config: Arc<rustls::ClientConfig>,
    /// The agent's IP: no SNI is sent (libprocess sends none when connecting by IP).
    pub server_name: ServerName<'static>,
    /// For error messages: what the agent's certificate is checked against.
    pub trust: String,
}

impl std::fmt::Debug for AgentTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTls")
            .field("server_name", &self.server_name)
            .field("trust", &self.trust)
            .finish()
    }
}

fn read_certs(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_err = |reason: String| TlsError::File {
        setting,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(pem_reason(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(pem_reason(&e)))?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            setting,
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn pem_reason(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        other => format!("not valid PEM ({other:?})"),
    }
}

/// Every certificate of every PEM file in `dir` (OpenSSL looks up `<hash>.N` files there;
/// loading all of them trusts the same set).
fn read_ca_dir(dir: &Path, roots: &mut RootCertStore) -> Result<usize, TlsError> {
    let setting = "LIBPROCESS_SSL_CA_DIR";
    let entries = std::fs::read_dir(dir).map_err(|e| TlsError::File {
        setting,
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut added = 0;
    for entry in entries.flatten() {
        let p = entry.path();
        if !p.is_file() {
            continue;
        }
        let Ok(iter) = CertificateDer::pem_file_iter(&p) else {
            continue;
        };
        for cert in iter.flatten() {
            if roots.add(cert).is_ok() {
                added += 1;
            }
        }
    }
    Ok(added)
}

impl AgentTls {
    /// Read the files and build the client for the agent at `agent_ip`. Blocking (files,
    /// reverse DNS): call before the runtime starts.
    pub fn new(s: &TlsSettings, agent_ip: IpAddr) -> Result<AgentTls, TlsError> {
        let chain = read_certs("LIBPROCESS_SSL_CERT_FILE", &s.cert_file)?;
        let key = PrivateKeyDer::from_pem_file(&s.key_file).map_err(|e| match e {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
                setting: "LIBPROCESS_SSL_KEY_FILE",
                path: s.key_file.clone(),
                what: "private key",
            },
            other => TlsError::File {
                setting: "LIBPROCESS_SSL_KEY_FILE",
                path: s.key_file.clone(),
                reason: pem_reason(&other),
            },
        })?;
        let verification = if s.verify_server_cert {
            let mut roots = RootCertStore::empty();
            if let Some(f) = &s.ca_file {
                for c in read_certs("LIBPROCESS_SSL_CA_FILE", f)? {
                    roots.add(c).map_err(|e| TlsError::File {
                        setting: "LIBPROCESS_SSL_CA_FILE",
                        path: f.clone(),
                        reason: format!("not a usable CA certificate: {e}"),
                    })?;
                }
            }
            if let Some(d) = &s.ca_dir {
                if read_ca_dir(d, &mut roots)? == 0 && s.ca_file.is_none() {
                    return Err(TlsError::Empty {
                        setting: "LIBPROCESS_SSL_CA_DIR",
                        path: d.clone(),
                        what: "CA certificate",
                    });
                }
            }
            if s.ca_file.is_none() && s.ca_dir.is_none() {
                let native = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(native.certs);
                if added == 0 {
                    let why = native
                        .errors
                        .first()
                        .map_or("none found".to_string(), |e| e.to_string());
                    return Err(TlsError::NoRoots(format!(
                        "LIBPROCESS_SSL_VERIFY_SERVER_CERT is on without LIBPROCESS_SSL_CA_FILE \
                         or LIBPROCESS_SSL_CA_DIR, and the system's default CA certificates \
                         could not be loaded ({why})"
                    )));
                }
            }
            let names = match s.hostname_scheme {
                HostnameScheme::OpenSsl => Names::Ip,
                HostnameScheme::Legacy => match reverse_dns(agent_ip) {
                    Some(host) => match ServerName::try_from(host.clone()) {
                        Ok(n) => Names::Legacy(Some((host, n))),
                        Err(e) => {
                            tracing::warn!(
                                "the agent at {agent_ip} has the reverse-DNS name {host:?}, which \
                                 is not a valid TLS server name ({e}): its certificate is checked \
                                 against LIBPROCESS_SSL_CA_FILE/LIBPROCESS_SSL_CA_DIR but not \
                                 against a host name (LIBPROCESS_SSL_HOSTNAME_VALIDATION_SCHEME=legacy)"
                            );
                            Names::Legacy(None)
                        }
                    },
                    None => Names::Legacy(None),
                },
            };
            Some(Verify {
                roots: Arc::new(roots),
                names,
            })
        } else {
            None
        };
        let mut provider = ring::default_provider();
        let (suites12, _) = s.tls12_suites();
        provider.cipher_suites.retain(|c| match c {
            rustls::SupportedCipherSuite::Tls13(_) => s.tls13,
            rustls::SupportedCipherSuite::Tls12(_) => {
                s.tls12 && (suites12.is_empty() || suites12.contains(c))
            }
        });
        let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
        if s.tls12 {
            versions.push(&rustls::version::TLS12);
        }
        if s.tls13 {
            versions.push(&rustls::version::TLS13);
        }
        let provider = Arc::new(provider);
        let verifier = Arc::new(AgentVerifier {
            provider: provider.clone(),
            verify: verification,
            ip: agent_ip,
            verify_ipadd: s.verify_ipadd,
            require_client_cert: s.require_client_cert,
        });
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|e| TlsError::Setup(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(chain, key)
            .map_err(|e| TlsError::KeyMismatch {
                key: s.key_file.clone(),
                cert: s.cert_file.clone(),
                reason: e.to_string(),
            })?;
        Ok(AgentTls {
            config: Arc::new(config),
            server_name: ServerName::IpAddress(agent_ip.into()),
            trust: s.trust_description(),
        })
    }
}

/// A client that accepts any server certificate and offers none (as `curl -k`): HTTPS health
/// checks and checks. TLS 1.2 and 1.3, rustls's default suites.
pub fn accept_any_client() -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(ring::default_provider());
    let verifier = Arc::new(AgentVerifier {
        provider: provider.clone(),
        verify: None,
        ip: IpAddr::from([127, 0, 0, 1]),
        verify_ipadd: false,
        require_client_cert: false,
    });
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// The agent's reverse-DNS name (what libprocess's legacy scheme checks), if it has one.
fn reverse_dns(ip: IpAddr) -> Option<String> {
    let mut host = [0 as libc::c_char; 1025];
    let lookup = |sa: *const libc::sockaddr, len: usize, host: &mut [libc::c_char]| {
        // SAFETY: `sa` points to a socket address of `len` bytes living for this call;
        // `host` is a writable buffer of the length given; no service name is asked for.
        unsafe {
            libc::getnameinfo(
                sa,
                len as libc::socklen_t,
                host.as_mut_ptr(),
                host.len() as libc::socklen_t,
                std::ptr::null_mut(),
                0,
                libc::NI_NAMEREQD,
            )
        }
    };
    let rc = match ip {
        IpAddr::V4(v4) => {
            // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
            let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_addr.s_addr = u32::from_ne_bytes(v4.octets());
            lookup(
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>(),
                &mut host,
            )
        }
        IpAddr::V6(v6) => {
            // SAFETY: sockaddr_in6 is plain old data; all-zero is a valid value.
            let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sa.sin6_addr.s6_addr = v6.octets();
            lookup(
                (&sa as *const libc::sockaddr_in6).cast(),
                std::mem::size_of::<libc::sockaddr_in6>(),
                &mut host,
            )
        }
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: on success getnameinfo wrote a NUL-terminated string into `host`.
    let name = unsafe { std::ffi::CStr::from_ptr(host.as_ptr()) };
    name.to_str().ok().map(str::to_owned)
}

#[derive(Debug)]
enum Names {
    /// `legacy`: the reverse-DNS name, if any.
    Legacy(Option<(String, ServerName<'static>)>),
    /// `openssl`: the IP must be among the certificate's IP addresses.
    Ip,
}

#[derive(Debug)]
struct Verify {
    roots: Arc<RootCertStore>,
    names: Names,
}

/// Verifies the agent's certificate as libprocess does (see the module's text).
#[derive(Debug)]
struct AgentVerifier {
    provider: Arc<CryptoProvider>,
    verify: Option<Verify>,
    ip: IpAddr,
    verify_ipadd: bool,
    require_client_cert: bool,
}

impl ServerCertVerifier for AgentVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(v) = &self.verify else {
            return Ok(ServerCertVerified::assertion());
        };
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &v.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        let ip_name = ServerName::IpAddress(self.ip.into());
        let ip_ok = || rustls::client::verify_server_name(&cert, &ip_name).is_ok();
        let mismatch = || rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        match &v.names {
            Names::Ip => {
                if ip_ok() {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(mismatch())
                }
            }
            Names::Legacy(Some((_, dns))) => {
                if rustls::client::verify_server_name(&cert, dns).is_ok()
                    || (self.verify_ipadd && ip_ok())
                {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(mismatch())
                }
            }
            Names::Legacy(None) => {
                if self.verify_ipadd {
                    if ip_ok() {
                        Ok(ServerCertVerified::assertion())
                    } else {
                        Err(mismatch())
                    }
                } else if self.require_client_cert {
                    Err(rustls::Error::General(format!(
                        "cannot verify the agent's certificate: {} has no reverse-DNS name \
                         (set LIBPROCESS_SSL_VERIFY_IPADD to match its IP)",
                        self.ip
                    )))
                } else {
                    Ok(ServerCertVerified::assertion())
                }
            }
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> (Option<TlsSettings>, Vec<String>) {
        let map: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let names: Vec<String> = map.keys().cloned().collect();
        let mut problems = Vec::new();
        let s = TlsSettings::parse(|k| map.get(k).cloned(), &names, &mut problems);
        (s, problems)
    }

    #[test]
    fn off_unless_enabled() {
        assert!(parse(&[]).0.is_none());
        assert!(parse(&[("LIBPROCESS_SSL_ENABLED", "false")]).0.is_none());
        let (_, p) = parse(&[("LIBPROCESS_SSL_ENABLED", "yes")]);
        assert!(p[0].contains("LIBPROCESS_SSL_ENABLED=\"yes\""), "{p:?}");
    }

    #[test]
    fn cert_and_key_are_required() {
        let (_, p) = parse(&[("LIBPROCESS_SSL_ENABLED", "1")]);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().any(|l| l.contains("LIBPROCESS_SSL_KEY_FILE")));
        assert!(p.iter().any(|l| l.contains("LIBPROCESS_SSL_CERT_FILE")));
    }

    #[test]
    fn implications_and_notes_as_libprocess() {
        let (s, p) = parse(&[
            ("LIBPROCESS_SSL_ENABLED", "true"),
            ("LIBPROCESS_SSL_CERT_FILE", "/c"),
            ("LIBPROCESS_SSL_KEY_FILE", "/k"),
            ("LIBPROCESS_SSL_REQUIRE_CERT", "true"),
            ("LIBPROCESS_SSL_ENABLE_TLS_V1_1", "true"),
            ("LIBPROCESS_SSL_FROBNICATE", "1"),
        ]);
        assert!(p.is_empty(), "{p:?}");
        let s = s.unwrap();
        assert!(s.verify_server_cert && s.require_client_cert);
        assert!(s.tls12 && !s.tls13);
        let notes = s.notes.join("\n");
        assert!(notes.contains("LIBPROCESS_SSL_ENABLE_TLS_V1_1"), "{notes}");
        assert!(notes.contains("LIBPROCESS_SSL_FROBNICATE"), "{notes}");
        // libprocess's default cipher list has nothing rustls implements.
        assert!(
            notes.contains("LIBPROCESS_SSL_CIPHERS names no TLS 1.2"),
            "{notes}"
        );
    }

    #[test]
    fn cipher_names_map_to_rustls_suites() {
        let (s, _) = parse(&[
            ("LIBPROCESS_SSL_ENABLED", "true"),
            ("LIBPROCESS_SSL_CERT_FILE", "/c"),
            ("LIBPROCESS_SSL_KEY_FILE", "/k"),
            (
                "LIBPROCESS_SSL_CIPHERS",
                "ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA:HIGH",
            ),
        ]);
        let s = s.unwrap();
        let (suites, notes) = s.tls12_suites();
        assert_eq!(suites.len(), 1);
        assert!(notes[0].contains("AES128-SHA:HIGH"), "{notes:?}");
    }

    #[test]
    fn openssl_scheme_needs_ip_verification() {
        let (_, p) = parse(&[
            ("LIBPROCESS_SSL_ENABLED", "true"),
            ("LIBPROCESS_SSL_CERT_FILE", "/c"),
            ("LIBPROCESS_SSL_KEY_FILE", "/k"),
            ("LIBPROCESS_SSL_VERIFY_SERVER_CERT", "true"),
            ("LIBPROCESS_SSL_HOSTNAME_VALIDATION_SCHEME", "openssl"),
        ]);
        assert!(
            p.iter().any(|l| l.contains("LIBPROCESS_SSL_VERIFY_IPADD")),
            "{p:?}"
        );
    }
}
