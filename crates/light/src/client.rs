//! The light client's rules, as a sans-IO state machine: headers, claims, proofs and the clock
//! in; the state root it believes at each height, the proofs it needs and the executors a
//! proof showed wrong out.
//!
//! 1. **Checkpoint.** The client starts from a trusted `(height, block hash, state root)`.
//!    Weak subjectivity: a client offline for longer than the executors' withdrawal delay
//!    must be given a fresh one, because bonds behind old claims may be gone. As it goes it
//!    keeps the last 1,024 decided heights and folds older ones into its checkpoint.
//! 2. **Headers.** It accepts headers that extend its chain by one (parent hash = its last
//!    header's hash); anything else is refused with a typed error. Headers are checked before
//!    they are handed here ([`crate::headers`]: producer, proposer and RANDAO signatures, the
//!    proposer schedule, the execution header derived from the consensus header) and shown
//!    final by aggregated attestations ([`crate::finality`]).
//! 3. **Claims.** A signed claim is taken only if its block is a header the client holds at
//!    the claimed height (a claim about an unknown block is dropped at once, unweighed — it can
//!    trigger nothing) and its executor is bonded (weight > 0 at the block's epoch). Its
//!    signature is checked before it is weighed, in a batch with every other claim taken
//!    since the last decision (claims of one message aggregated); one that fails is dropped.
//!    One executor's first claim per height counts; a second, different claim for the same
//!    height with a valid signature is an equivocation: it is refused, and the executor's
//!    first claim stops counting at that height too.
//! 4. **The claims graph.** Vertices are state roots, edges are blocks (a claim says "block
//!    `h` takes `prev_state_root` to `post_state_root`"), weights are bonds. From the root it
//!    believes at height `h − 1`, the client looks at the claims for block `h` that start
//!    there and follows the heaviest child — GHOST: a child's weight is the bond behind it
//!    plus the weight of its own heaviest subtree of later claims, so executors who keep
//!    building on a root support it.
//!    The client decides block `h` once claims carrying `quorum` (default ⅔) of all active
//!    bond have arrived, or once `claim_timeout_ms` has passed since the header; every new
//!    claim or proof makes it decide again from that height on, so a root believed on the
//!    first claims is dropped as soon as later ones dispute it.
//! 5. **Disagreement.** If `disagreement` (default 10%) or more of the bond claiming block `h`
//!    from that root claims something other than the heaviest child, the client trusts no
//!    claim at `h`: it asks for a proof of execution and stops advancing until it has one.
//!    ("Or more": with 90% of the bond lying, the honest 10% must be enough to force a
//!    proof.)
//! 6. **Withheld claims.** If no bonded claim for block `h` from the believed root has arrived
//!    `claim_timeout_ms` after the header, the client asks for a proof rather than guess.
//! 7. **Proofs.** A proof of execution (the block's shards and a parent-state witness,
//!    `phalanx_execution::proof`) is checked against the header's shard roots and the root
//!    the client believes at `h − 1`, and re-executed statelessly. Its post-state root has
//!    infinite weight: the client believes it whatever the claims say. A forged or incomplete
//!    proof is a typed error and changes nothing.
//!    **Only the disputed shards are re-executed.** Where the claims from the believed parent
//!    disagree (rule 5) but every one of them names the same effects root for a shard, that
//!    shard is *agreed*: the proof may give its effects instead of its transactions, and the
//!    client takes them if they hash to that root (then finishes the block: conflict rule,
//!    fee credits, applying the merged changes). The proof the client asks for re-executes
//!    only the other shards ([`Need::execute`]). This is as safe as rule 5 itself: the
//!    disagreement that makes the client look is raised by at least one honest claimant, and
//!    an honest claimant names the true effects root of every shard, so an agreed root is the
//!    true one. With no claims to compare (rule 6) or claims whose effects roots do not line
//!    up with the header's shards, every shard is re-executed. Agreement is read again when
//!    the proof arrives: a claim that disputes a shard meanwhile makes a proof that took
//!    that shard's effects a typed error, and the client asks again. Every claim for block `h` from that parent
//!    whose post-state root differs is slashable: the client reports the executor and its
//!    claim, for a proof to be submitted on chain — also for such claims arriving after the
//!    proof.
//!
//! Not built here yet: defences against executors copying others' claims without executing
//! (the verifier's dilemma).

