//! `/admin/*`: cluster status, job runs, and the changes an operator makes
//! (run a job, rebalance, move a partition, add or remove a member). Any node
//! answers; a change reaching a follower is forwarded to the leader.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router, middleware};
use openraft::ChangeMembers;
use openraft::error::{ClientWriteError, RaftError};
use serde::Deserialize;
use serde_json::json;

use streamreel_actors::coordinator::CoordinatorMsg;
use streamreel_actors::coordinator::job::JobKind;
use streamreel_cluster::quorum::change_shortfall;
use streamreel_cluster::{ClusterError, Command, Member, NodeId, Refusal};
use streamreel_protocol::time::now_micros;

use super::auth::require_admin;
use super::{AppState, error_response};

/// Marks a request a follower forwarded, so it is never forwarded twice.
const FORWARDED: &str = "x-streamreel-forwarded";
/// How long `move` waits for the new owner to resume the partition.
const RESUME_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a follower waits for an election to end before it refuses to
/// forward: a few election timeouts.
const LEADER_WAIT: Duration = Duration::from_secs(5);
/// How long `add-node` waits, in all, for the entry making the new member a
/// learner to commit and for the member to take the log (a snapshot and the
/// entries after it); with the change of voters after it, within a forwarded
/// request's 70 s.
const LEARNER_CATCH_UP: Duration = Duration::from_secs(30);
/// How long `run` waits for its run to be committed: past the coordinator's
/// 3 s limit on proposing it.
const RECORD_WAIT: Duration = Duration::from_secs(5);

pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/admin/status", get(status))
        .route("/admin/jobs", get(jobs))
        .route("/admin/jobs/{job}/run", post(run_job))
        .route("/admin/rebalance", post(rebalance))
        .route("/admin/partitions/{p}/move", post(move_partition))
        .route("/admin/nodes", post(add_node))
        .route("/admin/nodes/{id}", delete(remove_node))
        .route_layer(middleware::from_fn_with_state(state, require_admin))
}

async fn status(State(state): State<AppState>) -> Response {
    let member = &state.member;
    let alive = member.alive();
    let can_ingest = member.can_ingest();
    let (nodes, partitions, voters_changing) = {
        let applied = member.view.read();
        let nodes: Vec<_> = applied
            .members()
            .into_iter()
            .map(|(id, m)| {
                json!({
                    "id": id,
                    "addr": m.addr,
                    "alive": alive.contains(&id),
                    "reaches_brokers": member.reaches_brokers(id),
                    "can_ingest": can_ingest.contains(&id),
                    "same_settings": !member.settings_differ(id),
                    "same_lake": !member.lake_differs(id),
                })
            })
            .collect();
        let partitions: Vec<_> = applied
            .state
            .partitions()
            .map(|(p, s)| (p, s.owner, s.epoch, s.checkpoint))
            .collect();
        (nodes, partitions, applied.voters_changing())
    };
    let ids: Vec<i32> = partitions.iter().map(|(p, ..)| *p).collect();
    let broker = state.broker_health.get();
    let watermarks = state.input_watermarks(ids).await;
    let now_ms = now_micros() / 1_000;
    let partitions: Vec<_> = partitions
        .into_iter()
        .map(|(partition, owner, epoch, checkpoint)| {
            let committed = checkpoint.map_or(-1, |c| c.last_offset);
            let lag = super::lag_of(&watermarks, partition, committed);
            let high = super::watermark_of(&watermarks, partition).map(|w| w.high);
            json!({
                "partition": partition,
                "owner": owner,
                "epoch": epoch,
                "committed_offset": committed,
                "lag": lag,
                // Records ever written to the partition: unlike
                // `committed_offset + 1 + lag`, it never falls when
                // retention deletes records not yet read.
                "high_watermark": high,
                "checkpoint_age_ms": checkpoint.map(|c| (now_ms - c.at_ms).max(0)),
                // The epoch of the owner that wrote the checkpoint: equal to
                // `epoch` once the current owner has resumed the partition.
                "checkpoint_epoch": checkpoint.map(|c| c.epoch),
            })
        })
        .collect();
    Json(json!({
        "node": member.id,
        // Removed from the cluster: it runs no partition and can be stopped.
        "removed": member.is_removed(),
        "leader": member.leader(),
        "term": member.term(),
        "nodes": nodes,
        // A change of voters under way: the voter sets it goes from and to.
        "voters_changing": voters_changing.map(|sets| json!({
            "from": sets.first(),
            "to": sets.last(),
        })),
        "partitions": partitions,
        "broker": broker,
        "ingest": local_ingest(&state),
    }))
    .into_response()
}

