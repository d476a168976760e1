//! The session rows `view_sessions` removed and added after a version: what
//! a model built from that version is updated with (see [`super::difference`]).
//!
//! Read from the Delta log of the versions after it. A file added with a data
//! change brings new rows, read whole. A file removed and added again in one
//! commit with a larger deletion vector lost the rows the vectors' counts
//! differ by; silver recorded them in `silver/replaced_sessions` under that
//! commit's version. Files added or removed without a data change (compaction)
//! change no live row. Anything else (a file removed for good, a schema or
//! protocol change, a version whose replaced rows are missing or fewer than
//! its vectors say, a file since vacuumed) answers `None`: the models are
//! then built in full.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use deltalake::DeltaTable;
use deltalake::arrow::array::{ArrayRef, Date32Array, RecordBatch};
use deltalake::arrow::datatypes::{Field, Schema};
use deltalake::datafusion::prelude::{SessionContext, col, lit};
use deltalake::kernel::{Action, Add};
use deltalake::logstore::object_store::ObjectStoreExt;
use deltalake::parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;

use super::changed_days::commits_since;
use super::difference::{CHANGE_COLUMNS, SessionChanges, session_rows};
use super::live_pairs::columns_of;
use crate::error::LakeError;
use crate::file_reader::FileReader;
use crate::query::column_as_i64;
use crate::silver::replaced_rows::{SESSIONS_CREATED, SESSIONS_VERSION, change_type};
use crate::silver::{SESSIONS_PARTITION, partition_day};
use crate::tables::{Lake, SESSIONS_TABLE, open_if_exists, read_each};

/// Changes whose new files hold more than half the table's bytes are built
/// in full.
const MAX_ADDED_SHARE: i64 = 2;

/// What the commits after a version did to the live rows.
#[derive(Debug, Default, PartialEq)]
struct LogChanges {
    /// Files added with new rows.
    added: Vec<Add>,
    /// Rows newly deleted, per version.
    replaced: BTreeMap<u64, i64>,
}

/// What `commits` (version, actions) changed; `None` when the log alone
/// cannot say which rows.
fn log_changes(commits: &[(u64, Vec<Action>)]) -> Option<LogChanges> {
    let mut changes = LogChanges::default();
    for (version, actions) in commits {
        let mut removed: HashMap<&str, i64> = HashMap::new();
        for action in actions {
            match action {
                Action::Metadata(_) | Action::Protocol(_) => return None,
                Action::Remove(remove) if remove.data_change => {
                    let deleted = remove.deletion_vector.as_ref().map_or(0, |v| v.cardinality);
                    removed.insert(remove.path.as_str(), deleted);
                }
                _ => {}
            }
        }
        let mut readded = HashSet::new();
        for action in actions {
            let Action::Add(add) = action else { continue };
            if !add.data_change {
                continue;
            }
            let deleted = add.deletion_vector.as_ref().map_or(0, |v| v.cardinality);
            match removed.get(add.path.as_str()) {
                Some(before) => {
                    if deleted < *before {
                        return None;
                    }
                    *changes.replaced.entry(*version).or_default() += deleted - before;
                    readded.insert(add.path.as_str());
                }
                None if deleted == 0 => changes.added.push(add.clone()),
                None => return None,
            }
        }
        if removed.keys().any(|path| !readded.contains(path)) {
            return None;
        }
    }
    changes.replaced.retain(|_, n| *n > 0);
    Some(changes)
}

/// The tables a gold run reads the changes from.
pub struct Tables<'a> {
    pub lake: &'a Lake,
    /// `view_sessions`, loaded at the run's version.
    pub sessions: &'a DeltaTable,
    /// `silver/replaced_sessions` as loaded already, if it was; else it is
    /// opened when the changes replaced rows.
    pub replaced: Option<&'a DeltaTable>,
}

