//! Attestation committees: every validator attests once per epoch.
//!
//! The committee of slot `s` is every validator `v` with `v mod SLOTS_PER_EPOCH = s mod
//! SLOTS_PER_EPOCH`, in index order; the position in that list is the validator's bit in an
//! aggregated attestation. (Not shuffled yet: a fixed assignment lets an adversary know the
//! committees far ahead; shuffling by the epoch's RANDAO seed is future work.)

use phalanx_types::{Attestation, Epoch, Slot, ValidatorIndex};

/// The slot of `epoch` at which `validator` attests.
pub fn attestation_slot(validator: ValidatorIndex, epoch: Epoch, slots_per_epoch: u64) -> Slot {
    let spe = slots_per_epoch.max(1);
    Slot(epoch.start_slot(spe).0.saturating_add(validator.0 % spe))
}

/// The committee of `slot` among `validators` validators, in bit order.
pub fn committee(validators: u64, slot: Slot, slots_per_epoch: u64) -> Vec<ValidatorIndex> {
    let spe = slots_per_epoch.max(1);
    (slot.0 % spe..validators)
        .step_by(spe as usize)
        .map(ValidatorIndex)
        .collect()
}

/// The members of `committee` an aggregated attestation's bits name (bit `i` is member `i`);
/// `None` when it has not one bit per member.
pub fn attesters<T: Copy>(committee: &[T], attestation: &Attestation) -> Option<Vec<T>> {
    let bits = &attestation.aggregation_bits;
    (bits.len() == committee.len()).then(|| {
        committee
            .iter()
            .enumerate()
            .filter(|(i, _)| bits.get(*i).unwrap_or(false))
            .map(|(_, v)| *v)
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_validator_attests_once_per_epoch_in_its_committee() {
        let (n, spe) = (21u64, 8u64);
        let mut seen = vec![0u32; n as usize];
        for s in 16..24 {
            for v in committee(n, Slot(s), spe) {
                seen[v.0 as usize] += 1;
                assert_eq!(attestation_slot(v, Epoch(2), spe), Slot(s));
            }
        }
        assert!(seen.iter().all(|c| *c == 1));
        assert_eq!(
            committee(n, Slot(3), spe),
            vec![ValidatorIndex(3), ValidatorIndex(11), ValidatorIndex(19)]
        );
    }
}
