//! Silver: bronze enriched with video metadata (`enriched_events`, partitioned
//! by `event_date`), and one row per viewing session (`view_sessions`,
//! partitioned by `day`).
//!
//! Incremental and exactly-once like bronze: each silver table records, per
//! Kafka partition, the highest bronze offset it consumed (Delta app
//! transactions in its own commits). A run reads only bronze beyond those
//! marks, in chunks of bounded size (see [`chunks`]). Each chunk is enriched
//! and sessionised from the same rows in memory: enrichment is appended, and
//! only sessions the chunk touches are written. A touched session that already
//! exists is recomputed from all of its events, so a session spanning runs,
//! or a late event of an old session, comes out as if computed in one go: its
//! earlier events are unpacked from its own row (see [`packed_events`]), or,
//! in a table written before rows packed them, read back from the
//! `event_date` partitions it spans (`started_at` to `last_event_at`).

pub mod chunks;
pub(crate) mod deletion_vector;
mod earlier_events;
pub mod packed_events;
mod replace;
pub mod replaced_rows;
pub mod session;
mod sessions_lookup;
pub mod sessions_table;
pub mod watermarks;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, AsArray, RecordBatch, StringArray};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Date32Type, Field, Schema, SchemaRef};
use deltalake::datafusion::datasource::MemTable;
use deltalake::datafusion::datasource::provider_as_source;
use deltalake::datafusion::logical_expr::{
    Expr, LogicalPlan, LogicalPlanBuilder, cast as cast_expr,
};
use deltalake::datafusion::prelude::{SessionContext, col, in_subquery};
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{LogicalFileView, Transaction};
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::{ArrowPredicate, RowFilter};
use deltalake::parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
use deltalake::protocol::SaveMode;
use futures::TryStreamExt;
use tracing::info;

use crate::engine::LakeSettings;
use crate::error::LakeError;
use crate::file_reader::FileReader;
use crate::metadata::VideoMetadata;
use crate::parquet_layout::{sessions_writer_properties, writer_properties};
use crate::query::{column_as_i64, date_in, register_table, run_sql};
use crate::tables::{
    ENRICHED_TABLE, Lake, SESSIONS_TABLE, open_each, open_if_exists, parallel_input,
    register_metadata, write_parallelism, write_target,
};
use chunks::{Chunk, OffsetRange, chunk_sql, plan_chunks};
use watermarks::Watermarks;

const BRONZE_PREFIX: &str = "streamreel-bronze";
const ENRICHED_PREFIX: &str = "streamreel-silver-enriched";
const SESSIONS_PREFIX: &str = "streamreel-silver-sessions";
/// The bronze table version the last enrichment read.
pub const FROM_BRONZE_APP_ID: &str = "streamreel-silver-from-bronze";
/// `enriched_events` is partitioned by the UTC date of `event_time`.
pub const ENRICHED_PARTITION: &str = "event_date";
/// `view_sessions` is partitioned by `day` (the UTC date of `started_at`).
pub const SESSIONS_PARTITION: &str = "day";

/// Rows handed to the Parquet writer at once (delta-rs's default of 1,024
/// spent more time per call than encoding).
const WRITE_BATCH_ROWS: usize = 65_536;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SilverReport {
    pub bronze_version: Option<u64>,
    pub new_events: u64,
    pub unknown_video_events: u64,
    pub sessions_written: u64,
    /// Chunks the backlog was cut into (see [`LakeSettings::chunk_events`]).
    pub chunks: u64,
    /// Sessions that existed and were recomputed with their earlier events.
    pub sessions_recomputed: u64,
    /// Where the run's time went: reading and enriching bronze, finding
    /// existing sessions and their earlier events, waiting for sessionising
    /// beyond the enrichment write, and the Delta writes (of
    /// `enriched_events`, then of `view_sessions` and `replaced_sessions`).
    /// A recovery pass (enrichment committed, sessions not) counts reading
    /// its events from `enriched_events` as reading, and sessionising them as
    /// looking up.
    pub reading: Duration,
    pub looking_up: Duration,
    pub sessionising: Duration,
    pub writing_events: Duration,
    pub writing_sessions: Duration,
}

/// Brings both silver tables up to date with bronze, with default limits.
pub async fn refresh_silver(
    lake_dir: &Path,
    videos: &[VideoMetadata],
) -> Result<SilverReport, LakeError> {
    refresh_silver_with(lake_dir, videos, &LakeSettings::default()).await
}

/// Brings both silver tables up to date with bronze.
pub async fn refresh_silver_with(
    lake_dir: &Path,
    videos: &[VideoMetadata],
    settings: &LakeSettings,
) -> Result<SilverReport, LakeError> {
    Ok(refresh(lake_dir, videos, settings, true).await?.0)
}

/// [`refresh_silver_with`], keeping the tables as the run left them for a
/// gold run right after ([`crate::gold::run_models_after`]).
pub async fn refresh_silver_before_gold(
    lake_dir: &Path,
    videos: &[VideoMetadata],
    settings: &LakeSettings,
) -> Result<(SilverReport, SilverTables), LakeError> {
    refresh(lake_dir, videos, settings, true).await
}

/// `view_sessions` and `replaced_sessions` as a silver run left them (each
/// `None` when it does not exist), so that the gold run after it need not
/// replay their logs again: a few hundredths of a second of an incremental
/// run. Gold reads the version it is given, so tables a little older than
/// the latest only make it build from that version.
#[derive(Default)]
pub struct SilverTables {
    pub(crate) sessions: Option<DeltaTable>,
    pub(crate) replaced: Option<DeltaTable>,
}

