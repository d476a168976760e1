//! DataFusion over the Delta tables.

use std::path::Path;

use deltalake::DeltaTable;
use deltalake::arrow::array::{Array, AsArray, RecordBatch};
use deltalake::arrow::compute::cast;
use deltalake::arrow::datatypes::{DataType, Int64Type};
use deltalake::datafusion::logical_expr::Expr;
use deltalake::datafusion::prelude::{SessionContext, col, lit};
use deltalake::datafusion::scalar::ScalarValue;
use deltalake::{ensure_table_uri, open_table};

use crate::error::LakeError;

/// Registers a loaded table under `name`; the provider is pinned to its snapshot.
pub async fn register_table(
    ctx: &SessionContext,
    name: &str,
    table: &DeltaTable,
) -> Result<(), LakeError> {
    let provider = table.table_provider().await.map_err(LakeError::Query)?;
    ctx.register_table(name, provider)?;
    Ok(())
}

/// Opens the table at `path` (latest version) and registers it under `name`.
pub async fn register_path(ctx: &SessionContext, name: &str, path: &Path) -> Result<(), LakeError> {
    let url = ensure_table_uri(path.to_string_lossy()).map_err(|e| LakeError::delta(name, e))?;
    let table = open_table(url)
        .await
        .map_err(|e| LakeError::delta(name, e))?;
    register_table(ctx, name, &table).await
}

/// `column IN (days)` for a date column (`days` since 1970-01-01); false for
/// no days. On a partition column it prunes to those partitions.
pub fn date_in(column: &str, days: impl IntoIterator<Item = i32>) -> Expr {
    let list: Vec<Expr> = days
        .into_iter()
        .map(|d| lit(ScalarValue::Date32(Some(d))))
        .collect();
    if list.is_empty() {
        return lit(false);
    }
    col(column).in_list(list, false)
}

/// Runs one SQL query over the tables registered in `ctx`.
pub async fn run_sql(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, LakeError> {
    Ok(ctx.sql(sql).await?.collect().await?)
}

pub(crate) fn named_column<'a>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a deltalake::arrow::array::ArrayRef, LakeError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| LakeError::ColumnType {
            table: "query result".into(),
            column: name.into(),
        })
}

/// Whether `data_type` is one of the types [`string_values`] reads.
pub fn is_plain_string(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// The values of a string array of any of Arrow's string types (Utf8,
/// LargeUtf8, Utf8View), read in place; `None` for any other type.
pub fn string_values(array: &dyn Array) -> Option<Box<dyn Iterator<Item = Option<&str>> + '_>> {
    Some(match array.data_type() {
        DataType::Utf8 => Box::new(array.as_string::<i32>().iter()),
        DataType::LargeUtf8 => Box::new(array.as_string::<i64>().iter()),
        DataType::Utf8View => Box::new(array.as_string_view().iter()),
        _ => return None,
    })
}

/// A string column whatever its physical encoding (Utf8, LargeUtf8, Utf8View).
/// Nulls come out as empty strings.
pub fn column_as_strings(batch: &RecordBatch, name: &str) -> Result<Vec<String>, LakeError> {
    let column = named_column(batch, name)?;
    let column = cast(column, &DataType::Utf8)?;
    let strings = column.as_string::<i32>();
    Ok((0..strings.len())
        .map(|i| {
            if strings.is_null(i) {
                String::new()
            } else {
                strings.value(i).to_string()
            }
        })
        .collect())
}

/// An integer column (any integer or timestamp type). Nulls come out as 0.
pub fn column_as_i64(batch: &RecordBatch, name: &str) -> Result<Vec<i64>, LakeError> {
    let column = named_column(batch, name)?;
    let column = cast(column, &DataType::Int64)?;
    let values = column.as_primitive::<Int64Type>();
    Ok((0..values.len())
        .map(|i| {
            if values.is_null(i) {
                0
            } else {
                values.value(i)
            }
        })
        .collect())
}

/// A float column (any numeric type). Nulls come out as NaN.
pub fn column_as_f64(batch: &RecordBatch, name: &str) -> Result<Vec<f64>, LakeError> {
    let column = named_column(batch, name)?;
    let column = cast(column, &DataType::Float64)?;
    let values = column.as_primitive::<deltalake::arrow::datatypes::Float64Type>();
    Ok((0..values.len())
        .map(|i| {
            if values.is_null(i) {
                f64::NAN
            } else {
                values.value(i)
            }
        })
        .collect())
}
