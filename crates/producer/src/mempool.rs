//! Pending transactions.
//!
//! Each transaction is decoded and its sender recovered once, on insertion; a transaction
//! that cannot be (bad bytes, bad signature, wrong chain) is refused with a typed error and
//! never stored. Per sender, one transaction per nonce: a second one replaces the first only
//! if it pays a strictly higher fee cap (replace-by-fee). The pool holds at most `capacity`
//! transactions.

use std::collections::BTreeMap;

use alloy_consensus::Transaction as _;
use alloy_consensus::TxEnvelope;
use alloy_consensus::transaction::SignerRecoverable;
use alloy_primitives::{Address, B256, Bytes, TxKind, keccak256};

/// A pending transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingTx {
    /// Encoded bytes, as they go into a shard.
    pub raw: Bytes,
    /// Hash of the encoding.
    pub hash: B256,
    /// Recovered sender.
    pub sender: Address,
    /// Nonce.
    pub nonce: u64,
    /// Gas limit.
    pub gas_limit: u64,
    /// Fee cap per gas (wei).
    pub max_fee_per_gas: u128,
    /// Called or paid address (`None` for contract creation).
    pub to: Option<Address>,
}

/// A transaction the pool refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    /// Not a transaction.
    #[error("undecodable transaction: {0}")]
    Undecodable(String),
    /// No sender recovers from the signature.
    #[error("bad signature")]
    BadSignature,
    /// Missing or wrong chain id.
    #[error("wrong chain id: expected {expected}, got {got:?}")]
    WrongChainId {
        /// The chain's.
        expected: u64,
        /// The transaction's.
        got: Option<u64>,
    },
    /// Same sender and nonce, and not a higher fee.
    #[error("a transaction with this sender and nonce is already pending with a fee cap as high")]
    Underpriced,
    /// Already pending.
    #[error("already pending")]
    Duplicate,
    /// The pool is full.
    #[error("mempool is full ({0} transactions)")]
    Full(usize),
}

/// Pending transactions by sender, then nonce.
#[derive(Debug, Clone)]
pub struct Mempool {
    chain_id: u64,
    capacity: usize,
    len: usize,
    by_sender: BTreeMap<Address, BTreeMap<u64, PendingTx>>,
}

impl Mempool {
    /// An empty pool for `chain_id`.
    pub fn new(chain_id: u64, capacity: usize) -> Self {
        Self {
            chain_id,
            capacity,
            len: 0,
            by_sender: BTreeMap::new(),
        }
    }

    /// Decodes, checks and adds a transaction.
    pub fn insert(&mut self, raw: Bytes) -> Result<B256, MempoolError> {
        let tx: TxEnvelope = phalanx_types::transaction::decode(&raw)
            .map_err(|e| MempoolError::Undecodable(e.to_string()))?;
        if tx.chain_id() != Some(self.chain_id) {
            return Err(MempoolError::WrongChainId {
                expected: self.chain_id,
                got: tx.chain_id(),
            });
        }
        let sender = tx
            .recover_signer()
            .map_err(|_| MempoolError::BadSignature)?;
        let pending = PendingTx {
            hash: keccak256(&raw),
            sender,
            nonce: tx.nonce(),
            gas_limit: tx.gas_limit(),
            max_fee_per_gas: tx.max_fee_per_gas(),
            to: match tx.kind() {
                TxKind::Call(to) => Some(to),
                TxKind::Create => None,
            },
            raw,
        };
        let hash = pending.hash;
        let slots = self.by_sender.entry(sender).or_default();
        match slots.get(&pending.nonce) {
            Some(existing) if existing.hash == hash => return Err(MempoolError::Duplicate),
            Some(existing) if existing.max_fee_per_gas >= pending.max_fee_per_gas => {
                return Err(MempoolError::Underpriced);
            }
            Some(_) => {}
            None => {
                if self.len >= self.capacity {
                    return Err(MempoolError::Full(self.capacity));
                }
                self.len += 1;
            }
        }
        slots.insert(pending.nonce, pending);
        Ok(hash)
    }

    /// Removes what a block included (or what became invalid): every transaction of `sender`
    /// with a nonce below `next_nonce`.
    pub fn prune(&mut self, sender: Address, next_nonce: u64) {
        if let Some(slots) = self.by_sender.get_mut(&sender) {
            let keep = slots.split_off(&next_nonce);
            self.len -= slots.len();
            *slots = keep;
            if slots.is_empty() {
                self.by_sender.remove(&sender);
            }
        }
    }

    /// Number of pending transactions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Each sender's pending transactions in nonce order.
    pub fn by_sender(&self) -> impl Iterator<Item = (&Address, Vec<&PendingTx>)> {
        self.by_sender
            .iter()
            .map(|(a, slots)| (a, slots.values().collect()))
    }
}
