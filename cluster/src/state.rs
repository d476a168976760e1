//! The replicated state, as a pure value: who owns each partition at which
//! epoch, each partition's checkpoint and de-duplication window, the live
//! aggregates and the job history. [`ClusterState::apply`] is deterministic, so
//! every replica that applies the same log holds the same state.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::dedup::{DedupLog, DedupSettings};
use crate::live::{LiveAggregates, LiveImage};
use crate::types::{
    CheckpointIncrement, Command, CommandResult, Epoch, FIRST_JOB_RUN_ID, JobRunRecord, NodeId,
    PartitionId, Refusal,
};

/// Settings every replica must share (they come from the one cluster config;
/// members compare them in their pings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateSettings {
    pub dedup: DedupSettings,
    /// Live aggregates are kept this far (event time) behind the newest event.
    pub live_retention_us: i64,
    /// ... and at most this many (minute, video) counts, the oldest minutes
    /// forgotten first.
    pub live_max_entries: usize,
    /// How many job runs the history keeps.
    pub job_history: usize,
}

/// Where a partition stands as of its owner's last checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The epoch of the owner that wrote it.
    pub epoch: Epoch,
    pub last_offset: i64,
    pub delta_version: i64,
    pub at_ms: i64,
}

pub struct PartitionState {
    pub owner: Option<NodeId>,
    pub epoch: Epoch,
    pub checkpoint: Option<Checkpoint>,
    /// The ids of the partition's window, without lookup: only its owner
    /// decides, from a [`crate::dedup::DedupWindow`] built from this log.
    pub dedup: DedupLog,
}

/// Owner and epoch of every partition: what the supervisors and the coordinator act on.
pub type Ownership = BTreeMap<PartitionId, (Option<NodeId>, Epoch)>;

pub struct ClusterState {
    settings: StateSettings,
    partitions: BTreeMap<PartitionId, PartitionState>,
    live: LiveAggregates,
    jobs: VecDeque<JobRunRecord>,
}

impl ClusterState {
    pub fn new(settings: StateSettings) -> ClusterState {
        ClusterState {
            settings,
            partitions: BTreeMap::new(),
            live: LiveAggregates::default(),
            jobs: VecDeque::new(),
        }
    }

    /// Applies one command. `members` are the cluster's members at this point of the log.
    pub fn apply(&mut self, command: &Command, members: &BTreeSet<NodeId>) -> CommandResult {
        match command {
            Command::AddPartitions { partitions } => {
                for partition in partitions {
                    self.partitions
                        .entry(*partition)
                        .or_insert_with(|| PartitionState {
                            owner: None,
                            epoch: 0,
                            checkpoint: None,
                            dedup: DedupLog::new(self.settings.dedup),
                        });
                }
                CommandResult::Done
            }
            Command::Assign {
                partition,
                to,
                expected_epoch,
            } => {
                if !members.contains(to) {
                    return CommandResult::Refused(Refusal::NotAMember { node: *to });
                }
                let Some(state) = self.partitions.get_mut(partition) else {
                    return refused_unknown(*partition);
                };
                // A forwarded proposal whose answer was lost is proposed
                // again; its second copy finds its own decision applied (only
                // an `Assign` from `expected_epoch` reaches the next epoch) and
                // answers as the first did, so a rebalance does not stop at it.
                if state.epoch == expected_epoch.saturating_add(1) && state.owner == Some(*to) {
                    return CommandResult::Assigned {
                        partition: *partition,
                        owner: *to,
                        epoch: state.epoch,
                    };
                }
                if state.epoch != *expected_epoch {
                    return CommandResult::Refused(Refusal::StaleEpoch {
                        partition: *partition,
                        current: state.epoch,
                        given: *expected_epoch,
                    });
                }
                state.epoch += 1;
                state.owner = Some(*to);
                CommandResult::Assigned {
                    partition: *partition,
                    owner: *to,
                    epoch: state.epoch,
                }
            }
            Command::Checkpoint(increment) => self.checkpoint(increment),
            Command::ForgetMember { node } => {
                for state in self.partitions.values_mut() {
                    if state.owner == Some(*node) {
                        state.owner = None;
                    }
                }
                CommandResult::Done
            }
            Command::RecordJobRun(run) => {
                match self.jobs.iter_mut().find(|r| r.id == run.id) {
                    Some(existing) => *existing = run.clone(),
                    None => {
                        self.jobs.push_front(run.clone());
                        self.bound_job_history();
                    }
                }
                CommandResult::Done
            }
        }
    }

