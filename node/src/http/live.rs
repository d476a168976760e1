//! `/live/*`: live aggregates from this node's replica of the Raft state.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use streamreel_cluster::live::EVENT_TYPES;
use streamreel_protocol::time::format_rfc3339_micros;

use super::{AppState, error_response};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/live/video/{video_id}", get(video))
        .route("/live/top-videos", get(top_videos))
}

async fn video(State(state): State<AppState>, Path(video_id): Path<String>) -> Response {
    let minutes = state.member.view.read().state.live().video(&video_id);
    let minutes: Vec<_> = minutes
        .into_iter()
        .map(|(minute_us, counts)| {
            let mut entry = serde_json::Map::new();
            entry.insert("minute".into(), json!(format_rfc3339_micros(minute_us)));
            for (name, count) in EVENT_TYPES.iter().zip(counts) {
                entry.insert((*name).into(), json!(count));
            }
            serde_json::Value::Object(entry)
        })
        .collect();
    Json(json!({ "video_id": video_id, "minutes": minutes })).into_response()
}

#[derive(Deserialize)]
struct TopQuery {
    minutes: Option<i64>,
    limit: Option<usize>,
}

/// The widest window `/live/top-videos` reads: the live state's longest
/// retention (`live.retention-hours` at most 8784 hours).
const MAX_MINUTES: i64 = 60 * 24 * 366;
const MAX_LIMIT: usize = 1_000;

async fn top_videos(State(state): State<AppState>, Query(query): Query<TopQuery>) -> Response {
    let minutes = query.minutes.unwrap_or(10);
    let limit = query.limit.unwrap_or(10);
    if !(1..=MAX_MINUTES).contains(&minutes) {
        return error_response(
            StatusCode::BAD_REQUEST,
            format!("minutes must be within 1..={MAX_MINUTES}, got {minutes}"),
        );
    }
    if !(1..=MAX_LIMIT).contains(&limit) {
        return error_response(
            StatusCode::BAD_REQUEST,
            format!("limit must be within 1..={MAX_LIMIT}, got {limit}"),
        );
    }
    // A wide window scans every video of every minute under the replica's
    // read lock: off the async threads, and two at a time, so that a flood
    // of them neither stalls requests nor keeps Raft from applying entries.
    let Ok(permit) = state.live_scans.clone().acquire_owned().await else {
        return error_response(StatusCode::SERVICE_UNAVAILABLE, "the node is stopping");
    };
    let view = state.member.view.clone();
    let scan = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let applied = view.read();
        let live = applied.state.live();
        (
            live.top_videos(minutes, limit),
            live.newest_minute_us().map(format_rfc3339_micros),
        )
    });
    let (top, newest) = match scan.await {
        Ok(scanned) => scanned,
        Err(e) => return error_response(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let videos: Vec<_> = top
        .into_iter()
        .map(|(video_id, events)| json!({ "video_id": video_id, "events": events }))
        .collect();
    Json(json!({ "minutes": minutes, "newest_minute": newest, "videos": videos })).into_response()
}
