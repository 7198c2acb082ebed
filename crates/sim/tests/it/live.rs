//! The live chain with validators whose keys are held outside it (a distributed validator
//! behind the validator API): duties out, signatures in.

use phalanx_crypto::SecretKey;
use phalanx_sim::chain::{ExternalData, LiveChain, SignedExternal, SubmitError};
use phalanx_spec::ChainSpec;
use phalanx_spec::devnet::DevnetParams;
use phalanx_types::signing::SigningContext;

use crate::live_util::Empty;

fn chain() -> (LiveChain, Vec<SecretKey>) {
    let spec = ChainSpec::preset("devnet").unwrap();
    let mut params = DevnetParams::new("live-external", spec);
    params.accounts = 0;
    params.executors = 0;
    let (chain, _, keys) = LiveChain::new(4, 2, params, Box::new(Empty), None).unwrap();
    (chain, keys.validators.into_iter().map(|(_, k)| k).collect())
}

fn sign(
    signing: &SigningContext,
    key: &SecretKey,
    duty_data: &ExternalData,
) -> phalanx_crypto::SignatureBytes {
    match duty_data {
        ExternalData::Randao(e) => signing.sign(e, key),
        ExternalData::Declaration(d) => signing.sign(d, key),
        ExternalData::Attestation(a) => signing.sign(a, key),
    }
}

/// Runs `epochs` epochs in 50 ms steps; the external validators' duties are signed with
/// their keys when `sign_duties`. Returns the finalized epoch and the duties seen.
fn run(chain: &mut LiveChain, keys: &[SecretKey], epochs: u64, sign_duties: bool) -> (u64, usize) {
    let signing = chain.signing();
    let end = epochs * 8 * chain.slot_ms();
    let mut seen = 0;
    let mut now = 0;
    while now < end {
        now += 50;
        chain.advance(now);
        for duty in chain.take_duties() {
            seen += 1;
            if !sign_duties {
                continue;
            }
            let signature = sign(&signing, &keys[duty.validator as usize], &duty.data);
            chain
                .submit(SignedExternal {
                    validator: duty.validator,
                    slot: duty.slot,
                    data: duty.data,
                    signature,
                })
                .unwrap();
        }
    }
    (chain.status().finalized.epoch.0, seen)
}

#[test]
fn external_validators_signing_their_duties_make_finality_possible() {
    // Validators 2 and 3 (half the stake) are external: without their signatures no
    // checkpoint reaches two thirds; with them the chain finalizes.
    let (mut silent, keys) = chain();
    silent.set_external([2, 3]).unwrap();
    let (finalized, duties) = run(&mut silent, &keys, 5, false);
    assert_eq!(finalized, 0);
    assert!(duties > 0);

    let (mut signed, keys) = chain();
    signed.set_external([2, 3]).unwrap();
    let (finalized, duties) = run(&mut signed, &keys, 5, true);
    assert!(finalized >= 3, "finalized epoch {finalized}");
    // Both validators attest each epoch; each proposal is a reveal then a declaration.
    assert!(duties >= 2 * 5, "{duties} duties");
}

#[test]
fn submissions_are_checked_before_they_are_relayed() {
    let (mut chain, keys) = chain();
    assert!(
        chain.set_external([0]).is_err(),
        "the observer cannot be external"
    );
    chain.set_external([2, 3]).unwrap();
    let signing = chain.signing();
    let mut now = 0;
    let duty = loop {
        now += 50;
        chain.advance(now);
        if let Some(d) = chain
            .take_duties()
            .into_iter()
            .find(|d| matches!(d.data, ExternalData::Attestation(_)))
        {
            break d;
        }
    };
    let ExternalData::Attestation(data) = duty.data.clone() else {
        unreachable!()
    };
    let signed = |data: ExternalData, key: &SecretKey| SignedExternal {
        validator: duty.validator,
        slot: duty.slot,
        signature: sign(&signing, key, &data),
        data,
    };
    let key = &keys[duty.validator as usize];
    // Signed by another key.
    assert_eq!(
        chain.submit(signed(duty.data.clone(), &keys[1])),
        Err(SubmitError::BadSignature)
    );
    // A validator the chain signs for itself.
    let mut own = signed(duty.data.clone(), &keys[1]);
    own.validator = 1;
    assert_eq!(chain.submit(own), Err(SubmitError::NotExternal(1)));
    // Once, twice (idempotent), then different data for the same duty (refused).
    chain.submit(signed(duty.data.clone(), key)).unwrap();
    chain.submit(signed(duty.data.clone(), key)).unwrap();
    let mut other = data.clone();
    other.head_root = other.target.root;
    other.head_root.0[0] ^= 1;
    assert_eq!(
        chain.submit(signed(ExternalData::Attestation(other), key)),
        Err(SubmitError::Conflict)
    );
    // Far from the current slot.
    let mut old = data;
    old.slot = phalanx_types::Slot(duty.slot + 10);
    let mut late = signed(ExternalData::Attestation(old), key);
    late.slot = duty.slot + 10;
    assert!(matches!(chain.submit(late), Err(SubmitError::Stale { .. })));
}

#[test]
fn every_validators_vote_reaches_the_block_bodies() {
    // The FFG source is the highest checkpoint justified *before* the vote's epoch: a target
    // justified by an epoch's earlier committees does not make its later ones skip their
    // vote, so the bodies carry every validator's vote and a follower counting only bodies
    // finalizes even with 4 validators (3 of 4 is over two thirds, 2 of 4 is not).
    let (mut chain, _) = chain();
    let spe = ChainSpec::preset("devnet").unwrap().slots_per_epoch;
    let end = 6 * spe * chain.slot_ms();
    let mut now = 0;
    while now < end {
        now += 50;
        chain.advance(now);
    }
    let mut voters: std::collections::BTreeMap<u64, std::collections::BTreeSet<u64>> =
        Default::default();
    for b in chain.ancestry(chain.status().head.0) {
        for a in b.block.body.attestations.iter() {
            let members = phalanx_consensus::committee::committee(4, a.data.slot, spe);
            let signers = phalanx_consensus::committee::attesters(&members, a).unwrap();
            voters
                .entry(a.data.target.epoch.0)
                .or_default()
                .extend(signers.iter().map(|v| v.0));
        }
    }
    for epoch in 1..=4 {
        assert_eq!(
            voters.get(&epoch).map(|v| v.len()),
            Some(4),
            "epoch {epoch}: the bodies carry the votes of {:?}",
            voters.get(&epoch)
        );
    }
}
