//! The devnet's transaction pool and the shards its producers build from it.
//!
//! Transactions arrive by `eth_sendRawTransaction` or the built-in load and wait in one
//! [`Mempool`]. When a producer builds a block it packs shards with
//! [`phalanx_producer::packing::pack`] (each connected group of senders and recipients in one
//! shard, so the conflict rule cannot void the block), starting each sender at its next nonce:
//! the larger of the executed state's nonce and the nonce after what earlier blocks already
//! included. Execution follows finality, so included transactions stay "included" until the
//! executed state catches up; an inclusion the state has not caught up with after
//! [`FORGET_AFTER_SLOTS`] is forgotten (its block was orphaned), and the sender restarts from
//! the state's nonce. Transactions of an orphaned block are lost and must be sent again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use alloy_primitives::{Address, B256, Bytes, keccak256};
use phalanx_execution::reader::StateReader;
use phalanx_execution::store::StateStore;
use phalanx_producer::mempool::{Mempool, MempoolError};
use phalanx_producer::packing::{Limits, pack};
use phalanx_sim::chain::ShardSource;
use phalanx_types::consensus::Shard;

/// Slots after which an inclusion the executed state never reflected is forgotten.
pub const FORGET_AFTER_SLOTS: u64 = 96;

/// Arrivals remembered for pending-transaction filters and subscriptions.
pub const ARRIVALS_KEPT: usize = 16_384;

/// The pool, and what recent blocks included (sender → next nonce, slot).
#[derive(Debug)]
pub struct Pool {
    /// Pending transactions.
    pub mempool: Mutex<Mempool>,
    /// Next nonce of each sender after the transactions blocks included, and the slot.
    pub included: Mutex<HashMap<Address, (u64, u64)>>,
    /// The hashes of the last [`ARRIVALS_KEPT`] transactions that entered the pool, in order.
    arrivals: Mutex<Arrivals>,
}

/// Transactions that entered the pool, numbered from 0, the last [`ARRIVALS_KEPT`] kept.
#[derive(Debug, Default)]
struct Arrivals {
    /// Number of the first kept.
    first: u64,
    kept: VecDeque<B256>,
}

impl Arrivals {
    /// The number the next arrival will have.
    fn end(&self) -> u64 {
        self.first + self.kept.len() as u64
    }
}

impl Pool {
    /// An empty pool for `chain_id` holding at most `capacity` transactions.
    pub fn new(chain_id: u64, capacity: usize) -> Self {
        Self {
            mempool: Mutex::new(Mempool::new(chain_id, capacity)),
            included: Mutex::new(HashMap::new()),
            arrivals: Mutex::new(Arrivals::default()),
        }
    }

    /// Checks and pools a raw transaction, recording its arrival.
    pub fn insert(&self, raw: Bytes) -> Result<B256, MempoolError> {
        let hash = lock(&self.mempool).insert(raw)?;
        let mut arrivals = lock(&self.arrivals);
        arrivals.kept.push_back(hash);
        if arrivals.kept.len() > ARRIVALS_KEPT {
            arrivals.kept.pop_front();
            arrivals.first += 1;
        }
        Ok(hash)
    }

    /// The number the next arrival will have.
    pub fn arrivals_end(&self) -> u64 {
        lock(&self.arrivals).end()
    }

    /// The hashes of the transactions that entered the pool from arrival number `from` on
    /// (those older than the last [`ARRIVALS_KEPT`] are gone), and the number after them.
    pub fn arrivals_since(&self, from: u64) -> (Vec<B256>, u64) {
        let arrivals = lock(&self.arrivals);
        let skip = from.saturating_sub(arrivals.first) as usize;
        let hashes = arrivals.kept.iter().skip(skip).copied().collect();
        (hashes, arrivals.end())
    }

