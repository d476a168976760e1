//! StreamReel's lakehouse: Delta tables under `<data-dir>/lake`.
//!
//! # Layout
//! - [`bronze`]: the bronze table: schema, exactly-once appends carrying one Delta
//!   app transaction per partition, and reading progress back; [`append_log`]
//!   commits those appends to the Delta log.
//! - [`silver`]: incremental enrichment and sessions (`lake/silver/...`), and
//!   the record of the session rows each commit replaced.
//! - [`gold`]: SQL models (`models/*.sql`) into `lake/gold/<name>`, updated
//!   by difference from the `view_sessions` rows removed and added since
//!   their last build where they can be, else built in full (per-day models
//!   for the days whose sessions changed).
//! - [`data_tests`]: the rules guarding every model (`models/tests.toml`).
//! - [`maintenance`]: compaction and vacuum; [`compaction_guard`] refuses a
//!   compaction of files another one removed meanwhile.
//! - `checked_log_store`: the log store wrapper both run their checks in.
//! - [`present_files`]: every commit refuses to add a data file that is not
//!   there (deleted by a vacuum while its writer stood still).
//! - [`tables`]: the [`tables::Lake`] (where each table lives under the lake root) and opening tables.
//! - [`file_reader`]: the reader of a data file the crate's own reads use.
//! - [`key_sieve`]: the sets of keys that scans look up every row's key in.
//! - [`metadata`]: the video catalogue CSV.
//! - [`parquet_layout`]: compression and encodings of every Parquet file written.
//! - [`query`]: DataFusion over the tables.
//! - [`engine`]: the limits of a run (memory pool, chunk size).
//! - [`error`]: the crate's error type.

pub mod append_log;
pub mod bronze;
pub(crate) mod checked_log_store;
pub mod compaction_guard;
pub mod data_tests;
pub mod engine;
pub mod error;
pub mod file_reader;
pub mod gold;
pub mod key_sieve;
pub mod maintenance;
pub mod metadata;
pub mod parquet_layout;
pub mod present_files;
pub mod query;
pub mod silver;
pub mod tables;
#[cfg(test)]
mod test_commits;

pub use bronze::{
    BronzeBatchBuilder, BronzeTable, PartitionMarks, ReplayedEvent, bronze_schema, epoch_app_id,
    rows_to_batch,
};
pub use deltalake::arrow::array::RecordBatch;
pub use engine::LakeSettings;
pub use error::LakeError;
pub use metadata::{VideoMetadata, read_metadata, read_metadata_file};

/// Path of the bronze table below a node's lake directory.
pub const BRONZE_TABLE: &str = "bronze/engagement_events";
