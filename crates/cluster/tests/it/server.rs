//! A server under garbage from a peer (it counts the first bad messages, the network bans the
//! sender, the rest never reach the server, and blocks are still executed and applied),
//! servers on their own pools, and when applied blocks are made final on disk.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use phalanx_cluster::embedded::EmbeddedStore;
use phalanx_cluster::feed::Feed;
use phalanx_cluster::load::Load;
use phalanx_cluster::ownership::ShardRange;
use phalanx_cluster::server::{self, CheckedHeaders, HeaderSource, ServerConfig, ServerStats};
use phalanx_cluster::wire::ExecHeader;
use phalanx_execution::store::StateStore;
use phalanx_net::memory::MemoryHub;
use phalanx_net::{Network, PeerKey};
use phalanx_types::consensus::Shard;

use crate::LoneServer;

/// Answers the servers' requests until every one of them applied `height` (30 s at most).
async fn serve_until_applied<N: Network>(
    feed: &mut Feed<N>,
    servers: &[Arc<ServerStats>],
    height: u64,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while servers.iter().any(|s| s.head() < height) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "block {height} not applied by every server"
        );
        tokio::select! {
            e = feed.net_mut().recv() => if let Some(e) = e { feed.answer(e) },
            () = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
}

type ServerTask = tokio::task::JoinHandle<Result<(), server::ServerError>>;

/// A load's genesis: its block hash and allocation.
type Genesis = (alloy_primitives::B256, phalanx_execution::changes::Changes);

/// An in-memory replica at `genesis`.
fn replica(genesis: &Genesis) -> StateStore {
    let state = StateStore::in_memory().unwrap();
    state.init_genesis(genesis.0, &genesis.1).unwrap();
    state
}

/// What most server tests start from.
struct Fixture {
    /// Signed transfers over `shards` shards.
    load: Load,
    /// Its genesis.
    genesis: Genesis,
    /// A replica at the genesis that executes blocks whole, for the true roots.
    reference: StateStore,
    /// The in-process network.
    hub: MemoryHub,
    /// The node's coordination store.
    store: Arc<EmbeddedStore>,
}

/// A [`Fixture`] over `Load::new(shards, senders, seed)`.
fn fixture(shards: u16, senders: usize, seed: u64) -> Fixture {
    let load = Load::new(shards, senders, seed);
    let genesis = (load.genesis_header().hash(), load.genesis_alloc());
    Fixture {
        reference: replica(&genesis),
        load,
        genesis,
        hub: MemoryHub::new(),
        store: Arc::new(EmbeddedStore::new()),
    }
}

/// A server of `node` owning every shard, needing two agreeing outcomes, ticking every 10 ms
/// with a 30 s lease and accept timeout (nothing times out during a test).
fn agreeing_config(node: &str, shards: u16) -> ServerConfig {
    let mut config = ServerConfig::new(
        node,
        ShardRange {
            lo: 0,
            hi: shards - 1,
        },
        shards,
    );
    config.agreement = 2;
    config.tick = Duration::from_millis(10);
    config.lease_ttl = Duration::from_secs(30);
    config.accept_timeout = Duration::from_secs(30);
    config
}

/// The state root after `header` with `shards`, executed whole on `reference` (which keeps
/// the block, so the next one can build on it).
fn true_root(
    reference: &StateStore,
    header: &ExecHeader,
    shards: &[Shard],
) -> alloy_primitives::B256 {
    let raw = phalanx_cluster::load::raw_transactions(shards);
    reference
        .execute(header.parent, header.hash(), &header.env(), &raw)
        .unwrap()
        .post_state_root
}

/// Starts a server of `config` over an in-memory replica at `genesis`.
fn start(
    config: ServerConfig,
    genesis: &Genesis,
    store: &Arc<EmbeddedStore>,
    net: phalanx_net::memory::MemoryNetwork,
    shutdown: &tokio::sync::watch::Receiver<bool>,
) -> (Arc<ServerStats>, ServerTask) {
    start_on(config, Arc::new(replica(genesis)), store, net, shutdown)
}

