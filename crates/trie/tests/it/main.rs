//! Integration tests of `phalanx-trie`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may panic

mod properties;
mod vectors;
