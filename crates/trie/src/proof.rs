//! Checking a proof with no store.

use alloy_primitives::B256;

use crate::TrieError;
use crate::store::MemoryStore;
use crate::trie::get;

/// A proof that does not establish the value of its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The path needs a node the proof does not carry.
    #[error("proof is incomplete: node {0} is missing")]
    Incomplete(B256),
    /// A node on the path is malformed.
    #[error("proof is malformed: {0}")]
    Malformed(String),
}

/// Checks `proof` for `key` against `root`: returns the proven value (`None` for a proven
/// absence). Each node is only ever found under its own hash, so a forged node cannot stand
/// in for a real one.
pub fn verify_proof<N: AsRef<[u8]>>(
    root: B256,
    key: &[u8],
    proof: &[N],
) -> Result<Option<Vec<u8>>, ProofError> {
    let store = MemoryStore::from_untrusted(proof.iter().map(|n| n.as_ref().to_vec()));
    get(&store, root, key).map_err(|e| match e {
        TrieError::MissingNode(hash) => ProofError::Incomplete(hash),
        other => ProofError::Malformed(other.to_string()),
    })
}
