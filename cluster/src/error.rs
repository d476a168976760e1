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
    #[error("request to {addr} failed: {reason}")]
    Rpc { addr: String, reason: String },
    #[error("timed out: {what}")]
    Timeout { what: String },
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
