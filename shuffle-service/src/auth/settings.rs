//! The auth settings, typed, and the shared secret.
//!
//! The secret is looked up the way Spark's `SecurityManager.getSecretKey` does for its Mesos
//! shuffle service (one secret shared by every application): the `_SPARK_AUTH_SECRET`
//! environment variable, else `spark.authenticate.secret`; then ours, the file named by
//! `croupier.authenticate.secret.file` (refused when group- or world-readable), else a systemd
//! credential `spark.authenticate.secret` (`LoadCredential=` puts it in
//! `$CREDENTIALS_DIRECTORY`). The secret's bytes never reach `Debug`, logs or error messages.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub const AUTHENTICATE_KEY: &str = "spark.authenticate";
pub const SECRET_KEY: &str = "spark.authenticate.secret";
pub const SECRET_ENV: &str = "_SPARK_AUTH_SECRET";
pub const SECRET_FILE_KEY: &str = "croupier.authenticate.secret.file";
/// The systemd credential name looked up in `$CREDENTIALS_DIRECTORY`.
pub const CREDENTIAL_NAME: &str = "spark.authenticate.secret";
pub const CRYPTO_ENABLED_KEY: &str = "spark.network.crypto.enabled";
pub const SASL_FALLBACK_KEY: &str = "spark.network.crypto.saslFallback";
pub const CIPHER_KEY: &str = "spark.network.crypto.cipher";
pub const ENGINE_VERSION_KEY: &str = "spark.network.crypto.authEngineVersion";
pub const SASL_ALWAYS_ENCRYPT_KEY: &str = "spark.network.sasl.serverAlwaysEncrypt";
pub const SASL_MAX_BLOCK_KEY: &str = "spark.network.sasl.maxEncryptedBlockSize";
/// Ours: how long a connection may take to authenticate before it is closed.
pub const HANDSHAKE_TIMEOUT_KEY: &str = "croupier.authenticate.handshakeTimeout";
/// Ours: how many connections may be open and not yet authenticated at once.
pub const MAX_PENDING_KEY: &str = "croupier.authenticate.maxPendingConnections";
/// Ours: how many of those may come from one peer address.
pub const MAX_PENDING_PER_HOST_KEY: &str = "croupier.authenticate.maxPendingConnectionsPerHost";
/// Default of [`HANDSHAKE_TIMEOUT_KEY`]: Spark clients wait 30 s for each authentication
/// round trip (`spark.network.auth.rpcTimeout`, `spark.shuffle.sasl.timeout`); a real handshake
/// takes milliseconds.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound of the default of [`MAX_PENDING_KEY`] (which is otherwise a quarter of the
/// process's open-file limit).
pub const DEFAULT_MAX_PENDING_CAP: usize = 1024;

/// Every key this module reads from the Spark settings.
pub const KEYS: &[&str] = &[
    AUTHENTICATE_KEY,
    SECRET_KEY,
    SECRET_FILE_KEY,
    CRYPTO_ENABLED_KEY,
    SASL_FALLBACK_KEY,
    CIPHER_KEY,
    ENGINE_VERSION_KEY,
    SASL_ALWAYS_ENCRYPT_KEY,
    SASL_MAX_BLOCK_KEY,
    HANDSHAKE_TIMEOUT_KEY,
    MAX_PENDING_KEY,
    MAX_PENDING_PER_HOST_KEY,
];

/// The shared secret. `Debug` prints a placeholder; the bytes are wiped on drop.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(s: String) -> Secret {
        Secret(Zeroizing::new(s))
    }

    /// The string as Spark holds it (UTF-8 bytes are the auth engine's pre-shared key; the
    /// SASL password is derived from it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

/// Where the secret came from (logged at start-up instead of the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env,
    Setting { origin: String },
    File(PathBuf),
    Credential(PathBuf),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env => write!(f, "environment variable {SECRET_ENV}"),
            SecretSource::Setting { origin } => write!(f, "{SECRET_KEY} (from {origin})"),
            SecretSource::File(p) => write!(f, "{SECRET_FILE_KEY}={}", p.display()),
            SecretSource::Credential(p) => write!(f, "systemd credential {}", p.display()),
        }
    }
}

/// `spark.network.crypto.authEngineVersion`: 1 uses the raw X25519 output as the AES-256 key;
/// any other value behaves as 2 (HKDF-derived AES-128 key), as in Spark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineVersion {
    V1,
    V2,
}

