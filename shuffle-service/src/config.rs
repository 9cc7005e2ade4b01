//! Configuration, the Spark way, parsed once into [`Config`].
//!
//! Sources, lowest precedence first: the properties file (`--properties-file`, else
//! `$SPARK_CONF_DIR/spark-defaults.conf` when that exists), `-Dspark.x=y` items of the
//! `SPARK_SHUFFLE_OPTS` env var, `--conf key=value`, then `--host` / `--port`.

pub use crate::units::{parse_bytes, parse_time};
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
  spark.shuffle.io.connectionTimeout       120s   a connection whose peer reads nothing of what is
                                  sent to it for this long is closed (default: spark.network.timeout)
  spark.shuffle.io.enableTcpKeepAlive      false  SO_KEEPALIVE on client connections (kernel
                                  timings), to drop peers that vanished without FIN/RST
  croupier.shuffle.io.blockingThreads      512    threads for disk work (sendfile, file opens);
                                  none ever waits for a slow client
  croupier.shuffle.io.sendThreads          cores+1  most of them sending data files at once; the
                                  rest wait their turn off-CPU, so RPCs are not starved under load
                                  (0: the default; at most blockingThreads)
  croupier.admin.address                   off    host:port for /healthz and /metrics (Prometheus)
  croupier.log.format                      text   text or json (one JSON object per log line)
  croupier.state.dir       $XDG_STATE_HOME/croupier/shuffle (else ~/.local/state/croupier/shuffle)
                                  where registrations are kept across restarts (file
                                  registrations-<port>.redb); `none` keeps them in memory only.
                                  Not used with --port 0 (a restart could not reach the same port).
  croupier.state.sync                      background  when a registration is answered:
                                  background = once written to a journal (survives a crash or
                                  kill of the service, as Spark's own store; a power loss in
                                  the ~50 ms before the fsync can lose it); always = once
                                  fsynced (also survives a power loss; each answer waits for it)
  croupier.mesos.agent.address             127.0.0.1:5051  the Mesos agent asked whether a
                                  framework (= Spark appId) is still active before its files are
                                  deleted; `none` = delete when the driver's heartbeats stop (Spark)
  croupier.mesos.agent.principal           -      for an agent with HTTP authentication (basic)
  croupier.mesos.agent.secret.file         -      file holding that principal's secret
  croupier.mesos.agent.confirm.interval    60s    how long the agent must report a framework
                                  completed (or unknown) before its files are deleted

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
  croupier.authenticate.handshakeTimeout   30s    a connection not authenticated this long after
                                                  it opened is closed
  croupier.authenticate.maxPendingConnections  1/4 of the open-file limit (at most 1024)
                                  connections authenticating at once; one more closes one of
                                  the host holding the most (its idle ones first)
  croupier.authenticate.maxPendingConnectionsPerHost  half of the above
                                  of those, from one peer address; one more closes that
                                  host's own oldest (idle ones first)
                                  Before authenticating, frames over 16 KiB are refused unread
Every invalid setting is reported at once, each with its key, value, source and what is
accepted. Unknown keys, and Spark keys the JVM service honours but this one ignores, get one
warning line each; the effective settings are logged at start-up.

