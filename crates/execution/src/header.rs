//! The ordered block as execution needs it ([`ExecHeader`]): what a full node's servers
//! execute under, what executors' claims name (`block_hash` is its `hash_tree_root`) and what
//! a light client follows.

use alloy_primitives::{Address, B256};
use ssz_derive::{Decode, Encode};
use ssz_types::VariableList;
use tree_hash::TreeHash;
use tree_hash_derive::TreeHash;
use typenum::U64;

/// The ordered block as execution needs it: consensus has ordered it; the follower derives
/// these fields from the signed header, the declaration and the registry.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, TreeHash)]
pub struct ExecHeader {
    /// Height (genesis = 0).
    pub number: u64,
    /// Root of the parent's [`ExecHeader`].
    pub parent: B256,
    /// Unix timestamp.
    pub timestamp: u64,
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Base fee, wei.
    pub basefee: u64,
    /// `PREVRANDAO`.
    pub prevrandao: B256,
    /// Gas limit of each shard.
    pub shard_gas_limit: u64,
    /// Gas limit of the block.
    pub block_gas_limit: u64,
    /// The slot's validator's reward address.
    pub validator_reward: Address,
    /// The producer's reward address.
    pub producer_reward: Address,
    /// Producer's share of fees, basis points.
    pub fee_split_bps: u16,
    /// `hash_tree_root` of each shard.
    pub shard_roots: VariableList<B256, U64>,
}

impl ExecHeader {
    /// The block's hash: `hash_tree_root` of this header.
    pub fn hash(&self) -> B256 {
        self.tree_hash_root()
    }

    /// The block environment execution runs under.
    pub fn env(&self) -> crate::block::BlockEnv {
        crate::block::BlockEnv {
            number: self.number,
            timestamp: self.timestamp,
            chain_id: self.chain_id,
            basefee: self.basefee,
            prevrandao: self.prevrandao,
            shard_gas_limit: self.shard_gas_limit,
            block_gas_limit: self.block_gas_limit,
            block_hashes: Default::default(),
            validator_reward: self.validator_reward,
            producer_reward: self.producer_reward,
            fee_split_bps: self.fee_split_bps,
        }
    }
}
