//! `phalanx sim dv`: one distributed validator cluster doing its duties on a virtual clock.
//!
//! `n` members hold an `m`-of-`n` key (dealt once; the ceremony has its own tests). Duty `k`
//! falls at slot `k` (12 s slots), alternating attestations and declarations over the
//! cluster's validators, with a deadline a third of a slot after its start. Each member's node
//! proposes the duty data; with probability 1/4 a member's node sees another head, so the
//! members must agree by QBFT on what to sign. Every member runs the real
//! [`phalanx_dv::member::Member`]: consensus, slashing protection, partial signatures, recovery.
//!
//! Faults (the last members first):
//! - `crashed`: never start; everything sent to them is lost.
//! - `byzantine`: as round-1 leaders they equivocate (a different valid value to each half of
//!   the cluster); they send every member an invalid partial (a signature over other data)
//!   before their valid one, which honest members must detect and attribute. (With `crashed`
//!   at the cluster's limit, the valid partial is what lets `m` be reached at all.)
//! - `failover` (the first members): hold their partial until the failover point.
//!
//! The network delays each message by 20 ms plus seeded jitter and drops it with `loss`.
//!
//! Output ([`Report`]): duties, those signed in time, slashable pairs among the group
//! signatures submitted, invalid partials delivered and detected (with the senders' names),
//! and duty latency (start → first valid group signature) percentiles.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use alloy_primitives::B256;
use phalanx_dv::consensus::{DutyConsensus, InstanceId, Validity};
use phalanx_dv::create::{DealtCluster, deal_cluster};
use phalanx_dv::identity::{OperatorId, OperatorKey};
use phalanx_dv::lock::{LockBody, Role};
use phalanx_dv::member::{
    Duty, DutyData, DutyKind, DvMessage, Member, MemberConfig, MemberEffect, MemberTimer, Partial,
};
use phalanx_dv::qbft::{self, Qbft};
use phalanx_dv::tendermint::{self, Tendermint};
use phalanx_dv::threshold::verify_partial;
use phalanx_types::signing::SigningContext;
use phalanx_types::*;
use phalanx_validator::slashing_protection::SlashingProtection;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::net::{Links, Queue};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Config {
    /// Members n.
    pub members: usize,
    /// Threshold m.
    pub threshold: usize,
    /// Distributed validators the cluster runs.
    pub validators: usize,
    /// Members that never start (the last ones).
    pub crashed: usize,
    /// Byzantine members (just before the crashed ones).
    pub byzantine: usize,
    /// Failover members (the first ones).
    pub failover: usize,
    /// Duties to run.
    pub duties: u64,
    /// Probability a message is lost.
    pub loss: f64,
    /// Extra delay, `0..=jitter_ms`, on top of 20 ms.
    pub jitter_ms: u64,
    /// Seed.
    pub seed: u64,
    /// The duty consensus.
    pub consensus: ConsensusKind,
}

/// Which [`DutyConsensus`] the members run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConsensusKind {
    /// QBFT (the default).
    #[default]
    Qbft,
    /// Tendermint.
    Tendermint,
}

/// What the simulator needs of a consensus beyond the seam: building one, and the byzantine
/// leader's equivocation.
pub trait SimConsensus: DutyConsensus + Sized + 'static {
    /// An engine for member `me`.
    fn build(ids: Vec<OperatorId>, me: u32, key: OperatorKey, validity: Validity) -> Self;
    /// If `msg` is a first-round proposal, the same proposal with `other(instance)`'s value,
    /// re-signed with `key`.
    fn equivocate(
        msg: &Self::Message,
        key: &OperatorKey,
        other: &dyn Fn(&InstanceId) -> Option<Vec<u8>>,
    ) -> Option<Self::Message>;
    /// Equivocations this engine noticed and ignored.
    fn equivocations(&self) -> u64 {
        0
    }
}

