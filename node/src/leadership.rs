//! The coordinator runs on the leader only: started when this member leads,
//! stopped when it does not, or when no quorum confirms it still leads.
//!
//! [`LeadershipCore`] decides (pure); [`follow_leadership`] watches Raft's
//! metrics, asks the quorum, and starts and stops the actor.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorRef, ActorStatus};
use tracing::{info, warn};

use streamreel_actors::coordinator::{Coordinator, CoordinatorArgs, CoordinatorMsg};
use streamreel_cluster::{ClusterMember, leader_in};

use crate::config::NodeConfig;

/// How long a leader waits for a quorum to confirm it.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a leader asks: Raft metrics change with every applied entry, so
/// the loop wakes many times a second under load, and each check changes the
/// metrics again.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Unconfirmed checks in a row before the coordinator stops: one slow answer
/// on a loaded machine is not a lost quorum.
const UNCONFIRMED_LIMIT: u32 = 2;

/// The coordinator as the follower last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoordinatorSeen {
    None,
    Running,
    Dead,
}

/// What the follower does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Start,
    /// Forget a coordinator that died, then look again (which starts one).
    Forget,
    /// Stop the coordinator: this member no longer leads.
    StepDown,
    /// Ask a quorum whether this member still leads; then [`LeadershipCore::confirmed`].
    CheckQuorum,
    Wait,
}

#[derive(Debug, Default)]
pub struct LeadershipCore {
    unconfirmed: u32,
    last_check: Option<Instant>,
}

impl LeadershipCore {
    pub fn observe(&mut self, leading: bool, coordinator: CoordinatorSeen, now: Instant) -> Step {
        match (leading, coordinator) {
            (true, CoordinatorSeen::None) => {
                // The first quorum check comes a period after the start, and
                // counts afresh: a slow check of an earlier leadership must
                // not make one slow check stop this one.
                self.last_check = Some(now);
                self.unconfirmed = 0;
                Step::Start
            }
            (_, CoordinatorSeen::Dead) => Step::Forget,
            (false, CoordinatorSeen::Running) => Step::StepDown,
            (true, CoordinatorSeen::Running)
                if self
                    .last_check
                    .is_none_or(|last| now.duration_since(last) >= CHECK_EVERY) =>
            {
                self.last_check = Some(now);
                Step::CheckQuorum
            }
            _ => Step::Wait,
        }
    }

    /// The quorum's answer to [`Step::CheckQuorum`]: true when the
    /// coordinator must stop. openraft 0.9 keeps a leader cut off from the
    /// others leading in its own eyes, while the new leader runs its own.
    pub fn confirmed(&mut self, confirmed: bool) -> bool {
        self.unconfirmed = if confirmed { 0 } else { self.unconfirmed + 1 };
        if self.unconfirmed >= UNCONFIRMED_LIMIT {
            self.unconfirmed = 0;
            return true;
        }
        false
    }
}

/// What the coordinator is started with.
pub struct CoordinatorTemplate {
    pub lake_dir: PathBuf,
    pub config: NodeConfig,
    pub jobs_runtime: tokio::runtime::Handle,
}

