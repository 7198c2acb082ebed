//! Blocks, receipts, logs and fee history as the devnet's JSON-RPC serves them.
//!
//! A block's transactions are its shards' transactions in shard order; their receipts come from
//! the servers that ran each shard, each keeping them with the block in its state store
//! ([`StateStore::block_receipts`](phalanx_execution::store::StateStore::block_receipts): in
//! memory until the block's commit, on disk after it, also across a restart). Block-wide
//! figures — cumulative gas, log indices, `gasUsed`, `logsBloom` — are assembled in that
//! order by [`phalanx_execution::history`], which a `phalanx node` server's endpoint shares
//! (there the shards come from the node's servers). A transaction its shard skipped
//! (invalid: it did not run) has no receipt and no logs. `eth_getBlockReceipts` answers
//! once every shard's receipts are recorded, as `eth_getTransactionReceipt` does.
//!
//! - `eth_getBlockByNumber` / `eth_getBlockByHash`: `gasUsed`, `logsBloom` and
//!   `receiptsRoot` from the receipts, `transactionsRoot` over every transaction the block
//!   lists (Ethereum's ordered tries of EIP-2718 encodings), transactions as hashes or (second
//!   parameter `true`) as objects. `hash` is the execution header's hash, not an RLP header's.
//! - `eth_getLogs`: geth's filter (`fromBlock`/`toBlock` or `blockHash`, `address` one or many,
//!   `topics` by position: `null` any, a topic, or a list of alternatives; a filter with more
//!   positions than a log has topics does not match it). At most [`MAX_LOG_RANGE`] blocks and
//!   [`MAX_LOGS`] logs per query: anything more is an error saying so, never a silently
//!   shorter answer. The newest blocks whose receipts the owners of every shard have not all
//!   recorded yet count as not executed yet.
//! - `eth_feeHistory`: base fees (fixed: there is no fee market yet), gas used over the gas
//!   limit, and the asked percentiles of the effective priority fees paid, weighted by gas as
//!   geth does; at most [`MAX_FEE_HISTORY`] blocks.

use alloy_primitives::B256;
use phalanx_cluster::wire::ExecHeader;
use phalanx_execution::block::Receipt;
use phalanx_execution::history::{BlockReceipts, BlockRef};
use phalanx_execution::rpc::{RpcError, block_number, quantity};
use serde_json::{Value, json};

use crate::Shared;

/// Blocks one `eth_getLogs` may span.
pub(crate) const MAX_LOG_RANGE: u64 = 10_000;
/// Logs one `eth_getLogs` may return.
pub(crate) const MAX_LOGS: usize = 10_000;
/// Blocks one `eth_feeHistory` may span.
pub(crate) const MAX_FEE_HISTORY: u64 = 1_024;

/// How the shared history code names the block of `header`.
pub(crate) fn block_ref(header: &ExecHeader) -> BlockRef {
    BlockRef::of(header)
}

/// Block `height`'s executed transactions with their receipts; `None` if it is not executed.
pub(crate) fn block_receipts(shared: &Shared, height: u64) -> Option<BlockReceipts> {
    if shared.executed().is_none_or(|h| h.number < height) {
        return None;
    }
    let (header, raw) = {
        let blocks = shared.blocks();
        let block = blocks.get(&height)?;
        (block.header.clone(), block.raw.clone())
    };
    let mut by_shard: std::collections::BTreeMap<u16, Vec<Receipt>> =
        std::collections::BTreeMap::new();
    let hash = header.hash();
    for state in &shared.states {
        // Each server keeps its shards' receipts with the block in its state store: in memory
        // until the block is final on disk, then in the same commit as its state.
        let held = state.block_receipts(hash).unwrap_or_else(|e| {
            tracing::warn!(height, error = %e, "devnet: stored receipts unreadable");
            None
        });
        for (shard, receipts) in held.unwrap_or_default() {
            by_shard.entry(shard).or_insert(receipts);
        }
    }
    let mut out = BlockReceipts::assemble(block_ref(&header), raw, &by_shard);
    // Once every server has applied the block no more receipts will come (a void block has
    // none): what is held is all there is.
    if !out.complete && shared.stats.iter().all(|s| s.head() >= height) {
        out.complete = true;
    }
    Some(out)
}

