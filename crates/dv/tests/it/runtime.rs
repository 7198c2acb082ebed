//! The process-level drivers over the in-process network: a ceremony, and members signing
//! duties from the duty clock with one member down.

use std::time::Duration;

use phalanx_crypto::bls::{PublicKey, Signature};
use phalanx_dv::ceremony::run_ceremony;
use phalanx_dv::consensus::{BASE_TIMEOUT_MS, STEP_TIMEOUT_MS};
use phalanx_dv::create::deal_cluster;
use phalanx_dv::dkg::CeremonySpec;
use phalanx_dv::duties::DutyClock;
use phalanx_dv::identity::OperatorKey;
use phalanx_dv::lock::Role;
use phalanx_dv::member::{Member, MemberConfig};
use phalanx_dv::qbft::Qbft;
use phalanx_dv::run::{DvMetrics, KnownDuties, RunContext, duty_validity, run, unix_ms};
use phalanx_net::PeerKey;
use phalanx_net::memory::MemoryHub;
use phalanx_types::signing::SigningContext;
use phalanx_validator::slashing_protection::SlashingProtection;

use crate::{operators, rng};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceremony_runs_over_the_in_process_network() {
    let (keys, ops) = operators(4, 11);
    let spec = CeremonySpec {
        name: "mem".into(),
        operators: ops,
        threshold: 3,
        validators: 1,
        reshare: None,
    };
    let hub = MemoryHub::new();
    let tasks: Vec<_> = keys
        .iter()
        .map(|k: &OperatorKey| {
            let mut net = hub.join(PeerKey(k.id().0));
            let (spec, key) = (spec.clone(), k.clone());
            tokio::spawn(async move {
                run_ceremony(
                    &mut net,
                    spec,
                    key,
                    None,
                    Duration::from_secs(20),
                    |_| {},
                    std::future::pending(),
                )
                .await
            })
        })
        .collect();
    let mut locks = Vec::new();
    for t in tasks {
        locks.push(t.await.unwrap().unwrap().unwrap().lock);
    }
    assert!(locks.iter().all(|l| *l == locks[0]));
    locks[0].verify().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_of_four_members_sign_every_clock_duty() {
    let roles = [Role::Regular; 4];
    let cluster = deal_cluster("mem", 3, 2, &roles, |i| format!("mem://{i}"), &mut rng(3)).unwrap();
    let lock = cluster.lock.body.clone();
    let ids: Vec<_> = cluster.keys.iter().map(OperatorKey::id).collect();
    let signing = SigningContext {
        fork_version: [0, 0, 0, 9],
        genesis_validators_root: Default::default(),
    };
    // Long enough that a duty led by the absent member decides in round 2 before its deadline.
    let slot_ms = 1200;
    let clock = DutyClock {
        genesis_ms: 0,
        slot_ms,
        slots_per_epoch: 1,
        validators: 2,
    };
    let from = clock.slot_at(unix_ms()) + 1;
    let hub = MemoryHub::new();
    let mut handles = Vec::new();
    let mut registries = Vec::new();
    // Member 4 (index 3) is down.
    for i in 0..3u32 {
        let known = KnownDuties::default();
        let engine = Qbft::new(
            ids.clone(),
            i,
            cluster.keys[i as usize].clone(),
            duty_validity(2, known.clone()),
            BASE_TIMEOUT_MS,
            STEP_TIMEOUT_MS,
        );
        let member = Member::new(
            MemberConfig {
                index: i,
                failover_fraction: 0.5,
                signing,
            },
            lock.clone(),
            &cluster.shares[i as usize],
            SlashingProtection::in_memory(signing.genesis_validators_root).unwrap(),
            engine,
        )
        .unwrap();
        let net = hub.join(PeerKey(ids[i as usize].0));
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = DvMetrics::register(&mut registry);
        registries.push(registry);
        let (duty_tx, duty_rx) = tokio::sync::mpsc::channel(64);
        let (sub_tx, mut sub_rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(clock.feed(from, Some(from + 3), duty_tx, std::future::pending()));
        let lock = lock.clone();
        handles.push(tokio::spawn(async move {
            let ctx = RunContext {
                lock: &lock,
                known,
                metrics: Some(metrics),
            };
            let report = run(member, ctx, net, duty_rx, sub_tx, std::future::pending())
                .await
                .unwrap();
            let mut subs = Vec::new();
            while let Ok(s) = sub_rx.try_recv() {
                subs.push(s);
            }
            (report, subs)
        }));
    }
    for (h, registry) in handles.into_iter().zip(&registries) {
        let (report, subs) = h.await.unwrap();
        // The participation metric says what the report says.
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        for (name, n) in &report.participation {
            let line = format!("phalanx_dv_partials_in_time_total{{operator=\"{name}\"}} {n}");
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
        assert!(text.contains("phalanx_dv_submissions_total 9"), "{text}");
        // 3 slots × (1 declaration + 2 attestations).
        assert_eq!(report.duties, 9);
        assert_eq!(report.submitted, 9, "{report:?}");
        assert_eq!(report.participation.get("op-4"), None, "op-4 was down");
        assert!(report.participation["op-1"] >= 6, "{report:?}");
        for s in subs {
            let pk = PublicKey::from_bytes(
                lock.validators[s.duty.validator as usize]
                    .public_key
                    .as_slice(),
            )
            .unwrap();
            let sig = Signature::from_bytes(s.signature.as_slice()).unwrap();
            assert!(sig.verify(&pk, s.data.signing_root(&signing).as_slice()));
            assert!(!s.from.contains(&3));
        }
    }
}
