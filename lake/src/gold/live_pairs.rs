//! How many live sessions of known videos the pairs a change leaves open
//! have in `view_sessions` (see [`super::difference::PairsToCount`]): one
//! read of the columns the pairs are made of, skipping rows the deletion
//! vectors delete.
//!
//! The viewer pairs belong to a few thousand viewers, a twentieth of the
//! rows: a Parquet row filter decodes `user_key` of every row, and the other
//! columns for the wanted rows only. Creator-video pairs want every row of
//! their videos (every video, when a new day came), but only until they have
//! more than their changes added: the filter keeps the wanted videos' rows
//! too in the first files, until those settle them.
//!
//! `None` when a file cannot be read this way (a deletion vector stored in a
//! file, names mapped, a column missing or not plain strings): the models are
//! then built in full.

use std::sync::{Arc, Mutex};

use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Float64Type};
use deltalake::arrow::error::ArrowError;
use deltalake::kernel::LogicalFileView;
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderOptions, RowSelectionPolicy,
};
use deltalake::parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use futures::TryStreamExt;
use roaring::RoaringTreemap;
use url::Url;

use super::difference::{LiveCounts, LiveRow, PairsToCount};
use crate::error::LakeError;
use crate::file_reader::{FileReader, builder_with_views, local_table};
use crate::query::{is_plain_string, string_values};
use crate::silver::deletion_vector::inline_deleted;
use crate::silver::{
    SESSIONS_PARTITION, check_rows_seen, maps_column_names, partition_day, rows_kept_by,
};
use crate::tables::{SESSIONS_TABLE, read_each};

const COLUMNS: [&str; 5] = ["user_key", "video_id", "creator", "region", "duration_s"];

/// The text columns of [`COLUMNS`], read as string views.
const TEXT_COLUMNS: [&str; 4] = ["user_key", "video_id", "creator", "region"];

/// The live counts `wanted` asks for, in `sessions` as loaded. Counts of
/// creator-video pairs may stop short of all their rows once they settle
/// them ([`PairsToCount::creator_videos_settled`]): files read after that
/// keep the wanted viewers' rows only.
pub async fn live_counts(
    sessions: &DeltaTable,
    wanted: Arc<PairsToCount>,
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
    let local = local_table(sessions);
    let total = Arc::new(Mutex::new(LiveCounts::default()));
    let counted = read_each(reads, |read| {
        let (store, local) = (store.clone(), local.clone());
        let (wanted, total) = (wanted.clone(), total.clone());
        async move {
            // Decided as the file's read starts, from the files read so far:
            // counts only grow, so a settled pair stays settled.
            let videos = wanted.wants_videos()
                && !wanted.creator_videos_settled(&total.lock().expect("never poisoned"));
            let Some(counts) = read.count(store, local, wanted, videos).await? else {
                return Ok(None);
            };
            total.lock().expect("never poisoned").add(&counts);
            Ok(Some(()))
        }
    })
    .await?;
    if counted.is_none() {
        return Ok(None);
    }
    let total = std::mem::take(&mut *total.lock().expect("the reads are over"));
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
        local: Option<Arc<Url>>,
        wanted: Arc<PairsToCount>,
        videos: bool,
    ) -> Result<Option<LiveCounts>, LakeError> {
        let failed = |source| LakeError::parquet(&self.path, source);
        let reader = FileReader::new(store, self.path.clone(), self.size).mapped_from(local);
        let builder = builder_with_views(reader, ArrowReaderOptions::new(), &TEXT_COLUMNS)
            .await
            .map_err(failed)?;
        let schema = builder.schema().clone();
        let filtered = if videos { &COLUMNS[..2] } else { &COLUMNS[..1] };
        let plain = |name: &&str| {
            schema
                .field_with_name(name)
                .is_ok_and(|f| is_plain_string(f.data_type()))
        };
        if !COLUMNS.iter().all(|c| schema.column_with_name(c).is_some())
            || !filtered.iter().all(plain)
        {
            return Ok(None);
        }
        let parquet_schema = builder.parquet_schema();
        let projection = ProjectionMask::columns(parquet_schema, COLUMNS);
        let seen = Arc::new(Mutex::new(0u64));
        let filter = {
            let (seen, wanted, deleted) = (seen.clone(), wanted.clone(), self.deleted);
            ArrowPredicateFn::new(
                ProjectionMask::columns(parquet_schema, filtered.iter().copied()),
                move |batch| {
                    let mut seen = seen.lock().expect("a filter never panics holding it");
                    let kept = wanted_rows(&batch, &wanted, videos, &deleted, *seen);
                    *seen += batch.num_rows() as u64;
                    kept
                },
            )
        };
        // A twentieth of the rows, in runs of one: skipping the others'
        // values beats the default here, which decodes every row and then
        // drops the unwanted ones (0.25-0.28 s against 0.29-0.34 s by hand).
        let builder = builder.with_row_selection_policy(RowSelectionPolicy::Selectors);
        let batches = rows_kept_by(builder, projection, Box::new(filter), &self.path).await?;
        let seen = *seen.lock().expect("the read is over");
        check_rows_seen(&self.path, seen, self.recorded)?;
        let mut counts = LiveCounts::default();
        for batch in batches {
            count_rows(&batch, self.day, &wanted, &mut counts)?;
        }
        Ok(Some(counts))
    }
}

