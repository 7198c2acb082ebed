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

mod claims {
    use std::collections::BTreeMap;

    use alloy_primitives::{Address, B256};
    use phalanx_consensus::executors::ExecutorRegistry;
    use phalanx_execution::block::BlockEnv;
    use phalanx_light::client::{ClaimError, Config, LightClient, LightHeader, NeedReason};
    use phalanx_spec::ChainSpec;
    use phalanx_spec::devnet::{DevnetParams, generate};
    use phalanx_types::{ExecutorIndex, SignatureBytes, SignedClaim};

    fn header(height: u64, parent: B256) -> LightHeader {
        LightHeader {
            height,
            hash: B256::repeat_byte(height as u8),
            parent,
            shard_roots: Vec::new(),
            env: BlockEnv {
                number: height,
                timestamp: 0,
                chain_id: 1,
                basefee: 0,
                prevrandao: B256::ZERO,
                shard_gas_limit: 0,
                block_gas_limit: 0,
                block_hashes: BTreeMap::new(),
                validator_reward: Address::ZERO,
                producer_reward: Address::ZERO,
                fee_split_bps: 0,
            },
        }
    }

    /// Claims are checked before they count: forged signatures are dropped, a forged
    /// second claim does not make an honest executor an equivocator, a real one does, and
    /// claims about unknown blocks or from unbonded executors are refused at once.
    #[test]
    fn claims_are_checked_before_they_count() {
        let spec = ChainSpec::preset("devnet").unwrap();
        let mut params = DevnetParams::new("light-claims", spec);
        params.executors = 4;
        params.accounts = 0;
        let (genesis, keys) = generate(&params).unwrap();
        let signing = genesis.signing_context();
        let registry = ExecutorRegistry::from_genesis(&genesis).unwrap();
        let genesis_hash = B256::repeat_byte(0xee);
        let root0 = B256::repeat_byte(0x10);
        let mut client = LightClient::new(
            Config {
                quorum: 0.0,
                ..Config::default()
            },
            signing,
            registry,
            (0, genesis_hash, root0),
        );
        let h1 = header(1, genesis_hash);
        client.on_header(h1.clone(), 0).unwrap();
        assert!(client.on_header(header(3, B256::ZERO), 0).is_err());
        let good_root = B256::repeat_byte(0x11);
        let sign = |i: usize, post: B256| {
            let claim = LightClient::claim_for(&h1, root0, &[], post);
            SignedClaim {
                executor: ExecutorIndex(i as u64),
                signature: signing.sign(&claim, &keys.executors[i].1),
                message: claim,
            }
        };
        // Three honest claims, one with a forged signature.
        client.on_claim(sign(0, good_root)).unwrap();
        client.on_claim(sign(1, good_root)).unwrap();
        let mut forged = sign(2, good_root);
        forged.signature = SignatureBytes::repeat_byte(0x33);
        client.on_claim(forged).unwrap();
        assert_eq!(client.advance(10), None);
        assert_eq!(client.root_at(1), Some(good_root));
        assert_eq!(client.stats().bad_signatures, 1);
        // A forged *second* claim in executor 0's name: refused, executor 0 still counts.
        let mut framed = sign(0, B256::repeat_byte(0x66));
        framed.signature = sign(1, B256::repeat_byte(0x66)).signature;
        assert_eq!(client.on_claim(framed), Err(ClaimError::BadSignature(0)));
        // Unknown block, unbonded executor.
        let mut unknown = sign(3, good_root);
        unknown.message.block_hash = B256::repeat_byte(0x99);
        assert!(matches!(
            client.on_claim(unknown),
            Err(ClaimError::UnknownBlock { .. })
        ));
        let mut nobody = sign(3, good_root);
        nobody.executor = ExecutorIndex(99);
        assert_eq!(client.on_claim(nobody), Err(ClaimError::Unbonded(99)));
        // Executor 3 disagrees (1 of 3 counting bonds ≥ 10%): the block needs a proof.
        client.on_claim(sign(3, B256::repeat_byte(0x77))).unwrap();
        let need = client.advance(20).unwrap();
        assert_eq!((need.height, need.reason), (1, NeedReason::Disagreement));
        assert_eq!(
            client.root_at(1),
            None,
            "no claim is trusted while disputed"
        );
        // Executor 3 signs a second, different claim: an equivocation, and its first claim
        // stops counting, so the dispute is gone.
        assert_eq!(
            client.on_claim(sign(3, good_root)),
            Err(ClaimError::Equivocation {
                executor: 3,
                height: 1
            })
        );
        assert_eq!(client.advance(30), None);
        assert_eq!(client.root_at(1), Some(good_root));
    }
}
