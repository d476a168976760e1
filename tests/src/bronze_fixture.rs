//! Bronze written directly from simulated messages, for lakehouse tests and
//! benchmarks that do not need Kafka: the same partition core the node runs
//! decides what is accepted.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use streamreel_actors::DedupSettings;
use streamreel_actors::dedup::DedupWindow;
use streamreel_actors::partition_core::{Outcome, PartitionCore};
use streamreel_lake::{BronzeTable, rows_to_batch};
use streamreel_node::simulate::SimulatedMessage;
use streamreel_protocol::{BronzeRow, UserKeyer};

use crate::TEST_SECRET;

/// A stable partitioner for tests: a user's messages share a partition.
pub fn partition_of(key: &str, partitions: i32) -> i32 {
    (xxhash(key) % partitions as u64) as i32
}

fn xxhash(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The bronze rows the node would accept, by partition, with offsets counted
/// per partition as a broker would assign them.
pub fn accepted_rows(
    messages: &[SimulatedMessage],
    partitions: i32,
) -> BTreeMap<i32, Vec<BronzeRow>> {
    accepted_rows_from(messages, partitions, &mut BTreeMap::new())
}

/// As [`accepted_rows`], for one chunk of a longer stream: each partition's
/// offsets continue from `next_offsets` (0 where absent), which is advanced.
/// De-duplication only spans the chunk: fine for benchmarks.
pub fn accepted_rows_from(
    messages: &[SimulatedMessage],
    partitions: i32,
    next_offsets: &mut BTreeMap<i32, i64>,
) -> BTreeMap<i32, Vec<BronzeRow>> {
    let keyer = UserKeyer::new(TEST_SECRET.as_bytes());
    let mut cores: BTreeMap<i32, PartitionCore> = BTreeMap::new();
    let mut rows: BTreeMap<i32, Vec<BronzeRow>> = BTreeMap::new();
    for message in messages {
        let partition = partition_of(&message.key, partitions);
        let core = cores.entry(partition).or_insert_with(|| {
            let dedup = DedupWindow::new(DedupSettings {
                window_events: 1_000_000,
                window: Duration::from_secs(86_400),
                max_ids: 4_000_000,
            });
            // The output partition is not used: the fixture writes no topic.
            let output_partitions = std::num::NonZeroU32::MIN;
            PartitionCore::new(partition, keyer.clone(), dedup, output_partitions)
        });
        let next_offset = next_offsets.entry(partition).or_insert(0);
        let offset = *next_offset;
        *next_offset += 1;
        if let Outcome::Accepted { clean, .. } =
            core.process(offset, &message.payload, 1_795_478_400_000_000 + offset)
        {
            rows.entry(partition)
                .or_default()
                .push(BronzeRow::from(clean.view()));
        }
    }
    rows
}

/// Appends rows to bronze in `commits` commits per partition (each with its txn).
pub async fn write_bronze(
    lake_dir: &Path,
    rows: &BTreeMap<i32, Vec<BronzeRow>>,
    commits: usize,
) -> anyhow::Result<()> {
    let mut bronze = BronzeTable::open_or_create(lake_dir).await?;
    for (partition, rows) in rows {
        let chunk = rows.len().div_ceil(commits.max(1)).max(1);
        for part in rows.chunks(chunk) {
            let last = part.last().expect("chunks are non-empty").kafka_offset;
            bronze
                .append(rows_to_batch(part)?, *partition, last)
                .await?;
        }
    }
    Ok(())
}
