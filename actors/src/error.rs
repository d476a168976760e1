use thiserror::Error;

#[derive(Debug, Error)]
pub enum ActorError {
    #[error(
        "partition {partition}: the brokers did not name their Kafka cluster in time, and bronze \
         was ingested from cluster {recorded:?}: not resuming until they do (a topic of the same \
         name on another cluster holds other records at the same offsets)"
    )]
    KafkaClusterUnknown { partition: i32, recorded: String },
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("kafka topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
    #[error("delivery to {topic} failed: {source}")]
    Delivery {
        topic: String,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("the producer shut down before the broker acknowledged a record")]
    ProducerGone,
    #[error("cannot start the producer's delivery-report thread: {0}")]
    DeliveryThread(#[source] std::io::Error),
    #[error(
        "partition {partition}: epoch {epoch} is fenced by epoch {found} in bronze (a newer owner \
         took it; if this cluster's Raft state was started afresh over an older cluster's lake, \
         every partition stays fenced: see docs/cluster.md)"
    )]
    Fenced {
        partition: i32,
        epoch: u64,
        found: u64,
    },
    #[error("partition {partition}: this node does not own it at epoch {epoch}")]
    NotOwner { partition: i32, epoch: u64 },
    #[error("partition {partition}: checkpoint refused: {refusal}")]
    CheckpointRefused {
        partition: i32,
        refusal: streamreel_cluster::Refusal,
    },
    #[error("injected fault: {0}")]
    InjectedFault(&'static str),
    #[error(transparent)]
    MissingOffsets(#[from] crate::start_position::MissingOffsets),
    #[error(transparent)]
    Cluster(#[from] streamreel_cluster::ClusterError),
    #[error("not started: its start could not be committed through Raft: {0}")]
    JobNotRecorded(#[source] streamreel_cluster::ClusterError),
    #[error("not started: the coordinator stopped")]
    CoordinatorStopped,
    #[error("a blocking task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    #[error(
        "cancelled after running {seconds} s (jobs.timeout-s): what it committed stays, and \
         its retry or next run does the rest"
    )]
    JobTimedOut { seconds: u64 },
    #[error("job panicked: {0}")]
    JobPanicked(#[source] tokio::task::JoinError),
    #[error("vacuum retention out of range: {0}")]
    VacuumRetention(#[source] chrono::OutOfRangeError),
    /// Boxed: lake errors carry DataFusion and Delta errors, which are large.
    #[error(transparent)]
    Lake(Box<streamreel_lake::LakeError>),
}

impl From<streamreel_lake::LakeError> for ActorError {
    fn from(error: streamreel_lake::LakeError) -> ActorError {
        ActorError::Lake(Box::new(error))
    }
}
