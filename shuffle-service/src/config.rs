//! Configuration, the Spark way, parsed once into [`Config`].
//!
//! Sources, lowest precedence first: the properties file (`--properties-file`, else
//! `$SPARK_CONF_DIR/spark-defaults.conf` when that exists), `-Dspark.x=y` items of the
//! `SPARK_SHUFFLE_OPTS` env var, `--conf key=value`, then `--host` / `--port`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::auth::settings::{AuthEnv, AuthSettings};

/// Command line, kept compatible with what operators and the interop tests use.
#[derive(Debug, Clone, Default, clap::Parser)]
#[command(
    name = "croupier-shuffle-service",
    version,
    about = "Spark 3.5 external shuffle service (Mesos flavour)",
    long_about = "Spark 3.5 external shuffle service (Mesos flavour): a drop-in for Spark's \
MesosExternalShuffleService. Spark executors register with it and fetch shuffle blocks over \
Spark's own protocol; Mesos drivers register and heartbeat, and an application's shuffle files \
are deleted once its heartbeats stop for longer than its timeout.",
    after_long_help = "SETTINGS (Spark keys; lowest precedence first: --properties-file, else \
$SPARK_CONF_DIR/spark-defaults.conf; then -Dkey=value items of $SPARK_SHUFFLE_OPTS; then --conf; \
then --host/--port)
  spark.shuffle.service.port               7337   port Spark executors and drivers connect to
  spark.shuffle.cleaner.interval           30s    how often silent drivers' files are looked for
  spark.shuffle.service.index.cache.size   100m   memory bound of the index-file cache
  spark.shuffle.maxChunksBeingTransferred  unlimited  cap on chunks in flight
  spark.shuffle.service.fetch.rdd.enabled  false  serve cached RDD blocks
  spark.shuffle.io.serverThreads           cores  worker threads
  croupier.admin.address                   off    host:port for /healthz and /metrics (Prometheus)

AUTHENTICATION (the same values as in every application's configuration)
  spark.authenticate                       false  every connection must authenticate first
  spark.authenticate.secret                -      the secret shared with the applications (or env
                                                  _SPARK_AUTH_SECRET, or the file below)
  croupier.authenticate.secret.file        -      file holding the secret, readable by the service
                                                  user only (one trailing newline is ignored);
                                                  under systemd, LoadCredential=spark.authenticate.secret:<path>
  spark.network.crypto.enabled             false  Spark's auth engine (X25519) + AES-CTR encryption;
                                                  SASL DIGEST-MD5 when false
  spark.network.crypto.saslFallback        true   also accept SASL clients when the engine is on
  spark.network.crypto.authEngineVersion   1      1 or 2; not negotiated, must match the apps
  spark.network.crypto.cipher   AES/CTR/NoPadding AES/GCM/NoPadding is refused (3.5 clients hang)
  spark.network.sasl.serverAlwaysEncrypt   false  SASL clients must use auth-conf
                                                  (spark.authenticate.enableSaslEncryption=true)
Unknown keys are logged once; the effective settings are logged at start-up.

ENVIRONMENT
  SPARK_SHUFFLE_OPTS   e.g. \"-Dspark.shuffle.service.port=7337 -Dspark.shuffle.cleaner.interval=10s\"
  SPARK_CONF_DIR       where spark-defaults.conf is looked for when no --properties-file is given
  RUST_LOG             log filter (default info); logs go to stderr
  _SPARK_AUTH_SECRET   the authentication secret (wins over spark.authenticate.secret)
  CREDENTIALS_DIRECTORY  set by systemd LoadCredential=; spark.authenticate.secret is read from it
  NOTIFY_SOCKET        set by systemd (Type=notify): READY=1 once listening, watchdog pings

EXAMPLES
  croupier-shuffle-service                                     # port 7337, all defaults
  croupier-shuffle-service --port 7337 --conf croupier.admin.address=127.0.0.1:7338
  SPARK_SHUFFLE_OPTS=-Dspark.shuffle.cleaner.interval=10s croupier-shuffle-service
  croupier-shuffle-service --properties-file /etc/croupier/shuffle-service.conf"
)]
pub struct Cli {
    /// Address to bind (Spark binds the wildcard address).
    #[arg(long)]
    pub host: Option<IpAddr>,
    /// Port to bind (overrides spark.shuffle.service.port); 0 picks an ephemeral port.
    #[arg(long)]
    pub port: Option<u16>,
    /// A Spark setting, `key=value`; repeatable.
    #[arg(long = "conf", value_name = "KEY=VALUE")]
    pub conf: Vec<String>,
    /// A spark-defaults.conf style file.
    #[arg(long)]
    pub properties_file: Option<PathBuf>,
}

