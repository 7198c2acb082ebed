//! The devnet's built-in transaction load (`--load TX_PER_S`): signed EIP-1559 transfers from
//! accounts funded at genesis for the load alone (never the printed development accounts, so
//! a wallet using those never races the load for nonces), each sender paying its own
//! recipient so the packer can spread senders over shards.
//!
//! Each sender keeps at most [`MAX_AHEAD`] transactions beyond its executed nonce; a sender
//! whose executed nonce has not moved for [`RESYNC_AFTER`] while it is ahead restarts from the
//! executed nonce (its transactions were in an orphaned block or dropped).

use std::sync::Arc;
use std::time::Duration;

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_primitives::{Address, B256, TxKind, U256, keccak256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use phalanx_execution::store::StateStore;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::pool::{Pool, state_nonce};

/// Transactions a sender may have beyond its executed nonce.
pub const MAX_AHEAD: u64 = 4_000;
/// How long a sender ahead of the state may see no progress before it resyncs.
pub const RESYNC_AFTER: Duration = Duration::from_secs(60);

struct Sender {
    key: PrivateKeySigner,
    address: Address,
    recipient: Address,
    next: u64,
    executed: u64,
    progressed: Instant,
}

/// Runs the load until `shutdown`: `tx_per_s` transfers a second into `pool`.
pub async fn run(
    keys: Vec<B256>,
    chain_id: u64,
    tx_per_s: u64,
    pool: Arc<Pool>,
    state: Arc<StateStore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut senders: Vec<Sender> = keys
        .iter()
        .filter_map(|k| PrivateKeySigner::from_bytes(k).ok())
        .map(|key| {
            let address = key.address();
            Sender {
                recipient: Address::from_slice(&keccak256(address)[12..]),
                key,
                address,
                next: 0,
                executed: 0,
                progressed: Instant::now(),
            }
        })
        .collect();
    if senders.is_empty() || tx_per_s == 0 {
        return;
    }
    let tick = Duration::from_millis(100);
    let mut interval = tokio::time::interval(tick);
    let mut credit = 0f64;
    let mut cursor = 0usize;
    let mut last_sync = Instant::now() - Duration::from_secs(10);
    loop {
        tokio::select! {
            _ = shutdown.changed() => if *shutdown.borrow() { return; },
            _ = interval.tick() => {}
        }
        if last_sync.elapsed() >= Duration::from_secs(2) {
            last_sync = Instant::now();
            for s in &mut senders {
                let executed = state_nonce(&state, s.address);
                if executed > s.executed {
                    s.executed = executed;
                    s.progressed = Instant::now();
                }
                if s.next < executed
                    || (s.next > executed && s.progressed.elapsed() >= RESYNC_AFTER)
                {
                    s.next = executed;
                    s.progressed = Instant::now();
                }
            }
        }
        credit += tx_per_s as f64 * tick.as_secs_f64();
        let mut budget = credit.floor() as u64;
        credit -= budget as f64;
        let mut idle = 0;
        let count = senders.len();
        while budget > 0 && idle < count {
            let s = &mut senders[cursor % count];
            cursor += 1;
            if s.next >= s.executed + MAX_AHEAD {
                idle += 1;
                continue;
            }
            let tx = TxEip1559 {
                chain_id,
                nonce: s.next,
                gas_limit: 21_000,
                max_fee_per_gas: u128::from(crate::exec::BASEFEE) * 2,
                max_priority_fee_per_gas: 1_000_000,
                to: TxKind::Call(s.recipient),
                value: U256::from(1_000u64),
                access_list: Default::default(),
                input: Default::default(),
            };
            let Ok(sig) = s.key.sign_hash_sync(&tx.signature_hash()) else {
                idle += 1;
                continue;
            };
            let envelope: alloy_consensus::TxEnvelope = tx.into_signed(sig).into();
            let raw = phalanx_types::transaction::encode(&envelope);
            let inserted = pool.insert(raw.into()).is_ok();
            if inserted {
                s.next += 1;
                budget -= 1;
                idle = 0;
            } else {
                idle += 1;
            }
        }
    }
}
