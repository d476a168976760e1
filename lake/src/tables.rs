//! Where the tables live and how they are opened.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::arrow::array::{Float64Array, RecordBatch, StringArray};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use deltalake::datafusion::datasource::{MemTable, provider_as_source};
use deltalake::datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder};
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::transaction::{CommitProperties, TransactionError};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, ensure_table_uri};
use futures::StreamExt;

use crate::error::LakeError;
use crate::metadata::VideoMetadata;

pub const ENRICHED_TABLE: &str = "silver/enriched_events";
pub const SESSIONS_TABLE: &str = "silver/view_sessions";
/// Silver's record of the `view_sessions` rows each commit replaced (see
/// `silver::replaced_rows`); bookkeeping for gold, not a table for users.
pub const REPLACED_TABLE: &str = "silver/replaced_sessions";

/// The lake: the one place that knows where each table lives under its root
/// (`lake.uri`, shared by every member of a cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lake {
    root: PathBuf,
}

impl Lake {
    pub fn new(root: impl Into<PathBuf>) -> Lake {
        Lake { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `bronze/engagement_events`
    pub fn bronze(&self) -> PathBuf {
        self.root.join(crate::BRONZE_TABLE)
    }

    /// `silver/enriched_events`
    pub fn enriched_events(&self) -> PathBuf {
        self.root.join(ENRICHED_TABLE)
    }

    /// `silver/view_sessions`
    pub fn view_sessions(&self) -> PathBuf {
        self.root.join(SESSIONS_TABLE)
    }

    /// `silver/replaced_sessions`
    pub fn replaced_sessions(&self) -> PathBuf {
        self.root.join(REPLACED_TABLE)
    }

    /// `gold/<model>`
    pub fn gold(&self, model: &str) -> PathBuf {
        self.root.join("gold").join(model)
    }

    /// A table by the path users see under the lake: `bronze` (or
    /// `bronze/engagement_events`), `silver/enriched_events`,
    /// `silver/view_sessions`, `gold/<model>`.
    pub fn table_by_name(&self, name: &str) -> Result<PathBuf, LakeError> {
        let known = table_names();
        match name {
            "bronze" => Ok(self.bronze()),
            name if known.iter().any(|k| k == name) => Ok(self.root.join(name)),
            _ => Err(LakeError::UnknownTable {
                name: name.to_string(),
                known: known.join(", "),
            }),
        }
    }

    /// A table by its short name: `engagement_events`, a silver table, or a gold model.
    pub fn table(&self, name: &str) -> PathBuf {
        match name {
            "engagement_events" | "bronze" => self.bronze(),
            "enriched_events" => self.enriched_events(),
            "view_sessions" => self.view_sessions(),
            model => self.gold(model),
        }
    }
}

/// Every table of the lake, as its path under the lake.
pub fn table_names() -> Vec<String> {
    let mut names = vec![
        crate::BRONZE_TABLE.to_string(),
        ENRICHED_TABLE.to_string(),
        SESSIONS_TABLE.to_string(),
    ];
    names.extend(
        crate::gold::model_names()
            .into_iter()
            .map(|m| format!("gold/{m}")),
    );
    names
}

/// A data file's path from the log (already percent-decoded, as delta-rs
/// reads it) as the table's object store names it: percent signs kept as they
/// are.
pub(crate) fn object_path(path: &str) -> deltalake::Path {
    deltalake::Path::parse(path).unwrap_or_else(|_| deltalake::Path::from(path))
}

/// Loads the table at `path` if it is a Delta table (latest version).
pub async fn open_if_exists(path: &Path) -> Result<Option<DeltaTable>, LakeError> {
    if !path.join("_delta_log").exists() {
        return Ok(None);
    }
    let name = path.display().to_string();
    let url = ensure_table_uri(path.to_string_lossy()).map_err(|e| LakeError::delta(&name, e))?;
    let table = DeltaTable::try_from_url(url)
        .await
        .map_err(|e| LakeError::delta(&name, e))?;
    Ok(table
        .version()
        .is_some()
        .then(|| crate::present_files::checked(table)))
}

/// Loads the table at `path`, which must exist: else a
/// [`LakeError::MissingTable`] naming the whole path, so that a mistyped lake
/// shows.
pub async fn open_existing(path: &Path) -> Result<DeltaTable, LakeError> {
    open_if_exists(path)
        .await?
        .ok_or_else(|| LakeError::MissingTable {
            table: path.display().to_string(),
        })
}

/// [`open_if_exists`] of each of `paths`, side by side, each on its own task:
/// an open replays the table's log and parses its files' statistics, CPU work
/// of tens of milliseconds for a long log.
pub async fn open_each<const N: usize>(
    paths: [PathBuf; N],
) -> Result<[Option<DeltaTable>; N], LakeError> {
    let opens = paths.map(|path| tokio::spawn(async move { open_if_exists(&path).await }));
    let mut tables = Vec::with_capacity(N);
    for open in opens {
        tables.push(open.await??);
    }
    Ok(tables
        .try_into()
        .unwrap_or_else(|_| unreachable!("one table per path")))
}

/// Whether a write goes to a table the run loaded, or creates the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Existing,
    Creating,
}

/// The table a write goes to: `loaded`, as the run found it when it read what
/// it would write, or else the location at `path`, which the write creates.
/// The location is never loaded here, even if another writer has created the
/// table since the run looked: the write must then fail rather than land on
/// top of theirs.
pub fn write_target(
    loaded: Option<DeltaTable>,
    path: &Path,
) -> Result<(DeltaTable, WriteKind), LakeError> {
    if let Some(table) = loaded {
        return Ok((table, WriteKind::Existing));
    }
    let name = path.display().to_string();
    let url = ensure_table_uri(path.to_string_lossy()).map_err(|e| LakeError::delta(&name, e))?;
    let table = DeltaTableBuilder::from_url(url)
        .and_then(|builder| builder.build())
        .map_err(|e| LakeError::delta(&name, e))?;
    Ok((crate::present_files::checked(table), WriteKind::Creating))
}

impl WriteKind {
    /// `properties` for the write. delta-rs settles a lost race for a table's
    /// first version by committing the loser's write on top of the winner's:
    /// rows planned for an empty table are appended a second time, and an
    /// overwrite removes none of the winner's files. A creating write is
    /// therefore not retried.
    pub fn commit_properties(self, properties: CommitProperties) -> CommitProperties {
        match self {
            WriteKind::Existing => properties,
            WriteKind::Creating => properties.with_max_retries(0),
        }
    }

