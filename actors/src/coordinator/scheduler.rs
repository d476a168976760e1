//! The coordinator's decisions, apart from any I/O: which job starts when, that
//! no job runs twice at once, retries with backoff, and the run history.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use streamreel_cluster::FIRST_JOB_RUN_ID;

use super::job::{JobKind, JobOutcome, JobRun, JobSchedule, RunStatus, Trigger};

/// Runs kept for `/admin/jobs`.
pub const HISTORY: usize = 200;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TriggerRefused {
    #[error("{job} is already running (run {run_id})")]
    AlreadyRunning { job: JobKind, run_id: u64 },
    #[error(
        "{job} is held after a change of leader: the previous leader's compaction may still \
         be ending; try again in {seconds} s"
    )]
    HeldAfterLeaderChange { job: JobKind, seconds: i64 },
    #[error("{job} never runs beside {other}, which is running (run {run_id})")]
    Excluded {
        job: JobKind,
        other: JobKind,
        run_id: u64,
    },
}

#[derive(Debug, Default, Clone, Copy)]
struct JobState {
    running: Option<u64>,
    /// Monotonic time (µs since the scheduler started) of the next scheduled run.
    next_due_us: i64,
    /// Set while a failed run waits to be retried.
    retry_due_us: Option<i64>,
    /// Until when the job may not start (see [`Scheduler::hold`]).
    held_until_us: Option<i64>,
    failures: u32,
}

impl JobState {
    fn held_at(&self, now_us: i64) -> bool {
        self.held_until_us.is_some_and(|until| now_us < until)
    }
}

#[derive(Debug)]
pub struct Scheduler {
    schedule: JobSchedule,
    jobs: BTreeMap<JobKind, JobState>,
    history: VecDeque<JobRun>,
    next_id: u64,
}

/// A job's newest run in the replicated history, as a new leader finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastRun {
    pub job: JobKind,
    /// Wall clock (µs since the epoch).
    pub started_at_us: i64,
}

/// A run the caller must start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartRun {
    pub id: u64,
    pub job: JobKind,
}

impl Scheduler {
    /// `now_us` is a monotonic clock; the first scheduled runs are one interval away,
    /// except enrichment which starts at once.
    pub fn new(schedule: JobSchedule, now_us: i64) -> Scheduler {
        let jobs = JobKind::ALL
            .into_iter()
            .map(|job| {
                let first = if job == JobKind::Enrich {
                    now_us
                } else {
                    now_us + micros(schedule.interval(job))
                };
                (
                    job,
                    JobState {
                        next_due_us: first,
                        ..JobState::default()
                    },
                )
            })
            .collect();
        Scheduler {
            schedule,
            jobs,
            history: VecDeque::new(),
            next_id: FIRST_JOB_RUN_ID,
        }
    }

    /// The scheduler of a new leader, continuing the previous leaders'
    /// schedule: a job's next run is one interval after the start of its
    /// newest run (at once if that is past), whatever became of that run. A
    /// leader change thus does not put a job off by a whole interval (an
    /// hourly job would never run under a leader that changes more often).
    /// A run the old leader left running is not started again at once either:
    /// an old leader that is only frozen or cut off may still be running it,
    /// and two compactions at once would keep both copies of the rows.
    ///
    /// A job that has never run is due one interval after `first_run_us`, the
    /// start of the cluster's first run (the history keeps it), for the same
    /// reason, and enrichment at once as in [`Scheduler::new`]; without a
    /// first run, such jobs start as in [`Scheduler::new`].
    pub fn resume(
        schedule: JobSchedule,
        now_us: i64,
        wall_us: i64,
        last_runs: impl IntoIterator<Item = LastRun>,
        first_run_us: Option<i64>,
    ) -> Scheduler {
        let mut scheduler = Scheduler::new(schedule, now_us);
        let last_runs: BTreeMap<JobKind, i64> = last_runs
            .into_iter()
            .map(|last| (last.job, last.started_at_us))
            .collect();
        for (job, state) in &mut scheduler.jobs {
            let Some(anchor_us) = last_runs.get(job).copied().or(first_run_us) else {
                continue;
            };
            let interval = micros(schedule.interval(*job));
            let due_in = anchor_us.saturating_add(interval) - wall_us;
            let anchored = now_us + due_in.clamp(0, interval);
            state.next_due_us = if last_runs.contains_key(job) {
                anchored
            } else {
                anchored.min(state.next_due_us)
            };
        }
        scheduler
    }

