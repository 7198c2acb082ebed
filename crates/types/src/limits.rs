//! Hard upper bounds of every SSZ list, as type-level lengths.
//!
//! These bound what a decoder will ever accept; the chain spec may set lower operational
//! limits (e.g. `max_block_bytes`), checked by consensus's data-validity rules.

use typenum::{U16, U64, U128, U256, U2048, U16384, U131072, U4194304, U1099511627776};

/// Most shards a block can have.
pub type MaxShards = U64;
/// Most transactions in one shard.
pub type MaxTransactionsPerShard = U16384;
/// Largest encoded transaction (128 KiB, as Ethereum's transaction pools allow).
pub type MaxBytesPerTransaction = U131072;
/// Most validators in one attestation committee.
pub type MaxValidatorsPerCommittee = U2048;
/// Most aggregated attestations in a block body.
pub type MaxAttestations = U128;
/// Most executor claims in a block body.
pub type MaxClaims = U256;
/// Most slashings of each kind in a block body.
pub type MaxSlashings = U16;
/// Most fraud proofs in a block body.
pub type MaxFraudProofs = U16;
/// Most executor deposits, and most executor exits, in a block body.
pub type MaxExecutorOps = U16;
/// Largest fraud-proof payload (witnesses included): 4 MiB.
pub type MaxFraudProofBytes = U4194304;
/// Largest possible validator registry (as Ethereum's `VALIDATOR_REGISTRY_LIMIT`).
pub type ValidatorRegistryLimit = U1099511627776;

/// [`MaxShards`] as a number.
pub const MAX_SHARDS: usize = 64;
/// [`MaxTransactionsPerShard`] as a number.
pub const MAX_TRANSACTIONS_PER_SHARD: usize = 16_384;
/// [`MaxBytesPerTransaction`] as a number.
pub const MAX_BYTES_PER_TRANSACTION: usize = 131_072;
/// [`MaxValidatorsPerCommittee`] as a number.
pub const MAX_VALIDATORS_PER_COMMITTEE: usize = 2_048;

#[cfg(test)]
mod tests {
    use typenum::Unsigned;

    use super::*;

    #[test]
    fn numeric_constants_match_types() {
        assert_eq!(MaxShards::USIZE, MAX_SHARDS);
        assert_eq!(MaxTransactionsPerShard::USIZE, MAX_TRANSACTIONS_PER_SHARD);
        assert_eq!(MaxBytesPerTransaction::USIZE, MAX_BYTES_PER_TRANSACTION);
        assert_eq!(
            MaxValidatorsPerCommittee::USIZE,
            MAX_VALIDATORS_PER_COMMITTEE
        );
    }
}
