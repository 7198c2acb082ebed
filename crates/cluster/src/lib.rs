//! The clustered full node (DESIGN.md "Clustered full node", seed 000).
//!
//! * [`store`]: the coordination-store seam; [`embedded`] and [`etcd`] implement it.

pub mod embedded;
pub mod etcd;
pub mod store;
pub mod testing;

pub use store::{CoordinationStore, Created, LeaseId, StoreError};