/// The receipt of an executed transaction; `null` while it is pending — also until the owners
/// of every shard of its block have recorded their receipts, so that a receipt and the block's
/// logs (`eth_getLogs`) appear together — and for a transaction its shard skipped.
pub(crate) fn receipt(shared: &Shared, hash: B256) -> Value {
    let Some(loc) = crate::lock(&shared.txs).get(&hash).copied() else {
        return Value::Null;
    };
    let Some(block) = block_receipts(shared, loc.height).filter(|b| b.complete) else {
        return Value::Null;
    };
    block
        .txs
        .iter()
        .find(|t| t.index == loc.index && t.hash == hash)
        .map_or(Value::Null, |t| block.receipt_json(t))
}

/// The receipts of block `n`'s executed transactions (`eth_getBlockReceipts`); `null` until
/// the block is executed and its owners have recorded every shard's receipts.
pub(crate) fn block_receipts_json(shared: &Shared, n: u64) -> Value {
    block_receipts(shared, n)
        .filter(|b| b.complete)
        .map_or(Value::Null, |b| b.receipts_json())
}

/// The height of the block with hash `hash`, if known.
pub(crate) fn height_of(shared: &Shared, hash: B256) -> Option<u64> {
    shared
        .blocks()
        .iter()
        .rev()
        .find(|(_, b)| b.header.hash() == hash)
        .map(|(n, _)| *n)
}

/// Block `n` as JSON-RPC shows it (`null` beyond the executed head).
pub(crate) fn block_json(shared: &Shared, n: u64, full: bool) -> Value {
    let Some(block) = block_receipts(shared, n) else {
        return Value::Null;
    };
    let Some((header, raw)) = shared
        .blocks()
        .get(&n)
        .map(|b| (b.header.clone(), b.raw.clone()))
    else {
        return Value::Null;
    };
    let root = shared.root_of(header.hash()).unwrap_or_default();
    phalanx_execution::history::block_json(&header, root, &block, &raw, full)
}

/// One topic position of a filter: any, or one of these.
type TopicFilter = Option<Vec<B256>>;

fn parse<T: serde::de::DeserializeOwned>(v: &Value, what: &str) -> Result<T, RpcError> {
    serde_json::from_value(v.clone()).map_err(|e| RpcError::params(format!("{what}: {e}")))
}

/// A block bound of a log filter: a number, or the executed head when the filter is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    Head,
    Number(u64),
}

fn bound(v: Option<&Value>, what: &str) -> Result<Bound, RpcError> {
    match v.filter(|v| !v.is_null()).and_then(Value::as_str) {
        None if v.is_none_or(Value::is_null) => Ok(Bound::Head),
        Some("latest" | "safe" | "finalized" | "pending") => Ok(Bound::Head),
        _ => block_number(v, 0, what).map(Bound::Number),
    }
}

/// A log filter (`eth_getLogs`, `eth_newFilter`), parsed once.
#[derive(Debug, Clone)]
pub(crate) struct LogFilter {
    from: Bound,
    to: Bound,
    block_hash: Option<B256>,
    addresses: Vec<alloy_primitives::Address>,
    topics: Vec<TopicFilter>,
}

impl LogFilter {
    /// Parses a filter object; a malformed one is a -32602 naming the field.
    pub(crate) fn parse(filter: Option<&Value>) -> Result<Self, RpcError> {
        let filter = filter
            .filter(|f| f.is_object())
            .ok_or_else(|| RpcError::params("a log filter is one object"))?;
        let set = |k: &str| filter.get(k).is_some_and(|v| !v.is_null());
        let block_hash = match filter.get("blockHash").filter(|v| !v.is_null()) {
            Some(hash) => {
                if set("fromBlock") || set("toBlock") {
                    return Err(RpcError::params(
                        "a filter takes blockHash or fromBlock/toBlock, not both",
                    ));
                }
                Some(parse::<B256>(hash, "blockHash")?)
            }
            None => None,
        };
        let from = bound(filter.get("fromBlock"), "fromBlock")?;
        let to = bound(filter.get("toBlock"), "toBlock")?;
        if let (Bound::Number(f), Bound::Number(t)) = (from, to)
            && f > t
        {
            return Err(RpcError::params(format!(
                "fromBlock {f} is after toBlock {t}"
            )));
        }
        let addresses = match filter.get("address") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => parse(&Value::Array(list.clone()), "address")?,
            Some(one) => vec![parse(one, "address")?],
        };
        let topics = match filter.get("topics") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .map(|t| match t {
                    Value::Null => Ok(None),
                    Value::Array(any) => parse(&Value::Array(any.clone()), "topics").map(Some),
                    one => parse(one, "topics").map(|t| Some(vec![t])),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(RpcError::params("topics: expected a list")),
        };
        Ok(Self {
            from,
            to,
            block_hash,
            addresses,
            topics,
        })
    }