/// What this node's partition actors did since it started (every partition it ran).
fn local_ingest(state: &AppState) -> Vec<serde_json::Value> {
    use std::sync::atomic::Ordering::Relaxed;
    state
        .stats
        .snapshot()
        .into_iter()
        .map(|(partition, stats)| {
            let counters = stats.counters();
            let checkpoints = stats.checkpoints.load(Relaxed);
            let per_checkpoint = |total: u64| (checkpoints > 0).then(|| total as f64 / checkpoints as f64);
            json!({
                "partition": partition,
                "running": stats.running.load(Relaxed),
                "consumed": stats.consumed.load(Relaxed),
                "accepted": counters.accepted,
                "duplicates": counters.duplicates,
                "rejected": counters.rejected,
                "commits": counters.commits,
                "restarts": stats.restarts.load(Relaxed),
                "checkpoints": checkpoints,
                "checkpoint_ms_avg": per_checkpoint(stats.checkpoint_micros.load(Relaxed)).map(|us| us / 1_000.0),
                "checkpoint_bytes_avg": per_checkpoint(stats.checkpoint_bytes.load(Relaxed)),
                "commit_retries": stats.commit_retries.load(Relaxed),
                "consumer_errors": stats.consumer_errors.load(Relaxed),
                "skipped_offsets": stats.skipped_offsets.load(Relaxed),
                "last_error": stats.last_error.lock().expect("stats lock").clone(),
            })
        })
        .collect()
}

async fn jobs(State(state): State<AppState>) -> Response {
    let runs: Vec<_> = state.member.view.read().state.jobs().cloned().collect();
    Json(json!({ "runs": runs })).into_response()
}

