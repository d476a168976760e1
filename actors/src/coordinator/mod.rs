//! The coordinator actor: schedules the lakehouse jobs (enrichment, gold models
//! with data tests, compaction, vacuum), runs each in its own task so a slow or
//! failing job never blocks ingest, and keeps the run history.
//!
//! Decisions live in [`scheduler::Scheduler`]; this actor only executes them.

pub mod job;
pub mod jobs;
pub mod scheduler;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::{info, warn};

use streamreel_protocol::time::now_micros;

use job::{JobKind, JobOutcome, JobRun, JobSchedule};
use scheduler::{Scheduler, StartRun, TriggerRefused};

const TICK: Duration = Duration::from_millis(500);

pub enum CoordinatorMsg {
    Tick,
    /// Start a job now; replies with the run id, or why not.
    Trigger(JobKind, RpcReplyPort<Result<u64, String>>),
    Finished(u64, Result<JobOutcome, String>),
    /// The run history, newest first.
    Runs(RpcReplyPort<Vec<JobRun>>),
}

pub struct CoordinatorArgs {
    pub lake_dir: PathBuf,
    pub metadata: PathBuf,
    pub schedule: JobSchedule,
}

pub struct Coordinator;

pub struct CoordinatorState {
    lake_dir: PathBuf,
    metadata: PathBuf,
    schedule: JobSchedule,
    scheduler: Scheduler,
    clock: Instant,
}

impl CoordinatorState {
    fn now_us(&self) -> i64 {
        self.clock.elapsed().as_micros() as i64
    }

    fn start(&self, myself: &ActorRef<CoordinatorMsg>, run: StartRun) {
        info!(job = %run.job, run_id = run.id, "job started");
        let (lake_dir, metadata, schedule) =
            (self.lake_dir.clone(), self.metadata.clone(), self.schedule);
        let task =
            tokio::spawn(
                async move { jobs::run_job(run.job, &lake_dir, &metadata, &schedule).await },
            );
        let me = myself.clone();
        tokio::spawn(async move {
            // A panicking job is a failed run, not a dead coordinator.
            let outcome = match task.await {
                Ok(outcome) => outcome,
                Err(e) => Err(format!("job panicked: {e}")),
            };
            let _ = me.cast(CoordinatorMsg::Finished(run.id, outcome));
        });
    }
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
        myself.send_interval(TICK, || CoordinatorMsg::Tick);
        Ok(CoordinatorState {
            lake_dir: args.lake_dir,
            metadata: args.metadata,
            schedule: args.schedule,
            scheduler: Scheduler::new(args.schedule, 0),
            clock: Instant::now(),
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
            CoordinatorMsg::Tick => {
                for run in state.scheduler.due(now, now_micros()) {
                    state.start(&myself, run);
                }
            }
            CoordinatorMsg::Trigger(job, reply) => {
                let result = match state.scheduler.trigger(job, now, now_micros()) {
                    Ok(run) => {
                        state.start(&myself, run);
                        Ok(run.id)
                    }
                    Err(TriggerRefused::AlreadyRunning { run_id }) => {
                        Err(format!("{job} is already running (run {run_id})"))
                    }
                };
                let _ = reply.send(result);
            }
            CoordinatorMsg::Finished(id, outcome) => {
                match &outcome {
                    Ok(done) => {
                        info!(run_id = id, rows = done.rows, detail = %done.detail, "job succeeded")
                    }
                    Err(error) => warn!(run_id = id, %error, "job failed"),
                }
                state.scheduler.finished(id, outcome, now, now_micros());
            }
            CoordinatorMsg::Runs(reply) => {
                let _ = reply.send(state.scheduler.history());
            }
        }
        Ok(())
    }
}
