//! The light client's Ethereum JSON-RPC endpoint: verified reads (as Helios serves them).
//!
//! Every answer about state is checked against the state root the client believes at the
//! block asked (`latest`, `safe`, `finalized` and `pending` name its head — or, when the
//! node's state lags behind the claims, the newest block the node says it can prove; a hex
//! number any height it still holds a root for): the account and storage proofs an untrusted full node
//! sends (`eth_getProof` at that height) must lead from the root to the value, code must hash
//! to the proven code hash. What cannot be verified is an error (-32000, saying why), never
//! the node's word:
//!
//! - `eth_getBalance`, `eth_getTransactionCount`, `eth_getCode`, `eth_getStorageAt`;
//! - `eth_call` and `eth_estimateGas`: the EVM runs here, over [`ProvenState`], which fetches
//!   and verifies each account, slot and code the call touches (one `eth_getProof` each,
//!   cached for the call);
//! - `eth_blockNumber` (the light head), `eth_chainId`, `net_version`, `eth_syncing`,
//!   `web3_clientVersion`.
//!
//! Any other method is -32601: the light client answers only what it can verify (send
//! transactions to a full node).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use alloy_primitives::{Address, B256, Bytes, KECCAK256_EMPTY, U256};
use alloy_trie::TrieAccount;
use phalanx_execution::StateError;
use phalanx_execution::block::BlockEnv;
use phalanx_execution::reader::StateReader;
use phalanx_execution::rpc::{self, BlockTag, CallObject, RpcError, param, quantity};
use serde_json::{Value, json};
use tokio::runtime::Handle;

use crate::client::LightClient;
use crate::reads::{ReadError, verify_account_at};
use crate::upstream::{FetchError, Upstream};

/// What the endpoint serves from.
#[derive(Clone)]
pub struct Serving {
    /// The client (its believed roots and headers).
    pub client: Arc<Mutex<LightClient>>,
    /// The untrusted full nodes proofs come from, asked in order until one's proof verifies.
    pub upstreams: Vec<Upstream>,
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The highest height the node says it can prove state at.
    pub provable: Arc<std::sync::atomic::AtomicU64>,
    /// The runtime fetches run on (handlers run on blocking threads).
    pub runtime: Handle,
}

/// The router serving JSON-RPC at `/`.
pub fn router(serving: Serving) -> axum::Router {
    axum::Router::new()
        .route("/", axum::routing::post(handle))
        .with_state(serving)
}

async fn handle(
    axum::extract::State(serving): axum::extract::State<Serving>,
    body: String,
) -> axum::Json<Value> {
    axum::Json(
        rpc::dispatch_blocking(body, move |method, params| call(&serving, method, params)).await,
    )
}

fn lock(client: &Mutex<LightClient>) -> std::sync::MutexGuard<'_, LightClient> {
    client
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unverified(e: ReadError) -> RpcError {
    RpcError::server(format!("unverified: {e}"))
}

fn fetch_failed(e: FetchError) -> RpcError {
    RpcError::server(format!("full node: {e}"))
}

/// The height and root a block parameter names.
fn at(serving: &Serving, params: &[Value], i: usize) -> Result<(u64, B256), RpcError> {
    let client = lock(&serving.client);
    let (head, root) = client.head();
    let height = match rpc::block_tag(params, i)? {
        BlockTag::Head => {
            // The newest block both verified here and provable there.
            let provable = serving.provable.load(std::sync::atomic::Ordering::Relaxed);
            return Ok(match client.root_at(provable) {
                Some(r) if provable < head => (provable, r),
                _ => (head, root),
            });
        }
        BlockTag::Earliest => 0,
        BlockTag::Number(n) => n,
    };
    client
        .root_at(height)
        .map(|root| (height, root))
        .ok_or_else(|| {
            RpcError::server(format!(
                "no verified state root at block {height} (light head {head}; the client \
                 keeps the last {} decided blocks)",
                crate::client::KEEP_HEIGHTS
            ))
        })
}

