//! Bronze commit cost as the table grows: StreamReel's appends straight to the
//! Delta log against delta-rs's write path (what bronze used before), with the
//! same small batches on fresh tables, four partitions taking turns as a
//! node's partition actors do. Each line is the mean time of a window of
//! commits, so a cost that grows with the files in the table shows as rising
//! numbers.

use std::time::{Duration, Instant};

use deltalake::ensure_table_uri;
use deltalake::kernel::Transaction;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::protocol::SaveMode;
use streamreel_lake::parquet_layout::writer_properties;
use streamreel_lake::{BronzeTable, RecordBatch, rows_to_batch};
use streamreel_protocol::{BronzeRow, PartitionCheckpoint};

const PARTITIONS: i32 = 4;
const ROWS_PER_COMMIT: i64 = 250;
const WINDOW: usize = 100;

pub async fn bronze_commits(commits: usize, baseline_commits: usize) -> anyhow::Result<()> {
    println!(
        "== bronze commits as the table grows ({ROWS_PER_COMMIT} rows each, {PARTITIONS} partitions \
         taking turns, mean per window of {WINDOW} commits) =="
    );
    let ours = tempfile::tempdir()?;
    let mut bronze = BronzeTable::open_or_create(ours.path()).await?;
    let mut ours_windows = Windows::default();
    for n in 0..commits {
        let (partition, offset, batch) = commit_input(n);
        let started = Instant::now();
        bronze.append(batch, partition, offset).await?;
        ours_windows.add(started.elapsed());
    }

    let theirs = tempfile::tempdir()?;
    let path = BronzeTable::open_or_create(theirs.path())
        .await?
        .path()
        .to_path_buf();
    let mut table = deltalake::open_table(ensure_table_uri(path.to_string_lossy())?).await?;
    let mut theirs_windows = Windows::default();
    for n in 0..baseline_commits {
        let (partition, offset, batch) = commit_input(n);
        let txn = Transaction::new(PartitionCheckpoint::bronze_app_id(partition), offset);
        let started = Instant::now();
        table = table
            .write(vec![batch])
            .with_writer_properties(writer_properties())
            .with_save_mode(SaveMode::Append)
            .with_commit_properties(
                CommitProperties::default().with_application_transactions(vec![txn]),
            )
            .await?;
        theirs_windows.add(started.elapsed());
    }
    let (ours_windows, theirs_windows) = (ours_windows.means, theirs_windows.means);

    println!("commits before   streamreel append   delta-rs write   delta-rs / streamreel");
    for (i, ours) in ours_windows.iter().enumerate() {
        let theirs = theirs_windows.get(i);
        println!(
            "{:>14}   {:>14.1} ms   {:>11}   {:>21}",
            i * WINDOW,
            ms(*ours),
            theirs.map_or("-".to_string(), |t| format!("{:.1} ms", ms(*t))),
            theirs.map_or("-".to_string(), |t| format!("{:.1}", ms(*t) / ms(*ours))),
        );
    }
    Ok(())
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

/// The mean commit time of each window of commits.
#[derive(Default)]
struct Windows {
    sum: Duration,
    count: usize,
    means: Vec<Duration>,
}

impl Windows {
    fn add(&mut self, commit: Duration) {
        self.sum += commit;
        self.count += 1;
        if self.count == WINDOW {
            self.means.push(self.sum / WINDOW as u32);
            (self.sum, self.count) = (Duration::ZERO, 0);
        }
    }
}

/// The `n`th commit's partition, last offset and rows.
fn commit_input(n: usize) -> (i32, i64, RecordBatch) {
    let partition = (n as i32) % PARTITIONS;
    let first = (n as i64 / PARTITIONS as i64) * ROWS_PER_COMMIT;
    let rows: Vec<BronzeRow> = (first..first + ROWS_PER_COMMIT)
        .map(|offset| BronzeRow {
            event_id: format!("e-{partition}-{offset}"),
            session_id: format!("s-{}", offset / 8),
            user_key: "0123456789abcdef0123456789abcdef".into(),
            video_id: format!("vid-{:05}", offset % 500),
            event_type: "play".into(),
            position_s: (offset % 600) as f64,
            seek_to_s: None,
            event_time_us: 1_795_503_600_000_000 + offset * 1_000_000,
            region: "eu-west".into(),
            device: None,
            kafka_partition: partition,
            kafka_offset: offset,
            ingested_at_us: 1_795_503_600_000_000 + offset * 1_000_000,
        })
        .collect();
    let batch = rows_to_batch(&rows).expect("rows of the bronze schema");
    (partition, first + ROWS_PER_COMMIT - 1, batch)
}
