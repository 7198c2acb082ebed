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
    assert_eq!(r.re_executions, 1, "{r:?}");
    // The liars got shard 0 wrong and agreed with the honest on shard 1: only shard 0 is
    // re-executed, and that partial proof is what slashes them.
    assert_eq!(r.shards_re_executed, 1, "{r:?}");
    assert_eq!(r.slashed, (0..9).collect::<Vec<u64>>(), "{r:?}");
    assert!(r.bounties_gwei > 0, "the proofs' submitter is paid: {r:?}");
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
    assert_eq!(
        r.shards_re_executed, 2,
        "no claims: every shard re-executed: {r:?}"
    );
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

    /// A long-running client keeps a bounded window: older heights fold into its checkpoint.
    #[test]
    fn a_long_run_keeps_a_bounded_window() {
        let spec = ChainSpec::preset("devnet").unwrap();
        let mut params = DevnetParams::new("light-window", spec);
        params.executors = 1;
        params.accounts = 0;
        let (genesis, keys) = generate(&params).unwrap();
        let signing = genesis.signing_context();
        let mut client = LightClient::new(
            Config::default(),
            signing,
            ExecutorRegistry::from_genesis(&genesis).unwrap(),
            (0, B256::repeat_byte(0xee), B256::repeat_byte(0x10)),
        );
        let blocks = 2 * phalanx_light::client::KEEP_HEIGHTS + 10;
        let mut parent = (B256::repeat_byte(0xee), B256::repeat_byte(0x10));
        for h in 1..=blocks {
            let mut hd = header(h, parent.0);
            hd.hash = alloy_primitives::keccak256(h.to_be_bytes());
            client.on_header(hd.clone(), 0).unwrap();
            let post = alloy_primitives::keccak256([7u8; 1].repeat(h as usize % 7 + 1));
            let claim = LightClient::claim_for(&hd, parent.1, &[], post);
            client
                .on_claim(SignedClaim {
                    executor: ExecutorIndex(0),
                    signature: signing.sign(&claim, &keys.executors[0].1),
                    message: claim,
                })
                .unwrap();
            assert_eq!(client.advance(0), None);
            parent = (hd.hash, post);
        }
        assert_eq!(client.head(), (blocks, parent.1));
        assert_eq!(client.root_at(1), None, "folded into the checkpoint");
        assert!(
            client
                .root_at(blocks - phalanx_light::client::KEEP_HEIGHTS)
                .is_some()
        );
        let old = LightClient::claim_for(&header(1, B256::ZERO), B256::ZERO, &[], B256::ZERO);
        assert!(matches!(
            client.on_claim(SignedClaim {
                executor: ExecutorIndex(0),
                signature: signing.sign(&old, &keys.executors[0].1),
                message: old,
            }),
            Err(ClaimError::Old(1))
        ));
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

    /// A disputed block's proof must re-execute only the shards whose effects roots the
    /// claims dispute; with nothing to compare, every shard.
    #[test]
    fn a_need_names_only_the_disputed_shards() {
        let spec = ChainSpec::preset("devnet").unwrap();
        let mut params = DevnetParams::new("light-disputed", spec);
        params.executors = 4;
        params.accounts = 0;
        let (genesis, keys) = generate(&params).unwrap();
        let signing = genesis.signing_context();
        let genesis_hash = B256::repeat_byte(0xee);
        let root0 = B256::repeat_byte(0x10);
        let mut client = LightClient::new(
            Config::default(),
            signing,
            ExecutorRegistry::from_genesis(&genesis).unwrap(),
            (0, genesis_hash, root0),
        );
        let mut h1 = header(1, genesis_hash);
        h1.shard_roots = vec![
            B256::repeat_byte(1),
            B256::repeat_byte(2),
            B256::repeat_byte(3),
        ];
        client.on_header(h1.clone(), 0).unwrap();
        let sign = |i: usize, effects: &[B256], post: B256| {
            let claim = LightClient::claim_for(&h1, root0, effects, post);
            SignedClaim {
                executor: ExecutorIndex(i as u64),
                signature: signing.sign(&claim, &keys.executors[i].1),
                message: claim,
            }
        };
        let (a, b, c) = (
            B256::repeat_byte(0xa),
            B256::repeat_byte(0xb),
            B256::repeat_byte(0xc),
        );
        let truth = B256::repeat_byte(0x11);
        for i in 0..3 {
            client.on_claim(sign(i, &[a, b, c], truth)).unwrap();
        }
        // Agreeing claims: nothing is disputed, and nothing is "agreed" for a proof either.
        assert_eq!(client.agreed_effects(1, root0), vec![None, None, None]);
        // Executor 3 got shard 1 wrong.
        client
            .on_claim(sign(
                3,
                &[a, B256::repeat_byte(0xee), c],
                B256::repeat_byte(0x77),
            ))
            .unwrap();
        let need = client.advance(10).unwrap();
        assert_eq!(need.reason, NeedReason::Disagreement);
        assert_eq!(need.execute, vec![1]);
        assert_eq!(
            client.agreed_effects(1, root0),
            vec![Some(a), None, Some(c)]
        );

        // Claims whose effects roots do not line up with the shards: every shard.
        let mut client2 = LightClient::new(
            Config::default(),
            signing,
            ExecutorRegistry::from_genesis(&genesis).unwrap(),
            (0, genesis_hash, root0),
        );
        client2.on_header(h1.clone(), 0).unwrap();
        for i in 0..3 {
            client2.on_claim(sign(i, &[a, b, c], truth)).unwrap();
        }
        client2
            .on_claim(sign(3, &[a], B256::repeat_byte(0x77)))
            .unwrap();
        assert_eq!(client2.advance(10).unwrap().execute, vec![0, 1, 2]);

        // Withheld: no claims after the timeout, every shard.
        let mut client3 = LightClient::new(
            Config::default(),
            signing,
            ExecutorRegistry::from_genesis(&genesis).unwrap(),
            (0, genesis_hash, root0),
        );
        client3.on_header(h1.clone(), 0).unwrap();
        assert_eq!(client3.advance(10), None);
        let need = client3.advance(Config::default().claim_timeout_ms).unwrap();
        assert_eq!(
            (need.reason, need.execute),
            (NeedReason::Withheld, vec![0, 1, 2])
        );
    }
}