/// Starts a server of `config` over `state`.
fn start_on(
    config: ServerConfig,
    state: Arc<StateStore>,
    store: &Arc<EmbeddedStore>,
    net: phalanx_net::memory::MemoryNetwork,
    shutdown: &tokio::sync::watch::Receiver<bool>,
) -> (Arc<ServerStats>, ServerTask) {
    let stats = Arc::new(ServerStats::default());
    let task = tokio::spawn(server::run(
        config,
        state,
        store.clone(),
        net,
        stats.clone(),
        shutdown.clone(),
    ));
    (stats, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_garbage_is_banned_and_blocks_still_apply() {
    let shards = 2;
    let mut load = Load::new(shards, 4, 7);
    let state = StateStore::in_memory().unwrap();
    state
        .init_genesis(load.genesis_header().hash(), &load.genesis_alloc())
        .unwrap();
    let hub = MemoryHub::new();
    let mut config = ServerConfig::new("garbage", ShardRange { lo: 0, hi: 1 }, shards);
    config.agreement = 1;
    config.tick = Duration::from_millis(10);
    let me = PeerKey([0x11; 32]);
    let server = LoneServer::spawn(config, state, &hub, me);
    let stats = server.stats.clone();
    let rogue = hub.join(PeerKey([0x66; 32]));
    let mut feed = Feed::new(hub.join(PeerKey([0xfe; 32])));
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..20u8 {
        rogue.send(me, vec![0xff, i, i, i]).unwrap();
    }
    for height in 1..=3u64 {
        let (header, shard_list) = load.next_block(4).unwrap();
        feed.publish(header, shard_list);
        serve_until_applied(&mut feed, std::slice::from_ref(&stats), height).await;
    }
    // 4 × 30 points ban the sender; the other 16 messages never reach the server.
    assert_eq!(stats.invalid.load(Ordering::Relaxed), 4);
    server.stop().await;
}

/// A shard that is not the one its block's header names — forged content, or an index the
/// block does not have — is refused and counted, whether it comes before the block's header
/// (checked when the block starts) or names no block at all; the block still runs its real
/// shards to the reference root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_that_does_not_match_its_header_is_refused() {
    use phalanx_cluster::wire::{Message, ShardMessage};

    let shards = 2;
    let mut load = Load::new(shards, 4, 19);
    let genesis = (load.genesis_header().hash(), load.genesis_alloc());
    let reference = replica(&genesis);
    let state = replica(&genesis);
    let hub = MemoryHub::new();
    let mut config = ServerConfig::new("forged", ShardRange { lo: 0, hi: 1 }, shards);
    config.agreement = 1;
    config.tick = Duration::from_millis(10);
    let me = PeerKey([0x12; 32]);
    let server = LoneServer::spawn(config, state, &hub, me);
    let stats = server.stats.clone();
    let rogue = hub.join(PeerKey([0x67; 32]));
    let mut feed = Feed::new(hub.join(PeerKey([0xfe; 32])));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (header, shard_list) = load.next_block(4).unwrap();
    let hash = header.hash();
    let expected = true_root(&reference, &header, &shard_list);
    // Shard 1's transactions offered as shard 0, before the header; and a shard 7.
    for index in [0, 7] {
        let forged = ShardMessage {
            block: hash,
            index,
            shard: shard_list[1].clone(),
        };
        rogue.send(me, Message::Shard(forged).encode()).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    feed.publish(header, shard_list);
    serve_until_applied(&mut feed, std::slice::from_ref(&stats), 1).await;
    assert_eq!(stats.root(1), Some(expected));
    assert_eq!(stats.invalid.load(Ordering::Relaxed), 2);
    server.stop().await;
}

/// A server following a block feed runs the feed's headers alone: another peer publishing a
/// whole valid-looking block 1 (same parent, its own shards, on the real topics) first is
/// dropped and counted, and the feed's block 1 is the one applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_not_from_the_feed_is_never_run() {
    let shards = 2;
    let mut load = Load::new(shards, 4, 23);
    let mut rogue_load = Load::new(shards, 4, 23);
    let genesis = (load.genesis_header().hash(), load.genesis_alloc());
    let reference = replica(&genesis);
    let state = replica(&genesis);
    let hub = MemoryHub::new();
    let feed_key = PeerKey([0xfe; 32]);
    let mut config = ServerConfig::new("pinned", ShardRange { lo: 0, hi: 1 }, shards);
    config.agreement = 1;
    config.tick = Duration::from_millis(10);
    config.headers = HeaderSource::Gossip {
        publisher: Some(feed_key),
    };
    let server = LoneServer::spawn(config, state, &hub, PeerKey([0x13; 32]));
    let stats = server.stats.clone();
    let mut rogue = Feed::new(hub.join(PeerKey([0x68; 32])));
    let mut feed = Feed::new(hub.join(feed_key));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (forged, forged_shards) = rogue_load.next_block(2).unwrap();
    let (header, shard_list) = load.next_block(4).unwrap();
    assert_eq!(forged.parent, header.parent);
    assert_ne!(forged.hash(), header.hash());
    let expected = true_root(&reference, &header, &shard_list);
    rogue.publish(forged, forged_shards);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(stats.head(), 0, "the rogue's block ran");
    assert_eq!(stats.foreign.load(Ordering::Relaxed), 1);
    feed.publish(header, shard_list);
    serve_until_applied(&mut feed, std::slice::from_ref(&stats), 1).await;
    assert_eq!(stats.root(1), Some(expected));
    server.stop().await;
}

/// Two servers that each run their shards on their own thread pool (off the async runtime,
/// as `phalanx node` and the benchmark do): each executes only its own range, and both apply
/// every block with the root of running the block alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_with_their_own_pools_run_their_ranges_and_agree_with_a_lone_executor() {
    let shards = 4;
    let Fixture {
        mut load,
        genesis,
        reference,
        hub,
        store,
    } = fixture(shards, 6, 11);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    for (i, range) in [ShardRange { lo: 0, hi: 1 }, ShardRange { lo: 2, hi: 3 }]
        .into_iter()
        .enumerate()
    {
        let mut config = ServerConfig::new("pools", range, shards);
        config.agreement = 1;
        config.threads = Some(1);
        config.tick = Duration::from_millis(10);
        config.lease_ttl = Duration::from_secs(3);
        let net = hub.join(PeerKey([0x20 + i as u8; 32]));
        servers.push(start(config, &genesis, &store, net, &shutdown));
    }
    let mut feed = Feed::new(hub.join(PeerKey([0xfe; 32])));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let blocks = 4u64;
    for height in 1..=blocks {
        let (header, shard_list) = load.next_block(6).unwrap();
        let expected = true_root(&reference, &header, &shard_list);
        reference.finalize(header.hash()).unwrap();
        feed.publish(header, shard_list);
        let stats: Vec<_> = servers.iter().map(|(s, _)| s.clone()).collect();
        serve_until_applied(&mut feed, &stats, height).await;
        for (i, (stats, _)) in servers.iter().enumerate() {
            assert_eq!(stats.root(height), Some(expected), "server {i} at {height}");
        }
    }
    for (i, (stats, _)) in servers.iter().enumerate() {
        // Two shards a block each: neither ran the other's range.
        assert_eq!(
            stats.executed.load(Ordering::Relaxed),
            2 * blocks,
            "server {i}"
        );
        assert_eq!(stats.alarms.load(Ordering::Relaxed), 0);
    }
    let _ = stop.send(true);
    for (_, task) in servers {
        task.await.unwrap().unwrap();
    }
}

