//! The executor registry (seed 003): bonded executors whose signed claims about state roots
//! light clients weigh by bond.
//!
//! Rules, in order:
//!
//! 1. **Bond.** Executors come from the genesis (`executors`, amount = bond) or later by a
//!    deposit operation (`crate::executor_ops`), appended at the next index; an executor whose
//!    bond is below the spec's `min_executor_bond` is not active. One key is one executor: a
//!    key already registered (active, exiting or slashed) cannot be deposited again until it
//!    has withdrawn.
//! 2. **Weight.** An active executor's claims weigh its bond. An executor that asked to
//!    withdraw weighs nothing from that epoch on, but its bond stays slashable until
//!    `executor_withdrawal_delay_epochs` have passed: a claim signed just before leaving is
//!    still answerable. After the delay the bond is released ([`ExecutorRegistry::release_due`])
//!    and the executor is gone; its index is never reused.
//! 3. **Sample.** The claimers of a block are a stake-weighted sample without replacement of
//!    [`SAMPLE_SIZE`] active executors (all of them when fewer), drawn by `sha256(seed ‖ height
//!    ‖ counter)` — deterministic, so anyone can check who was asked. Claims from executors
//!    outside the sample still count (any bonded claim is evidence a light client may use);
//!    the sample is who is *expected* to claim and is paid for it.
//! 4. **Slashing.** A verified proof of execution showing an executor's claim wrong (see
//!    `phalanx_execution::proof`) slashes its whole bond; [`BOUNTY_QUOTIENT`] of it goes to
//!    whoever submitted the proof, the rest is burned. An executor is slashed at most once.
//! 5. **Funding.** The registry also keeps the producers' bonds as executor operations move
//!    them on this branch (genesis bond, plus bounties credited, minus executor bonds funded):
//!    a deposit is paid out of a producer's bond, which must stay at or above
//!    `min_producer_bond` (see `crate::executor_ops` for why producers fund deposits).

use alloy_primitives::{Address, B256};
use phalanx_crypto::{PublicKey, PublicKeyBytes};
use phalanx_spec::{ChainSpec, Genesis};
use phalanx_types::fraud::FraudProofVerifier;
use phalanx_types::{
    BlockHeader, Decode, Epoch, ExecutorIndex, FraudProof, FraudProofKind, Gwei, ProducerIndex,
    Root, SigningContext, WrongClaimEvidence,
};
use sha2::{Digest, Sha256};

/// Executors sampled per block.
pub const SAMPLE_SIZE: usize = 16;

/// The submitter of a proof gets `bond / BOUNTY_QUOTIENT`.
pub const BOUNTY_QUOTIENT: u64 = 8;

/// One executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Executor {
    /// Its key (claims are signed with it).
    pub pubkey: PublicKey,
    /// Bond, Gwei.
    pub bond: Gwei,
    /// Where rewards go.
    pub reward_address: Address,
    /// Slashed (bond gone).
    pub slashed: bool,
    /// The epoch it asked to withdraw at, if it did.
    pub exit_epoch: Option<Epoch>,
}

/// Why a registry operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecutorError {
    /// A genesis key does not parse.
    #[error("executor {index}: bad public key: {reason}")]
    BadKey {
        /// Index.
        index: usize,
        /// Why.
        reason: String,
    },
    /// No such executor.
    #[error("no executor {0}")]
    Unknown(u64),
    /// Below the minimum bond.
    #[error("bond {got} Gwei is below the minimum {min}")]
    BondTooSmall {
        /// Offered.
        got: Gwei,
        /// Needed.
        min: Gwei,
    },
    /// Already slashed, exiting, or withdrawn.
    #[error("executor {0} is not active")]
    NotActive(u64),
    /// Rule 1: the key is already an executor's.
    #[error("the key is already executor {0}'s")]
    KeyInUse(u64),
    /// Rule 5: no such producer.
    #[error("no producer {0}")]
    UnknownProducer(u64),
    /// Rule 5: the producer's bond cannot pay for it.
    #[error(
        "producer {producer} has {available} Gwei of bond; paying {amount} would leave it below the minimum {min}"
    )]
    InsufficientBond {
        /// The producer.
        producer: u64,
        /// Its bond on this branch.
        available: Gwei,
        /// Asked.
        amount: Gwei,
        /// The producers' minimum bond.
        min: Gwei,
    },
    /// The withdrawal delay has not passed.
    #[error("executor {index} can withdraw at epoch {at}")]
    TooEarly {
        /// Index.
        index: u64,
        /// First epoch it can withdraw.
        at: u64,
    },
}