mod on_chain {
    use std::collections::BTreeMap;

    use alloy_consensus::{SignableTransaction, TxEip1559};
    use alloy_primitives::{Address, B256, TxKind, U256, keccak256};
    use alloy_signer::SignerSync;
    use alloy_signer_local::PrivateKeySigner;
    use phalanx_consensus::executors::{
        BOUNTY_QUOTIENT, ExecutorRegistry, WrongClaimError, apply_wrong_claim,
    };
    use phalanx_execution::block::BlockEnv;
    use phalanx_execution::changes::{AccountChange, AccountFields, Changes};
    use phalanx_execution::proof::{ClaimVerifier, ExecutionProof};
    use phalanx_execution::store::StateStore;
    use phalanx_light::client::{LightClient, LightHeader};
    use phalanx_spec::ChainSpec;
    use phalanx_spec::devnet::{DevnetParams, generate};
    use phalanx_types::{
        BlockHeader, Declaration, Encode, ExecutorIndex, FraudProof, FraudProofKind, ProducerIndex,
        Shard, SignatureBytes, SignedClaim, SignedDeclaration, Slot, TreeHash, ValidatorIndex,
        WrongClaimEvidence,
    };
    use ssz_types::VariableList;

    /// A `WrongClaim` fraud proof slashes a wrong claim's executor (bounty to the
    /// submitter), and is refused for a right claim, a forged signature, or a proof of other
    /// shards.
    #[test]
    fn wrong_claims_are_slashed_by_proof_and_nothing_else_is() {
        let spec = ChainSpec::preset("devnet").unwrap();
        let mut params = DevnetParams::new("on-chain", spec.clone());
        params.executors = 3;
        params.accounts = 0;
        let (genesis, keys) = generate(&params).unwrap();
        let signing = genesis.signing_context();
        let mut registry = ExecutorRegistry::from_genesis(&genesis).unwrap();
        let bond = registry.weight(ExecutorIndex(0), phalanx_types::Epoch(0));

        let sender = PrivateKeySigner::from_bytes(&keccak256(b"on-chain sender")).unwrap();
        let mut alloc = Changes::default();
        alloc.fund(sender.address(), U256::from(10u64).pow(U256::from(20u64)));
        let store = StateStore::in_memory().unwrap();
        let g = B256::repeat_byte(0xee);
        let parent_root = store.init_genesis(g, &alloc).unwrap();
        let tx = TxEip1559 {
            chain_id: spec.chain_id,
            nonce: 0,
            gas_limit: 21_000,
            max_fee_per_gas: 2_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            to: TxKind::Call(Address::repeat_byte(7)),
            value: U256::from(5u64),
            access_list: Default::default(),
            input: Default::default(),
        };
        let sig = sender.sign_hash_sync(&tx.signature_hash()).unwrap();
        let envelope: alloy_consensus::TxEnvelope = tx.into_signed(sig).into();
        let raw = phalanx_types::transaction::encode(&envelope);
        let shard = Shard::from_transactions(vec![raw.clone()]).unwrap();
        let env = BlockEnv {
            number: 1,
            timestamp: 1_700_000_002,
            chain_id: spec.chain_id,
            basefee: 1_000_000_000,
            prevrandao: B256::ZERO,
            shard_gas_limit: spec.shard_gas_limit,
            block_gas_limit: spec.shard_gas_limit,
            block_hashes: BTreeMap::new(),
            validator_reward: Address::ZERO,
            producer_reward: Address::ZERO,
            fee_split_bps: 0,
        };
        let header = BlockHeader {
            slot: Slot(1),
            parent_root: g,
            declaration: SignedDeclaration {
                message: Declaration {
                    slot: Slot(1),
                    proposer_index: ValidatorIndex(0),
                    parent_root: g,
                    producer: ProducerIndex(0),
                    fee_split_bps: 0,
                    randao_reveal: Default::default(),
                },
                signature: Default::default(),
            },
            producer: ProducerIndex(0),
            shard_roots: VariableList::new(vec![shard.tree_hash_root()]).unwrap(),
            body_root: B256::ZERO,
        };
        let view = store.view(g).unwrap();
        let proof =
            ExecutionProof::build(&view, parent_root, &env, std::slice::from_ref(&shard)).unwrap();
        let verified = proof
            .verify(parent_root, &[shard.tree_hash_root()], &env)
            .unwrap();
        let truth = verified.post_state_root;
        let effects = verified.effects_roots[0].unwrap();
        let light = LightHeader {
            height: 1,
            hash: header.root(),
            parent: g,
            shard_roots: vec![shard.tree_hash_root()],
            env: env.clone(),
        };
        let claim_with = |i: usize, effects: &[B256], post: B256| {
            let message = LightClient::claim_for(&light, parent_root, effects, post);
            SignedClaim {
                executor: ExecutorIndex(i as u64),
                signature: signing.sign(&message, &keys.executors[i].1),
                message,
            }
        };
        let claim = |i: usize, post: B256| claim_with(i, &[], post);
        let fraud = |c: &SignedClaim, proof: &ExecutionProof| FraudProof {
            kind: FraudProofKind::WrongClaim as u8,
            block_root: header.root(),
            accused: c.executor.0,
            payload: VariableList::new(
                WrongClaimEvidence {
                    claim: c.clone(),
                    execution_proof: VariableList::new(proof.to_bytes()).unwrap(),
                }
                .as_ssz_bytes(),
            )
            .unwrap(),
        };
        let verifier = ClaimVerifier::new(|h: &BlockHeader| Some((h.root(), env.clone())));
        let apply = |c: &SignedClaim, p: &ExecutionProof, r: &mut ExecutorRegistry| {
            apply_wrong_claim(&verifier, &fraud(c, p), &header, parent_root, &signing, r)
        };

        // A right claim is not slashable.
        assert!(matches!(
            apply(&claim(1, truth), &proof, &mut registry),
            Err(WrongClaimError::Rejected(m)) if m.contains("agrees")
        ));
        // A forged signature in executor 1's name.
        let mut framed = claim(1, B256::repeat_byte(9));
        framed.signature = SignatureBytes::repeat_byte(0x11);
        assert_eq!(
            apply(&framed, &proof, &mut registry),
            Err(WrongClaimError::BadSignature(1))
        );
        // A proof of other shards.
        let other_shard = Shard {
            transactions: VariableList::empty(),
        };
        let other = ExecutionProof::build(&view, parent_root, &env, &[other_shard]).unwrap();
        assert!(matches!(
            apply(&claim(0, B256::repeat_byte(9)), &other, &mut registry),
            Err(WrongClaimError::Rejected(_))
        ));
        // The wrong claim: slashed, bounty paid, once.
        let wrong = claim(0, B256::repeat_byte(9));
        assert_eq!(
            apply(&wrong, &proof, &mut registry),
            Ok((ExecutorIndex(0), bond / BOUNTY_QUOTIENT))
        );
        assert_eq!(
            apply(&wrong, &proof, &mut registry),
            Ok((ExecutorIndex(0), 0))
        );

        // Proofs that take shards as the accused claim's own effects. The shard given as
        // effects (nothing re-executed): a right claim cannot be framed with it, a wrong
        // post-state root is shown by finishing the block alone.
        let agreed = ExecutionProof::build_partial(
            &view,
            parent_root,
            &env,
            std::slice::from_ref(&shard),
            &[],
        )
        .unwrap();
        assert!(agreed.executed_shards().is_empty());
        assert!(matches!(
            apply(&claim_with(1, &[effects], truth), &agreed, &mut registry),
            Err(WrongClaimError::Rejected(m)) if m.contains("agrees")
        ));
        // A claim with the true post-state root but a wrong effects root: the proof may not
        // take the shard on that root, and re-executing the shard shows the lie.
        let lying_effects = claim_with(2, &[B256::repeat_byte(3)], truth);
        assert!(matches!(
            apply(&lying_effects, &agreed, &mut registry),
            Err(WrongClaimError::Rejected(m)) if m.contains("effects")
        ));
        assert_eq!(
            apply(&lying_effects, &proof, &mut registry),
            Ok((ExecutorIndex(2), bond / BOUNTY_QUOTIENT))
        );
        assert_eq!(
            registry.slashed().map(|e| e.0).collect::<Vec<_>>(),
            vec![0, 2]
        );
        assert!(registry.weight(ExecutorIndex(1), phalanx_types::Epoch(0)) > 0);
        // And a wrong post-state root with the true effects is shown without re-executing.
        let mut fresh = ExecutorRegistry::from_genesis(&genesis).unwrap();
        assert_eq!(
            apply(
                &claim_with(1, &[effects], B256::repeat_byte(9)),
                &agreed,
                &mut fresh
            ),
            Ok((ExecutorIndex(1), bond / BOUNTY_QUOTIENT))
        );
    }

