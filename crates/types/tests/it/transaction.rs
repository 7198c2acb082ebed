//! EIP-2718 transactions signed by a standard Ethereum signer decode, keep their hash and
//! sender, and malformed bytes are typed errors.

use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::{SignableTransaction, TxEip1559, TxLegacy};
use alloy_primitives::{Address, TxKind, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use phalanx_types::transaction::{self, TxDecodeError, TxEnvelope};
use proptest::prelude::*;

fn signer() -> PrivateKeySigner {
    "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
        .parse()
        .unwrap()
}

fn eip1559() -> TxEnvelope {
    let tx = TxEip1559 {
        chain_id: 7331,
        nonce: 3,
        gas_limit: 21_000,
        max_fee_per_gas: 2_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(Address::repeat_byte(0x42)),
        value: U256::from(1_000u64),
        access_list: Default::default(),
        input: Default::default(),
    };
    let sig = signer().sign_hash_sync(&tx.signature_hash()).unwrap();
    tx.into_signed(sig).into()
}

#[test]
fn signed_transactions_roundtrip_with_sender() {
    let legacy = TxLegacy {
        chain_id: Some(7331),
        nonce: 0,
        gas_price: 1_000_000_000,
        gas_limit: 21_000,
        to: TxKind::Call(Address::repeat_byte(1)),
        value: U256::from(5u64),
        input: Default::default(),
    };
    let sig = signer().sign_hash_sync(&legacy.signature_hash()).unwrap();
    let legacy: TxEnvelope = legacy.into_signed(sig).into();
    for tx in [eip1559(), legacy] {
        let bytes = transaction::encode(&tx);
        let back = transaction::decode(&bytes).unwrap();
        assert_eq!(back.tx_hash(), tx.tx_hash());
        assert_eq!(back.recover_signer().unwrap(), signer().address());
    }
}

#[test]
fn malformed_transactions_are_typed_errors() {
    let bytes = transaction::encode(&eip1559());
    assert_eq!(transaction::decode(&[]), Err(TxDecodeError::Empty));
    assert!(matches!(
        transaction::decode(&bytes[..bytes.len() - 1]),
        Err(TxDecodeError::Invalid(_))
    ));
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(
        transaction::decode(&long),
        Err(TxDecodeError::TrailingBytes(1))
    );
    assert!(matches!(
        transaction::decode(&[0x7f, 1, 2]),
        Err(TxDecodeError::Invalid(_))
    ));
}

proptest! {
    #[test]
    fn random_bytes_never_panic_the_transaction_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = transaction::decode(&bytes);
    }

    #[test]
    fn corrupted_transactions_never_panic(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = transaction::encode(&eip1559());
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let _ = transaction::decode(&bytes);
    }
}
