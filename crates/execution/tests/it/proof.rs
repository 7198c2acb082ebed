//! Proofs of execution: a proof re-executes to the stateful result; forged, incomplete,
//! mismatched or garbled proofs are typed errors.

use alloy_primitives::{Address, B256, Bytes};
use phalanx_execution::proof::{ExecutionProof, ExecutionProofError};
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
    assert_eq!(verified.effects_roots, stateful.effects_roots());

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