pub const DEFAULT_PORT: u16 = 7337;
/// Largest request frame accepted (excluding the length field). Requests are small (a few
/// KiB even for thousands of block ids); anything bigger is refused before allocation.
pub const DEFAULT_MAX_REQUEST_FRAME: u64 = 64 << 20;

/// The typed configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    /// `spark.shuffle.service.index.cache.size` in bytes.
    pub index_cache_size: u64,
    /// `spark.shuffle.maxChunksBeingTransferred`.
    pub max_chunks_being_transferred: u64,
    /// `spark.shuffle.service.fetch.rdd.enabled`.
    pub fetch_rdd_enabled: bool,
    /// `spark.shuffle.cleaner.interval` (Mesos app cleaner period).
    pub cleaner_interval: Duration,
    /// `spark.shuffle.io.serverThreads` (tokio worker threads).
    pub server_threads: usize,
    /// Largest accepted request frame.
    pub max_request_frame: u64,
    /// `croupier.admin.address`: where the admin HTTP endpoint (`/healthz`, `/metrics`)
    /// listens; `None` (the default) leaves it off.
    pub admin_address: Option<SocketAddr>,
    /// `spark.authenticate` and friends (the secret is redacted in `Debug`).
    pub auth: AuthSettings,
    /// Keys given that this service does not know (logged once at start-up).
    pub unknown_keys: Vec<String>,
    /// Known Spark keys that have no effect here (logged once at start-up).
    pub inert_keys: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            host: IpAddr::from([0, 0, 0, 0]),
            port: DEFAULT_PORT,
            index_cache_size: 100 << 20,
            max_chunks_being_transferred: i64::MAX as u64,
            fetch_rdd_enabled: false,
            cleaner_interval: Duration::from_secs(30),
            server_threads: default_threads(),
            max_request_frame: DEFAULT_MAX_REQUEST_FRAME,
            admin_address: None,
            auth: AuthSettings::default(),
            unknown_keys: Vec::new(),
            inert_keys: Vec::new(),
        }
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(8)
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read properties file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid value {value:?} for {key} (from {origin}): {reason}")]
    BadValue {
        key: String,
        value: String,
        origin: String,
        reason: String,
    },
    #[error("malformed setting {item:?} in {origin}: expected key=value")]
    BadItem { item: String, origin: String },
    #[error(transparent)]
    Auth(#[from] crate::auth::settings::AuthSettingsError),
}

