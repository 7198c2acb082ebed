//! The devnet's integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod devnet;
mod light;
mod store;

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
