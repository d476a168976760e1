//! The earlier events of recomputed sessions, read straight from the Parquet
//! files of `enriched_events`: for a `view_sessions` written by a release
//! before its rows packed their events (see [`super::packed_events`]).
//!
//! Late events touch sessions of every day, partition and chunk, so no file
//! statistic can skip a file: in the +1% bench run, the events of 4,919
//! sessions are 41,118 rows spread over all of 10M. DataFusion's scan of the
//! table decodes all 13 input columns of every row before its join keeps the
//! wanted ones (0.96-1.01 s there). Here a Parquet row filter decodes
//! `session_id` and the two offset columns first, and the other columns only
//! for the rows it keeps (0.74-0.83 s).
//!
//! Only plain files are read this way: when a file of the days read has a
//! deletion vector, lacks a column or holds `session_id` as other than plain
//! strings, or the table maps column names, [`earlier_events`] answers `None`
//! and the caller reads through DataFusion, which handles them all.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use deltalake::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use deltalake::arrow::datatypes::{DataType, Int32Type, Int64Type};
use deltalake::arrow::error::ArrowError;
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::ArrowPredicateFn;
use deltalake::parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use deltalake::{DeltaTable, ObjectStore};

use super::chunks::Chunk;
use super::sessions_table::INPUT_COLUMNS;
use super::{ENRICHED_PARTITION, files_in_days, filter_reads, maps_column_names, rows_kept_by};
use crate::error::LakeError;
use crate::file_reader::FileReader;
use crate::query::string_values;
use crate::tables::{ENRICHED_TABLE, read_each};

/// The columns the row filter decodes for every row.
const FILTER_COLUMNS: [&str; 3] = ["session_id", "kafka_partition", "kafka_offset"];

/// The [`INPUT_COLUMNS`] of the rows of `table` in the `event_date`
/// partitions `days` whose `session_id` is in `ids`, except the rows of
/// `chunk`'s own offsets; `None` when the files cannot be read directly.
pub async fn earlier_events(
    table: &DeltaTable,
    days: &BTreeSet<i32>,
    ids: &[String],
    chunk: &Chunk,
) -> Result<Option<Vec<RecordBatch>>, LakeError> {
    if maps_column_names(table, ENRICHED_TABLE)? {
        return Ok(None);
    }
    let mut files = Vec::new();
    for file in files_in_days(table, ENRICHED_TABLE, ENRICHED_PARTITION, days)? {
        if file.deletion_vector_descriptor().is_some() {
            return Ok(None);
        }
        files.push((file.object_store_path(), file.size()));
    }
    let store = table.object_store();
    let wanted = Arc::new(Wanted {
        ids: ids.iter().cloned().collect(),
        chunk: chunk.clone(),
    });
    let read = read_each(files, |(path, size)| {
        rows_of_file(store.clone(), path, size, wanted.clone())
    })
    .await?;
    Ok(read.map(|files| {
        files
            .into_iter()
            .flatten()
            .filter(|b| b.num_rows() > 0)
            .collect()
    }))
}

/// foldhash, not std's SipHash: every row's `session_id` is looked up, and
/// SipHash took nearly a fifth of this read's CPU.
type Ids = HashSet<String, foldhash::fast::RandomState>;

/// Which rows a read keeps.
struct Wanted {
    ids: Ids,
    chunk: Chunk,
}

impl Wanted {
    /// As the SQL `session_id IN ids AND NOT <chunk's ranges>`: a row
    /// without an offset is not kept (the negation of NULL is NULL).
    fn keeps(&self, session_id: Option<&str>, partition: Option<i32>, offset: Option<i64>) -> bool {
        let (Some(id), Some(partition), Some(offset)) = (session_id, partition, offset) else {
            return false;
        };
        self.ids.contains(id) && !in_chunk(&self.chunk, partition, offset)
    }