ENVIRONMENT
  SPARK_SHUFFLE_OPTS   e.g. \"-Dspark.shuffle.service.port=7337 -Dspark.shuffle.cleaner.interval=10s\";
                       split as Spark's launcher does: quotes and backslashes group words,
                       so '-Dspark.foo=\"a b\"' sets spark.foo to `a b`
  SPARK_CONF_DIR       where spark-defaults.conf is looked for when no --properties-file is given
  RUST_LOG             log filter (default info); logs go to stderr
  _SPARK_AUTH_SECRET   the authentication secret (wins over spark.authenticate.secret)
  CREDENTIALS_DIRECTORY  set by systemd LoadCredential=; spark.authenticate.secret is read from it
  CROUPIER_LOG_FORMAT  text or json, as --log-format
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
    /// Log line format: text, or json (one object per line, for log shippers); overrides
    /// croupier.log.format.
    #[arg(long, env = croupier_ops::log::FORMAT_ENV, value_name = "text|json")]
    pub log_format: Option<String>,
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
    /// `croupier.shuffle.io.blockingThreads`: threads for disk work (sendfile, opening files,
    /// deleting); none of them ever waits on a socket.
    pub blocking_threads: usize,
    /// `croupier.shuffle.io.sendThreads`: most connections sending chunks at once (each from a
    /// blocking thread). Bounded so that a fetch storm keeps a few runnable threads, not hundreds,
    /// and the worker threads answering RPCs get the CPU promptly.
    pub send_threads: usize,
    /// Largest accepted request frame.
    pub max_request_frame: u64,
    /// `spark.shuffle.io.connectionTimeout` (else `spark.network.timeout`, else 120 s): a send
    /// that makes no progress for this long closes the connection.
    pub connection_timeout: Duration,
    /// `spark.shuffle.io.enableTcpKeepAlive`: SO_KEEPALIVE on accepted connections (the
    /// kernel's `net.ipv4.tcp_keepalive_*` timings), so peers that vanished without FIN or
    /// RST are found out even when nothing is being sent to them.
    pub tcp_keepalive: bool,
    /// `croupier.admin.address`: where the admin HTTP endpoint (`/healthz`, `/metrics`)
    /// listens; `None` (the default) leaves it off.
    pub admin_address: Option<SocketAddr>,
    /// `croupier.state.dir`: where registrations are persisted.
    pub state_dir: StateDir,
    /// `croupier.state.sync`: when a stored registration is answered.
    pub state_sync: crate::store::SyncPolicy,
    /// `croupier.mesos.agent.address` (`host:port`); `None` is `none`: heartbeat-only cleanup.
    pub agent_address: Option<String>,
    /// `croupier.mesos.agent.principal`.
    pub agent_principal: Option<String>,
    /// `croupier.mesos.agent.secret.file` (the secret itself is read at start-up, never kept here).
    pub agent_secret_file: Option<PathBuf>,
    /// `croupier.mesos.agent.confirm.interval`.
    pub agent_confirm_interval: Duration,
    /// `spark.authenticate` and friends (the secret is redacted in `Debug`).
    pub auth: AuthSettings,
    /// `croupier.log.format`, overridden by `--log-format` / `CROUPIER_LOG_FORMAT`.
    pub log_format: croupier_ops::log::LogFormat,
    /// Keys given that this service does not know (logged once at start-up).
    pub unknown_keys: Vec<String>,
    /// Spark keys the JVM service acts on but this one ignores, with why (one warning each).
    pub ignored_keys: Vec<(String, &'static str)>,
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
            blocking_threads: DEFAULT_BLOCKING_THREADS,
            send_threads: default_send_threads(),
            max_request_frame: DEFAULT_MAX_REQUEST_FRAME,
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            tcp_keepalive: false,
            admin_address: None,
            state_dir: StateDir::Default,
            state_sync: crate::store::SyncPolicy::default(),
            agent_address: Some(DEFAULT_AGENT_ADDRESS.into()),
            agent_principal: None,
            agent_secret_file: None,
            agent_confirm_interval: Duration::from_secs(60),
            auth: AuthSettings::default(),
            log_format: croupier_ops::log::LogFormat::Text,
            unknown_keys: Vec::new(),
            ignored_keys: Vec::new(),
            inert_keys: Vec::new(),
        }
    }
}

/// Where registrations are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateDir {
    /// Not set: `$XDG_STATE_HOME/croupier/shuffle`, else `$HOME/.local/state/croupier/shuffle`
    /// (the packages set `/var/lib/croupier/shuffle`).
    Default,
    /// `none`: registrations live in memory only (Spark's Mesos service).
    Off,
    Dir(PathBuf),
}

impl StateDir {
    /// The directory to use, given `$XDG_STATE_HOME` and `$HOME`; `None` when off or when the
    /// default cannot be formed (no usable variable).
    pub fn resolve(
        &self,
        xdg_state_home: Option<&std::ffi::OsStr>,
        home: Option<&std::ffi::OsStr>,
    ) -> Option<PathBuf> {
        match self {
            StateDir::Off => None,
            StateDir::Dir(d) => Some(d.clone()),
            StateDir::Default => {
                // The XDG spec ignores relative values.
                let abs =
                    |v: Option<&std::ffi::OsStr>| v.map(PathBuf::from).filter(|p| p.is_absolute());
                abs(xdg_state_home)
                    .or_else(|| abs(home).map(|h| h.join(".local/state")))
                    .map(|d| d.join("croupier/shuffle"))
            }
        }
    }
}

pub const DEFAULT_AGENT_ADDRESS: &str = "127.0.0.1:5051";
pub const STATE_DIR_KEY: &str = "croupier.state.dir";
/// When a stored registration is answered (ours, not Spark's).
pub const STATE_SYNC_KEY: &str = "croupier.state.sync";
pub const AGENT_ADDRESS_KEY: &str = "croupier.mesos.agent.address";
pub const AGENT_PRINCIPAL_KEY: &str = "croupier.mesos.agent.principal";
pub const AGENT_SECRET_FILE_KEY: &str = "croupier.mesos.agent.secret.file";
pub const AGENT_CONFIRM_KEY: &str = "croupier.mesos.agent.confirm.interval";

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .min(8)
}