/// History through either server of a two-server node: each server runs and keeps only its
/// own shards, yet answers `eth_getTransactionReceipt`, `eth_getTransactionByHash`,
/// `eth_getBlockByNumber` and `eth_getBlockReceipts` for every shard — block-wide indices,
/// cumulative gas and roots equal to executing each block whole — by asking the other
/// server; once the other server is gone, a block is an error naming its missing shards,
/// never a partial block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn either_server_answers_history_for_every_shard_from_the_node() {
    use phalanx_cluster::lookup;
    use phalanx_cluster::rpc::{Reads, call};
    use phalanx_execution::history::{BlockReceipts, BlockRef};
    use serde_json::{Value, json};

    let shards = 4;
    let Fixture {
        mut load,
        genesis,
        reference,
        hub,
        store,
    } = fixture(shards, 6, 29);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let (stop_b, shutdown_b) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    let mut reads = Vec::new();
    for (i, range) in [ShardRange { lo: 0, hi: 1 }, ShardRange { lo: 2, hi: 3 }]
        .into_iter()
        .enumerate()
    {
        let mut config = ServerConfig::new("history", range, shards);
        config.agreement = 1;
        config.tick = Duration::from_millis(10);
        config.lease_ttl = Duration::from_secs(3);
        let (queries, inbox) = lookup::channel();
        config.queries = Some(inbox);
        let state = Arc::new(replica(&genesis));
        reads.push(Reads {
            state: state.clone(),
            chain_id: phalanx_cluster::load::CHAIN_ID,
            queries: Some(queries),
        });
        let net = hub.join(PeerKey([0x30 + i as u8; 32]));
        let down = if i == 0 { &shutdown } else { &shutdown_b };
        servers.push(start_on(config, state, &store, net, down));
    }
    let mut feed = Feed::new(hub.join(PeerKey([0xfe; 32])));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Each block executed whole: its receipts as the shared history code shows them.
    let mut expected: Vec<(BlockReceipts, alloy_primitives::B256)> = Vec::new();
    let blocks = 3u64;
    for height in 1..=blocks {
        let (header, shard_list) = load.next_block(5).unwrap();
        let raw = phalanx_cluster::load::raw_transactions(&shard_list);
        let whole = reference
            .execute(header.parent, header.hash(), &header.env(), &raw)
            .unwrap();
        reference.finalize(header.hash()).unwrap();
        let listed: Vec<(u16, alloy_primitives::Bytes)> = raw
            .iter()
            .enumerate()
            .flat_map(|(i, txs)| txs.iter().map(move |t| (i as u16, t.clone())))
            .collect();
        let by_shard = whole
            .shards
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u16, s.receipts.clone()))
            .collect();
        let block = BlockReceipts::assemble(BlockRef::of(&header), listed, &by_shard);
        assert!(block.complete && block.txs.len() == 20);
        expected.push((block, whole.post_state_root));
        feed.publish(header, shard_list);
        let stats: Vec<_> = servers.iter().map(|(s, _)| s.clone()).collect();
        serve_until_applied(&mut feed, &stats, height).await;
    }
    // The block at the head is final on disk once no next header waits.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while reads
        .iter()
        .any(|r| r.state.head().unwrap().unwrap().number < blocks)
    {
        assert!(tokio::time::Instant::now() < deadline, "not final on disk");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ask = |r: &Reads, method: &'static str, params: Value| {
        let r = r.clone();
        tokio::task::spawn_blocking(move || {
            call(&r, method, params.as_array().unwrap()).map_err(|e| e.message)
        })
    };
    for (i, r) in reads.iter().enumerate() {
        for (n, (block, root)) in expected.iter().enumerate() {
            let number = format!("{:#x}", n + 1);
            for tx in &block.txs {
                let got = ask(r, "eth_getTransactionReceipt", json!([tx.hash]))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(got, block.receipt_json(tx), "server {i}, block {number}");
                let got = ask(r, "eth_getTransactionByHash", json!([tx.hash]))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(got["transactionIndex"], json!(format!("{:#x}", tx.index)));
                assert_eq!(got["blockHash"], json!(block.block.hash));
            }
            let got = ask(r, "eth_getBlockByNumber", json!([number, false]))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got["hash"], json!(block.block.hash));
            assert_eq!(got["stateRoot"], json!(root));
            assert_eq!(got["receiptsRoot"], json!(block.receipts_root()));
            assert_eq!(got["gasUsed"], json!(format!("{:#x}", block.gas_used())));
            assert_eq!(got["transactions"].as_array().unwrap().len(), 20);
            let by_hash = ask(r, "eth_getBlockByHash", json!([block.block.hash, false]))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(by_hash, got);
            let receipts = ask(r, "eth_getBlockReceipts", json!([number]))
                .await
                .unwrap()
                .unwrap();
            let want: Vec<Value> = block.txs.iter().map(|t| block.receipt_json(t)).collect();
            assert_eq!(receipts, Value::Array(want));
        }
        let unknown = alloy_primitives::B256::repeat_byte(0xab);
        let none = ask(r, "eth_getTransactionReceipt", json!([unknown]));
        assert_eq!(none.await.unwrap(), Ok(Value::Null));
        let above = ask(r, "eth_getBlockByNumber", json!(["0x9", false]));
        assert_eq!(above.await.unwrap(), Ok(Value::Null));
    }
    // Neither server ever received the other's shards: what it answered came by lookup.
    assert_eq!(
        servers[0].0.shards_received(),
        std::collections::BTreeSet::from([0, 1])
    );
    assert_eq!(
        servers[1].0.shards_received(),
        std::collections::BTreeSet::from([2, 3])
    );
    // The second server stops: the first can no longer put block 1 together.
    let _ = stop_b.send(true);
    let (_, task_b) = servers.pop().unwrap();
    task_b.await.unwrap().unwrap();
    let err = ask(&reads[0], "eth_getBlockByNumber", json!(["0x1", false]))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.contains("shards [2, 3]"), "{err}");
    let _ = stop.send(true);
    for (_, task) in servers {
        task.await.unwrap().unwrap();
    }
}

