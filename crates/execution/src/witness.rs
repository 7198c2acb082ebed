//! Witnesses and stateless execution.
//!
//! A [`Witness`] is what a party with no database needs to re-execute a block (or some of
//! its shards) against a parent state root: every trie node of the parent state that the
//! execution reads — on the paths of the keys read or written, and the siblings a deletion
//! collapses into — and the code of the contracts it runs. It has the shape of Ethereum's
//! `ExecutionWitness` (nodes, codes, keys), encoded as SSZ, not JSON.
//!
//! A witness is built by executing once through a recording node source (so it contains
//! exactly the nodes this execution needs, whatever the block does) and is checked simply by
//! use: nodes are looked up by their own hash, so a forged node is never found, and a missing
//! one is a typed error ([`crate::StateError`]), never a guess.

use std::collections::HashMap;
use std::sync::Mutex;

use alloy_primitives::{B256, Bytes, keccak256};
use phalanx_trie::{MemoryStore, NodeSource, RecordingSource};
use ssz_derive::{Decode, Encode};
use ssz_types::VariableList;
use typenum::{U4096, U65536, U1048576};

use crate::block::{BlockEnv, BlockResult, ShardResult, execute_block, finish_block, run_shards};
use crate::error::{ExecError, StateError};
use crate::reader::{CodeSource, TrieStateReader};

/// Largest trie node (a full branch is 532 bytes).
pub type MaxNodeBytes = U4096;
/// Largest contract code (initcode limit is 49,152).
pub type MaxCodeBytes = U65536;
/// Most nodes, codes or keys in a witness.
pub type MaxWitnessItems = U1048576;

/// The parent-state data a stateless execution needs.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct Witness {
    /// The parent state root the nodes hang from.
    pub state_root: B256,
    /// RLP trie nodes.
    pub nodes: VariableList<VariableList<u8, MaxNodeBytes>, MaxWitnessItems>,
    /// Contract code.
    pub codes: VariableList<VariableList<u8, MaxCodeBytes>, MaxWitnessItems>,
    /// Keys read (informational): 20-byte addresses.
    pub keys: VariableList<alloy_primitives::Address, MaxWitnessItems>,
}

impl Witness {
    /// Encoded size in bytes.
    pub fn size(&self) -> usize {
        ssz::Encode::ssz_bytes_len(self)
    }

    /// SSZ encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        ssz::Encode::as_ssz_bytes(self)
    }

    /// Decodes SSZ bytes from an untrusted party.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        <Self as ssz::Decode>::from_ssz_bytes(bytes).map_err(|e| format!("{e:?}"))
    }

    /// The nodes as a store keyed by their own hashes.
    pub fn node_store(&self) -> MemoryStore {
        MemoryStore::from_untrusted(self.nodes.iter().map(|n| n.to_vec()))
    }

    /// The codes keyed by their own hashes.
    pub fn code_map(&self) -> HashMap<B256, Bytes> {
        self.codes
            .iter()
            .map(|c| (keccak256(&c[..]), Bytes::copy_from_slice(c)))
            .collect()
    }
}

/// Records the code hashes read through it.
struct RecordingCodes<C> {
    inner: C,
    seen: Mutex<Vec<B256>>,
}

impl<C: CodeSource> CodeSource for RecordingCodes<C> {
    fn code(&self, code_hash: &B256) -> Result<Option<Bytes>, StateError> {
        let code = self.inner.code(code_hash)?;
        if code.is_some()
            && let Ok(mut seen) = self.seen.lock()
            && !seen.contains(code_hash)
        {
            seen.push(*code_hash);
        }
        Ok(code)
    }
}

fn build<N: NodeSource + Sync, C: CodeSource>(
    nodes: &N,
    codes: &C,
    state_root: B256,
    node_hashes: &[B256],
    code_hashes: &[B256],
    keys: Vec<alloy_primitives::Address>,
) -> Result<Witness, ExecError> {
    let too_big =
        |what: &str| ExecError::Input(format!("witness {what} exceed the format's limits"));
    let mut out_nodes = Vec::with_capacity(node_hashes.len());
    for h in node_hashes {
        let node = nodes
            .node(h)
            .map_err(StateError::from)?
            .ok_or(StateError::Trie(phalanx_trie::TrieError::MissingNode(*h)))?;
        out_nodes.push(VariableList::new(node).map_err(|_| too_big("node"))?);
    }
    let mut out_codes = Vec::with_capacity(code_hashes.len());
    for h in code_hashes {
        let code = codes.code(h)?.ok_or(StateError::MissingCode(*h))?;
        out_codes.push(VariableList::new(code.to_vec()).map_err(|_| too_big("code"))?);
    }
    Ok(Witness {
        state_root,
        nodes: VariableList::new(out_nodes).map_err(|_| too_big("nodes"))?,
        codes: VariableList::new(out_codes).map_err(|_| too_big("codes"))?,
        keys: VariableList::new(keys).map_err(|_| too_big("keys"))?,
    })
}

/// Executes a block on the parent state with root `parent_root` (trie nodes in `nodes`, code
/// in `codes`) reading straight from the trie, and returns the result with the witness that
/// lets anyone repeat it statelessly.
pub fn execute_with_witness<N: NodeSource + Sync, C: CodeSource>(
    nodes: &N,
    codes: &C,
    parent_root: B256,
    env: &BlockEnv,
    shards: &[Vec<Bytes>],
) -> Result<(BlockResult, Witness), ExecError> {
    execute_known_with_witness(nodes, codes, parent_root, env, shards, Vec::new())
}

/// [`execute_with_witness`] where some shards' outcomes are known already (`known`, as in
/// [`run_shards`]): the witness holds what running only the other shards and finishing the
/// block (fee credits, applying the merged changes) reads.
pub fn execute_known_with_witness<N: NodeSource + Sync, C: CodeSource>(
    nodes: &N,
    codes: &C,
    parent_root: B256,
    env: &BlockEnv,
    shards: &[Vec<Bytes>],
    known: Vec<Option<ShardResult>>,
) -> Result<(BlockResult, Witness), ExecError> {
    let recording = RecordingSource::new(nodes);
    let code_rec = RecordingCodes {
        inner: codes,
        seen: Mutex::new(Vec::new()),
    };
    let reader = TrieStateReader::new(&recording, &code_rec, parent_root);
    let outcomes = run_shards(&reader, env, shards, known)?;
    let result = finish_block(&reader, &recording, parent_root, env, outcomes)?;
    let keys = result
        .shards
        .iter()
        .flat_map(|s| s.changes.accounts.keys().copied())
        .collect::<std::collections::BTreeSet<_>>();
    let code_hashes = code_rec.seen.lock().map(|s| s.clone()).unwrap_or_default();
    let witness = build(
        nodes,
        codes,
        parent_root,
        &recording.recorded(),
        &code_hashes,
        keys.into_iter().collect(),
    )?;
    Ok((result, witness))
}

/// Re-executes a block from its witness alone: same effects, same post-state root as the
/// stateful execution, or a typed error if the witness lacks something.
pub fn execute_stateless(
    witness: &Witness,
    env: &BlockEnv,
    shards: &[Vec<Bytes>],
) -> Result<BlockResult, ExecError> {
    let store = witness.node_store();
    let codes = witness.code_map();
    let reader = TrieStateReader::new(&store, &codes, witness.state_root);
    execute_block(&reader, &store, witness.state_root, env, shards)
}
