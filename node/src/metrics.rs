//! What `/metrics` exposes, in the Prometheus text format (0.0.4). The handler
//! gathers a [`MetricsSnapshot`] (I/O); [`render`] turns it into text (pure).
//!
//! A partition's series are present only while this node owns it, so a moved
//! partition's series disappear from the old owner at the next scrape.

use std::collections::BTreeMap;
use std::fmt::{self, Debug};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Everything one scrape reports.
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    pub raft: RaftFigures,
    /// `None` until the node first checked its brokers.
    pub broker_reachable: Option<bool>,
    /// The partitions this node owns now.
    pub partitions: Vec<PartitionFigures>,
    pub jobs: Vec<JobFigures>,
    /// Whether each job's newest finished run failed ([`JobOutcomes`]).
    pub last_run_failed: BTreeMap<String, bool>,
    /// (minute, video) counts in this node's replica of the live aggregates.
    pub live_entries: usize,
}

#[derive(Debug, Clone, Default)]
pub struct RaftFigures {
    pub term: u64,
    pub leader: Option<u64>,
    pub is_leader: bool,
    pub last_log_index: u64,
    pub last_applied_index: u64,
}

#[derive(Debug, Clone)]
pub struct PartitionFigures {
    pub partition: i32,
    pub consumed: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    pub committed_offset: i64,
    /// `None` when the broker could not be asked.
    pub lag: Option<i64>,
    pub checkpoint_age_s: Option<f64>,
    pub restarts: u64,
    pub commit_retries: u64,
    pub consumer_errors: u64,
    pub skipped_offsets: u64,
    pub commit_seconds: Histogram,
}

