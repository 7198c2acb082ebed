//! A block's transactions and receipts as Ethereum JSON-RPC shows them, shared by every
//! phalanx endpoint that serves history (the devnet's, and each `phalanx node` server's).
//!
//! A block's transactions are its shards' transactions in shard order; each shard's receipts
//! come from the servers that ran it. Block-wide figures — a transaction's index, cumulative
//! gas, log indices, the block's `gasUsed`, `logsBloom` and `receiptsRoot` — exist only once
//! every shard's receipts are put together in that order ([`BlockReceipts::assemble`]). A
//! transaction its shard skipped (invalid: it did not run) keeps its index but has no receipt
//! and no logs.

use std::collections::BTreeMap;

use alloy_consensus::proofs::{calculate_receipt_root, ordered_trie_root_encoded};
use alloy_consensus::{Eip658Value, ReceiptEnvelope, ReceiptWithBloom};
use alloy_primitives::{B256, Bloom, Bytes, keccak256};
use serde_json::{Value, json};

use crate::block::{Receipt, TxStatus};
use crate::header::ExecHeader;
use crate::rpc::quantity;

/// The block a transaction is shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    /// Its hash (the execution header's).
    pub hash: B256,
    /// Its height.
    pub number: u64,
    /// Its base fee (wei): what `gasPrice` of an EIP-1559 transaction resolves to.
    pub basefee: u64,
}

/// A transaction as JSON-RPC shows it (`null` if `raw` does not decode); `at` is its block
/// and index once in a block.
pub fn transaction_json(raw: &Bytes, at: Option<(&BlockRef, usize)>) -> Value {
    use alloy_consensus::Transaction as _;
    use alloy_consensus::transaction::SignerRecoverable as _;
    let Ok(tx) = phalanx_types::transaction::decode(raw) else {
        return Value::Null;
    };
    let from = tx.recover_signer().ok();
    let sig = tx.signature();
    let ty = tx.tx_type() as u8;
    let parity = u64::from(sig.v());
    let v = match (ty, tx.chain_id()) {
        (0, Some(id)) => id * 2 + 35 + parity,
        (0, None) => 27 + parity,
        _ => parity,
    };
    let basefee = at.map(|(b, _)| b.basefee);
    json!({
        "hash": keccak256(raw),
        "nonce": quantity(tx.nonce()),
        "from": from,
        "to": tx.to(),
        "value": quantity(tx.value()),
        "gas": quantity(tx.gas_limit()),
        "gasPrice": quantity(tx.effective_gas_price(basefee)),
        "maxFeePerGas": quantity(tx.max_fee_per_gas()),
        "maxPriorityFeePerGas": tx.max_priority_fee_per_gas().map(quantity),
        "input": tx.input(),
        "type": quantity(ty),
        "chainId": tx.chain_id().map(quantity),
        "accessList": tx.access_list().cloned().unwrap_or_default(),
        "v": quantity(v),
        "yParity": quantity(parity),
        "r": quantity(sig.r()),
        "s": quantity(sig.s()),
        "blockHash": at.map(|(b, _)| b.hash),
        "blockNumber": at.map(|(b, _)| quantity(b.number)),
        "transactionIndex": at.map(|(_, i)| quantity(i as u64)),
    })
}

