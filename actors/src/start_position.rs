//! Where a partition starts reading, decided from what bronze committed and
//! what the broker still holds. Pure, so every case is unit-tested.

use streamreel_protocol::parse_event;
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
    #[error(
        "partition {partition}: the broker's record at offset {offset} is not the event bronze \
         ingested there (event_id {in_bronze:?} in bronze, {on_broker:?} on the broker): the \
         topic was recreated or replaced and its new log has grown past bronze's offset; reading \
         on would skip the new log's earlier records, so the partition stays stopped"
    )]
    Replaced {
        partition: i32,
        offset: i64,
        in_bronze: String,
        /// `None` when the broker's record is not a valid event.
        on_broker: Option<String>,
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

/// Whether `on_broker`, the broker's record at `offset`, is the event bronze
/// ingested from that offset (`in_bronze`, its `event_id`). Offsets alone
/// cannot tell a recreated topic once its new log has grown past bronze's
/// offset; a record bronze accepted once parses to the same event again.
pub fn same_record(
    partition: i32,
    offset: i64,
    in_bronze: &str,
    on_broker: &[u8],
) -> Result<(), MissingOffsets> {
    match parse_event(on_broker) {
        Ok(event) if event.event_id == in_bronze => Ok(()),
        parsed => Err(MissingOffsets::Replaced {
            partition,
            offset,
            in_bronze: in_bronze.to_string(),
            on_broker: parsed.ok().map(|event| event.event_id.into_owned()),
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

    #[test]
    fn a_record_is_the_same_only_if_it_is_the_event_bronze_holds() {
        let record = |id: &str| {
            format!(
                r#"{{"event_id":"{id}","session_id":"s","user_id":"u","video_id":"v",
                "event_type":"play","position_s":0,"event_time":"2026-11-24T07:00:00Z","region":"eu"}}"#
            )
        };
        assert_eq!(same_record(2, 7, "e1", record("e1").as_bytes()), Ok(()));
        let error = same_record(2, 7, "e1", record("e9").as_bytes()).unwrap_err();
        assert_eq!(
            error,
            MissingOffsets::Replaced {
                partition: 2,
                offset: 7,
                in_bronze: "e1".into(),
                on_broker: Some("e9".into())
            }
        );
        let text = error.to_string();
        assert!(
            text.contains("partition 2") && text.contains("offset 7") && text.contains("recreated")
        );
        assert!(matches!(
            same_record(2, 7, "e1", b"not json"),
            Err(MissingOffsets::Replaced {
                on_broker: None,
                ..
            })
        ));
    }
}