async fn run_job(
    State(state): State<AppState>,
    Path(job): Path<String>,
    headers: HeaderMap,
) -> Response {
    let kind = match JobKind::from_str(&job) {
        Ok(kind) => kind,
        Err(e) => return error_response(StatusCode::NOT_FOUND, e),
    };
    let coordinator = match leader_coordinator(&state).await {
        Ok(coordinator) => coordinator,
        Err(answer) => return answer,
    };
    let Some(coordinator) = coordinator else {
        return forward(
            &state,
            Method::POST,
            &format!("/admin/jobs/{job}/run"),
            None,
            &headers,
        )
        .await;
    };
    match ractor::call!(coordinator, CoordinatorMsg::Trigger, kind) {
        // A run id is the cluster's once its run is committed: a leader that
        // loses leadership first never runs the job, and the next leader may
        // give the id to another run.
        Ok(Ok(run_id)) if run_recorded_within(&state, run_id, kind, RECORD_WAIT).await => (
            StatusCode::ACCEPTED,
            Json(json!({ "job": kind, "run_id": run_id })),
        )
            .into_response(),
        Ok(Ok(run_id)) => error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "run {run_id} of {kind} was not recorded within {RECORD_WAIT:?} (leadership may \
                 have moved): it runs only once recorded; see /admin/jobs, or ask again"
            ),
        ),
        Ok(Err(refused)) => error_response(StatusCode::CONFLICT, refused),
        Err(e) => error_response(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// Whether this node's replica holds run `run_id` of `job`, waiting up to
/// `timeout` for it to be applied.
async fn run_recorded_within(
    state: &AppState,
    run_id: u64,
    job: JobKind,
    timeout: Duration,
) -> bool {
    let deadline = Instant::now() + timeout;
    let mut applies = state.member.view.applies();
    loop {
        let recorded = state
            .member
            .view
            .read()
            .state
            .jobs()
            .any(|run| run.id == run_id && run.job == job.as_str());
        if recorded {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        // An error is the replica gone: the node is stopping.
        if !matches!(
            tokio::time::timeout(left, applies.changed()).await,
            Ok(Ok(()))
        ) {
            return false;
        }
    }
}

async fn rebalance(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let coordinator = match leader_coordinator(&state).await {
        Ok(coordinator) => coordinator,
        Err(answer) => return answer,
    };
    let Some(coordinator) = coordinator else {
        return forward(&state, Method::POST, "/admin/rebalance", None, &headers).await;
    };
    match ractor::call!(coordinator, CoordinatorMsg::Rebalance) {
        Ok(Ok(moves)) => {
            let owners: Vec<_> = state
                .member
                .view
                .read()
                .state
                .partitions()
                .map(|(p, s)| json!({ "partition": p, "owner": s.owner, "epoch": s.epoch }))
                .collect();
            Json(json!({ "moves": moves, "owners": owners })).into_response()
        }
        // The moves before the error stay made: the operator sees them.
        Ok(Err(stopped)) => {
            let status = cluster_error_status(&stopped.error);
            let body = json!({ "error": stopped.error.to_string(), "moves": stopped.made });
            (status, Json(body)).into_response()
        }
        Err(e) => error_response(StatusCode::SERVICE_UNAVAILABLE, e),
    }
}

/// Unknown members are refused: a misspelt one would be ignored silently.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    to: NodeId,
}

async fn move_partition(
    State(state): State<AppState>,
    Path(partition): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // No such partition, as for a number out of range (not a 400).
    let Ok(partition) = partition.parse::<i32>() else {
        return error_response(
            StatusCode::NOT_FOUND,
            format!("unknown partition {partition:?}"),
        );
    };
    let to = match serde_json::from_slice::<MoveBody>(&body) {
        Ok(body) => body.to,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("body must be {{\"to\": NODE_ID}}: {e}"),
            );
        }
    };
    let coordinator = match leader_coordinator(&state).await {
        Ok(coordinator) => coordinator,
        Err(answer) => return answer,
    };
    let Some(coordinator) = coordinator else {
        let path = format!("/admin/partitions/{partition}/move");
        return forward(&state, Method::POST, &path, Some(body), &headers).await;
    };
    // Checked on the leader only: a follower's replica may not have applied
    // the membership change an add-node was just answered for.
    {
        let applied = state.member.view.read();
        if !applied.voters().contains(&to) {
            if applied.members().iter().any(|(id, _)| *id == to) {
                return error_response(
                    StatusCode::CONFLICT,
                    format!(
                        "node {to} is a learner (its add-node did not finish): it owns no \
                         partition. Run add-node {to} again to make it a voter, or remove-node {to}"
                    ),
                );
            }
            return error_response(StatusCode::NOT_FOUND, format!("unknown node {to}"));
        }
        if applied.state.partition(partition).is_none() {
            let known: Vec<i32> = applied.state.partitions().map(|(p, _)| p).collect();
            return error_response(
                StatusCode::NOT_FOUND,
                format!("partition {partition} out of range (partitions: {known:?})"),
            );
        }
    }
    let assigned = match ractor::call!(coordinator, |reply| CoordinatorMsg::Move {
        partition,
        to,
        reply
    }) {
        Ok(Ok(assigned)) => assigned,
        Ok(Err(e)) => return cluster_error(e),
        Err(e) => return error_response(StatusCode::SERVICE_UNAVAILABLE, e),
    };
    // Answer only once the new owner has resumed: its first checkpoint carries
    // the new epoch. Only that owner writes checkpoints of that epoch; a later
    // one means the partition was moved on before it resumed.
    let started = Instant::now();
    let mut applies = state.member.view.applies();
    loop {
        let (checkpoint_epoch, owner_now, epoch_now) = {
            let applied = state.member.view.read();
            let Some(now) = applied.state.partition(partition) else {
                return error_response(
                    StatusCode::NOT_FOUND,
                    format!("partition {partition} is no longer known"),
                );
            };
            (now.checkpoint.map(|c| c.epoch), now.owner, now.epoch)
        };
        if checkpoint_epoch != Some(assigned.epoch) && epoch_now > assigned.epoch {
            return error_response(
                StatusCode::CONFLICT,
                format!(
                    "partition {partition} was given to node {to} at epoch {}, but was moved on \
                     (to node {}, epoch {epoch_now}) before node {to} resumed it: node {to} may \
                     not be alive",
                    assigned.epoch,
                    owner_now.map_or("none".to_string(), |o| o.to_string()),
                ),
            );
        }
        if checkpoint_epoch == Some(assigned.epoch) {
            return Json(json!({
                "partition": partition,
                "owner": assigned.owner,
                "epoch": assigned.epoch,
                "resumed_after_ms": started.elapsed().as_millis() as u64,
            }))
            .into_response();
        }
        let left = RESUME_TIMEOUT.saturating_sub(started.elapsed());
        if left.is_zero() {
            return error_response(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "partition {partition} was given to node {to} at epoch {}, which has not resumed it within {RESUME_TIMEOUT:?}",
                    assigned.epoch
                ),
            );
        }
        let wait = left.min(Duration::from_millis(500));
        if let Ok(Err(_)) = tokio::time::timeout(wait, applies.changed()).await {
            // The state machine is gone: Raft is shutting down.
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "this node is stopping; whether node {to} resumed partition {partition} \
                     shows in /admin/status on another member"
                ),
            );
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddNodeBody {
    id: NodeId,
    addr: String,
}

