//! `phalanx node`: one server of a (clustered) full node following the consensus chain —
//! from gossip (`--genesis FILE --peer KEY@ADDR`) or from a serving node's API (`--follow
//! URL`) — or following a `--feed` process's deterministic load; with `--feed`, that block
//! feed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use phalanx_cluster::etcd::EtcdConfig;
use phalanx_cluster::feed::{self, FeedConfig};
use phalanx_cluster::follow::FollowConfig;
use phalanx_cluster::node::{self, Chain, LoadSettings, NodeConfig, StoreChoice};
use phalanx_cluster::ownership::ShardRange;
use phalanx_cluster::server::ServerConfig;
use phalanx_net::p2p::{self, Libp2pNetwork, Peer};

/// Flags of `phalanx node`.
#[derive(Debug, clap::Args)]
pub(crate) struct NodeArgs {
    /// Data folder: identity key, state, roots log, metrics.
    #[arg(long)]
    data_dir: PathBuf,
    /// The node this server belongs to: its servers share this id and a coordination store.
    #[arg(long, default_value = "node")]
    node_id: String,
    /// The shard indices this server owns: `lo-hi` (wrapping, e.g. `6-1`) or one index
    /// (default: all, an ordinary full node).
    #[arg(long)]
    shards: Option<String>,
    /// Follow the consensus chain served by these nodes (JSON-RPC URLs, e.g. a devnet's,
    /// comma-separated or repeated; asked one at a time, the next when one stops answering):
    /// headers checked against their signed consensus headers and taken once final; shards by
    /// gossip and, when missed, by request from the first `--peer` (a serving node's gossip
    /// identity). Needs `--genesis`. Without it, a `--genesis` alone follows the chain from
    /// gossip, and neither follows a `--feed` process.
    #[arg(
        long,
        value_name = "URL",
        value_delimiter = ',',
        requires = "genesis",
        conflicts_with = "feed"
    )]
    follow: Vec<String>,
    /// The chain's genesis file. Alone (no `--follow`): follow the consensus chain from
    /// gossip — its blocks and attestations on their topics, checked and taken once final by
    /// this server itself; missing blocks, shards and (after a restart) the head's header asked
    /// of the first `--peer`, a node serving the chain (a devnet's `--p2p-listen` identity).
    #[arg(long, value_name = "FILE", conflicts_with = "feed")]
    genesis: Option<PathBuf>,
    /// Shards per block (with `--follow`: the genesis's; default 8).
    #[arg(long)]
    total_shards: Option<u16>,
    /// etcd client endpoints, comma-separated (default: the embedded store, for a node of
    /// one server).
    #[arg(long, value_delimiter = ',')]
    etcd: Vec<String>,
    /// Where to listen (libp2p multiaddr).
    #[arg(long, default_value = "/ip4/127.0.0.1/tcp/9400")]
    listen: String,
    /// A peer to dial: `HEXKEY@MULTIADDR` (repeat). The first is where the chain comes
    /// from — the serving node (`--follow`, `--genesis`) or the block feed, whose headers
    /// alone are run —; the others are the node's other servers and other nodes.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Seed of the load whose genesis the chain starts from (as the feed's).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Funded senders per shard in that genesis (as the feed's).
    #[arg(long, default_value_t = 20)]
    senders: usize,
    /// Lease ttl: a server silent this long is dead to the others (ms).
    #[arg(long, default_value_t = 2000)]
    lease_ms: u64,
    /// A shard with no accepted outcome this long after its header gets one more server (ms).
    #[arg(long, default_value_t = 2000)]
    accept_timeout_ms: u64,
    /// Threads that execute this server's shards and apply its blocks, off the async runtime
    /// that keeps its lease and network (0: one per core).
    #[arg(long, default_value_t = 0)]
    exec_threads: usize,
    /// While a backlog waits (catching up), applied blocks are written to disk in one
    /// commit per this many; at the chain's head every block is written when applied. A
    /// crash loses at most these from disk: they are applied again after the restart.
    #[arg(long, default_value_t = phalanx_cluster::server::DEFAULT_PERSIST_BLOCKS,
          value_parser = clap::value_parser!(u64).range(1..))]
    persist_blocks: u64,
    /// Sync each commit to disk on a thread of its own while the server goes on with the
    /// next block (a crash also loses the blocks whose sync had not returned, a few
    /// milliseconds' worth); `false` waits for every commit's fsync before going on.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    background_sync: bool,
    /// Keep the transactions of the shards this server runs, indexed by hash, for the node's
    /// history reads (`--rpc`: blocks, receipts, transactions by hash); `false` saves their
    /// writes, and this server then gives no shard's history to the node.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    keep_transactions: bool,
    /// Serve JSON-RPC on this address (e.g. `127.0.0.1:8545`): state from this server's
    /// replica (`eth_getBalance`, `eth_getTransactionCount`, `eth_getCode`,
    /// `eth_getStorageAt`, `eth_getProof`, `eth_call`, `eth_estimateGas`, `eth_blockNumber`,
    /// `eth_chainId`) and history put together from the node's servers
    /// (`eth_getBlockByNumber`, `eth_getBlockByHash`, `eth_getBlockReceipts`,
    /// `eth_getTransactionReceipt`, `eth_getTransactionByHash`). Any server of a node answers
    /// for any account, block and transaction. Not served by default.
    #[arg(long, value_name = "ADDR", conflicts_with = "feed")]
    rpc: Option<std::net::SocketAddr>,
    /// Keep the state trie of only the last N finalized heights, dropping older trie nodes
    /// every N heights (bounded disk, and commits that do not slow down as history grows);
    /// `eth_getProof` at an older height is then an error. 0 keeps every height (an archive).
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_states: u64,
    /// Keep the receipts of only the last N finalized heights (the shards this server runs
    /// write theirs with each block), dropping older ones as the head moves; 0 keeps every
    /// height's.
    #[arg(long, value_name = "N", default_value_t = 0)]
    keep_receipts: u64,
    /// Print this server's identity key (made if absent) and exit.
    #[arg(long)]
    print_identity: bool,
    /// Run the block feed instead of a server.
    #[arg(long)]
    feed: bool,
    /// Feed: transfers per shard per block.
    #[arg(long, default_value_t = 20)]
    txs_per_shard: usize,
    /// Feed: time between blocks (ms).
    #[arg(long, default_value_t = 2000)]
    slot_ms: u64,
    /// Feed: blocks to publish, then keep answering (default: until interrupted).
    #[arg(long)]
    blocks: Option<u64>,
    /// Feed: wait before the first block (ms), while peers connect.
    #[arg(long, default_value_t = 2000)]
    warmup_ms: u64,
    /// Fault injection for tests: publish wrong effects.
    #[arg(long, hide = true)]
    corrupt: bool,
}