/// [`refresh_silver_with`]; a `view_sessions` this run creates has packed
/// events when `create_packed` (tests create one as earlier releases did).
async fn refresh(
    lake_dir: &Path,
    videos: &[VideoMetadata],
    settings: &LakeSettings,
    create_packed: bool,
) -> Result<(SilverReport, SilverTables), LakeError> {
    let mut report = SilverReport::default();
    let lake = Lake::new(lake_dir);
    let [bronze, enriched, sessions, replaced] = open_each([
        lake.bronze(),
        lake.enriched_events(),
        lake.view_sessions(),
        lake.replaced_sessions(),
    ])
    .await?;
    let Some(bronze) = bronze else {
        return Ok((report, SilverTables { sessions, replaced }));
    };
    report.bronze_version = bronze.version();
    let ctx = settings.context()?;
    register_table(&ctx, "bronze", &bronze).await?;
    register_metadata(&ctx, videos)?;
    let partitions = bronze_partitions(&ctx, &bronze).await?;
    let bronze_marks = Watermarks::read(Some(&bronze), BRONZE_PREFIX, &partitions).await?;

    let mut silver = Silver {
        ctx: &ctx,
        lake: &lake,
        enriched,
        sessions: match sessions {
            // Before the run reads it: the replacements' conflict checks then
            // start from the version it read.
            Some(table) => Some(replace::allow_deletion_vectors(table).await?),
            None => None,
        },
        replaced,
        partitions: &partitions,
        report: &mut report,
        packs_events: true,
    };
    silver.packs_events = silver
        .sessions
        .as_ref()
        .map_or(create_packed, holds_packed_events);
    silver.check_layout()?;
    let mut enriched_marks = silver.enriched_marks().await?;
    let sessions_marks = silver.sessions_marks().await?;
    // Sessions are written after their events, so sessions ahead of events
    // mean `enriched_events` lost rows: sessionising bronze again would count
    // every event of those sessions twice. The tables were opened side by
    // side, so another run (`models run` beside a node) may have committed a
    // chunk between the two openings: `enriched_events` is read again first.
    if !pending(&enriched_marks, &sessions_marks).is_empty() {
        silver.enriched = open_if_exists(&lake.enriched_events()).await?;
        enriched_marks = silver.enriched_marks().await?;
    }
    if let Some((partition, range)) = pending(&enriched_marks, &sessions_marks).pop_first() {
        return Err(LakeError::SessionsAheadOfEvents {
            partition,
            sessions_up_to: range.up_to,
            events: range.after.map_or("none of its events".to_string(), |a| {
                format!("its events only up to offset {a}")
            }),
        });
    }
    // A run that died between a chunk's two commits left enrichment ahead:
    // sessionise those events from `enriched_events` first.
    let behind = pending(&sessions_marks, &enriched_marks);
    for chunk in plan_chunks(&behind, settings.chunk_events) {
        let started = Instant::now();
        let events = silver.enriched_events_of(&chunk).await?;
        silver.report.reading += started.elapsed();
        let started = Instant::now();
        let sessions = silver.sessions_of(&events, &chunk).await?.finish().await?;
        silver.report.looking_up += started.elapsed();
        let started = Instant::now();
        silver.write_sessions(sessions, &chunk).await?;
        silver.report.writing_sessions += started.elapsed();
    }
    for chunk in plan_chunks(
        &pending(&enriched_marks, &bronze_marks),
        settings.chunk_events,
    ) {
        silver.report.chunks += 1;
        let started = Instant::now();
        let (schema, events) = read_chunk(&ctx, &chunk).await?;
        silver.report.reading += started.elapsed();
        silver.report.new_events += events.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        silver.report.unknown_video_events += events
            .iter()
            .map(|b| {
                b.column_by_name("title")
                    .map_or(0, |c| c.null_count() as u64)
            })
            .sum::<u64>();
        // Earlier events are read before the chunk's enrichment lands, so they
        // never include the chunk's own; sessionising (one core) then runs
        // while the enrichment is written (the other).
        let started = Instant::now();
        let sessions = silver.sessions_of(&events, &chunk).await?;
        silver.report.looking_up += started.elapsed();
        let started = Instant::now();
        silver
            .append_enriched(schema, events, &chunk, bronze.version().unwrap_or_default())
            .await?;
        silver.report.writing_events += started.elapsed();
        let started = Instant::now();
        let sessions = sessions.finish().await?;
        silver.report.sessionising += started.elapsed();
        let started = Instant::now();
        silver.write_sessions(sessions, &chunk).await?;
        silver.report.writing_sessions += started.elapsed();
    }
    let tables = SilverTables {
        sessions: silver.sessions,
        replaced: silver.replaced,
    };
    info!(?report, "silver refreshed");
    Ok((report, tables))
}

/// Bronze rows of `chunk` joined with the catalogue: `enriched_events` rows.
async fn read_chunk(
    ctx: &SessionContext,
    chunk: &Chunk,
) -> Result<(SchemaRef, Vec<RecordBatch>), LakeError> {
    let frame = ctx
        .sql(&format!(
            "SELECT b.event_id, b.session_id, b.user_key, b.video_id, b.event_type, \
             b.position_s, b.seek_to_s, b.event_time, b.region, b.device, b.kafka_partition, \
             b.kafka_offset, b.ingested_at, m.title, m.genre, m.creator, m.duration_s, \
             CAST(b.event_time AS DATE) AS {ENRICHED_PARTITION} \
             FROM bronze b LEFT JOIN video_metadata m ON b.video_id = m.video_id WHERE {}",
            chunk_sql(chunk)
        ))
        .await?;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    Ok((schema, frame.collect().await?))
}

/// The ranges beyond `consumed` up to `available`, per partition.
fn pending(consumed: &Watermarks, available: &Watermarks) -> BTreeMap<i32, OffsetRange> {
    available
        .0
        .iter()
        .filter_map(|(partition, up_to)| {
            let after = consumed.0.get(partition).copied();
            (after.is_none_or(|a| a < *up_to)).then_some((
                *partition,
                OffsetRange {
                    after,
                    up_to: *up_to,
                },
            ))
        })
        .collect()
}

/// Sessions computed for one chunk, with what they replace.
struct ChunkSessions {
    rows: RecordBatch,
    /// How many of the rows replace an existing session.
    replaced: usize,
    /// The `day` partitions holding the existing sessions the rows replace;
    /// empty when every session is new.
    replaced_days: BTreeSet<i32>,
    /// Where the replaced rows are, when the lookup found out.
    replaced_positions: Option<HashMap<String, Vec<u64>>>,
    /// The replaced rows as they were (see [`replaced_rows`]), when the
    /// lookup read their columns.
    replaced_rows: Option<RecordBatch>,
}

/// Sessions of a chunk being computed on a blocking thread.
struct PendingSessions {
    build: tokio::task::JoinHandle<Result<RecordBatch, LakeError>>,
    replaced: usize,
    replaced_days: BTreeSet<i32>,
    replaced_positions: Option<HashMap<String, Vec<u64>>>,
    replaced_rows: Option<RecordBatch>,
}

impl PendingSessions {
    async fn finish(self) -> Result<ChunkSessions, LakeError> {
        Ok(ChunkSessions {
            rows: self.build.await??,
            replaced: self.replaced,
            replaced_days: self.replaced_days,
            replaced_positions: self.replaced_positions,
            replaced_rows: self.replaced_rows,
        })
    }
}

/// The touched sessions that `view_sessions` holds already.
struct ExistingSessions {
    /// `session_id`, `first_day`, `last_day`, and the rest of
    /// [`sessions_table::RECOMPUTE_COLUMNS`] when the table packs events.
    rows: RecordBatch,
    /// Their rows' places in the data files, when the lookup read them.
    positions: Option<HashMap<String, Vec<u64>>>,
}

struct Silver<'a> {
    ctx: &'a SessionContext,
    lake: &'a Lake,
    enriched: Option<DeltaTable>,
    sessions: Option<DeltaTable>,
    /// `silver/replaced_sessions`, once it exists.
    replaced: Option<DeltaTable>,
    partitions: &'a [i32],
    report: &'a mut SilverReport,
    /// Whether `view_sessions` keeps each session's events packed (every
    /// table this version creates); a table created before keeps its columns,
    /// and its recomputed sessions' earlier events are read from
    /// `enriched_events`.
    packs_events: bool,
}

