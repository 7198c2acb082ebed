//! Property tests against alloy-trie as an independent oracle.

use std::collections::BTreeMap;

use alloy_primitives::{B256, Bytes, keccak256};
use alloy_trie::{HashBuilder, Nibbles};
use phalanx_trie::{
    MemoryStore, ProofError, RecordingSource, TrieUpdate, get, prove, verify_proof,
};
use proptest::prelude::*;

/// Root of a map computed by alloy-trie's HashBuilder from sorted leaves.
fn oracle_root(map: &BTreeMap<B256, Vec<u8>>) -> B256 {
    let mut hb = HashBuilder::default();
    for (k, v) in map {
        hb.add_leaf(Nibbles::unpack(k), v);
    }
    hb.root()
}

fn key(i: u16) -> B256 {
    keccak256(i.to_be_bytes())
}

/// Operations: (key index, value or removal).
fn ops() -> impl Strategy<Value = Vec<(u16, Option<Vec<u8>>)>> {
    prop::collection::vec(
        (
            0u16..200,
            prop::option::weighted(0.8, prop::collection::vec(any::<u8>(), 1..40)),
        ),
        1..120,
    )
}

fn apply_in_batches(
    ops: &[(u16, Option<Vec<u8>>)],
    batch: usize,
) -> (B256, MemoryStore, BTreeMap<B256, Vec<u8>>) {
    let mut store = MemoryStore::new();
    let mut root = phalanx_trie::EMPTY_ROOT;
    let mut model = BTreeMap::new();
    for chunk in ops.chunks(batch.max(1)) {
        let mut update = TrieUpdate::new(&store, root);
        for (k, v) in chunk {
            match v {
                Some(v) => {
                    update.insert(key(*k).as_slice(), v.clone()).unwrap();
                    model.insert(key(*k), v.clone());
                }
                None => {
                    update.remove(key(*k).as_slice()).unwrap();
                    model.remove(&key(*k));
                }
            }
        }
        let (new_root, nodes) = update.commit();
        store.extend(nodes);
        root = new_root;
    }
    (root, store, model)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn incremental_root_equals_full_rebuild(ops in ops(), batch in 1usize..50) {
        let (root, _, model) = apply_in_batches(&ops, batch);
        prop_assert_eq!(root, oracle_root(&model));
    }

    #[test]
    fn proofs_verify_here_and_with_alloy_trie(ops in ops(), probe in 0u16..250) {
        let (root, store, model) = apply_in_batches(&ops, 7);
        let k = key(probe);
        let proof = prove(&store, root, k.as_slice()).unwrap();
        let expected = model.get(&k).cloned();
        prop_assert_eq!(verify_proof(root, k.as_slice(), &proof).unwrap(), expected.clone());
        prop_assert_eq!(get(&store, root, k.as_slice()).unwrap(), expected.clone());
        let proof_bytes: Vec<Bytes> = proof.iter().map(|n| Bytes::from(n.clone())).collect();
        prop_assert!(alloy_trie::proof::verify_proof(root, Nibbles::unpack(k), expected, &proof_bytes).is_ok());
    }

    #[test]
    fn a_recorded_update_replays_from_its_witness_alone(
        base in ops(), changes in ops(),
    ) {
        // Nodes read while applying `changes` are exactly enough to apply them again without
        // the store: the basis of stateless re-execution.
        let (root, store, _) = apply_in_batches(&base, 1000);
        let recording = RecordingSource::new(&store);
        let mut update = TrieUpdate::new(&recording, root);
        for (k, v) in &changes {
            match v {
                Some(v) => update.insert(key(*k).as_slice(), v.clone()).unwrap(),
                None => update.remove(key(*k).as_slice()).unwrap(),
            }
        }
        let (expected_root, _) = update.commit();
        let witness: Vec<Vec<u8>> = recording.recorded().iter().map(|h| store_node(&store, h)).collect();
        let stateless = MemoryStore::from_untrusted(witness);
        let mut replay = TrieUpdate::new(&stateless, root);
        for (k, v) in &changes {
            match v {
                Some(v) => replay.insert(key(*k).as_slice(), v.clone()).unwrap(),
                None => replay.remove(key(*k).as_slice()).unwrap(),
            }
        }
        prop_assert_eq!(replay.commit().0, expected_root);
    }

    #[test]
    fn random_nodes_never_panic(nodes in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 1..4), probe in any::<[u8; 32]>()) {
        let root = keccak256(&nodes[0]);
        let store = MemoryStore::from_untrusted(nodes);
        let _ = get(&store, root, &probe);
        let _ = phalanx_trie::entries(&store, root);
        let mut update = TrieUpdate::new(&store, root);
        let _ = update.insert(&probe, vec![1]);
    }
}

