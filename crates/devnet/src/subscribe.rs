//! JSON-RPC over WebSocket with `eth_subscribe`, as geth serves it.
//!
//! A WebSocket upgrade of `GET /` on the JSON-RPC address opens a connection that takes every
//! JSON-RPC method the HTTP endpoint takes (single requests and batches), plus:
//!
//! - `eth_subscribe(["newHeads"])`: each executed block's header (the block object without
//!   transactions), in order, once the owners of every shard have recorded its receipts;
//! - `eth_subscribe(["logs", filter])`: each log of those blocks the filter matches (geth's
//!   filter: `address`, `topics`; block bounds are not taken, as in geth);
//! - `eth_subscribe(["newPendingTransactions"])`: the hash of each transaction entering the
//!   pool;
//! - `eth_unsubscribe([id])`: `true` if the subscription existed on this connection.
//!
//! A notification is `{"jsonrpc":"2.0","method":"eth_subscription","params":{"subscription":
//! ID,"result":…}}`. Subscriptions belong to their connection and end with it; at most
//! [`MAX_SUBSCRIPTIONS`] per connection. What is new is looked for every [`POLL`] through the
//! same cursors as `eth_getFilterChanges` (`filters.rs`), so a subscription and a filter see
//! the same blocks and logs. A message that is not text, or text that is not JSON-RPC, gets the
//! JSON-RPC error the HTTP endpoint gives (-32700 or -32600); the connection stays open.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::response::{IntoResponse, Response};
use phalanx_execution::rpc::{self, RpcError, quantity};
use serde_json::{Value, json};

use crate::Shared;
use crate::filters::{Cursor, Kind, News};
use crate::history::LogFilter;

/// Subscriptions one connection may hold at once.
pub(crate) const MAX_SUBSCRIPTIONS: usize = 1024;
/// How often a connection looks for news for its subscriptions.
pub(crate) const POLL: Duration = Duration::from_millis(250);

/// `GET /`: a WebSocket upgrade opens a JSON-RPC connection; anything else is the dashboard.
pub(crate) async fn root(
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    state: State<Arc<Shared>>,
) -> Response {
    match upgrade {
        Ok(upgrade) => {
            let State(shared) = state;
            upgrade.on_upgrade(move |socket| serve(socket, shared))
        }
        Err(_) => crate::web::dashboard().await.into_response(),
    }
}

/// A connection's subscriptions.
#[derive(Debug, Default)]
struct Subscriptions {
    next: u64,
    live: BTreeMap<u64, Subscription>,
}

/// A subscription is its cursor: a block cursor is `newHeads` (geth has no block-hash
/// subscription), a log cursor `logs`, a pending one `newPendingTransactions`.
#[derive(Debug)]
struct Subscription {
    cursor: Cursor,
}

async fn serve(mut socket: WebSocket, shared: Arc<Shared>) {
    let subs = Arc::new(Mutex::new(Subscriptions::default()));
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::debug!("websocket connection opened");
    loop {
        tokio::select! {
            message = socket.recv() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text.to_string(),
                    Some(Ok(Message::Binary(bytes))) => String::from_utf8_lossy(&bytes).into_owned(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "websocket connection failed");
                        break;
                    }
                };
                let (shared, subs) = (shared.clone(), subs.clone());
                let answer = rpc::dispatch_blocking(text, move |method, params| {
                    call(&shared, &subs, method, params)
                })
                .await;
                if socket.send(Message::Text(answer.to_string().into())).await.is_err() {
                    break;
                }
            }
            _ = tick.tick() => {
                if crate::lock(&subs).live.is_empty() {
                    continue;
                }
                let (shared, subs) = (shared.clone(), subs.clone());
                let notes = tokio::task::spawn_blocking(move || notifications(&shared, &subs))
                    .await
                    .unwrap_or_default();
                let mut closed = false;
                for note in notes {
                    if socket.send(Message::Text(note.to_string().into())).await.is_err() {
                        closed = true;
                        break;
                    }
                }
                if closed {
                    break;
                }
            }
        }
    }
    tracing::debug!("websocket connection closed");
}

