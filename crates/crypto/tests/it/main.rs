//! Integration tests of `phalanx-crypto` against outside vectors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may panic

mod bls_vectors;
mod decoders;
mod eip2335;
