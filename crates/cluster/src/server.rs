//! One server of a clustered full node, top to bottom (DESIGN.md "Clustered full node",
//! seed 000).
//!
//! 1. **Liveness.** The server holds a lease in the coordination store and keeps
//!    `/phalanx/{node}/servers/{key}` (its shard range and applied height, `lo-hi@height`)
//!    under it, renewing it every third of the ttl and rewriting it after each block it
//!    applies. Every tick it reads the list of live servers; a server more than one block
//!    behind this one counts as not live yet (it is catching up and cannot execute the
//!    current block in time). From that list [`ownership`] says which shards it is
//!    responsible for: those of its range, and those it takes over because none of their
//!    owners is live — and keeps until an owner has caught up. It subscribes to the topics of
//!    those shards only, so it never downloads another shard by gossip. Its headers come
//!    checked and final from a follower of the consensus chain — the server's own, fed by the
//!    `block` and `attestation` topics ([`HeaderSource::Chain`], [`crate::chain`]), or one
//!    reading a serving node's API ([`HeaderSource::Checked`], [`crate::follow`]) — or from
//!    the header topic of a trusted block feed, written by the feed's key alone
//!    ([`HeaderSource::Gossip`]).
//! 2. **Execute.** For the next block (its parent applied here), the server checks each shard
//!    it is responsible for against the header's shard root, runs it against its replica of
//!    the parent state (every read sees the parent state) and publishes the outcome, the
//!    shard's effects, on the node's effects topic.
//! 3. **Accept.** A responsible server writes `root ‖ its key` under the create-if-absent key
//!    `/phalanx/{node}/accepted/{block}/{shard}` once **two** published outcomes (its own and
//!    another server's) have the same root (a winning writer says so on the effects topic,
//!    [`crate::wire::AcceptedNote`], so a server that read the key too early reads it again
//!    at once rather than at its next tick); a shard with a single live owner (or taken over
//!    by one server) gets a second executor chosen as in a takeover, so only a node with one
//!    live server accepts a lone result, and marks it so ([`lone_accepted_value`]): another
//!    server applies a lone result only once its own run of the shard agrees (it then writes
//!    the record again unmarked), and replaces it when its run differs and `agreement` servers
//!    agree on another root ([`ServerStats::lone_replaced`]). Otherwise the first value
//!    written is the accepted one. A server whose own outcome, or any published outcome,
//!    differs from the accepted root raises an **alarm** (error log with both roots and the sender, and a counter). Requiring two
//!    agreeing results is how a server that corrupts its effects never gets them accepted
//!    while its peers are alive.
//! 4. **Stuck shards.** If a shard of the block has no accepted outcome `accept_timeout` after
//!    the header arrived (owners disagree, or an owner died mid-block), one more live server
//!    becomes responsible for it, chosen as in a takeover, and so on each timeout.
//! 5. **Apply.** When every shard has an accepted root and the server holds the outcome with
//!    that root (from gossip, or asked directly of the servers that published it), it merges
//!    them by the block rules (conflict rule, fee split: [`phalanx_execution::block`]) and
//!    applies the result to its state replica, so any server answers any read.
//!
//! 6. **Build (when the node produces).** The node's producer asks its servers, on the
//!    node-internal build topic, to build a block's shards ([`BuildRequest`]). Every server
//!    responsible for a shard (as in step 1: its owners, or the one taking it over) builds a
//!    candidate from what it holds ([`ShardBuilder`]) and writes `root ‖ its key`
//!    create-if-absent under `/phalanx/{node}/built/{id}/{shard}`: the first write is the
//!    accepted shard (seed 000: "3 servers which compete to validate and create the same
//!    shards"). The winner publishes its shard on the build topic; an owner whose candidate
//!    lost takes the accepted one from there or asks the winner. The producer assembles the
//!    header from the accepted roots; when it arrives, **every** owner holding the accepted
//!    shard takes it as received and broadcasts it on the shard's chain topic, so the block's
//!    shards leave the node while any owner lives. A block whose shards are not all accepted
//!    in time is asked for again (same id: what was accepted stays accepted).
//!
//! Where execution and apply run ([`ServerConfig::threads`]): with `None`, inline on the
//! server's task (its shards in parallel on the process's rayon pool) — the deterministic
//! simulator needs that, as its clock must not move while a block executes; with `Some(n)`,
//! on the server's own pool of `n` threads while the task awaits the result, so a busy server
//! never holds a worker of the async runtime (a server task woken by another's message sits
//! behind the waker's worker until that worker is free: two servers in one process ran their
//! blocks one after the other).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::{B256, Bytes, U256};
use phalanx_execution::block::{self, Receipt, ShardResult, VoidReason};
use phalanx_execution::changes::ShardEffects;
use phalanx_execution::store::StateStore;
use phalanx_net::{NetEvent, Network, Offence, PeerKey};
use ssz_types::VariableList;
use tokio::sync::watch;
use tokio::time::Instant;
use tree_hash::TreeHash;

use crate::chain::ChainFollower;
use crate::equivocation::{self, Judge, Watch};
use crate::lookup::{Asks, BlockRecords, LookupError, Lookups, Query, QueryInbox, ShardHistory};
use crate::ownership::{self, ShardRange};
use crate::store::{CoordinationStore, Created, LeaseId, StoreError};
use crate::wire::{
    ATTESTATION_TOPIC, AcceptedNote, BLOCK_TOPIC, BuildRequest, ChainBlock, DECLARATION_TOPIC,
    ExecHeader, HEADER_TOPIC, Message, RANGE_BLOCKS, Request, SLASHING_TOPIC, ShardMessage,
    ShardOutcome, ShardRecord, TxLocated, build_topic, effects_topic, shard_topic,
};
use phalanx_types::consensus::Shard;
use phalanx_types::{Attestation, Evidence};

/// A server's settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The node's id: the servers of one node share it and a coordination store.
    pub node: String,
    /// The shards this server owns.
    pub range: ShardRange,
    /// Shards per block.
    pub shards: u16,
    /// Lease ttl: a server silent this long is dead to the others.
    pub lease_ttl: Duration,
    /// A shard without an accepted outcome this long after its header gets one more server.
    pub accept_timeout: Duration,
    /// How often the server looks at the store and its pending blocks.
    pub tick: Duration,
    /// Fault injection for tests: publish wrong effects (one wei more somewhere).
    pub corrupt: bool,
    /// Blocks whose outcomes are kept to answer peers.
    pub keep_blocks: usize,
    /// Published outcomes that must agree before one is written as accepted (default 2;
    /// 1 is the seed's first-result-wins, which lets a lone corrupting server win a race).
    pub agreement: usize,
    /// Append `height block-hash state-root applied-unix-ms` here (synced) for each block
    /// applied, before it is made final: the log always holds every height the state does.
    pub roots_log: Option<std::path::PathBuf>,
    /// Threads this server's execution and apply may use: its own pool, which runs them off
    /// the async runtime while the server's task awaits; `None` runs them inline on the task
    /// over the process-wide pool (deterministic under a paused clock). Servers of one node
    /// in one process (the benchmark) get one pool each, as separate machines would have their
    /// own cores.
    pub threads: Option<usize>,
    /// Applied blocks are made final (written to disk in one transaction, fsync included)
    /// as soon as no next header is waiting (at the chain's head: every block), otherwise
    /// once this many are held in memory or the oldest of them has waited
    /// `persist_interval`, and on shutdown. So a backlog is written in batches, one commit
    /// per `persist_blocks` (default 8). A crash loses at most these from disk; the
    /// restarted server applies them again from the headers and accepted outcomes its peers
    /// hold, as it catches up on any block it missed.
    pub persist_blocks: u64,
    /// See `persist_blocks`.
    pub persist_interval: Duration,
    /// Sync commits to disk on a thread of the server's own (the default): a commit that
    /// makes applied blocks final returns without waiting for the disk, and the server's
    /// `server-sync` thread then writes its pages and waits for the fsync while the server
    /// goes on with the next block. A crash loses the blocks whose sync had not returned
    /// (besides those not yet committed, as above); the restarted server reopens at the
    /// last synced head and applies them again. `false` waits for every commit's fsync on
    /// the server's own path.
    pub background_sync: bool,
    /// Where the headers this server executes come from.
    pub headers: HeaderSource,
    /// What this server builds shards from when its node produces (step 6); `None`: it
    /// builds nothing.
    pub builder: Option<ShardBuilder>,
    /// History reads of this server's JSON-RPC, put together from the node's servers
    /// ([`crate::lookup`]); `None`: no endpoint asks.
    pub queries: Option<QueryInbox>,
    /// Keep the transactions of the shards this server runs with each block, indexed by hash
    /// (default true): what the node's history reads are put together from. `false` saves
    /// those writes (one index entry per transaction at a random place in the table per
    /// commit); the server then gives no shard's history.
    pub keep_transactions: bool,
}

/// What a server builds a shard from when its node produces, and whose requests it takes.
#[derive(Clone)]
pub struct ShardBuilder {
    /// The node's producer: the only peer whose [`BuildRequest`]s this server builds (a
    /// request signed by anyone else is dropped and its sender scored down).
    pub producer: PeerKey,
    /// `(request, shard index)` → the shard's transactions, or `None` when it has nothing to
    /// build it from yet.
    pub build: Arc<BuildFn>,
}

/// The function behind a [`ShardBuilder`].
pub type BuildFn = dyn Fn(&BuildRequest, u16) -> Option<Shard> + Send + Sync;

impl std::fmt::Debug for ShardBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardBuilder")
            .field("producer", &self.producer)
            .finish_non_exhaustive()
    }
}

/// Checked, final execution headers by height, handed to a server by a follower
/// ([`crate::follow`]); the server drops those at or below its applied head.
#[derive(Debug, Clone, Default)]
pub struct CheckedHeaders(Arc<Mutex<BTreeMap<u64, ExecHeader>>>);

impl CheckedHeaders {
    /// Adds a header.
    pub fn push(&self, header: ExecHeader) {
        lock(&self.0).insert(header.number, header);
    }

    /// Headers held (not yet applied).
    pub fn len(&self) -> usize {
        lock(&self.0).len()
    }

    /// No header held.
    pub fn is_empty(&self) -> bool {
        lock(&self.0).is_empty()
    }

    /// Up to `n` headers after `height`.
    fn after(&self, height: u64, n: usize) -> Vec<ExecHeader> {
        lock(&self.0)
            .range(height.saturating_add(1)..)
            .take(n)
            .map(|(_, h)| h.clone())
            .collect()
    }

    /// Drops the headers at or below `height` (applied).
    fn prune(&self, height: u64) {
        let mut m = lock(&self.0);
        while m.first_key_value().is_some_and(|(n, _)| *n <= height) {
            m.pop_first();
        }
    }
}

/// Where a server takes the headers it executes from.
#[derive(Debug, Clone)]
pub enum HeaderSource {
    /// The header topic of a block feed every server trusts: the simulator's, the
    /// benchmark's or a `phalanx node --feed` process.
    Gossip {
        /// The feed's key: a header written by anyone else (gossip names its authenticated
        /// author, not the peer that relayed it) is dropped, counted as foreign and scored
        /// as invalid — it would otherwise be executed. `None` takes headers from whoever
        /// publishes on the topic: only for a closed in-process network of the servers and
        /// their feed (tests).
        publisher: Option<PeerKey>,
    },
    /// Headers a follower checked against the consensus chain and saw finalized
    /// ([`crate::follow`]); the server does not subscribe to the header topic and takes no
    /// header from the network. Shards it misses are asked of `blocks`, a peer serving the
    /// chain's blocks (the node the follower reads).
    Checked {
        /// The checked headers.
        headers: CheckedHeaders,
        /// Who serves blocks' shards by request.
        blocks: PeerKey,
    },
    /// The consensus chain from gossip: the server subscribes to the `block` and
    /// `attestation` topics and runs a [`ChainFollower`] itself, taking the execution headers
    /// of the blocks it shows final; it asks `blocks`, a peer serving the chain, for missing
    /// blocks with their ancestors, for missed shards, and (after a restart) for its head's
    /// execution header.
    Chain {
        /// The chain's genesis.
        genesis: Arc<phalanx_spec::Genesis>,
        /// Who serves blocks and shards by request.
        blocks: PeerKey,
    },
}

/// [`ServerConfig::persist_blocks`] unless told otherwise.
pub const DEFAULT_PERSIST_BLOCKS: u64 = 8;

