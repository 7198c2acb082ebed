//! QBFT (Moniz, "The Istanbul BFT Consensus Algorithm", 2020), the default duty consensus, as
//! in Obol's Charon. One instance per duty; `n` members, `f = ⌊(n − 1) / 3⌋`, quorum
//! `Q = ⌈(n + f + 1) / 2⌉`; the leader of round `r` of instance `λ` is member
//! `(λ + r) mod n` (λ read from the instance id's first eight bytes).
//!
//! The rules, as built (each message is signed with the sender's identity key):
//!
//! 1. **Start.** On `propose`, enter round 1 and set its timer (`base + (r − 1)·step` ms). The
//!    round-1 leader broadcasts `PRE-PREPARE(1, v)`.
//! 2. **Pre-prepare.** On a justified `PRE-PREPARE(r, v)` from `leader(r)` with `r ≥` the current
//!    round and `v` valid: move to round `r` and broadcast `PREPARE(r, v)`. Round 1 needs no
//!    justification; later rounds need a quorum of `ROUND-CHANGE(r)` and, if any of them reports
//!    a prepared value, the quorum of `PREPARE`s of the highest such one, whose value must be `v`.
//! 3. **Prepare.** On a quorum of `PREPARE(r, v)` for the current round: record
//!    `(prepared_round, prepared_value) = (r, v)` with those prepares as certificate and broadcast
//!    `COMMIT(r, v)`.
//! 4. **Commit.** On a quorum of `COMMIT(r, v)` (any round): decide `v`, and broadcast
//!    `DECIDED(v)` carrying the commits so members that missed them decide too.
//! 5. **Timeout.** When round `r`'s timer expires: enter `r + 1`, set its timer, broadcast
//!    `ROUND-CHANGE(r + 1, prepared_round, prepared_value)` with the prepare certificate.
//! 6. **Catch-up.** On `f + 1` valid `ROUND-CHANGE`s for rounds above the current one, enter the
//!    smallest of those rounds and broadcast a `ROUND-CHANGE` for it.
//! 7. **New leader.** On a quorum of valid `ROUND-CHANGE(r)` for the current round, the leader
//!    of `r` broadcasts `PRE-PREPARE(r, v)` justified by them, with `v` the highest prepared value
//!    among them, or its own proposal if none was prepared.
//!
//! A member keeps the first message of each (kind, round, sender); a different second one is
//! an equivocation, logged and counted, never used.

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
    /// Leader's proposal.
    PrePrepare,
    /// First vote.
    Prepare,
    /// Second vote.
    Commit,
    /// Move to a new round.
    RoundChange,
    /// A decision, with the commits that prove it.
    Decided,
}

/// The signed part of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    /// Kind.
    pub kind: Kind,
    /// Instance.
    pub instance: InstanceId,
    /// Round.
    pub round: u32,
    /// Sender's position in the lock.
    pub sender: u32,
    /// Hash of the value (zero for a round change with nothing prepared).
    pub value_hash: B256,
    /// Round-change only: the round prepared in (0 = none).
    pub prepared_round: u32,
}

impl Body {
    /// What the sender signs.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"phalanx-dv-qbft-v1");
        h.update([self.kind as u8]);
        h.update(self.instance);
        h.update(self.round.to_be_bytes());
        h.update(self.sender.to_be_bytes());
        h.update(self.value_hash);
        h.update(self.prepared_round.to_be_bytes());
        h.finalize().into()
    }
}

/// A QBFT message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// What is signed.
    pub body: Body,
    /// The value, when the message carries one.
    pub value: Option<Vec<u8>>,
    /// Sender's identity signature over the body.
    pub signature: IdentitySignature,
    /// Messages that justify this one (round changes, prepares, commits).
    pub justification: Vec<Message>,
}

fn value_hash(v: &[u8]) -> B256 {
    B256::from(<[u8; 32]>::from(Sha256::digest(v)))
}

