use std::collections::{BTreeMap, VecDeque};

use phalanx_crypto::bls::{PublicKey, Signature};
use phalanx_dv::dkg::{
    CeremonySpec, DkgError, DkgMessage, DkgOutput, Participant, Payload, ReshareSpec,
};
use phalanx_dv::identity::{OperatorId, OperatorKey};
use phalanx_dv::lock::{ClusterLock, Operator};
use phalanx_dv::threshold::{SecretShare, recover_signature, verify_partial};
use rand::Rng;

use crate::{operators, rng};

/// Tampering with messages in flight: `(from, to, message) → message or None (drop)`.
type Tamper<'a> = dyn FnMut(OperatorId, OperatorId, DkgMessage) -> Option<DkgMessage> + 'a;

/// Runs participants to completion over an in-process network that loses `loss` of the
/// messages; a tick every 10 ms (retries every 50 ms, deadline 5 s).
fn run(
    mut parts: Vec<Participant>,
    loss: f64,
    seed: u64,
    tamper: &mut Tamper<'_>,
) -> Vec<Participant> {
    let mut r = rng(seed);
    let mut queue: VecDeque<(OperatorId, OperatorId, DkgMessage)> = VecDeque::new();
    let index: BTreeMap<OperatorId, usize> =
        parts.iter().enumerate().map(|(i, p)| (p.id(), i)).collect();
    let mut now = 0;
    while now <= 6_000 && !parts.iter().all(Participant::finished) {
        for p in parts.iter_mut() {
            let from = p.id();
            for (to, msg) in p.drain_outbox() {
                queue.push_back((from, to, msg));
            }
        }
        while let Some((from, to, msg)) = queue.pop_front() {
            if r.random_bool(loss) {
                continue;
            }
            let Some(msg) = tamper(from, to, msg) else {
                continue;
            };
            if let Some(&i) = index.get(&to) {
                parts[i].on_message(from, msg);
                for (to2, m2) in parts[i].drain_outbox() {
                    queue.push_back((to, to2, m2));
                }
            }
        }
        now += 10;
        for p in parts.iter_mut() {
            p.on_tick(now);
        }
    }
    parts
}

fn start(
    spec: &CeremonySpec,
    keys: &[OperatorKey],
    secrets: Vec<Option<Vec<SecretShare>>>,
) -> Vec<Participant> {
    let mut r = rng(77);
    keys.iter()
        .zip(secrets)
        .map(|(k, s)| Participant::new(spec.clone(), k.clone(), s, 0, 5_000, 50, &mut r).unwrap())
        .collect()
}

fn fresh(n: usize, m: usize, validators: usize) -> (Vec<OperatorKey>, CeremonySpec) {
    let (keys, ops) = operators(n, 5);
    let spec = CeremonySpec {
        name: "test".into(),
        operators: ops,
        threshold: m,
        validators,
        reshare: None,
    };
    (keys, spec)
}

fn outputs(parts: &mut [Participant]) -> Vec<DkgOutput> {
    parts
        .iter_mut()
        .map(|p| {
            assert!(p.error().is_none(), "{:?}", p.error());
            p.take_output().expect("ceremony finished")
        })
        .collect()
}

fn group_signature(
    outs: &[DkgOutput],
    who: &[usize],
    validator: usize,
    msg: &[u8],
) -> phalanx_crypto::bls::SignatureBytes {
    let partials: Vec<_> = who
        .iter()
        .map(|&i| {
            let s = &outs[i].shares[validator];
            (s.index, s.secret_key().unwrap().sign(msg).to_bytes())
        })
        .collect();
    recover_signature(&partials, who.len()).unwrap()
}