impl ServerConfig {
    /// Defaults: 2 s lease, 2 s accept timeout, 50 ms tick.
    pub fn new(node: &str, range: ShardRange, shards: u16) -> Self {
        Self {
            node: node.to_owned(),
            range,
            shards,
            lease_ttl: Duration::from_secs(2),
            accept_timeout: Duration::from_secs(2),
            tick: Duration::from_millis(50),
            corrupt: false,
            keep_blocks: 64,
            roots_log: None,
            threads: None,
            agreement: 2,
            persist_blocks: DEFAULT_PERSIST_BLOCKS,
            persist_interval: Duration::from_secs(1),
            background_sync: true,
            headers: HeaderSource::Gossip { publisher: None },
            builder: None,
            queries: None,
            keep_transactions: true,
        }
    }
}

/// Bytes received per shard index.
pub type ShardBytes = Vec<(u16, u64)>;

/// Heights whose roots and apply times [`ServerStats`] keeps.
pub const STATS_HEIGHTS: usize = 16 * 1024;

/// What an applied block paid its validator, by the fee rule of `phalanx_execution::block`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockFees {
    /// The block was void (it paid nothing).
    pub void: bool,
    /// The slot's validator's share of the fees, wei.
    pub validator_fee: U256,
}

/// What a server did, shared with whoever runs it (simulator, metrics, tests).
#[derive(Debug, Default)]
pub struct ServerStats {
    /// Blocks applied.
    pub applied: AtomicU64,
    /// Shards executed here.
    pub executed: AtomicU64,
    /// Shards this server took over (no owner live).
    pub takeovers: AtomicU64,
    /// Outcomes seen that differ from the accepted one.
    pub alarms: AtomicU64,
    /// Accepted-key writes this server won.
    pub accepts_won: AtomicU64,
    /// Results another server accepted alone that this server's own run and a second
    /// server's outcome contradicted: replaced in the store by the agreeing result (step 3).
    pub lone_replaced: AtomicU64,
    /// Shards this server built when its node produced (step 6).
    pub built: AtomicU64,
    /// Of those, the ones accepted (its write came first).
    pub builds_won: AtomicU64,
    /// Accepted built shards this server broadcast on their chain topic.
    pub broadcast: AtomicU64,
    /// Messages that did not decode or check out.
    pub invalid: AtomicU64,
    /// Outcomes, accepted notes and built shards from peers that are not servers of this
    /// node (not listed in its coordination store): dropped with no vote, no alarm and no
    /// score; and build requests from anyone but the node's producer and headers from anyone
    /// but the block feed (both scored down).
    pub foreign: AtomicU64,
    /// Slashing evidence this server's equivocation watch took as new: found here (a double
    /// declaration heard, then published) or heard on the slashing topic.
    pub evidence: AtomicU64,
    /// Bytes received on the header topic.
    pub header_bytes: AtomicU64,
    /// Bytes of shards received by gossip (subscribed topics), by shard index.
    pub shard_bytes: Mutex<BTreeMap<u16, u64>>,
    /// Bytes of shards received as answers to requests (a stuck shard run as an extra, a
    /// missed gossip message, catch-up), by shard index.
    pub fetched_shard_bytes: Mutex<BTreeMap<u16, u64>>,
    /// Bytes of effects received (gossip and answers).
    pub effect_bytes: AtomicU64,
    /// Block hash and post-state root of each applied height (the last
    /// [`STATS_HEIGHTS`]).
    pub roots: Mutex<BTreeMap<u64, (B256, B256)>>,
    /// When each height was applied (tokio's clock; the last [`STATS_HEIGHTS`]).
    pub applied_at: Mutex<BTreeMap<u64, Instant>>,
    /// What each applied height paid and whether it was void (the last [`STATS_HEIGHTS`]).
    pub fees: Mutex<BTreeMap<u64, BlockFees>>,
    /// Shards this server has been responsible for (its range, takeovers, extras) or fetched
    /// to re-run while catching up.
    pub subscribed: Mutex<BTreeSet<u16>>,
    /// Store round trips of accepted-key writes, microseconds (for the benchmark).
    pub accept_rtt_us: Mutex<Vec<u64>>,
    /// Time spent in each step's own work, summed over blocks (for the benchmark).
    pub phases: Phases,
    /// The height last made final on disk (see [`ServerConfig::persist_blocks`]): readers
    /// of the state see it.
    pub persisted: AtomicU64,
    /// The height last made durable: a crash keeps it (see
    /// [`ServerConfig::background_sync`]; without it, the same as `persisted`).
    pub synced: AtomicU64,
    /// State commits: each made one or more applied blocks final.
    pub commits: AtomicU64,
}

/// Microseconds a server spent in each step's own work, summed over every block: what the
/// benchmark divides into a per-block table. Measured on the thread that does the work (the
/// server's pool, or its task when it has none).
#[derive(Debug, Default)]
pub struct Phases {
    /// Step 1: checking shards against the roots their block's header names (on arrival, or
    /// when their block starts), on the server's task.
    pub check_us: AtomicU64,
    /// Step 2: executing its shards (decoding, senders' signatures, the EVM), hashing and
    /// encoding their outcomes.
    pub execute_us: AtomicU64,
    /// Step 5: turning the accepted outcomes into shard results (the merge's input).
    pub merge_us: AtomicU64,
    /// Step 5: merging the results (conflict rule) and computing the new state root.
    pub apply_us: AtomicU64,
    /// Step 5: writing the applied blocks' state to disk (once per commit; see
    /// [`ServerConfig::persist_blocks`]), the fsync included unless the commit is synced in
    /// the background.
    pub finalize_us: AtomicU64,
    /// Syncs on the server's `server-sync` thread, off its path (see
    /// [`ServerConfig::background_sync`]): the commits' pages written and the fsync.
    pub sync_us: AtomicU64,
    /// Waiting, from the end of this server's execution of a block to an outcome for every
    /// shard being here.
    pub wait_outcomes_us: AtomicU64,
    /// Waiting, from then (or the end of execution, if later) to every shard accepted — a
    /// second agreeing outcome where `agreement` is 2, and the store's write or read — and
    /// the block's apply starting.
    pub wait_accepts_us: AtomicU64,
}

impl Phases {
    fn add(counter: &AtomicU64, since: std::time::Instant) {
        let us = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
        counter.fetch_add(us, Ordering::Relaxed);
    }
}

impl ServerStats {
    /// The applied root at `height`.
    pub fn root(&self, height: u64) -> Option<B256> {
        lock(&self.roots).get(&height).map(|r| r.1)
    }

    /// `(height, block, root)` of the applied heights above `height`, in order.
    pub fn roots_since(&self, height: u64) -> Vec<(u64, B256, B256)> {
        lock(&self.roots)
            .range(height.saturating_add(1)..)
            .map(|(h, (b, r))| (*h, *b, *r))
            .collect()
    }

    /// The highest applied height (0 before any).
    pub fn head(&self) -> u64 {
        lock(&self.roots).keys().last().copied().unwrap_or(0)
    }

    /// Bytes of shards received by gossip and by request, by shard index.
    pub fn shard_bytes_by_index(&self) -> (ShardBytes, ShardBytes) {
        let of = |m: &Mutex<BTreeMap<u16, u64>>| lock(m).iter().map(|(s, b)| (*s, *b)).collect();
        (of(&self.shard_bytes), of(&self.fetched_shard_bytes))
    }

    /// What the block applied at `height` paid, if this server applied it.
    pub fn fees(&self, height: u64) -> Option<BlockFees> {
        lock(&self.fees).get(&height).copied()
    }

    fn record_applied(&self, height: u64, block: B256, root: B256, fees: BlockFees) {
        {
            let mut kept = lock(&self.fees);
            kept.insert(height, fees);
            while kept.len() > STATS_HEIGHTS {
                kept.pop_first();
            }
        }
        let mut roots = lock(&self.roots);
        roots.insert(height, (block, root));
        while roots.len() > STATS_HEIGHTS {
            roots.pop_first();
        }
        let mut at = lock(&self.applied_at);
        at.insert(height, Instant::now());
        while at.len() > STATS_HEIGHTS {
            at.pop_first();
        }
    }

