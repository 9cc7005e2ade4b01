//! Health checks (`TaskInfo.health_check`) and checks (`TaskInfo.check`) of one task: their
//! timing, their probes, and how a probe's result becomes (or does not become) a status update.
//!
//! Timing, as Mesos 1.11 (`src/checks/checker_process.cpp`): the first probe `delay` after the
//! task's process started, each next one `interval` after the previous result was processed; a
//! probe running longer than `timeout` (0 = none) is killed and counts as an error.
//!
//! Probes: COMMAND runs `sh -c` (or argv) as a process of the executor, in its own session, so
//! the task's process accounting never counts it (see [`Checker::probe_pid`]); HTTP(S) and TCP
//! are done natively (no `curl` / `mesos-tcp-connect` process), with the same observable result:
//! HTTP follows redirects, ignores certificate validation, and its result is the final status
//! code; TCP is whether a connection to `127.0.0.1:port` (`[::1]` for IPv6) was established.
//!
//! Interpretation, as `src/checks/health_checker.cpp` and `src/checks/checker.cpp`:
//! - health: a failure is ignored only while there was no success yet and the grace period
//!   since the checker started has not passed; `healthy=true` goes out on the first success
//!   and on the first success after failures; every counted failure sends `healthy=false`, and
//!   the `consecutive_failures`-th asks for the task to be killed.
//! - check: the result (an error becomes the empty status of the check's type) is reported
//!   only when it differs from the previous one (initially the empty status).
//!
//! This module only decides; the task lifecycle sends the updates and kills.

use std::time::{Duration, Instant};

use croupier_proto::v1::{
    check_info, check_status_info, health_check, network_info, CheckInfo, CheckStatusInfo,
    CommandInfo, HealthCheck,
};
use nix::sys::signal::Signal;
use tokio::task::JoinHandle;

use crate::http_probe;
use crate::process::{self, Exit, SpawnSpec};

/// Which of a task's two checkers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Health,
    Check,
}

impl Which {
    pub fn name(self) -> &'static str {
        match self {
            Which::Health => "health check",
            Which::Check => "check",
        }
    }
}

/// What a probe does.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    Command(CommandInfo),
    Http {
        scheme: String,
        port: u16,
        path: String,
        ipv6: bool,
    },
    Tcp {
        port: u16,
        ipv6: bool,
    },
}

impl Probe {
    fn kind(&self) -> check_info::Type {
        match self {
            Probe::Command(_) => check_info::Type::Command,
            Probe::Http { .. } => check_info::Type::Http,
            Probe::Tcp { .. } => check_info::Type::Tcp,
        }
    }

    fn describe(&self) -> String {
        match self {
            Probe::Command(c) => format!("COMMAND {:?}", c.value.as_deref().unwrap_or("")),
            Probe::Http { .. } => format!("HTTP {}", self.url()),
            Probe::Tcp { port, ipv6 } => format!("TCP {}:{port}", host(*ipv6)),
        }
    }

    /// The URL an HTTP probe asks for.
    pub fn url(&self) -> String {
        match self {
            Probe::Http {
                scheme,
                port,
                path,
                ipv6,
            } => format!("{scheme}://{}:{port}{path}", host(*ipv6)),
            _ => String::new(),
        }
    }
}

fn host(ipv6: bool) -> &'static str {
    if ipv6 {
        "[::1]"
    } else {
        "127.0.0.1"
    }
}

/// When probes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub delay: Duration,
    pub interval: Duration,
    /// `None`: no timeout (`timeout_seconds` 0).
    pub timeout: Option<Duration>,
}

/// Seconds from a TaskInfo field (validated non-negative and finite).
fn secs(field: &str, v: f64) -> Result<Duration, String> {
    if !v.is_finite() || v < 0.0 {
        return Err(format!("Expecting '{field}' to be non-negative, got {v}"));
    }
    Duration::try_from_secs_f64(v).map_err(|e| format!("'{field}' = {v}: {e}"))
}

