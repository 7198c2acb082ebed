//! Applying a fraud proof (seed 000): a verified proof against a block slashes the accused
//! producer and gives the block zero fork-choice weight, unless the block is already final.
//! Consensus does not judge the proof itself: a [`FraudProofVerifier`] from the execution side
//! does.

use phalanx_types::fraud::FraudProofVerifier;
use phalanx_types::{BlockHeader, FraudProof, FraudProofKind, ProducerIndex, Root};

use crate::fork_choice::ForkChoice;
use crate::registry::Registry;

/// A fraud proof that was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FraudError {
    /// Only shard-conflict proofs slash producers here.
    #[error("fraud proof kind {0} does not accuse a producer")]
    NotAProducerFault(u8),
    /// The verifier refused it.
    #[error("fraud proof rejected: {0}")]
    Rejected(String),
}

/// Verifies `proof` against `header` and, if it holds, slashes the producer and removes the
/// block's weight from `fork_choice`.
pub fn apply_fraud_proof(
    verifier: &dyn FraudProofVerifier,
    proof: &FraudProof,
    header: &BlockHeader,
    parent_state_root: Root,
    registry: &mut Registry,
    fork_choice: &mut ForkChoice,
) -> Result<ProducerIndex, FraudError> {
    if proof.kind != FraudProofKind::ShardConflict as u8 {
        return Err(FraudError::NotAProducerFault(proof.kind));
    }
    verifier
        .verify(proof, header, parent_state_root)
        .map_err(FraudError::Rejected)?;
    registry.slash_producer(header.producer);
    fork_choice.on_fraud_proof(header.root());
    Ok(header.producer)
}