/// A server on `state` that takes its headers from `headers` and the blocks' shards from the
/// feed `blocks`, making applied blocks final every `persist_blocks` while more wait.
fn backlog_server(
    state: Arc<StateStore>,
    headers: &CheckedHeaders,
    blocks: PeerKey,
    persist_blocks: u64,
    hub: &MemoryHub,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> (
    Arc<ServerStats>,
    tokio::task::JoinHandle<Result<(), server::ServerError>>,
) {
    let mut config = ServerConfig::new("backlog", ShardRange { lo: 0, hi: 1 }, 2);
    config.agreement = 1;
    config.tick = Duration::from_millis(10);
    config.persist_blocks = persist_blocks;
    // Only the rule under test makes blocks final, never the clock.
    config.persist_interval = Duration::from_secs(3600);
    config.headers = HeaderSource::Checked {
        headers: headers.clone(),
        blocks,
    };
    let stats = Arc::new(ServerStats::default());
    let task = tokio::spawn(server::run(
        config,
        state,
        Arc::new(EmbeddedStore::new()),
        hub.join(PeerKey([0x31; 32])),
        stats.clone(),
        shutdown,
    ));
    (stats, task)
}

/// Persistence: a backlog is made final in one commit per `persist_blocks`, what is left of
/// it when the server stops, and a block at once when no header follows it; a crash (the
/// task dropped, nothing flushed) loses only the blocks not yet final, which the restarted
/// server applies again to the same roots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_made_final_in_batches_and_a_crash_loses_only_what_is_applied_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let mut load = Load::new(2, 3, 5);
    let genesis = (load.genesis_header().hash(), load.genesis_alloc());
    StateStore::open(&path)
        .unwrap()
        .init_genesis(genesis.0, &genesis.1)
        .unwrap();
    let blocks: Vec<_> = (0..10).map(|_| load.next_block(3).unwrap()).collect();
    let hub = MemoryHub::new();
    let feed_key = PeerKey([0xfe; 32]);
    let mut feed = Feed::new(hub.join(feed_key));
    for (header, shards) in &blocks[..9] {
        feed.remember(header.clone(), shards.clone());
    }

    // Headers 1–10 known from the start, the shards of 1–9 only: 1–9 are applied while the
    // next header waits, so nothing is made final (persist_blocks 100) — then a crash.
    let headers = from_start(&blocks);
    let state = Arc::new(StateStore::open(&path).unwrap());
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let (stats, task) = backlog_server(state.clone(), &headers, feed_key, 100, &hub, shutdown);
    serve_until_applied(&mut feed, std::slice::from_ref(&stats), 9).await;
    let roots: Vec<_> = (1..=9).map(|h| stats.root(h).unwrap()).collect();
    assert_eq!(stats.commits.load(Ordering::Relaxed), 0);
    assert_eq!(state.head().unwrap().unwrap().number, 0);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    drop(state);

    // Reopened: the disk holds the genesis only. Restarted with persist_blocks 4, still
    // without block 10's shards: 1–9 applied again with the same roots, final at 4 and 8 (a
    // commit each, the next header waiting), 9 only when the server is stopped.
    let state = Arc::new(StateStore::open(&path).unwrap());
    assert_eq!(state.head().unwrap().unwrap().number, 0);
    let headers = from_start(&blocks);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let (stats, task) = backlog_server(state.clone(), &headers, feed_key, 4, &hub, shutdown);
    serve_until_applied(&mut feed, std::slice::from_ref(&stats), 9).await;
    for h in 1..=9u64 {
        assert_eq!(stats.root(h), Some(roots[h as usize - 1]), "height {h}");
    }
    assert_eq!(stats.commits.load(Ordering::Relaxed), 2);
    assert_eq!(state.head().unwrap().unwrap().number, 8);
    // The server's sync thread makes the commit at 8 durable while the server goes on.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while stats.synced.load(Ordering::Relaxed) < 8 {
        assert!(std::time::Instant::now() < deadline, "block 8 never synced");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = stop.send(true);
    task.await.unwrap().unwrap();
    assert_eq!(stats.commits.load(Ordering::Relaxed), 3);
    // A stopped server's last commit is durable when its task returns.
    assert_eq!(stats.synced.load(Ordering::Relaxed), 9);
    drop(state);

    // Reopened at 9; with block 10's shards it is applied and final at once (no header after
    // it).
    let state = Arc::new(StateStore::open(&path).unwrap());
    let head = state.head().unwrap().unwrap();
    assert_eq!((head.number, Some(head.state_root)), (9, Some(roots[8])));
    feed.remember(blocks[9].0.clone(), blocks[9].1.clone());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let headers = from_start(&blocks);
    let (stats, task) = backlog_server(state.clone(), &headers, feed_key, 4, &hub, shutdown);
    serve_until_applied(&mut feed, std::slice::from_ref(&stats), 10).await;
    assert_eq!(stats.commits.load(Ordering::Relaxed), 1);
    assert_eq!(stats.persisted.load(Ordering::Relaxed), 10);
    let head = state.head().unwrap().unwrap();
    assert_eq!((head.number, head.block), (10, blocks[9].0.hash()));
    assert_eq!(Some(head.state_root), stats.root(10));
    let _ = stop.send(true);
    task.await.unwrap().unwrap();
}

