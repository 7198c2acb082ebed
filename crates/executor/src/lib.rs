//! `phalanx executor`: a bonded executor as a process (seed 003; DESIGN.md "Executors and the
//! light client").
//!
//! 1. **Key and bond.** It holds one executor key (an EIP-2335 keystore), bonded in the
//!    genesis file or by a deposit on chain (`phalanx executor deposit`). A key the genesis
//!    does not list is looked up in the node's executor registry (`GET /phalanx/v1/executors`)
//!    until its deposit is on chain, with a progress line every 10 s; the index is only what
//!    its claims are labelled with, and the chain checks each claim's signature against it,
//!    so a node that lies about it only gets the claims refused.
//! 2. **Genesis.** On an empty data folder it computes the genesis allocation's root and checks
//!    it against the checkpoint the node suggests at height 0 before writing anything: a wrong
//!    genesis file or a node on another chain stops it with both roots named.
//! 3. **Blocks.** It follows the node's executed headers (`phalanx_light::wire`) as a light
//!    client does ([`phalanx_light::follow`]): each checked against its signed consensus header
//!    (signatures, proposer schedule, derivation) and taken only once aggregated attestations
//!    show it final; one height after the other on its own chain (a header whose parent is not
//!    its head is refused). It fetches each block's shards, checks each against the header's
//!    shard root, executes the block on its own state and makes it final at once.
//! 4. **Claims.** For each block it signs `Claim{height, domain 0, prev_state_root,
//!    prior_meta_state_root, block_hash, effects_roots, post_state_root}` from its own
//!    execution — never from what the node says — and sends it: **by gossip** on the chain's
//!    claims topic ([`phalanx_light::wire::CLAIMS_TOPIC`]) when it is given peers
//!    ([`ExecutorConfig::p2p`]), otherwise by posting it to the node over HTTP (a claim the node refuses is
//!    logged with the reason). Gossip is best effort, so a gossiped claim stays pending until
//!    the node serves it back (its `updates` list it) and is published again every
//!    [`REPUBLISH`] until then, for at most [`PENDING`] heights.
//! 5. **Crash safety.** Its state is on disk (redb, one transaction per block); restarted, it
//!    resumes after the last block it executed. A claim lost in a crash between execution and
//!    posting is not signed again (the light client weighs the others, or fetches a proof).
//!
//! A progress line every 10 seconds says where it is.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::{B256, Bytes};
use phalanx_consensus::executors::ExecutorRegistry;
use phalanx_crypto::SecretKey;
use phalanx_execution::header::ExecHeader;
use phalanx_execution::store::StateStore;
use phalanx_light::client::{LightClient, LightHeader};
use phalanx_light::follow::FinalHeaders;
use phalanx_light::upstream::{FetchError, Upstream};
use phalanx_light::wire::{Bootstrap, MAX_HEADERS, UpdatesQuery};
use phalanx_spec::Genesis;
use phalanx_types::{ExecutorIndex, Shard, SignedClaim, SigningContext};
use ssz::{Decode, Encode};
use tokio::sync::watch;
use tree_hash::TreeHash;

/// How often a gossiped claim the node does not serve yet is published again.
pub const REPUBLISH: Duration = Duration::from_secs(2);
/// Heights of gossiped claims kept pending at most (the oldest is given up first).
pub const PENDING: usize = 64;

/// Settings of `phalanx executor`.
#[derive(Clone)]
pub struct ExecutorConfig {
    /// The full node to follow (JSON-RPC URL; the light protocol is beside it).
    pub node: String,
    /// The chain's genesis.
    pub genesis: Genesis,
    /// The executor's key.
    pub key: SecretKey,
    /// Where its state lives.
    pub data_dir: PathBuf,
    /// How often to poll the node.
    pub poll_ms: u64,
    /// Send claims by gossip instead of HTTP (identity key `data_dir/p2p.key`).
    pub p2p: Option<phalanx_net::p2p::Join>,
}

impl std::fmt::Debug for ExecutorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorConfig")
            .field("node", &self.node)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

