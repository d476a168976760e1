use thiserror::Error;

#[derive(Debug, Error)]
pub enum LakeError {
    #[error("delta table {table}: {source}")]
    Delta {
        table: String,
        #[source]
        source: deltalake::DeltaTableError,
    },
    #[error("query failed: {0}")]
    Query(#[from] deltalake::datafusion::error::DataFusionError),
    #[error("arrow: {0}")]
    Arrow(#[from] deltalake::arrow::error::ArrowError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line}: {reason}")]
    Metadata {
        path: String,
        line: u64,
        reason: String,
    },
    #[error(
        "table {table} does not exist yet (bronze appears with a node's first commit, \
         silver and gold with `streamreel models run` once bronze holds events)"
    )]
    MissingTable { table: String },
    #[error("unknown table {name:?} (tables: bronze, {known})")]
    UnknownTable { name: String, known: String },
    #[error("unknown model {name:?} (models: {known})")]
    UnknownModel { name: String, known: String },
    #[error("gold model {model} has no video_id column to filter by")]
    NotPerVideo { model: String },
    #[error("model {model} failed: {source}")]
    Model {
        model: String,
        #[source]
        source: deltalake::datafusion::error::DataFusionError,
    },
    #[error(
        "gold not published: data tests failed on the new data (the previous gold stays \
         visible)\n{report}"
    )]
    AuditFailed { report: String },
    #[error("invalid data tests file: {0}")]
    DataTestsFile(String),
    /// Another writer owns the partition now: its epoch in bronze is newer, or
    /// it committed to the partition since this writer last looked.
    #[error("bronze append: {0}")]
    BronzeAppend(#[from] crate::append_log::AppendError),
    #[error("bronze partition {partition} is fenced: {reason}")]
    Fenced { partition: i32, reason: String },
    #[error(
        "the lake at {table} was written with a different pseudonymisation secret \
         (fingerprint {found}, this node's {ours}): writing would give every user a second \
         user_key; use the lake's secret, or a new lake"
    )]
    SecretMismatch {
        table: String,
        found: String,
        ours: String,
    },
    #[error(
        "the lake at {table} holds bronze ingested from topic {found:?}, and this node reads \
         {ours:?}: bronze's offsets are {found:?}'s, so another topic would resume at the wrong \
         offsets and skip or repeat events; set kafka.input-topic to {found:?}, or use a new lake"
    )]
    InputTopicMismatch {
        table: String,
        found: String,
        ours: String,
    },
    #[error(
        "the lake at {table} holds bronze ingested from the Kafka cluster {found:?}, and this \
         node's brokers belong to cluster {ours:?}: offsets of one cluster say nothing about \
         another's, so resuming there would skip or repeat events; set kafka.brokers to the \
         cluster {found:?}, or use a new lake"
    )]
    KafkaClusterMismatch {
        table: String,
        found: String,
        ours: String,
    },
    #[error(
        "vacuum retention of {hours} h is below the 1 h floor: files still being written could be deleted"
    )]
    RetentionTooShort { hours: i64 },
    #[error(
        "table {table} was written by an earlier StreamReel without its partitioning by \
         {expected} (found: [{found}]); silver is derived from bronze: move the lake's silver \
         directory aside and run `streamreel models run` to rebuild it"
    )]
    SilverLayout {
        table: String,
        expected: String,
        found: String,
    },
    #[error(
        "silver/view_sessions holds the sessions of partition {partition} up to offset \
         {sessions_up_to}, but silver/enriched_events holds {events} \
         (was enriched_events deleted or replaced on its own?): nothing was written; silver \
         is derived from bronze: move the lake's whole silver directory aside and run \
         `streamreel models run` to rebuild it"
    )]
    SessionsAheadOfEvents {
        partition: i32,
        sessions_up_to: i64,
        /// "its events up to offset N", or "none of its events".
        events: String,
    },
    #[error(
        "table {table} was created by another run while this one prepared its first write; \
         nothing was written: run again (it continues from the other run's table)"
    )]
    CreatedMeanwhile { table: String },
    #[error("a lakehouse task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("{path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: deltalake::parquet::errors::ParquetError,
    },
    #[error(
        "silver/view_sessions: {expected} recomputed sessions should replace as many rows, \
         but {found} were found in the partitions of their first day; nothing was written"
    )]
    ReplacedRowsMismatch { expected: usize, found: usize },
    #[error(
        "table {table}: the deletion vector of {path} could not be read; nothing was written \
         (its deleted rows would have come back)"
    )]
    DeletionVectorNotFound { table: String, path: String },
    #[error(
        "table {table}: {path} holds {read} rows but its statistics record {recorded:?}; \
         a deletion vector needs the exact count, so nothing was written"
    )]
    RowCountMismatch {
        table: String,
        path: String,
        read: u64,
        recorded: Option<usize>,
    },
    #[error("table {table}: unexpected column type for `{column}`")]
    ColumnType { table: String, column: String },
    #[error(
        "view_sessions: the packed events of session {session_id:?} cannot be read ({source}); \
         a new build of silver (delete lake/silver and run `streamreel models run`) writes them again"
    )]
    PackedEvents {
        session_id: String,
        #[source]
        source: crate::silver::packed_events::UnpackError,
    },
}

impl LakeError {
    pub fn parquet(
        path: &impl std::fmt::Display,
        source: deltalake::parquet::errors::ParquetError,
    ) -> LakeError {
        LakeError::Parquet {
            path: path.to_string(),
            source,
        }
    }

    pub fn delta(table: &str, source: deltalake::DeltaTableError) -> LakeError {
        LakeError::Delta {
            table: table.to_string(),
            source,
        }
    }
}
