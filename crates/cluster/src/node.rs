//! One server of a node as a process (`phalanx node`): its identity key, its state replica on
//! disk, its coordination store (embedded or etcd), the chain's libp2p network, the chain it
//! executes ([`Chain`]: the consensus chain's checked, final headers from a follower, or a
//! block feed), and what an operator reads back: a roots log, Prometheus metrics and, with
//! an address to serve it on, JSON-RPC state and history reads ([`crate::rpc`]).
//!
//! Files in the data folder:
//!
//! - `node.key`: the ed25519 identity (hex seed), made on first start, mode 0600.
//! - `state.redb`: the state replica; a restarted server resumes from its finalized head.
//! - `roots.log`: one line `height block-hash state-root applied-unix-ms` per applied block,
//!   appended and synced before the block is made final, so it holds every height the state
//!   does, also after a crash, and two servers can be compared height by height. A block
//!   applied but not yet on disk when the server crashed (a backlog is written every
//!   `--persist-blocks`, and a commit is durable once the server's sync thread has synced
//!   it) is applied again after the restart and listed again, same root.
//! - `metrics.prom`: Prometheus text format, rehead each second (node_exporter's textfile
//!   collector reads it).
//!
//! A coordination store that stays unreachable longer than its retry budget stops the server
//! task; the process keeps its state and starts it again a second later, so an etcd outage
//! costs progress, never state.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use alloy_primitives::B256;
use phalanx_execution::store::StateStore;
use phalanx_net::PeerKey;
use phalanx_net::p2p::{self, Libp2pNetwork, Peer};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio_util::task::AbortOnDropHandle;

use crate::embedded::EmbeddedStore;
use crate::equivocation::Judge;
use crate::etcd::{EtcdConfig, EtcdStore};
use crate::follow::{FollowConfig, FollowError, chain_genesis};
use crate::load::Load;
use crate::server::{self, CheckedHeaders, HeaderSource, ServerConfig, ServerError, ServerStats};
use crate::store::{CoordinationStore, StoreError};
use crate::wire::{DECLARATION_TOPIC, SLASHING_TOPIC};

/// Which coordination store the node's servers share.
#[derive(Clone)]
pub enum StoreChoice {
    /// In-process: only for a node of one server (its servers share a process otherwise).
    Embedded,
    /// An etcd cluster.
    Etcd(EtcdConfig),
    /// A store the caller made: servers of one node run in one process (tests, a devnet).
    Given(Arc<dyn CoordinationStore>),
}

impl std::fmt::Debug for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Embedded => f.write_str("Embedded"),
            Self::Etcd(c) => f.debug_tuple("Etcd").field(c).finish(),
            Self::Given(_) => f.write_str("Given"),
        }
    }
}

/// Which chain a node's servers execute.
#[derive(Debug, Clone)]
pub enum Chain {
    /// The consensus chain served by the nodes at `follow.nodes`: headers checked and final
    /// ([`crate::follow`]), shards by gossip and by request from `blocks`.
    Follow {
        /// The follower's settings (serving node, genesis).
        follow: Box<FollowConfig>,
        /// The peer serving the chain's shards by request.
        blocks: PeerKey,
    },
    /// The consensus chain from gossip: blocks and attestations on their topics, checked and
    /// shown final by the server's own follower ([`crate::chain`]); missing blocks, shards and
    /// (after a restart) the head's header asked of `blocks`.
    Gossip {
        /// The chain's genesis.
        genesis: Arc<phalanx_spec::Genesis>,
        /// The peer serving the chain's blocks and shards by request.
        blocks: PeerKey,
    },
    /// The blocks of a `phalanx node --feed` process (a deterministic load, its publisher
    /// trusted): headers from the header topic, written by `publisher` only.
    Feed {
        /// The load whose genesis the chain starts from.
        load: LoadSettings,
        /// The feed's gossip identity.
        publisher: PeerKey,
    },
}

/// The load whose genesis the chain starts from (the feed publishes the same load).
#[derive(Debug, Clone, Copy)]
pub struct LoadSettings {
    /// Funded senders per shard.
    pub senders: usize,
    /// Seed.
    pub seed: u64,
}

/// Settings of one server process.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The server's protocol settings (node id, range, shard count, timeouts).
    pub server: ServerConfig,
    /// Data folder.
    pub data_dir: PathBuf,
    /// Coordination store.
    pub store: StoreChoice,
    /// Where to listen (multiaddr).
    pub listen: String,
    /// Peers to dial: the feed, the node's other servers, other nodes.
    pub peers: Vec<Peer>,
    /// The chain.
    pub chain: Chain,
    /// Where to serve JSON-RPC state and history reads ([`crate::rpc`]); `None`: not served.
    pub rpc: Option<std::net::SocketAddr>,
    /// Finalized states whose trie the replica keeps (0: every one, an archive;
    /// [`StateStore::keep_states`]).
    pub keep_states: u64,
    /// Finalized heights whose receipts the replica keeps (0: every one;
    /// [`StateStore::keep_receipt_heights`]).
    pub keep_receipts: u64,
}