fn port(field: &str, p: u32) -> Result<u16, String> {
    u16::try_from(p)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("'{field}' must be a TCP port (1-65535), got {p}"))
}

fn check_path(what: &str, path: Option<&str>) -> Result<String, String> {
    match path {
        None => Ok(String::new()),
        Some(p) if p.starts_with('/') => Ok(p.to_string()),
        Some(p) => Err(format!("The path '{p}' of {what} must start with '/'")),
    }
}

fn check_command(what: &str, c: Option<&CommandInfo>) -> Result<CommandInfo, String> {
    let c = c.ok_or_else(|| format!("Expecting 'command' to be set for COMMAND {what}"))?;
    if c.value.is_none() {
        let kind = if c.shell.unwrap_or(true) {
            "'shell command'"
        } else {
            "'executable path'"
        };
        return Err(format!("Command {what} must contain {kind}"));
    }
    Ok(c.clone())
}

/// A task's `health_check`, validated as Mesos's `validateHealthCheck` does.
pub fn health_probe(hc: &HealthCheck) -> Result<(Probe, Timing), String> {
    let ipv6 = |p: Option<i32>| p == Some(network_info::Protocol::IPv6 as i32);
    let probe = match hc.r#type.and_then(|t| health_check::Type::try_from(t).ok()) {
        None => return Err("HealthCheck must specify 'type'".into()),
        Some(health_check::Type::Unknown) => {
            return Err("'UNKNOWN' is not a valid health check type".into())
        }
        Some(health_check::Type::Command) => {
            Probe::Command(check_command("health check", hc.command.as_ref())?)
        }
        Some(health_check::Type::Http) => {
            let h = hc
                .http
                .as_ref()
                .ok_or("Expecting 'http' to be set for HTTP health check")?;
            let scheme = h.scheme.clone().unwrap_or_else(|| "http".into());
            if scheme != "http" && scheme != "https" {
                return Err(format!("Unsupported HTTP health check scheme: '{scheme}'"));
            }
            Probe::Http {
                scheme,
                port: port("health_check.http.port", h.port)?,
                path: check_path("HTTP health check", h.path.as_deref())?,
                ipv6: ipv6(h.protocol),
            }
        }
        Some(health_check::Type::Tcp) => {
            let t = hc
                .tcp
                .as_ref()
                .ok_or("Expecting 'tcp' to be set for TCP health check")?;
            Probe::Tcp {
                port: port("health_check.tcp.port", t.port)?,
                ipv6: ipv6(t.protocol),
            }
        }
    };
    let timeout = secs("timeout_seconds", hc.timeout_seconds())?;
    Ok((
        probe,
        Timing {
            delay: secs("delay_seconds", hc.delay_seconds())?,
            interval: secs("interval_seconds", hc.interval_seconds())?,
            timeout: (!timeout.is_zero()).then_some(timeout),
        },
    ))
}

/// A task's `check`, validated as Mesos's `validateCheckInfo` does.
pub fn check_probe(ci: &CheckInfo) -> Result<(Probe, Timing), String> {
    let probe = match ci.r#type.and_then(|t| check_info::Type::try_from(t).ok()) {
        None => return Err("CheckInfo must specify 'type'".into()),
        Some(check_info::Type::Unknown) => return Err("'UNKNOWN' is not a valid check type".into()),
        Some(check_info::Type::Command) => Probe::Command(check_command(
            "check",
            ci.command.as_ref().map(|c| &c.command),
        )?),
        Some(check_info::Type::Http) => {
            let h = ci
                .http
                .as_ref()
                .ok_or("Expecting 'http' to be set for HTTP check")?;
            Probe::Http {
                scheme: "http".into(),
                port: port("check.http.port", h.port)?,
                path: check_path("HTTP check", h.path.as_deref())?,
                ipv6: false,
            }
        }
        Some(check_info::Type::Tcp) => {
            let t = ci
                .tcp
                .as_ref()
                .ok_or("Expecting 'tcp' to be set for TCP check")?;
            Probe::Tcp {
                port: port("check.tcp.port", t.port)?,
                ipv6: false,
            }
        }
    };
    let timeout = secs("timeout_seconds", ci.timeout_seconds())?;
    Ok((
        probe,
        Timing {
            delay: secs("delay_seconds", ci.delay_seconds())?,
            interval: secs("interval_seconds", ci.interval_seconds())?,
            timeout: (!timeout.is_zero()).then_some(timeout),
        },
    ))
}

