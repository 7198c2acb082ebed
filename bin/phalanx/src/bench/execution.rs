//! `phalanx bench execution`: the figures of issue #3, sized for a 2-core machine.
//!
//! * sequential (one shard) vs 2 and 4 shards on conflict-free transfers and ERC-20
//!   transfers: tx/s and speedup. Every run is end-to-end: decoding, parallel sender
//!   recovery, execution, merge, fee credit and the new state root;
//! * end-to-end transfers per second per core;
//! * incremental state-root cost per touched key on a large state;
//! * stateless re-execution of a block from its witness, and the witness size.

use std::collections::BTreeMap;
use std::time::Instant;

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_primitives::{Address, B256, Bytes, TxKind, U256, keccak256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use anyhow::Context;
use phalanx_execution::block::{BlockEnv, TxStatus};
use phalanx_execution::changes::{AccountChange, AccountFields, Changes, apply_changes};
use phalanx_execution::store::StateStore;
use phalanx_execution::witness::{execute_stateless, execute_with_witness};
use revm::primitives::KECCAK_EMPTY;
use serde::Serialize;

/// A minimal ERC-20 `transfer(to, amount)`: balances in a mapping at slot 0, a `Transfer`
/// event, returns true; reverts when the balance is short. Hand-assembled (106 bytes).
const TOKEN: &str = "60043560243533600052600060205260406000208054828110610065578290039055816000526040600020805482019055600052337fddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef60206000a3600160005260206000f35b600080fd";
const CHAIN_ID: u64 = 7331;
const BASEFEE: u64 = 1_000_000_000;

/// Flags of `phalanx bench execution`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Transactions per workload.
    #[arg(long, default_value_t = 10_000)]
    txs: usize,
    /// Shard counts to compare with the sequential baseline (one shard, one thread).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    shards: Vec<usize>,
    /// Accounts in the state used for the state-root cost.
    #[arg(long, default_value_t = 1_000_000)]
    state_accounts: usize,
    /// Accounts touched per state-root measurement.
    #[arg(long, default_value_t = 10_000)]
    touched: usize,
    /// Transactions in the block re-executed statelessly.
    #[arg(long, default_value_t = 1_000)]
    stateless_txs: usize,
    /// Repetitions of each timing (the best is kept).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

#[derive(Debug, Serialize)]
struct ShardFigure {
    /// Shards (0: the sequential baseline, one shard on one thread).
    shards: usize,
    seconds: f64,
    tx_per_s: f64,
    speedup: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    cores: usize,
    txs: usize,
    transfers: Vec<ShardFigure>,
    erc20: Vec<ShardFigure>,
    transfers_per_s_per_core: f64,
    state_accounts: usize,
    state_build_seconds: f64,
    touched_keys: usize,
    state_root_us_per_key: f64,
    stateless_txs: usize,
    stateless_ms: f64,
    witness_bytes: usize,
}

fn say(json: bool, line: &str) {
    if !json {
        eprintln!("{line}");
    }
}

fn signer(i: usize) -> PrivateKeySigner {
    // keccak of an index is a valid secp256k1 key with overwhelming probability; skip if not.
    let mut n = i as u64;
    loop {
        if let Ok(s) = PrivateKeySigner::from_bytes(&keccak256(n.to_be_bytes())) {
            return s;
        }
        n = n.wrapping_add(1 << 40);
    }
}

fn sign(
    key: &PrivateKeySigner,
    to: Address,
    value: u64,
    gas: u64,
    input: Bytes,
) -> anyhow::Result<Bytes> {
    let tx = TxEip1559 {
        chain_id: CHAIN_ID,
        nonce: 0,
        gas_limit: gas,
        max_fee_per_gas: u128::from(BASEFEE) * 2,
        max_priority_fee_per_gas: 1_000_000,
        to: TxKind::Call(to),
        value: U256::from(value),
        access_list: Default::default(),
        input,
    };
    let sig = key.sign_hash_sync(&tx.signature_hash())?;
    let envelope: alloy_consensus::TxEnvelope = tx.into_signed(sig).into();
    Ok(phalanx_types::transaction::encode(&envelope).into())
}

fn recipient(i: usize) -> Address {
    Address::from_slice(&keccak256(format!("recipient {i}"))[12..])
}

fn token() -> Address {
    Address::repeat_byte(0x70)
}

fn balance_slot(holder: Address) -> U256 {
    let mut preimage = [0u8; 64];
    preimage[12..32].copy_from_slice(holder.as_slice());
    U256::from_be_bytes(keccak256(preimage).0)
}

fn funded() -> AccountChange {
    AccountChange {
        fields: Some(Some(AccountFields {
            nonce: 0,
            balance: U256::from(10u64).pow(U256::from(21u64)),
            code_hash: KECCAK_EMPTY,
        })),
        ..Default::default()
    }
}

fn genesis(senders: &[Address]) -> anyhow::Result<Changes> {
    let mut changes = Changes::default();
    for s in senders {
        changes.accounts.insert(*s, funded());
    }
    let code = Bytes::from(alloy_primitives::hex::decode(TOKEN)?);
    let code_hash = keccak256(&code);
    changes.codes.insert(code_hash, code);
    let storage: BTreeMap<U256, U256> = senders
        .iter()
        .map(|s| (balance_slot(*s), U256::from(1_000_000u64)))
        .collect();
    changes.accounts.insert(
        token(),
        AccountChange {
            fields: Some(Some(AccountFields {
                nonce: 1,
                balance: U256::ZERO,
                code_hash,
            })),
            storage,
            ..Default::default()
        },
    );
    Ok(changes)
}

fn env() -> BlockEnv {
    BlockEnv {
        number: 1,
        timestamp: 1_700_000_000,
        chain_id: CHAIN_ID,
        basefee: BASEFEE,
        prevrandao: B256::ZERO,
        shard_gas_limit: 1_000_000_000,
        block_gas_limit: 4_000_000_000,
        block_hashes: BTreeMap::new(),
        validator_reward: Address::repeat_byte(0xaa),
        producer_reward: Address::repeat_byte(0xbb),
        fee_split_bps: 5_000,
    }
}

/// Splits transactions round-robin (transaction `i` to shard `i % n`): each sender appears
/// once, so shards are conflict-free.
fn split(txs: &[Bytes], n: usize) -> Vec<Vec<Bytes>> {
    let mut out = vec![Vec::new(); n.max(1)];
    for (i, tx) in txs.iter().enumerate() {
        out[i % n.max(1)].push(tx.clone());
    }
    out
}

fn time_block(genesis: &Changes, txs: &[Bytes], shards: usize, runs: usize) -> anyhow::Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..runs.max(1) {
        let store = StateStore::in_memory()?;
        store.init_genesis(B256::ZERO, genesis)?;
        let blocks = split(txs, shards);
        let start = Instant::now();
        let result = store.execute(B256::ZERO, B256::repeat_byte(1), &env(), &blocks)?;
        let elapsed = start.elapsed().as_secs_f64();
        anyhow::ensure!(
            result.void.is_none(),
            "benchmark block is void: {:?}",
            result.void
        );
        let failed = result
            .shards
            .iter()
            .flat_map(|s| &s.receipts)
            .filter(|r| r.status != TxStatus::Success)
            .count();
        anyhow::ensure!(
            failed == 0,
            "{failed} benchmark transactions did not succeed"
        );
        best = best.min(elapsed);
    }
    Ok(best)
}

