//! `phalanx bench …`: benchmarks that print their figures (never timed tests).

pub(crate) mod cluster;
pub(crate) mod consensus;
pub(crate) mod dv;
pub(crate) mod execution;
pub(crate) mod light;

/// What to benchmark.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Target {
    /// Sharded execution: speedup, end-to-end throughput, state-root cost, stateless
    /// re-execution.
    Execution(execution::Args),
    /// Consensus: simulator slots per second; data validity of a 16 × 1,000 block.
    Consensus(consensus::Args),
    /// Distributed validator: members as processes on loopback — duty latency, validators
    /// served within a third of a slot, member memory.
    Dv(dv::Args),
    /// Clustered node: tx/s with 1 server vs more, effect bytes per block, coordination
    /// round trip per accepted shard (embedded and etcd).
    Cluster(cluster::Args),
    /// Light client: following claims, re-executing a disputed block from its proof, a
    /// verified balance.
    Light(light::Args),
    /// Benchmarks of roles that have not landed yet.
    #[command(external_subcommand)]
    Other(Vec<String>),
}

/// A benchmark that does not exist yet and what measures its role meanwhile (`None`: no such
/// benchmark, an error).
pub(crate) fn pending(args: &[String]) -> Option<(&'static str, &'static str)> {
    let _ = args;
    None
}
