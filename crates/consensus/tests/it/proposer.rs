//! Proposer selection is stake-weighted, deterministic, and skips slashed validators.

use alloy_primitives::B256;
use phalanx_consensus::Registry;
use phalanx_consensus::proposer::{genesis_mix, mix_in, proposer};
use phalanx_spec::ChainSpec;
use phalanx_spec::devnet::{self, DevnetParams};
use phalanx_types::{Slot, ValidatorIndex};

fn registry(stakes: &[u64]) -> Registry {
    let mut params = DevnetParams::new("proposer", ChainSpec::preset("devnet").unwrap());
    params.validators = stakes.len() as u32;
    let (mut genesis, _) = devnet::generate(&params).unwrap();
    for (v, s) in genesis.validators.iter_mut().zip(stakes) {
        v.amount = *s;
    }
    Registry::from_genesis(&genesis).unwrap()
}

#[test]
fn proposals_follow_stake() {
    let gwei = 1_000_000_000u64;
    let reg = registry(&[32 * gwei, 96 * gwei, 32 * gwei, 160 * gwei]);
    let seed = genesis_mix(B256::repeat_byte(5));
    let mut counts = [0u32; 4];
    for slot in 0..20_000u64 {
        counts[proposer(&reg, seed, Slot(slot)).unwrap().0 as usize] += 1;
    }
    // Expected shares 1/10, 3/10, 1/10, 5/10 of 20,000; allow ±6 standard deviations.
    for (count, share) in counts.iter().zip([0.1f64, 0.3, 0.1, 0.5]) {
        let expected = 20_000.0 * share;
        let sd = (20_000.0 * share * (1.0 - share)).sqrt();
        assert!(
            (f64::from(*count) - expected).abs() < 6.0 * sd,
            "{counts:?}"
        );
    }
    // Deterministic in (seed, slot); another seed gives another schedule.
    assert_eq!(proposer(&reg, seed, Slot(7)), proposer(&reg, seed, Slot(7)));
    let other = mix_in(seed, &[1, 2, 3]);
    assert_ne!(other, seed);
    let differs =
        (0..64u64).any(|s| proposer(&reg, seed, Slot(s)) != proposer(&reg, other, Slot(s)));
    assert!(differs);
}

#[test]
fn slashed_validators_never_propose() {
    let gwei = 1_000_000_000u64;
    let mut reg = registry(&[32 * gwei; 4]);
    reg.slash_validator(ValidatorIndex(2));
    let seed = genesis_mix(B256::ZERO);
    assert!((0..2_000u64).all(|s| proposer(&reg, seed, Slot(s)) != Some(ValidatorIndex(2))));
    assert_eq!(reg.total_stake(), 96 * gwei);
}

#[test]
fn slashing_penalises_once_and_ejects() {
    use phalanx_consensus::registry::SLASHING_PENALTY_QUOTIENT;
    use phalanx_types::ProducerIndex;
    let gwei = 1_000_000_000u64;
    let mut reg = registry(&[32 * gwei; 3]);
    assert_eq!(
        reg.slash_validator(ValidatorIndex(1)),
        32 * gwei / SLASHING_PENALTY_QUOTIENT
    );
    assert_eq!(
        reg.slash_validator(ValidatorIndex(1)),
        0,
        "slashing twice changes nothing more"
    );
    assert_eq!(reg.validator(ValidatorIndex(1)).unwrap().stake, 31 * gwei);
    assert_eq!(
        reg.total_stake(),
        64 * gwei,
        "an ejected validator has no weight"
    );
    let bond = reg.producer(ProducerIndex(0)).unwrap().bond;
    assert!(bond > 0);
    assert_eq!(reg.slash_producer(ProducerIndex(0)), bond);
    assert_eq!(reg.producer(ProducerIndex(0)).unwrap().bond, 0);
    assert_eq!(reg.slash_validator(ValidatorIndex(99)), 0);
}
