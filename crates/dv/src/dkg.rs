//! The key ceremony: Joint-Feldman distributed key generation and resharing, with no trusted
//! dealer, written as a sans-IO state machine (messages and ticks in, messages and a result
//! out) so the same code runs between processes over libp2p and in the simulator.
//!
//! # Fresh DKG
//!
//! Every operator `d` is a *dealer*: per validator it draws a random polynomial `g_d` of degree
//! `m − 1`, broadcasts the signed Feldman commitments `G_d = g_d·G1` ([`Deal`]) and sends each
//! operator `j` its signed shares `g_d(j)` ([`Shares`]) over the encrypted, authenticated link.
//! Operator `j` checks every share against the dealer's commitments. When every dealer's deal
//! and shares are in and valid, `j`'s key share is `x_j = Σ_d g_d(j)`, the joint public
//! polynomial is `Σ_d G_d`, and the group key is its constant term: nobody ever knew `Σ_d g_d(0)`.
//!
//! # Resharing
//!
//! The dealers are at least `m_old` *current* members; dealer `d` shares its current key share
//! `x_d` (its commitments' constant term must equal its public share in the old lock, which
//! every recipient checks). New member `j` takes `x'_j = Σ_d λ_d g_d(j)` with the Lagrange
//! coefficients of the dealers' old indices, so the new shares lie on a fresh polynomial whose
//! constant term is the unchanged group secret. Old shares are points of the *old* polynomial:
//! they neither combine with new shares nor verify against the new public shares. (Any `m_old`
//! old members who kept their old shares could still sign together; that is inherent to
//! resharing a fixed key, and why members erase old shares once the new lock is signed — see
//! `docs/protocol/dv.md`.)
//!
//! # Faults
//!
//! - **Dropped messages**: every message is resent every `retry_ms` until its recipient acks it;
//!   duplicates are acked and ignored. One slow or lost message never aborts the ceremony.
//! - **Bad dealer**: a share that fails the Feldman check (or, when resharing, commitments that
//!   do not continue the old key) makes the recipient broadcast a [`Complaint`] carrying the
//!   dealer's own signed deal and shares. Anyone re-checks it; the ceremony then fails with
//!   [`DkgError::BadDealer`] naming the dealer. A false complaint is ignored (and logged).
//! - **Missing operator**: at the deadline the ceremony fails with [`DkgError::Timeout`] naming
//!   every operator whose messages did not arrive.
//! - **Disagreement**: each recipient signs the lock hash it computed; a signature over another
//!   hash (a dealer that sent different commitments to different operators) fails with
//!   [`DkgError::LockMismatch`] naming the operator.

use std::collections::{BTreeMap, BTreeSet};

use alloy_primitives::B256;
use blstrs::Scalar;
use phalanx_crypto::bls::PublicKeyBytes;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ballot::BallotRecord;
use crate::identity::{IdentitySignature, OperatorId, OperatorKey};
use crate::lock::{ClusterLock, DistributedValidator, LOCK_VERSION, LockBody, LockError, Operator};
use crate::threshold::{
    Polynomial, PublicPoly, SecretShare, ThresholdError, lagrange_at_zero, scalar_from_bytes,
};

/// Errors of a ceremony.
#[derive(Debug, thiserror::Error)]
pub enum DkgError {
    /// The ceremony's parameters are unusable.
    #[error("invalid ceremony: {0}")]
    Spec(String),
    /// A dealer sent a share that fails the check, proven by its own signed messages.
    #[error("dealer {dealer} sent a bad share (reported by {accuser}): {reason}")]
    BadDealer {
        /// The dealer's name.
        dealer: String,
        /// Who found it.
        accuser: String,
        /// What failed.
        reason: String,
    },
    /// The deadline passed.
    #[error("ceremony timed out in phase {phase}: no messages from {}", missing.join(", "))]
    Timeout {
        /// Phase.
        phase: &'static str,
        /// Operators that did not deliver.
        missing: Vec<String>,
    },
    /// An operator signed a different lock.
    #[error(
        "operator {0} signed a different lock: the dealers did not send everyone the same commitments"
    )]
    LockMismatch(String),
    /// Lock assembly failed.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Key arithmetic failed.
    #[error(transparent)]
    Threshold(#[from] ThresholdError),
}

