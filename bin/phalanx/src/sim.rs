//! `phalanx sim …`: deterministic simulators that end with one JSON line.

use phalanx_sim::{chain, cluster, dv, light};

/// Which simulator.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Target {
    /// The consensus protocol: validators, producers, attestations, finality, slashing.
    Chain(ChainArgs),
    /// A distributed validator cluster: QBFT, partial signatures, faulty members.
    Dv(DvArgs),
    /// The servers of a clustered full node: crashes, takeovers, a corrupting server.
    Cluster(ClusterArgs),
    /// Executors' claims and a light client: lies, withheld claims, spam, re-execution.
    Light(LightArgs),
    /// Simulators of roles that have not landed yet.
    #[command(external_subcommand)]
    Other(Vec<String>),
}

/// Flags of `phalanx sim chain`.
#[derive(Debug, clap::Args)]
pub(crate) struct ChainArgs {
    /// Validators (equal stake).
    #[arg(long, default_value_t = 16)]
    validators: usize,
    /// Block producers.
    #[arg(long, default_value_t = 4)]
    producers: usize,
    /// Slots to simulate.
    #[arg(long, default_value_t = 500)]
    slots: u64,
    /// Probability that a message is lost.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Extra random delay per message, 0..=J ms (on top of 50 ms).
    #[arg(long = "jitter-ms", default_value_t = 0)]
    jitter_ms: u64,
    /// FROM:TO:FRACTION: the first FRACTION of the nodes are cut off from the rest during
    /// slots FROM..TO.
    #[arg(long, value_parser = parse_partition)]
    partition: Option<(u64, u64, f64)>,
    /// How many validators equivocate (the last ones).
    #[arg(long, default_value_t = 0)]
    equivocators: usize,
    /// How many producers never build a block (the last ones).
    #[arg(long, default_value_t = 0)]
    silent_producers: usize,
    /// How many validators are slow: all they send arrives a slot late (the first ones).
    #[arg(long, default_value_t = 0)]
    slow: usize,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn parse_partition(s: &str) -> Result<(u64, u64, f64), String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [from, to, fraction] = parts.as_slice() else {
        return Err(format!("{s:?}: expected FROM:TO:FRACTION, e.g. 32:192:0.5"));
    };
    let from: u64 = from
        .parse()
        .map_err(|_| format!("{from:?} is not a slot"))?;
    let to: u64 = to.parse().map_err(|_| format!("{to:?} is not a slot"))?;
    let fraction: f64 = fraction
        .parse()
        .map_err(|_| format!("{fraction:?} is not a fraction"))?;
    if from >= to || !(0.0..=1.0).contains(&fraction) {
        return Err(format!("{s:?}: need FROM < TO and 0 ≤ FRACTION ≤ 1"));
    }
    Ok((from, to, fraction))
}

