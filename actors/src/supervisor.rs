//! Runs a partition actor for every partition the replicated state gives this
//! node, at its epoch, and stops the ones it lost. A failed actor is restarted
//! with exponential backoff per partition, but only while this node still owns
//! the partition at the same epoch; a partition it no longer owns never restarts.
//!
//! Actor set-up (resuming from bronze and the checkpoint) and graceful stops
//! run in their own tasks, outside the supervisor's mailbox, so partitions
//! start and stop concurrently. A shutdown waits for the set-ups in flight
//! too, and stops what they started, so no actor is killed with its batch.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ractor::{
    Actor, ActorId, ActorProcessingErr, ActorRef, ActorStatus, RactorErr, RpcReplyPort, SpawnErr,
    SupervisionEvent,
};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{error, info, warn};

use streamreel_cluster::{Epoch, Ownership};
use streamreel_protocol::error_chain_text;

use crate::context::IngestContext;
use crate::error::ActorError;
use crate::partition_actor::{PartitionActor, PartitionArgs, PartitionMsg, PartitionStatus};
use crate::restart::RestartTracker;

pub enum SupervisorMsg {
    /// The replicated ownership: start what this node owns, stop what it lost.
    Reconcile(Ownership),
    /// A partition actor finished its set-up (or failed it).
    Started {
        partition: i32,
        epoch: Epoch,
        result: Result<ActorRef<PartitionMsg>, String>,
    },
    /// Start a partition again after a failure, if still owned at `epoch`.
    Retry {
        partition: i32,
        epoch: Epoch,
    },
    Status(RpcReplyPort<Vec<PartitionStatus>>),
    /// Stop every partition actor gracefully (each commits what it consumed).
    Shutdown(RpcReplyPort<()>),
}

pub struct SupervisorArgs {
    pub context: Arc<IngestContext>,
}

pub struct IngestSupervisor;

enum Slot {
    Starting {
        epoch: Epoch,
        /// The set-up task; it yields the actor it started, which a shutdown
        /// must stop.
        setup: JoinHandle<Option<ActorRef<PartitionMsg>>>,
    },
    /// Failed; waits out its backoff before the `Retry`. Holding the slot
    /// keeps `reconcile` (every ownership update, at least once a second)
    /// from starting it again at once.
    BackingOff { epoch: Epoch },
    Running {
        epoch: Epoch,
        actor: ActorRef<PartitionMsg>,
        started: Instant,
    },
}

impl Slot {
    fn epoch(&self) -> Epoch {
        match self {
            Slot::Starting { epoch, .. }
            | Slot::BackingOff { epoch }
            | Slot::Running { epoch, .. } => *epoch,
        }
    }
}

pub struct SupervisorState {
    context: Arc<IngestContext>,
    owned: Ownership,
    slots: HashMap<i32, Slot>,
    by_actor: HashMap<ActorId, i32>,
    restarts: HashMap<i32, RestartTracker>,
    /// Why actors ended before their set-up reported back (supervision
    /// events overtake the `Started` message), so that the restart can name
    /// the cause, and whether it failed; entries nobody asks for are
    /// dropped after a minute.
    ended_early: HashMap<ActorId, EndedEarly>,
    /// Stops of released partitions, which a shutdown waits for too.
    releasing: JoinSet<()>,
    shutting_down: bool,
}

/// An actor's end reported before its set-up was.
struct EndedEarly {
    at: Instant,
    reason: String,
    failed: bool,
}

/// How long a graceful stop may take per partition (one batch interval plus a commit).
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

