//! Executors' claims and wrong-claim proofs on the chain (seed 003), as every view runs them.
//!
//! - **Names.** Each view derives the execution header of every block it imports
//!   (`phalanx_light::headers::derive`, the rule light clients and the devnet's execution use:
//!   the parent's execution header, the RANDAO mix after the block, the genesis registry's
//!   reward addresses). Its hash is the name executors' claims give the block.
//! - **Pools.** A claim or proof submitted to the chain is checked by validator 0's node and
//!   gossiped; every node keeps the claims it heard (at most [`POOL`], lowest heights dropped
//!   first) and the proofs against executors it has not seen slashed.
//! - **Producers** put in their block the pooled claims that pass
//!   `phalanx_consensus::claims::check_place` on the declared parent (an unslashed executor's,
//!   about a block of that chain in the window, not yet on it), at most [`PER_BLOCK`], and
//!   the pooled proofs that the rules accept on that parent (a proof they refuse is dropped
//!   from the pool, since including it would make the block invalid).
//! - **Import.** `phalanx_consensus::claims::process_body` judges the block's claims and
//!   proofs against the view's ancestors before fork choice sees it; a block it refuses is
//!   invalid. Slashings apply to the view's executor registry; bounties go to the block's
//!   producer's bond.

use std::collections::HashSet;
use std::sync::Arc;

use alloy_primitives::B256;
use phalanx_consensus::claims::{
    Ancestor, BodyEffects, BodyError, CLAIM_WINDOW, ClaimError, check_place, check_signature,
    claims_on_chain, process_body,
};
use phalanx_consensus::executors::ExecutorRegistry;
use phalanx_execution::block::BlockEnv;
use phalanx_execution::header::ExecHeader;
use phalanx_execution::proof::ClaimVerifier;
use phalanx_types::{BlockBody, BlockHeader, FraudProof, Root, SignedBlock, SignedClaim};
use ssz_types::VariableList;

use super::{Msg, Sim, View};

/// Claims a node keeps in its pool.
const POOL: usize = 4096;
/// Claims a producer puts in one block.
const PER_BLOCK: usize = 128;
/// Wrong-claim proofs a producer puts in one block.
const PROOFS_PER_BLOCK: usize = 4;
/// Proofs a node keeps in its pool.
const PROOF_POOL: usize = 64;

/// What [`Sim::check_execution_ops`] found, applied once fork choice takes the block.
pub(super) struct Checked {
    exec: Option<(ExecHeader, B256)>,
    executors: Option<ExecutorRegistry>,
    effects: BodyEffects,
}

/// The execution side's verifier over `view`'s derived execution headers.
fn verifier(view: &View) -> ClaimVerifier<impl Fn(&BlockHeader) -> Option<(B256, BlockEnv)> + '_> {
    ClaimVerifier::new(move |h: &BlockHeader| {
        view.exec
            .get(&h.root())
            .map(|(header, name)| (*name, header.env()))
    })
}

/// A body carrying only `proof`: what a proof is checked in before it is pooled or included.
fn proof_body(proof: &FraudProof) -> BlockBody {
    BlockBody {
        attestations: VariableList::empty(),
        claims: VariableList::empty(),
        declaration_slashings: VariableList::empty(),
        attester_slashings: VariableList::empty(),
        fraud_proofs: VariableList::new(vec![proof.clone()]).unwrap_or_default(),
    }
}

/// The blocks before a block at `slot` whose parent is `parent`, newest first, back to
/// [`CLAIM_WINDOW`] slots before it, as `view` holds them.
fn ancestors(view: &View, parent: Root, slot: u64) -> Vec<Ancestor<'_>> {
    let mut out = Vec::new();
    let mut cursor = parent;
    while let (Some(block), Some((header, name))) =
        (view.blocks.get(&cursor), view.exec.get(&cursor))
    {
        if block.header.message.slot.0.saturating_add(CLAIM_WINDOW) < slot {
            break;
        }
        out.push(Ancestor {
            root: cursor,
            header: &block.header.message,
            body: &block.body,
            height: header.number,
            name: *name,
        });
        cursor = block.header.message.parent_root;
    }
    out
}

