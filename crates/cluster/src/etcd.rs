//! The etcd coordination store (`etcd-client`), for a node spread over machines.
//!
//! * create-if-absent is one transaction: `if create_revision(key) == 0 then put else get`;
//! * every request runs under a short timeout (default 1 s) and is retried, rotating through
//!   the endpoints, until a total budget (default 10 s) is spent: after a `kill -9` of the
//!   leader an in-flight request can otherwise hang for seconds, and the client keeps dead
//!   endpoints in its rotation;
//! * a retried create that finds its own value recognises its earlier win (see
//!   [`crate::store`]);
//! * lease ttls are whole seconds in etcd, so a ttl is rounded up.
//!
//! etcd support is the `etcd` cargo feature (on in `./scripts/test`; `cargo build --release
//! --features etcd` for a node spread over machines): `etcd-client` compiles etcd's protobuf
//! definitions with `protoc`, which a fresh machine lacks, and the devnet and the embedded
//! store need none of it. Without the feature [`EtcdStore::connect`] is an error saying so.

use std::time::Duration;

#[cfg(feature = "etcd")]
mod client;
#[cfg(feature = "etcd")]
pub use client::EtcdStore;

/// How [`EtcdStore`] talks to etcd.
#[derive(Debug, Clone)]
pub struct EtcdConfig {
    /// Client endpoints, e.g. `http://127.0.0.1:2379`.
    pub endpoints: Vec<String>,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// Total time spent retrying one operation before giving up.
    pub retry_budget: Duration,
}

impl EtcdConfig {
    /// Defaults (1 s per request, 10 s in all) for `endpoints`.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            request_timeout: Duration::from_secs(1),
            retry_budget: Duration::from_secs(10),
        }
    }
}

#[cfg(not(feature = "etcd"))]
pub use unavailable::EtcdStore;

#[cfg(not(feature = "etcd"))]
mod unavailable {
    use std::convert::Infallible;
    use std::time::Duration;

    use async_trait::async_trait;

    use super::EtcdConfig;
    use crate::store::{CoordinationStore, Created, LeaseId, StoreError};

    /// The etcd store in a build without the `etcd` feature: it cannot be made.
    #[derive(Debug, Clone)]
    pub struct EtcdStore(Infallible);

    impl EtcdStore {
        /// Always an error: this build has no etcd client.
        pub async fn connect(config: EtcdConfig) -> Result<Self, StoreError> {
            Err(StoreError::Unavailable(format!(
                "this phalanx was built without etcd support, so it cannot reach {}; rebuild \
                 with `cargo build --release --features etcd` (needs `protoc`, Debian's \
                 protobuf-compiler) or use the embedded store",
                config.endpoints.join(",")
            )))
        }
    }

    #[async_trait]
    impl CoordinationStore for EtcdStore {
        async fn create_if_absent(&self, _: &str, _: &[u8]) -> Result<Created, StoreError> {
            match self.0 {}
        }
        async fn get(&self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
            match self.0 {}
        }
        async fn put(&self, _: &str, _: &[u8], _: Option<LeaseId>) -> Result<(), StoreError> {
            match self.0 {}
        }
        async fn list(&self, _: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            match self.0 {}
        }
        async fn delete_prefix(&self, _: &str) -> Result<u64, StoreError> {
            match self.0 {}
        }
        async fn grant_lease(&self, _: Duration) -> Result<LeaseId, StoreError> {
            match self.0 {}
        }
        async fn keep_alive(&self, _: LeaseId) -> Result<(), StoreError> {
            match self.0 {}
        }
        async fn revoke(&self, _: LeaseId) -> Result<(), StoreError> {
            match self.0 {}
        }
    }
}
