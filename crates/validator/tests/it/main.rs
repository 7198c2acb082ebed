//! Integration tests of `phalanx-validator`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may panic

mod interchange;
mod properties;