/// A method call on a WebSocket connection.
fn call(
    shared: &Shared,
    subs: &Mutex<Subscriptions>,
    method: &str,
    params: &[Value],
) -> Result<Value, RpcError> {
    match method {
        "eth_subscribe" => subscribe(shared, subs, params),
        "eth_unsubscribe" => {
            let raw: String = rpc::param(params, 0, "subscription id")?;
            let id = raw
                .strip_prefix("0x")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    RpcError::params(format!("subscription id {raw:?} is not a hex number"))
                })?;
            Ok(json!(crate::lock(subs).live.remove(&id).is_some()))
        }
        _ => crate::rpc::call(shared, method, params),
    }
}

fn subscribe(
    shared: &Shared,
    subs: &Mutex<Subscriptions>,
    params: &[Value],
) -> Result<Value, RpcError> {
    let what: String = rpc::param(params, 0, "subscription")?;
    let kind = match what.as_str() {
        "newHeads" => Kind::Blocks,
        "logs" => {
            let filter = LogFilter::parse(Some(params.get(1).unwrap_or(&json!({}))))?;
            if filter.has_bounds() {
                return Err(RpcError::params(
                    "a logs subscription takes no fromBlock, toBlock or blockHash",
                ));
            }
            Kind::Logs(Box::new(filter))
        }
        "newPendingTransactions" => crate::filters::pending(shared),
        other => {
            return Err(RpcError::params(format!(
                "no subscription {other:?}: newHeads, logs and newPendingTransactions are served"
            )));
        }
    };
    let cursor = Cursor::new(shared, kind);
    let mut subs = crate::lock(subs);
    if subs.live.len() >= MAX_SUBSCRIPTIONS {
        return Err(RpcError::server(format!(
            "too many subscriptions on this connection ({MAX_SUBSCRIPTIONS}); unsubscribe some"
        )));
    }
    subs.next += 1;
    let id = subs.next;
    subs.live.insert(id, Subscription { cursor });
    Ok(quantity(id))
}

/// The notifications due on a connection, moving its subscriptions past them.
fn notifications(shared: &Shared, subs: &Mutex<Subscriptions>) -> Vec<Value> {
    // Poll copies without holding the lock across block assembly.
    let polled: Vec<(u64, Cursor)> = crate::lock(subs)
        .live
        .iter()
        .map(|(id, s)| (*id, s.cursor.clone()))
        .collect();
    let mut notes = Vec::new();
    for (id, mut cursor) in polled {
        let results: Vec<Value> = match cursor.poll(shared) {
            Ok(News::Blocks(range)) => range
                .map(|n| header_json(shared, n))
                .filter(|v| !v.is_null())
                .collect(),
            Ok(News::Logs(logs)) => logs,
            Ok(News::Pending(hashes)) => hashes.into_iter().map(|h| json!(h)).collect(),
            Err(e) => {
                tracing::debug!(subscription = id, error = %e.message, "subscription poll failed");
                Vec::new()
            }
        };
        // Store where it moved, unless it was unsubscribed meanwhile.
        if let Some(s) = crate::lock(subs).live.get_mut(&id) {
            s.cursor = cursor;
        } else {
            continue;
        }
        notes.extend(results.into_iter().map(|result| {
            json!({
                "jsonrpc": "2.0",
                "method": "eth_subscription",
                "params": {"subscription": quantity(id), "result": result},
            })
        }));
    }
    notes
}

/// Block `n`'s header as `newHeads` sends it: the block object without its transactions.
fn header_json(shared: &Shared, n: u64) -> Value {
    let mut block = crate::history::block_json(shared, n, false);
    if let Some(object) = block.as_object_mut() {
        for key in ["transactions", "uncles", "size", "totalDifficulty"] {
            object.remove(key);
        }
    }
    block
}
