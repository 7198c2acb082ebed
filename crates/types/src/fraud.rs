//! The seam through which consensus asks execution to judge a fraud proof.
//!
//! Consensus never executes, yet a producer's bond is slashable by a proof that its block was
//! void (two shards writing one key) and an executor's by a proof that its claim was wrong.
//! Consensus hands such a [`FraudProof`] to a [`FraudProofVerifier`] that the execution side
//! implements; the trait lives here, in the shared types, so neither side depends on the
//! other.

use crate::consensus::{BlockHeader, FraudProof};
use crate::primitives::Root;

/// Judges fraud proofs.
///
/// Rules every implementation obeys: `verify` is deterministic and needs no state besides
/// its arguments (the proof carries its own witness); it returns `Ok(())` only if the proof
/// shows the fault it names (`kind`) for the block `header`, whose parent state in the
/// accused domain has root `parent_state_root`; any other proof — malformed, about other
/// shards or another parent state, or simply wrong — is an `Err` with a reason, never a
/// panic.
pub trait FraudProofVerifier {
    /// Checks `proof` against the block it accuses.
    fn verify(
        &self,
        proof: &FraudProof,
        header: &BlockHeader,
        parent_state_root: Root,
    ) -> Result<(), String>;
}
