use alloy_primitives::B256;
use phalanx_dv::consensus::{DutyConsensus, Effect, InstanceId, Timer, Validity};
use phalanx_dv::identity::OperatorKey;
use phalanx_dv::lock::{ClusterLock, DistributedValidator, LOCK_VERSION, LockBody};
use phalanx_dv::member::{
    Duty, DutyData, DutyKind, DvMessage, Member, MemberConfig, MemberEffect, MemberTimer,
};
use phalanx_dv::qbft::Qbft;
use phalanx_dv::threshold::{SecretShare, deal, verify_partial};
use phalanx_types::signing::SigningContext;
use phalanx_types::*;
use phalanx_validator::slashing_protection::SlashingProtection;

use crate::{operators, rng};

/// A stand-in consensus that decides whatever the test tells it to (the member's pipeline
/// after the decision is what these tests look at).
#[derive(Default)]
struct Scripted {
    effects: Vec<Effect<()>>,
}

impl DutyConsensus for Scripted {
    type Message = ();
    fn name(&self) -> &'static str {
        "scripted"
    }
    fn propose(&mut self, _: InstanceId, _: Vec<u8>, _: u64) {}
    fn on_message(&mut self, _: u32, _: (), _: u64) {}
    fn on_timeout(&mut self, _: Timer, _: u64) {}
    fn instance_of(_: &()) -> InstanceId {
        B256::ZERO
    }
    fn forget(&mut self, _: &InstanceId) {}
    fn drain_effects(&mut self) -> Vec<Effect<()>> {
        std::mem::take(&mut self.effects)
    }
}

fn ctx() -> SigningContext {
    SigningContext {
        fork_version: [0, 0, 0, 1],
        genesis_validators_root: B256::repeat_byte(3),
    }
}

fn cluster(n: usize, m: usize) -> (Vec<OperatorKey>, LockBody, Vec<SecretShare>) {
    let (keys, ops) = operators(n, 11);
    let (poly, shares) = deal(m, n as u32, &mut rng(12)).unwrap();
    let body = LockBody {
        version: LOCK_VERSION,
        name: "t".into(),
        threshold: m,
        generation: 0,
        previous_lock_hash: None,
        operators: ops,
        validators: vec![DistributedValidator::from_poly(&poly, n)],
        ballot: None,
    };
    let lock = ClusterLock::sign_all(body, &keys).unwrap();
    (keys, lock.body, shares)
}

fn attestation(head: u8) -> DutyData {
    DutyData::Attestation(AttestationData {
        slot: Slot(40),
        committee_index: 0,
        head_root: B256::repeat_byte(head),
        source: Checkpoint {
            epoch: Epoch(4),
            root: B256::ZERO,
        },
        target: Checkpoint {
            epoch: Epoch(5),
            root: B256::ZERO,
        },
    })
}

const DUTY: Duty = Duty {
    validator: 0,
    slot: 40,
    kind: DutyKind::Attestation,
    start_ms: 0,
    deadline_ms: 4_000,
};

fn partials<C: DutyConsensus>(m: &mut Member<C>) -> Vec<phalanx_dv::member::Partial> {
    m.drain_effects()
        .into_iter()
        .filter_map(|e| match e {
            MemberEffect::Broadcast(DvMessage::Partial(p)) => Some(p),
            _ => None,
        })
        .collect()
}

fn member(
    index: u32,
    lock: &LockBody,
    share: &SecretShare,
    protection: SlashingProtection,
    decide: Option<DutyData>,
) -> Member<Scripted> {
    let mut consensus = Scripted::default();
    if let Some(d) = decide {
        consensus.effects.push(Effect::Decided {
            instance: DUTY.instance(),
            value: d.encode(),
        });
    }
    Member::new(
        MemberConfig {
            index,
            failover_fraction: 0.5,
            signing: ctx(),
        },
        lock.clone(),
        std::slice::from_ref(share),
        protection,
        consensus,
    )
    .unwrap()
}

#[test]
fn a_member_killed_and_restarted_mid_duty_never_signs_twice() {
    let (_, lock, shares) = cluster(4, 3);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("protection.redb");
    let gvr = ctx().genesis_validators_root;

    // First life: decides head 0xaa, signs a partial, then the process dies.
    let mut first = member(
        0,
        &lock,
        &shares[0],
        SlashingProtection::open(&db, gvr).unwrap(),
        Some(attestation(0xaa)),
    );
    first.on_duty(DUTY, &attestation(0xaa), 0);
    let sent = partials(&mut first);
    assert_eq!(sent.len(), 1, "the first life signs once");
    drop(first);

    // Second life: the cluster decides other data for the same duty (new round after the crash).
    let mut second = member(
        0,
        &lock,
        &shares[0],
        SlashingProtection::open(&db, gvr).unwrap(),
        Some(attestation(0xbb)),
    );
    second.on_duty(DUTY, &attestation(0xbb), 100);
    assert!(
        partials(&mut second).is_empty(),
        "no second signature for the same target"
    );
    assert_eq!(second.refused(), 1);
    drop(second);

    // Same data again after a restart is refused too: a partial never leaves twice.
    let mut third = member(
        0,
        &lock,
        &shares[0],
        SlashingProtection::open(&db, gvr).unwrap(),
        Some(attestation(0xaa)),
    );
    third.on_duty(DUTY, &attestation(0xaa), 200);
    assert!(partials(&mut third).is_empty());
}

