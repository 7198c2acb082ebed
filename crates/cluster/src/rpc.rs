//! A node server's Ethereum JSON-RPC endpoint (`phalanx node --rpc ADDR`): state reads from
//! this server's own replica.
//!
//! Every server applies every block (step 5 of [`crate::server`]), so any server answers a
//! read about any account, whichever servers ran the shards that touched it. Reads are
//! answered at the server's finalized head on disk — committed, and durable once the
//! server's sync thread has synced it (milliseconds later) — which is its applied head except
//! while a backlog is written every `persist_blocks` blocks (`docs/protocol/cluster.md`,
//! *Persistence*); `eth_getProof` also at any finalized height before it.
//!
//! Methods: `web3_clientVersion`, `net_version`, `eth_chainId`, `eth_blockNumber` (the head
//! reads are answered at), the state reads of [`phalanx_execution::rpc::HeadState`]:
//! `eth_getBalance`, `eth_getTransactionCount`, `eth_getCode`, `eth_getStorageAt`,
//! `eth_getProof`, and `eth_call` and `eth_estimateGas` at the head, in the environment of
//! the head's block as the state store keeps it on disk with the head (number, timestamp,
//! `PREVRANDAO`, gas limit; no `BLOCKHASH` answers, as on the devnet's endpoint), so a
//! restarted server answers calls at once. At genesis, where no block ran, a call is an
//! error that says so.
//!
//! History ([`HISTORY_METHODS`]): `eth_getBlockByNumber`, `eth_getBlockByHash`,
//! `eth_getBlockReceipts`, `eth_getTransactionReceipt` and `eth_getTransactionByHash` at
//! finalized heights up to the disk head. A server keeps every block's header but only the
//! transactions and receipts of the shards it ran, so these are put together from the
//! node's servers over the node's network ([`crate::lookup`]): what another server sends
//! is checked against the header's shard roots. A block some of whose shards no server can
//! give (their owners down, or past `--keep-receipts`) is an error naming those shards,
//! never a partial block; a height above the disk head, an unknown hash or transaction is
//! `null`. There is no pool behind a server, so a pending transaction is `null` too.
//! Anything else is -32601 naming what is served.

use std::sync::Arc;

use alloy_primitives::B256;
use axum::extract::State;
use phalanx_execution::history::{BlockReceipts, block_json, transaction_json};
use phalanx_execution::rpc::{self, CallObject, HeadState, RpcError, param, quantity};
use phalanx_execution::store::StateStore;

use crate::lookup::{BlockRecords, LookupError, Queries};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the endpoint answers from.
#[derive(Clone)]
pub struct Reads {
    /// The server's state replica.
    pub state: Arc<StateStore>,
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// The server task's history reads (`None`: history is not served).
    pub queries: Option<Queries>,
}

/// The history methods a server answers from its node's servers.
pub const HISTORY_METHODS: [&str; 5] = [
    "eth_getBlockByNumber",
    "eth_getBlockByHash",
    "eth_getBlockReceipts",
    "eth_getTransactionReceipt",
    "eth_getTransactionByHash",
];

/// Serves JSON-RPC (HTTP POST at `/`, single and batch requests) on `listener` until
/// `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    reads: Reads,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let router = axum::Router::new()
        .route("/", axum::routing::post(handle))
        .with_state(reads);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        })
        .await
}

async fn handle(State(reads): State<Reads>, body: String) -> axum::Json<Value> {
    axum::Json(
        rpc::dispatch_blocking(body, move |method, params| call(&reads, method, params)).await,
    )
}

