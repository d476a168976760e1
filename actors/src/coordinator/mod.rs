//! The coordinator actor. It runs on the Raft leader only (the node starts it
//! when this member becomes leader and stops it, cancelling running jobs, when
//! leadership is lost). It
//! - gives partitions without a live owner (every member registers the input
//!   topic's partitions, see the node's `partition_discovery`) to live members, and spreads them
//!   evenly again when a member returns or joins (decisions in
//!   `streamreel_cluster::placement`, executed here as compare-and-set `Assign`s);
//! - moves and rebalances partitions on an operator's request;
//! - schedules the lakehouse jobs (enrichment, gold models with data tests,
//!   compaction, vacuum), each in its own task so a slow or failing job never
//!   blocks ingest, and records every run in the replicated history.
//!
//! Job decisions live in [`scheduler::Scheduler`]; this actor only executes them.

pub mod job;
pub mod jobs;
pub mod scheduler;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use streamreel_cluster::placement::{self, Move};
use streamreel_cluster::types::{FIRST_JOB_RUN_ID, JobRunRecord};
use streamreel_cluster::{ClusterError, ClusterMember, Command, CommandResult, NodeId};
use streamreel_protocol::error_chain_text;
use streamreel_protocol::time::now_micros;

use crate::error::ActorError;
use crate::repeated_error::RepeatedError;
use job::{JobKind, JobOutcome, JobRun, JobSchedule};
use scheduler::{LastRun, Scheduler, StartRun, TriggerRefused};

const JOB_TICK: Duration = Duration::from_millis(500);
const PROPOSE_TIMEOUT: Duration = Duration::from_secs(3);
const LEADERSHIP_CHECK: Duration = Duration::from_secs(5);
/// How long a new leader holds a compaction the previous leader left
/// running: several times the few seconds a deposed leader takes to notice
/// and cancel its jobs.
const HANDOVER_HOLD: Duration = Duration::from_secs(30);

pub enum CoordinatorMsg {
    JobTick,
    /// Give orphaned partitions a live owner (and rebalance when a member returned).
    Place,
    /// Start a job now; replies with the run id, or why not.
    Trigger(JobKind, RpcReplyPort<Result<u64, TriggerRefused>>),
    Finished(u64, Result<JobOutcome, ActorError>),
    /// Spread partitions evenly over live members; replies with the moves made.
    Rebalance(RpcReplyPort<Result<Vec<Assigned>, MovesStopped>>),
    /// Move one partition; replies with its new epoch once Raft committed it.
    Move {
        partition: i32,
        to: NodeId,
        reply: RpcReplyPort<Result<Assigned, ClusterError>>,
    },
}

/// A partition's new owner, as an `Assign` committed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Assigned {
    pub partition: i32,
    pub owner: NodeId,
    pub epoch: u64,
}

/// A series of moves that stopped at an error: the moves before it stay made.
#[derive(Debug)]
pub struct MovesStopped {
    pub made: Vec<Assigned>,
    pub error: ClusterError,
}

pub struct CoordinatorArgs {
    pub lake_dir: PathBuf,
    pub metadata: PathBuf,
    pub schedule: JobSchedule,
    pub cluster: ClusterMember,
    pub heartbeat: Duration,
    /// The runtime jobs run on: their own threads, never ingest's.
    pub jobs_runtime: tokio::runtime::Handle,
    /// The highest run id this process's coordinators have started, shared
    /// by them all. Runs are recorded through Raft after they start, so a
    /// coordinator started again within the same term may not find its
    /// predecessor's newest runs in the history yet; it continues after this
    /// too, so that no id names two runs.
    pub issued_run_ids: Arc<AtomicU64>,
}

pub struct Coordinator;

pub struct CoordinatorState {
    args: CoordinatorArgs,
    scheduler: Scheduler,
    clock: Instant,
    running: HashMap<u64, AbortHandle>,
    silver_writes: Arc<jobs::SilverWrites>,
    /// Live members at the last placement; a member that joins this set
    /// triggers a rebalance.
    live: BTreeSet<NodeId>,
    /// A placement round runs every heartbeat, so a failure repeats.
    placement_error: RepeatedError,
}

/// The jobs end with the coordinator however it ends: ractor skips
/// `post_stop` when a handler panics, but always drops the state.
impl Drop for CoordinatorState {
    fn drop(&mut self) {
        for (run_id, task) in self.running.drain() {
            info!(run_id, "cancelling job: this node's coordinator stopped");
            task.abort();
        }
    }
}

