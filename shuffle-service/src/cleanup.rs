//! When an application's shuffle files may be deleted: a pure function of what its driver's
//! heartbeats say, what the Mesos agent says about its framework, and time.
//!
//! In Spark on Mesos the application id is the framework id, and the agent next to this service
//! knows whether that framework still runs here. Heartbeats alone (Spark's rule) are a poor
//! proxy: a driver never re-opens its heartbeat connection, so after a service restart a live
//! application goes silent for good; and an application whose driver never registered would be
//! kept forever.

use std::time::{Duration, Instant};

/// The heartbeat side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// No RegisterDriver was ever received for the app (only executors registered).
    NeverRegistered,
    /// Heartbeats arrive within the driver's timeout.
    Heartbeating,
    /// No heartbeat for longer than the driver's timeout.
    Silent,
}

/// The agent's answer about the app's framework.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    /// Cleanup by heartbeats only (`croupier.mesos.agent.address=none`): the agent is not asked.
    NotAsked,
    /// Listed among the agent's active frameworks.
    Active,
    /// Listed among the agent's completed frameworks only.
    Completed,
    /// Listed in neither.
    Unknown,
    /// The agent could not be asked (refused, timed out, answered an error).
    Unreachable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The driver heartbeats.
    Heartbeating,
    /// Heartbeat-only mode and no driver ever registered (Spark keeps such files forever).
    NoDriver,
    /// The agent reports the framework active.
    FrameworkActive,
    /// The agent could not be asked: never delete on that.
    AgentUnreachable,
    /// The agent reports the framework gone, not yet for a whole confirmation interval.
    Confirming { remaining: Duration },
    /// The master does not know the framework: the appId may not be a framework id (a
    /// standalone or local application), the master may have forgotten it after a failover, or
    /// the principal may not be allowed to see it. None of that proves it ended.
    FrameworkUnknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delete {
    /// Heartbeat-only mode and the driver went silent (Spark's rule).
    HeartbeatTimeout,
    /// The master reported the framework completed (removed for good) for at least the
    /// confirmation interval.
    FrameworkCompleted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Keep(Keep),
    Delete(Delete),
}

/// What the cleaner remembers about an app between rounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Track {
    /// When the agent was first seen reporting the framework gone (completed or unknown),
    /// with no report of it active since.
    pub gone_since: Option<Instant>,
}

