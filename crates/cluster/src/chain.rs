//! Following the consensus chain from gossip: which headers a server executes when it takes
//! the chain's blocks from the network rather than from a serving node's HTTP API.
//!
//! A server following the chain this way subscribes to the `block` and `attestation` topics
//! ([`crate::wire::BLOCK_TOPIC`], [`crate::wire::ATTESTATION_TOPIC`]) and runs one
//! [`ChainFollower`], a state machine with no I/O of its own (the server sends what it asks
//! for and hands it what arrives):
//!
//! 1. **Hold.** Every consensus block that arrives — gossiped, or as an answer — is checked
//!    against its own header (the body must hash to `body_root`; otherwise the sender is scored
//!    down) and held by root, forks included, unverified: whether a block counts is settled by
//!    finality, not by the order blocks arrive in. Blocks at or before the last verified slot
//!    are of no use and dropped. At most [`MAX_HELD`] are held; past that the highest slots are
//!    dropped first (the oldest are the ones the next step needs), and asked for again later.
//! 2. **Votes.** The aggregated attestations in every held block's body and on the attestation
//!    topic are counted by Casper FFG ([`phalanx_light::finality`]): each aggregate's signature
//!    against the slot's committee, a checkpoint justified by links of over two thirds of the
//!    stake from a justified one, finalized by a link to the next epoch. Votes are
//!    self-authenticating, so where they arrive from does not matter.
//! 3. **Finality.** When the finalized checkpoint's block is held and the held blocks link
//!    back from it to the last verified block by their parent roots, each of them is verified
//!    in order as a light client verifies a header ([`phalanx_light::headers`]: chain link,
//!    scheduled proposer, producer's and proposer's signatures) and its execution header is
//!    derived from it — the server executes exactly that — and the slashings in its body are
//!    applied (slashed validators propose no more and their votes weigh nothing). A block that
//!    fails is dropped and logged, and asked for again (rule 4): a good copy goes through.
//! 4. **Gaps.** A held block whose parent is neither held nor verified, or a finalized block
//!    not held, is a gap: the follower asks for that root with its ancestors
//!    ([`crate::wire::Request::CHAIN_ANCESTORS`], up to 32 blocks newest first), one request at
//!    a time, again after [`RETRY`] without an answer. Catching up from far behind is this
//!    walk back from the first gossiped block to the last verified one. A block that turns out
//!    to be at or before the last verified slot without being it ends a dead fork: it and the
//!    held blocks built on it are dropped and not asked for again.
//! 5. **Restart.** From a replica whose head is after genesis, the follower starts from that
//!    head's execution header (asked of the serving peer, taken only if it hashes to the
//!    replica's head) with its consensus block unknown; the walk back reaches the block at the
//!    head's slot, which must derive exactly that header ([`HeaderChain::anchor`]) before any
//!    later block is verified. Sources at or before the head's epoch count as justified, as
//!    for a light client started at a checkpoint.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use alloy_primitives::B256;
use phalanx_light::finality::{AttestationError, Finality};
use phalanx_light::headers::HeaderChain;
use phalanx_spec::Genesis;
use phalanx_types::{Attestation, Root};

use crate::wire::{ChainBlock, ExecHeader};

/// Unverified blocks held, at most.
pub const MAX_HELD: usize = 8_192;

/// How long an unanswered ancestors request waits before it is asked again.
pub const RETRY: Duration = Duration::from_secs(2);

/// A block refused on arrival (its sender is scored down).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockRefused {
    /// The body is not the one the header commits to.
    #[error("block at slot {slot}: its body does not hash to the header's body root")]
    BodyMismatch {
        /// The block's slot.
        slot: u64,
    },
}

/// Where a follower stands, for progress lines and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainStatus {
    /// Height of the last verified, final block.
    pub height: u64,
    /// Slot of that block.
    pub slot: u64,
    /// The finalized epoch counted so far.
    pub finalized_epoch: u64,
    /// Unverified blocks held.
    pub held: usize,
    /// Whether the consensus block of the starting point is still unknown (a restart).
    pub anchoring: bool,
    /// Final blocks refused by verification.
    pub refused: u64,
}

