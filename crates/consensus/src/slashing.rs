//! Slashing evidence as block operations: what importing a block's `declaration_slashings`
//! and `attester_slashings` does — the rule every node applies at import, and that a light
//! client applies to the blocks it follows so that its registry (the proposer schedule, the
//! stake behind finality) stays the chain's.
//!
//! 1. **Double declaration.** Two declarations for the same slot by the same proposer that
//!    differ, both signed by that validator, slash it.
//! 2. **Double or surround vote.** Two attestations by the same validator (the first
//!    attesting index of each) whose data differ and that have the same target epoch, or one
//!    of which surrounds the other (`s1 < s2 ∧ t2 < t1`, or the reverse), both signed by it,
//!    slash it.
//! 3. **Effect.** The validator loses `1 / SLASHING_PENALTY_QUOTIENT` of its stake and is
//!    ejected: no proposals, no weight in fork choice or finality
//!    ([`Registry::slash_validator`]); slashing twice changes nothing more.
//!
//! Evidence that does not show an offence (other slots, other validators, the same message
//! twice, a bad signature, an unknown validator) is skipped: it changes nothing and does not
//! make the block invalid.
//!
//! The same rules judge evidence before it reaches a block: a node takes [`Evidence`] from the
//! `slashing` gossip topic only if [`offender`] names someone, and builds it itself from two
//! declarations heard on the `declaration` topic ([`double_declaration`]).

use phalanx_crypto::{PublicKey, SignatureBytes};
use phalanx_types::{
    AttesterSlashing, BlockBody, DeclarationSlashing, Evidence, Root, SignedDeclaration,
    SigningContext, ValidatorIndex,
};

use crate::registry::Registry;

/// Rule 1: the validator `e` shows double-declaring, if it does. `verify(signing root, key,
/// signature)` checks a signature (a simulator may cache it).
pub fn declaration_offender(
    e: &DeclarationSlashing,
    registry: &Registry,
    signing: &SigningContext,
    verify: &mut dyn FnMut(Root, &PublicKey, &SignatureBytes) -> bool,
) -> Option<ValidatorIndex> {
    let (a, b) = (&e.declaration_1, &e.declaration_2);
    let v = a.message.proposer_index;
    if a.message.slot != b.message.slot || v != b.message.proposer_index || a.message == b.message {
        return None;
    }
    let key = registry.validator(v)?.pubkey;
    (verify(signing.signing_root(&a.message), &key, &a.signature)
        && verify(signing.signing_root(&b.message), &key, &b.signature))
    .then_some(v)
}

/// Rule 2: the validator `e` shows double- or surround-voting, if it does.
pub fn attester_offender(
    e: &AttesterSlashing,
    registry: &Registry,
    signing: &SigningContext,
    verify: &mut dyn FnMut(Root, &PublicKey, &SignatureBytes) -> bool,
) -> Option<ValidatorIndex> {
    let (a, b) = (&e.attestation_1, &e.attestation_2);
    let (va, vb) = (a.attesting_indices.first()?, b.attesting_indices.first()?);
    let (s1, t1, s2, t2) = (
        a.data.source.epoch,
        a.data.target.epoch,
        b.data.source.epoch,
        b.data.target.epoch,
    );
    let slashable = a.data != b.data && (t1 == t2 || (s1 < s2 && t2 < t1) || (s2 < s1 && t1 < t2));
    if va != vb || !slashable {
        return None;
    }
    let key = registry.validator(*va)?.pubkey;
    (verify(signing.signing_root(&a.data), &key, &a.signature)
        && verify(signing.signing_root(&b.data), &key, &b.signature))
    .then_some(*va)
}

/// Rule 1 or 2, whichever `e` is evidence for: the validator it shows offending, if it does.
pub fn offender(
    e: &Evidence,
    registry: &Registry,
    signing: &SigningContext,
    verify: &mut dyn FnMut(Root, &PublicKey, &SignatureBytes) -> bool,
) -> Option<ValidatorIndex> {
    match e {
        Evidence::Declaration(d) => declaration_offender(d, registry, signing, verify),
        Evidence::Attester(a) => attester_offender(a, registry, signing, verify),
    }
}

/// Rule 1's shape without the signatures: `second` is evidence with `first` if both are by
/// one proposer for one slot and differ (the signatures are [`declaration_offender`]'s job).
pub fn double_declaration(
    first: &SignedDeclaration,
    second: &SignedDeclaration,
) -> Option<DeclarationSlashing> {
    let (a, b) = (&first.message, &second.message);
    (a.slot == b.slot && a.proposer_index == b.proposer_index && a != b).then(|| {
        DeclarationSlashing {
            declaration_1: first.clone(),
            declaration_2: second.clone(),
        }
    })
}

/// Rules 1–3 for a whole body: slashes every offender its evidence shows in `registry` and
/// returns those not slashed before, in body order.
pub fn apply_slashings(
    body: &BlockBody,
    registry: &mut Registry,
    signing: &SigningContext,
    verify: &mut dyn FnMut(Root, &PublicKey, &SignatureBytes) -> bool,
) -> Vec<ValidatorIndex> {
    let mut offenders: Vec<ValidatorIndex> = body
        .declaration_slashings
        .iter()
        .filter_map(|e| declaration_offender(e, registry, signing, verify))
        .collect();
    offenders.extend(
        body.attester_slashings
            .iter()
            .filter_map(|e| attester_offender(e, registry, signing, verify)),
    );
    let mut newly = Vec::new();
    for v in offenders {
        let before = registry.validator(v).is_some_and(|x| x.slashed);
        registry.slash_validator(v);
        if !before {
            newly.push(v);
        }
    }
    newly
}

/// A `verify` that checks every signature (no cache).
pub fn verify_signature(root: Root, key: &PublicKey, signature: &SignatureBytes) -> bool {
    phalanx_crypto::Signature::try_from(signature).is_ok_and(|s| s.verify(key, root.as_slice()))
}
