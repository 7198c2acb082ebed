//! The block state transition: parallel shards, the conflict rule, fees, skips, gas limits.

use alloy_primitives::{Address, Bytes, U256};
use phalanx_execution::StateReader;
use phalanx_execution::block::{TxStatus, VoidReason};
use phalanx_execution::changes::StateKey;
use phalanx_execution::evm::SkipReason;
use phalanx_execution::store::StateStore;

use super::util::*;

fn store(accounts: u64, contracts: u64) -> StateStore {
    let store = StateStore::in_memory().unwrap();
    store
        .init_genesis(block_hash(0), &genesis(accounts, contracts))
        .unwrap();
    store
}

fn balance(store: &StateStore, block: alloy_primitives::B256, who: Address) -> U256 {
    store
        .view(block)
        .unwrap()
        .account(who)
        .unwrap()
        .map_or(U256::ZERO, |a| a.balance)
}

#[test]
fn conflict_free_shards_equal_sequential_execution() {
    // Four shards, each with its own senders, recipients and counter contract.
    let mut shards: Vec<Vec<Bytes>> = vec![Vec::new(); 4];
    for s in 0..4u64 {
        for k in 0..3u64 {
            let key = signer(s * 3 + k);
            for n in 0..3 {
                shards[s as usize].push(transfer(
                    &key,
                    n,
                    Address::repeat_byte(0x10 + (s * 3 + k) as u8),
                    1_000 + n,
                ));
            }
            shards[s as usize].push(sign(tx(3, contract(s), 0, 60_000), &key));
        }
    }
    let sharded = store(12, 4);
    let sequential = store(12, 4);
    let a = sharded
        .execute(block_hash(0), block_hash(1), &env(1), &shards)
        .unwrap();
    let one: Vec<Bytes> = shards.concat();
    let b = sequential
        .execute(block_hash(0), block_hash(1), &env(1), &[one])
        .unwrap();
    assert!(a.void.is_none() && b.void.is_none());
    assert_eq!(a.post_state_root, b.post_state_root);
    assert_eq!(a.fees, b.fees);
    assert!(
        a.shards
            .iter()
            .all(|s| s.receipts.iter().all(|r| r.status == TxStatus::Success))
    );
    let view = sharded.view(block_hash(1)).unwrap();
    for s in 0..4u64 {
        assert_eq!(
            view.storage(contract(s), U256::ZERO).unwrap(),
            U256::from(100 + s + 3)
        );
    }
}

