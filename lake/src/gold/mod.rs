//! Gold: SQL models (`lake/models/<name>.sql`, one per table, like dbt models)
//! run by DataFusion over `view_sessions` and the metadata catalogue. A run
//! builds every model, audits the new data with the data tests, and publishes
//! only when all pass: each model then replaces its table `lake/gold/<name>` in
//! one Delta commit, so a reader sees the old or the new version, never a half
//! and never an untested one.
//!
//! A model whose table was built from an earlier `view_sessions` version is
//! updated by difference instead ([`difference`], [`incremental`]): the SQL
//! defines it, a full build runs the SQL, and a property test holds the
//! update to the SQL's rows.

pub mod changed_days;
pub mod difference;
mod incremental;
mod live_pairs;
pub mod per_day;
mod session_changes;
mod sessions_in_memory;

pub use incremental::{catalogue_fingerprint, trim_replaced_sessions};

use std::path::Path;
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::arrow::json::WriterBuilder;
use deltalake::arrow::json::writer::JsonArray;
use deltalake::datafusion::datasource::TableProvider;
use deltalake::datafusion::execution::runtime_env::RuntimeEnv;
use deltalake::datafusion::prelude::{SessionContext, col, lit};
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::transaction::TransactionError;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use tracing::info;

use crate::data_tests::{DATA_TESTS, DataTestResult, audit_batches, report};
use crate::engine::LakeSettings;
use crate::error::LakeError;
use crate::metadata::VideoMetadata;
use crate::parquet_layout::writer_properties;
use crate::query::register_table;
use crate::silver::SilverTables;
use crate::tables::{
    Lake, SESSIONS_TABLE, open_existing, open_if_exists, register_metadata, write_target,
};
use incremental::{Incremental, PreviousRows};