/// A reshare: the lock being replaced and which of its members deal.
#[derive(Debug, Clone)]
pub struct ReshareSpec {
    /// The current lock.
    pub old: ClusterLock,
    /// Current members that deal their shares (at least the old threshold).
    pub dealers: Vec<OperatorId>,
    /// The vote that approved it.
    pub ballot: Option<BallotRecord>,
}

/// What the ceremony produces.
#[derive(Debug, Clone)]
pub struct CeremonySpec {
    /// Cluster name.
    pub name: String,
    /// The (new) operators, in lock order.
    pub operators: Vec<Operator>,
    /// New threshold m.
    pub threshold: usize,
    /// How many distributed validators (ignored when resharing: the old lock's count).
    pub validators: usize,
    /// Resharing an existing cluster, or a fresh key.
    pub reshare: Option<ReshareSpec>,
}

impl CeremonySpec {
    /// The ceremony's identifier: every message is bound to it.
    pub fn id(&self) -> B256 {
        let mut h = Sha256::new();
        h.update(b"phalanx-dv-ceremony-v1");
        h.update(serde_json::to_vec(&self.operators).unwrap_or_default());
        h.update((self.threshold as u64).to_be_bytes());
        h.update((self.validator_count() as u64).to_be_bytes());
        if let Some(r) = &self.reshare {
            h.update(r.old.lock_hash);
            for d in &r.dealers {
                h.update(d.0);
            }
        }
        B256::from(<[u8; 32]>::from(h.finalize()))
    }

    fn validator_count(&self) -> usize {
        self.reshare
            .as_ref()
            .map_or(self.validators, |r| r.old.body.validators.len())
    }

    /// The dealers: every operator, or the reshare's dealing old members.
    pub fn dealers(&self) -> Vec<OperatorId> {
        match &self.reshare {
            Some(r) => r.dealers.clone(),
            None => self.operators.iter().map(|o| o.identity).collect(),
        }
    }

    /// The recipients: the (new) operators.
    pub fn recipients(&self) -> Vec<OperatorId> {
        self.operators.iter().map(|o| o.identity).collect()
    }

    /// Every participant, dealers first.
    pub fn participants(&self) -> Vec<OperatorId> {
        let mut all = self.dealers();
        for r in self.recipients() {
            if !all.contains(&r) {
                all.push(r);
            }
        }
        all
    }

    /// An operator's name, from the new or the old lock.
    pub fn name_of(&self, id: &OperatorId) -> String {
        self.operators
            .iter()
            .chain(
                self.reshare
                    .iter()
                    .flat_map(|r| r.old.body.operators.iter()),
            )
            .find(|o| &o.identity == id)
            .map_or_else(|| id.to_string(), |o| o.name.clone())
    }

    /// Checks parameters, including the fault-tolerance rule: `m` must leave at least one member
    /// to spare (`m < n`) unless `force`.
    pub fn check(&self, force: bool) -> Result<(), DkgError> {
        let n = self.operators.len();
        if n == 0 || self.threshold == 0 || self.threshold > n {
            return Err(DkgError::Spec(format!(
                "threshold {} must be within 1..={n}",
                self.threshold
            )));
        }
        if self.threshold == n && n > 1 && !force {
            return Err(DkgError::Spec(format!(
                "threshold {m} of {n} leaves no fault tolerance: one member down stops every duty \
                 (use a threshold below {n}, or force it)",
                m = self.threshold
            )));
        }
        let ids: BTreeSet<_> = self.operators.iter().map(|o| o.identity).collect();
        if ids.len() != n {
            return Err(DkgError::Spec("an operator identity appears twice".into()));
        }
        if self.validator_count() == 0 {
            return Err(DkgError::Spec("at least one validator is needed".into()));
        }
        if let Some(r) = &self.reshare {
            let old = &r.old.body;
            if r.dealers.len() < old.threshold {
                return Err(DkgError::Spec(format!(
                    "{} dealers cannot reshare a {}-of-{} key: at least {} current members must deal",
                    r.dealers.len(),
                    old.threshold,
                    old.operators.len(),
                    old.threshold
                )));
            }
            for d in &r.dealers {
                if old.index_of(d).is_none() {
                    return Err(DkgError::Spec(format!(
                        "dealer {d} is not a member of the current lock"
                    )));
                }
            }
            if let Some(b) = &r.ballot {
                if !b.approved {
                    return Err(DkgError::Spec(
                        "the ballot did not approve this change".into(),
                    ));
                }
                let p = &b.proposal;
                if p.lock_hash != r.old.lock_hash
                    || p.new_threshold != self.threshold
                    || p.new_operators != self.recipients()
                {
                    return Err(DkgError::Spec(
                        "the ballot approved a different change (lock, operators or threshold)"
                            .into(),
                    ));
                }
                let members: Vec<OperatorId> = old.operators.iter().map(|o| o.identity).collect();
                let first = old
                    .validators
                    .first()
                    .ok_or_else(|| DkgError::Spec("the current lock has no validators".into()))?;
                let electorate = crate::ballot::Electorate {
                    members: &members,
                    threshold: old.threshold,
                    group_key: &first.public_key,
                    public_shares: &first.public_shares,
                };
                b.verify(&electorate).map_err(|e| {
                    DkgError::Spec(format!("the ballot record does not verify: {e}"))
                })?;
            }
        }
        Ok(())
    }
}