pub(crate) fn chain(args: &ChainArgs) -> anyhow::Result<()> {
    let report = chain::run(chain::Config {
        validators: args.validators,
        producers: args.producers,
        slots: args.slots,
        loss: args.loss,
        jitter_ms: args.jitter_ms,
        partition: args.partition,
        equivocators: args.equivocators,
        silent_producers: args.silent_producers,
        slow: args.slow,
        seed: args.seed,
    })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Flags of `phalanx sim dv`.
#[derive(Debug, clap::Args)]
pub(crate) struct DvArgs {
    /// Members n.
    #[arg(long, default_value_t = 4)]
    members: usize,
    /// Threshold m (partials needed for a signature).
    #[arg(long, default_value_t = 3)]
    threshold: usize,
    /// Distributed validators the cluster runs.
    #[arg(long, default_value_t = 1)]
    validators: usize,
    /// Members that are down for the whole run (the last ones).
    #[arg(long, default_value_t = 0)]
    crashed: usize,
    /// Byzantine members: equivocate as leaders, send invalid partials (just before the crashed
    /// ones).
    #[arg(long, default_value_t = 0)]
    byzantine: usize,
    /// Failover members (the first ones).
    #[arg(long, default_value_t = 0)]
    failover: usize,
    /// Duties to run (one per 12 s slot).
    #[arg(long, default_value_t = 100)]
    duties: u64,
    /// Probability that a message is lost.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Extra random delay per message, 0..=J ms (on top of 20 ms).
    #[arg(long = "jitter-ms", default_value_t = 10)]
    jitter_ms: u64,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Duty consensus: qbft or tendermint.
    #[arg(long, default_value = "qbft", value_parser = ["qbft", "tendermint"])]
    consensus: String,
}

pub(crate) fn dv(args: &DvArgs) -> anyhow::Result<()> {
    let report = dv::run(dv::Config {
        members: args.members,
        threshold: args.threshold,
        validators: args.validators,
        crashed: args.crashed,
        byzantine: args.byzantine,
        failover: args.failover,
        duties: args.duties,
        loss: args.loss,
        jitter_ms: args.jitter_ms,
        seed: args.seed,
        consensus: if args.consensus == "tendermint" {
            dv::ConsensusKind::Tendermint
        } else {
            dv::ConsensusKind::Qbft
        },
    })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Flags of `phalanx sim cluster`.
#[derive(Debug, clap::Args)]
pub(crate) struct ClusterArgs {
    /// Servers of the node.
    #[arg(long, default_value_t = 4)]
    servers: u16,
    /// Shards per block.
    #[arg(long, default_value_t = 8)]
    shards: u16,
    /// Owners per shard (R).
    #[arg(long, default_value_t = 3)]
    replication: u16,
    /// Crash one server every K blocks (restarted from its disk 3 blocks later); 0: never.
    #[arg(long = "kill-every", default_value_t = 0)]
    kill_every: u64,
    /// Crash every owner of this shard for the middle third of the run (a takeover).
    #[arg(long = "kill-owners")]
    kill_owners: Option<u16>,
    /// 1: server 0 publishes corrupted effects.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    corrupt: u8,
    /// Blocks to produce.
    #[arg(long, default_value_t = 50)]
    blocks: u64,
    /// Transfers per shard per block.
    #[arg(long = "txs-per-shard", default_value_t = 20)]
    txs_per_shard: usize,
    /// Slot length (virtual), ms.
    #[arg(long = "slot-ms", default_value_t = 2000)]
    slot_ms: u64,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// 1: the node produces the blocks: each shard's owners build it, the first accepted is
    /// what every owner broadcasts.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    produce: u8,
}

pub(crate) fn cluster(args: &ClusterArgs) -> anyhow::Result<()> {
    if let Some(s) = args.kill_owners
        && s >= args.shards
    {
        anyhow::bail!("--kill-owners {s}: there are only {} shards", args.shards);
    }
    let report = cluster::run(cluster::Config {
        servers: args.servers,
        shards: args.shards,
        replication: args.replication,
        kill_every: args.kill_every,
        kill_owners: args.kill_owners,
        corrupt: args.corrupt == 1,
        blocks: args.blocks,
        txs_per_shard: args.txs_per_shard,
        slot_ms: args.slot_ms,
        seed: args.seed,
        produce: args.produce == 1,
    })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Flags of `phalanx sim light`.
#[derive(Debug, clap::Args)]
pub(crate) struct LightArgs {
    /// Bonded executors (equal bonds).
    #[arg(long, default_value_t = 10)]
    executors: u32,
    /// Percent of the executors' bond that lies (consistently, from `--lie-at` on).
    #[arg(long = "lying-stake", default_value_t = 0)]
    lying_stake: u32,
    /// The height the liars start lying at (and, with `--withhold`, the withheld height).
    #[arg(long = "lie-at", default_value_t = 10)]
    lie_at: u64,
    /// No executor claims block `--lie-at`.
    #[arg(long)]
    withhold: bool,
    /// Executors also sign claims about blocks that do not exist.
    #[arg(long)]
    spam: bool,
    /// A lying full node answers every proof request first, with a forged witness.
    #[arg(long = "forged-proofs")]
    forged_proofs: bool,
    /// Blocks.
    #[arg(long, default_value_t = 100)]
    blocks: u64,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub(crate) fn light(args: &LightArgs) -> anyhow::Result<()> {
    let report = light::run(light::Config {
        executors: args.executors,
        lying_stake: args.lying_stake,
        lie_at: args.lie_at,
        withhold: args.withhold,
        spam: args.spam,
        forged_proofs: args.forged_proofs,
        blocks: args.blocks,
        seed: args.seed,
    })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
