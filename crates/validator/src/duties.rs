//! A validator's duties in an epoch: the slots it proposes at and the slot it attests at.
//!
//! Proposers come from the epoch's RANDAO seed (the mix at the end of the previous epoch on
//! the chain the validator follows), so the proposal duties of epoch `e` are known from the
//! start of `e`; the attestation slot is fixed by the committee rule.

use alloy_primitives::B256;
use phalanx_consensus::Registry;
use phalanx_consensus::committee::attestation_slot;
use phalanx_consensus::proposer::proposer;
use phalanx_types::{Epoch, Slot, ValidatorIndex};

/// What one validator must do in one epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duties {
    /// Slots at which it proposes (signs a declaration).
    pub proposals: Vec<Slot>,
    /// The slot at which it attests.
    pub attestation: Slot,
}

/// The duties of `validator` in `epoch` under `seed`.
pub fn duties(
    registry: &Registry,
    seed: B256,
    validator: ValidatorIndex,
    epoch: Epoch,
    slots_per_epoch: u64,
) -> Duties {
    let start = epoch.start_slot(slots_per_epoch).0;
    let proposals = (start..start.saturating_add(slots_per_epoch))
        .map(Slot)
        .filter(|s| proposer(registry, seed, *s) == Some(validator))
        .collect();
    Duties {
        proposals,
        attestation: attestation_slot(validator, epoch, slots_per_epoch),
    }
}
