use thiserror::Error;

#[derive(Debug, Error)]
pub enum ActorError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("kafka topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
    #[error("delivery to {topic} failed: {reason}")]
    Delivery { topic: String, reason: String },
    #[error(transparent)]
    Lake(#[from] streamreel_lake::LakeError),
    #[error("injected fault: {0}")]
    InjectedFault(String),
}
