use thiserror::Error;

#[derive(Debug, Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Actor(Box<streamreel_actors::ActorError>),
    /// Boxed: lake errors carry DataFusion and Delta errors, which are large.
    #[error(transparent)]
    Lake(Box<streamreel_lake::LakeError>),
    #[error("cluster: {0}")]
    Cluster(#[from] streamreel_cluster::ClusterError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "data dir {data_dir} is in use by another streamreel node (pid {holder}); stop it or use another --data-dir"
    )]
    DataDirInUse { data_dir: String, holder: String },
    #[error(
        "data dir {data_dir} belongs to node {owner} (its Raft log and vote), and this is node \
         {ours}: start node {owner} on it, or give node {ours} its own --data-dir"
    )]
    DataDirOfOtherMember {
        data_dir: String,
        owner: u64,
        ours: u64,
    },
    #[error(
        "node {node}'s data dir {data_dir} holds no Raft state, yet node {told_by} lists it as a \
         member and the lake records it as a voter ({record}): its vote and log were lost (the data \
         dir was emptied or replaced). Voting without them could elect a leader that lacks \
         committed checkpoints, so it does not start. Restore its data dir, or remove it \
         (`streamreel admin remove-node {node}` on another member), then start it again and \
         `add-node` it. Only if the others cannot remove it (two voters: the removal needs its \
         vote) and you accept that committed checkpoints may be lost, delete {record} and start it"
    )]
    VoterStateLost {
        node: u64,
        data_dir: String,
        record: String,
        told_by: u64,
    },
    #[error(
        "node {node}'s data dir {data_dir} holds no Raft state, yet the lake records it as a voter \
         ({record}), and no member holding Raft state answered within {waited_s} s to say whether \
         it was removed since: start it again once the other members run. If every member's data \
         dir was emptied, the cluster's epochs and checkpoints are gone with them: start a new \
         cluster with a new lake"
    )]
    VoterStateUnconfirmed {
        node: u64,
        data_dir: String,
        record: String,
        waited_s: u64,
    },
    #[error(
        "partitions {partitions:?} stopped with a batch they could not commit; it is read again on restart"
    )]
    Uncommitted { partitions: Vec<i32> },
    #[error("cannot write {path}: {reason}")]
    Export { path: String, reason: String },
    #[error("admin: cannot reach {base} or read its answer: {source}")]
    AdminUnreachable {
        base: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("admin: {status}: {body}")]
    AdminRefused {
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("cannot build an HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("cannot start the ingest supervisor: {0}")]
    Spawn(#[from] ractor::SpawnErr),
    #[error("a task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the ingest supervisor died")]
    SupervisorDied,
    /// The task that starts and stops the coordinator with leadership
    /// returned, which it never does while the node runs.
    #[error("the leadership follower ended")]
    LeadershipFollowerEnded,
    #[error("the leadership follower panicked: {0}")]
    LeadershipFollowerPanicked(#[source] tokio::task::JoinError),
    #[error("invalid argument {name}: {reason}")]
    Argument { name: &'static str, reason: String },
}

impl From<streamreel_actors::ActorError> for NodeError {
    fn from(error: streamreel_actors::ActorError) -> NodeError {
        NodeError::Actor(Box::new(error))
    }
}

impl From<streamreel_lake::LakeError> for NodeError {
    fn from(error: streamreel_lake::LakeError) -> NodeError {
        NodeError::Lake(Box::new(error))
    }
}

pub use streamreel_protocol::error_chain_text;