impl CoordinatorState {
    fn now_us(&self) -> i64 {
        self.clock.elapsed().as_micros() as i64
    }

    fn start(&mut self, myself: &ActorRef<CoordinatorMsg>, run: StartRun) {
        info!(job = %run.job, run_id = run.id, "job started");
        self.args.issued_run_ids.fetch_max(run.id, Ordering::SeqCst);
        // A job runs only once its start is committed through Raft: a leader
        // cut off from the others (openraft does not depose it until it hears
        // from them) cannot, so it never runs jobs beside the new leader's;
        // two compactions at once would keep both copies of the rows.
        let recorded = self.record(run.id);
        let (lake_dir, metadata, schedule, silver_writes) = (
            self.args.lake_dir.clone(),
            self.args.metadata.clone(),
            self.args.schedule,
            self.silver_writes.clone(),
        );
        let task = self.args.jobs_runtime.spawn(async move {
            match recorded.await {
                Ok(Ok(())) => {
                    let job =
                        jobs::run_job(run.job, &lake_dir, &metadata, &schedule, &silver_writes);
                    jobs::bounded(schedule.run_timeout, job).await
                }
                Ok(Err(e)) => Err(ActorError::JobNotRecorded(e)),
                Err(_) => Err(ActorError::CoordinatorStopped),
            }
        });
        self.running.insert(run.id, task.abort_handle());
        let me = myself.clone();
        tokio::spawn(async move {
            // A panicking job is a failed run, not a dead coordinator.
            let outcome = match task.await {
                Ok(outcome) => outcome,
                Err(e) if e.is_cancelled() => return,
                Err(e) => Err(ActorError::JobPanicked(e)),
            };
            let _ = me.cast(CoordinatorMsg::Finished(run.id, outcome));
        });
    }

    /// Writes the run as the scheduler has it into the replicated history,
    /// only while this node leads; the receiver says whether Raft committed it.
    fn record(&self, id: u64) -> oneshot::Receiver<Result<(), ClusterError>> {
        let (done, recorded) = oneshot::channel();
        let Some(run) = self.scheduler.run(id) else {
            let _ = done.send(Ok(()));
            return recorded;
        };
        let record = record_of(run);
        let cluster = self.args.cluster.clone();
        tokio::spawn(async move {
            let result = cluster
                .propose_as_leader(Command::RecordJobRun(record), PROPOSE_TIMEOUT)
                .await
                .map(|_| ());
            if let Err(e) = &result {
                warn!(run_id = id, error = %e, "could not record the job run");
            }
            let _ = done.send(result);
        });
        recorded
    }

    /// Proposes `moves` one by one; each is compare-and-set on its epoch. An
    /// error stops the series and is returned with the moves already made.
    ///
    /// Never forwarded: the moves were decided from this leader's view (which
    /// members are alive), and a leader deposed meanwhile would otherwise
    /// have its successor commit them, taking partitions from members it
    /// only could not reach.
    async fn execute(&self, moves: Vec<Move>) -> Result<Vec<Assigned>, MovesStopped> {
        let mut assigned = Vec::new();
        for m in moves {
            let command = Command::Assign {
                partition: m.partition,
                to: m.to,
                expected_epoch: m.expected_epoch,
            };
            let proposed = self
                .args
                .cluster
                .propose_as_leader(command, PROPOSE_TIMEOUT)
                .await;
            let error = match proposed {
                Ok(CommandResult::Assigned {
                    partition,
                    owner,
                    epoch,
                }) => {
                    info!(partition, from = ?m.from, owner, epoch, "partition assigned");
                    assigned.push(Assigned {
                        partition,
                        owner,
                        epoch,
                    });
                    continue;
                }
                Ok(CommandResult::Done) => continue,
                Ok(CommandResult::Refused(refusal)) => refusal.into(),
                Err(error) => error,
            };
            return Err(MovesStopped {
                made: assigned,
                error,
            });
        }
        Ok(assigned)
    }

    /// Voters that answer pings and, unless none does, reach the brokers.
    fn live_voters(&self) -> BTreeSet<NodeId> {
        let voters = self.args.cluster.view.read().voters();
        self.args
            .cluster
            .can_ingest()
            .intersection(&voters)
            .copied()
            .collect()
    }
}

fn record_of(run: &JobRun) -> JobRunRecord {
    JobRunRecord {
        id: run.id,
        job: run.job.to_string(),
        trigger: run.trigger.as_str().into(),
        attempt: run.attempt,
        started_at_us: run.started_at_us,
        ended_at_us: run.ended_at_us,
        status: run.status.as_str().into(),
        rows: run.rows,
        detail: run.detail.clone(),
        error: run.error.clone(),
    }
}