impl Silver<'_> {
    /// Tables written before silver was partitioned cannot be appended to.
    fn check_layout(&self) -> Result<(), LakeError> {
        for (table, name, column) in [
            (&self.enriched, ENRICHED_TABLE, ENRICHED_PARTITION),
            (&self.sessions, SESSIONS_TABLE, SESSIONS_PARTITION),
        ] {
            let Some(table) = table else { continue };
            let found = table
                .snapshot()
                .map_err(|e| LakeError::delta(name, e))?
                .metadata()
                .partition_columns()
                .to_vec();
            if found != [column.to_string()] {
                return Err(LakeError::SilverLayout {
                    table: name.to_string(),
                    expected: column.to_string(),
                    found: found.join(", "),
                });
            }
        }
        Ok(())
    }

    /// A context of its own (fresh table names) with the run's configuration
    /// and memory pool.
    fn fresh_context(&self) -> SessionContext {
        SessionContext::new_with_config_rt(self.ctx.copied_config(), self.ctx.runtime_env())
    }

    async fn enriched_marks(&self) -> Result<Watermarks, LakeError> {
        Watermarks::read(self.enriched.as_ref(), ENRICHED_PREFIX, self.partitions).await
    }

    async fn sessions_marks(&self) -> Result<Watermarks, LakeError> {
        Watermarks::read(self.sessions.as_ref(), SESSIONS_PREFIX, self.partitions).await
    }

    /// Rows of `enriched_events` in `chunk` (recovery after an interrupted run).
    async fn enriched_events_of(&self, chunk: &Chunk) -> Result<Vec<RecordBatch>, LakeError> {
        let Some(enriched) = &self.enriched else {
            return Ok(Vec::new());
        };
        let ctx = self.fresh_context();
        register_table(&ctx, "enriched", enriched).await?;
        run_sql(
            &ctx,
            &format!("SELECT * FROM enriched WHERE {}", chunk_sql(chunk)),
        )
        .await
    }

    /// Starts computing the sessions `events` touch, each from all of its events.
    async fn sessions_of(
        &mut self,
        events: &[RecordBatch],
        chunk: &Chunk,
    ) -> Result<PendingSessions, LakeError> {
        let touched = distinct_strings(events, "session_id")?;
        let existing = self.existing_sessions(&touched).await?;
        let mut input: Vec<RecordBatch> = events.to_vec();
        let mut replaced = 0;
        let mut replaced_days = BTreeSet::new();
        let mut replaced_positions = None;
        let mut old_rows = None;
        if let Some(existing) = existing {
            let rows = &existing.rows;
            let (earlier, days) = if self.packs_events {
                self.report.sessions_recomputed += rows.num_rows() as u64;
                let days = date_column(rows, "first_day")?.into_iter().collect();
                (vec![sessions_table::unpacked_events(rows)?], days)
            } else {
                self.earlier_events(rows, chunk).await?
            };
            input.extend(earlier);
            replaced = rows.num_rows();
            replaced_days = days;
            old_rows = replaced_rows::replaced(rows)?;
            replaced_positions = existing.positions;
        }
        Ok(PendingSessions {
            build: tokio::task::spawn_blocking(move || sessions_table::build_sessions(&input)),
            replaced,
            replaced_days,
            replaced_positions,
            replaced_rows: old_rows,
        })
    }

    /// `session_id`, first and last event day of the touched sessions already
    /// in `view_sessions`, and what they are recomputed from when the table
    /// packs their events (`None` when there are none).
    async fn existing_sessions(
        &mut self,
        touched: &[String],
    ) -> Result<Option<ExistingSessions>, LakeError> {
        let Some(sessions) = &self.sessions else {
            return Ok(None);
        };
        if touched.is_empty() {
            return Ok(None);
        }
        let ctx = self.fresh_context();
        if let Some(found) =
            sessions_lookup::find_sessions(sessions, &ctx, touched, self.packs_events).await?
        {
            return Ok((found.rows.num_rows() > 0).then_some(ExistingSessions {
                rows: found.rows,
                positions: Some(found.positions),
            }));
        }
        register_table(&ctx, "view_sessions", sessions).await?;
        let mut columns = vec![
            col("session_id"),
            cast_expr(col("started_at"), DataType::Date32).alias("first_day"),
            cast_expr(col("last_event_at"), DataType::Date32).alias("last_day"),
        ];
        if self.packs_events {
            columns.extend(
                sessions_table::RECOMPUTE_COLUMNS[1..]
                    .iter()
                    .chain(&replaced_rows::MEASURES)
                    .map(|c| col(*c)),
            );
        }
        let frame = ctx
            .table("view_sessions")
            .await?
            .filter(session_filter(touched)?)?
            .select(columns)?;
        let found: Vec<RecordBatch> = frame
            .collect()
            .await?
            .into_iter()
            .filter(|b| b.num_rows() > 0)
            .collect();
        if found.is_empty() {
            return Ok(None);
        }
        let schema = found[0].schema();
        Ok(Some(ExistingSessions {
            rows: deltalake::arrow::compute::concat_batches(&schema, &found)?,
            positions: None,
        }))
    }

    /// The already enriched events of `existing` sessions, read from the
    /// `event_date` partitions each one spans, and the `day` partitions the
    /// sessions are in now.
    async fn earlier_events(
        &mut self,
        existing: &RecordBatch,
        chunk: &Chunk,
    ) -> Result<(Vec<RecordBatch>, BTreeSet<i32>), LakeError> {
        let ids = distinct_strings(std::slice::from_ref(existing), "session_id")?;
        self.report.sessions_recomputed += ids.len() as u64;
        let first = date_column(existing, "first_day")?;
        let last = date_column(existing, "last_day")?;
        let replaced_days: BTreeSet<i32> = first.iter().copied().collect();
        let Some(enriched) = &self.enriched else {
            return Ok((Vec::new(), replaced_days));
        };
        // Only the `event_date` partitions that exist: a session stamped by a
        // clock in the year 9999 spans millions of days, not of partitions.
        let spans: Vec<(i32, i32)> = first.into_iter().zip(last).collect();
        let event_days = days_within(&spans, &partition_days(enriched, ENRICHED_PARTITION)?);
        if let Some(earlier) =
            earlier_events::earlier_events(enriched, &event_days, &ids, chunk).await?
        {
            return Ok((earlier, replaced_days));
        }
        let ctx = self.fresh_context();
        register_table(&ctx, "enriched", enriched).await?;
        let frame = ctx.table("enriched").await?;
        // Rows of the chunk's own ranges are the chunk's events (after a
        // recovery they are already in `enriched_events`).
        let own = frame.parse_sql_expr(&chunk_sql(chunk))?;
        let earlier = frame
            .filter(
                date_in(ENRICHED_PARTITION, event_days.iter().copied())
                    .and(session_filter(&ids)?)
                    .and(!own),
            )?
            .select_columns(&sessions_table::INPUT_COLUMNS)?
            .collect()
            .await?;
        Ok((earlier, replaced_days))
    }

    async fn append_enriched(
        &mut self,
        schema: SchemaRef,
        events: Vec<RecordBatch>,
        chunk: &Chunk,
        bronze_version: u64,
    ) -> Result<(), LakeError> {
        let mut transactions = chunk_marks(chunk).transactions(ENRICHED_PREFIX);
        transactions.push(Transaction::new(FROM_BRONZE_APP_ID, bronze_version as i64));
        let (table, kind) = write_target(self.enriched.take(), &self.lake.enriched_events())?;
        let properties = kind.commit_properties(
            CommitProperties::default().with_application_transactions(transactions),
        );
        let table = table
            .write(Vec::new())
            .with_input_plan(parallel_input(schema, events, write_parallelism())?)
            .with_write_batch_size(WRITE_BATCH_ROWS)
            .with_writer_properties(writer_properties())
            .with_save_mode(SaveMode::Append)
            .with_partition_columns([ENRICHED_PARTITION])
            .with_commit_properties(properties)
            .await
            .map_err(|e| kind.failed(ENRICHED_TABLE, e))?;
        self.enriched = Some(table);
        Ok(())
    }

    /// Appends new sessions; replaces recomputed ones (see [`replace`]).
    async fn write_sessions(
        &mut self,
        sessions: ChunkSessions,
        chunk: &Chunk,
    ) -> Result<(), LakeError> {
        self.report.sessions_written += sessions.rows.num_rows() as u64;
        let rows = if self.packs_events {
            sessions.rows
        } else {
            without_column(&sessions.rows, sessions_table::PACKED_EVENTS)?
        };
        let (table, kind) = write_target(self.sessions.take(), &self.lake.view_sessions())?;
        let properties = kind.commit_properties(
            CommitProperties::default()
                .with_application_transactions(chunk_marks(chunk).transactions(SESSIONS_PREFIX)),
        );
        let table = if sessions.replaced_days.is_empty() {
            let schema = rows.schema();
            let rows = split_rows(&rows, write_parallelism());
            table
                .write(Vec::new())
                .with_input_plan(parallel_input(schema, rows, write_parallelism())?)
                .with_write_batch_size(WRITE_BATCH_ROWS)
                .with_writer_properties(sessions_writer_properties())
                .with_save_mode(SaveMode::Append)
                .with_partition_columns([SESSIONS_PARTITION])
                // Used when the write creates the table (see [`replace`]).
                .with_configuration([(replace::ENABLE_DELETION_VECTORS, Some("true"))])
                .with_commit_properties(properties)
                .await
                .map_err(|e| kind.failed(SESSIONS_TABLE, e))?
        } else {
            let ctx = self.fresh_context();
            let replacement = replace::Replacement {
                rows,
                replaced: sessions.replaced,
                days: &sessions.replaced_days,
                positions: sessions.replaced_positions,
            };
            let table = replace::replace_sessions(table, &ctx, replacement, properties).await?;
            let created = crate::gold::created_time(&table)?;
            if let (Some(rows), Some(created)) = (sessions.replaced_rows, created) {
                let by = replaced_rows::ReplacedBy {
                    created,
                    version: table.version().unwrap_or_default(),
                };
                let recorded =
                    replaced_rows::record(self.lake, self.replaced.take(), by, rows).await?;
                self.replaced = Some(recorded);
            }
            table
        };
        self.sessions = Some(table);
        Ok(())
    }
}