impl ConfigError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ConfigError::Auth(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// Keys we read.
const HONOURED: &[&str] = &[
    "spark.shuffle.service.port",
    "spark.shuffle.service.index.cache.size",
    "spark.shuffle.maxChunksBeingTransferred",
    "spark.shuffle.service.fetch.rdd.enabled",
    "spark.shuffle.cleaner.interval",
    "spark.shuffle.io.serverThreads",
    ADMIN_ADDRESS_KEY,
];

/// The admin endpoint's setting (ours, not Spark's).
pub const ADMIN_ADDRESS_KEY: &str = "croupier.admin.address";

/// Spark keys a drop-in must accept but that change nothing here (we never idle-close, have
/// no registration DB, always send zero-copy and open files lazily).
const INERT: &[&str] = &[
    "spark.shuffle.service.enabled",
    "spark.shuffle.service.db.enabled",
    "spark.shuffle.service.db.backend",
    "spark.shuffle.io.numConnectionsPerPeer",
    "spark.shuffle.io.connectionTimeout",
    "spark.shuffle.io.connectionCreationTimeout",
    "spark.shuffle.io.mode",
    "spark.shuffle.io.clientThreads",
    "spark.shuffle.io.backLog",
    "spark.shuffle.io.receiveBuffer",
    "spark.shuffle.io.sendBuffer",
    "spark.shuffle.io.maxRetries",
    "spark.shuffle.io.retryWait",
    "spark.shuffle.io.preferDirectBufs",
    "spark.shuffle.io.lazyFD",
    "spark.shuffle.io.enableVerboseMetrics",
    "spark.shuffle.io.enableTcpKeepAlive",
    "spark.shuffle.server.chunkFetchHandlerThreadsPercent",
    "spark.shuffle.service.removeShuffle",
    "spark.storage.memoryMapThreshold",
    "spark.network.timeout",
    "spark.network.sharedByteBufAllocators.enabled",
    "spark.local.dir",
    // Client-side authentication settings (the apps' side; the service's own are in auth).
    "spark.authenticate.enableSaslEncryption",
    "spark.network.auth.rpcTimeout",
    "spark.shuffle.sasl.timeout",
    "spark.shuffle.sasl.enableRetries",
];

/// Settings gathered from all sources: key → (value, origin).
#[derive(Debug, Default)]
pub struct Settings(BTreeMap<String, (String, String)>);

impl Settings {
    pub fn set(&mut self, key: &str, value: &str, origin: &str) {
        self.0.insert(
            key.trim().to_owned(),
            (value.trim().to_owned(), origin.to_owned()),
        );
    }

    /// Reads a `spark-defaults.conf` / java.util.Properties style text.
    pub fn add_properties(&mut self, text: &str, origin: &str) {
        let mut logical = String::new();
        for raw in text.lines() {
            let line = raw.trim_start();
            if logical.is_empty()
                && (line.is_empty() || line.starts_with('#') || line.starts_with('!'))
            {
                continue;
            }
            // A trailing odd backslash continues the line.
            let trailing = line.chars().rev().take_while(|&c| c == '\\').count();
            if trailing % 2 == 1 {
                logical.push_str(&line[..line.len() - 1]);
                continue;
            }
            logical.push_str(line);
            let entry = std::mem::take(&mut logical);
            let entry = entry.trim();
            let split = entry.find(|c: char| c == '=' || c == ':' || c.is_whitespace());
            let (k, v) = match split {
                Some(i) => {
                    let rest = entry[i..].trim_start();
                    let rest = rest.strip_prefix(['=', ':']).unwrap_or(rest);
                    (&entry[..i], rest.trim())
                }
                None => (entry, ""),
            };
            self.set(k, v, origin);
        }
    }

    /// Reads `-Dkey=value` items of a JVM options string; other items are ignored.
    pub fn add_jvm_opts(&mut self, opts: &str, origin: &str) -> Vec<String> {
        let mut ignored = Vec::new();
        for item in opts.split_whitespace() {
            let item = item.trim_matches(|c| c == '"' || c == '\'');
            match item.strip_prefix("-D").and_then(|kv| kv.split_once('=')) {
                Some((k, v)) => self.set(k, v, origin),
                None => ignored.push(item.to_owned()),
            }
        }
        ignored
    }

    pub fn add_conf(&mut self, item: &str) -> Result<(), ConfigError> {
        let (k, v) = item.split_once('=').ok_or_else(|| ConfigError::BadItem {
            item: item.to_owned(),
            origin: "--conf".into(),
        })?;
        self.set(k, v, "--conf");
        Ok(())
    }

    fn get(&self, key: &str) -> Option<(&str, &str)> {
        self.0.get(key).map(|(v, o)| (v.as_str(), o.as_str()))
    }

    /// Builds the typed config.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        self.into_config_with(&AuthEnv::default())
    }

    /// Builds the typed config; `env` gives the secret's environment sources.
    pub fn into_config_with(self, env: &AuthEnv) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        let bad = |key: &str, value: &str, origin: &str, reason: String| ConfigError::BadValue {
            key: key.into(),
            value: value.into(),
            origin: origin.into(),
            reason,
        };
        if let Some((v, o)) = self.get("spark.shuffle.service.port") {
            c.port = v
                .parse()
                .map_err(|e| bad("spark.shuffle.service.port", v, o, format!("{e}")))?;
        }
        if let Some((v, o)) = self.get("spark.shuffle.service.index.cache.size") {
            c.index_cache_size = parse_bytes(v)
                .map_err(|r| bad("spark.shuffle.service.index.cache.size", v, o, r))?;
        }
        if let Some((v, o)) = self.get("spark.shuffle.maxChunksBeingTransferred") {
            let n: i64 = v.parse().map_err(|e| {
                bad(
                    "spark.shuffle.maxChunksBeingTransferred",
                    v,
                    o,
                    format!("{e}"),
                )
            })?;
            if n <= 0 {
                return Err(bad(
                    "spark.shuffle.maxChunksBeingTransferred",
                    v,
                    o,
                    "must be positive".into(),
                ));
            }
            c.max_chunks_being_transferred = n as u64;
        }
        if let Some((v, o)) = self.get("spark.shuffle.service.fetch.rdd.enabled") {
            c.fetch_rdd_enabled = parse_bool(v)
                .map_err(|r| bad("spark.shuffle.service.fetch.rdd.enabled", v, o, r))?;
        }
        if let Some((v, o)) = self.get("spark.shuffle.cleaner.interval") {
            let d = parse_time(v, Duration::from_secs(1))
                .map_err(|r| bad("spark.shuffle.cleaner.interval", v, o, r))?;
            if d.is_zero() {
                return Err(bad(
                    "spark.shuffle.cleaner.interval",
                    v,
                    o,
                    "must be positive".into(),
                ));
            }
            c.cleaner_interval = d;
        }
        if let Some((v, o)) = self.get("spark.shuffle.io.serverThreads") {
            let n: i64 = v
                .parse()
                .map_err(|e| bad("spark.shuffle.io.serverThreads", v, o, format!("{e}")))?;
            c.server_threads = if n <= 0 {
                default_threads()
            } else {
                n.min(1024) as usize
            };
        }
        if let Some((v, o)) = self.get(ADMIN_ADDRESS_KEY) {
            // An empty value (e.g. a templated config with nothing filled in) keeps it off.
            if !v.is_empty() {
                c.admin_address =
                    Some(parse_address(v).map_err(|r| bad(ADMIN_ADDRESS_KEY, v, o, r))?);
            }
        }
        c.auth = crate::auth::settings::from_settings(|k| self.get(k), env)?;
        for k in self.0.keys() {
            if HONOURED.contains(&k.as_str()) || crate::auth::settings::KEYS.contains(&k.as_str()) {
                continue;
            }
            if INERT.contains(&k.as_str()) {
                c.inert_keys.push(k.clone());
            } else {
                c.unknown_keys.push(k.clone());
            }
        }
        Ok(c)
    }
}