    /// Shard indices this server received bytes of.
    pub fn shards_received(&self) -> BTreeSet<u16> {
        lock(&self.shard_bytes).keys().copied().collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Why a server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The coordination store failed for good.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The state replica failed.
    #[error("state: {0}")]
    State(String),
    /// The network failed.
    #[error("network: {0}")]
    Net(#[from] phalanx_net::NetError),
}

/// One block on its way through steps 2–5.
#[derive(Debug)]
struct Pending {
    header: ExecHeader,
    hash: B256,
    /// Who sent the header: asked for missing shards.
    source: PeerKey,
    arrived: Instant,
    shards: BTreeMap<u16, ShardMessage>,
    mine: BTreeMap<u16, B256>,
    /// Each held outcome with its effects root (hashed with it once, for the merge).
    outcomes: BTreeMap<(u16, B256), (ShardOutcome, B256)>,
    votes: BTreeMap<(u16, B256), BTreeSet<PeerKey>>,
    accepted: BTreeMap<u16, (B256, PeerKey)>,
    /// Accepted shards whose result another server wrote alone ([`lone_accepted_value`]):
    /// applied here only once this server's own run of the shard has the same root.
    lone: BTreeSet<u16>,
    asked: BTreeMap<(u8, u16), Instant>,
    /// Shards outside this server's range and takeovers that it runs for this block only
    /// (step 4): fetched by request, never subscribed to.
    extras: BTreeSet<u16>,
    /// Receipts of the shards this server ran, by (shard, root).
    receipts: BTreeMap<(u16, B256), Vec<Receipt>>,
    /// Every shard has had an outcome (the server was nudged for it).
    covered: bool,
    /// When this server's execution of its shards last ended, and when every shard first
    /// had an outcome (the waiting figures of [`Phases`]).
    ran_at: Option<Instant>,
    covered_at: Option<Instant>,
}

/// One block being built by the node (step 6).
#[derive(Debug)]
struct Building {
    request: BuildRequest,
    /// The accepted builder's root and key, per shard, as read from the store.
    accepted: BTreeMap<u16, (B256, PeerKey)>,
    /// Shards held, this server's and those the accepted builders published, by
    /// `(index, root)`.
    offered: BTreeMap<(u16, B256), Shard>,
    /// Shards this server built.
    built: BTreeSet<u16>,
    /// When this server last asked an accepted builder for its shard, per shard.
    asked: BTreeMap<u16, Instant>,
}

struct Server<N: Network> {
    config: ServerConfig,
    state: Arc<StateStore>,
    store: Arc<dyn CoordinationStore>,
    net: N,
    stats: Arc<ServerStats>,
    me: PeerKey,
    lease: LeaseId,
    renewed: Instant,
    /// The applied height last written under the lease.
    announced: u64,
    /// The highest applied height another server of the node lists (step 1).
    listed_best: u64,
    /// Servers listed in the store, caught up (counted for ownership and takeovers).
    live: BTreeMap<PeerKey, ShardRange>,
    /// Every server listed in the store, caught up or not, and this one: the node's members,
    /// whose outcomes and accepted notes count.
    members: BTreeSet<PeerKey>,
    subscribed: BTreeSet<u16>,
    taken_over: BTreeSet<u16>,
    /// The applied head: height and block hash.
    head: (u64, B256),
    /// The height last made final on disk, and since when a later one waits.
    persisted: u64,
    unpersisted_since: Option<Instant>,
    /// Syncs commits in the background (`None`: each commit waits for its fsync).
    syncer: Option<Syncer>,
    headers: BTreeMap<u64, (ExecHeader, PeerKey)>,
    /// Shards that arrived before their header.
    early_shards: BTreeMap<B256, Vec<(PeerKey, ShardMessage)>>,
    pending: Option<Pending>,
    pool: Option<rayon::ThreadPool>,
    /// Recent outcomes, to answer peers.
    kept: BTreeMap<(B256, u16, B256), ShardOutcome>,
    kept_order: VecDeque<B256>,
    asked_headers: Option<Instant>,
    /// Own shards asked ahead while catching up: the height asked up to, and when.
    prefetched: Option<(u64, Instant)>,
    started: Instant,
    stall_logged: Option<Instant>,
    /// Outcomes that arrived before their block started here.
    early_outcomes: BTreeMap<B256, Vec<(PeerKey, ShardOutcome)>>,
    /// Blocks being built (step 6), oldest first.
    building: VecDeque<Building>,
    /// The height of the last header refused for its shard count (logged once).
    refused: Option<u64>,
    /// With [`HeaderSource::Chain`]: the follower, once it has its starting point.
    follower: Option<Box<ChainFollower>>,
    /// With [`HeaderSource::Chain`]: the equivocation watch over the declaration and
    /// slashing topics.
    watch: Option<Watch>,
    /// When the head's execution header was last asked for (a restart), and when the
    /// follower last said where it stands.
    chain_asked: Option<Instant>,
    chain_logged: Instant,
    /// An event made the next step possible (the next header, this server's shards, an
    /// outcome for every shard): take it now rather than at the next tick.
    nudge: bool,
    /// History reads waiting for the node's other servers ([`crate::lookup`]).
    lookups: Lookups,
}

fn key_hex(k: &PeerKey) -> String {
    hex::encode(k.0)
}

/// The store key under which the accepted outcome of `(block, shard)` is written (step 3).
pub fn accepted_key(node: &str, block: B256, shard: u16) -> String {
    format!("/phalanx/{node}/accepted/{block:x}/{shard}")
}

/// An accepted-result record, as [`parse_accepted`] reads it: `root hex : writer key hex`.
pub fn accepted_value(root: B256, writer: &PeerKey) -> String {
    format!("{root:x}:{}", key_hex(writer))
}

/// What marks an accepted record written by a server that was alone (no second agreeing
/// outcome: the node's only live server): `root hex : writer key hex :alone`. Another server
/// applies such a result only once its own run of the shard agrees (step 3).
const LONE: &str = ":alone";

/// The [`Pending::asked`] kind under which a server times its reads of a lone record it could
/// not settle itself.
const LONE_READ: u8 = 0xff;

/// An accepted-result record written alone (marked `:alone`).
pub fn lone_accepted_value(root: B256, writer: &PeerKey) -> String {
    format!("{}{LONE}", accepted_value(root, writer))
}

/// Whether an accepted-result record was written alone ([`lone_accepted_value`]).
pub fn is_lone_accepted(value: &[u8]) -> bool {
    value.ends_with(LONE.as_bytes())
}

/// The store key under which `server` lists itself live (step 1).
pub fn live_key(node: &str, server: &PeerKey) -> String {
    format!("{}{}", live_prefix(node), key_hex(server))
}

/// The store key under which the accepted builder of shard `shard` of build `id` is written.
pub fn built_key(node: &str, id: B256, shard: u16) -> String {
    format!("/phalanx/{node}/built/{id:x}/{shard}")
}

fn live_prefix(node: &str) -> String {
    format!("/phalanx/{node}/servers/")
}

/// An accepted-result record: `root hex : writer key hex`, written alone or not.
pub fn parse_accepted(value: &[u8]) -> Option<(B256, PeerKey)> {
    let text = std::str::from_utf8(value).ok()?;
    let text = text.strip_suffix(LONE).unwrap_or(text);
    let (root, server) = text.split_once(':')?;
    let root: B256 = root.parse().ok()?;
    let server: [u8; 32] = hex::decode(server).ok()?.try_into().ok()?;
    Some((root, PeerKey(server)))
}

/// Runs one server until `shutdown` turns true. `state` holds the replica, initialised at
/// genesis (`genesis` is the genesis block's hash) or resumed from disk.
pub async fn run<N: Network>(
    config: ServerConfig,
    state: Arc<StateStore>,
    store: Arc<dyn CoordinationStore>,
    net: N,
    stats: Arc<ServerStats>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    let head = state
        .head()
        .map_err(|e| ServerError::State(e.to_string()))?
        .ok_or_else(|| ServerError::State("the state has no genesis".into()))?;
    let me = net.local();
    stats.persisted.store(head.number, Ordering::Relaxed);
    stats.synced.store(head.number, Ordering::Relaxed);
    let syncer = match config.background_sync {
        true => Some(
            Syncer::start(state.clone(), stats.clone(), me)
                .map_err(|e| ServerError::State(format!("cannot start the sync thread: {e}")))?,
        ),
        false => None,
    };
    let lease = store.grant_lease(config.lease_ttl).await?;
    let mut server = Server {
        me,
        lease,
        renewed: Instant::now(),
        announced: u64::MAX,
        listed_best: 0,
        live: BTreeMap::new(),
        members: BTreeSet::new(),
        subscribed: BTreeSet::new(),
        taken_over: BTreeSet::new(),
        head: (head.number, head.block),
        persisted: head.number,
        unpersisted_since: None,
        syncer,
        headers: BTreeMap::new(),
        early_shards: BTreeMap::new(),
        pending: None,
        pool: match config.threads {
            Some(n) => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n.max(1))
                    .thread_name(|i| format!("server-exec-{i}"))
                    // A panic in a job drops its result channel: the server stops with an
                    // error instead of the process aborting.
                    .panic_handler(|_| tracing::error!("a panic in a server's execution thread"))
                    .build()
                    .map_err(|e| ServerError::State(format!("thread pool: {e}")))?,
            ),
            None => None,
        },
        kept: BTreeMap::new(),
        kept_order: VecDeque::new(),
        asked_headers: None,
        prefetched: None,
        started: Instant::now(),
        early_outcomes: BTreeMap::new(),
        building: VecDeque::new(),
        refused: None,
        stall_logged: None,
        follower: None,
        watch: None,
        chain_asked: None,
        chain_logged: Instant::now(),
        nudge: false,
        lookups: Lookups::default(),
        config,
        state,
        store,
        net,
        stats,
    };
    server.announce().await?;
    match &server.config.headers {
        HeaderSource::Gossip { .. } => server.net.subscribe(HEADER_TOPIC)?,
        HeaderSource::Checked { .. } => {}
        HeaderSource::Chain { genesis, .. } => {
            if head.number == 0 {
                server.follower = Some(Box::new(
                    ChainFollower::from_genesis(genesis).map_err(ServerError::State)?,
                ));
            }
            server.watch = Some(Watch::new(Arc::new(
                Judge::from_genesis(genesis).map_err(ServerError::State)?,
            )));
            for topic in [
                BLOCK_TOPIC,
                ATTESTATION_TOPIC,
                DECLARATION_TOPIC,
                SLASHING_TOPIC,
            ] {
                server.net.subscribe(topic)?;
            }
        }
    }
    server.net.subscribe(&effects_topic(&server.config.node))?;
    if server.config.builder.is_some() {
        server.net.subscribe(&build_topic(&server.config.node))?;
    }
    tracing::info!(server = %me, range = %server.config.range, head = server.head.0, "server up");
    let mut tick = tokio::time::interval(server.config.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The RPC's history reads: one server task at a time takes them (a restarted task takes
    // them up again).
    let mut queries = match &server.config.queries {
        Some(inbox) => Some(inbox.0.clone().lock_owned().await),
        None => None,
    };
    let served = async {
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { return Ok(()); }
                }
                event = server.net.recv() => match event {
                    Some(event) => server.on_event(event)?,
                    None => return Err(ServerError::Net(phalanx_net::NetError::Closed)),
                },
                _ = tick.tick() => server.on_tick().await?,
                Some(query) = async {
                    match queries.as_mut() {
                        Some(q) => q.recv().await,
                        None => std::future::pending().await,
                    }
                } => server.on_query(query)?,
                // (A branch among the others: the tick and the network still get their turns
                // while one step makes the next possible, as when catching up.)
                () = std::future::ready(()), if server.nudge => {
                    server.nudge = false;
                    // What already arrived first: outcomes gossiped while this server was busy
                    // are not asked for again.
                    server.drain()?;
                    if server.pending.is_none() {
                        server.start_next();
                    }
                    server.advance().await?;
                }
            }
        }
    }
    .await;
    // What was applied is kept, after an error too: a stop loses nothing from disk.
    let persisted = match server.persist().await {
        Ok(()) => server.sync_all().await,
        Err(e) => Err(e),
    };
    match served {
        Ok(()) => {
            let _ = server.store.revoke(server.lease).await;
            persisted
        }
        Err(e) => {
            if let Err(p) = persisted {
                tracing::error!(server = %me, error = %p, "cannot write the applied blocks to disk");
            }
            Err(e)
        }
    }
}

/// Runs `f` on a server's own thread pool while the caller awaits it, or inline when the
/// server has none (see [`ServerConfig::threads`]).
async fn off_runtime<T: Send + 'static>(
    pool: &Option<rayon::ThreadPool>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ServerError> {
    match pool {
        None => Ok(f()),
        Some(pool) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            pool.spawn(move || {
                let _ = tx.send(f());
            });
            rx.await
                .map_err(|_| ServerError::State("an execution thread panicked".into()))
        }
    }
}

impl<N: Network> Server<N> {
    async fn announce(&mut self) -> Result<(), StoreError> {
        let key = live_key(&self.config.node, &self.me);
        let value = format!("{}@{}", self.config.range, self.head.0);
        self.store
            .put(&key, value.as_bytes(), Some(self.lease))
            .await?;
        self.announced = self.head.0;
        Ok(())
    }

    async fn keep_lease(&mut self) -> Result<(), StoreError> {
        if self.renewed.elapsed() < self.config.lease_ttl / 3 {
            return Ok(());
        }
        match self.store.keep_alive(self.lease).await {
            Ok(()) => {}
            Err(StoreError::LeaseLapsed(_)) => {
                tracing::warn!(server = %self.me, "lease lapsed; joining again");
                self.lease = self.store.grant_lease(self.config.lease_ttl).await?;
                self.announce().await?;
            }
            Err(e) => return Err(e),
        }
        self.renewed = Instant::now();
        Ok(())
    }

    async fn refresh_live(&mut self) -> Result<(), ServerError> {
        let prefix = live_prefix(&self.config.node);
        let mut live = BTreeMap::new();
        let mut members = BTreeSet::from([self.me]);
        let mut listed_best = 0;
        for (key, value) in self.store.list(&prefix).await? {
            let Some(peer) = hex::decode(&key[prefix.len()..])
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
            else {
                continue;
            };
            let Ok(text) = std::str::from_utf8(&value) else {
                continue;
            };
            // `lo-hi@height`; a bare range (an older server) counts as caught up.
            let (range, height) = match text.split_once('@') {
                Some((r, h)) => (r, h.parse::<u64>().ok()),
                None => (text, Some(u64::MAX)),
            };
            let (Ok(range), Some(height)) = (ShardRange::parse(range, self.config.shards), height)
            else {
                continue;
            };
            // A member however far behind (catching up, or its latest announcement not read
            // yet): its outcomes are votes all the same.
            members.insert(PeerKey(peer));
            if height != u64::MAX && PeerKey(peer) != self.me {
                listed_best = listed_best.max(height);
            }
            // More than one block behind: catching up, not live for ownership yet.
            if height.saturating_add(1) < self.head.0 {
                continue;
            }
            live.insert(PeerKey(peer), range);
        }
        // This server counts itself live even if its own listing is a moment late.
        live.insert(self.me, self.config.range);
        self.live = live;
        self.members = members;
        self.listed_best = listed_best;
        for shard in 0..self.config.shards {
            if self.config.range.contains(shard) {
                self.subscribe(shard)?;
                continue;
            }
            let (who, takeover) = ownership::responsible(&self.live, shard);
            if !takeover && self.taken_over.remove(&shard) {
                // An owner is back and caught up: the shard is its again.
                tracing::info!(server = %self.me, shard, "an owner of the shard is live and caught up again; handing it back");
                self.subscribed.remove(&shard);
                self.net.unsubscribe(&shard_topic(shard))?;
                continue;
            }
            // Taking over only once the others have had a lease's time to announce themselves.
            if takeover
                && self.started.elapsed() >= self.config.lease_ttl
                && who.contains(&self.me)
                && self.taken_over.insert(shard)
            {
                self.stats.takeovers.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(server = %self.me, shard, "no owner of the shard is live; taking it over");
                self.subscribe(shard)?;
            }
        }
        Ok(())
    }

    fn subscribe(&mut self, shard: u16) -> Result<(), ServerError> {
        if self.subscribed.insert(shard) {
            lock(&self.stats.subscribed).insert(shard);
            self.net.subscribe(&shard_topic(shard))?;
        }
        Ok(())
    }

    /// The live servers responsible for `shard` of the pending block, extras included.
    fn responsible(&self, shard: u16, arrived: Instant) -> Vec<PeerKey> {
        let (mut who, _) = ownership::responsible(&self.live, shard);
        let waited = arrived.elapsed().as_millis() as u64;
        let timeout = self.config.accept_timeout.as_millis().max(1) as u64;
        // Never fewer executors than agreeing outcomes needed while that many servers live:
        // a lone result is accepted only from a lone server.
        let wanted = (waited / timeout) as usize + self.config.agreement.saturating_sub(who.len());
        for _ in 0..wanted {
            match ownership::extra(&self.live, shard, &who) {
                Some(k) => who.push(k),
                None => break,
            }
        }
        who
    }

