//! `phalanx devnet`: flags, the anvil-style banner, a status line per slot until Ctrl-C.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use phalanx_devnet::{Devnet, DevnetConfig};

/// Flags of `phalanx devnet`.
#[derive(Debug, clap::Args)]
pub(crate) struct DevnetArgs {
    /// Where the chain (genesis, block log, slashing protection) and the servers' state are
    /// kept; a devnet started on a folder that holds a chain resumes it.
    #[arg(long = "data-dir", default_value = "devnet-data")]
    data_dir: PathBuf,
    /// Start a new chain, deleting the one in `--data-dir`.
    #[arg(long)]
    fresh: bool,
    /// Validators.
    #[arg(long, default_value_t = 8)]
    validators: usize,
    /// Block producers.
    #[arg(long, default_value_t = 2)]
    producers: usize,
    /// Servers of the clustered full node.
    #[arg(long, default_value_t = 4)]
    servers: u16,
    /// Development accounts to fund and print.
    #[arg(long, default_value_t = 10)]
    accounts: u32,
    /// Built-in load: transfers per second (0: none).
    #[arg(long, default_value_t = 0)]
    load: u64,
    /// Ethereum JSON-RPC address.
    #[arg(long, default_value = "127.0.0.1:8545")]
    rpc: SocketAddr,
    /// Seed of the genesis and every key.
    #[arg(long, default_value = "phalanx-devnet")]
    seed: String,
    /// Slot length in seconds (the devnet preset's 2 by default).
    #[arg(long = "slot-seconds")]
    slot_seconds: Option<u64>,
    /// Validators held by one distributed validator cluster (the last ones; 0: none).
    #[arg(long = "dv-validators", default_value_t = 4)]
    dv_validators: usize,
    /// Members of the distributed validator cluster.
    #[arg(long = "dv-members", default_value_t = 4)]
    dv_members: usize,
    /// Partials the cluster needs (default ⌈2n/3⌉).
    #[arg(long = "dv-threshold")]
    dv_threshold: Option<usize>,
    /// Run the cluster's members as separate processes: write their folders under
    /// DATA_DIR/dv/op-N (listening from this port on) and start none here; run each with
    /// `phalanx dv run --operator-dir DATA_DIR/dv/op-N --duties node --node http://RPC`.
    #[arg(long = "dv-external-port")]
    dv_external_port: Option<u16>,
    /// Bonded executors signing claims, followed by an in-process light client (0: none).
    #[arg(long, default_value_t = 3)]
    executors: u32,
    /// Run the last this many executors as `phalanx executor` processes instead: their
    /// keystores are written to DATA_DIR/executors/ and their claims are taken over HTTP.
    #[arg(long = "external-executors", default_value_t = 0)]
    external_executors: u32,
    /// Where the devnet's light client serves verified Ethereum JSON-RPC (it follows the
    /// devnet's JSON-RPC as an untrusted node: headers, finality, claims, proofs).
    #[arg(long = "light-rpc", default_value = "127.0.0.1:8546")]
    light_rpc: SocketAddr,
    /// Start no light client endpoint.
    #[arg(long = "no-light-rpc")]
    no_light_rpc: bool,
    /// Fault injection, to watch a wrong claim get slashed on chain: in-process executor
    /// INDEX signs a wrong state root for the block at HEIGHT.
    #[arg(long = "lying-executor", value_name = "INDEX@HEIGHT", value_parser = parse_lie)]
    lying_executor: Option<(u32, u64)>,
    /// Join the chain's gossip network here (a libp2p multiaddr, e.g. /ip4/127.0.0.1/tcp/9000)
    /// and take executors' claims on its claims topic; the banner prints the peer to give
    /// `phalanx executor --p2p-peer`.
    #[arg(long = "p2p-listen", value_name = "MULTIADDR")]
    p2p_listen: Option<String>,
}

fn parse_lie(s: &str) -> Result<(u32, u64), String> {
    let (index, height) = s
        .split_once('@')
        .ok_or_else(|| format!("{s:?}: expected INDEX@HEIGHT, e.g. 2@10"))?;
    let index = index
        .parse()
        .map_err(|e| format!("{index:?}: executor index: {e}"))?;
    let height: u64 = height
        .parse()
        .map_err(|e| format!("{height:?}: height: {e}"))?;
    if height == 0 {
        return Err("height 0 is the genesis, which nobody claims".into());
    }
    Ok((index, height))
}

