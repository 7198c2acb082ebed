//! Integration tests of `phalanx-spec`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may panic

mod decoders;
mod devnet;
