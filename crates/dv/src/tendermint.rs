//! Tendermint (Buchman, Kwon, Milosevic, "The latest gossip on BFT consensus", 2018,
//! Algorithm 1), the second [`DutyConsensus`]: it proves the seam carries another BFT protocol
//! with the same inputs and effects, and it needs no certificates inside messages (locks
//! instead), at the price of one more message step than QBFT in the common case.
//!
//! `n` members, `f = ⌊(n − 1) / 3⌋`, quorum `⌈(n + f + 1) / 2⌉`; proposer of round `r` of
//! instance `λ` is `(λ + r) mod n`. Per instance: `round`, `step ∈ {propose, prevote,
//! precommit}`, `locked (value, round)`, `valid (value, round)`. The rules, as built:
//!
//! 1. **Start round `r`.** The proposer broadcasts `PROPOSAL(r, v, vr)` with `v` its valid value
//!    (and `vr` its round) if any, else its own input (`vr = −1`); the others arm
//!    `timeout_propose`.
//! 2. **Prevote.** On the proposer's `PROPOSAL(r, v, −1)` in step propose: prevote `v` if it is
//!    valid and not contradicting our lock, else nil. On `PROPOSAL(r, v, vr)` with a quorum of
//!    `PREVOTE(vr, v)` and `vr < r`: prevote `v` if valid and (`locked_round ≤ vr` or locked on
//!    `v`), else nil.
//! 3. **Precommit.** On `PROPOSAL(r, v)` and a quorum of `PREVOTE(r, v)` (once per round, step ≥
//!    prevote): remember `v` as valid; if in step prevote, lock it and precommit `v`. On a quorum
//!    of `PREVOTE(r, nil)` in step prevote: precommit nil. On any prevote quorum in step prevote:
//!    arm `timeout_prevote`.
//! 4. **Decide.** On `PROPOSAL(r', v)` and a quorum of `PRECOMMIT(r', v)`, any round: decide `v`.
//!    On any precommit quorum of the current round: arm `timeout_precommit`.
//! 5. **Catch-up.** On `f + 1` messages of a round above ours: start that round.
//! 6. **Timeouts** (ignored unless still in that round and step): propose → prevote nil;
//!    prevote → precommit nil; precommit → start round `r + 1`. Timers are
//!    `base + (r − 1)·step` ms; one [`Timer`] per round carries the step in its high bits.

use std::collections::{BTreeMap, BTreeSet};

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::consensus::{
    DutyConsensus, Effect, InstanceId, Timer, Validity, faults, quorum, round_robin,
};
use crate::identity::{IdentitySignature, OperatorId, OperatorKey};

/// Message kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    /// The round's proposal.
    Proposal,
    /// First vote (`value_hash` zero = nil).
    Prevote,
    /// Second vote (`value_hash` zero = nil).
    Precommit,
}

/// A signed Tendermint message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Kind.
    pub kind: Kind,
    /// Instance.
    pub instance: InstanceId,
    /// Round (from 0).
    pub round: u32,
    /// Sender's position.
    pub sender: u32,
    /// Hash of the value; zero for a nil vote.
    pub value_hash: B256,
    /// Proposal only: the round the value was valid in (`u32::MAX` = none).
    pub valid_round: u32,
    /// Proposal only: the value.
    pub value: Option<Vec<u8>>,
    /// Identity signature over everything above but the value (covered by its hash).
    pub signature: IdentitySignature,
}

const NO_ROUND: u32 = u32::MAX;

impl Message {
    /// `msg` with `key`'s signature (and `key`'s sender index unchanged).
    pub fn signed(key: &OperatorKey, mut msg: Self) -> Self {
        msg.signature = key.sign(&msg.digest());
        msg
    }

    fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"phalanx-dv-tendermint-v1");
        h.update([self.kind as u8]);
        h.update(self.instance);
        h.update(self.round.to_be_bytes());
        h.update(self.sender.to_be_bytes());
        h.update(self.value_hash);
        h.update(self.valid_round.to_be_bytes());
        h.finalize().into()
    }
}

