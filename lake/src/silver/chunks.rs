//! Which bronze offsets each silver chunk reads: a backlog is cut into chunks
//! of at most `max_events` events, so a run's memory does not grow with it.
//!
//! Whole partitions are packed together and a partition is only split when it
//! alone exceeds the limit: a user's sessions live in one partition, so a
//! chunk boundary inside a partition is the only way a session can straddle two
//! chunks (the second one then re-reads its earlier events, which costs more).

use std::collections::BTreeMap;

/// The offsets of one partition a chunk covers: `(after, up_to]`; `after` is
/// `None` when nothing of the partition was consumed yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetRange {
    pub after: Option<i64>,
    pub up_to: i64,
}

impl OffsetRange {
    /// An upper bound of the events in the range (offsets may have gaps).
    fn events(&self) -> u64 {
        (self.up_to - self.after.unwrap_or(-1)).max(0) as u64
    }
}

/// One chunk: a range per partition it reads.
pub type Chunk = BTreeMap<i32, OffsetRange>;

/// Cuts the pending ranges (per partition) into chunks of at most `max_events`.
pub fn plan_chunks(pending: &BTreeMap<i32, OffsetRange>, max_events: u64) -> Vec<Chunk> {
    let max_events = max_events.max(1);
    let mut chunks = Vec::new();
    let mut current = Chunk::new();
    let mut current_events = 0u64;
    for (&partition, &range) in pending {
        if range.events() == 0 {
            continue;
        }
        let mut rest = range;
        while rest.events() > max_events {
            let piece_end = rest.after.unwrap_or(-1) + max_events as i64;
            if !current.is_empty() {
                chunks.push(std::mem::take(&mut current));
                current_events = 0;
            }
            chunks.push(Chunk::from([(
                partition,
                OffsetRange {
                    after: rest.after,
                    up_to: piece_end,
                },
            )]));
            rest.after = Some(piece_end);
        }
        if current_events + rest.events() > max_events && !current.is_empty() {
            chunks.push(std::mem::take(&mut current));
            current_events = 0;
        }
        current_events += rest.events();
        current.insert(partition, rest);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// A SQL predicate for the rows of `chunk`.
pub fn chunk_sql(chunk: &Chunk) -> String {
    let terms: Vec<String> = chunk
        .iter()
        .map(|(partition, range)| match range.after {
            Some(after) => format!(
                "(kafka_partition = {partition} AND kafka_offset > {after} AND kafka_offset <= {})",
                range.up_to
            ),
            None => format!(
                "(kafka_partition = {partition} AND kafka_offset <= {})",
                range.up_to
            ),
        })
        .collect();
    if terms.is_empty() {
        "FALSE".to_string()
    } else {
        terms.join(" OR ")
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn range(after: Option<i64>, up_to: i64) -> OffsetRange {
        OffsetRange { after, up_to }
    }

    #[test]
    fn whole_partitions_are_packed_and_only_an_oversized_one_is_split() {
        let pending = BTreeMap::from([
            (0, range(None, 39)),      // 40 events
            (1, range(Some(9), 49)),   // 40
            (2, range(Some(99), 349)), // 250
            (3, range(None, 9)),       // 10
        ]);
        let chunks = plan_chunks(&pending, 100);
        assert_eq!(
            chunks,
            vec![
                Chunk::from([(0, range(None, 39)), (1, range(Some(9), 49))]),
                Chunk::from([(2, range(Some(99), 199))]),
                Chunk::from([(2, range(Some(199), 299))]),
                Chunk::from([(2, range(Some(299), 349)), (3, range(None, 9))]),
            ]
        );
    }

    #[test]
    fn the_predicate_names_each_range() {
        let chunk = Chunk::from([(0, range(None, 9)), (3, range(Some(4), 8))]);
        assert_eq!(
            chunk_sql(&chunk),
            "(kafka_partition = 0 AND kafka_offset <= 9) OR \
             (kafka_partition = 3 AND kafka_offset > 4 AND kafka_offset <= 8)"
        );
        assert_eq!(chunk_sql(&Chunk::new()), "FALSE");
    }

    proptest! {
        /// Chunks cover every pending offset exactly once, in order per
        /// partition, and none exceeds the limit.
        #[test]
        fn chunks_cover_each_offset_once_within_the_limit(
            ranges in proptest::collection::btree_map(0i32..6, (proptest::option::of(0i64..500), 0i64..2_000), 0..6),
            max_events in 1u64..700,
        ) {
            let pending: BTreeMap<i32, OffsetRange> = ranges
                .into_iter()
                .map(|(p, (after, len))| (p, range(after, after.unwrap_or(-1) + len)))
                .collect();
            let chunks = plan_chunks(&pending, max_events);
            let mut next: BTreeMap<i32, Option<i64>> =
                pending.iter().map(|(p, r)| (*p, r.after)).collect();
            for chunk in &chunks {
                let events: u64 = chunk.values().map(OffsetRange::events).sum();
                prop_assert!(events <= max_events && events > 0);
                for (p, r) in chunk {
                    prop_assert_eq!(next[p], r.after);
                    next.insert(*p, Some(r.up_to));
                }
            }
            for (p, r) in &pending {
                if r.events() > 0 {
                    prop_assert_eq!(next[p], Some(r.up_to));
                }
            }
        }
    }
}
