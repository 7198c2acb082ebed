//! Witnesses: stateless re-execution equals stateful execution; conflict proofs.

use alloy_primitives::{Address, B256, Bytes};
use phalanx_execution::block::{BlockResult, VoidReason};
use phalanx_execution::conflict::{ConflictProof, ConflictProofError};
use phalanx_execution::store::StateStore;
use phalanx_execution::witness::{Witness, execute_stateless, execute_with_witness};
use phalanx_types::Shard;
use proptest::prelude::*;
use ssz_types::VariableList;

use super::util::*;

/// A random block: each entry is (shard, sender, action) where action 0..8 pays one of a few
/// recipients (so shards may conflict) and 8/9 bumps one of two counters.
fn random_shards(spec: &[(u8, u8, u8)], shards: usize) -> Vec<Vec<Bytes>> {
    let mut out = vec![Vec::new(); shards];
    let mut nonces = [0u64; 8];
    for &(shard, sender, action) in spec {
        let s = usize::from(sender % 8);
        let key = signer(s as u64);
        let raw = if action % 10 < 8 {
            transfer(
                &key,
                nonces[s],
                Address::repeat_byte(0x40 + action % 4),
                1 + u64::from(action),
            )
        } else {
            sign(
                tx(nonces[s], contract(u64::from(action % 2)), 0, 60_000),
                &key,
            )
        };
        nonces[s] += 1;
        out[usize::from(shard) % shards].push(raw);
    }
    out
}

fn same(a: &BlockResult, b: &BlockResult) {
    assert_eq!(a.post_state_root, b.post_state_root);
    assert_eq!(a.effects_roots(), b.effects_roots());
    assert_eq!(a.void, b.void);
    assert_eq!(a.fees, b.fees);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn stateless_execution_matches_stateful(
        spec in prop::collection::vec((0u8..4, 0u8..8, 0u8..10), 1..40),
        shards in 1usize..5,
    ) {
        let store = StateStore::in_memory().unwrap();
        store.init_genesis(block_hash(0), &genesis(8, 2)).unwrap();
        let shards = random_shards(&spec, shards);
        // Stateful: flat reads through the store's overlays and database.
        let stateful = store.execute(block_hash(0), block_hash(1), &env(1), &shards).unwrap();
        // The same block read straight from the trie, recording a witness.
        let view = store.view(block_hash(0)).unwrap();
        let (recorded, witness) = execute_with_witness(&view, &view, view.root(), &env(1), &shards).unwrap();
        same(&stateful, &recorded);
        // Stateless: the witness alone, after an SSZ round trip.
        let witness = Witness::from_bytes(&witness.to_bytes()).unwrap();
        let stateless = execute_stateless(&witness, &env(1), &shards).unwrap();
        same(&stateful, &stateless);
    }
}

#[test]
fn a_witness_missing_a_node_is_a_typed_error() {
    let store = StateStore::in_memory().unwrap();
    store.init_genesis(block_hash(0), &genesis(8, 2)).unwrap();
    let shards = vec![
        vec![transfer(&signer(0), 0, Address::repeat_byte(1), 1)],
        vec![transfer(&signer(1), 0, Address::repeat_byte(2), 1)],
    ];
    let view = store.view(block_hash(0)).unwrap();
    let (_, mut witness) =
        execute_with_witness(&view, &view, view.root(), &env(1), &shards).unwrap();
    let mut nodes: Vec<_> = witness.nodes.to_vec();
    nodes.remove(0);
    witness.nodes = VariableList::new(nodes).unwrap();
    let err = execute_stateless(&witness, &env(1), &shards).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    // Forging a node (changing its bytes) also leaves its hash unresolvable.
    let (_, mut forged) =
        execute_with_witness(&view, &view, view.root(), &env(1), &shards).unwrap();
    let mut nodes: Vec<Vec<u8>> = forged.nodes.iter().map(|n| n.to_vec()).collect();
    let last = nodes[0].len() - 1;
    nodes[0][last] ^= 0x01;
    forged.nodes = VariableList::new(
        nodes
            .into_iter()
            .map(|n| VariableList::new(n).unwrap())
            .collect(),
    )
    .unwrap();
    assert!(execute_stateless(&forged, &env(1), &shards).is_err());
    assert!(Witness::from_bytes(&[1, 2, 3]).is_err());
}

fn ssz_shards(shards: &[Vec<Bytes>]) -> Vec<Shard> {
    shards
        .iter()
        .map(|s| Shard::from_transactions(s.iter().map(|t| t.to_vec()).collect()).unwrap())
        .collect()
}

