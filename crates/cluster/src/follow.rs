//! Following the consensus chain: which headers a node's servers execute.
//!
//! A server following the chain never takes a header from whoever gossips one. Its follower
//! reads the chain's executed headers from a serving node (the light protocol,
//! `phalanx_light::wire`) and checks them exactly as a light client and an executor do
//! ([`phalanx_light::follow`]):
//!
//! 1. **Genesis.** The chain's genesis file gives the allocation and the genesis execution
//!    header, both computed here ([`chain_genesis`]), never taken from the serving node. A
//!    serving node whose first block does not extend that genesis, or whose genesis state root
//!    (when it offers its genesis as the light checkpoint) is not this allocation's, is refused
//!    with both hashes ([`FollowError::GenesisMismatch`], [`FollowError::GenesisStateMismatch`])
//!    before any block runs.
//! 2. **Check.** Each execution header is taken with the signed consensus header it was
//!    derived from: chain link, the scheduled proposer, the producer's and proposer's
//!    signatures, and every derived field (number, parent, time, `PREVRANDAO`, fee recipients,
//!    fee split, shard roots) — so the serving node cannot alter a shard root or the
//!    environment without a producer's and a proposer's keys.
//! 3. **Finality.** A checked header is handed on only once aggregated attestations of over
//!    two thirds of the stake finalize its block (the follower tallies them itself).
//! 4. **Hand-over.** Final headers go, in height order, to the server
//!    ([`HeaderSource::Checked`](crate::server::HeaderSource::Checked)); the follower keeps at
//!    most [`AHEAD`] of them beyond the applied head, so a server that falls behind is not
//!    flooded. The shards come by gossip on the server's shard topics and by request from the
//!    serving peer; the server checks each against the header's shard root before it runs it.
//! 5. **Restart.** The follower starts from the replica's finalized head on disk (the serving
//!    node must still serve that height's header, which must hash to the head's block).
//!
//! Several serving nodes may be given: the follower asks one, and the next when it stops
//! answering (a node that lies can only be refused, never believed, so any of them will do);
//! with none answering it retries every poll, with one warning when they stop answering and
//! one line when one answers again; a progress line every 10 s says where the
//! follower and the server are.

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::B256;
use phalanx_execution::changes::Changes;
use phalanx_execution::store::StateStore;
use phalanx_light::follow::{FinalHeaders, StartError};
use phalanx_light::upstream::{FetchError, Upstream};
use phalanx_light::wire::{Bootstrap, MAX_HEADERS, UpdatesQuery};
use phalanx_spec::Genesis;
use ssz::Decode;
use tokio::sync::watch;

use crate::server::CheckedHeaders;
use crate::wire::ExecHeader;

/// Final headers held beyond the applied head, at most.
pub const AHEAD: usize = 512;

/// How long one request to the serving node may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of a follower.
#[derive(Debug, Clone)]
pub struct FollowConfig {
    /// The serving nodes' URLs (their JSON-RPC addresses; the light protocol is beside them),
    /// asked one at a time: the next when one stops answering.
    pub nodes: Vec<String>,
    /// The chain's genesis.
    pub genesis: Genesis,
    /// Time between polls when there is nothing new.
    pub poll: Duration,
}

/// Why a follower stopped.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The serving node's chain does not start from this genesis.
    #[error(
        "the node at {node} follows another chain: its first block's parent is {theirs}, \
         this genesis file's execution genesis is {ours}"
    )]
    GenesisMismatch {
        /// The serving node.
        node: String,
        /// The genesis hash computed here.
        ours: B256,
        /// The parent of the serving node's block 1.
        theirs: B256,
    },
    /// The serving node's genesis state is not this genesis file's allocation.
    #[error(
        "the node at {node} starts from another genesis state: its root is {theirs}, this \
         genesis file's allocation gives {ours}"
    )]
    GenesisStateMismatch {
        /// The serving node.
        node: String,
        /// The genesis state root computed here.
        ours: B256,
        /// The serving node's.
        theirs: B256,
    },
    /// Following could not start from the replica's head (the serving node lacks that
    /// header, or serves another one there).
    #[error("cannot follow from the replica's head: {0}")]
    Start(String),
    /// The replica failed.
    #[error("state: {0}")]
    State(String),
    /// A bad URL.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// The genesis execution header's hash and the allocation of `genesis`, as every executing
/// node computes them.
pub fn chain_genesis(genesis: &Genesis) -> (B256, Changes) {
    let header = phalanx_light::headers::genesis_header(genesis, genesis.validators_root());
    (
        header.hash(),
        phalanx_light::headers::genesis_changes(genesis),
    )
}

