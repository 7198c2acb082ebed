//! The devnet's executors and light client (issue #7 inside #8).
//!
//! - **Executors.** Each of the genesis executors keeps its own state replica (in memory,
//!   rebuilt from the chain's finalized blocks at start), executes every block the clustered
//!   node executes, and signs a `Claim` about its post-state root with its bonded key.
//! - **Light client.** A [`LightClient`] trusting the genesis follows the same headers and the
//!   executors' claims, decides each block by the rules of `phalanx_light::client`, and fetches
//!   a proof of execution from executor 0's replica (an untrusted full node as far as it is
//!   concerned) whenever claims disagree or are missing.
//!
//! The dashboard and metrics show the light client's head and how much of the claiming bond
//! agreed with the root it believes.
//!
//! - **Serving light clients.** The devnet is also the untrusted full node a `phalanx light`
//!   process follows (`phalanx_light::wire`): the executed headers, the executors' signed
//!   claims of the last [`KEEP_CLAIMS`] heights, proofs of execution built from executor 0's
//!   replica (the last [`KEEP`] blocks), and the genesis as the suggested checkpoint.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use alloy_primitives::{B256, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use phalanx_cluster::equivocation::{Heard, Watch};
use phalanx_cluster::wire::{DECLARATION_TOPIC, ExecHeader, SLASHING_TOPIC};
use phalanx_consensus::executors::ExecutorRegistry;
use phalanx_crypto::SecretKey;
use phalanx_execution::changes::Changes;
use phalanx_execution::proof::ExecutionProof;
use phalanx_execution::store::StateStore;
use phalanx_light::client::{Config, LightClient, LightHeader};
use phalanx_light::wire::{
    BOOTSTRAP_PATH, BlockShards, Bootstrap, CLAIMS_PATH, CLAIMS_TOPIC, ClaimsAnswer,
    ClaimsSubmission, EXECUTOR_OPS_PATH, EXECUTORS_PATH, ExecutorInfo, ExecutorOpsAnswer,
    ExecutorOpsSubmission, ExecutorsAnswer, FINALITY_PATH, FinalityQuery, FinalityUpdate,
    MAX_ATTESTATIONS, MAX_CLAIMS, MAX_HEADERS, PROOF_ROUTE, ProofQuery, SHARDS_ROUTE, UPDATES_PATH,
    Updates, UpdatesQuery,
};
use phalanx_net::{Network, Offence};
use phalanx_types::{
    Attestation, Epoch, ExecutorIndex, FraudProof, Shard, SignedClaim, SigningContext,
};
use ssz::{Decode, Encode};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{Shared, lock};

/// Unfinalized blocks each executor keeps (it can prove any of them).
const KEEP: u64 = 64;

/// Heights whose claims are served to light clients.
const KEEP_CLAIMS: u64 = 1024;

/// A finalized block for the executors: its execution header, its shards, its consensus root.
pub(crate) type Final = (ExecHeader, Vec<Shard>, B256);

/// What the executors' task hands the chain's producers.
#[derive(Debug)]
pub(crate) enum ChainOp {
    /// A signed claim, to be carried in a block.
    Claim(SignedClaim),
    /// A proof that a claim is wrong, to slash its signer on chain.
    Fraud(FraudProof),
    /// An executor deposit, answered with why the chain refuses it, if it does.
    Deposit(
        phalanx_types::SignedExecutorDeposit,
        oneshot::Sender<Result<(), String>>,
    ),
    /// Slashing evidence from the gossip network (already judged by the rules block import
    /// applies), to be carried in a block.
    Evidence(Box<phalanx_types::Evidence>),
    /// An executor exit, answered likewise.
    Exit(
        phalanx_types::SignedExecutorExit,
        oneshot::Sender<Result<(), String>>,
    ),
}

/// A light client's request for a proof of execution (height, the shards to re-execute),
/// answered with its SSZ or why the request is bad.
type ProofRequest = (u64, ProofQuery, oneshot::Sender<Result<Vec<u8>, String>>);

/// Writes the keystores of the executors run as processes (index `first` on).
pub(crate) fn write_external_keys(
    dir: &std::path::Path,
    seed: &str,
    keys: &[(String, SecretKey)],
    first: usize,
) -> Result<(), crate::DevnetError> {
    write_keys(dir, seed, "executor", keys, first)
}

/// Writes `keys` as EIP-2335 keystores `dir/NNNN.json` (index `first` on) with
/// `dir/password.txt`.
pub(crate) fn write_keys(
    dir: &std::path::Path,
    seed: &str,
    role: &str,
    keys: &[(String, SecretKey)],
    first: usize,
) -> Result<(), crate::DevnetError> {
    if keys.is_empty() {
        return Ok(());
    }
    let io = |path: std::path::PathBuf| move |source| crate::DevnetError::Io { path, source };
    std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
    for (i, (path, sk)) in keys.iter().enumerate() {
        let index = first + i;
        let json = phalanx_spec::devnet::keystore_json(
            seed,
            path,
            sk,
            &format!("phalanx devnet {role} {index}"),
        )
        .map_err(|e| crate::DevnetError::Genesis(e.to_string()))?;
        let file = dir.join(format!("{index:04}.json"));
        phalanx_types::fs::write_atomic(&file, json.as_bytes()).map_err(io(file.clone()))?;
    }
    let password = dir.join("password.txt");
    phalanx_types::fs::write_atomic(
        &password,
        format!("{}\n", phalanx_spec::devnet::DEVNET_PASSWORD).as_bytes(),
    )
    .map_err(io(password.clone()))
}