#[derive(Default)]
struct Instance {
    round: u32,
    started: bool,
    input: Option<Vec<u8>>,
    prepared: Option<(u32, Vec<u8>, Vec<Message>)>,
    decided: bool,
    /// Our DECIDED message, replayed to stragglers.
    decision: Option<Message>,
    /// First message per (kind, round, sender).
    msgs: BTreeMap<(Kind, u32, u32), Message>,
    /// Rounds whose PRE-PREPARE this member already answered.
    prepared_for: BTreeSet<u32>,
    committed_for: BTreeSet<u32>,
    proposed_for: BTreeSet<u32>,
}

/// QBFT over many instances.
pub struct Qbft {
    members: Vec<OperatorId>,
    me: u32,
    key: OperatorKey,
    validity: Validity,
    base_timeout_ms: u64,
    step_timeout_ms: u64,
    instances: BTreeMap<InstanceId, Instance>,
    forgotten: BTreeSet<InstanceId>,
    effects: Vec<Effect<Message>>,
    equivocations: u64,
}

impl std::fmt::Debug for Qbft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qbft")
            .field("me", &self.me)
            .field("instances", &self.instances.len())
            .finish_non_exhaustive()
    }
}

impl Qbft {
    /// A QBFT engine for member `me` of `members`, with round timeouts
    /// `base_timeout_ms + (r − 1)·step_timeout_ms`.
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
            equivocations: 0,
        }
    }

    /// Equivocating messages seen so far.
    pub fn equivocations(&self) -> u64 {
        self.equivocations
    }

    fn n(&self) -> usize {
        self.members.len()
    }

    /// The leader of `round` of `instance`.
    pub fn leader(&self, instance: &InstanceId, round: u32) -> u32 {
        round_robin(instance, round, self.members.len())
    }

    fn sign(&self, body: Body, value: Option<Vec<u8>>, justification: Vec<Message>) -> Message {
        let signature = self.key.sign(&body.digest());
        Message {
            body,
            value,
            signature,
            justification,
        }
    }

    fn timeout_at(&self, round: u32, now_ms: u64) -> u64 {
        now_ms + self.base_timeout_ms + u64::from(round.saturating_sub(1)) * self.step_timeout_ms
    }

    /// Signature, sender and value-hash checks of one message (not its justification).
    fn authentic(&self, m: &Message) -> bool {
        let Some(id) = self.members.get(m.body.sender as usize) else {
            return false;
        };
        if let Some(v) = &m.value
            && value_hash(v) != m.body.value_hash
        {
            return false;
        }
        id.verify(&m.body.digest(), &m.signature)
    }

    /// A quorum of distinct, authentic `kind` messages for `(instance, round, hash)`.
    /// (Messages from an instance's store were authenticated on receipt; embedded
    /// justifications are authenticated here.)
    fn is_quorum(
        &self,
        msgs: &[&Message],
        kind: Kind,
        instance: &InstanceId,
        round: u32,
        hash: &B256,
    ) -> bool {
        let senders: BTreeSet<u32> = msgs
            .iter()
            .filter(|m| {
                m.body.kind == kind
                    && &m.body.instance == instance
                    && m.body.round == round
                    && &m.body.value_hash == hash
                    && self.authentic(m)
            })
            .map(|m| m.body.sender)
            .collect();
        senders.len() >= quorum(self.n())
    }

    /// A round change is justified if it prepared nothing, or carries a prepare quorum for
    /// what it says it prepared.
    fn justify_round_change(&self, m: &Message) -> bool {
        if m.body.prepared_round == 0 {
            return true;
        }
        let Some(v) = &m.value else {
            return false;
        };
        let prepares: Vec<&Message> = m.justification.iter().collect();
        m.body.prepared_round < m.body.round
            && value_hash(v) == m.body.value_hash
            && self.is_quorum(
                &prepares,
                Kind::Prepare,
                &m.body.instance,
                m.body.prepared_round,
                &m.body.value_hash,
            )
    }

    fn justify_pre_prepare(&self, m: &Message) -> bool {
        let r = m.body.round;
        if r == 1 {
            return true;
        }
        let rcs: Vec<&Message> = m
            .justification
            .iter()
            .filter(|j| {
                j.body.kind == Kind::RoundChange
                    && j.body.instance == m.body.instance
                    && j.body.round == r
                    && self.authentic(j)
            })
            .collect();
        let senders: BTreeSet<u32> = rcs.iter().map(|j| j.body.sender).collect();
        if senders.len() < quorum(self.n()) {
            return false;
        }
        let highest = rcs
            .iter()
            .filter(|j| j.body.prepared_round > 0)
            .max_by_key(|j| j.body.prepared_round);
        match highest {
            None => true,
            Some(h) => {
                let prepares: Vec<&Message> = m
                    .justification
                    .iter()
                    .filter(|j| j.body.kind == Kind::Prepare)
                    .collect();
                h.body.value_hash == m.body.value_hash
                    && self.is_quorum(
                        &prepares,
                        Kind::Prepare,
                        &m.body.instance,
                        h.body.prepared_round,
                        &h.body.value_hash,
                    )
            }
        }
    }

    fn enter_round(&mut self, instance: InstanceId, round: u32, now_ms: u64) {
        let at_ms = self.timeout_at(round, now_ms);
        if let Some(st) = self.instances.get_mut(&instance) {
            st.round = round;
        }
        self.effects.push(Effect::SetTimer {
            timer: Timer { instance, round },
            at_ms,
        });
    }

    fn broadcast(&mut self, instance: InstanceId, msg: Message, now_ms: u64) {
        self.effects.push(Effect::Broadcast(msg.clone()));
        // A member hears its own messages.
        self.receive(instance, msg, now_ms);
    }

    fn receive(&mut self, instance: InstanceId, msg: Message, now_ms: u64) {
        let key = (msg.body.kind, msg.body.round, msg.body.sender);
        let Some(st) = self.instances.get_mut(&instance) else {
            return;
        };
        match st.msgs.get(&key) {
            Some(prev) if prev.body != msg.body => {
                self.equivocations += 1;
                tracing::warn!(sender = msg.body.sender, round = msg.body.round, kind = ?msg.body.kind, "qbft: equivocation ignored");
                return;
            }
            Some(_) => return,
            None => {
                st.msgs.insert(key, msg);
            }
        }
        self.evaluate(instance, now_ms);
    }

    /// Applies every rule that the messages in hand now trigger.
    fn evaluate(&mut self, instance: InstanceId, now_ms: u64) {
        let n = self.n();
        let q = quorum(n);
        loop {
            let Some(st) = self.instances.get(&instance) else {
                return;
            };
            if st.decided {
                return;
            }
            let round = st.round;

            // Rule 4 (and DECIDED): a commit quorum for any round.
            let mut commits: BTreeMap<(u32, B256), Vec<&Message>> = BTreeMap::new();
            for ((k, r, _), m) in &st.msgs {
                if *k == Kind::Commit {
                    commits.entry((*r, m.body.value_hash)).or_default().push(m);
                }
            }
            let decided = commits
                .iter()
                .find(|(_, ms)| ms.len() >= q)
                .and_then(|(_, ms)| {
                    ms.iter()
                        .find_map(|m| m.value.clone())
                        .map(|v| (v, ms.iter().map(|m| (*m).clone()).collect::<Vec<_>>()))
                });
            let from_decided = st.msgs.iter().find_map(|((k, _, _), m)| {
                (*k == Kind::Decided)
                    .then(|| m.value.clone().map(|v| (v, m.justification.clone())))
                    .flatten()
            });
            if let Some((value, proof)) = decided.or(from_decided) {
                let body = Body {
                    kind: Kind::Decided,
                    instance,
                    round,
                    sender: self.me,
                    value_hash: value_hash(&value),
                    prepared_round: 0,
                };
                let msg = self.sign(body, Some(value.clone()), proof);
                if let Some(st) = self.instances.get_mut(&instance) {
                    st.decided = true;
                    st.decision = Some(msg.clone());
                }
                self.effects.push(Effect::Broadcast(msg));
                self.effects.push(Effect::Decided { instance, value });
                return;
            }
            if !st.started {
                return;
            }

            // Rule 2: a justified pre-prepare from the leader of a round ≥ ours.
            let leader_msgs: Vec<Message> = st
                .msgs
                .iter()
                .filter(|((k, r, s), _)| {
                    *k == Kind::PrePrepare
                        && *r >= round
                        && !st.prepared_for.contains(r)
                        && *s == self.leader(&instance, *r)
                })
                .map(|(_, m)| m.clone())
                .collect();
            // (Validity and justification were checked on receipt.)
            if let Some(pp) = leader_msgs.into_iter().next() {
                let r = pp.body.round;
                if r > round {
                    self.enter_round(instance, r, now_ms);
                }
                if let Some(st) = self.instances.get_mut(&instance) {
                    st.prepared_for.insert(r);
                }
                let body = Body {
                    kind: Kind::Prepare,
                    instance,
                    round: r,
                    sender: self.me,
                    value_hash: pp.body.value_hash,
                    prepared_round: 0,
                };
                let msg = self.sign(body, pp.value.clone(), Vec::new());
                self.broadcast(instance, msg, now_ms);
                continue;
            }

            // Rule 3: a prepare quorum for the current round.
            if !st.committed_for.contains(&round) {
                let mut prepares: BTreeMap<B256, Vec<&Message>> = BTreeMap::new();
                for ((k, r, _), m) in &st.msgs {
                    if *k == Kind::Prepare && *r == round {
                        prepares.entry(m.body.value_hash).or_default().push(m);
                    }
                }
                let found =
                    prepares
                        .into_iter()
                        .find(|(_, ms)| ms.len() >= q)
                        .and_then(|(h, ms)| {
                            ms.iter()
                                .find_map(|m| m.value.clone())
                                .map(|v| (h, v, ms.into_iter().cloned().collect::<Vec<_>>()))
                        });
                if let Some((hash, value, cert)) = found {
                    if let Some(st) = self.instances.get_mut(&instance) {
                        st.committed_for.insert(round);
                        st.prepared = Some((round, value.clone(), cert));
                    }
                    let body = Body {
                        kind: Kind::Commit,
                        instance,
                        round,
                        sender: self.me,
                        value_hash: hash,
                        prepared_round: 0,
                    };
                    let msg = self.sign(body, Some(value), Vec::new());
                    self.broadcast(instance, msg, now_ms);
                    continue;
                }
            }

            // Rule 6: f + 1 round changes for higher rounds.
            let higher: BTreeMap<u32, u32> = st
                .msgs
                .iter()
                .filter(|((k, r, _), _)| *k == Kind::RoundChange && *r > round)
                .fold(BTreeMap::new(), |mut acc, ((_, r, s), _)| {
                    let e = acc.entry(*s).or_insert(*r);
                    *e = (*e).max(*r);
                    acc
                });
            if higher.len() > faults(n) {
                let min_round = higher.values().copied().min().unwrap_or(round + 1);
                self.enter_round(instance, min_round, now_ms);
                self.send_round_change(instance, min_round, now_ms);
                continue;
            }

            // Rule 7: a round-change quorum for the current round, and we lead it.
            if round > 1
                && self.leader(&instance, round) == self.me
                && !st.proposed_for.contains(&round)
            {
                let rcs: Vec<Message> = st
                    .msgs
                    .iter()
                    .filter(|((k, r, _), _)| *k == Kind::RoundChange && *r == round)
                    .map(|(_, m)| m.clone())
                    .collect();
                if rcs.len() >= q {
                    let highest = rcs
                        .iter()
                        .filter(|m| m.body.prepared_round > 0)
                        .max_by_key(|m| m.body.prepared_round);
                    let (value, mut justification) = match highest {
                        Some(h) => (h.value.clone(), h.justification.clone()),
                        None => (st.input.clone(), Vec::new()),
                    };
                    if let Some(value) = value {
                        justification.extend(rcs.iter().map(|m| Message {
                            justification: Vec::new(),
                            ..m.clone()
                        }));
                        if let Some(st) = self.instances.get_mut(&instance) {
                            st.proposed_for.insert(round);
                        }
                        let body = Body {
                            kind: Kind::PrePrepare,
                            instance,
                            round,
                            sender: self.me,
                            value_hash: value_hash(&value),
                            prepared_round: 0,
                        };
                        let msg = self.sign(body, Some(value), justification);
                        self.broadcast(instance, msg, now_ms);
                        continue;
                    }
                }
            }
            return;
        }
    }

    fn send_round_change(&mut self, instance: InstanceId, round: u32, now_ms: u64) {
        let prepared = self
            .instances
            .get(&instance)
            .and_then(|st| st.prepared.clone());
        let (prepared_round, value, cert) = match prepared {
            Some((r, v, c)) => (r, Some(v), c),
            None => (0, None, Vec::new()),
        };
        let body = Body {
            kind: Kind::RoundChange,
            instance,
            round,
            sender: self.me,
            value_hash: value.as_deref().map(value_hash).unwrap_or_default(),
            prepared_round,
        };
        let msg = self.sign(body, value, cert);
        self.broadcast(instance, msg, now_ms);
    }
}