/// The `check_status` every update of a task with a check carries until a result is known:
/// the check's type and an empty result of that type.
pub fn empty_status(ci: &CheckInfo) -> Option<CheckStatusInfo> {
    let ty = ci.r#type.and_then(|t| check_info::Type::try_from(t).ok())?;
    empty_of(ty)
}

fn empty_of(ty: check_info::Type) -> Option<CheckStatusInfo> {
    let mut s = CheckStatusInfo {
        r#type: Some(ty as i32),
        ..Default::default()
    };
    match ty {
        check_info::Type::Command => s.command = Some(Default::default()),
        check_info::Type::Http => s.http = Some(Default::default()),
        check_info::Type::Tcp => s.tcp = Some(Default::default()),
        check_info::Type::Unknown => return None,
    }
    Some(s)
}

/// What a probe found: a result (as Mesos's `CheckStatusInfo`), or why there is none.
pub type ProbeResult = Result<CheckStatusInfo, String>;

/// What a processed result asks of the task.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Nothing to report.
    Quiet,
    /// Send a health update; `kill`: the consecutive failures reached the limit.
    Health { healthy: bool, kill: bool },
    /// Send a check update with this status.
    Check(CheckStatusInfo),
}

/// Health-check interpretation (pure; time is given).
#[derive(Debug, Clone)]
pub struct HealthJudge {
    started: Instant,
    grace: Duration,
    max_failures: u32,
    initializing: bool,
    failures: u32,
}

impl HealthJudge {
    pub fn new(hc: &HealthCheck, started: Instant) -> Result<HealthJudge, String> {
        Ok(HealthJudge {
            started,
            grace: secs("grace_period_seconds", hc.grace_period_seconds())?,
            max_failures: hc.consecutive_failures(),
            initializing: true,
            failures: 0,
        })
    }

    /// Why a result is a failure, if it is one.
    pub fn failure_of(result: &ProbeResult) -> Option<String> {
        let s = match result {
            Err(e) => return Some(e.clone()),
            Ok(s) => s,
        };
        if let Some(c) = &s.command {
            let code = c.exit_code.unwrap_or(0);
            if code != 0 {
                return Some(format!("Command exited with status {code}"));
            }
        }
        if let Some(h) = &s.http {
            let code = h.status_code.unwrap_or(0);
            if !(200..400).contains(&code) {
                return Some(format!("Unexpected HTTP response code: {code}"));
            }
        }
        if let Some(t) = &s.tcp {
            if !t.succeeded.unwrap_or(false) {
                return Some("TCP connection failed".into());
            }
        }
        None
    }

    pub fn judge(&mut self, task_id: &str, result: &ProbeResult, now: Instant) -> Verdict {
        match Self::failure_of(result) {
            Some(why) => {
                if self.initializing
                    && !self.grace.is_zero()
                    && now.duration_since(self.started) <= self.grace
                {
                    tracing::info!(
                        "task {task_id}: ignoring a failed health check ({why}): still in the grace period"
                    );
                    return Verdict::Quiet;
                }
                self.failures = self.failures.saturating_add(1);
                tracing::warn!(
                    "task {task_id}: health check failed {} time(s) in a row: {why}",
                    self.failures
                );
                Verdict::Health {
                    healthy: false,
                    kill: self.failures >= self.max_failures,
                }
            }
            None => {
                tracing::debug!("task {task_id}: health check passed");
                let report = self.initializing || self.failures > 0;
                self.initializing = false;
                self.failures = 0;
                if report {
                    Verdict::Health {
                        healthy: true,
                        kill: false,
                    }
                } else {
                    Verdict::Quiet
                }
            }
        }
    }
}