async fn add_node(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let node = match serde_json::from_slice::<AddNodeBody>(&body) {
        Ok(node) => node,
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("body must be {{\"id\": N, \"addr\": \"IP:PORT\"}}: {e}"),
            );
        }
    };
    if node.id == 0 {
        return error_response(StatusCode::BAD_REQUEST, "id must be at least 1, got 0");
    }
    let Ok(addr) = node.addr.parse::<std::net::SocketAddr>() else {
        return error_response(
            StatusCode::BAD_REQUEST,
            format!("addr must be IP:PORT, got {:?}", node.addr),
        );
    };
    // Every member dials this address, as in the config file.
    if addr.ip().is_unspecified() || addr.port() == 0 {
        return error_response(
            StatusCode::BAD_REQUEST,
            format!(
                "{}: the other members dial this address, so it needs a real IP and port",
                node.addr
            ),
        );
    }
    if !state.member.is_leader() {
        return forward(&state, Method::POST, "/admin/nodes", Some(body), &headers).await;
    }
    let members = state.member.view.read().members();
    if let Some((id, at)) = member_not_dialable_from(addr, &members) {
        return error_response(
            StatusCode::BAD_REQUEST,
            format!(
                "node {id} listens on {at}, which node {} at {} cannot dial (it is this \
                 machine's own address): give node {id} a [cluster] config that lists the \
                 address the others reach it at, or add a node on this machine",
                node.id, node.addr
            ),
        );
    }
    // Raft keeps a member's first address: adding it again elsewhere would
    // answer success and change nothing.
    if let Some(known) = state.member.addr_of(node.id)
        && known.parse::<std::net::SocketAddr>().ok() != Some(addr)
    {
        return error_response(
            StatusCode::CONFLICT,
            format!(
                "node {} is already a member at {known}: remove-node {} first, then add it at {}",
                node.id, node.id, node.addr
            ),
        );
    }
    // A member that is not running is refused at once, rather than after
    // the wait for it to take the log.
    match state.member.ping(&node.addr).await {
        // A process with Raft state of its own (it started a cluster alone,
        // or was a member before) would not take this cluster's log, and
        // adding it would wait for it for ever.
        Ok(answer)
            if answer.node == node.id
                && answer.initialized
                && state.member.addr_of(node.id).is_none() =>
        {
            return error_response(
                StatusCode::CONFLICT,
                format!(
                    "node {} at {} already holds Raft state (it started a cluster of its own, \
                     or was a member before): stop it, empty its data dir, start it with this \
                     cluster's config, then add it",
                    node.id, node.addr
                ),
            );
        }
        Ok(answer) if answer.node == node.id => {}
        Ok(answer) => {
            return error_response(
                StatusCode::CONFLICT,
                format!(
                    "{} answers as node {}, not node {}",
                    node.addr, answer.node, node.id
                ),
            );
        }
        Err(e) => {
            return error_response(
                StatusCode::CONFLICT,
                format!(
                    "node {} does not answer at {} ({e}): start it first, with the cluster's token",
                    node.id, node.addr
                ),
            );
        }
    }
    // It answered just now: it counts as alive.
    let what = format!("adding node {}", node.id);
    if let Some(refusal) = stalling_change(&state, &what, Some(node.id), |voters| {
        voters.insert(node.id);
    }) {
        return refusal;
    }
    let member = Member {
        addr: node.addr.clone(),
    };
    match state
        .member
        .add_learner(node.id, member, LEARNER_CATCH_UP)
        .await
    {
        Ok(()) => {}
        Err(error @ ClusterError::Timeout { .. }) => {
            return error_response(
                StatusCode::GATEWAY_TIMEOUT,
                format!("cannot add node {}: {error}; see the status", node.id),
            );
        }
        Err(error @ ClusterError::NotLeader { .. }) => {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "cannot add node {}: leadership moved while it was proposed ({error}); \
                     nothing was changed: ask again",
                    node.id
                ),
            );
        }
        Err(ClusterError::LearnerBehind { .. }) => {
            return error_response(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "node {id} was added as a learner but has not taken the cluster's log within \
                     {LEARNER_CATCH_UP:?}: it does not vote and owns nothing. Check that it runs \
                     with this cluster's token and can reach and be reached by the members, then \
                     run add-node again to make it a voter, or remove-node {id}",
                    id = node.id
                ),
            );
        }
        Err(e) => {
            return error_response(
                StatusCode::CONFLICT,
                format!("cannot add node {}: {e}", node.id),
            );
        }
    }
    // The learner step can take up to LEARNER_CATCH_UP, long enough for a
    // voter to die since the check above.
    let what = format!(
        "making node {id} a voter (it is now a learner that took the log; add-node again \
         finishes this)",
        id = node.id
    );
    let new = node.id;
    let decide = move |state: &AppState| match stalling_change(state, &what, Some(new), |voters| {
        voters.insert(new);
    }) {
        Some(refusal) => Err(Box::new(refusal)),
        None => Ok(ChangeMembers::AddVoterIds(BTreeSet::from([new]))),
    };
    match change_membership(&state, decide).await {
        Ok(()) => Json(json!({ "added": node.id, "addr": node.addr })).into_response(),
        Err(refusal) => refusal.context(&format!("cannot add node {}", node.id)),
    }
}

