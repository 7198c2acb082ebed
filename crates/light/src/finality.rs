//! Finality from aggregated attestations: what lets a light client take a header as final
//! without trusting the node that served it.
//!
//! Attestations are self-authenticating: an aggregate is valid if the validators its bits name
//! in the slot's committee ([`phalanx_consensus::committee`]) signed its data. So the node may
//! serve them from anywhere (the devnet takes them from its canonical chain's block bodies);
//! the client checks each and runs Casper FFG itself, as `phalanx_consensus::fork_choice`
//! does:
//!
//! 1. **Votes.** An aggregate counts if its bits match the committee of its slot, every named
//!    validator is in the genesis registry, its target epoch is its slot's epoch and after its
//!    source's, and the aggregate signature verifies. Each validator counts once per
//!    `source → target` link, however many aggregates name it.
//! 2. **Justification.** A checkpoint is justified when validators holding at least ⅔ of the
//!    total stake voted for a link to it from a justified checkpoint. Genesis is justified
//!    and final.
//! 3. **Finality.** A justified `s` with a supermajority link `s → t`, `t.epoch = s.epoch + 1`,
//!    is finalized.
//!
//! From a checkpoint after genesis the client does not know which earlier checkpoints were
//! justified: it takes as justified any source at or before the trusted checkpoint's epoch
//! (the trusted block is final, so the chain up to it is settled; honest validators — more
//! than ⅓ of any supermajority when fewer than ⅓ are faulty — only vote from sources they saw
//! justified). The stake is the genesis registry's, less the validators slashed since in the
//! blocks the client followed ([`Finality::slash`], as fork choice zeroes their stake).

use std::collections::{HashMap, HashSet};

use phalanx_consensus::Registry;
use phalanx_consensus::committee::{attesters, committee};
use phalanx_crypto::{PublicKey, Signature};
use phalanx_spec::Genesis;
use phalanx_types::{Attestation, Checkpoint, Epoch, Gwei, Root, SigningContext, ValidatorIndex};

/// An attestation refused (rule 1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    /// Its bits do not fit the slot's committee.
    #[error("attestation for slot {slot} has {bits} bits, the committee has {committee}")]
    Committee {
        /// Slot.
        slot: u64,
        /// Bits given.
        bits: usize,
        /// Committee size.
        committee: usize,
    },
    /// No validator named, or one unknown.
    #[error("attestation for slot {0} names no known validator")]
    NoSigners(u64),
    /// Source, target and slot do not line up.
    #[error("attestation for slot {slot}: source epoch {from} → target epoch {target}")]
    Inconsistent {
        /// Slot.
        slot: u64,
        /// Source epoch.
        from: u64,
        /// Target epoch.
        target: u64,
    },
    /// The aggregate signature does not verify.
    #[error("attestation for slot {0}: aggregate signature does not verify")]
    BadSignature(u64),
}

/// Casper FFG over the attestations a client was given.
#[derive(Debug)]
pub struct Finality {
    signing: SigningContext,
    slots_per_epoch: u64,
    keys: Vec<PublicKey>,
    stakes: Vec<Gwei>,
    total: Gwei,
    /// Sources at or before this epoch are taken as justified (a checkpoint after genesis).
    trusted_epoch: Option<Epoch>,
    justified: HashSet<Checkpoint>,
    finalized: Checkpoint,
    links: HashMap<(Checkpoint, Checkpoint), HashSet<u64>>,
    /// Aggregates already counted (by signature, with their target epoch), so repeats cost no
    /// pairing.
    seen: HashMap<[u8; 96], Epoch>,
}

impl Finality {
    /// A validator slashed on chain: from now on its votes weigh nothing and its stake is out
    /// of the total, as in the chain's fork choice.
    pub fn slash(&mut self, validator: ValidatorIndex) {
        if let Some(s) = usize::try_from(validator.0)
            .ok()
            .and_then(|i| self.stakes.get_mut(i))
        {
            self.total = self.total.saturating_sub(*s);
            *s = 0;
        }
    }

    /// From the genesis: its checkpoint (epoch 0, the genesis block root) justified and final.
    pub fn from_genesis(genesis: &Genesis) -> Result<Self, String> {
        let registry = Registry::from_genesis(genesis).map_err(|e| e.to_string())?;
        let keys: Vec<PublicKey> = registry.validators().iter().map(|v| v.pubkey).collect();
        let stakes: Vec<Gwei> = registry.validators().iter().map(|v| v.stake).collect();
        let genesis_checkpoint = Checkpoint {
            epoch: Epoch(0),
            root: genesis.validators_root(),
        };
        Ok(Self {
            signing: genesis.signing_context(),
            slots_per_epoch: genesis.spec.slots_per_epoch.max(1),
            total: registry.total_stake(),
            keys,
            stakes,
            trusted_epoch: None,
            justified: HashSet::from([genesis_checkpoint.clone()]),
            finalized: genesis_checkpoint,
            links: HashMap::new(),
            seen: HashMap::new(),
        })
    }