/// A dealer's signed commitments (broadcast).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deal {
    /// Ceremony id.
    pub ceremony: B256,
    /// Dealer.
    pub dealer: OperatorId,
    /// Per validator, the `m` commitments.
    pub commitments: Vec<Vec<PublicKeyBytes>>,
    /// Dealer's signature.
    pub signature: IdentitySignature,
}

impl Deal {
    fn digest(
        ceremony: &B256,
        dealer: &OperatorId,
        commitments: &[Vec<PublicKeyBytes>],
    ) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(b"phalanx-dv-deal-v1");
        h.update(ceremony);
        h.update(dealer.0);
        for v in commitments {
            h.update((v.len() as u64).to_be_bytes());
            for c in v {
                h.update(c);
            }
        }
        h.finalize().to_vec()
    }

    fn signed_ok(&self) -> bool {
        self.dealer.verify(
            &Self::digest(&self.ceremony, &self.dealer, &self.commitments),
            &self.signature,
        )
    }
}

/// A dealer's signed shares for one recipient (sent point to point).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shares {
    /// Ceremony id.
    pub ceremony: B256,
    /// Dealer.
    pub dealer: OperatorId,
    /// Recipient.
    pub recipient: OperatorId,
    /// Per validator, `g_d(j)` as a big-endian scalar.
    pub shares: Vec<B256>,
    /// Dealer's signature.
    pub signature: IdentitySignature,
}

impl Shares {
    /// Shares from `dealer` for `recipient`, signed.
    pub fn signed(
        dealer: &OperatorKey,
        ceremony: B256,
        recipient: OperatorId,
        shares: Vec<B256>,
    ) -> Self {
        let id = dealer.id();
        let signature = dealer.sign(&Self::digest(&ceremony, &id, &recipient, &shares));
        Self {
            ceremony,
            dealer: id,
            recipient,
            shares,
            signature,
        }
    }

    fn digest(
        ceremony: &B256,
        dealer: &OperatorId,
        recipient: &OperatorId,
        shares: &[B256],
    ) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(b"phalanx-dv-shares-v1");
        h.update(ceremony);
        h.update(dealer.0);
        h.update(recipient.0);
        for s in shares {
            h.update(s);
        }
        h.finalize().to_vec()
    }

    fn signed_ok(&self) -> bool {
        self.dealer.verify(
            &Self::digest(&self.ceremony, &self.dealer, &self.recipient, &self.shares),
            &self.signature,
        )
    }
}

/// Evidence that a dealer dealt badly: its own signed messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Complaint {
    /// Who complains.
    pub accuser: OperatorId,
    /// The dealer's deal.
    pub deal: Deal,
    /// The dealer's shares for the accuser.
    pub shares: Shares,
}

