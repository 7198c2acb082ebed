//! Where nodes live: the [`NodeSource`] trait and two simple implementations.

use std::collections::HashMap;
use std::sync::Mutex;

use alloy_primitives::{B256, keccak256};

use crate::TrieError;

/// A content-addressed store of encoded trie nodes.
///
/// `node(h)` returns the RLP encoding whose `keccak256` is `h`, or `None` if the store does
/// not hold it. Implementations that receive nodes from untrusted parties must only hand out
/// bytes that hash to the requested key ([`MemoryStore::from_untrusted`] does).
pub trait NodeSource {
    /// The node stored under `hash`.
    fn node(&self, hash: &B256) -> Result<Option<Vec<u8>>, TrieError>;
}

impl<T: NodeSource + ?Sized> NodeSource for &T {
    fn node(&self, hash: &B256) -> Result<Option<Vec<u8>>, TrieError> {
        (**self).node(hash)
    }
}

/// Nodes in a hash map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStore {
    nodes: HashMap<B256, Vec<u8>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store of nodes from an untrusted party: each is keyed by its own hash, so a forged
    /// node can only be found under the hash of what it really is.
    pub fn from_untrusted<I: IntoIterator<Item = Vec<u8>>>(nodes: I) -> Self {
        Self {
            nodes: nodes.into_iter().map(|n| (keccak256(&n), n)).collect(),
        }
    }

    /// Adds nodes produced by a commit.
    pub fn extend<I: IntoIterator<Item = (B256, Vec<u8>)>>(&mut self, nodes: I) {
        self.nodes.extend(nodes);
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

impl NodeSource for MemoryStore {
    fn node(&self, hash: &B256) -> Result<Option<Vec<u8>>, TrieError> {
        Ok(self.nodes.get(hash).cloned())
    }
}

/// Wraps a source and records the hashes of the nodes read through it, in first-read order.
#[derive(Debug)]
pub struct RecordingSource<S> {
    inner: S,
    seen: Mutex<(Vec<B256>, std::collections::HashSet<B256>)>,
}

impl<S: NodeSource> RecordingSource<S> {
    /// Starts recording reads of `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            seen: Mutex::new(Default::default()),
        }
    }

    /// Hashes of every node read so far, each once.
    pub fn recorded(&self) -> Vec<B256> {
        self.seen.lock().map(|s| s.0.clone()).unwrap_or_default()
    }

    /// The wrapped source.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: NodeSource> NodeSource for RecordingSource<S> {
    fn node(&self, hash: &B256) -> Result<Option<Vec<u8>>, TrieError> {
        let node = self.inner.node(hash)?;
        if node.is_some()
            && let Ok(mut seen) = self.seen.lock()
            && seen.1.insert(*hash)
        {
            seen.0.push(*hash);
        }
        Ok(node)
    }
}
