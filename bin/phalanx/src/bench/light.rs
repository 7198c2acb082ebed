//! `phalanx bench light`: how fast the light client follows claims, re-executes a disputed
//! block from its proof (every shard, and only one disputed shard with the others taken as
//! their agreed effects), checks a balance against the root it believes, and answers a
//! verified `eth_getBalance` over HTTP while following a devnet.

use std::collections::BTreeMap;
use std::time::Instant;

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_primitives::{Address, B256, Bytes, TxKind, U256, keccak256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use phalanx_consensus::executors::ExecutorRegistry;
use phalanx_execution::block::BlockEnv;
use phalanx_execution::changes::Changes;
use phalanx_execution::proof::ExecutionProof;
use phalanx_execution::store::StateStore;
use phalanx_light::client::{Config, LightClient, LightHeader};
use phalanx_spec::ChainSpec;
use phalanx_spec::devnet::{self, DevnetParams};
use phalanx_types::{ExecutorIndex, Shard, SignedClaim, TreeHash};
use serde::Serialize;

/// Flags of `phalanx bench light`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Blocks of claims to follow.
    #[arg(long, default_value_t = 1_000)]
    blocks: u64,
    /// Executors claiming each block.
    #[arg(long, default_value_t = 10)]
    executors: u32,
    /// Transactions in the disputed block.
    #[arg(long, default_value_t = 1_000)]
    txs: usize,
    /// Shards of the disputed block.
    #[arg(long, default_value_t = 8)]
    shards: usize,
    /// Funded accounts in the state the disputed block runs on (besides its senders).
    #[arg(long = "state-accounts", default_value_t = 20_000)]
    state_accounts: usize,
    /// Verified `eth_getBalance` round trips to time, through a light client following an
    /// in-process devnet over HTTP (0: skip that part).
    #[arg(long, default_value_t = 1_000)]
    reads: usize,
    /// Print one JSON object instead of lines.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    blocks: u64,
    claims: u64,
    follow_ms_deciding_each_block: f64,
    follow_ms_catching_up: f64,
    disputed_block_txs: usize,
    witness_bytes: usize,
    proof_bytes: usize,
    re_execute_ms: f64,
    one_shard_witness_bytes: usize,
    one_shard_proof_bytes: usize,
    one_shard_re_execute_ms: f64,
    balance_proof_bytes: usize,
    verified_balance_us: f64,
    reads: usize,
    verified_get_balance_rtt_p50_us: f64,
    verified_get_balance_rtt_p99_us: f64,
    node_get_balance_rtt_p50_us: f64,
    node_get_balance_rtt_p99_us: f64,
}

/// Round trips of `eth_getBalance`, microseconds sorted, to the light client and the node.
struct RoundTrips {
    light: Vec<f64>,
    node: Vec<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A devnet in process (1 s slots, 3 executors, no DV), a light client following it over
/// HTTP, and `reads` sequential `eth_getBalance` calls to each over one kept-alive
/// connection: the light client's answers are each an `eth_getProof` round trip to the node
/// plus the proof check.
fn round_trips(reads: usize) -> anyhow::Result<RoundTrips> {
    use phalanx_devnet::{Devnet, DevnetConfig};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let dir = tempfile::tempdir()?;
        let mut config = DevnetConfig::new(dir.path().to_path_buf());
        config.slot_seconds = Some(1);
        config.rpc = "127.0.0.1:0".parse()?;
        config.dv_validators = 0;
        let devnet = Devnet::start(config).await?;
        let node = devnet.rpc_addr();
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let light = phalanx_light::run::start(
            phalanx_light::run::RunConfig {
                nodes: vec![format!("http://{node}")],
                listen: "127.0.0.1:0".parse()?,
                genesis: devnet.genesis().clone(),
                checkpoint: devnet.light_checkpoint(),
                client: Config::default(),
                poll_ms: 200,
                p2p: None,
            },
            shutdown,
        )
        .await?;
        let who = devnet.accounts()[0].address;
        let http = reqwest::Client::new();
        let balance = |addr: std::net::SocketAddr| {
            let http = http.clone();
            async move {
                let body = serde_json::json!({"jsonrpc": "2.0", "id": 1,
                    "method": "eth_getBalance", "params": [who, "latest"]});
                let answer: serde_json::Value = http
                    .post(format!("http://{addr}/"))
                    .json(&body)
                    .send()
                    .await?
                    .json()
                    .await?;
                anyhow::ensure!(answer["result"].is_string(), "{answer}");
                Ok::<_, anyhow::Error>(answer["result"].clone())
            }
        };
        let deadline = Instant::now() + std::time::Duration::from_secs(120);
        // Until the light client has verified a block the node can prove.
        while light.client.lock().map_or(0, |c| c.head().0) < 2
            || balance(light.addr).await.is_err()
        {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the light client did not follow the devnet in 120 s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let mut times = RoundTrips {
            light: Vec::new(),
            node: Vec::new(),
        };
        for _ in 0..reads {
            let t = Instant::now();
            balance(light.addr).await?;
            times.light.push(t.elapsed().as_secs_f64() * 1e6);
            let t = Instant::now();
            balance(node).await?;
            times.node.push(t.elapsed().as_secs_f64() * 1e6);
        }
        times.light.sort_by(f64::total_cmp);
        times.node.sort_by(f64::total_cmp);
        drop(devnet);
        Ok(times)
    })
}