/// What the devnet serves light clients, filled by the executors' task.
#[derive(Debug, Default)]
pub(crate) struct Feed {
    /// The suggested checkpoint (the genesis).
    pub(crate) checkpoint: Mutex<Option<Bootstrap>>,
    /// What posted claims are checked with.
    check: Mutex<Option<(ExecutorRegistry, SigningContext)>>,
    /// Posted claims, to the executors' task.
    posted: Mutex<Option<mpsc::UnboundedSender<SignedClaim>>>,
    /// Claims to publish on the gossip topic (the devnet's own and those posted over HTTP;
    /// gossiped ones are relayed by gossipsub itself), when the devnet is on the network.
    pub(crate) publish: Mutex<Option<mpsc::UnboundedSender<SignedClaim>>>,
    /// Signed claims by height.
    claims: Mutex<BTreeMap<u64, Vec<SignedClaim>>>,
    /// To the executors' task.
    proofs: Mutex<Option<mpsc::UnboundedSender<ProofRequest>>>,
    /// Aggregated attestations from the canonical chain's bodies, by target epoch (the last
    /// [`KEEP_EPOCHS`]).
    attestations: Mutex<BTreeMap<u64, Vec<Attestation>>>,
}

/// Epochs of attestations served for light clients' finality checks (a client further behind
/// needs a newer checkpoint).
const KEEP_EPOCHS: u64 = 4096;

/// Replaces the attestations of target epochs `from` and later with `fresh` (the chain thread
/// calls this on each new head; earlier epochs are final and kept as they are).
pub(crate) fn record_attestations(feed: &Feed, from: Epoch, fresh: Vec<Attestation>) {
    let mut map = lock(&feed.attestations);
    let _ = map.split_off(&from.0);
    for a in fresh {
        map.entry(a.data.target.epoch.0).or_default().push(a);
    }
    while map.len() as u64 > KEEP_EPOCHS {
        map.pop_first();
    }
}

async fn finality(State(shared): State<Arc<Shared>>, Query(q): Query<FinalityQuery>) -> Response {
    let attestations: Vec<Bytes> = lock(&shared.light_feed.attestations)
        .range(q.from..)
        .flat_map(|(_, a)| a.iter())
        .take(MAX_ATTESTATIONS)
        .map(|a| Bytes::from(a.as_ssz_bytes()))
        .collect();
    axum::Json(FinalityUpdate { attestations }).into_response()
}

/// The light protocol's routes.
pub(crate) fn router() -> axum::Router<Arc<Shared>> {
    use axum::routing::get;
    axum::Router::new()
        .route(BOOTSTRAP_PATH, get(bootstrap))
        .route(UPDATES_PATH, get(updates))
        .route(FINALITY_PATH, get(finality))
        .route(PROOF_ROUTE, get(proof))
        .route(SHARDS_ROUTE, get(shards))
        .route(CLAIMS_PATH, axum::routing::post(post_claims))
        .route(EXECUTORS_PATH, get(executors))
        .route(EXECUTOR_OPS_PATH, axum::routing::post(post_executor_ops))
}

/// The executor registry at the chain's head.
async fn executors(State(shared): State<Arc<Shared>>) -> Response {
    let Some(registry) = lock(&shared.executors).clone() else {
        return not_found("the chain has not started".into());
    };
    let executors = (0..registry.len() as u64)
        .filter_map(|i| {
            let e = registry.get(ExecutorIndex(i))?;
            Some(ExecutorInfo {
                index: i,
                pubkey: Bytes::copy_from_slice(e.pubkey.to_bytes().as_slice()),
                bond: e.bond,
                slashed: e.slashed,
                exit_epoch: e.exit_epoch.map(|x| x.0),
            })
        })
        .collect();
    axum::Json(ExecutorsAnswer { executors }).into_response()
}

