//! The untrusted full node a light client talks to, over HTTP: the light protocol of
//! [`crate::wire`] and the two Ethereum JSON-RPC methods verified reads rest on
//! (`eth_getProof`, `eth_getCode`). Nothing it answers is believed as such: headers are hashed
//! here, claims checked by signature, proofs re-executed, account and storage proofs checked
//! against the believed root, code against the proven code hash.

use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes, U256};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::wire::{Bootstrap, UPDATES_PATH, Updates, UpdatesQuery};

/// A failed request to the full node.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No answer (connection refused, timeout, …).
    #[error("{url}: {source}")]
    Http {
        /// What was asked.
        url: String,
        /// Why it failed.
        source: reqwest::Error,
    },
    /// An HTTP error status.
    #[error("{url}: HTTP {status}")]
    Status {
        /// What was asked.
        url: String,
        /// The status.
        status: u16,
    },
    /// A JSON-RPC error answer.
    #[error("{method}: the node answered error {code}: {message}")]
    Rpc {
        /// The method.
        method: String,
        /// Its code.
        code: i64,
        /// Its message.
        message: String,
    },
    /// An answer that does not parse.
    #[error("{what}: malformed answer: {reason}")]
    Malformed {
        /// What was asked.
        what: String,
        /// Why it does not parse.
        reason: String,
    },
}

/// An EIP-1186 answer: only the proofs are read (the values in it are the node's word).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountProofResponse {
    /// Trie nodes from the state root to the account.
    pub account_proof: Vec<Bytes>,
    /// One entry per storage key asked, in the order asked.
    #[serde(default)]
    pub storage_proof: Vec<StorageProofResponse>,
}

/// One storage key's proof.
#[derive(Debug, Clone, Deserialize)]
pub struct StorageProofResponse {
    /// Trie nodes from the account's storage root to the slot.
    pub proof: Vec<Bytes>,
}

/// A full node's HTTP endpoint.
#[derive(Debug, Clone)]
pub struct Upstream {
    http: reqwest::Client,
    base: String,
}