/// A change of voters that could not commit with the members alive now:
/// once proposed it cannot be withdrawn, and every later Raft entry (every
/// checkpoint of every partition) would wait for the members to return.
/// `change` turns the voters into the voters after; `answered` is a node
/// that answered just now, counted alive.
fn stalling_change(
    state: &AppState,
    what: &str,
    answered: Option<NodeId>,
    change: impl FnOnce(&mut BTreeSet<NodeId>),
) -> Option<Response> {
    let (before, changing) = state.member.voters_in_log();
    if let Some(sets) = changing {
        return Some(error_response(
            StatusCode::CONFLICT,
            format!(
                "refused: {what}: a change of voters from {:?} to {:?} is under way; the leader \
                 finishes it once a majority of both answers. Retry when GET /admin/status shows \
                 no `voters_changing`",
                sets.first().cloned().unwrap_or_default(),
                sets.last().cloned().unwrap_or_default()
            ),
        ));
    }
    let mut after = before.clone();
    change(&mut after);
    let mut alive = state.member.answering();
    alive.extend(answered);
    let shortfall = change_shortfall(&before, &after, &alive)?;
    let message = if shortfall.voters == after {
        format!(
            "refused: {what} would leave the voters {:?}, of which nodes {:?} have not answered \
             within the failover time, so fewer than the {} a change needs would answer, and the \
             cluster would stop committing (checkpoints, moves) until they return. Start them \
             again, or remove the ones that are gone first",
            shortfall.voters, shortfall.not_alive, shortfall.needed
        )
    } else {
        format!(
            "refused: {what}: of the voters {:?}, nodes {:?} have not answered within the \
             failover time, so fewer than the {} any change needs would answer. Start them again",
            shortfall.voters, shortfall.not_alive, shortfall.needed
        )
    };
    Some(error_response(StatusCode::CONFLICT, message))
}

