//! Test helpers: keys, signed transactions, a genesis, a block environment.

use std::collections::BTreeMap;

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_primitives::{Address, B256, Bytes, TxKind, U256, keccak256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use phalanx_execution::block::BlockEnv;
use phalanx_execution::changes::{AccountChange, AccountFields, Changes};
use revm::primitives::KECCAK_EMPTY;

pub(crate) const CHAIN_ID: u64 = 7331;
pub(crate) const BASEFEE: u64 = 1_000_000_000;
pub(crate) const TIP: u128 = 2_000_000_000;
/// `slot0 += 1`.
pub(crate) const COUNTER: &[u8] = &[0x60, 0x00, 0x54, 0x60, 0x01, 0x01, 0x60, 0x00, 0x55, 0x00];

pub(crate) fn signer(i: u64) -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&keccak256(i.to_be_bytes())).unwrap()
}

pub(crate) fn sign(tx: TxEip1559, key: &PrivateKeySigner) -> Bytes {
    let sig = key.sign_hash_sync(&tx.signature_hash()).unwrap();
    let envelope: alloy_consensus::TxEnvelope = tx.into_signed(sig).into();
    phalanx_types::transaction::encode(&envelope).into()
}

pub(crate) fn tx(nonce: u64, to: Address, value: u64, gas: u64) -> TxEip1559 {
    TxEip1559 {
        chain_id: CHAIN_ID,
        nonce,
        gas_limit: gas,
        max_fee_per_gas: u128::from(BASEFEE) + TIP,
        max_priority_fee_per_gas: TIP,
        to: TxKind::Call(to),
        value: U256::from(value),
        access_list: Default::default(),
        input: Default::default(),
    }
}

pub(crate) fn transfer(key: &PrivateKeySigner, nonce: u64, to: Address, value: u64) -> Bytes {
    sign(tx(nonce, to, value, 21_000), key)
}

pub(crate) fn contract(i: u64) -> Address {
    Address::left_padding_from(&(0xc000 + i).to_be_bytes())
}

/// `accounts` funded with 1000 ether each, and counter contracts at `contract(0..contracts)`.
pub(crate) fn genesis(accounts: u64, contracts: u64) -> Changes {
    let mut changes = Changes::default();
    for i in 0..accounts {
        changes.accounts.insert(
            signer(i).address(),
            AccountChange {
                fields: Some(Some(AccountFields {
                    nonce: 0,
                    balance: U256::from(1000u64) * U256::from(10u64).pow(U256::from(18u64)),
                    code_hash: KECCAK_EMPTY,
                })),
                ..Default::default()
            },
        );
    }
    let code_hash = keccak256(COUNTER);
    for i in 0..contracts {
        changes.accounts.insert(
            contract(i),
            AccountChange {
                fields: Some(Some(AccountFields {
                    nonce: 1,
                    balance: U256::ZERO,
                    code_hash,
                })),
                storage: BTreeMap::from([(U256::ZERO, U256::from(100 + i))]),
                ..Default::default()
            },
        );
    }
    if contracts > 0 {
        changes.codes.insert(code_hash, Bytes::from_static(COUNTER));
    }
    changes
}

pub(crate) fn env(number: u64) -> BlockEnv {
    BlockEnv {
        number,
        timestamp: 1_700_000_000 + number * 2,
        chain_id: CHAIN_ID,
        basefee: BASEFEE,
        prevrandao: B256::repeat_byte(7),
        shard_gas_limit: 30_000_000,
        block_gas_limit: 240_000_000,
        block_hashes: BTreeMap::new(),
        validator_reward: Address::repeat_byte(0xaa),
        producer_reward: Address::repeat_byte(0xbb),
        fee_split_bps: 2_500,
    }
}

pub(crate) fn block_hash(n: u64) -> B256 {
    keccak256(format!("block {n}"))
}
