//! Executors joining and leaving, as block operations (seed 003: "allow anyone … to deposit
//! … with a 4 month lockup period"): what a block's `executor_deposits` and `executor_exits`
//! may hold, and what importing a block does with them.
//!
//! Consensus judges them by data alone and applies them to **the executor registry of the
//! block's own branch** (a view keeps one registry per block, so a deposit on a branch that
//! loses changes nothing on the other: executor indices, which claims name, are the same in
//! every view that imports the same chain).
//!
//! At each block of epoch `e`, in this order (a block breaking a rule is invalid):
//!
//! 1. **Release.** Every executor whose exit epoch plus `executor_withdrawal_delay_epochs` is
//!    at most `e` is gone; its bond (nothing if slashed) is released to its reward address.
//!    (Crediting that address in the execution state is a consensus-to-execution transfer this
//!    chain does not make yet; the release is reported in the block's effects and logged.)
//!    This comes first, so the block's claims and proofs see the registry without them.
//! 2. The block's claims and wrong-claim proofs (`crate::claims`), bounties credited to the
//!    including producer's bond.
//! 3. **Deposits**, in order: `amount ≥ min_executor_bond`; the key is a valid BLS key that no
//!    registered executor holds; the funding producer exists; the new executor's signature
//!    (proof of possession and consent) and the producer's signature, both over the deposit
//!    under the executor-deposit domain, verify; the producer's bond on this branch minus
//!    `amount` stays at or above `min_producer_bond`. Effect: the producer's bond pays
//!    `amount` and the executor is appended at the next index, active at once (its claims
//!    count from the next block: claims are checked before deposits).
//! 4. **Exits**, in order: `e ≥ message.epoch`; the executor is registered, not slashed and
//!    not exiting; its signature under the executor-exit domain verifies. Effect: its claims
//!    weigh nothing from `e` on; its bond stays slashable until released (rule 1).
//!
//! **Why producers fund deposits.** Consensus never executes, so it cannot see value in the
//! execution state (seed 003's executor contract) without trusting the very claims it is
//! bonding; validators' stake drives fork choice and the proposer schedule, which must not
//! move with per-branch operations. Producers' bonds are the consensus-layer value that
//! moves: they already receive executors' slashing bounties, and a producer (a builder that
//! executes anyway) bonding its own or a sponsored executor is the natural case. A bridge
//! from execution-layer deposits is not built.

use phalanx_crypto::PublicKey;
use phalanx_types::{
    BlockBody, Epoch, ExecutorIndex, SignedExecutorDeposit, SignedExecutorExit, SigningContext,
};

use crate::executors::{ExecutorError, ExecutorRegistry, Released};

/// Why a deposit cannot go in a block (rule 3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DepositError {
    /// Amount, key or funding refused by the registry.
    #[error(transparent)]
    Registry(#[from] ExecutorError),
    /// The new executor's signature does not verify.
    #[error("the new executor's signature does not verify")]
    BadExecutorSignature,
    /// The producer's signature does not verify (or the producer is unknown).
    #[error("producer {0}'s signature does not verify")]
    BadProducerSignature(u64),
}

/// Why an exit cannot go in a block (rule 4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExitError {
    /// Signed for a later epoch.
    #[error("exit of executor {executor} is valid from epoch {from}, the block is at {epoch}")]
    TooEarly {
        /// The executor.
        executor: u64,
        /// The exit's epoch.
        from: u64,
        /// The block's epoch.
        epoch: u64,
    },
    /// Unknown, slashed, already exiting, or gone.
    #[error(transparent)]
    Registry(#[from] ExecutorError),
    /// The signature does not verify.
    #[error("exit of executor {0}: bad signature")]
    BadSignature(u64),
}

/// Why a block's executor operations make it invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// Deposit `index` breaks rule 3.
    #[error("executor deposit {index}: {source}")]
    Deposit {
        /// Its position in the body.
        index: usize,
        /// Why.
        source: DepositError,
    },
    /// Exit `index` breaks rule 4.
    #[error("executor exit {index}: {source}")]
    Exit {
        /// Its position in the body.
        index: usize,
        /// Why.
        source: ExitError,
    },
}

