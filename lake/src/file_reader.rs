//! The reader of a Delta table's Parquet data file that the crate's own
//! reads use (silver's lookups, gold's pair count and session changes).
//!
//! delta-rs's `ParquetObjectReader` fetches the byte ranges of one read one
//! after another, and the local store opens the file again for each range:
//! one open per column read, and one per page where the reader skips pages
//! through the offset index. [`FileReader`] hands all of a read's ranges to
//! the store at once (`ObjectStore::get_ranges`): the local store opens the
//! file once for them, remote stores merge nearby ranges into one request.
//!
//! A file of a table on the local file system is mapped into memory instead
//! ([`FileReader::mapped_from`]): the local store reads each range into a new
//! zeroed buffer, and in the +1% run the kernel's page faults for those
//! buffers, their zeroing and the copy were about a twentieth of its CPU.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use deltalake::DeltaTable;
use deltalake::arrow::datatypes::{DataType, Field, Schema};
use deltalake::logstore::parquet_reader::ParquetObjectReader;
use deltalake::parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use deltalake::parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use deltalake::parquet::errors::{ParquetError, Result};
use deltalake::parquet::file::metadata::ParquetMetaData;
use deltalake::{ObjectStore, Path};
use futures::FutureExt;
use futures::future::BoxFuture;
use url::Url;

/// One data file of `size` bytes at `path` in `store`.
pub struct FileReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    /// Reads the footer and page indexes, and single ranges.
    footer: ParquetObjectReader,
    /// The table's location, when its files are mapped (local tables).
    mapped_from: Option<Arc<Url>>,
    /// The whole file, once mapped.
    mapped: Option<Bytes>,
}

impl FileReader {
    pub fn new(store: Arc<dyn ObjectStore>, path: Path, size: u64) -> Self {
        let footer = ParquetObjectReader::new(store.clone(), path.clone()).with_file_size(size);
        Self {
            store,
            path,
            size,
            footer,
            mapped_from: None,
            mapped: None,
        }
    }

    /// Reads the file's byte ranges from a memory map of it when `table`
    /// (see [`local_table`]) is on the local file system.
    pub fn mapped_from(mut self, table: Option<Arc<Url>>) -> Self {
        self.mapped_from = table;
        self
    }

    /// The whole file mapped, or `None` when it is not local.
    fn mapped(&mut self) -> Result<Option<Bytes>> {
        let Some(table) = &self.mapped_from else {
            return Ok(None);
        };
        if self.mapped.is_none() {
            let bytes = map_file(&file_path(table, &self.path)?, self.size)?;
            self.mapped = Some(bytes);
        }
        Ok(self.mapped.clone())
    }
}

/// The location of `table` when it is on the local file system.
pub fn local_table(table: &DeltaTable) -> Option<Arc<Url>> {
    let url = table.table_url();
    (url.scheme() == "file").then(|| Arc::new(url.clone()))
}

/// Where the local store keeps `path` of the table at `table`: its parts
/// appended to the table's URL, then decoded as a file path.
fn file_path(table: &Url, path: &Path) -> Result<std::path::PathBuf> {
    let mut url = table.clone();
    url.path_segments_mut()
        .map_err(|()| ParquetError::General(format!("{table} is not a directory URL")))?
        .pop_if_empty()
        .extend(path.parts());
    url.to_file_path()
        .map_err(|()| ParquetError::General(format!("{url} is not a local file")))
}

/// The `size` bytes of the data file at `path`, mapped read-only.
fn map_file(path: &std::path::Path, size: u64) -> Result<Bytes> {
    let external = |e: std::io::Error| {
        ParquetError::External(Box::new(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", path.display()),
        )))
    };
    let file = std::fs::File::open(path).map_err(external)?;
    // SAFETY: a mapping is undefined behaviour only if the file changes
    // under it (a file cut short would fault the process). Delta data files
    // are written once under a fresh name and never changed; vacuum unlinks
    // them, which leaves a mapping intact. The size check below refuses a
    // file that differs from the log before anything is read from it.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(external)?;
    if map.len() as u64 != size {
        return Err(ParquetError::General(format!(
            "{} holds {} bytes where the Delta log records {size}",
            path.display(),
            map.len()
        )));
    }
    Ok(Bytes::from_owner(map))
}

