//! One member of a distributed validator cluster, as a sans-IO state machine: duties, consensus
//! messages, partial signatures and timers in; messages, timers and submissions out.
//!
//! For every duty (a RANDAO reveal, a declaration or an attestation of one of the cluster's
//! validators):
//!
//! 1. The member proposes the data its own node gave it to the duty consensus ([`DutyConsensus`],
//!    QBFT by default). The consensus only accepts data for this exact duty (same validator,
//!    slot and kind: the validity predicate).
//! 2. On the decision it asks its slashing-protection database, which records the signature
//!    durably *before* anything is signed; a refusal (the member already signed conflicting data,
//!    e.g. before a crash) means no partial, ever. A RANDAO reveal (the proposer's signature
//!    over the epoch, which goes into its declaration) is not slashable and is not recorded.
//! 3. It signs a partial with its key share and broadcasts it. A *failover* member holds its
//!    partial back and releases it only if, at `failover_fraction` of the way to the deadline,
//!    it holds fewer than `m` partials.
//! 4. Every partial received is verified against its sender's public share and the decided
//!    signing root; one that fails is an *invalid partial*, logged with the sender's name and
//!    counted, never used.
//! 5. With `m` valid partials any member recovers the group signature, checks it under the
//!    group key and emits one [`Submission`] per duty (submission is idempotent at the node).
//!
//! Participation — valid partials delivered before the duty's deadline, per member — is counted
//! for the reward split.

use std::collections::BTreeMap;

use alloy_primitives::B256;
use phalanx_crypto::bls::{SecretKey, SignatureBytes};
use phalanx_types::consensus::{AttestationData, Declaration};
use phalanx_types::primitives::{Epoch, Slot};
use phalanx_types::signing::SigningContext;
use phalanx_validator::slashing_protection::SlashingProtection;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ssz::{Decode, Encode};

use crate::consensus::{DutyConsensus, Effect, InstanceId, Timer};
use crate::lock::{LockBody, Role};
use crate::threshold::{
    SecretShare, ThresholdError, g2_affine, recover_signature, verify_same_message,
};
use blstrs::{G1Affine, G2Affine};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Errors building a member.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// The member's index is not in the lock.
    #[error("member index {0} is not in the lock")]
    NotInLock(u32),
    /// Shares do not match the lock.
    #[error("key share for validator {0} does not match the lock's public share")]
    ShareMismatch(usize),
    /// Wrong number of shares.
    #[error("{have} key shares for {need} validators")]
    ShareCount {
        /// Given.
        have: usize,
        /// In the lock.
        need: usize,
    },
    /// Bad key material.
    #[error(transparent)]
    Threshold(#[from] ThresholdError),
}

/// What kind of duty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DutyKind {
    /// Sign the slot's declaration (the validator is the slot's proposer).
    Declaration,
    /// Sign the epoch's attestation.
    Attestation,
    /// Sign the epoch for the RANDAO reveal of a declaration (the proposer's first duty of
    /// the slot; the node puts the reveal into the declaration it then asks for).
    Randao,
}

/// One duty of one of the cluster's validators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duty {
    /// Position of the validator in the lock.
    pub validator: u32,
    /// The slot.
    pub slot: u64,
    /// Kind.
    pub kind: DutyKind,
    /// When the duty starts (ms, the driver's clock).
    pub start_ms: u64,
    /// When the signature must be out.
    pub deadline_ms: u64,
}

impl Duty {
    /// The consensus instance of this duty: a hash of validator, slot and kind.
    pub fn instance(&self) -> InstanceId {
        let mut h = Sha256::new();
        h.update(b"phalanx-dv-duty-v1");
        h.update(self.validator.to_be_bytes());
        h.update(self.slot.to_be_bytes());
        h.update([self.kind as u8]);
        B256::from(<[u8; 32]>::from(h.finalize()))
    }
}

