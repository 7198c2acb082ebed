//! Proofs of execution (seed 003): what a light client fetches from an untrusted full node to
//! settle a dispute about a block's post-state root, and what slashes an executor whose claim
//! was wrong.
//!
//! A proof carries, for each of the block's shards, either its transactions (the shard is
//! re-executed) or its effects (the shard is taken as it is), and a [`Witness`] of the parent
//! state. Verifying it needs no state:
//!
//! 1. each re-executed shard must hash (`hash_tree_root`) to the root the block header commits
//!    to;
//! 2. each shard given as effects must hash to an effects root the verifier already accepts
//!    for that shard — for a light client, one every claim about the block agrees on while the
//!    claims disagree elsewhere (so only the disputed shards are re-executed); for a slashing,
//!    the accused claim's own; a verifier that accepts none (a full proof) refuses such a
//!    shard;
//! 3. the witness must hang from the parent state root the verifier already trusts;
//! 4. stateless re-execution ([`run_shards`] over the witness) of the re-executed shards, then
//!    the block's ordinary finish (conflict rule, gas limits, fee credits, applying the merged
//!    changes: [`finish_block`]) yields every shard's effects root and the post-state root.
//!
//! A forged node cannot be found by its hash and a missing one is a typed error; effects are
//! bound to their root by their hash. So a proof either reproduces the result the accepted
//! effects imply or is refused; it can never make a wrong root look right.

use alloy_primitives::{B256, Bytes};
use phalanx_types::{Shard, TreeHash};
use ssz::{Decode, Encode};
use ssz_derive::{Decode, Encode};
use ssz_types::VariableList;

use crate::block::{BlockEnv, ShardResult, finish_block, run_shards};
use crate::changes::ShardEffects;
use crate::error::ExecError;
use crate::reader::{CodeSource, TrieStateReader};
use crate::witness::{Witness, execute_known_with_witness};

/// One shard of a proof of execution.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[ssz(enum_behaviour = "union")]
pub enum ProofShard {
    /// Its transactions: the verifier re-executes them.
    Executed(Shard),
    /// Its effects: the verifier takes them if they hash to an effects root it accepts.
    Agreed(ShardEffects),
}

/// A block's shards (re-executed or agreed) and the witness to finish it.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct ExecutionProof {
    /// The block's shards, in order.
    pub shards: VariableList<ProofShard, phalanx_types::limits::MaxShards>,
    /// Parent-state witness for re-executing the executed shards and finishing the block.
    pub witness: Witness,
}

/// What re-executing a proof established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Root of each shard's effects, in shard order (`None`: the shard overflowed its gas
    /// limit, which voids the block).
    pub effects_roots: Vec<Option<B256>>,
    /// The block's post-state root.
    pub post_state_root: B256,
    /// How many shards were re-executed (the others were agreed).
    pub executed: usize,
}

/// Why a proof of execution is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecutionProofError {
    /// Not the block's shards (count or a root differs).
    #[error("the proof's shards do not match the block header (shard {0})")]
    ShardMismatch(usize),
    /// A shard given as effects where the verifier accepts no effects root.
    #[error("shard {0} must be re-executed: no effects root for it is agreed")]
    NotAgreed(usize),
    /// A shard's effects do not hash to the effects root the verifier accepts.
    #[error("shard {0}'s effects do not hash to the agreed effects root")]
    EffectsMismatch(usize),
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

impl ExecutionProof {
    /// Builds the full proof of executing `shards` on the state with root `parent_root` (nodes
    /// and code read from `state`): every shard re-executed.
    pub fn build<S: phalanx_trie::NodeSource + CodeSource + Sync>(
        state: &S,
        parent_root: B256,
        env: &BlockEnv,
        shards: &[Shard],
    ) -> Result<Self, ExecutionProofError> {
        let all: Vec<usize> = (0..shards.len()).collect();
        Self::build_partial(state, parent_root, env, shards, &all)
    }

