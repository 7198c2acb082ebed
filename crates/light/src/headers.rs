//! Header verification: a light client (or anyone following executed headers from an untrusted
//! node) takes a header only with the consensus header it was derived from, and checks both.
//!
//! The node serves, for each height, the [`ExecHeader`] execution ran under and the
//! [`SignedBlockHeader`] of the finalized consensus block behind it. [`HeaderChain`] follows
//! them from a trusted start, one height at a time:
//!
//! 1. **Chain.** The block's slot is after the last one's, and — once the consensus root of the
//!    last block is known (always, from genesis) — its `parent_root` is that root.
//! 2. **Proposer.** Who proposes each slot is drawn from the RANDAO seed of the slot's epoch,
//!    the mix after the last block before the epoch starts
//!    ([`phalanx_consensus::proposer`]). The chain tracks the mix block by block
//!    (`mix ← mix XOR sha256(reveal)`), so it knows every seed after its start: the declared
//!    proposer must be the scheduled one. (From a checkpoint inside an epoch, that epoch's
//!    seed is unknown: its proposers are taken as declared — their signatures still checked —
//!    until the next epoch.)
//! 3. **Signatures.** [`check_header`]: the header extends what was declared (slot, parent,
//!    producer), the producer is registered and unslashed, and the proposer's declaration and
//!    RANDAO reveal and the producer's header signature verify against the genesis registry.
//! 4. **Derivation.** The execution header is *derived* from the consensus header, never taken:
//!    number = last + 1, parent = the last execution header's hash, timestamp = the slot's
//!    start, `PREVRANDAO` = the mix after the block, base fee [`BASEFEE`], gas limits from the
//!    spec, fee recipients from the registry, fee split from the declaration, shard roots from
//!    the header ([`derive`]). The served header must equal it, so a node cannot alter a
//!    shard root, the environment or the parent link without a producer's and a proposer's
//!    keys.
//!
//! Not checked here: finality — [`crate::finality`] decides which of the checked headers are
//! final.
//!
//! **Slashings.** The registry starts as the genesis one; the validators the chain slashes
//! are applied from the block bodies ([`HeaderChain::apply_body`], the rules of
//! `phalanx_consensus::slashing`, signatures checked here) right after their block's header,
//! as the chain applies them at import — so the proposer schedule (which excludes slashed
//! validators) stays the chain's. Without bodies a client would refuse the chain's headers
//! after a slashing changes the schedule. Producer slashings (by fraud proofs) are not carried
//! by this chain's blocks yet.

use alloy_primitives::{B256, U256, keccak256};
use phalanx_consensus::proposer::{genesis_mix, mix_in, proposer};
use phalanx_consensus::{BlockError, ChainContext, Registry, check_header};
use phalanx_execution::changes::{AccountChange, AccountFields, Changes};
use phalanx_execution::header::ExecHeader;
use phalanx_spec::{ChainSpec, Genesis};
use phalanx_types::{BlockHeader, Epoch, Root, SignedBlockHeader, SigningContext, Slot};
use ssz_types::VariableList;

/// The base fee every block runs under, wei (1 gwei: there is no fee market yet).
pub const BASEFEE: u64 = 1_000_000_000;

/// The execution header of the genesis (height 0, no shards): the parent of the first
/// block's derived header. `genesis_root` is the consensus genesis root.
pub fn genesis_header(genesis: &Genesis, genesis_root: B256) -> ExecHeader {
    ExecHeader {
        number: 0,
        parent: B256::ZERO,
        timestamp: genesis.genesis_time,
        chain_id: genesis.spec.chain_id,
        basefee: BASEFEE,
        prevrandao: genesis_root,
        shard_gas_limit: genesis.spec.shard_gas_limit,
        block_gas_limit: genesis.spec.block_gas_limit,
        validator_reward: alloy_primitives::Address::ZERO,
        producer_reward: alloy_primitives::Address::ZERO,
        fee_split_bps: 0,
        shard_roots: VariableList::empty(),
    }
}