    /// Drops the oldest runs beyond the bound, but never a job's newest run
    /// nor the cluster's first run: a new leader takes each job's next run
    /// from the job's newest (a job that runs hourly would otherwise fall out
    /// behind the runs of one every 10 s), and a job that has never run from
    /// the first. The first run is known by its id, not by being the oldest
    /// kept, so that replicas replaying from different snapshots keep the same
    /// runs.
    fn bound_job_history(&mut self) {
        while self.jobs.len() > self.settings.job_history {
            let superseded = (1..self.jobs.len()).rev().find(|&i| {
                let job = &self.jobs[i].job;
                self.jobs[i].id != FIRST_JOB_RUN_ID
                    && self.jobs.iter().take(i).any(|newer| &newer.job == job)
            });
            match superseded {
                Some(i) => {
                    self.jobs.remove(i);
                }
                None => break,
            }
        }
    }

    fn checkpoint(&mut self, increment: &CheckpointIncrement) -> CommandResult {
        let partition = increment.partition;
        let Some(state) = self.partitions.get_mut(&partition) else {
            return refused_unknown(partition);
        };
        if increment.epoch != state.epoch || state.owner.is_none() {
            return CommandResult::Refused(Refusal::StaleEpoch {
                partition,
                current: state.epoch,
                given: increment.epoch,
            });
        }
        // A forwarded proposal whose answer timed out is proposed again; its
        // second copy finds itself applied and is a success, not a refusal
        // (a delta version names one bronze commit).
        if state.checkpoint.is_some_and(|c| {
            c.epoch == increment.epoch
                && c.last_offset == increment.last_offset
                && c.delta_version == increment.delta_version
        }) {
            return CommandResult::Done;
        }
        let current = state.checkpoint.map_or(-1, |c| c.last_offset);
        if increment.after_offset != current {
            return CommandResult::Refused(Refusal::CheckpointMoved {
                partition,
                current,
                expected: increment.after_offset,
            });
        }
        if increment.last_offset < increment.after_offset {
            return CommandResult::Refused(Refusal::OffsetWentBack {
                partition,
                after: increment.after_offset,
                last: increment.last_offset,
            });
        }
        for id in &increment.new_ids {
            state.dedup.push(*id, increment.accepted_at_us);
        }
        state.checkpoint = Some(Checkpoint {
            epoch: increment.epoch,
            last_offset: increment.last_offset,
            delta_version: increment.delta_version,
            at_ms: increment.at_ms,
        });
        self.live.fold(
            &increment.live,
            self.settings.live_retention_us,
            increment.at_ms.saturating_mul(1_000),
        );
        self.live.cap(self.settings.live_max_entries);
        CommandResult::Done
    }

    pub fn ownership(&self) -> Ownership {
        self.partitions
            .iter()
            .map(|(p, s)| (*p, (s.owner, s.epoch)))
            .collect()
    }

    pub fn partition(&self, partition: PartitionId) -> Option<&PartitionState> {
        self.partitions.get(&partition)
    }

    pub fn partitions(&self) -> impl Iterator<Item = (PartitionId, &PartitionState)> {
        self.partitions.iter().map(|(p, s)| (*p, s))
    }

    pub fn live(&self) -> &LiveAggregates {
        &self.live
    }

    /// Job runs, newest first.
    pub fn jobs(&self) -> impl Iterator<Item = &JobRunRecord> {
        self.jobs.iter()
    }

    pub fn settings(&self) -> StateSettings {
        self.settings
    }

    /// The state as plain data, for a snapshot.
    pub fn image(&self) -> StateImage {
        StateImage {
            partitions: self
                .partitions
                .iter()
                .map(|(p, s)| PartitionImage {
                    partition: *p,
                    owner: s.owner,
                    epoch: s.epoch,
                    checkpoint: s.checkpoint,
                    dedup: s.dedup.entries().collect(),
                })
                .collect(),
            live: self.live.image(),
            jobs: self.jobs.iter().cloned().collect(),
        }
    }

