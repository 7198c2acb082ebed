//! `phalanx devnet`: the whole system in one process, with embedded defaults and no external
//! service (issue #8, growing as roles land).
//!
//! What runs today:
//!
//! 1. **Genesis.** A deterministic genesis from a seed ([`phalanx_spec::devnet`]): validators,
//!    producers, funded development accounts (printed with their keys, as anvil does) and
//!    accounts funded for the built-in load.
//! 2. **Consensus.** The validators and producers run live ([`phalanx_sim::chain::LiveChain`]):
//!    declarations, blocks, attestations, LMD-GHOST and FFG finality, slashing protection, on a
//!    chain thread driven by the wall clock over in-process links.
//! 3. **Producers' shards** come from the devnet's pool ([`pool`]), packed so that no two
//!    shards write one account.
//! 4. **Execution.** Every finalized block becomes an [`ExecHeader`] ([`exec`]) fed to a
//!    clustered full node of `servers` servers ([`phalanx_cluster::server`]) over an
//!    in-process network and the embedded coordination store: each shard run by its owners,
//!    accepted once two agree, applied by every server.
//! 5. **JSON-RPC** ([`rpc`]) on `rpc` (default 127.0.0.1:8545), reading the executed head.
//! 6. **Load** ([`load`]): `load` transfers a second, when asked.
//! 7. **Beside them** (`docs/devnet.md`): a distributed validator cluster (`dv`) on the
//!    validator API (`api`), bonded executors signing claims and a light client following
//!    them (`claims`), a dashboard (`web`), and with `--p2p-listen` the chain's gossip
//!    network.
//!
//! Data ([`store`]): the genesis, the block log and the validators' slashing protection under
//! `data_dir/chain/`, each server's state replica and roots log under `data_dir/servers/`. A
//! devnet started on a folder that holds a chain resumes it: the consensus views are rebuilt
//! from the block log and execution goes on after the highest block any server applied
//! (`--fresh` starts over).

mod api;
mod claims;
mod dv;
pub mod exec;
mod filters;
mod history;
pub mod load;
pub mod pool;
pub mod rpc;
pub mod store;
mod subscribe;
mod web;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::{B256, Bytes, keccak256};
use phalanx_cluster::CoordinationStore;
use phalanx_cluster::embedded::EmbeddedStore;
use phalanx_cluster::feed::Feed;
use phalanx_cluster::ownership::layout;
use phalanx_cluster::server::{self, ServerConfig, ServerStats};
use phalanx_cluster::wire::{ChainBlock, ExecHeader};
use phalanx_consensus::Registry;
use phalanx_execution::store::{Head, StateStore};
use phalanx_net::memory::MemoryHub;
use phalanx_net::{Network, PeerKey};
use phalanx_sim::chain::{LiveChain, LiveStatus};
use phalanx_spec::devnet::{DevAccount, DevnetParams};
use phalanx_spec::{ChainSpec, Genesis};
use phalanx_types::consensus::{Shard, SignedBlockHeader};
use tokio::sync::{mpsc, watch};

/// Settings of a devnet.
#[derive(Debug, Clone)]
pub struct DevnetConfig {
    /// Where the servers keep their state.
    pub data_dir: PathBuf,
    /// Validators.
    pub validators: usize,
    /// Producers.
    pub producers: usize,
    /// Servers of the clustered full node.
    pub servers: u16,
    /// Owners per shard.
    pub replication: u16,
    /// Development accounts printed and funded.
    pub accounts: u32,
    /// Accounts funded for the built-in load.
    pub load_accounts: u32,
    /// Built-in load, transfers per second (0: none).
    pub load: u64,
    /// JSON-RPC address.
    pub rpc: SocketAddr,
    /// Seed of the genesis and every key.
    pub seed: String,
    /// Slot length, seconds (the devnet preset's 2 unless set).
    pub slot_seconds: Option<u64>,
    /// Start a new chain even if `data_dir` holds one.
    pub fresh: bool,
    /// Validators held by the distributed validator cluster (the last ones; 0: none).
    pub dv_validators: usize,
    /// Members of the cluster.
    pub dv_members: usize,
    /// Partials needed (default ⌈2n/3⌉).
    pub dv_threshold: Option<usize>,
    /// Run no members in process: write their folders for `phalanx dv run` processes
    /// listening from this port on.
    pub dv_external_port: Option<u16>,
    /// Bonded executors (0: none, and no light client).
    pub executors: u32,
    /// The last this many executors run as `phalanx executor` processes, not here: their
    /// keystores are written to `data_dir/executors/NNNN.json` (password in
    /// `data_dir/executors/password.txt`) and their claims are taken over HTTP.
    pub external_executors: u32,
    /// Where a light client (`phalanx_light::run`, following this devnet's JSON-RPC like any
    /// untrusted node: headers, finality, claims, proofs) serves verified JSON-RPC; `None`:
    /// not started (the library's default; `phalanx devnet` starts it on 127.0.0.1:8546).
    pub light_rpc: Option<SocketAddr>,
    /// Fault injection: in-process executor `.0` signs a wrong root for the block at height
    /// `.1` (the devnet catches it, proves it wrong on chain, and the chain slashes it).
    pub lying_executor: Option<(u32, u64)>,
    /// Where the devnet joins the chain's gossip network (a libp2p multiaddr, e.g.
    /// `/ip4/127.0.0.1/tcp/9000`), taking executors' claims on its claims topic and
    /// publishing every consensus block it imports, the aggregates it sees and every executed
    /// block's shards, and answering sync requests for them; `None`: no gossip, claims only
    /// by HTTP. Its identity key is `data_dir/p2p.key`.
    pub p2p_listen: Option<String>,
}

impl DevnetConfig {
    /// The defaults of `phalanx devnet` with data in `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            validators: 8,
            producers: 2,
            servers: 4,
            replication: 3,
            accounts: 10,
            load_accounts: 16,
            load: 0,
            rpc: SocketAddr::from(([127, 0, 0, 1], 8545)),
            seed: "phalanx-devnet".into(),
            slot_seconds: None,
            fresh: false,
            dv_validators: 4,
            dv_members: 4,
            dv_threshold: None,
            dv_external_port: None,
            executors: 3,
            external_executors: 0,
            light_rpc: None,
            lying_executor: None,
            p2p_listen: None,
        }
    }
}

