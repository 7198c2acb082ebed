//! The genesis file: a chain's spec, its first registries and its EVM state.
//!
//! `genesis.json` holds:
//!
//! ```json
//! {
//!   "spec": { ...every ChainSpec field... },
//!   "genesis_time": 0,
//!   "validators": [{"pubkey": "0x…", "amount": 32000000000, "reward_address": "0x…"}],
//!   "producers":  [ same shape, amount = bond ],
//!   "executors":  [ same shape, amount = bond ],
//!   "alloc": { "0x…": {"balance": "0x…", "nonce": "0x0", "code": "0x…", "storage": {…}} }
//! }
//! ```
//!
//! `alloc` uses geth's genesis-alloc format (alloy-genesis), so existing tooling can write it.
//! `genesis_time` is Unix seconds; `0` means "unset": the process that starts the chain
//! (e.g. `phalanx devnet`) sets it to its start time.
//!
//! The *genesis validators root* is `hash_tree_root(List[RegistryEntry, 2^40])` of the
//! validators, as Ethereum's; it enters every signing domain, so signatures from one genesis
//! are worthless on another.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use alloy_genesis::GenesisAccount;
use alloy_primitives::Address;
use phalanx_crypto::PublicKey;
use phalanx_types::limits::ValidatorRegistryLimit;
use phalanx_types::signing::SigningContext;
use phalanx_types::{RegistryEntry, Root};
use serde::{Deserialize, Serialize};
use ssz_types::VariableList;
use tree_hash::TreeHash;

use crate::chain_spec::{ChainSpec, SpecError};

/// A genesis file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// Could not read or write a file.
    #[error("{action} {path}: {source}")]
    Io {
        /// `cannot read`, `cannot write`, …
        action: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not genesis JSON.
    #[error("{path} is not a valid genesis file: {source}")]
    Json {
        /// The file.
        path: String,
        /// Where and why.
        source: serde_json::Error,
    },
    /// The embedded spec is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A registry is inconsistent.
    #[error("genesis {registry}[{index}]: {problem}")]
    Registry {
        /// `validators`, `producers` or `executors`.
        registry: &'static str,
        /// Position in the list.
        index: usize,
        /// What is wrong.
        problem: String,
    },
    /// An EVM allocation is not allowed.
    #[error("genesis alloc {address}: {problem}")]
    Alloc {
        /// The account.
        address: Address,
        /// What is wrong.
        problem: String,
    },
    /// No validators at all.
    #[error("genesis has no validators: a chain needs at least one")]
    NoValidators,
    /// Refusing to overwrite.
    #[error("{0} already exists; pass --force to overwrite it")]
    Exists(String),
}

/// A chain's starting point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    /// Protocol constants.
    pub spec: ChainSpec,
    /// Unix time of slot 0; 0 = set by whoever starts the chain.
    pub genesis_time: u64,
    /// Validators: key, stake, reward address.
    pub validators: Vec<RegistryEntryJson>,
    /// Block producers: key, bond, reward address.
    pub producers: Vec<RegistryEntryJson>,
    /// Bonded executors: key, bond, reward address.
    pub executors: Vec<RegistryEntryJson>,
    /// EVM accounts at genesis.
    pub alloc: BTreeMap<Address, GenesisAccount>,
}

/// JSON form of a [`RegistryEntry`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryEntryJson {
    /// BLS public key.
    pub pubkey: phalanx_crypto::PublicKeyBytes,
    /// Stake or bond in Gwei.
    pub amount: u64,
    /// Reward address.
    pub reward_address: Address,
}

impl From<&RegistryEntryJson> for RegistryEntry {
    fn from(e: &RegistryEntryJson) -> Self {
        RegistryEntry {
            pubkey: e.pubkey,
            amount: e.amount,
            reward_address: e.reward_address,
        }
    }
}

impl Genesis {
    /// Reads and checks a genesis file.
    pub fn load(path: &Path) -> Result<Self, GenesisError> {
        let text = std::fs::read_to_string(path).map_err(|source| GenesisError::Io {
            action: "cannot read genesis file",
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// Parses and checks genesis JSON; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Self, GenesisError> {
        let genesis: Genesis = serde_json::from_str(text).map_err(|source| GenesisError::Json {
            path: origin.to_owned(),
            source,
        })?;
        genesis.validate()?;
        Ok(genesis)
    }

    /// Pretty JSON with a trailing newline (deterministic: maps are ordered).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Checks the spec and the registries: every key a valid BLS public key, unique within its
    /// registry, and every amount at least the spec's minimum.
    pub fn validate(&self) -> Result<(), GenesisError> {
        self.spec.validate()?;
        if self.validators.is_empty() {
            return Err(GenesisError::NoValidators);
        }
        let registries = [
            (
                "validators",
                &self.validators,
                self.spec.min_validator_stake,
            ),
            ("producers", &self.producers, self.spec.min_producer_bond),
            ("executors", &self.executors, self.spec.min_executor_bond),
        ];
        for (registry, entries, minimum) in registries {
            let mut seen = HashSet::new();
            for (index, entry) in entries.iter().enumerate() {
                let problem = |problem: String| GenesisError::Registry {
                    registry,
                    index,
                    problem,
                };
                PublicKey::try_from(&entry.pubkey).map_err(|e| problem(e.to_string()))?;
                if !seen.insert(entry.pubkey) {
                    return Err(problem(format!("duplicate public key {}", entry.pubkey)));
                }
                if entry.amount < minimum {
                    return Err(problem(format!(
                        "amount {} Gwei is below the minimum of {minimum} Gwei",
                        entry.amount
                    )));
                }
            }
        }
        for (address, account) in &self.alloc {
            // EIP-7610: an account with storage but no code and a zero nonce makes contract
            // creation at its address a collision, a rule revm does not model; such accounts
            // can only come from genesis, so genesis refuses them.
            let has_storage = account
                .storage
                .as_ref()
                .is_some_and(|s| s.values().any(|v| !v.is_zero()));
            let has_code = account.code.as_ref().is_some_and(|c| !c.is_empty());
            if has_storage && !has_code && account.nonce.unwrap_or(0) == 0 {
                return Err(GenesisError::Alloc {
                    address: *address,
                    problem: "has storage but no code and a zero nonce (EIP-7610); give it code or a nonce".into(),
                });
            }
        }
        Ok(())
    }

    /// `hash_tree_root` of the validator registry.
    pub fn validators_root(&self) -> Root {
        let entries: Vec<RegistryEntry> = self.validators.iter().map(RegistryEntry::from).collect();
        // More than 2^40 validators cannot be held in memory, so the limit cannot be hit.
        VariableList::<RegistryEntry, ValidatorRegistryLimit>::new(entries)
            .map(|list| list.tree_hash_root())
            .unwrap_or_default()
    }

    /// The signing context of this chain.
    pub fn signing_context(&self) -> SigningContext {
        self.spec.signing_context(self.validators_root())
    }
}
