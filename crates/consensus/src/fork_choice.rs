//! Fork choice (LMD-GHOST) and finality (Casper FFG) over the blocks and attestations a node
//! has seen.
//!
//! **Blocks** form a tree from genesis. A block must extend a known parent at a later slot,
//! and may not conflict with the finalized checkpoint.
//!
//! **Votes**: an attestation by validator `v` is an LMD vote for `head_root` and an FFG vote
//! `source → target` (checkpoints: an epoch and the block at its first slot or the latest
//! block before it). A vote counts only if its blocks are known and consistent: the source is
//! an ancestor of the target, the target an ancestor of the head, and `source.epoch <
//! target.epoch`.
//!
//! **Slashing** (detected here, punished by the chain): a validator's second vote with the
//! same target epoch but different data is a *double vote*; a vote whose span strictly
//! surrounds (or is surrounded by) an earlier one is a *surround vote*. Such votes are
//! recorded as evidence and not counted.
//!
//! **Justification**: a checkpoint `t` is justified when validators holding at least 2/3 of
//! the total stake voted `s → t` from a justified `s`. Genesis is justified and final.
//! **Finality**: `s` is finalized when it is justified and a supermajority link `s → t` with
//! `t.epoch = s.epoch + 1` exists. Two conflicting finalized checkpoints need at least 1/3
//! of the stake to have voted slashably (accountable safety).
//!
//! **Head (LMD-GHOST)**: from the justified checkpoint with the highest epoch, repeatedly
//! take the child whose subtree holds the most stake among validators' latest votes (ties:
//! the larger root). A block proven invalid by a fraud proof, and everything above it, has
//! no weight and is never chosen, unless it is already final.

use std::collections::{BTreeMap, HashMap, HashSet};

use phalanx_types::{AttestationData, Checkpoint, Epoch, Gwei, Root, Slot, ValidatorIndex};

/// A block or vote fork choice cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForkChoiceError {
    /// The parent is not known.
    #[error("unknown parent {0}")]
    UnknownParent(Root),
    /// A block at or before its parent's slot.
    #[error("block at slot {slot} does not come after its parent's slot {parent_slot}")]
    SlotNotAfterParent {
        /// Block slot.
        slot: u64,
        /// Parent slot.
        parent_slot: u64,
    },
    /// A block that does not descend from the finalized checkpoint.
    #[error("block conflicts with the finalized checkpoint")]
    ConflictsWithFinality,
    /// A vote about blocks this node does not know.
    #[error("vote refers to an unknown block {0}")]
    UnknownBlock(Root),
    /// A vote whose checkpoints and head are not on one chain, or out of order.
    #[error("inconsistent vote: {0}")]
    InconsistentVote(&'static str),
    /// A validator with no stake.
    #[error("unknown validator {0}")]
    UnknownValidator(u64),
}

/// Evidence of a slashable pair of votes by one validator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteEvidence {
    /// The validator.
    pub validator: ValidatorIndex,
    /// Its earlier vote.
    pub first: AttestationData,
    /// The conflicting vote.
    pub second: AttestationData,
    /// Double vote (same target epoch) or surround vote.
    pub kind: EvidenceKind,
}

/// Kinds of slashable vote pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvidenceKind {
    /// Two different votes for one target epoch.
    DoubleVote,
    /// One vote's span strictly contains the other's.
    SurroundVote,
}

/// What became of a vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteOutcome {
    /// Counted.
    Counted,
    /// The same vote again: ignored.
    Duplicate,
    /// Slashable with an earlier vote: recorded as evidence, not counted.
    Slashable(Box<VoteEvidence>),
}

#[derive(Debug, Clone)]
struct Node {
    parent: Root,
    slot: Slot,
    invalid: bool,
}

/// A node's view: the block tree, the latest votes, justification and finality.
#[derive(Debug, Clone)]
pub struct ForkChoice {
    slots_per_epoch: u64,
    genesis: Root,
    blocks: HashMap<Root, Node>,
    children: HashMap<Root, Vec<Root>>,
    stakes: Vec<Gwei>,
    latest: HashMap<ValidatorIndex, (Epoch, Root)>,
    votes: HashMap<ValidatorIndex, BTreeMap<Epoch, AttestationData>>,
    links: HashMap<(Checkpoint, Checkpoint), Gwei>,
    justified: HashSet<Checkpoint>,
    best_justified: Checkpoint,
    finalized: Checkpoint,
    evidence: Vec<VoteEvidence>,
}