/// Block `header` as JSON-RPC shows it, with its executed transactions' receipts (`block`),
/// every transaction it lists in block order (`raw`: `(shard, encoding)`) and the state root
/// after it; transactions as hashes or (`full`) as objects. `hash` is the execution header's
/// hash, not an RLP header's.
pub fn block_json(
    header: &ExecHeader,
    state_root: B256,
    block: &BlockReceipts,
    raw: &[(u16, Bytes)],
    full: bool,
) -> Value {
    let transactions: Vec<Value> = if full {
        raw.iter()
            .enumerate()
            .map(|(i, (_, tx))| transaction_json(tx, Some((&block.block, i))))
            .collect()
    } else {
        block.hashes.iter().map(|x| json!(x)).collect()
    };
    json!({
        "number": quantity(header.number),
        "hash": block.block.hash,
        "parentHash": header.parent,
        "timestamp": quantity(header.timestamp),
        "baseFeePerGas": quantity(header.basefee),
        "gasLimit": quantity(header.block_gas_limit),
        "gasUsed": quantity(block.gas_used()),
        "miner": header.producer_reward,
        "mixHash": header.prevrandao,
        "stateRoot": state_root,
        "nonce": "0x0000000000000000",
        "difficulty": "0x0",
        "totalDifficulty": "0x0",
        "extraData": "0x",
        "logsBloom": block.bloom(),
        "sha3Uncles": B256::ZERO,
        "transactionsRoot": transactions_root(raw.iter().map(|(_, tx)| tx)),
        "receiptsRoot": block.receipts_root(),
        "size": "0x0",
        "uncles": [],
        "transactions": transactions,
    })
}

/// The transactions root: Ethereum's ordered trie of every transaction the block lists (its
/// EIP-2718 encodings), skipped ones included.
pub fn transactions_root<'a>(raw: impl IntoIterator<Item = &'a Bytes>) -> B256 {
    let encoded: Vec<&Bytes> = raw.into_iter().collect();
    ordered_trie_root_encoded(&encoded)
}

/// An executed transaction of a block with its receipt.
#[derive(Debug, Clone)]
pub struct TxReceipt {
    /// Index in the block.
    pub index: usize,
    /// Hash.
    pub hash: B256,
    /// Encoding.
    pub raw: Bytes,
    /// The receipt its shard's servers kept.
    pub receipt: Receipt,
    /// Gas used by the block up to and including it.
    pub cumulative: u64,
    /// Block-wide index of its first log.
    pub first_log: u64,
}

/// A block's executed transactions with their receipts.
#[derive(Debug, Clone)]
pub struct BlockReceipts {
    /// The block.
    pub block: BlockRef,
    /// Every transaction's hash, in block order (skipped ones included).
    pub hashes: Vec<B256>,
    /// The executed ones, with receipts.
    pub txs: Vec<TxReceipt>,
    /// `false` while some transaction's receipt is not held (its shard's receipts were not
    /// found, or do not list it at its place).
    pub complete: bool,
}

impl BlockRef {
    /// The block of `header`.
    pub fn of(header: &ExecHeader) -> Self {
        Self {
            hash: header.hash(),
            number: header.number,
            basefee: header.basefee,
        }
    }
}

impl BlockReceipts {
    /// Puts a block together from its transactions in block order (`(shard, encoding)`) and
    /// each shard's receipts in shard order: the `i`-th transaction of a shard takes that
    /// shard's `i`-th receipt when the receipt names its hash. A transaction without one
    /// makes the block incomplete; a skipped one counts in the indices only.
    pub fn assemble(
        block: BlockRef,
        raw: Vec<(u16, Bytes)>,
        by_shard: &BTreeMap<u16, Vec<Receipt>>,
    ) -> Self {
        let mut out = BlockReceipts {
            block,
            hashes: Vec::with_capacity(raw.len()),
            txs: Vec::new(),
            complete: true,
        };
        let (mut cumulative, mut log_index) = (0u64, 0u64);
        let mut position: BTreeMap<u16, usize> = BTreeMap::new();
        for (index, (shard, tx_raw)) in raw.into_iter().enumerate() {
            let at = position.entry(shard).or_insert(0);
            let found = by_shard.get(&shard).and_then(|r| r.get(*at)).cloned();
            *at += 1;
            let hash = keccak256(&tx_raw);
            out.hashes.push(hash);
            let Some(receipt) = found.filter(|r| r.tx_hash == hash) else {
                out.complete = false;
                continue;
            };
            if matches!(receipt.status, TxStatus::Skipped(_)) {
                continue;
            }
            cumulative += receipt.gas_used;
            let first_log = log_index;
            log_index += receipt.logs.len() as u64;
            out.txs.push(TxReceipt {
                index,
                hash,
                raw: tx_raw,
                receipt,
                cumulative,
                first_log,
            });
        }
        out
    }

