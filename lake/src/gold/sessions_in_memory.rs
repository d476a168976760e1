//! `view_sessions` held in memory for one gold run, when it fits.
//!
//! Every model reads `view_sessions` whole: six scans, each decoding the same
//! Parquet columns again (a `top_creators` over 1.6M sessions took 0.2 s, most
//! of it reading). Held once, the models read memory. The rows are counted
//! against the run's memory pool, and held only while they take at most a
//! third of it; a larger table is read by each model as before. Why a third:
//! the rows take about 160 bytes per session, and `top_videos`' final
//! aggregation (distinct viewers per video, which cannot spill) needs about
//! 250 bytes per session of the pool, so at a third the models keep room for
//! it; at half, a 1.6M-session lake failed `top_videos` with a 600 MiB pool
//! that suffices when nothing is held.

use std::sync::Arc;

use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use deltalake::datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use tracing::info;

use crate::error::LakeError;
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

#[cfg(test)]
mod tests {
    use deltalake::arrow::array::{ArrayRef, RecordBatch, StringArray};
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

    #[tokio::test]
    async fn rows_beyond_a_third_of_the_pool_are_not_held() {
        // About 2.5 MB of rows against a third of 3 MiB.
        let ctx = context_with_sessions(3 << 20, 10_000).await;
        assert!(sessions_in_memory(&ctx, 3 << 20).await.unwrap().is_none());
        assert_eq!(ctx.runtime_env().memory_pool.reserved(), 0);
    }
}