/// Typed auth settings (part of [`crate::config::Config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// `spark.authenticate`.
    pub enabled: bool,
    /// The secret and where it came from; always `Some` when `enabled`.
    pub secret: Option<(Secret, SecretSource)>,
    /// `spark.network.crypto.enabled`: the auth engine (X25519 + AES-CTR) first.
    pub crypto_enabled: bool,
    /// `spark.network.crypto.saslFallback` (default true).
    pub sasl_fallback: bool,
    /// `spark.network.crypto.authEngineVersion` (default 1).
    pub engine_version: EngineVersion,
    /// `spark.network.sasl.serverAlwaysEncrypt`: offer SASL `auth-conf` only.
    pub sasl_always_encrypt: bool,
    /// `spark.network.sasl.maxEncryptedBlockSize` (64k): plaintext per SASL record we send.
    pub sasl_max_block: usize,
    /// `croupier.authenticate.handshakeTimeout`: an unauthenticated connection is closed
    /// after this long.
    pub handshake_timeout: Duration,
    /// `croupier.authenticate.maxPendingConnections`: unauthenticated connections open at
    /// once; a new one beyond it closes the oldest.
    pub max_pending: usize,
    /// `croupier.authenticate.maxPendingConnectionsPerHost`: of those, from one peer address
    /// (`None`: half of `max_pending`, see [`AuthSettings::pending_per_host`]).
    pub max_pending_per_host: Option<usize>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            enabled: false,
            secret: None,
            crypto_enabled: false,
            sasl_fallback: true,
            engine_version: EngineVersion::V1,
            sasl_always_encrypt: false,
            sasl_max_block: 64 * 1024,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_pending: default_max_pending(),
            max_pending_per_host: None,
        }
    }
}

impl AuthSettings {
    /// Unauthenticated connections one peer address may hold: the setting, else half of
    /// `max_pending` (at least 1), so one host can never fill the bound by itself.
    pub fn pending_per_host(&self) -> usize {
        self.max_pending_per_host
            .unwrap_or(self.max_pending / 2)
            .max(1)
    }

    /// One line for the start-up log: protocols and where the secret came from, never the secret.
    pub fn describe(&self) -> String {
        if !self.enabled {
            return "off".into();
        }
        let source = self
            .secret
            .as_ref()
            .map_or_else(|| "none".to_string(), |(_, s)| s.to_string());
        let protocols = if self.crypto_enabled {
            format!(
                "auth engine v{} + AES-CTR{}",
                if self.engine_version == EngineVersion::V1 {
                    1
                } else {
                    2
                },
                if self.sasl_fallback {
                    ", SASL DIGEST-MD5 fallback"
                } else {
                    ", no SASL fallback"
                }
            )
        } else {
            "SASL DIGEST-MD5".into()
        };
        format!(
            "on ({protocols}; SASL qop {}; secret from {source}; handshake within {:?}, at most {} connections authenticating, {} per host)",
            if self.sasl_always_encrypt {
                "auth-conf"
            } else {
                "auth-conf,auth"
            },
            self.handshake_timeout,
            self.max_pending,
            self.pending_per_host(),
        )
    }
}

/// A quarter of the soft open-file limit (so idle unauthenticated sockets can never take
/// the descriptors authenticated clients and shuffle files need), at least 4, at most
/// [`DEFAULT_MAX_PENDING_CAP`].
pub fn default_max_pending() -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024);
    usize::try_from(soft / 4)
        .unwrap_or(DEFAULT_MAX_PENDING_CAP)
        .clamp(4, DEFAULT_MAX_PENDING_CAP)
}

/// What the process environment gives (passed in so tests need not touch it).
#[derive(Debug, Clone, Default)]
pub struct AuthEnv {
    /// `_SPARK_AUTH_SECRET`.
    pub secret: Option<String>,
    /// `CREDENTIALS_DIRECTORY` (set by systemd when the unit has `LoadCredential=`).
    pub credentials_directory: Option<PathBuf>,
}