/// What travels between participants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// Commitments.
    Deal(Deal),
    /// Shares for the recipient.
    Shares(Shares),
    /// Evidence against a dealer.
    Complaint(Box<Complaint>),
    /// A recipient's signature over the lock hash it computed.
    LockSignature {
        /// The hash.
        lock_hash: B256,
        /// The signature.
        signature: IdentitySignature,
    },
}

/// A message: data to be acked, or an ack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DkgMessage {
    /// Data with a per-sender id.
    Data {
        /// Sender-assigned id.
        id: u64,
        /// Content.
        payload: Payload,
    },
    /// Acknowledges `id`.
    Ack {
        /// The id acknowledged.
        id: u64,
    },
}

/// Counts shown as progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Dealers whose deal and shares arrived and verified.
    pub dealt: usize,
    /// Dealers.
    pub dealers: usize,
    /// Lock signatures collected.
    pub signed: usize,
    /// Recipients.
    pub recipients: usize,
}

/// A finished ceremony, for one participant.
#[derive(Debug, Clone)]
pub struct DkgOutput {
    /// The new lock (all participants hold the same one).
    pub lock: ClusterLock,
    /// This participant's key shares, one per validator (empty for a departing dealer).
    pub shares: Vec<SecretShare>,
}

/// One participant of a ceremony.
pub struct Participant {
    spec: CeremonySpec,
    ceremony: B256,
    key: OperatorKey,
    me: OperatorId,
    deadline_ms: u64,
    retry_ms: u64,
    next_retry_ms: u64,
    next_id: u64,
    unacked: BTreeMap<(OperatorId, u64), Payload>,
    seen: BTreeSet<(OperatorId, u64)>,
    deals: BTreeMap<OperatorId, Deal>,
    shares: BTreeMap<OperatorId, Shares>,
    verified: BTreeSet<OperatorId>,
    body: Option<(LockBody, Vec<SecretShare>)>,
    lock_sigs: BTreeMap<OperatorId, IdentitySignature>,
    early_hashes: BTreeMap<OperatorId, B256>,
    outbox: Vec<(OperatorId, DkgMessage)>,
    output: Option<DkgOutput>,
    failure: Option<DkgError>,
    departed: bool,
}

impl std::fmt::Debug for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Participant")
            .field("me", &self.me)
            .field("progress", &self.progress())
            .finish_non_exhaustive()
    }
}

impl Participant {
    /// Starts the ceremony for `key` at time `now_ms`. `secrets` are the dealer's current key
    /// shares when resharing (one per validator), ignored otherwise.
    pub fn new(
        spec: CeremonySpec,
        key: OperatorKey,
        secrets: Option<Vec<SecretShare>>,
        now_ms: u64,
        timeout_ms: u64,
        retry_ms: u64,
        rng: &mut impl RngCore,
    ) -> Result<Self, DkgError> {
        spec.check(true)?;
        let me = key.id();
        if !spec.participants().contains(&me) {
            return Err(DkgError::Spec(format!(
                "{me} takes no part in this ceremony"
            )));
        }
        let mut p = Self {
            ceremony: spec.id(),
            key,
            me,
            deadline_ms: now_ms.saturating_add(timeout_ms),
            retry_ms: retry_ms.max(1),
            next_retry_ms: now_ms.saturating_add(retry_ms.max(1)),
            next_id: 0,
            unacked: BTreeMap::new(),
            seen: BTreeSet::new(),
            deals: BTreeMap::new(),
            shares: BTreeMap::new(),
            verified: BTreeSet::new(),
            body: None,
            lock_sigs: BTreeMap::new(),
            early_hashes: BTreeMap::new(),
            outbox: Vec::new(),
            output: None,
            failure: None,
            departed: false,
            spec,
        };
        if p.spec.dealers().contains(&me) {
            p.deal(secrets, rng)?;
        }
        p.advance();
        Ok(p)
    }

    /// The operator this participant is.
    pub fn id(&self) -> OperatorId {
        self.me
    }

    /// How far the ceremony got.
    pub fn progress(&self) -> Progress {
        Progress {
            dealt: self.verified.len(),
            dealers: self.spec.dealers().len(),
            signed: self.lock_sigs.len(),
            recipients: self.spec.recipients().len(),
        }
    }

