//! The bincode codec for internal messages. One configuration for every message
//! so that a byte layout never depends on the call site.

use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CodecError {
    #[error("cannot encode message: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("cannot decode message: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("cannot decode message: {trailing} trailing bytes")]
    TrailingBytes { trailing: usize },
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<{ 64 * 1024 * 1024 }>()
}

pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, CodecError> {
    Ok(bincode::serde::encode_to_vec(message, config())?)
}

/// The size `encode` would give, without building the bytes.
pub fn encoded_len<T: Serialize>(message: &T) -> usize {
    let mut counter = bincode::enc::write::SizeWriter::default();
    match bincode::serde::encode_into_writer(message, &mut counter, config()) {
        Ok(()) => counter.bytes_written,
        Err(_) => 0,
    }
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (message, read) = bincode::serde::decode_from_slice(bytes, config())?;
    if read != bytes.len() {
        return Err(CodecError::TrailingBytes {
            trailing: bytes.len() - read,
        });
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{PartitionCheckpoint, PartitionCounters};
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn checkpoints_round_trip(partition in any::<i32>(), last_offset in any::<i64>(), delta_version in any::<i64>()) {
            let checkpoint = PartitionCheckpoint { partition, last_offset, delta_version };
            let decoded: PartitionCheckpoint = decode(&encode(&checkpoint).unwrap()).unwrap();
            prop_assert_eq!(decoded, checkpoint);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode::<PartitionCounters>(&bytes);
        }
    }

    #[test]
    fn refuses_trailing_bytes() {
        let mut bytes = encode(&PartitionCounters::default()).unwrap();
        bytes.push(0);
        assert!(matches!(
            decode::<PartitionCounters>(&bytes),
            Err(CodecError::TrailingBytes { trailing: 1 })
        ));
    }
}
