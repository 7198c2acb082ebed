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
//! - **Import.** `phalanx_consensus::claims::process_body` judges the block's claims,
//!   proofs, executor deposits and exits against the view's ancestors and **the executor
//!   registry of the block's parent** before fork choice sees it; a block it refuses is
//!   invalid. Each view keeps one registry per block (shared until something changes it), so
//!   what a losing branch did never leaks into the winning one. Bounties go to the block's
//!   producer's bond; deposits are paid from the funding producer's.
//! - **Executor operations.** Deposits and exits submitted to the chain are checked against
//!   validator 0's head and gossiped into every node's pools ([`OP_POOL`] each); a producer
//!   puts in the ones that pass on its declared parent. A pooled operation leaves the pool
//!   once the finalised registry shows it done (the key registered, the executor exiting or
//!   gone), so a block that loses fork choice does not lose it.

use std::collections::HashSet;
use std::sync::Arc;

use alloy_primitives::B256;
use phalanx_consensus::claims::{
    Ancestor, At, BodyEffects, BodyError, CLAIM_WINDOW, ClaimError, check_place, check_signature,
    claims_on_chain, process_body,
};
use phalanx_consensus::executor_ops::{self, DepositError, ExitError};
use phalanx_consensus::executors::ExecutorRegistry;
use phalanx_crypto::PublicKey;
use phalanx_execution::block::BlockEnv;
use phalanx_execution::header::ExecHeader;
use phalanx_execution::proof::ClaimVerifier;
use phalanx_types::{
    BlockBody, BlockHeader, Epoch, FraudProof, ProducerIndex, Root, SignedBlock, SignedClaim,
    SignedExecutorDeposit, SignedExecutorExit,
};
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
/// Executor deposits (and, apart, exits) a node keeps in its pool.
pub(super) const OP_POOL: usize = 64;
/// Executor deposits (and exits) a producer puts in one block.
const OPS_PER_BLOCK: usize = 16;

/// What a producer puts in its block about execution.
#[derive(Default)]
pub(super) struct ExecutionOps {
    pub claims: Vec<SignedClaim>,
    pub proofs: Vec<FraudProof>,
    pub deposits: Vec<SignedExecutorDeposit>,
    pub exits: Vec<SignedExecutorExit>,
}

/// What [`Sim::check_execution_ops`] found, applied once fork choice takes the block.
pub(super) struct Checked {
    exec: Option<(ExecHeader, B256)>,
    executors: Arc<ExecutorRegistry>,
    effects: BodyEffects,
}

/// The producers' keys, as `view` parsed them from genesis (they never change).
fn producer_key(view: &View) -> impl Fn(u64) -> Option<PublicKey> + '_ {
    |p| view.registry.producer(ProducerIndex(p)).map(|x| x.pubkey)
}

impl View {
    /// The executor registry as the chain ending at `root` left it.
    pub(super) fn executors_at(&self, root: &Root) -> &Arc<ExecutorRegistry> {
        self.ledgers.get(root).unwrap_or(&self.genesis_ledger)
    }

    /// The executor registry at this view's head.
    pub(super) fn head_executors(&self) -> &ExecutorRegistry {
        self.executors_at(&self.fc.head())
    }
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
        fraud_proofs: VariableList::new(vec![proof.clone()]).unwrap_or_default(),
        ..BlockBody::default()
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

    /// The epoch of `slot`.
    fn epoch_of(&self, slot: u64) -> Epoch {
        Epoch(slot / self.spec.slots_per_epoch.max(1))
    }