impl Sim {
    /// The execution header of `block` (its parent already imported) and its hash.
    fn derive_exec(
        &self,
        node: usize,
        block: &SignedBlock,
        mix: B256,
    ) -> Option<(ExecHeader, B256)> {
        let (parent, parent_hash) = self.views[node]
            .exec
            .get(&block.header.message.parent_root)?;
        let header = phalanx_light::headers::derive(
            &block.header.message,
            mix,
            (parent.number, *parent_hash),
            &self.spec,
            self.genesis_time,
            &self.exec_registry,
        );
        let hash = header.hash();
        Some((header, hash))
    }

    /// Block import's check of `block`'s claims and wrong-claim proofs in `node`'s view
    /// (`mix`: the RANDAO mix after it). Nothing changes until [`Sim::apply_execution_ops`].
    pub(super) fn check_execution_ops(
        &self,
        node: usize,
        block: &SignedBlock,
        mix: B256,
    ) -> Result<Checked, BodyError> {
        let view = &self.views[node];
        // `None` only for a parent without a derived header, which import order rules out
        // (parents first); such a block would merely be unnamed for claims.
        let exec = self.derive_exec(node, block, mix);
        if block.body.claims.is_empty() && block.body.fraud_proofs.is_empty() {
            return Ok(Checked {
                exec,
                executors: None,
                effects: BodyEffects::default(),
            });
        }
        let ancestors = ancestors(
            view,
            block.header.message.parent_root,
            block.header.message.slot.0,
        );
        let mut executors = view.executors.clone();
        let effects = process_body(
            &block.body,
            &ancestors,
            &mut executors,
            &self.signing,
            &verifier(view),
        )?;
        Ok(Checked {
            exec,
            executors: Some(executors),
            effects,
        })
    }

    /// Applies what [`Sim::check_execution_ops`] found, once fork choice has the block.
    pub(super) fn apply_execution_ops(
        &mut self,
        node: usize,
        root: Root,
        block: &SignedBlock,
        checked: Checked,
    ) {
        let view = &mut self.views[node];
        if let Some(exec) = checked.exec {
            view.exec.insert(root, exec);
        }
        if let Some(executors) = checked.executors {
            view.executors = executors;
        }
        let producer = block.header.message.producer;
        let mut bounties = 0;
        for (executor, bounty) in &checked.effects.slashed {
            bounties += view.registry.credit_producer(producer, *bounty);
            if node == 0 {
                tracing::info!(
                    executor = executor.0,
                    bounty_gwei = bounty,
                    producer = producer.0,
                    slot = block.header.message.slot.0,
                    "chain: executor slashed by a wrong-claim proof"
                );
            }
        }
        if !checked.effects.slashed.is_empty() {
            let executors = &view.executors;
            view.fraud_pool.retain(|p| {
                executors
                    .get(phalanx_types::ExecutorIndex(p.accused))
                    .is_some_and(|e| !e.slashed)
            });
        }
        if node == 0 {
            self.claims_on_chain += checked.effects.claims as u64;
            self.bounties_gwei += bounties;
        }
    }