#[test]
fn four_operators_agree_on_one_lock_whose_group_key_signs() {
    let (keys, spec) = fresh(4, 3, 2);
    let parts = start(&spec, &keys, vec![None; 4]);
    let mut parts = run(parts, 0.0, 1, &mut |_, _, m| Some(m));
    let outs = outputs(&mut parts);
    let lock = &outs[0].lock;
    for o in &outs {
        assert_eq!(o.lock, *lock, "every operator holds the same lock");
    }
    ClusterLock::from_json(&lock.to_json()).unwrap();
    assert_eq!(lock.body.validators.len(), 2);
    for v in 0..2 {
        let sig = group_signature(&outs, &[0, 2, 3], v, b"duty");
        let pk = PublicKey::from_bytes(lock.body.validators[v].public_key.as_slice()).unwrap();
        assert!(
            Signature::from_bytes(sig.as_slice())
                .unwrap()
                .verify(&pk, b"duty")
        );
        for (i, o) in outs.iter().enumerate() {
            assert_eq!(
                o.shares[v].public_share(),
                lock.body.validators[v].public_shares[i]
            );
        }
    }
    assert_ne!(
        lock.body.validators[0].public_key, lock.body.validators[1].public_key,
        "each validator has its own key"
    );
}

#[test]
fn dropped_messages_are_retried_not_fatal() {
    let (keys, spec) = fresh(4, 3, 1);
    let parts = start(&spec, &keys, vec![None; 4]);
    let mut parts = run(parts, 0.3, 9, &mut |_, _, m| Some(m));
    let outs = outputs(&mut parts);
    assert!(outs.iter().all(|o| o.lock == outs[0].lock));
}

#[test]
fn a_silent_operator_is_named_at_the_deadline() {
    let (keys, spec) = fresh(4, 3, 1);
    let silent = keys[2].id();
    let parts = start(&spec, &keys, vec![None; 4]);
    let parts = run(parts, 0.0, 2, &mut |from, _, m| {
        (from != silent).then_some(m)
    });
    for (i, p) in parts.iter().enumerate() {
        if i == 2 {
            continue;
        }
        match p.error() {
            Some(DkgError::Timeout { missing, .. }) => {
                assert_eq!(missing, &vec!["op-3".to_string()])
            }
            other => panic!("expected a timeout naming op-3, got {other:?}"),
        }
    }
}

#[test]
fn a_dealer_sending_a_bad_share_is_identified_by_name() {
    let (keys, spec) = fresh(4, 3, 1);
    let cheat = keys[1].id();
    let victim = keys[3].id();
    let parts = start(&spec, &keys, vec![None; 4]);
    // op-2 sends op-4 a share off by one, re-signed with its own key: a real bad dealing.
    let parts = run(parts, 0.0, 3, &mut |from, to, m| {
        if from == cheat
            && to == victim
            && let DkgMessage::Data {
                id,
                payload: Payload::Shares(mut s),
            } = m.clone()
        {
            s.shares[0].0[31] ^= 1;
            let resigned = resign(&keys[1], s);
            return Some(DkgMessage::Data {
                id,
                payload: Payload::Shares(resigned),
            });
        }
        Some(m)
    });
    let named: Vec<_> = parts
        .iter()
        .filter_map(|p| match p.error() {
            Some(DkgError::BadDealer {
                dealer, accuser, ..
            }) => Some((dealer.clone(), accuser.clone())),
            _ => None,
        })
        .collect();
    assert!(!named.is_empty());
    assert!(
        named.iter().all(|(d, a)| d == "op-2" && a == "op-4"),
        "{named:?}"
    );
    assert!(
        parts.iter().all(|p| p.output().is_none()),
        "nobody keeps a key from a bad ceremony"
    );
}

/// Re-signs tampered shares with the dealer's key (the test plays a malicious dealer).
fn resign(key: &OperatorKey, s: phalanx_dv::dkg::Shares) -> phalanx_dv::dkg::Shares {
    phalanx_dv::dkg::Shares::signed(key, s.ceremony, s.recipient, s.shares)
}

#[test]
fn threshold_without_fault_tolerance_is_refused_unless_forced() {
    let (_, spec) = fresh(4, 4, 1);
    let err = spec.check(false).unwrap_err().to_string();
    assert!(err.contains("no fault tolerance"), "{err}");
    spec.check(true).unwrap();
}

