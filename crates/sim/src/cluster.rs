//! A clustered full node under faults: `servers` servers of one node (the real
//! [`phalanx_cluster::server`] code) on the in-process network and the embedded coordination
//! store, a block source publishing a transfer load, and a reference executor that runs every
//! block alone to know the true roots.
//!
//! Faults: every `kill_every` blocks one server is crashed (its task dropped, its lease left
//! to lapse) and restarted from its disk three blocks later; `kill_owners` crashes every owner
//! of one shard for a third of the run (a takeover); `corrupt` makes server 0 publish wrong
//! effects.
//!
//! The run is on tokio's paused clock in one thread: time moves only when every task waits,
//! so a run is a function of its configuration.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use alloy_primitives::{B256, Bytes};
use phalanx_cluster::CoordinationStore;
use phalanx_cluster::embedded::EmbeddedStore;
use phalanx_cluster::feed::Feed;
use phalanx_cluster::load::Load;
use phalanx_cluster::ownership::{ShardRange, layout};
use phalanx_cluster::server::{self, ServerConfig, ServerStats};
use phalanx_execution::store::StateStore;
use phalanx_net::memory::MemoryHub;
use phalanx_net::{Network, PeerKey};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// `phalanx sim cluster`'s settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Servers of the node.
    pub servers: u16,
    /// Shards per block.
    pub shards: u16,
    /// Owners per shard.
    pub replication: u16,
    /// Crash (and later restart) one server every this many blocks; 0: never.
    pub kill_every: u64,
    /// Crash every owner of this shard for a third of the run.
    pub kill_owners: Option<u16>,
    /// Server 0 corrupts its effects.
    pub corrupt: bool,
    /// Blocks to produce.
    pub blocks: u64,
    /// Transfers per shard per block.
    pub txs_per_shard: usize,
    /// Slot length.
    pub slot_ms: u64,
    /// Seed.
    pub seed: u64,
}

/// The one JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Blocks produced.
    pub blocks: u64,
    /// Blocks some server alive at the end never applied.
    pub missed: u64,
    /// Heights where some server's root differs from the reference executor's.
    pub divergent_roots: u64,
    /// Shards taken over by a server outside their owners.
    pub takeovers: u64,
    /// Wrong outcomes published by the corrupting server, none of them accepted.
    pub corruptions_rejected: u64,
    /// Wrong outcomes that were accepted (must be 0).
    pub corruptions_accepted: u64,
    /// Alarms raised.
    pub alarms: u64,
    /// Crashes injected.
    pub crashes: u64,
    /// Longest time from a block's publication until the node had applied it (its first
    /// server did; virtual time: protocol waits, not CPU).
    pub max_apply_lag_ms: u64,
    /// Bytes of shards outside its responsibility any server received.
    pub foreign_shard_bytes: u64,
}

/// Why the simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum ClusterSimError {
    /// Bad settings.
    #[error("sim cluster: {0}")]
    Config(String),
    /// Something underneath failed.
    #[error("sim cluster: {0}")]
    Internal(String),
}

fn internal(e: impl std::fmt::Display) -> ClusterSimError {
    ClusterSimError::Internal(e.to_string())
}

/// A running server: its task and its shutdown switch.
type Running = (
    JoinHandle<Result<(), server::ServerError>>,
    watch::Sender<bool>,
);

struct Slot {
    key: PeerKey,
    range: ShardRange,
    dir: std::path::PathBuf,
    stats: Arc<ServerStats>,
    task: Option<Running>,
    restart_at: Option<u64>,
}

/// Runs the simulation.
pub fn run(config: Config) -> Result<Report, ClusterSimError> {
    if config.servers == 0 || config.shards == 0 || config.blocks == 0 {
        return Err(ClusterSimError::Config(
            "servers, shards and blocks must be at least 1".into(),
        ));
    }
    if config.shards as usize > phalanx_types::limits::MAX_SHARDS {
        return Err(ClusterSimError::Config(format!(
            "at most {} shards",
            phalanx_types::limits::MAX_SHARDS
        )));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(internal)?;
    runtime.block_on(simulate(config))
}

fn peer(seed: u64, i: u16) -> PeerKey {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"sim cluster server");
    h.update(seed.to_be_bytes());
    h.update(i.to_be_bytes());
    PeerKey(h.finalize().into())
}

