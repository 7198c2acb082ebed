//! The devnet's Ethereum JSON-RPC endpoint (HTTP POST, single and batch requests).
//!
//! Every read is answered from the state of the server with the highest applied block (any
//! server of the clustered node answers any read). Execution follows finality, so `latest`,
//! `safe`, `finalized` and `pending` all name the executed head; an older block number is
//! refused with a clear error because the node keeps only the head state. `pending` nonces
//! also count what the pool and included-but-unexecuted blocks hold, as wallets expect.
//!
//! Methods: `web3_clientVersion`, `net_version`, `eth_chainId`, `eth_syncing`,
//! `eth_blockNumber`, `eth_gasPrice`, `eth_maxPriorityFeePerGas`, `eth_getBalance`,
//! `eth_getTransactionCount`, `eth_getCode`, `eth_getStorageAt`, `eth_getBlockByNumber`,
//! `eth_sendRawTransaction`. Errors use the JSON-RPC codes (-32700 parse, -32600 invalid
//! request, -32601 unknown method, -32602 bad params, -32000 server).

use std::sync::Arc;

use alloy_primitives::{Address, B256, Bytes, U256};
use axum::extract::State;
use axum::routing::post;
use phalanx_execution::reader::StateReader;
use serde_json::{Value, json};

use crate::Shared;

/// A JSON-RPC error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// Code.
    pub code: i64,
    /// Message.
    pub message: String,
}

impl RpcError {
    fn params(message: impl Into<String>) -> Self {
        Self {
            code: -32602,
            message: message.into(),
        }
    }
    fn server(message: impl Into<String>) -> Self {
        Self {
            code: -32000,
            message: message.into(),
        }
    }
}

/// The router serving JSON-RPC at `/`.
pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new()
        .route("/", post(handle))
        .with_state(shared)
}

async fn handle(State(shared): State<Arc<Shared>>, body: String) -> axum::Json<Value> {
    let request: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => {
            return axum::Json(error_response(
                Value::Null,
                &RpcError {
                    code: -32700,
                    message: format!("parse error: {e}"),
                },
            ));
        }
    };
    let shared2 = shared.clone();
    let answer = tokio::task::spawn_blocking(move || match request {
        Value::Array(batch) if !batch.is_empty() => {
            Value::Array(batch.iter().map(|r| one(&shared2, r)).collect())
        }
        other => one(&shared2, &other),
    })
    .await
    .unwrap_or_else(|e| {
        error_response(
            Value::Null,
            &RpcError::server(format!("internal error: {e}")),
        )
    });
    axum::Json(answer)
}

fn error_response(id: Value, e: &RpcError) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": e.code, "message": e.message}})
}

fn one(shared: &Shared, request: &Value) -> Value {
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = request.get("method").and_then(Value::as_str) else {
        return error_response(
            id,
            &RpcError {
                code: -32600,
                message: "invalid request: no method".into(),
            },
        );
    };
    let params = request
        .get("params")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    match call(shared, method, &params) {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(e) => {
            tracing::debug!(method, code = e.code, error = %e.message, "json-rpc error");
            error_response(id, &e)
        }
    }
}

fn quantity(v: impl std::fmt::LowerHex) -> Value {
    Value::String(format!("{v:#x}"))
}

fn param<T: serde::de::DeserializeOwned>(
    params: &[Value],
    i: usize,
    what: &str,
) -> Result<T, RpcError> {
    let v = params
        .get(i)
        .ok_or_else(|| RpcError::params(format!("missing parameter {i} ({what})")))?;
    serde_json::from_value(v.clone())
        .map_err(|e| RpcError::params(format!("parameter {i} ({what}): {e}")))
}

/// Checks a block tag or number names the executed head.
fn at_head(shared: &Shared, params: &[Value], i: usize) -> Result<(), RpcError> {
    let Some(tag) = params.get(i) else {
        return Ok(());
    };
    let head = shared.executed().map_or(0, |h| h.number);
    match tag.as_str() {
        Some("latest" | "safe" | "finalized" | "pending") => Ok(()),
        Some(s) => {
            let n = s
                .strip_prefix("0x")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    RpcError::params(format!("block tag {s:?} is not a tag or hex number"))
                })?;
            if n == head {
                Ok(())
            } else {
                Err(RpcError::server(format!(
                    "state at block {n} is not kept: this node keeps the executed head ({head})"
                )))
            }
        }
        None => Err(RpcError::params(
            "block tag: expected a string (block hashes are not supported)",
        )),
    }
}

