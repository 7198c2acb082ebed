//! The phalanx block producer.
//!
//! * [`mempool`]: pending transactions by sender and nonce, decoded and sender-recovered once.
//! * [`packing`]: splits the pool into a block's shards so the conflict rule cannot void it:
//!   no two shards share a sender, and no two shards touch an address the producer knows
//!   will be written.
//!
//! Block building and signing on declarations, and producer reputation, land with the rest
//! of issue #4.

pub mod mempool;
pub mod packing;