    /// Jobs due at `now_us` that are not running; each is recorded as started.
    pub fn due(&mut self, now_us: i64, wall_us: i64) -> Vec<StartRun> {
        let mut starts = Vec::new();
        let due: Vec<(JobKind, Trigger)> = self
            .jobs
            .iter()
            .filter(|(_, state)| state.running.is_none() && !state.held_at(now_us))
            .filter_map(|(job, state)| match state.retry_due_us {
                Some(retry) if retry <= now_us => Some((*job, Trigger::Retry)),
                Some(_) => None,
                None if state.next_due_us <= now_us => Some((*job, Trigger::Schedule)),
                None => None,
            })
            .collect();
        // Of compaction and vacuum, both due, vacuum starts first (the
        // contract's order): it is usually the rarer and the shorter.
        let yields = |job: JobKind| {
            job == JobKind::Compact && due.iter().any(|(other, _)| *other == JobKind::Vacuum)
        };
        let due: Vec<(JobKind, Trigger)> = due
            .iter()
            .copied()
            .filter(|(job, _)| !yields(*job))
            .collect();
        for (job, trigger) in due {
            // Stays due, and starts once the other ends.
            if self.excluding_run(job).is_none() {
                starts.push(self.start(job, trigger, now_us, wall_us));
            }
        }
        starts
    }

    /// The running job that `job` may not run beside, and its run: vacuum
    /// deletes files no table version refers to once they are older than
    /// its retention, which includes the first files of a compaction running
    /// longer than that, written and not yet committed.
    fn excluding_run(&self, job: JobKind) -> Option<(JobKind, u64)> {
        let other = exclusive_partner(job)?;
        self.jobs[&other].running.map(|run_id| (other, run_id))
    }

    /// A run asked for by an operator; refused while the job is running.
    pub fn trigger(
        &mut self,
        job: JobKind,
        now_us: i64,
        wall_us: i64,
    ) -> Result<StartRun, TriggerRefused> {
        let state = &self.jobs[&job];
        if let Some(run_id) = state.running {
            return Err(TriggerRefused::AlreadyRunning { job, run_id });
        }
        if let Some((other, run_id)) = self.excluding_run(job) {
            return Err(TriggerRefused::Excluded { job, other, run_id });
        }
        if let Some(until) = state.held_until_us.filter(|_| state.held_at(now_us)) {
            let seconds = (until - now_us + 999_999) / 1_000_000;
            return Err(TriggerRefused::HeldAfterLeaderChange { job, seconds });
        }
        Ok(self.start(job, Trigger::Manual, now_us, wall_us))
    }

    /// Starts of `job` neither on schedule nor by hand until `until_us`.
    pub fn hold(&mut self, job: JobKind, until_us: i64) {
        let state = self.jobs.get_mut(&job).expect("every job has a state");
        state.held_until_us = Some(until_us);
    }

    /// Holds compaction and vacuum until `until_us`: a new leader that found
    /// the previous leader's compaction running, which that leader may still
    /// commit until it notices it was deposed. A second compaction would
    /// rewrite the same rows; a vacuum could delete the files it is about to
    /// commit, if written longer ago than the retention.
    pub fn hold_maintenance(&mut self, until_us: i64) {
        self.hold(JobKind::Compact, until_us);
        self.hold(JobKind::Vacuum, until_us);
    }

    fn start(&mut self, job: JobKind, trigger: Trigger, now_us: i64, wall_us: i64) -> StartRun {
        let id = self.next_id;
        self.next_id += 1;
        let interval = micros(self.schedule.interval(job));
        let state = self.jobs.get_mut(&job).expect("every job has a state");
        state.running = Some(id);
        state.retry_due_us = None;
        if trigger == Trigger::Schedule {
            state.next_due_us = now_us + interval;
        }
        let attempt = if trigger == Trigger::Retry {
            state.failures + 1
        } else {
            1
        };
        self.history.push_back(JobRun {
            id,
            job,
            trigger,
            attempt,
            started_at_us: wall_us,
            ended_at_us: None,
            status: RunStatus::Running,
            rows: 0,
            detail: String::new(),
            error: None,
        });
        // The oldest ended run goes; a running one stays, so that its end
        // is recorded (at most one run per job is running).
        while self.history.len() > HISTORY {
            let Some(oldest_ended) = self
                .history
                .iter()
                .position(|run| run.status != RunStatus::Running)
            else {
                break;
            };
            self.history.remove(oldest_ended);
        }
        StartRun { id, job }
    }