use std::collections::{BTreeMap, HashMap};

use alloy_primitives::B256;
use phalanx_consensus::executors::ExecutorRegistry;
use phalanx_crypto::bls::{SignatureSet, verify_signature_sets};
use phalanx_crypto::{PublicKey, Signature};
use phalanx_execution::block::BlockEnv;
use phalanx_execution::proof::{ExecutionProof, ExecutionProofError};
use phalanx_types::{Claim, Epoch, ExecutorIndex, Gwei, SignedClaim, SigningContext};
use rayon::prelude::*;

/// Settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Fraction of the claiming bond whose disagreement forces a proof (rule 5).
    pub disagreement: f64,
    /// How long after a header the client waits for claims before asking for a proof
    /// (rule 6).
    pub claim_timeout_ms: u64,
    /// Blocks per epoch (bonds are read at the block's epoch).
    pub blocks_per_epoch: u64,
    /// How many later heights GHOST looks ahead (rule 4).
    pub lookahead: u64,
    /// Fraction of the active bond whose claims let the client decide before the timeout.
    pub quorum: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            disagreement: 0.10,
            claim_timeout_ms: 6_000,
            blocks_per_epoch: 8,
            lookahead: 32,
            quorum: 2.0 / 3.0,
        }
    }
}

/// What the client knows of a block.
#[derive(Debug, Clone)]
pub struct LightHeader {
    /// Height.
    pub height: u64,
    /// Block hash.
    pub hash: B256,
    /// Parent's hash.
    pub parent: B256,
    /// `hash_tree_root` of each shard.
    pub shard_roots: Vec<B256>,
    /// The execution environment the block commits to.
    pub env: BlockEnv,
}

/// A header the client refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Not the next height or not on the client's chain.
    #[error("header {height} does not extend the chain at height {tip} ({tip_hash})")]
    NotNext {
        /// Its height.
        height: u64,
        /// The client's last height.
        tip: u64,
        /// The client's last hash.
        tip_hash: B256,
    },
}

/// A claim the client refused (rule 3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// About a block the client does not hold at that height: dropped, unweighed.
    #[error("claim about unknown block {block} at height {height}")]
    UnknownBlock {
        /// Claimed height.
        height: u64,
        /// Claimed block.
        block: B256,
    },
    /// At or below the checkpoint: nothing to decide there.
    #[error("claim at height {0} is at or before the checkpoint")]
    Old(u64),
    /// Its executor has no bond.
    #[error("executor {0} is not bonded")]
    Unbonded(u64),
    /// Bad signature.
    #[error("claim signature of executor {0} does not verify")]
    BadSignature(u64),
    /// A second, different claim for one height.
    #[error("executor {executor} signed two different claims for height {height}")]
    Equivocation {
        /// The executor.
        executor: u64,
        /// The height.
        height: u64,
    },
    /// Only domain 0 (the EVM) exists.
    #[error("claim for unknown execution domain {0}")]
    UnknownDomain(u64),
    /// Too many unchecked claims for one height.
    #[error("too many unchecked claims for height {0}")]
    Flood(u64),
}

/// Decided heights the client keeps behind its head (older ones fold into the checkpoint).
pub const KEEP_HEIGHTS: u64 = 1024;

/// Unchecked claims held per height, at most (a flood guard: one per executor is all an
/// honest world sends).
pub const MAX_PENDING_PER_HEIGHT: usize = 4096;

/// Why the client needs a proof of execution for a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeedReason {
    /// Rule 5: claims disagree beyond the threshold.
    Disagreement,
    /// Rule 6: no claims in time.
    Withheld,
}

