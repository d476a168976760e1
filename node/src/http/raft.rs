//! `/raft/*`: the Raft RPCs between members, commands forwarded to the leader,
//! and pings. Bodies are bincode; every route needs the cluster token.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Router, middleware};
use serde::Serialize;
use serde::de::DeserializeOwned;

use streamreel_cluster::network::paths;
use streamreel_cluster::{Command, TypeConfig};
use streamreel_protocol::codec::{decode, encode};

use super::auth::require_cluster;
use super::{AppState, error_response};

/// The largest body a member accepts from another. axum's default (2 MiB) is
/// below openraft's snapshot chunk (3 MiB) and a checkpoint of a large batch
/// (about 20 bytes per event id): a member behind by a snapshot could never
/// catch up. Only holders of the cluster token get this far.
pub const MAX_RAFT_BODY: usize = 256 * 1024 * 1024;

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route(paths::APPEND, post(append))
        .route(paths::VOTE, post(vote))
        .route(paths::SNAPSHOT, post(snapshot))
        .route(paths::WRITE, post(write))
        .route(paths::PING, post(ping))
        .route_layer(DefaultBodyLimit::max(MAX_RAFT_BODY))
        .route_layer(middleware::from_fn_with_state(state, require_cluster))
}

fn bincode<T: Serialize>(value: &T) -> Response {
    match encode(value) {
        Ok(bytes) => bytes.into_response(),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

fn request<T: DeserializeOwned>(body: &Bytes) -> Result<T, streamreel_protocol::CodecError> {
    decode(body)
}

fn bad_request(error: streamreel_protocol::CodecError) -> Response {
    error_response(StatusCode::BAD_REQUEST, error)
}

async fn append(State(state): State<AppState>, body: Bytes) -> Response {
    match request::<openraft::raft::AppendEntriesRequest<TypeConfig>>(&body) {
        Ok(rpc) => bincode(&state.member.raft.append_entries(rpc).await),
        Err(e) => bad_request(e),
    }
}

async fn vote(State(state): State<AppState>, body: Bytes) -> Response {
    match request::<openraft::raft::VoteRequest<u64>>(&body) {
        Ok(rpc) => bincode(&state.member.raft.vote(rpc).await),
        Err(e) => bad_request(e),
    }
}

async fn snapshot(State(state): State<AppState>, body: Bytes) -> Response {
    match request::<openraft::raft::InstallSnapshotRequest<TypeConfig>>(&body) {
        Ok(rpc) => bincode(&state.member.raft.install_snapshot(rpc).await),
        Err(e) => bad_request(e),
    }
}

async fn write(State(state): State<AppState>, body: Bytes) -> Response {
    match request::<Command>(&body) {
        Ok(command) => bincode(&state.member.write_as_leader(command).await),
        Err(e) => bad_request(e),
    }
}

async fn ping(State(state): State<AppState>) -> Response {
    bincode(&state.member.ping_answer().await)
}