    /// Reads are answered only as far as they follow from the believed root.
    #[test]
    fn reads_are_verified_against_the_believed_root() {
        let spec = ChainSpec::preset("devnet").unwrap();
        let mut params = DevnetParams::new("reads", spec);
        params.executors = 1;
        params.accounts = 0;
        let (genesis, _) = generate(&params).unwrap();
        let who = Address::repeat_byte(0x42);
        let mut alloc = Changes::default();
        alloc.accounts.insert(
            who,
            AccountChange {
                fields: Some(Some(AccountFields {
                    nonce: 7,
                    balance: U256::from(123_456u64),
                    code_hash: alloy_primitives::KECCAK256_EMPTY,
                })),
                ..Default::default()
            },
        );
        let store = StateStore::in_memory().unwrap();
        let g = B256::repeat_byte(0xee);
        let root = store.init_genesis(g, &alloc).unwrap();
        let client = LightClient::new(
            phalanx_light::client::Config::default(),
            genesis.signing_context(),
            ExecutorRegistry::from_genesis(&genesis).unwrap(),
            (0, g, root),
        );
        let proof = store.proof(g, who, &[U256::from(1u64)]).unwrap();
        let account = client.verify_account(0, who, &proof.account_proof).unwrap();
        assert_eq!(
            (account.nonce, account.balance),
            (7, U256::from(123_456u64))
        );
        let (_, _, slot_proof) = &proof.storage[0];
        assert_eq!(
            LightClient::verify_storage(&account, U256::from(1u64), slot_proof),
            Ok(U256::ZERO)
        );
        assert_eq!(
            LightClient::verify_code(&account, alloy_primitives::Bytes::new()),
            Ok(alloy_primitives::Bytes::new())
        );
        assert!(matches!(
            LightClient::verify_code(&account, alloy_primitives::Bytes::from_static(b"\x60\x00")),
            Err(phalanx_light::reads::ReadError::CodeMismatch { .. })
        ));
        // An absent account is proven absent.
        let nobody = Address::repeat_byte(0x43);
        let absent = store.proof(g, nobody, &[]).unwrap();
        assert_eq!(
            client
                .verify_account(0, nobody, &absent.account_proof)
                .unwrap()
                .balance,
            U256::ZERO
        );
        // Another account's proof can at most prove `nobody` absent (true), never give it
        // `who`'s balance.
        match client.verify_account(0, nobody, &proof.account_proof) {
            Ok(a) => assert_eq!(a.balance, U256::ZERO),
            Err(e) => assert!(
                matches!(e, phalanx_light::reads::ReadError::Proof(_)),
                "{e}"
            ),
        }
        // A forged node, a height without a root.
        let mut forged = proof.account_proof.clone();
        let mut last = forged.pop().unwrap().to_vec();
        let n = last.len();
        last[n - 1] ^= 1;
        forged.push(last.into());
        assert!(client.verify_account(0, who, &forged).is_err());
        assert_eq!(
            client.verify_account(5, who, &proof.account_proof),
            Err(phalanx_light::reads::ReadError::NoRoot(5))
        );
    }
}