impl Actor for IngestSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            context: args.context,
            owned: Ownership::new(),
            slots: HashMap::new(),
            by_actor: HashMap::new(),
            restarts: HashMap::new(),
            ended_early: HashMap::new(),
            releasing: JoinSet::new(),
            shutting_down: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        message: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Reconcile(_) | SupervisorMsg::Retry { .. } if state.shutting_down => {}
            SupervisorMsg::Reconcile(ownership) => {
                state.owned = ownership;
                state.reconcile(&myself);
            }
            SupervisorMsg::Started {
                partition,
                epoch,
                result,
            } => state.on_started(&myself, partition, epoch, result),
            SupervisorMsg::Retry { partition, epoch } => {
                let waited = matches!(
                    state.slots.get(&partition),
                    Some(Slot::BackingOff { epoch: e }) if *e == epoch
                );
                if waited && state.owns(partition) == Some(epoch) {
                    state.start(&myself, partition, epoch);
                }
            }
            SupervisorMsg::Status(reply) => {
                let actors: Vec<_> = state
                    .slots
                    .values()
                    .filter_map(|slot| match slot {
                        Slot::Running { actor, .. } => Some(actor.clone()),
                        Slot::Starting { .. } | Slot::BackingOff { .. } => None,
                    })
                    .collect();
                tokio::spawn(async move {
                    let mut statuses = Vec::new();
                    for actor in actors {
                        if let Ok(status) = ractor::call_t!(actor, PartitionMsg::Status, 5_000) {
                            statuses.push(status);
                        }
                    }
                    statuses.sort_by_key(|s| s.partition);
                    let _ = reply.send(statuses);
                });
            }
            SupervisorMsg::Shutdown(reply) => {
                state.shutting_down = true;
                let all_stats = state.context.stats.clone();
                let stops = state.slots.drain().map(|(partition, slot)| {
                    let stats = all_stats.partition(partition);
                    async move {
                        let actor = match slot {
                            Slot::Running { actor, .. } => Some(actor),
                            Slot::Starting { setup, .. } => finish_setup(partition, setup).await,
                            Slot::BackingOff { .. } => None,
                        };
                        // A stop that timed out may leave its batch uncommitted.
                        if let Some(actor) = actor
                            && !stop(partition, actor).await
                        {
                            stats.uncommitted.lost_unknown();
                        }
                    }
                });
                futures::future::join_all(stops).await;
                while state.releasing.join_next().await.is_some() {}
                // A released actor whose stop timed out may fail later and
                // flag its batch; the partition's new owner reads it again.
                for (partition, stats) in all_stats.snapshot() {
                    if state.owns(partition).is_none() {
                        stats.uncommitted.handed_over();
                    }
                }
                let _ = reply.send(());
            }
        }
        state.publish_running();
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        // Overridden so that a child's end never stops the supervisor itself.
        let (cell, reason, failed) = match event {
            SupervisionEvent::ActorFailed(cell, error) => (cell, error.to_string(), true),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "stopped".into()), false)
            }
            _ => return Ok(()),
        };
        state.on_actor_end(&myself, cell, reason, failed);
        state.publish_running();
        Ok(())
    }
}

impl SupervisorState {
    /// Marks in each partition's stats whether its actor runs now.
    fn publish_running(&self) {
        for (partition, stats) in self.context.stats.snapshot() {
            let running = matches!(self.slots.get(&partition), Some(Slot::Running { .. }));
            stats.running.store(running, Ordering::Relaxed);
        }
    }

    /// A partition actor ended: restarted (after its backoff) if this node
    /// still owns the partition at its epoch.
    fn on_actor_end(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        cell: ractor::ActorCell,
        reason: String,
        failed: bool,
    ) {
        let Some(partition) = self.by_actor.remove(&cell.get_id()) else {
            // Released already, or not yet recorded as running (`on_started`
            // restarts it then, and takes the reason from here).
            if failed {
                warn!(actor = %cell.get_id(), %reason, "a partition actor not recorded as running failed");
            }
            self.ended_early
                .retain(|_, ended| ended.at.elapsed() < Duration::from_secs(60));
            self.ended_early.insert(
                cell.get_id(),
                EndedEarly {
                    at: Instant::now(),
                    reason,
                    failed,
                },
            );
            return;
        };
        if failed {
            self.context.stats.partition(partition).actor_failed();
        }
        let Some(Slot::Running { epoch, started, .. }) = self.slots.remove(&partition) else {
            return;
        };
        if self.shutting_down {
            return;
        }
        if self.owns(partition) != Some(epoch) {
            info!(partition, epoch, %reason, "partition actor ended; the partition moved away");
            self.handed_over(partition);
            return;
        }
        self.schedule_retry(myself, partition, epoch, started.elapsed(), &reason);
    }

    /// The epoch at which this node owns `partition`, if it does.
    fn owns(&self, partition: i32) -> Option<Epoch> {
        match self.owned.get(&partition) {
            Some((Some(owner), epoch)) if *owner == self.context.cluster.id => Some(*epoch),
            _ => None,
        }
    }

