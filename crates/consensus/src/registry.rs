//! Validators and producers, from genesis.
//!
//! Keys are parsed (KeyValidate) once here, so signature checks never re-decompress them.

use alloy_primitives::Address;
use phalanx_crypto::{PublicKey, PublicKeyBytes};
use phalanx_spec::Genesis;
use phalanx_types::{Gwei, ProducerIndex, ValidatorIndex};

/// A slashed validator loses `stake / SLASHING_PENALTY_QUOTIENT` at once (Ethereum's
/// minimum slashing penalty in Bellatrix is 1/32), then is ejected.
pub const SLASHING_PENALTY_QUOTIENT: u64 = 32;

/// A genesis whose registry cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// A key is not a valid BLS public key.
    #[error("{role} {index} has an invalid public key: {reason}")]
    BadKey {
        /// `validator` or `producer`.
        role: &'static str,
        /// Position.
        index: usize,
        /// Why.
        reason: String,
    },
    /// No validator has stake.
    #[error("the validator registry has no stake")]
    NoStake,
}

/// A validator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validator {
    /// Its key.
    pub pubkey: PublicKey,
    /// Stake, in Gwei.
    pub stake: Gwei,
    /// Where rewards go.
    pub reward_address: Address,
    /// Slashed validators have no weight and never propose.
    pub slashed: bool,
}

/// A block producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Producer {
    /// Its key.
    pub pubkey: PublicKey,
    /// Bond, in Gwei.
    pub bond: Gwei,
    /// Where its share of fees goes.
    pub reward_address: Address,
    /// A slashed producer's blocks are invalid.
    pub slashed: bool,
}

/// The validator and producer registries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    validators: Vec<Validator>,
    producers: Vec<Producer>,
}

fn parse(
    role: &'static str,
    index: usize,
    bytes: &PublicKeyBytes,
) -> Result<PublicKey, RegistryError> {
    PublicKey::try_from(bytes).map_err(|e| RegistryError::BadKey {
        role,
        index,
        reason: e.to_string(),
    })
}

impl Registry {
    /// The registries of a genesis.
    pub fn from_genesis(genesis: &Genesis) -> Result<Self, RegistryError> {
        let validators = genesis
            .validators
            .iter()
            .enumerate()
            .map(|(i, v)| {
                Ok(Validator {
                    pubkey: parse("validator", i, &v.pubkey)?,
                    stake: v.amount,
                    reward_address: v.reward_address,
                    slashed: false,
                })
            })
            .collect::<Result<Vec<_>, RegistryError>>()?;
        let producers = genesis
            .producers
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Ok(Producer {
                    pubkey: parse("producer", i, &p.pubkey)?,
                    bond: p.amount,
                    reward_address: p.reward_address,
                    slashed: false,
                })
            })
            .collect::<Result<Vec<_>, RegistryError>>()?;
        let registry = Self {
            validators,
            producers,
        };
        if registry.total_stake() == 0 {
            return Err(RegistryError::NoStake);
        }
        Ok(registry)
    }

    /// A validator by index.
    pub fn validator(&self, index: ValidatorIndex) -> Option<&Validator> {
        usize::try_from(index.0)
            .ok()
            .and_then(|i| self.validators.get(i))
    }

    /// A producer by index.
    pub fn producer(&self, index: ProducerIndex) -> Option<&Producer> {
        usize::try_from(index.0)
            .ok()
            .and_then(|i| self.producers.get(i))
    }

    /// All validators, by index.
    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }

    /// Indices of the slashed validators, ascending.
    pub fn slashed_validators(&self) -> impl Iterator<Item = ValidatorIndex> + '_ {
        self.validators
            .iter()
            .enumerate()
            .filter(|(_, v)| v.slashed)
            .map(|(i, _)| ValidatorIndex(i as u64))
    }

    /// Stake of every validator that is not slashed.
    pub fn total_stake(&self) -> Gwei {
        self.validators
            .iter()
            .filter(|v| !v.slashed)
            .fold(0u64, |acc, v| acc.saturating_add(v.stake))
    }

    /// Slashes a validator: it loses `1 / SLASHING_PENALTY_QUOTIENT` of its stake at once
    /// and is ejected (no weight in fork choice or finality, no proposals). Slashing twice
    /// changes nothing more. Returns the penalty, in Gwei.
    pub fn slash_validator(&mut self, index: ValidatorIndex) -> Gwei {
        match usize::try_from(index.0)
            .ok()
            .and_then(|i| self.validators.get_mut(i))
        {
            Some(v) if !v.slashed => {
                let penalty = v.stake / SLASHING_PENALTY_QUOTIENT;
                v.stake -= penalty;
                v.slashed = true;
                penalty
            }
            _ => 0,
        }
    }

    /// Slashes a producer: its whole bond is forfeit and its blocks are invalid from now on.
    /// Returns the forfeited bond, in Gwei.
    pub fn slash_producer(&mut self, index: ProducerIndex) -> Gwei {
        match usize::try_from(index.0)
            .ok()
            .and_then(|i| self.producers.get_mut(i))
        {
            Some(p) if !p.slashed => {
                p.slashed = true;
                std::mem::take(&mut p.bond)
            }
            _ => 0,
        }
    }

    /// Debits `amount` from a producer's bond (an executor deposit it funded; the executor
    /// registry checked the funds on the block's branch). Returns what was debited.
    pub fn debit_producer(&mut self, index: ProducerIndex, amount: Gwei) -> Gwei {
        match usize::try_from(index.0)
            .ok()
            .and_then(|i| self.producers.get_mut(i))
        {
            Some(p) => {
                let taken = amount.min(p.bond);
                p.bond -= taken;
                taken
            }
            None => 0,
        }
    }

    /// Credits `amount` to a producer's bond (a bounty for a fraud proof it carried); a
    /// slashed or unknown producer gets nothing. Returns what was credited.
    pub fn credit_producer(&mut self, index: ProducerIndex, amount: Gwei) -> Gwei {
        match usize::try_from(index.0)
            .ok()
            .and_then(|i| self.producers.get_mut(i))
        {
            Some(p) if !p.slashed => {
                p.bond = p.bond.saturating_add(amount);
                amount
            }
            _ => 0,
        }
    }
}
