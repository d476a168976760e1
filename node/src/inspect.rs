//! `streamreel inspect`: what the bronze table holds.

use std::collections::BTreeMap;
use std::path::Path;

use deltalake::datafusion::prelude::SessionContext;
use streamreel_lake::query::{column_as_i64, register_table, run_sql};
use streamreel_lake::tables::open_existing;
use streamreel_lake::{BronzeTable, LakeError};
use streamreel_protocol::PartitionCheckpoint;

use crate::error::NodeError;

/// Partitions past the highest one with rows that are looked up for a
/// committed offset before the search stops. A partition whose records were
/// all dead-lettered has a committed offset but no rows, and Delta has no
/// public way to list every `txn` application id, so they are looked up one
/// by one; Kafka numbers partitions from 0 without gaps.
const PROBE_BEYOND: i32 = 16;

/// Rows, distinct event ids and committed offset of one partition.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct PartitionReport {
    rows: i64,
    distinct_ids: i64,
    committed: Option<i64>,
}

pub async fn inspect(lake_dir: &Path) -> Result<String, NodeError> {
    let path = BronzeTable::path_in(lake_dir);
    if !path.join("_delta_log").exists() {
        return Ok(format!("no bronze table at {} yet", path.display()));
    }
    // Rows and offsets come from one version: the table is opened once, and
    // a node committing meanwhile cannot make them disagree.
    let table = open_existing(&path).await?;
    let ctx = SessionContext::new();
    register_table(&ctx, "bronze", &table).await?;
    let batches = run_sql(
        &ctx,
        "SELECT kafka_partition, COUNT(*) AS row_count, COUNT(DISTINCT event_id) AS distinct_ids \
         FROM bronze GROUP BY kafka_partition",
    )
    .await?;
    let mut partitions: BTreeMap<i32, PartitionReport> = BTreeMap::new();
    for batch in &batches {
        let ids = column_as_i64(batch, "kafka_partition")?;
        let rows = column_as_i64(batch, "row_count")?;
        let distinct = column_as_i64(batch, "distinct_ids")?;
        for i in 0..batch.num_rows() {
            partitions.insert(
                ids[i] as i32,
                PartitionReport {
                    rows: rows[i],
                    distinct_ids: distinct[i],
                    committed: None,
                },
            );
        }
    }
    let delta_error = |e| LakeError::delta("bronze", e);
    let snapshot = table.snapshot().map_err(delta_error)?;
    let with_rows = partitions.keys().next_back().copied().unwrap_or(-1);
    let mut last_found = with_rows;
    let mut partition = 0;
    while partition <= with_rows || partition - last_found <= PROBE_BEYOND {
        let committed = snapshot
            .transaction_version(
                table.log_store().as_ref(),
                PartitionCheckpoint::bronze_app_id(partition),
            )
            .await
            .map_err(delta_error)?;
        if let Some(offset) = committed {
            partitions.entry(partition).or_default().committed = Some(offset);
            last_found = last_found.max(partition);
        }
        partition += 1;
    }
    Ok(report(
        &path.display().to_string(),
        table.version().unwrap_or_default() as u64,
        &partitions,
    ))
}

fn report(table: &str, version: u64, partitions: &BTreeMap<i32, PartitionReport>) -> String {
    let mut report = format!("bronze table {table} (version {version})\n");
    report.push_str("partition        rows   distinct ids   committed offset\n");
    for (partition, p) in partitions {
        report.push_str(&format!(
            "{:>9} {:>11} {:>14} {:>18}\n",
            partition,
            p.rows,
            p.distinct_ids,
            p.committed.map_or("-".to_string(), |o| o.to_string())
        ));
    }
    let total: i64 = partitions.values().map(|p| p.rows).sum();
    report.push_str(&format!("total rows: {total}\n"));
    report
}

#[cfg(test)]
mod tests {
    use streamreel_lake::{RecordBatch, bronze_schema, rows_to_batch};
    use streamreel_protocol::BronzeRow;

    use super::*;

    /// Partition 1's records were all dead-lettered and partition 3 is past
    /// the highest partition with rows: both show with their offsets and no rows.
    #[tokio::test]
    async fn partitions_with_a_committed_offset_and_no_rows_are_listed() {
        let lake = tempfile::tempdir().unwrap();
        let mut bronze = BronzeTable::open_or_create(lake.path()).await.unwrap();
        let rows = rows_to_batch(&[
            BronzeRow::example(0, 0),
            BronzeRow::example(0, 1),
            BronzeRow::example(2, 0),
        ])
        .unwrap();
        bronze.append(rows.slice(0, 2), 0, 1).await.unwrap();
        bronze
            .append(RecordBatch::new_empty(bronze_schema()), 1, 41)
            .await
            .unwrap();
        bronze.append(rows.slice(2, 1), 2, 0).await.unwrap();
        bronze
            .append(RecordBatch::new_empty(bronze_schema()), 3, 7)
            .await
            .unwrap();

        let out = inspect(lake.path()).await.unwrap();
        let lines: Vec<Vec<&str>> = out
            .lines()
            .skip(2)
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            lines,
            [
                vec!["0", "2", "2", "1"],
                vec!["1", "0", "0", "41"],
                vec!["2", "1", "1", "0"],
                vec!["3", "0", "0", "7"],
                vec!["total", "rows:", "3"],
            ],
            "{out}"
        );
    }
}
