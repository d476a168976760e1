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
        "partitions {partitions:?} stopped with a batch they could not commit; it is read again on restart"
    )]
    Uncommitted { partitions: Vec<i32> },
    #[error("cannot write {path}: {reason}")]
    Export { path: String, reason: String },
    #[error("admin: {0}")]
    Admin(String),
    #[error("actor system: {0}")]
    Actors(String),
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