    /// Gas used by the block.
    pub fn gas_used(&self) -> u64 {
        self.txs.last().map_or(0, |t| t.cumulative)
    }

    /// The union of its logs' blooms.
    pub fn bloom(&self) -> Bloom {
        let mut bloom = Bloom::ZERO;
        for t in &self.txs {
            for log in &t.receipt.logs {
                bloom.accrue_log(log);
            }
        }
        bloom
    }

    /// The receipts root: the ordered trie of the executed transactions' EIP-2718 receipts
    /// (status, block-cumulative gas, bloom, logs). A transaction its shard skipped has no
    /// receipt, so it has no entry here although the transactions root lists it.
    pub fn receipts_root(&self) -> B256 {
        let receipts: Vec<ReceiptEnvelope> = self
            .txs
            .iter()
            .map(|t| {
                let receipt = ReceiptWithBloom::from(alloy_consensus::Receipt {
                    status: Eip658Value::Eip658(t.receipt.status == TxStatus::Success),
                    cumulative_gas_used: t.cumulative,
                    logs: t.receipt.logs.clone(),
                });
                match t.raw.first() {
                    Some(1) => ReceiptEnvelope::Eip2930(receipt),
                    Some(2) => ReceiptEnvelope::Eip1559(receipt),
                    Some(3) => ReceiptEnvelope::Eip4844(receipt),
                    Some(4) => ReceiptEnvelope::Eip7702(receipt),
                    _ => ReceiptEnvelope::Legacy(receipt),
                }
            })
            .collect();
        calculate_receipt_root(&receipts)
    }

    /// The logs of `tx` as JSON-RPC shows them.
    pub fn logs_json(&self, tx: &TxReceipt) -> Vec<Value> {
        tx.receipt
            .logs
            .iter()
            .enumerate()
            .map(|(i, log)| {
                json!({
                    "address": log.address,
                    "topics": log.data.topics(),
                    "data": log.data.data,
                    "logIndex": quantity(tx.first_log + i as u64),
                    "transactionIndex": quantity(tx.index as u64),
                    "transactionHash": tx.hash,
                    "blockHash": self.block.hash,
                    "blockNumber": quantity(self.block.number),
                    "removed": false,
                })
            })
            .collect()
    }

    /// The receipt of `tx` as JSON-RPC shows it.
    pub fn receipt_json(&self, tx: &TxReceipt) -> Value {
        let object = transaction_json(&tx.raw, Some((&self.block, tx.index)));
        let mut bloom = Bloom::ZERO;
        for log in &tx.receipt.logs {
            bloom.accrue_log(log);
        }
        json!({
            "transactionHash": tx.hash,
            "transactionIndex": quantity(tx.index as u64),
            "blockHash": self.block.hash,
            "blockNumber": quantity(self.block.number),
            "from": tx.receipt.sender.or_else(|| object["from"].as_str().and_then(|s| s.parse().ok())),
            "to": object["to"],
            "cumulativeGasUsed": quantity(tx.cumulative),
            "gasUsed": quantity(tx.receipt.gas_used),
            "effectiveGasPrice": object["gasPrice"],
            "contractAddress": tx.receipt.contract_address,
            "logs": self.logs_json(tx),
            "logsBloom": bloom,
            "status": if tx.receipt.status == TxStatus::Success { "0x1" } else { "0x0" },
            "type": object["type"],
        })
    }

    /// Every executed transaction's receipt, in block order (`eth_getBlockReceipts`).
    pub fn receipts_json(&self) -> Value {
        Value::Array(self.txs.iter().map(|t| self.receipt_json(t)).collect())
    }

    /// The receipt of the transaction with hash `hash`, if it ran in this block.
    pub fn receipt_of(&self, hash: B256) -> Option<Value> {
        self.txs
            .iter()
            .find(|t| t.hash == hash)
            .map(|t| self.receipt_json(t))
    }
}