impl ForkChoice {
    /// A view holding only genesis (justified and final), with each validator's stake.
    pub fn new(genesis: Root, stakes: Vec<Gwei>, slots_per_epoch: u64) -> Self {
        let genesis_cp = Checkpoint {
            epoch: Epoch(0),
            root: genesis,
        };
        let mut blocks = HashMap::new();
        blocks.insert(
            genesis,
            Node {
                parent: Root::ZERO,
                slot: Slot(0),
                invalid: false,
            },
        );
        Self {
            slots_per_epoch: slots_per_epoch.max(1),
            genesis,
            blocks,
            children: HashMap::new(),
            stakes,
            latest: HashMap::new(),
            votes: HashMap::new(),
            links: HashMap::new(),
            justified: HashSet::from([genesis_cp.clone()]),
            best_justified: genesis_cp.clone(),
            finalized: genesis_cp,
            evidence: Vec::new(),
        }
    }

    fn total_stake(&self) -> Gwei {
        self.stakes.iter().fold(0u64, |a, s| a.saturating_add(*s))
    }

    /// Removes a slashed validator's weight from now on.
    pub fn zero_stake(&mut self, validator: ValidatorIndex) {
        if let Some(s) = usize::try_from(validator.0)
            .ok()
            .and_then(|i| self.stakes.get_mut(i))
        {
            *s = 0;
        }
        self.latest.remove(&validator);
    }

    /// Whether `ancestor` is `descendant` or one of its ancestors.
    pub fn is_ancestor(&self, ancestor: Root, descendant: Root) -> bool {
        let mut cursor = descendant;
        loop {
            if cursor == ancestor {
                return true;
            }
            match self.blocks.get(&cursor) {
                Some(node) if cursor != self.genesis => cursor = node.parent,
                _ => return false,
            }
        }
    }

    /// Whether a block is known.
    pub fn contains(&self, root: &Root) -> bool {
        self.blocks.contains_key(root)
    }

    /// The slot of a known block.
    pub fn slot(&self, root: &Root) -> Option<Slot> {
        self.blocks.get(root).map(|n| n.slot)
    }

    /// The checkpoint of `epoch` on the chain ending at `head`: the block at the epoch's
    /// first slot, or the latest block before it.
    pub fn checkpoint(&self, head: Root, epoch: Epoch) -> Checkpoint {
        let boundary = epoch.start_slot(self.slots_per_epoch);
        let mut cursor = head;
        while let Some(node) = self.blocks.get(&cursor) {
            if node.slot <= boundary || cursor == self.genesis {
                break;
            }
            cursor = node.parent;
        }
        Checkpoint {
            epoch,
            root: cursor,
        }
    }

    /// Adds a block.
    pub fn on_block(
        &mut self,
        root: Root,
        parent: Root,
        slot: Slot,
    ) -> Result<(), ForkChoiceError> {
        if self.blocks.contains_key(&root) {
            return Ok(());
        }
        let parent_slot = self
            .blocks
            .get(&parent)
            .ok_or(ForkChoiceError::UnknownParent(parent))?
            .slot;
        if slot <= parent_slot {
            return Err(ForkChoiceError::SlotNotAfterParent {
                slot: slot.0,
                parent_slot: parent_slot.0,
            });
        }
        if !self.is_ancestor(self.finalized.root, parent) {
            return Err(ForkChoiceError::ConflictsWithFinality);
        }
        self.blocks.insert(
            root,
            Node {
                parent,
                slot,
                invalid: false,
            },
        );
        self.children.entry(parent).or_default().push(root);
        Ok(())
    }

    /// Marks a block proven invalid (fraud proof): it and its descendants get no weight.
    /// A block already final is not affected (finality is not undone by a late proof).
    pub fn on_fraud_proof(&mut self, root: Root) {
        if self.is_ancestor(root, self.finalized.root) {
            return;
        }
        if let Some(node) = self.blocks.get_mut(&root) {
            node.invalid = true;
        }
    }

