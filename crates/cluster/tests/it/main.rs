#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may panic

mod equivocation;
mod server;
mod store;
mod sync;