    /// The error of a failed write to `table`, naming a lost creation race.
    pub fn failed(self, table: &str, source: DeltaTableError) -> LakeError {
        let lost_race = matches!(
            &source,
            DeltaTableError::Transaction {
                source: TransactionError::MaxCommitAttempts(_)
            }
        );
        if self == WriteKind::Creating && lost_race {
            LakeError::CreatedMeanwhile {
                table: table.to_string(),
            }
        } else {
            LakeError::delta(table, source)
        }
    }
}

/// `batches` as a scan in `ways` partitions (batches dealt round-robin), so
/// that a Delta write over it encodes Parquet on that many cores: delta-rs
/// writes each input partition (hashed by the table's partition columns) in
/// its own task.
pub fn parallel_input(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    ways: usize,
) -> Result<LogicalPlan, LakeError> {
    let table = dealt_table(schema, batches, ways)?;
    Ok(
        LogicalPlanBuilder::scan("write_input", provider_as_source(Arc::new(table)), None)?
            .build()?,
    )
}

/// `batches` as an in-memory table of `ways` partitions (batches dealt
/// round-robin), so that a scan of it runs on that many cores.
pub fn dealt_table(
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    ways: usize,
) -> Result<MemTable, LakeError> {
    let mut partitions: Vec<Vec<RecordBatch>> = vec![Vec::new(); ways.max(1)];
    let count = partitions.len();
    for (i, batch) in batches.into_iter().enumerate() {
        partitions[i % count].push(batch);
    }
    partitions.retain(|p| !p.is_empty());
    if partitions.is_empty() {
        // An empty write still commits (it carries the run's progress).
        partitions.push(vec![RecordBatch::new_empty(schema.clone())]);
    }
    Ok(MemTable::try_new(schema, partitions)?)
}

/// The cores a run may encode Parquet on.
pub fn write_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `read` of each of `items`, a few at once, each on its own task (decoding
/// Parquet is CPU work); `None` when any read answers `None`.
pub async fn read_each<I, T, Fut>(
    items: impl IntoIterator<Item = I>,
    read: impl Fn(I) -> Fut,
) -> Result<Option<Vec<T>>, LakeError>
where
    T: Send + 'static,
    Fut: Future<Output = Result<Option<T>, LakeError>> + Send + 'static,
{
    let reads = futures::stream::iter(items.into_iter().map(|item| tokio::spawn(read(item))))
        .buffer_unordered(2 * write_parallelism());
    let results: Vec<_> = reads.collect().await;
    let mut read_all = Vec::with_capacity(results.len());
    for result in results {
        match result?? {
            Some(value) => read_all.push(value),
            None => return Ok(None),
        }
    }
    Ok(Some(read_all))
}

/// Registers the metadata catalogue as the in-memory table `video_metadata`.
pub fn register_metadata(ctx: &SessionContext, videos: &[VideoMetadata]) -> Result<(), LakeError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("video_id", DataType::Utf8, false),
        Field::new("title", DataType::Utf8, false),
        Field::new("genre", DataType::Utf8, false),
        Field::new("creator", DataType::Utf8, false),
        Field::new("duration_s", DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(
                videos.iter().map(|v| &v.video_id),
            )),
            Arc::new(StringArray::from_iter_values(
                videos.iter().map(|v| &v.title),
            )),
            Arc::new(StringArray::from_iter_values(
                videos.iter().map(|v| &v.genre),
            )),
            Arc::new(StringArray::from_iter_values(
                videos.iter().map(|v| &v.creator),
            )),
            Arc::new(Float64Array::from_iter_values(
                videos.iter().map(|v| v.duration_s),
            )),
        ],
    )?;
    let table = MemTable::try_new(schema, vec![vec![batch]])?;
    ctx.register_table("video_metadata", Arc::new(table))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_its_contract_location() {
        let lake = Lake::new("/lake");
        assert_eq!(lake.bronze(), Path::new("/lake/bronze/engagement_events"));
        assert_eq!(
            lake.table("enriched_events"),
            Path::new("/lake/silver/enriched_events")
        );
        assert_eq!(
            lake.table("view_sessions"),
            Path::new("/lake/silver/view_sessions")
        );
        assert_eq!(lake.table("top_videos"), Path::new("/lake/gold/top_videos"));
    }

    fn rows(values: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(values.to_vec()))]).unwrap()
    }

    async fn append(target: (DeltaTable, WriteKind), batch: RecordBatch) -> Result<(), LakeError> {
        let (table, kind) = target;
        table
            .write(vec![batch])
            .with_commit_properties(kind.commit_properties(CommitProperties::default()))
            .await
            .map(|_| ())
            .map_err(|e| kind.failed("t", e))
    }

    async fn ids(path: &Path) -> Vec<String> {
        let table = open_if_exists(path).await.unwrap().unwrap();
        let ctx = SessionContext::new();
        let batches = ctx
            .read_table(table.table_provider().await.unwrap())
            .unwrap()
            .collect()
            .await
            .unwrap();
        let mut ids: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                let column = deltalake::arrow::compute::cast(b.column(0), &DataType::Utf8).unwrap();
                let column = column.as_any().downcast_ref::<StringArray>().unwrap();
                column
                    .iter()
                    .flatten()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        ids.sort();
        ids
    }

    #[tokio::test]
    async fn a_write_planned_for_a_missing_table_fails_if_another_creates_it_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let ours = write_target(None, &path).unwrap();
        append(write_target(None, &path).unwrap(), rows(&["theirs"]))
            .await
            .unwrap();

        let lost = append(ours, rows(&["ours"])).await.unwrap_err();
        assert!(
            matches!(lost, LakeError::CreatedMeanwhile { .. }),
            "{lost:?}"
        );
        assert_eq!(ids(&path).await, ["theirs"]);

        // Planned from the table as it now is, the write lands.
        let loaded = open_if_exists(&path).await.unwrap();
        append(write_target(loaded, &path).unwrap(), rows(&["ours"]))
            .await
            .unwrap();
        assert_eq!(ids(&path).await, ["ours", "theirs"]);
    }
}
