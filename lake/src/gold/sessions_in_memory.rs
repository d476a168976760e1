//! `view_sessions` held in memory for one gold run, when it fits.
//!
//! Every model reads `view_sessions` whole: six scans, each decoding the same
//! Parquet columns again (a `top_creators` over 1.6M sessions took 0.2 s, most
//! of it reading). Held once, the models read memory. The rows are counted
//! against the run's memory pool, and held only while they take at most a
//! third of it (measured as read, before the viewers are coded below); a
//! larger table is read by each model as before. Why a third: the rows take
//! about 160 bytes per session as read, and `top_videos`' final
//! aggregation (distinct viewers per video, which cannot spill) needs about
//! 250 bytes per session of the pool, so at a third the models keep room for
//! it; at half, a 1.6M-session lake failed `top_videos` with a 600 MiB pool
//! that suffices when nothing is held.
//!
//! `user_key` is held as a number per viewer (codes given in order of first
//! appearance), not as its 32 characters: the models only count distinct
//! viewers, which a one-to-one code leaves unchanged, and grouping and
//! hashing numbers costs a fraction of strings: on a 1.6M-session lake,
//! `top_videos` (distinct viewers per video) built in 0.17-0.22 s instead of
//! 0.48-0.65 s, and the held rows took 173 MB instead of 260 MB.

use std::sync::Arc;

use deltalake::arrow::array::{RecordBatch, StringDictionaryBuilder, UInt32Array};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt32Type};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use deltalake::datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use tracing::info;

use crate::error::LakeError;
use crate::query::string_values;
use crate::tables::dealt_table;

/// The `view_sessions` columns the models read. A model that reads another
/// fails with "no field named ..." in the tests: add the column here.
pub const MODEL_COLUMNS: [&str; 11] = [
    "user_key",
    "video_id",
    "genre",
    "creator",
    "region",
    "day",
    "watch_s",
    "exit_position_s",
    "duration_s",
    "pct_watched",
    "completed",
];

/// The column of the viewer's pseudonym, held as codes.
const VIEWER_COLUMN: &str = "user_key";

/// The rows, and their share of the memory pool (released when dropped).
pub struct SessionsInMemory {
    pub table: Arc<MemTable>,
    _reservation: MemoryReservation,
}

/// Reads `view_sessions` as registered in `ctx` into memory, or `None` when
/// its rows would take more than a third of `memory_limit_bytes`.
pub async fn sessions_in_memory(
    ctx: &SessionContext,
    memory_limit_bytes: usize,
) -> Result<Option<SessionsInMemory>, LakeError> {
    let started = std::time::Instant::now();
    let frame = ctx
        .table("view_sessions")
        .await?
        .select_columns(&MODEL_COLUMNS)?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let reservation = MemoryConsumer::new("gold: view_sessions in memory")
        .register(&ctx.runtime_env().memory_pool);
    let mut rows = frame.execute_stream().await?;
    let mut batches = Vec::new();
    while let Some(batch) = rows.try_next().await? {
        let size = batch.get_array_memory_size();
        if reservation.size() + size > memory_limit_bytes / 3 || reservation.try_grow(size).is_err()
        {
            info!(
                held_bytes = reservation.size(),
                "view_sessions is too large to hold in memory: each model reads it"
            );
            return Ok(None);
        }
        batches.push(batch);
    }
    let (schema, batches) = coded_viewers(schema, batches)?;
    reservation.resize(batches.iter().map(RecordBatch::get_array_memory_size).sum());
    let ways = ctx.copied_config().target_partitions();
    let table = Arc::new(dealt_table(schema, batches, ways)?);
    info!(
        bytes = reservation.size(),
        seconds = started.elapsed().as_secs_f64(),
        "view_sessions held in memory for the gold models"
    );
    Ok(Some(SessionsInMemory {
        table,
        _reservation: reservation,
    }))
}

/// `batches` with their `user_key` strings replaced by `UInt32` codes, one per
/// distinct key across all batches (nulls stay null); unchanged when there is
/// no string `user_key` or more keys than codes.
fn coded_viewers(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
) -> Result<(SchemaRef, Vec<RecordBatch>), LakeError> {
    let Ok(index) = schema.index_of(VIEWER_COLUMN) else {
        return Ok((schema, batches));
    };
    let mut codes = StringDictionaryBuilder::<UInt32Type>::new();
    let mut uncoded = false;
    'batches: for batch in &batches {
        let Some(keys) = string_values(batch.column(index).as_ref()) else {
            uncoded = true;
            break;
        };
        for key in keys {
            match key {
                Some(key) if codes.append(key).is_err() => {
                    uncoded = true;
                    break 'batches;
                }
                Some(_) => {}
                None => codes.append_null(),
            }
        }
    }
    if uncoded {
        return Ok((schema, batches));
    }
    let codes = codes.finish();
    let codes = codes.keys();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[index] = Field::new(VIEWER_COLUMN, DataType::UInt32, fields[index].is_nullable());
    let coded_schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let mut offset = 0;
    let mut coded = Vec::with_capacity(batches.len());
    for batch in batches {
        let mut columns = batch.columns().to_vec();
        // A copy, not a slice: a slice would keep (and be counted as) the
        // whole buffer in every batch.
        let batch_codes: UInt32Array = codes.slice(offset, batch.num_rows()).iter().collect();
        columns[index] = Arc::new(batch_codes);
        offset += batch.num_rows();
        coded.push(RecordBatch::try_new(coded_schema.clone(), columns)?);
    }
    Ok((coded_schema, coded))
}