/// The start of the cluster's first job run, which the history keeps (a
/// cluster whose history dropped it before it was kept has none).
fn first_run_us<'a>(mut history: impl Iterator<Item = &'a JobRunRecord>) -> Option<i64> {
    history
        .find(|run| run.id == FIRST_JOB_RUN_ID)
        .map(|run| run.started_at_us)
}

/// How a run the previous leader left running is recorded.
const ABANDONED: &str = "abandoned: the leader changed while it ran";

/// How long (µs from now) a new leader holds compaction, given the newest
/// compaction run in the replicated history and the wall clock. A run left
/// running may still be ending on the deposed leader, which takes a few
/// seconds to notice and cancel it (two unconfirmed quorum checks); a
/// compaction started beside it would commit its own rewrite of the same
/// rows, and Delta keeps both. A run a leader just before recorded as
/// abandoned is held for what is left of that leader's hold, so that a
/// second quick change of leader does not end it early; never longer than
/// the hold itself, as that leader's clock may run ahead of this one's (and
/// while compaction is held, that record stays the newest).
fn compaction_hold_us(newest: &Option<JobRunRecord>, wall_us: i64) -> Option<i64> {
    let hold = HANDOVER_HOLD.as_micros() as i64;
    let run = newest.as_ref()?;
    if run.status == "running" {
        return Some(hold);
    }
    let abandoned_at = run
        .ended_at_us
        .filter(|_| run.error.as_deref() == Some(ABANDONED))?;
    let left = hold - wall_us.saturating_sub(abandoned_at).max(0);
    (left > 0).then_some(left)
}

/// Each job's newest run in the replicated history; runs of jobs this
/// version does not know are left out.
fn last_runs<'a>(history: impl Iterator<Item = &'a JobRunRecord>) -> Vec<LastRun> {
    let mut newest: BTreeMap<JobKind, &JobRunRecord> = BTreeMap::new();
    for run in history {
        let Ok(job) = run.job.parse::<JobKind>() else {
            continue;
        };
        let entry = newest.entry(job).or_insert(run);
        if run.id > entry.id {
            *entry = run;
        }
    }
    newest
        .into_iter()
        .map(|(job, run)| LastRun {
            job,
            started_at_us: run.started_at_us,
        })
        .collect()
}