#[test]
fn conflict_proofs_verify_and_forgeries_are_rejected() {
    use phalanx_types::TreeHash;
    let store = StateStore::in_memory().unwrap();
    store.init_genesis(block_hash(0), &genesis(8, 2)).unwrap();
    let target = Address::repeat_byte(0x99);
    let raw = vec![
        vec![transfer(&signer(0), 0, Address::repeat_byte(1), 1)],
        vec![transfer(&signer(1), 0, target, 1)],
        vec![transfer(&signer(2), 0, target, 2)],
    ];
    let result = store
        .execute(block_hash(0), block_hash(1), &env(1), &raw)
        .unwrap();
    let Some(VoidReason::Conflict(conflict)) = result.void else {
        panic!("expected a void block")
    };
    let shards = ssz_shards(&raw);
    let roots: Vec<B256> = shards.iter().map(TreeHash::tree_hash_root).collect();
    let view = store.view(block_hash(0)).unwrap();
    let parent = view.root();
    let proof = ConflictProof::build(&view, &view, parent, &env(1), &shards, 1, 2).unwrap();
    let proof = ConflictProof::from_bytes(&proof.to_bytes()).unwrap();
    assert_eq!(proof.verify(parent, &roots, &env(1)).unwrap(), conflict);

    // Shards that are not the block's.
    let mut swapped = proof.clone();
    swapped.txs_a = shards[0].clone();
    assert_eq!(
        swapped.verify(parent, &roots, &env(1)),
        Err(ConflictProofError::ShardMismatch(1))
    );
    // Another parent state.
    assert!(matches!(
        proof.verify(B256::repeat_byte(1), &roots, &env(1)),
        Err(ConflictProofError::WrongParent { .. })
    ));
    // Indices out of order or range.
    let mut bad = proof.clone();
    bad.shard_a = 2;
    assert!(matches!(
        bad.verify(parent, &roots, &env(1)),
        Err(ConflictProofError::BadIndices { .. })
    ));
    // A witness with a node missing cannot prove anything.
    let mut thin = proof.clone();
    let mut nodes = thin.witness.nodes.to_vec();
    nodes.pop();
    thin.witness.nodes = VariableList::new(nodes).unwrap();
    assert!(matches!(
        thin.verify(parent, &roots, &env(1)),
        Err(ConflictProofError::Execution(_))
    ));
    // Two shards that do not conflict.
    let honest = ConflictProof::build(&view, &view, parent, &env(1), &shards, 0, 1).unwrap();
    assert_eq!(
        honest.verify(parent, &roots, &env(1)),
        Err(ConflictProofError::NoConflict)
    );
    // Garbage bytes.
    assert!(matches!(
        ConflictProof::from_bytes(&[0xff; 10]),
        Err(ConflictProofError::Malformed(_))
    ));
}

/// A shard only reads the parent state, so the witness of one shard alone reproduces that
/// shard's effects root inside the whole block.
#[test]
fn one_shard_witness_reproduces_that_shards_effects() {
    let store = StateStore::in_memory().unwrap();
    store.init_genesis(block_hash(0), &genesis(8, 2)).unwrap();
    let spec: Vec<(u8, u8, u8)> = (0..24).map(|i| (i % 3, i % 8, (i * 7) % 10)).collect();
    let shards = random_shards(&spec, 3);
    let whole = store
        .execute(block_hash(0), block_hash(1), &env(1), &shards)
        .unwrap();
    let view = store.view(block_hash(0)).unwrap();
    for (i, shard) in shards.iter().enumerate() {
        let (_, witness) = execute_with_witness(
            &view,
            &view,
            view.root(),
            &env(1),
            std::slice::from_ref(shard),
        )
        .unwrap();
        let alone = execute_stateless(&witness, &env(1), std::slice::from_ref(shard)).unwrap();
        assert_eq!(
            alone.shards[0].effects_root, whole.shards[i].effects_root,
            "shard {i}"
        );
    }
}

/// The conflict proof, wrapped as a consensus `FraudProof`, passes the verifier consensus
/// calls; a proof about another block or producer, or of another kind, does not.
#[test]
fn conflict_proofs_pass_the_fraud_proof_verifier_seam() {
    use phalanx_execution::conflict::ConflictVerifier;
    use phalanx_types::fraud::FraudProofVerifier;
    use phalanx_types::{FraudProof, FraudProofKind, TreeHash};

    let store = StateStore::in_memory().unwrap();
    store.init_genesis(block_hash(0), &genesis(8, 2)).unwrap();
    let target = Address::repeat_byte(0x98);
    let raw = vec![
        vec![transfer(&signer(1), 0, target, 1)],
        vec![transfer(&signer(2), 0, target, 2)],
    ];
    let shards = ssz_shards(&raw);
    let view = store.view(block_hash(0)).unwrap();
    let proof = ConflictProof::build(&view, &view, view.root(), &env(1), &shards, 0, 1).unwrap();
    let header = phalanx_types::BlockHeader {
        slot: phalanx_types::Slot(1),
        parent_root: B256::repeat_byte(1),
        declaration: phalanx_types::SignedDeclaration {
            message: phalanx_types::Declaration {
                slot: phalanx_types::Slot(1),
                proposer_index: phalanx_types::ValidatorIndex(0),
                parent_root: B256::repeat_byte(1),
                producer: phalanx_types::ProducerIndex(3),
                fee_split_bps: 0,
                randao_reveal: Default::default(),
            },
            signature: Default::default(),
        },
        producer: phalanx_types::ProducerIndex(3),
        shard_roots: VariableList::new(shards.iter().map(TreeHash::tree_hash_root).collect())
            .unwrap(),
        body_root: B256::ZERO,
    };
    let fraud = FraudProof {
        kind: FraudProofKind::ShardConflict as u8,
        block_root: header.root(),
        accused: 3,
        payload: VariableList::new(proof.to_bytes()).unwrap(),
    };
    let verifier = ConflictVerifier::new(|_: &phalanx_types::BlockHeader| env(1));
    assert_eq!(verifier.verify(&fraud, &header, view.root()), Ok(()));
    let mut other = fraud.clone();
    other.accused = 2;
    assert!(verifier.verify(&other, &header, view.root()).is_err());
    let mut other = fraud.clone();
    other.kind = FraudProofKind::WrongClaim as u8;
    assert!(verifier.verify(&other, &header, view.root()).is_err());
    let mut other = fraud;
    other.block_root = B256::repeat_byte(9);
    assert!(verifier.verify(&other, &header, view.root()).is_err());
}
