//! `/metrics`: this node's figures for Prometheus, gathered at each scrape.

use std::sync::atomic::Ordering::Relaxed;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use streamreel_cluster::leader_in;
use streamreel_protocol::time::now_micros;

use super::AppState;
use crate::metrics::{
    CONTENT_TYPE, MetricsSnapshot, PartitionFigures, RaftFigures, job_figures, render,
};

pub fn routes() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> Response {
    let snapshot = snapshot(&state).await;
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&snapshot)).into_response()
}

async fn snapshot(state: &AppState) -> MetricsSnapshot {
    let member = &state.member;
    let now_ms = now_micros() / 1_000;
    // A removed member's replica is no longer replicated to and still names
    // it as owner; it runs nothing, so it exports no partition series. Nor
    // does a member without a current leader: cut off from the others, its
    // replica may still name it owner of partitions given away since, whose
    // lag would only grow.
    let stale = member.is_removed() || !member.has_current_leader();
    let (owned, jobs, last_run_failed, live_entries) = {
        let applied = member.view.read();
        let owned: Vec<_> = applied
            .state
            .partitions()
            .filter(|(_, p)| !stale && p.owner == Some(member.id))
            .map(|(partition, p)| (partition, p.checkpoint))
            .collect();
        let last_run_failed = state.job_outcomes.lock().expect("job outcomes").update(
            applied
                .state
                .jobs()
                .map(|run| (run.job.as_str(), run.status.as_str())),
        );
        let jobs = job_figures(applied.state.jobs().map(|run| {
            let duration = run
                .ended_at_us
                .map(|end| (end - run.started_at_us).max(0) as f64 / 1e6);
            (run.job.as_str(), run.status.as_str(), duration)
        }));
        let live_entries = applied.state.live().entries();
        (owned, jobs, last_run_failed, live_entries)
    };
    let watermarks = state
        .input_watermarks(owned.iter().map(|(p, _)| *p).collect())
        .await;
    let partitions = owned
        .into_iter()
        .map(|(partition, checkpoint)| {
            // Not `partition()`, which would list an actor that never ran
            // here in `/admin/status`'s `ingest`.
            let stats = state.stats.get(partition).unwrap_or_default();
            // The replicated checkpoint is what bronze holds when this node's
            // actor has not committed yet (it is resuming, or stopped by
            // `on-missing-offsets = "fail"`, or ran here in an earlier
            // ownership); the actor's own figure is ahead of it between a
            // bronze commit and its checkpoint.
            let committed_offset = checkpoint
                .map_or(-1, |c| c.last_offset)
                .max(stats.committed_offset.load(Relaxed));
            PartitionFigures {
                partition,
                consumed: stats.consumed.load(Relaxed),
                accepted: stats.accepted.load(Relaxed),
                duplicates: stats.duplicates.load(Relaxed),
                rejected_by_reason: stats
                    .rejected_by_kind
                    .lock()
                    .expect("stats lock")
                    .iter()
                    .map(|(kind, n)| (kind.to_string(), *n))
                    .collect(),
                committed_offset,
                lag: super::lag_of(&watermarks, partition, committed_offset),
                checkpoint_age_s: checkpoint.map(|c| (now_ms - c.at_ms).max(0) as f64 / 1e3),
                restarts: stats.restarts.load(Relaxed),
                commit_retries: stats.commit_retries.load(Relaxed),
                consumer_errors: stats.consumer_errors.load(Relaxed),
                skipped_offsets: stats.skipped_offsets.load(Relaxed),
                commit_seconds: stats.commit_seconds.clone(),
            }
        })
        .collect();
    let raft = {
        let metrics = member.raft.metrics().borrow().clone();
        RaftFigures {
            term: metrics.current_term,
            leader: leader_in(&metrics, member.id),
            is_leader: leader_in(&metrics, member.id) == Some(member.id),
            last_log_index: metrics.last_log_index.unwrap_or(0),
            last_applied_index: metrics.last_applied.map_or(0, |id| id.index),
        }
    };
    MetricsSnapshot {
        raft,
        broker_reachable: state.broker_health.get().reachable,
        partitions,
        jobs,
        last_run_failed,
        live_entries,
    }
}
