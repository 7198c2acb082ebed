//! Executors' claims on chain: the devnet's blocks carry the claims, and a wrong claim is
//! proven wrong by the devnet's honest full node, carried in a block as a `WrongClaim` fraud
//! proof and slashed by every view of the chain, the bounty going to the producer that
//! carried it — while a light client following the devnet re-executes the disputed block and
//! believes the true root. Light clients learn the slashing from the block bodies (checked
//! against the headers' body roots), also one that starts after the dispute; a node that
//! strips the proof from a body only stalls its client below that block.

use std::time::{Duration, Instant};

use phalanx_devnet::{Devnet, DevnetConfig};
use phalanx_light::run::Running;
use phalanx_types::{BlockBody, ExecutorIndex};
use serde_json::{Value, json};
use ssz::{Decode, Encode};
use tokio::sync::watch;

use crate::api::request;

async fn call(addr: std::net::SocketAddr, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let (code, body) = request(addr, "POST", "/", &body.to_string()).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn light_via(
    devnet: &Devnet,
    node: std::net::SocketAddr,
    shutdown: watch::Receiver<bool>,
) -> Running {
    crate::light_client(devnet, &[node], None, shutdown).await
}

fn slashed(light: &Running, executor: u64) -> bool {
    let client = light.client.lock().unwrap();
    client
        .executors()
        .get(ExecutorIndex(executor))
        .is_some_and(|e| e.slashed)
}

/// Strips every fraud proof from the bodies a node serves.
fn hide_fraud_proofs(updates: &mut phalanx_light::wire::Updates) {
    for raw in &mut updates.bodies {
        if let Ok(mut body) = BlockBody::from_ssz_bytes(raw) {
            body.fraud_proofs = Default::default();
            *raw = body.as_ssz_bytes().into();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_claim_is_proven_on_chain_and_its_executor_slashed() {
    const LIE_AT: u64 = 3;
    let dir = tempfile::tempdir().unwrap();
    let mut config = DevnetConfig::new(dir.path().to_path_buf());
    config.slot_seconds = Some(1);
    config.rpc = "127.0.0.1:0".parse().unwrap();
    config.dv_validators = 0;
    config.lying_executor = Some((2, LIE_AT));
    let devnet = Devnet::start(config).await.unwrap();
    let rpc = devnet.rpc_addr();
    let bond = devnet.genesis().executors[2].amount;
    let (_stop, shutdown) = watch::channel(false);
    let light = light_via(&devnet, rpc, shutdown.clone()).await;

    // The proof reaches the chain and every view slashes executor 2.
    let deadline = Instant::now() + Duration::from_secs(150);
    let chain = loop {
        let status = devnet.status();
        if let Some(c) = status.chain.as_ref()
            && !c.executors_slashed.is_empty()
        {
            break c.clone();
        }
        assert!(Instant::now() < deadline, "no executor slashed: {status:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(chain.executors_slashed, vec![2], "only the liar: {chain:?}");
    assert_eq!(
        chain.bounties_gwei,
        bond / phalanx_consensus::executors::BOUNTY_QUOTIENT,
        "the bounty went to the producer that carried the proof"
    );
    assert!(
        chain.claims_on_chain >= 3 * (LIE_AT - 1),
        "the blocks carry the executors' claims: {chain:?}"
    );
    let slashed_on_chain: Value =
        serde_json::from_str(&request(rpc, "GET", "/api/status", "").await.1).unwrap();
    assert_eq!(slashed_on_chain["chain"]["executors_slashed"], json!([2]));

    // The light client re-executed the disputed block and believes the servers' root there.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let believed = light.client.lock().unwrap().root_at(LIE_AT);
        if let Some(root) = believed {
            let block = call(
                rpc,
                "eth_getBlockByNumber",
                json!([format!("{LIE_AT:#x}"), false]),
            )
            .await;
            assert_eq!(
                json!(root),
                block["result"]["stateRoot"],
                "light client's root at the lie is the servers'"
            );
            let stats = light.client.lock().unwrap().stats();
            assert!(stats.re_executions >= 1, "{stats:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "light client never decided {LIE_AT}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The light client learns the slashing from the body that carried the proof; so does one
    // starting afterwards from the genesis, which never saw the claims disagree live. A node
    // stripping the proof from that body stalls its client below the block.
    let deadline = Instant::now() + Duration::from_secs(60);
    let carried_at =
        loop {
            // Served bodies are those of final blocks: wait for the one carrying the proof.
            let (_, body) = request(
                rpc,
                "GET",
                "/phalanx/v1/light/updates?from=1&claims_from=0",
                "",
            )
            .await;
            let updates: phalanx_light::wire::Updates = serde_json::from_str(&body).unwrap();
            if let Some(i) = updates.bodies.iter().position(|b| {
                BlockBody::from_ssz_bytes(b).is_ok_and(|b| !b.fraud_proofs.is_empty())
            }) {
                break i as u64 + 1;
            }
            assert!(
                Instant::now() < deadline,
                "the block carrying the proof never became final"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
    let late = light_via(&devnet, rpc, shutdown.clone()).await;
    let hiding_node = crate::updates_proxy(rpc, hide_fraud_proofs).await;
    let hiding = light_via(&devnet, hiding_node, shutdown.clone()).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    while !(slashed(&light, 2)
        && slashed(&late, 2)
        && late.client.lock().unwrap().head().0 > carried_at + 2)
    {
        assert!(
            Instant::now() < deadline,
            "light clients never learned the slashing at {carried_at}: {} {}",
            slashed(&light, 2),
            slashed(&late, 2)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(!slashed(&late, 1) && !slashed(&late, 0));
    let hidden_head = hiding.client.lock().unwrap().head().0;
    assert!(
        hidden_head < carried_at && !slashed(&hiding, 2),
        "a client behind the node hiding the proof reached {hidden_head} (proof at {carried_at})"
    );

    // Claims keep being carried after the slashing.
    let before = chain.claims_on_chain;
    let deadline = Instant::now() + Duration::from_secs(30);
    while devnet.status().chain.map_or(0, |c| c.claims_on_chain) <= before {
        assert!(
            Instant::now() < deadline,
            "no claim carried after the slashing"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut devnet = devnet;
    devnet.shutdown().await;
}

/// An executor joins by deposit and leaves by exit, end to end: the deposit (signed by a new
/// key and by producer 0's keystore, as `phalanx executor deposit` does) is posted to the
/// devnet, carried in a block and listed by the node; `phalanx executor` with that key, which
/// no genesis lists, waits for it, then follows and claims, and its claims are carried on
/// chain; a light client learns the new executor from the final bodies. Its exit then makes
/// its claims weightless on the chain and at the light client. Badly signed operations are
/// refused with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_joins_by_deposit_claims_then_exits() {
    use phalanx_light::upstream::Upstream;
    use phalanx_light::wire::ExecutorOpsSubmission;
    use phalanx_types::{
        Epoch, ExecutorDeposit, ExecutorExit, ProducerIndex, SignedClaim, SignedExecutorDeposit,
        SignedExecutorExit,
    };

    let dir = tempfile::tempdir().unwrap();
    let mut config = DevnetConfig::new(dir.path().to_path_buf());
    config.slot_seconds = Some(1);
    config.rpc = "127.0.0.1:0".parse().unwrap();
    config.dv_validators = 0;
    let mut devnet = Devnet::start(config).await.unwrap();
    let rpc = devnet.rpc_addr();
    let genesis = devnet.genesis().clone();
    let signing = genesis.signing_context();
    let node = Upstream::new(&format!("http://{rpc}"), Duration::from_secs(10)).unwrap();
    let (_stop, shutdown) = watch::channel(false);
    let light = light_via(&devnet, rpc, shutdown.clone()).await;

    let producer = phalanx_crypto::keystore::Keystore::from_json_str(
        &std::fs::read_to_string(dir.path().join("producers/0000.json")).unwrap(),
    )
    .unwrap()
    .decrypt(phalanx_spec::devnet::DEVNET_PASSWORD)
    .unwrap();
    let fresh = phalanx_crypto::SecretKey::key_gen(&[0x77; 32]).unwrap();
    let message = ExecutorDeposit {
        pubkey: fresh.public_key().to_bytes(),
        reward_address: alloy_primitives::Address::repeat_byte(0x77),
        amount: genesis.spec.min_executor_bond,
        producer: ProducerIndex(0),
    };
    let deposit = SignedExecutorDeposit {
        executor_signature: signing.sign(&message, &fresh),
        producer_signature: signing.sign(&message, &producer),
        message: message.clone(),
    };
    let mut unpaid = deposit.clone();
    unpaid.producer_signature = signing.sign(&message, &fresh);
    let refused = node
        .submit_executor_ops(&ExecutorOpsSubmission {
            deposits: vec![unpaid.as_ssz_bytes().into(), vec![1, 2, 3].into()],
            exits: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(refused.accepted, 0);
    assert!(
        refused.refused.iter().any(|r| r.contains("producer 0"))
            && refused.refused.iter().any(|r| r.contains("malformed")),
        "{refused:?}"
    );
    let accepted = node
        .submit_executor_ops(&ExecutorOpsSubmission {
            deposits: vec![deposit.as_ssz_bytes().into()],
            exits: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(accepted.accepted, 1, "{accepted:?}");

    // `phalanx executor` with the new key: waits for the deposit, then claims.
    let executor = tokio::spawn(phalanx_executor::run(
        phalanx_executor::ExecutorConfig {
            node: format!("http://{rpc}"),
            genesis: genesis.clone(),
            key: fresh.clone(),
            data_dir: dir.path().join("executor-new"),
            poll_ms: 100,
            p2p: None,
        },
        shutdown.clone(),
    ));
    let new = genesis.executors.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let listed = node.executors().await.unwrap();
        let carried = node
            .updates(&phalanx_light::wire::UpdatesQuery {
                from: 1,
                claims_from: u64::MAX,
                limit: None,
            })
            .await
            .unwrap()
            .bodies
            .iter()
            .filter_map(|raw| BlockBody::from_ssz_bytes(raw).ok())
            .flat_map(|b| b.claims.into_iter().collect::<Vec<SignedClaim>>())
            .any(|c| c.executor == ExecutorIndex(new));
        let known_to_light = light
            .client
            .lock()
            .unwrap()
            .executors()
            .get(ExecutorIndex(new))
            .is_some_and(|e| e.pubkey == fresh.public_key());
        if listed.executors.iter().any(|e| e.index == new) && carried && known_to_light {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deposited executor never claimed on chain (listed {listed:?}, carried \
             {carried}, light {known_to_light}, executor ended {})",
            executor.is_finished()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // It leaves.
    let exit = ExecutorExit {
        executor: ExecutorIndex(new),
        epoch: Epoch(0),
    };
    let mut forged = SignedExecutorExit {
        signature: signing.sign(&exit, &producer),
        message: exit.clone(),
    };
    let refused = node
        .submit_executor_ops(&ExecutorOpsSubmission {
            deposits: Vec::new(),
            exits: vec![forged.as_ssz_bytes().into()],
        })
        .await
        .unwrap();
    assert!(
        refused.accepted == 0 && refused.refused[0].contains("bad signature"),
        "{refused:?}"
    );
    forged.signature = signing.sign(&exit, &fresh);
    let accepted = node
        .submit_executor_ops(&ExecutorOpsSubmission {
            deposits: Vec::new(),
            exits: vec![forged.as_ssz_bytes().into()],
        })
        .await
        .unwrap();
    assert_eq!(accepted.accepted, 1, "{accepted:?}");
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let on_chain = node
            .executors()
            .await
            .unwrap()
            .executors
            .iter()
            .any(|e| e.index == new && e.exit_epoch.is_some());
        let light_exit = light
            .client
            .lock()
            .unwrap()
            .executors()
            .get(ExecutorIndex(new))
            .and_then(|e| e.exit_epoch);
        if let (true, Some(at)) = (on_chain, light_exit) {
            let client = light.client.lock().unwrap();
            assert_eq!(client.executors().weight(ExecutorIndex(new), at), 0);
            assert!(client.executors().weight(ExecutorIndex(0), at) > 0);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the exit never reached the chain and the light client"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    devnet.shutdown().await;
}