/// Executor deposits and exits for the producers to carry, each checked by the chain first.
async fn post_executor_ops(
    State(shared): State<Arc<Shared>>,
    axum::Json(body): axum::Json<ExecutorOpsSubmission>,
) -> Response {
    let Some(ops) = lock(&shared.chain_ops).clone() else {
        return not_found("the chain has not started".into());
    };
    let mut answer = ExecutorOpsAnswer::default();
    let mut waiting = Vec::new();
    let max = <phalanx_types::limits::MaxExecutorOps as ssz_types::typenum::Unsigned>::USIZE;
    for (i, raw) in body.deposits.iter().enumerate().take(max) {
        match phalanx_types::SignedExecutorDeposit::from_ssz_bytes(raw) {
            Ok(d) => {
                let (tx, rx) = oneshot::channel();
                let _ = ops.send(ChainOp::Deposit(d, tx));
                waiting.push((format!("deposit {i}"), rx));
            }
            Err(e) => answer
                .refused
                .push(format!("deposit {i}: malformed: {e:?}")),
        }
    }
    for (i, raw) in body.exits.iter().enumerate().take(max) {
        match phalanx_types::SignedExecutorExit::from_ssz_bytes(raw) {
            Ok(x) => {
                let (tx, rx) = oneshot::channel();
                let _ = ops.send(ChainOp::Exit(x, tx));
                waiting.push((format!("exit {i}"), rx));
            }
            Err(e) => answer.refused.push(format!("exit {i}: malformed: {e:?}")),
        }
    }
    drop(ops);
    for (what, rx) in waiting {
        match tokio::time::timeout(std::time::Duration::from_secs(5), rx).await {
            Ok(Ok(Ok(()))) => answer.accepted += 1,
            Ok(Ok(Err(why))) => answer.refused.push(format!("{what}: {why}")),
            _ => answer
                .refused
                .push(format!("{what}: the chain did not answer")),
        }
    }
    let code = if answer.accepted == 0 && !answer.refused.is_empty() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (code, axum::Json(answer)).into_response()
}

async fn shards(State(shared): State<Arc<Shared>>, Path(height): Path<u64>) -> Response {
    let blocks = shared.blocks();
    let Some(block) = blocks.get(&height) else {
        return not_found(format!("block {height} is not known"));
    };
    let count = block.header.shard_roots.len();
    let mut txs: Vec<Vec<Vec<u8>>> = vec![Vec::new(); count];
    for (shard, raw) in &block.raw {
        if let Some(list) = txs.get_mut(usize::from(*shard)) {
            list.push(raw.to_vec());
        }
    }
    drop(blocks);
    let mut shards = Vec::with_capacity(count);
    for list in txs {
        match Shard::from_transactions(list) {
            Ok(s) => shards.push(Bytes::from(s.as_ssz_bytes())),
            Err(e) => return not_found(format!("block {height}: {e:?}")),
        }
    }
    axum::Json(BlockShards { shards }).into_response()
}

/// Why a submitted claim (posted or gossiped) is refused, and what it costs its sender.
fn check_submitted(shared: &Shared, claim: &SignedClaim) -> Result<(), (Offence, String)> {
    // The chain head's registry (deposits, exits and slashings applied) once there is one,
    // the genesis registry before.
    let head = lock(&shared.executors).clone();
    let Some((registry, signing)) = lock(&shared.light_feed.check)
        .as_ref()
        .map(|(genesis, signing)| (head.unwrap_or_else(|| Arc::new(genesis.clone())), *signing))
    else {
        return Err((Offence::Useless, "this node runs no executors".into()));
    };
    let m = &claim.message;
    let known = shared
        .blocks()
        .get(&m.height)
        .is_some_and(|b| b.header.hash() == m.block_hash);
    if !known {
        return Err((
            Offence::Useless,
            format!("block {} at height {} is not known", m.block_hash, m.height),
        ));
    }
    let slashed = lock(&shared.chain)
        .as_ref()
        .is_some_and(|s| s.executors_slashed.contains(&claim.executor.0));
    match registry.get(claim.executor) {
        None => Err((
            Offence::Invalid,
            format!("executor {} is not bonded", claim.executor.0),
        )),
        Some(_) if slashed => Err((
            Offence::Useless,
            format!("executor {} is slashed on chain", claim.executor.0),
        )),
        Some(e) => signing
            .verify(m, &e.pubkey, &claim.signature)
            .map_err(|err| {
                (
                    Offence::Invalid,
                    format!("executor {}: {err}", claim.executor.0),
                )
            }),
    }
}

/// Hands a checked claim to the executors' task; `false` when it has stopped.
fn hand_over(shared: &Shared, claim: SignedClaim) -> bool {
    lock(&shared.light_feed.posted)
        .as_ref()
        .is_some_and(|tx| tx.send(claim).is_ok())
}

/// Checks posted claims (bonded signer not slashed on chain, valid signature, a block this
/// node holds) and hands the good ones to the executors' task.
async fn post_claims(
    State(shared): State<Arc<Shared>>,
    axum::Json(body): axum::Json<ClaimsSubmission>,
) -> Response {
    if lock(&shared.light_feed.check).is_none() {
        return not_found("this node runs no executors".into());
    }
    let mut answer = ClaimsAnswer::default();
    for (i, raw) in body.claims.iter().enumerate().take(MAX_CLAIMS) {
        let claim = match SignedClaim::from_ssz_bytes(raw) {
            Ok(c) => c,
            Err(e) => {
                answer.refused.push(format!("claim {i}: malformed: {e:?}"));
                continue;
            }
        };
        if let Err((_, why)) = check_submitted(&shared, &claim) {
            tracing::debug!(reason = %why, "devnet: posted claim refused");
            answer.refused.push(format!("claim {i}: {why}"));
            continue;
        }
        publish(&shared, &claim);
        if hand_over(&shared, claim) {
            answer.accepted += 1;
        }
    }
    let code = if answer.accepted == 0 && !answer.refused.is_empty() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (code, axum::Json(answer)).into_response()
}