impl AuthEnv {
    pub fn from_process() -> AuthEnv {
        AuthEnv {
            secret: std::env::var(SECRET_ENV).ok(),
            credentials_directory: std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSettingsError {
    #[error("invalid value {value:?} for {key} (from {origin}): {reason}")]
    BadValue {
        key: String,
        value: String,
        origin: String,
        reason: String,
    },
    #[error(
        "{AUTHENTICATE_KEY}=true (from {origin}) but no secret is configured: give the secret shared with \
         the applications in the environment variable {SECRET_ENV}, in the setting {SECRET_KEY}, or in a file \
         named by {SECRET_FILE_KEY} (readable by the service user only; under systemd, \
         LoadCredential={CREDENTIAL_NAME}:<path> is found without that setting)"
    )]
    NoSecret { origin: String },
    #[error("the secret from {source_name} is empty")]
    EmptySecret { source_name: String },
    #[error("cannot read the secret file {path} ({SECRET_FILE_KEY}): {reason}")]
    SecretFile { path: PathBuf, reason: String },
    #[error(
        "secret file {path} ({SECRET_FILE_KEY}) has mode {mode:04o}: it is readable by its group or by \
         everyone; make it readable by the service user only (chmod 600 {path})"
    )]
    SecretFileMode { path: PathBuf, mode: u32 },
    #[error(
        "{CIPHER_KEY}={value} (from {origin}) is refused: Spark 3.5 clients decrypt only the first AES-GCM \
         record of a connection (fixed only in Spark 4.0, SPARK-56227), so every fetch after the first would \
         hang; use AES/CTR/NoPadding (the default) with the same setting in every application"
    )]
    Gcm { value: String, origin: String },
    #[error("{CIPHER_KEY}={value} (from {origin}) is not a cipher Spark supports: use AES/CTR/NoPadding")]
    UnknownCipher { value: String, origin: String },
}

impl AuthSettingsError {
    pub fn is_retryable(&self) -> bool {
        // A missing or unreadable file may appear later (e.g. a credential being provisioned).
        matches!(self, AuthSettingsError::SecretFile { .. })
    }
}

fn parse_bool(key: &str, value: &str, origin: &str) -> Result<bool, AuthSettingsError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(AuthSettingsError::BadValue {
            key: key.into(),
            value: value.into(),
            origin: origin.into(),
            reason: "expected true or false".into(),
        }),
    }
}

/// Builds the auth settings. `get` returns `(value, origin)` of a Spark setting.
pub fn from_settings<'a>(
    get: impl Fn(&str) -> Option<(&'a str, &'a str)>,
    env: &AuthEnv,
) -> Result<AuthSettings, AuthSettingsError> {
    let mut a = AuthSettings::default();
    let flag = |key: &str, default: bool| -> Result<bool, AuthSettingsError> {
        match get(key) {
            Some((v, o)) => parse_bool(key, v, o),
            None => Ok(default),
        }
    };
    a.enabled = flag(AUTHENTICATE_KEY, false)?;
    a.crypto_enabled = flag(CRYPTO_ENABLED_KEY, false)?;
    a.sasl_fallback = flag(SASL_FALLBACK_KEY, true)?;
    a.sasl_always_encrypt = flag(SASL_ALWAYS_ENCRYPT_KEY, false)?;
    if let Some((v, o)) = get(ENGINE_VERSION_KEY) {
        let n: i32 = v.trim().parse().map_err(|e| AuthSettingsError::BadValue {
            key: ENGINE_VERSION_KEY.into(),
            value: v.into(),
            origin: o.into(),
            reason: format!("{e}"),
        })?;
        a.engine_version = if n == 1 {
            EngineVersion::V1
        } else {
            EngineVersion::V2
        };
    }
    if let Some((v, o)) = get(SASL_MAX_BLOCK_KEY) {
        let n = crate::units::parse_bytes(v).map_err(|reason| AuthSettingsError::BadValue {
            key: SASL_MAX_BLOCK_KEY.into(),
            value: v.into(),
            origin: o.into(),
            reason,
        })?;
        if n == 0 || n > 16 << 20 {
            return Err(AuthSettingsError::BadValue {
                key: SASL_MAX_BLOCK_KEY.into(),
                value: v.into(),
                origin: o.into(),
                reason: "must be between 1 byte and 16m".into(),
            });
        }
        a.sasl_max_block = n as usize;
    }
    if let Some((v, o)) = get(HANDSHAKE_TIMEOUT_KEY) {
        let bad = |reason: String| AuthSettingsError::BadValue {
            key: HANDSHAKE_TIMEOUT_KEY.into(),
            value: v.into(),
            origin: o.into(),
            reason,
        };
        match crate::units::parse_time(v, Duration::from_secs(1)) {
            Ok(d) if !d.is_zero() => a.handshake_timeout = d,
            Ok(_) => return Err(bad("must be positive, e.g. 30s".into())),
            Err(r) => return Err(bad(r)),
        }
    }
    if let Some((v, o)) = get(MAX_PENDING_KEY) {
        match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => a.max_pending = n,
            _ => {
                return Err(AuthSettingsError::BadValue {
                    key: MAX_PENDING_KEY.into(),
                    value: v.into(),
                    origin: o.into(),
                    reason: "expected a positive number of connections".into(),
                })
            }
        }
    }
    if let Some((v, o)) = get(MAX_PENDING_PER_HOST_KEY) {
        match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => a.max_pending_per_host = Some(n),
            _ => {
                return Err(AuthSettingsError::BadValue {
                    key: MAX_PENDING_PER_HOST_KEY.into(),
                    value: v.into(),
                    origin: o.into(),
                    reason: "expected a positive number of connections".into(),
                })
            }
        }
    }
    if !a.enabled {
        if a.crypto_enabled {
            // Spark encrypts only authenticated connections: say so rather than serve
            // plaintext in silence to an operator who asked for encryption.
            tracing::warn!(
                "spark.network.crypto.enabled=true has no effect without spark.authenticate=true: connections are neither authenticated nor encrypted"
            );
        }
        return Ok(a);
    }
    if a.crypto_enabled {
        if let Some((v, o)) = get(CIPHER_KEY) {
            let t = v.trim();
            if t.eq_ignore_ascii_case("AES/GCM/NoPadding") {
                return Err(AuthSettingsError::Gcm {
                    value: v.into(),
                    origin: o.into(),
                });
            }
            if !t.eq_ignore_ascii_case("AES/CTR/NoPadding") {
                return Err(AuthSettingsError::UnknownCipher {
                    value: v.into(),
                    origin: o.into(),
                });
            }
        }
    }
    let origin = get(AUTHENTICATE_KEY).map_or("", |(_, o)| o).to_owned();
    a.secret = Some(find_secret(&get, env, &origin)?);
    Ok(a)
}