impl SimConsensus for Qbft {
    fn build(ids: Vec<OperatorId>, me: u32, key: OperatorKey, validity: Validity) -> Self {
        Qbft::new(
            ids,
            me,
            key,
            validity,
            QBFT_BASE_TIMEOUT_MS,
            QBFT_STEP_TIMEOUT_MS,
        )
    }
    fn equivocate(
        m: &qbft::Message,
        key: &OperatorKey,
        other: &dyn Fn(&InstanceId) -> Option<Vec<u8>>,
    ) -> Option<qbft::Message> {
        if m.body.kind != qbft::Kind::PrePrepare || m.body.round != 1 {
            return None;
        }
        let value = other(&m.body.instance)?;
        let body = qbft::Body {
            value_hash: B256::from(sha2_digest(&[&value])),
            ..m.body.clone()
        };
        let signature = key.sign(&body.digest());
        Some(qbft::Message {
            body,
            value: Some(value),
            signature,
            justification: Vec::new(),
        })
    }
    fn equivocations(&self) -> u64 {
        Qbft::equivocations(self)
    }
}

impl SimConsensus for Tendermint {
    fn build(ids: Vec<OperatorId>, me: u32, key: OperatorKey, validity: Validity) -> Self {
        Tendermint::new(
            ids,
            me,
            key,
            validity,
            QBFT_BASE_TIMEOUT_MS,
            QBFT_STEP_TIMEOUT_MS,
        )
    }
    fn equivocate(
        m: &tendermint::Message,
        key: &OperatorKey,
        other: &dyn Fn(&InstanceId) -> Option<Vec<u8>>,
    ) -> Option<tendermint::Message> {
        if m.kind != tendermint::Kind::Proposal || m.round != 0 {
            return None;
        }
        let value = other(&m.instance)?;
        Some(tendermint::Message::signed(
            key,
            tendermint::Message {
                value_hash: B256::from(sha2_digest(&[&value])),
                value: Some(value),
                ..m.clone()
            },
        ))
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            members: 4,
            threshold: 3,
            validators: 1,
            crashed: 0,
            byzantine: 0,
            failover: 0,
            duties: 100,
            loss: 0.0,
            jitter_ms: 10,
            seed: 1,
            consensus: ConsensusKind::Qbft,
        }
    }
}

/// The result of a run (one JSON line).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Duties run.
    pub duties: u64,
    /// Duties with a valid group signature submitted by their deadline.
    pub signed: u64,
    /// Duties for which two different data got a valid group signature.
    pub slashable: u64,
    /// Invalid partials delivered to live honest members.
    pub invalid_partials_sent: u64,
    /// Invalid partials honest members detected (and attributed).
    pub invalid_partials_detected: u64,
    /// Members named as senders of invalid partials.
    pub invalid_partial_senders: Vec<String>,
    /// Duties a member's slashing protection refused.
    pub refused_by_protection: u64,
    /// Median duty latency (start → group signature), ms.
    pub p50_ms: u64,
    /// 99th percentile duty latency, ms.
    pub p99_ms: u64,
    /// Valid partials delivered in time per member, as member 0 counted them.
    pub participation: BTreeMap<String, u64>,
    /// Equivocating consensus messages honest members ignored.
    pub equivocations_ignored: u64,
    /// The duty consensus used.
    pub consensus: &'static str,
}

/// A configuration that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DvSimError {
    /// Bad flags.
    #[error("invalid simulation: {0}")]
    Config(String),
}

const SLOT_MS: u64 = 12_000;
const BASE_DELAY_MS: u64 = 20;
use phalanx_dv::consensus::{
    BASE_TIMEOUT_MS as QBFT_BASE_TIMEOUT_MS, STEP_TIMEOUT_MS as QBFT_STEP_TIMEOUT_MS,
};
const FAILOVER_FRACTION: f64 = 0.5;
const BYZANTINE_VALID_DELAY_MS: u64 = 30;

enum Event<M> {
    Duty(u64),
    Deliver {
        from: u32,
        to: u32,
        msg: DvMessage<M>,
    },
    Timer {
        member: u32,
        timer: MemberTimer,
    },
}

fn checkpoint(epoch: u64, tag: u8) -> Checkpoint {
    Checkpoint {
        epoch: Epoch(epoch),
        root: B256::repeat_byte(tag),
    }
}