    /// Messages to send now: `(recipient, message)`.
    pub fn drain_outbox(&mut self) -> Vec<(OperatorId, DkgMessage)> {
        std::mem::take(&mut self.outbox)
    }

    /// The new lock and this participant's shares, once the ceremony succeeded.
    pub fn output(&self) -> Option<&DkgOutput> {
        self.output.as_ref()
    }

    /// Takes the output.
    pub fn take_output(&mut self) -> Option<DkgOutput> {
        self.output.take()
    }

    /// Whether this participant has a result: failed, or done with nothing left to deliver
    /// (a departing dealer is done once every recipient acked its dealing).
    pub fn finished(&self) -> bool {
        self.failure.is_some()
            || ((self.output.is_some() || self.departed) && self.unacked.is_empty())
    }

    fn done(&self) -> bool {
        self.failure.is_some() || self.output.is_some() || self.departed
    }

    fn deal(
        &mut self,
        secrets: Option<Vec<SecretShare>>,
        rng: &mut impl RngCore,
    ) -> Result<(), DkgError> {
        let count = self.spec.validator_count();
        let constants: Vec<Option<Scalar>> = match (&self.spec.reshare, secrets) {
            (None, _) => vec![None; count],
            (Some(_), Some(s)) if s.len() == count => s.iter().map(|s| Some(s.scalar())).collect(),
            (Some(_), _) => {
                return Err(DkgError::Spec(format!(
                    "a resharing dealer needs its {count} current key shares"
                )));
            }
        };
        let polys: Vec<Polynomial> = constants
            .into_iter()
            .map(|c| Polynomial::random(self.spec.threshold, c, rng))
            .collect();
        let commitments: Vec<Vec<PublicKeyBytes>> = polys
            .iter()
            .map(|p| {
                p.commit()
                    .to_bytes()
                    .iter()
                    .map(|c| PublicKeyBytes::from_slice(c))
                    .collect()
            })
            .collect();
        let signature = self
            .key
            .sign(&Deal::digest(&self.ceremony, &self.me, &commitments));
        let deal = Deal {
            ceremony: self.ceremony,
            dealer: self.me,
            commitments,
            signature,
        };
        self.broadcast(Payload::Deal(deal.clone()), &self.spec.recipients());
        self.deals.insert(self.me, deal);
        for (k, recipient) in self.spec.recipients().into_iter().enumerate() {
            let index = k as u32 + 1;
            let shares: Vec<B256> = polys
                .iter()
                .map(|p| B256::from(p.eval(index).to_bytes_be()))
                .collect();
            let msg = Shares::signed(&self.key, self.ceremony, recipient, shares);
            if recipient == self.me {
                self.shares.insert(self.me, msg);
            } else {
                self.send(recipient, Payload::Shares(msg));
            }
        }
        Ok(())
    }

    fn send(&mut self, to: OperatorId, payload: Payload) {
        let id = self.next_id;
        self.next_id += 1;
        self.unacked.insert((to, id), payload.clone());
        self.outbox.push((to, DkgMessage::Data { id, payload }));
    }

    fn broadcast(&mut self, payload: Payload, to: &[OperatorId]) {
        for r in to {
            if *r != self.me {
                self.send(*r, payload.clone());
            }
        }
    }

    /// Handles a message from `from`.
    pub fn on_message(&mut self, from: OperatorId, msg: DkgMessage) {
        match msg {
            DkgMessage::Ack { id } => {
                self.unacked.remove(&(from, id));
            }
            DkgMessage::Data { id, payload } => {
                self.outbox.push((from, DkgMessage::Ack { id }));
                if !self.seen.insert((from, id)) || self.done() {
                    return;
                }
                self.on_payload(from, payload);
                self.advance();
            }
        }
    }