/// How long a change of members may wait for its commit before the request
/// answers 504; the change goes on.
const MEMBERSHIP_COMMIT: Duration = Duration::from_secs(30);

/// How long a change of members waits for another one under way on the
/// leader before it is refused, so that a request never hangs behind a
/// change that waits for its commit.
const MEMBERSHIP_TURN: Duration = Duration::from_secs(2);

/// Why a change of members did not answer done.
enum ChangeRefused {
    Raft(String),
    /// This node stopped leading before the change committed; whether it
    /// did commit, the new leader decides.
    LeaderMoved,
    Pending,
    /// Another change of members kept the leader busy; nothing was proposed.
    Busy,
    /// The change, checked in its turn, was refused; nothing was proposed.
    Refused(Box<Response>),
}

impl ChangeRefused {
    fn context(self, what: &str) -> Response {
        match self {
            ChangeRefused::Refused(refusal) => *refusal,
            ChangeRefused::Raft(e) => error_response(StatusCode::CONFLICT, format!("{what}: {e}")),
            ChangeRefused::LeaderMoved => error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{what}: leadership moved while the change was proposed; the new leader \
                     finishes a change it finds half made. GET /admin/status shows the members \
                     and any `voters_changing`: retry if the change is not there"
                ),
            ),
            ChangeRefused::Busy => error_response(
                StatusCode::CONFLICT,
                format!(
                    "{what}: another change of members (a node being added as a learner, or a \
                     change of voters) is under way on the leader and did not finish within \
                     {MEMBERSHIP_TURN:?}; nothing was proposed. GET /admin/status shows the \
                     members and any `voters_changing`: ask again once it is done"
                ),
            ),
            ChangeRefused::Pending => error_response(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "{what}: the change is proposed but not committed within {MEMBERSHIP_COMMIT:?}; \
                     it completes once a majority of both the old and the new voters answers \
                     (GET /admin/status shows the members and any `voters_changing`)"
                ),
            ),
        }
    }
}

/// Makes the change `decide` answers in the leader's membership turn (or
/// its refusal): a change that committed while this one waited for its turn
/// changed the voters and members this one is decided and checked against.
async fn change_membership(
    state: &AppState,
    decide: impl FnOnce(&AppState) -> Result<ChangeMembers<NodeId, Member>, Box<Response>>
    + Send
    + 'static,
) -> Result<(), ChangeRefused> {
    // openraft proposes the joint configuration and then the new voters
    // from within this future: a task of its own finishes both steps even
    // when the request stops waiting (or its client goes away).
    let state = state.clone();
    let task = tokio::spawn(async move {
        let Some(turn) = state.member.membership_turn(MEMBERSHIP_TURN).await else {
            return Err(ChangeRefused::Busy);
        };
        let change = decide(&state).map_err(ChangeRefused::Refused)?;
        match turn.change(change).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(ChangeRefused::LeaderMoved)
            }
            Err(e) => Err(ChangeRefused::Raft(e.to_string())),
        }
    });
    match tokio::time::timeout(MEMBERSHIP_COMMIT, task).await {
        Err(_) => Err(ChangeRefused::Pending),
        Ok(Err(panicked)) => Err(ChangeRefused::Raft(panicked.to_string())),
        Ok(Ok(outcome)) => outcome,
    }
}