    /// Builds a proof that re-executes only the shards in `execute` and gives every other
    /// shard as its effects (a shard that overflows its gas limit has no effects and is
    /// re-executed anyway). The witness then holds only what those shards and the block's
    /// finish read.
    pub fn build_partial<S: phalanx_trie::NodeSource + CodeSource + Sync>(
        state: &S,
        parent_root: B256,
        env: &BlockEnv,
        shards: &[Shard],
        execute: &[usize],
    ) -> Result<Self, ExecutionProofError> {
        let txs: Vec<Vec<Bytes>> = shards.iter().map(crate::block::shard_txs).collect();
        // The agreed shards' effects, from a plain (unrecorded) execution of just them.
        let agreed: Vec<Vec<Bytes>> = txs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if execute.contains(&i) {
                    Vec::new()
                } else {
                    t.clone()
                }
            })
            .collect();
        let reader = TrieStateReader::new(state, state, parent_root);
        let mut parts: Vec<ProofShard> = Vec::with_capacity(shards.len());
        let mut known: Vec<Option<ShardResult>> = Vec::with_capacity(shards.len());
        for (i, outcome) in run_shards(&reader, env, &agreed, Vec::new())?
            .into_iter()
            .enumerate()
        {
            let effects = match outcome {
                Ok(result) if !execute.contains(&i) => Some(
                    ShardEffects::new(&result.changes, result.gas_used, result.fees)
                        .map_err(ExecError::Input)?,
                ),
                _ => None,
            };
            match effects {
                Some(e) => {
                    known.push(Some(ShardResult::from_effects(&e, Vec::new())));
                    parts.push(ProofShard::Agreed(e));
                }
                None => {
                    known.push(None);
                    parts.push(ProofShard::Executed(shards[i].clone()));
                }
            }
        }
        let run: Vec<Vec<Bytes>> = txs
            .into_iter()
            .zip(&known)
            .map(|(t, k)| if k.is_some() { Vec::new() } else { t })
            .collect();
        let (_, witness) = execute_known_with_witness(state, state, parent_root, env, &run, known)?;
        Ok(Self {
            shards: VariableList::new(parts)
                .map_err(|_| ExecutionProofError::Malformed("too many shards".into()))?,
            witness,
        })
    }

    /// Re-executes a full proof for the block whose header commits to `shard_roots`, on the
    /// trusted parent state `parent_root` (a shard given as effects is refused).
    pub fn verify(
        &self,
        parent_root: B256,
        shard_roots: &[B256],
        env: &BlockEnv,
    ) -> Result<Verified, ExecutionProofError> {
        self.verify_with(parent_root, shard_roots, env, &[])
    }

    /// Rules 1–4: verifies the proof, taking a shard given as effects when they hash to
    /// `accepted[i]` (`None` or absent: that shard must be re-executed).
    pub fn verify_with(
        &self,
        parent_root: B256,
        shard_roots: &[B256],
        env: &BlockEnv,
        accepted: &[Option<B256>],
    ) -> Result<Verified, ExecutionProofError> {
        if self.shards.len() != shard_roots.len() {
            return Err(ExecutionProofError::ShardMismatch(
                self.shards.len().min(shard_roots.len()),
            ));
        }
        let mut txs: Vec<Vec<Bytes>> = Vec::with_capacity(self.shards.len());
        let mut known: Vec<Option<ShardResult>> = Vec::with_capacity(self.shards.len());
        for (i, (part, root)) in self.shards.iter().zip(shard_roots).enumerate() {
            match part {
                ProofShard::Executed(shard) => {
                    if shard.tree_hash_root() != *root {
                        return Err(ExecutionProofError::ShardMismatch(i));
                    }
                    txs.push(crate::block::shard_txs(shard));
                    known.push(None);
                }
                ProofShard::Agreed(effects) => {
                    let Some(agreed) = accepted.get(i).copied().flatten() else {
                        return Err(ExecutionProofError::NotAgreed(i));
                    };
                    if effects.root() != agreed {
                        return Err(ExecutionProofError::EffectsMismatch(i));
                    }
                    txs.push(Vec::new());
                    known.push(Some(ShardResult::from_effects(effects, Vec::new())));
                }
            }
        }
        if self.witness.state_root != parent_root {
            return Err(ExecutionProofError::WrongParent {
                got: self.witness.state_root,
                expected: parent_root,
            });
        }
        let executed = known.iter().filter(|k| k.is_none()).count();
        let store = self.witness.node_store();
        let codes = self.witness.code_map();
        let reader = TrieStateReader::new(&store, &codes, parent_root);
        let outcomes = run_shards(&reader, env, &txs, known)?;
        let effects_roots = outcomes
            .iter()
            .map(|o| o.as_ref().ok().map(|r| r.effects_root))
            .collect();
        let result = finish_block(&reader, &store, parent_root, env, outcomes)?;
        Ok(Verified {
            effects_roots,
            post_state_root: result.post_state_root,
            executed,
        })
    }

    /// The shards this proof re-executes, by index.
    pub fn executed_shards(&self) -> Vec<usize> {
        self.shards
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p, ProofShard::Executed(_)))
            .map(|(i, _)| i)
            .collect()
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
/// [`phalanx_types::WrongClaimEvidence`]; the claim must name this block (by the name claims
/// use for it, which `resolve` gives with the block's environment: the consensus root in the
/// simulator, the derived execution header's hash in a chain that executes) and start from
/// the parent state root the caller passes; the proof may give shards as effects when they
/// hash to the claim's own effects roots (so only the shards the claim got wrong need
/// re-executing); re-executing it must give another post-state root than the claim's, or
/// another effects root for a shard it re-executed. An honest claim cannot be framed: its
/// effects roots are the true ones, so the effects it lets the proof take are the true
/// effects. `resolve` is a chain rule supplied by whoever wires consensus to execution (as for
/// [`crate::conflict::ConflictVerifier`]); a block it does not know is refused.
pub struct ClaimVerifier<F> {
    resolve: F,
}

impl<F: Fn(&phalanx_types::BlockHeader) -> Option<(B256, BlockEnv)>> ClaimVerifier<F> {
    /// A verifier naming each block and deriving its environment with `resolve`.
    pub fn new(resolve: F) -> Self {
        Self { resolve }
    }
}

impl<F: Fn(&phalanx_types::BlockHeader) -> Option<(B256, BlockEnv)>>
    phalanx_types::fraud::FraudProofVerifier for ClaimVerifier<F>
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
        let Some((name, env)) = (self.resolve)(header) else {
            return Err("the block is not one this chain can execute".into());
        };
        if proof.block_root != header.root() || claim.block_hash != name {
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
        let claimed: Vec<Option<B256>> = if claim.effects_roots.len() == roots.len() {
            claim.effects_roots.iter().copied().map(Some).collect()
        } else {
            Vec::new()
        };
        let verified = execution
            .verify_with(parent_state_root, &roots, &env, &claimed)
            .map_err(|e| e.to_string())?;
        let wrong_effects = execution.executed_shards().into_iter().any(|i| {
            matches!(
                (claimed.get(i), verified.effects_roots.get(i)),
                (Some(Some(c)), Some(Some(v))) if c != v
            )
        });
        if verified.post_state_root == claim.post_state_root && !wrong_effects {
            return Err("re-execution agrees with the claim".into());
        }
        Ok(())
    }
}
