//! The phalanx block producer.
//!
//! * [`mempool`]: pending transactions by sender and nonce, decoded and sender-recovered once.
//! * [`packing`]: splits the pool into a block's shards so the conflict rule cannot void it:
//!   no two shards share a sender, and no two shards touch an address the producer knows
//!   will be written.
//!
//! The devnet's producers build their blocks with these (`phalanx-devnet`'s pool); producer
//! reputation, which validators keep, is in `phalanx-validator`. There is no producer process
//! of its own yet.

pub mod mempool;
pub mod packing;
