//! How every Parquet file StreamReel writes is encoded: bronze appends, both
//! silver tables, gold models and compaction all use [`writer_properties`].
//!
//! Chosen from a profile of the 10M-event full build, where encoding Parquet
//! was most of the run: a tenth of the CPU in Snappy and a third in the
//! dictionary encoder hashing and comparing every value, although half the
//! columns hardly repeat a value (docs/performance.md, Parquet layout).
//! - zstd level 1 for every column: about half the bytes of Snappy here, for
//!   less CPU once the encodings below have shrunk what it compresses.
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

/// Opaque values (a session's packed events): no dictionary, and no
/// statistics, which no reader could use to skip a file.
pub const OPAQUE_COLUMNS: [&str; 1] = [crate::silver::sessions_table::PACKED_EVENTS];

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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use deltalake::arrow::array::{
        Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    };
    use deltalake::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use deltalake::parquet::arrow::ArrowWriter;
    use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use deltalake::parquet::file::metadata::ParquetMetaData;

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

    fn encodings(metadata: &ParquetMetaData, column: usize) -> Vec<Encoding> {
        metadata.row_group(0).column(column).encodings().collect()
    }

    #[test]
    fn columns_are_written_with_their_encoding_and_read_back_unchanged() {
        let batch = sample();
        let file = tempfile::tempfile().expect("temporary file");
        let mut writer = ArrowWriter::try_new(
            file.try_clone().expect("file handle"),
            batch.schema(),
            Some(writer_properties()),
        )
        .expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");

        let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("reader");
        let metadata = reader.metadata().clone();
        let read: Vec<RecordBatch> = reader
            .build()
            .expect("build")
            .collect::<Result<_, _>>()
            .expect("read");
        let read =
            deltalake::arrow::compute::concat_batches(&batch.schema(), &read).expect("concat");
        assert_eq!(read, batch);

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