/// Check interpretation: report changes of the result.
#[derive(Debug, Clone)]
pub struct CheckJudge {
    empty: CheckStatusInfo,
    previous: CheckStatusInfo,
}

impl CheckJudge {
    pub fn new(empty: CheckStatusInfo) -> CheckJudge {
        CheckJudge {
            previous: empty,
            empty,
        }
    }

    pub fn judge(&mut self, task_id: &str, result: &ProbeResult) -> Verdict {
        let status = match result {
            Ok(s) => *s,
            Err(e) => {
                tracing::warn!("task {task_id}: check failed: {e}");
                self.empty
            }
        };
        if status == self.previous {
            return Verdict::Quiet;
        }
        self.previous = status;
        Verdict::Check(status)
    }
}

enum Judge {
    Health(HealthJudge),
    Check(CheckJudge),
}

/// A probe in flight.
struct Running {
    seq: u64,
    deadline: Option<Instant>,
    /// A COMMAND probe's process (the leader of its own session).
    pid: Option<i32>,
    /// An HTTP/TCP probe's future.
    handle: Option<JoinHandle<()>>,
}

enum Sched {
    /// The next probe starts at the instant.
    Due(Instant),
    Running(Running),
    /// No probes until resumed (custom mode, while the agent is away).
    Paused,
    /// No more probes (the task is being killed or has ended).
    Stopped,
}

/// One checker of one task.
pub struct Checker {
    which: Which,
    task_id: String,
    probe: Probe,
    timing: Timing,
    judge: Judge,
    sched: Sched,
    seq: u64,
}

impl Checker {
    /// The task's health checker, its first probe `delay` after `started`.
    pub fn health(task_id: &str, hc: &HealthCheck, started: Instant) -> Result<Checker, String> {
        let (probe, timing) = health_probe(hc)?;
        let judge = Judge::Health(HealthJudge::new(hc, started)?);
        Ok(Checker::new(
            Which::Health,
            task_id,
            probe,
            timing,
            judge,
            started,
        ))
    }

    /// The task's checker, its first probe `delay` after `started`.
    pub fn check(task_id: &str, ci: &CheckInfo, started: Instant) -> Result<Checker, String> {
        let (probe, timing) = check_probe(ci)?;
        let empty = empty_of(probe.kind()).ok_or("'UNKNOWN' is not a valid check type")?;
        let judge = Judge::Check(CheckJudge::new(empty));
        Ok(Checker::new(
            Which::Check,
            task_id,
            probe,
            timing,
            judge,
            started,
        ))
    }

    fn new(
        which: Which,
        task_id: &str,
        probe: Probe,
        timing: Timing,
        judge: Judge,
        started: Instant,
    ) -> Checker {
        tracing::info!(
            "task {task_id}: {} {} every {:?} after {:?} (timeout {})",
            which.name(),
            probe.describe(),
            timing.interval,
            timing.delay,
            timing
                .timeout
                .map(|t| format!("{t:?}"))
                .unwrap_or_else(|| "none".into())
        );
        Checker {
            which,
            task_id: task_id.to_string(),
            probe,
            timing,
            judge,
            sched: Sched::Due(started + timing.delay),
            seq: 0,
        }
    }

    pub fn which(&self) -> Which {
        self.which
    }

    /// The probe's command, for a COMMAND checker.
    pub fn command(&self) -> Option<&CommandInfo> {
        match &self.probe {
            Probe::Command(c) => Some(c),
            _ => None,
        }
    }

    /// Does this checker probe over HTTP(S)?
    pub fn is_http(&self) -> bool {
        matches!(self.probe, Probe::Http { .. })
    }

