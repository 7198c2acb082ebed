//! The phalanx validator client library.
//!
//! * [`slashing_protection`]: the database that stands between a validator key and every
//!   signature it makes, importing and exporting the EIP-3076 interchange format.
//!
//! * [`duties`]: the slots a validator proposes and attests at in an epoch.
//! * [`reputation`]: producers' records (fee yield, void blocks, missed slots) and the choice
//!   of a producer per slot, with self-production when none qualifies.
//!
//! The role's `run(config, shutdown)` (signing over a real network and the Beacon-style API)
//! lands with the network.

pub mod duties;
pub mod reputation;
pub mod slashing_protection;