/// What rules 3 and 4 did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpsEffects {
    /// New executors, in order.
    pub deposited: Vec<ExecutorIndex>,
    /// Executors that asked to withdraw, each with the first epoch of its release.
    pub exited: Vec<(ExecutorIndex, Epoch)>,
}

/// Rule 1 at a block of `epoch`.
pub fn release(registry: &mut ExecutorRegistry, epoch: Epoch) -> Vec<Released> {
    registry.release_due(epoch)
}

/// Rule 3 for one deposit, applied to `registry` when it passes (nothing changes otherwise).
/// `producer_key` resolves a producer's key (the validator registry's, which never changes).
pub fn deposit(
    d: &SignedExecutorDeposit,
    registry: &mut ExecutorRegistry,
    producer_key: &dyn Fn(u64) -> Option<PublicKey>,
    signing: &SigningContext,
) -> Result<ExecutorIndex, DepositError> {
    let m = &d.message;
    let min = registry.min_bond();
    if m.amount < min {
        return Err(ExecutorError::BondTooSmall { got: m.amount, min }.into());
    }
    let key = PublicKey::try_from(&m.pubkey).map_err(|e| ExecutorError::BadKey {
        index: registry.len(),
        reason: e.to_string(),
    })?;
    if let Some(i) = registry.index_of(&key) {
        return Err(ExecutorError::KeyInUse(i.0).into());
    }
    registry.can_fund(m.producer, m.amount)?;
    signing
        .verify(m, &key, &d.executor_signature)
        .map_err(|_| DepositError::BadExecutorSignature)?;
    let producer =
        producer_key(m.producer.0).ok_or(DepositError::BadProducerSignature(m.producer.0))?;
    signing
        .verify(m, &producer, &d.producer_signature)
        .map_err(|_| DepositError::BadProducerSignature(m.producer.0))?;
    Ok(registry.deposit(&m.pubkey, m.amount, m.reward_address, Some(m.producer))?)
}

/// Rule 4 for one exit in a block of `epoch`, applied when it passes. Returns the first
/// epoch of the executor's release.
pub fn exit(
    x: &SignedExecutorExit,
    epoch: Epoch,
    registry: &mut ExecutorRegistry,
    signing: &SigningContext,
) -> Result<Epoch, ExitError> {
    let executor = x.message.executor;
    if epoch < x.message.epoch {
        return Err(ExitError::TooEarly {
            executor: executor.0,
            from: x.message.epoch.0,
            epoch: epoch.0,
        });
    }
    let e = registry
        .get(executor)
        .ok_or(ExecutorError::Unknown(executor.0))?;
    if e.slashed || e.exit_epoch.is_some() {
        return Err(ExecutorError::NotActive(executor.0).into());
    }
    signing
        .verify(&x.message, &e.pubkey, &x.signature)
        .map_err(|_| ExitError::BadSignature(executor.0))?;
    Ok(registry.request_withdrawal(executor, epoch)?)
}