/// The genesis allocation as changes to the empty state (what every executing node starts
/// from: the replica whose root the genesis execution header stands for).
pub fn genesis_changes(genesis: &Genesis) -> Changes {
    let mut changes = Changes::default();
    for (address, account) in &genesis.alloc {
        let code_hash = match &account.code {
            Some(code) if !code.is_empty() => {
                let hash = keccak256(code);
                changes.codes.insert(hash, code.clone());
                hash
            }
            _ => alloy_primitives::KECCAK256_EMPTY,
        };
        let storage = account
            .storage
            .iter()
            .flatten()
            .map(|(k, v)| (U256::from_be_bytes(k.0), U256::from_be_bytes(v.0)))
            .filter(|(_, v)| !v.is_zero())
            .collect();
        changes.accounts.insert(
            *address,
            AccountChange {
                fields: Some(Some(AccountFields {
                    nonce: account.nonce.unwrap_or(0),
                    balance: account.balance,
                    code_hash,
                })),
                storage_cleared: false,
                storage,
            },
        );
    }
    changes
}

/// Rule 4: the execution header of consensus block `header`, whose RANDAO mix after it is
/// `mix`, on top of the execution header `parent`.
pub fn derive(
    header: &BlockHeader,
    mix: B256,
    parent: (u64, B256),
    spec: &ChainSpec,
    genesis_time: u64,
    registry: &Registry,
) -> ExecHeader {
    let d = &header.declaration.message;
    ExecHeader {
        number: parent.0 + 1,
        parent: parent.1,
        timestamp: genesis_time + header.slot.0 * spec.slot_seconds,
        chain_id: spec.chain_id,
        basefee: BASEFEE,
        prevrandao: mix,
        shard_gas_limit: spec.shard_gas_limit,
        block_gas_limit: spec.block_gas_limit,
        validator_reward: registry
            .validator(d.proposer_index)
            .map(|v| v.reward_address)
            .unwrap_or_default(),
        producer_reward: registry
            .producer(header.producer)
            .map(|p| p.reward_address)
            .unwrap_or_default(),
        fee_split_bps: d.fee_split_bps,
        shard_roots: VariableList::new(header.shard_roots.iter().copied().collect())
            .unwrap_or_default(),
    }
}

/// A header refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderCheckError {
    /// Rule 1: not after the last block.
    #[error("block at slot {slot} does not follow slot {last}")]
    SlotNotAfter {
        /// Its slot.
        slot: u64,
        /// The last block's.
        last: u64,
    },
    /// Rule 1: another parent.
    #[error("block at slot {slot} builds on {got}, not on the last block {expected}")]
    WrongParent {
        /// Its slot.
        slot: u64,
        /// Its parent.
        got: Root,
        /// The last block's root.
        expected: Root,
    },
    /// Rules 2–3.
    #[error("consensus header at slot {slot}: {source}")]
    Consensus {
        /// Its slot.
        slot: u64,
        /// What failed.
        source: BlockError,
    },
    /// Rule 4: the served execution header is not the one the block derives.
    #[error(
        "execution header {number} is not the one its consensus block derives ({served} served, \
         {derived} derived)"
    )]
    NotDerived {
        /// Height.
        number: u64,
        /// Hash of the served header.
        served: B256,
        /// Hash of the derived one.
        derived: B256,
    },
    /// The trusted start does not match.
    #[error("checkpoint header hashes to {got}, the trusted checkpoint is {expected}")]
    Checkpoint {
        /// Hash of what was given.
        got: B256,
        /// The trusted hash.
        expected: B256,
    },
}

/// The last verified block.
#[derive(Debug, Clone, Copy)]
struct Tip {
    height: u64,
    hash: B256,
    /// Its consensus root (unknown at a checkpoint after genesis, until the next block).
    root: Option<Root>,
    slot: Slot,
    mix: B256,
}