/// Follows the chain served at `config.nodes`, handing final headers to `headers`, until
/// `shutdown` turns true.
pub async fn run(
    config: FollowConfig,
    state: Arc<StateStore>,
    headers: CheckedHeaders,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), FollowError> {
    if config.nodes.is_empty() {
        return Err(FollowError::Start("no node to follow".into()));
    }
    let upstreams = config
        .nodes
        .iter()
        .map(|n| Upstream::new(n, REQUEST_TIMEOUT))
        .collect::<Result<Vec<_>, _>>()?;
    let poll = config.poll.max(Duration::from_millis(10));
    let mut at = 0usize;
    let mut failing = false;
    let mut follow = loop {
        let upstream = &upstreams[at];
        match start(&config, &state, upstream).await {
            Ok(f) => break f,
            Err(FollowError::Fetch(e)) => {
                if !failing {
                    tracing::warn!(node = %upstream.base(), error = %e, "follow: node unreachable; retrying");
                    failing = true;
                }
            }
            // One node on another chain stops a follower that has no other.
            Err(e) if upstreams.len() == 1 => return Err(e),
            Err(e) => {
                tracing::error!(node = %upstream.base(), error = %e, "follow: not following this node")
            }
        }
        at = (at + 1) % upstreams.len();
        if sleep_or_stop(poll, &mut shutdown).await {
            return Ok(());
        }
    };
    tracing::info!(node = %upstreams[at].base(), from = follow.next_height(), "follow: following the chain's final headers");
    let mut last_line = Instant::now();
    let mut last = follow.next_height().saturating_sub(1);
    loop {
        let mut more = false;
        if headers.len() < AHEAD {
            let upstream = &upstreams[at];
            match step(&mut follow, upstream, &headers, &mut last).await {
                Ok(full) => {
                    if failing {
                        tracing::info!(node = %upstream.base(), "follow: node answers");
                    }
                    failing = false;
                    more = full;
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(node = %upstream.base(), error = %e, "follow: node unreachable; trying the next");
                    }
                    failing = true;
                    at = (at + 1) % upstreams.len();
                }
            }
        }
        if last_line.elapsed() >= Duration::from_secs(10) {
            last_line = Instant::now();
            // The replica's height on disk (a server catching up writes every few blocks).
            let on_disk = state
                .head()
                .map_err(|e| FollowError::State(e.to_string()))?
                .map_or(0, |h| h.number);
            tracing::info!(
                final_height = last,
                on_disk,
                waiting = headers.len(),
                unfinalized = follow.unfinalized(),
                finalized_epoch = follow.finalized_epoch(),
                "follow: progress"
            );
        }
        if more {
            if *shutdown.borrow() {
                return Ok(());
            }
            continue;
        }
        if sleep_or_stop(poll, &mut shutdown).await {
            return Ok(());
        }
    }
}

/// Sleeps `d`; `true` if `shutdown` turned true meanwhile.
async fn sleep_or_stop(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        r = shutdown.changed() => r.is_err() || *shutdown.borrow(),
        () = tokio::time::sleep(d) => false,
    }
}

/// Rule 1 and 5: checks the genesis against the serving node's first block when starting
/// from it, then starts from the replica's head.
async fn start(
    config: &FollowConfig,
    state: &StateStore,
    upstream: &Upstream,
) -> Result<FinalHeaders, FollowError> {
    let head = state
        .head()
        .map_err(|e| FollowError::State(e.to_string()))?
        .ok_or_else(|| FollowError::State("the replica has no genesis".into()))?;
    if head.number == 0 {
        // The allocation is not in the genesis header's hash: compare the genesis state root
        // with the serving node's, when it offers its genesis as the checkpoint.
        if let Ok(boot) = upstream.bootstrap().await
            && boot.height == 0
            && boot.state_root != head.state_root
        {
            return Err(FollowError::GenesisStateMismatch {
                node: upstream.base().to_owned(),
                ours: head.state_root,
                theirs: boot.state_root,
            });
        }
        let first = upstream
            .updates(&UpdatesQuery {
                from: 1,
                claims_from: u64::MAX,
                limit: Some(1),
            })
            .await?;
        if let Some(raw) = first.headers.first()
            && let Ok(h) = ExecHeader::from_ssz_bytes(raw)
            && h.number == 1
            && h.parent != head.block
        {
            return Err(FollowError::GenesisMismatch {
                node: upstream.base().to_owned(),
                ours: head.block,
                theirs: h.parent,
            });
        }
    }
    FinalHeaders::start(
        &config.genesis,
        &Bootstrap {
            height: head.number,
            block_hash: head.block,
            state_root: head.state_root,
        },
        std::slice::from_ref(upstream),
    )
    .await
    .map_err(|e| match e {
        StartError::Fetch(e) => FollowError::Fetch(e),
        other => FollowError::Start(other.to_string()),
    })
}

/// Rules 2–4 for one batch; `true` when the node may have more right away.
async fn step(
    follow: &mut FinalHeaders,
    upstream: &Upstream,
    headers: &CheckedHeaders,
    last: &mut u64,
) -> Result<bool, FetchError> {
    let updates = upstream
        .updates(&UpdatesQuery {
            from: follow.next_height(),
            claims_from: u64::MAX,
            limit: Some(MAX_HEADERS as u64),
        })
        .await?;
    let full = updates.headers.len() >= MAX_HEADERS;
    for block in follow.take(&updates, upstream).await? {
        *last = block.header.number;
        headers.push(block.header);
    }
    Ok(full)
}