/// A block the client cannot pass without a proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// Height.
    pub height: u64,
    /// Block hash.
    pub block: B256,
    /// Why.
    pub reason: NeedReason,
    /// The shards the proof must re-execute (rule 7: the disputed ones; every shard when no
    /// effects root is agreed). The others may be given as their effects.
    pub execute: Vec<usize>,
}

/// A proof the client refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// No header at that height, or the client has not reached its parent.
    #[error("no proof expected at height {0}")]
    Unexpected(u64),
    /// The proof itself failed.
    #[error(transparent)]
    Invalid(#[from] ExecutionProofError),
}

/// An executor a proof showed wrong, with its claim (for a slashing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrongClaim {
    /// The claim.
    pub claim: SignedClaim,
    /// The root re-execution gave.
    pub true_root: B256,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Proofs verified and used.
    pub re_executions: u64,
    /// Claims dropped for naming an unknown block.
    pub unknown_block_claims: u64,
    /// Proofs refused.
    pub proofs_refused: u64,
    /// Claims dropped for a bad signature.
    pub bad_signatures: u64,
    /// Shards re-executed by the proofs used (the others were agreed).
    pub shards_re_executed: u64,
}

struct Entry {
    header: LightHeader,
    received_ms: u64,
    /// Counting claims (signature checked), by executor.
    claims: BTreeMap<u64, SignedClaim>,
    /// Claims taken but not yet signature-checked.
    pending: Vec<SignedClaim>,
    /// Executors that equivocated at this height.
    equivocators: Vec<u64>,
    /// The parent root and post-state root re-execution established.
    verified: Option<(B256, B256)>,
}

/// The light client.
pub struct LightClient {
    config: Config,
    signing: SigningContext,
    executors: ExecutorRegistry,
    checkpoint: (u64, B256, B256),
    /// Headers after the checkpoint, by height.
    entries: BTreeMap<u64, Entry>,
    /// Roots believed, by height (the checkpoint's included).
    believed: BTreeMap<u64, B256>,
    wrong: Vec<WrongClaim>,
    stats: Stats,
    /// The lowest height whose decision new claims or proofs may change.
    dirty: Option<u64>,
}

impl std::fmt::Debug for LightClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LightClient")
            .field("checkpoint", &self.checkpoint)
            .field("head", &self.head())
            .finish_non_exhaustive()
    }
}

impl LightClient {
    /// Rule 1: a client trusting `(height, block hash, state root)`.
    pub fn new(
        config: Config,
        signing: SigningContext,
        executors: ExecutorRegistry,
        checkpoint: (u64, B256, B256),
    ) -> Self {
        Self {
            config,
            signing,
            executors,
            checkpoint,
            entries: BTreeMap::new(),
            believed: BTreeMap::from([(checkpoint.0, checkpoint.2)]),
            wrong: Vec::new(),
            stats: Stats::default(),
            dirty: None,
        }
    }

    /// The highest height it believes a root at, and that root.
    pub fn head(&self) -> (u64, B256) {
        self.believed
            .last_key_value()
            .map_or((self.checkpoint.0, self.checkpoint.2), |(h, r)| (*h, *r))
    }

    /// The last header it holds (the checkpoint before any), by height and hash.
    pub fn tip(&self) -> (u64, B256) {
        self.entries
            .last_key_value()
            .map_or((self.checkpoint.0, self.checkpoint.1), |(h, e)| {
                (*h, e.header.hash)
            })
    }

    /// The root it believes after block `height`.
    pub fn root_at(&self, height: u64) -> Option<B256> {
        self.believed.get(&height).copied()
    }

