//! From the ordered chain to execution: the genesis allocation as state changes, and the
//! [`ExecHeader`] of each finalized block.
//!
//! The header execution runs under is derived, never signed separately
//! ([`phalanx_light::headers::derive`], the rule light clients check it by): the number counts
//! finalized blocks from genesis, the timestamp is the slot's start, `PREVRANDAO` is the RANDAO
//! mix after the block, the fee recipients are the proposer's and the producer's reward
//! addresses from the registry, and the fee split is the declaration's. The base fee is fixed
//! at [`BASEFEE`] (the devnet has no fee market yet).
//!
//! The way back, `Outcomes`: what execution made of each slot's block — the fees its
//! validator earned, or a void block, or no block of the declared producer in the executed
//! chain — is what the validators' producer-reputation books record.

use std::sync::Arc;

use phalanx_cluster::wire::ExecHeader;
use phalanx_consensus::Registry;
use phalanx_sim::chain::{FinalizedBlock, OutcomeSource};
use phalanx_spec::ChainSpec;
use phalanx_types::ProducerIndex;
use phalanx_validator::reputation::Outcome;

/// The devnet's base fee, wei (1 gwei).
pub use phalanx_light::headers::BASEFEE;

/// The genesis allocation as changes to the empty state (as every executor computes it).
pub use phalanx_executor::genesis_changes;

/// The header of execution's genesis block (height 0, no shards).
pub use phalanx_light::headers::genesis_header;

/// The header execution runs `block` under, on top of `parent`.
pub fn header(
    block: &FinalizedBlock,
    parent: &ExecHeader,
    spec: &ChainSpec,
    genesis_time: u64,
    registry: &Registry,
) -> ExecHeader {
    phalanx_light::headers::derive(
        &block.block.header.message,
        block.mix,
        (parent.number, parent.hash()),
        spec,
        genesis_time,
        registry,
    )
}

/// The executed chain as the validators' reputation books read it.
pub(crate) struct Outcomes(pub(crate) Arc<crate::Shared>);

impl OutcomeSource for Outcomes {
    fn outcome(&self, slot: u64, producer: ProducerIndex) -> Option<Outcome> {
        let shared = &self.0;
        let head = shared.executed()?.number;
        let height = {
            let blocks = shared.blocks();
            let mut found = None;
            for (height, block) in blocks.range(..=head).rev() {
                // The genesis: every executed block is after the slot.
                let Some(signed) = &block.signed else {
                    return Some(Outcome::Missed);
                };
                let at = signed.message.slot.0;
                if at == slot {
                    if signed.message.producer != producer {
                        return Some(Outcome::Missed);
                    }
                    found = Some(*height);
                    break;
                }
                if at < slot {
                    // Execution has not passed the slot yet, or passed it without a block.
                    return (*height != head).then_some(Outcome::Missed);
                }
            }
            found?
        };
        let fees = shared.stats.iter().find_map(|s| s.fees(height))?;
        Some(if fees.void {
            Outcome::Void
        } else {
            Outcome::Delivered {
                validator_fees: u128::try_from(fees.validator_fee).unwrap_or(u128::MAX),
            }
        })
    }
}
