//! The state transition of one block (seed 000, DESIGN.md "Execution"). The rule, top to
//! bottom:
//!
//! 1. **Decode and recover, in parallel.** Every transaction of every shard is decoded as an
//!    EIP-2718 envelope and its sender recovered, once, on all cores. A transaction that does
//!    not decode, has a bad signature, a missing or wrong chain id, or is a blob or set-code
//!    transaction is *skipped*: it stays in the block, changes nothing, uses no gas, and its
//!    receipt says why.
//! 2. **Shards run concurrently**, one per thread (bounded by the cores). Inside a shard the
//!    transactions run in order on an overlay over the parent state and see the shard's own
//!    earlier writes; across shards every read sees the parent state. A transaction the EVM
//!    refuses (bad nonce, cannot pay, intrinsic gas too low, fee below the base fee, sender
//!    with code) is skipped likewise. Fees go to [`FEE_SINK`] and are summed per shard.
//! 3. **Gas limits.** A decodable transaction whose gas limit does not fit in what is left of
//!    its shard's gas limit voids the block; so does a block whose shards together use more
//!    than the block gas limit.
//! 4. **Effects.** Each shard yields its net changes against the parent, gas, fees, receipts
//!    and an effects root.
//! 5. **Conflicts.** If two shards changed the same key the block is **void**: it stays in the
//!    chain but its post-state is the parent state; the result names the key and the shards.
//! 6. **Merge and fees.** Otherwise the shards' changes are merged; the fees of all shards
//!    are summed and split: `producer = fees × fee_split_bps / 10000`, the validator gets the
//!    rest. Both credits are added after the merge, so they never conflict.
//! 7. **State root.** The merged changes are applied to the tries: the post-state root.
//!
//! Nothing in a block can make this panic: bad transactions are skipped, bad blocks are
//! void; only the state's own unavailability (a missing node, a database error) is an error.

use alloy_consensus::TxEnvelope;
use alloy_consensus::transaction::SignerRecoverable;
use alloy_primitives::{Address, B256, Bytes, Log, U256};
use phalanx_trie::NodeSource;
use rayon::prelude::*;
use revm::context::result::ExecutionResult;
use revm::primitives::KECCAK_EMPTY;
use revm::primitives::hardfork::SpecId;
use std::collections::BTreeMap;

use crate::changes::{
    AccountFields, Applied, Changes, Conflict, ShardEffects, apply_changes, find_conflict, merge,
};
use crate::error::ExecError;
use crate::evm::{ExecEnv, FEE_SINK, FeeMode, ShardRun, SkipReason, TxOutcome, tx_env};
use crate::reader::StateReader;

/// Most shards in a block.
pub const MAX_SHARDS: usize = phalanx_types::limits::MAX_SHARDS;

/// Everything about a block that execution needs besides its shards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockEnv {
    /// Height.
    pub number: u64,
    /// Unix timestamp.
    pub timestamp: u64,
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// EIP-1559 base fee, wei.
    pub basefee: u64,
    /// `PREVRANDAO`.
    pub prevrandao: B256,
    /// Gas limit of each shard.
    pub shard_gas_limit: u64,
    /// Gas limit of the whole block.
    pub block_gas_limit: u64,
    /// `BLOCKHASH` answers.
    pub block_hashes: BTreeMap<u64, B256>,
    /// The slot's validator's reward address.
    pub validator_reward: Address,
    /// The producer's reward address.
    pub producer_reward: Address,
    /// Producer's share of fees, basis points (capped at 10000).
    pub fee_split_bps: u16,
}

impl BlockEnv {
    /// The EVM environment of this block's shards.
    pub fn exec_env(&self) -> ExecEnv {
        ExecEnv {
            spec: SpecId::CANCUN,
            chain_id: self.chain_id,
            number: self.number,
            timestamp: self.timestamp,
            gas_limit: self.shard_gas_limit,
            basefee: self.basefee,
            prevrandao: self.prevrandao,
            beneficiary: FEE_SINK,
            excess_blob_gas: None,
            block_hashes: self.block_hashes.clone(),
            fee_mode: FeeMode::Deferred,
        }
    }
}

/// What happened to a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxStatus {
    /// Ran and succeeded.
    Success,
    /// Ran and reverted.
    Reverted,
    /// Ran and halted (out of gas, invalid opcode, …).
    Halted(String),
    /// Did not run.
    Skipped(SkipReason),
}