fn store_node(store: &MemoryStore, hash: &B256) -> Vec<u8> {
    use phalanx_trie::NodeSource;
    store.node(hash).unwrap().unwrap()
}

#[test]
fn forged_and_incomplete_proofs_are_rejected() {
    let ops: Vec<(u16, Option<Vec<u8>>)> =
        (0..50).map(|i| (i, Some(vec![i as u8 + 1; 20]))).collect();
    let (root, store, _) = apply_in_batches(&ops, 50);
    let k = key(7);
    let mut proof = prove(&store, root, k.as_slice()).unwrap();
    assert!(proof.len() >= 2);
    // Tampering with the leaf changes its hash: the parent no longer points at it.
    let last = proof.last_mut().unwrap();
    let n = last.len();
    last[n - 1] ^= 1;
    assert!(matches!(
        verify_proof(root, k.as_slice(), &proof),
        Err(ProofError::Incomplete(_))
    ));
    // Dropping a node leaves the path unproven.
    let mut short = prove(&store, root, k.as_slice()).unwrap();
    short.pop();
    assert!(matches!(
        verify_proof(root, k.as_slice(), &short),
        Err(ProofError::Incomplete(_))
    ));
    // A proof against another root proves nothing.
    let good = prove(&store, root, k.as_slice()).unwrap();
    assert!(verify_proof(B256::repeat_byte(3), k.as_slice(), &good).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// The parallel batch update gives the same root (and usable nodes) as the serial one,
    /// including removals that collapse the root branch.
    #[test]
    fn parallel_update_equals_serial(base in ops(), changes in prop::collection::vec((0u16..300, prop::option::weighted(0.6, prop::collection::vec(any::<u8>(), 1..40))), 60..300)) {
        let (root, store, mut model) = apply_in_batches(&base, 1000);
        let batch: Vec<(Vec<u8>, Vec<u8>)> = changes
            .iter()
            .map(|(k, v)| (key(*k).to_vec(), v.clone().unwrap_or_default()))
            .collect();
        // Later changes to a key win, as in the serial update.
        for (k, v) in &batch {
            let k = B256::from_slice(k);
            if v.is_empty() { model.remove(&k); } else { model.insert(k, v.clone()); }
        }
        let (par_root, par_nodes) = phalanx_trie::update_parallel(&store, root, &batch).unwrap();
        prop_assert_eq!(par_root, oracle_root(&model));
        let mut next = store.clone();
        next.extend(par_nodes);
        for (k, v) in model.iter().take(5) {
            prop_assert_eq!(get(&next, par_root, k.as_slice()).unwrap(), Some(v.clone()));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// What a pruning store keeps: the nodes `mark` lists for the last `keep` roots hold every
    /// one of those tries whole (each reads back the same entries from them alone), and a
    /// node only older roots used is not listed.
    #[test]
    fn marked_nodes_hold_the_kept_tries_whole(ops in ops(), batch in 1usize..20, keep in 1usize..5) {
        let mut store = MemoryStore::new();
        let mut roots = vec![phalanx_trie::EMPTY_ROOT];
        for chunk in ops.chunks(batch) {
            let mut update = TrieUpdate::new(&store, roots[roots.len() - 1]);
            for (k, v) in chunk {
                match v {
                    Some(v) => update.insert(key(*k).as_slice(), v.clone()).unwrap(),
                    None => update.remove(key(*k).as_slice()).unwrap(),
                }
            }
            let (root, nodes) = update.commit();
            store.extend(nodes);
            roots.push(root);
        }
        let kept = &roots[roots.len().saturating_sub(keep)..];
        let mut marked = std::collections::HashSet::new();
        let mut values = 0usize;
        for root in kept {
            phalanx_trie::mark(&store, *root, &mut marked, &mut |_| values += 1).unwrap();
        }
        let mut pruned = MemoryStore::new();
        pruned.extend(marked.iter().map(|h| (*h, store_node(&store, h))));
        for root in kept {
            prop_assert_eq!(
                phalanx_trie::entries(&pruned, *root).unwrap(),
                phalanx_trie::entries(&store, *root).unwrap()
            );
        }
        // Every value of the newest trie was seen (the first walk shares nothing).
        let newest = phalanx_trie::entries(&store, kept[0]).unwrap();
        prop_assert!(values >= newest.len());
        // A root that only older states had is gone.
        for root in &roots[..roots.len().saturating_sub(keep)] {
            if !kept.contains(root) && *root != phalanx_trie::EMPTY_ROOT {
                prop_assert!(!marked.contains(root));
            }
        }
    }
}
