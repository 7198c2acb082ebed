//! LMD-GHOST, FFG justification and finality, slashable votes, fraud-proven blocks.

use alloy_primitives::B256;
use phalanx_consensus::fork_choice::{EvidenceKind, ForkChoice, ForkChoiceError, VoteOutcome};
use phalanx_types::{AttestationData, Checkpoint, Epoch, Slot, ValidatorIndex};

const SPE: u64 = 4;

fn r(n: u8) -> B256 {
    B256::repeat_byte(n)
}

fn genesis() -> B256 {
    r(0xff)
}

fn cp(epoch: u64, root: B256) -> Checkpoint {
    Checkpoint {
        epoch: Epoch(epoch),
        root,
    }
}

fn vote(head: B256, source: Checkpoint, target: Checkpoint) -> AttestationData {
    AttestationData {
        slot: Slot(target.epoch.0 * SPE),
        committee_index: 0,
        head_root: head,
        source,
        target,
    }
}

/// genesis ← a(1) ← b(4) ← c(8), and a fork genesis ← x(2) ← y(5).
fn tree() -> ForkChoice {
    let mut fc = ForkChoice::new(genesis(), vec![10; 6], SPE);
    fc.on_block(r(1), genesis(), Slot(1)).unwrap();
    fc.on_block(r(2), r(1), Slot(4)).unwrap();
    fc.on_block(r(3), r(2), Slot(8)).unwrap();
    fc.on_block(r(0x10), genesis(), Slot(2)).unwrap();
    fc.on_block(r(0x11), r(0x10), Slot(5)).unwrap();
    fc
}

#[test]
fn head_follows_the_heavier_subtree() {
    let mut fc = tree();
    let g = cp(0, genesis());
    for v in 0..2 {
        fc.on_attestation(ValidatorIndex(v), &vote(r(0x11), g.clone(), cp(1, r(0x10))))
            .unwrap();
    }
    assert_eq!(fc.head(), r(0x11));
    for v in 2..5 {
        fc.on_attestation(ValidatorIndex(v), &vote(r(3), g.clone(), cp(1, r(2))))
            .unwrap();
    }
    assert_eq!(fc.head(), r(3));
    // A fraud proof against b removes b and c from the head's reach.
    fc.on_fraud_proof(r(2));
    assert_eq!(fc.head(), r(0x11));
}

#[test]
fn two_thirds_justify_and_consecutive_justification_finalizes() {
    let mut fc = tree();
    let g = cp(0, genesis());
    let e1 = cp(1, r(2));
    assert_eq!(fc.checkpoint(r(3), Epoch(1)), e1);
    // 3 of 6 validators: not enough.
    for v in 0..3 {
        fc.on_attestation(ValidatorIndex(v), &vote(r(2), g.clone(), e1.clone()))
            .unwrap();
    }
    assert_eq!(fc.justified(), &g);
    // The 4th brings 40/60 = 2/3: epoch 1 justified; genesis → epoch 1 is consecutive, so
    // genesis is final (it already was).
    fc.on_attestation(ValidatorIndex(3), &vote(r(2), g.clone(), e1.clone()))
        .unwrap();
    assert_eq!(fc.justified(), &e1);
    assert_eq!(fc.finalized(), &g);
    let e2 = cp(2, r(3));
    for v in 0..4 {
        fc.on_attestation(ValidatorIndex(v), &vote(r(3), e1.clone(), e2.clone()))
            .unwrap();
    }
    assert_eq!(fc.justified(), &e2);
    assert_eq!(fc.finalized(), &e1);
    // A block that does not descend from the finalized checkpoint is refused.
    assert_eq!(
        fc.on_block(r(0x12), r(0x11), Slot(9)),
        Err(ForkChoiceError::ConflictsWithFinality)
    );
    // So is a fraud proof against a final block: finality is not undone.
    fc.on_fraud_proof(r(2));
    assert_eq!(fc.head(), r(3));
}

