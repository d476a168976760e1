//! Per-day models rebuilt for the days whose sessions changed.
//!
//! A per-day model groups by `day` and reads nothing but that day's sessions,
//! so its rows for a day whose `view_sessions` partition did not change since
//! its table was built are still exact. A run computes the model over the
//! changed days' partitions only and keeps the table's other rows; it rebuilds
//! in full when it cannot tell which days changed, when the table was built by
//! another definition of the model, or from a `view_sessions` since deleted
//! and created again.

use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::{Schema, SchemaRef};
use deltalake::datafusion::datasource::TableProvider;
use deltalake::datafusion::prelude::SessionContext;
use tracing::info;

use super::changed_days::{ChangedDays, changed_days_since};
use super::{
    FROM_SESSIONS_APP_ID, MODEL_SQL_APP_ID, VIEW_SESSIONS_CREATED_APP_ID, created_time,
    sql_fingerprint,
};
use crate::error::LakeError;
use crate::query::date_in;
use crate::silver::SESSIONS_PARTITION;

/// The models whose rows for a day depend only on the sessions of that day.
pub const PER_DAY_MODELS: [&str; 2] = ["regional_viewership", "daily_engagement"];

/// A per-day model's rows after rebuilding its changed days.
pub struct PerDayRows {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub days_rebuilt: usize,
}

/// The `view_sessions` version a gold run reads.
pub struct Sessions<'a> {
    pub table: &'a DeltaTable,
    /// Its rows, when the run holds them in memory.
    pub held_rows: Option<Arc<dyn TableProvider>>,
}

/// The rows of per-day model `name` (`sql`) for `sessions`, from its
/// `previous` table; `None` when the model must be rebuilt in full. `ctx`
/// has the run's settings and the catalogue registered; `view_sessions` is
/// registered in it here, filtered.
pub async fn rebuild_changed_days(
    ctx: SessionContext,
    name: &str,
    sql: &str,
    sessions: Sessions<'_>,
    previous: Option<DeltaTable>,
) -> Result<Option<PerDayRows>, LakeError> {
    let Sessions {
        table: sessions,
        held_rows,
    } = sessions;
    let Some(previous) = previous else {
        return Ok(None);
    };
    let (Some(built_from), Some(definition), Some(sessions_created)) = (
        app_version(&previous, name, FROM_SESSIONS_APP_ID).await?,
        app_version(&previous, name, MODEL_SQL_APP_ID).await?,
        app_version(&previous, name, VIEW_SESSIONS_CREATED_APP_ID).await?,
    ) else {
        return Ok(None);
    };
    if definition != sql_fingerprint(sql)
        || created_time(sessions)? != Some(sessions_created)
        || built_from < 0
    {
        return Ok(None);
    }
    let ChangedDays::Days(days) = changed_days_since(sessions, built_from as u64).await? else {
        return Ok(None);
    };
    let epoch = chrono::NaiveDate::default();
    let changed = date_in(
        SESSIONS_PARTITION,
        days.iter()
            .map(|d| d.signed_duration_since(epoch).num_days() as i32),
    );
    let rows = match held_rows {
        Some(rows) => rows,
        None => sessions.table_provider().await.map_err(LakeError::Query)?,
    };
    let changed_sessions = ctx.read_table(rows)?.filter(changed.clone())?;
    ctx.register_table("view_sessions", changed_sessions.into_view())?;
    let model_error = |source| LakeError::Model {
        model: name.to_string(),
        source,
    };
    let rebuilt = ctx.sql(sql).await.map_err(model_error)?;
    let kept = ctx
        .read_table(previous.table_provider().await.map_err(LakeError::Query)?)?
        .filter(changed.is_not_true())?;
    if !same_columns(rebuilt.schema().as_arrow(), kept.schema().as_arrow()) {
        return Ok(None);
    }
    let rows = rebuilt.union(kept)?;
    // One schema for both halves (a column nullable in either is nullable).
    let schema: SchemaRef = Arc::new(rows.schema().as_arrow().clone());
    let batches = rows
        .collect()
        .await
        .map_err(model_error)?
        .into_iter()
        .map(|batch| RecordBatch::try_new(schema.clone(), batch.columns().to_vec()))
        .collect::<Result<Vec<_>, _>>()?;
    info!(
        model = name,
        days = days.len(),
        "per-day model rebuilt for the days whose sessions changed"
    );
    Ok(Some(PerDayRows {
        schema,
        batches,
        days_rebuilt: days.len(),
    }))
}

/// The version of `table`'s `txn` action `app_id`, if it has one.
pub(super) async fn app_version(
    table: &DeltaTable,
    name: &str,
    app_id: &str,
) -> Result<Option<i64>, LakeError> {
    table
        .snapshot()
        .map_err(|e| LakeError::delta(name, e))?
        .transaction_version(table.log_store().as_ref(), app_id)
        .await
        .map_err(|e| LakeError::delta(name, e))
}

/// Same column names and types, in the same order (nullability aside: Delta
/// reads every column back as nullable).
fn same_columns(a: &Schema, b: &Schema) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields()
            .iter()
            .zip(b.fields())
            .all(|(x, y)| x.name() == y.name() && x.data_type() == y.data_type())
}
