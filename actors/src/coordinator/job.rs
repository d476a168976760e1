//! The lakehouse jobs the coordinator schedules, and the record of each run.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// Bronze -> silver (`enriched_events`, `view_sessions`).
    Enrich,
    /// Silver -> gold models, then the data tests.
    Gold,
    /// Delta optimize of bronze and silver.
    Compact,
    /// Delete files no longer referenced, past the retention period.
    Vacuum,
}

impl JobKind {
    pub const ALL: [JobKind; 4] = [
        JobKind::Enrich,
        JobKind::Gold,
        JobKind::Compact,
        JobKind::Vacuum,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Enrich => "enrich",
            JobKind::Gold => "gold",
            JobKind::Compact => "compact",
            JobKind::Vacuum => "vacuum",
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job name that names no job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job {0:?} (jobs: enrich, gold, compact, vacuum)")]
pub struct UnknownJob(pub String);

impl FromStr for JobKind {
    type Err = UnknownJob;

    fn from_str(text: &str) -> Result<JobKind, UnknownJob> {
        JobKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| UnknownJob(text.to_string()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        }
    }
}

/// Why a run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Schedule,
    Retry,
    Manual,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Retry => "retry",
            Trigger::Manual => "manual",
        }
    }
}

/// One run of a job, as `/admin/jobs` reports it. Times are UTC microseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRun {
    pub id: u64,
    pub job: JobKind,
    pub trigger: Trigger,
    pub attempt: u32,
    pub started_at_us: i64,
    pub ended_at_us: Option<i64>,
    pub status: RunStatus,
    /// Rows written (silver, gold) or files touched (compaction, vacuum).
    pub rows: u64,
    pub detail: String,
    pub error: Option<String>,
}

/// What a finished job reports.
#[derive(Debug, Clone, PartialEq)]
pub struct JobOutcome {
    pub rows: u64,
    pub detail: String,
}

/// How often each job runs, and how failed runs are retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobSchedule {
    pub enrich_every: Duration,
    pub gold_every: Duration,
    pub compact_every: Duration,
    pub vacuum_every: Duration,
    pub vacuum_retention: Duration,
    pub max_retries: u32,
    pub retry_backoff: Duration,
    /// A run still going after this long is cancelled and counts as failed.
    pub run_timeout: Duration,
    /// Memory limit and chunk size of silver and gold runs.
    pub lake: streamreel_lake::LakeSettings,
}

impl JobSchedule {
    pub fn interval(&self, job: JobKind) -> Duration {
        match job {
            JobKind::Enrich => self.enrich_every,
            JobKind::Gold => self.gold_every,
            JobKind::Compact => self.compact_every,
            JobKind::Vacuum => self.vacuum_every,
        }
    }
}
