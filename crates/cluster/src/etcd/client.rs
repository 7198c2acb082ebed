//! The etcd client behind [`super::EtcdStore`] (built with the `etcd` feature).

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse,
};

use super::EtcdConfig;
use crate::store::{CoordinationStore, Created, LeaseId, StoreError};

/// A [`CoordinationStore`] on an etcd cluster.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    config: EtcdConfig,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.config.endpoints)
            .finish_non_exhaustive()
    }
}

/// What one failed try means.
enum Failure {
    Retry(String),
    Fatal(StoreError),
}

fn classify(error: etcd_client::Error) -> Failure {
    use etcd_client::Error as E;
    match error {
        E::GRpcStatus(status) => {
            let message = status.message().to_owned();
            if message.contains("lease not found") {
                // The lease id is not known to this call; the caller names it.
                return Failure::Fatal(StoreError::LeaseLapsed(LeaseId(0)));
            }
            match status.code() {
                tonic_code::Unavailable
                | tonic_code::DeadlineExceeded
                | tonic_code::Unknown
                | tonic_code::Aborted
                | tonic_code::Cancelled
                | tonic_code::Internal => Failure::Retry(format!("{:?}: {message}", status.code())),
                code => Failure::Fatal(StoreError::Refused(format!("{code:?}: {message}"))),
            }
        }
        E::LeaseKeepAliveError(m) if m.contains("lease not found") => {
            Failure::Fatal(StoreError::LeaseLapsed(LeaseId(0)))
        }
        E::InvalidArgs(m) => Failure::Fatal(StoreError::Refused(m)),
        other => Failure::Retry(other.to_string()),
    }
}

mod tonic_code {
    pub(super) use tonic::Code::*;
}

impl EtcdStore {
    /// Connects to the cluster (retrying within the budget).
    pub async fn connect(config: EtcdConfig) -> Result<Self, StoreError> {
        if config.endpoints.is_empty() {
            return Err(StoreError::Refused("no etcd endpoints given".into()));
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(config.request_timeout)
            .with_timeout(config.request_timeout)
            .with_keep_alive(Duration::from_secs(2), config.request_timeout);
        let deadline = tokio::time::Instant::now() + config.retry_budget;
        loop {
            let attempt = tokio::time::timeout(
                config.request_timeout,
                Client::connect(config.endpoints.clone(), Some(options.clone())),
            )
            .await;
            match attempt {
                Ok(Ok(client)) => return Ok(Self { client, config }),
                Ok(Err(e)) if tokio::time::Instant::now() >= deadline => {
                    return Err(StoreError::Unavailable(format!(
                        "{}: {e}",
                        config.endpoints.join(",")
                    )));
                }
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(StoreError::Unavailable(format!(
                        "{}: connect timed out",
                        config.endpoints.join(",")
                    )));
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Runs `op` with a per-try timeout, retrying within the budget.
    async fn with_retry<T, F, Fut>(&self, what: &str, mut op: F) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.config.retry_budget;
        let mut last = String::new();
        while tokio::time::Instant::now() < deadline {
            match tokio::time::timeout(self.config.request_timeout, op(self.client.clone())).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => match classify(e) {
                    Failure::Fatal(error) => return Err(error),
                    Failure::Retry(reason) => last = reason,
                },
                Err(_) => last = format!("no reply within {:?}", self.config.request_timeout),
            }
            tracing::debug!(what, reason = %last, "etcd request failed; retrying");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(StoreError::Unavailable(format!("{what}: {last}")))
    }
}

fn lease_error(lease: LeaseId) -> impl Fn(StoreError) -> StoreError {
    move |e| match e {
        StoreError::LeaseLapsed(_) => StoreError::LeaseLapsed(lease),
        other => other,
    }
}

#[async_trait]
impl CoordinationStore for EtcdStore {
    async fn create_if_absent(&self, key: &str, value: &[u8]) -> Result<Created, StoreError> {
        let response = self
            .with_retry("create", |mut c| {
                let txn = Txn::new()
                    .when([Compare::create_revision(key, CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(key, value, None)])
                    .or_else([TxnOp::get(key, None)]);
                async move { c.txn(txn).await }
            })
            .await?;
        if response.succeeded() {
            return Ok(Created::Won);
        }
        let present = response
            .op_responses()
            .into_iter()
            .find_map(|r| match r {
                TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
                _ => None,
            })
            // The key existed at compare time and can only be gone if deleted since (pruning).
            .unwrap_or_default();
        if present == value {
            Ok(Created::Won)
        } else {
            Ok(Created::Lost(present))
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let response = self
            .with_retry("get", |mut c| async move { c.get(key, None).await })
            .await?;
        Ok(response.kvs().first().map(|kv| kv.value().to_vec()))
    }

    async fn put(&self, key: &str, value: &[u8], lease: Option<LeaseId>) -> Result<(), StoreError> {
        let options = lease.map(|l| PutOptions::new().with_lease(l.0));
        self.with_retry("put", |mut c| {
            let options = options.clone();
            async move { c.put(key, value, options).await }
        })
        .await
        .map_err(lease_error(lease.unwrap_or(LeaseId(0))))?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let response = self
            .with_retry("list", |mut c| async move {
                c.get(prefix, Some(GetOptions::new().with_prefix())).await
            })
            .await?;
        Ok(response
            .kvs()
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.value().to_vec(),
                )
            })
            .collect())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        let response = self
            .with_retry("delete", |mut c| async move {
                c.delete(prefix, Some(DeleteOptions::new().with_prefix()))
                    .await
            })
            .await?;
        Ok(response.deleted().max(0) as u64)
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let seconds = ttl.as_millis().div_ceil(1000).max(1) as i64;
        let response = self
            .with_retry("lease grant", |mut c| async move {
                c.lease_grant(seconds, None).await
            })
            .await?;
        Ok(LeaseId(response.id()))
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        let ttl = self
            .with_retry("lease keep-alive", |mut c| async move {
                let (mut keeper, mut stream) = c.lease_keep_alive(lease.0).await?;
                keeper.keep_alive().await?;
                Ok(stream.message().await?.map(|r| r.ttl()))
            })
            .await
            .map_err(lease_error(lease))?;
        match ttl {
            Some(ttl) if ttl > 0 => Ok(()),
            _ => Err(StoreError::LeaseLapsed(lease)),
        }
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        match self
            .with_retry("lease revoke", |mut c| async move {
                c.lease_revoke(lease.0).await
            })
            .await
        {
            Ok(_) | Err(StoreError::LeaseLapsed(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