    /// Counts an attestation by `validator`.
    pub fn on_attestation(
        &mut self,
        validator: ValidatorIndex,
        data: &AttestationData,
    ) -> Result<VoteOutcome, ForkChoiceError> {
        let stake = *usize::try_from(validator.0)
            .ok()
            .and_then(|i| self.stakes.get(i))
            .ok_or(ForkChoiceError::UnknownValidator(validator.0))?;
        for root in [data.head_root, data.source.root, data.target.root] {
            if !self.blocks.contains_key(&root) {
                return Err(ForkChoiceError::UnknownBlock(root));
            }
        }
        if data.source.epoch >= data.target.epoch {
            return Err(ForkChoiceError::InconsistentVote(
                "source epoch must be before target epoch",
            ));
        }
        if !self.is_ancestor(data.source.root, data.target.root)
            || !self.is_ancestor(data.target.root, data.head_root)
        {
            return Err(ForkChoiceError::InconsistentVote(
                "source, target and head are not on one chain",
            ));
        }

        // Slashing conditions against this validator's earlier votes.
        let history = self.votes.entry(validator).or_default();
        if let Some(previous) = history.get(&data.target.epoch) {
            if previous == data {
                return Ok(VoteOutcome::Duplicate);
            }
            let evidence = VoteEvidence {
                validator,
                first: previous.clone(),
                second: data.clone(),
                kind: EvidenceKind::DoubleVote,
            };
            self.evidence.push(evidence.clone());
            return Ok(VoteOutcome::Slashable(Box::new(evidence)));
        }
        let (s, t) = (data.source.epoch, data.target.epoch);
        if let Some(previous) = history.values().find(|p| {
            let (ps, pt) = (p.source.epoch, p.target.epoch);
            (s < ps && pt < t) || (ps < s && t < pt)
        }) {
            let evidence = VoteEvidence {
                validator,
                first: previous.clone(),
                second: data.clone(),
                kind: EvidenceKind::SurroundVote,
            };
            self.evidence.push(evidence.clone());
            return Ok(VoteOutcome::Slashable(Box::new(evidence)));
        }
        history.insert(t, data.clone());

        // LMD: the latest vote (by target epoch) is the one that counts.
        let newer = self.latest.get(&validator).is_none_or(|(e, _)| *e < t);
        if newer && stake > 0 {
            self.latest.insert(validator, (t, data.head_root));
        }
        // FFG.
        let link = self
            .links
            .entry((data.source.clone(), data.target.clone()))
            .or_default();
        *link = link.saturating_add(stake);
        self.update_finality();
        Ok(VoteOutcome::Counted)
    }

    /// Re-derives justification and finality from the supermajority links until nothing
    /// changes.
    fn update_finality(&mut self) {
        let total = u128::from(self.total_stake());
        loop {
            let mut changed = false;
            for ((source, target), weight) in &self.links {
                if u128::from(*weight) * 3 < total * 2 || !self.justified.contains(source) {
                    continue;
                }
                if self.justified.insert(target.clone()) {
                    changed = true;
                    if target.epoch > self.best_justified.epoch {
                        self.best_justified = target.clone();
                    }
                }
                if target.epoch.0 == source.epoch.0 + 1 && source.epoch > self.finalized.epoch {
                    self.finalized = source.clone();
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    /// The justified checkpoint with the highest epoch.
    pub fn justified(&self) -> &Checkpoint {
        &self.best_justified
    }

    /// The FFG source for a vote in `epoch` on the chain ending at `head`: the justified
    /// checkpoint with the highest epoch before `epoch` on that chain (genesis at worst);
    /// `None` in epoch 0. Unlike [`ForkChoice::justified`] it never names the epoch being
    /// voted in, so a checkpoint justified mid-epoch does not leave the epoch's later
    /// attesters without a vote.
    pub fn source_for(&self, head: Root, epoch: Epoch) -> Option<Checkpoint> {
        // Only checkpoints from the finalized one on can be on the head's chain and matter.
        self.justified
            .iter()
            .filter(|c| c.epoch >= self.finalized.epoch && c.epoch < epoch)
            .filter(|c| self.is_ancestor(c.root, head))
            .max_by_key(|c| (c.epoch, c.root))
            .cloned()
    }

    /// The finalized checkpoint.
    pub fn finalized(&self) -> &Checkpoint {
        &self.finalized
    }

    /// Slashable vote pairs seen so far.
    pub fn evidence(&self) -> &[VoteEvidence] {
        &self.evidence
    }

    /// The head by LMD-GHOST from the best justified checkpoint.
    pub fn head(&self) -> Root {
        // Stake of latest votes per block, then summed over subtrees.
        let mut weight: HashMap<Root, u128> = HashMap::new();
        for (validator, (_, root)) in &self.latest {
            let stake = usize::try_from(validator.0)
                .ok()
                .and_then(|i| self.stakes.get(i))
                .copied()
                .unwrap_or(0);
            let mut path = Vec::new();
            let mut cursor = *root;
            loop {
                path.push(cursor);
                match self.blocks.get(&cursor) {
                    Some(node) if cursor != self.genesis => cursor = node.parent,
                    _ => break,
                }
            }
            // A vote for a block above a fraud-proven one weighs nothing anywhere.
            if path
                .iter()
                .any(|r| self.blocks.get(r).is_some_and(|n| n.invalid))
            {
                continue;
            }
            for r in path {
                *weight.entry(r).or_default() += u128::from(stake);
            }
        }
        let mut head = self.best_justified.root;
        loop {
            let best = self
                .children
                .get(&head)
                .into_iter()
                .flatten()
                .filter(|c| self.blocks.get(*c).is_some_and(|n| !n.invalid))
                .max_by_key(|c| (weight.get(*c).copied().unwrap_or(0), **c));
            match best {
                Some(child) => head = *child,
                None => return head,
            }
        }
    }
}
