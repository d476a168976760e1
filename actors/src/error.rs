use thiserror::Error;

#[derive(Debug, Error)]
pub enum ActorError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("kafka topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
    #[error("delivery to {topic} failed: {reason}")]
    Delivery { topic: String, reason: String },
    /// Boxed: lake errors carry DataFusion and Delta errors, which are large.
    #[error(transparent)]
    Lake(Box<streamreel_lake::LakeError>),
}

impl From<streamreel_lake::LakeError> for ActorError {
    fn from(error: streamreel_lake::LakeError) -> ActorError {
        ActorError::Lake(Box::new(error))
    }
}
