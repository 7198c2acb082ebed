//! Integration tests of `phalanx-consensus`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may panic

mod fork_choice;
mod fraud;
mod proposer;
mod slashing;
mod validity;