/// Whether `table` (named `name`) maps column names: its Parquet files then
/// name columns otherwise, and only DataFusion's scan reads them.
pub(crate) fn maps_column_names(table: &DeltaTable, name: &str) -> Result<bool, LakeError> {
    let snapshot = table.snapshot().map_err(|e| LakeError::delta(name, e))?;
    Ok(snapshot
        .metadata()
        .configuration()
        .get("delta.columnMapping.mode")
        .is_some_and(|mode| mode != "none"))
}

/// Whether a row filter on `session_id` can read a Parquet file of this
/// `schema` for `columns`: it has them all, and its ids are plain strings
/// (another writer's file may hold them dictionary-encoded).
fn filter_reads(schema: &deltalake::arrow::datatypes::Schema, columns: &[&str]) -> bool {
    columns
        .iter()
        .all(|name| schema.column_with_name(name).is_some())
        && schema
            .field_with_name("session_id")
            .is_ok_and(|f| crate::query::is_plain_string(f.data_type()))
}

/// The rows of the Parquet file at `path` (opened by `builder`) that
/// `filter` keeps, with the columns of `projection`; the other columns are
/// decoded for the kept rows only.
pub(crate) async fn rows_kept_by(
    builder: ParquetRecordBatchStreamBuilder<FileReader>,
    projection: ProjectionMask,
    filter: Box<dyn ArrowPredicate>,
    path: &deltalake::Path,
) -> Result<Vec<RecordBatch>, LakeError> {
    let failed = |source| LakeError::parquet(path, source);
    builder
        .with_projection(projection)
        .with_row_filter(RowFilter::new(vec![filter]))
        .with_batch_size(65_536)
        .build()
        .map_err(failed)?
        .try_collect()
        .await
        .map_err(failed)
}

/// Deletion vectors count positions from a file's first row: a filter that
/// tracks positions must have seen as many rows as the log records.
pub(crate) fn check_rows_seen(
    path: &deltalake::Path,
    seen: u64,
    recorded: Option<usize>,
) -> Result<(), LakeError> {
    if recorded == Some(seen as usize) {
        return Ok(());
    }
    Err(LakeError::RowCountMismatch {
        table: SESSIONS_TABLE.to_string(),
        path: path.to_string(),
        read: seen,
        recorded,
    })
}

/// Whether `table` (`view_sessions`) has the column of packed events.
fn holds_packed_events(table: &DeltaTable) -> bool {
    table
        .snapshot()
        .is_ok_and(|snapshot| snapshot.schema().contains(sessions_table::PACKED_EVENTS))
}

/// `batch` without its column `name`.
fn without_column(batch: &RecordBatch, name: &str) -> Result<RecordBatch, LakeError> {
    let skip = batch.schema().index_of(name)?;
    let keep: Vec<usize> = (0..batch.num_columns()).filter(|i| *i != skip).collect();
    Ok(batch.project(&keep)?)
}

