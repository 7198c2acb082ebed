//! Duties cover each proposal slot exactly once across validators, and one attestation each.

use alloy_primitives::B256;
use phalanx_consensus::Registry;
use phalanx_consensus::proposer::{genesis_mix, proposer};
use phalanx_spec::ChainSpec;
use phalanx_spec::devnet::{self, DevnetParams};
use phalanx_types::{Epoch, Slot, ValidatorIndex};
use phalanx_validator::duties::duties;

#[test]
fn each_slot_has_exactly_one_proposer_duty() {
    let (genesis, _) = devnet::generate(&DevnetParams::new(
        "duties",
        ChainSpec::preset("devnet").unwrap(),
    ))
    .unwrap();
    let registry = Registry::from_genesis(&genesis).unwrap();
    let seed = genesis_mix(B256::repeat_byte(3));
    let mut proposals = Vec::new();
    for v in 0..8u64 {
        let d = duties(&registry, seed, ValidatorIndex(v), Epoch(5), 8);
        assert_eq!(d.attestation.epoch(8), Epoch(5));
        proposals.extend(d.proposals.iter().map(|s| (*s, v)));
    }
    proposals.sort();
    assert_eq!(proposals.len(), 8);
    for (s, v) in proposals {
        assert_eq!(proposer(&registry, seed, s), Some(ValidatorIndex(v)));
        assert!((40..48).contains(&s.0), "{:?}", Slot(s.0));
    }
}
