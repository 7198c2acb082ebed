//! Slashing evidence and declarations between the live chain and a public network: evidence
//! heard from outside is judged before it is pooled, carried in a block and slashes; the
//! declarations the chain's validators sign and the evidence its observer finds come out to
//! be published.

use phalanx_consensus::slashing::{double_declaration, verify_signature};
use phalanx_consensus::testing::{double_vote, signed_declaration};
use phalanx_sim::chain::{EvidenceError, LiveChain};
use phalanx_spec::ChainSpec;
use phalanx_spec::devnet::{DevnetKeys, DevnetParams};
use phalanx_types::{Evidence, ProducerIndex, ValidatorIndex};

use crate::live_util::Empty;

fn chain(seed: &str) -> (LiveChain, DevnetKeys, u64) {
    let spec = ChainSpec::preset("minimal").unwrap();
    let spe = spec.slots_per_epoch;
    let mut params = DevnetParams::new(seed, spec);
    params.accounts = 0;
    params.executors = 0;
    let (chain, _, keys) = LiveChain::new(4, 2, params, Box::new(Empty), None).unwrap();
    (chain, keys, spe)
}

/// Advances in 100 ms steps until `done` or `slots` slots pass; whether `done`.
fn until(
    chain: &mut LiveChain,
    now: &mut u64,
    slots: u64,
    mut done: impl FnMut(&LiveChain) -> bool,
) -> bool {
    let end = *now + slots * chain.slot_ms();
    while *now < end {
        *now += 100;
        chain.advance(*now);
        if done(chain) {
            return true;
        }
    }
    false
}

/// Evidence on the canonical chain's bodies, as validator 0 sees it.
fn carried(chain: &LiveChain) -> Vec<Evidence> {
    let mut out = Vec::new();
    for b in chain.ancestry(chain.status().head.0) {
        let body = &b.block.body;
        out.extend(
            body.declaration_slashings
                .iter()
                .cloned()
                .map(Evidence::Declaration),
        );
        out.extend(
            body.attester_slashings
                .iter()
                .cloned()
                .map(Evidence::Attester),
        );
    }
    out
}

#[test]
fn evidence_from_the_network_is_judged_then_carried_and_slashes() {
    let (mut chain, keys, spe) = chain("evidence-in");
    let signing = chain.signing();
    let key = |v: usize| &keys.validators[v].1;
    let mut now = 0;
    until(&mut chain, &mut now, spe, |_| false);

    // Refused: messages that do not conflict, or not signed by the validator they name.
    let votes = double_vote(&signing, spe, ValidatorIndex(3), key(3), 1);
    let mut forged = votes.clone();
    forged.attestation_2 = double_vote(&signing, spe, ValidatorIndex(3), key(2), 1).attestation_2;
    assert_eq!(
        chain.submit_evidence(Evidence::Attester(forged)),
        Err(EvidenceError::NoOffence)
    );
    let mut same = votes.clone();
    same.attestation_2 = same.attestation_1.clone();
    assert_eq!(
        chain.submit_evidence(Evidence::Attester(same)),
        Err(EvidenceError::NoOffence)
    );
    until(&mut chain, &mut now, spe, |_| false);
    assert_eq!(
        chain.status().slashed,
        0,
        "refused evidence slashed someone"
    );
    assert!(carried(&chain).is_empty());

    // A double vote: taken once, carried in a block, the validator slashed.
    let double = Evidence::Attester(votes);
    assert_eq!(chain.submit_evidence(double.clone()), Ok(true));
    assert_eq!(
        chain.submit_evidence(double.clone()),
        Ok(false),
        "already pooled"
    );
    assert!(
        until(&mut chain, &mut now, 4 * spe, |c| c.status().slashed == 1),
        "the double vote was never carried"
    );
    assert_eq!(carried(&chain), vec![double.clone()]);
    assert_eq!(chain.submit_evidence(double), Ok(false), "already slashed");

    // A double declaration, made of two declarations heard apart.
    let parent = chain.status().head.0;
    let a = signed_declaration(
        &signing,
        spe,
        999,
        ValidatorIndex(2),
        key(2),
        parent,
        ProducerIndex(0),
    );
    let b = signed_declaration(
        &signing,
        spe,
        999,
        ValidatorIndex(2),
        key(2),
        parent,
        ProducerIndex(1),
    );
    let declared = Evidence::Declaration(double_declaration(&a, &b).unwrap());
    assert_eq!(chain.submit_evidence(declared.clone()), Ok(true));
    assert!(
        until(&mut chain, &mut now, 4 * spe, |c| c.status().slashed == 2),
        "the double declaration was never carried"
    );
    assert!(carried(&chain).contains(&declared));
}

#[test]
fn signed_declarations_and_found_evidence_come_out_for_publishing() {
    let (mut chain, keys, spe) = chain("evidence-out");
    let signing = chain.signing();
    let mut now = 0;
    until(&mut chain, &mut now, 2 * spe, |_| false);
    assert_eq!(
        chain.take_published(),
        Default::default(),
        "nothing is kept before publish()"
    );

    // Honest validators: one declaration per proposal, each signed by its proposer; no
    // evidence.
    chain.publish();
    until(&mut chain, &mut now, 2 * spe, |_| false);
    let out = chain.take_published();
    assert!(
        out.declarations.len() as u64 >= spe,
        "{} declarations",
        out.declarations.len()
    );
    for d in &out.declarations {
        let v = d.message.proposer_index.0 as usize;
        let key = keys.validators[v].1.public_key();
        assert!(verify_signature(
            signing.signing_root(&d.message),
            &key,
            &d.signature
        ));
    }
    let mut slots: Vec<u64> = out.declarations.iter().map(|d| d.message.slot.0).collect();
    slots.dedup();
    assert_eq!(
        slots.len(),
        out.declarations.len(),
        "two declarations for one slot"
    );
    assert!(out.evidence.is_empty());

    // Validator 3 equivocates: both of its declarations come out, and the evidence the
    // observer finds names it.
    chain.set_equivocators(1).unwrap();
    until(&mut chain, &mut now, 6 * spe, |c| c.status().slashed > 0);
    let out = chain.take_published();
    assert!(!out.evidence.is_empty(), "no evidence found");
    for e in &out.evidence {
        let v = match e {
            Evidence::Declaration(d) => d.declaration_1.message.proposer_index,
            Evidence::Attester(a) => a.attestation_1.attesting_indices[0],
        };
        assert_eq!(v, ValidatorIndex(3));
    }
    let by_3: Vec<_> = out
        .declarations
        .iter()
        .filter(|d| d.message.proposer_index == ValidatorIndex(3))
        .collect();
    let [first, second, ..] = by_3.as_slice() else {
        panic!("validator 3 declared {} times", by_3.len());
    };
    assert!(
        double_declaration(first, second).is_some(),
        "3's two declarations conflict"
    );
}