/// The data member `variant`'s node proposes for duty `k`.
fn duty_data(k: u64, kind: DutyKind, validator: u32, variant: u8) -> DutyData {
    let head = B256::from(sha2_digest(&[&k.to_be_bytes(), &[variant]]));
    match kind {
        DutyKind::Attestation => DutyData::Attestation(AttestationData {
            slot: Slot(k),
            committee_index: 0,
            head_root: head,
            source: checkpoint(k.saturating_sub(1), 1),
            target: checkpoint(k, 2),
        }),
        DutyKind::Randao => DutyData::Randao(phalanx_dv::member::RandaoData {
            slot: Slot(k),
            epoch: Epoch(k / 8),
        }),
        DutyKind::Declaration => DutyData::Declaration(Declaration {
            slot: Slot(k),
            proposer_index: ValidatorIndex(u64::from(validator)),
            parent_root: head,
            producer: ProducerIndex(0),
            fee_split_bps: 1000,
            randao_reveal: Default::default(),
        }),
    }
}

fn sha2_digest(parts: &[&[u8]]) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

struct Sim<C: SimConsensus> {
    config: Config,
    signing: SigningContext,
    keys: Vec<OperatorKey>,
    names: Vec<String>,
    lock: LockBody,
    members: Vec<Option<Member<C>>>,
    queue: Queue<Event<C::Message>>,
    links: Links,
    rng: ChaCha8Rng,
    duties: BTreeMap<B256, Duty>,
    submitted: BTreeMap<B256, (u64, BTreeSet<B256>)>,
    invalid_sent: u64,
    verified: BTreeMap<(B256, SignatureBytes), bool>,
}

/// Runs the simulation.
pub fn run(config: Config) -> Result<Report, DvSimError> {
    match config.consensus {
        ConsensusKind::Qbft => run_with::<Qbft>(config),
        ConsensusKind::Tendermint => run_with::<Tendermint>(config),
    }
}

fn run_with<C: SimConsensus>(config: Config) -> Result<Report, DvSimError> {
    let n = config.members;
    let m = config.threshold;
    if n == 0 || m == 0 || m > n {
        return Err(DvSimError::Config(format!(
            "threshold {m} must be within 1..={n}"
        )));
    }
    if config.crashed + config.byzantine + config.failover > n {
        return Err(DvSimError::Config(
            "crashed + byzantine + failover members exceed the cluster".into(),
        ));
    }
    if config.validators == 0 {
        return Err(DvSimError::Config("at least one validator".into()));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let roles: Vec<Role> = (0..n)
        .map(|i| {
            if i < config.failover {
                Role::Failover
            } else {
                Role::Regular
            }
        })
        .collect();
    let DealtCluster {
        lock,
        keys,
        shares: all_shares,
    } = deal_cluster(
        "sim",
        m,
        config.validators,
        &roles,
        |i| format!("sim://{i}"),
        &mut rng,
    )
    .map_err(|e| DvSimError::Config(e.to_string()))?;
    let names: Vec<String> = lock.body.operators.iter().map(|o| o.name.clone()).collect();
    let signing = SigningContext {
        fork_version: [0, 0, 0, 1],
        genesis_validators_root: B256::repeat_byte(7),
    };
    let ids: Vec<_> = keys.iter().map(OperatorKey::id).collect();
    let alive = n - config.crashed;
    let by_instance = Arc::new(duty_index(&config));
    let mut members = Vec::with_capacity(n);
    for i in 0..n {
        if i >= alive {
            members.push(None);
            continue;
        }
        let protection = SlashingProtection::in_memory(signing.genesis_validators_root)
            .map_err(|e| DvSimError::Config(e.to_string()))?;
        let validity: Validity = {
            let by_instance = Arc::clone(&by_instance);
            Box::new(move |instance: &B256, value: &[u8]| {
                by_instance.get(instance).is_some_and(|(kind, slot)| {
                    DutyData::decode(value).is_some_and(|d| d.fits(*kind, *slot))
                })
            })
        };
        let engine = C::build(ids.clone(), i as u32, keys[i].clone(), validity);
        let member = Member::new(
            MemberConfig {
                index: i as u32,
                failover_fraction: FAILOVER_FRACTION,
                signing,
            },
            lock.body.clone(),
            &all_shares[i],
            protection,
            engine,
        )
        .map_err(|e| DvSimError::Config(e.to_string()))?;
        members.push(Some(member));
    }
    let links = Links {
        rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0x5eed),
        base_ms: BASE_DELAY_MS,
        jitter_ms: config.jitter_ms,
        loss: config.loss,
        partition: None,
    };
    let mut sim = Sim {
        signing,
        keys,
        names,
        lock: lock.body,
        members,
        queue: Queue::new(),
        links,
        rng,
        duties: BTreeMap::new(),
        submitted: BTreeMap::new(),
        invalid_sent: 0,
        verified: BTreeMap::new(),
        config,
    };
    Ok(sim.run())
}