/// The rows `tables.sessions` removed and added after version `since`;
/// `None` when they cannot be known.
pub async fn changes_since(
    tables: Tables<'_>,
    created: i64,
    ctx: &SessionContext,
    since: u64,
) -> Result<Option<SessionChanges>, LakeError> {
    let sessions = tables.sessions;
    let Some(commits) = commits_since(sessions, since).await? else {
        return Ok(None);
    };
    let now = sessions.version().unwrap_or_default();
    let Some(log) = log_changes(&commits) else {
        return Ok(None);
    };
    // A change as large as a good part of the table is cheaper to build in
    // full than to hold row by row.
    let added_bytes: i64 = log.added.iter().map(|add| add.size).sum();
    let table_bytes: i64 = sessions
        .snapshot()
        .map_err(|e| LakeError::delta(SESSIONS_TABLE, e))?
        .log_data()
        .iter()
        .map(|file| file.size())
        .sum();
    if added_bytes > table_bytes / MAX_ADDED_SHARE {
        return Ok(None);
    }
    let versions = Versions {
        created,
        since,
        now,
    };
    let Some(removed) = replaced_rows(&tables, ctx, versions, &log.replaced).await? else {
        return Ok(None);
    };
    let Some(added) = added_rows(sessions, log.added).await? else {
        return Ok(None);
    };
    let (Some(removed), Some(added)) = (session_rows(&removed)?, session_rows(&added)?) else {
        return Ok(None);
    };
    Ok(Some(SessionChanges { removed, added }))
}

/// The `view_sessions` versions after `since` up to `now` of the table
/// created at `created`.
#[derive(Debug, Clone, Copy)]
struct Versions {
    created: i64,
    since: u64,
    now: u64,
}

/// The rows silver recorded as replaced by `versions`; `None` unless each
/// version has as many as `expected`.
async fn replaced_rows(
    tables: &Tables<'_>,
    ctx: &SessionContext,
    versions: Versions,
    expected: &BTreeMap<u64, i64>,
) -> Result<Option<RecordBatch>, LakeError> {
    let schema = change_schema();
    if expected.is_empty() {
        return Ok(Some(RecordBatch::new_empty(schema)));
    }
    let table = match tables.replaced {
        Some(table) => table.clone(),
        None => match open_if_exists(&tables.lake.replaced_sessions()).await? {
            Some(table) => table,
            None => return Ok(None),
        },
    };
    let provider = table.table_provider().await.map_err(LakeError::Query)?;
    let version = col(SESSIONS_VERSION);
    let frame = ctx.read_table(provider)?.filter(
        col(SESSIONS_CREATED).eq(lit(versions.created)).and(
            version
                .clone()
                .gt(lit(versions.since as i64))
                .and(version.lt_eq(lit(versions.now as i64))),
        ),
    )?;
    let mut columns = vec![SESSIONS_VERSION];
    columns.extend(CHANGE_COLUMNS);
    let batches = frame.select_columns(&columns)?.collect().await?;
    let mut found: BTreeMap<u64, i64> = BTreeMap::new();
    for batch in &batches {
        for version in column_as_i64(batch, SESSIONS_VERSION)? {
            *found.entry(version as u64).or_default() += 1;
        }
    }
    if &found != expected {
        return Ok(None);
    }
    let rows = batches
        .iter()
        .map(|batch| {
            let columns = CHANGE_COLUMNS
                .iter()
                .zip(schema.fields())
                .map(|(name, field)| {
                    let column =
                        batch
                            .column_by_name(name)
                            .ok_or_else(|| LakeError::ColumnType {
                                table: crate::tables::REPLACED_TABLE.into(),
                                column: (*name).into(),
                            })?;
                    Ok(deltalake::arrow::compute::cast(column, field.data_type())?)
                })
                .collect::<Result<Vec<_>, LakeError>>()?;
            Ok(RecordBatch::try_new(schema.clone(), columns)?)
        })
        .collect::<Result<Vec<_>, LakeError>>()?;
    Ok(Some(deltalake::arrow::compute::concat_batches(
        &schema, &rows,
    )?))
}

fn change_schema() -> Arc<Schema> {
    Arc::new(Schema::new(
        CHANGE_COLUMNS
            .iter()
            .map(|name| Field::new(*name, change_type(name), true))
            .collect::<Vec<_>>(),
    ))
}

/// The rows of the `added` files of `sessions`; `None` when one is gone or
/// lacks a column.
async fn added_rows(
    sessions: &DeltaTable,
    added: Vec<Add>,
) -> Result<Option<RecordBatch>, LakeError> {
    let schema = change_schema();
    let store = sessions.object_store();
    let read = read_each(added, |add| file_rows(store.clone(), add, schema.clone())).await?;
    let Some(files) = read else {
        return Ok(None);
    };
    let batches: Vec<RecordBatch> = files.into_iter().flatten().collect();
    Ok(Some(deltalake::arrow::compute::concat_batches(
        &schema, &batches,
    )?))
}