#[test]
fn a_cross_shard_write_conflict_voids_the_block() {
    let st = store(4, 0);
    let target = Address::repeat_byte(0x77);
    let shards = vec![
        vec![transfer(&signer(0), 0, Address::repeat_byte(1), 5)],
        vec![transfer(&signer(1), 0, target, 5)],
        vec![transfer(&signer(2), 0, target, 7)],
    ];
    let r = st
        .execute(block_hash(0), block_hash(1), &env(1), &shards)
        .unwrap();
    match r.void {
        Some(VoidReason::Conflict(c)) => {
            assert_eq!(c.key, StateKey::Account(target));
            assert_eq!((c.shard_a, c.shard_b), (1, 2));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let parent = st.state_root(block_hash(0)).unwrap().unwrap();
    assert_eq!(r.post_state_root, parent);
    assert_eq!(st.state_root(block_hash(1)).unwrap(), Some(parent));
    assert_eq!(balance(&st, block_hash(1), target), U256::ZERO);
    assert_eq!(r.shards.len(), 3, "shard results are kept as evidence");
}

#[test]
fn fees_are_split_exactly_after_the_merge() {
    let st = store(4, 0);
    let shards: Vec<Vec<Bytes>> = (0..4)
        .map(|i| {
            vec![transfer(
                &signer(i),
                0,
                Address::repeat_byte(0x50 + i as u8),
                1,
            )]
        })
        .collect();
    let mut e = env(1);
    e.fee_split_bps = 3_333;
    let r = st
        .execute(block_hash(0), block_hash(1), &e, &shards)
        .unwrap();
    assert!(r.void.is_none());
    let expected_fees = U256::from(4u64 * 21_000) * U256::from(TIP);
    assert_eq!(r.fees, expected_fees);
    let producer = expected_fees * U256::from(3_333u64) / U256::from(10_000u64);
    assert_eq!(r.producer_fee, producer);
    assert_eq!(r.validator_fee, expected_fees - producer);
    assert_eq!(balance(&st, block_hash(1), e.producer_reward), producer);
    assert_eq!(
        balance(&st, block_hash(1), e.validator_reward),
        expected_fees - producer
    );
    // Each sender paid gas × (base fee + tip) + value; the base fee is burned.
    let paid = U256::from(1000u64) * U256::from(10u64).pow(U256::from(18u64))
        - balance(&st, block_hash(1), signer(0).address());
    assert_eq!(
        paid,
        U256::from(21_000u64) * U256::from(u128::from(BASEFEE) + TIP) + U256::from(1u64)
    );
}

#[test]
fn invalid_transactions_are_skipped_with_their_reason() {
    let st = store(3, 0);
    let k = signer(0);
    let poor = signer(100);
    let mut wrong_chain = tx(0, Address::repeat_byte(1), 1, 21_000);
    wrong_chain.chain_id = 1;
    let mut cheap = tx(0, Address::repeat_byte(1), 1, 21_000);
    cheap.max_fee_per_gas = 1;
    cheap.max_priority_fee_per_gas = 1;
    let shard = vec![
        Bytes::from_static(&[0x02, 0xde, 0xad]),
        sign(wrong_chain, &k),
        transfer(&k, 5, Address::repeat_byte(1), 1),
        transfer(&poor, 0, Address::repeat_byte(1), 1),
        sign(tx(0, Address::repeat_byte(1), 1, 20_000), &k),
        sign(cheap, &k),
        transfer(&k, 0, Address::repeat_byte(1), 1),
    ];
    let r = st
        .execute(block_hash(0), block_hash(1), &env(1), &[shard])
        .unwrap();
    let statuses: Vec<&TxStatus> = r.shards[0].receipts.iter().map(|x| &x.status).collect();
    assert!(matches!(
        statuses[0],
        TxStatus::Skipped(SkipReason::Undecodable(_))
    ));
    assert!(matches!(
        statuses[1],
        TxStatus::Skipped(SkipReason::WrongChainId {
            expected: CHAIN_ID,
            got: Some(1)
        })
    ));
    assert!(matches!(
        statuses[2],
        TxStatus::Skipped(SkipReason::BadNonce {
            expected: 0,
            got: 5
        })
    ));
    assert!(matches!(
        statuses[3],
        TxStatus::Skipped(SkipReason::CannotPay(_))
    ));
    assert!(matches!(
        statuses[4],
        TxStatus::Skipped(SkipReason::IntrinsicGasTooLow(_))
    ));
    assert!(matches!(
        statuses[5],
        TxStatus::Skipped(SkipReason::FeeTooLow(_))
    ));
    assert_eq!(statuses[6], &TxStatus::Success);
    assert!(r.shards[0].receipts[..6].iter().all(|x| x.gas_used == 0));
    assert_eq!(r.gas_used(), 21_000);
    let view = st.view(block_hash(1)).unwrap();
    assert_eq!(view.account(k.address()).unwrap().unwrap().nonce, 1);
    assert!(view.account(poor.address()).unwrap().is_none());
}

#[test]
fn gas_limit_overflow_voids_the_block() {
    let st = store(2, 0);
    let mut e = env(1);
    e.shard_gas_limit = 50_000;
    let shard = vec![
        transfer(&signer(0), 0, Address::repeat_byte(1), 1),
        transfer(&signer(0), 1, Address::repeat_byte(1), 1),
        transfer(&signer(0), 2, Address::repeat_byte(1), 1),
    ];
    let r = st
        .execute(block_hash(0), block_hash(1), &e, &[shard])
        .unwrap();
    assert_eq!(
        r.void,
        Some(VoidReason::ShardGasLimit {
            shard: 0,
            tx: 2,
            limit: 50_000
        })
    );

    let mut e = env(1);
    e.block_gas_limit = 30_000;
    let shards = vec![
        vec![transfer(&signer(0), 0, Address::repeat_byte(1), 1)],
        vec![transfer(&signer(1), 0, Address::repeat_byte(2), 1)],
    ];
    let r = st
        .execute(block_hash(0), block_hash(2), &e, &shards)
        .unwrap();
    assert_eq!(
        r.void,
        Some(VoidReason::BlockGasLimit {
            used: 42_000,
            limit: 30_000
        })
    );
}

#[test]
fn garbage_shards_never_panic() {
    let st = store(1, 0);
    let shards: Vec<Vec<Bytes>> = (0..8u8)
        .map(|i| {
            (0..20u8)
                .map(|j| Bytes::from(vec![i.wrapping_mul(31) ^ j; usize::from(j) * 7]))
                .collect()
        })
        .collect();
    let r = st
        .execute(block_hash(0), block_hash(1), &env(1), &shards)
        .unwrap();
    assert!(r.void.is_none());
    assert!(
        r.shards
            .iter()
            .flat_map(|s| &s.receipts)
            .all(|x| matches!(x.status, TxStatus::Skipped(_)))
    );
    assert_eq!(
        r.post_state_root,
        st.state_root(block_hash(0)).unwrap().unwrap()
    );
}
