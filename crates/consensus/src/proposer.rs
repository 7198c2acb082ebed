//! Who proposes each slot, and where its randomness comes from.
//!
//! **Randomness (RANDAO)**: every declaration carries the proposer's *RANDAO reveal*, its BLS
//! signature over the epoch (domain `0x02000000`); BLS signatures are unique, so a proposer
//! cannot choose its reveal. The epoch's mix starts from the previous mix and absorbs each
//! reveal: `mix ← mix XOR sha256(reveal)`. The mix at genesis is
//! `sha256("phalanx-randao-genesis" ++ genesis_validators_root)`.
//!
//! **Seed**: the proposers of epoch `e` are drawn from `seed(e) = mix at the end of epoch
//! e − 1` (for epoch 0: the genesis mix), so they are known one epoch ahead.
//!
//! **Choice**: for slot `s`, `r = uint256(sha256(seed ++ s)) mod total_stake`, and the
//! proposer is the validator whose cumulative-stake interval (in index order, slashed
//! validators excluded) contains `r`: each validator proposes with probability
//! `stake / total_stake`.
//!
//! **Bias**, documented rather than hidden:
//! * modulo bias: `2^256 mod total_stake` values out of `2^256` are favoured, below `2^-192`
//!   for any stake below `2^64` Gwei: negligible;
//! * withholding: the last proposer of an epoch may skip its slot so its reveal is not
//!   mixed, choosing between two seeds for the next epoch (one bit of influence), at the cost
//!   of its block; `k` colluding proposers at the end of an epoch get up to `k` bits. This is
//!   Ethereum's RANDAO trade-off; a VDF would remove it.

use alloy_primitives::{B256, U256};
use phalanx_types::{Slot, ValidatorIndex};
use sha2::{Digest, Sha256};

use crate::registry::Registry;

/// The RANDAO mix at genesis.
pub fn genesis_mix(genesis_validators_root: B256) -> B256 {
    B256::from(<[u8; 32]>::from(
        Sha256::new()
            .chain_update(b"phalanx-randao-genesis")
            .chain_update(genesis_validators_root)
            .finalize(),
    ))
}

/// Mixes one RANDAO reveal into `mix`.
pub fn mix_in(mix: B256, reveal: &[u8]) -> B256 {
    let digest: [u8; 32] = Sha256::digest(reveal).into();
    let mut out = mix;
    for (o, d) in out.0.iter_mut().zip(digest) {
        *o ^= d;
    }
    out
}

/// The stake-weighted proposer of `slot` under `seed`; `None` if no validator has stake.
pub fn proposer(registry: &Registry, seed: B256, slot: Slot) -> Option<ValidatorIndex> {
    let total = registry.total_stake();
    if total == 0 {
        return None;
    }
    let digest: [u8; 32] = Sha256::new()
        .chain_update(seed)
        .chain_update(slot.0.to_le_bytes())
        .finalize()
        .into();
    let r = U256::from_be_bytes(digest) % U256::from(total);
    let mut target: u64 = r.to();
    for (i, v) in registry.validators().iter().enumerate() {
        if v.slashed {
            continue;
        }
        if target < v.stake {
            return Some(ValidatorIndex(i as u64));
        }
        target -= v.stake;
    }
    None
}
