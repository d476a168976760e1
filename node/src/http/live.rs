//! `/live/*`: live aggregates from this node's replica of the Raft state.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use streamreel_cluster::live::EVENT_TYPES;
use streamreel_protocol::time::format_rfc3339_micros;

use super::AppState;

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

async fn top_videos(State(state): State<AppState>, Query(query): Query<TopQuery>) -> Response {
    let minutes = query.minutes.unwrap_or(10).clamp(1, 60 * 24 * 366);
    let limit = query.limit.unwrap_or(10).clamp(1, 1_000);
    let applied = state.member.view.read();
    let live = applied.state.live();
    let videos: Vec<_> = live
        .top_videos(minutes, limit)
        .into_iter()
        .map(|(video_id, events)| json!({ "video_id": video_id, "events": events }))
        .collect();
    let newest = live.newest_minute_us().map(format_rfc3339_micros);
    Json(json!({ "minutes": minutes, "newest_minute": newest, "videos": videos })).into_response()
}
