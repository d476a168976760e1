//! The rows of the sessions a chunk touches, found in `view_sessions` by one
//! read of its files, with where each row is.
//!
//! A chunk's recomputed sessions need their rows twice: their packed events
//! and first days to recompute them, and their positions in the data files to
//! mark the old rows deleted. Both used to scan every `session_id` of the
//! table (a DataFusion semi-join, then the replacement's own read). Here a
//! Parquet row filter decodes `session_id` once per row, skips rows deleted
//! already, and records the positions it keeps; the other columns are
//! decoded for the kept rows only.
//!
//! When the table maps column names, or a file lacks a column or holds
//! `session_id` as other than plain strings, [`find_sessions`] answers `None`
//! and the caller uses DataFusion and the replacement's own read instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use deltalake::arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use deltalake::arrow::compute::{cast, concat_batches};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::error::ArrowError;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::{ArrowPredicateFn, ArrowReaderOptions};
use deltalake::parquet::file::metadata::PageIndexPolicy;
use deltalake::{DeltaTable, ObjectStore};
use roaring::RoaringTreemap;
use url::Url;

use super::replace::existing_deletions;
use super::replaced_rows::{MEASURES, change_type};
use super::sessions_table::RECOMPUTE_COLUMNS;
use super::{check_rows_seen, filter_reads, maps_column_names, rows_kept_by};
use crate::error::LakeError;
use crate::file_reader::{FileReader, builder_with_views, local_table};
use crate::key_sieve::SoughtKeys;
use crate::query::string_values;
use crate::tables::{SESSIONS_TABLE, read_each};

/// Live rows of the sought sessions, and their places in the files.
pub struct FoundSessions {
    /// Columns `session_id`, `first_day`, `last_day` (dates of `started_at`
    /// and `last_event_at`), then the rest of [`RECOMPUTE_COLUMNS`] and the
    /// [`MEASURES`] when asked for.
    pub rows: RecordBatch,
    /// Row positions of `rows`, by data file (its path in the Delta log).
    pub positions: HashMap<String, Vec<u64>>,
}

/// The live rows of `table` whose `session_id` is in `ids`, with the
/// [`RECOMPUTE_COLUMNS`] when `recompute_columns`; `None` when the files
/// cannot be read directly.
pub async fn find_sessions(
    table: &DeltaTable,
    ctx: &SessionContext,
    ids: &[String],
    recompute_columns: bool,
) -> Result<Option<FoundSessions>, LakeError> {
    if maps_column_names(table, SESSIONS_TABLE)? {
        return Ok(None);
    }
    let snapshot = table
        .snapshot()
        .map_err(|e| LakeError::delta(SESSIONS_TABLE, e))?;
    let files: Vec<_> = snapshot.log_data().iter().collect();
    let mut deleted = existing_deletions(table, ctx, &files).await?;
    let columns = Arc::new(read_columns(recompute_columns));
    let ids: Arc<Ids> = Arc::new(ids.iter().cloned().collect());
    let store = table.object_store();
    let local = local_table(table);
    // Owned, so that the stream below borrows nothing.
    let to_read: Vec<(String, FileRead)> = files
        .iter()
        .map(|file| {
            let log_path = file.path().to_string();
            let read = FileRead {
                store: store.clone(),
                local: local.clone(),
                path: file.object_store_path(),
                size: file.size(),
                recorded: file.num_records(),
                deleted: deleted.remove(&log_path).unwrap_or_default(),
                ids: ids.clone(),
                columns: columns.clone(),
            };
            (log_path, read)
        })
        .collect();
    let read = read_each(to_read, |(log_path, read)| async move {
        Ok(read.rows().await?.map(|found| (log_path, found)))
    })
    .await?;
    let Some(read) = read else {
        return Ok(None);
    };
    let schema = found_schema(recompute_columns);
    let mut batches = Vec::new();
    let mut positions = HashMap::new();
    for (path, (rows, kept)) in read {
        for batch in rows {
            batches.push(normalised(&schema, &batch)?);
        }
        if !kept.is_empty() {
            positions.insert(path, kept);
        }
    }
    Ok(Some(FoundSessions {
        rows: concat_batches(&schema, &batches)?,
        positions,
    }))
}

/// Every row's `session_id` is looked up, and few are sought.
type Ids = SoughtKeys;

/// The file columns read for the kept rows.
fn read_columns(recompute_columns: bool) -> Vec<&'static str> {
    let mut columns = vec!["session_id", "started_at", "last_event_at"];
    if recompute_columns {
        columns.extend(&RECOMPUTE_COLUMNS[1..]);
        columns.extend(MEASURES);
    }
    columns
}

/// The columns of [`FoundSessions::rows`].
fn found_schema(recompute_columns: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new("session_id", DataType::Utf8, true),
        Field::new("first_day", DataType::Date32, true),
        Field::new("last_day", DataType::Date32, true),
    ];
    if recompute_columns {
        for name in &RECOMPUTE_COLUMNS[1..] {
            let kind = match *name {
                "duration_s" => DataType::Float64,
                super::sessions_table::PACKED_EVENTS => DataType::Binary,
                _ => DataType::Utf8,
            };
            fields.push(Field::new(*name, kind, true));
        }
        for name in MEASURES {
            fields.push(Field::new(name, change_type(name), true));
        }
    }
    Arc::new(Schema::new(fields))
}