/// Why a devnet could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// The light client could not start (e.g. its address is taken).
    #[error("devnet light client: {0}")]
    Light(String),
    /// Bad settings.
    #[error("devnet: {0}")]
    Config(String),
    /// The genesis could not be built.
    #[error("devnet genesis: {0}")]
    Genesis(String),
    /// A file or folder could not be used.
    #[error("devnet data {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A state replica failed.
    #[error("devnet state: {0}")]
    State(String),
    /// The JSON-RPC address could not be bound.
    #[error("JSON-RPC on {addr}: {source} (is another node or devnet using it? pass --rpc)")]
    Rpc {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// A finalized block as execution and JSON-RPC know it.
#[derive(Debug, Clone)]
pub(crate) struct BlockInfo {
    pub(crate) header: ExecHeader,
    /// The finalized consensus header it derives from (`None` for the genesis).
    pub(crate) signed: Option<SignedBlockHeader>,
    /// That block's body (claims, fraud proofs, attestations, slashings; `None` for the
    /// genesis), served to light clients, who check it against the header's body root.
    pub(crate) body: Option<phalanx_types::BlockBody>,
    /// Hashes of its transactions in block order (shard by shard).
    pub(crate) transactions: Vec<B256>,
    /// Each transaction's shard and encoding, in the same order.
    pub(crate) raw: Vec<(u16, Bytes)>,
    /// Transactions in blocks up to and including this one.
    pub(crate) cumulative_txs: u64,
}

/// Where a transaction went: height and index in the block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TxLocation {
    pub(crate) height: u64,
    pub(crate) index: usize,
}

/// What the devnet's tasks share.
pub(crate) struct Shared {
    pub(crate) chain_id: u64,
    pub(crate) pool: Arc<pool::Pool>,
    pub(crate) states: Vec<Arc<StateStore>>,
    pub(crate) stats: Vec<Arc<ServerStats>>,
    pub(crate) blocks: Mutex<BTreeMap<u64, BlockInfo>>,
    pub(crate) txs: Mutex<std::collections::HashMap<B256, TxLocation>>,
    pub(crate) chain: Mutex<Option<LiveStatus>>,
    /// The validator API's channels and constants.
    pub(crate) api: api::ApiShared,
    /// Signed duties the validator API accepted.
    pub(crate) api_accepted: std::sync::atomic::AtomicU64,
    /// The distributed validator cluster, when there is one.
    pub(crate) dv: Option<Arc<dv::DvShared>>,
    /// The light client's view of the executors' claims.
    pub(crate) light: Mutex<Option<claims::LightStatus>>,
    /// What light clients are served.
    pub(crate) light_feed: claims::Feed,
    /// Claims received by gossip.
    pub(crate) gossip: claims::GossipCounts,
    /// Installed JSON-RPC filters.
    pub(crate) filters: Mutex<filters::Filters>,
    /// The executor registry at the chain's head.
    pub(crate) executors: Mutex<Option<Arc<phalanx_consensus::executors::ExecutorRegistry>>>,
    /// Where executor operations go to the chain thread.
    pub(crate) chain_ops: Mutex<Option<std::sync::mpsc::Sender<claims::ChainOp>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("chain_id", &self.chain_id)
            .field("servers", &self.states.len())
            .finish_non_exhaustive()
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// The server with the highest applied block, and that block.
    fn best(&self) -> Option<(&Arc<StateStore>, Head)> {
        self.states
            .iter()
            .filter_map(|s| s.head().ok().flatten().map(|h| (s, h)))
            .max_by_key(|(_, h)| h.number)
    }

    pub(crate) fn executed(&self) -> Option<Head> {
        self.best().map(|(_, h)| h)
    }

    /// Indexes a block fed to execution (for JSON-RPC).
    pub(crate) fn record_block(
        &self,
        header: &ExecHeader,
        shards: &[Shard],
        block: Option<&phalanx_types::SignedBlock>,
    ) {
        let raw: Vec<(u16, Bytes)> = shards
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                s.transactions
                    .iter()
                    .map(move |t| (i as u16, Bytes::copy_from_slice(&t[..])))
            })
            .collect();
        let transactions: Vec<B256> = raw.iter().map(|(_, t)| keccak256(t)).collect();
        {
            let mut txs = lock(&self.txs);
            for (index, hash) in transactions.iter().enumerate() {
                txs.insert(
                    *hash,
                    TxLocation {
                        height: header.number,
                        index,
                    },
                );
            }
        }
        let mut blocks = self.blocks();
        let before = header
            .number
            .checked_sub(1)
            .and_then(|n| blocks.get(&n))
            .map_or(0, |b| b.cumulative_txs);
        blocks.insert(
            header.number,
            BlockInfo {
                header: header.clone(),
                signed: block.map(|b| b.header.clone()),
                body: block.map(|b| b.body.clone()),
                cumulative_txs: before + transactions.len() as u64,
                transactions,
                raw,
            },
        );
    }

    /// The status now.
    pub(crate) fn status(&self) -> Status {
        let executed = self.executed().map_or(0, |h| h.number);
        let txs_executed = self.blocks().get(&executed).map_or(0, |b| b.cumulative_txs);
        Status {
            chain: lock(&self.chain).clone(),
            executed,
            txs_executed,
            mempool: lock(&self.pool.mempool).len(),
            alarms: self
                .stats
                .iter()
                .map(|s| s.alarms.load(Ordering::Relaxed))
                .sum(),
            dv_validators: self.dv.as_ref().map_or(0, |d| d.validators.len()),
            light: lock(&self.light).as_ref().map(|l| (l.head, l.agreement)),
        }
    }

    /// The header of the executed head.
    pub(crate) fn head_header(&self) -> Option<ExecHeader> {
        let head = self.executed()?;
        self.blocks().get(&head.number).map(|b| b.header.clone())
    }

    pub(crate) fn blocks(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, BlockInfo>> {
        lock(&self.blocks)
    }

    /// The state root after block `hash`, from any server's replica (kept on disk).
    pub(crate) fn root_of(&self, hash: B256) -> Option<B256> {
        self.states
            .iter()
            .find_map(|s| s.state_root(hash).ok().flatten())
    }

    /// Checks and pools a raw transaction; its hash, or why it was refused.
    pub(crate) fn submit(&self, raw: Bytes) -> Result<B256, String> {
        let tx = phalanx_types::transaction::decode(&raw)
            .map_err(|e| format!("invalid transaction: {e}"))?;
        let sender = alloy_consensus::transaction::SignerRecoverable::recover_signer(&tx)
            .map_err(|_| "invalid transaction: bad signature".to_string())?;
        let executed = self.best().map_or(0, |(s, _)| pool::state_nonce(s, sender));
        let nonce = alloy_consensus::Transaction::nonce(&tx);
        if nonce < executed {
            return Err(format!(
                "nonce too low: {sender} is at nonce {executed}, got {nonce}"
            ));
        }
        self.pool.insert(raw).map_err(|e| e.to_string())
    }
}