impl Actor for Coordinator {
    type Msg = CoordinatorMsg;
    type State = CoordinatorState;
    type Arguments = CoordinatorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<CoordinatorMsg>,
        args: CoordinatorArgs,
    ) -> Result<CoordinatorState, ActorProcessingErr> {
        // A new leader's replica may not have applied all that the previous
        // one committed yet: the last job run id and the runs left running
        // are read once it has (else new runs could reuse committed ids).
        match tokio::time::timeout(LEADERSHIP_CHECK, args.cluster.raft.ensure_linearizable()).await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("leadership not confirmed: {e}").into()),
            Err(_) => return Err("leadership not confirmed in time".into()),
        }
        // Every member probes every other all the time, so a new leader already
        // knows who is silent and can fail over without a grace period.
        let (last_id, last_runs, first_run_us, abandoned, last_compaction) = {
            let applied = args.cluster.view.read();
            let last_compaction = applied
                .state
                .jobs()
                .filter(|r| r.job == JobKind::Compact.as_str())
                .max_by_key(|r| r.id)
                .cloned();
            let last = applied.state.jobs().map(|r| r.id).max().unwrap_or(0);
            let first_run_us = first_run_us(applied.state.jobs());
            let abandoned: Vec<JobRunRecord> = applied
                .state
                .jobs()
                .filter(|r| r.status == "running")
                .cloned()
                .collect();
            (
                last,
                last_runs(applied.state.jobs()),
                first_run_us,
                abandoned,
                last_compaction,
            )
        };
        let mut scheduler =
            Scheduler::resume(args.schedule, 0, now_micros(), last_runs, first_run_us);
        scheduler.continue_after(last_id.max(args.issued_run_ids.load(Ordering::SeqCst)));
        if let Some(left_us) = compaction_hold_us(&last_compaction, now_micros()) {
            scheduler.hold_maintenance(left_us);
        }
        for mut run in abandoned {
            run.status = "failed".into();
            run.ended_at_us = Some(now_micros());
            run.error = Some(ABANDONED.into());
            let _ = args
                .cluster
                .propose_as_leader(Command::RecordJobRun(run), PROPOSE_TIMEOUT)
                .await;
        }
        myself.send_interval(JOB_TICK, || CoordinatorMsg::JobTick);
        myself.send_interval(args.heartbeat, || CoordinatorMsg::Place);
        info!(node = args.cluster.id, "coordinator running on the leader");
        Ok(CoordinatorState {
            args,
            scheduler,
            clock: Instant::now(),
            running: HashMap::new(),
            silver_writes: Arc::default(),
            live: BTreeSet::new(),
            placement_error: RepeatedError::default(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<CoordinatorMsg>,
        message: CoordinatorMsg,
        state: &mut CoordinatorState,
    ) -> Result<(), ActorProcessingErr> {
        let now = state.now_us();
        match message {
            CoordinatorMsg::JobTick => {
                for run in state.scheduler.due(now, now_micros()) {
                    state.start(&myself, run);
                }
            }
            CoordinatorMsg::Place => {
                let live = state.live_voters();
                let ownership = state.args.cluster.view.read().state.ownership();
                let returned = came_back(&state.live, &live, &ownership);
                let moves = placement::place(&ownership, &live, returned);
                if !moves.is_empty() {
                    info!(
                        ?live,
                        rebalance = returned,
                        moves = moves.len(),
                        "placing partitions"
                    );
                }
                match state.execute(moves).await {
                    Ok(_) => {
                        state.live = live;
                        if state.placement_error.clear() {
                            info!("placement succeeded again");
                        }
                    }
                    // Members seen as returned stay new until a round succeeds,
                    // so the rebalance they call for is not dropped.
                    Err(stopped) => {
                        let text = error_chain_text(&stopped.error);
                        if state.placement_error.is_new(&text) {
                            warn!(error = %text, "placement failed; retrying at the next tick");
                        } else {
                            debug!(error = %text, "placement failed again; retrying at the next tick");
                        }
                    }
                }
            }
            CoordinatorMsg::Trigger(job, reply) => {
                let result = state.scheduler.trigger(job, now, now_micros()).map(|run| {
                    state.start(&myself, run);
                    run.id
                });
                let _ = reply.send(result);
            }
            CoordinatorMsg::Finished(id, outcome) => {
                match &outcome {
                    Ok(done) => {
                        info!(run_id = id, rows = done.rows, detail = %done.detail, "job succeeded")
                    }
                    Err(error) => warn!(run_id = id, %error, "job failed"),
                }
                state.running.remove(&id);
                // The history keeps the error as the text an operator reads.
                let outcome = outcome.map_err(|error| error.to_string());
                state.scheduler.finished(id, outcome, now, now_micros());
                // The outcome is history; nothing waits for it to be committed.
                drop(state.record(id));
            }
            CoordinatorMsg::Rebalance(reply) => {
                let live = state.live_voters();
                let ownership = state.args.cluster.view.read().state.ownership();
                let moves = placement::place(&ownership, &live, true);
                let _ = reply.send(state.execute(moves).await);
            }
            CoordinatorMsg::Move {
                partition,
                to,
                reply,
            } => {
                let (ownership, voters) = {
                    let view = state.args.cluster.view.read();
                    (view.state.ownership(), view.voters())
                };
                let result = match ownership.get(&partition) {
                    None => Err(ClusterError::Refused(
                        streamreel_cluster::Refusal::UnknownPartition { partition },
                    )),
                    // The next placement would give it to a live member, even
                    // when `to` owns it already.
                    Some(_) if voters.contains(&to) && !state.live_voters().contains(&to) => {
                        Err(ClusterError::NotLive { node: to })
                    }
                    Some((owner, epoch)) if *owner == Some(to) => Ok(Assigned {
                        partition,
                        owner: to,
                        epoch: *epoch,
                    }),
                    Some(_) => match placement::move_to(&ownership, partition, to) {
                        Some(m) => state
                            .execute(vec![m])
                            .await
                            .map_err(|stopped| stopped.error)
                            .and_then(|mut a| a.pop().ok_or(ClusterError::NoLeader)),
                        None => Err(ClusterError::NoLeader),
                    },
                };
                let _ = reply.send(result);
            }
        }
        Ok(())
    }
}

/// Whether a live voter came back since the last placement round, which
/// calls for a rebalance. A new coordinator (no round yet) has not seen who
/// came back, and the previous leader may have lost its leadership before
/// its rebalance committed: a live voter owning nothing counts as back.
fn came_back(
    last_round: &BTreeSet<NodeId>,
    live: &BTreeSet<NodeId>,
    ownership: &streamreel_cluster::Ownership,
) -> bool {
    if last_round.is_empty() {
        return live
            .iter()
            .any(|member| !ownership.values().any(|(owner, _)| *owner == Some(*member)));
    }
    live.difference(last_round).next().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_coordinator_takes_a_live_voter_owning_nothing_for_one_back() {
        let set = |ids: &[NodeId]| ids.iter().copied().collect::<BTreeSet<NodeId>>();
        // Node 3 came back under the previous leader, which lost its
        // leadership before its rebalance committed.
        let ownership: streamreel_cluster::Ownership =
            [(0, (Some(1), 2)), (1, (Some(2), 2)), (2, (Some(1), 3))].into();
        assert!(came_back(&set(&[]), &set(&[1, 2, 3]), &ownership));
        assert!(!came_back(&set(&[]), &set(&[1, 2]), &ownership));
        // Later rounds: only a voter new since the last round.
        assert!(!came_back(&set(&[1, 2, 3]), &set(&[1, 2, 3]), &ownership));
        assert!(came_back(&set(&[1, 2]), &set(&[1, 2, 3]), &ownership));
        assert!(!came_back(&set(&[1, 2, 3]), &set(&[1, 2]), &ownership));
        // And the placement it calls for gives node 3 its share.
        let moves = placement::place(&ownership, &set(&[1, 2, 3]), true);
        assert_eq!(moves.len(), 1, "{moves:?}");
        assert_eq!(moves[0].to, 3);
    }

    fn record(id: u64, job: &str, started_at_us: i64, status: &str) -> JobRunRecord {
        JobRunRecord {
            id,
            job: job.into(),
            trigger: "schedule".into(),
            attempt: 1,
            started_at_us,
            ended_at_us: None,
            status: status.into(),
            rows: 0,
            detail: String::new(),
            error: None,
        }
    }

    #[test]
    fn a_new_leader_holds_compaction_after_a_run_left_running_or_just_abandoned() {
        const S: i64 = 1_000_000;
        let hold = HANDOVER_HOLD.as_micros() as i64;
        let running = record(7, "compact", 100 * S, "running");
        assert_eq!(compaction_hold_us(&Some(running), 200 * S), Some(hold));
        // Abandoned by a leader 10 s ago: what is left of its hold.
        let abandoned = JobRunRecord {
            ended_at_us: Some(190 * S),
            error: Some(ABANDONED.into()),
            ..record(7, "compact", 100 * S, "failed")
        };
        assert_eq!(
            compaction_hold_us(&Some(abandoned.clone()), 200 * S),
            Some(hold - 10 * S)
        );
        assert_eq!(
            compaction_hold_us(&Some(abandoned.clone()), 190 * S + hold),
            None
        );
        // Abandoned by a leader whose clock ran 3 hours ahead: the whole
        // hold, not 3 hours more.
        assert_eq!(
            compaction_hold_us(&Some(abandoned), 190 * S - 3 * 3600 * S),
            Some(hold)
        );
        // A run that ended by itself, or none at all: no hold.
        let failed = JobRunRecord {
            ended_at_us: Some(199 * S),
            error: Some("disk full".into()),
            ..record(7, "compact", 100 * S, "failed")
        };
        assert_eq!(compaction_hold_us(&Some(failed), 200 * S), None);
        assert_eq!(compaction_hold_us(&None, 200 * S), None);
    }

    #[test]
    fn a_new_leader_finds_the_clusters_first_run_by_its_id() {
        let history = [
            record(3, "gold", 30, "succeeded"),
            record(2, "enrich", 20, "succeeded"),
            record(FIRST_JOB_RUN_ID, "enrich", 10, "succeeded"),
        ];
        assert_eq!(first_run_us(history.iter()), Some(10));
        // Dropped before the history kept it: no first run, although run 2
        // is now the oldest.
        assert_eq!(first_run_us(history[..2].iter()), None);
    }

    #[test]
    fn a_new_leader_takes_each_jobs_newest_run_by_id() {
        let history = [
            record(7, "gold", 70, "failed"),
            record(9, "gold", 90, "succeeded"),
            record(8, "compact", 80, "running"),
            record(10, "reindex", 100, "succeeded"),
        ];
        assert_eq!(
            last_runs(history.iter()),
            [
                LastRun {
                    job: JobKind::Gold,
                    started_at_us: 90,
                },
                LastRun {
                    job: JobKind::Compact,
                    started_at_us: 80,
                },
            ]
        );
    }
}