/// Answers one request.
pub fn call(reads: &Reads, method: &str, params: &[Value]) -> Result<Value, RpcError> {
    let head = || {
        reads
            .state
            .head()
            .map_err(|e| RpcError::server(e.to_string()))?
            .ok_or_else(|| RpcError::server("no state yet"))
    };
    match method {
        "web3_clientVersion" => Ok(json!(format!("phalanx/{}", env!("CARGO_PKG_VERSION")))),
        "net_version" => Ok(json!(reads.chain_id.to_string())),
        "eth_chainId" => Ok(quantity(reads.chain_id)),
        "eth_blockNumber" => Ok(quantity(head()?.number)),
        "eth_call" | "eth_estimateGas" => {
            let object: CallObject = param(params, 0, "transaction object")?;
            let (head, env) = reads
                .state
                .head_env()
                .map_err(|e| RpcError::server(e.to_string()))?
                .ok_or_else(|| RpcError::server("no state yet"))?;
            let env = env.ok_or_else(|| {
                RpcError::server(if head.number == 0 {
                    "the head is genesis, where no block ran: calls run in the head block's \
                     environment, so they are answered once a block is applied"
                        .to_string()
                } else {
                    format!(
                        "the environment of the head's block ({}) is not stored (written by an \
                         older build); calls are answered once the next block is final",
                        head.number
                    )
                })
            })?;
            let state = HeadState {
                store: &reads.state,
                head,
                pending_nonce: None,
            };
            state.at_head(params, 1)?;
            let view = state.view()?;
            rpc::run_call(&view, &env.exec_env(), method, &object.request())
                .unwrap_or_else(|e| Err(RpcError::server(e.to_string())))
        }
        m if rpc::STATE_METHODS.contains(&m) => HeadState {
            store: &reads.state,
            head: head()?,
            pending_nonce: None,
        }
        .call(method, params),
        m if HISTORY_METHODS.contains(&m) => history(reads, m, params),
        other => Err(RpcError::unknown_method(format!(
            "method {other} is not served by a node server (state: {}, eth_call, \
             eth_estimateGas; history: {}; no pool, filters or subscriptions)",
            rpc::STATE_METHODS.join(", "),
            HISTORY_METHODS.join(", ")
        ))),
    }
}

/// A finalized block put together from the node's servers.
struct Whole {
    /// What the servers gave.
    records: BlockRecords,
    /// Its receipts with the block-wide figures.
    block: BlockReceipts,
    /// Every transaction it lists, `(shard, encoding)` in block order.
    raw: Vec<(u16, alloy_primitives::Bytes)>,
}

/// Block `number` from the node's servers; an error when any shard is missing.
fn whole_block(queries: &Queries, number: u64) -> Result<Whole, RpcError> {
    let records = queries
        .block_blocking(number)
        .map_err(|e| RpcError::server(e.to_string()))?;
    let missing = records.missing();
    if !missing.is_empty() {
        return Err(RpcError::server(format!(
            "block {number}: shards {missing:?} were not found on any server of the node \
             (their owners down, or past the kept receipts window); no partial block is served"
        )));
    }
    let (block, raw) = records.assemble();
    Ok(Whole {
        records,
        block,
        raw,
    })
}