/// A transaction's receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Hash of the encoded transaction.
    pub tx_hash: B256,
    /// Recovered sender, if any.
    pub sender: Option<Address>,
    /// Outcome.
    pub status: TxStatus,
    /// Gas used by this transaction.
    pub gas_used: u64,
    /// Gas used by the shard up to and including this transaction.
    pub cumulative_gas_used: u64,
    /// Logs emitted.
    pub logs: Vec<Log>,
    /// Address of a created contract.
    pub contract_address: Option<Address>,
}

/// The result of one shard.
#[derive(Debug, Clone)]
pub struct ShardResult {
    /// One receipt per transaction, in order.
    pub receipts: Vec<Receipt>,
    /// Gas used.
    pub gas_used: u64,
    /// Fees collected (before the split).
    pub fees: U256,
    /// Net changes against the parent state.
    pub changes: Changes,
    /// Root of the shard's effects.
    pub effects_root: B256,
}

/// Why a block changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoidReason {
    /// Two shards changed the same key.
    Conflict(Conflict),
    /// A transaction's gas limit overflowed its shard's remaining gas.
    ShardGasLimit {
        /// Shard index.
        shard: usize,
        /// Transaction index in the shard.
        tx: usize,
        /// The shard's gas limit.
        limit: u64,
    },
    /// The shards together used more than the block gas limit.
    BlockGasLimit {
        /// Gas used.
        used: u64,
        /// The limit.
        limit: u64,
    },
}

impl std::fmt::Display for VoidReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VoidReason::Conflict(c) => write!(
                f,
                "shards {} and {} both changed {}",
                c.shard_a, c.shard_b, c.key
            ),
            VoidReason::ShardGasLimit { shard, tx, limit } => {
                write!(
                    f,
                    "transaction {tx} of shard {shard} overflows the shard gas limit {limit}"
                )
            }
            VoidReason::BlockGasLimit { used, limit } => {
                write!(f, "shards used {used} gas, above the block limit {limit}")
            }
        }
    }
}

/// The result of a block.
#[derive(Debug, Clone)]
pub struct BlockResult {
    /// Per-shard results (present even for a void block: they are the evidence).
    pub shards: Vec<ShardResult>,
    /// Why the block is void, if it is.
    pub void: Option<VoidReason>,
    /// All fees (zero when void).
    pub fees: U256,
    /// The validator's share.
    pub validator_fee: U256,
    /// The producer's share.
    pub producer_fee: U256,
    /// Merged changes with the fee credits (empty when void).
    pub changes: Changes,
    /// Post-state root (the parent's when void).
    pub post_state_root: B256,
    /// New trie nodes and account records.
    pub applied: Applied,
}

impl ShardResult {
    /// A shard's result from its published effects (received from the servers of a clustered
    /// node that own it, or taken from a proof of execution): no receipts; `codes` are the
    /// contract codes published beside the effects (none are needed for the state root).
    pub fn from_effects(effects: &ShardEffects, codes: impl IntoIterator<Item = Bytes>) -> Self {
        Self::from_effects_with_root(effects, effects.root(), codes)
    }

    /// [`ShardResult::from_effects`] when `effects_root` (`effects.root()`) is already known:
    /// the caller hashed the effects when it received them.
    pub fn from_effects_with_root(
        effects: &ShardEffects,
        effects_root: B256,
        codes: impl IntoIterator<Item = Bytes>,
    ) -> Self {
        Self {
            receipts: Vec::new(),
            gas_used: effects.gas_used,
            fees: effects.fees(),
            changes: effects.to_changes(codes),
            effects_root,
        }
    }
}

impl BlockResult {
    /// Each shard's effects root, in shard order.
    pub fn effects_roots(&self) -> Vec<B256> {
        self.shards.iter().map(|s| s.effects_root).collect()
    }

    /// Total gas used.
    pub fn gas_used(&self) -> u64 {
        self.shards.iter().map(|s| s.gas_used).sum()
    }
}

/// A decoded transaction with its sender, or why it is skipped.
pub type Prepared = Result<(TxEnvelope, Address), SkipReason>;

/// A consensus shard's transactions as execution takes them (one shard of `execute_block`'s
/// input).
pub fn shard_txs(shard: &phalanx_types::Shard) -> Vec<Bytes> {
    shard
        .transactions
        .iter()
        .map(|t| Bytes::copy_from_slice(t))
        .collect()
}