/// Header verification (`phalanx_light::headers`) over a real chain's finalized blocks: every
/// block passes from genesis or from a later checkpoint; altered, re-signed-by-nobody,
/// skipped or wrongly proposed blocks are refused with a typed error.
mod headers {
    use alloy_primitives::B256;
    use phalanx_consensus::{BlockError, Registry};
    use phalanx_execution::header::ExecHeader;
    use phalanx_light::finality::{AttestationError, Finality};
    use phalanx_light::headers::{HeaderChain, HeaderCheckError, derive};
    use phalanx_sim::chain::{FinalizedBlock, LiveChain};
    use phalanx_spec::ChainSpec;
    use phalanx_spec::devnet::DevnetParams;
    use phalanx_types::{Epoch, SignatureBytes, ValidatorIndex};
    use ssz_types::{BitList, VariableList};

    use crate::live_util::Empty;

    /// A live chain of 8 validators (the last `equivocators` equivocating) and 2 producers
    /// run for `epochs` epochs: the chain, its genesis, its finalized blocks, the execution
    /// header each derives (the genesis's hash is `GENESIS_HASH`), and the time reached.
    struct Run {
        chain: LiveChain,
        genesis: phalanx_spec::Genesis,
        spec: ChainSpec,
        blocks: Vec<FinalizedBlock>,
        served: Vec<ExecHeader>,
        now: u64,
    }

