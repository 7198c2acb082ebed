//! The phalanx validator client library.
//!
//! * [`slashing_protection`]: the database that stands between a validator key and every
//!   signature it makes, importing and exporting the EIP-3076 interchange format.
//!
//! * [`duties`]: the slots a validator proposes and attests at in an epoch.
//! * [`reputation`]: producers' records (fee yield, void blocks, missed slots) and the choice
//!   of a producer per slot, with self-production when none qualifies.
//!
//! * [`api`]: the validator API's wire types (Beacon-API style) and its client — the duty
//!   stream, submissions, genesis and spec.

pub mod api;
pub mod duties;
pub mod reputation;
pub mod slashing_protection;
