//! The distributed validator: one validator key held by `n` operators as an `m`-of-`n`
//! threshold BLS key made by a ceremony with no trusted dealer, agreeing on every duty by BFT
//! consensus and never signing anything slashable (DESIGN.md "Distributed validator", seeds 001
//! and 004).
//!
//! # Layout
//!
//! - [`threshold`]: Shamir shares, Feldman commitments, Lagrange recovery over blst.
//! - [`identity`]: operators' ed25519 identity keys (the keys libp2p authenticates).
//! - [`lock`]: the cluster lock file and its schema.
//! - [`create`]: dealt test clusters (`phalanx dv create`) and reading operators' files.
//! - [`dkg`]: the Joint-Feldman ceremony and resharing, sans-IO; [`ceremony`] runs it between
//!   processes over the network.
//! - [`consensus`]: the [`consensus::DutyConsensus`] seam; [`qbft`] (default) and
//!   [`tendermint`] implement it.
//! - [`member`]: a member's duty pipeline, sans-IO; [`run`] drives it as a process.
//! - [`node`]: the link to the node's validator API — the live duty stream in, group
//!   signatures out; [`duties`]: a wall-clock duty schedule for benchmarks and nodeless runs.
//! - [`ballot`]: the secret ballot that approves membership changes; [`vote`] runs it between
//!   processes.

pub mod ballot;
pub mod ceremony;
pub mod consensus;
pub mod create;
pub mod dkg;
pub mod duties;
pub mod identity;
pub mod lock;
pub mod member;
pub mod node;
pub mod qbft;
pub mod run;
pub mod tendermint;
pub mod threshold;
pub mod vote;