#[cfg(test)]
mod tests {
    use deltalake::arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::engine::LakeSettings;

    async fn context_with_sessions(memory_limit_bytes: usize, rows: usize) -> SessionContext {
        let ctx = LakeSettings {
            memory_limit_bytes,
            ..LakeSettings::default()
        }
        .context()
        .unwrap();
        let fields: Vec<Field> = MODEL_COLUMNS
            .iter()
            .map(|name| Field::new(*name, DataType::Utf8, false))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let column: ArrayRef = Arc::new(StringArray::from_iter_values(
            (0..rows).map(|i| format!("value-{i:08}")),
        ));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![column; MODEL_COLUMNS.len()]).unwrap();
        let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.register_table("view_sessions", Arc::new(table))
            .unwrap();
        ctx
    }

    #[tokio::test]
    async fn rows_are_held_within_a_third_of_the_pool_and_counted_in_it() {
        let ctx = context_with_sessions(64 << 20, 10_000).await;
        let held = sessions_in_memory(&ctx, 64 << 20)
            .await
            .unwrap()
            .expect("held");
        let reserved = ctx.runtime_env().memory_pool.reserved();
        assert!(reserved > 0 && reserved <= (64 << 20) / 3, "{reserved}");
        drop(held);
        assert_eq!(ctx.runtime_env().memory_pool.reserved(), 0);
    }

    fn viewers(videos: &[&str], keys: &[Option<&str>]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("video_id", DataType::Utf8, false),
            Field::new("user_key", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(videos.to_vec())),
                Arc::new(StringArray::from(keys.to_vec())),
            ],
        )
        .unwrap()
    }

    async fn distinct_viewers(batches: Vec<RecordBatch>) -> Vec<RecordBatch> {
        let ctx = SessionContext::new();
        let table = MemTable::try_new(batches[0].schema(), vec![batches]).unwrap();
        ctx.register_table("view_sessions", Arc::new(table))
            .unwrap();
        let sql = "SELECT video_id, COUNT(DISTINCT user_key) AS viewers, COUNT(user_key) AS keyed \
                   FROM view_sessions GROUP BY video_id ORDER BY video_id";
        ctx.sql(sql).await.unwrap().collect().await.unwrap()
    }

    #[tokio::test]
    async fn viewer_codes_are_one_per_key_across_batches_and_count_the_same_viewers() {
        let batches = vec![
            viewers(&["v1", "v1", "v2"], &[Some("aa"), Some("bb"), Some("aa")]),
            viewers(&["v2", "v1", "v2"], &[Some("cc"), None, Some("aa")]),
            viewers(&["v3"], &[Some("bb")]),
        ];
        let schema = batches[0].schema();
        let (coded_schema, coded) = coded_viewers(schema, batches.clone()).unwrap();
        assert_eq!(
            coded_schema
                .field_with_name("user_key")
                .unwrap()
                .data_type(),
            &DataType::UInt32
        );
        let codes: Vec<Option<u32>> = coded
            .iter()
            .flat_map(|b| {
                b.column_by_name("user_key")
                    .unwrap()
                    .as_primitive::<UInt32Type>()
                    .iter()
                    .collect::<Vec<_>>()
            })
            .collect();
        let (aa, bb, cc) = (codes[0], codes[1], codes[3]);
        assert_eq!(
            codes,
            vec![aa, bb, aa, cc, None, aa, bb],
            "one code per key, in every batch; a null stays null"
        );
        assert!(aa != bb && bb != cc && aa != cc);
        assert_eq!(
            distinct_viewers(coded).await,
            distinct_viewers(batches).await
        );
    }

    #[tokio::test]
    async fn rows_beyond_a_third_of_the_pool_are_not_held() {
        // About 2.5 MB of rows against a third of 3 MiB.
        let ctx = context_with_sessions(3 << 20, 10_000).await;
        assert!(sessions_in_memory(&ctx, 3 << 20).await.unwrap().is_none());
        assert_eq!(ctx.runtime_env().memory_pool.reserved(), 0);
    }
}