/// Queues `claim` for the gossip topic (nothing when the devnet is not on the network).
fn publish(shared: &Shared, claim: &SignedClaim) {
    if let Some(tx) = lock(&shared.light_feed.publish).as_ref() {
        let _ = tx.send(claim.clone());
    }
}

/// Counts of claims received by gossip.
#[derive(Debug, Default)]
pub(crate) struct GossipCounts {
    /// Checked and handed to the executors' task.
    pub(crate) accepted: std::sync::atomic::AtomicU64,
    /// Refused (the author scored down).
    pub(crate) refused: std::sync::atomic::AtomicU64,
    /// New slashing evidence handed to the chain's producers: heard on the slashing topic, or
    /// made here from two conflicting declarations heard on the declaration topic.
    pub(crate) evidence: std::sync::atomic::AtomicU64,
    /// Declarations and evidence refused (their authors scored down).
    pub(crate) slashing_refused: std::sync::atomic::AtomicU64,
}

/// The devnet on the chain's gossip network: every claim on [`CLAIMS_TOPIC`] is checked as a
/// posted one is; a good one goes to the executors' task (served to light clients, carried by
/// the chain), the author of a bad one is reported to the network — [`Offence::Useless`] for
/// a claim about a block this node does not hold (the seed's spam: dropped at once, unweighed,
/// and cheap to penalise since an honest executor ahead of this node can send one),
/// [`Offence::Undecodable`] / [`Offence::Invalid`] for garbage or a bad signature — so a
/// spammer is banned after a handful of messages and its later messages never reach here.
///
/// It also publishes on the topic the claims of its own executors and those posted to it, so
/// light clients on the network receive every claim the devnet has.
pub(crate) async fn gossip_task(
    mut feed: phalanx_cluster::feed::Feed<phalanx_net::p2p::Libp2pNetwork>,
    mut blocks: Option<mpsc::UnboundedReceiver<crate::ToP2p>>,
    shared: Arc<Shared>,
    mut to_publish: mpsc::UnboundedReceiver<SignedClaim>,
    mut watchdog: Watch,
    mut shutdown: watch::Receiver<bool>,
) {
    use std::sync::atomic::Ordering;
    // Relay only what passes the checks a posted claim passes: a claim about a block this
    // node does not hold is not relayed (maybe a race: ignored), garbage or a bad signature is
    // rejected. The role below still sees every message and scores its author.
    let judge = shared.clone();
    let validator: phalanx_net::p2p::Validator = Arc::new(move |data: &[u8]| {
        use phalanx_net::p2p::Verdict;
        match SignedClaim::from_ssz_bytes(data) {
            Err(_) => Verdict::Reject,
            Ok(c) => match check_submitted(&judge, &c) {
                Ok(()) => Verdict::Accept,
                Err((Offence::Useless, _)) => Verdict::Ignore,
                Err(_) => Verdict::Reject,
            },
        }
    });
    if let Err(e) = feed.net_mut().set_validator(CLAIMS_TOPIC, validator) {
        tracing::warn!(error = %e, "devnet: gossip validation not set");
    }
    // Declarations and slashing evidence: relayed only when they check out
    // (`phalanx_cluster::equivocation`, rule 1).
    for topic in [DECLARATION_TOPIC, SLASHING_TOPIC] {
        let judge = watchdog.judge().clone();
        let validator: phalanx_net::p2p::Validator =
            Arc::new(move |data: &[u8]| judge.verdict(data));
        if let Err(e) = feed.net_mut().set_validator(topic, validator) {
            tracing::warn!(error = %e, topic, "devnet: gossip validation not set");
        }
    }
    loop {
        let event = tokio::select! {
            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return; } else { continue },
            Some(claim) = to_publish.recv() => {
                if let Err(e) = feed.net_mut().publish(CLAIMS_TOPIC, claim.as_ssz_bytes()) {
                    tracing::debug!(error = %e, "devnet: cannot publish a claim");
                }
                continue;
            }
            // Executed blocks' shards, consensus blocks and aggregates, to the nodes
            // following the chain.
            Some(out) = async {
                match blocks.as_mut() {
                    Some(b) => b.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                match out {
                    crate::ToP2p::Executed(header, shards) => feed.publish(header, shards),
                    crate::ToP2p::Imported(block) => feed.publish_chain(*block),
                    crate::ToP2p::Attestation(a) => feed.publish_attestation(&a),
                    crate::ToP2p::Declaration(d) => {
                        feed.publish_declaration(&d);
                        // A validator of this node that someone heard declaring otherwise.
                        if let Some(e) = watchdog.remember(d) {
                            take_evidence(&shared, &feed, e, true);
                        }
                    }
                    crate::ToP2p::Evidence(e) => {
                        if let Ok(Some(e)) = watchdog.on_evidence(e) {
                            feed.publish_evidence(&e);
                        }
                    }
                }
                continue;
            }
            e = feed.net_mut().recv() => match e { Some(e) => e, None => return },
        };
        let (from, data) = match event {
            // Requests for blocks' shards and headers, answered from what was executed.
            e @ phalanx_net::NetEvent::Direct { .. } => {
                feed.answer(e);
                continue;
            }
            phalanx_net::NetEvent::Gossip { from, topic, data } => {
                if topic == DECLARATION_TOPIC || topic == SLASHING_TOPIC {
                    on_equivocation(&shared, &mut feed, &mut watchdog, from, &data);
                    continue;
                }
                if topic != CLAIMS_TOPIC {
                    continue;
                }
                (from, data)
            }
        };
        let checked = SignedClaim::from_ssz_bytes(&data)
            .map_err(|e| (Offence::Undecodable, format!("malformed claim: {e:?}")))
            .and_then(|c| check_submitted(&shared, &c).map(|()| c));
        match checked {
            Ok(claim) => {
                shared.gossip.accepted.fetch_add(1, Ordering::Relaxed);
                hand_over(&shared, claim);
            }
            Err((offence, why)) => {
                shared.gossip.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %from, ?offence, reason = %why, "devnet: gossiped claim refused");
                feed.net_mut().report(from, offence);
            }
        }
    }
}

