//! `phalanx devnet` as a process: `kill -9` and a restart on the same data folder resume the
//! chain with no finalized block lost (nor its receipts, nor the validators'
//! producer-reputation books), and it goes on finalizing and executing.

use std::io::{Read as _, Write as _};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::free_port;
use crate::phalanx;

/// One HTTP request to the devnet on `port`; the response body as JSON.
fn http(port: u16, method: &str, path: &str, body: &str) -> Option<Value> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

fn rpc(port: u16, method: &str, params: Value) -> Option<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    http(port, "POST", "/", &body)?.get("result").cloned()
}

fn height(port: u16) -> Option<u64> {
    let v = rpc(port, "eth_blockNumber", json!([]))?;
    u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok()
}

/// A devnet process with 1 s slots and a 20 tx/s load on `port`, plus `extra` flags.
fn start_with(dir: &std::path::Path, port: u16, extra: &[&str]) -> Child {
    phalanx()
        .args([
            "devnet",
            "--light-rpc",
            "127.0.0.1:0",
            "--slot-seconds",
            "1",
            "--load",
            "20",
        ])
        .args(extra)
        .arg("--rpc")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn start(dir: &std::path::Path, port: u16) -> Child {
    start_with(dir, port, &[])
}

/// Polls `ready` until it gives a value, failing if the devnet exits or `within` passes.
fn poll<T>(
    child: &mut Child,
    within: Duration,
    what: &str,
    mut ready: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = ready() {
            return v;
        }
        assert!(child.try_wait().unwrap().is_none(), "the devnet exited");
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn wait_height(port: u16, at_least: u64, within: Duration, child: &mut Child) -> u64 {
    poll(
        child,
        within,
        &format!("executed height {at_least}"),
        || height(port).filter(|h| *h >= at_least),
    )
}

/// Declarations recorded in the validators' producer-reputation books, summed (none before
/// the chain thread has published its first status).
fn declarations_recorded(port: u16) -> Option<u64> {
    let status = http(port, "GET", "/api/status", "")?;
    if status["chain"].is_null() {
        return None;
    }
    status["producers"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["declared"].as_u64()).sum())
}

#[test]
fn devnet_resumes_after_kill_9_with_no_finalized_block_lost() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut first = start(dir.path(), port);
    wait_height(port, 9, Duration::from_secs(90), &mut first);
    let declared = poll(
        &mut first,
        Duration::from_secs(60),
        "8 declarations recorded in the reputation books",
        || declarations_recorded(port).filter(|d| *d >= 8),
    );
    let before = height(port).unwrap();
    let blocks: Vec<Value> = (1..=before)
        .map(|n| {
            rpc(
                port,
                "eth_getBlockByNumber",
                json!([format!("{n:#x}"), false]),
            )
            .unwrap()
        })
        .collect();
    // A transaction of an executed block (not the newest, whose receipts may still be coming
    // in) and its receipt.
    let (tx, receipt) = blocks[..blocks.len() - 1]
        .iter()
        .rev()
        .find_map(|b| b["transactions"].as_array()?.first().cloned())
        .map(|tx| {
            let receipt = rpc(port, "eth_getTransactionReceipt", json!([tx])).unwrap();
            (tx, receipt)
        })
        .expect("the load's transactions in an executed block");
    assert_eq!(receipt["status"], json!("0x1"), "{receipt}");
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();

    let mut second = start(dir.path(), port);
    // The reputation books are back, less at most the outcomes recorded in the slot of the
    // kill (they are written once a slot).
    let restored = poll(
        &mut second,
        Duration::from_secs(30),
        "the status after the restart",
        || declarations_recorded(port),
    );
    assert!(
        restored + 4 >= declared && restored > 0,
        "{restored} declarations recorded after the restart, {declared} before"
    );
    // Every executed (finalized) block is still there, with the same hash and state root.
    let resumed = wait_height(port, before, Duration::from_secs(30), &mut second);
    assert!(resumed >= before);
    for (n, block) in (1..=before).zip(&blocks) {
        let again = rpc(
            port,
            "eth_getBlockByNumber",
            json!([format!("{n:#x}"), false]),
        )
        .unwrap();
        assert_eq!(again["hash"], block["hash"], "block {n}");
        assert_eq!(again["stateRoot"], block["stateRoot"], "block {n}");
        if n < before {
            // What the receipts make is back from disk: they were kept with the state.
            for field in ["gasUsed", "receiptsRoot", "logsBloom", "transactions"] {
                assert_eq!(again[field], block[field], "block {n}: {field}");
            }
        }
        assert_ne!(
            again["stateRoot"],
            json!(format!("0x{}", "0".repeat(64))),
            "block {n}"
        );
    }
    assert_eq!(
        rpc(port, "eth_getTransactionReceipt", json!([tx])).unwrap(),
        receipt,
        "a receipt from before the kill"
    );
    // And the chain goes on: new blocks are finalized and executed.
    wait_height(port, before + 8, Duration::from_secs(90), &mut second);
    second.kill().unwrap();
    second.wait().unwrap();
}

