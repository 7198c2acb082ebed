//! Execution: phalanx's sharded, parallel state transition over revm, and the provable state
//! it runs on.
//!
//! Consensus orders blocks and never executes them; this crate trails behind it, turning each
//! ordered block into a post-state root (DESIGN.md "Execution", seeds 000, 002, 003). It does
//! not depend on the consensus crate.
//!
//! * [`block`]: the state transition of a block, rule by rule; [`header`]: the header it runs
//!   under.
//! * [`changes`]: effects, the conflict rule, effects roots, applying changes to the tries.
//! * [`evm`]: one shard's transactions on revm over an overlay of the parent state.
//! * [`reader`]: the parent-state seam ([`StateReader`]), and reading straight from a trie.
//! * [`store`]: the state on disk (redb) with unfinalized blocks as in-memory overlays.
//! * [`domain`]: the execution-domain seam ([`domain::ExecutionDomain`]) and the meta state root.
//! * [`witness`]: witnesses and stateless re-execution; [`conflict`]: conflict proofs.
//! * [`statetest`]: Ethereum's GeneralStateTests through this state layer.
//! * [`rpc`]: Ethereum JSON-RPC conventions shared by the full node and the light client.

pub mod block;
pub mod call;
pub mod changes;
pub mod conflict;
pub mod domain;
pub mod error;
pub mod evm;
pub mod header;
pub mod history;
pub mod proof;
pub mod reader;
pub mod receipts;
pub mod rpc;
pub mod statetest;
pub mod store;
pub mod witness;

pub use error::{ExecError, StateError};
pub use reader::{StateReader, TrieStateReader};
