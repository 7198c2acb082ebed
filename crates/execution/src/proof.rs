//! Proofs of execution (seed 003): what a light client fetches from an untrusted full node to
//! settle a dispute about a block's post-state root, and what slashes an executor whose claim
//! was wrong.
//!
//! A proof carries the block's shards (their transactions) and a [`Witness`] of the parent
//! state. Verifying it needs no state: each shard must hash (`hash_tree_root`) to the root the
//! block header commits to, the witness must hang from the parent state root the verifier
//! already trusts, and stateless re-execution ([`execute_stateless`]) then yields the block's
//! effects roots and post-state root. A forged node cannot be found by its hash and a missing
//! one is a typed error, so a proof either reproduces the true result or is refused; it can
//! never make a wrong root look right.

use alloy_primitives::{B256, Bytes};
use phalanx_types::{Shard, TreeHash};
use ssz::{Decode, Encode};
use ssz_derive::{Decode, Encode};
use ssz_types::VariableList;

use crate::block::BlockEnv;
use crate::error::ExecError;
use crate::reader::CodeSource;
use crate::witness::{Witness, execute_stateless, execute_with_witness};

/// A block's shards and the witness to re-execute them.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ExecutionProof {
    /// The block's shards, in order.
    pub shards: VariableList<Shard, phalanx_types::limits::MaxShards>,
    /// Parent-state witness for the whole block.
    pub witness: Witness,
}

/// What re-executing a proof established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Root of each shard's effects.
    pub effects_roots: Vec<B256>,
    /// The block's post-state root.
    pub post_state_root: B256,
}

/// Why a proof of execution is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecutionProofError {
    /// Not the block's shards (count or a root differs).
    #[error("the proof's shards do not match the block header (shard {0})")]
    ShardMismatch(usize),
    /// The witness is for another parent state.
    #[error("witness is for state root {got}, the trusted parent state is {expected}")]
    WrongParent {
        /// Root the witness claims.
        got: B256,
        /// Trusted parent root.
        expected: B256,
    },
    /// Re-execution failed (missing or forged witness node, missing code).
    #[error("cannot re-execute the block: {0}")]
    Execution(#[from] ExecError),
    /// Malformed encoding or too large.
    #[error("malformed proof of execution: {0}")]
    Malformed(String),
}

fn txs(shards: &[Shard]) -> Vec<Vec<Bytes>> {
    shards.iter().map(crate::block::shard_txs).collect()
}

impl ExecutionProof {
    /// Builds the proof of executing `shards` on the state with root `parent_root` (nodes
    /// and code read from `state`).
    pub fn build<S: phalanx_trie::NodeSource + CodeSource + Sync>(
        state: &S,
        parent_root: B256,
        env: &BlockEnv,
        shards: &[Shard],
    ) -> Result<Self, ExecutionProofError> {
        let (_, witness) = execute_with_witness(state, state, parent_root, env, &txs(shards))?;
        Ok(Self {
            shards: VariableList::new(shards.to_vec())
                .map_err(|_| ExecutionProofError::Malformed("too many shards".into()))?,
            witness,
        })
    }

    /// Re-executes the proof for the block whose header commits to `shard_roots`, on the
    /// trusted parent state `parent_root`.
    pub fn verify(
        &self,
        parent_root: B256,
        shard_roots: &[B256],
        env: &BlockEnv,
    ) -> Result<Verified, ExecutionProofError> {
        if self.shards.len() != shard_roots.len() {
            return Err(ExecutionProofError::ShardMismatch(
                self.shards.len().min(shard_roots.len()),
            ));
        }
        for (i, (shard, root)) in self.shards.iter().zip(shard_roots).enumerate() {
            if shard.tree_hash_root() != *root {
                return Err(ExecutionProofError::ShardMismatch(i));
            }
        }
        if self.witness.state_root != parent_root {
            return Err(ExecutionProofError::WrongParent {
                got: self.witness.state_root,
                expected: parent_root,
            });
        }
        let result = execute_stateless(&self.witness, env, &txs(&self.shards))?;
        Ok(Verified {
            effects_roots: result.effects_roots(),
            post_state_root: result.post_state_root,
        })
    }

    /// SSZ bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.as_ssz_bytes()
    }

    /// Parses [`Self::to_bytes`]' output; bad bytes are a typed error.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ExecutionProofError> {
        Self::from_ssz_bytes(bytes).map_err(|e| ExecutionProofError::Malformed(format!("{e:?}")))
    }
}

/// Verifies `WrongClaim` fraud proofs for consensus: the payload is a
/// [`phalanx_types::WrongClaimEvidence`]; the claim must be about this block and start from
/// its parent state; re-executing the proof must give another post-state root than the
/// claim's. The block's environment comes from `env_of`, a chain rule supplied by whoever
/// wires consensus to execution (as for [`crate::conflict::ConflictVerifier`]).
pub struct ClaimVerifier<F> {
    env_of: F,
}

impl<F: Fn(&phalanx_types::BlockHeader) -> BlockEnv> ClaimVerifier<F> {
    /// A verifier deriving each block's environment with `env_of`.
    pub fn new(env_of: F) -> Self {
        Self { env_of }
    }
}

impl<F: Fn(&phalanx_types::BlockHeader) -> BlockEnv> phalanx_types::fraud::FraudProofVerifier
    for ClaimVerifier<F>
{
    fn verify(
        &self,
        proof: &phalanx_types::FraudProof,
        header: &phalanx_types::BlockHeader,
        parent_state_root: B256,
    ) -> Result<(), String> {
        if proof.kind != phalanx_types::FraudProofKind::WrongClaim as u8 {
            return Err(format!(
                "fraud proof kind {} is not a wrong claim",
                proof.kind
            ));
        }
        let evidence = phalanx_types::WrongClaimEvidence::from_ssz_bytes(&proof.payload)
            .map_err(|e| format!("malformed wrong-claim evidence: {e:?}"))?;
        let claim = &evidence.claim.message;
        if proof.block_root != header.root() || claim.block_hash != header.root() {
            return Err("the claim is about another block".into());
        }
        if proof.accused != evidence.claim.executor.0 {
            return Err(format!(
                "fraud proof accuses executor {}, the claim is executor {}'s",
                proof.accused, evidence.claim.executor.0
            ));
        }
        if claim.prev_state_root != parent_state_root {
            return Err("the claim starts from another parent state".into());
        }
        let execution =
            ExecutionProof::from_bytes(&evidence.execution_proof).map_err(|e| e.to_string())?;
        let roots: Vec<B256> = header.shard_roots.to_vec();
        let verified = execution
            .verify(parent_state_root, &roots, &(self.env_of)(header))
            .map_err(|e| e.to_string())?;
        if verified.post_state_root == claim.post_state_root {
            return Err("re-execution agrees with the claim".into());
        }
        Ok(())
    }
}