/// One sending thread per core, plus one so that a send waiting on the disk does not leave a
/// core idle. Measured on 2 cores under 256 fetching connections (`bench/rpc-under-load.sh`):
/// 2 starves the client side of the CPU (-15% GB/s), 4 and more let RPC p99 climb past 10 ms.
fn default_send_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        + 1
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
    #[error("invalid {origin} {value:?}: {reason}")]
    BadOptions {
        origin: String,
        value: String,
        reason: String,
    },
    #[error(
        "invalid --log-format / {} {value:?}: expected text or json",
        croupier_ops::log::FORMAT_ENV
    )]
    BadLogFormat { value: String },
    /// Several of the above, every one found in a single pass.
    #[error("{} configuration problems:\n  - {}", .0.len(), .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n  - "))]
    Several(Vec<ConfigError>),
}

impl ConfigError {
    /// One error for a list of problems (the single one itself when there is only one).
    fn from_all(mut problems: Vec<ConfigError>) -> Result<(), ConfigError> {
        match problems.len() {
            0 => Ok(()),
            1 => Err(problems.remove(0)),
            _ => Err(ConfigError::Several(problems)),
        }
    }
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
    KEEPALIVE_KEY,
    CONNECTION_TIMEOUT_KEY,
    NETWORK_TIMEOUT_KEY,
    BLOCKING_THREADS_KEY,
    SEND_THREADS_KEY,
    ADMIN_ADDRESS_KEY,
    STATE_DIR_KEY,
    STATE_SYNC_KEY,
    AGENT_ADDRESS_KEY,
    AGENT_PRINCIPAL_KEY,
    AGENT_SECRET_FILE_KEY,
    AGENT_CONFIRM_KEY,
    LOG_FORMAT_KEY,
];

/// How long a send may make no progress (the peer reads nothing) before the connection is
/// closed; Spark's name for its connection idle timeout.
pub const KEEPALIVE_KEY: &str = "spark.shuffle.io.enableTcpKeepAlive";
pub const CONNECTION_TIMEOUT_KEY: &str = "spark.shuffle.io.connectionTimeout";
/// Spark's fallback for [`CONNECTION_TIMEOUT_KEY`].
pub const NETWORK_TIMEOUT_KEY: &str = "spark.network.timeout";
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);
/// Threads for disk work (ours, not Spark's).
pub const BLOCKING_THREADS_KEY: &str = "croupier.shuffle.io.blockingThreads";
pub const DEFAULT_BLOCKING_THREADS: usize = 512;
/// Connections sending at once (ours, not Spark's).
pub const SEND_THREADS_KEY: &str = "croupier.shuffle.io.sendThreads";

/// The log format's setting (ours, not Spark's).
pub const LOG_FORMAT_KEY: &str = "croupier.log.format";

/// The admin endpoint's setting (ours, not Spark's).
pub const ADMIN_ADDRESS_KEY: &str = "croupier.admin.address";

/// Spark keys a drop-in must accept that mean nothing to a shuffle service process (client
/// or application settings): logged once at info.
const INERT: &[&str] = &[
    "spark.shuffle.service.enabled",
    "spark.shuffle.io.numConnectionsPerPeer",
    "spark.shuffle.io.connectionCreationTimeout",
    "spark.shuffle.io.clientThreads",
    "spark.shuffle.io.maxRetries",
    "spark.shuffle.io.retryWait",
    "spark.local.dir",
    // Client-side authentication settings (the apps' side; the service's own are in auth).
    "spark.authenticate.enableSaslEncryption",
    "spark.network.auth.rpcTimeout",
    "spark.shuffle.sasl.timeout",
    "spark.shuffle.sasl.enableRetries",
];