/// The data a duty signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DutyData {
    /// A declaration.
    Declaration(Declaration),
    /// An attestation.
    Attestation(AttestationData),
    /// A RANDAO reveal: the epoch of `slot`, signed.
    Randao(RandaoData),
}

/// What a RANDAO reveal signs: the epoch (the slot names the duty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandaoData {
    /// The proposal's slot.
    pub slot: Slot,
    /// Its epoch: what is signed.
    pub epoch: Epoch,
}

impl DutyData {
    /// Tag byte + SSZ.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Declaration(d) => [vec![0u8], d.as_ssz_bytes()].concat(),
            Self::Attestation(a) => [vec![1u8], a.as_ssz_bytes()].concat(),
            Self::Randao(r) => [
                vec![2u8],
                r.slot.0.to_le_bytes().to_vec(),
                r.epoch.0.to_le_bytes().to_vec(),
            ]
            .concat(),
        }
    }

    /// Parses [`Self::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (tag, rest) = bytes.split_first()?;
        match tag {
            0 => Declaration::from_ssz_bytes(rest)
                .ok()
                .map(Self::Declaration),
            1 => AttestationData::from_ssz_bytes(rest)
                .ok()
                .map(Self::Attestation),
            2 if rest.len() == 16 => {
                let (slot, epoch) = rest.split_at(8);
                Some(Self::Randao(RandaoData {
                    slot: Slot(u64::from_le_bytes(slot.try_into().ok()?)),
                    epoch: Epoch(u64::from_le_bytes(epoch.try_into().ok()?)),
                }))
            }
            _ => None,
        }
    }

    /// Whether this is data for a duty of `kind` at `slot` (and, for an attestation, a source
    /// not after its target; for a RANDAO reveal, an epoch not after the slot — the member
    /// does not know the epoch length, the node checks the exact epoch on submission).
    pub fn fits(&self, kind: DutyKind, slot: u64) -> bool {
        match self {
            Self::Declaration(d) => kind == DutyKind::Declaration && d.slot.0 == slot,
            Self::Attestation(a) => {
                kind == DutyKind::Attestation
                    && a.slot.0 == slot
                    && a.source.epoch <= a.target.epoch
            }
            Self::Randao(r) => kind == DutyKind::Randao && r.slot.0 == slot && r.epoch.0 <= slot,
        }
    }

    /// The signing root on `ctx`'s chain.
    pub fn signing_root(&self, ctx: &SigningContext) -> B256 {
        match self {
            Self::Declaration(d) => ctx.signing_root(d),
            Self::Attestation(a) => ctx.signing_root(a),
            Self::Randao(r) => ctx.signing_root(&r.epoch),
        }
    }
}

/// A partial signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partial {
    /// The duty's instance.
    pub instance: InstanceId,
    /// Position of the validator in the lock.
    pub validator: u32,
    /// Sender's position in the lock.
    pub sender: u32,
    /// What it signs.
    pub signing_root: B256,
    /// The partial signature.
    pub signature: SignatureBytes,
}

/// Messages between members.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "M: Serialize + serde::de::DeserializeOwned")]
pub enum DvMessage<M> {
    /// Duty consensus.
    Consensus(M),
    /// A partial signature.
    Partial(Partial),
}

/// Timers a member asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberTimer {
    /// The consensus engine's.
    Consensus(Timer),
    /// A failover member's release check.
    Failover(InstanceId),
    /// The duty is over: drop its state.
    Expire(InstanceId),
}

/// A recovered group signature for a duty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// The duty.
    pub duty: Duty,
    /// The signed data.
    pub data: DutyData,
    /// The group signature.
    pub signature: SignatureBytes,
    /// Partials it was recovered from (senders).
    pub from: Vec<u32>,
}

/// What a member asks of its driver.
#[derive(Debug, Clone)]
pub enum MemberEffect<M> {
    /// Send to every other member.
    Broadcast(DvMessage<M>),
    /// Call [`Member::on_timer`] at `at_ms`.
    Timer {
        /// When.
        at_ms: u64,
        /// Which.
        timer: MemberTimer,
    },
    /// Submit a group signature to the node.
    Submit(Submission),
}

