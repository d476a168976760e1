//! The bronze table `lake/bronze/engagement_events`: one row per accepted,
//! de-duplicated event.
//!
//! Exactly-once: each partition's commit carries the Delta app transaction
//! `streamreel-bronze-<partition>` whose version is the last Kafka offset in it.
//! The rows and the progress marker land in one atomic commit, so after any
//! crash the table itself says where each partition resumes.
//!
//! Fencing: in a cluster every commit also carries the writer's ownership
//! epoch (`streamreel-bronze-epoch-<partition>`). A writer commits only on a
//! version where the partition's marks are exactly what it expects, and the
//! commit ([`crate::append_log`]) is refused when another one carrying the same
//! app ids landed since that version. So of two writers of one partition, only
//! the one whose epoch is in the table can add rows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use deltalake::arrow::array::{
    ArrayBuilder, ArrayRef, Float64Builder, Int32Builder, Int64Builder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::kernel::StructType;
use deltalake::kernel::Transaction;
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::{CommitData, CommitProperties};
use deltalake::kernel::{Action, Add};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::table::config::TablePropertiesExt;
use deltalake::writer::{DeltaWriter, RecordBatchWriter};
use deltalake::{DeltaTable, DeltaTableBuilder, checkpoints, ensure_table_uri};
use tracing::warn;

use streamreel_protocol::{BronzeRow, BronzeRowView, PartitionCheckpoint};

use crate::append_log::{self, AppendError};
use crate::error::LakeError;
use crate::parquet_layout::bronze_writer_properties;
use crate::query::{column_as_i64, column_as_strings, register_table};

const TABLE: &str = "bronze";

/// The table property holding the pseudonymisation secret's fingerprint.
pub const SECRET_FINGERPRINT_PROPERTY: &str = "streamreel.userKeyFingerprint";

/// The table property holding the Kafka topic bronze is ingested from.
pub const INPUT_TOPIC_PROPERTY: &str = "streamreel.inputTopic";

/// The table property holding the id of the Kafka cluster bronze is ingested from.
pub const KAFKA_CLUSTER_PROPERTY: &str = "streamreel.kafkaClusterId";

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The bronze schema, column for column as in the data contract.
pub fn bronze_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("session_id", DataType::Utf8, false),
        Field::new("user_key", DataType::Utf8, false),
        Field::new("video_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("position_s", DataType::Float64, false),
        Field::new("seek_to_s", DataType::Float64, true),
        Field::new("event_time", utc_micros(), false),
        Field::new("region", DataType::Utf8, false),
        Field::new("device", DataType::Utf8, true),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
        Field::new("ingested_at", utc_micros(), false),
    ]))
}

/// Builds one arrow batch from bronze rows (an empty slice gives an empty batch).
pub fn rows_to_batch(rows: &[BronzeRow]) -> Result<RecordBatch, LakeError> {
    let mut builder = BronzeBatchBuilder::with_capacity(rows.len());
    for row in rows {
        builder.append(&row.view());
    }
    builder.finish()
}

/// Bronze columns filled row by row, straight from borrowed rows: the ingest
/// path copies each event's text once, into the arrow buffers.
pub struct BronzeBatchBuilder {
    event_id: StringBuilder,
    session_id: StringBuilder,
    user_key: StringBuilder,
    video_id: StringBuilder,
    event_type: StringBuilder,
    position_s: Float64Builder,
    seek_to_s: Float64Builder,
    event_time: TimestampMicrosecondBuilder,
    region: StringBuilder,
    device: StringBuilder,
    kafka_partition: Int32Builder,
    kafka_offset: Int64Builder,
    ingested_at: TimestampMicrosecondBuilder,
}

impl Default for BronzeBatchBuilder {
    fn default() -> BronzeBatchBuilder {
        BronzeBatchBuilder::with_capacity(1024)
    }
}

