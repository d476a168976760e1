//! Which models a run updates by difference, and with what: a model's table
//! qualifies when its commit says it was built from an earlier version of
//! the same `view_sessions`, by the same SQL, over the same catalogue. The
//! changes since that version, and the distinct counts they move, are read
//! once per such version and shared by the models built from it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::prelude::{SessionContext, col, lit};
use tokio::task::JoinHandle;
use tracing::info;

use super::difference::models::{Update, updated_rows};
use super::difference::{DistinctChanges, SessionChanges};
use super::per_day::app_version;
use super::{
    CATALOGUE_APP_ID, FROM_SESSIONS_APP_ID, MODEL_SQL_APP_ID, VIEW_SESSIONS_CREATED_APP_ID,
    created_time, live_pairs, model_names, session_changes, sql_fingerprint,
};
use crate::error::LakeError;
use crate::metadata::VideoMetadata;
use crate::silver::replaced_rows::{SESSIONS_CREATED, SESSIONS_VERSION};
use crate::tables::{Lake, REPLACED_TABLE, open_if_exists};

/// A model's rows updated by difference.
pub struct UpdatedRows {
    pub schema: SchemaRef,
    pub batch: RecordBatch,
    /// Session rows applied: removed plus added.
    pub sessions_applied: usize,
}

/// The changes since one version, with the distinct counts they move.
struct Prepared {
    changes: SessionChanges,
    distinct: DistinctChanges,
}

/// The `view_sessions` version a run reads, and what it needs to update
/// models from earlier ones.
pub struct Incremental<'a> {
    pub lake: &'a Lake,
    pub sessions: &'a DeltaTable,
    /// `silver/replaced_sessions` as the silver run before left it, if any;
    /// else it is opened when a change needs it.
    replaced: Option<DeltaTable>,
    pub sessions_created: Option<i64>,
    pub videos: &'a [VideoMetadata],
    pub ctx: SessionContext,
    prepared: HashMap<u64, Option<Arc<Prepared>>>,
}

impl<'a> Incremental<'a> {
    pub fn new(
        lake: &'a Lake,
        sessions: &'a DeltaTable,
        replaced: Option<DeltaTable>,
        sessions_created: Option<i64>,
        videos: &'a [VideoMetadata],
        ctx: SessionContext,
    ) -> Incremental<'a> {
        Incremental {
            lake,
            sessions,
            replaced,
            sessions_created,
            videos,
            ctx,
            prepared: HashMap::new(),
        }
    }

    /// Model `name` (`sql`) updated from its `previous` table, whose rows are
    /// being read by `previous_rows`; `None` when it must be built otherwise.
    pub async fn rows(
        &mut self,
        name: &str,
        sql: &str,
        previous: &DeltaTable,
        previous_rows: PreviousRows,
    ) -> Result<Option<UpdatedRows>, LakeError> {
        let (Some(built_from), Some(definition), Some(created), Some(catalogue)) = (
            app_version(previous, name, FROM_SESSIONS_APP_ID).await?,
            app_version(previous, name, MODEL_SQL_APP_ID).await?,
            app_version(previous, name, VIEW_SESSIONS_CREATED_APP_ID).await?,
            app_version(previous, name, CATALOGUE_APP_ID).await?,
        ) else {
            return Ok(None);
        };
        if definition != sql_fingerprint(sql)
            || Some(created) != self.sessions_created
            || catalogue != catalogue_fingerprint(self.videos)
        {
            return Ok(None);
        }
        let Ok(since) = u64::try_from(built_from) else {
            return Ok(None);
        };
        let Some(prepared) = self.prepared(created, since).await? else {
            return Ok(None);
        };
        let (schema, rows) = previous_rows.read().await?;
        let update = Update::new(&prepared.changes, &prepared.distinct, self.videos);
        let Some(batch) = updated_rows(name, &schema, &rows, &update)? else {
            info!(
                model = name,
                "gold model's previous rows do not add up with the changes; building it in full"
            );
            return Ok(None);
        };
        Ok(Some(UpdatedRows {
            schema,
            batch,
            sessions_applied: prepared.changes.removed.len() + prepared.changes.added.len(),
        }))
    }

    async fn prepared(
        &mut self,
        created: i64,
        since: u64,
    ) -> Result<Option<Arc<Prepared>>, LakeError> {
        if let Some(prepared) = self.prepared.get(&since) {
            return Ok(prepared.clone());
        }
        let prepared = self.prepare(created, since).await?.map(Arc::new);
        self.prepared.insert(since, prepared.clone());
        Ok(prepared)
    }

    async fn prepare(&self, created: i64, since: u64) -> Result<Option<Prepared>, LakeError> {
        let started = std::time::Instant::now();
        let tables = session_changes::Tables {
            lake: self.lake,
            sessions: self.sessions,
            replaced: self.replaced.as_ref(),
        };
        let Some(changes) =
            session_changes::changes_since(tables, created, &self.ctx, since).await?
        else {
            info!(
                since,
                "view_sessions changes since the gold tables' version cannot be followed; models are built in full"
            );
            return Ok(None);
        };
        let read = started.elapsed();
        let wanted = Arc::new(changes.pairs_to_count());
        let Some(counts) = live_pairs::live_counts(self.sessions, wanted.clone()).await? else {
            return Ok(None);
        };
        let Some(distinct) = wanted.distinct_changes(&counts) else {
            info!(
                since,
                "live sessions contradict the changes; models are built in full"
            );
            return Ok(None);
        };
        info!(
            since,
            removed = changes.removed.len(),
            added = changes.added.len(),
            reading_changes_s = read.as_secs_f64(),
            counting_pairs_s = (started.elapsed() - read).as_secs_f64(),
            "gold models updated by difference"
        );
        Ok(Some(Prepared { changes, distinct }))
    }
}

