//! Tests' commits written by hand through deltalake's own commit path, as a
//! writer that woke late or a silver run would leave them.

use std::path::Path;

use deltalake::DeltaTableError;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, Add, LogicalFileView};
use deltalake::protocol::{DeltaOperation, SaveMode};

use crate::tables::open_if_exists;

/// An `add` of `path` with `file`'s size, partition values and statistics.
pub(crate) fn add_like(file: &LogicalFileView, path: &str) -> Action {
    Action::Add(Add {
        path: path.to_string(),
        partition_values: file.partition_values_map(),
        size: file.size(),
        modification_time: file.modification_time(),
        data_change: true,
        stats: file.stats(),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
        clustering_provider: None,
    })
}

pub(crate) fn append() -> DeltaOperation {
    DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: None,
        predicate: None,
    }
}

pub(crate) fn delete() -> DeltaOperation {
    DeltaOperation::Delete { predicate: None }
}

/// Commits `actions` as the newest version of the table at `path`.
pub(crate) async fn commit(
    path: &Path,
    actions: Vec<Action>,
    operation: DeltaOperation,
) -> Result<(), DeltaTableError> {
    let table = open_if_exists(path)
        .await
        .expect("the table opens")
        .expect("the table exists");
    CommitBuilder::default()
        .with_actions(actions)
        .build(Some(table.snapshot()? as _), table.log_store(), operation)
        .await?;
    Ok(())
}
