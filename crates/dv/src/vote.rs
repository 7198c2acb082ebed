//! The membership vote between processes: the [`crate::ballot`] scheme run by the current
//! members over the network, producing the verifiable [`BallotRecord`] a reshare needs.
//!
//! One current member is the *coordinator* (by default the first operator of the lock). It
//! only collects and relays; it cannot forge anything, because every ballot is signed and
//! proven, every decryption share is proven, and every member re-verifies the final record
//! before accepting it. A coordinator that misbehaves can only stall the vote.
//!
//! 1. Every voter sends its [`Ballot`] to the coordinator, resending every [`RESEND`] until the
//!    tally arrives.
//! 2. The coordinator waits for a ballot from every member, or — after `ballot_wait` — settles
//!    for the ballots in hand if there are at least `m` (a member being replaced may well be
//!    down). It sends the ballot set (the *tally*) to every member.
//! 3. Each member checks every ballot of the tally and answers with its [`DecryptionShare`] of
//!    the tally (over its key share of the first validator), resending until the record arrives.
//! 4. With `m` valid shares the coordinator builds the [`BallotRecord`] and sends it to every
//!    member until each acknowledges it (or [`LINGER`] passes). Each member verifies it and
//!    returns it.
//!
//! A timeout names the members whose ballots or shares never arrived.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use phalanx_net::{NetError, NetEvent, Network, PeerKey};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::ballot::{Ballot, BallotError, BallotRecord, DecryptionShare, Electorate, Proposal};
use crate::identity::{OperatorId, OperatorKey};
use crate::lock::ClusterLock;
use crate::threshold::SecretShare;

/// How often an unanswered message is sent again.
pub const RESEND: Duration = Duration::from_millis(500);
/// How long the coordinator keeps offering the record to members that did not acknowledge it.
pub const LINGER: Duration = Duration::from_secs(10);

/// Messages of the vote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum VoteMessage {
    /// Voter → coordinator.
    Ballot(Box<Ballot>),
    /// Coordinator → members: the ballots to decrypt the sum of.
    Tally(Vec<Ballot>),
    /// Member → coordinator.
    Decryption(DecryptionShare),
    /// Coordinator → members.
    Record(Box<BallotRecord>),
    /// Member → coordinator: record received.
    Done,
}

/// Errors of a vote.
#[derive(Debug, thiserror::Error)]
pub enum VoteError {
    /// A ballot, share or record failed its check.
    #[error(transparent)]
    Ballot(#[from] BallotError),
    /// The network failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// Not a current member.
    #[error("{0} is not a member of the current lock")]
    NotAMember(OperatorId),
    /// The lock has no validator whose key could carry the vote.
    #[error("the lock has no validators")]
    NoValidators,
    /// Ran out of time.
    #[error("vote timed out while {phase}; nothing arrived from: {}", missing.join(", "))]
    Timeout {
        /// What it waited for.
        phase: &'static str,
        /// Who did not deliver.
        missing: Vec<String>,
    },
    /// The coordinator sent a record that does not verify or is about another proposal.
    #[error("the coordinator's record is invalid: {0}")]
    BadRecord(String),
    /// Interrupted.
    #[error("vote interrupted")]
    Interrupted,
}

/// One member's side of a vote.
#[derive(Debug)]
pub struct VoteParams<'a> {
    /// The current lock.
    pub lock: &'a ClusterLock,
    /// What is voted on.
    pub proposal: Proposal,
    /// This member's identity.
    pub key: OperatorKey,
    /// This member's key share of the lock's first validator.
    pub share: SecretShare,
    /// The vote.
    pub approve: bool,
    /// The coordinator.
    pub coordinator: OperatorId,
    /// How long the coordinator waits for every ballot before settling for `m`.
    pub ballot_wait: Duration,
    /// Overall deadline.
    pub timeout: Duration,
}

fn send<N: Network>(net: &N, to: &OperatorId, msg: &VoteMessage) -> Result<(), NetError> {
    match serde_json::to_vec(msg) {
        Ok(bytes) => net.send(PeerKey(to.0), bytes),
        Err(e) => {
            tracing::error!(error = %e, "vote: cannot encode");
            Ok(())
        }
    }
}

