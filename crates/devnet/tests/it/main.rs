//! The devnet's integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod devnet;
mod gossip;
mod light;
mod onchain;
mod store;

/// A contract creation with `init` code at `nonce` (1 gwei tip, 2 gwei cap).
pub(crate) fn create_tx(
    nonce: u64,
    gas_limit: u64,
    init: alloy_primitives::Bytes,
) -> alloy_consensus::TxEip1559 {
    alloy_consensus::TxEip1559 {
        chain_id: 7331,
        nonce,
        gas_limit,
        max_fee_per_gas: 2_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: alloy_primitives::TxKind::Create,
        value: alloy_primitives::U256::ZERO,
        access_list: Default::default(),
        input: init,
    }
}

/// `tx` signed by `signer`, as `eth_sendRawTransaction` takes it.
pub(crate) fn raw_tx(
    signer: &alloy_signer_local::PrivateKeySigner,
    tx: alloy_consensus::TxEip1559,
) -> alloy_primitives::Bytes {
    use alloy_consensus::SignableTransaction as _;
    use alloy_signer::SignerSync as _;
    let sig = signer.sign_hash_sync(&tx.signature_hash()).unwrap();
    let envelope: alloy_consensus::TxEnvelope = tx.into_signed(sig).into();
    phalanx_types::transaction::encode(&envelope).into()
}
