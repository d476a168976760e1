//! Reads the bronze table back, as another Delta reader would.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use deltalake::datafusion::prelude::SessionContext;
use streamreel_lake::BronzeTable;
use streamreel_lake::query::{column_as_i64, column_as_strings, register_path, run_sql};
use streamreel_node::simulate::{MessageKind, SimulatedMessage};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BronzeRowRef {
    pub event_id: String,
    pub user_key: String,
    pub session_id: String,
    pub partition: i32,
    pub offset: i64,
}

/// Every bronze row (a few columns), or nothing if the table does not exist yet.
pub async fn bronze_rows(data_dir: &Path) -> anyhow::Result<Vec<BronzeRowRef>> {
    let path = BronzeTable::path_in(&data_dir.join("lake"));
    if !path.join("_delta_log").exists() {
        return Ok(Vec::new());
    }
    let ctx = SessionContext::new();
    register_path(&ctx, "bronze", &path).await?;
    let batches = run_sql(
        &ctx,
        "SELECT event_id, user_key, session_id, kafka_partition, kafka_offset FROM bronze",
    )
    .await?;
    let mut rows = Vec::new();
    for batch in &batches {
        let ids = column_as_strings(batch, "event_id")?;
        let keys = column_as_strings(batch, "user_key")?;
        let sessions = column_as_strings(batch, "session_id")?;
        let partitions = column_as_i64(batch, "kafka_partition")?;
        let offsets = column_as_i64(batch, "kafka_offset")?;
        for i in 0..batch.num_rows() {
            rows.push(BronzeRowRef {
                event_id: ids[i].clone(),
                user_key: keys[i].clone(),
                session_id: sessions[i].clone(),
                partition: partitions[i] as i32,
                offset: offsets[i],
            });
        }
    }
    Ok(rows)
}

/// The committed offset of each partition in `partitions` (absent if none).
pub async fn committed_offsets(
    data_dir: &Path,
    partitions: &[i32],
) -> anyhow::Result<HashMap<i32, i64>> {
    let lake = data_dir.join("lake");
    if !BronzeTable::path_in(&lake).join("_delta_log").exists() {
        return Ok(HashMap::new());
    }
    let mut bronze = BronzeTable::open_or_create(&lake).await?;
    let mut offsets = HashMap::new();
    for partition in partitions {
        if let Some(offset) = bronze.committed_offset(*partition).await? {
            offsets.insert(*partition, offset);
        }
    }
    Ok(offsets)
}

/// True when every partition has committed up to its high watermark.
pub async fn caught_up(data_dir: &Path, high: &HashMap<i32, i64>) -> anyhow::Result<bool> {
    let partitions: Vec<i32> = high.keys().copied().collect();
    let committed = committed_offsets(data_dir, &partitions).await?;
    Ok(high
        .iter()
        .all(|(p, high)| *high == 0 || committed.get(p).is_some_and(|c| c + 1 >= *high)))
}

/// How often [`time_to_catch_up`] looks at bronze: rarely, as reading the
/// Delta log costs CPU; looking every 50 ms took a fifth of a core from the
/// node being timed.
const CATCH_UP_POLL: Duration = Duration::from_millis(500);

/// Waits until bronze under `data_dir` holds every offset below `high`, and
/// returns the time from `started_at` to the commit that completed it (so the
/// rare polling costs no precision). `still_running` is asked between looks and
/// ends the wait with its error; so does passing `limit`.
pub async fn time_to_catch_up(
    data_dir: &Path,
    high: &HashMap<i32, i64>,
    started_at: SystemTime,
    limit: Duration,
    mut still_running: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<Duration> {
    let deadline = Instant::now() + limit;
    while !caught_up(data_dir, high).await? {
        still_running()?;
        anyhow::ensure!(
            Instant::now() < deadline,
            "bronze did not catch up within {limit:?}"
        );
        tokio::time::sleep(CATCH_UP_POLL).await;
    }
    Ok(last_commit_at(data_dir)?.duration_since(started_at)?)
}

/// When the newest bronze commit was written (its log file's modification time).
fn last_commit_at(data_dir: &Path) -> anyhow::Result<SystemTime> {
    let log = BronzeTable::path_in(&data_dir.join("lake")).join("_delta_log");
    let mut newest: Option<(String, SystemTime)> = None;
    for entry in std::fs::read_dir(&log)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Commits are `<version, 20 digits>.json`: the largest name is the newest.
        if name.len() == 25
            && name.ends_with(".json")
            && newest.as_ref().is_none_or(|(n, _)| name > *n)
        {
            let modified = entry.metadata()?.modified()?;
            newest = Some((name, modified));
        }
    }
    newest
        .map(|(_, modified)| modified)
        .ok_or_else(|| anyhow::anyhow!("no commit in {}", log.display()))
}

/// Bronze holds exactly the valid events sent, each once.
pub async fn assert_bronze_exact(data_dir: &Path, sent: &[SimulatedMessage]) -> anyhow::Result<()> {
    let rows = bronze_rows(data_dir).await?;
    let expected: HashSet<&str> = sent
        .iter()
        .filter(|m| m.kind == MessageKind::Valid)
        .filter_map(|m| m.event_id.as_deref())
        .collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for row in &rows {
        *seen.entry(row.event_id.as_str()).or_default() += 1;
    }
    let doubled: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    anyhow::ensure!(
        doubled.is_empty(),
        "event ids written more than once: {doubled:?}"
    );
    let missing: Vec<_> = expected
        .iter()
        .filter(|id| !seen.contains_key(**id))
        .take(5)
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "valid events missing from bronze: {missing:?} ..."
    );
    let unexpected: Vec<_> = seen
        .keys()
        .filter(|id| !expected.contains(**id))
        .take(5)
        .collect();
    anyhow::ensure!(
        unexpected.is_empty(),
        "bronze holds ids never sent as valid: {unexpected:?}"
    );
    assert_eq!(rows.len(), expected.len());
    Ok(())
}
