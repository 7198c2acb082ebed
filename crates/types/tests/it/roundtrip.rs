//! Property tests: every consensus type survives SSZ encode → decode unchanged, and no byte
//! string — random, or a corrupted valid encoding — makes a decoder panic.

use arbitrary::{Arbitrary, Unstructured};
use phalanx_types::*;
use proptest::prelude::*;

use super::fixtures::*;

/// Builds a `T` from entropy; `None` if the entropy ran out before a value was complete.
fn from_entropy<T: for<'a> Arbitrary<'a>>(entropy: &[u8]) -> Option<T> {
    T::arbitrary_take_rest(Unstructured::new(entropy)).ok()
}

macro_rules! roundtrip_tests {
    ($ty:ident, $fixture:ident) => {
        mod $fixture {
            use super::*;

            proptest! {
                #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

                #[test]
                fn ssz_roundtrip(entropy in prop::collection::vec(any::<u8>(), 0..4096)) {
                    if let Some(value) = from_entropy::<$ty>(&entropy) {
                        let bytes = value.as_ssz_bytes();
                        prop_assert_eq!(bytes.len(), value.ssz_bytes_len());
                        let back = $ty::from_ssz_bytes(&bytes).expect("own encoding decodes");
                        prop_assert_eq!(back.tree_hash_root(), value.tree_hash_root());
                        prop_assert_eq!(back, value);
                    }
                }

                #[test]
                fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
                    // A decoder may accept or refuse; it may not panic. What it accepts must
                    // re-encode to exactly the input (SSZ is canonical).
                    if let Ok(value) = $ty::from_ssz_bytes(&bytes) {
                        prop_assert_eq!(value.as_ssz_bytes(), bytes);
                    }
                }

                #[test]
                fn corrupted_encodings_never_panic(
                    edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                    cut in any::<prop::sample::Index>(),
                    truncate in any::<bool>(),
                ) {
                    let mut bytes = $fixture().as_ssz_bytes();
                    for (at, byte) in edits {
                        let i = at.index(bytes.len());
                        bytes[i] = byte;
                    }
                    if truncate {
                        bytes.truncate(cut.index(bytes.len()));
                    }
                    if let Ok(value) = $ty::from_ssz_bytes(&bytes) {
                        prop_assert_eq!(value.as_ssz_bytes(), bytes);
                    }
                }
            }

            #[test]
            fn fixture_roundtrip() {
                let value = $fixture();
                assert_eq!($ty::from_ssz_bytes(&value.as_ssz_bytes()).unwrap(), value);
            }
        }
    };
}

crate::for_each_type!(roundtrip_tests);

#[test]
fn shard_roots_are_per_shard_tree_roots() {
    let block = signed_block();
    let roots = block.compute_shard_roots();
    assert_eq!(roots.len(), 2);
    assert_eq!(roots[0], shard().tree_hash_root());
    assert_eq!(block.root(), block.header.message.tree_hash_root());
}

#[test]
fn oversized_lists_are_refused() {
    // 64 shard roots is the limit; a 65th (appended to the only variable-size field) is a
    // typed error, not a panic.
    let mut header = block_header();
    header.shard_roots = ssz_types::VariableList::new(vec![Root::ZERO; 64]).unwrap();
    let mut bytes = header.as_ssz_bytes();
    assert!(BlockHeader::from_ssz_bytes(&bytes).is_ok());
    bytes.extend_from_slice(&[0u8; 32]);
    assert!(BlockHeader::from_ssz_bytes(&bytes).is_err());
}

/// The definition of a shard's root: what `#[derive(TreeHash)]` gives a container of one
/// field, the root of its transaction list as `ssz_types` hashes it.
fn derived_shard_root(shard: &Shard) -> Root {
    shard.transactions.tree_hash_root()
}

fn shard_of(lengths: &[usize]) -> Shard {
    let transactions = lengths
        .iter()
        .enumerate()
        .map(|(i, len)| {
            let bytes = (0..*len).map(|j| (i * 31 + j * 7) as u8).collect();
            Transaction::new(bytes).expect("within the limit")
        })
        .collect();
    Shard {
        transactions: ssz_types::VariableList::new(transactions).expect("within the limit"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn shard_root_is_the_derived_one(lengths in prop::collection::vec(0usize..300, 0..40)) {
        let shard = shard_of(&lengths);
        prop_assert_eq!(shard.tree_hash_root(), derived_shard_root(&shard));
        for tx in shard.transactions.iter() {
            prop_assert_eq!(transaction_root(tx), tx.tree_hash_root());
        }
    }
}

#[test]
fn shard_root_is_the_derived_one_at_the_edges() {
    // Empty, chunk boundaries, and a transaction of the largest size.
    use phalanx_types::limits::MAX_BYTES_PER_TRANSACTION;
    for lengths in [
        vec![],
        vec![0],
        vec![1, 31, 32, 33, 63, 64, 65],
        vec![MAX_BYTES_PER_TRANSACTION],
        vec![MAX_BYTES_PER_TRANSACTION - 1, 0, 4096],
    ] {
        let shard = shard_of(&lengths);
        assert_eq!(
            shard.tree_hash_root(),
            derived_shard_root(&shard),
            "{lengths:?}"
        );
    }
}
