//! A deterministic transfer load for the simulator, the benchmark and tests: funded senders,
//! each bound to one shard, paying recipients of their own shard, so shards never conflict.
//! Blocks are chained [`ExecHeader`]s with signed EIP-1559 transfers.
//!
//! With [`Load::with_work`], each transaction is instead a call to a compute contract
//! ([`WORK_CONTRACT`], in genesis) that hashes 32 bytes of memory `work` times and writes no
//! storage: heavier execution per transaction with the same state writes as a transfer (the
//! sender's nonce and balance), so shards still never conflict.

use std::collections::BTreeMap;

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_primitives::{Address, B256, Bytes, TxKind, U256, address, keccak256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use phalanx_execution::changes::{AccountChange, AccountFields, Changes};
use phalanx_types::consensus::Shard;
use ssz_types::VariableList;
use tree_hash::TreeHash;

use crate::wire::ExecHeader;

/// Chain id of the load's transactions.
pub const CHAIN_ID: u64 = 7331;
const BASEFEE: u64 = 1_000_000_000;

/// Where the compute contract of [`Load::with_work`] lives.
pub const WORK_CONTRACT: Address = address!("00000000000000000000000000000000000c0de0");

/// The compute contract's runtime code: `n` = the first calldata word; while `n != 0`:
/// `mem[0..32] = keccak256(mem[0..32]); n -= 1`; then stop (about 90 gas per round).
const WORK_CODE: [u8; 26] = [
    0x60, 0x00, // PUSH1 0
    0x35, // CALLDATALOAD            [n]
    0x5b, // JUMPDEST (pc 3)
    0x80, // DUP1                    [n n]
    0x15, // ISZERO                  [n n==0]
    0x60, 0x18, // PUSH1 24 (end)
    0x57, // JUMPI                   [n]
    0x60, 0x20, // PUSH1 32 (size)
    0x60, 0x00, // PUSH1 0 (offset)
    0x20, // KECCAK256               [n h]
    0x60, 0x00, // PUSH1 0
    0x52, // MSTORE                  [n]
    0x60, 0x01, // PUSH1 1
    0x90, // SWAP1                   [1 n]
    0x03, // SUB                     [n-1]
    0x60, 0x03, // PUSH1 3
    0x56, // JUMP
    0x5b, // JUMPDEST (pc 24)
    0x00, // STOP
];

/// Gas a call with `work` rounds is given: the intrinsic cost and calldata, then a margin
/// over the ~90 gas a round costs.
fn work_gas(work: u64) -> u64 {
    30_000 + work.saturating_mul(120)
}

/// Senders and their nonces, and the chain's last header.
pub struct Load {
    shards: u16,
    senders: Vec<Vec<(PrivateKeySigner, Address, u64)>>,
    recipients: Vec<Vec<Address>>,
    head: ExecHeader,
    cursor: usize,
    /// Rounds of the compute contract per transaction; 0: plain transfers.
    work: u64,
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
            work: 0,
        }
    }

    /// Makes every transaction a call to [`WORK_CONTRACT`] running `work` rounds (0: plain
    /// transfers). The contract is in the genesis allocation only when `work > 0`, so the
    /// transfer load's genesis is unchanged.
    pub fn with_work(mut self, work: u64) -> Self {
        self.work = work;
        self
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
        if self.work > 0 {
            let code = Bytes::from_static(&WORK_CODE);
            let code_hash = keccak256(&code);
            let fields = AccountFields {
                nonce: 1,
                balance: U256::ZERO,
                code_hash,
            };
            changes.accounts.insert(
                WORK_CONTRACT,
                AccountChange {
                    fields: Some(Some(fields)),
                    ..Default::default()
                },
            );
            changes.codes.insert(code_hash, code);
        }
        changes
    }

    /// The next block: `per_shard` transactions (at most one per sender) in each shard.
    pub fn next_block(&mut self, per_shard: usize) -> Result<(ExecHeader, Vec<Shard>), LoadError> {
        // Every call carries the same calldata (the round count) and gas limit.
        let (gas, input) = if self.work > 0 {
            let rounds = U256::from(self.work).to_be_bytes::<32>();
            (work_gas(self.work), Bytes::copy_from_slice(&rounds))
        } else {
            (21_000, Bytes::new())
        };
        let txs_per_shard = per_shard.min(self.senders.first().map_or(0, Vec::len));
        let needed = gas.saturating_mul(txs_per_shard as u64);
        if needed > self.head.shard_gas_limit {
            return Err(LoadError(format!(
                "{txs_per_shard} transactions of {gas} gas need {needed} gas, over the shard gas limit of {}",
                self.head.shard_gas_limit
            )));
        }
        let mut shards = Vec::with_capacity(self.shards as usize);
        for i in 0..self.shards as usize {
            let mut txs = Vec::with_capacity(txs_per_shard);
            let count = self.senders[i].len();
            for j in 0..txs_per_shard {
                let recipient = self.recipients[i][(self.cursor + j) % 4];
                let (key, _, nonce) = &mut self.senders[i][(self.cursor + j) % count];
                let (to, value) = if self.work > 0 {
                    (WORK_CONTRACT, U256::ZERO)
                } else {
                    (recipient, U256::from(1_000u64 + j as u64))
                };
                let tx = TxEip1559 {
                    chain_id: CHAIN_ID,
                    nonce: *nonce,
                    gas_limit: gas,
                    max_fee_per_gas: u128::from(BASEFEE) * 2,
                    max_priority_fee_per_gas: 1_000_000,
                    to: TxKind::Call(to),
                    value,
                    access_list: Default::default(),
                    input: input.clone(),
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

/// The shards' transactions as the state store executes them (`StateStore::execute`).
pub fn raw_transactions(shards: &[Shard]) -> Vec<Vec<Bytes>> {
    shards
        .iter()
        .map(|s| {
            s.transactions
                .iter()
                .map(|t| Bytes::from(t.to_vec()))
                .collect()
        })
        .collect()
}

/// Every shard of `blocks` by block hash, for a block source that answers requests.
pub type History = BTreeMap<B256, (ExecHeader, Vec<Shard>)>;

#[cfg(test)]
mod tests {
    use super::*;
    use phalanx_execution::block::TxStatus;
    use phalanx_execution::store::StateStore;

    /// Gas each transaction of one block of `load` used, executed on a fresh store.
    fn gas_per_tx(load: Load) -> Vec<u64> {
        let mut load = load;
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("s.redb")).unwrap();
        let genesis = load.genesis_header().hash();
        store.init_genesis(genesis, &load.genesis_alloc()).unwrap();
        let (header, shards) = load.next_block(3).unwrap();
        let result = store
            .execute(
                genesis,
                header.hash(),
                &header.env(),
                &raw_transactions(&shards),
            )
            .unwrap();
        assert_eq!(result.void, None);
        result
            .shards
            .iter()
            .flat_map(|s| &s.receipts)
            .map(|r| {
                assert_eq!(r.status, TxStatus::Success);
                r.gas_used
            })
            .collect()
    }

    #[test]
    fn work_calls_run_the_contract_loop_in_every_shard() {
        let transfers = gas_per_tx(Load::new(2, 3, 1));
        assert_eq!(transfers, vec![21_000; 6]);
        let light = gas_per_tx(Load::new(2, 3, 1).with_work(10));
        let heavy = gas_per_tx(Load::new(2, 3, 1).with_work(1_000));
        assert_eq!(light.len(), 6);
        assert_eq!(heavy.len(), 6);
        for (l, h) in light.iter().zip(&heavy) {
            // 990 more rounds of the loop, each at least a keccak (36 gas) and a jump.
            assert!(h - l >= 990 * 80, "{l} vs {h}");
            assert!(*h <= work_gas(1_000), "{h}");
        }
    }
}
