//! The node's one HTTP address: Raft traffic between members (`/raft/*`), the
//! admin API (`/admin/*`), live aggregates (`/live/*`), metrics (`/metrics`).
//!
//! - [`auth`]: bearer tokens, compared in constant time.
//! - [`raft`]: the Raft RPCs, commands forwarded to the leader, pings.
//! - [`admin`]: status, jobs, rebalance, move, membership; changes go to the leader.
//! - [`live`]: live aggregates from this node's replica.
//! - [`metrics`]: `/metrics` for Prometheus.
//! - [`dashboard`]: `/dashboard`, the browser dashboard and the JSON it reads.
//! - [`origin`]: requests a browser page sent on its own are refused.
//! - [`server`]: connections accepted with a deadline for request headers.

pub mod admin;
pub mod auth;
pub mod dashboard;
pub mod live;
pub mod metrics;
pub mod origin;
pub mod raft;
pub mod server;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use ractor::ActorRef;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use streamreel_actors::IngestStats;
use streamreel_actors::coordinator::CoordinatorMsg;
use streamreel_actors::kafka::{PartitionWatermarks, Watermarks};
use streamreel_cluster::ClusterMember;

use crate::error::NodeError;

/// How long a status or metrics answer waits for the broker's watermarks.
const WATERMARK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub member: ClusterMember,
    pub stats: IngestStats,
    /// Set while this node is the leader.
    pub coordinator: Arc<Mutex<Option<ActorRef<CoordinatorMsg>>>>,
    pub admin_token: Option<Arc<str>>,
    pub cluster_token: Option<Arc<str>>,
    /// The input topic's watermarks, for lag.
    pub input_watermarks: Arc<Watermarks>,
    /// The lake, for the dashboard's gold tables.
    pub lake_dir: std::path::PathBuf,
    pub broker_health: crate::broker_health::BrokerHealth,
    /// The lakehouse jobs' runtime: dashboard queries over gold run there,
    /// not on the threads partition actors run on.
    pub jobs_runtime: tokio::runtime::Handle,
    /// Dashboard reads of gold tables running now ([`GOLD_READS_AT_ONCE`]).
    pub gold_reads: Arc<tokio::sync::Semaphore>,
    /// `/live/top-videos` scans running now ([`LIVE_SCANS_AT_ONCE`]).
    pub live_scans: Arc<tokio::sync::Semaphore>,
    /// Whether each job's newest finished run failed, as last seen: the
    /// bounded job history drops a job's finished run once a newer one
    /// starts, so a long run would otherwise leave the job without one.
    pub job_outcomes: Arc<Mutex<crate::metrics::JobOutcomes>>,
}

/// `/live/top-videos` scans at once.
pub const LIVE_SCANS_AT_ONCE: usize = 2;

/// Dashboard reads of gold tables at once. Each reads a whole table on the
/// jobs' threads, so without a bound a flood of them would starve the
/// lakehouse jobs; the dashboard's views ask for a few at a time.
pub const GOLD_READS_AT_ONCE: usize = 2;

impl AppState {
    pub fn coordinator(&self) -> Option<ActorRef<CoordinatorMsg>> {
        self.coordinator.lock().expect("coordinator lock").clone()
    }

    /// The input topic's watermarks of `partitions`, for lag; empty when the
    /// broker is unreachable (asking it would only stall the answer).
    pub async fn input_watermarks(&self, partitions: Vec<i32>) -> Vec<PartitionWatermarks> {
        if self.broker_health.get().reachable == Some(false) {
            return Vec::new();
        }
        let watermarks = self.input_watermarks.clone();
        tokio::task::spawn_blocking(move || watermarks.fetch(&partitions, WATERMARK_TIMEOUT))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    }
}

/// How many records of `partition` lie past `committed`, when `watermarks`
/// (an answer of [`AppState::input_watermarks`]) knows the partition.
pub fn lag_of(watermarks: &[PartitionWatermarks], partition: i32, committed: i64) -> Option<i64> {
    watermark_of(watermarks, partition).map(|w| w.lag_after(committed))
}

/// `partition`'s watermarks in `watermarks`, when the broker gave them.
pub fn watermark_of(
    watermarks: &[PartitionWatermarks],
    partition: i32,
) -> Option<&PartitionWatermarks> {
    watermarks.iter().find(|w| w.partition == partition)
}

/// Every route; `loopback` is whether the node listens on a loopback address.
pub fn router(state: AppState, loopback: bool) -> Router {
    Router::new()
        .merge(raft::routes(state.clone()))
        .merge(admin::routes(state.clone()))
        .merge(live::routes())
        .merge(metrics::routes())
        .merge(dashboard::routes())
        .fallback(no_route)
        .layer(axum::middleware::from_fn_with_state(
            loopback,
            origin::refuse_foreign,
        ))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
}

async fn no_route(method: Method, uri: Uri) -> Response {
    error_response(StatusCode::NOT_FOUND, format!("no route {method} {uri}"))
}

/// The longest plain-text error body kept when it is rewritten as JSON.
const MAX_ERROR_TEXT: usize = 64 * 1024;

/// Every error answer is `{"error": ...}`: axum's own rejections (a path
/// segment or query parameter that does not parse, a wrong method) come as
/// plain text, and are rewritten here with their status and text.
async fn json_errors(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_ERROR_TEXT)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    // The rewritten answer keeps axum's headers but the body's own (a 405's
    // `Allow` says which methods the route takes).
    let mut answer = error_response(status, message);
    parts.headers.remove(header::CONTENT_TYPE);
    parts.headers.remove(header::CONTENT_LENGTH);
    let own: Vec<header::HeaderName> = answer.headers().keys().cloned().collect();
    for (name, value) in &parts.headers {
        if !own.contains(name) {
            answer.headers_mut().append(name, value.clone());
        }
    }
    answer
}

/// Serves every route on `listen` until `shutdown`. Returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    state: AppState,
    shutdown: CancellationToken,
) -> Result<SocketAddr, NodeError> {
    let io_error = |source| NodeError::Io {
        path: format!("http listener {listen}"),
        source,
    };
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(io_error)?;
    let bound = listener.local_addr().map_err(io_error)?;
    tokio::spawn(server::accept_loop(
        listener,
        router(state, bound.ip().is_loopback()),
        shutdown,
        server::HEADER_READ_TIMEOUT,
    ));
    Ok(bound)
}

/// A JSON error answer: `{"error": message}`.
pub fn error_response(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": message.to_string() }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// axum's 405 in plain text becomes `{"error"}`, keeping its `Allow`.
    #[tokio::test]
    async fn a_rewritten_error_keeps_its_headers_but_the_bodys() {
        let plain = Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(header::ALLOW, "GET,HEAD")
            .header(header::CONTENT_TYPE, "text/plain")
            .header(header::CONTENT_LENGTH, "18")
            .body(axum::body::Body::from("Method Not Allowed"))
            .unwrap();
        let answer = json_errors(plain).await;
        assert_eq!(answer.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(answer.headers()[header::ALLOW], "GET,HEAD");
        assert_eq!(answer.headers()[header::CONTENT_TYPE], "application/json");
        assert!(!answer.headers().contains_key(header::CONTENT_LENGTH));
        let body = axum::body::to_bytes(answer.into_body(), 1024)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "Method Not Allowed");
    }
}