/// A batch as read from a file, in the types and names of `schema`.
fn normalised(schema: &SchemaRef, batch: &RecordBatch) -> Result<RecordBatch, LakeError> {
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| LakeError::ColumnType {
                table: SESSIONS_TABLE.into(),
                column: name.into(),
            })
    };
    let day = |name: &str| -> Result<ArrayRef, LakeError> {
        let at = cast(column(name)?, &utc)?;
        Ok(cast(&at, &DataType::Date32)?)
    };
    let mut arrays = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        arrays.push(match field.name().as_str() {
            "first_day" => day("started_at")?,
            "last_day" => day("last_event_at")?,
            name => cast(column(name)?, field.data_type())?,
        });
    }
    Ok(RecordBatch::try_new(schema.clone(), arrays)?)
}

/// One data file to read.
struct FileRead {
    store: Arc<dyn ObjectStore>,
    /// The table's location when it is local (its files are then mapped).
    local: Option<Arc<Url>>,
    path: deltalake::Path,
    size: i64,
    recorded: Option<usize>,
    deleted: RoaringTreemap,
    ids: Arc<Ids>,
    columns: Arc<Vec<&'static str>>,
}

/// Row positions a filter kept, and how many rows it saw.
#[derive(Default)]
struct Kept {
    positions: Vec<u64>,
    seen: u64,
}

impl FileRead {
    /// The kept rows and their positions; `None` when the file lacks a
    /// column or holds `session_id` as other than plain strings.
    async fn rows(self) -> Result<Option<(Vec<RecordBatch>, Vec<u64>)>, LakeError> {
        let path = self.path.clone();
        let failed = |source| LakeError::parquet(&path, source);
        let reader = FileReader::new(self.store, self.path.clone(), self.size as u64)
            .mapped_from(self.local);
        // The offset index lets the reader skip the pages that hold none of
        // the kept rows (see `sessions_writer_properties`); a file written
        // without one is read page by page as before.
        let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional);
        let builder = builder_with_views(reader, options, &["session_id"])
            .await
            .map_err(failed)?;
        if !filter_reads(builder.schema(), &self.columns) {
            return Ok(None);
        }
        let parquet_schema = builder.parquet_schema();
        let kept = Arc::new(Mutex::new(Kept::default()));
        let filter = {
            let (kept, ids, deleted) = (kept.clone(), self.ids, self.deleted);
            ArrowPredicateFn::new(
                ProjectionMask::columns(parquet_schema, ["session_id"]),
                move |batch| {
                    let mut kept = kept.lock().expect("a filter never panics holding it");
                    keep_rows(&batch, &ids, &deleted, &mut kept)
                },
            )
        };
        let projection = ProjectionMask::columns(parquet_schema, self.columns.iter().copied());
        let rows = rows_kept_by(builder, projection, Box::new(filter), &self.path).await?;
        let kept = std::mem::take(&mut *kept.lock().expect("the read is over"));
        check_rows_seen(&self.path, kept.seen, self.recorded)?;
        Ok(Some((rows, kept.positions)))
    }
}

/// The filter of one batch of a file's rows (the file's next `num_rows`):
/// rows of sought sessions not deleted already. Their positions are added to
/// `kept`.
fn keep_rows(
    batch: &RecordBatch,
    ids: &Ids,
    deleted: &RoaringTreemap,
    kept: &mut Kept,
) -> Result<BooleanArray, ArrowError> {
    let column = batch.column(0);
    let values = string_values(column.as_ref()).ok_or_else(|| {
        ArrowError::SchemaError(format!(
            "session_id is {}, not a string",
            column.data_type()
        ))
    })?;
    let first = kept.seen;
    let mask: BooleanArray = values
        .enumerate()
        .map(|(row, id)| {
            let position = first + row as u64;
            let keep = id.is_some_and(|id| ids.contains(id)) && !deleted.contains(position);
            if keep {
                kept.positions.push(position);
            }
            Some(keep)
        })
        .collect();
    kept.seen += batch.num_rows() as u64;
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use deltalake::arrow::array::StringArray;

    use super::*;

    #[test]
    fn a_batch_keeps_sought_live_rows_and_counts_positions_across_batches() {
        let ids: Ids = ["a", "c"].into_iter().map(String::from).collect();
        let deleted = RoaringTreemap::from_iter([2u64]);
        let batch = |values: Vec<Option<&str>>| {
            RecordBatch::try_from_iter([(
                "session_id",
                Arc::new(StringArray::from(values)) as ArrayRef,
            )])
            .unwrap()
        };
        let mut kept = Kept::default();
        let first = keep_rows(
            &batch(vec![Some("a"), Some("b"), Some("a")]),
            &ids,
            &deleted,
            &mut kept,
        )
        .unwrap();
        assert_eq!(first, BooleanArray::from(vec![true, false, false]));
        let second = keep_rows(&batch(vec![None, Some("c")]), &ids, &deleted, &mut kept).unwrap();
        assert_eq!(second, BooleanArray::from(vec![false, true]));
        assert_eq!(kept.positions, vec![0, 4]);
        assert_eq!(kept.seen, 5);
    }
}
