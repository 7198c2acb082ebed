//! A node server's Ethereum JSON-RPC endpoint (`phalanx node --rpc ADDR`): state reads from
//! this server's own replica.
//!
//! Every server applies every block (step 5 of [`crate::server`]), so any server answers a
//! read about any account, whichever servers ran the shards that touched it. Reads are
//! answered at the server's finalized head on disk — the state a crash would keep — which is
//! its applied head except while a backlog is written every `persist_blocks` blocks
//! (`docs/protocol/cluster.md`, *Persistence*); `eth_getProof` also at any finalized height
//! before it.
//!
//! Methods: `web3_clientVersion`, `net_version`, `eth_chainId`, `eth_blockNumber` (the head
//! reads are answered at), and the state reads of [`phalanx_execution::rpc::HeadState`]:
//! `eth_getBalance`, `eth_getTransactionCount`, `eth_getCode`, `eth_getStorageAt`,
//! `eth_getProof`. Anything else is -32601 naming what is served: blocks, receipts, calls and
//! transactions are the devnet's endpoint's (a server keeps no block bodies or pool, and a
//! shard's receipts stay with the servers that ran it).

use std::sync::Arc;

use axum::extract::State;
use phalanx_execution::rpc::{self, HeadState, RpcError, quantity};
use phalanx_execution::store::StateStore;
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
}

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
        m if rpc::STATE_METHODS.contains(&m) => HeadState {
            store: &reads.state,
            head: head()?,
            pending_nonce: None,
        }
        .call(method, params),
        other => Err(RpcError::unknown_method(format!(
            "method {other} is not served by a node server (state reads only: {}; blocks, \
             receipts, calls and transactions are served by the chain's full nodes)",
            rpc::STATE_METHODS.join(", ")
        ))),
    }
}
