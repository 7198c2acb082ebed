//! The coordination store seam (DESIGN.md "Clustered full node").
//!
//! The servers of one node agree on two things through it, and on nothing else:
//!
//! * **which result of a shard is accepted**: the first value written under the
//!   create-if-absent key of `(block, shard)` wins ([`CoordinationStore::create_if_absent`]);
//! * **which servers are alive**: each server holds a lease and keeps a key under it; a server
//!   whose lease lapses disappears from [`CoordinationStore::list`].
//!
//! Two implementations: [`crate::embedded::EmbeddedStore`] (in-process, the default for one
//! machine, the devnet and the simulator) and [`crate::etcd::EtcdStore`] (a real Raft store for a
//! node spread over machines). One test suite runs against both (`tests/store.rs`).
//!
//! **Retries and idempotence.** A create whose reply was lost may be retried; the store then
//! finds the key present. Values written by phalanx carry the writer's id and a proposal id,
//! so [`Created::Won`] is also returned when the present value is byte-for-byte the one being
//! written: a retried create recognises its own earlier win.

use std::time::Duration;

use async_trait::async_trait;

/// A lease: keys written under it vanish when it lapses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub i64);

/// The outcome of [`CoordinationStore::create_if_absent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// The key now holds the value written (by this call or an earlier try of the same value).
    Won,
    /// The key already held another value, returned here.
    Lost(Vec<u8>),
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached within the retry budget.
    #[error("coordination store unavailable: {0}")]
    Unavailable(String),
    /// The lease is unknown or has lapsed.
    #[error("lease {0:?} has lapsed")]
    LeaseLapsed(LeaseId),
    /// The store rejected the request.
    #[error("coordination store refused the request: {0}")]
    Refused(String),
    /// The store is shut down.
    #[error("coordination store closed")]
    Closed,
}

/// A key-value store with create-if-absent and leases: the one thing the servers of a node
/// share besides the network.
#[async_trait]
pub trait CoordinationStore: Send + Sync + 'static {
    /// Writes `value` under `key` unless the key exists.
    async fn create_if_absent(&self, key: &str, value: &[u8]) -> Result<Created, StoreError>;

    /// The value under `key`.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Writes `value` under `key`, bound to `lease` if given.
    async fn put(&self, key: &str, value: &[u8], lease: Option<LeaseId>) -> Result<(), StoreError>;

    /// Every key starting with `prefix`, in key order, with its value.
    async fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Deletes every key starting with `prefix`; returns how many.
    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError>;

    /// Grants a lease living `ttl` unless kept alive.
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError>;

    /// Renews `lease` for its full ttl; [`StoreError::LeaseLapsed`] if it already lapsed.
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError>;

    /// Ends `lease` now, deleting its keys.
    async fn revoke(&self, lease: LeaseId) -> Result<(), StoreError>;
}