/// The gold models, in the order they run.
pub const MODELS: [(&str, &str); 6] = [
    (
        "viewer_retention",
        include_str!("../../models/viewer_retention.sql"),
    ),
    (
        "dropoff_by_genre",
        include_str!("../../models/dropoff_by_genre.sql"),
    ),
    (
        "regional_viewership",
        include_str!("../../models/regional_viewership.sql"),
    ),
    ("top_videos", include_str!("../../models/top_videos.sql")),
    (
        "top_creators",
        include_str!("../../models/top_creators.sql"),
    ),
    (
        "daily_engagement",
        include_str!("../../models/daily_engagement.sql"),
    ),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRun {
    pub model: String,
    pub rows: u64,
    pub version: u64,
    /// For a per-day model rebuilt only where sessions changed, how many days
    /// it rebuilt; `None` when the model was built otherwise.
    pub days_rebuilt: Option<usize>,
    /// For a model updated by difference, how many session rows it applied
    /// (removed plus added); `None` when it was built otherwise.
    pub sessions_applied: Option<usize>,
    /// Set when the run did not publish the model because the table already
    /// held a build from this later `view_sessions` version (another run
    /// finished first).
    pub superseded_by: Option<u64>,
    /// Where the model's time went: building its rows, its data tests, and
    /// the Delta commit.
    pub timings: ModelTimings,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelTimings {
    pub building: std::time::Duration,
    pub testing: std::time::Duration,
    pub publishing: std::time::Duration,
}

/// The models with a `video_id` column (their rows can be asked per video).
pub const PER_VIDEO_MODELS: [&str; 2] = ["viewer_retention", "top_videos"];

pub fn model_names() -> Vec<&'static str> {
    MODELS.iter().map(|(name, _)| *name).collect()
}

/// Refuses a selection that names no model, before any work is done.
pub fn check_selection(select: Option<&str>) -> Result<(), LakeError> {
    match select {
        Some(name) if !model_names().contains(&name) => Err(LakeError::UnknownModel {
            name: name.to_string(),
            known: model_names().join(", "),
        }),
        _ => Ok(()),
    }
}

/// The silver tables (latest versions) and the catalogue, registered in the
/// run's context.
struct SilverSession {
    ctx: SessionContext,
    sessions: DeltaTable,
}

impl SilverSession {
    /// `view_sessions` as given (else the latest), and `enriched_events` only
    /// when one of the `models` reads it (none of the shipped ones does; its
    /// log replay is a few hundredths of a second).
    async fn open(
        lake_dir: &Path,
        videos: &[VideoMetadata],
        runtime: &Arc<RuntimeEnv>,
        models: &[(&str, &str)],
        sessions: Option<DeltaTable>,
    ) -> Result<SilverSession, LakeError> {
        let ctx = LakeSettings::context_in(runtime.clone());
        register_metadata(&ctx, videos)?;
        let lake = Lake::new(lake_dir);
        let sessions = match sessions {
            Some(table) => table,
            None => open_existing(&lake.view_sessions()).await?,
        };
        register_table(&ctx, "view_sessions", &sessions).await?;
        if models
            .iter()
            .any(|(_, sql)| sql.contains("enriched_events"))
        {
            let enriched = open_existing(&lake.enriched_events()).await?;
            register_table(&ctx, "enriched_events", &enriched).await?;
        }
        Ok(SilverSession { ctx, sessions })
    }

    fn sessions_version(&self) -> u64 {
        self.sessions.version().unwrap_or_default()
    }
}

/// The app id of the `txn` action in every gold commit: its version is the
/// `view_sessions` version the model was built from, so a reader can tell
/// that the six gold tables agree.
pub const FROM_SESSIONS_APP_ID: &str = "streamreel-gold-from-view-sessions";

/// The app id of a second `txn` action in every gold commit: its version is a
/// fingerprint of the model's SQL, so that rows a per-day model keeps were
/// computed by the same definition.
pub const MODEL_SQL_APP_ID: &str = "streamreel-gold-model-sql";

/// The app id of a third `txn` action in every gold commit: its version is
/// the creation time (ms) of the `view_sessions` table it was built from, so
/// that a `view_sessions` deleted and rebuilt is never taken for the old one.
pub const VIEW_SESSIONS_CREATED_APP_ID: &str = "streamreel-gold-view-sessions-created";

/// The app id of a fourth `txn` action in every gold commit: its version is
/// a fingerprint of the video catalogue the model was built with (see
/// [`catalogue_fingerprint`]), so that a model is updated by difference only
/// over the catalogue its rows joined.
pub const CATALOGUE_APP_ID: &str = "streamreel-gold-catalogue";

/// When `sessions` (the `view_sessions` table) was created, per its metadata.
pub fn created_time(sessions: &DeltaTable) -> Result<Option<i64>, LakeError> {
    Ok(sessions
        .snapshot()
        .map_err(|e| LakeError::delta(SESSIONS_TABLE, e))?
        .metadata()
        .created_time())
}

/// FNV-1a of `sql`, as a non-negative `txn` version. Stable across builds
/// and releases (a different value only costs a full rebuild).
pub fn sql_fingerprint(sql: &str) -> i64 {
    let hash = sql.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (hash & i64::MAX as u64) as i64
}

/// Builds the selected models (all without `select`) with the shipped data
/// tests; see [`run_models_audited_by`].
pub async fn run_models(
    lake_dir: &Path,
    videos: &[VideoMetadata],
    select: Option<&str>,
) -> Result<GoldRun, LakeError> {
    run_models_with(lake_dir, videos, select, &LakeSettings::default()).await
}

/// As [`run_models`], within `settings`' memory limit.
pub async fn run_models_with(
    lake_dir: &Path,
    videos: &[VideoMetadata],
    select: Option<&str>,
    settings: &LakeSettings,
) -> Result<GoldRun, LakeError> {
    let silver = SilverTables::default();
    audited_run(lake_dir, videos, select, DATA_TESTS, settings, silver).await
}

/// As [`run_models_with`], right after the silver run that left `silver`
/// ([`crate::silver::refresh_silver_before_gold`]): built from its
/// `view_sessions` version.
pub async fn run_models_after(
    lake_dir: &Path,
    videos: &[VideoMetadata],
    select: Option<&str>,
    settings: &LakeSettings,
    silver: SilverTables,
) -> Result<GoldRun, LakeError> {
    audited_run(lake_dir, videos, select, DATA_TESTS, settings, silver).await
}

/// What a published gold run built and the data tests it passed.
#[derive(Debug, Clone)]
pub struct GoldRun {
    pub models: Vec<ModelRun>,
    pub tests: Vec<DataTestResult>,
    /// The `view_sessions` version every model was built from.
    pub sessions_version: u64,
}

/// Write-audit-publish: builds every selected model from one `view_sessions`
/// version, runs the declared data tests on the new data, and only when all of
/// them pass replaces the gold tables (one commit each, carrying the silver
/// version). A failing test publishes nothing, so the previous versions stay
/// visible, and the run fails with the report.
pub async fn run_models_audited_by(
    lake_dir: &Path,
    videos: &[VideoMetadata],
    select: Option<&str>,
    declarations: &str,
) -> Result<GoldRun, LakeError> {
    audited_run(
        lake_dir,
        videos,
        select,
        declarations,
        &LakeSettings::default(),
        SilverTables::default(),
    )
    .await
}

async fn audited_run(
    lake_dir: &Path,
    videos: &[VideoMetadata],
    select: Option<&str>,
    declarations: &str,
    settings: &LakeSettings,
    tables: SilverTables,
) -> Result<GoldRun, LakeError> {
    check_selection(select)?;
    let selected: Vec<(&str, &str)> = MODELS
        .into_iter()
        .filter(|(name, _)| select.is_none_or(|s| s == *name))
        .collect();
    // One pool for every session of the run: the limit bounds the run.
    let runtime = settings.runtime()?;
    let silver =
        SilverSession::open(lake_dir, videos, &runtime, &selected, tables.sessions).await?;
    let sessions_version = silver.sessions_version();
    let sessions_created = created_time(&silver.sessions)?;
    let lake = Lake::new(lake_dir);
    // Each model updated by difference where its table allows; the time
    // spent reading the changes goes to the first model that needs them.
    let mut incremental = Incremental::new(
        &lake,
        &silver.sessions,
        tables.replaced,
        sessions_created,
        videos,
        LakeSettings::context_in(runtime.clone()),
    );
    // Published on the versions read here, so that a run publishing in
    // between makes this one's commit conflict instead of replacing it. The
    // tables are independent, so they are opened, audited and published side
    // by side (each a few milliseconds of log replay, planning and commit).
    let opened = selected.iter().map(|(name, _)| {
        let path = lake.gold(name);
        let ctx = incremental.ctx.clone();
        tokio::spawn(async move {
            let table = open_if_exists(&path).await?;
            Ok::<_, LakeError>(table.map(|t| {
                let rows = PreviousRows::start(&t, ctx);
                (t, rows)
            }))
        })
    });
    let mut opened = futures::future::join_all(opened).await.into_iter();
    let mut planned = Vec::new();
    for (name, sql) in &selected {
        let started = std::time::Instant::now();
        let (previous, updated) = match opened.next().expect("one table per model")?? {
            Some((table, rows)) => {
                let updated = incremental.rows(name, sql, &table, rows).await?;
                (Some(table), updated)
            }
            None => (None, None),
        };
        planned.push((*name, *sql, previous, updated, started.elapsed()));
    }
    // Worth holding only when several models read it.
    let full_builds = planned.iter().filter(|p| p.3.is_none()).count();
    let in_memory = if full_builds > 1 {
        sessions_in_memory::sessions_in_memory(&silver.ctx, settings.memory_limit_bytes).await?
    } else {
        None
    };
    let held_rows = in_memory
        .as_ref()
        .map(|held| held.table.clone() as Arc<dyn TableProvider>);
    if let Some(rows) = &held_rows {
        silver.ctx.deregister_table("view_sessions")?;
        silver.ctx.register_table("view_sessions", rows.clone())?;
    }
    let mut built = Vec::new();
    for (name, sql, previous, updated, planning) in planned {
        let model_error = |source| LakeError::Model {
            model: name.to_string(),
            source,
        };
        let started = std::time::Instant::now();
        let mut method = BuildMethod::default();
        let (schema, mut batches) = match updated {
            Some(rows) => {
                method.sessions_applied = Some(rows.sessions_applied);
                (rows.schema, vec![rows.batch])
            }
            None => {
                let per_day = if per_day::PER_DAY_MODELS.contains(&name) {
                    let ctx = LakeSettings::context_in(runtime.clone());
                    register_metadata(&ctx, videos)?;
                    let sessions = per_day::Sessions {
                        table: &silver.sessions,
                        held_rows: held_rows.clone(),
                    };
                    per_day::rebuild_changed_days(ctx, name, sql, sessions, previous.clone())
                        .await?
                } else {
                    None
                };
                match per_day {
                    Some(rows) => {
                        method.days_rebuilt = Some(rows.days_rebuilt);
                        (rows.schema, rows.batches)
                    }
                    None => {
                        let frame = silver.ctx.sql(sql).await.map_err(model_error)?;
                        let schema = Arc::new(frame.schema().as_arrow().clone());
                        (schema, frame.collect().await.map_err(model_error)?)
                    }
                }
            }
        };
        if batches.is_empty() {
            batches.push(RecordBatch::new_empty(schema.clone()));
        }
        let timings = ModelTimings {
            building: planning + started.elapsed(),
            ..ModelTimings::default()
        };
        built.push(BuiltModel {
            name,
            sql,
            previous,
            schema,
            batches,
            method,
            timings,
        });
    }
    let shared_videos: Arc<[VideoMetadata]> = videos.into();
    let declarations: Arc<str> = declarations.into();
    let audits = built.iter().map(|model| {
        let (name, schema, batches) = (model.name, model.schema.clone(), model.batches.clone());
        let (videos, declarations) = (shared_videos.clone(), declarations.clone());
        let ctx = LakeSettings::context_in(runtime.clone());
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let tests = audit_batches(ctx, name, schema, batches, &videos, &declarations).await;
            (tests, started.elapsed())
        })
    });
    let mut tests = Vec::new();
    for (audit, model) in futures::future::join_all(audits)
        .await
        .into_iter()
        .zip(&mut built)
    {
        let (passed, testing) = audit?;
        tests.extend(passed?);
        model.timings.testing = testing;
    }
    if tests.iter().any(|t| !t.passed()) {
        return Err(LakeError::AuditFailed {
            report: report(&tests),
        });
    }
    let catalogue = catalogue_fingerprint(videos);
    let mut methods = Vec::new();
    let mut publishing = Vec::new();
    for model in built {
        methods.push((model.method, model.timings));
        let built_from = BuiltFrom {
            sessions_version,
            sessions_created,
            sql: model.sql,
            catalogue,
        };
        let (lake_dir, name) = (lake_dir.to_path_buf(), model.name);
        let (previous, batches) = (model.previous, model.batches);
        publishing.push(tokio::spawn(async move {
            let started = std::time::Instant::now();
            let run = publish(&lake_dir, name, previous, batches, &built_from).await;
            (run, started.elapsed())
        }));
    }
    let published = futures::future::join_all(publishing).await;
    let mut models = Vec::new();
    for (done, (method, mut timings)) in published.into_iter().zip(methods) {
        let (run, publishing) = done?;
        let mut run = run?;
        timings.publishing = publishing;
        run.timings = timings;
        if run.superseded_by.is_none() {
            run.days_rebuilt = method.days_rebuilt;
            run.sessions_applied = method.sessions_applied;
        }
        models.push(run);
    }
    Ok(GoldRun {
        models,
        tests,
        sessions_version,
    })
}