    fn filter(&self, batch: &RecordBatch) -> Result<BooleanArray, ArrowError> {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| ArrowError::SchemaError(format!("no column {name}")))
        };
        let ids = column("session_id")?;
        let partitions =
            deltalake::arrow::compute::cast(column("kafka_partition")?, &DataType::Int32)?;
        let offsets = deltalake::arrow::compute::cast(column("kafka_offset")?, &DataType::Int64)?;
        let partitions = partitions.as_primitive::<Int32Type>();
        let offsets = offsets.as_primitive::<Int64Type>();
        let keep = |(row, id): (usize, Option<&str>)| {
            Some(self.keeps(
                id,
                partitions.is_valid(row).then(|| partitions.value(row)),
                offsets.is_valid(row).then(|| offsets.value(row)),
            ))
        };
        let ids = string_values(ids.as_ref()).ok_or_else(|| {
            ArrowError::SchemaError(format!("session_id is {}, not a string", ids.data_type()))
        })?;
        Ok(ids.enumerate().map(keep).collect())
    }
}

/// Whether `offset` of `partition` is one of `chunk`'s own (`(after, up_to]`).
fn in_chunk(chunk: &Chunk, partition: i32, offset: i64) -> bool {
    chunk.get(&partition).is_some_and(|range| {
        offset <= range.up_to && range.after.is_none_or(|after| offset > after)
    })
}

/// The kept rows of one data file; `None` when it lacks a column or its
/// `session_id` is not a plain string column.
async fn rows_of_file(
    store: Arc<dyn ObjectStore>,
    path: deltalake::Path,
    size: i64,
    wanted: Arc<Wanted>,
) -> Result<Option<Vec<RecordBatch>>, LakeError> {
    let failed = |source| LakeError::parquet(&path, source);
    let reader = FileReader::new(store, path.clone(), size as u64);
    let builder = ParquetRecordBatchStreamBuilder::new(reader)
        .await
        .map_err(failed)?;
    let columns: Vec<&str> = INPUT_COLUMNS
        .iter()
        .chain(&FILTER_COLUMNS)
        .copied()
        .collect();
    if !filter_reads(builder.schema(), &columns) {
        return Ok(None);
    }
    let parquet_schema = builder.parquet_schema();
    let filter = ArrowPredicateFn::new(
        ProjectionMask::columns(parquet_schema, FILTER_COLUMNS),
        move |batch| wanted.filter(&batch),
    );
    let projection = ProjectionMask::columns(parquet_schema, INPUT_COLUMNS);
    let rows = rows_kept_by(builder, projection, Box::new(filter), &path).await?;
    Ok(Some(rows))
}

#[cfg(test)]
mod tests {
    use super::super::chunks::OffsetRange;
    use super::*;

    fn wanted(ids: &[&str], chunk: &[(i32, Option<i64>, i64)]) -> Wanted {
        Wanted {
            ids: ids.iter().map(|id| id.to_string()).collect(),
            chunk: chunk
                .iter()
                .map(|&(partition, after, up_to)| (partition, OffsetRange { after, up_to }))
                .collect(),
        }
    }

    #[test]
    fn rows_of_wanted_sessions_are_kept_unless_they_are_the_chunks_own() {
        let w = wanted(&["s1", "s2"], &[(0, Some(10), 20), (1, None, 5)]);
        assert!(
            w.keeps(Some("s1"), Some(0), Some(10)),
            "at `after`: earlier"
        );
        assert!(!w.keeps(Some("s1"), Some(0), Some(11)), "the chunk's own");
        assert!(!w.keeps(Some("s2"), Some(0), Some(20)), "at `up_to`: own");
        assert!(w.keeps(Some("s2"), Some(0), Some(21)));
        assert!(
            !w.keeps(Some("s1"), Some(1), Some(0)),
            "from the start: own"
        );
        assert!(w.keeps(Some("s1"), Some(2), Some(0)), "another partition");
        assert!(
            !w.keeps(Some("s3"), Some(2), Some(0)),
            "not a wanted session"
        );
        assert!(!w.keeps(None, Some(2), Some(0)));
        assert!(!w.keeps(Some("s1"), None, Some(0)));
        assert!(!w.keeps(Some("s1"), Some(2), None));
    }
}
