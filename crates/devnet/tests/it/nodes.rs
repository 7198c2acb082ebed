//! Another node follows the devnet's chain over libp2p, as `phalanx node --follow` does: three
//! servers of one node (one coordination store, 8 shards, two owners each) check the chain's
//! headers against their signed consensus headers, tally finality themselves, take their
//! shards by gossip from the devnet (the blocks from before the node started by range
//! requests), execute them and end with the devnet's block and state root at every height —
//! and no server receives a shard outside its range by gossip; each server's JSON-RPC answers
//! `eth_getProof` about every account the chain touched as the devnet does, whichever
//! server ran the shard that touched it, and blocks, transactions and receipts as the devnet
//! does, though each server kept only its shards' (the rest come from the node's other
//! servers). A node given a genesis file with another allocation is refused before it runs a
//! block.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::Address;
use phalanx_cluster::CoordinationStore;
use phalanx_cluster::embedded::EmbeddedStore;
use phalanx_cluster::follow::{FollowConfig, FollowError};
use phalanx_cluster::node::{self, Chain, NodeConfig, NodeError, StoreChoice};
use phalanx_cluster::ownership::layout;
use phalanx_cluster::server::ServerConfig;
use phalanx_devnet::{Devnet, DevnetConfig};
use phalanx_net::PeerKey;
use phalanx_net::p2p::Peer;
use serde_json::{Value, json};
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