/// A model's new rows, built and not yet published.
struct BuiltModel {
    name: &'static str,
    sql: &'static str,
    /// The table as read before building, which the commit must follow.
    previous: Option<DeltaTable>,
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    method: BuildMethod,
    timings: ModelTimings,
}

/// How a model's rows were built, when not in full.
#[derive(Debug, Clone, Copy, Default)]
struct BuildMethod {
    days_rebuilt: Option<usize>,
    sessions_applied: Option<usize>,
}

/// What a gold table was built from, recorded in its commit.
struct BuiltFrom<'a> {
    sessions_version: u64,
    sessions_created: Option<i64>,
    sql: &'a str,
    catalogue: i64,
}

impl BuiltFrom<'_> {
    fn transactions(&self) -> Vec<Transaction> {
        let mut transactions = vec![
            Transaction::new(FROM_SESSIONS_APP_ID, self.sessions_version as i64),
            Transaction::new(MODEL_SQL_APP_ID, sql_fingerprint(self.sql)),
            Transaction::new(CATALOGUE_APP_ID, self.catalogue),
        ];
        if let Some(created) = self.sessions_created {
            transactions.push(Transaction::new(VIEW_SESSIONS_CREATED_APP_ID, created));
        }
        transactions
    }
}

/// Replaces gold table `name` (`previous`, as read when the model was built)
/// with `batches` in one commit, unless it already holds a build from a later
/// version of the same `view_sessions`: two runs at once (a `models run`
/// beside the node's job) must not leave the older result published. A run
/// that published in between makes the commit conflict: the table is read
/// again and the question asked again.
async fn publish(
    lake_dir: &Path,
    name: &str,
    mut previous: Option<DeltaTable>,
    batches: Vec<RecordBatch>,
    built_from: &BuiltFrom<'_>,
) -> Result<ModelRun, LakeError> {
    const ATTEMPTS: usize = 3;
    let sessions_version = built_from.sessions_version;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let path = Lake::new(lake_dir).gold(name);
    let mut attempt = 1;
    loop {
        if let Some(table) = &previous
            && let Some(newer) = newer_build(table, name, built_from).await?
        {
            info!(
                model = name,
                sessions_version,
                published_from = newer,
                "gold model not published: the table holds a build from a later view_sessions version"
            );
            return Ok(ModelRun {
                model: name.to_string(),
                rows: rows as u64,
                version: table.version().unwrap_or_default(),
                days_rebuilt: None,
                sessions_applied: None,
                superseded_by: Some(newer),
                timings: ModelTimings::default(),
            });
        }
        let (table, kind) = write_target(previous.take(), &path)?;
        let written = table
            .write(batches.clone())
            .with_writer_properties(writer_properties())
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(SchemaMode::Overwrite)
            .with_commit_properties(
                kind.commit_properties(
                    CommitProperties::default()
                        .with_application_transactions(built_from.transactions()),
                ),
            )
            .await;
        let table = match written {
            Ok(table) => table,
            Err(DeltaTableError::Transaction {
                source: TransactionError::CommitConflict(conflict),
            }) if attempt < ATTEMPTS => {
                info!(model = name, %conflict, "gold commit conflicted; reading the table again");
                previous = open_if_exists(&path).await?;
                attempt += 1;
                continue;
            }
            Err(e) => return Err(kind.failed(name, e)),
        };
        let version = table.version().unwrap_or_default();
        info!(
            model = name,
            rows, version, sessions_version, "gold model published"
        );
        return Ok(ModelRun {
            model: name.to_string(),
            rows: rows as u64,
            version,
            days_rebuilt: None,
            sessions_applied: None,
            superseded_by: None,
            timings: ModelTimings::default(),
        });
    }
}

