//! Log set-up shared by the binaries.
//!
//! Two formats: `text` (human lines, the default) and `json` (one object per line with
//! `timestamp`, `level`, `target`, `message`, the event's fields and the fields of every span
//! it happened in, e.g. `framework_id`, `executor_id`, `task_id`, `app_id`, `exec_id`).
//!
//! Each line is written to stderr at once, in one `write`, by the thread that logs it (no
//! queue, no extra thread, nothing lost at exit), but only once `poll` says stderr can take
//! it: a stderr that stays full for [`STALL_WAIT_MS`] (a stalled reader) gets the line
//! dropped instead of blocking the process, and a stderr whose reader went away (`POLLERR`,
//! `EPIPE`, `EIO`) gets it dropped at once. Nothing on the logging path panics; each dropped
//! line is counted once in [`dropped_lines`].

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// The environment variable choosing the format for both binaries.
pub const FORMAT_ENV: &str = "CROUPIER_LOG_FORMAT";

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl LogFormat {
    /// What [`std::str::FromStr`] accepts, for error messages and `--help`.
    pub const ACCEPTED: &'static str = "text or json";

    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown format name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log format {0:?}: expected text or json")]
pub struct UnknownFormat(pub String);

impl UnknownFormat {
    /// Never retryable: the same setting fails the same way.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

impl std::str::FromStr for LogFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(UnknownFormat(s.to_string())),
        }
    }
}

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Log lines lost so far: stderr was gone (its reader closed, a write error) or stayed full
/// for [`STALL_WAIT_MS`]. Each lost line counts once.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// How long a line waits for a full stderr before it is dropped.
pub const STALL_WAIT_MS: i32 = 10;

/// stderr that never returns an error and never waits long: `tracing-subscriber` would
/// report a failed write with `eprintln!`, which panics when stderr is gone.
struct Stderr;

impl Stderr {
    /// Can stderr take a line now (or within [`STALL_WAIT_MS`])?
    fn writable() -> bool {
        let mut pfd = libc::pollfd {
            fd: libc::STDERR_FILENO,
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd, count 1; poll does not keep the pointer.
        let n = unsafe { libc::poll(&mut pfd, 1, STALL_WAIT_MS) };
        n == 1 && pfd.revents & libc::POLLOUT != 0 && pfd.revents & libc::POLLERR == 0
    }
}

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !Stderr::writable() || std::io::stderr().write_all(buf).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Returned by [`init`]; hold it in `main` for the life of the process (it owns nothing
/// today, so that a buffered writer can come later without touching the binaries).
#[must_use = "hold the guard until the process exits"]
pub struct LogGuard {
    _private: (),
}

/// Installs the global subscriber: `RUST_LOG` filter (default `info`), `format`, stderr.
pub fn init(format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Stderr)
        .log_internal_errors(false);
    let installed = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(JsonLine)
            .try_init(),
    };
    // Already installed (a test harness calling init twice): keep the first one.
    drop(installed);
    LogGuard { _private: () }
}

/// One JSON object per event: `timestamp`, `level`, `target`, `message`, then the fields of
/// the spans it happened in (outermost first) and its own fields, all at the top level, plus
/// `spans`, the names of those spans.
pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut obj = serde_json::Map::new();
        let mut ts = String::new();
        SystemTime.format_time(&mut Writer::new(&mut ts))?;
        obj.insert("timestamp".into(), ts.into());
        let meta = event.metadata();
        obj.insert("level".into(), meta.level().as_str().into());
        obj.insert("target".into(), meta.target().into());
        let mut spans = Vec::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                spans.push(serde_json::Value::from(span.name()));
                let ext = span.extensions();
                // JsonFields stores a span's fields as the text of a JSON object.
                if let Some(fields) = ext.get::<FormattedFields<N>>() {
                    if let Ok(serde_json::Value::Object(m)) =
                        serde_json::from_str::<serde_json::Value>(&fields.fields)
                    {
                        obj.extend(m);
                    }
                }
            }
        }
        if !spans.is_empty() {
            obj.insert("spans".into(), spans.into());
        }
        event.record(&mut Fields(&mut obj));
        if !obj.contains_key("message") {
            obj.insert("message".into(), "".into());
        }
        writeln!(writer, "{}", serde_json::Value::Object(obj))
    }
}

struct Fields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names() {
        assert_eq!("JSON".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!(" text".parse::<LogFormat>(), Ok(LogFormat::Text));
        let e = "yaml".parse::<LogFormat>().unwrap_err().to_string();
        assert!(e.contains("\"yaml\"") && e.contains("text or json"), "{e}");
    }

    #[test]
    fn json_lines_carry_span_and_event_fields() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .map_err(|_| std::io::ErrorKind::Other)?
                    .extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .fmt_fields(JsonFields::new())
            .event_format(JsonLine)
            .finish();
        tracing::subscriber::with_default(sub, || {
            let outer = tracing::info_span!("executor", framework_id = "fw-1", executor_id = "ex");
            let _o = outer.enter();
            let inner = tracing::info_span!("task", task_id = "t \"1\"");
            let _i = inner.enter();
            tracing::warn!(bytes = 3u64, ok = true, "fetched {}", "x");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["message"], "fetched x");
        assert_eq!(v["framework_id"], "fw-1");
        assert_eq!(v["task_id"], "t \"1\"");
        assert_eq!(v["bytes"], 3);
        assert_eq!(v["ok"], true);
        assert_eq!(v["spans"], serde_json::json!(["executor", "task"]));
        assert!(
            v["timestamp"].as_str().is_some_and(|t| t.len() >= 20),
            "{v}"
        );
        assert!(
            v["target"].as_str().is_some_and(|t| t.contains("log")),
            "{v}"
        );
    }
}