/// `range` of `file`, or an error naming the range when the file is shorter.
fn slice(file: &Bytes, range: Range<u64>) -> Result<Bytes> {
    if range.start > range.end || range.end > file.len() as u64 {
        return Err(ParquetError::EOF(format!(
            "range {range:?} beyond a file of {} bytes",
            file.len()
        )));
    }
    Ok(file.slice(range.start as usize..range.end as usize))
}

/// A stream builder over `reader` that decodes `columns` as string views
/// (`Utf8View`) where the file holds them as strings; other columns keep
/// their types.
///
/// For the columns a filter reads in every row (`session_id`, `user_key`):
/// a view points into the page it was read from, where a `Utf8` value is
/// copied out of it (or out of the dictionary, once per row) and its offsets
/// built, and a dictionary's values are validated once, not every row's.
pub async fn builder_with_views(
    mut reader: FileReader,
    options: ArrowReaderOptions,
    columns: &[&str],
) -> Result<ParquetRecordBatchStreamBuilder<FileReader>> {
    let loaded = ArrowReaderMetadata::load_async(&mut reader, options.clone()).await?;
    let schema = loaded.schema();
    let fields: Vec<Arc<Field>> = schema
        .fields()
        .iter()
        .map(|field| {
            let text = matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8);
            match text && columns.contains(&field.name().as_str()) {
                true => Arc::new(field.as_ref().clone().with_data_type(DataType::Utf8View)),
                false => field.clone(),
            }
        })
        .collect();
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let metadata =
        ArrowReaderMetadata::try_new(loaded.metadata().clone(), options.with_schema(schema))?;
    Ok(ParquetRecordBatchStreamBuilder::new_with_metadata(
        reader, metadata,
    ))
}

impl AsyncFileReader for FileReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes>> {
        match self.mapped() {
            Ok(Some(file)) => futures::future::ready(slice(&file, range)).boxed(),
            Ok(None) => self.footer.get_bytes(range),
            Err(e) => futures::future::ready(Err(e)).boxed(),
        }
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, Result<Vec<Bytes>>> {
        async move {
            if let Some(file) = self.mapped()? {
                return ranges.into_iter().map(|r| slice(&file, r)).collect();
            }
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, Result<Arc<ParquetMetaData>>> {
        self.footer.get_metadata(options)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{Int64Array, RecordBatch, StringArray};
    use deltalake::arrow::compute::concat_batches;
    use deltalake::logstore::object_store::local::LocalFileSystem;
    use deltalake::parquet::arrow::ArrowWriter;
    use deltalake::parquet::arrow::arrow_reader::{RowSelection, RowSelector};
    use deltalake::parquet::arrow::async_reader::ParquetRecordBatchStreamBuilder;
    use deltalake::parquet::file::metadata::PageIndexPolicy;
    use futures::TryStreamExt;

    use super::*;
    use crate::parquet_layout::sessions_writer_properties;

    /// `batch` written as `name` under `dir` with `view_sessions`' settings;
    /// a local store of `dir`, and the file's size.
    fn written(
        dir: &std::path::Path,
        name: &str,
        batch: &RecordBatch,
    ) -> (Arc<LocalFileSystem>, u64) {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("in a directory")).expect("directory");
        let file = std::fs::File::create(&path).expect("file");
        let mut writer =
            ArrowWriter::try_new(file, batch.schema(), Some(sessions_writer_properties()))
                .expect("writer");
        writer.write(batch).expect("write");
        writer.close().expect("close");
        let store = Arc::new(LocalFileSystem::new_with_prefix(dir).expect("store"));
        (store, std::fs::metadata(&path).expect("size").len())
    }

    /// A read that skips most pages gets the rows it selected, in order, from
    /// ranges fetched together, or from the file mapped.
    #[tokio::test]
    async fn a_read_skipping_pages_returns_the_selected_rows() {
        for mapped in [false, true] {
            read_selected_rows(mapped).await;
        }
    }

    /// A local file whose size is not the one the log records is refused,
    /// named, instead of being read short.
    #[tokio::test]
    async fn a_mapped_file_of_another_size_than_recorded_is_an_error() {
        let dir = tempfile::tempdir().expect("temporary directory");
        std::fs::write(dir.path().join("part.parquet"), b"PAR1 too short").expect("file");
        let store = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("store"));
        let table = Url::from_directory_path(dir.path()).expect("url");
        let mut reader = FileReader::new(store, Path::from("part.parquet"), 1_000)
            .mapped_from(Some(Arc::new(table)));
        let error = reader
            .get_byte_ranges(vec![0..4, 4..8])
            .await
            .expect_err("size differs")
            .to_string();
        assert!(
            error.contains("part.parquet") && error.contains("records 1000"),
            "{error}"
        );
    }

    async fn read_selected_rows(mapped: bool) {
        let rows = 10_000;
        let ids: Vec<String> = (0..rows).map(|i| format!("session-{i:06}")).collect();
        let batch = RecordBatch::try_from_iter([
            ("session_id", Arc::new(StringArray::from(ids)) as _),
            (
                "watch_s",
                Arc::new(Int64Array::from_iter_values(0..rows)) as _,
            ),
        ])
        .expect("batch");
        let dir = tempfile::tempdir().expect("temporary directory");
        // In a partition directory, as a table's files are.
        let name = "day=2026-12-04/part.parquet";
        let (store, size) = written(dir.path(), name, &batch);
        let table = Url::from_directory_path(dir.path()).expect("url");
        let reader = FileReader::new(store, Path::from(name), size)
            .mapped_from(mapped.then(|| Arc::new(table)));
        let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Required);
        let builder = ParquetRecordBatchStreamBuilder::new_with_options(reader, options)
            .await
            .expect("builder");
        let pages = builder.metadata().offset_index().expect("offset index")[0][1]
            .page_locations()
            .len();
        assert!(pages > 30, "watch_s in small pages: {pages}");
        // Rows 100-109, 5,000-5,002 and the last one.
        let selection = RowSelection::from(vec![
            RowSelector::skip(100),
            RowSelector::select(10),
            RowSelector::skip(4_890),
            RowSelector::select(3),
            RowSelector::skip(4_996),
            RowSelector::select(1),
        ]);
        let read: Vec<RecordBatch> = builder
            .with_row_selection(selection)
            .build()
            .expect("stream")
            .try_collect()
            .await
            .expect("read");
        let read = concat_batches(&batch.schema(), &read).expect("concat");
        let expected = concat_batches(
            &batch.schema(),
            &[
                batch.slice(100, 10),
                batch.slice(5_000, 3),
                batch.slice(9_999, 1),
            ],
        )
        .expect("expected");
        assert_eq!(read, expected, "mapped: {mapped}");
    }