/// What the devnet shows on its status line.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// The chain as validator 0 sees it (none before the first slot).
    pub chain: Option<LiveStatus>,
    /// Height of the executed head (finalized blocks applied by the clustered node).
    pub executed: u64,
    /// Transactions in executed blocks so far.
    pub txs_executed: u64,
    /// Transactions waiting in the pool.
    pub mempool: usize,
    /// Alarms raised by the node's servers (differing shard results).
    pub alarms: u64,
    /// Validators held by the distributed validator cluster.
    pub dv_validators: usize,
    /// The light client's head and the claiming bond's agreement with it (none without
    /// executors).
    pub light: Option<(u64, f64)>,
}

impl Status {
    /// One line: slot, head, justified and finalized epochs, executed height, tx/s (given),
    /// pool size, alarms, the distributed validator's duties signed (when there is one), the
    /// light client's head, and the executors slashed on chain (when any is).
    pub fn line(&self, tx_per_s: f64) -> String {
        let chain = self.chain.as_ref().map_or_else(
            || "waiting for slot 1".to_string(),
            |c| {
                format!(
                    "slot {:>5} | head slot {:>5} | justified epoch {:>4} | finalized epoch {:>4}",
                    c.slot, c.head.1, c.justified.epoch.0, c.finalized.epoch.0
                )
            },
        );
        let dv = match &self.chain {
            Some(c) if self.dv_validators > 0 => {
                format!(" | DV duties signed {}", c.external_signed)
            }
            _ => String::new(),
        };
        let light = self.light.map_or(String::new(), |(head, agreement)| {
            format!(
                " | light head {head} (claims agree {:.0}%)",
                agreement * 100.0
            )
        });
        let slashed = match &self.chain {
            Some(c) if !c.executors_slashed.is_empty() => {
                format!(" | executors slashed {:?}", c.executors_slashed)
            }
            _ => String::new(),
        };
        format!(
            "{chain} | executed block {:>5} | {:>7.1} tx/s | pool {:>5} | alarms {}{dv}{light}{slashed}",
            self.executed, tx_per_s, self.mempool, self.alarms
        )
    }
}

/// A running devnet.
pub struct Devnet {
    genesis: Genesis,
    accounts: Vec<DevAccount>,
    rpc_addr: SocketAddr,
    light_rpc_addr: Option<SocketAddr>,
    slot: Duration,
    shared: Arc<Shared>,
    stop_chain: Arc<AtomicBool>,
    chain_thread: Option<std::thread::JoinHandle<()>>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Its peer on the gossip network: `HEXKEY@MULTIADDR`.
    p2p_peer: Option<String>,
}

impl std::fmt::Debug for Devnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Devnet")
            .field("rpc", &self.rpc_addr)
            .finish_non_exhaustive()
    }
}

impl Devnet {
    /// Builds the genesis, opens the servers' state, binds JSON-RPC and starts every task.
    pub async fn start(config: DevnetConfig) -> Result<Self, DevnetError> {
        if config.validators == 0 || config.producers == 0 || config.servers == 0 {
            return Err(DevnetError::Config(
                "need at least one validator, one producer and one server".into(),
            ));
        }
        let mut spec =
            ChainSpec::preset("devnet").map_err(|e| DevnetError::Genesis(e.to_string()))?;
        if let Some(s) = config.slot_seconds {
            if s == 0 {
                return Err(DevnetError::Config(
                    "--slot-seconds must be at least 1".into(),
                ));
            }
            spec.slot_seconds = s;
        }
        let shards = u16::try_from(spec.shards_per_block)
            .map_err(|_| DevnetError::Config("too many shards".into()))?;
        let mut params = DevnetParams::new(config.seed.clone(), spec.clone());
        params.accounts = config.accounts + config.load_accounts;
        params.executors = config.executors;
        let unix_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        params.genesis_time = unix_now.as_secs();

        // The data folder: resume the chain it holds unless told to start over.
        let chain_dir = config.data_dir.join("chain");
        let servers_dir = config.data_dir.join("servers");
        let dv_dir = config.data_dir.join("dv");
        let genesis_path = chain_dir.join("genesis.json");
        let io = |path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| DevnetError::Io { path, source }
        };
        if config.fresh || !genesis_path.exists() {
            for dir in [&chain_dir, &servers_dir, &dv_dir] {
                if dir.exists() {
                    std::fs::remove_dir_all(dir).map_err(io(dir))?;
                }
            }
        }
        let stored: Option<Genesis> = if genesis_path.exists() {
            let text = std::fs::read_to_string(&genesis_path).map_err(io(&genesis_path))?;
            let g: Genesis = serde_json::from_str(&text).map_err(|e| {
                DevnetError::Config(format!(
                    "{}: {e}; pass --fresh to start a new chain",
                    genesis_path.display()
                ))
            })?;
            params.genesis_time = g.genesis_time;
            Some(g)
        } else {
            None
        };
        for dir in [&chain_dir, &servers_dir] {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }

        let pool = Arc::new(pool::Pool::new(spec.chain_id, 200_000));
        // The chain is built first (it makes the genesis); its producers read nonces from
        // server 0's replica, opened right after.
        let state0_path = servers_dir.join("s0").join("state.redb");
        std::fs::create_dir_all(servers_dir.join("s0")).map_err(|source| DevnetError::Io {
            path: servers_dir.join("s0"),
            source,
        })?;
        let state0 = Arc::new(
            StateStore::open(&state0_path).map_err(|e| DevnetError::State(e.to_string()))?,
        );
        let source = pool::PoolSource::new(
            pool.clone(),
            state0.clone(),
            usize::try_from(spec.max_transactions_per_shard).unwrap_or(usize::MAX),
            spec.shard_gas_limit,
        );
        let (mut chain, genesis, keys) = LiveChain::new(
            config.validators,
            config.producers,
            params,
            Box::new(source),
            Some(&chain_dir.join("protection")),
        )
        .map_err(|e| DevnetError::Genesis(e.to_string()))?;
        match &stored {
            Some(g) if *g != genesis => {
                return Err(DevnetError::Config(format!(
                    "{} holds a chain made with other settings (seed, validators, producers, \
                     accounts or slot length); pass --fresh to start a new one there, or \
                     another --data-dir",
                    config.data_dir.display()
                )));
            }
            Some(_) => {}
            None => {
                let json = serde_json::to_vec_pretty(&genesis)
                    .map_err(|e| DevnetError::Genesis(e.to_string()))?;
                store::write_atomic(&genesis_path, &json)?;
            }
        }
        // The producers' keystores: what `phalanx executor deposit --producer-keystore` signs
        // an executor deposit with (deposits are paid out of a producer's bond).
        let producers_dir = config.data_dir.join("producers");
        if !producers_dir.join("password.txt").exists() {
            claims::write_keys(&producers_dir, &config.seed, "producer", &keys.producers, 0)?;
        }
        // The distributed validator holds the last `dv_validators` validators' keys; the
        // chain's views still compute their duties, served on the validator API.
        let signing = chain.signing();
        let cluster = if config.dv_validators > 0 {
            if config.dv_validators >= config.validators {
                return Err(DevnetError::Config(format!(
                    "--dv-validators {} must leave validator 0 outside the cluster (at most {})",
                    config.dv_validators,
                    config.validators - 1
                )));
            }
            let first = config.validators - config.dv_validators;
            chain
                .set_external(first..config.validators)
                .map_err(|e| DevnetError::Config(e.to_string()))?;
            let dv_keys: Vec<_> = keys.validators[first..]
                .iter()
                .map(|(_, k)| k.clone())
                .collect();
            Some(dv::deal(
                &config,
                (first as u64..config.validators as u64).collect(),
                &dv_keys,
                &dv_dir,
                signing,
            )?)
        } else {
            None
        };
        let pubkeys: Vec<phalanx_crypto::PublicKeyBytes> = (0..config.validators)
            .filter_map(|v| chain.validator_pubkey(v))
            .collect();
        let (block_log, logged) = store::BlockLog::open(&chain_dir.join("blocks.ssz"))?;
        let since_genesis_ms = |g: u64| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            u64::try_from(now.as_millis())
                .unwrap_or(u64::MAX)
                .saturating_sub(g.saturating_mul(1000))
        };
        if !logged.is_empty() {
            tracing::info!(
                blocks = logged.len(),
                "devnet: resuming the chain from disk"
            );
            chain.resume(
                logged.into_iter().map(Arc::new).collect(),
                since_genesis_ms(genesis.genesis_time),
            );
        }
        // The validators' producer-reputation books, as the last run left them (they are
        // advisory: a missing or unreadable file starts them empty, with a warning).
        let books_path = chain_dir.join("reputation.json");
        match std::fs::read(&books_path) {
            Ok(bytes) => match serde_json::from_slice::<phalanx_sim::chain::Books>(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|b| chain.restore_books(b).map_err(|e| e.to_string()))
            {
                Ok(()) => tracing::info!("devnet: producer reputation books restored"),
                Err(e) => tracing::warn!(file = %books_path.display(), error = %e,
                    "devnet: reputation books unreadable; starting them empty"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(file = %books_path.display(), error = %e,
                "devnet: reputation books unreadable; starting them empty"),
        }
        let registry =
            Registry::from_genesis(&genesis).map_err(|e| DevnetError::Genesis(e.to_string()))?;
        let genesis_exec = exec::genesis_header(&genesis, chain.genesis_root());
        let alloc = exec::genesis_changes(&genesis);

        let mut states = vec![state0];
        for i in 1..config.servers {
            let dir = servers_dir.join(format!("s{i}"));
            std::fs::create_dir_all(&dir).map_err(|source| DevnetError::Io {
                path: dir.clone(),
                source,
            })?;
            states.push(Arc::new(
                StateStore::open(&dir.join("state.redb"))
                    .map_err(|e| DevnetError::State(e.to_string()))?,
            ));
        }
        for s in &states {
            if s.head()
                .map_err(|e| DevnetError::State(e.to_string()))?
                .is_none()
            {
                s.init_genesis(genesis_exec.hash(), &alloc)
                    .map_err(|e| DevnetError::State(e.to_string()))?;
            }
        }
        // Execution resumes after the highest block any server applied: the chain's blocks
        // up to it are derived again (deterministically) for the feed's history and JSON-RPC.
        let executed = states
            .iter()
            .filter_map(|s| s.head().ok().flatten())
            .map(|h| h.number)
            .max()
            .unwrap_or(0);
        let mut resumed: Vec<(
            ExecHeader,
            Vec<Shard>,
            B256,
            Arc<phalanx_types::SignedBlock>,
        )> = Vec::new();
        if executed > 0 {
            let mut parent = genesis_exec.clone();
            for f in chain
                .ancestry(chain.status().head.0)
                .into_iter()
                .take(executed as usize)
            {
                let header = exec::header(&f, &parent, &spec, genesis.genesis_time, &registry);
                let shards: Vec<Shard> = f.block.shards.iter().cloned().collect();
                parent = header.clone();
                resumed.push((header, shards, f.root, f.block.clone()));
            }
            let best = states
                .iter()
                .filter_map(|s| s.head().ok().flatten())
                .find(|h| h.number == executed);
            if resumed.len() as u64 != executed
                || best.map(|h| h.block) != resumed.last().map(|(h, _, _, _)| h.hash())
            {
                return Err(DevnetError::State(format!(
                    "the servers executed {executed} blocks that the chain in {} does not \
                     hold (a lost block log?); pass --fresh to start a new chain",
                    chain_dir.display()
                )));
            }
            tracing::info!(executed, "devnet: execution resumes");
        }

        let dev: Vec<DevAccount> = keys
            .accounts
            .iter()
            .filter(|a| a.label.starts_with("dev/"))
            .cloned()
            .collect();
        let (printed, load_accounts) = dev.split_at((config.accounts as usize).min(dev.len()));
        let (events, _) = tokio::sync::broadcast::channel(api::EVENT_BACKLOG);
        let (to_chain, from_api) = std::sync::mpsc::channel();
        let shared = Arc::new(Shared {
            chain_id: spec.chain_id,
            pool: pool.clone(),
            stats: (0..states.len())
                .map(|_| Arc::new(ServerStats::default()))
                .collect(),
            states,
            blocks: Mutex::new(BTreeMap::from([(
                0,
                BlockInfo {
                    header: genesis_exec.clone(),
                    signed: None,
                    body: None,
                    transactions: Vec::new(),
                    raw: Vec::new(),
                    cumulative_txs: 0,
                },
            )])),
            txs: Mutex::new(std::collections::HashMap::new()),
            chain: Mutex::new(None),
            api: api::ApiShared {
                events: events.clone(),
                to_chain: Mutex::new(to_chain),
                genesis: phalanx_validator::api::GenesisInfo {
                    genesis_time: genesis.genesis_time,
                    genesis_validators_root: signing.genesis_validators_root,
                    genesis_fork_version: signing.fork_version.into(),
                },
                spec: phalanx_validator::api::SpecInfo {
                    seconds_per_slot: spec.slot_seconds,
                    slots_per_epoch: spec.slots_per_epoch,
                    shards_per_block: spec.shards_per_block,
                    chain_id: spec.chain_id,
                },
                version: format!("phalanx/{}", env!("CARGO_PKG_VERSION")),
                validators: pubkeys.clone(),
                proposers: Mutex::new(BTreeMap::new()),
            },
            api_accepted: std::sync::atomic::AtomicU64::new(0),
            dv: cluster.as_ref().map(|c| c.shared.clone()),
            light: Mutex::new(None),
            light_feed: claims::Feed::default(),
            gossip: claims::GossipCounts::default(),
            filters: Mutex::new(filters::Filters::default()),
            executors: Mutex::new(None),
            chain_ops: Mutex::new(None),
        });

        let listener = tokio::net::TcpListener::bind(config.rpc)
            .await
            .map_err(|source| DevnetError::Rpc {
                addr: config.rpc,
                source,
            })?;
        let rpc_addr = listener.local_addr().map_err(|source| DevnetError::Rpc {
            addr: config.rpc,
            source,
        })?;

        let (stop, shutdown) = watch::channel(false);
        let mut tasks = Vec::new();

        // The clustered node.
        let hub = MemoryHub::new();
        let store: Arc<dyn CoordinationStore> = Arc::new(EmbeddedStore::new());
        let ranges = layout(config.servers, shards, config.replication);
        for (i, range) in ranges.iter().enumerate() {
            let mut server_config = ServerConfig::new("devnet", *range, shards);
            server_config.roots_log = Some(servers_dir.join(format!("s{i}")).join("roots.log"));
            // The devnet's endpoint serves history from the blocks it holds; nothing reads
            // the servers' own copies (a `phalanx node` does: `cluster::lookup`).
            server_config.keep_transactions = false;
            let mut key = [0u8; 32];
            key[..2].copy_from_slice(&(i as u16).to_be_bytes());
            key[31] = 0x5e;
            let net = hub.join(PeerKey(key));
            let state = shared.states[i].clone();
            let stats = shared.stats[i].clone();
            let store = store.clone();
            let shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = server::run(server_config, state, store, net, stats, shutdown).await
                {
                    tracing::error!(server = i, error = %e, "devnet: server stopped");
                }
            }));
        }

        // The feed: finalized blocks from the chain thread to the servers.
        let (blocks_tx, blocks_rx) = mpsc::unbounded_channel::<(ExecHeader, Vec<Shard>)>();
        let (claims_tx, claims_rx) = mpsc::unbounded_channel::<claims::Final>();
        let (ops_tx, ops_rx) = std::sync::mpsc::channel::<claims::ChainOp>();
        *lock(&shared.chain_ops) = Some(ops_tx.clone());
        if config.external_executors > 0 && config.external_executors >= config.executors {
            return Err(DevnetError::Config(format!(
                "--external-executors {} leaves no executor in process out of --executors {} \
                 (executor 0's replica serves proofs of execution)",
                config.external_executors, config.executors
            )));
        }
        if let Some((index, _)) = config.lying_executor
            && (index == 0 || index >= config.executors - config.external_executors)
        {
            return Err(DevnetError::Config(format!(
                "--lying-executor {index}: only an in-process executor other than 0 can lie \
                 (1..{}; executor 0's replica is the devnet's honest full node)",
                config.executors - config.external_executors
            )));
        }
        if config.executors > 0 {
            let registry = phalanx_consensus::executors::ExecutorRegistry::from_genesis(&genesis)
                .map_err(|e| DevnetError::Genesis(e.to_string()))?;
            let inside = (config.executors - config.external_executors) as usize;
            claims::write_external_keys(
                &config.data_dir.join("executors"),
                &config.seed,
                &keys.executors[inside..],
                inside,
            )?;
            tasks.push(
                claims::start(
                    keys.executors[..inside]
                        .iter()
                        .map(|(_, k)| k.clone())
                        .collect(),
                    registry,
                    signing,
                    (genesis_exec.clone(), alloc.clone()),
                    resumed
                        .iter()
                        .map(|(h, s, root, _)| (h.clone(), s.clone(), *root))
                        .collect(),
                    claims_rx,
                    ops_tx,
                    config.lying_executor,
                    shared.clone(),
                    shutdown.clone(),
                )
                .map_err(DevnetError::State)?,
            );
        }
        let mut feed = Feed::new(hub.join(PeerKey([0xfe; 32])));
        for (header, shards, _, block) in &resumed {
            shared.record_block(header, shards, Some(block));
            feed.remember(header.clone(), shards.clone());
        }
        let fed = resumed.last().map_or(
            (chain.genesis_root(), genesis_exec.clone()),
            |(h, _, root, _)| (*root, h.clone()),
        );
        // With a gossip network, the same blocks go to other nodes there (`phalanx node
        // --follow`): shards on their topics, and by request.
        // And every consensus block it imports, with the aggregates it sees, so they can follow
        // the chain from gossip alone (`phalanx node --genesis`).
        let (p2p_blocks, p2p_blocks_rx) = if config.p2p_listen.is_some() {
            // Its validators' declarations and the evidence it finds go there too.
            chain.publish();
            let (tx, rx) = mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let known_chain: Vec<ChainBlock> = if config.p2p_listen.is_some() {
            let ancestry = chain.ancestry(chain.status().head.0);
            let skip = ancestry
                .len()
                .saturating_sub(phalanx_cluster::feed::KEEP_BLOCKS);
            ancestry[skip..]
                .iter()
                .map(|f| chain_block(&f.block))
                .collect()
        } else {
            Vec::new()
        };
        tasks.push(tokio::spawn(feed_task(
            feed,
            blocks_rx,
            p2p_blocks.clone(),
            shutdown.clone(),
        )));

        // The chain thread; its validators judge producers by what execution made of their
        // blocks.
        chain.set_outcomes(Box::new(exec::Outcomes(shared.clone())));
        let stop_chain = Arc::new(AtomicBool::new(false));
        let chain_thread = {
            let stop_chain = stop_chain.clone();
            let shared = shared.clone();
            let job = ChainLoop {
                chain,
                log: block_log,
                fed,
                spec: spec.clone(),
                genesis_time: genesis.genesis_time,
                registry,
                shared,
                blocks: blocks_tx,
                claims: (config.executors > 0).then_some(claims_tx),
                ops: ops_rx,
                books: (books_path, None, 0),
                stop: stop_chain,
                from_api,
                events,
                pubkeys,
                genesis_ms: genesis.genesis_time.saturating_mul(1000),
                last_head: None,
                last_finalized: None,
                p2p: p2p_blocks,
                gossiped: std::collections::HashMap::new(),
            };
            std::thread::Builder::new()
                .name("devnet-chain".into())
                .spawn(move || job.run())
                .map_err(|source| DevnetError::Io {
                    path: PathBuf::from("devnet-chain thread"),
                    source,
                })?
        };

        // JSON-RPC.
        {
            let router = rpc::router(shared.clone());
            let mut shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                    while !*shutdown.borrow() {
                        if shutdown.changed().await.is_err() {
                            break;
                        }
                    }
                });
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, "devnet: JSON-RPC stopped");
                }
            }));
        }

        // A light client over HTTP, serving verified JSON-RPC.
        let checkpoint = *lock(&shared.light_feed.checkpoint);
        let light_rpc_addr = match (config.light_rpc, checkpoint) {
            (Some(listen), Some(checkpoint)) => {
                let running = phalanx_light::run::start(
                    phalanx_light::run::RunConfig {
                        nodes: vec![format!("http://{rpc_addr}")],
                        listen,
                        genesis: genesis.clone(),
                        checkpoint: Some(checkpoint),
                        client: phalanx_light::client::Config::default(),
                        poll_ms: 250,
                        p2p: None,
                    },
                    shutdown.clone(),
                )
                .await
                .map_err(|e| DevnetError::Light(e.to_string()))?;
                let addr = running.addr;
                tasks.push(tokio::spawn(async move {
                    match running.task.await {
                        Ok(Err(e)) => tracing::error!(error = %e, "devnet: light client stopped"),
                        Err(e) => tracing::error!(error = %e, "devnet: light client task failed"),
                        Ok(Ok(())) => {}
                    }
                }));
                Some(addr)
            }
            _ => None,
        };

        // The distributed validator's members, on the validator API just bound.
        if let Some(cluster) = cluster {
            tasks.extend(cluster.start(&format!("http://{rpc_addr}"), signing, &shutdown)?);
        }

        // The load.
        if config.load > 0 {
            tasks.push(tokio::spawn(load::run(
                load_accounts.iter().map(|a| a.private_key).collect(),
                spec.chain_id,
                config.load,
                pool,
                shared.states[0].clone(),
                shutdown.clone(),
            )));
        }
        // The gossip network: executors' claims.
        let mut p2p_peer = None;
        if let Some(listen) = &config.p2p_listen {
            let net = phalanx_net::p2p::Libp2pNetwork::join(
                &config.data_dir.join("p2p.key"),
                &phalanx_net::p2p::Join {
                    listen: listen.clone(),
                    peers: Vec::new(),
                },
            )
            .await
            .map_err(|e| DevnetError::Config(format!("--p2p-listen {listen}: {e}")))?;
            use phalanx_net::Network as _;
            for topic in [
                phalanx_light::wire::CLAIMS_TOPIC,
                phalanx_cluster::wire::DECLARATION_TOPIC,
                phalanx_cluster::wire::SLASHING_TOPIC,
            ] {
                net.subscribe(topic)
                    .map_err(|e| DevnetError::Config(e.to_string()))?;
            }
            p2p_peer = net.peer_string();
            tracing::info!(peer = ?p2p_peer, "devnet: on the gossip network (consensus blocks, aggregates, declarations, slashing evidence, claims; executed blocks' shards)");
            let (publish, to_publish) = mpsc::unbounded_channel();
            *lock(&shared.light_feed.publish) = Some(publish);
            let mut p2p_feed = Feed::new(net);
            for (header, shards, _, _) in &resumed {
                p2p_feed.remember(header.clone(), shards.clone());
            }
            for block in known_chain {
                p2p_feed.remember_chain(block);
            }
            let judge = phalanx_cluster::equivocation::Judge::from_genesis(&genesis)
                .map_err(DevnetError::Genesis)?;
            tasks.push(tokio::spawn(claims::gossip_task(
                p2p_feed,
                p2p_blocks_rx,
                shared.clone(),
                to_publish,
                phalanx_cluster::equivocation::Watch::new(Arc::new(judge)),
                shutdown.clone(),
            )));
        }
        tracing::info!(rpc = %rpc_addr, servers = config.servers, validators = config.validators,
            producers = config.producers, "devnet up");
        Ok(Self {
            accounts: printed.to_vec(),
            genesis,
            rpc_addr,
            light_rpc_addr,
            slot: Duration::from_secs(spec.slot_seconds),
            shared,
            stop_chain,
            chain_thread: Some(chain_thread),
            stop,
            tasks,
            p2p_peer,
        })
    }

    /// Its peer on the gossip network, `HEXKEY@MULTIADDR` (what `phalanx executor
    /// --p2p-peer` takes), when it joined one.
    pub fn p2p_peer(&self) -> Option<&str> {
        self.p2p_peer.as_deref()
    }

    /// The development accounts (address and private key), funded at genesis.
    pub fn accounts(&self) -> &[DevAccount] {
        &self.accounts
    }

    /// The genesis.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// The checkpoint it suggests to light clients (the genesis block and state root), when
    /// it runs executors.
    pub fn light_checkpoint(&self) -> Option<phalanx_light::wire::Bootstrap> {
        *lock(&self.shared.light_feed.checkpoint)
    }

    /// Where JSON-RPC listens.
    pub fn rpc_addr(&self) -> SocketAddr {
        self.rpc_addr
    }

    /// Where the light client's verified JSON-RPC listens, if one was started.
    pub fn light_rpc_addr(&self) -> Option<SocketAddr> {
        self.light_rpc_addr
    }

    /// Slot length.
    pub fn slot(&self) -> Duration {
        self.slot
    }

    /// The status now.
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// Runs until `shutdown` turns true, handing one status line per slot to `line`; then
    /// stops every task. tx/s is averaged over the last epoch: execution follows finality,
    /// which arrives an epoch of blocks at a time.
    pub async fn run_until(
        mut self,
        mut shutdown: watch::Receiver<bool>,
        mut line: impl FnMut(&str),
    ) {
        let mut interval = tokio::time::interval(self.slot);
        let window = self.slot * u32::try_from(self.genesis.spec.slots_per_epoch).unwrap_or(8);
        let mut samples: std::collections::VecDeque<(Instant, u64)> =
            std::collections::VecDeque::new();
        loop {
            tokio::select! {
                r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { break; },
                _ = interval.tick() => {
                    let status = self.status();
                    let now = Instant::now();
                    samples.push_back((now, status.txs_executed));
                    while samples.len() > 2
                        && samples.get(1).is_some_and(|(t, _)| now.duration_since(*t) >= window)
                    {
                        samples.pop_front();
                    }
                    let rate = samples.front().map_or(0.0, |(t, n)| {
                        let dt = now.duration_since(*t).as_secs_f64();
                        if dt > 0.0 { status.txs_executed.saturating_sub(*n) as f64 / dt } else { 0.0 }
                    });
                    line(&status.line(rate));
                }
            }
        }
        self.shutdown().await;
    }

    /// Stops every task and the chain thread.
    pub async fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        self.stop_chain.store(true, Ordering::Relaxed);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        if let Some(t) = self.chain_thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// `run(config, shutdown)`: a devnet until `shutdown`, status lines as `tracing` events.
