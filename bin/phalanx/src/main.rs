//! The `phalanx` binary: one subcommand per role. Each role is a library crate with
//! `run(config, shutdown)`; this file only parses flags, sets up logging and calls it.

// The binary is the one place that talks to the user on stdout/stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod devnet;
mod dv;
mod executor;
mod genesis;
mod light;
mod node;
mod sim;
mod statetest;

/// phalanx: a proof-of-stake chain client in which one logical node or validator can be many
/// machines.
#[derive(Debug, Parser)]
#[command(name = "phalanx", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// Log filter, as RUST_LOG (e.g. `info`, `phalanx=debug`).
    #[arg(long, global = true, env = "RUST_LOG", default_value = "info")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

/// Arguments of a role that does not run as a process of its own yet; accepted so that any
/// invocation gets the "not available" message instead of a flag error.
#[derive(Debug, clap::Args)]
struct Pending {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole system in one process: validators, producers, a clustered full node and
    /// Ethereum JSON-RPC (DV cluster, executors, light client and dashboard as they land).
    Devnet(devnet::DevnetArgs),
    /// One server of a (clustered) full node, owning a range of shard indices (or, with
    /// `--feed`, the block feed its servers follow).
    Node(node::NodeArgs),
    /// A validator client (one key or many).
    Validator(Pending),
    /// Distributed validator clusters: test clusters, operator keys, the key ceremony, members,
    /// votes and resharing.
    #[command(subcommand)]
    Dv(dv::DvCommand),
    /// A block producer.
    Producer(Pending),
    /// A bonded executor: follows a full node, executes every block on its own state, signs
    /// and posts claims about the post-state root.
    Executor(executor::ExecutorArgs),
    /// A light client: follows a full node's headers and executors' claims, re-executes
    /// disputed blocks, serves verified Ethereum JSON-RPC.
    Light(light::LightArgs),
    /// Deterministic simulators (chain, dv, cluster, light).
    #[command(subcommand)]
    Sim(sim::Target),
    /// Benchmarks (execution, consensus, dv, cluster, light).
    #[command(subcommand)]
    Bench(bench::Target),
    /// Run Ethereum GeneralStateTests (Cancun entries) through phalanx's state layer and revm.
    Statetest {
        /// Test files or folders (searched recursively for `.json`).
        #[arg(required = true)]
        paths: Vec<std::path::PathBuf>,
    },
    /// Write a deterministic devnet genesis and its keys from a seed.
    Genesis(genesis::GenesisArgs),
    /// Print a chain spec preset (or a spec file, checked) as TOML.
    Spec {
        /// Preset name (`devnet`, `minimal`) or path to a TOML file.
        #[arg(default_value = "devnet")]
        spec: String,
    },
}

/// The async runtime a role runs on.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context as _;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// A shutdown signal that turns true on Ctrl-C (call inside the runtime).
fn ctrl_c_shutdown() -> tokio::sync::watch::Receiver<bool> {
    let (tx, shutdown) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = tx.send(true);
        } else {
            std::future::pending::<()>().await;
        }
    });
    shutdown
}

/// A role that does not run as a process of its own yet, and what does its work meanwhile.
fn pending(command: &Command) -> Option<(&'static str, &'static str)> {
    Some(match command {
        Command::Validator(_) => (
            "validator",
            "validators sign inside `phalanx devnet`, and a distributed validator's members run \
             as `phalanx dv run`; its slashing protection and producer reputation are the \
             phalanx-validator library",
        ),
        Command::Producer(_) => (
            "producer",
            "producers build blocks inside `phalanx devnet`, and `phalanx sim cluster --produce \
             1` has a clustered node build its shards; the mempool and shard packing are the \
             phalanx-producer library",
        ),
        Command::Bench(bench::Target::Other(args)) => return bench::pending(args),
        Command::Genesis(_)
        | Command::Devnet(_)
        | Command::Node(_)
        | Command::Light(_)
        | Command::Executor(_)
        | Command::Spec { .. }
        | Command::Statetest { .. }
        | Command::Dv(
            dv::DvCommand::Create(_)
            | dv::DvCommand::Identity(_)
            | dv::DvCommand::Dkg(_)
            | dv::DvCommand::Run(_)
            | dv::DvCommand::Vote(_)
            | dv::DvCommand::Reshare(_)
            | dv::DvCommand::Other(_),
        )
        | Command::Bench(bench::Target::Execution(_))
        | Command::Bench(bench::Target::Consensus(_))
        | Command::Bench(bench::Target::Dv(_))
        | Command::Bench(bench::Target::Cluster(_))
        | Command::Bench(bench::Target::Light(_))
        | Command::Sim(_) => {
            return None;
        }
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_default())
        .with_writer(std::io::stderr)
        .init();

    if let Some((name, meanwhile)) = pending(&cli.command) {
        eprintln!("phalanx {name}: not available as a process of its own yet: {meanwhile}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Genesis(args) => genesis::run(args),
        Command::Devnet(args) => devnet::run(&args),
        Command::Node(args) => node::run(&args),
        Command::Light(args) => light::run(&args),
        Command::Executor(args) => executor::run(&args),
        Command::Statetest { paths } => statetest::run(&paths),
        Command::Bench(bench::Target::Execution(args)) => bench::execution::run(&args),
        Command::Bench(bench::Target::Consensus(args)) => bench::consensus::run(&args),
        Command::Bench(bench::Target::Dv(args)) => bench::dv::run(&args),
        Command::Bench(bench::Target::Cluster(args)) => bench::cluster::run(&args),
        Command::Bench(bench::Target::Light(args)) => bench::light::run(&args),
        Command::Sim(sim::Target::Chain(args)) => sim::chain(&args),
        Command::Sim(sim::Target::Dv(args)) => sim::dv(&args),
        Command::Sim(sim::Target::Cluster(args)) => sim::cluster(&args),
        Command::Sim(sim::Target::Light(args)) => sim::light(&args),
        Command::Dv(dv::DvCommand::Create(args)) => dv::create(&args),
        Command::Dv(dv::DvCommand::Identity(args)) => dv::identity(&args),
        Command::Dv(dv::DvCommand::Dkg(args)) => dv::dkg(&args),
        Command::Dv(dv::DvCommand::Run(args)) => dv::run(&args),
        Command::Dv(dv::DvCommand::Vote(args)) => dv::vote(&args),
        Command::Dv(dv::DvCommand::Reshare(args)) => dv::reshare(&args),
        Command::Dv(dv::DvCommand::Other(args)) => Err(anyhow::anyhow!(
            "unknown dv command {:?}; available: create, identity, dkg, run, vote, reshare",
            args.first().map(String::as_str).unwrap_or_default()
        )),
        Command::Sim(sim::Target::Other(args)) => Err(anyhow::anyhow!(
            "unknown simulator {:?}; available: chain, dv, cluster, light",
            args.first().map(String::as_str).unwrap_or_default()
        )),
        Command::Bench(bench::Target::Other(args)) => Err(anyhow::anyhow!(
            "unknown benchmark {:?}; available: execution, consensus, dv, cluster, light",
            args.first().map(String::as_str).unwrap_or_default()
        )),
        Command::Spec { spec } => phalanx_spec::ChainSpec::load(&spec)
            .map(|s| print!("{}", s.to_toml()))
            .map_err(anyhow::Error::from),
        _ => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The chain of causes, skipping a cause whose text its parent already quotes.
            let mut msg = err.to_string();
            for cause in err.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(": ");
                    msg.push_str(&c);
                }
            }
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
