//! Integration tests of `phalanx-execution`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may panic

mod block;
mod call;
mod proof;
mod statetests;
mod store;
mod util;
mod witness;