fn call(serving: &Serving, method: &str, params: &[Value]) -> Result<Value, RpcError> {
    match method {
        "web3_clientVersion" => Ok(json!(format!(
            "phalanx-light/{}",
            env!("CARGO_PKG_VERSION")
        ))),
        "net_version" => Ok(json!(serving.chain_id.to_string())),
        "eth_chainId" => Ok(quantity(serving.chain_id)),
        "eth_syncing" => Ok(json!(false)),
        "eth_blockNumber" => Ok(quantity(lock(&serving.client).head().0)),
        "eth_getBalance" | "eth_getTransactionCount" | "eth_getCode" => {
            let address: Address = param(params, 0, "address")?;
            let (height, root) = at(serving, params, 1)?;
            let state = ProvenState::new(serving, height, root);
            let account = crate::reads::ProvenAccount::from(state.proven(address)?);
            match method {
                "eth_getBalance" => Ok(quantity(account.balance)),
                "eth_getTransactionCount" => Ok(quantity(account.nonce)),
                _ => {
                    if account.code_hash == KECCAK256_EMPTY {
                        return Ok(json!(Bytes::new()));
                    }
                    Ok(json!(state.code_of(address, account.code_hash)?))
                }
            }
        }
        "eth_getStorageAt" => {
            let address: Address = param(params, 0, "address")?;
            let slot: String = param(params, 1, "slot")?;
            let slot = rpc::storage_key(&slot)?;
            let (height, root) = at(serving, params, 2)?;
            let value = ProvenState::new(serving, height, root).slot(address, slot)?;
            Ok(json!(B256::from(value)))
        }
        "eth_call" | "eth_estimateGas" => {
            let object: CallObject = param(params, 0, "transaction object")?;
            let (height, root) = at(serving, params, 1)?;
            let env = block_env(serving, height)?.exec_env();
            let state = ProvenState::new(serving, height, root);
            let request = object.request();
            match rpc::run_call(&state, &env, method, &request) {
                Ok(answer) => answer,
                // A read the call needed that could not be verified says so.
                Err(e) => Err(match state.failure() {
                    Some(why) => why,
                    None => RpcError::server(e.to_string()),
                }),
            }
        }
        other => Err(RpcError::unknown_method(format!(
            "method {other} is not served by the light client: it answers only what it can \
             verify (eth_getBalance, eth_getTransactionCount, eth_getCode, eth_getStorageAt, \
             eth_call, eth_estimateGas)"
        ))),
    }
}

fn block_env(serving: &Serving, height: u64) -> Result<BlockEnv, RpcError> {
    lock(&serving.client)
        .header(height)
        .map(|h| h.env.clone())
        .ok_or_else(|| {
            RpcError::server(format!(
                "no header held at block {height} (the checkpoint's header is not kept); ask \
                 a later block"
            ))
        })
}

/// The state after one block as the client can prove it: each account, slot and code is
/// fetched from the untrusted nodes — in order, until one's answer verifies — and verified
/// against the believed root before it is used. Read by the EVM for `eth_call`.
pub struct ProvenState {
    upstreams: Vec<Upstream>,
    runtime: Handle,
    height: u64,
    root: B256,
    accounts: Mutex<HashMap<Address, Option<TrieAccount>>>,
    slots: Mutex<HashMap<(Address, U256), U256>>,
    codes: Mutex<HashMap<B256, Bytes>>,
    /// An account holding each code hash seen (code is fetched by address).
    owners: Mutex<HashMap<B256, Address>>,
    /// The first read that failed, as the error the caller gets.
    failed: Mutex<Option<RpcError>>,
}

impl ProvenState {
    fn new(serving: &Serving, height: u64, root: B256) -> Self {
        Self::over(
            serving.upstreams.clone(),
            serving.runtime.clone(),
            height,
            root,
        )
    }

    /// The state under `root` (after block `height`), read from `upstreams` on `runtime`
    /// (called from a blocking thread, never from the runtime's own).
    pub fn over(upstreams: Vec<Upstream>, runtime: Handle, height: u64, root: B256) -> Self {
        Self {
            upstreams,
            runtime,
            height,
            root,
            accounts: Mutex::default(),
            slots: Mutex::default(),
            codes: Mutex::default(),
            owners: Mutex::default(),
            failed: Mutex::default(),
        }
    }

