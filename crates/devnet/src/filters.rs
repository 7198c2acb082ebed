//! JSON-RPC filters, as geth keeps them: installed with `eth_newFilter` (logs),
//! `eth_newBlockFilter` or `eth_newPendingTransactionFilter`, polled with
//! `eth_getFilterChanges` (what is new since the last poll), `eth_getFilterLogs` (every log a
//! log filter matches) and removed with `eth_uninstallFilter`.
//!
//! - A block filter returns the hashes of the blocks executed since the last poll; a log filter
//!   the logs of those blocks it matches (only blocks whose receipts are all held, so a log is
//!   never reported before its block's receipts are complete, nor twice); a pending-transaction
//!   filter the hashes of transactions that entered the pool since the last poll.
//! - A filter not polled for [`IDLE`] is removed, as geth does; at most [`MAX_FILTERS`] live at
//!   once (a new one past that is refused). An unknown or removed id is a -32000
//!   "filter not found".

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use alloy_primitives::B256;
use phalanx_execution::rpc::{RpcError, param, quantity};
use serde_json::{Value, json};

use crate::Shared;
use crate::history::{LogFilter, logs_in, settled_head};

/// A filter not polled for this long is removed.
pub(crate) const IDLE: Duration = Duration::from_secs(300);
/// Filters installed at once, at most.
pub(crate) const MAX_FILTERS: usize = 1024;

#[derive(Debug)]
enum Kind {
    Blocks,
    Logs(Box<LogFilter>),
    Pending(HashSet<B256>),
}

#[derive(Debug)]
struct Installed {
    kind: Kind,
    /// The last block reported.
    last: u64,
    polled: Instant,
}

/// The installed filters of a node.
#[derive(Debug, Default)]
pub(crate) struct Filters {
    next: u64,
    installed: HashMap<u64, Installed>,
}

fn pending_hashes(shared: &Shared) -> HashSet<B256> {
    crate::lock(&shared.pool.mempool)
        .by_sender()
        .flat_map(|(_, txs)| txs.into_iter().map(|t| t.hash).collect::<Vec<_>>())
        .collect()
}

fn id_param(params: &[Value]) -> Result<u64, RpcError> {
    let raw: String = param(params, 0, "filter id")?;
    raw.strip_prefix("0x")
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| RpcError::params(format!("filter id {raw:?} is not a hex number")))
}

fn not_found(id: u64) -> RpcError {
    RpcError::server(format!("filter not found: {id:#x}"))
}

/// The filter methods; `None` for any other method.
pub(crate) fn call(
    shared: &Shared,
    method: &str,
    params: &[Value],
) -> Option<Result<Value, RpcError>> {
    let answer = match method {
        "eth_newFilter" => {
            LogFilter::parse(params.first()).and_then(|f| install(shared, Kind::Logs(Box::new(f))))
        }
        "eth_newBlockFilter" => install(shared, Kind::Blocks),
        "eth_newPendingTransactionFilter" => install(shared, Kind::Pending(pending_hashes(shared))),
        "eth_getFilterChanges" => id_param(params).and_then(|id| changes(shared, id)),
        "eth_getFilterLogs" => id_param(params).and_then(|id| all_logs(shared, id)),
        "eth_uninstallFilter" => id_param(params)
            .map(|id| json!(crate::lock(&shared.filters).installed.remove(&id).is_some())),
        _ => return None,
    };
    Some(answer)
}

fn install(shared: &Shared, kind: Kind) -> Result<Value, RpcError> {
    let last = settled_head(shared);
    let mut filters = crate::lock(&shared.filters);
    filters.installed.retain(|_, f| f.polled.elapsed() < IDLE);
    if filters.installed.len() >= MAX_FILTERS {
        return Err(RpcError::server(format!(
            "too many filters installed ({MAX_FILTERS}); uninstall some or let them expire"
        )));
    }
    filters.next += 1;
    let id = filters.next;
    filters.installed.insert(
        id,
        Installed {
            kind,
            last,
            polled: Instant::now(),
        },
    );
    Ok(quantity(id))
}

fn changes(shared: &Shared, id: u64) -> Result<Value, RpcError> {
    let head = settled_head(shared);
    // Read what the filter needs without holding the lock across block assembly.
    let (kind, last) = {
        let mut filters = crate::lock(&shared.filters);
        filters.installed.retain(|_, f| f.polled.elapsed() < IDLE);
        let f = filters
            .installed
            .get_mut(&id)
            .ok_or_else(|| not_found(id))?;
        f.polled = Instant::now();
        let kind = match &f.kind {
            Kind::Blocks => Kind::Blocks,
            Kind::Logs(l) => Kind::Logs(l.clone()),
            Kind::Pending(seen) => {
                let now = pending_hashes(shared);
                let new: Vec<B256> = now.difference(seen).copied().collect();
                f.kind = Kind::Pending(now);
                return Ok(json!(new));
            }
        };
        (kind, f.last)
    };
    if head <= last {
        return Ok(json!([]));
    }
    let answer = match kind {
        Kind::Blocks => {
            let blocks = shared.blocks();
            let hashes: Vec<B256> = (last + 1..=head)
                .filter_map(|n| blocks.get(&n).map(|b| b.header.hash()))
                .collect();
            json!(hashes)
        }
        Kind::Logs(filter) => {
            let (from, to) = filter.window(shared, last, head)?;
            if from > to {
                json!([])
            } else {
                Value::Array(logs_in(shared, &filter, from, to)?)
            }
        }
        Kind::Pending(_) => json!([]),
    };
    if let Some(f) = crate::lock(&shared.filters).installed.get_mut(&id) {
        f.last = head;
    }
    Ok(answer)
}

fn all_logs(shared: &Shared, id: u64) -> Result<Value, RpcError> {
    let filter = {
        let mut filters = crate::lock(&shared.filters);
        let f = filters
            .installed
            .get_mut(&id)
            .ok_or_else(|| not_found(id))?;
        f.polled = Instant::now();
        match &f.kind {
            Kind::Logs(l) => l.clone(),
            _ => {
                return Err(RpcError::server(format!(
                    "filter {id:#x} is not a log filter"
                )));
            }
        }
    };
    let (from, to) = filter.range(shared)?;
    if from > to {
        return Ok(json!([]));
    }
    logs_in(shared, &filter, from, to).map(Value::Array)
}
