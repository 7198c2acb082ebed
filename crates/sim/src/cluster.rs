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

use alloy_primitives::B256;
use phalanx_cluster::CoordinationStore;
use phalanx_cluster::embedded::EmbeddedStore;
use phalanx_cluster::feed::Feed;
use phalanx_cluster::load::Load;
use phalanx_cluster::ownership::{ShardRange, layout};
use phalanx_cluster::server::{self, HeaderSource, ServerConfig, ServerStats, ShardBuilder};
use phalanx_cluster::wire::{
    BuildRequest, ExecHeader, HEADER_TOPIC, Message, build_topic, shard_topic,
};
use phalanx_execution::store::StateStore;
use phalanx_net::memory::MemoryHub;
use phalanx_net::{Network, PeerKey};
use phalanx_types::consensus::Shard;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tree_hash::TreeHash;

/// The block source's key: the feed, and with `produce` the node's producer, whose build
/// requests alone the servers take.
const SOURCE: PeerKey = PeerKey([0xfe; 32]);

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
    /// The node produces the blocks itself: the owners of each shard build it, the first
    /// accepted is what every owner broadcasts (instead of a block source publishing them).
    pub produce: bool,
}

/// The one JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Blocks produced.
    pub blocks: u64,
    /// Blocks some server alive at the end never applied (the corrupting server apart: see
    /// `corrupting_server_behind`).
    pub missed: u64,
    /// Heights where some server's root differs from the reference executor's (the
    /// corrupting server apart: see `corrupting_server_divergent`).
    pub divergent_roots: u64,
    /// Shards taken over by a server outside their owners.
    pub takeovers: u64,
    /// Wrong outcomes published by the corrupting server, none of them accepted.
    pub corruptions_rejected: u64,
    /// Wrong outcomes accepted at the end: `(block, shard)` records in the store written by
    /// the corrupting server (must be 0; one it wrote alone while it was the only live server
    /// is replaced once two other servers agree on the true result).
    pub corruptions_accepted: u64,
    /// Results one server accepted alone that two agreeing servers replaced (step 3).
    pub lone_replaced: u64,
    /// With `corrupt`: blocks the corrupting server had not applied at the end (it cannot
    /// confirm any result by its own runs, so it follows only while others still hold the
    /// accepted outcomes).
    pub corrupting_server_behind: u64,
    /// With `corrupt`: heights where the corrupting server's own root is wrong (results it
    /// applied alone, as the node's only live server).
    pub corrupting_server_divergent: u64,
    /// Alarms raised.
    pub alarms: u64,
    /// Crashes injected.
    pub crashes: u64,
    /// Longest time from a block's publication until the node had applied it (its first
    /// server did; virtual time: protocol waits, not CPU).
    pub max_apply_lag_ms: u64,
    /// Bytes of shards outside its responsibility any server received.
    pub foreign_shard_bytes: u64,
    /// With `produce`: shards of produced blocks, each built and accepted (blocks × shards).
    pub built_shards: u64,
    /// With `produce`: candidates built (owners compete: up to R per shard).
    pub candidates: u64,
    /// With `produce`: copies of the blocks' shards an outside peer received on the shard
    /// topics (every owner holding the accepted shard broadcasts it).
    pub shard_copies: u64,
    /// With `produce`: slots in which a block's shards were not all built and accepted in
    /// time (the block is built again the next slot).
    pub build_retries: u64,
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
    base.headers = HeaderSource::Gossip {
        publisher: Some(SOURCE),
    };
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
    // With `produce`, the node's mempool: the transactions of the block being built, which
    // every owner builds its shard from.
    let mempool: Arc<std::sync::Mutex<BTreeMap<B256, Vec<Shard>>>> = Arc::default();
    let builder = {
        let mempool = mempool.clone();
        ShardBuilder {
            producer: SOURCE,
            build: Arc::new(move |request: &BuildRequest, index: u16| {
                let pool = mempool.lock().ok()?;
                pool.get(&request.id)?.get(index as usize).cloned()
            }),
        }
    };
    let server_config = |i: usize, slot: &Slot| {
        let mut c = base.clone();
        c.range = slot.range;
        c.corrupt = config.corrupt && i == 0;
        if config.produce {
            c.builder = Some(builder.clone());
        }
        c
    };
    for (i, slot) in slots.iter_mut().enumerate() {
        std::fs::create_dir_all(&slot.dir).map_err(internal)?;
        let c = server_config(i, slot);
        start(slot, &hub, &store, &c, &genesis)?;
    }
    let mut source = Feed::new(hub.join(SOURCE));
    // With `produce`, the source is the node's producer and an outside peer: it hears the
    // builders on the build topic and counts the shards the owners broadcast.
    let mut building: Option<(ExecHeader, Vec<Shard>, Instant)> = None;
    let mut offers: BTreeMap<(u16, B256), Shard> = BTreeMap::new();
    let (mut shard_copies, mut build_retries, mut produced) = (0u64, 0u64, 0u64);
    if config.produce {
        source
            .net_mut()
            .subscribe(&build_topic("sim"))
            .map_err(internal)?;
        for i in 0..config.shards {
            source
                .net_mut()
                .subscribe(&shard_topic(i))
                .map_err(internal)?;
        }
    }
    let mut reference_roots = BTreeMap::new();
    let mut block_hashes: BTreeMap<u64, B256> = BTreeMap::new();
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
                match event {
                    Some(phalanx_net::NetEvent::Gossip { topic, data, .. }) => {
                        if let Ok(Message::Shard(m)) = Message::decode(&data) {
                            if topic.starts_with("build/") {
                                offers.insert((m.index, m.shard.tree_hash_root()), m.shard);
                            } else {
                                shard_copies += 1;
                            }
                        }
                    }
                    Some(e) => source.answer(e),
                    None => {}
                }
                continue;
            }
            // Producing: is the block being built complete?
            _ = tokio::time::sleep(Duration::from_millis(10)), if building.is_some() => {
                let Some((template, _, deadline)) = &building else { continue };
                let mut roots = Vec::with_capacity(config.shards as usize);
                let mut shards = Vec::with_capacity(config.shards as usize);
                for i in 0..config.shards {
                    let key = server::built_key("sim", template.hash(), i);
                    let accepted = store.get(&key).await.map_err(internal)?
                        .and_then(|v| server::parse_accepted(&v));
                    match accepted.and_then(|(root, _)| offers.get(&(i, root)).map(|s| (root, s))) {
                        Some((root, shard)) => { roots.push(root); shards.push(shard.clone()); }
                        None => break,
                    }
                }
                if roots.len() < config.shards as usize {
                    if Instant::now() >= *deadline {
                        build_retries += 1;
                        tracing::debug!(height = template.number, built = roots.len(), "block not built in time; again next slot");
                        if let Some(b) = &mut building { b.2 = next_slot + slot_time; }
                    }
                    continue;
                }
                let Some((mut header, _, _)) = building.take() else { continue };
                header.shard_roots = match ssz_types::VariableList::new(roots) {
                    Ok(r) => r,
                    Err(e) => return Err(internal(format!("{e:?}"))),
                };
                let root = reference_run(&reference, parent, &header, &shards)?;
                parent = header.hash();
                reference_roots.insert(header.number, root);
                block_hashes.insert(header.number, header.hash());
                published_at.insert(header.number, Instant::now());
                produced += 1;
                if let Err(e) = source.net_mut().publish(HEADER_TOPIC, Message::Header(header.clone()).encode()) {
                    tracing::debug!(error = %e, "header not published");
                }
                source.remember(header, shards);
                offers.clear();
                continue;
            }
            _ = tokio::time::sleep_until(next_slot) => {}
        }
        next_slot += slot_time;
        height += 1;
        if config.produce {
            if building.is_none() && produced < config.blocks {
                let (header, shards) = load.next_block(config.txs_per_shard).map_err(internal)?;
                if let Ok(mut pool) = mempool.lock() {
                    pool.insert(header.hash(), shards.clone());
                }
                building = Some((header, shards, next_slot));
            }
            if let Some((template, _, _)) = &building {
                let request = BuildRequest {
                    id: template.hash(),
                    height: template.number,
                };
                if let Err(e) = source
                    .net_mut()
                    .publish(&build_topic("sim"), Message::Build(request).encode())
                {
                    tracing::debug!(error = %e, "build request not published");
                }
            }
        } else if height <= config.blocks {
            let (header, shards) = load.next_block(config.txs_per_shard).map_err(internal)?;
            let root = reference_run(&reference, parent, &header, &shards)?;
            parent = header.hash();
            reference_roots.insert(header.number, root);
            block_hashes.insert(header.number, header.hash());
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
        let made = if config.produce { produced } else { height };
        let done = made >= config.blocks
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
    // The corrupting server (server 0 with `corrupt`) is reported apart.
    let honest = |s: &Slot| !(config.corrupt && s.key == slots[0].key);
    let behind = |s: &Slot| {
        (1..=config.blocks)
            .filter(|h| s.stats.root(*h).is_none())
            .count() as u64
    };
    let wrong = |s: &Slot, h: u64| {
        s.stats
            .root(h)
            .is_some_and(|r| Some(&r) != reference_roots.get(&h))
    };
    let missed = (1..=config.blocks)
        .filter(|h| live.iter().any(|s| honest(s) && s.stats.root(*h).is_none()))
        .count() as u64;
    let divergent_roots = (1..=config.blocks)
        .filter(|h| slots.iter().any(|s| honest(s) && wrong(s, *h)))
        .count() as u64;
    let (corrupting_server_behind, corrupting_server_divergent) = if config.corrupt {
        let s = &slots[0];
        (
            behind(s),
            (1..=config.blocks).filter(|h| wrong(s, *h)).count() as u64,
        )
    } else {
        (0, 0)
    };
    let sum = |f: &dyn Fn(&ServerStats) -> u64| slots.iter().map(|s| f(&s.stats)).sum::<u64>();
    let takeovers = sum(&|s| s.takeovers.load(Ordering::Relaxed));
    let alarms = sum(&|s| s.alarms.load(Ordering::Relaxed));
    let candidates = sum(&|s| s.built.load(Ordering::Relaxed));
    let lone_replaced = sum(&|s| s.lone_replaced.load(Ordering::Relaxed));
    let (corruptions_rejected, corruptions_accepted) = if config.corrupt {
        // Every outcome it publishes is wrong: those still accepted at the end are the
        // records in the store it wrote.
        let mut accepted = 0u64;
        for hash in block_hashes.values() {
            for shard in 0..config.shards {
                let key = server::accepted_key("sim", *hash, shard);
                let value = store.get(&key).await.map_err(internal)?;
                if value
                    .and_then(|v| server::parse_accepted(&v))
                    .is_some_and(|(_, writer)| writer == slots[0].key)
                {
                    accepted += 1;
                }
            }
        }
        let executed = slots[0].stats.executed.load(Ordering::Relaxed);
        (executed.saturating_sub(accepted), accepted)
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
    let built_shards = if config.produce {
        produced * u64::from(config.shards)
    } else {
        0
    };
    Ok(Report {
        built_shards,
        candidates,
        shard_copies,
        build_retries,
        blocks: config.blocks,
        missed,
        divergent_roots,
        lone_replaced,
        corrupting_server_behind,
        corrupting_server_divergent,
        takeovers,
        corruptions_rejected,
        corruptions_accepted,
        alarms,
        crashes,
        max_apply_lag_ms,
        foreign_shard_bytes,
    })
}

/// Runs `header`'s block alone on the reference executor and makes it final: its post-state
/// root.
fn reference_run(
    reference: &StateStore,
    parent: B256,
    header: &ExecHeader,
    shards: &[Shard],
) -> Result<B256, ClusterSimError> {
    let hash = header.hash();
    let raw = phalanx_cluster::load::raw_transactions(shards);
    let result = reference
        .execute(parent, hash, &header.env(), &raw)
        .map_err(internal)?;
    reference.finalize(hash).map_err(internal)?;
    Ok(result.post_state_root)
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
