//! The event loop (on the `current_thread` runtime): it owns the [`AgentLink`] and the
//! [`Tasks`], routes agent events, child exits, timers and the results of background work to
//! them, and decides when the executor exits (SHUTDOWN, giving up on the agent, drop-in's one
//! task acknowledged, custom mode's idle timeout, the ACK fail-safe).

use std::sync::Arc;
use std::time::{Duration, Instant};

use croupier_proto::v1::executor::{event, Event};
use tokio::signal::unix::{signal, SignalKind};

use crate::agent_link::{AgentLink, Happened, LinkInput};
use crate::config::Config;
use crate::fetcher::FetchConfig;
use crate::process;
use crate::task::{Stopping, Tasks};

pub use crate::agent_link::{HEARTBEAT_INTERVAL, REGISTRATION_WINDOW};
pub use crate::task::{FetchFigures, DEFAULT_KILL_GRACE};

/// Kept back from the shutdown grace period to report TASK_KILLED before the agent destroys us.
pub const SHUTDOWN_MARGIN: Duration = Duration::from_secs(2);

/// Why the executor is going away without the agent's blessing.
struct Abandon {
    code: i32,
    reason: String,
}

/// The executor state machine.
pub struct Executor {
    cfg: Arc<Config>,
    link: AgentLink,
    tasks: Tasks,
    /// SHUTDOWN began at the first instant; exit by the second at the latest.
    shutdown: Option<(Instant, Instant)>,
    abandon: Option<Abandon>,
}

impl Executor {
    /// `tls`: the client for an agent that talks https (`LIBPROCESS_SSL_ENABLED`).
    pub fn new(
        cfg: Config,
        fetch_cfg: FetchConfig,
        tls: Option<Arc<crate::tls::AgentTls>>,
    ) -> Executor {
        let cfg = Arc::new(cfg);
        Executor {
            link: AgentLink::new(cfg.clone(), tls),
            tasks: Tasks::new(cfg.clone(), fetch_cfg),
            cfg,
            shutdown: None,
            abandon: None,
        }
    }