/// Runs of one job with one outcome in the replicated job history.
#[derive(Debug, Clone, PartialEq)]
pub struct JobFigures {
    pub job: String,
    pub outcome: String,
    pub runs: u64,
    /// Duration of the newest finished run with this outcome.
    pub last_duration_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PartitionLabel {
    partition: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RejectionLabels {
    partition: i32,
    reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct JobLabel {
    job: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct JobLabels {
    job: String,
    outcome: String,
}

/// Metrics of one name with their label sets, encoded as one family; with no
/// members the family is left out altogether.
#[derive(Debug)]
struct Labelled<L, M>(Vec<(L, M)>);

impl<L, M: TypedMetric> TypedMetric for Labelled<L, M> {
    const TYPE: MetricType = M::TYPE;
}

impl<L, M> EncodeMetric for Labelled<L, M>
where
    L: EncodeLabelSet,
    M: EncodeMetric + TypedMetric,
{
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        for (labels, metric) in &self.0 {
            metric.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn per_partition<M>(
    partitions: &[PartitionFigures],
    metric: impl Fn(&PartitionFigures) -> Option<M>,
) -> Labelled<PartitionLabel, M> {
    Labelled(
        partitions
            .iter()
            .filter_map(|p| {
                metric(p).map(|m| {
                    (
                        PartitionLabel {
                            partition: p.partition,
                        },
                        m,
                    )
                })
            })
            .collect(),
    )
}

/// The snapshot in the Prometheus text format.
pub fn render(snapshot: &MetricsSnapshot) -> String {
    let mut registry = Registry::with_prefix("streamreel");
    let parts = &snapshot.partitions;
    let counter = |f: fn(&PartitionFigures) -> u64| {
        per_partition(parts, move |p| Some(ConstCounter::new(f(p))))
    };
    registry.register(
        "events_in",
        "Records read from the input topic",
        counter(|p| p.consumed),
    );
    registry.register(
        "events_accepted",
        "Events written to bronze (counted at their commit)",
        counter(|p| p.accepted),
    );
    registry.register(
        "events_duplicate",
        "Events dropped as duplicates (counted at their batch's commit)",
        counter(|p| p.duplicates),
    );
    let rejected = parts
        .iter()
        .flat_map(|p| {
            p.rejected_by_reason.iter().map(|(reason, n)| {
                (
                    RejectionLabels {
                        partition: p.partition,
                        reason: reason.clone(),
                    },
                    ConstCounter::new(*n),
                )
            })
        })
        .collect();
    registry.register(
        "events_rejected",
        "Records sent to the dead-letter topic, by rejection kind",
        Labelled(rejected),
    );
    registry.register(
        "partition_restarts",
        "Partition actors that ended and were restarted",
        counter(|p| p.restarts),
    );
    registry.register(
        "bronze_commit_retries",
        "Bronze commits that failed and were tried again",
        counter(|p| p.commit_retries),
    );
    registry.register(
        "consumer_errors",
        "Consumer errors the partition actor outlived (lost connections, brokers down)",
        counter(|p| p.consumer_errors),
    );
    registry.register(
        "skipped_offsets",
        "Offsets skipped because the broker no longer had them",
        counter(|p| p.skipped_offsets),
    );
    registry.register(
        "partition_committed_offset",
        "Last input offset committed to bronze (-1: none)",
        per_partition(parts, |p| Some(ConstGauge::new(p.committed_offset))),
    );
    registry.register(
        "partition_lag",
        "Records in the input partition not yet committed to bronze",
        per_partition(parts, |p| p.lag.map(ConstGauge::new)),
    );
    registry.register(
        "checkpoint_age_seconds",
        "Time since the partition's last checkpoint through Raft",
        per_partition(parts, |p| p.checkpoint_age_s.map(ConstGauge::new)),
    );
    registry.register(
        "bronze_commit_seconds",
        "Time of each bronze commit, retries included",
        per_partition(parts, |p| Some(p.commit_seconds.clone())),
    );

    let raft = &snapshot.raft;
    registry.register(
        "raft_term",
        "Current Raft term",
        ConstGauge::new(raft.term as i64),
    );
    registry.register(
        "raft_leader",
        "Id of the leader this node knows (0: none)",
        ConstGauge::new(raft.leader.unwrap_or(0) as i64),
    );
    registry.register(
        "raft_is_leader",
        "1 on the leader",
        ConstGauge::new(i64::from(raft.is_leader)),
    );
    registry.register(
        "raft_last_log_index",
        "Index of the last entry in this node's Raft log",
        ConstGauge::new(raft.last_log_index as i64),
    );
    registry.register(
        "raft_commit_index",
        "Index of the last committed entry this node applied",
        ConstGauge::new(raft.last_applied_index as i64),
    );
    registry.register(
        "live_entries",
        "(minute, video) counts the live aggregates keep; at live.max-entries minutes ahead of the live clock are forgotten first (farthest first), then the oldest",
        ConstGauge::new(snapshot.live_entries as i64),
    );
    if let Some(reachable) = snapshot.broker_reachable {
        registry.register(
            "broker_reachable",
            "1 when the last check reached the Kafka brokers",
            ConstGauge::new(i64::from(reachable)),
        );
    }

    let job_labels = |j: &JobFigures| JobLabels {
        job: j.job.clone(),
        outcome: j.outcome.clone(),
    };
    registry.register(
        "job_runs",
        "Lakehouse job runs in the replicated history (up to 200: the newest, always including each job's newest and the cluster's first), by job and outcome",
        Labelled(
            snapshot
                .jobs
                .iter()
                .map(|j| (job_labels(j), ConstGauge::new(j.runs as i64)))
                .collect(),
        ),
    );
    registry.register(
        "job_last_duration_seconds",
        "Duration of the newest finished run, by job and outcome",
        Labelled(
            snapshot
                .jobs
                .iter()
                .filter_map(|j| Some((job_labels(j), ConstGauge::new(j.last_duration_s?))))
                .collect(),
        ),
    );

    registry.register(
        "job_last_run_failed",
        "1 when the job's newest finished run failed, 0 when it succeeded",
        Labelled(
            snapshot
                .last_run_failed
                .iter()
                .map(|(job, failed)| {
                    (
                        JobLabel { job: job.clone() },
                        ConstGauge::new(i64::from(*failed)),
                    )
                })
                .collect(),
        ),
    );

    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)
        .expect("writing to a String cannot fail");
    text
}

/// Job runs grouped by job and outcome, from `(job, status, duration)` of each
/// run in the history, newest first (the replicated state's order).
pub fn job_figures<'a>(
    runs: impl IntoIterator<Item = (&'a str, &'a str, Option<f64>)>,
) -> Vec<JobFigures> {
    let mut by_key: BTreeMap<(String, String), JobFigures> = BTreeMap::new();
    for (job, outcome, duration) in runs {
        let figures = by_key
            .entry((job.to_string(), outcome.to_string()))
            .or_insert_with(|| JobFigures {
                job: job.to_string(),
                outcome: outcome.to_string(),
                runs: 0,
                last_duration_s: None,
            });
        figures.runs += 1;
        if figures.last_duration_s.is_none() {
            figures.last_duration_s = duration;
        }
    }
    by_key.into_values().collect()
}

/// Whether each job's newest finished run failed. Unlike a count of failed
/// runs in the history, which stops rising once failures fill it, this stays
/// true while a job keeps failing.
#[derive(Debug, Default)]
pub struct JobOutcomes(BTreeMap<String, bool>);

impl JobOutcomes {
    /// Takes in `(job, status)` of each run in the history, newest first,
    /// and answers every job's outcome seen so far: a job whose finished runs
    /// the history no longer holds keeps the outcome seen before.
    pub fn update<'a>(
        &mut self,
        runs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> BTreeMap<String, bool> {
        let mut newest = BTreeMap::new();
        for (job, status) in runs {
            let failed = match status {
                "failed" => true,
                "succeeded" => false,
                _ => continue,
            };
            newest.entry(job).or_insert(failed);
        }
        for (job, failed) in newest {
            self.0.insert(job.to_string(), failed);
        }
        self.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Figures that differ by partition and by series, so that a value under
    /// the wrong label or the wrong name shows.
    fn partition(p: i32) -> PartitionFigures {
        let base = 1_000 * (p as u64 + 1);
        let commit_seconds = Histogram::new([0.01, 0.1, 1.0]);
        for _ in 0..=p {
            commit_seconds.observe(0.05);
        }
        PartitionFigures {
            partition: p,
            consumed: base + 1,
            accepted: base + 2,
            duplicates: base + 3,
            rejected_by_reason: BTreeMap::from([("not_json".to_string(), base + 4)]),
            committed_offset: base as i64 + 5,
            lag: Some(base as i64 + 6),
            checkpoint_age_s: Some(base as f64 + 7.5),
            restarts: base + 8,
            commit_retries: base + 9,
            consumer_errors: base + 10,
            skipped_offsets: base + 11,
            commit_seconds,
        }
    }

    #[test]
    fn partitions_jobs_and_raft_are_exposed_with_their_labels() {
        let snapshot = MetricsSnapshot {
            raft: RaftFigures {
                term: 7,
                leader: Some(2),
                is_leader: false,
                last_log_index: 40,
                last_applied_index: 39,
            },
            broker_reachable: Some(true),
            partitions: vec![partition(0), partition(3)],
            // Newest first: the gold run of 3 s is the latest.
            jobs: job_figures([
                ("enrich", "running", None),
                ("gold", "succeeded", Some(3.0)),
                ("gold", "failed", Some(0.5)),
                ("gold", "succeeded", Some(2.0)),
            ]),
            last_run_failed: JobOutcomes::default().update([
                ("enrich", "running"),
                ("gold", "succeeded"),
                ("enrich", "failed"),
                ("gold", "failed"),
            ]),
            live_entries: 12,
        };
        let text = render(&snapshot);
        let mut expected = vec![
            "# TYPE streamreel_events_accepted_total counter".to_string(),
            "# TYPE streamreel_partition_lag gauge".to_string(),
            "# TYPE streamreel_bronze_commit_seconds histogram".to_string(),
            "streamreel_raft_term 7".to_string(),
            "streamreel_raft_leader 2".to_string(),
            "streamreel_raft_is_leader 0".to_string(),
            "streamreel_raft_last_log_index 40".to_string(),
            "streamreel_raft_commit_index 39".to_string(),
            "streamreel_broker_reachable 1".to_string(),
            "streamreel_live_entries 12".to_string(),
            "streamreel_job_runs{job=\"gold\",outcome=\"succeeded\"} 2".to_string(),
            "streamreel_job_runs{job=\"gold\",outcome=\"failed\"} 1".to_string(),
            "streamreel_job_last_duration_seconds{job=\"gold\",outcome=\"succeeded\"} 3.0"
                .to_string(),
            "streamreel_job_runs{job=\"enrich\",outcome=\"running\"} 1".to_string(),
            // A running job's newest finished run is the one before it.
            "streamreel_job_last_run_failed{job=\"enrich\"} 1".to_string(),
            "streamreel_job_last_run_failed{job=\"gold\"} 0".to_string(),
        ];
        for (p, base) in [(0, 1_000), (3, 4_000)] {
            let label = format!("{{partition=\"{p}\"}}");
            for (name, value) in [
                ("events_in_total", format!("{}", base + 1)),
                ("events_accepted_total", format!("{}", base + 2)),
                ("events_duplicate_total", format!("{}", base + 3)),
                ("partition_committed_offset", format!("{}", base + 5)),
                ("partition_lag", format!("{}", base + 6)),
                ("checkpoint_age_seconds", format!("{}.5", base + 7)),
                ("partition_restarts_total", format!("{}", base + 8)),
                ("bronze_commit_retries_total", format!("{}", base + 9)),
                ("consumer_errors_total", format!("{}", base + 10)),
                ("skipped_offsets_total", format!("{}", base + 11)),
                ("bronze_commit_seconds_count", format!("{}", p + 1)),
            ] {
                expected.push(format!("streamreel_{name}{label} {value}"));
            }
            expected.push(format!(
                "streamreel_events_rejected_total{{partition=\"{p}\",reason=\"not_json\"}} {}",
                base + 4
            ));
        }
        for line in expected {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("job_last_duration_seconds{job=\"enrich\""));
    }

    #[test]
    fn a_jobs_outcome_outlives_its_finished_runs_in_the_history() {
        let mut outcomes = JobOutcomes::default();
        outcomes.update([("vacuum", "failed"), ("gold", "succeeded")]);
        // The history dropped vacuum's failed run when its next one started.
        let now = outcomes.update([("vacuum", "running"), ("gold", "failed")]);
        assert_eq!(
            now,
            BTreeMap::from([("gold".to_string(), true), ("vacuum".to_string(), true)])
        );
        let later = outcomes.update([("vacuum", "succeeded")]);
        assert!(!later["vacuum"]);
        assert!(later["gold"]);
    }

    #[test]
    fn a_partition_not_owned_has_no_series_at_all() {
        let text = render(&MetricsSnapshot {
            partitions: vec![partition(1)],
            ..MetricsSnapshot::default()
        });
        assert!(text.contains("partition=\"1\""));
        let text = render(&MetricsSnapshot::default());
        assert!(!text.contains("partition="), "{text}");
        assert!(
            !text.contains("events_accepted"),
            "no empty families: {text}"
        );
        assert!(!text.contains("broker_reachable"));
    }
}