    fn on_event(&mut self, event: NetEvent) -> Result<(), ServerError> {
        let (from, topic, data) = match event {
            NetEvent::Gossip { from, topic, data } => (from, Some(topic), data),
            NetEvent::Direct { from, data } => (from, None, data),
        };
        let message = match Message::decode(&data) {
            Ok(m) => m,
            Err(e) => {
                self.stats.invalid.fetch_add(1, Ordering::Relaxed);
                self.net.report(from, Offence::Undecodable);
                tracing::warn!(from = %from, error = %e, "dropped a message");
                return Ok(());
            }
        };
        match message {
            Message::Header(header) => {
                self.stats
                    .header_bytes
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                if let HeaderSource::Chain { genesis, blocks } = &self.config.headers
                    && from == *blocks
                    && topic.is_none()
                {
                    // An answer to the restart's request for the head's header; the rest of
                    // the range it came with is of no use.
                    if self.follower.is_none() && header.hash() == self.head.1 {
                        match ChainFollower::resume(genesis, &header, self.head.1) {
                            Ok(f) => {
                                tracing::info!(
                                    height = header.number,
                                    "chain: following from the replica's head"
                                );
                                self.follower = Some(Box::new(f));
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "chain: cannot follow from the replica's head")
                            }
                        }
                    }
                    return Ok(());
                }
                let HeaderSource::Gossip { publisher } = &self.config.headers else {
                    // Headers come checked from the follower; one from the network is
                    // unasked-for.
                    self.net.report(from, Offence::Useless);
                    tracing::debug!(from = %from, "a header from the network; headers come checked here");
                    return Ok(());
                };
                if publisher.is_some_and(|p| p != from) {
                    // Anyone can publish on the header topic; only the feed's headers are
                    // blocks to run.
                    self.stats.foreign.fetch_add(1, Ordering::Relaxed);
                    self.net.report(from, Offence::Invalid);
                    tracing::warn!(server = %self.me, from = %from, height = header.number, "a header not from the block feed: dropped");
                    return Ok(());
                }
                if header.number > self.head.0 {
                    // (A building server starts a block on its tick, after `build` has read
                    // which candidates were accepted: it broadcasts those it holds.)
                    self.nudge |= self.pending.is_none()
                        && header.number == self.head.0 + 1
                        && self.config.builder.is_none();
                    self.headers.insert(header.number, (header, from));
                }
            }
            Message::Build(request) => {
                let Some(builder) = &self.config.builder else {
                    return Ok(());
                };
                if from != builder.producer {
                    // Only the node's producer asks its servers to build: a request from
                    // anyone else would have them build, and write to the store, for
                    // nothing. The producer is configured, so this is no listing race.
                    self.stats.foreign.fetch_add(1, Ordering::Relaxed);
                    self.net.report(from, Offence::Invalid);
                    tracing::warn!(server = %self.me, from = %from, id = %request.id, "a build request not from the node's producer: dropped");
                    return Ok(());
                }
                if !self.building.iter().any(|b| b.request.id == request.id) {
                    self.building.push_back(Building {
                        request,
                        accepted: BTreeMap::new(),
                        offered: BTreeMap::new(),
                        built: BTreeSet::new(),
                        asked: BTreeMap::new(),
                    });
                    while self.building.len() > self.config.keep_blocks {
                        self.building.pop_front();
                    }
                }
            }
            Message::Shard(shard)
                if self.config.builder.is_some()
                    && (topic.as_deref() == Some(build_topic(&self.config.node).as_str())
                        || self.building.iter().any(|b| b.request.id == shard.block)) =>
            {
                // A built shard (published by its builder, or an answer): kept under its root;
                // only the accepted root's is ever used, and only a server of the node's is
                // kept (no stranger fills the map).
                if !self.is_member(&from) {
                    self.foreign(from, "built shard");
                    return Ok(());
                }
                if let Some(b) = self
                    .building
                    .iter_mut()
                    .find(|b| b.request.id == shard.block)
                {
                    let root = shard.shard.tree_hash_root();
                    b.offered.insert((shard.index, root), shard.shard);
                }
            }
            Message::Shard(shard) => {
                let counter = if topic.is_some() {
                    &self.stats.shard_bytes
                } else {
                    &self.stats.fetched_shard_bytes
                };
                *lock(counter).entry(shard.index).or_default() += data.len() as u64;
                self.on_shard(from, shard);
            }
            Message::Outcome(outcome) => {
                self.stats
                    .effect_bytes
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                self.on_outcome(from, outcome);
            }
            Message::Request(request) => self.on_request(from, request)?,
            Message::ChainBlock(block) => self.on_chain_block(from, *block),
            Message::Attestation(attestation) => self.on_chain_attestation(from, &attestation),
            Message::Declaration(d) => self.on_watched(from, |w| w.on_declaration(d)),
            Message::Slashing(e) => self.on_watched(from, |w| w.on_evidence(*e)),
            Message::Located(answer) => {
                if self.is_member(&from) {
                    self.lookups.on_located(from, &answer);
                } else {
                    self.foreign(from, "transaction location");
                }
            }
            Message::Record(record) => {
                if !self.is_member(&from) {
                    self.foreign(from, "shard record");
                } else if let Some(why) = self.lookups.on_record(from, &record) {
                    self.stats.invalid.fetch_add(1, Ordering::Relaxed);
                    self.net.report(from, Offence::Invalid);
                    tracing::warn!(server = %self.me, from = %from, reason = %why, "a server of the node sent a wrong shard record: refused");
                }
            }
            Message::Accepted(note) => {
                if note.shard >= self.config.shards {
                    self.stats.invalid.fetch_add(1, Ordering::Relaxed);
                    self.net.report(from, Offence::Invalid);
                } else if !self.is_member(&from) {
                    self.foreign(from, "accepted note");
                } else if let Some(p) = &mut self.pending
                    && p.hash == note.block
                {
                    // A result accepted alone may have been replaced: read it again.
                    if p.lone.remove(&note.shard) {
                        p.accepted.remove(&note.shard);
                    }
                    if !p.accepted.contains_key(&note.shard) {
                        // Read the store now (a false note costs that one read).
                        self.nudge = true;
                    }
                }
            }
        }
        Ok(())
    }

    /// What the equivocation watch made of a declaration or of evidence: new evidence found
    /// here is published on the slashing topic; a refused message scores its sender down
    /// (as does either from a server that does not follow the chain and never asked).
    fn on_watched(
        &mut self,
        from: PeerKey,
        judge: impl FnOnce(&mut Watch) -> Result<Option<Evidence>, equivocation::Refused>,
    ) {
        let Some(watch) = self.watch.as_mut() else {
            self.net.report(from, Offence::Useless);
            return;
        };
        match judge(watch) {
            Err(e) => {
                self.stats.invalid.fetch_add(1, Ordering::Relaxed);
                self.net.report(from, Offence::Invalid);
                tracing::warn!(from = %from, error = %e, "chain: declaration or evidence refused");
            }
            Ok(None) => {}
            Ok(Some(evidence)) => {
                self.stats.evidence.fetch_add(1, Ordering::Relaxed);
                if let Evidence::Declaration(d) = &evidence {
                    tracing::warn!(
                        validator = d.declaration_1.message.proposer_index.0,
                        slot = d.declaration_1.message.slot.0,
                        "chain: a validator declared two producers for one slot; evidence published"
                    );
                    let message = Message::Slashing(Box::new(evidence)).encode();
                    if let Err(e) = self.net.publish(SLASHING_TOPIC, message) {
                        tracing::warn!(error = %e, "chain: slashing evidence not published");
                    }
                }
            }
        }
    }

    /// A consensus block, gossiped or answered: to the follower (a server not following the
    /// chain from gossip did not ask for it).
    fn on_chain_block(&mut self, from: PeerKey, block: ChainBlock) {
        let Some(follower) = self.chain_follower(from) else {
            return;
        };
        match follower.on_block(block) {
            Ok(headers) => self.take_final(headers),
            Err(e) => {
                self.stats.invalid.fetch_add(1, Ordering::Relaxed);
                self.net.report(from, Offence::Invalid);
                tracing::warn!(from = %from, error = %e, "chain: block refused");
            }
        }
    }

    /// A gossiped aggregate: to the follower.
    fn on_chain_attestation(&mut self, from: PeerKey, attestation: &Attestation) {
        let Some(follower) = self.chain_follower(from) else {
            return;
        };
        match follower.on_attestation(attestation) {
            Ok(headers) => self.take_final(headers),
            Err(e) => {
                self.net.report(from, Offence::Invalid);
                tracing::debug!(from = %from, error = %e, "chain: attestation refused");
            }
        }
    }

    /// The follower a chain message goes to; `None` while it waits for its starting point,
    /// or — the sender scored down — when this server does not follow the chain from gossip
    /// (it never asked for the message).
    fn chain_follower(&mut self, from: PeerKey) -> Option<&mut ChainFollower> {
        if self.follower.is_none() && !matches!(self.config.headers, HeaderSource::Chain { .. }) {
            self.net.report(from, Offence::Useless);
        }
        self.follower.as_deref_mut()
    }

    /// Execution headers the follower showed final, to be executed in order.
    fn take_final(&mut self, headers: Vec<ExecHeader>) {
        let HeaderSource::Chain { blocks, .. } = &self.config.headers else {
            return;
        };
        for header in headers {
            if header.number > self.head.0 {
                self.headers.insert(header.number, (header, *blocks));
            }
        }
    }

    /// With [`HeaderSource::Chain`]: asks the serving peer for what the follower lacks — the
    /// head's execution header after a restart, else a missing block with its ancestors —
    /// and says where the follower stands every 10 s.
    fn follow_chain(&mut self) -> Result<(), ServerError> {
        let HeaderSource::Chain { blocks, .. } = &self.config.headers else {
            return Ok(());
        };
        let blocks = *blocks;
        let now = Instant::now();
        let Some(follower) = self.follower.as_mut() else {
            if self
                .chain_asked
                .is_none_or(|t| now.duration_since(t) > crate::chain::RETRY)
            {
                self.chain_asked = Some(now);
                let request = Request {
                    height: self.head.0,
                    ..Request::new(Request::HEADERS_FROM)
                };
                self.net.send(blocks, Message::Request(request).encode())?;
            }
            if now.duration_since(self.chain_logged) >= Duration::from_secs(10) {
                self.chain_logged = now;
                tracing::warn!(
                    server = %self.me,
                    height = self.head.0,
                    peer = %blocks,
                    "chain: the serving peer has not sent the replica head's execution header \
                     yet; if it no longer keeps that height, follow a serving node's API \
                     instead (--follow URL)"
                );
            }
            return Ok(());
        };
        if let Some(root) = follower.next_request(now) {
            let request = Request {
                block: root,
                ..Request::new(Request::CHAIN_ANCESTORS)
            };
            self.net.send(blocks, Message::Request(request).encode())?;
        }
        if now.duration_since(self.chain_logged) >= Duration::from_secs(10) {
            self.chain_logged = now;
            let s = follower.status();
            tracing::info!(
                server = %self.me,
                final_height = s.height,
                slot = s.slot,
                finalized_epoch = s.finalized_epoch,
                held = s.held,
                anchoring = s.anchoring,
                applied = self.head.0,
                "chain: following"
            );
        }
        Ok(())
    }

    /// A shard, gossiped or answered: kept for its block once it matches the root the block's
    /// header names for it (a shard of a block not started yet is checked when it starts);
    /// one that does not is refused and its sender scored down.
    fn on_shard(&mut self, from: PeerKey, shard: ShardMessage) {
        if shard.index >= self.config.shards {
            self.refuse_shard(from, &shard);
            return;
        }
        match &mut self.pending {
            Some(p) if p.hash == shard.block => {
                let started = std::time::Instant::now();
                let fits = fits(&p.header, &shard);
                Phases::add(&self.stats.phases.check_us, started);
                if !fits {
                    self.refuse_shard(from, &shard);
                    return;
                }
                p.shards.insert(shard.index, shard);
                // Every shard this server runs is here: run them together now.
                self.nudge |= self
                    .subscribed
                    .iter()
                    .all(|s| p.shards.contains_key(s) || p.mine.contains_key(s));
            }
            _ => {
                let early = self.early_shards.entry(shard.block).or_default();
                if early.len() < self.config.shards as usize {
                    early.push((from, shard));
                }
                // Bounded (room for a prefetched range besides the tip's gossip): shards of
                // blocks far ahead are dropped and fetched later.
                while self.early_shards.len() > self.config.keep_blocks + RANGE_BLOCKS {
                    self.early_shards.pop_first();
                }
            }
        }
    }

    fn refuse_shard(&self, from: PeerKey, shard: &ShardMessage) {
        self.stats.invalid.fetch_add(1, Ordering::Relaxed);
        self.net.report(from, Offence::Invalid);
        tracing::warn!(
            from = %from,
            block = %shard.block,
            shard = shard.index,
            "a shard that does not match its block's header; dropped"
        );
    }

    /// Whether `peer` is this server or a server of its node (listed in the store under a
    /// lease as of the last tick, however far behind it is): only they publish outcomes and
    /// accepted notes on the node's effects topic, and only their outcomes count as votes
    /// (step 3).
    fn is_member(&self, peer: &PeerKey) -> bool {
        *peer == self.me || self.members.contains(peer)
    }

    /// A message on the node's own channel from a peer outside it: dropped and counted, not
    /// scored (a server whose listing this one has not read yet sends the same).
    fn foreign(&self, from: PeerKey, what: &'static str) {
        self.stats.foreign.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(server = %self.me, from = %from, what, "dropped: not from a server of this node");
    }

    fn on_outcome(&mut self, from: PeerKey, outcome: ShardOutcome) {
        if outcome.shard >= self.config.shards {
            self.stats.invalid.fetch_add(1, Ordering::Relaxed);
            self.net.report(from, Offence::Invalid);
            return;
        }
        // Any peer can publish on a gossip topic: an outcome from outside the node would
        // otherwise be a vote (a corrupting server's result accepted with a stranger's echo)
        // and a false alarm at will.
        if !self.is_member(&from) {
            self.foreign(from, "outcome");
            return;
        }
        let (root, effects_root) = outcome.roots();
        let p = match &mut self.pending {
            Some(p) if p.hash == outcome.block => p,
            _ => {
                // Another server ran a block this one has not started: keep it for then
                // (bounded like early shards).
                let early = self.early_outcomes.entry(outcome.block).or_default();
                if early.len() < 4 * self.config.shards as usize {
                    early.push((from, outcome));
                }
                while self.early_outcomes.len() > self.config.keep_blocks {
                    self.early_outcomes.pop_first();
                }
                return;
            }
        };
        p.votes
            .entry((outcome.shard, root))
            .or_default()
            .insert(from);
        if let Some((accepted, _)) = p.accepted.get(&outcome.shard)
            && *accepted != root
        {
            alarm(
                &self.stats,
                self.me,
                p.hash,
                outcome.shard,
                *accepted,
                root,
                from,
            );
        }
        p.outcomes
            .entry((outcome.shard, root))
            .or_insert((outcome, effects_root));
        // An outcome for every shard: the block may be accepted and applied now (once).
        if !p.covered
            && (0..self.config.shards).all(|s| {
                p.outcomes
                    .range((s, B256::ZERO)..=(s, B256::repeat_byte(0xff)))
                    .next()
                    .is_some()
            })
        {
            p.covered = true;
            p.covered_at = Some(Instant::now());
            self.nudge = true;
        }
    }

    fn on_request(&mut self, from: PeerKey, request: Request) -> Result<(), ServerError> {
        match request.kind {
            1 => {
                let answer = self
                    .kept
                    .get(&(request.block, request.index, request.root))
                    .cloned()
                    .or_else(|| {
                        self.pending
                            .as_ref()
                            .and_then(|p| p.outcomes.get(&(request.index, request.root)))
                            .map(|(o, _)| o.clone())
                    });
                if let Some(outcome) = answer {
                    self.net.send(from, Message::Outcome(outcome).encode())?;
                }
            }
            0 => {
                if let Some(p) = &self.pending
                    && p.hash == request.block
                    && let Some(s) = p.shards.get(&request.index)
                {
                    self.net.send(from, Message::Shard(s.clone()).encode())?;
                } else if let Some(b) = self.building.iter().find(|b| b.request.id == request.block)
                    && let Some((root, _)) = b.accepted.get(&request.index)
                    && let Some(shard) = b.offered.get(&(request.index, *root))
                {
                    let m = ShardMessage {
                        block: request.block,
                        index: request.index,
                        shard: shard.clone(),
                    };
                    self.net.send(from, Message::Shard(m).encode())?;
                }
            }
            Request::LOCATE_TX | Request::RECORD if !self.is_member(&from) => {
                self.foreign(from, "history request");
            }
            Request::LOCATE_TX => {
                let at = self.state.transaction_location(request.root).unwrap_or_else(|e| {
                    tracing::warn!(server = %self.me, error = %e, "cannot read the transaction index");
                    None
                });
                let answer = TxLocated {
                    tx: request.root,
                    found: at.is_some(),
                    height: at.map_or(0, |a| a.number),
                    shard: at.map_or(0, |a| a.shard),
                    position: at.map_or(0, |a| a.position),
                };
                self.net.send(from, Message::Located(answer).encode())?;
            }
            Request::RECORD => {
                let record = self.record(request.block, request.index);
                if let Err(e) = self.net.send(from, Message::Record(record).encode()) {
                    // (Too large for one message: the asker hears that this server lacks it.)
                    tracing::warn!(server = %self.me, shard = request.index, error = %e, "cannot send a shard's record");
                    let none = ShardRecord::none(request.block, request.index);
                    self.net.send(from, Message::Record(none).encode())?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// What this server kept of shard `shard` of `block`, to answer [`Request::RECORD`].
    fn record(&self, block: B256, shard: u16) -> ShardRecord {
        let mut record = ShardRecord::none(block, shard);
        let read = || -> Result<Option<ShardHistory>, phalanx_execution::StateError> {
            let Some(txs) = self.state.block_transactions(block)? else {
                return Ok(None);
            };
            let Some((_, txs)) = txs.into_iter().find(|(s, _)| *s == shard) else {
                return Ok(None);
            };
            let receipts = self
                .state
                .block_receipts(block)?
                .unwrap_or_default()
                .into_iter()
                .find(|(s, _)| *s == shard)
                .map(|(_, r)| r)
                .unwrap_or_default();
            Ok(Some((txs, receipts)))
        };
        match read() {
            Ok(Some((txs, receipts))) => {
                record.found = true;
                record.transactions = txs.into_iter().map(|t| t.to_vec()).collect();
                record.receipts = phalanx_execution::receipts::encode(&receipts);
            }
            Ok(None) | Err(phalanx_execution::StateError::ReceiptsPruned { .. }) => {}
            Err(e) => {
                tracing::warn!(server = %self.me, %block, shard, error = %e, "cannot read a shard's record");
            }
        }
        record
    }

    /// A history read from this server's JSON-RPC ([`crate::lookup`]): answered from its own
    /// store when it can be, otherwise asked of the node's other servers.
    fn on_query(&mut self, query: Query) -> Result<(), ServerError> {
        let now = Instant::now();
        let others: BTreeSet<PeerKey> = self
            .members
            .iter()
            .filter(|m| **m != self.me)
            .copied()
            .collect();
        let asks = match query {
            Query::Locate { tx, reply } => match self.state.transaction_location(tx) {
                Ok(Some(at)) => {
                    let _ = reply.send(Ok(Some(at)));
                    Asks::None
                }
                Ok(None) => self.lookups.locate(tx, &others, reply, now),
                Err(e) => {
                    let _ = reply.send(Err(LookupError::State(e.to_string())));
                    Asks::None
                }
            },
            Query::Block { number, reply } => match self.own_records(number) {
                Ok(records) => self.lookups.gather(records, &others, reply, now),
                Err(e) => {
                    let _ = reply.send(Err(e));
                    Asks::None
                }
            },
        };
        match asks {
            Asks::None => {}
            Asks::Locate(tx, to) => {
                let mut request = Request::new(Request::LOCATE_TX);
                request.root = tx;
                let bytes = Message::Request(request).encode();
                for peer in to {
                    self.net.send(peer, bytes.clone())?;
                }
            }
            Asks::Records(block, to) => {
                for (peer, shard) in to {
                    let mut request = Request::new(Request::RECORD);
                    request.block = block;
                    request.index = shard;
                    self.net.send(peer, Message::Request(request).encode())?;
                }
            }
        }
        Ok(())
    }

    /// Finalized height `number`'s header and the shards this server kept of it.
    fn own_records(&self, number: u64) -> Result<BlockRecords, LookupError> {
        let state = |e: phalanx_execution::StateError| LookupError::State(e.to_string());
        let head = self.state.head().map_err(state)?.map_or(0, |h| h.number);
        if number > head {
            return Err(LookupError::NotFinalized(number));
        }
        let header = self
            .state
            .header(number)
            .map_err(state)?
            .ok_or(LookupError::NotFinalized(number))?;
        let mut shards = vec![None; header.shard_roots.len()];
        // Past this server's own `keep_receipts` window it has none: the other owners may.
        let mut receipts: BTreeMap<u16, Vec<Receipt>> = unpruned(self.state.receipts(number))
            .map_err(state)?
            .into_iter()
            .collect();
        for (shard, txs) in unpruned(self.state.transactions(number)).map_err(state)? {
            if let Some(slot) = shards.get_mut(shard as usize) {
                *slot = Some((txs, receipts.remove(&shard).unwrap_or_default()));
            }
        }
        Ok(BlockRecords { header, shards })
    }

    async fn on_tick(&mut self) -> Result<(), ServerError> {
        self.lookups.expire(Instant::now());
        self.keep_lease().await?;
        if self.announced != self.head.0 {
            self.announce().await?;
        }
        self.refresh_live().await?;
        self.build().await?;
        self.take_checked();
        self.follow_chain()?;
        if self.pending.is_none() {
            self.start_next();
        }
        self.prefetch()?;
        self.advance().await?;
        if self
            .unpersisted_since
            .is_some_and(|t| t.elapsed() >= self.config.persist_interval)
        {
            self.persist().await?;
        }
        Ok(())
    }

    /// Makes the applied head final on disk (with every applied block below it).
    async fn persist(&mut self) -> Result<(), ServerError> {
        if self.persisted >= self.head.0 {
            return Ok(());
        }
        let (state, stats, block) = (self.state.clone(), self.stats.clone(), self.head.1);
        let synced = self.syncer.is_none();
        off_runtime(&self.pool, move || finalize(&state, &stats, block, synced)).await??;
        self.mark_persisted(self.head.0);
        Ok(())
    }

    /// After a commit: its blocks are final on disk, and durable once synced.
    fn mark_persisted(&mut self, height: u64) {
        self.persisted = height;
        self.unpersisted_since = None;
        self.stats.persisted.store(height, Ordering::Relaxed);
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        match &self.syncer {
            Some(syncer) => syncer.request(),
            None => {
                self.stats.synced.fetch_max(height, Ordering::Relaxed);
            }
        }
    }

    /// Stops the sync thread (after the sync it is doing) and syncs every commit, waiting
    /// for it: what the server committed is durable when this returns.
    async fn sync_all(&mut self) -> Result<(), ServerError> {
        let Some(mut syncer) = self.syncer.take() else {
            return Ok(());
        };
        let thread = syncer.stop();
        let (state, stats) = (self.state.clone(), self.stats.clone());
        tokio::task::spawn_blocking(move || {
            if let Some(t) = thread {
                let _ = t.join();
            }
            sync(&state, &stats)
        })
        .await
        .map_err(|e| ServerError::State(format!("the final sync: {e}")))?
    }

    /// Handles the events already queued, without waiting for more (at most a bounded
    /// number, so a flood cannot hold the server).
    fn drain(&mut self) -> Result<(), ServerError> {
        use futures::FutureExt as _;
        for _ in 0..4096 {
            match self.net.recv().now_or_never() {
                Some(Some(event)) => self.on_event(event)?,
                Some(None) => return Err(ServerError::Net(phalanx_net::NetError::Closed)),
                None => break,
            }
        }
        Ok(())
    }

    /// Steps 2–5 of the pending block, as far as they go now (each tick, and when an event
    /// nudges the server).
    async fn advance(&mut self) -> Result<(), ServerError> {
        if self.pending.is_some() {
            // Reading what is already accepted first spares re-running it (catch-up).
            self.accept().await?;
            self.execute().await?;
            // What arrived while it executed (others' outcomes) before reading what was
            // accepted: an accepted outcome already here is not asked for.
            self.drain()?;
            self.accept().await?;
            self.fetch_missing()?;
            self.apply().await?;
            self.report_stall();
        }
        Ok(())
    }

    /// Step 6: for every block the node is building, each shard this server is responsible
    /// for (its range, or taken over) gets a candidate built and written create-if-absent
    /// under `/phalanx/{node}/built/{id}/{shard}`; the first write is the accepted one. The
    /// winner publishes its shard on the build topic; an owner whose candidate lost keeps the
    /// accepted one instead (from that publication, or asked of the winner).
    async fn build(&mut self) -> Result<(), ServerError> {
        let Some(builder) = self.config.builder.clone() else {
            return Ok(());
        };
        let topic = build_topic(&self.config.node);
        for i in 0..self.building.len() {
            for shard in 0..self.config.shards {
                let (owners, _) = ownership::responsible(&self.live, shard);
                if !owners.contains(&self.me) {
                    continue;
                }
                let b = &self.building[i];
                let id = b.request.id;
                let key = built_key(&self.config.node, id, shard);
                if let Some((root, writer)) = b.accepted.get(&shard) {
                    // Accepted: make sure this server holds it, to broadcast it.
                    if !b.offered.contains_key(&(shard, *root))
                        && *writer != self.me
                        && b.asked
                            .get(&shard)
                            .is_none_or(|t| t.elapsed() > self.config.tick * 10)
                    {
                        let request = Request {
                            block: id,
                            index: shard,
                            ..Request::new(Request::SHARD)
                        };
                        self.net.send(*writer, Message::Request(request).encode())?;
                        self.building[i].asked.insert(shard, Instant::now());
                    }
                    continue;
                }
                let value = if b.built.contains(&shard) {
                    // Built and written earlier, its record unreadable then: read it again.
                    self.store.get(&key).await?
                } else {
                    let Some(candidate) = (builder.build)(&b.request, shard) else {
                        continue;
                    };
                    let root = candidate.tree_hash_root();
                    self.stats.built.fetch_add(1, Ordering::Relaxed);
                    let b = &mut self.building[i];
                    b.built.insert(shard);
                    b.offered.insert((shard, root), candidate);
                    let mine = accepted_value(root, &self.me);
                    match self.store.create_if_absent(&key, mine.as_bytes()).await? {
                        Created::Won => {
                            self.stats.builds_won.fetch_add(1, Ordering::Relaxed);
                            Some(mine.into_bytes())
                        }
                        Created::Lost(theirs) => Some(theirs),
                    }
                };
                let Some(value) = value else {
                    continue;
                };
                let Some((root, writer)) = parse_accepted(&value) else {
                    tracing::warn!(key = %key, "unreadable built-shard record");
                    continue;
                };
                let b = &mut self.building[i];
                b.accepted.insert(shard, (root, writer));
                if writer == self.me
                    && let Some(shard_txs) = b.offered.get(&(shard, root))
                {
                    let m = ShardMessage {
                        block: id,
                        index: shard,
                        shard: shard_txs.clone(),
                    };
                    self.net.publish(&topic, Message::Shard(m).encode())?;
                    tracing::debug!(server = %self.me, shard, height = b.request.height, "built shard accepted");
                } else if b.built.contains(&shard) {
                    tracing::debug!(server = %self.me, shard, winner = %writer, "another owner's shard was accepted");
                }
            }
        }
        Ok(())
    }

    /// Step 6, once the block's header arrives: every shard of it that this server holds as
    /// the accepted built shard is taken as received and broadcast on its chain topic — by
    /// every owner holding it, so the block's shards leave the node even if some owners die.
    fn broadcast_built(&mut self, p: &mut Pending) {
        if self.building.is_empty() {
            return;
        }
        let mut used = BTreeSet::new();
        for (index, root) in p.header.shard_roots.iter().enumerate() {
            let index = index as u16;
            let held = self.building.iter().find_map(|b| {
                let (accepted, _) = b.accepted.get(&index)?;
                if accepted != root {
                    return None;
                }
                b.offered.get(&(index, *root)).map(|s| (b.request.id, s))
            });
            let Some((id, shard)) = held else {
                continue;
            };
            used.insert(id);
            let m = ShardMessage {
                block: p.hash,
                index,
                shard: shard.clone(),
            };
            if let Err(e) = self
                .net
                .publish(&shard_topic(index), Message::Shard(m.clone()).encode())
            {
                tracing::debug!(shard = index, error = %e, "built shard not broadcast");
            } else {
                self.stats.broadcast.fetch_add(1, Ordering::Relaxed);
            }
            p.shards.insert(index, m);
        }
        self.building.retain(|b| !used.contains(&b.request.id));
    }

    /// Catch-up: while later headers are known (this block is history, its shards no longer
    /// on gossip), asks the block's source for this server's own shards of the next
    /// [`RANGE_BLOCKS`] blocks in one request per shard index, again when half of them are
    /// applied or an answer is overdue; only shards of its own range and takeovers.
    fn prefetch(&mut self) -> Result<(), ServerError> {
        let Some(p) = &self.pending else {
            return Ok(());
        };
        let height = p.header.number;
        let behind = self
            .headers
            .last_key_value()
            .is_some_and(|(n, _)| *n > height + 1);
        if !behind || self.subscribed.is_empty() {
            return Ok(());
        }
        let from = match self.prefetched {
            Some((to, at)) if height + (RANGE_BLOCKS as u64) / 2 < to => {
                let lacking = self.subscribed.iter().any(|s| !p.shards.contains_key(s));
                let overdue = at.elapsed() > self.config.tick * 40;
                if !(lacking && overdue) {
                    return Ok(());
                }
                height
            }
            Some((to, _)) => to.max(height),
            None => height,
        };
        let source = p.source;
        for &index in &self.subscribed {
            let request = Request {
                index,
                height: from,
                ..Request::new(Request::SHARDS_FROM)
            };
            self.net.send(source, Message::Request(request).encode())?;
        }
        self.prefetched = Some((from + RANGE_BLOCKS as u64, Instant::now()));
        Ok(())
    }

    /// With [`HeaderSource::Checked`]: drops the applied headers and takes the next ones.
    fn take_checked(&mut self) {
        let HeaderSource::Checked { headers, blocks } = &self.config.headers else {
            return;
        };
        headers.prune(self.head.0);
        let from = self
            .headers
            .last_key_value()
            .map_or(self.head.0, |(n, _)| *n)
            .max(self.head.0);
        for header in headers.after(from, 64) {
            self.headers.insert(header.number, (header, *blocks));
        }
    }

    /// A block that waits long says what it waits for, every few seconds.
    fn report_stall(&mut self) {
        let Some(p) = &self.pending else {
            return;
        };
        let stalled = p.arrived.elapsed() > self.config.accept_timeout * 3;
        if !stalled
            || self
                .stall_logged
                .is_some_and(|t| t.elapsed() < Duration::from_secs(5))
        {
            return;
        }
        self.stall_logged = Some(Instant::now());
        let unaccepted: Vec<u16> = (0..self.config.shards)
            .filter(|s| !p.accepted.contains_key(s))
            .collect();
        let without_outcome: Vec<u16> = p
            .accepted
            .iter()
            .filter(|(s, (root, _))| !p.outcomes.contains_key(&(**s, *root)))
            .map(|(s, _)| *s)
            .collect();
        // Accepted alone by another server, and not (yet) confirmed by this server's run.
        let unconfirmed_lone: Vec<u16> = p
            .lone
            .iter()
            .copied()
            .filter(|s| p.mine.get(s) != p.accepted.get(s).map(|(r, _)| r))
            .collect();
        let lacking_shards: Vec<u16> = unaccepted
            .iter()
            .copied()
            .filter(|s| {
                self.responsible(*s, p.arrived).contains(&self.me) && !p.shards.contains_key(s)
            })
            .collect();
        tracing::warn!(
            server = %self.me,
            height = p.header.number,
            waited_ms = p.arrived.elapsed().as_millis() as u64,
            ?unaccepted,
            ?without_outcome,
            ?lacking_shards,
            ?unconfirmed_lone,
            live = self.live.len(),
            "block stalled"
        );
    }

    fn start_next(&mut self) {
        let next = self.head.0 + 1;
        while self
            .headers
            .first_key_value()
            .is_some_and(|(n, _)| *n < next)
        {
            self.headers.pop_first();
        }
        let Some((header, source)) = self.headers.remove(&next) else {
            // Later headers but not the next one: it was missed; ask the later one's sender.
            // No later header: ask the feed once on start (this server may have restarted
            // after the feed's last header, which nobody gossips again) and whenever another
            // server lists a higher height.
            let ask = match (&self.config.headers, self.headers.first_key_value()) {
                (HeaderSource::Gossip { .. }, Some((_, (_, source)))) => Some(*source),
                (HeaderSource::Gossip { publisher }, None)
                    if self.listed_best >= next || self.asked_headers.is_none() =>
                {
                    *publisher
                }
                _ => None,
            };
            if let Some(source) = ask
                && self
                    .asked_headers
                    .is_none_or(|t| t.elapsed() > self.config.tick * 10)
            {
                let request = Request {
                    kind: 2,
                    block: B256::ZERO,
                    index: 0,
                    root: B256::ZERO,
                    height: next,
                };
                let _ = self.net.send(source, Message::Request(request).encode());
                self.asked_headers = Some(Instant::now());
            }
            return;
        };
        if header.parent != self.head.1 {
            self.stats.invalid.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                height = next,
                "header does not extend the applied head; dropped"
            );
            return;
        }
        if header.shard_roots.len() != usize::from(self.config.shards) {
            // A checked header comes back every tick: counted and logged once.
            if self.refused == Some(next) {
                return;
            }
            self.refused = Some(next);
            self.stats.invalid.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                height = next,
                shards = header.shard_roots.len(),
                expected = self.config.shards,
                "header has another number of shards than this node runs; dropped"
            );
            return;
        }
        let hash = header.hash();
        let mut pending = Pending {
            header,
            hash,
            source,
            arrived: Instant::now(),
            receipts: BTreeMap::new(),
            shards: BTreeMap::new(),
            mine: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            votes: BTreeMap::new(),
            accepted: BTreeMap::new(),
            lone: BTreeSet::new(),
            asked: BTreeMap::new(),
            extras: BTreeSet::new(),
            covered: false,
            ran_at: None,
            covered_at: None,
        };
        let started = std::time::Instant::now();
        for (from, shard) in self.early_shards.remove(&hash).unwrap_or_default() {
            if fits(&pending.header, &shard) {
                pending.shards.insert(shard.index, shard);
            } else {
                self.refuse_shard(from, &shard);
            }
        }
        Phases::add(&self.stats.phases.check_us, started);
        self.broadcast_built(&mut pending);
        self.early_shards.retain(|_, v| !v.is_empty());
        self.pending = Some(pending);
        for (from, outcome) in self.early_outcomes.remove(&hash).unwrap_or_default() {
            self.on_outcome(from, outcome);
        }
    }

    /// Step 2 for every shard this server is now responsible for and has not run: its shards
    /// of the block run in parallel.
    async fn execute(&mut self) -> Result<(), ServerError> {
        let Some(p) = &self.pending else {
            return Ok(());
        };
        let mut todo = Vec::new();
        let mut catch_up = BTreeSet::new();
        for shard in 0..self.config.shards {
            if p.mine.contains_key(&shard) {
                continue;
            }
            match p.accepted.get(&shard) {
                // Accepted, but nobody answered with the outcome (its holders restarted):
                // run it here once the shard is fetched, and keep it if the root matches.
                // Accepted alone by another server: run here before it is applied (step 3).
                Some((root, _)) => {
                    if (!p.outcomes.contains_key(&(shard, *root)) || p.lone.contains(&shard))
                        && p.shards.contains_key(&shard)
                    {
                        todo.push(shard);
                        catch_up.insert(shard);
                    }
                }
                None => {
                    if self.responsible(shard, p.arrived).contains(&self.me) {
                        todo.push(shard);
                    }
                }
            }
        }
        let mut jobs = Vec::new();
        for shard in todo {
            if !catch_up.contains(&shard)
                && !self.subscribed.contains(&shard)
                && let Some(p) = &mut self.pending
                && p.extras.insert(shard)
            {
                // An extra for this block: the shard is fetched by request (step 4).
                lock(&self.stats.subscribed).insert(shard);
                tracing::debug!(server = %self.me, shard, "running a stuck shard as an extra");
            }
            if let Some(message) = self.pending.as_ref().and_then(|p| p.shards.get(&shard)) {
                jobs.push((shard, message.clone()));
            }
        }
        let Some(p) = &self.pending else {
            return Ok(());
        };
        if jobs.is_empty() {
            return Ok(());
        }
        let (header, hash) = (p.header.clone(), p.hash);
        let (state, corrupt) = (self.state.clone(), self.config.corrupt);
        let stats = self.stats.clone();
        // Each shard's outcome comes back as soon as it has run: it is published while this
        // server runs the others, and the network is heard meanwhile, so the other servers'
        // outcomes are decoded and checked during this server's execution, not after it.
        let expected = jobs.len();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // In order: as the shards are listed (inline, so the simulator stays deterministic);
        // otherwise each as it finishes.
        let in_order = self.pool.is_none();
        let run = move || {
            use rayon::prelude::*;
            let started = std::time::Instant::now();
            // (Every shard held was checked against the header on arrival: `on_shard`.)
            let one = |(shard, message): (u16, ShardMessage)| {
                let ran = run_shard(&state, corrupt, &header, hash, shard, &message).map(
                    |(outcome, receipts)| {
                        let roots = outcome.roots();
                        let encoded = Message::Outcome(outcome.clone()).encode();
                        (outcome, receipts, roots, encoded)
                    },
                );
                (shard, ran)
            };
            if in_order {
                let ran: Vec<_> = jobs.into_par_iter().map(one).collect();
                for r in ran {
                    let _ = tx.send(r);
                }
            } else {
                jobs.into_par_iter().for_each_with(tx, |tx, job| {
                    let _ = tx.send(one(job));
                });
            }
            Phases::add(&stats.phases.execute_us, started);
        };
        match &self.pool {
            Some(pool) => pool.spawn(run),
            None => run(),
        }
        let mut received = 0;
        while received < expected {
            tokio::select! {
                biased;
                ran = rx.recv() => {
                    let Some((shard, ran)) = ran else {
                        return Err(ServerError::State("an execution thread panicked".into()));
                    };
                    received += 1;
                    self.record_run(hash, shard, ran)?;
                }
                event = self.net.recv() => match event {
                    Some(event) => self.on_event(event)?,
                    None => return Err(ServerError::Net(phalanx_net::NetError::Closed)),
                },
            }
        }
        if let Some(p) = &mut self.pending {
            p.ran_at = Some(Instant::now());
        }
        Ok(())
    }

    /// One shard this server ran for block `hash` (step 2): its outcome published and
    /// counted as this server's vote.
    fn record_run(
        &mut self,
        hash: B256,
        shard: u16,
        ran: Result<Ran, ServerError>,
    ) -> Result<(), ServerError> {
        let (outcome, receipts, (root, effects_root), encoded) = ran?;
        self.stats.executed.fetch_add(1, Ordering::Relaxed);
        self.net
            .publish(&effects_topic(&self.config.node), encoded)?;
        let me = self.me;
        if let Some(p) = &mut self.pending
            && p.hash == hash
        {
            if let Some((accepted, _)) = p.accepted.get(&shard)
                && *accepted != root
            {
                alarm(&self.stats, me, p.hash, shard, *accepted, root, me);
            }
            p.mine.insert(shard, root);
            p.receipts.insert((shard, root), receipts);
            p.votes.entry((shard, root)).or_default().insert(me);
            p.outcomes
                .entry((shard, root))
                .or_insert((outcome, effects_root));
        }
        Ok(())
    }

    /// Step 3 (and the reading side of it for shards this server does not run).
    async fn accept(&mut self) -> Result<(), ServerError> {
        let Some(p) = &self.pending else {
            return Ok(());
        };
        let (hash, arrived) = (p.hash, p.arrived);
        // Headers beyond this block are known: it is history, its outcomes long accepted.
        let catching_up = !self.headers.is_empty();
        for shard in 0..self.config.shards {
            let Some(p) = &self.pending else {
                break;
            };
            if p.accepted.contains_key(&shard) {
                continue;
            }
            let _responsible = self.responsible(shard, arrived);
            let key = accepted_key(&self.config.node, hash, shard);
            let mine = p.mine.get(&shard).copied();
            let agreeing = |root: &B256| p.votes.get(&(shard, *root)).map_or(0, |v| v.len());
            let write = mine.filter(|root| {
                // Alone only once the others have had a lease's time to show up.
                agreeing(root) >= self.config.agreement.max(1)
                    || (self.live.len() <= 1 && self.started.elapsed() >= self.config.lease_ttl)
            });
            let alone = write.is_some_and(|root| agreeing(&root) < self.config.agreement.max(1));
            let seen_any = p.votes.keys().any(|(s, _)| *s == shard);
            let value = match write {
                Some(root) => {
                    let mine = if alone {
                        lone_accepted_value(root, &self.me)
                    } else {
                        accepted_value(root, &self.me)
                    };
                    let started = std::time::Instant::now();
                    let created = self.store.create_if_absent(&key, mine.as_bytes()).await?;
                    {
                        let mut rtt = lock(&self.stats.accept_rtt_us);
                        rtt.push(started.elapsed().as_micros() as u64);
                        if rtt.len() > 2 * STATS_HEIGHTS {
                            rtt.drain(..STATS_HEIGHTS);
                        }
                    }
                    match created {
                        Created::Won => {
                            self.stats.accepts_won.fetch_add(1, Ordering::Relaxed);
                            let note = Message::Accepted(AcceptedNote { block: hash, shard });
                            self.net
                                .publish(&effects_topic(&self.config.node), note.encode())?;
                            Some(mine.into_bytes())
                        }
                        Created::Lost(v) => Some(v),
                    }
                }
                // Not (yet) writing: read what was accepted once outcomes are about.
                None if seen_any
                    || catching_up
                    || arrived.elapsed() > self.config.accept_timeout =>
                {
                    self.store.get(&key).await?
                }
                None => None,
            };
            let Some(value) = value else {
                continue;
            };
            let Some((root, writer)) = parse_accepted(&value) else {
                self.stats.invalid.fetch_add(1, Ordering::Relaxed);
                tracing::error!(key, "unreadable accepted value in the coordination store");
                continue;
            };
            let me = self.me;
            let stats = self.stats.clone();
            if let Some(p) = &mut self.pending {
                p.accepted.insert(shard, (root, writer));
                if writer != me && is_lone_accepted(&value) {
                    p.lone.insert(shard);
                }
                for ((s, other), senders) in &p.votes {
                    if *s == shard && *other != root {
                        for sender in senders {
                            alarm(&stats, me, hash, shard, root, *other, *sender);
                        }
                    }
                }
            }
        }
        self.settle_lone().await
    }

    /// Results another server accepted alone (step 3), once this server has run the shard:
    /// the same root confirms it — the record is written again without the mark, and any
    /// server then applies it as any accepted result; another root on which `agreement` (at
    /// least two) servers' outcomes agree replaces it, as it would have been accepted had
    /// they been live. Until one or the other the block waits here, never applying the lone
    /// result, and reads the record again now and then (another server may have settled it).
    async fn settle_lone(&mut self) -> Result<(), ServerError> {
        let Some(p) = &self.pending else {
            return Ok(());
        };
        let hash = p.hash;
        let needed = self.config.agreement.max(2);
        let reread = self.config.tick * 10;
        let mut work = Vec::new();
        for shard in &p.lone {
            let (Some((lone, writer)), Some(mine)) = (p.accepted.get(shard), p.mine.get(shard))
            else {
                continue;
            };
            let agreeing = p.votes.get(&(*shard, *mine)).map_or(0, |v| v.len());
            if mine == lone {
                work.push((*shard, Some((*lone, *writer))));
            } else if agreeing >= needed {
                work.push((*shard, Some((*mine, self.me))));
            } else if p
                .asked
                .get(&(LONE_READ, *shard))
                .is_none_or(|t| t.elapsed() > reread)
            {
                work.push((*shard, None));
            }
        }
        for (shard, settled) in work {
            let key = accepted_key(&self.config.node, hash, shard);
            let Some((root, writer)) = settled else {
                // Read it again.
                let value = self.store.get(&key).await?;
                if let Some(p) = &mut self.pending {
                    p.asked.insert((LONE_READ, shard), Instant::now());
                    if let Some(v) = value.filter(|v| !is_lone_accepted(v))
                        && let Some(accepted) = parse_accepted(&v)
                    {
                        p.accepted.insert(shard, accepted);
                        p.lone.remove(&shard);
                        self.nudge = true;
                    }
                }
                continue;
            };
            let Some(p) = &mut self.pending else {
                break;
            };
            let lone = p.accepted.get(&shard).map_or(B256::ZERO, |(r, _)| *r);
            if root == lone {
                tracing::info!(server = %self.me, block = %hash, shard, %root, %writer, "a result accepted alone is confirmed by this server's run");
            } else {
                self.stats.lone_replaced.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    server = %self.me,
                    block = %hash,
                    shard,
                    %lone,
                    agreed = %root,
                    "ALARM: a result accepted alone is contradicted by agreeing servers; replaced"
                );
            }
            p.accepted.insert(shard, (root, writer));
            p.lone.remove(&shard);
            self.store
                .put(&key, accepted_value(root, &writer).as_bytes(), None)
                .await?;
            let note = Message::Accepted(AcceptedNote { block: hash, shard });
            self.net
                .publish(&effects_topic(&self.config.node), note.encode())?;
        }
        Ok(())
    }

    /// Asks for shards this server must run but lacks, and accepted outcomes it lacks.
    fn fetch_missing(&mut self) -> Result<(), ServerError> {
        let retry = self.config.tick * 10;
        let Some(p) = &self.pending else {
            return Ok(());
        };
        let mut sends = Vec::new();
        let mut asked = Vec::new();
        for shard in 0..self.config.shards {
            let due = |kind: u8| {
                p.asked
                    .get(&(kind, shard))
                    .is_none_or(|t| t.elapsed() > retry)
            };
            if let Some((root, writer)) = p.accepted.get(&shard) {
                let missing = !p.outcomes.contains_key(&(shard, *root));
                // Asked around for a while without an answer: fetch the shard and run it.
                let long = p
                    .asked
                    .get(&(1, shard))
                    .is_some_and(|t| t.elapsed() > retry)
                    || p.arrived.elapsed() > self.config.accept_timeout * 2;
                // Accepted alone by another server: to be run here, so fetched at once.
                let unverified = p.lone.contains(&shard) && !p.mine.contains_key(&shard);
                if (missing && long || unverified) && !p.shards.contains_key(&shard) && due(0) {
                    let request = Request {
                        kind: 0,
                        block: p.hash,
                        index: shard,
                        root: B256::ZERO,
                        height: 0,
                    };
                    sends.push((p.source, Message::Request(request).encode()));
                    asked.push((0, shard));
                    lock(&self.stats.subscribed).insert(shard);
                }
                if missing && due(1) {
                    let request = Request {
                        kind: 1,
                        block: p.hash,
                        index: shard,
                        root: *root,
                        height: 0,
                    };
                    // Those known to hold it, and every live server of the node: the writer
                    // may have died, or restarted without it; any server that applied the
                    // block keeps it.
                    let mut ask: BTreeSet<PeerKey> =
                        p.votes.get(&(shard, *root)).cloned().unwrap_or_default();
                    ask.insert(*writer);
                    ask.extend(self.live.keys().copied());
                    ask.remove(&self.me);
                    for peer in ask {
                        sends.push((peer, Message::Request(request.clone()).encode()));
                    }
                    asked.push((1, shard));
                }
            } else if !p.shards.contains_key(&shard)
                && !p.mine.contains_key(&shard)
                && (p.extras.contains(&shard)
                    || (self.subscribed.contains(&shard)
                        && p.arrived.elapsed() > self.config.tick * 4))
                && due(0)
            {
                let request = Request {
                    kind: 0,
                    block: p.hash,
                    index: shard,
                    root: B256::ZERO,
                    height: 0,
                };
                sends.push((p.source, Message::Request(request).encode()));
                asked.push((0, shard));
            }
        }
        for (peer, data) in sends {
            self.net.send(peer, data)?;
        }
        if let Some(p) = &mut self.pending {
            for a in asked {
                p.asked.insert(a, Instant::now());
            }
        }
        Ok(())
    }

    /// Step 5.
    async fn apply(&mut self) -> Result<(), ServerError> {
        let Some(p) = &self.pending else {
            return Ok(());
        };
        if p.accepted.len() < self.config.shards as usize {
            return Ok(());
        }
        // A result another server accepted alone counts once this server's run agrees.
        let complete = (0..self.config.shards).all(|shard| {
            p.accepted.get(&shard).is_some_and(|(root, _)| {
                p.outcomes.contains_key(&(shard, *root))
                    && (!p.lone.contains(&shard) || p.mine.get(&shard) == Some(root))
            })
        });
        if !complete {
            return Ok(());
        }
        let Some(mut p) = self.pending.take() else {
            return Ok(());
        };
        if let Some(ran) = p.ran_at {
            let covered = p.covered_at.unwrap_or(ran).max(ran);
            let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
            let phases = &self.stats.phases;
            phases
                .wait_outcomes_us
                .fetch_add(us(covered - ran), Ordering::Relaxed);
            phases
                .wait_accepts_us
                .fetch_add(us(covered.elapsed()), Ordering::Relaxed);
        }
        // (root, effects root, outcome) of each shard's accepted outcome, in shard order.
        let mut outcomes = Vec::with_capacity(self.config.shards as usize);
        for shard in 0..self.config.shards {
            if let Some((root, _)) = p.accepted.get(&shard)
                && let Some((o, effects_root)) = p.outcomes.remove(&(shard, *root))
            {
                outcomes.push((*root, effects_root, o));
            }
        }
        // Receipts of the shards whose accepted result is this server's own: kept with the
        // block in the store, so they are on disk when its state is.
        // Their transactions too (also of a void block: it lists them), and every block's
        // header: what the node's history reads are put together from (`crate::lookup`).
        let mut kept: Vec<(u16, Vec<Receipt>)> = Vec::new();
        let mut kept_txs: Vec<(u16, Vec<Bytes>)> = Vec::new();
        for (shard, (root, _)) in &p.accepted {
            if p.mine.get(shard) != Some(root) {
                continue;
            }
            if let Some(r) = p.receipts.remove(&(*shard, *root)) {
                kept.push((*shard, r));
            }
            if let Some(m) = p
                .shards
                .get(shard)
                .filter(|_| self.config.keep_transactions)
            {
                let txs = m.shard.transactions.iter();
                kept_txs.push((*shard, txs.map(|t| Bytes::copy_from_slice(t)).collect()));
            }
        }
        let header = p.header.clone();
        let env = p.header.env();
        let (state, log) = (self.state.clone(), self.config.roots_log.clone());
        let (parent, hash, number) = (p.header.parent, p.hash, p.header.number);
        let gas_limit = p.header.shard_gas_limit;
        let (stats, accepted) = (self.stats.clone(), outcomes);
        let synced = self.syncer.is_none();
        // Final on disk now when `persist_blocks` are waiting, or when no next block is here
        // (at the chain's head every block is; only a backlog is written in batches).
        let persist = number >= self.persisted + self.config.persist_blocks.max(1)
            || !self.headers.contains_key(&(number + 1));
        let result = off_runtime(&self.pool, move || {
            let started = std::time::Instant::now();
            let results: Vec<Result<ShardResult, VoidReason>> = accepted
                .iter()
                .map(|(_, effects_root, o)| o.to_result(gas_limit, *effects_root))
                .collect();
            Phases::add(&stats.phases.merge_us, started);
            let started = std::time::Instant::now();
            let result = state
                .apply(parent, hash, &env, results)
                .map_err(|e| ServerError::State(e.to_string()))?;
            Phases::add(&stats.phases.apply_us, started);
            let kept_err = |e: phalanx_execution::StateError| ServerError::State(e.to_string());
            if result.void.is_none() && !kept.is_empty() {
                state.keep_receipts(hash, kept).map_err(kept_err)?;
            }
            if !kept_txs.is_empty() {
                state.keep_transactions(hash, kept_txs).map_err(kept_err)?;
            }
            state.keep_header(&header).map_err(kept_err)?;
            if let Some(path) = &log {
                log_root(path, number, hash, result.post_state_root)
                    .map_err(|e| ServerError::State(format!("{}: {e}", path.display())))?;
            }
            if persist {
                finalize(&state, &stats, hash, synced)?;
            }
            Ok::<_, ServerError>((result, accepted))
        })
        .await??;
        let (result, outcomes) = result;
        self.head = (p.header.number, p.hash);
        if persist {
            self.mark_persisted(self.head.0);
        } else {
            self.unpersisted_since.get_or_insert_with(Instant::now);
        }
        // The next header is already here: start it now, not at the next event or tick.
        self.nudge |=
            self.config.builder.is_none() && self.headers.contains_key(&(self.head.0 + 1));
        self.stats.record_applied(
            p.header.number,
            p.hash,
            result.post_state_root,
            BlockFees {
                void: result.void.is_some(),
                validator_fee: result.validator_fee,
            },
        );
        self.stats.applied.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            server = %self.me,
            height = p.header.number,
            root = %result.post_state_root,
            void = result.void.is_some(),
            "block applied"
        );
        for (root, _, o) in outcomes {
            self.kept.insert((p.hash, o.shard, root), o);
        }
        self.kept_order.push_back(p.hash);
        while self.kept_order.len() > self.config.keep_blocks {
            if let Some(old) = self.kept_order.pop_front() {
                self.kept.retain(|(b, _, _), _| *b != old);
            }
        }
        // The applied height goes under the lease now, not at the next tick: a server
        // working through a queue of blocks faster than it ticks would otherwise look several
        // blocks behind to its peers, not live, and lose its shards to a takeover. A failed
        // write is retried by the tick (which also renews a lapsed lease).
        if let Err(e) = self.announce().await {
            tracing::warn!(server = %self.me, error = %e, "cannot announce the applied height; the tick retries");
        }
        Ok(())
    }
}

