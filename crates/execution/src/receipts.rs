//! Receipts as the state store keeps them on disk ([`crate::store::StateStore::keep_receipts`]):
//! the receipts of one shard of one block, SSZ-encoded, every field of [`Receipt`] kept —
//! including why a transaction halted or was skipped — so what is read back equals what was
//! kept. A record that does not decode is an error naming the block and shard, never a panic.

use alloy_primitives::{Address, B256, Bytes, Log, LogData};
use ssz::{Decode, Encode};
use ssz_derive::{Decode, Encode};

use crate::block::{Receipt, TxStatus};
use crate::evm::SkipReason;

/// One log.
#[derive(Encode, Decode)]
struct StoredLog {
    address: Address,
    topics: Vec<B256>,
    data: Vec<u8>,
}

/// One receipt. `status` names the [`TxStatus`] (and for a skipped transaction the
/// [`SkipReason`]); `text`, `a` and `b` carry that variant's fields.
#[derive(Encode, Decode)]
struct StoredReceipt {
    tx_hash: B256,
    sender: Option<Address>,
    status: u8,
    text: Vec<u8>,
    a: u64,
    b: Option<u64>,
    gas_used: u64,
    cumulative_gas_used: u64,
    logs: Vec<StoredLog>,
    contract_address: Option<Address>,
}

const SUCCESS: u8 = 0;
const REVERTED: u8 = 1;
const HALTED: u8 = 2;
const UNDECODABLE: u8 = 3;
const BAD_SIGNATURE: u8 = 4;
const WRONG_CHAIN_ID: u8 = 5;
const UNSUPPORTED_TYPE: u8 = 6;
const BAD_NONCE: u8 = 7;
const CANNOT_PAY: u8 = 8;
const INTRINSIC_GAS_TOO_LOW: u8 = 9;
const FEE_TOO_LOW: u8 = 10;
const SENDER_HAS_CODE: u8 = 11;
const INVALID: u8 = 12;

/// A status as `(code, text, a, b)`.
fn status_fields(status: &TxStatus) -> (u8, &str, u64, Option<u64>) {
    match status {
        TxStatus::Success => (SUCCESS, "", 0, None),
        TxStatus::Reverted => (REVERTED, "", 0, None),
        TxStatus::Halted(why) => (HALTED, why, 0, None),
        TxStatus::Skipped(reason) => match reason {
            SkipReason::Undecodable(t) => (UNDECODABLE, t, 0, None),
            SkipReason::BadSignature => (BAD_SIGNATURE, "", 0, None),
            SkipReason::WrongChainId { expected, got } => (WRONG_CHAIN_ID, "", *expected, *got),
            SkipReason::UnsupportedType(t) => (UNSUPPORTED_TYPE, "", u64::from(*t), None),
            SkipReason::BadNonce { expected, got } => (BAD_NONCE, "", *expected, Some(*got)),
            SkipReason::CannotPay(t) => (CANNOT_PAY, t, 0, None),
            SkipReason::IntrinsicGasTooLow(t) => (INTRINSIC_GAS_TOO_LOW, t, 0, None),
            SkipReason::FeeTooLow(t) => (FEE_TOO_LOW, t, 0, None),
            SkipReason::SenderHasCode => (SENDER_HAS_CODE, "", 0, None),
            SkipReason::Invalid(t) => (INVALID, t, 0, None),
        },
    }
}

/// The inverse of [`status_fields`]; `None` for fields no status has.
fn status_of(code: u8, text: String, a: u64, b: Option<u64>) -> Option<TxStatus> {
    let skipped = |r| Some(TxStatus::Skipped(r));
    match (code, b) {
        (SUCCESS, None) => Some(TxStatus::Success),
        (REVERTED, None) => Some(TxStatus::Reverted),
        (HALTED, None) => Some(TxStatus::Halted(text)),
        (UNDECODABLE, None) => skipped(SkipReason::Undecodable(text)),
        (BAD_SIGNATURE, None) => skipped(SkipReason::BadSignature),
        (WRONG_CHAIN_ID, got) => skipped(SkipReason::WrongChainId { expected: a, got }),
        (UNSUPPORTED_TYPE, None) => skipped(SkipReason::UnsupportedType(u8::try_from(a).ok()?)),
        (BAD_NONCE, Some(got)) => skipped(SkipReason::BadNonce { expected: a, got }),
        (CANNOT_PAY, None) => skipped(SkipReason::CannotPay(text)),
        (INTRINSIC_GAS_TOO_LOW, None) => skipped(SkipReason::IntrinsicGasTooLow(text)),
        (FEE_TOO_LOW, None) => skipped(SkipReason::FeeTooLow(text)),
        (SENDER_HAS_CODE, None) => skipped(SkipReason::SenderHasCode),
        (INVALID, None) => skipped(SkipReason::Invalid(text)),
        _ => None,
    }
}

