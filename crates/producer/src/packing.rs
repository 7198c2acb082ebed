//! Packing a block's shards so the conflict rule cannot void it.
//!
//! The conflict rule voids a block in which two shards change the same key, and every
//! transaction writes its sender's nonce and balance. The producer therefore groups
//! transactions by the addresses they are known to write — the sender, and the recipient or
//! called contract — and keeps each connected group in one shard:
//!
//! 1. union-find over addresses: every transaction joins its sender and its `to`;
//! 2. each group's transactions are taken per sender in nonce order, stopping at a nonce gap;
//! 3. groups are placed largest-gas first into the least-loaded shard whose gas and
//!    transaction limits still fit them (a group that fits nowhere waits for a later block).
//!
//! Treating the called contract as written is conservative: all calls to one contract share
//! a shard even when they would touch different slots. Storage keys an access list declares
//! could refine this later; the rule here never lets two shards write the same account.

use std::collections::{BTreeMap, HashMap};

use alloy_primitives::{Address, Bytes};

use crate::mempool::{Mempool, PendingTx};

/// Limits of one block.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Shards in the block.
    pub shards: usize,
    /// Transactions per shard.
    pub max_txs_per_shard: usize,
    /// Gas per shard (sum of gas limits).
    pub shard_gas_limit: u64,
}

/// The shards of a block, as encoded transactions.
pub type Packed = Vec<Vec<Bytes>>;

struct UnionFind {
    parent: HashMap<Address, Address>,
}

impl UnionFind {
    fn find(&mut self, a: Address) -> Address {
        let p = *self.parent.entry(a).or_insert(a);
        if p == a {
            return a;
        }
        let root = self.find(p);
        self.parent.insert(a, root);
        root
    }

    fn union(&mut self, a: Address, b: Address) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            // Deterministic: the smaller address is the root.
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent.insert(hi, lo);
        }
    }
}

/// Packs `mempool` into shards. `next_nonce(sender)` is the sender's nonce in the parent
/// state; transactions before it are stale and skipped, and a sender's run stops at the first
/// gap.
pub fn pack(mempool: &Mempool, limits: Limits, next_nonce: impl Fn(&Address) -> u64) -> Packed {
    let shards = limits.shards.max(1);
    // Executable runs per sender.
    let mut runs: BTreeMap<Address, Vec<&PendingTx>> = BTreeMap::new();
    for (sender, txs) in mempool.by_sender() {
        let mut expected = next_nonce(sender);
        let mut run = Vec::new();
        for tx in txs {
            if tx.nonce < expected {
                continue;
            }
            if tx.nonce != expected {
                break;
            }
            run.push(tx);
            expected += 1;
        }
        if !run.is_empty() {
            runs.insert(*sender, run);
        }
    }
    // Groups of senders linked by addresses they write.
    let mut uf = UnionFind {
        parent: HashMap::new(),
    };
    for (sender, run) in &runs {
        uf.find(*sender);
        for tx in run {
            if let Some(to) = tx.to {
                uf.union(*sender, to);
            }
        }
    }
    let mut groups: BTreeMap<Address, Vec<&PendingTx>> = BTreeMap::new();
    for (sender, run) in &runs {
        let root = uf.find(*sender);
        groups.entry(root).or_default().extend(run.iter().copied());
    }
    let mut groups: Vec<(u64, Vec<&PendingTx>)> = groups
        .into_values()
        .map(|txs| (txs.iter().map(|t| t.gas_limit).sum::<u64>(), txs))
        .collect();
    // Largest first; ties by first transaction hash, so packing is deterministic.
    groups.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1[0].hash.cmp(&b.1[0].hash)));
    let mut out: Packed = vec![Vec::new(); shards];
    let mut gas = vec![0u64; shards];
    for (group_gas, txs) in groups {
        let fits = |i: usize| {
            gas[i].saturating_add(group_gas) <= limits.shard_gas_limit
                && out[i].len() + txs.len() <= limits.max_txs_per_shard
        };
        let Some(best) = (0..shards)
            .filter(|i| fits(*i))
            .min_by_key(|i| (gas[*i], *i))
        else {
            continue;
        };
        gas[best] += group_gas;
        out[best].extend(txs.iter().map(|t| t.raw.clone()));
    }
    out
}