/// Nothing, for records past the store's kept window.
fn unpruned<T>(
    read: Result<Vec<T>, phalanx_execution::StateError>,
) -> Result<Vec<T>, phalanx_execution::StateError> {
    match read {
        Err(phalanx_execution::StateError::ReceiptsPruned { .. }) => Ok(Vec::new()),
        read => read,
    }
}

fn log_root(path: &std::path::Path, height: u64, block: B256, root: B256) -> std::io::Result<()> {
    use std::io::Write as _;
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(file, "{height} {block} {root} {ms}")?;
    file.sync_data()
}

fn alarm(
    stats: &ServerStats,
    me: PeerKey,
    block: B256,
    shard: u16,
    accepted: B256,
    other: B256,
    sender: PeerKey,
) {
    stats.alarms.fetch_add(1, Ordering::Relaxed);
    tracing::error!(
        server = %me,
        %block,
        shard,
        %accepted,
        differing = %other,
        from = %sender,
        "ALARM: a shard outcome differs from the accepted one"
    );
}

/// A shard's outcome as published.
pub fn outcome_of(
    block: B256,
    shard: u16,
    result: Result<ShardResult, VoidReason>,
) -> Result<ShardOutcome, ServerError> {
    let empty = |void_tx: u64| ShardOutcome {
        block,
        shard,
        void: true,
        void_tx,
        effects: ShardEffects {
            accounts: VariableList::empty(),
            gas_used: 0,
            fees: B256::ZERO,
        },
        codes: VariableList::empty(),
    };
    match result {
        Err(VoidReason::ShardGasLimit { tx, .. }) => Ok(empty(tx as u64)),
        Err(other) => Err(ServerError::State(format!("shard {shard}: {other}"))),
        Ok(r) => {
            let effects =
                ShardEffects::new(&r.changes, r.gas_used, r.fees).map_err(ServerError::State)?;
            let codes = r
                .changes
                .codes
                .values()
                .map(|c| VariableList::new(c.to_vec()))
                .collect::<Result<Vec<_>, _>>()
                .and_then(VariableList::new)
                .map_err(|e| ServerError::State(format!("{e:?}")))?;
            Ok(ShardOutcome {
                block,
                shard,
                void: false,
                void_tx: 0,
                effects,
                codes,
            })
        }
    }
}