/// Decides one app's fate at `now`. Returns the action and the tracking state for next round.
///
/// | driver          | agent          | action                                            |
/// |-----------------|----------------|---------------------------------------------------|
/// | heartbeating    | anything       | keep                                              |
/// | silent          | not asked      | delete (heartbeat timeout, Spark's rule)          |
/// | never registered| not asked      | keep (Spark's rule)                               |
/// | silent / never  | active         | keep, forget any "gone" observation               |
/// | silent / never  | unreachable    | keep, retry next round                            |
/// | silent / never  | unknown        | keep: not knowing a framework proves nothing      |
/// | silent / never  | completed      | keep until completed for `confirm`, then delete   |
pub fn decide(
    driver: Driver,
    agent: Agent,
    track: Track,
    now: Instant,
    confirm: Duration,
) -> (Action, Track) {
    use Action::{Delete as D, Keep as K};
    if driver == Driver::Heartbeating {
        return (K(Keep::Heartbeating), Track::default());
    }
    match agent {
        Agent::NotAsked => match driver {
            Driver::Silent => (D(Delete::HeartbeatTimeout), Track::default()),
            _ => (K(Keep::NoDriver), Track::default()),
        },
        Agent::Active => (K(Keep::FrameworkActive), Track::default()),
        Agent::Unreachable => (K(Keep::AgentUnreachable), track),
        Agent::Unknown => (K(Keep::FrameworkUnknown), Track::default()),
        Agent::Completed => {
            let since = track.gone_since.unwrap_or(now);
            let gone_for = now.saturating_duration_since(since);
            let next = Track {
                gone_since: Some(since),
            };
            if gone_for >= confirm {
                (D(Delete::FrameworkCompleted), next)
            } else {
                (
                    K(Keep::Confirming {
                        remaining: confirm - gone_for,
                    }),
                    next,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: Duration = Duration::from_secs(60);

    fn gone_at(t: Instant) -> Track {
        Track {
            gone_since: Some(t),
        }
    }

    #[test]
    fn the_table() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(30);
        let t2 = t0 + C;
        use Action::*;
        use Agent as A;
        use Driver as Dr;
        let none = Track::default();
        // (driver, agent, track, now) → (action, track)
        let rows: Vec<(Driver, Agent, Track, Instant, Action, Track)> = vec![
            // A heartbeating driver is kept whatever the agent says, and tracking is reset.
            (
                Dr::Heartbeating,
                A::NotAsked,
                none,
                t0,
                Keep(super::Keep::Heartbeating),
                none,
            ),
            (
                Dr::Heartbeating,
                A::Completed,
                gone_at(t0),
                t2,
                Keep(super::Keep::Heartbeating),
                none,
            ),
            (
                Dr::Heartbeating,
                A::Unknown,
                none,
                t2,
                Keep(super::Keep::Heartbeating),
                none,
            ),
            (
                Dr::Heartbeating,
                A::Unreachable,
                none,
                t2,
                Keep(super::Keep::Heartbeating),
                none,
            ),
            // Heartbeat-only mode: Spark's rule.
            (
                Dr::Silent,
                A::NotAsked,
                none,
                t0,
                Delete(super::Delete::HeartbeatTimeout),
                none,
            ),
            (
                Dr::NeverRegistered,
                A::NotAsked,
                none,
                t2,
                Keep(super::Keep::NoDriver),
                none,
            ),
            // Active framework: kept, even with the driver silent (service restarted).
            (
                Dr::Silent,
                A::Active,
                none,
                t0,
                Keep(super::Keep::FrameworkActive),
                none,
            ),
            (
                Dr::Silent,
                A::Active,
                gone_at(t0),
                t2,
                Keep(super::Keep::FrameworkActive),
                none,
            ),
            (
                Dr::NeverRegistered,
                A::Active,
                none,
                t2,
                Keep(super::Keep::FrameworkActive),
                none,
            ),
            // Unreachable agent: never delete, keep what was observed.
            (
                Dr::Silent,
                A::Unreachable,
                none,
                t2,
                Keep(super::Keep::AgentUnreachable),
                none,
            ),
            (
                Dr::Silent,
                A::Unreachable,
                gone_at(t0),
                t2,
                Keep(super::Keep::AgentUnreachable),
                gone_at(t0),
            ),
            (
                Dr::NeverRegistered,
                A::Unreachable,
                none,
                t2,
                Keep(super::Keep::AgentUnreachable),
                none,
            ),
            // Gone: first observation starts the confirmation interval.
            (
                Dr::Silent,
                A::Completed,
                none,
                t0,
                Keep(super::Keep::Confirming { remaining: C }),
                gone_at(t0),
            ),
            (
                Dr::Silent,
                A::Completed,
                gone_at(t0),
                t1,
                Keep(super::Keep::Confirming {
                    remaining: C - Duration::from_secs(30),
                }),
                gone_at(t0),
            ),
            (
                Dr::Silent,
                A::Completed,
                gone_at(t0),
                t2,
                Delete(super::Delete::FrameworkCompleted),
                gone_at(t0),
            ),
            // Unknown to the master: never deleted, however long.
            (
                Dr::Silent,
                A::Unknown,
                gone_at(t0),
                t1,
                Keep(super::Keep::FrameworkUnknown),
                none,
            ),
            (
                Dr::Silent,
                A::Unknown,
                none,
                t2,
                Keep(super::Keep::FrameworkUnknown),
                none,
            ),
            // An app that never registered a driver is cleaned when its framework completes.
            (
                Dr::NeverRegistered,
                A::Completed,
                none,
                t0,
                Keep(super::Keep::Confirming { remaining: C }),
                gone_at(t0),
            ),
            (
                Dr::NeverRegistered,
                A::Completed,
                gone_at(t0),
                t2,
                Delete(super::Delete::FrameworkCompleted),
                gone_at(t0),
            ),
            (
                Dr::NeverRegistered,
                A::Unknown,
                gone_at(t0),
                t2,
                Keep(super::Keep::FrameworkUnknown),
                none,
            ),
        ];
        for (i, (d, a, tr, now, want, want_track)) in rows.into_iter().enumerate() {
            let got = decide(d, a, tr, now, C);
            assert_eq!(got, (want, want_track), "row {i}: {d:?} × {a:?} × {tr:?}");
        }
    }

    #[test]
    fn an_active_report_restarts_the_confirmation() {
        let t0 = Instant::now();
        let (_, tr) = decide(Driver::Silent, Agent::Completed, Track::default(), t0, C);
        let (_, tr) = decide(Driver::Silent, Agent::Active, tr, t0 + C / 2, C);
        let (a, tr) = decide(Driver::Silent, Agent::Completed, tr, t0 + C, C);
        assert_eq!(a, Action::Keep(Keep::Confirming { remaining: C }));
        let (a, _) = decide(Driver::Silent, Agent::Completed, tr, t0 + 2 * C, C);
        assert_eq!(a, Action::Delete(Delete::FrameworkCompleted));
    }

    #[test]
    fn zero_confirmation_deletes_on_first_report() {
        let t0 = Instant::now();
        let (a, _) = decide(
            Driver::NeverRegistered,
            Agent::Completed,
            Track::default(),
            t0,
            Duration::ZERO,
        );
        assert_eq!(a, Action::Delete(Delete::FrameworkCompleted));
    }
}