pub(crate) fn run(args: &DevnetArgs) -> anyhow::Result<()> {
    let mut config = DevnetConfig::new(args.data_dir.clone());
    config.validators = args.validators;
    config.producers = args.producers;
    config.servers = args.servers;
    config.accounts = args.accounts;
    config.load = args.load;
    config.rpc = args.rpc;
    config.seed = args.seed.clone();
    config.slot_seconds = args.slot_seconds;
    config.fresh = args.fresh;
    config.dv_validators = args.dv_validators;
    config.dv_members = args.dv_members;
    config.dv_threshold = args.dv_threshold;
    config.dv_external_port = args.dv_external_port;
    config.light_rpc = (!args.no_light_rpc).then_some(args.light_rpc);
    config.executors = args.executors;
    config.external_executors = args.external_executors;
    config.lying_executor = args.lying_executor;
    config.p2p_listen = args.p2p_listen.clone();
    let rt = crate::runtime()?;
    rt.block_on(async move {
        let devnet = Devnet::start(config).await?;
        let genesis = devnet.genesis();
        println!("phalanx devnet — chain id {}", genesis.spec.chain_id);
        println!();
        println!(
            "{} validators, {} producers, a clustered full node of {} servers ({} shards, {} owners each), embedded coordination store",
            args.validators,
            args.producers,
            args.servers,
            genesis.spec.shards_per_block,
            genesis.spec.replication.min(u64::from(args.servers)),
        );
        if args.executors > 0 {
            println!(
                "{} bonded executors claim every executed block; a light client trusting the genesis follows their claims",
                args.executors
            );
        }
        if args.dv_validators > 0 {
            println!(
                "validators {}..={} held by one distributed validator: {} members, threshold {}, QBFT, duties from the validator API{}",
                args.validators - args.dv_validators.min(args.validators),
                args.validators - 1,
                args.dv_members,
                args.dv_threshold.unwrap_or_else(|| phalanx_dv::create::default_threshold(args.dv_members)),
                if args.dv_external_port.is_some() {
                    format!(
                        " — members not started here: run `phalanx dv run --operator-dir {}/dv/op-N --duties node --node http://{}`",
                        args.data_dir.display(),
                        devnet.rpc_addr()
                    )
                } else {
                    String::new()
                },
            );
        }
        println!("Development accounts (funded at genesis; the keys are public, never use them elsewhere):");
        for (i, a) in devnet.accounts().iter().enumerate() {
            println!("  ({i}) {}  key {}", a.address, a.private_key);
        }
        println!();
        println!("JSON-RPC   http://{}", devnet.rpc_addr());
        println!("Dashboard http://{}/   metrics http://{}/metrics", devnet.rpc_addr(), devnet.rpc_addr());
        println!("Validator API http://{}/eth/v1/… (OpenAPI: /eth/v1/openapi.json)", devnet.rpc_addr());
        println!("Data       {}", args.data_dir.display());
        if let Some(peer) = devnet.p2p_peer() {
            println!("Gossip     {peer} (consensus blocks, aggregates, claims; executed blocks' shards)");
            println!(
                "Full node: phalanx node --genesis {} --peer {peer} --data-dir DIR [--shards lo-hi --etcd URLS]",
                args.data_dir.join("chain").join("genesis.json").display(),
            );
            println!(
                "  (or with --follow http://{} : final headers from this node's API instead of gossip)",
                devnet.rpc_addr(),
            );
        }
        for i in args.executors - args.external_executors.min(args.executors)..args.executors {
            println!(
                "Executor {i} not started here: run `phalanx executor --node http://{} --genesis {} --keystore {} --password-file {} --data-dir {}{}`",
                devnet.rpc_addr(),
                args.data_dir.join("chain").join("genesis.json").display(),
                args.data_dir.join("executors").join(format!("{i:04}.json")).display(),
                args.data_dir.join("executors").join("password.txt").display(),
                args.data_dir.join("executors").join(format!("state-{i}")).display(),
                devnet.p2p_peer().map(|p| format!(" --p2p-peer {p}")).unwrap_or_default(),
            );
        }
        if let Some(addr) = devnet.light_rpc_addr() {
            println!("Verified JSON-RPC (light client) http://{addr}");
        }
        if let Some(c) = devnet.light_checkpoint() {
            println!(
                "Light client: phalanx light --node http://{} --genesis {} --checkpoint {}:{}:{}{}",
                devnet.rpc_addr(),
                args.data_dir.join("chain").join("genesis.json").display(),
                c.height,
                c.block_hash,
                c.state_root,
                devnet.p2p_peer().map(|p| format!(" --p2p-peer {p}")).unwrap_or_default(),
            );
        }
        println!(
            "Slots of {} s, {} per epoch; execution follows finality. Ctrl-C stops.",
            genesis.spec.slot_seconds, genesis.spec.slots_per_epoch
        );
        let _ = std::io::stdout().flush();
        let shutdown = crate::ctrl_c_shutdown();
        devnet
            .run_until(shutdown, |line| {
                println!("{line}");
                let _ = std::io::stdout().flush();
            })
            .await;
        eprintln!("phalanx devnet: stopped");
        Ok(())
    })
}