/// Runs the coordinator while this member is the leader, and stops it (which
/// cancels its running jobs) as soon as it is not. Returns only when Raft
/// shuts down.
pub async fn follow_leadership(
    member: ClusterMember,
    slot: Arc<Mutex<Option<ActorRef<CoordinatorMsg>>>>,
    template: CoordinatorTemplate,
) {
    let mut metrics = member.raft.metrics();
    let mut core = LeadershipCore::default();
    let issued_run_ids = Arc::new(AtomicU64::new(0));
    loop {
        let leading = leader_in(&metrics.borrow_and_update(), member.id) == Some(member.id);
        let running = slot.lock().expect("coordinator lock").clone();
        let seen = match &running {
            None => CoordinatorSeen::None,
            Some(coordinator)
                if matches!(
                    coordinator.get_status(),
                    ActorStatus::Stopped | ActorStatus::Stopping
                ) =>
            {
                CoordinatorSeen::Dead
            }
            Some(_) => CoordinatorSeen::Running,
        };
        let stop = || {
            if let Some(coordinator) = &running {
                coordinator.stop(None);
            }
            *slot.lock().expect("coordinator lock") = None;
        };
        match core.observe(leading, seen, Instant::now()) {
            Step::Start => {
                let config = &template.config;
                let args = CoordinatorArgs {
                    lake_dir: template.lake_dir.clone(),
                    metadata: config.metadata.clone(),
                    schedule: config.jobs,
                    cluster: member.clone(),
                    heartbeat: Duration::from_millis(config.cluster.heartbeat_ms),
                    jobs_runtime: template.jobs_runtime.clone(),
                    issued_run_ids: issued_run_ids.clone(),
                };
                match Actor::spawn(None, Coordinator, args).await {
                    Ok((coordinator, _)) => {
                        info!(node = member.id, "leader: coordinator started");
                        *slot.lock().expect("coordinator lock") = Some(coordinator);
                        let finishing = member.clone();
                        tokio::spawn(async move { finishing.finish_voter_change().await });
                    }
                    Err(e) => warn!(error = %e, "coordinator failed to start; retrying"),
                }
            }
            Step::Forget => {
                warn!(
                    node = member.id,
                    leading, "the coordinator stopped on its own; a leader starts another"
                );
                *slot.lock().expect("coordinator lock") = None;
                continue;
            }
            Step::StepDown => {
                info!(
                    node = member.id,
                    "no longer the leader: stopping the coordinator"
                );
                stop();
            }
            Step::CheckQuorum => {
                // Heartbeats to a quorum only: not waiting for this member to
                // apply what it has committed.
                let confirmed = tokio::time::timeout(CHECK_TIMEOUT, member.raft.get_read_log_id())
                    .await
                    .is_ok_and(|answer| answer.is_ok());
                if core.confirmed(confirmed) {
                    warn!(
                        node = member.id,
                        "no quorum confirms this leader: stopping the coordinator"
                    );
                    stop();
                }
            }
            Step::Wait => {}
        }
        if tokio::time::timeout(Duration::from_secs(1), metrics.changed())
            .await
            .is_ok_and(|changed| changed.is_err())
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_starts_the_coordinator_and_a_follower_stops_it() {
        let mut core = LeadershipCore::default();
        let now = Instant::now();
        assert_eq!(core.observe(true, CoordinatorSeen::None, now), Step::Start);
        assert_eq!(
            core.observe(false, CoordinatorSeen::Running, now),
            Step::StepDown
        );
        assert_eq!(core.observe(false, CoordinatorSeen::None, now), Step::Wait);
        // A dead coordinator is forgotten, leader or not.
        assert_eq!(core.observe(true, CoordinatorSeen::Dead, now), Step::Forget);
        assert_eq!(
            core.observe(false, CoordinatorSeen::Dead, now),
            Step::Forget
        );
    }

    #[test]
    fn a_running_leader_asks_the_quorum_once_a_second_from_its_start() {
        let mut core = LeadershipCore::default();
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(
            core.observe(true, CoordinatorSeen::None, start),
            Step::Start
        );
        let running =
            |core: &mut LeadershipCore, ms| core.observe(true, CoordinatorSeen::Running, at(ms));
        assert_eq!(running(&mut core, 300), Step::Wait);
        assert_eq!(running(&mut core, 1_000), Step::CheckQuorum);
        assert_eq!(running(&mut core, 1_500), Step::Wait);
        assert_eq!(running(&mut core, 2_000), Step::CheckQuorum);
    }

    #[test]
    fn the_coordinator_stops_after_two_unconfirmed_checks_in_a_row() {
        let mut core = LeadershipCore::default();
        assert!(
            !core.confirmed(false),
            "one slow answer is not a lost quorum"
        );
        assert!(!core.confirmed(true));
        assert!(!core.confirmed(false));
        assert!(core.confirmed(false), "twice in a row");
        // Counting starts again after a stop.
        assert!(!core.confirmed(false));
        // ... and at a new leadership.
        let now = Instant::now();
        assert_eq!(core.observe(true, CoordinatorSeen::None, now), Step::Start);
        assert!(
            !core.confirmed(false),
            "one slow answer is not a lost quorum"
        );
    }
}