/// Every block's header, as a follower starting from the genesis hands them over (a server
/// drops those at or below its head).
fn from_start(blocks: &[(ExecHeader, Vec<Shard>)]) -> CheckedHeaders {
    let headers = CheckedHeaders::default();
    for (header, _) in blocks {
        headers.push(header.clone());
    }
    headers
}

/// Step 3's note: a server that read a shard's accepted key before its owner wrote it reads
/// it again when the owner says it won — not at its next tick (30 s here, so the block would
/// wait that long) — and the server's own winning write is announced the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_note_makes_a_server_read_the_key_again_at_once() {
    use phalanx_cluster::CoordinationStore;
    use phalanx_cluster::server::{accepted_key, accepted_value, live_key, outcome_of};
    use phalanx_cluster::wire::{Message, effects_topic};
    use phalanx_execution::block;
    use tree_hash::TreeHash;

    let shards = 2;
    let mut load = Load::new(shards, 5, 13);
    let genesis = (load.genesis_header().hash(), load.genesis_alloc());
    let reference = replica(&genesis);
    let state = replica(&genesis);
    let hub = MemoryHub::new();
    let store = Arc::new(EmbeddedStore::new());
    let node = "note";
    // The other server, played here: live, owner of shard 1.
    let other = PeerKey([0x77; 32]);
    let lease = store.grant_lease(Duration::from_secs(120)).await.unwrap();
    store
        .put(&live_key(node, &other), b"1-1@0", Some(lease))
        .await
        .unwrap();
    let mut other_net = hub.join(other);
    other_net.subscribe(&effects_topic(node)).unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut config = ServerConfig::new(node, ShardRange { lo: 0, hi: 0 }, shards);
    config.agreement = 1;
    config.tick = Duration::from_secs(30);
    config.accept_timeout = Duration::from_secs(120);
    config.lease_ttl = Duration::from_secs(120);
    let me = PeerKey([0x21; 32]);
    let stats = Arc::new(ServerStats::default());
    let task = tokio::spawn(server::run(
        config,
        Arc::new(state),
        store.clone(),
        hub.join(me),
        stats.clone(),
        shutdown,
    ));
    let mut feed = Feed::new(hub.join(PeerKey([0xfe; 32])));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (header, shard_list) = load.next_block(5).unwrap();
    let hash = header.hash();
    // Shard 1's outcome, run here against the parent state.
    let txs = block::shard_txs(&shard_list[1]);
    let view = reference.view(header.parent).unwrap();
    let env = header.env();
    let prepared = block::prepare(std::slice::from_ref(&txs));
    let result = block::run_shard(&view, &env, &env.exec_env(), 1, &prepared[0]).unwrap();
    let outcome = outcome_of(hash, 1, result).unwrap();
    let root = outcome.tree_hash_root();
    feed.publish(header.clone(), shard_list.clone());

    // The server runs shard 0, wins its key and says so.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline, other_net.recv())
            .await
            .expect("the server's note on shard 0")
            .unwrap();
        if let phalanx_net::NetEvent::Gossip { data, .. } = event
            && let Ok(Message::Accepted(note)) = Message::decode(&data)
        {
            assert_eq!((note.block, note.shard), (hash, 0));
            break;
        }
    }
    // Shard 1's outcome arrives before its key is written: the server reads the key, finds
    // nothing, and waits.
    other_net
        .publish(&effects_topic(node), Message::Outcome(outcome).encode())
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stats.head(), 0, "applied without shard 1 accepted");
    // The owner writes the key and says so: applied at once.
    store
        .create_if_absent(
            &accepted_key(node, hash, 1),
            accepted_value(root, &other).as_bytes(),
        )
        .await
        .unwrap();
    let note = phalanx_cluster::wire::AcceptedNote {
        block: hash,
        shard: 1,
    };
    other_net
        .publish(&effects_topic(node), Message::Accepted(note).encode())
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while stats.head() < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not applied within 5 s of the note (the next tick is 30 s away)"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let raw: Vec<Vec<alloy_primitives::Bytes>> = shard_list.iter().map(block::shard_txs).collect();
    let expected = reference
        .execute(header.parent, hash, &header.env(), &raw)
        .unwrap()
        .post_state_root;
    assert_eq!(stats.root(1), Some(expected));
    assert_eq!(
        stats.executed.load(Ordering::Relaxed),
        1,
        "it ran shard 0 only"
    );
    let _ = stop.send(true);
    task.await.unwrap().unwrap();
}