    /// Records the end of a run; a failure schedules a retry with doubling
    /// backoff, up to `max_retries`, after which the job waits for its schedule.
    pub fn finished(
        &mut self,
        id: u64,
        outcome: Result<JobOutcome, String>,
        now_us: i64,
        wall_us: i64,
    ) {
        // The job is found by its running slot, not through the history: a run
        // that fell out of the history must still free its job.
        let Some((job, state)) = self
            .jobs
            .iter_mut()
            .find(|(_, state)| state.running == Some(id))
        else {
            return;
        };
        let job = *job;
        state.running = None;
        let run = self.history.iter_mut().find(|r| r.id == id);
        if let Some(run) = &run {
            debug_assert_eq!(run.job, job);
        }
        match outcome {
            Ok(outcome) => {
                state.failures = 0;
                if let Some(run) = run {
                    run.ended_at_us = Some(wall_us);
                    run.status = RunStatus::Succeeded;
                    run.rows = outcome.rows;
                    run.detail = outcome.detail;
                }
            }
            Err(error) => {
                state.failures += 1;
                if state.failures <= self.schedule.max_retries {
                    // At most the interval: a retry holds the schedule, so a
                    // long outage's doubled delays (2^16 times the first)
                    // would otherwise leave the job idle long after it ended.
                    let backoff = self
                        .schedule
                        .retry_backoff
                        .saturating_mul(1 << (state.failures - 1).min(16))
                        .min(self.schedule.interval(job));
                    state.retry_due_us = Some(now_us + micros(backoff));
                } else {
                    state.failures = 0;
                }
                if let Some(run) = run {
                    run.ended_at_us = Some(wall_us);
                    run.status = RunStatus::Failed;
                    run.error = Some(error);
                }
            }
        }
    }

    /// Run ids start after `last_id` (a new leader continues the replicated history).
    pub fn continue_after(&mut self, last_id: u64) {
        self.next_id = self.next_id.max(last_id + 1);
    }

    /// The run with this id, if still in the history.
    pub fn run(&self, id: u64) -> Option<&JobRun> {
        self.history.iter().find(|r| r.id == id)
    }

    pub fn is_running(&self, job: JobKind) -> bool {
        self.jobs[&job].running.is_some()
    }

    /// Newest first.
    pub fn history(&self) -> Vec<JobRun> {
        self.history.iter().rev().cloned().collect()
    }

    /// The earliest moment something is due, for the caller's timer.
    pub fn next_wakeup_us(&self) -> Option<i64> {
        self.jobs
            .values()
            .filter(|s| s.running.is_none())
            .map(|s| {
                let due = s.retry_due_us.unwrap_or(s.next_due_us);
                s.held_until_us.map_or(due, |until| due.max(until))
            })
            .min()
    }
}

/// The job `job` never runs beside (see [`Scheduler::excluding_run`]).
fn exclusive_partner(job: JobKind) -> Option<JobKind> {
    match job {
        JobKind::Compact => Some(JobKind::Vacuum),
        JobKind::Vacuum => Some(JobKind::Compact),
        JobKind::Enrich | JobKind::Gold => None,
    }
}