/// The executors and their bonds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorRegistry {
    executors: Vec<Option<Executor>>,
    min_bond: Gwei,
    delay: u64,
    /// Rule 5: each producer's bond as this branch's executor operations left it.
    producer_bonds: Vec<Gwei>,
    min_producer_bond: Gwei,
}

/// An executor gone after its withdrawal delay (rule 2), and what it is owed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    /// The executor.
    pub executor: ExecutorIndex,
    /// Where its bond is due.
    pub reward_address: Address,
    /// The bond released (0 if it was slashed).
    pub amount: Gwei,
}

impl ExecutorRegistry {
    /// The genesis executors under `genesis.spec`'s rules.
    pub fn from_genesis(genesis: &Genesis) -> Result<Self, ExecutorError> {
        let mut r = Self::new(&genesis.spec);
        r.producer_bonds = genesis.producers.iter().map(|p| p.amount).collect();
        for (index, e) in genesis.executors.iter().enumerate() {
            let pubkey = PublicKey::try_from(&e.pubkey).map_err(|err| ExecutorError::BadKey {
                index,
                reason: err.to_string(),
            })?;
            r.executors.push(Some(Executor {
                pubkey,
                bond: e.amount,
                reward_address: e.reward_address,
                slashed: false,
                exit_epoch: None,
            }));
        }
        Ok(r)
    }

    /// An empty registry under `spec`'s bond and delay.
    pub fn new(spec: &ChainSpec) -> Self {
        Self {
            executors: Vec::new(),
            min_bond: spec.min_executor_bond,
            delay: spec.executor_withdrawal_delay_epochs,
            producer_bonds: Vec::new(),
            min_producer_bond: spec.min_producer_bond,
        }
    }

    /// Rule 5: producer `index`'s bond on this branch (none for an unknown producer).
    pub fn producer_bond(&self, index: ProducerIndex) -> Option<Gwei> {
        self.producer_bonds
            .get(usize::try_from(index.0).ok()?)
            .copied()
    }

    /// Rule 5: credits a bounty to producer `index`'s bond (an unknown producer gets nothing).
    pub fn credit_producer(&mut self, index: ProducerIndex, amount: Gwei) {
        if let Some(b) = usize::try_from(index.0)
            .ok()
            .and_then(|i| self.producer_bonds.get_mut(i))
        {
            *b = b.saturating_add(amount);
        }
    }

    /// Rule 5: whether producer `index` can pay `amount` and keep its minimum bond.
    pub fn can_fund(&self, index: ProducerIndex, amount: Gwei) -> Result<(), ExecutorError> {
        let available = self
            .producer_bond(index)
            .ok_or(ExecutorError::UnknownProducer(index.0))?;
        if available
            .checked_sub(amount)
            .is_none_or(|left| left < self.min_producer_bond)
        {
            return Err(ExecutorError::InsufficientBond {
                producer: index.0,
                available,
                amount,
                min: self.min_producer_bond,
            });
        }
        Ok(())
    }

    /// The executor holding `pubkey` (active, exiting or slashed), if any.
    pub fn index_of(&self, pubkey: &PublicKey) -> Option<ExecutorIndex> {
        self.executors
            .iter()
            .position(|e| e.as_ref().is_some_and(|e| e.pubkey == *pubkey))
            .map(|i| ExecutorIndex(i as u64))
    }

    /// Rule 1: the smallest bond an executor may have.
    pub fn min_bond(&self) -> Gwei {
        self.min_bond
    }

    /// The epochs between asking to withdraw and the bond's release.
    pub fn withdrawal_delay(&self) -> u64 {
        self.delay
    }

    /// Executor `index` (none once withdrawn).
    pub fn get(&self, index: ExecutorIndex) -> Option<&Executor> {
        self.executors.get(index.0 as usize)?.as_ref()
    }

    /// Rule 2: what `index`'s claims weigh at `epoch`.
    pub fn weight(&self, index: ExecutorIndex, epoch: Epoch) -> Gwei {
        match self.get(index) {
            Some(e)
                if !e.slashed
                    && e.bond >= self.min_bond
                    && e.exit_epoch.is_none_or(|x| epoch < x) =>
            {
                e.bond
            }
            _ => 0,
        }
    }

    /// Total weight at `epoch`.
    pub fn total_weight(&self, epoch: Epoch) -> Gwei {
        (0..self.executors.len() as u64)
            .map(|i| self.weight(ExecutorIndex(i), epoch))
            .sum()
    }

