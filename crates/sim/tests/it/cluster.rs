//! The clustered node in the simulator (`phalanx sim cluster`): every server runs the real
//! server task over the in-process network and the embedded coordination store, each on its
//! own redb state; a reference executor gives the true root of every block.

use phalanx_sim::cluster::{Config, Report, run};

fn config(seed: u64) -> Config {
    Config {
        servers: 4,
        shards: 8,
        replication: 3,
        kill_every: 0,
        kill_owners: None,
        corrupt: false,
        blocks: 20,
        txs_per_shard: 6,
        slot_ms: 2000,
        seed,
        produce: false,
    }
}

/// What every run must show: nothing missed, nothing divergent, no foreign shard bytes.
fn assert_sound(report: &Report) {
    assert_eq!(report.missed, 0, "{report:?}");
    assert_eq!(report.divergent_roots, 0, "{report:?}");
    assert_eq!(report.corruptions_accepted, 0, "{report:?}");
    assert_eq!(report.foreign_shard_bytes, 0, "{report:?}");
}

#[test]
fn plain_run_applies_every_block_with_the_reference_roots() {
    let report = run(config(1)).unwrap();
    assert_eq!(report.blocks, 20);
    assert_sound(&report);
    assert_eq!(report.alarms, 0, "{report:?}");
    assert_eq!(report.takeovers, 0, "{report:?}");
    // No crash and no takeover: every block is applied within a slot.
    assert!(report.max_apply_lag_ms < 2000, "{report:?}");
}

#[test]
fn crashed_servers_restart_from_disk_and_catch_up() {
    let report = run(Config {
        kill_every: 2,
        ..config(9)
    })
    .unwrap();
    assert!(report.crashes >= 8, "{report:?}");
    assert_sound(&report);
}

#[test]
fn corrupted_effects_are_never_accepted_and_raise_alarms() {
    let report = run(Config {
        corrupt: true,
        kill_every: 3,
        ..config(7)
    })
    .unwrap();
    assert!(report.corruptions_rejected > 0, "{report:?}");
    assert!(report.alarms > 0, "{report:?}");
    assert_sound(&report);
}

#[test]
fn a_shard_whose_owners_all_died_is_taken_over_within_two_slots() {
    let report = run(Config {
        kill_owners: Some(3),
        ..config(3)
    })
    .unwrap();
    assert!(report.takeovers > 0, "{report:?}");
    assert!(report.max_apply_lag_ms <= 2 * 2000, "{report:?}");
    // The shard is handed back only once its owners have caught up: no block waits an
    // accept timeout for an owner still replaying blocks (the lag stays under one slot).
    assert!(report.max_apply_lag_ms < 2000, "{report:?}");
    assert_sound(&report);
}

/// The node produces: every shard of every block is built by its owners, the first accepted
/// candidate is what the node executes and what every owner holding it broadcasts — also
/// while servers crash and while every owner of one shard is down (a takeover builds it).
#[test]
fn a_producing_node_builds_every_shard_by_its_owners_and_broadcasts_the_accepted_one() {
    let report = run(Config {
        produce: true,
        ..config(4)
    })
    .unwrap();
    assert_sound(&report);
    assert_eq!(report.built_shards, 20 * 8, "{report:?}");
    assert_eq!(report.build_retries, 0, "{report:?}");
    // Three owners compete for every shard, and all three broadcast the accepted one.
    assert_eq!(report.candidates, 3 * 20 * 8, "{report:?}");
    assert_eq!(report.shard_copies, 3 * 20 * 8, "{report:?}");

    let faulty = run(Config {
        produce: true,
        kill_every: 3,
        kill_owners: Some(5),
        ..config(6)
    })
    .unwrap();
    assert_sound(&faulty);
    assert_eq!(faulty.built_shards, 20 * 8, "{faulty:?}");
    assert!(faulty.takeovers > 0, "{faulty:?}");
    // Fewer owners alive: fewer candidates and copies, but at least one of each per shard.
    assert!(faulty.candidates >= 20 * 8, "{faulty:?}");
    assert!(faulty.shard_copies >= 20 * 8, "{faulty:?}");
    assert!(faulty.candidates < 3 * 20 * 8, "{faulty:?}");
}

#[test]
fn bad_settings_are_a_typed_error() {
    assert!(
        run(Config {
            servers: 0,
            ..config(1)
        })
        .is_err()
    );
    assert!(
        run(Config {
            shards: 10_000,
            ..config(1)
        })
        .is_err()
    );
}

/// Three servers, each owning every shard: crashes leave the corrupting server the node's
/// only live one for a while, and it accepts its own (wrong) results alone. Those records are
/// marked as written alone; the others, back, run the shards themselves, never apply the lone
/// results, and replace them once two of them agree — so no wrong result stays accepted and
/// every other server has the reference root at every height. (Before the mark, the servers
/// coming back applied the lone results: 32 wrong results accepted and 35 divergent heights
/// over 40 blocks of `--seed 27`.)
#[test]
fn results_a_corrupting_server_accepted_alone_are_replaced_and_never_applied() {
    let report = run(Config {
        servers: 3,
        kill_every: 2,
        kill_owners: Some(3),
        corrupt: true,
        produce: true,
        ..config(3)
    })
    .unwrap();
    // The case arose: the corrupting server applied results it accepted alone.
    assert!(report.corrupting_server_divergent > 0, "{report:?}");
    assert!(report.lone_replaced > 0, "{report:?}");
    assert!(report.alarms > 0, "{report:?}");
    assert_sound(&report);
}

/// A crash at block 27 of 30 restarts the server at block 30, after the feed's last header
/// went by on gossip: no later header will come to show it what it missed. It asks the feed
/// for the headers from its own on start (and whenever another server lists a higher
/// height). Before, it sat at block 26 until the run's end: 4 blocks missed — with seed 251,
/// where a corrupting server leaves the other honest one waiting at block 27 for a second
/// agreeing outcome, by every server.
#[test]
fn a_server_restarted_after_the_last_header_catches_up() {
    for (seed, corrupt) in [(116, false), (251, true)] {
        let report = run(Config {
            servers: 3,
            kill_every: 3,
            blocks: 30,
            txs_per_shard: 8,
            corrupt,
            ..config(seed)
        })
        .unwrap();
        assert!(report.crashes >= 9, "seed {seed}: {report:?}");
        assert_sound(&report);
        assert_eq!(
            report.corrupting_server_behind, 0,
            "seed {seed}: {report:?}"
        );
    }
}