    /// The header it holds at `height`.
    pub fn header(&self, height: u64) -> Option<&LightHeader> {
        self.entries.get(&height).map(|e| &e.header)
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The executor registry it weighs claims with.
    pub fn executors(&self) -> &ExecutorRegistry {
        &self.executors
    }

    /// The executor registry it weighs claims with (kept up to date by the caller, e.g. after
    /// slashings).
    pub fn executors_mut(&mut self) -> &mut ExecutorRegistry {
        &mut self.executors
    }

    /// Claims proofs showed wrong since the last call.
    pub fn take_wrong_claims(&mut self) -> Vec<WrongClaim> {
        std::mem::take(&mut self.wrong)
    }

    /// Rule 2: a header at `now_ms`.
    pub fn on_header(&mut self, header: LightHeader, now_ms: u64) -> Result<(), HeaderError> {
        let (tip, tip_hash) = self.tip();
        if header.height != tip + 1 || header.parent != tip_hash {
            return Err(HeaderError::NotNext {
                height: header.height,
                tip,
                tip_hash,
            });
        }
        self.entries.insert(
            header.height,
            Entry {
                header,
                received_ms: now_ms,
                claims: BTreeMap::new(),
                pending: Vec::new(),
                equivocators: Vec::new(),
                verified: None,
            },
        );
        Ok(())
    }

    fn epoch(&self, height: u64) -> Epoch {
        Epoch(height / self.config.blocks_per_epoch.max(1))
    }

    /// Rule 3: a signed claim.
    pub fn on_claim(&mut self, signed: SignedClaim) -> Result<(), ClaimError> {
        let claim = &signed.message;
        if claim.height <= self.checkpoint.0 {
            return Err(ClaimError::Old(claim.height));
        }
        let known = self
            .entries
            .get(&claim.height)
            .is_some_and(|e| e.header.hash == claim.block_hash);
        if !known {
            self.stats.unknown_block_claims += 1;
            return Err(ClaimError::UnknownBlock {
                height: claim.height,
                block: claim.block_hash,
            });
        }
        if claim.domain != 0 {
            return Err(ClaimError::UnknownDomain(claim.domain));
        }
        let executor = signed.executor.0;
        let weight = self
            .executors
            .weight(signed.executor, self.epoch(claim.height));
        let Some(key) = self.executors.get(signed.executor).map(|e| e.pubkey) else {
            return Err(ClaimError::Unbonded(executor));
        };
        if weight == 0 {
            return Err(ClaimError::Unbonded(executor));
        }
        let Some(entry) = self.entries.get_mut(&claim.height) else {
            return Err(ClaimError::UnknownBlock {
                height: claim.height,
                block: claim.block_hash,
            });
        };
        let height = claim.height;
        if entry.equivocators.contains(&executor) {
            return Err(ClaimError::Equivocation { executor, height });
        }
        let earlier = entry
            .claims
            .get(&executor)
            .or_else(|| entry.pending.iter().find(|c| c.executor.0 == executor));
        match earlier {
            Some(first) if first.message == *claim => return Ok(()),
            Some(_) => {
                // A second, different claim: only a valid signature makes it an
                // equivocation (a forged one must not cost an honest executor its claim).
                if self.signing.verify(claim, &key, &signed.signature).is_err() {
                    self.stats.bad_signatures += 1;
                    return Err(ClaimError::BadSignature(executor));
                }
                entry.claims.remove(&executor);
                entry.pending.retain(|c| c.executor.0 != executor);
                entry.equivocators.push(executor);
                self.mark(height);
                return Err(ClaimError::Equivocation { executor, height });
            }
            None => {}
        }
        if entry.pending.len() >= MAX_PENDING_PER_HEIGHT {
            return Err(ClaimError::Flood(height));
        }
        entry.pending.push(signed);
        self.mark(height);
        Ok(())
    }

    /// Rule 3's signature check, for every claim taken since the last call, in one batch:
    /// claims signing the same message are aggregated (one pairing per distinct message),
    /// the messages checked together with random weights. If the batch fails, each message
    /// group and then each claim is checked alone; a claim whose signature fails is dropped
    /// and counted. Claims that pass start to count; one contradicting a re-executed result
    /// is evidence at once (rule 7).
    fn verify_pending(&mut self) {
        let mut groups: HashMap<B256, Vec<SignedClaim>> = HashMap::new();
        for entry in self.entries.values_mut() {
            for c in entry.pending.drain(..) {
                groups
                    .entry(self.signing.signing_root(&c.message))
                    .or_default()
                    .push(c);
            }
        }
        if groups.is_empty() {
            return;
        }
        let key = |c: &SignedClaim| self.executors.get(c.executor).map(|e| e.pubkey);
        let sig = |c: &SignedClaim| Signature::try_from(&c.signature).ok();
        // One aggregate per message (decompressing and aggregating in parallel); a group with
        // an unparsable key or signature goes straight to the one-by-one check.
        let aggregated: Vec<(B256, Option<(PublicKey, Signature)>)> = groups
            .par_iter()
            .map(|(root, claims)| {
                let keys: Option<Vec<PublicKey>> = claims.iter().map(key).collect();
                let sigs: Option<Vec<Signature>> = claims.par_iter().map(sig).collect();
                let agg = match (keys, sigs) {
                    (Some(k), Some(s)) => PublicKey::aggregate(&k)
                        .ok()
                        .zip(Signature::aggregate(&s).ok()),
                    _ => None,
                };
                (*root, agg)
            })
            .collect();
        let mut sets: Vec<(B256, PublicKey, Signature)> = Vec::new();
        let mut suspect: Vec<B256> = Vec::new();
        for (root, agg) in aggregated {
            match agg {
                Some((pk, sg)) => sets.push((root, pk, sg)),
                None => suspect.push(root),
            }
        }
        // The batch in as many chunks as there are threads, checked in parallel.
        let chunk = sets
            .len()
            .div_ceil(rayon::current_num_threads().max(1))
            .max(1);
        let failed: Vec<B256> = sets
            .par_chunks(chunk)
            .flat_map_iter(|part| {
                let batch: Vec<SignatureSet<'_>> = part
                    .iter()
                    .map(|(root, pk, sg)| SignatureSet {
                        pubkey: pk,
                        message: root.as_slice(),
                        signature: sg,
                    })
                    .collect();
                let bad: Vec<B256> = if verify_signature_sets(&batch) {
                    Vec::new()
                } else {
                    part.iter()
                        .filter(|(root, pk, sg)| !sg.verify(pk, root.as_slice()))
                        .map(|(root, _, _)| *root)
                        .collect()
                };
                bad.into_iter()
            })
            .collect();
        suspect.extend(failed);
        let mut accepted: Vec<SignedClaim> = Vec::new();
        for (root, claims) in groups {
            if !suspect.contains(&root) {
                accepted.extend(claims);
                continue;
            }
            for c in claims {
                let ok = match (key(&c), sig(&c)) {
                    (Some(pk), Some(sg)) => sg.verify(&pk, root.as_slice()),
                    _ => false,
                };
                if ok {
                    accepted.push(c);
                } else {
                    self.stats.bad_signatures += 1;
                    tracing::debug!(
                        executor = c.executor.0,
                        height = c.message.height,
                        "light: claim with a bad signature dropped"
                    );
                }
            }
        }
        for c in accepted {
            let height = c.message.height;
            let Some(entry) = self.entries.get_mut(&height) else {
                continue;
            };
            if let Some((parent, root)) = entry.verified
                && c.message.prev_state_root == parent
                && c.message.post_state_root != root
            {
                self.wrong.push(WrongClaim {
                    claim: c.clone(),
                    true_root: root,
                });
            }
            entry.claims.insert(c.executor.0, c);
        }
    }

    fn mark(&mut self, height: u64) {
        self.dirty = Some(self.dirty.map_or(height, |d| d.min(height)));
    }

    /// Bond behind each post-state root of block `height` starting from `parent_root`.
    fn children(&self, height: u64, parent_root: B256) -> HashMap<B256, Gwei> {
        let mut out: HashMap<B256, Gwei> = HashMap::new();
        let Some(entry) = self.entries.get(&height) else {
            return out;
        };
        let epoch = self.epoch(height);
        for c in entry.claims.values() {
            if c.message.prev_state_root == parent_root {
                *out.entry(c.message.post_state_root).or_default() +=
                    self.executors.weight(c.executor, epoch);
            }
        }
        out
    }

    /// Post-state roots claimed for block `height` from `parent_root`, with the bond behind
    /// each (claims whose signature has been checked).
    pub fn claims_from(&self, height: u64, parent_root: B256) -> Vec<(B256, Gwei)> {
        self.children(height, parent_root).into_iter().collect()
    }

    /// Rule 7: the effects root of each shard of block `height` that every counting claim
    /// from `parent_root` names alike, when those claims disagree (two post-state roots or
    /// more); `None` for a disputed shard, and for every shard when the claims agree, are
    /// absent, or have effects roots that do not line up with the header's shards.
    pub fn agreed_effects(&self, height: u64, parent_root: B256) -> Vec<Option<B256>> {
        let Some(entry) = self.entries.get(&height) else {
            return Vec::new();
        };
        let shards = entry.header.shard_roots.len();
        let claims: Vec<&Claim> = entry
            .claims
            .values()
            .map(|c| &c.message)
            .filter(|c| c.prev_state_root == parent_root)
            .collect();
        let disagree = claims
            .iter()
            .any(|c| c.post_state_root != claims[0].post_state_root);
        if !disagree || claims.iter().any(|c| c.effects_roots.len() != shards) {
            return vec![None; shards];
        }
        (0..shards)
            .map(|i| {
                let first = claims[0].effects_roots[i];
                claims
                    .iter()
                    .all(|c| c.effects_roots[i] == first)
                    .then_some(first)
            })
            .collect()
    }

    /// Rule 4: the weight of the subtree hanging from `root` after block `height`.
    fn subtree(&self, height: u64, root: B256, depth: u64) -> Gwei {
        if depth == 0 {
            return 0;
        }
        self.children(height + 1, root)
            .into_iter()
            .map(|(child, w)| w + self.subtree(height + 1, child, depth - 1))
            .max()
            .unwrap_or(0)
    }

    /// Advances the believed chain as far as the rules allow at `now_ms`; returns the block
    /// that needs a proof, if one stops it.
    pub fn advance(&mut self, now_ms: u64) -> Option<Need> {
        let need = self.decide(now_ms);
        self.prune();
        need
    }

    /// Keeps the last [`KEEP_HEIGHTS`] decided heights: the oldest decided height beyond them
    /// becomes the checkpoint (its root was believed by the rules), so memory and the work per
    /// decision stay bounded on a long-running client.
    fn prune(&mut self) {
        let (head, _) = self.head();
        if head < self.checkpoint.0 + 2 * KEEP_HEIGHTS {
            return;
        }
        let at = head - KEEP_HEIGHTS;
        let (Some(entry), Some(root)) = (self.entries.get(&at), self.believed.get(&at)) else {
            return;
        };
        self.checkpoint = (at, entry.header.hash, *root);
        self.entries = self.entries.split_off(&(at + 1));
        self.believed = self.believed.split_off(&at);
    }

    fn decide(&mut self, now_ms: u64) -> Option<Need> {
        self.verify_pending();
        if let Some(from) = self.dirty.take() {
            let from = from.max(self.checkpoint.0 + 1);
            let stale: Vec<u64> = self.believed.range(from..).map(|(h, _)| *h).collect();
            for h in stale {
                self.believed.remove(&h);
            }
        }
        loop {
            let (height, parent_root) = self.head();
            let next = height + 1;
            let entry = self.entries.get(&next)?;
            if let Some((parent, root)) = entry.verified
                && parent == parent_root
            {
                self.believed.insert(next, root);
                continue;
            }
            let block = entry.header.hash;
            let timed_out =
                now_ms.saturating_sub(entry.received_ms) >= self.config.claim_timeout_ms;
            let epoch = self.epoch(next);
            let claimed: Gwei = entry
                .claims
                .values()
                .map(|c| self.executors.weight(c.executor, epoch))
                .sum();
            let active = self.executors.total_weight(epoch);
            if !timed_out && (claimed as f64) < self.config.quorum * active as f64 {
                return None;
            }
            let children = self.children(next, parent_root);
            let total: Gwei = children.values().sum();
            if total == 0 {
                if timed_out {
                    return Some(Need {
                        height: next,
                        block,
                        reason: NeedReason::Withheld,
                        execute: (0..entry.header.shard_roots.len()).collect(),
                    });
                }
                return None;
            }
            // Rule 5 first: disagreement among the claims of this very block.
            let (best_root, best_direct) = children
                .iter()
                .map(|(r, w)| (*r, *w))
                .max_by_key(|(r, w)| (*w, *r))
                .unwrap_or_default();
            let dissent = total - best_direct;
            let threshold_ppm = (self.config.disagreement * 1e6).round() as u128;
            if dissent > 0 && u128::from(dissent) * 1_000_000 >= threshold_ppm * u128::from(total) {
                let execute = self
                    .agreed_effects(next, parent_root)
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| a.is_none())
                    .map(|(i, _)| i)
                    .collect();
                return Some(Need {
                    height: next,
                    block,
                    reason: NeedReason::Disagreement,
                    execute,
                });
            }
            // Rule 4: GHOST among the children (the direct winner is almost always it; a
            // heavier subtree can only come from claims at later heights).
            let chosen = children
                .iter()
                .map(|(r, w)| (*r, w + self.subtree(next, *r, self.config.lookahead)))
                .max_by_key(|(r, w)| (*w, *r))
                .map_or(best_root, |(r, _)| r);
            self.believed.insert(next, chosen);
        }
    }

