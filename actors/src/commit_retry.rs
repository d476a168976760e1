//! What a partition actor does after a failed bronze commit: the commit may
//! have landed after all, or another writer may have moved the partition's
//! marks, which only reading them afresh tells. [`retry_decision`] decides
//! from the marks; [`commit_with_retries`] is the loop around it, over a
//! [`CommitTarget`] so that it is tested without a lake.

use std::time::Duration;

use tracing::warn;

use streamreel_cluster::Epoch;
use streamreel_lake::{LakeError, PartitionMarks};
use streamreel_protocol::PartitionCheckpoint;

use crate::error::ActorError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// The marks are as this writer left them: commit again.
    Retry,
    /// The failed attempt landed after all (the error came after the commit).
    Landed,
    /// Another writer moved the partition's marks.
    Fenced,
}

/// What a failed bronze commit of offsets up to `last_offset` leaves to do,
/// given the partition's marks read afresh and the offset this writer had
/// committed before (`before`).
pub fn retry_decision(
    marks: PartitionMarks,
    before: Option<i64>,
    last_offset: i64,
    epoch: Epoch,
) -> RetryDecision {
    if marks.epoch.is_some_and(|e| e != epoch) {
        RetryDecision::Fenced
    } else if marks.last_offset == Some(last_offset) {
        RetryDecision::Landed
    } else if marks.last_offset == before {
        RetryDecision::Retry
    } else {
        RetryDecision::Fenced
    }
}

/// What the retry loop needs of bronze.
pub(crate) trait CommitTarget {
    /// One attempt at the batch's commit, on the version the handle is at.
    async fn append(&mut self) -> Result<PartitionCheckpoint, ActorError>;
    /// The partition's marks at the newest version, where the handle then
    /// stays, so that the next `append` is compare-and-set against them.
    async fn marks(&mut self) -> Result<PartitionMarks, ActorError>;
    /// The version the handle is at.
    fn version(&self) -> Option<u64>;
}

/// How often and how patiently a commit is tried.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPlan {
    /// How many times the commit is tried: the first append, then each
    /// read of the marks (followed by an append when they allow one).
    pub attempts: u32,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

/// The commit being tried: offsets up to `last_offset` of `partition`, by a
/// writer of `epoch` whose last commit ended at `before`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Commit {
    pub partition: i32,
    pub before: Option<i64>,
    pub last_offset: i64,
    pub epoch: Epoch,
}

/// Commits, trying again with backoff when the lake fails. An append is
/// tried again only after the marks were read and found to be this
/// writer's: a read that fails is read again, never followed by an append,
/// since that append would go on top of versions whose marks were never
/// checked (a newer owner's fence among them). `on_retry` is called before
/// each append tried again.
pub(crate) async fn commit_with_retries(
    target: &mut impl CommitTarget,
    plan: RetryPlan,
    commit: Commit,
    mut on_retry: impl FnMut(),
) -> Result<PartitionCheckpoint, ActorError> {
    let Commit {
        partition,
        before,
        last_offset,
        epoch,
    } = commit;
    let mut backoff = plan.backoff_min;
    let mut attempt = 1;
    loop {
        let error = match target.append().await {
            Ok(checkpoint) => return Ok(checkpoint),
            Err(error) if is_fenced(&error) || attempt >= plan.attempts => return Err(error),
            Err(error) => error,
        };
        warn_before_retry(
            &commit,
            attempt,
            backoff,
            &error,
            "bronze commit failed; trying again",
        );
        let marks = loop {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(plan.backoff_max);
            attempt += 1;
            match target.marks().await {
                Ok(marks) => break marks,
                Err(error) if attempt < plan.attempts => warn_before_retry(
                    &commit,
                    attempt,
                    backoff,
                    &error,
                    "cannot read the partition's bronze marks; reading them again before the \
                     commit is tried again",
                ),
                Err(error) => return Err(error),
            }
        };
        match retry_decision(marks, before, last_offset, epoch) {
            RetryDecision::Retry => on_retry(),
            RetryDecision::Landed => {
                return Ok(PartitionCheckpoint {
                    partition,
                    last_offset,
                    delta_version: target.version().unwrap_or_default() as i64,
                });
            }
            RetryDecision::Fenced => {
                return Err(ActorError::from(LakeError::Fenced {
                    partition,
                    reason: format!(
                        "bronze marks moved to {marks:?} while this writer (epoch {epoch}) \
                         retried its commit"
                    ),
                }));
            }
        }
    }
}

fn warn_before_retry(
    commit: &Commit,
    attempt: u32,
    retry_in: Duration,
    error: &ActorError,
    what: &'static str,
) {
    warn!(
        partition = commit.partition,
        last_offset = commit.last_offset,
        attempt,
        retry_in_ms = retry_in.as_millis() as u64,
        %error,
        "{what}"
    );
}