impl Config {
    /// Gathers every source. `shuffle_opts` is the `SPARK_SHUFFLE_OPTS` value, `conf_dir` the
    /// `SPARK_CONF_DIR` value (passed in so tests need not touch the process environment).
    pub fn load(
        cli: &Cli,
        shuffle_opts: Option<&str>,
        conf_dir: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        Config::load_with_env(cli, shuffle_opts, conf_dir, &AuthEnv::from_process())
    }

    /// [`Config::load`] with the auth environment (`_SPARK_AUTH_SECRET`,
    /// `CREDENTIALS_DIRECTORY`) passed in.
    pub fn load_with_env(
        cli: &Cli,
        shuffle_opts: Option<&str>,
        conf_dir: Option<&Path>,
        env: &AuthEnv,
    ) -> Result<Config, ConfigError> {
        let mut s = Settings::default();
        let file = match (&cli.properties_file, conf_dir) {
            (Some(f), _) => Some(f.clone()),
            (None, Some(d)) => Some(d.join("spark-defaults.conf")).filter(|p| p.is_file()),
            (None, None) => None,
        };
        if let Some(f) = file {
            let text = std::fs::read_to_string(&f).map_err(|source| ConfigError::ReadFile {
                path: f.clone(),
                source,
            })?;
            s.add_properties(&text, &f.display().to_string());
        }
        if let Some(opts) = shuffle_opts {
            s.add_jvm_opts(opts, "SPARK_SHUFFLE_OPTS");
        }
        for item in &cli.conf {
            s.add_conf(item)?;
        }
        let mut c = s.into_config_with(env)?;
        if let Some(p) = cli.port {
            c.port = p;
        }
        if let Some(h) = cli.host {
            c.host = h;
        }
        Ok(c)
    }
}