    /// Run until the executor should exit; returns the process exit code.
    pub async fn run(mut self) -> i32 {
        let mut sigchld = match signal(SignalKind::child()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!("cannot watch SIGCHLD ({e}); polling for exits every 100ms");
                None
            }
        };
        let mut sigterm = signal(SignalKind::terminate()).ok();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                Some(input) = self.link.recv() => self.on_link(input),
                Some(input) = self.tasks.recv() => self.tasks.handle(input, &mut self.link),
                _ = async { match sigchld.as_mut() { Some(s) => { s.recv().await; } None => tokio::time::sleep(Duration::from_millis(100)).await } } => self.tasks.reap(&mut self.link),
                _ = async { match sigterm.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending::<()>().await } } => {
                    tracing::info!("received SIGTERM: shutting down");
                    self.begin_shutdown();
                }
                _ = tokio::time::sleep_until(deadline.into()) => {}
                _ = tick.tick() => self.tasks.reap(&mut self.link),
            }
            if self.tasks.has_pending_spawns() {
                // Forking and waiting for exec takes a while; let the call loop (and the
                // connection task under it) write the queued TASK_STARTING updates first. On
                // the current_thread runtime this yield runs every ready task before we resume.
                tokio::task::yield_now().await;
                self.tasks.spawn_pending(&mut self.link);
            }
            self.on_timers();
            if let Some(code) = self.exit_code() {
                self.finish();
                return code;
            }
        }
    }

    // ----- inputs -----------------------------------------------------------------------

    fn on_link(&mut self, input: LinkInput) {
        match self.link.handle(input) {
            Happened::Nothing => {}
            Happened::Subscribed => self.tasks.agent_connected(true),
            Happened::Acked(settled) => self.tasks.acknowledged(&settled),
            Happened::Lost(error) => {
                self.tasks.agent_connected(false);
                if let Some(reason) = self.link.lost(error, self.shutdown.is_some()) {
                    self.abandon(1, reason);
                }
            }
            Happened::Event(ev) => self.on_event(*ev),
        }
    }

    fn on_event(&mut self, ev: Event) {
        let ty = ev
            .r#type
            .and_then(|t| event::Type::try_from(t).ok())
            .unwrap_or(event::Type::Unknown);
        match ty {
            event::Type::Launch => match ev.launch {
                Some(l) => self.tasks.launch(&mut self.link, l.task, None),
                None => tracing::warn!("LAUNCH event without a task; ignored"),
            },
            event::Type::LaunchGroup => match ev.launch_group {
                Some(_) if self.cfg.is_drop_in() => {
                    tracing::error!(
                        "LAUNCH_GROUP is not supported by the command executor: shutting down"
                    );
                    self.begin_shutdown();
                }
                Some(g) => self.tasks.launch_group(&mut self.link, g.task_group.tasks),
                None => tracing::warn!("LAUNCH_GROUP event without a task group; ignored"),
            },
            event::Type::Kill => match ev.kill {
                Some(k) => {
                    self.tasks
                        .on_kill(&mut self.link, &k.task_id.value, k.kill_policy.as_ref())
                }
                None => tracing::warn!("KILL event without a task id; ignored"),
            },
            event::Type::Message => {
                let len = ev.message.map(|m| m.data.len()).unwrap_or(0);
                tracing::info!("received a framework MESSAGE of {len} bytes (ignored)");
            }
            event::Type::Error => {
                tracing::error!(
                    "agent sent ERROR: {}",
                    ev.error.map(|e| e.message).unwrap_or_default()
                );
            }
            event::Type::Shutdown => {
                tracing::info!("received SHUTDOWN");
                self.begin_shutdown();
            }
            // SUBSCRIBED, ACKNOWLEDGED and HEARTBEAT are the link's own.
            event::Type::Subscribed | event::Type::Acknowledged | event::Type::Heartbeat => {}
            event::Type::Unknown => {
                tracing::warn!("ignoring an event of unknown type {:?}", ev.r#type)
            }
        }
    }

    // ----- going away -------------------------------------------------------------------

    /// Give up: kill every task quickly and exit with `code` once they are gone.
    fn abandon(&mut self, code: i32, reason: String) {
        if self.abandon.is_none() {
            self.abandon = Some(Abandon { code, reason });
        }
        self.link.close();
        self.tasks.set_stopping(Stopping::Abandon);
        let budget = self.shutdown_budget();
        self.tasks.kill_all(&mut self.link, budget);
    }

    fn shutdown_budget(&self) -> Duration {
        let g = self.cfg.shutdown_grace;
        if g > SHUTDOWN_MARGIN * 2 {
            g - SHUTDOWN_MARGIN
        } else {
            g / 2
        }
    }

    fn begin_shutdown(&mut self) {
        if self.shutdown.is_some() {
            return;
        }
        let now = Instant::now();
        let deadline = now
            + self
                .cfg
                .shutdown_grace
                .saturating_sub(Duration::from_millis(500));
        self.shutdown = Some((now, deadline));
        self.link.shutting_down();
        self.tasks.set_stopping(Stopping::Shutdown);
        let budget = self.shutdown_budget();
        tracing::info!("shutting down: killing all tasks within {budget:?}");
        self.tasks.kill_all(&mut self.link, budget);
    }

    // ----- timers, exit -------------------------------------------------------------------

    fn next_deadline(&self) -> Instant {
        let mut d = Instant::now() + Duration::from_secs(1);
        let idle = self
            .tasks
            .idle_since()
            .zip(self.cfg.idle_timeout)
            .map(|(since, idle)| since + idle);
        for x in [
            self.link.next_deadline(),
            self.tasks.next_deadline(),
            self.shutdown.map(|s| s.1),
            idle,
        ]
        .into_iter()
        .flatten()
        {
            d = d.min(x);
        }
        d
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        self.tasks.on_timers(&mut self.link, now);
        if let Some(reason) = self.link.on_timers(now, self.abandon.is_some()) {
            self.abandon(1, reason);
        }
    }

    fn exit_code(&mut self) -> Option<i32> {
        let now = Instant::now();
        if let Some(a) = &self.abandon {
            if self.tasks.all_done() {
                tracing::error!("exiting: {}", a.reason);
                return Some(a.code);
            }
            return None;
        }
        if let Some((_, deadline)) = self.shutdown {
            if self.tasks.all_done() && self.link.pending_updates() == 0 {
                tracing::info!("shutdown complete");
                return Some(0);
            }
            if now >= deadline {
                tracing::warn!(
                    "shutdown grace period over: exiting with {} unacknowledged update(s)",
                    self.link.pending_updates()
                );
                return Some(0);
            }
            return None;
        }
        if self.tasks.drop_in_complete() {
            tracing::info!("terminal update acknowledged: exiting");
            return Some(0);
        }
        if self.link.ack_overdue(now) && self.tasks.all_done() && self.wants_exit_after_acks() {
            tracing::error!("Did not receive ACK for the terminal status update from the agent");
            return Some(1);
        }
        if let (Some(since), Some(idle)) = (self.tasks.idle_since(), self.cfg.idle_timeout) {
            if self.tasks.all_done() && now >= since + idle && self.link.pending_updates() == 0 {
                tracing::info!("no task for {idle:?}: exiting (CROUPIER_EXECUTOR_IDLE_TIMEOUT)");
                return Some(0);
            }
        }
        None
    }

    /// Would the executor exit as soon as its pending updates are acknowledged?
    fn wants_exit_after_acks(&self) -> bool {
        (self.cfg.is_drop_in() && self.tasks.drop_in_launched())
            || self
                .tasks
                .idle_since()
                .zip(self.cfg.idle_timeout)
                .is_some_and(|(s, i)| Instant::now() >= s + i)
    }

    /// Last sweep before exiting: nothing of ours outlives us.
    fn finish(&mut self) {
        self.link.close();
        let n = process::kill_all_descendants();
        if n > 0 {
            tracing::info!("killed {n} remaining descendant process(es) before exiting");
        }
        std::thread::sleep(Duration::from_millis(20));
        process::reap_all();
    }
}
