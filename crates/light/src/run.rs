//! `phalanx light`: the light client as a process.
//!
//! It trusts a checkpoint (given by the operator; else the node's suggestion, with a warning)
//! and the chain's genesis file (the executors' bonds and keys, the signing domain). It polls
//! one or more untrusted full nodes for headers, attestations and executors' claims
//! ([`crate::wire`]) — all of them, each in turn, so a node that withholds is made up for by
//! another — decides each block by the rules of [`crate::client`], fetches a proof of
//! execution whenever the rules ask for one (from the first node whose proof the client
//! accepts; retrying every [`PROOF_RETRY_MS`] while none has one), reads from the first node
//! whose proof verifies, logs
//! every executor a proof showed wrong, and serves verified reads ([`crate::rpc`]) on its own
//! JSON-RPC endpoint. A progress line every 10 seconds says where it is.
//!
//! With [`RunConfig::p2p`] it also joins the chain's gossip network and takes claims from
//! the claims topic ([`crate::wire::CLAIMS_TOPIC`]), so a node that withholds claims over HTTP
//! costs nothing while the claims circulate. A gossiped claim about a block not final here
//! yet waits (up to [`EARLY_HEIGHTS`] ahead); its author is scored down for garbage, a bad
//! signature or an unbonded signer (`Invalid`), and for a claim about a block the client
//! does not hold at that height (`Useless`: dropped unweighed, the seed's spam).
//!
//! A node that stops answering is logged once and skipped; with none answering the client
//! stalls, serving reads at the roots it believes, and resumes when one is back. A node that lies gets its headers refused
//! (each must come with the signed consensus header it derives from: producer, proposer and
//! RANDAO signatures checked, the proposer checked against the schedule, the execution header
//! derived here — [`crate::headers`]), its claims dropped (signatures) and its proofs rejected
//! (typed errors); it can withhold, which the client answers by asking for proofs, never by
//! guessing. Checked headers wait until aggregated attestations the node serves show them
//! final ([`crate::finality`]); a node can delay that, not fake it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::B256;
use phalanx_consensus::executors::ExecutorRegistry;
use phalanx_execution::proof::ExecutionProof;
use phalanx_spec::Genesis;
use phalanx_types::SignedClaim;
use ssz::Decode;
use tokio::sync::watch;
use tree_hash::TreeHash;

use crate::client::{Config, LightClient, LightHeader};
use crate::follow::{FinalBlock, FinalHeaders, StartError};
use crate::upstream::{FetchError, Upstream};
use crate::wire::{Bootstrap, MAX_HEADERS, UpdatesQuery};

/// How long to wait before asking again for a proof the node did not have.
pub const PROOF_RETRY_MS: u64 = 2_000;

/// How far beyond the last final header a gossiped claim may be and still wait for it.
pub const EARLY_HEIGHTS: u64 = 64;

/// Gossiped claims waiting for their header, per height, at most.
const EARLY_PER_HEIGHT: usize = 64;

/// Settings of `phalanx light`.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The full nodes to follow, in order of preference (JSON-RPC at `/`, the light protocol
    /// under `/phalanx/v1/light`); at least one. Headers, claims and attestations are taken
    /// from all of them, proofs and reads from the first whose answer verifies.
    pub nodes: Vec<String>,
    /// Where to serve verified JSON-RPC.
    pub listen: SocketAddr,
    /// The chain's genesis (executors, signing domain, chain id).
    pub genesis: Genesis,
    /// The trusted checkpoint; `None` takes the node's (with a warning).
    pub checkpoint: Option<Bootstrap>,
    /// The client's rules.
    pub client: Config,
    /// Also take claims from the chain's gossip network (an identity made for the run).
    pub p2p: Option<phalanx_net::p2p::Join>,
    /// How often to poll the node.
    pub poll_ms: u64,
}

/// Why the light client could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The genesis file does not give a registry.
    #[error("genesis: {0}")]
    Genesis(String),
    /// No checkpoint could be had.
    #[error("checkpoint from the node: {0}")]
    Checkpoint(FetchError),
    /// The HTTP client could not be made.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// No node given.
    #[error("no full node to follow")]
    NoNode,
    /// The JSON-RPC address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("JSON-RPC server: {0}")]
    Serve(std::io::Error),
    /// The checkpoint's header could not be had or does not match.
    #[error("checkpoint header: {0}")]
    CheckpointHeader(String),
    /// The gossip network could not be joined.
    #[error("gossip network: {0}")]
    Network(String),
}

