//! One member of the cluster: its Raft, its replica of the state, and how it
//! proposes commands (locally when leader, forwarded to the leader otherwise).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{Config, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::error::ClusterError;
use crate::failure::FailureDetector;
use crate::log_store::LogStore;
use crate::network::{HttpNetwork, PeerClient, paths};
use crate::removal::{MembershipSeen, removed_at};
use crate::sm_store::{ClusterView, StateMachineStore, voters_changing_in};
use crate::state::StateSettings;
use crate::types::{Command, CommandResult, Member, NodeId, Raft};

/// How long a member waits for a peer's ping answer. A probe round waits for
/// its slowest answer, so one member that does not answer makes every round
/// last this long: `cluster.failover-after-ms` must leave room for it.
pub const PING_TIMEOUT: Duration = Duration::from_millis(800);

/// Raft timings from the `[cluster]` config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTimings {
    pub heartbeat_ms: u64,
    pub election_timeout_ms: u64,
}

/// What `/raft/ping` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingAnswer {
    pub node: NodeId,
    pub initialized: bool,
    /// Whether the member's latest check reached the Kafka brokers (true
    /// before its first check).
    pub reaches_brokers: bool,
    /// The settings its replica applies commands with.
    pub settings: StateSettings,
    /// The lake it writes: its bronze table's Delta id.
    pub lake: String,
    /// The committed membership it applied: a member left out of a later one
    /// than its own was removed.
    pub membership: MembershipSeen,
}

/// The answer of `/raft/write` on the leader.
pub type WriteAnswer = Result<CommandResult, RaftError<NodeId, ClientWriteError<NodeId, Member>>>;

/// The leader's turn to change the members, held until the change is made.
pub struct MembershipTurn<'a> {
    raft: &'a Raft,
    _turn: tokio::sync::MutexGuard<'a, ()>,
}

impl MembershipTurn<'_> {
    /// Changes the members, both of openraft's steps.
    pub async fn change(
        self,
        change: openraft::ChangeMembers<NodeId, Member>,
    ) -> Result<(), RaftError<NodeId, ClientWriteError<NodeId, Member>>> {
        self.raft.change_membership(change, false).await.map(|_| ())
    }
}

#[derive(Clone)]
pub struct ClusterMember {
    pub id: NodeId,
    pub raft: Raft,
    pub view: ClusterView,
    pub peers: PeerClient,
    liveness: Arc<Mutex<FailureDetector>>,
    reaches_brokers: Arc<AtomicBool>,
    settings: StateSettings,
    /// Members whose last answer showed other replica settings than ours.
    other_settings: Arc<Mutex<BTreeSet<NodeId>>>,
    /// The lake this member writes (see [`PingAnswer::lake`]).
    lake: String,
    /// Members whose last answer named another lake than ours.
    other_lake: Arc<Mutex<BTreeSet<NodeId>>>,
    /// Members whose last answer refused this member's cluster token.
    refusing_token: Arc<Mutex<BTreeSet<NodeId>>>,
    /// The members the config file lists, pinged until the replicated
    /// membership reaches this member: a member that cannot join (another
    /// token, say) learns why instead of waiting silently.
    configured: Arc<Mutex<Vec<(NodeId, Member)>>>,
    /// Whether a membership this member applied listed it.
    was_member: Arc<AtomicBool>,
    /// Whether this member learnt it was removed (see [`crate::removal`]).
    removed: Arc<watch::Sender<bool>>,
    /// The log index of the membership that removed this member, while it
    /// stands (see [`removed_at`]).
    removed_at: Arc<Mutex<Option<u64>>>,
    /// Serialises this member's changes of members: openraft makes a change
    /// of voters in two steps, and a change proposed between them would be
    /// refused, or (finishing the first from stale sets) undo it.
    membership_change: Arc<tokio::sync::Mutex<()>>,
    /// Whether a task finishing a change of voters runs.
    finishing_voter_change: Arc<AtomicBool>,
    clock: Instant,
}

const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