    fn on_payload(&mut self, from: OperatorId, payload: Payload) {
        match payload {
            Payload::Deal(d)
                if d.dealer == from && d.ceremony == self.ceremony && d.signed_ok() =>
            {
                self.deals.entry(from).or_insert(d);
            }
            Payload::Shares(s)
                if s.dealer == from
                    && s.recipient == self.me
                    && s.ceremony == self.ceremony
                    && s.signed_ok() =>
            {
                self.shares.entry(from).or_insert(s);
            }
            Payload::Complaint(c) => self.on_complaint(*c),
            Payload::LockSignature {
                lock_hash,
                signature,
            } => {
                if !self.spec.recipients().contains(&from)
                    || !from.verify(&LockBody::signing_message(&lock_hash), &signature)
                {
                    return;
                }
                match self.body.as_ref().map(|(b, _)| b.hash()) {
                    Some(mine) if mine != lock_hash => {
                        self.fail(DkgError::LockMismatch(self.spec.name_of(&from)));
                        return;
                    }
                    Some(_) => {}
                    // Signatures that arrive before our own body are kept and checked then.
                    None => {
                        self.early_hashes.insert(from, lock_hash);
                    }
                }
                self.lock_sigs.insert(from, signature);
            }
            other => {
                tracing::warn!(from = %self.spec.name_of(&from), kind = payload_kind(&other), "dkg: dropped a malformed or unsigned message");
            }
        }
    }

    fn on_complaint(&mut self, c: Complaint) {
        let accuser_index = self.spec.recipients().iter().position(|r| r == &c.accuser);
        let valid = c.deal.signed_ok()
            && c.shares.signed_ok()
            && c.deal.dealer == c.shares.dealer
            && c.shares.recipient == c.accuser
            && c.deal.ceremony == self.ceremony
            && c.shares.ceremony == self.ceremony;
        let reason = match accuser_index {
            Some(k) if valid => self.check_dealing(&c.deal, &c.shares, k as u32 + 1).err(),
            _ => None,
        };
        match reason {
            Some(reason) => self.fail(DkgError::BadDealer {
                dealer: self.spec.name_of(&c.deal.dealer),
                accuser: self.spec.name_of(&c.accuser),
                reason,
            }),
            None => tracing::warn!(
                accuser = %self.spec.name_of(&c.accuser),
                dealer = %self.spec.name_of(&c.deal.dealer),
                "dkg: ignored a complaint whose evidence does not hold"
            ),
        }
    }

    /// Checks a dealer's commitments and the shares for recipient `index`.
    fn check_dealing(
        &self,
        deal: &Deal,
        shares: &Shares,
        index: u32,
    ) -> Result<Vec<PublicPoly>, String> {
        let count = self.spec.validator_count();
        if deal.commitments.len() != count || shares.shares.len() != count {
            return Err(format!(
                "expected {count} validators' commitments and shares"
            ));
        }
        let mut polys = Vec::with_capacity(count);
        for (v, (commit, share)) in deal.commitments.iter().zip(&shares.shares).enumerate() {
            if commit.len() != self.spec.threshold {
                return Err(format!(
                    "validator {v}: {} commitments, threshold is {}",
                    commit.len(),
                    self.spec.threshold
                ));
            }
            let poly =
                PublicPoly::from_bytes(&commit.iter().map(|c| c.to_vec()).collect::<Vec<_>>())
                    .map_err(|e| format!("validator {v}: {e}"))?;
            if let Some(r) = &self.spec.reshare {
                let old_index = r.old.body.index_of(&deal.dealer).unwrap_or(0) as usize;
                let expected = r
                    .old
                    .body
                    .validators
                    .get(v)
                    .and_then(|dv| dv.public_shares.get(old_index.wrapping_sub(1)));
                if expected != Some(&poly.public_key()) {
                    return Err(format!(
                        "validator {v}: the dealing does not continue the dealer's current key share"
                    ));
                }
            }
            let scalar = scalar_from_bytes(&share.0).map_err(|e| format!("validator {v}: {e}"))?;
            let s = SecretShare::new(index, scalar).map_err(|e| e.to_string())?;
            if !poly.verify_share(&s) {
                return Err(format!(
                    "validator {v}: share for index {index} fails the Feldman check"
                ));
            }
            polys.push(poly);
        }
        Ok(polys)
    }

    fn my_index(&self) -> Option<u32> {
        self.spec
            .recipients()
            .iter()
            .position(|r| r == &self.me)
            .map(|p| p as u32 + 1)
    }

    fn fail(&mut self, err: DkgError) {
        if !self.done() {
            tracing::error!(error = %err, "dkg: ceremony failed");
            self.failure = Some(err);
        }
    }

