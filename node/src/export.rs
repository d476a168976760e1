//! `streamreel export`: one table of the lake to a CSV or Parquet file, for BI
//! tools. The file appears whole or not at all (written aside, then renamed).

use std::fs::File;
use std::path::{Path, PathBuf};

use deltalake::arrow::csv::WriterBuilder;
use deltalake::arrow::record_batch::RecordBatch;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::parquet::arrow::ArrowWriter;
use futures::StreamExt;

use streamreel_lake::query::{column_as_i64, register_table, run_sql};
use streamreel_lake::silver::sessions_table::PACKED_EVENTS;
use streamreel_lake::tables::{Lake, open_existing};

use crate::error::NodeError;
use crate::progress::Progress;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Csv,
    Parquet,
}

/// Writes table `name` (`bronze`, `silver/NAME`, `gold/NAME`) of the lake at
/// `lake_dir` to `out`. Returns the rows written.
pub async fn export(
    lake_dir: &Path,
    name: &str,
    format: ExportFormat,
    out: &Path,
) -> Result<u64, NodeError> {
    if out.is_dir() {
        return Err(NodeError::Argument {
            name: "--out",
            reason: format!("{} is a directory; give the file to write", out.display()),
        });
    }
    let path = Lake::new(lake_dir).table_by_name(name)?;
    let table = open_existing(&path).await?;
    let ctx = SessionContext::new();
    register_table(&ctx, "t", &table).await?;
    let count = run_sql(&ctx, "SELECT COUNT(*) AS n FROM t").await?;
    let total = match count.first() {
        Some(batch) => column_as_i64(batch, "n")?.first().copied().unwrap_or(0) as u64,
        None => 0,
    };

    let io_error = |path: &Path| {
        let path = path.display().to_string();
        move |source| NodeError::Io { path, source }
    };
    let partial = partial_path(out);
    // Two exports to one file would write into one partial file, and one
    // would rename the other's bytes into place. The lock (on the open file,
    // so its clone holds it) is kept until after the rename; a partial file a
    // killed export left is not locked and is reused.
    let file = lock_partial(&partial, out)?;
    file.set_len(0).map_err(io_error(&partial))?;
    let _held = file.try_clone().map_err(io_error(&partial))?;
    let written = write_table(&ctx, file, format, out, total).await;
    if written.is_err() {
        // Best effort: the error to report is the one that stopped the export.
        let _ = std::fs::remove_file(&partial);
    }
    let rows = written?;
    if let Err(error) = std::fs::rename(&partial, out) {
        let _ = std::fs::remove_file(&partial);
        return Err(io_error(out)(error));
    }
    // The rename is durable once the directory is synced. The export is in
    // place either way, so a directory that cannot be synced is only logged.
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Err(error) = File::open(dir).and_then(|d| d.sync_all()) {
        tracing::warn!(dir = %dir.display(), %error, "export written; syncing its directory failed");
    }
    Ok(rows)
}

/// Opens and locks the partial file of an export to `out`. A file locked
/// just as its export renamed it into place is `out` itself: then the path
/// is opened again.
fn lock_partial(partial: &Path, out: &Path) -> Result<File, NodeError> {
    use std::os::unix::fs::MetadataExt;
    let io = |source| NodeError::Io {
        path: partial.display().to_string(),
        source,
    };
    for _ in 0..3 {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(partial)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(NodeError::Argument {
                    name: "--out",
                    reason: format!(
                        "another export to {} is running (it writes {})",
                        out.display(),
                        partial.display()
                    ),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let locked = file.metadata().map_err(io)?;
        match std::fs::metadata(partial) {
            Ok(now) if (now.dev(), now.ino()) == (locked.dev(), locked.ino()) => return Ok(file),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
    }
    Err(NodeError::Argument {
        name: "--out",
        reason: format!("other exports to {} keep replacing it", out.display()),
    })
}

/// Writes every row of table `t` into `file`; returns the rows written.
async fn write_table(
    ctx: &SessionContext,
    file: File,
    format: ExportFormat,
    out: &Path,
    total: u64,
) -> Result<u64, NodeError> {
    // A session's packed events are silver's own bookkeeping, bytes no BI
    // tool reads (and CSV cannot hold).
    let frame = ctx
        .table("t")
        .await
        .and_then(|frame| frame.drop_columns(&[PACKED_EVENTS]))
        .map_err(streamreel_lake::LakeError::from)?;
    let schema = std::sync::Arc::new(frame.schema().as_arrow().clone());
    let mut stream = frame
        .execute_stream()
        .await
        .map_err(streamreel_lake::LakeError::from)?;
    let mut writer = match format {
        ExportFormat::Csv => Writer::Csv(WriterBuilder::new().with_header(true).build(file)),
        ExportFormat::Parquet => Writer::Parquet(
            ArrowWriter::try_new(file, schema.clone(), None).map_err(export_error(out))?,
        ),
    };
    let mut progress = Progress::new("rows", Some(total));
    let mut rows = 0;
    let mut batches = 0;
    while let Some(batch) = stream.next().await {
        batches += 1;
        let batch = batch.map_err(streamreel_lake::LakeError::from)?;
        match &mut writer {
            Writer::Csv(csv) => csv.write(&batch).map_err(export_error(out))?,
            Writer::Parquet(parquet) => parquet.write(&batch).map_err(export_error(out))?,
        }
        rows += batch.num_rows() as u64;
        progress.advance(batch.num_rows() as u64);
    }
    let file = match writer {
        Writer::Csv(mut csv) => {
            // The CSV writer writes the header with the first batch; a table
            // without files gives none, and its export still needs the header.
            if batches == 0 {
                csv.write(&RecordBatch::new_empty(schema))
                    .map_err(export_error(out))?;
            }
            // Each write flushed, so nothing is left in the writer.
            csv.into_inner()
        }
        Writer::Parquet(parquet) => parquet.into_inner().map_err(export_error(out))?,
    };
    // On disk before the rename makes it the export: after a crash the file
    // at `out` is the whole export or what was there before, never a part.
    file.sync_all().map_err(export_error(out))?;
    progress.finish();
    Ok(rows)
}

enum Writer {
    Csv(deltalake::arrow::csv::Writer<File>),
    Parquet(ArrowWriter<File>),
}

fn export_error<E: std::fmt::Display>(out: &Path) -> impl FnOnce(E) -> NodeError + '_ {
    move |error| NodeError::Export {
        path: out.display().to_string(),
        reason: error.to_string(),
    }
}

/// `out` with `.partial` added to its name, beside it: where the export
/// writes until it is complete.
pub fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use streamreel_lake::BronzeTable;

    use super::*;

    #[tokio::test]
    async fn a_second_export_to_the_same_file_is_refused_while_the_first_runs() {
        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().join("lake");
        BronzeTable::open_or_create(&lake).await.unwrap();
        let out = dir.path().join("bronze.csv");
        let running = File::create(partial_path(&out)).unwrap();
        running.try_lock().unwrap();

        let error = export(&lake, "bronze", ExportFormat::Csv, &out)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("another export to"), "{error}");
        assert!(!out.exists());

        // A partial file no export holds (one was killed) is reused.
        drop(running);
        assert_eq!(
            export(&lake, "bronze", ExportFormat::Csv, &out)
                .await
                .unwrap(),
            0
        );
        assert!(
            std::fs::read_to_string(&out)
                .unwrap()
                .starts_with("event_id")
        );
        assert!(!partial_path(&out).exists());
    }
}