/// Only the node's own servers vote. A stranger on the network echoes a corrupting server's
/// outcomes on the node's effects topic: were its copies votes, the corrupting server would
/// find a second "agreeing" outcome and write its result as accepted. They are dropped and
/// counted instead, so with one honest server beside the corrupting one nothing is accepted;
/// once a second honest server starts, the two agree and every server applies the honest
/// root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_from_outside_the_node_are_no_votes() {
    use phalanx_cluster::CoordinationStore;
    use phalanx_cluster::server::accepted_key;
    use phalanx_cluster::wire::{Message, effects_topic};

    let shards = 2;
    let node = "collude";
    let Fixture {
        mut load,
        genesis,
        reference,
        hub,
        store,
    } = fixture(shards, 4, 17);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let spawn = |key: u8, corrupt: bool| {
        let mut config = agreeing_config(node, shards);
        config.corrupt = corrupt;
        config.lease_ttl = Duration::from_secs(3);
        start(
            config,
            &genesis,
            &store,
            hub.join(PeerKey([key; 32])),
            &shutdown,
        )
    };
    let corrupting = PeerKey([0x41; 32]);
    let mut servers = vec![spawn(0x41, true), spawn(0x42, false)];
    let mut stranger = hub.join(PeerKey([0x66; 32]));
    stranger.subscribe(&effects_topic(node)).unwrap();
    let mut feed = Feed::new(hub.join(PeerKey([0xfe; 32])));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (header, shard_list) = load.next_block(4).unwrap();
    let hash = header.hash();
    let expected = true_root(&reference, &header, &shard_list);
    feed.publish(header.clone(), shard_list.clone());

    // The stranger echoes every outcome of the corrupting server while the feed answers.
    let mut echoed = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    while tokio::time::Instant::now() < until {
        tokio::select! {
            e = feed.net_mut().recv() => if let Some(e) = e { feed.answer(e) },
            e = stranger.recv() => {
                if let Some(phalanx_net::NetEvent::Gossip { from, topic, data }) = e
                    && from == corrupting
                    && matches!(Message::decode(&data), Ok(Message::Outcome(_)))
                {
                    stranger.publish(&topic, data).unwrap();
                    echoed += 1;
                }
            }
            () = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
    assert_eq!(
        echoed, shards,
        "the corrupting server published an outcome per shard"
    );
    for shard in 0..shards {
        assert_eq!(
            store.get(&accepted_key(node, hash, shard)).await.unwrap(),
            None,
            "shard {shard}: one honest server and one corrupting one never agree"
        );
    }
    for (i, (stats, _)) in servers.iter().enumerate() {
        assert_eq!(stats.head(), 0, "server {i} applied nothing");
        assert!(
            stats.foreign.load(Ordering::Relaxed) >= u64::from(shards),
            "server {i} dropped the stranger's copies"
        );
    }

    // A second honest server: two agreeing outcomes per shard, the honest root everywhere.
    // (It joins after the block's gossip: the feed sends it again.)
    servers.push(spawn(0x43, false));
    tokio::time::sleep(Duration::from_millis(300)).await;
    feed.publish(header, shard_list);
    let stats: Vec<_> = servers.iter().map(|(s, _)| s.clone()).collect();
    serve_until_applied(&mut feed, &stats, 1).await;
    for (i, s) in stats.iter().enumerate() {
        assert_eq!(s.root(1), Some(expected), "server {i}");
    }
    assert!(
        stats[1].alarms.load(Ordering::Relaxed) >= 1,
        "the corrupting server's outcome, from inside the node, still raises the alarm"
    );
    let _ = stop.send(true);
    for (_, task) in servers {
        task.await.unwrap().unwrap();
    }
}

/// A server of the node whose listing in the store is blocks behind (it announces its height
/// only between blocks, so one working through a backlog looks behind to the others) is not
/// live for ownership, but it is still a member: its outcomes are votes. Here the second vote
/// of every block comes from a member listed at height 0 that echoes the honest server's
/// outcomes; from block 3 on (head 2, listing more than one block behind) its votes used to be
/// dropped as foreign and the block was never accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_listed_behind_still_votes() {
    use phalanx_cluster::CoordinationStore;
    use phalanx_cluster::server::live_key;
    use phalanx_cluster::wire::{Message, effects_topic};

    let shards = 2;
    let node = "behind";
    let Fixture {
        mut load,
        genesis,
        reference,
        hub,
        store,
    } = fixture(shards, 4, 23);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let config = agreeing_config(node, shards);
    let honest = PeerKey([0x51; 32]);
    let (stats, task) = start(config, &genesis, &store, hub.join(honest), &shutdown);
    // The member behind: listed under a lease at height 0 for the whole test.
    let behind = PeerKey([0x52; 32]);
    let lease = store.grant_lease(Duration::from_secs(30)).await.unwrap();
    store
        .put(&live_key(node, &behind), b"0-1@0", Some(lease))
        .await
        .unwrap();
    let mut member = hub.join(behind);
    member.subscribe(&effects_topic(node)).unwrap();
    let mut feed = Feed::new(hub.join(PeerKey([0xfe; 32])));
    tokio::time::sleep(Duration::from_millis(300)).await;

    for height in 1..=4u64 {
        let (header, shard_list) = load.next_block(4).unwrap();
        let hash = header.hash();
        let expected = true_root(&reference, &header, &shard_list);
        reference.finalize(hash).unwrap();
        feed.publish(header, shard_list);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while stats.head() < height {
            assert!(
                tokio::time::Instant::now() < deadline,
                "block {height} not applied: the member's votes were not counted \
                 (foreign messages: {})",
                stats.foreign.load(Ordering::Relaxed)
            );
            tokio::select! {
                e = feed.net_mut().recv() => if let Some(e) = e { feed.answer(e) },
                e = member.recv() => {
                    if let Some(phalanx_net::NetEvent::Gossip { from, topic, data }) = e
                        && from == honest
                        && matches!(Message::decode(&data), Ok(Message::Outcome(_)))
                    {
                        member.publish(&topic, data).unwrap();
                    }
                }
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
        assert_eq!(stats.root(height), Some(expected), "block {height}");
    }
    assert_eq!(stats.foreign.load(Ordering::Relaxed), 0);
    let _ = stop.send(true);
    task.await.unwrap().unwrap();
}

/// Two servers working through a backlog, each owning half the shards: neither ever looks
/// more than a block behind to the other, so neither takes the other's shards over. A
/// server used to announce its applied height only on its ticks; with blocks coming faster
/// than ticks (here a 100 ms tick and a queue of small blocks), its peer saw it many blocks
/// behind, counted it as not live and took its shards over (a 200-block benchmark run had
/// 100 takeovers and 96 hand-backs), running them twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_working_through_a_backlog_take_nothing_over() {
    let shards = 4;
    let node = "backlog";
    let Fixture {
        mut load,
        genesis,
        reference,
        hub,
        store,
    } = fixture(shards, 3, 29);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut stats = Vec::new();
    let mut tasks = Vec::new();
    for (i, range) in [ShardRange { lo: 0, hi: 1 }, ShardRange { lo: 2, hi: 3 }]
        .into_iter()
        .enumerate()
    {
        let mut config = ServerConfig::new(node, range, shards);
        config.agreement = 1;
        config.tick = Duration::from_millis(100);
        config.lease_ttl = Duration::from_millis(900);
        config.accept_timeout = Duration::from_secs(30);
        let net = hub.join(PeerKey([0x60 + i as u8; 32]));
        let (s, task) = start(config, &genesis, &store, net, &shutdown);
        tasks.push(task);
        stats.push(s);
    }
    let mut feed = Feed::new(hub.join(PeerKey([0xfe; 32])));
    // Past the lease's time after start, when takeovers become possible.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let blocks = 40u64;
    let mut expected = Vec::new();
    for height in 1..=blocks {
        // Two blocks ahead of the slower server: a queue, as in a catch-up.
        serve_until_applied(&mut feed, &stats, height.saturating_sub(3)).await;
        let (header, shard_list) = load.next_block(3).unwrap();
        let hash = header.hash();
        expected.push(true_root(&reference, &header, &shard_list));
        reference.finalize(hash).unwrap();
        feed.publish(header, shard_list);
    }
    serve_until_applied(&mut feed, &stats, blocks).await;
    for (i, s) in stats.iter().enumerate() {
        for (h, root) in expected.iter().enumerate() {
            assert_eq!(
                s.root(h as u64 + 1),
                Some(*root),
                "server {i}, height {}",
                h + 1
            );
        }
        assert_eq!(
            s.takeovers.load(Ordering::Relaxed),
            0,
            "server {i} took over a shard of a healthy peer"
        );
    }
    let _ = stop.send(true);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

/// Step 6 takes build requests from the node's producer only. A stranger asks the node's
/// server to build a block its mempool holds, and offers a shard of its own on the build
/// topic: nothing is built or written for it, both messages are dropped and counted, and the
/// producer's request for another block is built as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_nodes_producer_gets_shards_built() {
    use phalanx_cluster::CoordinationStore;
    use phalanx_cluster::server::{ShardBuilder, built_key};
    use phalanx_cluster::wire::{BuildRequest, Message, ShardMessage, build_topic};

    let shards = 2;
    let node = "builds";
    let mut load = Load::new(shards, 3, 23);
    let genesis = (load.genesis_header().hash(), load.genesis_alloc());
    let (strangers_block, strangers_shards) = load.next_block(3).unwrap();
    let (producers_block, producers_shards) = load.next_block(3).unwrap();
    // The mempool holds both blocks: were the stranger's request taken, it would be built.
    let mempool: std::collections::BTreeMap<_, _> = [
        (strangers_block.hash(), strangers_shards.clone()),
        (producers_block.hash(), producers_shards),
    ]
    .into();
    let producer = PeerKey([0x50; 32]);
    let mut config = ServerConfig::new(node, ShardRange { lo: 0, hi: 1 }, shards);
    config.tick = Duration::from_millis(10);
    config.builder = Some(ShardBuilder {
        producer,
        build: Arc::new(move |request: &BuildRequest, index: u16| {
            mempool.get(&request.id)?.get(usize::from(index)).cloned()
        }),
    });
    let hub = MemoryHub::new();
    let store = Arc::new(EmbeddedStore::new());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let (stats, task) = start(
        config,
        &genesis,
        &store,
        hub.join(PeerKey([0x41; 32])),
        &shutdown,
    );
    let stranger = hub.join(PeerKey([0x66; 32]));
    let producers_net = hub.join(producer);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let request = |block: &ExecHeader| {
        Message::Build(BuildRequest {
            id: block.hash(),
            height: block.number,
        })
        .encode()
    };
    let topic = build_topic(node);
    stranger.publish(&topic, request(&strangers_block)).unwrap();
    let offer = ShardMessage {
        block: strangers_block.hash(),
        index: 0,
        shard: strangers_shards[0].clone(),
    };
    stranger
        .publish(&topic, Message::Shard(offer).encode())
        .unwrap();
    producers_net
        .publish(&topic, request(&producers_block))
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for shard in 0..shards {
        while store
            .get(&built_key(node, producers_block.hash(), shard))
            .await
            .unwrap()
            .is_none()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the producer's shard {shard} was never built"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Some more ticks for the stranger's request, were it taken.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for shard in 0..shards {
        assert_eq!(
            store
                .get(&built_key(node, strangers_block.hash(), shard))
                .await
                .unwrap(),
            None,
            "shard {shard} of the stranger's block"
        );
    }
    assert_eq!(stats.built.load(Ordering::Relaxed), u64::from(shards));
    assert_eq!(
        stats.foreign.load(Ordering::Relaxed),
        2,
        "the stranger's request and offer"
    );
    let _ = stop.send(true);
    task.await.unwrap().unwrap();
}

/// Step 3's lone records. A server that was the node's only live server wrote both shards'
/// results alone before the others came back: shard 0's is the true one, shard 1's is wrong
/// (its published outcome has one wei more somewhere). The two servers back run both shards
/// themselves: shard 0's record is confirmed (written again without the mark, same writer),
/// shard 1's is replaced by the root the two agree on, and both apply the true state root.
/// Applying a lone record as any accepted one (before the mark) gave the wrong root here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lone_records_are_confirmed_or_replaced_by_the_servers_that_come_back() {
    use phalanx_cluster::CoordinationStore;
    use phalanx_cluster::server::{
        accepted_key, accepted_value, is_lone_accepted, live_key, lone_accepted_value, outcome_of,
        parse_accepted,
    };
    use phalanx_cluster::wire::{Message, effects_topic};
    use phalanx_execution::block;
    use tree_hash::TreeHash;

    let shards = 2;
    let node = "lone";
    let Fixture {
        mut load,
        genesis,
        reference,
        hub,
        store,
    } = fixture(shards, 4, 29);
    // The server that was alone, played here: a member of the node.
    let lone = PeerKey([0x57; 32]);
    let lease = store.grant_lease(Duration::from_secs(60)).await.unwrap();
    store
        .put(&live_key(node, &lone), b"0-1@0", Some(lease))
        .await
        .unwrap();
    let lone_net = hub.join(lone);

    let (header, shard_list) = load.next_block(4).unwrap();
    let hash = header.hash();
    let expected = true_root(&reference, &header, &shard_list);
    let view = reference.view(header.parent).unwrap();
    let env = header.env();
    let txs: Vec<_> = shard_list.iter().map(block::shard_txs).collect();
    let prepared = block::prepare(&txs);
    let outcome = |i: u16| {
        let result = block::run_shard(
            &view,
            &env,
            &env.exec_env(),
            i as usize,
            &prepared[i as usize],
        )
        .unwrap();
        outcome_of(hash, i, result).unwrap()
    };
    let true0 = outcome(0).tree_hash_root();
    let true1 = outcome(1).tree_hash_root();
    let mut wrong = outcome(1);
    let account = wrong.effects.accounts.iter_mut().next().unwrap();
    let balance =
        alloy_primitives::U256::from_be_bytes(account.balance.0) + alloy_primitives::U256::from(1);
    account.balance = alloy_primitives::B256::from(balance);
    let wrong1 = wrong.tree_hash_root();
    assert_ne!(wrong1, true1);
    for (shard, root) in [(0, true0), (1, wrong1)] {
        store
            .create_if_absent(
                &accepted_key(node, hash, shard),
                lone_accepted_value(root, &lone).as_bytes(),
            )
            .await
            .unwrap();
    }

    // The two servers that come back.
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let honest = [PeerKey([0x61; 32]), PeerKey([0x62; 32])];
    let servers: Vec<_> = honest
        .iter()
        .map(|key| {
            start(
                agreeing_config(node, shards),
                &genesis,
                &store,
                hub.join(*key),
                &shutdown,
            )
        })
        .collect();
    let mut feed = Feed::new(hub.join(PeerKey([0xfe; 32])));
    tokio::time::sleep(Duration::from_millis(300)).await;
    feed.publish(header, shard_list);
    // The lone server's wrong outcome is about, as it would be.
    lone_net
        .publish(&effects_topic(node), Message::Outcome(wrong).encode())
        .unwrap();
    let stats: Vec<_> = servers.iter().map(|(s, _)| s.clone()).collect();
    serve_until_applied(&mut feed, &stats, 1).await;
    for (i, s) in stats.iter().enumerate() {
        assert_eq!(s.root(1), Some(expected), "server {i}");
    }
    let record = |shard| {
        let store = store.clone();
        async move {
            store
                .get(&accepted_key(node, hash, shard))
                .await
                .unwrap()
                .unwrap()
        }
    };
    let confirmed = record(0).await;
    assert_eq!(confirmed, accepted_value(true0, &lone).into_bytes());
    let replaced = record(1).await;
    assert!(!is_lone_accepted(&replaced));
    let (root, writer) = parse_accepted(&replaced).unwrap();
    assert_eq!(root, true1);
    assert!(honest.contains(&writer), "replaced by {writer}");
    let replacements: u64 = stats
        .iter()
        .map(|s| s.lone_replaced.load(Ordering::Relaxed))
        .sum();
    assert!(replacements >= 1);
    assert!(stats.iter().all(|s| s.alarms.load(Ordering::Relaxed) >= 1));
    let _ = stop.send(true);
    for (_, task) in servers {
        task.await.unwrap().unwrap();
    }
}