/// An invalid partial: who sent it for which duty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidPartial {
    /// The duty.
    pub instance: InstanceId,
    /// The sender's position in the lock.
    pub sender: u32,
}

struct DutyState {
    duty: Duty,
    decided: Option<(DutyData, B256)>,
    held: Option<Partial>,
    /// Verified partials, by sender.
    partials: BTreeMap<u32, Partial>,
    /// Partials for the decided root not yet verified, with their arrival time.
    unverified: Vec<(Partial, u64)>,
    submitted: bool,
}

/// Unverified partials held per duty, at most (a flood guard).
const MAX_UNVERIFIED: usize = 64;

/// Member configuration.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    /// This member's position in the lock.
    pub index: u32,
    /// When a failover member releases its partial, as a fraction of start → deadline.
    pub failover_fraction: f64,
    /// The chain's signing context.
    pub signing: SigningContext,
}

/// One member.
pub struct Member<C: DutyConsensus> {
    config: MemberConfig,
    role: Role,
    lock: LockBody,
    keys: Vec<SecretKey>,
    /// Parsed public shares, `[validator][member]` (parsed and validated once).
    public_shares_g1: Vec<Vec<G1Affine>>,
    /// Weights of the batch checks: unpredictable to other members.
    rng: ChaCha20Rng,
    protection: SlashingProtection,
    consensus: C,
    duties: BTreeMap<InstanceId, DutyState>,
    early_decisions: BTreeMap<InstanceId, Vec<u8>>,
    early_partials: BTreeMap<InstanceId, Vec<Partial>>,
    participation: BTreeMap<u32, u64>,
    invalid: Vec<InvalidPartial>,
    refused: u64,
    effects: Vec<MemberEffect<C::Message>>,
}

/// Partials buffered per duty before its decision, at most (a flood guard).
const MAX_EARLY_PARTIALS: usize = 64;
/// Duties with buffered data before the duty itself arrives, at most.
const MAX_EARLY_DUTIES: usize = 4096;

impl<C: DutyConsensus> std::fmt::Debug for Member<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("index", &self.config.index)
            .field("duties", &self.duties.len())
            .finish_non_exhaustive()
    }
}

