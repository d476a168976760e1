//! Where a partition starts reading, decided from what bronze committed and
//! what the broker still holds. Pure, so every case is unit-tested.

use thiserror::Error;

/// What to do when the offset bronze expects next is gone from the broker
/// (`kafka.on-missing-offsets`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnMissingOffsets {
    /// Stop the partition and say why: the operator decides.
    #[default]
    Fail,
    /// Skip to the earliest offset the broker holds, logging and counting
    /// what was skipped.
    ResumeAtEarliest,
}

/// The first offset to read, and how many offsets were skipped to get there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    pub offset: i64,
    pub skipped: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MissingOffsets {
    #[error(
        "partition {partition}: the next offset to ingest is {expected} but the broker holds only \
         {low}..{high} (records deleted before they were ingested); set \
         kafka.on-missing-offsets = \"resume-at-earliest\" to skip them"
    )]
    Deleted {
        partition: i32,
        expected: i64,
        low: i64,
        high: i64,
    },
    #[error(
        "partition {partition}: bronze has ingested up to offset {committed} but the broker's log \
         ends at {high} (range {low}..{high}): the topic was recreated or truncated; reading it \
         would move offsets backwards, so the partition stays stopped"
    )]
    Behind {
        partition: i32,
        committed: i64,
        low: i64,
        high: i64,
    },
}

/// Decides where `partition` starts. `committed` is the last offset bronze
/// holds; `low..high` is the broker's range (high: the next offset it writes).
pub fn start_position(
    partition: i32,
    committed: Option<i64>,
    (low, high): (i64, i64),
    policy: OnMissingOffsets,
) -> Result<Start, MissingOffsets> {
    let Some(committed) = committed else {
        return Ok(Start {
            offset: low,
            skipped: 0,
        });
    };
    let expected = committed + 1;
    if expected > high {
        return Err(MissingOffsets::Behind {
            partition,
            committed,
            low,
            high,
        });
    }
    if expected >= low {
        return Ok(Start {
            offset: expected,
            skipped: 0,
        });
    }
    match policy {
        OnMissingOffsets::Fail => Err(MissingOffsets::Deleted {
            partition,
            expected,
            low,
            high,
        }),
        OnMissingOffsets::ResumeAtEarliest => Ok(Start {
            offset: low,
            skipped: low - expected,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OnMissingOffsets::*;

    #[test]
    fn a_fresh_partition_starts_at_the_earliest_offset() {
        assert_eq!(
            start_position(0, None, (40, 90), Fail),
            Ok(Start {
                offset: 40,
                skipped: 0
            })
        );
    }

    #[test]
    fn a_resume_within_the_range_continues_after_the_committed_offset() {
        for committed in [39, 50, 89] {
            assert_eq!(
                start_position(0, Some(committed), (40, 90), Fail),
                Ok(Start {
                    offset: committed + 1,
                    skipped: 0
                })
            );
        }
    }

    #[test]
    fn deleted_offsets_fail_unless_the_operator_chose_to_skip_them() {
        let error = start_position(3, Some(9), (40, 90), Fail).unwrap_err();
        assert_eq!(
            error,
            MissingOffsets::Deleted {
                partition: 3,
                expected: 10,
                low: 40,
                high: 90
            }
        );
        let text = error.to_string();
        assert!(text.contains("partition 3") && text.contains("10") && text.contains("40..90"));
        assert_eq!(
            start_position(3, Some(9), (40, 90), ResumeAtEarliest),
            Ok(Start {
                offset: 40,
                skipped: 30
            })
        );
    }

    #[test]
    fn a_log_behind_bronze_never_moves_offsets_backwards() {
        for policy in [Fail, ResumeAtEarliest] {
            assert!(matches!(
                start_position(1, Some(500), (0, 20), policy),
                Err(MissingOffsets::Behind {
                    committed: 500,
                    high: 20,
                    ..
                })
            ));
        }
        // Exactly caught up: nothing to read yet, which is fine.
        assert_eq!(
            start_position(1, Some(19), (0, 20), Fail).map(|s| s.offset),
            Ok(20)
        );
    }
}