fn micros(duration: Duration) -> i64 {
    duration.as_micros().min(i64::MAX as u128) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn schedule() -> JobSchedule {
        JobSchedule {
            enrich_every: Duration::from_secs(10),
            gold_every: Duration::from_secs(60),
            compact_every: Duration::from_secs(600),
            vacuum_every: Duration::from_secs(3600),
            vacuum_retention: Duration::from_secs(7 * 86_400),
            lake: streamreel_lake::LakeSettings::default(),
            max_retries: 2,
            retry_backoff: Duration::from_secs(1),
            run_timeout: Duration::from_secs(3600),
        }
    }

    fn ok() -> Result<JobOutcome, String> {
        Ok(JobOutcome {
            rows: 5,
            detail: "done".into(),
        })
    }

    #[test]
    fn enrich_starts_at_once_and_others_after_their_interval() {
        let mut scheduler = Scheduler::new(schedule(), 0);
        let starts = scheduler.due(0, 0);
        assert_eq!(
            starts.iter().map(|s| s.job).collect::<Vec<_>>(),
            [JobKind::Enrich]
        );
        assert!(
            scheduler.due(5 * S, 0).is_empty(),
            "enrich still running, gold not due"
        );
        let gold = scheduler.due(60 * S, 0);
        assert_eq!(
            gold.iter().map(|s| s.job).collect::<Vec<_>>(),
            [JobKind::Gold]
        );
    }

    #[test]
    fn a_held_job_starts_neither_on_schedule_nor_by_hand_until_the_hold_ends() {
        let mut scheduler = Scheduler::new(schedule(), 0);
        scheduler.hold(JobKind::Compact, 630 * S);
        assert_eq!(
            scheduler.trigger(JobKind::Compact, 600 * S, 0),
            Err(TriggerRefused::HeldAfterLeaderChange {
                job: JobKind::Compact,
                seconds: 30
            })
        );
        let at_600: Vec<JobKind> = scheduler.due(600 * S, 0).iter().map(|s| s.job).collect();
        assert!(!at_600.contains(&JobKind::Compact), "{at_600:?}");
        let at_630: Vec<JobKind> = scheduler.due(630 * S, 0).iter().map(|s| s.job).collect();
        assert!(at_630.contains(&JobKind::Compact), "{at_630:?}");
        // Other jobs are not held.
        let mut scheduler = Scheduler::new(schedule(), 0);
        scheduler.hold(JobKind::Compact, 630 * S);
        assert!(scheduler.trigger(JobKind::Gold, 1, 0).is_ok());
        assert!(scheduler.trigger(JobKind::Compact, 630 * S, 0).is_ok());
    }

    #[test]
    fn compaction_and_vacuum_never_run_at_once() {
        let schedule = JobSchedule {
            compact_every: Duration::from_secs(100_000),
            ..schedule()
        };
        let mut scheduler = Scheduler::new(schedule, 0);
        let compact = scheduler.trigger(JobKind::Compact, 1, 1).unwrap();
        let refused = scheduler.trigger(JobKind::Vacuum, 2, 2);
        assert_eq!(
            refused,
            Err(TriggerRefused::Excluded {
                job: JobKind::Vacuum,
                other: JobKind::Compact,
                run_id: compact.id
            })
        );
        // Vacuum falls due while compaction runs: it waits, then starts.
        let due_at = |scheduler: &mut Scheduler, at: i64| -> Vec<JobKind> {
            scheduler.due(at, at).iter().map(|s| s.job).collect()
        };
        assert!(!due_at(&mut scheduler, 3_600 * S).contains(&JobKind::Vacuum));
        scheduler.finished(compact.id, ok(), 3_601 * S, 3_601 * S);
        assert!(due_at(&mut scheduler, 3_602 * S).contains(&JobKind::Vacuum));
        assert!(matches!(
            scheduler.trigger(JobKind::Compact, 3_603 * S, 3_603 * S),
            Err(TriggerRefused::Excluded { .. })
        ));
    }

    /// Whatever their intervals, vacuum starts first when both are due.
    #[test]
    fn vacuum_goes_first_when_both_fall_due_at_once() {
        for compact_every in [3_600, 86_400, 100_000] {
            let schedule = JobSchedule {
                compact_every: Duration::from_secs(compact_every),
                vacuum_every: Duration::from_secs(86_400),
                ..schedule()
            };
            let mut scheduler = Scheduler::new(schedule, 0);
            let at = 100_000 * S;
            let started: Vec<JobKind> = scheduler.due(at, at).iter().map(|s| s.job).collect();
            assert!(
                started.contains(&JobKind::Vacuum),
                "{compact_every}: {started:?}"
            );
            assert!(
                !started.contains(&JobKind::Compact),
                "{compact_every}: {started:?}"
            );
            // Compaction, still due, starts once vacuum has ended.
            let vacuum = scheduler.due(at, at);
            assert!(vacuum.is_empty(), "{vacuum:?}");
            let run = scheduler.jobs[&JobKind::Vacuum].running.unwrap();
            scheduler.finished(run, ok(), at + S, at + S);
            let next: Vec<JobKind> = scheduler
                .due(at + 2 * S, at + 2 * S)
                .iter()
                .map(|s| s.job)
                .collect();
            assert!(
                next.contains(&JobKind::Compact),
                "{compact_every}: {next:?}"
            );
        }
    }

    #[test]
    fn maintenance_is_held_after_a_change_of_leader() {
        let mut scheduler = Scheduler::new(schedule(), 0);
        scheduler.hold_maintenance(30 * S);
        for job in [JobKind::Compact, JobKind::Vacuum] {
            assert!(matches!(
                scheduler.trigger(job, 29 * S, 0),
                Err(TriggerRefused::HeldAfterLeaderChange { .. })
            ));
        }
        assert!(scheduler.trigger(JobKind::Gold, 29 * S, 0).is_ok());
        assert!(scheduler.trigger(JobKind::Vacuum, 30 * S, 0).is_ok());
    }

    /// The wall clock when a new leader's scheduler starts in these tests.
    const WALL: i64 = 10_000 * S;

    /// Jobs due `at` seconds after a new leader's scheduler started at [`WALL`].
    fn due(scheduler: &mut Scheduler, at: i64) -> Vec<JobKind> {
        scheduler
            .due(at * S, WALL + at * S)
            .iter()
            .map(|s| s.job)
            .collect()
    }

    /// Ends `job`'s running run, successfully, `at` seconds in.
    fn finish(scheduler: &mut Scheduler, job: JobKind, at: i64) {
        let run = scheduler
            .history()
            .into_iter()
            .find(|r| r.job == job && r.status == RunStatus::Running)
            .expect("running");
        scheduler.finished(run.id, ok(), at * S, WALL + at * S);
    }

    #[test]
    fn a_new_leader_continues_each_jobs_schedule_from_its_newest_run() {
        let last = |job, ago: i64| LastRun {
            job,
            started_at_us: WALL - ago * S,
        };
        let mut scheduler = Scheduler::resume(
            schedule(),
            0,
            WALL,
            [
                // Gold started 50 s ago (every 60 s), compact 700 s ago
                // (every 600 s), vacuum 3,590 s ago (every 3,600 s), whether
                // they ended or the old leader left them running.
                last(JobKind::Gold, 50),
                last(JobKind::Compact, 700),
                last(JobKind::Vacuum, 3_590),
            ],
            None,
        );
        assert_eq!(
            due(&mut scheduler, 0),
            [JobKind::Enrich, JobKind::Compact],
            "never run, overdue"
        );
        assert!(due(&mut scheduler, 9).is_empty());
        // (Vacuum never runs beside compaction.)
        finish(&mut scheduler, JobKind::Compact, 9);
        assert_eq!(due(&mut scheduler, 10), [JobKind::Gold, JobKind::Vacuum]);

        // A clock ahead of the new leader's cannot postpone a job past its interval.
        let mut scheduler =
            Scheduler::resume(schedule(), 0, WALL, [last(JobKind::Gold, -500)], None);
        assert!(!due(&mut scheduler, 59).contains(&JobKind::Gold));
        assert!(due(&mut scheduler, 60).contains(&JobKind::Gold));
    }

    #[test]
    fn a_job_that_never_ran_is_due_one_interval_after_the_clusters_first_run() {
        // Leaders changed every few minutes since the first run, 3,000 s ago,
        // and only enrichment and gold ran: compaction (every 600 s) is
        // overdue, vacuum (every 3,600 s) due in 600 s, not in an hour.
        let gold = LastRun {
            job: JobKind::Gold,
            started_at_us: WALL - 30 * S,
        };
        let enrich = LastRun {
            job: JobKind::Enrich,
            started_at_us: WALL - 5 * S,
        };
        let mut scheduler =
            Scheduler::resume(schedule(), 0, WALL, [gold, enrich], Some(WALL - 3_000 * S));
        assert_eq!(due(&mut scheduler, 0), [JobKind::Compact]);
        assert_eq!(due(&mut scheduler, 5), [JobKind::Enrich]);
        assert_eq!(due(&mut scheduler, 30), [JobKind::Gold]);
        finish(&mut scheduler, JobKind::Compact, 31);
        assert!(!due(&mut scheduler, 599).contains(&JobKind::Vacuum));
        assert!(due(&mut scheduler, 600).contains(&JobKind::Vacuum));

        // A first run moments ago does not put enrichment off.
        let mut scheduler = Scheduler::resume(schedule(), 0, WALL, [], Some(WALL - S));
        assert_eq!(due(&mut scheduler, 0), [JobKind::Enrich]);

        // A first run dated ahead by a clock ahead of this one's postpones
        // no job past its interval.
        let mut scheduler = Scheduler::resume(schedule(), 0, WALL, [], Some(WALL + 86_400 * S));
        assert_eq!(due(&mut scheduler, 0), [JobKind::Enrich]);
        assert!(!due(&mut scheduler, 599).contains(&JobKind::Compact));
        assert_eq!(due(&mut scheduler, 600), [JobKind::Compact]);
    }

    #[test]
    fn a_long_run_stays_in_the_history_until_its_end_is_recorded() {
        let mut scheduler = Scheduler::new(schedule(), 0);
        let long_enrich = scheduler.due(0, 0)[0];
        // Many manual gold runs start and end while enrich runs.
        for i in 0..(HISTORY as i64 + 5) {
            let gold = scheduler.trigger(JobKind::Gold, i, i).unwrap();
            scheduler.finished(gold.id, ok(), i, i);
        }
        assert_eq!(scheduler.history().len(), HISTORY);
        assert!(scheduler.run(long_enrich.id).is_some());
        assert!(scheduler.is_running(JobKind::Enrich));
        scheduler.finished(long_enrich.id, ok(), 1_000, 1_000);
        let ended = scheduler.run(long_enrich.id).expect("kept");
        assert_eq!(
            (ended.status, ended.ended_at_us),
            (RunStatus::Succeeded, Some(1_000))
        );
        assert!(
            !scheduler.is_running(JobKind::Enrich),
            "no job stays running forever"
        );
        assert!(scheduler.trigger(JobKind::Enrich, 1_001, 1_001).is_ok());
        // Once ended, it is the oldest run, and that start dropped it.
        assert!(scheduler.run(long_enrich.id).is_none());
    }

    #[test]
    fn never_two_runs_of_one_job_at_once() {
        let mut scheduler = Scheduler::new(schedule(), 0);
        let first = scheduler.due(0, 0)[0];
        assert_eq!(
            scheduler.trigger(JobKind::Enrich, 1, 1),
            Err(TriggerRefused::AlreadyRunning {
                job: JobKind::Enrich,
                run_id: first.id
            })
        );
        assert!(
            scheduler
                .due(20 * S, 0)
                .iter()
                .all(|s| s.job != JobKind::Enrich)
        );
        scheduler.finished(first.id, ok(), 21 * S, 21);
        assert!(scheduler.trigger(JobKind::Enrich, 22 * S, 22).is_ok());
    }

    #[test]
    fn failures_retry_with_doubling_backoff_then_wait_for_the_schedule() {
        let mut scheduler = Scheduler::new(schedule(), 0);
        let run = scheduler.due(0, 0)[0];
        scheduler.finished(run.id, Err("boom".into()), S, 1);
        assert!(scheduler.due(S + S / 2, 0).is_empty());
        let retry = scheduler.due(2 * S, 0)[0];
        assert_eq!(scheduler.history()[0].trigger, Trigger::Retry);
        assert_eq!(scheduler.history()[0].attempt, 2);
        scheduler.finished(retry.id, Err("boom".into()), 2 * S, 2);
        assert!(scheduler.due(3 * S, 0).is_empty(), "second backoff is 2 s");
        let retry = scheduler.due(4 * S, 0)[0];
        scheduler.finished(retry.id, Err("boom".into()), 4 * S, 4);
        assert!(scheduler.due(9 * S, 0).is_empty(), "retries exhausted");
        assert_eq!(
            scheduler.due(10 * S, 0)[0].job,
            JobKind::Enrich,
            "the schedule goes on"
        );
        let history = scheduler.history();
        assert_eq!(
            history
                .iter()
                .filter(|r| r.status == RunStatus::Failed)
                .count(),
            3
        );
        assert_eq!(history[1].error.as_deref(), Some("boom"));
    }

    #[test]
    fn a_retry_waits_at_most_the_jobs_interval() {
        let mut schedule = schedule();
        schedule.max_retries = 20;
        let mut scheduler = Scheduler::new(schedule, 0);
        let mut now = 0;
        let mut run = scheduler.due(now, 0)[0];
        // Doubling from 1 s: 1, 2, 4, 8, then the 10 s interval each time.
        for expected in [1, 2, 4, 8, 10, 10, 10] {
            scheduler.finished(run.id, Err("lake down".into()), now, 0);
            assert!(scheduler.due(now + expected * S - 1, 0).is_empty());
            now += expected * S;
            run = scheduler.due(now, 0)[0];
            assert_eq!(run.job, JobKind::Enrich, "retried after {expected} s");
        }
    }

    #[test]
    fn history_records_outcomes_newest_first_and_is_bounded() {
        let mut scheduler = Scheduler::new(schedule(), 0);
        for n in 0..(HISTORY as i64 + 10) {
            let run = scheduler.trigger(JobKind::Compact, n, n).unwrap();
            scheduler.finished(run.id, ok(), n, n + 1);
        }
        let history = scheduler.history();
        assert_eq!(history.len(), HISTORY);
        assert_eq!(history[0].rows, 5);
        assert_eq!(history[0].ended_at_us, Some(HISTORY as i64 + 10));
    }
}
