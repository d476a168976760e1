//! How many live sessions of known videos the pairs a change leaves open
//! have in `view_sessions` (see [`super::difference::PairsToCount`]): one
//! read of the columns the pairs are made of, skipping rows the deletion
//! vectors delete.
//!
//! `None` when a file cannot be read this way (a deletion vector stored in a
//! file, names mapped, a column missing): the models are then built in full.

use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Float64Type};
use deltalake::kernel::LogicalFileView;
use deltalake::logstore::parquet_reader::ParquetObjectReader;
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use futures::TryStreamExt;
use roaring::RoaringTreemap;

use super::difference::{LiveCounts, LiveRow, PairsToCount};
use crate::error::LakeError;
use crate::silver::deletion_vector::inline_deleted;
use crate::silver::{SESSIONS_PARTITION, maps_column_names, partition_day};
use crate::tables::{SESSIONS_TABLE, read_each};

const COLUMNS: [&str; 5] = ["user_key", "video_id", "creator", "region", "duration_s"];

/// The live counts `wanted` asks for, in `sessions` as loaded.
pub async fn live_counts(
    sessions: &DeltaTable,
    wanted: PairsToCount,
) -> Result<Option<LiveCounts>, LakeError> {
    if wanted.is_empty() {
        return Ok(Some(LiveCounts::default()));
    }
    if maps_column_names(sessions, SESSIONS_TABLE)? {
        return Ok(None);
    }
    let snapshot = sessions
        .snapshot()
        .map_err(|e| LakeError::delta(SESSIONS_TABLE, e))?;
    let mut reads = Vec::new();
    for file in snapshot.log_data().iter() {
        let Some(read) = FileRead::of(&file) else {
            return Ok(None);
        };
        reads.push(read);
    }
    let store = sessions.object_store();
    let wanted = Arc::new(wanted);
    let counted = read_each(reads, |read| {
        let (store, wanted) = (store.clone(), wanted.clone());
        async move { read.count(store, &wanted).await }
    })
    .await?;
    let Some(counted) = counted else {
        return Ok(None);
    };
    let mut total = LiveCounts::default();
    for counts in counted {
        total.add(counts);
    }
    Ok(Some(total))
}

/// One data file of the table, its day and its deleted rows.
struct FileRead {
    path: deltalake::Path,
    size: u64,
    recorded: Option<usize>,
    day: i32,
    deleted: RoaringTreemap,
}

impl FileRead {
    fn of(file: &LogicalFileView) -> Option<FileRead> {
        let day = file
            .partition_values_map()
            .get(SESSIONS_PARTITION)
            .and_then(|v| v.as_deref())
            .and_then(partition_day)?;
        let deleted = match file.deletion_vector_descriptor() {
            Some(vector) => inline_deleted(&vector)?,
            None => RoaringTreemap::new(),
        };
        Some(FileRead {
            path: file.object_store_path(),
            size: u64::try_from(file.size()).ok()?,
            recorded: file.num_records(),
            day,
            deleted,
        })
    }

    async fn count(
        self,
        store: Arc<dyn deltalake::ObjectStore>,
        wanted: &PairsToCount,
    ) -> Result<Option<LiveCounts>, LakeError> {
        let failed = |source| LakeError::parquet(&self.path, source);
        let reader = ParquetObjectReader::new(store, self.path.clone()).with_file_size(self.size);
        let builder = ParquetRecordBatchStreamBuilder::new(reader)
            .await
            .map_err(failed)?;
        let Some(batches) = columns_of(builder, &COLUMNS, &self.path).await? else {
            return Ok(None);
        };
        let mut counts = LiveCounts::default();
        let mut position = 0u64;
        for batch in batches {
            let text = |name: &str| -> Result<_, LakeError> {
                let column = batch.column_by_name(name).expect("projected");
                Ok(cast(column, &DataType::Utf8)?)
            };
            let (user_keys, video_ids, creators, regions) = (
                text("user_key")?,
                text("video_id")?,
                text("creator")?,
                text("region")?,
            );
            let durations = cast(
                batch.column_by_name("duration_s").expect("projected"),
                &DataType::Float64,
            )?;
            let durations = durations.as_primitive::<Float64Type>();
            let (user_keys, video_ids, creators, regions) = (
                user_keys.as_string::<i32>(),
                video_ids.as_string::<i32>(),
                creators.as_string::<i32>(),
                regions.as_string::<i32>(),
            );
            for row in 0..batch.num_rows() {
                let at = position + row as u64;
                if durations.is_null(row)
                    || user_keys.is_null(row)
                    || video_ids.is_null(row)
                    || regions.is_null(row)
                {
                    continue;
                }
                let (user_key, video_id) = (user_keys.value(row), video_ids.value(row));
                if (!wanted.wants_user(user_key) && !wanted.wants_video(video_id))
                    || self.deleted.contains(at)
                {
                    continue;
                }
                let creator = (!creators.is_null(row)).then(|| creators.value(row));
                counts.count(
                    wanted,
                    &LiveRow {
                        user_key,
                        video_id,
                        creator,
                        region: regions.value(row),
                        day: self.day,
                    },
                );
            }
            position += batch.num_rows() as u64;
        }
        // Deletion vectors count positions from the file's first row.
        if self.recorded != Some(position as usize) {
            return Err(LakeError::RowCountMismatch {
                table: SESSIONS_TABLE.to_string(),
                path: self.path.to_string(),
                read: position,
                recorded: self.recorded,
            });
        }
        Ok(Some(counts))
    }
}

/// The `columns` of the Parquet file at `path` (opened by `builder`);
/// `None` when it lacks one.
pub(super) async fn columns_of(
    builder: ParquetRecordBatchStreamBuilder<ParquetObjectReader>,
    columns: &[&str],
    path: &deltalake::Path,
) -> Result<Option<Vec<RecordBatch>>, LakeError> {
    let failed = |source| LakeError::parquet(path, source);
    if columns
        .iter()
        .any(|name| builder.schema().column_with_name(name).is_none())
    {
        return Ok(None);
    }
    let projection = ProjectionMask::columns(builder.parquet_schema(), columns.iter().copied());
    let batches = builder
        .with_projection(projection)
        .with_batch_size(65_536)
        .build()
        .map_err(failed)?
        .try_collect()
        .await
        .map_err(failed)?;
    Ok(Some(batches))
}
