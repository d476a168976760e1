//! Gold: SQL models (`lake/models/<name>.sql`, one per table, like dbt models)
//! run by DataFusion over `view_sessions` and the metadata catalogue. Each model
//! replaces its table `lake/gold/<name>` in one Delta commit, so a reader sees
//! the old or the new version, never a half.

use std::path::Path;
use std::sync::Arc;

use deltalake::arrow::array::RecordBatch;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use tracing::info;

use crate::error::LakeError;
use crate::metadata::VideoMetadata;
use crate::query::register_table;
use crate::tables::{
    ENRICHED_TABLE, Lake, SESSIONS_TABLE, handle_for_write, open_if_exists, register_metadata,
};

/// The gold models, in the order they run.
pub const MODELS: [(&str, &str); 6] = [
    (
        "viewer_retention",
        include_str!("../models/viewer_retention.sql"),
    ),
    (
        "dropoff_by_genre",
        include_str!("../models/dropoff_by_genre.sql"),
    ),
    (
        "regional_viewership",
        include_str!("../models/regional_viewership.sql"),
    ),
    ("top_videos", include_str!("../models/top_videos.sql")),
    ("top_creators", include_str!("../models/top_creators.sql")),
    (
        "daily_engagement",
        include_str!("../models/daily_engagement.sql"),
    ),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRun {
    pub model: String,
    pub rows: u64,
    pub version: u64,
}

pub fn model_names() -> Vec<&'static str> {
    MODELS.iter().map(|(name, _)| *name).collect()
}

/// A session with the silver tables (latest versions) and the catalogue registered.
pub async fn silver_session(
    lake_dir: &Path,
    videos: &[VideoMetadata],
) -> Result<SessionContext, LakeError> {
    let ctx = SessionContext::new();
    register_metadata(&ctx, videos)?;
    for (name, relative) in [
        ("view_sessions", SESSIONS_TABLE),
        ("enriched_events", ENRICHED_TABLE),
    ] {
        match open_if_exists(&Lake::new(lake_dir).table(name)).await? {
            Some(table) => register_table(&ctx, name, &table).await?,
            None => {
                return Err(LakeError::MissingTable {
                    table: relative.to_string(),
                });
            }
        }
    }
    Ok(ctx)
}

/// Runs the selected model (all without `select`) and replaces its gold table.
pub async fn run_models(
    lake_dir: &Path,
    videos: &[VideoMetadata],
    select: Option<&str>,
) -> Result<Vec<ModelRun>, LakeError> {
    if let Some(name) = select
        && !model_names().contains(&name)
    {
        return Err(LakeError::UnknownModel {
            name: name.to_string(),
            known: model_names().join(", "),
        });
    }
    let ctx = silver_session(lake_dir, videos).await?;
    let mut runs = Vec::new();
    for (name, sql) in MODELS {
        if select.is_some_and(|s| s != name) {
            continue;
        }
        let frame = ctx.sql(sql).await.map_err(|source| LakeError::Model {
            model: name.to_string(),
            source,
        })?;
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let mut batches = frame.collect().await.map_err(|source| LakeError::Model {
            model: name.to_string(),
            source,
        })?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if batches.is_empty() {
            batches.push(RecordBatch::new_empty(schema));
        }
        let path = Lake::new(lake_dir).gold(name);
        let table = match open_if_exists(&path).await? {
            Some(table) => table,
            None => handle_for_write(&path).await?,
        };
        let table = table
            .write(batches)
            .with_save_mode(SaveMode::Overwrite)
            .with_schema_mode(SchemaMode::Overwrite)
            .await
            .map_err(|e| LakeError::delta(name, e))?;
        let version = table.version().unwrap_or_default();
        info!(model = name, rows, version, "gold model built");
        runs.push(ModelRun {
            model: name.to_string(),
            rows: rows as u64,
            version,
        });
    }
    Ok(runs)
}