fn api_status(port: u16) -> Option<Value> {
    http(port, "GET", "/api/status", "")
}

/// Issue #5's member as a process against a node: the devnet serves its validators 4..7 on
/// the validator API and runs no members; four `phalanx dv run --duties node` processes follow
/// the duty stream over HTTP, agree by QBFT over libp2p, and post group signatures back. The
/// chain can only finalize (two thirds of the stake) with their attestations.
#[test]
fn dv_run_processes_sign_a_devnets_duties_from_its_validator_api() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = crate::consecutive_free_ports(4);
    let mut devnet = phalanx()
        .args([
            "devnet",
            "--light-rpc",
            "127.0.0.1:0",
            "--slot-seconds",
            "1",
            "--rpc",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--dv-external-port", &base.to_string(), "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    poll(
        &mut devnet,
        Duration::from_secs(30),
        "the devnet's status API",
        || api_status(port),
    );
    let members: Vec<Child> = (1..=4)
        .map(|i| {
            phalanx()
                .args(["dv", "run", "--duties", "node", "--node"])
                .arg(format!("http://127.0.0.1:{port}"))
                .arg("--operator-dir")
                .arg(dir.path().join(format!("dv/op-{i}")))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Finality with the members' signatures (half the stake is theirs).
    let status = poll(
        &mut devnet,
        Duration::from_secs(90),
        "finality with the members' signatures",
        || {
            let s = api_status(port)?;
            let finalized = s["chain"]["finalized_epoch"].as_u64()?;
            let signed = s["dv"]["signed_duties"].as_u64()?;
            (finalized >= 1 && signed >= 8).then_some(s)
        },
    );
    assert_eq!(status["dv"]["external"], true);
    for m in &members {
        std::process::Command::new("kill")
            .args(["-INT", &m.id().to_string()])
            .status()
            .unwrap();
    }
    for (i, m) in members.into_iter().enumerate() {
        let out = m.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "op-{}: {err}", i + 1);
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            report["duties"].as_u64().unwrap() >= 8,
            "op-{}: {report}",
            i + 1
        );
        assert_eq!(report["refused"], 0, "{report}");
        assert_eq!(report["invalid_partials"], json!({}), "{report}");
        let accepted: u64 = err
            .lines()
            .find_map(|l| l.strip_prefix("dv run: the node accepted "))
            .and_then(|l| l.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("op-{}: no submission summary: {err}", i + 1));
        assert!(accepted >= 1, "op-{}: {err}", i + 1);
        let lines = std::fs::read_to_string(
            dir.path()
                .join(format!("dv/op-{}/submissions.jsonl", i + 1)),
        )
        .unwrap();
        assert!(lines.lines().count() as u64 >= accepted);
    }
    devnet.kill().unwrap();
    devnet.wait().unwrap();
}

/// `phalanx light` as a process, following a `phalanx devnet` process from the checkpoint
/// the devnet suggests: it reaches the devnet's blocks on the executors' claims, and answers
/// balances that equal what the devnet proves.
#[test]
fn light_process_follows_a_devnet_and_answers_verified_balances() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut devnet = start(dir.path(), port);
    wait_height(port, 2, Duration::from_secs(90), &mut devnet);
    let boot = http(port, "GET", "/phalanx/v1/light/bootstrap", "").unwrap();
    let checkpoint = format!(
        "{}:{}:{}",
        boot["height"],
        boot["block_hash"].as_str().unwrap(),
        boot["state_root"].as_str().unwrap()
    );
    let genesis = dir.path().join("chain").join("genesis.json");
    let lport = free_port();
    let mut light = phalanx()
        .args(["light", "--node", &format!("http://127.0.0.1:{port}")])
        .arg("--genesis")
        .arg(&genesis)
        .args(["--checkpoint", &checkpoint, "--poll-ms", "200", "--listen"])
        .arg(format!("127.0.0.1:{lport}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let at = poll(&mut devnet, Duration::from_secs(60), "light head 2", || {
        assert!(light.try_wait().unwrap().is_none(), "phalanx light exited");
        let light_head = height(lport)?;
        let node_head = height(port)?;
        (light_head >= 2).then_some(light_head.min(node_head))
    });
    let alloc: Value = serde_json::from_str(&std::fs::read_to_string(&genesis).unwrap()).unwrap();
    let accounts: Vec<String> = alloc["alloc"]
        .as_object()
        .unwrap()
        .keys()
        .take(3)
        .cloned()
        .collect();
    assert!(!accounts.is_empty());
    let tag = format!("{at:#x}");
    for who in &accounts {
        let proven = rpc(port, "eth_getProof", json!([who, [], tag])).unwrap();
        let balance = rpc(lport, "eth_getBalance", json!([who, tag])).unwrap();
        assert!(balance.is_string(), "{who}: {balance}");
        assert_eq!(balance, proven["balance"], "{who} at {at}");
    }
    light.kill().unwrap();
    light.wait().unwrap();
    devnet.kill().unwrap();
    devnet.wait().unwrap();
}

