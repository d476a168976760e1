//! What a partition actor does after a failed bronze commit (pure): the
//! commit may have landed after all, or another writer may have moved the
//! partition's marks, which only reading them afresh tells.

use streamreel_cluster::Epoch;
use streamreel_lake::PartitionMarks;

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
}
