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