fn nonempty(s: String, source: SecretSource) -> Result<(Secret, SecretSource), AuthSettingsError> {
    if s.is_empty() {
        return Err(AuthSettingsError::EmptySecret {
            source_name: source.to_string(),
        });
    }
    Ok((Secret::new(s), source))
}

fn find_secret<'a>(
    get: &impl Fn(&str) -> Option<(&'a str, &'a str)>,
    env: &AuthEnv,
    origin: &str,
) -> Result<(Secret, SecretSource), AuthSettingsError> {
    if let Some(s) = &env.secret {
        return nonempty(s.clone(), SecretSource::Env);
    }
    if let Some((v, o)) = get(SECRET_KEY) {
        return nonempty(
            v.to_owned(),
            SecretSource::Setting {
                origin: o.to_owned(),
            },
        );
    }
    if let Some((v, _)) = get(SECRET_FILE_KEY).filter(|(v, _)| !v.trim().is_empty()) {
        let path = PathBuf::from(v.trim());
        let s = read_secret_file(&path, 0o044)?;
        return nonempty(s, SecretSource::File(path));
    }
    if let Some(dir) = &env.credentials_directory {
        let path = dir.join(CREDENTIAL_NAME);
        if path.exists() {
            // systemd makes the credential private to the service (a mode or an ACL, which
            // shows in the group bits); only a world-readable one is refused.
            let s = read_secret_file(&path, 0o004)?;
            return nonempty(s, SecretSource::Credential(path));
        }
    }
    Err(AuthSettingsError::NoSecret {
        origin: origin.to_owned(),
    })
}