impl BronzeBatchBuilder {
    /// Room for `n` rows of typical size before any buffer grows.
    pub fn with_capacity(n: usize) -> BronzeBatchBuilder {
        BronzeBatchBuilder {
            event_id: StringBuilder::with_capacity(n, n * 36),
            session_id: StringBuilder::with_capacity(n, n * 36),
            user_key: StringBuilder::with_capacity(n, n * 32),
            video_id: StringBuilder::with_capacity(n, n * 10),
            event_type: StringBuilder::with_capacity(n, n * 5),
            position_s: Float64Builder::with_capacity(n),
            seek_to_s: Float64Builder::with_capacity(n),
            event_time: TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"),
            region: StringBuilder::with_capacity(n, n * 8),
            device: StringBuilder::with_capacity(n, n * 6),
            kafka_partition: Int32Builder::with_capacity(n),
            kafka_offset: Int64Builder::with_capacity(n),
            ingested_at: TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"),
        }
    }

    pub fn append(&mut self, row: &BronzeRowView<'_>) {
        self.event_id.append_value(row.event_id);
        self.session_id.append_value(row.session_id);
        self.user_key.append_value(row.user_key);
        self.video_id.append_value(row.video_id);
        self.event_type.append_value(row.event_type);
        self.position_s.append_value(row.position_s);
        self.seek_to_s.append_option(row.seek_to_s);
        self.event_time.append_value(row.event_time_us);
        self.region.append_value(row.region);
        self.device.append_option(row.device);
        self.kafka_partition.append_value(row.kafka_partition);
        self.kafka_offset.append_value(row.kafka_offset);
        self.ingested_at.append_value(row.ingested_at_us);
    }

    pub fn len(&self) -> usize {
        self.kafka_offset.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rows appended so far as one batch. The builder is empty afterwards,
    /// with room for as many rows again, so the next batch never regrows.
    pub fn finish(&mut self) -> Result<RecordBatch, LakeError> {
        let rows = self.len();
        let mut full = std::mem::replace(self, BronzeBatchBuilder::with_capacity(rows));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(full.event_id.finish()),
            Arc::new(full.session_id.finish()),
            Arc::new(full.user_key.finish()),
            Arc::new(full.video_id.finish()),
            Arc::new(full.event_type.finish()),
            Arc::new(full.position_s.finish()),
            Arc::new(full.seek_to_s.finish()),
            Arc::new(full.event_time.finish()),
            Arc::new(full.region.finish()),
            Arc::new(full.device.finish()),
            Arc::new(full.kafka_partition.finish()),
            Arc::new(full.kafka_offset.finish()),
            Arc::new(full.ingested_at.finish()),
        ];
        Ok(RecordBatch::try_new(bronze_schema(), columns)?)
    }
}

/// What bronze says about one partition: its progress and owner's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionMarks {
    /// The last Kafka offset committed, if any.
    pub last_offset: Option<i64>,
    /// The epoch of the last writer, if it was written in a cluster.
    pub epoch: Option<u64>,
}

/// A committed bronze row as a new owner replays it: what the de-duplication
/// window and the live aggregates need.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayedEvent {
    pub event_id: String,
    pub ingested_at_us: i64,
    pub video_id: String,
    pub event_type: String,
    pub event_time_us: i64,
    pub kafka_offset: i64,
}

/// The Delta app transaction id carrying a partition writer's epoch.
pub fn epoch_app_id(partition: i32) -> String {
    format!("streamreel-bronze-epoch-{partition}")
}

/// A handle on the bronze table.
pub struct BronzeTable {
    path: PathBuf,
    /// Brought up to date only when marks or properties are read: appends
    /// never need its file list (see [`crate::append_log`]).
    table: DeltaTable,
    /// The version appends commit on: where the marks were last read, or this
    /// handle's last commit.
    version: Option<u64>,
}

impl BronzeTable {
    pub fn path_in(lake_dir: &Path) -> PathBuf {
        crate::tables::Lake::new(lake_dir).bronze()
    }

