//! The clustered full node (DESIGN.md "Clustered full node", seed 000).
//!
//! * [`store`]: the coordination-store seam; [`embedded`] and [`etcd`] implement it.
//! * [`ownership`]: shard ranges, responsible servers, takeover.
//! * [`wire`]: headers, shards, outcomes and requests on the network, and their topics.
//! * [`server`]: one server of a node, rule by rule.
//! * [`follow`]: following the consensus chain from a serving node: checked, final headers
//!   for the servers.
//! * [`chain`]: following the consensus chain from gossip (blocks, attestations, ancestors by
//!   request): the same checks, no serving node's API.
//! * [`feed`]: a block feed publishing a deterministic load (simulator, benchmark, tests).
//! * [`node`]: one server as a process (`phalanx node`): files, network, metrics.
//! * [`rpc`]: a server's JSON-RPC endpoint: state reads from its replica, history from the
//!   node's servers ([`lookup`]).
//! * [`load`]: a deterministic transfer load (simulator, benchmark, tests).
//! * [`testing`]: a real etcd cluster on loopback for tests and benchmarks.

pub mod chain;
pub mod embedded;
pub mod equivocation;
pub mod etcd;
pub mod feed;
pub mod follow;
pub mod load;
pub mod lookup;
pub mod node;
pub mod ownership;
pub mod rpc;
pub mod server;
pub mod store;
pub mod testing;
pub mod wire;

pub use store::{CoordinationStore, Created, LeaseId, StoreError};
