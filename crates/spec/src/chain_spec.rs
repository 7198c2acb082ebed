//! Protocol constants, in named presets.
//!
//! A preset is a TOML file (see `presets/` in this crate) with every field present; unknown
//! fields are refused, so a typo is an error rather than a silently ignored setting.

use serde::{Deserialize, Serialize};

use phalanx_types::Root;
use phalanx_types::limits::{MAX_SHARDS, MAX_TRANSACTIONS_PER_SHARD};
use phalanx_types::signing::SigningContext;

const DEVNET: &str = include_str!("../presets/devnet.toml");
const MINIMAL: &str = include_str!("../presets/minimal.toml");

/// Names of the built-in presets.
pub const PRESETS: &[&str] = &["devnet", "minimal"];

/// A chain spec that could not be loaded or is inconsistent.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// No preset by that name.
    #[error(
        "unknown chain spec preset {0:?}; known presets: devnet, minimal (or pass a TOML file)"
    )]
    UnknownPreset(String),
    /// Could not read the file.
    #[error("cannot read chain spec {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML, or a field is missing, unknown or of the wrong type.
    #[error("chain spec {origin} is not valid: {message}")]
    Parse {
        /// Preset name or file path.
        origin: String,
        /// The TOML error, naming the field.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("chain spec field `{field}` = {value}: {rule}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// The rule it breaks.
        rule: &'static str,
    },
}

/// Every protocol constant of a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSpec {
    /// Preset or chain name.
    pub name: String,
    /// Fork version, part of every signing domain (4 bytes, hex).
    pub fork_version: alloy_primitives::FixedBytes<4>,
    /// EVM chain id (EIP-155), checked on every transaction.
    pub chain_id: u64,

    /// Length of a slot.
    pub slot_seconds: u64,
    /// Slots per epoch.
    pub slots_per_epoch: u64,

    /// Shards in a block (at most 64).
    pub shards_per_block: u64,
    /// Operational limit of transactions per shard (at most 16,384).
    pub max_transactions_per_shard: u64,
    /// Operational limit of a whole encoded block.
    pub max_block_bytes: u64,
    /// Gas limit of a block (sum over shards).
    pub block_gas_limit: u64,
    /// Gas limit of one shard.
    pub shard_gas_limit: u64,

    /// Least stake of a validator, in Gwei.
    pub min_validator_stake: u64,
    /// Least bond of a producer, in Gwei.
    pub min_producer_bond: u64,
    /// Least bond of an executor, in Gwei.
    pub min_executor_bond: u64,
    /// Epochs an executor waits between asking to withdraw and getting its bond back.
    pub executor_withdrawal_delay_epochs: u64,

    /// Servers of a clustered node that execute each shard.
    pub replication: u64,
    /// Blocks before a cross-domain receipt can be consumed.
    pub cross_domain_delay: u64,
    /// Share of claiming stake (basis points) whose disagreement makes a light client
    /// re-execute.
    pub disagreement_threshold_bps: u64,
}

impl ChainSpec {
    /// A built-in preset by name.
    pub fn preset(name: &str) -> Result<Self, SpecError> {
        let text = match name {
            "devnet" => DEVNET,
            "minimal" => MINIMAL,
            other => return Err(SpecError::UnknownPreset(other.to_owned())),
        };
        Self::from_toml(text, name)
    }

    /// A preset name or a path to a TOML file.
    pub fn load(name_or_path: &str) -> Result<Self, SpecError> {
        if PRESETS.contains(&name_or_path) {
            return Self::preset(name_or_path);
        }
        let path = std::path::Path::new(name_or_path);
        if !path.exists() {
            return Err(SpecError::UnknownPreset(name_or_path.to_owned()));
        }
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Io {
            path: name_or_path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, name_or_path)
    }

    /// Parses and checks TOML; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, SpecError> {
        let spec: ChainSpec = toml::from_str(text).map_err(|e| SpecError::Parse {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        spec.validate()?;
        Ok(spec)
    }

    /// TOML text of this spec.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }

    /// Checks ranges and consistency.
    pub fn validate(&self) -> Result<(), SpecError> {
        fn invalid(field: &'static str, value: impl ToString, rule: &'static str) -> SpecError {
            SpecError::Invalid {
                field,
                value: value.to_string(),
                rule,
            }
        }
        if self.slot_seconds == 0 {
            return Err(invalid(
                "slot_seconds",
                self.slot_seconds,
                "must be at least 1",
            ));
        }
        if self.slots_per_epoch == 0 {
            return Err(invalid(
                "slots_per_epoch",
                self.slots_per_epoch,
                "must be at least 1",
            ));
        }
        if self.shards_per_block == 0 || self.shards_per_block > MAX_SHARDS as u64 {
            return Err(invalid(
                "shards_per_block",
                self.shards_per_block,
                "must be 1..=64",
            ));
        }
        if self.max_transactions_per_shard == 0
            || self.max_transactions_per_shard > MAX_TRANSACTIONS_PER_SHARD as u64
        {
            return Err(invalid(
                "max_transactions_per_shard",
                self.max_transactions_per_shard,
                "must be 1..=16384",
            ));
        }
        if self.shard_gas_limit == 0 || self.shard_gas_limit > self.block_gas_limit {
            return Err(invalid(
                "shard_gas_limit",
                self.shard_gas_limit,
                "must be positive and at most block_gas_limit",
            ));
        }
        if self.replication == 0 {
            return Err(invalid(
                "replication",
                self.replication,
                "must be at least 1",
            ));
        }
        if self.disagreement_threshold_bps > 10_000 {
            return Err(invalid(
                "disagreement_threshold_bps",
                self.disagreement_threshold_bps,
                "is in basis points: at most 10000",
            ));
        }
        if self.chain_id == 0 {
            return Err(invalid(
                "chain_id",
                self.chain_id,
                "must be non-zero (EIP-155)",
            ));
        }
        Ok(())
    }

    /// The signing context of a chain with this spec and genesis validators root.
    pub fn signing_context(&self, genesis_validators_root: Root) -> SigningContext {
        SigningContext {
            fork_version: self.fork_version.0,
            genesis_validators_root,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devnet_toml() -> String {
        ChainSpec::preset("devnet").unwrap().to_toml()
    }

    #[test]
    fn presets_load_and_validate() {
        for name in PRESETS {
            let spec = ChainSpec::preset(name).unwrap();
            assert_eq!(&spec.name, name);
            let again = ChainSpec::from_toml(&spec.to_toml(), "roundtrip").unwrap();
            assert_eq!(again, spec);
        }
        let devnet = ChainSpec::preset("devnet").unwrap();
        assert_eq!((devnet.slot_seconds, devnet.slots_per_epoch), (2, 8));
    }

    #[test]
    fn bad_specs_name_the_field() {
        let text = devnet_toml().replace("slots_per_epoch = 8", "slots_per_epoch = 0");
        let err = ChainSpec::from_toml(&text, "t").unwrap_err();
        assert!(err.to_string().contains("slots_per_epoch"), "{err}");

        let text = format!("{}\nslot_secs = 3\n", devnet_toml());
        let err = ChainSpec::from_toml(&text, "t").unwrap_err();
        assert!(err.to_string().contains("slot_secs"), "{err}");

        let text = devnet_toml().replace("shards_per_block = 8", "shards_per_block = 65");
        assert!(matches!(
            ChainSpec::from_toml(&text, "t"),
            Err(SpecError::Invalid {
                field: "shards_per_block",
                ..
            })
        ));

        assert!(matches!(
            ChainSpec::load("no-such-preset"),
            Err(SpecError::UnknownPreset(_))
        ));
    }
}