    fn failure(&self) -> Option<RpcError> {
        self.failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn fail(&self, e: RpcError) -> StateError {
        let message = e.message.clone();
        self.failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert(e);
        StateError::Unverified(message)
    }

    /// `address`'s account, proven (`None`: proven absent).
    pub fn proven(&self, address: Address) -> Result<Option<TrieAccount>, RpcError> {
        if let Some(a) = guard(&self.accounts).get(&address) {
            return Ok(*a);
        }
        let account = self.first_verified(|u| {
            let proof = self
                .runtime
                .block_on(u.account_proof(address, &[], self.height))
                .map_err(fetch_failed)?;
            verify_account_at(self.root, address, &proof.account_proof).map_err(unverified)
        })?;
        self.remember(address, account);
        Ok(account)
    }

    /// The first answer that verifies, asking each node in turn; else the first node's
    /// error (a lying or lagging node only costs a request when another answers).
    fn first_verified<T>(
        &self,
        ask: impl Fn(&Upstream) -> Result<T, RpcError>,
    ) -> Result<T, RpcError> {
        let mut first = None;
        for u in &self.upstreams {
            match ask(u) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    tracing::debug!(node = %u.base(), error = %e.message, "light client: read refused");
                    first.get_or_insert(e);
                }
            }
        }
        Err(first.unwrap_or_else(|| RpcError::server("no full node to read from")))
    }

    /// Caches a proven account, and which address holds its code (code is fetched by
    /// address, asked for by hash).
    fn remember(&self, address: Address, account: Option<TrieAccount>) {
        if let Some(a) = account {
            guard(&self.owners).insert(a.code_hash, address);
        }
        guard(&self.accounts).insert(address, account);
    }

    /// A storage slot, proven.
    pub fn slot(&self, address: Address, slot: U256) -> Result<U256, RpcError> {
        if let Some(v) = guard(&self.slots).get(&(address, slot)) {
            return Ok(*v);
        }
        let (account, value) = self.first_verified(|u| {
            let proof = self
                .runtime
                .block_on(u.account_proof(address, &[slot], self.height))
                .map_err(fetch_failed)?;
            let account =
                verify_account_at(self.root, address, &proof.account_proof).map_err(unverified)?;
            let value = match account {
                None => U256::ZERO,
                Some(a) => {
                    let storage = proof
                        .storage_proof
                        .first()
                        .map(|p| p.proof.as_slice())
                        .unwrap_or_default();
                    let proven = crate::reads::ProvenAccount::from(Some(a));
                    LightClient::verify_storage(&proven, slot, storage).map_err(unverified)?
                }
            };
            Ok((account, value))
        })?;
        self.remember(address, account);
        guard(&self.slots).insert((address, slot), value);
        Ok(value)
    }

    /// Code of `address`, checked against `code_hash`.
    fn code_of(&self, address: Address, code_hash: B256) -> Result<Bytes, RpcError> {
        if let Some(c) = guard(&self.codes).get(&code_hash) {
            return Ok(c.clone());
        }
        let proven = crate::reads::ProvenAccount {
            code_hash,
            ..Default::default()
        };
        let code = self.first_verified(|u| {
            let code = self
                .runtime
                .block_on(u.code(address))
                .map_err(fetch_failed)?;
            LightClient::verify_code(&proven, code).map_err(unverified)
        })?;
        guard(&self.codes).insert(code_hash, code.clone());
        Ok(code)
    }
}

fn guard<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl StateReader for ProvenState {
    fn account(&self, address: Address) -> Result<Option<TrieAccount>, StateError> {
        self.proven(address).map_err(|e| self.fail(e))
    }

    fn storage(&self, address: Address, slot: U256) -> Result<U256, StateError> {
        self.slot(address, slot).map_err(|e| self.fail(e))
    }

    fn code(&self, code_hash: B256) -> Result<Bytes, StateError> {
        if code_hash == KECCAK256_EMPTY {
            return Ok(Bytes::new());
        }
        let owner = guard(&self.owners).get(&code_hash).copied();
        match owner {
            Some(address) => self.code_of(address, code_hash).map_err(|e| self.fail(e)),
            None => Err(StateError::MissingCode(code_hash)),
        }
    }
}