    /// Block import's check of `block`'s claims, wrong-claim proofs and executor operations in
    /// `node`'s view, on its parent's executor registry (`mix`: the RANDAO mix after it).
    /// Nothing changes until [`Sim::apply_execution_ops`].
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
        let header = &block.header.message;
        let parent = view.executors_at(&header.parent_root).clone();
        let epoch = self.epoch_of(header.slot.0);
        let body = &block.body;
        if body.claims.is_empty()
            && body.fraud_proofs.is_empty()
            && body.executor_deposits.is_empty()
            && body.executor_exits.is_empty()
            && !parent.has_release_due(epoch)
        {
            return Ok(Checked {
                exec,
                executors: parent,
                effects: BodyEffects::default(),
            });
        }
        let ancestors = ancestors(view, header.parent_root, header.slot.0);
        let mut executors = (*parent).clone();
        let keys = producer_key(view);
        let at = At {
            producer: header.producer,
            epoch,
            producer_key: &keys,
        };
        let effects = process_body(
            body,
            &at,
            &ancestors,
            &mut executors,
            &self.signing,
            &verifier(view),
        )?;
        Ok(Checked {
            exec,
            executors: Arc::new(executors),
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
        view.ledgers.insert(root, checked.executors);
        let effects = checked.effects;
        let header = &block.header.message;
        let slot = header.slot.0;
        let producer = header.producer;
        let mut bounties = 0;
        for (executor, bounty) in &effects.slashed {
            bounties += view.registry.credit_producer(producer, *bounty);
            if node == 0 {
                tracing::info!(
                    executor = executor.0,
                    bounty_gwei = bounty,
                    producer = producer.0,
                    slot,
                    "chain: executor slashed by a wrong-claim proof"
                );
            }
        }
        for d in &block.body.executor_deposits {
            view.registry
                .debit_producer(d.message.producer, d.message.amount);
        }
        if node == 0 {
            for (d, index) in block
                .body
                .executor_deposits
                .iter()
                .zip(&effects.ops.deposited)
            {
                tracing::info!(
                    executor = index.0,
                    bond_gwei = d.message.amount,
                    funded_by = d.message.producer.0,
                    slot,
                    "chain: executor deposited"
                );
            }
            for (executor, at) in &effects.ops.exited {
                tracing::info!(
                    executor = executor.0,
                    released_at_epoch = at.0,
                    slot,
                    "chain: executor exiting (weighs nothing now, slashable until released)"
                );
            }
            for r in &effects.released {
                tracing::info!(
                    executor = r.executor.0,
                    amount_gwei = r.amount,
                    reward_address = %r.reward_address,
                    slot,
                    "chain: executor bond released"
                );
            }
        }
        let head = view.executors_at(&view.fc.head()).clone();
        if !effects.slashed.is_empty() {
            let live = |i: u64| {
                head.get(phalanx_types::ExecutorIndex(i))
                    .is_some_and(|e| !e.slashed)
            };
            view.fraud_pool.retain(|p| live(p.accused));
        }
        // Operations the finalised registry shows done leave the pools.
        let done = view.executors_at(&view.fc.finalized().root).clone();
        view.deposit_pool.retain(|d| {
            PublicKey::try_from(&d.message.pubkey).is_ok_and(|k| done.index_of(&k).is_none())
        });
        view.exit_pool.retain(|x| {
            done.get(x.message.executor)
                .is_some_and(|e| e.exit_epoch.is_none() && !e.slashed)
        });
        if node == 0 {
            self.claims_on_chain += effects.claims as u64;
            self.bounties_gwei += bounties;
            self.executors_deposited += effects.ops.deposited.len() as u64;
            self.executors_exited += effects.ops.exited.len() as u64;
        }
    }

    /// The claims, proofs, deposits and exits producer `node` puts in its block at `slot` on
    /// `parent`: each checked in the order import runs them, on the parent's registry.
    pub(super) fn pick_execution_ops(
        &mut self,
        node: usize,
        parent: Root,
        slot: u64,
        producer: ProducerIndex,
    ) -> ExecutionOps {
        let epoch = self.epoch_of(slot);
        let view = &self.views[node];
        let mut out = ExecutionOps::default();
        if view.claim_pool.is_empty()
            && view.fraud_pool.is_empty()
            && view.deposit_pool.is_empty()
            && view.exit_pool.is_empty()
        {
            return out;
        }
        let mut reg = (**view.executors_at(&parent)).clone();
        executor_ops::release(&mut reg, epoch);
        let ancestors = ancestors(view, parent, slot);
        let mut seen: HashSet<(u64, u64)> = claims_on_chain(&ancestors);
        for claim in view.claim_pool.values() {
            if out.claims.len() >= PER_BLOCK {
                break;
            }
            let active = reg.get(claim.executor).is_some_and(|e| !e.slashed);
            if active && check_place(claim, &ancestors, &seen).is_ok() {
                seen.insert((claim.executor.0, claim.message.height));
                out.claims.push(claim.clone());
            }
        }
        let mut refused = Vec::new();
        let verifier = verifier(view);
        let keys = producer_key(view);
        let at = At {
            producer,
            epoch,
            producer_key: &keys,
        };
        for (i, proof) in view.fraud_pool.iter().enumerate() {
            if out.proofs.len() >= PROOFS_PER_BLOCK {
                break;
            }
            let mut trial = reg.clone();
            let body = proof_body(proof);
            match process_body(&body, &at, &ancestors, &mut trial, &self.signing, &verifier) {
                Ok(effects) if !effects.slashed.is_empty() => {
                    out.proofs.push(proof.clone());
                    reg = trial;
                }
                Ok(_) => refused.push(i),
                Err(e) => {
                    tracing::debug!(error = %e, "chain: pooled wrong-claim proof dropped");
                    refused.push(i);
                }
            }
        }
        for d in &view.deposit_pool {
            if out.deposits.len() >= OPS_PER_BLOCK {
                break;
            }
            if executor_ops::deposit(d, &mut reg, &keys, &self.signing).is_ok() {
                out.deposits.push(d.clone());
            }
        }
        for x in &view.exit_pool {
            if out.exits.len() >= OPS_PER_BLOCK {
                break;
            }
            if executor_ops::exit(x, epoch, &mut reg, &self.signing).is_ok() {
                out.exits.push(x.clone());
            }
        }
        drop(verifier);
        drop(keys);
        let pool = &mut self.views[node].fraud_pool;
        for i in refused.into_iter().rev() {
            pool.remove(i);
        }
        out
    }

    /// A claim heard by `node`: pooled if a known executor signed it.
    pub(super) fn on_claim(&mut self, node: usize, claim: &SignedClaim) {
        let key = (claim.message.height, claim.executor.0);
        if self.views[node].claim_pool.contains_key(&key) {
            return;
        }
        let Some(pubkey) = self.views[node]
            .head_executors()
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
            .head_executors()
            .get(phalanx_types::ExecutorIndex(proof.accused))
            .is_some_and(|e| !e.slashed);
        if live && !view.fraud_pool.contains(proof) && view.fraud_pool.len() < PROOF_POOL {
            view.fraud_pool.push(proof.clone());
        }
    }

    /// [`super::LiveChain::submit_claim`].
    pub(super) fn submit_claim(&mut self, now: u64, claim: SignedClaim) -> Result<(), ClaimError> {
        let view = &self.views[0];
        check_signature(&claim, view.head_executors(), &self.signing)?;
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
        let head = view.fc.head();
        let ancestors = ancestors(view, head, slot);
        let body = proof_body(&proof);
        let mut executors = (**view.executors_at(&head)).clone();
        let keys = producer_key(view);
        let at = At {
            producer: ProducerIndex(u64::MAX),
            epoch: self.epoch_of(slot),
            producer_key: &keys,
        };
        let effects = process_body(
            &body,
            &at,
            &ancestors,
            &mut executors,
            &self.signing,
            &verifier(view),
        )?;
        drop(keys);
        if effects.slashed.is_empty() {
            return Ok(false);
        }
        self.gossip(now, 0, Msg::Fraud(Arc::new(proof)));
        Ok(true)
    }

    /// [`super::LiveChain::submit_deposit`].
    pub(super) fn submit_deposit(
        &mut self,
        now: u64,
        deposit: SignedExecutorDeposit,
    ) -> Result<(), DepositError> {
        let view = &self.views[0];
        let slot = now / self.slot_ms() + 1;
        let mut reg = view.head_executors().clone();
        executor_ops::release(&mut reg, self.epoch_of(slot));
        executor_ops::deposit(&deposit, &mut reg, &producer_key(view), &self.signing)?;
        if !view.deposit_pool.contains(&deposit) {
            self.gossip(now, 0, Msg::Deposit(Arc::new(deposit)));
        }
        Ok(())
    }

    /// [`super::LiveChain::submit_exit`].
    pub(super) fn submit_exit(
        &mut self,
        now: u64,
        exit: SignedExecutorExit,
    ) -> Result<(), ExitError> {
        let view = &self.views[0];
        let slot = now / self.slot_ms() + 1;
        let epoch = self.epoch_of(slot);
        let mut reg = view.head_executors().clone();
        executor_ops::release(&mut reg, epoch);
        executor_ops::exit(
            &exit,
            epoch.max(exit.message.epoch),
            &mut reg,
            &self.signing,
        )?;
        if !view.exit_pool.contains(&exit) {
            self.gossip(now, 0, Msg::Exit(Arc::new(exit)));
        }
        Ok(())
    }

    /// A deposit heard by `node`: pooled if both signatures verify and the head's registry
    /// takes it (a full pool drops the oldest).
    pub(super) fn on_deposit(&mut self, node: usize, deposit: &SignedExecutorDeposit) {
        let view = &self.views[node];
        if view.deposit_pool.contains(deposit) {
            return;
        }
        let mut reg = view.head_executors().clone();
        if executor_ops::deposit(deposit, &mut reg, &producer_key(view), &self.signing).is_err() {
            return;
        }
        let pool = &mut self.views[node].deposit_pool;
        if pool.len() >= OP_POOL {
            pool.remove(0);
        }
        pool.push(deposit.clone());
    }

    /// An exit heard by `node`: pooled if the executor is active at the head and signed it.
    pub(super) fn on_exit(&mut self, node: usize, exit: &SignedExecutorExit) {
        let view = &self.views[node];
        if view.exit_pool.contains(exit) {
            return;
        }
        let mut reg = view.head_executors().clone();
        if executor_ops::exit(exit, exit.message.epoch, &mut reg, &self.signing).is_err() {
            return;
        }
        let pool = &mut self.views[node].exit_pool;
        if pool.len() >= OP_POOL {
            pool.remove(0);
        }
        pool.push(exit.clone());
    }
}
