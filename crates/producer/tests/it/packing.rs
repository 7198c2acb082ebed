//! Mempool admission and conflict-free packing.

use std::collections::{HashMap, HashSet};

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_primitives::{Address, Bytes, TxKind, U256, keccak256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use phalanx_producer::mempool::{Mempool, MempoolError};
use phalanx_producer::packing::{Limits, pack};
use proptest::prelude::*;

const CHAIN: u64 = 7331;

fn key(i: u64) -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&keccak256(i.to_be_bytes())).unwrap()
}

fn tx(k: &PrivateKeySigner, nonce: u64, to: Address, fee: u128, chain: u64) -> Bytes {
    let t = TxEip1559 {
        chain_id: chain,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: fee,
        max_priority_fee_per_gas: 1,
        to: TxKind::Call(to),
        value: U256::from(1u64),
        access_list: Default::default(),
        input: Default::default(),
    };
    let sig = k.sign_hash_sync(&t.signature_hash()).unwrap();
    let envelope: alloy_consensus::TxEnvelope = t.into_signed(sig).into();
    phalanx_types::transaction::encode(&envelope).into()
}

fn decode(raw: &Bytes) -> (Address, Address, u64) {
    use alloy_consensus::Transaction as _;
    use alloy_consensus::transaction::SignerRecoverable;
    let t = phalanx_types::transaction::decode(raw).unwrap();
    (t.recover_signer().unwrap(), t.to().unwrap(), t.nonce())
}

#[test]
fn the_pool_refuses_what_cannot_run() {
    let mut pool = Mempool::new(CHAIN, 3);
    let k = key(1);
    assert!(matches!(
        pool.insert(Bytes::from_static(&[1, 2, 3])),
        Err(MempoolError::Undecodable(_))
    ));
    assert!(matches!(
        pool.insert(tx(&k, 0, Address::ZERO, 10, 1)),
        Err(MempoolError::WrongChainId { .. })
    ));
    let first = tx(&k, 0, Address::ZERO, 10, CHAIN);
    pool.insert(first.clone()).unwrap();
    assert_eq!(pool.insert(first), Err(MempoolError::Duplicate));
    assert_eq!(
        pool.insert(tx(&k, 0, Address::repeat_byte(1), 10, CHAIN)),
        Err(MempoolError::Underpriced)
    );
    pool.insert(tx(&k, 0, Address::repeat_byte(1), 11, CHAIN))
        .unwrap();
    assert_eq!(
        pool.len(),
        1,
        "replace-by-fee keeps one transaction per nonce"
    );
    pool.insert(tx(&k, 1, Address::ZERO, 10, CHAIN)).unwrap();
    pool.insert(tx(&k, 2, Address::ZERO, 10, CHAIN)).unwrap();
    assert_eq!(
        pool.insert(tx(&k, 3, Address::ZERO, 10, CHAIN)),
        Err(MempoolError::Full(3))
    );
    pool.prune(k.address(), 2);
    assert_eq!(pool.len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Whatever the pool holds, no two shards share a sender or a written address, nonces
    /// run in order within a sender, and no limit is exceeded.
    #[test]
    fn packed_shards_never_share_a_written_address(
        txs in prop::collection::vec((0u64..30, 0u8..12, 0u64..4), 1..120),
        shards in 1usize..6,
    ) {
        let mut pool = Mempool::new(CHAIN, 10_000);
        for (sender, to, nonce) in &txs {
            let _ = pool.insert(tx(&key(*sender), *nonce, Address::repeat_byte(*to), 10, CHAIN));
        }
        let limits = Limits { shards, max_txs_per_shard: 40, shard_gas_limit: 30 * 21_000 };
        let packed = pack(&pool, limits, |_| 0);
        prop_assert_eq!(packed.len(), shards);
        let mut owner: HashMap<Address, usize> = HashMap::new();
        let mut seen = HashSet::new();
        for (i, shard) in packed.iter().enumerate() {
            prop_assert!(shard.len() <= 40);
            prop_assert!(shard.len() as u64 * 21_000 <= limits.shard_gas_limit);
            let mut next: HashMap<Address, u64> = HashMap::new();
            for raw in shard {
                prop_assert!(seen.insert(raw.clone()), "a transaction packed twice");
                let (sender, to, nonce) = decode(raw);
                for written in [sender, to] {
                    let o = *owner.entry(written).or_insert(i);
                    prop_assert_eq!(o, i, "{} written by shards {} and {}", written, o, i);
                }
                let expected = next.entry(sender).or_insert(0);
                prop_assert_eq!(nonce, *expected, "nonces out of order");
                *expected += 1;
            }
        }
    }
}
