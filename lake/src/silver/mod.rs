//! Silver: bronze enriched with video metadata (`enriched_events`), and one row
//! per viewing session (`view_sessions`).
//!
//! Incremental and exactly-once like bronze: each silver table records, per
//! Kafka partition, the highest upstream offset it consumed (Delta app
//! transactions in its own commits); `enriched_events` also records the bronze
//! version it read (`streamreel-silver-from-bronze`). A run reads only rows
//! beyond those marks. Sessions touched by new events are recomputed from all of
//! their events and MERGEd by `session_id`, so a session spanning runs, or one
//! whose events arrive out of order, comes out as if computed in one go.

pub mod session;
pub mod sessions_table;
pub mod watermarks;

use std::path::Path;
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use tracing::info;

use crate::BronzeTable;
use crate::error::LakeError;
use crate::metadata::VideoMetadata;
use crate::query::{column_as_i64, register_table, run_sql};
use crate::tables::{
    ENRICHED_TABLE, Lake, SESSIONS_TABLE, handle_for_write, open_if_exists, register_metadata,
};
use watermarks::Watermarks;

const BRONZE_PREFIX: &str = "streamreel-bronze";
const ENRICHED_PREFIX: &str = "streamreel-silver-enriched";
const SESSIONS_PREFIX: &str = "streamreel-silver-sessions";
/// The bronze table version the last enrichment read.
pub const FROM_BRONZE_APP_ID: &str = "streamreel-silver-from-bronze";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SilverReport {
    pub bronze_version: Option<u64>,
    pub new_events: u64,
    pub unknown_video_events: u64,
    pub sessions_written: u64,
}

/// Brings both silver tables up to date with bronze.
pub async fn refresh_silver(
    lake_dir: &Path,
    videos: &[VideoMetadata],
) -> Result<SilverReport, LakeError> {
    let mut report = SilverReport::default();
    let Some(bronze) = open_if_exists(&BronzeTable::path_in(lake_dir)).await? else {
        return Ok(report);
    };
    report.bronze_version = bronze.version();
    let ctx = SessionContext::new();
    register_table(&ctx, "bronze", &bronze).await?;
    register_metadata(&ctx, videos)?;
    let partitions = distinct_partitions(&ctx, "bronze").await?;
    let bronze_marks = Watermarks::read(Some(&bronze), BRONZE_PREFIX, &partitions).await?;

    let enriched_path = Lake::new(lake_dir).enriched_events();
    let enriched = open_if_exists(&enriched_path).await?;
    let consumed = Watermarks::read(enriched.as_ref(), ENRICHED_PREFIX, &partitions).await?;
    if consumed != bronze_marks {
        let (new_events, unknown) = enrich(
            &ctx,
            &enriched_path,
            enriched,
            &consumed,
            &bronze_marks,
            &partitions,
            &bronze,
        )
        .await?;
        report.new_events = new_events;
        report.unknown_video_events = unknown;
    }

    let Some(enriched) = open_if_exists(&enriched_path).await? else {
        return Ok(report);
    };
    let sessions_path = Lake::new(lake_dir).view_sessions();
    let sessions = open_if_exists(&sessions_path).await?;
    let enriched_marks = Watermarks::read(Some(&enriched), ENRICHED_PREFIX, &partitions).await?;
    let sessions_consumed =
        Watermarks::read(sessions.as_ref(), SESSIONS_PREFIX, &partitions).await?;
    if sessions_consumed != enriched_marks {
        report.sessions_written = update_sessions(
            &enriched,
            &sessions_path,
            sessions,
            &sessions_consumed,
            &enriched_marks,
            &partitions,
        )
        .await?;
    }
    info!(?report, "silver refreshed");
    Ok(report)
}

