//! Integration tests of `phalanx-sim`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may panic

mod chain;
mod cluster;
mod light;
mod live;