/// Whether another writer took the partition.
pub fn is_fenced(error: &ActorError) -> bool {
    matches!(error, ActorError::Lake(error) if matches!(**error, LakeError::Fenced { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(last_offset: Option<i64>, epoch: u64) -> PartitionMarks {
        PartitionMarks {
            last_offset,
            epoch: Some(epoch),
        }
    }

    #[test]
    fn a_failed_commit_is_retried_only_while_the_marks_are_this_writers() {
        use RetryDecision::*;
        // Nothing moved: try again (also for a first commit).
        assert_eq!(retry_decision(marks(Some(99), 3), Some(99), 150, 3), Retry);
        assert_eq!(retry_decision(marks(None, 3), None, 150, 3), Retry);
        // The commit landed although the call failed.
        assert_eq!(
            retry_decision(marks(Some(150), 3), Some(99), 150, 3),
            Landed
        );
        // A newer owner, or other offsets under our epoch: never write again.
        assert_eq!(retry_decision(marks(Some(99), 4), Some(99), 150, 3), Fenced);
        assert_eq!(
            retry_decision(marks(Some(150), 4), Some(99), 150, 3),
            Fenced
        );
        assert_eq!(
            retry_decision(marks(Some(120), 3), Some(99), 150, 3),
            Fenced
        );
    }

    /// Bronze as a script: each call takes the next answer of its kind.
    struct Scripted {
        appends: Vec<Result<PartitionCheckpoint, ActorError>>,
        marks: Vec<Result<PartitionMarks, ActorError>>,
        appended: usize,
    }

    impl CommitTarget for Scripted {
        async fn append(&mut self) -> Result<PartitionCheckpoint, ActorError> {
            self.appended += 1;
            self.appends.remove(0)
        }
        async fn marks(&mut self) -> Result<PartitionMarks, ActorError> {
            self.marks.remove(0)
        }
        fn version(&self) -> Option<u64> {
            Some(42)
        }
    }

    const PLAN: RetryPlan = RetryPlan {
        attempts: 4,
        backoff_min: Duration::from_millis(1),
        backoff_max: Duration::from_millis(2),
    };

    const COMMIT: Commit = Commit {
        partition: 2,
        before: Some(99),
        last_offset: 150,
        epoch: 3,
    };

    fn lake_down() -> ActorError {
        ActorError::InjectedFault("the lake does not answer")
    }

    fn landed() -> PartitionCheckpoint {
        PartitionCheckpoint {
            partition: 2,
            last_offset: 150,
            delta_version: 7,
        }
    }

    async fn run(target: &mut Scripted) -> (Result<PartitionCheckpoint, ActorError>, u32) {
        let mut retries = 0;
        let result = commit_with_retries(target, PLAN, COMMIT, || retries += 1).await;
        (result, retries)
    }

    #[tokio::test]
    async fn a_commit_is_appended_again_only_after_its_marks_were_read() {
        // The marks cannot be read once, then show a newer owner: the
        // batch is fenced without a second append (one made after the
        // failed read would have landed on top of the newer owner's fence).
        let mut target = Scripted {
            appends: vec![Err(lake_down())],
            marks: vec![Err(lake_down()), Ok(marks(Some(120), 4))],
            appended: 0,
        };
        let (result, retries) = run(&mut target).await;
        assert!(is_fenced(&result.expect_err("fenced")));
        assert_eq!((target.appended, retries), (1, 0));

        // The marks are this writer's: appended again, and done.
        let mut target = Scripted {
            appends: vec![Err(lake_down()), Ok(landed())],
            marks: vec![Err(lake_down()), Ok(marks(Some(99), 3))],
            appended: 0,
        };
        let (result, retries) = run(&mut target).await;
        assert_eq!(result.expect("committed"), landed());
        assert_eq!((target.appended, retries), (2, 1));

        // The failed attempt had landed: done at the version the marks read.
        let mut target = Scripted {
            appends: vec![Err(lake_down())],
            marks: vec![Ok(marks(Some(150), 3))],
            appended: 0,
        };
        let (result, _) = run(&mut target).await;
        let checkpoint = result.expect("landed");
        assert_eq!(
            (checkpoint.last_offset, checkpoint.delta_version),
            (150, 42)
        );
        assert_eq!(target.appended, 1);
    }

    #[tokio::test]
    async fn a_commit_gives_up_after_its_attempts_whatever_failed() {
        // Marks never readable: the attempts run out with no second append.
        let mut target = Scripted {
            appends: vec![Err(lake_down())],
            marks: vec![Err(lake_down()), Err(lake_down()), Err(lake_down())],
            appended: 0,
        };
        let (result, retries) = run(&mut target).await;
        assert!(matches!(result, Err(ActorError::InjectedFault(_))));
        assert_eq!((target.appended, retries), (1, 0));
        assert!(target.marks.is_empty());

        // Appends keep failing: the first, then two after reads of the
        // marks, with a failed read between them: the four tries.
        let mut target = Scripted {
            appends: (0..3).map(|_| Err(lake_down())).collect(),
            marks: vec![
                Ok(marks(Some(99), 3)),
                Err(lake_down()),
                Ok(marks(Some(99), 3)),
            ],
            appended: 0,
        };
        let (result, retries) = run(&mut target).await;
        assert!(matches!(result, Err(ActorError::InjectedFault(_))));
        assert_eq!((target.appended, retries), (3, 2));
    }
}