/// Whether `shard` is the one `header` names at its index.
fn fits(header: &ExecHeader, shard: &ShardMessage) -> bool {
    header.shard_roots.get(usize::from(shard.index)) == Some(&shard.shard.tree_hash_root())
}

/// The fault a corrupting server injects: one wei more in the first changed balance (or one
/// more gas when nothing changed).
fn corrupt(outcome: &mut ShardOutcome) {
    match outcome.effects.accounts.iter_mut().next() {
        Some(account) => {
            let balance = alloy_primitives::U256::from_be_bytes(account.balance.0)
                .wrapping_add(alloy_primitives::U256::from(1));
            account.balance = B256::from(balance);
        }
        None => outcome.effects.gas_used += 1,
    }
}

/// One shard a server ran: its outcome, receipts, (outcome root, effects root) and the
/// outcome encoded for the effects topic.
type Ran = (ShardOutcome, Vec<Receipt>, (B256, B256), Vec<u8>);

/// Makes `block` final on disk with every applied block below it, timed as `finalize`;
/// `synced`: waits for the fsync too (otherwise the server's [`Syncer`] makes it durable).
fn finalize(
    state: &StateStore,
    stats: &ServerStats,
    block: B256,
    synced: bool,
) -> Result<(), ServerError> {
    let started = std::time::Instant::now();
    match synced {
        true => state.finalize(block),
        false => state.finalize_unsynced(block),
    }
    .map_err(|e| ServerError::State(e.to_string()))?;
    Phases::add(&stats.phases.finalize_us, started);
    Ok(())
}