#[test]
fn reshare_four_to_five_keeps_the_group_key_and_old_shares_stop_working() {
    let (keys, spec) = fresh(4, 3, 1);
    let parts = start(&spec, &keys, vec![None; 4]);
    let mut parts = run(parts, 0.0, 4, &mut |_, _, m| Some(m));
    let old = outputs(&mut parts);
    let old_lock = old[0].lock.clone();

    // Five new operators: the four old ones and a newcomer; op-1..op-3 deal.
    let (mut new_keys, mut new_ops) = (keys.clone(), spec.operators.clone());
    let newcomer = OperatorKey::generate(&mut rng(99));
    new_ops.push(Operator {
        name: "op-5".into(),
        identity: newcomer.id(),
        address: "/ip4/127.0.0.1/tcp/9104".into(),
        role: Default::default(),
    });
    new_keys.push(newcomer);
    let reshare = CeremonySpec {
        name: "test".into(),
        operators: new_ops,
        threshold: 4,
        validators: 1,
        reshare: Some(ReshareSpec {
            old: old_lock.clone(),
            dealers: keys[..3].iter().map(OperatorKey::id).collect(),
            ballot: None,
        }),
    };
    let secrets: Vec<Option<Vec<SecretShare>>> = (0..5)
        .map(|i| (i < 3).then(|| old[i].shares.clone()))
        .collect();
    let parts = start(&reshare, &new_keys, secrets);
    let mut parts = run(parts, 0.1, 5, &mut |_, _, m| Some(m));
    let new = outputs(&mut parts);
    let lock = &new[0].lock;
    assert_eq!(
        lock.body.validators[0].public_key,
        old_lock.body.validators[0].public_key
    );
    assert_eq!(lock.body.generation, 1);
    assert_eq!(lock.body.previous_lock_hash, Some(old_lock.lock_hash));
    let gk = lock.body.validators[0].public_key;

    let msg = b"after the reshare";
    let sig = group_signature(&new, &[0, 2, 3, 4], 0, msg);
    assert!(
        verify_partial(&gk, msg, &sig),
        "new shares sign for the same key"
    );

    // Old shares do not verify against the new public shares …
    for (i, o) in old.iter().enumerate() {
        let p = o.shares[0].secret_key().unwrap().sign(msg).to_bytes();
        assert!(!verify_partial(
            &lock.body.validators[0].public_shares[i],
            msg,
            &p
        ));
    }
    // … and a signature recovered from old shares mixed with new ones does not verify.
    let mixed: Vec<_> = [(0usize, true), (1, false), (2, true), (4, false)]
        .iter()
        .map(|&(i, is_old)| {
            let s = if is_old {
                &old[i].shares[0]
            } else {
                &new[i].shares[0]
            };
            (s.index, s.secret_key().unwrap().sign(msg).to_bytes())
        })
        .collect();
    let sig = recover_signature(&mixed, 4).unwrap();
    assert!(!verify_partial(&gk, msg, &sig));
}

#[test]
fn a_reshare_dealer_must_continue_its_current_share() {
    let (keys, spec) = fresh(4, 3, 1);
    let parts = start(&spec, &keys, vec![None; 4]);
    let mut parts = run(parts, 0.0, 6, &mut |_, _, m| Some(m));
    let old = outputs(&mut parts);
    let reshare = CeremonySpec {
        reshare: Some(ReshareSpec {
            old: old[0].lock.clone(),
            dealers: keys[..3].iter().map(OperatorKey::id).collect(),
            ballot: None,
        }),
        ..spec.clone()
    };
    // op-1 deals a fresh random secret instead of its share (as if it lost it and lied).
    let (_, fake) = phalanx_dv::threshold::deal(3, 4, &mut rng(8)).unwrap();
    let secrets = vec![
        Some(vec![fake[0].clone()]),
        Some(old[1].shares.clone()),
        Some(old[2].shares.clone()),
        None,
    ];
    let parts = start(&reshare, &keys, secrets);
    let parts = run(parts, 0.0, 7, &mut |_, _, m| Some(m));
    assert!(parts.iter().any(
        |p| matches!(p.error(), Some(DkgError::BadDealer { dealer, .. }) if dealer == "op-1")
    ));
    assert!(parts.iter().all(|p| p.output().is_none()));
}
