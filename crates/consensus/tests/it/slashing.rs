//! Slashing evidence as gossip judges it: `offender` names the validator exactly when the
//! evidence shows an offence under valid signatures, for both kinds; `double_declaration`
//! pairs only conflicting declarations of one proposer for one slot; the union encoding
//! round-trips and refuses unknown selectors.

use alloy_primitives::B256;
use phalanx_consensus::Registry;
use phalanx_consensus::slashing::{double_declaration, offender, verify_signature};
use phalanx_consensus::testing::{double_vote, signed_declaration};
use phalanx_spec::ChainSpec;
use phalanx_spec::devnet::{self, DevnetParams};
use phalanx_types::*;
use ssz::{Decode, Encode};

#[test]
fn offender_names_exactly_the_validator_whose_signed_messages_conflict() {
    let params = DevnetParams::new("slashing", ChainSpec::preset("devnet").unwrap());
    let (genesis, keys) = devnet::generate(&params).unwrap();
    let registry = Registry::from_genesis(&genesis).unwrap();
    let signing = genesis.signing_context();
    let spe = genesis.spec.slots_per_epoch;
    let judge = |e: &Evidence| offender(e, &registry, &signing, &mut verify_signature);
    let (v3, k3) = (ValidatorIndex(3), &keys.validators[3].1);
    let k4 = &keys.validators[4].1;

    // A double vote.
    let votes = double_vote(&signing, spe, v3, k3, 2);
    assert_eq!(judge(&Evidence::Attester(votes.clone())), Some(v3));
    // The same vote twice is no offence; nor is a vote signed by someone else.
    let mut same = votes.clone();
    same.attestation_2 = same.attestation_1.clone();
    assert_eq!(judge(&Evidence::Attester(same)), None);
    let mut forged = votes.clone();
    forged.attestation_2 = double_vote(&signing, spe, v3, k4, 2).attestation_2;
    assert_eq!(judge(&Evidence::Attester(forged)), None);
    // Different target epochs, neither surrounding the other: no offence.
    let mut later = votes.clone();
    later.attestation_2 = double_vote(&signing, spe, v3, k3, 3).attestation_2;
    assert_eq!(judge(&Evidence::Attester(later)), None);

    // A double declaration, built from two declarations heard apart.
    let parent = B256::repeat_byte(7);
    let a = signed_declaration(&signing, spe, 9, v3, k3, parent, ProducerIndex(0));
    let b = signed_declaration(&signing, spe, 9, v3, k3, parent, ProducerIndex(1));
    let evidence = double_declaration(&a, &b).expect("a conflict");
    assert_eq!(judge(&Evidence::Declaration(evidence.clone())), Some(v3));
    assert_eq!(
        double_declaration(&a, &a),
        None,
        "the same declaration twice"
    );
    let other_slot = signed_declaration(&signing, spe, 10, v3, k3, parent, ProducerIndex(1));
    assert_eq!(double_declaration(&a, &other_slot), None);
    let other_proposer = signed_declaration(
        &signing,
        spe,
        9,
        ValidatorIndex(4),
        k4,
        parent,
        ProducerIndex(1),
    );
    assert_eq!(double_declaration(&a, &other_proposer), None);
    // Shaped right but signed by another key.
    let mut forged = evidence.clone();
    forged.declaration_2.signature = signing.sign(&forged.declaration_2.message, k4);
    assert_eq!(judge(&Evidence::Declaration(forged)), None);
    // An unknown validator.
    let mut unknown = evidence.clone();
    unknown.declaration_1.message.proposer_index = ValidatorIndex(10_000);
    unknown.declaration_2.message.proposer_index = ValidatorIndex(10_000);
    assert_eq!(judge(&Evidence::Declaration(unknown)), None);

    // The union encoding: selector, then the evidence; nothing else decodes.
    for e in [Evidence::Attester(votes), Evidence::Declaration(evidence)] {
        let bytes = e.as_ssz_bytes();
        assert_eq!(Evidence::from_ssz_bytes(&bytes).unwrap(), e);
        let mut wrong = bytes.clone();
        wrong[0] = 2;
        assert!(Evidence::from_ssz_bytes(&wrong).is_err());
        assert!(Evidence::from_ssz_bytes(&bytes[..bytes.len() - 1]).is_err());
    }
    assert!(Evidence::from_ssz_bytes(&[]).is_err());
}