impl ClusterMember {
    /// Opens this member's Raft state under `dir` and starts its Raft;
    /// `lake` names the lake this member writes (see [`PingAnswer::lake`]).
    pub async fn start(
        id: NodeId,
        dir: &Path,
        timings: RaftTimings,
        failover_after_ms: u64,
        settings: StateSettings,
        lake: String,
        peers: PeerClient,
    ) -> Result<ClusterMember, ClusterError> {
        let config = Config {
            cluster_name: "streamreel".into(),
            heartbeat_interval: timings.heartbeat_ms,
            // openraft 0.9 makes a follower wait a leader lease (its
            // `election_timeout_max`) plus a random timeout in [min, max]
            // before it stands for election. With max = 2/3 and min = 1/3 of
            // `cluster.election-timeout-ms` that wait falls within [timeout,
            // 4/3 x timeout], inside the [timeout, 2 x timeout] operators
            // configure, instead of up to four times the timeout.
            election_timeout_min: (timings.election_timeout_ms / 3).max(timings.heartbeat_ms + 1),
            election_timeout_max: timings.election_timeout_ms * 2 / 3,
            // Checkpoints arrive about every second per partition and carry up
            // to a batch of ids each (hundreds of KiB): snapshot often enough
            // that the log held in memory, and a restart's replay, stay short.
            snapshot_policy: SnapshotPolicy::LogsSinceLast(100),
            // A follower that installs a snapshot continues from the entries
            // after it: keep one more snapshot interval of them, so that one
            // taken by the leader during a long transfer does not purge them
            // (the follower would be sent a snapshot again, and again).
            max_in_snapshot_log_to_keep: 100,
            // AppendEntries must arrive within a heartbeat (openraft's
            // timeout). A checkpoint takes 17 bytes per accepted event and up
            // to about 4 MiB of live counts: a few hundred KiB with the
            // default batch, at most about 7.5 MiB at the largest
            // `commit-max-events` (3.4 MB of ids) with a new video per event.
            max_payload_entries: 4,
            // A snapshot holds every partition's de-duplication window: tens of
            // MiB on a busy cluster, more than the default 200 ms allows.
            install_snapshot_timeout: 10_000,
            ..Config::default()
        };
        let config = Arc::new(config.validate().map_err(ClusterError::raft)?);
        let sm_store = StateMachineStore::open(&dir.join("state"), settings)?;
        let log_store = LogStore::open(dir)?.purging_behind(sm_store.durable_snapshot());
        let view = sm_store.view();
        let raft = Raft::new(
            id,
            config,
            HttpNetwork::new(peers.clone()),
            log_store,
            sm_store,
        )
        .await
        .map_err(ClusterError::raft)?;
        let clock = Instant::now();
        Ok(ClusterMember {
            id,
            raft,
            view,
            peers,
            liveness: Arc::new(Mutex::new(FailureDetector::new(failover_after_ms, 0))),
            reaches_brokers: Arc::new(AtomicBool::new(true)),
            settings,
            other_settings: Arc::default(),
            lake,
            other_lake: Arc::default(),
            refusing_token: Arc::default(),
            configured: Arc::default(),
            was_member: Arc::default(),
            removed: Arc::new(watch::Sender::new(false)),
            removed_at: Arc::default(),
            membership_change: Arc::default(),
            finishing_voter_change: Arc::default(),
            clock,
        })
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// The leader as this member knows it.
    pub fn leader(&self) -> Option<NodeId> {
        leader_in(&self.raft.metrics().borrow(), self.id)
    }

    /// The leader, waiting up to `timeout` for one while an election runs
    /// (a request that arrives mid-election then goes to the winner instead
    /// of failing).
    pub async fn leader_within(&self, timeout: Duration) -> Option<NodeId> {
        let deadline = Instant::now() + timeout;
        let mut metrics = self.raft.metrics();
        loop {
            if let Some(leader) = leader_in(&metrics.borrow_and_update(), self.id) {
                return Some(leader);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, metrics.changed()).await {
                Ok(Ok(())) if !left.is_zero() => {}
                Ok(Ok(())) | Err(_) => return None,
                // Raft's core has stopped (a fatal storage error): no leader
                // will come. Waiting out the time keeps callers that look
                // again from spinning.
                Ok(Err(_)) => {
                    tokio::time::sleep(left).await;
                    return None;
                }
            }
        }
    }

    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.id)
    }

    /// Whether this member's replica can be taken as current: it follows a
    /// leader, or it leads and a quorum acknowledged it within the longest
    /// election timeout. openraft keeps a leader cut off from the others a
    /// leader; by then the others have elected another.
    pub fn has_current_leader(&self) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        match leader_in(&metrics, self.id) {
            None => false,
            Some(leader) if leader == self.id => metrics
                .millis_since_quorum_ack
                .is_some_and(|ms| ms <= self.raft.config().election_timeout_max),
            Some(_) => true,
        }
    }

    /// The HTTP address of `node`, from the replicated membership.
    pub fn addr_of(&self, node: NodeId) -> Option<String> {
        self.view
            .read()
            .members()
            .into_iter()
            .find(|(id, _)| *id == node)
            .map(|(_, m)| m.addr)
    }

    /// Applies `command` through Raft: locally on the leader, forwarded to it
    /// otherwise, retried across leader changes until `timeout`.
    pub async fn propose(
        &self,
        command: Command,
        timeout: Duration,
    ) -> Result<CommandResult, ClusterError> {
        let deadline = Instant::now() + timeout;
        let mut metrics = self.raft.metrics();
        // Said in the timeout's error: a leader that cannot be reached fails
        // every retry the same way, so each is logged only at debug level.
        let mut last_failure: Option<ClusterError> = None;
        loop {
            let leader = leader_in(&metrics.borrow_and_update(), self.id);
            let answer = match leader {
                // openraft's leader waits for a quorum without limit (it does
                // not step down when it loses one), so the deadline applies here too.
                Some(leader) if leader == self.id => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match tokio::time::timeout(left, self.write_as_leader(command.clone())).await {
                        Ok(answer) => Some(answer),
                        Err(_) => {
                            return Err(ClusterError::Timeout {
                                what: "proposing a command: no quorum answered the leader".into(),
                            });
                        }
                    }
                }
                Some(leader) => match self.forward(leader, &command).await {
                    Ok(answer) => Some(answer),
                    Err(e) => {
                        debug!(leader, error = %e, "forwarding a command to the leader failed");
                        last_failure = Some(e);
                        None
                    }
                },
                None => None,
            };
            match answer {
                Some(Ok(result)) => return Ok(result),
                // The leader changed under us: look again.
                Some(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) | None => {}
                Some(Err(e)) => return Err(ClusterError::raft(e)),
            }
            let now = Instant::now();
            if now >= deadline {
                let what = match last_failure {
                    Some(e) => format!("proposing a command: no leader answered (last try: {e})"),
                    None => "proposing a command: no leader took it".to_string(),
                };
                return Err(ClusterError::Timeout { what });
            }
            // Wait for news of a leader, but retry soon either way.
            let wait = (deadline - now).min(Duration::from_millis(200));
            let _ = tokio::time::timeout(wait, metrics.changed()).await;
        }
    }

    /// Applies `command` through Raft only while this member leads, never
    /// forwarded: for what a leader's coordinator decided from its own view,
    /// which must not reach a successor after it took over. Its job records
    /// (the successor read the history once, when it began to lead) and its
    /// moves of partitions (decided from which members it could reach).
    pub async fn propose_as_leader(
        &self,
        command: Command,
        timeout: Duration,
    ) -> Result<CommandResult, ClusterError> {
        match tokio::time::timeout(timeout, self.write_as_leader(command)).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                Err(ClusterError::NotLeader { node: self.id })
            }
            Ok(Err(e)) => Err(ClusterError::raft(e)),
            Err(_) => Err(ClusterError::Timeout {
                what: "proposing a command: no quorum answered the leader".into(),
            }),
        }
    }

    /// Sends `command` to `leader`.
    async fn forward(
        &self,
        leader: NodeId,
        command: &Command,
    ) -> Result<WriteAnswer, ClusterError> {
        let addr = self
            .addr_of(leader)
            .ok_or(ClusterError::UnknownNode { node: leader })?;
        self.peers
            .post::<_, WriteAnswer>(&addr, paths::WRITE, command, FORWARD_TIMEOUT)
            .await
    }

    /// Adds `node` as a learner (on the leader) and waits, within `limit`
    /// in all, for the entry to commit and then for the node to acknowledge
    /// it.
    ///
    /// openraft's own blocking wait has no limit, and counts a learner within
    /// 5,000 entries of the leader's log as caught up even if it never
    /// answered, so on a short log a member that does not take the log would
    /// be made a voter at once (a cluster of one would then stall, lacking a
    /// quorum). On `LearnerBehind` the node stays a learner: it votes on
    /// nothing and owns nothing. On `Timeout` the entry did not commit (or
    /// another change of members held it up): the voters may have lost their
    /// majority, and the entry may still commit.
    pub async fn add_learner(
        &self,
        node: NodeId,
        member: Member,
        limit: Duration,
    ) -> Result<(), ClusterError> {
        let deadline = Instant::now() + limit;
        // Bounded, lock included, so that a change that never commits does not
        // keep this one, and every later one, waiting.
        let adding = async {
            let _one_at_a_time = self.membership_change.lock().await;
            self.raft.add_learner(node, member, false).await
        };
        let added = tokio::time::timeout(limit, adding)
            .await
            .map_err(|_| ClusterError::Timeout {
                what: format!(
                    "the entry adding node {node} as a learner to commit, within {limit:?} \
                     (the voters may have lost their majority; it may still commit)"
                ),
            })?
            .map_err(|e| match e {
                // Leadership moved after the caller looked: nothing was
                // committed (an entry appended meanwhile was truncated).
                RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                    ClusterError::NotLeader { node: self.id }
                }
                e => ClusterError::raft(e),
            })?;
        let entry = added.log_id;
        let acknowledged = |metrics: &openraft::RaftMetrics<NodeId, Member>| {
            metrics
                .replication
                .as_ref()
                .and_then(|replication| replication.get(&node))
                .is_some_and(|matched| matched.as_ref() >= Some(&entry))
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match self
            .raft
            .wait(Some(left))
            .metrics(acknowledged, "the new learner to acknowledge its addition")
            .await
        {
            Ok(_) => Ok(()),
            Err(openraft::metrics::WaitError::Timeout(..)) => Err(ClusterError::LearnerBehind {
                node,
                within: limit,
            }),
            Err(e) => Err(ClusterError::raft(e)),
        }
    }

    /// The voters, and the voter sets of a change under way, as the newest
    /// membership in the log has them: what openraft acts on, committed or
    /// not (the applied view may lag it).
    pub fn voters_in_log(&self) -> (BTreeSet<NodeId>, Option<Vec<BTreeSet<NodeId>>>) {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        (
            membership.voter_ids().collect(),
            voters_changing_in(membership),
        )
    }

    /// This member's (the leader's) turn to change the members: one change
    /// at a time. `None` when another change kept the turn for longer than
    /// `wait`. A change is checked against the voters and the members alive
    /// within its turn: two changes each checked before either took its
    /// turn could together leave voters that cannot commit.
    pub async fn membership_turn(&self, wait: Duration) -> Option<MembershipTurn<'_>> {
        let turn = tokio::time::timeout(wait, self.membership_change.lock())
            .await
            .ok()?;
        Some(MembershipTurn {
            raft: &self.raft,
            _turn: turn,
        })
    }

    /// Finishes a change of voters that an earlier leader left half made,
    /// trying while this member leads (openraft takes it only once the
    /// joint configuration is committed). openraft makes a change in two
    /// steps (the joint configuration, then the new voters alone), both
    /// proposed by the leader that took the request, so a leader that
    /// stopped between them left every later entry needing a majority of
    /// both sets. One task at a time.
    pub async fn finish_voter_change(&self) {
        if self.finishing_voter_change.swap(true, Ordering::SeqCst) {
            return;
        }
        let started = Instant::now();
        let mut warned = false;
        while self.is_leader() {
            match self.try_finish_voter_change().await {
                Ok(Some(voters)) => {
                    info!(
                        node = self.id,
                        ?voters,
                        "finished the change of voters an earlier leader began"
                    );
                    break;
                }
                Ok(None) => break,
                Err(error) if !warned && started.elapsed() > Duration::from_secs(30) => {
                    warn!(node = self.id, %error, "a change of voters is still under way after 30 s; still trying");
                    warned = true;
                }
                Err(error) => {
                    debug!(node = self.id, %error, "the change of voters under way cannot be finished yet");
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        self.finishing_voter_change.store(false, Ordering::SeqCst);
    }

    async fn try_finish_voter_change(&self) -> Result<Option<BTreeSet<NodeId>>, ClusterError> {
        let _one_at_a_time = self.membership_change.lock().await;
        let Some(to) = self.voters_in_log().1.and_then(|sets| sets.last().cloned()) else {
            return Ok(None);
        };
        self.raft
            .change_membership(openraft::ChangeMembers::ReplaceAllVoters(to.clone()), false)
            .await
            .map_err(ClusterError::raft)?;
        Ok(Some(to))
    }

    /// Runs a write on this member, which must be the leader (the `/raft/write` handler).
    pub async fn write_as_leader(&self, command: Command) -> WriteAnswer {
        self.raft.client_write(command).await.map(|r| r.data)
    }

    /// Initialises the cluster once: only the member with the lowest id does
    /// it, only while its own log is empty, and only after a majority of the
    /// members answered that they are not initialised either and none that it is.
    /// A restarted member never initialises again: it rejoins from its disk.
    pub async fn bootstrap(&self, members: BTreeMap<NodeId, Member>) -> Result<(), ClusterError> {
        *self.configured.lock().expect("configured lock") = members
            .iter()
            .map(|(id, member)| (*id, member.clone()))
            .collect();
        let lowest = members.keys().next().copied();
        loop {
            if self
                .raft
                .is_initialized()
                .await
                .map_err(ClusterError::raft)?
            {
                self.warn_if_config_differs(&members);
                return Ok(());
            }
            if lowest != Some(self.id) {
                // The lowest member initialises and replicates to us.
                info!(
                    node = self.id,
                    bootstrapper = ?lowest,
                    "waiting for the lowest member to initialise the cluster; a member new to a \
                     running cluster waits until it is added (`streamreel admin add-node`)"
                );
                return Ok(());
            }
            let mut not_initialized = 1;
            let mut someone_initialized = false;
            for (id, member) in &members {
                if *id == self.id {
                    continue;
                }
                match self.ping(&member.addr).await {
                    Ok(answer) if answer.initialized => someone_initialized = true,
                    Ok(_) => not_initialized += 1,
                    Err(_) => {}
                }
            }
            if someone_initialized {
                info!(
                    "another member is initialised; waiting to be contacted (a member new to a \
                     running cluster is added with `streamreel admin add-node`)"
                );
                return Ok(());
            }
            if not_initialized * 2 > members.len() {
                info!(members = members.len(), "initialising the cluster");
                match self.raft.initialize(members.clone()).await {
                    Ok(()) => return Ok(()),
                    Err(e) => warn!(error = %e, "initialise refused"),
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// The cluster keeps the membership it has agreed on, whatever a config
    /// file says later: a member moved to another address in the file alone
    /// would listen where no other member dials.
    fn warn_if_config_differs(&self, configured: &BTreeMap<NodeId, Member>) {
        // Compared as addresses, so that spellings of one address agree.
        let parsed = |addr: &str| addr.parse::<std::net::SocketAddr>().ok();
        let agreed: BTreeMap<NodeId, Option<std::net::SocketAddr>> = self
            .view
            .read()
            .members()
            .into_iter()
            .map(|(id, member)| (id, parsed(&member.addr)))
            .collect();
        let configured: BTreeMap<NodeId, Option<std::net::SocketAddr>> = configured
            .iter()
            .map(|(id, member)| (*id, parsed(&member.addr)))
            .collect();
        if !agreed.is_empty() && agreed != configured {
            warn!(
                config = ?configured,
                cluster = ?agreed,
                "the config file lists other members or addresses than the cluster agreed on, \
                 and the cluster keeps its own: change members with `streamreel admin add-node` \
                 and `remove-node`"
            );
        }
    }

    pub async fn ping(&self, addr: &str) -> Result<PingAnswer, ClusterError> {
        self.peers.post(addr, paths::PING, &(), PING_TIMEOUT).await
    }

    pub async fn ping_answer(&self) -> PingAnswer {
        PingAnswer {
            node: self.id,
            // From the metrics, not through Raft's core: a core busy with a
            // snapshot install must not make this member look dead.
            initialized: {
                let metrics = self.raft.metrics().borrow().clone();
                metrics.current_term > 0 || metrics.last_log_index.is_some()
            },
            reaches_brokers: self.reaches_brokers.load(Ordering::Relaxed),
            settings: self.settings,
            lake: self.lake.clone(),
            membership: self.membership_seen(),
        }
    }

    /// The committed membership this member applied.
    fn membership_seen(&self) -> MembershipSeen {
        let applied = self.view.read();
        MembershipSeen {
            index: applied.membership.log_id().map(|id| id.index),
            members: applied.members().into_iter().map(|(id, _)| id).collect(),
            voters: applied.membership.membership().voter_ids().collect(),
        }
    }

    /// Whether this member learnt it was removed from the cluster; changes
    /// are announced on the returned channel.
    pub fn removed(&self) -> watch::Receiver<bool> {
        self.removed.subscribe()
    }

    pub fn is_removed(&self) -> bool {
        *self.removed.borrow()
    }

    /// Records this member's latest broker check, for its ping answers.
    pub fn set_reaches_brokers(&self, reaches: bool) {
        self.reaches_brokers.store(reaches, Ordering::Relaxed);
    }

    /// Pings every member once and records who answered; the configured
    /// members while this one has no replicated membership yet.
    pub async fn probe_members(&self) {
        let mut members = self.view.read().members();
        if members.is_empty() {
            members = self.configured.lock().expect("configured lock").clone();
        }
        let pings = members.into_iter().map(|(id, member)| async move {
            if id == self.id {
                return (
                    id,
                    Some((self.reaches_brokers.load(Ordering::Relaxed), None)),
                );
            }
            // Another member answering at this address (a misconfigured
            // cluster) must not keep this one alive.
            let answer = self.ping(&member.addr).await;
            self.note_token_refusal(id, &member.addr, &answer);
            let answer = answer.ok().filter(|answer| answer.node == id);
            if let Some(answer) = &answer {
                self.compare_settings(id, &answer.settings);
                self.compare_lake(id, &answer.lake);
            }
            (id, answer.map(|a| (a.reaches_brokers, Some(a.membership))))
        });
        let answers = futures::future::join_all(pings).await;
        let now = self.now_ms();
        let mut memberships = Vec::new();
        {
            let mut detector = self.liveness.lock().expect("liveness lock");
            for (id, answer) in answers {
                if let Some((reaches_brokers, membership)) = answer {
                    detector.heard_from(id, now, reaches_brokers);
                    memberships.extend(membership);
                }
            }
        }
        self.note_removal(&memberships);
    }

    /// Tells this member it was a member before this start, which its own
    /// replica cannot show once it applied its removal: restarted then, it
    /// must know itself removed, not take itself for a member being added.
    pub fn was_member_before(&self) {
        self.was_member.store(true, Ordering::Relaxed);
    }

    fn note_removal(&self, others: &[MembershipSeen]) {
        let own = self.membership_seen();
        if own.members.contains(&self.id) {
            self.was_member.store(true, Ordering::Relaxed);
        }
        let was_member = self.was_member.load(Ordering::Relaxed);
        let removal = {
            let mut known = self.removed_at.lock().expect("removed_at lock");
            *known = removed_at(self.id, was_member, &own, others, *known);
            *known
        };
        let removed = removal.is_some();
        let changed = self.removed.send_if_modified(|known| {
            let changed = *known != removed;
            *known = removed;
            changed
        });
        if changed && removed {
            warn!(
                node = self.id,
                membership_index = removal,
                "this node was removed from the cluster: it releases its partitions and serves \
                 its HTTP API only; stop it"
            );
        } else if changed {
            info!(
                node = self.id,
                membership_index = own.index,
                "this node was added back to the cluster: it takes the partitions it is given"
            );
        }
    }

    /// Members heard from within the failover time, as this member sees it.
    pub fn alive(&self) -> BTreeSet<NodeId> {
        self.ask_detector(FailureDetector::alive)
    }

    /// The members that answered lately (see [`FailureDetector::answering`]),
    /// this one always among them.
    pub fn answering(&self) -> BTreeSet<NodeId> {
        let mut answering = self.ask_detector(FailureDetector::answering);
        answering.insert(self.id);
        answering
    }

    /// The voters writing this member's lake that can own partitions (see
    /// [`FailureDetector::can_ingest`]), as this member sees it. Only they
    /// are weighed: a learner, or a member of another lake, that reaches the
    /// brokers while the voters do not must not make every voter cut off.
    pub fn can_ingest(&self) -> BTreeSet<NodeId> {
        let eligible: BTreeSet<NodeId> = {
            let other_lake = self.other_lake.lock().expect("lake lock");
            let voters = self.view.read().voters();
            voters
                .into_iter()
                .filter(|node| !other_lake.contains(node))
                .collect()
        };
        let detector = self.liveness.lock().expect("liveness lock");
        detector.can_ingest(&eligible, self.now_ms())
    }

    /// What `node` last answered about the brokers, if it answered.
    pub fn reaches_brokers(&self, node: NodeId) -> Option<bool> {
        self.liveness
            .lock()
            .expect("liveness lock")
            .reaches_brokers(node)
    }

    /// `question` put to the failure detector about the current members, now.
    fn ask_detector<T>(
        &self,
        question: impl FnOnce(&FailureDetector, &BTreeSet<NodeId>, u64) -> T,
    ) -> T {
        let members = self.member_ids();
        let detector = self.liveness.lock().expect("liveness lock");
        question(&detector, &members, self.now_ms())
    }

    /// Whether `node`'s last answer showed other replica settings than ours.
    pub fn settings_differ(&self, node: NodeId) -> bool {
        self.other_settings
            .lock()
            .expect("settings lock")
            .contains(&node)
    }

    /// Replicas apply commands with their own `[dedup]` and `[live]`
    /// settings: members that differ hold different windows and live counts
    /// (logged once per change, and shown in `status`).
    fn compare_settings(&self, node: NodeId, theirs: &StateSettings) {
        let mut differing = self.other_settings.lock().expect("settings lock");
        if *theirs == self.settings {
            differing.remove(&node);
        } else if differing.insert(node) {
            warn!(
                member = node,
                ours = ?self.settings,
                theirs = ?theirs,
                "a member runs with other [dedup] / [live] settings: its replica will differ; use one cluster config"
            );
        }
    }

    /// Whether `node`'s last answer named another lake than ours.
    pub fn lake_differs(&self, node: NodeId) -> bool {
        self.other_lake.lock().expect("lake lock").contains(&node)
    }

    /// A member writing another lake (a relative `lake.uri` on another
    /// machine, say) would put its partitions where the leader's silver and
    /// gold never look: it is given none while this member leads (logged once
    /// per change, and shown in `status`).
    fn compare_lake(&self, node: NodeId, theirs: &str) {
        let mut differing = self.other_lake.lock().expect("lake lock");
        if theirs == self.lake {
            differing.remove(&node);
        } else if differing.insert(node) {
            error!(
                member = node,
                ours = %self.lake,
                theirs,
                "a member writes another lake than this one (its bronze table has another Delta id): \
                 members must share one lake; point every member's lake.uri at the same storage. \
                 It is given no partitions while this member leads"
            );
        }
    }

    /// A member that refuses this member's token looks dead to it, like a
    /// member that is down; the log says which it is (once per change).
    fn note_token_refusal(
        &self,
        node: NodeId,
        addr: &str,
        answer: &Result<PingAnswer, ClusterError>,
    ) {
        let refused = matches!(
            answer,
            Err(ClusterError::HttpStatus { status, .. })
                if *status == reqwest::StatusCode::UNAUTHORIZED
        );
        let mut refusing = self.refusing_token.lock().expect("token lock");
        if !refused {
            refusing.remove(&node);
        } else if refusing.insert(node) {
            warn!(
                member = node,
                addr,
                "a member refuses this member's cluster token, so it counts as down: \
                 give every member the same cluster token (cluster.token-file or \
                 STREAMREEL_CLUSTER_TOKEN)"
            );
        }
    }

    fn member_ids(&self) -> BTreeSet<NodeId> {
        self.view
            .read()
            .members()
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }
}
/// The leader `metrics` name, seen from member `me`. A leader removed from
/// the voters steps down but keeps its committed vote, so openraft goes on
/// naming it leader, though it hears from no one and commits nothing: it
/// counts as leader only while its server state says so.
pub fn leader_in(metrics: &openraft::RaftMetrics<NodeId, Member>, me: NodeId) -> Option<NodeId> {
    match metrics.current_leader {
        Some(leader) if leader == me && metrics.state != openraft::ServerState::Leader => None,
        leader => leader,
    }
}
