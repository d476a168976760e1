use thiserror::Error;

use crate::types::{NodeId, Refusal};

#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Codec(#[from] streamreel_protocol::CodecError),
    /// A file of this member's Raft state that does not decode (or a value
    /// that would not encode into it).
    #[error(
        "{path}: cannot decode or encode (a damaged file, or one written by an incompatible \
         version): {source}"
    )]
    Corrupt {
        path: String,
        #[source]
        source: streamreel_protocol::CodecError,
    },
    /// A file of this member's Raft state whose checksum no longer matches.
    #[error(
        "{path}: {source}. This member's Raft state cannot be trusted: restore the file, or \
         remove the member (remove-node), empty its data dir and add it again"
    )]
    Damaged {
        path: String,
        #[source]
        source: crate::durable_file::Damaged,
    },
    #[error("no leader yet")]
    NoLeader,
    #[error("node {node} is not a member of the cluster")]
    UnknownNode { node: NodeId },
    #[error(
        "node {node} is not alive or cannot reach the brokers: a partition moved there would be \
         moved away again"
    )]
    NotLive { node: NodeId },
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    #[error("raft: {0}")]
    Raft(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// No answer: the connection failed or timed out (the member is down or
    /// unreachable). reqwest's own text says only that sending failed; its
    /// causes say why (refused, timed out, reset).
    #[error("request to {addr} failed: {}", streamreel_protocol::error_chain_text(.source))]
    Transport {
        addr: String,
        #[source]
        source: reqwest::Error,
    },
    /// The member answered with an error status (401: it refused the cluster
    /// token).
    #[error("{addr} answered HTTP {status}: {body}")]
    HttpStatus {
        addr: String,
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("timed out: {what}")]
    Timeout { what: String },
    /// A learner that has not acknowledged the entry that added it.
    #[error("node {node} has not taken the cluster's log within {within:?}")]
    LearnerBehind {
        node: NodeId,
        within: std::time::Duration,
    },
    /// A write only the leader may make, on a member that no longer leads.
    #[error("node {node} no longer leads")]
    NotLeader { node: NodeId },
}

impl ClusterError {
    pub fn raft(error: impl std::error::Error + Send + Sync + 'static) -> ClusterError {
        ClusterError::Raft(Box::new(error))
    }

    pub fn io(path: impl std::fmt::Display, source: std::io::Error) -> ClusterError {
        ClusterError::Io {
            path: path.to_string(),
            source,
        }
    }
}