    /// Rule 7: a proof of execution for block `height`.
    pub fn on_proof(&mut self, height: u64, proof: &ExecutionProof) -> Result<B256, ProofError> {
        let parent_root = self
            .believed
            .get(&(height.wrapping_sub(1)))
            .copied()
            .filter(|_| height > self.checkpoint.0)
            .ok_or(ProofError::Unexpected(height))?;
        let entry = self
            .entries
            .get(&height)
            .ok_or(ProofError::Unexpected(height))?;
        if let Some((parent, root)) = entry.verified
            && parent == parent_root
        {
            // Already re-executed on this parent: nothing new to learn.
            return Ok(root);
        }
        let agreed = self.agreed_effects(height, parent_root);
        let verified = match proof.verify_with(
            parent_root,
            &entry.header.shard_roots,
            &entry.header.env,
            &agreed,
        ) {
            Ok(v) => v,
            Err(e) => {
                self.stats.proofs_refused += 1;
                return Err(e.into());
            }
        };
        let root = verified.post_state_root;
        let wrong: Vec<WrongClaim> = entry
            .claims
            .values()
            .filter(|c| {
                c.message.prev_state_root == parent_root && c.message.post_state_root != root
            })
            .map(|c| WrongClaim {
                claim: c.clone(),
                true_root: root,
            })
            .collect();
        self.wrong.extend(wrong);
        if let Some(e) = self.entries.get_mut(&height) {
            e.verified = Some((parent_root, root));
        }
        // A re-executed root replaces whatever was believed from there on.
        self.mark(height);
        self.stats.re_executions += 1;
        self.stats.shards_re_executed += verified.executed as u64;
        Ok(root)
    }

    /// The claim an honest executor signs for block `height` with `post_state_root`
    /// (a helper for executors and tests).
    pub fn claim_for(
        header: &LightHeader,
        prev_state_root: B256,
        effects_roots: &[B256],
        post_state_root: B256,
    ) -> Claim {
        Claim {
            height: header.height,
            domain: 0,
            prev_state_root,
            prior_meta_state_root: prev_state_root,
            block_hash: header.hash,
            effects_roots: effects_roots.to_vec().try_into().unwrap_or_default(),
            post_state_root,
        }
    }
}

/// The executors whose claims `wrong` names, once each.
pub fn offenders(wrong: &[WrongClaim]) -> Vec<ExecutorIndex> {
    let mut out: Vec<ExecutorIndex> = wrong.iter().map(|w| w.claim.executor).collect();
    out.sort_by_key(|e| e.0);
    out.dedup();
    out
}
