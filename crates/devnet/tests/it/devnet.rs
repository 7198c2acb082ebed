//! A devnet in process with 1 s slots: the chain finalizes, finalized blocks are executed by
//! the clustered node, a transfer sent over JSON-RPC lands, the built-in load is executed,
//! every server logs the same roots, and bad requests get JSON-RPC errors.

use std::time::{Duration, Instant};

use alloy_consensus::TxEip1559;
use alloy_primitives::{Address, B256, TxKind, U256};
use alloy_signer_local::PrivateKeySigner;
use phalanx_devnet::{Devnet, DevnetConfig};
use serde_json::{Value, json};

async fn post(addr: std::net::SocketAddr, body: &str) -> Value {
    let (code, body) = crate::api::request(addr, "POST", "/", body).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let (code, body) = crate::api::request(addr, "GET", path, "").await;
    assert_eq!(code, 200, "{path}: {body}");
    body
}

async fn call(addr: std::net::SocketAddr, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    post(addr, &body.to_string()).await
}

/// A JSON-RPC client over a WebSocket, keeping subscription notifications as they come.
struct Ws {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u64,
    /// Notifications received and not yet taken: (subscription id, result).
    notes: Vec<(Value, Value)>,
}

impl Ws {
    async fn connect(addr: std::net::SocketAddr) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
            .await
            .unwrap();
        Self {
            socket,
            next: 0,
            notes: Vec::new(),
        }
    }

    /// The next message that is not a notification (those are kept).
    async fn next_answer(&mut self) -> Value {
        use futures::StreamExt;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(60), self.socket.next())
                .await
                .expect("no message within 60 s")
                .unwrap()
                .unwrap();
            let tokio_tungstenite::tungstenite::Message::Text(text) = message else {
                continue;
            };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["method"] == "eth_subscription" {
                self.notes.push((
                    v["params"]["subscription"].clone(),
                    v["params"]["result"].clone(),
                ));
                continue;
            }
            return v;
        }
    }

    async fn send_raw(&mut self, text: &str) -> Value {
        use futures::SinkExt;
        self.socket
            .send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .await
            .unwrap();
        self.next_answer().await
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let answer = self.send_raw(&body.to_string()).await;
        assert_eq!(answer["id"], id, "{answer}");
        answer
    }

    /// Waits for a notification of `sub` that `wanted` accepts; returns every notification of
    /// `sub` received up to and including it (and a moment after, to catch repeats).
    async fn notified(&mut self, sub: &Value, wanted: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.notes.iter().any(|(s, r)| s == sub && wanted(r)) {
                // Repeats would arrive within a few polls.
                let _ = tokio::time::timeout(Duration::from_secs(1), self.call_quiet()).await;
                let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.notes)
                    .into_iter()
                    .partition(|(s, _)| s == sub);
                self.notes = rest;
                return mine
                    .into_iter()
                    .map(|(_, r)| r)
                    .filter(|r| wanted(r))
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "subscription {sub} never notified"
            );
            // Any call drains the notifications that came before its answer.
            self.call_quiet().await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn call_quiet(&mut self) {
        self.call("net_version", json!([])).await;
    }
}