fn call(shared: &Shared, method: &str, params: &[Value]) -> Result<Value, RpcError> {
    let chain_id = shared.chain_id;
    match method {
        "web3_clientVersion" => Ok(json!(format!("phalanx/{}", env!("CARGO_PKG_VERSION")))),
        "net_version" => Ok(json!(chain_id.to_string())),
        "eth_chainId" => Ok(quantity(chain_id)),
        "eth_syncing" => Ok(json!(false)),
        "eth_blockNumber" => Ok(quantity(shared.executed().map_or(0, |h| h.number))),
        "eth_gasPrice" => Ok(quantity(2 * crate::exec::BASEFEE)),
        "eth_maxPriorityFeePerGas" => Ok(quantity(crate::exec::BASEFEE)),
        "eth_getBalance" | "eth_getTransactionCount" | "eth_getCode" => {
            let address: Address = param(params, 0, "address")?;
            at_head(shared, params, 1)?;
            let view = shared.head_view()?;
            let account = view
                .account(address)
                .map_err(|e| RpcError::server(e.to_string()))?;
            match method {
                "eth_getBalance" => Ok(quantity(account.map_or(U256::ZERO, |a| a.balance))),
                "eth_getTransactionCount" => {
                    let nonce = account.map_or(0, |a| a.nonce);
                    let pending = params.get(1).and_then(Value::as_str) == Some("pending");
                    Ok(quantity(if pending {
                        shared.pool.pending_nonce(address, nonce)
                    } else {
                        nonce
                    }))
                }
                _ => {
                    let code = match account {
                        Some(a) => view
                            .code(a.code_hash)
                            .map_err(|e| RpcError::server(e.to_string()))?,
                        None => Bytes::new(),
                    };
                    Ok(json!(code))
                }
            }
        }
        "eth_getStorageAt" => {
            let address: Address = param(params, 0, "address")?;
            let slot: U256 = param(params, 1, "slot")?;
            at_head(shared, params, 2)?;
            let view = shared.head_view()?;
            let value = view
                .storage(address, slot)
                .map_err(|e| RpcError::server(e.to_string()))?;
            Ok(json!(B256::from(value)))
        }
        "eth_getBlockByNumber" => {
            let tag: String = param(params, 0, "block")?;
            let blocks = shared.blocks();
            let head = shared.executed().map_or(0, |h| h.number);
            let n = match tag.as_str() {
                "latest" | "safe" | "finalized" | "pending" => head,
                "earliest" => 0,
                s => s
                    .strip_prefix("0x")
                    .and_then(|h| u64::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        RpcError::params(format!("block {s:?} is not a tag or hex number"))
                    })?,
            };
            if n > head {
                return Ok(Value::Null);
            }
            let Some(block) = blocks.get(&n) else {
                return Ok(Value::Null);
            };
            let h = &block.header;
            let root = shared.root_at(n).unwrap_or_default();
            Ok(json!({
                "number": quantity(h.number),
                "hash": h.hash(),
                "parentHash": h.parent,
                "timestamp": quantity(h.timestamp),
                "baseFeePerGas": quantity(h.basefee),
                "gasLimit": quantity(h.block_gas_limit),
                "gasUsed": "0x0",
                "miner": h.producer_reward,
                "mixHash": h.prevrandao,
                "stateRoot": root,
                "nonce": "0x0000000000000000",
                "difficulty": "0x0",
                "extraData": "0x",
                "logsBloom": format!("0x{}", "0".repeat(512)),
                "sha3Uncles": B256::ZERO,
                "transactionsRoot": B256::ZERO,
                "receiptsRoot": B256::ZERO,
                "size": "0x0",
                "uncles": [],
                "transactions": block.transactions,
            }))
        }
        "eth_sendRawTransaction" => {
            let raw: Bytes = param(params, 0, "transaction")?;
            shared
                .submit(raw)
                .map(|hash| json!(hash))
                .map_err(RpcError::server)
        }
        other => Err(RpcError {
            code: -32601,
            message: format!("method {other} is not available on this node"),
        }),
    }
}