/// One shard's receipts as stored.
pub fn encode(receipts: &[Receipt]) -> Vec<u8> {
    let stored: Vec<StoredReceipt> = receipts
        .iter()
        .map(|r| {
            let (status, text, a, b) = status_fields(&r.status);
            StoredReceipt {
                tx_hash: r.tx_hash,
                sender: r.sender,
                status,
                text: text.as_bytes().to_vec(),
                a,
                b,
                gas_used: r.gas_used,
                cumulative_gas_used: r.cumulative_gas_used,
                logs: r
                    .logs
                    .iter()
                    .map(|l| StoredLog {
                        address: l.address,
                        topics: l.data.topics().to_vec(),
                        data: l.data.data.to_vec(),
                    })
                    .collect(),
                contract_address: r.contract_address,
            }
        })
        .collect();
    stored.as_ssz_bytes()
}

/// Why stored receipts could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("stored receipts do not decode: {0}")]
pub struct ReceiptsError(pub String);

/// The inverse of [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Vec<Receipt>, ReceiptsError> {
    let stored =
        Vec::<StoredReceipt>::from_ssz_bytes(bytes).map_err(|e| ReceiptsError(format!("{e:?}")))?;
    stored
        .into_iter()
        .map(|s| {
            let text = String::from_utf8(s.text)
                .map_err(|_| ReceiptsError("a status text is not UTF-8".into()))?;
            let status = status_of(s.status, text, s.a, s.b)
                .ok_or_else(|| ReceiptsError(format!("unknown status {}", s.status)))?;
            let logs = s
                .logs
                .into_iter()
                .map(|l| {
                    LogData::new(l.topics, Bytes::from(l.data))
                        .map(|data| Log {
                            address: l.address,
                            data,
                        })
                        .ok_or_else(|| ReceiptsError("a log has more than 4 topics".into()))
                })
                .collect::<Result<_, _>>()?;
            Ok(Receipt {
                tx_hash: s.tx_hash,
                sender: s.sender,
                status,
                gas_used: s.gas_used,
                cumulative_gas_used: s.cumulative_gas_used,
                logs,
                contract_address: s.contract_address,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(i: u8, status: TxStatus) -> Receipt {
        Receipt {
            tx_hash: B256::repeat_byte(i),
            sender: i.is_multiple_of(2).then(|| Address::repeat_byte(i)),
            status,
            gas_used: 21_000 + u64::from(i),
            cumulative_gas_used: 21_000 * u64::from(i),
            logs: (0..i % 3)
                .map(|k| Log {
                    address: Address::repeat_byte(k),
                    data: LogData::new(
                        (0..k).map(|t| B256::repeat_byte(t + 1)).collect(),
                        Bytes::from(vec![k; usize::from(k) * 7]),
                    )
                    .expect("at most 4 topics"),
                })
                .collect(),
            contract_address: i.is_multiple_of(3).then(|| Address::repeat_byte(0xcc)),
        }
    }

    /// Every status and skip reason, with and without sender, logs and created contract,
    /// reads back equal; a cut record and an unknown status are errors.
    #[test]
    fn every_status_reads_back_equal_and_damage_is_an_error() {
        let statuses = [
            TxStatus::Success,
            TxStatus::Reverted,
            TxStatus::Halted("OutOfGas(Basic)".into()),
            TxStatus::Skipped(SkipReason::Undecodable("rlp".into())),
            TxStatus::Skipped(SkipReason::BadSignature),
            TxStatus::Skipped(SkipReason::WrongChainId {
                expected: 7,
                got: None,
            }),
            TxStatus::Skipped(SkipReason::WrongChainId {
                expected: 7,
                got: Some(1),
            }),
            TxStatus::Skipped(SkipReason::UnsupportedType(3)),
            TxStatus::Skipped(SkipReason::BadNonce {
                expected: 4,
                got: 9,
            }),
            TxStatus::Skipped(SkipReason::CannotPay("balance 0".into())),
            TxStatus::Skipped(SkipReason::IntrinsicGasTooLow("20000".into())),
            TxStatus::Skipped(SkipReason::FeeTooLow("cap".into())),
            TxStatus::Skipped(SkipReason::SenderHasCode),
            TxStatus::Skipped(SkipReason::Invalid("other".into())),
        ];
        let receipts: Vec<Receipt> = statuses
            .into_iter()
            .enumerate()
            .map(|(i, s)| receipt(i as u8, s))
            .collect();
        let bytes = encode(&receipts);
        assert_eq!(decode(&bytes).expect("decodes"), receipts);
        assert_eq!(decode(&encode(&[])).expect("empty"), Vec::<Receipt>::new());
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        let mut unknown = receipts[0].clone();
        unknown.status = TxStatus::Success;
        let mut bytes = encode(&[unknown]);
        // The status byte follows the 4-byte offset list, the hash, the sender's offset.
        let at = 4 + 32 + 4;
        assert_eq!(bytes[at], SUCCESS);
        bytes[at] = 99;
        assert!(decode(&bytes).is_err());
    }
}
