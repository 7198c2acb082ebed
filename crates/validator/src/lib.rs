//! The phalanx validator client library.
//!
//! * [`slashing_protection`]: the database that stands between a validator key and every
//!   signature it makes, importing and exporting the EIP-3076 interchange format.
//!
//! * [`reputation`]: producers' records (fee yield, void blocks, missed slots) and the choice
//!   of a producer per slot, with self-production when none qualifies.
//!
//! Duties, declarations and attestations, and the role's `run(config, shutdown)`, land with
//! the rest of issue #4.

pub mod reputation;
pub mod slashing_protection;