fn duty_of(config: &Config, k: u64) -> Duty {
    let start_ms = (k + 1) * SLOT_MS;
    Duty {
        validator: (k % config.validators as u64) as u32,
        slot: k,
        kind: if k.is_multiple_of(2) {
            DutyKind::Attestation
        } else {
            DutyKind::Declaration
        },
        start_ms,
        deadline_ms: start_ms + SLOT_MS / 3,
    }
}

/// Instance → (kind, slot): what the cluster's nodes know about their duties (the validity
/// predicate of the consensus).
fn duty_index(config: &Config) -> BTreeMap<B256, (DutyKind, u64)> {
    (0..config.duties)
        .map(|k| {
            let d = duty_of(config, k);
            (d.instance(), (d.kind, d.slot))
        })
        .collect()
}

impl<C: SimConsensus> Sim<C> {
    fn n(&self) -> usize {
        self.members.len()
    }

    fn is_byzantine(&self, i: usize) -> bool {
        let alive = self.n() - self.config.crashed;
        i < alive && i >= alive - self.config.byzantine
    }

    fn run(&mut self) -> Report {
        for k in 0..self.config.duties {
            let d = duty_of(&self.config, k);
            self.queue.push(d.start_ms, Event::Duty(k));
        }
        while let Some((now, event)) = self.queue.pop() {
            match event {
                Event::Duty(k) => {
                    let duty = duty_of(&self.config, k);
                    self.duties.insert(duty.instance(), duty);
                    for i in 0..self.n() {
                        let variant = u8::from(self.rng.random_bool(0.25));
                        let data = duty_data(k, duty.kind, duty.validator, variant);
                        if let Some(member) = self.members[i].as_mut() {
                            member.on_duty(duty, &data, now);
                        }
                        self.flush(i, now);
                    }
                }
                Event::Deliver { from, to, msg } => {
                    if let Some(member) = self.members[to as usize].as_mut() {
                        member.on_message(from, msg, now);
                    }
                    self.flush(to as usize, now);
                }
                Event::Timer { member, timer } => {
                    if let Some(m) = self.members[member as usize].as_mut() {
                        m.on_timer(timer, now);
                    }
                    self.flush(member as usize, now);
                }
            }
        }
        self.report()
    }

    fn send(
        &mut self,
        from: usize,
        to: usize,
        msg: DvMessage<C::Message>,
        now: u64,
        extra_ms: u64,
    ) {
        if let Some(at) = self.links.delivery(now, from, to) {
            self.queue.push(
                at + extra_ms,
                Event::Deliver {
                    from: from as u32,
                    to: to as u32,
                    msg,
                },
            );
        }
    }

    fn flush(&mut self, i: usize, now: u64) {
        let Some(member) = self.members[i].as_mut() else {
            return;
        };
        let effects = member.drain_effects();
        let byzantine = self.is_byzantine(i);
        for effect in effects {
            match effect {
                MemberEffect::Timer { at_ms, timer } => self.queue.push(
                    at_ms.max(now),
                    Event::Timer {
                        member: i as u32,
                        timer,
                    },
                ),
                MemberEffect::Submit(s) => {
                    let root = s.data.signing_root(&self.signing);
                    let key = self.lock.validators[s.duty.validator as usize].public_key;
                    // Members recover the same (deterministic) signature: verify each once.
                    let valid = *self
                        .verified
                        .entry((root, s.signature))
                        .or_insert_with(|| verify_partial(&key, root.as_slice(), &s.signature));
                    if valid {
                        let entry = self
                            .submitted
                            .entry(s.duty.instance())
                            .or_insert((u64::MAX, BTreeSet::new()));
                        entry.0 = entry.0.min(now);
                        entry.1.insert(root);
                    }
                }
                MemberEffect::Broadcast(msg) => {
                    for to in 0..self.n() {
                        if to == i {
                            continue;
                        }
                        if byzantine {
                            self.byzantine_send(i, to, &msg, now);
                        } else {
                            self.send(i, to, msg.clone(), now, 0);
                        }
                    }
                }
            }
        }
    }