    /// The nonce a wallet should use next for `sender` (`pending`): after the executed state,
    /// what blocks included, and what waits in the pool.
    pub fn pending_nonce(&self, sender: Address, state_nonce: u64) -> u64 {
        let included = lock(&self.included).get(&sender).map_or(0, |(n, _)| *n);
        let mut next = state_nonce.max(included);
        let pool = lock(&self.mempool);
        if let Some((_, txs)) = pool.by_sender().find(|(s, _)| **s == sender) {
            let mut nonces: Vec<u64> = txs.iter().map(|t| t.nonce).collect();
            nonces.sort_unstable();
            for n in nonces {
                if n == next {
                    next += 1;
                }
            }
        }
        next
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The nonce of `address` in the state at the head of `state` (0 when absent or unreadable).
pub fn state_nonce(state: &StateStore, address: Address) -> u64 {
    let Ok(Some(head)) = state.head() else {
        return 0;
    };
    state
        .view(head.block)
        .ok()
        .and_then(|v| v.account(address).ok().flatten())
        .map_or(0, |a| a.nonce)
}

/// Builds a block's shards from the pool.
pub struct PoolSource {
    pool: Arc<Pool>,
    state: Arc<StateStore>,
    max_txs_per_shard: usize,
    shard_gas_limit: u64,
}

impl std::fmt::Debug for PoolSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolSource")
            .field("max_txs_per_shard", &self.max_txs_per_shard)
            .finish_non_exhaustive()
    }
}

impl PoolSource {
    /// Shards from `pool`, nonces read from `state` (a server's replica).
    pub fn new(
        pool: Arc<Pool>,
        state: Arc<StateStore>,
        max_txs_per_shard: usize,
        shard_gas_limit: u64,
    ) -> Self {
        Self {
            pool,
            state,
            max_txs_per_shard,
            shard_gas_limit,
        }
    }
}

impl ShardSource for PoolSource {
    fn shards(&mut self, slot: u64, count: usize) -> Vec<Shard> {
        let view = self
            .state
            .head()
            .ok()
            .flatten()
            .and_then(|h| self.state.view(h.block).ok());
        let state_nonce = |a: &Address| {
            view.as_ref()
                .and_then(|v| v.account(*a).ok().flatten())
                .map_or(0, |a| a.nonce)
        };
        let mut included = lock(&self.pool.included);
        included.retain(|a, (n, at)| {
            *n > state_nonce(a) && slot.saturating_sub(*at) <= FORGET_AFTER_SLOTS
        });
        let next_nonce = |a: &Address| {
            let s = state_nonce(a);
            included.get(a).map_or(s, |(n, _)| (*n).max(s))
        };
        let mut mempool = lock(&self.pool.mempool);
        // Drop what the state or earlier blocks have already used.
        let senders: Vec<(Address, u64)> = mempool
            .by_sender()
            .map(|(s, _)| (*s, next_nonce(s)))
            .collect();
        for (sender, next) in &senders {
            mempool.prune(*sender, *next);
        }
        let limits = Limits {
            shards: count,
            max_txs_per_shard: self.max_txs_per_shard,
            shard_gas_limit: self.shard_gas_limit,
        };
        let packed = pack(&mempool, limits, next_nonce);
        let by_hash: HashMap<B256, (Address, u64)> = mempool
            .by_sender()
            .flat_map(|(_, txs)| {
                txs.into_iter()
                    .map(|t| (t.hash, (t.sender, t.nonce)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut advanced: HashMap<Address, u64> = HashMap::new();
        for raw in packed.iter().flatten() {
            if let Some((sender, nonce)) = by_hash.get(&keccak256(raw)) {
                let e = advanced.entry(*sender).or_insert(0);
                *e = (*e).max(nonce + 1);
            }
        }
        for (sender, next) in advanced {
            mempool.prune(sender, next);
            included.insert(sender, (next, slot));
        }
        drop(mempool);
        drop(included);
        let mut shards: Vec<Shard> = packed
            .into_iter()
            .map(|txs| {
                Shard::from_transactions(txs.into_iter().map(|b| b.to_vec()).collect())
                    .unwrap_or_else(|_| empty_shard())
            })
            .collect();
        shards.resize_with(count, empty_shard);
        shards
    }
}

fn empty_shard() -> Shard {
    Shard {
        transactions: ssz_types::VariableList::empty(),
    }
}
