//! The chain spec and genesis of a phalanx chain.
//!
//! * [`ChainSpec`]: every protocol constant, loaded from a named preset (`devnet`,
//!   `minimal`) or a TOML file, and checked so a bad value is an error naming the field.
//! * [`Genesis`]: the first validator, producer and executor registries and the EVM
//!   allocations, as one JSON file that embeds its chain spec.
//! * [`devnet`]: a deterministic genesis and every key behind it, from a seed.

pub mod chain_spec;
pub mod devnet;
pub mod genesis;

pub use chain_spec::{ChainSpec, SpecError};
pub use genesis::{Genesis, GenesisError};