/// `JavaUtils.byteStringAsBytes`: an integer with an optional binary suffix (b, k, kb, m, mb,
/// g, gb, t, tb, p, pb); no suffix means bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err("expected a size like 100m".into());
    }
    let n: u64 = t[..digits].parse().map_err(|e| format!("{e}"))?;
    let shift = match &t[digits..] {
        "" | "b" => 0,
        "k" | "kb" => 10,
        "m" | "mb" => 20,
        "g" | "gb" => 30,
        "t" | "tb" => 40,
        "p" | "pb" => 50,
        other => return Err(format!("unknown size suffix {other:?}")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| "too large".into())
}

/// `JavaUtils.timeStringAs`: an integer with an optional suffix (us, ms, s, m, min, h, d);
/// no suffix means `default_unit`.
pub fn parse_time(s: &str, default_unit: Duration) -> Result<Duration, String> {
    let t = s.trim().to_ascii_lowercase();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err("expected a duration like 30s or 500ms".into());
    }
    let n: u64 = t[..digits].parse().map_err(|e| format!("{e}"))?;
    let unit = match &t[digits..] {
        "" => default_unit,
        "us" => Duration::from_micros(1),
        "ms" => Duration::from_millis(1),
        "s" => Duration::from_secs(1),
        "m" | "min" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        "d" => Duration::from_secs(86400),
        other => return Err(format!("unknown time suffix {other:?}")),
    };
    unit.checked_mul(u32::try_from(n).map_err(|_| "too large".to_string())?)
        .ok_or_else(|| "too large".into())
}