    /// The typed error, if the ceremony failed.
    pub fn error(&self) -> Option<&DkgError> {
        self.failure.as_ref()
    }

    /// Takes the error out (the participant stays failed).
    pub fn take_error(&mut self) -> Option<DkgError> {
        let err = self.failure.take();
        if err.is_some() {
            self.failure = Some(DkgError::Spec("ceremony failed (error taken)".into()));
        }
        err
    }

    /// Moves the ceremony forward as far as the messages in hand allow.
    fn advance(&mut self) {
        if self.done() {
            return;
        }
        // Verify newly complete dealings.
        if let Some(index) = self.my_index() {
            let ready: Vec<OperatorId> = self
                .deals
                .keys()
                .filter(|d| self.shares.contains_key(d) && !self.verified.contains(d))
                .copied()
                .collect();
            for d in ready {
                let (Some(deal), Some(shares)) = (self.deals.get(&d), self.shares.get(&d)) else {
                    continue;
                };
                match self.check_dealing(deal, shares, index) {
                    Ok(_) => {
                        self.verified.insert(d);
                    }
                    Err(reason) => {
                        let complaint = Complaint {
                            accuser: self.me,
                            deal: deal.clone(),
                            shares: shares.clone(),
                        };
                        let all = self.spec.participants();
                        self.broadcast(Payload::Complaint(Box::new(complaint)), &all);
                        self.fail(DkgError::BadDealer {
                            dealer: self.spec.name_of(&d),
                            accuser: self.spec.name_of(&self.me),
                            reason,
                        });
                        return;
                    }
                }
            }
        } else {
            // A departing dealer is done once its messages are delivered.
            self.departed = true;
            return;
        }
        let dealers = self.spec.dealers();
        if self.body.is_none() && dealers.iter().all(|d| self.verified.contains(d)) {
            match self.combine() {
                Ok((body, shares)) => {
                    let hash = body.hash();
                    let signature = self.key.sign(&LockBody::signing_message(&hash));
                    let recipients = self.spec.recipients();
                    self.broadcast(
                        Payload::LockSignature {
                            lock_hash: hash,
                            signature,
                        },
                        &recipients,
                    );
                    self.lock_sigs.insert(self.me, signature);
                    let early = std::mem::take(&mut self.early_hashes);
                    self.body = Some((body, shares));
                    for (from, h) in early {
                        if h != hash {
                            self.fail(DkgError::LockMismatch(self.spec.name_of(&from)));
                            return;
                        }
                    }
                }
                Err(e) => {
                    self.fail(e);
                    return;
                }
            }
        }
        let recipients = self.spec.recipients();
        if let Some((body, shares)) = &self.body
            && recipients.iter().all(|r| self.lock_sigs.contains_key(r))
        {
            let sigs: Vec<IdentitySignature> = recipients
                .iter()
                .filter_map(|r| self.lock_sigs.get(r).copied())
                .collect();
            match ClusterLock::assemble(body.clone(), sigs) {
                Ok(lock) => {
                    self.output = Some(DkgOutput {
                        lock,
                        shares: shares.clone(),
                    });
                }
                Err(e) => self.fail(e.into()),
            }
        }
    }