/// Why the executor stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The genesis does not give a registry.
    #[error("genesis: {0}")]
    Genesis(String),
    /// Its genesis state is not the node's.
    #[error(
        "genesis state root {ours} is not the node's {theirs}: wrong genesis file, or a node on another chain"
    )]
    GenesisMismatch {
        /// Root of the genesis file's allocation.
        ours: B256,
        /// The node's.
        theirs: B256,
    },
    /// The data folder.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Its state failed.
    #[error("state: {0}")]
    State(String),
    /// The node could not be reached at start.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// Following the node's headers could not start (its checkpoint header is missing or not
    /// the one on disk).
    #[error("following the node: {0}")]
    Follow(String),
    /// The gossip network could not start.
    #[error("gossip network: {0}")]
    Network(#[from] phalanx_net::NetError),
}

/// The genesis allocation as changes to the empty state.
pub use phalanx_light::headers::genesis_changes;

/// Runs the executor until `shutdown`.
pub async fn run(
    config: ExecutorConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ExecutorError> {
    let registry = ExecutorRegistry::from_genesis(&config.genesis)
        .map_err(|e| ExecutorError::Genesis(e.to_string()))?;
    let pubkey = config.key.public_key();
    let upstream = Upstream::new(&config.node, Duration::from_secs(10))?;
    let index = match registry.index_of(&pubkey) {
        Some(index) => index,
        None => match wait_for_deposit(&upstream, &pubkey, &mut shutdown).await {
            Some(index) => index,
            None => return Ok(()),
        },
    };
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ExecutorError::Io {
        path: config.data_dir.clone(),
        source,
    })?;
    let store = Arc::new(
        StateStore::open(&config.data_dir.join("state.redb"))
            .map_err(|e| ExecutorError::State(e.to_string()))?,
    );
    if store
        .head()
        .map_err(|e| ExecutorError::State(e.to_string()))?
        .is_none()
    {
        // Checked before anything is written: a wrong genesis never reaches the disk.
        let boot = upstream.bootstrap().await?;
        let alloc = genesis_changes(&config.genesis);
        let state = |e: phalanx_execution::StateError| ExecutorError::State(e.to_string());
        let root = StateStore::in_memory()
            .and_then(|s| s.init_genesis(boot.block_hash, &alloc))
            .map_err(state)?;
        if root != boot.state_root || boot.height != 0 {
            return Err(ExecutorError::GenesisMismatch {
                ours: root,
                theirs: boot.state_root,
            });
        }
        store.init_genesis(boot.block_hash, &alloc).map_err(state)?;
    }
    let head = store
        .head()
        .map_err(|e| ExecutorError::State(e.to_string()))?
        .ok_or_else(|| ExecutorError::State("no genesis".into()))?;
    let follow = FinalHeaders::start(
        &config.genesis,
        &Bootstrap {
            height: head.number,
            block_hash: head.block,
            state_root: head.state_root,
        },
        std::slice::from_ref(&upstream),
    )
    .await
    .map_err(|e| ExecutorError::Follow(e.to_string()))?;
    let net = match &config.p2p {
        Some(join) => {
            let net = phalanx_net::p2p::Libp2pNetwork::join(&config.data_dir.join("p2p.key"), join)
                .await?;
            tracing::info!(peer = ?net.peer_string(), "executor: claims go by gossip");
            Some(net)
        }
        None => None,
    };
    tracing::info!(executor = index.0, node = %config.node, "executor: following");
    let mut me = Executor {
        follow,
        index,
        key: config.key,
        signing: config.genesis.signing_context(),
        store,
        upstream,
        last_line: 0,
        claimed: 0,
        net,
        pending: std::collections::BTreeMap::new(),
    };
    let poll = Duration::from_millis(config.poll_ms.max(10));
    let mut failing = false;
    loop {
        match me.step().await {
            Ok(more) => {
                failing = false;
                if more {
                    continue;
                }
            }
            Err(StepError::Fetch(e)) => {
                if !failing {
                    tracing::warn!(error = %e, "executor: node unreachable; retrying");
                }
                failing = true;
            }
            Err(StepError::State(e)) => return Err(ExecutorError::State(e)),
        }
        let sleep = tokio::time::sleep(poll);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return Ok(()); },
                () = &mut sleep => break,
                // Nothing is subscribed: drain what arrives so the queue never fills.
                Some(_) = phalanx_net::p2p::next_event(&mut me.net) => {}
            }
        }
    }
}