/// A started light client.
#[derive(Debug)]
pub struct Running {
    /// Where it serves JSON-RPC.
    pub addr: SocketAddr,
    /// The client (for status).
    pub client: Arc<Mutex<LightClient>>,
    /// The follower and the server; ends on shutdown.
    pub task: tokio::task::JoinHandle<Result<(), RunError>>,
}

/// Runs the light client until `shutdown`.
pub async fn run(config: RunConfig, shutdown: watch::Receiver<bool>) -> Result<(), RunError> {
    let running = start(config, shutdown).await?;
    running
        .task
        .await
        .map_err(|e| RunError::Serve(std::io::Error::other(e.to_string())))?
}

/// Binds the endpoint, takes the checkpoint and starts following; returns at once.
pub async fn start(
    config: RunConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<Running, RunError> {
    let registry = ExecutorRegistry::from_genesis(&config.genesis)
        .map_err(|e| RunError::Genesis(e.to_string()))?;
    let upstreams: Vec<Upstream> = config
        .nodes
        .iter()
        .map(|n| Upstream::new(n, Duration::from_secs(10)))
        .collect::<Result<_, _>>()?;
    let first = upstreams.first().ok_or(RunError::NoNode)?;
    let checkpoint = match config.checkpoint {
        Some(c) => c,
        None => {
            let c = first.bootstrap().await.map_err(RunError::Checkpoint)?;
            tracing::warn!(height = c.height, block = %c.block_hash, root = %c.state_root,
                node = %first.base(),
                "light client: no --checkpoint given; trusting the node's (weak subjectivity: \
                 whoever answers this decides what the client believes)");
            c
        }
    };
    let headers = FinalHeaders::start(&config.genesis, &checkpoint, &upstreams)
        .await
        .map_err(|e| match e {
            StartError::Genesis(e) => RunError::Genesis(e),
            StartError::Checkpoint(e) => RunError::CheckpointHeader(e),
            StartError::Fetch(e) => RunError::Checkpoint(e),
        })?;
    let client = Arc::new(Mutex::new(LightClient::new(
        config.client,
        config.genesis.signing_context(),
        registry,
        (
            checkpoint.height,
            checkpoint.block_hash,
            checkpoint.state_root,
        ),
    )));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| RunError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| RunError::Bind {
        addr: config.listen,
        source,
    })?;
    tracing::info!(%addr, nodes = ?config.nodes, checkpoint = checkpoint.height,
        "light client: verified JSON-RPC listening");
    let provable = Arc::new(AtomicU64::new(0));
    let serving = crate::rpc::Serving {
        client: client.clone(),
        upstreams: upstreams.clone(),
        chain_id: config.genesis.spec.chain_id,
        provable: provable.clone(),
        runtime: tokio::runtime::Handle::current(),
    };
    let mut stop = shutdown.clone();
    let server =
        axum::serve(listener, crate::rpc::router(serving)).with_graceful_shutdown(async move {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    return;
                }
            }
        });
    let net = match &config.p2p {
        Some(join) => {
            let net = phalanx_net::p2p::Libp2pNetwork::start(phalanx_net::p2p::Config {
                secret: rand::random(),
                listen: join.listen.clone(),
                peers: join.peers.clone(),
                closed: false,
            })
            .await
            .map_err(|e| RunError::Network(e.to_string()))?;
            use phalanx_net::Network as _;
            // Relay only claims that decode and carry a known executor's signature (one about
            // a block this client has not reached yet may be good: it is relayed).
            let (judge, signing) = (client.clone(), config.genesis.signing_context());
            net.set_validator(
                crate::wire::CLAIMS_TOPIC,
                std::sync::Arc::new(move |data: &[u8]| {
                    use phalanx_net::p2p::Verdict;
                    let Ok(c) = SignedClaim::from_ssz_bytes(data) else {
                        return Verdict::Reject;
                    };
                    let key = judge
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .executors()
                        .get(c.executor)
                        .map(|e| e.pubkey);
                    match key {
                        Some(k) if signing.verify(&c.message, &k, &c.signature).is_ok() => {
                            Verdict::Accept
                        }
                        _ => Verdict::Reject,
                    }
                }),
            )
            .map_err(|e| RunError::Network(e.to_string()))?;
            net.subscribe(crate::wire::CLAIMS_TOPIC)
                .map_err(|e| RunError::Network(e.to_string()))?;
            tracing::info!(peer = ?net.peer_string(), "light client: taking claims from gossip");
            Some(net)
        }
        None => None,
    };
    let follower = Follower {
        producer_keys: config
            .genesis
            .producers
            .iter()
            .map(|p| phalanx_crypto::PublicKey::try_from(&p.pubkey).ok())
            .collect(),
        slots_per_epoch: config.genesis.spec.slots_per_epoch.max(1),
        signing: config.genesis.signing_context(),
        net,
        early: BTreeMap::new(),
        client: client.clone(),
        headers,
        upstreams,
        down: HashSet::new(),
        provable,
        asked: HashMap::new(),
        seen: BTreeMap::new(),
        last_line: 0,
    };
    let poll = Duration::from_millis(config.poll_ms.max(10));
    let task = tokio::spawn(async move {
        let follow = tokio::spawn(follower.run(poll, shutdown));
        let served = server.await.map_err(RunError::Serve);
        follow.abort();
        served
    });
    Ok(Running { addr, client, task })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