/// Follows and checks headers (rules 1–4).
#[derive(Debug)]
pub struct HeaderChain {
    spec: ChainSpec,
    genesis_time: u64,
    registry: Registry,
    signing: SigningContext,
    tip: Tip,
    /// The RANDAO seed of one epoch, when known.
    seed: Option<(Epoch, B256)>,
    unscheduled: u64,
}

impl HeaderChain {
    /// From the genesis, whose execution header hashes to `genesis_hash` (the trusted
    /// checkpoint at height 0).
    pub fn from_genesis(genesis: &Genesis, genesis_hash: B256) -> Result<Self, String> {
        let registry = Registry::from_genesis(genesis).map_err(|e| e.to_string())?;
        let root = genesis.validators_root();
        let mix = genesis_mix(root);
        Ok(Self {
            spec: genesis.spec.clone(),
            genesis_time: genesis.genesis_time,
            registry,
            signing: genesis.signing_context(),
            tip: Tip {
                height: 0,
                hash: genesis_hash,
                root: Some(root),
                slot: Slot(0),
                mix,
            },
            seed: Some((Epoch(0), mix)),
            unscheduled: 0,
        })
    }

    /// From a trusted checkpoint after genesis: `header` must hash to `trusted`.
    pub fn from_checkpoint(
        genesis: &Genesis,
        header: &ExecHeader,
        trusted: B256,
    ) -> Result<Self, HeaderCheckError> {
        if header.hash() != trusted {
            return Err(HeaderCheckError::Checkpoint {
                got: header.hash(),
                expected: trusted,
            });
        }
        let mut chain =
            Self::from_genesis(genesis, trusted).map_err(|_| HeaderCheckError::Checkpoint {
                got: header.hash(),
                expected: trusted,
            })?;
        let slot = header.timestamp.saturating_sub(genesis.genesis_time)
            / genesis.spec.slot_seconds.max(1);
        chain.tip = Tip {
            height: header.number,
            hash: trusted,
            root: None,
            slot: Slot(slot),
            mix: header.prevrandao,
        };
        chain.seed = None;
        Ok(chain)
    }

    /// The slashings the body of the block just verified makes (double declarations,
    /// double and surround votes, checked by `phalanx_consensus::slashing`): those validators
    /// propose no more and weigh nothing. Returns the newly slashed ones.
    pub fn apply_body(
        &mut self,
        body: &phalanx_types::BlockBody,
    ) -> Vec<phalanx_types::ValidatorIndex> {
        phalanx_consensus::slashing::apply_slashings(
            body,
            &mut self.registry,
            &self.signing,
            &mut phalanx_consensus::slashing::verify_signature,
        )
    }

    /// The last verified height.
    pub fn height(&self) -> u64 {
        self.tip.height
    }

    /// The last verified block's slot.
    pub fn slot(&self) -> Slot {
        self.tip.slot
    }

    /// Blocks whose proposer could not be checked against the schedule (rule 2's exception).
    pub fn unscheduled(&self) -> u64 {
        self.unscheduled
    }

    /// Rules 1–4 for the next block: its signed consensus header and the execution header the
    /// node served for it. On success the chain moves to it; returns its consensus root.
    pub fn verify(
        &mut self,
        signed: &SignedBlockHeader,
        served: &ExecHeader,
    ) -> Result<Root, HeaderCheckError> {
        let next = self.next(signed)?;
        if next.derived != *served {
            return Err(HeaderCheckError::NotDerived {
                number: served.number,
                served: served.hash(),
                derived: next.derived.hash(),
            });
        }
        Ok(self.commit(signed, next).0)
    }

    /// Rules 1–3 for the next block, and its execution header derived (rule 4) rather than
    /// compared with a served one: what a node that takes consensus blocks from gossip
    /// executes. On success the chain moves to it; returns its consensus root and execution
    /// header.
    pub fn extend(
        &mut self,
        signed: &SignedBlockHeader,
    ) -> Result<(Root, ExecHeader), HeaderCheckError> {
        let next = self.next(signed)?;
        Ok(self.commit(signed, next))
    }