fn env(number: u64, spec: &ChainSpec, shards: usize) -> BlockEnv {
    BlockEnv {
        number,
        timestamp: 1_700_000_000 + number * 2,
        chain_id: spec.chain_id,
        basefee: 1_000_000_000,
        prevrandao: keccak256(number.to_be_bytes()),
        shard_gas_limit: spec.shard_gas_limit,
        block_gas_limit: spec.shard_gas_limit.saturating_mul(shards as u64),
        block_hashes: BTreeMap::new(),
        validator_reward: Address::repeat_byte(0xaa),
        producer_reward: Address::repeat_byte(0xbb),
        fee_split_bps: 5_000,
    }
}

/// Follows `blocks` blocks of `executors` honest claims; returns (ms deciding after every
/// block, ms deciding once at the end, claims).
fn follow(args: &Args) -> anyhow::Result<(f64, f64, u64)> {
    let spec = ChainSpec::preset("devnet")?;
    let mut params = DevnetParams::new("bench-light", spec.clone());
    params.executors = args.executors;
    params.accounts = 0;
    let (genesis, keys) = devnet::generate(&params)?;
    let signing = genesis.signing_context();
    let registry = ExecutorRegistry::from_genesis(&genesis)?;
    let genesis_hash = B256::repeat_byte(0xee);
    let mut roots = vec![B256::repeat_byte(0x01)];
    let mut headers = Vec::new();
    let mut claims: Vec<Vec<SignedClaim>> = Vec::new();
    let mut parent = genesis_hash;
    for h in 1..=args.blocks {
        let header = LightHeader {
            height: h,
            hash: keccak256(h.to_be_bytes()),
            parent,
            shard_roots: Vec::new(),
            env: env(h, &spec, 1),
        };
        let post = keccak256([b"root".as_slice(), &h.to_be_bytes()].concat());
        let claim = LightClient::claim_for(&header, roots[h as usize - 1], &[], post);
        claims.push(
            keys.executors
                .iter()
                .enumerate()
                .map(|(i, (_, key))| SignedClaim {
                    executor: ExecutorIndex(i as u64),
                    signature: signing.sign(&claim, key),
                    message: claim.clone(),
                })
                .collect(),
        );
        roots.push(post);
        parent = header.hash;
        headers.push(header);
    }
    let mut timings = Vec::new();
    for decide_each in [true, false] {
        let mut client = LightClient::new(
            Config::default(),
            signing,
            registry.clone(),
            (0, genesis_hash, roots[0]),
        );
        let start = Instant::now();
        for (header, block_claims) in headers.iter().zip(&claims) {
            client.on_header(header.clone(), 0)?;
            for c in block_claims {
                client.on_claim(c.clone())?;
            }
            if decide_each {
                client.advance(0);
            }
        }
        client.advance(0);
        timings.push(start.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(
            client.head() == (args.blocks, roots[args.blocks as usize]),
            "the client did not follow every block"
        );
    }
    Ok((
        timings[0],
        timings[1],
        args.blocks * u64::from(args.executors),
    ))
}

struct Disputed {
    witness_bytes: usize,
    proof_bytes: usize,
    re_execute_ms: f64,
    one_shard_witness_bytes: usize,
    one_shard_proof_bytes: usize,
    one_shard_re_execute_ms: f64,
    balance_proof_bytes: usize,
    verified_balance_us: f64,
}

fn disputed(args: &Args) -> anyhow::Result<Disputed> {
    let spec = ChainSpec::preset("devnet")?;
    let shards = args.shards.max(1);
    let senders: Vec<PrivateKeySigner> = (0..args.txs)
        .map(|i| PrivateKeySigner::from_bytes(&keccak256(format!("bench-light-{i}"))))
        .collect::<Result<_, _>>()?;
    let mut alloc = Changes::default();
    let balance = U256::from(10u64).pow(U256::from(21u64));
    for s in &senders {
        alloc.fund(s.address(), balance);
    }
    for i in 0..args.state_accounts {
        alloc.fund(Address::from_word(keccak256(i.to_be_bytes())), balance);
    }
    let store = StateStore::in_memory()?;
    let genesis = B256::repeat_byte(0xee);
    let parent_root = store.init_genesis(genesis, &alloc)?;
    // Each sender pays a fresh recipient once; senders are split among the shards.
    let mut txs: Vec<Vec<Bytes>> = vec![Vec::new(); shards];
    for (i, s) in senders.iter().enumerate() {
        let tx = TxEip1559 {
            chain_id: spec.chain_id,
            nonce: 0,
            gas_limit: 21_000,
            max_fee_per_gas: 2_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            to: TxKind::Call(Address::from_word(keccak256(format!("to-{i}")))),
            value: U256::from(1_000u64),
            access_list: Default::default(),
            input: Default::default(),
        };
        let sig = s.sign_hash_sync(&tx.signature_hash())?;
        let envelope: alloy_consensus::TxEnvelope = tx.into_signed(sig).into();
        txs[i % shards].push(phalanx_types::transaction::encode(&envelope).into());
    }
    let typed: Vec<Shard> = txs
        .iter()
        .map(|t| Shard::from_transactions(t.iter().map(|x| x.to_vec()).collect()))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("shard over its limits: {e:?}"))?;
    let shard_roots: Vec<B256> = typed.iter().map(TreeHash::tree_hash_root).collect();
    let block_env = env(1, &spec, shards);
    let view = store.view(genesis)?;
    let proof = ExecutionProof::build(&view, parent_root, &block_env, &typed)?;
    let proof_bytes = proof.to_bytes().len();
    let mut best = f64::MAX;
    let mut post = B256::ZERO;
    for _ in 0..3 {
        let proof = ExecutionProof::from_bytes(&proof.to_bytes())?;
        let start = Instant::now();
        let v = proof.verify(parent_root, &shard_roots, &block_env)?;
        best = best.min(start.elapsed().as_secs_f64() * 1e3);
        post = v.post_state_root;
    }
    let stateful = store.execute(genesis, B256::repeat_byte(1), &block_env, &txs)?;
    anyhow::ensure!(
        stateful.post_state_root == post,
        "re-execution from the proof disagrees with the stateful execution"
    );
    // Only shard 0 disputed: the others are given as the effects every claim agrees on.
    let partial = ExecutionProof::build_partial(&view, parent_root, &block_env, &typed, &[0])?;
    let mut agreed: Vec<Option<B256>> = stateful.effects_roots().into_iter().map(Some).collect();
    agreed[0] = None;
    let mut one_best = f64::MAX;
    for _ in 0..3 {
        let proof = ExecutionProof::from_bytes(&partial.to_bytes())?;
        let start = Instant::now();
        let v = proof.verify_with(parent_root, &shard_roots, &block_env, &agreed)?;
        one_best = one_best.min(start.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(
            v.post_state_root == post && v.executed == 1,
            "the one-shard proof disagrees with the stateful execution"
        );
    }
    // A balance read checked against the root: the proof a full node would send and the
    // client's check of it (in process; no network in the figure).
    let who = senders[0].address();
    let start = Instant::now();
    let account = store.proof(genesis, who, &[])?;
    let proven = phalanx_trie::verify_proof(
        parent_root,
        keccak256(who).as_slice(),
        &account.account_proof,
    )?;
    let verified_balance_us = start.elapsed().as_secs_f64() * 1e6;
    anyhow::ensure!(proven.is_some(), "the balance proof proved nothing");
    Ok(Disputed {
        witness_bytes: proof.witness.size(),
        proof_bytes,
        re_execute_ms: best,
        one_shard_witness_bytes: partial.witness.size(),
        one_shard_proof_bytes: partial.to_bytes().len(),
        one_shard_re_execute_ms: one_best,
        balance_proof_bytes: account.account_proof.iter().map(|n| n.len()).sum(),
        verified_balance_us,
    })
}

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.blocks > 0 && args.executors > 0,
        "need blocks and executors"
    );
    anyhow::ensure!(args.txs > 0, "--txs must be at least 1");
    if !args.json {
        eprintln!(
            "bench light: signing {} claims of {} executors…",
            args.blocks * u64::from(args.executors),
            args.executors
        );
    }
    let (each, catch_up, claims) = follow(args)?;
    if !args.json {
        eprintln!(
            "bench light: building a {}-transaction block on {} accounts…",
            args.txs, args.state_accounts
        );
    }
    let d = disputed(args)?;
    if !args.json && args.reads > 0 {
        eprintln!(
            "bench light: starting a devnet and a light client for {} verified reads…",
            args.reads
        );
    }
    let trips = if args.reads > 0 {
        round_trips(args.reads)?
    } else {
        RoundTrips {
            light: Vec::new(),
            node: Vec::new(),
        }
    };
    let report = Report {
        blocks: args.blocks,
        claims,
        follow_ms_deciding_each_block: each,
        follow_ms_catching_up: catch_up,
        disputed_block_txs: args.txs,
        witness_bytes: d.witness_bytes,
        proof_bytes: d.proof_bytes,
        re_execute_ms: d.re_execute_ms,
        one_shard_witness_bytes: d.one_shard_witness_bytes,
        one_shard_proof_bytes: d.one_shard_proof_bytes,
        one_shard_re_execute_ms: d.one_shard_re_execute_ms,
        balance_proof_bytes: d.balance_proof_bytes,
        verified_balance_us: d.verified_balance_us,
        reads: args.reads,
        verified_get_balance_rtt_p50_us: percentile(&trips.light, 0.5),
        verified_get_balance_rtt_p99_us: percentile(&trips.light, 0.99),
        node_get_balance_rtt_p50_us: percentile(&trips.node, 0.5),
        node_get_balance_rtt_p99_us: percentile(&trips.node, 0.99),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "follow {} blocks ({} claims): {:.0} ms deciding after each block, {:.0} ms catching up",
            report.blocks, report.claims, each, catch_up
        );
        println!(
            "re-execute a disputed {}-transaction block from its proof: {:.1} ms (witness {} bytes, proof {} bytes)",
            report.disputed_block_txs,
            report.re_execute_ms,
            report.witness_bytes,
            report.proof_bytes
        );
        println!(
            "the same block with one of its {} shards disputed (the others taken as their agreed effects): {:.1} ms (witness {} bytes, proof {} bytes)",
            args.shards,
            report.one_shard_re_execute_ms,
            report.one_shard_witness_bytes,
            report.one_shard_proof_bytes
        );
        println!(
            "verified balance (proof built and checked in process, no network): {:.0} µs, {} proof bytes",
            report.verified_balance_us, report.balance_proof_bytes
        );
        if report.reads > 0 {
            println!(
                "verified eth_getBalance round trip through the light client (HTTP to it, eth_getProof to the node, proof checked): p50 {:.0} µs, p99 {:.0} µs; the node's own eth_getBalance: p50 {:.0} µs, p99 {:.0} µs ({} reads each, devnet running)",
                report.verified_get_balance_rtt_p50_us,
                report.verified_get_balance_rtt_p99_us,
                report.node_get_balance_rtt_p50_us,
                report.node_get_balance_rtt_p99_us,
                report.reads
            );
        }
    }
    Ok(())
}