    /// From a trusted checkpoint in `epoch` (see the module docs): what is final up to it is
    /// settled, so [`Finality::finalized`] starts at `epoch` (with an unknown root).
    pub fn from_checkpoint(genesis: &Genesis, epoch: Epoch) -> Result<Self, String> {
        let mut f = Self::from_genesis(genesis)?;
        f.trusted_epoch = Some(epoch);
        f.finalized = Checkpoint {
            epoch,
            root: Root::ZERO,
        };
        Ok(f)
    }

    /// The finalized checkpoint with the highest epoch.
    pub fn finalized(&self) -> &Checkpoint {
        &self.finalized
    }

    /// Rule 1, then rules 2–3: counts `attestation`; `true` when the finalized checkpoint
    /// moved.
    pub fn on_attestation(&mut self, attestation: &Attestation) -> Result<bool, AttestationError> {
        let data = &attestation.data;
        let slot = data.slot.0;
        if self.seen.contains_key(&attestation.signature.0) {
            return Ok(false);
        }
        if data.target.epoch <= data.source.epoch
            || data.target.epoch != data.slot.epoch(self.slots_per_epoch)
        {
            return Err(AttestationError::Inconsistent {
                slot,
                from: data.source.epoch.0,
                target: data.target.epoch.0,
            });
        }
        let members = committee(self.keys.len() as u64, data.slot, self.slots_per_epoch);
        let signers: Vec<ValidatorIndex> =
            attesters(&members, attestation).ok_or(AttestationError::Committee {
                slot,
                bits: attestation.aggregation_bits.len(),
                committee: members.len(),
            })?;
        let keys: Option<Vec<PublicKey>> = signers
            .iter()
            .map(|v| {
                usize::try_from(v.0)
                    .ok()
                    .and_then(|i| self.keys.get(i))
                    .copied()
            })
            .collect();
        let keys = keys
            .filter(|k| !k.is_empty())
            .ok_or(AttestationError::NoSigners(slot))?;
        let root = self.signing.signing_root(data);
        let valid = Signature::try_from(&attestation.signature)
            .is_ok_and(|sig| sig.fast_aggregate_verify(&keys, root.as_slice()));
        if !valid {
            return Err(AttestationError::BadSignature(slot));
        }
        self.seen.insert(attestation.signature.0, data.target.epoch);
        self.links
            .entry((data.source.clone(), data.target.clone()))
            .or_default()
            .extend(signers.iter().map(|v| v.0));
        let before = self.finalized.epoch;
        self.update();
        let moved = self.finalized.epoch > before;
        if moved {
            self.prune();
        }
        Ok(moved)
    }

    /// Forgets what can no longer change anything: links and aggregates whose target is at
    /// or before the finalized epoch, and justified checkpoints before it (a long-running
    /// client's memory stays bounded).
    fn prune(&mut self) {
        let f = self.finalized.epoch;
        self.links.retain(|(_, t), _| t.epoch > f);
        self.seen.retain(|_, t| *t > f);
        self.justified.retain(|c| c.epoch >= f);
    }

    fn justified(&self, c: &Checkpoint) -> bool {
        self.justified.contains(c) || self.trusted_epoch.is_some_and(|e| c.epoch <= e)
    }

    /// Rules 2–3 until nothing changes.
    fn update(&mut self) {
        let total = u128::from(self.total);
        loop {
            let mut changed = false;
            let mut justify = Vec::new();
            let mut finalize = Vec::new();
            for ((source, target), voters) in &self.links {
                let weight: u128 = voters
                    .iter()
                    .filter_map(|v| usize::try_from(*v).ok().and_then(|i| self.stakes.get(i)))
                    .map(|s| u128::from(*s))
                    .sum();
                if weight * 3 < total * 2 || !self.justified(source) {
                    continue;
                }
                if !self.justified.contains(target) {
                    justify.push(target.clone());
                }
                if target.epoch.0 == source.epoch.0 + 1 && source.epoch > self.finalized.epoch {
                    finalize.push(source.clone());
                }
            }
            for t in justify {
                changed |= self.justified.insert(t);
            }
            for s in finalize {
                if s.epoch > self.finalized.epoch {
                    self.finalized = s;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }
}