/// `host:port`: an IP literal (`127.0.0.1:7338`, `[::1]:7338`) or a resolvable host name
/// (`localhost:7338`, first address wins).
pub fn parse_address(s: &str) -> Result<SocketAddr, String> {
    let t = s.trim();
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok(a);
    }
    if t.rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        return Err("expected host:port, e.g. 127.0.0.1:7338".into());
    }
    match t.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| "the host name resolves to no address".into()),
        Err(e) => Err(format!("cannot resolve the host name: {e}")),
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_parsing() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("defaults.conf");
        std::fs::write(
            &f,
            "# comment\nspark.shuffle.service.port   7000\nspark.shuffle.cleaner.interval=5s\n\
             spark.shuffle.service.index.cache.size : 2m\nspark.some.unknown x\n",
        )
        .unwrap();
        let cli = Cli {
            properties_file: Some(f),
            conf: vec!["spark.shuffle.service.fetch.rdd.enabled=true".into()],
            ..Cli::default()
        };
        let c = Config::load(
            &cli,
            Some("-Xmx1g -Dspark.shuffle.service.port=7100 -Dspark.shuffle.maxChunksBeingTransferred=9"),
            None,
        )
        .unwrap();
        assert_eq!(c.port, 7100);
        assert_eq!(c.cleaner_interval, Duration::from_secs(5));
        assert_eq!(c.index_cache_size, 2 << 20);
        assert_eq!(c.max_chunks_being_transferred, 9);
        assert!(c.fetch_rdd_enabled);
        assert_eq!(c.unknown_keys, vec!["spark.some.unknown".to_string()]);
        let cli = Cli {
            port: Some(0),
            conf: vec!["spark.shuffle.service.port=1".into()],
            ..Cli::default()
        };
        assert_eq!(Config::load(&cli, None, None).unwrap().port, 0);
        let d = Config::load(&Cli::default(), None, None).unwrap();
        assert_eq!(
            (d.port, d.index_cache_size, d.cleaner_interval),
            (7337, 100 << 20, Duration::from_secs(30))
        );
        assert_eq!(d.host, IpAddr::from([0, 0, 0, 0]));
    }

    #[test]
    fn admin_address_from_every_source() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("shuffle-service.conf");
        std::fs::write(&f, "croupier.admin.address 127.0.0.1:7338\n").unwrap();
        let cli = Cli {
            properties_file: Some(f.clone()),
            ..Cli::default()
        };
        let c = Config::load(&cli, None, None).unwrap();
        assert_eq!(c.admin_address, Some("127.0.0.1:7338".parse().unwrap()));
        assert!(c.unknown_keys.is_empty(), "{:?}", c.unknown_keys);
        let c = Config::load(&cli, Some("-Dcroupier.admin.address=[::1]:9000"), None).unwrap();
        assert_eq!(c.admin_address, Some("[::1]:9000".parse().unwrap()));
        let cli = Cli {
            properties_file: Some(f),
            conf: vec!["croupier.admin.address=localhost:0".into()],
            ..Cli::default()
        };
        let c = Config::load(&cli, Some("-Dcroupier.admin.address=[::1]:9000"), None).unwrap();
        assert!(c
            .admin_address
            .is_some_and(|a| a.ip().is_loopback() && a.port() == 0));
        assert_eq!(
            Config::load(&Cli::default(), None, None)
                .unwrap()
                .admin_address,
            None
        );
        let cli = Cli {
            conf: vec!["croupier.admin.address=".into()],
            ..Cli::default()
        };
        assert_eq!(Config::load(&cli, None, None).unwrap().admin_address, None);
        for bad in [
            "7338",
            "127.0.0.1",
            "127.0.0.1:http",
            ":7338",
            "127.0.0.1:70000",
        ] {
            let cli = Cli {
                conf: vec![format!("croupier.admin.address={bad}")],
                ..Cli::default()
            };
            let e = Config::load(&cli, None, None).unwrap_err().to_string();
            assert!(
                e.contains("croupier.admin.address") && e.contains("--conf"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn units() {
        assert_eq!(
            parse_time("500ms", Duration::from_secs(1)).unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(
            parse_time("2", Duration::from_secs(1)).unwrap(),
            Duration::from_secs(2)
        );
        assert_eq!(
            parse_time("2min", Duration::from_secs(1)).unwrap(),
            Duration::from_secs(120)
        );
        assert!(parse_time("2 fortnights", Duration::from_secs(1)).is_err());
        assert_eq!(parse_bytes("100m").unwrap(), 100 << 20);
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("1gb").unwrap(), 1 << 30);
        assert!(parse_bytes("1.5m").is_err());
    }

    #[test]
    fn errors_name_the_key() {
        let cli = Cli {
            conf: vec!["spark.shuffle.cleaner.interval=soon".into()],
            ..Cli::default()
        };
        let e = Config::load(&cli, None, None).unwrap_err().to_string();
        assert!(
            e.contains("spark.shuffle.cleaner.interval") && e.contains("--conf"),
            "{e}"
        );
        let cli = Cli {
            conf: vec!["novalue".into()],
            ..Cli::default()
        };
        assert!(Config::load(&cli, None, None).is_err());
    }
}