    /// The blocks it names now: `from..=to` (the head for `latest`; the block for a hash).
    pub(crate) fn range(&self, shared: &Shared) -> Result<(u64, u64), RpcError> {
        let head = shared.executed().map_or(0, |h| h.number);
        if let Some(hash) = self.block_hash {
            let n = height_of(shared, hash)
                .ok_or_else(|| RpcError::server(format!("block {hash} is not known")))?;
            return Ok((n, n));
        }
        let at = |b: Bound| match b {
            Bound::Head => head,
            Bound::Number(n) => n,
        };
        Ok((at(self.from), at(self.to)))
    }

    /// The blocks an installed filter polls after reporting up to `after`, with `head` the
    /// newest settled block: `latest` as `fromBlock` means the blocks after the last poll.
    pub(crate) fn window(
        &self,
        shared: &Shared,
        after: u64,
        head: u64,
    ) -> Result<(u64, u64), RpcError> {
        if self.block_hash.is_some() {
            let (n, _) = self.range(shared)?;
            return Ok((n.max(after + 1), n.min(head)));
        }
        let from = match self.from {
            Bound::Head => after + 1,
            Bound::Number(n) => n.max(after + 1),
        };
        let to = match self.to {
            Bound::Head => head,
            Bound::Number(n) => n.min(head),
        };
        Ok((from, to))
    }

    /// Whether it names blocks (a number bound or a block hash) rather than following the head.
    pub(crate) fn has_bounds(&self) -> bool {
        self.block_hash.is_some() || self.from != Bound::Head || self.to != Bound::Head
    }

    fn matches(&self, log: &alloy_primitives::Log) -> bool {
        let address_ok = self.addresses.is_empty() || self.addresses.contains(&log.address);
        let got = log.data.topics();
        address_ok
            && self.topics.len() <= got.len()
            && self
                .topics
                .iter()
                .zip(got)
                .all(|(want, t)| want.as_ref().is_none_or(|w| w.contains(t)))
    }
}

/// The newest block whose receipts are all held, at or below the executed head (the newest
/// blocks may be applied by some servers before the owners of every shard have recorded
/// their receipts: they count as not executed yet).
pub(crate) fn settled_head(shared: &Shared) -> u64 {
    let mut head = shared.executed().map_or(0, |h| h.number);
    while head > 0 && block_receipts(shared, head).is_some_and(|b| !b.complete) {
        head -= 1;
    }
    head
}

/// The logs `filter` matches in blocks `from..=to` (capped at the settled head).
pub(crate) fn logs_in(
    shared: &Shared,
    filter: &LogFilter,
    from: u64,
    to: u64,
) -> Result<Vec<Value>, RpcError> {
    let to = to.min(settled_head(shared));
    if to >= from && to - from >= MAX_LOG_RANGE {
        return Err(RpcError::server(format!(
            "block range {from}..={to} exceeds {MAX_LOG_RANGE} blocks"
        )));
    }
    let mut out = Vec::new();
    for n in from.max(1)..=to {
        let Some(block) = block_receipts(shared, n) else {
            continue;
        };
        if !block.complete {
            return Err(RpcError::server(format!(
                "the receipts of block {n} are not all held yet; ask again"
            )));
        }
        for tx in &block.txs {
            let logs = block.logs_json(tx);
            for (log, json) in tx.receipt.logs.iter().zip(logs) {
                if filter.matches(log) {
                    if out.len() == MAX_LOGS {
                        return Err(RpcError::server(format!(
                            "query returned more than {MAX_LOGS} results; narrow the block range"
                        )));
                    }
                    out.push(json);
                }
            }
        }
    }
    Ok(out)
}

