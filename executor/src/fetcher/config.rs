//! Fetcher settings, parsed once from the environment and the command line.

use std::path::PathBuf;
use std::time::Duration;

/// Default cache directory (shared by every executor on the agent, kept across restarts).
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/croupier/fetcher";
/// Default cache size: 2 GB, as Mesos's `--fetcher_cache_size`.
pub const DEFAULT_CACHE_SIZE: u64 = 2 * 1024 * 1024 * 1024;
/// Default stall timeout, as Mesos's `--fetcher_stall_timeout`.
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Typed fetcher configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchConfig {
    /// Root of the shared cache (`CROUPIER_FETCHER_CACHE_DIR`, `--fetcher_cache_dir`).
    pub cache_dir: PathBuf,
    /// Cap on the bytes held by cache entries (`CROUPIER_FETCHER_CACHE_SIZE`, `--fetcher_cache_size`).
    /// 0 disables caching: every URI is fetched directly.
    pub cache_size: u64,
    /// A download that receives no byte for this long fails
    /// (`CROUPIER_FETCHER_STALL_TIMEOUT`, `--fetcher_stall_timeout`).
    pub stall_timeout: Duration,
    /// Hardlink cache entries into sandboxes instead of copying (`CROUPIER_FETCHER_CACHE_LINKS=1`,
    /// `--fetcher_cache_links`). Entries are then read-only, and a link is made only for a task
    /// running as a non-root user other than the executor, who can neither write nor chmod the
    /// executor's entry; other tasks get copies.
    pub cache_links: bool,
    /// Extra PEM CA bundle trusted for `https://` (`CROUPIER_FETCHER_CA_FILE`,
    /// `--fetcher_ca_file`), on top of the system and webpki roots.
    pub ca_file: Option<PathBuf>,
    /// Base for relative local paths (`--frameworks_home` / `MESOS_FRAMEWORKS_HOME`).
    pub frameworks_home: Option<PathBuf>,
    /// How often a long download logs its progress (`CROUPIER_FETCHER_PROGRESS_INTERVAL`,
    /// `--fetcher_progress_interval`; default 10 seconds).
    pub progress_interval: Duration,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            cache_dir: PathBuf::from(DEFAULT_CACHE_DIR),
            cache_size: DEFAULT_CACHE_SIZE,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            cache_links: false,
            ca_file: None,
            frameworks_home: None,
            progress_interval: Duration::from_secs(10),
        }
    }
}

/// A setting that could not be parsed; names the setting and the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{setting}={value:?}: {reason}")]
pub struct ConfigError {
    pub setting: String,
    pub value: String,
    pub reason: String,
}

impl FetchConfig {
    /// Reads the process environment, then lets `args` (the executor's command line; unknown
    /// arguments are ignored) override it. Both `--flag=value` and `--flag value` are accepted.
    pub fn from_env_and_flags<S: AsRef<str>>(args: &[S]) -> Result<FetchConfig, ConfigError> {
        Self::from_lookup_and_flags(|k| std::env::var(k).ok(), args)
    }

    /// As [`FetchConfig::from_env_and_flags`], reporting every invalid setting.
    pub fn check_env_and_flags<S: AsRef<str>>(args: &[S]) -> Result<FetchConfig, Vec<ConfigError>> {
        Self::check_lookup_and_flags(|k| std::env::var(k).ok(), args)
    }

    /// As [`FetchConfig::from_env_and_flags`], with an explicit environment (for tests).
    pub fn from_lookup_and_flags<S: AsRef<str>>(
        env: impl Fn(&str) -> Option<String>,
        args: &[S],
    ) -> Result<FetchConfig, ConfigError> {
        Self::check_lookup_and_flags(env, args).map_err(|mut all| all.remove(0))
    }

