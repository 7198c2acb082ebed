//! Conflict proofs: evidence, checkable by anyone without state, that a producer built a void
//! block (two of its shards changed the same key).
//!
//! The proof carries the parent state root, the two shards (their transactions) and a
//! witness of everything the two shards read. The verifier checks that each shard hashes to
//! the root the block header commits to, re-executes both shards statelessly from the witness,
//! and checks that their effects share a key. A proof whose shards do not match the header,
//! whose witness does not hang from the parent root or lacks a node, or whose shards do not
//! in fact conflict, is rejected with a typed error.

use alloy_primitives::B256;
use phalanx_types::{Shard, TreeHash};
use ssz_derive::{Decode, Encode};

use crate::block::{BlockEnv, prepare, run_shard, shard_txs};
use crate::changes::{Conflict, find_conflict};
use crate::error::ExecError;
use crate::reader::TrieStateReader;
use crate::witness::{Witness, execute_with_witness};

/// Two conflicting shards of one block, with the witness to re-execute them.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ConflictProof {
    /// Index of the first shard.
    pub shard_a: u64,
    /// Index of the second shard (greater than `shard_a`).
    pub shard_b: u64,
    /// Transactions of the first shard.
    pub txs_a: Shard,
    /// Transactions of the second shard.
    pub txs_b: Shard,
    /// Parent-state witness for both shards.
    pub witness: Witness,
}

/// Why a conflict proof is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConflictProofError {
    /// Shard indices out of order or out of range.
    #[error("shard indices {a} and {b} are not two distinct shards of the block ({count} shards)")]
    BadIndices {
        /// First index.
        a: u64,
        /// Second index.
        b: u64,
        /// Shards in the block.
        count: usize,
    },
    /// A shard does not hash to the root in the header.
    #[error("shard {0} does not match the block's shard root")]
    ShardMismatch(u64),
    /// The witness is for another parent state.
    #[error("witness is for state root {got}, the block's parent state is {expected}")]
    WrongParent {
        /// Root the witness claims.
        got: B256,
        /// Parent state root.
        expected: B256,
    },
    /// Re-execution failed (a missing or forged witness node, missing code).
    #[error("cannot re-execute the shards: {0}")]
    Execution(#[from] ExecError),
    /// The shards do not conflict.
    #[error("the two shards do not change a common key")]
    NoConflict,
    /// Malformed encoding.
    #[error("malformed conflict proof: {0}")]
    Malformed(String),
}

fn run_pair(
    witness: &Witness,
    env: &BlockEnv,
    a: &Shard,
    b: &Shard,
) -> Result<Option<Conflict>, ExecError> {
    let store = witness.node_store();
    let codes = witness.code_map();
    let reader = TrieStateReader::new(&store, &codes, witness.state_root);
    let prepared = prepare(&[shard_txs(a), shard_txs(b)]);
    let exec_env = env.exec_env();
    let mut changes = Vec::new();
    for (i, txs) in prepared.iter().enumerate() {
        match run_shard(&reader, env, &exec_env, i, txs)? {
            Ok(result) => changes.push(result.changes),
            // A shard that overflows its gas limit voids the block for another reason.
            Err(_) => return Ok(None),
        }
    }
    Ok(find_conflict(&[&changes[0], &changes[1]]))
}

impl ConflictProof {
    /// Builds the proof for shards `a < b` of a block, from the parent state.
    pub fn build<N: phalanx_trie::NodeSource + Sync, C: crate::reader::CodeSource>(
        nodes: &N,
        codes: &C,
        parent_root: B256,
        env: &BlockEnv,
        shards: &[Shard],
        a: usize,
        b: usize,
    ) -> Result<Self, ConflictProofError> {
        let (Some(sa), Some(sb)) = (shards.get(a), shards.get(b)) else {
            return Err(ConflictProofError::BadIndices {
                a: a as u64,
                b: b as u64,
                count: shards.len(),
            });
        };
        let (_, witness) = execute_with_witness(
            nodes,
            codes,
            parent_root,
            env,
            &[shard_txs(sa), shard_txs(sb)],
        )?;
        Ok(Self {
            shard_a: a as u64,
            shard_b: b as u64,
            txs_a: sa.clone(),
            txs_b: sb.clone(),
            witness,
        })
    }

    /// Checks the proof against the block's shard roots and parent state root; returns the
    /// conflict it proves.
    pub fn verify(
        &self,
        parent_root: B256,
        shard_roots: &[B256],
        env: &BlockEnv,
    ) -> Result<Conflict, ConflictProofError> {
        let count = shard_roots.len();
        let (a, b) = (self.shard_a, self.shard_b);
        if a >= b || b as usize >= count {
            return Err(ConflictProofError::BadIndices { a, b, count });
        }
        if self.txs_a.tree_hash_root() != shard_roots[a as usize] {
            return Err(ConflictProofError::ShardMismatch(a));
        }
        if self.txs_b.tree_hash_root() != shard_roots[b as usize] {
            return Err(ConflictProofError::ShardMismatch(b));
        }
        if self.witness.state_root != parent_root {
            return Err(ConflictProofError::WrongParent {
                got: self.witness.state_root,
                expected: parent_root,
            });
        }
        let mut conflict = run_pair(&self.witness, env, &self.txs_a, &self.txs_b)?
            .ok_or(ConflictProofError::NoConflict)?;
        conflict.shard_a = a as usize;
        conflict.shard_b = b as usize;
        Ok(conflict)
    }

    /// SSZ encoding (the payload of a `FraudProof` of kind `ShardConflict`).
    pub fn to_bytes(&self) -> Vec<u8> {
        ssz::Encode::as_ssz_bytes(self)
    }

    /// Decodes an untrusted payload.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ConflictProofError> {
        <Self as ssz::Decode>::from_ssz_bytes(bytes)
            .map_err(|e| ConflictProofError::Malformed(format!("{e:?}")))
    }
}

/// Verifies `ShardConflict` fraud proofs for consensus. The execution environment of a block
/// (number, time, base fee, …) is derived from its header by `env_of`, a chain rule supplied
/// by whoever wires consensus to execution.
pub struct ConflictVerifier<F> {
    env_of: F,
}

impl<F: Fn(&phalanx_types::BlockHeader) -> BlockEnv> ConflictVerifier<F> {
    /// A verifier deriving each block's environment with `env_of`.
    pub fn new(env_of: F) -> Self {
        Self { env_of }
    }
}

impl<F: Fn(&phalanx_types::BlockHeader) -> BlockEnv> phalanx_types::fraud::FraudProofVerifier
    for ConflictVerifier<F>
{
    fn verify(
        &self,
        proof: &phalanx_types::FraudProof,
        header: &phalanx_types::BlockHeader,
        parent_state_root: B256,
    ) -> Result<(), String> {
        if proof.kind != phalanx_types::FraudProofKind::ShardConflict as u8 {
            return Err(format!(
                "fraud proof kind {} is not a shard conflict",
                proof.kind
            ));
        }
        if proof.block_root != header.root() {
            return Err("fraud proof is about another block".into());
        }
        if proof.accused != header.producer.0 {
            return Err(format!(
                "fraud proof accuses producer {}, the block's is {}",
                proof.accused, header.producer.0
            ));
        }
        let conflict = ConflictProof::from_bytes(&proof.payload).map_err(|e| e.to_string())?;
        let roots: Vec<B256> = header.shard_roots.to_vec();
        conflict
            .verify(parent_state_root, &roots, &(self.env_of)(header))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