/// Spark keys the JVM shuffle service acts on but this one ignores, and why: one warning
/// line each, so an operator porting a configuration sees what no longer applies.
const IGNORED: &[(&str, &str)] = &[
    (
        "spark.shuffle.service.db.enabled",
        "registrations are always kept in croupier.state.dir (`none` turns that off)",
    ),
    (
        "spark.shuffle.service.db.backend",
        "registrations are kept in a redb file in croupier.state.dir",
    ),
    ("spark.shuffle.io.mode", "always epoll through tokio"),
    (
        "spark.shuffle.io.backLog",
        "the kernel's default listen backlog is used",
    ),
    (
        "spark.shuffle.io.receiveBuffer",
        "the kernel's socket buffer sizes are used",
    ),
    (
        "spark.shuffle.io.sendBuffer",
        "the kernel's socket buffer sizes are used",
    ),
    (
        "spark.shuffle.io.preferDirectBufs",
        "no JVM buffers: blocks go out with sendfile",
    ),
    ("spark.shuffle.io.lazyFD", "files are always opened lazily"),
    (
        "spark.shuffle.io.enableVerboseMetrics",
        "metrics are on /metrics of croupier.admin.address",
    ),
    (
        "spark.shuffle.server.chunkFetchHandlerThreadsPercent",
        "chunk fetches share spark.shuffle.io.serverThreads",
    ),
    (
        "spark.shuffle.service.removeShuffle",
        "RemoveShuffle is not acted on",
    ),
    (
        "spark.storage.memoryMapThreshold",
        "blocks are never memory-mapped: sendfile",
    ),
    (
        "spark.network.sharedByteBufAllocators.enabled",
        "no JVM buffers",
    ),
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

    /// Reads the `-Dkey=value` items of a JVM options string, split into words as Spark's
    /// launcher splits `SPARK_SHUFFLE_OPTS` (see [`split_jvm_opts`]); other items (`-Xms1g`)
    /// are returned, unused.
    pub fn add_jvm_opts(&mut self, opts: &str, origin: &str) -> Result<Vec<String>, ConfigError> {
        let words = split_jvm_opts(opts).map_err(|reason| ConfigError::BadOptions {
            origin: origin.into(),
            value: opts.into(),
            reason,
        })?;
        let mut ignored = Vec::new();
        for item in words {
            match item.strip_prefix("-D").and_then(|kv| kv.split_once('=')) {
                Some((k, v)) => self.set(k, v, origin),
                None => ignored.push(item),
            }
        }
        Ok(ignored)
    }

    pub fn add_conf(&mut self, item: &str) -> Result<(), ConfigError> {
        let (k, v) = item.split_once('=').ok_or_else(|| ConfigError::BadItem {
            item: item.to_owned(),
            origin: "--conf".into(),
        })?;
        self.set(k, v, "--conf");
        Ok(())
    }

    /// The value of `key` and where it came from.
    pub fn get(&self, key: &str) -> Option<(&str, &str)> {
        self.0.get(key).map(|(v, o)| (v.as_str(), o.as_str()))
    }

    /// Builds the typed config, checking every setting: all problems are reported together.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        self.into_config_with(&AuthEnv::default())
    }

    /// Builds the typed config; `env` gives the secret's environment sources.
    pub fn into_config_with(self, env: &AuthEnv) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        let mut problems = Vec::new();
        let bad = |key: &str, value: &str, origin: &str, reason: String| ConfigError::BadValue {
            key: key.into(),
            value: value.into(),
            origin: origin.into(),
            reason,
        };
        let key = "spark.shuffle.service.port";
        if let Some((v, o)) = self.get(key) {
            match v.parse() {
                Ok(p) => c.port = p,
                Err(_) => {
                    problems.push(bad(key, v, o, "expected a port number, 0 to 65535".into()))
                }
            }
        }
        let key = "spark.shuffle.service.index.cache.size";
        if let Some((v, o)) = self.get(key) {
            match parse_bytes(v) {
                Ok(n) => c.index_cache_size = n,
                Err(r) => problems.push(bad(key, v, o, r)),
            }
        }
        let key = "spark.shuffle.maxChunksBeingTransferred";
        if let Some((v, o)) = self.get(key) {
            match v.parse::<i64>() {
                Ok(n) if n > 0 => c.max_chunks_being_transferred = n as u64,
                _ => problems.push(bad(key, v, o, "expected a positive integer".into())),
            }
        }
        let key = "spark.shuffle.service.fetch.rdd.enabled";
        if let Some((v, o)) = self.get(key) {
            match parse_bool(v) {
                Ok(b) => c.fetch_rdd_enabled = b,
                Err(r) => problems.push(bad(key, v, o, r)),
            }
        }
        let key = "spark.shuffle.cleaner.interval";
        if let Some((v, o)) = self.get(key) {
            match parse_time(v, Duration::from_secs(1)) {
                Ok(d) if !d.is_zero() => c.cleaner_interval = d,
                Ok(_) => problems.push(bad(key, v, o, "must be positive, e.g. 30s".into())),
                Err(r) => problems.push(bad(key, v, o, r)),
            }
        }
        let key = "spark.shuffle.io.serverThreads";
        if let Some((v, o)) = self.get(key) {
            match v.parse::<i64>() {
                Ok(n) if n <= 0 => c.server_threads = default_threads(),
                Ok(n) => c.server_threads = n.min(1024) as usize,
                Err(_) => problems.push(bad(
                    key,
                    v,
                    o,
                    "expected an integer (0 or less: one per core, at most 8)".into(),
                )),
            }
        }
        // Spark: spark.shuffle.io.connectionTimeout, defaulting to spark.network.timeout.
        let timeout_key = [CONNECTION_TIMEOUT_KEY, NETWORK_TIMEOUT_KEY]
            .into_iter()
            .find_map(|k| self.get(k).map(|vo| (k, vo)));
        if let Some((key, (v, o))) = timeout_key {
            match parse_time(v, Duration::from_secs(1)) {
                Ok(d) if !d.is_zero() => c.connection_timeout = d,
                Ok(_) => problems.push(bad(key, v, o, "must be positive, e.g. 120s".into())),
                Err(r) => problems.push(bad(key, v, o, r)),
            }
        }
        if let Some((v, o)) = self.get(KEEPALIVE_KEY) {
            match parse_bool(v) {
                Ok(b) => c.tcp_keepalive = b,
                Err(r) => problems.push(bad(KEEPALIVE_KEY, v, o, r)),
            }
        }
        if let Some((v, o)) = self.get(BLOCKING_THREADS_KEY) {
            match v.parse::<usize>() {
                Ok(n) if (1..=4096).contains(&n) => c.blocking_threads = n,
                _ => problems.push(bad(
                    BLOCKING_THREADS_KEY,
                    v,
                    o,
                    "expected a number of threads, 1 to 4096".into(),
                )),
            }
        }
        if let Some((v, o)) = self.get(SEND_THREADS_KEY) {
            match v.parse::<usize>() {
                Ok(0) => c.send_threads = default_send_threads(),
                Ok(n) if n <= 4096 => c.send_threads = n,
                _ => problems.push(bad(
                    SEND_THREADS_KEY,
                    v,
                    o,
                    "expected a number of threads, 1 to 4096 (0: one per core, plus one)".into(),
                )),
            }
        }
        // Each send runs on a blocking thread: there are never more turns than threads.
        c.send_threads = c.send_threads.min(c.blocking_threads);
        if let Some((v, o)) = self.get(ADMIN_ADDRESS_KEY) {
            // An empty value (e.g. a templated config with nothing filled in) keeps it off.
            if !v.is_empty() {
                match parse_address(v) {
                    Ok(a) => c.admin_address = Some(a),
                    Err(r) => problems.push(bad(ADMIN_ADDRESS_KEY, v, o, r)),
                }
            }
        }
        if let Some((v, o)) = self.get(LOG_FORMAT_KEY) {
            match v.parse() {
                Ok(f) => c.log_format = f,
                Err(_) => problems.push(bad(
                    LOG_FORMAT_KEY,
                    v,
                    o,
                    format!("expected {}", croupier_ops::log::LogFormat::ACCEPTED),
                )),
            }
        }
        if let Some((v, o)) = self.get(STATE_DIR_KEY) {
            c.state_dir = match v {
                "" => StateDir::Default,
                "none" => StateDir::Off,
                d if Path::new(d).is_absolute() => StateDir::Dir(PathBuf::from(d)),
                _ => {
                    problems.push(bad(
                        STATE_DIR_KEY,
                        v,
                        o,
                        "expected an absolute directory or `none`".into(),
                    ));
                    StateDir::Default
                }
            };
        }
        if let Some((v, o)) = self.get(STATE_SYNC_KEY) {
            match crate::store::SyncPolicy::parse(v) {
                Some(p) => c.state_sync = p,
                None => problems.push(bad(
                    STATE_SYNC_KEY,
                    v,
                    o,
                    "expected `background` (answer once journaled) or `always` (answer once fsynced)"
                        .into(),
                )),
            }
        }
        if let Some((v, o)) = self.get(AGENT_ADDRESS_KEY) {
            c.agent_address = match v {
                "none" => None,
                "" => Some(DEFAULT_AGENT_ADDRESS.into()),
                a => {
                    let a = a.strip_prefix("http://").unwrap_or(a).trim_end_matches('/');
                    if a.rsplit_once(':')
                        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
                    {
                        problems.push(bad(
                            AGENT_ADDRESS_KEY,
                            v,
                            o,
                            "expected host:port of the Mesos agent (e.g. 127.0.0.1:5051) or `none`"
                                .into(),
                        ));
                    }
                    Some(a.to_owned())
                }
            };
        }
        if let Some((v, _)) = self.get(AGENT_PRINCIPAL_KEY) {
            c.agent_principal = Some(v.to_owned()).filter(|p| !p.is_empty());
        }
        if let Some((v, _)) = self.get(AGENT_SECRET_FILE_KEY) {
            c.agent_secret_file = Some(PathBuf::from(v)).filter(|p| !p.as_os_str().is_empty());
        }
        if c.agent_principal.is_some() != c.agent_secret_file.is_some() {
            let (k, o) = match self.get(AGENT_PRINCIPAL_KEY) {
                Some((_, o)) => (AGENT_SECRET_FILE_KEY, o),
                None => (
                    AGENT_PRINCIPAL_KEY,
                    self.get(AGENT_SECRET_FILE_KEY).map(|x| x.1).unwrap_or(""),
                ),
            };
            problems.push(bad(
                k,
                "",
                o,
                format!("{AGENT_PRINCIPAL_KEY} and {AGENT_SECRET_FILE_KEY} go together"),
            ));
        }
        if let Some((v, o)) = self.get(AGENT_CONFIRM_KEY) {
            match parse_time(v, Duration::from_secs(1)) {
                Ok(d) => c.agent_confirm_interval = d,
                Err(r) => problems.push(bad(AGENT_CONFIRM_KEY, v, o, r)),
            }
        }
        match crate::auth::settings::from_settings(|k| self.get(k), env) {
            Ok(a) => c.auth = a,
            Err(e) => problems.push(e.into()),
        }
        ConfigError::from_all(problems)?;
        for k in self.0.keys() {
            if HONOURED.contains(&k.as_str()) || crate::auth::settings::KEYS.contains(&k.as_str()) {
                continue;
            }
            if let Some((_, why)) = IGNORED.iter().find(|(i, _)| *i == k.as_str()) {
                c.ignored_keys.push((k.clone(), why));
            } else if INERT.contains(&k.as_str()) {
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
        let mut problems = Vec::new();
        let file = match (&cli.properties_file, conf_dir) {
            (Some(f), _) => Some(f.clone()),
            (None, Some(d)) => Some(d.join("spark-defaults.conf")).filter(|p| p.is_file()),
            (None, None) => None,
        };
        if let Some(f) = file {
            match std::fs::read_to_string(&f) {
                Ok(text) => s.add_properties(&text, &f.display().to_string()),
                Err(source) => problems.push(ConfigError::ReadFile {
                    path: f.clone(),
                    source,
                }),
            }
        }
        if let Some(opts) = shuffle_opts {
            if let Err(e) = s.add_jvm_opts(opts, "SPARK_SHUFFLE_OPTS") {
                problems.push(e);
            }
        }
        for item in &cli.conf {
            if let Err(e) = s.add_conf(item) {
                problems.push(e);
            }
        }
        let log_format = match cli.log_format.as_deref().map(str::parse) {
            None => None,
            Some(Ok(f)) => Some(f),
            Some(Err(_)) => {
                problems.push(ConfigError::BadLogFormat {
                    value: cli.log_format.clone().unwrap_or_default(),
                });
                None
            }
        };
        let mut c = match s.into_config_with(env) {
            Ok(c) => c,
            Err(ConfigError::Several(more)) => {
                problems.extend(more);
                Config::default()
            }
            Err(e) => {
                problems.push(e);
                Config::default()
            }
        };
        ConfigError::from_all(problems)?;
        if let Some(f) = log_format {
            c.log_format = f;
        }
        if let Some(p) = cli.port {
            c.port = p;
        }
        if let Some(h) = cli.host {
            c.host = h;
        }
        Ok(c)
    }
}