    /// Indices of every executor ever registered (withdrawn ones included).
    pub fn len(&self) -> usize {
        self.executors.len()
    }

    /// Whether none was ever registered.
    pub fn is_empty(&self) -> bool {
        self.executors.is_empty()
    }

    /// Rules 1 and 5: a new executor with `bond`, paid out of `funder`'s bond (a genesis-less
    /// registry in tests may pass `None`: the bond then comes from nowhere).
    pub fn deposit(
        &mut self,
        pubkey: &PublicKeyBytes,
        bond: Gwei,
        reward_address: Address,
        funder: Option<ProducerIndex>,
    ) -> Result<ExecutorIndex, ExecutorError> {
        if bond < self.min_bond {
            return Err(ExecutorError::BondTooSmall {
                got: bond,
                min: self.min_bond,
            });
        }
        let pubkey = PublicKey::try_from(pubkey).map_err(|err| ExecutorError::BadKey {
            index: self.executors.len(),
            reason: err.to_string(),
        })?;
        if let Some(existing) = self.index_of(&pubkey) {
            return Err(ExecutorError::KeyInUse(existing.0));
        }
        if let Some(p) = funder {
            self.can_fund(p, bond)?;
            if let Some(b) = self.producer_bonds.get_mut(p.0 as usize) {
                *b -= bond;
            }
        }
        self.executors.push(Some(Executor {
            pubkey,
            bond,
            reward_address,
            slashed: false,
            exit_epoch: None,
        }));
        Ok(ExecutorIndex(self.executors.len() as u64 - 1))
    }

    /// Rule 2: `index` asks to withdraw at `epoch`; returns the first epoch it can withdraw.
    pub fn request_withdrawal(
        &mut self,
        index: ExecutorIndex,
        epoch: Epoch,
    ) -> Result<Epoch, ExecutorError> {
        let delay = self.delay;
        let e = self
            .executors
            .get_mut(index.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(ExecutorError::Unknown(index.0))?;
        if e.slashed || e.exit_epoch.is_some() {
            return Err(ExecutorError::NotActive(index.0));
        }
        e.exit_epoch = Some(epoch);
        Ok(Epoch(epoch.0.saturating_add(delay)))
    }

    /// Rule 2: pays out `index`'s bond once the delay has passed.
    pub fn withdraw(&mut self, index: ExecutorIndex, epoch: Epoch) -> Result<Gwei, ExecutorError> {
        let delay = self.delay;
        let slot = self
            .executors
            .get_mut(index.0 as usize)
            .ok_or(ExecutorError::Unknown(index.0))?;
        let e = slot.as_ref().ok_or(ExecutorError::Unknown(index.0))?;
        let Some(exit) = e.exit_epoch else {
            return Err(ExecutorError::NotActive(index.0));
        };
        let at = exit.0.saturating_add(delay);
        if epoch.0 < at {
            return Err(ExecutorError::TooEarly { index: index.0, at });
        }
        let bond = if e.slashed { 0 } else { e.bond };
        *slot = None;
        Ok(bond)
    }

    /// Rule 2: whether some executor's bond is due for release at `epoch`.
    pub fn has_release_due(&self, epoch: Epoch) -> bool {
        self.executors.iter().flatten().any(|e| {
            e.exit_epoch
                .is_some_and(|x| x.0.saturating_add(self.delay) <= epoch.0)
        })
    }

    /// Rule 2 at a block of `epoch`: every executor whose withdrawal delay has passed is gone,
    /// its bond released; returns them in index order.
    pub fn release_due(&mut self, epoch: Epoch) -> Vec<Released> {
        let due: Vec<(ExecutorIndex, Address)> = self
            .executors
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let e = e.as_ref()?;
                let exit = e.exit_epoch?;
                (exit.0.saturating_add(self.delay) <= epoch.0)
                    .then_some((ExecutorIndex(i as u64), e.reward_address))
            })
            .collect();
        due.into_iter()
            .filter_map(|(executor, reward_address)| {
                let amount = self.withdraw(executor, epoch).ok()?;
                Some(Released {
                    executor,
                    reward_address,
                    amount,
                })
            })
            .collect()
    }

    /// Rule 4: slashes `index`; returns the bounty for the proof's submitter (0 if it was
    /// already slashed or is gone).
    pub fn slash(&mut self, index: ExecutorIndex) -> Gwei {
        match self
            .executors
            .get_mut(index.0 as usize)
            .and_then(Option::as_mut)
        {
            Some(e) if !e.slashed => {
                e.slashed = true;
                let bounty = e.bond / BOUNTY_QUOTIENT;
                e.bond = 0;
                bounty
            }
            _ => 0,
        }
    }

    /// Executors slashed so far.
    pub fn slashed(&self) -> impl Iterator<Item = ExecutorIndex> + '_ {
        self.executors
            .iter()
            .enumerate()
            .filter(|(_, e)| e.as_ref().is_some_and(|e| e.slashed))
            .map(|(i, _)| ExecutorIndex(i as u64))
    }

    /// Rule 3: the claimers expected for the block at `height`, drawn with `seed`.
    pub fn sample(&self, seed: B256, height: u64, epoch: Epoch) -> Vec<ExecutorIndex> {
        let mut pool: Vec<(ExecutorIndex, Gwei)> = (0..self.executors.len() as u64)
            .map(ExecutorIndex)
            .map(|i| (i, self.weight(i, epoch)))
            .filter(|(_, w)| *w > 0)
            .collect();
        let mut out = Vec::new();
        let mut counter = 0u64;
        while out.len() < SAMPLE_SIZE && !pool.is_empty() {
            let total: u128 = pool.iter().map(|(_, w)| u128::from(*w)).sum();
            let digest = Sha256::new()
                .chain_update(seed)
                .chain_update(height.to_le_bytes())
                .chain_update(counter.to_le_bytes())
                .finalize();
            counter += 1;
            let mut x = u128::from_le_bytes(digest[..16].try_into().unwrap_or([0; 16])) % total;
            let pick = pool
                .iter()
                .position(|(_, w)| {
                    let w = u128::from(*w);
                    if x < w {
                        true
                    } else {
                        x -= w;
                        false
                    }
                })
                .unwrap_or(0);
            out.push(pool.swap_remove(pick).0);
        }
        out
    }
}