/// The rows of one added file, with its partition's `day`, in `schema`.
async fn file_rows(
    store: Arc<dyn deltalake::ObjectStore>,
    add: Add,
    schema: Arc<Schema>,
) -> Result<Option<Vec<RecordBatch>>, LakeError> {
    let Some(day) = add
        .partition_values
        .get(SESSIONS_PARTITION)
        .and_then(|v| v.as_deref())
        .and_then(partition_day)
    else {
        return Ok(None);
    };
    // The log's paths are URL-encoded.
    let Ok(path) = deltalake::Path::from_url_path(&add.path) else {
        return Ok(None);
    };
    let failed = |source| LakeError::parquet(&path, source);
    let reader = FileReader::new(store.clone(), path.clone(), add.size as u64);
    let builder = match ParquetRecordBatchStreamBuilder::new(reader).await {
        Ok(builder) => builder,
        // Vacuumed since (the reader's first request fails).
        Err(_) if ObjectStoreExt::head(&store, &path).await.is_err() => return Ok(None),
        Err(source) => return Err(failed(source)),
    };
    let in_file: Vec<&str> = CHANGE_COLUMNS
        .iter()
        .copied()
        .filter(|name| *name != SESSIONS_PARTITION)
        .collect();
    let Some(batches) = columns_of(builder, &in_file, &path).await? else {
        return Ok(None);
    };
    let mut rows = Vec::with_capacity(batches.len());
    for batch in batches {
        let days: ArrayRef = Arc::new(Date32Array::from_value(day, batch.num_rows()));
        let columns = schema
            .fields()
            .iter()
            .map(|field| {
                let column = match field.name().as_str() {
                    SESSIONS_PARTITION => days.clone(),
                    name => batch.column_by_name(name).cloned().ok_or_else(|| {
                        LakeError::ColumnType {
                            table: SESSIONS_TABLE.into(),
                            column: name.into(),
                        }
                    })?,
                };
                Ok(deltalake::arrow::compute::cast(&column, field.data_type())?)
            })
            .collect::<Result<Vec<_>, LakeError>>()?;
        rows.push(RecordBatch::try_new(schema.clone(), columns)?);
    }
    Ok(Some(rows))
}

#[cfg(test)]
mod tests {
    use deltalake::kernel::{DeletionVectorDescriptor, Remove, StorageType};

    use super::*;

    fn vector(cardinality: i64) -> Option<DeletionVectorDescriptor> {
        (cardinality > 0).then(|| DeletionVectorDescriptor {
            storage_type: StorageType::Inline,
            path_or_inline_dv: String::new(),
            offset: None,
            size_in_bytes: 0,
            cardinality,
        })
    }

    fn add(path: &str, deleted: i64, data_change: bool) -> Action {
        Action::Add(Add {
            path: path.into(),
            data_change,
            deletion_vector: vector(deleted),
            ..Default::default()
        })
    }

    fn remove(path: &str, deleted: i64, data_change: bool) -> Action {
        Action::Remove(Remove {
            path: path.into(),
            data_change,
            deletion_vector: vector(deleted),
            ..Default::default()
        })
    }

    #[test]
    fn new_files_add_rows_and_larger_vectors_replace_rows_per_version() {
        let commits = vec![
            (4, vec![add("a", 0, true)]),
            (
                5,
                vec![
                    remove("a", 0, true),
                    add("a", 2, true),
                    remove("b", 1, true),
                    add("b", 4, true),
                    add("c", 0, true),
                ],
            ),
            // Compaction: no live row changes.
            (6, vec![remove("a", 2, false), add("d", 0, false)]),
        ];
        let changes = log_changes(&commits).unwrap();
        let added: Vec<&str> = changes.added.iter().map(|a| a.path.as_str()).collect();
        assert_eq!(added, ["a", "c"]);
        assert_eq!(changes.replaced, BTreeMap::from([(5, 5)]));
    }

    #[test]
    fn a_file_removed_for_good_a_smaller_vector_or_a_schema_change_cannot_be_followed() {
        let gone = vec![(3, vec![remove("a", 0, true)])];
        assert_eq!(log_changes(&gone), None);
        let shrunk = vec![(3, vec![remove("a", 3, true), add("a", 1, true)])];
        assert_eq!(log_changes(&shrunk), None);
        let new_with_vector = vec![(3, vec![add("a", 1, true)])];
        assert_eq!(log_changes(&new_with_vector), None);
        let protocol: Action =
            serde_json::from_str(r#"{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}"#)
                .unwrap();
        assert_eq!(log_changes(&[(3, vec![protocol])]), None);
    }
}
