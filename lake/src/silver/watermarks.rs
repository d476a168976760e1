//! Incremental progress of a derived table: for each Kafka partition, the
//! highest upstream `kafka_offset` it has consumed, stored as Delta app
//! transactions (`<prefix>-<partition>`) in the derived table's own commits, so
//! progress and data land atomically.

use std::collections::BTreeMap;

use deltalake::DeltaTable;
use deltalake::kernel::Transaction;

use crate::error::LakeError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watermarks(pub BTreeMap<i32, i64>);

impl Watermarks {
    /// Reads `<prefix>-<p>` for each partition from `table` (absent: nothing consumed).
    pub async fn read(
        table: Option<&DeltaTable>,
        prefix: &str,
        partitions: &[i32],
    ) -> Result<Watermarks, LakeError> {
        let mut marks = BTreeMap::new();
        let Some(table) = table else {
            return Ok(Watermarks(marks));
        };
        let snapshot = table.snapshot().map_err(|e| LakeError::delta(prefix, e))?;
        for partition in partitions {
            let version = snapshot
                .transaction_version(table.log_store().as_ref(), app_id(prefix, *partition))
                .await
                .map_err(|e| LakeError::delta(prefix, e))?;
            if let Some(offset) = version {
                marks.insert(*partition, offset);
            }
        }
        Ok(Watermarks(marks))
    }

    pub fn transactions(&self, prefix: &str) -> Vec<Transaction> {
        self.0
            .iter()
            .map(|(partition, offset)| Transaction::new(app_id(prefix, *partition), *offset))
            .collect()
    }

    /// A SQL predicate for the rows beyond these watermarks.
    pub fn beyond_sql(&self, partitions: &[i32]) -> String {
        let mut terms: Vec<String> = Vec::new();
        for partition in partitions {
            match self.0.get(partition) {
                Some(offset) => terms.push(format!(
                    "(kafka_partition = {partition} AND kafka_offset > {offset})"
                )),
                None => terms.push(format!("kafka_partition = {partition}")),
            }
        }
        if terms.is_empty() {
            "FALSE".to_string()
        } else {
            terms.join(" OR ")
        }
    }
}

fn app_id(prefix: &str, partition: i32) -> String {
    format!("{prefix}-{partition}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicate_covers_new_partitions_whole() {
        let marks = Watermarks(BTreeMap::from([(0, 10)]));
        assert_eq!(
            marks.beyond_sql(&[0, 1]),
            "(kafka_partition = 0 AND kafka_offset > 10) OR kafka_partition = 1"
        );
        assert_eq!(marks.beyond_sql(&[]), "FALSE");
    }
}