    /// The pid (and session id) of a COMMAND probe in flight.
    pub fn probe_pid(&self) -> Option<i32> {
        match &self.sched {
            Sched::Running(r) => r.pid,
            _ => None,
        }
    }

    /// When this checker next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.sched {
            Sched::Due(at) => Some(*at),
            Sched::Running(r) => r.deadline,
            Sched::Paused | Sched::Stopped => None,
        }
    }

    /// Is the next probe due?
    pub fn is_due(&self, now: Instant) -> bool {
        matches!(self.sched, Sched::Due(at) if at <= now)
    }

    /// Start the next probe. A COMMAND probe is spawned from `command_spec`; an HTTP/TCP probe
    /// runs on the runtime and hands its result to `done` (with the sequence number to give
    /// back to [`Checker::finished`]). Returns a verdict at once when the probe could not start.
    pub fn start(
        &mut self,
        now: Instant,
        command_spec: impl FnOnce(&CommandInfo) -> Result<SpawnSpec, String>,
        done: impl FnOnce(u64, ProbeResult) + Send + 'static,
    ) -> Verdict {
        self.seq += 1;
        let seq = self.seq;
        let deadline = self.timing.timeout.map(|t| now + t);
        let mut running = Running {
            seq,
            deadline,
            pid: None,
            handle: None,
        };
        match &self.probe {
            Probe::Command(c) => {
                let spawned = command_spec(c).and_then(|spec| {
                    process::spawn(&spec).map_err(|e| format!("Failed to create subprocess: {e}"))
                });
                match spawned {
                    Ok(pid) => {
                        tracing::debug!(
                            "task {}: {} probe started as pid {pid}",
                            self.task_id,
                            self.which.name()
                        );
                        running.pid = Some(pid.as_raw());
                    }
                    Err(e) => {
                        self.sched = Sched::Running(running);
                        return self.finished(seq, Err(e), now);
                    }
                }
            }
            Probe::Http { .. } => {
                let url = self.probe.url();
                running.handle = Some(tokio::spawn(async move {
                    done(seq, http_probe(&url).await);
                }));
            }
            Probe::Tcp { port, ipv6 } => {
                let addr = format!("{}:{port}", host(*ipv6));
                running.handle = Some(tokio::spawn(async move {
                    done(seq, tcp_probe(&addr).await);
                }));
            }
        }
        self.sched = Sched::Running(running);
        Verdict::Quiet
    }

    /// A probe's result arrived: judge it and schedule the next probe `interval` from now.
    /// Results of a probe that is no longer the one in flight are dropped.
    pub fn finished(&mut self, seq: u64, result: ProbeResult, now: Instant) -> Verdict {
        match &self.sched {
            Sched::Running(r) if r.seq == seq => {}
            _ => return Verdict::Quiet,
        }
        self.sched = Sched::Due(now + self.timing.interval);
        match &mut self.judge {
            Judge::Health(j) => j.judge(&self.task_id, &result, now),
            Judge::Check(j) => j.judge(&self.task_id, &result),
        }
    }

    /// A reaped process: if it is this checker's COMMAND probe, its result.
    pub fn reaped(&mut self, pid: i32, exit: Exit, now: Instant) -> Option<Verdict> {
        let seq = match &self.sched {
            Sched::Running(r) if r.pid == Some(pid) => r.seq,
            _ => return None,
        };
        let result = match exit {
            Exit::Code(code) => Ok(CheckStatusInfo {
                r#type: Some(check_info::Type::Command as i32),
                command: Some(check_status_info::Command {
                    exit_code: Some(code),
                }),
                ..Default::default()
            }),
            Exit::Signal { .. } => Err(format!("Command {}", exit.describe())),
        };
        Some(self.finished(seq, result, now))
    }

    /// If the probe in flight has run past its timeout: kill it and judge the timeout.
    pub fn check_timeout(&mut self, now: Instant) -> Option<Verdict> {
        let (seq, timeout) = match &self.sched {
            Sched::Running(r) if r.deadline.is_some_and(|d| d <= now) => {
                (r.seq, self.timing.timeout.unwrap_or_default())
            }
            _ => return None,
        };
        self.abort_in_flight();
        let what = match &self.probe {
            Probe::Command(_) => "Command",
            Probe::Http { .. } => "HTTP request",
            Probe::Tcp { .. } => "TCP connection",
        };
        let result = Err(format!("{what} timed out after {timeout:?}"));
        Some(self.finished(seq, result, now))
    }

    /// No probes until [`Checker::resume`]; a probe in flight is killed and its result
    /// ignored.
    pub fn pause(&mut self) {
        if matches!(self.sched, Sched::Due(_) | Sched::Running(_)) {
            self.abort_in_flight();
            self.sched = Sched::Paused;
        }
    }

    /// After [`Checker::pause`]: the next probe at once.
    pub fn resume(&mut self, now: Instant) {
        if matches!(self.sched, Sched::Paused) {
            self.sched = Sched::Due(now);
        }
    }

    /// No more probes; a probe in flight is killed.
    pub fn stop(&mut self) {
        self.abort_in_flight();
        self.sched = Sched::Stopped;
    }

    fn abort_in_flight(&mut self) {
        if let Sched::Running(r) = &mut self.sched {
            if let Some(pid) = r.pid {
                // The probe leads its own session: SIGKILL it with everything it started.
                let _ = process::kill_session(pid, Signal::SIGKILL);
            }
            if let Some(h) = r.handle.take() {
                h.abort();
            }
        }
    }
}