impl Upstream {
    /// The node at `base` (e.g. `http://127.0.0.1:8545`), with a per-request timeout.
    pub fn new(base: &str, timeout: Duration) -> Result<Self, FetchError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|source| FetchError::Http {
                url: base.to_string(),
                source,
            })?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
        })
    }

    /// The node's URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn get(&self, path: &str) -> Result<Option<reqwest::Response>, FetchError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|source| FetchError::Http {
                url: url.clone(),
                source,
            })?;
        match response.status().as_u16() {
            200 => Ok(Some(response)),
            404 => Ok(None),
            status => Err(FetchError::Status { url, status }),
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, FetchError> {
        self.get_json_if_held(path)
            .await?
            .ok_or_else(|| FetchError::Status {
                url: format!("{}{path}", self.base),
                status: 404,
            })
    }

    /// `None` on 404.
    async fn get_json_if_held<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, FetchError> {
        let Some(response) = self.get(path).await? else {
            return Ok(None);
        };
        let bytes = response.bytes().await.map_err(|source| FetchError::Http {
            url: path.to_string(),
            source,
        })?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| FetchError::Malformed {
                what: path.to_string(),
                reason: e.to_string(),
            })
    }

    /// The node's suggested checkpoint.
    pub async fn bootstrap(&self) -> Result<Bootstrap, FetchError> {
        self.get_json(crate::wire::BOOTSTRAP_PATH).await
    }

    /// Aggregated attestations whose target epoch is `from` or later (SSZ each).
    pub async fn finality(&self, from: u64) -> Result<Vec<Bytes>, FetchError> {
        let path = format!("{}?from={from}", crate::wire::FINALITY_PATH);
        let update: crate::wire::FinalityUpdate = self.get_json(&path).await?;
        Ok(update.attestations)
    }

    /// Headers and claims.
    pub async fn updates(&self, q: &UpdatesQuery) -> Result<Updates, FetchError> {
        let mut path = format!(
            "{UPDATES_PATH}?from={}&claims_from={}",
            q.from, q.claims_from
        );
        if let Some(limit) = q.limit {
            path.push_str(&format!("&limit={limit}"));
        }
        self.get_json(&path).await
    }

    /// The proof of execution of the block at `height` re-executing the shards in `execute`
    /// (SSZ), if the node has it.
    pub async fn proof(
        &self,
        height: u64,
        execute: &[usize],
    ) -> Result<Option<Vec<u8>>, FetchError> {
        let path = crate::wire::proof_path(height, execute);
        let Some(response) = self.get(&path).await? else {
            return Ok(None);
        };
        let bytes = response
            .bytes()
            .await
            .map_err(|source| FetchError::Http { url: path, source })?;
        Ok(Some(bytes.to_vec()))
    }

    /// The shards of the block at `height` (SSZ each), if the node has them.
    pub async fn shards(&self, height: u64) -> Result<Option<Vec<Bytes>>, FetchError> {
        let path = crate::wire::shards_path(height);
        Ok(self
            .get_json_if_held::<crate::wire::BlockShards>(&path)
            .await?
            .map(|b| b.shards))
    }

    /// Posts signed claims (SSZ each). A 400 answer still says which were refused and why.
    pub async fn submit_claims(
        &self,
        claims: Vec<Bytes>,
    ) -> Result<crate::wire::ClaimsAnswer, FetchError> {
        self.post_for_answer(
            crate::wire::CLAIMS_PATH,
            &crate::wire::ClaimsSubmission { claims },
        )
        .await
    }

    /// The executor registry at the node's head.
    pub async fn executors(&self) -> Result<crate::wire::ExecutorsAnswer, FetchError> {
        self.get_json(crate::wire::EXECUTORS_PATH).await
    }

    /// Posts executor deposits and exits (SSZ each) for the node's producers to carry.
    pub async fn submit_executor_ops(
        &self,
        ops: &crate::wire::ExecutorOpsSubmission,
    ) -> Result<crate::wire::ExecutorOpsAnswer, FetchError> {
        self.post_for_answer(crate::wire::EXECUTOR_OPS_PATH, ops)
            .await
    }

    /// POSTs `body` as JSON to `path` and reads the answer, which a 400 carries too (what was
    /// refused and why).
    async fn post_for_answer<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, FetchError> {
        let (status, bytes) = self.post_json(path, body).await?;
        if status != 200 && status != 400 {
            return Err(FetchError::Status {
                url: format!("{}{path}", self.base),
                status,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| FetchError::Malformed {
            what: path.to_string(),
            reason: e.to_string(),
        })
    }

    /// POSTs `body` as JSON to `path`: the status and the answer's bytes.
    async fn post_json(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<(u16, Vec<u8>), FetchError> {
        let url = format!("{}{path}", self.base);
        let http = |source| FetchError::Http {
            url: url.clone(),
            source,
        };
        let response = self.http.post(&url).json(body).send().await.map_err(http)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(http)?;
        Ok((status, bytes.to_vec()))
    }

    /// `eth_getProof(address, slots, height)`.
    pub async fn account_proof(
        &self,
        address: Address,
        slots: &[U256],
        height: u64,
    ) -> Result<AccountProofResponse, FetchError> {
        let keys: Vec<B256> = slots.iter().map(|s| B256::from(*s)).collect();
        let value = self
            .rpc(
                "eth_getProof",
                json!([address, keys, format!("{height:#x}")]),
            )
            .await?;
        let proof: AccountProofResponse =
            serde_json::from_value(value).map_err(|e| FetchError::Malformed {
                what: "eth_getProof".into(),
                reason: e.to_string(),
            })?;
        if proof.storage_proof.len() != slots.len() {
            return Err(FetchError::Malformed {
                what: "eth_getProof".into(),
                reason: format!(
                    "{} storage proofs for {} keys",
                    proof.storage_proof.len(),
                    slots.len()
                ),
            });
        }
        Ok(proof)
    }

    /// `eth_getCode(address, "latest")` (code is checked against a proven code hash, so any
    /// block's will do).
    pub async fn code(&self, address: Address) -> Result<Bytes, FetchError> {
        let value = self.rpc("eth_getCode", json!([address, "latest"])).await?;
        serde_json::from_value(value).map_err(|e| FetchError::Malformed {
            what: "eth_getCode".into(),
            reason: e.to_string(),
        })
    }

    async fn rpc(&self, method: &str, params: Value) -> Result<Value, FetchError> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let (status, bytes) = self.post_json("/", &body).await?;
        if status != 200 {
            return Err(FetchError::Status {
                url: format!("{}/", self.base),
                status,
            });
        }
        let mut answer: Value =
            serde_json::from_slice(&bytes).map_err(|e| FetchError::Malformed {
                what: method.to_string(),
                reason: e.to_string(),
            })?;
        if let Some(error) = answer.get("error") {
            return Err(FetchError::Rpc {
                method: method.to_string(),
                code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            });
        }
        Ok(answer
            .get_mut("result")
            .map(Value::take)
            .unwrap_or(Value::Null))
    }
}
