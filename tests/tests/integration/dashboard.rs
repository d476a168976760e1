//! The dashboard in a real browser: headless Chromium (driven by
//! `tests/browser/dashboard.mjs`) loads a running node's `/dashboard` before
//! and after the gold run, and each view must show the values read here from
//! the gold tables, bronze and the node's answers, with no request leaving
//! 127.0.0.1. Screenshots land in `<target>/tmp/dashboard-screenshots/`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use deltalake::arrow::json::ArrayWriter;
use deltalake::datafusion::prelude::SessionContext;
use serde_json::{Value, json};

use streamreel_lake::query::{register_path, run_sql};
use streamreel_lake::tables::Lake;
use streamreel_tests::node_process::{NodeProcess, node_config};
use streamreel_tests::repo_root;

use crate::support::{
    admin_url, broker_with_events, run_job_to_success, status, wait_until_ingested,
};

/// The rows `sql` finds in the Delta table at `path` (as `t`), as JSON objects.
async fn rows(path: &Path, sql: &str) -> anyhow::Result<Vec<Value>> {
    let ctx = SessionContext::new();
    register_path(&ctx, "t", path).await?;
    let batches = run_sql(&ctx, sql).await?;
    let mut writer = ArrayWriter::new(Vec::new());
    for batch in &batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    let bytes = writer.into_inner();
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    Ok(serde_json::from_slice(&bytes)?)
}

fn run_browser(
    url: &str,
    expected: &Path,
    screenshots: &Path,
    mode: &[&str],
) -> anyhow::Result<()> {
    let script = repo_root().join("tests/browser/dashboard.mjs");
    let output = Command::new("node")
        .arg(&script)
        .arg(url)
        .arg(expected)
        .arg(screenshots)
        .args(mode)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run node (scripts/install-deps installs it): {e}"))?;
    anyhow::ensure!(
        output.status.success(),
        "the dashboard check failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_gold_tables_and_live_aggregates() -> anyhow::Result<()> {
    let (broker, _) = broker_with_events(2, 6_000, 17).await?;
    let data = tempfile::tempdir()?;
    // Gold runs only when the test asks, so the first look sees no gold yet.
    let config = format!(
        "{}[jobs]\ngold-interval-s = 86400\n",
        node_config(2_000, 300)
    );
    let node = NodeProcess::start(&broker.brokers(), data.path(), &config, &[])?;
    let url = admin_url(&node).await?;
    wait_until_ingested(&broker, data.path(), Duration::from_secs(120))
        .await
        .map_err(|e| e.context(node.log()))?;
    let screenshots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    let expected_path = data.path().join("expected.json");

    run_browser(&url, &expected_path, &screenshots, &["empty"])?;

    let enrich = run_job_to_success(&url, "enrich").await?;
    let gold = run_job_to_success(&url, "gold").await?;
    let lake = Lake::new(data.path().join("lake"));
    let top_videos = rows(
        &lake.gold("top_videos"),
        "SELECT rank, video_id, title, creator, genre, sessions, unique_viewers, watch_hours, \
         completion_rate FROM t WHERE rank <= 20 ORDER BY rank",
    )
    .await?;
    let top_video = top_videos
        .first()
        .and_then(|v| v["video_id"].as_str())
        .expect("gold has a top video")
        .to_string();
    let newest_day = rows(
        &lake.gold("regional_viewership"),
        "SELECT CAST(MAX(day) AS VARCHAR) AS day FROM t",
    )
    .await?[0]["day"]
        .clone();
    let bronze = lake.bronze();
    let status = status(&url)?;
    let expected = json!({
        "top_videos": top_videos,
        "top_creators": rows(&lake.gold("top_creators"),
            "SELECT rank, creator, videos, sessions, watch_hours FROM t WHERE rank <= 20").await?,
        "retention": {
            "video_id": top_video,
            "rows": rows(&lake.gold("viewer_retention"), &format!(
                "SELECT bucket_pct, sessions, viewers_reached, retention FROM t WHERE video_id = '{top_video}'")).await?,
        },
        "daily": rows(&lake.gold("daily_engagement"),
            "SELECT CAST(day AS VARCHAR) AS day, sessions, unique_viewers, watch_hours, avg_pct_watched, \
             completion_rate FROM t").await?,
        "dropoff": rows(&lake.gold("dropoff_by_genre"),
            "SELECT genre, bucket_pct, sessions, share FROM t").await?,
        "regions": {
            "day": newest_day,
            "rows": rows(&lake.gold("regional_viewership"), &format!(
                "SELECT region, sessions, unique_viewers, watch_hours FROM t \
                 WHERE CAST(day AS VARCHAR) = '{}'", newest_day.as_str().unwrap_or_default())).await?,
        },
        // The live aggregates count exactly bronze (the events are within the
        // live retention), and their top videos are bronze's over the newest
        // ten minutes of event time.
        "accepted_total": rows(&bronze, "SELECT COUNT(*) AS n FROM t").await?[0]["n"],
        "live_top": rows(&bronze,
            "SELECT video_id, COUNT(*) AS events FROM t \
             WHERE date_trunc('minute', event_time) > \
               (SELECT date_trunc('minute', MAX(event_time)) FROM t) - INTERVAL '10 minutes' \
             GROUP BY video_id ORDER BY events DESC, video_id LIMIT 10").await?,
        "leader": status["leader"],
        "members": status["nodes"],
        "partitions": status["partitions"].as_array().into_iter().flatten()
            .map(|p| json!({ "partition": p["partition"], "owner": p["owner"], "epoch": p["epoch"],
                             "committed_offset": p["committed_offset"],
                             "resumed": p["checkpoint_epoch"] == p["epoch"] }))
            .collect::<Vec<_>>(),
        "job_run_ids": [enrich, gold],
    });
    std::fs::write(&expected_path, serde_json::to_vec_pretty(&expected)?)?;

    run_browser(&url, &expected_path, &screenshots, &[]).map_err(|e| e.context(node.log()))?;
    for view in ["retention", "dropoff", "regions", "top", "live", "cluster"] {
        let shot = screenshots.join(format!("{view}.png"));
        assert!(
            std::fs::metadata(&shot).is_ok_and(|m| m.len() > 10_000),
            "screenshot {}",
            shot.display()
        );
    }
    println!("dashboard screenshots: {}", screenshots.display());
    Ok(())
}