/// GET the URL (see [`http_probe::get`]) and give the final status code (any code is a
/// result; a failed exchange is an error).
async fn http_probe(url: &str) -> ProbeResult {
    let code = http_probe::get(url).await?;
    Ok(CheckStatusInfo {
        r#type: Some(check_info::Type::Http as i32),
        http: Some(check_status_info::Http {
            status_code: Some(u32::from(code.as_u16())),
        }),
        ..Default::default()
    })
}

/// Connect, and report whether the connection was established.
async fn tcp_probe(addr: &str) -> ProbeResult {
    let succeeded = match tokio::net::TcpStream::connect(addr).await {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!("TCP probe of {addr}: {e}");
            false
        }
    };
    Ok(CheckStatusInfo {
        r#type: Some(check_info::Type::Tcp as i32),
        tcp: Some(check_status_info::Tcp {
            succeeded: Some(succeeded),
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(grace: f64, failures: u32) -> HealthCheck {
        HealthCheck {
            r#type: Some(health_check::Type::Tcp as i32),
            tcp: Some(health_check::TcpCheckInfo {
                port: 1,
                protocol: None,
            }),
            grace_period_seconds: Some(grace),
            consecutive_failures: Some(failures),
            ..Default::default()
        }
    }

    fn tcp(ok: bool) -> ProbeResult {
        Ok(CheckStatusInfo {
            r#type: Some(check_info::Type::Tcp as i32),
            tcp: Some(check_status_info::Tcp {
                succeeded: Some(ok),
            }),
            ..Default::default()
        })
    }

    fn http(code: u32) -> ProbeResult {
        Ok(CheckStatusInfo {
            r#type: Some(check_info::Type::Http as i32),
            http: Some(check_status_info::Http {
                status_code: Some(code),
            }),
            ..Default::default()
        })
    }

    const H: fn(bool, bool) -> Verdict = |healthy, kill| Verdict::Health { healthy, kill };

    #[test]
    fn grace_period_hides_failures_only_before_the_first_success() {
        let t0 = Instant::now();
        let mut j = HealthJudge::new(&hc(100.0, 3), t0).unwrap();
        let s = Duration::from_secs(1);
        assert_eq!(j.judge("t", &tcp(false), t0 + s), Verdict::Quiet);
        assert_eq!(j.judge("t", &tcp(true), t0 + 2 * s), H(true, false));
        assert_eq!(j.judge("t", &tcp(true), t0 + 3 * s), Verdict::Quiet);
        // Still inside the grace period, but after a success: counted.
        assert_eq!(j.judge("t", &tcp(false), t0 + 4 * s), H(false, false));
        assert_eq!(j.judge("t", &tcp(true), t0 + 5 * s), H(true, false));
        assert_eq!(j.judge("t", &tcp(false), t0 + 6 * s), H(false, false));
        assert_eq!(j.judge("t", &tcp(false), t0 + 7 * s), H(false, false));
        assert_eq!(j.judge("t", &tcp(false), t0 + 8 * s), H(false, true));
    }

    #[test]
    fn failures_after_the_grace_period_count_without_a_success() {
        let t0 = Instant::now();
        let mut j = HealthJudge::new(&hc(1.0, 2), t0).unwrap();
        assert_eq!(j.judge("t", &tcp(false), t0), Verdict::Quiet);
        let late = t0 + Duration::from_secs(2);
        assert_eq!(j.judge("t", &tcp(false), late), H(false, false));
        assert_eq!(j.judge("t", &Err("timed out".into()), late), H(false, true));
        // A zero grace period hides nothing.
        let mut j = HealthJudge::new(&hc(0.0, 1), t0).unwrap();
        assert_eq!(j.judge("t", &tcp(false), t0), H(false, true));
    }

    #[test]
    fn http_codes_from_200_to_399_are_healthy() {
        for (code, ok) in [
            (199, false),
            (200, true),
            (302, true),
            (399, true),
            (400, false),
        ] {
            assert_eq!(
                HealthJudge::failure_of(&http(code)).is_none(),
                ok,
                "HTTP {code}"
            );
        }
    }

    #[test]
    fn checks_report_changes_and_errors_as_the_empty_status() {
        let empty = empty_of(check_info::Type::Http).unwrap();
        let mut j = CheckJudge::new(empty);
        assert_eq!(j.judge("t", &Err("refused".into())), Verdict::Quiet);
        assert_eq!(j.judge("t", &http(500)), Verdict::Check(http(500).unwrap()));
        assert_eq!(j.judge("t", &http(500)), Verdict::Quiet);
        assert_eq!(j.judge("t", &http(200)), Verdict::Check(http(200).unwrap()));
        assert_eq!(j.judge("t", &Err("timeout".into())), Verdict::Check(empty));
    }

    #[test]
    fn validation_follows_mesos() {
        let mut h = hc(1.0, 1);
        h.r#type = Some(health_check::Type::Http as i32);
        assert!(health_probe(&h).unwrap_err().contains("'http'"));
        h.http = Some(health_check::HttpCheckInfo {
            port: 8080,
            path: Some("health".into()),
            scheme: None,
            statuses: vec![],
            protocol: None,
        });
        assert!(health_probe(&h)
            .unwrap_err()
            .contains("must start with '/'"));
        h.http.as_mut().unwrap().path = Some("/health".into());
        let (p, t) = health_probe(&h).unwrap();
        assert_eq!(p.url(), "http://127.0.0.1:8080/health");
        assert_eq!(t.delay, Duration::from_secs(15));
        assert_eq!(t.interval, Duration::from_secs(10));
        assert_eq!(t.timeout, Some(Duration::from_secs(20)));
        h.http.as_mut().unwrap().scheme = Some("ftp".into());
        assert!(health_probe(&h).unwrap_err().contains("'ftp'"));
        h.http.as_mut().unwrap().scheme = Some("https".into());
        h.http.as_mut().unwrap().protocol = Some(network_info::Protocol::IPv6 as i32);
        h.timeout_seconds = Some(0.0);
        let (p, t) = health_probe(&h).unwrap();
        assert_eq!(p.url(), "https://[::1]:8080/health");
        assert_eq!(t.timeout, None);
        h.delay_seconds = Some(-1.0);
        assert!(health_probe(&h).unwrap_err().contains("delay_seconds"));
    }
}