/// The days of `partitions` that fall within any of `spans` (first..=last).
fn days_within(spans: &[(i32, i32)], partitions: &BTreeSet<i32>) -> BTreeSet<i32> {
    let mut merged: Vec<(i32, i32)> = spans.to_vec();
    merged.sort_unstable();
    let mut days = BTreeSet::new();
    let mut covered_to = None;
    for (first, last) in merged {
        // Spans sorted by start: skip what an earlier span already covered.
        let from = covered_to.map_or(first, |c: i32| first.max(c.saturating_add(1)));
        if from <= last {
            days.extend(partitions.range(from..=last));
        }
        covered_to = Some(covered_to.map_or(last, |c: i32| c.max(last)));
    }
    days
}

/// The values of the date partition column `column` that `table` holds files for.
fn partition_days(table: &DeltaTable, column: &str) -> Result<BTreeSet<i32>, LakeError> {
    let snapshot = table
        .snapshot()
        .map_err(|e| LakeError::delta(ENRICHED_TABLE, e))?;
    let mut days = BTreeSet::new();
    for file in snapshot.log_data().iter() {
        days.extend(file_day(&file, ENRICHED_TABLE, column)?);
    }
    Ok(days)
}

/// The files of `table` (named `name`) in the partitions of the date column
/// `column` that are among `days`.
fn files_in_days(
    table: &DeltaTable,
    name: &str,
    column: &str,
    days: &BTreeSet<i32>,
) -> Result<Vec<LogicalFileView>, LakeError> {
    let snapshot = table.snapshot().map_err(|e| LakeError::delta(name, e))?;
    let mut files = Vec::new();
    for file in snapshot.log_data().iter() {
        if file_day(&file, name, column)?.is_some_and(|day| days.contains(&day)) {
            files.push(file);
        }
    }
    Ok(files)
}

/// The day of `file`'s partition in the date column `column` of table
/// `name`; `None` when the file has no value there.
fn file_day(file: &LogicalFileView, name: &str, column: &str) -> Result<Option<i32>, LakeError> {
    match file.partition_values_map().get(column) {
        Some(Some(value)) => partition_day(value)
            .map(Some)
            .ok_or_else(|| LakeError::ColumnType {
                table: name.into(),
                column: column.into(),
            }),
        _ => Ok(None),
    }
}

/// A date partition value (`YYYY-MM-DD`) as days since the epoch.
pub(crate) fn partition_day(value: &str) -> Option<i32> {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");
    let date = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()?;
    i32::try_from((date - epoch).num_days()).ok()
}

/// `batch` cut into `parts` slices (zero-copy).
fn split_rows(batch: &RecordBatch, parts: usize) -> Vec<RecordBatch> {
    let step = batch.num_rows().div_ceil(parts.max(1)).max(1);
    (0..batch.num_rows())
        .step_by(step)
        .map(|start| batch.slice(start, step.min(batch.num_rows() - start)))
        .collect()
}

/// The marks a chunk's commits carry: the end of each of its ranges.
fn chunk_marks(chunk: &Chunk) -> Watermarks {
    Watermarks(chunk.iter().map(|(p, r)| (*p, r.up_to)).collect())
}

/// `session_id` is one of `ids`, as a semi-join with `ids` as a table. (An
/// `IN` list of literals, even evaluated inside the Parquet reader, measured
/// several times slower from a few thousand ids.)
fn session_filter(ids: &[String]) -> Result<Expr, LakeError> {
    Ok(in_subquery(col("session_id"), ids_plan(ids)?))
}

/// `ids` as a one-column scan (`session_id`).
fn ids_plan(ids: &[String]) -> Result<Arc<LogicalPlan>, LakeError> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "session_id",
        DataType::Utf8,
        false,
    )]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from_iter_values(ids))],
    )?;
    let table = Arc::new(MemTable::try_new(schema, vec![vec![batch]])?);
    Ok(Arc::new(
        LogicalPlanBuilder::scan("wanted_session_ids", provider_as_source(table), None)?.build()?,
    ))
}

/// The distinct values of a string column across batches.
fn distinct_strings(batches: &[RecordBatch], name: &str) -> Result<Vec<String>, LakeError> {
    let mut seen = std::collections::HashSet::new();
    for batch in batches {
        let Some(column) = batch.column_by_name(name) else {
            continue;
        };
        let column = cast(column, &DataType::Utf8)?;
        let strings = column.as_string::<i32>();
        for i in 0..strings.len() {
            if !strings.is_null(i) && !seen.contains(strings.value(i)) {
                seen.insert(strings.value(i).to_string());
            }
        }
    }
    Ok(seen.into_iter().collect())
}

/// A SQL date literal for `days` since 1970-01-01.
fn date_literal(days: i32) -> String {
    format!("DATE '{}'", day_value(days))
}

/// The date `days` after 1970-01-01 as `YYYY-MM-DD` (a date partition's value).
fn day_value(days: i32) -> String {
    chrono::DateTime::from_timestamp(i64::from(days) * 86_400, 0)
        .map(|t| t.date_naive())
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

/// A date column as days since the epoch.
fn date_column(batch: &RecordBatch, name: &str) -> Result<Vec<i32>, LakeError> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| LakeError::ColumnType {
            table: SESSIONS_TABLE.into(),
            column: name.into(),
        })?;
    let column = cast(column, &DataType::Date32)?;
    Ok(column.as_primitive::<Date32Type>().values().to_vec())
}

/// The Kafka partitions bronze may hold rows of, from each file's statistics
/// (the least and greatest `kafka_partition`) instead of a scan of every file:
/// bronze gains a file per partition and commit until it is compacted. A file
/// compacted from several partitions adds every partition between its least
/// and greatest; one without rows has no marks, and the run passes it by.
/// Files without statistics (another writer's) are scanned.
async fn bronze_partitions(
    ctx: &SessionContext,
    bronze: &DeltaTable,
) -> Result<Vec<i32>, LakeError> {
    let snapshot = bronze
        .snapshot()
        .map_err(|e| LakeError::delta("bronze", e))?;
    let mut partitions = BTreeSet::new();
    for file in snapshot.log_data().iter() {
        match file.stats().as_deref().and_then(partition_range) {
            Some((least, greatest)) => partitions.extend(least..=greatest),
            None => return distinct_partitions(ctx, "bronze").await,
        }
    }
    Ok(partitions.into_iter().collect())
}

