//! Another node follows the devnet's chain over libp2p, as `phalanx node --follow` does: three
//! servers of one node (one coordination store, 8 shards, two owners each) check the chain's
//! headers against their signed consensus headers, tally finality themselves, take their
//! shards by gossip from the devnet (the blocks from before the node started by range
//! requests), execute them and end with the devnet's block and state root at every height —
//! and no server receives a shard outside its range by gossip. A node given a genesis file with another allocation is refused before it runs a
//! block.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use phalanx_cluster::CoordinationStore;
use phalanx_cluster::embedded::EmbeddedStore;
use phalanx_cluster::follow::{FollowConfig, FollowError};
use phalanx_cluster::node::{self, Chain, NodeConfig, NodeError, StoreChoice};
use phalanx_cluster::ownership::layout;
use phalanx_cluster::server::ServerConfig;
use phalanx_devnet::{Devnet, DevnetConfig};
use phalanx_net::p2p::Peer;
use tokio::sync::watch;

const SHARDS: u16 = 8;
const SERVERS: u16 = 3;
const HEIGHTS: u64 = 6;
/// The devnet's height when the node starts.
const LATE: u64 = 4;

/// `height → (block, state root)` from a roots log (`height block root unix-ms` lines).
fn roots(path: &Path) -> BTreeMap<u64, (String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.first()?.parse().ok()?,
                (f.get(1)?.to_string(), f.get(2)?.to_string()),
            ))
        })
        .collect()
}

