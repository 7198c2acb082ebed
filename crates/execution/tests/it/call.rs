//! Read-only calls and gas estimation over a stored state: results are right and nothing is
//! kept.

use alloy_primitives::{Address, Bytes, U256};
use phalanx_execution::call::{CallOutcome, CallRequest, call, estimate_gas};
use phalanx_execution::reader::StateReader;
use phalanx_execution::store::StateStore;

use crate::util::{block_hash, contract, env, genesis, signer};

fn store() -> StateStore {
    let st = StateStore::in_memory().unwrap();
    st.init_genesis(block_hash(0), &genesis(2, 1)).unwrap();
    st
}

#[test]
fn a_call_runs_against_the_state_and_keeps_nothing() {
    let st = store();
    let view = st.view(block_hash(0)).unwrap();
    let env = env(1).exec_env();
    // The counter contract: slot0 += 1, returns nothing; the write is not kept.
    let out = call(
        &view,
        &env,
        &CallRequest {
            to: Some(contract(0)),
            ..Default::default()
        },
    )
    .unwrap();
    let CallOutcome::Success { output, gas_used } = out else {
        panic!("{out:?}");
    };
    assert!(output.is_empty());
    assert!(gas_used > 21_000);
    assert_eq!(
        st.view(block_hash(0))
            .unwrap()
            .storage(contract(0), U256::ZERO)
            .unwrap(),
        U256::from(100)
    );

    // Init code returning 42 in a word: the return data is the word.
    // PUSH1 42 PUSH1 0 MSTORE PUSH1 32 PUSH1 0 RETURN
    let code = Bytes::from_static(&[0x60, 42, 0x60, 0, 0x52, 0x60, 32, 0x60, 0, 0xf3]);
    let out = call(
        &view,
        &env,
        &CallRequest {
            data: code,
            ..Default::default()
        },
    )
    .unwrap();
    let CallOutcome::Success { output, .. } = out else {
        panic!("{out:?}");
    };
    assert_eq!(U256::from_be_slice(&output), U256::from(42));

    // PUSH1 0 PUSH1 0 REVERT: a revert, with its (empty) data.
    let out = call(
        &view,
        &env,
        &CallRequest {
            data: Bytes::from_static(&[0x60, 0, 0x60, 0, 0xfd]),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(matches!(out, CallOutcome::Revert { .. }), "{out:?}");

    // Sending more than the caller holds is an invalid call, not a panic.
    let poor = call(
        &view,
        &env,
        &CallRequest {
            from: Some(Address::repeat_byte(0x99)),
            to: Some(signer(0).address()),
            value: U256::from(1u64),
            ..Default::default()
        },
    );
    assert!(poor.is_err());
}

#[test]
fn gas_estimates_are_the_least_limit_that_succeeds() {
    let st = store();
    let view = st.view(block_hash(0)).unwrap();
    let env = env(1).exec_env();
    let transfer = CallRequest {
        from: Some(signer(0).address()),
        to: Some(signer(1).address()),
        value: U256::from(5u64),
        ..Default::default()
    };
    assert_eq!(
        estimate_gas(&view, &env, &transfer).unwrap().unwrap(),
        21_000
    );

    let counter = CallRequest {
        from: Some(signer(0).address()),
        to: Some(contract(0)),
        ..Default::default()
    };
    let estimate = estimate_gas(&view, &env, &counter).unwrap().unwrap();
    let mut at = counter.clone();
    at.gas = Some(estimate);
    assert!(matches!(
        call(&view, &env, &at).unwrap(),
        CallOutcome::Success { .. }
    ));
    at.gas = Some(estimate - 1);
    assert!(!matches!(
        call(&view, &env, &at).unwrap(),
        CallOutcome::Success { .. }
    ));

    let reverting = CallRequest {
        data: Bytes::from_static(&[0x60, 0, 0x60, 0, 0xfd]),
        ..Default::default()
    };
    assert!(matches!(
        estimate_gas(&view, &env, &reverting).unwrap(),
        Err(CallOutcome::Revert { .. })
    ));
}