/// Why a `WrongClaim` fraud proof was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WrongClaimError {
    /// Not a wrong-claim proof, or its payload does not decode.
    #[error("not a wrong-claim fraud proof: {0}")]
    Malformed(String),
    /// The accused executor is unknown or its claim's signature does not verify.
    #[error("the claim is not signed by executor {0}")]
    BadSignature(u64),
    /// The verifier refused it (the claim is right, or the proof is bad).
    #[error("wrong-claim proof rejected: {0}")]
    Rejected(String),
}

/// Rule 4 as a block operation: checks a `WrongClaim` fraud proof against `header` (whose
/// parent state root is `parent_state_root`) — the claim signed by the accused executor, the
/// re-execution by `verifier` — and slashes the executor. Returns the executor and the bounty
/// owed to the submitter (0 if it was already slashed).
pub fn apply_wrong_claim(
    verifier: &dyn FraudProofVerifier,
    proof: &FraudProof,
    header: &BlockHeader,
    parent_state_root: Root,
    signing: &SigningContext,
    registry: &mut ExecutorRegistry,
) -> Result<(ExecutorIndex, Gwei), WrongClaimError> {
    if proof.kind != FraudProofKind::WrongClaim as u8 {
        return Err(WrongClaimError::Malformed(format!("kind {}", proof.kind)));
    }
    let evidence = WrongClaimEvidence::from_ssz_bytes(&proof.payload)
        .map_err(|e| WrongClaimError::Malformed(format!("{e:?}")))?;
    let executor = evidence.claim.executor;
    let key = registry
        .get(executor)
        .map(|e| e.pubkey)
        .ok_or(WrongClaimError::BadSignature(executor.0))?;
    signing
        .verify(&evidence.claim.message, &key, &evidence.claim.signature)
        .map_err(|_| WrongClaimError::BadSignature(executor.0))?;
    verifier
        .verify(proof, header, parent_state_root)
        .map_err(WrongClaimError::Rejected)?;
    Ok((executor, registry.slash(executor)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_spec::devnet::{DevnetParams, generate};

    fn registry(executors: u32) -> (ExecutorRegistry, Genesis) {
        let spec = ChainSpec::preset("devnet").unwrap_or_else(|e| panic!("{e}"));
        let mut params = DevnetParams::new("executors", spec);
        params.executors = executors;
        params.accounts = 0;
        let (genesis, _) = generate(&params).unwrap_or_else(|e| panic!("{e}"));
        (
            ExecutorRegistry::from_genesis(&genesis).unwrap_or_else(|e| panic!("{e}")),
            genesis,
        )
    }

    #[test]
    fn withdrawal_stops_weight_at_once_but_keeps_the_bond_slashable_for_the_delay() {
        let (mut r, genesis) = registry(3);
        let e = ExecutorIndex(1);
        let bond = r.weight(e, Epoch(0));
        assert!(bond > 0);
        let at = r
            .request_withdrawal(e, Epoch(5))
            .unwrap_or_else(|x| panic!("{x}"));
        assert_eq!(at.0, 5 + genesis.spec.executor_withdrawal_delay_epochs);
        assert_eq!(r.weight(e, Epoch(4)), bond);
        assert_eq!(r.weight(e, Epoch(5)), 0);
        assert!(matches!(
            r.withdraw(e, Epoch(at.0 - 1)),
            Err(ExecutorError::TooEarly { .. })
        ));
        assert_eq!(
            r.slash(e),
            bond / BOUNTY_QUOTIENT,
            "still slashable while exiting"
        );
        assert_eq!(r.slash(e), 0, "slashed once");
        assert_eq!(
            r.withdraw(e, at),
            Ok(0),
            "nothing left to pay a slashed executor"
        );
        assert!(r.get(e).is_none());
        assert_eq!(r.slashed().count(), 0, "withdrawn executors are gone");
    }

    #[test]
    fn the_sample_is_deterministic_distinct_and_weighted() {
        let (r, _) = registry(40);
        let a = r.sample(B256::repeat_byte(1), 7, Epoch(0));
        assert_eq!(a, r.sample(B256::repeat_byte(1), 7, Epoch(0)));
        assert_ne!(a, r.sample(B256::repeat_byte(1), 8, Epoch(0)));
        assert_eq!(a.len(), SAMPLE_SIZE);
        let distinct: std::collections::BTreeSet<_> = a.iter().map(|e| e.0).collect();
        assert_eq!(distinct.len(), SAMPLE_SIZE);
        let (small, _) = registry(3);
        assert_eq!(small.sample(B256::ZERO, 1, Epoch(0)).len(), 3);
    }

    #[test]
    fn a_deposit_below_the_minimum_is_refused() {
        let (mut r, genesis) = registry(1);
        let key = genesis.executors[0].pubkey;
        let min = genesis.spec.min_executor_bond;
        assert!(matches!(
            r.deposit(&key, min - 1, Address::ZERO, None),
            Err(ExecutorError::BondTooSmall { .. })
        ));
        assert_eq!(
            r.deposit(&key, min, Address::ZERO, None),
            Err(ExecutorError::KeyInUse(0)),
            "one key, one executor"
        );
        let fresh = phalanx_crypto::SecretKey::key_gen(&[7u8; 32])
            .unwrap_or_else(|e| panic!("{e}"))
            .public_key()
            .to_bytes();
        assert_eq!(
            r.deposit(&fresh, min, Address::ZERO, None),
            Ok(ExecutorIndex(1))
        );
    }

    #[test]
    fn a_producer_funds_a_deposit_only_above_its_minimum_bond() {
        let (mut r, genesis) = registry(1);
        let p = ProducerIndex(0);
        let bond = genesis.producers[0].amount;
        let spare = bond - genesis.spec.min_producer_bond;
        let key = |seed: &[u8]| {
            phalanx_crypto::SecretKey::key_gen(seed)
                .unwrap_or_else(|e| panic!("{e}"))
                .public_key()
                .to_bytes()
        };
        assert!(matches!(
            r.deposit(&key(&[8u8; 32]), spare + 1, Address::ZERO, Some(p)),
            Err(ExecutorError::InsufficientBond { .. })
        ));
        assert_eq!(
            r.producer_bond(p),
            Some(bond),
            "a refused deposit moves nothing"
        );
        let min = genesis.spec.min_executor_bond;
        assert_eq!(
            r.deposit(&key(&[8u8; 32]), min, Address::ZERO, Some(p)),
            Ok(ExecutorIndex(1))
        );
        assert_eq!(r.producer_bond(p), Some(bond - min));
        r.credit_producer(p, 7);
        assert_eq!(r.producer_bond(p), Some(bond - min + 7));
        assert!(matches!(
            r.deposit(
                &key(&[9u8; 32]),
                min,
                Address::ZERO,
                Some(ProducerIndex(99))
            ),
            Err(ExecutorError::UnknownProducer(99))
        ));
    }
}