/// The history methods ([`HISTORY_METHODS`]).
fn history(reads: &Reads, method: &str, params: &[Value]) -> Result<Value, RpcError> {
    let Some(queries) = &reads.queries else {
        return Err(RpcError::server(
            "history is read through the server task, which this endpoint is not connected to",
        ));
    };
    let state_err = |e: phalanx_execution::StateError| RpcError::server(e.to_string());
    let head = reads
        .state
        .head()
        .map_err(state_err)?
        .ok_or_else(|| RpcError::server("no state yet"))?
        .number;
    // The block a transaction is in, and the transaction's index there; `None`: not in a
    // finalized block a server of the node kept.
    let find_tx = |hash: B256| -> Result<Option<(Whole, usize)>, RpcError> {
        let Some(at) = queries
            .locate_blocking(hash)
            .map_err(|e: LookupError| RpcError::server(e.to_string()))?
        else {
            return Ok(None);
        };
        if at.number > head {
            return Ok(None);
        }
        let whole = whole_block(queries, at.number)?;
        let index = whole.block.hashes.iter().position(|h| *h == hash);
        Ok(index.map(|i| (whole, i)))
    };
    match method {
        "eth_getBlockByNumber" | "eth_getBlockByHash" => {
            let number = if method == "eth_getBlockByHash" {
                let hash: B256 = param(params, 0, "block hash")?;
                match reads.state.finalized_number(hash).map_err(state_err)? {
                    Some(n) => n,
                    None => return Ok(Value::Null),
                }
            } else {
                rpc::block_number(params.first(), head, "block")?
            };
            if number > head {
                return Ok(Value::Null);
            }
            let full = params.get(1).and_then(Value::as_bool).unwrap_or(false);
            let w = whole_block(queries, number)?;
            let root = reads
                .state
                .state_root(w.block.block.hash)
                .map_err(state_err)?
                .unwrap_or_default();
            Ok(block_json(&w.records.header, root, &w.block, &w.raw, full))
        }
        "eth_getBlockReceipts" => {
            let number = rpc::block_number(params.first(), head, "block")?;
            if number > head {
                return Ok(Value::Null);
            }
            Ok(whole_block(queries, number)?.block.receipts_json())
        }
        "eth_getTransactionReceipt" => {
            let hash: B256 = param(params, 0, "transaction hash")?;
            Ok(find_tx(hash)?
                .and_then(|(w, _)| w.block.receipt_of(hash))
                .unwrap_or(Value::Null))
        }
        "eth_getTransactionByHash" => {
            let hash: B256 = param(params, 0, "transaction hash")?;
            Ok(find_tx(hash)?.map_or(Value::Null, |(w, i)| {
                transaction_json(&w.raw[i].1, Some((&w.block.block, i)))
            }))
        }
        other => Err(RpcError::unknown_method(format!(
            "method {other} is not served"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Load, raw_transactions};
    use alloy_primitives::{Address, U256};

    fn ask(reads: &Reads, method: &str, params: Value) -> Result<Value, RpcError> {
        let params = params.as_array().cloned().unwrap_or_default();
        call(reads, method, &params)
    }

    fn word(answer: &Value, i: usize) -> U256 {
        let hex = answer.as_str().unwrap().trim_start_matches("0x");
        U256::from_str_radix(&hex[i * 64..(i + 1) * 64], 16).unwrap()
    }

    #[test]
    fn calls_run_at_the_head_in_its_blocks_environment_also_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        let mut load = Load::new(2, 3, 1);
        let alloc = load.genesis_alloc();
        let rich = *alloc.accounts.keys().next().unwrap();
        let (header, shards) = load.next_block(3).unwrap();
        // Init code returning NUMBER and TIMESTAMP; then BALANCE of `rich`.
        let env_code = "0x435f524260205260405ff3";
        let balance_code = format!("0x73{}315f5260205ff3", hex::encode(rich));
        let expected_balance = {
            let state = Arc::new(StateStore::open(&path).unwrap());
            let genesis = load.genesis_header().hash();
            state.init_genesis(genesis, &alloc).unwrap();
            let reads = Reads {
                state: state.clone(),
                chain_id: header.chain_id,
                queries: None,
            };
            let at_genesis = ask(&reads, "eth_call", json!([{"data": env_code}])).unwrap_err();
            assert!(at_genesis.message.contains("genesis"), "{at_genesis:?}");
            state
                .execute(
                    genesis,
                    header.hash(),
                    &header.env(),
                    &raw_transactions(&shards),
                )
                .unwrap();
            state.finalize(header.hash()).unwrap();
            let balance = ask(&reads, "eth_getBalance", json!([rich, "latest"])).unwrap();
            U256::from_str_radix(balance.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
        };
        assert!(!expected_balance.is_zero());
        // A restarted server: the head's environment comes back from disk.
        let reads = Reads {
            state: Arc::new(StateStore::open(&path).unwrap()),
            chain_id: header.chain_id,
            queries: None,
        };
        let env = ask(&reads, "eth_call", json!([{"data": env_code}, "latest"])).unwrap();
        assert_eq!(word(&env, 0), U256::from(header.number));
        assert_eq!(word(&env, 1), U256::from(header.timestamp));
        let balance = ask(&reads, "eth_call", json!([{"input": balance_code}])).unwrap();
        assert_eq!(word(&balance, 0), expected_balance);
        let gas = ask(
            &reads,
            "eth_estimateGas",
            json!([{"from": rich, "to": Address::repeat_byte(0x77), "value": "0x1"}]),
        )
        .unwrap();
        assert_eq!(gas, json!("0x5208"));
        // A revert is geth's error 3 with the revert data; a past block is refused.
        let reverted = ask(&reads, "eth_call", json!([{"data": "0x5f5ffd"}])).unwrap_err();
        assert_eq!(reverted.code, 3);
        let past = ask(&reads, "eth_call", json!([{"data": env_code}, "0x0"])).unwrap_err();
        assert!(past.message.contains("not kept"), "{past:?}");
        let bad = ask(&reads, "eth_call", json!([{"data": "0xzz"}])).unwrap_err();
        assert_eq!(bad.code, -32602);
    }
}