fn hash(v: &[u8]) -> B256 {
    B256::from(<[u8; 32]>::from(Sha256::digest(v)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Propose,
    Prevote,
    Precommit,
}

const STEP_SHIFT: u32 = 28;

#[derive(Default)]
struct Instance {
    started: bool,
    round: u32,
    step: Option<Step>,
    input: Option<Vec<u8>>,
    locked: Option<(u32, Vec<u8>)>,
    valid: Option<(u32, Vec<u8>)>,
    decided: bool,
    msgs: BTreeMap<(Kind, u32, u32), Message>,
    done: BTreeSet<(u8, u32)>,
}

/// Tendermint over many instances.
pub struct Tendermint {
    members: Vec<OperatorId>,
    me: u32,
    key: OperatorKey,
    validity: Validity,
    base_timeout_ms: u64,
    step_timeout_ms: u64,
    instances: BTreeMap<InstanceId, Instance>,
    forgotten: BTreeSet<InstanceId>,
    effects: Vec<Effect<Message>>,
}

impl std::fmt::Debug for Tendermint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tendermint")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl Tendermint {
    /// An engine for member `me` of `members`.
    pub fn new(
        members: Vec<OperatorId>,
        me: u32,
        key: OperatorKey,
        validity: Validity,
        base_timeout_ms: u64,
        step_timeout_ms: u64,
    ) -> Self {
        Self {
            members,
            me,
            key,
            validity,
            base_timeout_ms,
            step_timeout_ms,
            instances: BTreeMap::new(),
            forgotten: BTreeSet::new(),
            effects: Vec::new(),
        }
    }

    /// The proposer of `round` of `instance`.
    pub fn proposer(&self, instance: &InstanceId, round: u32) -> u32 {
        round_robin(instance, round, self.members.len())
    }

    fn vote(
        &mut self,
        instance: InstanceId,
        kind: Kind,
        round: u32,
        value_hash: B256,
        now_ms: u64,
    ) {
        let msg = Message {
            kind,
            instance,
            round,
            sender: self.me,
            value_hash,
            valid_round: NO_ROUND,
            value: None,
            signature: IdentitySignature([0; 64]),
        };
        self.send(msg, now_ms);
    }

    fn send(&mut self, msg: Message, now_ms: u64) {
        let msg = Message::signed(&self.key, msg);
        self.effects.push(Effect::Broadcast(msg.clone()));
        self.store(msg, now_ms);
    }

    fn timer(&mut self, instance: InstanceId, round: u32, step: Step, now_ms: u64) {
        let at_ms = now_ms + self.base_timeout_ms + u64::from(round) * self.step_timeout_ms;
        self.effects.push(Effect::SetTimer {
            timer: Timer {
                instance,
                round: round | ((step as u32 + 1) << STEP_SHIFT),
            },
            at_ms,
        });
    }

    fn start_round(&mut self, instance: InstanceId, round: u32, now_ms: u64) {
        let Some(st) = self.instances.get_mut(&instance) else {
            return;
        };
        st.round = round;
        st.step = Some(Step::Propose);
        let proposal = st
            .valid
            .clone()
            .or_else(|| st.input.clone().map(|v| (NO_ROUND, v)));
        if self.proposer(&instance, round) == self.me {
            if let Some((vr, v)) = proposal {
                let h = hash(&v);
                let msg = Message {
                    kind: Kind::Proposal,
                    instance,
                    round,
                    sender: self.me,
                    value_hash: h,
                    valid_round: vr,
                    value: Some(v),
                    signature: IdentitySignature([0; 64]),
                };
                self.send(msg, now_ms);
            }
        } else {
            self.timer(instance, round, Step::Propose, now_ms);
        }
        self.evaluate(instance, now_ms);
    }

    fn store(&mut self, msg: Message, now_ms: u64) {
        let instance = msg.instance;
        let Some(st) = self.instances.get_mut(&instance) else {
            return;
        };
        st.msgs
            .entry((msg.kind, msg.round, msg.sender))
            .or_insert(msg);
        self.evaluate(instance, now_ms);
    }

    fn count(st: &Instance, kind: Kind, round: u32, h: Option<&B256>) -> usize {
        st.msgs
            .iter()
            .filter(|((k, r, _), m)| {
                *k == kind && *r == round && h.is_none_or(|h| &m.value_hash == h)
            })
            .count()
    }

    fn evaluate(&mut self, instance: InstanceId, now_ms: u64) {
        let n = self.members.len();
        let q = quorum(n);
        loop {
            let Some(st) = self.instances.get(&instance) else {
                return;
            };
            if st.decided {
                return;
            }
            // Rule 4: decide on any round's proposal with a precommit quorum.
            let decision = st
                .msgs
                .values()
                .filter(|m| m.kind == Kind::Proposal)
                .find_map(|p| {
                    (Self::count(st, Kind::Precommit, p.round, Some(&p.value_hash)) >= q)
                        .then(|| p.value.clone())
                        .flatten()
                });
            if let Some(value) = decision {
                if let Some(st) = self.instances.get_mut(&instance) {
                    st.decided = true;
                }
                self.effects.push(Effect::Decided { instance, value });
                return;
            }
            if !st.started {
                return;
            }
            let (r, step) = (st.round, st.step);
            // Rule 5: f + 1 messages of a higher round.
            let higher = st.msgs.keys().filter(|(_, mr, _)| *mr > r).fold(
                BTreeMap::<u32, BTreeSet<u32>>::new(),
                |mut acc, (_, mr, s)| {
                    acc.entry(*mr).or_default().insert(*s);
                    acc
                },
            );
            if let Some((&nr, _)) = higher.iter().find(|(_, s)| s.len() > faults(n)) {
                self.start_round(instance, nr, now_ms);
                continue;
            }
            let proposal = st
                .msgs
                .get(&(Kind::Proposal, r, self.proposer(&instance, r)))
                .cloned()
                .filter(|p| {
                    p.value
                        .as_ref()
                        .is_some_and(|v| (self.validity)(&instance, v))
                });
            // Rule 2: prevote.
            if step == Some(Step::Propose)
                && let Some(p) = &proposal
            {
                let v = p.value.clone().unwrap_or_default();
                let ok = if p.valid_round == NO_ROUND {
                    st.locked.as_ref().is_none_or(|(_, lv)| *lv == v)
                } else if p.valid_round < r
                    && Self::count(st, Kind::Prevote, p.valid_round, Some(&p.value_hash)) >= q
                {
                    st.locked
                        .as_ref()
                        .is_none_or(|(lr, lv)| *lr <= p.valid_round || *lv == v)
                } else {
                    // Wait for the prevotes that justify it (or the propose timeout).
                    return;
                };
                let h = if ok { p.value_hash } else { B256::ZERO };
                if let Some(st) = self.instances.get_mut(&instance) {
                    st.step = Some(Step::Prevote);
                }
                self.vote(instance, Kind::Prevote, r, h, now_ms);
                continue;
            }
            // Rule 3: a prevote quorum for the proposal.
            if step >= Some(Step::Prevote)
                && let Some(p) = &proposal
                && Self::count(st, Kind::Prevote, r, Some(&p.value_hash)) >= q
                && !st.done.contains(&(0, r))
            {
                let v = p.value.clone().unwrap_or_default();
                let was_prevote = step == Some(Step::Prevote);
                if let Some(st) = self.instances.get_mut(&instance) {
                    st.done.insert((0, r));
                    st.valid = Some((r, v.clone()));
                    if was_prevote {
                        st.locked = Some((r, v));
                        st.step = Some(Step::Precommit);
                    }
                }
                if was_prevote {
                    self.vote(instance, Kind::Precommit, r, p.value_hash, now_ms);
                }
                continue;
            }
            if step == Some(Step::Prevote)
                && Self::count(st, Kind::Prevote, r, Some(&B256::ZERO)) >= q
            {
                if let Some(st) = self.instances.get_mut(&instance) {
                    st.step = Some(Step::Precommit);
                }
                self.vote(instance, Kind::Precommit, r, B256::ZERO, now_ms);
                continue;
            }
            if step == Some(Step::Prevote)
                && Self::count(st, Kind::Prevote, r, None) >= q
                && !st.done.contains(&(1, r))
            {
                if let Some(st) = self.instances.get_mut(&instance) {
                    st.done.insert((1, r));
                }
                self.timer(instance, r, Step::Prevote, now_ms);
                continue;
            }
            if Self::count(st, Kind::Precommit, r, None) >= q && !st.done.contains(&(2, r)) {
                if let Some(st) = self.instances.get_mut(&instance) {
                    st.done.insert((2, r));
                }
                self.timer(instance, r, Step::Precommit, now_ms);
                continue;
            }
            return;
        }
    }
}

impl DutyConsensus for Tendermint {
    type Message = Message;

    fn name(&self) -> &'static str {
        "tendermint"
    }

    fn propose(&mut self, instance: InstanceId, value: Vec<u8>, now_ms: u64) {
        if self.forgotten.contains(&instance) {
            return;
        }
        let st = self.instances.entry(instance).or_default();
        if st.started {
            return;
        }
        st.started = true;
        st.input = Some(value);
        self.start_round(instance, 0, now_ms);
    }

    fn on_message(&mut self, from: u32, msg: Message, now_ms: u64) {
        if msg.sender != from || from == self.me || self.forgotten.contains(&msg.instance) {
            return;
        }
        let Some(id) = self.members.get(from as usize) else {
            return;
        };
        let value_ok = match (&msg.kind, &msg.value) {
            (Kind::Proposal, Some(v)) => hash(v) == msg.value_hash,
            (Kind::Proposal, None) => false,
            (_, v) => v.is_none(),
        };
        if !value_ok || !id.verify(&msg.digest(), &msg.signature) {
            return;
        }
        self.instances.entry(msg.instance).or_default();
        self.store(msg, now_ms);
    }

    fn on_timeout(&mut self, timer: Timer, now_ms: u64) {
        let round = timer.round & ((1 << STEP_SHIFT) - 1);
        let step = timer.round >> STEP_SHIFT;
        let instance = timer.instance;
        let Some(st) = self.instances.get(&instance) else {
            return;
        };
        if st.decided || st.round != round {
            return;
        }
        match (step, st.step) {
            (1, Some(Step::Propose)) => {
                if let Some(st) = self.instances.get_mut(&instance) {
                    st.step = Some(Step::Prevote);
                }
                self.vote(instance, Kind::Prevote, round, B256::ZERO, now_ms);
            }
            (2, Some(Step::Prevote)) => {
                if let Some(st) = self.instances.get_mut(&instance) {
                    st.step = Some(Step::Precommit);
                }
                self.vote(instance, Kind::Precommit, round, B256::ZERO, now_ms);
            }
            (3, _) => self.start_round(instance, round + 1, now_ms),
            _ => {}
        }
    }

    fn instance_of(msg: &Message) -> InstanceId {
        msg.instance
    }

    fn forget(&mut self, instance: &InstanceId) {
        self.instances.remove(instance);
        self.forgotten.insert(*instance);
    }

    fn drain_effects(&mut self) -> Vec<Effect<Message>> {
        std::mem::take(&mut self.effects)
    }
}