/// Times the sequential baseline (one shard on one thread: recovery, execution and root all
/// sequential), then each shard count on every core.
fn figures(
    genesis: &Changes,
    txs: &[Bytes],
    shard_counts: &[usize],
    runs: usize,
    json: bool,
    label: &str,
) -> anyhow::Result<Vec<ShardFigure>> {
    let one_thread = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let base = one_thread.install(|| time_block(genesis, txs, 1, runs))?;
    let mut timings = vec![(0, base)];
    for &n in shard_counts {
        timings.push((n, time_block(genesis, txs, n, runs)?));
    }
    let mut out = Vec::new();
    for (shards, seconds) in timings {
        let figure = ShardFigure {
            shards,
            seconds,
            tx_per_s: txs.len() as f64 / seconds,
            speedup: base / seconds,
        };
        let name = if shards == 0 {
            "sequential".to_owned()
        } else {
            format!("{shards} shard(s)")
        };
        say(
            json,
            &format!(
                "  {label:<9} {name:<11} {:>8.1} ms  {:>9.0} tx/s  {:.2}x",
                seconds * 1e3,
                figure.tx_per_s,
                figure.speedup
            ),
        );
        out.push(figure);
    }
    Ok(out)
}

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let json = args.json;
    anyhow::ensure!(
        !args.shards.is_empty() && args.shards.iter().all(|s| (1..=64).contains(s)),
        "--shards takes counts between 1 and 64"
    );
    say(
        json,
        &format!(
            "phalanx bench execution: {} transactions, {cores} cores",
            args.txs
        ),
    );

    say(json, "signing transactions…");
    let keys: Vec<PrivateKeySigner> = (0..args.txs).map(signer).collect();
    let senders: Vec<Address> = keys.iter().map(|k| k.address()).collect();
    let transfers = keys
        .iter()
        .enumerate()
        .map(|(i, k)| sign(k, recipient(i), 1, 21_000, Bytes::new()))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let erc20 = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let mut input = vec![0xa9, 0x05, 0x9c, 0xbb];
            input.extend_from_slice(B256::left_padding_from(recipient(i).as_slice()).as_slice());
            input.extend_from_slice(&U256::from(7u64).to_be_bytes::<32>());
            sign(k, token(), 0, 100_000, input.into())
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let state = genesis(&senders)?;

    say(
        json,
        "sequential vs sharded (end-to-end: recovery, execution, merge, state root):",
    );
    let transfer_figures = figures(
        &state,
        &transfers,
        &args.shards,
        args.runs,
        json,
        "transfer",
    )?;
    let erc20_figures = figures(&state, &erc20, &args.shards, args.runs, json, "erc20")?;
    // Throughput per core: the sequential baseline runs on one core; sharded runs recover
    // senders on every core, so they count all of them.
    let per_core = transfer_figures
        .iter()
        .map(|f| {
            if f.shards == 0 {
                f.tx_per_s
            } else {
                f.tx_per_s / cores as f64
            }
        })
        .fold(0.0, f64::max);
    say(
        json,
        &format!("  end-to-end: {per_core:.0} transfers/s per core"),
    );

    say(
        json,
        &format!("building a {}-account state…", args.state_accounts),
    );
    let build_start = Instant::now();
    let big = StateStore::in_memory()?;
    let mut alloc = Changes::default();
    for i in 0..args.state_accounts {
        let address = Address::from_slice(&keccak256((i as u64).to_be_bytes())[12..]);
        alloc.accounts.insert(address, funded());
    }
    big.init_genesis(B256::ZERO, &alloc)
        .context("building the large state")?;
    let build_seconds = build_start.elapsed().as_secs_f64();
    say(json, &format!("  built in {build_seconds:.1} s"));
    let view = big.view(B256::ZERO)?;
    let mut best_root = f64::INFINITY;
    for run in 0..args.runs.max(1) {
        let mut changes = Changes::default();
        let stride = (args.state_accounts / args.touched.max(1)).max(1);
        for (n, (address, _)) in alloc
            .accounts
            .iter()
            .skip(run)
            .step_by(stride)
            .take(args.touched)
            .enumerate()
        {
            let mut change = funded();
            if let Some(Some(f)) = &mut change.fields {
                f.balance += U256::from(n + 1);
            }
            changes.accounts.insert(*address, change);
        }
        let start = Instant::now();
        let applied = apply_changes(&view, &view, view.root(), &changes)?;
        let elapsed = start.elapsed().as_secs_f64();
        anyhow::ensure!(applied.root != view.root(), "state root did not change");
        best_root = best_root.min(elapsed / changes.accounts.len().max(1) as f64);
    }
    say(
        json,
        &format!(
            "  incremental state root: {:.2} µs per touched key ({} keys)",
            best_root * 1e6,
            args.touched
        ),
    );
    drop(view);
    drop(big);

    say(
        json,
        &format!(
            "stateless re-execution of a {}-transaction block…",
            args.stateless_txs
        ),
    );
    let small = StateStore::in_memory()?;
    small.init_genesis(B256::ZERO, &state)?;
    let view = small.view(B256::ZERO)?;
    let block = split(&transfers[..args.stateless_txs.min(transfers.len())], 4);
    let (stateful, witness) = execute_with_witness(&view, &view, view.root(), &env(), &block)?;
    let mut best_stateless = f64::INFINITY;
    for _ in 0..args.runs.max(1) {
        let start = Instant::now();
        let stateless = execute_stateless(&witness, &env(), &block)?;
        best_stateless = best_stateless.min(start.elapsed().as_secs_f64());
        anyhow::ensure!(
            stateless.post_state_root == stateful.post_state_root,
            "stateless root differs"
        );
    }
    say(
        json,
        &format!(
            "  {:.1} ms, witness {} bytes",
            best_stateless * 1e3,
            witness.size()
        ),
    );

    let report = Report {
        cores,
        txs: args.txs,
        transfers: transfer_figures,
        erc20: erc20_figures,
        transfers_per_s_per_core: per_core,
        state_accounts: args.state_accounts,
        state_build_seconds: build_seconds,
        touched_keys: args.touched,
        state_root_us_per_key: best_root * 1e6,
        stateless_txs: args.stateless_txs,
        stateless_ms: best_stateless * 1e3,
        witness_bytes: witness.size(),
    };
    if json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}
