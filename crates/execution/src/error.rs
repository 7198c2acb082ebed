//! Errors of the execution layer.

use alloy_primitives::B256;
use phalanx_trie::TrieError;

/// The state could not be read or written. Not a property of a block: a block never causes
/// one; a missing witness node, a corrupt database or an I/O failure does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// A trie node is missing or malformed.
    #[error(transparent)]
    Trie(#[from] TrieError),
    /// Contract code the state refers to is not available.
    #[error("contract code {0} is missing")]
    MissingCode(B256),
    /// An account leaf does not decode.
    #[error("account record is malformed: {0}")]
    MalformedAccount(String),
    /// The block whose state was asked for is not held.
    #[error("state of block {0} is not held (unknown, pruned or on an abandoned fork)")]
    UnknownBlock(B256),
    /// The state after a finalized height older than the ones a pruning store keeps.
    #[error(
        "the state after height {number} is pruned: this node keeps the trie of its last {keep} \
         finalized heights (head {head}); an archive node (keeping every state) can prove it"
    )]
    Pruned {
        /// The height asked for.
        number: u64,
        /// States kept.
        keep: u64,
        /// The finalized head.
        head: u64,
    },
    /// The receipts of a finalized height older than the ones a store keeps receipts for.
    #[error(
        "the receipts of height {number} are pruned: this node keeps the receipts of its last \
         {keep} finalized heights (head {head})"
    )]
    ReceiptsPruned {
        /// The height asked for.
        number: u64,
        /// Heights whose receipts are kept.
        keep: u64,
        /// The finalized head.
        head: u64,
    },
    /// The database failed.
    #[error("state database: {0}")]
    Database(String),
    /// State read from an untrusted source could not be verified (a light client's reads).
    #[error("state could not be verified: {0}")]
    Unverified(String),
}

impl revm::database_interface::DBErrorMarker for StateError {}

/// Execution failed for a reason outside the block (its state, its witness, the database).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    /// Reading or writing state failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The EVM reported an internal error (not a transaction's fault).
    #[error("EVM error: {0}")]
    Evm(String),
    /// The input is not a block this executor can run (e.g. more shards than allowed).
    #[error("invalid input: {0}")]
    Input(String),
}