/// The index of the executor holding `pubkey` once the node's registry lists it; `None` on
/// shutdown.
async fn wait_for_deposit(
    upstream: &Upstream,
    pubkey: &phalanx_crypto::PublicKey,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<ExecutorIndex> {
    let wanted = pubkey.to_bytes();
    let mut last_line: Option<std::time::Instant> = None;
    loop {
        match upstream.executors().await {
            Ok(answer) => {
                if let Some(e) = answer
                    .executors
                    .iter()
                    .find(|e| e.pubkey.as_ref() == wanted.as_slice())
                {
                    tracing::info!(
                        executor = e.index,
                        bond_gwei = e.bond,
                        "executor: bonded on chain"
                    );
                    return Some(ExecutorIndex(e.index));
                }
                if last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    tracing::info!(
                        executors = answer.executors.len(),
                        "executor: key not bonded yet (not in the genesis, no deposit on chain); \
                         waiting for its deposit (`phalanx executor deposit`)"
                    );
                    last_line = Some(std::time::Instant::now());
                }
            }
            Err(e) => {
                if last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!(error = %e, "executor: cannot read the node's executor registry; retrying");
                    last_line = Some(std::time::Instant::now());
                }
            }
        }
        tokio::select! {
            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return None; },
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

enum StepError {
    Fetch(FetchError),
    State(String),
}

struct Executor {
    /// The node's headers, checked and shown final.
    follow: FinalHeaders,
    index: ExecutorIndex,
    key: SecretKey,
    signing: SigningContext,
    store: Arc<StateStore>,
    upstream: Upstream,
    last_line: u64,
    claimed: u64,
    /// The gossip network, when claims go by gossip.
    net: Option<phalanx_net::p2p::Libp2pNetwork>,
    /// Gossiped claims the node does not serve yet, by height, with when each was last sent.
    pending: std::collections::BTreeMap<u64, (SignedClaim, Option<std::time::Instant>)>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Executor {
    /// One poll: executes and claims the new blocks. `true` when there may be more.
    async fn step(&mut self) -> Result<bool, StepError> {
        let head = self
            .store
            .head()
            .map_err(|e| StepError::State(e.to_string()))?
            .ok_or_else(|| StepError::State("no genesis".into()))?;
        let updates = self
            .upstream
            .updates(&UpdatesQuery {
                from: self.follow.next_height(),
                claims_from: self.pending.keys().next().copied().unwrap_or(u64::MAX),
                limit: Some(MAX_HEADERS as u64),
            })
            .await
            .map_err(StepError::Fetch)?;
        self.confirm(&updates.claims);
        let full = updates.headers.len() >= MAX_HEADERS;
        let fin = self
            .follow
            .take(&updates, &self.upstream)
            .await
            .map_err(StepError::Fetch)?;
        let (mut tip, mut tip_root) = ((head.number, head.block), head.state_root);
        let mut claims: Vec<Bytes> = Vec::new();
        for header in fin.into_iter().map(|f| f.header) {
            if header.number != tip.0 + 1 || header.parent != tip.1 {
                tracing::warn!(
                    height = header.number,
                    "executor: header does not extend its chain"
                );
                break;
            }
            let Some(shards) = self.shards(&header).await? else {
                break;
            };
            let light = LightHeader::from(&header);
            let store = self.store.clone();
            let env = light.env.clone();
            let (parent, hash) = (header.parent, light.hash);
            let result = tokio::task::spawn_blocking(move || {
                let r = store.execute(parent, hash, &env, &shards)?;
                store.finalize(hash)?;
                Ok::<_, phalanx_execution::ExecError>(r)
            })
            .await
            .map_err(|e| StepError::State(e.to_string()))?
            .map_err(|e| StepError::State(e.to_string()))?;
            let message = LightClient::claim_for(
                &light,
                tip_root,
                &result.effects_roots(),
                result.post_state_root,
            );
            let signed = SignedClaim {
                executor: self.index,
                signature: self.signing.sign(&message, &self.key),
                message,
            };
            if self.net.is_some() {
                self.pending.insert(header.number, (signed, None));
                while self.pending.len() > PENDING {
                    if let Some((height, _)) = self.pending.pop_first() {
                        tracing::warn!(
                            height,
                            "executor: the node never served this gossiped claim; giving up on it"
                        );
                    }
                }
            } else {
                claims.push(Bytes::from(signed.as_ssz_bytes()));
            }
            tip = (header.number, hash);
            tip_root = result.post_state_root;
        }
        if !claims.is_empty() {
            let sent = claims.len();
            let answer = self
                .upstream
                .submit_claims(claims)
                .await
                .map_err(StepError::Fetch)?;
            self.claimed += answer.accepted as u64;
            for why in &answer.refused {
                tracing::warn!(reason = %why, "executor: the node refused a claim");
            }
            tracing::debug!(sent, accepted = answer.accepted, "executor: claims posted");
        }
        self.gossip();
        let now = now_ms();
        if now.saturating_sub(self.last_line) >= 10_000 {
            self.last_line = now;
            tracing::info!(executor = self.index.0, height = tip.0, root = %tip_root,
                claims_accepted = self.claimed, "executor: executed");
        }
        Ok(full)
    }

    /// Drops the pending claims the node serves (its `updates` list them).
    fn confirm(&mut self, served: &[Bytes]) {
        if self.pending.is_empty() {
            return;
        }
        for raw in served {
            if let Ok(c) = SignedClaim::from_ssz_bytes(raw)
                && c.executor == self.index
                && self
                    .pending
                    .get(&c.message.height)
                    .is_some_and(|(mine, _)| *mine == c)
            {
                self.pending.remove(&c.message.height);
                self.claimed += 1;
            }
        }
    }

    /// Publishes the pending claims never sent, or sent more than [`REPUBLISH`] ago.
    fn gossip(&mut self) {
        use phalanx_net::Network as _;
        let Some(net) = &self.net else {
            return;
        };
        let now = std::time::Instant::now();
        for (height, (claim, sent)) in &mut self.pending {
            if sent.is_some_and(|at| now.duration_since(at) < REPUBLISH) {
                continue;
            }
            if sent.is_some() {
                tracing::debug!(
                    height,
                    "executor: the node does not serve this claim yet; publishing it again"
                );
            }
            if let Err(e) = net.publish(phalanx_light::wire::CLAIMS_TOPIC, claim.as_ssz_bytes()) {
                tracing::warn!(error = %e, "executor: cannot publish a claim");
                return;
            }
            *sent = Some(now);
        }
    }

    /// The block's shards, checked against the header; `None` (logged) when the node has
    /// none or sends others.
    async fn shards(&self, header: &ExecHeader) -> Result<Option<Vec<Vec<Bytes>>>, StepError> {
        let Some(raw) = self
            .upstream
            .shards(header.number)
            .await
            .map_err(StepError::Fetch)?
        else {
            tracing::warn!(
                height = header.number,
                "executor: the node has no shards for this block"
            );
            return Ok(None);
        };
        if raw.len() != header.shard_roots.len() {
            tracing::warn!(
                height = header.number,
                got = raw.len(),
                expected = header.shard_roots.len(),
                "executor: wrong number of shards"
            );
            return Ok(None);
        }
        let mut txs = Vec::with_capacity(raw.len());
        for (i, (bytes, root)) in raw.iter().zip(header.shard_roots.iter()).enumerate() {
            match Shard::from_ssz_bytes(bytes) {
                Ok(shard) if shard.tree_hash_root() == *root => {
                    txs.push(phalanx_execution::block::shard_txs(&shard));
                }
                _ => {
                    tracing::warn!(
                        height = header.number,
                        shard = i,
                        "executor: a shard does not match the header's shard root"
                    );
                    return Ok(None);
                }
            }
        }
        Ok(Some(txs))
    }
}