/// Reads a secret file: refused when any bit of `forbidden` (e.g. `0o044`, group- or
/// world-readable) is set in its mode; UTF-8 (Spark holds the secret as a string); one
/// trailing newline (as `echo` writes) is not part of the secret.
pub fn read_secret_file(path: &Path, forbidden: u32) -> Result<String, AuthSettingsError> {
    let err = |reason: String| AuthSettingsError::SecretFile {
        path: path.to_owned(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & forbidden != 0 {
        return Err(AuthSettingsError::SecretFileMode {
            path: path.to_owned(),
            mode,
        });
    }
    if meta.len() > 64 * 1024 {
        return Err(err(format!(
            "{} bytes is too large for a secret (at most 64 KiB)",
            meta.len()
        )));
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| err(e.to_string()))?);
    let text = std::str::from_utf8(&bytes).map_err(|_| err("not UTF-8 text".into()))?;
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn build(pairs: &[(&str, &str)], env: &AuthEnv) -> Result<AuthSettings, AuthSettingsError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        from_settings(|k| m.get(k).map(|v| (v.as_str(), "test")), env)
    }

    #[test]
    fn off_by_default_and_secret_lookup_order() {
        let a = build(&[], &AuthEnv::default()).unwrap();
        assert!(!a.enabled);
        assert_eq!(a.describe(), "off");

        let env = AuthEnv {
            secret: Some("from-env".into()),
            credentials_directory: None,
        };
        let a = build(
            &[(AUTHENTICATE_KEY, "true"), (SECRET_KEY, "from-setting")],
            &env,
        )
        .unwrap();
        let (s, src) = a.secret.clone().unwrap();
        assert_eq!(s.expose(), "from-env");
        assert_eq!(src, SecretSource::Env);
        let a = build(
            &[(AUTHENTICATE_KEY, "true"), (SECRET_KEY, "from-setting")],
            &AuthEnv::default(),
        )
        .unwrap();
        assert_eq!(a.secret.as_ref().unwrap().0.expose(), "from-setting");
        // Neither Debug nor the description shows the secret.
        let shown = format!("{a:?} {}", a.describe());
        assert!(!shown.contains("from-setting"), "{shown}");
        assert!(
            shown.contains("spark.authenticate.secret (from test)"),
            "{shown}"
        );
    }

    #[test]
    fn missing_secret_names_the_three_ways() {
        let e = build(&[(AUTHENTICATE_KEY, "true")], &AuthEnv::default())
            .unwrap_err()
            .to_string();
        for what in [SECRET_ENV, SECRET_KEY, SECRET_FILE_KEY, "LoadCredential"] {
            assert!(e.contains(what), "{e}");
        }
    }

    #[test]
    fn gcm_and_unknown_ciphers_are_refused() {
        let env = AuthEnv {
            secret: Some("s".into()),
            credentials_directory: None,
        };
        let base = [
            (AUTHENTICATE_KEY, "true"),
            (CRYPTO_ENABLED_KEY, "true"),
            (CIPHER_KEY, "AES/GCM/NoPadding"),
        ];
        let e = build(&base, &env).unwrap_err().to_string();
        assert!(e.contains("SPARK-56227") && e.contains(CIPHER_KEY), "{e}");
        let e = build(
            &[
                (AUTHENTICATE_KEY, "true"),
                (CRYPTO_ENABLED_KEY, "true"),
                (CIPHER_KEY, "DES"),
            ],
            &env,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not a cipher"), "{e}");
        let a = build(
            &[
                (AUTHENTICATE_KEY, "true"),
                (CRYPTO_ENABLED_KEY, "true"),
                (CIPHER_KEY, "aes/ctr/nopadding"),
                (ENGINE_VERSION_KEY, "2"),
            ],
            &env,
        )
        .unwrap();
        assert_eq!(a.engine_version, EngineVersion::V2);
        assert!(a.describe().contains("auth engine v2"), "{}", a.describe());
    }

    #[test]
    fn secret_file_mode_newline_and_credential() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "file-secret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let p = path.to_str().unwrap();
        let e = build(
            &[(AUTHENTICATE_KEY, "true"), (SECRET_FILE_KEY, p)],
            &AuthEnv::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("0640") && e.contains(p), "{e}");
        assert!(!e.contains("file-secret"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let a = build(
            &[(AUTHENTICATE_KEY, "true"), (SECRET_FILE_KEY, p)],
            &AuthEnv::default(),
        )
        .unwrap();
        assert_eq!(a.secret.as_ref().unwrap().0.expose(), "file-secret");

        let cred = dir.path().join(CREDENTIAL_NAME);
        std::fs::write(&cred, "cred-secret").unwrap();
        std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o400)).unwrap();
        let env = AuthEnv {
            secret: None,
            credentials_directory: Some(dir.path().to_owned()),
        };
        let a = build(&[(AUTHENTICATE_KEY, "true")], &env).unwrap();
        assert_eq!(a.secret.as_ref().unwrap().0.expose(), "cred-secret");
        assert!(matches!(
            a.secret.as_ref().unwrap().1,
            SecretSource::Credential(_)
        ));
    }
}