pub async fn run(config: DevnetConfig, shutdown: watch::Receiver<bool>) -> Result<(), DevnetError> {
    let devnet = Devnet::start(config).await?;
    devnet
        .run_until(shutdown, |l| tracing::info!(target: "devnet", "{l}"))
        .await;
    Ok(())
}

/// What the devnet publishes on the chain's gossip network (`--p2p-listen`).
#[derive(Debug)]
pub(crate) enum ToP2p {
    /// An executed block: its shards on their topics, kept for sync requests.
    Executed(ExecHeader, Vec<Shard>),
    /// A consensus block validator 0 imported (forks included), on the block topic.
    Imported(Box<ChainBlock>),
    /// An aggregate first seen in a block on the canonical chain, on the attestation topic.
    Attestation(phalanx_types::Attestation),
    /// A declaration one of the chain's validators signed, on the declaration topic.
    Declaration(phalanx_types::SignedDeclaration),
    /// Slashing evidence validator 0's view found, on the slashing topic.
    Evidence(phalanx_types::Evidence),
}

/// The consensus block without its shards, as the block topic carries it.
fn chain_block(block: &phalanx_types::SignedBlock) -> ChainBlock {
    ChainBlock {
        header: block.header.clone(),
        body: block.body.clone(),
    }
}