/// Why a node could not run.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A file in the data folder.
    #[error("{path}: {reason}")]
    File {
        /// Which.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The state replica.
    #[error("state: {0}")]
    State(String),
    /// The network.
    #[error(transparent)]
    Net(#[from] phalanx_net::NetError),
    /// The JSON-RPC endpoint.
    #[error("json-rpc on {addr}: {reason}")]
    Rpc {
        /// Its address.
        addr: std::net::SocketAddr,
        /// Why.
        reason: String,
    },
    /// The coordination store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The server stopped for good.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// Following the chain failed for good.
    #[error(transparent)]
    Follow(#[from] FollowError),
}

fn file_error(path: &Path, e: impl std::fmt::Display) -> NodeError {
    NodeError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// The identity key in `dir/node.key`, made (mode 0600) if absent.
pub fn identity(dir: &Path) -> Result<[u8; 32], NodeError> {
    let path = dir.join("node.key");
    phalanx_net::p2p::identity_file(&path).map_err(|e| file_error(&path, e))
}

/// The genesis of `load` over `shards` shards: its block hash and allocation.
pub fn genesis(shards: u16, load: LoadSettings) -> (B256, phalanx_execution::changes::Changes) {
    let l = Load::new(shards, load.senders, load.seed);
    (l.genesis_header().hash(), l.genesis_alloc())
}

/// Runs one server until `shutdown` turns true.
pub async fn run(config: NodeConfig, shutdown: watch::Receiver<bool>) -> Result<(), NodeError> {
    let dir = &config.data_dir;
    let secret = identity(dir)?;
    let state_path = dir.join("state.redb");
    let state = StateStore::open(&state_path)
        .map_err(|e| file_error(&state_path, e))?
        .keep_states(config.keep_states)
        .keep_receipt_heights(config.keep_receipts);
    let (genesis_hash, alloc) = match &config.chain {
        Chain::Follow { follow, .. } => chain_genesis(&follow.genesis),
        Chain::Gossip { genesis, .. } => chain_genesis(genesis),
        Chain::Feed { load, .. } => genesis(config.server.shards, *load),
    };
    let chain_id = match &config.chain {
        Chain::Follow { follow, .. } => follow.genesis.spec.chain_id,
        Chain::Gossip { genesis, .. } => genesis.spec.chain_id,
        Chain::Feed { .. } => crate::load::CHAIN_ID,
    };
    match state.head().map_err(|e| NodeError::State(e.to_string()))? {
        None => {
            state
                .init_genesis(genesis_hash, &alloc)
                .map_err(|e| NodeError::State(e.to_string()))?;
        }
        Some(head) => {
            tracing::info!(height = head.number, block = %head.block, "resuming from disk");
        }
    }
    let state = Arc::new(state);
    let mut server_config = config.server.clone();
    let rpc = match config.rpc {
        Some(addr) => {
            let failed = |e: std::io::Error| NodeError::Rpc {
                addr,
                reason: e.to_string(),
            };
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(failed)?;
            let bound = listener.local_addr().map_err(failed)?;
            tracing::info!(addr = %bound, "json-rpc served: state from the replica, history from the node's servers");
            let (queries, inbox) = crate::lookup::channel();
            server_config.queries = Some(inbox);
            let reads = crate::rpc::Reads {
                state: state.clone(),
                chain_id,
                queries: Some(queries),
            };
            Some(AbortOnDropHandle::new(tokio::spawn(crate::rpc::serve(
                listener,
                reads,
                shutdown.clone(),
            ))))
        }
        None => None,
    };
    let store: Arc<dyn CoordinationStore> = match &config.store {
        StoreChoice::Embedded => Arc::new(EmbeddedStore::new()),
        StoreChoice::Etcd(c) => Arc::new(EtcdStore::connect(c.clone()).await?),
        StoreChoice::Given(s) => s.clone(),
    };
    let net_config = p2p::Config {
        secret,
        listen: config.listen.clone(),
        peers: config.peers.clone(),
        closed: false,
    };
    // Following the chain from gossip, the server also watches the declaration and slashing
    // topics; the same judgement decides what this peer relays there.
    let judge = match &config.chain {
        Chain::Gossip { genesis, .. } => Some(Arc::new(
            Judge::from_genesis(genesis).map_err(NodeError::State)?,
        )),
        _ => None,
    };
    let net = start_net(&net_config, judge.as_ref()).await?;
    let me = p2p::public_key(&secret)?;
    tracing::info!(
        key = %hex::encode(me.0),
        listening = %net.listening().join(","),
        node = %config.server.node,
        range = %config.server.range,
        "node server up"
    );
    let stats = Arc::new(ServerStats::default());
    let mut registry = Registry::default();
    let metrics = NodeMetrics::register(&mut registry);
    let mut reporter = Reporter {
        head: state
            .head()
            .map_err(|e| NodeError::State(e.to_string()))?
            .map_or(0, |h| h.number),
        metrics_path: dir.join("metrics.prom"),
        registry,
        metrics,
        state: state.clone(),
    };
    server_config.roots_log = Some(dir.join("roots.log"));
    let mut follower = match &config.chain {
        Chain::Follow { follow, blocks } => {
            let headers = CheckedHeaders::default();
            server_config.headers = HeaderSource::Checked {
                headers: headers.clone(),
                blocks: *blocks,
            };
            Some(tokio::spawn(crate::follow::run(
                (**follow).clone(),
                state.clone(),
                headers,
                shutdown.clone(),
            )))
        }
        Chain::Gossip { genesis, blocks } => {
            server_config.headers = HeaderSource::Chain {
                genesis: genesis.clone(),
                blocks: *blocks,
            };
            None
        }
        Chain::Feed { publisher, .. } => {
            server_config.headers = HeaderSource::Gossip {
                publisher: Some(*publisher),
            };
            None
        }
    };
    let mut task = tokio::spawn(serve(
        server_config,
        state,
        store,
        net,
        (net_config, judge),
        stats.clone(),
        shutdown,
    ));
    let mut every = tokio::time::interval(REPORT_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        tokio::select! {
            joined = &mut task => break joined
                .map_err(|e| NodeError::State(format!("server task: {e}")))
                .and_then(|r| r),
            joined = async {
                match follower.as_mut() {
                    Some(f) => f.await,
                    None => std::future::pending().await,
                }
            } => {
                follower = None;
                match joined {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => { task.abort(); break Err(e.into()); }
                    Err(e) => { task.abort(); break Err(NodeError::State(format!("follower task: {e}"))); }
                }
            }
            _ = every.tick() => {
                if let Err(e) = reporter.report(&stats) {
                    tracing::warn!(error = %e, "cannot write the roots log or metrics");
                }
            }
        }
    };
    if let Err(e) = reporter.report(&stats) {
        tracing::warn!(error = %e, "cannot write the roots log or metrics");
    }
    // The endpoint stops with the server, whichever way `run` returns (its handle aborts the
    // task when dropped).
    drop(rpc);
    result
}

/// How often the roots log and metrics are head.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Runs the server; after a store outage that stopped it, starts it again a second later
/// with a fresh network on the same key and address.
async fn serve(
    config: ServerConfig,
    state: Arc<StateStore>,
    store: Arc<dyn CoordinationStore>,
    net: Libp2pNetwork,
    (net_config, judge): (p2p::Config, Option<Arc<Judge>>),
    stats: Arc<ServerStats>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), NodeError> {
    let mut net = net;
    loop {
        let result = server::run(
            config.clone(),
            state.clone(),
            store.clone(),
            net,
            stats.clone(),
            shutdown.clone(),
        )
        .await;
        match result {
            Err(ServerError::Store(e)) if !*shutdown.borrow() => {
                tracing::error!(error = %e, "coordination store unavailable; the server starts again in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                net = start_net(&net_config, judge.as_ref()).await?;
            }
            other => return other.map_err(NodeError::from),
        }
    }
}

/// Starts the server's network; with a `judge`, declarations and slashing evidence are relayed
/// only when they check out ([`crate::equivocation`], rule 1).
async fn start_net(
    config: &p2p::Config,
    judge: Option<&Arc<Judge>>,
) -> Result<Libp2pNetwork, NodeError> {
    let net = Libp2pNetwork::start(config.clone()).await?;
    if let Some(judge) = judge {
        for topic in [DECLARATION_TOPIC, SLASHING_TOPIC] {
            let judge = judge.clone();
            net.set_validator(topic, Arc::new(move |bytes: &[u8]| judge.verdict(bytes)))?;
        }
    }
    Ok(net)
}

/// A node server's Prometheus metrics (`phalanx_node_*`).
#[derive(Debug, Default)]
struct NodeMetrics {
    head: Gauge,
    persisted: Gauge,
    synced: Gauge,
    commits: Counter,
    applied: Counter,
    executed: Counter,
    takeovers: Counter,
    alarms: Counter,
    accepts_won: Counter,
    lone_replaced: Counter,
    invalid: Counter,
    foreign: Counter,
    evidence: Counter,
    header_bytes: Counter,
    effect_bytes: Counter,
    shard_bytes: Family<ShardLabel, Counter>,
    trie_nodes: Gauge,
    receipt_records: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ShardLabel {
    shard: String,
    via: &'static str,
}

impl NodeMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("phalanx_node");
        r.register("head", "Height of the last applied block", m.head.clone());
        r.register(
            "persisted",
            "Height of the last block made final on disk",
            m.persisted.clone(),
        );
        r.register(
            "synced",
            "Height of the last block made durable (synced to disk; a crash keeps it)",
            m.synced.clone(),
        );
        r.register(
            "trie_nodes",
            "Trie nodes in the replica's database (bounded by --keep-states; an archive's grow)",
            m.trie_nodes.clone(),
        );
        r.register(
            "receipt_records",
            "Receipt records in the replica's database, one per height and shard run here \
             (bounded by --keep-receipts)",
            m.receipt_records.clone(),
        );
        r.register(
            "state_commits",
            "State commits (each makes one or more applied blocks final)",
            m.commits.clone(),
        );
        r.register("applied_blocks", "Blocks applied", m.applied.clone());
        r.register(
            "executed_shards",
            "Shards executed here",
            m.executed.clone(),
        );
        r.register(
            "takeovers",
            "Shards taken over because none of their owners was live",
            m.takeovers.clone(),
        );
        r.register(
            "alarms",
            "Outcomes seen that differ from the accepted one",
            m.alarms.clone(),
        );
        r.register(
            "accepts_won",
            "Accepted-key writes this server won",
            m.accepts_won.clone(),
        );
        r.register(
            "lone_results_replaced",
            "Results another server accepted alone that this server's run and a second server's contradicted, replaced in the store",
            m.lone_replaced.clone(),
        );
        r.register(
            "invalid_messages",
            "Messages that did not decode or check out",
            m.invalid.clone(),
        );
        r.register(
            "foreign_messages",
            "Outcomes and accepted notes from peers that are not live servers of this node, dropped",
            m.foreign.clone(),
        );
        r.register(
            "slashing_evidence",
            "Slashing evidence taken as new: double declarations found here, or evidence heard",
            m.evidence.clone(),
        );
        r.register(
            "header_bytes_received",
            "Bytes received on the header topic",
            m.header_bytes.clone(),
        );
        r.register(
            "effect_bytes_received",
            "Bytes of shard effects received",
            m.effect_bytes.clone(),
        );
        r.register(
            "shard_bytes_received",
            "Bytes of shards received, by shard index and how (gossip on a subscribed topic, or an answer to a request)",
            m.shard_bytes.clone(),
        );
        m
    }
}

/// Counters are monotonic: move one up to `to`.
fn raise(c: &Counter, to: u64) {
    let now = c.get();
    if to > now {
        c.inc_by(to - now);
    }
}

struct Reporter {
    metrics_path: PathBuf,
    head: u64,
    registry: Registry,
    metrics: NodeMetrics,
    state: Arc<StateStore>,
}

impl Reporter {
    fn report(&mut self, stats: &ServerStats) -> std::io::Result<()> {
        self.head = self.head.max(stats.head());
        let m = &self.metrics;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        m.head.set(i64::try_from(self.head).unwrap_or(i64::MAX));
        m.persisted
            .set(i64::try_from(get(&stats.persisted)).unwrap_or(i64::MAX));
        m.synced
            .set(i64::try_from(get(&stats.synced)).unwrap_or(i64::MAX));
        match self.state.trie_nodes() {
            Ok(n) => {
                m.trie_nodes.set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            Err(e) => tracing::debug!(error = %e, "cannot count the replica's trie nodes"),
        };
        match self.state.receipt_records() {
            Ok(n) => {
                m.receipt_records.set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            Err(e) => tracing::debug!(error = %e, "cannot count the replica's receipt records"),
        };
        raise(&m.commits, get(&stats.commits));
        raise(&m.applied, get(&stats.applied));
        raise(&m.executed, get(&stats.executed));
        raise(&m.takeovers, get(&stats.takeovers));
        raise(&m.alarms, get(&stats.alarms));
        raise(&m.accepts_won, get(&stats.accepts_won));
        raise(&m.lone_replaced, get(&stats.lone_replaced));
        raise(&m.invalid, get(&stats.invalid));
        raise(&m.foreign, get(&stats.foreign));
        raise(&m.evidence, get(&stats.evidence));
        raise(&m.header_bytes, get(&stats.header_bytes));
        raise(&m.effect_bytes, get(&stats.effect_bytes));
        let (gossip, fetched) = stats.shard_bytes_by_index();
        for (via, counts) in [("gossip", gossip), ("request", fetched)] {
            for (shard, bytes) in counts {
                let label = ShardLabel {
                    shard: shard.to_string(),
                    via,
                };
                raise(&m.shard_bytes.get_or_create(&label), bytes);
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .map_err(std::io::Error::other)?;
        let tmp = self.metrics_path.with_extension("prom.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.metrics_path)
    }
}