/// A declaration or slashing evidence from the gossip network, by the equivocation watch
/// (`phalanx_cluster::equivocation`): refused ones score their author down; new evidence goes
/// to the chain's producers, and evidence made here from two declarations is published.
fn on_equivocation(
    shared: &Shared,
    feed: &mut phalanx_cluster::feed::Feed<phalanx_net::p2p::Libp2pNetwork>,
    watchdog: &mut Watch,
    from: phalanx_net::PeerKey,
    data: &[u8],
) {
    use std::sync::atomic::Ordering;
    match watchdog.judge().message(data) {
        Err(why) => {
            shared
                .gossip
                .slashing_refused
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %from, reason = %why, "devnet: gossiped declaration or evidence refused");
            feed.net_mut().report(from, Offence::Invalid);
        }
        Ok(heard) => {
            let made_here = matches!(heard, Heard::Declaration(_));
            if let Some(e) = watchdog.on_heard(heard) {
                take_evidence(shared, feed, e, made_here);
            }
        }
    }
}

/// New slashing evidence: to the chain's producers, and on the slashing topic when it was
/// made here (heard evidence is relayed by gossip itself).
fn take_evidence(
    shared: &Shared,
    feed: &phalanx_cluster::feed::Feed<phalanx_net::p2p::Libp2pNetwork>,
    evidence: phalanx_types::Evidence,
    publish: bool,
) {
    use std::sync::atomic::Ordering;
    shared.gossip.evidence.fetch_add(1, Ordering::Relaxed);
    if publish {
        feed.publish_evidence(&evidence);
    }
    let sent = lock(&shared.chain_ops)
        .as_ref()
        .is_some_and(|ops| ops.send(ChainOp::Evidence(Box::new(evidence))).is_ok());
    if !sent {
        tracing::debug!("devnet: the chain is stopping; slashing evidence dropped");
    }
}

fn not_found(message: String) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"code": 404, "message": message})),
    )
        .into_response()
}

async fn bootstrap(State(shared): State<Arc<Shared>>) -> Response {
    match *lock(&shared.light_feed.checkpoint) {
        Some(c) => axum::Json(c).into_response(),
        None => not_found("this node runs no executors".into()),
    }
}

async fn updates(State(shared): State<Arc<Shared>>, Query(q): Query<UpdatesQuery>) -> Response {
    let limit = q
        .limit
        .map_or(MAX_HEADERS, |l| usize::try_from(l).unwrap_or(MAX_HEADERS))
        .min(MAX_HEADERS);
    let mut headers = Vec::new();
    let mut blocks = Vec::new();
    let mut bodies = Vec::new();
    for (_, b) in shared.blocks().range(q.from..).take(limit) {
        headers.push(Bytes::from(b.header.as_ssz_bytes()));
        let ssz = |v: Option<Vec<u8>>| v.map(Bytes::from).unwrap_or_default();
        blocks.push(ssz(b.signed.as_ref().map(Encode::as_ssz_bytes)));
        bodies.push(ssz(b.body.as_ref().map(Encode::as_ssz_bytes)));
    }
    let claims: Vec<Bytes> = lock(&shared.light_feed.claims)
        .range(q.claims_from..)
        .flat_map(|(_, c)| c.iter())
        .take(MAX_CLAIMS)
        .map(|c| Bytes::from(c.as_ssz_bytes()))
        .collect();
    axum::Json(Updates {
        provable: shared.executed().map_or(0, |h| h.number),
        headers,
        blocks,
        bodies,
        claims,
    })
    .into_response()
}

