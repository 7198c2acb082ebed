//! Read-only calls against a state: what `eth_call` and `eth_estimateGas` run.
//!
//! A call runs one transaction in a throwaway shard over the given state and keeps nothing.
//! As geth does for calls without a gas price, the base fee is taken as zero and the gas
//! price is zero, so a caller with no balance can still call; the nonce is the caller's
//! current one. The gas limit is the request's, capped at the shard gas limit (the most any
//! transaction can use in phalanx).
//!
//! Gas estimation follows geth: run at the cap; if that fails, report why (revert data or
//! halt reason); otherwise binary-search the least gas limit with which the call succeeds.

use alloy_primitives::{Address, Bytes, TxKind, U256};
use revm::context::TxEnv;
use revm::context::result::ExecutionResult;

use crate::error::ExecError;
use crate::evm::{ExecEnv, ShardRun, TxOutcome};
use crate::reader::StateReader;

/// A call's parameters (the JSON-RPC transaction object).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallRequest {
    /// Caller (zero address when absent).
    pub from: Option<Address>,
    /// Callee; `None` runs `data` as init code.
    pub to: Option<Address>,
    /// Value, wei.
    pub value: U256,
    /// Calldata or init code.
    pub data: Bytes,
    /// Gas limit (the shard gas limit when absent).
    pub gas: Option<u64>,
}

/// What a call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    /// It succeeded: its return data.
    Success {
        /// Return data.
        output: Bytes,
        /// Gas used.
        gas_used: u64,
    },
    /// It reverted: the revert data.
    Revert {
        /// Revert data.
        output: Bytes,
        /// Gas used.
        gas_used: u64,
    },
    /// It halted (out of gas, invalid opcode, …).
    Halt {
        /// Why.
        reason: String,
        /// Gas used.
        gas_used: u64,
    },
}

/// Why a call could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The transaction is invalid as such (e.g. value above the caller's balance).
    #[error("invalid call: {0}")]
    Invalid(String),
    /// The state could not be read, or the EVM failed.
    #[error(transparent)]
    Exec(#[from] ExecError),
}

/// Runs `request` over `state` under `env` and keeps nothing.
pub fn call<R: StateReader>(
    state: &R,
    env: &ExecEnv,
    request: &CallRequest,
) -> Result<CallOutcome, CallError> {
    let mut env = env.clone();
    env.basefee = 0;
    let from = request.from.unwrap_or(Address::ZERO);
    let nonce = state
        .account(from)
        .map_err(ExecError::from)?
        .map_or(0, |a| a.nonce);
    let tx = TxEnv {
        tx_type: 2,
        caller: from,
        gas_limit: request.gas.unwrap_or(env.gas_limit).min(env.gas_limit),
        gas_price: 0,
        gas_priority_fee: Some(0),
        kind: request.to.map_or(TxKind::Create, TxKind::Call),
        value: request.value,
        data: request.data.clone(),
        nonce,
        chain_id: Some(env.chain_id),
        ..TxEnv::default()
    };
    let mut run = ShardRun::new(state, &env);
    match run.transact(tx)? {
        TxOutcome::Invalid(e) => Err(CallError::Invalid(e.to_string())),
        TxOutcome::Executed(result) => {
            let gas_used = result.tx_gas_used();
            Ok(match result {
                ExecutionResult::Success { output, .. } => CallOutcome::Success {
                    output: output.into_data(),
                    gas_used,
                },
                ExecutionResult::Revert { output, .. } => CallOutcome::Revert { output, gas_used },
                ExecutionResult::Halt { reason, .. } => CallOutcome::Halt {
                    reason: format!("{reason:?}"),
                    gas_used,
                },
            })
        }
    }
}

/// The least gas limit with which `request` succeeds, or the outcome of its failure at the
/// cap.
pub fn estimate_gas<R: StateReader>(
    state: &R,
    env: &ExecEnv,
    request: &CallRequest,
) -> Result<Result<u64, CallOutcome>, CallError> {
    let cap = request.gas.unwrap_or(env.gas_limit).min(env.gas_limit);
    let at = |gas: u64| {
        let mut r = request.clone();
        r.gas = Some(gas);
        call(state, env, &r)
    };
    let used = match at(cap)? {
        CallOutcome::Success { gas_used, .. } => gas_used,
        failed => return Ok(Err(failed)),
    };
    // The least limit is at least what the successful run used (refunds aside).
    let (mut lo, mut hi) = (used.saturating_sub(1).max(20_999), cap);
    if matches!(at(used), Ok(CallOutcome::Success { .. })) {
        hi = used;
    }
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        match at(mid) {
            Ok(CallOutcome::Success { .. }) => hi = mid,
            _ => lo = mid,
        }
    }
    Ok(Ok(hi))
}
