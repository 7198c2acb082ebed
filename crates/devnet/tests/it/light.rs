//! A light client (`phalanx_light::run`, as `phalanx light` runs it) following an in-process
//! devnet over HTTP: it reaches the executed head on the executors' claims alone, and its
//! verified JSON-RPC answers balances, nonces, code, storage and calls exactly as the full
//! node does; through a node that tampers with proofs or code it answers errors, never the
//! lie.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, Bytes};
use alloy_signer_local::PrivateKeySigner;
use phalanx_devnet::{Devnet, DevnetConfig};
use phalanx_light::run::Running;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::api::request;

async fn call(addr: SocketAddr, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let (code, body) = request(addr, "POST", "/", &body.to_string()).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn hex_u64(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

async fn light(devnet: &Devnet, nodes: &[SocketAddr], shutdown: watch::Receiver<bool>) -> Running {
    crate::light_client(devnet, nodes, None, shutdown).await
}

/// A node that forwards everything to the devnet but flips a byte in every account proof
/// and answers other code than the account's.
async fn lying_node(devnet: SocketAddr) -> SocketAddr {
    async fn forward(
        axum::extract::State(devnet): axum::extract::State<SocketAddr>,
        method: axum::http::Method,
        uri: axum::http::Uri,
        body: String,
    ) -> (axum::http::StatusCode, String) {
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let (code, answer) = request(devnet, method.as_str(), &path, &body).await;
        let mut answer_json: Value = match serde_json::from_str(&answer) {
            Ok(v) => v,
            Err(_) => return (axum::http::StatusCode::from_u16(code).unwrap(), answer),
        };
        if body.contains("eth_getProof")
            && let Some(last) = answer_json["result"]["accountProof"]
                .as_array_mut()
                .and_then(|p| p.last_mut())
        {
            let mut node: Vec<u8> = serde_json::from_value::<Bytes>(last.clone())
                .unwrap()
                .to_vec();
            let end = node.len() - 1;
            node[end] ^= 1;
            *last = json!(Bytes::from(node));
        }
        if body.contains("eth_getCode") {
            answer_json["result"] = json!("0x6001600101");
        }
        (
            axum::http::StatusCode::from_u16(code).unwrap(),
            answer_json.to_string(),
        )
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(forward).with_state(devnet);
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn light_client_follows_a_devnet_and_serves_only_verified_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = DevnetConfig::new(dir.path().to_path_buf());
    config.slot_seconds = Some(1);
    config.rpc = "127.0.0.1:0".parse().unwrap();
    config.dv_validators = 0;
    let devnet = Devnet::start(config).await.unwrap();
    let rpc = devnet.rpc_addr();
    let (_stop, shutdown) = watch::channel(false);
    let honest = light(&devnet, &[rpc], shutdown.clone()).await;
    let lying = lying_node(rpc).await;
    let liar = light(&devnet, &[lying], shutdown.clone()).await;
    // A client of three nodes, in this order: one that is down, the liar, the honest node.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let several = light(&devnet, &[down, lying, rpc], shutdown).await;

    // Deploy a contract whose constructor stores 42 at slot 0 and whose code returns slot 0.
    let signer = PrivateKeySigner::from_bytes(&devnet.accounts()[1].private_key).unwrap();
    let init: Bytes = "0x602a600055600b6011600039600b6000f360005460005260206000f3"
        .parse()
        .unwrap();
    let raw = crate::raw_tx(&signer, crate::create_tx(0, 200_000, init));
    let sent = call(rpc, "eth_sendRawTransaction", json!([raw])).await;
    assert!(sent["result"].is_string(), "{sent}");
    let contract = signer.address().create(0);

    // Wait until the node has executed the deployment and the light client is past it.
    let deadline = Instant::now() + Duration::from_secs(120);
    let at = loop {
        let receipt = call(rpc, "eth_getTransactionReceipt", json!([sent["result"]])).await;
        let head = hex_u64(&call(honest.addr, "eth_blockNumber", json!([])).await["result"]);
        if let Some(n) = receipt["result"]["blockNumber"].as_str() {
            let included = u64::from_str_radix(n.trim_start_matches("0x"), 16).unwrap();
            if head >= included {
                break included;
            }
        }
        assert!(
            Instant::now() < deadline,
            "light head {head} never passed the deployment; devnet {:?}",
            devnet.status()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let tag = json!(format!("{at:#x}"));
    {
        let client = honest.client.lock().unwrap();
        assert_eq!(client.stats().re_executions, 0);
        assert!(client.head().0 >= at);
    }

    // Balances and nonces: what the node's own proof says at that block.
    for who in [signer.address(), devnet.accounts()[0].address, contract] {
        let node = call(rpc, "eth_getProof", json!([who, [], tag])).await["result"].clone();
        assert!(node["balance"].is_string(), "{who}: {node}");
        let balance = call(honest.addr, "eth_getBalance", json!([who, tag])).await;
        assert_eq!(balance["result"], node["balance"], "{who}: {balance}");
        let nonce = call(honest.addr, "eth_getTransactionCount", json!([who, tag])).await;
        assert_eq!(nonce["result"], node["nonce"], "{who}: {nonce}");
    }
    let nonce = call(
        honest.addr,
        "eth_getTransactionCount",
        json!([signer.address(), tag]),
    )
    .await;
    assert_eq!(nonce["result"], "0x1", "{nonce}");
    // Code, storage and a call run here over proven state.
    let code = call(honest.addr, "eth_getCode", json!([contract, tag])).await;
    assert_eq!(code["result"], "0x60005460005260206000f3", "{code}");
    let slot = call(
        honest.addr,
        "eth_getStorageAt",
        json!([contract, "0x0", tag]),
    )
    .await;
    assert_eq!(slot["result"], format!("0x{:064x}", 42), "{slot}");
    let result = call(honest.addr, "eth_call", json!([{"to": contract}, tag])).await;
    assert_eq!(result["result"], format!("0x{:064x}", 42), "{result}");
    let empty = call(
        honest.addr,
        "eth_getCode",
        json!([Address::repeat_byte(9), tag]),
    )
    .await;
    assert_eq!(empty["result"], "0x");
    // `latest`: the newest block verified here and provable there (as of the client's last
    // poll of the node, so it may take a poll to see the deployment).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let latest = call(honest.addr, "eth_call", json!([{"to": contract}, "latest"])).await;
        if latest["result"] == format!("0x{:064x}", 42) {
            break;
        }
        assert!(Instant::now() < deadline, "{latest}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // What it cannot verify or does not serve: errors that say so.
    let future = call(honest.addr, "eth_getBalance", json!([contract, "0xffffff"])).await;
    assert_eq!(future["error"]["code"], -32000, "{future}");
    assert!(
        future["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no verified state root"),
        "{future}"
    );
    let send = call(honest.addr, "eth_sendRawTransaction", json!([raw])).await;
    assert_eq!(send["error"]["code"], -32601, "{send}");
    assert_eq!(
        call(honest.addr, "eth_chainId", json!([])).await["result"],
        "0x1ca3"
    );

    // Posted claims the node cannot check are refused, each with its reason: a block it does
    // not hold, a signature that is not the executor's, bytes that are not a claim.
    let (_, updates) = request(
        rpc,
        "GET",
        &format!("/phalanx/v1/light/updates?from=999999999&claims_from={at}"),
        "",
    )
    .await;
    let updates: phalanx_light::wire::Updates = serde_json::from_str(&updates).unwrap();
    let served: Vec<phalanx_types::SignedClaim> = updates
        .claims
        .iter()
        .map(|c| ssz::Decode::from_ssz_bytes(c).unwrap())
        .collect();
    let first = served.iter().find(|c| c.executor.0 == 0).unwrap().clone();
    let other = served.iter().find(|c| c.executor.0 != 0).unwrap();
    let mut unknown = first.clone();
    unknown.message.block_hash = alloy_primitives::B256::repeat_byte(0xab);
    let mut forged = first.clone();
    forged.signature = other.signature;
    let body = json!({"claims": [
        Bytes::from(ssz::Encode::as_ssz_bytes(&unknown)),
        Bytes::from(ssz::Encode::as_ssz_bytes(&forged)),
        "0x0102",
    ]});
    let (code, answer) = request(rpc, "POST", "/phalanx/v1/light/claims", &body.to_string()).await;
    assert_eq!(code, 400, "{answer}");
    let answer: phalanx_light::wire::ClaimsAnswer = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer.accepted, 0, "{answer:?}");
    assert!(answer.refused[0].contains("is not known"), "{answer:?}");
    assert!(answer.refused[1].contains("executor 0"), "{answer:?}");
    assert!(answer.refused[2].contains("malformed"), "{answer:?}");

    // A proof of execution of the deployment's block that re-executes only shard 0 and gives
    // the others as the effects the claims name: it finishes to the root the client believes.
    let upstream =
        phalanx_light::upstream::Upstream::new(&format!("http://{rpc}"), Duration::from_secs(10))
            .unwrap();
    let bytes = upstream.proof(at, &[0]).await.unwrap().unwrap();
    let proof = phalanx_execution::proof::ExecutionProof::from_bytes(&bytes).unwrap();
    assert_eq!(proof.executed_shards(), vec![0]);
    let (header, parent_root, believed) = {
        let client = honest.client.lock().unwrap();
        (
            client.header(at).unwrap().clone(),
            client.root_at(at - 1).unwrap(),
            client.root_at(at).unwrap(),
        )
    };
    let claim = served
        .iter()
        .find(|c| c.message.height == at && c.message.prev_state_root == parent_root)
        .unwrap();
    let agreed: Vec<Option<alloy_primitives::B256>> = claim
        .message
        .effects_roots
        .iter()
        .copied()
        .map(Some)
        .collect();
    assert_eq!(agreed.len(), header.shard_roots.len());
    let verified = proof
        .verify_with(parent_root, &header.shard_roots, &header.env, &agreed)
        .unwrap();
    assert_eq!((verified.post_state_root, verified.executed), (believed, 1));
    let (code, answer) = request(
        rpc,
        "GET",
        &format!("/phalanx/v1/light/proof/{at}?execute=0,99"),
        "",
    )
    .await;
    assert_eq!(code, 400, "{answer}");
    assert!(answer.contains("shard 99"), "{answer}");

    // Through the lying node: it follows (headers and claims are honest) but every read the
    // tampered proofs or code would answer is refused.
    let deadline = Instant::now() + Duration::from_secs(60);
    while liar.client.lock().unwrap().head().0 < at {
        assert!(
            Instant::now() < deadline,
            "the liar's client never reached {at}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (method, params) in [
        ("eth_getBalance", json!([signer.address(), tag])),
        ("eth_getTransactionCount", json!([contract, tag])),
        ("eth_getStorageAt", json!([contract, "0x0", tag])),
        ("eth_call", json!([{"to": contract}, tag])),
    ] {
        let answer = call(liar.addr, method, params).await;
        assert_eq!(answer["error"]["code"], -32000, "{method}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("unverified: proof does not verify"),
            "{method}: {answer}"
        );
    }

    // Through three nodes, one down and one lying: it follows, and every read is verified
    // from the honest one — the same answers as the honest node's own client.
    let deadline = Instant::now() + Duration::from_secs(60);
    while several.client.lock().unwrap().head().0 < at {
        assert!(
            Instant::now() < deadline,
            "the three-node client never reached {at}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (method, params) in [
        ("eth_getBalance", json!([signer.address(), tag])),
        ("eth_getTransactionCount", json!([signer.address(), tag])),
        ("eth_getStorageAt", json!([contract, "0x0", tag])),
        ("eth_getCode", json!([contract, tag])),
        ("eth_call", json!([{"to": contract}, tag])),
    ] {
        let there = call(several.addr, method, params.clone()).await;
        let here = call(honest.addr, method, params).await;
        assert!(there["result"].is_string(), "{method}: {there}");
        assert_eq!(there["result"], here["result"], "{method}");
    }
}