struct Follower {
    /// The producers' keys (executor deposits are signed by the funding producer).
    producer_keys: Vec<Option<phalanx_crypto::PublicKey>>,
    slots_per_epoch: u64,
    signing: phalanx_types::SigningContext,
    /// The gossip network, when claims come from it too.
    net: Option<phalanx_net::p2p::Libp2pNetwork>,
    /// Gossiped claims about blocks not final here yet, by height, with their authors.
    early: BTreeMap<u64, Vec<(phalanx_net::PeerKey, SignedClaim)>>,
    client: Arc<Mutex<LightClient>>,
    /// Headers checked and shown final before the client sees them.
    headers: FinalHeaders,
    upstreams: Vec<Upstream>,
    /// Nodes that did not answer the last poll (by index), for logging transitions.
    down: HashSet<usize>,
    /// The highest block a node says it can prove (for `latest` reads).
    provable: Arc<AtomicU64>,
    /// When a proof was last asked for, by height.
    asked: HashMap<u64, u64>,
    /// Claims already handed to the client, by height (a node repeating claims costs one
    /// hash each, not a signature check).
    seen: BTreeMap<u64, HashSet<B256>>,
    last_line: u64,
}

/// What a final block's body did to the executors (`phalanx_consensus::claims::apply_final`:
/// releases due, slashings by its `WrongClaim` proofs, which the chain checked before the
/// block could be valid, then deposits and exits), so that the client weighs claims by the
/// chain's registry — also a client that never saw the dispute or the deposit.
fn executors_on_chain(
    client: &mut LightClient,
    block: &FinalBlock,
    body: &phalanx_types::BlockBody,
    at: &phalanx_consensus::claims::At<'_>,
    signing: &phalanx_types::SigningContext,
) {
    let height = block.header.number;
    match phalanx_consensus::claims::apply_final(body, at, client.executors_mut(), signing) {
        Ok(effects) => {
            for (executor, _) in &effects.slashed {
                tracing::warn!(
                    executor = executor.0,
                    block = height,
                    "light client: executor slashed on chain for a wrong claim"
                );
            }
            for e in &effects.ops.deposited {
                tracing::info!(
                    executor = e.0,
                    block = height,
                    "light client: executor deposited on chain"
                );
            }
            for (e, at) in &effects.ops.exited {
                tracing::info!(
                    executor = e.0,
                    released_at_epoch = at.0,
                    block = height,
                    "light client: executor exiting on chain; its claims weigh nothing now"
                );
            }
            for r in &effects.released {
                tracing::info!(
                    executor = r.executor.0,
                    block = height,
                    "light client: executor bond released"
                );
            }
        }
        Err(e) => tracing::error!(block = height, error = %e,
            "light client: a final block's executor operation does not apply here; this \
             client's executor registry no longer matches the chain's (a checkpoint after \
             operations it never saw?)"),
    }
}