/// Waits until every server in `dirs` has applied at least `at_least` blocks, a height at which
/// the load has moved the state, and is within one block of the devnet; returns the lowest
/// server's height. Fails if a task stops or after 180 s.
async fn caught_up(
    dirs: &[std::path::PathBuf],
    devnet_log: &Path,
    at_least: u64,
    tasks: &[tokio::task::JoinHandle<Result<(), NodeError>>],
) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let reference = roots(devnet_log);
        let lowest = dirs
            .iter()
            .map(|d| {
                roots(&d.join("roots.log"))
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
        if lowest >= at_least
            && moved(lowest)
            && lowest + 1 >= reference.keys().last().copied().unwrap_or(0)
        {
            return lowest;
        }
        for t in tasks {
            assert!(!t.is_finished(), "a server stopped");
        }
        assert!(
            Instant::now() < deadline,
            "the node did not reach height {at_least} with a moved state: {:?}, devnet at {:?}",
            dirs.iter()
                .map(|d| roots(&d.join("roots.log")).keys().last().copied())
                .collect::<Vec<_>>(),
            reference.keys().last()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every server in `dirs` has the devnet's block and state root at every height up to `to`.
fn same_roots(dirs: &[std::path::PathBuf], devnet_log: &Path, to: u64) {
    let reference = roots(devnet_log);
    for (i, data) in dirs.iter().enumerate() {
        let ours = roots(&data.join("roots.log"));
        for h in 1..=to {
            assert_eq!(
                ours.get(&h),
                reference.get(&h),
                "server {i} at height {h} differs from the devnet"
            );
        }
    }
}

/// A devnet on loopback with a gossip network (1 s slots, one server, a load), once it has
/// executed `height` blocks.
async fn devnet_at(dir: &Path, height: u64) -> Devnet {
    let mut config = DevnetConfig::new(dir.join("devnet"));
    config.slot_seconds = Some(1);
    config.rpc = "127.0.0.1:0".parse().unwrap();
    config.dv_validators = 0;
    config.servers = 1;
    config.replication = 1;
    config.load = 20;
    config.p2p_listen = Some("/ip4/127.0.0.1/tcp/0".into());
    let devnet = Devnet::start(config).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while roots(&dir.join("devnet/servers/s0/roots.log"))
        .keys()
        .last()
        .copied()
        .unwrap_or(0)
        < height
    {
        assert!(
            Instant::now() < deadline,
            "the devnet did not reach height {height}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    devnet
}

/// The node's servers' data folders, identities and addresses (made first, so each can dial
/// the others).
fn identities(dir: &Path) -> Vec<(PathBuf, PeerKey, String)> {
    (0..SERVERS as usize)
        .map(|i| {
            let data = dir.join(format!("server-{i}"));
            std::fs::create_dir_all(&data).unwrap();
            let key = phalanx_net::p2p::public_key(&node::identity(&data).unwrap()).unwrap();
            let address = format!("/ip4/127.0.0.1/tcp/{}", free_port());
            (data, key, address)
        })
        .collect()
}

/// Server `i`'s peers: the serving node, and the servers before it.
fn peers_of(i: usize, source: &Peer, servers: &[(PathBuf, PeerKey, String)]) -> Vec<Peer> {
    let mut peers = vec![source.clone()];
    peers.extend(servers[..i].iter().map(|(_, key, address)| Peer {
        key: *key,
        address: Some(address.clone()),
    }));
    peers
}

async fn rpc(addr: SocketAddr, body: &Value) -> Value {
    let (code, answer) = crate::api::request(addr, "POST", "/", &body.to_string()).await;
    assert_eq!(code, 200, "{answer}");
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

async fn rpc_call(addr: SocketAddr, method: &str, params: Value) -> Value {
    rpc(
        addr,
        &json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}),
    )
    .await
}

/// `eth_blockNumber` of the endpoint at `addr`, once it is at least `height` (30 s at most).
async fn head_at_least(addr: SocketAddr, height: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = rpc_call(addr, "eth_blockNumber", json!([])).await;
        let head = u64::from_str_radix(
            answer["result"].as_str().unwrap().trim_start_matches("0x"),
            16,
        )
        .unwrap();
        if head >= height {
            return head;
        }
        assert!(
            Instant::now() < deadline,
            "{addr} stays at {head} < {height}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every server's JSON-RPC (`phalanx node --rpc`) answers as the devnet does about every
/// account the chain touched up to `height` (the genesis accounts, every transaction's sender
/// and recipient): the same `eth_getProof` at `height` — balance, nonce and the proof from
/// that height's state root — whichever server ran the shard that touched it; the same chain
/// id; a method it does not serve is -32601. Returns how many accounts were compared and how
/// many of them sent a transaction.
async fn reads_match_the_devnet(
    servers: &[SocketAddr],
    devnet: SocketAddr,
    genesis: &phalanx_spec::Genesis,
    height: u64,
) -> (usize, usize) {
    head_at_least(devnet, height).await;
    let mut accounts: BTreeSet<Address> = genesis.alloc.keys().copied().collect();
    for h in 1..=height {
        let block = rpc_call(
            devnet,
            "eth_getBlockByNumber",
            json!([format!("{h:#x}"), true]),
        )
        .await;
        for tx in block["result"]["transactions"].as_array().unwrap() {
            for field in ["from", "to"] {
                if let Some(a) = tx[field].as_str() {
                    accounts.insert(a.parse().unwrap());
                }
            }
        }
    }
    let proofs = Value::Array(
        accounts
            .iter()
            .enumerate()
            .map(|(i, a)| {
                json!({"jsonrpc": "2.0", "id": i, "method": "eth_getProof",
                       "params": [a, [], format!("{height:#x}")]})
            })
            .collect(),
    );
    let expected = rpc(devnet, &proofs).await;
    for answer in expected.as_array().unwrap() {
        assert!(
            answer["result"]["accountProof"].is_array(),
            "devnet: {answer}"
        );
    }
    let moved = expected
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["result"]["nonce"] != json!("0x0"))
        .count();
    assert!(
        moved > 0,
        "no account sent a transaction by height {height}"
    );
    let chain_id = rpc_call(devnet, "eth_chainId", json!([])).await["result"].clone();
    for (i, server) in servers.iter().enumerate() {
        head_at_least(*server, height).await;
        assert_eq!(
            rpc_call(*server, "eth_chainId", json!([])).await["result"],
            chain_id,
            "server {i}"
        );
        let got = rpc(*server, &proofs).await;
        assert_eq!(got.as_array().unwrap().len(), accounts.len(), "server {i}");
        for (ours, theirs) in got
            .as_array()
            .unwrap()
            .iter()
            .zip(expected.as_array().unwrap())
        {
            assert_eq!(ours, theirs, "server {i}: eth_getProof at {height}");
        }
        let unserved = rpc_call(*server, "eth_sendRawTransaction", json!(["0x00"])).await;
        assert_eq!(
            unserved["error"]["code"],
            json!(-32601),
            "server {i}: {unserved}"
        );
    }
    (accounts.len(), moved)
}

/// Every server's JSON-RPC answers for the chain's history up to `height` as the devnet
/// does: each block with its transactions (`eth_getBlockByNumber`, objects), its receipts
/// (`eth_getBlockReceipts`), and each transaction's receipt and body by hash — though each
/// server ran only some shards of each block and put the rest together from the node's other
/// servers (`phalanx_cluster::lookup`), one of them keeping only the last 3 heights'
/// receipts. Returns how many transactions were compared.
async fn history_matches_the_devnet(
    servers: &[SocketAddr],
    devnet: SocketAddr,
    height: u64,
) -> usize {
    let mut compared = 0;
    for h in 1..=height {
        let number = format!("{h:#x}");
        let block = rpc_call(devnet, "eth_getBlockByNumber", json!([number, true])).await;
        let receipts = rpc_call(devnet, "eth_getBlockReceipts", json!([number])).await;
        assert!(block["result"]["hash"].is_string(), "devnet: {block}");
        let txs = block["result"]["transactions"].as_array().unwrap().clone();
        let mut by_hash = Vec::new();
        for tx in &txs {
            let hash = tx["hash"].clone();
            let receipt = rpc_call(devnet, "eth_getTransactionReceipt", json!([hash])).await;
            by_hash.push((hash, tx.clone(), receipt["result"].clone()));
        }
        for (i, server) in servers.iter().enumerate() {
            let ours = rpc_call(*server, "eth_getBlockByNumber", json!([number, true])).await;
            assert_eq!(
                ours["result"], block["result"],
                "server {i}: block {h}: {ours}"
            );
            let ours = rpc_call(*server, "eth_getBlockReceipts", json!([number])).await;
            assert_eq!(
                ours["result"], receipts["result"],
                "server {i}: receipts of {h}"
            );
            for (hash, tx, receipt) in &by_hash {
                let ours = rpc_call(*server, "eth_getTransactionReceipt", json!([hash])).await;
                assert_eq!(&ours["result"], receipt, "server {i}: receipt of {hash}");
                let ours = rpc_call(*server, "eth_getTransactionByHash", json!([hash])).await;
                assert_eq!(&ours["result"], tx, "server {i}: transaction {hash}");
            }
        }
        compared += txs.len();
    }
    assert!(compared > 0, "no transaction by height {height}");
    compared
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
    // The node joins late: the first blocks are history, no longer on gossip, synced by
    // request (`PHALANX_LATE=60 … -- --nocapture` measures the catch-up; docs/benchmarks.md).
    let late: u64 = std::env::var("PHALANX_LATE").map_or(LATE, |v| v.parse().unwrap());
    let devnet = devnet_at(dir.path(), late).await;
    let source: Peer = devnet.p2p_peer().unwrap().parse().unwrap();
    let url = format!("http://{}", devnet.rpc_addr());
    let (stop, shutdown) = watch::channel(false);
    let started = Instant::now();
    let ranges = layout(SERVERS, SHARDS, 2);
    let servers = identities(dir.path());
    let store: Arc<dyn CoordinationStore> = Arc::new(EmbeddedStore::new());
    // A first serving node that is down: the follower goes on to the next.
    let follow = FollowConfig {
        nodes: vec![format!("http://127.0.0.1:{}", free_port()), url.clone()],
        genesis: devnet.genesis().clone(),
        poll: Duration::from_millis(100),
    };
    let rpcs: Vec<SocketAddr> = (0..SERVERS)
        .map(|_| SocketAddr::from(([127, 0, 0, 1], free_port())))
        .collect();
    let mut tasks = Vec::new();
    for (i, (data, _, address)) in servers.iter().enumerate() {
        let peers = peers_of(i, &source, &servers);
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
            rpc: Some(rpcs[i]),
            // One server prunes its replica to the last 8 heights (and its receipts to the
            // last 3): it answers the same.
            keep_states: if i == 1 { 8 } else { 0 },
            keep_receipts: if i == 1 { 3 } else { 0 },
        };
        tasks.push(tokio::spawn(node::run(config, shutdown.clone())));
    }

    // Every server reaches HEIGHTS blocks past its start, a height at which the load has moved
    // the state, with the devnet's block and root at every height up to there.
    let devnet_log = dir.path().join("devnet/servers/s0/roots.log");
    let dirs: Vec<_> = servers.iter().map(|(d, _, _)| d.clone()).collect();
    let target = caught_up(&dirs, &devnet_log, late + HEIGHTS, &tasks).await;
    eprintln!(
        "started at devnet height {late}, caught up with it at {target} after {:?}",
        started.elapsed()
    );
    same_roots(&dirs, &devnet_log, target);
    let (accounts, moved) =
        reads_match_the_devnet(&rpcs, devnet.rpc_addr(), devnet.genesis(), target).await;
    eprintln!(
        "{} servers answer eth_getProof at height {target} as the devnet does for {accounts} \
         accounts ({moved} of them senders)",
        rpcs.len()
    );
    let compared = history_matches_the_devnet(&rpcs, devnet.rpc_addr(), target).await;
    eprintln!(
        "{} servers answer blocks 1–{target} and their {compared} transactions' receipts as \
         the devnet does",
        rpcs.len()
    );

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
    // The pruning server keeps fewer trie nodes than an archive server of the same chain.
    let metric = |i: usize, name: &str| {
        let text = std::fs::read_to_string(servers[i].0.join("metrics.prom")).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("server {i}: no {name}"))
    };
    let (archive, pruned) = (
        metric(0, "phalanx_node_trie_nodes"),
        metric(1, "phalanx_node_trie_nodes"),
    );
    eprintln!("trie nodes on disk: archive server {archive}, server keeping 8 states {pruned}");
    assert!(pruned < archive, "pruned {pruned}, archive {archive}");
    // Its receipts: at most 3 heights' of the shards it runs; the others keep every height's.
    let (all, kept) = (
        metric(0, "phalanx_node_receipt_records"),
        metric(1, "phalanx_node_receipt_records"),
    );
    let runs = ranges[1].indices(SHARDS).len() as u64;
    eprintln!("receipt records on disk: every height's {all}, the last 3 heights' {kept}");
    assert!(
        kept > 0 && kept <= 3 * runs,
        "{kept} records of {runs} shards"
    );
    assert!(kept < all, "kept {kept}, all {all}");
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
            rpc: None,
            keep_states: 0,
            keep_receipts: 0,
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

/// `phalanx node --genesis FILE --peer …` (no `--follow`): the same three servers take the
/// chain from gossip alone — consensus blocks and aggregates on their topics, the blocks from
/// before they started by asking for ancestors — check and finalize them themselves, and end
/// with the devnet's roots at every height; a server stopped and started again finds its
/// head's consensus block (anchored to the replica's head header) and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clustered_node_follows_the_chain_from_gossip_alone() {
    let dir = tempfile::tempdir().unwrap();
    // `PHALANX_LATE=60 … -- --nocapture` measures the catch-up by ancestor requests.
    let late: u64 = std::env::var("PHALANX_LATE").map_or(LATE, |v| v.parse().unwrap());
    let devnet = devnet_at(dir.path(), late).await;
    let source: Peer = devnet.p2p_peer().unwrap().parse().unwrap();
    let started = Instant::now();
    let ranges = layout(SERVERS, SHARDS, 2);
    let servers = identities(dir.path());
    let store: Arc<dyn CoordinationStore> = Arc::new(EmbeddedStore::new());
    let genesis = Arc::new(devnet.genesis().clone());
    let config = |i: usize| NodeConfig {
        server: ServerConfig::new("gossip", ranges[i], SHARDS),
        data_dir: servers[i].0.clone(),
        store: StoreChoice::Given(store.clone()),
        listen: servers[i].2.clone(),
        peers: peers_of(i, &source, &servers),
        chain: Chain::Gossip {
            genesis: genesis.clone(),
            blocks: source.key,
        },
        rpc: None,
        keep_states: 0,
        keep_receipts: 0,
    };
    // Server 0 has its own stop, to be restarted.
    let (stop0, shutdown0) = watch::channel(false);
    let (stop, shutdown) = watch::channel(false);
    let mut tasks = vec![tokio::spawn(node::run(config(0), shutdown0))];
    for i in 1..SERVERS as usize {
        tasks.push(tokio::spawn(node::run(config(i), shutdown.clone())));
    }
    let devnet_log = dir.path().join("devnet/servers/s0/roots.log");
    let dirs: Vec<_> = servers.iter().map(|(d, _, _)| d.clone()).collect();
    let target = caught_up(&dirs, &devnet_log, late + HEIGHTS, &tasks).await;
    eprintln!(
        "started at devnet height {late}, caught up with it at {target} after {:?}",
        started.elapsed()
    );
    same_roots(&dirs, &devnet_log, target);

    // Server 0 stops; the chain moves on; started again from its disk it follows from its
    // head (which is after genesis: the anchoring path).
    stop0.send(true).unwrap();
    let first = tasks.remove(0);
    tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("server 0 did not stop")
        .unwrap()
        .unwrap();
    let stopped_at = roots(&dirs[0].join("roots.log"))
        .keys()
        .last()
        .copied()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (stop0, shutdown0) = watch::channel(false);
    tasks.insert(0, tokio::spawn(node::run(config(0), shutdown0)));
    let target = caught_up(&dirs, &devnet_log, stopped_at + 3, &tasks).await;
    same_roots(&dirs, &devnet_log, target);
    eprintln!("server 0 stopped at {stopped_at}, back and caught up at {target}");
    stop.send(true).unwrap();
    stop0.send(true).unwrap();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    drop(devnet);
}
