//! `sim light`: the light client against honest, lying, withholding and spamming executors
//! (issue #7's must-shows, at the sizes the issue names where they are cheap).

use phalanx_sim::light::{Config, run};

#[test]
fn honest_world_five_hundred_blocks_every_root_right_without_re_execution() {
    let r = run(Config {
        blocks: 500,
        ..Config::default()
    })
    .unwrap();
    assert_eq!(r.believed_height, 500, "{r:?}");
    assert_eq!(r.wrong_roots_believed, 0, "{r:?}");
    assert_eq!(r.transient_wrong_roots, 0, "{r:?}");
    assert_eq!(r.re_executions, 0, "{r:?}");
    assert!(r.slashed.is_empty());
}

#[test]
fn ninety_percent_lying_at_one_height_is_re_executed_and_the_liars_slashed() {
    let r = run(Config {
        blocks: 40,
        lying_stake: 90,
        lie_at: 20,
        ..Config::default()
    })
    .unwrap();
    assert_eq!(r.believed_height, 40, "{r:?}");
    assert_eq!(r.wrong_roots_believed, 0, "{r:?}");
    assert!(r.re_executions >= 1, "{r:?}");
    assert_eq!(r.slashed, (0..9).collect::<Vec<u64>>(), "{r:?}");
}

#[test]
fn everyone_lying_with_one_honest_full_node_still_ends_on_the_true_root() {
    let r = run(Config {
        blocks: 30,
        lying_stake: 100,
        lie_at: 20,
        ..Config::default()
    })
    .unwrap();
    assert_eq!(r.believed_height, 30, "{r:?}");
    assert_eq!(r.wrong_roots_believed, 0, "{r:?}");
    assert_eq!(r.slashed, (0..10).collect::<Vec<u64>>(), "{r:?}");
    // With every bond slashed, each later block is settled by a fetched proof.
    assert!(r.proofs_requested >= 10, "{r:?}");
}

#[test]
fn spam_triggers_nothing_and_withheld_claims_lead_to_a_fetched_proof() {
    let r = run(Config {
        blocks: 30,
        spam: true,
        ..Config::default()
    })
    .unwrap();
    assert_eq!(r.spam_dropped, 3 * 30, "{r:?}");
    assert_eq!(r.re_executions, 0, "{r:?}");
    assert_eq!(r.proofs_requested, 0, "{r:?}");
    assert_eq!(r.wrong_roots_believed, 0, "{r:?}");

    let r = run(Config {
        blocks: 30,
        withhold: true,
        lie_at: 10,
        forged_proofs: true,
        ..Config::default()
    })
    .unwrap();
    assert_eq!(r.proofs_requested, 1, "{r:?}");
    assert_eq!(r.re_executions, 1, "{r:?}");
    assert_eq!(r.forged_rejected, 1, "a forged witness is refused: {r:?}");
    assert_eq!(r.wrong_roots_believed, 0, "{r:?}");
    assert_eq!(
        r.transient_wrong_roots, 0,
        "no guess while claims are missing: {r:?}"
    );
    assert!(r.max_ms_to_correct_root >= 6_000, "{r:?}");
    assert_eq!(r.believed_height, 30, "{r:?}");
}

#[test]
fn same_seed_same_run_and_bad_flags_are_errors() {
    let c = Config {
        blocks: 25,
        lying_stake: 30,
        lie_at: 5,
        spam: true,
        seed: 9,
        ..Config::default()
    };
    assert_eq!(run(c.clone()).unwrap(), run(c).unwrap());
    assert!(
        run(Config {
            lying_stake: 101,
            ..Config::default()
        })
        .is_err()
    );
    assert!(
        run(Config {
            executors: 0,
            ..Config::default()
        })
        .is_err()
    );
}