    fn reconcile(&mut self, myself: &ActorRef<SupervisorMsg>) {
        let lost: Vec<i32> = self
            .slots
            .iter()
            .filter(|(partition, slot)| self.owns(**partition) != Some(slot.epoch()))
            .map(|(partition, _)| *partition)
            .collect();
        for partition in lost {
            match self.slots.remove(&partition) {
                Some(Slot::Running { actor, epoch, .. }) => {
                    info!(partition, epoch, "releasing partition");
                    self.by_actor.remove(&actor.get_id());
                    self.release(partition, actor);
                }
                // Nothing to stop: a failed actor waiting out its backoff.
                Some(Slot::BackingOff { .. }) => self.handed_over(partition),
                // Kept until its set-up reports back (`on_started` releases
                // it then), so that the partition does not start twice.
                Some(starting @ Slot::Starting { .. }) => {
                    self.slots.insert(partition, starting);
                }
                None => {}
            }
        }
        let owned: Vec<(i32, Epoch)> = self
            .owned
            .keys()
            .filter_map(|p| self.owns(*p).map(|e| (*p, e)))
            .collect();
        for (partition, epoch) in owned {
            if !self.slots.contains_key(&partition) {
                self.start(myself, partition, epoch);
            }
        }
    }

    fn start(&mut self, myself: &ActorRef<SupervisorMsg>, partition: i32, epoch: Epoch) {
        info!(partition, epoch, "assigning partition");
        let args = PartitionArgs {
            partition,
            epoch,
            context: self.context.clone(),
        };
        let supervisor = myself.clone();
        let setup = tokio::spawn(async move {
            let result = Actor::spawn_linked(None, PartitionActor, args, supervisor.get_cell())
                .await
                .map(|(actor, _)| actor)
                .map_err(|e| startup_failure_text(&e));
            let started = result.as_ref().ok().cloned();
            let _ = supervisor.cast(SupervisorMsg::Started {
                partition,
                epoch,
                result,
            });
            started
        });
        self.slots
            .insert(partition, Slot::Starting { epoch, setup });
    }

    /// Stops a partition this node no longer owns at the actor's epoch; a
    /// new owner reads again whatever the stop fails to commit.
    fn release(&mut self, partition: i32, actor: ActorRef<PartitionMsg>) {
        self.handed_over(partition);
        let moved = self.owns(partition).is_none();
        let stats = self.context.stats.partition(partition);
        while self.releasing.try_join_next().is_some() {}
        self.releasing.spawn(async move {
            stop(partition, actor).await;
            if moved {
                stats.uncommitted.handed_over();
            }
        });
    }

    /// The partition moved to another owner, which reads again what this
    /// node's actors consumed and did not commit: not lost at this node's
    /// stop. (Owned here at a newer epoch, it is still this node's to commit.)
    fn handed_over(&self, partition: i32) {
        if self.owns(partition).is_none() {
            self.context
                .stats
                .partition(partition)
                .uncommitted
                .handed_over();
        }
    }

    fn on_started(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        partition: i32,
        epoch: Epoch,
        result: Result<ActorRef<PartitionMsg>, String>,
    ) {
        if self.shutting_down {
            // The shutdown waited for this set-up and stopped its actor.
            return;
        }
        let expected = matches!(
            self.slots.get(&partition),
            Some(Slot::Starting { epoch: e, .. }) if *e == epoch
        );
        // Supervision events overtake ordinary messages, so an actor that
        // failed straight after starting reported its end before this message
        // and was ignored then: it must be restarted here.
        let result = result.and_then(|actor| {
            if actor.get_status() < ActorStatus::Stopping {
                return Ok(actor);
            }
            let ended = self.ended_early.remove(&actor.get_id());
            // Its end was not counted then: a failure (or an end of unknown
            // cause) leaves what it consumed beyond its commit out of bronze.
            if ended.as_ref().is_none_or(|ended| ended.failed) {
                self.context.stats.partition(partition).actor_failed();
            }
            Err(match ended {
                Some(ended) => format!("it ended straight after it started: {}", ended.reason),
                None => "it ended straight after it started (the log has why)".to_string(),
            })
        });
        match result {
            Ok(actor) if expected && self.owns(partition) == Some(epoch) => {
                info!(partition, epoch, actor = %actor.get_id(), "partition actor running");
                self.by_actor.insert(actor.get_id(), partition);
                self.slots.insert(
                    partition,
                    Slot::Running {
                        epoch,
                        actor,
                        started: Instant::now(),
                    },
                );
            }
            Ok(actor) => {
                // Released while it was starting.
                if expected {
                    self.slots.remove(&partition);
                }
                self.release(partition, actor);
                self.reconcile(myself);
            }
            Err(reason) => {
                if expected {
                    self.slots.remove(&partition);
                }
                if self.owns(partition) == Some(epoch) {
                    self.schedule_retry(myself, partition, epoch, Duration::ZERO, &reason);
                } else {
                    self.handed_over(partition);
                    self.reconcile(myself);
                }
            }
        }
    }