/// The `view_sessions` version `table` was built from, when it is later than
/// `ours` on the same `view_sessions` table.
async fn newer_build(
    table: &DeltaTable,
    name: &str,
    ours: &BuiltFrom<'_>,
) -> Result<Option<u64>, LakeError> {
    let built_from = per_day::app_version(table, name, FROM_SESSIONS_APP_ID).await?;
    let created = per_day::app_version(table, name, VIEW_SESSIONS_CREATED_APP_ID).await?;
    Ok(match (built_from, created) {
        (Some(theirs), Some(created))
            if Some(created) == ours.sessions_created && theirs > ours.sessions_version as i64 =>
        {
            Some(theirs as u64)
        }
        _ => None,
    })
}

/// A gold table's rows for readers such as the dashboard.
#[derive(Debug, Clone)]
pub struct GoldRows {
    /// A JSON array of objects, one per row (dates as `YYYY-MM-DD`).
    pub json: Vec<u8>,
    /// The `view_sessions` version the table was built from.
    pub sessions_version: Option<i64>,
}

/// The rows of gold table `model` (those of one video when `video_id` is
/// given); `None` before the model's first run.
pub async fn gold_rows(
    lake_dir: &Path,
    model: &str,
    video_id: Option<&str>,
) -> Result<Option<GoldRows>, LakeError> {
    if !model_names().contains(&model) {
        return Err(LakeError::UnknownModel {
            name: model.to_string(),
            known: model_names().join(", "),
        });
    }
    if video_id.is_some() && !PER_VIDEO_MODELS.contains(&model) {
        return Err(LakeError::NotPerVideo {
            model: model.to_string(),
        });
    }
    let Some(table) = open_if_exists(&Lake::new(lake_dir).gold(model)).await? else {
        return Ok(None);
    };
    let sessions_version = table
        .snapshot()
        .map_err(|e| LakeError::delta(model, e))?
        .transaction_version(table.log_store().as_ref(), FROM_SESSIONS_APP_ID)
        .await
        .map_err(|e| LakeError::delta(model, e))?;
    let ctx = SessionContext::new();
    register_table(&ctx, "t", &table).await?;
    let mut frame = ctx.table("t").await?;
    if let Some(video_id) = video_id {
        if !frame.schema().has_column_with_unqualified_name("video_id") {
            return Err(LakeError::NotPerVideo {
                model: model.to_string(),
            });
        }
        frame = frame.filter(col("video_id").eq(lit(video_id)))?;
    }
    let batches = frame.collect().await?;
    // Nulls written out, so that every row has every column.
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, JsonArray>(Vec::new());
    for batch in &batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    let mut json = writer.into_inner();
    if json.is_empty() {
        json = b"[]".to_vec();
    }
    Ok(Some(GoldRows {
        json,
        sessions_version,
    }))
}

