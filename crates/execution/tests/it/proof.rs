//! Proofs of execution: a proof re-executes to the stateful result; forged, incomplete,
//! mismatched or garbled proofs are typed errors.

use alloy_primitives::{Address, B256, Bytes};
use phalanx_execution::proof::{ExecutionProof, ExecutionProofError, ProofShard};
use phalanx_execution::store::StateStore;
use phalanx_types::{Shard, TreeHash};
use ssz_types::VariableList;

use super::util::*;

fn shard(txs: &[Bytes]) -> Shard {
    Shard {
        transactions: VariableList::new(
            txs.iter()
                .map(|t| VariableList::new(t.to_vec()).unwrap())
                .collect(),
        )
        .unwrap(),
    }
}

#[test]
fn a_proof_reproduces_the_block_and_nothing_else_passes() {
    let store = StateStore::in_memory().unwrap();
    store.init_genesis(block_hash(0), &genesis(8, 2)).unwrap();
    let txs = vec![
        vec![
            transfer(&signer(0), 0, Address::repeat_byte(1), 5),
            transfer(&signer(0), 1, Address::repeat_byte(2), 6),
        ],
        vec![transfer(&signer(1), 0, contract(0), 0)],
    ];
    let shards: Vec<Shard> = txs.iter().map(|t| shard(t)).collect();
    let roots: Vec<B256> = shards.iter().map(TreeHash::tree_hash_root).collect();
    let view = store.view(block_hash(0)).unwrap();
    let parent = view.root();
    let stateful = store
        .execute(block_hash(0), block_hash(1), &env(1), &txs)
        .unwrap();

    let proof = ExecutionProof::build(&view, parent, &env(1), &shards).unwrap();
    let proof = ExecutionProof::from_bytes(&proof.to_bytes()).unwrap();
    let verified = proof.verify(parent, &roots, &env(1)).unwrap();
    assert_eq!(verified.post_state_root, stateful.post_state_root);
    let roots_of = |v: &phalanx_execution::proof::Verified| {
        v.effects_roots
            .iter()
            .map(|r| r.unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(roots_of(&verified), stateful.effects_roots());
    assert_eq!(verified.executed, 2);

    // Another parent state than the one trusted.
    assert!(matches!(
        proof.verify(B256::repeat_byte(9), &roots, &env(1)),
        Err(ExecutionProofError::WrongParent { .. })
    ));
    // Shards that are not the block's.
    let mut other = roots.clone();
    other[1] = B256::repeat_byte(1);
    assert_eq!(
        proof.verify(parent, &other, &env(1)),
        Err(ExecutionProofError::ShardMismatch(1))
    );
    assert_eq!(
        proof.verify(parent, &roots[..1], &env(1)),
        Err(ExecutionProofError::ShardMismatch(1))
    );
    // A forged node (one byte flipped) or a missing one: re-execution cannot find it.
    for cut in [false, true] {
        let mut bad = proof.clone();
        let mut nodes = bad.witness.nodes.to_vec();
        if cut {
            nodes.remove(0);
        } else {
            let mut n = nodes[0].to_vec();
            n[3] ^= 0x40;
            nodes[0] = VariableList::new(n).unwrap();
        }
        bad.witness.nodes = VariableList::new(nodes).unwrap();
        assert!(
            matches!(
                bad.verify(parent, &roots, &env(1)),
                Err(ExecutionProofError::Execution(_))
            ),
            "cut: {cut}"
        );
    }
    // Garbage bytes.
    assert!(matches!(
        ExecutionProof::from_bytes(&[0xff; 7]),
        Err(ExecutionProofError::Malformed(_))
    ));
}

#[test]
fn a_partial_proof_re_executes_only_the_disputed_shards() {
    let store = StateStore::in_memory().unwrap();
    store.init_genesis(block_hash(0), &genesis(8, 2)).unwrap();
    let txs = vec![
        vec![
            transfer(&signer(0), 0, Address::repeat_byte(1), 5),
            transfer(&signer(0), 1, Address::repeat_byte(2), 6),
        ],
        vec![transfer(&signer(1), 0, contract(0), 0)],
        vec![transfer(&signer(2), 0, Address::repeat_byte(3), 7)],
    ];
    let shards: Vec<Shard> = txs.iter().map(|t| shard(t)).collect();
    let roots: Vec<B256> = shards.iter().map(TreeHash::tree_hash_root).collect();
    let view = store.view(block_hash(0)).unwrap();
    let parent = view.root();
    let stateful = store
        .execute(block_hash(0), block_hash(1), &env(1), &txs)
        .unwrap();
    let truth = stateful.effects_roots();
    // Claimants dispute shard 0 and agree on shards 1 (a contract call: its code is not needed
    // unless it is re-executed) and 2.
    let agreed = vec![None, Some(truth[1]), Some(truth[2])];

    let full = ExecutionProof::build(&view, parent, &env(1), &shards).unwrap();
    let partial = ExecutionProof::build_partial(&view, parent, &env(1), &shards, &[0]).unwrap();
    let partial = ExecutionProof::from_bytes(&partial.to_bytes()).unwrap();
    assert_eq!(partial.executed_shards(), vec![0]);
    assert!(matches!(partial.shards[1], ProofShard::Agreed(_)));
    assert!(
        partial.witness.codes.is_empty(),
        "no code runs in the re-executed shard"
    );
    assert!(
        partial.witness.size() < full.witness.size(),
        "the partial witness ({} B) holds less than the full one ({} B)",
        partial.witness.size(),
        full.witness.size()
    );
    let verified = partial
        .verify_with(parent, &roots, &env(1), &agreed)
        .unwrap();
    assert_eq!(verified.post_state_root, stateful.post_state_root);
    assert_eq!(verified.executed, 1);
    assert_eq!(verified.effects_roots[0], Some(truth[0]));

    // All agreed: nothing re-executed, the block is only finished.
    let none = ExecutionProof::build_partial(&view, parent, &env(1), &shards, &[]).unwrap();
    let all: Vec<Option<B256>> = truth.iter().copied().map(Some).collect();
    let v = none.verify_with(parent, &roots, &env(1), &all).unwrap();
    assert_eq!(
        (v.post_state_root, v.executed),
        (stateful.post_state_root, 0)
    );

    // A verifier that agrees on nothing wants every shard re-executed.
    assert_eq!(
        partial.verify(parent, &roots, &env(1)),
        Err(ExecutionProofError::NotAgreed(1))
    );
    assert_eq!(
        partial.verify_with(parent, &roots, &env(1), &[None, None, Some(truth[2])]),
        Err(ExecutionProofError::NotAgreed(1))
    );
    // Effects that are not the agreed ones: another root agreed, or the effects altered.
    let mut other = agreed.clone();
    other[2] = Some(B256::repeat_byte(7));
    assert_eq!(
        partial.verify_with(parent, &roots, &env(1), &other),
        Err(ExecutionProofError::EffectsMismatch(2))
    );
    let mut altered = partial.clone();
    let mut parts = altered.shards.to_vec();
    if let ProofShard::Agreed(effects) = &mut parts[1] {
        let mut accounts = effects.accounts.to_vec();
        accounts[0].balance = B256::repeat_byte(0x11);
        effects.accounts = VariableList::new(accounts).unwrap();
    }
    altered.shards = VariableList::new(parts).unwrap();
    assert_eq!(
        altered.verify_with(parent, &roots, &env(1), &agreed),
        Err(ExecutionProofError::EffectsMismatch(1))
    );
    // The re-executed shard must still be the block's.
    let mut swapped = roots.clone();
    swapped[0] = roots[2];
    assert_eq!(
        partial.verify_with(parent, &swapped, &env(1), &agreed),
        Err(ExecutionProofError::ShardMismatch(0))
    );
}