/// A member the new member at `new` could not dial: one at a loopback or
/// unspecified address (a node started alone listens on 127.0.0.1 by
/// default) while `new` is on another machine's address.
fn member_not_dialable_from(
    new: std::net::SocketAddr,
    members: &[(NodeId, Member)],
) -> Option<(NodeId, String)> {
    if new.ip().is_loopback() {
        return None;
    }
    members.iter().find_map(|(id, member)| {
        let at: std::net::SocketAddr = member.addr.parse().ok()?;
        (at.ip().is_loopback() || at.ip().is_unspecified()).then(|| (*id, member.addr.clone()))
    })
}

async fn remove_node(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Ok(id) = id.parse::<NodeId>() else {
        return error_response(StatusCode::NOT_FOUND, format!("unknown node {id:?}"));
    };
    if !state.member.is_leader() {
        return forward(
            &state,
            Method::DELETE,
            &format!("/admin/nodes/{id}"),
            None,
            &headers,
        )
        .await;
    }
    // Checked on the leader only: a follower's replica may lag behind.
    if !state
        .member
        .view
        .read()
        .members()
        .iter()
        .any(|(m, _)| *m == id)
    {
        return error_response(StatusCode::NOT_FOUND, format!("unknown node {id}"));
    }
    // A learner (a member whose add-node never finished) is not a voter:
    // removing it as one would change nothing. Decided in the turn: an
    // add-node under way may make it a voter meanwhile.
    let decide = move |state: &AppState| {
        if !state.member.voters_in_log().0.contains(&id) {
            return Ok(ChangeMembers::RemoveNodes(BTreeSet::from([id])));
        }
        match stalling_change(state, &format!("removing node {id}"), None, |voters| {
            voters.remove(&id);
        }) {
            Some(refusal) => Err(Box::new(refusal)),
            None => Ok(ChangeMembers::RemoveVoters(BTreeSet::from([id]))),
        }
    };
    if let Err(refusal) = change_membership(&state, decide).await {
        return refusal.context(&format!("cannot remove node {id}"));
    }
    // A leader that removed itself leads no more and hears from no one, so
    // it could not commit the release below. It needs none: the new leader's
    // coordinator gives the partitions of a non-voter to live voters, which
    // also fences this node's checkpoints with a new epoch.
    if id == state.member.id {
        return Json(json!({ "removed": id })).into_response();
    }
    // Its partitions lose their owner; the coordinator gives them to live
    // members. The removal itself is committed by now, so a failure here
    // still answers that it was removed: a retry would find no such node.
    // The coordinator gives the partitions of a non-voter away in any case.
    if let Err(error) = state
        .member
        .propose(Command::ForgetMember { node: id }, Duration::from_secs(5))
        .await
    {
        tracing::warn!(node = id, %error, "node removed; releasing its partitions is left to the coordinator");
    }
    Json(json!({ "removed": id })).into_response()
}

