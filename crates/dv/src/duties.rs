//! Where a member's duties come from.
//!
//! DESIGN.md has members subscribe to their node's live duty stream (the Beacon-API-style
//! validator API). That API is served by the full node, which has not landed yet (issue #8);
//! until it does, [`DutyClock`] stands in for it: a wall-clock duty schedule every member
//! computes the same way, with the data an in-sync node would propose. It is what
//! `phalanx dv run --duties clock` and `phalanx bench dv` use. The schedule follows the chain's
//! rules:
//!
//! - slot `s` starts at `genesis_ms + s·slot_ms`;
//! - one declaration per slot, for validator `s mod V`, starting at the slot's start;
//! - every validator attests once per epoch, validator `v` at the epoch's slot
//!   `v mod slots_per_epoch`, starting a third into the slot (as Ethereum attesters wait for the
//!   block); with `slots_per_epoch = 1` every validator attests every slot (the worst case a
//!   benchmark can ask for);
//! - a duty's deadline is one slot after its start: a signature later than that is of no use
//!   to the chain (an attestation could still be included later, for less reward, but a member
//!   drops the duty's state then). The goal a benchmark measures — done within a third of a
//!   slot — is tighter than the deadline, so a duty whose first round leader is down (one
//!   round timeout, 750 ms) is late but not lost.
//!
//! The data: an attestation at slot `s` of epoch `e` votes head `H(s)`, source `(e−1, C(e−1))`,
//! target `(e, C(e))`; a declaration's parent is `H(s−1)` — deterministic, so honest members
//! propose the same value, as nodes that agree on the head would.

use std::future::Future;
use std::time::Duration;

use alloy_primitives::B256;
use phalanx_types::consensus::{AttestationData, Checkpoint, Declaration};
use phalanx_types::primitives::{Epoch, ProducerIndex, Slot, ValidatorIndex};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::member::{Duty, DutyData, DutyKind};
use crate::run::unix_ms;

/// A wall-clock duty schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DutyClock {
    /// When slot 0 started (Unix ms).
    pub genesis_ms: u64,
    /// Slot length.
    pub slot_ms: u64,
    /// Slots per epoch.
    pub slots_per_epoch: u64,
    /// The cluster's validators.
    pub validators: u32,
}

impl DutyClock {
    /// When `slot` starts.
    pub fn slot_start(&self, slot: u64) -> u64 {
        self.genesis_ms
            .saturating_add(slot.saturating_mul(self.slot_ms))
    }

    /// The slot at `now_ms`.
    pub fn slot_at(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.genesis_ms) / self.slot_ms.max(1)
    }

    /// The duties of `slot`, in start order, with the data to propose.
    pub fn duties(&self, slot: u64) -> Vec<(Duty, DutyData)> {
        let start = self.slot_start(slot);
        let third = self.slot_ms / 3;
        let spe = self.slots_per_epoch.max(1);
        let epoch = slot / spe;
        let mut out = Vec::new();
        if self.validators > 0 {
            let proposer = (slot % u64::from(self.validators)) as u32;
            out.push((
                Duty {
                    validator: proposer,
                    slot,
                    kind: DutyKind::Declaration,
                    start_ms: start,
                    deadline_ms: start + self.slot_ms,
                },
                DutyData::Declaration(Declaration {
                    slot: Slot(slot),
                    proposer_index: ValidatorIndex(u64::from(proposer)),
                    parent_root: root(b"head", slot.saturating_sub(1)),
                    producer: ProducerIndex(0),
                    fee_split_bps: 1000,
                    randao_reveal: Default::default(),
                }),
            ));
        }
        let data = AttestationData {
            slot: Slot(slot),
            committee_index: 0,
            head_root: root(b"head", slot),
            source: Checkpoint {
                epoch: Epoch(epoch.saturating_sub(1)),
                root: root(b"checkpoint", epoch.saturating_sub(1)),
            },
            target: Checkpoint {
                epoch: Epoch(epoch),
                root: root(b"checkpoint", epoch),
            },
        };
        for v in (0..self.validators).filter(|v| u64::from(*v) % spe == slot % spe) {
            out.push((
                Duty {
                    validator: v,
                    slot,
                    kind: DutyKind::Attestation,
                    start_ms: start + third,
                    deadline_ms: start + third + self.slot_ms,
                },
                DutyData::Attestation(data.clone()),
            ));
        }
        out
    }

    /// Sends the duties of slots `from..to` (`to = None`: forever) as each starts, then closes
    /// the stream. Stops early on `shutdown` or when the receiver is gone.
    pub async fn feed(
        self,
        from: u64,
        to: Option<u64>,
        tx: mpsc::Sender<(Duty, DutyData)>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut slot = from;
        while to.is_none_or(|to| slot < to) {
            for (duty, data) in self.duties(slot) {
                let wait = duty.start_ms.saturating_sub(unix_ms());
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(wait)) => {}
                    () = &mut shutdown => return,
                }
                if tx.send((duty, data)).await.is_err() {
                    return;
                }
            }
            slot += 1;
        }
    }
}

fn root(tag: &[u8], n: u64) -> B256 {
    let mut h = Sha256::new();
    h.update(tag);
    h.update(n.to_be_bytes());
    B256::from(<[u8; 32]>::from(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_follows_the_chain_rules() {
        let clock = DutyClock {
            genesis_ms: 1_000,
            slot_ms: 12_000,
            slots_per_epoch: 4,
            validators: 10,
        };
        assert_eq!(clock.slot_at(1_000 + 12_000 * 5 + 1), 5);
        let d = clock.duties(5);
        // One declaration (validator 5) and the attesters with v ≡ 5 ≡ 1 (mod 4): 1, 5, 9.
        assert_eq!(d[0].0.kind, DutyKind::Declaration);
        assert_eq!(d[0].0.validator, 5);
        let attesters: Vec<u32> = d[1..].iter().map(|(x, _)| x.validator).collect();
        assert_eq!(attesters, vec![1, 5, 9]);
        for (duty, data) in &d {
            assert!(data.fits(duty.kind, 5));
            assert!(duty.start_ms < duty.deadline_ms);
        }
        // Across one epoch every validator attests exactly once.
        let mut count = [0u32; 10];
        for s in 8..12 {
            for (duty, _) in clock.duties(s) {
                if duty.kind == DutyKind::Attestation {
                    count[duty.validator as usize] += 1;
                }
            }
        }
        assert_eq!(count, [1; 10]);
    }
}