fn hex_u64(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devnet_finalizes_executes_and_answers_json_rpc() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = DevnetConfig::new(dir.path().to_path_buf());
    config.slot_seconds = Some(1);
    config.rpc = "127.0.0.1:0".parse().unwrap();
    config.load = 40;
    let devnet = Devnet::start(config).await.unwrap();
    let rpc = devnet.rpc_addr();
    assert_eq!(devnet.accounts().len(), 10);

    assert_eq!(
        hex_u64(&call(rpc, "eth_chainId", json!([])).await["result"]),
        7331
    );

    // A transfer from development account 0 to a fresh address.
    let signer = PrivateKeySigner::from_bytes(&devnet.accounts()[0].private_key).unwrap();
    let to = Address::repeat_byte(0x42);
    let value = U256::from(123_456_789u64);
    let nonce = hex_u64(
        &call(
            rpc,
            "eth_getTransactionCount",
            json!([signer.address(), "pending"]),
        )
        .await["result"],
    );
    assert_eq!(nonce, 0);
    let tx = TxEip1559 {
        chain_id: 7331,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 2_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(to),
        value,
        access_list: Default::default(),
        input: Default::default(),
    };
    let raw = crate::raw_tx(&signer, tx);
    let sent = call(rpc, "eth_sendRawTransaction", json!([raw.clone()])).await;
    assert!(sent["result"].is_string(), "{sent}");
    let hash = sent["result"].clone();
    let pending = call(rpc, "eth_getTransactionByHash", json!([hash])).await;
    assert_eq!(pending["result"]["blockNumber"], Value::Null, "{pending}");
    assert_eq!(
        pending["result"]["from"].as_str().unwrap().to_lowercase(),
        format!("{:#x}", signer.address())
    );
    assert_eq!(
        call(rpc, "eth_getTransactionReceipt", json!([hash])).await["result"],
        Value::Null
    );
    // The same transaction again is refused, with a message.
    let again = call(rpc, "eth_sendRawTransaction", json!([raw])).await;
    assert_eq!(again["error"]["code"], -32000, "{again}");

    // Bad requests: JSON-RPC errors, never a dropped connection.
    assert_eq!(post(rpc, "{not json").await["error"]["code"], -32700);
    assert_eq!(
        call(rpc, "eth_mine", json!([])).await["error"]["code"],
        -32601
    );
    assert_eq!(
        call(rpc, "eth_getBalance", json!(["0x12"])).await["error"]["code"],
        -32602
    );
    assert_eq!(
        call(rpc, "eth_sendRawTransaction", json!(["0x0102"])).await["error"]["code"],
        -32000
    );
    let batch = post(rpc, r#"[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},{"jsonrpc":"2.0","id":2,"method":"net_version"}]"#).await;
    assert_eq!(batch[1]["result"], "7331");

    // Wait for the transfer to be executed.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let balance = call(rpc, "eth_getBalance", json!([to, "latest"])).await;
        if balance["result"] == json!(format!("{value:#x}")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "transfer not executed in 120 s; status: {:?}",
            devnet.status()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = devnet.status();
    let chain = status.chain.clone().unwrap();
    assert!(chain.finalized.epoch.0 >= 1, "{status:?}");
    assert!(status.executed >= 1, "{status:?}");
    assert_eq!(status.alarms, 0);
    assert_eq!(
        hex_u64(
            &call(
                rpc,
                "eth_getTransactionCount",
                json!([signer.address(), "latest"])
            )
            .await["result"]
        ),
        1
    );
    // eth_getProof (EIP-1186): the recipient's balance, proven against the block's state
    // root with the trie's own proof check. The head may move between the two calls; retry.
    let mut proven = false;
    for _ in 0..10 {
        let block = call(rpc, "eth_getBlockByNumber", json!(["latest", false])).await;
        let number = block["result"]["number"].clone();
        let root: alloy_primitives::B256 =
            serde_json::from_value(block["result"]["stateRoot"].clone()).unwrap();
        let p = call(rpc, "eth_getProof", json!([to, [], number])).await;
        if p.get("error").is_some() {
            continue;
        }
        let nodes: Vec<alloy_primitives::Bytes> =
            serde_json::from_value(p["result"]["accountProof"].clone()).unwrap();
        let leaf =
            phalanx_trie::verify_proof(root, alloy_primitives::keccak256(to).as_slice(), &nodes)
                .unwrap()
                .expect("the recipient exists");
        let account: alloy_trie::TrieAccount =
            alloy_rlp::Decodable::decode(&mut leaf.as_slice()).unwrap();
        assert_eq!(account.balance, value);
        assert_eq!(p["result"]["balance"], json!(format!("{value:#x}")));
        // A forged node in the proof does not verify.
        let mut forged = nodes.clone();
        let mut last = forged.pop().unwrap().to_vec();
        *last.last_mut().unwrap() ^= 1;
        forged.push(last.into());
        assert!(
            phalanx_trie::verify_proof(root, alloy_primitives::keccak256(to).as_slice(), &forged)
                .map_or(true, |v| v.as_deref() != Some(leaf.as_slice()))
        );
        proven = true;
        break;
    }
    assert!(proven, "eth_getProof never answered at the head");
    // Its receipt (polled, as wallets do: it appears once the owners of every shard of its
    // block have recorded theirs, a moment after the balance) and its place in a block.
    let deadline = Instant::now() + Duration::from_secs(30);
    let receipt = loop {
        let got = call(rpc, "eth_getTransactionReceipt", json!([hash])).await;
        if !got["result"].is_null() || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let r = &receipt["result"];
    assert_eq!(r["status"], "0x1", "{receipt}");
    assert_eq!(r["gasUsed"], "0x5208", "{receipt}");
    assert_eq!(r["to"].as_str().unwrap().to_lowercase(), format!("{to:#x}"));
    let mined = call(rpc, "eth_getTransactionByHash", json!([hash])).await;
    assert_eq!(mined["result"]["blockNumber"], r["blockNumber"], "{mined}");
    assert_eq!(mined["result"]["blockHash"], r["blockHash"], "{mined}");
    // Its block, by number and by hash: gas used from the receipts, the transaction in full.
    let by_number = call(rpc, "eth_getBlockByNumber", json!([r["blockNumber"], true])).await;
    let b = &by_number["result"];
    assert_eq!(b["hash"], r["blockHash"], "{by_number}");
    assert!(hex_u64(&b["gasUsed"]) >= 21_000, "{by_number}");
    let full = b["transactions"].as_array().unwrap();
    assert!(
        full.iter()
            .any(|t| t["hash"] == hash && t["from"] == mined["result"]["from"]),
        "{by_number}"
    );
    // Its roots are Ethereum's ordered tries: rebuilt here from the transactions and receipts
    // as served (alloy's own decoding), they match what the block states.
    let envelopes: Vec<alloy_consensus::TxEnvelope> = full
        .iter()
        .map(|t| serde_json::from_value(t.clone()).unwrap())
        .collect();
    assert!(envelopes.iter().any(|e| json!(e.tx_hash()) == hash));
    assert_eq!(
        b["transactionsRoot"],
        json!(alloy_consensus::proofs::calculate_transaction_root(
            &envelopes
        )),
        "{by_number}"
    );
    let mut receipts = Vec::new();
    for t in full {
        let got = call(rpc, "eth_getTransactionReceipt", json!([t["hash"]])).await;
        if !got["result"].is_null() {
            let envelope: alloy_consensus::ReceiptEnvelope =
                serde_json::from_value(got["result"].clone()).unwrap();
            receipts.push(envelope);
        }
    }
    assert!(!receipts.is_empty());
    assert_eq!(
        b["receiptsRoot"],
        json!(alloy_consensus::proofs::calculate_receipt_root(&receipts)),
        "{by_number}"
    );
    assert_ne!(b["receiptsRoot"], json!(alloy_trie::EMPTY_ROOT_HASH));
    let by_hash = call(rpc, "eth_getBlockByHash", json!([r["blockHash"], false])).await;
    assert_eq!(by_hash["result"]["number"], r["blockNumber"], "{by_hash}");
    assert!(
        by_hash["result"]["transactions"]
            .as_array()
            .unwrap()
            .contains(&hash)
    );
    assert_eq!(
        call(
            rpc,
            "eth_getBlockByHash",
            json!([B256::repeat_byte(7), false])
        )
        .await["result"],
        Value::Null
    );
    // Fee history over the receipt's block and the one before: the fixed base fee, the ratio
    // of gas used, and the median tip paid (the load's and ours: above zero).
    let history = call(
        rpc,
        "eth_feeHistory",
        json!(["0x2", r["blockNumber"], [50.0]]),
    )
    .await;
    let h = &history["result"];
    assert_eq!(h["baseFeePerGas"].as_array().unwrap().len(), 3, "{history}");
    assert_eq!(h["baseFeePerGas"][0], "0x3b9aca00", "{history}");
    assert_eq!(h["gasUsedRatio"].as_array().unwrap().len(), 2, "{history}");
    assert!(h["gasUsedRatio"][1].as_f64().unwrap() > 0.0, "{history}");
    assert!(hex_u64(&h["reward"][1][0]) > 0, "{history}");
    let bad = call(
        rpc,
        "eth_feeHistory",
        json!(["0x4", "latest", [60.0, 10.0]]),
    )
    .await;
    assert_eq!(bad["error"]["code"], -32602, "{bad}");

    // Logs: a contract whose constructor emits LOG1(topic, 42). Filters installed first see it
    // as a change.
    let topic = B256::repeat_byte(0xab);
    let log_filter = call(
        rpc,
        "eth_newFilter",
        json!([{"fromBlock": "0x1", "topics": [topic]}]),
    )
    .await["result"]
        .clone();
    let block_filter = call(rpc, "eth_newBlockFilter", json!([])).await["result"].clone();
    let pending_filter =
        call(rpc, "eth_newPendingTransactionFilter", json!([])).await["result"].clone();
    assert!(log_filter.is_string() && block_filter.is_string() && pending_filter.is_string());
    // The same over a WebSocket: subscriptions to heads, the log and pending transactions.
    let mut ws = Ws::connect(rpc).await;
    // The head may move between the two calls: the WebSocket's answer lies between the HTTP
    // answers taken before and after it.
    let before = hex_u64(&call(rpc, "eth_blockNumber", json!([])).await["result"]);
    let over_ws = hex_u64(&ws.call("eth_blockNumber", json!([])).await["result"]);
    let after = hex_u64(&call(rpc, "eth_blockNumber", json!([])).await["result"]);
    assert!(
        before <= over_ws && over_ws <= after,
        "{before} ≤ {over_ws} ≤ {after}"
    );
    let heads_sub = ws.call("eth_subscribe", json!(["newHeads"])).await["result"].clone();
    let logs_sub = ws
        .call("eth_subscribe", json!(["logs", {"topics": [topic]}]))
        .await["result"]
        .clone();
    let pending_sub = ws
        .call("eth_subscribe", json!(["newPendingTransactions"]))
        .await["result"]
        .clone();
    assert!(heads_sub.is_string() && logs_sub.is_string() && pending_sub.is_string());
    for bad in [
        json!(["syncing"]),
        json!(["logs", {"fromBlock": "0x1"}]),
        json!(["logs", {"topics": "0x01"}]),
    ] {
        let answer = ws.call("eth_subscribe", bad.clone()).await;
        assert_eq!(answer["error"]["code"], -32602, "{bad}: {answer}");
    }
    let init: alloy_primitives::Bytes = format!(
        "0x602a6000527f{}60206000a100",
        alloy_primitives::hex::encode(topic)
    )
    .parse()
    .unwrap();
    let raw = crate::raw_tx(&signer, crate::create_tx(nonce + 1, 100_000, init));
    let logged = call(rpc, "eth_sendRawTransaction", json!([raw])).await["result"].clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    let receipt = loop {
        let got = call(rpc, "eth_getTransactionReceipt", json!([logged])).await;
        if !got["result"].is_null() {
            break got["result"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the logging deployment never executed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let emitter = receipt["contractAddress"].clone();
    assert_eq!(receipt["logs"].as_array().unwrap().len(), 1, "{receipt}");
    // The subscriptions were notified: the transaction entering the pool, the log once, and
    // the head of its block (with the roots the block has).
    let block_of_log = call(
        rpc,
        "eth_getBlockByHash",
        json!([receipt["blockHash"], false]),
    )
    .await;
    let got = ws
        .notified(&logs_sub, |log| log == &receipt["logs"][0])
        .await;
    assert_eq!(got.len(), 1, "the log once: {got:?}");
    ws.notified(&pending_sub, |h| h == &logged).await;
    let head = ws
        .notified(&heads_sub, |h| h["hash"] == receipt["blockHash"])
        .await
        .pop()
        .unwrap();
    for key in [
        "number",
        "parentHash",
        "stateRoot",
        "receiptsRoot",
        "transactionsRoot",
        "logsBloom",
    ] {
        assert_eq!(head[key], block_of_log["result"][key], "{key}: {head}");
    }
    assert!(head.get("transactions").is_none(), "{head}");
    for id in [&heads_sub, &logs_sub, &pending_sub] {
        assert_eq!(
            ws.call("eth_unsubscribe", json!([id])).await["result"],
            true
        );
    }
    assert_eq!(
        ws.call("eth_unsubscribe", json!([heads_sub])).await["result"],
        false
    );
    let garbage = ws.send_raw("{not json").await;
    assert_eq!(garbage["error"]["code"], -32700, "{garbage}");
    assert_eq!(
        ws.call("eth_chainId", json!([])).await["result"],
        call(rpc, "eth_chainId", json!([])).await["result"]
    );
    // The log filter reports the log once; the block filter the blocks executed meanwhile.
    let changed = call(rpc, "eth_getFilterChanges", json!([log_filter])).await;
    assert_eq!(changed["result"], receipt["logs"], "{changed}");
    let again = call(rpc, "eth_getFilterChanges", json!([log_filter])).await;
    assert_eq!(again["result"], json!([]), "{again}");
    let all = call(rpc, "eth_getFilterLogs", json!([log_filter])).await;
    assert_eq!(all["result"], receipt["logs"], "{all}");
    let blocks = call(rpc, "eth_getFilterChanges", json!([block_filter])).await;
    assert!(
        blocks["result"]
            .as_array()
            .unwrap()
            .contains(&receipt["blockHash"]),
        "{blocks}"
    );
    let pending = call(rpc, "eth_getFilterChanges", json!([pending_filter])).await;
    // The deployment entered the pool after the filter was installed (and left it for a
    // block long before this poll): it is reported.
    assert!(
        pending["result"].as_array().unwrap().contains(&logged),
        "{pending}"
    );
    assert_eq!(
        call(rpc, "eth_getFilterLogs", json!([block_filter])).await["error"]["code"],
        -32000
    );
    for id in [&log_filter, &block_filter, &pending_filter] {
        assert_eq!(
            call(rpc, "eth_uninstallFilter", json!([id])).await["result"],
            true
        );
    }
    assert_eq!(
        call(rpc, "eth_uninstallFilter", json!([log_filter])).await["result"],
        false
    );
    let gone = call(rpc, "eth_getFilterChanges", json!([log_filter])).await;
    assert_eq!(gone["error"]["code"], -32000, "{gone}");
    assert!(
        gone["error"]["message"]
            .as_str()
            .unwrap()
            .contains("filter not found")
    );
    assert_eq!(
        call(rpc, "eth_newFilter", json!([{"fromBlock": "nope"}])).await["error"]["code"],
        -32602
    );
    let logs = call(
        rpc,
        "eth_getLogs",
        json!([{"fromBlock": "0x1", "toBlock": "latest", "address": emitter, "topics": [topic]}]),
    )
    .await;
    assert_eq!(logs["result"], receipt["logs"], "{logs}");
    assert_eq!(
        logs["result"][0]["data"],
        format!("0x{:064x}", 42),
        "{logs}"
    );
    // By block hash, with alternatives and wildcards; a topic that does not match; too many
    // positions; bad filters.
    let by_hash = call(
        rpc,
        "eth_getLogs",
        json!([{"blockHash": receipt["blockHash"], "topics": [[B256::ZERO, topic]]}]),
    )
    .await;
    assert_eq!(by_hash["result"], receipt["logs"], "{by_hash}");
    for topics in [json!([B256::ZERO]), json!([null, topic])] {
        let none = call(
            rpc,
            "eth_getLogs",
            json!([{"fromBlock": "0x1", "address": emitter, "topics": topics}]),
        )
        .await;
        assert_eq!(none["result"], json!([]), "{none}");
    }
    let everything = call(
        rpc,
        "eth_getLogs",
        json!([{"fromBlock": "0x1", "topics": [null]}]),
    )
    .await;
    assert!(
        everything["result"]
            .as_array()
            .unwrap()
            .contains(&receipt["logs"][0]),
        "{everything}"
    );
    for bad in [
        json!([{"fromBlock": "0x5", "toBlock": "0x2"}]),
        json!([{"fromBlock": "nope"}]),
        json!(["0x1"]),
        json!([{"blockHash": receipt["blockHash"], "fromBlock": "0x1"}]),
        json!([{"topics": "0x01"}]),
    ] {
        let answer = call(rpc, "eth_getLogs", bad.clone()).await;
        assert_eq!(answer["error"]["code"], -32602, "{bad}: {answer}");
    }
    // Calls and estimates run against the executed head.
    let estimate = call(
        rpc,
        "eth_estimateGas",
        json!([{"from": signer.address(), "to": to, "value": "0x1"}]),
    )
    .await;
    assert_eq!(estimate["result"], "0x5208", "{estimate}");
    // Init code that returns the word 42.
    let ret42 = call(
        rpc,
        "eth_call",
        json!([{"data": "0x602a60005260206000f3"}, "latest"]),
    )
    .await;
    assert_eq!(ret42["result"], format!("0x{:064x}", 42), "{ret42}");
    let reverted = call(rpc, "eth_call", json!([{"data": "0x60006000fd"}])).await;
    assert_eq!(reverted["error"]["code"], 3, "{reverted}");

    // The built-in load is executed too.
    let deadline = Instant::now() + Duration::from_secs(60);
    while devnet.status().txs_executed < 20 {
        assert!(
            Instant::now() < deadline,
            "load not executed: {:?}",
            devnet.status()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The block JSON-RPC names as latest is the executed head, and an older state is refused.
    let head = hex_u64(&call(rpc, "eth_blockNumber", json!([])).await["result"]);
    assert!(head >= 1);
    let block = call(rpc, "eth_getBlockByNumber", json!(["latest", false])).await;
    assert!(hex_u64(&block["result"]["number"]) >= head, "{block}");
    let old = call(rpc, "eth_getBalance", json!([to, "0x0"])).await;
    assert_eq!(old["error"]["code"], -32000, "{old}");

    // Metrics, the status API and the dashboard page on the same address.
    let metrics = get(rpc, "/metrics").await;
    for name in [
        "phalanx_devnet_finalized_epoch ",
        "phalanx_devnet_executed_height ",
        "phalanx_devnet_server_applied_height{server=\"s3\"} ",
        "phalanx_devnet_server_alarms{server=\"s0\"} 0",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    for name in [
        "phalanx_devnet_dv_signed_duties ",
        "phalanx_devnet_light_head ",
        "phalanx_devnet_claims_agreement_permille 1000",
        "phalanx_devnet_dv_member_accepted{member=\"op-4\"} ",
        "phalanx_devnet_dv_partials_in_time_total{operator=\"op-2\"} ",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    let mut api: Value = serde_json::from_str(&get(rpc, "/api/status").await).unwrap();
    assert!(api["executed"].as_u64().unwrap() >= head, "{api}");
    // Producer reputation, summed over the validators' books: both producers listed, and a
    // declaration is recorded once its block is executed, with the fees it paid the validator
    // (the load's tips: 1 Mwei a gas, half to the validator), so the books hold whole Gwei.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let producers = api["producers"].as_array().unwrap();
        assert_eq!(producers.len(), 2, "{api}");
        let sum =
            |field: &str| -> u64 { producers.iter().map(|p| p[field].as_u64().unwrap()).sum() };
        let (declared, delivered) = (sum("declared"), sum("delivered"));
        assert!(delivered <= declared, "{api}");
        if delivered >= 1 && sum("validator_fees_gwei") > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no executed declaration recorded: {api}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        api = serde_json::from_str(&get(rpc, "/api/status").await).unwrap();
    }
    let metrics = get(rpc, "/metrics").await;
    for name in [
        "phalanx_devnet_producer_declared{producer=\"0\"} ",
        "phalanx_devnet_producer_validator_fees_gwei{producer=\"1\"} ",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    // Validators 4..8 are the distributed validator's: finality (two thirds of the stake)
    // needed their attestations, signed by the members through the validator API.
    let dv = &api["dv"];
    assert_eq!(dv["threshold"], 3, "{dv}");
    assert!(dv["signed_duties"].as_u64().unwrap() >= 4, "{dv}");
    for op in dv["operators"].as_array().unwrap() {
        assert!(op["accepted"].as_u64().unwrap() >= 1, "{dv}");
        assert_eq!(op["refused"], 0, "{dv}");
        assert_eq!(op["invalid_partials"], 0, "{dv}");
    }
    crate::api::check_validator_api(rpc, 4..8).await;
    // The executors claimed every executed block and the light client followed them to the
    // roots the servers computed.
    let light = &api["light"];
    assert_eq!(light["executors"], 3, "{light}");
    assert!(light["head"].as_u64().unwrap() >= 1, "{light}");
    assert_eq!(light["claims_agreement"], 1.0, "{light}");
    assert_eq!(light["re_executions"], 0, "{light}");
    // Its root is the servers' root at that height (the executors may be a block ahead of
    // the servers: wait for them).
    let mut compared = false;
    for _ in 0..40 {
        let now: Value = serde_json::from_str(&get(rpc, "/api/status").await).unwrap();
        let head = now["light"]["head"].as_u64().unwrap();
        let block = call(
            rpc,
            "eth_getBlockByNumber",
            json!([format!("{head:#x}"), false]),
        )
        .await;
        if block["result"].is_null() {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        assert_eq!(
            now["light"]["root"], block["result"]["stateRoot"],
            "{now} vs {block}"
        );
        compared = true;
        break;
    }
    assert!(
        compared,
        "the servers never reached the light client's head"
    );
    assert_eq!(api["servers"].as_array().unwrap().len(), 4);
    assert!(!api["recent_blocks"].as_array().unwrap().is_empty());
    assert!(get(rpc, "/").await.contains("phalanx devnet"));

    let mut devnet = devnet;
    devnet.shutdown().await;
    // Every server logged the same root at every height it applied.
    let logs: Vec<std::collections::BTreeMap<u64, String>> = (0..4)
        .map(|i| {
            std::fs::read_to_string(dir.path().join(format!("servers/s{i}/roots.log")))
                .unwrap()
                .lines()
                .map(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    (f[0].parse().unwrap(), format!("{} {}", f[1], f[2]))
                })
                .collect()
        })
        .collect();
    let mut compared = 0;
    for (height, root) in &logs[0] {
        for other in &logs[1..] {
            if let Some(r) = other.get(height) {
                assert_eq!(r, root, "height {height}");
                compared += 1;
            }
        }
    }
    assert!(compared >= 3, "too few heights to compare: {compared}");
}