/// Runs this member's part; returns the verified record (approved or not).
pub async fn run_vote<N: Network>(
    net: &mut N,
    params: VoteParams<'_>,
    shutdown: impl Future<Output = ()>,
) -> Result<BallotRecord, VoteError> {
    let body = &params.lock.body;
    let me = params.key.id();
    let members: Vec<OperatorId> = body.operators.iter().map(|o| o.identity).collect();
    if !members.contains(&me) {
        return Err(VoteError::NotAMember(me));
    }
    let first = body.validators.first().ok_or(VoteError::NoValidators)?;
    let electorate = Electorate {
        members: &members,
        threshold: body.threshold,
        group_key: &first.public_key,
        public_shares: &first.public_shares,
    };
    let name = |id: &OperatorId| {
        body.operators
            .iter()
            .find(|o| &o.identity == id)
            .map_or_else(|| id.to_string(), |o| o.name.clone())
    };
    let proposal_hash = params.proposal.hash();
    let mut rng = ChaCha20Rng::from_os_rng();
    let my_ballot = Ballot::cast(
        &params.proposal,
        &first.public_key,
        params.approve,
        &params.key,
        &mut rng,
    )?;
    let coordinating = me == params.coordinator;
    let start = Instant::now();
    let mut resend = tokio::time::interval(RESEND);
    tokio::pin!(shutdown);

    // Member state.
    let mut my_share: Option<DecryptionShare> = None;
    let mut tally: Option<Vec<Ballot>> = None;
    // Coordinator state.
    let mut ballots: BTreeMap<OperatorId, Ballot> = BTreeMap::new();
    let mut shares: BTreeMap<u32, DecryptionShare> = BTreeMap::new();
    let mut record: Option<BallotRecord> = None;
    let mut acked: BTreeSet<OperatorId> = BTreeSet::new();
    let mut record_at: Option<Instant> = None;
    if coordinating {
        ballots.insert(me, my_ballot.clone());
        acked.insert(me);
    }

    loop {
        // Coordinator progress.
        if coordinating && tally.is_none() {
            let all = ballots.len() == members.len();
            let enough = ballots.len() >= body.threshold && start.elapsed() >= params.ballot_wait;
            if all || enough {
                let set: Vec<Ballot> = ballots.values().cloned().collect();
                electorate.check_ballots(&proposal_hash, &set)?;
                tracing::info!(ballots = set.len(), "vote: tally sent");
                tally = Some(set);
            }
        }
        if let Some(t) = &tally
            && my_share.is_none()
        {
            let share = DecryptionShare::create(t, &params.share, &mut rng)?;
            if coordinating {
                shares.insert(share.index, share.clone());
            }
            my_share = Some(share);
        }
        if coordinating
            && record.is_none()
            && let Some(t) = &tally
            && shares.len() >= body.threshold
        {
            let r = electorate.record(
                params.proposal.clone(),
                t.clone(),
                shares.values().cloned().collect(),
            )?;
            tracing::info!(yes = r.yes, approved = r.approved, "vote: record complete");
            record = Some(r);
            record_at = Some(Instant::now());
        }
        if let Some(r) = &record {
            let everyone = acked.len() == members.len();
            let lingered = record_at.is_some_and(|t| t.elapsed() >= LINGER);
            if !coordinating || everyone || lingered {
                return Ok(r.clone());
            }
        }
        if start.elapsed() >= params.timeout {
            let (phase, missing): (&'static str, Vec<String>) = if coordinating && tally.is_none() {
                (
                    "collecting ballots",
                    members
                        .iter()
                        .filter(|m| !ballots.contains_key(m))
                        .map(&name)
                        .collect(),
                )
            } else if coordinating {
                let have: BTreeSet<u32> = shares.keys().copied().collect();
                (
                    "collecting decryption shares",
                    members
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !have.contains(&(*i as u32 + 1)))
                        .map(|(_, m)| name(m))
                        .collect(),
                )
            } else {
                (
                    if tally.is_none() {
                        "waiting for the tally"
                    } else {
                        "waiting for the record"
                    },
                    vec![name(&params.coordinator)],
                )
            };
            return Err(VoteError::Timeout { phase, missing });
        }

        tokio::select! {
            _ = resend.tick() => {
                if coordinating {
                    for m in members.iter().filter(|m| **m != me) {
                        if let Some(r) = &record {
                            if !acked.contains(m) {
                                send(net, m, &VoteMessage::Record(Box::new(r.clone())))?;
                            }
                        } else if let Some(t) = &tally {
                            send(net, m, &VoteMessage::Tally(t.clone()))?;
                        }
                    }
                } else if let Some(s) = &my_share {
                    send(net, &params.coordinator, &VoteMessage::Decryption(s.clone()))?;
                } else {
                    send(net, &params.coordinator, &VoteMessage::Ballot(Box::new(my_ballot.clone())))?;
                }
            }
            ev = net.recv() => {
                let Some(ev) = ev else { return Err(NetError::Closed.into()) };
                let NetEvent::Direct { from, data } = ev else { continue };
                let from = OperatorId(from.0);
                if !members.contains(&from) {
                    continue;
                }
                let msg: VoteMessage = match serde_json::from_slice(&data) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(from = %name(&from), error = %e, "vote: undecodable message dropped");
                        continue;
                    }
                };
                match msg {
                    VoteMessage::Ballot(b) if coordinating && tally.is_none() => {
                        if b.voter != from {
                            tracing::warn!(from = %name(&from), "vote: ballot relayed for someone else dropped");
                        } else if let Err(e) = b.verify(&proposal_hash, &first.public_key) {
                            tracing::warn!(from = %name(&from), error = %e, "vote: invalid ballot dropped");
                        } else {
                            ballots.insert(from, *b);
                        }
                    }
                    VoteMessage::Decryption(s) if coordinating => {
                        let index = body.index_of(&from);
                        if index != Some(s.index) {
                            tracing::warn!(from = %name(&from), "vote: decryption share under another index dropped");
                        } else {
                            shares.insert(s.index, s);
                        }
                    }
                    VoteMessage::Done if coordinating => {
                        acked.insert(from);
                    }
                    VoteMessage::Tally(t) if !coordinating && from == params.coordinator && tally.is_none() => {
                        electorate.check_ballots(&proposal_hash, &t)?;
                        if !t.iter().any(|b| b.voter == me) {
                            tracing::warn!("vote: the tally leaves out this member's ballot");
                        }
                        tally = Some(t);
                    }
                    VoteMessage::Record(r) if !coordinating && from == params.coordinator => {
                        if r.proposal != params.proposal {
                            return Err(VoteError::BadRecord("it is about another proposal".into()));
                        }
                        r.verify(&electorate).map_err(|e| VoteError::BadRecord(e.to_string()))?;
                        send(net, &params.coordinator, &VoteMessage::Done)?;
                        record = Some(*r);
                    }
                    _ => {}
                }
            }
            () = &mut shutdown => return Err(VoteError::Interrupted),
        }
    }
}
