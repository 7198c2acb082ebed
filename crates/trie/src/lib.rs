//! Ethereum's Merkle Patricia Trie, as the yellow paper (appendix D) defines it, over a
//! content-addressed node store.
//!
//! * Nodes are leaves `[hp(path, leaf), value]`, extensions `[hp(path), child]` and branches
//!   `[c0 … c15, value]`. A child whose RLP is shorter than 32 bytes is embedded in its parent;
//!   every other node is stored under `keccak256(rlp(node))`. The root is always hashed.
//! * [`TrieUpdate`] applies a batch of inserts and removals to the trie under one root, loading
//!   only the nodes on the touched paths (and, when a branch collapses, its one remaining
//!   child), and [`TrieUpdate::commit`] re-hashes only those nodes: the cost of a block is
//!   proportional to the keys it touches, never to the size of the state.
//! * [`get`], [`prove`] and [`entries`] read a trie, [`mark`] lists the nodes it is made of
//!   (what a pruning store keeps); [`verify_proof`] checks a proof (the
//!   list of RLP nodes from the root to the key, as `eth_getProof` returns) with no store.
//! * [`RecordingSource`] wraps a store and records every node read: running a block's reads
//!   and its root update through it yields exactly the nodes a stateless verifier needs.
//!
//! Keys are arbitrary byte strings (the secure tries of Ethereum's state use
//! `keccak256(key)`); an empty value means "absent", as in Ethereum. Malformed nodes from an
//! untrusted source are a [`TrieError`], never a panic.

mod nibbles;
mod node;
mod proof;
mod store;
mod trie;

pub use node::EMPTY_ROOT;
pub use proof::{ProofError, verify_proof};
pub use store::{MemoryStore, NodeSource, RecordingSource};
pub use trie::{Entry, Nodes, TrieUpdate, entries, get, mark, prove, update_parallel};

use alloy_primitives::B256;

/// Why a trie operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrieError {
    /// A node referenced by hash is not in the store (or the witness).
    #[error("trie node {0} is missing")]
    MissingNode(B256),
    /// A stored node does not decode, or hashes to something else than its key.
    #[error("trie node {hash} is malformed: {reason}")]
    Malformed {
        /// The node's key.
        hash: B256,
        /// What is wrong.
        reason: String,
    },
    /// The store failed.
    #[error("trie node store: {0}")]
    Store(String),
}