#[test]
fn m_valid_partials_make_one_submission_and_invalid_ones_are_named() {
    let (_, lock, shares) = cluster(4, 3);
    let gvr = ctx().genesis_validators_root;
    let data = attestation(0xcc);
    let mut members: Vec<Member<Scripted>> = (0..4)
        .map(|i| {
            member(
                i,
                &lock,
                &shares[i as usize],
                SlashingProtection::in_memory(gvr).unwrap(),
                Some(data.clone()),
            )
        })
        .collect();
    let mut all = Vec::new();
    for m in members.iter_mut() {
        m.on_duty(DUTY, &data, 0);
        all.extend(partials(m));
    }
    let target = &mut members[0];
    // A forged partial claiming to be op-3's: signed by op-2's share.
    let mut forged = all[1].clone();
    forged.sender = 2;
    target.on_message(2, DvMessage::Partial(forged), 10);
    let mut submissions = Vec::new();
    for p in all.iter().skip(1) {
        target.on_message(p.sender, DvMessage::Partial(p.clone()), 20);
        submissions.extend(target.drain_effects().into_iter().filter_map(|e| match e {
            MemberEffect::Submit(s) => Some(s),
            _ => None,
        }));
    }
    assert_eq!(submissions.len(), 1, "one submission per duty");
    // Partials are checked in one batch once m could recover; the batch failed, so each was
    // checked alone and the forger named — before the submission.
    assert_eq!(target.invalid_partials().len(), 1);
    assert_eq!(target.invalid_partials()[0].sender, 2);
    // The partial that arrived after the submission is checked at the duty's expiry and counts.
    target.on_timer(MemberTimer::Expire(DUTY.instance()), DUTY.deadline_ms);
    let root = data.signing_root(&ctx());
    assert!(verify_partial(
        &lock.validators[0].public_key,
        root.as_slice(),
        &submissions[0].signature
    ));
    assert_eq!(target.participation().values().sum::<u64>(), 4);
}

#[test]
fn a_failover_member_releases_only_when_partials_are_missing() {
    let (_, mut lock, shares) = cluster(4, 3);
    lock.operators[3].role = phalanx_dv::lock::Role::Failover;
    let gvr = ctx().genesis_validators_root;
    let data = attestation(0xdd);
    let mut fo = member(
        3,
        &lock,
        &shares[3],
        SlashingProtection::in_memory(gvr).unwrap(),
        Some(data.clone()),
    );
    fo.on_duty(DUTY, &data, 0);
    let effects = fo.drain_effects();
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, MemberEffect::Broadcast(DvMessage::Partial(_)))),
        "held back"
    );
    let timer = effects
        .iter()
        .find_map(|e| match e {
            MemberEffect::Timer {
                at_ms,
                timer: t @ phalanx_dv::member::MemberTimer::Failover(_),
            } => Some((*at_ms, *t)),
            _ => None,
        })
        .unwrap();
    assert_eq!(timer.0, 2_000, "half-way to the deadline");
    fo.on_timer(timer.1, timer.0);
    assert_eq!(
        partials(&mut fo).len(),
        1,
        "fewer than m partials at the failover point: released"
    );
}

#[test]
fn qbft_members_decide_the_same_value_through_a_crashed_leader() {
    let (keys, _, _) = cluster(4, 3);
    let ids: Vec<_> = keys.iter().map(OperatorKey::id).collect();
    let instance = DUTY.instance();
    let validity = || -> Validity { Box::new(|_, v: &[u8]| DutyData::decode(v).is_some()) };
    let mut engines: Vec<Qbft> = (0..4)
        .map(|i| {
            Qbft::new(
                ids.clone(),
                i,
                keys[i as usize].clone(),
                validity(),
                750,
                250,
            )
        })
        .collect();
    let crashed = engines[0].leader(&instance, 1);
    let mut now = 0;
    let mut timers = Vec::new();
    for (i, e) in engines.iter_mut().enumerate() {
        if i as u32 != crashed {
            e.propose(instance, attestation(i as u8).encode(), now);
        }
    }
    let mut decided: Vec<Option<Vec<u8>>> = vec![None; 4];
    for _ in 0..50 {
        let mut msgs = Vec::new();
        for (i, e) in engines.iter_mut().enumerate() {
            for eff in e.drain_effects() {
                match eff {
                    Effect::Broadcast(m) => msgs.push((i as u32, m)),
                    Effect::SetTimer { timer, at_ms } => timers.push((at_ms, i, timer)),
                    Effect::Decided { value, .. } => decided[i] = Some(value),
                }
            }
        }
        if msgs.is_empty() {
            timers.sort_by_key(|t| t.0);
            if timers.is_empty() {
                break;
            }
            let (at, i, t) = timers.remove(0);
            now = at;
            if i as u32 != crashed {
                engines[i].on_timeout(t, now);
            }
            continue;
        }
        for (from, m) in msgs {
            for (to, e) in engines.iter_mut().enumerate() {
                if to as u32 != from && to as u32 != crashed {
                    e.on_message(from, m.clone(), now);
                }
            }
        }
    }
    let live: Vec<_> = (0..4)
        .filter(|i| *i as u32 != crashed)
        .map(|i| decided[i].clone())
        .collect();
    assert!(
        live.iter().all(Option::is_some),
        "all live members decide: {live:?}"
    );
    assert!(live.windows(2).all(|w| w[0] == w[1]), "and agree");
    assert!(now >= 750, "it took a round change");
}