/// `eth_getLogs`.
pub(crate) fn get_logs(shared: &Shared, params: &[Value]) -> Result<Value, RpcError> {
    let filter = LogFilter::parse(params.first())?;
    let (from, to) = filter.range(shared)?;
    if from > to {
        return Err(RpcError::params(format!(
            "fromBlock {from} is after toBlock {to}"
        )));
    }
    logs_in(shared, &filter, from, to).map(Value::Array)
}

/// `eth_feeHistory(blockCount, newestBlock, rewardPercentiles?)`.
pub(crate) fn fee_history(shared: &Shared, params: &[Value]) -> Result<Value, RpcError> {
    use alloy_consensus::Transaction as _;
    let head = shared.executed().map_or(0, |h| h.number);
    let count = match params.first() {
        Some(v) => block_number(Some(v), head, "blockCount")?,
        None => return Err(RpcError::params("eth_feeHistory needs blockCount")),
    };
    let newest = block_number(params.get(1), head, "newestBlock")?;
    if newest > head {
        return Err(RpcError::server(format!(
            "block {newest} is after the executed head {head}"
        )));
    }
    let percentiles: Vec<f64> = match params.get(2) {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => parse(v, "rewardPercentiles")?,
    };
    if percentiles.iter().any(|p| !(0.0..=100.0).contains(p))
        || percentiles.windows(2).any(|w| w[0] > w[1])
    {
        return Err(RpcError::params(
            "rewardPercentiles: ascending values between 0 and 100",
        ));
    }
    let count = count.min(MAX_FEE_HISTORY).min(newest + 1);
    if count == 0 {
        return Ok(json!({"oldestBlock": quantity(0u64), "baseFeePerGas": [], "gasUsedRatio": []}));
    }
    let oldest = newest + 1 - count;
    let mut base_fees = Vec::new();
    let mut ratios = Vec::new();
    let mut rewards = Vec::new();
    for n in oldest..=newest {
        let block = block_receipts(shared, n);
        let basefee = block
            .as_ref()
            .map_or(crate::exec::BASEFEE, |b| b.block.basefee);
        let limit = block.as_ref().map_or(1, |_| {
            shared
                .blocks()
                .get(&n)
                .map_or(1, |b| b.header.block_gas_limit.max(1))
        });
        base_fees.push(quantity(basefee));
        let used = block.as_ref().map_or(0, BlockReceipts::gas_used);
        ratios.push(json!(used as f64 / limit as f64));
        if percentiles.is_empty() {
            continue;
        }
        // (priority fee per gas, gas used) of each executed transaction, cheapest first.
        let mut paid: Vec<(u128, u64)> = block
            .iter()
            .flat_map(|b| b.txs.iter())
            .filter_map(|t| {
                let tx = phalanx_types::transaction::decode(&t.raw).ok()?;
                let tip = tx.effective_tip_per_gas(basefee).unwrap_or(0);
                Some((tip, t.receipt.gas_used))
            })
            .collect();
        paid.sort_unstable();
        let total: u64 = paid.iter().map(|(_, g)| g).sum();
        let row: Vec<Value> = percentiles
            .iter()
            .map(|p| {
                if paid.is_empty() {
                    return quantity(0u64);
                }
                let threshold = (total as f64 * p / 100.0) as u64;
                let mut sum = 0u64;
                for (tip, gas) in &paid {
                    sum += gas;
                    if sum >= threshold {
                        return quantity(*tip);
                    }
                }
                quantity(paid.last().map_or(0, |(t, _)| *t))
            })
            .collect();
        rewards.push(Value::Array(row));
    }
    // The next block's base fee: fixed, as every block's.
    base_fees.push(quantity(crate::exec::BASEFEE));
    let mut out = json!({
        "oldestBlock": quantity(oldest),
        "baseFeePerGas": base_fees,
        "gasUsedRatio": ratios,
    });
    if !percentiles.is_empty() {
        out["reward"] = Value::Array(rewards);
    }
    Ok(out)
}
