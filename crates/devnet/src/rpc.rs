//! The devnet's Ethereum JSON-RPC endpoint (HTTP POST, single and batch requests).
//!
//! Every read is answered from the state of the server with the highest applied block (any
//! server of the clustered node answers any read). Execution follows finality, so `latest`,
//! `safe`, `finalized` and `pending` all name the executed head; for reads an older block
//! number is refused with a clear error because the node keeps only the head's flat state,
//! but `eth_getProof` answers for any executed block (the trie keeps every root's nodes: what
//! a light client verifies against the root it believes). `pending` nonces
//! also count what the pool and included-but-unexecuted blocks hold, as wallets expect.
//!
//! Methods: `web3_clientVersion`, `net_version`, `eth_chainId`, `eth_syncing`,
//! `eth_blockNumber`, `eth_gasPrice`, `eth_maxPriorityFeePerGas`, `eth_getBalance`,
//! `eth_getTransactionCount`, `eth_getCode`, `eth_getStorageAt`, `eth_getProof`, `eth_call`,
//! `eth_estimateGas`, `eth_getBlockByNumber`, `eth_getBlockByHash`, `eth_getLogs`,
//! `eth_feeHistory`, `eth_getTransactionByHash`, `eth_getTransactionReceipt`,
//! `eth_getBlockReceipts`,
//! `eth_sendRawTransaction`, `eth_accounts`, and the filters (`eth_newFilter`,
//! `eth_newBlockFilter`, `eth_newPendingTransactionFilter`, `eth_getFilterChanges`,
//! `eth_getFilterLogs`, `eth_uninstallFilter`: `filters`); conventions and error
//! codes in `phalanx_execution::rpc`; blocks, receipts, logs and fee history in
//! `history`.

use std::sync::Arc;

use alloy_primitives::{Address, B256, Bytes};
use axum::extract::State;
use axum::routing::post;
use phalanx_execution::rpc::{self, CallObject, HeadState, RpcError, param, quantity};
use serde_json::{Value, json};

use phalanx_cluster::wire::ExecHeader;

use crate::Shared;

/// The router serving JSON-RPC at `/`.
pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/", post(handle).get(crate::subscribe::root))
        .route("/api/status", axum::routing::get(crate::web::status))
        .route("/metrics", axum::routing::get(crate::web::metrics))
        .merge(crate::api::router())
        .merge(crate::claims::router())
        .with_state(shared)
}

async fn handle(State(shared): State<Arc<Shared>>, body: String) -> axum::Json<Value> {
    axum::Json(
        rpc::dispatch_blocking(body, move |method, params| call(&shared, method, params)).await,
    )
}

pub(crate) fn call(shared: &Shared, method: &str, params: &[Value]) -> Result<Value, RpcError> {
    if let Some(answer) = crate::filters::call(shared, method, params) {
        return answer;
    }
    if rpc::STATE_METHODS.contains(&method) {
        return head_state(shared, method, |state| state.call(method, params));
    }
    let chain_id = shared.chain_id;
    match method {
        "web3_clientVersion" => Ok(json!(format!("phalanx/{}", env!("CARGO_PKG_VERSION")))),
        "net_version" => Ok(json!(chain_id.to_string())),
        "eth_chainId" => Ok(quantity(chain_id)),
        "eth_syncing" => Ok(json!(false)),
        "eth_blockNumber" => Ok(quantity(shared.executed().map_or(0, |h| h.number))),
        "eth_gasPrice" => Ok(quantity(2 * crate::exec::BASEFEE)),
        "eth_maxPriorityFeePerGas" => Ok(quantity(crate::exec::BASEFEE)),
        "eth_getBlockByNumber" => {
            let head = shared.executed().map_or(0, |h| h.number);
            let n = rpc::block_number(params.first(), head, "block")?;
            let full = params.get(1).and_then(Value::as_bool).unwrap_or(false);
            Ok(crate::history::block_json(shared, n, full))
        }
        "eth_getBlockReceipts" => {
            let head = shared.executed().map_or(0, |h| h.number);
            let n = rpc::block_number(params.first(), head, "block")?;
            Ok(crate::history::block_receipts_json(shared, n))
        }
        "eth_getBlockByHash" => {
            let hash: B256 = param(params, 0, "block hash")?;
            let full = params.get(1).and_then(Value::as_bool).unwrap_or(false);
            Ok(crate::history::height_of(shared, hash)
                .map_or(Value::Null, |n| crate::history::block_json(shared, n, full)))
        }
        "eth_getLogs" => crate::history::get_logs(shared, params),
        "eth_feeHistory" => crate::history::fee_history(shared, params),
        "eth_accounts" => Ok(json!([])),
        "eth_call" | "eth_estimateGas" => {
            let object: CallObject = param(params, 0, "transaction object")?;
            let view = head_state(shared, method, |state| {
                state.at_head(params, 1)?;
                state.view()
            })?;
            let request = object.request();
            let header = shared
                .head_header()
                .ok_or_else(|| RpcError::server("no executed block yet"))?;
            let env = header.env().exec_env();
            rpc::run_call(&view, &env, method, &request)
                .unwrap_or_else(|e| Err(RpcError::server(e.to_string())))
        }
        "eth_getTransactionByHash" => {
            let hash: B256 = param(params, 0, "transaction hash")?;
            Ok(transaction_by_hash(shared, hash))
        }
        "eth_getTransactionReceipt" => {
            let hash: B256 = param(params, 0, "transaction hash")?;
            Ok(crate::history::receipt(shared, hash))
        }
        "eth_sendRawTransaction" => {
            let raw: Bytes = param(params, 0, "transaction")?;
            shared
                .submit(raw)
                .map(|hash| json!(hash))
                .map_err(RpcError::server)
        }
        other => Err(RpcError::unknown_method(format!(
            "method {other} is not available on this node"
        ))),
    }
}

/// Runs `read` on the state of the server with the highest executed head, whose `pending`
/// nonces count what the pool holds.
fn head_state<T>(
    shared: &Shared,
    method: &str,
    read: impl FnOnce(&HeadState<'_>) -> Result<T, RpcError>,
) -> Result<T, RpcError> {
    let (store, head) = shared
        .best()
        .ok_or_else(|| RpcError::server(format!("no state yet to answer {method}")))?;
    let pending = |address: Address, nonce: u64| shared.pool.pending_nonce(address, nonce);
    read(&HeadState {
        store,
        head,
        pending_nonce: Some(&pending),
    })
}

/// A transaction as JSON-RPC shows it; `at` is its block header and index once in a block.
pub(crate) fn transaction_json(raw: &Bytes, at: Option<(&ExecHeader, usize)>) -> Value {
    let block = at.map(|(h, i)| (crate::history::block_ref(h), i));
    phalanx_execution::history::transaction_json(raw, block.as_ref().map(|(b, i)| (b, *i)))
}

fn transaction_by_hash(shared: &Shared, hash: B256) -> Value {
    let location = crate::lock(&shared.txs).get(&hash).copied();
    if let Some(loc) = location {
        let blocks = shared.blocks();
        if let Some(block) = blocks.get(&loc.height)
            && let Some((_, raw)) = block.raw.get(loc.index)
        {
            return transaction_json(raw, Some((&block.header, loc.index)));
        }
    }
    let pending = crate::lock(&shared.pool.mempool)
        .by_sender()
        .flat_map(|(_, txs)| {
            txs.into_iter()
                .map(|t| (t.hash, t.raw.clone()))
                .collect::<Vec<_>>()
        })
        .find(|(h, _)| *h == hash);
    pending.map_or(Value::Null, |(_, raw)| transaction_json(&raw, None))
}