/// A gold table's rows, read in a task of its own as soon as the table is
/// open: the six small reads (planning, log replay and decoding, ~10 ms each)
/// then run side by side instead of one after another. Awaited only when the
/// model is updated by difference; dropped (aborted) otherwise.
pub struct PreviousRows(JoinHandle<Result<(SchemaRef, Vec<RecordBatch>), LakeError>>);

impl PreviousRows {
    pub fn start(table: &DeltaTable, ctx: SessionContext) -> PreviousRows {
        let table = table.clone();
        PreviousRows(tokio::spawn(async move {
            let provider = table.table_provider().await.map_err(LakeError::Query)?;
            let schema: SchemaRef = Arc::new(provider.schema().as_ref().clone());
            let rows = ctx.read_table(provider)?.collect().await?;
            Ok((schema, rows))
        }))
    }

    async fn read(mut self) -> Result<(SchemaRef, Vec<RecordBatch>), LakeError> {
        (&mut self.0).await?
    }
}

impl Drop for PreviousRows {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// FNV-1a of the catalogue's rows (as a non-negative `txn` version): the
/// models that join it are exact only over the catalogue they were built with.
pub fn catalogue_fingerprint(videos: &[VideoMetadata]) -> i64 {
    let mut text = String::new();
    for v in videos {
        text.push_str(&format!(
            "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1e}",
            v.video_id,
            v.title,
            v.genre,
            v.creator,
            v.duration_s.to_bits()
        ));
    }
    sql_fingerprint(&text)
}

/// Deletes the rows of `silver/replaced_sessions` that no gold table can
/// need: those of another `view_sessions` table, and those of versions that
/// every gold table of this one was built from or beyond (with no gold table
/// yet, every model's next build is full and needs none). Returns whether it
/// deleted any. A gold run that still wanted them builds in full.
pub async fn trim_replaced_sessions(lake_dir: &Path) -> Result<bool, LakeError> {
    let lake = Lake::new(lake_dir);
    let Some(table) = open_if_exists(&lake.replaced_sessions()).await? else {
        return Ok(false);
    };
    let created = match open_if_exists(&lake.view_sessions()).await? {
        Some(sessions) => created_time(&sessions)?,
        None => None,
    };
    let mut needed_after: Option<i64> = None;
    for name in model_names() {
        let Some(gold) = open_if_exists(&lake.gold(name)).await? else {
            continue;
        };
        if created.is_none()
            || app_version(&gold, name, VIEW_SESSIONS_CREATED_APP_ID).await? != created
        {
            continue;
        }
        if let Some(from) = app_version(&gold, name, FROM_SESSIONS_APP_ID).await? {
            needed_after = Some(needed_after.map_or(from, |m| m.min(from)));
        }
    }
    let needed = match (created, needed_after) {
        (Some(created), Some(after)) => col(SESSIONS_CREATED)
            .eq(lit(created))
            .and(col(SESSIONS_VERSION).gt(lit(after))),
        _ => lit(false),
    };
    let (_, metrics) = table
        .delete()
        .with_predicate(!needed)
        .await
        .map_err(|e| LakeError::delta(REPLACED_TABLE, e))?;
    info!(
        files_removed = metrics.num_removed_files,
        files_added = metrics.num_added_files,
        "replaced sessions no gold table needs deleted"
    );
    Ok(metrics.num_removed_files > 0)
}