/// Executor claims served by the devnet from height `from`: (executor, height, post root).
fn served_claims(port: u16, from: u64) -> Vec<(u64, u64, String)> {
    use ssz::Decode as _;
    let Some(updates) = http(
        port,
        "GET",
        &format!("/phalanx/v1/light/updates?from=999999999&claims_from={from}"),
        "",
    ) else {
        return Vec::new();
    };
    updates["claims"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let bytes: alloy_primitives::Bytes = serde_json::from_value(c.clone()).unwrap();
            let claim = phalanx_types::SignedClaim::from_ssz_bytes(&bytes).unwrap();
            (
                claim.executor.0,
                claim.message.height,
                format!("{}", claim.message.post_state_root),
            )
        })
        .collect()
}

/// The highest height at which executor 2 (a process) claimed the same root as executor 0
/// (in the devnet), if any at or above `at_least`.
fn agreeing_claim(port: u16, at_least: u64) -> Option<u64> {
    let claims = served_claims(port, at_least);
    claims
        .iter()
        .filter(|(e, h, _)| *e == 2 && *h >= at_least)
        .filter(|(_, h, root)| {
            claims
                .iter()
                .any(|(e0, h0, r0)| *e0 == 0 && h0 == h && r0 == root)
        })
        .map(|(_, h, _)| *h)
        .max()
}

/// `phalanx executor` as a process, holding the keystore `phalanx devnet
/// --external-executors 1` wrote: it executes the devnet's blocks on its own state and its
/// posted claims agree with the in-process executors'; after `kill -9` and a restart it
/// resumes from its own disk and goes on claiming.
#[test]
fn executor_process_claims_the_devnets_blocks_and_resumes_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut devnet = start_with(
        dir.path(),
        port,
        &["--dv-validators", "0", "--external-executors", "1"],
    );
    wait_height(port, 1, Duration::from_secs(90), &mut devnet);
    let keys = dir.path().join("executors");
    let executor = || {
        phalanx()
            .args(["executor", "--node", &format!("http://127.0.0.1:{port}")])
            .arg("--genesis")
            .arg(dir.path().join("chain").join("genesis.json"))
            .arg("--keystore")
            .arg(keys.join("0002.json"))
            .arg("--password-file")
            .arg(keys.join("password.txt"))
            .arg("--data-dir")
            .arg(dir.path().join("ex2"))
            .args(["--poll-ms", "200"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut ex = executor();
    let first = poll(
        &mut devnet,
        Duration::from_secs(60),
        "an agreeing claim from the executor process",
        || {
            assert!(ex.try_wait().unwrap().is_none(), "phalanx executor exited");
            agreeing_claim(port, 2)
        },
    );
    ex.kill().unwrap(); // SIGKILL
    ex.wait().unwrap();
    let mut ex = executor();
    poll(
        &mut devnet,
        Duration::from_secs(60),
        "claims after the restart",
        || {
            assert!(ex.try_wait().unwrap().is_none(), "phalanx executor exited");
            agreeing_claim(port, first + 3)
        },
    );
    ex.kill().unwrap();
    ex.wait().unwrap();
    devnet.kill().unwrap();
    devnet.wait().unwrap();
}

/// `height → "block root"` from a roots log (`height block root unix-ms` lines).
fn roots_log(path: &std::path::Path) -> std::collections::BTreeMap<u64, String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.first()?.parse().ok()?,
                format!("{} {}", f.get(1)?, f.get(2)?),
            ))
        })
        .collect()
}

/// `phalanx node --follow` as a process: a full node of one server following a `phalanx
/// devnet` process — final headers checked over the light protocol, shards by gossip over
/// libp2p — holds the devnet's block and state root at every height, and after a `kill -9`
/// resumes from its disk and goes on matching.
#[test]
fn node_process_follows_a_devnet_and_resumes_after_kill_9() {
    node_process_follows(false);
}

