//! The embedded coordination store: one in-process map shared by the servers of a node that
//! run in one process (the default, the devnet, the simulator).
//!
//! Lease time is tokio's clock, so a test or simulator with a paused clock drives lease expiry
//! deterministically. Lapsed leases are swept on every operation, before it runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::store::{CoordinationStore, Created, LeaseId, StoreError};

#[derive(Debug, Default)]
struct Inner {
    keys: BTreeMap<String, (Vec<u8>, Option<LeaseId>)>,
    leases: HashMap<LeaseId, (Instant, Duration)>,
    next_lease: i64,
    closed: bool,
}

impl Inner {
    fn sweep(&mut self) {
        let now = Instant::now();
        let lapsed: Vec<LeaseId> = self
            .leases
            .iter()
            .filter(|(_, (deadline, _))| *deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in lapsed {
            self.drop_lease(id);
        }
    }

    fn drop_lease(&mut self, id: LeaseId) {
        self.leases.remove(&id);
        self.keys.retain(|_, (_, lease)| *lease != Some(id));
    }
}

/// An in-process [`CoordinationStore`]. Clones share one map.
#[derive(Debug, Clone, Default)]
pub struct EmbeddedStore {
    inner: Arc<Mutex<Inner>>,
}

impl EmbeddedStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every later operation fail with [`StoreError::Closed`] (a store outage, in tests).
    pub fn close(&self) {
        self.lock().closed = true;
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The maps stay consistent even if a holder panicked: every update is one insert or
        // retain.
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn open(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        let mut inner = self.lock();
        if inner.closed {
            return Err(StoreError::Closed);
        }
        inner.sweep();
        Ok(inner)
    }
}

#[async_trait]
impl CoordinationStore for EmbeddedStore {
    async fn create_if_absent(&self, key: &str, value: &[u8]) -> Result<Created, StoreError> {
        let mut inner = self.open()?;
        match inner.keys.get(key) {
            Some((present, _)) if present.as_slice() == value => Ok(Created::Won),
            Some((present, _)) => Ok(Created::Lost(present.clone())),
            None => {
                inner.keys.insert(key.to_owned(), (value.to_vec(), None));
                Ok(Created::Won)
            }
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.open()?.keys.get(key).map(|(v, _)| v.clone()))
    }

    async fn put(&self, key: &str, value: &[u8], lease: Option<LeaseId>) -> Result<(), StoreError> {
        let mut inner = self.open()?;
        if let Some(id) = lease
            && !inner.leases.contains_key(&id)
        {
            return Err(StoreError::LeaseLapsed(id));
        }
        inner.keys.insert(key.to_owned(), (value.to_vec(), lease));
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let inner = self.open()?;
        Ok(inner
            .keys
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        let mut inner = self.open()?;
        let before = inner.keys.len();
        inner.keys.retain(|k, _| !k.starts_with(prefix));
        Ok((before - inner.keys.len()) as u64)
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let mut inner = self.open()?;
        inner.next_lease += 1;
        let id = LeaseId(inner.next_lease);
        inner.leases.insert(id, (Instant::now() + ttl, ttl));
        Ok(id)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        let mut inner = self.open()?;
        match inner.leases.get_mut(&lease) {
            Some((deadline, ttl)) => {
                *deadline = Instant::now() + *ttl;
                Ok(())
            }
            None => Err(StoreError::LeaseLapsed(lease)),
        }
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.open()?.drop_lease(lease);
        Ok(())
    }
}
