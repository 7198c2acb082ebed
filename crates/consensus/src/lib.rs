//! phalanx consensus: it orders blocks of data and never executes them (seed 002).
//!
//! * [`registry`]: validators and producers from genesis, with their parsed keys.
//! * [`proposer`]: the stake-weighted proposer of each slot from the previous epoch's
//!   randomness, and the RANDAO mix that carries that randomness.
//! * [`validity`]: a block's *data validity*: signatures, the declaration, shard
//!   commitments, size limits. No transaction is decoded or executed here.
//!
//! * [`committee`]: who attests at which slot, and each one's bit in an aggregate.
//! * [`alarms`]: eclipse/Sybil alarms on block rate and attestation participation.
//! * [`fraud`]: applying a fraud proof judged by the execution side's verifier.
//! * [`slashing`]: double declarations and double/surround votes as block operations.
//! * [`executors`]: the executor registry (bonds, sample, slashing by a wrong-claim proof);
//!   [`claims`]: executors' claims and wrong-claim proofs as block operations;
//!   [`executor_ops`]: executors' deposits, exits and releases as block operations.
//! * [`fork_choice`]: LMD-GHOST, Casper FFG justification and finality, slashable-vote
//!   detection, zero weight for fraud-proven blocks.
//!
//! Attestation aggregation and committees, the on-chain state transition (rewards,
//! penalties, ejection), producers and the simulator land with the rest of issue #4.

pub mod alarms;
pub mod claims;
pub mod committee;
pub mod executor_ops;
pub mod executors;
pub mod fork_choice;
pub mod fraud;
pub mod proposer;
pub mod registry;
pub mod slashing;
#[cfg(feature = "test-utils")]
pub mod testing;
pub mod validity;

pub use registry::{Registry, RegistryError};
pub use validity::{BlockError, ChainContext, check_block, check_header};