/// The same with `phalanx node --genesis … --peer …` alone: the chain from gossip (consensus
/// blocks and aggregates on their topics, checked and finalized by the node itself), no
/// serving node's API; after the `kill -9` it finds its head's consensus block again.
#[test]
fn node_process_follows_a_devnet_from_gossip_alone_and_resumes_after_kill_9() {
    node_process_follows(true);
}

fn node_process_follows(gossip: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (port, p2p_port, node_port, node_rpc) =
        (free_port(), free_port(), free_port(), free_port());
    let mut devnet = start_with(
        dir.path(),
        port,
        &[
            "--dv-validators",
            "0",
            "--servers",
            "1",
            "--p2p-listen",
            &format!("/ip4/127.0.0.1/tcp/{p2p_port}"),
        ],
    );
    wait_height(port, 1, Duration::from_secs(90), &mut devnet);
    let secret = phalanx_net::p2p::identity_file(&dir.path().join("p2p.key")).unwrap();
    let key = phalanx_net::p2p::public_key(&secret).unwrap();
    let peer = format!("{}@/ip4/127.0.0.1/tcp/{p2p_port}", hex::encode(key.0));
    let node_dir = dir.path().join("node");
    let node = || {
        let mut cmd = phalanx();
        cmd.arg("node");
        if !gossip {
            cmd.args(["--follow", &format!("http://127.0.0.1:{port}")]);
        }
        cmd.arg("--genesis")
            .arg(dir.path().join("chain").join("genesis.json"))
            .args(["--peer", &peer, "--listen"])
            .arg(format!("/ip4/127.0.0.1/tcp/{node_port}"))
            .args(["--rpc", &format!("127.0.0.1:{node_rpc}")])
            .arg("--data-dir")
            .arg(&node_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let reference = dir.path().join("servers").join("s0").join("roots.log");
    let ours = node_dir.join("roots.log");
    let matching = |at_least: u64| {
        let (theirs, mine) = (roots_log(&reference), roots_log(&ours));
        let top = *mine.keys().last()?;
        if top < at_least {
            return None;
        }
        for h in 1..=top {
            assert_eq!(mine.get(&h), theirs.get(&h), "height {h}");
        }
        Some(top)
    };
    let mut n = node();
    let first = poll(
        &mut devnet,
        Duration::from_secs(90),
        "the node at height 3",
        || {
            assert!(n.try_wait().unwrap().is_none(), "phalanx node exited");
            matching(3)
        },
    );
    n.kill().unwrap(); // SIGKILL
    n.wait().unwrap();
    let mut n = node();
    poll(
        &mut devnet,
        Duration::from_secs(90),
        "the restarted node three blocks further",
        || {
            assert!(n.try_wait().unwrap().is_none(), "phalanx node exited");
            matching(first + 3)
        },
    );
    // Its JSON-RPC answers from the replica it resumed: every genesis account's proof at the
    // node's head is the devnet's at that height.
    let at = poll(
        &mut devnet,
        Duration::from_secs(30),
        "the node's rpc",
        || height(node_rpc).filter(|h| *h >= first + 3),
    );
    let genesis = dir.path().join("chain").join("genesis.json");
    let alloc: Value = serde_json::from_str(&std::fs::read_to_string(&genesis).unwrap()).unwrap();
    let accounts = alloc["alloc"].as_object().unwrap();
    assert!(!accounts.is_empty());
    let tag = format!("{at:#x}");
    for who in accounts.keys() {
        let theirs = rpc(port, "eth_getProof", json!([who, [], tag])).unwrap();
        let ours = rpc(node_rpc, "eth_getProof", json!([who, [], tag])).unwrap();
        assert!(theirs["accountProof"].is_array(), "{who}: {theirs}");
        assert_eq!(ours, theirs, "{who} at {at}");
    }
    // And it runs calls at its head, in that block's environment: init code returning NUMBER.
    let before = height(node_rpc).unwrap();
    let number = rpc(node_rpc, "eth_call", json!([{"data": "0x435f5260205ff3"}])).unwrap();
    let after = height(node_rpc).unwrap();
    let number =
        u64::from_str_radix(number.as_str().unwrap().trim_start_matches("0x"), 16).unwrap();
    assert!(
        (before..=after).contains(&number),
        "eth_call's NUMBER {number} outside the heads {before}..={after}"
    );
    n.kill().unwrap();
    n.wait().unwrap();
    devnet.kill().unwrap();
    devnet.wait().unwrap();
}
