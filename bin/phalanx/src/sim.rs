//! `phalanx sim …`: deterministic simulators that end with one JSON line.

use phalanx_sim::{chain, dv};

/// Which simulator.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Target {
    /// The consensus protocol: validators, producers, attestations, finality, slashing.
    Chain(ChainArgs),
    /// A distributed validator cluster: QBFT, partial signatures, faulty members.
    Dv(DvArgs),
    /// Simulators of roles that have not landed yet.
    #[command(external_subcommand)]
    Other(Vec<String>),
}

/// The issue a not-yet-landed simulator comes with (`None`: no such simulator).
pub(crate) fn pending(args: &[String]) -> Option<(&'static str, u32, &'static str)> {
    Some(match args.first().map(String::as_str) {
        Some("cluster") => ("sim cluster", 6, "Clustered full node"),
        Some("light") => ("sim light", 7, "Executors' claims and the light client"),
        _ => return None,
    })
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