async fn proof(
    State(shared): State<Arc<Shared>>,
    Path(height): Path<u64>,
    Query(q): Query<ProofQuery>,
) -> Response {
    let (tx, rx) = oneshot::channel();
    let sent = lock(&shared.light_feed.proofs)
        .as_ref()
        .is_some_and(|p| p.send((height, q, tx)).is_ok());
    if !sent {
        return not_found("this node runs no executors".into());
    }
    match rx.await {
        Ok(Ok(bytes)) => (
            [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
            bytes,
        )
            .into_response(),
        Ok(Err(bad)) => (axum::http::StatusCode::BAD_REQUEST, bad).into_response(),
        Err(_) => not_found(format!(
            "no proof of execution for block {height} (the last {KEEP} executed blocks are \
             provable)"
        )),
    }
}

/// What the dashboard reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LightStatus {
    /// The light client's head height.
    pub(crate) head: u64,
    /// Its root there.
    pub(crate) root: B256,
    /// Share of the claiming bond that agreed with the believed root, over the last decided
    /// blocks (1.0 when every claim agreed).
    pub(crate) agreement: f64,
    /// Proofs of execution the client re-executed.
    pub(crate) re_executions: u64,
    /// Claims signed by the executors.
    pub(crate) claims: u64,
    /// Executors.
    pub(crate) executors: usize,
}

struct Executor {
    index: u64,
    key: SecretKey,
    store: StateStore,
    /// Executed blocks not yet finalized in the replica, oldest first.
    kept: std::collections::VecDeque<B256>,
}

/// Starts the executors and the light client on the blocks of `blocks` (after replaying
/// `resumed`). Returns the task.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start(
    keys: Vec<SecretKey>,
    registry: ExecutorRegistry,
    signing: SigningContext,
    genesis: (ExecHeader, Changes),
    resumed: Vec<Final>,
    mut blocks: mpsc::UnboundedReceiver<Final>,
    ops: std::sync::mpsc::Sender<ChainOp>,
    lying: Option<(u32, u64)>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let (genesis_header, alloc) = genesis;
    let mut executors = Vec::new();
    let mut genesis_root = B256::ZERO;
    for (i, key) in keys.into_iter().enumerate() {
        let store = StateStore::in_memory().map_err(|e| e.to_string())?;
        genesis_root = store
            .init_genesis(genesis_header.hash(), &alloc)
            .map_err(|e| e.to_string())?;
        executors.push(Executor {
            index: i as u64,
            key,
            store,
            kept: Default::default(),
        });
    }
    *lock(&shared.light_feed.checkpoint) = Some(Bootstrap {
        height: 0,
        block_hash: genesis_header.hash(),
        state_root: genesis_root,
    });
    let (proofs_tx, mut proofs) = mpsc::unbounded_channel::<ProofRequest>();
    *lock(&shared.light_feed.proofs) = Some(proofs_tx);
    let (posted_tx, mut posted) = mpsc::unbounded_channel::<SignedClaim>();
    *lock(&shared.light_feed.posted) = Some(posted_tx);
    *lock(&shared.light_feed.check) = Some((registry.clone(), signing));
    let client = LightClient::new(
        Config::default(),
        signing,
        registry,
        (0, genesis_header.hash(), genesis_root),
    );
    let count = executors.len();
    Ok(tokio::spawn(async move {
        let mut run = Run {
            executors,
            client,
            signing,
            roots: BTreeMap::from([(0, genesis_root)]),
            shards: BTreeMap::new(),
            shared,
            claims: 0,
            count,
            requested: None,
            ops,
            lying,
            consensus_roots: BTreeMap::new(),
            effects: BTreeMap::new(),
            accused: Default::default(),
        };
        for (header, shards, root) in resumed {
            run.block(&header, &shards, root, now_ms());
        }
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
        loop {
            tokio::select! {
                r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return; },
                b = blocks.recv() => match b {
                    Some((header, shards, root)) => run.block(&header, &shards, root, now_ms()),
                    None => return,
                },
                _ = tick.tick() => run.decide(now_ms()),
                Some((height, query, reply)) = proofs.recv() => {
                    // Not provable here: the reply is dropped, which answers 404.
                    if let Some(answer) = run.requested_proof(height, &query) {
                        let _ = reply.send(answer);
                    }
                }
                Some(claim) = posted.recv() => run.claim(claim),
            }
        }
    }))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

struct Run {
    executors: Vec<Executor>,
    client: LightClient,
    signing: SigningContext,
    /// True roots as executor 0 computed them, by height (for the proof it serves).
    roots: BTreeMap<u64, B256>,
    /// The shards of the blocks executor 0 can prove, by height.
    shards: BTreeMap<u64, Vec<Shard>>,
    shared: Arc<Shared>,
    claims: u64,
    count: usize,
    requested: Option<u64>,
    /// To the chain's producers.
    ops: std::sync::mpsc::Sender<ChainOp>,
    /// Fault injection: (executor, height) of a lie.
    lying: Option<(u32, u64)>,
    /// Consensus roots of the blocks executor 0 can prove, by height.
    consensus_roots: BTreeMap<u64, B256>,
    /// Executor 0's effects roots of those blocks, by height.
    effects: BTreeMap<u64, Vec<B256>>,
    /// Executors a wrong-claim proof was sent against.
    accused: std::collections::BTreeSet<u64>,
}

