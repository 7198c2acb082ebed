//! `phalanx bench consensus`: simulator speed and the data-validity check of a big block.

use std::time::Instant;

use alloy_primitives::B256;
use phalanx_consensus::testing::signed_block;
use phalanx_consensus::{ChainContext, Registry, check_block};
use phalanx_spec::ChainSpec;
use phalanx_spec::devnet::{self, DevnetParams};
use phalanx_types::{ProducerIndex, Shard, ValidatorIndex};
use serde::Serialize;

/// Flags of `phalanx bench consensus`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Print one JSON object instead of lines.
    #[arg(long)]
    json: bool,
    /// Slots the simulator runs (16 validators, 4 producers, 1% loss, 200 ms jitter).
    #[arg(long, default_value_t = 500)]
    sim_slots: u64,
    /// Shards in the checked block.
    #[arg(long, default_value_t = 16)]
    shards: usize,
    /// Transactions per shard (110 bytes each, as a transfer).
    #[arg(long, default_value_t = 1_000)]
    txs_per_shard: usize,
    /// Repetitions of the check (the best is kept).
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

#[derive(Debug, Serialize)]
struct Report {
    sim_slots: u64,
    sim_seconds: f64,
    sim_slots_per_s: f64,
    block_shards: usize,
    block_txs: usize,
    block_bytes: usize,
    data_validity_ms: f64,
}

pub(crate) fn run(args: &Args) -> anyhow::Result<()> {
    let start = Instant::now();
    let sim = phalanx_sim::chain::run(phalanx_sim::chain::Config {
        validators: 16,
        producers: 4,
        slots: args.sim_slots,
        loss: 0.01,
        jitter_ms: 200,
        ..Default::default()
    })?;
    let sim_seconds = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        sim.safety_violations == 0,
        "simulation reported safety violations"
    );

    let mut spec = ChainSpec::preset("devnet")?;
    spec.shards_per_block = args.shards as u64;
    spec.max_transactions_per_shard = args.txs_per_shard as u64;
    spec.max_block_bytes = 64 << 20;
    spec.validate()?;
    let mut params = DevnetParams::new("bench-consensus", spec.clone());
    params.validators = 4;
    let (genesis, keys) = devnet::generate(&params)?;
    let registry = Registry::from_genesis(&genesis)?;
    let signing = genesis.signing_context();
    let shards = (0..args.shards)
        .map(|s| {
            let txs = (0..args.txs_per_shard).map(|t| {
                let mut tx = vec![0u8; 110];
                tx[..8].copy_from_slice(&((s * args.txs_per_shard + t) as u64).to_be_bytes());
                tx
            });
            Shard::from_transactions(txs.collect())
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let block = signed_block(
        &signing,
        spec.slots_per_epoch,
        9,
        B256::repeat_byte(1),
        (ValidatorIndex(2), &keys.validators[2].1),
        (ProducerIndex(0), &keys.producers[0].1),
        shards,
    )
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let ctx = ChainContext {
        spec: &spec,
        signing,
        registry: &registry,
    };
    let mut best = f64::INFINITY;
    for _ in 0..args.runs.max(1) {
        let start = Instant::now();
        check_block(&ctx, ValidatorIndex(2), &block)?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    let report = Report {
        sim_slots: args.sim_slots,
        sim_seconds,
        sim_slots_per_s: args.sim_slots as f64 / sim_seconds,
        block_shards: args.shards,
        block_txs: args.shards * args.txs_per_shard,
        block_bytes: phalanx_types::Encode::ssz_bytes_len(&block),
        data_validity_ms: best * 1e3,
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "simulator: {} slots in {:.2} s = {:.0} slots/s",
            report.sim_slots, sim_seconds, report.sim_slots_per_s
        );
        println!(
            "data validity of a block of {} shards x {} transactions ({} bytes): {:.2} ms",
            args.shards, args.txs_per_shard, report.block_bytes, report.data_validity_ms
        );
    }
    Ok(())
}