    /// The last verified block's consensus root; `None` at a checkpoint after genesis until
    /// [`HeaderChain::anchor`] or the next block names it.
    pub fn root(&self) -> Option<Root> {
        self.tip.root
    }

    /// At a checkpoint after genesis, whose execution header is `checkpoint`: names the
    /// consensus block it was derived from, `signed`, if it derives exactly that header (the
    /// checkpoint is trusted, so its own signatures need no check). Then the next block must
    /// build on it (rule 1's parent link holds from the first block on).
    pub fn anchor(
        &mut self,
        signed: &SignedBlockHeader,
        checkpoint: &ExecHeader,
    ) -> Result<Root, HeaderCheckError> {
        if checkpoint.hash() != self.tip.hash {
            return Err(HeaderCheckError::Checkpoint {
                got: checkpoint.hash(),
                expected: self.tip.hash,
            });
        }
        let derived = derive(
            &signed.message,
            self.tip.mix,
            (checkpoint.number.saturating_sub(1), checkpoint.parent),
            &self.spec,
            self.genesis_time,
            &self.registry,
        );
        if derived != *checkpoint {
            return Err(HeaderCheckError::NotDerived {
                number: checkpoint.number,
                served: checkpoint.hash(),
                derived: derived.hash(),
            });
        }
        let root = signed.message.root();
        self.tip.root = Some(root);
        Ok(root)
    }

    /// Rules 1–4 for `signed` on the tip, without moving it.
    fn next(&mut self, signed: &SignedBlockHeader) -> Result<Next, HeaderCheckError> {
        let header = &signed.message;
        let slot = header.slot;
        if slot <= self.tip.slot {
            return Err(HeaderCheckError::SlotNotAfter {
                slot: slot.0,
                last: self.tip.slot.0,
            });
        }
        if let Some(root) = self.tip.root
            && header.parent_root != root
        {
            return Err(HeaderCheckError::WrongParent {
                slot: slot.0,
                got: header.parent_root,
                expected: root,
            });
        }
        // Rule 2: the seed of the block's epoch is the mix after the last block before it.
        let epoch = slot.epoch(self.spec.slots_per_epoch);
        if epoch > self.tip.slot.epoch(self.spec.slots_per_epoch) {
            self.seed = Some((epoch, self.tip.mix));
        }
        let scheduled = match self.seed {
            Some((e, seed)) if e == epoch => proposer(&self.registry, seed, slot),
            _ => None,
        };
        let declared = header.declaration.message.proposer_index;
        let ctx = ChainContext {
            spec: &self.spec,
            signing: self.signing,
            registry: &self.registry,
        };
        check_header(&ctx, scheduled.unwrap_or(declared), signed).map_err(|source| {
            HeaderCheckError::Consensus {
                slot: slot.0,
                source,
            }
        })?;
        let mix = mix_in(
            self.tip.mix,
            header.declaration.message.randao_reveal.as_slice(),
        );
        let derived = derive(
            header,
            mix,
            (self.tip.height, self.tip.hash),
            &self.spec,
            self.genesis_time,
            &self.registry,
        );
        Ok(Next {
            derived,
            mix,
            scheduled: scheduled.is_some(),
        })
    }

    /// Moves the tip to `signed`, checked by [`HeaderChain::next`].
    fn commit(&mut self, signed: &SignedBlockHeader, next: Next) -> (Root, ExecHeader) {
        if !next.scheduled {
            self.unscheduled += 1;
        }
        let root = signed.message.root();
        self.tip = Tip {
            height: next.derived.number,
            hash: next.derived.hash(),
            root: Some(root),
            slot: signed.message.slot,
            mix: next.mix,
        };
        (root, next.derived)
    }
}

/// A block checked on the tip, not yet moved to.
struct Next {
    derived: ExecHeader,
    mix: B256,
    scheduled: bool,
}