impl DutyConsensus for Qbft {
    type Message = Message;

    fn name(&self) -> &'static str {
        "qbft"
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
        st.input = Some(value.clone());
        self.enter_round(instance, 1, now_ms);
        if self.leader(&instance, 1) == self.me {
            let body = Body {
                kind: Kind::PrePrepare,
                instance,
                round: 1,
                sender: self.me,
                value_hash: value_hash(&value),
                prepared_round: 0,
            };
            if let Some(st) = self.instances.get_mut(&instance) {
                st.proposed_for.insert(1);
            }
            let msg = self.sign(body, Some(value), Vec::new());
            self.broadcast(instance, msg, now_ms);
        } else {
            self.evaluate(instance, now_ms);
        }
    }

    fn on_message(&mut self, from: u32, msg: Message, now_ms: u64) {
        let instance = msg.body.instance;
        if msg.body.sender != from
            || from == self.me
            || self.forgotten.contains(&instance)
            || !self.authentic(&msg)
        {
            return;
        }
        let justified = match msg.body.kind {
            Kind::PrePrepare => {
                msg.value
                    .as_ref()
                    .is_some_and(|v| (self.validity)(&instance, v))
                    && self.justify_pre_prepare(&msg)
            }
            Kind::RoundChange => self.justify_round_change(&msg),
            Kind::Prepare | Kind::Commit => msg
                .value
                .as_ref()
                .is_some_and(|v| (self.validity)(&instance, v)),
            Kind::Decided => true,
        };
        if !justified {
            return;
        }
        if msg.body.kind == Kind::Decided {
            // Trust a decision only with its commit quorum.
            let proof: Vec<&Message> = msg.justification.iter().collect();
            let round = msg.justification.first().map_or(0, |m| m.body.round);
            if !self.is_quorum(&proof, Kind::Commit, &instance, round, &msg.body.value_hash) {
                return;
            }
        }
        // Reply to a straggler's round change with our decision.
        if msg.body.kind == Kind::RoundChange
            && let Some(st) = self.instances.get(&instance)
            && st.decided
            && let Some(d) = &st.decision
        {
            self.effects.push(Effect::Broadcast(d.clone()));
            return;
        }
        self.instances.entry(instance).or_default();
        self.receive(instance, msg, now_ms);
    }

    fn on_timeout(&mut self, timer: Timer, now_ms: u64) {
        let Some(st) = self.instances.get(&timer.instance) else {
            return;
        };
        if st.decided || st.round != timer.round || !st.started {
            return;
        }
        let next = timer.round + 1;
        self.enter_round(timer.instance, next, now_ms);
        self.send_round_change(timer.instance, next, now_ms);
        self.evaluate(timer.instance, now_ms);
    }

    fn instance_of(msg: &Message) -> InstanceId {
        msg.body.instance
    }

    fn forget(&mut self, instance: &InstanceId) {
        self.instances.remove(instance);
        self.forgotten.insert(*instance);
    }

    fn drain_effects(&mut self) -> Vec<Effect<Message>> {
        std::mem::take(&mut self.effects)
    }
}