/// Follows the consensus chain from the blocks and attestations handed to it (module docs).
#[derive(Debug)]
pub struct ChainFollower {
    headers: HeaderChain,
    finality: Finality,
    /// The starting point's execution header while its consensus block is unknown.
    checkpoint: Option<ExecHeader>,
    held: HashMap<Root, ChainBlock>,
    dead: HashSet<Root>,
    asked: Option<(Root, Instant)>,
    refused: u64,
}

impl ChainFollower {
    /// From the chain's genesis.
    pub fn from_genesis(genesis: &Genesis) -> Result<Self, String> {
        let (hash, _) = crate::follow::chain_genesis(genesis);
        Ok(Self::new(
            HeaderChain::from_genesis(genesis, hash)?,
            Finality::from_genesis(genesis)?,
            None,
        ))
    }

    /// From a replica's head after genesis (rule 5): `head` is its execution header, which
    /// must hash to `trusted`, the replica's head block.
    pub fn resume(genesis: &Genesis, head: &ExecHeader, trusted: B256) -> Result<Self, String> {
        let headers =
            HeaderChain::from_checkpoint(genesis, head, trusted).map_err(|e| e.to_string())?;
        let epoch = headers.slot().epoch(genesis.spec.slots_per_epoch.max(1));
        let finality = Finality::from_checkpoint(genesis, epoch)?;
        Ok(Self::new(headers, finality, Some(head.clone())))
    }

    fn new(headers: HeaderChain, finality: Finality, checkpoint: Option<ExecHeader>) -> Self {
        Self {
            headers,
            finality,
            checkpoint,
            held: HashMap::new(),
            dead: HashSet::new(),
            asked: None,
            refused: 0,
        }
    }

    /// Where the follower stands.
    pub fn status(&self) -> ChainStatus {
        ChainStatus {
            height: self.headers.height(),
            slot: self.headers.slot().0,
            finalized_epoch: self.finality.finalized().epoch.0,
            held: self.held.len(),
            anchoring: self.checkpoint.is_some(),
            refused: self.refused,
        }
    }

    /// Rule 1 for a block that arrived; returns the execution headers now final (rules 2–3),
    /// in height order.
    pub fn on_block(&mut self, block: ChainBlock) -> Result<Vec<ExecHeader>, BlockRefused> {
        let slot = block.header.message.slot;
        if !block.body_matches() {
            return Err(BlockRefused::BodyMismatch { slot: slot.0 });
        }
        let root = block.root();
        if self.asked.is_some_and(|(r, _)| r == root) {
            self.asked = None;
        }
        if slot <= self.headers.slot() {
            self.at_or_before_tip(&block, root);
            return Ok(self.advance());
        }
        if self.held.contains_key(&root) || self.dead.contains(&root) {
            return Ok(Vec::new());
        }
        for a in block.body.attestations.iter() {
            self.count(a);
        }
        self.held.insert(root, block);
        if self.held.len() > MAX_HELD {
            self.drop_highest();
        }
        Ok(self.advance())
    }

    /// Rule 2 for a gossiped aggregate; returns the execution headers now final.
    pub fn on_attestation(
        &mut self,
        attestation: &Attestation,
    ) -> Result<Vec<ExecHeader>, AttestationError> {
        if self.finality.on_attestation(attestation)? {
            return Ok(self.advance());
        }
        Ok(Vec::new())
    }

    /// Rule 4: the root to ask for with its ancestors now, if any (at most one request in
    /// flight, asked again after [`RETRY`]).
    pub fn next_request(&mut self, now: Instant) -> Option<Root> {
        if let Some((_, at)) = self.asked
            && now.saturating_duration_since(at) < RETRY
        {
            return None;
        }
        let tip = self.headers.root();
        let finalized = self.finality.finalized().root;
        let wanted = if finalized != Root::ZERO
            && Some(finalized) != tip
            && !self.held.contains_key(&finalized)
            && !self.dead.contains(&finalized)
        {
            Some(finalized)
        } else {
            // The highest held block with a missing parent: the walk back from the newest.
            self.held
                .values()
                .filter(|b| {
                    let parent = b.header.message.parent_root;
                    Some(parent) != tip
                        && !self.held.contains_key(&parent)
                        && !self.dead.contains(&parent)
                })
                .max_by_key(|b| b.header.message.slot)
                .map(|b| b.header.message.parent_root)
        };
        self.asked = wanted.map(|r| (r, now));
        wanted
    }