    /// The claims and proofs producer `node` puts in its block at `slot` on `parent`.
    pub(super) fn pick_execution_ops(
        &mut self,
        node: usize,
        parent: Root,
        slot: u64,
    ) -> (Vec<SignedClaim>, Vec<FraudProof>) {
        let view = &self.views[node];
        if view.claim_pool.is_empty() && view.fraud_pool.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let ancestors = ancestors(view, parent, slot);
        let mut seen: HashSet<(u64, u64)> = claims_on_chain(&ancestors);
        let mut claims = Vec::new();
        for claim in view.claim_pool.values() {
            if claims.len() >= PER_BLOCK {
                break;
            }
            let active = view
                .executors
                .get(claim.executor)
                .is_some_and(|e| !e.slashed);
            if active && check_place(claim, &ancestors, &seen).is_ok() {
                seen.insert((claim.executor.0, claim.message.height));
                claims.push(claim.clone());
            }
        }
        let mut proofs = Vec::new();
        let mut refused = Vec::new();
        let verifier = verifier(view);
        for (i, proof) in view.fraud_pool.iter().enumerate() {
            if proofs.len() >= PROOFS_PER_BLOCK {
                break;
            }
            let mut executors = view.executors.clone();
            let body = proof_body(proof);
            match process_body(&body, &ancestors, &mut executors, &self.signing, &verifier) {
                Ok(effects) if !effects.slashed.is_empty() => proofs.push(proof.clone()),
                Ok(_) => refused.push(i),
                Err(e) => {
                    tracing::debug!(error = %e, "chain: pooled wrong-claim proof dropped");
                    refused.push(i);
                }
            }
        }
        drop(verifier);
        let pool = &mut self.views[node].fraud_pool;
        for i in refused.into_iter().rev() {
            pool.remove(i);
        }
        (claims, proofs)
    }

    /// A claim heard by `node`: pooled if a known executor signed it.
    pub(super) fn on_claim(&mut self, node: usize, claim: &SignedClaim) {
        let key = (claim.message.height, claim.executor.0);
        if self.views[node].claim_pool.contains_key(&key) {
            return;
        }
        let Some(pubkey) = self.views[node]
            .executors
            .get(claim.executor)
            .map(|e| e.pubkey)
        else {
            return;
        };
        if !self.verify(&claim.message, &pubkey, &claim.signature) {
            return;
        }
        let pool = &mut self.views[node].claim_pool;
        pool.insert(key, claim.clone());
        while pool.len() > POOL {
            pool.pop_first();
        }
    }

    /// A wrong-claim proof heard by `node`: pooled unless the accused is slashed here (it is
    /// verified when a producer considers it).
    pub(super) fn on_fraud_proof(&mut self, node: usize, proof: &FraudProof) {
        let view = &mut self.views[node];
        let live = view
            .executors
            .get(phalanx_types::ExecutorIndex(proof.accused))
            .is_some_and(|e| !e.slashed);
        if live && !view.fraud_pool.contains(proof) && view.fraud_pool.len() < PROOF_POOL {
            view.fraud_pool.push(proof.clone());
        }
    }

    /// [`super::LiveChain::submit_claim`].
    pub(super) fn submit_claim(&mut self, now: u64, claim: SignedClaim) -> Result<(), ClaimError> {
        let view = &self.views[0];
        check_signature(&claim, &view.executors, &self.signing)?;
        let slot = now / self.slot_ms() + 1;
        let ancestors = ancestors(view, view.fc.head(), slot);
        check_place(&claim, &ancestors, &claims_on_chain(&ancestors))?;
        if view
            .claim_pool
            .get(&(claim.message.height, claim.executor.0))
            .is_some_and(|c| *c == claim)
        {
            return Ok(());
        }
        self.gossip(now, 0, Msg::Claim(Arc::new(claim)));
        Ok(())
    }

    /// [`super::LiveChain::submit_fraud_proof`].
    pub(super) fn submit_fraud_proof(
        &mut self,
        now: u64,
        proof: FraudProof,
    ) -> Result<bool, BodyError> {
        let view = &self.views[0];
        let slot = now / self.slot_ms() + 1;
        let ancestors = ancestors(view, view.fc.head(), slot);
        let body = proof_body(&proof);
        let mut executors = view.executors.clone();
        let effects = process_body(
            &body,
            &ancestors,
            &mut executors,
            &self.signing,
            &verifier(view),
        )?;
        if effects.slashed.is_empty() {
            return Ok(false);
        }
        self.gossip(now, 0, Msg::Fraud(Arc::new(proof)));
        Ok(true)
    }
}
