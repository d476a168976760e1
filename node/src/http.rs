//! The node's HTTP admin API.
//!
//! - `GET  /admin/status`          partitions: committed offsets and counters
//! - `GET  /admin/jobs`            lakehouse job runs, newest first
//! - `POST /admin/jobs/{job}/run`  start a job now (409 while it runs)
//!
//! With an admin token configured, every request needs `Authorization: Bearer <token>`.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ractor::ActorRef;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use streamreel_actors::IngestStats;
use streamreel_actors::coordinator::CoordinatorMsg;
use streamreel_actors::coordinator::job::JobKind;

use crate::error::NodeError;

#[derive(Clone)]
pub struct AdminState {
    pub node_id: u64,
    pub stats: IngestStats,
    pub coordinator: ActorRef<CoordinatorMsg>,
    pub token: Option<Arc<str>>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/admin/status", get(status))
        .route("/admin/jobs", get(jobs))
        .route("/admin/jobs/{job}/run", post(run_job))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Serves the admin API on `listen` until `shutdown`. Returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    state: AdminState,
    shutdown: CancellationToken,
) -> Result<SocketAddr, NodeError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| NodeError::Io {
            path: format!("http listener {listen}"),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| NodeError::Io {
        path: format!("http listener {listen}"),
        source,
    })?;
    tokio::spawn(async move {
        let server = axum::serve(listener, router(state))
            .with_graceful_shutdown(async move { shutdown.cancelled().await });
        if let Err(e) = server.await {
            tracing::error!(error = %e, "admin http server failed");
        }
    });
    Ok(bound)
}

async fn require_token(State(state): State<AdminState>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_ref()) {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "missing or wrong admin token"})),
            )
                .into_response();
        }
    }
    next.run(request).await
}

async fn status(State(state): State<AdminState>) -> Json<serde_json::Value> {
    let partitions: Vec<_> = state
        .stats
        .snapshot()
        .into_iter()
        .map(|(partition, stats)| {
            let counters = stats.counters();
            json!({
                "partition": partition,
                "committed_offset": stats.committed_offset.load(Ordering::Relaxed),
                "accepted": counters.accepted,
                "duplicates": counters.duplicates,
                "rejected": counters.rejected,
                "commits": counters.commits,
                "restarts": stats.restarts.load(Ordering::Relaxed),
            })
        })
        .collect();
    Json(json!({ "node_id": state.node_id, "partitions": partitions }))
}

async fn jobs(State(state): State<AdminState>) -> Response {
    match ractor::call!(state.coordinator, CoordinatorMsg::Runs) {
        Ok(runs) => Json(json!({ "runs": runs })).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn run_job(State(state): State<AdminState>, Path(job): Path<String>) -> Response {
    let job = match JobKind::from_str(&job) {
        Ok(job) => job,
        Err(e) => return (StatusCode::NOT_FOUND, Json(json!({"error": e}))).into_response(),
    };
    match ractor::call!(state.coordinator, CoordinatorMsg::Trigger, job) {
        Ok(Ok(run_id)) => (
            StatusCode::ACCEPTED,
            Json(json!({"job": job, "run_id": run_id})),
        )
            .into_response(),
        Ok(Err(refused)) => (StatusCode::CONFLICT, Json(json!({"error": refused}))).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}