fn start(
    slot: &mut Slot,
    hub: &MemoryHub,
    store: &EmbeddedStore,
    config: &ServerConfig,
    genesis: &(B256, phalanx_execution::changes::Changes),
) -> Result<(), ClusterSimError> {
    let state = StateStore::open(&slot.dir.join("state.redb")).map_err(internal)?;
    if state.head().map_err(internal)?.is_none() {
        state
            .init_genesis(genesis.0, &genesis.1)
            .map_err(internal)?;
    }
    let (tx, rx) = watch::channel(false);
    let net = hub.join(slot.key);
    let store: Arc<dyn CoordinationStore> = Arc::new(store.clone());
    let task = tokio::spawn(server::run(
        config.clone(),
        Arc::new(state),
        store,
        net,
        slot.stats.clone(),
        rx,
    ));
    slot.task = Some((task, tx));
    Ok(())
}

async fn crash(slot: &mut Slot) {
    if let Some((task, _shutdown)) = slot.task.take() {
        // A crash: no shutdown, no lease revoke; the task's network and state are dropped.
        task.abort();
        let _ = task.await;
    }
}

async fn simulate(config: Config) -> Result<Report, ClusterSimError> {
    let mut rng = ChaCha20Rng::seed_from_u64(config.seed);
    let mut load = Load::new(config.shards, config.txs_per_shard.max(1), config.seed);
    let genesis_header = load.genesis_header();
    let genesis = (genesis_header.hash(), load.genesis_alloc());
    let reference = StateStore::in_memory().map_err(internal)?;
    reference
        .init_genesis(genesis.0, &genesis.1)
        .map_err(internal)?;
    let dir = tempfile::tempdir().map_err(internal)?;
    let hub = MemoryHub::new();
    let store = EmbeddedStore::new();
    let ranges = layout(config.servers, config.shards, config.replication);
    let slot_time = Duration::from_millis(config.slot_ms.max(100));
    let mut base = ServerConfig::new("sim", ranges[0], config.shards);
    base.lease_ttl = slot_time;
    base.accept_timeout = slot_time;
    let mut slots: Vec<Slot> = ranges
        .iter()
        .enumerate()
        .map(|(i, range)| Slot {
            key: peer(config.seed, i as u16),
            range: *range,
            dir: dir.path().join(format!("server-{i}")),
            stats: Arc::new(ServerStats::default()),
            task: None,
            restart_at: None,
        })
        .collect();
    let server_config = |i: usize, slot: &Slot| {
        let mut c = base.clone();
        c.range = slot.range;
        c.corrupt = config.corrupt && i == 0;
        c
    };
    for (i, slot) in slots.iter_mut().enumerate() {
        std::fs::create_dir_all(&slot.dir).map_err(internal)?;
        let c = server_config(i, slot);
        start(slot, &hub, &store, &c, &genesis)?;
    }
    let mut source = Feed::new(hub.join(PeerKey([0xfe; 32])));
    let mut reference_roots = BTreeMap::new();
    let mut published_at = BTreeMap::new();
    let mut crashes = 0u64;
    let owners_down = config.kill_owners.map(|s| {
        let from = config.blocks / 3;
        (s, from.max(1), (2 * config.blocks / 3).max(from + 1))
    });
    // Let the servers announce themselves.
    tokio::time::sleep(slot_time).await;
    let mut next_slot = Instant::now();
    let mut height = 0u64;
    let end_by = config.blocks + 20;
    let mut parent = genesis.0;
    loop {
        tokio::select! {
            event = source.net_mut().recv() => {
                if let Some(e) = event { source.answer(e); }
                continue;
            }
            _ = tokio::time::sleep_until(next_slot) => {}
        }
        next_slot += slot_time;
        height += 1;
        if height <= config.blocks {
            let (header, shards) = load.next_block(config.txs_per_shard).map_err(internal)?;
            let hash = header.hash();
            let raw: Vec<Vec<Bytes>> = shards
                .iter()
                .map(|s| {
                    s.transactions
                        .iter()
                        .map(|t| Bytes::from(t.to_vec()))
                        .collect()
                })
                .collect();
            let result = reference
                .execute(parent, hash, &header.env(), &raw)
                .map_err(internal)?;
            reference.finalize(hash).map_err(internal)?;
            parent = hash;
            reference_roots.insert(header.number, result.post_state_root);
            published_at.insert(header.number, Instant::now());
            source.publish(header, shards);
        }
        // Faults, between blocks.
        if let Some((shard, from, until)) = owners_down
            && height == from
        {
            for slot in slots.iter_mut().filter(|s| s.range.contains(shard)) {
                crash(slot).await;
                crashes += 1;
                slot.restart_at = Some(until);
            }
        }
        if config.kill_every > 0
            && height.is_multiple_of(config.kill_every)
            && height <= config.blocks.saturating_sub(3)
        {
            let alive: Vec<usize> = (0..slots.len())
                .filter(|i| slots[*i].task.is_some())
                .collect();
            if alive.len() > 1 {
                let victim = alive[rng.random_range(0..alive.len())];
                crash(&mut slots[victim]).await;
                crashes += 1;
                slots[victim].restart_at = Some(height + 3);
            }
        }
        for (i, slot) in slots.iter_mut().enumerate() {
            if slot.task.is_none() && slot.restart_at.is_some_and(|h| h <= height) {
                slot.restart_at = None;
                let c = server_config(i, slot);
                start(slot, &hub, &store, &c, &genesis)?;
            }
        }
        // Done when every live server applied every block, or the grace is over.
        let done = height >= config.blocks
            && slots.iter().filter(|s| s.task.is_some()).all(|s| {
                s.stats.applied.load(Ordering::Relaxed) > 0 && s.stats.root(config.blocks).is_some()
            });
        if done || height >= end_by {
            break;
        }
    }
    let max_apply_lag_ms = apply_lag(&slots, &published_at);
    let live: Vec<&Slot> = slots.iter().filter(|s| s.task.is_some()).collect();
    for (i, s) in slots.iter().enumerate() {
        tracing::debug!(
            server = i,
            live = s.task.is_some(),
            applied = ?s.stats.roots.lock().map(|m| m.keys().last().copied()).ok().flatten(),
            "server at the end"
        );
    }
    let missed = (1..=config.blocks)
        .filter(|h| live.iter().any(|s| s.stats.root(*h).is_none()))
        .count() as u64;
    let divergent_roots = (1..=config.blocks)
        .filter(|h| {
            slots.iter().any(|s| {
                s.stats
                    .root(*h)
                    .is_some_and(|r| Some(&r) != reference_roots.get(h))
            })
        })
        .count() as u64;
    let sum = |f: &dyn Fn(&ServerStats) -> u64| slots.iter().map(|s| f(&s.stats)).sum::<u64>();
    let takeovers = sum(&|s| s.takeovers.load(Ordering::Relaxed));
    let alarms = sum(&|s| s.alarms.load(Ordering::Relaxed));
    let (corruptions_rejected, corruptions_accepted) = if config.corrupt {
        let s = &slots[0].stats;
        let won = s.accepts_won.load(Ordering::Relaxed);
        let executed = s.executed.load(Ordering::Relaxed);
        (executed.saturating_sub(won), won)
    } else {
        (0, 0)
    };
    let foreign_shard_bytes = slots
        .iter()
        .map(|s| {
            let bytes = s
                .stats
                .shard_bytes
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default();
            bytes
                .iter()
                .filter(|(shard, _)| {
                    let subscribed = s.stats.subscribed.lock().is_ok_and(|m| m.contains(*shard));
                    !s.range.contains(**shard) && !subscribed
                })
                .map(|(_, b)| *b)
                .sum::<u64>()
        })
        .sum();
    for slot in &mut slots {
        if let Some((task, shutdown)) = slot.task.take() {
            let _ = shutdown.send(true);
            let _ = task.await;
        }
    }
    Ok(Report {
        blocks: config.blocks,
        missed,
        divergent_roots,
        takeovers,
        corruptions_rejected,
        corruptions_accepted,
        alarms,
        crashes,
        max_apply_lag_ms,
        foreign_shard_bytes,
    })
}

/// For each block, the time from its publication until the first server applied it (the
/// node had executed it: every shard accepted and merged); the largest of these.
fn apply_lag(slots: &[Slot], published: &BTreeMap<u64, Instant>) -> u64 {
    let mut first: BTreeMap<u64, Instant> = BTreeMap::new();
    for slot in slots {
        let times = slot
            .stats
            .applied_at
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        for (h, at) in times {
            let e = first.entry(h).or_insert(at);
            *e = (*e).min(at);
        }
    }
    first
        .iter()
        .filter_map(|(h, at)| {
            published
                .get(h)
                .map(|p| at.duration_since(*p).as_millis() as u64)
        })
        .max()
        .unwrap_or(0)
}
