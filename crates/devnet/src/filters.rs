//! JSON-RPC filters, as geth keeps them: installed with `eth_newFilter` (logs),
//! `eth_newBlockFilter` or `eth_newPendingTransactionFilter`, polled with
//! `eth_getFilterChanges` (what is new since the last poll), `eth_getFilterLogs` (every log a
//! log filter matches) and removed with `eth_uninstallFilter`.
//!
//! - A block filter returns the hashes of the blocks executed since the last poll; a log filter
//!   the logs of those blocks it matches (only blocks whose receipts are all held, so a log is
//!   never reported before its block's receipts are complete, nor twice); a pending-transaction
//!   filter the hashes of transactions that entered the pool since the last poll (the pool
//!   numbers arrivals and keeps the last `ARRIVALS_KEPT`, so a transaction packed into a block
//!   before the poll is still reported; a filter polled after more arrivals than that misses
//!   the oldest).
//! - A filter not polled for [`IDLE`] is removed, as geth does; at most [`MAX_FILTERS`] live at
//!   once (a new one past that is refused). An unknown or removed id is a -32000
//!   "filter not found".

use std::collections::HashMap;
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

/// What a filter or subscription follows.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    /// Executed blocks.
    Blocks,
    /// Logs a filter matches.
    Logs(Box<LogFilter>),
    /// Transactions entering the pool (the number of the next arrival to report).
    Pending(u64),
}

/// What is new for a [`Cursor`] since it last moved.
#[derive(Debug)]
pub(crate) enum News {
    /// Blocks executed (with receipts complete) since, by height.
    Blocks(std::ops::Range<u64>),
    /// Matching logs in those blocks, as JSON-RPC shows them.
    Logs(Vec<Value>),
    /// Transactions that entered the pool since.
    Pending(Vec<B256>),
}

/// A position in what a filter or a subscription follows: the shared part of
/// `eth_getFilterChanges` and `eth_subscribe`.
#[derive(Debug, Clone)]
pub(crate) struct Cursor {
    kind: Kind,
    /// The last block reported.
    last: u64,
}

impl Cursor {
    /// A cursor reporting what happens from now on.
    pub(crate) fn new(shared: &Shared, kind: Kind) -> Self {
        Self {
            kind,
            last: settled_head(shared),
        }
    }

    /// What is new since the last call, moving past it. Blocks count once the owners of every
    /// shard have recorded their receipts, so a block's logs are reported together and once.
    pub(crate) fn poll(&mut self, shared: &Shared) -> Result<News, RpcError> {
        if let Kind::Pending(next) = &mut self.kind {
            let (new, end) = shared.pool.arrivals_since(*next);
            *next = end;
            return Ok(News::Pending(new));
        }
        let empty = || match self.kind {
            Kind::Logs(_) => News::Logs(Vec::new()),
            _ => News::Blocks(0..0),
        };
        // Cheap check first: nothing executed since.
        if shared.executed().is_none_or(|h| h.number <= self.last) {
            return Ok(empty());
        }
        let head = settled_head(shared);
        if head <= self.last {
            return Ok(empty());
        }
        let news = match &self.kind {
            Kind::Logs(filter) => {
                let (from, to) = filter.window(shared, self.last, head)?;
                if from > to {
                    News::Logs(Vec::new())
                } else {
                    News::Logs(logs_in(shared, filter, from, to)?)
                }
            }
            _ => News::Blocks(self.last + 1..head + 1),
        };
        self.last = head;
        Ok(news)
    }
}

#[derive(Debug)]
struct Installed {
    cursor: Cursor,
    polled: Instant,
}

/// The installed filters of a node.
#[derive(Debug, Default)]
pub(crate) struct Filters {
    next: u64,
    installed: HashMap<u64, Installed>,
}

/// A pending-transaction kind reporting arrivals from now on.
pub(crate) fn pending(shared: &Shared) -> Kind {
    Kind::Pending(shared.pool.arrivals_end())
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
        "eth_newPendingTransactionFilter" => install(shared, pending(shared)),
        "eth_getFilterChanges" => id_param(params).and_then(|id| changes(shared, id)),
        "eth_getFilterLogs" => id_param(params).and_then(|id| all_logs(shared, id)),
        "eth_uninstallFilter" => id_param(params)
            .map(|id| json!(crate::lock(&shared.filters).installed.remove(&id).is_some())),
        _ => return None,
    };
    Some(answer)
}

fn install(shared: &Shared, kind: Kind) -> Result<Value, RpcError> {
    let cursor = Cursor::new(shared, kind);
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
            cursor,
            polled: Instant::now(),
        },
    );
    Ok(quantity(id))
}

fn changes(shared: &Shared, id: u64) -> Result<Value, RpcError> {
    // Poll a copy without holding the lock across block assembly, then store where it moved.
    let mut cursor = {
        let mut filters = crate::lock(&shared.filters);
        filters.installed.retain(|_, f| f.polled.elapsed() < IDLE);
        let f = filters
            .installed
            .get_mut(&id)
            .ok_or_else(|| not_found(id))?;
        f.polled = Instant::now();
        f.cursor.clone()
    };
    let news = cursor.poll(shared)?;
    if let Some(f) = crate::lock(&shared.filters).installed.get_mut(&id) {
        f.cursor = cursor;
    }
    Ok(match news {
        News::Blocks(range) => {
            let blocks = shared.blocks();
            let hashes: Vec<B256> = range
                .filter_map(|n| blocks.get(&n).map(|b| b.header.hash()))
                .collect();
            json!(hashes)
        }
        News::Logs(logs) => Value::Array(logs),
        News::Pending(hashes) => json!(hashes),
    })
}

fn all_logs(shared: &Shared, id: u64) -> Result<Value, RpcError> {
    let filter = {
        let mut filters = crate::lock(&shared.filters);
        let f = filters
            .installed
            .get_mut(&id)
            .ok_or_else(|| not_found(id))?;
        f.polled = Instant::now();
        match &f.cursor.kind {
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