    const GENESIS_HASH: B256 = B256::repeat_byte(0x42);

    fn run(seed: &str, equivocators: usize, epochs: u64) -> Run {
        let spec = ChainSpec::preset("devnet").unwrap();
        let mut params = DevnetParams::new(seed, spec.clone());
        params.accounts = 0;
        params.executors = 0;
        let (mut chain, genesis, _) = LiveChain::new(8, 2, params, Box::new(Empty), None).unwrap();
        chain.set_equivocators(equivocators).unwrap();
        let end = epochs * spec.slots_per_epoch * chain.slot_ms();
        let mut now = 0;
        while now < end {
            now += 100;
            chain.advance(now);
        }
        let blocks: Vec<FinalizedBlock> = chain.finalized_after(chain.genesis_root());
        let registry = Registry::from_genesis(&genesis).unwrap();
        let mut parent = (0, GENESIS_HASH);
        let served = blocks
            .iter()
            .map(|f| {
                let h = derive(
                    &f.block.header.message,
                    f.mix,
                    parent,
                    &spec,
                    genesis.genesis_time,
                    &registry,
                );
                parent = (h.number, h.hash());
                h
            })
            .collect();
        Run {
            chain,
            genesis,
            spec,
            blocks,
            served,
            now,
        }
    }

    /// A chain whose last validator equivocates: its blocks carry the evidence and the chain
    /// slashes it, which changes the proposer schedule. A header chain that applies each
    /// body's slashings follows every finalized block; one that does not refuses a header
    /// the chain accepted once the schedule changed.
    #[test]
    fn header_chains_apply_the_slashings_of_the_bodies_they_follow() {
        let Run {
            genesis,
            blocks,
            served,
            ..
        } = run("light-slashings", 1, 8);
        let slashed_at = blocks
            .iter()
            .position(|f| !f.block.body.declaration_slashings.is_empty())
            .expect("a finalized block carries the equivocator's double declaration");
        assert!(
            slashed_at + 1 < blocks.len(),
            "blocks follow the slashing ({slashed_at} of {})",
            blocks.len()
        );
        let mut applying = HeaderChain::from_genesis(&genesis, GENESIS_HASH).unwrap();
        let mut slashed = Vec::new();
        for (f, h) in blocks.iter().zip(&served) {
            applying.verify(&f.block.header, h).unwrap();
            slashed.extend(applying.apply_body(&f.block.body));
        }
        assert_eq!(slashed, vec![ValidatorIndex(7)], "the equivocator, once");
        let mut ignoring = HeaderChain::from_genesis(&genesis, GENESIS_HASH).unwrap();
        let refused = blocks
            .iter()
            .zip(&served)
            .position(|(f, h)| ignoring.verify(&f.block.header, h).is_err());
        assert!(
            refused.is_some_and(|at| at > slashed_at),
            "without the slashing a later header is refused: {refused:?} (slashed at {slashed_at})"
        );
    }