/// The least and greatest `kafka_partition` in a file's Delta statistics.
fn partition_range(stats: &str) -> Option<(i32, i32)> {
    let stats: serde_json::Value = serde_json::from_str(stats).ok()?;
    let bound = |which: &str| {
        stats
            .get(which)?
            .get("kafka_partition")?
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
    };
    let (least, greatest) = (bound("minValues")?, bound("maxValues")?);
    (least <= greatest).then_some((least, greatest))
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

#[cfg(test)]
mod tests {
    use streamreel_protocol::BronzeRow;

    use super::*;
    use crate::BronzeTable;
    use crate::query::{column_as_f64, column_as_strings, register_path};
    use crate::rows_to_batch;
    use crate::tables::open_if_exists;

    const T0: i64 = 1_795_503_600_000_000;

    fn videos() -> Vec<VideoMetadata> {
        vec![VideoMetadata {
            video_id: "vid-00001".into(),
            title: "A film".into(),
            genre: "drama".into(),
            creator: "Someone".into(),
            duration_s: 100.0,
            release_date: chrono::NaiveDate::default(),
        }]
    }

    fn event(partition: i32, offset: i64, session: &str, kind: &str, position_s: f64) -> BronzeRow {
        BronzeRow {
            event_id: format!("e-{partition}-{offset}"),
            session_id: session.into(),
            user_key: format!("user-{partition}"),
            video_id: "vid-00001".into(),
            event_type: kind.into(),
            position_s,
            seek_to_s: None,
            event_time_us: T0 + (position_s * 1e6) as i64,
            region: "eu-west".into(),
            device: None,
            kafka_partition: partition,
            kafka_offset: offset,
            ingested_at_us: T0,
        }
    }

    async fn append(lake: &Path, rows: &[BronzeRow]) {
        let mut bronze = BronzeTable::open_or_create(lake).await.unwrap();
        for partition in [0, 1] {
            let part: Vec<BronzeRow> = rows
                .iter()
                .filter(|r| r.kafka_partition == partition)
                .cloned()
                .collect();
            if let Some(last) = part.last() {
                bronze
                    .append(rows_to_batch(&part).unwrap(), partition, last.kafka_offset)
                    .await
                    .unwrap();
            }
        }
    }

    /// What a run that died after its first enrichment commit leaves behind.
    async fn enrich_first_chunk_only(lake_dir: &Path, videos: &[VideoMetadata]) {
        let bronze = open_if_exists(&BronzeTable::path_in(lake_dir))
            .await
            .unwrap()
            .unwrap();
        let ctx = LakeSettings::default().context().unwrap();
        register_table(&ctx, "bronze", &bronze).await.unwrap();
        register_metadata(&ctx, videos).unwrap();
        let partitions = bronze_partitions(&ctx, &bronze).await.unwrap();
        let bronze_marks = Watermarks::read(Some(&bronze), BRONZE_PREFIX, &partitions)
            .await
            .unwrap();
        let lake = Lake::new(lake_dir);
        let mut report = SilverReport::default();
        let mut silver = Silver {
            ctx: &ctx,
            lake: &lake,
            enriched: open_if_exists(&lake.enriched_events()).await.unwrap(),
            sessions: open_if_exists(&lake.view_sessions()).await.unwrap(),
            replaced: None,
            partitions: &partitions,
            report: &mut report,
            packs_events: true,
        };
        let marks = silver.enriched_marks().await.unwrap();
        let chunk = plan_chunks(&pending(&marks, &bronze_marks), 1_000_000).remove(0);
        let (schema, events) = read_chunk(&ctx, &chunk).await.unwrap();
        silver
            .append_enriched(schema, events, &chunk, bronze.version().unwrap())
            .await
            .unwrap();
    }

    async fn sessions(lake: &Path) -> Vec<(String, f64, f64)> {
        let ctx = SessionContext::new();
        register_path(&ctx, "s", &Lake::new(lake).view_sessions())
            .await
            .unwrap();
        let batches = run_sql(
            &ctx,
            "SELECT session_id, CAST(event_count AS DOUBLE) AS n, watch_s FROM s ORDER BY session_id",
        )
        .await
        .unwrap();
        let mut rows = Vec::new();
        for b in &batches {
            let ids = column_as_strings(b, "session_id").unwrap();
            let n = column_as_f64(b, "n").unwrap();
            let watch = column_as_f64(b, "watch_s").unwrap();
            for i in 0..b.num_rows() {
                rows.push((ids[i].clone(), n[i], watch[i]));
            }
        }
        rows
    }

    /// Rows of the table at `path`, counted by SQL as readers count them.
    async fn row_count(path: &Path) -> i64 {
        let ctx = SessionContext::new();
        register_path(&ctx, "t", path).await.unwrap();
        let count = run_sql(&ctx, "SELECT COUNT(*) AS n FROM t").await.unwrap();
        column_as_i64(&count[0], "n").unwrap()[0]
    }

    /// Data files of `view_sessions` and whether each has a deletion vector.
    async fn session_files(lake: &Path) -> BTreeMap<String, bool> {
        let table = open_if_exists(&Lake::new(lake).view_sessions())
            .await
            .unwrap()
            .unwrap();
        let snapshot = table.snapshot().unwrap();
        snapshot
            .log_data()
            .iter()
            .map(|f| {
                (
                    f.path().to_string(),
                    f.deletion_vector_descriptor().is_some(),
                )
            })
            .collect()
    }

    /// Silver of two sessions: `a` watched 40 s, `b` 10 s.
    async fn sessions_a_and_b(lake: &Path) {
        sessions_a_and_b_packed(lake, true).await;
    }

    /// As [`sessions_a_and_b`], its `view_sessions` created with packed
    /// events or, when not `packed`, as an earlier release did.
    async fn sessions_a_and_b_packed(lake: &Path, packed: bool) {
        append(
            lake,
            &[
                event(0, 0, "a", "play", 0.0),
                event(0, 1, "a", "pause", 40.0),
                event(0, 2, "b", "play", 0.0),
                event(0, 3, "b", "pause", 10.0),
            ],
        )
        .await;
        refresh(lake, &videos(), &LakeSettings::default(), packed)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_view_sessions_without_packed_events_keeps_its_columns_and_reads_enriched_events() {
        let earlier_release = tempfile::tempdir().unwrap();
        let this_release = tempfile::tempdir().unwrap();
        let mut late = event(0, 4, "a", "seek", 10.0);
        late.seek_to_s = Some(30.0);
        for (lake, create_packed) in [(earlier_release.path(), false), (this_release.path(), true)]
        {
            sessions_a_and_b_packed(lake, create_packed).await;
            append(lake, &[late.clone(), event(0, 5, "b", "stop", 20.0)]).await;
            let report = refresh_silver(lake, &videos()).await.unwrap();
            assert_eq!(report.sessions_recomputed, 2);
            let table = open_if_exists(&Lake::new(lake).view_sessions())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(holds_packed_events(&table), create_packed);
        }
        // `a`: play 0..10, seek to 30, pause at 40: 10 + 10 watched.
        let expected = vec![("a".to_string(), 3.0, 20.0), ("b".to_string(), 3.0, 10.0)];
        assert_eq!(sessions(earlier_release.path()).await, expected);
        assert_eq!(sessions(this_release.path()).await, expected);
    }

    #[test]
    fn partitions_come_from_file_statistics() {
        let stats = r#"{"numRecords":3,"minValues":{"kafka_partition":1,"kafka_offset":0},
            "maxValues":{"kafka_partition":3,"kafka_offset":9},"nullCount":{}}"#;
        assert_eq!(partition_range(stats), Some((1, 3)));
        // Without the column's bounds the file must be scanned.
        assert_eq!(partition_range(r#"{"numRecords":3}"#), None);
        assert_eq!(partition_range("not json"), None);
        assert_eq!(
            partition_range(
                r#"{"minValues":{"kafka_partition":4},"maxValues":{"kafka_partition":2}}"#
            ),
            None
        );
    }

    #[tokio::test]
    async fn recomputed_sessions_replace_their_rows_by_deletion_vectors() {
        let lake = tempfile::tempdir().unwrap();
        sessions_a_and_b(lake.path()).await;
        let first_files = session_files(lake.path()).await;

        // `a` gets a late seek (10 -> 30): 10 + 10 watched instead of 40.
        let mut late = event(0, 4, "a", "seek", 10.0);
        late.seek_to_s = Some(30.0);
        append(lake.path(), &[late]).await;
        let report = refresh_silver(lake.path(), &videos()).await.unwrap();
        assert_eq!(report.sessions_recomputed, 1);
        let files = session_files(lake.path()).await;
        for path in first_files.keys() {
            assert!(files.contains_key(path), "{path} was rewritten");
        }
        assert_eq!(
            files.values().filter(|has_vector| **has_vector).count(),
            1,
            "the file that held `a` has a deletion vector: {files:?}"
        );

        // Then `b` (possibly in the same file: its vector must keep `a` deleted).
        append(lake.path(), &[event(0, 5, "b", "stop", 20.0)]).await;
        refresh_silver(lake.path(), &videos()).await.unwrap();
        let expected = vec![("a".to_string(), 3.0, 20.0), ("b".to_string(), 3.0, 10.0)];
        assert_eq!(sessions(lake.path()).await, expected);
        // Counted as readers count (export, data tests): not from the files'
        // row counts, which still include the deleted rows.
        assert_eq!(row_count(&Lake::new(lake.path()).view_sessions()).await, 2);

        // Compaction applies the vectors: deleted rows stay deleted.
        let compacted = crate::maintenance::compact(
            &Lake::new(lake.path()).view_sessions(),
            &LakeSettings::default(),
        )
        .await
        .unwrap();
        assert!(compacted.files_removed > 0);
        assert_eq!(sessions(lake.path()).await, expected);
        append(lake.path(), &[event(0, 6, "a", "stop", 60.0)]).await;
        refresh_silver(lake.path(), &videos()).await.unwrap();
        assert_eq!(
            sessions(lake.path()).await,
            vec![("a".to_string(), 4.0, 20.0), ("b".to_string(), 3.0, 10.0)]
        );
    }

    #[tokio::test]
    async fn enriched_events_deleted_on_its_own_is_refused_not_counted_twice() {
        let lake = tempfile::tempdir().unwrap();
        sessions_a_and_b(lake.path()).await;
        std::fs::remove_dir_all(Lake::new(lake.path()).enriched_events()).unwrap();
        let error = refresh_silver(lake.path(), &videos()).await.unwrap_err();
        assert!(
            matches!(
                error,
                LakeError::SessionsAheadOfEvents {
                    partition: 0,
                    sessions_up_to: 3,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("none of its events"), "{error}");
        assert!(
            !Lake::new(lake.path()).enriched_events().exists(),
            "nothing was written"
        );
        let expected = vec![("a".to_string(), 2.0, 40.0), ("b".to_string(), 2.0, 10.0)];
        assert_eq!(sessions(lake.path()).await, expected);
    }

    #[tokio::test]
    async fn a_session_replaced_twice_is_found_by_its_live_row_only() {
        let lake = tempfile::tempdir().unwrap();
        sessions_a_and_b(lake.path()).await;
        let mut late = event(0, 4, "a", "seek", 10.0);
        late.seek_to_s = Some(30.0);
        append(lake.path(), &[late]).await;
        refresh_silver(lake.path(), &videos()).await.unwrap();
        // `a`'s first row is now deleted by a vector, beside its live row.
        append(lake.path(), &[event(0, 5, "a", "stop", 45.0)]).await;
        let report = refresh_silver(lake.path(), &videos()).await.unwrap();
        assert_eq!(report.sessions_recomputed, 1);
        // play 0..10, seek to 30, pause at 40, stop while paused.
        assert_eq!(
            sessions(lake.path()).await,
            vec![("a".to_string(), 4.0, 20.0), ("b".to_string(), 2.0, 10.0)]
        );
    }

    #[tokio::test]
    async fn compaction_drops_the_deleted_rows_of_files_above_its_target_size() {
        let lake = tempfile::tempdir().unwrap();
        sessions_a_and_b(lake.path()).await;
        let path = Lake::new(lake.path()).view_sessions();
        // Every file is above a one-byte target: bin-packing leaves them all.
        open_if_exists(&path)
            .await
            .unwrap()
            .unwrap()
            .set_tbl_properties()
            .with_properties(HashMap::from([(
                "delta.targetFileSize".to_string(),
                "1".to_string(),
            )]))
            .await
            .unwrap();
        let mut late = event(0, 4, "a", "seek", 10.0);
        late.seek_to_s = Some(30.0);
        append(lake.path(), &[late]).await;
        refresh_silver(lake.path(), &videos()).await.unwrap();
        let expected = sessions(lake.path()).await;
        assert_eq!(expected.len(), 2);
        let stored_rows = || async {
            let table = open_if_exists(&path).await.unwrap().unwrap();
            let snapshot = table.snapshot().unwrap();
            snapshot
                .log_data()
                .iter()
                .map(|f| f.num_records().unwrap())
                .sum::<usize>()
        };
        assert_eq!(
            stored_rows().await,
            3,
            "`a`'s old row is only marked deleted"
        );

        let report = crate::maintenance::compact(&path, &LakeSettings::default())
            .await
            .unwrap();
        assert!(report.files_removed >= 2, "{report:?}");
        let files = session_files(lake.path()).await;
        assert!(files.values().all(|vector| !vector), "{files:?}");
        assert_eq!(stored_rows().await, 2, "the deleted row is gone from disk");
        assert_eq!(sessions(lake.path()).await, expected);
    }

    #[tokio::test]
    async fn a_replacement_read_before_a_compaction_is_refused() {
        let lake = tempfile::tempdir().unwrap();
        append(lake.path(), &[event(0, 0, "a", "play", 0.0)]).await;
        refresh_silver(lake.path(), &videos()).await.unwrap();
        let path = Lake::new(lake.path()).view_sessions();
        let created = open_if_exists(&path).await.unwrap().unwrap();
        let protocol = created.snapshot().unwrap().protocol().clone();
        assert_eq!(
            (protocol.min_reader_version(), protocol.min_writer_version()),
            (3, 7),
            "created with deletion vectors enabled"
        );
        append(lake.path(), &[event(1, 0, "b", "play", 0.0)]).await;
        refresh_silver(lake.path(), &videos()).await.unwrap();

        // A writer reads the table and `a`'s row; compaction then merges the
        // day's two files (removing them without a data change).
        let stale = open_if_exists(&path).await.unwrap().unwrap();
        let ctx = SessionContext::new();
        let found = ctx
            .read_table(stale.table_provider().await.unwrap())
            .unwrap()
            .filter(col("session_id").eq(deltalake::datafusion::prelude::lit("a")))
            .unwrap()
            .select_columns(&sessions_table::COLUMNS)
            .unwrap()
            .collect()
            .await
            .unwrap();
        let rows = deltalake::arrow::compute::concat_batches(&found[0].schema(), &found).unwrap();
        let days: BTreeSet<i32> = date_column(&rows, SESSIONS_PARTITION)
            .unwrap()
            .into_iter()
            .collect();
        let compacted = crate::maintenance::compact(&path, &LakeSettings::default())
            .await
            .unwrap();
        assert_eq!(compacted.files_removed, 2);

        let replacement = replace::Replacement {
            rows,
            replaced: 1,
            days: &days,
            positions: None,
        };
        let refused =
            replace::replace_sessions(stale, &ctx, replacement, CommitProperties::default()).await;
        assert!(
            matches!(refused, Err(LakeError::Delta { .. })),
            "the compacted file would have kept `a` beside its new row: {:?}",
            refused.map(|t| t.version())
        );
        assert_eq!(sessions(lake.path()).await.len(), 2);
    }

    #[test]
    fn earlier_events_are_read_from_the_partitions_a_session_spans() {
        let partitions: BTreeSet<i32> = [3, 5, 9, 20, 2_932_896].into();
        // A session from day 4 to the year 9999 spans a few partitions.
        assert_eq!(
            days_within(&[(4, 2_932_896)], &partitions),
            [5, 9, 20, 2_932_896].into()
        );
        let spans = [(9, 9), (0, 5), (4, 10), (30, 40)];
        let expected: BTreeSet<i32> = partitions
            .iter()
            .copied()
            .filter(|d| spans.iter().any(|(f, l)| f <= d && d <= l))
            .collect();
        assert_eq!(days_within(&spans, &partitions), expected);
        assert!(days_within(&[], &partitions).is_empty());
    }

    /// Session and offset of every row of `batches`, sorted.
    fn rows_of(batches: &[RecordBatch]) -> Vec<(String, i64)> {
        let mut rows = Vec::new();
        for batch in batches {
            let sessions = column_as_strings(batch, "session_id").unwrap();
            let offsets = crate::query::column_as_i64(batch, "kafka_offset").unwrap();
            rows.extend(sessions.into_iter().zip(offsets));
        }
        rows.sort();
        rows
    }

    #[tokio::test]
    async fn earlier_events_are_read_from_parquet_unless_a_file_has_a_deletion_vector() {
        let lake = tempfile::tempdir().unwrap();
        let rows = vec![
            event(0, 0, "a", "play", 0.0),
            event(0, 1, "b", "play", 0.0),
            event(0, 2, "a", "pause", 40.0),
            event(1, 0, "c", "play", 0.0),
            event(1, 1, "a", "stop", 50.0),
        ];
        append(lake.path(), &rows).await;
        refresh_silver(lake.path(), &videos()).await.unwrap();
        let enriched = open_if_exists(&Lake::new(lake.path()).enriched_events())
            .await
            .unwrap()
            .unwrap();
        let days = partition_days(&enriched, ENRICHED_PARTITION).unwrap();
        let wanted = ["a".to_string(), "c".to_string()];
        // Partition 0 from offset 2 on is the chunk's own.
        let chunk = Chunk::from([(
            0,
            chunks::OffsetRange {
                after: Some(1),
                up_to: 9,
            },
        )]);
        let read = earlier_events::earlier_events(&enriched, &days, &wanted, &chunk)
            .await
            .unwrap()
            .expect("plain files are read directly");
        let expected = vec![
            ("a".to_string(), 0),
            ("a".to_string(), 1),
            ("c".to_string(), 0),
        ];
        assert_eq!(rows_of(&read), expected);
        let mut columns: Vec<String> = read[0]
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        columns.sort();
        let mut inputs = sessions_table::INPUT_COLUMNS.map(String::from).to_vec();
        inputs.sort();
        assert_eq!(columns, inputs);

        // Another writer deletes the first row of a file.
        let enriched = replace::allow_deletion_vectors(enriched).await.unwrap();
        let snapshot = enriched.snapshot().unwrap();
        let file = snapshot.log_data().iter().next().unwrap();
        let deleted = roaring::RoaringTreemap::from_iter([0u64]);
        let actions = vec![
            deltalake::kernel::Action::Remove(file.remove_action(true)),
            deltalake::kernel::Action::Add(replace::with_deletion_vector(&file, &deleted)),
        ];
        let committed = deltalake::kernel::transaction::CommitBuilder::default()
            .with_actions(actions)
            .build(
                Some(snapshot as _),
                enriched.log_store(),
                deltalake::protocol::DeltaOperation::Delete { predicate: None },
            )
            .await
            .unwrap();
        let mut enriched = enriched;
        enriched.load_version(committed.version()).await.unwrap();
        let read = earlier_events::earlier_events(&enriched, &days, &wanted, &chunk)
            .await
            .unwrap();
        assert!(
            read.is_none(),
            "left to DataFusion, which applies the vector"
        );
    }

    #[tokio::test]
    async fn a_run_that_died_between_its_two_commits_is_completed_by_the_next() {
        let first = vec![
            event(0, 0, "a", "play", 0.0),
            event(0, 1, "a", "pause", 40.0),
            event(1, 0, "b", "play", 0.0),
        ];
        // A late event of `a` (between its play and pause), and `b` ending.
        let mut late = event(0, 2, "a", "seek", 10.0);
        late.seek_to_s = Some(30.0);
        let second = vec![late, event(1, 1, "b", "stop", 20.0)];
        let crashed = tempfile::tempdir().unwrap();
        let clean = tempfile::tempdir().unwrap();
        for lake in [crashed.path(), clean.path()] {
            append(lake, &first).await;
            refresh_silver(lake, &videos()).await.unwrap();
            append(lake, &second).await;
        }
        enrich_first_chunk_only(crashed.path(), &videos()).await;

        let recovered = refresh_silver(crashed.path(), &videos()).await.unwrap();
        assert_eq!(recovered.new_events, 0, "nothing is enriched twice");
        refresh_silver(clean.path(), &videos()).await.unwrap();
        let expected = vec![
            // play 0..10, seek to 30, pause at 40: 10 + 10 watched.
            ("a".to_string(), 3.0, 20.0),
            ("b".to_string(), 2.0, 20.0),
        ];
        assert_eq!(sessions(clean.path()).await, expected);
        assert_eq!(sessions(crashed.path()).await, expected);
        assert_eq!(
            row_count(&Lake::new(crashed.path()).enriched_events()).await,
            5
        );
    }
}
