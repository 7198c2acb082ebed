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
    let stats = Arc::new(ServerStats::default());
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(server::run(
        config,
        Arc::new(state),
        Arc::new(EmbeddedStore::new()),
        hub.join(me),
        stats.clone(),
        shutdown,
    ));
    let rogue = hub.join(PeerKey([0x66; 32]));
    let mut feed = Feed::new(hub.join(PeerKey([0xfe; 32])));
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..20u8 {
        rogue.send(me, vec![0xff, i, i, i]).unwrap();
    }
    for height in 1..=3u64 {
        let (header, shard_list) = load.next_block(4).unwrap();
        feed.publish(header, shard_list);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while stats.head() < height {
            assert!(
                tokio::time::Instant::now() < deadline,
                "block {height} not applied"
            );
            tokio::select! {
                e = feed.net_mut().recv() => if let Some(e) = e { feed.answer(e) },
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
    }
    // 4 × 30 points ban the sender; the other 16 messages never reach the server.
    assert_eq!(stats.invalid.load(Ordering::Relaxed), 4);
    let _ = stop.send(true);
    task.await.unwrap().unwrap();
}