async fn feed_task(
    mut feed: Feed<phalanx_net::memory::MemoryNetwork>,
    mut blocks: mpsc::UnboundedReceiver<(ExecHeader, Vec<Shard>)>,
    p2p: Option<mpsc::UnboundedSender<ToP2p>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return; },
            b = blocks.recv() => match b {
                Some((header, shards)) => {
                    if let Some(p2p) = &p2p {
                        let _ = p2p.send(ToP2p::Executed(header.clone(), shards.clone()));
                    }
                    feed.publish(header, shards);
                }
                None => return,
            },
            e = feed.net_mut().recv() => match e {
                Some(e) => feed.answer(e),
                None => return,
            },
        }
    }
}

/// What the chain thread needs.
struct ChainLoop {
    chain: LiveChain,
    log: store::BlockLog,
    /// The last block fed to execution, and its execution header.
    fed: (B256, ExecHeader),
    spec: ChainSpec,
    genesis_time: u64,
    registry: Registry,
    shared: Arc<Shared>,
    blocks: mpsc::UnboundedSender<(ExecHeader, Vec<Shard>)>,
    /// The same blocks, to the executors and the light client.
    claims: Option<mpsc::UnboundedSender<claims::Final>>,
    /// Claims and wrong-claim proofs for the chain's producers.
    ops: std::sync::mpsc::Receiver<claims::ChainOp>,
    /// Where the reputation books are kept, the books last written and the slot they were
    /// looked at.
    books: (PathBuf, Option<phalanx_sim::chain::Books>, u64),
    stop: Arc<AtomicBool>,
    /// Signed duties from the validator API.
    from_api: std::sync::mpsc::Receiver<api::ToChain>,
    /// The validator API's event stream.
    events: tokio::sync::broadcast::Sender<api::ApiEvent>,
    /// Validators' public keys, by index.
    pubkeys: Vec<phalanx_crypto::PublicKeyBytes>,
    genesis_ms: u64,
    last_head: Option<B256>,
    last_finalized: Option<u64>,
    /// To the chain's gossip network, when the devnet is on one.
    p2p: Option<mpsc::UnboundedSender<ToP2p>>,
    /// Aggregates already published there, with their target epoch (forgotten once final).
    gossiped: std::collections::HashMap<B256, u64>,
}

