//! Integration tests of `phalanx-types`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may panic

mod conformance;
mod fixtures;
mod roundtrip;
mod transaction;
