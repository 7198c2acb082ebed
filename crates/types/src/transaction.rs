//! Transactions are Ethereum typed transactions (EIP-2718), signed with secp256k1, so existing
//! wallets and libraries can produce them. Consensus treats them as opaque bytes; this module
//! is where execution (and the producer's mempool) turns bytes into a transaction.

use alloy_eips::eip2718::{Decodable2718, Encodable2718};

pub use alloy_consensus::TxEnvelope;

/// A transaction that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxDecodeError {
    /// Zero bytes.
    #[error("empty transaction")]
    Empty,
    /// Not a legacy or typed transaction alloy understands.
    #[error("not a valid EIP-2718 transaction: {0}")]
    Invalid(String),
    /// A valid transaction followed by extra bytes.
    #[error("{0} trailing bytes after the transaction")]
    TrailingBytes(usize),
}

/// Decodes an EIP-2718 envelope (legacy or typed); the bytes must hold exactly one.
pub fn decode(bytes: &[u8]) -> Result<TxEnvelope, TxDecodeError> {
    if bytes.is_empty() {
        return Err(TxDecodeError::Empty);
    }
    let mut buf = bytes;
    let tx =
        TxEnvelope::decode_2718(&mut buf).map_err(|e| TxDecodeError::Invalid(e.to_string()))?;
    if !buf.is_empty() {
        return Err(TxDecodeError::TrailingBytes(buf.len()));
    }
    Ok(tx)
}

/// The EIP-2718 encoding of `tx`.
pub fn encode(tx: &TxEnvelope) -> Vec<u8> {
    tx.encoded_2718()
}
