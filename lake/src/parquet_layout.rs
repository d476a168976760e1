//! How every Parquet file StreamReel writes is encoded: both silver tables,
//! gold models and compaction use [`writer_properties`]; bronze appends the
//! same without statistics for ids no reader can skip by
//! ([`bronze_writer_properties`]); `view_sessions` is stored uncompressed, in
//! small pages ([`sessions_writer_properties`]).
//!
//! Chosen from a profile of the 10M-event full build, where encoding Parquet
//! was most of the run: a tenth of the CPU in Snappy and a third in the
//! dictionary encoder hashing and comparing every value, although half the
//! columns hardly repeat a value (docs/performance.md, Parquet layout).
//! - zstd level 1 for every column of the other tables: about half the bytes
//!   of Snappy here, for less CPU once the encodings below have shrunk what
//!   it compresses.
//! - Values that rise with the stream (offsets, timestamps): delta encoding,
//!   which stores the small differences between neighbours.
//! - Ids unique to an event or a session, and measurements (positions, watch
//!   times, shares) that seldom repeat: plain, no dictionary to fill and drop.
//!
//! - A session's packed events: opaque bytes, no dictionary, no statistics.
//!
//! Every other column keeps Parquet's default, a dictionary (falling back to
//! plain when it grows large). Byte-stream split for the measurements was as
//! fast, but Spark's vectorized reader cannot read it; it reads delta encoding
//! from Spark 3.3 on.

use deltalake::parquet::basic::{Compression, Encoding, ZstdLevel};
use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
use deltalake::parquet::schema::types::ColumnPath;

/// Columns whose values rise with the stream: delta encoded.
pub const RISING_COLUMNS: [&str; 5] = [
    "kafka_offset",
    "ingested_at",
    "event_time",
    "started_at",
    "last_event_at",
];

/// Floating-point measurements with few repeats: no dictionary.
pub const MEASUREMENT_COLUMNS: [&str; 6] = [
    "position_s",
    "seek_to_s",
    "watch_s",
    "max_position_s",
    "exit_position_s",
    "pct_watched",
];

/// Ids unique to an event or a session: no dictionary.
pub const UNIQUE_ID_COLUMNS: [&str; 2] = ["event_id", "session_id"];

/// Bronze's ids that are random or hashed: no statistics. A file's least and
/// greatest of them span nearly the whole range, so no reader can skip a file
/// or page by them.
pub const BRONZE_UNORDERED_COLUMNS: [&str; 3] = ["event_id", "session_id", "user_key"];

/// Opaque values (a session's packed events): no dictionary, and no
/// statistics, which no reader could use to skip a file.
pub const OPAQUE_COLUMNS: [&str; 1] = [crate::silver::sessions_table::PACKED_EVENTS];

/// Columns of `view_sessions` read through every row: silver's search decodes
/// `session_id` of each file, gold's pair count `user_key`. Their pages keep
/// Parquet's default size; see [`sessions_writer_properties`].
pub const SCANNED_SESSION_COLUMNS: [&str; 2] = ["session_id", "user_key"];

/// The largest data page of `view_sessions`' other columns, in bytes before
/// compression: about 60 sessions' packed events, 256 measurements.
const SESSIONS_PAGE_BYTES: usize = 2 * 1024;

/// Rows the writer encodes between checks of a page's size (Parquet's default
/// is 1,024), so that pages end near [`SESSIONS_PAGE_BYTES`].
const SESSIONS_WRITE_BATCH_ROWS: usize = 64;

/// zstd's fastest level (delta-rs's compaction would write level 4): builds
/// are timed by the writes.
const ZSTD_LEVEL: i32 = 1;

/// The Parquet writer settings of every table write.
pub fn writer_properties() -> WriterProperties {
    let level = ZstdLevel::try_new(ZSTD_LEVEL).expect("1 is a valid zstd level");
    let mut builder = WriterProperties::builder().set_compression(Compression::ZSTD(level));
    for column in RISING_COLUMNS {
        builder = builder
            .set_column_dictionary_enabled(ColumnPath::from(column), false)
            .set_column_encoding(ColumnPath::from(column), Encoding::DELTA_BINARY_PACKED);
    }
    for column in UNIQUE_ID_COLUMNS.into_iter().chain(MEASUREMENT_COLUMNS) {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(column), false);
    }
    for column in OPAQUE_COLUMNS {
        builder = builder
            .set_column_dictionary_enabled(ColumnPath::from(column), false)
            .set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::None);
    }
    builder.build()
}

