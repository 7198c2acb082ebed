//! The devnet's integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod devnet;
mod light;
mod store;