/// `Ok(Some(coordinator))` on the leader, `Ok(None)` when the request should
/// be forwarded, `Err(answer)` when it cannot be served.
async fn leader_coordinator(
    state: &AppState,
) -> Result<Option<ractor::ActorRef<CoordinatorMsg>>, Response> {
    if state.member.is_leader() {
        // Just elected: the coordinator starts within a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(coordinator) = state.coordinator() {
                return Ok(Some(coordinator));
            }
            if !state.member.is_leader() {
                // Deposed meanwhile: the new leader serves it.
                return Ok(None);
            }
            if Instant::now() > deadline {
                return Err(error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "this node is the leader but its coordinator is not running yet; retry",
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(None)
}

/// One client for every forwarded request (its connections are reused). A
/// leader that drops packets is reported within the connect timeout, not the
/// whole request's.
static FORWARDING: std::sync::LazyLock<reqwest::Client> = std::sync::LazyLock::new(|| {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(500))
        .build()
        .expect("a client with a connect timeout")
});

/// Sends the request to the leader and relays its answer. A request that
/// was forwarded already is not sent on: during a change of leader two
/// nodes could otherwise pass it back and forth.
async fn forward(
    state: &AppState,
    method: Method,
    path: &str,
    body: Option<Bytes>,
    headers: &HeaderMap,
) -> Response {
    if headers.contains_key(FORWARDED) {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "not the leader (leadership moved); retry",
        );
    }
    if state.member.is_removed() {
        return error_response(
            StatusCode::CONFLICT,
            format!(
                "node {} was removed from the cluster: send admin requests to a member",
                state.member.id
            ),
        );
    }
    let Some(leader) = state.member.leader_within(LEADER_WAIT).await else {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no leader elected within {LEADER_WAIT:?}; retry shortly"),
        );
    };
    let Some(addr) = state.member.addr_of(leader) else {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "the leader's address is unknown",
        );
    };
    let method = reqwest::Method::from_bytes(method.as_str().as_bytes()).expect("a valid method");
    let mut request = FORWARDING
        .request(method, format!("http://{addr}{path}"))
        .timeout(RESUME_TIMEOUT + Duration::from_secs(10))
        .header(FORWARDED, state.member.id.to_string());
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        request = request.header("authorization", auth);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_vec());
    }
    match request.send().await {
        Ok(answer) => {
            let status =
                StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            // A body cut off mid-way must not pass for the leader's answer.
            match answer.bytes().await {
                Ok(bytes) => (
                    status,
                    [(header::CONTENT_TYPE, "application/json")],
                    bytes.to_vec(),
                )
                    .into_response(),
                Err(e) => error_response(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "the leader (node {leader} at {addr}) answered {status}, but its body could not be read: {e}"
                    ),
                ),
            }
        }
        Err(e) => error_response(
            StatusCode::BAD_GATEWAY,
            format!("cannot reach the leader (node {leader} at {addr}): {e}"),
        ),
    }
}

fn cluster_error(error: ClusterError) -> Response {
    error_response(cluster_error_status(&error), error)
}

fn cluster_error_status(error: &ClusterError) -> StatusCode {
    match error {
        ClusterError::Refused(Refusal::UnknownPartition { .. })
        | ClusterError::Refused(Refusal::NotAMember { .. })
        | ClusterError::UnknownNode { .. } => StatusCode::NOT_FOUND,
        ClusterError::Refused(_) | ClusterError::NotLive { .. } => StatusCode::CONFLICT,
        ClusterError::NoLeader | ClusterError::NotLeader { .. } | ClusterError::Timeout { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(addrs: &[&str]) -> Vec<(NodeId, Member)> {
        addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                let addr = addr.to_string();
                (i as NodeId + 1, Member { addr })
            })
            .collect()
    }

    #[test]
    fn a_new_member_elsewhere_cannot_dial_a_member_on_loopback() {
        let elsewhere = "10.0.0.7:8080".parse().unwrap();
        let local = "127.0.0.1:8082".parse().unwrap();
        let alone = members(&["127.0.0.1:8080"]);
        assert_eq!(
            member_not_dialable_from(elsewhere, &alone),
            Some((1, "127.0.0.1:8080".to_string()))
        );
        assert_eq!(
            member_not_dialable_from(elsewhere, &members(&["10.0.0.5:8080", "0.0.0.0:8080"])),
            Some((2, "0.0.0.0:8080".to_string()))
        );
        assert_eq!(member_not_dialable_from(local, &alone), None);
        assert_eq!(
            member_not_dialable_from(elsewhere, &members(&["10.0.0.5:8080", "[::1]:8080"])),
            Some((2, "[::1]:8080".to_string()))
        );
        assert_eq!(
            member_not_dialable_from(elsewhere, &members(&["10.0.0.5:8080", "10.0.0.6:8080"])),
            None
        );
    }
}
