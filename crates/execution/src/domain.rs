//! The execution-domain seam (seed 002: several execution models on the same ordered data).
//!
//! Consensus hands every domain the same ordered blocks; each domain keeps its own state and
//! reports a post-state root per block. The *meta state root* commits to every domain's
//! root, `hash_tree_root(List[DomainRoot])` in domain order, so one claim can cover all
//! domains. Domain 0 is the EVM ([`EvmDomain`]); a second model implements the same trait.
//! Messages between domains (receipts usable `CROSS_DOMAIN_DELAY` blocks later) are not
//! built yet: with one domain there is nobody to send them to.

use alloy_primitives::{B256, Bytes};
use ssz_derive::{Decode, Encode};
use ssz_types::VariableList;
use tree_hash::TreeHash;
use tree_hash_derive::TreeHash;
use typenum::U256 as MaxDomains;

use crate::block::BlockEnv;
use crate::error::ExecError;
use crate::store::StateStore;

/// Id of the EVM domain.
pub const EVM_DOMAIN: u64 = 0;

/// What a domain reports about a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainOutcome {
    /// State root after the block.
    pub post_state_root: B256,
    /// Effects root of each shard.
    pub effects_roots: Vec<B256>,
    /// Why the block is void in this domain, if it is.
    pub void: Option<String>,
    /// Gas (or the domain's unit of work) used.
    pub gas_used: u64,
}

/// An execution model over phalanx's ordered blocks.
///
/// Rules every implementation obeys: `execute` is deterministic in `(parent state, env,
/// shards)`; it never panics on block content (bad transactions are skipped, bad blocks are
/// void) and errors only when its own state is unavailable; `execute` of an already executed
/// block returns the same outcome; `finalize(b)` makes `b`'s state durable and may forget
/// every block that does not descend from `b`.
pub trait ExecutionDomain: Send + Sync {
    /// The domain's id.
    fn id(&self) -> u64;
    /// Executes `block` on the state after `parent`.
    fn execute(
        &self,
        parent: B256,
        block: B256,
        env: &BlockEnv,
        shards: &[Vec<Bytes>],
    ) -> Result<DomainOutcome, ExecError>;
    /// Makes `block` final.
    fn finalize(&self, block: B256) -> Result<(), ExecError>;
    /// The state root after `block`, if held.
    fn state_root(&self, block: B256) -> Result<Option<B256>, ExecError>;
}

/// Domain 0: the EVM over a [`StateStore`].
pub struct EvmDomain {
    store: StateStore,
}

impl EvmDomain {
    /// The EVM domain over `store`.
    pub fn new(store: StateStore) -> Self {
        Self { store }
    }

    /// The underlying state (reads, proofs).
    pub fn store(&self) -> &StateStore {
        &self.store
    }
}

impl ExecutionDomain for EvmDomain {
    fn id(&self) -> u64 {
        EVM_DOMAIN
    }

    fn execute(
        &self,
        parent: B256,
        block: B256,
        env: &BlockEnv,
        shards: &[Vec<Bytes>],
    ) -> Result<DomainOutcome, ExecError> {
        let result = self.store.execute(parent, block, env, shards)?;
        Ok(DomainOutcome {
            post_state_root: result.post_state_root,
            effects_roots: result.effects_roots(),
            void: result.void.as_ref().map(ToString::to_string),
            gas_used: result.gas_used(),
        })
    }

    fn finalize(&self, block: B256) -> Result<(), ExecError> {
        Ok(self.store.finalize(block)?)
    }

    fn state_root(&self, block: B256) -> Result<Option<B256>, ExecError> {
        Ok(self.store.state_root(block)?)
    }
}

/// One domain's root inside the meta state root.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode, TreeHash)]
pub struct DomainRoot {
    /// Domain id.
    pub domain: u64,
    /// Its state root.
    pub root: B256,
}

/// The meta state root over every domain's root (sorted by domain id).
pub fn meta_state_root(roots: &[(u64, B256)]) -> B256 {
    let mut sorted: Vec<DomainRoot> = roots
        .iter()
        .map(|(domain, root)| DomainRoot {
            domain: *domain,
            root: *root,
        })
        .collect();
    sorted.sort_by_key(|d| d.domain);
    VariableList::<DomainRoot, MaxDomains>::new(sorted)
        .map(|l| l.tree_hash_root())
        .unwrap_or_default()
}