async fn enrich(
    ctx: &SessionContext,
    path: &Path,
    enriched: Option<DeltaTable>,
    consumed: &Watermarks,
    bronze_marks: &Watermarks,
    partitions: &[i32],
    bronze: &DeltaTable,
) -> Result<(u64, u64), LakeError> {
    let sql = format!(
        "SELECT b.event_id, b.session_id, b.user_key, b.video_id, b.event_type, b.position_s, \
         b.seek_to_s, b.event_time, b.region, b.device, b.kafka_partition, b.kafka_offset, \
         b.ingested_at, m.title, m.genre, m.creator, m.duration_s \
         FROM bronze b LEFT JOIN video_metadata m ON b.video_id = m.video_id WHERE {}",
        consumed.beyond_sql(partitions)
    );
    let frame = ctx.sql(&sql).await?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let mut batches = frame.collect().await?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let unknown: usize = batches
        .iter()
        .map(|b| b.column_by_name("title").map_or(0, |c| c.null_count()))
        .sum();
    if batches.is_empty() {
        batches.push(RecordBatch::new_empty(schema));
    }
    let mut transactions = bronze_marks.transactions(ENRICHED_PREFIX);
    transactions.push(Transaction::new(
        FROM_BRONZE_APP_ID,
        bronze.version().unwrap_or_default() as i64,
    ));
    let table = match enriched {
        Some(table) => table,
        None => handle_for_write(path).await?,
    };
    table
        .write(batches)
        .with_save_mode(SaveMode::Append)
        .with_commit_properties(
            CommitProperties::default().with_application_transactions(transactions),
        )
        .await
        .map_err(|e| LakeError::delta(ENRICHED_TABLE, e))?;
    Ok((rows as u64, unknown as u64))
}

async fn update_sessions(
    enriched: &DeltaTable,
    path: &Path,
    sessions: Option<DeltaTable>,
    consumed: &Watermarks,
    enriched_marks: &Watermarks,
    partitions: &[i32],
) -> Result<u64, LakeError> {
    let ctx = SessionContext::new();
    register_table(&ctx, "enriched", enriched).await?;
    let sql = format!(
        "SELECT session_id, user_key, video_id, genre, creator, region, device, event_type, \
         position_s, seek_to_s, CAST(event_time AS BIGINT) AS event_time_us, kafka_offset, duration_s \
         FROM enriched WHERE session_id IN (SELECT DISTINCT session_id FROM enriched WHERE {})",
        consumed.beyond_sql(partitions)
    );
    let events = run_sql(&ctx, &sql).await?;
    let batch = sessions_table::build_sessions(&events)?;
    let written = batch.num_rows() as u64;
    let properties = CommitProperties::default()
        .with_application_transactions(enriched_marks.transactions(SESSIONS_PREFIX));
    match sessions {
        None => {
            handle_for_write(path)
                .await?
                .write(vec![batch])
                .with_save_mode(SaveMode::Append)
                .with_commit_properties(properties)
                .await
                .map_err(|e| LakeError::delta(SESSIONS_TABLE, e))?;
        }
        Some(table) => {
            let source = ctx.read_batch(batch)?;
            let columns = sessions_table::COLUMNS;
            table
                .merge(source, "target.session_id = source.session_id")
                .with_source_alias("source")
                .with_target_alias("target")
                .with_commit_properties(properties)
                .when_matched_update(|mut update| {
                    for column in columns {
                        update = update.update(column, format!("source.{column}"));
                    }
                    update
                })
                .map_err(|e| LakeError::delta(SESSIONS_TABLE, e))?
                .when_not_matched_insert(|mut insert| {
                    for column in columns {
                        insert = insert.set(column, format!("source.{column}"));
                    }
                    insert
                })
                .map_err(|e| LakeError::delta(SESSIONS_TABLE, e))?
                .await
                .map_err(|e| LakeError::delta(SESSIONS_TABLE, e))?;
        }
    }
    Ok(written)
}

async fn distinct_partitions(ctx: &SessionContext, table: &str) -> Result<Vec<i32>, LakeError> {
    let batches = run_sql(
        ctx,
        &format!("SELECT DISTINCT kafka_partition FROM {table} ORDER BY kafka_partition"),
    )
    .await?;
    let mut partitions = Vec::new();
    for batch in &batches {
        partitions.extend(
            column_as_i64(batch, "kafka_partition")?
                .into_iter()
                .map(|p| p as i32),
        );
    }
    Ok(partitions)
}