impl Follower {
    fn lock(&self) -> std::sync::MutexGuard<'_, LightClient> {
        self.client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn run(mut self, poll: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            if self.step().await {
                continue;
            }
            let sleep = tokio::time::sleep(poll);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return; },
                    () = &mut sleep => break,
                    Some(event) = phalanx_net::p2p::next_event(&mut self.net) => self.gossiped(event),
                }
            }
        }
    }

    /// An event from the gossip network: a claim on the claims topic is offered to the
    /// client; garbage costs its author.
    fn gossiped(&mut self, event: phalanx_net::NetEvent) {
        use phalanx_net::{NetEvent, Network as _, Offence};
        let NetEvent::Gossip { from, topic, data } = event else {
            return;
        };
        if topic != crate::wire::CLAIMS_TOPIC {
            return;
        }
        match SignedClaim::from_ssz_bytes(&data) {
            Ok(claim) => {
                let client = self.client.clone();
                let mut client = client
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                self.offer(&mut client, claim, Some(from));
            }
            Err(e) => {
                tracing::debug!(peer = %from, error = ?e, "light client: malformed gossiped claim");
                if let Some(net) = &self.net {
                    net.report(from, Offence::Undecodable);
                }
            }
        }
    }

    /// A claim from a node's updates (`from` none) or from the gossip topic (`from` its
    /// author): handed to the client once per height. One about a block not final here yet
    /// waits for a later poll (a node's) or in `early` (a gossiped one). The author of a
    /// gossiped claim the client refuses as unknown or badly signed is reported.
    fn offer(
        &mut self,
        client: &mut LightClient,
        claim: SignedClaim,
        from: Option<phalanx_net::PeerKey>,
    ) {
        use phalanx_net::{Network as _, Offence};
        let height = claim.message.height;
        let (head, tip) = (client.head().0, client.tip().0);
        if height <= head {
            return;
        }
        let report = |offence| {
            if let (Some(peer), Some(net)) = (from, &self.net) {
                net.report(peer, offence);
            }
        };
        if height > tip {
            let Some(peer) = from else {
                return;
            };
            if height > tip.saturating_add(EARLY_HEIGHTS) {
                report(Offence::Useless);
                return;
            }
            let waiting = self.early.entry(height).or_default();
            if waiting.len() < EARLY_PER_HEIGHT {
                waiting.push((peer, claim));
            }
            return;
        }
        if !self
            .seen
            .entry(height)
            .or_default()
            .insert(claim.tree_hash_root())
        {
            return;
        }
        if let Err(e) = client.on_claim(claim) {
            tracing::debug!(error = %e, "light client: claim refused");
            use crate::client::ClaimError as E;
            match e {
                E::UnknownBlock { .. } => report(Offence::Useless),
                E::Unbonded(_) | E::BadSignature(_) | E::UnknownDomain(_) => {
                    report(Offence::Invalid)
                }
                _ => {}
            }
        }
    }

    /// One poll of every node, then decisions and proofs. `true` when a node had a full page
    /// of headers (poll again at once). A node that does not answer is logged once (and once
    /// when it is back); the others carry on.
    async fn step(&mut self) -> bool {
        let mut full = false;
        for i in 0..self.upstreams.len() {
            let upstream = self.upstreams[i].clone();
            match self.poll(&upstream).await {
                Ok(more) => {
                    full |= more;
                    if self.down.remove(&i) {
                        tracing::info!(node = %upstream.base(), "light client: node back");
                    }
                }
                Err(e) => {
                    if self.down.insert(i) {
                        tracing::warn!(node = %upstream.base(), error = %e,
                            "light client: node unreachable; retrying");
                    }
                }
            }
        }
        self.decide().await;
        full
    }

    /// Headers, attestations and claims from one node.
    async fn poll(&mut self, upstream: &Upstream) -> Result<bool, FetchError> {
        let from = self.headers.next_height();
        let claims_from = self.lock().head().0 + 1;
        let updates = upstream
            .updates(&UpdatesQuery {
                from,
                claims_from,
                limit: Some(MAX_HEADERS as u64),
            })
            .await?;
        let full = updates.headers.len() >= MAX_HEADERS;
        self.provable.fetch_max(updates.provable, Ordering::Relaxed);
        let now = now_ms();
        let fin = self.headers.take(&updates, upstream).await?;
        {
            let client = self.client.clone();
            let mut client = client
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut carried = Vec::new();
            for block in fin {
                if let Err(e) = client.on_header(LightHeader::from(&block.header), now) {
                    tracing::warn!(error = %e, "light client: header refused");
                    break;
                }
                if let Some(body) = &block.body {
                    let keys = |p: u64| self.producer_keys.get(p as usize).copied().flatten();
                    let at = phalanx_consensus::claims::At {
                        producer: block.producer,
                        epoch: phalanx_types::Epoch(block.slot.0 / self.slots_per_epoch),
                        producer_key: &keys,
                    };
                    executors_on_chain(&mut client, &block, body, &at, &self.signing);
                    carried.extend(body.claims.iter().cloned());
                }
            }
            // Claims the chain carried (available whatever the node's pool serves), then the
            // node's.
            for claim in carried {
                self.offer(&mut client, claim, None);
            }
            for raw in &updates.claims {
                let Ok(claim) = SignedClaim::from_ssz_bytes(raw) else {
                    tracing::warn!("light client: malformed claim from the node");
                    continue;
                };
                self.offer(&mut client, claim, None);
            }
            // Gossiped claims whose headers are final now.
            let tip = client.tip().0;
            let later = self.early.split_off(&tip.saturating_add(1));
            let ready = std::mem::replace(&mut self.early, later);
            for (peer, claim) in ready.into_values().flatten() {
                self.offer(&mut client, claim, Some(peer));
            }
        }
        Ok(full)
    }

    /// The proof of execution `need` asks for, from the first node that has one the client
    /// accepts; `None` (each refusal logged) when none does.
    async fn fetch_proof(&self, need: &crate::client::Need) -> Option<B256> {
        for upstream in &self.upstreams {
            let node = upstream.base();
            let proof = match upstream.proof(need.height, &need.execute).await {
                Ok(Some(bytes)) => match ExecutionProof::from_bytes(&bytes) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(height = need.height, %node, error = %e,
                            "light client: malformed proof of execution");
                        continue;
                    }
                },
                Ok(None) => {
                    tracing::warn!(height = need.height, %node,
                        "light client: the node has no proof of execution for this block");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(height = need.height, %node, error = %e,
                        "light client: proof of execution not fetched");
                    continue;
                }
            };
            match self.lock().on_proof(need.height, &proof) {
                Ok(root) => return Some(root),
                Err(e) => tracing::warn!(height = need.height, %node, error = %e,
                    "light client: proof of execution refused"),
            }
        }
        None
    }

    /// Lets the client decide; fetches the proofs it asks for.
    async fn decide(&mut self) {
        loop {
            let need = self.lock().advance(now_ms());
            let Some(need) = need else { break };
            let now = now_ms();
            if self
                .asked
                .get(&need.height)
                .is_some_and(|t| now.saturating_sub(*t) < PROOF_RETRY_MS)
            {
                break;
            }
            self.asked.insert(need.height, now);
            tracing::info!(height = need.height, reason = ?need.reason, execute = ?need.execute,
                "light client: fetching a proof of execution");
            let Some(root) = self.fetch_proof(&need).await else {
                break;
            };
            tracing::info!(height = need.height, %root,
                shards_re_executed = need.execute.len(),
                "light client: re-executed the block; its root is believed");
            let mut client = self.lock();
            for wrong in client.take_wrong_claims() {
                tracing::warn!(executor = wrong.claim.executor.0, height = wrong.claim.message.height,
                    claimed = %wrong.claim.message.post_state_root, true_root = %wrong.true_root,
                    "light client: executor signed a wrong claim (slashable by proof of execution)");
            }
        }
        let (head, root, stats) = {
            let c = self.lock();
            let (h, r) = c.head();
            (h, r, c.stats())
        };
        self.asked.retain(|h, _| *h > head);
        while self.seen.first_key_value().is_some_and(|(h, _)| *h <= head) {
            self.seen.pop_first();
        }
        let now = now_ms();
        if now.saturating_sub(self.last_line) >= 10_000 {
            self.last_line = now;
            tracing::info!(head, %root, re_executions = stats.re_executions,
                finalized_epoch = self.headers.finalized_epoch(),
                unfinalized_headers = self.headers.unfinalized(),
                "light client: following");
        }
    }
}
