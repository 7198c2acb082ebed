//! Primitive values shared by every role.
//!
//! Slots, epochs and the three kinds of index are distinct types (SSZ `uint64` on the wire) so
//! a slot cannot be passed where an epoch is expected.

use serde::{Deserialize, Serialize};

/// A 32-byte hash (SHA-256 tree roots of consensus objects, Keccak-256 in execution).
pub type Root = alloy_primitives::B256;
/// An Ethereum address (reward addresses, EVM accounts).
pub type Address = alloy_primitives::Address;
/// An amount of stake in Gwei (10^-9 of the native unit).
pub type Gwei = u64;

macro_rules! u64_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
        )]
        #[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// Wraps a raw value.
            pub const fn new(value: u64) -> Self {
                Self(value)
            }

            /// The raw value.
            pub const fn as_u64(self) -> u64 {
                self.0
            }
        }

        impl From<u64> for $name {
            fn from(value: u64) -> Self {
                Self(value)
            }
        }

        impl From<$name> for u64 {
            fn from(value: $name) -> u64 {
                value.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl ssz::Encode for $name {
            fn is_ssz_fixed_len() -> bool {
                true
            }
            fn ssz_fixed_len() -> usize {
                8
            }
            fn ssz_append(&self, buf: &mut Vec<u8>) {
                self.0.ssz_append(buf)
            }
            fn ssz_bytes_len(&self) -> usize {
                8
            }
        }

        impl ssz::Decode for $name {
            fn is_ssz_fixed_len() -> bool {
                true
            }
            fn ssz_fixed_len() -> usize {
                8
            }
            fn from_ssz_bytes(bytes: &[u8]) -> Result<Self, ssz::DecodeError> {
                u64::from_ssz_bytes(bytes).map(Self)
            }
        }

        impl tree_hash::TreeHash for $name {
            fn tree_hash_type() -> tree_hash::TreeHashType {
                u64::tree_hash_type()
            }
            fn tree_hash_packed_encoding(&self) -> tree_hash::PackedEncoding {
                self.0.tree_hash_packed_encoding()
            }
            fn tree_hash_packing_factor() -> usize {
                u64::tree_hash_packing_factor()
            }
            fn tree_hash_root(&self) -> tree_hash::Hash256 {
                self.0.tree_hash_root()
            }
        }
    };
}

u64_newtype!(
    /// A slot: the chain's unit of time (`SLOT_SECONDS` long), one block at most.
    Slot
);
u64_newtype!(
    /// An epoch: `SLOTS_PER_EPOCH` slots; the unit of attestation duty and finality.
    Epoch
);
u64_newtype!(
    /// Position of a validator in the registry.
    ValidatorIndex
);
u64_newtype!(
    /// Position of a block producer in the producer registry.
    ProducerIndex
);
u64_newtype!(
    /// Position of a bonded executor in the executor registry.
    ExecutorIndex
);

impl Slot {
    /// The epoch holding this slot (`slots_per_epoch` of zero is treated as one).
    pub fn epoch(self, slots_per_epoch: u64) -> Epoch {
        Epoch(self.0 / slots_per_epoch.max(1))
    }

    /// The next slot (saturating).
    pub fn next(self) -> Slot {
        Slot(self.0.saturating_add(1))
    }
}

impl Epoch {
    /// The first slot of the epoch (saturating).
    pub fn start_slot(self, slots_per_epoch: u64) -> Slot {
        Slot(self.0.saturating_mul(slots_per_epoch))
    }

    /// The previous epoch, or epoch 0 at genesis.
    pub fn prev(self) -> Epoch {
        Epoch(self.0.saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_epoch_arithmetic() {
        assert_eq!(Slot(17).epoch(8), Epoch(2));
        assert_eq!(Epoch(2).start_slot(8), Slot(16));
        assert_eq!(Slot(5).epoch(0), Epoch(5));
        assert_eq!(Epoch(0).prev(), Epoch(0));
        assert_eq!(Epoch(u64::MAX).start_slot(8), Slot(u64::MAX));
    }
}