    /// As [`FetchConfig::from_lookup_and_flags`], reporting every invalid setting (never an
    /// empty list), each named as given: the variable or the `--flag`.
    pub fn check_lookup_and_flags<S: AsRef<str>>(
        env: impl Fn(&str) -> Option<String>,
        args: &[S],
    ) -> Result<FetchConfig, Vec<ConfigError>> {
        let mut cfg = FetchConfig::default();
        let mut problems = Vec::new();
        // (flag name, where it came from, value)
        let mut pairs: Vec<(String, String, String)> = Vec::new();
        for (env_name, flag) in [
            ("CROUPIER_FETCHER_CACHE_DIR", "fetcher_cache_dir"),
            ("CROUPIER_FETCHER_CACHE_SIZE", "fetcher_cache_size"),
            ("CROUPIER_FETCHER_STALL_TIMEOUT", "fetcher_stall_timeout"),
            ("CROUPIER_FETCHER_CACHE_LINKS", "fetcher_cache_links"),
            ("CROUPIER_FETCHER_CA_FILE", "fetcher_ca_file"),
            (
                "CROUPIER_FETCHER_PROGRESS_INTERVAL",
                "fetcher_progress_interval",
            ),
            ("MESOS_FRAMEWORKS_HOME", "frameworks_home"),
        ] {
            if let Some(v) = env(env_name) {
                pairs.push((flag.to_string(), env_name.to_string(), v));
            }
        }
        let args: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
        let mut i = 0;
        while i < args.len() {
            if let Some(rest) = args[i].strip_prefix("--") {
                let known = [
                    "fetcher_cache_dir",
                    "fetcher_cache_size",
                    "fetcher_stall_timeout",
                    "fetcher_cache_links",
                    "fetcher_ca_file",
                    "fetcher_progress_interval",
                    "frameworks_home",
                ];
                if let Some((k, v)) = rest.split_once('=') {
                    if known.contains(&k) {
                        pairs.push((k.to_string(), format!("--{k}"), v.to_string()));
                    }
                } else if rest == "fetcher_cache_links" {
                    pairs.push((rest.to_string(), format!("--{rest}"), "true".to_string()));
                } else if known.contains(&rest) && i + 1 < args.len() {
                    pairs.push((
                        rest.to_string(),
                        format!("--{rest}"),
                        args[i + 1].to_string(),
                    ));
                    i += 1;
                }
            }
            i += 1;
        }
        for (k, origin, v) in pairs {
            let bad = |reason: &str| ConfigError {
                setting: origin.clone(),
                value: v.clone(),
                reason: reason.to_string(),
            };
            if let Err(e) = cfg.apply(&k, &v, bad) {
                problems.push(e);
            }
        }
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(problems)
        }
    }

    fn apply(
        &mut self,
        k: &str,
        v: &str,
        bad: impl Fn(&str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let cfg = self;
        {
            match k {
                "fetcher_cache_dir" => {
                    if !v.starts_with('/') {
                        return Err(bad("must be an absolute path"));
                    }
                    cfg.cache_dir = PathBuf::from(v);
                }
                "fetcher_cache_size" => cfg.cache_size = parse_bytes(v).map_err(|r| bad(&r))?,
                "fetcher_stall_timeout" => {
                    cfg.stall_timeout = parse_duration(v).map_err(|r| bad(&r))?
                }
                "fetcher_cache_links" => cfg.cache_links = parse_bool(v).map_err(|r| bad(&r))?,
                "fetcher_progress_interval" => {
                    let d = parse_duration(v).map_err(|r| bad(&r))?;
                    if d.is_zero() {
                        return Err(bad("must be more than zero"));
                    }
                    cfg.progress_interval = d
                }
                "fetcher_ca_file" => cfg.ca_file = (!v.is_empty()).then(|| PathBuf::from(v)),
                "frameworks_home" => {
                    cfg.frameworks_home = (!v.is_empty()).then(|| PathBuf::from(v))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err("expected 1/0/true/false".into()),
    }
}

/// Mesos byte syntax: a number followed by `B`, `KB`, `MB`, `GB` or `TB` (powers of 1024).
/// A bare number is taken as bytes.
pub fn parse_bytes(v: &str) -> Result<u64, String> {
    let s = v.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| "expected a number followed by B, KB, MB, GB or TB".to_string())?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        other => return Err(format!("unknown unit {other:?} (use B, KB, MB, GB or TB)")),
    };
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err("out of range".into());
    }
    Ok(bytes as u64)
}