/// Step 1: decode and recover every transaction, in parallel.
pub fn prepare(shards: &[Vec<Bytes>]) -> Vec<Vec<(B256, Prepared)>> {
    shards
        .par_iter()
        .map(|txs| txs.par_iter().map(|raw| prepare_tx(raw)).collect())
        .collect()
}

/// Step 1 for one transaction: its hash, and the decoded transaction with its recovered
/// sender (or why it is skipped).
pub fn prepare_tx(raw: &[u8]) -> (B256, Prepared) {
    let hash = alloy_primitives::keccak256(raw);
    let prepared = phalanx_types::transaction::decode(raw)
        .map_err(|e| SkipReason::Undecodable(e.to_string()))
        .and_then(|tx| match tx.recover_signer() {
            Ok(sender) => Ok((tx, sender)),
            Err(_) => Err(SkipReason::BadSignature),
        });
    (hash, prepared)
}

/// Step 2–4 for one shard. Returns the shard's result, or the gas-limit void reason.
pub fn run_shard<R: StateReader>(
    parent: &R,
    env: &BlockEnv,
    exec_env: &ExecEnv,
    index: usize,
    txs: &[(B256, Prepared)],
) -> Result<Result<ShardResult, VoidReason>, ExecError> {
    let mut run = ShardRun::new(parent, exec_env);
    let mut receipts = Vec::with_capacity(txs.len());
    let mut gas_used = 0u64;
    for (i, (tx_hash, prepared)) in txs.iter().enumerate() {
        let skipped = |reason: SkipReason, sender: Option<Address>, gas: u64| Receipt {
            tx_hash: *tx_hash,
            sender,
            status: TxStatus::Skipped(reason),
            gas_used: 0,
            cumulative_gas_used: gas,
            logs: Vec::new(),
            contract_address: None,
        };
        let (tx, sender) = match prepared {
            Ok(ok) => ok,
            Err(reason) => {
                receipts.push(skipped(reason.clone(), None, gas_used));
                continue;
            }
        };
        let limit = alloy_consensus::Transaction::gas_limit(tx);
        if gas_used.saturating_add(limit) > env.shard_gas_limit {
            return Ok(Err(VoidReason::ShardGasLimit {
                shard: index,
                tx: i,
                limit: env.shard_gas_limit,
            }));
        }
        let evm_tx = match tx_env(tx, *sender, env.chain_id) {
            Ok(t) => t,
            Err(reason) => {
                receipts.push(skipped(reason, Some(*sender), gas_used));
                continue;
            }
        };
        match run.transact(evm_tx)? {
            TxOutcome::Invalid(e) => receipts.push(skipped(e.into(), Some(*sender), gas_used)),
            TxOutcome::Executed(result) => {
                let used = result.tx_gas_used();
                gas_used = gas_used.saturating_add(used);
                let contract_address = result.created_address();
                let status = match &result {
                    ExecutionResult::Success { .. } => TxStatus::Success,
                    ExecutionResult::Revert { .. } => TxStatus::Reverted,
                    ExecutionResult::Halt { reason, .. } => TxStatus::Halted(format!("{reason:?}")),
                };
                receipts.push(Receipt {
                    tx_hash: *tx_hash,
                    sender: Some(*sender),
                    status,
                    gas_used: used,
                    cumulative_gas_used: gas_used,
                    logs: result.into_logs(),
                    contract_address,
                });
            }
        }
    }
    let changes = run.changes()?;
    let fees = run.fees();
    let effects_root = ShardEffects::new(&changes, gas_used, fees)
        .map_err(ExecError::Input)?
        .root();
    Ok(Ok(ShardResult {
        receipts,
        gas_used,
        fees,
        changes,
        effects_root,
    }))
}

/// Step 6: adds `amount` to `address`'s balance on top of the merged changes.
fn credit<R: StateReader>(
    parent: &R,
    changes: &mut Changes,
    address: Address,
    amount: U256,
) -> Result<(), ExecError> {
    if amount.is_zero() {
        return Ok(());
    }
    let current = match changes.accounts.get(&address).and_then(|c| c.fields) {
        Some(fields) => fields,
        None => parent.account(address)?.map(|a| AccountFields {
            nonce: a.nonce,
            balance: a.balance,
            code_hash: a.code_hash,
        }),
    };
    let mut fields = current.unwrap_or(AccountFields {
        nonce: 0,
        balance: U256::ZERO,
        code_hash: KECCAK_EMPTY,
    });
    fields.balance = fields.balance.saturating_add(amount);
    changes.accounts.entry(address).or_default().fields = Some(Some(fields));
    Ok(())
}

