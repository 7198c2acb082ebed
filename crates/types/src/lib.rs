//! phalanx primitives and consensus types.
//!
//! * [`primitives`]: slots, epochs, indices, roots, amounts.
//! * [`consensus`]: the SSZ containers of DESIGN.md "The chain" — declarations, headers with
//!   per-shard roots, blocks, attestations, executors' claims, slashing evidence, fraud proofs.
//! * [`signing`]: Ethereum-style signing roots with one domain per message type.
//! * [`transaction`]: EIP-2718 typed transactions (alloy), the payload of a shard.
//! * [`fraud`]: the fraud-proof verifier seam between consensus and execution.
//! * [`fs`]: durable (synced, renamed-into-place) file writes.
//! * [`limits`]: the hard size bounds of every list, as SSZ type-level lengths.
//!
//! Consensus never executes transactions: a shard is a list of opaque byte strings here, and
//! decoding one is only done by execution. Every decoder in this crate returns a typed error
//! on malformed input and never panics.

pub mod consensus;
pub mod fraud;
pub mod fs;
pub mod limits;
pub mod primitives;
pub mod signing;
pub mod transaction;

pub use consensus::*;
pub use primitives::*;
pub use signing::{DomainType, Signable, SigningContext};

/// Re-exported so users name the same SSZ traits as this crate.
pub use ssz::{Decode, DecodeError, Encode};
pub use tree_hash::TreeHash;