    /// Opens the table, creating it first if it does not exist yet. Call this once
    /// per node before partition writers start, so that they never race to create it.
    pub async fn open_or_create(lake_dir: &Path) -> Result<BronzeTable, LakeError> {
        let path = Self::path_in(lake_dir);
        let url =
            ensure_table_uri(path.to_string_lossy()).map_err(|e| LakeError::delta(TABLE, e))?;
        // Loading a location without a log makes the Delta kernel log an
        // error on every fresh node's first start; look for the log first.
        if let Some(table) = crate::tables::open_if_exists(&path).await? {
            return Ok(BronzeTable::new(path, table));
        }
        let table = DeltaTableBuilder::from_url(url.clone())
            .and_then(|builder| builder.build())
            .map_err(|e| LakeError::delta(TABLE, e))?;
        let schema: StructType = bronze_schema()
            .as_ref()
            .try_into_kernel()
            .map_err(|e| LakeError::delta(TABLE, e.into()))?;
        let created = table
            .create()
            .with_columns(schema.fields().cloned())
            .with_save_mode(SaveMode::Ignore)
            .with_table_name("engagement_events")
            .with_comment("StreamReel bronze: accepted, de-duplicated engagement events")
            // Not retried: delta-rs would settle a lost race for version 0 by
            // committing this creation again on top of the winner's.
            .with_commit_properties(CommitProperties::default().with_max_retries(0))
            .await;
        let table = match created {
            Ok(table) => table,
            Err(create_error) => {
                // Members of a cluster start together on one lake: another
                // one may have created the table a moment before. Use theirs.
                let theirs = DeltaTable::try_from_url(url)
                    .await
                    .map_err(|e| LakeError::delta(TABLE, e))?;
                if theirs.version().is_none() {
                    return Err(LakeError::delta(TABLE, create_error));
                }
                theirs
            }
        };
        // As `open_if_exists` returns it (a created table is not wrapped yet).
        Ok(BronzeTable::new(path, crate::present_files::checked(table)))
    }

    fn new(path: PathBuf, table: DeltaTable) -> BronzeTable {
        let version = table.version();
        BronzeTable {
            path,
            table,
            version,
        }
    }