/// The filter of one batch of a file's rows, the first at `first`: live rows
/// of wanted viewers, or of wanted videos when `videos`.
fn wanted_rows(
    batch: &RecordBatch,
    wanted: &PairsToCount,
    videos: bool,
    deleted: &RoaringTreemap,
    first: u64,
) -> Result<BooleanArray, ArrowError> {
    // By name: the batch holds the filtered columns in the file's order.
    let strings = |name: &str| {
        let column = batch
            .column_by_name(name)
            .ok_or_else(|| ArrowError::SchemaError(format!("no column {name}")))?;
        string_values(column.as_ref())
            .ok_or_else(|| ArrowError::SchemaError(format!("{name} is not text")))
    };
    let users = strings("user_key")?;
    let mut wanted_video = match videos {
        true => Some(strings("video_id")?),
        false => None,
    };
    let mask = users
        .enumerate()
        .map(|(row, user)| {
            let video = wanted_video.as_mut().and_then(|v| v.next().flatten());
            let wants = user.is_some_and(|u| wanted.wants_user(u))
                || video.is_some_and(|v| wanted.wants_video(v));
            Some(wants && !deleted.contains(first + row as u64))
        })
        .collect();
    Ok(mask)
}

/// Counts the rows of `batch` (wanted and live) of known videos.
fn count_rows(
    batch: &RecordBatch,
    day: i32,
    wanted: &PairsToCount,
    counts: &mut LiveCounts,
) -> Result<(), LakeError> {
    // Views as read (a cast of a view to a view copies nothing).
    let text = |name: &str| -> Result<_, LakeError> {
        Ok(cast(
            batch.column_by_name(name).expect("projected"),
            &DataType::Utf8View,
        )?)
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
        user_keys.as_string_view(),
        video_ids.as_string_view(),
        creators.as_string_view(),
        regions.as_string_view(),
    );
    for row in 0..batch.num_rows() {
        if durations.is_null(row)
            || user_keys.is_null(row)
            || video_ids.is_null(row)
            || regions.is_null(row)
        {
            continue;
        }
        counts.count(
            wanted,
            &LiveRow {
                user_key: user_keys.value(row),
                video_id: video_ids.value(row),
                creator: (!creators.is_null(row)).then(|| creators.value(row)),
                region: regions.value(row),
                day,
            },
        );
    }
    Ok(())
}

/// The `columns` of the Parquet file at `path` (opened by `builder`);
/// `None` when it lacks one.
pub(super) async fn columns_of(
    builder: ParquetRecordBatchStreamBuilder<FileReader>,
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

#[cfg(test)]
mod tests {
    use deltalake::arrow::array::{ArrayRef, StringArray};

    use super::super::difference::{SessionChanges, SessionRow};
    use super::*;

    fn session(user: &str, video: &str) -> SessionRow {
        SessionRow {
            user_key: user.into(),
            video_id: video.into(),
            genre: None,
            creator: Some("c".into()),
            region: "EU".into(),
            day: 1,
            watch_s: 1.0,
            exit_position_s: 1.0,
            duration_s: 10.0,
            pct_watched: 10.0,
            completed: false,
        }
    }

    #[test]
    fn the_filter_keeps_live_rows_of_wanted_viewers_whatever_the_column_order() {
        let wanted = SessionChanges {
            removed: vec![],
            added: vec![session("u", "v")],
        }
        .pairs_to_count();
        let text = |values: &[&str]| Arc::new(StringArray::from(values.to_vec())) as ArrayRef;
        // `video_id` first, as another writer may order a file's columns.
        let batch = RecordBatch::try_from_iter([
            ("video_id", text(&["u", "v", "v", "x"])),
            ("user_key", text(&["w", "u", "u", "u"])),
        ])
        .unwrap();
        let deleted = RoaringTreemap::from_iter([12u64]);
        let kept = wanted_rows(&batch, &wanted, false, &deleted, 10).unwrap();
        assert_eq!(kept, BooleanArray::from(vec![false, true, false, true]));
    }
}