    /// A block at or before the last verified slot: the starting point's own block on a
    /// restart, else the end of a dead fork (rule 4).
    fn at_or_before_tip(&mut self, block: &ChainBlock, root: Root) {
        if Some(root) == self.headers.root() {
            return;
        }
        if let Some(checkpoint) = &self.checkpoint
            && block.header.message.slot == self.headers.slot()
        {
            match self.headers.anchor(&block.header, checkpoint) {
                Ok(_) => {
                    tracing::info!(
                        height = checkpoint.number,
                        slot = block.header.message.slot.0,
                        %root,
                        "chain: the replica's head block found; following from it"
                    );
                    self.checkpoint = None;
                    self.prune();
                    return;
                }
                Err(e) => {
                    tracing::debug!(%root, error = %e, "chain: not the replica's head block");
                }
            }
        }
        self.dead.insert(root);
        self.prune();
    }

    fn count(&mut self, attestation: &Attestation) {
        if let Err(e) = self.finality.on_attestation(attestation) {
            tracing::debug!(error = %e, "chain: attestation in a block refused");
        }
    }

    /// Rule 3: verifies the held chain from the last verified block up to the finalized one.
    fn advance(&mut self) -> Vec<ExecHeader> {
        let mut out = Vec::new();
        let Some(tip) = self.headers.root() else {
            return out;
        };
        let target = self.finality.finalized().root;
        if target == tip || !self.held.contains_key(&target) {
            return out;
        }
        let mut chain = vec![target];
        let mut at = target;
        loop {
            let Some(parent) = self.held.get(&at).map(|b| b.header.message.parent_root) else {
                return out;
            };
            if parent == tip {
                break;
            }
            if !self.held.contains_key(&parent) {
                // A gap: asked for by `next_request`.
                return out;
            }
            chain.push(parent);
            at = parent;
        }
        for root in chain.into_iter().rev() {
            let Some(block) = self.held.remove(&root) else {
                break;
            };
            match self.headers.extend(&block.header) {
                Ok((_, header)) => {
                    for v in self.headers.apply_body(&block.body) {
                        tracing::info!(
                            validator = v.0,
                            height = header.number,
                            "validator slashed on chain"
                        );
                        self.finality.slash(v);
                    }
                    out.push(header);
                }
                Err(e) => {
                    // Dropped, not marked dead: a good copy (same root, another sender) is
                    // asked for again and taken.
                    self.refused += 1;
                    tracing::warn!(%root, error = %e, "chain: a finalized block does not verify; dropped");
                    break;
                }
            }
        }
        self.prune();
        out
    }

    /// Drops held blocks at or before the last verified slot and those built on dead ones.
    fn prune(&mut self) {
        let slot = self.headers.slot();
        let dead = &mut self.dead;
        let mut changed = true;
        self.held.retain(|root, b| {
            let keep = b.header.message.slot > slot;
            if !keep {
                dead.insert(*root);
            }
            keep
        });
        while changed {
            changed = false;
            let orphans: Vec<Root> = self
                .held
                .iter()
                .filter(|(_, b)| self.dead.contains(&b.header.message.parent_root))
                .map(|(r, _)| *r)
                .collect();
            for r in orphans {
                self.held.remove(&r);
                self.dead.insert(r);
                changed = true;
            }
        }
        if self.dead.len() > MAX_HELD {
            self.dead.clear();
        }
    }

    /// Over [`MAX_HELD`]: the highest slot goes first.
    fn drop_highest(&mut self) {
        if let Some(root) = self
            .held
            .iter()
            .max_by_key(|(_, b)| b.header.message.slot)
            .map(|(r, _)| *r)
        {
            self.held.remove(&root);
        }
    }
}