    /// The table's log store, as its appends use it.
    #[cfg(test)]
    pub(crate) fn log_store(&self) -> deltalake::logstore::LogStoreRef {
        self.table.log_store()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Refuses to go on with a secret other than the one the table's user keys
    /// were made with; the first writer records its fingerprint in the table's
    /// properties.
    pub async fn ensure_secret_fingerprint(&self, ours: &str) -> Result<(), LakeError> {
        match self
            .record_or_compare(SECRET_FINGERPRINT_PROPERTY, ours)
            .await?
        {
            None => Ok(()),
            Some(found) => Err(LakeError::SecretMismatch {
                table: self.path.display().to_string(),
                found,
                ours: ours.to_string(),
            }),
        }
    }

    /// Refuses to go on reading another topic than the one bronze was
    /// ingested from: the offsets its `txn` actions hold are that topic's, so
    /// another topic would resume at the wrong place and skip or repeat events.
    /// The first writer records the topic in the table's properties.
    pub async fn ensure_input_topic(&self, ours: &str) -> Result<(), LakeError> {
        match self.record_or_compare(INPUT_TOPIC_PROPERTY, ours).await? {
            None => Ok(()),
            Some(found) => Err(LakeError::InputTopicMismatch {
                table: self.path.display().to_string(),
                found,
                ours: ours.to_string(),
            }),
        }
    }

    /// Refuses to go on reading a topic of another Kafka cluster than the one
    /// bronze was ingested from (`ours`: the brokers' cluster id). A topic of
    /// the same name elsewhere has other records at the same offsets, so
    /// [`ensure_input_topic`](Self::ensure_input_topic) cannot tell them
    /// apart. The first writer that reaches a broker records the id.
    pub async fn ensure_kafka_cluster(&self, ours: &str) -> Result<(), LakeError> {
        match self.record_or_compare(KAFKA_CLUSTER_PROPERTY, ours).await? {
            None => Ok(()),
            Some(found) => Err(LakeError::KafkaClusterMismatch {
                table: self.path.display().to_string(),
                found,
                ours: ours.to_string(),
            }),
        }
    }

    /// The id of the Kafka cluster bronze was ingested from, if a writer
    /// recorded one. Read on a copy of the handle, as
    /// [`record_or_compare`](Self::record_or_compare) does.
    pub async fn recorded_kafka_cluster(&self) -> Result<Option<String>, LakeError> {
        let mut table = self.table.clone();
        table
            .update_state()
            .await
            .map_err(|e| LakeError::delta(TABLE, e))?;
        Ok(table
            .snapshot()
            .map_err(|e| LakeError::delta(TABLE, e))?
            .metadata()
            .configuration()
            .get(KAFKA_CLUSTER_PROPERTY)
            .cloned())
    }

    /// Records `ours` under the table property `key` if it has none, and
    /// returns the value found when it differs from `ours`.
    ///
    /// Works on a copy of the handle: a fenced append commits on the version
    /// the partition's marks were read from, and a check that moved this
    /// handle on would let a commit made in between go unnoticed.
    async fn record_or_compare(&self, key: &str, ours: &str) -> Result<Option<String>, LakeError> {
        let mut table = self.table.clone();
        let mut last_error = None;
        for _attempt in 0..3 {
            table
                .update_state()
                .await
                .map_err(|e| LakeError::delta(TABLE, e))?;
            let found = table
                .snapshot()
                .map_err(|e| LakeError::delta(TABLE, e))?
                .metadata()
                .configuration()
                .get(key)
                .cloned();
            match found {
                Some(found) if found == ours => return Ok(None),
                Some(found) => return Ok(Some(found)),
                None => {
                    let properties = HashMap::from([(key.to_string(), ours.to_string())]);
                    // Another member may record its own at the same moment:
                    // then look again and compare.
                    match table
                        .clone()
                        .set_tbl_properties()
                        .with_properties(properties)
                        .with_raise_if_not_exists(false)
                        .await
                    {
                        Ok(recorded) => table = recorded,
                        Err(e) => last_error = Some(e),
                    }
                }
            }
        }
        Err(LakeError::delta(
            TABLE,
            last_error.unwrap_or_else(|| {
                deltalake::DeltaTableError::Generic(format!("could not record the property {key}"))
            }),
        ))
    }

    /// The Delta id bronze got when it was created: the same for every
    /// member that writes this lake, another for any other lake.
    pub fn table_id(&self) -> Result<String, LakeError> {
        let snapshot = self
            .table
            .snapshot()
            .map_err(|e| LakeError::delta(TABLE, e))?;
        Ok(snapshot.metadata().id().to_string())
    }

    /// The table version this handle last saw.
    pub fn version(&self) -> Option<u64> {
        self.version
    }

    /// Brings the handle to the newest version.
    async fn refresh(&mut self) -> Result<(), LakeError> {
        self.table
            .update_state()
            .await
            .map_err(|e| LakeError::delta(TABLE, e))?;
        self.version = self.table.version();
        Ok(())
    }

    /// The last Kafka offset of `partition` committed to bronze, from the Delta
    /// app transaction; `None` if the partition never committed.
    pub async fn committed_offset(&mut self, partition: i32) -> Result<Option<i64>, LakeError> {
        self.refresh().await?;
        let snapshot = self
            .table
            .snapshot()
            .map_err(|e| LakeError::delta(TABLE, e))?;
        snapshot
            .transaction_version(
                self.table.log_store().as_ref(),
                PartitionCheckpoint::bronze_app_id(partition),
            )
            .await
            .map_err(|e| LakeError::delta(TABLE, e))
    }

    /// Reads the partition's marks from the newest version. The handle stays at
    /// that version, so a following [`BronzeTable::append_fenced`] is
    /// compare-and-set against exactly these marks.
    pub async fn marks(&mut self, partition: i32) -> Result<PartitionMarks, LakeError> {
        self.refresh().await?;
        let snapshot = self
            .table
            .snapshot()
            .map_err(|e| LakeError::delta(TABLE, e))?;
        let log_store = self.table.log_store();
        let last_offset = snapshot
            .transaction_version(
                log_store.as_ref(),
                PartitionCheckpoint::bronze_app_id(partition),
            )
            .await
            .map_err(|e| LakeError::delta(TABLE, e))?;
        let epoch = snapshot
            .transaction_version(log_store.as_ref(), epoch_app_id(partition))
            .await
            .map_err(|e| LakeError::delta(TABLE, e))?;
        Ok(PartitionMarks {
            last_offset,
            epoch: epoch.map(|e| e as u64),
        })
    }

    /// Appends `batch` (possibly empty, as for a fence) for `partition`, moving
    /// its progress to `last_offset` and writing `epoch` beside it, in one
    /// commit built on the version this handle holds. Refused with
    /// [`LakeError::Fenced`] if another commit for the partition landed since.
    pub async fn append_fenced(
        &mut self,
        batch: RecordBatch,
        partition: i32,
        last_offset: Option<i64>,
        epoch: u64,
    ) -> Result<PartitionCheckpoint, LakeError> {
        let mut txns = vec![Transaction::new(epoch_app_id(partition), epoch as i64)];
        if let Some(last_offset) = last_offset {
            txns.push(Transaction::new(
                PartitionCheckpoint::bronze_app_id(partition),
                last_offset,
            ));
        }
        self.commit(batch, partition, last_offset.unwrap_or(-1), txns)
            .await
    }

    /// The partition's committed rows with offsets above `after_offset`, by
    /// offset: what a new owner replays when bronze is ahead of its checkpoint.
    pub async fn events_after(
        &mut self,
        partition: i32,
        after_offset: i64,
    ) -> Result<Vec<ReplayedEvent>, LakeError> {
        let ctx = deltalake::datafusion::prelude::SessionContext::new();
        register_table(&ctx, "bronze", &self.table).await?;
        let sql = format!(
            "SELECT event_id, CAST(ingested_at AS BIGINT) AS ingested_at_us, video_id, event_type, \
             CAST(event_time AS BIGINT) AS event_time_us, kafka_offset FROM bronze \
             WHERE kafka_partition = {partition} AND kafka_offset > {after_offset} ORDER BY kafka_offset"
        );
        let batches = ctx.sql(&sql).await?.collect().await?;
        let mut events = Vec::new();
        for batch in &batches {
            let ids = column_as_strings(batch, "event_id")?;
            let ingested = column_as_i64(batch, "ingested_at_us")?;
            let videos = column_as_strings(batch, "video_id")?;
            let types = column_as_strings(batch, "event_type")?;
            let times = column_as_i64(batch, "event_time_us")?;
            let offsets = column_as_i64(batch, "kafka_offset")?;
            for i in 0..ids.len() {
                events.push(ReplayedEvent {
                    event_id: ids[i].clone(),
                    ingested_at_us: ingested[i],
                    video_id: videos[i].clone(),
                    event_type: types[i].clone(),
                    event_time_us: times[i],
                    kafka_offset: offsets[i],
                });
            }
        }
        Ok(events)
    }

    /// Appends `batch` (possibly empty) and marks `partition` as done up to
    /// `last_offset`, in one commit. Returns the checkpoint that commit made.
    pub async fn append(
        &mut self,
        batch: RecordBatch,
        partition: i32,
        last_offset: i64,
    ) -> Result<PartitionCheckpoint, LakeError> {
        let txn = Transaction::new(PartitionCheckpoint::bronze_app_id(partition), last_offset);
        self.commit(batch, partition, last_offset, vec![txn]).await
    }

    async fn commit(
        &mut self,
        batch: RecordBatch,
        partition: i32,
        last_offset: i64,
        txns: Vec<Transaction>,
    ) -> Result<PartitionCheckpoint, LakeError> {
        let base = self.version.ok_or_else(|| LakeError::MissingTable {
            table: self.path.display().to_string(),
        })?;
        let adds = if batch.num_rows() == 0 {
            Vec::new()
        } else {
            self.write_file(batch).await?
        };
        let app_ids: Vec<String> = txns.iter().map(|txn| txn.app_id.clone()).collect();
        let entry = CommitData::new(
            adds.into_iter().map(Action::Add).collect(),
            DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: None,
                predicate: None,
            },
            HashMap::new(),
            txns,
        )
        .get_bytes()
        .map_err(|e| LakeError::delta(TABLE, e.into()))?;
        let version = append_log::append(&self.table.log_store(), base, entry, &app_ids)
            .await
            .map_err(|error| match error {
                AppendError::SamePartition { version } => LakeError::Fenced {
                    partition,
                    reason: format!(
                        "another writer committed to the partition (version {version}) since \
                         this one read it"
                    ),
                },
                other => LakeError::BronzeAppend(other),
            })?;
        self.version = Some(version);
        self.checkpoint_if_due(version);
        Ok(PartitionCheckpoint {
            partition,
            last_offset,
            delta_version: version as i64,
        })
    }