/// Mesos duration syntax (`60secs`, `500ms`, `2mins`, ...); `s`, `m`, `h` are accepted too.
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let s = v.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| "expected a number followed by a unit such as secs".to_string())?;
    let secs_per: f64 = match unit.trim() {
        "ns" => 1e-9,
        "us" => 1e-6,
        "ms" => 1e-3,
        "secs" | "s" => 1.0,
        "mins" | "m" => 60.0,
        "hrs" | "h" => 3600.0,
        "days" => 86400.0,
        "weeks" => 604800.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} (use ns, us, ms, secs, mins, hrs, days, weeks)"
            ))
        }
    };
    let secs = n * secs_per;
    if !secs.is_finite() || secs <= 0.0 || secs > 1e9 {
        return Err("out of range".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesos_byte_syntax() {
        assert_eq!(parse_bytes("2GB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("512MB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_bytes("1.5KB").unwrap(), 1536);
        assert!(parse_bytes("12XB").is_err());
        assert!(parse_bytes("GB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("60secs").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2mins").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn flags_override_env() {
        let env = |k: &str| match k {
            "CROUPIER_FETCHER_CACHE_DIR" => Some("/env/cache".to_string()),
            "CROUPIER_FETCHER_CACHE_SIZE" => Some("1GB".to_string()),
            "CROUPIER_FETCHER_CACHE_LINKS" => Some("1".to_string()),
            _ => None,
        };
        let c = FetchConfig::from_lookup_and_flags(env, &["--other=1"]).unwrap();
        assert_eq!(c.cache_dir, PathBuf::from("/env/cache"));
        assert_eq!(c.cache_size, 1 << 30);
        assert!(c.cache_links);
        let c = FetchConfig::from_lookup_and_flags(
            env,
            &[
                "--fetcher_cache_dir=/flag/cache",
                "--fetcher_cache_size",
                "512MB",
                "--fetcher_stall_timeout=10secs",
            ],
        )
        .unwrap();
        assert_eq!(c.cache_dir, PathBuf::from("/flag/cache"));
        assert_eq!(c.cache_size, 512 << 20);
        assert_eq!(c.stall_timeout, Duration::from_secs(10));
        let d = FetchConfig::from_lookup_and_flags(|_| None, &[] as &[&str]).unwrap();
        assert_eq!(d, FetchConfig::default());
        let e = FetchConfig::from_lookup_and_flags(|_| None, &["--fetcher_cache_size=lots"])
            .unwrap_err();
        assert!(e.to_string().contains("fetcher_cache_size"));
    }

    #[test]
    fn progress_interval_from_env_or_flag_and_never_zero() {
        let env =
            |k: &str| (k == "CROUPIER_FETCHER_PROGRESS_INTERVAL").then(|| "30secs".to_string());
        let c = FetchConfig::from_lookup_and_flags(env, &[] as &[&str]).unwrap();
        assert_eq!(c.progress_interval, Duration::from_secs(30));
        let c = FetchConfig::from_lookup_and_flags(env, &["--fetcher_progress_interval=2secs"])
            .unwrap();
        assert_eq!(c.progress_interval, Duration::from_secs(2));
        let e = FetchConfig::from_lookup_and_flags(|_| None, &["--fetcher_progress_interval=0ms"])
            .unwrap_err();
        assert!(e.to_string().contains("fetcher_progress_interval"), "{e}");
    }
}
