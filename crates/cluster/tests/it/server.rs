//! A server under garbage from a peer: it counts the first bad messages, the network bans the
//! sender, the rest never reach the server, and blocks are still executed and applied.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use phalanx_cluster::embedded::EmbeddedStore;
use phalanx_cluster::feed::Feed;
use phalanx_cluster::load::Load;
use phalanx_cluster::ownership::ShardRange;
use phalanx_cluster::server::{self, ServerConfig, ServerStats};
use phalanx_execution::store::StateStore;
use phalanx_net::memory::MemoryHub;
use phalanx_net::{Network, PeerKey};

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

/// Two servers that each run their shards on their own thread pool (off the async runtime,
/// as `phalanx node` and the benchmark do): each executes only its own range, and both apply
/// every block with the root of running the block alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_with_their_own_pools_run_their_ranges_and_agree_with_a_lone_executor() {
    let shards = 4;
    let mut load = Load::new(shards, 6, 11);
    let genesis = (load.genesis_header().hash(), load.genesis_alloc());
    let reference = StateStore::in_memory().unwrap();
    reference.init_genesis(genesis.0, &genesis.1).unwrap();
    let hub = MemoryHub::new();
    let store = Arc::new(EmbeddedStore::new());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    for (i, range) in [ShardRange { lo: 0, hi: 1 }, ShardRange { lo: 2, hi: 3 }]
        .into_iter()
        .enumerate()
    {
        let state = StateStore::in_memory().unwrap();
        state.init_genesis(genesis.0, &genesis.1).unwrap();
        let mut config = ServerConfig::new("pools", range, shards);
        config.agreement = 1;
        config.threads = Some(1);
        config.tick = Duration::from_millis(10);
        config.lease_ttl = Duration::from_secs(3);
        let stats = Arc::new(ServerStats::default());
        let task = tokio::spawn(server::run(
            config,
            Arc::new(state),
            store.clone(),
            hub.join(PeerKey([0x20 + i as u8; 32])),
            stats.clone(),
            shutdown.clone(),
        ));
        servers.push((stats, task));
    }
    let mut feed = Feed::new(hub.join(PeerKey([0xfe; 32])));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let blocks = 4u64;
    for height in 1..=blocks {
        let (header, shard_list) = load.next_block(6).unwrap();
        let raw: Vec<Vec<alloy_primitives::Bytes>> = shard_list
            .iter()
            .map(|s| {
                s.transactions
                    .iter()
                    .map(|t| alloy_primitives::Bytes::from(t.to_vec()))
                    .collect()
            })
            .collect();
        let expected = reference
            .execute(header.parent, header.hash(), &header.env(), &raw)
            .unwrap()
            .post_state_root;
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