/// Rules 3 and 4 for a block of `epoch`: every deposit then every exit of `body`, applied to
/// `registry` only if all pass.
pub fn process_ops(
    body: &BlockBody,
    epoch: Epoch,
    registry: &mut ExecutorRegistry,
    producer_key: &dyn Fn(u64) -> Option<PublicKey>,
    signing: &SigningContext,
) -> Result<OpsEffects, OpError> {
    if body.executor_deposits.is_empty() && body.executor_exits.is_empty() {
        return Ok(OpsEffects::default());
    }
    let mut next = registry.clone();
    let mut effects = OpsEffects::default();
    for (index, d) in body.executor_deposits.iter().enumerate() {
        let e = deposit(d, &mut next, producer_key, signing)
            .map_err(|source| OpError::Deposit { index, source })?;
        effects.deposited.push(e);
    }
    for (index, x) in body.executor_exits.iter().enumerate() {
        let at =
            exit(x, epoch, &mut next, signing).map_err(|source| OpError::Exit { index, source })?;
        effects.exited.push((x.message.executor, at));
    }
    *registry = next;
    Ok(effects)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::Address;
    use phalanx_crypto::SecretKey;
    use phalanx_spec::ChainSpec;
    use phalanx_spec::devnet::{DevnetKeys, DevnetParams, generate};
    use phalanx_types::{ExecutorDeposit, ExecutorExit, ProducerIndex};
    use ssz_types::VariableList;

    struct World {
        registry: ExecutorRegistry,
        keys: DevnetKeys,
        signing: SigningContext,
        producers: Vec<PublicKey>,
        spec: ChainSpec,
    }

    fn world() -> World {
        let spec = ChainSpec::preset("devnet").unwrap_or_else(|e| panic!("{e}"));
        let mut params = DevnetParams::new("executor-ops", spec);
        params.executors = 2;
        params.accounts = 0;
        let (genesis, keys) = generate(&params).unwrap_or_else(|e| panic!("{e}"));
        let signing = genesis.spec.signing_context(genesis.validators_root());
        World {
            registry: ExecutorRegistry::from_genesis(&genesis).unwrap_or_else(|e| panic!("{e}")),
            producers: keys.producers.iter().map(|(_, k)| k.public_key()).collect(),
            keys,
            signing,
            spec: genesis.spec,
        }
    }

    fn new_key(n: u8) -> SecretKey {
        SecretKey::key_gen(&[n; 32]).unwrap_or_else(|e| panic!("{e}"))
    }

    impl World {
        fn deposit(&self, key: &SecretKey, amount: u64, producer: u64) -> SignedExecutorDeposit {
            let message = ExecutorDeposit {
                pubkey: key.public_key().to_bytes(),
                reward_address: Address::repeat_byte(0x42),
                amount,
                producer: ProducerIndex(producer),
            };
            let p = &self.keys.producers[producer as usize].1;
            SignedExecutorDeposit {
                executor_signature: self.signing.sign(&message, key),
                producer_signature: self.signing.sign(&message, p),
                message,
            }
        }

        fn exit(&self, executor: u64, epoch: u64) -> SignedExecutorExit {
            let message = ExecutorExit {
                executor: ExecutorIndex(executor),
                epoch: Epoch(epoch),
            };
            SignedExecutorExit {
                signature: self
                    .signing
                    .sign(&message, &self.keys.executors[executor as usize].1),
                message,
            }
        }

        fn process(
            &mut self,
            deposits: Vec<SignedExecutorDeposit>,
            exits: Vec<SignedExecutorExit>,
            epoch: u64,
        ) -> Result<OpsEffects, OpError> {
            let body = BlockBody {
                executor_deposits: VariableList::new(deposits).unwrap_or_else(|e| panic!("{e:?}")),
                executor_exits: VariableList::new(exits).unwrap_or_else(|e| panic!("{e:?}")),
                ..BlockBody::default()
            };
            let producers = self.producers.clone();
            let key = move |p: u64| producers.get(p as usize).copied();
            process_ops(&body, Epoch(epoch), &mut self.registry, &key, &self.signing)
        }
    }

    #[test]
    fn a_deposit_signed_by_both_adds_an_executor_paid_by_the_producer() {
        let mut w = world();
        let min = w.spec.min_executor_bond;
        let before = w.registry.producer_bond(ProducerIndex(1)).unwrap_or(0);
        let d = w.deposit(&new_key(1), min, 1);
        assert_eq!(
            w.process(vec![d.clone()], vec![], 3).map(|e| e.deposited),
            Ok(vec![ExecutorIndex(2)])
        );
        assert_eq!(w.registry.weight(ExecutorIndex(2), Epoch(3)), min);
        assert_eq!(
            w.registry.producer_bond(ProducerIndex(1)),
            Some(before - min)
        );
        // The same key again: refused, and the block's other operations are not applied.
        let good = w.deposit(&new_key(2), min, 1);
        assert_eq!(
            w.process(vec![good, d], vec![], 3),
            Err(OpError::Deposit {
                index: 1,
                source: DepositError::Registry(ExecutorError::KeyInUse(2))
            })
        );
        assert_eq!(w.registry.len(), 3, "nothing of the refused block applied");
    }

    #[test]
    fn deposits_missing_a_signature_or_funds_are_refused() {
        let mut w = world();
        let min = w.spec.min_executor_bond;
        let mut forged = w.deposit(&new_key(3), min, 0);
        forged.executor_signature = w.signing.sign(&forged.message, &new_key(4));
        assert_eq!(
            w.process(vec![forged], vec![], 0),
            Err(OpError::Deposit {
                index: 0,
                source: DepositError::BadExecutorSignature
            })
        );
        let mut unpaid = w.deposit(&new_key(3), min, 0);
        unpaid.producer_signature = w.signing.sign(&unpaid.message, &w.keys.producers[1].1);
        assert_eq!(
            w.process(vec![unpaid], vec![], 0),
            Err(OpError::Deposit {
                index: 0,
                source: DepositError::BadProducerSignature(0)
            })
        );
        let bond = w.registry.producer_bond(ProducerIndex(0)).unwrap_or(0);
        let too_much = w.deposit(&new_key(3), bond, 0);
        assert!(matches!(
            w.process(vec![too_much], vec![], 0),
            Err(OpError::Deposit {
                source: DepositError::Registry(ExecutorError::InsufficientBond { .. }),
                ..
            })
        ));
        let small = w.deposit(&new_key(3), min - 1, 0);
        assert!(matches!(
            w.process(vec![small], vec![], 0),
            Err(OpError::Deposit {
                source: DepositError::Registry(ExecutorError::BondTooSmall { .. }),
                ..
            })
        ));
        let unknown = w.deposit(&new_key(3), min, 0);
        let mut unknown = unknown;
        unknown.message.producer = ProducerIndex(99);
        assert!(matches!(
            w.process(vec![unknown], vec![], 0),
            Err(OpError::Deposit { .. })
        ));
        assert_eq!(w.registry.len(), 2);
    }

    #[test]
    fn an_exit_stops_weight_at_once_and_the_bond_is_released_after_the_delay() {
        let mut w = world();
        let delay = w.spec.executor_withdrawal_delay_epochs;
        let bond = w.registry.weight(ExecutorIndex(0), Epoch(0));
        let reward = w
            .registry
            .get(ExecutorIndex(0))
            .map(|e| e.reward_address)
            .unwrap_or_default();
        assert_eq!(
            w.process(vec![], vec![w.exit(0, 5)], 4),
            Err(OpError::Exit {
                index: 0,
                source: ExitError::TooEarly {
                    executor: 0,
                    from: 5,
                    epoch: 4
                }
            })
        );
        let mut forged = w.exit(0, 5);
        forged.signature = w.signing.sign(&forged.message, &w.keys.executors[1].1);
        assert_eq!(
            w.process(vec![], vec![forged], 5),
            Err(OpError::Exit {
                index: 0,
                source: ExitError::BadSignature(0)
            })
        );
        assert_eq!(
            w.process(vec![], vec![w.exit(0, 5)], 6).map(|e| e.exited),
            Ok(vec![(ExecutorIndex(0), Epoch(6 + delay))])
        );
        assert_eq!(w.registry.weight(ExecutorIndex(0), Epoch(6)), 0);
        assert!(matches!(
            w.process(vec![], vec![w.exit(0, 5)], 7),
            Err(OpError::Exit {
                source: ExitError::Registry(ExecutorError::NotActive(0)),
                ..
            })
        ));
        assert!(release(&mut w.registry, Epoch(6 + delay - 1)).is_empty());
        assert_eq!(
            release(&mut w.registry, Epoch(6 + delay)),
            vec![Released {
                executor: ExecutorIndex(0),
                reward_address: reward,
                amount: bond
            }]
        );
        assert!(w.registry.get(ExecutorIndex(0)).is_none());
        // Gone: its key may come back, at a new index.
        let again = w.deposit(&w.keys.executors[0].1.clone(), w.spec.min_executor_bond, 0);
        assert_eq!(
            w.process(vec![again], vec![], 6 + delay)
                .map(|e| e.deposited),
            Ok(vec![ExecutorIndex(2)])
        );
    }
}
