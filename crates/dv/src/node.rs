//! A member's link to its node's validator API ([`phalanx_validator::api`]): the live duty
//! stream in, recovered group signatures out.
//!
//! - [`duty_of`] turns a `duty` event into the member's [`Duty`] and the data the node
//!   proposes: the validator is found by its group public key in the lock (events for other
//!   validators are ignored), the SSZ data is decoded by the event's kind.
//! - [`NodeLink::follow`] follows the stream (reconnecting when the node restarts) and feeds
//!   the member's duty channel.
//! - [`NodeLink::submit_all`] posts every [`Submission`] to the endpoint of its kind. Every
//!   member that recovers a signature submits it; the node accepts the same signed data more
//!   than once and relays it once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::Bytes;
use phalanx_crypto::PublicKeyBytes;
use phalanx_types::{AttestationData, Declaration, Decode, Encode, Epoch, Slot};
use phalanx_validator::api::{self, ApiClient, DutyEvent, SignedDuty};
use tokio::sync::mpsc;

use crate::lock::LockBody;
use crate::member::{Duty, DutyData, DutyKind, RandaoData, Submission};

/// The member's duty and proposal for `event`, if it is for one of the lock's validators and
/// its data decodes.
pub fn duty_of(
    validators: &HashMap<PublicKeyBytes, u32>,
    event: &DutyEvent,
) -> Option<(Duty, DutyData)> {
    let validator = *validators.get(&event.pubkey)?;
    let bytes = &event.data[..];
    let (kind, data) = match event.kind {
        api::DutyKind::Randao => (
            DutyKind::Randao,
            DutyData::Randao(RandaoData {
                slot: Slot(event.slot),
                epoch: Epoch::from_ssz_bytes(bytes).ok()?,
            }),
        ),
        api::DutyKind::Declaration => (
            DutyKind::Declaration,
            DutyData::Declaration(Declaration::from_ssz_bytes(bytes).ok()?),
        ),
        api::DutyKind::Attestation => (
            DutyKind::Attestation,
            DutyData::Attestation(AttestationData::from_ssz_bytes(bytes).ok()?),
        ),
    };
    let duty = Duty {
        validator,
        slot: event.slot,
        kind,
        start_ms: event.start_ms,
        deadline_ms: event.deadline_ms,
    };
    data.fits(kind, event.slot).then_some((duty, data))
}

/// What [`NodeLink::submit_all`] did so far (read while it runs).
#[derive(Debug, Default)]
pub struct SubmitCounts {
    /// Accepted by the node.
    pub accepted: AtomicU64,
    /// Refused or not delivered.
    pub failed: AtomicU64,
}

/// A member's connection to its node.
#[derive(Debug, Clone)]
pub struct NodeLink {
    client: ApiClient,
    /// Group key → position in the lock.
    validators: Arc<HashMap<PublicKeyBytes, u32>>,
    /// Position in the lock → the chain's validator index (learned from the events).
    indices: Arc<Mutex<HashMap<u32, u64>>>,
}

impl NodeLink {
    /// A link to the node `client` talks to, for `lock`'s validators.
    pub fn new(client: ApiClient, lock: &LockBody) -> Self {
        Self {
            client,
            validators: Arc::new(
                lock.validators
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (v.public_key, i as u32))
                    .collect(),
            ),
            indices: Arc::default(),
        }
    }

    /// Follows the node's duty stream into `duties` until it closes or `shutdown`.
    pub async fn follow(
        &self,
        duties: mpsc::Sender<(Duty, DutyData)>,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) {
        let (tx, mut rx) = mpsc::channel::<DutyEvent>(1024);
        let client = self.client.clone();
        let forward = async {
            while let Some(event) = rx.recv().await {
                match duty_of(&self.validators, &event) {
                    Some((duty, data)) => {
                        if let Ok(mut m) = self.indices.lock() {
                            m.insert(duty.validator, event.validator_index);
                        }
                        if duties.send((duty, data)).await.is_err() {
                            return;
                        }
                    }
                    None if self.validators.contains_key(&event.pubkey) => {
                        tracing::warn!(slot = event.slot, kind = ?event.kind,
                            "dv: duty event with data that does not decode or fit; skipped");
                    }
                    None => {}
                }
            }
        };
        tokio::select! {
            () = client.follow_duties(tx, Duration::from_secs(1), shutdown) => {}
            () = forward => {}
        }
    }

    /// Posts each submission to the node until `submissions` closes.
    pub async fn submit_all(
        &self,
        mut submissions: mpsc::UnboundedReceiver<Submission>,
        counts: &SubmitCounts,
    ) {
        while let Some(s) = submissions.recv().await {
            let Some(validator_index) = self
                .indices
                .lock()
                .ok()
                .and_then(|m| m.get(&s.duty.validator).copied())
            else {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let (kind, data) = match &s.data {
                DutyData::Randao(r) => (api::DutyKind::Randao, r.epoch.as_ssz_bytes()),
                DutyData::Declaration(d) => (api::DutyKind::Declaration, d.as_ssz_bytes()),
                DutyData::Attestation(a) => (api::DutyKind::Attestation, a.as_ssz_bytes()),
            };
            let signed = SignedDuty {
                validator_index,
                slot: s.duty.slot,
                data: Bytes::from(data),
                signature: s.signature,
            };
            match self
                .client
                .submit(kind, std::slice::from_ref(&signed))
                .await
            {
                Ok(()) => {
                    counts.accepted.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(slot = s.duty.slot, ?kind, error = %e, "dv: the node refused a group signature");
                }
            }
        }
    }
}
