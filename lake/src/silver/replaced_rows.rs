//! `silver/replaced_sessions`: the `view_sessions` rows each commit replaced,
//! as they were, tagged with that commit's version (and the table's creation
//! time).
//!
//! A deletion vector says which rows of a file a commit deleted, not what
//! they held; to read them back, a reader would decode every page of the
//! files that hold them, which is most of the table when late events touch
//! every day. Silver has the rows in hand when it replaces them (it
//! recomputes the sessions from them), so it keeps the columns gold reads
//! (`gold::difference::CHANGE_COLUMNS`) here, after the `view_sessions`
//! commit. Gold then updates its models by difference. A run that stops
//! between the two commits leaves a version without its rows, which gold
//! notices (the count differs from the deletion vectors') and answers with a
//! full build.

use deltalake::DeltaTable;
use deltalake::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::protocol::SaveMode;
use std::sync::Arc;

use crate::error::LakeError;
use crate::gold::difference::CHANGE_COLUMNS;
use crate::parquet_layout::writer_properties;
use crate::tables::{Lake, REPLACED_TABLE, write_target};

/// The column of the `view_sessions` version whose commit replaced the row.
pub const SESSIONS_VERSION: &str = "sessions_version";

/// The column of that `view_sessions` table's creation time (ms): versions
/// start again at 0 in a table deleted and created again.
pub const SESSIONS_CREATED: &str = "sessions_created";

/// The `view_sessions` columns silver reads for a replaced row beyond those
/// it recomputes the session from.
pub const MEASURES: [&str; 4] = ["watch_s", "exit_position_s", "pct_watched", "completed"];

/// The type of each of [`CHANGE_COLUMNS`].
pub fn change_type(name: &str) -> DataType {
    match name {
        "day" => DataType::Date32,
        "completed" => DataType::Boolean,
        "watch_s" | "exit_position_s" | "duration_s" | "pct_watched" => DataType::Float64,
        _ => DataType::Utf8,
    }
}

/// `found` (rows of `view_sessions` as silver's lookup read them, their day
/// as `first_day`) as rows of the table, without their version yet; `None`
/// when a column is missing (a lookup that did not read them).
pub fn replaced(found: &RecordBatch) -> Result<Option<RecordBatch>, LakeError> {
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for name in CHANGE_COLUMNS {
        let source = if name == "day" { "first_day" } else { name };
        let Some(column) = found.column_by_name(source) else {
            return Ok(None);
        };
        let kind = change_type(name);
        columns.push(cast(column, &kind)?);
        fields.push(Field::new(name, kind, true));
    }
    Ok(Some(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?))
}

/// Which `view_sessions` commit replaced rows: the table's creation time
/// and the commit's version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplacedBy {
    pub created: i64,
    pub version: u64,
}

/// Appends `rows` (from [`replaced`]) as replaced by the commit `by`;
/// returns the table for the next append.
pub async fn record(
    lake: &Lake,
    table: Option<DeltaTable>,
    by: ReplacedBy,
    rows: RecordBatch,
) -> Result<DeltaTable, LakeError> {
    let n = rows.num_rows();
    let created: ArrayRef = Arc::new(Int64Array::from_value(by.created, n));
    let versions: ArrayRef = Arc::new(Int64Array::from_value(by.version as i64, n));
    let mut fields = vec![
        Field::new(SESSIONS_CREATED, DataType::Int64, false),
        Field::new(SESSIONS_VERSION, DataType::Int64, false),
    ];
    fields.extend(rows.schema().fields().iter().map(|f| f.as_ref().clone()));
    let mut columns = vec![created, versions];
    columns.extend(rows.columns().iter().cloned());
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    let (table, kind) = write_target(table, &lake.replaced_sessions())?;
    table
        .write(vec![batch])
        .with_writer_properties(writer_properties())
        .with_save_mode(SaveMode::Append)
        .with_commit_properties(kind.commit_properties(Default::default()))
        .await
        .map_err(|e| kind.failed(REPLACED_TABLE, e))
}