    #[test]
    fn headers_are_checked_against_their_signed_consensus_headers() {
        let Run {
            chain,
            genesis,
            spec,
            blocks,
            served,
            now,
        } = run("light-headers", 0, 5);
        assert!(
            blocks.len() as u64 > spec.slots_per_epoch,
            "{} finalized blocks: the test needs more than an epoch",
            blocks.len()
        );
        let genesis_hash = GENESIS_HASH;

        // The proposer duties the chain serves (`proposer_duties`) name every finalized
        // block's proposer; the next epoch's are not known yet.
        let current = (now / chain.slot_ms()) / spec.slots_per_epoch;
        let mut checked = 0;
        for e in 0..=current {
            let (_, duties) = chain.proposer_duties(Epoch(e)).unwrap();
            for f in blocks
                .iter()
                .filter(|f| f.block.header.message.slot.epoch(spec.slots_per_epoch) == Epoch(e))
            {
                let slot = f.block.header.message.slot;
                let duty = duties.iter().find(|(s, _)| *s == slot).unwrap();
                assert_eq!(
                    duty.1,
                    f.block.header.message.declaration.message.proposer_index
                );
                checked += 1;
            }
        }
        assert_eq!(checked, blocks.len());
        assert!(chain.proposer_duties(Epoch(current + 1)).is_none());

        // Every block passes, its proposer checked against the schedule.
        let mut good = HeaderChain::from_genesis(&genesis, genesis_hash).unwrap();
        for (f, h) in blocks.iter().zip(&served) {
            good.verify(&f.block.header, h).unwrap();
        }
        assert_eq!(good.height(), blocks.len() as u64);
        assert_eq!(good.unscheduled(), 0);

        let fresh = || {
            let mut c = HeaderChain::from_genesis(&genesis, genesis_hash).unwrap();
            c.verify(&blocks[0].block.header, &served[0]).unwrap();
            c
        };
        let (next, next_served) = (&blocks[1].block.header, &served[1]);
        // A served execution header the block does not derive (another fee split).
        let mut altered = next_served.clone();
        altered.fee_split_bps += 1;
        assert!(matches!(
            fresh().verify(next, &altered),
            Err(HeaderCheckError::NotDerived { number: 2, .. })
        ));
        // Another shard root in the served header.
        let mut altered = next_served.clone();
        let mut roots = altered.shard_roots.to_vec();
        roots[0] = B256::repeat_byte(9);
        altered.shard_roots = VariableList::new(roots).unwrap();
        assert!(matches!(
            fresh().verify(next, &altered),
            Err(HeaderCheckError::NotDerived { .. })
        ));
        // The producer's signature is not over this header.
        let mut forged = next.clone();
        forged.signature = blocks[0].block.header.signature;
        assert!(matches!(
            fresh().verify(&forged, next_served),
            Err(HeaderCheckError::Consensus {
                source: BlockError::BadHeaderSignature,
                ..
            })
        ));
        // Another proposer than the scheduled one.
        let mut usurped = next.clone();
        let scheduled = usurped.message.declaration.message.proposer_index;
        usurped.message.declaration.message.proposer_index = ValidatorIndex((scheduled.0 + 1) % 8);
        assert!(matches!(
            fresh().verify(&usurped, next_served),
            Err(HeaderCheckError::Consensus {
                source: BlockError::WrongProposer { .. },
                ..
            })
        ));
        // A block skipped.
        assert!(matches!(
            fresh().verify(&blocks[2].block.header, &served[2]),
            Err(HeaderCheckError::WrongParent { .. })
        ));
        // Signature bytes that are not a signature.
        let mut garbage = next.clone();
        garbage.signature = SignatureBytes::repeat_byte(0xff);
        assert!(fresh().verify(&garbage, next_served).is_err());

        // From a checkpoint after genesis: its header must hash to the trusted hash; then
        // every later block passes, proposers scheduled from the next epoch on.
        let k = 3;
        assert!(matches!(
            HeaderChain::from_checkpoint(&genesis, &served[k - 1], served[k].hash()),
            Err(HeaderCheckError::Checkpoint { .. })
        ));
        let mut later =
            HeaderChain::from_checkpoint(&genesis, &served[k - 1], served[k - 1].hash()).unwrap();
        for (f, h) in blocks.iter().zip(&served).skip(k) {
            later.verify(&f.block.header, h).unwrap();
        }
        assert_eq!(later.height(), blocks.len() as u64);
        assert!(
            later.unscheduled() < spec.slots_per_epoch,
            "{}",
            later.unscheduled()
        );

        // Finality from the aggregates in the canonical chain's bodies: the client finalizes
        // a checkpoint the chain finalized, whose block is one of the checked headers.
        let attestations = chain.attestations_since(Epoch(1));
        assert!(!attestations.is_empty());
        let mut finality = Finality::from_genesis(&genesis).unwrap();
        for a in &attestations {
            finality.on_attestation(a).unwrap();
        }
        let status = chain.status();
        let finalized = finality.finalized().clone();
        assert!(
            finalized.epoch.0 >= 1,
            "nothing finalized from {} aggregates",
            attestations.len()
        );
        assert!(finalized.epoch <= status.finalized.epoch);
        assert!(
            blocks.iter().any(|f| f.root == finalized.root),
            "the finalized checkpoint is a block of the chain"
        );
        // Repeats count once; forged or malformed aggregates are typed errors.
        assert_eq!(finality.on_attestation(&attestations[0]), Ok(false));
        let mut fresh = Finality::from_genesis(&genesis).unwrap();
        let mut flipped = attestations[0].clone();
        let bits = flipped.aggregation_bits.len();
        let first = flipped.aggregation_bits.get(0).unwrap();
        flipped.aggregation_bits.set(0, !first).unwrap();
        assert!(matches!(
            fresh.on_attestation(&flipped),
            Err(AttestationError::BadSignature(_) | AttestationError::NoSigners(_))
        ));
        let mut short = attestations[0].clone();
        short.aggregation_bits = BitList::with_capacity(bits + 1).unwrap();
        assert!(matches!(
            fresh.on_attestation(&short),
            Err(AttestationError::Committee { .. })
        ));
        let mut backwards = attestations[0].clone();
        backwards.data.source.epoch = backwards.data.target.epoch;
        assert!(matches!(
            fresh.on_attestation(&backwards),
            Err(AttestationError::Inconsistent { .. })
        ));
        // Without the aggregates' signatures nothing is final beyond genesis.
        assert_eq!(fresh.finalized().epoch, Epoch(0));
    }
}