impl<C: DutyConsensus> Member<C> {
    /// A member holding `shares` (one per validator in `lock`, in order).
    pub fn new(
        config: MemberConfig,
        lock: LockBody,
        shares: &[SecretShare],
        protection: SlashingProtection,
        consensus: C,
    ) -> Result<Self, MemberError> {
        let op = lock
            .operators
            .get(config.index as usize)
            .ok_or(MemberError::NotInLock(config.index))?;
        if shares.len() != lock.validators.len() {
            return Err(MemberError::ShareCount {
                have: shares.len(),
                need: lock.validators.len(),
            });
        }
        let mut keys = Vec::with_capacity(shares.len());
        for (v, (share, dv)) in shares.iter().zip(&lock.validators).enumerate() {
            if dv.public_shares.get(config.index as usize) != Some(&share.public_share()) {
                return Err(MemberError::ShareMismatch(v));
            }
            keys.push(share.secret_key()?);
        }
        let public_shares_g1 = lock
            .validators
            .iter()
            .map(|dv| {
                dv.public_shares
                    .iter()
                    .map(|pk| {
                        let arr: Option<&[u8; 48]> = pk.as_slice().try_into().ok();
                        arr.and_then(|a| Option::from(G1Affine::from_compressed(a)))
                            .filter(|p: &G1Affine| {
                                !bool::from(group::prime::PrimeCurveAffine::is_identity(p))
                            })
                            .ok_or(ThresholdError::InvalidPoint("G1"))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            role: op.role,
            config,
            lock,
            keys,
            public_shares_g1,
            rng: ChaCha20Rng::from_os_rng(),
            protection,
            consensus,
            duties: BTreeMap::new(),
            early_decisions: BTreeMap::new(),
            early_partials: BTreeMap::new(),
            participation: BTreeMap::new(),
            invalid: Vec::new(),
            refused: 0,
            effects: Vec::new(),
        })
    }

    /// This member's position.
    pub fn index(&self) -> u32 {
        self.config.index
    }

    /// The consensus engine (for its statistics).
    pub fn consensus(&self) -> &C {
        &self.consensus
    }

    /// Valid partials received in time, per sender (this member's own included).
    pub fn participation(&self) -> &BTreeMap<u32, u64> {
        &self.participation
    }

    /// Invalid partials detected.
    pub fn invalid_partials(&self) -> &[InvalidPartial] {
        &self.invalid
    }

    /// Duties the slashing-protection database refused.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Effects since the last call.
    pub fn drain_effects(&mut self) -> Vec<MemberEffect<C::Message>> {
        std::mem::take(&mut self.effects)
    }

    /// A new duty, with the data this member's node proposes for it.
    pub fn on_duty(&mut self, duty: Duty, proposal: &DutyData, now_ms: u64) {
        let instance = duty.instance();
        if self.duties.contains_key(&instance) || duty.validator as usize >= self.keys.len() {
            return;
        }
        self.duties.insert(
            instance,
            DutyState {
                duty,
                decided: None,
                held: None,
                partials: BTreeMap::new(),
                unverified: Vec::new(),
                submitted: false,
            },
        );
        self.effects.push(MemberEffect::Timer {
            at_ms: duty.deadline_ms,
            timer: MemberTimer::Expire(instance),
        });
        if self.role == Role::Failover {
            let span = duty.deadline_ms.saturating_sub(duty.start_ms) as f64;
            let at = duty.start_ms + (span * self.config.failover_fraction.clamp(0.0, 1.0)) as u64;
            self.effects.push(MemberEffect::Timer {
                at_ms: at,
                timer: MemberTimer::Failover(instance),
            });
        }
        self.consensus.propose(instance, proposal.encode(), now_ms);
        if let Some(value) = self.early_decisions.remove(&instance) {
            self.on_decided(instance, value, now_ms);
        }
        self.pump(now_ms);
    }

    /// A message from member `from` (the transport authenticated `from`).
    pub fn on_message(&mut self, from: u32, msg: DvMessage<C::Message>, now_ms: u64) {
        match msg {
            DvMessage::Consensus(m) => {
                self.consensus.on_message(from, m, now_ms);
                self.pump(now_ms);
            }
            DvMessage::Partial(p) if p.sender == from => self.on_partial(p, now_ms),
            DvMessage::Partial(_) => {}
        }
    }

    /// A timer set earlier expired.
    pub fn on_timer(&mut self, timer: MemberTimer, now_ms: u64) {
        match timer {
            MemberTimer::Consensus(t) => {
                self.consensus.on_timeout(t, now_ms);
                self.pump(now_ms);
            }
            MemberTimer::Failover(instance) => self.failover_check(instance),
            MemberTimer::Expire(instance) => {
                // Late partials still count for participation and invalid ones are named.
                self.settle(instance, true);
                self.duties.remove(&instance);
                self.early_partials.remove(&instance);
                self.consensus.forget(&instance);
            }
        }
    }

    fn pump(&mut self, now_ms: u64) {
        for effect in self.consensus.drain_effects() {
            match effect {
                Effect::Broadcast(m) => self
                    .effects
                    .push(MemberEffect::Broadcast(DvMessage::Consensus(m))),
                Effect::SetTimer { timer, at_ms } => self.effects.push(MemberEffect::Timer {
                    at_ms,
                    timer: MemberTimer::Consensus(timer),
                }),
                Effect::Decided { instance, value } => self.on_decided(instance, value, now_ms),
            }
        }
    }

    fn on_decided(&mut self, instance: InstanceId, value: Vec<u8>, now_ms: u64) {
        let Some(st) = self.duties.get(&instance) else {
            if self.early_decisions.len() < MAX_EARLY_DUTIES {
                self.early_decisions.insert(instance, value);
            }
            return;
        };
        if st.decided.is_some() {
            return;
        }
        let duty = st.duty;
        let Some(data) = DutyData::decode(&value).filter(|d| d.fits(duty.kind, duty.slot)) else {
            tracing::error!(
                slot = duty.slot,
                "dv: consensus decided data that does not fit the duty"
            );
            return;
        };
        let root = data.signing_root(&self.config.signing);
        let Some(dv) = self.lock.validators.get(duty.validator as usize) else {
            return;
        };
        let group_key = dv.public_key;
        let allowed = match &data {
            DutyData::Declaration(d) => self
                .protection
                .check_and_record_declaration(&group_key, d.slot.0),
            DutyData::Attestation(a) => self.protection.check_and_record_attestation(
                &group_key,
                a.source.epoch.0,
                a.target.epoch.0,
            ),
            DutyData::Randao(_) => Ok(()),
        };
        let own = match allowed {
            Ok(()) => self.keys.get(duty.validator as usize).map(|k| Partial {
                instance,
                validator: duty.validator,
                sender: self.config.index,
                signing_root: root,
                signature: k.sign(root.as_slice()).to_bytes(),
            }),
            Err(e) => {
                self.refused += 1;
                tracing::warn!(slot = duty.slot, error = %e, "dv: slashing protection refused to sign");
                None
            }
        };
        let failover = self.role == Role::Failover;
        if let Some(st) = self.duties.get_mut(&instance) {
            st.decided = Some((data, root));
            if let Some(p) = own {
                if failover {
                    st.held = Some(p);
                } else {
                    st.partials.insert(p.sender, p.clone());
                    *self.participation.entry(p.sender).or_default() += 1;
                    self.effects
                        .push(MemberEffect::Broadcast(DvMessage::Partial(p)));
                }
            }
        }
        for p in self.early_partials.remove(&instance).unwrap_or_default() {
            self.on_partial(p, now_ms);
        }
        self.try_recover(instance);
    }

    fn on_partial(&mut self, p: Partial, now_ms: u64) {
        let instance = p.instance;
        let decided_root = self
            .duties
            .get(&instance)
            .and_then(|st| st.decided.as_ref().map(|(_, r)| *r));
        let Some(root) = decided_root else {
            let room = self.early_partials.len() < MAX_EARLY_DUTIES
                || self.early_partials.contains_key(&instance);
            let buf = self.early_partials.entry(instance).or_default();
            if room && buf.len() < MAX_EARLY_PARTIALS {
                buf.push(p);
            }
            return;
        };
        let n = self.lock.operators.len();
        let Some(st) = self.duties.get_mut(&instance) else {
            return;
        };
        if st.partials.contains_key(&p.sender)
            || st.unverified.iter().any(|(u, _)| u == &p)
            || st.unverified.len() >= MAX_UNVERIFIED
        {
            return;
        }
        if p.validator != st.duty.validator || p.signing_root != root || p.sender as usize >= n {
            // Wrong duty data: invalid without any cryptography.
            let duty_slot = st.duty.slot;
            self.reject(instance, p.sender, duty_slot);
            return;
        }
        st.unverified.push((p, now_ms));
        self.settle(instance, false);
    }

    fn reject(&mut self, instance: InstanceId, sender: u32, slot: u64) {
        let name = self
            .lock
            .operators
            .get(sender as usize)
            .map_or("?", |o| o.name.as_str());
        tracing::warn!(sender = name, slot, "dv: invalid partial signature");
        self.invalid.push(InvalidPartial { instance, sender });
    }

    /// Verifies the duty's unverified partials once they could complete a recovery (or, with
    /// `force`, whatever is waiting): all of them in one batch check, and one by one only when
    /// the batch fails, to name the culprits. After the group signature is out, late partials
    /// wait for the duty's expiry (they only count for participation).
    fn settle(&mut self, instance: InstanceId, force: bool) {
        let m = self.lock.threshold;
        let Some(st) = self.duties.get_mut(&instance) else {
            return;
        };
        if st.unverified.is_empty() {
            return;
        }
        if !force {
            let senders: std::collections::BTreeSet<u32> = st
                .unverified
                .iter()
                .map(|(p, _)| p.sender)
                .chain(st.partials.keys().copied())
                .collect();
            if st.submitted || senders.len() < m {
                return;
            }
        }
        let Some((_, root)) = st.decided.as_ref().map(|(d, r)| (d.clone(), *r)) else {
            return;
        };
        let waiting = std::mem::take(&mut st.unverified);
        let (deadline, slot, validator) = (st.duty.deadline_ms, st.duty.slot, st.duty.validator);
        let shares = self.public_shares_g1.get(validator as usize);
        let parsed: Vec<Option<(G1Affine, G2Affine)>> = waiting
            .iter()
            .map(|(p, _)| {
                let pk = shares.and_then(|v| v.get(p.sender as usize)).copied()?;
                Some((pk, g2_affine(&p.signature)?))
            })
            .collect();
        let all_parsed: Option<Vec<(G1Affine, G2Affine)>> = parsed.iter().copied().collect();
        let batch_ok = all_parsed
            .as_ref()
            .is_some_and(|items| verify_same_message(root.as_slice(), items, &mut self.rng));
        let mut accepted = Vec::new();
        let mut rejected = Vec::new();
        for ((p, at), item) in waiting.into_iter().zip(parsed) {
            let ok = batch_ok
                || item
                    .is_some_and(|it| verify_same_message(root.as_slice(), &[it], &mut self.rng));
            if ok {
                accepted.push((p, at));
            } else {
                rejected.push(p.sender);
            }
        }
        for sender in rejected {
            self.reject(instance, sender, slot);
        }
        if let Some(st) = self.duties.get_mut(&instance) {
            for (p, at) in accepted {
                if st.partials.contains_key(&p.sender) {
                    continue;
                }
                if at <= deadline {
                    *self.participation.entry(p.sender).or_default() += 1;
                }
                st.partials.insert(p.sender, p);
            }
        }
        self.try_recover(instance);
    }

    fn failover_check(&mut self, instance: InstanceId) {
        self.settle(instance, true);
        let m = self.lock.threshold;
        let Some(st) = self.duties.get_mut(&instance) else {
            return;
        };
        if st.partials.len() >= m {
            return;
        }
        if let Some(p) = st.held.take() {
            tracing::info!(
                slot = st.duty.slot,
                have = st.partials.len(),
                "dv: failover member releases its partial"
            );
            st.partials.insert(p.sender, p.clone());
            *self.participation.entry(p.sender).or_default() += 1;
            self.effects
                .push(MemberEffect::Broadcast(DvMessage::Partial(p)));
            self.try_recover(instance);
        }
    }

    fn try_recover(&mut self, instance: InstanceId) {
        let m = self.lock.threshold;
        let Some(st) = self.duties.get_mut(&instance) else {
            return;
        };
        if st.submitted || st.partials.len() < m {
            return;
        }
        let Some((data, _)) = st.decided.clone() else {
            return;
        };
        let partials: Vec<(u32, SignatureBytes)> = st
            .partials
            .values()
            .map(|p| (p.sender + 1, p.signature))
            .collect();
        // Every partial here verified against its public share, so the interpolation is the
        // group's signature: no second check is needed (the tests and the simulator verify
        // submissions under the group key).
        let Ok(signature) = recover_signature(&partials, m) else {
            return;
        };
        st.submitted = true;
        self.effects.push(MemberEffect::Submit(Submission {
            duty: st.duty,
            data,
            signature,
            from: partials.iter().take(m).map(|(i, _)| i - 1).collect(),
        }));
    }
}