/// The Parquet writer settings of bronze appends: [`writer_properties`]
/// without statistics for [`BRONZE_UNORDERED_COLUMNS`]. Computing them
/// compares every value, per page and per file; in the clean-path bench that
/// was 0.2 µs of the 1.7-1.9 µs a partition actor spends on an event
/// (docs/performance.md). Compaction keeps them: it runs off the ingest path.
pub fn bronze_writer_properties() -> WriterProperties {
    let mut builder = writer_properties().into_builder();
    for column in BRONZE_UNORDERED_COLUMNS {
        builder = builder
            .set_column_statistics_enabled(ColumnPath::from(column), EnabledStatistics::None);
    }
    builder.build()
}

/// The Parquet writer settings of `view_sessions` (appends, replacements,
/// compaction): [`writer_properties`] with small pages, uncompressed.
///
/// Silver's search for the sessions a chunk recomputes reads fifteen columns
/// of a few rows spread over every file (in the +1% bench run, 4,919 rows of
/// 1.6M, a few dozen per file). With one page per column chunk, every page
/// is decompressed and skipped through for them. With small pages and the
/// offset index, the reader fetches and decodes only the pages that hold a
/// wanted row. The two columns read in full keep large pages.
///
/// Uncompressed: the Parquet crate creates a zstd context for every column
/// chunk it reads or writes, and a run reads or writes a few columns of
/// every file, while the encodings leave zstd little to gain here (random
/// ids, dictionary indexes, packed events). At 10M events the table takes
/// 279 MB against 217 MB with zstd; the +1% run by hand took a median 0.94 s
/// against 1.05 s with LZ4 (itself 0.77 s against 0.83 s with Snappy and
/// 0.94 s with zstd in an earlier round; docs/performance.md).
pub fn sessions_writer_properties() -> WriterProperties {
    let mut builder = writer_properties()
        .into_builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_write_batch_size(SESSIONS_WRITE_BATCH_ROWS)
        .set_data_page_size_limit(SESSIONS_PAGE_BYTES);
    let default_page_bytes = WriterProperties::default().data_page_size_limit();
    for column in SCANNED_SESSION_COLUMNS {
        builder =
            builder.set_column_data_page_size_limit(ColumnPath::from(column), default_page_bytes);
    }
    builder.build()
}

