use thiserror::Error;

#[derive(Debug, Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Actor(#[from] streamreel_actors::ActorError),
    #[error(transparent)]
    Lake(#[from] streamreel_lake::LakeError),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("admin: {0}")]
    Admin(String),
    #[error("actor system: {0}")]
    Actors(String),
    #[error("invalid argument {name}: {reason}")]
    Argument { name: &'static str, reason: String },
}