/// Splits a JVM options string into words the way Spark's launcher does for
/// `SPARK_SHUFFLE_OPTS` (its `parseOptionString`, which follows the shell): whitespace
/// separates words; single quotes keep everything literally; double quotes keep whitespace
/// and single quotes; a backslash outside single quotes takes the next character literally;
/// `""` is an empty word. An unclosed quote or a trailing backslash is an error.
pub fn split_jvm_opts(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let (mut single, mut double, mut escaped) = (false, false, false);
    for ch in s.chars() {
        if escaped {
            word.push(ch);
            escaped = false;
            continue;
        }
        match ch {
            '\\' if !single => {
                escaped = true;
                in_word = true;
            }
            '\'' if !double => {
                single = !single;
                in_word = true;
            }
            '"' if !single => {
                double = !double;
                in_word = true;
            }
            c if c.is_whitespace() && !single && !double => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if single || double {
        return Err("a quote is not closed".into());
    }
    if escaped {
        return Err("it ends with a lone backslash".into());
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
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
            conf: vec![
                "spark.shuffle.service.fetch.rdd.enabled=true".into(),
                "spark.shuffle.io.enableTcpKeepAlive=true".into(),
            ],
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
        assert!(c.tcp_keepalive);
        assert!(c.ignored_keys.is_empty());
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
    fn state_dir_and_agent_settings() {
        use std::ffi::OsStr;
        let load = |items: &[&str]| {
            let cli = Cli {
                conf: items.iter().map(|s| s.to_string()).collect(),
                ..Cli::default()
            };
            Config::load(&cli, None, None)
        };
        let d = load(&[]).unwrap();
        assert_eq!(d.state_dir, StateDir::Default);
        assert_eq!(d.agent_address.as_deref(), Some("127.0.0.1:5051"));
        assert_eq!(d.agent_confirm_interval, Duration::from_secs(60));
        // The default follows XDG, then HOME; relative values are ignored.
        let xdg = Some(OsStr::new("/x/state"));
        let home = Some(OsStr::new("/home/u"));
        assert_eq!(
            d.state_dir.resolve(xdg, home),
            Some(PathBuf::from("/x/state/croupier/shuffle"))
        );
        assert_eq!(
            d.state_dir.resolve(Some(OsStr::new("rel")), home),
            Some(PathBuf::from("/home/u/.local/state/croupier/shuffle"))
        );
        assert_eq!(d.state_dir.resolve(None, None), None);
        let c = load(&[
            "croupier.state.dir=/var/lib/croupier/shuffle",
            "croupier.mesos.agent.address=http://agent.example:5051/",
            "croupier.mesos.agent.principal=croupier",
            "croupier.mesos.agent.secret.file=/etc/croupier/agent-secret",
            "croupier.mesos.agent.confirm.interval=5s",
        ])
        .unwrap();
        assert_eq!(
            c.state_dir.resolve(xdg, home),
            Some(PathBuf::from("/var/lib/croupier/shuffle"))
        );
        assert_eq!(c.agent_address.as_deref(), Some("agent.example:5051"));
        assert_eq!(c.agent_confirm_interval, Duration::from_secs(5));
        assert!(c.unknown_keys.is_empty(), "{:?}", c.unknown_keys);
        let off = load(&[
            "croupier.state.dir=none",
            "croupier.mesos.agent.address=none",
        ])
        .unwrap();
        assert_eq!(off.state_dir.resolve(xdg, home), None);
        assert_eq!(off.agent_address, None);
        for bad in [
            "croupier.state.dir=relative/dir",
            "croupier.mesos.agent.address=5051",
            "croupier.mesos.agent.principal=p",
            "croupier.mesos.agent.confirm.interval=soon",
        ] {
            let e = load(&[bad]).unwrap_err().to_string();
            let key = bad.split('=').next().unwrap();
            assert!(
                e.contains("croupier."),
                "{bad}: the error names no setting: {e}"
            );
            assert!(e.contains(key) || key.ends_with("principal"), "{bad}: {e}");
        }
    }

    #[test]
    fn state_sync_default_values_and_refusal() {
        use crate::store::SyncPolicy;
        let load = |items: &[&str]| {
            let cli = Cli {
                conf: items.iter().map(|s| s.to_string()).collect(),
                ..Cli::default()
            };
            Config::load(&cli, None, None)
        };
        assert_eq!(load(&[]).unwrap().state_sync, SyncPolicy::Background);
        let c = load(&["croupier.state.sync=always"]).unwrap();
        assert_eq!(c.state_sync, SyncPolicy::Always);
        assert!(c.unknown_keys.is_empty(), "{:?}", c.unknown_keys);
        assert_eq!(
            load(&["croupier.state.sync=background"])
                .unwrap()
                .state_sync,
            SyncPolicy::Background
        );
        for bad in ["fsync", "", "ALWAYS"] {
            let e = load(&[&format!("croupier.state.sync={bad}")])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("croupier.state.sync") && e.contains("`always`"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn send_threads_default_override_and_refusal() {
        let load = |items: &[&str]| {
            let cli = Cli {
                conf: items.iter().map(|s| s.to_string()).collect(),
                ..Cli::default()
            };
            Config::load(&cli, None, None)
        };
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        assert_eq!(load(&[]).unwrap().send_threads, cores + 1);
        let c = load(&["croupier.shuffle.io.sendThreads=7"]).unwrap();
        assert_eq!(c.send_threads, 7);
        assert!(c.unknown_keys.is_empty(), "{:?}", c.unknown_keys);
        assert_eq!(
            load(&["croupier.shuffle.io.sendThreads=0"])
                .unwrap()
                .send_threads,
            cores + 1
        );
        let c = load(&[
            "croupier.shuffle.io.sendThreads=16",
            "croupier.shuffle.io.blockingThreads=4",
        ])
        .unwrap();
        assert_eq!(c.send_threads, 4, "at most one turn per blocking thread");
        for bad in ["many", "5000", "2.5", "-1"] {
            let e = load(&[&format!("croupier.shuffle.io.sendThreads={bad}")])
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("croupier.shuffle.io.sendThreads") && e.contains(bad),
                "{bad}: {e}"
            );
        }
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

    #[test]
    fn jvm_opts_split_like_spark_launcher() {
        let w = |s: &str| split_jvm_opts(s).unwrap();
        assert_eq!(
            w(r#"-Dspark.foo="a b" -Xms1g"#),
            ["-Dspark.foo=a b", "-Xms1g"]
        );
        assert_eq!(w(r#""ab cd" efgh 'i " j'"#), ["ab cd", "efgh", "i \" j"]);
        assert_eq!(
            w(r#"-Da='x \y' -Db=c\ d "" -De="q\"r""#),
            ["-Da=x \\y", "-Db=c d", "", "-De=q\"r"]
        );
        assert_eq!(w("  \t "), Vec::<String>::new());
        assert!(split_jvm_opts(r#"-Dspark.foo="a b"#).is_err());
        assert!(split_jvm_opts("-Da=b\\").is_err());
        let c = Config::load(
            &Cli::default(),
            Some(r#"-Dspark.some.name="my app" -Dspark.shuffle.service.index.cache.size=' 3m '"#),
            None,
        )
        .unwrap();
        assert_eq!(c.index_cache_size, 3 << 20);
        assert_eq!(c.unknown_keys, ["spark.some.name"]);
    }

    #[test]
    fn every_problem_in_one_round() {
        let d = tempfile::tempdir().unwrap();
        let cli = Cli {
            properties_file: Some(d.path().join("missing.conf")),
            conf: vec![
                "spark.shuffle.cleaner.interval=soon".into(),
                "spark.shuffle.service.port=99999".into(),
                "novalue".into(),
                "croupier.log.format=yaml".into(),
            ],
            log_format: Some("xml".into()),
            ..Cli::default()
        };
        let e = Config::load(
            &cli,
            Some(r#"-Dspark.shuffle.maxChunksBeingTransferred=-1 -Dspark.shuffle.service.index.cache.size="1 g""#),
            None,
        )
        .unwrap_err();
        let ConfigError::Several(list) = &e else {
            panic!("expected several problems: {e}")
        };
        let msg = e.to_string();
        assert_eq!(list.len(), 8, "{msg}");
        for needle in [
            "missing.conf",
            "spark.shuffle.cleaner.interval",
            "\"soon\"",
            "spark.shuffle.service.port",
            "0 to 65535",
            "\"novalue\"",
            "croupier.log.format",
            "\"xml\"",
            "text or json",
            "spark.shuffle.maxChunksBeingTransferred",
            "positive integer",
            "\"1 g\"",
            "SPARK_SHUFFLE_OPTS",
        ] {
            assert!(msg.contains(needle), "{needle} missing from {msg}");
        }
        let e = Config::load(&Cli::default(), Some("-Dspark.foo='a b"), None).unwrap_err();
        assert!(
            e.to_string().contains("SPARK_SHUFFLE_OPTS") && e.to_string().contains("quote"),
            "{e}"
        );
    }

    #[test]
    fn keys_the_jvm_honours_are_reported_with_why() {
        let cli = Cli {
            conf: vec![
                "spark.shuffle.service.db.enabled=true".into(),
                "spark.shuffle.service.enabled=true".into(),
                "croupier.log.format=json".into(),
            ],
            ..Cli::default()
        };
        let c = Config::load(&cli, None, None).unwrap();
        assert_eq!(c.ignored_keys.len(), 1);
        assert_eq!(c.ignored_keys[0].0, "spark.shuffle.service.db.enabled");
        assert_eq!(c.inert_keys, ["spark.shuffle.service.enabled"]);
        assert!(c.unknown_keys.is_empty());
        assert_eq!(c.log_format, croupier_ops::log::LogFormat::Json);
        let cli = Cli {
            log_format: Some("text".into()),
            ..cli
        };
        assert_eq!(
            Config::load(&cli, None, None).unwrap().log_format,
            croupier_ops::log::LogFormat::Text
        );
    }
}