#[test]
fn a_split_vote_justifies_nothing() {
    let mut fc = tree();
    let g = cp(0, genesis());
    for v in 0..3 {
        fc.on_attestation(ValidatorIndex(v), &vote(r(2), g.clone(), cp(1, r(2))))
            .unwrap();
    }
    for v in 3..6 {
        fc.on_attestation(ValidatorIndex(v), &vote(r(0x11), g.clone(), cp(1, r(0x10))))
            .unwrap();
    }
    assert_eq!(fc.justified(), &g);
    assert_eq!(fc.finalized(), &g);
}

#[test]
fn double_and_surround_votes_are_evidence_not_weight() {
    let mut fc = tree();
    let g = cp(0, genesis());
    let v = ValidatorIndex(0);
    assert_eq!(
        fc.on_attestation(v, &vote(r(2), g.clone(), cp(1, r(2))))
            .unwrap(),
        VoteOutcome::Counted
    );
    assert_eq!(
        fc.on_attestation(v, &vote(r(2), g.clone(), cp(1, r(2))))
            .unwrap(),
        VoteOutcome::Duplicate
    );
    match fc
        .on_attestation(v, &vote(r(0x11), g.clone(), cp(1, r(0x10))))
        .unwrap()
    {
        VoteOutcome::Slashable(e) => assert_eq!(e.kind, EvidenceKind::DoubleVote),
        other => panic!("expected a double vote, got {other:?}"),
    }
    // 1 → 3 after 1 → ... : votes 0→1 recorded; now 2→3 then 1→4 surrounds it.
    let w = ValidatorIndex(1);
    fc.on_attestation(w, &vote(r(3), cp(1, r(2)), cp(2, r(3))))
        .unwrap();
    match fc
        .on_attestation(w, &vote(r(3), g.clone(), cp(3, r(3))))
        .unwrap()
    {
        VoteOutcome::Slashable(e) => assert_eq!(e.kind, EvidenceKind::SurroundVote),
        other => panic!("expected a surround vote, got {other:?}"),
    }
    assert_eq!(fc.evidence().len(), 2);
}

#[test]
fn inconsistent_votes_and_blocks_are_refused() {
    let mut fc = tree();
    let g = cp(0, genesis());
    assert!(matches!(
        fc.on_block(r(9), r(8), Slot(3)),
        Err(ForkChoiceError::UnknownParent(_))
    ));
    assert!(matches!(
        fc.on_block(r(9), r(3), Slot(8)),
        Err(ForkChoiceError::SlotNotAfterParent { .. })
    ));
    // Head not a descendant of the target.
    assert!(matches!(
        fc.on_attestation(ValidatorIndex(0), &vote(r(0x11), g.clone(), cp(1, r(2)))),
        Err(ForkChoiceError::InconsistentVote(_))
    ));
    assert!(matches!(
        fc.on_attestation(ValidatorIndex(0), &vote(r(0x77), g.clone(), cp(1, r(2)))),
        Err(ForkChoiceError::UnknownBlock(_))
    ));
    assert!(matches!(
        fc.on_attestation(ValidatorIndex(99), &vote(r(2), g, cp(1, r(2)))),
        Err(ForkChoiceError::UnknownValidator(99))
    ));
}

#[test]
fn the_source_for_an_epoch_is_the_best_justified_before_it_on_the_heads_chain() {
    let mut fc = tree();
    let g = cp(0, genesis());
    assert_eq!(
        fc.source_for(r(3), Epoch(0)),
        None,
        "nothing before epoch 0"
    );
    // Epoch 1 justified on a ← b ← c during epoch 1.
    let e1 = cp(1, r(2));
    for v in 0..4 {
        fc.on_attestation(ValidatorIndex(v), &vote(r(2), g.clone(), e1.clone()))
            .unwrap();
    }
    assert_eq!(fc.justified(), &e1);
    // Epoch 1's later attesters still vote from genesis (a source in epoch 1 would leave
    // them no target); epoch 2's vote from epoch 1.
    assert_eq!(fc.source_for(r(3), Epoch(1)), Some(g.clone()));
    assert_eq!(fc.source_for(r(3), Epoch(2)), Some(e1));
    // On the fork, epoch 1's checkpoint is not an ancestor: genesis it is.
    assert_eq!(fc.source_for(r(0x11), Epoch(2)), Some(g));
}
