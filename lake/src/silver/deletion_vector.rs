//! Deletion vectors as the Delta protocol stores them inline in the log: which
//! rows of a data file are deleted, without rewriting the file.
//!
//! Pure: encoding, decoding and finding rows. [`super::replace`] uses them.

use std::collections::HashSet;

use deltalake::arrow::array::Array;
use deltalake::kernel::{DeletionVectorDescriptor, StorageType};
use roaring::RoaringTreemap;

use crate::query::string_values;

/// The Delta protocol's magic number of a portable 64-bit roaring bitmap
/// (`RoaringBitmapArray` format), written little-endian before it.
const PORTABLE_MAGIC: u32 = 1_681_511_377;

/// An inline deletion vector for `deleted` (row positions in the file): the
/// magic number and the bitmap, padded with zeros to a multiple of four bytes
/// and Z85 encoded; `sizeInBytes` is the length before padding, as readers
/// (Spark, delta-kernel) expect.
pub fn inline_descriptor(deleted: &RoaringTreemap) -> DeletionVectorDescriptor {
    let mut bytes = PORTABLE_MAGIC.to_le_bytes().to_vec();
    deleted
        .serialize_into(&mut bytes)
        .expect("writing into a Vec cannot fail");
    let size_in_bytes = i32::try_from(bytes.len()).expect("a file's bitmap fits in 2 GiB");
    // Whole four-byte groups: the z85 crate would otherwise end with its own
    // `#` tail, which is not Z85 and which other readers reject.
    bytes.resize(bytes.len().next_multiple_of(4), 0);
    DeletionVectorDescriptor {
        storage_type: StorageType::Inline,
        path_or_inline_dv: z85::encode(&bytes),
        offset: None,
        size_in_bytes,
        cardinality: i64::try_from(deleted.len()).expect("fewer than 2^63 rows"),
    }
}

/// The rows an inline deletion vector deletes; `None` for a vector stored in
/// a file, or one that cannot be read.
pub fn inline_deleted(descriptor: &DeletionVectorDescriptor) -> Option<RoaringTreemap> {
    if descriptor.storage_type != StorageType::Inline {
        return None;
    }
    let bytes = z85::decode(&descriptor.path_or_inline_dv).ok()?;
    let bytes = bytes.get(..usize::try_from(descriptor.size_in_bytes).ok()?)?;
    let magic = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?);
    if magic != PORTABLE_MAGIC {
        return None;
    }
    RoaringTreemap::deserialize_from(&bytes[4..]).ok()
}

/// The positions `keep_mask` marks deleted (`false`).
pub fn deleted_positions(keep_mask: &[bool]) -> RoaringTreemap {
    keep_mask
        .iter()
        .enumerate()
        .filter(|(_, keep)| !**keep)
        .map(|(row, _)| row as u64)
        .collect()
}

/// Positions (from `first_row`) of the rows of `ids` that are in `wanted`.
/// `ids` is a string column (`Utf8`, `LargeUtf8` or `Utf8View`); `None` for
/// another type.
pub fn rows_with_ids(
    ids: &dyn Array,
    wanted: &HashSet<String>,
    first_row: u64,
) -> Option<Vec<u64>> {
    Some(
        string_values(ids)?
            .enumerate()
            .filter(|(_, id)| id.is_some_and(|id| wanted.contains(id)))
            .map(|(position, _)| first_row + position as u64)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use deltalake::arrow::array::{StringArray, StringViewArray};
    use proptest::prelude::*;

    use super::*;

    /// The reading side as the Delta protocol describes it, written apart
    /// from the encoder: Z85 decode, cut to `sizeInBytes`, magic, bitmap.
    fn decode(descriptor: &DeletionVectorDescriptor) -> RoaringTreemap {
        assert_eq!(descriptor.storage_type, StorageType::Inline);
        assert_eq!(descriptor.path_or_inline_dv.len() % 5, 0, "no Z85 tail");
        let bytes = z85::decode(&descriptor.path_or_inline_dv).unwrap();
        let bytes = &bytes[..descriptor.size_in_bytes as usize];
        assert_eq!(
            u32::from_le_bytes(bytes[..4].try_into().unwrap()),
            PORTABLE_MAGIC
        );
        RoaringTreemap::deserialize_from(&bytes[4..]).unwrap()
    }

    proptest! {
        #[test]
        fn an_inline_vector_reads_back_as_the_rows_it_deletes(
            rows in proptest::collection::btree_set(0u64..5_000_000_000, 0..300)
        ) {
            let deleted: RoaringTreemap = rows.iter().copied().collect();
            let descriptor = inline_descriptor(&deleted);
            prop_assert_eq!(descriptor.cardinality, rows.len() as i64);
            prop_assert_eq!(inline_deleted(&descriptor), Some(deleted.clone()));
            prop_assert_eq!(decode(&descriptor), deleted);
        }
    }

    /// The inline vector of delta-kernel's test fixture (written by Spark):
    /// rows 3, 4, 7, 11, 18 and 29 deleted.
    #[test]
    fn the_encoding_is_the_one_spark_writes() {
        let deleted: RoaringTreemap = [3, 4, 7, 11, 18, 29].into_iter().collect();
        let descriptor = inline_descriptor(&deleted);
        assert_eq!(
            descriptor.path_or_inline_dv,
            "^Bg9^0rr910000000000iXQKl0rr91000f55c8Xg0@@D72lkbi5=-{L"
        );
        assert_eq!(descriptor.size_in_bytes, 44);
        assert_eq!(descriptor.cardinality, 6);
        assert_eq!(descriptor.offset, None);
    }

    #[test]
    fn a_keep_mask_gives_its_deleted_positions() {
        let mask = [true, false, true, true, false];
        assert_eq!(
            deleted_positions(&mask).into_iter().collect::<Vec<_>>(),
            [1, 4]
        );
        assert!(deleted_positions(&[]).is_empty());
    }

    #[test]
    fn rows_are_found_by_id_in_every_string_layout() {
        let wanted: HashSet<String> = ["b".to_string(), "d".to_string()].into();
        let values = [Some("a"), Some("b"), None, Some("d"), Some("b")];
        let utf8 = StringArray::from(values.to_vec());
        let view = StringViewArray::from(values.to_vec());
        assert_eq!(rows_with_ids(&utf8, &wanted, 10), Some(vec![11, 13, 14]));
        assert_eq!(rows_with_ids(&view, &wanted, 0), Some(vec![1, 3, 4]));
        let numbers = deltalake::arrow::array::Int32Array::from(vec![1]);
        assert_eq!(rows_with_ids(&numbers, &wanted, 0), None);
    }
}