/// The writer settings of the table at `path`.
pub fn writer_properties_for(path: &std::path::Path) -> WriterProperties {
    match path.ends_with(crate::tables::SESSIONS_TABLE) {
        true => sessions_writer_properties(),
        false => writer_properties(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use deltalake::arrow::array::{
        BinaryArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    };
    use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use deltalake::parquet::arrow::ArrowWriter;
    use deltalake::parquet::arrow::arrow_reader::{
        ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
    };
    use deltalake::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};

    use super::*;
    use crate::bronze::bronze_schema;
    use crate::silver::sessions_table;

    /// A renamed column would silently lose its encoding: every column named
    /// here must be one the tables have.
    #[test]
    fn every_named_column_is_a_column_of_bronze_or_view_sessions() {
        let mut known: BTreeSet<String> = bronze_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        known.extend(sessions_table::COLUMNS.iter().map(|c| c.to_string()));
        for column in RISING_COLUMNS
            .iter()
            .chain(&MEASUREMENT_COLUMNS)
            .chain(&UNIQUE_ID_COLUMNS)
            .chain(&OPAQUE_COLUMNS)
            .chain(&BRONZE_UNORDERED_COLUMNS)
        {
            assert!(known.contains(*column), "{column} is in no table");
        }
    }

    fn sample() -> RecordBatch {
        let rows = 10_000;
        let schema = Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("region", DataType::Utf8, false),
            Field::new("kafka_offset", DataType::Int64, false),
            Field::new(
                "event_time",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("position_s", DataType::Float64, true),
        ]));
        let ids: Vec<String> = (0..rows).map(|i| format!("event-{i:08}")).collect();
        let regions: Vec<&str> = (0..rows).map(|i| ["EU", "NA", "APAC"][i % 3]).collect();
        let offsets: Vec<i64> = (0..rows as i64).collect();
        let times: Vec<i64> = (0..rows as i64)
            .map(|i| 1_764_000_000_000_000 + i * 1_700)
            .collect();
        let positions: Vec<Option<f64>> = (0..rows)
            .map(|i| (i % 7 != 0).then_some(i as f64 * 0.37))
            .collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(ids)),
                Arc::new(StringArray::from(regions)),
                Arc::new(Int64Array::from(offsets)),
                Arc::new(TimestampMicrosecondArray::from(times).with_timezone("UTC")),
                Arc::new(Float64Array::from(positions)),
            ],
        )
        .expect("batch")
    }

    /// Rows of `view_sessions`' shape: ids read in full, packed events and
    /// measurements read a few rows at a time.
    fn sessions_sample(rows: usize) -> RecordBatch {
        let ids: Vec<String> = (0..rows).map(|i| format!("session-{i:012}")).collect();
        let users: Vec<String> = (0..rows).map(|i| format!("user-{:06}", i % 997)).collect();
        let packed: Vec<Vec<u8>> = (0..rows)
            .map(|i| (0..48).map(|b| (i * 31 + b * 7) as u8).collect())
            .collect();
        let watched: Vec<f64> = (0..rows).map(|i| i as f64 * 0.731).collect();
        RecordBatch::try_from_iter([
            ("session_id", Arc::new(StringArray::from(ids)) as _),
            ("user_key", Arc::new(StringArray::from(users)) as _),
            (
                sessions_table::PACKED_EVENTS,
                Arc::new(BinaryArray::from_iter_values(packed)) as _,
            ),
            ("watch_s", Arc::new(Float64Array::from(watched)) as _),
        ])
        .expect("batch")
    }

    #[test]
    fn sessions_keep_scanned_columns_in_one_page_and_the_others_in_small_pages() {
        let batch = sessions_sample(10_000);
        let file = written(&batch, sessions_writer_properties());

        let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Required);
        let reader =
            ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).expect("reader");
        let metadata = reader.metadata().clone();
        let pages = |column: usize| {
            metadata.offset_index().expect("offset index")[0][column]
                .page_locations()
                .len()
        };
        assert_eq!(pages(0), 1, "session_id");
        assert_eq!(pages(1), 1, "user_key");
        // 48 bytes a row: a page every 64 rows, the writer's batch.
        assert!(pages(2) >= 10_000 / 64, "packed events: {}", pages(2));
        assert!(pages(3) >= 10_000 * 8 / 2048 - 1, "watch_s: {}", pages(3));
        let chunk = metadata.row_group(0);
        for column in 0..chunk.num_columns() {
            assert_eq!(
                chunk.column(column).compression(),
                Compression::UNCOMPRESSED
            );
        }
        assert_eq!(read_back(reader, &batch), batch);
    }

    #[test]
    fn only_view_sessions_gets_the_small_pages() {
        let root = std::path::Path::new("/lake");
        let sessions = writer_properties_for(&root.join(crate::tables::SESSIONS_TABLE));
        assert_eq!(sessions.write_batch_size(), SESSIONS_WRITE_BATCH_ROWS);
        let bronze = writer_properties_for(&root.join(crate::BRONZE_TABLE));
        assert_eq!(
            bronze.write_batch_size(),
            writer_properties().write_batch_size()
        );
        assert_eq!(
            bronze.data_page_size_limit(),
            writer_properties().data_page_size_limit()
        );
    }

    /// Every row `reader` holds, as one batch of `like`'s schema.
    fn read_back(
        reader: ParquetRecordBatchReaderBuilder<std::fs::File>,
        like: &RecordBatch,
    ) -> RecordBatch {
        let read: Vec<RecordBatch> = reader
            .build()
            .expect("build")
            .collect::<Result<_, _>>()
            .expect("read");
        deltalake::arrow::compute::concat_batches(&like.schema(), &read).expect("concat")
    }

    /// A temporary Parquet file holding `batch`, written with `properties`.
    fn written(batch: &RecordBatch, properties: WriterProperties) -> std::fs::File {
        let file = tempfile::tempfile().expect("temporary file");
        let mut writer = ArrowWriter::try_new(
            file.try_clone().expect("file handle"),
            batch.schema(),
            Some(properties),
        )
        .expect("writer");
        writer.write(batch).expect("write");
        writer.close().expect("close");
        file
    }

    fn encodings(metadata: &ParquetMetaData, column: usize) -> Vec<Encoding> {
        metadata.row_group(0).column(column).encodings().collect()
    }

    #[test]
    fn columns_are_written_with_their_encoding_and_read_back_unchanged() {
        let batch = sample();
        let file = written(&batch, writer_properties());

        let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("reader");
        let metadata = reader.metadata().clone();
        assert_eq!(read_back(reader, &batch), batch);

        let chunk = metadata.row_group(0);
        for column in 0..chunk.num_columns() {
            assert!(
                matches!(chunk.column(column).compression(), Compression::ZSTD(_)),
                "column {column}"
            );
        }
        let event_id = encodings(&metadata, 0);
        assert!(
            !event_id.contains(&Encoding::RLE_DICTIONARY),
            "{event_id:?}"
        );
        assert!(encodings(&metadata, 1).contains(&Encoding::RLE_DICTIONARY));
        assert!(encodings(&metadata, 2).contains(&Encoding::DELTA_BINARY_PACKED));
        assert!(encodings(&metadata, 3).contains(&Encoding::DELTA_BINARY_PACKED));
        let position = encodings(&metadata, 4);
        assert!(
            !position.contains(&Encoding::RLE_DICTIONARY),
            "{position:?}"
        );
    }
}