impl Run {
    /// One finalized block: every executor executes and claims; the light client takes the
    /// header and the claims.
    fn block(&mut self, header: &ExecHeader, shards: &[Shard], root: B256, now: u64) {
        let light = LightHeader {
            height: header.number,
            hash: header.hash(),
            parent: header.parent,
            shard_roots: header.shard_roots.to_vec(),
            env: header.env(),
        };
        if let Err(e) = self.client.on_header(light.clone(), now) {
            tracing::warn!(error = %e, "devnet light client: header refused");
            return;
        }
        let txs: Vec<Vec<Bytes>> = shards
            .iter()
            .map(phalanx_execution::block::shard_txs)
            .collect();
        let prev = self
            .roots
            .get(&header.number.saturating_sub(1))
            .copied()
            .unwrap_or_default();
        // An executor the chain slashed has no bond left: it keeps its replica but claims no
        // more.
        let slashed = lock(&self.shared.chain)
            .as_ref()
            .map(|s| s.executors_slashed.clone())
            .unwrap_or_default();
        let mut signed_here = Vec::with_capacity(self.executors.len());
        for ex in &mut self.executors {
            let result = match ex
                .store
                .execute(header.parent, light.hash, &light.env, &txs)
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(executor = ex.index, height = header.number, error = %e,
                        "devnet executor: cannot execute");
                    continue;
                }
            };
            ex.kept.push_back(light.hash);
            if ex.kept.len() as u64 > KEEP
                && let Some(old) = ex.kept.pop_front()
                && let Err(e) = ex.store.finalize(old)
            {
                tracing::error!(executor = ex.index, error = %e, "devnet executor: finalize");
            }
            let mut effects = result.effects_roots();
            let mut post = result.post_state_root;
            if ex.index == 0 {
                self.roots.insert(header.number, post);
                self.shards.insert(header.number, shards.to_vec());
                self.consensus_roots.insert(header.number, root);
                self.effects.insert(header.number, effects.clone());
                // Executor 0 can prove the blocks its replica keeps unfinalized: no further.
                while self.roots.len() as u64 > KEEP + 1 {
                    self.roots.pop_first();
                }
                while self.shards.len() as u64 > KEEP {
                    self.shards.pop_first();
                }
                while self.consensus_roots.len() as u64 > KEEP {
                    self.consensus_roots.pop_first();
                }
                while self.effects.len() as u64 > KEEP {
                    self.effects.pop_first();
                }
            }
            if self.lying == Some((ex.index as u32, header.number)) {
                // A wrong root for shard 0's effects and for the block, as an executor whose
                // shard 0 went wrong would claim.
                tracing::warn!(
                    executor = ex.index,
                    height = header.number,
                    "devnet executor: signing a wrong root (--lying-executor)"
                );
                if let Some(first) = effects.first_mut() {
                    *first = alloy_primitives::keccak256(first.as_slice());
                }
                post = alloy_primitives::keccak256(post.as_slice());
            }
            if slashed.contains(&ex.index) {
                continue;
            }
            let message = LightClient::claim_for(&light, prev, &effects, post);
            signed_here.push(SignedClaim {
                executor: ExecutorIndex(ex.index),
                signature: self.signing.sign(&message, &ex.key),
                message,
            });
        }
        for signed in signed_here {
            publish(&self.shared, &signed);
            self.claim(signed);
        }
        self.decide(now);
    }

    /// A signed claim (an executor's here, or one posted by a `phalanx executor`): served to
    /// light clients and weighed by the in-process one.
    fn claim(&mut self, signed: SignedClaim) {
        self.claims += 1;
        {
            let mut served = lock(&self.shared.light_feed.claims);
            let at = served.entry(signed.message.height).or_default();
            if at.contains(&signed) {
                return;
            }
            at.push(signed.clone());
            while served.len() as u64 > KEEP_CLAIMS {
                served.pop_first();
            }
        }
        let _ = self.ops.send(ChainOp::Claim(signed.clone()));
        self.watch(&signed);
        if let Err(e) = self.client.on_claim(signed) {
            tracing::warn!(error = %e, "devnet light client: claim refused");
        }
    }

    /// An honest full node's watch over claims: a claim from the true parent root whose
    /// post-state root or effects roots differ from executor 0's is proven wrong with a full
    /// proof of execution from executor 0's replica and handed to the chain as a `WrongClaim`
    /// fraud proof (once per executor: slashing takes the whole bond). A claim from another
    /// parent root cannot be proven from this replica (the witness must hang from the
    /// claim's own parent state); the first wrong claim of a lying chain of claims is.
    fn watch(&mut self, signed: &SignedClaim) {
        let m = &signed.message;
        let (Some(post), Some(prev), Some(effects), Some(root)) = (
            self.roots.get(&m.height),
            m.height.checked_sub(1).and_then(|p| self.roots.get(&p)),
            self.effects.get(&m.height),
            self.consensus_roots.get(&m.height),
        ) else {
            return;
        };
        let ours = self.client.header(m.height).map(|h| h.hash);
        if m.prev_state_root != *prev || ours != Some(m.block_hash) {
            return;
        }
        let wrong = m.post_state_root != *post
            || (m.effects_roots.len() == effects.len()
                && m.effects_roots.iter().zip(effects).any(|(a, b)| a != b));
        if !wrong || self.accused.contains(&signed.executor.0) {
            return;
        }
        let root = *root;
        let all: Vec<usize> = (0..effects.len()).collect();
        let Some(proof) = self.proof(m.height, &all) else {
            tracing::warn!(
                executor = signed.executor.0,
                height = m.height,
                "devnet: a wrong claim, but no proof of execution to show it"
            );
            return;
        };
        let evidence = phalanx_types::WrongClaimEvidence {
            claim: signed.clone(),
            execution_proof: match ssz_types::VariableList::new(proof.to_bytes()) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = ?e, "devnet: proof of execution too large for a fraud proof");
                    return;
                }
            },
        };
        let Ok(payload) = ssz_types::VariableList::new(evidence.as_ssz_bytes()) else {
            tracing::warn!("devnet: wrong-claim evidence too large for a fraud proof");
            return;
        };
        tracing::warn!(executor = signed.executor.0, height = m.height, claimed = %m.post_state_root,
            true_root = %post, proof_bytes = payload.len(), "devnet: wrong claim; proving it on chain");
        self.accused.insert(signed.executor.0);
        let _ = self.ops.send(ChainOp::Fraud(FraudProof {
            kind: phalanx_types::FraudProofKind::WrongClaim as u8,
            block_root: root,
            accused: signed.executor.0,
            payload,
        }));
    }

    /// Lets the light client decide; serves it a proof from executor 0's replica when asked.
    fn decide(&mut self, now: u64) {
        if let Some(need) = self.client.advance(now)
            && self.requested != Some(need.height)
        {
            self.requested = Some(need.height);
            tracing::info!(height = need.height, reason = ?need.reason, execute = ?need.execute,
                "devnet light client: fetching a proof of execution");
            if let Some(proof) = self.proof(need.height, &need.execute) {
                match self.client.on_proof(need.height, &proof) {
                    Ok(root) => tracing::info!(height = need.height, %root,
                        "devnet light client: re-executed"),
                    Err(e) => tracing::warn!(error = %e, "devnet light client: proof refused"),
                }
                let _ = self.client.advance(now);
            }
        }
        self.publish();
    }

    /// The proof of block `height` re-executing the shards in `execute`, from executor 0's
    /// replica (`None`: not held, or no longer provable).
    fn proof(&self, height: u64, execute: &[usize]) -> Option<ExecutionProof> {
        let ex = self.executors.first()?;
        let header = self.client.header(height)?;
        let parent_root = *self.roots.get(&height.checked_sub(1)?)?;
        let view = ex.store.view(header.parent).ok()?;
        let shards = self.shards.get(&height)?;
        ExecutionProof::build_partial(&view, parent_root, &header.env, shards, execute).ok()
    }

    /// A proof asked for over HTTP: its SSZ; `Err` for a bad shard list; the reply dropped
    /// when the block is not provable here (a 404).
    fn requested_proof(&self, height: u64, query: &ProofQuery) -> Option<Result<Vec<u8>, String>> {
        let shards = self.shards.get(&height)?.len();
        match query.shards(shards) {
            Ok(execute) => self.proof(height, &execute).map(|p| Ok(p.to_bytes())),
            Err(bad) => Some(Err(bad)),
        }
    }

    fn publish(&mut self) {
        // The light client weighs claims by the chain's registry: executors deposited,
        // exiting, released and slashed on chain.
        if let Some(registry) = lock(&self.shared.executors).clone() {
            *self.client.executors_mut() = (*registry).clone();
        }
        for wrong in self.client.take_wrong_claims() {
            tracing::info!(
                executor = wrong.claim.executor.0,
                height = wrong.claim.message.height,
                "devnet light client: a proof of execution showed this claim wrong"
            );
        }
        let (head, root) = self.client.head();
        // Agreement over the last 8 decided blocks: bond claiming the believed root over all
        // claiming bond.
        let mut agree = 0u128;
        let mut total = 0u128;
        for h in head.saturating_sub(7)..=head {
            let (Some(believed), Some(prev)) = (
                self.client.root_at(h),
                h.checked_sub(1).and_then(|p| self.client.root_at(p)),
            ) else {
                continue;
            };
            for (post, bond) in self.client.claims_from(h, prev) {
                total += u128::from(bond);
                if post == believed {
                    agree += u128::from(bond);
                }
            }
        }
        let status = LightStatus {
            head,
            root,
            agreement: if total == 0 {
                1.0
            } else {
                agree as f64 / total as f64
            },
            re_executions: self.client.stats().re_executions,
            claims: self.claims,
            executors: self.count,
        };
        *lock(&self.shared.light) = Some(status);
    }
}