/// Makes every commit durable, timed as `sync`; records the durable height.
fn sync(state: &StateStore, stats: &ServerStats) -> Result<(), ServerError> {
    let started = std::time::Instant::now();
    let head = state
        .sync()
        .map_err(|e| ServerError::State(format!("cannot sync the state to disk: {e}")))?;
    Phases::add(&stats.phases.sync_us, started);
    if let Some(head) = head {
        stats.synced.fetch_max(head.number, Ordering::Relaxed);
    }
    Ok(())
}

/// A server's `server-sync` thread ([`ServerConfig::background_sync`]): each request makes
/// the commits made before it durable; requests made while a sync runs are served by one
/// more sync after it. A failed sync is logged and tried again at the next request (the
/// commits stay in memory meanwhile; the shutdown's sync returns the error).
struct Syncer {
    requests: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    fn start(
        state: Arc<StateStore>,
        stats: Arc<ServerStats>,
        server: PeerKey,
    ) -> std::io::Result<Self> {
        let (requests, received) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("server-sync".into())
            .spawn(move || {
                while received.recv().is_ok() {
                    while received.try_recv().is_ok() {}
                    if let Err(e) = sync(&state, &stats) {
                        tracing::error!(server = %server, error = %e, "state sync failed; retried at the next commit");
                    }
                }
            })?;
        Ok(Self {
            requests: Some(requests),
            thread: Some(thread),
        })
    }

