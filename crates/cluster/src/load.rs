//! A deterministic transfer load for the simulator, the benchmark and tests: funded senders,
//! each bound to one shard, paying recipients of their own shard, so shards never conflict.
//! Blocks are chained [`ExecHeader`]s with signed EIP-1559 transfers.

use std::collections::BTreeMap;

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_primitives::{Address, B256, TxKind, U256, keccak256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use phalanx_execution::changes::Changes;
use phalanx_types::consensus::Shard;
use ssz_types::VariableList;
use tree_hash::TreeHash;

use crate::wire::ExecHeader;

/// Chain id of the load's transactions.
pub const CHAIN_ID: u64 = 7331;
const BASEFEE: u64 = 1_000_000_000;

/// Senders and their nonces, and the chain's last header.
pub struct Load {
    shards: u16,
    senders: Vec<Vec<(PrivateKeySigner, Address, u64)>>,
    recipients: Vec<Vec<Address>>,
    head: ExecHeader,
    cursor: usize,
}

impl std::fmt::Debug for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Load")
            .field("shards", &self.shards)
            .field("height", &self.head.number)
            .finish_non_exhaustive()
    }
}

fn signer(seed: u64, i: u64) -> PrivateKeySigner {
    let mut n = i;
    loop {
        let mut pre = [0u8; 16];
        pre[..8].copy_from_slice(&seed.to_be_bytes());
        pre[8..].copy_from_slice(&n.to_be_bytes());
        if let Ok(s) = PrivateKeySigner::from_bytes(&keccak256(pre)) {
            return s;
        }
        n = n.wrapping_add(1 << 40);
    }
}

/// A load that cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("load: {0}")]
pub struct LoadError(pub String);

impl Load {
    /// `senders` funded senders per shard, from `seed`.
    pub fn new(shards: u16, senders: usize, seed: u64) -> Self {
        let mut k = 0u64;
        let senders = (0..shards)
            .map(|_| {
                (0..senders)
                    .map(|_| {
                        k += 1;
                        let s = signer(seed, k);
                        let a = s.address();
                        (s, a, 0)
                    })
                    .collect()
            })
            .collect();
        let recipients = (0..shards)
            .map(|i| {
                (0..4)
                    .map(|j| Address::from_slice(&keccak256(format!("{seed} {i} {j}"))[12..]))
                    .collect()
            })
            .collect();
        let head = ExecHeader {
            number: 0,
            parent: B256::ZERO,
            timestamp: 1_700_000_000,
            chain_id: CHAIN_ID,
            basefee: BASEFEE,
            prevrandao: B256::ZERO,
            shard_gas_limit: 30_000_000,
            block_gas_limit: 30_000_000 * u64::from(shards.max(1)),
            validator_reward: Address::repeat_byte(0xaa),
            producer_reward: Address::repeat_byte(0xbb),
            fee_split_bps: 5_000,
            shard_roots: VariableList::empty(),
        };
        Self {
            shards,
            senders,
            recipients,
            head,
            cursor: 0,
        }
    }

    /// The genesis header (height 0, no shards).
    pub fn genesis_header(&self) -> ExecHeader {
        let mut g = self.head.clone();
        g.number = 0;
        g.parent = B256::ZERO;
        g.shard_roots = VariableList::empty();
        g
    }

    /// The genesis allocation: every sender funded.
    pub fn genesis_alloc(&self) -> Changes {
        let mut changes = Changes::default();
        for (_, address, _) in self.senders.iter().flatten() {
            changes.fund(*address, U256::from(10u64).pow(U256::from(21u64)));
        }
        changes
    }

    /// The next block: `per_shard` transfers in each shard.
    pub fn next_block(&mut self, per_shard: usize) -> Result<(ExecHeader, Vec<Shard>), LoadError> {
        let mut shards = Vec::with_capacity(self.shards as usize);
        for i in 0..self.shards as usize {
            let mut txs = Vec::with_capacity(per_shard);
            let count = self.senders[i].len();
            for j in 0..per_shard.min(count) {
                let recipient = self.recipients[i][(self.cursor + j) % 4];
                let (key, _, nonce) = &mut self.senders[i][(self.cursor + j) % count];
                let tx = TxEip1559 {
                    chain_id: CHAIN_ID,
                    nonce: *nonce,
                    gas_limit: 21_000,
                    max_fee_per_gas: u128::from(BASEFEE) * 2,
                    max_priority_fee_per_gas: 1_000_000,
                    to: TxKind::Call(recipient),
                    value: U256::from(1_000u64 + j as u64),
                    access_list: Default::default(),
                    input: Default::default(),
                };
                let sig = key
                    .sign_hash_sync(&tx.signature_hash())
                    .map_err(|e| LoadError(e.to_string()))?;
                *nonce += 1;
                let envelope: alloy_consensus::TxEnvelope = tx.into_signed(sig).into();
                txs.push(phalanx_types::transaction::encode(&envelope));
            }
            shards.push(Shard::from_transactions(txs).map_err(|e| LoadError(format!("{e:?}")))?);
        }
        self.cursor += per_shard;
        let roots: Vec<B256> = shards.iter().map(TreeHash::tree_hash_root).collect();
        let mut header = self.head.clone();
        header.parent = self.head.hash();
        header.number += 1;
        header.timestamp += 2;
        header.prevrandao = keccak256(header.number.to_be_bytes());
        header.shard_roots = VariableList::new(roots).map_err(|e| LoadError(format!("{e:?}")))?;
        self.head = header.clone();
        Ok((header, shards))
    }
}

/// Every shard of `blocks` by block hash, for a block source that answers requests.
pub type History = BTreeMap<B256, (ExecHeader, Vec<Shard>)>;