/// Shard indices with gossip bytes in a server's `metrics.prom`.
fn gossiped_shards(path: &Path) -> Vec<u16> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.starts_with("phalanx_node_shard_bytes_received_total{")
                && l.contains("via=\"gossip\"")
        })
        .filter(|l| {
            l.split_whitespace()
                .last()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > 0.0)
        })
        .filter_map(|l| {
            let at = l.find("shard=\"")? + 7;
            l[at..].split('"').next()?.parse().ok()
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clustered_node_follows_the_chain_over_gossip() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = DevnetConfig::new(dir.path().join("devnet"));
    config.slot_seconds = Some(1);
    config.rpc = "127.0.0.1:0".parse().unwrap();
    config.dv_validators = 0;
    config.servers = 1;
    config.replication = 1;
    config.load = 20;
    config.p2p_listen = Some("/ip4/127.0.0.1/tcp/0".into());
    let devnet = Devnet::start(config).await.unwrap();
    let source: Peer = devnet.p2p_peer().unwrap().parse().unwrap();
    let url = format!("http://{}", devnet.rpc_addr());
    let (stop, shutdown) = watch::channel(false);
    // The node joins late: the first blocks are history, no longer on gossip, synced by
    // request (`PHALANX_LATE=60 … -- --nocapture` measures the catch-up; docs/benchmarks.md).
    let late: u64 = std::env::var("PHALANX_LATE").map_or(LATE, |v| v.parse().unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    while roots(&dir.path().join("devnet/servers/s0/roots.log"))
        .keys()
        .last()
        .copied()
        .unwrap_or(0)
        < late
    {
        assert!(
            Instant::now() < deadline,
            "the devnet did not reach height {late}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let started = Instant::now();

    // The node's servers: identities and addresses first, so each can dial the others.
    let ranges = layout(SERVERS, SHARDS, 2);
    let servers: Vec<_> = (0..SERVERS as usize)
        .map(|i| {
            let data = dir.path().join(format!("server-{i}"));
            std::fs::create_dir_all(&data).unwrap();
            let key = phalanx_net::p2p::public_key(&node::identity(&data).unwrap()).unwrap();
            let address = format!("/ip4/127.0.0.1/tcp/{}", free_port());
            (data, key, address)
        })
        .collect();
    let store: Arc<dyn CoordinationStore> = Arc::new(EmbeddedStore::new());
    // A first serving node that is down: the follower goes on to the next.
    let follow = FollowConfig {
        nodes: vec![format!("http://127.0.0.1:{}", free_port()), url.clone()],
        genesis: devnet.genesis().clone(),
        poll: Duration::from_millis(100),
    };
    let mut tasks = Vec::new();
    for (i, (data, _, address)) in servers.iter().enumerate() {
        let mut peers = vec![source.clone()];
        peers.extend(servers[..i].iter().map(|(_, key, address)| Peer {
            key: *key,
            address: Some(address.clone()),
        }));
        let config = NodeConfig {
            server: ServerConfig::new("follower", ranges[i], SHARDS),
            data_dir: data.clone(),
            store: StoreChoice::Given(store.clone()),
            listen: address.clone(),
            peers,
            chain: Chain::Follow {
                follow: Box::new(follow.clone()),
                blocks: source.key,
            },
        };
        tasks.push(tokio::spawn(node::run(config, shutdown.clone())));
    }

    // Every server reaches HEIGHTS blocks past its start, a height at which the load has moved the state, with
    // the devnet's block and root at every height up to there.
    let devnet_log = dir.path().join("devnet/servers/s0/roots.log");
    let deadline = Instant::now() + Duration::from_secs(180);
    let target = loop {
        let reference = roots(&devnet_log);
        let lowest = servers
            .iter()
            .map(|(data, _, _)| {
                roots(&data.join("roots.log"))
                    .keys()
                    .last()
                    .copied()
                    .unwrap_or(0)
            })
            .min()
            .unwrap_or(0);
        let moved = |h: u64| {
            (1..=h)
                .filter_map(|x| reference.get(&x).map(|r| &r.1))
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                > 1
        };
        if lowest >= late + HEIGHTS
            && moved(lowest)
            && lowest + 1 >= reference.keys().last().copied().unwrap_or(0)
        {
            eprintln!(
                "started at devnet height {late}, caught up with it at {lowest} after {:?}",
                started.elapsed()
            );
            break lowest;
        }
        for t in &tasks {
            assert!(!t.is_finished(), "a server stopped");
        }
        assert!(
            Instant::now() < deadline,
            "the node did not reach height {} with a moved state: {:?}, devnet at {:?}",
            late + HEIGHTS,
            servers
                .iter()
                .map(|(d, _, _)| roots(&d.join("roots.log")).keys().last().copied())
                .collect::<Vec<_>>(),
            reference.keys().last()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let reference = roots(&devnet_log);
    for (i, (data, _, _)) in servers.iter().enumerate() {
        let ours = roots(&data.join("roots.log"));
        for h in 1..=target {
            assert_eq!(
                ours.get(&h),
                reference.get(&h),
                "server {i} at height {h} differs from the devnet"
            );
        }
    }

    // Metrics are written each second: wait for one more write, then check the ranges.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (i, (data, _, _)) in servers.iter().enumerate() {
        let own = ranges[i].indices(SHARDS);
        let gossiped = gossiped_shards(&data.join("metrics.prom"));
        eprintln!(
            "server {i} ({}): shards by gossip {gossiped:?}, target height {target}",
            ranges[i]
        );
        assert!(
            !gossiped.is_empty(),
            "server {i} received no shard by gossip"
        );
        for s in gossiped {
            assert!(
                own.contains(&s),
                "server {i} ({}) received shard {s} by gossip",
                ranges[i]
            );
        }
    }
    stop.send(true).unwrap();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }

    // Another allocation: refused before a block runs, naming both genesis roots.
    let mut other = devnet.genesis().clone();
    let (_, account) = other.alloc.iter_mut().next().unwrap();
    account.balance += alloy_primitives::U256::from(1);
    let data = dir.path().join("wrong-genesis");
    let (_stop, shutdown) = watch::channel(false);
    let run = node::run(
        NodeConfig {
            server: ServerConfig::new("wrong", ranges[0], SHARDS),
            data_dir: data.clone(),
            store: StoreChoice::Embedded,
            listen: format!("/ip4/127.0.0.1/tcp/{}", free_port()),
            peers: vec![source.clone()],
            chain: Chain::Follow {
                follow: Box::new(FollowConfig {
                    nodes: vec![url],
                    genesis: other,
                    ..follow
                }),
                blocks: source.key,
            },
        },
        shutdown,
    );
    let result = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the node with a wrong genesis did not stop");
    assert!(
        matches!(
            result,
            Err(NodeError::Follow(FollowError::GenesisStateMismatch { .. }))
        ),
        "{result:?}"
    );
    assert!(roots(&data.join("roots.log")).is_empty());
    drop(devnet);
}