/// Executes a block on `parent` (state root `parent_root`, trie nodes in `nodes`).
pub fn execute_block<R: StateReader, N: NodeSource + Sync>(
    parent: &R,
    nodes: &N,
    parent_root: B256,
    env: &BlockEnv,
    shards: &[Vec<Bytes>],
) -> Result<BlockResult, ExecError> {
    let outcomes = run_shards(parent, env, shards, Vec::new())?;
    finish_block(parent, nodes, parent_root, env, outcomes)
}

/// Steps 1–4 for every shard, in parallel, except those whose outcome is `known` already
/// (`known[i]`, when present and `Some`, is taken as shard `i`'s result and its transactions
/// are not run): the outcomes in shard order, for [`finish_block`].
pub fn run_shards<R: StateReader>(
    parent: &R,
    env: &BlockEnv,
    shards: &[Vec<Bytes>],
    mut known: Vec<Option<ShardResult>>,
) -> Result<Vec<Result<ShardResult, VoidReason>>, ExecError> {
    if shards.len() > MAX_SHARDS {
        return Err(ExecError::Input(format!(
            "{} shards; at most {MAX_SHARDS}",
            shards.len()
        )));
    }
    known.resize_with(shards.len(), || None);
    let to_run: Vec<Vec<Bytes>> = shards
        .iter()
        .zip(&known)
        .map(|(txs, k)| if k.is_some() { Vec::new() } else { txs.clone() })
        .collect();
    let prepared = prepare(&to_run);
    let exec_env = env.exec_env();
    prepared
        .par_iter()
        .zip(known.into_par_iter())
        .enumerate()
        .map(|(i, (txs, known))| match known {
            Some(result) => Ok(Ok(result)),
            None => run_shard(parent, env, &exec_env, i, txs),
        })
        .collect()
}

/// Steps 5–7 from each shard's outcome, in shard order, however it was obtained: run here by
/// [`run_shard`], or received from the servers of a clustered node that own the shards (their
/// receipts then stay with them, and `receipts` is empty).
pub fn finish_block<R: StateReader, N: NodeSource + Sync>(
    parent: &R,
    nodes: &N,
    parent_root: B256,
    env: &BlockEnv,
    outcomes: Vec<Result<ShardResult, VoidReason>>,
) -> Result<BlockResult, ExecError> {
    let mut results = Vec::with_capacity(outcomes.len());
    let mut void = None;
    for outcome in outcomes {
        match outcome {
            Ok(result) => results.push(result),
            Err(reason) => {
                void.get_or_insert(reason);
            }
        }
    }
    let void_result = |shards: Vec<ShardResult>, reason: VoidReason| BlockResult {
        shards,
        void: Some(reason),
        fees: U256::ZERO,
        validator_fee: U256::ZERO,
        producer_fee: U256::ZERO,
        changes: Changes::default(),
        post_state_root: parent_root,
        applied: Applied {
            root: parent_root,
            ..Applied::default()
        },
    };
    if let Some(reason) = void {
        return Ok(void_result(results, reason));
    }
    let used: u64 = results.iter().map(|r| r.gas_used).sum();
    if used > env.block_gas_limit {
        return Ok(void_result(
            results,
            VoidReason::BlockGasLimit {
                used,
                limit: env.block_gas_limit,
            },
        ));
    }
    let shard_changes: Vec<&Changes> = results.iter().map(|r| &r.changes).collect();
    if let Some(conflict) = find_conflict(&shard_changes) {
        return Ok(void_result(results, VoidReason::Conflict(conflict)));
    }
    let mut changes = merge(&shard_changes);
    let fees = results
        .iter()
        .fold(U256::ZERO, |acc, r| acc.saturating_add(r.fees));
    let bps = U256::from(env.fee_split_bps.min(10_000));
    let producer_fee = fees.saturating_mul(bps) / U256::from(10_000u64);
    let validator_fee = fees.saturating_sub(producer_fee);
    credit(parent, &mut changes, env.producer_reward, producer_fee)?;
    credit(parent, &mut changes, env.validator_reward, validator_fee)?;
    let applied = apply_changes(nodes, parent, parent_root, &changes)?;
    Ok(BlockResult {
        shards: results,
        void: None,
        fees,
        validator_fee,
        producer_fee,
        post_state_root: applied.root,
        changes,
        applied,
    })
}