    fn request(&self) {
        if let Some(requests) = &self.requests {
            let _ = requests.send(());
        }
    }

    /// Ends the thread once the requests made so far are served; its handle, to join.
    fn stop(&mut self) -> Option<std::thread::JoinHandle<()>> {
        self.requests = None;
        self.thread.take()
    }
}

impl Drop for Syncer {
    /// A server dropped without stopping (its task aborted, an error) still waits for the
    /// sync in progress: the thread holds the state store, which a restart in the same
    /// process reopens.
    fn drop(&mut self) {
        if let Some(thread) = self.stop() {
            let _ = thread.join();
        }
    }
}

/// Step 2 for one shard: run it against the parent state.
fn run_shard(
    state: &StateStore,
    corrupt_effects: bool,
    header: &ExecHeader,
    hash: B256,
    shard: u16,
    message: &ShardMessage,
) -> Result<(ShardOutcome, Vec<Receipt>), ServerError> {
    use rayon::prelude::*;
    let env = header.env();
    let view = state
        .view(header.parent)
        .map_err(|e| ServerError::State(e.to_string()))?;
    // (Decoded from the message's own bytes: no copy of the transactions.)
    let prepared: Vec<_> = message
        .shard
        .transactions
        .par_iter()
        .map(|raw| block::prepare_tx(raw))
        .collect();
    let result = block::run_shard(&view, &env, &env.exec_env(), shard as usize, &prepared)
        .map_err(|e| ServerError::State(e.to_string()))?;
    let receipts = result
        .as_ref()
        .map(|r| r.receipts.clone())
        .unwrap_or_default();
    let mut outcome = outcome_of(hash, shard, result)?;
    if corrupt_effects {
        corrupt(&mut outcome);
    }
    Ok((outcome, receipts))
}