    /// Writes `batch` as one Parquet file under the table: its `add` action.
    async fn write_file(&self, batch: RecordBatch) -> Result<Vec<Add>, LakeError> {
        let mut writer = RecordBatchWriter::for_table(&self.table)
            .map_err(|e| LakeError::delta(TABLE, e))?
            .with_writer_properties(bronze_writer_properties());
        writer
            .write(batch)
            .await
            .map_err(|e| LakeError::delta(TABLE, e))?;
        writer.flush().await.map_err(|e| LakeError::delta(TABLE, e))
    }

    /// Writes a Delta checkpoint for `version` when the table's interval says
    /// so (and drops expired log entries), as delta-rs does after its own
    /// commits. In the background: it reads the whole file list, which the
    /// append did not need. A failure only leaves readers more JSON to replay.
    fn checkpoint_if_due(&self, version: u64) {
        let interval = self
            .table
            .snapshot()
            .map(|snapshot| snapshot.table_config().checkpoint_interval().get())
            .unwrap_or(100);
        if !(version + 1).is_multiple_of(interval) {
            return;
        }
        let url = self.table.table_url().clone();
        tokio::spawn(async move {
            if let Err(error) =
                checkpoints::create_checkpoint_from_table_url_and_cleanup(url, version, None, None)
                    .await
            {
                warn!(table = TABLE, version, %error, "could not write a Delta checkpoint");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(partition: i32, offset: i64) -> BronzeRow {
        BronzeRow::example(partition, offset)
    }

    #[tokio::test]
    async fn commits_carry_per_partition_progress_that_survives_reopening() {
        let lake = tempfile::tempdir().unwrap();
        let mut bronze = BronzeTable::open_or_create(lake.path()).await.unwrap();
        assert_eq!(bronze.committed_offset(0).await.unwrap(), None);

        let rows: Vec<_> = (0..5).map(|o| row(0, o)).collect();
        let checkpoint = bronze
            .append(rows_to_batch(&rows).unwrap(), 0, 4)
            .await
            .unwrap();
        assert_eq!(checkpoint.last_offset, 4);
        bronze
            .append(rows_to_batch(&[row(1, 10)]).unwrap(), 1, 10)
            .await
            .unwrap();
        // A batch of only rejected or duplicate events still moves progress on.
        bronze
            .append(rows_to_batch(&[]).unwrap(), 0, 7)
            .await
            .unwrap();

        let mut reopened = BronzeTable::open_or_create(lake.path()).await.unwrap();
        assert_eq!(reopened.committed_offset(0).await.unwrap(), Some(7));
        assert_eq!(reopened.committed_offset(1).await.unwrap(), Some(10));
        let after = reopened.events_after(0, 1).await.unwrap();
        let ids: Vec<_> = after.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, ["e-0-2", "e-0-3", "e-0-4"]);
        assert_eq!(after[2].ingested_at_us, 1_795_503_600_000_004);
    }

    #[tokio::test]
    async fn files_keep_statistics_for_partitions_and_times_but_not_for_unordered_ids() {
        let lake = tempfile::tempdir().unwrap();
        let mut bronze = BronzeTable::open_or_create(lake.path()).await.unwrap();
        let rows: Vec<_> = (0..5).map(|o| row(2, o)).collect();
        bronze
            .append(rows_to_batch(&rows).unwrap(), 2, 4)
            .await
            .unwrap();

        let reopened = BronzeTable::open_or_create(lake.path()).await.unwrap();
        let snapshot = reopened.table.snapshot().unwrap();
        let files: Vec<_> = snapshot.log_data().iter().collect();
        assert_eq!(files.len(), 1);
        let stats: serde_json::Value =
            serde_json::from_str(files[0].stats().as_deref().expect("statistics")).unwrap();
        for bound in ["minValues", "maxValues"] {
            let values = &stats[bound];
            // Silver finds a file's partitions from these.
            assert_eq!(values["kafka_partition"], 2, "{stats}");
            assert!(values.get("event_time").is_some(), "{stats}");
            for column in crate::parquet_layout::BRONZE_UNORDERED_COLUMNS {
                assert!(values.get(column).is_none(), "{column}: {stats}");
            }
        }
    }

    #[tokio::test]
    async fn a_property_check_leaves_the_fence_on_the_version_the_marks_came_from() {
        let lake = tempfile::tempdir().unwrap();
        let first = BronzeTable::open_or_create(lake.path()).await.unwrap();
        first.ensure_kafka_cluster("cluster-a").await.unwrap();
        let mut new = BronzeTable::open_or_create(lake.path()).await.unwrap();
        let marks = new.marks(0).await.unwrap();
        // The old owner commits after the new one read the marks.
        let mut old = BronzeTable::open_or_create(lake.path()).await.unwrap();
        old.marks(0).await.unwrap();
        old.append_fenced(rows_to_batch(&[row(0, 0)]).unwrap(), 0, Some(0), 1)
            .await
            .unwrap();
        // Checked between the marks and the fence, as a resume may.
        new.ensure_kafka_cluster("cluster-a").await.unwrap();
        let fence = new
            .append_fenced(rows_to_batch(&[]).unwrap(), 0, marks.last_offset, 2)
            .await;
        assert!(
            matches!(fence, Err(LakeError::Fenced { partition: 0, .. })),
            "the old owner's batch would be ingested again: {:?}",
            fence.map(|c| c.delta_version)
        );
    }

    #[tokio::test]
    async fn a_writer_with_a_stale_epoch_is_refused_by_the_table_itself() {
        let lake = tempfile::tempdir().unwrap();
        let batch = |partition, offsets: std::ops::Range<i64>| {
            let rows: Vec<_> = offsets.map(|o| row(partition, o)).collect();
            rows_to_batch(&rows).unwrap()
        };
        let mut old = BronzeTable::open_or_create(lake.path()).await.unwrap();
        let mut new = BronzeTable::open_or_create(lake.path()).await.unwrap();
        assert_eq!(old.marks(0).await.unwrap(), PartitionMarks::default());
        old.append_fenced(batch(0, 0..3), 0, Some(2), 1)
            .await
            .unwrap();

        // The new owner (epoch 2) reads the marks and fences the partition.
        let marks = new.marks(0).await.unwrap();
        assert_eq!(
            marks,
            PartitionMarks {
                last_offset: Some(2),
                epoch: Some(1)
            }
        );
        new.append_fenced(batch(0, 0..0), 0, marks.last_offset, 2)
            .await
            .unwrap();

        // The old owner wakes up: the table refuses its rows.
        let refused = old.append_fenced(batch(0, 3..5), 0, Some(4), 1).await;
        assert!(
            matches!(refused, Err(LakeError::Fenced { partition: 0, .. })),
            "{refused:?}"
        );
        // Its handle still commits other partitions: the fence is per partition.
        old.append_fenced(batch(1, 0..1), 1, Some(0), 1)
            .await
            .unwrap();

        let marks = new.marks(0).await.unwrap();
        assert_eq!(marks.epoch, Some(2));
        assert_eq!(marks.last_offset, Some(2));
        let offsets: Vec<i64> = new
            .events_after(0, -1)
            .await
            .unwrap()
            .iter()
            .map(|e| e.kafka_offset)
            .collect();
        assert_eq!(offsets, [0, 1, 2]);
        assert_eq!(new.events_after(0, 1).await.unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn members_creating_the_table_at_once_all_get_it() {
        let lake = tempfile::tempdir().unwrap();
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let dir = lake.path().to_path_buf();
                tokio::spawn(async move { BronzeTable::open_or_create(&dir).await })
            })
            .collect();
        let mut tables = Vec::new();
        for open in opens {
            tables.push(open.await.unwrap().unwrap());
        }
        // One creation landed; the others use it (none commits on top).
        for table in &tables {
            assert_eq!(table.table.version(), Some(0));
        }
        // Every handle works: a writer reads the marks (which refreshes its
        // handle) before it writes, as actors do, and then commits.
        for mut table in tables {
            table.marks(0).await.unwrap();
            table
                .append_fenced(rows_to_batch(&[]).unwrap(), 0, None, 1)
                .await
                .unwrap();
        }
        let table = BronzeTable::open_or_create(lake.path()).await.unwrap();
        assert_eq!(table.table.version(), Some(4));
    }

    #[tokio::test]
    async fn a_writer_with_another_secret_is_refused() {
        let lake = tempfile::tempdir().unwrap();
        let first = BronzeTable::open_or_create(lake.path()).await.unwrap();
        first.ensure_secret_fingerprint("aaaa").await.unwrap();
        // The same secret again (a restart, another member) is fine.
        let again = BronzeTable::open_or_create(lake.path()).await.unwrap();
        again.ensure_secret_fingerprint("aaaa").await.unwrap();
        let other = BronzeTable::open_or_create(lake.path()).await.unwrap();
        let error = other.ensure_secret_fingerprint("bbbb").await.unwrap_err();
        assert!(
            matches!(&error, LakeError::SecretMismatch { found, ours, .. } if found == "aaaa" && ours == "bbbb"),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains("different pseudonymisation secret")
        );
    }

    #[tokio::test]
    async fn a_writer_reading_another_topic_or_cluster_is_refused() {
        let lake = tempfile::tempdir().unwrap();
        let first = BronzeTable::open_or_create(lake.path()).await.unwrap();
        first.ensure_secret_fingerprint("aaaa").await.unwrap();
        first.ensure_input_topic("video-events").await.unwrap();
        let again = BronzeTable::open_or_create(lake.path()).await.unwrap();
        again.ensure_input_topic("video-events").await.unwrap();
        let other = BronzeTable::open_or_create(lake.path()).await.unwrap();
        let error = other.ensure_input_topic("other-events").await.unwrap_err();
        assert!(
            matches!(&error, LakeError::InputTopicMismatch { found, ours, .. } if found == "video-events" && ours == "other-events"),
            "{error}"
        );
        // Recording the topic kept the fingerprint beside it.
        let error = other.ensure_secret_fingerprint("bbbb").await.unwrap_err();
        assert!(
            matches!(&error, LakeError::SecretMismatch { found, .. } if found == "aaaa"),
            "{error}"
        );

        assert_eq!(again.recorded_kafka_cluster().await.unwrap(), None);
        first.ensure_kafka_cluster("cluster-a").await.unwrap();
        // Another writer's handle sees it.
        assert_eq!(
            again.recorded_kafka_cluster().await.unwrap().as_deref(),
            Some("cluster-a")
        );
        other.ensure_kafka_cluster("cluster-a").await.unwrap();
        let error = again.ensure_kafka_cluster("cluster-b").await.unwrap_err();
        assert!(
            matches!(&error, LakeError::KafkaClusterMismatch { found, ours, .. } if found == "cluster-a" && ours == "cluster-b"),
            "{error}"
        );
        again.ensure_input_topic("video-events").await.unwrap();
    }

    #[tokio::test]
    async fn writers_of_other_partitions_commit_on_top_of_each_other() {
        let lake = tempfile::tempdir().unwrap();
        let mut first = BronzeTable::open_or_create(lake.path()).await.unwrap();
        let mut second = BronzeTable::open_or_create(lake.path()).await.unwrap();
        first.marks(0).await.unwrap();
        second.marks(1).await.unwrap();
        let base = second.version().unwrap();
        first
            .append_fenced(rows_to_batch(&[row(0, 0)]).unwrap(), 0, Some(0), 1)
            .await
            .unwrap();
        // Its version was taken meanwhile: it lands on the next one.
        let landed = second
            .append_fenced(rows_to_batch(&[row(1, 5)]).unwrap(), 1, Some(5), 1)
            .await
            .unwrap();
        assert_eq!(landed.delta_version as u64, base + 2);
        assert_eq!(second.version(), Some(base + 2));

        let mut reopened = BronzeTable::open_or_create(lake.path()).await.unwrap();
        assert_eq!(reopened.committed_offset(0).await.unwrap(), Some(0));
        assert_eq!(reopened.committed_offset(1).await.unwrap(), Some(5));
        let mut rows = reopened.events_after(0, -1).await.unwrap();
        rows.extend(reopened.events_after(1, -1).await.unwrap());
        let ids: Vec<_> = rows.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, ["e-0-0", "e-1-5"]);
    }

    #[tokio::test]
    async fn appends_write_a_delta_checkpoint_at_the_tables_interval() {
        let lake = tempfile::tempdir().unwrap();
        let mut bronze = BronzeTable::open_or_create(lake.path()).await.unwrap();
        while bronze.version().unwrap() < 99 {
            let offset = bronze.version().unwrap() as i64;
            bronze
                .append(rows_to_batch(&[]).unwrap(), 0, offset)
                .await
                .unwrap();
        }
        let checkpoint = bronze
            .path()
            .join("_delta_log/00000000000000000099.checkpoint.parquet");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !checkpoint.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint for version 99 after a minute"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let reopened = BronzeTable::open_or_create(lake.path()).await.unwrap();
        assert_eq!(reopened.version(), Some(99));
    }
}
