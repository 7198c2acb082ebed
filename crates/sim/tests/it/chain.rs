//! The chain simulator's acceptance runs (issue #4), at full size.

use phalanx_sim::chain::{Config, run};

#[test]
fn five_hundred_lossy_jittery_slots_finalize_safely() {
    // `phalanx sim chain --validators 16 --producers 4 --slots 500 --loss 0.01 --jitter-ms 200`
    let report = run(Config {
        validators: 16,
        producers: 4,
        slots: 500,
        loss: 0.01,
        jitter_ms: 200,
        seed: 1,
        ..Config::default()
    })
    .unwrap();
    assert_eq!(report.safety_violations, 0, "{report:?}");
    assert_eq!(report.slashable_signed_by_honest, 0, "{report:?}");
    assert!(report.max_epochs_without_finality <= 3, "{report:?}");
    assert!(report.finalized_epoch >= 58, "{report:?}");
}

#[test]
fn same_seed_same_run() {
    let config = Config {
        slots: 48,
        loss: 0.05,
        jitter_ms: 300,
        seed: 3,
        ..Config::default()
    };
    assert_eq!(run(config.clone()).unwrap(), run(config).unwrap());
}

#[test]
fn a_half_split_for_twenty_epochs_stops_finality_then_it_returns_within_three_epochs() {
    // 8 slots per epoch: the split covers epochs 4..24; the heal is at epoch 24.
    let split = Some((32, 192, 0.5));
    let during = run(Config {
        slots: 192,
        partition: split,
        seed: 11,
        ..Config::default()
    })
    .unwrap();
    assert!(
        during.finalized_epoch <= 3,
        "nothing may finalize during the split: {during:?}"
    );
    assert_eq!(during.safety_violations, 0);
    let after = run(Config {
        slots: 216,
        partition: split,
        seed: 11,
        ..Config::default()
    })
    .unwrap();
    assert!(
        after.finalized_epoch >= 24,
        "finality must be back by epoch 27: {after:?}"
    );
    assert_eq!(after.safety_violations, 0);
    assert_eq!(after.slashable_signed_by_honest, 0);
}

#[test]
fn equivocators_are_slashed_on_chain() {
    let report = run(Config {
        validators: 16,
        producers: 4,
        slots: 96,
        equivocators: 2,
        loss: 0.01,
        jitter_ms: 200,
        seed: 5,
        ..Config::default()
    })
    .unwrap();
    assert_eq!(report.slashed, vec![14, 15], "{report:?}");
    assert_eq!(report.slashable_signed_by_honest, 0);
    assert_eq!(report.safety_violations, 0);
    assert!(report.max_epochs_without_finality <= 3, "{report:?}");
}

#[test]
fn validators_learn_to_avoid_a_silent_producer() {
    // One of four producers never builds. Declaring round-robin would miss a quarter of the
    // slots; the reputation book stops naming the silent producer once it has a record.
    let report = run(Config {
        producers: 4,
        silent_producers: 1,
        slots: 320,
        seed: 9,
        ..Config::default()
    })
    .unwrap();
    assert!(report.missed_slots * 10 < report.slots, "{report:?}");
    assert_eq!(report.safety_violations, 0);
    assert!(report.max_epochs_without_finality <= 3, "{report:?}");
}

#[test]
fn slow_validators_cost_their_own_slots_not_safety() {
    // Two of sixteen validators deliver everything a slot late: their proposals mostly miss,
    // their votes still count (they arrive within the epoch), finality is unharmed.
    let report = run(Config {
        slow: 2,
        slots: 160,
        seed: 4,
        ..Config::default()
    })
    .unwrap();
    assert_eq!(report.safety_violations, 0);
    assert_eq!(report.slashable_signed_by_honest, 0);
    assert!(report.max_epochs_without_finality <= 3, "{report:?}");
    assert!(report.finalized_epoch >= 18, "{report:?}");
}

#[test]
fn bad_configurations_are_errors() {
    assert!(
        run(Config {
            validators: 0,
            ..Config::default()
        })
        .is_err()
    );
    assert!(
        run(Config {
            equivocators: 16,
            ..Config::default()
        })
        .is_err()
    );
    assert!(
        run(Config {
            loss: 1.5,
            ..Config::default()
        })
        .is_err()
    );
}

#[test]
fn a_slashing_on_one_branch_does_not_split_the_views() {
    // Three equivocators, lossy and jittery links: forks carry slashings that other branches
    // lack. Each view once kept one registry for all branches, so a view that had imported a
    // slashing on one branch expected another proposer on every branch and refused the
    // other branch's valid blocks for good: the views split in two, finality stopped at
    // epoch 0 and 54 of 96 slots were missed. The proposer schedule is now the registry as
    // the parent block left it, the same in every view.
    let report = run(Config {
        slots: 96,
        equivocators: 3,
        loss: 0.01,
        jitter_ms: 200,
        ..Config::default()
    })
    .unwrap();
    assert_eq!(report.slashed, vec![13, 14, 15], "{report:?}");
    assert!(report.max_epochs_without_finality <= 2, "{report:?}");
    assert!(report.finalized_epoch >= 9, "{report:?}");
    assert!(report.missed_slots <= 8, "{report:?}");
    assert_eq!(report.safety_violations, 0);
    assert_eq!(report.slashable_signed_by_honest, 0);
}