    pub fn from_image(settings: StateSettings, image: StateImage) -> ClusterState {
        ClusterState {
            settings,
            partitions: image
                .partitions
                .into_iter()
                .map(|p| {
                    (
                        p.partition,
                        PartitionState {
                            owner: p.owner,
                            epoch: p.epoch,
                            checkpoint: p.checkpoint,
                            dedup: DedupLog::from_entries(settings.dedup, p.dedup),
                        },
                    )
                })
                .collect(),
            live: image.live.into(),
            jobs: image.jobs.into_iter().collect(),
        }
    }
}

fn refused_unknown(partition: PartitionId) -> CommandResult {
    CommandResult::Refused(Refusal::UnknownPartition { partition })
}

/// [`ClusterState`] as plain data: what a snapshot holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateImage {
    pub partitions: Vec<PartitionImage>,
    pub live: LiveImage,
    pub jobs: Vec<JobRunRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionImage {
    pub partition: PartitionId,
    pub owner: Option<NodeId>,
    pub epoch: Epoch,
    pub checkpoint: Option<Checkpoint>,
    pub dedup: Vec<(u128, i64)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::LiveCount;
    use proptest::prelude::*;
    use std::time::Duration;

    fn settings() -> StateSettings {
        StateSettings {
            dedup: DedupSettings {
                window_events: 3,
                window: Duration::ZERO,
                max_ids: 3,
            },
            live_retention_us: i64::MAX / 2,
            live_max_entries: usize::MAX,
            job_history: 2,
        }
    }

    fn members() -> BTreeSet<NodeId> {
        [1, 2, 3].into()
    }

    fn increment(partition: PartitionId, epoch: Epoch, last_offset: i64) -> CheckpointIncrement {
        increment_after(partition, epoch, -1, last_offset)
    }

    fn increment_after(
        partition: PartitionId,
        epoch: Epoch,
        after_offset: i64,
        last_offset: i64,
    ) -> CheckpointIncrement {
        CheckpointIncrement {
            partition,
            epoch,
            after_offset,
            last_offset,
            delta_version: last_offset,
            new_ids: vec![last_offset as u128],
            accepted_at_us: 0,
            live: vec![LiveCount {
                video_id: "v".into(),
                minute_us: 0,
                counts: [1, 0, 0, 0],
            }],
            at_ms: 0,
        }
    }

    fn with_partitions(n: i32) -> ClusterState {
        let mut state = ClusterState::new(settings());
        state.apply(
            &Command::AddPartitions {
                partitions: (0..n).collect(),
            },
            &members(),
        );
        state
    }

    fn assign(partition: PartitionId, to: NodeId, expected_epoch: Epoch) -> Command {
        Command::Assign {
            partition,
            to,
            expected_epoch,
        }
    }

    #[test]
    fn an_assignment_carries_the_epoch_it_replaces() {
        let mut state = with_partitions(2);
        let assigned = CommandResult::Assigned {
            partition: 0,
            owner: 1,
            epoch: 1,
        };
        assert_eq!(state.apply(&assign(0, 1, 0), &members()), assigned);
        // A deposed leader's decision changes nothing.
        assert!(matches!(
            state.apply(&assign(0, 2, 0), &members()),
            CommandResult::Refused(Refusal::StaleEpoch { current: 1, .. })
        ));
        assert_eq!(state.ownership()[&0], (Some(1), 1));
        // A second copy of the applied decision answers as the first did and
        // changes nothing either.
        assert_eq!(state.apply(&assign(0, 1, 0), &members()), assigned);
        assert_eq!(state.ownership()[&0], (Some(1), 1));
        assert!(matches!(
            state.apply(&assign(0, 9, 1), &members()),
            CommandResult::Refused(Refusal::NotAMember { node: 9 })
        ));
        assert!(matches!(
            state.apply(&assign(7, 1, 0), &members()),
            CommandResult::Refused(Refusal::UnknownPartition { partition: 7 })
        ));
    }

    #[test]
    fn checkpoints_keep_at_most_live_max_entries_counts() {
        let settings = StateSettings {
            live_max_entries: 2,
            ..settings()
        };
        let mut state = ClusterState::new(settings);
        state.apply(
            &Command::AddPartitions {
                partitions: (0..1).collect(),
            },
            &members(),
        );
        state.apply(&assign(0, 1, 0), &members());
        for offset in 0..3 {
            let mut step = increment_after(0, 1, offset - 1, offset);
            step.live[0].minute_us = offset * crate::live::MINUTE_US;
            step.at_ms = 60_000 * 3;
            assert_eq!(
                state.apply(&Command::Checkpoint(step), &members()),
                CommandResult::Done
            );
        }
        let minutes: Vec<i64> = state.live().all().map(|(minute, _, _)| minute).collect();
        assert_eq!(
            minutes,
            vec![crate::live::MINUTE_US, 2 * crate::live::MINUTE_US],
            "the oldest minute went"
        );
        let restored = ClusterState::from_image(settings, state.image());
        assert_eq!(restored.live(), state.live());
    }

    #[test]
    fn checkpoints_from_a_stale_epoch_are_refused_and_change_nothing() {
        let mut state = with_partitions(1);
        state.apply(&assign(0, 1, 0), &members());
        assert_eq!(
            state.apply(&Command::Checkpoint(increment(0, 1, 10)), &members()),
            CommandResult::Done
        );
        state.apply(&assign(0, 2, 1), &members());
        assert!(matches!(
            state.apply(
                &Command::Checkpoint(increment_after(0, 1, 10, 20)),
                &members()
            ),
            CommandResult::Refused(Refusal::StaleEpoch {
                current: 2,
                given: 1,
                ..
            })
        ));
        let partition = state.partition(0).unwrap();
        assert_eq!(partition.checkpoint.unwrap().last_offset, 10);
        assert_eq!(partition.dedup.len(), 1);
        assert_eq!(state.live().video("v"), vec![(0, [1, 0, 0, 0])]);
    }

    #[test]
    fn an_increment_folds_only_onto_the_checkpoint_it_continues() {
        let mut state = with_partitions(1);
        state.apply(&assign(0, 1, 0), &members());
        let first = Command::Checkpoint(increment_after(0, 1, -1, 10));
        assert_eq!(state.apply(&first, &members()), CommandResult::Done);
        // The same increment again (a retry whose answer was lost) succeeds
        // and folds nothing twice.
        assert_eq!(state.apply(&first, &members()), CommandResult::Done);
        assert_eq!(state.live().video("v"), vec![(0, [1, 0, 0, 0])]);
        assert_eq!(state.partition(0).unwrap().dedup.len(), 1);
        // Another increment from the old place (another bronze commit) is refused.
        let other = CheckpointIncrement {
            delta_version: 11,
            ..increment_after(0, 1, -1, 10)
        };
        assert!(matches!(
            state.apply(&Command::Checkpoint(other), &members()),
            CommandResult::Refused(Refusal::CheckpointMoved {
                current: 10,
                expected: -1,
                ..
            })
        ));
        assert!(matches!(
            state.apply(
                &Command::Checkpoint(increment_after(0, 1, 10, 9)),
                &members()
            ),
            CommandResult::Refused(Refusal::OffsetWentBack { .. })
        ));
        // A fence checkpoint: no new offsets, same place.
        assert_eq!(
            state.apply(
                &Command::Checkpoint(increment_after(0, 1, 10, 10)),
                &members()
            ),
            CommandResult::Done
        );
    }

    #[test]
    fn a_forgotten_member_owns_nothing_but_epochs_stay() {
        let mut state = with_partitions(2);
        state.apply(&assign(0, 1, 0), &members());
        state.apply(&assign(1, 2, 0), &members());
        state.apply(&Command::ForgetMember { node: 1 }, &members());
        assert_eq!(state.ownership()[&0], (None, 1));
        assert_eq!(state.ownership()[&1], (Some(2), 1));
        // A checkpoint of the forgotten owner is refused.
        assert!(matches!(
            state.apply(&Command::Checkpoint(increment(0, 1, 5)), &members()),
            CommandResult::Refused(Refusal::StaleEpoch { .. })
        ));
    }

    #[test]
    fn the_job_history_is_bounded_and_updates_runs_in_place() {
        let mut state = with_partitions(0);
        let run = |id, status: &str| JobRunRecord {
            id,
            job: if id == 2 { "vacuum" } else { "gold" }.into(),
            trigger: "schedule".into(),
            attempt: 1,
            started_at_us: 0,
            ended_at_us: None,
            status: status.into(),
            rows: 0,
            detail: String::new(),
            error: None,
        };
        for id in 1..=5 {
            state.apply(&Command::RecordJobRun(run(id, "running")), &members());
        }
        state.apply(&Command::RecordJobRun(run(5, "succeeded")), &members());
        let jobs: Vec<_> = state.jobs().map(|r| (r.id, r.status.as_str())).collect();
        // Run 2, the only vacuum run, outlives gold's runs 3 and 4: it is its
        // job's newest. Run 1 outlives them too: it is the cluster's first.
        assert_eq!(jobs, [(5, "succeeded"), (2, "running"), (1, "running")]);
    }

    /// What a generated step does; the command is built against the state at
    /// that point, so that checkpoints continue from the current one.
    #[derive(Debug, Clone)]
    enum Step {
        Assign {
            partition: i32,
            to: NodeId,
            stale: bool,
        },
        Continue {
            partition: i32,
            ids: u8,
            offsets: i64,
        },
        Forget {
            node: NodeId,
        },
        Job {
            id: u64,
            running: bool,
        },
        AddPartition {
            partition: i32,
        },
    }

    fn any_step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0i32..4, 1u64..4, any::<bool>()).prop_map(|(partition, to, stale)| Step::Assign {
                partition,
                to,
                stale
            }),
            (0i32..4, 0u8..5, 1i64..10).prop_map(|(partition, ids, offsets)| Step::Continue {
                partition,
                ids,
                offsets
            }),
            (1u64..4).prop_map(|node| Step::Forget { node }),
            (1u64..5, any::<bool>()).prop_map(|(id, running)| Step::Job { id, running }),
            (0i32..5).prop_map(|partition| Step::AddPartition { partition }),
        ]
    }

    fn command_for(state: &ClusterState, step: &Step, n: usize) -> Command {
        let current = |partition: i32| {
            state
                .partitions()
                .find(|(p, _)| *p == partition)
                .map(|(_, s)| (s.epoch, s.checkpoint.map_or(-1, |c| c.last_offset)))
                .unwrap_or((0, -1))
        };
        match step {
            Step::Assign {
                partition,
                to,
                stale,
            } => {
                let (epoch, _) = current(*partition);
                assign(
                    *partition,
                    *to,
                    if *stale {
                        epoch.saturating_sub(1)
                    } else {
                        epoch
                    },
                )
            }
            Step::Continue {
                partition,
                ids,
                offsets,
            } => {
                let (epoch, after) = current(*partition);
                let last = after + offsets;
                let mut increment = increment_after(*partition, epoch, after, last);
                increment.new_ids = (0..*ids).map(|i| (n as u128) << 8 | i as u128).collect();
                increment.accepted_at_us = n as i64 * 1_000_000;
                increment.live[0].minute_us = n as i64 / 3 * 60_000_000;
                Command::Checkpoint(increment)
            }
            Step::Forget { node } => Command::ForgetMember { node: *node },
            Step::Job { id, running } => Command::RecordJobRun(JobRunRecord {
                id: *id,
                job: "enrich".into(),
                trigger: "schedule".into(),
                attempt: 1,
                started_at_us: n as i64,
                ended_at_us: (!running).then_some(n as i64 + 1),
                status: if *running { "running" } else { "succeeded" }.into(),
                rows: n as u64,
                detail: String::new(),
                error: None,
            }),
            Step::AddPartition { partition } => Command::AddPartitions {
                partitions: vec![*partition],
            },
        }
    }

    proptest! {
        /// A state rebuilt from its image applies the next commands exactly as
        /// the original: ownership, chained checkpoints with windows that
        /// evict, members leaving, job history and new partitions.
        #[test]
        fn an_image_round_trips(steps in proptest::collection::vec(any_step(), 0..80), split in 0usize..80) {
            let mut state = with_partitions(3);
            let split = split.min(steps.len());
            for (n, step) in steps[..split].iter().enumerate() {
                let command = command_for(&state, step, n);
                state.apply(&command, &members());
            }
            let mut copy = ClusterState::from_image(settings(), state.image());
            prop_assert_eq!(copy.image(), state.image());
            for (n, step) in steps[split..].iter().enumerate() {
                let command = command_for(&state, step, split + n);
                prop_assert_eq!(state.apply(&command, &members()), copy.apply(&command, &members()));
            }
            prop_assert_eq!(copy.image(), state.image());
        }
    }
}
