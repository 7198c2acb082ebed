//! Integration tests of `phalanx-validator`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may panic

mod duties;
mod interchange;
mod properties;