    fn schedule_retry(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        partition: i32,
        epoch: Epoch,
        ran_for: Duration,
        reason: &str,
    ) {
        let delay = self
            .restarts
            .entry(partition)
            .or_default()
            .on_failure(&self.context.restart, ran_for);
        let stats = self.context.stats.partition(partition);
        stats.restarts.fetch_add(1, Ordering::Relaxed);
        *stats.last_error.lock().expect("stats lock") = Some(reason.to_string());
        error!(partition, epoch, %reason, delay_ms = delay.as_millis() as u64, "partition actor ended; restarting");
        self.slots.insert(partition, Slot::BackingOff { epoch });
        myself.send_after(delay, move || SupervisorMsg::Retry { partition, epoch });
    }
}

/// Why a partition actor did not start. ractor's own text calls every
/// startup failure a panic, even an error the actor returned (fenced, broker
/// unreachable, missing offsets), which the operator must read as itself.
fn startup_failure_text(error: &SpawnErr) -> String {
    match error {
        SpawnErr::StartupFailed(inner) => match inner.downcast_ref::<ActorError>() {
            Some(e) => error_chain_text(e),
            // A panic in `pre_start` (its message) or ractor's own failure.
            None => format!(
                "could not start (panicked or failed): {}",
                error_chain_text(inner.as_ref())
            ),
        },
        other => other.to_string(),
    }
}

/// Waits for a set-up in flight at shutdown; the actor it started, if any.
async fn finish_setup(
    partition: i32,
    setup: JoinHandle<Option<ActorRef<PartitionMsg>>>,
) -> Option<ActorRef<PartitionMsg>> {
    let mut setup = setup;
    match tokio::time::timeout(STOP_TIMEOUT, &mut setup).await {
        Ok(Ok(actor)) => actor,
        Ok(Err(e)) => {
            warn!(partition, error = %e, "a partition set-up task failed");
            None
        }
        // Set-up (the actor's `pre_start`, run in this task) reads no
        // events: cancelled, it leaves nothing behind.
        Err(_) => {
            warn!(
                partition,
                "a partition set-up did not finish before the shutdown's timeout; cancelled"
            );
            setup.abort();
            None
        }
    }
}

/// Stops a partition actor (which commits its batch); false when it did not
/// stop in time. An actor that had ended already has recorded itself
/// whether it left a batch uncommitted.
async fn stop(partition: i32, actor: ActorRef<PartitionMsg>) -> bool {
    match actor.stop_and_wait(None, Some(STOP_TIMEOUT)).await {
        Ok(()) => true,
        Err(RactorErr::Timeout) => {
            warn!(partition, "partition actor did not stop in time");
            false
        }
        Err(e) => {
            info!(partition, error = %e, "partition actor had ended before its stop");
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_the_actor_returned_is_not_called_a_panic() {
        let fenced = SpawnErr::StartupFailed(Box::new(ActorError::Fenced {
            partition: 3,
            epoch: 4,
            found: 5,
        }));
        let text = startup_failure_text(&fenced);
        assert!(
            text.starts_with("partition 3: epoch 4 is fenced by epoch 5"),
            "{text}"
        );
        assert!(!text.contains("panicked"), "{text}");
        let panic = SpawnErr::StartupFailed("index out of bounds".into());
        assert_eq!(
            startup_failure_text(&panic),
            "could not start (panicked or failed): index out of bounds"
        );
    }
}
