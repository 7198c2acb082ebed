//! The ceremony between processes: a [`ClusterDefinition`] every operator agreed on out of band
//! (who takes part, their identity keys and addresses, `m`, how many validators), and the async
//! driver that runs one [`Participant`] over a [`Network`] until it has a lock.
//!
//! The driver is thin on purpose: all protocol rules live in [`crate::dkg`]. It encodes
//! [`DkgMessage`]s as JSON direct messages to each peer, ticks the participant every
//! [`TICK`] (which resends unacknowledged messages and enforces the deadline), reports progress
//! when it changes, and once its own result is in *lingers* — keeps acknowledging peers'
//! resends — until it has been quiet for [`QUIET`] or [`LINGER`] passed, so a slow peer is not
//! left waiting for an ack from a process that already exited.
//!
//! Messages that do not decode, or come from a peer that is not a participant, are logged and
//! dropped; they never fail the ceremony.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use phalanx_net::{NetError, NetEvent, Network, PeerKey};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::ballot::{BallotRecord, Proposal};
use crate::create::default_threshold;
use crate::dkg::{
    CeremonySpec, DkgError, DkgMessage, DkgOutput, Participant, Progress, ReshareSpec,
};
use crate::identity::{OperatorId, OperatorKey};
use crate::lock::{ClusterLock, Operator};
use crate::threshold::SecretShare;

/// How often the participant is ticked.
pub const TICK: Duration = Duration::from_millis(25);
/// Once done, exit after this long without a message…
pub const QUIET: Duration = Duration::from_millis(1500);
/// …or after this long in any case.
pub const LINGER: Duration = Duration::from_secs(10);

/// Errors of a ceremony run.
#[derive(Debug, thiserror::Error)]
pub enum CeremonyError {
    /// The protocol failed (bad dealer, timeout naming the missing operators, mismatch).
    #[error(transparent)]
    Dkg(#[from] DkgError),
    /// The network failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// Interrupted by shutdown.
    #[error("ceremony interrupted")]
    Interrupted,
    /// The definition file.
    #[error("cluster definition {path}: {reason}")]
    Definition {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// What the operators agree on before a ceremony (`cluster-definition.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterDefinition {
    /// Cluster name.
    pub name: String,
    /// Threshold m (default ⌈2n/3⌉).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<usize>,
    /// How many distributed validators.
    pub validators: usize,
    /// The operators, in lock order.
    pub operators: Vec<Operator>,
}

impl ClusterDefinition {
    /// Reads and parses a definition file.
    pub fn read(path: &Path) -> Result<Self, CeremonyError> {
        read_json(path)
    }

    /// The ceremony it defines (a fresh key).
    pub fn spec(&self) -> CeremonySpec {
        CeremonySpec {
            name: self.name.clone(),
            threshold: self
                .threshold
                .unwrap_or_else(|| default_threshold(self.operators.len())),
            validators: self.validators,
            operators: self.operators.clone(),
            reshare: None,
        }
    }
}

/// A membership change every operator agreed on out of band (`reshare-definition.json`): the
/// new operator set and which current members deal their shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReshareDefinition {
    /// What changes, in words (it is part of what members vote on).
    pub description: String,
    /// New threshold (default ⌈2n/3⌉ of the new set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<usize>,
    /// The new operators, in lock order.
    pub operators: Vec<Operator>,
    /// Names (in the current lock) of the current members that deal: at least its threshold.
    pub dealers: Vec<String>,
}

impl ReshareDefinition {
    /// Reads and parses a reshare definition file.
    pub fn read(path: &Path) -> Result<Self, CeremonyError> {
        read_json(path)
    }

    fn threshold(&self) -> usize {
        self.threshold
            .unwrap_or_else(|| default_threshold(self.operators.len()))
    }

    /// What the current members vote on.
    pub fn proposal(&self, old: &ClusterLock) -> Proposal {
        Proposal {
            lock_hash: old.lock_hash,
            description: self.description.clone(),
            new_operators: self.operators.iter().map(|o| o.identity).collect(),
            new_threshold: self.threshold(),
        }
    }