#[cfg(test)]
mod tests {
    use deltalake::arrow::array::{Int64Array, StringArray};
    use deltalake::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn rows(views: i64) -> Vec<RecordBatch> {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "views",
            DataType::Int64,
            false,
        )]));
        vec![RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![views]))]).unwrap()]
    }

    fn from(sessions_version: u64, sessions_created: i64) -> BuiltFrom<'static> {
        BuiltFrom {
            sessions_version,
            sessions_created: Some(sessions_created),
            sql: "SELECT 1",
            catalogue: 0,
        }
    }

    async fn publish_views(lake: &Path, views: i64, built_from: BuiltFrom<'_>) -> ModelRun {
        let previous = open_if_exists(&Lake::new(lake).gold("top_videos"))
            .await
            .unwrap();
        publish(lake, "top_videos", previous, rows(views), &built_from)
            .await
            .unwrap()
    }

    async fn published_views(lake: &Path) -> i64 {
        let json = gold_rows(lake, "top_videos", None)
            .await
            .unwrap()
            .unwrap()
            .json;
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&json).unwrap();
        rows[0]["views"].as_i64().unwrap()
    }

    #[tokio::test]
    async fn every_row_read_for_readers_names_every_column_even_when_null() {
        let lake = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("video_id", DataType::Utf8, false),
            Field::new("genre", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["v1", "v2"])),
                Arc::new(StringArray::from(vec![Some("drama"), None])),
            ],
        )
        .unwrap();
        publish(lake.path(), "top_videos", None, vec![batch], &from(1, 1))
            .await
            .unwrap();
        let json = gold_rows(lake.path(), "top_videos", None)
            .await
            .unwrap()
            .unwrap()
            .json;
        let rows: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            rows,
            serde_json::json!([
                {"video_id": "v1", "genre": "drama"},
                {"video_id": "v2", "genre": null},
            ])
        );
    }

    #[tokio::test]
    async fn a_run_whose_table_changed_while_it_built_reads_it_again() {
        let lake = tempfile::tempdir().unwrap();
        let lake = lake.path();
        let path = Lake::new(lake).gold("top_videos");
        let gold = || open_if_exists(&path);
        publish_views(lake, 3, from(3, 1)).await;

        // Run A read the table for view_sessions 4; run B published 5 meanwhile.
        let read_by_a = gold().await.unwrap();
        publish_views(lake, 5, from(5, 1)).await;
        let a = publish(lake, "top_videos", read_by_a, rows(4), &from(4, 1))
            .await
            .unwrap();
        assert_eq!(a.superseded_by, Some(5));
        assert_eq!(published_views(lake).await, 5);

        // Run C read it for 7; run D published 6 meanwhile: C still publishes.
        let read_by_c = gold().await.unwrap();
        publish_views(lake, 6, from(6, 1)).await;
        let c = publish(lake, "top_videos", read_by_c, rows(7), &from(7, 1))
            .await
            .unwrap();
        assert_eq!(c.superseded_by, None);
        assert_eq!(published_views(lake).await, 7);
    }

    #[tokio::test]
    async fn an_exit_exactly_on_a_tenth_falls_in_that_tenths_bucket() {
        use deltalake::arrow::array::{AsArray, Float64Array, StringArray};
        use deltalake::arrow::datatypes::Int32Type;
        use deltalake::datafusion::datasource::MemTable;

        // 11392.834478239933 / 37976.11492746644 is exactly 3/10, but
        // 100 * e / d in floating point is 29.999999999999996.
        let exits = [
            (11_392.834_478_239_933, 37_976.114_927_466_44, 30),
            (10.0, 100.0, 10),
            (9.999, 100.0, 0),
            (0.0, 100.0, 0),
            (100.0, 100.0, 90),
        ];
        let schema = Arc::new(Schema::new(vec![
            Field::new("genre", DataType::Utf8, false),
            Field::new("exit_position_s", DataType::Float64, false),
            Field::new("duration_s", DataType::Float64, true),
        ]));
        let ctx = SessionContext::new();
        for (i, (exit, duration, _)) in exits.iter().enumerate() {
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(vec![format!("g{i}")])),
                    Arc::new(Float64Array::from(vec![*exit])),
                    Arc::new(Float64Array::from(vec![*duration])),
                ],
            )
            .unwrap();
            let table = MemTable::try_new(schema.clone(), vec![vec![batch]]).unwrap();
            ctx.deregister_table("view_sessions").unwrap();
            ctx.register_table("view_sessions", Arc::new(table))
                .unwrap();
            let sql = MODELS
                .iter()
                .find(|(n, _)| *n == "dropoff_by_genre")
                .unwrap()
                .1;
            let rows = ctx.sql(sql).await.unwrap().collect().await.unwrap();
            let buckets = rows[0]
                .column_by_name("bucket_pct")
                .unwrap()
                .as_primitive_opt::<Int32Type>()
                .expect("bucket_pct is an INT, as in viewer_retention");
            assert_eq!(buckets.value(0), exits[i].2, "exit {exit} of {duration}");
        }
    }

    #[tokio::test]
    async fn asking_per_video_rows_of_a_model_without_videos_is_refused_before_any_run() {
        let lake = tempfile::tempdir().unwrap();
        let refused = gold_rows(lake.path(), "daily_engagement", Some("v1")).await;
        assert!(
            matches!(refused, Err(LakeError::NotPerVideo { .. })),
            "{refused:?}"
        );
        let not_yet = gold_rows(lake.path(), "top_videos", Some("v1")).await;
        assert!(matches!(not_yet, Ok(None)), "{not_yet:?}");
    }

    #[tokio::test]
    async fn a_run_never_replaces_gold_built_from_a_later_view_sessions_version() {
        let lake = tempfile::tempdir().unwrap();
        let lake = lake.path();
        assert_eq!(publish_views(lake, 5, from(5, 1)).await.superseded_by, None);

        // A run that read view_sessions version 4 finishes after the one that read 5.
        let late = publish_views(lake, 4, from(4, 1)).await;
        assert_eq!(late.superseded_by, Some(5));
        assert_eq!(published_views(lake).await, 5);

        assert_eq!(publish_views(lake, 6, from(6, 1)).await.superseded_by, None);
        assert_eq!(published_views(lake).await, 6);
        // A view_sessions built again starts its versions over.
        assert_eq!(publish_views(lake, 1, from(1, 2)).await.superseded_by, None);
        assert_eq!(published_views(lake).await, 1);
    }
}