fn parse_peer(text: &str) -> anyhow::Result<Peer> {
    text.parse::<Peer>()
        .with_context(|| format!("--peer {text}"))
}

async fn interrupted(tx: tokio::sync::watch::Sender<bool>) {
    if tokio::signal::ctrl_c().await.is_ok() {
        let _ = tx.send(true);
    } else {
        std::future::pending::<()>().await;
    }
}

pub(crate) fn run(args: &NodeArgs) -> anyhow::Result<()> {
    let secret = node::identity(&args.data_dir)?;
    if args.print_identity {
        println!("{}", hex::encode(p2p::public_key(&secret)?.0));
        return Ok(());
    }
    let genesis = match &args.genesis {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the genesis file {}", path.display()))?;
            let genesis: phalanx_spec::Genesis = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a genesis file", path.display()))?;
            Some(genesis)
        }
        None => None,
    };
    let total_shards = match (&genesis, args.total_shards) {
        (Some(g), given) => {
            let chain = u16::try_from(g.spec.shards_per_block)
                .context("the genesis's shards_per_block is too large")?;
            if let Some(given) = given {
                anyhow::ensure!(
                    given == chain,
                    "--total-shards {given} differs from the genesis's {chain} shards per block"
                );
            }
            chain
        }
        (None, given) => given.unwrap_or(8),
    };
    anyhow::ensure!(
        total_shards >= 1 && usize::from(total_shards) <= phalanx_types::limits::MAX_SHARDS,
        "--total-shards must be within 1..={}",
        phalanx_types::limits::MAX_SHARDS
    );
    anyhow::ensure!(args.senders >= 1, "--senders must be at least 1");
    anyhow::ensure!(args.lease_ms >= 100, "--lease-ms must be at least 100");
    let peers = args
        .peers
        .iter()
        .map(|p| parse_peer(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (tx, shutdown) = tokio::sync::watch::channel(false);
    if args.feed {
        anyhow::ensure!(args.slot_ms >= 50, "--slot-ms must be at least 50");
        let config = FeedConfig {
            shards: total_shards,
            senders: args.senders,
            txs_per_shard: args.txs_per_shard,
            seed: args.seed,
            slot: Duration::from_millis(args.slot_ms),
            blocks: args.blocks,
            warmup: Duration::from_millis(args.warmup_ms),
            log: Some(args.data_dir.join("blocks.log")),
        };
        return rt.block_on(async {
            tokio::spawn(interrupted(tx));
            let net = Libp2pNetwork::start(p2p::Config {
                secret,
                listen: args.listen.clone(),
                peers,
                closed: false,
            })
            .await?;
            eprintln!(
                "node --feed: {} shards, {} transfers per shard every {} ms, listening on {}",
                total_shards,
                args.txs_per_shard,
                args.slot_ms,
                net.listening().join(", ")
            );
            feed::run(config, net, shutdown).await?;
            Ok(())
        });
    }
    let range = match &args.shards {
        Some(text) => {
            ShardRange::parse(text, total_shards).with_context(|| format!("--shards {text}"))?
        }
        None => ShardRange::parse(&format!("0-{}", total_shards - 1), total_shards)?,
    };
    let store = if args.etcd.is_empty() {
        if range.indices(total_shards).len() < usize::from(total_shards) {
            tracing::warn!(
                "the embedded store serves a node of one server: this server will take over the \
                 shards outside {range}; give --etcd for a node of several servers"
            );
        }
        StoreChoice::Embedded
    } else {
        StoreChoice::Etcd(EtcdConfig::new(args.etcd.clone()))
    };
    let chain = match (args.follow.is_empty(), genesis) {
        (false, Some(genesis)) => {
            let blocks = peers.first().map(|p| p.key).context(
                "--follow needs a --peer: the serving node's gossip identity (its shards come \
                 from there)",
            )?;
            Chain::Follow {
                follow: Box::new(FollowConfig {
                    nodes: args.follow.clone(),
                    genesis,
                    poll: Duration::from_millis(200),
                }),
                blocks,
            }
        }
        (true, Some(genesis)) => {
            let blocks = peers.first().map(|p| p.key).context(
                "--genesis without --follow follows the chain from gossip and needs a --peer: \
                 a node serving the chain's blocks (a devnet's --p2p-listen identity)",
            )?;
            Chain::Gossip {
                genesis: std::sync::Arc::new(genesis),
                blocks,
            }
        }
        _ => Chain::Feed {
            load: LoadSettings {
                senders: args.senders,
                seed: args.seed,
            },
            publisher: peers.first().map(|p| p.key).context(
                "following a block feed needs a --peer: the feed's identity first (`phalanx \
                 node --feed --data-dir DIR --print-identity` prints it); headers from anyone \
                 else are dropped",
            )?,
        },
    };
    let mut server = ServerConfig::new(&args.node_id, range, total_shards);
    server.lease_ttl = Duration::from_millis(args.lease_ms);
    server.accept_timeout = Duration::from_millis(args.accept_timeout_ms.max(1));
    server.corrupt = args.corrupt;
    server.persist_blocks = args.persist_blocks;
    server.background_sync = args.background_sync;
    server.keep_transactions = args.keep_transactions;
    server.threads = Some(match args.exec_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    });
    let config = NodeConfig {
        server,
        data_dir: args.data_dir.clone(),
        store,
        listen: args.listen.clone(),
        peers,
        chain,
        rpc: args.rpc,
        keep_states: args.keep_states,
        keep_receipts: args.keep_receipts,
    };
    eprintln!(
        "node: server of {} owning shards {range} of {}, data in {}",
        args.node_id,
        total_shards,
        args.data_dir.display()
    );
    rt.block_on(async {
        tokio::spawn(interrupted(tx));
        node::run(config, shutdown).await
    })?;
    Ok(())
}