    /// The resharing ceremony, approved by `ballot` (which must be about this change).
    pub fn spec(
        &self,
        old: &ClusterLock,
        ballot: Option<BallotRecord>,
    ) -> Result<CeremonySpec, CeremonyError> {
        let bad = |reason: String| CeremonyError::Definition {
            path: "reshare definition".into(),
            reason,
        };
        let mut dealers = Vec::with_capacity(self.dealers.len());
        for name in &self.dealers {
            let op = old
                .body
                .operators
                .iter()
                .find(|o| &o.name == name)
                .ok_or_else(|| {
                    bad(format!(
                        "dealer {name} is not an operator of the current lock"
                    ))
                })?;
            dealers.push(op.identity);
        }
        if let Some(b) = &ballot
            && b.proposal != self.proposal(old)
        {
            return Err(bad(
                "the ballot record is about another change (lock, operators, threshold or description differ)".into(),
            ));
        }
        Ok(CeremonySpec {
            name: old.body.name.clone(),
            operators: self.operators.clone(),
            threshold: self.threshold(),
            validators: old.body.validators.len(),
            reshare: Some(ReshareSpec {
                old: old.clone(),
                dealers,
                ballot,
            }),
        })
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, CeremonyError> {
    let err = |reason: String| CeremonyError::Definition {
        path: path.display().to_string(),
        reason,
    };
    let json = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&json).map_err(|e| err(e.to_string()))
}

fn peer(id: &OperatorId) -> PeerKey {
    PeerKey(id.0)
}

/// Runs `key`'s part of the ceremony `spec` over `net` (whose peers are the participants).
/// `secrets` are a resharing dealer's current shares. Returns the new lock and shares, or
/// `None` for a departing dealer.
pub async fn run_ceremony<N: Network>(
    net: &mut N,
    spec: CeremonySpec,
    key: OperatorKey,
    secrets: Option<Vec<SecretShare>>,
    timeout: Duration,
    progress: impl FnMut(Progress),
    shutdown: impl Future<Output = ()>,
) -> Result<Option<DkgOutput>, CeremonyError> {
    let participants = spec.participants();
    let start = Instant::now();
    let mut rng = ChaCha20Rng::from_os_rng();
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let retry_ms = 500;
    let p = Participant::new(spec, key, secrets, 0, timeout_ms, retry_ms, &mut rng)?;
    let span = tracing::info_span!("dkg", me = %p.id());
    drive(net, p, participants, start, progress, shutdown)
        .instrument(span)
        .await
}

async fn drive<N: Network>(
    net: &mut N,
    mut p: Participant,
    participants: Vec<OperatorId>,
    start: Instant,
    mut progress: impl FnMut(Progress),
    shutdown: impl Future<Output = ()>,
) -> Result<Option<DkgOutput>, CeremonyError> {
    let now = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut tick = tokio::time::interval(TICK);
    let mut shown: Option<Progress> = None;
    let mut done_at: Option<u64> = None;
    let mut last_message = 0u64;
    tokio::pin!(shutdown);
    loop {
        for (to, msg) in p.drain_outbox() {
            match serde_json::to_vec(&msg) {
                Ok(bytes) => net.send(peer(&to), bytes)?,
                Err(e) => tracing::error!(error = %e, "dkg: cannot encode a message"),
            }
        }
        let now_progress = p.progress();
        if shown != Some(now_progress) {
            progress(now_progress);
            shown = Some(now_progress);
        }
        if let Some(err) = p.take_error() {
            return Err(err.into());
        }
        if p.finished() {
            let t = now();
            let since = *done_at.get_or_insert(t);
            let quiet = t.saturating_sub(last_message.max(since));
            if quiet >= QUIET.as_millis() as u64
                || t.saturating_sub(since) >= LINGER.as_millis() as u64
            {
                break;
            }
        }
        tokio::select! {
            ev = net.recv() => match ev {
                None => return Err(NetError::Closed.into()),
                Some(NetEvent::Direct { from, data }) => {
                    let from_id = OperatorId(from.0);
                    if !participants.contains(&from_id) {
                        tracing::warn!(%from, "dkg: message from a non-participant dropped");
                        continue;
                    }
                    match serde_json::from_slice::<DkgMessage>(&data) {
                        Ok(msg) => {
                            last_message = now();
                            p.on_message(from_id, msg);
                        }
                        Err(e) => tracing::warn!(%from, error = %e, "dkg: undecodable message dropped"),
                    }
                }
                Some(NetEvent::Gossip { .. }) => {}
            },
            _ = tick.tick() => p.on_tick(now()),
            () = &mut shutdown => return Err(CeremonyError::Interrupted),
        }
    }
    Ok(p.take_output())
}
