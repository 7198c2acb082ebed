//! Deterministic simulators of the phalanx protocol.
//!
//! * [`chain`]: validators, producers and the chain — proposals by declaration, blocks,
//!   attestations, LMD-GHOST, Casper FFG, slashing — on a virtual clock and an in-process
//!   network with seeded delay, loss and partitions, with equivocating validators.
//! * [`dv`]: a distributed validator cluster doing its duties — QBFT, slashing protection,
//!   partial signatures, recovery — with crashed, byzantine and failover members.
//! * [`cluster`]: the servers of a clustered full node executing a load under crashes,
//!   takeovers and a corrupting server (tokio's paused clock, one thread).
//!
//! Everything is driven by one seeded random source and one event queue, so a run is a pure
//! function of its configuration: the same flags print the same result.

pub mod chain;
pub mod cluster;
pub mod dv;
pub mod light;
mod net;
