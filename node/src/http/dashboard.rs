//! `/dashboard`: the browser dashboard. Its page, script and the vendored
//! chart and map libraries are compiled into the binary, so it needs no
//! internet and no other service. The page reads the JSON below, the live
//! aggregates (`/live/*`) and the admin API (`/admin/*`).
//!
//! - `GET /dashboard/api/gold/{model}[?video_id=V]`: a gold table's rows.
//! - `GET /dashboard/api/live`: accepted events per minute of event time.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use streamreel_lake::LakeError;
use streamreel_lake::gold::gold_rows;
use streamreel_protocol::time::format_rfc3339_micros;

use super::{AppState, GOLD_READS_AT_ONCE, error_response};

/// Path under `/dashboard/assets/`, content type, bytes.
const ASSETS: [(&str, &str, &[u8]); 5] = [
    (
        "dashboard.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/dashboard.js"),
    ),
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/dashboard.css"),
    ),
    (
        "vendor/echarts/echarts.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/vendor/echarts/echarts.min.js"),
    ),
    (
        "vendor/topojson-client/topojson-client.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/vendor/topojson-client/topojson-client.min.js"),
    ),
    (
        "vendor/world-atlas/countries-110m.json",
        "application/json",
        include_bytes!("../../assets/vendor/world-atlas/countries-110m.json"),
    ),
];

const INDEX: &str = include_str!("../../assets/dashboard.html");

/// How many minutes of event time the live view charts.
const LIVE_MINUTES: usize = 30;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(index))
        .route("/dashboard/", get(index))
        .route("/dashboard/assets/{*path}", get(asset))
        .route("/dashboard/api/gold/{model}", get(gold))
        .route("/dashboard/api/live", get(live))
}

async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response()
}

async fn asset(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, ..)| *name == path) {
        Some((name, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, cache_control(name)),
            ],
            *bytes,
        )
            .into_response(),
        None => error_response(StatusCode::NOT_FOUND, format!("no asset {path}")),
    }
}

/// The dashboard's own script and style change with the node, at the same
/// URLs, under a page that is never cached: a cached copy of an older node's
/// script would run against the new page. Vendored libraries are pinned.
fn cache_control(asset: &str) -> &'static str {
    if asset.starts_with("vendor/") {
        "public, max-age=3600"
    } else {
        "no-cache"
    }
}

#[derive(Deserialize)]
struct GoldQuery {
    video_id: Option<String>,
}

async fn gold(
    State(state): State<AppState>,
    Path(model): Path<String>,
    Query(query): Query<GoldQuery>,
) -> Response {
    let lake_dir = state.lake_dir.clone();
    let asked = model.clone();
    // Waiting here, not in the task: a request dropped while it waits costs
    // nothing. A bounded wait: a queue of reads holds its connections.
    let permit = match tokio::time::timeout(
        GOLD_READ_WAIT,
        state.gold_reads.clone().acquire_owned(),
    )
    .await
    {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) => {
            return error_response(StatusCode::SERVICE_UNAVAILABLE, "the node is stopping");
        }
        Err(_) => {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "busy: no read of a gold table ended within {GOLD_READ_WAIT:?} (at most \
                     {GOLD_READS_AT_ONCE} run at once); try again"
                ),
            );
        }
    };
    // The permit goes with the read: an aborted read stops at its next
    // await, and holds its place until then.
    let reading = state.jobs_runtime.spawn(async move {
        let _permit = permit;
        gold_rows(&lake_dir, &asked, query.video_id.as_deref()).await
    });
    // A client that hangs up stops the read rather than leave it running.
    let _stop_if_dropped = AbortOnDrop(reading.abort_handle());
    let read = match reading.await {
        Ok(read) => read,
        Err(e) => return error_response(StatusCode::INTERNAL_SERVER_ERROR, LakeError::Task(e)),
    };
    match read {
        // The rows are JSON already: framed as they are, not parsed again.
        Ok(Some(gold)) => {
            let head = json!({
                "model": model,
                "exists": true,
                "sessions_version": gold.sessions_version,
            })
            .to_string();
            let mut body = Vec::with_capacity(head.len() + gold.json.len() + 9);
            body.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
            body.extend_from_slice(b",\"rows\":");
            body.extend_from_slice(&gold.json);
            body.push(b'}');
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        // Before the first gold run: an empty state, not an error.
        Ok(None) => Json(json!({ "model": model, "exists": false, "rows": [] })).into_response(),
        Err(e @ LakeError::UnknownModel { .. }) => error_response(StatusCode::NOT_FOUND, e),
        Err(e @ LakeError::NotPerVideo { .. }) => error_response(StatusCode::BAD_REQUEST, e),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// How long a dashboard read of a gold table waits for its turn.
const GOLD_READ_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Aborts a task when dropped (a no-op once it has finished).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn live(State(state): State<AppState>) -> Response {
    // The newest minutes with events up to the live clock hold the whole
    // window, which ends at that clock.
    let (accepted_total, accepted_counter, counter_load, per_minute, clock) = {
        let applied = state.member.view.read();
        let live = applied.state.live();
        (
            live.total(),
            live.counted_since_load(),
            live.load(),
            live.newest_minute_totals(LIVE_MINUTES),
            live.newest_minute_us(),
        )
    };
    let per_minute: std::collections::BTreeMap<i64, u64> = per_minute.into_iter().collect();
    let minutes: Vec<_> = clock
        .map(|clock| minutes_ending_at(clock, &per_minute, LIVE_MINUTES))
        .unwrap_or_default()
        .into_iter()
        .map(
            |(minute, events)| json!({ "minute": format_rfc3339_micros(minute), "events": events }),
        )
        .collect();
    Json(json!({
        "accepted_total": accepted_total,
        "accepted_counter": accepted_counter,
        "accepted_counter_load": counter_load,
        "minutes": minutes,
    }))
    .into_response()
}

const MINUTE_US: i64 = 60_000_000;

/// The `count` minutes ending with `newest`, oldest first, a minute without
/// events as 0: quiet minutes show as a dip in the chart, not as a gap that
/// stretches the window back in time.
fn minutes_ending_at(
    newest: i64,
    per_minute: &std::collections::BTreeMap<i64, u64>,
    count: usize,
) -> Vec<(i64, u64)> {
    (0..count as i64)
        .rev()
        .map(|back| {
            let minute = newest - back * MINUTE_US;
            (minute, per_minute.get(&minute).copied().unwrap_or(0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_window_ends_at_the_live_clock_and_fills_quiet_ones() {
        let per_minute = [(0, 5), (10 * MINUTE_US, 7), (12 * MINUTE_US, 2)].into();
        let window = minutes_ending_at(12 * MINUTE_US, &per_minute, 4);
        assert_eq!(
            window,
            vec![
                (9 * MINUTE_US, 0),
                (10 * MINUTE_US, 7),
                (11 * MINUTE_US, 0),
                (12 * MINUTE_US, 2)
            ]
        );
        assert_eq!(
            minutes_ending_at(14 * MINUTE_US, &per_minute, 3),
            vec![
                (12 * MINUTE_US, 2),
                (13 * MINUTE_US, 0),
                (14 * MINUTE_US, 0)
            ],
            "a clock past the newest events ends the window"
        );
    }
}