impl ChainLoop {
    /// Hands the executors' claims and the wrong-claim proofs to the chain's producers.
    fn take_ops(&mut self) {
        while let Ok(op) = self.ops.try_recv() {
            match op {
                claims::ChainOp::Claim(c) => {
                    let (executor, height) = (c.executor.0, c.message.height);
                    if let Err(e) = self.chain.submit_claim(c) {
                        // A replayed claim after a restart is already on chain.
                        tracing::debug!(executor, height, error = %e, "devnet: claim not carried");
                    }
                }
                claims::ChainOp::Fraud(p) => {
                    let accused = p.accused;
                    match self.chain.submit_fraud_proof(p) {
                        Ok(true) => tracing::info!(
                            executor = accused,
                            "devnet: wrong-claim proof handed to the producers"
                        ),
                        Ok(false) => tracing::debug!(
                            executor = accused,
                            "devnet: wrong-claim proof against an executor already slashed"
                        ),
                        Err(e) => tracing::warn!(executor = accused, error = %e,
                            "devnet: wrong-claim proof refused by the chain"),
                    }
                }
                claims::ChainOp::Evidence(e) => match self.chain.submit_evidence(*e) {
                    Ok(true) => {
                        tracing::info!(
                            "devnet: slashing evidence from the network handed to the producers"
                        )
                    }
                    Ok(false) => tracing::debug!(
                        "devnet: slashing evidence against a validator already slashed, or pooled"
                    ),
                    Err(e) => {
                        tracing::warn!(error = %e, "devnet: slashing evidence refused by the chain")
                    }
                },
                claims::ChainOp::Deposit(d, answer) => {
                    let result = self.chain.submit_deposit(d).map_err(|e| e.to_string());
                    match &result {
                        Ok(()) => {
                            tracing::info!("devnet: executor deposit handed to the producers")
                        }
                        Err(e) => tracing::warn!(error = %e, "devnet: executor deposit refused"),
                    }
                    let _ = answer.send(result);
                }
                claims::ChainOp::Exit(x, answer) => {
                    let executor = x.message.executor.0;
                    let result = self.chain.submit_exit(x).map_err(|e| e.to_string());
                    match &result {
                        Ok(()) => tracing::info!(
                            executor,
                            "devnet: executor exit handed to the producers"
                        ),
                        Err(e) => {
                            tracing::warn!(executor, error = %e, "devnet: executor exit refused")
                        }
                    }
                    let _ = answer.send(result);
                }
            }
        }
    }

