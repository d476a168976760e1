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
    bincode::config::standard()
}

/// When decoding, bincode counts what each value takes in memory against a
/// limit, not the bytes read: 16 bytes for a `u128` de-duplication id however
/// few bytes encode it, and the whole length of a string or byte vector,
/// allocated before it is read. No value takes more than 16 times its encoded
/// size, so a limit of 16 times the input holds every well-formed message and
/// turns a corrupt length into an error instead of an allocation that could
/// abort the process. A fixed limit sized for messages would make a large
/// replicated state unreadable (four partitions' default windows of 1M ids
/// decode to about 100 MB). bincode takes the limit as a constant: one
/// configuration per step, the last for inputs up to 1 GiB.
fn decode_from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), CodecError> {
    use bincode::serde::decode_from_slice as decode_with;
    const MIB: usize = 1 << 20;
    let standard = bincode::config::standard();
    Ok(if bytes.len() <= MIB {
        decode_with(bytes, standard.with_limit::<{ 16 * MIB }>())?
    } else if bytes.len() <= 64 * MIB {
        decode_with(bytes, standard.with_limit::<{ 1024 * MIB }>())?
    } else {
        decode_with(bytes, standard.with_limit::<{ 16 * 1024 * MIB }>())?
    })
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
    let (message, read) = decode_from_slice(bytes)?;
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

    #[test]
    fn a_corrupt_length_is_an_error_not_an_allocation() {
        // A string claiming 1 TiB: bincode's varint marker for a u64, then it.
        let mut bytes = vec![253];
        bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
        bytes.extend_from_slice(b"abc");
        assert!(matches!(
            decode::<String>(&bytes),
            Err(CodecError::Decode(_))
        ));
    }

    #[test]
    fn a_state_far_larger_than_a_message_decodes() {
        // More ids than a limit of 64 MiB allowed: 24 decoded bytes each.
        let ids: Vec<(u128, i64)> = (0..4_000_000u64)
            .map(|i| {
                let id = u128::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835);
                (id, 1_764_000_000_000_000 + i as i64)
            })
            .collect();
        let decoded: Vec<(u128, i64)> = decode(&encode(&ids).unwrap()).unwrap();
        assert_eq!(decoded, ids);
    }
}