    /// The named text columns come back as views holding the same values,
    /// whether stored plain or through a dictionary; the others as written.
    #[tokio::test]
    async fn named_text_columns_are_read_as_views_of_the_same_values() {
        let rows = 1_000;
        let ids: Vec<String> = (0..rows).map(|i| format!("session-{i:06}")).collect();
        let users: Vec<String> = (0..rows).map(|i| format!("user-{:03}", i % 7)).collect();
        let regions: Vec<&str> = (0..rows).map(|i| ["eu", "us"][i as usize % 2]).collect();
        let batch = RecordBatch::try_from_iter([
            ("session_id", Arc::new(StringArray::from(ids)) as _),
            ("user_key", Arc::new(StringArray::from(users)) as _),
            ("region", Arc::new(StringArray::from(regions)) as _),
            (
                "watch_s",
                Arc::new(Int64Array::from_iter_values(0..rows)) as _,
            ),
        ])
        .expect("batch");
        let dir = tempfile::tempdir().expect("temporary directory");
        // `session_id` plain, `user_key` and `region` through a dictionary.
        let (store, size) = written(dir.path(), "part.parquet", &batch);
        let reader = FileReader::new(store, Path::from("part.parquet"), size);
        let builder = builder_with_views(
            reader,
            ArrowReaderOptions::new(),
            &["session_id", "user_key"],
        )
        .await
        .expect("builder");
        let read: Vec<RecordBatch> = builder
            .build()
            .expect("stream")
            .try_collect()
            .await
            .expect("read");
        let read = concat_batches(&read[0].schema(), &read).expect("concat");
        let types: Vec<DataType> = read
            .schema()
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        assert_eq!(
            types,
            [
                DataType::Utf8View,
                DataType::Utf8View,
                DataType::Utf8,
                DataType::Int64
            ]
        );
        for (at, column) in read.columns().iter().enumerate() {
            let as_written = deltalake::arrow::compute::cast(column, batch.column(at).data_type())
                .expect("cast back");
            assert_eq!(&as_written, batch.column(at), "column {at}");
        }
    }
}