    /// A byzantine member: equivocating round-1 proposals, an invalid partial before each
    /// valid one.
    fn byzantine_send(&mut self, i: usize, to: usize, msg: &DvMessage<C::Message>, now: u64) {
        let duties = &self.duties;
        let other = |instance: &InstanceId| {
            duties
                .get(instance)
                .map(|d| duty_data(d.slot, d.kind, d.validator, 9).encode())
        };
        match msg {
            DvMessage::Consensus(m) if to % 2 == 1 => {
                let forged = C::equivocate(m, &self.keys[i], &other).unwrap_or_else(|| m.clone());
                self.send(i, to, DvMessage::Consensus(forged), now, 0);
            }
            DvMessage::Partial(p) => {
                let bad = self.invalid_partial(p.clone());
                if self.members[to].is_some() && !self.is_byzantine(to) {
                    self.invalid_sent += 1;
                }
                self.send(i, to, DvMessage::Partial(bad), now, 0);
                self.send(i, to, msg.clone(), now, BYZANTINE_VALID_DELAY_MS);
            }
            _ => self.send(i, to, msg.clone(), now, 0),
        }
    }

    /// A real BLS signature by the member's share key over other data: well formed, invalid.
    fn invalid_partial(&self, p: Partial) -> Partial {
        let sk = phalanx_crypto::SecretKey::key_gen(&[p.sender as u8 + 1; 32]);
        match sk {
            Ok(sk) => Partial {
                signature: sk.sign(p.signing_root.as_slice()).to_bytes(),
                ..p
            },
            Err(_) => p,
        }
    }

    fn report(&self) -> Report {
        let mut latencies: Vec<u64> = Vec::new();
        let mut signed = 0;
        let mut slashable = 0;
        for duty in self.duties.values() {
            if let Some((at, roots)) = self.submitted.get(&duty.instance()) {
                if *at <= duty.deadline_ms {
                    signed += 1;
                }
                latencies.push(at.saturating_sub(duty.start_ms));
                if roots.len() > 1 {
                    slashable += 1;
                }
            }
        }
        latencies.sort_unstable();
        let pct = |p: f64| -> u64 {
            if latencies.is_empty() {
                return 0;
            }
            let idx = ((latencies.len() as f64 - 1.0) * p).round() as usize;
            latencies[idx.min(latencies.len() - 1)]
        };
        let honest: Vec<&Member<C>> = self
            .members
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.is_byzantine(*i))
            .filter_map(|(_, m)| m.as_ref())
            .collect();
        let detected: u64 = honest
            .iter()
            .map(|m| m.invalid_partials().len() as u64)
            .sum();
        let senders: BTreeSet<String> = honest
            .iter()
            .flat_map(|m| m.invalid_partials().iter())
            .map(|p| self.names[p.sender as usize].clone())
            .collect();
        let participation = honest
            .first()
            .map(|m| {
                m.participation()
                    .iter()
                    .map(|(i, c)| (self.names[*i as usize].clone(), *c))
                    .collect()
            })
            .unwrap_or_default();
        Report {
            duties: self.config.duties,
            signed,
            slashable,
            invalid_partials_sent: self.invalid_sent,
            invalid_partials_detected: detected,
            invalid_partial_senders: senders.into_iter().collect(),
            refused_by_protection: honest.iter().map(|m| m.refused()).sum(),
            p50_ms: pct(0.5),
            p99_ms: pct(0.99),
            participation,
            equivocations_ignored: honest
                .iter()
                .map(|m| SimConsensus::equivocations(m.consensus()))
                .sum(),
            consensus: honest.first().map_or("qbft", |m| m.consensus().name()),
        }
    }
}