    /// Writes the reputation books (atomically) when they changed, at most once a slot: a
    /// crash loses at most the outcomes recorded in the slot it happens in.
    fn save_books(&mut self, slot: u64) {
        if self.books.2 == slot {
            return;
        }
        self.books.2 = slot;
        let books = self.chain.books();
        if self.books.1.as_ref() == Some(&books) {
            return;
        }
        let written = serde_json::to_vec(&books)
            .map_err(std::io::Error::other)
            .and_then(|json| phalanx_types::fs::write_atomic(&self.books.0, &json));
        match written {
            Ok(()) => self.books.1 = Some(books),
            Err(e) => tracing::warn!(file = %self.books.0.display(), error = %e,
                "devnet: cannot save the reputation books"),
        }
    }

    fn run(mut self) {
        let mut log_failed = false;
        while !self.stop.load(Ordering::Relaxed) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let now_ms = u64::try_from(now.as_millis())
                .unwrap_or(u64::MAX)
                .saturating_sub(self.genesis_time.saturating_mul(1000));
            self.chain.advance(now_ms);
            self.take_ops();
            if let Some(p2p) = &self.p2p {
                let out = self.chain.take_published();
                for d in out.declarations {
                    let _ = p2p.send(ToP2p::Declaration(d));
                }
                for e in out.evidence {
                    let _ = p2p.send(ToP2p::Evidence(e));
                }
            }
            for block in self.chain.take_imported() {
                if let Some(p2p) = &self.p2p {
                    let _ = p2p.send(ToP2p::Imported(Box::new(chain_block(&block))));
                }
                if let Err(e) = self.log.append(&block)
                    && !log_failed
                {
                    // The chain goes on; a restart would resume from the blocks logged so far.
                    tracing::error!(error = %e, "devnet: cannot log blocks; a restart will lose the ones after this");
                    log_failed = true;
                }
            }
            for f in self.chain.finalized_after(self.fed.0) {
                let header = exec::header(
                    &f,
                    &self.fed.1,
                    &self.spec,
                    self.genesis_time,
                    &self.registry,
                );
                let shards: Vec<Shard> = f.block.shards.iter().cloned().collect();
                self.shared.record_block(&header, &shards, Some(&f.block));
                tracing::debug!(
                    height = header.number,
                    slot = f.block.header.message.slot.0,
                    "devnet: block final, to execution"
                );
                if let Some(c) = &self.claims {
                    let _ = c.send((header.clone(), shards.clone(), f.root));
                }
                if self.blocks.send((header.clone(), shards)).is_err() {
                    return;
                }
                self.fed = (f.root, header);
            }
            let status = self.chain.status();
            self.save_books(status.slot);
            self.publish(&status);
            *lock(&self.shared.chain) = Some(status);
            let executors = self.chain.executors();
            let mut snapshot = lock(&self.shared.executors);
            if snapshot.as_deref() != Some(executors) {
                *snapshot = Some(Arc::new(executors.clone()));
            }
            drop(snapshot);
            // Wait for the next submission or 10 ms, whichever comes first.
            match self.from_api.recv_timeout(Duration::from_millis(10)) {
                Ok((signed, verdict)) => {
                    let _ = verdict.send(self.chain.submit(signed));
                    while let Ok((signed, verdict)) = self.from_api.try_recv() {
                        let _ = verdict.send(self.chain.submit(signed));
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                // Every handler is gone: the devnet is stopping.
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
            }
        }
    }

    /// Publishes new duties, a new head and a new finalized checkpoint on the event stream
    /// (nobody listening is fine).
    /// Publishes the current epoch's proposers for the polling duties endpoint: on a new head
    /// (a reorganisation may change the seed) and when an epoch starts.
    fn record_proposers(&self, status: &LiveStatus, new_head: bool) {
        let epoch = phalanx_types::Epoch(status.slot / self.spec.slots_per_epoch.max(1));
        if !new_head && lock(&self.shared.api.proposers).contains_key(&epoch.0) {
            return;
        }
        if let Some(duties) = self.chain.proposer_duties(epoch) {
            api::record_proposers(&self.shared.api, epoch.0, duties);
        }
    }

    fn publish(&mut self, status: &LiveStatus) {
        self.record_proposers(status, false);
        use phalanx_validator::api::{FinalizedEvent, HeadEvent};
        let send = |topic: &'static str, data: String| {
            let _ = self.events.send(api::ApiEvent { topic, data });
        };
        for duty in self.chain.take_duties() {
            let Some(pubkey) = self.pubkeys.get(duty.validator as usize) else {
                continue;
            };
            let event = api::duty_event(&duty, *pubkey, self.genesis_ms);
            if let Ok(json) = serde_json::to_string(&event) {
                send("duty", json);
            }
        }
        if self.last_head != Some(status.head.0) {
            self.last_head = Some(status.head.0);
            let attestations = self.chain.attestations_since(status.finalized.epoch);
            if let Some(p2p) = &self.p2p {
                let finalized = status.finalized.epoch.0;
                self.gossiped.retain(|_, target| *target > finalized);
                for a in &attestations {
                    use tree_hash::TreeHash as _;
                    if self
                        .gossiped
                        .insert(a.tree_hash_root(), a.data.target.epoch.0)
                        .is_none()
                    {
                        let _ = p2p.send(ToP2p::Attestation(a.clone()));
                    }
                }
            }
            claims::record_attestations(
                &self.shared.light_feed,
                status.finalized.epoch,
                attestations,
            );
            self.record_proposers(status, true);
            let e = HeadEvent {
                slot: status.head.1,
                block: status.head.0,
            };
            if let Ok(json) = serde_json::to_string(&e) {
                send("head", json);
            }
        }
        if self.last_finalized != Some(status.finalized.epoch.0) {
            self.last_finalized = Some(status.finalized.epoch.0);
            let e = FinalizedEvent {
                block: status.finalized.root,
                epoch: status.finalized.epoch.0,
            };
            if let Ok(json) = serde_json::to_string(&e) {
                send("finalized_checkpoint", json);
            }
        }
    }
}