    /// Combines the verified dealings into this participant's shares and the new lock body.
    fn combine(&self) -> Result<(LockBody, Vec<SecretShare>), DkgError> {
        let index = self
            .my_index()
            .ok_or_else(|| DkgError::Spec("not a recipient".into()))?;
        let dealers = self.spec.dealers();
        let weights: Vec<Scalar> = match &self.spec.reshare {
            None => vec![Scalar::from(1u64); dealers.len()],
            Some(r) => {
                let old_indices: Vec<u32> = dealers
                    .iter()
                    .map(|d| r.old.body.index_of(d).unwrap_or(0))
                    .collect();
                lagrange_at_zero(&old_indices)?
            }
        };
        let count = self.spec.validator_count();
        let n = self.spec.operators.len();
        let mut validators = Vec::with_capacity(count);
        let mut my_shares = Vec::with_capacity(count);
        for v in 0..count {
            let mut polys = Vec::with_capacity(dealers.len());
            let mut secret = Scalar::from(0u64);
            for (d, w) in dealers.iter().zip(&weights) {
                let deal = self
                    .deals
                    .get(d)
                    .ok_or_else(|| DkgError::Spec("missing deal".into()))?;
                let shares = self
                    .shares
                    .get(d)
                    .ok_or_else(|| DkgError::Spec("missing shares".into()))?;
                let commit = deal
                    .commitments
                    .get(v)
                    .ok_or_else(|| DkgError::Spec("missing commitments".into()))?;
                polys.push(PublicPoly::from_bytes(
                    &commit.iter().map(|c| c.to_vec()).collect::<Vec<_>>(),
                )?);
                let s = shares
                    .shares
                    .get(v)
                    .ok_or_else(|| DkgError::Spec("missing share".into()))?;
                secret += scalar_from_bytes(&s.0)? * w;
            }
            let joint = PublicPoly::weighted_sum(
                &weights
                    .iter()
                    .copied()
                    .zip(polys.iter())
                    .collect::<Vec<_>>(),
            );
            validators.push(DistributedValidator::from_poly(&joint, n));
            my_shares.push(SecretShare::new(index, secret)?);
        }
        let (generation, previous_lock_hash, ballot) = match &self.spec.reshare {
            None => (0, None, None),
            Some(r) => (
                r.old.body.generation + 1,
                Some(r.old.lock_hash),
                r.ballot.clone(),
            ),
        };
        if let Some(r) = &self.spec.reshare {
            for (v, (new, old)) in validators.iter().zip(&r.old.body.validators).enumerate() {
                if new.public_key != old.public_key {
                    return Err(DkgError::Spec(format!(
                        "validator {v}: reshare changed the group key"
                    )));
                }
            }
        }
        Ok((
            LockBody {
                version: LOCK_VERSION,
                name: self.spec.name.clone(),
                threshold: self.spec.threshold,
                generation,
                previous_lock_hash,
                operators: self.spec.operators.clone(),
                validators,
                ballot,
            },
            my_shares,
        ))
    }

    /// Advances time: resends unacknowledged messages every `retry_ms`, and fails at the
    /// deadline naming who did not deliver.
    pub fn on_tick(&mut self, now_ms: u64) {
        if now_ms >= self.next_retry_ms {
            self.next_retry_ms = now_ms.saturating_add(self.retry_ms);
            for ((to, id), payload) in &self.unacked {
                self.outbox.push((
                    *to,
                    DkgMessage::Data {
                        id: *id,
                        payload: payload.clone(),
                    },
                ));
            }
        }
        if self.departed
            && self.failure.is_none()
            && !self.unacked.is_empty()
            && now_ms >= self.deadline_ms
        {
            let missing: BTreeSet<String> = self
                .unacked
                .keys()
                .map(|(to, _)| self.spec.name_of(to))
                .collect();
            self.failure = Some(DkgError::Timeout {
                phase: "delivering",
                missing: missing.into_iter().collect(),
            });
        }
        if !self.done() && now_ms >= self.deadline_ms {
            let (phase, missing): (&'static str, Vec<OperatorId>) =
                if self.body.is_none() && self.my_index().is_some() {
                    (
                        "dealing",
                        self.spec
                            .dealers()
                            .into_iter()
                            .filter(|d| !self.verified.contains(d))
                            .collect(),
                    )
                } else if self.my_index().is_some() {
                    (
                        "signing the lock",
                        self.spec
                            .recipients()
                            .into_iter()
                            .filter(|r| !self.lock_sigs.contains_key(r))
                            .collect(),
                    )
                } else {
                    (
                        "delivering",
                        self.unacked
                            .keys()
                            .map(|(to, _)| *to)
                            .collect::<BTreeSet<_>>()
                            .into_iter()
                            .collect(),
                    )
                };
            let missing = missing.iter().map(|m| self.spec.name_of(m)).collect();
            self.fail(DkgError::Timeout { phase, missing });
        }
    }
}

fn payload_kind(p: &Payload) -> &'static str {
    match p {
        Payload::Deal(_) => "deal",
        Payload::Shares(_) => "shares",
        Payload::Complaint(_) => "complaint",
        Payload::LockSignature { .. } => "lock signature",
    }
}
